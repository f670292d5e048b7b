"""bert4keras compatibility of `bert4keras_ext.optimizers`: public names, bert4keras' call forms, the
nesting arithmetic of the update extensions, AdaFactor and Lion.

The references are numpy transcriptions of bert4keras 0.11.5's tf.keras code (`optimizers.py`, the
``_v2`` variants that TF_KERAS=1 binds), in float64:

* `B4KSimulator` reproduces bert4keras' mechanism literally: the base optimizer's per-variable apply
  calls ``update(x, new_x)``, and each extension's apply wraps the current ``update`` before calling the
  class it extends — so the innermost extension transforms new_x first, as with bert4keras' ``K.update``
  interception;
* `b4k_adafactor` / `b4k_lion` follow ``AdaFactorV2._resource_apply_dense`` / ``LionV2``.
"""
import re

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import optimizers as O
from bert4keras_ext.backend import keras

TOL = 1e-6
TOL64 = 1e-10  # float64 runs


def f32(value):
    """Hyperparameters as the optimizers hold them (float32)."""
    return float(np.float32(value))


def rms(x):
    return np.sqrt(np.mean(np.square(x)))


def run(optimizer, init, grads, dtype='float32'):
    """Apply the per-step gradients `grads[t][name]` eagerly (what fit does per batch) to Keras variables
    named after the keys; return the weights in float64."""
    variables = {name: keras.Variable(value.astype(dtype), name=name, dtype=dtype) for name, value in init.items()}
    names = list(init)
    for step_grads in grads:
        optimizer.apply([tf.constant(step_grads[n].astype(dtype)) for n in names], [variables[n] for n in names])
    return {n: variables[n].numpy().astype('float64') for n in names}, variables


def assert_close(actual, expected, tol=TOL):
    for name in expected:
        diff = np.abs(np.asarray(actual[name], 'float64') - expected[name]).max()
        assert diff <= tol, '%s: max |diff| %.3g > %.1g' % (name, diff, tol)


# ------------------------------------------------------------------------------------------------
# Public names and bert4keras' call forms
# ------------------------------------------------------------------------------------------------
EXTENSIONS = ['weight_decay', 'layer_adaptation', 'piecewise_linear_lr', 'gradient_accumulation', 'lookahead',
              'lazy_optimization', 'exponential_moving_average', 'parameter_wise_lr']
PUBLIC_NAMES = (['AdaFactor', 'AdaFactorBase', 'AdaFactorV1', 'AdaFactorV2', 'Adam', 'Lion', 'LionV2',
                 'custom_objects', 'export_to_custom_objects', 'insert_arguments', 'is_one_of', 'is_string',
                 'is_tf_keras', 'piecewise_linear', 'rms', 'string_matching']
                + ['extend_with_' + e for e in EXTENSIONS] + ['extend_with_%s_v2' % e for e in EXTENSIONS])


def test_every_bert4keras_public_name_is_importable():
    missing = [name for name in PUBLIC_NAMES if not hasattr(O, name)]
    assert not missing
    assert set(PUBLIC_NAMES) <= set(O.__all__)
    namespace = {}
    exec('from bert4keras_ext.optimizers import *', namespace)
    assert all(name in namespace for name in PUBLIC_NAMES)
    # bert4keras' custom_objects holds its Adam and AdaFactor
    assert O.custom_objects == {'Adam': O.Adam, 'AdaFactor': O.AdaFactor}
    assert O.AdaFactor.__name__ == 'AdaFactor' and O.AdaFactorV1 is O.AdaFactorV2 is O.AdaFactor
    assert issubclass(O.AdaFactor, O.AdaFactorBase) and O.LionV2 is O.Lion
    assert O.is_tf_keras is True


