"""The one place that patches Keras: clear errors for Keras 2 training internals that bert4keras scripts use.

bert4keras' adversarial-training, gradient-penalty and virtual-adversarial examples rebuild the compiled
Keras 2 training function: they call ``model._make_train_function()``, read ``model.total_loss`` and
take ``K.gradients(loss, [embeddings])``. Keras 3 has none of these (training runs through
``Model.train_step``), so a script would stop with an opaque ``AttributeError: 'Functional' object has no
attribute ...``. `install()` adds exactly two attributes to `keras.Model`, both raising an error that
names this package's replacement:

* ``model._make_train_function()`` — a method that raises `Keras2APIError` when called;
* ``model.total_loss`` — a property that raises `MissingKeras2Attribute` (an `AttributeError` too, so
  ``hasattr(model, 'total_loss')`` stays False and duck-typing code is unaffected). A subclass or script
  that assigns ``model.total_loss = ...`` itself gets its value back, as before.

It also gives `keras.layers.Layer` back two Keras 2 public methods that Keras 3 dropped and bert4keras
examples call (task_relation_extraction: ``bert.model.layers[-2].get_output_at(-1)``):

* ``layer.get_output_at(node_index)`` / ``layer.get_input_at(node_index)`` — the output (input) tensors of
  the layer's `node_index`-th call in a functional graph, a single tensor or a list, as in Keras 2. They read
  Keras 3's private ``Layer._inbound_nodes`` (through `bert4keras_ext._tf_private`, checked on Keras 3.15);
  tests/test_tf_private.py fails loudly if that attribute disappears.

And Keras 2 accepted nested Python lists as data, which bert4keras scripts pass straight to the model
(``model.predict([[token_ids], [segment_ids]])`` in its word-segmentation example); Keras 3 refuses them
("Unrecognized data type"). `install()` wraps `predict`, `fit`, `evaluate` and the `*_on_batch` methods of
`keras.Model` so that such lists — and only such lists, which Keras 3 would reject — become numpy arrays
first, one per model input, as Keras 2 did. And `predict` without `verbose` is silent, as in Keras 2
(Keras 3 draws a progress bar for every call, which floods a bert4keras decoding loop that predicts once
per generated token); pass `verbose=1` for the bar. And a silent `predict` of one small in-memory batch
(the per-step call of such a loop) runs the model's compiled predict step directly, without Keras'
per-call data pipeline, with the same result (`bert4keras_ext.fast_predict`; opt out per call with
``model.predict(x, fast=False)`` or for all calls with ``fast_predict.set_enabled(False)``). Every other
argument passes through untouched.

And under ``tf.distribute.MultiWorkerMirroredStrategy`` with several workers, Keras 3.15's ``fit`` fails at its
first batch; `install()` fixes the two reductions at fault (`_tf_private.fix_multi_worker_fit`, only that
strategy's path changes; tests/test_multiworker.py).

Nothing else in Keras changes; `install()` runs on import of `bert4keras_ext.backend` and is idempotent,
`uninstall()` removes both attributes. This module imports only Keras, `_tf_private` and `fast_predict`
(which import no package module), so it cannot take part in an import cycle. Tested in ``tests/test_compat_backend.py``.
"""
import functools

import keras
import numpy as np

from bert4keras_ext import _tf_private, fast_predict

__all__ = [
    'Keras2APIError', 'MissingKeras2Attribute', 'ADVERSARIAL_REPLACEMENT', 'GRADIENTS_REPLACEMENT',
    'install', 'uninstall', 'installed',
]


class Keras2APIError(NotImplementedError):
    """A Keras 2 API that Keras 3 does not have; the message says what to use instead."""


class MissingKeras2Attribute(Keras2APIError, AttributeError):
    """A Keras 2 attribute that Keras 3 models do not have (also an AttributeError, for hasattr/getattr)."""


ADVERSARIAL_REPLACEMENT = (
    'Use the bert4keras_ext replacements, which hook into Keras 3\'s train_step instead: '
    'bert4keras_ext.adversarial.adversarial_training(model, embedding_name, epsilon) (FGM), '
    'bert4keras_ext.adversarial.gradient_penalty_training(model, embedding_name, epsilon) and '
    'bert4keras_ext.adversarial.virtual_adversarial_training(model, embedding_name, epsilon, xi, iters) — '
    'call one after model.compile(...), then model.fit(...) as usual.'
)

