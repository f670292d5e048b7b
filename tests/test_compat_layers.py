"""bert4keras' layers that layers.py re-exports from extra_layers.py / positions.py, against numpy references;
config and `.keras` round-trips."""
import json
import os

import numpy as np
import pytest

from bert4keras_ext import layers as L
from bert4keras_ext.backend import keras, ops

NAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared',
                     'bert4keras_public_names.json')


def public_names():
    if not os.path.exists(NAMES):
        pytest.skip('bert4keras_public_names.json is not at %s (it ships with the workplace)' % NAMES)
    return json.load(open(NAMES))


def np_(x):
    return np.asarray(ops.convert_to_numpy(x))


def np_sinusoidal(positions, dim):
    positions = np.asarray(positions, dtype='float64')
    out = np.zeros(positions.shape + (dim,))
    for i in range(dim // 2):
        theta = positions / 10000.0 ** (2.0 * i / dim)
        out[..., 2 * i], out[..., 2 * i + 1] = np.sin(theta), np.cos(theta)
    return out


def roundtrip(layer):
    """from_config(get_config()) gives a layer with the same config."""
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return clone


def test_every_bert4keras_layers_name_exists():
    names = public_names()
    wanted = {n.split('.', 1)[1] for n in names['own'] + names['examples'] if n.startswith('layers.')}
    assert sorted(n for n in wanted if not hasattr(L, n)) == []
    assert set(wanted) - set(L.__all__) == set()


def test_base_layer_and_integerize_shape():
    assert L.Layer().supports_masking
    assert isinstance(L.ScaleOffset(), L.Layer)

    def build(self, input_shape):
        return input_shape

    assert L.integerize_shape(build) is build


# --------------------------------------------------------------------------------------- ScaleOffset
def test_scale_offset_plain_and_constant():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, 4).astype('float32')
    layer = L.ScaleOffset()
    layer.build(x.shape)
    assert [w.name for w in layer.weights] == ['beta', 'gamma']
    beta, gamma = rng.randn(4).astype('float32'), rng.randn(4).astype('float32')
    layer.set_weights([beta, gamma])
    np.testing.assert_allclose(np_(layer(x)), x * gamma + beta, rtol=1e-6)
    np.testing.assert_allclose(np_(L.ScaleOffset(scale=2.0, offset=False)(x)), 2 * x)
    np.testing.assert_allclose(np_(L.ScaleOffset(scale=None, offset=[1.0, 2.0, 3.0, 4.0])(x)),
                               x + [1, 2, 3, 4], rtol=1e-6)
    fixed = L.ScaleOffset(scale=np.full(4, 0.5, 'float32'), offset=False)
    assert fixed.weights == [] and roundtrip(fixed).get_config()['scale'] == [0.5] * 4
    np.testing.assert_allclose(np_(roundtrip(fixed)(x)), 0.5 * x)


def test_scale_offset_conditional():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 3, 4).astype('float32')
    cond = rng.randn(2, 5).astype('float32')
    layer = L.ScaleOffset(conditional=True, hidden_units=6, hidden_activation='tanh')
    out = np_(layer([x, cond]))
    np.testing.assert_allclose(out, x, rtol=1e-6)  # zero-initialised projections: starts unconditional
    beta, gamma = rng.randn(4), rng.randn(4)
    w_hidden, w_beta, w_gamma = rng.randn(5, 6), rng.randn(6, 4), rng.randn(6, 4)
    layer.set_weights([a.astype('float32') for a in (beta, gamma, w_hidden, w_beta, w_gamma)])
    h = np.tanh(cond @ w_hidden)[:, None, :]
    expected = x * (gamma + h @ w_gamma) + (beta + h @ w_beta)
    np.testing.assert_allclose(np_(layer([x, cond])), expected, rtol=1e-5, atol=1e-5)
    # without the hidden projection, and with a constant scale shifted by the condition
    layer = L.ScaleOffset(scale=1.0, offset=False, conditional=True)
    layer.build([x.shape, cond.shape])
    layer.set_weights([w_gamma[:5].astype('float32')])
    np.testing.assert_allclose(np_(layer([x, cond])), x * (1 + (cond @ w_gamma[:5])[:, None]), rtol=1e-5, atol=1e-5)
    roundtrip(L.ScaleOffset(conditional=True, hidden_units=6, hidden_activation='tanh'))
    with pytest.raises(ValueError, match=r'\[x, cond\]'):
        L.ScaleOffset(conditional=True).build((2, 3, 4))