def test_helpers_follow_bert4keras():
    assert O.is_string('a') and not O.is_string(b'a')
    assert O.string_matching('Transformer-0-Norm/gamma', ['Norm$', 'Norm/']) and not O.string_matching('x', ['y'])
    a, b = np.zeros(2), np.zeros(2)
    assert O.is_one_of(a, [b, a]) and not O.is_one_of(a, [b])
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    assert abs(float(O.rms(x)) - np.sqrt(25 / 4)) < 1e-6
    assert abs(float(O.piecewise_linear(500, {1000: 1, 2000: 0.1})) - 0.5) < 1e-6

    class Thing:
        @O.insert_arguments(scale=2.0)
        def __init__(self, **kwargs):
            self.rest = kwargs

    thing = Thing(scale=3.0, other=1)
    assert thing.scale == 3.0 and thing.rest == {'other': 1}


@pytest.mark.parametrize('extension', EXTENSIONS)
def test_v2_factories_are_the_same_functions_and_take_the_bert4keras_call_form(extension):
    v1, v2 = getattr(O, 'extend_with_' + extension), getattr(O, 'extend_with_%s_v2' % extension)
    assert v1 is v2
    name = 'Compat_' + extension.title().replace('_', '')
    cls = v2(O.Adam, name)  # positional name, as bert4keras scripts write it
    assert cls.__name__ == name and issubclass(cls, O.Adam)
    assert v2(O.Adam, name) is cls
    assert keras.saving.get_registered_object('bert4keras_ext>' + name) is cls


def test_bert4keras_constructor_arguments():
    """A typical bert4keras stack, built and configured with bert4keras' argument names."""
    AdamW = O.extend_with_weight_decay_v2(O.Adam, 'AdamW')
    assert AdamW is O.AdamW
    AdamWLR = O.extend_with_piecewise_linear_lr_v2(AdamW, 'CompatAdamWLR')
    AdamWLRG = O.extend_with_gradient_accumulation_v2(AdamWLR, 'CompatAdamWLRG')
    Everything = O.extend_with_parameter_wise_lr_v2(O.extend_with_exponential_moving_average_v2(
        O.extend_with_lazy_optimization_v2(O.extend_with_lookahead_v2(O.extend_with_layer_adaptation_v2(
            AdamWLRG, 'CompatLamb'), 'CompatLookahead'), 'CompatLazy'), 'CompatEMA'), 'CompatEverything')
    optimizer = Everything(learning_rate=2e-5, weight_decay_rate=0.01, exclude_from_weight_decay=['Norm', 'bias'],
                           lr_schedule={1000: 1, 2000: 0.1}, grad_accum_steps=4, exclude_from_layer_adaptation=['Norm'],
                           steps_per_slow_update=5, slow_step_size=0.5, include_in_lazy_optimization=['Embedding'],
                           ema_momentum=0.999, paramwise_lr_schedule={'Embedding': 0.1})
    assert optimizer.weight_decay_rate == 0.01 and optimizer.lr_schedule == {1000: 1.0, 2000: 0.1}
    assert optimizer.grad_accum_steps == 4 and optimizer.steps_per_slow_update == 5
    assert optimizer.slow_step_size == 0.5 and optimizer.include_in_lazy_optimization == ['Embedding']
    assert optimizer.ema_momentum == 0.999 and optimizer.paramwise_lr_schedule == {'Embedding': 0.1}
    assert optimizer.exclude_from_layer_adaptation == ['Norm']
    # bert4keras' EMA API
    assert callable(optimizer.apply_ema_weights) and callable(optimizer.reset_old_weights)
    # Keras 2's lr= on bert4keras' Adam (and the bases defined here)
    assert abs(float(O.Adam(lr=0.02).learning_rate) - 0.02) < 1e-9
    assert abs(float(O.Lion(lr=0.02).learning_rate) - 0.02) < 1e-9
    with pytest.raises(ValueError, match='pass the learning rate once'):
        O.Adam(learning_rate=0.1, lr=0.2)


def test_weight_decay_refuses_a_base_that_decays_itself():
    with pytest.raises(ValueError, match='already applies Keras\' weight_decay'):
        O.extend_with_weight_decay(keras.optimizers.AdamW)(learning_rate=0.1)
    with pytest.raises(ValueError, match='disagree'):
        O.AdamW(weight_decay_rate=0.1, weight_decay=0.2)


