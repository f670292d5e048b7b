"""Decoding: beam search vs exhaustive search and greedy on tiny Markov models, sampling filters,
repetition controls, and the KV cache against full recomputation on tiny LM / UniLM BERTs."""
import itertools

import numpy as np
import pytest

from bert4keras_ext.backend import keras
from bert4keras_ext.decoders import AutoRegressiveDecoder
from bert4keras_ext.generation import CachedDecoder
from bert4keras_ext.models import build_transformer_model

START, END = 0, 3


class Markov(AutoRegressiveDecoder):
    """Next-token probabilities depend only on the last token: P[last]."""

    def __init__(self, P, maxlen, **kwargs):
        super().__init__(start_id=START, end_id=len(P) - 1, maxlen=maxlen, **kwargs)
        self.P = np.asarray(P, dtype='float64')

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        return self.P[output_ids[:, -1]]


def random_markov(rng, vocab):
    P = rng.dirichlet(np.ones(vocab) * 0.7, size=vocab)
    P[:, START] = 0  # the start token is never generated
    return P / P.sum(1, keepdims=True)


def exhaustive_best(P, maxlen, end):
    """Enumerate every output: ended at the first end token (length ≤ maxlen) or cut at maxlen."""
    best, best_score = None, -np.inf
    vocab = len(P)
    for length in range(1, maxlen + 1):
        for tail in itertools.product(range(1, vocab), repeat=length):
            if end in tail[:-1]:
                continue  # an output stops at its first end token
            if tail[-1] != end and length < maxlen:
                continue  # unfinished outputs only count when cut at maxlen
            ids = (START,) + tail
            score = sum(np.log(P[a, b]) for a, b in zip(ids[:-1], ids[1:]))
            if score > best_score:
                best, best_score = list(ids), score
    return best, best_score


def greedy(P, maxlen, end):
    ids = [START]
    for _ in range(maxlen):
        ids.append(int(np.argmax(P[ids[-1]])))
        if ids[-1] == end:
            break
    return ids


def test_wide_beam_equals_exhaustive_search():
    rng = np.random.RandomState(0)
    for trial in range(30):
        vocab, maxlen = 4, 4
        P = random_markov(rng, vocab)
        expected, expected_score = exhaustive_best(P, maxlen, vocab - 1)
        # a beam that holds every partial output (3 choices per step) is exhaustive
        ids, info = Markov(P, maxlen).beam_search([], topk=3 ** maxlen, return_info=True)
        assert list(ids) == expected, trial
        assert abs(info['score'] - expected_score) < 1e-9
        # topk = vocab size holds every partial output when maxlen is 2
        ids = Markov(P, 2).beam_search([], topk=vocab)
        assert list(ids) == exhaustive_best(P, 2, vocab - 1)[0]


def test_topk_one_is_greedy_and_sampling_with_topk_one_too():
    rng = np.random.RandomState(1)
    for _ in range(20):
        P = random_markov(rng, 6)
        expected = greedy(P, 7, 5)
        decoder = Markov(P, 7)
        assert list(decoder.beam_search([], topk=1)) == expected
        for sample in decoder.random_sample([], 3, topk=1, seed=0):
            assert list(sample) == expected


def test_filter_probas_top_k_and_top_p_by_hand():
    decoder = Markov(np.eye(4)[[1, 2, 3, 3]], 3)
    p = np.array([[0.1, 0.4, 0.3, 0.2]])
    assert np.allclose(decoder.filter_probas(p, topk=2), [[0, 0.4 / 0.7, 0.3 / 0.7, 0]])
    # top-p 0.5: 0.4 < 0.5, so 0.3 is needed too (the token that reaches the mass is kept)
    assert np.allclose(decoder.filter_probas(p, topp=0.5), [[0, 0.4 / 0.7, 0.3 / 0.7, 0]])
    assert np.allclose(decoder.filter_probas(p, topp=0.4), [[0, 1, 0, 0]])
    # top-k then top-p on the renormalised top-k: 0.4, 0.3, 0.2 → 4/9, 3/9, 2/9
    assert np.allclose(decoder.filter_probas(p, topk=3, topp=0.44), [[0, 1, 0, 0]])  # 4/9 ≥ 0.44
    assert np.allclose(decoder.filter_probas(p, topk=3, topp=0.45), [[0, 0.4 / 0.7, 0.3 / 0.7, 0]])
    # always_allow_end keeps the end token (id 3) as a candidate
    assert np.allclose(decoder.filter_probas(p, topk=1, always_allow_end=True), [[0, 0.4 / 0.6, 0, 0.2 / 0.6]])


