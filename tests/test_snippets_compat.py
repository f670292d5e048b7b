"""bert4keras 0.11.5 ``snippets`` compatibility: every public name, and the semantics scripts use.

References are hand-computed values, plain re-implementations written here, or outputs of
bert4keras 0.11.5's own functions (transcribed; bert4keras itself is not installed in tests).
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from bert4keras_ext import snippets
from bert4keras_ext.snippets import (
    DataGenerator,
    WebServing,
    convert_to_str,
    convert_to_unicode,
    delete_arguments,
    insert_arguments,
    is_one_of,
    longest_common_subsequence,
    longest_common_substring,
    lowercase_and_normalize,
    open as b4k_open,
    orthogonally_resize,
    parallel_apply,
    parallel_apply_generator,
    sequence_padding,
    strQ2B,
    string_matching,
)

# Every public name of bert4keras 0.11.5's bert4keras/snippets.py (from its source: the module-level
# defs/classes, `is_py2` / `basestring`, `uniout` served by its import hook, and the names it
# imports that scripts reach through it: K, keras, tf, np). `Hook` is deleted by the module itself.
BERT4KERAS_SNIPPETS_NAMES = [
    'to_array', 'is_string', 'strQ2B', 'string_matching', 'convert_to_unicode', 'convert_to_str',
    'lowercase_and_normalize', 'open', 'parallel_apply_generator', 'parallel_apply',
    'sequence_padding', 'truncate_sequences', 'text_segmentate', 'is_one_of', 'DataGenerator',
    'ViterbiDecoder', 'softmax', 'AutoRegressiveDecoder', 'insert_arguments', 'delete_arguments',
    'longest_common_substring', 'longest_common_subsequence', 'orthogonally_resize', 'WebServing',
    'uniout', 'is_py2', 'basestring', 'K', 'keras', 'tf', 'np',
]


def test_every_bert4keras_snippets_name_is_importable():
    missing = [name for name in BERT4KERAS_SNIPPETS_NAMES if not hasattr(snippets, name)]
    assert missing == []
    from bert4keras_ext.snippets import uniout  # noqa: F401  (the examples' py2 printing helper)
    assert snippets.is_py2 is False and snippets.basestring is str
    assert hasattr(snippets.K, 'mean') and hasattr(snippets.keras, 'Model')
    assert hasattr(snippets.tf, 'data')


def test_snippets_and_tokenizers_import_without_tensorflow():
    code = textwrap.dedent('''
        import sys
        sys.modules['tensorflow'] = None  # as if not installed
        sys.modules['keras'] = None
        import bert4keras_ext.snippets as s, bert4keras_ext.tokenizers as t
        assert s.WebServing and s.parallel_apply and s.DataGenerator and t.TokenizerBase
        print('ok')
    ''')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok'


# ----------------------------------------------------------------------------- strings

def test_string_helpers():
    assert strQ2B('ＡＢＣ\u3000１２３！，你好～') == 'ABC 123!,你好~'
    assert strQ2B('') == ''
    assert string_matching('今天天气不错', ['天气', 'xyz']) is True
    assert string_matching('今天天气不错', [r'^\d+$', '下雨']) is False
    assert convert_to_unicode('你好'.encode('utf-8')) == '你好'
    assert convert_to_unicode(b'\xff\xfeab') == 'ab'  # errors='ignore' by default
    assert convert_to_unicode('x') == 'x' and convert_to_str(b'ab') == 'ab'
    assert lowercase_and_normalize('Héllo ÉCOLE') == 'hello ecole'
    x = np.zeros(2)
    assert is_one_of(x, [1, x]) and not is_one_of(np.zeros(2), [1, x])


def lcs_length_brute_force(a, b):
    best = 0
    for mask in range(1 << len(a)):
        sub = [a[i] for i in range(len(a)) if mask >> i & 1]
        j = 0
        for ch in b:
            if j < len(sub) and sub[j] == ch:
                j += 1
        if j == len(sub):
            best = max(best, len(sub))
    return best


def test_longest_common_substring_and_subsequence():
    # values from bert4keras 0.11.5's own functions
    assert longest_common_substring('xabcy', 'abcabc') == (3, (1, 4, 0, 3))
    assert longest_common_substring('abc', 'xyz') == (0, (0, 0, 0, 0))
    assert longest_common_subsequence('abcbdab', 'bdcaba') == (4, [(1, 0), (2, 2), (3, 4), (5, 5)])
    assert longest_common_subsequence('我爱北京天安门', '北京是我爱的地方') == (2, [(0, 3), (1, 4)])
    rng = np.random.RandomState(0)
    for _ in range(200):
        a = ''.join(rng.choice(list('abc'), rng.randint(0, 8)))
        b = ''.join(rng.choice(list('abc'), rng.randint(0, 8)))
        n, (i0, i1, j0, j1) = longest_common_substring(a, b)
        assert a[i0:i1] == b[j0:j1] and i1 - i0 == n
        assert n == max([k for k in range(len(a) + 1) for s in range(len(a) - k + 1)
                         if a[s:s + k] in b] or [0])
        n, mapping = longest_common_subsequence(a, b)
        assert n == len(mapping) == lcs_length_brute_force(a, b)
        assert all(a[i] == b[j] for i, j in mapping)
        assert all(p[0] < q[0] and p[1] < q[1] for p, q in zip(mapping, mapping[1:]))


def test_orthogonally_resize():
    a = np.arange(12, dtype=float).reshape(4, 3)
    # rows 4 -> 6 with window 2: blocks [0,1],[2,3] each repeated twice, cropped; cols 3 -> 2 cropped
    expected = a[[0, 1, 0, 1, 2, 3]][:, :2]
    expected = expected / np.linalg.norm(expected) * np.linalg.norm(a)
    np.testing.assert_allclose(orthogonally_resize(a, (6, 2)), expected)
    np.testing.assert_allclose(orthogonally_resize(a, (6, 2))[0, 1], 1.2614257681502545)  # bert4keras
    np.testing.assert_allclose(orthogonally_resize(a, (4, 3)), a)
    with pytest.raises(ValueError, match='window'):
        orthogonally_resize(np.ones((3, 2)), (5, 2))
    with pytest.raises(ValueError, match='dims'):
        orthogonally_resize(a, (4,))


def test_insert_and_delete_arguments():
    class Base:
        def __init__(self, **kwargs):
            self.rest = kwargs

    class Child(Base):
        @insert_arguments(scale=2.0, name=None)
        @delete_arguments('with_pool')
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    c = Child(scale=3.0, other=1)
    assert (c.scale, c.name, c.rest) == (3.0, None, {'other': 1})
    assert Child().scale == 2.0
    with pytest.raises(TypeError, match="Child got an unexpected keyword argument 'with_pool'"):
        Child(with_pool=True)


# ----------------------------------------------------------------------------- open

def test_open_reads_writes_and_indexes_lines(tmp_path):
    path = str(tmp_path / 'corpus.txt')
    lines = ['第一行\n', 'second line\n', '\n', '最后一行']
    with b4k_open(path, 'w', encoding='utf-8') as f:
        for line in lines:
            f.write(line)
    with b4k_open(path, encoding='utf-8') as f:
        assert list(f) == lines
    with b4k_open(path, encoding='utf-8') as f:
        assert f.next() == lines[0] and next(f) == lines[1]
    with b4k_open(path, encoding='utf-8') as f:
        assert f.readline() == lines[0] and f.readlines() == lines[1:]

    cache = str(tmp_path / 'offsets.json')
    f = b4k_open(path, encoding='utf-8', indexable=cache)
    assert len(f) == 4
    assert [f[3], f[0], f[-3], f[2]] == [lines[3], lines[0], lines[1], lines[2]]
    assert f[1:3] == lines[1:3]
    assert list(f) == lines[3:]  # as in bert4keras, iteration goes on from the last line read
    f.seek(0)
    assert list(f) == lines
    f.close()
    with open(cache) as c:  # the builtin: the cache is bert4keras' JSON list of line starts
        starts = json.load(c)
    assert starts == [0, len(lines[0].encode()), len(''.join(lines[:2]).encode()),
                      len(''.join(lines[:3]).encode())]
    g = b4k_open(path, encoding='utf-8', indexable=cache)  # loaded from the cache
    assert g.offsets == starts and g[1] == lines[1]
    with pytest.raises(IndexError, match='4 lines'):
        g[4]
    g.close()
    with b4k_open(path, encoding='utf-8') as h:
        with pytest.raises(TypeError, match='indexable=True'):
            h[0]
    with b4k_open(path, 'rb', indexable=True) as b:  # binary mode indexes too
        assert b[1] == lines[1].encode()


# ----------------------------------------------------------------------------- parallel_apply

def slow_square(x):
    time.sleep(0.01 * (x % 3))
    return x * x


@pytest.mark.parametrize('dummy', [True, False])
def test_parallel_apply_orders_and_callbacks(dummy):
    items = list(range(20))
    unordered = parallel_apply(slow_square, iter(items), workers=3, max_queue_size=4, dummy=dummy)
    assert sorted(unordered) == [x * x for x in items]
    ordered = parallel_apply(slow_square, items, 3, 4, dummy=dummy, unordered=False)
    assert ordered == [x * x for x in items]
    got = []
    assert parallel_apply(slow_square, items, 2, 2, callback=got.append, dummy=dummy) is None
    assert sorted(got) == [x * x for x in items]
    pairs = list(parallel_apply_generator(slow_square, items, 2, 3, dummy=dummy))
    assert sorted(pairs) == [(i, i * i) for i in items]


def test_parallel_apply_process_seeds_and_errors():
    def draw(_):
        return os.getpid(), float(np.random.rand())

    # random_seeds=True: forked workers reseed, so they do not repeat each other's numbers
    out = parallel_apply(draw, range(8), workers=2, max_queue_size=2)
    assert os.getpid() not in {pid for pid, _ in out}  # ran in worker processes
    assert len(set(v for _, v in out)) == 8
    # explicit seeds: worker k calls np.random.seed(seeds[k]) -> a single worker is reproducible
    first = parallel_apply(lambda _: float(np.random.rand()), range(3), 1, 1, random_seeds=[7],
                           unordered=False)
    np.testing.assert_allclose(first, np.random.RandomState(7).rand(3))

    def fail_on_3(x):
        if x == 3:
            raise KeyError('bad item')
        return x

    for dummy in (True, False):
        with pytest.raises(RuntimeError, match=r"KeyError\('bad item'\) on item 3"):
            parallel_apply(fail_on_3, range(6), 2, 2, dummy=dummy)
    with pytest.raises(ValueError, match='workers'):
        parallel_apply(abs, [1], 0, 1)


# ----------------------------------------------------------------------------- WebServing

def request(url, data=None):
    body = None if data is None else urllib.parse.urlencode(data).encode('utf-8')
    with urllib.request.urlopen(url, data=body, timeout=10) as response:
        assert response.headers['Content-Type'].startswith('application/json')
        return json.loads(response.read().decode('utf-8'))


def test_webserving_routes_arguments_and_errors():
    calls = []

    def synonyms(text, n=2):
        calls.append((text, n))
        if text == 'boom':
            raise RuntimeError('model failed')
        return {'text': text, 'items': np.arange(n)}  # numpy values are JSON-ed with tolist()

    web = WebServing(host='127.0.0.1', port=0)
    web.route('/gen_synonyms', synonyms, {'text': (None, True), 'n': (int, False)})
    web.route('/post', lambda a, b: a + b, {'a': (int, True), 'b': (int, True)}, method='POST')
    thread = threading.Thread(target=web.start, daemon=True)
    thread.start()
    try:
        assert web.wait_started(10)
        base = 'http://127.0.0.1:%d' % web.port
        assert web.port != 0
        query = urllib.parse.urlencode({'text': '你好', 'n': '3'})
        assert request(base + '/gen_synonyms?' + query) == {
            'code': 0, 'desc': 'succeeded', 'data': {'text': '你好', 'items': [0, 1, 2]}}
        # optional argument left out: func's default; repeated argument: the last value
        assert request(base + '/gen_synonyms?text=a&text=b')['data'] == {'text': 'b', 'items': [0, 1]}
        assert request(base + '/gen_synonyms?n=3') == {'code': 1, 'desc': 'lack of "text" argument'}
        bad = request(base + '/gen_synonyms?text=x&n=many')
        assert bad['code'] == 1 and 'n' in bad['desc']
        assert request(base + '/gen_synonyms?text=boom') == {'code': 2, 'desc': 'model failed'}
        assert request(base + '/post', {'a': '2', 'b': '40'})['data'] == 42
        for path, status in (('/nowhere', 404), ('/post?a=1&b=2', 405)):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=10)
            assert e.value.code == status
            e.value.close()
        assert calls == [('你好', 3), ('b', 2), ('boom', 2)]
    finally:
        web.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_webserving_rejects_bad_routes():
    web = WebServing()
    with pytest.raises(ValueError, match='method'):
        web.route('/x', abs, {}, method='PUT')
    with pytest.raises(ValueError, match='arguments'):
        web.route('/x', abs, {'a': int})
    with pytest.raises(ValueError, match='path'):
        web.route('x', abs, {})


# ----------------------------------------------------------------------------- DataGenerator

def make_data(n=12):
    return [([1 + i % 7] * (2 + i % 5), i % 3) for i in range(n)]


class ClassificationGenerator(DataGenerator):
    """The bert4keras example shapes, selected by `mode`."""

    def __init__(self, data, batch_size, mode):
        super().__init__(data, batch_size)
        self.mode = mode

    def __iter__(self, random=False):
        batch_x, batch_s, batch_y = [], [], []
        for is_end, (ids, label) in self.sample(random):
            batch_x.append(ids)
            batch_s.append([0] * len(ids))
            batch_y.append([label])
            if len(batch_x) == self.batch_size or is_end:
                x, s = sequence_padding(batch_x), sequence_padding(batch_s)
                if self.mode == 'loss_layer':
                    yield [x, s, sequence_padding(batch_y)], None
                elif self.mode == 'list_labels':
                    yield [x, s], batch_y  # a plain list of [label] lists
                elif self.mode == 'flat_labels':
                    yield [x, s], [y for (y,) in batch_y]
                else:
                    yield [x, s], np.array(batch_y)
                batch_x, batch_s, batch_y = [], [], []


def test_batches_convert_bert4keras_shapes():
    g = ClassificationGenerator(make_data(5), 2, 'list_labels')
    (x, s), y = next(g.batches(random=False))
    assert isinstance(y, np.ndarray) and y.tolist() == [[0], [1]]
    np.testing.assert_array_equal(x, [[1, 1, 0], [2, 2, 2]])
    ((x, s, y),) = next(ClassificationGenerator(make_data(5), 2, 'loss_layer').batches(False))
    assert y.tolist() == [[0], [1]]

    class Ragged(DataGenerator):
        def __iter__(self, random=False):
            yield [np.ones((2, 3))], [[1, 2], [3]]

    with pytest.raises(ValueError, match='sequence_padding'):
        next(Ragged([0]).batches())


def tiny_classifier(keras):
    token_ids = keras.Input(shape=(None,), dtype='int32')
    segment_ids = keras.Input(shape=(None,), dtype='int32')
    h = keras.layers.Embedding(8, 4)(token_ids)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return token_ids, segment_ids, keras.layers.Dense(3, activation='softmax', name='probs')(h)


@pytest.mark.filterwarnings('ignore:`shuffle=True` was passed')
@pytest.mark.parametrize('mode', ['array_labels', 'list_labels', 'flat_labels', 'loss_layer'])
def test_forfit_trains_every_bert4keras_batch_shape(mode):
    keras = pytest.importorskip('keras')
    from bert4keras_ext.layers import Loss

    np.random.seed(0)
    token_ids, segment_ids, probs = tiny_classifier(keras)
    if mode == 'loss_layer':
        class CrossEntropy(Loss):
            def compute_loss(self, inputs, mask=None):
                y_true, y_pred = inputs
                return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y_true, y_pred))

        labels = keras.Input(shape=(1,), dtype='int32')
        output = CrossEntropy(1)([labels, probs])
        model = keras.Model([token_ids, segment_ids, labels], output)
        model.compile(optimizer='sgd')
    else:
        model = keras.Model([token_ids, segment_ids], probs)
        model.compile(optimizer='sgd', loss='sparse_categorical_crossentropy')
    g = ClassificationGenerator(make_data(12), 5, mode)  # batches of lengths 6, 6, 5: they vary
    history = model.fit(g.forfit(), steps_per_epoch=len(g), epochs=2, verbose=0)
    assert len(history.history['loss']) == 2 and np.isfinite(history.history['loss']).all()


class SampleGenerator(DataGenerator):
    """to_dataset samples (bert4keras: __iter__ yields single samples), lists included."""

    def __iter__(self, random=False):
        for is_end, (ids, label) in self.sample(random):
            yield [ids, [0] * len(ids)], [label]


@pytest.mark.filterwarnings('ignore:`shuffle=True` was passed')
def test_to_dataset_names_fit_a_single_output_model():
    keras = pytest.importorskip('keras')
    np.random.seed(1)
    token_ids = keras.Input(shape=(None,), dtype='int32', name='Input-Token')
    segment_ids = keras.Input(shape=(None,), dtype='int32', name='Input-Segment')
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(8, 4)(token_ids))
    probs = keras.layers.Dense(3, activation='softmax', name='probs')(h)
    model = keras.Model([token_ids, segment_ids], probs)
    model.compile(optimizer='sgd', loss='sparse_categorical_crossentropy')

    g = SampleGenerator(make_data(12), batch_size=4)
    ds = g.to_dataset(types=(('int32', 'int32'), ('int32',)), shapes=(([None], [None]), ([],)),
                      names=(('Input-Token', 'Input-Segment'), ('probs',)), padded_batch=True)
    inputs, targets = next(iter(ds))
    assert set(inputs) == {'Input-Token', 'Input-Segment'}
    assert targets.shape == (4,)  # the one target name gives the bare tensor
    for row, label in zip(inputs['Input-Token'].numpy(), targets.numpy()):
        assert label in (0, 1, 2) and row[0] >= 1
    history = model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    assert np.isfinite(history.history['loss']).all()

    # several target names stay a dict keyed by output layer names (a two-output model)
    extra = keras.layers.Dense(1, name='score')(h)
    two = keras.Model([token_ids, segment_ids], [probs, extra])
    two.compile(optimizer='sgd', loss=['sparse_categorical_crossentropy', 'mse'])

    class TwoTargets(DataGenerator):
        def __iter__(self, random=False):
            for is_end, (ids, label) in self.sample(random):
                yield (ids, [0] * len(ids)), (label, float(label))

    ds = TwoTargets(make_data(12), 4).to_dataset(
        types=(('int32', 'int32'), ('int32', 'float32')), shapes=(([None], [None]), ([], [])),
        names=(('Input-Token', 'Input-Segment'), ('probs', 'score')), padded_batch=True)
    _, targets = next(iter(ds))
    assert set(targets) == {'probs', 'score'}
    np.testing.assert_allclose(targets['score'].numpy(), targets['probs'].numpy())
    assert np.isfinite(two.fit(ds, steps_per_epoch=2, verbose=0).history['loss']).all()


def test_next_on_forfit_yields_the_raw_batches_as_bert4keras_generator_did():
    """bert4keras' VAT example keeps `self.data = gen.forfit()` and calls `next(self.data)`."""
    import tensorflow as tf
    from bert4keras_ext.snippets import DataGenerator, sequence_padding

    class Gen(DataGenerator):
        def __iter__(self, random=False):
            batch = []
            for is_end, item in self.sample(random):
                batch.append(item)
                if len(batch) == self.batch_size or is_end:
                    yield [sequence_padding(batch), sequence_padding(batch)], None
                    batch = []

    data = [[1] * (i % 3 + 1) for i in range(5)]
    gen = Gen(data, batch_size=2)
    forfit = gen.forfit(random=False)
    assert isinstance(forfit, tf.data.Dataset)
    lengths = [next(forfit)[0][0].shape for _ in range(4)]  # 3 batches per epoch, then the next epoch
    assert lengths == [(2, 2), (2, 3), (1, 2), (2, 2)]
    assert next(gen.fortest(random=False))[0].shape == (2, 2)
    first = next(iter(forfit))  # the dataset side is unchanged: Keras' structure
    assert isinstance(first, tuple) and len(first) == 1 and first[0][0].shape == (2, 2)
