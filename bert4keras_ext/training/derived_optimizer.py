"""The machinery shared by every derived optimizer: the `DerivedOptimizer` mixin (per-variable settings resolved
at build time, the learning-rate multiplier, one update in bert4keras' order) and the naming / registration
of the classes the ``extend_with_*`` factories make. The order of an update is documented in
`bert4keras_ext.optimizers`' module docstring."""
import re
import warnings

from bert4keras_ext import _tf_private
from bert4keras_ext.backend import keras, ops, piecewise_linear
from bert4keras_ext.training.optimizer_helpers import (
    _PACKAGE, _constant, _dense, _read, _string_matching, _variable_path,
)

__all__ = ['DerivedOptimizer']

# The classes the factories make carry the bert4keras import path they are documented and imported under.
_PUBLIC_MODULE = 'bert4keras_ext.optimizers'


# ---------------------------------------------------------------------------------------------------
# The shared machinery of derived optimizers
# ---------------------------------------------------------------------------------------------------
class _VariableSettings:
    """What the derived stages do to one model variable (resolved once, at build time, from its path)."""

    __slots__ = ('path', 'stages', 'decay', 'multiplier', 'lazy', 'lazy_slots', 'slow', 'ema')

    def __init__(self, path):
        self.path = path
        self.stages = ()  # the update transforms, in nesting order (innermost first)
        self.decay = 0.0
        self.multiplier = 1.0
        self.lazy = False
        self.lazy_slots = []
        self.slow = None
        self.ema = None


class _State:
    """Plain Python holder for build-time bookkeeping (kept out of Keras' attribute tracking)."""

    def __init__(self):
        self.recording = False
        self.slots = {}  # id(model variable) -> slots the base optimizer created for it
        self.settings = []
        self.backup = None  # model weights saved by apply_ema_weights


