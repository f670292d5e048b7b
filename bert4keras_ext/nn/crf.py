"""Sequence-labelling heads as loss layers: `ConditionalRandomField` (linear-chain CRF, log Z by the forward
algorithm) and `MaximumEntropyMarkovModel` ((bi-)MEMM), with batched Viterbi decoding."""
import numpy as np

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.multilabel import _executing_eagerly
from bert4keras_ext.nn.common import register
from bert4keras_ext.nn.sequence_head import (
    _FILL_THRESHOLD, _SequenceHead, _labels_like, _sequence_mask_from_scores,
)
from bert4keras_ext.viterbi import viterbi_decode

__all__ = ['ConditionalRandomField', 'MaximumEntropyMarkovModel']


def _reverse_within_length(x, lengths):
    """Reverse each row's first `lengths[b]` steps along axis 1, leaving padding in place
    (tf.reverse_sequence on keras.ops). x (b, n, ...) → same shape."""
    n = ops.shape(x)[1]
    steps = ops.arange(n, dtype='int32')[None, :]
    lengths = ops.cast(lengths, 'int32')[:, None]
    index = ops.where(steps < lengths, lengths - 1 - steps, steps)  # (b, n)
    if len(x.shape) == 3:
        index = ops.broadcast_to(index[:, :, None], ops.shape(x))
    return ops.take_along_axis(x, index, axis=1)


def _crf_forward(emissions, mask, trans):
    """log Z (b,) of a linear-chain CRF by the forward recursion in log space (keras.ops).

    emissions (b, n, C) float32 (padded steps may hold anything finite), mask (b, n) (right-padded
    real steps), trans (C, C). Masked steps carry α unchanged, so a row's log Z is over its own
    length. The time loop is a `while_loop` whose carry is (step, α (b, C)) — fixed structure and
    shapes — reading step t of the time-major emissions by index, with `maximum_iterations` = n − 1.
    So the sequence length may be unknown when traced (bert4keras generators pad each batch to its
    own longest text) and XLA compiles it (the gradient's accumulators are sized by that bound).
    `ops.scan` could do neither: Keras' TensorFlow scan fails on an unknown length, and it unstacks
    into TensorArrays that XLA cannot size.
    """
    trans = trans[None]  # (1, from, to)
    e = ops.transpose(emissions, (1, 0, 2))  # time-major (n, b, C)
    m = ops.transpose(ops.cast(mask, 'bool'))[:, :, None]  # (n, b, 1)
    n = ops.shape(e)[0]
    alpha = ops.sum(e[:1], axis=0)  # α_0 = e_0 (zeros when n = 0)

    def step(t, alpha):
        new = ops.logsumexp(alpha[:, :, None] + trans, axis=1) + e[t]
        return t + 1, ops.where(m[t], new, alpha)

    _, alpha = ops.while_loop(lambda t, alpha: t < n, step, (1, alpha),
                              maximum_iterations=ops.maximum(n - 1, 0))
    return ops.logsumexp(alpha, axis=-1)


_traced_crf_forward = []


def _crf_log_partition(emissions, mask, trans):
    """`_crf_forward`; called eagerly on TensorFlow it runs as one traced function (a graph per
    label count, any batch/length) instead of dispatching the loop's ops one by one — about 20x
    faster for (b 32, n 128, C 9) with its gradient — and an enclosing GradientTape differentiates
    it as one op. In graphs (Keras' train step) it is inlined as it is."""
    if keras.backend.backend() != 'tensorflow' or not _executing_eagerly():
        return _crf_forward(emissions, mask, trans)
    if not _traced_crf_forward:
        import tensorflow as tf
        _traced_crf_forward.append(tf.function(_crf_forward, reduce_retracing=True))
    return _traced_crf_forward[0](ops.cast(emissions, 'float32'), ops.cast(mask, 'float32'),
                                  ops.cast(trans, 'float32'))


