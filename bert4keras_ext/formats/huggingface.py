"""Hugging Face `transformers` layout (config.json + model.safetensors), as tables aligned with `formats.google`.

This is the only module that spells Hugging Face tensor names, model types and architecture class names.
A family's table has the same keys as its Google table (`formats.google.TABLES`) and, per key, one row for
each of the Google table's rows, in the same order::

    Keras layer name -> [(HF tensor name, layout), ...]

so row k of both tables names the same weight, and {Google name: (HF name, layout)} follows by zipping them
(`google_to_hf`). `layout` says how the HF array relates to the Google checkpoint's array: PLAIN (the same)
or TRANSPOSED (a `torch.nn.Linear` weight is (out, in), a Google kernel (in, out)). A Google key with no HF
counterpart (BERT's and NEZHA's `Embedding-Mapping`, RoFormer's pooler and NSP head: transformers' classes
have no such weights) is left out (`unmapped_layers`): a model that has that layer cannot be written in the
family's HF layout, and building one with it from an HF file is refused.

Families: 'bert', 'albert', 'roformer' (transformers' RoFormer: RoFormer v1; RoFormer-v2 has no transformers
layout, `UNSUPPORTED`), 'nezha' and 'electra' (the discriminator).

Names are written as the pretraining class stores them (`bert.` / `albert.` / `roformer.` / `nezha.` /
`electra.` before the backbone; the heads without it). A file saved from the bare backbone class (`BertModel`,
`RoFormerModel`, ...) has the same names without the backbone prefix (`FAMILIES[f]['backbone_prefix']`).
Adding a family = one table + one entry in `FAMILIES`.

Imports only the standard library and `formats.google`.
"""
from bert4keras_ext.formats import google

__all__ = ['PLAIN', 'TRANSPOSED', 'BERT', 'ALBERT', 'ROFORMER', 'NEZHA', 'ELECTRA', 'FAMILIES', 'UNSUPPORTED',
           'LEGACY_SUFFIXES', 'IGNORED_SUFFIXES', 'WEIGHTS_FILE', 'WEIGHTS_INDEX_FILE', 'CONFIG_FILE', 'PYTORCH_FILES',
           'table', 'google_to_hf', 'family_of_model_type', 'architecture_for', 'unmapped_layers', 'describe_unmapped',
           'CONFIG_SIZES', 'ACTIVATIONS_FROM_HF', 'ACTIVATIONS_TO_HF']

PLAIN = 'plain'
TRANSPOSED = 'transposed'

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
WEIGHTS_INDEX_FILE = 'model.safetensors.index.json'  # sharded: {"weight_map": {tensor name: shard file}}
PYTORCH_FILES = ('pytorch_model.bin', 'pytorch_model.bin.index.json')


def _linear(name):
    """torch.nn.Linear `name`: weight (out, in) = Google kernel transposed, then bias."""
    return [(name + '.weight', TRANSPOSED), (name + '.bias', PLAIN)]


def _norm(name):
    """torch.nn.LayerNorm `name`: weight (Google gamma), bias (Google beta)."""
    return [(name + '.weight', PLAIN), (name + '.bias', PLAIN)]


def _embedding(name):
    return [(name + '.weight', PLAIN)]


def _encoder_layers(prefix):
    """BERT's per-layer block under `prefix` (`bert.`; RoFormer, NEZHA and ELECTRA copy BERT's modules)."""
    layer = prefix + 'encoder.layer.{i}.'
    return {
        'Transformer-{i}-MultiHeadSelfAttention': (
            _linear(layer + 'attention.self.query') + _linear(layer + 'attention.self.key')
            + _linear(layer + 'attention.self.value') + _linear(layer + 'attention.output.dense')),
        'Transformer-{i}-MultiHeadSelfAttention-Norm': _norm(layer + 'attention.output.LayerNorm'),
        'Transformer-{i}-FeedForward': _linear(layer + 'intermediate.dense') + _linear(layer + 'output.dense'),
        'Transformer-{i}-FeedForward-Norm': _norm(layer + 'output.LayerNorm'),
    }


