"""The private TensorFlow / Keras attributes this package relies on (all in `bert4keras_ext._tf_private`).

Each test first checks that the private attribute still exists on the installed TensorFlow / Keras, and
fails with a message naming it and the function to update; then it checks the function's result on a tiny
real object against a value known independently (a layer's position in a list, a numpy loss, TensorFlow's
own oneDNN setting). The last tests scan the package source: private TensorFlow / Keras access anywhere
but `_tf_private.py` fails, so a new one cannot sneak in.
"""
import ast
import os
import platform

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import _tf_private as P

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bert4keras_ext')
PRIVATE_MODULE = os.path.join(PACKAGE, '_tf_private.py')


def vanished(api, function):
    return ('private API %s vanished (or changed) in TensorFlow %s / Keras %s; bert4keras_ext._tf_private.%s '
            'was checked on TensorFlow %s / Keras %s: update that function (and its docstring table) in '
            'bert4keras_ext/_tf_private.py' % (api, tf.__version__, keras.__version__, function,
                                               P.CHECKED_VERSIONS['tensorflow'], P.CHECKED_VERSIONS['keras']))


def require(owner, attribute, api, function):
    if not hasattr(owner, attribute):
        pytest.fail(vanished(api, function))


# ---------------------------------------------------------------------------------------------------
# TensorFlow
# ---------------------------------------------------------------------------------------------------
def test_call_concrete_flat_gives_the_public_call_result():
    scale = tf.Variable([1.0, 2.0, 3.0])  # a captured input: the flat entry must receive it too

    @tf.function
    def step(x, state):
        return x * scale + state['bias'], state['rows'][1] * 2.0

    x = np.array([[1.0, -1.0, 0.5]], 'float32')
    state = {'bias': np.array([0.25, 0.5, 0.75], 'float32'),
             'rows': [np.zeros(2, 'float32'), np.array([3.0, -4.0], 'float32')]}
    args = tf.nest.map_structure(tf.constant, (x, state))
    concrete = step.get_concrete_function(*args)
    require(concrete, '_call_flat', 'ConcreteFunction._call_flat', 'call_concrete_flat')
    assert P.has_concrete_flat_call(concrete)
    try:
        got = P.call_concrete_flat(concrete, args)
    except Exception as error:  # a changed signature: the decoder would silently lose its fast path
        pytest.fail(vanished('ConcreteFunction._call_flat(flat_args, captured_inputs)', 'call_concrete_flat')
                    + ' (%s: %s)' % (type(error).__name__, error))
    np.testing.assert_allclose(got[0].numpy(), x * [1.0, 2.0, 3.0] + state['bias'])
    np.testing.assert_allclose(got[1].numpy(), [6.0, -8.0])
    assert not P.has_concrete_flat_call(object())


def test_mkl_enabled_reports_tensorflows_onednn_setting():
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        pytest.fail(vanished('tensorflow.python.util._pywrap_util_port', 'mkl_enabled'))
    require(_pywrap_util_port, 'IsMklEnabled', 'tensorflow.python.util._pywrap_util_port.IsMklEnabled',
            'mkl_enabled')
    enabled = P.mkl_enabled()
    assert isinstance(enabled, bool)
    # TensorFlow read TF_ENABLE_ONEDNN_OPTS at import (conftest imports the package first, which sets it
    # to 1 on x86-64 unless the user chose): '0' turns the kernels off, '1' on
    setting = os.environ.get('TF_ENABLE_ONEDNN_OPTS')
    if setting == '0':
        assert enabled is False
    elif setting == '1' and platform.machine().lower() in ('x86_64', 'amd64'):
        assert enabled is True


# ---------------------------------------------------------------------------------------------------
# Keras functional graph
# ---------------------------------------------------------------------------------------------------
def shared_layer_graph():
    """One Dense layer called on two inputs: two nodes."""
    first, second = keras.Input((3,), name='first'), keras.Input((3,), name='second')
    dense = keras.layers.Dense(2, name='shared')
    return first, second, dense, dense(first), dense(second)


def test_keras_history_names_the_producing_call():
    first, second, dense, out_first, out_second = shared_layer_graph()
    require(out_second, '_keras_history', 'KerasTensor._keras_history', 'keras_history')
    assert P.has_keras_history(out_second)
    history = P.keras_history(out_second)
    assert history[0] is dense and history[0].name == 'shared'
    assert (history[1], history[2]) == (1, 0)  # second call of the layer, its only output
    assert P.keras_history(out_first)[1] == 0
    assert P.keras_history(np.zeros(3)) is None and not P.has_keras_history(np.zeros(3))
    assert not P.has_keras_history(tf.zeros(3))  # a concrete tensor has no graph history