def test_scale_offset_passes_the_mask_in_a_model():
    ids = keras.Input((None,), dtype='int32')
    cond_in = keras.Input((5,))
    h = keras.layers.Embedding(10, 4, mask_zero=True)(ids)
    h = L.ScaleOffset(conditional=True, hidden_units=3)([h, cond_in])
    out = L.GlobalAveragePooling1D()(h)
    model = keras.Model([ids, cond_in], out)
    token_ids = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    table = [layer for layer in model.layers if isinstance(layer, keras.layers.Embedding)][0].get_weights()[0]
    expected = np.stack([table[[1, 2]].mean(0), table[[3, 4, 5]].mean(0)])
    np.testing.assert_allclose(model.predict([token_ids, np.zeros((2, 5))], verbose=0), expected, rtol=1e-5)


# --------------------------------------------------------------------------------------- pooling
def test_masked_global_pooling():
    rng = np.random.RandomState(2)
    x = rng.randn(3, 4, 2).astype('float32')
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], bool)
    avg = np_(L.GlobalAveragePooling1D()(x, mask=mask))
    np.testing.assert_allclose(avg[:2], [x[0, :2].mean(0), x[1].mean(0)], rtol=1e-6)
    np.testing.assert_array_equal(avg[2], 0)  # nothing visible: 0, not NaN
    mx = np_(L.GlobalMaxPooling1D()(x, mask=mask))
    np.testing.assert_allclose(mx[:2], [x[0, :2].max(0), x[1].max(0)], rtol=1e-6)
    np.testing.assert_allclose(np_(L.GlobalMaxPooling1D()(x)), x.max(1))
    np.testing.assert_allclose(np_(L.GlobalAveragePooling1D()(x)), x.mean(1), rtol=1e-6)
    # channels_first: (b, d, n), the mask runs along the last axis
    xt = np.transpose(x, (0, 2, 1))
    np.testing.assert_allclose(np_(L.GlobalAveragePooling1D('channels_first')(xt, mask=mask))[:2], avg[:2], rtol=1e-6)
    np.testing.assert_allclose(np_(L.GlobalMaxPooling1D('channels_first')(xt, mask=mask))[:2], mx[:2], rtol=1e-6)
    assert np_(L.GlobalMaxPooling1D(keepdims=True)(x, mask=mask)).shape == (3, 1, 2)
    for layer in (L.GlobalAveragePooling1D(), L.GlobalMaxPooling1D()):
        assert roundtrip(layer).compute_mask(x, mask) is None


# --------------------------------------------------------------------------------------- concatenation
def test_concatenate1d_joins_masked_and_unmasked_sequences():
    a_in, b_in = keras.Input((None,), dtype='int32'), keras.Input((None, 3))
    a = keras.layers.Embedding(10, 3, mask_zero=True)(a_in)
    joined = L.Concatenate1D()([a, b_in])
    model = keras.Model([a_in, b_in], [joined, L.GlobalAveragePooling1D()(joined)])
    token_ids = np.array([[1, 2, 0], [4, 0, 0]])
    dense = np.random.RandomState(3).randn(2, 2, 3).astype('float32')
    table = model.layers[2].get_weights()[0]
    seq, pooled = model.predict([token_ids, dense], verbose=0)
    np.testing.assert_allclose(seq, np.concatenate([table[token_ids], dense], 1), rtol=1e-6)
    # the unmasked sequence counts as all visible; padding of the masked one stays hidden
    expected = [np.concatenate([table[[1, 2]], dense[0]]).mean(0), np.concatenate([table[[4]], dense[1]]).mean(0)]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)
    layer = L.Concatenate1D()
    assert layer.compute_mask([dense, dense], [None, None]) is None
    np.testing.assert_array_equal(np_(layer.compute_mask([dense, dense], [np.array([[1, 0], [1, 1]]), None])),
                                  [[1, 0, 1, 1], [1, 1, 1, 1]])


def test_batch_split_and_concat_round_trip():
    x = np.arange(10.0, dtype='float32').reshape(5, 2)
    y = -x
    parts = L.BatchSplit(2)(x)
    assert [np_(p).shape[0] for p in parts] == [3, 2]  # ceil(5 / 2) = 3, then the rest
    np.testing.assert_array_equal(np_(L.BatchConcat()(parts)), x)
    parts = L.BatchSplit([1, 3])(np.arange(8.0).reshape(8, 1))
    assert [np_(p).ravel().tolist() for p in parts] == [[0, 1], [2, 3, 4, 5, 6, 7]]  # cut at floor(8 · 1/4)
    parts = L.BatchSplit(2)([x, y])  # inputs in turn: x parts, then y parts
    np.testing.assert_array_equal(np_(parts[1]), x[3:])
    np.testing.assert_array_equal(np_(parts[2]), y[:3])
    mask = np.array([1, 1, 0, 1, 0], bool)
    split = L.BatchSplit(2).compute_mask(x, mask)
    assert [np_(m).tolist() for m in split] == [[True, True, False], [True, False]]
    assert L.BatchSplit(3).compute_mask(x, None) == [None] * 3
    assert L.BatchConcat().compute_mask(split, [split[0], None]) is None
    np.testing.assert_array_equal(np_(L.BatchConcat().compute_mask(split, split)), mask)
    # inside a functional model with a dynamic batch
    inp = keras.Input((2,))
    model = keras.Model(inp, L.BatchConcat()(L.BatchSplit([2, 1, 1])(inp)))
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert roundtrip(L.BatchSplit([2, 1, 1])).parts == [2, 1, 1]
    roundtrip(L.BatchConcat())
    for bad in (0, [1, -1], 'two', True):
        with pytest.raises(ValueError, match='BatchSplit'):
            L.BatchSplit(bad)


