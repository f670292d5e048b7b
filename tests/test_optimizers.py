"""Derived optimizers against an independent numpy implementation of their update rules.

Toy problem: four model variables with bert4keras-style paths (an embedding matrix, a dense kernel and
bias, a LayerNorm gamma) and the loss Σ ½‖c ⊙ θ − t‖²; the embedding gradient has random all-zero rows,
like an embedding lookup. Each test runs several optimizer steps through Keras (`optimizer.apply`, the
call `fit` makes) and through `numpy_reference`, and compares every weight (and slots where they are
part of the spec) to 1e-6.
"""
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import optimizers as O
from bert4keras_ext.backend import keras

EMB = 'Embedding-Token/embeddings'
KERNEL = 'Transformer-0-FeedForward/kernel'
BIAS = 'Transformer-0-FeedForward/bias'
GAMMA = 'Transformer-0-FeedForward-Norm/gamma'
SHAPES = {EMB: (6, 3), KERNEL: (3, 2), BIAS: (2,), GAMMA: (2,)}
TOL = 1e-6
# β₂ = 0.95 rather than 0.999: Keras' Adam forms 1 − β₂ᵗ in float32, where one ulp of 0.999ᵗ is a 3e-5
# relative error of the step — float32 conditioning of that implementation, not of the rules tested.
ADAM = dict(beta_2=0.95)


# ------------------------------------------------------------------------------------------------
# The toy problem
# ------------------------------------------------------------------------------------------------
def make_problem(steps, seed=0):
    rng = np.random.RandomState(seed)
    init = {k: rng.randn(*s) for k, s in SHAPES.items()}
    init[GAMMA] = 1.0 + 0.1 * rng.randn(2)
    coef = {k: rng.uniform(0.5, 1.5, s) for k, s in SHAPES.items()}
    target = {k: rng.randn(*s) for k, s in SHAPES.items()}
    rows_seen = rng.rand(steps, SHAPES[EMB][0]) < 0.5
    rows_seen[:, 0] = True  # row 0 always seen, row 5 never: both cases every step
    rows_seen[:, 5] = False

    def grad_fn(theta, step):
        grads = {k: coef[k] * (coef[k] * theta[k] - target[k]) for k in SHAPES}
        grads[EMB] = grads[EMB] * rows_seen[step][:, None]
        return grads

    return init, grad_fn


def make_variables(init):
    """Real layers, so the variables carry the paths the name patterns are matched against."""
    emb = keras.layers.Embedding(6, 3, name='Embedding-Token')
    emb.build((None,))
    dense = keras.layers.Dense(2, name='Transformer-0-FeedForward')
    dense.build((None, 3))
    norm = keras.layers.LayerNormalization(name='Transformer-0-FeedForward-Norm', center=False)
    norm.build((None, 2))
    variables = {EMB: emb.embeddings, KERNEL: dense.kernel, BIAS: dense.bias, GAMMA: norm.gamma}
    for path, variable in variables.items():
        assert variable.path == path
        variable.assign(init[path].astype('float32'))
    return variables


def run_keras(optimizer, init, grad_fn, steps, sparse=False, compiled=False):
    variables = make_variables(init)
    var_list = list(variables.values())
    if compiled:  # as fit does without a strategy: the optimizer is built while tracing
        apply = tf.function(lambda grads: optimizer.apply(grads, var_list), jit_compile=True)
    else:
        def apply(grads):
            optimizer.apply(grads, var_list)
    for step in range(steps):
        theta = {k: v.numpy().astype('float64') for k, v in variables.items()}
        grads = grad_fn(theta, step)
        tensors = []
        for path in variables:
            g = grads[path].astype('float32')
            if sparse and path == EMB:  # what tape.gradient gives for an embedding lookup
                rows = np.nonzero(np.any(g != 0, axis=1))[0]
                tensors.append(tf.IndexedSlices(tf.constant(g[rows]), tf.constant(rows, 'int64'),
                                                tf.constant(g.shape, 'int64')))
            else:
                tensors.append(tf.constant(g))
        apply(tensors)
    return {k: v.numpy() for k, v in variables.items()}, variables


def piecewise(t, schedule):
    points = sorted((int(k), float(v)) for k, v in schedule.items())
    if points[0][0] != 0:
        points = [(0, 0.0)] + points
    xs, ys = zip(*points)
    return float(np.interp(t, xs, ys))


