"""Transformer models as plain Keras functional graphs, loadable from Google-format checkpoints.

`build_transformer_model(config_path, checkpoint_path, model='bert', application='encoder', ...)` is the
entry point, as in bert4keras. A model is a `Transformer` subclass whose forward pass is a short list of
overridable steps::

    get_inputs → apply_embeddings → apply_main_layers(x, i) for each layer → apply_final_layers
    compute_attention_bias (padding / LM / UniLM masks, built once and shared by all layers)

and whose `variable_mapping()` returns {keras layer name: [checkpoint variable names]} in the order of
the layer's weights. Competition code overrides one step (or passes `model=MyBERT`) and checkpoint
loading keeps working.
"""
import numpy as np

from bert4keras_ext.backend import get_activation, keras
from bert4keras_ext.caching import Decoding, DecodingContext
from bert4keras_ext.checkpoints import (
    CheckpointError, CheckpointMismatchError, CheckpointReader, load_config, write_checkpoint,
)
from bert4keras_ext.formats import (
    TRANSPOSED, VOCAB_ROWS, describe_layout, detect_family, encoder_layer_indices,
    variable_mapping as table_variable_mapping,
)
from bert4keras_ext.hf_checkpoints import hf_config_path, is_hf_checkpoint, load_hf_config, load_hf_weights
from bert4keras_ext.hf_save import write_hf_directory
from bert4keras_ext.layers import (
    Add, AttentionMask, BiasAdd, Embedding, ExtractToken, FeedForward, LayerNormalization, MultiHeadAttention,
    PositionEmbedding,
)

__all__ = ['Transformer', 'BERT', 'build_transformer_model', 'MODELS', 'APPLICATIONS',
           'extend_with_language_model', 'extend_with_unified_language_model']


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
        hints = {
            'albert': "the checkpoint has ALBERT's shared-block layout (%s): use model='albert' or "
                      "model='albert_unshared'." % describe_layout('albert'),
            'bert': "the checkpoint has the BERT layout (%s): use model='bert' (also 'roberta', 'wobert')."
                    % describe_layout('bert'),
            'albert_brightmart_legacy': 'the checkpoint is an early brightmart ALBERT release in a non-Google '
                                        'naming; only the Google-format "*_google" ALBERT releases are supported.',
            'electra': 'the checkpoint is an ELECTRA model, which this package does not build.',
        }
        if family in hints and family != self.checkpoint_family:
            lines.append('Hint: ' + hints[family])
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


