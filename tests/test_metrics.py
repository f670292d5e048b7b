"""ROUGE-N / ROUGE-L / corpus BLEU against values worked out by hand (fractions in the comments)."""
import math

import pytest

from bert4keras_ext.metrics import bleu, lcs_length, ngram_hit_rate, ngrams, rouge_l, rouge_n, rouge_scores, tokens_of

HYP, REF = '华为发布新手机', '华为发布手机'  # 7 and 6 characters


def test_tokens_are_characters_without_whitespace_or_given_items():
    assert tokens_of('华为 发布\t手机') == ['华', '为', '发', '布', '手', '机']
    assert tokens_of(['华为', '发布']) == ['华为', '发布']
    assert ngrams(['a', 'b', 'a', 'b'], 2) == {('a', 'b'): 2, ('b', 'a'): 1}
    with pytest.raises(ValueError):
        ngrams(['a'], 0)


def test_rouge_n_by_hand():
    # unigrams: 6 of the 7 hypothesis characters occur in the reference; P = 6/7, R = 6/6
    assert rouge_n(HYP, REF, 1) == pytest.approx(12 / 13)
    # bigrams: hyp 华为 为发 发布 布新 新手 手机, ref 华为 为发 发布 布手 手机 → overlap 4; P = 4/6, R = 4/5
    assert rouge_n(HYP, REF, 2) == pytest.approx(8 / 11)
    # clipping: '的' ×4 against '的' ×2 → overlap 2; P = 2/4, R = 2/3 → F1 = 4/7
    assert rouge_n('的的的的', '的是的', 1) == pytest.approx(4 / 7)
    # word tokens: overlap 2, P = 2/3, R = 1
    assert rouge_n(['华为', '发布', '手机'], ['华为', '手机'], 1) == pytest.approx(0.8)
    assert rouge_n('华为', '华为', 1) == 1.0
    # no bigram in a one-character text, no overlap, empty text: 0, never NaN
    assert rouge_n('华', '华为', 2) == 0.0
    assert rouge_n('甲乙', '丙丁', 1) == 0.0
    assert rouge_n('', '华为', 1) == 0.0


def test_rouge_l_by_hand():
    assert lcs_length('华为发布新手机', '华为发布手机') == 6
    assert lcs_length('ABCBDAB', 'BDCABA') == 4  # the textbook example (BCBA)
    assert rouge_l(HYP, REF) == pytest.approx(12 / 13)  # LCS 6: P = 6/7, R = 1
    # order matters for LCS but not for unigram overlap
    assert rouge_n('甲乙丙丁', '丁丙乙甲', 1) == 1.0
    assert rouge_l('甲乙丙丁', '丁丙乙甲') == pytest.approx(0.25)  # LCS 1: P = R = 1/4
    # LCS 2, P = 1/2, R = 1: F1 = 2/3; F_2 = 5·(1/2)·1 / (1 + 4·1/2) = 5/6
    assert rouge_l('甲乙丙丁', '甲丙') == pytest.approx(2 / 3)
    assert rouge_l('甲乙丙丁', '甲丙', beta=2.0) == pytest.approx(5 / 6)
    assert rouge_l('', '') == 0.0


def test_rouge_scores_are_means_over_pairs():
    scores = rouge_scores([HYP, '甲乙丙丁'], [REF, '丁丙乙甲'])
    assert scores['rouge-1'] == pytest.approx((12 / 13 + 1.0) / 2)
    # '甲乙丙丁' vs '丁丙乙甲' shares no bigram
    assert scores['rouge-2'] == pytest.approx((8 / 11 + 0.0) / 2)
    assert scores['rouge-l'] == pytest.approx((12 / 13 + 0.25) / 2)
    with pytest.raises(ValueError):
        rouge_scores(['a'], ['a', 'b'])


