"""NL2SQL task: number normalisation, value snapping, the validating loader, the safe SQL builder and
executor (every agg / op / connector, quoting, injection attempts, NULLs, empty results), decoding of
handcrafted head outputs, the LF / EX metrics, the loss against numpy, and the example run end to end.

Every expected value below is worked out by hand from the small tables defined here.
"""
import importlib.util
import json
import math
import os
import sqlite3

import numpy as np
import pytest

from bert4keras_ext.tasks.nl2sql import (
    NL2SQLDataError, NL2SQLEncoder, SQLiteTables, Table, UnsafeQueryError, build_select, decode_sql,
    edit_distance, evaluate_sql, execution_match, find_numbers, format_number, logical_form_match,
    logical_form_parts, parse_number, quote_identifier, read_examples, read_tables, render_sql, similarity,
    snap_to_cell,
)
from bert4keras_ext.tasks.nl2sql.data import Example, InvalidSQLError, load_split
from bert4keras_ext.tasks.nl2sql.sql import column_names
from bert4keras_ext.tasks.nl2sql.values import locate_value

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------------
# Number normalisation
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('text, expected', [
    ('三千五百', 3500), ('1.2万', 12000), ('两亿', 2e8), ('百分之五', 5), ('5%', 5), ('５％', 5),
    ('二十五', 25), ('十二', 12), ('十', 10), ('一百零五', 105), ('一千零五', 1005), ('三千五', 3500),
    ('一万二', 12000), ('两万五', 25000), ('三亿五千万', 350000000), ('十万', 100000), ('三十五万', 350000),
    ('5千万', 5e7), ('1亿2000万', 120000000), ('二零一九', 2019), ('三点五', 3.5), ('三点五万', 35000),
    ('百分之十二点五', 12.5), ('3.5', 3.5), ('1,200', 1200), ('1,200,000', 1200000), ('１２３', 123),
    ('负三', -3), ('-2.5', -2.5), ('零', 0), ('0.5', 0.5), (' 42 ', 42), (7, 7), (2.5, 2.5),
])
def test_parse_number(text, expected):
    assert parse_number(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('text', ['北京', '', '万', '三五百', 'abc', '3元', '百千', None, True, ['1'], '1.2.3'])
def test_parse_number_refuses_non_numbers(text):
    assert parse_number(text) is None


def test_percent_as_fraction():
    assert parse_number('5%', percent_as_fraction=True) == pytest.approx(0.05)
    assert parse_number('百分之五', percent_as_fraction=True) == pytest.approx(0.05)


def test_find_numbers_keeps_offsets_of_the_question():
    question = '均价大于3000且面积小于九十的楼盘'
    assert find_numbers(question) == [(4, 8, 3000.0), (13, 15, 90.0)]
    # a run that does not parse as a whole is cut from the right: '3个' → '3'
    assert find_numbers('有3个') == [(1, 2, 3.0)]


def test_format_number():
    assert format_number(3500.0) == '3500'
    assert format_number(1.5) == '1.5'
    assert format_number(-2.0) == '-2'
    assert format_number(1e-7) == '0.0000001'
    with pytest.raises(ValueError):
        format_number(float('nan'))


# ------------------------------------------------------------------------------------------------
# Similarity, snapping, alignment
# ------------------------------------------------------------------------------------------------
def test_edit_distance_and_similarity():
    assert edit_distance('kitten', 'sitting') == 3
    assert edit_distance('北京市', '北京') == 1
    assert edit_distance('', 'abc') == 3
    assert similarity('北京市', '北京') == pytest.approx(2 / 3)
    assert similarity('', '') == 1.0
    assert similarity('上海', '北京市') == 0.0


def snap_table():
    return Table('snap', ['城市', '区域', '均价'], ['text', 'text', 'real'], [
        ['北京', '北京市朝阳区', 50000],
        ['上海', '浦东', 60000],
        ['南京', '北京', 30000],
    ])


def test_snap_to_cell_picks_the_closest_cell_and_switches_column():
    table = snap_table()
    # '北京市': 北京 (2/3) beats 北京市朝阳区 (1 - 3/6 = 0.5) and 南京 (1/3); 北京 is in both text columns,
    # the tie goes to the predicted column
    assert snap_to_cell('北京市', table, 0) == (0, '北京')
    assert snap_to_cell('北京市', table, 1) == (1, '北京')
    # '浦东新区' is closest to 浦东 (0.5), which lives in column 1: the condition moves there
    assert snap_to_cell('浦东新区', table, 0) == (1, '浦东')
    # an exact cell of the predicted column stays
    assert snap_to_cell('上海', table, 0) == (0, '上海')
    # nothing similar (similarity 0): unchanged
    assert snap_to_cell('深圳', table, 0) == (0, '深圳')


def test_locate_value():
    # numbers are matched by value, Chinese numerals included
    assert locate_value('均价大于三千五百的楼盘', '3500') == (4, 8)
    # '15' must not match inside '150'
    assert locate_value('价格150元', '15') is None
    assert locate_value('价格15元', '15') == (2, 4)
    # literal text, skipping a span already taken by another condition
    assert locate_value('北京或北京', '北京') == (0, 2)
    assert locate_value('北京或北京', '北京', taken=[(0, 2)]) == (3, 5)
    # fuzzy: '北京市' is written '北京' (similarity 2/3, no foreign character)
    assert locate_value('城市是北京的', '北京市') == (3, 5)
    assert locate_value('城市是哪里', '成都') is None


# ------------------------------------------------------------------------------------------------
# Loader validation: file:line in every error, skip_bad
# ------------------------------------------------------------------------------------------------
GOOD_TABLE = {'id': 't1', 'name': '房价', 'header': ['城市', '均价'], 'types': ['text', 'real'],
              'rows': [['北京', 50000], ['上海', 60000]]}
GOOD_QUESTION = {'table_id': 't1', 'question': '北京的均价是多少',
                 'sql': {'sel': [1], 'agg': [0], 'cond_conn_op': 0, 'conds': [[0, 2, '北京']]}}


def write_lines(path, records):
    with open(path, 'w', encoding='utf-8') as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + '\n')
    return str(path)


