"""CRF / MEMM / GlobalPointer / EfficientGlobalPointer / AMSoftmaxDense against independent references:
exhaustive enumeration of label paths, finite differences, and numpy re-implementations of the formulas."""
import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.heads import (
    AMSoftmaxDense, ConditionalRandomField, EfficientGlobalPointer, GlobalPointer, MaximumEntropyMarkovModel,
)


def np_logsumexp(values):
    values = np.asarray(values, dtype='float64')
    top = values.max()
    return top + math.log(np.exp(values - top).sum())


def all_paths(num_labels, length):
    return itertools.product(range(num_labels), repeat=length)


def path_score(emissions, trans, path):
    return sum(emissions[t, y] for t, y in enumerate(path)) + \
        sum(trans[path[t - 1], path[t]] for t in range(1, len(path)))


def crf_nll_by_enumeration(emissions, trans, labels, length):
    """-log p(labels[:length]) with Z summed over all C**length paths."""
    emissions = emissions.astype('float64')
    trans = trans.astype('float64')
    if length == 0:
        return 0.0
    log_z = np_logsumexp([path_score(emissions, trans, p) for p in all_paths(emissions.shape[-1], length)])
    return log_z - path_score(emissions, trans, list(labels[:length]))


def build_head(layer, num_labels, seq_len=None):
    x = keras.Input((seq_len, num_labels))
    m = keras.Input((seq_len,), dtype='bool')
    return keras.Model([x, m], layer([x, m]))


def sequence_case(seed, b=5, n=4, num_labels=3):
    rng = np.random.RandomState(seed)
    emissions = rng.randn(b, n, num_labels).astype('float32')
    labels = rng.randint(0, num_labels, size=(b, n))
    lengths = np.array([n, 3, 1, 0, 2][:b])
    mask = np.arange(n)[None] < lengths[:, None]
    return emissions, labels, lengths, mask


# ---------------------------------------------------------------------------------------------------
# CRF
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('lr_multiplier', [1, 10])
def test_crf_nll_equals_exhaustive_enumeration(lr_multiplier):
    emissions, labels, lengths, mask = sequence_case(0)
    crf = ConditionalRandomField(lr_multiplier=lr_multiplier)
    model = build_head(crf, 3)
    trans = np.random.RandomState(1).randn(3, 3).astype('float32')
    crf._trans.assign(trans / lr_multiplier)
    np.testing.assert_allclose(ops.convert_to_numpy(crf.trans), trans, rtol=1e-6)

    y_pred = model.predict([emissions, mask], verbose=0)
    assert (y_pred[~mask] <= -1e11).all() and np.array_equal(y_pred[mask], emissions[mask])
    loss = ops.convert_to_numpy(crf.sparse_loss(labels, y_pred))
    dense = ops.convert_to_numpy(crf.dense_loss(np.eye(3)[labels], y_pred))
    expected = [crf_nll_by_enumeration(emissions[i], trans, labels[i], lengths[i]) for i in range(len(labels))]
    np.testing.assert_allclose(loss, expected, atol=1e-4)
    np.testing.assert_allclose(dense, expected, atol=1e-4)
    assert loss[3] == 0.0  # empty sequence


def test_crf_padding_labels_and_length_do_not_matter():
    emissions, labels, lengths, mask = sequence_case(2)
    crf = ConditionalRandomField()
    model = build_head(crf, 3)
    y_pred = model.predict([emissions, mask], verbose=0)
    base = ops.convert_to_numpy(crf.sparse_loss(labels, y_pred))
    garbage = np.where(mask, labels, 2)
    np.testing.assert_allclose(ops.convert_to_numpy(crf.sparse_loss(garbage, y_pred)), base, atol=1e-6)
    # more padding on the right changes nothing
    longer = model.predict([np.pad(emissions, ((0, 0), (0, 3), (0, 0))), np.pad(mask, ((0, 0), (0, 3)))], verbose=0)
    np.testing.assert_allclose(ops.convert_to_numpy(crf.sparse_loss(np.pad(labels, ((0, 0), (0, 3))), longer)),
                               base, atol=1e-5)