def numpy_reference(init, grad_fn, steps, base='keras_adam', lr=0.05, beta_1=0.9, beta_2=0.95, epsilon=1e-7,
                    bias_correction=True, weight_decay=0.0, exclude_from_weight_decay=(), grad_accum_steps=1,
                    lr_schedule=None, exclude_from_layer_adaptation=None, paramwise_lr_schedule=None,
                    include_in_lazy_optimization=None, lookahead=None, ema_momentum=None,
                    order=('decay', 'adapt', 'scale', 'lazy')):
    """The update rules of the module docstring, in float64, one variable at a time.

    `order`: the update transforms in nesting order, innermost first (bert4keras' K.update interceptions).

    Hyperparameters are rounded to float32 first, as the optimizer holds them (1 − β₂ for β₂ = 0.999
    is 1.3e-5 off in float32, which would otherwise show as a 1e-6 drift per step).
    """
    import re

    def f32(value):
        return float(np.float32(value))

    lr, beta_1, beta_2, epsilon, weight_decay = f32(lr), f32(beta_1), f32(beta_2), f32(epsilon), f32(weight_decay)

    def matches(path, patterns):
        return any(re.search(p, path) for p in patterns)

    theta = {k: v.astype('float64').copy() for k, v in init.items()}
    m = {k: np.zeros_like(v) for k, v in theta.items()}
    v2 = {k: np.zeros_like(v) for k, v in theta.items()}
    slow = {k: v.copy() for k, v in theta.items()}
    ema = {k: np.zeros_like(v) for k, v in theta.items()}
    accumulated = {k: np.zeros_like(v) for k, v in theta.items()}
    updates = 0
    for step in range(steps):
        grads = grad_fn(theta, step)
        for k in theta:
            accumulated[k] += grads[k]
        if (step + 1) % grad_accum_steps:
            continue
        grads = {k: accumulated[k] / grad_accum_steps for k in theta}
        accumulated = {k: np.zeros_like(v) for k, v in theta.items()}
        lr_t = lr * (piecewise(updates, lr_schedule) if lr_schedule else 1.0)
        t = updates + 1
        for k in theta:
            g = grads[k]
            x = theta[k]
            old_m, old_v = m[k].copy(), v2[k].copy()
            if base == 'sgd':
                new = x - lr_t * g
            else:
                m[k] = beta_1 * m[k] + (1 - beta_1) * g
                v2[k] = beta_2 * v2[k] + (1 - beta_2) * g ** 2
                if base == 'keras_adam':
                    alpha = lr_t * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
                    new = x - alpha * m[k] / (np.sqrt(v2[k]) + epsilon)
                else:  # bert4keras Adam
                    mh, vh = (m[k] / (1 - beta_1 ** t), v2[k] / (1 - beta_2 ** t)) if bias_correction else (m[k], v2[k])
                    new = x - lr_t * mh / (np.sqrt(vh) + epsilon)
            for stage in order:
                if stage == 'decay' and weight_decay and not matches(k, exclude_from_weight_decay):
                    new = new - lr_t * weight_decay * x
                if (stage == 'adapt' and exclude_from_layer_adaptation is not None
                        and not matches(k, exclude_from_layer_adaptation)):
                    delta = new - x
                    w_norm = np.linalg.norm(x)
                    u_norm = np.linalg.norm(delta / max(lr_t, 1e-7))
                    ratio = w_norm / u_norm if (w_norm > 0 and u_norm > 0) else 1.0
                    new = x + delta * ratio
                if stage == 'scale' and paramwise_lr_schedule:
                    for key, value in paramwise_lr_schedule.items():
                        if key in k:
                            new = x + (new - x) * value
                if (stage == 'lazy' and include_in_lazy_optimization is not None
                        and matches(k, include_in_lazy_optimization)):
                    seen = np.any(g != 0, axis=-1, keepdims=True)
                    new = np.where(seen, new, x)
                    m[k] = np.where(seen, m[k], old_m)
                    v2[k] = np.where(seen, v2[k], old_v)
            if lookahead is not None:
                period, alpha_slow = lookahead
                if updates == 0:
                    slow[k] = x.copy()  # the weights entering the first update
                if (updates + 1) % period == 0:
                    slow[k] = slow[k] + alpha_slow * (new - slow[k])
                    new = slow[k].copy()
            if ema_momentum is not None:
                ema[k] = ema_momentum * ema[k] + (1 - ema_momentum) * new
            theta[k] = new
        updates += 1
    return {'theta': theta, 'm': m, 'v': v2, 'ema': ema, 'slow': slow, 'updates': updates}


