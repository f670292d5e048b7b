"""bert4keras' ``extend_with_*`` factories: each returns a subclass of its base optimizer with one more stage
(`derived_optimizer` runs the stages), and the usual conveniences `AdamW` and `AdamEMA`."""
from bert4keras_ext import _tf_private
from bert4keras_ext.backend import ops
from bert4keras_ext.training.adam import Adam
from bert4keras_ext.training.derived_optimizer import _finish, _patterns, _prepare

__all__ = [
    'extend_with_weight_decay', 'extend_with_layer_adaptation', 'extend_with_piecewise_linear_lr',
    'extend_with_gradient_accumulation', 'extend_with_lookahead', 'extend_with_lazy_optimization',
    'extend_with_exponential_moving_average', 'extend_with_parameter_wise_lr', 'AdamW', 'AdamEMA',
]


# ---------------------------------------------------------------------------------------------------
# The factories
# ---------------------------------------------------------------------------------------------------
def extend_with_weight_decay(BaseOptimizer, name=None):
    """Decoupled weight decay as bert4keras applies it: the step's new value θ' becomes θ' − lr·λ·θ.

    New arguments: ``weight_decay_rate=0.01`` (λ) and ``exclude_from_weight_decay=[]``: regexes searched
    in each variable's path (e.g. ``['Norm', 'bias']`` skips LayerNorm gammas/betas and all biases).
    lr is the current (scheduled) learning rate; the decay runs once per real update. Keras' own
    ``weight_decay=`` is accepted as an alias of ``weight_decay_rate`` but not used as Keras uses it
    (before the step): nested inside ``extend_with_layer_adaptation`` the decay must be part of the
    update that LAMB's trust ratio scales, and outside it the ratio must see the undecayed weights.
    For optimizers whose step does not read θ (Adam, Lion, SGD) the result equals Keras' decay.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'WeightDecay', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, weight_decay_rate=0.01, exclude_from_weight_decay=None, **kwargs):
            keras_decay = kwargs.pop('weight_decay', None)
            if keras_decay is not None and float(keras_decay) != float(weight_decay_rate or 0.0):
                raise ValueError('pass the decay once: weight_decay_rate=%r and weight_decay=%r disagree'
                                 % (weight_decay_rate, keras_decay))
            super().__init__(*args, **kwargs)
            if getattr(self, 'weight_decay', None):
                raise ValueError('%s already applies Keras\' weight_decay=%r; extend an optimizer without its '
                                 'own decay (e.g. keras.optimizers.Adam rather than AdamW)'
                                 % (BaseOptimizer.__name__, self.weight_decay))
            rate = float(weight_decay_rate or 0.0)
            if rate < 0:
                raise ValueError('weight_decay_rate must be >= 0, got %r' % (weight_decay_rate,))
            self.weight_decay_rate = rate
            self.exclude_from_weight_decay_patterns = _patterns(exclude_from_weight_decay,
                                                                'exclude_from_weight_decay')

        def get_config(self):
            config = super().get_config()
            config.pop('weight_decay', None)  # Keras' (unused) decay
            config.update(weight_decay_rate=self.weight_decay_rate,
                          exclude_from_weight_decay=list(self.exclude_from_weight_decay_patterns))
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'WeightDecay', name, extend_with_weight_decay.__doc__)


def extend_with_layer_adaptation(BaseOptimizer, name=None):
    """Layer-wise adaptive rate (LAMB's trust ratio): the update Δ = θ' − θ of each variable becomes Δ·‖θ‖/‖Δ/lr‖.

    New argument: ``exclude_from_layer_adaptation=[]`` (regexes on variable paths). The ratio is 1 when
    either norm is 0; lr is floored at ``keras.config.epsilon()``. Δ is the update made by everything
    nested inside: ``extend_with_layer_adaptation(extend_with_weight_decay(Adam))`` scales Adam's step
    *plus* the decay (LAMB as in the paper and in bert4keras); ``extend_with_weight_decay(
    extend_with_layer_adaptation(Adam))`` scales only Adam's step and then adds the decay.
    `keras.optimizers.Lamb` is neither: it decays first and then lets the ratio see the decayed weights.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'LayerAdaptation', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, exclude_from_layer_adaptation=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.exclude_from_layer_adaptation = _patterns(exclude_from_layer_adaptation,
                                                           'exclude_from_layer_adaptation')

        def get_config(self):
            config = super().get_config()
            config['exclude_from_layer_adaptation'] = list(self.exclude_from_layer_adaptation)
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'LayerAdaptation', name, extend_with_layer_adaptation.__doc__)


