"""Viterbi decoding: bert4keras' one-sequence `ViterbiDecoder`, and a batched decoder.

`ViterbiDecoder(trans, starts=None, ends=None).decode(nodes)` is the numpy decoder that bert4keras
scripts use after a CRF (`NamedEntityRecognizer(ViterbiDecoder)` in the NER example): `nodes` is one
sequence's (n, C) emission scores, `trans` the (C, C) transition matrix, `starts` / `ends` the labels
allowed at the first / last position.

`viterbi_decode(emissions, trans, mask=None, starts=None, ends=None)` decodes a whole padded batch
(b, n, C) at once. It is written with `keras.ops` and two TensorFlow `TensorArray`s (`while_loop`s
over time with a fixed carry, vectorised over the batch and the labels), so it runs inside a model or a `tf.function` with unknown
batch size and length, and under XLA (`jit_compile=True`); given numpy arrays it runs a cached,
XLA-compiled function and returns numpy (see `benchmarks/bench_viterbi.py` for the speed-up).

Conventions shared by both:
- path score = Σ_t emissions[t, y_t] + Σ_{t≥1} trans[y_{t-1}, y_t] (no start/end transition
  vectors, as in bert4keras; `starts` / `ends` are hard constraints);
- disallowed labels get a large finite negative (not -inf), so nothing turns into NaN;
- `mask` marks real steps (True/1) and must be right-padded (a prefix of each row), which is what
  `sequence_padding` and the tokenizer produce. Padded positions come back as tag 0.
"""
import numpy as np

from bert4keras_ext.backend import keras, ops

__all__ = ['ViterbiDecoder', 'viterbi_decode', 'viterbi_path_score']

# Added to the score of a label that `starts` / `ends` forbid. Finite on purpose (see module doc);
# far below any sum of realistic emissions/transitions, far above float32's range limit.
CONSTRAINT_PENALTY = 1e12


def _constraint_bias(allowed, num_labels, name):
    """(C,) float32 vector: 0 for allowed labels, -CONSTRAINT_PENALTY for the others."""
    bias = np.zeros(num_labels, dtype='float32')
    if allowed is None:
        return bias
    allowed = [int(i) for i in np.atleast_1d(allowed)]
    bad = [i for i in allowed if not 0 <= i < num_labels]
    if bad:
        raise ValueError('%s contains label(s) %s outside 0..%d' % (name, bad, num_labels - 1))
    if not allowed:
        raise ValueError('%s is empty: no path could start/end anywhere' % name)
    bias[:] = -CONSTRAINT_PENALTY
    bias[allowed] = 0.0
    return bias


class ViterbiDecoder(object):
    """bert4keras' numpy Viterbi decoder for one sequence.

    Args:
        trans: (C, C) array, trans[i, j] = score of label i followed by label j.
        starts: labels allowed at the first position (None = all).
        ends: labels allowed at the last position (None = all).

    Unlike bert4keras, `decode` does not modify the `nodes` array it is given.
    """

    def __init__(self, trans, starts=None, ends=None):
        trans = np.asarray(trans, dtype='float32')
        if trans.ndim != 2 or trans.shape[0] != trans.shape[1]:
            raise ValueError('ViterbiDecoder: trans must be a square (C, C) matrix, got shape %s'
                             % (trans.shape,))
        self.trans = trans
        self.num_labels = len(trans)
        self.starts = None if starts is None else [int(i) for i in starts]
        self.ends = None if ends is None else [int(i) for i in ends]
        self._start_bias = _constraint_bias(starts, self.num_labels, 'starts')
        self._end_bias = _constraint_bias(ends, self.num_labels, 'ends')
        # bert4keras attribute names, read by some competition scripts
        self.non_starts = [i for i in range(self.num_labels) if self._start_bias[i] < 0]
        self.non_ends = [i for i in range(self.num_labels) if self._end_bias[i] < 0]

    def decode(self, nodes):
        """Best label path of one sequence.

        Args:
            nodes: (n, C) emission scores of the real (unpadded) steps.
        Returns:
            int array (n,) of labels.
        """
        nodes = np.asarray(nodes, dtype='float32')
        if nodes.ndim != 2 or nodes.shape[1] != self.num_labels:
            raise ValueError('ViterbiDecoder.decode: nodes must have shape (n, %d), got %s'
                             % (self.num_labels, nodes.shape))
        n = len(nodes)
        if n == 0:
            return np.zeros((0,), dtype='int64')
        score = nodes[0] + self._start_bias
        if n == 1:
            return np.array([int(np.argmax(score + self._end_bias))])
        backpointers = np.empty((n, self.num_labels), dtype='int64')
        for t in range(1, n):
            candidates = score[:, None] + self.trans  # (previous label, label)
            backpointers[t] = candidates.argmax(0)
            score = candidates.max(0) + nodes[t]
        path = np.empty(n, dtype='int64')
        path[-1] = int(np.argmax(score + self._end_bias))
        for t in range(n - 1, 0, -1):
            path[t - 1] = backpointers[t, path[t]]
        return path

    def decode_batch(self, nodes, mask=None):
        """Decode a padded batch (b, n, C) at once with `viterbi_decode`; returns int32 (b, n)."""
        return viterbi_decode(nodes, self.trans, mask=mask, starts=self.starts, ends=self.ends)


