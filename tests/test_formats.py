"""The checkpoint layout tables (`bert4keras_ext.formats`): shapes against the weights a real model creates,
unique names, family detection, the slot filter, and a scan that keeps Google's names in one module."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from bert4keras_ext import formats
from bert4keras_ext.formats import google

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bert4keras_ext')

# Every size different, so a swapped or transposed template cannot pass by accident.
CONFIG = dict(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
              max_position_embeddings=17, type_vocab_size=3)


def build(model, **config):
    from bert4keras_ext.models import build_transformer_model
    return build_transformer_model(model=model, with_nsp=True, with_mlm='linear', return_keras_model=False,
                                   **dict(CONFIG, **config))


def check_against_model(transformer, family, config):
    """Each mapped Keras layer's weights have the table's shapes (transposed where the table says so)."""
    mapping = formats.variable_mapping(family, config['num_hidden_layers'], transformer.attention_layer_name,
                                       transformer.feed_forward_layer_name)
    shapes = formats.variable_shapes(family, config)
    factorised = config.get('embedding_size', config['hidden_size']) != config['hidden_size']
    mapped_weights = 0
    for layer_name, names in mapping.items():
        if layer_name in formats.FACTORISED_ONLY and not factorised:
            assert layer_name not in transformer.layers  # nothing to load, and no release variable either
            assert not set(names) & set(shapes)
            continue
        layer = transformer.model.get_layer(layer_name)
        assert len(layer.weights) == len(names), layer_name
        for weight, name in zip(layer.weights, names):
            expected = shapes[name][::-1] if name in formats.TRANSPOSED else shapes[name]
            assert tuple(weight.shape) == expected, (layer_name, name)
            if name in formats.VOCAB_ROWS:
                assert weight.shape[0] == config['vocab_size']
        mapped_weights += len(layer.weights)
    # and nothing the model has is left unmapped (a plain model: every weight comes from the checkpoint)
    assert mapped_weights == len({id(w) for w in transformer.model.weights})
    return mapping


def test_bert_table_matches_the_model_weights():
    transformer = build('bert')
    mapping = check_against_model(transformer, 'bert', CONFIG)
    # the release has exactly the mapped variables, once per encoder layer
    assert set(formats.variable_shapes('bert', CONFIG)) == {
        n for k, names in mapping.items() if k not in formats.FACTORISED_ONLY for n in names}


@pytest.mark.parametrize('model', ['albert', 'albert_unshared'])
def test_albert_tables_match_the_model_weights(model):
    config = dict(CONFIG, embedding_size=8)
    transformer = build(model, embedding_size=8)
    shared = check_against_model(transformer, 'albert', config)
    names = {n for v in shared.values() for n in v}
    assert names == set(formats.variable_shapes('albert', config))  # one shared block, whatever the depth
    if model == 'albert':
        assert len(shared) == 14  # 5 embedding layers + 5 head layers + the 4 shared block layers
    else:  # ALBERT_Unshared saves BERT's per-layer names (with the embedding mapping)
        check_against_model(transformer, 'bert', config)
        assert transformer.variable_mapping('per_layer') == formats.variable_mapping('bert', 2)
        assert transformer.variable_mapping() == formats.variable_mapping(
            'albert', 2, transformer.attention_layer_name, transformer.feed_forward_layer_name)


def test_shared_block_default_names_are_bert4keras_albert_names():
    mapping = formats.variable_mapping('albert', 3)
    assert 'Transformer-MultiHeadSelfAttention' in mapping and 'Transformer-FeedForward-Norm' in mapping
    assert not any(k.startswith('Transformer-0') for k in mapping)
    bert = formats.variable_mapping('bert', 3)
    assert bert['Transformer-2-FeedForward-Norm'] == ['bert/encoder/layer_2/output/LayerNorm/gamma',
                                                      'bert/encoder/layer_2/output/LayerNorm/beta']
    renamed = formats.variable_mapping('bert', 2, lambda i: 'Enc-%d-Attn' % i, lambda i: 'Enc-%d-FFN' % i)
    assert renamed['Enc-1-Attn-Norm'] == bert['Transformer-1-MultiHeadSelfAttention-Norm']
    assert renamed['Enc-0-FFN'] == bert['Transformer-0-FeedForward']
    assert not any(k.startswith('Transformer-') for k in renamed)


@pytest.mark.parametrize('family', sorted(formats.TABLES))
def test_names_are_unique_and_keys_are_consistent(family):
    rows = [name for layer_rows in formats.table(family).values() for name, _ in layer_rows]
    assert len(rows) == len(set(rows))
    expanded = [n for names in formats.variable_mapping(family, 4).values() for n in names]
    assert len(expanded) == len(set(expanded))
    for layer, layer_rows in formats.table(family).items():
        for name, template in layer_rows:
            assert all(isinstance(d, int) or d in ('vocab_size', 'hidden_size', 'embedding_size', 'intermediate_size',
                                                   'max_position_embeddings', 'type_vocab_size') for d in template)
            if '{i}' in name:
                assert '{i}' in layer  # a per-layer variable belongs to a per-block Keras layer
    # the derived sets name variables of the tables (of some family: RoFormer-v2 has no cls/ heads)
    all_rows = {name for f in formats.TABLES for layer_rows in formats.table(f).values() for name, _ in layer_rows}
    assert formats.TRANSPOSED <= all_rows and formats.VOCAB_ROWS <= all_rows
    assert formats.VOCAB_ROWS & set(rows)  # every family has a token table


def test_variable_shapes_hand_written_case():
    shapes = formats.variable_shapes('albert', dict(CONFIG, embedding_size=8, num_hidden_layers=None))
    assert shapes['bert/embeddings/word_embeddings'] == (23, 8)
    assert shapes['bert/embeddings/token_type_embeddings'] == (3, 8)
    assert shapes['bert/encoder/embedding_hidden_mapping_in/kernel'] == (8, 12)
    assert shapes['bert/encoder/transformer/group_0/inner_group_0/ffn_1/intermediate/output/dense/kernel'] == (20, 12)
    assert shapes['cls/seq_relationship/output_weights'] == (2, 12)
    assert shapes['cls/predictions/transform/dense/kernel'] == (12, 8)
    assert len(shapes) == 5 + 2 + 2 + 2 + 16 + 5  # embeddings, mapping, pooler, NSP, shared block, MLM
    bert = formats.variable_shapes('bert', dict(hidden_size=12, num_hidden_layers=1), skip=formats.HEAD_LAYERS)
    assert bert['bert/embeddings/word_embeddings'] == (None, 12)  # a size not given stays None
    assert bert['bert/embeddings/token_type_embeddings'] == (2, 12)  # Google's default type_vocab_size
    assert len(bert) == 5 + 16 and not any(n.startswith('cls/') for n in bert)
    with pytest.raises(ValueError, match='needs num_hidden_layers'):
        formats.variable_shapes('bert', dict(hidden_size=12))
    with pytest.raises(ValueError, match="unknown checkpoint family 'gpt'"):
        formats.variable_shapes('gpt', CONFIG)
    with pytest.raises(ValueError, match="unknown model 'gpt2'"):
        formats.family_of('gpt2')


def test_detect_family_and_encoder_layers():
    bert = formats.variable_shapes('bert', CONFIG)
    albert = formats.variable_shapes('albert', dict(CONFIG, embedding_size=8))
    assert formats.detect_family(bert) == 'bert'
    assert formats.detect_family(albert) == 'albert'
    assert formats.detect_family(['bert/embeddings/word_embeddings', 'cls/predictions/output_bias']) == 'unknown'
    assert formats.detect_family(['bert/embeddings/word_embeddings_2',
                                  'bert/encoder/layer_shared/attention/self/query/kernel']) == 'albert_brightmart_legacy'
    assert formats.detect_family(['electra/encoder/layer_0/output/dense/kernel']) == 'electra'
    assert formats.encoder_layer_indices(bert) == [0, 1]
    assert formats.encoder_layer_indices(albert) == []
    assert formats.encoder_layer_indices(['bert/encoder/layer_11/output/dense/bias', 'bert/encoder/layer_3/x',
                                          'bert/encoder/layer_shared/x', 'xbert/encoder/layer_5/x']) == [3, 11]


def test_optimizer_slots():
    for name in ('global_step', 'good_steps', 'bad_steps', 'loss_scale', 'bert/pooler/dense/kernel/adam_m',
                 'bert/pooler/dense/kernel/adam_v', 'a/lamb_m', 'a/lamb_v', 'a/Momentum'):
        assert formats.is_optimizer_slot(name), name
    for name in ('bert/pooler/dense/kernel', 'bert/embeddings/LayerNorm/beta', 'adam_m_scale/kernel'):
        assert not formats.is_optimizer_slot(name), name


def test_user_subclass_with_renamed_blocks_loads_a_checkpoint(tmp_path):
    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.models import BERT, build_transformer_model

    class Renamed(BERT):
        def attention_layer_name(self, index):
            return 'Encoder-%d-Attention' % index

        def feed_forward_layer_name(self, index):
            return 'Encoder-%d-FFN' % index

    class NoPooler(BERT):  # a subclass that edits the mapping keeps working
        def variable_mapping(self):
            mapping = super().variable_mapping()
            mapping.pop('Pooler-Dense')
            return mapping

    paths = make_random_checkpoint(str(tmp_path), num_hidden_layers=1, hidden_size=8, num_attention_heads=2,
                                   intermediate_size=16, vocab=['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'a', 'b'])
    ids = np.array([[2, 4, 5, 3]])
    plain = build_transformer_model(paths['config'], paths['checkpoint'])
    renamed = build_transformer_model(paths['config'], paths['checkpoint'], model=Renamed)
    assert 'Encoder-0-FFN-Norm' in {layer.name for layer in renamed.layers}
    expected = plain.predict([ids, np.zeros_like(ids)], verbose=0)
    assert np.abs(renamed.predict([ids, np.zeros_like(ids)], verbose=0) - expected).max() == 0
    pooled = build_transformer_model(paths['config'], paths['checkpoint'], model=NoPooler, with_pool=True)
    kernel = pooled.get_layer('Pooler-Dense').get_weights()[0]
    from bert4keras_ext.checkpoints import CheckpointReader
    assert not np.array_equal(kernel, CheckpointReader(paths['checkpoint']).get('bert/pooler/dense/kernel'))


def test_formats_imports_only_the_standard_library():
    for name in os.listdir(os.path.join(PACKAGE_DIR, 'formats')):
        if not name.endswith('.py'):
            continue
        with open(os.path.join(PACKAGE_DIR, 'formats', name), encoding='utf-8') as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ''] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                assert module in ('os', 're') or module.startswith('bert4keras_ext.formats'), (name, module)
    code = 'import sys, bert4keras_ext.formats; print(sorted(m for m in ("numpy", "tensorflow", "keras") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


# Google checkpoint name literals that only formats/google.py may spell. The scan reads string literals
# (f-string parts included) through the AST: comments and docstrings are documentation, not layout, and
# are not scanned (a docstring may say which checkpoint variable a layer corresponds to).
GOOGLE_NAME_PARTS = ('bert/embeddings', 'bert/encoder', 'cls/predictions', 'cls/seq_relationship', 'bert/pooler',
                     'inner_group_0')


def _docstring_nodes(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                yield first.value


def test_google_names_are_spelled_only_in_formats_google():
    allowed = os.path.join(PACKAGE_DIR, 'formats', 'google.py')
    offenders, scanned = [], 0
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path == allowed:
                continue
            scanned += 1
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), path)
            docstrings = {id(n) for n in _docstring_nodes(tree)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    hits = [part for part in GOOGLE_NAME_PARTS if part in node.value]
                    if hits:
                        offenders.append('%s:%d %s' % (os.path.relpath(path, PACKAGE_DIR), node.lineno, hits))
    assert scanned > 20
    assert not offenders, 'Google checkpoint names outside formats/google.py:\n' + '\n'.join(offenders)


def test_scan_catches_a_name():
    tree = ast.parse('"""doc bert/pooler"""\nx = f"{a}cls/predictions/output_bias"\n')
    docstrings = {id(n) for n in _docstring_nodes(tree)}
    found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
             and id(n) not in docstrings and any(p in n.value for p in GOOGLE_NAME_PARTS)]
    assert found == ['cls/predictions/output_bias']
    assert google.__file__.endswith(os.path.join('formats', 'google.py'))
