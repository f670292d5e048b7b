"""`Transformer`: the base class of every model — a Keras functional graph built by overridable steps.

    get_inputs → apply_embeddings → apply_main_layers(x, i) for each layer → apply_final_layers
    compute_attention_bias (padding / LM / UniLM masks, built once and shared by all layers)

Layers are created once per name through `Transformer.apply` (how ALBERT shares its block);
`variable_mapping()` returns {keras layer name: [checkpoint variable names]} in the order of the layer's
weights, from which loading, saving and checking derive. `cached_call` runs the same steps on new tokens
with a key/value cache (`bert4keras_ext.caching`).
"""
import weakref

import numpy as np

from bert4keras_ext.backend import keras
from bert4keras_ext.caching import Decoding, DecodingContext
from bert4keras_ext.checkpoints import (
    CheckpointError, CheckpointMismatchError, CheckpointReader, write_checkpoint,
)
from bert4keras_ext.formats import FAMILY_HINTS, VOCAB_ROWS, detect_family, encoder_layer_indices
from bert4keras_ext.hf_save import write_hf_directory
from bert4keras_ext.layers import (
    Add, BiasAdd, Embedding, FeedForward, LayerNormalization,
)

__all__ = ['Transformer', 'transformer_of']

# Every built Transformer (weakly): `transformer_of` finds the one a Keras model runs on.
_BUILT = weakref.WeakSet()