@pytest.mark.parametrize('bad, reason', [
    ('{"id": "t2", ', 'invalid JSON'),
    ({'id': '', 'header': ['a'], 'types': ['text'], 'rows': []}, 'empty "id"'),
    ({'id': 't2', 'header': ['a', 'b'], 'types': ['text'], 'rows': []}, '"types"'),
    ({'id': 't2', 'header': ['a'], 'types': ['date'], 'rows': []}, "column type 'date'"),
    ({'id': 't2', 'header': ['a', 'b'], 'types': ['text', 'real'], 'rows': [['x']]}, 'row 0 has 1 cells'),
    ({'id': 't2', 'header': [1], 'types': ['text'], 'rows': []}, 'not a string'),
    ({'id': 't2', 'header': ['a'], 'types': ['text'], 'rows': [[{'x': 1}]]}, 'dict cell'),
    (dict(GOOD_TABLE), "duplicate table id 't1'"),
    ([1, 2], 'expected a JSON object'),
])
def test_table_errors_name_file_and_line(tmp_path, bad, reason):
    path = write_lines(tmp_path / 'x.tables.json', [GOOD_TABLE, '', bad])  # line 2 is blank
    with pytest.raises(NL2SQLDataError) as info:
        read_tables(path)
    assert str(info.value).startswith('%s:3: ' % path)
    assert reason in str(info.value)
    assert info.value.line == 3
    skipped = []
    tables = read_tables(path, skip_bad=True, skipped=skipped)
    assert list(tables) == ['t1'] and len(skipped) == 1 and skipped[0].startswith('%s:3: ' % path)


def bad_sql(**changes):
    record = json.loads(json.dumps(GOOD_QUESTION))
    record['sql'].update(changes)
    return record


@pytest.mark.parametrize('bad, reason', [
    (dict(GOOD_QUESTION, table_id='nope'), "unknown table_id 'nope'"),
    (dict(GOOD_QUESTION, question='  '), 'empty "question"'),
    ({'table_id': 't1', 'question': 'q'}, 'sql must be an object'),
    (bad_sql(sel=[2]), 'sql.sel holds 2'),
    (bad_sql(sel=[]), 'non-empty list'),
    (bad_sql(sel=[True]), 'sql.sel holds True'),
    (bad_sql(agg=[6]), 'sql.agg holds 6'),
    (bad_sql(agg=[0, 1]), 'as long as sql.sel'),
    (bad_sql(cond_conn_op=3), 'cond_conn_op is 3'),
    (bad_sql(conds=[[0, 4, 'x']]), 'op 4'),
    (bad_sql(conds=[[5, 2, 'x']]), 'column 5'),
    (bad_sql(conds=[[0, 2, None]]), 'string or a number'),
    (bad_sql(conds=[[0, 2]]), '[column, op, value]'),
])
def test_question_errors_name_file_and_line(tmp_path, bad, reason):
    tables = read_tables(write_lines(tmp_path / 'x.tables.json', [GOOD_TABLE]))
    path = write_lines(tmp_path / 'x.json', [GOOD_QUESTION, GOOD_QUESTION, bad, GOOD_QUESTION])
    with pytest.raises(NL2SQLDataError) as info:
        read_examples(path, tables)
    assert str(info.value).startswith('%s:3: ' % path), str(info.value)
    assert reason in str(info.value)
    skipped = []
    examples = read_examples(path, tables, skip_bad=True, skipped=skipped)
    assert [e.source for e in examples] == ['%s:%d' % (path, n) for n in (1, 2, 4)]
    assert len(skipped) == 1 and skipped[0].startswith('%s:3: ' % path)


def test_loader_normalises_and_reads_unlabelled_files(tmp_path):
    write_lines(tmp_path / 'train.tables.json', [GOOD_TABLE])
    record = bad_sql(conds=[[1, 0, 45000]])  # a JSON number becomes the challenge's text '45000'
    write_lines(tmp_path / 'train.json', [record])
    examples, tables, skipped = load_split(str(tmp_path), 'train')
    assert examples[0].sql == {'sel': [1], 'agg': [0], 'cond_conn_op': 0, 'conds': [[1, 0, '45000']]}
    assert skipped == [] and tables['t1'].real_values(1) == [50000.0, 60000.0]
    path = write_lines(tmp_path / 'test.json', [{'table_id': 't1', 'question': '上海的均价'}])
    assert read_examples(path, tables, require_sql=False)[0].sql is None
    with pytest.raises(FileNotFoundError, match='val.json'):
        load_split(str(tmp_path), 'val')


