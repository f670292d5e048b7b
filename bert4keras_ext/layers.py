"""Keras 3 layers with bert4keras names and semantics.

Every layer here is registered for `.keras` serialization and has a complete `get_config`, so
`model.save('m.keras')` + `keras.saving.load_model('m.keras')` round-trips a model built from them.

Masks: layers accept explicit masks/biases as inputs (so they can sit on any backbone) and also honour
Keras' implicit masks where that is the natural interface (e.g. `Loss.compute_loss(inputs, mask)`).
"""
import math

import numpy as np

from bert4keras_ext.backend import get_activation, keras, mask_value, ops
from bert4keras_ext.caching import pad_axis, write_slots, grouped_matmul

__all__ = [
    'Add', 'Embedding', 'BiasAdd', 'PositionEmbedding', 'LayerNormalization', 'MultiHeadAttention',
    'FeedForward', 'FlatDense', 'ExtractToken', 'AttentionMask', 'Loss',
]

register = keras.saving.register_keras_serializable(package='bert4keras_ext')


def _materialised(t):
    """`t` as a tensor of its own (a transposed view becomes a contiguous copy on TensorFlow)."""
    import tensorflow as tf
    return tf.identity(t)


def _is_16bit(dtype):
    return keras.backend.standardize_dtype(dtype) in ('float16', 'bfloat16')


@register
class Add(keras.layers.Add):
    """`keras.layers.Add` that keeps the mask of the inputs that have one.

    Keras 3's merge layers drop the mask as soon as one input has none, so token embedding (masked,
    id 0 = padding) + segment embedding (unmasked) would lose the padding mask that downstream layers
    (CRF, pooling, `Loss.compute_loss`) rely on. Keras 2 — and so bert4keras — combined only the
    masks that exist; this does the same (AND of the given masks).
    """

    def compute_mask(self, inputs, mask=None):
        if mask is None:
            return None
        masks = [m for m in mask if m is not None]
        if not masks:
            return None
        output = masks[0]
        for m in masks[1:]:
            output = ops.logical_and(output, m)
        return output


@register
class Embedding(keras.layers.Embedding):
    """Token embedding that can also act as its own transposed output projection.

    `layer(token_ids)` looks rows up (b, n) → (b, n, d). `layer(hidden, mode='dense')` multiplies by
    the transposed matrix (b, n, d) → (b, n, vocab): this is how BERT's MLM head ties its output
    weights to the input embedding.

    The Keras mask of a lookup is `token_ids != 0` (id 0 is padding) when `mask_zero=True`; in dense
    mode the incoming mask is passed through.
    """

    # Cached decoding (see `bert4keras_ext.caching`): the output projection keeps a materialised transposed
    # matrix for the whole search.
    supports_decoding_cache = True

    def call(self, inputs, mode='embedding', cache=None, decoding=None):
        if mode == 'embedding':
            outputs = super().call(self._checked_ids(inputs))
            return outputs if decoding is None else (outputs, {})
        if mode != 'dense':
            raise ValueError("Embedding.call: mode must be 'embedding' or 'dense', got %r" % (mode,))
        kernel = ops.cast(self.embeddings, self.compute_dtype)
        if decoding is None:
            return ops.matmul(inputs, ops.transpose(kernel))
        # A (d, vocab) copy of the transposed matrix, made once per search: TensorFlow's CPU matmul with a
        # transposed right operand is ~10x slower for the few rows of a decoding step.
        constants = (cache or {}).get('constants') or {'transposed': _materialised(ops.transpose(kernel))}
        return ops.matmul(inputs, constants['transposed']), {'constants': constants}

    def continue_cache(self, cache, rows, capacity, prefix_rows=None, prefix_length=None):
        """Only the constants carry over (see `bert4keras_ext.caching`)."""
        return {'constants': cache['constants']} if cache.get('constants') else {}

    def _checked_ids(self, ids):
        """`ids` as int32, after checking they are whole numbers in [0, input_dim).

        A lookup with a bad id is silently wrong on some devices (a negative id wraps around, a float id
        is truncated) and an opaque kernel error on others, so the check runs first: in eager code it
        raises a ValueError with the offending values; inside a compiled `fit` / `predict` it is an
        assertion whose message says the same.
        """
        dtype = keras.backend.standardize_dtype(ids.dtype)
        if 'int' in dtype and 'uint' not in dtype and dtype != 'int32':
            ids = ops.cast(ids, 'int32')
        import tensorflow as tf  # the check needs TF's eager test and assertions; layers run on TF here
        ids = tf.convert_to_tensor(ids)
        describe = 'layer %r expects ids in [0, %d) (whole numbers)' % (self.name, self.input_dim)
        if tf.executing_eagerly():
            values = ids.numpy()
            bad = (values < 0) | (values >= self.input_dim)
            if 'float' in dtype:
                bad |= values != np.round(values)
            if bad.any():
                raise ValueError('%s, got %s at positions %s (out of range ids are not wrapped or clipped)'
                                 % (describe, sorted(set(values[bad].tolist()))[:10],
                                    [tuple(p) for p in np.argwhere(bad)[:5].tolist()]))
            return ops.cast(ids, 'int32')
        checks = [tf.debugging.assert_non_negative(ids, message='%s, got a negative id' % describe),
                  tf.debugging.assert_less(ids, tf.cast(self.input_dim, ids.dtype),
                                           message='%s, got an id >= %d' % (describe, self.input_dim))]
        if 'float' in dtype:
            checks.append(tf.debugging.assert_equal(ids, tf.round(ids),
                                                    message='%s, got a non-integer id' % describe))
        with tf.control_dependencies(checks):
            return tf.cast(ids, 'int32')

    def compute_mask(self, inputs, mask=None):
        if self._is_dense_mode_input(inputs):
            return mask
        return super().compute_mask(inputs, mask)

    def _is_dense_mode_input(self, inputs):
        """Hidden states (b, ..., output_dim) rather than ids. Ids may be float: models built here take
        float ids as bert4keras' do, so the dtype alone does not tell."""
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        return 'float' in dtype and len(inputs.shape) >= 3 and inputs.shape[-1] == self.output_dim

    def compute_output_shape(self, input_shape, mode='embedding'):
        if mode == 'dense':
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, mode='embedding'):
        shape = self.compute_output_shape(inputs.shape, mode=mode)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)


