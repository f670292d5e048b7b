"""Every private TensorFlow / Keras attribute this package uses, each behind one small function.

Checked against **TensorFlow 2.21.0 and Keras 3.15.1**. A TensorFlow or Keras upgrade that renames or
drops one of these breaks only the function here; tests/test_tf_private.py checks each attribute on the
installed versions and says which one vanished, and it fails when private access appears anywhere else
in the package (so a new one is added here, with its versions, or not at all).

=====================================  ==============================================================
function                               private attribute it reads (used by)
=====================================  ==============================================================
`call_concrete_flat(concrete, args)`   ``ConcreteFunction._call_flat`` (generation: the per-shape
`has_concrete_flat_call(concrete)`     compiled decoding step, skipping tf.function's argument checks)
`mkl_enabled()`                        ``tensorflow.python.util._pywrap_util_port.IsMklEnabled``
                                       (backend.onednn_enabled)
`keras_history(tensor)`                ``KerasTensor._keras_history`` (graph_utils.search_layer)
`has_keras_history(obj)`
`inbound_nodes(operation)`             ``Operation._inbound_nodes`` (graph_utils.search_layer,
                                       _keras_compat get_output_at / get_input_at)
`current_call_argument(name)`          ``keras.src.backend.common.global_state`` "current_call_ctx"
                                       (_keras_compat.current_training_flag: K.learning_phase)
`optimizer_variable_index(opt, var)`   ``Optimizer._get_variable_index`` (optimizers, optimizers_extra)
`optimizer_trainable_variables(opt)`   ``Optimizer._trainable_variables`` (optimizers: EMA apply/reset)
`optimizer_keras_buffers(opt)`         ``Optimizer._accumulated_gradients``,
                                       ``Optimizer._model_variables_moving_average`` (optimizers: lazy
                                       rows leave Keras' own buffers alone)
`model_compute_loss(model)`            ``Trainer._compute_loss`` (adversarial train_step)
`model_loss_tracker(model)`            ``Trainer._loss_tracker`` (adversarial train_step)
`fix_multi_worker_fit()`               ``keras.src.backend.tensorflow.trainer``: ``TensorFlowTrainer.
                                       _maybe_symbolic_build``, ``reduce_per_replica``,
                                       ``_collective_all_reduce_multi_worker`` (_keras_compat.install:
                                       fit under MultiWorkerMirroredStrategy with several workers)
=====================================  ==============================================================

This module imports nothing from the package (every module may import it without a cycle) and imports
TensorFlow / Keras internals only inside the functions that need them.
"""

__all__ = ['CHECKED_VERSIONS', 'call_concrete_flat', 'has_concrete_flat_call', 'mkl_enabled', 'keras_history',
           'has_keras_history', 'inbound_nodes', 'current_call_argument', 'optimizer_variable_index',
           'optimizer_trainable_variables', 'optimizer_keras_buffers', 'model_compute_loss', 'model_loss_tracker',
           'fix_multi_worker_fit']

# The versions every function below was checked against (tests print them when an attribute vanished).
CHECKED_VERSIONS = {'tensorflow': '2.21.0', 'keras': '3.15.1'}


# ---------------------------------------------------------------------------------------------------
# TensorFlow
# ---------------------------------------------------------------------------------------------------
def has_concrete_flat_call(concrete):
    """Whether `concrete` (a `tf.types.experimental.ConcreteFunction`) has the flat call entry."""
    # ConcreteFunction._call_flat(flat_tensor_args, captured_inputs); checked on TF 2.21 (since TF 2.x)
    return getattr(concrete, '_call_flat', None) is not None


def call_concrete_flat(concrete, args):
    """`concrete(*args)` through the flat entry: no per-call check of the (nested) arguments.

    Args:
        concrete: a ConcreteFunction traced for exactly the structure and shapes of `args`.
        args: the positional arguments (any nest of tensors) the function was traced with.
    Returns:
        the function's outputs (as `concrete(*args)` returns them).

    tf.function's public call re-hashes and re-checks every nested argument on each call (~5 ms for the
    ~80 tensors of a BERT-base decoding step); the caller checks once that both entries agree.
    """
    import tensorflow as tf
    # ConcreteFunction._call_flat(list of flat tensors, captured_inputs); checked on TF 2.21
    return concrete._call_flat(tf.nest.flatten(args), concrete.captured_inputs)


