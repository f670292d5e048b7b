"""Task heads with bert4keras names: CRF, (Bi-)MEMM, GlobalPointer, Efficient GlobalPointer, AM-Softmax.

All are Keras 3 layers registered for `.keras` serialization with complete `get_config`.

Masking. A head takes its padding mask either as the Keras mask of its input or explicitly, as a
second input `[x, mask]` with `mask` (b, n) bool/0-1 — or simply the token ids, whose non-zero
entries are the real tokens (`crf([emissions, token_ids])`) — so the heads work on any backbone. Masked scores are set to a large finite negative
(`backend.mask_value('float32')` = -1e12), never -inf, so no NaN appears downstream.

Precision. The scores these heads emit feed log-space computations (forward algorithm, logsumexp
losses), so their outputs are float32 even under a `mixed_float16` / `mixed_bfloat16` policy; CRF and
MEMM also read their transition matrices in float32.

Sequence heads (CRF, MEMM) follow bert4keras ≥ 0.10: the layer's output is its input with padded
steps filled with the mask value, and the losses/metrics recover the mask from that fill. Masks must
be right-padded (a prefix of real steps per row), as produced by the tokenizer and `sequence_padding`.
"""
import math

import numpy as np

from bert4keras_ext.backend import keras, mask_value, ops, sinusoidal_embeddings
from bert4keras_ext.multilabel import _executing_eagerly, _is_concrete, check_labels_in_range  # noqa: F401
from bert4keras_ext.viterbi import viterbi_decode

__all__ = [
    'ConditionalRandomField', 'MaximumEntropyMarkovModel', 'GlobalPointer', 'EfficientGlobalPointer',
    'AMSoftmaxDense', 'apply_rotary_position_embeddings', 'check_labels_in_range',
]

register = keras.saving.register_keras_serializable(package='bert4keras_ext')

_FILL = mask_value('float32')
# Scores at or below this are padding written by a CRF/MEMM layer (fill is -1e12; real emissions
# never get anywhere near).
_FILL_THRESHOLD = _FILL / 2


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------
def _split_inputs(inputs, mask):
    """(x, mask) from `x` + Keras mask, or from an explicit `[x, mask]` input."""
    if isinstance(inputs, (list, tuple)):
        if len(inputs) != 2:
            raise ValueError('expected an input x or [x, mask], got %d inputs' % len(inputs))
        return inputs[0], inputs[1]
    return inputs, mask


def apply_rotary_position_embeddings(x, seq_axis=1):
    """RoPE (Su et al.) with positions 0..n-1 along `seq_axis`, bert4keras' interleaved convention.

    x (b, n, ..., d) with d even. Pairs (x[2i], x[2i+1]) are rotated by angle pos·10000^(-2i/d):
    out = x·cos + rot(x)·sin with rot(x) = (-x[1], x[0], -x[3], x[2], …).
    """
    d = x.shape[-1]
    n = ops.shape(x)[seq_axis]
    emb = sinusoidal_embeddings(ops.arange(n, dtype='float32'), d)  # (n, d): sin, cos, sin, cos, …
    sin = ops.repeat(emb[:, 0::2], 2, axis=-1)
    cos = ops.repeat(emb[:, 1::2], 2, axis=-1)
    shape = [1] * len(x.shape)
    shape[seq_axis] = -1
    shape[-1] = d
    sin = ops.cast(ops.reshape(sin, shape), x.dtype)
    cos = ops.cast(ops.reshape(cos, shape), x.dtype)
    rotated = ops.reshape(ops.stack([-x[..., 1::2], x[..., 0::2]], axis=-1), ops.shape(x))
    return x * cos + rotated * sin


def _divided_initializer(initializer, multiplier):
    """Wraps an initializer so that the stored variable is init / multiplier (lr_multiplier trick)."""
    initializer = keras.initializers.get(initializer)

    def init(shape, dtype=None):
        return initializer(shape, dtype=dtype) / multiplier

    return init


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