def assert_close(actual, expected, tol=TOL):
    for k in expected:
        diff = np.abs(np.asarray(actual[k], 'float64') - expected[k]).max()
        assert diff <= tol, '%s: max |diff| %.3g > %.1g' % (k, diff, tol)


def slot(optimizer, variable, suffix):
    """The optimizer variable named '<variable path>_<suffix>'."""
    name = variable.path.replace('/', '_') + '_' + suffix
    found = [v for v in optimizer.variables if v.path.endswith('/' + name)]
    assert len(found) == 1, (name, [v.path for v in optimizer.variables])
    return found[0].numpy()


# ------------------------------------------------------------------------------------------------
# One extension at a time
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('fused', [True, False], ids=['fused-kernel', 'composed'])
@pytest.mark.parametrize('bias_correction', [True, False])
def test_bert4keras_adam(bias_correction, fused):
    init, grad_fn = make_problem(6)
    # without bias correction the first steps are ~3x lr, so a smaller rate keeps the toy well conditioned
    lr = 0.05 if bias_correction else 0.01
    actual, _ = run_keras(O.Adam(lr, bias_correction=bias_correction, fused=fused, **ADAM), init, grad_fn, 6)
    expected = numpy_reference(init, grad_fn, 6, base='b4k_adam', lr=lr, epsilon=1e-6, bias_correction=bias_correction)
    assert_close(actual, expected['theta'])


def test_weight_decay_with_path_exclusions():
    init, grad_fn = make_problem(6)
    AdamW = O.extend_with_weight_decay(keras.optimizers.Adam)
    optimizer = AdamW(learning_rate=0.05, weight_decay_rate=0.1, exclude_from_weight_decay=['Norm', 'bias'], **ADAM)
    # the decay is applied in update_step, as bert4keras does (Keras' own pre-step decay stays off)
    assert optimizer.weight_decay is None and optimizer.weight_decay_rate == 0.1
    actual, _ = run_keras(optimizer, init, grad_fn, 6)
    expected = numpy_reference(init, grad_fn, 6, weight_decay=0.1, exclude_from_weight_decay=['Norm', 'bias'])
    assert_close(actual, expected['theta'])
    # the exclusion matters: the excluded gamma differs from a decayed one
    decayed = numpy_reference(init, grad_fn, 6, weight_decay=0.1)
    assert np.abs(decayed['theta'][GAMMA] - expected['theta'][GAMMA]).max() > 1e-3


def test_bert4keras_adamw_convenience():
    init, grad_fn = make_problem(5)
    optimizer = O.AdamW(0.05, weight_decay_rate=0.2, exclude_from_weight_decay=['bias'], **ADAM)
    actual, _ = run_keras(optimizer, init, grad_fn, 5)
    expected = numpy_reference(init, grad_fn, 5, base='b4k_adam', epsilon=1e-6, weight_decay=0.2,
                               exclude_from_weight_decay=['bias'])
    assert_close(actual, expected['theta'])
    assert O.AdamW.__name__ == 'AdamW' and issubclass(O.AdamW, O.Adam)


def test_layer_adaptation():
    init, grad_fn = make_problem(6)
    Cls = O.extend_with_layer_adaptation(keras.optimizers.Adam)
    actual, _ = run_keras(Cls(0.05, exclude_from_layer_adaptation=['bias'], **ADAM), init, grad_fn, 6)
    expected = numpy_reference(init, grad_fn, 6, exclude_from_layer_adaptation=['bias'])
    assert_close(actual, expected['theta'])
    plain = numpy_reference(init, grad_fn, 6)
    assert np.abs(plain['theta'][KERNEL] - expected['theta'][KERNEL]).max() > 1e-3
    assert_close({BIAS: actual[BIAS]}, {BIAS: plain['theta'][BIAS]})  # excluded → plain Adam


