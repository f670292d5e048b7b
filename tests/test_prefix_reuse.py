"""bert4keras-style decoders (`predict` calling `self.last_token(model).predict` on the whole sequence every
step) are served from a key/value cache, and give exactly what full recomputation gives: the reference is the
same decoder with the cache switched off (Keras' predict on every whole sequence)."""
import warnings

import numpy as np
import pytest

from bert4keras_ext.backend import keras
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.snippets import AutoRegressiveDecoder


class AutoTitle(AutoRegressiveDecoder):
    """bert4keras' task_seq2seq_autotitle decoder, unchanged but for the import."""

    def __init__(self, model, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(self.model).predict([token_ids, segment_ids])


class Continuation(AutoRegressiveDecoder):
    """An LM prompt continuation (segment ids all 0)."""

    def __init__(self, model, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids = np.concatenate([inputs[0], output_ids], 1)
        return self.last_token(self.model).predict([token_ids, np.zeros_like(token_ids)])


class CrossEntropy(Loss):
    """bert4keras' seq2seq loss layer: the training model outputs the probabilities through it."""

    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true, y_mask, y_pred = y_true[:, 1:], y_mask[:, 1:], y_pred[:, :-1]
        loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
        return keras.ops.sum(loss * y_mask) / keras.ops.maximum(keras.ops.sum(y_mask), 1.0)


SOURCES = [[101, 300, 301, 302, 102], [101, 310, 311, 312, 313, 314, 102], [101, 320, 102]]


@pytest.fixture(scope='module')
def unilm(tiny_bert):
    return build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                   return_keras_model=False)


def searches(decoder_class, model, **options):
    cached = decoder_class(model, start_id=None, end_id=102, maxlen=6, **options)
    full = decoder_class(model, start_id=None, end_id=102, maxlen=6, kv_cache=False, **options)
    return cached, full


def reuse_of(decoder, model):
    return decoder.models[model].kv_reuse


def test_beam_search_and_sampling_equal_full_recomputation(unilm):
    cached, full = searches(AutoTitle, unilm.model)
    for source in SOURCES:                        # a new source: the prefix changes, a new cache starts
        inputs = [source, [0] * len(source)]
        for topk in (1, 3):
            assert list(cached.beam_search(inputs, topk=topk)) == list(full.beam_search(inputs, topk=topk))
        for min_ends in (1, 2):                   # min_ends 2: beams finish at different steps and the beam shrinks
            a = cached.random_sample(inputs, 3, topk=8, seed=5, min_ends=min_ends)
            b = full.random_sample(inputs, 3, topk=8, seed=5, min_ends=min_ends)
            assert [list(x) for x in a] == [list(x) for x in b]
    reuse = reuse_of(cached, unilm.model)
    assert reuse.usable and reuse.verified       # the cache answered (and was checked once against the full model)
    assert reuse_of(full, unilm.model) is None   # kv_cache=False never built one


def test_cached_probabilities_equal_the_full_model_step_by_step(unilm):
    """Direct calls as a decoder makes them: rows duplicated, reordered, dropped, two tokens at once."""
    decoder = AutoTitle(unilm.model, start_id=None, end_id=102, maxlen=8)
    last = decoder.last_token(unilm.model)
    source = SOURCES[1]
    rows = [list(source)]
    plan = [[0, 0, 0], [2, 0, 1], [1, 1], [0]]
    rng = np.random.RandomState(3)
    for step, parents in enumerate(plan + [None]):
        token_ids = np.array(rows)
        segment_ids = np.array([[0] * len(source) + [1] * (len(r) - len(source)) for r in rows])
        got = last.predict([token_ids, segment_ids])
        expected = unilm.model.predict([token_ids, segment_ids], verbose=0)[:, -1]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg='step %d' % step)
        if parents is None:
            break
        extra = 2 if step == 2 else 1
        rows = [rows[p] + list(rng.randint(400, 700, size=extra)) for p in parents]
    assert reuse_of(decoder, unilm.model).verified


def test_training_model_with_a_loss_layer_and_lm_continuation(tiny_bert, unilm):
    """bert4keras' autotitle passes its *training* model (probabilities through CrossEntropy) to last_token;
    an LM continues a prompt. Both are served from the cache and equal full recomputation."""
    output = CrossEntropy(2)(unilm.model.inputs + unilm.model.outputs)
    training_model = keras.Model(unilm.model.inputs, output)
    cached, full = searches(AutoTitle, training_model)
    inputs = [SOURCES[0], [0] * len(SOURCES[0])]
    assert list(cached.beam_search(inputs, topk=2)) == list(full.beam_search(inputs, topk=2))
    assert reuse_of(cached, training_model).verified
    lm = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='lm',
                                 return_keras_model=False)
    cached, full = searches(Continuation, lm.model)
    for source in SOURCES[:2]:
        assert list(cached.beam_search([source], topk=2)) == list(full.beam_search([source], topk=2))
        a = cached.random_sample([source], 2, topk=5, seed=1)
        assert [list(x) for x in a] == [list(x) for x in full.random_sample([source], 2, topk=5, seed=1)]
    assert reuse_of(cached, lm.model).verified


def test_what_the_cache_cannot_carry_is_recomputed_in_full(tiny_bert, unilm, monkeypatch):
    # a head that mixes positions: the first cached answer differs, a warning says so, results stay exact
    probs = unilm.model.output
    mixed = keras.layers.Lambda(lambda p: keras.ops.cumsum(p, axis=1) / keras.ops.cast(
        keras.ops.arange(1, keras.ops.shape(p)[1] + 1), p.dtype)[None, :, None])(probs)
    mixing_model = keras.Model(unilm.model.inputs, mixed)
    cached, full = searches(AutoTitle, mixing_model)
    inputs = [SOURCES[0], [0] * len(SOURCES[0])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        assert list(cached.beam_search(inputs, topk=2)) == list(full.beam_search(inputs, topk=2))
    assert any('always recomputed in full' in str(w.message) for w in caught)
    assert not reuse_of(cached, mixing_model).usable
    # an encoder (no LM mask): never served from a cache
    encoder = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm=True)
    decoder = AutoTitle(encoder, start_id=None, end_id=102, maxlen=3)
    decoder.beam_search(inputs, topk=2)
    assert not reuse_of(decoder, encoder).usable
    # the environment switch
    monkeypatch.setenv('BERT4KERAS_EXT_KV_CACHE', '0')
    off = AutoTitle(unilm.model, start_id=None, end_id=102, maxlen=3)
    off.beam_search(inputs, topk=2)
    assert reuse_of(off, unilm.model) is None
