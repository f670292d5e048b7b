"""Read Hugging Face model directories (config.json + model.safetensors), without PyTorch.

Reading: `HFCheckpointReader` presents a directory (or its `model.safetensors`, or a sharded
`model.safetensors.index.json`) as a `checkpoints.CheckpointReader` whose names are the Google checkpoint
names and whose arrays are in the Google layout, so `Transformer.load_weights_from_checkpoint` loads it
unchanged (every variable checked before anything is assigned). The name correspondence is
`formats.huggingface`'s tables (families 'bert', 'albert', 'roformer', 'nezha', 'electra'). `load_hf_config`
turns config.json into `build_transformer_model`'s config, `hf_model_name` gives the `model=` its model_type
builds and `check_hf_model` refuses another; `load_hf_weights` loads and reports a mismatch with the file's
own tensor names.

Writing lives in `hf_save` (`Transformer.save_weights_as_hf`).

safetensors is read with its numpy API (bfloat16 through `ml_dtypes`, which TensorFlow already installs);
`pytorch_model.bin` is a pickle that needs PyTorch, so it is refused with the one-line conversion.
"""
import glob
import os
import re

import numpy as np

from bert4keras_ext.checkpoints import CheckpointError, CheckpointMismatchError, CheckpointReader, load_config
from bert4keras_ext.formats import FACTORISED_ONLY
from bert4keras_ext.formats import TRANSPOSED as GOOGLE_TRANSPOSED
from bert4keras_ext.formats import google as google_format
from bert4keras_ext.formats import huggingface as hf

__all__ = ['HFCheckpointReader', 'is_hf_checkpoint', 'hf_config_path', 'load_hf_config', 'hf_model_name',
           'check_hf_model', 'load_hf_weights']

# The conversion users run once where PyTorch is installed (printed in the pytorch_model.bin error).
# clone(): tied tensors share storage in a PyTorch state dict, which safetensors refuses to save as such.
_CONVERT_COMMAND = (
    'python -c "import torch; from safetensors.torch import save_file; '
    "sd = torch.load('{bin}', map_location='cpu', weights_only=True); "
    "save_file({{k: v.contiguous().clone() for k, v in sd.items()}}, '{out}', metadata={{'format': 'pt'}})\"")


# ---------------------------------------------------------------------------------------------------
# Which paths are Hugging Face checkpoints
# ---------------------------------------------------------------------------------------------------
def _hf_files_in(directory):
    names = set(os.listdir(directory))
    return [n for n in names if n.endswith('.safetensors') or n in (hf.WEIGHTS_INDEX_FILE,) + hf.PYTORCH_FILES]


def is_hf_checkpoint(path):
    """True when `path` is a Hugging Face checkpoint: a `.safetensors` / `model.safetensors.index.json` /
    `pytorch_model.bin` file, or a directory holding one and no TF checkpoint (`*.index`)."""
    if path is None:
        return False
    path = os.fspath(path)
    if os.path.isdir(path):
        return bool(_hf_files_in(path)) and not glob.glob(os.path.join(glob.escape(path), '*.index'))
    base = os.path.basename(path)
    return base.endswith('.safetensors') or base in (hf.WEIGHTS_INDEX_FILE,) + hf.PYTORCH_FILES


def hf_config_path(config_path, checkpoint_path):
    """The config.json to read as a Hugging Face config, or None for the Google `bert_config.json` route.

    A directory as `config_path` is a Hugging Face model directory; a JSON file is read as a Hugging Face
    config when the checkpoint is a Hugging Face one (or, without a checkpoint, when the file sits next to
    Hugging Face weights). Without `config_path`, a Hugging Face checkpoint's own config.json is used.
    """
    if config_path is not None:
        config_path = os.fspath(config_path)
        if os.path.isdir(config_path):
            path = os.path.join(config_path, hf.CONFIG_FILE)
            if not os.path.exists(path):
                raise CheckpointError('%s is a directory without %s: expected a Hugging Face model directory '
                                      '(config.json + model.safetensors), or pass the bert_config.json file'
                                      % (config_path, hf.CONFIG_FILE))
            return path
        folder = os.path.dirname(os.path.abspath(config_path))
        if is_hf_checkpoint(checkpoint_path) or (checkpoint_path is None and is_hf_checkpoint(folder)):
            return config_path
        return None
    if is_hf_checkpoint(checkpoint_path):
        path = os.fspath(checkpoint_path)
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        if os.path.exists(os.path.join(folder, hf.CONFIG_FILE)):
            return os.path.join(folder, hf.CONFIG_FILE)
    return None