def test_crf_keras_mask_from_embedding_is_used():
    crf = ConditionalRandomField()
    token_ids = keras.Input((None,), dtype='int32')
    x = keras.layers.Embedding(10, 3, mask_zero=True)(token_ids)
    model = keras.Model(token_ids, crf(x))
    out = model.predict(np.array([[1, 2, 0, 0], [3, 4, 5, 6]]), verbose=0)
    assert (out[0, 2:] <= -1e11).all() and (out[0, :2] > -1e3).all() and (out[1] > -1e3).all()


def test_crf_gradients_match_finite_differences():
    rng = np.random.RandomState(3)
    emissions = rng.randn(3, 4, 3)
    labels = rng.randint(0, 3, size=(3, 4))
    lengths = np.array([4, 2, 3])
    mask = np.arange(4)[None] < lengths[:, None]
    crf = ConditionalRandomField(lr_multiplier=2.0)
    crf.build((None, None, 3))
    filled = np.where(mask[:, :, None], emissions, -1e12)

    e_var = tf.Variable(filled.astype('float32'))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(crf.sparse_loss(labels, e_var))
    g_e, g_t = tape.gradient(loss, [e_var, crf._trans.value])
    g_e = np.where(mask[:, :, None], g_e.numpy(), 0.0)

    trans = ops.convert_to_numpy(crf.trans).astype('float64')

    def total(e, t):
        return sum(crf_nll_by_enumeration(e[i], t, labels[i], lengths[i]) for i in range(3))

    eps = 1e-4
    num_e = np.zeros_like(emissions)
    for idx in zip(*np.nonzero(mask)):
        for c in range(3):
            plus, minus = emissions.copy(), emissions.copy()
            plus[idx + (c,)] += eps
            minus[idx + (c,)] -= eps
            num_e[idx + (c,)] = (total(plus, trans) - total(minus, trans)) / (2 * eps)
    num_t = np.zeros((3, 3))
    for i, j in itertools.product(range(3), range(3)):
        plus, minus = trans.copy(), trans.copy()
        plus[i, j] += eps
        minus[i, j] -= eps
        num_t[i, j] = (total(emissions, plus) - total(emissions, minus)) / (2 * eps)
    np.testing.assert_allclose(g_e, num_e, atol=2e-3)
    # the stored variable is trans / 2, so d loss / d stored = 2 · d loss / d trans
    np.testing.assert_allclose(g_t.numpy(), 2 * num_t, atol=4e-3)


def test_crf_accuracy_decode_and_mixed_precision():
    emissions, labels, lengths, mask = sequence_case(4)
    crf = ConditionalRandomField()
    model = build_head(crf, 3)
    y_pred = model.predict([emissions, mask], verbose=0)
    acc = float(ops.convert_to_numpy(crf.sparse_accuracy(labels, y_pred)))
    expected = (emissions.argmax(-1) == labels)[mask].mean()
    assert abs(acc - expected) < 1e-6
    assert abs(float(ops.convert_to_numpy(crf.dense_accuracy(np.eye(3)[labels], y_pred))) - expected) < 1e-6

    trans = ops.convert_to_numpy(crf.trans)
    tags = crf.decode(y_pred)  # mask recovered from the padding fill
    for row, length in enumerate(lengths):
        if length:
            scores = {p: path_score(emissions[row], trans, p) for p in all_paths(3, length)}
            assert tuple(tags[row, :length]) == max(scores, key=scores.get)
        assert (tags[row, length:] == 0).all()

    # a mixed_float16 policy: output float32, finite loss, float32 transitions
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy('mixed_float16')
    try:
        crf16 = ConditionalRandomField()
        model16 = build_head(crf16, 3)
        out = model16.predict([emissions, mask], verbose=0)
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == np.float32 and crf16._trans.dtype == 'float32'
    loss = ops.convert_to_numpy(crf16.sparse_loss(labels, out))
    assert np.isfinite(loss).all()