# BERT's masked-LM head, as BertForPreTraining / BertForMaskedLM (and RoFormer's, NEZHA's copies) store it.
_MLM_HEAD = {
    'MLM-Dense': _linear('cls.predictions.transform.dense'),
    'MLM-Norm': _norm('cls.predictions.transform.LayerNorm'),
    'MLM-Bias': [('cls.predictions.bias', PLAIN)],
}


# ---------------------------------------------------------------------------------------------------
# The tables (keys and row order: formats.google)
# ---------------------------------------------------------------------------------------------------
BERT = {
    'Embedding-Token': _embedding('bert.embeddings.word_embeddings'),
    'Embedding-Segment': _embedding('bert.embeddings.token_type_embeddings'),
    'Embedding-Position': _embedding('bert.embeddings.position_embeddings'),
    'Embedding-Norm': _norm('bert.embeddings.LayerNorm'),
    'Pooler-Dense': _linear('bert.pooler.dense'),
    # Google's NSP output_weights are (2, hidden) too: no transpose relative to the Google array
    'NSP-Proba': [('cls.seq_relationship.weight', PLAIN), ('cls.seq_relationship.bias', PLAIN)],
    **_MLM_HEAD,
    **_encoder_layers('bert.'),
}

# HF ALBERT with one hidden group of one layer (num_hidden_groups = inner_group_num = 1): Google's shared block.
_ALBERT_BLOCK = 'albert.encoder.albert_layer_groups.0.albert_layers.0.'
ALBERT = {
    'Embedding-Token': _embedding('albert.embeddings.word_embeddings'),
    'Embedding-Segment': _embedding('albert.embeddings.token_type_embeddings'),
    'Embedding-Position': _embedding('albert.embeddings.position_embeddings'),
    'Embedding-Norm': _norm('albert.embeddings.LayerNorm'),
    'Embedding-Mapping': _linear('albert.encoder.embedding_hidden_mapping_in'),
    'Pooler-Dense': _linear('albert.pooler'),
    'NSP-Proba': [('sop_classifier.classifier.weight', PLAIN), ('sop_classifier.classifier.bias', PLAIN)],
    'MLM-Dense': _linear('predictions.dense'),
    'MLM-Norm': _norm('predictions.LayerNorm'),
    'MLM-Bias': [('predictions.bias', PLAIN)],
    'Transformer-{i}-MultiHeadSelfAttention': (
        _linear(_ALBERT_BLOCK + 'attention.query') + _linear(_ALBERT_BLOCK + 'attention.key')
        + _linear(_ALBERT_BLOCK + 'attention.value') + _linear(_ALBERT_BLOCK + 'attention.dense')),
    'Transformer-{i}-MultiHeadSelfAttention-Norm': _norm(_ALBERT_BLOCK + 'attention.LayerNorm'),
    'Transformer-{i}-FeedForward': _linear(_ALBERT_BLOCK + 'ffn') + _linear(_ALBERT_BLOCK + 'ffn_output'),
    'Transformer-{i}-FeedForward-Norm': _norm(_ALBERT_BLOCK + 'full_layer_layer_norm'),
}

# transformers' RoFormer (RoFormerModel / RoFormerForMaskedLM, e.g. junnyu/roformer_chinese_base): BERT's modules
# without the position table, `embeddings_project` when embedding_size != hidden_size, and no pooler or NSP head.
# Its rotary table `encoder.embed_positions.weight` is a frozen sinusoid, not a weight (`FAMILIES[..]['derived']`).
ROFORMER = {
    'Embedding-Token': _embedding('roformer.embeddings.word_embeddings'),
    'Embedding-Segment': _embedding('roformer.embeddings.token_type_embeddings'),
    'Embedding-Norm': _norm('roformer.embeddings.LayerNorm'),
    'Embedding-Mapping': _linear('roformer.embeddings_project'),
    **_MLM_HEAD,
    **_encoder_layers('roformer.'),
}

