"""The cache protocol at the layer level: `MultiHeadAttention` and `AttentionMask` called with a cache
and a `Decoding` give, token by token, what a numpy re-implementation of masked attention over the whole
sequence gives — with a shared prefix block, rows that continue it in a different order (beams moving),
and several new tokens per call."""
import numpy as np
import tensorflow as tf

from bert4keras_ext.caching import Decoding, PrefixGrouping, prefix_grouping
from bert4keras_ext.layers import AttentionMask, MultiHeadAttention

HEADS, SIZE, DIM = 2, 4, 8


def numpy_attention(layer, x, allowed):
    """Reference: softmax(QK^T / sqrt(d) masked) V, then the output projection. x (n, d), allowed (n, n)."""
    w = [np.asarray(v) for v in layer.weights]
    q, k, v = (x @ w[i] + w[i + 1] for i in (0, 2, 4))
    out = []
    for h in range(HEADS):
        sl = slice(h * SIZE, (h + 1) * SIZE)
        scores = q[:, sl] @ k[:, sl].T / np.sqrt(SIZE)
        scores = np.where(allowed, scores, -1e12)
        p = np.exp(scores - scores.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        out.append(p @ v[:, sl])
    return np.concatenate(out, 1) @ w[6] + w[7]


def unilm_allowed(segments, valid):
    order = np.cumsum(segments)
    return valid[None, :] & (order[None, :] <= order[:, None])


def test_attention_with_a_cache_equals_full_masked_attention():
    rng = np.random.RandomState(0)
    layer = MultiHeadAttention(HEADS, SIZE, out_dim=DIM)
    layer.build([(None, None, DIM)] * 3)
    for weight in layer.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape))
    mask = AttentionMask(mode='unilm')
    # two inputs: sources of 3 and 2 real tokens (segment 0), right-padded to 4
    source_ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    embeddings = rng.normal(size=(50, DIM)).astype('float32')

    def embed(ids):
        return tf.constant(embeddings[ids])

    decoding = Decoding.prefill(tf.constant(source_ids))
    bias, mask_cache = mask([tf.constant(source_ids), tf.zeros_like(source_ids)], cache=None, decoding=decoding)
    x = embed(source_ids)
    out, cache = layer([x, x, x, bias], cache=None, decoding=decoding)
    for i, length in enumerate((3, 2)):
        ids = source_ids[i, :length]
        expected = numpy_attention(layer, embeddings[ids], unilm_allowed(np.zeros(length, int), ids != 0))
        np.testing.assert_allclose(np.asarray(out)[i, :length], expected, atol=1e-5)

    # steps: 3 rows (input 0 twice, input 1 once), width 2 per input, room for 3 new tokens
    width, capacity = 2, 3
    cache = layer.continue_cache(cache, 2 * width, capacity)
    mask_cache = mask.continue_cache(mask_cache, 2 * width, capacity)
    histories = {0: [], 1: []}   # the generated tokens of each initial row
    rows = [[0, []], [1, []]]    # (owner, generated) of the current rows
    lengths = np.array([3, 2])
    plan = [([0, 1], [20, 21]), ([0, 0, 1], [22, 23, 24]), ([1, 0, 2], [25, 26, 27])]
    for index, (parents, tokens) in enumerate(plan):
        rows = [[rows[p][0], rows[p][1] + [t]] for p, t in zip(parents, tokens)]
        owner = np.array([r[0] for r in rows])
        padded = 2 * width
        grouped_rows, group_slot = prefix_grouping(owner, 2, width, padded)

        def pad(a):
            return np.concatenate([a, np.zeros(padded - len(a), int)]).astype('int32')

        parents_t = tf.constant(pad(np.array(parents)))
        take = lambda part: {k: tf.gather(v, parents_t) for k, v in part.items()}  # noqa: E731
        cache = dict(cache, rows=take(cache['rows']))
        mask_cache = dict(mask_cache, rows=take(mask_cache['rows']))
        positions = tf.constant(pad(lengths[owner] + index)[:, None])
        decoding = Decoding(positions, index, PrefixGrouping(tf.constant(pad(owner)), tf.constant(grouped_rows),
                                                             tf.constant(group_slot)))
        new_ids = tf.constant(pad(np.array(tokens))[:, None])
        bias, mask_cache = mask([new_ids, tf.ones_like(new_ids)], cache=mask_cache, decoding=decoding)
        x = embed(np.asarray(new_ids))
        out, cache = layer([x, x, x, bias], cache=cache, decoding=decoding)
        for r, (o, generated) in enumerate(rows):
            source = source_ids[o, :lengths[o]]
            ids = np.concatenate([source, generated])
            segments = np.array([0] * len(source) + [1] * len(generated))
            expected = numpy_attention(layer, embeddings[ids], unilm_allowed(segments, ids != 0))[-1]
            np.testing.assert_allclose(np.asarray(out)[r, 0], expected, atol=1e-5, err_msg=str((index, r)))


def test_several_new_tokens_per_call_equal_one_at_a_time():
    """A cache without a prefix, fed 3 tokens then 2 then 1 (LM mask), equals full causal attention."""
    rng = np.random.RandomState(1)
    layer = MultiHeadAttention(HEADS, SIZE, out_dim=DIM)
    layer.build([(None, None, DIM)] * 3)
    mask = AttentionMask(mode='lm')
    ids = np.array([[3, 4, 5, 6, 7, 8]])
    x_all = rng.normal(size=(1, 6, DIM)).astype('float32')
    cache = {'rows': {'key': tf.zeros((1, HEADS, SIZE, 6)), 'value': tf.zeros((1, HEADS, 6, SIZE))},
             'constants': layer.decoding_constants()}
    mask_cache = {'rows': {'order': tf.zeros((1, 6), 'int32'), 'valid': tf.zeros((1, 6), 'bool'),
                           'last': tf.zeros((1,), 'int32')}}
    outputs, start = [], 0
    for n in (3, 2, 1):
        positions = tf.constant(np.arange(start, start + n)[None].astype('int32'))
        decoding = Decoding(positions, start)
        bias, mask_cache = mask(tf.constant(ids[:, start:start + n]), cache=mask_cache, decoding=decoding)
        x = tf.constant(x_all[:, start:start + n])
        out, cache = layer([x, x, x, bias], cache=cache, decoding=decoding)
        outputs.append(np.asarray(out)[0])
        start += n
    expected = numpy_attention(layer, x_all[0], np.tril(np.ones((6, 6), bool)))
    np.testing.assert_allclose(np.concatenate(outputs), expected, atol=1e-5)


def test_portable_slot_writes_equal_the_in_place_update():
    """`write_slots(..., portable=True)` (standard ops, for TF Serving) equals `slice_update` on every axis,
    index and width, against numpy assignment."""
    from bert4keras_ext.caching import write_slots
    rng = np.random.RandomState(2)
    block = rng.normal(size=(3, 4, 5, 6)).astype('float32')
    for axis in range(4):
        for n in (1, 2):
            for index in range(block.shape[axis] - n + 1):
                shape = list(block.shape)
                shape[axis] = n
                new = rng.normal(size=shape).astype('float32')
                expected = block.copy()
                where = [slice(None)] * 4
                where[axis] = slice(index, index + n)
                expected[tuple(where)] = new
                for portable in (False, True):
                    got = write_slots(tf.constant(block), tf.constant(new), tf.constant(index), axis, portable=portable)
                    np.testing.assert_array_equal(np.asarray(got), expected)
