"""Batched Viterbi (`viterbi_decode`, `ConditionalRandomField.decode`) on tensors: eagerly, inside a
`tf.function` whose batch size and sequence length are unknown, and XLA-compiled (`jit_compile=True`),
each against an exhaustive numpy enumeration of every label path written here."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.heads import ConditionalRandomField
from bert4keras_ext.viterbi import viterbi_decode

C = 3
STARTS, ENDS = [0, 2], [1, 2]


def brute_force(emissions, trans, length, starts=None, ends=None):
    """Best path of one row's first `length` steps by scoring all C**length paths (float64).

    trans is (C, C) or per-step (n, C, C) where trans[t] scores step t-1 -> t."""
    best, best_path = -np.inf, []
    for path in itertools.product(range(emissions.shape[-1]), repeat=length):
        if length and ((starts is not None and path[0] not in starts) or (ends is not None and path[-1] not in ends)):
            continue
        score = sum(float(emissions[t, y]) for t, y in enumerate(path))
        for t in range(1, length):
            pair = trans[path[t - 1], path[t]] if trans.ndim == 2 else trans[t, path[t - 1], path[t]]
            score += float(pair)
        if score > best:
            best, best_path = score, list(path)
    return best_path


def case(seed, b=7, n=5, per_step=False):
    """Random emissions (garbage in padding), transitions, right-padded mask with lengths 0..n."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(0, n + 1, size=b)
    lengths[:2] = [n, 0]
    mask = np.arange(n)[None] < lengths[:, None]
    emissions = rng.randn(b, n, C).astype('float32')
    emissions = np.where(mask[:, :, None], emissions, rng.uniform(-50, 50, emissions.shape)).astype('float32')
    shape = (b, n, C, C) if per_step else (C, C)
    trans = rng.randn(*shape).astype('float32')
    return emissions, trans, lengths, mask


def expected_tags(emissions, trans, lengths, starts=None, ends=None):
    b, n, _ = emissions.shape
    out = np.zeros((b, n), dtype='int32')
    for row, length in enumerate(lengths):
        out[row, :length] = brute_force(emissions[row], trans if trans.ndim == 2 else trans[row], length,
                                        starts, ends)
    return out


def graph_decoder(jit, per_step=False, constrained=True):
    """tf.function over (emissions, trans, mask) with unknown batch and length."""
    trans_spec = tf.TensorSpec((None, None, C, C) if per_step else (C, C), tf.float32)
    kwargs = dict(starts=STARTS, ends=ENDS) if constrained else {}

    @tf.function(jit_compile=jit, input_signature=[tf.TensorSpec((None, None, C), tf.float32), trans_spec,
                                                   tf.TensorSpec((None, None), tf.bool)])
    def decode(emissions, trans, mask):
        return viterbi_decode(emissions, trans, mask, **kwargs)

    return decode


@pytest.mark.parametrize('seed', [0, 1])
def test_eager_numpy_and_eager_tensors_equal_enumeration(seed):
    emissions, trans, lengths, mask = case(seed)
    expected = expected_tags(emissions, trans, lengths, STARTS, ENDS)
    np.testing.assert_array_equal(viterbi_decode(emissions, trans, mask, starts=STARTS, ends=ENDS), expected)
    tags = viterbi_decode(tf.constant(emissions), tf.constant(trans), tf.constant(mask), starts=STARTS, ends=ENDS)
    assert tags.dtype == tf.int32
    np.testing.assert_array_equal(tags.numpy(), expected)
    # no mask: every step is real
    full = expected_tags(emissions, trans, [emissions.shape[1]] * len(emissions))
    np.testing.assert_array_equal(viterbi_decode(tf.constant(emissions), tf.constant(trans)).numpy(), full)


