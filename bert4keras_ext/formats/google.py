"""Google's TF1 checkpoint layout (BERT, RoBERTa-wwm, WoBERT, the ALBERT "google" releases), as tables.

This is the only module that spells Google's checkpoint variable names. A family's table maps each Keras
layer (bert4keras' layer names) to its weights, in the order of `layer.weights`::

    Keras layer name -> [(checkpoint variable name, shape template), ...]

`{i}` in a name is the encoder layer index. A shape template is the checkpoint's shape written with
`bert_config.json` size names ('vocab_size', 'hidden_size', 'embedding_size', 'intermediate_size',
'max_position_embeddings', 'type_vocab_size') and integers. Loading and saving (`models`), `checkpoints
verify` (`manifest`), tiny random checkpoints, family detection (error hints) and the optimizer-slot filter
are all derived from these tables, so a family is added by writing one table (and one model class).

Families: 'bert' (also RoBERTa-wwm and WoBERT: the same layout), 'albert' (factorised embedding + one
transformer block shared by every layer), 'roformer' (BERT without the position table) and 'roformer_v2'
(kernels only), 'nezha' (the same names as 'roformer') and 'electra' (BERT's encoder under electra/, with the
discriminator head). `ALBERT_Unshared` reads the 'albert' table with one Keras layer per
encoder layer, and saves the 'bert' table (its layers differ after fine-tuning), which carries ALBERT's
embedding mapping too.

It imports only the standard library (no numpy, no TensorFlow), so any module may use it.
"""
import os
import re

__all__ = [
    'EMBEDDINGS', 'HEADS', 'BERT_BLOCK', 'ALBERT_BLOCK', 'ROFORMER', 'ROFORMER_V2', 'TABLES', 'MODEL_FAMILIES', 'TRANSPOSED', 'VOCAB_ROWS',
    'FACTORISED_ONLY', 'FAMILY_HINTS', 'NEZHA', 'ELECTRA_EMBEDDINGS', 'ELECTRA_HEADS', 'ELECTRA_BLOCK',
    'ABSENT_VARIABLES', 'foreign_variables', 'HEAD_LAYERS', 'ATTENTION', 'FEED_FORWARD', 'ADAM_SLOTS', 'GLOBAL_STEP', 'family_of',
    'table', 'variable_mapping', 'variable_shapes', 'variable_names', 'detect_family', 'describe_layout',
    'encoder_layer_indices', 'is_optimizer_slot',
]

# ---------------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------------
# Embeddings are `embedding_size` wide (= hidden_size except in ALBERT, which maps them up).
EMBEDDINGS = {
    'Embedding-Token': [('bert/embeddings/word_embeddings', ('vocab_size', 'embedding_size'))],
    'Embedding-Segment': [('bert/embeddings/token_type_embeddings', ('type_vocab_size', 'embedding_size'))],
    'Embedding-Position': [('bert/embeddings/position_embeddings', ('max_position_embeddings', 'embedding_size'))],
    'Embedding-Norm': [('bert/embeddings/LayerNorm/gamma', ('embedding_size',)),
                       ('bert/embeddings/LayerNorm/beta', ('embedding_size',))],
    'Embedding-Mapping': [('bert/encoder/embedding_hidden_mapping_in/kernel', ('embedding_size', 'hidden_size')),
                          ('bert/encoder/embedding_hidden_mapping_in/bias', ('hidden_size',))],
}

# Pooler, next-sentence and masked-LM heads (not every release carries all of them).
HEADS = {
    'Pooler-Dense': [('bert/pooler/dense/kernel', ('hidden_size', 'hidden_size')),
                     ('bert/pooler/dense/bias', ('hidden_size',))],
    'NSP-Proba': [('cls/seq_relationship/output_weights', (2, 'hidden_size')),
                  ('cls/seq_relationship/output_bias', (2,))],
    'MLM-Dense': [('cls/predictions/transform/dense/kernel', ('hidden_size', 'embedding_size')),
                  ('cls/predictions/transform/dense/bias', ('embedding_size',))],
    'MLM-Norm': [('cls/predictions/transform/LayerNorm/gamma', ('embedding_size',)),
                 ('cls/predictions/transform/LayerNorm/beta', ('embedding_size',))],
    'MLM-Bias': [('cls/predictions/output_bias', ('vocab_size',))],
}

# The Keras names of block {i}'s two sub-layers; a model may rename them (see `variable_mapping`).
ATTENTION = 'Transformer-{i}-MultiHeadSelfAttention'
FEED_FORWARD = 'Transformer-{i}-FeedForward'