def extend_with_piecewise_linear_lr(BaseOptimizer, name=None):
    """Piecewise-linear learning-rate multiplier, e.g. ``lr_schedule={1000: 1, 2000: 0.1}``.

    The multiplier is `backend.piecewise_linear(t, lr_schedule)` at update count t: linear warm-up from 0
    to 1 over the first 1000 updates (a (0, 0) point is implied when the first key is not 0), down to
    0.1 at 2000, constant afterwards. It multiplies Keras' learning rate, which may itself be a float or
    any ``keras.optimizers.schedules.LearningRateSchedule``. It is a multiplier rather than a
    LearningRateSchedule because Keras calls schedules with the micro-batch counter under gradient
    accumulation and makes a scheduled rate read-only; here ``optimizer.learning_rate = x`` still sets
    the base rate and t counts real updates.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'PiecewiseLinearLR', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, lr_schedule=None, **kwargs):
            super().__init__(*args, **kwargs)
            schedule = {0: 1.0} if lr_schedule is None else lr_schedule
            if not isinstance(schedule, dict) or not schedule:
                raise ValueError('lr_schedule must be a non-empty dict {step: multiplier}, got %r' % (lr_schedule,))
            steps = [int(k) for k in schedule]
            if min(steps) < 0 or len(set(steps)) != len(steps):
                raise ValueError('lr_schedule steps must be distinct integers >= 0, got %r' % (lr_schedule,))
            self.lr_schedule = {int(k): float(v) for k, v in schedule.items()}

        def get_config(self):
            config = super().get_config()
            config['lr_schedule'] = {str(k): v for k, v in sorted(self.lr_schedule.items())}
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'PiecewiseLinearLR', name, extend_with_piecewise_linear_lr.__doc__)


def extend_with_gradient_accumulation(BaseOptimizer, name=None):
    """Gradient accumulation over ``grad_accum_steps=2`` calls, built on Keras' ``gradient_accumulation_steps``.

    k calls to ``apply`` (k micro-batches of ``fit``) make one update with the mean gradient, which for a
    mean loss equals one step on the k-times larger batch. ``optimizer.iterations`` counts updates, so Adam's
    bias correction, ``lr_schedule``, lookahead periods and EMA all run in real steps. Sparse gradients
    are accumulated densely (one buffer per variable, the size of the variable). ``grad_accum_steps=1``
    turns accumulation off.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'GradientAccumulation', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, grad_accum_steps=2, **kwargs):
            keras_steps = kwargs.pop('gradient_accumulation_steps', None)
            if keras_steps is not None and int(keras_steps) != int(grad_accum_steps):
                raise ValueError('pass the accumulation once: grad_accum_steps=%r and gradient_accumulation_steps=%r'
                                 ' disagree' % (grad_accum_steps, keras_steps))
            steps = int(grad_accum_steps)
            if steps < 1:
                raise ValueError('grad_accum_steps must be an integer >= 1, got %r' % (grad_accum_steps,))
            super().__init__(*args, gradient_accumulation_steps=steps if steps > 1 else None, **kwargs)
            self.grad_accum_steps = steps

        def get_config(self):
            config = super().get_config()
            config.pop('gradient_accumulation_steps', None)  # derived from grad_accum_steps
            config['grad_accum_steps'] = self.grad_accum_steps
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'GradientAccumulation', name,
                   extend_with_gradient_accumulation.__doc__)


def extend_with_lookahead(BaseOptimizer, name=None):
    """Lookahead (Zhang et al. 2019): slow weights Φ, starting at the model's weights θ₀.

    New arguments: ``steps_per_slow_update=5`` (k) and ``slow_step_size=0.5`` (α). After every k updates
    Φ ← Φ + α(θ − Φ) and θ ← Φ. Φ₀ is the weights as the first update starts (bert4keras started Φ at
    zero and synchronised at updates 1, k + 1, …). Φ is one extra buffer per variable, saved with
    the optimizer. Written here (Keras has no lookahead).
    """
    bases, cached, name = _prepare(BaseOptimizer, 'Lookahead', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, steps_per_slow_update=5, slow_step_size=0.5, **kwargs):
            super().__init__(*args, **kwargs)
            if int(steps_per_slow_update) < 1:
                raise ValueError('steps_per_slow_update must be >= 1, got %r' % (steps_per_slow_update,))
            if not 0.0 <= float(slow_step_size) <= 1.0:
                raise ValueError('slow_step_size must be in [0, 1], got %r' % (slow_step_size,))
            self.steps_per_slow_update = int(steps_per_slow_update)
            self.slow_step_size = float(slow_step_size)

        def get_config(self):
            config = super().get_config()
            config.update(steps_per_slow_update=self.steps_per_slow_update, slow_step_size=self.slow_step_size)
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'Lookahead', name, extend_with_lookahead.__doc__)