@pytest.mark.parametrize('nesting', ['adaptation(decay(Adam))', 'decay(adaptation(Adam))'])
def test_layer_adaptation_with_weight_decay_follows_the_nesting(nesting):
    """LAMB: the trust ratio scales the update made by what is nested inside it (bert4keras' arithmetic).

    This test used to assert equality with keras.optimizers.Lamb, which decays *before* the step so that
    the ratio sees decayed weights and never scales the decay: that matched neither bert4keras nesting.
    """
    init, grad_fn = make_problem(6)
    if nesting == 'adaptation(decay(Adam))':
        Cls, order = O.extend_with_layer_adaptation(O.extend_with_weight_decay(O.Adam)), ('decay', 'adapt')
    else:
        Cls, order = O.extend_with_weight_decay(O.extend_with_layer_adaptation(O.Adam)), ('adapt', 'decay')
    ours, _ = run_keras(Cls(0.05, weight_decay_rate=0.1, epsilon=1e-6, **ADAM), init, grad_fn, 6)
    expected = numpy_reference(init, grad_fn, 6, base='b4k_adam', epsilon=1e-6, weight_decay=0.1,
                               exclude_from_layer_adaptation=[], order=order)
    assert_close(ours, expected['theta'])
    lamb, _ = run_keras(keras.optimizers.Lamb(0.05, weight_decay=0.1, epsilon=1e-6, **ADAM), init, grad_fn, 6)
    assert max(np.abs(ours[k] - lamb[k]).max() for k in ours) > 1e-5


@pytest.mark.parametrize('base', ['sgd', 'keras_adam'])
def test_piecewise_linear_lr(base):
    init, grad_fn = make_problem(8)
    Base = keras.optimizers.SGD if base == 'sgd' else keras.optimizers.Adam
    schedule = {3: 1, 6: 0.2}
    extra = {} if base == 'sgd' else ADAM
    optimizer = O.extend_with_piecewise_linear_lr(Base)(learning_rate=0.05, lr_schedule=schedule, **extra)
    actual, _ = run_keras(optimizer, init, grad_fn, 8)
    expected = numpy_reference(init, grad_fn, 8, base=base, lr_schedule=schedule)
    assert_close(actual, expected['theta'])
    # the rate seen by callbacks is the scheduled one, and setting it sets the base rate
    assert abs(float(optimizer.learning_rate) - 0.05 * piecewise(8, schedule)) < 1e-9
    optimizer.learning_rate = 0.5
    assert abs(float(optimizer.learning_rate) - 0.5 * 0.2) < 1e-7


def test_piecewise_linear_lr_on_a_keras_schedule():
    init, grad_fn = make_problem(6)
    base_rate = keras.optimizers.schedules.PiecewiseConstantDecay([3], [0.05, 0.02])
    optimizer = O.extend_with_piecewise_linear_lr(keras.optimizers.SGD)(learning_rate=base_rate, lr_schedule={2: 1})
    actual, _ = run_keras(optimizer, init, grad_fn, 6)
    theta = {k: v.copy() for k, v in init.items()}
    for step in range(6):  # by hand: θ ← θ − lr(step)·ρ(step)·g
        grads = grad_fn(theta, step)
        rate = (0.05 if step <= 3 else 0.02) * piecewise(step, {2: 1})
        theta = {k: theta[k] - rate * grads[k] for k in theta}
    assert_close(actual, theta)


def test_gradient_accumulation_counts_real_steps():
    init, grad_fn = make_problem(9)
    Cls = O.extend_with_piecewise_linear_lr(O.extend_with_gradient_accumulation(O.Adam))
    optimizer = Cls(0.05, grad_accum_steps=3, lr_schedule={2: 1}, **ADAM)
    actual, _ = run_keras(optimizer, init, grad_fn, 9)
    expected = numpy_reference(init, grad_fn, 9, base='b4k_adam', epsilon=1e-6, grad_accum_steps=3,
                               lr_schedule={2: 1})
    assert expected['updates'] == 3 and int(optimizer.iterations) == 3
    assert optimizer.gradient_accumulation_steps == 3  # Keras' own mechanism
    assert_close(actual, expected['theta'])


def test_gradient_accumulation_equals_one_step_on_the_larger_batch():
    """k micro-batches of a mean loss == one batch k times larger: the mean of the k gradients."""
    rng = np.random.RandomState(3)
    w0 = rng.randn(3, 1).astype('float32')
    x, y = rng.randn(12, 3).astype('float32'), rng.randn(12, 1).astype('float32')

    def grad(w, xb, yb):  # d/dw mean ½(xw − y)²
        return (xb.T @ (xb @ w - yb)) / len(xb)

    accumulated = O.extend_with_gradient_accumulation(keras.optimizers.SGD)(0.1, grad_accum_steps=3)
    w = keras.Variable(w0)
    for i in range(3):
        accumulated.apply([tf.constant(grad(w0, x[4 * i:4 * i + 4], y[4 * i:4 * i + 4]))], [w])
    expected = w0 - 0.1 * grad(w0.astype('float64'), x.astype('float64'), y.astype('float64'))
    assert np.abs(w.numpy() - expected).max() <= TOL
    # one buffer per variable, nothing more (memory)
    assert len(accumulated.variables) == 2 + 1


