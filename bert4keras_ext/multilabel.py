"""Label checks and bert4keras' multi-label cross-entropies: the pieces `backend`, `heads` and `losses` share.

bert4keras keeps `multilabel_categorical_crossentropy` and its sparse form in `backend`; they live here,
below `backend` in the import order (this module imports only Keras, numpy and `backend_functions`), so
`backend`, `heads` and `losses` can all re-export them without an import cycle. `check_labels_in_range`
is the one label check every head and loss uses.

- `multilabel_categorical_crossentropy(y_true, y_pred)`: "softmax + CE for multi-label"
  (kexue.fm/archives/7359), log(1 + Σ_{neg} e^{s}) + log(1 + Σ_{pos} e^{-s}); soft labels y ∈ [0, 1]
  weight the terms as log(1 + Σ (1 − y) e^{s}) + log(1 + Σ y e^{-s}) (kexue.fm/archives/9064).
- `sparse_multilabel_categorical_crossentropy(y_true, y_pred, mask_zero=False)`: the same loss with the
  positives given as indices.
"""
import keras
import numpy as np
from keras import ops

from bert4keras_ext.backend_functions import mask_value

__all__ = ['check_labels_in_range', 'multilabel_categorical_crossentropy',
           'sparse_multilabel_categorical_crossentropy']

register = keras.saving.register_keras_serializable(package='bert4keras_ext')

_NEG = mask_value('float32')  # -1e12


def _is_concrete(x):
    return isinstance(x, np.ndarray) or (hasattr(x, 'numpy') and not isinstance(x, keras.KerasTensor)
                                         and _executing_eagerly())


def _executing_eagerly():
    if keras.backend.backend() != 'tensorflow':
        return True
    import tensorflow as tf
    return tf.executing_eagerly()


def check_labels_in_range(labels, num_classes, name, valid=None):
    """Fail clearly when integer labels fall outside [0, num_classes).

    Eager/numpy values raise ValueError here; inside a traced TensorFlow function (any batch or
    sequence length unknown) an assertion op carries the same message and fails at run time (XLA-
    compiled steps drop assertions, where an out-of-range label then silently contributes nothing).
    `num_classes` is an int, or a scalar tensor in a graph (e.g. an unknown sequence length).
    `valid` (same shape, bool) limits the check to real positions.
    Returns `labels` (with the assertion attached in graph mode).
    """
    if not isinstance(num_classes, (int, np.integer)) and _is_concrete(num_classes):
        num_classes = int(num_classes)
    static = isinstance(num_classes, (int, np.integer))
    if static and _is_concrete(labels) and (valid is None or _is_concrete(valid)):
        values = np.asarray(labels)
        if valid is not None:
            values = values[np.asarray(valid).astype(bool)]
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)]
            raise ValueError('%s: labels must be in 0..%d, found %s' % (name, num_classes - 1,
                                                                      sorted(set(bad.tolist()))[:10]))
        return labels
    if keras.backend.backend() == 'tensorflow':
        import tensorflow as tf
        checked = labels if valid is None else ops.where(ops.cast(valid, 'bool'), labels, 0)
        if static:
            message = '%s: labels must be in 0..%d' % (name, num_classes - 1)
        else:
            message = ('%s: labels must be in [0, n), n (known at run time) the size of the axis they index'
                       % name)
        asserts = [tf.debugging.assert_greater_equal(checked, tf.cast(0, checked.dtype), message=message),
                   tf.debugging.assert_less(checked, tf.cast(num_classes, checked.dtype), message=message)]
        with tf.control_dependencies(asserts):
            return tf.identity(labels)
    return labels


def _logsumexp_with_zero(x):
    """log(1 + Σ exp(x)) over the last axis, stably (logsumexp of x with a 0 appended)."""
    zeros = ops.zeros_like(x[..., :1])
    return ops.logsumexp(ops.concatenate([x, zeros], axis=-1), axis=-1)


def _check_same_shape(y_true, y_pred, name):
    a, b = tuple(y_true.shape), tuple(y_pred.shape)
    if len(a) != len(b) or any(x is not None and y is not None and x != y for x, y in zip(a, b)):
        raise ValueError('%s: y_true shape %s does not match y_pred shape %s' % (name, a, b))