def test_export_to_custom_objects():
    @O.export_to_custom_objects
    def extend_with_nothing(BaseOptimizer):
        class NewOptimizer(BaseOptimizer):
            pass
        return NewOptimizer

    cls = extend_with_nothing(keras.optimizers.SGD, 'CompatSGDNothing')
    assert cls.__name__ == 'CompatSGDNothing' and issubclass(cls, keras.optimizers.SGD)
    assert keras.saving.get_registered_object('bert4keras_ext>CompatSGDNothing') is cls
    with pytest.raises(TypeError, match='name must be a string'):
        extend_with_nothing(keras.optimizers.SGD, 3)
    # a factory that takes name itself gets it passed through
    wrapped = O.export_to_custom_objects(O.extend_with_lookahead)
    assert wrapped(O.Adam, 'CompatLookaheadExported') is O.extend_with_lookahead(O.Adam, 'CompatLookaheadExported')


# ------------------------------------------------------------------------------------------------
# Nesting arithmetic: a literal numpy transcription of bert4keras' K.update interception
# ------------------------------------------------------------------------------------------------
class B4KSimulator:
    """bert4keras' `Adam` + the `_v2` extensions, composed by wrapping, in float64.

    `nesting` lists the extensions innermost first, e.g. ['weight_decay', 'layer_adaptation'] is
    ``extend_with_layer_adaptation_v2(extend_with_weight_decay_v2(Adam))``.
    """

    def __init__(self, init, nesting, learning_rate, beta_1, beta_2, epsilon, weight_decay_rate=0.0,
                 exclude_from_weight_decay=(), exclude_from_layer_adaptation=(), include_in_lazy_optimization=(),
                 paramwise_lr_schedule=None):
        self.vars = {k: v.astype('float64').copy() for k, v in init.items()}
        self.slots = {('m', k): np.zeros_like(v) for k, v in self.vars.items()}
        self.slots.update({('v', k): np.zeros_like(v) for k, v in self.vars.items()})
        # run against float64 variables: only the learning rate is a float32 (Keras keeps it in a float32 variable)
        self.lr, self.beta_1, self.beta_2, self.epsilon = f32(learning_rate), beta_1, beta_2, epsilon
        self.weight_decay_rate = weight_decay_rate
        self.exclude_from_weight_decay = exclude_from_weight_decay
        self.exclude_from_layer_adaptation = exclude_from_layer_adaptation
        self.include_in_lazy_optimization = include_in_lazy_optimization
        self.paramwise_lr_schedule = paramwise_lr_schedule or {}
        self.iterations = 0
        apply = self.adam_apply
        for extension in nesting:  # each factory subclasses the previous class: wraps its apply
            apply = getattr(self, extension)(apply)
        self.apply = apply

    def read(self, x):
        return self.vars[x] if isinstance(x, str) else self.slots[x]

    def raw_update(self, x, new_x):
        if isinstance(x, str):
            self.vars[x] = new_x
        else:
            self.slots[x] = new_x
        return new_x

    def step(self, grads):
        for name in self.vars:
            self.apply(grads[name], name, self.raw_update)
        self.iterations += 1

    # Adam._resource_apply_dense
    def adam_apply(self, grad, var, update):
        t = self.iterations + 1
        m_t = update(('m', var), self.beta_1 * self.read(('m', var)) + (1 - self.beta_1) * grad)
        v_t = update(('v', var), self.beta_2 * self.read(('v', var)) + (1 - self.beta_2) * grad ** 2)
        m_t, v_t = m_t / (1 - self.beta_1 ** t), v_t / (1 - self.beta_2 ** t)
        return update(var, self.read(var) - self.lr * m_t / (np.sqrt(v_t) + self.epsilon))

    # each extension: NewOptimizer._resource_apply_dense, which swaps K.update for a wrapper of it
    def weight_decay(self, apply):
        def new_apply(grad, var, update):
            def new_update(x, new_x):
                if x == var and not any(re.search(p, x) for p in self.exclude_from_weight_decay):
                    new_x = new_x - self.lr * self.weight_decay_rate * self.read(x)
                return update(x, new_x)
            return apply(grad, var, new_update)
        return new_apply

    def layer_adaptation(self, apply):
        def new_apply(grad, var, update):
            def new_update(x, new_x):
                if x == var and not any(re.search(p, x) for p in self.exclude_from_layer_adaptation):
                    dx = new_x - self.read(x)
                    lr_t = max(self.lr, 1e-7)
                    x_norm, g_norm = np.linalg.norm(self.read(x)), np.linalg.norm(dx / lr_t)
                    ratio = (x_norm / g_norm if g_norm > 0 else 1.0) if x_norm > 0 else 1.0
                    new_x = self.read(x) + dx * ratio
                return update(x, new_x)
            return apply(grad, var, new_update)
        return new_apply

    def lazy_optimization(self, apply):
        def new_apply(grad, var, update):
            def new_update(x, new_x):
                if x == var and any(re.search(p, x) for p in self.include_in_lazy_optimization):
                    r = np.any(grad != 0, axis=-1, keepdims=True)
                    new_x = self.read(x) + (new_x - self.read(x)) * r
                return update(x, new_x)
            return apply(grad, var, new_update)
        return new_apply

    def parameter_wise_lr(self, apply):
        def new_apply(grad, var, update):
            def new_update(x, new_x):
                if x == var:
                    multiplier = 1
                    for key, value in self.paramwise_lr_schedule.items():
                        if key in x:
                            multiplier *= value
                    if multiplier != 1:
                        new_x = self.read(x) + (new_x - self.read(x)) * multiplier
                return update(x, new_x)
            return apply(grad, var, new_update)
        return new_apply