# ---------------------------------------------------------------------------------------------------
# Batched decoder (keras.ops + TensorArrays)
# ---------------------------------------------------------------------------------------------------
def _viterbi_ops(emissions, trans, mask, start_bias, end_bias):
    """Viterbi over a batch on TensorFlow tensors (keras.ops arithmetic, `tf.TensorArray` buffers).

    Shapes: emissions (b, n, C) float32, trans (C, C) or (b, n, C, C) (position t holds the scores
    from step t-1 into step t; t = 0 unused), mask (b, n) bool or None, biases (C,). Returns int32
    (b, n).

    Both passes are `while_loop`s over time whose carry has a fixed structure, reading step t of
    time-major tensors by index (as `nn.crf._crf_forward` does): the forward pass carries (t, best
    score per label (b, C), backpointers), the backtrace (t, tag (b,), tags). The per-step
    backpointers (b, C) and tags (b,) go into TensorArrays sized at run time with their element
    shape set, which XLA sizes from the input shapes at compile time. So b and n may be unknown when
    traced and `jit_compile=True` works. `ops.scan` could do neither (Keras' TensorFlow scan fails
    on an unknown length; XLA rejects its tensor lists). A preallocated (n, b, C) tensor updated
    with `slice_update` also works but copies the whole buffer each step outside XLA (2x slower).
    """
    import tensorflow as tf  # TensorArray: keras.ops has no growable buffer

    emissions = ops.cast(emissions, 'float32')
    trans = ops.cast(trans, 'float32')
    per_step = len(trans.shape) == 4
    num_labels = emissions.shape[-1] if emissions.shape[-1] is not None else trans.shape[-1]
    batch_size, seq_len = ops.shape(emissions)[0], ops.shape(emissions)[1]
    if mask is None:
        mask = ops.ones((batch_size, seq_len), dtype='bool')
    mask = ops.cast(mask, 'bool')
    lengths = ops.sum(ops.cast(mask, 'int32'), axis=1)

    # Time-major, plus one padding step at the end, and buffers of n + 1 steps: XLA checks the
    # loop bodies' one-step reads and writes against the shapes even when n = 0 and the loops
    # never run, and stacking an empty TensorArray fails.
    def time_major(x, axes):
        return ops.pad(ops.transpose(x, axes), [(0, 1)] + [(0, 0)] * (len(axes) - 1))

    e = time_major(emissions, (1, 0, 2))  # (n + 1, b, C)
    m = ops.cast(time_major(ops.cast(mask, 'int32'), (1, 0)), 'bool')[:, :, None]  # (n + 1, b, 1)
    # (n + 1, b, from, to) per step, else (1, from, to) broadcast over the batch
    t_major = time_major(trans, (1, 0, 2, 3)) if per_step else trans[None]
    # best score of a path ending in each label; zeros when n = 0 (the loops then do nothing)
    score = ops.sum(e[:1], axis=0) + ops.cast(start_bias, 'float32')[None]
    steps = seq_len + 1
    backpointers = tf.TensorArray(tf.int32, size=steps, element_shape=tf.TensorShape([None, num_labels]))
    # step n is read (by the backtrace's first step, whose result only matters where a row ends
    # there and is then replaced by the end tag) but has no transition into it: zeros
    backpointers = backpointers.write(seq_len, ops.zeros_like(ops.cast(score, 'int32')))

    def forward(t, score, backpointers):
        candidates = score[:, :, None] + (t_major[t] if per_step else t_major)  # (b, from, to)
        backpointers = backpointers.write(t, ops.cast(ops.argmax(candidates, axis=1), 'int32'))
        new = ops.max(candidates, axis=1) + e[t]
        # padded steps keep the score of the row's last real step, where the backtrace starts
        return t + 1, ops.where(m[t], new, score), backpointers

    _, score, backpointers = ops.while_loop(
        lambda t, score, backpointers: t < seq_len, forward, (1, score, backpointers))
    end_tags = ops.cast(ops.argmax(score + ops.cast(end_bias, 'float32')[None], axis=-1), 'int32')

    def backward(t, tag, tags):
        # `tag` is the label at step t + 1; at a row's last real step the path starts from its
        # end tag. Steps past a row's end compute an arbitrary (valid) label, zeroed below.
        via_next = tf.gather(backpointers.read(t + 1), tag, batch_dims=1)
        tag = ops.where(ops.equal(t, lengths - 1), end_tags, via_next)
        return t - 1, tag, tags.write(t, tag)

    tags = tf.TensorArray(tf.int32, size=steps, element_shape=tf.TensorShape([None]))
    tags = tags.write(seq_len, ops.zeros_like(end_tags))
    _, _, tags = ops.while_loop(lambda t, tag, tags: t >= 0, backward, (seq_len - 1, end_tags, tags))
    return ops.transpose(tags.stack()[:seq_len]) * ops.cast(mask, 'int32')


