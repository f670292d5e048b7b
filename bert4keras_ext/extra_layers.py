"""bert4keras' small layers: the masking `Layer` base, `ScaleOffset`, masked global pooling, sequence and
batch concatenation/splitting. Re-exported by `bert4keras_ext.layers` (import them from there).

Differences from bert4keras, all forced by Keras 3 or chosen for safety:
- bert4keras replaced ``keras.layers.GlobalAveragePooling1D`` / ``GlobalMaxPooling1D`` inside Keras by its
  masked versions; here they are separate classes (Keras' own are untouched).
- `GlobalAveragePooling1D` returns 0 for a sequence whose positions are all masked (bert4keras: 0/0 = NaN);
  `GlobalMaxPooling1D` then returns the large finite negative -1e12 (bert4keras: -inf).
- `integerize_shape` is a pass-through: Keras 3 shapes are already tuples of ints / None.
"""
import numpy as np

from bert4keras_ext.backend import align, get_activation, keras, ops, sequence_masking

__all__ = [
    'Layer', 'integerize_shape', 'ScaleOffset', 'Concatenate1D', 'BatchSplit', 'BatchConcat',
    'GlobalAveragePooling1D', 'GlobalMaxPooling1D',
]

register = keras.saving.register_keras_serializable(package='bert4keras_ext')


def integerize_shape(func):
    """Decorator bert4keras put on `build(self, input_shape)` to turn TF1 Dimensions into ints; Keras 3
    shapes are already ints / None, so it returns `func` unchanged."""
    return func


@register
class Layer(keras.layers.Layer):
    """bert4keras' base `Layer`: a `keras.layers.Layer` that passes Keras masks through (supports_masking)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True


def _constant_config(value):
    """JSON-friendly form of a ScaleOffset scale/offset argument (bool, None, number, array or tensor)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return np.asarray(ops.convert_to_numpy(value)).tolist()


def _is_set(value):
    return value is not None and value is not False