@register
class BiasAdd(keras.layers.Layer):
    """Adds a learned bias vector on the last axis (BERT's `cls/predictions/output_bias`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.bias = self.add_weight(name='bias', shape=(input_shape[-1],), initializer='zeros')

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)


@register
class PositionEmbedding(keras.layers.Layer):
    """Trainable absolute position embedding, merged into its input.

    Input (b, n, d) (or `[x, position_ids]` with `custom_position_ids=True`); output (b, n, d) for
    `merge_mode='add'|'mul'|'zero'`, (b, n, d + output_dim) for 'concat'.

    `hierarchical` (True → alpha 0.4, or a float alpha) extends a table of n trained rows to n² positions:
    with u = (E - alpha·E[0]) / (1 - alpha), position p gets alpha·u[p // n] + (1 - alpha)·u[p % n],
    which equals E[p] exactly for p < n (kexue.fm/archives/7947). Without it, a sequence longer than the
    table raises an error instead of being truncated.
    """

    def __init__(self, input_dim, output_dim, merge_mode='add', hierarchical=None,
                 embeddings_initializer='zeros', custom_position_ids=False, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in ('add', 'mul', 'zero', 'concat'):
            raise ValueError("PositionEmbedding: merge_mode must be add, mul, zero or concat, got %r" % merge_mode)
        if hierarchical is not None and hierarchical is not False and hierarchical is not True:
            if not 0 < float(hierarchical) < 1 or float(hierarchical) == 0.5:
                raise ValueError('PositionEmbedding: hierarchical alpha must be in (0, 1) and != 0.5, got %r'
                                 % hierarchical)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.merge_mode = merge_mode
        self.hierarchical = hierarchical
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.custom_position_ids = custom_position_ids
        self.supports_masking = True

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name='embeddings', shape=(self.input_dim, self.output_dim), initializer=self.embeddings_initializer
        )

    @property
    def max_length(self):
        return self.input_dim ** 2 if self.hierarchical else self.input_dim

    def _check_length(self, seq_len):
        """Return `seq_len`, failing with a clear message if the table cannot cover it."""
        if isinstance(seq_len, int):
            if seq_len > self.max_length:
                raise ValueError(self._too_long_message(seq_len))
            return seq_len
        # Dynamic length inside a traced function: a runtime assertion (TensorFlow-specific, and the
        # only TF op in this module). The length is routed through it so that the lookup cannot run
        # (and fail with an opaque shape error) before the check. XLA drops assertions.
        import tensorflow as tf
        check = tf.debugging.assert_less_equal(
            tf.cast(seq_len, 'int32'), self.max_length, message=self._too_long_message('(dynamic)')
        )
        with tf.control_dependencies([check]):
            return tf.identity(seq_len)

    def _too_long_message(self, seq_len):
        hint = '' if self.hierarchical else (
            ' Truncate inputs (e.g. tokenizer.encode(text, maxlen=%d)) or build the model with '
            'hierarchical_position=True to extend the table to %d positions.' % (self.input_dim, self.input_dim ** 2))
        return ('%s: input sequence length (or largest position id + 1) %s exceeds the position embedding table of %d positions '
                '(max_position=%d%s).%s' % (self.name, seq_len, self.max_length, self.input_dim,
                                             ', hierarchical' if self.hierarchical else '', hint))

    def position_embeddings(self, position_ids=None, seq_len=None):
        """Embeddings for `position_ids` (any int shape) or for 0..seq_len-1, shape (..., output_dim)."""
        table = ops.cast(self.embeddings, self.compute_dtype)
        if self.hierarchical:
            alpha = 0.4 if self.hierarchical is True else float(self.hierarchical)
            if position_ids is None:
                position_ids = ops.arange(seq_len, dtype='int32')
            position_ids = ops.cast(position_ids, 'int32')
            bases = (table - alpha * table[:1]) / (1 - alpha)
            coarse = ops.take(bases, position_ids // self.input_dim, axis=0)
            fine = ops.take(bases, position_ids % self.input_dim, axis=0)
            return alpha * coarse + (1 - alpha) * fine
        if position_ids is None:
            return table[:seq_len]
        return ops.take(table, ops.cast(position_ids, 'int32'), axis=0)

    # Cached decoding: the new tokens sit at `decoding.positions`, not at 0..n-1.
    uses_decoding_positions = True

    def call(self, inputs, decoding=None):
        if decoding is not None:
            if self.custom_position_ids:
                raise NotImplementedError('%s: cached decoding does not support custom_position_ids' % self.name)
            pos = self.position_embeddings(position_ids=decoding.positions)
            return self._merge(inputs, pos)
        if self.custom_position_ids:
            inputs, position_ids = inputs
            # what must fit in the table is the largest id, whatever the sequence length
            position_ids = ops.cast(position_ids, 'int32')
            largest = self._check_length(ops.max(position_ids) + 1)
            # the no-op minimum makes the lookup depend on the check, so the check runs first
            pos = self.position_embeddings(position_ids=ops.minimum(position_ids, largest))
            if len(pos.shape) == 2:
                pos = ops.expand_dims(pos, 0)
        else:
            seq_len = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
            seq_len = self._check_length(seq_len)
            pos = ops.expand_dims(self.position_embeddings(seq_len=seq_len), 0)
        return self._merge(inputs, pos)

    def _merge(self, inputs, pos):
        if self.merge_mode == 'add':
            return inputs + pos
        if self.merge_mode == 'mul':
            return inputs * (pos + 1.0)
        batch_size = ops.shape(inputs)[0]
        pos = ops.broadcast_to(pos, (batch_size,) + tuple(ops.shape(pos)[1:]))
        if self.merge_mode == 'zero':
            return pos
        return ops.concatenate([inputs, pos], axis=-1)

    def compute_mask(self, inputs, mask=None):
        if self.custom_position_ids and isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        if self.custom_position_ids:
            input_shape = input_shape[0]
        elif input_shape[1] is not None:  # a static sequence_length is checked when the model is built
            self._check_length(int(input_shape[1]))
        if self.merge_mode == 'concat':
            return tuple(input_shape[:2]) + (input_shape[2] + self.output_dim,)
        return tuple(input_shape[:2]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            'input_dim': self.input_dim,
            'output_dim': self.output_dim,
            'merge_mode': self.merge_mode,
            'hierarchical': self.hierarchical,
            'embeddings_initializer': keras.initializers.serialize(self.embeddings_initializer),
            'custom_position_ids': self.custom_position_ids,
        })
        return config


@register
class LayerNormalization(keras.layers.Layer):
    """Layer normalisation over the last axis, optionally conditional (bert4keras `LayerNormalization`).

    Plain: input (b, ..., d) → (b, ..., d), weights `gamma`, `beta` (in that order, matching Google's
    `LayerNorm/gamma`, `LayerNorm/beta`). Statistics are computed in float32 even under a 16-bit policy.

    Conditional (`conditional=True`): inputs `[x, cond]`; gamma and beta are shifted by zero-initialised
    dense projections of `cond` (optionally through a `hidden_units` bottleneck), so a pretrained
    model starts out unchanged (kexue.fm/archives/7124).
    """

    def __init__(self, center=True, scale=True, epsilon=None, conditional=False, hidden_units=None,
                 hidden_activation='linear', hidden_initializer='glorot_uniform', **kwargs):
        super().__init__(**kwargs)
        self.center = center
        self.scale = scale
        self.epsilon = 1e-12 if epsilon is None else float(epsilon)
        self.conditional = conditional
        self.hidden_units = hidden_units
        self.hidden_activation = hidden_activation
        self.hidden_initializer = keras.initializers.get(hidden_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        shape = (input_shape[0][-1],) if self.conditional else (input_shape[-1],)
        if self.scale:
            self.gamma = self.add_weight(name='gamma', shape=shape, initializer='ones')
        if self.center:
            self.beta = self.add_weight(name='beta', shape=shape, initializer='zeros')
        if self.conditional:
            if self.hidden_units is not None:
                self.hidden_dense = keras.layers.Dense(
                    self.hidden_units, activation=get_activation(self.hidden_activation), use_bias=False,
                    kernel_initializer=self.hidden_initializer, name='hidden_dense')
                self.hidden_dense.build(input_shape[1])
                cond_dim = self.hidden_units
            else:
                cond_dim = input_shape[1][-1]
            if self.scale:
                self.gamma_dense = keras.layers.Dense(shape[0], use_bias=False, kernel_initializer='zeros',
                                                      name='gamma_dense')
                self.gamma_dense.build(tuple(input_shape[1][:-1]) + (cond_dim,))
            if self.center:
                self.beta_dense = keras.layers.Dense(shape[0], use_bias=False, kernel_initializer='zeros',
                                                     name='beta_dense')
                self.beta_dense.build(tuple(input_shape[1][:-1]) + (cond_dim,))

    def call(self, inputs):
        if self.conditional:
            x, cond = inputs
            if self.hidden_units is not None:
                cond = self.hidden_dense(cond)
            for _ in range(len(x.shape) - len(cond.shape)):
                cond = ops.expand_dims(cond, 1)
        else:
            x = inputs
        out_dtype = x.dtype
        if _is_16bit(x.dtype):
            x = ops.cast(x, 'float32')
        if self.center:
            x = x - ops.mean(x, axis=-1, keepdims=True)
        if self.scale:
            variance = ops.mean(ops.square(x), axis=-1, keepdims=True)
            x = x * ops.rsqrt(variance + self.epsilon)
        x = ops.cast(x, out_dtype)
        if self.scale:
            gamma = ops.cast(self.gamma, out_dtype)
            if self.conditional:
                gamma = gamma + self.gamma_dense(cond)
            x = x * gamma
        if self.center:
            beta = ops.cast(self.beta, out_dtype)
            if self.conditional:
                beta = beta + self.beta_dense(cond)
            x = x + beta
        return x

    def compute_mask(self, inputs, mask=None):
        if self.conditional and isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.conditional else input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            'center': self.center,
            'scale': self.scale,
            'epsilon': self.epsilon,
            'conditional': self.conditional,
            'hidden_units': self.hidden_units,
            'hidden_activation': self.hidden_activation,
            'hidden_initializer': keras.initializers.serialize(self.hidden_initializer),
        })
        return config


@register
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention with explicit masks/biases (bert4keras `MultiHeadAttention`).

    Inputs: `[q, k, v, *biases]`, q (b, n, dq), k (b, m, dk), v (b, m, dv). Each extra input is either a
    **bool mask** broadcastable to (b, heads, n, m) — True = may attend — or a **float additive bias** of
    that shape. Bool masks are AND-ed, float biases summed. Without any bias the Keras mask of `v`
    (if present) masks padded keys.

    Output: (b, n, out_dim); with `return_attention_scores=True` also the pre-softmax scores
    (b, heads, n, m) (the scaled QKᵀ plus float biases), which RealFormer feeds to the next layer.

    Weights, in order (matching Google's checkpoints): query kernel/bias, key kernel/bias, value
    kernel/bias, output kernel/bias. Softmax runs in float32 under 16-bit policies; masked scores get a
    large finite negative, so a fully masked row gives a uniform row instead of NaN.

    `attention_scale`: True → 1/sqrt(key_size); `normalization`: 'softmax', or 'softmax_plus' for the
    entropy-invariant log-n scaling, logits × log(max(l, 16)) / log(`scale_base`) with l the number of
    visible keys of that query row (kexue.fm/archives/8823).
    """

    def __init__(self, heads, head_size, out_dim=None, key_size=None, use_bias=True, attention_scale=True,
                 attention_dropout=None, return_attention_scores=False, normalization='softmax',
                 scale_base=512, kernel_initializer='glorot_uniform', recompute=False, **kwargs):
        super().__init__(**kwargs)
        if normalization not in ('softmax', 'softmax_plus'):
            raise ValueError("MultiHeadAttention: normalization must be 'softmax' or 'softmax_plus', got %r"
                             % normalization)
        self.heads = int(heads)
        self.head_size = int(head_size)
        self.out_dim = out_dim
        self.key_size = int(key_size or head_size)
        self.use_bias = use_bias
        self.attention_scale = attention_scale
        self.attention_dropout = attention_dropout
        self.return_attention_scores = return_attention_scores
        self.normalization = normalization
        self.scale_base = scale_base
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recompute = recompute
        self.supports_masking = True

    def build(self, input_shape):
        q_shape, k_shape, v_shape = input_shape[:3]
        out_dim = self.out_dim or q_shape[-1]

        def dense(units, name, shape):
            layer = FlatDense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                              name=name, dtype=self.dtype_policy)
            layer.build(shape)
            return layer

        # Built in checkpoint order: the loader maps weights by position.
        self.q_dense = dense(self.key_size * self.heads, 'q_dense', q_shape)
        self.k_dense = dense(self.key_size * self.heads, 'k_dense', k_shape)
        self.v_dense = dense(self.head_size * self.heads, 'v_dense', v_shape)
        self.o_dense = dense(out_dim, 'o_dense', tuple(q_shape[:-1]) + (self.head_size * self.heads,))
        self.dropout = keras.layers.Dropout(self.attention_dropout or 0.0)
        self.seed_generator = keras.random.SeedGenerator()

    # Cached decoding (see `bert4keras_ext.caching`): `layer(inputs, cache=..., decoding=...)` attends the new
    # tokens over the cached keys/values and returns (outputs, cache).
    supports_decoding_cache = True

    def call(self, inputs, mask=None, training=None, cache=None, decoding=None):
        q, k, v = inputs[:3]
        biases = list(inputs[3:])
        if not biases and isinstance(mask, (list, tuple)) and len(mask) > 2 and mask[2] is not None:
            biases.append(mask[2][:, None, None, :])  # Keras mask of the values = padded keys
        if decoding is not None:
            return self._cached_attention(q, k, v, biases, cache, decoding)
        if not (self.recompute and training):
            return self._attention(q, k, v, biases, training=training)
        # Rematerialisation: keep only the inputs and recompute the projections, scores and
        # probabilities in the backward pass. The dropout mask is drawn outside the recomputed function
        # (and kept, as bools) so that the recomputation drops exactly the same probabilities.
        rate = self.attention_dropout or 0.0
        keep = None
        if rate > 0:
            shape = (ops.shape(q)[0], self.heads, ops.shape(q)[1], ops.shape(k)[1])
            keep = keras.random.uniform(shape, seed=self.seed_generator) >= rate
        # Only float tensors go through the rematerialised function's arguments (TensorFlow's
        # recompute_grad differentiates with respect to every argument); bool masks are closed over.
        is_float = ['float' in keras.backend.standardize_dtype(b.dtype) for b in biases]
        float_biases = [b for b, f in zip(biases, is_float) if f]

        def recomputed(q, k, v, *float_args):
            floats = iter(float_args)
            all_biases = [next(floats) if f else b for b, f in zip(biases, is_float)]
            return self._attention(q, k, v, all_biases, training=training, dropout_keep=keep)

        return keras.remat(recomputed)(q, k, v, *float_biases)

    def project(self, q, k, v):
        """Per-head projections: query (b, n, h, dk), already scaled when `attention_scale`, key
        (b, m, h, dk) and value (b, m, h, dv)."""
        qw = self._split_heads(self.q_dense(q), self.key_size)
        kw = self._split_heads(self.k_dense(k), self.key_size)
        vw = self._split_heads(self.v_dense(v), self.head_size)
        qw, kw = self.apply_positions(qw, kw, None)
        return self._scaled(qw), kw, vw

    def _scaled(self, qw):
        if self.attention_scale:
            return qw * ops.cast(1.0 / math.sqrt(self.key_size), qw.dtype)  # cheaper on q than on scores
        return qw

    def apply_positions(self, qw, kw, positions):
        """Position-dependent transform of the per-head queries (b, n, h, dk) and keys (b, n, h, dk) of tokens
        at `positions` (b, n) int32 (None: 0..n-1), before scaling; identity here. A subclass (rotary
        positions) overrides it, and training and cached decoding both go through it."""
        return qw, kw

    def _attention(self, q, k, v, biases, training=None, dropout_keep=None):
        qw, kw, vw = self.project(q, k, v)
        scores = ops.einsum('bqhd,bkhd->bhqk', qw, kw)
        output, scores = self.attend(scores, vw, biases, training=training, dropout_keep=dropout_keep)
        output = ops.reshape(output, tuple(ops.shape(output)[:2]) + (self.heads * self.head_size,))
        output = self.o_dense(output)
        if self.return_attention_scores:
            return [output, scores]
        return output

    def attend(self, scores, values, biases, training=None, dropout_keep=None):
        """Masks/biases → normalisation → dropout → weighted sum.

        scores (b, h, n, m) scaled QKᵀ; values (b, m, h, dv). Returns ((b, n, h, dv), scores + float biases).
        `dropout_keep`: a precomputed bool keep-mask (b, h, n, m) used instead of the Dropout layer.
        Split out so subclasses (relative positions, other normalisers) can override one step.
        """
        probs, scores = self.attention_probs(scores, biases, values.dtype, training=training,
                                             dropout_keep=dropout_keep)
        return ops.einsum('bhqk,bkhd->bqhd', probs, values), scores

    def attention_probs(self, scores, biases, dtype, training=None, dropout_keep=None):
        """The attention weights (b, h, n, m) in `dtype` and the scores plus float biases.

        Bool biases are AND-ed into one visibility mask, float biases added; 'softmax_plus' multiplies
        the logits by log(max(visible keys, 16)) / log(scale_base). The cached path calls this too (its
        keys live in two blocks: a shared prefix and the rows block).
        """
        scores = ops.cast(scores, 'float32')
        allowed = None
        for bias in biases:
            if keras.backend.standardize_dtype(bias.dtype) == 'bool':
                allowed = bias if allowed is None else ops.logical_and(allowed, bias)
            else:
                scores = scores + ops.cast(bias, 'float32')
        logits = scores
        if self.normalization == 'softmax_plus':
            if allowed is None:
                visible = ops.cast(ops.shape(scores)[-1], 'float32')
            else:
                visible = ops.sum(ops.cast(ops.broadcast_to(allowed, ops.shape(scores)), 'float32'),
                                  axis=-1, keepdims=True)
            logits = logits * ops.log(ops.maximum(visible, 16.0)) / math.log(self.scale_base)
        if allowed is not None:
            logits = ops.where(allowed, logits, mask_value('float32'))
        probs = ops.cast(ops.softmax(logits, axis=-1), dtype)
        if dropout_keep is not None:
            rate = self.attention_dropout or 0.0
            probs = ops.where(dropout_keep, probs / ops.cast(1.0 - rate, dtype), ops.zeros_like(probs))
        else:
            probs = self.dropout(probs, training=training)
        return probs, scores

    # ------------------------------------------------------------------------------- cached decoding
    def decoding_constants(self):
        """Per search: the query/key/value kernels side by side (d, 2·h·dk + h·dv) and their biases.

        One matmul instead of three: a decoding step is a chain of matrix-vector products whose cost is
        reading the weights, and three calls read the input three times and pay three call overheads.
        """
        dtype = self.q_dense.compute_dtype
        denses = (self.q_dense, self.k_dense, self.v_dense)
        kernel = ops.concatenate([ops.cast(d.kernel, dtype) for d in denses], axis=1)
        bias = (ops.concatenate([ops.cast(d.bias, dtype) for d in denses], axis=0) if self.use_bias
                else ops.zeros((kernel.shape[1],), dtype))
        return {'qkv_kernel': kernel, 'qkv_bias': bias}

    def _cached_attention(self, q, k, v, biases, cache, decoding):
        """Self-attention of the new tokens q = k = v (rows, n, d) over the cached keys/values and themselves.

        cache['rows']: 'key' (rows, h, dk, T) (stored transposed, so a step multiplies without
        transposing) and 'value' (rows, h, T, dv); the new keys/values are written at slots
        decoding.index .. index + n. cache['prefix'] (optional): the same for a shared prefix, one row per
        input, met through `decoding.grouping`. Biases cover the prefix slots then the rows slots
        (rows, 1|h, n, S + T). Returns (outputs, cache).
        """
        if k is not q or v is not q:
            raise NotImplementedError('%s: cached decoding supports self-attention (query = key = value) only'
                                      % self.name)
        cache = cache or {}
        constants = cache.get('constants') or self.decoding_constants()
        heads, key_size, head_size = self.heads, self.key_size, self.head_size
        qkv = ops.matmul(q, constants['qkv_kernel']) + constants['qkv_bias']            # (rows, n, ·)
        rows, n = ops.shape(qkv)[0], ops.shape(qkv)[1]
        qw = ops.reshape(qkv[..., :heads * key_size], (rows, n, heads, key_size))
        kw = ops.reshape(qkv[..., heads * key_size:2 * heads * key_size], (rows, n, heads, key_size))
        vw = ops.reshape(qkv[..., 2 * heads * key_size:], (rows, n, heads, head_size))
        qw, kw = self.apply_positions(qw, kw, decoding.positions)
        qw = ops.transpose(self._scaled(qw), (0, 2, 1, 3))                                # (rows, h, n, dk)
        kw = ops.transpose(kw, (0, 2, 3, 1))                                              # (rows, h, dk, n)
        vw = ops.transpose(vw, (0, 2, 1, 3))                                              # (rows, h, n, dv)
        if cache.get('rows') is None:
            key, value = kw, vw
        else:
            key = write_slots(cache['rows']['key'], kw, decoding.index, axis=3)
            value = write_slots(cache['rows']['value'], vw, decoding.index, axis=2)
        scores = ops.matmul(qw, ops.cast(key, qw.dtype))                                   # (rows, h, n, T)
        prefix = cache.get('prefix')
        if prefix is not None:
            scores = ops.concatenate([grouped_matmul(qw, prefix['key'], decoding.grouping), scores], axis=3)
        probs, scores = self.attention_probs(scores, biases, qw.dtype, training=False)
        if prefix is None:
            context = ops.matmul(probs, ops.cast(value, qw.dtype))
        else:
            n_prefix = ops.shape(prefix['key'])[3]
            context = (grouped_matmul(probs[..., :n_prefix], prefix['value'], decoding.grouping)
                       + ops.matmul(probs[..., n_prefix:], ops.cast(value, qw.dtype)))   # (rows, h, n, dv)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (rows, n, heads * head_size))
        output = self.o_dense(context)
        new_cache = {'rows': {'key': key, 'value': value}, 'constants': constants}
        if prefix is not None:
            new_cache['prefix'] = prefix
        return ([output, scores] if self.return_attention_scores else output), new_cache

    def continue_cache(self, cache, rows, capacity, prefix_rows=None, prefix_length=None):
        """The cache of a prefill → the cache of the steps after it (see `bert4keras_ext.caching`)."""
        key, value = cache['rows']['key'], cache['rows']['value']
        prefix_rows = prefix_rows or key.shape[0]
        prefix_length = prefix_length or key.shape[3]
        prefix = {'key': pad_axis(pad_axis(key, 0, prefix_rows), 3, prefix_length),
                  'value': pad_axis(pad_axis(value, 0, prefix_rows), 2, prefix_length)}
        empty = {'key': ops.zeros((rows, self.heads, self.key_size, capacity), key.dtype),
                 'value': ops.zeros((rows, self.heads, capacity, self.head_size), value.dtype)}
        return {'prefix': prefix, 'rows': empty, 'constants': cache['constants']}

    def _split_heads(self, x, size):
        return ops.reshape(x, tuple(ops.shape(x)[:2]) + (self.heads, size))

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            return [mask[0], None] if self.return_attention_scores else mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        q_shape = input_shape[0]
        out = tuple(q_shape[:-1]) + (self.out_dim or q_shape[-1],)
        if self.return_attention_scores:
            return [out, (q_shape[0], self.heads, q_shape[1], input_shape[1][1])]
        return out

    def get_config(self):
        config = super().get_config()
        config.update({
            'heads': self.heads,
            'head_size': self.head_size,
            'out_dim': self.out_dim,
            'key_size': self.key_size,
            'use_bias': self.use_bias,
            'attention_scale': self.attention_scale,
            'attention_dropout': self.attention_dropout,
            'return_attention_scores': self.return_attention_scores,
            'normalization': self.normalization,
            'scale_base': self.scale_base,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
            'recompute': self.recompute,
        })
        return config


