"""Cheap `model.predict` for one small in-memory batch: the call bert4keras decoding loops make every step.

A bert4keras ``AutoRegressiveDecoder.predict`` calls ``self.last_token(model).predict([token_ids,
segment_ids])`` once per generated token. Keras 3's ``Model.predict`` builds a data adapter, a
``tf.data`` pipeline and an iterator on every call before it runs its compiled predict function: tens of
milliseconds per step that do no model work (see benchmarks/bench_predict_loop.py for the measured cost).

`predict_small_batch(model, x, ...)` runs the same ``model.predict_step`` that Keras' predict runs, compiled
once per model (``tf.function``, ``jit_compile`` as the model's), on the batch converted exactly as Keras'
data adapter converts it — float arrays other than ``floatx`` cast to ``floatx``, lists made tuples, a
list/tuple of inputs handed to ``predict_step`` as ``(x,)``, a single array or a dict as is — and returns
what Keras' predict returns: numpy arrays in the structure of the model's outputs (a single array, a list,
a dict), with the same dtype and values (tests/test_fast_predict.py compares bit for bit).

Retracing: the first call of a given input structure (dtypes, ranks) traces for its exact shapes, as
Keras' own predict does; when a later call brings other sizes (a decoder's sequence grows by one token
per step), it traces once more with every differing dimension unknown (Keras' ``reduce_retracing``
rule), and that function serves every later size. So a decoding loop traces twice, not once per step.
Tracing like Keras matters for identical bits: a graph traced with the batch unknown but the length known
rounds some values differently (1 ulp) from both the fully static and the fully dynamic graph.

It handles only what it can run exactly like Keras, and returns `NOT_HANDLED` for everything else, which
then goes through Keras' own predict: inputs other than numpy arrays / eager tensors (a dataset, a
generator, a ragged or sparse tensor, pandas), more rows than ``batch_size`` (default 32), an empty batch,
``steps``, ``callbacks``, a progress bar (``verbose`` other than 0), an unbuilt model, ``run_eagerly``, a
distribution strategy, a model whose fast trace failed (it is not tried again), or while switched off.

Opt-out: ``model.predict(x, fast=False)`` for one call, or `set_enabled(False)` (returns the previous
setting) for the whole process; `keras.Model.predict` itself is untouched underneath (see
`bert4keras_ext._keras_compat`, which routes predict calls here).
"""
import weakref

import keras
import numpy as np
import tensorflow as tf

__all__ = ['NOT_HANDLED', 'predict_small_batch', 'set_enabled', 'is_enabled']

NOT_HANDLED = object()  # returned when the call must go through Keras' own predict

_DEFAULT_BATCH_SIZE = 32  # Keras' predict batch size when none is given
_state = {'enabled': True}
# model -> _ModelFunctions; weak so that a dropped model (and its traced graphs) can be freed
_functions = weakref.WeakKeyDictionary()


def set_enabled(flag):
    """Switch the fast path on or off for every model; returns the previous setting.

    Args:
        flag: bool. False sends every ``model.predict`` call through Keras' own predict.
    """
    if not isinstance(flag, bool):
        raise TypeError('fast_predict.set_enabled: flag must be True or False, got %r' % (flag,))
    previous, _state['enabled'] = _state['enabled'], flag
    return previous


def is_enabled():
    """Whether the fast path is switched on (it is by default)."""
    return _state['enabled']


class _ModelFunctions:
    """The compiled predict functions of one model: one tf.function per `jit_compile` setting, and per
    input structure the concrete function traced last with its input spec."""

    def __init__(self, model):
        self.model_ref = weakref.ref(model)  # the traced graphs must not keep the model alive
        self.functions = {}
        self.concrete = {}
        self.failed = False

    def function(self, jit_compile):
        if jit_compile not in self.functions:
            model_ref = self.model_ref

            def predict_step(data):
                return model_ref().predict_step(data)

            self.functions[jit_compile] = tf.function(predict_step, jit_compile=jit_compile,
                                                      autograph=False)
        return self.functions[jit_compile]


def _is_leaf(value):
    if isinstance(value, np.ndarray):
        return value.dtype.kind in 'biuf' and value.ndim >= 1
    if isinstance(value, tf.Tensor) and not isinstance(value, (tf.RaggedTensor, tf.SparseTensor)):
        # eager tensors only (a symbolic one cannot be fed to an eager call)
        return hasattr(value, 'numpy') and value.dtype.is_numeric and value.shape.rank is not None \
            and value.shape.rank >= 1
    return False


