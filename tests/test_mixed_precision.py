"""BERT from `build_transformer_model` under the `mixed_float16` / `mixed_bfloat16` policies.

Outputs must be finite (masks use finite large negatives; softmax in float32) and close to the float32
model loaded from the same checkpoint; a training step must run with Keras' dynamic loss scaling,
including with this package's derived optimizers and adversarial training.
"""
import numpy as np
import pytest

from bert4keras_ext.backend import keras
from bert4keras_ext.layers import ExtractToken
from bert4keras_ext.models import build_transformer_model

# max |mixed − float32| relative to max |float32|: float16 has a 10-bit mantissa, bfloat16 a 7-bit one
TOLERANCE = {'mixed_float16': 1e-2, 'mixed_bfloat16': 5e-2}
COMPUTE_DTYPE = {'mixed_float16': 'float16', 'mixed_bfloat16': 'bfloat16'}


@pytest.fixture
def policy(request):
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy('float32')


def batch():
    rng = np.random.RandomState(0)
    token_ids = rng.randint(1, 100, (4, 12))
    token_ids[2:, 8:] = 0  # padded rows
    token_ids[3, 3:] = 0   # mostly padding
    segment_ids = np.zeros_like(token_ids)
    segment_ids[:, 5:] = 1
    segment_ids[token_ids == 0] = 0
    return token_ids, segment_ids


def run(model):
    outputs = model([keras.ops.convert_to_tensor(x) for x in batch()], training=False)
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


def float32_outputs(tiny_bert, **kwargs):
    keras.config.set_dtype_policy('float32')
    return run(build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], **kwargs))


@pytest.mark.parametrize('policy', ['mixed_float16', 'mixed_bfloat16'], indirect=True)
@pytest.mark.parametrize('options', [
    dict(application='encoder'),
    dict(application='encoder', with_pool=True, with_mlm=True),
    dict(application='unilm', with_mlm='linear'),
], ids=['sequence', 'pool+mlm', 'unilm-logits'])
def test_outputs_are_finite_and_close_to_float32(tiny_bert, policy, options):
    expected = float32_outputs(tiny_bert, **options)
    keras.config.set_dtype_policy(policy)
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], **options)
    assert all(keras.backend.standardize_dtype(w.dtype) == 'float32' for w in model.weights)
    outputs = run(model)
    if not isinstance(outputs, list):
        outputs, expected = [outputs], [expected]
    for output, reference in zip(outputs, expected):
        assert np.isfinite(output.astype('float32')).all()
        diff = np.abs(output.astype('float32') - reference).max()
        assert diff <= TOLERANCE[policy] * np.abs(reference).max(), (policy, diff)
    if options.get('with_mlm') is True:  # probabilities stay float32 and normalised
        assert outputs[-1].dtype == np.float32
        np.testing.assert_allclose(outputs[-1].sum(-1), 1.0, atol=1e-5)
    elif options['application'] == 'encoder' and 'with_pool' not in options:
        assert outputs[0].dtype == COMPUTE_DTYPE[policy]


def classifier(tiny_bert):
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], dropout_rate=0.0,
                                   attention_dropout_rate=0.0, num_hidden_layers=1)
    cls = ExtractToken(0)(bert.output)
    # the head's probabilities in float32, as the Keras mixed-precision guide recommends
    probs = keras.layers.Dense(2, activation='softmax', dtype='float32', name='Classifier')(cls)
    return keras.Model(bert.inputs, probs)


@pytest.mark.parametrize('policy', ['mixed_float16'], indirect=True)
@pytest.mark.parametrize('variant', ['adam', 'derived+fgm'])
def test_loss_scaled_training_step(tiny_bert, policy, variant):
    from bert4keras_ext.adversarial import adversarial_training
    from bert4keras_ext.optimizers import extend_with_lookahead, extend_with_weight_decay, Adam
    model = classifier(tiny_bert)
    if variant == 'adam':
        optimizer = keras.optimizers.Adam(1e-3)
    else:
        optimizer = extend_with_lookahead(extend_with_weight_decay(Adam))(
            1e-3, weight_decay_rate=0.01, exclude_from_weight_decay=['Norm', 'bias'], steps_per_slow_update=2)
    model.compile(optimizer=optimizer, loss='sparse_categorical_crossentropy')
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # compile adds dynamic loss scaling
    if variant == 'derived+fgm':
        adversarial_training(model, epsilon=0.5)
    before = [w.numpy().copy() for w in model.trainable_weights]
    labels = np.array([0, 1, 1, 0])
    scales = []
    # The tiny random BERT overflows float16 gradients at the initial scale 2**15 (its embeddings are
    # tiny and LayerNorm amplifies their gradients), so the first steps are skipped and the scale halved
    # until updates go through: exactly the dynamic loss scaling under test.
    for _ in range(8):
        logs = model.train_on_batch(list(batch()), labels, return_dict=True)
        scales.append(float(model.optimizer.dynamic_scale))
        assert np.isfinite(logs['loss'])
        if int(model.optimizer.iterations) >= 2:
            break
    assert int(model.optimizer.iterations) >= 2, scales
    after = [w.numpy() for w in model.trainable_weights]
    assert all(np.isfinite(w).all() for w in after)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # every weight trained
    assert 1.0 < scales[-1] <= 2.0 ** 15


@pytest.mark.parametrize('policy', ['mixed_bfloat16'], indirect=True)
def test_bfloat16_training_step(tiny_bert, policy):
    model = classifier(tiny_bert)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='sparse_categorical_crossentropy')
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)  # bf16 needs no loss scale
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = model.train_on_batch(list(batch()), np.array([0, 1, 1, 0]), return_dict=True)
    assert np.isfinite(logs['loss'])
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