def test_sampling_respects_top_p_and_frequencies():
    P = np.array([[0, 0.5, 0.25, 0.15, 0.1],
                  [0, 0, 0, 0, 1.0], [0, 0, 0, 0, 1.0], [0, 0, 0, 0, 1.0], [0, 0, 0, 0, 1.0]])
    decoder = Markov(P, 2)
    decoder.end_id = 4
    samples = decoder.random_sample([], 4000, topp=0.7, seed=3)
    first = np.array([s[1] for s in samples])
    assert set(first) == {1, 2}  # 0.5 + 0.25 reaches 0.7; tokens 3 and 4 are cut
    assert abs((first == 1).mean() - 2 / 3) < 0.03


class Looping(Markov):
    """Greedy decoding loops A B A B … forever: A→B and B→A are each more likely than ending."""

    def __init__(self, maxlen, **kwargs):
        P = [[0, 0.6, 0.3, 0.1],   # start
             [0, 0.05, 0.6, 0.35],  # A
             [0, 0.6, 0.05, 0.35],  # B
             [0, 0.5, 0.5, 0.0]]   # end (only used with min_ends > 1)
        super().__init__(P, maxlen, **kwargs)


def test_repetition_controls_stop_a_looping_model():
    decoder = Looping(maxlen=12)
    ids, info = decoder.beam_search([], topk=1, return_info=True)
    assert list(ids) == [0] + [1, 2] * 6 and info['finished'] is False  # cut at maxlen, flagged
    ids, info = decoder.beam_search([], topk=1, no_repeat_ngram_size=2, return_info=True)
    assert list(ids) == [0, 1, 2, 1, 3] and info['finished'] is True  # "A B" may not come back
    ids, info = decoder.beam_search([], topk=1, repetition_penalty=3, return_info=True)
    assert list(ids) == [0, 1, 2, 3] and info['finished'] is True  # log p(A)·3 < log p(end)
    samples, infos = decoder.random_sample([], 20, topk=1, return_info=True)
    assert all(not i['finished'] for i in infos) and all(len(s) == 13 for s in samples)
    samples, infos = decoder.random_sample([], 20, topk=1, no_repeat_ngram_size=2, return_info=True)
    assert all(i['finished'] for i in infos)


def test_min_ends_and_minlen():
    decoder = Looping(maxlen=10)
    samples = decoder.random_sample([], 50, min_ends=2, seed=5)
    for s in samples:
        s = list(s)
        assert s.count(3) == 2 and s[-1] == 3 or (len(s) == 11 and s.count(3) < 2)
    P = [[0, 0.15, 0.05, 0.8], [0, 0.15, 0.05, 0.8], [0, 0.15, 0.05, 0.8], [0, 0.5, 0.5, 0]]
    assert list(Markov(P, 6).beam_search([], topk=1)) == [0, 3]
    assert list(Markov(P, 6, minlen=4).beam_search([], topk=1)) == [0, 1, 1, 3]  # length 4 with start and end


def test_bad_arguments():
    decoder = Looping(maxlen=3)
    with pytest.raises(ValueError, match=r'topk \(the beam width\) must be an integer >= 1'):
        decoder.beam_search([], topk=0)
    with pytest.raises(ValueError, match='n must be an integer >= 1'):
        decoder.random_sample([], 0)
    with pytest.raises(ValueError, match='maxlen must be an integer >= 1'):
        Markov(np.eye(4), 0)


