"""Length bucketing of DataGenerator (``bucket=`` / ``length=``; bert4keras_ext.bucketing).

References: bert4keras' own order (``np.random.permutation`` of the indices) when bucketing is off; for
bucketing, the properties the user relies on, checked by counting: every item once per epoch, each
batch a run of neighbours in its window's length order, the partial batch last, and the padding a
bert4keras ``__iter__`` produces, computed by hand from the batch widths.
"""
import os

import numpy as np
import pytest

from bert4keras_ext.bucketing import bucketed, default_length
from bert4keras_ext.snippets import DataGenerator, sequence_padding


def _texts(n, seed=0, low=1, high=200):
    rng = np.random.RandomState(seed)
    return [('x' * int(k), i) for i, k in enumerate(rng.randint(low, high, size=n))]  # (text, label)


class TextGenerator(DataGenerator):
    """The bert4keras example shape: encode, collect batch_size items, pad to the batch's longest."""

    def __iter__(self, random=False):
        ids, labels = [], []
        for is_end, (text, label) in self.sample(random):
            ids.append([1] * len(text))
            labels.append([label])
            if len(ids) == self.batch_size or is_end:
                yield sequence_padding(ids), np.array(labels)
                ids, labels = [], []


def _epoch(gen, random=True):
    return list(gen.__iter__(random))


def test_off_by_default_keeps_bert4keras_order():
    data = _texts(50)
    gen = DataGenerator(data, batch_size=8)
    assert gen.bucket is None
    np.random.seed(3)
    got = [item for _, item in gen.sample(True)]
    np.random.seed(3)
    want = [data[i] for i in np.random.permutation(len(data))]  # bert4keras: a fresh permutation
    assert got == want
    assert [item for _, item in gen.sample(False)] == data


def test_every_item_once_and_batches_are_length_neighbours_in_their_window():
    data = _texts(203, seed=1)  # 203 = 25 full batches of 8 + 3
    batch, bucket = 8, 5
    gen = TextGenerator(data, batch_size=batch, bucket=bucket)
    np.random.seed(0)
    flags_items = list(gen.sample(True))
    items = [item for _, item in flags_items]
    assert sorted(items, key=lambda t: t[1]) == data  # each exactly once
    assert [flag for flag, _ in flags_items] == [False] * 202 + [True]
    window = batch * bucket
    for start in range(0, len(items), window):
        block = items[start:start + window]
        ranks = sorted(range(len(block)), key=lambda i: len(block[i][0]))
        lengths_sorted = [len(block[i][0]) for i in ranks]
        for b in range(0, len(block), batch):
            chunk = sorted(len(t[0]) for t in block[b:b + batch])
            # a chunk is a run of consecutive ranks in the window's length order (ties aside)
            lo = lengths_sorted.index(chunk[0])
            assert any(lengths_sorted[k:k + len(chunk)] == chunk for k in range(lo, len(block)))
    # the partial batch (3 items) is the last one: batch boundaries stay aligned
    widths = [len(ids) for ids, _ in _epoch(gen)]
    assert widths == [batch] * 25 + [3]


def test_batches_carry_less_padding_and_cover_the_epoch():
    data = _texts(640, seed=2)
    totals = {}
    for bucket in (None, 10):
        gen = TextGenerator(data, batch_size=16, bucket=bucket)
        np.random.seed(1)
        batches = _epoch(gen)
        labels = sorted(int(v) for _, y in batches for v in y[:, 0])
        assert labels == list(range(640))
        real = sum(len(text) for text, _ in data)
        padded = sum(ids.size for ids, _ in batches)  # rows × the batch's longest row, by hand
        assert padded >= real and sum(int(ids.sum()) for ids, _ in batches) == real
        totals[bucket] = padded
    # uniform lengths 1..199: unbucketed batches of 16 pad to ~188 on average (~1.9x the real ~100);
    # windows of 160 sorted into 10 batches leave ~1/10 of the spread
    assert totals[10] < 0.65 * totals[None]


