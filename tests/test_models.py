"""BERT parity against an independent numpy forward pass, padding invariance, save/load round-trips,
and every bad-input error path of model building and checkpoint loading."""
import json

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import (
    CheckpointError, CheckpointMismatchError, make_random_checkpoint, write_checkpoint,
)
from bert4keras_ext.models import build_transformer_model
from numpy_reference import forward, random_batch, read_arrays, softmax

def test_bert_matches_numpy_reference_with_padding(tiny_bert):
    W = read_arrays(tiny_bert['checkpoint'])
    config = json.load(open(tiny_bert['config']))
    token_ids, segment_ids = random_batch(np.random.RandomState(0), config['vocab_size'], [17, 9, 3], 17)

    seq_model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    nsp_mlm = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_nsp=True, with_mlm='linear')
    pool_model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_pool=True)

    ref = forward(W, token_ids, segment_ids, config['num_hidden_layers'], config['num_attention_heads'])
    ref_seq, ref_pool, ref_nsp, ref_mlm = ref['sequence'], ref['pooled'], ref['nsp'], ref['mlm_logits']
    seq = seq_model.predict([token_ids, segment_ids], verbose=0)
    nsp, mlm = nsp_mlm.predict([token_ids, segment_ids], verbose=0)
    pool = pool_model.predict([token_ids, segment_ids], verbose=0)

    assert np.abs(seq - ref_seq).max() <= 1e-5
    assert np.abs(pool - ref_pool).max() <= 1e-5
    assert np.abs(nsp - ref_nsp).max() <= 1e-5
    assert np.abs(mlm - ref_mlm).max() <= 1e-5
    # probabilities head = softmax of those logits
    probs = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm=True).predict(
        [token_ids, segment_ids], verbose=0)
    assert np.abs(probs - softmax(ref_mlm)).max() <= 1e-6


def test_padding_never_leaks(tiny_bert):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm='linear')
    rng = np.random.RandomState(3)
    token_ids, segment_ids = random_batch(rng, 500, [7], 7)
    short = model.predict([token_ids, segment_ids], verbose=0)
    for pad in (1, 9, 25):
        longer = [np.pad(a, ((0, 0), (0, pad))) for a in (token_ids, segment_ids)]
        out = model.predict(longer, verbose=0)
        assert np.abs(out[:, :7] - short).max() <= 1e-6
    # the same sequence inside a batch whose other rows are longer
    batch_t, batch_s = random_batch(rng, 500, [30, 12], 30)
    batch_t[1, :7], batch_s[1, :7] = token_ids[0], segment_ids[0]
    batch_t[1, 7:], batch_s[1, 7:] = 0, 0
    out = model.predict([batch_t, batch_s], verbose=0)
    assert np.abs(out[1, :7] - short[0]).max() <= 1e-6


def test_layer_names_follow_bert4keras(tiny_bert):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_nsp=True, with_mlm=True)
    names = {layer.name for layer in model.layers}
    for expected in ['Input-Token', 'Input-Segment', 'Embedding-Token', 'Embedding-Segment', 'Embedding-Position',
                     'Embedding-Norm', 'Transformer-0-MultiHeadSelfAttention', 'Transformer-0-MultiHeadSelfAttention-Add',
                     'Transformer-0-MultiHeadSelfAttention-Norm', 'Transformer-1-FeedForward',
                     'Transformer-1-FeedForward-Add', 'Transformer-1-FeedForward-Norm', 'Pooler-Dense', 'NSP-Proba',
                     'MLM-Dense', 'MLM-Norm', 'MLM-Bias', 'MLM-Activation']:
        assert expected in names, expected
    # dropout from config (0.1) is present while training
    assert 'Transformer-0-FeedForward-Dropout' in names


def test_dropout_only_in_training(tiny_bert):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    token_ids, segment_ids = random_batch(np.random.RandomState(0), 500, [10, 6], 10)
    a = model([token_ids, segment_ids], training=False)
    b = model([token_ids, segment_ids], training=False)
    c = model([token_ids, segment_ids], training=True)
    assert np.array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3