FACTORY = {'weight_decay': O.extend_with_weight_decay_v2, 'layer_adaptation': O.extend_with_layer_adaptation_v2,
           'lazy_optimization': O.extend_with_lazy_optimization_v2,
           'parameter_wise_lr': O.extend_with_parameter_wise_lr_v2}
ADAM = dict(learning_rate=0.05, beta_1=0.9, beta_2=0.95, epsilon=1e-6)  # β₂ 0.95: see tests/test_optimizers.py


def nesting_problem(steps, seed=0):
    rng = np.random.RandomState(seed)
    init = {'Embedding-Token_embeddings': rng.randn(5, 3), 'Dense_kernel': rng.randn(3, 4),
            'Dense_bias': 0.1 * rng.randn(4)}
    grads = []
    for _ in range(steps):
        g = {k: rng.randn(*v.shape) for k, v in init.items()}
        # rows 3 and 4 never get a gradient (as unseen tokens): bert4keras' lazy update and this one's
        # (which also freezes Adam's moments) then agree, so the test isolates the nesting order
        g['Embedding-Token_embeddings'][3:] = 0
        grads.append(g)
    return init, grads


def build(nesting, **kwargs):
    cls = O.Adam
    for extension in nesting:
        cls = FACTORY[extension](cls, 'Compat_' + '_'.join(nesting[:nesting.index(extension) + 1]))
    return cls(**ADAM, **kwargs)


@pytest.mark.parametrize('nesting', [['weight_decay', 'layer_adaptation'], ['layer_adaptation', 'weight_decay']],
                         ids=['adaptation(decay(Adam))', 'decay(adaptation(Adam))'])
def test_lamb_nestings_equal_bert4keras(nesting):
    init, grads = nesting_problem(6)
    args = dict(weight_decay_rate=0.1, exclude_from_weight_decay=['bias'])
    # float64 variables: a float32 run agrees to ~1e-6 (rounding), float64 to ~1e-15, so this tolerance
    # leaves room for nothing but rounding
    actual, _ = run(build(nesting, **args), init, grads, dtype='float64')
    reference = B4KSimulator(init, nesting, **ADAM, **args)
    for g in grads:
        reference.step(g)
    assert_close(actual, reference.vars, TOL64)
    # the two nestings are different optimizers (as in bert4keras), by more than the tolerance
    other = B4KSimulator(init, nesting[::-1], **ADAM, **args)
    for g in grads:
        other.step(g)
    assert np.abs(other.vars['Dense_kernel'] - reference.vars['Dense_kernel']).max() > 1e-4


