"""The challenge's two metrics: logical-form accuracy and execution accuracy.

Logical form (exact match of the parse): the (sel, agg) pairs as a set, the conditions (column, op, value
text) as a set, and the connector must all equal the gold ones; the order of columns or conditions does
not matter, repeated entries do (a duplicated pair counts, as the challenge compared lengths too).

Execution: the predicted and gold SQL both run against the table in SQLite and their results must be
equal, compared as a multiset of rows (row order carries no meaning without ORDER BY) with the select
items put in one canonical order first and floats rounded to 9 significant digits. A prediction that is
missing or does not fit its table counts as wrong.
"""
from collections import Counter

from bert4keras_ext.tasks.nl2sql.data import InvalidSQLError, validate_sql

__all__ = ['logical_form_parts', 'logical_form_match', 'canonical_result', 'execution_match', 'evaluate_sql']


def _pairs(sql):
    return sorted(zip(sql['sel'], sql['agg']))


def _conds(sql):
    return sorted((int(c), int(o), str(v)) for c, o, v in sql['conds'])


def logical_form_parts(pred, gold):
    """{'sel_agg', 'conds', 'conn', 'exact'} booleans for one prediction (None → all False)."""
    if pred is None:
        return {'sel_agg': False, 'conds': False, 'conn': False, 'exact': False}
    parts = {
        'sel_agg': _pairs(pred) == _pairs(gold),
        'conds': _conds(pred) == _conds(gold),
        'conn': int(pred['cond_conn_op']) == int(gold['cond_conn_op']),
    }
    parts['exact'] = all(parts.values())
    return parts


def logical_form_match(pred, gold):
    """True when the prediction's logical form equals the gold one (see module docstring)."""
    return logical_form_parts(pred, gold)['exact']


def _canonical_value(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        value = float(value)
        return 0.0 if value == 0 else float('%.9g' % value)
    return value


def canonical_result(rows):
    """A result as a Counter of rows with numbers rounded (for multiset equality)."""
    return Counter(tuple(_canonical_value(v) for v in row) for row in rows)


def _canonical_order(sql):
    pairs = _pairs(sql)
    return dict(sql, sel=[p[0] for p in pairs], agg=[p[1] for p in pairs])


def execution_match(db, table_id, pred, gold):
    """True when predicted and gold SQL give the same result on `db` (a SQLiteTables).

    The gold SQL must be valid (InvalidSQLError otherwise); an invalid or missing prediction is False.
    """
    table = db.tables[table_id]
    gold_rows = db.execute(table_id, _canonical_order(validate_sql(gold, table)))
    if pred is None:
        return False
    try:
        pred = _canonical_order(validate_sql(pred, table))
    except InvalidSQLError:
        return False
    return canonical_result(db.execute(table_id, pred)) == canonical_result(gold_rows)


def evaluate_sql(predictions, examples, db):
    """Accuracy figures of `predictions` (SQL dicts or None) against `examples` (with gold sql).

    Returns {'logical_form_accuracy', 'execution_accuracy', 'score' (their mean, the leaderboard
    figure), 'sel_agg_accuracy', 'conds_accuracy', 'conn_accuracy', 'count'}.
    """
    predictions, examples = list(predictions), list(examples)
    if len(predictions) != len(examples):
        raise ValueError('evaluate_sql: %d predictions for %d examples' % (len(predictions), len(examples)))
    totals = Counter()
    for pred, example in zip(predictions, examples):
        parts = logical_form_parts(pred, example.sql)
        for key, ok in parts.items():
            totals[key] += ok
        totals['execution'] += execution_match(db, example.table_id, pred, example.sql)
    n = max(len(examples), 1)
    lf, ex = totals['exact'] / n, totals['execution'] / n
    return {'logical_form_accuracy': lf, 'execution_accuracy': ex, 'score': (lf + ex) / 2,
            'sel_agg_accuracy': totals['sel_agg'] / n, 'conds_accuracy': totals['conds'] / n,
            'conn_accuracy': totals['conn'] / n, 'count': len(examples)}