# ------------------------------------------------------------------------------------------------
# KV cache vs full recomputation on a tiny BERT
# ------------------------------------------------------------------------------------------------
class FullRecompute(AutoRegressiveDecoder):
    """bert4keras' way: re-run the whole sequence every step (the reference for the cache)."""

    def __init__(self, model, mode, **kwargs):
        super().__init__(**kwargs)
        self.model, self.mode = model, mode

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        new_segments = np.ones_like(output_ids) if self.mode == 'unilm' else np.zeros_like(output_ids)
        segment_ids = np.concatenate([segment_ids, new_segments], 1)
        # a direct call rather than .predict: same numbers, without a retrace for every new length
        return np.asarray(self.last_token(self.model)([token_ids, segment_ids], training=False))


@pytest.fixture(scope='module', params=[('unilm', True), ('lm', True), ('unilm', False)],
                ids=['unilm-xla', 'lm-xla', 'unilm-plain'])
def cached_and_full(request, tiny_bert):
    mode, jit_compile = request.param
    transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application=mode,
                                          return_keras_model=False)
    cached = CachedDecoder(transformer, end_id=102, maxlen=6, jit_compile=jit_compile)
    full = FullRecompute(transformer.model, mode, start_id=None, end_id=102, maxlen=6)
    return mode, transformer, cached, full


def sources(mode):
    rng = np.random.RandomState(7)
    out = []
    for length in (6, 3, 9):
        token_ids = [101] + list(rng.randint(104, 700, size=length)) + [102]
        segment_ids = [0] * len(token_ids)
        out.append([token_ids, segment_ids])
    return out


def test_cached_logits_equal_full_recomputation(cached_and_full):
    mode, transformer, cached, _ = cached_and_full
    engine = cached.engine
    batch = sources(mode)
    from bert4keras_ext.snippets import sequence_padding
    logits, state = engine.start(sequence_padding([b[0] for b in batch]), sequence_padding([b[1] for b in batch]), 5)
    rng = np.random.RandomState(8)
    generated = [[] for _ in batch]
    for step in range(5):
        for row, (token_ids, segment_ids) in enumerate(batch):
            new_segment = 1 if mode == 'unilm' else 0
            full_ids = np.array([token_ids + generated[row]])
            full_segments = np.array([segment_ids + [new_segment] * len(generated[row])])
            expected = transformer.model.predict([full_ids, full_segments], verbose=0)[0, -1]
            got = np.exp(logits[row] - logits[row].max())
            got /= got.sum()
            assert np.abs(got - expected).max() <= 1e-5, (step, row)
            # compare logits as well: log-probabilities up to the normaliser
            log_expected = np.log(expected)
            log_got = logits[row] - np.log(np.exp(logits[row] - logits[row].max()).sum()) - logits[row].max()
            assert np.abs(log_got - log_expected).max() <= 1e-4
        tokens = rng.randint(104, 700, size=len(batch))
        for row, token in enumerate(tokens):
            generated[row].append(int(token))
        logits, state = engine.step(tokens, state)


def test_cached_beam_search_equals_full_recomputation(cached_and_full):
    mode, _, cached, full = cached_and_full
    batch = sources(mode)
    for topk in (1, 2, 3):
        singles = [cached.beam_search(b, topk=topk) for b in batch]
        for b, single in zip(batch, singles):
            assert list(single) == list(full.beam_search(b, topk=topk))
        batched = cached.beam_search_batch(batch, topk=topk)
        assert [list(x) for x in batched] == [list(x) for x in singles]


def test_cached_sampling_equals_full_recomputation(cached_and_full):
    mode, _, cached, full = cached_and_full
    for b in sources(mode)[:2]:
        a = cached.random_sample(b, 4, topk=5, seed=11)
        c = full.random_sample(b, 4, topk=5, seed=11)
        assert [list(x) for x in a] == [list(x) for x in c]
    batched = cached.random_sample_batch(sources(mode), 2, topk=1)
    for b, samples in zip(sources(mode), batched):
        assert [list(x) for x in samples] == [list(full.beam_search(b, topk=1))] * 2


