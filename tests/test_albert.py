"""ALBERT / ALBERT-unshared: parity with the numpy reference, sharing, round-trips, vocab surgery,
and the errors for checkpoints in other formats."""
import json

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.checkpoints import CheckpointMismatchError, make_random_checkpoint, write_checkpoint
from bert4keras_ext.models import build_transformer_model
from numpy_reference import forward, random_batch, read_arrays


@pytest.fixture(scope='module')
def tiny_albert(tmp_path_factory):
    return make_random_checkpoint(str(tmp_path_factory.mktemp('tiny_albert')), model='albert', seed=2,
                                  hidden_size=32, embedding_size=16, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=48, max_position_embeddings=40)


def outputs(model, token_ids, segment_ids):
    nsp, mlm = model.predict([token_ids, segment_ids], verbose=0)
    return nsp, mlm


@pytest.mark.parametrize('model_name', ['albert', 'albert_unshared'])
def test_albert_matches_numpy_reference(tiny_albert, model_name):
    W = read_arrays(tiny_albert['checkpoint'])
    config = json.load(open(tiny_albert['config']))
    token_ids, segment_ids = random_batch(np.random.RandomState(0), config['vocab_size'], [15, 8, 2], 15)
    seq = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model=model_name)
    heads = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model=model_name,
                                    with_nsp=True, with_mlm='linear')
    ref = forward(W, token_ids, segment_ids, 3, 4, family='albert')
    assert np.abs(seq.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5
    nsp, mlm = outputs(heads, token_ids, segment_ids)
    assert np.abs(nsp - ref['nsp']).max() <= 1e-5
    assert np.abs(mlm - ref['mlm_logits']).max() <= 1e-5


def test_albert_shares_one_block_and_unshared_copies_it(tiny_albert):
    albert = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model='albert')
    unshared = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model='albert_unshared')
    names = {layer.name for layer in albert.layers}
    assert 'Transformer-MultiHeadSelfAttention' in names and 'Transformer-0-MultiHeadSelfAttention' not in names
    assert 'Embedding-Mapping' in names
    block = 4 * (32 * 32 + 32) + 2 * 2 * 32 + (32 * 48 + 48) + (48 * 32 + 32)
    assert unshared.count_params() - albert.count_params() == 2 * block  # 3 layers vs 1 shared block
    for i in range(3):
        layer = unshared.get_layer('Transformer-%d-FeedForward' % i)
        shared = albert.get_layer('Transformer-FeedForward')
        assert all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), shared.get_weights()))


def test_unshared_layers_diverge_when_trained(tiny_albert):
    unshared = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model='albert_unshared',
                                       with_pool=True)
    import keras
    out = keras.layers.Dense(2, activation='softmax')(unshared.output)
    model = keras.Model(unshared.inputs, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss='sparse_categorical_crossentropy')
    token_ids, segment_ids = random_batch(np.random.RandomState(1), 500, [10, 7, 5, 9], 10)
    model.train_on_batch([token_ids, segment_ids], np.array([0, 1, 0, 1]))
    w0 = unshared.get_layer('Transformer-0-FeedForward').get_weights()[0]
    w2 = unshared.get_layer('Transformer-2-FeedForward').get_weights()[0]
    assert np.abs(w0 - w2).max() > 1e-4


def test_albert_round_trips(tiny_albert, tmp_path):
    token_ids, segment_ids = random_batch(np.random.RandomState(2), 500, [12, 6], 12)
    rng = np.random.RandomState(3)
    for name in ('albert', 'albert_unshared'):
        transformer = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model=name,
                                              with_nsp=True, with_mlm=True, return_keras_model=False)
        for w in transformer.model.weights:  # "fine-tune"
            w.assign(np.asarray(w) + 0.01 * rng.randn(*w.shape).astype('float32'))
        before = transformer.model.predict([token_ids, segment_ids], verbose=0)
        prefix = str(tmp_path / name / 'bert_model.ckpt')
        transformer.save_weights_as_checkpoint(prefix)
        saved = dict(tf.train.list_variables(prefix))
        if name == 'albert':  # Google's shared layout
            assert 'bert/encoder/transformer/group_0/inner_group_0/attention_1/self/query/kernel' in saved
        else:  # each layer kept: per-layer layout, embedding mapping included
            assert 'bert/encoder/layer_2/attention/self/query/kernel' in saved
            assert saved['bert/encoder/embedding_hidden_mapping_in/kernel'] == [16, 32]
        reloaded = build_transformer_model(tiny_albert['config'], prefix, model=name, with_nsp=True, with_mlm=True)
        after = reloaded.predict([token_ids, segment_ids], verbose=0)
        for x, y in zip(before, after):
            assert np.array_equal(x, y)


def test_albert_keep_tokens(tiny_albert):
    W = read_arrays(tiny_albert['checkpoint'])
    keep = [0, 100, 101, 102, 103, 400, 401]
    for name in ('albert', 'albert_unshared'):
        model = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model=name,
                                        with_mlm='linear', keep_tokens=keep)
        assert np.allclose(model.get_layer('Embedding-Token').embeddings, W['bert/embeddings/word_embeddings'][keep])
        assert np.allclose(model.get_layer('MLM-Bias').bias, W['cls/predictions/output_bias'][keep])
        token_ids = np.array([[2, 5, 6, 3]])
        full = build_transformer_model(tiny_albert['config'], tiny_albert['checkpoint'], model=name,
                                       with_mlm='linear')
        small_logits = model.predict([token_ids, np.zeros_like(token_ids)], verbose=0)
        full_logits = full.predict([np.array([keep])[:, [2, 5, 6, 3]], np.zeros_like(token_ids)], verbose=0)
        assert np.abs(small_logits - full_logits[..., keep]).max() <= 1e-5


def test_bert_checkpoint_loaded_as_albert(tiny_bert):
    config = json.load(open(tiny_bert['config']))
    with pytest.raises(CheckpointMismatchError, match="use model='bert'"):
        build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], model='albert',
                                embedding_size=config['hidden_size'])


def test_early_brightmart_albert_is_refused_with_the_format_named(tiny_albert, tmp_path):
    # early brightmart releases: 'layer_shared' scope and a word_embeddings_2 projection
    arrays = {
        'bert/embeddings/word_embeddings': np.zeros((775, 16), 'float32'),
        'bert/embeddings/word_embeddings_2': np.zeros((16, 32), 'float32'),
        'bert/embeddings/token_type_embeddings': np.zeros((2, 32), 'float32'),
        'bert/embeddings/position_embeddings': np.zeros((40, 32), 'float32'),
        'bert/encoder/layer_shared/attention/self/query/kernel': np.zeros((32, 32), 'float32'),
    }
    prefix = write_checkpoint(str(tmp_path / 'albert_legacy.ckpt'), arrays)
    with pytest.raises(CheckpointMismatchError) as info:
        build_transformer_model(tiny_albert['config'], prefix, model='albert')
    message = str(info.value)
    assert 'early brightmart ALBERT' in message and '"*_google" ALBERT releases are supported' in message
    assert 'missing variables' in message
