"""bert4keras' AdaFactor and Lion optimizers on the Keras 3 optimizer API.

Re-exported by `bert4keras_ext.optimizers` (import them from there, as in bert4keras). Both are plain
`keras.optimizers.Optimizer` subclasses (``build`` + ``update_step``), so they take every Keras optimizer
argument (``clipnorm``, ``gradient_accumulation_steps`` …) and can be extended with the
``extend_with_*`` factories of `bert4keras_ext.optimizers`, e.g.
``extend_with_piecewise_linear_lr(AdaFactor)`` or ``extend_with_weight_decay(Lion)``.

bert4keras has two AdaFactor classes, ``AdaFactorV1`` (Keras 2 ``get_updates``) and ``AdaFactorV2``
(tf.keras slots), which compute the same update; Keras 3 has one optimizer API, so here ``AdaFactorV1``,
``AdaFactorV2`` and ``AdaFactor`` are one class, and likewise ``LionV2`` and ``Lion``.

This module imports only the backend (the optimizers facade re-exports it at its end).
"""
import numpy as np

from bert4keras_ext import _tf_private
from bert4keras_ext.backend import keras, ops

__all__ = ['AdaFactorBase', 'AdaFactor', 'AdaFactorV1', 'AdaFactorV2', 'Lion', 'LionV2']

_PACKAGE = 'bert4keras_ext'


def _dense(x):
    """A dense tensor for a gradient that may be `tf.IndexedSlices` (embedding lookups)."""
    if hasattr(x, 'indices') and hasattr(x, 'values') and hasattr(x, 'dense_shape'):
        import tensorflow as tf  # only reached on the TensorFlow backend, which produces IndexedSlices
        return tf.convert_to_tensor(x)
    return x


def _constant(value, dtype):
    """A Python number (exactly, not rounded through float32 as `ops.cast` does) or a tensor, as `dtype`."""
    return ops.convert_to_tensor(value, dtype) if isinstance(value, (int, float)) else ops.cast(value, dtype)


def _rms(x):
    """Root mean square of all entries of `x` (a scalar)."""
    return ops.sqrt(ops.mean(ops.square(x)))


def _take_lr_alias(learning_rate, default, kwargs, owner):
    """Keras 2 optimizers took ``lr=``; accept it as ``learning_rate`` (not both)."""
    if 'lr' not in kwargs:
        return learning_rate
    lr = kwargs.pop('lr')
    if learning_rate != default and learning_rate != lr:
        raise ValueError('%s: pass the learning rate once, as learning_rate= (got learning_rate=%r and lr=%r)'
                         % (owner, learning_rate, lr))
    return lr


def _variable_path(variable):
    return getattr(variable, 'path', None) or variable.name