@pytest.mark.parametrize('jit', [False, True], ids=['graph', 'xla'])
def test_tf_function_unknown_batch_and_length(jit):
    decode = graph_decoder(jit)
    # one traced function, several batch sizes and lengths (1..5), including all-padding rows
    for seed, (b, n) in enumerate([(7, 5), (3, 1), (5, 4), (2, 2)]):
        emissions, trans, lengths, mask = case(10 + seed, b=b, n=n)
        tags = decode(tf.constant(emissions), tf.constant(trans), tf.constant(mask))
        np.testing.assert_array_equal(tags.numpy(), expected_tags(emissions, trans, lengths, STARTS, ENDS))


@pytest.mark.parametrize('jit', [False, True], ids=['graph', 'xla'])
def test_tf_function_per_step_transitions(jit):
    decode = graph_decoder(jit, per_step=True, constrained=False)
    for seed, (b, n) in enumerate([(6, 4), (3, 5)]):
        emissions, trans, lengths, mask = case(20 + seed, b=b, n=n, per_step=True)
        tags = decode(tf.constant(emissions), tf.constant(trans), tf.constant(mask))
        np.testing.assert_array_equal(tags.numpy(), expected_tags(emissions, trans, lengths))


@pytest.mark.parametrize('jit', [False, True], ids=['graph', 'xla'])
def test_tf_function_empty_length(jit):
    decode = graph_decoder(jit)
    emissions = tf.zeros((2, 0, C))
    tags = decode(emissions, tf.zeros((C, C)), tf.zeros((2, 0), tf.bool))
    assert tags.shape == (2, 0)
    assert viterbi_decode(emissions, tf.zeros((C, C))).shape == (2, 0)


@pytest.mark.parametrize('jit', [False, True], ids=['graph', 'xla'])
def test_crf_decode_in_tf_function_reads_mask_from_padding_fill(jit):
    crf = ConditionalRandomField()
    emissions, _, lengths, mask = case(30, b=6, n=5)
    crf_out = crf(tf.constant(emissions), mask=tf.constant(mask))  # builds; padding filled with -1e12
    trans = np.random.RandomState(31).randn(C, C).astype('float32')
    crf.set_weights([trans])  # lr_multiplier 1: the stored matrix is the effective one

    @tf.function(jit_compile=jit, input_signature=[tf.TensorSpec((None, None, C), tf.float32)])
    def decode(y_pred):
        return crf.decode(y_pred, starts=STARTS, ends=ENDS)

    np.testing.assert_array_equal(decode(crf_out).numpy(),
                                  expected_tags(emissions, trans, lengths, STARTS, ENDS))
    # a different batch and length through the same traced function
    emissions2, _, lengths2, mask2 = case(32, b=3, n=3)
    out2 = crf(tf.constant(emissions2), mask=tf.constant(mask2))
    np.testing.assert_array_equal(decode(out2).numpy(), expected_tags(emissions2, trans, lengths2, STARTS, ENDS))


def test_keras_model_with_unknown_length_predicts_paths():
    emissions, trans, lengths, mask = case(40, b=5, n=5)
    e_in = keras.Input((None, C))
    m_in = keras.Input((None,), dtype='bool')
    out = keras.layers.Lambda(lambda args: viterbi_decode(args[0], keras.ops.convert_to_tensor(trans), args[1],
                                                          starts=STARTS, ends=ENDS),
                              output_shape=(None,))([e_in, m_in])
    model = keras.Model([e_in, m_in], out)
    np.testing.assert_array_equal(model.predict([emissions, mask], verbose=0),
                                  expected_tags(emissions, trans, lengths, STARTS, ENDS))
    emissions, _, lengths, mask = case(41, b=4, n=3)  # same trans: the Lambda holds it
    np.testing.assert_array_equal(model.predict([emissions, mask], verbose=0),
                                  expected_tags(emissions, trans, lengths, STARTS, ENDS))


def test_keras_symbolic_input_gets_a_clear_error():
    with pytest.raises(TypeError, match='Lambda'):
        viterbi_decode(keras.Input((None, C)), np.eye(C, dtype='float32'))
