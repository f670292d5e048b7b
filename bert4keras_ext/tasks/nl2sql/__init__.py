"""Chinese NL2SQL (TianChi 2019 / Zhuiyi challenge) with the BERT baseline of kexue.fm/archives/6771.

Modules (each with one job; only `model` and `pipeline` import TensorFlow):

    data       the data format, SQL-dict validation, `read_tables` / `read_examples` / `load_split`
    numerals   Chinese and Arabic numbers → floats (`parse_number`, `find_numbers`, `format_number`)
    values     edit-distance similarity, snapping values to table cells, aligning gold values to questions
    encoding   `NL2SQLEncoder`: char-level [CLS] question [SEP] + [CLS] header [SEP]… and training labels
    decoding   head outputs → SQL dict (`decode_sql`)
    sql        safe SQL: `build_select` (one parameterised SELECT), `SQLiteTables` (read-only executor)
    metrics    logical-form and execution accuracy (`evaluate_sql`)
    model      the heads, the loss and the learning-rate schedule (`build_nl2sql_models`)
    pipeline   batching, training dataset, `predict_sql`
    synthetic  a generated dataset for the no-argument example run

The example `examples/task_nl2sql.py` puts them together; docs/nl2sql.md explains a real run.
"""
from bert4keras_ext.tasks.nl2sql.data import (  # noqa: F401
    AGG_NAMES, CONN_NAMES, NO_OP, NOT_SELECTED, NUM_AGG, NUM_CONN, NUM_OP, OP_NAMES, Example, InvalidSQLError,
    NL2SQLDataError, Table, load_split, read_examples, read_tables, validate_sql,
)
from bert4keras_ext.tasks.nl2sql.decoding import decode_sql  # noqa: F401
from bert4keras_ext.tasks.nl2sql.encoding import NL2SQLEncoder  # noqa: F401
from bert4keras_ext.tasks.nl2sql.metrics import (  # noqa: F401
    evaluate_sql, execution_match, logical_form_match, logical_form_parts,
)
from bert4keras_ext.tasks.nl2sql.numerals import find_numbers, format_number, parse_number  # noqa: F401
from bert4keras_ext.tasks.nl2sql.sql import (  # noqa: F401
    SQLiteTables, UnsafeQueryError, build_select, quote_identifier, render_sql,
)
from bert4keras_ext.tasks.nl2sql.values import edit_distance, similarity, snap_to_cell  # noqa: F401