_compiled = {}
_traced = {}


def _compiled_viterbi(per_step):
    """XLA-compiled `_viterbi_ops` for numpy callers (one compilation per input shape)."""
    if per_step not in _compiled:
        import tensorflow as tf  # numpy entry point only: keras.ops has no jit of its own here

        _compiled[per_step] = tf.function(_viterbi_ops, jit_compile=True, reduce_retracing=False)
    return _compiled[per_step]


def _eager_tensorflow():
    if keras.backend.backend() != 'tensorflow':
        return False
    import tensorflow as tf
    return tf.executing_eagerly()


def _viterbi_tensors(emissions, trans, mask, start_bias, end_bias):
    """`_viterbi_ops` for tensors. Eager TensorFlow tensors go through one traced function (a graph
    per label count and mask/no-mask, any batch and length) instead of dispatching the loops' ops
    one by one; in a graph (a model, a `tf.function`) it is inlined as it is."""
    if not _eager_tensorflow():
        return _viterbi_ops(emissions, trans, mask, start_bias, end_bias)
    key = (len(trans.shape) == 4, mask is None)
    if key not in _traced:
        import tensorflow as tf
        _traced[key] = tf.function(_viterbi_ops, reduce_retracing=True)
    return _traced[key](emissions, trans, mask, start_bias, end_bias)


def _is_symbolic_or_tensor(x):
    return not isinstance(x, (np.ndarray, list, tuple, float, int, np.generic))


