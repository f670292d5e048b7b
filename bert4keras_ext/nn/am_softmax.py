"""`AMSoftmaxDense`: the cosine classifier of AM-Softmax (the losses are in `bert4keras_ext.losses`)."""
from bert4keras_ext.backend import keras, ops
from bert4keras_ext.nn.common import register

__all__ = ['AMSoftmaxDense']


@register
class AMSoftmaxDense(keras.layers.Layer):
    """Cosine classifier for AM-Softmax: normalised inputs against normalised class prototypes.

    Input (b, ..., D) → output float32 (b, ..., units) = cos θ between x and each column of the
    kernel (both L2-normalised, so prototypes are unit vectors without a kernel constraint), clipped
    to [-1, 1]. Train with `losses.sparse_am_softmax_loss` / `am_softmax_loss` (scale s, margin m on
    the target only); at inference rank classes by this cosine. No bias, as AM-Softmax requires.
    """

    def __init__(self, units, kernel_initializer='glorot_uniform', kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or int(units) != units or units < 1:
            raise ValueError('AMSoftmaxDense: units must be a positive int, got %r' % (units,))
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(name='kernel', shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)

    def call(self, inputs):
        x = ops.cast(inputs, 'float32')
        x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        w = ops.cast(self.kernel, 'float32')
        w = w / ops.sqrt(ops.maximum(ops.sum(ops.square(w), axis=0, keepdims=True), 1e-12))
        return ops.clip(ops.matmul(x, w), -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.update({
            'units': self.units,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
            'kernel_regularizer': keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config