# BERT: every encoder layer has its own weights under bert/encoder/layer_{i}/.
BERT_BLOCK = {
    'Transformer-{i}-MultiHeadSelfAttention': [
        ('bert/encoder/layer_{i}/attention/self/query/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/self/query/bias', ('hidden_size',)),
        ('bert/encoder/layer_{i}/attention/self/key/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/self/key/bias', ('hidden_size',)),
        ('bert/encoder/layer_{i}/attention/self/value/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/self/value/bias', ('hidden_size',)),
        ('bert/encoder/layer_{i}/attention/output/dense/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/output/dense/bias', ('hidden_size',)),
    ],
    'Transformer-{i}-MultiHeadSelfAttention-Norm': [
        ('bert/encoder/layer_{i}/attention/output/LayerNorm/gamma', ('hidden_size',)),
        ('bert/encoder/layer_{i}/attention/output/LayerNorm/beta', ('hidden_size',)),
    ],
    'Transformer-{i}-FeedForward': [
        ('bert/encoder/layer_{i}/intermediate/dense/kernel', ('hidden_size', 'intermediate_size')),
        ('bert/encoder/layer_{i}/intermediate/dense/bias', ('intermediate_size',)),
        ('bert/encoder/layer_{i}/output/dense/kernel', ('intermediate_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/output/dense/bias', ('hidden_size',)),
    ],
    'Transformer-{i}-FeedForward-Norm': [
        ('bert/encoder/layer_{i}/output/LayerNorm/gamma', ('hidden_size',)),
        ('bert/encoder/layer_{i}/output/LayerNorm/beta', ('hidden_size',)),
    ],
}

# ALBERT: one block, shared by every encoder layer (no {i} in the checkpoint names).
ALBERT_BLOCK = {
    'Transformer-{i}-MultiHeadSelfAttention': [
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/bias', ('hidden_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/key/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/key/bias', ('hidden_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/value/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/self/value/bias', ('hidden_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/output/dense/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/attention_1/output/dense/bias', ('hidden_size',)),
    ],
    'Transformer-{i}-MultiHeadSelfAttention-Norm': [
        ('bert/encoder/transformer/group_0/inner_group_0/LayerNorm/gamma', ('hidden_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/LayerNorm/beta', ('hidden_size',)),
    ],
    'Transformer-{i}-FeedForward': [
        ('bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/dense/kernel',
         ('hidden_size', 'intermediate_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/dense/bias', ('intermediate_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/kernel',
         ('intermediate_size', 'hidden_size')),
        ('bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/bias', ('hidden_size',)),
    ],
    'Transformer-{i}-FeedForward-Norm': [
        ('bert/encoder/transformer/group_0/inner_group_0/LayerNorm_1/gamma', ('hidden_size',)),
        ('bert/encoder/transformer/group_0/inner_group_0/LayerNorm_1/beta', ('hidden_size',)),
    ],
}

# RoFormer (ZhuiyiTechnology, bert4keras' `RoFormer`): BERT's layout without the absolute position table
# (rotary positions have no weights).
ROFORMER = {layer: rows for layer, rows in {**EMBEDDINGS, **HEADS, **BERT_BLOCK}.items()
            if layer != 'Embedding-Position'}

# RoFormer-v2 (bert4keras' `RoFormerV2`): no biases and weightless normalisation, so only the kernels and
# the token/segment tables remain; the MLM head is the tied token embedding alone (no cls/ variables).
ROFORMER_V2 = {
    'Embedding-Token': EMBEDDINGS['Embedding-Token'],
    'Embedding-Segment': EMBEDDINGS['Embedding-Segment'],
    'Transformer-{i}-MultiHeadSelfAttention': [
        ('bert/encoder/layer_{i}/attention/self/query/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/self/key/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/self/value/kernel', ('hidden_size', 'hidden_size')),
        ('bert/encoder/layer_{i}/attention/output/dense/kernel', ('hidden_size', 'hidden_size')),
    ],
    'Transformer-{i}-FeedForward': [
        ('bert/encoder/layer_{i}/intermediate/dense/kernel', ('hidden_size', 'intermediate_size')),
        ('bert/encoder/layer_{i}/output/dense/kernel', ('intermediate_size', 'hidden_size')),
    ],
}

# NEZHA (Huawei's TF1 releases): BERT's names without the absolute position table (positions are
# functional relative ones, with no weights). RoFormer releases have the same names.
NEZHA = {layer: rows for layer, rows in {**EMBEDDINGS, **HEADS, **BERT_BLOCK}.items()
         if layer != 'Embedding-Position'}

# ELECTRA discriminators (Google's electra code; HFL's Chinese releases): BERT's encoder under `electra/`,
# `embeddings_project` when embedding_size != hidden_size, and the replaced-token-detection head. The
# generator's variables in the same checkpoint (generator/..., generator_predictions/...) are not mapped.
ELECTRA_EMBEDDINGS = {
    'Embedding-Token': [('electra/embeddings/word_embeddings', ('vocab_size', 'embedding_size'))],
    'Embedding-Segment': [('electra/embeddings/token_type_embeddings', ('type_vocab_size', 'embedding_size'))],
    'Embedding-Position': [('electra/embeddings/position_embeddings', ('max_position_embeddings', 'embedding_size'))],
    'Embedding-Norm': [('electra/embeddings/LayerNorm/gamma', ('embedding_size',)),
                       ('electra/embeddings/LayerNorm/beta', ('embedding_size',))],
    'Embedding-Mapping': [('electra/embeddings_project/kernel', ('embedding_size', 'hidden_size')),
                          ('electra/embeddings_project/bias', ('hidden_size',))],
}
ELECTRA_HEADS = {
    'Discriminator-Dense': [('discriminator_predictions/dense/kernel', ('hidden_size', 'hidden_size')),
                            ('discriminator_predictions/dense/bias', ('hidden_size',))],
    'Discriminator-Prediction': [('discriminator_predictions/dense_1/kernel', ('hidden_size', 1)),
                                 ('discriminator_predictions/dense_1/bias', (1,))],
}
# The encoder block is BERT's, name for name, under electra/ instead of bert/.
ELECTRA_BLOCK = {layer: [('electra/' + name[len('bert/'):], shape) for name, shape in rows]
                 for layer, rows in BERT_BLOCK.items()}

# family -> table, in the order mappings list them (embeddings, heads, encoder blocks)
TABLES = {
    'bert': {**EMBEDDINGS, **HEADS, **BERT_BLOCK},
    'albert': {**EMBEDDINGS, **HEADS, **ALBERT_BLOCK},
    'nezha': NEZHA,
    'electra': {**ELECTRA_EMBEDDINGS, **ELECTRA_HEADS, **ELECTRA_BLOCK},
    'roformer': ROFORMER,
    'roformer_v2': ROFORMER_V2,
}

# `model=` value -> family
MODEL_FAMILIES = {'bert': 'bert', 'roberta': 'bert', 'wobert': 'bert', 'albert': 'albert',
                  'albert_unshared': 'albert', 'nezha': 'nezha', 'electra': 'electra', 'roformer': 'roformer',
                  'roformer_v2': 'roformer_v2'}

# Stored transposed relative to the Keras weight: Google's NSP output layer keeps (2, hidden); Dense wants (hidden, 2).
TRANSPOSED = frozenset({'cls/seq_relationship/output_weights'})

# One row per vocabulary token (their shape starts with vocab_size): keep_tokens selects rows of these,
# compound_tokens appends rows.
VOCAB_ROWS = frozenset(name for t in TABLES.values() for rows in t.values() for name, shape in rows
                       if shape[0] == 'vocab_size')

# A release has these layers only when its embeddings are factorised (embedding_size != hidden_size).
FACTORISED_ONLY = ('Embedding-Mapping',)

HEAD_LAYERS = tuple(HEADS) + tuple(ELECTRA_HEADS)

# Variables a family's releases never have: finding one means the checkpoint belongs to another family even
# though every name the family needs is there (a BERT checkpoint has all of NEZHA's names plus its
# absolute position table, which NEZHA loading would otherwise ignore).
ABSENT_VARIABLES = {
    'nezha': tuple(name for name, _ in EMBEDDINGS['Embedding-Position']),
}

# Layouts recognised only to name them in an error (by name prefix): early brightmart ALBERT releases (a
# 'layer_shared' scope and a word_embeddings_2 projection, not Google's naming).
_FOREIGN_LAYOUTS = {
    'albert_brightmart_legacy': ('bert/encoder/layer_shared/', 'bert/embeddings/word_embeddings_2'),
}

# Optimizer state and training bookkeeping that some released checkpoints still carry; never model weights.
# Matched against the last path component (`.../kernel/adam_m`, `global_step`).
ADAM_SLOTS = ('adam_m', 'adam_v')
GLOBAL_STEP = 'global_step'
_OPTIMIZER_SLOTS = frozenset(ADAM_SLOTS + ('lamb_m', 'lamb_v', 'Momentum', GLOBAL_STEP, 'good_steps', 'bad_steps',
                                          'loss_scale'))


# ---------------------------------------------------------------------------------------------------
# Derived from the tables
# ---------------------------------------------------------------------------------------------------
def family_of(model):
    """The checkpoint family of a `model=` name ('bert', 'roberta', 'wobert' -> 'bert'; 'albert',
    'albert_unshared' -> 'albert')."""
    if model not in MODEL_FAMILIES:
        raise ValueError('unknown model %r: no Google checkpoint layout is known for it; expected one of %s'
                         % (model, sorted(MODEL_FAMILIES)))
    return MODEL_FAMILIES[model]


def table(family):
    """The family's table {Keras layer name: [(checkpoint name, shape template)]}."""
    if family not in TABLES:
        raise ValueError('unknown checkpoint family %r; expected one of %s' % (family, sorted(TABLES)))
    return TABLES[family]


def _is_block(layer):
    return '{i}' in layer


def _shared(family):
    """True when the family stores one block for all encoder layers (no {i} in its block's names)."""
    return not any('{i}' in name for layer, rows in table(family).items() if _is_block(layer) for name, _ in rows)


def _block_layer(layer, index, shared, attention_name, feed_forward_name):
    """The model's Keras name for table key `layer` of block `index`."""
    for stem, rename in ((ATTENTION, attention_name), (FEED_FORWARD, feed_forward_name)):
        if rename is not None and layer.startswith(stem):
            return rename(index) + layer[len(stem):]
    # a shared block is one set of Keras layers, named without the index (bert4keras' ALBERT names)
    return layer.replace('{i}-', '') if shared else layer.format(i=index)


def variable_mapping(family, num_hidden_layers, attention_name=None, feed_forward_name=None):
    """{Keras layer name: [checkpoint variable names, in the order of layer.weights]} for a model.

    Args:
        family: 'bert' or 'albert'.
        num_hidden_layers: the number of encoder blocks the model builds.
        attention_name, feed_forward_name: optional `f(index) -> Keras layer name` of block `index`'s
            attention / feed-forward layer (their `-Norm` layers follow), for models that name their
            layers otherwise. Default: 'Transformer-{i}-MultiHeadSelfAttention' / 'Transformer-{i}-FeedForward',
            and for a shared-block family 'Transformer-MultiHeadSelfAttention' / 'Transformer-FeedForward'.
    """
    shared = _shared(family)
    mapping = {}
    for layer, rows in table(family).items():
        names = [name for name, _ in rows]
        if not _is_block(layer):
            mapping[layer] = names
            continue
        for i in range(num_hidden_layers):
            mapping[_block_layer(layer, i, shared, attention_name, feed_forward_name)] = \
                [name.format(i=i) for name in names]
    return mapping


def _sizes(config):
    sizes = dict(config)
    if sizes.get('embedding_size') is None:
        sizes['embedding_size'] = sizes.get('hidden_size')
    if sizes.get('type_vocab_size') is None:
        sizes['type_vocab_size'] = 2
    return sizes


def variable_shapes(family, config, skip=()):
    """{checkpoint variable name: shape} of a released checkpoint of this family and size.

    Args:
        family: 'bert' or 'albert'.
        config: a `bert_config.json`-like dict (vocab_size, hidden_size, num_hidden_layers, intermediate_size,
            max_position_embeddings, type_vocab_size (default 2), embedding_size (default hidden_size)).
            A size it lacks stays None in the shapes.
        skip: Keras layer names (table keys, e.g. `HEAD_LAYERS`) whose variables to leave out.
    """
    sizes = _sizes(config)
    layers = sizes.get('num_hidden_layers')
    shapes = {}
    for layer, rows in table(family).items():
        if layer in skip:
            continue
        if layer in FACTORISED_ONLY and sizes['embedding_size'] == sizes.get('hidden_size'):
            continue
        per_layer = any('{i}' in name for name, _ in rows)
        if per_layer and layers is None:
            raise ValueError('the %s layout has one set of variables per encoder layer: the config needs '
                             'num_hidden_layers' % family)
        for i in range(layers) if per_layer else [None]:
            for name, template in rows:
                shape = tuple(d if isinstance(d, int) else sizes.get(d) for d in template)
                shapes[name if i is None else name.format(i=i)] = shape
    return shapes


def variable_names(family, layer):
    """The checkpoint names of one Keras layer of the table (block layers keep their `{i}`)."""
    rows = table(family).get(layer)
    if rows is None:
        raise ValueError('the %s table has no layer %r; it has %s' % (family, layer, sorted(table(family))))
    return [name for name, _ in rows]


def _block_scope(family):
    """The name prefix under which the family's encoder block lives, with `{i}` where the index goes."""
    names = [name for layer, rows in table(family).items() if _is_block(layer) for name, _ in rows]
    prefix = os.path.commonprefix(names)
    return prefix[:prefix.rindex('/') + 1]


def _scope_pattern(family):
    return re.compile('^' + re.escape(_block_scope(family)).replace(re.escape('{i}'), r'(\d+)'))


def describe_layout(family):
    """A short text naming where a layout's variables live, for error messages."""
    if family in _FOREIGN_LAYOUTS:
        return ', '.join(_FOREIGN_LAYOUTS[family])
    return _block_scope(family).replace('{i}', '<i>') + '...'


# What to tell a user whose checkpoint has another family's layout (`detect_family` → hint).
FAMILY_HINTS = {
    'albert': "the checkpoint has ALBERT's shared-block layout (%s): use model='albert' or "
              "model='albert_unshared'." % describe_layout('albert'),
    'bert': "the checkpoint has the BERT layout (%s): use model='bert' (also 'roberta', 'wobert')."
            % describe_layout('bert'),
    'albert_brightmart_legacy': 'the checkpoint is an early brightmart ALBERT release in a non-Google '
                                'naming; only the Google-format "*_google" ALBERT releases are supported.',
    'electra': "the checkpoint has ELECTRA's layout (%s): use model='electra' (with_discriminator=True for "
               "the replaced-token-detection head)." % describe_layout('electra'),
    'roformer': "the checkpoint has the BERT layout without absolute position embeddings, as NEZHA and RoFormer "
                "release it: use model='nezha' for a NEZHA release (Huawei; relative positions) or "
                "model='roformer' for a RoFormer release (rotary positions).",
    'roformer_v2': "the checkpoint has RoFormer-v2's layout (%s, kernels only: no biases and no LayerNorm "
                   "weights): use model='roformer_v2'." % describe_layout('roformer_v2'),
}


def detect_family(names):
    """Guess which layout a set of checkpoint variable names has (for error hints).

    Returns 'albert' (its shared block present), 'electra', 'albert_brightmart_legacy', 'bert' (per-layer
    blocks present) or 'unknown', checked in this order. Per-layer blocks are then told apart by what
    they lack: 'roformer_v2' (kernels without biases or LayerNorm weights), 'roformer' (no absolute
    position table; NEZHA releases look the same).
    """
    names = list(names)
    for family in ('albert', 'electra', 'albert_brightmart_legacy', 'bert'):
        if family in _FOREIGN_LAYOUTS:
            found = any(name.startswith(_FOREIGN_LAYOUTS[family]) for name in names)
        else:
            pattern = _scope_pattern(family)
            found = any(pattern.match(name) for name in names)
        if found:
            return _per_layer_family(set(names)) if family == 'bert' else family
    return 'unknown'


def _per_layer_family(names):
    """Which of the families stored under `bert/encoder/layer_{i}/` the names of block 0 fit."""
    def has(family, layer):
        return all(name.format(i=0) in names for name, _ in table(family)[layer])

    if has('roformer_v2', ATTENTION) and not has('bert', ATTENTION + '-Norm'):
        return 'roformer_v2'
    if has('bert', 'Embedding-Token') and not has('bert', 'Embedding-Position'):
        return 'roformer'
    return 'bert'


def foreign_variables(family, names):
    """The names among `names` that the family's releases never have (`ABSENT_VARIABLES`), sorted."""
    absent = ABSENT_VARIABLES.get(family, ())
    return sorted(name for name in set(names) if name in absent)


def encoder_layer_indices(names):
    """Sorted indices of the per-layer encoder blocks present among `names` (`bert/encoder/layer_{i}/...`)."""
    patterns = [_scope_pattern(family) for family in TABLES if not _shared(family)]
    return sorted({int(m.group(1)) for name in names for p in patterns for m in [p.match(name)] if m})


def is_optimizer_slot(name):
    """True for optimizer state or training counters (`.../adam_m`, `global_step`, ...), never a model weight."""
    return name.rsplit('/', 1)[-1] in _OPTIMIZER_SLOTS