@pytest.mark.parametrize('nesting', [
    ['weight_decay', 'layer_adaptation', 'lazy_optimization', 'parameter_wise_lr'],
    ['parameter_wise_lr', 'lazy_optimization', 'layer_adaptation', 'weight_decay'],
    ['lazy_optimization', 'weight_decay', 'parameter_wise_lr', 'layer_adaptation'],
], ids=['forward', 'reversed', 'mixed'])
def test_four_update_extensions_nest_as_in_bert4keras(nesting):
    init, grads = nesting_problem(5, seed=1)
    args = dict(weight_decay_rate=0.2, exclude_from_weight_decay=['bias'], exclude_from_layer_adaptation=['bias'],
                include_in_lazy_optimization=['Embedding'], paramwise_lr_schedule={'Embedding': 0.5, 'Dense': 2.0})
    actual, _ = run(build(nesting, **args), init, grads, dtype='float64')
    reference = B4KSimulator(init, nesting, **ADAM, **args)
    for g in grads:
        reference.step(g)
    assert_close(actual, reference.vars, TOL64)


# ------------------------------------------------------------------------------------------------
# AdaFactor
# ------------------------------------------------------------------------------------------------
def b4k_factored_shape(shape, min_dim_size_to_factor):
    if len(shape) < 2:
        return None
    shape = np.array(shape)
    indices = shape.argpartition(-2)
    if shape[indices[-2]] < min_dim_size_to_factor:
        return None
    shape1, shape2 = np.array(shape), np.array(shape)
    shape1[indices[-1]] = 1
    shape2[indices[-2]] = 1
    return shape1, indices[-1], shape2, indices[-2]


def b4k_adafactor(init, grads, learning_rate=1e-3, beta1=0.0, beta2=None, epsilon1=1e-30, epsilon2=1e-3,
                  multiply_by_parameter_scale=True, clipping_threshold=1.0, min_dim_size_to_factor=128,
                  exclude_from_parameter_scale=(), weight_decay_rate=0.0, lr_schedule=None):
    """AdaFactorV2._resource_apply_dense (+ extend_with_weight_decay_v2 / extend_with_piecewise_linear_lr_v2)."""
    theta = {k: v.astype('float64').copy() for k, v in init.items()}
    state = {k: {} for k in theta}
    for t0, step_grads in enumerate(grads):
        t = t0 + 1
        if learning_rate is None:
            lr = min(1.0 / np.sqrt(t), 0.01) * (1.0 if multiply_by_parameter_scale else 0.05)
        else:
            lr = f32(learning_rate)
        if lr_schedule:
            points = sorted(lr_schedule.items())
            points = ([(0, 0.0)] if points[0][0] != 0 else []) + points
            lr *= float(np.interp(t0, *zip(*points)))
        b2 = 1.0 - t ** -0.8 if beta2 is None else f32(beta2)
        for k, x in theta.items():
            g = step_grads[k]
            s = state[k]
            g2 = g ** 2 + epsilon1
            factored = b4k_factored_shape(x.shape, min_dim_size_to_factor)
            if factored is None:
                s['v'] = b2 * s.get('v', 0.0) + (1 - b2) * g2
                v_t = s['v']
            else:
                _, axis1, _, axis2 = factored
                s['vr'] = b2 * s.get('vr', 0.0) + (1 - b2) * g2.mean(axis=axis1, keepdims=True)
                s['vc'] = b2 * s.get('vc', 0.0) + (1 - b2) * g2.mean(axis=axis2, keepdims=True)
                v_t = s['vr'] * s['vc'] / s['vr'].mean(axis=axis2, keepdims=True)
            u = g / np.sqrt(v_t + epsilon1)
            if clipping_threshold is not None:
                u = u / max(1.0, rms(u) / clipping_threshold)
            if beta1 > 0:
                s['m'] = f32(beta1) * s.get('m', 0.0) + (1 - f32(beta1)) * u
                u = s['m']
            if multiply_by_parameter_scale and not any(re.search(p, k) for p in exclude_from_parameter_scale):
                u = u * max(rms(x), epsilon2)
            new = x - lr * u
            if weight_decay_rate:
                new = new - lr * f32(weight_decay_rate) * x
            theta[k] = new
    return theta


