"""Numerical helpers on `keras.ops`, and the `K` compatibility namespace.

bert4keras scripts start with ``from bert4keras.backend import keras, K``; the same line with
``bert4keras_ext`` gives Keras 3 and a small `K` namespace whose functions keep the Keras 2 backend
signatures (``K.sum(x, axis, keepdims)``, ``K.batch_dot``, ``K.int_shape`` …) but run on `keras.ops`,
so a script's custom losses and layers keep working unchanged.

Everything here is backend-neutral `keras.ops` code. The one patch to Keras — two attributes on
`keras.Model` that turn bert4keras' Keras 2 training internals (``model._make_train_function()``,
``model.total_loss``) into clear errors naming the replacement — lives in `_keras_compat` and is
installed on import of this module. The rest of bert4keras' backend functions live in
`backend_functions` (masking, `batch_gather`, rotary / sinusoidal positions, …) and `graph_utils`
(`search_layer`, `recompute_grad`, …) and are re-exported here.
"""
import math
import types

import numpy as np

try:
    import keras
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        'bert4keras_ext needs Keras 3 with the TensorFlow backend: pip install "tensorflow>=2.16" "keras>=3"'
    ) from e

if int(keras.__version__.split('.')[0]) < 3:  # pragma: no cover
    raise ImportError(
        'bert4keras_ext needs Keras >= 3 (found keras %s). Upgrade with: pip install -U "keras>=3" '
        '"tensorflow>=2.16"' % keras.__version__
    )

from keras import ops

from bert4keras_ext import _keras_compat
from bert4keras_ext import _tf_private
from bert4keras_ext import backend_functions as _functions
from bert4keras_ext import graph_utils as _graph_utils
from bert4keras_ext._keras_compat import GRADIENTS_REPLACEMENT, Keras2APIError
from bert4keras_ext.keras2_backend import FUNCTIONS as _keras2_functions
# bert4keras keeps the multi-label losses in backend (they live in multilabel.py, below heads/losses)
from bert4keras_ext.multilabel import (  # noqa: F401 - re-exported
    multilabel_categorical_crossentropy, sparse_multilabel_categorical_crossentropy,
)
from bert4keras_ext.backend_functions import (  # noqa: F401 - re-exported (bert4keras' backend names)
    Sinusoidal, align, apply_rotary_position_embeddings, attention_normalize, batch_gather,
    divisible_temporal_padding, dtype, flatten, leaky_relu, mask_value, pool1d, reshape, root_mean_square,
    sequence_masking, sinusoidal_embeddings, swish, where,
)
from bert4keras_ext.graph_utils import (  # noqa: F401 - re-exported
    get_available_gpus, graph_mode_decorator, is_tf_keras, recompute_grad, search_layer, symbolic,
)

_keras_compat.install()

__all__ = [
    'keras', 'ops', 'K', 'gelu_erf', 'gelu_tanh', 'set_gelu', 'get_activation', 'piecewise_linear',
    'onednn_enabled', 'Keras2APIError', 'custom_objects', 'multilabel_categorical_crossentropy',
    'sparse_multilabel_categorical_crossentropy',
] + _functions.__all__ + _graph_utils.__all__


# ---------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------
def gelu_erf(x):
    """Exact GELU, x·Φ(x) with the error function (Google BERT's `gelu`)."""
    return 0.5 * x * (1.0 + ops.erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    """tanh approximation of GELU (Google ALBERT / GPT-2 `gelu_new`)."""
    cdf = 0.5 * (1.0 + ops.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * ops.power(x, 3))))
    return x * cdf


_gelu_variant = {'gelu': 'erf'}


def set_gelu(version):
    """Choose what the activation name 'gelu' means in models built afterwards: 'erf' or 'tanh'.

    Kept for bert4keras scripts (`set_gelu('tanh')`). Prefer passing `hidden_act` in the config.
    """
    version = version.lower()
    if version not in ('erf', 'tanh'):
        raise ValueError("set_gelu(version): version must be 'erf' or 'tanh', got %r" % version)
    _gelu_variant['gelu'] = version


