"""Hugging Face layouts of RoFormer, NEZHA and ELECTRA (`formats.huggingface`, `hf_checkpoints`, `hf_save`).

The reference is the family's Google-layout checkpoint: a tiny random one is written with the released TF
names, its arrays are renamed here *by hand* to the tensor names transformers' RoFormerForMaskedLM /
NezhaForPreTraining / ElectraForPreTraining store (torch Linear weights transposed), and the model built from
that Hugging Face directory must compute exactly what the model built from the Google checkpoint computes.
Saving writes those names back (plus the config keys transformers reads), and the saved directory reloads.
"""
import json
import os
import re

import numpy as np
import pytest

from bert4keras_ext.checkpoints import CheckpointError, CheckpointMismatchError, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model

safetensors_numpy = pytest.importorskip('safetensors.numpy', reason='the safetensors package is not installed')

VOCAB = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + ['t%d' % i for i in range(35)]
# Every size different (head size 4: even, as rotary positions need), so a swapped or transposed tensor
# cannot pass by accident.
SIZES = dict(hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
             max_position_embeddings=16, type_vocab_size=3)
TOKENS = np.array([[2, 5, 9, 13, 3, 21, 30, 3], [2, 17, 11, 3, 25, 3, 0, 0]])
SEGMENTS = np.array([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 2, 1, 0, 0]])

# Per family: the Google checkpoint's extra sizes, the heads built, and config.json as the Hub releases write it
# (junnyu/roformer_chinese_base, sijunhe/nezha-cn-base, hfl/chinese-electra-180g-base-discriminator), tiny.
COMMON_CONFIG = dict(SIZES, vocab_size=len(VOCAB), hidden_act='gelu', hidden_dropout_prob=0.1,
                     attention_probs_dropout_prob=0.1, initializer_range=0.02, layer_norm_eps=1e-12, pad_token_id=0,
                     transformers_version='4.30.2')
FAMILIES = {
    'roformer': dict(
        google_sizes=dict(embedding_size=8), heads=dict(with_mlm='linear'), prefix='roformer',
        config=dict(COMMON_CONFIG, architectures=['RoFormerForMaskedLM'], model_type='roformer', embedding_size=8,
                    rotary_value=False, use_cache=True)),
    'nezha': dict(
        google_sizes={}, heads=dict(with_nsp=True, with_mlm='linear'), prefix='nezha',
        build=dict(max_relative_position=3),
        config=dict(COMMON_CONFIG, architectures=['NezhaForPreTraining'], model_type='nezha', max_relative_position=3,
                    bos_token_id=2, eos_token_id=3, classifier_dropout=0.1, use_cache=True)),
    'electra': dict(
        google_sizes=dict(embedding_size=8), heads=dict(with_discriminator='linear'), prefix='electra',
        config=dict(COMMON_CONFIG, architectures=['ElectraForPreTraining'], model_type='electra', embedding_size=8,
                    summary_activation='gelu', summary_last_dropout=0.1, summary_type='first', summary_use_proj=True,
                    position_embedding_type='absolute')),
}


# ---------------------------------------------------------------------------------------------------
# Google names → transformers' names, written out by hand (independent of formats.huggingface)
# ---------------------------------------------------------------------------------------------------
def hf_name(family, google_name):
    """(transformers' state-dict name or None when transformers has no such weight, transpose?)."""
    prefix = FAMILIES[family]['prefix']
    special = {
        'bert/encoder/embedding_hidden_mapping_in': prefix + '.embeddings_project',   # RoFormer's factorisation
        'electra/embeddings_project': 'electra.embeddings_project',
        'discriminator_predictions/dense_1': 'discriminator_predictions.dense_prediction',
        'cls/predictions/output_bias': 'cls.predictions.bias',
        'cls/seq_relationship/output_weights': 'cls.seq_relationship.weight',  # (2, hidden) in both
        'cls/seq_relationship/output_bias': 'cls.seq_relationship.bias',
    }
    if family == 'roformer' and google_name.startswith(('bert/pooler/', 'cls/seq_relationship/')):
        return None, False  # transformers' RoFormer has no pooler and no NSP head
    for old, new in special.items():
        if google_name.startswith(old):
            rest = google_name[len(old):]
            if not rest:
                return new, False
            google_name, done = rest.lstrip('/'), new
            break
    else:
        done = ''
    name = re.sub(r'^(bert|electra)/', prefix + '/', google_name) if not done else google_name
    name = re.sub(r'layer_(\d+)', r'layer/\1', name)
    transpose = name.endswith('kernel')
    name = re.sub(r'(kernel|gamma)$', 'weight', name)
    name = re.sub(r'beta$', 'bias', name)
    name = name.replace('/', '.')
    if done:
        name = done + '.' + name
    elif not re.search(r'\.(weight|bias)$', name):
        name += '.weight'  # embedding tables
    return name, transpose


