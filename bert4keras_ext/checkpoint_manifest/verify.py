"""Verify an unpacked checkpoint against its manifest entry: files, config numbers, vocab size, variable shapes.

TensorFlow is imported only inside :func:`verify` (to list the checkpoint's variables), so listing and
downloading stay cheap.
"""
import json
import os

from bert4keras_ext.checkpoint_manifest.archive import find_model_dir, missing_files, model_paths
from bert4keras_ext.checkpoint_manifest.schema import (
    ALBERT_MODELS, CONFIG_KEYS, ManifestError, _format_problems, get_entry,
)
from bert4keras_ext.formats import (
    HEAD_LAYERS, describe_layout, detect_family, encoder_layer_indices, family_of, is_optimizer_slot,
    variable_names, variable_shapes,
)


class VerificationError(ManifestError):
    """A checkpoint directory does not match its manifest entry; ``problems`` lists everything."""

    def __init__(self, message, problems, report):
        super().__init__(message)
        self.problems = problems
        self.report = report


# ----------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------

def verify(name_or_entry, checkpoint_dir, manifest=None):
    """Check an unpacked checkpoint against its manifest entry; return a report dict.

    Checks that config, checkpoint index/data and vocab exist (in ``checkpoint_dir``, its
    ``archive.root`` subfolder or below), that the config numbers equal the manifest's, that the
    vocab file has ``vocab_size`` tokens, and that the checkpoint's variables have the shapes the
    config implies (every encoder layer for BERT, the shared block for ALBERT). Raises one
    :class:`VerificationError` listing every problem; its ``report`` holds what was found.
    """
    entry = get_entry(name_or_entry, manifest)
    model_dir = find_model_dir(checkpoint_dir, entry) if os.path.isdir(checkpoint_dir) else None
    report = {'name': entry['name'], 'model': entry['model'], 'dir': model_dir or checkpoint_dir,
              'files': None, 'config': None, 'vocab_tokens': None, 'checkpoint': None, 'ok': False}
    if model_dir is None:
        if not os.path.isdir(checkpoint_dir):
            problems = [f'{checkpoint_dir} is not a directory']
        else:
            problems = [f'missing {m}' for m in missing_files(checkpoint_dir, entry)]
        raise VerificationError(_format_problems(
            f"'{entry['name']}' in {checkpoint_dir} failed verification:", problems), problems, report)

    paths = model_paths(model_dir, entry)
    report['files'] = paths
    problems = []
    config = _read_config(paths['config'], problems)
    report['config'] = config
    effective = _effective_config(entry, config, problems)
    report['vocab_tokens'] = _check_vocab(paths['vocab'], effective, problems)
    report['checkpoint'] = _check_checkpoint(paths['checkpoint'], entry['model'], effective, problems)
    report['ok'] = not problems
    if problems:
        raise VerificationError(_format_problems(
            f"'{entry['name']}' in {model_dir} failed verification:", problems), problems, report)
    return report


def _read_config(path, problems):
    try:
        with open(path, encoding='utf-8') as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        problems.append(f'cannot read config {path}: {e}')
        return {}
    if not isinstance(config, dict):
        problems.append(f'config {path} is not a JSON object')
        return {}
    return config


def _effective_config(entry, config, problems):
    """Compare config with manifest; return the numbers to check the checkpoint against.

    The file's values win (they are what the model will be built from); the manifest fills in
    what the file lacks. A missing ``embedding_size`` means ``hidden_size``, as in bert4keras.
    """
    expected = entry['config']
    found = dict(config)
    if 'embedding_size' not in found and 'hidden_size' in found:
        found['embedding_size'] = found['hidden_size']
    effective = {}
    keys = CONFIG_KEYS + ('embedding_size',)
    for key in keys:
        want, have = expected.get(key), found.get(key)
        if have is None:
            if want is not None and key in CONFIG_KEYS:
                problems.append(f'config has no {key} (manifest expects {want})')
            effective[key] = want
            continue
        if want is not None and have != want:
            problems.append(f'config {key}: expected {want}, found {have}')
        effective[key] = have
    hidden, heads = effective.get('hidden_size'), effective.get('num_attention_heads')
    if hidden and heads and hidden % heads:
        problems.append(f'config hidden_size {hidden} is not divisible by num_attention_heads {heads}')
    if entry['model'] not in ALBERT_MODELS:
        effective['embedding_size'] = effective.get('hidden_size')
    return effective