# ---------------------------------------------------------------------------------------------------
# AdaFactor
# ---------------------------------------------------------------------------------------------------
class AdaFactorBase(keras.optimizers.Optimizer):
    """AdaFactor (Shazeer & Stern 2018) with bert4keras' arguments, defaults and update rule.

    Per variable θ with gradient g, at update t = iterations + 1:

    * second moments of g² + ε₁: a full matrix v for vectors and small matrices, otherwise the *factored*
      row and column means r (shape with the largest axis set to 1) and c (the second-largest axis set to
      1) with v̂ = r·c / mean(r); each moment is ← β₂·moment + (1 − β₂)·new;
    * u = g / √(v̂ + ε₁), clipped to u / max(1, rms(u)/d) (``clipping_threshold`` d);
    * with ``beta1`` > 0, u ← m = β₁·m + (1 − β₁)·u (a momentum on the clipped update);
    * with ``multiply_by_parameter_scale``, u ← u·max(rms(θ), ε₂);
    * θ ← θ − lr·u.

    Args:
        learning_rate: a float, a `LearningRateSchedule`, or None for the *relative step size*
            min(1/√t, 0.01) (× 0.05 when ``multiply_by_parameter_scale`` is False). Default 1e-3.
            ``lr=`` (Keras 2) is accepted as an alias.
        beta1: momentum on the update (0 = none, no ``m`` slot). Default 0.
        beta2: second-moment decay; None (default) for the schedule β₂ = 1 − t^(−0.8).
        epsilon1: added to g² and to v̂ (default 1e-30). epsilon2: floor of rms(θ) (default 1e-3).
        multiply_by_parameter_scale: scale the update by rms(θ) (default True).
        clipping_threshold: d above, or None for no clipping (default 1.0).
        min_dim_size_to_factor: factor a variable of rank ≥ 2 when its second-largest dimension is at
            least this (default 128).
        exclude_from_parameter_scale: regexes searched in variable paths that skip the parameter scale.
        **kwargs: any `keras.optimizers.Optimizer` argument (``name``, ``clipnorm`` …).

    The factored axes are chosen as bert4keras does (``numpy.argpartition`` of the shape), so ties between
    equal dimensions resolve the same way.
    """

    def __init__(self, learning_rate=1e-3, beta1=0.0, beta2=None, epsilon1=1e-30, epsilon2=1e-3,
                 multiply_by_parameter_scale=True, clipping_threshold=1.0, min_dim_size_to_factor=128,
                 exclude_from_parameter_scale=None, name=None, **kwargs):
        learning_rate = _take_lr_alias(learning_rate, 1e-3, kwargs, type(self).__name__)
        relative = learning_rate is None
        super().__init__(learning_rate=1.0 if relative else learning_rate, name=name or 'AdaFactor', **kwargs)
        if not 0.0 <= float(beta1) < 1.0:
            raise ValueError('AdaFactor: beta1 must be in [0, 1), got %r' % (beta1,))
        if beta2 is not None and not 0.0 <= float(beta2) < 1.0:
            raise ValueError('AdaFactor: beta2 must be None (the 1 - t^-0.8 schedule) or in [0, 1), got %r'
                             % (beta2,))
        if clipping_threshold is not None and not float(clipping_threshold) > 0:
            raise ValueError('AdaFactor: clipping_threshold must be > 0 or None, got %r' % (clipping_threshold,))
        if int(min_dim_size_to_factor) < 1:
            raise ValueError('AdaFactor: min_dim_size_to_factor must be >= 1, got %r' % (min_dim_size_to_factor,))
        patterns = exclude_from_parameter_scale or []
        patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if not all(isinstance(p, str) for p in patterns):
            raise TypeError('AdaFactor: exclude_from_parameter_scale must be a list of regex strings, got %r'
                            % (exclude_from_parameter_scale,))
        self._relative_step = relative
        self.beta1 = float(beta1)
        self._beta2 = None if beta2 is None else float(beta2)
        self.epsilon1 = float(epsilon1)
        self.epsilon2 = float(epsilon2)
        self.multiply_by_parameter_scale = bool(multiply_by_parameter_scale)
        self.clipping_threshold = None if clipping_threshold is None else float(clipping_threshold)
        self.min_dim_size_to_factor = int(min_dim_size_to_factor)
        self.exclude_from_parameter_scale = patterns

    # ----------------------------------------------------------------------------- schedules
    def _step(self):
        return ops.cast(self.iterations + 1, 'float32')

    @property
    def learning_rate(self):
        if getattr(self, '_relative_step', False):
            rate = ops.minimum(1.0 / ops.sqrt(self._step()), 0.01)
            return rate if self.multiply_by_parameter_scale else rate * 0.05
        return super().learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if learning_rate is None:  # back to the relative step size
            self._relative_step = True
            return
        keras.optimizers.Optimizer.learning_rate.fset(self, learning_rate)
        self._relative_step = False

    @property
    def beta2(self):
        if self._beta2 is None:
            return 1.0 - ops.power(self._step(), -0.8)
        return self._beta2

    def factored_shape(self, shape):
        """(shape1, axis1, shape2, axis2) of the row/column moments, or None to keep a full moment."""
        if len(shape) < 2:
            return None
        shape = np.array(shape)
        indices = shape.argpartition(-2)
        if shape[indices[-2]] < self.min_dim_size_to_factor:
            return None
        shape1, shape2 = np.array(shape), np.array(shape)
        shape1[indices[-1]] = 1
        shape2[indices[-2]] = 1
        return tuple(int(s) for s in shape1), int(indices[-1]), tuple(int(s) for s in shape2), int(indices[-2])

    def _do_parameter_scale(self, variable):
        import re
        path = _variable_path(variable)
        return self.multiply_by_parameter_scale and not any(re.search(p, path) for p in
                                                              self.exclude_from_parameter_scale)

    # ----------------------------------------------------------------------------- update
    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m, self._v, self._vr, self._vc = [], [], [], []
        self._factored, self._scaled = [], []
        for variable in var_list:
            self._m.append(self.add_variable_from_reference(variable, 'm') if self.beta1 > 0 else None)
            factored = self.factored_shape(tuple(variable.shape))
            self._factored.append(factored)
            self._scaled.append(self._do_parameter_scale(variable))
            if factored is None:
                self._v.append(self.add_variable_from_reference(variable, 'v'))
                self._vr.append(None)
                self._vc.append(None)
            else:
                prefix = _variable_path(variable).replace('/', '_')
                shape1, _, shape2, _ = factored
                self._v.append(None)
                self._vr.append(self.add_variable(shape1, dtype=variable.dtype, name=prefix + '_vr'))
                self._vc.append(self.add_variable(shape2, dtype=variable.dtype, name=prefix + '_vc'))

    def update_step(self, gradient, variable, learning_rate):
        index = _tf_private.optimizer_variable_index(self, variable)
        dtype = variable.dtype
        gradient = ops.cast(_dense(gradient), dtype)
        lr = ops.cast(learning_rate, dtype)
        beta2 = _constant(self.beta2, dtype)
        epsilon1 = _constant(self.epsilon1, dtype)
        g2 = ops.square(gradient) + epsilon1
        factored = self._factored[index]
        if factored is None:
            v = self._v[index]
            v_t = beta2 * v + (1.0 - beta2) * g2
            self.assign(v, v_t)
        else:
            _, axis1, _, axis2 = factored
            vr, vc = self._vr[index], self._vc[index]
            vr_t = beta2 * vr + (1.0 - beta2) * ops.mean(g2, axis=axis1, keepdims=True)
            vc_t = beta2 * vc + (1.0 - beta2) * ops.mean(g2, axis=axis2, keepdims=True)
            self.assign(vr, vr_t)
            self.assign(vc, vc_t)
            v_t = vr_t * vc_t / ops.mean(vr_t, axis=axis2, keepdims=True)
        update = gradient / ops.sqrt(v_t + epsilon1)
        if self.clipping_threshold is not None:
            update = update / ops.maximum(1.0, _rms(update) / _constant(self.clipping_threshold, dtype))
        if self.beta1 > 0:
            m = self._m[index]
            beta1 = _constant(self.beta1, dtype)
            update = beta1 * m + (1.0 - beta1) * update
            self.assign(m, update)
        if self._scaled[index]:
            update = update * ops.maximum(_rms(variable), _constant(self.epsilon2, dtype))
        self.assign_sub(variable, lr * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            learning_rate=None if self._relative_step else config['learning_rate'],
            beta1=self.beta1, beta2=self._beta2, epsilon1=self.epsilon1, epsilon2=self.epsilon2,
            multiply_by_parameter_scale=self.multiply_by_parameter_scale,
            clipping_threshold=self.clipping_threshold, min_dim_size_to_factor=self.min_dim_size_to_factor,
            exclude_from_parameter_scale=list(self.exclude_from_parameter_scale))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AdaFactor(AdaFactorBase):
    __doc__ = AdaFactorBase.__doc__