def _weight_files(path):
    """(safetensors files, the path to name in messages) of a Hugging Face checkpoint path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        folder = path
        if os.path.exists(os.path.join(folder, hf.WEIGHTS_FILE)):
            path = os.path.join(folder, hf.WEIGHTS_FILE)
        elif os.path.exists(os.path.join(folder, hf.WEIGHTS_INDEX_FILE)):
            path = os.path.join(folder, hf.WEIGHTS_INDEX_FILE)
        else:
            found = sorted(n for n in os.listdir(folder) if n.endswith('.safetensors'))
            if len(found) == 1:
                path = os.path.join(folder, found[0])
            elif found:
                raise CheckpointError('several safetensors files in %s (%s) and no %s: pass one file'
                                      % (folder, ', '.join(found), hf.WEIGHTS_INDEX_FILE))
            else:
                torch_files = [n for n in hf.PYTORCH_FILES if os.path.exists(os.path.join(folder, n))]
                if torch_files:
                    _refuse_pytorch(os.path.join(folder, torch_files[0]))
                raise CheckpointError('no %s in %s' % (hf.WEIGHTS_FILE, folder))
    if os.path.basename(path) in hf.PYTORCH_FILES:
        _refuse_pytorch(path)
    if not os.path.exists(path):
        raise CheckpointError('Hugging Face checkpoint %s not found' % path)
    if os.path.basename(path) == hf.WEIGHTS_INDEX_FILE:
        index = load_config(path)
        weight_map = index.get('weight_map')
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError('%s has no "weight_map" {tensor name: shard file}' % path)
        folder = os.path.dirname(os.path.abspath(path))
        shards = [os.path.join(folder, name) for name in sorted(set(weight_map.values()))]
        missing = [s for s in shards if not os.path.exists(s)]
        if missing:
            raise CheckpointError('%s lists shard files that are missing: %s' % (path, ', '.join(missing)))
        return shards, path
    return [path], path


def _refuse_pytorch(path):
    folder = os.path.dirname(os.path.abspath(path))
    raise CheckpointError(
        '%s is a PyTorch pickle and %s has no %s. This package reads safetensors only (no PyTorch '
        'dependency). Convert it once where PyTorch is installed (pip install torch safetensors):\n  %s\n'
        'or, with transformers installed, AutoModelForPreTraining.from_pretrained(DIR).save_pretrained(DIR) '
        'writes model.safetensors (transformers >= 4.35 saves safetensors by default).'
        % (path, folder, hf.WEIGHTS_FILE,
           _CONVERT_COMMAND.format(bin=path, out=os.path.join(folder, hf.WEIGHTS_FILE))))


# ---------------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------------
def _family_from_config(config, path):
    model_type = config.get('model_type')
    if model_type is None:
        raise CheckpointError('%s has no "model_type": it is not a Hugging Face config.json (a Google '
                              'bert_config.json goes with a Google TF checkpoint)' % path)
    family = hf.family_of_model_type(model_type)
    if family is None:
        supported = sorted(t for spec in hf.FAMILIES.values() for t in spec['model_types'])
        raise CheckpointError('%s: model_type %r is not supported for Hugging Face checkpoints; supported: %s '
                              '(Chinese RoBERTa-wwm / MacBERT releases use "bert")' % (path, model_type, supported))
    return family


def load_hf_config(path):
    """A Hugging Face config.json as `build_transformer_model`'s config (bert_config.json keys).

    Maps `layer_norm_eps` → `layer_norm_epsilon` and `hidden_act` to this package's names (HF 'gelu' is
    the exact erf form, 'gelu_new' the tanh one); passes the family's own settings (`embedding_size`,
    NEZHA's `max_relative_position`), with transformers' defaults when the file lacks them; refuses settings
    the package's models do not build (relative position embeddings in BERT, ALBERT with several layer
    groups, RoFormer with `rotary_value`).
    """
    config = load_config(path)
    family = _family_from_config(config, path)
    spec = hf.FAMILIES[family]
    for key, value in spec['fixed_config'].items():
        if config.get(key, value) != value:
            raise CheckpointError('%s: %s=%r is not supported (the %s models here are built with %s=%r)'
                                  % (path, key, config[key], family, key, value))
    result = {key: config[key] for key in hf.CONFIG_SIZES if config.get(key) is not None}
    for key, default in spec['settings'].items():
        value = config.get(key, default)
        if value is not None:
            result[key] = value
    act = config.get('hidden_act', spec['default_hidden_act'])
    if act not in hf.ACTIVATIONS_FROM_HF:
        raise CheckpointError('%s: hidden_act %r is not supported; expected one of %s'
                              % (path, act, sorted(hf.ACTIVATIONS_FROM_HF)))
    result['hidden_act'] = hf.ACTIVATIONS_FROM_HF[act]
    result['layer_norm_epsilon'] = config.get('layer_norm_eps', 1e-12)
    return result


def hf_model_name(path):
    """The `model=` name that builds the family of config.json's model_type ('bert', 'roformer', ...)."""
    return hf.FAMILIES[_family_from_config(load_config(path), path)]['model']