# transformers' NEZHA (NezhaModel / NezhaForPreTraining, e.g. sijunhe/nezha-cn-base): BERT's modules without the
# position table. The relative-position table `...attention.self.relative_positions_encoding.positions_encoding`
# is a buffer computed from the config (older files store it): not a weight, never read.
NEZHA = {
    'Embedding-Token': _embedding('nezha.embeddings.word_embeddings'),
    'Embedding-Segment': _embedding('nezha.embeddings.token_type_embeddings'),
    'Embedding-Norm': _norm('nezha.embeddings.LayerNorm'),
    'Pooler-Dense': _linear('nezha.pooler.dense'),
    'NSP-Proba': [('cls.seq_relationship.weight', PLAIN), ('cls.seq_relationship.bias', PLAIN)],
    **_MLM_HEAD,
    **_encoder_layers('nezha.'),
}

# transformers' ELECTRA discriminator (ElectraModel / ElectraForPreTraining, e.g.
# hfl/chinese-electra-180g-base-discriminator): BERT's modules under `electra.`, `embeddings_project` when
# embedding_size != hidden_size, and the replaced-token-detection head (Google's dense_1 is `dense_prediction`).
ELECTRA = {
    'Embedding-Token': _embedding('electra.embeddings.word_embeddings'),
    'Embedding-Segment': _embedding('electra.embeddings.token_type_embeddings'),
    'Embedding-Position': _embedding('electra.embeddings.position_embeddings'),
    'Embedding-Norm': _norm('electra.embeddings.LayerNorm'),
    'Embedding-Mapping': _linear('electra.embeddings_project'),
    'Discriminator-Dense': _linear('discriminator_predictions.dense'),
    'Discriminator-Prediction': _linear('discriminator_predictions.dense_prediction'),
    **_encoder_layers('electra.'),
}

