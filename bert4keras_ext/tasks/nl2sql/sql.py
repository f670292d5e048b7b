"""SQL for NL2SQL predictions, built and executed safely in an in-memory SQLite database.

Safety contract (tested in tests/test_nl2sql.py):

* A query is only ever *built* here, from a validated SQL dict, as one parameterised statement::

      SELECT AVG("均价"), "城市" FROM "table id" WHERE "城市" = ? AND "均价" > ?

  Identifiers are never taken from the prediction: column indices are checked against the table and
  mapped to the table's own column names, which are double-quoted with `"` doubled; aggregations,
  operators and connectors come from fixed whitelists; values are always bound as parameters (REAL
  columns get a float or NULL, TEXT columns a string), never written into the SQL text.
* Execution goes through `SQLiteTables.run_select`, which accepts one statement that starts with SELECT;
  SQLite itself rejects a second statement, the connection is `PRAGMA query_only=ON` once the tables are
  loaded, and an authorizer callback allows nothing but SELECT, reading the loaded tables and the five
  aggregate functions. So even a hostile string that reached the executor could not write, attach,
  change pragmas or call other functions.
* `render_sql` writes a human-readable SQL text with the values inlined as quoted literals, for display
  only; nothing here executes it.
"""
import sqlite3

from bert4keras_ext.tasks.nl2sql.data import AGG_NAMES, InvalidSQLError, validate_sql
from bert4keras_ext.tasks.nl2sql.numerals import parse_number

__all__ = [
    'UnsafeQueryError', 'AGG_SQL', 'OP_SQL', 'CONN_SQL', 'quote_identifier', 'column_names', 'build_select',
    'render_sql', 'bind_value', 'SQLiteTables',
]

AGG_SQL = {i: name for i, name in enumerate(AGG_NAMES)}     # 0 → no aggregation
OP_SQL = {0: '>', 1: '<', 2: '=', 3: '!='}                  # the challenge's '==' is SQL '='
CONN_SQL = {0: 'AND', 1: 'AND', 2: 'OR'}                    # 0 with several conditions: AND, as the challenge's engine
_AGG_FUNCTIONS = frozenset(name.lower() for name in AGG_NAMES if name)
_COLUMN_SQL_TYPES = {'text': 'TEXT', 'real': 'REAL'}


class UnsafeQueryError(ValueError):
    """A statement other than one SELECT over the loaded tables was about to run; nothing was executed."""


def quote_identifier(name):
    """`name` as an SQLite identifier: wrapped in double quotes, inner double quotes doubled.

    Raises InvalidSQLError for non-strings and names holding NUL (SQLite cannot store them).
    """
    if not isinstance(name, str):
        raise InvalidSQLError('an identifier must be a string, got %r' % (name,))
    if '\x00' in name:
        raise InvalidSQLError('identifier %r contains a NUL character' % name)
    return '"' + name.replace('"', '""') + '"'


def column_names(header):
    """The SQLite column name of every header entry: the header text itself, made unique.

    SQLite compares identifiers case-insensitively and needs them distinct, while real tables repeat
    headers and have empty ones; a repeated or empty name gets the suffix '_<column number>'.
    """
    names, used = [], set()
    for j, name in enumerate(header):
        candidate = name if name else 'column'
        if candidate.casefold() in used or not name:
            base, k = candidate, j + 1
            candidate = '%s_%d' % (base, k)
            while candidate.casefold() in used:
                k += len(header)
                candidate = '%s_%d' % (base, k)
        used.add(candidate.casefold())
        names.append(candidate)
    return names


def bind_value(value, column_type):
    """The parameter bound for a condition value: a float (or None when it is no number) for REAL
    columns, the text for TEXT columns. A non-numeric value against a REAL column therefore matches no
    row (a comparison with NULL is never true)."""
    if column_type == 'real':
        number = parse_number(value)
        return None if number is None or number != number else number
    return value if isinstance(value, str) else str(value)


def _clauses(table, sql, table_name):
    """(head 'SELECT ... FROM ...', condition terms without their value, params, connector) of a dict."""
    sql = validate_sql(sql, table)
    columns = [quote_identifier(name) for name in column_names(table.header)]
    items = ['%s(%s)' % (AGG_SQL[agg], columns[col]) if agg else columns[col]
             for col, agg in zip(sql['sel'], sql['agg'])]
    head = 'SELECT %s FROM %s' % (', '.join(items), quote_identifier(table.id if table_name is None else table_name))
    terms = ['%s %s' % (columns[col], OP_SQL[op]) for col, op, _ in sql['conds']]
    params = tuple(bind_value(value, table.types[col]) for col, _, value in sql['conds'])
    return head, terms, params, CONN_SQL[sql['cond_conn_op']]