def check_hf_model(path, model_class, model=None):
    """Refuse to build `model_class` (a `Transformer` subclass) from a config.json of another family.

    Args:
        path: the Hugging Face config.json.
        model_class: the class about to be built (its `checkpoint_family` is compared with the model_type's).
        model: the `model=` argument as given, for the message.
    Raises:
        CheckpointMismatchError naming the file, its model_type and the `model=` to use.
    """
    config = load_config(path)
    family = _family_from_config(config, path)
    built = getattr(model_class, 'checkpoint_family', 'bert')
    if built == family:
        return
    model_type = config['model_type']
    note = ' (%s)' % hf.UNSUPPORTED[built] if built in hf.UNSUPPORTED else ''
    raise CheckpointMismatchError(
        '%s holds a Hugging Face %s model (model_type %r), but model=%r builds the %s layout%s: pass model=%r '
        '(or leave model out: it follows the model_type)'
        % (path, family.upper(), model_type, model if model is not None else model_class.__name__, built, note,
           hf.FAMILIES[family]['model']))


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------
def _template_index(family):
    """(exact {HF name: (Google name, layout, key)}, [(regex, Google template, layout, key)]) of a family."""
    google_table = google_format.table(family)
    exact, patterns = {}, []
    for key, rows in hf.table(family).items():
        for (hf_name, layout), (google_name, _) in zip(rows, google_table[key]):
            if '{i}' in hf_name:
                regex = re.compile('^' + re.escape(hf_name).replace(re.escape('{i}'), r'(\d+)') + '$')
                patterns.append((regex, google_name, layout, key))
            else:
                exact[hf_name] = (google_name, layout, key)
    return exact, patterns


def _match(name, index):
    exact, patterns = index
    if name in exact:
        return exact[name]
    for regex, google_name, layout, key in patterns:
        m = regex.match(name)
        if m:
            return google_name.format(i=int(m.group(1))), layout, key
    return None


def _normalise(name):
    for old, new in hf.LEGACY_SUFFIXES.items():
        if name.endswith(old):
            return name[:-len(old)] + new
    return name


