"""The rest of the Keras 2 backend (`keras.backend` as bert4keras scripts use it), for the `K` namespace.

`bert4keras_ext.backend.K` holds the common tensor functions; this module adds what Keras 3 dropped with
the global graph and learning phase, written on `keras.ops` / TensorFlow:

* random tensors: `random_uniform`, `random_normal`, `truncated_normal`, `random_binomial`, `dropout`.
  They use TensorFlow's *stateful* random ops, so inside a compiled train step every call draws anew, as
  in Keras 2 (Keras 3's `keras.random.*` without a seed generator would draw the same numbers each step).
* the learning phase: `in_train_phase(x, alt, training=None)`, `in_test_phase`, `learning_phase()`.
  Without `training`, they read the `training` flag of the Keras 3 layer call in progress (what `fit`
  and `predict` pass down), so a custom layer written the bert4keras way — `K.in_train_phase(output,
  target)` inside `call` — switches between training and inference as it did.
* small helpers: `bias_add`, `batch_flatten`, `reverse`, `identity`, `hard_sigmoid`, `softsign`, `repeat`,
  `temporal_padding`, `map_fn`, `foldl`, `foldr`, `update`, `update_add`, `update_sub`, `print_tensor`,
  `function`, `clear_session`, `image_data_format`.
* `set_learning_phase`, `placeholder`, `get_session`: graph-era APIs with no Keras 3 meaning; they raise
  an error that says what to do instead.
"""
import numpy as np

from bert4keras_ext._keras_compat import Keras2APIError, current_training_flag

import keras  # noqa: E402  (after the compat import, which has none of its own side effects on Keras)
from keras import ops


def _tf():
    import tensorflow as tf  # the package runs on TensorFlow; imported lazily like the rest of backend
    return tf


def _float(dtype):
    return dtype or keras.config.floatx()


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    return _tf().random.uniform(shape, minval, maxval, dtype=_float(dtype), seed=seed)


def random_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return _tf().random.normal(shape, mean, stddev, dtype=_float(dtype), seed=seed)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    return _tf().random.truncated_normal(shape, mean, stddev, dtype=_float(dtype), seed=seed)


def random_binomial(shape, p=0.0, dtype=None, seed=None):
    """1 with probability `p`, else 0 (Keras 2's name for a Bernoulli draw)."""
    return ops.cast(random_uniform(shape, dtype='float32', seed=seed) < p, _float(dtype))


def dropout(x, level, noise_shape=None, seed=None):
    """Inverted dropout of rate `level` (always applied, as Keras 2's `K.dropout`)."""
    return _tf().nn.dropout(x, rate=level, noise_shape=noise_shape, seed=seed)


def _resolve(value):
    return value() if callable(value) else value


def in_train_phase(x, alt, training=None):
    """`x` while training, `alt` otherwise (either may be a callable). `training` defaults to the flag
    of the layer call in progress; outside any layer call it counts as inference."""
    if training is None:
        training = current_training_flag()
    if training is None or isinstance(training, (bool, int, np.bool_)):
        return _resolve(x) if training else _resolve(alt)
    x, alt = _resolve(x), _resolve(alt)  # a tensor flag: choose in the graph
    return ops.where(ops.cast(training, 'bool'), x, alt)


def in_test_phase(x, alt, training=None):
    """`x` at inference, `alt` while training."""
    return in_train_phase(alt, x, training=training)


def learning_phase():
    """1 inside a layer call made with training=True, else 0 (Keras 2 returned a global placeholder)."""
    training = current_training_flag()
    if training is None or isinstance(training, (bool, int, np.bool_)):
        return int(bool(training))
    return ops.cast(training, 'int32')


def set_learning_phase(value):
    raise Keras2APIError('K.set_learning_phase does not exist in Keras 3: there is no global learning phase. '
                         'Pass training=True/False to the model or layer call (model(x, training=False)); '
                         'fit() trains and predict() infers on their own.')


def placeholder(*args, **kwargs):
    raise Keras2APIError('K.placeholder is a graph-mode (TF1) API; in Keras 3 use keras.Input(shape=...) for a '
                         'symbolic model input.')


def get_session(*args, **kwargs):
    raise Keras2APIError('K.get_session is a TF1 API; Keras 3 runs eagerly or inside tf.function: evaluate a '
                         'tensor with K.eval(x) (or keras.ops.convert_to_numpy) and variables with .numpy().')


def bias_add(x, bias, data_format=None):
    return x + ops.cast(bias, x.dtype)


def batch_flatten(x):
    return ops.reshape(x, (ops.shape(x)[0], -1))


def reverse(x, axes):
    return ops.flip(x, axis=axes)


def identity(x, name=None):
    return ops.copy(x) if hasattr(ops, 'copy') else x + 0


def hard_sigmoid(x):
    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def softsign(x):
    return x / (1 + ops.abs(x))


def repeat(x, n):
    """(b, d) → (b, n, d)."""
    return ops.repeat(ops.expand_dims(x, 1), n, axis=1)


def temporal_padding(x, padding=(1, 1)):
    return ops.pad(x, [[0, 0], list(padding), [0, 0]])


def map_fn(fn, elems, name=None, dtype=None):
    return _tf().map_fn(fn, elems, fn_output_signature=dtype)


def foldl(fn, elems, initializer=None, name=None):
    return _tf().foldl(fn, elems, initializer=initializer)


def foldr(fn, elems, initializer=None, name=None):
    return _tf().foldr(fn, elems, initializer=initializer)


def update(x, new_x):
    return x.assign(new_x)


def update_add(x, increment):
    return x.assign_add(increment)


def update_sub(x, decrement):
    return x.assign_sub(decrement)


def print_tensor(x, message='', summarize=3):
    _tf().print(message, x, summarize=summarize)
    return x


def function(inputs, outputs, updates=None, name=None, **kwargs):
    """Keras 2's `K.function(inputs, outputs)` on symbolic model tensors: a callable taking a list of
    arrays and returning a list of numpy arrays (run as a Keras model in inference mode)."""
    if updates:
        raise Keras2APIError('K.function(..., updates=...) is a Keras 2 training internal; write a custom '
                             'train_step or use the bert4keras_ext.adversarial hooks instead.')
    single_output = not isinstance(outputs, (list, tuple))
    model = keras.Model(inputs, outputs)

    def call(values):
        result = model(values if isinstance(values, (list, tuple)) and len(model.inputs) > 1 else
                       (values[0] if isinstance(values, (list, tuple)) else values), training=False)
        result = [result] if len(model.outputs) == 1 else list(result)
        result = [ops.convert_to_numpy(r) for r in result]
        return result[0] if single_output else result
    return call


def clear_session():
    keras.backend.clear_session()


def image_data_format():
    return keras.config.image_data_format()


FUNCTIONS = {name: globals()[name] for name in (
    'random_uniform', 'random_normal', 'truncated_normal', 'random_binomial', 'dropout', 'in_train_phase',
    'in_test_phase', 'learning_phase', 'set_learning_phase', 'placeholder', 'get_session', 'bias_add',
    'batch_flatten', 'reverse', 'identity', 'hard_sigmoid', 'softsign', 'repeat', 'temporal_padding', 'map_fn',
    'foldl', 'foldr', 'update', 'update_add', 'update_sub', 'print_tensor', 'function', 'clear_session',
    'image_data_format')}