_ACTIVATIONS = {
    'gelu_erf': gelu_erf,
    'gelu_tanh': gelu_tanh,
    'gelu_new': gelu_tanh,
    'gelu_fast': gelu_tanh,
}


def get_activation(name):
    """Resolve an activation name from a checkpoint config to a callable.

    'gelu' follows `set_gelu` (erf by default, as in Google's BERT code); the other names go to
    `keras.activations.get` ('relu', 'tanh', 'swish', 'linear', …).
    """
    if callable(name):
        return name
    if name is None:
        return keras.activations.get('linear')
    key = name.lower()
    if key == 'gelu':
        key = 'gelu_' + _gelu_variant['gelu']
    if key in _ACTIVATIONS:
        return _ACTIVATIONS[key]
    try:
        return keras.activations.get(key)
    except ValueError as e:
        raise ValueError(
            'Unknown activation %r. Expected one of gelu, gelu_erf, gelu_tanh, gelu_new, relu, swish, '
            'tanh, linear or any keras activation name.' % name
        ) from e


keras.saving.get_custom_objects().update({'gelu_erf': gelu_erf, 'gelu_tanh': gelu_tanh})


# ---------------------------------------------------------------------------------------------------
# Misc helpers used by layers and optimizers
# ---------------------------------------------------------------------------------------------------
def piecewise_linear(t, schedule, from_zero=True):
    """Piecewise-linear function of the step `t`, as bert4keras' `piecewise_linear`.

    `schedule` = {step: value}; between keys the value is interpolated linearly, after the last key
    it stays constant. If the first key is not 0 and `from_zero`, the point (0, 0.0) is prepended:
    this is the usual linear warm-up from zero, e.g. {1000: 1, 2000: 0.1}.
    """
    points = sorted((int(k), float(v)) for k, v in schedule.items())
    if not points:
        raise ValueError('piecewise_linear: schedule is empty; expected {step: value, ...}')
    if from_zero and points[0][0] != 0:
        points.insert(0, (0, 0.0))
    t = ops.cast(t, 'float32')
    x = ops.convert_to_tensor(points[0][1], 'float32')
    for (t0, v0), (t1, v1) in zip(points[:-1], points[1:]):
        slope = (v1 - v0) / (t1 - t0)
        x = ops.where(t >= t0, v0 + slope * (t - t0), x)
    return ops.where(t >= points[-1][0], points[-1][1], x)


