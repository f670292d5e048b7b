"""Text-generation metrics computed here, with no extra dependency: ROUGE-N, ROUGE-L and BLEU.

Chinese generation tasks (title generation, summarisation) are usually scored on characters, so a
`str` argument is split into its characters with whitespace removed; any other sequence (a list of
words or of token ids) is used as it is. Empty inputs score 0 (never NaN).

    rouge_n('华为发布新手机', '华为发布手机', n=1)    # F1 of clipped unigram overlap
    rouge_l('华为发布新手机', '华为发布手机')         # F1 from the longest common subsequence
    bleu(['华为发布新手机'], ['华为发布手机'])        # corpus BLEU-4 (references, hypotheses)
    rouge_scores(hypotheses, references)           # {'rouge-1', 'rouge-2', 'rouge-l'}: means over pairs
    ngram_hit_rate(samples, corpus, n=2)           # share of sampled n-grams that occur in a corpus

Definitions (Lin 2004; Papineni et al. 2002):
- ROUGE-N: overlap = Σ_g min(count_hyp(g), count_ref(g)) over n-grams g; P = overlap / #hyp n-grams,
  R = overlap / #ref n-grams, F1 = 2PR / (P + R).
- ROUGE-L: P = LCS / len(hyp), R = LCS / len(ref), F_β = (1 + β²)PR / (R + β²P) (β = 1: F1).
- Corpus BLEU-N: p_n = Σ clipped n-gram matches / Σ hypothesis n-grams, summed over the corpus;
  BLEU = BP · exp(mean_n log p_n) with BP = min(1, exp(1 − r / c)) (r, c: total reference and
  hypothesis lengths; for several references, r uses the one closest in length). An order with no
  hypothesis n-gram at all (t_n = 0) counts as 0 matches out of 1; no unigram match at all gives 0 (as NLTK,
  whatever the smoothing). Smoothing: 'add-one' (Lin & Och
  2004: p_n = (m_n + 1) / (t_n + 1) for n ≥ 2; unigrams unsmoothed), 'epsilon' (NLTK method1: a zero
  count m_n becomes 0.1), or None (BLEU is 0 if some order has no match).
"""
import math
from collections import Counter

__all__ = ['tokens_of', 'ngrams', 'rouge_n', 'lcs_length', 'rouge_l', 'rouge_scores', 'bleu', 'ngram_hit_rate']


def tokens_of(text):
    """The units scored: the non-whitespace characters of a str, or the items of another sequence."""
    if isinstance(text, str):
        return [c for c in text if not c.isspace()]
    return list(text)


def ngrams(tokens, n):
    """Counter of the n-grams (tuples) of a token list."""
    if n < 1:
        raise ValueError('ngrams: n must be >= 1, got %r' % (n,))
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _f_score(precision, recall, beta=1.0):
    if precision <= 0 or recall <= 0:
        return 0.0
    beta2 = beta * beta
    return (1 + beta2) * precision * recall / (recall + beta2 * precision)


def rouge_n(hypothesis, reference, n=1):
    """ROUGE-N F1 of one hypothesis against one reference (0.0 when either has no n-gram)."""
    hyp, ref = ngrams(tokens_of(hypothesis), n), ngrams(tokens_of(reference), n)
    overlap = sum((hyp & ref).values())
    total_hyp, total_ref = sum(hyp.values()), sum(ref.values())
    if not overlap:
        return 0.0
    return _f_score(overlap / total_hyp, overlap / total_ref)


