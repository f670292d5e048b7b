"""Multi-head attention (explicit masks / biases, log-n scaling, RealFormer scores, the key/value cache of
cached decoding) and the attention masks (padding, LM, UniLM)."""
import math

from bert4keras_ext.backend import keras, mask_value, ops
from bert4keras_ext.caching import grouped_matmul, pad_axis
from bert4keras_ext.nn.common import register
from bert4keras_ext.nn.feed_forward import FlatDense

__all__ = ['MultiHeadAttention', 'AttentionMask']


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

    # Position terms beyond q·k (NEZHA's relative positions): a subclass takes its tensor off the biases in
    # `split_biases` and adds `extra_scores` / `extra_context`; training and cached decoding both call them.
    def split_biases(self, biases):
        """(masks and biases, extra position input or None) from the inputs after q, k, v."""
        return biases, None

    def extra_scores(self, qw, extra):
        """A term added to the scores (b, h, n, m) from the scaled queries qw (b, h, n, dk)."""
        raise NotImplementedError('%s: extra_scores is needed when split_biases returns an extra input'
                                  % type(self).__name__)

    def extra_context(self, probs, extra):
        """A term added to the context (b, h, n, dv) from the attention weights probs (b, h, n, m)."""
        raise NotImplementedError('%s: extra_context is needed when split_biases returns an extra input'
                                  % type(self).__name__)

    def _attention(self, q, k, v, biases, training=None, dropout_keep=None):
        biases, extra = self.split_biases(biases)
        qw, kw, vw = self.project(q, k, v)
        scores = ops.einsum('bqhd,bkhd->bhqk', qw, kw)
        if extra is None:
            output, scores = self.attend(scores, vw, biases, training=training, dropout_keep=dropout_keep)
        else:
            heads_first = ops.transpose(qw, (0, 2, 1, 3))                                    # (b, h, n, dk)
            scores = scores + self.extra_scores(heads_first, extra)
            probs, scores = self.attention_probs(scores, biases, vw.dtype, training=training,
                                                 dropout_keep=dropout_keep)
            context = ops.einsum('bhqk,bkhd->bhqd', probs, vw) + self.extra_context(probs, extra)
            output = ops.transpose(context, (0, 2, 1, 3))                                   # (b, n, h, dv)
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
        biases, extra = self.split_biases(biases)
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
            key = decoding.write(cache['rows']['key'], kw, axis=3)
            value = decoding.write(cache['rows']['value'], vw, axis=2)
        scores = ops.matmul(qw, ops.cast(key, qw.dtype))                                   # (rows, h, n, T)
        prefix = cache.get('prefix')
        if prefix is not None:
            scores = ops.concatenate([grouped_matmul(qw, prefix['key'], decoding.grouping), scores], axis=3)
        if extra is not None:
            scores = scores + self.extra_scores(qw, extra)
        probs, scores = self.attention_probs(scores, biases, qw.dtype, training=False)
        if prefix is None:
            context = ops.matmul(probs, ops.cast(value, qw.dtype))
        else:
            n_prefix = ops.shape(prefix['key'])[3]
            context = (grouped_matmul(probs[..., :n_prefix], prefix['value'], decoding.grouping)
                       + ops.matmul(probs[..., n_prefix:], ops.cast(value, qw.dtype)))   # (rows, h, n, dv)
        if extra is not None:
            context = context + self.extra_context(probs, extra)
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
            key_order = decoding.write(rows_cache['order'], order, axis=1)
            key_valid = decoding.write(rows_cache['valid'], valid, axis=1)
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
