"""Streaming decoding: `beam_search_stream` / `random_sample_stream` yield tokens as they become certain
(beam search) or are drawn (sampling), and what they yield is exactly the result of `beam_search` /
`random_sample` — checked over many random Markov models (bert4keras-style decoders) and on a tiny UniLM
through `CachedDecoder`."""
import numpy as np
import pytest

from bert4keras_ext.decoders import AutoRegressiveDecoder
from bert4keras_ext.generation import CachedDecoder
from bert4keras_ext.models import build_transformer_model


class Markov(AutoRegressiveDecoder):
    """Next-token probabilities depend only on the last token: P[last]. Counts its predict calls."""

    def __init__(self, P, **kwargs):
        super().__init__(**kwargs)
        self.P = P
        self.calls = 0

    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        self.calls += 1
        return self.P[output_ids[:, -1]]


def random_markov(rng, vocab=6):
    P = rng.dirichlet(np.ones(vocab) * 0.5, size=vocab)
    P[:, 0] = 0
    return P / P.sum(1, keepdims=True)


@pytest.mark.parametrize('topk', [1, 2, 3, 5])
def test_beam_stream_equals_beam_search_on_random_markov_models(topk):
    rng = np.random.RandomState(topk)
    for trial in range(40):
        P = random_markov(rng)
        min_ends = 1 + trial % 2
        decoder = Markov(P, start_id=0, end_id=5, maxlen=7)
        expected = decoder.beam_search([], topk=topk, min_ends=min_ends)
        streamed = list(decoder.beam_search_stream([], topk=topk, min_ends=min_ends))
        assert streamed == list(expected[1:]), (trial, topk)   # start_id is not streamed


def test_greedy_stream_yields_each_token_before_the_next_step():
    P = random_markov(np.random.RandomState(0))
    decoder = Markov(P, start_id=0, end_id=None, maxlen=5)
    stream = decoder.beam_search_stream([], topk=1)
    for expected_calls, token in enumerate(stream, start=1):
        assert decoder.calls == expected_calls   # token k is out after k model calls, not at the end
    sampler = Markov(P, start_id=0, end_id=None, maxlen=5)
    tokens = list(sampler.random_sample_stream([], topk=3, seed=4))
    assert tokens == list(Markov(P, start_id=0, end_id=None, maxlen=5).random_sample([], 1, topk=3, seed=4)[0][1:])


def test_stream_arguments_are_checked_when_called():
    decoder = Markov(random_markov(np.random.RandomState(1)), start_id=0, end_id=5, maxlen=3)
    with pytest.raises(ValueError, match='topk'):
        decoder.beam_search_stream([], topk=0)
    with pytest.raises(ValueError, match='topp'):
        decoder.random_sample_stream([], topp=0)


def test_cached_decoder_streams_what_it_returns(tiny_bert):
    transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], application='unilm',
                                          return_keras_model=False)
    decoder = CachedDecoder(transformer, end_id=102, maxlen=6)
    for source in ([101, 300, 301, 102], [101, 310, 311, 312, 313, 102]):
        inputs = [source, [0] * len(source)]
        for topk in (1, 3):
            assert list(decoder.beam_search_stream(inputs, topk=topk)) == list(decoder.beam_search(inputs, topk=topk))
        assert list(decoder.random_sample_stream(inputs, topk=5, seed=2)) == \
            list(decoder.random_sample(inputs, 1, topk=5, seed=2)[0])