class DerivedOptimizer:
    """Mixin placed once under every class made by an ``extend_with_*`` factory.

    Holds the stages listed in `bert4keras_ext.optimizers`' docstring; each factory only adds its constructor
    arguments and config. Defaults here mean "extension not present".
    """

    _derived_extensions = ()
    weight_decay_rate = 0.0
    lr_schedule = None
    paramwise_lr_schedule = None
    exclude_from_layer_adaptation = None
    include_in_lazy_optimization = None
    steps_per_slow_update = None
    slow_step_size = None
    exclude_from_weight_decay_patterns = None
    moving_average = False

    # ----------------------------------------------------------------------------- learning rate
    @property
    def learning_rate(self):
        learning_rate = super().learning_rate
        if self.lr_schedule is None:
            return learning_rate
        multiplier = piecewise_linear(self.iterations, self.lr_schedule)
        return ops.cast(learning_rate, 'float32') * multiplier

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        # sets the base rate (the schedule keeps multiplying it), through the base optimizer's own setter
        # (AdaFactor's switches its relative step size off)
        mro = type(self).__mro__
        for klass in mro[mro.index(DerivedOptimizer) + 1:]:
            prop = vars(klass).get('learning_rate')
            if isinstance(prop, property) and prop.fset is not None:
                return prop.fset(self, learning_rate)
        raise AttributeError('%s has no learning_rate setter' % type(self).__name__)

    # ----------------------------------------------------------------------------- building
    def _derived_state(self):
        state = self.__dict__.get('_b4k_state')
        if state is None:
            state = _State()
            object.__setattr__(self, '_b4k_state', state)
        return state

    def add_variable_from_reference(self, reference_variable, name=None, initializer='zeros'):
        variable = super().add_variable_from_reference(reference_variable, name=name, initializer=initializer)
        state = self._derived_state()
        if state.recording:
            state.slots.setdefault(id(reference_variable), []).append(variable)
        return variable

    def build(self, var_list):
        if self.built:
            return
        var_list = list(var_list)
        state = self._derived_state()
        state.recording = True
        try:
            super().build(var_list)
        finally:
            state.recording = False
        # Keras' own per-variable buffers are not optimizer state that lazy rows should freeze.
        keras_buffers = {id(v) for v in _tf_private.optimizer_keras_buffers(self)}
        state.settings = []
        for variable in var_list:
            settings = _VariableSettings(_variable_path(variable))
            path, stages = settings.path, []
            # _derived_extensions lists the extensions innermost first: the order in which bert4keras'
            # nested K.update interceptions transform the new value
            for tag in self._derived_extensions:
                if tag == 'WeightDecay' and self.weight_decay_rate:
                    if not _string_matching(path, self.exclude_from_weight_decay_patterns or []):
                        settings.decay = self.weight_decay_rate
                        stages.append('decay')
                elif tag == 'LayerAdaptation':
                    if not _string_matching(path, self.exclude_from_layer_adaptation):
                        stages.append('adapt')
                elif tag == 'ParameterWiseLR':
                    for key, value in self.paramwise_lr_schedule.items():
                        if key in path:
                            settings.multiplier *= float(value)
                    if settings.multiplier != 1.0:
                        stages.append('scale')
                elif tag == 'LazyOptimization':
                    if _string_matching(path, self.include_in_lazy_optimization):
                        settings.lazy = True
                        stages.append('lazy')
                        # only the slots shaped like the variable have rows to freeze (not e.g.
                        # AdaFactor's factored moments)
                        settings.lazy_slots = [
                            s for s in state.slots.get(id(variable), [])
                            if id(s) not in keras_buffers and tuple(s.shape) == tuple(variable.shape)]
            settings.stages = tuple(stages)
            state.settings.append(settings)
        if self.steps_per_slow_update is not None:
            for variable, settings in zip(var_list, state.settings):
                settings.slow = self.add_variable_from_reference(variable, name='slow')
        if self.moving_average:
            for variable, settings in zip(var_list, state.settings):
                settings.ema = self.add_variable_from_reference(variable, name='ema')

    # ----------------------------------------------------------------------------- one update
    def update_step(self, gradient, variable, learning_rate):
        settings = self._derived_state().settings[_tf_private.optimizer_variable_index(self, variable)]
        stages, lookahead = settings.stages, settings.slow is not None
        if not (stages or lookahead or settings.ema is not None):
            return super().update_step(gradient, variable, learning_rate)

        lr = ops.cast(learning_rate, variable.dtype)
        # Decay alone (AdamW): subtract lr·λ·θ, taken before the step, from the stepped weights — one
        # read of θ fewer than keeping θ and reading the stepped weights back.
        decay_only = stages == ('decay',) and not lookahead
        if decay_only:
            decay = lr * _constant(settings.decay, variable.dtype) * _read(variable)
        old = _read(variable) if (stages and not decay_only) or lookahead else None
        if settings.lazy:
            # (rows, 1) for matrices; a single flag for vectors, as in bert4keras
            seen = ops.any(ops.not_equal(_dense(gradient), 0), axis=-1, keepdims=True)
            old_slots = [_read(slot) for slot in settings.lazy_slots]
        super().update_step(gradient, variable, learning_rate)

        new = None
        if decay_only:
            self.assign_sub(variable, decay)
        elif stages:
            new = _read(variable)
            for stage in stages:
                if stage == 'decay':
                    new = new - lr * _constant(settings.decay, new.dtype) * old
                elif stage == 'adapt':
                    delta = new - old
                    safe_lr = ops.maximum(lr, _constant(keras.config.epsilon(), lr.dtype))
                    weight_norm = ops.sqrt(ops.sum(ops.square(old)))
                    update_norm = ops.sqrt(ops.sum(ops.square(delta / safe_lr)))
                    ratio = ops.where(ops.logical_and(weight_norm > 0, update_norm > 0),
                                      weight_norm / ops.where(update_norm > 0, update_norm, 1.0), 1.0)
                    new = old + delta * ratio
                elif stage == 'scale':
                    new = old + (new - old) * _constant(settings.multiplier, new.dtype)
                else:  # lazy
                    new = ops.where(seen, new, old)
            if settings.lazy:
                for slot, old_slot in zip(settings.lazy_slots, old_slots):
                    self.assign(slot, ops.where(seen, _read(slot), old_slot))
            self.assign(variable, new)

        if lookahead:
            new = _read(variable) if new is None else new
            # Φ₀ = the weights at the first update. Taken here rather than copied at build time: Keras
            # builds the optimizer while tracing the first step, where a copy of a large weight cannot be
            # lifted out of an XLA function.
            slow = ops.where(ops.equal(self.iterations, 0), old, _read(settings.slow))
            sync = ops.equal((self.iterations + 1) % self.steps_per_slow_update, 0)
            synced = slow + _constant(self.slow_step_size, slow.dtype) * (new - slow)
            self.assign(settings.slow, ops.where(sync, synced, slow))
            new = ops.where(sync, synced, new)
            self.assign(variable, new)

        if settings.ema is not None:
            new = _read(variable) if new is None else new
            momentum = _constant(self.ema_momentum, new.dtype)
            self.assign(settings.ema, momentum * _read(settings.ema) + (1.0 - momentum) * new)

    # ----------------------------------------------------------------------------- validation
    @classmethod
    def _check_new_extension(cls, tag):
        if tag in cls._derived_extensions:
            raise ValueError('%s already has the %s extension; applying extend_with_* twice would '
                             'silently override its arguments' % (cls.__name__, tag))