@register
class FlatDense(keras.layers.Dense):
    """`keras.layers.Dense` whose (b, ..., d) inputs are multiplied as one (rows, d) matrix, with the bias
    added by ``tf.nn.bias_add`` on TensorFlow: that MatMul → BiasAdd (→ activation) chain is what
    TensorFlow's oneDNN graph rewrite fuses into one kernel, which Keras' batched matmul + add is not.
    Same weights (`kernel`, `bias`), same results; measured on the feed-forward block at 16 × 128
    (2-core AVX-512 CPU): 91 ms instead of 95 ms. Used inside `FeedForward` and `MultiHeadAttention`.
    Other backends, LoRA and quantised kernels take Keras' own path.
    """

    def call(self, inputs, training=None):
        if (keras.backend.backend() != 'tensorflow' or self.lora_enabled or self.quantization_mode
                or len(inputs.shape) < 3):
            return super().call(inputs, training=training)
        import tensorflow as tf
        rows = ops.reshape(inputs, (-1, ops.shape(inputs)[-1]))
        x = ops.matmul(rows, self.kernel)
        if self.bias is not None:
            x = tf.nn.bias_add(x, ops.cast(self.bias, x.dtype))
        if self.activation is not None:
            x = self.activation(x)
        return ops.reshape(x, tuple(ops.shape(inputs)[:-1]) + (self.units,))