def test_inbound_nodes_list_every_call_in_order():
    first, second, dense, out_first, out_second = shared_layer_graph()
    require(dense, '_inbound_nodes', 'Layer._inbound_nodes', 'inbound_nodes')
    nodes = P.inbound_nodes(dense)
    assert len(nodes) == 2
    for node, attribute in ((nodes[0], 'input_tensors'), (nodes[0], 'output_tensors'), (nodes[0], 'parent_nodes')):
        require(node, attribute, 'keras Node.%s' % attribute, 'inbound_nodes')
    assert nodes[0].input_tensors[0] is first and nodes[0].output_tensors[0] is out_first
    assert nodes[1].input_tensors[0] is second and nodes[1].output_tensors[0] is out_second
    assert [parent.operation.name for parent in nodes[1].parent_nodes] == ['second']
    assert P.inbound_nodes(keras.layers.Dense(2)) == []  # never called
    assert P.inbound_nodes(object()) is None


def test_current_call_argument_is_the_training_flag_of_the_call_in_progress():
    from keras.src.backend.common import global_state  # noqa: the private module the function reads
    require(global_state, 'get_global_attribute', 'keras.src.backend.common.global_state.get_global_attribute',
            'current_call_argument')
    seen = []

    class Probe(keras.layers.Layer):
        def call(self, x, training=None):
            context = global_state.get_global_attribute('current_call_ctx')
            seen.append((context is not None, P.current_call_argument('training')))
            return x

    probe = Probe()
    x = np.ones((1, 2), 'float32')
    probe(x, training=True)
    probe(x, training=False)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, Probe()(keras.layers.Dense(2)(inputs)))
    model(x, training=True)  # passed down from the outer call to the inner layer
    contexts, flags = zip(*seen[:2] + seen[-1:])
    if not all(contexts):
        pytest.fail(vanished('keras.src.backend.common.global_state "current_call_ctx"', 'current_call_argument'))
    assert flags == (True, False, True)
    assert P.current_call_argument('training') is None  # outside any layer call


# ---------------------------------------------------------------------------------------------------
# Keras optimizer internals
# ---------------------------------------------------------------------------------------------------
def three_variables():
    return [keras.Variable(np.zeros((2, 3), 'float32'), name='kernel'), keras.Variable(np.zeros(4, 'float32')),
            keras.Variable(np.zeros(1, 'float32'), name='bias')]


def test_optimizer_variable_index_and_trainable_variables_follow_build_order():
    variables = three_variables()
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(variables)
    require(optimizer, '_get_variable_index', 'Optimizer._get_variable_index', 'optimizer_variable_index')
    require(optimizer, '_trainable_variables', 'Optimizer._trainable_variables', 'optimizer_trainable_variables')
    for position in (2, 0, 1):
        assert P.optimizer_variable_index(optimizer, variables[position]) == position
    assert [id(v) for v in P.optimizer_trainable_variables(optimizer)] == [id(v) for v in variables]


def test_optimizer_keras_buffers_are_the_accumulators_and_averages():
    variables = three_variables()
    optimizer = keras.optimizers.SGD(0.1, gradient_accumulation_steps=2, use_ema=True)
    optimizer.build(variables)
    require(optimizer, '_accumulated_gradients', 'Optimizer._accumulated_gradients', 'optimizer_keras_buffers')
    require(optimizer, '_model_variables_moving_average', 'Optimizer._model_variables_moving_average',
            'optimizer_keras_buffers')
    buffers = P.optimizer_keras_buffers(optimizer)
    assert sorted(tuple(b.shape) for b in buffers) == sorted([(2, 3), (4,), (1,)] * 2)
    assert not {id(b) for b in buffers} & {id(v) for v in variables}
    # the first of two micro-batches only accumulates: the accumulators then hold its gradient
    gradients = [np.full((2, 3), 0.5, 'float32'), np.arange(4, dtype='float32'), np.array([-2.0], 'float32')]
    optimizer.apply(gradients, variables)
    accumulated = {tuple(b.shape): b.numpy() for b in buffers if np.any(b.numpy())}
    for gradient in gradients:
        np.testing.assert_allclose(accumulated[gradient.shape], gradient)
    plain = keras.optimizers.SGD(0.1)
    plain.build(three_variables())
    assert P.optimizer_keras_buffers(plain) == []


