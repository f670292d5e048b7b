"""Losses against numpy formulas written here: multi-label CE (dense, soft, sparse), GlobalPointer loss/F1,
AM-Softmax (one-hot, sparse, in-batch) with the margin on the target logit only."""
import math

import numpy as np
import pytest

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.losses import (
    am_softmax_loss, global_pointer_crossentropy, global_pointer_f1_score, in_batch_am_softmax_loss,
    multilabel_categorical_crossentropy, sparse_am_softmax_loss, sparse_global_pointer_crossentropy,
    sparse_global_pointer_f1_score, sparse_multilabel_categorical_crossentropy, spearman_correlation,
)


def np_(x):
    return np.asarray(ops.convert_to_numpy(x), dtype='float64')


def ref_multilabel(y, s):
    """log(1 + Σ (1−y) e^s) + log(1 + Σ y e^{−s}) for one row, written directly (float64)."""
    y, s = np.asarray(y, 'float64'), np.asarray(s, 'float64')
    return math.log(1 + np.sum((1 - y) * np.exp(s))) + math.log(1 + np.sum(y * np.exp(-s)))


def test_dense_multilabel_matches_formula_hard_and_soft():
    rng = np.random.RandomState(0)
    scores = rng.randn(4, 7) * 2
    hard = (rng.rand(4, 7) < 0.3).astype('float32')
    hard[0] = 0  # a row with no positive
    soft = rng.rand(4, 7)
    for labels in (hard, soft):
        out = np_(multilabel_categorical_crossentropy(labels, scores.astype('float32')))
        expected = [ref_multilabel(labels[i], scores[i]) for i in range(4)]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_dense_multilabel_ignores_masked_scores():
    scores = np.array([[1.0, -0.5, -1e12, 2.0]], 'float32')
    labels = np.array([[1, 0, 0, 1]], 'float32')
    out = np_(multilabel_categorical_crossentropy(labels, scores))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [ref_multilabel([1, 0, 1], [1.0, -0.5, 2.0])], rtol=1e-6)


@pytest.mark.parametrize('mask_zero', [False, True])
def test_sparse_multilabel_equals_dense_on_same_labels(mask_zero):
    rng = np.random.RandomState(1)
    num_classes, k = 9, 4
    scores = (rng.randn(2, 3, num_classes) * 3).astype('float32')
    indices = np.zeros((2, 3, k), 'int32')
    dense = np.zeros((2, 3, num_classes), 'float32')
    low = 1 if mask_zero else 0
    for i in range(2):
        for j in range(3):
            count = rng.randint(0 if mask_zero else 1, k + 1)
            chosen = rng.choice(np.arange(low, num_classes), size=count, replace=False)
            indices[i, j, :count] = chosen
            if not mask_zero:  # pad by repeating a positive: duplicates must count once
                indices[i, j, count:] = chosen[0]
            dense[i, j, chosen] = 1
    sparse = np_(sparse_multilabel_categorical_crossentropy(indices, scores, mask_zero=mask_zero))
    if mask_zero:  # class 0 is the padding index: out of both sums
        reference = np_(multilabel_categorical_crossentropy(dense[..., 1:], scores[..., 1:]))
    else:
        reference = np_(multilabel_categorical_crossentropy(dense, scores))
    np.testing.assert_allclose(sparse, reference, rtol=1e-5, atol=1e-5)


def test_sparse_multilabel_precise_when_positives_dominate():
    # bert4keras' a + log(1 − e^{b−a}) loses digits here in float32; the value is log(1 + Σ_neg e^s)
    scores = np.array([[12.0, 0.1, -0.2, 0.3]], 'float32')
    out = np_(sparse_multilabel_categorical_crossentropy(np.array([[0]]), scores))
    expected = ref_multilabel([1, 0, 0, 0], scores[0])
    assert abs(out[0] - expected) < 1e-5


