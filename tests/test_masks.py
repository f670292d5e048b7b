"""LM and UniLM attention masks: exact patterns, parity with the numpy reference, no leaks."""
import numpy as np
import pytest

from bert4keras_ext.layers import AttentionMask
from bert4keras_ext.models import build_transformer_model
from numpy_reference import forward, read_arrays


def hand_mask(token_ids, segment_ids, mode):
    """allowed[b, q, k], written with loops from the definitions."""
    b, n = token_ids.shape
    allowed = np.zeros((b, n, n), dtype=bool)
    for row in range(b):
        for q in range(n):
            for k in range(n):
                if token_ids[row, k] == 0:
                    continue  # padded keys are never visible
                if mode == 'padding':
                    allowed[row, q, k] = True
                elif mode == 'lm':
                    allowed[row, q, k] = k <= q
                elif segment_ids[row, k] == 0:  # unilm: source keys are visible to every query
                    allowed[row, q, k] = True
                else:  # target keys: only to target queries at or after them
                    allowed[row, q, k] = segment_ids[row, q] == 1 and k <= q
    return allowed


def random_layouts(rng, batch=6, n=12):
    token_ids = np.zeros((batch, n), dtype='int32')
    segment_ids = np.zeros((batch, n), dtype='int32')
    for row in range(batch):
        length = rng.randint(2, n + 1)
        source = rng.randint(1, length + 1)
        token_ids[row, :length] = rng.randint(1, 99, size=length)
        segment_ids[row, source:length] = 1
    return token_ids, segment_ids


@pytest.mark.parametrize('mode', ['padding', 'lm', 'unilm'])
def test_mask_patterns_equal_hand_built_masks(mode):
    rng = np.random.RandomState(0)
    for _ in range(5):
        token_ids, segment_ids = random_layouts(rng)
        layer = AttentionMask(mode=mode)
        out = np.asarray(layer([token_ids, segment_ids] if mode == 'unilm' else token_ids))
        expected = hand_mask(token_ids, segment_ids, mode)
        real_queries = token_ids != 0  # padded query rows are never read (their outputs are discarded)
        assert np.array_equal(np.broadcast_to(out[:, 0], expected.shape)[real_queries], expected[real_queries])


def test_unilm_mask_by_its_plain_definition():
    """Source tokens see the whole source; target token i sees the source and targets up to i."""
    token_ids = np.array([[5, 6, 7, 8, 9, 10, 0]])
    segment_ids = np.array([[0, 0, 0, 1, 1, 1, 0]])
    out = np.asarray(AttentionMask('unilm')([token_ids, segment_ids]))[0, 0]
    expected = np.array([
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 0],  # a padded query row: harmless, never read
    ], dtype=bool)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize('application', ['lm', 'unilm'])
def test_applications_match_numpy_reference(tiny_bert, application):
    W = read_arrays(tiny_bert['checkpoint'])
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application=application,
                                    with_mlm='linear')
    token_ids, segment_ids = random_layouts(np.random.RandomState(1), batch=4, n=14)
    token_ids = np.where(token_ids > 0, token_ids + 100, 0)
    extra = hand_mask(token_ids, segment_ids, application)
    ref = forward(W, token_ids, segment_ids, 2, 4, extra_mask=extra)
    logits = model.predict([token_ids, segment_ids], verbose=0)
    valid = token_ids != 0  # padded query rows are never read
    assert np.abs(logits - ref['mlm_logits'])[valid].max() <= 1e-5


@pytest.mark.parametrize('application', ['lm', 'unilm'])
def test_future_tokens_never_leak(tiny_bert, application):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application=application,
                                    with_mlm='linear')
    rng = np.random.RandomState(2)
    token_ids = rng.randint(104, 700, size=(1, 12)).astype('int32')
    segment_ids = np.array([[0] * 5 + [1] * 7])
    base = model.predict([token_ids, segment_ids], verbose=0)
    first_visible_change = 5 if application == 'unilm' else 0
    for position in range(first_visible_change, 12):
        changed = token_ids.copy()
        changed[0, position] = 700 + position
        out = model.predict([changed, segment_ids], verbose=0)
        # every earlier position is bit-identical; the changed one is not
        assert np.array_equal(out[0, :position], base[0, :position]), position
        assert not np.array_equal(out[0, position], base[0, position])
    if application == 'unilm':  # a source token is visible to the whole source
        changed = token_ids.copy()
        changed[0, 4] = 770
        out = model.predict([changed, segment_ids], verbose=0)
        assert not np.array_equal(out[0, 0], base[0, 0])