# ------------------------------------------------------------------------------------------------
# SQL builder and executor
# ------------------------------------------------------------------------------------------------
def house_table():
    """Five rows; '均价' has a NULL and a text cell '45,000'; '面积' has a NULL; odd identifiers."""
    return Table('房产 "表"', ['城市', '均价', '楼盘 名称', 'say "hi"', '面积'], ['text', 'real', 'text', 'text', 'real'], [
        ['北京', 50000, '阳光花园', 'a', 90],
        ['上海', 60000, '锦绣家园', 'b', 120],
        ['北京', 30000, '翠湖天地', 'c', None],
        ['广州', None, '金色港湾', None, 80],
        ['深圳', '45,000', '时代广场', 'd', 100],
    ])


def sql(sel, agg, conds=(), conn=0):
    return {'sel': list(sel), 'agg': list(agg), 'cond_conn_op': conn, 'conds': [list(c) for c in conds]}


@pytest.fixture()
def house_db():
    db = SQLiteTables([house_table()])
    yield db
    db.close()


def test_build_select_is_one_parameterised_statement():
    query, params = build_select(house_table(), sql([1, 2], [1, 0], [[0, 2, '北京'], [3, 3, 'x']], conn=2))
    assert query == ('SELECT AVG("均价"), "楼盘 名称" FROM "房产 ""表""" WHERE "城市" = ? OR "say ""hi""" != ?')
    assert params == ('北京', 'x')
    query, params = build_select(house_table(), sql([4], [0]))
    assert query == 'SELECT "面积" FROM "房产 ""表"""' and params == ()
    # REAL columns get floats (Chinese numerals normalised), TEXT columns strings
    assert build_select(house_table(), sql([0], [0], [[1, 0, '三万'], [0, 2, '5']]))[1] == (30000.0, '5')


@pytest.mark.parametrize('agg, expected', [
    (0, [(50000.0,), (60000.0,), (30000.0,), (None,), (45000.0,)]),
    (1, [(46250.0,)]),      # (50000 + 60000 + 30000 + 45000) / 4: NULL ignored, '45,000' read as a number
    (2, [(60000.0,)]),
    (3, [(30000.0,)]),
    (4, [(4,)]),            # COUNT skips the NULL
    (5, [(185000.0,)]),
])
def test_every_aggregation(house_db, agg, expected):
    assert house_db.execute('房产 "表"', sql([1], [agg])) == expected


@pytest.mark.parametrize('op, value, names', [
    (0, '45000', {'阳光花园', '锦绣家园'}),
    (1, '45000', {'翠湖天地'}),
    (2, '45000', {'时代广场'}),
    (3, '45000', {'阳光花园', '锦绣家园', '翠湖天地'}),   # NULL != 45000 is not true
    (0, '四万五千', {'阳光花园', '锦绣家园'}),
    (2, '不是数字', set()),                                # no number: bound as NULL, matches nothing
])
def test_every_operator_on_a_real_column(house_db, op, value, names):
    rows = house_db.execute('房产 "表"', sql([2], [0], [[1, op, value]]))
    assert {r[0] for r in rows} == names


@pytest.mark.parametrize('conn, conds, names', [
    (1, [[0, 2, '北京'], [1, 0, '40000']], {'阳光花园'}),
    (2, [[0, 2, '广州'], [1, 0, '55000']], {'锦绣家园', '金色港湾'}),
    (0, [[0, 2, '北京'], [1, 1, '40000']], {'翠湖天地'}),    # 0 with two conditions runs as AND
    (1, [[0, 3, '北京'], [3, 2, 'd']], {'时代广场'}),
])
def test_every_connector(house_db, conn, conds, names):
    rows = house_db.execute('房产 "表"', sql([2], [0], conds, conn))
    assert {r[0] for r in rows} == names


def test_nulls_and_empty_results(house_db):
    t = '房产 "表"'
    assert house_db.execute(t, sql([4], [1])) == [(97.5,)]               # (90 + 120 + 80 + 100) / 4
    assert house_db.execute(t, sql([4], [4])) == [(4,)]
    assert {r[0] for r in house_db.execute(t, sql([2], [0], [[4, 3, '100']]))} == {'阳光花园', '锦绣家园', '金色港湾'}
    assert house_db.execute(t, sql([2], [0], [[0, 2, '成都']])) == []
    assert house_db.execute(t, sql([1], [1], [[0, 2, '成都']])) == [(None,)]
    assert house_db.execute(t, sql([1], [4], [[0, 2, '成都']])) == [(0,)]
    assert house_db.execute(t, sql([3], [0], [[0, 2, '广州']])) == [(None,)]


def test_real_versus_text_comparison():
    table = Table('nums', ['文本数', '实数'], ['text', 'real'], [['10', 10], ['9', 9], [100, '100']])
    with SQLiteTables([table]) as db:
        # TEXT compares as text: '10' and '100' sort before '9'
        assert db.execute('nums', sql([0], [0], [[0, 0, '9']])) == []
        assert db.execute('nums', sql([0], [0], [[0, 1, '9']])) == [('10',), ('100',)]
        # REAL compares as numbers
        assert db.execute('nums', sql([1], [0], [[1, 0, '9']])) == [(10.0,), (100.0,)]
        assert db.execute('nums', sql([1], [0], [[1, 2, '10.0']])) == [(10.0,)]
        assert db.execute('nums', sql([0], [0], [[0, 2, '10.0']])) == []          # text '10' != '10.0'
        assert db.execute('nums', sql([1], [5])) == [(119.0,)]


