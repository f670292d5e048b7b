"""NEZHA: a tiny checkpoint in Huawei's release layout against an independent numpy forward pass (relative
positions clipped at max_relative_position), padding invariance, LM / UniLM masks, cached decoding against
full recomputation, checkpoint and .keras round trips, mixed precision, and the errors for other families."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import CheckpointMismatchError, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model
from numpy_reference import gelu_erf, layer_norm, random_batch, read_arrays, softmax

LAYERS, HEADS, HIDDEN = 2, 4, 32
CLIP = 4  # a small clip, so that the tiny sequences below (up to 15 tokens) reach it


@pytest.fixture(scope='module')
def tiny_nezha(tmp_path_factory):
    """Huawei's layout: BERT's names without bert/embeddings/position_embeddings; the release config keys."""
    ckpt = make_random_checkpoint(str(tmp_path_factory.mktemp('tiny_nezha')), model='nezha', seed=5,
                                  hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                  intermediate_size=48, max_position_embeddings=40)
    config = json.load(open(ckpt['config']))
    config.update(use_relative_position=True, max_relative_position=CLIP, directionality='bidi',
                  pooler_fc_size=HIDDEN, pooler_num_attention_heads=HEADS, pooler_num_fc_layers=3,
                  pooler_size_per_head=128, pooler_type='first_token_transform')
    json.dump(config, open(ckpt['config'], 'w'))
    return ckpt


# ------------------------------------------------------------------------------------------------
# The reference: Huawei's modeling.py (_generate_relative_positions_embeddings, attention_layer), in numpy
# ------------------------------------------------------------------------------------------------
def sinusoid_table(size, depth):
    """table[pos, 2i] = sin(pos / 10000^(2i/depth)), table[pos, 2i+1] = cos(...), pos = 0..size-1."""
    table = np.zeros((size, depth))
    for pos in range(size):
        for i in range(depth // 2):
            table[pos, 2 * i] = math.sin(pos / 10000 ** (2 * i / depth))
            table[pos, 2 * i + 1] = math.cos(pos / 10000 ** (2 * i / depth))
    return table


def relative_embeddings(n, depth, clip):
    """(n, n, depth): row i, column j = table[clip(j - i, -clip, clip) + clip]."""
    table = sinusoid_table(2 * clip + 1, depth)
    distance = np.arange(n)[None, :] - np.arange(n)[:, None]
    return table[np.clip(distance, -clip, clip) + clip]


def nezha_forward(W, token_ids, segment_ids, clip=CLIP, extra_mask=None, gelu=gelu_erf):
    b, n = token_ids.shape
    x = W['bert/embeddings/word_embeddings'][token_ids] + W['bert/embeddings/token_type_embeddings'][segment_ids]
    x = layer_norm(x, W['bert/embeddings/LayerNorm/gamma'], W['bert/embeddings/LayerNorm/beta'])
    d = HIDDEN // HEADS
    r = relative_embeddings(n, d, clip)
    allowed = np.broadcast_to((token_ids != 0)[:, None, None, :], (b, 1, n, n))
    if extra_mask is not None:
        allowed = allowed & extra_mask[:, None]
    for i in range(LAYERS):
        p = 'bert/encoder/layer_%d/' % i

        def dense(t, name):
            return t @ W[p + name + '/kernel'] + W[p + name + '/bias']

        q = dense(x, 'attention/self/query').reshape(b, n, HEADS, d)
        k = dense(x, 'attention/self/key').reshape(b, n, HEADS, d)
        v = dense(x, 'attention/self/value').reshape(b, n, HEADS, d)
        scores = np.einsum('bqhd,bkhd->bhqk', q, k) + np.einsum('bqhd,qkd->bhqk', q, r)  # before the scaling
        scores = np.where(allowed, scores / math.sqrt(d), -1e30)
        probs = softmax(scores)
        context = np.einsum('bhqk,bkhd->bqhd', probs, v) + np.einsum('bhqk,qkd->bqhd', probs, r)
        x = layer_norm(x + dense(context.reshape(b, n, HIDDEN), 'attention/output/dense'),
                       W[p + 'attention/output/LayerNorm/gamma'], W[p + 'attention/output/LayerNorm/beta'])
        ffn = dense(gelu(dense(x, 'intermediate/dense')), 'output/dense')
        x = layer_norm(x + ffn, W[p + 'output/LayerNorm/gamma'], W[p + 'output/LayerNorm/beta'])
    pooled = np.tanh(x[:, 0] @ W['bert/pooler/dense/kernel'] + W['bert/pooler/dense/bias'])
    nsp = softmax(pooled @ W['cls/seq_relationship/output_weights'].T + W['cls/seq_relationship/output_bias'])
    t = gelu(x @ W['cls/predictions/transform/dense/kernel'] + W['cls/predictions/transform/dense/bias'])
    t = layer_norm(t, W['cls/predictions/transform/LayerNorm/gamma'], W['cls/predictions/transform/LayerNorm/beta'])
    mlm = t @ W['bert/embeddings/word_embeddings'].T + W['cls/predictions/output_bias']
    return dict(sequence=x, nsp=nsp, mlm_logits=mlm)


def test_relative_table_by_hand():
    """Spot values of the reference table: distance 0 is row `clip` (sin(clip), cos(clip) at depth 2)."""
    r = relative_embeddings(3, 2, 64)
    assert np.allclose(r[1, 1], [math.sin(64), math.cos(64)])
    assert np.allclose(r[0, 2], [math.sin(66), math.cos(66)])
    assert np.allclose(relative_embeddings(200, 2, 64)[0, 199], [math.sin(128), math.cos(128)])  # clipped


def test_release_checkpoint_layout(tiny_nezha):
    names = set(dict(tf.train.list_variables(tiny_nezha['checkpoint'])))
    assert 'bert/embeddings/position_embeddings' not in names
    assert {'bert/embeddings/word_embeddings', 'bert/embeddings/token_type_embeddings',
            'bert/encoder/layer_1/attention/self/query/kernel', 'cls/predictions/output_bias',
            'bert/pooler/dense/kernel', 'cls/seq_relationship/output_weights'} <= names


def test_nezha_matches_numpy_reference(tiny_nezha):
    W = read_arrays(tiny_nezha['checkpoint'])
    token_ids, segment_ids = random_batch(np.random.RandomState(0), 500, [15, 8, 2], 15)
    ref = nezha_forward(W, token_ids, segment_ids)
    seq = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha')
    assert np.abs(seq.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5
    heads = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha', with_nsp=True,
                                    with_mlm='linear')
    nsp, mlm = heads.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(nsp - ref['nsp']).max() <= 1e-5
    assert np.abs(mlm - ref['mlm_logits']).max() <= 1e-5
    # the clip decides every position (the table is indexed by distance + clip), not only the far ones
    other = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                    max_relative_position=CLIP + 1)
    out = other.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(out - nezha_forward(W, token_ids, segment_ids, clip=CLIP + 1)['sequence']).max() <= 1e-5
    assert (np.abs(out - ref['sequence']).max(-1)[0] > 1e-3).all()


def test_default_clip_is_64_and_gelu_is_overridable(tiny_nezha, tmp_path):
    W = read_arrays(tiny_nezha['checkpoint'])
    config = json.load(open(tiny_nezha['config']))
    del config['max_relative_position']  # Huawei's own bert_config.json does not carry it
    path = tmp_path / 'bert_config.json'
    json.dump(config, open(path, 'w'))
    token_ids, segment_ids = random_batch(np.random.RandomState(1), 500, [12, 5], 12)
    model = build_transformer_model(str(path), tiny_nezha['checkpoint'], model='nezha')
    ref = nezha_forward(W, token_ids, segment_ids, clip=64)['sequence']
    assert np.abs(model.predict([token_ids, segment_ids], verbose=0) - ref).max() <= 1e-5
    from numpy_reference import gelu_tanh
    tanh = build_transformer_model(str(path), tiny_nezha['checkpoint'], model='nezha', hidden_act='gelu_tanh')
    ref_tanh = nezha_forward(W, token_ids, segment_ids, clip=64, gelu=gelu_tanh)['sequence']
    assert np.abs(tanh.predict([token_ids, segment_ids], verbose=0) - ref_tanh).max() <= 1e-5


def test_padding_invariance(tiny_nezha):
    model = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha')
    token_ids, segment_ids = random_batch(np.random.RandomState(2), 500, [9, 4], 9)
    padded = model.predict([np.pad(token_ids, [(0, 0), (0, 7)]), np.pad(segment_ids, [(0, 0), (0, 7)])], verbose=0)
    for row, length in enumerate([9, 4]):
        alone = model.predict([token_ids[row:row + 1, :length], segment_ids[row:row + 1, :length]], verbose=0)
        assert np.abs(padded[row, :length] - alone[0]).max() <= 1e-5


@pytest.mark.parametrize('application', ['lm', 'unilm'])
def test_lm_and_unilm_masks_match_the_reference(tiny_nezha, application):
    W = read_arrays(tiny_nezha['checkpoint'])
    token_ids, segment_ids = random_batch(np.random.RandomState(3), 500, [13, 7], 13)
    n = token_ids.shape[1]
    if application == 'lm':
        extra = np.broadcast_to(np.tril(np.ones((n, n), dtype=bool)), (2, n, n))
    else:
        c = np.cumsum(segment_ids, axis=1)
        extra = c[:, None, :] <= c[:, :, None]
    model = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                    application=application, with_mlm='linear')
    ref = nezha_forward(W, token_ids, segment_ids, extra_mask=extra)['mlm_logits']
    out = model.predict([token_ids, segment_ids], verbose=0)
    valid = token_ids != 0
    assert np.abs(out[valid] - ref[valid]).max() <= 1e-5


# ------------------------------------------------------------------------------------------------
# Cached decoding: the relative distances at every step
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['unilm', 'lm'])
def test_cached_decoding_equals_full_recomputation(tiny_nezha, mode):
    from bert4keras_ext.generation import CachedDecoder
    from bert4keras_ext.snippets import sequence_padding
    transformer = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                          application=mode, return_keras_model=False)
    engine = CachedDecoder(transformer, end_id=102, maxlen=8, jit_compile=False).engine
    sources = [[101, 300, 301, 302, 303, 304, 102], [101, 310, 102]]  # different lengths: padded prefix
    segments = [[0] * len(s) for s in sources]
    logits, state = engine.start(sequence_padding(sources), sequence_padding(segments), 8, rows_per_input=2)
    histories, owners = [[], []], [0, 1]
    # beams move between rows; past 2 · CLIP tokens the distances to the source are clipped
    steps = [([400, 401], [0, 1]), ([402, 403, 404], [0, 0, 1]), ([405, 406, 407], [1, 0, 2]),
             ([408, 409, 410], [0, 1, 2]), ([411, 412, 413], [2, 1, 0]), ([414, 415, 416], [0, 1, 2])]
    new_segment = 1 if mode == 'unilm' else 0
    for tokens, rows in steps:
        logits, state = engine.step(np.array(tokens), state, rows=np.array(rows))
        histories = [histories[r] + [t] for t, r in zip(tokens, rows)]
        owners = [owners[r] for r in rows]
        for row, (generated, owner) in enumerate(zip(histories, owners)):
            ids = np.array([sources[owner] + generated])
            segs = np.array([segments[owner] + [new_segment] * len(generated)])
            expected = transformer.model.predict([ids, segs], verbose=0)[0, -1]
            got = np.exp(logits[row] - logits[row].max())
            assert np.abs(got / got.sum() - expected).max() <= 1e-5, (mode, row, generated)


def test_cached_beam_search_equals_full_recomputation(tiny_nezha):
    from bert4keras_ext.decoders import AutoRegressiveDecoder
    from bert4keras_ext.generation import CachedDecoder

    transformer = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                          application='unilm', return_keras_model=False)

    class FullRecompute(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids = np.concatenate([inputs[0], output_ids], 1)
            segment_ids = np.concatenate([inputs[1], np.ones_like(output_ids)], 1)
            return np.asarray(self.last_token(transformer.model)([token_ids, segment_ids], training=False))

    cached = CachedDecoder(transformer, end_id=102, maxlen=7)  # XLA-compiled steps
    full = FullRecompute(start_id=None, end_id=102, maxlen=7)
    source = [[101, 300, 301, 302, 102], [0, 0, 0, 0, 0]]
    assert list(cached.beam_search(source, topk=2)) == list(full.beam_search(source, topk=2))


# ------------------------------------------------------------------------------------------------
# Round trips, precision, heads, errors
# ------------------------------------------------------------------------------------------------
def test_checkpoint_and_keras_round_trips(tiny_nezha, tmp_path):
    token_ids, segment_ids = random_batch(np.random.RandomState(4), 500, [11, 6], 11)
    transformer = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                          with_nsp=True, with_mlm=True, return_keras_model=False)
    rng = np.random.RandomState(5)
    for w in transformer.model.trainable_weights:  # "fine-tune"
        w.assign(np.asarray(w) + 0.01 * rng.randn(*w.shape).astype('float32'))
    before = transformer.model.predict([token_ids, segment_ids], verbose=0)
    prefix = str(tmp_path / 'nezha' / 'bert_model.ckpt')
    transformer.save_weights_as_checkpoint(prefix)
    saved = set(dict(tf.train.list_variables(prefix)))
    assert saved == set(dict(tf.train.list_variables(tiny_nezha['checkpoint'])))  # the release's own names
    again = build_transformer_model(tiny_nezha['config'], prefix, model='nezha', with_nsp=True, with_mlm=True)
    for a, b in zip(before, again.predict([token_ids, segment_ids], verbose=0)):
        assert np.abs(a - b).max() <= 1e-6
    path = str(tmp_path / 'nezha.keras')
    transformer.model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(before, loaded.predict([token_ids, segment_ids], verbose=0)):
        assert np.abs(a - b).max() <= 1e-6
    assert not loaded.get_layer('Embedding-Relative-Position').trainable


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_mixed_precision(tiny_nezha, policy):
    token_ids, segment_ids = random_batch(np.random.RandomState(6), 500, [10, 3], 10)
    ref = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha', with_mlm=True)
    expected = ref.predict([token_ids, segment_ids], verbose=0)
    keras.config.set_dtype_policy(policy)
    try:
        model = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                        with_mlm=True)
        out = np.asarray(model([token_ids, segment_ids], training=False), dtype='float32')
    finally:
        keras.config.set_dtype_policy('float32')
    assert np.isfinite(out).all()
    assert np.abs(out - expected).max() <= (1e-2 if policy == 'mixed_float16' else 5e-2)


def test_heads_and_recompute_train(tiny_nezha):
    """A GlobalPointer and a CRF on NEZHA train (finite losses), with rematerialised attention too."""
    from bert4keras_ext.layers import ConditionalRandomField, GlobalPointer
    token_ids, segment_ids = random_batch(np.random.RandomState(7), 500, [10, 6], 10)
    for recompute in (False, True):
        base = build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='nezha',
                                       recompute=recompute, dropout_rate=0.1)
        crf = ConditionalRandomField(lr_multiplier=10)
        tags = crf(keras.layers.Dense(3)(base.output))
        model = keras.Model(base.inputs, tags)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=crf.sparse_loss)
        assert np.isfinite(model.train_on_batch([token_ids, segment_ids], np.ones((2, 10))))
    gp = GlobalPointer(2, 8)(base.output)
    model = keras.Model(base.inputs, gp)
    assert model.predict([token_ids, segment_ids], verbose=0).shape == (2, 2, 10, 10)


def test_wrong_family_errors(tiny_nezha, tiny_bert, tmp_path):
    with pytest.raises(CheckpointMismatchError, match="(?s)position_embeddings.*model='nezha'"):
        build_transformer_model(tiny_nezha['config'], tiny_nezha['checkpoint'], model='bert')  # issue #321
    with pytest.raises(CheckpointMismatchError, match="(?s)NEZHA releases do not have.*model='bert'"):
        build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], model='nezha')
    electra = make_random_checkpoint(str(tmp_path / 'electra'), model='electra', seed=1, hidden_size=HIDDEN,
                                     num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=48)
    with pytest.raises(CheckpointMismatchError, match="(?s)model='electra'"):
        build_transformer_model(electra['config'], electra['checkpoint'], model='nezha')
    with pytest.raises(TypeError, match='max_relative_positon'):  # a real typo still fails
        build_transformer_model(tiny_nezha['config'], model='nezha', max_relative_positon=3)
    with pytest.raises(ValueError, match="model='bert'"):
        build_transformer_model(tiny_nezha['config'], model='nezha', use_relative_position=False)
    with pytest.raises(ValueError, match='no absolute position'):
        build_transformer_model(tiny_nezha['config'], model='nezha', hierarchical_position=True)