# ---------------------------------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------------------------------
def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels in this process (read once, at TensorFlow's import).

    `import bert4keras_ext` before TensorFlow switches them on for x86-64 CPUs unless
    ``TF_ENABLE_ONEDNN_OPTS`` is already set (see the package docstring); returns None when the
    backend is not TensorFlow or the TensorFlow build does not say.
    """
    if keras.backend.backend() != 'tensorflow':
        return None
    return _tf_private.mkl_enabled()  # None when a future TensorFlow moved its private module


# ---------------------------------------------------------------------------------------------------
# K: Keras-2 backend signatures on keras.ops
# ---------------------------------------------------------------------------------------------------
def _int_shape(x):
    shape = getattr(x, 'shape', None)
    if shape is None:
        return np.shape(x)
    return tuple(None if d is None else int(d) for d in shape)


def _batch_dot(x, y, axes=None):
    """Keras 2 `batch_dot`: per-sample dot product over `axes` (default: last of x, second-last of y)."""
    x_ndim, y_ndim = len(x.shape), len(y.shape)
    if axes is None:
        axes = (x_ndim - 1, y_ndim - 2 if y_ndim > 2 else y_ndim - 1)
    if isinstance(axes, int):
        axes = (axes, axes)
    ax, ay = [a % n for a, n in zip(axes, (x_ndim, y_ndim))]
    letters = 'bcdefghijklmnopq'
    xs = ['a'] + list(letters[:x_ndim - 1])
    ys = ['a'] + list(letters[x_ndim - 1:x_ndim + y_ndim - 2])
    ys[ay] = xs[ax]
    out = [c for i, c in enumerate(xs) if i != ax] + [c for i, c in enumerate(ys) if i not in (0, ay)]
    if len(out) == 1:  # Keras 2 keeps a trailing axis for vector results
        return ops.expand_dims(ops.einsum('%s,%s->%s' % (''.join(xs), ''.join(ys), out[0]), x, y), -1)
    return ops.einsum('%s,%s->%s' % (''.join(xs), ''.join(ys), ''.join(out)), x, y)


def _dot(x, y):
    """Keras 2 `dot`: contracts the last axis of x with the second-last (or only) axis of y."""
    if len(y.shape) == 1:
        return ops.tensordot(x, y, axes=[[len(x.shape) - 1], [0]])
    return ops.matmul(x, y) if len(y.shape) == 2 or len(x.shape) == len(y.shape) else \
        ops.tensordot(x, y, axes=[[len(x.shape) - 1], [len(y.shape) - 2]])


def _switch(condition, then_expression, else_expression):
    return ops.where(ops.cast(condition, 'bool'), then_expression, else_expression)


def _categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return keras.losses.categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def _sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return keras.losses.sparse_categorical_crossentropy(target, output, from_logits=from_logits, axis=axis)


def _binary_crossentropy(target, output, from_logits=False):
    return ops.binary_crossentropy(target, output, from_logits=from_logits)


def _eval(x):
    return ops.convert_to_numpy(x)


def _set_value(x, value):
    x.assign(value)


def _batch_set_value(pairs):
    for x, value in pairs:
        x.assign(value)


def _variable(value, dtype=None, name=None):
    return keras.Variable(value, dtype=dtype or keras.config.floatx(), name=name)


def _gradients(loss, variables):
    raise Keras2APIError(GRADIENTS_REPLACEMENT)


class _Keras2Backend(types.SimpleNamespace):
    """`K`: Keras 2 backend names. A name it lacks raises an AttributeError that says so and where to look."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        hint = ('keras.ops.%s exists and may be what you need' % name if hasattr(ops, name)
                else 'look for it in keras.ops (https://keras.io/api/ops/) or write it with TensorFlow')
        raise AttributeError('K.%s: this Keras 2 backend function is not in bert4keras_ext.backend.K; %s'
                             % (name, hint))


