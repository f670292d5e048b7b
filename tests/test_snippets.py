"""Tests for bert4keras_ext.snippets against hand-computed expectations."""
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bert4keras_ext.snippets import (
    DataGenerator,
    is_string,
    sequence_padding,
    softmax,
    text_segmentate,
    to_array,
    truncate_sequences,
)


# ----------------------------------------------------------------------------- small helpers

def test_is_string():
    assert is_string('中文') and is_string('')
    assert not is_string(b'x') and not is_string(1) and not is_string(['a'])


def test_softmax_hand_values():
    # exp(0) : exp(ln 2) = 1 : 2
    np.testing.assert_allclose(softmax([0.0, math.log(2.0)]), [1 / 3, 2 / 3], atol=1e-12)
    # large logits must not overflow; axis=0 normalises columns
    x = np.array([[1000.0, 0.0], [1000.0, math.log(3.0)]])
    np.testing.assert_allclose(softmax(x, axis=0), [[0.5, 0.25], [0.5, 0.75]], atol=1e-12)


def test_to_array():
    a = to_array([1, 2])
    assert isinstance(a, np.ndarray) and a.tolist() == [1, 2]
    x, y = to_array([[1]], [2.5])
    assert x.shape == (1, 1) and y.dtype == np.float64


# ----------------------------------------------------------------------------- sequence_padding

SEQS = [[1, 2, 3], [4], [5, 6]]


def test_padding_post_and_pre():
    out = sequence_padding(SEQS)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    np.testing.assert_array_equal(sequence_padding(SEQS, mode='pre'),
                                  [[1, 2, 3], [0, 0, 4], [0, 5, 6]])
    np.testing.assert_array_equal(sequence_padding(SEQS, value=-1),
                                  [[1, 2, 3], [4, -1, -1], [5, 6, -1]])


def test_padding_explicit_length_truncates_keeping_the_head():
    np.testing.assert_array_equal(sequence_padding(SEQS, length=2), [[1, 2], [4, 0], [5, 6]])
    # bert4keras keeps the head even in 'pre' mode; only the padding side changes
    np.testing.assert_array_equal(sequence_padding(SEQS, length=2, mode='pre'),
                                  [[1, 2], [0, 4], [5, 6]])
    # longer than every sample: pure padding
    np.testing.assert_array_equal(sequence_padding([[7]], length=3), [[7, 0, 0]])
    # length=0 gives an empty width
    assert sequence_padding(SEQS, length=0).shape == (3, 0)


def test_padding_multiple_rounds_up():
    np.testing.assert_array_equal(sequence_padding(SEQS, multiple=4),
                                  [[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 0, 0]])
    # already a multiple: unchanged
    assert sequence_padding([[1, 2, 3, 4]], multiple=4).shape == (1, 4)
    # explicit length: cut at 5, width rounded up to 8
    np.testing.assert_array_equal(sequence_padding([[1, 2, 3, 4, 5, 6], [9]], length=5, multiple=8),
                                  [[1, 2, 3, 4, 5, 0, 0, 0], [9, 0, 0, 0, 0, 0, 0, 0]])
    # 'pre' pads on the left up to the rounded width
    np.testing.assert_array_equal(sequence_padding([[1, 2, 3]], mode='pre', multiple=4),
                                  [[0, 1, 2, 3]])


def test_padding_dtype():
    assert sequence_padding(SEQS).dtype.kind == 'i'
    assert sequence_padding([[1.5], [2, 3]]).dtype == np.float64
    out = sequence_padding(SEQS, dtype='float32')
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])
    # numpy inputs keep their dtype
    assert sequence_padding([np.array([1], np.int32), np.array([2, 3], np.int32)]).dtype == np.int32


def test_padding_vectors_keep_trailing_dims():
    # e.g. per-token feature vectors: pad the token axis only
    out = sequence_padding([[[1, 1]], [[2, 2], [3, 3]]])
    np.testing.assert_array_equal(out, [[[1, 1], [0, 0]], [[2, 2], [3, 3]]])


