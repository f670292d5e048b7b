"""GPLinker label building and decoding on handcrafted matrices (overlapping and nested triples),
plus the span/BIO helpers, all checked against hand-written expectations."""
import numpy as np
import pytest

from bert4keras_ext.gplinker import (
    decode_spo, find_spo_char_spans, gplinker_heads, pad_span_labels, parse_duie_object, spo_labels, spo_to_text,
    triple_prf,
)
from bert4keras_ext.spans import (
    bio_decode, bio_labels, char_span_to_token_span, span_prf, token_char_maps, token_span_to_char_span,
)
from bert4keras_ext.tokenizers import Tokenizer

TEXT = '张伟出生在北京，毕业于北京大学。'
PREDICATES = {'出生地': 0, '毕业院校': 1}


@pytest.fixture(scope='module')
def tokenizer():
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + sorted(set(TEXT + 'abc'))
    return Tokenizer({t: i for i, t in enumerate(vocab)})


def encoded(tokenizer, text=TEXT):
    tokens = tokenizer.tokenize(text)
    return tokens, tokenizer.rematch(text, tokens)


def test_labels_for_one_subject_two_objects_with_nesting(tokenizer):
    tokens, mapping = encoded(tokenizer)
    # char positions: 张0 伟1 出2 生3 在4 北5 京6 ，7 毕8 业9 于10 北11 京12 大13 学14 。15 → token = char + 1
    triples = find_spo_char_spans(TEXT, [{'subject': '张伟', 'predicate': '出生地', 'object': '北京'},
                                         {'subject': '张伟', 'predicate': '毕业院校', 'object': {'@value': '北京大学'}}])
    assert triples == [((0, 2), '出生地', (5, 7)), ((0, 2), '毕业院校', (11, 15))]
    entity, head, tail, kept = spo_labels(mapping, triples, PREDICATES)
    assert entity.shape == (2, 2, 2) and head.shape == (2, 1, 2) and tail.shape == (2, 1, 2)
    assert entity[0].tolist() == [[1, 2], [0, 0]]          # one subject, padded with (0, 0)
    assert entity[1].tolist() == [[6, 7], [12, 15]]         # 北京 and 北京大学 (nested text)
    assert head[0].tolist() == [[1, 6]] and tail[0].tolist() == [[2, 7]]
    assert head[1].tolist() == [[1, 12]] and tail[1].tolist() == [[2, 15]]
    assert kept == {((1, 2), 0, (6, 7)), ((1, 2), 1, (12, 15))}


def test_unknown_predicate_and_unaligned_spans(tokenizer):
    _, mapping = encoded(tokenizer)
    with pytest.raises(ValueError, match='unknown predicate'):
        spo_labels(mapping, [((0, 2), '作者', (5, 7))], PREDICATES)
    # truncated by maxlen: the object falls outside the tokens → skipped, subject-only triple dropped
    tokens = tokenizer.tokenize(TEXT, maxlen=8)
    short = tokenizer.rematch(TEXT, tokens)
    entity, head, tail, kept = spo_labels(short, [((0, 2), '出生地', (11, 15))], PREDICATES)
    assert kept == set() and entity.tolist() == [[[0, 0]], [[0, 0]]]


def handcrafted_scores(n=18, predicates=2):
    entity = -np.ones((2, n, n))
    head = -np.ones((predicates, n, n))
    tail = -np.ones((predicates, n, n))
    return entity, head, tail


def test_decode_overlapping_and_nested_triples(tokenizer):
    _, mapping = encoded(tokenizer)
    n = len(mapping)
    entity, head, tail = handcrafted_scores(n)
    # subjects: 张伟 (1,2); objects: 北京 (6,7), 北京大学 (12,15), and the nested 北京 (12,13)
    entity[0, 1, 2] = 3
    for span in [(6, 7), (12, 15), (12, 13)]:
        entity[1][span] = 2
    head[0, 1, 6], tail[0, 2, 7] = 1, 1            # 张伟 出生地 北京
    head[1, 1, 12], tail[1, 2, 15] = 1, 1          # 张伟 毕业院校 北京大学
    # a head link without its tail link must not produce a triple (张伟 出生地 北京[12,13])
    head[0, 1, 12] = 1
    triples = decode_spo(entity, head, tail, length=n)
    assert triples == {((1, 2), 0, (6, 7)), ((1, 2), 1, (12, 15))}
    texts = spo_to_text(triples, TEXT, mapping, {0: '出生地', 1: '毕业院校'})
    assert texts == {('张伟', '出生地', '北京'), ('张伟', '毕业院校', '北京大学')}
    # now add the tail link: the nested 北京 inside 北京大学 becomes a third triple
    tail[0, 2, 13] = 1
    triples = decode_spo(entity, head, tail, length=n)
    assert ((1, 2), 0, (12, 13)) in triples and len(triples) == 3