def test_crf_lr_multiplier_scales_the_adam_step():
    """With Adam the first step moves every parameter by ≈ lr·sign(g); the effective transition
    matrix is m·(stored), so it moves m× as far."""
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 20, size=(8, 6))
    labels = rng.randint(0, 4, size=(8, 6))
    trans0 = rng.randn(4, 4).astype('float32') * 0.1
    moves = {}
    for m in (1, 100):
        keras.utils.set_random_seed(0)
        token_in = keras.Input((None,), dtype='int32')
        x = keras.layers.Embedding(20, 4, mask_zero=True, name='emb')(token_in)
        crf = ConditionalRandomField(lr_multiplier=m)
        model = keras.Model(token_in, crf(x))
        crf._trans.assign(trans0 / m)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=crf.sparse_loss)
        model.train_on_batch(tokens, labels)
        moves[m] = np.abs(ops.convert_to_numpy(crf.trans) - trans0)
    ratio = moves[100].mean() / moves[1].mean()
    assert 90 < ratio < 110, ratio
    assert 0.5e-3 < moves[1].mean() < 1.5e-3


def test_crf_bad_labels_and_shapes_raise():
    emissions, labels, _, mask = sequence_case(0)
    crf = ConditionalRandomField()
    y_pred = build_head(crf, 3).predict([emissions, mask], verbose=0)
    bad = labels.copy()
    bad[0, 0] = 3
    with pytest.raises(ValueError, match=r'labels must be in 0\.\.2'):
        crf.sparse_loss(bad, y_pred)
    with pytest.raises(ValueError, match='built for 3'):
        crf.sparse_loss(labels, np.zeros((5, 4, 5), 'float32'))
    with pytest.raises(ValueError, match='lr_multiplier'):
        ConditionalRandomField(lr_multiplier=0)
    # out-of-range labels inside a compiled training step fail with the same message
    x_in = keras.Input((4, 3))
    crf2 = ConditionalRandomField()
    model = keras.Model(x_in, crf2(x_in))
    model.compile(optimizer='adam', loss=crf2.sparse_loss, jit_compile=False)
    with pytest.raises(Exception, match=r'labels must be in 0\.\.2'):
        model.train_on_batch(emissions, bad)


# ---------------------------------------------------------------------------------------------------
# MEMM
# ---------------------------------------------------------------------------------------------------
def np_log_softmax(x):
    x = x - x.max()
    return x - math.log(np.exp(x).sum())


def memm_direction_logprob(emissions, trans, path):
    """log P(path) of bert4keras' forward MEMM: z_0 = e_0, z_t = (e_t + A[y_{t-1}]) / 2."""
    total = np_log_softmax(emissions[0])[path[0]]
    for t in range(1, len(path)):
        total += np_log_softmax((emissions[t] + trans[path[t - 1]]) / 2)[path[t]]
    return total


def memm_backward_logprob(emissions, trans, path):
    return memm_direction_logprob(emissions[::-1], trans.T, list(path)[::-1])


