"""The sequence and span heads train the way bert4keras scripts train them: eagerly, traced with
unknown batch AND sequence length (bert4keras generators pad each batch to its own longest text),
under XLA (`jit_compile=True`, Keras' default on GPUs), and in `model.fit` on a `from_generator`
dataset of varying lengths.

References are written here: the CRF negative log-likelihood and its gradient by brute-force
enumeration of every tag path, the MEMM teacher-forced formula in plain numpy loops, and the
GlobalPointer multi-label cross-entropy / F1 over span cells in numpy."""
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext import losses
from bert4keras_ext.backend import keras, ops
from bert4keras_ext.heads import (
    ConditionalRandomField, GlobalPointer, MaximumEntropyMarkovModel, check_labels_in_range,
)
from bert4keras_ext.viterbi import viterbi_decode

NUM_LABELS = 3
MODES = ['eager', 'graph', 'xla']


def run(fn, signature, mode):
    """fn itself, or fn traced with `signature` (None dims: unknown batch and length), or XLA."""
    if mode == 'eager':
        return fn
    return tf.function(fn, input_signature=signature, jit_compile=(mode == 'xla'))


def batches_for(mode, batches):
    """Both batches (different b and n) through the same function; under XLA the first only, as
    each new shape is a new compilation (the traced function is the graph one, unknown dims)."""
    return batches[:1] if mode == 'xla' else batches


def np_logsumexp(values, axis=None):
    values = np.asarray(values, dtype='float64')
    top = np.max(values, axis=axis, keepdims=True)
    out = top + np.log(np.exp(values - top).sum(axis=axis, keepdims=True))
    return out.item() if axis is None else np.squeeze(out, axis=axis)


def sequence_batches():
    """Two batches of different batch size and length (<= 4), with padding and an empty row."""
    rng = np.random.RandomState(0)
    batches = []
    for lengths in ([4, 3, 1, 0, 2], [2, 1, 2]):
        b, n = len(lengths), max(lengths)
        batches.append(dict(
            emissions=rng.randn(b, n, NUM_LABELS).astype('float32'),
            labels=rng.randint(0, NUM_LABELS, size=(b, n)).astype('int32'),
            lengths=np.array(lengths),
            mask=np.arange(n)[None] < np.array(lengths)[:, None],
        ))
    return batches


# ---------------------------------------------------------------------------------------------------
# CRF: brute force over every tag path
# ---------------------------------------------------------------------------------------------------
def crf_reference(emissions, trans, labels, length):
    """(nll, d nll / d emissions (n, C)) of one sequence by enumerating all C**length paths."""
    emissions = emissions.astype('float64')
    grad = np.zeros_like(emissions)
    if length == 0:
        return 0.0, grad
    paths = list(itertools.product(range(NUM_LABELS), repeat=length))

    def score(path):
        return sum(emissions[t, y] for t, y in enumerate(path)) + \
            sum(trans[path[t - 1], path[t]] for t in range(1, length))

    scores = np.array([score(p) for p in paths])
    log_z = np_logsumexp(scores)
    probs = np.exp(scores - log_z)
    for p, prob in zip(paths, probs):  # d log Z / d e[t, c] = P(y_t = c)
        for t, y in enumerate(p):
            grad[t, y] += prob
    for t in range(length):
        grad[t, labels[t]] -= 1.0
    return log_z - score(list(labels[:length])), grad


def make_crf(trans):
    crf = ConditionalRandomField()
    crf.build((None, None, NUM_LABELS))
    crf._trans.assign(trans)
    return crf