def extend_with_lazy_optimization(BaseOptimizer, name=None):
    """Lazy updates: rows of matched variables whose gradient is all zero are left untouched.

    New argument: ``include_in_lazy_optimization=[]`` (regexes on variable paths, typically
    ``['Embedding']``). A row (last axis) with an all-zero gradient keeps its value *and* its rows of
    the base optimizer's slots (Adam's m and v), so token embeddings absent from a batch do not drift
    with stale momentum. Works with the sparse gradients of embedding lookups. As in bert4keras the mask
    applies to the update made by the extensions nested inside (a weight decay wrapped around this one
    still decays unseen rows). Written here.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'LazyOptimization', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, include_in_lazy_optimization=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.include_in_lazy_optimization = _patterns(include_in_lazy_optimization,
                                                          'include_in_lazy_optimization')

        def get_config(self):
            config = super().get_config()
            config['include_in_lazy_optimization'] = list(self.include_in_lazy_optimization)
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'LazyOptimization', name, extend_with_lazy_optimization.__doc__)


def extend_with_exponential_moving_average(BaseOptimizer, name=None):
    """Exponential moving average of the weights, with bert4keras' swap API.

    New argument: ``ema_momentum=0.999`` (μ). After each update e ← μe + (1 − μ)θ, e starting at zero.
    ``optimizer.apply_ema_weights(bias_correction=True)`` backs the weights up and replaces them by
    e/(1 − μᵗ) (t = updates so far; ``bias_correction=False`` uses e as is); ``reset_old_weights()``
    puts the backed-up weights back. Typical use: evaluate/save with the averaged weights at epoch end.

    Not built on Keras' ``use_ema``: that average starts from the first step's weights (no bias
    correction to apply), advances on every micro-batch under gradient accumulation, has no
    backup/restore, and ``fit`` overwrites the model's weights with it at the end of training. Keras'
    ``use_ema`` is rejected here to avoid two averages.
    """
    bases, cached, name = _prepare(BaseOptimizer, 'ExponentialMovingAverage', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, ema_momentum=0.999, **kwargs):
            if kwargs.pop('use_ema', False):
                raise ValueError('extend_with_exponential_moving_average keeps its own average; do not also '
                                 'pass use_ema=True (Keras\' EMA)')
            for keras_only in ('ema_overwrite_frequency',):
                if kwargs.pop(keras_only, None) is not None:
                    raise ValueError('%s belongs to Keras\' use_ema, which this optimizer replaces' % keras_only)
            if not 0.0 <= float(ema_momentum) < 1.0:
                raise ValueError('ema_momentum must be in [0, 1), got %r' % (ema_momentum,))
            super().__init__(*args, **kwargs)
            self.ema_momentum = float(ema_momentum)
            self.moving_average = True

        def apply_ema_weights(self, bias_correction=True):
            """Back up the model weights, then load the moving averages into them."""
            if not self.built:
                raise RuntimeError('apply_ema_weights: the optimizer has not been built (train first)')
            state = self._derived_state()
            steps = int(ops.convert_to_numpy(self.iterations))
            if bias_correction and steps == 0:
                raise RuntimeError('apply_ema_weights: no update has been made yet, so there is no average')
            variables = list(_tf_private.optimizer_trainable_variables(self))
            state.backup = [ops.convert_to_numpy(v) for v in variables]
            scale = 1.0 - self.ema_momentum ** steps if bias_correction else 1.0
            for variable, settings in zip(variables, state.settings):
                average = ops.convert_to_numpy(settings.ema)
                variable.assign((average / scale).astype(average.dtype))

        def reset_old_weights(self):
            """Restore the weights backed up by the last `apply_ema_weights`."""
            state = self._derived_state()
            if state.backup is None:
                raise RuntimeError('reset_old_weights: call apply_ema_weights first')
            for variable, value in zip(_tf_private.optimizer_trainable_variables(self), state.backup):
                variable.assign(value)
            state.backup = None

        def get_config(self):
            config = super().get_config()
            config.update(ema_momentum=self.ema_momentum, use_ema=False)
            config.pop('ema_overwrite_frequency', None)
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'ExponentialMovingAverage', name,
                   extend_with_exponential_moving_average.__doc__)


def extend_with_parameter_wise_lr(BaseOptimizer, name=None):
    """Per-variable learning-rate multipliers by name, e.g. ``paramwise_lr_schedule={'Embedding': 0.1}``.

    A variable's step is multiplied by the product of the values whose key is a *substring* of its path
    (bert4keras semantics), e.g. layer-wise rates ``{'Transformer-0-': 0.5, 'Transformer-11-': 1.0}``.
    As in bert4keras the multiplier scales the update made by the extensions nested inside it (a weight
    decay nested inside is scaled too; layer adaptation wrapped around it undoes it). Written here (Keras
    has no per-variable rates).
    """
    bases, cached, name = _prepare(BaseOptimizer, 'ParameterWiseLR', name)
    if cached is not None:
        return cached

    class NewOptimizer(*bases):
        def __init__(self, *args, paramwise_lr_schedule=None, **kwargs):
            super().__init__(*args, **kwargs)
            schedule = dict(paramwise_lr_schedule or {})
            if not all(isinstance(k, str) for k in schedule):
                raise TypeError('paramwise_lr_schedule keys must be name substrings, got %r' % (schedule,))
            self.paramwise_lr_schedule = {k: float(v) for k, v in schedule.items()}

        def get_config(self):
            config = super().get_config()
            config['paramwise_lr_schedule'] = dict(self.paramwise_lr_schedule)
            return config

    return _finish(NewOptimizer, BaseOptimizer, 'ParameterWiseLR', name, extend_with_parameter_wise_lr.__doc__)


# bert4keras' usual conveniences
AdamW = extend_with_weight_decay(Adam, name='AdamW')
AdamEMA = extend_with_exponential_moving_average(Adam, name='AdamEMA')
