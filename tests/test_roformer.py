"""RoFormer / RoFormer-v2: parity with a numpy forward pass written here (rotary positions as complex
rotations of interleaved pairs), padding invariance, LM / UniLM masks, cached decoding against full
recomputation, checkpoint and .keras round trips, heads, mixed precision, and the errors for a checkpoint
of another family."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import CheckpointMismatchError, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model
from numpy_reference import gelu_erf, layer_norm, random_batch, read_arrays, softmax

SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """{'roformer': paths, 'roformer_v2': paths, 'bert': paths} of tiny checkpoints in the released layouts
    (RoFormer-v2 with relu, as its release). Weights of stddev 0.2 make attention far from uniform, so the
    rotary angles matter."""
    root = tmp_path_factory.mktemp('tiny_roformer')
    return {
        'roformer': make_random_checkpoint(str(root / 'v1'), model='roformer', seed=4, initializer_range=0.2,
                                           **SIZES),
        'roformer_v2': make_random_checkpoint(str(root / 'v2'), model='roformer_v2', seed=5, hidden_act='relu',
                                              initializer_range=0.2, **SIZES),
        'bert': make_random_checkpoint(str(root / 'bert'), model='bert', seed=6, **SIZES),
    }


# --------------------------------------------------------------------------------------------------
# The reference: written from the RoFormer paper (eq. 34: q_m ↦ q_m e^{i m θ} on pairs (2i, 2i+1)) and
# bert4keras' RoFormer / RoFormerV2 definitions, float64, nothing from the package.
# --------------------------------------------------------------------------------------------------
def rope(x, halves=False):
    """Rotate x (b, n, h, d) at positions 0..n-1: the pair (x[2i], x[2i+1]) as the complex number
    x[2i] + i·x[2i+1], multiplied by e^{i·p·θ_i}, θ_i = 10000^(-2i/d). `halves` pairs (x[i], x[i+d/2])
    instead (GPT-NeoX style), only to show the test tells the two apart."""
    n, d = x.shape[1], x.shape[-1]
    theta = 10000.0 ** (-2.0 * np.arange(d // 2) / d)
    turn = np.exp(1j * np.arange(n)[:, None] * theta)[None, :, None, :]     # (1, n, 1, d/2)
    if halves:
        z = (x[..., :d // 2] + 1j * x[..., d // 2:]) * turn
        return np.concatenate([z.real, z.imag], axis=-1)
    z = (x[..., 0::2] + 1j * x[..., 1::2]) * turn
    return np.stack([z.real, z.imag], axis=-1).reshape(x.shape)


def rms_norm(x, eps=1e-7):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)


def reference(W, token_ids, segment_ids, layers, heads, v2=False, act=None, extra_mask=None, halves=False):
    """dict(sequence, nsp, mlm_logits) of RoFormer (v2=False) or RoFormer-v2 for a padded batch."""
    if act is None:
        act = (lambda t: np.maximum(t, 0.0)) if v2 else gelu_erf
    b, n = token_ids.shape
    zero = lambda name: W.get(name, 0.0)  # RoFormer-v2 has no biases / norm weights

    def dense(t, name):
        return t @ W[name + '/kernel'] + zero(name + '/bias')

    def norm(t, name):
        return rms_norm(t) if v2 else layer_norm(t, W[name + '/gamma'], W[name + '/beta'])

    x = W['bert/embeddings/word_embeddings'][token_ids] + W['bert/embeddings/token_type_embeddings'][segment_ids]
    x = norm(x, 'bert/embeddings/LayerNorm')
    allowed = np.broadcast_to((token_ids != 0)[:, None, None, :], (b, 1, n, n))
    if extra_mask is not None:
        allowed = allowed & extra_mask[:, None]
    for i in range(layers):
        p = 'bert/encoder/layer_%d/' % i
        q, k, v = (dense(x, p + 'attention/self/' + s).reshape(b, n, heads, -1) for s in ('query', 'key', 'value'))
        q, k = rope(q, halves), rope(k, halves)
        scores = np.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(q.shape[-1])
        probs = softmax(np.where(allowed, scores, -1e30))
        context = np.einsum('bhqk,bkhd->bqhd', probs, v).reshape(b, n, -1)
        x = norm(x + dense(context, p + 'attention/output/dense'), p + 'attention/output/LayerNorm')
        x = norm(x + dense(act(dense(x, p + 'intermediate/dense')), p + 'output/dense'), p + 'output/LayerNorm')
    out = dict(sequence=x)
    if v2:
        out['mlm_logits'] = x @ W['bert/embeddings/word_embeddings'].T
        return out
    pooled = np.tanh(dense(x[:, 0], 'bert/pooler/dense'))
    out['nsp'] = softmax(pooled @ W['cls/seq_relationship/output_weights'].T + W['cls/seq_relationship/output_bias'])
    t = layer_norm(gelu_erf(dense(x, 'cls/predictions/transform/dense')), W['cls/predictions/transform/LayerNorm/gamma'],
                   W['cls/predictions/transform/LayerNorm/beta'])
    out['mlm_logits'] = t @ W['bert/embeddings/word_embeddings'].T + W['cls/predictions/output_bias']
    return out


def lm_mask(token_ids, segment_ids, application):
    n = token_ids.shape[1]
    causal = np.tril(np.ones((n, n), dtype=bool))[None]
    if application == 'lm':
        return np.broadcast_to(causal, (len(token_ids), n, n))
    # UniLM: a key is visible when its cumulative segment count is <= the query's
    idx = np.cumsum(segment_ids, axis=1)
    return idx[:, None, :] <= idx[:, :, None]


def vocab_size(paths):
    return json.load(open(paths['config']))['vocab_size']


def batch(paths, lengths=(15, 8, 2), n=15, seed=0):
    return random_batch(np.random.RandomState(seed), vocab_size(paths), list(lengths), n)


# --------------------------------------------------------------------------------------------------
def test_roformer_matches_numpy_reference(tiny):
    paths = tiny['roformer']
    W = read_arrays(paths['checkpoint'])
    token_ids, segment_ids = batch(paths)
    ref = reference(W, token_ids, segment_ids, 2, 4)
    seq = build_transformer_model(paths['config'], paths['checkpoint'], model='roformer')
    heads = build_transformer_model(paths['config'], paths['checkpoint'], model='roformer', with_nsp=True,
                                    with_mlm='linear')
    got = seq.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(got - ref['sequence']).max() <= 1e-5
    nsp, mlm = heads.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(nsp - ref['nsp']).max() <= 1e-5
    assert np.abs(mlm - ref['mlm_logits']).max() <= 1e-5
    # the rotation of halves instead of interleaved pairs gives a clearly different model
    halves = reference(W, token_ids, segment_ids, 2, 4, halves=True)['sequence']
    assert np.abs(halves - ref['sequence']).max() > 1e-2
    assert not any('Position' in layer.name for layer in seq.layers)  # no absolute position table


def test_roformer_v2_matches_numpy_reference(tiny):
    paths = tiny['roformer_v2']
    W = read_arrays(paths['checkpoint'])
    token_ids, segment_ids = batch(paths)
    ref = reference(W, token_ids, segment_ids, 2, 4, v2=True)
    seq = build_transformer_model(paths['config'], paths['checkpoint'], model='roformer_v2')
    mlm = build_transformer_model(paths['config'], paths['checkpoint'], model='roformer_v2', with_mlm='linear')
    assert np.abs(seq.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5
    assert np.abs(mlm.predict([token_ids, segment_ids], verbose=0) - ref['mlm_logits']).max() <= 1e-5
    # every weight comes from the kernels-only release: no bias, no norm weight anywhere
    assert mlm.count_params() == sum(int(np.prod(a.shape)) for a in W.values())
    assert {layer.name for layer in mlm.layers} >= {'Output-MLM-Activation', 'Embedding-Norm'}


@pytest.mark.parametrize('model_name', ['roformer', 'roformer_v2'])
@pytest.mark.parametrize('application', ['lm', 'unilm'])
def test_applications_match_the_reference_with_their_masks(tiny, model_name, application):
    paths = tiny[model_name]
    W = read_arrays(paths['checkpoint'])
    token_ids, segment_ids = batch(paths, lengths=(12, 7), n=12, seed=1)
    model = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name,
                                    application=application, with_mlm='linear')
    ref = reference(W, token_ids, segment_ids, 2, 4, v2=model_name == 'roformer_v2',
                    extra_mask=lm_mask(token_ids, segment_ids, application))
    got = model.predict([token_ids, segment_ids], verbose=0)
    valid = token_ids != 0
    assert np.abs(got - ref['mlm_logits'])[valid].max() <= 1e-5


@pytest.mark.parametrize('model_name', ['roformer', 'roformer_v2'])
def test_padding_does_not_change_valid_positions(tiny, model_name):
    paths = tiny[model_name]
    model = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name)
    token_ids, segment_ids = batch(paths, lengths=(9, 5), n=9, seed=2)
    short = model.predict([token_ids, segment_ids], verbose=0)
    pad = np.zeros((2, 7), dtype=token_ids.dtype)
    long = model.predict([np.concatenate([token_ids, pad], 1), np.concatenate([segment_ids, pad], 1)], verbose=0)
    for row, length in enumerate((9, 5)):
        assert np.abs(long[row, :length] - short[row, :length]).max() <= 1e-6


def test_rotary_scores_depend_on_relative_positions_only():
    """q·k of rotated queries/keys at positions (p, p + r) is the same for every p (RoPE's point)."""
    from bert4keras_ext.modeling.roformer import RotaryMultiHeadAttention
    layer = RotaryMultiHeadAttention(heads=2, head_size=8)
    rng = np.random.RandomState(0)
    q = np.repeat(rng.randn(1, 1, 2, 8), 6, axis=1).astype('float32')  # the same vector at every position
    k = np.repeat(rng.randn(1, 1, 2, 8), 6, axis=1).astype('float32')
    qr, kr = (np.asarray(t) for t in layer.apply_positions(q, k, None))
    scores = np.einsum('bqhd,bkhd->bhqk', qr, kr)[0, 0]
    for r in range(-2, 3):
        diagonal = np.diagonal(scores, offset=r)
        assert np.abs(diagonal - diagonal[0]).max() <= 1e-5
    # explicit positions (the cached path) give the same rotation as the implicit 0..n-1
    positions = np.arange(6, dtype='int32')[None]
    assert np.allclose(np.asarray(layer.apply_positions(q, k, positions)[0]), qr, atol=1e-6)
    with pytest.raises(ValueError, match='must be even'):
        RotaryMultiHeadAttention(heads=2, head_size=7)


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('model_name,application', [('roformer', 'unilm'), ('roformer_v2', 'lm')])
def test_cached_decoding_equals_full_recomputation(tiny, model_name, application):
    """Logits of every cached step (rows moving between beams) equal the full model's at that position:
    the rotary angle of each new token and of each cached key is the right one."""
    from bert4keras_ext.generation import CachedDecoder
    from bert4keras_ext.snippets import sequence_padding
    paths = tiny[model_name]
    transformer = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name,
                                          application=application, return_keras_model=False)
    engine = CachedDecoder(transformer, end_id=102, maxlen=4, jit_compile=False).engine
    sources = [[101, 300, 301, 302, 303, 102], [101, 310, 102]]
    new_segment = 1 if application == 'unilm' else 0
    logits, state = engine.start(sequence_padding(sources), np.zeros((2, 6), dtype=int), 3, rows_per_input=2)
    histories, owners = [[], []], [0, 1]
    for tokens, rows in (([400, 401], [0, 1]), ([402, 403, 404], [0, 0, 1]), ([405, 406, 407], [1, 0, 2])):
        logits, state = engine.step(np.array(tokens), state, rows=np.array(rows))
        histories = [histories[r] + [t] for t, r in zip(tokens, rows)]
        owners = [owners[r] for r in rows]
        for row, (generated, owner) in enumerate(zip(histories, owners)):
            source = sources[owner]
            expected = transformer.model.predict(
                [np.array([source + generated]), np.array([[0] * len(source) + [new_segment] * len(generated)])],
                verbose=0)[0, -1]
            got = np.exp(logits[row] - logits[row].max())
            assert np.abs(got / got.sum() - expected).max() <= 1e-5, (row, generated)