@pytest.mark.parametrize('mode', MODES)
def test_crf_losses_and_gradient_equal_enumeration(mode):
    trans = np.random.RandomState(1).randn(NUM_LABELS, NUM_LABELS).astype('float32')
    crf = make_crf(trans)

    def compute(emissions, mask, labels, onehot):
        with tf.GradientTape() as tape:
            tape.watch(emissions)
            y_pred = crf([emissions, mask])
            sparse = crf.sparse_loss(labels, y_pred)
            total = ops.sum(sparse)
        dense = crf.dense_loss(onehot, y_pred)
        return (sparse, dense, tape.gradient(total, emissions),
                crf.sparse_accuracy(labels, y_pred), crf.dense_accuracy(onehot, y_pred))

    fn = run(compute, [tf.TensorSpec((None, None, NUM_LABELS)), tf.TensorSpec((None, None), tf.bool),
                       tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None, NUM_LABELS))], mode)
    for batch in batches_for(mode, sequence_batches()):
        e, labels, lengths, mask = batch['emissions'], batch['labels'], batch['lengths'], batch['mask']
        sparse, dense, grad, sparse_acc, dense_acc = [ops.convert_to_numpy(v) for v in fn(
            tf.constant(e), tf.constant(mask), tf.constant(labels),
            tf.constant(np.eye(NUM_LABELS, dtype='float32')[labels]))]
        reference = [crf_reference(e[i], trans, labels[i], lengths[i]) for i in range(len(e))]
        np.testing.assert_allclose(sparse, [r[0] for r in reference], atol=1e-4)
        np.testing.assert_allclose(dense, [r[0] for r in reference], atol=1e-4)
        np.testing.assert_allclose(grad, np.stack([r[1] for r in reference]), atol=1e-4)
        correct = (e.argmax(-1) == labels)[mask]
        np.testing.assert_allclose([sparse_acc, dense_acc], [correct.mean()] * 2, atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# MEMM: the teacher-forced formula in plain loops
# ---------------------------------------------------------------------------------------------------
def memm_reference(emissions, trans, labels, lengths, bidirectional):
    """(loss, accuracy): token-mean cross-entropy of z_0 = e_0, z_t = (e_t + A[y_{t-1}]) / 2
    (backward: z_t = (e_t + A[:, y_{t+1}]) / 2, z_{L-1} = e_{L-1}), averaged over directions."""
    nll = np.zeros(2)
    hits = np.zeros(2)
    count = 0
    for e, y, length in zip(emissions.astype('float64'), labels, lengths):
        for t in range(length):
            forward = e[t] if t == 0 else (e[t] + trans[y[t - 1]]) / 2
            backward = e[t] if t == length - 1 else (e[t] + trans[:, y[t + 1]]) / 2
            for d, z in enumerate((forward, backward)):
                nll[d] += np_logsumexp(z) - z[y[t]]
                hits[d] += z.argmax() == y[t]
        count += length
    nll, hits = nll / count, hits / count
    if bidirectional:
        return nll.mean(), hits.mean()
    return nll[0], hits[0]


@pytest.mark.parametrize('mode,bidirectional,hidden_dim', [
    ('eager', True, None), ('graph', True, None), ('xla', True, None), ('graph', False, 2)])
def test_memm_loss_and_accuracy_equal_reference(mode, bidirectional, hidden_dim):
    memm = MaximumEntropyMarkovModel(bidirectional=bidirectional, hidden_dim=hidden_dim)
    memm.build((None, None, NUM_LABELS))
    trans = ops.convert_to_numpy(memm.trans).astype('float64')

    def compute(emissions, mask, labels, onehot):
        y_pred = memm([emissions, mask])
        return (memm.sparse_loss(labels, y_pred), memm.dense_loss(onehot, y_pred),
                memm.sparse_accuracy(labels, y_pred), memm.dense_accuracy(onehot, y_pred))

    fn = run(compute, [tf.TensorSpec((None, None, NUM_LABELS)), tf.TensorSpec((None, None), tf.bool),
                       tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None, NUM_LABELS))], mode)
    for batch in batches_for(mode, sequence_batches()):
        e, labels, lengths, mask = batch['emissions'], batch['labels'], batch['lengths'], batch['mask']
        sparse, dense, sparse_acc, dense_acc = [float(ops.convert_to_numpy(v)) for v in fn(
            tf.constant(e), tf.constant(mask), tf.constant(labels),
            tf.constant(np.eye(NUM_LABELS, dtype='float32')[labels]))]
        loss, accuracy = memm_reference(e, trans, labels, lengths, bidirectional)
        np.testing.assert_allclose([sparse, dense], [loss, loss], rtol=1e-5)
        np.testing.assert_allclose([sparse_acc, dense_acc], [accuracy, accuracy], atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# GlobalPointer losses and F1 over span cells
# ---------------------------------------------------------------------------------------------------
HEADS = 2


def span_batches():
    """Two batches (different b, n) of inputs, masks and gold spans (lists per row and head)."""
    rng = np.random.RandomState(3)
    batches = []
    for lengths in ([5, 3, 4], [3, 2]):
        b, n = len(lengths), max(lengths)
        spans = [[sorted({tuple(sorted(rng.randint(1, length, size=2))) for _ in range(rng.randint(0, 3))})
                  for _ in range(HEADS)] for length in lengths]
        k = max(1, max(len(s) for row in spans for s in row))
        sparse = np.zeros((b, HEADS, k, 2), dtype='int32')  # padded with (0, 0)
        dense = np.zeros((b, HEADS, n, n), dtype='float32')
        for i, row in enumerate(spans):
            for h, head_spans in enumerate(row):
                for j, (start, end) in enumerate(head_spans):
                    sparse[i, h, j] = start, end
                    dense[i, h, start, end] = 1
        batches.append(dict(x=rng.randn(b, n, 6).astype('float32'), spans=spans, sparse=sparse, dense=dense,
                            mask=np.arange(n)[None] < np.array(lengths)[:, None]))
    return batches


def np_multilabel_ce(scores, positive, excluded=()):
    """log(1 + Σ_{neg} e^s) + log(1 + Σ_{pos} e^{-s}) over flat cells; `excluded` cells in neither."""
    neg = [s for c, s in enumerate(scores) if c not in positive and c not in excluded]
    pos = [-scores[c] for c in positive]
    return np_logsumexp([0.0] + neg) + np_logsumexp([0.0] + pos)


def gp_references(y_pred, spans):
    b, heads, n, _ = y_pred.shape
    flat = y_pred.reshape(b, heads, n * n).astype('float64')
    sparse_loss, dense_loss = np.zeros(b), np.zeros(b)
    tp = predicted = gold = 0
    for i in range(b):
        for h in range(heads):
            positive = {s * n + e for s, e in spans[i][h]}
            sparse_loss[i] += np_multilabel_ce(flat[i, h], positive, excluded={0})  # cell 0 = padding (0, 0)
            dense_loss[i] += np_multilabel_ce(flat[i, h], positive) / heads
            hits = set(np.nonzero(flat[i, h] > 0)[0].tolist())
            tp += len(hits & positive)
            predicted += len(hits)
            gold += len(positive)
    f1 = 2 * tp / (predicted + gold) if predicted + gold else 1.0
    return sparse_loss, dense_loss, f1


@pytest.mark.parametrize('mode', MODES)
def test_global_pointer_losses_and_f1_equal_reference(mode):
    gp = GlobalPointer(HEADS, 4)
    gp.build((None, None, 6))

    def compute(x, mask, sparse, dense):
        y_pred = gp([x, mask])
        return (y_pred, losses.sparse_global_pointer_crossentropy(sparse, y_pred),
                losses.global_pointer_crossentropy(dense, y_pred),
                losses.sparse_global_pointer_f1_score(sparse, y_pred), losses.global_pointer_f1_score(dense, y_pred))

    fn = run(compute, [tf.TensorSpec((None, None, 6)), tf.TensorSpec((None, None), tf.bool),
                       tf.TensorSpec((None, None, None, 2), tf.int32), tf.TensorSpec((None, None, None, None))], mode)
    for batch in batches_for(mode, span_batches()):
        y_pred, sparse, dense, sparse_f1, dense_f1 = [ops.convert_to_numpy(v) for v in fn(
            tf.constant(batch['x']), tf.constant(batch['mask']), tf.constant(batch['sparse']),
            tf.constant(batch['dense']))]
        assert y_pred.shape == batch['dense'].shape
        ref_sparse, ref_dense, ref_f1 = gp_references(y_pred, batch['spans'])
        np.testing.assert_allclose(sparse, ref_sparse, rtol=1e-5)
        np.testing.assert_allclose(dense, ref_dense, rtol=1e-5)
        np.testing.assert_allclose([sparse_f1, dense_f1], [ref_f1, ref_f1], atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Label checks and clear errors
# ---------------------------------------------------------------------------------------------------
def test_label_checks_eager_and_in_graphs_with_unknown_shapes():
    crf = make_crf(np.zeros((NUM_LABELS, NUM_LABELS), 'float32'))
    e = np.zeros((2, 3, NUM_LABELS), 'float32')
    bad = np.array([[0, 1, 5], [0, 0, 0]], 'int32')
    with pytest.raises(ValueError, match=r'labels must be in 0\.\.2, found \[5\]'):
        crf.sparse_loss(bad, e)
    with pytest.raises(ValueError, match=r'labels must be in 0\.\.3, found \[-1\]'):
        check_labels_in_range(np.array([0, -1, 3]), 4, 'labels')
    signature = [tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None, NUM_LABELS))]
    loss = run(crf.sparse_loss, signature, 'graph')
    with pytest.raises(tf.errors.InvalidArgumentError, match=r'labels must be in 0\.\.2'):
        loss(tf.constant(bad), tf.constant(e))
    # labels on padded steps are not checked (the layer's -1e12 fill marks them)
    padded = np.where((np.arange(3)[None] < np.array([[2], [3]]))[:, :, None], e, -1e12).astype('float32')
    assert np.isfinite(ops.convert_to_numpy(loss(tf.constant(bad), tf.constant(padded)))).all()
    # the span positions of the sparse GlobalPointer loss, against a length known only at run time
    gp_loss = run(losses.sparse_global_pointer_crossentropy,
                  [tf.TensorSpec((None, None, None, 2), tf.int32), tf.TensorSpec((None, HEADS, None, None))], 'graph')
    spans = np.array([[[[1, 4]], [[0, 0]]]], 'int32')
    with pytest.raises(tf.errors.InvalidArgumentError, match='span positions'):
        gp_loss(tf.constant(spans), tf.zeros((1, HEADS, 4, 4)))
    assert np.isfinite(ops.convert_to_numpy(gp_loss(tf.constant(spans), tf.zeros((1, HEADS, 5, 5))))).all()