def _to_tensor(value):
    """As Keras' array adapter: a float that is not floatx becomes floatx; everything else keeps its dtype."""
    dtype = value.dtype if isinstance(value, np.ndarray) else value.dtype.as_numpy_dtype
    floatx = keras.backend.floatx()
    if np.dtype(dtype).kind == 'f' and np.dtype(dtype) != np.dtype(floatx):
        return tf.cast(value, floatx)
    return tf.convert_to_tensor(value)


def _prepare(x):
    """(data for predict_step, rows) or None when `x` is not one flat structure of arrays / eager tensors."""
    if _is_leaf(x):
        leaves, data = [x], None
    elif isinstance(x, (list, tuple)) and x and all(_is_leaf(v) for v in x):
        leaves = list(x)
    elif isinstance(x, dict) and x and all(isinstance(k, str) and _is_leaf(v) for k, v in x.items()):
        leaves = list(x.values())
    else:
        return None
    rows = {int(v.shape[0]) for v in leaves}
    if len(rows) != 1:
        return None  # Keras raises its own cardinality error
    tensors = [_to_tensor(v) for v in leaves]
    if _is_leaf(x):
        data = tensors[0]
    elif isinstance(x, dict):
        data = dict(zip(x.keys(), tensors))
    else:
        data = (tuple(tensors),)  # Keras packs a list/tuple of inputs as (x,) with lists made tuples
    return data, rows.pop()


def _structure_key(data):
    flat = tf.nest.flatten(data)
    layout = tuple(sorted(data)) if isinstance(data, dict) else type(data).__name__
    return layout, tuple((t.dtype.name, t.shape.rank) for t in flat)


def _initial_spec(data):
    return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), data)


def _relaxed_spec(spec, data):
    """`spec` with every dimension that `data` gives another size made unknown."""
    def relax(s, t):
        dims = [a if a == b else None for a, b in zip(s.shape.as_list(), t.shape.as_list())]
        return tf.TensorSpec(dims, s.dtype)
    return tf.nest.map_structure(relax, spec, data)


def _compatible(spec, data):
    return all(s.is_compatible_with(t) for s, t in zip(tf.nest.flatten(spec), tf.nest.flatten(data)))


def _eligible(model, batch_size, verbose, steps, callbacks):
    if not _state['enabled'] or steps is not None or callbacks is not None or verbose != 0:
        return False
    if not tf.executing_eagerly():
        return False
    if not getattr(model, 'built', False) or getattr(model, 'run_eagerly', False):
        return False
    if tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy():
        return False
    return batch_size is None or (isinstance(batch_size, int) and batch_size >= 1)


def predict_small_batch(model, x, batch_size=None, verbose=0, steps=None, callbacks=None):
    """`model.predict(x, ...)`'s result computed without Keras' data pipeline, or `NOT_HANDLED`.

    Args:
        model: a built `keras.Model`.
        x: a numpy array / eager tensor of shape (rows, ...), or a list, tuple or dict of them (one per
            model input), all with the same number of rows, 1 <= rows <= `batch_size`.
        batch_size, verbose, steps, callbacks: as for `keras.Model.predict`; the call is handled only with
            `verbose=0`, no `steps` and no `callbacks`.
    Returns:
        numpy arrays in the structure of the model's outputs, as `keras.Model.predict` returns them, or
        `NOT_HANDLED` when the call must go through Keras' predict (see the module docstring).
    """
    if not _eligible(model, batch_size, verbose, steps, callbacks):
        return NOT_HANDLED
    functions = _functions.get(model)
    if functions is not None and functions.failed:
        return NOT_HANDLED
    prepared = _prepare(x)
    if prepared is None:
        return NOT_HANDLED
    data, rows = prepared
    if not 1 <= rows <= (batch_size or _DEFAULT_BATCH_SIZE):
        return NOT_HANDLED
    if functions is None:
        functions = _functions[model] = _ModelFunctions(model)
    jit_compile = bool(model.jit_compile)
    key = (jit_compile, _structure_key(data))
    spec, concrete = functions.concrete.get(key, (None, None))
    if concrete is None or not _compatible(spec, data):
        spec = _initial_spec(data) if spec is None else _relaxed_spec(spec, data)
        try:
            concrete = functions.function(jit_compile).get_concrete_function(spec)
        except Exception:  # noqa: BLE001 - a model the fast trace cannot handle: Keras' predict runs it
            functions.failed = True
            return NOT_HANDLED
        functions.concrete[key] = spec, concrete
    outputs = concrete(data)
    return keras.tree.map_structure(
        lambda t: t if isinstance(t, (tf.RaggedTensor, tf.SparseTensor)) else t.numpy(), outputs)
