"""Checks for decoding settings, shared by `AutoRegressiveDecoder` and `CachedDecoder`.

Each bad setting gets one error that names the argument, the value and what is accepted, before any
network call: before these checks `topp=0` or `temperature=0` returned all-padding outputs with only a
numpy warning, and `topk=0` died in a broadcast error.

`temperature=0` means greedy: the limit of softmax(logits / T) as T → 0 puts all the probability on the
most likely token (the lowest id among ties), so sampling returns the argmax and beam search follows
one path.
"""
import numbers

import numpy as np

_NEG = -1e30  # log-probability of a forbidden token (finite, so arithmetic stays NaN-free)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name, value, minimum, allow_none=False, where='decoding'):
    """`value` must be an integer >= minimum (or None when allowed); returns it as int."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < minimum:
        expected = 'an integer >= %d%s' % (minimum, ' or None' if allow_none else '')
        raise ValueError('%s: %s must be %s, got %r' % (where, name, expected, value))
    return int(value)


def check_temperature(temperature, where='decoding'):
    if (not isinstance(temperature, numbers.Real) or isinstance(temperature, bool)
            or not np.isfinite(temperature) or temperature < 0):
        raise ValueError('%s: temperature must be a finite number >= 0 (0 = greedy), got %r' % (where, temperature))
    return float(temperature)


def check_topp(topp, where='decoding'):
    # topp >= 1 keeps every token, as in bert4keras (whose task_conditional_language_model example
    # passes topp=5), so only values <= 0 or not finite are refused
    if topp is None:
        return None
    if (not isinstance(topp, numbers.Real) or isinstance(topp, bool) or not np.isfinite(topp)
            or not topp > 0):
        raise ValueError('%s: topp must be a finite number > 0 (a probability; 1 or more keeps every '
                         'token) or None, got %r' % (where, topp))
    return float(topp)


def check_repetition_penalty(penalty, where='decoding'):
    if penalty is None:
        return None
    if (not isinstance(penalty, numbers.Real) or isinstance(penalty, bool) or not np.isfinite(penalty)
            or penalty <= 0):
        raise ValueError('%s: repetition_penalty must be a finite number > 0 (1 = off, > 1 penalises '
                         'repeats) or None, got %r' % (where, penalty))
    return float(penalty)


def check_search_args(where, temperature=1, min_ends=1, no_repeat_ngram_size=None, repetition_penalty=None,
                      topk=None, topp=None, n=None, beam=False):
    """Validate one search call's arguments; `topk` is the beam width when `beam` is True."""
    check_temperature(temperature, where)
    check_int('min_ends', min_ends, 1, where=where)
    check_int('no_repeat_ngram_size', no_repeat_ngram_size, 1, allow_none=True, where=where)
    check_repetition_penalty(repetition_penalty, where)
    if beam:
        check_int('topk (the beam width)', topk, 1, where=where)
    else:
        check_int('n', n, 1, where=where)
        check_int('topk', topk, 1, allow_none=True, where=where)
        check_topp(topp, where)


def check_token_ids_fit(vocab_size, start_id, end_id, where='decoding'):
    """start_id / end_id must be ids of the model's vocabulary (known once the first scores arrive)."""
    for name, value in (('start_id', start_id), ('end_id', end_id)):
        if value is not None and value >= vocab_size:
            raise ValueError('%s: %s=%d is outside the model vocabulary (the scores have %d columns, ids '
                             '0..%d)' % (where, name, value, vocab_size, vocab_size - 1))


def greedy_log_probs(log_probs):
    """Put all the probability on each row's most likely token (the lowest id among ties)."""
    return tempered_log_softmax(log_probs, 0)


def search_temperature(temperature):
    """The temperature to score with; greedy decoding (0) scores at 1 and takes the argmax after the
    minlen / repetition adjustments, so a forbidden argmax gives way to the next best token."""
    return 1 if temperature == 0 else temperature


def check_some_token_allowed(probas, where='random_sample'):
    """Every row must keep at least one token with probability > 0 after the filters and adjustments."""
    empty = np.where(~(probas.sum(axis=-1) > 0))[0]
    if len(empty):
        raise ValueError('%s: every token is forbidden for %d output(s) (rows %s): minlen, '
                         'no_repeat_ngram_size and the top-k / top-p filters leave nothing to choose. Relax '
                         'one of them.' % (where, len(empty), list(empty[:5])))


def tempered_log_softmax(scores, temperature):
    """log softmax(scores / temperature) over the last axis; temperature 0 gives the greedy limit."""
    scores = np.asarray(scores, dtype='float64')
    if temperature == 0:
        out = np.full(scores.shape, _NEG)
        np.put_along_axis(out, np.argmax(scores, axis=-1)[..., None], 0.0, axis=-1)
        return out
    scores = scores / temperature
    scores = scores - scores.max(axis=-1, keepdims=True)
    return scores - np.log(np.exp(scores).sum(axis=-1, keepdims=True))
