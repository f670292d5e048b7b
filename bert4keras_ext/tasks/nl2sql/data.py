"""The TianChi 2019 Chinese NL2SQL data format: tables, questions, SQL dicts, and a validating loader.

`*.tables.json`, one JSON object per line::

    {"id": "...", "name": "...", "header": ["楼盘名称", "均价", ...], "types": ["text", "real", ...],
     "rows": [["阳光花园", 35000, ...], ...]}

`*.json`, one question per line::

    {"table_id": "...", "question": "...",
     "sql": {"sel": [1], "agg": [1], "cond_conn_op": 0, "conds": [[0, 2, "阳光花园"]]}}

`agg`: 0 none, 1 AVG, 2 MAX, 3 MIN, 4 COUNT, 5 SUM; `cond_conn_op`: 0 none, 1 AND, 2 OR; condition op:
0 '>', 1 '<', 2 '==', 3 '!='. Every record is checked; a bad one raises `NL2SQLDataError` naming the file
and line, or is skipped (and listed) with `skip_bad=True`.
"""
import json
import os

from bert4keras_ext.tasks.nl2sql.numerals import format_number, parse_number

__all__ = [
    'AGG_NAMES', 'OP_NAMES', 'CONN_NAMES', 'NUM_AGG', 'NUM_OP', 'NUM_CONN', 'NOT_SELECTED', 'NO_OP',
    'NL2SQLDataError', 'InvalidSQLError', 'Table', 'Example', 'validate_sql', 'read_tables', 'read_examples',
    'load_split',
]

AGG_NAMES = ('', 'AVG', 'MAX', 'MIN', 'COUNT', 'SUM')
OP_NAMES = ('>', '<', '==', '!=')
CONN_NAMES = ('', 'AND', 'OR')
NUM_AGG = len(AGG_NAMES) + 1   # the sel/agg head's classes: the 6 aggregations + "not selected"
NUM_OP = len(OP_NAMES) + 1     # the tagging head's classes: the 4 operators + "not part of a value"
NUM_CONN = len(CONN_NAMES)
NOT_SELECTED = NUM_AGG - 1
NO_OP = NUM_OP - 1
COLUMN_TYPES = ('text', 'real')


class NL2SQLDataError(ValueError):
    """A record of an NL2SQL data file is malformed; the message starts with `file:line:`."""

    def __init__(self, path, line, reason):
        super().__init__('%s:%d: %s' % (path, line, reason))
        self.path, self.line, self.reason = path, line, reason


class InvalidSQLError(ValueError):
    """A SQL dict does not fit its table (bad column index, unknown agg/op/conn, malformed value)."""


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def text_cell(cell):
    """A cell as TEXT: None stays None (NULL); numbers are written as the challenge writes them."""
    if cell is None:
        return None
    if isinstance(cell, bool):
        return str(cell).lower()
    if isinstance(cell, (int, float)):
        return format_number(cell) if cell == cell and abs(cell) != float('inf') else None
    return str(cell)


def real_cell(cell):
    """A cell as REAL: a float, or None (NULL) when empty or not a number ('-', '', None)."""
    if cell is None or isinstance(cell, bool):
        return None
    value = parse_number(cell)
    if value is None or value != value or abs(value) == float('inf'):
        return None
    return value


class Table:
    """One table: `id`, `header` (column names), `types` ('text'/'real' per column), `rows` (raw cells).

    `text_cells(j)` lists the distinct non-NULL cells of column j as text (first-seen order) and
    `real_values(j)` the distinct numbers; both are computed once.
    """

    def __init__(self, id, header, types, rows, name='', source=''):
        self.id = id
        self.header = list(header)
        self.types = [t.lower() for t in types]
        self.rows = [list(r) for r in rows]
        self.name = name
        self.source = source
        self._text_cells = {}
        self._real_values = {}

    def __repr__(self):
        return 'Table(id=%r, header=%r, types=%r, %d rows)' % (self.id, self.header, self.types, len(self.rows))

    @property
    def num_columns(self):
        return len(self.header)

    def text_cells(self, column):
        if column not in self._text_cells:
            seen = {}
            for row in self.rows:
                cell = text_cell(row[column])
                if cell is not None and cell not in seen:
                    seen[cell] = None
            self._text_cells[column] = list(seen)
        return self._text_cells[column]

    def real_values(self, column):
        if column not in self._real_values:
            seen = {}
            for row in self.rows:
                value = real_cell(row[column])
                if value is not None and value not in seen:
                    seen[value] = None
            self._real_values[column] = list(seen)
        return self._real_values[column]

    def typed_rows(self):
        """Rows converted to their column types (float/None for REAL, str/None for TEXT)."""
        convert = [real_cell if t == 'real' else text_cell for t in self.types]
        return [tuple(f(c) for f, c in zip(convert, row)) for row in self.rows]


