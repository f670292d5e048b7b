"""Character spans ↔ token spans, BIO tagging and span-level precision/recall/F1.

Conventions used throughout the extraction helpers:
- character spans are half-open `(start, end)` into the original text (`text[start:end]`);
- token spans are **inclusive** `(start, end)` token positions of the encoded sequence, [CLS] being
  position 0 (the GlobalPointer convention: cell (i, j) with i ≤ j);
- `mapping` is `Tokenizer.rematch(text, tokens)`: for each token the list of original character
  indices it covers (`[]` for [CLS]/[SEP]-like special tokens; an [UNK] covers the word it replaced).
"""
__all__ = [
    'token_char_maps', 'char_span_to_token_span', 'token_span_to_char_span', 'bio_labels',
    'bio_decode', 'span_prf',
]


def token_char_maps(mapping):
    """(start_map, end_map): first char index → token position, last char index → token position."""
    start_map, end_map = {}, {}
    for position, chars in enumerate(mapping):
        if chars:
            start_map.setdefault(chars[0], position)
            end_map[chars[-1]] = position
    return start_map, end_map


def char_span_to_token_span(mapping, start, end, maps=None):
    """Inclusive token span covering text[start:end] exactly, or None when the span does not begin
    and end on token boundaries (e.g. it was cut off by `maxlen`, or splits a word piece)."""
    if end <= start:
        return None
    start_map, end_map = maps or token_char_maps(mapping)
    if start in start_map and end - 1 in end_map and start_map[start] <= end_map[end - 1]:
        return start_map[start], end_map[end - 1]
    return None


def token_span_to_char_span(mapping, start, end):
    """Half-open character span of the inclusive token span (start, end), or None if a token of it
    maps to no character."""
    if not (0 <= start <= end < len(mapping)) or not mapping[start] or not mapping[end]:
        return None
    return mapping[start][0], mapping[end][-1] + 1


def bio_labels(mapping, entities, types):
    """BIO label ids for one encoded sequence: 0 = O, 2k+1 = B-types[k], 2k+2 = I-types[k].

    entities: iterable of (char_start, char_end, type) half-open character spans. Entities that do
    not align with tokens (or fall beyond maxlen) are skipped. Returns (labels, kept entities).
    """
    type_ids = {t: i for i, t in enumerate(types)}
    labels = [0] * len(mapping)
    maps = token_char_maps(mapping)
    kept = []
    for start, end, kind in entities:
        if kind not in type_ids:
            raise ValueError('bio_labels: entity type %r is not one of %s' % (kind, list(types)))
        span = char_span_to_token_span(mapping, start, end, maps)
        if span is None:
            continue
        s, e = span
        labels[s] = 2 * type_ids[kind] + 1
        for i in range(s + 1, e + 1):
            labels[i] = 2 * type_ids[kind] + 2
        kept.append((start, end, kind))
    return labels, kept


def bio_decode(labels, types):
    """Inclusive token spans [(start, end, type)] from BIO label ids (an I without a B starts a span,
    an I of another type ends the current one)."""
    spans = []
    current = None
    for position, label in enumerate(list(labels) + [0]):
        label = int(label)
        if label == 0 or label % 2 == 1 or current is None or (label - 1) // 2 != current[1]:
            if current is not None:
                spans.append((current[0], position - 1, types[current[1]]))
                current = None
            if label != 0:
                current = (position, (label - 1) // 2)
    return spans


def span_prf(predicted, gold):
    """Micro precision / recall / F1 over lists of per-example collections of hashable items
    (entities, triples). Returns a dict; empty-vs-empty counts as F1 = 1."""
    if len(predicted) != len(gold):
        raise ValueError('span_prf: %d predictions for %d gold examples' % (len(predicted), len(gold)))
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        p, g = set(p), set(g)
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    precision = tp / n_pred if n_pred else float(n_gold == 0)
    recall = tp / n_gold if n_gold else float(n_pred == 0)
    f1 = 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 1.0
    return {'precision': precision, 'recall': recall, 'f1': f1, 'tp': tp, 'predicted': n_pred, 'gold': n_gold}
