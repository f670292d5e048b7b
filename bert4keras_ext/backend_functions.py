"""bert4keras 0.11.5's tensor functions on `keras.ops`: masking, alignment and reshaping helpers,
`batch_gather`, pooling, attention normalisers, sinusoidal / rotary position encodings.

Import them from `bert4keras_ext.backend` (which re-exports everything here), as in bert4keras. This
module imports only Keras, so every other module can import it. Differences from bert4keras:

- '-inf' / 'inf' fill values are the large finite numbers of `mask_value` (a fully masked softmax row
  stays finite, also in float16); the attention normalisers use them instead of -inf too.
- `dtype(x)` is None for anything that is not a tensor or variable (numpy arrays included), as bert4keras'
  fault-tolerant wrapper of Keras 2's `K.dtype` behaved.
"""
import math

import keras
from keras import ops

__all__ = [
    'mask_value', 'sequence_masking', 'align', 'sinusoidal_embeddings', 'reshape', 'flatten', 'dtype', 'where',
    'batch_gather', 'pool1d', 'divisible_temporal_padding', 'root_mean_square', 'swish', 'leaky_relu',
    'attention_normalize', 'Sinusoidal', 'apply_rotary_position_embeddings',
]

register = keras.saving.register_keras_serializable(package='bert4keras_ext')


# ---------------------------------------------------------------------------------------------------
# Masking and alignment
# ---------------------------------------------------------------------------------------------------
def mask_value(dtype):
    """A large finite negative number that is safe in `dtype`.

    -inf would turn a fully masked row into NaN after softmax (-inf - -inf); a finite value keeps it a
    uniform distribution. float16 tops out at 65504, so it gets -3e4 (two such biases can still be
    added without overflowing); wider types get -1e12 like bert4keras.
    """
    dtype = keras.backend.standardize_dtype(dtype)
    if dtype == 'float16':
        return -3e4
    return -1e12


def _fill_value(value, dtype):
    """`value` for sequence_masking as a scalar of `dtype`: '-inf' / 'inf' become the large finite value
    `mask_value(dtype)` (so softmax over a fully masked row stays finite); numbers are used as given."""
    if isinstance(value, str):
        if value not in ('-inf', 'inf'):
            raise ValueError("sequence_masking: value must be a number, '-inf' or 'inf', got %r" % value)
        big = -mask_value(dtype)
        value = -big if value == '-inf' else big
    return ops.cast(value, dtype)


def sequence_masking(x, mask=None, value=0, axis=None, bias=None, return_mask=False):
    """Replace the masked positions of `x` by `value` (bert4keras 0.11.5 `sequence_masking`).

    Args:
        x: tensor (b, n, ...) (any dtype, bool included).
        mask: bool / 0-1 tensor (b, n), True/1 = keep; None = no mask.
        value: a number, or '-inf' / 'inf' for the large finite negative / positive of `x`'s dtype
            (-1e12, or -3e4 in float16; see `mask_value`). A number — even -np.inf — is used as given.
        axis: the axis of `x` that `mask` runs along (default 1), or a list of axes: the mask is then
            applied along each (e.g. [2, 3] masks both the rows and the columns of (b, h, n, n) scores).
        bias: an extra bias added to `x` at the kept positions (float tensor broadcastable to `x`), or a bool
            tensor broadcastable to `x` AND-ed into the mask.
        return_mask: also return the mask as aligned to `x` (None when neither mask nor bool bias is given).
    Returns:
        tensor shaped like `x` (and the aligned mask if `return_mask`).
    """
    full_mask = None
    if mask is None and bias is not None:
        if keras.backend.standardize_dtype(bias.dtype) == 'bool':
            full_mask = bias
            x = ops.where(full_mask, x, _fill_value(value, x.dtype))
        else:
            x = x + ops.cast(bias, x.dtype)
    elif mask is not None:
        ndim = len(x.shape)
        axes = [1] if axis is None else list(axis) if isinstance(axis, (list, tuple)) else [axis]
        axes = [a + ndim if a < 0 else a for a in axes]
        for a in axes:
            if not 0 < a < ndim:
                raise ValueError('sequence_masking: axis %r is not a sequence axis of a %d-d tensor (the mask '
                                 'is (batch, seq_len); axis 0 is the batch)' % (axis, ndim))
        if len(mask.shape) != 2:
            raise ValueError('sequence_masking: mask must be (batch, seq_len), got shape %s' % (tuple(mask.shape),))
        mask = ops.cast(mask, 'bool')
        for a in axes:
            aligned = align(mask, [0, a], ndim)
            full_mask = aligned if full_mask is None else ops.logical_and(full_mask, aligned)
        if bias is not None and keras.backend.standardize_dtype(bias.dtype) == 'bool':
            full_mask = ops.logical_and(full_mask, bias)
        elif bias is not None:
            x = x + ops.cast(bias, x.dtype)
        x = ops.where(full_mask, x, _fill_value(value, x.dtype))
    if return_mask:
        return x, full_mask
    return x