# ---------------------------------------------------------------------------------------------------
# Keras Model (trainer) internals
# ---------------------------------------------------------------------------------------------------
def tiny_regression():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer='ones', bias_initializer='zeros')(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss='mse')
    x = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], 'float32')
    y = np.array([[2.0], [1.0], [3.5]], 'float32')
    expected = np.mean((x.sum(axis=1, keepdims=True) - y) ** 2)  # kernel of ones, zero bias
    return model, x, y, expected


def test_model_compute_loss_is_the_compiled_loss():
    model, x, y, expected = tiny_regression()
    require(model, '_compute_loss', 'Model._compute_loss', 'model_compute_loss')
    compute_loss = P.model_compute_loss(model)
    assert compute_loss.__self__ is model
    loss = compute_loss(x=x, y=y, y_pred=model(x), sample_weight=None, training=True)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    assert P.model_compute_loss(object()) is None


def test_model_loss_tracker_reports_the_training_loss():
    model, x, y, expected = tiny_regression()
    require(model, '_loss_tracker', 'Model._loss_tracker', 'model_loss_tracker')
    tracker = P.model_loss_tracker(model)
    assert isinstance(tracker, keras.metrics.Mean) and tracker.name == 'loss'
    model.train_on_batch(x, y)
    np.testing.assert_allclose(float(tracker.result()), expected, rtol=1e-6)
    assert P.model_loss_tracker(object()) is None


