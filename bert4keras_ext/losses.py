"""Losses and metrics for multi-label, span (GlobalPointer) and AM-Softmax heads, on keras.ops.

Everything here computes in float32 (inputs are cast), and uses a large finite negative instead of
-inf, so 16-bit policies and masked scores (-1e12 from the heads) never produce NaN.

- `multilabel_categorical_crossentropy(y_true, y_pred)`: "softmax + CE for multi-label"
  (kexue.fm/archives/7359), log(1 + Σ_{neg} e^{s}) + log(1 + Σ_{pos} e^{-s}); soft labels y ∈ [0, 1]
  weight the terms as log(1 + Σ (1 − y) e^{s}) + log(1 + Σ y e^{-s}) (kexue.fm/archives/9064).
- `sparse_multilabel_categorical_crossentropy(y_true, y_pred, mask_zero=False)`: same loss with the
  positives given as indices.
- `global_pointer_crossentropy` (dense labels (b, h, n, n)) and `sparse_global_pointer_crossentropy`
  (labels (b, h, K, 2) of inclusive (start, end) token pairs, padded with (0, 0)).
- `global_pointer_f1_score` / `sparse_global_pointer_f1_score`: span-level F1 of scores > 0.
- `am_softmax_loss` (one-hot), `sparse_am_softmax_loss` (int labels), `in_batch_am_softmax_loss`
  (sentence embeddings arranged in similar pairs): AM-Softmax with scale s = 30 and margin m = 0.35
  subtracted from the target cosine only.

All losses return per-sample values (Keras averages them), except where noted.
"""
import numpy as np

from bert4keras_ext.backend import keras, mask_value, ops
from bert4keras_ext.multilabel import (  # noqa: F401 - re-exported
    _check_same_shape, _logsumexp_with_zero, _positive_mask, check_labels_in_range,
    multilabel_categorical_crossentropy, sparse_multilabel_categorical_crossentropy,
)

__all__ = [
    'multilabel_categorical_crossentropy', 'sparse_multilabel_categorical_crossentropy',
    'global_pointer_crossentropy', 'sparse_global_pointer_crossentropy', 'global_pointer_f1_score',
    'sparse_global_pointer_f1_score', 'am_softmax_loss', 'sparse_am_softmax_loss',
    'in_batch_am_softmax_loss',
]

register = keras.saving.register_keras_serializable(package='bert4keras_ext')

_NEG = mask_value('float32')  # -1e12



@register
def global_pointer_crossentropy(y_true, y_pred):
    """GlobalPointer loss with dense labels (bert4keras NER example).

    y_true, y_pred: (b, heads, n, n); y_true[b, α, i, j] = 1 for a span i..j of type α.
    Returns (b,): the multi-label CE over the n² cells of each head, averaged over heads (so the
    Keras mean over the batch equals bert4keras' mean over batch × heads).
    """
    _check_same_shape(y_true, y_pred, 'global_pointer_crossentropy')
    shape = ops.shape(y_pred)
    y_true = ops.reshape(ops.cast(y_true, 'float32'), (shape[0], shape[1], -1))
    y_pred = ops.reshape(ops.cast(y_pred, 'float32'), (shape[0], shape[1], -1))
    return ops.mean(multilabel_categorical_crossentropy(y_true, y_pred), axis=1)


def _span_indices(y_true, y_pred, name):
    if len(y_true.shape) != 4 or (y_true.shape[-1] is not None and y_true.shape[-1] != 2):
        raise ValueError('%s: y_true must be (batch, heads, K, 2) (start, end) pairs, got shape %s'
                         % (name, tuple(y_true.shape)))
    if len(y_pred.shape) != 4:
        raise ValueError('%s: y_pred must be (batch, heads, n, n), got shape %s' % (name, tuple(y_pred.shape)))
    y_true = ops.cast(y_true, 'int32')
    # without this, a heads/batch mismatch surfaces as a bare Pack/Reshape error deep in the scatter
    for axis, what in ((0, 'batch size'), (1, 'heads')):
        found, expected = y_true.shape[axis], y_pred.shape[axis]
        if found is not None and expected is not None and found != expected:
            raise ValueError('%s: y_true (batch, heads, K, 2) has %s %d on axis %d but y_pred (batch, heads, n, '
                             'n) has %d: expected %d, found %d' % (name, what, found, axis, expected, expected, found))
    y_true = _assert_same_dims(y_true, y_pred, name)
    n = ops.shape(y_pred)[2]
    # n may be a tensor (unknown sequence length in a traced graph): checked at run time there
    y_true = check_labels_in_range(y_true, n, name + ' span positions')
    return y_true[..., 0] * n + y_true[..., 1]