_CLASS_CACHE = {}


def _prepare(BaseOptimizer, tag, name):
    """Validate the base, and return (bases for the new class, cached class or None, resolved name)."""
    if not (isinstance(BaseOptimizer, type) and issubclass(BaseOptimizer, keras.optimizers.Optimizer)):
        raise TypeError('extend_with_*: BaseOptimizer must be a keras.optimizers.Optimizer subclass '
                        '(e.g. keras.optimizers.Adam or bert4keras_ext.optimizers.Adam), got %r' % (BaseOptimizer,))
    if issubclass(BaseOptimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError('extend_with_*: extend the inner optimizer, then wrap the result in '
                        'keras.optimizers.LossScaleOptimizer (got %s)' % BaseOptimizer.__name__)
    if name is None:
        # Keras' optimizers are prefixed so that e.g. keras.optimizers.Adam and bert4keras_ext.optimizers'
        # Adam give different names: 'KerasAdam_WeightDecay' and 'Adam_WeightDecay'.
        prefix = BaseOptimizer.__name__
        if (BaseOptimizer.__module__ or '').split('.')[0] == 'keras':
            prefix = 'Keras' + prefix
        name = '%s_%s' % (prefix, tag)
    if not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', name):
        raise ValueError('extend_with_*: name must be a Python identifier, got %r' % name)
    cached = _CLASS_CACHE.get((tag, BaseOptimizer, name))
    if cached is None and issubclass(BaseOptimizer, DerivedOptimizer):
        BaseOptimizer._check_new_extension(tag)
    bases = (BaseOptimizer,) if issubclass(BaseOptimizer, DerivedOptimizer) else (DerivedOptimizer, BaseOptimizer)
    return bases, cached, name


def _finish(cls, BaseOptimizer, tag, name, doc):
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = _PUBLIC_MODULE
    cls.__doc__ = doc
    cls._derived_extensions = tuple(getattr(BaseOptimizer, '_derived_extensions', ())) + (tag,)
    registered = '%s>%s' % (_PACKAGE, name)
    previous = keras.saving.get_custom_objects().get(registered)
    if previous is not None and previous is not cls:
        warnings.warn('replacing the optimizer class registered as %r (a class of that name was made from a '
                      'different base); pass name= to keep both' % registered, stacklevel=3)
    keras.saving.register_keras_serializable(package=_PACKAGE, name=name)(cls)
    _CLASS_CACHE[(tag, BaseOptimizer, name)] = cls
    return cls


def _patterns(value, argument):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    value = list(value)
    if not all(isinstance(v, str) for v in value):
        raise TypeError('%s must be a list of regex strings, got %r' % (argument, value))
    return value