def test_identifier_quoting():
    assert quote_identifier('名称') == '"名称"'
    assert quote_identifier('say "hi"') == '"say ""hi"""'
    assert quote_identifier('a b') == '"a b"'
    with pytest.raises(InvalidSQLError):
        quote_identifier('a\x00b')
    # repeated (case-insensitively), empty headers get unique SQL names
    assert column_names(['名称', '名称', 'A', 'a', '']) == ['名称', '名称_2', 'A', 'a_4', 'column_5']
    table = Table('dup', ['名称', '名称', 'A', 'a', ''], ['text'] * 5, [['x', 'y', 'z', 'w', 'v']])
    with SQLiteTables([table]) as db:
        assert db.execute('dup', sql([1, 3, 4], [0, 0, 0])) == [('y', 'w', 'v')]


INJECTION = "'; DROP TABLE t; --"


def table_count(db, name):
    return db.run_select('SELECT COUNT("x") FROM %s' % quote_identifier(name))[0][0]


def test_injection_through_cell_values_is_data():
    table = Table('t', ['x', 'y'], ['text', 'real'], [[INJECTION, 1], ['ok', 2], ['a" ); DROP TABLE t; --', 3]])
    with SQLiteTables([table]) as db:
        assert db.execute('t', sql([1], [0], [[0, 2, INJECTION]])) == [(1.0,)]
        assert table_count(db, 't') == 3


def test_injection_through_question_values_is_bound():
    table = Table('t', ['x', 'y'], ['text', 'real'], [['a', 1], ['b', 2]])
    with SQLiteTables([table]) as db:
        traced = []
        db.connection.set_trace_callback(traced.append)
        for value in ("a' OR '1'='1", 'a" OR "1"="1', INJECTION, "1; DELETE FROM t"):
            query, params = db.build('t', sql([0], [0], [[0, 2, value], [1, 0, value]], conn=2))
            assert query == 'SELECT "x" FROM "t" WHERE "x" = ? OR "y" > ?'
            assert params == (value, None)
            assert db.execute('t', sql([0], [0], [[0, 2, value], [1, 0, value]], conn=2)) == []
        # SQLite saw exactly one statement per execution, each a SELECT
        assert len(traced) == 4 and all(t.startswith('SELECT "x" FROM "t" WHERE') for t in traced)
        db.connection.set_trace_callback(None)
        assert table_count(db, 't') == 2


def test_injection_through_headers_and_table_names_is_quoted():
    header = ['x', 'y" FROM t; DROP TABLE t; --', "z'); DROP TABLE t;--", '价格?']
    table = Table('t"; DROP TABLE t; --', header, ['text', 'text', 'text', 'real'], [['a', 'b', 'c', 1]])
    other = Table('t', ['x'], ['text'], [['keep']])
    with SQLiteTables([table, other]) as db:
        assert db.execute(table.id, sql([1, 2, 3], [0, 0, 0], [[3, 2, '1']])) == [('b', 'c', 1.0)]
        assert table_count(db, 't') == 1 and table_count(db, table.id) == 1


def test_only_a_single_select_runs():
    with SQLiteTables([Table('t', ['x'], ['text'], [['a']])]) as db:
        for statement in ('SELECT 1; DROP TABLE "t"', 'DROP TABLE "t"', 'DELETE FROM "t"',
                          'INSERT INTO "t" VALUES (1)', "ATTACH DATABASE ':memory:' AS other", 'PRAGMA query_only=OFF',
                          'WITH a AS (SELECT 1) DELETE FROM "t"', 'SELECT * FROM sqlite_master',
                          "SELECT load_extension('x')", 'SELECT upper("x") FROM "t"',
                          'select 1; select 2'):
            with pytest.raises(UnsafeQueryError):
                db.run_select(statement)
        with pytest.raises(UnsafeQueryError):
            db.run_select('SELECT "x" FROM "t" WHERE "x" = ?', (b'bytes',))
        # even the raw connection refuses writes: read-only and the authorizer deny them
        with pytest.raises(sqlite3.DatabaseError):
            db.connection.execute('DROP TABLE "t"')
        with pytest.raises(sqlite3.DatabaseError):
            db.connection.execute('UPDATE "t" SET "x" = 1')
        with pytest.raises(sqlite3.DatabaseError):
            db.connection.execute('PRAGMA query_only=OFF')
        assert db.run_select('SELECT "x" FROM "t"') == [('a',)]
        assert db.run_select('SELECT COUNT("x") FROM "t" WHERE "x" = ?', ('a',)) == [(1,)]


@pytest.mark.parametrize('bad', [
    sql([9], [0]), sql([0], [6]), sql([0], [0], [[0, 4, 'x']]), sql([0], [0], conn=3), sql(['0'], [0]),
    sql([0], [0], [[0, 2, None]]), {'sel': [0]}, 'SELECT 1',
])
def test_invalid_sql_dicts_never_execute(house_db, bad):
    with pytest.raises(InvalidSQLError):
        house_db.execute('房产 "表"', bad)


