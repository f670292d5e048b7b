"""bert4keras 0.11.5's graph and decorator helpers on Keras 3: `search_layer`, `recompute_grad`,
`graph_mode_decorator`, `symbolic`, `get_available_gpus`, `is_tf_keras`.

Import them from `bert4keras_ext.backend` (which re-exports everything here). This module imports only
Keras (TensorFlow inside the functions that need it). Where Keras 3 changes the mechanism:

- `search_layer(inputs, name)` walks Keras 3's functional graph backwards; the only private Keras access
  is `_graph_parents`.
- `recompute_grad` no longer reads the ``RECOMPUTE`` environment variable: a decorated ``call``
  rematerialises when its layer has ``self.recompute = True``.
- `symbolic` is the identity, as in bert4keras; `graph_mode_decorator(f, *args)` is `tf.custom_gradient`.
- `is_tf_keras` is True: on TensorFlow >= 2.16 `tf.keras` *is* Keras 3.
"""
import functools

import keras

from bert4keras_ext import _tf_private
from bert4keras_ext._keras_compat import ADVERSARIAL_REPLACEMENT, Keras2APIError

__all__ = ['is_tf_keras', 'get_available_gpus', 'search_layer', 'symbolic', 'graph_mode_decorator', 'recompute_grad']

# bert4keras switched between standalone keras and tf.keras with TF_KERAS=1; with TensorFlow >= 2.16
# `tf.keras` is Keras 3, the only Keras this package runs on.
is_tf_keras = True


def get_available_gpus():
    """Names of the visible GPUs, e.g. ['/device:GPU:0', '/device:GPU:1'] (empty on CPU-only machines)."""
    import tensorflow as tf
    return [device.name for device in tf.config.list_logical_devices('GPU')]


# ---------------------------------------------------------------------------------------------------
# Graph search
# ---------------------------------------------------------------------------------------------------
def _graph_parents(item):
    """(layer, [layers feeding it]) for a symbolic tensor or a layer of a functional graph.

    The one place that reads Keras' private graph attributes (through `bert4keras_ext._tf_private`);
    checked on Keras 3.15.1 (the same since Keras 3.0): a KerasTensor produced by a layer call has
    ``_keras_history = (operation, node_index, tensor_index)``; every operation keeps its calls in
    ``_inbound_nodes`` (Node objects), and a Node's public ``parent_nodes`` are the nodes whose outputs it
    consumed. For a tensor, only the call that made
    it is followed; for a layer, all its calls.
    """
    history = _tf_private.keras_history(item)
    if history is not None:
        layer = history[0]
        nodes = [_tf_private.inbound_nodes(layer)[history[1]]]
    else:
        layer = item
        nodes = list(_tf_private.inbound_nodes(item) or [])
    parents = []
    for node in nodes:
        for parent in node.parent_nodes:
            if all(parent.operation is not p for p in parents):
                parents.append(parent.operation)
    return layer, parents


def find_layer_in_model(model, name):
    """The layer called `name` in `model` or in any model nested inside it, or None."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = find_layer_in_model(layer, name)
            if found is not None:
                return found
    return None


def search_layer(inputs, name, exclude_from=None):
    """The layer called `name` upstream of `inputs`, or None (bert4keras' `search_layer`).

    Args:
        inputs: a symbolic tensor of a functional model (e.g. ``model.outputs[0]``), a layer, or a Model
            (its layers, nested models included, are searched).
        name: the layer name, e.g. 'Embedding-Token'.
        exclude_from: a set of layers not to search from (updated in place with the visited ones).
    Returns:
        the first layer named `name` found walking the graph backwards from `inputs`, or None.
    """
    visited = set() if exclude_from is None else exclude_from
    if isinstance(inputs, keras.Model):
        if inputs.name == name:
            return inputs
        return find_layer_in_model(inputs, name)
    if not isinstance(inputs, (keras.layers.Layer, keras.KerasTensor)) and not _tf_private.has_keras_history(inputs):
        if hasattr(inputs, 'shape') and hasattr(inputs, 'dtype'):
            raise Keras2APIError(
                'search_layer(inputs, name): inputs is a concrete tensor (%s), not a symbolic tensor of a '
                'functional model. In Keras 3 a loss function receives concrete tensors, so bert4keras\' '
                'gradient-penalty loss (search_layer(y_pred, ...) + K.gradients) cannot work there. Search '
                'from model.outputs[0] or use model.get_layer(name); for the penalty itself: %s'
                % (type(inputs).__name__, ADVERSARIAL_REPLACEMENT))
        raise TypeError('search_layer: inputs must be a symbolic tensor (e.g. model.outputs[0]), a layer or a '
                        'Model, got %r' % (inputs,))
    stack = [inputs]
    while stack:
        layer, parents = _graph_parents(stack.pop())
        if layer.name == name:
            return layer
        if layer in visited:
            continue
        visited.add(layer)
        if isinstance(layer, keras.Model):
            found = find_layer_in_model(layer, name)
            if found is not None:
                return found
        stack.extend(reversed(parents))  # depth first, first input first (as bert4keras)
    return None


# ---------------------------------------------------------------------------------------------------
# Decorators
# ---------------------------------------------------------------------------------------------------
def symbolic(f):
    """Identity decorator (bert4keras kept it for old Keras versions)."""
    return f


def graph_mode_decorator(f, *args, **kwargs):
    """Call ``f(*args, **kwargs)``, which returns ``(outputs, grad_fn)``, with `grad_fn` as its gradient.

    This is `tf.custom_gradient` (bert4keras reached a private TensorFlow function for the same thing);
    ``grad_fn(*doutputs, variables=None)`` returns the input gradients, and variable gradients too when
    `f` reads variables.
    """
    import tensorflow as tf
    return tf.custom_gradient(f)(*args, **kwargs)


def _is_float(x):
    return 'float' in keras.backend.standardize_dtype(x.dtype)


def recompute_grad(call):
    """Decorator for a layer's ``call``: recompute its activations in the backward pass instead of storing
    them (gradient checkpointing, arxiv.org/abs/1604.06174), when ``self.recompute`` is True.

    bert4keras switched this on for every decorated layer with the ``RECOMPUTE=1`` environment variable;
    here a layer opts in with the attribute (this package's own layers take ``recompute=True``, and
    ``build_transformer_model(..., recompute=True)`` sets it on their attention and feed-forward layers).
    Results are identical either way; only float inputs are differentiated (ids and masks pass through).
    Do not use it on a call that draws random numbers (dropout): the recomputation would draw different ones.
    """
    @functools.wraps(call)
    def inner(self, inputs, *args, **kwargs):
        if not getattr(self, 'recompute', False):
            return call(self, inputs, *args, **kwargs)
        flat = keras.tree.flatten(inputs)
        is_float = [_is_float(t) for t in flat]

        def forward(*float_inputs):
            floats = iter(float_inputs)
            merged = [next(floats) if f else t for t, f in zip(flat, is_float)]
            return call(self, keras.tree.pack_sequence_as(inputs, merged), *args, **kwargs)

        return keras.remat(forward)(*[t for t, f in zip(flat, is_float) if f])

    return inner