def test_sparse_global_pointer_heads_mismatch_is_explained():
    y_pred = np.zeros((2, HEADS, 4, 4), 'float32')
    spans = np.zeros((2, 3, 1, 2), 'int32')
    for fn in (losses.sparse_global_pointer_crossentropy, losses.sparse_global_pointer_f1_score):
        with pytest.raises(ValueError, match='heads.*expected 2, found 3'):
            fn(spans, y_pred)
    traced = run(losses.sparse_global_pointer_crossentropy,
                 [tf.TensorSpec((None, None, None, 2), tf.int32), tf.TensorSpec((None, None, None, None))], 'graph')
    with pytest.raises(tf.errors.InvalidArgumentError, match='differ in heads'):
        traced(tf.constant(spans), tf.constant(y_pred))


def test_decoders_reject_2d_input_with_the_expected_shape():
    crf = make_crf(np.zeros((NUM_LABELS, NUM_LABELS), 'float32'))
    memm = MaximumEntropyMarkovModel()
    memm.build((None, None, NUM_LABELS))
    nodes = np.zeros((4, NUM_LABELS), 'float32')
    for decode in (crf.decode, memm.decode):
        for value in (nodes, nodes.tolist(), tf.constant(nodes)):
            with pytest.raises(ValueError, match=r'\(b, n, num_labels\) = \(batch, steps, 3\).*shape \(4, 3\)'):
                decode(value)
        with pytest.raises(ValueError, match='got 4 labels on the last axis'):
            decode(np.zeros((1, 2, 4), 'float32'))
        with pytest.raises(ValueError, match=r'mask must be \(b, n\)'):
            decode(nodes[None], mask=np.ones(4))
    with pytest.raises(ValueError, match=r'\(b, n, num_labels\).*shape \(4, 3\)'):
        viterbi_decode(nodes, np.zeros((NUM_LABELS, NUM_LABELS)))
    # a one-row batch decodes as before (all-zero scores: every path ties, the first wins)
    assert crf.decode(nodes[None]).tolist() == [[0, 0, 0, 0]]