class Example:
    """One question: `table_id`, `question`, `sql` (normalised dict or None for unlabelled test data),
    `source` ('file:line')."""

    def __init__(self, table_id, question, sql=None, source=''):
        self.table_id = table_id
        self.question = question
        self.sql = sql
        self.source = source

    def __repr__(self):
        return 'Example(%r, %r, %r)' % (self.table_id, self.question, self.sql)


def validate_sql(sql, table):
    """Check a SQL dict against its table and return it normalised.

    The result is `{'sel': [int], 'agg': [int], 'cond_conn_op': int, 'conds': [[int, int, str]]}` with
    condition values as text (numbers written by `format_number`). Raises InvalidSQLError naming the
    first problem.
    """
    if not isinstance(sql, dict):
        raise InvalidSQLError('sql must be an object, got %s' % type(sql).__name__)
    for key in ('sel', 'agg', 'cond_conn_op', 'conds'):
        if key not in sql:
            raise InvalidSQLError('sql lacks %r' % key)
    n = table.num_columns
    sel, agg = sql['sel'], sql['agg']
    if not isinstance(sel, (list, tuple)) or not sel:
        raise InvalidSQLError('sql.sel must be a non-empty list of column indices, got %r' % (sel,))
    if not isinstance(agg, (list, tuple)) or len(agg) != len(sel):
        raise InvalidSQLError('sql.agg must be a list as long as sql.sel (%d), got %r' % (len(sel), agg))
    for c in sel:
        if not _is_int(c) or not 0 <= c < n:
            raise InvalidSQLError('sql.sel holds %r, not a column index of table %s (0..%d)' % (c, table.id, n - 1))
    for a in agg:
        if not _is_int(a) or not 0 <= a < len(AGG_NAMES):
            raise InvalidSQLError('sql.agg holds %r; aggregations are 0..%d %s' % (a, len(AGG_NAMES) - 1, AGG_NAMES))
    conn = sql['cond_conn_op']
    if not _is_int(conn) or not 0 <= conn < len(CONN_NAMES):
        raise InvalidSQLError('sql.cond_conn_op is %r; expected 0 (none), 1 (and) or 2 (or)' % (conn,))
    conds = sql['conds']
    if not isinstance(conds, (list, tuple)):
        raise InvalidSQLError('sql.conds must be a list of [column, op, value], got %r' % (conds,))
    normalised = []
    for cond in conds:
        if not isinstance(cond, (list, tuple)) or len(cond) != 3:
            raise InvalidSQLError('a condition must be [column, op, value], got %r' % (cond,))
        col, op, value = cond
        if not _is_int(col) or not 0 <= col < n:
            raise InvalidSQLError('condition %r: column %r is not an index of table %s (0..%d)'
                                  % (list(cond), col, table.id, n - 1))
        if not _is_int(op) or not 0 <= op < len(OP_NAMES):
            raise InvalidSQLError('condition %r: op %r; expected 0 (>), 1 (<), 2 (==) or 3 (!=)' % (list(cond), op))
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidSQLError('condition %r: the value must be a string or a number' % (list(cond),))
        if isinstance(value, float) and (value != value or abs(value) == float('inf')):
            raise InvalidSQLError('condition %r: the value is not a finite number' % (list(cond),))
        if isinstance(value, str) and '\x00' in value:
            raise InvalidSQLError('condition %r: the value contains a NUL character' % (list(cond),))
        normalised.append([col, op, value if isinstance(value, str) else format_number(value)])
    return {'sel': list(sel), 'agg': list(agg), 'cond_conn_op': conn, 'conds': normalised}