@register
class ConditionalRandomField(_SequenceHead):
    """Linear-chain CRF as a loss layer (bert4keras `ConditionalRandomField`).

    Input: emission scores (b, n, C) with a Keras mask, or `[emissions, mask]`. Output: the
    emissions as float32 with padded steps set to -1e12 (no Keras mask downstream). Compile with
    `loss=crf.sparse_loss` (labels (b, n) int) or `crf.dense_loss` (one-hot (b, n, C)) and
    `metrics=[crf.sparse_accuracy]`; decode with `crf.decode(model.predict(x))` (batched Viterbi) or
    bert4keras-style `ViterbiDecoder(K.eval(crf.trans))`.

    Path score = Σ_t e_t[y_t] + Σ_t A[y_t, y_{t+1}] over real steps; no start/end transitions (as in
    bert4keras). Loss per sequence = log Z − score(y), log Z by the forward algorithm in log space
    (vectorised over the batch, a `while_loop` over time, float32). Empty sequences have loss 0.
    Works eagerly, in graphs with unknown batch and sequence length, and under XLA (`jit_compile`).

    `lr_multiplier` m: the variable stores A/m and the layer uses m·(stored), so gradient steps on
    A are m× larger with Adam (m² with SGD). bert4keras' NER example uses 1000 with BERT at lr 2e-5.

    Saving: `model.save('m.keras')` works; the losses are bound methods of this layer, which Keras
    cannot rebuild from a file, so reload with `keras.saving.load_model(path, compile=False)` and
    compile again with the loaded layer's `sparse_loss` (as bert4keras needed `custom_objects`).
    """

    def build(self, input_shape):
        self.num_labels = self._num_labels(input_shape)
        self._trans = self._add_scaled_weight('trans', (self.num_labels, self.num_labels))

    @property
    def trans(self):
        """The effective (C, C) transition matrix A (a float32 tensor)."""
        return self._scaled(self._trans)

    def target_score(self, y_true, y_pred):
        """Score of the labelled paths. y_true one-hot (b, n, C) already zero on padding."""
        point = ops.einsum('bnc,bnc->b', y_true, y_pred)
        pair = ops.einsum('bni,ij,bnj->b', y_true[:, :-1], self.trans, y_true[:, 1:])
        return point + pair

    def log_norm(self, y_pred, mask):
        """log Z (b,) by the forward recursion; y_pred (b, n, C) with padding zeroed, mask (b, n)."""
        return _crf_log_partition(y_pred, mask, self.trans)

    def dense_loss(self, y_true, y_pred):
        """Negative log-likelihood per sequence (b,); y_true one-hot (b, n, C)."""
        self._check_scores(y_pred)
        y_pred, mask = self._prepare(y_pred)
        y_true = ops.reshape(ops.cast(y_true, 'float32'), ops.shape(y_pred)) * mask[:, :, None]
        loss = self.log_norm(y_pred, mask) - self.target_score(y_true, y_pred)
        return ops.where(ops.sum(mask, axis=1) > 0, loss, 0.0)

    def sparse_loss(self, y_true, y_pred):
        """Negative log-likelihood per sequence (b,); y_true int labels (b, n) (or (b, n, 1))."""
        self._check_scores(y_pred)
        mask = _sequence_mask_from_scores(ops.cast(y_pred, 'float32'))
        y_true = self._sparse_labels(y_true, y_pred, mask)
        return self.dense_loss(ops.one_hot(y_true, self.num_labels, dtype='float32'), y_pred)

    def dense_accuracy(self, y_true, y_pred):
        """Per-token accuracy of argmax(emissions) over real steps (not Viterbi); y_true one-hot."""
        return self.sparse_accuracy(ops.argmax(y_true, axis=-1), y_pred)

    def sparse_accuracy(self, y_true, y_pred):
        """Per-token accuracy of argmax(emissions) over real steps (not Viterbi); y_true int."""
        y_pred = ops.cast(y_pred, 'float32')
        mask = _sequence_mask_from_scores(y_pred)
        y_true = _labels_like(y_true, y_pred)
        correct = ops.cast(ops.equal(y_true, ops.cast(ops.argmax(y_pred, axis=-1), 'int32')), 'float32')
        return ops.sum(correct * mask) / ops.maximum(ops.sum(mask), 1.0)

    def decode(self, y_pred, mask=None, starts=None, ends=None):
        """Batched Viterbi on this layer's output (numpy or tensors): (b, n, C) → int32 (b, n).

        The mask is read from the -1e12 padding fill unless given. Padded positions get tag 0.
        """
        y_pred = self._check_decode_input(y_pred, mask)
        if mask is None:
            if isinstance(y_pred, np.ndarray) or isinstance(y_pred, (list, tuple)):
                y_pred = np.asarray(y_pred, dtype='float32')
                mask = np.all(y_pred > _FILL_THRESHOLD, axis=-1)
            else:
                mask = ops.cast(_sequence_mask_from_scores(y_pred), 'bool')
        trans = self.trans
        if isinstance(y_pred, np.ndarray):
            trans = ops.convert_to_numpy(trans)
            y_pred = np.where(np.asarray(mask, dtype=bool)[:, :, None], y_pred, 0.0).astype('float32')
        return viterbi_decode(y_pred, trans, mask=mask, starts=starts, ends=ends)