@register
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward block: Dense(units, activation) → Dense(input_dim).

    (b, n, d) → (b, n, d). Weights in order: inner kernel/bias, output kernel/bias (Google's
    `intermediate/dense` and `output/dense`).
    """

    def __init__(self, units, activation='gelu', use_bias=True, kernel_initializer='glorot_uniform', recompute=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.recompute = recompute
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        self.inner_dense = FlatDense(self.units, activation=get_activation(self.activation),
                                     use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                     name='inner_dense', dtype=self.dtype_policy)
        self.inner_dense.build(input_shape)
        self.output_dense = FlatDense(input_shape[-1], use_bias=self.use_bias,
                                      kernel_initializer=self.kernel_initializer, name='output_dense',
                                      dtype=self.dtype_policy)
        self.output_dense.build(tuple(input_shape[:-1]) + (self.units,))

    def call(self, inputs, training=None):
        if self.recompute and training:  # keep only the input; recompute the wide activation
            return keras.remat(lambda x: self.output_dense(self.inner_dense(x)))(inputs)
        return self.output_dense(self.inner_dense(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            'units': self.units,
            'activation': self.activation if isinstance(self.activation, str) else
            keras.activations.serialize(self.activation),
            'use_bias': self.use_bias,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
            'recompute': self.recompute,
        })
        return config


@register
class ExtractToken(keras.layers.Layer):
    """Picks one position of a sequence: (b, n, d) → (b, d). BERT's pooler reads [CLS] (index 0)."""

    def __init__(self, index=0, **kwargs):
        super().__init__(**kwargs)
        self.index = int(index)

    def call(self, inputs):
        return inputs[:, self.index]

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config['index'] = self.index
        return config