# ---------------------------------------------------------------------------------------------------
# model.fit on a bert4keras-style generator: batches padded to their own longest row
# ---------------------------------------------------------------------------------------------------
VOCAB = 20


def token_batches(seed, count, batch_size=4):
    """Right-padded token batches whose length changes from batch to batch (0 = padding)."""
    rng = np.random.RandomState(seed)
    for _ in range(count):
        n = int(rng.choice([3, 5]))
        lengths = rng.randint(2, n + 1, size=batch_size)
        lengths[0] = n
        tokens = rng.randint(1, VOCAB, size=(batch_size, n)) * (np.arange(n)[None] < lengths[:, None])
        yield tokens.astype('int32'), lengths


def sequence_data():
    for tokens, _ in token_batches(0, 1000):
        yield tokens, (tokens % NUM_LABELS).astype('int32')  # the tag is a function of the token


def span_data(sparse):
    """Single-token spans (i, i) of the tokens with id >= 10, of head id % 2."""
    for tokens, lengths in token_batches(1, 1000):
        tokens[:, 0] = 1  # [CLS]-like first token: the (0, 0) cell is the sparse labels' padding
        b, n = tokens.shape
        # K = n for sparse labels: one label shape per length (each shape is an XLA compilation)
        y = np.zeros((b, HEADS, n, 2), 'int32') if sparse else np.zeros((b, HEADS, n, n), 'float32')
        for r in range(b):
            for h in range(HEADS):
                starts = [i for i in range(1, lengths[r]) if tokens[r, i] >= 10 and tokens[r, i] % 2 == h]
                for j, i in enumerate(starts):
                    if sparse:
                        y[r, h, j] = i, i
                    else:
                        y[r, h, i, i] = 1
        yield tokens, y