@pytest.mark.parametrize('hidden_dim,bidirectional', [(None, True), (2, True), (None, False)])
def test_memm_loss_decode_and_normalisation_by_enumeration(hidden_dim, bidirectional):
    emissions, labels, lengths, mask = sequence_case(6, b=4, n=4, num_labels=3)
    emissions = emissions.astype('float64')
    memm = MaximumEntropyMarkovModel(hidden_dim=hidden_dim, bidirectional=bidirectional, lr_multiplier=3)
    model = build_head(memm, 3)
    y_pred = model.predict([emissions.astype('float32'), mask], verbose=0)
    trans = ops.convert_to_numpy(memm.trans).astype('float64')
    if hidden_dim:
        left = ops.convert_to_numpy(memm.l_trans)
        right = ops.convert_to_numpy(memm.r_trans)
        np.testing.assert_allclose(trans, left @ right.T, rtol=1e-5)

    # local normalisation: each direction's path probabilities sum to 1 over all C**L paths
    for row, length in enumerate(lengths):
        if length:
            forward = [memm_direction_logprob(emissions[row, :length], trans, p) for p in all_paths(3, length)]
            backward = [memm_backward_logprob(emissions[row, :length], trans, p) for p in all_paths(3, length)]
            assert abs(np_logsumexp(forward)) < 1e-9 and abs(np_logsumexp(backward)) < 1e-9

    # loss = mean over directions of (−Σ log p) / (number of real tokens)
    tokens = lengths.sum()
    fwd = -sum(memm_direction_logprob(emissions[r, :L], trans, labels[r, :L]) for r, L in enumerate(lengths) if L)
    bwd = -sum(memm_backward_logprob(emissions[r, :L], trans, labels[r, :L]) for r, L in enumerate(lengths) if L)
    expected = (fwd + bwd) / 2 / tokens if bidirectional else fwd / tokens
    assert abs(float(ops.convert_to_numpy(memm.sparse_loss(labels, y_pred))) - expected) < 1e-4
    assert abs(float(ops.convert_to_numpy(memm.dense_loss(np.eye(3)[labels], y_pred))) - expected) < 1e-4

    # exact decode: the path maximising the model's own log-likelihood
    tags = memm.decode(y_pred)
    for row, length in enumerate(lengths):
        if not length:
            assert (tags[row] == 0).all()
            continue

        def objective(p):
            value = memm_direction_logprob(emissions[row, :length], trans, p)
            if bidirectional:
                value += memm_backward_logprob(emissions[row, :length], trans, p)
            return value

        best = max(all_paths(3, length), key=objective)
        assert tuple(tags[row, :length]) == best


def test_memm_accuracy_is_teacher_forced_argmax():
    emissions, labels, lengths, mask = sequence_case(8, b=4, n=4)
    memm = MaximumEntropyMarkovModel(bidirectional=False)
    y_pred = build_head(memm, 3).predict([emissions, mask], verbose=0)
    trans = ops.convert_to_numpy(memm.trans)
    hits = total = 0
    for r, length in enumerate(lengths):
        for t in range(length):
            z = emissions[r, t] if t == 0 else (emissions[r, t] + trans[labels[r, t - 1]]) / 2
            hits += int(z.argmax() == labels[r, t])
            total += 1
    assert abs(float(ops.convert_to_numpy(memm.sparse_accuracy(labels, y_pred))) - hits / total) < 1e-6


def test_memm_bad_arguments():
    with pytest.raises(ValueError, match='hidden_dim'):
        MaximumEntropyMarkovModel(hidden_dim=0)
    emissions, labels, _, mask = sequence_case(0)
    memm = MaximumEntropyMarkovModel()
    y_pred = build_head(memm, 3).predict([emissions, mask], verbose=0)
    with pytest.raises(ValueError, match='labels must be in'):
        memm.sparse_loss(labels - 1, y_pred)