@register
class AttentionMask(keras.layers.Layer):
    """Builds the bool attention mask (True = may attend) shared by all attention layers.

    Built once per batch from the token ids (and segment ids for 'unilm'), never per layer.

    mode:
      'padding' — inputs token_ids (b, n) → (b, 1, 1, n): keys with id 0 are hidden.
      'lm'      — inputs token_ids (b, n) → (b, 1, n, n): causal (key ≤ query) AND padding.
      'unilm'   — inputs [token_ids, segment_ids] → (b, 1, n, n): with c = cumsum(segment_ids), query q
                  sees key k iff c[k] ≤ c[q] (source bidirectional, target causal: Dong et al. 2019)
                  AND padding.
    """

    MODES = ('padding', 'lm', 'unilm')

    def __init__(self, mode='padding', **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError('AttentionMask: mode must be one of %s, got %r' % (self.MODES, mode))
        self.mode = mode

    # Cached decoding (see `bert4keras_ext.caching`): the mask of the new tokens over the cached ones.
    supports_decoding_cache = True

    def call(self, inputs, cache=None, decoding=None):
        if self.mode == 'unilm':
            token_ids, segment_ids = inputs
        else:
            token_ids = inputs
        if decoding is not None:
            return self._cached_mask(token_ids, segment_ids if self.mode == 'unilm' else None, cache, decoding)
        allowed = ops.not_equal(token_ids, 0)[:, None, None, :]  # (b, 1, 1, n)
        if self.mode == 'lm':
            n = ops.shape(token_ids)[1]
            idx = ops.arange(n)
            allowed = ops.logical_and(allowed, (idx[None, :] <= idx[:, None])[None, None])
        elif self.mode == 'unilm':
            c = ops.cumsum(ops.cast(segment_ids, 'int32'), axis=1)
            allowed = ops.logical_and(allowed, (c[:, None, :] <= c[:, :, None])[:, None])
        return allowed

    def _cached_mask(self, token_ids, segment_ids, cache, decoding):
        """The mask (rows, 1, n, S + T) of the new tokens over the prefix slots and the rows slots.

        Every token has an *order*: its position for 'lm', the running count of segment-1 tokens for
        'unilm' (0 for all in 'padding' mode); a query sees the valid keys whose order is <= its own, which
        is the rule of the full masks above. cache['rows']: 'order' (rows, T) int32, 'valid' (rows, T) bool,
        'last' (rows,) int32 (the order of each row's latest token); cache['prefix']: 'order', 'valid' of a
        shared prefix (one row per input).
        """
        cache = cache or {}
        rows_cache = cache.get('rows')
        token_ids = ops.cast(token_ids, 'int32')
        valid = ops.not_equal(token_ids, 0)
        last = rows_cache['last'] if rows_cache is not None else ops.zeros((ops.shape(token_ids)[0],), 'int32')
        if self.mode == 'lm':
            order = ops.cast(decoding.positions, 'int32')
        elif self.mode == 'unilm':
            order = last[:, None] + ops.cumsum(ops.cast(segment_ids, 'int32'), axis=1)
        else:
            order = ops.zeros_like(token_ids)
        if rows_cache is None:
            key_order, key_valid = order, valid
        else:
            key_order = write_slots(rows_cache['order'], order, decoding.index, axis=1)
            key_valid = write_slots(rows_cache['valid'], valid, decoding.index, axis=1)
        allowed = ops.logical_and(key_valid[:, None, :], key_order[:, None, :] <= order[:, :, None])
        prefix = cache.get('prefix')
        if prefix is not None:
            owner = decoding.grouping.owner
            prefix_order = ops.take(prefix['order'], owner, axis=0)
            prefix_valid = ops.take(prefix['valid'], owner, axis=0)
            allowed = ops.concatenate([ops.logical_and(prefix_valid[:, None, :],
                                                       prefix_order[:, None, :] <= order[:, :, None]), allowed],
                                      axis=2)
        new_cache = {'rows': {'order': key_order, 'valid': key_valid, 'last': order[:, -1]}}
        if prefix is not None:
            new_cache['prefix'] = prefix
        return allowed[:, None], new_cache

    def continue_cache(self, cache, rows, capacity, prefix_rows=None, prefix_length=None):
        """The cache of a prefill → the cache of the steps after it (see `bert4keras_ext.caching`)."""
        order, valid = cache['rows']['order'], cache['rows']['valid']
        prefix_rows = prefix_rows or order.shape[0]
        prefix_length = prefix_length or order.shape[1]
        prefix = {'order': pad_axis(pad_axis(order, 0, prefix_rows), 1, prefix_length),
                  'valid': pad_axis(pad_axis(valid, 0, prefix_rows), 1, prefix_length, value=False)}
        empty = {'order': ops.zeros((rows, capacity), 'int32'), 'valid': ops.zeros((rows, capacity), 'bool'),
                 'last': pad_axis(cache['rows']['last'], 0, rows)}
        return {'prefix': prefix, 'rows': empty}

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if self.mode == 'unilm' else input_shape
        if self.mode == 'padding':
            return (shape[0], 1, 1, shape[1])
        return (shape[0], 1, shape[1], shape[1])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(
            [i.shape for i in inputs] if isinstance(inputs, (list, tuple)) else inputs.shape), dtype='bool')

    def get_config(self):
        config = super().get_config()
        config['mode'] = self.mode
        return config