def align(tensor, axes, ndim=None):
    """Insert singleton axes so that axis i of `tensor` lands on axis `axes[i]` of an `ndim`-d tensor
    (bert4keras' "batched expand_dims"). The axes must be increasing once made non-negative.

    e.g. a (b, n) mask aligned to axes [0, 3] of a 4-d score tensor becomes (b, 1, 1, n); a (b, n, d)
    table aligned to [0, 1, -1] of a 4-d tensor becomes (b, n, 1, d).
    """
    axes = list(axes)
    if len(axes) != len(tensor.shape):
        raise ValueError('align: got %d axes %s for a %d-d tensor; give one target axis per axis of the tensor'
                         % (len(axes), axes, len(tensor.shape)))
    if ndim is None:
        if min(axes) < 0:
            raise ValueError('align: negative axes %s need an explicit ndim' % (axes,))
        ndim = max(axes) + 1
    targets = [a + ndim if a < 0 else a for a in axes]
    if any(not 0 <= a < ndim for a in targets) or targets != sorted(set(targets)):
        raise ValueError('align: axes %s must be distinct, increasing and within a %d-d tensor' % (axes, ndim))
    for axis in range(ndim):
        if axis not in targets:
            tensor = ops.expand_dims(tensor, axis)
    return tensor


def sinusoidal_embeddings(pos, dim, base=10000):
    """Sinusoidal position embeddings, interleaved (sin, cos, sin, cos, …) as bert4keras / RoPE use.

    Args:
        pos: float tensor of positions, any shape (...,).
        dim: even embedding size.
    Returns:
        tensor (..., dim).
    """
    if dim % 2:
        raise ValueError('sinusoidal_embeddings: dim must be even, got %d' % dim)
    indices = ops.arange(0, dim // 2, dtype='float32')
    indices = ops.power(float(base), -2.0 * indices / dim)
    angles = ops.einsum('...,d->...d', ops.cast(pos, 'float32'), indices)
    emb = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)  # (..., dim/2, 2)
    return ops.reshape(emb, tuple(ops.shape(angles)[:-1]) + (dim,))


# ---------------------------------------------------------------------------------------------------
# Shapes and dtypes
# ---------------------------------------------------------------------------------------------------
def _dims(x):
    """Axis sizes of `x`: ints where static, scalar tensors where dynamic, None in a symbolic KerasTensor."""
    if isinstance(x, keras.KerasTensor):
        return list(x.shape)
    return list(ops.shape(x))


def _product(values):
    out = 1
    for v in values:
        if v is None:
            return None
        out = out * v
    return out


def _reshape_to(tensor, dims):
    unknown = sum(d is None for d in dims)
    if unknown > 1:
        raise ValueError('reshape/flatten: the target shape %s has more than one unknown size; call this on a '
                         'concrete tensor (e.g. inside a Lambda layer) rather than on a symbolic one' % (dims,))
    return ops.reshape(tensor, [-1 if d is None else d for d in dims])


def reshape(tensor, *args):
    """Reshape, or reshape single axes: ``reshape(x, shape)`` or ``reshape(x, shape1, axis1, shape2, axis2, ...)``.

    In the second form axis `axis_i` of `tensor` becomes the axes `shape_i` (one entry may be -1), the
    others are kept, e.g. ``reshape(x, (heads, -1), 2)`` turns (b, n, h·d) into (b, n, h, d).
    """
    if len(args) == 1:
        return ops.reshape(tensor, args[0])
    if not args or len(args) % 2:
        raise ValueError('reshape(tensor, *args): args must be one shape or pairs (shape, axis), got %r' % (args,))
    dims = [[d] for d in _dims(tensor)]
    for shape, axis in zip(args[::2], args[1::2]):
        shape = list(shape)
        if shape.count(-1) > 1:
            raise ValueError('reshape: at most one -1 per shape, got %s' % (shape,))
        if -1 in shape:
            size = dims[axis][0]
            known = _product([s for s in shape if s != -1])
            shape[shape.index(-1)] = None if size is None else size // known
        dims[axis] = shape
    return _reshape_to(tensor, [d for shape in dims for d in shape])


