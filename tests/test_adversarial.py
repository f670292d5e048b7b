"""FGM, gradient penalty and VAT train steps against hand computations on a toy model.

Toy model: token ids (4, 3) → Embedding 'Embedding-Token' (7×3) → mean over positions → Dense(3) →
softmax; SGD without momentum, so one step is θ ← θ − lr·g and everything can be written in numpy.
"""
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.adversarial import (
    AdversarialModel, adversarial_training, gradient_penalty_training, remove_adversarial_training,
    search_layer, virtual_adversarial_training,
)
from bert4keras_ext.backend import keras

V, D, C, B, N = 7, 3, 3, 4, 3
IDS = np.array([[1, 2, 2], [3, 4, 5], [6, 1, 0], [2, 2, 2]])
LABELS = np.array([0, 2, 1, 1])


def toy_model(seed=0):
    rng = np.random.RandomState(seed)
    inputs = keras.Input((N,), dtype='int32')
    x = keras.layers.Embedding(V, D, name='Embedding-Token')(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(C, activation='softmax', name='Classifier')(x)
    model = keras.Model(inputs, outputs)
    weights = {'E': rng.randn(V, D) * 0.8, 'W': rng.randn(D, C), 'c': rng.randn(C) * 0.1}
    model.set_weights([weights['E'], weights['W'], weights['c']])
    return model, {k: v.astype('float32').astype('float64') for k, v in weights.items()}


# ------------------------------------------------------------------------------------------------
# numpy forward / backward of the toy model
# ------------------------------------------------------------------------------------------------
def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def forward(w, ids=IDS):
    h = w['E'][ids].mean(1)
    return h, softmax(h @ w['W'] + w['c'])


def cross_entropy(w, labels=LABELS):
    _, p = forward(w)
    return -np.log(p[np.arange(len(labels)), labels]).mean()


def kl(w, targets):
    _, q = forward(w)
    return (targets * np.log(targets / q)).sum(-1).mean()


def grads_from_logit_grad(w, dz, ids=IDS):
    """Gradients of all weights given ∂L/∂logits (b, C), plus the per-position rows ∂L/∂e_{b,i}."""
    h, _ = forward(w, ids)
    rows = np.repeat((dz @ w['W'].T)[:, None, :] / ids.shape[1], ids.shape[1], axis=1)  # (b, n, D)
    dE = np.zeros_like(w['E'])
    np.add.at(dE, ids, rows)
    return {'E': dE, 'W': h.T @ dz, 'c': dz.sum(0)}, rows


def ce_grads(w, labels=LABELS):
    _, p = forward(w)
    dz = (p - np.eye(C)[labels]) / len(labels)
    return grads_from_logit_grad(w, dz)


def kl_grads(w, targets):
    _, q = forward(w)
    return grads_from_logit_grad(w, (q - targets) / len(targets))


def normalized(g, scale):
    return scale * g / (np.sqrt((g ** 2).sum()) + 1e-8)


def sgd(w, grads, lr):
    return {k: w[k] - lr * grads[k] for k in w}


def model_weights(model):
    E, W, c = (v.numpy().astype('float64') for v in model.weights)
    return {'E': E, 'W': W, 'c': c}


def assert_weights(model, expected, tol=1e-6):
    actual = model_weights(model)
    for k in expected:
        diff = np.abs(actual[k] - expected[k]).max()
        assert diff <= tol, '%s: max |diff| %.3g' % (k, diff)


# ------------------------------------------------------------------------------------------------
# FGM
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('jit_compile', [False, True])
def test_fgm_step_equals_the_hand_perturbed_step(jit_compile):
    model, w0 = toy_model()
    model.compile(keras.optimizers.SGD(0.1), loss='sparse_categorical_crossentropy', jit_compile=jit_compile)
    assert adversarial_training(model, 'Embedding-Token', epsilon=0.5) is model
    logs = model.train_on_batch(IDS, LABELS, return_dict=True)

    g, _ = ce_grads(w0)
    perturbed = dict(w0, E=w0['E'] + normalized(g['E'], 0.5))
    assert abs(logs['loss'] - cross_entropy(perturbed)) <= 1e-6  # the adversarial loss is what is reported
    g_adv, _ = ce_grads(perturbed)
    # every weight (the embedding matrix included) moved by the optimizer update of the adversarial
    # gradient, from where it started: the perturbation itself was removed
    assert_weights(model, sgd(w0, g_adv, 0.1))


def test_fgm_leaves_the_embedding_exactly_unchanged_without_an_update():
    model, _ = toy_model()
    before = model.get_layer('Embedding-Token').embeddings.numpy().copy()
    model.compile(keras.optimizers.SGD(0.0), loss='sparse_categorical_crossentropy')
    adversarial_training(model, epsilon=2.0)
    model.fit(IDS, LABELS, batch_size=2, epochs=2, verbose=0)
    assert np.array_equal(model.get_layer('Embedding-Token').embeddings.numpy(), before)


def test_fgm_trains_with_fit_and_a_derived_optimizer():
    from bert4keras_ext.optimizers import AdamW
    model, _ = toy_model()
    model.compile(AdamW(0.05, weight_decay_rate=0.01), loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    adversarial_training(model, epsilon=0.1)
    history = model.fit(np.tile(IDS, (8, 1)), np.tile(LABELS, 8), batch_size=8, epochs=5, verbose=0)
    assert history.history['loss'][-1] < history.history['loss'][0]
    assert 'accuracy' in history.history


# ------------------------------------------------------------------------------------------------
# Gradient penalty
# ------------------------------------------------------------------------------------------------
def gp_objective(w, epsilon):
    """L + ½ε Σ ‖∂L/∂e_{b,i}‖² with L the batch-mean loss: bert4keras' loss_with_gradient_penalty, which
    penalised K.gradients(K.mean(losses), [E])[0].values, the rows of the batch mean's gradient."""
    _, rows = ce_grads(w)
    return cross_entropy(w) + 0.5 * epsilon * (rows ** 2).sum()


def numerical_gradient(fn, w, h=1e-5):
    grads = {}
    for k in w:
        grads[k] = np.zeros_like(w[k])
        for index in np.ndindex(w[k].shape):
            plus, minus = {n: v.copy() for n, v in w.items()}, {n: v.copy() for n, v in w.items()}
            plus[k][index] += h
            minus[k][index] -= h
            grads[k][index] = (fn(plus) - fn(minus)) / (2 * h)
    return grads


@pytest.mark.parametrize('jit_compile', [False, True])
def test_gradient_penalty_value_and_update(jit_compile):
    model, w0 = toy_model(1)
    model.compile(keras.optimizers.SGD(0.1), loss='sparse_categorical_crossentropy', jit_compile=jit_compile)
    gradient_penalty_training(model, epsilon=5.0)
    logs = model.train_on_batch(IDS, LABELS, return_dict=True)
    expected_loss = gp_objective(w0, 5.0)
    assert expected_loss - cross_entropy(w0) > 0.01  # the penalty is not negligible here
    assert abs(logs['loss'] - expected_loss) <= 1e-6
    # second-order gradients through the penalty, checked by central differences of the numpy objective
    assert_weights(model, sgd(w0, numerical_gradient(lambda w: gp_objective(w, 5.0), w0), 0.1))


# ------------------------------------------------------------------------------------------------
# Virtual adversarial training
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('iters', [0, 1, 2])
def test_vat_step_equals_the_hand_computation(iters):
    model, w0 = toy_model(2)
    model.compile(keras.optimizers.SGD(0.1), loss='kld')
    virtual_adversarial_training(model, epsilon=0.7, xi=5.0, iters=iters, seed=123)
    logs = model.train_on_batch(IDS, np.zeros((B, C)), return_dict=True)  # labels are ignored

    _, targets = forward(w0)
    # the noise: TF's stateless normal at (seed, optimizer step) — the one draw the algorithm starts from
    u = tf.random.stateless_normal((V, D), seed=tf.constant([123, 0], 'int64')).numpy().astype('float64')
    for _ in range(iters):
        u = kl_grads(dict(w0, E=w0['E'] + normalized(u, 5.0)), targets)[0]['E']
    perturbed = dict(w0, E=w0['E'] + normalized(u, 0.7))
    assert abs(logs['loss'] - kl(perturbed, targets)) <= 1e-6
    assert kl(perturbed, targets) > 1e-4
    assert_weights(model, sgd(w0, kl_grads(perturbed, targets)[0], 0.1))


def test_vat_fits_on_unlabeled_inputs_with_xla():
    model, _ = toy_model(3)
    model.compile(keras.optimizers.Adam(0.01), loss='kld', jit_compile=True)
    virtual_adversarial_training(model, iters=1)
    history = model.fit(np.tile(IDS, (4, 1)), batch_size=4, epochs=2, verbose=0)  # x only
    assert np.all(np.isfinite(history.history['loss']))


# ------------------------------------------------------------------------------------------------
# Saving, unhooking, errors, real BERT
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('hook', ['fgm', 'gradient_penalty', 'vat'])
def test_hooked_model_saves_and_reloads(tmp_path, hook):
    model, _ = toy_model(4)
    model.compile(keras.optimizers.Adam(0.01), loss='kld' if hook == 'vat' else 'sparse_categorical_crossentropy')
    if hook == 'vat':
        virtual_adversarial_training(model, epsilon=0.5, xi=3, iters=1, seed=9)
        y = np.eye(C)[LABELS]
    else:
        adversarial_training(model, epsilon=0.4, method=hook)
        y = LABELS
    model.fit(IDS, y, batch_size=4, epochs=1, verbose=0)
    path = str(tmp_path / 'hooked.keras')
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded).__name__ == 'AdversarialFunctional' and isinstance(loaded, AdversarialModel)
    assert loaded.get_config()['bert4keras_adversarial'] == model.get_config()['bert4keras_adversarial']
    np.testing.assert_allclose(loaded.predict(IDS, verbose=0), model.predict(IDS, verbose=0), atol=1e-6)
    model.fit(IDS, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    loaded.fit(IDS, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_remove_adversarial_training_restores_plain_steps():
    model, w0 = toy_model()
    model.compile(keras.optimizers.SGD(0.1), loss='sparse_categorical_crossentropy')
    adversarial_training(model, epsilon=0.5)
    assert remove_adversarial_training(model) is model
    assert type(model).__name__ == 'Functional' and not isinstance(model, AdversarialModel)
    model.train_on_batch(IDS, LABELS)
    assert_weights(model, sgd(w0, ce_grads(w0)[0], 0.1))


def test_bad_arguments():
    model, _ = toy_model()
    with pytest.raises(ValueError, match="no layer named 'Embedding-Word'.*Embedding-Token"):
        adversarial_training(model, 'Embedding-Word')
    with pytest.raises(ValueError, match='no `embeddings` matrix'):
        adversarial_training(model, 'Classifier')
    with pytest.raises(ValueError, match='method'):
        adversarial_training(model, method='pgd')
    with pytest.raises(ValueError, match='epsilon'):
        adversarial_training(model, epsilon=-1)
    with pytest.raises(ValueError, match='iters'):
        virtual_adversarial_training(model, iters=1.5)


def test_bert_with_nested_backbone(tiny_bert):
    """FGM on a BERT built by build_transformer_model and nested as a layer."""
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], dropout_rate=0.0)
    token_ids, segment_ids = keras.Input((None,), dtype='int32'), keras.Input((None,), dtype='int32')
    hidden = bert([token_ids, segment_ids])
    outputs = keras.layers.Dense(2, activation='softmax')(ExtractToken(0)(hidden))
    model = keras.Model([token_ids, segment_ids], outputs)
    assert search_layer(model, 'Embedding-Token') is bert.get_layer('Embedding-Token')
    before = bert.get_layer('Embedding-Token').embeddings.numpy().copy()
    model.compile(keras.optimizers.SGD(0.0), loss='sparse_categorical_crossentropy')
    adversarial_training(model, 'Embedding-Token', epsilon=0.5)
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 100, (4, 10))
    tokens[2:, 7:] = 0
    logs = model.train_on_batch([tokens, np.zeros_like(tokens)], np.array([0, 1, 1, 0]), return_dict=True)
    assert np.isfinite(logs['loss'])
    assert np.array_equal(bert.get_layer('Embedding-Token').embeddings.numpy(), before)