@register
class Loss(keras.layers.Layer):
    """A layer that adds a loss to the model — the bert4keras way of writing losses inside the graph.

    Subclass and implement `compute_loss(inputs, mask=None)`; the layer adds that loss with
    `add_loss` and returns `inputs[output_axis]` (or all inputs when `output_axis` is None), e.g.::

        class CrossEntropy(Loss):
            def compute_loss(self, inputs, mask=None):
                y_true, y_pred = inputs
                return K.mean(K.sparse_categorical_crossentropy(y_true, y_pred))

        output = CrossEntropy(1)([y_in, model.output])
        train_model = keras.Model(model.inputs + [y_in], output)
        train_model.compile(optimizer=Adam(2e-5))          # no `loss=`: the layer supplies it
    """

    def __init__(self, output_axis=None, **kwargs):
        super().__init__(**kwargs)
        self.output_axis = output_axis
        self.supports_masking = True

    def call(self, inputs, mask=None):
        loss = self.compute_loss(inputs, mask)
        self.add_loss(loss)
        if self.output_axis is None:
            return inputs
        if isinstance(self.output_axis, (list, tuple)):
            return [inputs[i] for i in self.output_axis]
        return inputs[self.output_axis]

    def compute_loss(self, inputs, mask=None):
        raise NotImplementedError('Subclasses of Loss implement compute_loss(inputs, mask=None)')

    def compute_mask(self, inputs, mask=None):
        if mask is None or self.output_axis is None:
            return mask
        if isinstance(self.output_axis, (list, tuple)):
            return [mask[i] for i in self.output_axis]
        return mask[self.output_axis]

    def compute_output_shape(self, input_shape):
        if self.output_axis is None:
            return input_shape
        if isinstance(self.output_axis, (list, tuple)):
            return [input_shape[i] for i in self.output_axis]
        return input_shape[self.output_axis]

    def get_config(self):
        config = super().get_config()
        config['output_axis'] = self.output_axis
        return config