@register
def multilabel_categorical_crossentropy(y_true, y_pred):
    """Multi-label softmax cross-entropy (bert4keras), with soft-label support.

    y_true, y_pred: (..., C); y_true in [0, 1] (1 = target class, 0 = not; fractions are soft
    labels); y_pred real-valued scores (no sigmoid/softmax — predict the classes with score > 0).
    Returns (...,): log(1 + Σ_i (1 − y_i) e^{s_i}) + log(1 + Σ_i y_i e^{−s_i}).
    Scores at the -1e12 mask value drop out of the negative sum.
    """
    y_pred = ops.cast(y_pred, 'float32')
    y_true = ops.cast(y_true, 'float32')
    _check_same_shape(y_true, y_pred, 'multilabel_categorical_crossentropy')
    # log-weights; weight 0 → the finite stand-in for -inf
    y_neg = ops.where(y_true < 1, y_pred + ops.log(ops.maximum(1 - y_true, 1e-30)), _NEG)
    y_pos = ops.where(y_true > 0, -y_pred + ops.log(ops.maximum(y_true, 1e-30)), _NEG)
    return _logsumexp_with_zero(y_neg) + _logsumexp_with_zero(y_pos)


def _positive_mask(y_true, y_pred, mask_zero, name):
    """Bool (..., C) marking the classes listed in y_true (..., K); pads (index 0) ignored when
    mask_zero. Built with a scatter, so duplicate indices are harmless."""
    num_classes = y_pred.shape[-1]
    if num_classes is None:
        num_classes = ops.shape(y_pred)[-1]
    y_true = ops.cast(y_true, 'int32')
    if len(y_true.shape) != len(y_pred.shape):
        raise ValueError('%s: y_true must have the rank of y_pred with the class axis replaced by a list of '
                         'positive indices; got y_true %s, y_pred %s'
                         % (name, tuple(y_true.shape), tuple(y_pred.shape)))
    y_true = check_labels_in_range(y_true, num_classes, name)  # num_classes may be a tensor (graph)
    batch_shape = ops.shape(y_pred)[:-1]
    rows = 1
    for d in batch_shape:
        rows = rows * d
    k = ops.shape(y_true)[-1]
    flat = ops.reshape(y_true, (-1,))
    row_ids = ops.repeat(ops.arange(rows, dtype='int32'), k)
    values = ops.ones_like(flat, dtype='float32')
    if mask_zero:
        values = ops.cast(ops.not_equal(flat, 0), 'float32')
    counts = ops.scatter(ops.stack([row_ids, flat], axis=1), values, (rows, num_classes))
    return ops.reshape(counts > 0, ops.shape(y_pred))


@register
def sparse_multilabel_categorical_crossentropy(y_true, y_pred, mask_zero=False):
    """`multilabel_categorical_crossentropy` with positives given as indices (bert4keras).

    Args:
        y_true: int (..., K) indices of the positive classes of each row.
        y_pred: (..., C) scores.
        mask_zero: index 0 is padding in y_true (rows with fewer than K positives are padded with
            0); class 0 is then excluded from both the positive and the negative sums, as in
            bert4keras (for GlobalPointer, class 0 is the [CLS]–[CLS] cell).
    Returns (...,).

    Departure from bert4keras, same value: bert4keras gets the negative term as
    a + log(1 − e^{b−a}) (a over all classes, b over positives), which loses precision in float32 when
    the positives dominate and breaks with duplicate indices. Here the positives are scattered into
    a (..., C) mask and both terms are plain logsumexps — exact, and duplicates count once. Memory
    is that of y_pred, which the loss reads anyway.
    """
    y_pred = ops.cast(y_pred, 'float32')
    positive = _positive_mask(y_true, y_pred, mask_zero, 'sparse_multilabel_categorical_crossentropy')
    negative = ops.logical_not(positive)
    if mask_zero:
        first = ops.arange(ops.shape(y_pred)[-1]) == 0
        negative = ops.logical_and(negative, ops.logical_not(first))
    neg = _logsumexp_with_zero(ops.where(negative, y_pred, _NEG))
    pos = _logsumexp_with_zero(ops.where(positive, -y_pred, _NEG))
    return neg + pos