def _check_vocab(path, effective, problems):
    """Count vocab tokens (one per line) and compare with ``vocab_size``."""
    with open(path, encoding='utf-8', errors='replace') as f:
        tokens = sum(1 for line in f if line.rstrip('\r\n'))
    vocab_size = effective.get('vocab_size')
    if vocab_size is not None and tokens != vocab_size:
        problems.append(f'vocab file has {tokens} tokens but vocab_size is {vocab_size}')
    return tokens


def _check_checkpoint(prefix, model, cfg, problems):
    """Compare checkpoint variable shapes with the config; return a summary dict."""
    import tensorflow as tf  # lazy: only verification needs TensorFlow

    try:
        all_vars = dict(tf.train.list_variables(prefix))
    except Exception as e:  # TF raises several types for unreadable checkpoints
        problems.append(f'cannot read checkpoint {prefix}: {e}')
        return None
    variables = {k: tuple(v) for k, v in all_vars.items() if not is_optimizer_slot(k)}
    expected, family_hint = _expected_shapes(model, cfg, variables)
    if family_hint:
        problems.append(family_hint)
    checked = 0
    for name, shape in expected.items():
        if None in shape:
            continue  # a number the manifest does not know and the config did not give
        checked += 1
        if name not in variables:
            problems.append(f'missing variable {name} (expected shape {shape})')
        elif variables[name] != shape:
            problems.append(f'{name}: expected shape {shape}, found {variables[name]}')
    damaged = _find_damaged_tensor(prefix)
    if damaged:
        problems.append(damaged)
    layers = encoder_layer_indices(variables)
    num_layers = cfg.get('num_hidden_layers')
    if model not in ALBERT_MODELS and num_layers is not None and len(layers) > num_layers:
        problems.append(f'checkpoint has {len(layers)} encoder layers but num_hidden_layers is {num_layers}')
    return {'prefix': prefix, 'num_variables': len(variables),
            'num_optimizer_slots': len(all_vars) - len(variables),
            'encoder_layers': len(layers) if model not in ALBERT_MODELS else None,
            'checked_variables': checked}


def _find_damaged_tensor(prefix):
    """Read every tensor in full (TensorFlow checks each one's CRC32C); describe the first bad one, or None."""
    from bert4keras_ext.checkpoints import CheckpointError, CheckpointReader
    try:
        reader = CheckpointReader(prefix)
        found = reader.find_damaged()
    except CheckpointError as e:
        return str(e)
    if found is None:
        return None
    name, error = found
    return (f'data file {", ".join(reader.data_files()) or prefix + ".data-*"} is damaged: tensor {name} '
            f'cannot be read ({error}); download the checkpoint again')


def _expected_shapes(model, cfg, variables):
    """``{variable name: shape}`` implied by the config, plus a hint if the family looks wrong.

    The shapes are `formats.variable_shapes` without the heads (the pooler and the MLM/NSP layers are
    not in every release) and the segment table (type_vocab_size is not a manifest number); a size the
    config does not give stays None and is not checked.
    """
    H, E = cfg.get('hidden_size'), cfg.get('embedding_size')
    family, found = family_of(model), detect_family(variables)
    hint = None
    if family == 'albert':
        if found == 'bert':
            hint = f"checkpoint looks like BERT ({describe_layout('bert')}), not ALBERT: use model='bert'"
        elif found == 'albert_brightmart_legacy':
            hint = (f"checkpoint uses the early brightmart ALBERT naming ({describe_layout(found)}); "
                    'use the *_google_zh release')
        mapping_kernel = variable_names('albert', 'Embedding-Mapping')[0]
        word_embeddings = variable_names('albert', 'Embedding-Token')[0]
        if hint is None and E != H and mapping_kernel not in variables and \
                variables.get(word_embeddings, (None, None))[-1:] == (H,):
            hint = (f'checkpoint has hidden-size embeddings and no {mapping_kernel} (a converted brightmart '
                    'ALBERT): its config needs embedding_size = hidden_size')
    elif found == 'albert':
        hint = f"checkpoint looks like ALBERT ({describe_layout('albert')}), not BERT: use model='albert'"
    sizes = {key: cfg.get(key) for key in ('vocab_size', 'hidden_size', 'intermediate_size',
                                           'max_position_embeddings')}
    sizes['num_hidden_layers'] = cfg.get('num_hidden_layers') or 0
    sizes['embedding_size'] = E if family == 'albert' else None  # a BERT layout's embeddings are hidden-size
    shapes = variable_shapes(family, sizes, skip=HEAD_LAYERS + ('Embedding-Segment',))
    return shapes, hint