def google_arrays(paths):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(paths['checkpoint'])
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def to_hf(family, arrays):
    tensors = {}
    for google_name, value in arrays.items():
        name, transpose = hf_name(family, google_name)
        if name is not None:
            tensors[name] = np.ascontiguousarray(value.T if transpose else value)
    return tensors


def rotary_table(n_positions, dim):
    """transformers' RoFormerSinusoidalPositionalEmbedding.create_weight, in numpy."""
    position_enc = np.array([[pos / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)]
                             for pos in range(n_positions)])
    out = np.empty((n_positions, dim))
    out[:, :dim // 2] = np.sin(position_enc[:, 0::2])
    out[:, dim // 2:] = np.cos(position_enc[:, 1::2])
    return out.astype('float32')


def write_dir(directory, config, tensors):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'config.json'), 'w') as f:
        json.dump(config, f)
    safetensors_numpy.save_file(tensors, os.path.join(directory, 'model.safetensors'), metadata={'format': 'pt'})
    return directory


def outputs(model):
    out = model.predict([TOKENS, SEGMENTS], verbose=0)
    return [np.asarray(o) for o in (out if isinstance(out, list) else [out])]


def assert_same(a, b, atol=1e-6):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert np.abs(x - y).max() <= atol, np.abs(x - y).max()


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def family_case(request, tmp_path_factory):
    """(family, Google checkpoint paths, its arrays renamed to transformers' names, the Google model's outputs)."""
    family = request.param
    spec = FAMILIES[family]
    root = tmp_path_factory.mktemp('hf_' + family)
    paths = make_random_checkpoint(str(root / 'google'), model=family, vocab=VOCAB, seed=7, initializer_range=0.2,
                                   **SIZES, **spec['google_sizes'])
    google_model = build_transformer_model(paths['config'], paths['checkpoint'], model=family, **spec['heads'],
                                           **spec.get('build', {}))
    return family, root, to_hf(family, google_arrays(paths)), outputs(google_model)


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------
def test_hf_directory_loads_as_the_google_checkpoint_does(family_case):
    family, root, tensors, expected = family_case
    spec = FAMILIES[family]
    stored = dict(tensors)
    # what the released files carry besides the weights: tied decoder copies and config-derived buffers
    if 'cls.predictions.bias' in tensors:
        stored['cls.predictions.decoder.weight'] = tensors[spec['prefix'] + '.embeddings.word_embeddings.weight']
        stored['cls.predictions.decoder.bias'] = tensors['cls.predictions.bias']
    if family == 'roformer':
        stored['roformer.encoder.embed_positions.weight'] = rotary_table(16, 4)
    if family == 'nezha':  # older transformers versions saved the relative-position buffer
        stored['nezha.encoder.layer.0.attention.self.relative_positions_encoding.positions_encoding'] = \
            np.zeros((16, 16, 4), 'float32')
    if family == 'electra':
        stored['electra.embeddings.position_ids'] = np.arange(16, dtype='int64')[None]
    directory = write_dir(str(root / 'hf'), spec['config'], stored)
    # model= is left out: config.json's model_type picks the family
    transformer = build_transformer_model(directory, directory, return_keras_model=False, **spec['heads'])
    assert transformer.checkpoint_family == family
    if family == 'nezha':
        assert transformer.max_relative_position == 3  # read from config.json (64 would change every output)
    assert_same(outputs(transformer.model), expected)


def test_nezha_backbone_file_without_prefix_loads_the_pooler(tmp_path):
    paths = make_random_checkpoint(str(tmp_path / 'google'), model='nezha', vocab=VOCAB, seed=3, initializer_range=0.2,
                                   **SIZES)
    google_model = build_transformer_model(paths['config'], paths['checkpoint'], model='nezha', with_pool=True,
                                           max_relative_position=3)
    tensors = {name[len('nezha.'):]: value for name, value in to_hf('nezha', google_arrays(paths)).items()
               if name.startswith('nezha.')}  # NezhaModel's file: no heads, no prefix
    assert 'pooler.dense.weight' in tensors
    config = dict(FAMILIES['nezha']['config'], architectures=['NezhaModel'])
    directory = write_dir(str(tmp_path / 'hf'), config, tensors)
    assert_same(outputs(build_transformer_model(directory, directory, with_pool=True)), outputs(google_model))


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------
WRITTEN_CONFIG = {
    'roformer': dict(architectures=['RoFormerForMaskedLM'], model_type='roformer', embedding_size=8,
                     rotary_value=False),
    'nezha': dict(architectures=['NezhaForPreTraining'], model_type='nezha', max_relative_position=3),
    'electra': dict(architectures=['ElectraForPreTraining'], model_type='electra', embedding_size=8),
}


