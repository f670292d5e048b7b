"""What the layer modules share: the serialization registry and two small helpers."""
from bert4keras_ext.backend import keras

__all__ = ['register', 'is_16bit', 'materialised']

# Every layer of the package is registered under 'bert4keras_ext>ClassName' for `.keras` files.
register = keras.saving.register_keras_serializable(package='bert4keras_ext')


def materialised(t):
    """`t` as a tensor of its own (a transposed view becomes a contiguous copy on TensorFlow)."""
    import tensorflow as tf
    return tf.identity(t)


def is_16bit(dtype):
    return keras.backend.standardize_dtype(dtype) in ('float16', 'bfloat16')
