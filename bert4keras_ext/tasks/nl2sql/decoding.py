"""Head outputs of one example → the challenge's SQL dict (numpy only).

The baseline's decoding (notes §13, kexue.fm/archives/6771):

* sel/agg: every header whose class is not NOT_SELECTED is selected with that aggregation; if none is,
  the header least likely to be "not selected" is taken (a query needs a column).
* conditions: consecutive question tokens with the same operator tag (≠ NO_OP) form one value span; its
  column is the argmax of the span's mean column distribution.
* values: on a REAL column the span is read as a number (Chinese numerals, 万/亿, %, rescaled to the unit
  a header such as '票房(万元)' declares) and written like the challenge ('3500'). A span that is no
  number cannot be compared with a REAL column: the condition becomes '==' on text. '>' / '<' need a
  number; a non-numeric span with them becomes '=='. (The baseline forced '==' on *every* non-numeric
  value; '!=' on a text column is kept here, since the challenge format has it.) For '==' / '!=' on text
  the span is snapped to the most similar cell, which may move the condition to the column holding that
  cell (`snap_to_cell`).
* connector: 0 with at most one condition, else 1 + argmax of the AND/OR probabilities.
"""
import numpy as np

from bert4keras_ext.tasks.nl2sql.data import NO_OP, NOT_SELECTED
from bert4keras_ext.tasks.nl2sql.numerals import find_numbers, format_number, parse_number, scale_to_header_unit
from bert4keras_ext.tasks.nl2sql.values import snap_to_cell

__all__ = ['decode_sql', 'value_spans', 'resolve_condition', 'read_number']

OP_EQ, OP_NE = 2, 3


def value_spans(op_tags, question_length):
    """[(start, end, op)] question-char spans of equal consecutive tags ≠ NO_OP.

    `op_tags` is indexed by token position (token i + 1 = question char i).
    """
    spans = []
    start, current = None, NO_OP
    for i in range(question_length + 1):
        tag = int(op_tags[i + 1]) if i < question_length else NO_OP
        if tag != current:
            if current != NO_OP:
                spans.append((start, i, current))
            start, current = i, tag
    return spans


def read_number(text, header=''):
    """The number a value span states (None if it states none or several), in the header's unit."""
    value, raw = parse_number(text), text
    if value is None:
        found = find_numbers(text)
        if len(found) != 1:
            return None
        start, end, value = found[0]
        raw = text[start:end]
    return scale_to_header_unit(value, raw, header)


def resolve_condition(text, op, col, table, snap_values=True):
    """(column, op, value text) of one predicted condition (rules in the module docstring)."""
    if table.types[col] == 'real':
        number = read_number(text, table.header[col])
        if number is not None:
            return col, op, format_number(number)
        op = OP_EQ
    elif op not in (OP_EQ, OP_NE):
        if read_number(text) is None:
            op = OP_EQ
        else:
            return col, op, text  # a numeric comparison on a TEXT column (bound and compared as text)
    if snap_values:
        col, text = snap_to_cell(text, table, col)
    return col, op, text


def decode_sql(question, table, conn_probs, sel_probs, op_probs, col_probs, snap_values=True):
    """Decode one example's head outputs.

    Args:
        question: the question text (m characters).
        table: its `Table` (H columns).
        conn_probs: (3,) connector distribution.
        sel_probs: (≥H, 7) per-header agg/not-selected distribution (rows beyond H are padding).
        op_probs: (≥m+2, 5) per-token operator tags (token 0 is [CLS]; token i + 1 is question char i).
        col_probs: (≥m+2, ≥H) per-token column distribution.
        snap_values: snap text values to table cells.
    Returns:
        {'sel': [...], 'agg': [...], 'cond_conn_op': int, 'conds': [[col, op, value], ...]}.
    """
    H, m = table.num_columns, len(question)
    sel_probs = np.asarray(sel_probs)[:H]
    op_probs, col_probs = np.asarray(op_probs), np.asarray(col_probs)[:, :H]
    classes = sel_probs.argmax(-1)
    sel = [j for j in range(H) if classes[j] != NOT_SELECTED]
    agg = [int(classes[j]) for j in sel]
    if not sel:
        j = int(sel_probs[:, NOT_SELECTED].argmin())
        sel, agg = [j], [int(sel_probs[j, :NOT_SELECTED].argmax())]
    conds = []
    for start, end, op in value_spans(op_probs.argmax(-1), m):
        text = question[start:end].strip()
        if not text:
            continue
        col = int(col_probs[start + 1:end + 1].mean(0).argmax())
        cond = list(resolve_condition(text, op, col, table, snap_values))
        if cond not in conds:
            conds.append(cond)
    conn_probs = np.asarray(conn_probs)
    conn = 0 if len(conds) <= 1 else 1 + int(conn_probs[1:].argmax())
    return {'sel': sel, 'agg': agg, 'cond_conn_op': conn, 'conds': conds}