def test_bleu_single_pair_by_hand():
    # clipped matches / hypothesis n-grams: 1-gram 6/7, 2-gram 4/6, 3-gram 2/5 (华为发, 为发布),
    # 4-gram 1/4 (华为发布); c = 7 > r = 6 so no brevity penalty
    assert bleu([REF], [HYP], smoothing=None) == pytest.approx((6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    assert bleu([REF], [HYP], smoothing='epsilon') == pytest.approx((6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    # add-one for n >= 2: 6/7 · 5/7 · 3/6 · 2/5 = 6/49
    assert bleu([REF], [HYP]) == pytest.approx((6 / 49) ** 0.25)
    assert bleu(['华为发布手机'], ['华为发布手机'], smoothing=None) == pytest.approx(1.0)


def test_corpus_bleu_pools_counts_and_applies_the_brevity_penalty():
    references, hypotheses = ['甲乙丙丁', '戊己庚'], ['甲丙乙丁', '戊己']
    # pooled: 1-gram 6/6; 2-gram 1/4 (only 戊己); 3-gram 0/2; 4-gram 0/1
    # lengths c = 6, r = 7 → BP = exp(1 - 7/6)
    bp = math.exp(1 - 7 / 6)
    assert bleu(references, hypotheses, smoothing=None) == 0.0
    assert bleu(references, hypotheses, smoothing='epsilon') == pytest.approx(
        bp * (1 * 1 / 4 * 0.1 / 2 * 0.1 / 1) ** 0.25)
    assert bleu(references, hypotheses, smoothing='add-one') == pytest.approx(
        bp * (1 * 2 / 5 * 1 / 3 * 1 / 2) ** 0.25)
    # a corpus BLEU is not the mean of sentence BLEUs
    mean_of_sentences = (bleu(references[:1], hypotheses[:1]) + bleu(references[1:], hypotheses[1:])) / 2
    assert bleu(references, hypotheses) != pytest.approx(mean_of_sentences)


def test_bleu_short_hypotheses_and_empty_input():
    # one 2-character pair: 3- and 4-grams do not exist (0 of 1); add-one → 1/2 each; BP exp(1 - 3/2)
    assert bleu(['甲乙丙'], ['甲乙']) == pytest.approx(math.exp(-0.5) * (1 * 2 / 2 * 1 / 2 * 1 / 2) ** 0.25)
    assert bleu(['甲乙丙'], ['甲乙'], smoothing=None) == 0.0
    assert bleu(['甲乙'], ['']) == 0.0
    with pytest.raises(ValueError):
        bleu(['a'], ['a', 'b'])
    with pytest.raises(ValueError):
        bleu(['a'], ['a'], smoothing='laplace')


def test_bleu_is_zero_without_any_unigram_match_whatever_the_smoothing():
    # NLTK's sentence_bleu returns 0 when no unigram matches, even with method1 (epsilon) smoothing;
    # epsilon alone would give BP · 0.1 = exp(1 - 4) · 0.1 for this 1-character hypothesis
    for smoothing in (None, 'epsilon', 'add-one'):
        assert bleu(['甲乙丙丁'], ['戊'], smoothing=smoothing) == 0.0
    # one unigram match: p1 = 1, p2..p4 have no n-gram (0 of 1 → 0.1), BP = exp(1 - 4)
    assert bleu(['甲乙丙丁'], ['甲'], smoothing='epsilon') == pytest.approx(math.exp(-3) * (1 * 0.1 ** 3) ** 0.25)


def test_bleu_multiple_references():
    refs = [['华为手机', '发布手机了']]
    # max-over-references clipping: 1-gram 6/6, 2-gram 4/5 (华为 发布 布手 手机), 3-gram 2/4 (发布手 布手机),
    # 4-gram 1/3 (发布手机); the closest reference length is 5 < 6 → BP = 1
    assert bleu(refs, ['华为发布手机'], smoothing=None, multiple_references=True) == pytest.approx(
        (1 * 4 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # equally close references (3 and 5 for a 4-character hypothesis): the shorter is used → no penalty
    assert bleu([['甲乙丙', '甲乙丙丁戊']], ['甲乙丙丁'], smoothing=None, multiple_references=True) == \
        pytest.approx(1.0)
    with pytest.raises(ValueError):
        bleu([[]], ['甲'], multiple_references=True)


def test_ngram_hit_rate():
    corpus = ['房间很干净', '服务很好']
    # bigrams of '房间很好': 房间 (seen), 间很 (seen), 很好 (seen) → 3/3; '干净房间': 干净 (seen), 净房, 房间 (seen) → 2/3
    assert ngram_hit_rate(['房间很好'], corpus) == 1.0
    assert ngram_hit_rate(['干净房间'], corpus) == pytest.approx(2 / 3)
    # pooled with repeats: '很好很好' has 很好 ×2 (seen), 好很 (unseen) → with the above: (3 + 2 + 2) / (3 + 3 + 3)
    assert ngram_hit_rate(['房间很好', '干净房间', '很好很好'], corpus) == pytest.approx(7 / 9)
    assert ngram_hit_rate(['房'], corpus) == 0.0
    assert ngram_hit_rate(['房x'], corpus, n=1) == pytest.approx(0.5)