@pytest.mark.parametrize('jit_compile', [False, True])
@pytest.mark.parametrize('head', ['crf', 'memm', 'gp_sparse', 'gp_dense'])
def test_fit_on_generator_of_varying_lengths(head, jit_compile):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype='int32')
    h = keras.layers.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    if head in ('crf', 'memm'):
        layer = ConditionalRandomField() if head == 'crf' else MaximumEntropyMarkovModel()
        output = layer(keras.layers.Dense(NUM_LABELS)(h))
        loss, data, label_spec = layer.sparse_loss, sequence_data, tf.TensorSpec((None, None), tf.int32)
    else:
        output = GlobalPointer(HEADS, 8)(h)
        sparse = head == 'gp_sparse'
        loss = losses.sparse_global_pointer_crossentropy if sparse else losses.global_pointer_crossentropy
        data = lambda: span_data(sparse)  # noqa: E731
        label_spec = tf.TensorSpec((None, HEADS, None, 2), tf.int32) if sparse else \
            tf.TensorSpec((None, HEADS, None, None))
    model = keras.Model(tokens, output)
    # no metrics: they are checked under XLA above, and each one lengthens every XLA compilation
    model.compile(keras.optimizers.Adam(0.05), loss=loss, jit_compile=jit_compile)
    dataset = tf.data.Dataset.from_generator(
        data, output_signature=(tf.TensorSpec((None, None), tf.int32), label_spec))
    history = model.fit(dataset, steps_per_epoch=6, epochs=2, verbose=0).history['loss']
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.6 * history[0], history
