"""Long text (hierarchical positions), log-n attention scaling, RealFormer residual scores and key-size
overrides, each against the numpy reference with the same change; all off by default."""
import numpy as np
import pytest

from bert4keras_ext.layers import PositionEmbedding
from bert4keras_ext.models import build_transformer_model
from numpy_reference import forward, random_batch, read_arrays


@pytest.fixture(scope='module')
def sharp_bert(tmp_path_factory):
    """Like tiny_bert but with larger weights, so attention is far from uniform and each option
    changes the outputs by much more than the 1e-5 parity tolerance."""
    from bert4keras_ext.checkpoints import make_random_checkpoint
    return make_random_checkpoint(str(tmp_path_factory.mktemp('sharp_bert')), seed=7, initializer_range=0.25,
                                  hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=40)


def test_hierarchical_positions_extend_the_table_exactly(tiny_bert):
    W = read_arrays(tiny_bert['checkpoint'])
    plain = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])
    long_model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], hierarchical_position=True)
    layer = long_model.get_layer('Embedding-Position')
    assert isinstance(layer, PositionEmbedding) and layer.max_length == 40 * 40
    table = W['bert/embeddings/position_embeddings']
    rows = np.asarray(layer.position_embeddings(seq_len=1600))
    # the first n positions are exactly the trained table
    assert np.abs(rows[:40] - table).max() <= 1e-6
    # position n·i + j = alpha·u_i + (1-alpha)·u_j with u = (p - alpha·p_0)/(1-alpha), alpha = 0.4
    u = (table - 0.4 * table[0]) / 0.6
    for position in (40, 41, 77, 400, 1599):
        i, j = divmod(position, 40)
        assert np.abs(rows[position] - (0.4 * u[i] + 0.6 * u[j])).max() <= 1e-5
    # inside the table, whole-model outputs are the plain model's
    token_ids, segment_ids = random_batch(np.random.RandomState(0), 500, [30, 12], 30)
    assert np.abs(plain.predict([token_ids, segment_ids], verbose=0)
                  - long_model.predict([token_ids, segment_ids], verbose=0)).max() <= 1e-6
    # beyond it: a 130-token input runs and matches the reference with the same positions
    token_ids, segment_ids = random_batch(np.random.RandomState(1), 500, [130, 70], 130)
    ref = forward(W, token_ids, segment_ids, 2, 4, hierarchical=True)
    out = long_model.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(out - ref['sequence']).max() <= 1e-5
    with pytest.raises(Exception, match='exceeds the position embedding table'):
        plain.predict([token_ids, segment_ids], verbose=0)


def test_hierarchical_custom_alpha(tiny_bert):
    W = read_arrays(tiny_bert['checkpoint'])
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], hierarchical_position=0.3)
    token_ids, segment_ids = random_batch(np.random.RandomState(2), 500, [90], 90)
    ref = forward(W, token_ids, segment_ids, 2, 4, hierarchical=0.3)
    assert np.abs(model.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5
    with pytest.raises(ValueError, match='alpha must be in'):
        build_transformer_model(tiny_bert['config'], hierarchical_position=0.5)


def test_log_n_attention_scale(sharp_bert):
    W = read_arrays(sharp_bert['checkpoint'])
    model = build_transformer_model(sharp_bert['config'], sharp_bert['checkpoint'], attention_scale='log_n')
    token_ids, segment_ids = random_batch(np.random.RandomState(3), 500, [36, 20, 9], 36)
    ref = forward(W, token_ids, segment_ids, 2, 4, attention_scale='log_n')
    out = model.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(out - ref['sequence']).max() <= 1e-5
    # padding does not change the visible-key count n: padded batch == unpadded row
    single = model.predict([token_ids[2:, :9], segment_ids[2:, :9]], verbose=0)
    assert np.abs(single[0] - out[2, :9]).max() <= 1e-6
    # and it really changes the function (so the parity above is not vacuous)
    plain = build_transformer_model(sharp_bert['config'], sharp_bert['checkpoint'])
    assert np.abs(plain.predict([token_ids, segment_ids], verbose=0) - out).max() > 1e-2
    # a different log base
    model = build_transformer_model(sharp_bert['config'], sharp_bert['checkpoint'], attention_scale='log_n',
                                    attention_scale_base=64)
    ref = forward(W, token_ids, segment_ids, 2, 4, attention_scale='log_n', scale_base=64)
    assert np.abs(model.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5


def test_realformer_residual_attention_scores(sharp_bert):
    W = read_arrays(sharp_bert['checkpoint'])
    model = build_transformer_model(sharp_bert['config'], sharp_bert['checkpoint'], residual_attention_scores=True)
    token_ids, segment_ids = random_batch(np.random.RandomState(4), 500, [25, 11], 25)
    ref = forward(W, token_ids, segment_ids, 2, 4, residual=True)
    assert np.abs(model.predict([token_ids, segment_ids], verbose=0) - ref['sequence']).max() <= 1e-5
    plain = forward(W, token_ids, segment_ids, 2, 4)
    assert np.abs(ref['sequence'] - plain['sequence']).max() > 1e-2


def test_attention_key_and_head_size_overrides(tmp_path):
    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.models import build_transformer_model as build
    paths = make_random_checkpoint(str(tmp_path), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=48)
    transformer = build(paths['config'], attention_key_size=5, attention_head_size=6, return_keras_model=False)
    layer = transformer.model.get_layer('Transformer-0-MultiHeadSelfAttention')
    assert layer.q_dense.kernel.shape == (32, 20) and layer.v_dense.kernel.shape == (32, 24)
    assert layer.o_dense.kernel.shape == (24, 32)
    # random weights, written out in Google naming and run through the reference
    prefix = str(tmp_path / 'sized' / 'bert_model.ckpt')
    transformer.save_weights_as_checkpoint(prefix)
    W = read_arrays(prefix)
    token_ids, segment_ids = random_batch(np.random.RandomState(5), 500, [10, 4], 10)
    ref = forward(W, token_ids, segment_ids, 2, 4)
    out = transformer.model.predict([token_ids, segment_ids], verbose=0)
    assert np.abs(out - ref['sequence']).max() <= 1e-5