def _round_up(value, multiple):
    return -(-value // multiple) * multiple


def viterbi_decode(emissions, trans, mask=None, starts=None, ends=None):
    """Best label paths of a padded batch, decoded all at once.

    Args:
        emissions: (b, n, C) emission scores (numpy, or a tensor inside a model/function).
        trans: (C, C) transitions, trans[i, j] = score of i followed by j; or (b, n, C, C)
            position-dependent transitions where [:, t] scores step t-1 → step t ([:, 0] unused),
            as the exact MEMM decoder uses.
        mask: (b, n) bool/0-1, True on real steps, right-padded. None = every step is real (for the
            output of a `ConditionalRandomField`, whose padding is filled with -1e12, use
            `crf.decode`, which reads the mask from the fill).
        starts, ends: labels allowed at the first / last real step (None = all).
    Returns:
        int32 (b, n) label paths, 0 at padded positions: numpy for numpy inputs, a tensor otherwise.
    """
    if isinstance(emissions, (list, tuple)):
        emissions = np.asarray(emissions, dtype='float32')
    if isinstance(trans, (list, tuple)):
        trans = np.asarray(trans, dtype='float32')
    if isinstance(mask, (list, tuple)):
        mask = np.asarray(mask)
    if any(isinstance(x, keras.KerasTensor) for x in (emissions, trans, mask)):
        raise TypeError('viterbi_decode: got a Keras symbolic tensor (keras.Input / a layer output while '
                        'building a functional model); call it inside a layer instead, e.g. '
                        'keras.layers.Lambda(lambda args: viterbi_decode(args[0], trans, args[1]), '
                        'output_shape=(None,))([emissions, mask]), or decode model.predict(...) outputs')
    symbolic = _is_symbolic_or_tensor(emissions) or _is_symbolic_or_tensor(trans) or \
        (mask is not None and _is_symbolic_or_tensor(mask))
    if not hasattr(emissions, 'shape'):
        emissions = np.asarray(emissions, dtype='float32')
    if len(emissions.shape) != 3:
        # checked before reading the label axis, which a 0-/1-D input may not have
        raise ValueError('viterbi_decode: emissions must be (b, n, num_labels) = (batch, steps, labels), '
                         'got shape %s; for one sequence (n, num_labels) add a batch axis (emissions[None]) '
                         'or use ViterbiDecoder(trans).decode(nodes)' % (tuple(emissions.shape),))
    num_labels = emissions.shape[-1] if emissions.shape[-1] is not None else trans.shape[-1]
    if len(trans.shape) not in (2, 4) or tuple(trans.shape[-2:]) != (num_labels, num_labels):
        raise ValueError('viterbi_decode: trans must be (%d, %d) or (batch, steps, %d, %d) to match '
                         'emissions %s, got %s' % (num_labels, num_labels, num_labels, num_labels,
                                                   tuple(emissions.shape), tuple(trans.shape)))
    if mask is not None and len(mask.shape) != 2:
        raise ValueError('viterbi_decode: mask must be (batch, steps), got shape %s' % (tuple(mask.shape),))
    start_bias = _constraint_bias(starts, num_labels, 'starts')
    end_bias = _constraint_bias(ends, num_labels, 'ends')
    if symbolic:
        return _viterbi_tensors(emissions, trans, mask, start_bias, end_bias)

    emissions = np.asarray(emissions, dtype='float32')
    trans = np.asarray(trans, dtype='float32')
    b, n, _ = emissions.shape
    mask = np.ones((b, n), dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if mask.shape != (b, n):
        raise ValueError('viterbi_decode: mask shape %s does not match emissions %s' % (mask.shape, emissions.shape))
    if trans.ndim == 4 and trans.shape[:2] != (b, n):
        raise ValueError('viterbi_decode: per-step trans %s does not match emissions %s'
                         % (trans.shape, emissions.shape))
    if b == 0 or n == 0:
        return np.zeros((b, n), dtype='int32')
    # Pad to a few bucketed shapes so that varying batch maxima do not each trigger an XLA
    # compilation; the extra steps/rows are masked out.
    n_pad, b_pad = _round_up(n, 16) - n, _round_up(b, 8) - b
    if n_pad or b_pad:
        emissions = np.pad(emissions, ((0, b_pad), (0, n_pad), (0, 0)))
        mask = np.pad(mask, ((0, b_pad), (0, n_pad)))
        if trans.ndim == 4:
            trans = np.pad(trans, ((0, b_pad), (0, n_pad), (0, 0), (0, 0)))
    tags = _compiled_viterbi(trans.ndim == 4)(emissions, trans, mask, start_bias, end_bias)
    return np.asarray(tags)[:b, :n]


def viterbi_path_score(emissions, trans, tags, mask=None):
    """Score of given paths (numpy): Σ emissions[t, y_t] + Σ trans[y_{t-1}, y_t] over real steps.

    emissions (b, n, C), trans (C, C), tags (b, n) int, mask (b, n) → float (b,).
    """
    emissions = np.asarray(emissions, dtype='float64')
    trans = np.asarray(trans, dtype='float64')
    tags = np.asarray(tags, dtype='int64')
    b, n, _ = emissions.shape
    mask = np.ones((b, n), dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    unary = np.take_along_axis(emissions, tags[..., None], axis=-1)[..., 0]
    pair = trans[tags[:, :-1], tags[:, 1:]]
    return (unary * mask).sum(1) + (pair * (mask[:, 1:] & mask[:, :-1])).sum(1)
