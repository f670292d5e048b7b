"""ELECTRA discriminators: tiny checkpoints in HFL's release layout (electra/ names, embeddings_project when
embedding_size != hidden_size, the generator's variables alongside) against a numpy forward pass, the
replaced-token-detection head, padding invariance, masks, round trips and the errors for other families."""
import json

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import CheckpointMismatchError, make_random_checkpoint, write_checkpoint
from bert4keras_ext.models import build_transformer_model
from numpy_reference import forward, gelu_erf, gelu_tanh, random_batch, read_arrays

LAYERS, HEADS, HIDDEN = 2, 4, 32

# HFL's small_discriminator_config.json keys (ymcui/Chinese-ELECTRA config/), sizes made tiny
RELEASE_KEYS = {'_num_labels': 2, 'architectures': ['ElectraForPreTraining'], 'layer_norm_eps': 1e-12,
                'model_type': 'electra', 'output_past': True, 'pad_token_id': 0, 'summary_activation': 'gelu',
                'summary_last_dropout': 0.1, 'summary_type': 'first', 'summary_use_proj': True}


def _release(directory, seed, embedding_size):
    ckpt = make_random_checkpoint(directory, model='electra', seed=seed, hidden_size=HIDDEN,
                                  embedding_size=embedding_size, num_hidden_layers=LAYERS,
                                  num_attention_heads=HEADS, intermediate_size=48, max_position_embeddings=40)
    arrays = {name: tf.train.load_variable(ckpt['checkpoint'], name)
              for name, _ in tf.train.list_variables(ckpt['checkpoint'])}
    # the generator that HFL's checkpoints carry too (hidden 16, its own encoder and MLM head): never loaded
    rng = np.random.RandomState(seed)
    for name, shape in [('generator/embeddings_project/kernel', (embedding_size, 16)),
                        ('generator/encoder/layer_0/attention/self/query/kernel', (16, 16)),
                        ('generator/encoder/layer_0/output/LayerNorm/gamma', (16,)),
                        ('generator_predictions/dense/kernel', (16, embedding_size)),
                        ('generator_predictions/LayerNorm/gamma', (embedding_size,)),
                        ('generator_predictions/output_bias', (arrays['electra/embeddings/word_embeddings'].shape[0],))]:
        arrays[name] = rng.randn(*shape).astype('float32')
    write_checkpoint(ckpt['checkpoint'], arrays)
    config = json.load(open(ckpt['config']))
    config.update(RELEASE_KEYS, embedding_size=embedding_size)
    json.dump(config, open(ckpt['config'], 'w'))
    return ckpt


@pytest.fixture(scope='module', params=[16, HIDDEN], ids=['small-factorised', 'base-unfactorised'])
def tiny_electra(request, tmp_path_factory):
    return _release(str(tmp_path_factory.mktemp('tiny_electra')), seed=3, embedding_size=request.param)


def as_bert_names(W):
    """ELECTRA's arrays under the BERT names of the numpy reference (which implements Google's BERT)."""
    out = {}
    for name, value in W.items():
        if name.startswith('electra/embeddings_project/'):
            out['bert/encoder/embedding_hidden_mapping_in/' + name.rsplit('/', 1)[1]] = value
        elif name.startswith('electra/'):
            out['bert/' + name[len('electra/'):]] = value
    return out


def discriminator_logits(W, sequence, gelu=gelu_erf):
    h = gelu(sequence @ W['discriminator_predictions/dense/kernel'] + W['discriminator_predictions/dense/bias'])
    return h @ W['discriminator_predictions/dense_1/kernel'] + W['discriminator_predictions/dense_1/bias']


def test_release_layout(tiny_electra):
    names = dict(tf.train.list_variables(tiny_electra['checkpoint']))
    assert names['electra/embeddings/word_embeddings'][1] == json.load(open(tiny_electra['config']))['embedding_size']
    factorised = names['electra/embeddings/word_embeddings'][1] != HIDDEN
    assert ('electra/embeddings_project/kernel' in names) == factorised
    assert names['discriminator_predictions/dense_1/kernel'] == [HIDDEN, 1]
    assert not any(n.startswith(('bert/', 'cls/')) for n in names)


def test_electra_matches_numpy_reference(tiny_electra):
    W = read_arrays(tiny_electra['checkpoint'])
    token_ids, segment_ids = random_batch(np.random.RandomState(0), 500, [14, 9, 3], 14)
    sequence = forward(as_bert_names(W), token_ids, segment_ids, LAYERS, HEADS)['sequence']
    logits = discriminator_logits(W, sequence)
    encoder = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra')
    assert np.abs(encoder.predict([token_ids, segment_ids], verbose=0) - sequence).max() <= 1e-5
    linear = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                     with_discriminator='linear')
    out = linear.predict([token_ids, segment_ids], verbose=0)
    assert out.shape == (3, 14, 1) and np.abs(out - logits).max() <= 1e-5
    probs = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                    with_discriminator=True).predict([token_ids, segment_ids], verbose=0)
    assert np.abs(probs - 1 / (1 + np.exp(-logits))).max() <= 1e-5
    # Google's ELECTRA code computed GELU with tanh; the option follows it
    tanh = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                   with_discriminator='linear', hidden_act='gelu_tanh')
    ref = forward(as_bert_names(W), token_ids, segment_ids, LAYERS, HEADS, gelu=gelu_tanh)['sequence']
    assert np.abs(tanh.predict([token_ids, segment_ids], verbose=0)
                  - discriminator_logits(W, ref, gelu=gelu_tanh)).max() <= 1e-5


