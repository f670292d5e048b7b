"""`model.predict` of one small in-memory batch skips Keras' data pipeline (bert4keras_ext.fast_predict).

The reference is Keras' own predict (``fast=False`` reaches it untouched) and, for small dense models, a
numpy computation: results must be bit-identical to Keras' — values, dtype and the list / dict / single
structure of the outputs — and everything the fast path does not handle must still reach Keras.
"""
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import fast_predict
from bert4keras_ext.backend import keras


def _two_input_model():
    a = keras.Input((3,), name='a')
    b = keras.Input((3,), name='b', dtype='int32')
    dense = keras.layers.Dense(2, name='dense')
    h = dense(a)
    count = keras.ops.cast(keras.ops.sum(b, axis=-1, keepdims=True), 'float32')
    model = keras.Model([a, b], [h * count, keras.ops.argmax(h, axis=-1)])
    return model, dense


def _numpy_two_input(dense, a, b):
    h = a.astype('float32') @ dense.kernel.numpy() + dense.bias.numpy()
    return h * b.sum(-1, keepdims=True).astype('float32'), h.argmax(-1)


def _assert_same(got, want):
    """Same structure (list / tuple / dict / array), dtypes and bits."""
    assert type(got) is type(want)
    if isinstance(want, dict):
        assert sorted(got) == sorted(want)
        for k in want:
            _assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w)
    else:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_several_inputs_and_outputs_match_numpy_and_keras_bit_for_bit():
    model, dense = _two_input_model()
    rng = np.random.RandomState(0)
    a, b = rng.randn(4, 3), rng.randint(0, 3, size=(4, 3))  # float64 / int64 as numpy makes them
    direct = fast_predict.predict_small_batch(model, [a, b])
    assert direct is not fast_predict.NOT_HANDLED
    want_scaled, want_argmax = _numpy_two_input(dense, a, b)
    assert isinstance(direct, list) and direct[0].dtype == np.float32  # float64 cast to floatx, as Keras
    np.testing.assert_allclose(direct[0], want_scaled, rtol=1e-6)
    np.testing.assert_array_equal(direct[1], want_argmax)
    _assert_same(model.predict([a, b]), model.predict([a, b], fast=False))
    _assert_same(direct, model.predict([a, b], fast=False))
    _assert_same(model.predict((a, b)), model.predict((a, b), fast=False))  # a tuple of inputs
    _assert_same(model.predict({'a': a, 'b': b}), model.predict({'a': a, 'b': b}, fast=False))
    tensors = [tf.constant(a, 'float32'), tf.constant(b, 'int32')]
    _assert_same(model.predict(tensors), model.predict(tensors, fast=False))
    # nested Python lists (bert4keras' model.predict([[ids], [segs]])) reach the fast path as arrays
    _assert_same(model.predict([a.tolist(), b.tolist()]), model.predict([a, b], fast=False))


def test_single_and_dict_outputs_keep_their_structure():
    x = keras.Input((2,))
    single = keras.Model(x, keras.layers.Dense(3)(x))
    listed = keras.Model(x, [keras.layers.Dense(3)(x)])
    named = keras.Model(x, {'p': keras.layers.Dense(1)(x), 'q': x * 2})
    data = np.arange(6, dtype='float64').reshape(3, 2)
    for model in (single, listed, named):
        assert fast_predict.predict_small_batch(model, data) is not fast_predict.NOT_HANDLED
        _assert_same(model.predict(data), model.predict(data, fast=False))
    np.testing.assert_array_equal(named.predict(data)['q'], data.astype('float32') * 2)


def test_growing_sequences_match_keras_and_do_not_trace_per_step(tiny_bert):
    """bert4keras' decoding loop: last_token(model).predict([ids, segs]) with one more token each step."""
    from bert4keras_ext.decoders import AutoRegressiveDecoder
    from bert4keras_ext.models import build_transformer_model
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm')
    last = AutoRegressiveDecoder(start_id=None, end_id=3, maxlen=8).last_token(model)
    traces = []
    original_step = last.predict_step
    last.predict_step = lambda data: traces.append(1) or original_step(data)  # runs once per trace
    rng = np.random.RandomState(1)
    batches = []
    for rows in (1, 4):
        for length in range(5, 9):
            ids = rng.randint(4, 100, size=(rows, length)).astype('float32')  # float ids, as bert4keras
            segs = np.zeros_like(ids)
            segs[:, 3:] = 1
            batches.append([ids, segs])
    fast = [last.predict(batch) for batch in batches]
    # as Keras' reduce_retracing: (1, 5) exactly, then (1, None) at the next length, then (None, None)
    # when the rows change: three traces for 8 shapes, not one per shape
    assert len(traces) == 3
    for batch, got in zip(batches, fast):
        _assert_same(got, last.predict(batch, fast=False))
        assert got.shape == (len(batch[0]), model.output.shape[-1])