def _assert_same_dims(y_true, y_pred, name):
    """In a TensorFlow graph where batch/heads are unknown when traced, a run-time check of the
    same (XLA drops assertions; its own shape error then reports the mismatch)."""
    if all(y_true.shape[a] is not None and y_pred.shape[a] is not None for a in (0, 1)):
        return y_true
    if keras.backend.backend() != 'tensorflow':
        return y_true
    import tensorflow as tf
    if tf.executing_eagerly():
        return y_true
    true_shape, pred_shape = tf.shape(y_true), tf.shape(y_pred)
    checks = [tf.debugging.assert_equal(true_shape[a], pred_shape[a],
                                        message='%s: y_true (batch, heads, K, 2) and y_pred (batch, heads, n, n) '
                                                'differ in %s' % (name, what))
              for a, what in ((0, 'batch size'), (1, 'heads'))]
    with tf.control_dependencies(checks):
        return tf.identity(y_true)


@register
def sparse_global_pointer_crossentropy(y_true, y_pred, mask_zero=True):
    """GlobalPointer loss with sparse labels (bert4keras GPLinker example).

    y_true: int (b, heads, K, 2), inclusive (start, end) token positions of each head's spans,
    padded with (0, 0) (never a real span: position 0 is [CLS]). y_pred: (b, heads, n, n).
    Returns (b,): the sparse multi-label CE summed over heads (Keras' batch mean then equals
    bert4keras' mean over the batch of the per-head sum).
    """
    index = _span_indices(y_true, y_pred, 'sparse_global_pointer_crossentropy')
    shape = ops.shape(y_pred)
    y_pred = ops.reshape(ops.cast(y_pred, 'float32'), (shape[0], shape[1], -1))
    loss = sparse_multilabel_categorical_crossentropy(index, y_pred, mask_zero=mask_zero)
    return ops.sum(loss, axis=1)


def _f1(tp, predicted, actual):
    # no spans and no predictions is a perfect score, not 0/0 (bojone/GlobalPointer#2)
    return ops.where(predicted + actual > 0, 2 * tp / ops.maximum(predicted + actual, 1e-12), 1.0)


@register
def global_pointer_f1_score(y_true, y_pred):
    """Span F1 over a batch with dense labels: 2·Σ(y·[s>0]) / Σ(y + [s>0]) (scalar)."""
    y_true = ops.cast(y_true, 'float32')
    predicted = ops.cast(ops.greater(ops.cast(y_pred, 'float32'), 0), 'float32')
    return _f1(ops.sum(y_true * predicted), ops.sum(predicted), ops.sum(y_true))


@register
def sparse_global_pointer_f1_score(y_true, y_pred):
    """Span F1 over a batch with sparse (b, heads, K, 2) labels padded with (0, 0) (scalar)."""
    index = _span_indices(y_true, y_pred, 'sparse_global_pointer_f1_score')
    shape = ops.shape(y_pred)
    flat = ops.reshape(ops.cast(y_pred, 'float32'), (shape[0], shape[1], -1))
    gold = ops.cast(_positive_mask(index, flat, True, 'sparse_global_pointer_f1_score'), 'float32')
    predicted = ops.cast(ops.greater(flat, 0), 'float32')
    return _f1(ops.sum(gold * predicted), ops.sum(predicted), ops.sum(gold))


# ---------------------------------------------------------------------------------------------------
# AM-Softmax (Wang et al. 2018; kexue.fm/archives/5743)
# ---------------------------------------------------------------------------------------------------
def _check_scale_margin(scale, margin):
    if not scale > 0:
        raise ValueError('AM-Softmax: scale must be > 0, got %r' % (scale,))
    if margin < 0:
        raise ValueError('AM-Softmax: margin must be >= 0, got %r' % (margin,))