def test_keras_save_load_round_trip(tiny_bert, tmp_path):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_pool=True, with_mlm=True)
    output = keras.layers.Dense(3, activation='softmax', name='classifier')(model.output[0])
    classifier = keras.Model(model.inputs, [output, model.output[1]])
    token_ids, segment_ids = random_batch(np.random.RandomState(5), 500, [12, 4], 12)
    before = classifier.predict([token_ids, segment_ids], verbose=0)
    path = str(tmp_path / 'classifier.keras')
    classifier.save(path)
    reloaded = keras.saving.load_model(path)
    after = reloaded.predict([token_ids, segment_ids], verbose=0)
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
    # the tied MLM head is still tied: one embedding variable shared by lookup and output
    assert len([w for w in reloaded.weights if 'embeddings' in w.path and 'Embedding-Token' in w.path]) == 1


def test_save_weights_as_checkpoint_round_trip(tiny_bert, tmp_path):
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_nsp=True, with_mlm=True,
                                   return_keras_model=False)
    # simulate fine-tuning: perturb every weight
    rng = np.random.RandomState(0)
    for w in bert.model.weights:
        w.assign(np.asarray(w) + 0.01 * rng.randn(*w.shape).astype('float32'))
    token_ids, segment_ids = random_batch(rng, 500, [9, 5], 9)
    before = bert.model.predict([token_ids, segment_ids], verbose=0)
    prefix = str(tmp_path / 'finetuned' / 'bert_model.ckpt')
    bert.save_weights_as_checkpoint(prefix)

    saved = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    original = tf.train.load_checkpoint(tiny_bert['checkpoint']).get_variable_to_shape_map()
    assert saved == original  # same Google names and shapes (NSP weights transposed back)
    reloaded = build_transformer_model(tiny_bert['config'], prefix, with_nsp=True, with_mlm=True)
    after = reloaded.predict([token_ids, segment_ids], verbose=0)
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
    # a directory works as checkpoint_path too
    build_transformer_model(tiny_bert['config'], str(tmp_path / 'finetuned'))


def test_keep_tokens_and_compound_tokens(tiny_bert):
    W = read_arrays(tiny_bert['checkpoint'])
    keep = [0, 100, 101, 102, 103, 500, 600, 700]
    compound = [[5, 6], [7]]  # ids in the kept vocabulary, as in bert4keras (WoBERT builds them that way)
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm='linear',
                                    keep_tokens=keep, compound_tokens=compound)
    emb = np.asarray(model.get_layer('Embedding-Token').embeddings)
    bias = np.asarray(model.get_layer('MLM-Bias').bias)
    E, B = W['bert/embeddings/word_embeddings'], W['cls/predictions/output_bias']
    assert emb.shape == (10, E.shape[1])
    assert np.allclose(emb[:8], E[keep])
    assert np.allclose(emb[8], (E[500] + E[600]) / 2, atol=1e-7)  # kept ids 5, 6 = original 500, 600
    assert np.allclose(emb[9], E[700])
    assert np.allclose(bias, np.concatenate([B[keep], [(B[500] + B[600]) / 2, B[700]]]), atol=1e-7)
    logits = model.predict([np.array([[2, 5, 8, 3]]), np.zeros((1, 4))], verbose=0)
    assert logits.shape == (1, 4, 10)


def test_optimizer_slots_in_checkpoint_are_ignored(tmp_path):
    paths = make_random_checkpoint(str(tmp_path), include_optimizer_slots=True, num_hidden_layers=1)
    model = build_transformer_model(paths['config'], paths['checkpoint'])
    assert model.count_params() > 0