@pytest.mark.parametrize('options', [
    {'attention_scale': 'log_n'},
    {'residual_attention_scores': True},
    {'hierarchical_position': True},
    {'model': 'albert'},
], ids=['log_n', 'realformer', 'hierarchical', 'albert'])
def test_cached_logits_with_attention_options(options, tiny_bert, tmp_path):
    """Every attention variant the model offers gives the same next-token distribution through the
    cache as through the full model (several steps, beams moving between rows)."""
    options = dict(options)
    if options.pop('model', None) == 'albert':
        from bert4keras_ext.checkpoints import make_random_checkpoint
        ckpt = make_random_checkpoint(str(tmp_path), model='albert', seed=3, hidden_size=32, embedding_size=16,
                                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                      max_position_embeddings=40)
        transformer = build_transformer_model(ckpt['config'], ckpt['checkpoint'], model='albert',
                                              application='unilm', return_keras_model=False)
    else:
        transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                              return_keras_model=False, **options)
    engine = CachedDecoder(transformer, end_id=102, maxlen=4).engine
    source = [101, 300, 301, 302, 102]
    logits, state = engine.start(np.array([source]), np.zeros((1, len(source)), dtype=int), 4, rows_per_input=2)
    histories = [[]]
    for tokens, rows in (([400, 401], [0, 0]), ([402, 403], [1, 0]), ([404], [1])):
        logits, state = engine.step(np.array(tokens), state, rows=np.array(rows))
        histories = [histories[r] + [t] for t, r in zip(tokens, rows)]
        for row, generated in enumerate(histories):
            token_ids = np.array([source + generated])
            segment_ids = np.array([[0] * len(source) + [1] * len(generated)])
            expected = transformer.model.predict([token_ids, segment_ids], verbose=0)[0, -1]
            got = np.exp(logits[row] - logits[row].max())
            assert np.abs(got / got.sum() - expected).max() <= 1e-5, (options, generated)


def test_cache_grows_when_an_input_gets_more_rows_than_announced(tiny_bert):
    """start(rows_per_input=1) then a step with three rows of one input: the cache widens (a new
    shape) and every row still matches the full model."""
    transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                          return_keras_model=False)
    engine = CachedDecoder(transformer, end_id=102, maxlen=3).engine
    sources = [[101, 300, 301, 102], [101, 310, 102]]
    from bert4keras_ext.snippets import sequence_padding
    logits, state = engine.start(sequence_padding(sources), np.zeros((2, 4), dtype=int), 3)
    histories = [[], []]
    owners = [0, 1]
    for tokens, rows in (([400, 401], [0, 1]), ([402, 403, 404, 405], [0, 0, 0, 1])):
        logits, state = engine.step(np.array(tokens), state, rows=np.array(rows))
        histories = [histories[r] + [t] for t, r in zip(tokens, rows)]
        owners = [owners[r] for r in rows]
        for row, (generated, owner) in enumerate(zip(histories, owners)):
            source = sources[owner]
            expected = transformer.model.predict(
                [np.array([source + generated]), np.array([[0] * len(source) + [1] * len(generated)])],
                verbose=0)[0, -1]
            got = np.exp(logits[row] - logits[row].max())
            assert np.abs(got / got.sum() - expected).max() <= 1e-5, (row, generated)
    assert state['width'] == 3


def test_top_k_ties_go_to_the_lowest_ids():
    """filter_probas' top-k equals a stable full sort (ties at the k-th value kept by token id)."""
    decoder = AutoRegressiveDecoder(start_id=None, end_id=2, maxlen=5)
    rng = np.random.RandomState(5)
    for _ in range(200):
        vocab = rng.randint(2, 12)
        probas = rng.randint(1, 4, size=(3, vocab)).astype(float)
        probas /= probas.sum(axis=1, keepdims=True)
        topk = rng.randint(1, vocab + 1)
        expected = np.zeros_like(probas)
        for row, p in enumerate(probas):
            chosen = sorted(range(vocab), key=lambda i: (-p[i], i))[:topk]
            expected[row, chosen] = p[chosen]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(decoder.filter_probas(probas, topk=topk), expected, rtol=0, atol=1e-12)