def test_padding_seq_dims_2_globalpointer_span_labels():
    # GPLinker-style sparse labels: per sample, per head, a list of (start, end) pairs.
    # First pad each sample's heads to a common pair count (seq_dims=1) ...
    a = sequence_padding([[(1, 2), (3, 4)], [(5, 5)]])
    np.testing.assert_array_equal(a, [[[1, 2], [3, 4]], [[5, 5], [0, 0]]])
    b = sequence_padding([[(7, 8)], [(2, 3), (4, 6), (9, 9)]])
    np.testing.assert_array_equal(b, [[[7, 8], [0, 0], [0, 0]], [[2, 3], [4, 6], [9, 9]]])
    # ... then pad the batch over (heads, pairs) with seq_dims=2.
    batch = sequence_padding([a, b], seq_dims=2)
    expected = np.array([
        [[[1, 2], [3, 4], [0, 0]], [[5, 5], [0, 0], [0, 0]]],
        [[[7, 8], [0, 0], [0, 0]], [[2, 3], [4, 6], [9, 9]]],
    ])
    assert batch.shape == (2, 2, 3, 2)
    np.testing.assert_array_equal(batch, expected)
    # an empty head needs no dummy (0, 0) entry here (bert4keras required one)
    np.testing.assert_array_equal(sequence_padding([[(1, 2)], []]), [[[1, 2]], [[0, 0]]])


def test_padding_seq_dims_2_matrices_pre_length_and_int_broadcast():
    m1 = [[1]]
    m2 = [[1, 2], [3, 4]]
    np.testing.assert_array_equal(sequence_padding([m1, m2], seq_dims=2, mode='pre'),
                                  [[[0, 0], [0, 1]], [[1, 2], [3, 4]]])
    # per-dim lengths, None = batch max for that dim
    np.testing.assert_array_equal(sequence_padding([m1, m2], length=[1, None], seq_dims=2),
                                  [[[1, 0]], [[1, 2]]])
    # a single int applies to every padded dim
    np.testing.assert_array_equal(sequence_padding([m1, m2], length=3, seq_dims=2),
                                  [[[1, 0, 0], [0, 0, 0], [0, 0, 0]],
                                   [[1, 2, 0], [3, 4, 0], [0, 0, 0]]])


def test_padding_accepts_arrays_and_generators():
    out = sequence_padding(np.array(x) for x in SEQS)
    np.testing.assert_array_equal(out, [[1, 2, 3], [4, 0, 0], [5, 6, 0]])