# ---------------------------------------------------------------------------------------------------
# GlobalPointer / EfficientGlobalPointer
# ---------------------------------------------------------------------------------------------------
def np_rope(x):
    """Rotate pairs (2i, 2i+1) of the last axis by pos·10000^(-2i/d); positions on axis 1."""
    n, d = x.shape[1], x.shape[-1]
    out = np.empty_like(x)
    for pos in range(n):
        for i in range(d // 2):
            theta = pos * 10000.0 ** (-2 * i / d)
            a, b = x[:, pos, ..., 2 * i], x[:, pos, ..., 2 * i + 1]
            out[:, pos, ..., 2 * i] = a * math.cos(theta) - b * math.sin(theta)
            out[:, pos, ..., 2 * i + 1] = b * math.cos(theta) + a * math.sin(theta)
    return out


def np_mask_spans(scores, mask, tril):
    scores = scores.copy()
    n = scores.shape[-1]
    for b in range(scores.shape[0]):
        for i in range(n):
            for j in range(n):
                if not (mask[b, i] and mask[b, j]) or (tril and i > j):
                    scores[b, :, i, j] = -1e12
    return scores


def np_global_pointer(x, kernel, bias, heads, d, rope, mask, tril):
    h = x @ kernel + bias  # (b, n, heads·2d)
    h = h.reshape(x.shape[0], x.shape[1], heads, 2 * d)
    q, k = h[..., :d], h[..., d:]
    if rope:
        q, k = np_rope(q), np_rope(k)
    scores = np.einsum('bmhd,bnhd->bhmn', q, k) / math.sqrt(d)
    return np_mask_spans(scores, mask, tril)


def np_efficient_global_pointer(x, p_kernel, p_bias, q_kernel, q_bias, heads, d, rope, mask, tril):
    h = x @ p_kernel + p_bias  # (b, n, 2d)
    q, k = h[..., 0::2], h[..., 1::2]
    if rope:
        q, k = np_rope(q), np_rope(k)
    qk = np.einsum('bmd,bnd->bmn', q, k) / math.sqrt(d)
    bias = (h @ q_kernel + q_bias) / 2  # (b, n, 2·heads)
    scores = np.empty((x.shape[0], heads) + qk.shape[1:])
    for a in range(heads):
        scores[:, a] = qk + bias[:, None, :, 2 * a] + bias[:, :, None, 2 * a + 1]
    return np_mask_spans(scores, mask, tril)


def span_batch(seed, b=3, n=6, dim=8):
    rng = np.random.RandomState(seed)
    x = rng.randn(b, n, dim).astype('float32')
    mask = np.arange(n)[None] < np.array([n, 4, 2])[:b, None]
    return x, mask


@pytest.mark.parametrize('rope,tril', [(True, True), (False, False), (True, False)])
def test_global_pointer_matches_numpy(rope, tril):
    x, mask = span_batch(0)
    layer = GlobalPointer(heads=3, head_size=4, RoPE=rope, tril_mask=tril)
    x_in, m_in = keras.Input((None, 8)), keras.Input((None,), dtype='bool')
    model = keras.Model([x_in, m_in], layer([x_in, m_in]))
    rng = np.random.RandomState(1)
    layer.dense.bias.assign(rng.randn(24).astype('float32') * 0.1)
    out = model.predict([x, mask], verbose=0)
    kernel, bias = [ops.convert_to_numpy(w).astype('float64') for w in (layer.dense.kernel, layer.dense.bias)]
    expected = np_global_pointer(x.astype('float64'), kernel, bias, 3, 4, rope, mask, tril)
    assert out.shape == (3, 3, 6, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('rope,tril', [(True, True), (False, False)])
def test_efficient_global_pointer_matches_numpy(rope, tril):
    x, mask = span_batch(2)
    layer = EfficientGlobalPointer(heads=2, head_size=4, RoPE=rope, tril_mask=tril)
    x_in, m_in = keras.Input((None, 8)), keras.Input((None,), dtype='bool')
    model = keras.Model([x_in, m_in], layer([x_in, m_in]))
    rng = np.random.RandomState(3)
    layer.p_dense.bias.assign(rng.randn(8).astype('float32') * 0.1)
    layer.q_dense.bias.assign(rng.randn(4).astype('float32') * 0.1)
    out = model.predict([x, mask], verbose=0)
    weights = [ops.convert_to_numpy(w).astype('float64') for w in
               (layer.p_dense.kernel, layer.p_dense.bias, layer.q_dense.kernel, layer.q_dense.bias)]
    expected = np_efficient_global_pointer(x.astype('float64'), *weights, 2, 4, rope, mask, tril)
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)


def test_global_pointer_uses_keras_mask_and_padding_never_leaks():
    token_in = keras.Input((None,), dtype='int32')
    h = keras.layers.Embedding(30, 8, mask_zero=True)(token_in)
    model = keras.Model(token_in, GlobalPointer(2, 4)(h))
    tokens = np.array([[5, 6, 7, 0, 0]])
    out = model.predict(tokens, verbose=0)
    assert (out[0, :, 3:, :] == -1e12).all() and (out[0, :, :, 3:] == -1e12).all()
    assert (out[0, :, 1, 0] == -1e12).all() and (out[0, :, :3, :3][:, np.triu_indices(3)[0], np.triu_indices(3)[1]]
                                                 > -1e6).all()
    shorter = model.predict(tokens[:, :3], verbose=0)
    np.testing.assert_allclose(out[:, :, :3, :3], shorter, atol=1e-6)


def test_pointer_bad_arguments():
    with pytest.raises(ValueError, match='heads'):
        GlobalPointer(0, 4)
    with pytest.raises(ValueError, match='head_size'):
        GlobalPointer(2, 5)  # odd with RoPE
    with pytest.raises(ValueError, match='head_size'):
        EfficientGlobalPointer(2, -4)
    GlobalPointer(2, 5, RoPE=False)  # odd is fine without rotations


def test_am_softmax_dense_is_cosine():
    layer = AMSoftmaxDense(5)
    x = np.random.RandomState(0).randn(4, 6).astype('float32')
    out = ops.convert_to_numpy(layer(x))
    kernel = ops.convert_to_numpy(layer.kernel)
    expected = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
    np.testing.assert_allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match='units'):
        AMSoftmaxDense(0)


