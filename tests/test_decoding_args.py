"""Decoding settings: each bad value gets one clear error; temperature 0 is greedy; a seeded fuzz.

The reference decoder here is a fixed table of next-token logits (a bigram model written in numpy), so
every expected result is computed independently of the search code: greedy = argmax chain.
"""
import numpy as np
import pytest

from bert4keras_ext.snippets import AutoRegressiveDecoder

VOCAB = 7
END = 6


def bigram_logits(seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(VOCAB, VOCAB) * 2


class Bigram(AutoRegressiveDecoder):
    """Next-token logits depend on the last token only (start token 0)."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    @AutoRegressiveDecoder.wraps(default_rtype='logits')
    def predict(self, inputs, output_ids, states):
        return self.table[output_ids[:, -1]]


def greedy_reference(table, maxlen, start=0):
    ids, last = [start], start
    for _ in range(maxlen):
        last = int(np.argmax(table[last]))
        ids.append(last)
        if last == END:
            break
    return ids


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(maxlen=2.5), 'maxlen must be an integer >= 1'),
    (dict(maxlen=0), 'maxlen must be an integer >= 1'),
    (dict(maxlen=5, minlen=-1), 'minlen must be an integer >= 0'),
    (dict(maxlen=5, end_id=-3), 'end_id must be an integer >= 0'),
    (dict(maxlen=5, end_id=2.0), 'end_id must be an integer >= 0'),
])
def test_bad_decoder_settings(kwargs, fragment):
    settings = dict(start_id=0, end_id=END)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        Bigram(bigram_logits(), **settings)


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(topp=0.0), 'topp must be a finite number > 0'),
    (dict(topp=-0.5), 'topp must be a finite number > 0'),
    (dict(topp=float('nan')), 'topp must be a finite number > 0'),
    (dict(topk=0), 'topk must be an integer >= 1 or None'),
    (dict(topk=2.5), 'topk must be an integer >= 1 or None'),
    (dict(temperature=-1), 'temperature must be a finite number >= 0'),
    (dict(temperature=float('inf')), 'temperature must be a finite number >= 0'),
    (dict(repetition_penalty=0), 'repetition_penalty must be a finite number > 0'),
    (dict(no_repeat_ngram_size=-1), 'no_repeat_ngram_size must be an integer >= 1 or None'),
    (dict(min_ends=0), 'min_ends must be an integer >= 1'),
    (dict(n=0), 'n must be an integer >= 1'),
])
def test_bad_sampling_arguments(kwargs, fragment):
    decoder = Bigram(bigram_logits(), start_id=0, end_id=END, maxlen=5)
    args = dict(n=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        decoder.random_sample([], **args)


def test_topp_of_one_or_more_keeps_every_token():
    # bert4keras accepts topp >= 1 (its task_conditional_language_model example passes topp=5): no
    # cumulative mass reaches it, so nothing is cut and the draws equal those without top-p
    decoder = Bigram(bigram_logits(), start_id=0, end_id=END, maxlen=5)
    reference = decoder.random_sample([], 4, seed=3)
    for topp in (1, 1.5, 5):
        samples = decoder.random_sample([], 4, topp=topp, seed=3)
        assert [list(s) for s in samples] == [list(s) for s in reference]


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(topk=0), r'topk \(the beam width\) must be an integer >= 1'),
    (dict(topk=2, temperature=-0.5), 'temperature must be a finite number >= 0'),
    (dict(topk=2, repetition_penalty=-1.0), 'repetition_penalty must be a finite number > 0'),
])
def test_bad_beam_arguments(kwargs, fragment):
    decoder = Bigram(bigram_logits(), start_id=0, end_id=END, maxlen=5)
    with pytest.raises(ValueError, match=fragment):
        decoder.beam_search([], **kwargs)


def test_end_id_outside_the_vocabulary_is_reported_at_the_first_step():
    decoder = Bigram(bigram_logits(), start_id=0, end_id=VOCAB + 3, maxlen=5)
    with pytest.raises(ValueError, match='end_id=10 is outside the model vocabulary'):
        decoder.beam_search([], topk=2)


@pytest.mark.parametrize('seed', range(5))
def test_temperature_zero_is_greedy(seed):
    table = bigram_logits(seed)
    expected = greedy_reference(table, maxlen=8)
    decoder = Bigram(table, start_id=0, end_id=END, maxlen=8)
    for sample in decoder.random_sample([], n=3, temperature=0, seed=seed):
        assert list(sample) == expected
    assert list(decoder.beam_search([], topk=3, temperature=0)) == expected


def test_fuzzed_valid_settings_return_ids_within_the_vocabulary():
    """Seeded fuzz over the accepted ranges: every output is a list of in-vocabulary ids that starts with
    start_id, is at most maxlen + 1 long, and ends with END when it stopped early."""
    rng = np.random.RandomState(0)
    for trial in range(60):
        table = bigram_logits(trial)
        maxlen = int(rng.randint(1, 9))
        decoder = Bigram(table, start_id=0, end_id=END, maxlen=maxlen, minlen=int(rng.randint(0, 4)))
        kwargs = dict(temperature=float(rng.choice([0, 0.3, 1.0, 2.5])),
                      min_ends=int(rng.randint(1, 3)),
                      no_repeat_ngram_size=[None, 1, 2, 3][rng.randint(4)],
                      repetition_penalty=[None, 0.5, 1.0, 1.7][rng.randint(4)])
        if trial % 2:
            outputs = [decoder.beam_search([], topk=int(rng.randint(1, 5)), **kwargs)]
        else:
            outputs = decoder.random_sample([], n=int(rng.randint(1, 4)), topk=[None, 1, 3, 50][rng.randint(4)],
                                            topp=[None, 0.2, 0.9, 1.0][rng.randint(4)], seed=trial, **kwargs)
        for ids in outputs:
            ids = [int(i) for i in ids]
            assert ids[0] == 0 and len(ids) <= maxlen + 1
            assert all(0 <= i < VOCAB for i in ids)
            assert np.isfinite(ids).all()