def test_render_sql_is_for_display():
    text = render_sql(house_table(), sql([0], [4], [[2, 2, "O'Brien"], [1, 0, '3万']], conn=1))
    assert text == ('SELECT COUNT("城市") FROM "房产 ""表""" WHERE "楼盘 名称" = \'O\'\'Brien\' AND "均价" > 30000.0')


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------
VOCAB = ['[PAD]'] + ['[unused%d]' % i for i in range(1, 20)] + ['[UNK]', '[CLS]', '[SEP]', '[MASK]'] + list(
    '北京上海城市均价面积楼盘大于的是多少a')
TOKEN = {t: i for i, t in enumerate(VOCAB)}


def test_encoder_layout_and_labels():
    table = Table('t', ['城市', '均价'], ['text', 'real'], [['北京', 1], ['上海', 2]])
    encoder = NL2SQLEncoder(TOKEN)
    question = '北京 上海A?'
    encoded = encoder.encode(question, table)
    T = TOKEN
    assert encoded['token_ids'] == [T['[CLS]'], T['北'], T['京'], T['[unused1]'], T['上'], T['海'], T['a'], T['[UNK]'],
                                    T['[SEP]'], T['[CLS]'], T['[unused11]'], T['城'], T['市'], T['[SEP]'],
                                    T['[CLS]'], T['[unused12]'], T['均'], T['价'], T['[SEP]']]
    assert encoded['header_positions'] == [9, 14] and encoded['question_length'] == 7
    assert encoded['segment_ids'] == [0] * 19
    labels = encoder.labels(question, sql([1], [2], [[0, 3, '上海']]), table, 19)
    assert labels['sel'] == [6, 2] and labels['conn'] == 0
    assert labels['op'] == [4] * 4 + [3, 3] + [4] * 13      # 上海 = chars 3, 4 = tokens 4, 5
    assert labels['col'][4:6] == [0, 0] and labels['aligned'] == 1 and labels['unaligned'] == 0
    assert NL2SQLEncoder(TOKEN, header_segment=1).encode(question, table)['segment_ids'] == [0] * 9 + [1] * 10
    plain = NL2SQLEncoder(TOKEN, mark_types=False).encode(question, table)
    assert plain['header_positions'] == [9, 13] and len(plain['token_ids']) == 17
    with pytest.raises(ValueError, match='lacks'):
        NL2SQLEncoder({'[CLS]': 0})


# ------------------------------------------------------------------------------------------------
# Decoding handcrafted head outputs
# ------------------------------------------------------------------------------------------------
def heads(n, H, sel_classes, spans, conn=(0.1, 0.7, 0.2)):
    """Head outputs: `sel_classes` one class per header; spans [(first char, end char, op, col)]."""
    sel = np.zeros((H + 2, 7))  # two padded header rows, which decoding must ignore
    sel[:, 6] = 1
    for j, c in enumerate(sel_classes):
        sel[j] = 0
        sel[j, c] = 1
    op = np.zeros((n, 5))
    op[:, 4] = 1
    col = np.full((n, H + 2), 1.0 / (H + 2))
    for start, end, o, c in spans:
        for t in range(start + 1, end + 1):
            op[t] = 0
            op[t, o] = 1
            col[t] = 0
            col[t, c] = 1
    return np.array(conn), sel, op, col


def decode_table():
    return Table('t', ['城市', '均价', '面积', '楼盘'], ['text', 'real', 'real', 'text'], [
        ['北京', 50000, 90, '阳光花园'], ['上海', 3500, 120, '锦绣家园'], ['北京', 30000, 80, '翠湖天地']])


def test_decode_handcrafted_heads_to_sql_and_result():
    table = decode_table()
    question = '北京市均价大于三千五百的楼盘平均面积是多少'
    # 北京市 = chars 0-2, tagged '==' but pointed at 楼盘 (wrong): snapping to the cell 北京 moves it to 城市;
    # 三千五百 = chars 7-10, tagged '>' on 均价
    conn, sel, op, col = heads(30, 4, [6, 6, 1, 6], [(0, 3, 2, 3), (7, 11, 0, 1)])
    pred = decode_sql(question, table, conn, sel, op, col)
    assert pred == {'sel': [2], 'agg': [1], 'cond_conn_op': 1, 'conds': [[0, 2, '北京'], [1, 0, '3500']]}
    assert build_select(table, pred) == ('SELECT AVG("面积") FROM "t" WHERE "城市" = ? AND "均价" > ?', ('北京', 3500.0))
    with SQLiteTables([table]) as db:
        assert db.execute('t', pred) == [(85.0,)]  # rows 北京/50000/90 and 北京/30000/80
    # without snapping the span is kept as written, on the predicted column
    raw = decode_sql(question, table, conn, sel, op, col, snap_values=False)
    assert raw['conds'] == [[3, 2, '北京市'], [1, 0, '3500']]


def test_decode_fallbacks_and_rules():
    table = decode_table()
    question = '上海大于锦绣家园的楼盘'   # 上海 0-1, 锦绣家园 4-7
    conn, sel, op, col = heads(20, 4, [6, 6, 6, 6], [(0, 2, 0, 1), (4, 8, 3, 3)], conn=(0.1, 0.2, 0.7))
    # no header selected: take the one least likely "not selected" (row 2), with its best aggregation
    sel[2] = [0.05, 0.1, 0.3, 0.05, 0.05, 0.05, 0.4]
    pred = decode_sql(question, table, conn, sel, op, col)
    # '上海' tagged '>' on the REAL column 均价: no number, so '==' on text, snapped into 城市;
    # '!=' on a text column is kept; two conditions → connector 1 + argmax(AND, OR) = 2
    assert pred == {'sel': [2], 'agg': [2], 'cond_conn_op': 2, 'conds': [[0, 2, '上海'], [3, 3, '锦绣家园']]}
    # a single condition never gets a connector; a repeated condition is kept once
    question = '北京或北京'
    conn, sel, op, col = heads(12, 4, [4, 6, 6, 6], [(0, 2, 2, 0), (3, 5, 2, 0)], conn=(0.1, 0.2, 0.7))
    assert decode_sql(question, table, conn, sel, op, col) == {
        'sel': [0], 'agg': [4], 'cond_conn_op': 0, 'conds': [[0, 2, '北京']]}