class HFCheckpointReader(CheckpointReader):
    """A Hugging Face safetensors checkpoint seen through Google names (`CheckpointReader`'s interface).

    Args:
        path: a model directory, its `model.safetensors`, another `.safetensors` file, or a sharded
            `model.safetensors.index.json`.
        model_type: config.json's model_type; default: read from the config.json next to the weights, else
            guessed from the tensor names.
        prefer: the family to pick when the names fit several equally (a backbone-only file without config.json:
            BertModel, ElectraModel, ... store the same names).
    Attributes:
        family: 'bert', 'albert', 'roformer', 'nezha' or 'electra' (`formats.huggingface.FAMILIES`).
        hf_names: {Google name: the file's tensor name}; `backbone_only`: the file has no backbone prefix
            (saved from `BertModel` / `AlbertModel`).
    Tensors outside the family's table (a fine-tuned classifier, position-id buffers) are not offered.
    """

    def __init__(self, path, model_type=None, prefer=None):
        try:
            import ml_dtypes  # noqa: F401  (registers numpy's bfloat16 so bf16 files read; TensorFlow depends on it)
        except ImportError:  # pragma: no cover - only a bf16 file then fails, with safetensors' message
            pass
        from safetensors import safe_open
        self.files, self.path = _weight_files(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        config_file = os.path.join(folder, hf.CONFIG_FILE)
        if model_type is None and os.path.exists(config_file):
            model_type = load_config(config_file).get('model_type')
        self._handles, found = {}, {}
        for file in self.files:
            try:
                handle = safe_open(file, framework='np')
            except Exception as e:  # truncated or not safetensors at all
                raise CheckpointError('cannot read %s as a safetensors file (%s: %s); download it again'
                                      % (file, type(e).__name__, e)) from e
            self._handles[file] = handle
            for name in handle.keys():
                if not name.endswith(hf.IGNORED_SUFFIXES):
                    found[_normalise(name)] = (file, name, tuple(handle.get_slice(name).get_shape()))
        self.family = self._detect_family(found, model_type, prefer)
        spec = hf.FAMILIES[self.family]
        prefix = spec['backbone_prefix']
        self.backbone_only = not any(n.startswith(prefix) for n in found)
        index = _template_index(self.family)
        self.shapes, self.hf_names, self._sources, self._keys, self._tied = {}, {}, {}, {}, {}
        for name, (file, original, shape) in sorted(found.items()):
            canonical = prefix + name if self.backbone_only and not name.startswith(prefix) else name
            if canonical in spec['tied']:
                self._tied[spec['tied'][canonical]] = (file, original)
                continue
            matched = _match(canonical, index) or (None if self.backbone_only else _match(prefix + name, index))
            if matched is None:
                continue
            google_name, layout, key = matched
            self.shapes[google_name] = shape[::-1] if layout == hf.TRANSPOSED else shape
            self.hf_names[google_name] = original
            self._sources[google_name] = (file, original, layout)
            self._keys[google_name] = key
        # a file that stores only the tied copy of a tensor (decoder.bias without predictions.bias)
        for google_name, (hf_name, layout, key) in hf.google_to_hf(self.family, 0).items():
            if google_name not in self.shapes and hf_name in self._tied:
                file, original = self._tied.pop(hf_name)
                self.shapes[google_name] = tuple(self._handles[file].get_slice(original).get_shape())
                self.hf_names[google_name], self._sources[google_name] = original, (file, original, layout)
                self._keys[google_name] = key

    def _detect_family(self, found, model_type, prefer=None):
        counts = {}
        for family, spec in hf.FAMILIES.items():
            index = _template_index(family)
            prefix = spec['backbone_prefix']
            counts[family] = sum(1 for n in found if _match(n, index) or _match(prefix + n, index))
        if model_type is not None:
            family = _family_from_config({'model_type': model_type}, self.path)
            if not counts[family]:
                raise CheckpointError('%s: config.json says model_type %r but the file has none of its tensors '
                                      '(found e.g. %s)' % (self.path, model_type, sorted(found)[:5]))
            return family
        best = max(counts, key=counts.get)
        if prefer in counts and counts[prefer] == counts[best]:
            best = prefer
        if not counts[best]:
            raise CheckpointError('%s holds no tensor of a known Hugging Face layout (%s); found e.g. %s'
                                  % (self.path, sorted(hf.FAMILIES), sorted(found)[:5]))
        return best

    def get(self, name):
        """The tensor as a float32 numpy array in the Google layout (Linear weights transposed to (in, out))."""
        file, original, layout = self._sources[name]
        value = self._read(file, original)
        if self._keys[name] == 'MLM-Bias':
            self._check_tied()
        return np.ascontiguousarray(value.T) if layout == hf.TRANSPOSED else value

    def _read(self, file, name):
        try:
            value = self._handles[file].get_tensor(name)
        except Exception as e:
            raise CheckpointError('%s is damaged: tensor %r cannot be read (%s: %s); download it again'
                                  % (file, name, type(e).__name__, e)) from e
        if value.dtype.kind == 'f' and value.dtype != np.float32:
            value = value.astype('float32')  # float16 / bfloat16 releases
        return value

    def _check_tied(self):
        """The MLM decoder must equal what this package ties it to (the word embeddings, the output bias)."""
        spec = hf.FAMILIES[self.family]
        for alias, target in spec['tied'].items():
            if target not in self._tied:
                continue
            google_name = next((g for g, n in hf.google_to_hf(self.family, 0).items() if n[0] == target), None)
            if google_name is None or google_name not in self._sources:
                continue
            file, original, _ = self._sources[google_name]
            if not np.array_equal(self._read(*self._tied[target]), self._read(file, original)):
                raise CheckpointError(
                    '%s has an untied output layer: %s differs from %s, and the MLM head here ties them (as '
                    'BERT does); build without with_mlm to use the encoder' % (self.path, alias, original))

    def find_damaged(self, names=None):
        for name in self.names if names is None else names:
            try:
                self.get(name)
            except CheckpointError as e:
                return name, str(e)
        return None

    def data_files(self):
        return list(self.files)

    def hf_name_and_layout(self, google_name):
        """(the file's tensor name, layout) for a Google name, also for one the file lacks; None if unknown."""
        if google_name in self._sources:
            return self._sources[google_name][1:]
        if self._all_pairs is None:
            self._all_pairs = hf.google_to_hf(self.family, _MAX_LAYERS)
        if google_name not in self._all_pairs:
            return None
        name, layout, _ = self._all_pairs[google_name]
        prefix = hf.FAMILIES[self.family]['backbone_prefix']
        return (name[len(prefix):] if self.backbone_only and name.startswith(prefix) else name), layout

    _all_pairs = None


_MAX_LAYERS = 128  # enough encoder layers to name any missing per-layer tensor in a message


def load_hf_weights(transformer, path):
    """Load a Hugging Face checkpoint into a built `Transformer`; returns the number of weights assigned.

    Raises CheckpointMismatchError naming the file and its tensors (HF names) when the family, a tensor or
    a shape does not match, before anything is assigned.
    """
    family = getattr(transformer, 'checkpoint_family', 'bert')
    reader = path if isinstance(path, HFCheckpointReader) else HFCheckpointReader(path, prefer=family)
    if reader.family != family:
        note = ' (%s)' % hf.UNSUPPORTED[family] if family in hf.UNSUPPORTED else ''
        raise CheckpointMismatchError(
            '%s holds a Hugging Face %s model, but %s builds the %s layout%s: pass model=%r to '
            'build_transformer_model' % (reader.path, reader.family.upper(), type(transformer).__name__,
                                         family, note, hf.FAMILIES[reader.family]['model']))
    unmapped = [key for key in hf.unmapped_layers(family)
                if transformer.layers.get(transformer.prefixed(key)) is not None]
    if unmapped:
        raise CheckpointMismatchError('%s: %s' % (reader.path, hf.describe_unmapped(family, unmapped)))
    _check_absent_factorised_layers(transformer, reader)
    try:
        return transformer.load_weights_from_checkpoint(reader)
    except CheckpointMismatchError as e:
        raise CheckpointMismatchError(_in_hf_terms(str(e), reader)) from None


def _flip(shape_text):
    return str(tuple(int(d) for d in re.findall(r'\d+', shape_text))[::-1])


def _in_hf_terms(message, reader):
    """The loader's mismatch message with the file's tensor names and shapes in place of Google's."""
    lines = []
    for line in message.split('\n'):
        words = line.split()
        found = reader.hf_name_and_layout(words[0]) if words else None
        if found is not None:
            google_name, (hf_name, layout) = words[0], found
            # expected: the Keras shape, Google's transposed for its NSP weights; found: the Google layout
            flip_found = layout == hf.TRANSPOSED
            flip_expected = flip_found != (google_name in GOOGLE_TRANSPOSED)
            for label, flip in (('expected shape ', flip_expected), ('found ', flip_found)):
                line = re.sub('(%s)(\\([^)]*\\))' % label,
                              lambda m, flip=flip: m.group(1) + (_flip(m.group(2)) if flip else m.group(2)), line)
            line = line.replace(google_name, hf_name, 1)
        lines.append(line)
    return '\n'.join(lines)


def _check_absent_factorised_layers(transformer, reader):
    """An HF ALBERT always has its embedding mapping; when embedding_size == hidden_size the Keras model has
    none, which is only right if the mapping is the identity."""
    for google_name, key in reader._keys.items():
        if key in FACTORISED_ONLY and transformer.layers.get(transformer.prefixed(key)) is None:
            value = reader.get(google_name)
            identity = np.eye(*value.shape) if value.ndim == 2 else np.zeros_like(value)
            if value.shape != identity.shape or not np.allclose(value, identity):
                raise CheckpointMismatchError(
                    '%s has an embedding mapping %s that is not the identity, but the model builds none '
                    '(embedding_size == hidden_size): the config does not match the checkpoint'
                    % (reader.path, reader.hf_name_and_layout(google_name)[0]))