# --------------------------------------------------------------------------------------- positions
@pytest.mark.parametrize('merge_mode', ['add', 'mul', 'zero', 'concat'])
def test_sinusoidal_position_embedding(merge_mode):
    x = np.random.RandomState(4).randn(2, 5, 6).astype('float32')
    table = np_sinusoidal(np.arange(5), 6)[None]
    expected = {'add': x + table, 'mul': x * (table + 1), 'zero': np.broadcast_to(table, x.shape),
                'concat': np.concatenate([x, np.broadcast_to(table, x.shape)], -1)}[merge_mode]
    layer = L.SinusoidalPositionEmbedding(6, merge_mode)
    np.testing.assert_allclose(np_(layer(x)), expected, atol=1e-5)
    # custom position ids (b, n)
    position_ids = np.array([[0, 2, 4, 6, 8], [3, 3, 3, 3, 3]])
    table = np_sinusoidal(position_ids, 6)
    expected = {'add': x + table, 'mul': x * (table + 1), 'zero': table,
                'concat': np.concatenate([x, table], -1)}[merge_mode]
    layer = roundtrip(L.SinusoidalPositionEmbedding(6, merge_mode, custom_position_ids=True))
    np.testing.assert_allclose(np_(layer([x, position_ids])), expected, atol=1e-5)


def test_sinusoidal_position_embedding_checks_arguments():
    with pytest.raises(ValueError, match='even'):
        L.SinusoidalPositionEmbedding(5)
    with pytest.raises(ValueError, match='merge_mode'):
        L.SinusoidalPositionEmbedding(4, 'sum')
    with pytest.raises(ValueError, match='concat'):
        L.SinusoidalPositionEmbedding(4)(np.zeros((1, 3, 6), 'float32'))


def test_relative_position_embedding():
    rng = np.random.RandomState(5)
    layer = L.RelativePositionEmbedding(7, 4)  # distances clipped to ±3
    q, v = np.zeros((2, 5, 8), 'float32'), np.zeros((2, 6, 8), 'float32')
    out = layer([q, v])
    np.testing.assert_array_equal(np_(out), 0)  # zero-initialised, as bert4keras
    table = rng.randn(7, 4).astype('float32')
    layer.set_weights([table])
    expected = np.array([[table[min(max(j - i, -3), 3) + 3] for j in range(6)] for i in range(5)])
    np.testing.assert_array_equal(np_(layer([q, v])), expected)
    assert tuple(layer.compute_output_shape([(None, 5, 8), (None, 6, 8)])) == (5, 6, 4)
    clone = roundtrip(L.RelativePositionEmbedding(7, 4, embeddings_initializer='glorot_uniform'))
    assert clone.get_config()['embeddings_initializer']['class_name'] == 'GlorotUniform'
    with pytest.raises(ValueError, match=r'\[q, v\]'):
        L.RelativePositionEmbedding(7, 4)(q)


def test_model_with_the_new_layers_saves_and_loads(tmp_path):
    ids = keras.Input((None,), dtype='int32')
    cond = keras.Input((3,))
    h = keras.layers.Embedding(12, 8, mask_zero=True)(ids)
    h = L.SinusoidalPositionEmbedding(8, 'add')(h)
    h = L.ScaleOffset(conditional=True, hidden_units=4)([h, cond])
    rel = L.RelativePositionEmbedding(5, 8, embeddings_initializer='glorot_uniform')([h, h])
    h = L.Concatenate1D()([h, h])
    out = L.GlobalMaxPooling1D()(h)
    model = keras.Model([ids, cond], [out, L.GlobalAveragePooling1D()(h) + ops.mean(rel)])
    for layer in model.layers:  # non-zero conditional projections, so the round-trip is not trivial
        if isinstance(layer, L.ScaleOffset):
            layer.set_weights([w + 0.1 for w in layer.get_weights()])
    data = [np.array([[1, 2, 3, 0], [4, 5, 0, 0]]), np.random.RandomState(6).randn(2, 3).astype('float32')]
    before = model.predict(data, verbose=0)
    path = str(tmp_path / 'm.keras')
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=False)
    for a, b in zip(before, loaded.predict(data, verbose=0)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