def test_decode_numbers_in_header_units():
    table = Table('films', ['电影', '票房(万元)', '评分'], ['text', 'real', 'real'], [['哪吒', 500000, 8.4]])
    question = '票房低于2.5亿且评分超过百分之八十的电影'  # 2.5亿 = chars 4-7, 百分之八十 = chars 13-17
    conn, sel, op, col = heads(30, 3, [0, 6, 6], [(4, 8, 1, 1), (13, 18, 0, 2)])
    pred = decode_sql(question, table, conn, sel, op, col)
    # 2.5亿 元 is 25000 万元; 百分之八十 is 80 (percent points)
    assert pred['conds'] == [[1, 1, '25000'], [2, 0, '80']]


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
GOLD = {'sel': [2, 1], 'agg': [1, 0], 'cond_conn_op': 1, 'conds': [[0, 2, '北京'], [1, 0, '3500']]}


def test_logical_form_is_order_free_and_exact_on_values():
    reordered = {'sel': [1, 2], 'agg': [0, 1], 'cond_conn_op': 1, 'conds': [[1, 0, '3500'], [0, 2, '北京']]}
    assert logical_form_match(reordered, GOLD)
    assert not logical_form_match(dict(GOLD, conds=[[0, 2, '北京'], [1, 0, '3500.0']]), GOLD)
    assert logical_form_parts(dict(GOLD, cond_conn_op=2), GOLD) == {
        'sel_agg': True, 'conds': True, 'conn': False, 'exact': False}
    assert logical_form_parts(dict(GOLD, agg=[1, 4]), GOLD)['sel_agg'] is False
    assert logical_form_parts(dict(GOLD, sel=[2, 1, 1], agg=[1, 0, 0]), GOLD)['sel_agg'] is False
    assert logical_form_parts(None, GOLD)['exact'] is False


def test_execution_match_and_evaluate():
    table = decode_table()
    with SQLiteTables([table]) as db:
        same_result = dict(GOLD, conds=[[0, 2, '北京'], [1, 0, '4000']])     # same rows pass > 4000
        number_text = dict(GOLD, conds=[[0, 2, '北京'], [1, 0, '3500.0']])  # same bound number
        reordered = {'sel': [1, 2], 'agg': [0, 1], 'cond_conn_op': 1, 'conds': [[1, 0, '3500'], [0, 2, '北京']]}
        wrong = dict(GOLD, agg=[2, 0])
        assert execution_match(db, 't', same_result, GOLD) and not logical_form_match(same_result, GOLD)
        assert execution_match(db, 't', number_text, GOLD)
        assert execution_match(db, 't', reordered, GOLD)
        assert not execution_match(db, 't', wrong, GOLD)
        assert not execution_match(db, 't', None, GOLD)
        assert not execution_match(db, 't', dict(GOLD, sel=[9, 1]), GOLD)
        examples = [Example('t', 'q', GOLD)] * 5
        metrics = evaluate_sql([reordered, same_result, number_text, wrong, None], examples, db)
    assert metrics['logical_form_accuracy'] == pytest.approx(1 / 5)
    assert metrics['execution_accuracy'] == pytest.approx(3 / 5)
    assert metrics['score'] == pytest.approx(2 / 5)
    assert metrics['sel_agg_accuracy'] == pytest.approx(3 / 5)   # all but `wrong` and None
    assert metrics['conds_accuracy'] == pytest.approx(2 / 5)     # reordered, wrong
    assert metrics['conn_accuracy'] == pytest.approx(4 / 5)
    assert metrics['count'] == 5


# ------------------------------------------------------------------------------------------------
# Generated data: coverage, and gold → labels → one-hot heads → decode gives back the gold SQL
# ------------------------------------------------------------------------------------------------
def test_generated_data_covers_everything_and_round_trips():
    from bert4keras_ext.tasks.nl2sql.synthetic import generate_dataset, to_chinese_numeral
    assert [to_chinese_numeral(n) for n in (3500, 105, 20000, 100500, 12)] == ['三千五百', '一百零五', '二万', '十万零五百', '十二']
    train, valid, tables = generate_dataset(600, 50, seed=3)
    aggs = {a for e in train for a in e.sql['agg']}
    ops = {(tables[e.table_id].types[c], o) for e in train for c, o, _ in e.sql['conds']}
    conns = {e.sql['cond_conn_op'] for e in train}
    assert aggs == set(range(6)) and conns == {0, 1, 2}
    assert {('text', 2), ('text', 3), ('real', 0), ('real', 1), ('real', 2), ('real', 3)} <= ops
    assert any(any(ch in e.question for ch in '千万百十') for e in train)  # numbers written in Chinese too
    vocab = sorted({ch for e in train for ch in e.question} | {ch for t in tables.values() for h in t.header for ch in h})
    token_dict = {t: i for i, t in enumerate(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] +
                                             ['[unused%d]' % i for i in range(1, 20)] + vocab)}
    encoder = NL2SQLEncoder(token_dict)
    with SQLiteTables(tables) as db:
        for example in train:
            table = tables[example.table_id]
            encoded = encoder.encode(example.question, table)
            n = len(encoded['token_ids'])
            labels = encoder.labels(example.question, example.sql, table, n)
            assert labels['unaligned'] == 0, example
            conn = np.eye(3)[labels['conn']]
            sel = np.eye(7)[labels['sel']]
            op = np.eye(5)[labels['op']]
            col = np.eye(table.num_columns)[labels['col']]
            pred = decode_sql(example.question, table, conn, sel, op, col)
            assert logical_form_match(pred, example.sql), (example.question, pred, example.sql)
            assert execution_match(db, example.table_id, pred, example.sql)