def test_sparse_multilabel_bad_labels():
    with pytest.raises(ValueError, match='labels must be in'):
        sparse_multilabel_categorical_crossentropy(np.array([[7]]), np.zeros((1, 5), 'float32'))
    with pytest.raises(ValueError, match='rank'):
        sparse_multilabel_categorical_crossentropy(np.array([1, 2]), np.zeros((1, 5), 'float32'))
    with pytest.raises(ValueError, match='does not match'):
        multilabel_categorical_crossentropy(np.zeros((2, 4)), np.zeros((2, 5), 'float32'))


def gp_case(seed=2, b=2, heads=3, n=5):
    rng = np.random.RandomState(seed)
    scores = (rng.randn(b, heads, n, n) * 2).astype('float32')
    scores[:, :, np.tril_indices(n, -1)[0], np.tril_indices(n, -1)[1]] = -1e12
    spans = [[[(1, 2), (3, 3)], [], [(1, 4)]], [[(2, 2)], [(1, 1), (2, 3), (4, 4)], []]]
    dense = np.zeros_like(scores)
    sparse = np.zeros((b, heads, 3, 2), 'int32')
    for i in range(b):
        for h in range(heads):
            for k, (s, e) in enumerate(spans[i][h]):
                dense[i, h, s, e] = 1
                sparse[i, h, k] = (s, e)
    return scores, dense, sparse


def test_global_pointer_losses_dense_and_sparse():
    scores, dense, sparse = gp_case()
    b, heads, n, _ = scores.shape
    per_cell = [[ref_multilabel(np.delete(dense[i, h].ravel(), np.flatnonzero(scores[i, h].ravel() < -1e11)),
                                np.delete(scores[i, h].ravel(), np.flatnonzero(scores[i, h].ravel() < -1e11)))
                 for h in range(heads)] for i in range(b)]
    per_cell = np.array(per_cell)
    np.testing.assert_allclose(np_(global_pointer_crossentropy(dense, scores)), per_cell.mean(1), rtol=1e-5)
    # sparse with (0, 0) padding: the [CLS]-[CLS] cell is excluded from the sums
    no_cls = [[ref_multilabel(np.delete(dense[i, h].ravel(), [0] + list(np.flatnonzero(scores[i, h].ravel() < -1e11))),
                              np.delete(scores[i, h].ravel(), [0] + list(np.flatnonzero(scores[i, h].ravel() < -1e11))))
               for h in range(heads)] for i in range(b)]
    np.testing.assert_allclose(np_(sparse_global_pointer_crossentropy(sparse, scores)), np.sum(no_cls, 1),
                               rtol=1e-5)


def test_global_pointer_losses_train_inside_keras():
    scores, dense, sparse = gp_case()
    x = keras.Input((3, 5, 5))
    model = keras.Model(x, keras.layers.Dense(5)(x))
    for loss, labels in ((global_pointer_crossentropy, dense), (sparse_global_pointer_crossentropy, sparse)):
        model.compile(optimizer='adam', loss=loss, metrics=[global_pointer_f1_score if loss is
                                                           global_pointer_crossentropy else sparse_global_pointer_f1_score])
        history = model.fit(scores, labels, epochs=1, verbose=0)
        assert np.isfinite(history.history['loss'][0])


def test_global_pointer_f1_scores():
    scores, dense, sparse = gp_case()
    predicted = scores > 0
    tp = (predicted & (dense > 0)).sum()
    expected = 2 * tp / (predicted.sum() + dense.sum())
    assert abs(float(np_(global_pointer_f1_score(dense, scores))) - expected) < 1e-6
    assert abs(float(np_(sparse_global_pointer_f1_score(sparse, scores))) - expected) < 1e-6
    # no spans and nothing predicted: perfect, not NaN
    assert float(np_(global_pointer_f1_score(np.zeros((1, 1, 2, 2)), -np.ones((1, 1, 2, 2), 'float32')))) == 1.0


