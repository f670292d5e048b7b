"""Condition values: string similarity, snapping predicted spans to table cells, aligning gold values
to question spans.

Similarity is the baseline's: Levenshtein edit distance, as `1 - distance / max(len)` (so a span that is a
substring of a cell scores len(span) / len(cell)).
"""
from bert4keras_ext.tasks.nl2sql.numerals import find_numbers, numbers_equal, parse_number

__all__ = ['edit_distance', 'similarity', 'snap_to_cell', 'locate_value']


def edit_distance(a, b):
    """Levenshtein distance (insert / delete / substitute, each cost 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a, b):
    """1 - edit_distance / max(len(a), len(b)), in [0, 1]; two empty strings are identical (1.0)."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - edit_distance(a, b) / longest


def snap_to_cell(text, table, column, min_similarity=0.0):
    """The table cell closest to a predicted text value, and the column it lives in.

    Candidates are the distinct cells of every TEXT column. The most similar cell wins; on a tie the cell
    of the predicted `column` wins, then the lower column index, then the earlier row. If the winner lives
    in another column, the condition moves there (the baseline's column switch). A span whose best
    similarity is not above `min_similarity` is returned unchanged.

    Args:
        text: the value read from the question.
        table: a `Table`.
        column: the predicted column index.
    Returns:
        (column, value) — possibly a new column, and the cell text (or `text` unchanged).
    """
    if text in table.text_cells(column):
        return column, text
    best = None
    for j, kind in enumerate(table.types):
        if kind != 'text':
            continue
        for cell in table.text_cells(j):
            key = (similarity(text, cell), j == column, -j)
            if best is None or key > best[0]:
                best = (key, j, cell)
    if best is None or best[0][0] <= min_similarity:
        return column, text
    return best[1], best[2]


def _free(span, taken):
    return all(span[1] <= s or span[0] >= e for s, e in taken)


def locate_value(question, value, taken=(), min_similarity=0.5):
    """Where a gold condition value is written in the question: (start, end) char offsets, or None.

    Order of attempts: a number (the value parses as one) is matched against the numbers written in the
    question by value, so '3500' finds '三千五百' and '15' does not match inside '150'; then the literal
    text; then (for text values) the most similar substring of length len(value) ± 1 if its similarity
    reaches `min_similarity` (on a tie, the substring with the larger share of characters that occur in
    the value, then the earlier one). Spans overlapping `taken` are not used.
    """
    value = str(value)
    number = parse_number(value)
    if number is not None:
        for start, end, found in find_numbers(question):
            if numbers_equal(found, number) and _free((start, end), taken):
                return start, end
    if value:
        start = question.find(value)
        while start >= 0:
            if _free((start, start + len(value)), taken) and (
                    number is None or not _inside_longer_number(question, start, start + len(value))):
                return start, start + len(value)
            start = question.find(value, start + 1)
    if number is not None or not value:
        return None
    best = None
    for length in (len(value), len(value) - 1, len(value) + 1):
        if length < 1:
            continue
        for start in range(0, len(question) - length + 1):
            span = (start, start + length)
            if not _free(span, taken):
                continue
            window = question[span[0]:span[1]]
            # ties go to the window with fewer characters foreign to the value ('北京' over '北京的')
            score = (similarity(window, value), sum(ch in value for ch in window) / length)
            if best is None or score > best[0]:
                best = (score, span)
    if best is not None and best[0][0] >= min_similarity:
        return best[1]
    return None


def _inside_longer_number(question, start, end):
    before = question[start - 1] if start > 0 else ''
    after = question[end] if end < len(question) else ''
    return before.isdigit() or after.isdigit() or before == '.' or after == '.'