# ------------------------------------------------------------------------------------------------
# Bad input: every error names what was wrong, what was expected and where
# ------------------------------------------------------------------------------------------------
def test_missing_and_mismatched_variables_listed_together(tiny_bert, tmp_path):
    reader = tf.train.load_checkpoint(tiny_bert['checkpoint'])
    arrays = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    del arrays['bert/encoder/layer_1/attention/self/query/kernel']
    del arrays['bert/pooler/dense/bias']
    arrays['bert/encoder/layer_0/intermediate/dense/kernel'] = np.zeros((32, 50), 'float32')
    prefix = write_checkpoint(str(tmp_path / 'broken.ckpt'), arrays)
    model = build_transformer_model(tiny_bert['config'], with_pool=True, return_keras_model=False)
    before = [np.asarray(w) for w in model.model.weights]
    with pytest.raises(CheckpointMismatchError) as info:
        model.load_weights_from_checkpoint(prefix)
    message = str(info.value)
    assert prefix in message
    assert 'missing variables (2)' in message
    assert 'bert/encoder/layer_1/attention/self/query/kernel' in message and '(32, 32)' in message
    assert 'bert/pooler/dense/bias' in message
    assert 'shape mismatches (1)' in message
    assert 'bert/encoder/layer_0/intermediate/dense/kernel' in message and '(32, 48)' in message and '(32, 50)' in message
    # nothing was half-loaded
    assert all(np.array_equal(a, np.asarray(w)) for a, w in zip(before, model.model.weights))


def test_config_that_does_not_match_checkpoint(tiny_bert, tmp_path):
    config = json.load(open(tiny_bert['config']))
    config['hidden_size'] = 64
    config['intermediate_size'] = 96
    path = tmp_path / 'wrong_config.json'
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match='config .*probably belongs to another checkpoint'):
        build_transformer_model(str(path), tiny_bert['checkpoint'])
    # fewer layers than the checkpoint: refused unless asked for explicitly
    config = json.load(open(tiny_bert['config']))
    config['num_hidden_layers'] = 1
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match=r'encoder layers \[1\]'):
        build_transformer_model(str(path), tiny_bert['checkpoint'])
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], num_hidden_layers=1)
    assert 'Transformer-1-FeedForward' not in {layer.name for layer in model.layers}


def test_albert_checkpoint_loaded_as_bert_gets_a_hint(tmp_path):
    paths = make_random_checkpoint(str(tmp_path), model='albert', num_hidden_layers=2)
    config = json.load(open(paths['config']))
    config.pop('embedding_size')
    (tmp_path / 'as_bert.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointMismatchError, match="use model='albert'"):
        build_transformer_model(str(tmp_path / 'as_bert.json'), paths['checkpoint'], model='bert')


def test_sequence_longer_than_position_table(tiny_bert):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    too_long = np.ones((1, 41), dtype='int32')
    with pytest.raises(Exception, match='exceeds the position embedding table of 40 positions'):
        model.predict([too_long, np.zeros_like(too_long)], verbose=0)
    with pytest.raises(ValueError, match='exceeds the position embedding table'):
        build_transformer_model(tiny_bert['config'], sequence_length=41)
    ok = np.ones((1, 40), dtype='int32')
    assert model.predict([ok, np.zeros_like(ok)], verbose=0).shape == (1, 40, 32)


def test_unknown_names_and_options(tiny_bert):
    with pytest.raises(ValueError, match=r"unknown model='gpt5'.*albert|unknown model='gpt5'.*bert"):
        build_transformer_model(tiny_bert['config'], model='gpt5')
    with pytest.raises(ValueError, match="unknown application='translate'"):
        build_transformer_model(tiny_bert['config'], application='translate')
    with pytest.raises(TypeError, match='with_pooling'):
        build_transformer_model(tiny_bert['config'], with_pooling=True)
    with pytest.raises(ValueError, match="attention_scale must be None or 'log_n'"):
        build_transformer_model(tiny_bert['config'], attention_scale='cubic')


def test_bad_config_and_checkpoint_paths(tiny_bert, tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        build_transformer_model(str(tmp_path / 'nope.json'))
    (tmp_path / 'bad.json').write_text('{"hidden_size": 32,')
    with pytest.raises(CheckpointError, match='not valid JSON'):
        build_transformer_model(str(tmp_path / 'bad.json'))
    (tmp_path / 'partial.json').write_text('{"hidden_size": 32, "num_attention_heads": 4}')
    with pytest.raises(CheckpointError, match='lacks vocab_size, num_hidden_layers, intermediate_size, '
                                              'max_position_embeddings'):
        build_transformer_model(str(tmp_path / 'partial.json'))
    with pytest.raises(CheckpointError, match=r'expected the file .*missing\.ckpt\.index'):
        build_transformer_model(tiny_bert['config'], str(tmp_path / 'missing.ckpt'))
    with pytest.raises(CheckpointError, match='no checkpoint'):
        build_transformer_model(tiny_bert['config'], str(tmp_path))


def test_keep_tokens_out_of_range(tiny_bert):
    with pytest.raises(CheckpointMismatchError, match='keep_tokens holds ids outside the checkpoint vocabulary'):
        build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], keep_tokens=[0, 1, 99999])