def test_padding_invariance(tiny_electra):
    model = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                    with_discriminator=True)
    token_ids, segment_ids = random_batch(np.random.RandomState(1), 500, [8, 5], 8)
    padded = model.predict([np.pad(token_ids, [(0, 0), (0, 6)]), np.pad(segment_ids, [(0, 0), (0, 6)])], verbose=0)
    for row, length in enumerate([8, 5]):
        alone = model.predict([token_ids[row:row + 1, :length], segment_ids[row:row + 1, :length]], verbose=0)
        assert np.abs(padded[row, :length] - alone[0]).max() <= 1e-6


def test_unilm_mask_without_a_token_head(tiny_electra):
    W = read_arrays(tiny_electra['checkpoint'])
    token_ids, segment_ids = random_batch(np.random.RandomState(2), 500, [11, 6], 11)
    c = np.cumsum(segment_ids, axis=1)
    ref = forward(as_bert_names(W), token_ids, segment_ids, LAYERS, HEADS,
                  extra_mask=c[:, None, :] <= c[:, :, None])['sequence']
    model = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                    application='unilm', with_mlm=False)
    out = model.predict([token_ids, segment_ids], verbose=0)
    valid = token_ids != 0
    assert np.abs(out[valid] - ref[valid]).max() <= 1e-5
    with pytest.raises(ValueError, match='with_mlm=False'):  # bert4keras refuses the MLM head too
        build_transformer_model(tiny_electra['config'], model='electra', application='lm')
    with pytest.raises(ValueError, match='no pooler'):
        build_transformer_model(tiny_electra['config'], model='electra', with_pool=True)


def test_checkpoint_and_keras_round_trips(tiny_electra, tmp_path):
    token_ids, segment_ids = random_batch(np.random.RandomState(3), 500, [10, 4], 10)
    transformer = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                          with_discriminator=True, return_keras_model=False)
    rng = np.random.RandomState(4)
    for w in transformer.model.weights:
        w.assign(np.asarray(w) + 0.01 * rng.randn(*w.shape).astype('float32'))
    before = transformer.model.predict([token_ids, segment_ids], verbose=0)
    prefix = str(tmp_path / 'electra' / 'electra_small')
    transformer.save_weights_as_checkpoint(prefix)
    saved = set(dict(tf.train.list_variables(prefix)))
    released = {n for n, _ in tf.train.list_variables(tiny_electra['checkpoint'])
                if not n.startswith(('generator', 'global_step'))}
    assert saved == released  # the discriminator's release names, embeddings_project included when factorised
    again = build_transformer_model(tiny_electra['config'], prefix, model='electra', with_discriminator=True)
    assert np.abs(again.predict([token_ids, segment_ids], verbose=0) - before).max() <= 1e-6
    path = str(tmp_path / 'electra.keras')
    transformer.model.save(path)
    loaded = keras.saving.load_model(path)
    assert np.abs(loaded.predict([token_ids, segment_ids], verbose=0) - before).max() <= 1e-6


def test_mixed_precision_and_a_head(tiny_electra):
    from bert4keras_ext.layers import GlobalPointer
    token_ids, segment_ids = random_batch(np.random.RandomState(5), 500, [9, 2], 9)
    expected = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                       with_discriminator=True).predict([token_ids, segment_ids], verbose=0)
    keras.config.set_dtype_policy('mixed_float16')
    try:
        model = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra',
                                        with_discriminator=True)
        out = np.asarray(model([token_ids, segment_ids], training=False))
        base = build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='electra')
        gp = keras.Model(base.inputs, GlobalPointer(2, 8)(base.output))
        spans = np.asarray(gp([token_ids, segment_ids], training=False), dtype='float32')
    finally:
        keras.config.set_dtype_policy('float32')
    assert out.dtype == np.float32 and np.abs(out - expected).max() <= 1e-2
    valid = token_ids != 0
    pairs = np.broadcast_to(valid[:, None, :, None] & valid[:, None, None, :], spans.shape)
    assert spans.shape == (2, 2, 9, 9) and np.isfinite(spans[pairs]).all()


def test_wrong_family_errors(tiny_electra, tiny_bert):
    with pytest.raises(CheckpointMismatchError, match="(?s)electra/.*model='electra'"):  # issues #415, #103
        build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], model='bert')
    with pytest.raises(CheckpointMismatchError, match="(?s)missing variables.*model='bert'"):
        build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], model='electra')
    with pytest.raises(TypeError, match='models'):  # #415's typo (models='electra') is an error, not BERT
        build_transformer_model(tiny_electra['config'], tiny_electra['checkpoint'], models='electra')