def test_decode_entity_both_subject_and_object_and_special_tokens():
    n = 10
    entity, head, tail = handcrafted_scores(n, predicates=3)
    entity[0, 1, 2] = entity[0, 4, 5] = 1      # two subjects
    entity[1, 4, 5] = entity[1, 7, 8] = 1      # (4, 5) is also an object
    head[2, 1, 4], tail[2, 2, 5] = 1, 1        # A -p2-> B
    head[0, 4, 7], tail[0, 5, 8] = 1, 1        # B -p0-> C
    head[1, 1, 7], tail[1, 2, 8] = 1, 1        # A -p1-> C
    assert decode_spo(entity, head, tail, length=n) == {((1, 2), 2, (4, 5)), ((4, 5), 0, (7, 8)), ((1, 2), 1, (7, 8))}
    # scores on [CLS] (0) or [SEP] (length-1) or padding are ignored
    entity[0, 0, 0] = entity[1, 0, 0] = 5
    head[0, 0, 0] = tail[0, 0, 0] = 5
    entity[1, 8, 9] = head[0, 4, 8] = tail[0, 5, 9] = 5
    # with length 9, position 8 is [SEP]: C = (7, 8) is no longer a valid span, only A -p2-> B remains
    assert decode_spo(entity, head, tail, length=9) == {((1, 2), 2, (4, 5))}
    with pytest.raises(ValueError, match=r'\(2, n, n\)'):
        decode_spo(entity[:1], head, tail)
    with pytest.raises(ValueError, match='matching'):
        decode_spo(entity, head[:, :5, :5], tail)


def test_pad_span_labels_and_triple_prf():
    assert pad_span_labels([set(), {(3, 4), (1, 2)}]).tolist() == [[[0, 0], [0, 0]], [[1, 2], [3, 4]]]
    scores = triple_prf([{('a', 'p', 'b')}, {('c', 'p', 'd'), ('x', 'p', 'y')}], [{('a', 'p', 'b')}, {('c', 'p', 'd')}])
    assert scores['precision'] == pytest.approx(2 / 3) and scores['recall'] == 1.0 and scores['f1'] == pytest.approx(0.8)
    assert parse_duie_object({'@value': 'x'}) == 'x' and parse_duie_object('y') == 'y'


def test_gplinker_heads_shapes():
    import keras
    x = keras.Input((None, 16))
    mask = keras.Input((None,), dtype='int32')
    entity, head, tail = gplinker_heads(x, 4, head_size=8, mask=mask)
    model = keras.Model([x, mask], [entity, head, tail])
    e, h, t = model.predict([np.random.randn(2, 5, 16), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])], verbose=0)
    assert e.shape == (2, 2, 5, 5) and h.shape == (2, 4, 5, 5) and t.shape == (2, 4, 5, 5)
    assert (e[0, :, 3:] == -1e12).all() and (h[0, :, :, 3:] == -1e12).all()
    assert (h[1] > -1e6).all()  # head/tail pointers keep the lower triangle (objects may precede subjects)
    with pytest.raises(ValueError, match='num_predicates'):
        gplinker_heads(x, 0)


def test_span_helpers(tokenizer):
    text = 'ab张伟c'
    tokens = tokenizer.tokenize(text)  # [CLS] ab 张 伟 c [SEP] ('ab' unknown word → kept as one token)
    mapping = tokenizer.rematch(text, tokens)
    starts, ends = token_char_maps(mapping)
    assert char_span_to_token_span(mapping, 2, 4) == (2, 3)
    assert char_span_to_token_span(mapping, 1, 3) is None  # starts inside a token
    assert token_span_to_char_span(mapping, 2, 3) == (2, 4)
    labels, kept = bio_labels(mapping, [(2, 4, 'PER'), (1, 3, 'LOC')], ['PER', 'LOC'])
    assert labels == [0, 0, 1, 2, 0, 0] and kept == [(2, 4, 'PER')]
    assert bio_decode([0, 1, 2, 2, 3, 4, 2, 0, 4], ['PER', 'LOC']) == [
        (1, 3, 'PER'), (4, 5, 'LOC'), (6, 6, 'PER'), (8, 8, 'LOC')]
    with pytest.raises(ValueError, match='entity type'):
        bio_labels(mapping, [(2, 4, 'ORG')], ['PER'])
    assert span_prf([set()], [set()])['f1'] == 1.0
    with pytest.raises(ValueError, match='predictions'):
        span_prf([set()], [])