def test_cached_beam_search_equals_full_recomputation(tiny):
    from bert4keras_ext.decoders import AutoRegressiveDecoder
    from bert4keras_ext.generation import CachedDecoder
    paths = tiny['roformer']
    transformer = build_transformer_model(paths['config'], paths['checkpoint'], model='roformer',
                                          application='unilm', return_keras_model=False)

    class FullRecompute(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids = np.concatenate([inputs[0], output_ids], 1)
            segment_ids = np.concatenate([inputs[1], np.ones_like(output_ids)], 1)
            return np.asarray(self.last_token(transformer.model)([token_ids, segment_ids], training=False))

    cached = CachedDecoder(transformer, end_id=102, maxlen=5, jit_compile=False)
    full = FullRecompute(start_id=None, end_id=102, maxlen=5)
    source = [[101, 320, 321, 322, 102], [0, 0, 0, 0, 0]]
    assert list(cached.beam_search(source, topk=2)) == list(full.beam_search(source, topk=2))


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('model_name', ['roformer', 'roformer_v2'])
def test_checkpoint_round_trip_keeps_the_release_layout(tiny, model_name, tmp_path):
    paths = tiny[model_name]
    options = dict(with_nsp=True, with_mlm=True) if model_name == 'roformer' else dict(with_mlm=True)
    transformer = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name,
                                          return_keras_model=False, **options)
    rng = np.random.RandomState(3)
    for w in transformer.model.weights:  # "fine-tune"
        w.assign(np.asarray(w) + 0.01 * rng.randn(*w.shape).astype('float32'))
    token_ids, segment_ids = batch(paths, lengths=(10, 4), n=10)
    before = transformer.model.predict([token_ids, segment_ids], verbose=0)
    prefix = str(tmp_path / 'bert_model.ckpt')
    transformer.save_weights_as_checkpoint(prefix)
    assert dict(tf.train.list_variables(prefix)) == {k: list(v) for k, v in tf.train.list_variables(paths['checkpoint'])}
    reloaded = build_transformer_model(paths['config'], prefix, model=model_name, **options)
    after = reloaded.predict([token_ids, segment_ids], verbose=0)
    for a, b in zip(before if isinstance(before, list) else [before], after if isinstance(after, list) else [after]):
        assert np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize('model_name', ['roformer', 'roformer_v2'])
