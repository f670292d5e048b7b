"""Layer normalisation, optionally conditional (bert4keras' Conditional Layer Normalization)."""
from bert4keras_ext.backend import get_activation, keras, ops
from bert4keras_ext.nn.common import is_16bit, register

__all__ = ['LayerNormalization']


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
        if is_16bit(x.dtype):
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