def test_top_k_then_top_p_equals_stable_sorts_by_hand():
    """top-k then top-p (the candidates-only sort) equals the definition done with Python sorts:
    keep the k best (ties by token id), renormalise, keep tokens while the mass before them is < p."""
    decoder = AutoRegressiveDecoder(start_id=None, end_id=2, maxlen=5)
    rng = np.random.RandomState(8)
    for trial in range(300):
        vocab = rng.randint(2, 16)
        probas = rng.choice([0.0, 1.0, 2.0, 3.0], size=(3, vocab)) + (rng.rand(3, vocab) if trial % 2 else 0)
        probas[:, 0] += 0.5
        probas /= probas.sum(axis=1, keepdims=True)
        # p values no cumulative mass here can equal (a mass exactly at p is decided by rounding)
        topk, topp = rng.randint(1, vocab + 2), [0.2071, 0.5113, 0.8909, 1.0][trial % 4]
        expected = np.zeros_like(probas)
        for row, p in enumerate(probas):
            kept = sorted(range(vocab), key=lambda i: (-p[i], i))[:topk]
            mass, total, chosen = 0.0, sum(p[i] for i in kept), []
            for i in kept:  # already in descending order
                if mass < topp:
                    chosen.append(i)
                mass += p[i] / total
            expected[row, chosen] = p[chosen]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(decoder.filter_probas(probas, topk=topk, topp=topp), expected,
                                   rtol=0, atol=1e-12)


def test_top_p_over_a_large_vocabulary_equals_a_full_stable_sort():
    """top-p alone orders only each row's head when that settles it (peaked rows, ties at the cut,
    long tails that fall back to the full sort): the kept set must equal the full stable sort's."""
    decoder = AutoRegressiveDecoder(start_id=None, end_id=2, maxlen=5)
    rng = np.random.RandomState(9)
    for trial in range(60):
        vocab = [300, 1000][trial % 2]
        kind = trial % 3
        if kind == 0:    # peaked: the head holds the mass
            probas = np.exp(rng.randn(3, vocab) * 4)
        elif kind == 1:  # few distinct values: many ties, also at the cut
            probas = rng.choice([0.0, 1.0, 2.0, 8.0], size=(3, vocab), p=[0.3, 0.4, 0.25, 0.05])
        else:            # nearly flat: needs most of the vocabulary
            probas = rng.rand(3, vocab) + 1.0
        probas /= probas.sum(axis=1, keepdims=True)
        topp = [0.3013, 0.7011, 0.9497][trial % 3]
        expected = np.zeros_like(probas)
        for row, p in enumerate(probas):
            mass, chosen = 0.0, []
            for i in sorted(range(vocab), key=lambda i: (-p[i], i)):
                if mass >= topp:
                    break
                chosen.append(i)
                mass += p[i]
            expected[row, chosen] = p[chosen]
        expected /= expected.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(decoder.filter_probas(probas, topp=topp), expected, rtol=0, atol=1e-12)


def test_sample_rows_draws_what_numpy_choice_draws():
    """The vectorised sampler takes the same uniforms and tokens as numpy's per-row `choice`."""
    from bert4keras_ext.decoders import sample_rows
    for seed in range(10):
        probas = np.random.RandomState(seed).dirichlet(np.full(40, 0.3), size=6)
        probas[:, ::5] = 0.0  # forbidden tokens are never drawn
        probas /= probas.sum(axis=1, keepdims=True)
        reference, ours = np.random.RandomState(seed + 50), np.random.RandomState(seed + 50)
        expected = [reference.choice(probas.shape[1], p=row) for row in probas]
        np.testing.assert_array_equal(sample_rows(probas, ours), expected)
        assert reference.random_sample() == ours.random_sample()  # the stream continues in step