@register
class MaximumEntropyMarkovModel(_SequenceHead):
    """(Bidirectional) maximum-entropy Markov model as a loss layer (bert4keras, kexue.fm/archives/7213).

    Same interface as `ConditionalRandomField` (input (b, n, C) + mask or `[x, mask]`; output the
    float32 scores with padding at -1e12; `sparse_loss`, `dense_loss`, `sparse_accuracy`,
    `dense_accuracy`; `trans`).

    Local normalisation with teacher forcing, exactly as bert4keras: logits z_0 = e_0 and
    z_t = (e_t + A[y_{t-1}]) / 2 (the /2 is bert4keras'), cross-entropy averaged over the real
    tokens of the batch. `bidirectional=True` (the default, as bert4keras) adds the same loss on
    each sequence reversed within its length with Aᵀ and averages the two.

    `hidden_dim=r` factorises A = L·Rᵀ with L, R of shape (C, r) (weights `l_trans`, `r_trans`);
    the backward direction swaps L and R. `lr_multiplier` scales all transition weights.

    `decode` finds the exact maximiser of the model's own (forward + backward) log-likelihood;
    bert4keras decodes with `ViterbiDecoder(trans)` on the emissions, which remains available.
    """

    def __init__(self, lr_multiplier=1, hidden_dim=None, bidirectional=True, **kwargs):
        super().__init__(lr_multiplier=lr_multiplier, **kwargs)
        if hidden_dim is not None and (int(hidden_dim) != hidden_dim or hidden_dim < 1):
            raise ValueError('MaximumEntropyMarkovModel: hidden_dim must be a positive int or None, got %r'
                             % (hidden_dim,))
        self.hidden_dim = None if hidden_dim is None else int(hidden_dim)
        self.bidirectional = bool(bidirectional)

    def build(self, input_shape):
        self.num_labels = self._num_labels(input_shape)
        if self.hidden_dim is None:
            self._trans = self._add_scaled_weight('trans', (self.num_labels, self.num_labels))
        else:
            self._l_trans = self._add_scaled_weight('l_trans', (self.num_labels, self.hidden_dim))
            self._r_trans = self._add_scaled_weight('r_trans', (self.num_labels, self.hidden_dim))

    @property
    def l_trans(self):
        return self._scaled(self._l_trans)

    @property
    def r_trans(self):
        return self._scaled(self._r_trans)

    @property
    def trans(self):
        """The effective (C, C) transition matrix A (L·Rᵀ when low-rank), float32."""
        if self.hidden_dim is None:
            return self._scaled(self._trans)
        return ops.matmul(self.l_trans, ops.transpose(self.r_trans))

    def _local_logits(self, y_true, y_pred, mask, go_backwards):
        """Teacher-forced logits (b, n, C) of one direction, and the labels in that direction."""
        if go_backwards:
            lengths = ops.sum(ops.cast(mask, 'int32'), axis=1)
            y_true = _reverse_within_length(y_true, lengths)
            y_pred = _reverse_within_length(y_pred, lengths)
        if self.hidden_dim is None:
            trans = ops.transpose(self.trans) if go_backwards else self.trans
            history = ops.take(trans, y_true, axis=0)
        else:
            left, right = (self.r_trans, self.l_trans) if go_backwards else (self.l_trans, self.r_trans)
            history = ops.einsum('bnd,kd->bnk', ops.take(left, y_true, axis=0), right)
        history = ops.concatenate([y_pred[:, :1], history[:, :-1]], axis=1)
        return (y_pred + history) / 2, y_true

    def basic_loss(self, y_true, y_pred, go_backwards=False):
        """Token-averaged cross-entropy of one direction (scalar); y_true int (b, n)."""
        self._check_scores(y_pred)
        y_pred, mask = self._prepare(y_pred)
        y_true = self._sparse_labels(y_true, y_pred, mask)
        logits, y_true = self._local_logits(y_true, y_pred, mask, go_backwards)
        picked = ops.take_along_axis(logits, y_true[:, :, None], axis=-1)[:, :, 0]
        loss = ops.logsumexp(logits, axis=-1) - picked
        return ops.sum(loss * mask) / ops.maximum(ops.sum(mask), 1.0)

    def sparse_loss(self, y_true, y_pred):
        """Loss (scalar) with int labels (b, n): forward, or mean of forward and backward."""
        loss = self.basic_loss(y_true, y_pred, False)
        if self.bidirectional:
            loss = (loss + self.basic_loss(y_true, y_pred, True)) / 2
        return loss

    def dense_loss(self, y_true, y_pred):
        """As `sparse_loss` with one-hot labels (b, n, C)."""
        return self.sparse_loss(ops.argmax(y_true, axis=-1), y_pred)

    def basic_accuracy(self, y_true, y_pred, go_backwards=False):
        """Teacher-forced per-token accuracy of one direction."""
        y_pred, mask = self._prepare(y_pred)
        y_true = ops.where(ops.cast(mask, 'bool'), _labels_like(y_true, y_pred), 0)
        logits, y_true = self._local_logits(y_true, y_pred, mask, go_backwards)
        correct = ops.cast(ops.equal(y_true, ops.cast(ops.argmax(logits, axis=-1), 'int32')), 'float32')
        return ops.sum(correct * mask) / ops.maximum(ops.sum(mask), 1.0)

    def sparse_accuracy(self, y_true, y_pred):
        accuracy = self.basic_accuracy(y_true, y_pred, False)
        if self.bidirectional:
            accuracy = (accuracy + self.basic_accuracy(y_true, y_pred, True)) / 2
        return accuracy

    def dense_accuracy(self, y_true, y_pred):
        return self.sparse_accuracy(ops.argmax(y_true, axis=-1), y_pred)

    def decode(self, y_pred, mask=None):
        """Exact most likely paths under this model (numpy): (b, n, C) → int32 (b, n).

        Maximises Σ_t log P→(y_t | y_{t-1}) (+ Σ_t log P←(y_t | y_{t+1}) when bidirectional): both
        are sums of pairwise terms, so Viterbi with position-dependent transitions is exact.
        """
        y_pred = np.asarray(self._check_decode_input(y_pred, mask), dtype='float64')
        if mask is None:
            mask = np.all(y_pred > _FILL_THRESHOLD, axis=-1)
        mask = np.asarray(mask).astype(bool)
        e = np.where(mask[:, :, None], y_pred, 0.0)
        trans = np.asarray(ops.convert_to_numpy(self.trans), dtype='float64')
        b, n, num_labels = e.shape
        lengths = mask.sum(1)

        def log_softmax(x, axis):
            x = x - x.max(axis=axis, keepdims=True)
            return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))

        unary = np.zeros_like(e)
        unary[:, 0] = log_softmax(e[:, 0], -1)
        # forward: log P(y_t = j | y_{t-1} = i) = log_softmax_j((e_t[j] + A[i, j]) / 2)
        pair = np.zeros((b, n, num_labels, num_labels))
        pair[:, 1:] = log_softmax((e[:, 1:, None, :] + trans[None, None]) / 2, -1)
        if self.bidirectional:
            rows = np.nonzero(lengths)[0]
            unary[rows, lengths[rows] - 1] += log_softmax(e[rows, lengths[rows] - 1], -1)
            # backward: log P(y_{t-1} = i | y_t = j) = log_softmax_i((e_{t-1}[i] + A[i, j]) / 2)
            pair[:, 1:] += log_softmax((e[:, :-1, :, None] + trans[None, None]) / 2, -2)
        return viterbi_decode((unary).astype('float32'), pair.astype('float32'), mask=mask)

    def get_config(self):
        config = super().get_config()
        config.update({'hidden_dim': self.hidden_dim, 'bidirectional': self.bidirectional})
        return config