def test_lookahead_starts_from_the_initial_weights():
    init, grad_fn = make_problem(7)
    Lookahead = O.extend_with_lookahead(keras.optimizers.Adam)
    optimizer = Lookahead(0.05, steps_per_slow_update=3, slow_step_size=0.5, **ADAM)
    actual, variables = run_keras(optimizer, init, grad_fn, 7)
    expected = numpy_reference(init, grad_fn, 7, lookahead=(3, 0.5))
    assert_close(actual, expected['theta'])
    assert_close({KERNEL: slot(optimizer, variables[KERNEL], 'slow')}, {KERNEL: expected['slow'][KERNEL]})


@pytest.mark.parametrize('sparse', [False, True])
def test_lazy_optimization_freezes_unseen_rows_and_their_moments(sparse):
    init, grad_fn = make_problem(6)
    Lazy = O.extend_with_lazy_optimization(keras.optimizers.Adam)
    optimizer = Lazy(0.05, include_in_lazy_optimization=['Embedding'], **ADAM)
    actual, variables = run_keras(optimizer, init, grad_fn, 6, sparse=sparse)
    expected = numpy_reference(init, grad_fn, 6, include_in_lazy_optimization=['Embedding'])
    assert_close(actual, expected['theta'])
    m, v = slot(optimizer, variables[EMB], 'momentum'), slot(optimizer, variables[EMB], 'velocity')
    assert_close({'m': m, 'v': v}, {'m': expected['m'][EMB], 'v': expected['v'][EMB]})
    # row 5 never had a gradient: untouched weights, zero moments
    assert np.array_equal(actual[EMB][5], init[EMB][5].astype('float32'))
    assert not m[5].any() and not v[5].any()


def test_exponential_moving_average_apply_and_reset():
    init, grad_fn = make_problem(5)
    optimizer = O.AdamEMA(0.05, ema_momentum=0.9, **ADAM)
    actual, variables = run_keras(optimizer, init, grad_fn, 5)
    expected = numpy_reference(init, grad_fn, 5, base='b4k_adam', epsilon=1e-6, ema_momentum=0.9)
    assert_close(actual, expected['theta'])
    optimizer.apply_ema_weights()
    assert_close({k: v.numpy() for k, v in variables.items()},
                 {k: e / (1 - 0.9 ** 5) for k, e in expected['ema'].items()})
    optimizer.reset_old_weights()
    assert all(np.array_equal(v.numpy(), actual[k]) for k, v in variables.items())
    optimizer.apply_ema_weights(bias_correction=False)
    assert_close({k: v.numpy() for k, v in variables.items()}, expected['ema'])
    optimizer.reset_old_weights()
    with pytest.raises(RuntimeError, match='apply_ema_weights first'):
        optimizer.reset_old_weights()


def test_parameter_wise_lr_multiplies_by_substring():
    init, grad_fn = make_problem(5)
    schedule = {'Embedding': 0.1, 'Transformer-0': 2.0, 'kernel': 3.0}
    optimizer = O.extend_with_parameter_wise_lr(keras.optimizers.SGD)(0.05, paramwise_lr_schedule=schedule)
    actual, _ = run_keras(optimizer, init, grad_fn, 5)
    expected = numpy_reference(init, grad_fn, 5, base='sgd', paramwise_lr_schedule=schedule)
    assert_close(actual, expected['theta'])
    theta = {k: v.copy() for k, v in init.items()}  # by hand for SGD: the kernel moves 2·3 = 6 times faster
    for step in range(5):
        grads = grad_fn(theta, step)
        factor = {EMB: 0.1, KERNEL: 6.0, BIAS: 2.0, GAMMA: 2.0}
        theta = {k: theta[k] - 0.05 * factor[k] * grads[k] for k in theta}
    assert_close(actual, theta)