@register
class ScaleOffset(Layer):
    """x · gamma + beta on the last axis, optionally conditioned on a second input (bert4keras `ScaleOffset`).

    Args:
        scale: True → trainable `gamma` (ones); False/None → no scaling; a number or array → that constant.
        offset: True → trainable `beta` (zeros); False/None → no shift; a number or array → that constant.
        conditional: inputs are ``[x, cond]``; gamma and beta are shifted by zero-initialised, bias-free
            dense projections of `cond` (so the layer starts out unconditional; kexue.fm/archives/7124).
        hidden_units: with `conditional`, first project `cond` to this size (Dense without bias).
        hidden_activation / hidden_initializer: that projection's activation and kernel initializer.
    Input (b, ..., d) (and cond (b, c) or (b, ..., c)); output (b, ..., d). Weights, in order: beta,
    gamma, then the conditional projections (hidden, beta, gamma).
    """

    def __init__(self, scale=True, offset=True, conditional=False, hidden_units=None, hidden_activation='linear',
                 hidden_initializer='glorot_uniform', **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset
        self.conditional = conditional
        self.hidden_units = hidden_units
        self.hidden_activation = hidden_activation
        self.hidden_initializer = keras.initializers.get(hidden_initializer)

    def build(self, input_shape):
        x_shape = input_shape[0] if self.conditional else input_shape
        if self.conditional and (not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2
                                 or not isinstance(input_shape[0], (list, tuple))):
            raise ValueError('ScaleOffset(conditional=True) takes two inputs [x, cond], got input shape %s'
                             % (input_shape,))
        dim = x_shape[-1]
        if self.offset is True:
            self.beta = self.add_weight(name='beta', shape=(dim,), initializer='zeros')
        if self.scale is True:
            self.gamma = self.add_weight(name='gamma', shape=(dim,), initializer='ones')
        if self.conditional:
            cond_shape = tuple(input_shape[1])
            if self.hidden_units is not None:
                self.hidden_dense = keras.layers.Dense(
                    self.hidden_units, activation=get_activation(self.hidden_activation), use_bias=False,
                    kernel_initializer=self.hidden_initializer, name='hidden_dense', dtype=self.dtype_policy)
                self.hidden_dense.build(cond_shape)
                cond_shape = cond_shape[:-1] + (self.hidden_units,)
            if _is_set(self.offset):
                self.beta_dense = keras.layers.Dense(dim, use_bias=False, kernel_initializer='zeros',
                                                     name='beta_dense', dtype=self.dtype_policy)
                self.beta_dense.build(cond_shape)
            if _is_set(self.scale):
                self.gamma_dense = keras.layers.Dense(dim, use_bias=False, kernel_initializer='zeros',
                                                      name='gamma_dense', dtype=self.dtype_policy)
                self.gamma_dense.build(cond_shape)

    def call(self, inputs):
        if self.conditional:
            x, cond = inputs
            if self.hidden_units is not None:
                cond = self.hidden_dense(cond)
            ndim, cond_ndim = len(x.shape), len(cond.shape)
            cond = align(cond, list(range(cond_ndim - 1)) + [ndim - 1], ndim)  # (b, c) → (b, 1, ..., c)
        else:
            x = inputs
        if _is_set(self.scale):
            gamma = self.gamma if self.scale is True else self.scale
            gamma = ops.cast(gamma, x.dtype)
            if self.conditional:
                gamma = gamma + self.gamma_dense(cond)
            x = x * gamma
        if _is_set(self.offset):
            beta = self.beta if self.offset is True else self.offset
            beta = ops.cast(beta, x.dtype)
            if self.conditional:
                beta = beta + self.beta_dense(cond)
            x = x + beta
        return x

    def compute_mask(self, inputs, mask=None):
        if self.conditional:
            return None if mask is None else mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0]) if self.conditional else tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({
            'scale': _constant_config(self.scale),
            'offset': _constant_config(self.offset),
            'conditional': self.conditional,
            'hidden_units': self.hidden_units,
            'hidden_activation': self.hidden_activation if isinstance(self.hidden_activation, str) else
            keras.activations.serialize(self.hidden_activation),
            'hidden_initializer': keras.initializers.serialize(self.hidden_initializer),
        })
        return config


@register
class Concatenate1D(Layer):
    """Concatenate sequences along the time axis: [(b, n1, d), (b, n2, d), ...] → (b, n1 + n2 + ..., d).

    Unlike `keras.layers.Concatenate`, a masked sequence may be joined with an unmasked one: the missing
    mask counts as all-visible, so the output mask is the concatenation of the inputs' masks.
    """

    def call(self, inputs):
        return ops.concatenate(inputs, axis=1)

    def compute_mask(self, inputs, mask=None):
        if mask is None or all(m is None for m in mask):
            return None
        masks = [ops.ones_like(x[..., 0], dtype='bool') if m is None else ops.cast(m, 'bool')
                 for x, m in zip(inputs, mask)]
        return ops.concatenate(masks, axis=1)


def _check_parts(parts):
    if np.ndim(parts) == 0:
        if isinstance(parts, bool) or not isinstance(parts, (int, np.integer)) or parts < 1:
            raise ValueError('BatchSplit: parts must be a positive int or a list of positive proportions, got %r'
                             % (parts,))
        return int(parts)
    parts = [float(p) if not float(p).is_integer() else int(p) for p in np.asarray(parts).ravel()]
    if not parts or any(p <= 0 for p in parts):
        raise ValueError('BatchSplit: proportions must be positive numbers, got %r' % (parts,))
    return parts