def test_save_as_hf_writes_transformers_names_and_reloads(family_case):
    family, root, tensors, expected = family_case
    spec = FAMILIES[family]
    directory = write_dir(str(root / 'hf_in'), spec['config'], tensors)
    transformer = build_transformer_model(directory, directory, return_keras_model=False, **spec['heads'])
    out = transformer.save_weights_as_hf(str(root / 'hf_out'))
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    assert {k: config[k] for k in WRITTEN_CONFIG[family]} == WRITTEN_CONFIG[family]
    assert {k: config[k] for k in SIZES} == SIZES and config['vocab_size'] == len(VOCAB)
    assert config['hidden_act'] == 'gelu' and config['layer_norm_eps'] == 1e-12
    written = safetensors_numpy.load_file(os.path.join(out, 'model.safetensors'))
    expected_names = set(tensors) | ({'roformer.encoder.embed_positions.weight'} if family == 'roformer' else set())
    assert set(written) == expected_names  # exactly the pretraining class's keys (the tied decoder left to tie)
    for name, value in tensors.items():
        assert written[name].shape == value.shape and np.array_equal(written[name], value), name
    if family == 'roformer':
        assert np.abs(written['roformer.encoder.embed_positions.weight'] - rotary_table(16, 4)).max() < 1e-6
    assert_same(outputs(build_transformer_model(out, out, **spec['heads'])), expected, atol=0)


# ---------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------
def test_wrong_family_and_missing_heads_are_refused_naming_the_file(family_case):
    family, root, tensors, _ = family_case
    directory = write_dir(str(root / 'hf_err'), FAMILIES[family]['config'], tensors)
    config_file = os.path.join(directory, 'config.json')
    other = {'roformer': 'nezha', 'nezha': 'bert', 'electra': 'roformer'}[family]
    with pytest.raises(CheckpointMismatchError) as info:
        build_transformer_model(directory, directory, model=other)
    message = str(info.value)
    assert config_file in message and "model=%r" % family in message and "model_type %r" % family in message
    if family == 'roformer':
        # transformers' RoFormer has no pooler / NSP: the loader says so instead of listing missing tensors
        with pytest.raises(CheckpointMismatchError) as info:
            build_transformer_model(directory, directory, with_pool=True)
        message = str(info.value)
        assert os.path.join(directory, 'model.safetensors') in message
        assert 'Pooler-Dense' in message and 'with_pool' in message
        # RoFormer-v2 has no transformers layout: refused, in both directions
        with pytest.raises(CheckpointMismatchError, match="no RoFormer-v2 model.*pass model='roformer'"):
            build_transformer_model(directory, directory, model='roformer_v2')
        bad = write_dir(str(root / 'rotary_value'), dict(FAMILIES[family]['config'], rotary_value=True), tensors)
        with pytest.raises(CheckpointError, match='rotary_value=True is not supported'):
            build_transformer_model(bad, bad)


def test_roformer_v2_and_pooled_roformer_cannot_be_written(tmp_path):
    v2 = build_transformer_model(model='roformer_v2', vocab_size=40, return_keras_model=False, **SIZES)
    with pytest.raises(ValueError, match='transformers has no RoFormer-v2 model'):
        v2.save_weights_as_hf(str(tmp_path / 'v2'))
    pooled = build_transformer_model(model='roformer', vocab_size=40, with_pool=True, return_keras_model=False,
                                     **SIZES)
    with pytest.raises(ValueError, match='no tensors for Pooler-Dense.*with_pool'):
        pooled.save_weights_as_hf(str(tmp_path / 'pooled'))
    assert not os.path.exists(str(tmp_path / 'v2')) and not os.path.exists(str(tmp_path / 'pooled'))


def test_config_defaults_follow_transformers(tmp_path):
    """A config.json without the family's settings means transformers' defaults (ELECTRA's embedding_size
    128, NEZHA's max_relative_position 64, RoFormer's embedding_size = hidden_size)."""
    from bert4keras_ext.hf_checkpoints import load_hf_config
    for family, key, default in [('electra', 'embedding_size', 128), ('nezha', 'max_relative_position', 64),
                                 ('roformer', 'embedding_size', None)]:
        config = {k: v for k, v in FAMILIES[family]['config'].items() if k != key}
        path = tmp_path / ('%s.json' % family)
        path.write_text(json.dumps(config))
        assert load_hf_config(str(path)).get(key) == default, family