@register
def am_softmax_loss(y_true, y_pred, scale=30.0, margin=0.35):
    """AM-Softmax with one-hot labels: CE(y, s·(cos − m·y)) per sample.

    y_true one-hot (b, C); y_pred cosines (b, C) (e.g. `AMSoftmaxDense` output), clipped to
    [-1, 1]. Only the target logit gets the margin. Returns (b,).
    """
    _check_scale_margin(scale, margin)
    y_true = ops.cast(y_true, 'float32')
    _check_same_shape(y_true, y_pred, 'am_softmax_loss')
    cos = ops.clip(ops.cast(y_pred, 'float32'), -1.0, 1.0)
    logits = scale * (cos - margin * y_true)
    return ops.logsumexp(logits, axis=-1) - ops.sum(y_true * logits, axis=-1)


@register
def sparse_am_softmax_loss(y_true, y_pred, scale=30.0, margin=0.35):
    """AM-Softmax with int labels (b,) or (b, 1) and cosines (b, C). Returns (b,)."""
    _check_scale_margin(scale, margin)
    y_pred = ops.cast(y_pred, 'float32')
    num_classes = y_pred.shape[-1]
    y_true = ops.reshape(ops.cast(y_true, 'int32'), (-1,))
    if num_classes is not None:
        y_true = check_labels_in_range(y_true, num_classes, 'sparse_am_softmax_loss')
    return am_softmax_loss(ops.one_hot(y_true, ops.shape(y_pred)[-1], dtype='float32'), y_pred,
                           scale=scale, margin=margin)


@register
def in_batch_am_softmax_loss(y_true, y_pred, scale=30.0, margin=0.35):
    """AM-Softmax over in-batch prototypes, for training sentence encoders on similar pairs.

    y_pred: (b, d) sentence vectors, b even, arranged in similar pairs (rows 2i and 2i+1).
    y_true: (b,) or (b, 1) group ids; rows of the same group that are not each other's partner are
    left out of each other's softmax (they are neither target nor negative).
    For row r the logits are s·cos(r, ·) over the other rows, the partner r xor 1 is the target
    and gets the margin. Returns (b,).
    """
    _check_scale_margin(scale, margin)
    x = ops.cast(y_pred, 'float32')
    if len(x.shape) != 2:
        raise ValueError('in_batch_am_softmax_loss: y_pred must be (batch, dim) vectors, got %s' % (tuple(x.shape),))
    if x.shape[0] is not None and x.shape[0] % 2:
        raise ValueError('in_batch_am_softmax_loss: the batch must hold pairs (even size), got %d' % x.shape[0])
    x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
    cos = ops.clip(ops.matmul(x, ops.transpose(x)), -1.0, 1.0)
    b = ops.shape(x)[0]
    idx = ops.arange(b, dtype='int32')
    partner = idx + 1 - 2 * (idx % 2)
    target = ops.cast(ops.equal(idx[None, :], partner[:, None]), 'float32')
    groups = ops.reshape(ops.cast(y_true, 'int32'), (-1,))
    same_group = ops.equal(groups[:, None], groups[None, :])
    excluded = ops.logical_or(ops.equal(idx[:, None], idx[None, :]),
                              ops.logical_and(same_group, target < 1))
    logits = scale * (cos - margin * target)
    logits = ops.where(excluded, _NEG, logits)
    return ops.logsumexp(logits, axis=-1) - ops.sum(target * logits, axis=-1)


def spearman_correlation(x, y):
    """Spearman rank correlation of two 1-D sequences (numpy; ties get average ranks)."""
    x, y = np.asarray(x, dtype='float64'), np.asarray(y, dtype='float64')
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError('spearman_correlation: expected two 1-D sequences of equal length')

    def rank(a):
        order = np.argsort(a, kind='mergesort')
        ranks = np.empty(len(a))
        ranks[order] = np.arange(len(a), dtype='float64')
        for value in np.unique(a):  # average ranks within ties
            tied = a == value
            if tied.sum() > 1:
                ranks[tied] = ranks[tied].mean()
        return ranks

    rx, ry = rank(x), rank(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0