# Per family:
#   table; model: the `model=` it builds by default; model_types: config.json's `model_type` values;
#   backbone_prefix: the backbone's attribute prefix;
#   tied: the MLM output layer's tied tensors ({tensor: the tensor it equals}; transformers ties them on load,
#       so they are not written);
#   architectures: the class to name in `architectures` for the heads a model has, first match wins (a class
#       whose name is in `backbone_classes` stores its tensors without the backbone prefix);
#   fixed_config: config.json settings the models here are built with (read: anything else is refused;
#       written as is);
#   settings: config.json keys that become model arguments, with transformers' default for a config.json
#       without them (read into the model; written from the model's attribute of the same name);
#   always_mapped: transformers' class has `Embedding-Mapping` even when embedding_size == hidden_size (written
#       as the identity then);
#   derived: tensors transformers stores that are functions of the config, not weights ({name: kind}; never
#       read, written by `hf_save` so that transformers finds every key);
#   default_hidden_act: transformers' hidden_act for a config.json without one.
FAMILIES = {
    'bert': {
        'table': BERT,
        'model': 'bert',
        'model_types': ('bert',),
        'backbone_prefix': 'bert.',
        'tied': {'cls.predictions.decoder.weight': 'bert.embeddings.word_embeddings.weight',
                 'cls.predictions.decoder.bias': 'cls.predictions.bias'},
        'architectures': [({'MLM-Dense', 'NSP-Proba'}, 'BertForPreTraining'), ({'MLM-Dense'}, 'BertForMaskedLM'),
                          ({'NSP-Proba'}, 'BertForNextSentencePrediction'), (set(), 'BertModel')],
        'backbone_classes': ('BertModel',),
        'fixed_config': {'position_embedding_type': 'absolute'},
        'settings': {},
        'default_hidden_act': 'gelu',
    },
    'albert': {
        'table': ALBERT,
        'model': 'albert',
        'model_types': ('albert',),
        'backbone_prefix': 'albert.',
        'tied': {'predictions.decoder.weight': 'albert.embeddings.word_embeddings.weight',
                 'predictions.decoder.bias': 'predictions.bias'},
        'architectures': [({'NSP-Proba'}, 'AlbertForPreTraining'), ({'MLM-Dense'}, 'AlbertForMaskedLM'),
                          (set(), 'AlbertModel')],
        'backbone_classes': ('AlbertModel',),
        'fixed_config': {'num_hidden_groups': 1, 'inner_group_num': 1},
        'settings': {'embedding_size': 128},
        'always_mapped': True,
        'default_hidden_act': 'gelu_new',
    },
    'roformer': {
        'table': ROFORMER,
        'model': 'roformer',
        'model_types': ('roformer',),
        'backbone_prefix': 'roformer.',
        'tied': {'cls.predictions.decoder.weight': 'roformer.embeddings.word_embeddings.weight',
                 'cls.predictions.decoder.bias': 'cls.predictions.bias'},
        'architectures': [({'MLM-Dense'}, 'RoFormerForMaskedLM'), (set(), 'RoFormerModel')],
        'backbone_classes': ('RoFormerModel',),
        # rotary_value=True also rotates the values: not RoFormer as released (nor bert4keras' RoFormer)
        'fixed_config': {'rotary_value': False},
        'settings': {'embedding_size': None},  # None: hidden_size
        # (max_position_embeddings, hidden_size / num_attention_heads): sin of the rotary angles, then cos
        'derived': {'roformer.encoder.embed_positions.weight': 'rotary_sinusoid'},
        'default_hidden_act': 'gelu',
    },
    'nezha': {
        'table': NEZHA,
        'model': 'nezha',
        'model_types': ('nezha',),
        'backbone_prefix': 'nezha.',
        'tied': {'cls.predictions.decoder.weight': 'nezha.embeddings.word_embeddings.weight',
                 'cls.predictions.decoder.bias': 'cls.predictions.bias'},
        'architectures': [({'MLM-Dense', 'NSP-Proba'}, 'NezhaForPreTraining'), ({'MLM-Dense'}, 'NezhaForMaskedLM'),
                          ({'NSP-Proba'}, 'NezhaForNextSentencePrediction'), (set(), 'NezhaModel')],
        'backbone_classes': ('NezhaModel',),
        'fixed_config': {},
        'settings': {'max_relative_position': 64},
        'default_hidden_act': 'gelu',
    },
    'electra': {
        'table': ELECTRA,
        'model': 'electra',
        'model_types': ('electra',),
        'backbone_prefix': 'electra.',
        'tied': {},
        'architectures': [({'Discriminator-Dense'}, 'ElectraForPreTraining'), (set(), 'ElectraModel')],
        'backbone_classes': ('ElectraModel',),
        'fixed_config': {'position_embedding_type': 'absolute'},
        'settings': {'embedding_size': 128},  # transformers' ElectraConfig default (ELECTRA-small's width)
        'default_hidden_act': 'gelu',
    },
}

# Checkpoint families (`formats.google`) that transformers has no layout for, and why.
UNSUPPORTED = {
    'roformer_v2': "transformers has no RoFormer-v2 model: its model_type 'roformer' is RoFormer v1 (biases and "
                   "LayerNorm weights, which RoFormer-v2 lacks), so a RoFormer-v2 has no Hugging Face layout; "
                   "save_weights_as_checkpoint writes the release's own (Google TF) format",
}

# The model option behind a Keras layer that a family's HF layout may lack (for error messages).
_LAYER_OPTIONS = {'Pooler-Dense': 'with_pool', 'NSP-Proba': 'with_nsp', 'MLM-Dense': 'with_mlm',
                  'Embedding-Mapping': 'embedding_size == hidden_size'}

# Older conversions (and the PyTorch files they came from) name LayerNorm parameters gamma / beta;
# transformers renames them on load, and so does the reader.
LEGACY_SUFFIXES = {'.gamma': '.weight', '.beta': '.bias'}

