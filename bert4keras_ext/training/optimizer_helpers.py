"""Small helpers the optimizers share: name matching on variable paths, dense gradients, exact constants,
reading a variable's current value."""
import re

from bert4keras_ext.backend import keras, ops

# Registered Keras names of the optimizer classes are 'bert4keras_ext>ClassName'.
_PACKAGE = 'bert4keras_ext'


def _string_matching(string, patterns):
    """True if any regex in `patterns` is found in `string` (bert4keras' `string_matching`)."""
    return any(re.search(pattern, string) for pattern in patterns)


def _variable_path(variable):
    """The name patterns are matched against: the Keras path, e.g. 'Transformer-0-FeedForward/inner_dense/kernel'."""
    return getattr(variable, 'path', None) or variable.name


def _dense(x):
    """A dense tensor for a gradient that may be `tf.IndexedSlices` (embedding lookups)."""
    if hasattr(x, 'indices') and hasattr(x, 'values') and hasattr(x, 'dense_shape'):
        import tensorflow as tf  # only reached on the TensorFlow backend, which produces IndexedSlices
        return tf.convert_to_tensor(x)
    return x


def _constant(value, dtype):
    """A Python number as a tensor of `dtype`, exactly (`ops.cast` would round it through float32 first)."""
    return ops.convert_to_tensor(value, dtype)


def _read(variable):
    """A tensor holding the current value of a (Keras or backend) variable.

    Not `ops.convert_to_tensor`: on TensorFlow that returns a `tf.Variable` unchanged, a lazy handle
    that would already show the update we are about to compare against.
    """
    if keras.backend.backend() == 'tensorflow':
        import tensorflow as tf
        return tf.convert_to_tensor(variable)
    return ops.convert_to_tensor(variable)