def mkl_enabled():
    """Whether TensorFlow runs its oneDNN (formerly MKL) CPU kernels in this process: a bool, or None when
    this TensorFlow no longer has the private module that says."""
    try:
        # tensorflow.python.util._pywrap_util_port.IsMklEnabled(); checked on TF 2.21
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - private module moved in a future TensorFlow
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


# ---------------------------------------------------------------------------------------------------
# Keras functional graph
# ---------------------------------------------------------------------------------------------------
def has_keras_history(obj):
    """Whether `obj` carries Keras' graph history (a symbolic tensor made by a layer call)."""
    # KerasTensor._keras_history; checked on Keras 3.15 (the same since Keras 3.0)
    return hasattr(obj, '_keras_history')


def keras_history(tensor):
    """``(operation, node_index, tensor_index)`` of the layer call that produced a symbolic tensor, or None.

    Args:
        tensor: a KerasTensor of a functional graph (e.g. ``model.outputs[0]``), or any object.
    """
    # KerasTensor._keras_history = KerasHistory(operation, node_index, tensor_index); checked on Keras 3.15
    return getattr(tensor, '_keras_history', None)


def inbound_nodes(operation):
    """The Node objects of every call of a layer (operation) in functional graphs, in call order; None when
    `operation` has no such attribute (not a Keras operation, or a Keras that renamed it).

    Each Node has the public ``input_tensors``, ``output_tensors``, ``parent_nodes`` and ``operation``.
    """
    # Operation._inbound_nodes (a list of keras.src.ops.node.Node); checked on Keras 3.15
    return getattr(operation, '_inbound_nodes', None)


def current_call_argument(name):
    """The value of call argument `name` (e.g. 'training') of the layer call in progress, or None outside one.

    Keras 3 passes `training` down the layer calls and keeps it in the call context, which it stores in a
    private global.
    """
    # keras.src.backend.common.global_state, attribute "current_call_ctx" (a keras.src.layers.layer
    # CallContext with get_value(name)); checked on Keras 3.15
    from keras.src.backend.common import global_state
    context = global_state.get_global_attribute('current_call_ctx')
    if context is None:
        return None
    get_value = getattr(context, 'get_value', None)
    return get_value(name) if get_value is not None else getattr(context, name, None)


# ---------------------------------------------------------------------------------------------------
# Keras optimizer internals (read from our Optimizer subclasses)
# ---------------------------------------------------------------------------------------------------
def optimizer_variable_index(optimizer, variable):
    """Position of `variable` in the variable list `optimizer` was built with (indexes its slot lists)."""
    # BaseOptimizer._get_variable_index(variable); checked on Keras 3.15
    return optimizer._get_variable_index(variable)


def optimizer_trainable_variables(optimizer):
    """The variables `optimizer` was built with, in build order (a list)."""
    # BaseOptimizer._trainable_variables (set by build); checked on Keras 3.15
    return optimizer._trainable_variables


def optimizer_keras_buffers(optimizer):
    """Keras' own per-variable buffers of a built optimizer: the gradient accumulators
    (``gradient_accumulation_steps``) and the moving averages (``use_ema``); an empty list without them."""
    # BaseOptimizer._accumulated_gradients and ._model_variables_moving_average (both set by build only
    # when the option is on; accumulators may hold None); checked on Keras 3.15
    buffers = list(getattr(optimizer, '_accumulated_gradients', None) or [])
    buffers += list(getattr(optimizer, '_model_variables_moving_average', None) or [])
    return [variable for variable in buffers if variable is not None]


# ---------------------------------------------------------------------------------------------------
# Keras Model (trainer) internals (read from our train_step)
# ---------------------------------------------------------------------------------------------------
def model_compute_loss(model):
    """Keras' wrapper of ``model.compute_loss`` that also accepts `training` (and drops it for a user
    ``compute_loss`` without that argument): a bound method taking ``x, y, y_pred, sample_weight, training``
    by keyword, or None on a Keras without it."""
    # Trainer._compute_loss; checked on Keras 3.15
    return getattr(model, '_compute_loss', None)