# Buffers that are not weights (position ids saved by older transformers versions; NEZHA's relative-position
# table). Tensors outside the tables are not read anyway; these are also left out of "unknown tensor" counts.
IGNORED_SUFFIXES = ('.position_ids', '.positions_encoding')

# config.json sizes that mean the same as in bert_config.json.
CONFIG_SIZES = ('vocab_size', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size',
                'max_position_embeddings', 'type_vocab_size', 'hidden_dropout_prob', 'attention_probs_dropout_prob',
                'initializer_range', 'embedding_size')

# transformers' ACT2FN names -> this package's (`backend.get_activation`); HF 'gelu' is the exact erf form.
ACTIVATIONS_FROM_HF = {'gelu': 'gelu_erf', 'gelu_python': 'gelu_erf', 'gelu_new': 'gelu_tanh',
                       'gelu_pytorch_tanh': 'gelu_tanh', 'gelu_fast': 'gelu_tanh', 'relu': 'relu', 'tanh': 'tanh',
                       'silu': 'swish', 'swish': 'swish', 'linear': 'linear'}
ACTIVATIONS_TO_HF = {'gelu_erf': 'gelu', 'gelu_tanh': 'gelu_new', 'relu': 'relu', 'tanh': 'tanh', 'swish': 'silu',
                     'silu': 'silu', 'linear': 'linear'}


# ---------------------------------------------------------------------------------------------------
# Derived from the tables
# ---------------------------------------------------------------------------------------------------
def table(family):
    """The family's table {Keras layer name: [(HF tensor name, layout)]}."""
    if family in UNSUPPORTED:
        raise ValueError('no Hugging Face layout for checkpoint family %r: %s' % (family, UNSUPPORTED[family]))
    if family not in FAMILIES:
        raise ValueError('no Hugging Face layout is known for checkpoint family %r; expected one of %s'
                         % (family, sorted(FAMILIES)))
    return FAMILIES[family]['table']


def google_to_hf(family, num_hidden_layers):
    """{Google checkpoint name: (HF tensor name, layout, Keras table key)} for a model of this depth.

    A per-layer block ({i} in the names) is written out for every encoder layer; a shared block once.
    """
    google_table = google.table(family)
    pairs = {}
    for layer, rows in table(family).items():
        google_rows = google_table[layer]
        if len(google_rows) != len(rows):
            raise ValueError('formats.huggingface: %s table row count of %r differs from the Google table'
                             % (family, layer))
        per_layer = any('{i}' in name for name, _ in rows)
        for i in range(num_hidden_layers) if per_layer else [None]:
            for (hf_name, layout), (google_name, _) in zip(rows, google_rows):
                if i is not None:
                    hf_name, google_name = hf_name.format(i=i), google_name.format(i=i)
                pairs[google_name] = (hf_name, layout, layer)
    return pairs


def family_of_model_type(model_type):
    """The family whose `model_types` holds `model_type`, or None."""
    for family, spec in FAMILIES.items():
        if model_type in spec['model_types']:
            return family
    return None


def architecture_for(family, head_layers):
    """(class name, True when its tensors carry the backbone prefix) for a model with these head layers."""
    for needed, name in FAMILIES[family]['architectures']:
        if needed <= set(head_layers):
            return name, name not in FAMILIES[family]['backbone_classes']
    raise ValueError('formats.huggingface: no architecture rule for heads %s' % sorted(head_layers))


def unmapped_layers(family):
    """The Keras layers (table keys) of the family's Google table that its HF layout has no tensors for."""
    return [key for key in google.table(family) if key not in table(family)]


def describe_unmapped(family, layers):
    """Why a model with these `unmapped_layers` cannot be read from / written to the family's HF layout."""
    options = sorted({_LAYER_OPTIONS.get(layer, layer) for layer in layers})
    classes = sorted({name for _, name in FAMILIES[family]['architectures']})
    return ('the Hugging Face %s layout has no tensors for %s (transformers\' %s have no such weights): build '
            'the model without them (%s)' % (family, ', '.join(layers), ' / '.join(classes), ', '.join(options)))