def test_fix_multi_worker_fit_is_installed_and_leaves_other_strategies_alone():
    # the two-worker training itself is tests/test_multiworker.py
    from keras.src.backend.tensorflow import trainer
    require(trainer, 'TensorFlowTrainer', 'keras.src.backend.tensorflow.trainer.TensorFlowTrainer',
            'fix_multi_worker_fit')
    for owner, name in ((trainer.TensorFlowTrainer, '_maybe_symbolic_build'), (trainer, 'reduce_per_replica'),
                        (trainer, '_collective_all_reduce_multi_worker')):
        require(owner, name, 'keras.src.backend.tensorflow.trainer ... %s' % name, 'fix_multi_worker_fit')
    assert P.fix_multi_worker_fit() is True and P.fix_multi_worker_fit() is True  # installed on import; idempotent
    patched = trainer.TensorFlowTrainer.__dict__['_maybe_symbolic_build']
    assert P.fix_multi_worker_fit() and trainer.TensorFlowTrainer.__dict__['_maybe_symbolic_build'] is patched
    # without a multi-worker strategy Keras' own reduction runs: the replicas' mean, values unchanged
    strategy = tf.distribute.get_strategy()
    values = {'loss': tf.constant(1.5), 'rows': tf.constant([1.0, 2.0])}
    reduced = trainer.reduce_per_replica(values, strategy, 'auto')
    assert float(reduced['loss']) == 1.5 and list(np.asarray(reduced['rows'])) == [1.0, 2.0]
    model, x, y, expected = tiny_regression()  # and training without a strategy is unaffected
    np.testing.assert_allclose(model.train_on_batch(x, y), expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# No private access anywhere else
# ---------------------------------------------------------------------------------------------------
# Private TensorFlow / Keras names known to exist: flagged outside _tf_private.py even where the package
# happens to define an attribute of the same name.
KNOWN_PRIVATE = {
    '_call_flat', '_pywrap_util_port', 'IsMklEnabled', '_keras_history', '_inbound_nodes', 'current_call_ctx',
    'global_state', '_get_variable_index', '_trainable_variables', '_accumulated_gradients',
    '_model_variables_moving_average', '_compute_loss', '_loss_tracker',
}
PRIVATE_MODULES = ('keras.src', 'tensorflow.python', 'tf_keras.src', 'tensorflow.core', 'tensorflow.tsl')
FRAMEWORK_ROOTS = {'tf', 'tensorflow', 'keras'}
ATTRIBUTE_CALLS = {'getattr', 'hasattr', 'setattr', 'delattr'}


def package_sources():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    yield path, ast.parse(f.read(), path)


def is_private(name):
    return name.startswith('_') and not name.endswith('__')


def attribute_chain(node):
    """['tf', 'python', 'util'] for tf.python.util; None when the chain does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id] + parts[::-1]


def names_the_package_defines(trees):
    """Private names the package itself creates: defs, classes, module / class-level assignments,
    attribute assignments, setattr names (``'_token_%s_id' % x`` gives the pattern ``_token_*_id``)."""
    names, patterns = set(), []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'setattr' \
                    and len(node.args) >= 2:
                target = node.args[1]
                if isinstance(target, ast.Constant) and isinstance(target.value, str):
                    names.add(target.value)
                elif isinstance(target, ast.BinOp) and isinstance(target.left, ast.Constant) \
                        and isinstance(target.left.value, str):
                    patterns.append(target.left.value.replace('%s', '*'))
        scopes = [tree] + [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
        for scope in scopes:
            for statement in scope.body:
                targets = statement.targets if isinstance(statement, ast.Assign) else \
                    [statement.target] if isinstance(statement, (ast.AnnAssign, ast.AugAssign)) else []
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            names.add(node.id)
    return names, patterns


def private_uses(path, tree, defined, patterns):
    """(line, what) for each private TensorFlow / Keras access in one module."""
    import fnmatch
    found = []

    def foreign(name):
        if name in KNOWN_PRIVATE:
            return True
        return is_private(name) and name not in defined and not any(fnmatch.fnmatch(name, p) for p in patterns)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PRIVATE_MODULES):
                    found.append((node.lineno, 'import %s' % alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(PRIVATE_MODULES):
                found.append((node.lineno, 'from %s import ...' % node.module))
            found += [(node.lineno, 'from %s import %s' % (node.module, alias.name)) for alias in node.names
                      if alias.name in KNOWN_PRIVATE or (node.module.split('.')[0] in FRAMEWORK_ROOTS
                                                         and is_private(alias.name))]
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            chain = attribute_chain(node)
            if chain and chain[0] in FRAMEWORK_ROOTS and (
                    '.'.join(chain).startswith(tuple(m.replace('tensorflow', chain[0]) for m in PRIVATE_MODULES))
                    or any(is_private(part) or part == '__internal__' for part in chain[1:])):
                found.append((node.lineno, '.'.join(chain)))
            elif foreign(node.attr):
                found.append((node.lineno, '.%s' % node.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ATTRIBUTE_CALLS \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and foreign(node.args[1].value):
            found.append((node.lineno, '%s(..., %r)' % (node.func.id, node.args[1].value)))
        elif isinstance(node, ast.Constant) and node.value in KNOWN_PRIVATE - {'global_state'}:
            found.append((node.lineno, repr(node.value)))
    by_line = {}
    for line, what in found:
        if what not in by_line.setdefault(line, []):
            by_line[line].append(what)
    return [(line, '; '.join(whats)) for line, whats in sorted(by_line.items())]


def test_private_tensorflow_and_keras_access_lives_only_in_tf_private():
    sources = list(package_sources())
    defined, patterns = names_the_package_defines(tree for _, tree in sources)
    defined -= KNOWN_PRIVATE
    offenders = ['%s:%d: %s' % (os.path.relpath(path, os.path.dirname(PACKAGE)), line, what)
                 for path, tree in sources if path != PRIVATE_MODULE
                 for line, what in private_uses(path, tree, defined, patterns)]
    assert not offenders, (
        'private TensorFlow / Keras attributes used outside bert4keras_ext/_tf_private.py:\n  %s\nAdd a function '
        'for each to _tf_private.py (with the versions checked and a test in tests/test_tf_private.py) and '
        'call it instead' % '\n  '.join(offenders))


def test_the_scan_catches_private_access():
    # the scan itself: each kind of private access in a snippet is reported
    snippet = ast.parse(
        'from keras.src.backend.common import global_state\n'
        'import tensorflow.python.util\n'
        'x = tensor._keras_history\n'
        'y = getattr(optimizer, "_accumulated_gradients", None)\n'
        'z = tf.__internal__.nest\n'
        'w = model._some_new_keras_internal\n'
        'v = self._ours\n'
        'self._ours = 1\n')
    defined, patterns = names_the_package_defines([snippet])
    lines = [line for line, _ in private_uses('snippet.py', snippet, defined - KNOWN_PRIVATE, patterns)]
    assert lines == [1, 2, 3, 4, 5, 6]


def test_tf_private_imports_no_package_module_and_lists_every_function():
    with open(PRIVATE_MODULE, encoding='utf-8') as f:
        tree = ast.parse(f.read())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module or '' for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in imported if name.startswith('bert4keras_ext') or not name], imported
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert sorted(functions) == sorted(set(P.__all__) - {'CHECKED_VERSIONS'})
    missing = [name for name in functions if '`%s(' % name not in P.__doc__]
    assert not missing, 'the _tf_private docstring table does not list: %s' % missing
    assert set(P.CHECKED_VERSIONS) == {'tensorflow', 'keras'}
