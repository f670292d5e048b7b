"""Span heads: `GlobalPointer` and `EfficientGlobalPointer` (scores for every (start, end) pair, per type)."""
import math

from bert4keras_ext.backend import keras, ops, sinusoidal_embeddings
from bert4keras_ext.nn.common import register
from bert4keras_ext.nn.head_common import _FILL, _split_inputs

__all__ = ['GlobalPointer', 'EfficientGlobalPointer', 'apply_rotary_position_embeddings']


def apply_rotary_position_embeddings(x, seq_axis=1):
    """RoPE (Su et al.) with positions 0..n-1 along `seq_axis`, bert4keras' interleaved convention.

    x (b, n, ..., d) with d even. Pairs (x[2i], x[2i+1]) are rotated by angle pos·10000^(-2i/d):
    out = x·cos + rot(x)·sin with rot(x) = (-x[1], x[0], -x[3], x[2], …).
    """
    d = x.shape[-1]
    n = ops.shape(x)[seq_axis]
    emb = sinusoidal_embeddings(ops.arange(n, dtype='float32'), d)  # (n, d): sin, cos, sin, cos, …
    sin = ops.repeat(emb[:, 0::2], 2, axis=-1)
    cos = ops.repeat(emb[:, 1::2], 2, axis=-1)
    shape = [1] * len(x.shape)
    shape[seq_axis] = -1
    shape[-1] = d
    sin = ops.cast(ops.reshape(sin, shape), x.dtype)
    cos = ops.cast(ops.reshape(cos, shape), x.dtype)
    rotated = ops.reshape(ops.stack([-x[..., 1::2], x[..., 0::2]], axis=-1), ops.shape(x))
    return x * cos + rotated * sin


def _check_pointer_args(name, heads, head_size, rope):
    for arg, value in (('heads', heads), ('head_size', head_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError('%s: %s must be a positive int, got %r' % (name, arg, value))
    if rope and head_size % 2:
        raise ValueError('%s: head_size must be even when RoPE=True (rotations act on pairs), got %d'
                         % (name, head_size))


def _mask_span_scores(logits, mask, tril_mask):
    """Fill padded rows/cols (and i > j when tril_mask) of (b, h, n, n) scores with the fill value."""
    allowed = None
    if mask is not None:
        mask = ops.cast(mask, 'bool')
        allowed = ops.logical_and(mask[:, None, :, None], mask[:, None, None, :])
    if tril_mask:
        n = ops.shape(logits)[-1]
        idx = ops.arange(n)
        upper = (idx[:, None] <= idx[None, :])[None, None]
        allowed = upper if allowed is None else ops.logical_and(allowed, upper)
    if allowed is None:
        return logits
    return ops.where(allowed, logits, _FILL)


@register
class GlobalPointer(keras.layers.Layer):
    """GlobalPointer span scorer (bert4keras `GlobalPointer`, kexue.fm/archives/8373).

    Input (b, n, D) with a Keras mask, or `[x, mask]`. Output float32 (b, heads, n, n):
    s_α(i, j) = q_{i,α}·k_{j,α} / √head_size, the score that tokens i..j (inclusive) form a span of
    type α. With `RoPE` (default) q and k are rotated by their positions (relative-position aware).
    Padded rows/columns and, with `tril_mask` (default), the lower triangle i > j are set to -1e12.
    Decode: spans with score > 0.

    Weights: one Dense(heads·2·head_size) named `dense`; per head, the first half of its chunk is
    q, the second k.
    """

    def __init__(self, heads, head_size, RoPE=True, use_bias=True, tril_mask=True,
                 kernel_initializer='lecun_normal', **kwargs):
        super().__init__(**kwargs)
        _check_pointer_args(type(self).__name__, heads, head_size, RoPE)
        self.heads = int(heads)
        self.head_size = int(head_size)
        self.RoPE = bool(RoPE)
        self.use_bias = bool(use_bias)
        self.tril_mask = bool(tril_mask)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def _dense(self, units, name, input_shape):
        layer = keras.layers.Dense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                   name=name, dtype=self.dtype_policy)
        layer.build(input_shape)
        return layer

    @staticmethod
    def _x_shape(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def build(self, input_shape):
        self.dense = self._dense(self.heads * self.head_size * 2, 'dense', self._x_shape(input_shape))

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        x = self.dense(x)
        x = ops.reshape(x, tuple(ops.shape(x)[:2]) + (self.heads, self.head_size * 2))
        qw, kw = x[..., :self.head_size], x[..., self.head_size:]
        if self.RoPE:
            qw = apply_rotary_position_embeddings(qw)
            kw = apply_rotary_position_embeddings(kw)
        logits = ops.einsum('bmhd,bnhd->bhmn', qw, kw)
        logits = ops.cast(logits, 'float32') / math.sqrt(self.head_size)
        return _mask_span_scores(logits, mask, self.tril_mask)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = self._x_shape(input_shape)
        return (shape[0], self.heads, shape[1], shape[1])

    def compute_output_spec(self, inputs, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.update({
            'heads': self.heads,
            'head_size': self.head_size,
            'RoPE': self.RoPE,
            'use_bias': self.use_bias,
            'tril_mask': self.tril_mask,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
        })
        return config


@register
class EfficientGlobalPointer(GlobalPointer):
    """Parameter-efficient GlobalPointer (bert4keras `EfficientGlobalPointer`, kexue.fm/archives/8877).

    Same inputs/outputs/masking as `GlobalPointer`. One shared projection h = Dense(2·head_size)(x)
    (`p_dense`); q = h[..., 0::2], k = h[..., 1::2] (then RoPE); per-type biases
    b = Dense(2·heads)(h) / 2 (`q_dense`, applied to the pre-RoPE h):
    s_α(i, j) = q_i·k_j / √head_size + b[j, 2α] + b[i, 2α+1].
    Extra parameters per entity type: about 4·head_size instead of 2·D·head_size.
    """

    def build(self, input_shape):
        shape = self._x_shape(input_shape)
        self.p_dense = self._dense(self.head_size * 2, 'p_dense', shape)
        self.q_dense = self._dense(self.heads * 2, 'q_dense', shape[:-1] + (self.head_size * 2,))

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        h = self.p_dense(x)
        qw, kw = h[..., 0::2], h[..., 1::2]
        if self.RoPE:
            qw = apply_rotary_position_embeddings(qw)
            kw = apply_rotary_position_embeddings(kw)
        logits = ops.cast(ops.einsum('bmd,bnd->bmn', qw, kw), 'float32') / math.sqrt(self.head_size)
        bias = ops.transpose(ops.cast(self.q_dense(h), 'float32'), (0, 2, 1)) / 2  # (b, 2·heads, n)
        logits = logits[:, None] + bias[:, 0::2, None, :] + bias[:, 1::2, :, None]
        return _mask_span_scores(logits, mask, self.tril_mask)