class BERT(Transformer):
    """BERT (and RoBERTa-wwm / WoBERT, which share its checkpoint layout): post-LN encoder.

    Inputs `[token_ids (b, n), segment_ids (b, n)]`, id 0 = padding (masked automatically).
    Outputs follow bert4keras: the sequence output (b, n, hidden) alone; with `with_pool` the pooled
    [CLS] vector (b, hidden) (or NSP probabilities (b, 2) with `with_nsp`); with `with_mlm` token
    probabilities (b, n, vocab) ('linear' → logits); several heads → a list [seq?, pool, mlm] as in
    bert4keras (sequence output is dropped when a head is requested, exactly like bert4keras).
    """

    def __init__(self, max_position, segment_vocab_size=2, with_pool=False, with_nsp=False, with_mlm=False,
                 hierarchical_position=None, custom_position_ids=False, shared_segment_embeddings=False,
                 layer_norm_epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        self.max_position = max_position
        self.segment_vocab_size = segment_vocab_size
        self.with_pool = with_pool
        self.with_nsp = with_nsp
        self.with_mlm = with_mlm
        self.hierarchical_position = hierarchical_position
        self.custom_position_ids = custom_position_ids
        self.shared_segment_embeddings = shared_segment_embeddings
        self.layer_norm_epsilon = layer_norm_epsilon
        if self.with_nsp and not self.with_pool:
            self.with_pool = True

    def get_inputs(self):
        token_ids = self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                               name='Input-Token')
        inputs = [token_ids]
        if self.segment_vocab_size > 0:
            segment_ids = self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                                     name='Input-Segment')
            inputs.append(segment_ids)
        if self.custom_position_ids:
            inputs.append(self.apply(layer=keras.layers.Input, shape=(self.sequence_length,), dtype=self.input_dtype,
                                     name='Input-Position'))
        return inputs

    def apply_embeddings(self, inputs):
        inputs = list(inputs)
        token_ids = inputs.pop(0)
        segment_ids = inputs.pop(0) if self.segment_vocab_size > 0 else None
        position_ids = inputs.pop(0) if self.custom_position_ids else None
        self.attention_bias = self.make_attention_bias(token_ids, segment_ids)

        x = self.apply(token_ids, Embedding, input_dim=self.vocab_size, output_dim=self.embedding_size,
                       embeddings_initializer=self.initializer, mask_zero=True, name='Embedding-Token')
        if segment_ids is not None:
            if self.shared_segment_embeddings:
                s = self.apply(segment_ids, Embedding, name='Embedding-Token')
            else:
                s = self.apply(segment_ids, Embedding, input_dim=self.segment_vocab_size,
                               output_dim=self.embedding_size, embeddings_initializer=self.initializer,
                               name='Embedding-Segment')
            x = self.apply([x, s], Add, name='Embedding-Token-Segment')
        x = self.apply([x, position_ids] if self.custom_position_ids else x, PositionEmbedding,
                       input_dim=self.max_position, output_dim=self.embedding_size, merge_mode='add',
                       hierarchical=self.hierarchical_position, embeddings_initializer=self.initializer,
                       custom_position_ids=self.custom_position_ids, name='Embedding-Position')
        x = self.apply_layer_norm(x, 'Embedding-Norm')
        x = self.apply(x, keras.layers.Dropout, rate=self.dropout_rate, name='Embedding-Dropout')
        if self.embedding_size != self.hidden_size:
            x = self.apply(x, keras.layers.Dense, units=self.hidden_size, kernel_initializer=self.initializer,
                           name='Embedding-Mapping')
        return x

    def make_attention_bias(self, token_ids, segment_ids):
        """Padding mask (b, 1, 1, n) from token ids; applications (LM / UniLM) override this."""
        return self.apply(token_ids, AttentionMask, mode='padding', name='Attention-Mask')

    def attention_layer_name(self, index):
        return 'Transformer-%d-MultiHeadSelfAttention' % index

    def feed_forward_layer_name(self, index):
        return 'Transformer-%d-FeedForward' % index

    def apply_main_layers(self, inputs, index):
        """One post-LN block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""
        x = inputs
        attention_name = self.attention_layer_name(index)
        feed_forward_name = self.feed_forward_layer_name(index)
        bias = self.compute_attention_bias(index)
        attention_inputs = [x, x, x]
        if bias is not None:
            attention_inputs.append(bias)
        residual_scores = self.residual_attention_scores
        if residual_scores and index > 0 and self._previous_scores is not None:
            attention_inputs.append(self._previous_scores)
        y = self.apply(attention_inputs, MultiHeadAttention, heads=self.num_attention_heads,
                       head_size=self.attention_head_size, out_dim=self.hidden_size,
                       key_size=self.attention_key_size, attention_dropout=self.attention_dropout_rate,
                       return_attention_scores=bool(residual_scores), normalization=self.attention_normalization,
                       scale_base=self.attention_scale_base, kernel_initializer=self.initializer,
                       recompute=self.recompute, name=attention_name)
        if residual_scores:
            y, self._previous_scores = y
        y = self.apply(y, keras.layers.Dropout, rate=self.dropout_rate, name='%s-Dropout' % attention_name)
        x = self.apply([x, y], Add, name='%s-Add' % attention_name)
        x = self.apply_layer_norm(x, '%s-Norm' % attention_name)

        y = self.apply(x, FeedForward, units=self.intermediate_size, activation=self.hidden_act,
                       kernel_initializer=self.initializer, recompute=self.recompute, name=feed_forward_name)
        y = self.apply(y, keras.layers.Dropout, rate=self.dropout_rate, name='%s-Dropout' % feed_forward_name)
        x = self.apply([x, y], Add, name='%s-Add' % feed_forward_name)
        x = self.apply_layer_norm(x, '%s-Norm' % feed_forward_name)
        return x

    def apply_final_layers(self, inputs):
        x = inputs
        outputs = [x]
        if self.with_pool:
            pool_activation = 'tanh' if self.with_pool is True else self.with_pool
            y = self.apply(x, ExtractToken, index=0, name='Pooler')
            y = self.apply(y, keras.layers.Dense, units=self.hidden_size, activation=pool_activation,
                           kernel_initializer=self.initializer, name='Pooler-Dense')
            if self.with_nsp:
                nsp_activation = 'softmax' if self.with_nsp is True else self.with_nsp
                y = self.apply(y, keras.layers.Dense, units=2, activation=nsp_activation,
                               kernel_initializer=self.initializer, name='NSP-Proba')
            outputs.append(y)
        if self.with_mlm:
            mlm_activation = 'softmax' if self.with_mlm is True else self.with_mlm
            y = self.apply(x, keras.layers.Dense, units=self.embedding_size,
                           activation=get_activation(self.hidden_act), kernel_initializer=self.initializer,
                           name='MLM-Dense')
            y = self.apply_layer_norm(y, 'MLM-Norm')
            y = self.apply(y, Embedding, arguments={'mode': 'dense'}, name='Embedding-Token')
            y = self.apply(y, BiasAdd, name='MLM-Bias')
            # float32 probabilities/logits even under a mixed-precision policy
            y = self.apply(y, keras.layers.Activation, activation=mlm_activation, dtype='float32',
                           name='MLM-Activation')
            outputs.append(y)
        if len(outputs) == 1:
            return outputs[0]
        if len(outputs) == 2:
            return outputs[1]
        return outputs[1:]

    def load_variable(self, reader, name):
        variable = super().load_variable(reader, name)
        if name in TRANSPOSED:
            return variable.T  # Google stores NSP's (2, hidden); Dense wants (hidden, 2)
        return variable

    def create_variable(self, name, value):
        if name in TRANSPOSED:
            return value.T
        return value

    def variable_mapping(self):
        return self._table_mapping('bert')

    def _table_mapping(self, family):
        """The `formats.google` table of `family` for this model: its size and its block layer names."""
        return table_variable_mapping(family, self.num_hidden_layers, self.attention_layer_name,
                                      self.feed_forward_layer_name)


# ---------------------------------------------------------------------------------------------------
# Applications: attention masks for language modelling and seq2seq
# ---------------------------------------------------------------------------------------------------
class ALBERT(BERT):
    """ALBERT in Google's release format: factorised embedding + one transformer block shared by all layers.

    Embeddings are `embedding_size` wide and mapped to `hidden_size` by `Embedding-Mapping`; every layer
    calls the same `Transformer-MultiHeadSelfAttention` / `Transformer-FeedForward` layers, whose weights
    are the shared block of the checkpoint (`formats.google.ALBERT_BLOCK`). The MLM head works in
    `embedding_size`.

    Google's ALBERT code uses the tanh approximation of GELU, so a config's 'gelu' means 'gelu_tanh'
    here (BERT keeps the exact erf form); pass hidden_act='gelu_erf' to override.
    """

    checkpoint_family = 'albert'

    def __init__(self, hidden_act='gelu', **kwargs):
        if isinstance(hidden_act, str) and hidden_act.lower() == 'gelu':
            hidden_act = 'gelu_tanh'
        super().__init__(hidden_act=hidden_act, **kwargs)

    def attention_layer_name(self, index):
        return 'Transformer-MultiHeadSelfAttention'

    def feed_forward_layer_name(self, index):
        return 'Transformer-FeedForward'

    def variable_mapping(self):
        return self._table_mapping('albert')

    def _unexpected_layers(self, reader, mapping):
        return []  # one shared block: the layer count is not stored in the checkpoint


class ALBERT_Unshared(ALBERT):
    """ALBERT with the shared block copied into every layer, so fine-tuning can specialise each layer.

    Built like BERT (`Transformer-{i}-...` layers, each with its own weights); every layer starts from
    the checkpoint's single shared block, so outputs equal `ALBERT`'s before training. Saving writes the
    per-layer layout (the 'bert' table of `formats.google`, which has ALBERT's embedding mapping too),
    since the layers differ after fine-tuning; loading accepts either layout.
    """

    def attention_layer_name(self, index):
        return BERT.attention_layer_name(self, index)

    def feed_forward_layer_name(self, index):
        return BERT.feed_forward_layer_name(self, index)

    def variable_mapping(self, layout='shared'):
        """layout: 'shared' (every layer reads ALBERT's one block) or 'per_layer' (BERT's per-layer names)."""
        if layout not in ('shared', 'per_layer'):
            raise ValueError("layout must be 'shared' or 'per_layer', got %r" % (layout,))
        return self._table_mapping('albert' if layout == 'shared' else 'bert')

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
        if mapping is None:
            per_layer = bool(encoder_layer_indices(reader.names))
            mapping = self.variable_mapping('per_layer' if per_layer else 'shared')
        return super().load_weights_from_checkpoint(reader, mapping)

    def save_weights_as_checkpoint(self, filename, mapping=None, dtype=None):
        return super().save_weights_as_checkpoint(filename, mapping or self.variable_mapping('per_layer'), dtype)

    def _unexpected_layers(self, reader, mapping):
        return BERT._unexpected_layers(self, reader, mapping)


class LM_Mask:
    """Mixin: causal (lower-triangular) attention for unidirectional language modelling."""

    def make_attention_bias(self, token_ids, segment_ids):
        return self.apply(token_ids, AttentionMask, mode='lm', name='Attention-LM-Mask')


class UniLM_Mask:
    """Mixin: UniLM seq2seq attention — segment 0 (source) bidirectional, segment 1 (target) causal."""

    def make_attention_bias(self, token_ids, segment_ids):
        if segment_ids is None:
            raise ValueError("application='unilm' needs segment ids (segment_vocab_size > 0)")
        return self.apply([token_ids, segment_ids], AttentionMask, mode='unilm', name='Attention-UniLM-Mask')


# Layers that act on each position alone: cached decoding runs them unchanged on the new tokens.
_POSITION_WISE_LAYERS = (Add, BiasAdd, Embedding, FeedForward, LayerNormalization, keras.layers.Dense,
                         keras.layers.Dropout, keras.layers.Activation)

MODELS = {
    'bert': BERT,
    'roberta': BERT,
    'wobert': BERT,
    'albert': ALBERT,
    'albert_unshared': ALBERT_Unshared,
}
APPLICATIONS = {
    'encoder': None,
    'lm': LM_Mask,
    'unilm': UniLM_Mask,
}

# bert_config.json key → constructor argument
_CONFIG_ALIASES = {
    'max_position_embeddings': 'max_position',
    'hidden_dropout_prob': 'dropout_rate',
    'attention_probs_dropout_prob': 'attention_dropout_rate',
    'type_vocab_size': 'segment_vocab_size',
}
_REQUIRED_CONFIG = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
                    'max_position')


# bert4keras' way of adding an application to a model class (build_transformer_model's `application=`
# does the same with the mixins above)
def _model_class(BaseModel):
    """`BaseModel` as a Transformer subclass (a model name such as 'bert' is accepted too)."""
    if isinstance(BaseModel, str):
        if BaseModel.lower() not in MODELS:
            raise ValueError('unknown model %r; expected one of %s or a Transformer subclass'
                             % (BaseModel, sorted(MODELS)))
        return MODELS[BaseModel.lower()]
    if not (isinstance(BaseModel, type) and issubclass(BaseModel, Transformer)):
        raise TypeError('BaseModel must be a Transformer subclass (e.g. bert4keras_ext.models.BERT), got %r'
                        % (BaseModel,))
    return BaseModel


def _with_mask(BaseModel, mask_name, class_name, doc):
    base = _model_class(BaseModel)
    mixin = {'LM_Mask': LM_Mask, 'UniLM_Mask': UniLM_Mask}[mask_name]

    class Extended(mixin, base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # a language model predicts tokens: the MLM head is on unless the caller chose one
            self.with_mlm = getattr(self, 'with_mlm', False) or True

    Extended.__name__ = Extended.__qualname__ = class_name
    Extended.__doc__ = doc
    return Extended


def extend_with_language_model(BaseModel):
    """A subclass of `BaseModel` (a Transformer class, e.g. `BERT`) with a lower-triangular attention mask
    (unidirectional language model) and ``with_mlm=True`` unless given; pass it as
    ``build_transformer_model(..., model=extend_with_language_model(BERT))``."""
    return _with_mask(BaseModel, 'LM_Mask', 'LanguageModel',
                      'Transformer with a causal attention mask (language model).')


def extend_with_unified_language_model(BaseModel):
    """A subclass of `BaseModel` with the UniLM seq2seq attention mask (segment 0 bidirectional, segment 1
    causal; arxiv.org/abs/1905.03197) and ``with_mlm=True`` unless given."""
    return _with_mask(BaseModel, 'UniLM_Mask', 'UnifiedLanguageModel',
                      'Transformer with the UniLM attention mask (seq2seq).')


# bert4keras passes these to Transformer.build(), not to the constructor
_BUILD_ARGUMENTS = ('attention_caches', 'layer_norm_cond', 'layer_norm_cond_hidden_size',
                    'layer_norm_cond_hidden_act', 'additional_input_layers')


def _resolve_model_class(model, application):
    if isinstance(model, str):
        key = model.lower()
        if key not in MODELS:
            raise ValueError('unknown model=%r; expected one of %s, or a Transformer subclass'
                             % (model, sorted(MODELS)))
        model_class = MODELS[key]
    elif isinstance(model, type) and issubclass(model, Transformer):
        model_class = model
    else:
        raise TypeError('model must be a name (%s) or a Transformer subclass, got %r' % (sorted(MODELS), model))
    if isinstance(application, str):
        if application.lower() not in APPLICATIONS:
            raise ValueError('unknown application=%r; expected one of %s' % (application, sorted(APPLICATIONS)))
        mixin = APPLICATIONS[application.lower()]
    elif isinstance(application, type):
        mixin = application
    else:
        raise TypeError('application must be one of %s or a mixin class, got %r' % (sorted(APPLICATIONS), application))
    if mixin is not None:
        model_class = type('%s_%s' % (mixin.__name__, model_class.__name__), (mixin, model_class), {})
    return model_class


def build_transformer_model(config_path=None, checkpoint_path=None, model='bert', application='encoder',
                            return_keras_model=True, **kwargs):
    """Build a Transformer from a Google `bert_config.json`, optionally loading a checkpoint.

    Args:
        config_path: path of the JSON config (or None and give every size in kwargs).
        checkpoint_path: checkpoint prefix / file / directory; None leaves random weights.
        model: 'bert', 'roberta', 'wobert' (all the BERT layout) or a Transformer subclass.
        application: 'encoder'; 'lm' (causal mask) or 'unilm' (seq2seq mask), which also turn on the
            MLM head (`with_mlm=True` unless given).
        return_keras_model: True → the keras.Model; False → the Transformer (`.model`, `.initializer`,
            `.layers`, `.save_weights_as_checkpoint`).
        **kwargs: override config entries and pass model options: with_pool, with_nsp, with_mlm,
            keep_tokens, compound_tokens, sequence_length, hierarchical_position, attention_scale,
            residual_attention_scores, dropout_rate, name, prefix, ...; and bert4keras' build arguments
            layer_norm_cond, layer_norm_cond_hidden_size, layer_norm_cond_hidden_act,
            additional_input_layers (Conditional Layer Normalization, see `Transformer.build`).
    """
    configs = {}
    if config_path is not None:
        configs.update(load_config(config_path))
    explicit_layers = 'num_hidden_layers' in kwargs
    configs.update(kwargs)
    for key, alias in _CONFIG_ALIASES.items():
        if key in configs and alias not in kwargs:
            configs[alias] = configs.pop(key)
        else:
            configs.pop(key, None)
    configs.setdefault('segment_vocab_size', 2)
    missing = [k for k in _REQUIRED_CONFIG if configs.get(k) is None]
    if missing:
        names = {v: k for k, v in _CONFIG_ALIASES.items()}
        raise CheckpointError('the model config lacks %s (from %s); a bert_config.json needs vocab_size, '
                              'hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and '
                              'max_position_embeddings' % (', '.join(names.get(k, k) for k in missing),
                                                           config_path or 'kwargs'))
    if application in ('lm', 'unilm'):
        configs.setdefault('with_mlm', True)
    if 'strict_layer_count' not in configs:
        configs['strict_layer_count'] = not explicit_layers
    build_arguments = {k: configs.pop(k) for k in _BUILD_ARGUMENTS if k in configs}
    model_class = _resolve_model_class(model, application)
    transformer = model_class(**_known_arguments(model_class, configs))
    transformer.build(**build_arguments)
    if checkpoint_path is not None:
        transformer.load_weights_from_checkpoint(checkpoint_path)
    return transformer.model if return_keras_model else transformer


def _known_arguments(model_class, configs):
    """Drop config entries that no constructor in the class hierarchy takes (e.g. initializer_range),
    but fail loudly on misspelled *option* names passed by the caller."""
    import inspect
    accepted = set()
    for cls in model_class.__mro__:
        if '__init__' in cls.__dict__:
            accepted.update(inspect.signature(cls.__dict__['__init__']).parameters)
    known_config_only = {'initializer_range', 'hidden_act', 'directionality', 'pooler_fc_size', 'pooler_num_attention_heads',
                         'pooler_num_fc_layers', 'pooler_size_per_head', 'pooler_type', 'layer_norm_eps',
                         'model_type', 'architectures', 'output_past', 'net_structure_type', 'num_hidden_groups',
                         'inner_group_num', 'gap_size', 'num_memory_blocks', 'down_scale_factor', 'ln_type',
                         'classifier_dropout', 'use_cache', 'position_embedding_type', 'pad_token_id',
                         'torch_dtype', 'transformers_version', 'bos_token_id', 'eos_token_id', 'gradient_checkpointing'}
    unknown = [k for k in configs if k not in accepted and k not in known_config_only]
    if unknown:
        raise TypeError('build_transformer_model: unknown option(s) %s for %s' % (sorted(unknown), model_class.__name__))
    return {k: v for k, v in configs.items() if k in accepted}


# bert4keras' models module re-exports its layers and backend helpers (``from bert4keras.layers import *``)
# and a few snippets utilities; scripts import them from here, so they are re-exported the same way.
from bert4keras_ext.layers import (  # noqa: E402,F401
    BatchConcat, BatchSplit, Concatenate1D, ConditionalRandomField, EfficientGlobalPointer, GlobalAveragePooling1D,
    GlobalMaxPooling1D, GlobalPointer, Layer, Loss, MaximumEntropyMarkovModel, RelativePositionEmbedding,
    ScaleOffset, SinusoidalPositionEmbedding, align, apply_rotary_position_embeddings, attention_normalize,
    integerize_shape, recompute_grad, sequence_masking, sinusoidal_embeddings,
)
from bert4keras_ext.models_compat import (  # noqa: E402,F401
    data_parallel, delete_arguments, get_available_gpus, insert_arguments, is_string, orthogonally_resize,
    string_matching,
)

__all__ += ['ALBERT', 'ALBERT_Unshared', 'LM_Mask', 'UniLM_Mask', 'Embedding', 'FeedForward', 'LayerNormalization',
            'MultiHeadAttention', 'PositionEmbedding', 'BatchConcat', 'BatchSplit', 'Concatenate1D',
            'ConditionalRandomField', 'EfficientGlobalPointer', 'GlobalAveragePooling1D', 'GlobalMaxPooling1D',
            'GlobalPointer', 'Layer', 'Loss', 'MaximumEntropyMarkovModel', 'RelativePositionEmbedding', 'ScaleOffset',
            'SinusoidalPositionEmbedding', 'align', 'apply_rotary_position_embeddings', 'attention_normalize',
            'integerize_shape', 'recompute_grad', 'sequence_masking', 'sinusoidal_embeddings', 'data_parallel',
            'delete_arguments',
            'get_available_gpus', 'insert_arguments', 'is_string', 'orthogonally_resize', 'string_matching']