GRADIENTS_REPLACEMENT = (
    'K.gradients (symbolic gradients of a graph tensor) does not exist in Keras 3. '
    'For input attributions such as integrated gradients, run the model eagerly under tf.GradientTape: '
    'with tf.GradientTape() as tape: tape.watch(embeddings); y = f(embeddings); grads = tape.gradient(y, '
    'embeddings). For adversarial training / gradient penalty / VAT: ' + ADVERSARIAL_REPLACEMENT
)

_MARK = '_bert4keras_ext_compat'  # set on the functions we add, so uninstall removes only ours


def _make_train_function(self):
    raise Keras2APIError(
        'Model._make_train_function() is a Keras 2 internal; Keras 3 builds its train function inside fit() '
        'and bert4keras-style code cannot replace it (nor read model.total_loss / call K.gradients). '
        + ADVERSARIAL_REPLACEMENT
    )


def _get_total_loss(self):
    if 'total_loss' in self.__dict__:  # assigned by user code: behave like a plain attribute
        return self.__dict__['total_loss']
    raise MissingKeras2Attribute(
        'Model.total_loss is a Keras 2 graph tensor; Keras 3 computes the loss inside train_step and has no '
        'such attribute. ' + ADVERSARIAL_REPLACEMENT
    )


def _set_total_loss(self, value):
    self.__dict__['total_loss'] = value


def _del_total_loss(self):
    self.__dict__.pop('total_loss', None)


setattr(_make_train_function, _MARK, True)
_total_loss = property(_get_total_loss, _set_total_loss, _del_total_loss,
                       'Keras 2 only: raises MissingKeras2Attribute naming the replacement.')
setattr(_total_loss.fget, _MARK, True)


def _node_tensors(layer, node_index, attribute):
    nodes = _tf_private.inbound_nodes(layer)  # private in Keras 3 (checked on 3.15)
    if nodes is None:
        raise RuntimeError('this Keras version has no Layer._inbound_nodes; get_output_at / get_input_at '
                           'need updating in bert4keras_ext._tf_private.inbound_nodes')
    if not nodes:
        raise ValueError('layer %r has not been called on a symbolic input, so it has no node %r'
                         % (layer.name, node_index))
    if not isinstance(node_index, int) or not -len(nodes) <= node_index < len(nodes):
        raise ValueError('layer %r has %d node(s) (calls); node_index must be an integer in [%d, %d), got %r'
                         % (layer.name, len(nodes), -len(nodes), len(nodes), node_index))
    tensors = getattr(nodes[node_index], attribute)
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _get_output_at(self, node_index):
    """Output tensor(s) of this layer's `node_index`-th call (Keras 2 API)."""
    return _node_tensors(self, node_index, 'output_tensors')


def _get_input_at(self, node_index):
    """Input tensor(s) of this layer's `node_index`-th call (Keras 2 API)."""
    return _node_tensors(self, node_index, 'input_tensors')


setattr(_get_output_at, _MARK, True)
setattr(_get_input_at, _MARK, True)
_LAYER_METHODS = (('get_output_at', _get_output_at), ('get_input_at', _get_input_at))


def _is_nested_number_list(value):
    """A (nested) Python list/tuple of numbers, i.e. data Keras 2 took and Keras 3 refuses."""
    if not isinstance(value, (list, tuple)) or not len(value):
        return False
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        return False
    return array.dtype.kind in 'biuf'


def _lists_to_arrays(model, data, attribute='inputs'):
    """Keras 2's conversion of list data: one array per input (or the whole list for a one-input model);
    targets likewise per output (`attribute='outputs'`)."""
    if data is None or not isinstance(data, (list, tuple)):
        return data
    tensors = getattr(model, attribute, None) or []
    if len(tensors) <= 1 and _is_nested_number_list(data):
        return np.asarray(data)
    if any(_is_nested_number_list(item) for item in data):
        return [np.asarray(item) if _is_nested_number_list(item) else item for item in data]
    return data


def _predict_small_batch(model, x, batch_size=None, verbose='auto', steps=None, callbacks=None, **other):
    if other:  # an argument of a newer Keras: leave the call to Keras
        return fast_predict.NOT_HANDLED
    return fast_predict.predict_small_batch(model, x, batch_size, verbose, steps, callbacks)