def flatten(tensor, start=None, end=None):
    """Merge the axes [start, end) of `tensor` into one (default: all of them, giving a vector)."""
    dims = _dims(tensor)
    start, end = start or 0, end or len(dims)
    start, end = start % len(dims) if start < 0 else start, end % len(dims) if end < 0 else end
    return _reshape_to(tensor, dims[:start] + [_product(dims[start:end])] + dims[end:])


def _is_tensor(x):
    return isinstance(x, (keras.KerasTensor, keras.Variable)) or ops.is_tensor(x)


def dtype(x):
    """The dtype name of a tensor / variable, or None for anything else (numbers, lists, numpy arrays),
    as bert4keras' fault-tolerant `K.dtype` wrapper."""
    if not _is_tensor(x):
        return None
    return keras.backend.standardize_dtype(x.dtype)


def where(cond, x, y):
    """`ops.where` with broadcasting, where a non-tensor branch (a number or array) takes the other
    branch's dtype (floatx when both are non-tensors) and `cond` is cast to bool."""
    dx, dy = dtype(x), dtype(y)
    if dx is None and dy is None:
        dx = dy = keras.config.floatx()
    x = ops.convert_to_tensor(x, dtype=dx or dy)
    y = ops.convert_to_tensor(y, dtype=dy or dx)
    if dtype(cond) != 'bool':
        cond = ops.cast(cond, 'bool')
    return ops.where(cond, x, y)


def batch_gather(params, indices):
    """Gather along the first non-batch axis of `indices`, per batch entry (TF's old `batch_gather`).

    With k = indices.ndim - 1 leading batch axes shared by both arguments:
    ``out[i_1..i_k, j, ...] = params[i_1..i_k, indices[i_1..i_k, j], ...]``.

    Args:
        params: tensor (B..., n, ...rest).
        indices: integer tensor (B..., m) (floats are cast to int32), values in [0, n).
    Returns:
        tensor (B..., m, ...rest), e.g. (b, n, d) gathered with (b, 2) → (b, 2, d).
    """
    if dtype(indices) is None or 'int' not in dtype(indices):
        indices = ops.cast(indices, 'int32')
    k = len(indices.shape) - 1
    if len(params.shape) <= k:
        raise ValueError('batch_gather: params (shape %s) needs more axes than the %d batch axes of indices '
                         '(shape %s)' % (tuple(params.shape), k, tuple(indices.shape)))
    for a, b in zip(params.shape[:k], indices.shape[:k]):
        if a is not None and b is not None and a != b:
            raise ValueError('batch_gather: the leading (batch) axes of params %s and indices %s differ'
                             % (tuple(params.shape), tuple(indices.shape)))
    rest = len(params.shape) - k - 1
    index = ops.reshape(indices, tuple(_dims(indices)) + (1,) * rest) if rest else indices
    if rest:
        index = ops.broadcast_to(index, tuple(_dims(indices)) + tuple(_dims(params)[k + 1:]))
    return ops.take_along_axis(params, index, axis=k)


# ---------------------------------------------------------------------------------------------------
# Sequence functions
# ---------------------------------------------------------------------------------------------------
def pool1d(x, pool_size, strides=1, padding='valid', data_format=None, pool_mode='max'):
    """Pool a vector sequence along its time axis.

    Args:
        x: (b, n, d) for data_format 'channels_last' (the default), (b, d, n) for 'channels_first'.
        pool_mode: 'max' or 'avg'.
    """
    if pool_mode not in ('max', 'avg'):
        raise ValueError("pool1d: pool_mode must be 'max' or 'avg', got %r" % (pool_mode,))
    pool = ops.max_pool if pool_mode == 'max' else ops.average_pool
    return pool(x, pool_size, strides=strides, padding=padding, data_format=data_format or 'channels_last')


def divisible_temporal_padding(x, n):
    """Right-pad axis 1 of `x` (b, len, ...) with zeros to the next multiple of `n`."""
    length = _dims(x)[1]
    if length is None:
        raise ValueError('divisible_temporal_padding: call it on a concrete tensor (e.g. inside a Lambda layer)')
    pad = (n - length % n) % n
    return ops.pad(x, [[0, 0], [0, pad]] + [[0, 0]] * (len(x.shape) - 2))