def adafactor_problem(steps, shapes, seed=2):
    rng = np.random.RandomState(seed)
    init = {name: rng.randn(*shape) for name, shape in shapes.items()}
    grads = [{name: rng.randn(*shape) * (1 + t) for name, shape in shapes.items()} for t in range(steps)]
    return init, grads


# kernel (3, 5): factored over its largest axis 1 (rows → (3, 1)) and its second-largest axis 0 (→ (1, 5));
# square (4, 4): a tie, resolved by numpy's argpartition as in bert4keras; block (2, 3, 4) a 3-d tensor;
# bias (5,) and small (2, 3) (second-largest dim 2 < 3): full second moments
SHAPES = {'kernel': (3, 5), 'square': (4, 4), 'block': (2, 3, 4), 'bias': (5,), 'small': (2, 3)}
ADAFACTOR_CASES = {
    'defaults-relative-step': dict(learning_rate=None),
    'fixed-lr-beta1-beta2': dict(learning_rate=0.01, beta1=0.9, beta2=0.99),
    'no-parameter-scale-no-clipping': dict(learning_rate=None, multiply_by_parameter_scale=False,
                                           clipping_threshold=None),
    'tight-clipping-exclusion': dict(learning_rate=0.02, clipping_threshold=0.5, beta1=0.5,
                                     exclude_from_parameter_scale=['bias']),
}


@pytest.mark.parametrize('case', list(ADAFACTOR_CASES))
def test_adafactor_equals_bert4keras(case):
    args = dict(ADAFACTOR_CASES[case], min_dim_size_to_factor=3)
    init, grads = adafactor_problem(6, SHAPES)
    optimizer = O.AdaFactor(**args)
    actual, variables = run(optimizer, init, grads)
    assert_close(actual, b4k_adafactor(init, grads, **args))
    # the slots: row/column moments for the factored variables, a full one otherwise, m only with beta1
    slots = {v.path.split('/')[-1]: tuple(v.shape) for v in optimizer.variables}
    expected = {'kernel_vr': (3, 1), 'kernel_vc': (1, 5), 'square_vr': (4, 1), 'square_vc': (1, 4),
                'block_vr': (2, 3, 1), 'block_vc': (2, 1, 4), 'bias_v': (5,), 'small_v': (2, 3)}
    if args.get('beta1'):
        expected.update({name + '_m': shape for name, shape in SHAPES.items()})
    assert {k: v for k, v in slots.items() if k not in ('iteration', 'learning_rate')} == expected


def test_adafactor_with_bert4keras_extensions():
    """extend_with_weight_decay: θ − lr·u(rms θ) − lr·λ·θ (the decay reads the weights before the step);
    extend_with_piecewise_linear_lr over the relative step size multiplies it."""
    init, grads = adafactor_problem(5, {'kernel': (3, 5), 'bias': (5,)})
    AdaFactorW = O.extend_with_weight_decay_v2(O.AdaFactor, 'CompatAdaFactorW')
    actual, _ = run(AdaFactorW(learning_rate=0.05, weight_decay_rate=0.5, min_dim_size_to_factor=3), init, grads)
    assert_close(actual, b4k_adafactor(init, grads, learning_rate=0.05, weight_decay_rate=0.5,
                                       min_dim_size_to_factor=3))

    AdaFactorLR = O.extend_with_piecewise_linear_lr_v2(O.AdaFactor, 'CompatAdaFactorLR')
    optimizer = AdaFactorLR(learning_rate=None, lr_schedule={2: 1, 4: 0.5}, min_dim_size_to_factor=3)
    actual, _ = run(optimizer, init, grads)
    assert_close(actual, b4k_adafactor(init, grads, learning_rate=None, lr_schedule={2: 1, 4: 0.5},
                                       min_dim_size_to_factor=3))
    # setting the rate through the derived class reaches AdaFactor's setter: a fixed rate from now on
    optimizer.learning_rate = 0.02
    assert abs(float(optimizer.learning_rate) - 0.02 * 0.5) < 1e-7

    # lazy rows on a factored kernel: rows without gradient keep their values (its row/column moments,
    # which have no per-row layout, are not frozen)
    for g in grads:
        g['kernel'][1] = 0
    Lazy = O.extend_with_lazy_optimization_v2(O.AdaFactor, 'CompatAdaFactorLazy')
    actual, _ = run(Lazy(learning_rate=0.05, include_in_lazy_optimization=['kernel'], min_dim_size_to_factor=3),
                    init, grads)
    assert np.array_equal(actual['kernel'][1], init['kernel'][1].astype('float32'))
    assert np.abs(actual['kernel'][0] - init['kernel'][0]).min() > 1e-3