def _accepting_lists(method):
    @functools.wraps(method)
    def wrapper(self, x=None, *args, **kwargs):
        if method.__name__ != 'predict' and method.__name__ != 'predict_on_batch':
            if args:  # y given by position
                args = (_lists_to_arrays(self, args[0], 'outputs'),) + args[1:]
            elif 'y' in kwargs:
                kwargs['y'] = _lists_to_arrays(self, kwargs['y'], 'outputs')
        elif method.__name__ == 'predict':
            if 'verbose' not in kwargs and len(args) < 2:  # (x, batch_size, verbose)
                kwargs['verbose'] = 0  # Keras 2's default: decoding loops call predict once per token
            fast = kwargs.pop('fast', True)
        try:
            x = _lists_to_arrays(self, x)
            if method.__name__ == 'predict' and fast:
                result = _predict_small_batch(self, x, *args, **kwargs)
                if result is not fast_predict.NOT_HANDLED:
                    return result
            return method(self, x, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - only our own input checks are re-raised, the rest as is
            clear = _input_check_failure(error, method.__name__)
            if clear is None:
                raise
            raise clear from error
    setattr(wrapper, _MARK, True)
    wrapper.__wrapped_keras_method__ = method
    return wrapper


# Messages of the package's own in-graph input checks (ids entering an embedding, label ranges).
_INPUT_CHECK_MARKERS = (' expects ids in [', ': labels must be in ')


def _input_check_failure(error, method_name):
    """A ValueError with the message of one of the package's input checks that failed inside a compiled
    `fit` / `predict` step, or None. TensorFlow reports a failed assertion as an InvalidArgumentError that
    starts with ~50 lines of node trace; the message the user needs is the assertion's, so it goes first."""
    text = str(error)
    if type(error).__name__ != 'InvalidArgumentError' or 'assertion failed: [' not in text:
        return None
    message = text.split('assertion failed: [', 1)[1]
    message = message.split('] [', 1)[0].split(']\n', 1)[0].rstrip(']').replace("\\'", "'")
    if not any(marker in message for marker in _INPUT_CHECK_MARKERS):
        return None
    return ValueError('%s (found by %s; TensorFlow\'s report follows as the cause)' % (message, method_name))


_DATA_METHODS = ('predict', 'fit', 'evaluate', 'predict_on_batch', 'train_on_batch', 'test_on_batch')


def current_training_flag():
    """The `training` value of the layer call in progress (True / False / a tensor), or None outside one.

    Keras 2 had a global learning phase (`K.learning_phase()`, `K.in_train_phase`); Keras 3 passes
    `training` down the layer calls and keeps it in the call context, which it stores in a private global
    (read by `bert4keras_ext._tf_private.current_call_argument`, checked on Keras 3.15).
    """
    return _tf_private.current_call_argument('training')


def _ours(value):
    fn = value.fget if isinstance(value, property) else value
    return getattr(fn, _MARK, False)


def install():
    """Add `_make_train_function` and `total_loss` to `keras.Model` (skipped where Keras has its own)."""
    for name, value in (('_make_train_function', _make_train_function), ('total_loss', _total_loss)):
        existing = getattr(keras.Model, name, None)
        if existing is None or _ours(keras.Model.__dict__.get(name)):
            setattr(keras.Model, name, value)
    for name, value in _LAYER_METHODS:
        if getattr(keras.layers.Layer, name, None) is None or _ours(keras.layers.Layer.__dict__.get(name)):
            setattr(keras.layers.Layer, name, value)
    for name in _DATA_METHODS:
        current = getattr(keras.Model, name)
        if not _ours(current):
            setattr(keras.Model, name, _accepting_lists(current))
    if keras.backend.backend() == 'tensorflow':
        _tf_private.fix_multi_worker_fit()  # fit under MultiWorkerMirroredStrategy (docs/distributed.md)


def uninstall():
    """Remove the two attributes again (only if they are the ones `install` added)."""
    for name in ('_make_train_function', 'total_loss'):
        if _ours(keras.Model.__dict__.get(name)):
            delattr(keras.Model, name)
    for name, _ in _LAYER_METHODS:
        if _ours(keras.layers.Layer.__dict__.get(name)):
            delattr(keras.layers.Layer, name)
    for name in _DATA_METHODS:
        current = keras.Model.__dict__.get(name)
        if _ours(current):
            if current.__wrapped_keras_method__ is getattr(super(keras.Model, keras.Model), name, None):
                delattr(keras.Model, name)  # the original lived on a base class
            else:
                setattr(keras.Model, name, current.__wrapped_keras_method__)


def installed():
    """Whether both attributes are currently installed on `keras.Model`."""
    return all(_ours(keras.Model.__dict__.get(name)) for name in ('_make_train_function', 'total_loss'))