@pytest.mark.parametrize('inputs, kwargs, match', [
    ([], {}, 'inputs is empty'),
    ([[1, 2], [[1], [2]]], {}, 'inconsistent nesting depth'),
    ([[[1, 2], [3]]], {}, 'ragged'),
    ([[[1, 2]], [[1, 2, 3]]], {}, 'trailing shape'),
    ([[1], [2]], {'seq_dims': 2}, 'seq_dims=2'),
    ([[1], [2]], {'seq_dims': 0}, 'seq_dims'),
    ([[1], [2]], {'mode': 'middle'}, 'mode'),
    ([[1], [2]], {'length': -1}, 'non-negative'),
    ([[1], [2]], {'length': [1, 2]}, 'entries but seq_dims=1'),
    ([[1], [2]], {'multiple': 0}, 'multiple'),
    ([1, 2], {}, 'scalar'),
])
def test_padding_errors(inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sequence_padding(inputs, **kwargs)


# ----------------------------------------------------------------------------- truncate_sequences

def test_truncate_sequences_keeps_sep_with_index_minus_2():
    a = ['[CLS]', 'a1', 'a2', 'a3', 'a4', '[SEP]']
    b = ['b1', 'b2', 'b3', '[SEP]']
    # total 10 > 7: pop a4 (a longest), pop a3 (a longest), tie 4/4 → first (a): pop a2
    out = truncate_sequences(7, -2, a, b)
    assert a == ['[CLS]', 'a1', '[SEP]']  # in place, like bert4keras' Tokenizer.encode relies on
    assert b == ['b1', 'b2', 'b3', '[SEP]']
    assert out[0] is a and out[1] is b


def test_truncate_sequences_per_sequence_indices():
    a, b = [1, 2, 3, 4, 5], [6, 7, 8, 9]
    # 9: a→[1,2,3,4]; 8 (tie→a): a→[1,2,3]; 7: b→[7,8,9]; 6 (tie→a): a→[1,2]; 5 ≤ 5
    truncate_sequences(5, [-1, 0], a, b)
    assert a == [1, 2] and b == [7, 8, 9]


def test_truncate_sequences_none_empty_and_non_lists():
    a = [1, 2, 3, 4, 5]
    out = truncate_sequences(3, -2, a, None)
    assert out == [[1, 2, 5], None] and a == [1, 2, 5]
    # the None/empty sequence keeps its position, so per-sequence indices stay aligned
    b = [1, 2, 3]
    assert truncate_sequences(2, [5, 0], [], b) == [[], [2, 3]]  # index 0 applies to b
    # tuples are copied to lists; the caller's tuple is untouched
    t = (1, 2, 3)
    assert truncate_sequences(1, -1, t) == [[1]] and t == (1, 2, 3)
    # already short enough: nothing happens
    c = [1, 2]
    assert truncate_sequences(10, -2, c) == [[1, 2]]


def test_truncate_sequences_errors():
    with pytest.raises(ValueError, match='maxlen'):
        truncate_sequences(-1, -2, [1, 2])
    with pytest.raises(ValueError, match='indices'):
        truncate_sequences(1, [-1], [1, 2], [3])
    with pytest.raises(ValueError, match='cannot reach maxlen'):
        truncate_sequences(0, -2, [1])  # pop(-2) on a 1-element list


# ----------------------------------------------------------------------------- text_segmentate

SEPS = '\n。！？'


def test_text_segmentate_hand_cases():
    text = '今天天气很好。我们去公园玩吧！你觉得怎么样？'  # 7 + 8 + 7 chars
    assert text_segmentate(text, 10, SEPS) == ['今天天气很好。', '我们去公园玩吧！', '你觉得怎么样？']
    # with room for 16, the last two clauses (15 chars) stay together
    assert text_segmentate(text, 16, SEPS) == ['今天天气很好。', '我们去公园玩吧！你觉得怎么样？']
    # greedy merge inside one separator level: 3 + 3 fit in maxlen - 1 = 6, the 7-char one doesn't
    assert text_segmentate('甲乙。丙丁。戊己庚辛壬癸。', 7, SEPS) == ['甲乙。丙丁。', '戊己庚辛壬癸。']
    # 3 + 3 chars would reach maxlen=6 only with the re-glued '。' counted: they must not merge
    assert text_segmentate('甲乙。丙丁戊。', 6, SEPS) == ['甲乙。', '丙丁戊。']
    # strips are removed from every piece
    assert text_segmentate(text, 10, SEPS, strips='。！？') == ['今天天气很好', '我们去公园玩吧', '你觉得怎么样']
    # short text: one stripped piece
    assert text_segmentate('  短句。\n', 10, SEPS) == ['短句。']


def test_text_segmentate_paragraph_invariants():
    sentences = ['自然语言处理是人工智能的一个重要方向。', '它研究人与计算机之间用自然语言进行有效通信的理论和方法！',
                 '这门学科融合了语言学、计算机科学和数学？', '预训练模型改变了这个领域。', '好。',
                 '比赛中常用的技巧包括对抗训练和指数滑动平均。']
    text = '\n'.join([''.join(sentences[:2]), ''.join(sentences[2:4]), ''.join(sentences[4:])])
    maxlen = 32
    assert all(len(s) <= maxlen for s in sentences)  # so every piece can fit
    pieces = text_segmentate(text, maxlen, SEPS)
    assert len(pieces) > 1
    assert all(0 < len(p) <= maxlen for p in pieces)
    # separators are kept; only the newlines (whitespace stripped from piece ends) disappear
    assert ''.join(pieces) == text.replace('\n', '')
    # strips apply at every recursion level, so check them piece by piece
    stripped = text_segmentate(text, maxlen, SEPS, strips='。！？')
    # (the piece count may differ: stripping a chunk's final '。' can make it fit without a split)
    for piece in stripped:
        assert 0 < len(piece) <= maxlen and piece in text
        assert piece[0] not in '。！？' and piece[-1] not in '。！？'
    # removing every strip character from both sides gives the same characters in order
    table = str.maketrans('', '', '。！？\n')
    assert ''.join(stripped).translate(table) == text.translate(table)


# ----------------------------------------------------------------------------- DataGenerator

def make_data(n=10):
    """(token_ids, label): sample i has ids [1..i+1] and label i."""
    return [(list(range(1, i + 2)), i) for i in range(n)]


class BatchGenerator(DataGenerator):
    """Written the classic bert4keras way."""

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (token_ids, label) in self.sample(random):
            batch_token_ids.append(token_ids)
            batch_segment_ids.append([0] * len(token_ids))
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def labels_of(batch):
    return batch[1][:, 0].tolist()


def test_len_and_steps():
    assert len(BatchGenerator(make_data(10), batch_size=4)) == 3
    assert BatchGenerator(make_data(8), batch_size=4).steps == 2
    assert len(BatchGenerator(make_data(1), batch_size=32)) == 1
    g = BatchGenerator(make_data(0), batch_size=4)
    assert len(g) == 0
    assert g.buffer_size == 4000  # bert4keras default: 1000 batches


def test_sample_flags_last_item():
    g = BatchGenerator(['a', 'b', 'c'], batch_size=2)
    assert list(g.sample()) == [(False, 'a'), (False, 'b'), (True, 'c')]
    assert list(BatchGenerator([], batch_size=2).sample()) == []


def test_batches_in_order():
    g = BatchGenerator(make_data(10), batch_size=4)
    batches = list(g)
    assert [labels_of(b) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    (x, s), _ = batches[2]
    np.testing.assert_array_equal(x, [[1, 2, 3, 4, 5, 6, 7, 8, 9, 0], list(range(1, 11))])
    np.testing.assert_array_equal(s, np.zeros((2, 10)))


def test_forfit_loops_past_one_epoch():
    g = BatchGenerator(make_data(10), batch_size=4)
    got = [labels_of(b) for b in take(g.batches(random=False), 5)]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [0, 1, 2, 3], [4, 5, 6, 7]]


def test_forfit_random_covers_each_item_once_per_epoch():
    np.random.seed(0)
    g = BatchGenerator(make_data(10), batch_size=4)
    stream = g.batches()  # random=True by default, as bert4keras' forfit
    orders = []
    for _ in range(3):
        epoch = take(stream, len(g))
        assert [len(labels_of(b)) for b in epoch] == [4, 4, 2]
        order = sum((labels_of(b) for b in epoch), [])
        assert sorted(order) == list(range(10))
        for b in epoch:  # inputs still match their labels after shuffling
            for row, label in zip(b[0][0], labels_of(b)):
                assert row[:label + 1].tolist() == list(range(1, label + 2))
                assert not row[label + 1:].any()
        orders.append(order)
    assert orders[0] != list(range(10)) and orders[0] != orders[1]
    # seeded: the same seed replays the same order
    np.random.seed(0)
    replay = sum((labels_of(b) for b in take(BatchGenerator(make_data(10), 4).batches(), 3)), [])
    assert replay == orders[0]


def test_forfit_yields_tuples_for_keras3():
    # [X, S], Y → (X, S), Y: tf.data (behind Keras 3 fit on TensorFlow) reads lists as tensors
    g = BatchGenerator(make_data(3), batch_size=2)
    batch = next(g.batches(random=False))
    assert type(batch) is tuple and type(batch[0]) is tuple and len(batch[0]) == 2
    np.testing.assert_array_equal(batch[0][0], [[1, 0], [1, 2]])
    np.testing.assert_array_equal(batch[1], [[0], [1]])


def test_fortest_yields_inputs_only_and_keeps_going():
    g = BatchGenerator(make_data(5), batch_size=2)
    got = take(iter(g.fortest().as_numpy_iterator()), 4)  # 3 batches per epoch: the 4th is the next epoch's first
    for item in got:
        # Keras 3 generators must yield tuples: (inputs,) with inputs = (token_ids, segment_ids)
        assert type(item) is tuple and len(item) == 1
        assert type(item[0]) is tuple and len(item[0]) == 2
    inputs = [item[0] for item in got]
    np.testing.assert_array_equal(inputs[0][0], [[1, 0], [1, 2]])
    np.testing.assert_array_equal(inputs[0][1], [[0, 0], [0, 0]])
    np.testing.assert_array_equal(inputs[2][0], [[1, 2, 3, 4, 5]])
    np.testing.assert_array_equal(inputs[3][0], inputs[0][0])
    # single-input batches: (X,)
    class Single(DataGenerator):
        def __iter__(self, random=False):
            yield np.ones((2, 3)), np.zeros((2,))
    (x,) = next(Single([0]).fortest().as_numpy_iterator())
    np.testing.assert_array_equal(x, np.ones((2, 3)))


class Reiterable:
    """Iterable without __len__ (like a file reader): takes the buffered-shuffle path."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))


def test_buffered_shuffle_on_unsized_iterable():
    np.random.seed(1)
    g = DataGenerator(Reiterable(50), batch_size=2, buffer_size=5)
    assert g.steps is None
    with pytest.raises(TypeError, match='steps'):
        len(g)
    for _ in range(2):  # re-iterable: every epoch is complete
        flags, items = zip(*g.sample(random=True))
        assert sorted(items) == list(range(50))
        assert items != tuple(range(50))
        assert flags == (False,) * 49 + (True,)
        # the buffer holds at most buffer_size + 1 items, so output k comes from inputs < 6 + k
        assert all(item < 6 + k for k, item in enumerate(items))


def test_one_shot_generator_input():
    np.random.seed(2)
    g = BatchGenerator((d for d in make_data(6)), batch_size=4, buffer_size=3)
    assert g.steps is None
    stream = g.batches()
    first_epoch = take(stream, 2)
    assert sorted(sum((labels_of(b) for b in first_epoch), [])) == list(range(6))
    # the generator is spent: the next epoch would be empty, which must not spin forever
    with pytest.raises(ValueError, match='no batches'):
        next(stream)


def test_generator_errors():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='batch_size'):
            DataGenerator([1], batch_size=bad)
    with pytest.raises(ValueError, match='buffer_size'):
        DataGenerator([1], batch_size=1, buffer_size=0)
    with pytest.raises(NotImplementedError):
        next(DataGenerator([1]).batches())
    with pytest.raises(NotImplementedError):
        DataGenerator([1]).forfit()
    with pytest.raises(ValueError, match='no batches'):
        next(BatchGenerator([], batch_size=2).batches())


@pytest.mark.filterwarnings('ignore:`shuffle=True` was passed')  # Keras' note on generators
def test_forfit_drives_keras_fit():
    keras = pytest.importorskip('keras')
    np.random.seed(3)
    g = BatchGenerator(make_data(10), batch_size=4)
    token_ids = keras.Input(shape=(None,), dtype='int32')
    segment_ids = keras.Input(shape=(None,), dtype='int32')
    h = keras.layers.Embedding(16, 4)(token_ids)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model([token_ids, segment_ids], keras.layers.Dense(10)(h))
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  optimizer='sgd')
    history = model.fit(g.forfit(), steps_per_epoch=len(g), epochs=2, verbose=0)
    assert len(history.history['loss']) == 2
    preds = model.predict(g.fortest(), steps=len(g), verbose=0)
    assert preds.shape == (10, 10)


def test_forfit_accepts_batches_of_different_lengths():
    """Keras 3 fixes a generator's non-batch dims from its first two batches; forfit must not."""
    keras = pytest.importorskip('keras')

    class VaryingLengths(DataGenerator):
        def __iter__(self, random=False):
            for length in (5, 5, 9, 3):  # first two batches agree, the third is longer
                yield (np.ones((2, length), 'int32'),), np.zeros((2, 1), 'float32')

    g = VaryingLengths([0, 1, 2, 3], batch_size=1)
    inputs = keras.Input(shape=(None,), dtype='int32')
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1)(h))
    model.compile(loss='mse', optimizer='sgd')
    history = model.fit(g.forfit(), steps_per_epoch=4, epochs=2, verbose=0)
    assert len(history.history['loss']) == 2
    assert model.predict(g.fortest(), steps=4, verbose=0).shape == (8, 1)