K = _Keras2Backend(
    # dtypes and constants
    epsilon=keras.config.epsilon, floatx=keras.config.floatx, set_floatx=keras.config.set_floatx,
    cast=ops.cast, dtype=lambda x: keras.backend.standardize_dtype(x.dtype),
    constant=lambda value, dtype=None, shape=None, name=None: ops.convert_to_tensor(
        np.full(shape, value) if shape is not None else value, dtype=dtype),
    variable=_variable, eval=_eval, get_value=_eval, batch_get_value=lambda xs: [_eval(x) for x in xs],
    set_value=_set_value, batch_set_value=_batch_set_value,
    is_keras_tensor=lambda x: isinstance(x, keras.KerasTensor),
    # shapes
    shape=ops.shape, int_shape=_int_shape, ndim=lambda x: len(x.shape),
    expand_dims=lambda x, axis=-1: ops.expand_dims(x, axis), squeeze=ops.squeeze,
    permute_dimensions=lambda x, pattern: ops.transpose(x, pattern), transpose=ops.transpose,
    concatenate=lambda tensors, axis=-1: ops.concatenate(tensors, axis=axis), stack=ops.stack,
    tile=ops.tile, repeat_elements=lambda x, rep, axis: ops.repeat(x, rep, axis=axis),
    zeros_like=ops.zeros_like, ones_like=ops.ones_like, zeros=ops.zeros, ones=ops.ones, eye=ops.eye,
    arange=lambda start, stop=None, step=1, dtype='int32': ops.arange(start, stop, step, dtype=dtype),
    gather=lambda reference, indices: ops.take(reference, indices, axis=0), one_hot=ops.one_hot,
    # reductions
    sum=lambda x, axis=None, keepdims=False: ops.sum(x, axis=axis, keepdims=keepdims),
    mean=lambda x, axis=None, keepdims=False: ops.mean(x, axis=axis, keepdims=keepdims),
    max=lambda x, axis=None, keepdims=False: ops.max(x, axis=axis, keepdims=keepdims),
    min=lambda x, axis=None, keepdims=False: ops.min(x, axis=axis, keepdims=keepdims),
    prod=lambda x, axis=None, keepdims=False: ops.prod(x, axis=axis, keepdims=keepdims),
    std=lambda x, axis=None, keepdims=False: ops.std(x, axis=axis, keepdims=keepdims),
    var=lambda x, axis=None, keepdims=False: ops.var(x, axis=axis, keepdims=keepdims),
    any=lambda x, axis=None, keepdims=False: ops.any(x, axis=axis, keepdims=keepdims),
    all=lambda x, axis=None, keepdims=False: ops.all(x, axis=axis, keepdims=keepdims),
    argmax=lambda x, axis=-1: ops.argmax(x, axis=axis), argmin=lambda x, axis=-1: ops.argmin(x, axis=axis),
    logsumexp=lambda x, axis=None, keepdims=False: ops.logsumexp(x, axis=axis, keepdims=keepdims),
    cumsum=lambda x, axis=0: ops.cumsum(x, axis=axis), cumprod=lambda x, axis=0: ops.cumprod(x, axis=axis),
    # elementwise
    exp=ops.exp, log=ops.log, sqrt=ops.sqrt, square=ops.square, abs=ops.abs, sign=ops.sign, pow=ops.power,
    round=ops.round, maximum=ops.maximum, minimum=ops.minimum, clip=ops.clip, sin=ops.sin, cos=ops.cos,
    equal=ops.equal, not_equal=ops.not_equal, greater=ops.greater, greater_equal=ops.greater_equal,
    less=ops.less, less_equal=ops.less_equal, switch=_switch, stop_gradient=ops.stop_gradient,
    # linear algebra
    dot=_dot, batch_dot=_batch_dot,
    l2_normalize=lambda x, axis=None: ops.normalize(x, axis=-1 if axis is None else axis, order=2),
    # activations and losses
    softmax=lambda x, axis=-1: ops.softmax(x, axis=axis), relu=ops.relu, sigmoid=ops.sigmoid, tanh=ops.tanh,
    softplus=ops.softplus, elu=ops.elu,
    categorical_crossentropy=_categorical_crossentropy,
    sparse_categorical_crossentropy=_sparse_categorical_crossentropy,
    binary_crossentropy=_binary_crossentropy,
    gradients=_gradients,
)
K.__doc__ = 'Keras 2 backend function names on keras.ops (see bert4keras_ext.backend).'
# the functions bert4keras added to keras.backend itself
K.reshape, K.flatten, K.where, K.symbolic = reshape, flatten, where, symbolic
# the parts of the Keras 2 backend that Keras 3 dropped with the global graph and learning phase
vars(K).update(_keras2_functions)


def __getattr__(name):
    if name == 'custom_objects':  # holds the multilabel loss too, so it is built on first use
        return _custom_objects()
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


_CUSTOM_OBJECTS = {}


def _custom_objects():
    """bert4keras' `backend.custom_objects`: the functions a Keras 2 model file may name, for
    ``keras.saving.load_model(path, custom_objects=custom_objects)``. Not registered globally as bert4keras
    did: Keras 3 has its own 'gelu', 'swish' and 'leaky_relu', and this package registers its objects."""
    if not _CUSTOM_OBJECTS:
        _CUSTOM_OBJECTS.update({
            'gelu_erf': gelu_erf,
            'gelu_tanh': gelu_tanh,
            'gelu': gelu_erf,
            'root_mean_square': root_mean_square,
            'swish': swish,
            'leaky_relu': leaky_relu,
            'Sinusoidal': Sinusoidal,
            'multilabel_categorical_crossentropy': multilabel_categorical_crossentropy,
            'initializer': keras.initializers.GlorotUniform,
        })
    return _CUSTOM_OBJECTS