@register
class BatchSplit(Layer):
    """Split the batch axis into parts (bert4keras' building block for hand-made data parallelism).

    Args:
        parts: an int k → k parts of ceil(b / k) samples (the last gets the rest, possibly fewer or none);
            a list of proportions, e.g. [1, 3] → cut points floor(b · cumsum(p) / sum(p)).
    Input: a tensor (b, ...) or a list of them; output: the parts in order, for each input in turn
    (so a list of 2 inputs split in 2 gives [x0_part0, x0_part1, x1_part0, x1_part1]). Masks split alike.
    """

    def __init__(self, parts, **kwargs):
        super().__init__(**kwargs)
        self.parts = _check_parts(parts)

    def _count(self):
        return self.parts if isinstance(self.parts, int) else len(self.parts)

    def _split(self, x):
        batch_size = ops.shape(x)[0]
        if isinstance(self.parts, int):
            stride = (batch_size + self.parts - 1) // self.parts
            cuts = [stride * (i + 1) for i in range(self.parts)]
        else:
            total = float(sum(self.parts))
            cumulative = np.cumsum(self.parts).astype('float64')
            if isinstance(batch_size, int):
                cuts = [int(p * batch_size / total) for p in cumulative]
            else:
                batch_size = ops.cast(batch_size, 'float64')
                cuts = [ops.cast(p * batch_size / total, 'int32') for p in cumulative]
        outputs = []
        for i in range(len(cuts)):
            start = 0 if i == 0 else cuts[i - 1]
            outputs.append(x[start:] if i == len(cuts) - 1 else x[start:cuts[i]])
        return outputs

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            return [part for x in inputs for part in self._split(x)]
        return self._split(inputs)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)):
            return [part for m in mask for part in self.compute_mask(None, m)]
        if mask is None:
            return [None] * self._count()
        return self._split(mask)

    def get_config(self):
        config = super().get_config()
        config['parts'] = self.parts
        return config


@register
class BatchConcat(Layer):
    """Concatenate tensors along the batch axis: [(b1, ...), (b2, ...)] → (b1 + b2, ...) (undoes `BatchSplit`).

    The output mask is the concatenation of the masks when every input has one, else None.
    """

    def call(self, inputs):
        return ops.concatenate(inputs, axis=0)

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)) and all(m is not None for m in mask):
            return ops.concatenate(mask, axis=0)
        return None


def _pool_axis(data_format):
    return 1 if data_format == 'channels_last' else 2


@register
class GlobalAveragePooling1D(keras.layers.GlobalAveragePooling1D):
    """Mean over the time axis of the unmasked positions: (b, n, d) → (b, d) (bert4keras' masked version).

    `data_format` 'channels_last' (default, (b, n, d)) or 'channels_first' ((b, d, n)); `keepdims` as Keras.
    """

    def call(self, inputs, mask=None):
        axis = _pool_axis(self.data_format)
        if mask is None:
            return ops.mean(inputs, axis=axis, keepdims=self.keepdims)
        mask = ops.cast(mask, inputs.dtype)
        mask = mask[..., None] if axis == 1 else mask[:, None]
        total = ops.sum(inputs * mask, axis=axis, keepdims=self.keepdims)
        count = ops.sum(mask, axis=axis, keepdims=self.keepdims)
        return total / ops.maximum(count, ops.cast(1, count.dtype))  # an all-masked row gives 0, not NaN

    def compute_mask(self, inputs, mask=None):
        return None


@register
class GlobalMaxPooling1D(keras.layers.GlobalMaxPooling1D):
    """Max over the time axis of the unmasked positions: (b, n, d) → (b, d) (bert4keras' masked version).

    `data_format` 'channels_last' (default, (b, n, d)) or 'channels_first' ((b, d, n)); `keepdims` as Keras.
    """

    def __init__(self, data_format='channels_last', **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        axis = _pool_axis(self.data_format)
        inputs = sequence_masking(inputs, mask, '-inf', axis)
        return ops.max(inputs, axis=axis, keepdims=self.keepdims)

    def compute_mask(self, inputs, mask=None):
        return None