# ----------------------------------------------------------------------------- to_dataset

class SampleGenerator(DataGenerator):
    """For to_dataset, as in bert4keras, __iter__ yields single samples."""

    def __iter__(self, random=False):
        for is_end, (token_ids, label) in self.sample(random):
            yield token_ids, label


class NestedSampleGenerator(DataGenerator):
    def __iter__(self, random=False):
        for is_end, (token_ids, label) in self.sample(random):
            yield (token_ids, [0] * len(token_ids)), (label,)


@pytest.fixture(scope='module')
def tf():
    return pytest.importorskip('tensorflow')


def as_numpy(batch):
    if isinstance(batch, dict):
        return {k: v.numpy() for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return tuple(as_numpy(b) for b in batch)
    return batch.numpy()


def test_to_dataset_fixed_shapes(tf):
    np.random.seed(4)
    data = [([i, i + 1, i + 2], i) for i in range(8)]
    ds = SampleGenerator(data, batch_size=4).to_dataset(('int32', 'int32'), ([3], []))
    batches = [as_numpy(b) for b in ds.take(2)]
    labels = []
    for x, y in batches:
        assert x.shape == (4, 3) and y.shape == (4,) and x.dtype == np.int32
        for row, label in zip(x, y):
            assert row.tolist() == [label, label + 1, label + 2]
        labels += y.tolist()
    assert sorted(labels) == list(range(8))  # two batches = one shuffled epoch


def test_to_dataset_padded_batch(tf):
    np.random.seed(5)
    gen = SampleGenerator(make_data(8), batch_size=4)
    ds = gen.to_dataset(('int32', 'int64'), ([None], []), padded_batch=True)
    labels = []
    for x, y in (as_numpy(b) for b in ds.take(2)):
        assert y.dtype == np.int64
        assert x.shape == (4, max(y) + 1)  # padded to the longest sample of this batch
        for row, label in zip(x, y):
            assert row.tolist() == list(range(1, label + 2)) + [0] * (max(y) - label)
        labels += y.tolist()
    assert sorted(labels) == list(range(8))
    # a fixed padded shape pads every batch to that width
    ds = gen.to_dataset(('int32', 'int64'), ([12], []), padded_batch=True)
    x, y = as_numpy(next(iter(ds)))
    assert x.shape == (4, 12)


def test_to_dataset_names_flat(tf):
    np.random.seed(6)
    gen = SampleGenerator(make_data(8), batch_size=4)
    ds = gen.to_dataset(('int32', 'int32'), ([None], []), names=('Input-Token', 'label'),
                        padded_batch=True)
    batch = as_numpy(next(iter(ds)))
    assert isinstance(batch, dict) and set(batch) == {'Input-Token', 'label'}
    for row, label in zip(batch['Input-Token'], batch['label']):
        assert row[:label + 1].tolist() == list(range(1, label + 2))


def test_to_dataset_names_nested(tf):
    np.random.seed(7)
    gen = NestedSampleGenerator(make_data(8), batch_size=4)
    ds = gen.to_dataset(
        types=(('int32', 'int32'), ('int32',)),
        shapes=(([None], [None]), ([],)),
        names=(('Input-Token', 'Input-Segment'), ('label',)),
        padded_batch=True,
    )
    inputs, targets = as_numpy(next(iter(ds)))
    # one target name: the bare tensor (Keras 3 matches dict targets only to multi-output models)
    assert set(inputs) == {'Input-Token', 'Input-Segment'} and isinstance(targets, np.ndarray)
    width = max(targets) + 1
    assert inputs['Input-Token'].shape == inputs['Input-Segment'].shape == (4, width)
    assert not inputs['Input-Segment'].any()
    for row, label in zip(inputs['Input-Token'], targets):
        assert row.tolist() == list(range(1, label + 2)) + [0] * (width - label - 1)


def test_to_dataset_structure_errors(tf):
    gen = SampleGenerator(make_data(4), batch_size=2)
    with pytest.raises(ValueError, match='do not match'):
        gen.to_dataset(('int32', 'int32'), ([None],))
    with pytest.raises(ValueError, match='names'):
        gen.to_dataset(('int32', 'int32'), ([None], []), names=('only-one',))


# ----------------------------------------------------------------------------- decoder re-export

def test_decoders_are_reexported_from_snippets():
    # Run in a fresh interpreter with a stand-in decoders module, so this test neither depends on
    # decoders.py existing yet nor disturbs this process's modules.
    code = textwrap.dedent('''
        import sys, types
        fake = types.ModuleType('bert4keras_ext.decoders')
        class ViterbiDecoder: pass
        class AutoRegressiveDecoder: pass
        fake.ViterbiDecoder, fake.AutoRegressiveDecoder = ViterbiDecoder, AutoRegressiveDecoder
        import bert4keras_ext
        sys.modules['bert4keras_ext.decoders'] = fake
        bert4keras_ext.decoders = fake
        from bert4keras_ext.snippets import ViterbiDecoder as V, AutoRegressiveDecoder as A
        assert V is ViterbiDecoder and A is AutoRegressiveDecoder
        import bert4keras_ext.snippets as s
        assert 'ViterbiDecoder' in s.__all__
        del s.ViterbiDecoder  # as if decoders.py had imported snippets first (circular import)
        assert s.ViterbiDecoder is ViterbiDecoder  # resolved lazily by the module __getattr__
        print('ok')
    ''')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'