# ------------------------------------------------------------------------------------------------
# Model pieces against numpy
# ------------------------------------------------------------------------------------------------
def np_ce(logits, labels):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


def test_loss_matches_numpy():
    from bert4keras_ext.tasks.nl2sql.model import nl2sql_loss
    rng = np.random.RandomState(0)
    b, n, H = 2, 6, 3
    conn_logits, sel_logits = rng.randn(b, 3), rng.randn(b, H, 7)
    op_logits, col_logits = rng.randn(b, n, 5), rng.randn(b, n, H)
    col_logits[1, :, 2] = -1e12                                 # sample 1 has only 2 headers
    header_positions = np.array([[5, 7, 9], [4, 6, 0]])
    sel_true = np.array([[6, 1, 6], [4, 6, 6]])
    conn_true = np.array([[1], [0]])
    op_true = np.array([[4, 2, 2, 4, 4, 4], [4, 0, 4, 3, 4, 4]])
    col_true = np.array([[0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]])
    question_mask = np.array([[0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0]], dtype='float32')
    total, parts = nl2sql_loss([sel_true, conn_true, op_true, col_true],
                               [t.astype('float32') for t in (conn_logits, sel_logits, op_logits, col_logits)],
                               question_mask, header_positions)
    sel_ce = np_ce(sel_logits, sel_true)
    expected_sel = (sel_ce[0].sum() + sel_ce[1, :2].sum()) / 5
    expected_conn = np_ce(conn_logits, conn_true[:, 0]).mean()
    op_ce = np_ce(op_logits, op_true)
    expected_op = (op_ce * question_mask).sum() / 7
    col_ce = np_ce(col_logits, col_true)
    expected_col = (col_ce[0, 1] + col_ce[0, 2] + col_ce[1, 1] + col_ce[1, 3]) / 4
    for got, want in zip(parts, (expected_sel, expected_conn, expected_op, expected_col)):
        assert float(got) == pytest.approx(want, rel=1e-5)
    assert float(total) == pytest.approx(expected_sel + expected_conn + expected_op + expected_col, rel=1e-5)


def test_column_pointer_and_gather_against_numpy():
    from bert4keras_ext.tasks.nl2sql.model import ColumnPointer, GatherPositions
    rng = np.random.RandomState(1)
    x = rng.randn(2, 7, 4).astype('float32')
    positions = np.array([[3, 5, 0], [2, 4, 6]], dtype='int32')
    h = np.asarray(GatherPositions()([x, positions]))
    assert np.array_equal(h[0, 1], x[0, 5]) and np.array_equal(h[1, 2], x[1, 6])
    layer = ColumnPointer(units=5)
    scores = np.asarray(layer([x, h, positions]))
    wx, bx = [np.asarray(w) for w in layer.token_dense.weights]
    (wh,) = [np.asarray(w) for w in layer.header_dense.weights]
    v, c = [np.asarray(w) for w in layer.score_dense.weights]
    expected = np.tanh((x @ wx + bx)[:, :, None] + (h @ wh)[:, None]) @ v[:, 0] + c[0]
    assert np.abs(scores[1] - expected[1]).max() < 1e-5
    assert np.abs(scores[0, :, :2] - expected[0, :, :2]).max() < 1e-5
    assert (scores[0, :, 2] == -1e12).all()  # the padded header is masked with a finite negative


def test_warmup_decay_schedule():
    from bert4keras_ext.tasks.nl2sql.model import WarmupDecay
    schedule = WarmupDecay(5e-5, warmup_steps=100, decay_steps=100, floor=1e-5)
    values = [float(schedule(s)) for s in (0, 50, 100, 150, 200, 1000)]
    assert values == pytest.approx([0, 2.5e-5, 5e-5, 3e-5, 1e-5, 1e-5], rel=1e-6)


class StubModel:
    """Stands in for the prediction model: selects header 0 with agg = (question length) % 6."""

    def __init__(self):
        self.batches = []

    def predict_on_batch(self, inputs):
        token_ids, segment_ids, header_positions = inputs
        self.batches.append(token_ids.shape)
        b, n = token_ids.shape
        H = header_positions.shape[1]
        conn = np.tile([1.0, 0, 0], (b, 1))
        sel = np.zeros((b, H, 7))
        sel[:, :, 6] = 1
        for r in range(b):
            m = header_positions[r, 0] - 2  # header 0's [CLS] follows [CLS] question [SEP]
            sel[r, 0] = np.eye(7)[m % 6]
        op = np.tile(np.eye(5)[4], (b, n, 1))
        col = np.full((b, n, H), 1.0 / H)
        return [conn, sel, op, col]