def test_global_pointer_bad_shapes():
    scores, dense, sparse = gp_case()
    with pytest.raises(ValueError, match='does not match'):
        global_pointer_crossentropy(dense[:, :2], scores)
    with pytest.raises(ValueError, match=r'\(start, end\)'):
        sparse_global_pointer_crossentropy(sparse[..., :1], scores)
    bad = sparse.copy()
    bad[0, 0, 0] = (1, 9)
    with pytest.raises(ValueError, match='labels must be in'):
        sparse_global_pointer_crossentropy(bad, scores)


def ref_am_softmax(cos, target, s=30.0, m=0.35):
    logits = s * np.asarray(cos, 'float64')
    logits = logits.copy()
    logits[target] = s * (cos[target] - m)
    top = logits.max()
    return top + math.log(np.exp(logits - top).sum()) - logits[target]


def test_am_softmax_losses_match_formula_margin_on_target_only():
    rng = np.random.RandomState(4)
    cos = np.clip(rng.randn(5, 6) * 0.5, -1, 1).astype('float32')
    targets = rng.randint(0, 6, size=5)
    expected = [ref_am_softmax(cos[i], targets[i]) for i in range(5)]
    np.testing.assert_allclose(np_(sparse_am_softmax_loss(targets, cos)), expected, rtol=1e-5)
    np.testing.assert_allclose(np_(am_softmax_loss(np.eye(6)[targets], cos)), expected, rtol=1e-5)
    np.testing.assert_allclose(np_(sparse_am_softmax_loss(targets[:, None], cos)), expected, rtol=1e-5)
    # margin only on the target: raising a non-target cosine by δ changes the loss as plain softmax would
    bumped = cos.copy()
    other = (targets[0] + 1) % 6
    bumped[0, other] += 0.1
    assert abs(float(np_(sparse_am_softmax_loss(targets, bumped))[0]) - ref_am_softmax(bumped[0], targets[0])) < 1e-4
    # with m = 0 it is softmax cross-entropy on s·cos
    plain = np_(sparse_am_softmax_loss(targets, cos, margin=0.0))
    logits = 30 * cos.astype('float64')
    ce = [np.log(np.exp(logits[i] - logits[i].max()).sum()) + logits[i].max() - logits[i, targets[i]] for i in range(5)]
    np.testing.assert_allclose(plain, ce, rtol=1e-5)
    with pytest.raises(ValueError, match='labels must be in'):
        sparse_am_softmax_loss(np.array([6]), cos[:1])
    with pytest.raises(ValueError, match='scale'):
        am_softmax_loss(np.eye(6)[targets], cos, scale=0)


def test_in_batch_am_softmax_matches_formula():
    rng = np.random.RandomState(5)
    vectors = rng.randn(6, 4).astype('float32')
    groups = np.array([0, 0, 1, 1, 0, 0])  # pairs 0 and 2 share a group
    out = np_(in_batch_am_softmax_loss(groups, vectors, scale=20.0, margin=0.2))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    for r in range(6):
        partner = r ^ 1
        keep = [c for c in range(6) if c != r and (c == partner or groups[c] != groups[r])]
        logits = np.array([20 * (cos[r, c] - (0.2 if c == partner else 0.0)) for c in keep])
        expected = np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[keep.index(partner)]
        assert abs(out[r] - expected) < 1e-4
    with pytest.raises(ValueError, match='even'):
        in_batch_am_softmax_loss(np.zeros(3), vectors[:3])


def test_spearman_correlation():
    assert abs(spearman_correlation([1, 2, 3, 4], [10, 20, 30, 40]) - 1) < 1e-12
    assert abs(spearman_correlation([1, 2, 3, 4], [4, 3, 2, 1]) + 1) < 1e-12
    # ties: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] → Pearson of the ranks
    rx, ry = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4.0])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    assert abs(spearman_correlation([0, 1, 1, 2], [1, 2, 3, 4]) - (rx @ ry) / np.sqrt((rx @ rx) * (ry @ ry))) < 1e-12
