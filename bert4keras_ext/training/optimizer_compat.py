"""The rest of bert4keras' optimizers module: `export_to_custom_objects`, the ``extend_with_X_v2`` names and
`custom_objects`."""
import functools
import inspect

from bert4keras_ext.backend import keras
from bert4keras_ext.optimizers_extra import AdaFactor
from bert4keras_ext.text_utils import is_string
from bert4keras_ext.training.adam import Adam
from bert4keras_ext.training.optimizer_extensions import (
    extend_with_exponential_moving_average, extend_with_gradient_accumulation, extend_with_layer_adaptation,
    extend_with_lazy_optimization, extend_with_lookahead, extend_with_parameter_wise_lr,
    extend_with_piecewise_linear_lr, extend_with_weight_decay,
)
from bert4keras_ext.training.optimizer_helpers import _PACKAGE

__all__ = [
    'export_to_custom_objects', 'custom_objects', 'extend_with_weight_decay_v2', 'extend_with_layer_adaptation_v2',
    'extend_with_piecewise_linear_lr_v2', 'extend_with_gradient_accumulation_v2', 'extend_with_lookahead_v2',
    'extend_with_lazy_optimization_v2', 'extend_with_exponential_moving_average_v2',
    'extend_with_parameter_wise_lr_v2',
]


def export_to_custom_objects(base_extend_with):
    """bert4keras' decorator for optimizer factories: ``f(BaseOptimizer)`` → ``f(BaseOptimizer, name=None)``.

    The decorated factory names the class it returns ``name`` (if given) and registers it with Keras under
    ``'bert4keras_ext>' + name`` so that saved models load it back (bert4keras put it in
    ``keras.utils.get_custom_objects()`` under the bare name; Keras 3 serialises registered names).
    A factory that already takes ``name`` (all of `bert4keras_ext.optimizers`') receives it unchanged.

    Args:
        base_extend_with: a function taking an optimizer class and returning a subclass of it. Note that a
            bert4keras-style body overriding ``_resource_apply_dense`` or ``get_updates`` has no effect on
            Keras 3, whose optimizers call ``update_step(gradient, variable, learning_rate)``.
    """
    takes_name = 'name' in inspect.signature(base_extend_with).parameters

    @functools.wraps(base_extend_with)
    def new_extend_with(BaseOptimizer, name=None):
        if name is not None and not is_string(name):
            raise TypeError('%s: name must be a string, got %r' % (base_extend_with.__name__, name))
        if takes_name:
            return base_extend_with(BaseOptimizer, name=name)
        NewOptimizer = base_extend_with(BaseOptimizer)
        if name is not None:
            NewOptimizer.__name__ = NewOptimizer.__qualname__ = name
        return keras.saving.register_keras_serializable(package=_PACKAGE, name=NewOptimizer.__name__)(NewOptimizer)

    return new_extend_with


# What bert4keras imports with TF_KERAS=1. Keras 3 has one optimizer API, so the tf.keras ("_v2") and
# Keras 2 variants are the same functions; both take bert4keras' call form f(BaseOptimizer, name=None).
extend_with_weight_decay_v2 = extend_with_weight_decay
extend_with_layer_adaptation_v2 = extend_with_layer_adaptation
extend_with_piecewise_linear_lr_v2 = extend_with_piecewise_linear_lr
extend_with_gradient_accumulation_v2 = extend_with_gradient_accumulation
extend_with_lookahead_v2 = extend_with_lookahead
extend_with_lazy_optimization_v2 = extend_with_lazy_optimization
extend_with_exponential_moving_average_v2 = extend_with_exponential_moving_average
extend_with_parameter_wise_lr_v2 = extend_with_parameter_wise_lr

# bert4keras also copied these into Keras' global custom objects; that is not done here: under Keras 3
# the bare name 'Adam' there would capture the loading of every model saved with keras.optimizers.Adam.
# The classes are registered as 'bert4keras_ext>Adam' / 'bert4keras_ext>AdaFactor', which is what loads
# them; pass this dict as load_model(..., custom_objects=custom_objects) where a script did so.
custom_objects = {
    'Adam': Adam,
    'AdaFactor': AdaFactor,
}