def _sequence_mask_from_scores(y_pred):
    """(b, n) float32 mask of real steps of a CRF/MEMM output (padding was filled with -1e12)."""
    return ops.cast(ops.all(ops.greater(y_pred, _FILL_THRESHOLD), axis=-1), 'float32')


def _labels_like(y_true, y_pred):
    """Integer labels (b, n) from whatever shape Keras hands a loss ((b, n) or (b, n, 1))."""
    y_true = ops.reshape(y_true, ops.shape(y_pred)[:-1])
    return ops.cast(y_true, 'int32')


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


class _SequenceHead(keras.layers.Layer):
    """Shared plumbing of CRF and MEMM: lr_multiplier variables, masking call, mask recovery."""

    def __init__(self, lr_multiplier=1, **kwargs):
        kwargs.pop('autocast', None)
        # autocast off: transitions must be read in float32 under 16-bit policies
        super().__init__(autocast=False, **kwargs)
        lr_multiplier = float(lr_multiplier)
        if not lr_multiplier > 0:
            raise ValueError('%s: lr_multiplier must be > 0, got %r' % (type(self).__name__, lr_multiplier))
        self.lr_multiplier = lr_multiplier
        self.supports_masking = True

    def _add_scaled_weight(self, name, shape):
        return self.add_weight(name=name, shape=shape, dtype='float32',
                               initializer=_divided_initializer('glorot_uniform', self.lr_multiplier))

    def _scaled(self, variable):
        value = ops.cast(variable, 'float32')
        if self.lr_multiplier != 1:
            value = value * self.lr_multiplier
        return value

    @staticmethod
    def _num_labels(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            input_shape = input_shape[0]
        num_labels = input_shape[-1]
        if num_labels is None:
            raise ValueError('the last axis (number of labels) must be known when the layer is built')
        return int(num_labels)

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        x = ops.cast(x, 'float32')
        if mask is None:
            return x
        return ops.where(ops.cast(mask, 'bool')[:, :, None], x, _FILL)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def compute_output_spec(self, inputs, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(x.shape, dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.pop('autocast', None)
        config['lr_multiplier'] = self.lr_multiplier
        return config

    def _prepare(self, y_pred):
        """float32 scores with padded steps zeroed, and the (b, n) float mask."""
        y_pred = ops.cast(y_pred, 'float32')
        mask = _sequence_mask_from_scores(y_pred)
        return y_pred * mask[:, :, None], mask

    def _check_scores(self, y_pred):
        if y_pred.shape[-1] is not None and self.built and y_pred.shape[-1] != self.num_labels:
            raise ValueError('%s: y_pred has %d labels on its last axis, the layer was built for %d'
                             % (self.name, y_pred.shape[-1], self.num_labels))

    def _check_decode_input(self, y_pred, mask):
        """y_pred as numpy when given as a list; clear errors for a wrong rank / label count."""
        if isinstance(y_pred, (list, tuple)) or not hasattr(y_pred, 'shape'):
            y_pred = np.asarray(y_pred, dtype='float32')
        shape = tuple(y_pred.shape)
        expected = '(b, n, num_labels) = (batch, steps, %s)' % (self.num_labels if self.built else 'num_labels')
        if len(shape) != 3:
            raise ValueError('%s.decode: y_pred must be %s scores, got shape %s; for one sequence add a batch '
                             'axis (y_pred[None])' % (type(self).__name__, expected, shape))
        if self.built and shape[-1] is not None and shape[-1] != self.num_labels:
            raise ValueError('%s.decode: y_pred must be %s scores, got %d labels on the last axis (shape %s)'
                             % (type(self).__name__, expected, shape[-1], shape))
        if mask is not None:
            mask_shape = tuple(np.shape(mask) if isinstance(mask, (list, tuple)) else mask.shape)
            if len(mask_shape) != 2:
                raise ValueError('%s.decode: mask must be (b, n) = (batch, steps) to match y_pred %s, got '
                                 'shape %s' % (type(self).__name__, shape, mask_shape))
        return y_pred

    def _sparse_labels(self, y_true, y_pred, mask):
        y_true = _labels_like(y_true, y_pred)
        y_true = check_labels_in_range(y_true, self.num_labels, '%s labels' % self.name,
                                       valid=ops.cast(mask, 'bool'))
        return ops.where(ops.cast(mask, 'bool'), y_true, 0)


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


# ---------------------------------------------------------------------------------------------------
# GlobalPointer family
# ---------------------------------------------------------------------------------------------------
def _check_pointer_args(name, heads, head_size, rope):
    for arg, value in (('heads', heads), ('head_size', head_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError('%s: %s must be a positive int, got %r' % (name, arg, value))
    if rope and head_size % 2:
        raise ValueError('%s: head_size must be even when RoPE=True (rotations act on pairs), got %d'
                         % (name, head_size))


def _mask_span_scores(logits, mask, tril_mask):
    """Fill padded rows/cols (and i > j when tril_mask) of (b, h, n, n) scores with the fill value."""
    allowed = None
    if mask is not None:
        mask = ops.cast(mask, 'bool')
        allowed = ops.logical_and(mask[:, None, :, None], mask[:, None, None, :])
    if tril_mask:
        n = ops.shape(logits)[-1]
        idx = ops.arange(n)
        upper = (idx[:, None] <= idx[None, :])[None, None]
        allowed = upper if allowed is None else ops.logical_and(allowed, upper)
    if allowed is None:
        return logits
    return ops.where(allowed, logits, _FILL)


@register
class GlobalPointer(keras.layers.Layer):
    """GlobalPointer span scorer (bert4keras `GlobalPointer`, kexue.fm/archives/8373).

    Input (b, n, D) with a Keras mask, or `[x, mask]`. Output float32 (b, heads, n, n):
    s_α(i, j) = q_{i,α}·k_{j,α} / √head_size, the score that tokens i..j (inclusive) form a span of
    type α. With `RoPE` (default) q and k are rotated by their positions (relative-position aware).
    Padded rows/columns and, with `tril_mask` (default), the lower triangle i > j are set to -1e12.
    Decode: spans with score > 0.

    Weights: one Dense(heads·2·head_size) named `dense`; per head, the first half of its chunk is
    q, the second k.
    """

    def __init__(self, heads, head_size, RoPE=True, use_bias=True, tril_mask=True,
                 kernel_initializer='lecun_normal', **kwargs):
        super().__init__(**kwargs)
        _check_pointer_args(type(self).__name__, heads, head_size, RoPE)
        self.heads = int(heads)
        self.head_size = int(head_size)
        self.RoPE = bool(RoPE)
        self.use_bias = bool(use_bias)
        self.tril_mask = bool(tril_mask)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def _dense(self, units, name, input_shape):
        layer = keras.layers.Dense(units, use_bias=self.use_bias, kernel_initializer=self.kernel_initializer,
                                   name=name, dtype=self.dtype_policy)
        layer.build(input_shape)
        return layer

    @staticmethod
    def _x_shape(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def build(self, input_shape):
        self.dense = self._dense(self.heads * self.head_size * 2, 'dense', self._x_shape(input_shape))

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        x = self.dense(x)
        x = ops.reshape(x, tuple(ops.shape(x)[:2]) + (self.heads, self.head_size * 2))
        qw, kw = x[..., :self.head_size], x[..., self.head_size:]
        if self.RoPE:
            qw = apply_rotary_position_embeddings(qw)
            kw = apply_rotary_position_embeddings(kw)
        logits = ops.einsum('bmhd,bnhd->bhmn', qw, kw)
        logits = ops.cast(logits, 'float32') / math.sqrt(self.head_size)
        return _mask_span_scores(logits, mask, self.tril_mask)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        shape = self._x_shape(input_shape)
        return (shape[0], self.heads, shape[1], shape[1])

    def compute_output_spec(self, inputs, mask=None):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return keras.KerasTensor(self.compute_output_shape(x.shape), dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.update({
            'heads': self.heads,
            'head_size': self.head_size,
            'RoPE': self.RoPE,
            'use_bias': self.use_bias,
            'tril_mask': self.tril_mask,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
        })
        return config


@register
class EfficientGlobalPointer(GlobalPointer):
    """Parameter-efficient GlobalPointer (bert4keras `EfficientGlobalPointer`, kexue.fm/archives/8877).

    Same inputs/outputs/masking as `GlobalPointer`. One shared projection h = Dense(2·head_size)(x)
    (`p_dense`); q = h[..., 0::2], k = h[..., 1::2] (then RoPE); per-type biases
    b = Dense(2·heads)(h) / 2 (`q_dense`, applied to the pre-RoPE h):
    s_α(i, j) = q_i·k_j / √head_size + b[j, 2α] + b[i, 2α+1].
    Extra parameters per entity type: about 4·head_size instead of 2·D·head_size.
    """

    def build(self, input_shape):
        shape = self._x_shape(input_shape)
        self.p_dense = self._dense(self.head_size * 2, 'p_dense', shape)
        self.q_dense = self._dense(self.heads * 2, 'q_dense', shape[:-1] + (self.head_size * 2,))

    def call(self, inputs, mask=None):
        x, mask = _split_inputs(inputs, mask)
        h = self.p_dense(x)
        qw, kw = h[..., 0::2], h[..., 1::2]
        if self.RoPE:
            qw = apply_rotary_position_embeddings(qw)
            kw = apply_rotary_position_embeddings(kw)
        logits = ops.cast(ops.einsum('bmd,bnd->bmn', qw, kw), 'float32') / math.sqrt(self.head_size)
        bias = ops.transpose(ops.cast(self.q_dense(h), 'float32'), (0, 2, 1)) / 2  # (b, 2·heads, n)
        logits = logits[:, None] + bias[:, 0::2, None, :] + bias[:, 1::2, :, None]
        return _mask_span_scores(logits, mask, self.tril_mask)


# ---------------------------------------------------------------------------------------------------
# AM-Softmax
# ---------------------------------------------------------------------------------------------------
@register
class AMSoftmaxDense(keras.layers.Layer):
    """Cosine classifier for AM-Softmax: normalised inputs against normalised class prototypes.

    Input (b, ..., D) → output float32 (b, ..., units) = cos θ between x and each column of the
    kernel (both L2-normalised, so prototypes are unit vectors without a kernel constraint), clipped
    to [-1, 1]. Train with `losses.sparse_am_softmax_loss` / `am_softmax_loss` (scale s, margin m on
    the target only); at inference rank classes by this cosine. No bias, as AM-Softmax requires.
    """

    def __init__(self, units, kernel_initializer='glorot_uniform', kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or int(units) != units or units < 1:
            raise ValueError('AMSoftmaxDense: units must be a positive int, got %r' % (units,))
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        self.kernel = self.add_weight(name='kernel', shape=(int(input_shape[-1]), self.units),
                                      initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)

    def call(self, inputs):
        x = ops.cast(inputs, 'float32')
        x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        w = ops.cast(self.kernel, 'float32')
        w = w / ops.sqrt(ops.maximum(ops.sum(ops.square(w), axis=0, keepdims=True), 1e-12))
        return ops.clip(ops.matmul(x, w), -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype='float32')

    def get_config(self):
        config = super().get_config()
        config.update({
            'units': self.units,
            'kernel_initializer': keras.initializers.serialize(self.kernel_initializer),
            'kernel_regularizer': keras.regularizers.serialize(self.kernel_regularizer),
        })
        return config
