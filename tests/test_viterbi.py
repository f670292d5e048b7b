"""Viterbi decoders against exhaustive enumeration of every label path (numpy, written here)."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.viterbi import ViterbiDecoder, viterbi_decode, viterbi_path_score


def brute_force_best(emissions, trans, length, starts=None, ends=None):
    """Highest-scoring path of one sequence's first `length` steps, by listing all C**length paths."""
    num_labels = emissions.shape[-1]
    best_score, best_path = -np.inf, None
    for path in itertools.product(range(num_labels), repeat=length):
        if length and starts is not None and path[0] not in starts:
            continue
        if length and ends is not None and path[-1] not in ends:
            continue
        score = sum(float(emissions[t, path[t]]) for t in range(length))
        if trans.ndim == 2:
            score += sum(float(trans[path[t - 1], path[t]]) for t in range(1, length))
        else:  # per-step transitions (n, C, C)
            score += sum(float(trans[t, path[t - 1], path[t]]) for t in range(1, length))
        if score > best_score:
            best_score, best_path = score, path
    return list(best_path), best_score


def random_case(seed, b=6, n=5, num_labels=3):
    rng = np.random.RandomState(seed)
    emissions = rng.randn(b, n, num_labels).astype('float32')
    trans = rng.randn(num_labels, num_labels).astype('float32')
    lengths = rng.randint(1, n + 1, size=b)
    lengths[0] = n
    mask = np.arange(n)[None] < lengths[:, None]
    return emissions, trans, lengths, mask


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_numpy_decoder_equals_enumeration(seed):
    emissions, trans, lengths, _ = random_case(seed)
    decoder = ViterbiDecoder(trans)
    for row, length in enumerate(lengths):
        expected, _ = brute_force_best(emissions[row], trans, length)
        assert decoder.decode(emissions[row, :length]).tolist() == expected


def test_numpy_decoder_constraints_and_does_not_modify_input():
    emissions, trans, lengths, _ = random_case(3, num_labels=4)
    decoder = ViterbiDecoder(trans, starts=[0], ends=[0, 2])
    assert decoder.non_starts == [1, 2, 3] and decoder.non_ends == [1, 3]
    for row, length in enumerate(lengths):
        nodes = emissions[row, :length].copy()
        expected, _ = brute_force_best(emissions[row], trans, length, starts=[0], ends=[0, 2])
        assert decoder.decode(nodes).tolist() == expected
        np.testing.assert_array_equal(nodes, emissions[row, :length])


@pytest.mark.parametrize('seed', [0, 1])
def test_batched_decoder_equals_enumeration_with_masks(seed):
    emissions, trans, lengths, mask = random_case(seed, b=7, n=5, num_labels=3)
    # garbage in padded steps must not matter
    emissions = np.where(mask[:, :, None], emissions, 1e3).astype('float32')
    tags = viterbi_decode(emissions, trans, mask, starts=[0, 1], ends=[1, 2])
    assert tags.shape == (7, 5) and tags.dtype == np.int32
    for row, length in enumerate(lengths):
        expected, _ = brute_force_best(emissions[row], trans, length, starts=[0, 1], ends=[1, 2])
        assert tags[row, :length].tolist() == expected
        assert (tags[row, length:] == 0).all()


def test_batched_decoder_per_step_transitions():
    rng = np.random.RandomState(5)
    b, n, num_labels = 4, 4, 3
    emissions = rng.randn(b, n, num_labels).astype('float32')
    trans = rng.randn(b, n, num_labels, num_labels).astype('float32')
    lengths = np.array([4, 2, 3, 1])
    mask = np.arange(n)[None] < lengths[:, None]
    tags = viterbi_decode(emissions, trans, mask)
    for row, length in enumerate(lengths):
        expected, _ = brute_force_best(emissions[row], trans[row], length)
        assert tags[row, :length].tolist() == expected


def test_batched_decoder_inside_tf_function_and_keras_model():
    emissions, trans, lengths, mask = random_case(7, b=5, n=6, num_labels=4)
    reference = viterbi_decode(emissions, trans, mask)

    @tf.function
    def decode(e, m):
        return viterbi_decode(e, tf.constant(trans), m)

    np.testing.assert_array_equal(decode(tf.constant(emissions), tf.constant(mask)).numpy(), reference)

    import keras
    e_in = keras.Input((None, 4))
    m_in = keras.Input((None,), dtype='bool')
    out = keras.layers.Lambda(lambda args: viterbi_decode(args[0], keras.ops.convert_to_tensor(trans), args[1]),
                              output_shape=(None,))([e_in, m_in])
    model = keras.Model([e_in, m_in], out)
    np.testing.assert_array_equal(model.predict([emissions, mask], verbose=0), reference)


def test_all_lengths_bucketing_and_empty_rows():
    rng = np.random.RandomState(11)
    num_labels = 5
    trans = rng.randn(num_labels, num_labels).astype('float32')
    decoder = ViterbiDecoder(trans)
    for n in (1, 2, 17, 33):
        emissions = rng.randn(3, n, num_labels).astype('float32')
        lengths = np.array([n, max(n // 2, 1), 0])
        mask = np.arange(n)[None] < lengths[:, None]
        tags = decoder.decode_batch(emissions, mask)
        for row, length in enumerate(lengths):
            np.testing.assert_array_equal(tags[row, :length], decoder.decode(emissions[row, :length]))
        assert (tags[2] == 0).all()


def test_path_score_helper_matches_enumeration_score():
    emissions, trans, lengths, mask = random_case(2)
    tags = viterbi_decode(emissions, trans, mask)
    scores = viterbi_path_score(emissions, trans, tags, mask)
    for row, length in enumerate(lengths):
        _, best = brute_force_best(emissions[row], trans, length)
        assert abs(scores[row] - best) < 1e-4


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match='square'):
        ViterbiDecoder(np.zeros((3, 4)))
    with pytest.raises(ValueError, match='outside'):
        ViterbiDecoder(np.zeros((3, 3)), starts=[5])
    with pytest.raises(ValueError, match=r'\(n, 3\)'):
        ViterbiDecoder(np.zeros((3, 3))).decode(np.zeros((4, 2)))
    with pytest.raises(ValueError, match='trans must be'):
        viterbi_decode(np.zeros((2, 3, 4)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match='mask shape'):
        viterbi_decode(np.zeros((2, 3, 4)), np.zeros((4, 4)), mask=np.ones((2, 4)))