def test_predict_sql_batches_by_length_and_keeps_order():
    from bert4keras_ext.tasks.nl2sql.pipeline import predict_sql
    table = Table('t', ['城市', '均价'], ['text', 'real'], [['北京', 1]])
    questions = ['北京' * k for k in (5, 1, 12, 3, 2)]
    examples = [Example('t', q) for q in questions]
    stub = StubModel()
    # encoded lengths are len(question) + 2 + 2 * 5 (two headers: [CLS] marker 2 chars [SEP])
    predictions = predict_sql(stub, NL2SQLEncoder(TOKEN), examples, {'t': table}, batch_size=2, max_length=30)
    assert [p and p['agg'] for p in predictions] == [[10 % 6], [2 % 6], None, [6 % 6], [4 % 6]]
    assert predictions[0] == {'sel': [0], 'agg': [4], 'cond_conn_op': 0, 'conds': []}
    # 4 predictable examples, shortest first, in batches of 2; lengths padded to a multiple of 8
    assert stub.batches == [(2, 16), (2, 24)]


def test_prediction_model_saves_and_loads(tmp_path, tiny_bert):
    from bert4keras_ext.backend import keras
    from bert4keras_ext.tasks.nl2sql.model import build_nl2sql_models
    predict_model, train_model = build_nl2sql_models(tiny_bert['config'], tiny_bert['checkpoint'], pointer_units=8)
    assert len(train_model.inputs) == 8
    rng = np.random.RandomState(0)
    token_ids = rng.randint(104, 200, size=(2, 12)).astype('int32')
    token_ids[1, 9:] = 0
    inputs = [token_ids, np.zeros_like(token_ids), np.array([[5, 8], [4, 0]], dtype='int32')]
    before = predict_model.predict_on_batch(inputs)
    path = str(tmp_path / 'nl2sql.keras')
    predict_model.save(path)
    after = keras.saving.load_model(path).predict_on_batch(inputs)
    for x, y in zip(before, after):
        assert np.abs(np.asarray(x) - np.asarray(y)).max() < 1e-6
    conn, sel, op, col = before
    assert conn.shape == (2, 3) and sel.shape == (2, 2, 7) and op.shape == (2, 12, 5) and col.shape == (2, 12, 2)
    assert np.allclose(col.sum(-1), 1, atol=1e-5) and np.all(col[1, :, 1] == 0)  # padded header: probability 0


# ------------------------------------------------------------------------------------------------
# The example, end to end (reduced sizes)
# ------------------------------------------------------------------------------------------------
def load_example():
    path = os.path.join(REPO_ROOT, 'examples', 'task_nl2sql.py')
    spec = importlib.util.spec_from_file_location('task_nl2sql_example', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_runs_without_arguments(tmp_path, capsys):
    example = load_example()
    result = example.main(['--train-size', '240', '--valid-size', '40', '--epochs', '3', '--hidden-size', '64',
                           '--tables-per-theme', '2', '--quiet', '--work-dir', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'logical-form accuracy' in out and 'execution accuracy' in out
    assert result['count'] == 40
    for key in ('logical_form_accuracy', 'execution_accuracy'):
        assert 0.0 <= result[key] <= 1.0
    assert result['loss_after'] < 0.8 * result['loss_before'], result
    assert math.isfinite(result['loss_after'])
    assert os.path.isfile(os.path.join(str(tmp_path), 'tiny_bert', 'bert_model.ckpt.index'))


def test_example_reads_a_tianchi_folder(tmp_path, capsys):
    from bert4keras_ext.tasks.nl2sql.synthetic import generate_dataset
    train, valid, tables = generate_dataset(40, 10, tables_per_theme=1, seed=5)
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    for split, examples in (('train', train), ('val', valid)):
        write_lines(data_dir / ('%s.tables.json' % split), [
            {'id': t.id, 'name': t.name, 'header': t.header, 'types': t.types, 'rows': t.rows} for t in tables.values()])
        write_lines(data_dir / ('%s.json' % split), [
            {'table_id': e.table_id, 'question': e.question, 'sql': e.sql} for e in examples])
    with open(data_dir / 'train.json', 'a', encoding='utf-8') as f:
        f.write('{"table_id": "missing", "question": "?", "sql": {}}\n')  # line 41
    example = load_example()
    with pytest.raises(NL2SQLDataError, match='train.json:41: '):
        example.main(['--data-dir', str(data_dir), '--quiet'])
    predictions = tmp_path / 'pred.jsonl'
    result = example.main(['--data-dir', str(data_dir), '--skip-bad', '--epochs', '1', '--hidden-size', '32',
                           '--learning-rate', '1e-3', '--quiet', '--work-dir', str(tmp_path / 'work'),
                           '--predictions', str(predictions)])
    out = capsys.readouterr().out
    assert 'skipped' in out and 'train.json:41' in out
    assert result['count'] == 10 and result['train_questions'] == 40
    lines = [json.loads(line) for line in open(predictions, encoding='utf-8')]
    assert len(lines) == 10 and all(set(p['sql']) == {'sel', 'agg', 'cond_conn_op', 'conds'} for p in lines)