# ---------------------------------------------------------------------------------------------------
# Serialization
# ---------------------------------------------------------------------------------------------------
def test_save_load_round_trip_crf_memm_gp(tmp_path):
    token_in = keras.Input((None,), dtype='int32')
    h = keras.layers.Embedding(40, 8, mask_zero=True)(token_in)
    tags = keras.layers.Dense(5)(h)
    crf_out = ConditionalRandomField(lr_multiplier=100, name='crf')(tags)
    memm_out = MaximumEntropyMarkovModel(hidden_dim=2, lr_multiplier=10, name='memm')(tags)
    gp_out = GlobalPointer(2, 4, name='gp')(h)
    egp_out = EfficientGlobalPointer(3, 4, tril_mask=False, name='egp')(h)
    cos_out = AMSoftmaxDense(4, name='am')(keras.layers.GlobalAveragePooling1D()(h))
    model = keras.Model(token_in, [crf_out, memm_out, gp_out, egp_out, cos_out])
    tokens = np.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]])
    before = model.predict(tokens, verbose=0)
    path = str(tmp_path / 'heads.keras')
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.predict(tokens, verbose=0)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    crf = loaded.get_layer('crf')
    assert crf.lr_multiplier == 100
    np.testing.assert_allclose(ops.convert_to_numpy(crf.trans), ops.convert_to_numpy(model.get_layer('crf').trans))
    assert loaded.get_layer('memm').hidden_dim == 2 and loaded.get_layer('egp').tril_mask is False
    labels = np.array([[1, 2, 3, 4, 0], [0, 1, 0, 0, 0]])
    np.testing.assert_allclose(ops.convert_to_numpy(crf.sparse_loss(labels, after[0])),
                               ops.convert_to_numpy(model.get_layer('crf').sparse_loss(labels, before[0])))


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'])
def test_pointers_under_16bit_policies_stay_finite(policy):
    x, mask = span_batch(5)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        x_in, m_in = keras.Input((None, 8)), keras.Input((None,), dtype='bool')
        outputs = [GlobalPointer(2, 4)([x_in, m_in]), EfficientGlobalPointer(2, 4)([x_in, m_in])]
        model = keras.Model([x_in, m_in], outputs)
    finally:
        keras.config.set_dtype_policy(previous)
    for out in model.predict([x, mask], verbose=0):
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert (out[1, :, 4:, :] == -1e12).all() and (out[:, :, 1, 0] == -1e12).all()


def test_compiled_crf_model_reloads_without_compile_and_retrains(tmp_path):
    token_in = keras.Input((None,), dtype='int32')
    crf = ConditionalRandomField(lr_multiplier=10)
    model = keras.Model(token_in, crf(keras.layers.Embedding(10, 4, mask_zero=True)(token_in)))
    model.compile(optimizer='adam', loss=crf.sparse_loss, metrics=[crf.sparse_accuracy])
    tokens, labels = np.array([[1, 2, 3, 0]]), np.array([[1, 2, 3, 0]])
    model.fit(tokens, labels, verbose=0)
    path = str(tmp_path / 'crf.keras')
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(loaded.predict(tokens, verbose=0), model.predict(tokens, verbose=0))
    loaded_crf = loaded.layers[-1]
    loaded.compile(optimizer='adam', loss=loaded_crf.sparse_loss)
    assert np.isfinite(loaded.train_on_batch(tokens, labels))