def test_beam_search_is_unchanged_by_the_fast_path(tiny_bert):
    from bert4keras_ext.decoders import AutoRegressiveDecoder
    from bert4keras_ext.models import build_transformer_model
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm')

    class Decoder(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
            return self.last_token(model).predict([token_ids, segment_ids])

    decoder = Decoder(start_id=None, end_id=3, maxlen=6)
    inputs = [[2, 10, 11, 12, 3], [0, 0, 0, 0, 0]]
    fast = decoder.beam_search(inputs, topk=3)
    previous = fast_predict.set_enabled(False)
    try:
        slow = decoder.beam_search(inputs, topk=3)
    finally:
        fast_predict.set_enabled(previous)
    assert previous is True
    np.testing.assert_array_equal(fast, slow)


def test_new_weights_are_seen_after_the_first_call():
    x = keras.Input((2,))
    dense = keras.layers.Dense(1, use_bias=False)
    model = keras.Model(x, dense(x))
    data = np.array([[1.0, 2.0]], 'float32')
    model.predict(data)
    dense.kernel.assign([[3.0], [-1.0]])
    np.testing.assert_array_equal(model.predict(data), [[1.0]])  # 1*3 + 2*(-1)


def test_a_custom_predict_step_is_honoured_as_by_keras():
    class Argmax(keras.Model):
        def predict_step(self, data):
            return keras.ops.argmax(super().predict_step(data), axis=-1)

    x = keras.Input((3,))
    model = Argmax(x, x * 1.0)
    data = np.array([[0.0, 5.0, 1.0], [7.0, 0.0, 1.0]])
    np.testing.assert_array_equal(model.predict(data), [1, 0])
    _assert_same(model.predict(data), model.predict(data, fast=False))


def test_calls_it_does_not_handle_still_reach_keras():
    model, dense = _two_input_model()
    rng = np.random.RandomState(2)
    a, b = rng.randn(40, 3), rng.randint(0, 3, size=(40, 3))
    small = [a[:4], b[:4]]
    dataset = tf.data.Dataset.from_tensor_slices(((a[:4], b[:4]),)).batch(2)
    for kwargs in ({'verbose': 1}, {'steps': 1}, {'callbacks': []}):
        assert fast_predict.predict_small_batch(model, small, **kwargs) is fast_predict.NOT_HANDLED
    assert fast_predict.predict_small_batch(model, [a, b]) is fast_predict.NOT_HANDLED  # 40 rows > 32
    assert fast_predict.predict_small_batch(model, [a, b], batch_size=64) is not fast_predict.NOT_HANDLED
    assert fast_predict.predict_small_batch(model, small, batch_size=2) is fast_predict.NOT_HANDLED
    assert fast_predict.predict_small_batch(model, dataset) is fast_predict.NOT_HANDLED
    assert fast_predict.predict_small_batch(model, [a[:0], b[:0]]) is fast_predict.NOT_HANDLED
    assert fast_predict.predict_small_batch(model, [a[:4], b[:3]]) is fast_predict.NOT_HANDLED
    # ...and Keras' predict gives the numpy answer for the large batch and the dataset
    want_scaled, want_argmax = _numpy_two_input(dense, a, b)
    got = model.predict([a, b])
    np.testing.assert_allclose(got[0], want_scaled, rtol=1e-6)
    np.testing.assert_array_equal(got[1], want_argmax)
    np.testing.assert_allclose(model.predict(dataset)[0], want_scaled[:4], rtol=1e-6)

    previous = fast_predict.set_enabled(False)
    try:
        assert fast_predict.predict_small_batch(model, small) is fast_predict.NOT_HANDLED
        assert not fast_predict.is_enabled()
    finally:
        fast_predict.set_enabled(previous)
    with pytest.raises(TypeError, match='True or False'):
        fast_predict.set_enabled('no')

    eager = keras.Model(model.inputs, model.outputs)
    eager.run_eagerly = True
    assert fast_predict.predict_small_batch(eager, small) is fast_predict.NOT_HANDLED


def test_bad_ids_still_raise_the_clear_value_error(tiny_bert):
    from bert4keras_ext.models import build_transformer_model
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    good = np.array([[2, 5, 3]])
    assert fast_predict.predict_small_batch(model, [good, np.zeros_like(good)]) is not fast_predict.NOT_HANDLED
    ids = np.array([[2, 10 ** 6, 3]])
    with pytest.raises(ValueError, match='expects ids in'):
        model.predict([ids, np.zeros_like(ids)])
