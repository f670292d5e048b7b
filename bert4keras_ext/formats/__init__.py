"""Checkpoint formats as declarative tables: for each family, Keras weight -> checkpoint variable name + shape.

`formats.google` holds Google's TF1 layout (BERT / RoBERTa-wwm / WoBERT and ALBERT releases); loading and
saving (`models`), `checkpoints verify` (`manifest`), tiny random checkpoints (`checkpoints`), family detection
and the optimizer-slot filter are derived from its tables. The package imports nothing heavier than the
standard library, and nothing else from bert4keras_ext.
"""
from bert4keras_ext.formats.google import (  # noqa: F401
    ADAM_SLOTS, FACTORISED_ONLY, FAMILY_HINTS, GLOBAL_STEP, HEAD_LAYERS, MODEL_FAMILIES, TABLES, TRANSPOSED, VOCAB_ROWS,
    describe_layout, detect_family, encoder_layer_indices, family_of, is_optimizer_slot, table, variable_mapping,
    variable_names, variable_shapes,
)

__all__ = ['ADAM_SLOTS', 'FACTORISED_ONLY', 'FAMILY_HINTS', 'GLOBAL_STEP', 'HEAD_LAYERS', 'MODEL_FAMILIES', 'TABLES',
           'TRANSPOSED', 'VOCAB_ROWS', 'describe_layout', 'detect_family', 'encoder_layer_indices', 'family_of',
           'is_optimizer_slot', 'table', 'variable_mapping', 'variable_names', 'variable_shapes']