def _check_table(record):
    if not isinstance(record, dict):
        return 'expected a JSON object, got %s' % type(record).__name__
    table_id = record.get('id')
    if not isinstance(table_id, str) or not table_id:
        return 'missing or empty "id"'
    header, types, rows = record.get('header'), record.get('types'), record.get('rows')
    if not isinstance(header, list) or not header:
        return 'table %s: "header" must be a non-empty list of column names' % table_id
    for name in header:
        if not isinstance(name, str):
            return 'table %s: column name %r is not a string' % (table_id, name)
        if '\x00' in name:
            return 'table %s: column name %r contains a NUL character' % (table_id, name)
    if not isinstance(types, list) or len(types) != len(header):
        return 'table %s: "types" must list one type per column (%d), got %r' % (table_id, len(header), types)
    for kind in types:
        if not isinstance(kind, str) or kind.lower() not in COLUMN_TYPES:
            return 'table %s: column type %r; expected "text" or "real"' % (table_id, kind)
    if not isinstance(rows, list):
        return 'table %s: "rows" must be a list of rows' % table_id
    for k, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(header):
            return 'table %s: row %d has %s cells, the header has %d' % (
                table_id, k, len(row) if isinstance(row, list) else 'no list of', len(header))
        for cell in row:
            if isinstance(cell, (dict, list)):
                return 'table %s: row %d holds a %s cell; cells are strings, numbers or null' % (
                    table_id, k, type(cell).__name__)
            if isinstance(cell, str) and '\x00' in cell:
                return 'table %s: row %d holds a cell with a NUL character' % (table_id, k)
    for key in ('name', 'title'):
        if key in record and record[key] is not None and not isinstance(record[key], str):
            return 'table %s: "%s" must be a string' % (table_id, key)
    return None


def _records(path):
    """(line number, parsed JSON or the error text) for every non-blank line."""
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as e:
                yield number, None, 'invalid JSON (%s)' % e


def _fail(path, number, reason, skip_bad, skipped):
    error = NL2SQLDataError(path, number, reason)
    if not skip_bad:
        raise error
    if skipped is not None:
        skipped.append(str(error))


def read_tables(path, skip_bad=False, skipped=None):
    """Read a `*.tables.json` file → {table id: Table}.

    Args:
        path: the file (JSON lines; blank lines are ignored).
        skip_bad: skip malformed records instead of raising NL2SQLDataError.
        skipped: optional list that receives one 'file:line: reason' message per skipped record.
    """
    path = os.fspath(path)
    tables = {}
    for number, record, error in _records(path):
        reason = error or _check_table(record)
        if reason is None and record['id'] in tables:
            reason = 'duplicate table id %r (first at %s)' % (record['id'], tables[record['id']].source)
        if reason is not None:
            _fail(path, number, reason, skip_bad, skipped)
            continue
        tables[record['id']] = Table(record['id'], record['header'], record['types'], record['rows'],
                                     name=record.get('name') or record.get('title') or '',
                                     source='%s:%d' % (path, number))
    return tables


def read_examples(path, tables, skip_bad=False, skipped=None, require_sql=True):
    """Read a questions file (`train.json`, `val.json`, ...) → [Example], checked against `tables`.

    Args:
        path: the file (JSON lines).
        tables: {table id: Table} from `read_tables`.
        skip_bad: skip malformed records (unknown table, bad SQL, empty question, ...) instead of raising.
        skipped: optional list that receives 'file:line: reason' for every skipped record.
        require_sql: False for unlabelled test files (then a missing "sql" gives `Example.sql = None`).
    """
    path = os.fspath(path)
    examples = []
    for number, record, error in _records(path):
        reason, sql = error, None
        if reason is None:
            if not isinstance(record, dict):
                reason = 'expected a JSON object, got %s' % type(record).__name__
            elif not isinstance(record.get('table_id'), str):
                reason = 'missing "table_id"'
            elif record['table_id'] not in tables:
                reason = 'unknown table_id %r (not in the tables file)' % record['table_id']
            elif not isinstance(record.get('question'), str) or not record['question'].strip():
                reason = 'missing or empty "question"'
            elif 'sql' in record or require_sql:
                try:
                    sql = validate_sql(record.get('sql'), tables[record['table_id']])
                except InvalidSQLError as e:
                    reason = 'bad sql: %s' % e
        if reason is not None:
            _fail(path, number, reason, skip_bad, skipped)
            continue
        examples.append(Example(record['table_id'], record['question'], sql, source='%s:%d' % (path, number)))
    return examples


def load_split(data_dir, split, skip_bad=False, require_sql=True):
    """`data_dir/{split}.json` + `data_dir/{split}.tables.json` → (examples, tables, skipped messages)."""
    skipped = []
    tables_path = os.path.join(data_dir, '%s.tables.json' % split)
    questions_path = os.path.join(data_dir, '%s.json' % split)
    for p in (tables_path, questions_path):
        if not os.path.isfile(p):
            raise FileNotFoundError('NL2SQL data: %s not found (expected TianChi layout: %s.json and '
                                    '%s.tables.json in %s)' % (p, split, split, data_dir))
    tables = read_tables(tables_path, skip_bad=skip_bad, skipped=skipped)
    examples = read_examples(questions_path, tables, skip_bad=skip_bad, skipped=skipped, require_sql=require_sql)
    return examples, tables, skipped