def test_adafactor_config_round_trip_and_validation():
    optimizer = O.AdaFactor(learning_rate=None, beta1=0.9, exclude_from_parameter_scale=['bias'])
    config = optimizer.get_config()
    assert config['learning_rate'] is None and config['beta2'] is None and config['min_dim_size_to_factor'] == 128
    clone = O.AdaFactor.from_config(config)
    assert clone.get_config() == config
    assert type(keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))) is O.AdaFactor
    with pytest.raises(ValueError, match='beta1'):
        O.AdaFactor(beta1=1.0)
    with pytest.raises(ValueError, match='clipping_threshold'):
        O.AdaFactor(clipping_threshold=0)


def test_adafactor_lion_and_adamw_train_a_model_with_fit():
    """fit compiles the step with XLA: AdaFactor, Lion and the weight decay (decay-only path) inside it."""
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    x = rng.randint(1, 20, (64, 4))
    y = (x[:, 0] > 10).astype('int32')
    for optimizer in [O.AdaFactor(learning_rate=None, min_dim_size_to_factor=4), O.Lion(learning_rate=3e-3),
                      O.AdamW(learning_rate=0.01, weight_decay_rate=0.01, exclude_from_weight_decay=['bias'])]:
        inputs = keras.Input((4,), dtype='int32')
        h = keras.layers.Embedding(20, 8, name='Embedding-Token')(inputs)
        h = keras.layers.GlobalAveragePooling1D()(h)
        outputs = keras.layers.Dense(2, activation='softmax')(h)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer, loss='sparse_categorical_crossentropy')  # sparse embedding gradients
        history = model.fit(x, y, batch_size=16, epochs=4, verbose=0)
        assert history.history['loss'][-1] < history.history['loss'][0], type(optimizer).__name__


# ------------------------------------------------------------------------------------------------
# Lion
# ------------------------------------------------------------------------------------------------
def b4k_lion(init, grads, learning_rate=3e-4, beta_1=0.95, beta_2=0.98, weight_decay_rate=0.0):
    theta = {k: v.astype('float64').copy() for k, v in init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    lr, b1, b2, wd = f32(learning_rate), f32(beta_1), f32(beta_2), f32(weight_decay_rate)
    for step_grads in grads:
        for k, x in theta.items():
            g = step_grads[k]
            theta[k] = x - lr * np.sign(b1 * m[k] + (1 - b1) * g) - lr * wd * x
            m[k] = b2 * m[k] + (1 - b2) * g
    return theta


@pytest.mark.parametrize('args', [dict(), dict(learning_rate=0.01, beta_1=0.9, beta_2=0.99)], ids=['defaults', 'set'])
def test_lion_equals_bert4keras(args):
    init, grads = adafactor_problem(6, {'kernel': (3, 5), 'bias': (5,)}, seed=4)
    actual, _ = run(O.Lion(**args), init, grads)
    assert_close(actual, b4k_lion(init, grads, **args))


def test_lion_with_weight_decay():
    init, grads = adafactor_problem(5, {'kernel': (3, 5), 'bias': (5,)}, seed=5)
    LionW = O.extend_with_weight_decay_v2(O.Lion, 'CompatLionW')
    actual, _ = run(LionW(learning_rate=0.01, weight_decay_rate=0.3), init, grads)
    assert_close(actual, b4k_lion(init, grads, learning_rate=0.01, weight_decay_rate=0.3))