def test_recompute_keeps_outputs_and_gradients(tiny_bert):
    """Rematerialisation trades memory for time only: same loss, same gradients."""
    token_ids, segment_ids = random_batch(np.random.RandomState(9), 500, [12, 7], 12)
    results = []
    for recompute in (False, True):
        model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_pool=True,
                                        dropout_rate=0.0, attention_dropout_rate=0.0, recompute=recompute)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model([token_ids, segment_ids], training=True) ** 2)
        grads = tape.gradient(loss, model.trainable_weights)
        results.append((float(loss), [np.asarray(tf.convert_to_tensor(g)) for g in grads]))  # IndexedSlices too
    assert abs(results[0][0] - results[1][0]) <= 1e-5 * abs(results[0][0])
    for g0, g1 in zip(results[0][1], results[1][1]):
        assert np.abs(g0 - g1).max() <= 1e-5 * max(1.0, np.abs(g0).max())


def test_recompute_trains_in_a_compiled_step_with_dropout(tiny_bert):
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_pool=True, recompute=True)
    output = keras.layers.Dense(2, activation='softmax')(model.output)
    classifier = keras.Model(model.inputs, output)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss='sparse_categorical_crossentropy')
    token_ids, segment_ids = random_batch(np.random.RandomState(10), 500, [12, 7, 9, 4], 12)
    labels = np.array([0, 1, 0, 1])
    losses = [classifier.train_on_batch([token_ids, segment_ids], labels) for _ in range(8)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_sequence_output_carries_the_padding_mask(tiny_bert):
    """Downstream layers (pooling, CRF, Loss.compute_loss) see padding as in bert4keras."""
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    pooled = keras.layers.GlobalAveragePooling1D()(bert.output)
    model = keras.Model(bert.inputs, [bert.output, pooled])
    token_ids, segment_ids = random_batch(np.random.RandomState(11), 500, [9, 4], 9)
    sequence, mean = model.predict([token_ids, segment_ids], verbose=0)
    for row, length in enumerate([9, 4]):
        assert np.abs(mean[row] - sequence[row, :length].mean(0)).max() <= 1e-5


@pytest.mark.parametrize('shape', [(3, 5, 8), (2, 3, 4, 8)])
def test_flat_dense_equals_the_affine_map(shape):
    """FlatDense (2-D matmul + BiasAdd, used inside the blocks) computes gelu(x·W + b) on any rank,
    under tf.function with unknown batch/length too, and keeps Dense's weights."""
    from bert4keras_ext.backend import get_activation
    from bert4keras_ext.layers import FlatDense
    from numpy_reference import gelu_erf
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype('float32')
    layer = FlatDense(6, activation=get_activation('gelu'))
    layer.build(shape)
    layer.set_weights([rng.randn(8, 6).astype('float32'), rng.randn(6).astype('float32')])
    kernel, bias = layer.get_weights()
    assert [w.path.split('/')[-1] for w in layer.weights] == ['kernel', 'bias']
    expected = gelu_erf(x.astype('float64') @ kernel + bias)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None,) * (len(shape) - 1) + (8,), 'float32')])
    np.testing.assert_allclose(traced(tf.constant(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
