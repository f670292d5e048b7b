"""GPLinker relation extraction pieces (kexue.fm/archives/8888): heads, labels, decoding.

A (subject, predicate, object) triple with inclusive token spans (sh, st), (oh, ot) scores
S = entity[0, sh, st] + entity[1, oh, ot] + head[p, sh, oh] + tail[p, st, ot]; each part is a
GlobalPointer matrix trained with the sparse multi-label loss, and a triple is predicted when every
part is > 0:
- entity pointer: 2 heads (subjects, objects), RoPE, upper-triangular;
- head pointer:   one head per predicate, cell (sh, oh) links the two spans' first tokens;
- tail pointer:   one head per predicate, cell (st, ot) links their last tokens (no RoPE / tril:
  an object may come before its subject).

Overlapping triples decode naturally: a subject may pair with several objects (and predicates) and
entities may nest (a span inside another span), because every span and every link is its own cell.
"""
import numpy as np

from bert4keras_ext.heads import EfficientGlobalPointer, GlobalPointer
from bert4keras_ext.spans import char_span_to_token_span, span_prf, token_char_maps, token_span_to_char_span

__all__ = [
    'gplinker_heads', 'find_spo_char_spans', 'spo_labels', 'pad_span_labels', 'decode_spo', 'spo_to_text',
    'triple_prf', 'parse_duie_object',
]


def gplinker_heads(hidden, num_predicates, head_size=64, efficient=False, mask=None):
    """The three GPLinker pointers on a (b, n, D) encoder output.

    Returns [entity (b, 2, n, n), head (b, P, n, n), tail (b, P, n, n)] float32 score tensors,
    named 'GPLinker-Entity', 'GPLinker-Head', 'GPLinker-Tail'. `efficient=True` uses
    EfficientGlobalPointer (≈0.3M instead of ≈10M head parameters at BERT-base size).
    `mask` (b, n): bool/0-1 or the token ids (0 = padding); optional when `hidden` carries a Keras mask.
    """
    if num_predicates < 1:
        raise ValueError('gplinker_heads: num_predicates must be >= 1, got %r' % (num_predicates,))
    pointer = EfficientGlobalPointer if efficient else GlobalPointer
    x = hidden if mask is None else [hidden, mask]
    entity = pointer(2, head_size, name='GPLinker-Entity')(x)
    head = pointer(num_predicates, head_size, RoPE=False, tril_mask=False, name='GPLinker-Head')(x)
    tail = pointer(num_predicates, head_size, RoPE=False, tril_mask=False, name='GPLinker-Tail')(x)
    return [entity, head, tail]


def parse_duie_object(obj):
    """DuIE 2.0 objects are {'@value': text, ...}; LIC2019 objects are plain strings."""
    if isinstance(obj, dict):
        if '@value' not in obj:
            raise ValueError("DuIE object %r has no '@value'" % (obj,))
        return obj['@value']
    return obj


def find_spo_char_spans(text, spo_list):
    """[(subject char span, predicate, object char span)] for DuIE-style spo dicts, locating each
    entity by its first occurrence in the text (the usual DuIE convention); triples whose subject or
    object does not occur are skipped."""
    triples = []
    for spo in spo_list:
        subject, obj = spo['subject'], parse_duie_object(spo['object'])
        s, o = text.find(subject), text.find(obj)
        if subject and obj and s >= 0 and o >= 0:
            triples.append(((s, s + len(subject)), spo['predicate'], (o, o + len(obj))))
    return triples


def pad_span_labels(groups):
    """List of per-head sets of (start, end) → int array (heads, K, 2), K ≥ 1, padded with (0, 0)."""
    width = max([len(g) for g in groups] + [1])
    out = np.zeros((len(groups), width, 2), dtype='int32')
    for i, group in enumerate(groups):
        for k, span in enumerate(sorted(group)):
            out[i, k] = span
    return out