# The sequence-labelling and span heads live in heads.py; bert4keras scripts import them from layers.
from bert4keras_ext.heads import (  # noqa: E402,F401
    AMSoftmaxDense, ConditionalRandomField, EfficientGlobalPointer, GlobalPointer, MaximumEntropyMarkovModel,
)

__all__ += ['ConditionalRandomField', 'MaximumEntropyMarkovModel', 'GlobalPointer', 'EfficientGlobalPointer',
            'AMSoftmaxDense']

# The rest of bert4keras' layers module (extra_layers.py, positions.py) and the backend functions it
# re-exported, so ``from bert4keras_ext.layers import ScaleOffset, sequence_masking`` works as in bert4keras.
from bert4keras_ext.backend import (  # noqa: E402,F401
    align, apply_rotary_position_embeddings, attention_normalize, recompute_grad, sequence_masking,
    sinusoidal_embeddings,
)
from bert4keras_ext.extra_layers import (  # noqa: E402,F401
    BatchConcat, BatchSplit, Concatenate1D, GlobalAveragePooling1D, GlobalMaxPooling1D, Layer, ScaleOffset,
    integerize_shape,
)
from bert4keras_ext.positions import RelativePositionEmbedding, SinusoidalPositionEmbedding  # noqa: E402,F401

__all__ += ['Layer', 'ScaleOffset', 'Concatenate1D', 'BatchSplit', 'BatchConcat', 'GlobalAveragePooling1D',
            'GlobalMaxPooling1D', 'SinusoidalPositionEmbedding', 'RelativePositionEmbedding', 'align',
            'apply_rotary_position_embeddings', 'attention_normalize', 'integerize_shape', 'recompute_grad',
            'sequence_masking', 'sinusoidal_embeddings']