# ------------------------------------------------------------------------------------------------
# Composition
# ------------------------------------------------------------------------------------------------
ALL_ARGS = dict(learning_rate=0.05, weight_decay_rate=0.05, exclude_from_weight_decay=['bias'], grad_accum_steps=2,
                lr_schedule={2: 1, 6: 0.5}, exclude_from_layer_adaptation=['Norm'],
                include_in_lazy_optimization=['Embedding'], paramwise_lr_schedule={'Embedding': 0.5},
                steps_per_slow_update=2, slow_step_size=0.5, ema_momentum=0.8, **ADAM)
FACTORIES = [O.extend_with_weight_decay, O.extend_with_gradient_accumulation, O.extend_with_piecewise_linear_lr,
             O.extend_with_layer_adaptation, O.extend_with_lazy_optimization, O.extend_with_parameter_wise_lr,
             O.extend_with_lookahead, O.extend_with_exponential_moving_average]


def compose(base, factories, name):
    cls = base
    for i, factory in enumerate(factories):
        cls = factory(cls, name='%s%d' % (name, i))
    return cls


# the update transforms in FACTORIES' nesting order (innermost first)
FORWARD = ('decay', 'adapt', 'lazy', 'scale')


def all_extensions_reference(init, grad_fn, steps, order=FORWARD):
    return numpy_reference(init, grad_fn, steps, base='keras_adam', weight_decay=0.05,
                           exclude_from_weight_decay=['bias'], grad_accum_steps=2, lr_schedule={2: 1, 6: 0.5},
                           exclude_from_layer_adaptation=['Norm'], include_in_lazy_optimization=['Embedding'],
                           paramwise_lr_schedule={'Embedding': 0.5}, lookahead=(2, 0.5), ema_momentum=0.8,
                           order=order)


@pytest.mark.parametrize('order', ['forward', 'reversed'])
def test_all_extensions_compose_in_nesting_order(order):
    """The update transforms apply innermost first, as bert4keras' nested K.update interceptions; the
    schedule, accumulation, lookahead and EMA do not depend on the nesting."""
    init, grad_fn = make_problem(12)
    factories = FACTORIES if order == 'forward' else FACTORIES[::-1]
    Cls = compose(keras.optimizers.Adam, factories, 'AllExt' + order)
    optimizer = Cls(**ALL_ARGS)
    actual, variables = run_keras(optimizer, init, grad_fn, 12, sparse=True)
    expected = all_extensions_reference(init, grad_fn, 12, FORWARD if order == 'forward' else FORWARD[::-1])
    assert int(optimizer.iterations) == expected['updates'] == 6
    assert_close(actual, expected['theta'])
    assert_close({k: slot(optimizer, v, 'ema') for k, v in variables.items()}, expected['ema'])


def test_all_extensions_compiled_with_xla():
    init, grad_fn = make_problem(8)
    optimizer = compose(keras.optimizers.Adam, FACTORIES, 'AllExtXLA')(**ALL_ARGS)
    actual, _ = run_keras(optimizer, init, grad_fn, 8, compiled=True)
    assert_close(actual, all_extensions_reference(init, grad_fn, 8)['theta'])


def test_loss_scale_optimizer_wraps_a_derived_optimizer():
    init, grad_fn = make_problem(4)
    Cls = O.extend_with_lookahead(O.extend_with_weight_decay(O.Adam))
    args = dict(learning_rate=0.05, weight_decay_rate=0.1, steps_per_slow_update=2, **ADAM)
    wrapped = keras.optimizers.LossScaleOptimizer(Cls(**args), initial_scale=1.0)
    actual, variables = run_keras(wrapped, init, grad_fn, 4)
    expected = numpy_reference(init, grad_fn, 4, base='b4k_adam', epsilon=1e-6, weight_decay=0.1, lookahead=(2, 0.5))
    assert_close(actual, expected['theta'])
    # a non-finite gradient skips the whole step: weights, slow weights and the update count stay
    slow_before = slot(wrapped.inner_optimizer, variables[KERNEL], 'slow')
    wrapped.apply([tf.constant(np.full(SHAPES[k], np.inf, 'float32')) for k in variables], list(variables.values()))
    assert all(np.array_equal(v.numpy(), actual[k]) for k, v in variables.items())
    assert np.array_equal(slot(wrapped.inner_optimizer, variables[KERNEL], 'slow'), slow_before)
    assert int(wrapped.iterations) == 4 and float(wrapped.dynamic_scale) == 0.5