def test_keras_file_round_trip_with_a_head(tiny, model_name, tmp_path):
    from bert4keras_ext.layers import ConditionalRandomField, GlobalPointer
    paths = tiny[model_name]
    encoder = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name)
    crf = ConditionalRandomField(name='CRF')(keras.layers.Dense(5)(encoder.output))
    spans = GlobalPointer(heads=2, head_size=8, name='GP')(encoder.output)
    model = keras.Model(encoder.inputs, [crf, spans])
    token_ids, segment_ids = batch(paths, lengths=(8, 5), n=8)
    before = model.predict([token_ids, segment_ids], verbose=0)
    model.save(str(tmp_path / 'm.keras'))
    loaded = keras.saving.load_model(str(tmp_path / 'm.keras'), compile=False)
    after = loaded.predict([token_ids, segment_ids], verbose=0)
    for a, b in zip(before, after):
        assert np.isfinite(a).all() and np.abs(a - b).max() <= 1e-6


@pytest.mark.parametrize('model_name', ['roformer', 'roformer_v2'])
def test_mixed_precision_is_finite_and_close(tiny, model_name):
    paths = tiny[model_name]
    token_ids, segment_ids = batch(paths, lengths=(12, 3), n=12)
    expected = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name, with_mlm=True)(
        [token_ids, segment_ids], training=False)
    keras.config.set_dtype_policy('mixed_float16')
    try:
        model = build_transformer_model(paths['config'], paths['checkpoint'], model=model_name, with_mlm=True)
        got = model([token_ids, segment_ids], training=False)
        attention = model.get_layer('Transformer-0-MultiHeadSelfAttention')
        assert attention.compute_dtype == 'float16'
    finally:
        keras.config.set_dtype_policy('float32')
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert np.abs(got - expected).max() <= 1e-2 * np.abs(expected).max()


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('checkpoint,model_name,wanted', [
    ('roformer', 'bert', "model='roformer'"),
    ('roformer_v2', 'roformer', "model='roformer_v2'"),
    ('roformer_v2', 'bert', "model='roformer_v2'"),
    ('bert', 'roformer', "model='bert'"),            # a superset of RoFormer's names: refused, not half-loaded
    ('roformer', 'roformer_v2', "model='roformer'"),  # ditto for RoFormer-v2's
])
def test_a_checkpoint_of_another_family_names_the_right_model(tiny, checkpoint, model_name, wanted):
    paths = tiny[checkpoint]
    with pytest.raises(CheckpointMismatchError) as info:
        build_transformer_model(paths['config'], paths['checkpoint'], model=model_name)
    assert wanted in str(info.value) and paths['checkpoint'] in str(info.value)