class Transformer:
    """Base class: builds a Keras functional model layer by layer, with bert4keras layer names.

    Layers are created through `self.apply(inputs, LayerClass, name=..., **layer_kwargs)`: a layer is
    created once per name and reused when the name comes again (this is how ALBERT shares one block).
    """

    # Inputs are float ids, as in bert4keras (Keras' default Input dtype there): scripts do arithmetic on
    # them (a UniLM loss multiplies by the segment ids), and the embeddings cast them to int32 to look up.
    input_dtype = 'float32'

    def __init__(self, vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size,
                 hidden_act='gelu', dropout_rate=None, attention_dropout_rate=None, embedding_size=None,
                 attention_head_size=None, attention_key_size=None, sequence_length=None, keep_tokens=None,
                 compound_tokens=None, residual_attention_scores=False, attention_scale=None,
                 attention_scale_base=512, layers=None, prefix=None, name=None, strict_layer_count=True,
                 recompute=False, **kwargs):
        if keep_tokens is not None:
            keep_tokens = np.asarray(keep_tokens)
            if keep_tokens.ndim != 1 or len(keep_tokens) == 0 or keep_tokens.dtype.kind not in 'iu':
                raise ValueError('keep_tokens must be a non-empty list of integer token ids (the rows of the '
                                 'checkpoint vocabulary to keep, e.g. from load_vocab(..., simplified=True)), '
                                 'got %r' % (keep_tokens.tolist()[:10],))
            vocab_size = len(keep_tokens)
        if compound_tokens is not None:
            vocab_size += len(compound_tokens)
        if hidden_size % num_attention_heads:
            raise ValueError('hidden_size (%d) must be divisible by num_attention_heads (%d)'
                             % (hidden_size, num_attention_heads))
        if attention_scale not in (None, 'log_n', 'softmax', 'softmax_plus'):
            raise ValueError("attention_scale must be None or 'log_n' (entropy-invariant scaling), got %r"
                             % (attention_scale,))
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.attention_head_size = attention_head_size or hidden_size // num_attention_heads
        self.attention_key_size = attention_key_size or self.attention_head_size
        self.intermediate_size = intermediate_size
        self.dropout_rate = dropout_rate or 0.0
        self.attention_dropout_rate = attention_dropout_rate or 0.0
        self.hidden_act = hidden_act
        self.embedding_size = embedding_size or hidden_size
        self.sequence_length = sequence_length
        self.keep_tokens = None if keep_tokens is None else np.asarray(keep_tokens, dtype='int64')
        self.compound_tokens = compound_tokens
        self.residual_attention_scores = residual_attention_scores
        self.attention_normalization = 'softmax_plus' if attention_scale in ('log_n', 'softmax_plus') else 'softmax'
        self.attention_scale_base = attention_scale_base
        self.strict_layer_count = strict_layer_count
        self.recompute = recompute
        self.layers = {} if layers is None else layers
        self.prefix = prefix or ''
        self.name = name
        self.attention_bias = None
        self._previous_scores = None  # RealFormer: the last attention layer's pre-softmax scores
        self.built = False
        self.layer_norm_conds = [None, None, 'linear']
        self.layer_norm_epsilon = 1e-12
        self.initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self._unused_kwargs = kwargs

    # ----------------------------------------------------------------------------------- building
    def build(self, attention_caches=None, layer_norm_cond=None, layer_norm_cond_hidden_size=None,
              layer_norm_cond_hidden_act=None, additional_input_layers=None, **kwargs):
        """Create `self.model` (a keras.Model) from `get_inputs` → `call`, as bert4keras' `build`.

        Args:
            layer_norm_cond: a tensor (b, c) (or (b, n, c)) that conditions every LayerNormalization
                (Conditional Layer Normalization, kexue.fm/archives/7124): gamma and beta are shifted by
                zero-initialised projections of it, so a pretrained model starts out unchanged.
            layer_norm_cond_hidden_size: optional bottleneck width for that projection.
            layer_norm_cond_hidden_act: activation of the bottleneck (default 'linear').
            additional_input_layers: Input tensor(s) appended to the model's inputs (typically the
                Input that `layer_norm_cond` is computed from).
            attention_caches: bert4keras' static key/value caches; not supported here (decoding caches are
                an argument of the layers: `Transformer.cached_call`, used by
                `bert4keras_ext.generation.CachedDecoder`), so a value raises an error.

        With `recompute=True` (bert4keras' RECOMPUTE=1, as an argument) every attention and
        feed-forward layer is rematerialised: its internals (attention scores and probabilities, the
        wide feed-forward activation) are recomputed in the backward pass instead of being stored.
        """
        if self.built:
            return self.model
        if attention_caches:
            raise NotImplementedError(
                'build(attention_caches=...) is not supported: for fast autoregressive decoding use '
                'bert4keras_ext.generation.CachedDecoder, which keeps a key/value cache for every layer')
        self.layer_norm_conds = [layer_norm_cond, layer_norm_cond_hidden_size,
                                 layer_norm_cond_hidden_act or 'linear']
        inputs = self.get_inputs()
        self.set_inputs(inputs, additional_input_layers)
        outputs = self.call(inputs)
        self.set_outputs(outputs)
        self.model = keras.Model(self.inputs, self.outputs if len(self.outputs) > 1 else self.outputs[0],
                                 name=self.name)
        self.built = True
        _BUILT.add(self)
        return self.model

    def call(self, inputs):
        x = self.apply_embeddings(inputs)
        for index in range(self.num_hidden_layers):
            x = self.apply_main_layers(x, index)
        return self.apply_final_layers(x)

    def set_inputs(self, inputs, additional_input_layers=None):
        """Set `.inputs` (a list) and `.input` (the tensor, or the list when there are several)."""
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if additional_input_layers is not None:
            if not isinstance(additional_input_layers, (list, tuple)):
                additional_input_layers = [additional_input_layers]
            inputs.extend(additional_input_layers)
        self.inputs = inputs
        self.input = self.inputs[0] if len(self.inputs) == 1 else self.inputs

    def set_outputs(self, outputs):
        """Set `.outputs` (a list) and `.output` (the tensor, or the list when there are several)."""
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        self.outputs = outputs
        self.output = self.outputs[0] if len(self.outputs) == 1 else self.outputs

    def simplify(self, inputs):
        """Drop the Nones from a list; a single survivor is returned bare (bert4keras' helper)."""
        inputs = [i for i in inputs if i is not None]
        return inputs[0] if len(inputs) == 1 else inputs

    def apply_layer_norm(self, inputs, name):
        """LayerNormalization named `name`, conditioned on `layer_norm_cond` when the model was built with one."""
        cond, hidden_units, hidden_activation = self.layer_norm_conds
        return self.apply(self.simplify([inputs, cond]), LayerNormalization, epsilon=self.layer_norm_epsilon,
                          conditional=cond is not None, hidden_units=hidden_units,
                          hidden_activation=hidden_activation, hidden_initializer=self.initializer, name=name)

    def prefixed(self, name):
        return None if name is None else self.prefix + name

    def apply(self, inputs=None, layer=None, arguments=None, **kwargs):
        """Create (once per name) and call a layer.

        `inputs=None` returns the layer without calling it. Dropout layers are skipped entirely when
        their rate is 0, which keeps inference graphs free of no-op nodes.
        """
        if layer is keras.layers.Dropout and not kwargs.get('rate'):
            return inputs
        arguments = arguments or {}
        name = self.prefixed(kwargs.get('name'))
        kwargs['name'] = name
        if name not in self.layers:
            if self._decoding_context is not None:
                raise RuntimeError('cached decoding: the forward pass asked for a layer %r that the built model '
                                   'does not have; the decoding steps must build the same layers as training'
                                   % name)
            self.layers[name] = layer(**kwargs)
        if inputs is None:
            return self.layers[name]
        if self._decoding_context is not None:
            return self._decoding_context.call(self.layers[name], inputs, arguments)
        return self.layers[name](inputs, **arguments)

    # ----------------------------------------------------------------------------------- cached decoding
    _decoding_context = None  # set while `cached_call` runs the forward steps

    def cached_call(self, inputs, caches=None, decoding=None, logits=True):
        """Run this model's own forward steps (`call`: embeddings → main layers → final layers) on the new
        tokens of each row, with a key/value cache per attention call (see `bert4keras_ext.caching`).

        Args:
            inputs: the model's inputs for the new tokens, e.g. [token_ids (rows, n), segment_ids (rows, n)].
            caches: the caches returned by an earlier call, or None to start (a prefill: the inputs are
                whole sequences from position 0).
            decoding: a `caching.Decoding` (positions of the new tokens, write slot, prefix grouping);
                None for a prefill.
            logits: the final softmax of a head is skipped, so the outputs are logits.
        Returns:
            (outputs, caches, context): the model's outputs for the new tokens, the updated caches (one per
            cache-aware layer call, in call order) and the `caching.DecodingContext` (which layers were
            called; which layer classes are neither cache-aware nor known to be position-wise).

        Training, inference and decoding thus share one definition of the model: a subclass that
        changes a step decodes with its change.
        """
        if not self.built:
            raise RuntimeError('cached_call: build the model first (build_transformer_model does)')
        if decoding is None:
            decoding = Decoding.prefill(inputs[0])
        context = DecodingContext(caches, decoding, logits=logits, position_wise=_POSITION_WISE_LAYERS)
        saved = dict(self.__dict__)  # the steps set attributes (attention bias, RealFormer scores): restored
        self._decoding_context = context
        try:
            outputs = self.call(inputs)
        finally:
            self.__dict__.clear()
            self.__dict__.update(saved)
        context.finish()
        return outputs, context.caches, context

    def get_inputs(self):
        raise NotImplementedError('%s must implement get_inputs() (abstract step of Transformer)' % type(self).__name__)

    def apply_embeddings(self, inputs):
        raise NotImplementedError('%s must implement apply_embeddings() (abstract step of Transformer)' % type(self).__name__)

    def apply_main_layers(self, inputs, index):
        raise NotImplementedError('%s must implement apply_main_layers() (abstract step of Transformer)' % type(self).__name__)

    def apply_final_layers(self, inputs):
        raise NotImplementedError('%s must implement apply_final_layers() (abstract step of Transformer)' % type(self).__name__)

    def compute_attention_bias(self, inputs=None):
        """The attention mask/bias shared by every layer; None means no masking."""
        return self.attention_bias

    # ----------------------------------------------------------------------------------- checkpoints
    def variable_mapping(self):
        """{keras layer name: [checkpoint variable names, in the order of layer.weights]}."""
        return {}

    def load_variable(self, reader, name):
        """Read one checkpoint variable, transformed to the Keras weight's layout."""
        variable = reader.get(name)
        if name in VOCAB_ROWS:  # one row per token: keep_tokens / compound_tokens apply
            return self.load_embeddings(variable)
        return variable

    def create_variable(self, name, value):
        """The inverse of `load_variable` for saving (vocab surgery cannot be undone: the saved
        checkpoint holds the compressed/extended vocabulary)."""
        return value

    def load_embeddings(self, embeddings):
        """Apply `keep_tokens` (row selection), then `compound_tokens` (appended mean rows).

        As in bert4keras, `compound_tokens` ids index the vocabulary *after* `keep_tokens`; an entry is a
        list of ids, or `(ids, weights)` for a weighted mean.
        """
        if self.keep_tokens is not None:
            if len(self.keep_tokens) and (self.keep_tokens.max() >= embeddings.shape[0] or self.keep_tokens.min() < 0):
                raise CheckpointMismatchError(
                    'keep_tokens holds ids outside the checkpoint vocabulary: ids must lie in [0, %d) but '
                    'range over [%d, %d]. keep_tokens must index the *original* checkpoint vocab (was it '
                    'applied to an already-compressed checkpoint?)'
                    % (embeddings.shape[0], self.keep_tokens.min(), self.keep_tokens.max()))
            embeddings = embeddings[self.keep_tokens]
        if self.compound_tokens is not None:
            rows = []
            for item in self.compound_tokens:
                ids, weights = (item if isinstance(item, tuple) else (item, None))
                ids = np.asarray(ids, dtype='int64')
                if len(ids) == 0 or ids.max() >= embeddings.shape[0] or ids.min() < 0:
                    raise CheckpointMismatchError(
                        'compound_tokens entry %r is empty or holds ids outside [0, %d)' % (item, embeddings.shape[0]))
                weights = np.ones(len(ids)) if weights is None else np.asarray(weights, dtype='float64')
                rows.append(np.average(embeddings[ids], axis=0, weights=weights).astype(embeddings.dtype))
            if rows:
                embeddings = np.concatenate([embeddings, np.stack(rows)], axis=0)
        return embeddings

    def _mapped_weights(self, mapping):
        """[(layer name, keras variable, checkpoint name)] for the mapped layers present in the model."""
        pairs = []
        for layer_name, names in mapping.items():
            layer = self.layers.get(self.prefixed(layer_name))
            if layer is None:
                continue
            weights = layer.weights
            if getattr(layer, 'conditional', False) and isinstance(layer, LayerNormalization):
                # Conditional LN adds zero-initialised projections the checkpoint does not have (bert4keras
                # loads gamma and beta only, too).
                weights = weights[:len(names)]
            if len(weights) != len(names):
                raise CheckpointError('layer %r has %d weights but the mapping names %d checkpoint variables: %s'
                                      % (layer.name, len(weights), len(names), names))
            pairs.extend((layer.name, w, n) for w, n in zip(weights, names))
        return pairs

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        """Load every mapped weight; check all of them first and raise one error listing all problems.

        Nothing is assigned unless every variable is present with the right shape.
        """
        reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
        mapping = self.variable_mapping() if mapping is None else mapping
        pairs = self._mapped_weights(mapping)
        missing, mismatched, values = [], [], []
        for layer_name, weight, name in pairs:
            expected = tuple(weight.shape)
            if name not in reader:
                missing.append((name, expected, layer_name))
                continue
            try:
                value = self.load_variable(reader, name)
            except CheckpointMismatchError as e:
                mismatched.append((name, expected, reader.shape(name), layer_name, str(e)))
                continue
            if tuple(value.shape) != expected:
                mismatched.append((name, expected, reader.shape(name), layer_name, None))
                continue
            values.append((weight, value))
        extra_layers = self._unexpected_layers(reader, mapping)
        if missing or mismatched or extra_layers:
            raise CheckpointMismatchError(self._mismatch_message(reader, missing, mismatched, extra_layers))
        for weight, value in values:
            weight.assign(value.astype(keras.backend.standardize_dtype(weight.dtype)))
        return len(values)

    def _unexpected_layers(self, reader, mapping):
        """Encoder layers present in the checkpoint beyond what the config builds (config/ckpt mismatch)."""
        if not self.strict_layer_count:
            return []
        return [i for i in encoder_layer_indices(reader.names) if i >= self.num_hidden_layers]

    def _mismatch_message(self, reader, missing, mismatched, extra_layers):
        family = detect_family(reader.names)
        lines = ['checkpoint %s does not match the %s model being built (%s):' % (
            reader.path, type(self).__name__, self._describe())]
        if missing:
            lines.append('  missing variables (%d):' % len(missing))
            for name, expected, layer in missing:
                lines.append('    %-70s expected shape %-14s (layer %s)' % (name, expected, layer))
        if mismatched:
            lines.append('  shape mismatches (%d):' % len(mismatched))
            for name, expected, found, layer, note in mismatched:
                text = '    %-70s expected shape %-14s found %-14s (layer %s)' % (name, expected, found, layer)
                if note:
                    text += '\n      ' + note
                lines.append(text)
        if extra_layers:
            lines.append('  the checkpoint has encoder layers %s that this config does not build '
                         '(num_hidden_layers=%d): the config does not match the checkpoint. To load only the '
                         'first %d layers on purpose, pass num_hidden_layers=%d to build_transformer_model.'
                         % (extra_layers, self.num_hidden_layers, self.num_hidden_layers, self.num_hidden_layers))
        if family in FAMILY_HINTS and family != self.checkpoint_family:
            lines.append('Hint: ' + FAMILY_HINTS[family])
        elif mismatched and not missing:
            lines.append('Hint: the variable names match but shapes do not: the config (hidden_size, '
                         'vocab_size, num_attention_heads, ...) probably belongs to another checkpoint.')
        return '\n'.join(lines)

    checkpoint_family = 'bert'

    def _describe(self):
        return 'vocab_size=%d, hidden_size=%d, num_hidden_layers=%d, num_attention_heads=%d, intermediate_size=%d' % (
            self.vocab_size, self.hidden_size, self.num_hidden_layers, self.num_attention_heads,
            self.intermediate_size)

    def checkpoint_arrays(self, mapping=None, dtype=None):
        """{checkpoint variable name: numpy array} of the model's current weights."""
        mapping = self.variable_mapping() if mapping is None else mapping
        arrays = {}
        for _, weight, name in self._mapped_weights(mapping):
            value = self.create_variable(name, keras.ops.convert_to_numpy(weight))
            arrays[name] = value.astype(dtype) if dtype else value
        return arrays

    def save_weights_as_checkpoint(self, filename, mapping=None, dtype=None):
        """Write the mapped weights as a Google-format checkpoint (`filename` is the prefix)."""
        return write_checkpoint(filename, self.checkpoint_arrays(mapping, dtype))

    def save_weights_as_hf(self, directory, dtype=None, vocab_path=None):
        """Write a Hugging Face model directory (config.json + model.safetensors, + vocab.txt when
        `vocab_path` is given) that `transformers` and `build_transformer_model(directory, directory)` load
        (`hf_save.write_hf_directory`)."""
        weights = [(name, self.create_variable(name, weight.numpy()))
                   for _, weight, name in self._mapped_weights(self.variable_mapping())]
        return write_hf_directory(directory, self, weights, dtype=dtype, vocab_path=vocab_path)


# Layers that act on each position alone: cached decoding runs them unchanged on the new tokens.
_POSITION_WISE_LAYERS = (Add, BiasAdd, Embedding, FeedForward, LayerNormalization, keras.layers.Dense,
                         keras.layers.Dropout, keras.layers.Activation)


def transformer_of(model):
    """The `Transformer` a Keras model runs on — its built model, or a model built on the same input
    tensors (e.g. bert4keras' training model `Model(bert.inputs, CrossEntropy(...)(bert.inputs + bert.outputs))`)
    — or None."""
    candidates = list(_BUILT)
    for transformer in candidates:
        if transformer.model is model:
            return transformer
    inputs = list(getattr(model, 'inputs', None) or [])
    for transformer in candidates:
        if len(transformer.inputs) == len(inputs) and all(a is b for a, b in zip(transformer.inputs, inputs)):
            return transformer
    return None