def model_loss_tracker(model):
    """The `keras.metrics.Mean` that reports the "loss" of `fit` (set by compile), or None."""
    # Trainer._loss_tracker; checked on Keras 3.15
    return getattr(model, '_loss_tracker', None)


# ---------------------------------------------------------------------------------------------------
# Keras' TensorFlow trainer under MultiWorkerMirroredStrategy (patched once by _keras_compat.install)
# ---------------------------------------------------------------------------------------------------
_MULTI_WORKER_MARK = '_bert4keras_ext_multi_worker_fix'


def fix_multi_worker_fit():
    """Make ``model.fit`` / ``evaluate`` work under `tf.distribute.MultiWorkerMirroredStrategy` with
    several workers (Keras 3.15 on TensorFlow 2.21 fails there at the first batch); idempotent.

    Two places of Keras' TensorFlow trainer reduce across workers in a way the strategy refuses, and
    each is changed only where it would raise; every other strategy (none, Mirrored, TPU, a single
    worker) keeps Keras' code path:

    * ``TensorFlowTrainer._maybe_symbolic_build`` reads the shapes of the first batch through
      ``strategy.reduce('MEAN', batch)`` on the whole nested (x, y) structure, which the collective
      strategy cannot reduce ("Attempt to convert a value (PerReplica ...)"). Only the shapes and
      dtypes are used, so this worker's own first replica's batch is given instead (no collective).
    * ``reduce_per_replica`` averages the step's logs (scalars: the loss, the metrics) over workers
      with ``strategy.reduce('MEAN', v, axis=0)``, invalid for a scalar ("Invalid reduction dimension
      0 for input with 0 dimensions"). A scalar is averaged over the replicas with ``axis=None``, which
      is what the single-worker path computes (``tf.reduce_mean`` of the replicas' values).

    Returns:
        True if the fix is in place, False if this Keras lacks the patched functions (then nothing
        changes).
    """
    # keras.src.backend.tensorflow.trainer: TensorFlowTrainer._maybe_symbolic_build(iterator, data_batch),
    # reduce_per_replica(values, strategy, reduction), _collective_all_reduce_multi_worker(strategy);
    # checked on Keras 3.15
    import functools

    import keras
    import tensorflow as tf
    try:
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        return False
    owner = trainer.TensorFlowTrainer
    build = owner.__dict__.get('_maybe_symbolic_build')
    reduce_logs = getattr(trainer, 'reduce_per_replica', None)
    multi_worker = getattr(trainer, '_collective_all_reduce_multi_worker', None)
    if build is None or reduce_logs is None or multi_worker is None:
        return False
    if getattr(build, _MULTI_WORKER_MARK, False):
        return True

    def local_first(strategy, value):
        return strategy.experimental_local_results(value)[0]

    @functools.wraps(build)
    def maybe_symbolic_build(self, *args, **kwargs):
        strategy = getattr(self, '_distribute_strategy', None)
        if strategy is None or not multi_worker(strategy):
            return build(self, *args, **kwargs)
        reduce = strategy.reduce

        def shapes_only(reduce_op, value, axis=None):
            leaves = keras.tree.flatten(value)
            if axis is None and leaves and all(isinstance(v, tf.distribute.DistributedValues) for v in leaves):
                return keras.tree.map_structure(lambda v: local_first(strategy, v), value)
            return reduce(reduce_op, value, axis=axis)

        strategy.reduce = shapes_only  # on this instance, for this call only
        try:
            return build(self, *args, **kwargs)
        finally:
            del strategy.reduce

    @functools.wraps(reduce_logs)
    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ('auto', 'mean') or not multi_worker(strategy):
            return reduce_logs(values, strategy, reduction)

        def one(value):
            if local_first(strategy, value).shape.rank == 0:
                return strategy.reduce('MEAN', value, axis=None)
            return reduce_logs(value, strategy, reduction)
        return keras.tree.map_structure(one, values)

    setattr(maybe_symbolic_build, _MULTI_WORKER_MARK, True)
    owner._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica
    return True