def test_release_config_keys_load_and_typos_do_not(tiny, tmp_path):
    paths = tiny['roformer_v2']
    config = json.load(open(paths['config']))
    # keys that the RoFormer releases / their Hugging Face configs carry
    config.update(rotary_value=False, norm_type='rms_norm', use_bias=False, directionality='bidi',
                  pooler_type='first_token_transform', layer_norm_eps=1e-12)
    path = tmp_path / 'bert_config.json'
    path.write_text(json.dumps(config))
    build_transformer_model(str(path), paths['checkpoint'], model='roformer_v2')
    with pytest.raises(TypeError, match='with_mlmm'):
        build_transformer_model(str(path), paths['checkpoint'], model='roformer_v2', with_mlmm=True)
    with pytest.raises(ValueError, match='no pooler'):
        build_transformer_model(str(path), model='roformer_v2', with_pool=True)
    with pytest.raises(ValueError, match='custom_position_ids'):
        build_transformer_model(str(path), model='roformer', custom_position_ids=True)


def test_manifest_lists_the_releases():
    from bert4keras_ext.manifest import load_manifest
    entries = load_manifest()
    families = {name: entry['model'] for name, entry in entries.items()}
    assert {'roformer', 'roformer_v2'} <= set(families.values())
    v2 = [e for e in entries.values() if e['model'] == 'roformer_v2']
    assert all(e['tokenizer'] == {'do_lower_case': True, 'pre_tokenize': None} for e in v2)
    word = [e for e in entries.values() if e['model'] == 'roformer' and e['config']['vocab_size'] == 50000]
    assert word and all(e['tokenizer']['pre_tokenize'] == 'jieba_hmm_false' for e in word)