def root_mean_square(x, axis=None, keepdims=False):
    """sqrt(mean(x²)) over `axis`."""
    return ops.sqrt(ops.mean(ops.square(x), axis=axis, keepdims=keepdims))


def swish(x):
    """x · sigmoid(x)."""
    return ops.silu(x)


def leaky_relu(x, alpha=0.2):
    """max(x, alpha·x) for 0 < alpha < 1 (note bert4keras' default alpha 0.2)."""
    return ops.leaky_relu(x, negative_slope=alpha)


register(root_mean_square)


def attention_normalize(a, mask=None, axis=-1, method='softmax', bias=None):
    """Normalise attention scores `a` along `axis` after masking (bert4keras 0.11.5).

    Args:
        a: scores, e.g. (b, h, n, m).
        mask: (b, m) bool/0-1 key mask, applied along `axis` (masked keys get weight 0), or None.
        bias: float bias added to `a`, or bool mask broadcastable to `a` (see `sequence_masking`).
        method: 'softmax'; 'squared_relu' — relu(a)² / l (arxiv.org/abs/2202.10447); 'softmax_plus' —
            softmax(a · log(max(l, 16)) / log 512) (kexue.fm/archives/8823); l = number of visible keys
            (a.shape[-1] without a mask).
    """
    if method not in ('softmax', 'squared_relu', 'softmax_plus'):
        raise ValueError("attention_normalize: method must be 'softmax', 'squared_relu' or 'softmax_plus', got %r"
                         % (method,))
    out_dtype = a.dtype
    if keras.backend.standardize_dtype(out_dtype) in ('float16', 'bfloat16'):
        a = ops.cast(a, 'float32')  # keeps the masked -1e12 and the length scaling finite
    a, full_mask = sequence_masking(a, mask, '-inf', axis, bias, True)
    if method == 'softmax':
        return ops.cast(ops.softmax(a, axis=axis), out_dtype)
    if full_mask is None:
        length = ops.cast(ops.shape(a)[-1], a.dtype)
    else:
        length = ops.sum(ops.cast(full_mask, a.dtype), axis=axis, keepdims=True)
    if method == 'squared_relu':
        out = ops.square(ops.relu(a)) / length
    else:
        length = ops.maximum(length, 16.0)  # very short sequences: no sharpening below 16 keys
        out = ops.softmax(a * ops.log(length) / math.log(512), axis=axis)
    return ops.cast(out, out_dtype)


@register
class Sinusoidal(keras.initializers.Initializer):
    """Initializer: the (size, dim) sinusoidal position table (sin, cos interleaved; arxiv.org/abs/1706.03762)."""

    def __call__(self, shape, dtype=None):
        size, dim = shape
        table = sinusoidal_embeddings(ops.arange(size, dtype='float32'), dim)
        return ops.cast(table, dtype or keras.config.floatx())

    def get_config(self):
        return {}


def apply_rotary_position_embeddings(sinusoidal, *tensors):
    """Rotate interleaved pairs (x[2i], x[2i+1]) of each tensor by the angles of `sinusoidal` (RoPE).

    Args:
        sinusoidal: (b, n, d) (or (1, n, d)) table from `sinusoidal_embeddings`: sin at even, cos at odd
            indices of each pair.
        *tensors: one or more tensors (b, n, ..., d) of the same shape (e.g. queries and keys (b, n, h, d)).
    Returns:
        the rotated tensor, or a list of them: out[2i] = x[2i]·cos - x[2i+1]·sin,
        out[2i+1] = x[2i+1]·cos + x[2i]·sin.
    """
    if not tensors:
        raise ValueError('apply_rotary_position_embeddings: give at least one tensor to rotate')
    shape = tuple(tensors[0].shape)
    if any(tuple(t.shape) != shape for t in tensors[1:]):
        raise ValueError('apply_rotary_position_embeddings: all tensors must have the same shape, got %s'
                         % [tuple(t.shape) for t in tensors])
    ndim = len(shape)
    sinusoidal = align(ops.cast(sinusoidal, tensors[0].dtype), [0, 1, -1], ndim)
    cos = ops.repeat(sinusoidal[..., 1::2], 2, axis=-1)
    sin = ops.repeat(sinusoidal[..., ::2], 2, axis=-1)
    outputs = []
    for tensor in tensors:
        rotated = ops.stack([-tensor[..., 1::2], tensor[..., ::2]], axis=-1)
        rotated = ops.reshape(rotated, ops.shape(tensor))
        outputs.append(tensor * cos + rotated * sin)
    return outputs[0] if len(outputs) == 1 else outputs