def test_cached_decoder_errors(tiny_bert):
    encoder = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], return_keras_model=False)
    with pytest.raises(ValueError, match='needs a model with an MLM head'):
        CachedDecoder(encoder, end_id=102, maxlen=4)
    mlm = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm=True, return_keras_model=False)
    with pytest.raises(ValueError, match='no LM or UniLM mask'):
        CachedDecoder(mlm, end_id=102, maxlen=4)
    unilm = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                    return_keras_model=False)
    decoder = CachedDecoder(unilm, end_id=102, maxlen=30)
    with pytest.raises(ValueError, match='exceeds the position table'):
        decoder.beam_search([[101] + [200] * 15 + [102], [0] * 17], topk=2)


class PositionScale(keras.layers.Layer):
    """A user's position-wise layer (x * 1.5): unknown to the package, so the decoder checks it once."""
    supports_masking = True

    def call(self, x):
        return x * 1.5


class CumulativeMean(keras.layers.Layer):
    """A user's layer that mixes positions (running mean over the sequence) without a decoding cache."""
    supports_masking = True

    def call(self, x):
        steps = keras.ops.cast(keras.ops.arange(1, keras.ops.shape(x)[1] + 1), x.dtype)[None, :, None]
        return keras.ops.cumsum(x, axis=1) / steps


def test_user_subclasses_decode_through_their_own_steps(tiny_bert):
    """The cached decoder runs the model's own forward steps: a subclass that adds layers to every block
    decodes with them (beam search and sampling equal full recomputation of that subclass); shared segment
    embeddings decode too."""
    from bert4keras_ext.models import BERT

    class BERTWithExtraLayers(BERT):
        def apply_main_layers(self, inputs, index):
            x = super().apply_main_layers(inputs, index)
            x = self.apply(x, keras.layers.Dense, units=self.hidden_size, name='Extra-%d' % index)
            return self.apply(x, PositionScale, name='Scale-%d' % index)

    for model, options in ((BERTWithExtraLayers, {}), ('bert', {'shared_segment_embeddings': True})):
        transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], model=model,
                                              application='unilm', return_keras_model=False, **options)
        cached = CachedDecoder(transformer, end_id=102, maxlen=5)
        full = FullRecompute(transformer.model, 'unilm', start_id=None, end_id=102, maxlen=5)
        for b in sources('unilm')[:2]:
            assert list(cached.beam_search(b, topk=2)) == list(full.beam_search(b, topk=2))
            assert [list(x) for x in cached.random_sample(b, 2, topk=5, seed=3)] == \
                [list(x) for x in full.random_sample(b, 2, topk=5, seed=3)]


def test_cached_decoding_refuses_what_it_would_decode_differently(tiny_bert):
    """A subclass whose extra layer mixes positions without a cache, or an input the decoder cannot feed,
    gets a clear error instead of a silently different model."""
    from bert4keras_ext.models import BERT

    class BERTWithCumulativeMean(BERT):
        def apply_main_layers(self, inputs, index):
            x = super().apply_main_layers(inputs, index)
            return self.apply(x, CumulativeMean, name='Mean-%d' % index)

    custom = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], model=BERTWithCumulativeMean,
                                     application='unilm', return_keras_model=False)
    decoder = CachedDecoder(custom, end_id=3, maxlen=4)
    with pytest.raises(NotImplementedError, match=r'differ from the full model.*apply_main_layers.*CumulativeMean'):
        decoder.beam_search(sources('unilm')[0], topk=2)
    cond_in = keras.Input((4,))
    conditional = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='lm',
                                          layer_norm_cond=cond_in, additional_input_layers=cond_in,
                                          return_keras_model=False)
    with pytest.raises(NotImplementedError, match='layer_norm_cond'):
        CachedDecoder(conditional, end_id=3, maxlen=4)
    positions = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='lm',
                                        custom_position_ids=True, return_keras_model=False)
    with pytest.raises(NotImplementedError, match='custom_position_ids'):
        CachedDecoder(positions, end_id=3, maxlen=4)