def test_nesting_the_same_extension_twice_is_refused():
    with pytest.raises(ValueError, match='already has the WeightDecay extension'):
        O.extend_with_weight_decay(O.AdamW)
    with pytest.raises(TypeError, match='LossScaleOptimizer'):
        O.extend_with_lookahead(keras.optimizers.LossScaleOptimizer)
    with pytest.raises(TypeError, match='Optimizer subclass'):
        O.extend_with_lookahead(object)
    with pytest.raises(ValueError, match='use_ema'):
        O.AdamEMA(use_ema=True)
    with pytest.raises(ValueError, match='lr_schedule'):
        O.extend_with_piecewise_linear_lr(O.Adam)(lr_schedule={})
    with pytest.raises(ValueError, match='grad_accum_steps'):
        O.extend_with_gradient_accumulation(O.Adam)(grad_accum_steps=0)


# ------------------------------------------------------------------------------------------------
# Serialization
# ------------------------------------------------------------------------------------------------
def test_factories_are_deterministic_and_registered():
    first = O.extend_with_lookahead(O.extend_with_weight_decay(keras.optimizers.Adam))
    second = O.extend_with_lookahead(O.extend_with_weight_decay(keras.optimizers.Adam))
    assert first is second and first.__name__ == 'KerasAdam_WeightDecay_Lookahead'
    assert keras.saving.get_registered_name(first) == 'bert4keras_ext>KerasAdam_WeightDecay_Lookahead'
    ours = O.extend_with_lookahead(O.extend_with_weight_decay(O.Adam))
    assert ours.__name__ == 'Adam_WeightDecay_Lookahead' and ours is not first
    assert keras.saving.get_registered_object('bert4keras_ext>Adam_WeightDecay_Lookahead') is ours
    assert keras.saving.get_registered_object('bert4keras_ext>AdamEMA') is O.AdamEMA


def test_get_config_round_trip():
    Cls = compose(keras.optimizers.Adam, FACTORIES, 'Roundtrip')
    optimizer = Cls(**ALL_ARGS)
    config = optimizer.get_config()
    assert config['lr_schedule'] == {'2': 1.0, '6': 0.5} and config['grad_accum_steps'] == 2
    assert 'weight_decay' not in config and config['weight_decay_rate'] == 0.05
    clone = Cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is Cls and restored.get_config() == config


def _toy_model():
    inputs = keras.Input((4,), dtype='int32')
    x = keras.layers.Embedding(20, 8, name='Embedding-Token')(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(8, activation='tanh', name='Transformer-0-FeedForward')(x)
    outputs = keras.layers.Dense(2, activation='softmax', name='Classifier')(x)
    return keras.Model(inputs, outputs)


def test_model_save_and_load_keep_the_optimizer_state(tmp_path):
    keras.utils.set_random_seed(0)
    Cls = compose(O.Adam, FACTORIES, 'SavedAll')
    model = _toy_model()
    model.compile(Cls(**ALL_ARGS), loss='sparse_categorical_crossentropy')
    rng = np.random.RandomState(0)
    x, y = rng.randint(1, 20, (16, 4)), rng.randint(0, 2, 16)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    path = str(tmp_path / 'model.keras')
    model.save(path)

    # a new process: the registry entry and the factory cache are gone until the script re-runs the factories
    names = ['SavedAll%d' % i for i in range(len(FACTORIES))]
    for name in names:
        keras.saving.get_custom_objects().pop('bert4keras_ext>' + name)
    for key in [k for k in O._CLASS_CACHE if k[2] in names]:
        del O._CLASS_CACHE[key]
    with pytest.raises(Exception):
        keras.saving.load_model(path)
    Again = compose(O.Adam, FACTORIES, 'SavedAll')
    assert Again is not Cls
    loaded = keras.saving.load_model(path)
    assert type(loaded.optimizer) is Again
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # training on continues identically
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_fit_with_jit_compile_and_sparse_embedding_gradients():
    keras.utils.set_random_seed(1)
    model = _toy_model()
    Cls = compose(O.Adam, FACTORIES, 'FitAll')
    model.compile(Cls(**dict(ALL_ARGS, learning_rate=0.02)), loss='sparse_categorical_crossentropy', jit_compile=True)
    rng = np.random.RandomState(1)
    x = rng.randint(1, 20, (64, 4))
    y = (x[:, 0] > 10).astype('int32')
    history = model.fit(x, y, batch_size=16, epochs=6, verbose=0)
    assert history.history['loss'][-1] < history.history['loss'][0]
    assert all(np.isfinite(w.numpy()).all() for w in model.weights)