def test_forfit_gives_bucketed_batches_and_fortest_keeps_order():
    data = _texts(96, seed=3)
    gen = TextGenerator(data, batch_size=8, bucket=4)
    np.random.seed(5)
    dataset = gen.forfit()
    seen = []
    for _ in range(len(gen)):  # one epoch of raw __iter__ batches, as bert4keras' next(generator)
        _, labels = next(dataset)
        seen.extend(int(v) for v in labels[:, 0])
    assert sorted(seen) == list(range(96))
    test_order = [int(v) for _, y in gen.__iter__(False) for v in y[:, 0]]
    assert test_order == list(range(96))


def test_stream_data_without_len_is_bucketed_too():
    class Stream:
        def __iter__(self):
            return iter(_texts(70, seed=4))

    gen = TextGenerator(Stream(), batch_size=8, buffer_size=20, bucket=3)
    np.random.seed(2)
    batches = _epoch(gen)
    assert sorted(int(v) for _, y in batches for v in y[:, 0]) == list(range(70))
    assert [len(y) for _, y in batches] == [8] * 8 + [6]


def test_default_length_and_a_custom_one():
    assert default_length('abcd') == 4
    assert default_length(('abc', 1)) == 3
    assert default_length(('ab', 'cde', 0)) == 5  # a sentence pair counts both texts
    assert default_length({'text': 'abcdef', 'label': 2}) == 6
    assert default_length(([5, 6, 7], 1)) == 3  # pre-tokenized ids
    assert default_length(np.arange(4)) == 4
    with pytest.raises(TypeError, match='length=lambda'):
        default_length(7)

    items = [(i, 'x' * (i % 7)) for i in range(30)]
    np.random.seed(0)
    by_id = [i for i, _ in bucketed(iter(items), batch_size=5, bucket=6, length=lambda item: -item[0])]
    assert sorted(by_id) == list(range(30))
    chunks = [sorted(by_id[k:k + 5]) for k in range(0, 30, 5)]
    # one window of 30 sorted by -id: chunks are ids 25-29, 20-24, ... in some order; within a chunk the
    # order is descending ids (the sort order)
    assert sorted(chunks) == [list(range(k, k + 5)) for k in range(0, 30, 5)]
    assert by_id[:5] == sorted(by_id[:5], reverse=True)


def test_bad_settings_fail_clearly():
    for bad in (0, -1, 2.5, True, '10'):
        with pytest.raises(ValueError, match='bucket must be None'):
            DataGenerator([('a', 0)], batch_size=2, bucket=bad)
    with pytest.raises(ValueError, match='length must be a callable'):
        DataGenerator([('a', 0)], bucket=2, length=3)
    gen = DataGenerator([('a', 0), ('b', 1)], batch_size=1, bucket=2, length=lambda item: None)
    with pytest.raises(ValueError, match='must return a finite number'):
        list(gen.sample(True))
    gen = DataGenerator([1, 2, 3], batch_size=1, bucket=2)
    with pytest.raises(TypeError, match='cannot tell the length'):
        list(gen.sample(True))


def test_sentiment_padding_with_and_without_bucketing(sentiment_dir):
    """The real data of the README figure: padded tokens per epoch at batch 32, maxlen 256."""
    with open(os.path.join(sentiment_dir, 'sentiment.train.data'), encoding='utf-8') as f:
        data = [(line.rsplit('\t', 1)[0], 0) for line in f if line.strip()]
    lengths = {}
    for bucket in (None, 100):
        gen = DataGenerator(data, batch_size=32, bucket=bucket)
        np.random.seed(0)
        order = [min(len(text) + 2, 256) for _, (text, _) in gen.sample(True)]  # [CLS] text [SEP], cut
        batches = [order[i:i + 32] for i in range(0, len(order), 32)]
        lengths[bucket] = (sum(order), sum(len(b) * max(b) for b in batches))
    real = lengths[None][0]
    assert lengths[100][0] == real
    assert lengths[None][1] > 1.5 * real  # without bucketing, well over a third of the work is padding
    assert lengths[100][1] < 1.1 * real  # with it, under a tenth