# bert4keras' two implementations (Keras 2 get_updates / tf.keras slots) of the same update
AdaFactorV1 = AdaFactorV2 = AdaFactor


# ---------------------------------------------------------------------------------------------------
# Lion
# ---------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package=_PACKAGE)
class Lion(keras.optimizers.Optimizer):
    """Lion (Chen et al. 2023, https://arxiv.org/abs/2302.06675) with bert4keras' defaults.

    θ ← θ − lr·sign(β₁·m + (1 − β₁)·g), then m ← β₂·m + (1 − β₂)·g (one slot, m). Decoupled weight decay,
    as in the paper, comes from ``extend_with_weight_decay(Lion)`` (bert4keras' way: θ ← … − lr·λ·θ) or
    from Keras' ``weight_decay=λ`` argument — the same arithmetic for Lion, whose step does not depend on θ.

    Args:
        learning_rate: float or `LearningRateSchedule` (default 3e-4; ``lr=`` accepted as an alias).
        beta_1: interpolation between momentum and gradient inside the sign (default 0.95).
        beta_2: momentum decay (default 0.98).
        **kwargs: any `keras.optimizers.Optimizer` argument.

    Differs from `keras.optimizers.Lion` only in the defaults (Keras: β₁ = 0.9, β₂ = 0.99, lr 1e-3).
    """

    def __init__(self, learning_rate=3e-4, beta_1=0.95, beta_2=0.98, name=None, **kwargs):
        learning_rate = _take_lr_alias(learning_rate, 3e-4, kwargs, type(self).__name__)
        super().__init__(learning_rate=learning_rate, name=name or 'Lion', **kwargs)
        for argument, value in (('beta_1', beta_1), ('beta_2', beta_2)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError('Lion: %s must be in [0, 1], got %r' % (argument, value))
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(variable, 'm') for variable in var_list]

    def update_step(self, gradient, variable, learning_rate):
        m = self._momentums[_tf_private.optimizer_variable_index(self, variable)]
        dtype = variable.dtype
        gradient = ops.cast(_dense(gradient), dtype)
        beta_1, beta_2 = _constant(self.beta_1, dtype), _constant(self.beta_2, dtype)
        self.assign_sub(variable, ops.cast(learning_rate, dtype) * ops.sign(beta_1 * m + (1.0 - beta_1) * gradient))
        self.assign(m, beta_2 * m + (1.0 - beta_2) * gradient)

    def get_config(self):
        config = super().get_config()
        config.update(beta_1=self.beta_1, beta_2=self.beta_2)
        return config


LionV2 = Lion
