"""bert4keras' backend functions (and models' helpers) against numpy references and hand-computed cases;
the clear errors for Keras 2 training internals (`_keras_compat`)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import _keras_compat
from bert4keras_ext import backend as B
from bert4keras_ext.backend import K, keras, ops
from bert4keras_ext.models import (  # bert4keras imports these from models
    data_parallel, delete_arguments, extend_with_language_model, extend_with_unified_language_model,
    insert_arguments, is_string, orthogonally_resize, string_matching,
)

NAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared',
                     'bert4keras_public_names.json')


def public_names():
    if not os.path.exists(NAMES):
        pytest.skip('bert4keras_public_names.json is not at %s (it ships with the workplace)' % NAMES)
    return json.load(open(NAMES))


def np_(x):
    return np.asarray(ops.convert_to_numpy(x))


def np_sinusoidal(positions, dim, base=10000.0):
    """Interleaved table: P[p, 2i] = sin(p / base^(2i/d)), P[p, 2i+1] = cos(...)."""
    positions = np.asarray(positions, dtype='float64')
    out = np.zeros(positions.shape + (dim,))
    for i in range(dim // 2):
        theta = positions / base ** (2.0 * i / dim)
        out[..., 2 * i] = np.sin(theta)
        out[..., 2 * i + 1] = np.cos(theta)
    return out


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_every_bert4keras_backend_name_exists():
    names = public_names()
    wanted = {n.split('.', 1)[1] for n in names['own'] + names['examples'] if n.startswith('backend.')}
    assert sorted(n for n in wanted if not hasattr(B, n)) == []
    for name in ('reshape', 'flatten', 'where', 'symbolic', 'gradients', 'logsumexp'):
        assert callable(getattr(K, name))


# --------------------------------------------------------------------------------------- masking
def test_sequence_masking_values_axes_and_bias():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 3).astype('float32')
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    out = np_(B.sequence_masking(x, mask, 0))  # default axis 1
    np.testing.assert_array_equal(out, np.where(mask[:, :, None], x, 0))
    out = np_(B.sequence_masking(x, mask, '-inf', -1))
    np.testing.assert_array_equal(out, np.where(mask[:, None, :], x, np.float32(-1e12)))
    out = np_(B.sequence_masking(x, mask, 'inf', [1, 2]))
    both = mask[:, :, None] & mask[:, None, :]
    np.testing.assert_array_equal(out, np.where(both, x, np.float32(1e12)))
    # float bias: added at kept positions; bool bias: AND-ed into the mask; return_mask gives the aligned mask
    bias = rng.randn(2, 3, 3).astype('float32')
    np.testing.assert_allclose(np_(B.sequence_masking(x, mask, 5, 1, bias)),
                               np.where(mask[:, :, None], x + bias, 5), rtol=1e-6)
    tri = np.tril(np.ones((3, 3), bool))[None]
    out, full = B.sequence_masking(x, mask, -7, 2, tri, True)
    np.testing.assert_array_equal(np_(full), mask[:, None, :] & tri)
    np.testing.assert_array_equal(np_(out), np.where(mask[:, None, :] & tri, x, -7))
    out, full = B.sequence_masking(x, None, 0, None, tri, True)
    np.testing.assert_array_equal(np_(out), np.where(tri, x, 0))
    assert B.sequence_masking(x, None) is x
    assert B.sequence_masking(x, None, return_mask=True)[1] is None
    # bool tensors, and float16 gets a finite fill value
    np.testing.assert_array_equal(np_(B.sequence_masking(np.ones((2, 3), bool), mask)), mask)
    assert np_(B.sequence_masking(x.astype('float16'), mask, '-inf')).min() == np.float16(-3e4)


def test_sequence_masking_rejects_bad_input():
    x, mask = np.zeros((2, 3, 4), 'float32'), np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="'-inf' or 'inf'"):
        B.sequence_masking(x, mask, '-infinity')
    with pytest.raises(ValueError, match='axis 0'):
        B.sequence_masking(x, mask, 0, 0)
    with pytest.raises(ValueError, match=r'\(batch, seq_len\)'):
        B.sequence_masking(x, np.ones((2, 3, 4), bool))


def test_align():
    t = np.arange(6.0).reshape(2, 3)
    assert tuple(B.align(t, [0, 3]).shape) == (2, 1, 1, 3)
    assert tuple(B.align(t, [0, -1], 4).shape) == (2, 1, 1, 3)
    assert tuple(B.align(np.zeros((2, 5, 4)), [0, 1, -1], 4).shape) == (2, 5, 1, 4)
    np.testing.assert_array_equal(np_(B.align(t, [1, 2], 4))[0, :, :, 0], t)
    with pytest.raises(ValueError, match='one target axis per axis'):
        B.align(t, [0, 1, 2])
    with pytest.raises(ValueError, match='increasing'):
        B.align(t, [2, 1])


# --------------------------------------------------------------------------------------- positions
def test_sinusoidal_embeddings_and_initializer():
    pos = np.array([[0.0, 1.0, 5.0], [2.0, 7.0, 100.0]], 'float32')
    np.testing.assert_allclose(np_(B.sinusoidal_embeddings(pos, 8)), np_sinusoidal(pos, 8), atol=1e-5)
    np.testing.assert_allclose(np_(B.sinusoidal_embeddings(pos, 4, base=100)), np_sinusoidal(pos, 4, 100.0),
                               atol=1e-5)
    table = np_(B.Sinusoidal()((6, 10)))
    np.testing.assert_allclose(table, np_sinusoidal(np.arange(6), 10), atol=1e-6)
    assert keras.initializers.get(keras.initializers.serialize(B.Sinusoidal())).__class__ is B.Sinusoidal
    with pytest.raises(ValueError, match='even'):
        B.sinusoidal_embeddings(pos, 5)


def np_rotary(sinusoidal, x):
    """Treat each interleaved pair (x[2i], x[2i+1]) as a complex number and multiply by e^(iθ)."""
    sin, cos = sinusoidal[..., 0::2], sinusoidal[..., 1::2]
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * (cos + 1j * sin)
    out = np.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def test_apply_rotary_position_embeddings():
    rng = np.random.RandomState(1)
    q, k = rng.randn(2, 5, 3, 8).astype('float32'), rng.randn(2, 5, 3, 8).astype('float32')
    table = np_sinusoidal(np.arange(5), 8)[None]  # (1, n, d)
    ref_sin = table[:, :, None, :]  # aligned to (b, n, h, d)
    q2, k2 = B.apply_rotary_position_embeddings(table.astype('float32'), q, k)
    np.testing.assert_allclose(np_(q2), np_rotary(ref_sin, q), atol=1e-5)
    np.testing.assert_allclose(np_(k2), np_rotary(ref_sin, k), atol=1e-5)
    # one tensor gives one tensor; (b, n, d) tensors work too
    single = B.apply_rotary_position_embeddings(table.astype('float32'), q[:, :, 0])
    np.testing.assert_allclose(np_(single), np_rotary(table, q[:, :, 0]), atol=1e-5)
    # the point of RoPE: <R_m q, R_n k> depends only on m - n
    v = rng.randn(8)
    pos = np_sinusoidal(np.arange(12), 8)
    rotated = np_(B.apply_rotary_position_embeddings(pos[None].astype('float32'), np.tile(v, (1, 12, 1))))[0]
    assert abs(rotated[3] @ rotated[1] - rotated[9] @ rotated[7]) < 1e-4
    with pytest.raises(ValueError, match='same shape'):
        B.apply_rotary_position_embeddings(table, q, k[:, :4])


# --------------------------------------------------------------------------------------- numerics
def test_attention_normalize_methods():
    rng = np.random.RandomState(2)
    a = rng.randn(2, 2, 3, 20).astype('float32')
    mask = np.ones((2, 20), bool)
    mask[1, 6:] = False
    visible = mask[:, None, None, :]
    ref = np_softmax(np.where(visible, a, -1e12))
    np.testing.assert_allclose(np_(B.attention_normalize(a, mask)), ref, atol=1e-6)
    np.testing.assert_allclose(np_(B.attention_normalize(a)), np_softmax(a), atol=1e-6)
    count = visible.sum(-1, keepdims=True).astype('float64')
    ref = np.where(visible, np.maximum(a, 0) ** 2, 0) / count
    np.testing.assert_allclose(np_(B.attention_normalize(a, mask, method='squared_relu')), ref, atol=1e-6)
    scale = np.log(np.maximum(count, 16)) / np.log(512)
    ref = np_softmax(np.where(visible, a * scale, -1e12))
    np.testing.assert_allclose(np_(B.attention_normalize(a, mask, method='softmax_plus')), ref, atol=1e-6)
    ref = np.maximum(a, 0) ** 2 / 20  # no mask: l = the key count
    np.testing.assert_allclose(np_(B.attention_normalize(a, method='squared_relu')), ref, atol=1e-6)
    with pytest.raises(ValueError, match='squared_relu'):
        B.attention_normalize(a, method='sparsemax')


def test_elementwise_functions():
    x = np.linspace(-3, 3, 13).astype('float32')
    np.testing.assert_allclose(np_(B.swish(x)), x / (1 + np.exp(-x)), atol=1e-6)
    np.testing.assert_allclose(np_(B.leaky_relu(x)), np.where(x > 0, x, 0.2 * x), atol=1e-6)
    np.testing.assert_allclose(np_(B.leaky_relu(x, alpha=0.1)), np.where(x > 0, x, 0.1 * x), atol=1e-6)
    m = x.reshape(13, 1) * np.arange(1, 4, dtype='float32')
    np.testing.assert_allclose(np_(B.root_mean_square(m, axis=-1)), np.sqrt((m ** 2).mean(-1)), rtol=1e-6)
    np.testing.assert_allclose(np_(B.root_mean_square(m)), np.sqrt((m ** 2).mean()), rtol=1e-6)
    assert np_(B.root_mean_square(m, axis=0, keepdims=True)).shape == (1, 3)


def test_batch_gather():
    rng = np.random.RandomState(3)
    params = rng.randn(2, 5, 3).astype('float32')
    idx = np.array([[0, 4], [2, 2]])
    expected = np.stack([params[b, idx[b]] for b in range(2)])
    np.testing.assert_array_equal(np_(B.batch_gather(params, idx)), expected)
    np.testing.assert_array_equal(np_(B.batch_gather(params, idx.astype('float32'))), expected)  # floats cast
    scores = rng.randn(2, 3, 6).astype('float32')  # two batch axes, as in the sparse multilabel loss
    labels = rng.randint(0, 6, size=(2, 3, 4))
    np.testing.assert_array_equal(np_(B.batch_gather(scores, labels)), np.take_along_axis(scores, labels, -1))
    with pytest.raises(ValueError, match='batch'):
        B.batch_gather(params, np.zeros((3, 2), 'int32'))


def test_reshape_flatten_where_dtype():
    x = np.arange(2 * 3 * 12, dtype='float32').reshape(2, 3, 12)
    np.testing.assert_array_equal(np_(B.reshape(x, (6, 12))), x.reshape(6, 12))
    np.testing.assert_array_equal(np_(B.reshape(x, (4, -1), 2)), x.reshape(2, 3, 4, 3))
    np.testing.assert_array_equal(np_(B.reshape(x, (3, 1), 1, (2, 2, 3), 2)), x.reshape(2, 3, 1, 2, 2, 3))
    np.testing.assert_array_equal(np_(B.flatten(x)), x.ravel())
    np.testing.assert_array_equal(np_(B.flatten(x, 1)), x.reshape(2, 36))
    np.testing.assert_array_equal(np_(B.flatten(x, -2)), x.reshape(2, 36))
    np.testing.assert_array_equal(np_(B.flatten(x, 0, 2)), x.reshape(6, 12))

    @tf.function(input_signature=[tf.TensorSpec([None, None, 12])])
    def dynamic(t):
        return B.reshape(t, (4, -1), 2), B.flatten(t, 1), B.divisible_temporal_padding(t, 2)

    a, b, c = dynamic(x)
    np.testing.assert_array_equal(a.numpy(), x.reshape(2, 3, 4, 3))
    np.testing.assert_array_equal(b.numpy(), x.reshape(2, 36))
    np.testing.assert_array_equal(c.numpy(), np.concatenate([x, np.zeros((2, 1, 12))], 1))
    with pytest.raises(ValueError, match='one -1'):
        B.reshape(x, (-1, -1), 2)

    cond = np.array([[True], [False]])
    out = B.where(cond, 1, tf.constant([2.0, 3.0, 4.0]))  # broadcast, constant takes the tensor's dtype
    np.testing.assert_array_equal(np_(out), [[1, 1, 1], [2, 3, 4]])
    assert B.dtype(out) == 'float32' and B.dtype(3.0) is None and B.dtype(x) is None
    assert B.dtype(B.where(np.array([1, 0]), 1, 0)) == keras.config.floatx()
    assert B.dtype(keras.Variable(np.zeros(2, 'int32'))) == 'int32'


def test_pool1d_and_divisible_padding():
    x = np.random.RandomState(4).randn(2, 6, 3).astype('float32')
    np.testing.assert_allclose(np_(B.pool1d(x, 2, 2)), x.reshape(2, 3, 2, 3).max(2), atol=1e-6)
    np.testing.assert_allclose(np_(B.pool1d(x, 3, 3, pool_mode='avg')), x.reshape(2, 2, 3, 3).mean(2), atol=1e-6)
    sliding = np.stack([x[:, i:i + 2].max(1) for i in range(5)], 1)
    np.testing.assert_allclose(np_(B.pool1d(x, 2)), sliding, atol=1e-6)
    with pytest.raises(ValueError, match="'max' or 'avg'"):
        B.pool1d(x, 2, pool_mode='min')
    padded = np_(B.divisible_temporal_padding(x, 4))
    assert padded.shape == (2, 8, 3)
    np.testing.assert_array_equal(padded[:, :6], x)
    assert not padded[:, 6:].any()
    assert np_(B.divisible_temporal_padding(x, 3)).shape == (2, 6, 3)


def test_piecewise_linear_matches_hand_computed_schedule():
    schedule = {1000: 1.0, 2000: 0.1}  # warm up from 0 to 1, decay to 0.1, then flat
    for t, expected in [(0, 0.0), (500, 0.5), (1000, 1.0), (1500, 0.55), (2000, 0.1), (5000, 0.1)]:
        assert abs(float(np_(B.piecewise_linear(t, schedule))) - expected) < 1e-6


# --------------------------------------------------------------------------------------- graph helpers
def small_model():
    ids = keras.Input((None,), dtype='int32', name='Input-Token')
    emb = keras.layers.Embedding(20, 8, name='Embedding-Token')(ids)
    left = keras.layers.Dense(8, name='Left')(emb)
    right = keras.layers.Dense(8, name='Right')(emb)
    out = keras.layers.Add(name='Merge')([left, right])
    out = keras.layers.Dense(2, name='Head')(out)
    return keras.Model(ids, out)


def test_search_layer_walks_the_functional_graph():
    model = small_model()
    out = model.outputs[0]
    for name in ('Head', 'Merge', 'Left', 'Right', 'Embedding-Token', 'Input-Token'):
        assert B.search_layer(out, name) is model.get_layer(name)
    assert B.search_layer(out, 'Nowhere') is None
    # from an intermediate tensor, only what is upstream is found
    left_out = model.get_layer('Left').output
    assert B.search_layer(left_out, 'Embedding-Token') is model.get_layer('Embedding-Token')
    assert B.search_layer(left_out, 'Right') is None
    # a layer, a Model, a nested model, and exclude_from
    assert B.search_layer(model.get_layer('Head'), 'Left') is model.get_layer('Left')
    assert B.search_layer(model, 'Right') is model.get_layer('Right')
    outer_in = keras.Input((None,), dtype='int32')
    outer = keras.Model(outer_in, keras.layers.Dense(1, name='Outer-Head')(model(outer_in)))
    assert B.search_layer(outer.outputs[0], 'Embedding-Token') is model.get_layer('Embedding-Token')
    assert B.search_layer(outer, 'Right') is model.get_layer('Right')
    assert B.search_layer(out, 'Left', exclude_from={model.get_layer('Merge')}) is None


def test_search_layer_explains_concrete_tensors():
    # bert4keras' gradient-penalty loss calls search_layer(y_pred, ...) inside the loss: here y_pred is concrete
    with pytest.raises(NotImplementedError, match='gradient_penalty_training'):
        B.search_layer(tf.zeros((2, 3)), 'Embedding-Token')
    with pytest.raises(TypeError, match='symbolic tensor'):
        B.search_layer('Embedding-Token', 'Embedding-Token')


def test_keras2_training_internals_raise_clear_errors():
    assert _keras_compat.installed()
    model = small_model()
    with pytest.raises(NotImplementedError, match=r'adversarial\.adversarial_training\(model, embedding_name'):
        model._make_train_function()
    with pytest.raises(AttributeError, match='virtual_adversarial_training') as info:
        model.total_loss
    assert isinstance(info.value, NotImplementedError)
    assert not hasattr(model, 'total_loss')
    model.total_loss = 3.0  # user code that sets it keeps its value
    assert model.total_loss == 3.0 and not hasattr(small_model(), 'total_loss')
    with pytest.raises(NotImplementedError, match='tf.GradientTape') as info:
        K.gradients(model.outputs[0], [model.get_layer('Embedding-Token').embeddings])
    assert 'gradient_penalty_training' in str(info.value)
    with pytest.raises(NotImplementedError, match='MirroredStrategy'):
        data_parallel(model)


def test_keras_compat_install_is_reversible():
    _keras_compat.uninstall()
    try:
        assert not hasattr(keras.Model, '_make_train_function') and 'total_loss' not in keras.Model.__dict__
    finally:
        _keras_compat.install()
    _keras_compat.install()  # idempotent
    assert _keras_compat.installed()


def test_graph_mode_decorator_is_a_custom_gradient():
    def f(x):
        def grad(dy, variables=None):
            return dy * 3.0
        return x * 2.0, grad

    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = B.graph_mode_decorator(f, x)
    np.testing.assert_array_equal(y.numpy(), [2.0, 4.0])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [3.0, 3.0])
    assert B.symbolic(f) is f


class Squash(keras.layers.Layer):
    def __init__(self, recompute=False, **kwargs):
        super().__init__(**kwargs)
        self.recompute = recompute
        self.dense = keras.layers.Dense(4, kernel_initializer=keras.initializers.Constant(0.3))

    @B.recompute_grad
    def call(self, inputs, mask=None):
        x, ids = inputs
        return ops.tanh(self.dense(x)) * ops.cast(ids > 0, x.dtype)[..., None]


def test_recompute_grad_gives_the_same_values_and_gradients():
    x = tf.constant(np.random.RandomState(5).randn(2, 3, 4), 'float32')
    ids = tf.constant([[1, 2, 0], [3, 0, 0]])
    results = []
    for recompute in (False, True):
        layer = Squash(recompute=recompute)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer([x, ids])
            loss = tf.reduce_sum(y ** 2)
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        results.append([y.numpy()] + [g.numpy() for g in grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_custom_objects_and_gpus():
    objects = B.custom_objects
    assert {'gelu', 'gelu_erf', 'gelu_tanh', 'root_mean_square', 'swish', 'leaky_relu', 'Sinusoidal',
            'multilabel_categorical_crossentropy', 'initializer'} <= set(objects)
    assert objects['gelu'] is B.gelu_erf and B.is_tf_keras is True
    gpus = B.get_available_gpus()
    assert isinstance(gpus, list) and all('GPU' in name for name in gpus)


# --------------------------------------------------------------------------------------- models helpers
def test_argument_decorators_and_string_helpers():
    class Base:
        @insert_arguments(with_pool=False, pool_size=2)
        @delete_arguments('with_mlm')
        def __init__(self, width=1):
            self.width = width

    b = Base(width=3, with_pool=True)
    assert (b.width, b.with_pool, b.pool_size) == (3, True, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'with_mlm'"):
        Base(with_mlm=True)
    assert is_string('abc') and not is_string(b'abc') and not is_string(3)
    assert string_matching('bert/encoder/layer_0/LayerNorm/gamma', ['Norm', 'bias$'])
    assert not string_matching('bert/encoder/layer_0/kernel', ['Norm', 'bias$'])


def test_orthogonally_resize_hand_computed():
    a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    out = orthogonally_resize(a, (6, 3), window=2)
    # rows: blocks of 2 repeated twice → r0 r1 r0 r1 r2 r3 (cut to 6); cols: window 2, k=2 → c0 c1 c0 (cut to 3)
    rows = a[[0, 1, 0, 1, 2, 3]]
    expected = rows[:, [0, 1, 0]]
    expected = expected / np.linalg.norm(expected) * np.linalg.norm(a)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(np.linalg.norm(out), np.linalg.norm(a))
    np.testing.assert_allclose(orthogonally_resize(a, (2, 1)), a[:2, :1] / np.linalg.norm(a[:2, :1]) *
                               np.linalg.norm(a))
    with pytest.raises(ValueError, match='window'):
        orthogonally_resize(np.ones((3, 2)), (6, 2))
    with pytest.raises(ValueError, match='new_shape'):
        orthogonally_resize(a, (4,))


def test_extend_with_language_models_are_causal(tiny_bert):
    from bert4keras_ext.models import BERT, build_transformer_model
    ids = np.array([[2, 5, 6, 7, 8, 3]])
    changed = ids.copy()
    changed[0, 3] = 9
    segments = np.array([[0, 0, 0, 1, 1, 1]])

    lm = build_transformer_model(tiny_bert['config'], model=extend_with_language_model(BERT))
    assert lm.output.shape[-1] > 2  # the MLM head is on by default
    before, after = lm.predict([ids, segments], verbose=0), lm.predict([changed, segments], verbose=0)
    np.testing.assert_allclose(before[0, :3], after[0, :3], atol=1e-6)  # no position sees the future
    assert np.abs(before[0, 3:] - after[0, 3:]).max() > 1e-4

    # the caller's choice of MLM output is kept ('linear' = logits)
    unilm = build_transformer_model(tiny_bert['config'], model=extend_with_unified_language_model('bert'),
                                    with_mlm='linear')
    changed[0, 3], changed[0, 1] = ids[0, 3], 9  # change a source token: every position sees the source
    before, after = unilm.predict([ids, segments], verbose=0), unilm.predict([changed, segments], verbose=0)
    assert np.abs(before.sum(-1) - 1).max() > 1e-2  # logits, not probabilities
    assert np.abs(before[0, 0] - after[0, 0]).max() > 1e-4
    changed[0, 1], changed[0, 4] = ids[0, 1], 9  # change a target token: earlier positions do not see it
    after = unilm.predict([changed, segments], verbose=0)
    np.testing.assert_allclose(before[0, :4], after[0, :4], atol=1e-6)
    with pytest.raises(TypeError, match='Transformer subclass'):
        extend_with_language_model(dict)


def test_get_output_at_and_get_input_at_follow_each_call_of_a_layer():
    """Keras 2's Layer.get_output_at / get_input_at (bert4keras' relation-extraction example uses them)."""
    import numpy as np
    from bert4keras_ext.backend import keras
    x1, x2 = keras.Input((3,)), keras.Input((3,))
    dense = keras.layers.Dense(2)
    y1, y2 = dense(x1), dense(x2)
    assert dense.get_output_at(0) is y1 and dense.get_output_at(-1) is y2
    assert dense.get_input_at(0) is x1 and dense.get_input_at(1) is x2
    model = keras.Model([x1, x2], dense.get_output_at(1))  # a model cut at the second call
    a, b = np.ones((1, 3)), np.arange(3.0)[None]
    np.testing.assert_allclose(model.predict([a, b], verbose=0), b @ dense.kernel.numpy() + dense.bias.numpy(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match='has 2 node'):
        dense.get_output_at(2)
    with pytest.raises(ValueError, match='has not been called'):
        keras.layers.Dense(2).get_output_at(0)


def test_nested_python_lists_are_data_as_in_keras_2():
    """bert4keras scripts call model.predict([[token_ids], [segment_ids]]); Keras 3 alone refuses lists."""
    import numpy as np
    from bert4keras_ext.backend import keras
    a, b = keras.Input((None,)), keras.Input((None,))
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    np.testing.assert_array_equal(two_inputs.predict([[[1, 2, 3]], [[10, 20, 30]]], verbose=0), [[11, 22, 33]])
    np.testing.assert_array_equal(two_inputs.predict_on_batch([[[1, 2]], [[3, 4]]]), [[4, 6]])
    one_input = keras.Model(a, keras.layers.Lambda(lambda x: 2 * x)(a))
    np.testing.assert_array_equal(one_input.predict([[1, 2, 3]], verbose=0), [[2, 4, 6]])
    one_input.compile(loss='mse')
    assert np.isfinite(one_input.evaluate([[1.0, 2.0]], [[2.0, 4.0]], verbose=0))
    # numpy arrays and datasets pass through untouched
    np.testing.assert_array_equal(one_input.predict(np.array([[1, 2]]), verbose=0), [[2, 4]])


def test_predict_is_silent_by_default_as_in_keras_2(capsys):
    import numpy as np
    from bert4keras_ext.backend import keras
    a = keras.Input((2,))
    model = keras.Model(a, keras.layers.Dense(1)(a))
    model.predict(np.ones((3, 2)))
    assert capsys.readouterr().out == ''
    model.predict(np.ones((3, 2)), verbose=1)  # asked for: the bar is drawn
    assert 'step' in capsys.readouterr().out