def lcs_length(a, b):
    """Length of the longest common subsequence of two sequences (O(len(a)·len(b)) dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis, reference, beta=1.0):
    """ROUGE-L F_β (sentence level) from the longest common subsequence."""
    hyp, ref = tokens_of(hypothesis), tokens_of(reference)
    if not hyp or not ref:
        return 0.0
    lcs = lcs_length(hyp, ref)
    return _f_score(lcs / len(hyp), lcs / len(ref), beta)


def rouge_scores(hypotheses, references):
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 over aligned lists → {'rouge-1', 'rouge-2', 'rouge-l'}."""
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError('rouge_scores: %d hypotheses but %d references' % (len(hypotheses), len(references)))
    if not hypotheses:
        raise ValueError('rouge_scores: nothing to score')
    pairs = list(zip(hypotheses, references))
    return {
        'rouge-1': sum(rouge_n(h, r, 1) for h, r in pairs) / len(pairs),
        'rouge-2': sum(rouge_n(h, r, 2) for h, r in pairs) / len(pairs),
        'rouge-l': sum(rouge_l(h, r) for h, r in pairs) / len(pairs),
    }


def bleu(references, hypotheses, max_n=4, smoothing='add-one', multiple_references=False):
    """Corpus BLEU with brevity penalty.

    Args:
        references: one reference per hypothesis (a str / token sequence); with
            `multiple_references=True`, a list of references per hypothesis (clipping uses the
            maximum count over them, and the brevity penalty the reference length closest to the
            hypothesis' length, the shorter one on ties).
        hypotheses: the generated texts, aligned with `references`.
        max_n: highest n-gram order (4: BLEU-4), uniform weights 1/max_n.
        smoothing: 'add-one', 'epsilon' or None (see the module docstring).
    Returns:
        a float in [0, 1].
    """
    if smoothing not in ('add-one', 'epsilon', None):
        raise ValueError("bleu: smoothing must be 'add-one', 'epsilon' or None, got %r" % (smoothing,))
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError('bleu: %d references but %d hypotheses' % (len(references), len(hypotheses)))
    matches, totals = [0] * max_n, [0] * max_n
    hyp_length = ref_length = 0
    for refs, hyp in zip(references, hypotheses):
        if not multiple_references:
            refs = [refs]
        elif not refs:
            raise ValueError('bleu: a hypothesis has an empty list of references')
        ref_tokens = [tokens_of(r) for r in refs]
        hyp_tokens = tokens_of(hyp)
        hyp_length += len(hyp_tokens)
        ref_length += min((abs(len(r) - len(hyp_tokens)), len(r)) for r in ref_tokens)[1]
        for n in range(1, max_n + 1):
            hyp_counts = ngrams(hyp_tokens, n)
            max_ref = Counter()
            for r in ref_tokens:
                max_ref |= ngrams(r, n)
            matches[n - 1] += sum((hyp_counts & max_ref).values())
            totals[n - 1] += sum(hyp_counts.values())
    if hyp_length == 0 or matches[0] == 0:
        # no unigram in common: 0 whatever the smoothing, as NLTK's corpus/sentence_bleu
        return 0.0
    log_precision = 0.0
    for n in range(max_n):
        # an order with no hypothesis n-gram at all counts as 0 matches out of 1
        m, t = matches[n], max(totals[n], 1)
        if smoothing == 'add-one' and n > 0:
            m, t = m + 1, t + 1
        elif smoothing == 'epsilon' and m == 0:
            m = 0.1
        if m == 0:
            return 0.0
        log_precision += math.log(m / t) / max_n
    brevity = 1.0 if hyp_length > ref_length else math.exp(1 - ref_length / hyp_length)
    return brevity * math.exp(log_precision)


def ngram_hit_rate(texts, corpus, n=2):
    """The share of the n-grams of `texts` (counted with repeats) that occur somewhere in `corpus`.

    A rough "does generated text look like the data" figure for language-model and Gibbs samples:
    1.0 when every n-gram was seen in training; random characters score near the n-gram coverage.
    Returns 0.0 when `texts` have no n-gram.
    """
    seen = set()
    for text in corpus:
        seen.update(ngrams(tokens_of(text), n))
    hits = total = 0
    for text in texts:
        for gram, count in ngrams(tokens_of(text), n).items():
            total += count
            hits += count if gram in seen else 0
    return hits / total if total else 0.0