def build_select(table, sql, table_name=None):
    """The parameterised query of a SQL dict over `table`: (query text, parameters tuple).

    Args:
        table: a `Table` (its header and types decide identifiers and parameter types).
        sql: a SQL dict (validated here; InvalidSQLError if it does not fit the table).
        table_name: the SQL table name (default: the table id).
    """
    head, terms, params, conn = _clauses(table, sql, table_name)
    if not terms:
        return head, params
    return head + ' WHERE ' + (' %s ' % conn).join(term + ' ?' for term in terms), params


def _literal(value):
    if value is None:
        return 'NULL'
    if isinstance(value, float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def render_sql(table, sql):
    """Readable SQL with the bound values written as literals — for printing only, never executed."""
    head, terms, params, conn = _clauses(table, sql, None)
    if not terms:
        return head
    return head + ' WHERE ' + (' %s ' % conn).join('%s %s' % (t, _literal(v)) for t, v in zip(terms, params))


class SQLiteTables:
    """Every table loaded into one in-memory SQLite database with typed columns, then locked read-only.

    Args:
        tables: {id: Table} or an iterable of Tables.
    Use `execute(table_id, sql_dict)` → list of row tuples; `run_select(query, params)` is the only
    way a statement reaches SQLite.
    """

    def __init__(self, tables):
        tables = list(tables.values()) if isinstance(tables, dict) else list(tables)
        self.tables = {}
        self._sql_names = {}
        self._denied = None
        self.connection = sqlite3.connect(':memory:')
        used = set()
        for table in tables:
            if table.id in self.tables:
                raise ValueError('SQLiteTables: duplicate table id %r' % table.id)
            name = table.id
            if name.casefold() in used:  # SQLite table names are case-insensitive too
                k = 2
                while ('%s_%d' % (table.id, k)).casefold() in used:
                    k += 1
                name = '%s_%d' % (table.id, k)
            used.add(name.casefold())
            self.tables[table.id] = table
            self._sql_names[table.id] = name
            self._create(table, name)
        self.connection.commit()
        # From here on the database is read-only and only SELECTs over these tables may be prepared.
        self.connection.execute('PRAGMA query_only=ON')
        self._readable = {n.casefold() for n in self._sql_names.values()}
        self.connection.set_authorizer(self._authorize)

    def _create(self, table, name):
        columns = column_names(table.header)
        definitions = ', '.join('%s %s' % (quote_identifier(c), _COLUMN_SQL_TYPES[t])
                                for c, t in zip(columns, table.types))
        self.connection.execute('CREATE TABLE %s (%s)' % (quote_identifier(name), definitions))
        if table.rows:
            placeholders = ', '.join('?' * len(columns))
            self.connection.executemany('INSERT INTO %s VALUES (%s)' % (quote_identifier(name), placeholders),
                                        table.typed_rows())

    def _authorize(self, action, arg1, arg2, database, trigger):
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and arg1 is not None and arg1.casefold() in self._readable:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and arg2.lower() in _AGG_FUNCTIONS:
            return sqlite3.SQLITE_OK
        self._denied = (action, arg1, arg2)
        return sqlite3.SQLITE_DENY

    def run_select(self, query, params=()):
        """Run one parameterised SELECT and return its rows; anything else raises UnsafeQueryError.

        `params` must hold only None, int, float or str values (they are bound, never interpolated).
        """
        if not isinstance(query, str) or not query.lstrip()[:6].upper() == 'SELECT':
            raise UnsafeQueryError('only a single SELECT statement may run, got %r' % (query,))
        params = tuple(params)
        for value in params:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
                raise UnsafeQueryError('parameter %r has type %s; only None, int, float and str are bound'
                                       % (value, type(value).__name__))
        self._denied = None
        try:
            cursor = self.connection.execute(query, params)
            return cursor.fetchall()
        except (sqlite3.ProgrammingError, sqlite3.Warning) as e:
            if 'one statement' in str(e):
                raise UnsafeQueryError('only a single SELECT statement may run: %s' % e) from e
            raise
        except sqlite3.DatabaseError as e:
            if self._denied is not None or 'readonly' in str(e):
                raise UnsafeQueryError('statement refused (%s): %r' % (e, query)) from e
            raise

    def build(self, table_id, sql):
        """(query, params) of a SQL dict for the table `table_id`."""
        if table_id not in self.tables:
            raise InvalidSQLError('unknown table id %r' % (table_id,))
        return build_select(self.tables[table_id], sql, table_name=self._sql_names[table_id])

    def execute(self, table_id, sql):
        """Build and run a SQL dict; returns the list of result rows (tuples)."""
        return self.run_select(*self.build(table_id, sql))

    def close(self):
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
