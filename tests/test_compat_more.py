"""bert4keras behaviours found missing while porting more of its examples (tests/bert4keras_scripts/).

- task_reading_comprehension_by_seq2seq keeps a step counter (an int) as the decoder's `states`
  (`wraps(use_states=True)`, `beam_search(..., states=0)`); bert4keras passes states through the
  search untouched.
- task_language_model_chinese_chess builds a Tokenizer on a hand-made vocabulary without [UNK] /
  [CLS] / [SEP], then sets `tokenizer._token_unk_id = 0`.
"""
import itertools
import warnings

import numpy as np
import pytest

from bert4keras_ext.snippets import AutoRegressiveDecoder
from bert4keras_ext.tokenizers import Tokenizer

# next-token probabilities by step (the decoder reads the step from its int state); id 2 ends
STEP_PROBAS = np.array([[0.5, 0.4, 0.1], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]])


class StepCounter(AutoRegressiveDecoder):
    seen = None

    @AutoRegressiveDecoder.wraps(default_rtype='probas', use_states=True)
    def predict(self, inputs, output_ids, states):
        self.seen.append(states)
        assert output_ids.shape[1] == states  # the counter is the number of generated tokens
        return np.repeat(STEP_PROBAS[states][None], len(output_ids), axis=0), states + 1


def brute_force_best(maxlen, end_id=2):
    """The most probable output (product of STEP_PROBAS) among all that end within maxlen tokens."""
    best, best_p = None, -1.0
    for n in range(1, maxlen + 1):
        for prefix in itertools.product([0, 1], repeat=n - 1):
            ids = list(prefix) + [end_id]
            p = np.prod([STEP_PROBAS[i][t] for i, t in enumerate(ids)])
            if p > best_p:
                best, best_p = ids, p
    return best


def test_beam_search_passes_an_int_state_through():
    decoder = StepCounter(start_id=None, end_id=2, maxlen=3)
    decoder.seen = []
    output = decoder.beam_search([[5, 6, 7]], topk=2, states=0)
    assert list(output) == brute_force_best(3) == [0, 2]
    assert decoder.seen == [0, 1]  # one call per step, the state as predict returned it


def test_random_sample_passes_an_int_state_through():
    decoder = StepCounter(start_id=None, end_id=2, maxlen=3)
    decoder.seen = []
    outputs = decoder.random_sample([[5, 6, 7]], n=4, states=0, seed=1)
    assert len(outputs) == 4 and all(len(o) <= 3 for o in outputs)
    assert decoder.seen == list(range(len(decoder.seen))) and decoder.seen[0] == 0


CHESS_VOCAB = dict(zip(['[PAD]'] + list('0123456789abcdefghi'), range(20)))


def _chess_tokenizer():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the vocabulary has no [CLS] / [SEP]: warned, as documented
        return Tokenizer(CHESS_VOCAB)


def test_tokenizer_on_a_vocabulary_without_unk():
    tokenizer = _chess_tokenizer()
    assert tokenizer._token_unk_id is None
    assert tokenizer.tokenize('h 2 e 2') == ['[CLS]', 'h', '2', 'e', '2', '[SEP]']
    # [CLS] is not in the vocabulary and there is no unk id yet: a clear error, naming the fix
    with pytest.raises(ValueError, match='_token_unk_id'):
        tokenizer.encode('h 2 e 2')
    with pytest.raises(ValueError, match="'z'"):
        tokenizer.tokens_to_ids(['h', 'z'])
    # bert4keras' chess example then sets the unk id by hand: [CLS] / [SEP] / unknown chars map to it
    tokenizer._token_unk_id = 0
    token_ids, segment_ids = tokenizer.encode('h 2 e 2 z')
    assert token_ids == [0, 18, 3, 15, 3, 0, 0] and segment_ids == [0] * 7
    assert tokenizer.token_to_id('x') == 0 and tokenizer.tokens_to_ids(['a', 'y']) == [11, 0]


def test_tokenizer_without_unk_known_tokens_need_no_unk_id():
    tokenizer = _chess_tokenizer()
    assert tokenizer.tokens_to_ids(['a', '9', '[PAD]']) == [11, 10, 0]
    assert tokenizer.token_to_id('i') == 19