def spo_labels(mapping, triples, predicate2id):
    """Sparse GPLinker labels of one encoded text.

    Args:
        mapping: `tokenizer.rematch(text, tokens)` of the encoded tokens.
        triples: [(subject char span, predicate, object char span)], half-open char spans.
        predicate2id: {predicate: id}.
    Returns:
        (entity (2, K, 2), head (P, K, 2), tail (P, K, 2)) int arrays of inclusive token spans /
        links, padded with (0, 0), and the set of token-level triples kept (those aligned with
        tokens and inside maxlen). Pad a batch with `sequence_padding(..., seq_dims=2)`.
    """
    maps = token_char_maps(mapping)
    entity = [set(), set()]
    head = [set() for _ in predicate2id]
    tail = [set() for _ in predicate2id]
    kept = set()
    for subject, predicate, obj in triples:
        if predicate not in predicate2id:
            raise ValueError('spo_labels: unknown predicate %r (known: %s)' % (predicate, sorted(predicate2id)))
        s = char_span_to_token_span(mapping, subject[0], subject[1], maps)
        o = char_span_to_token_span(mapping, obj[0], obj[1], maps)
        if s is None or o is None:
            continue
        p = predicate2id[predicate]
        entity[0].add(s)
        entity[1].add(o)
        head[p].add((s[0], o[0]))
        tail[p].add((s[1], o[1]))
        kept.add((s, p, o))
    return pad_span_labels(entity), pad_span_labels(head), pad_span_labels(tail), kept


def decode_spo(entity_scores, head_scores, tail_scores, length=None, threshold=0.0):
    """Token-level triples {((sh, st), p, (oh, ot))} of one example from its three score matrices.

    entity_scores (2, n, n), head_scores / tail_scores (P, n, n) (numpy). `length` = number of real
    tokens including [CLS] and [SEP]; rows/columns 0 ([CLS]) and length-1 ([SEP]) and beyond are
    ignored. Pass `length=None` to use every position.
    """
    entity_scores = np.asarray(entity_scores)
    head_scores, tail_scores = np.asarray(head_scores), np.asarray(tail_scores)
    if entity_scores.ndim != 3 or entity_scores.shape[0] != 2:
        raise ValueError('decode_spo: entity_scores must be (2, n, n), got %s' % (entity_scores.shape,))
    if head_scores.shape != tail_scores.shape or head_scores.shape[1:] != entity_scores.shape[1:]:
        raise ValueError('decode_spo: head %s / tail %s must be (P, n, n) matching entity %s'
                         % (head_scores.shape, tail_scores.shape, entity_scores.shape))
    n = entity_scores.shape[-1]
    valid = np.ones(n, dtype=bool)
    if length is not None:
        valid[:] = False
        valid[1:max(length - 1, 1)] = True
    cell_ok = valid[:, None] & valid[None, :]
    subjects = list(zip(*np.nonzero((entity_scores[0] > threshold) & cell_ok)))
    objects = list(zip(*np.nonzero((entity_scores[1] > threshold) & cell_ok)))
    triples = set()
    for sh, st in subjects:
        for oh, ot in objects:
            linked = (head_scores[:, sh, oh] > threshold) & (tail_scores[:, st, ot] > threshold)
            for p in np.nonzero(linked)[0]:
                triples.add(((int(sh), int(st)), int(p), (int(oh), int(ot))))
    return triples


def spo_to_text(triples, text, mapping, id2predicate):
    """Token-level triples → {(subject text, predicate, object text)} via the rematch mapping."""
    out = set()
    for (sh, st), p, (oh, ot) in triples:
        s, o = token_span_to_char_span(mapping, sh, st), token_span_to_char_span(mapping, oh, ot)
        if s is not None and o is not None:
            out.add((text[s[0]:s[1]], id2predicate[p], text[o[0]:o[1]]))
    return out


def triple_prf(predicted, gold):
    """Exact-match micro precision / recall / F1 over per-example sets of triples."""
    return span_prf(predicted, gold)
