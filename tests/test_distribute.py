"""Data-parallel training under tf.distribute.MirroredStrategy equals single-device training.

The CPU is split into two logical devices, which must happen before TensorFlow initialises its
devices, so the comparison runs in a fresh interpreter. One training step on a global batch of 8
(4 per replica) must give the same loss and weights as the same step on one device:
* a BERT classifier built by `build_transformer_model`, plain Keras Adam;
* a small embedding classifier with a derived optimizer (weight decay, layer adaptation, lazy rows,
  lookahead, EMA) and FGM adversarial training, whose perturbation is computed from the gradient
  summed over replicas and applied to every replica's copy of the embedding matrix.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(r'''
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    from bert4keras_ext import optimizers as O
    from bert4keras_ext.adversarial import adversarial_training
    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model

    paths = make_random_checkpoint(sys.argv[1], seed=1, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                   intermediate_size=48, max_position_embeddings=24)
    rng = np.random.RandomState(0)
    tokens = rng.randint(1, 100, (8, 10))
    tokens[:, 0] = 2
    tokens[5:, 7:] = 0
    segments = (np.arange(10) >= 5).astype('int64')[None].repeat(8, 0) * (tokens > 0)
    labels = rng.randint(0, 2, 8)

    def bert_classifier():
        bert = build_transformer_model(paths['config'], paths['checkpoint'], dropout_rate=0.0,
                                       attention_dropout_rate=0.0)
        probs = keras.layers.Dense(2, activation='softmax', name='Classifier')(ExtractToken(0)(bert.output))
        return keras.Model(bert.inputs, probs)

    def embedding_classifier():
        inputs = keras.Input((10,), dtype='int32')
        x = keras.layers.Embedding(100, 8, name='Embedding-Token')(inputs)
        x = keras.layers.GlobalAveragePooling1D()(x)
        x = keras.layers.Dense(8, activation='tanh', name='Transformer-0-FeedForward')(x)
        return keras.Model(inputs, keras.layers.Dense(2, activation='softmax', name='Classifier')(x))

    Derived = O.extend_with_exponential_moving_average(O.extend_with_lookahead(O.extend_with_lazy_optimization(
        O.extend_with_layer_adaptation(O.extend_with_weight_decay(O.Adam)))))

    def derived_optimizer():
        return Derived(0.01, weight_decay_rate=0.01, exclude_from_weight_decay=['bias'],
                       exclude_from_layer_adaptation=['bias'], include_in_lazy_optimization=['Embedding'],
                       steps_per_slow_update=1, ema_momentum=0.9)

    CASES = {
        'bert_adam': (bert_classifier, lambda: keras.optimizers.Adam(1e-3), False, ((tokens, segments), labels)),
        'derived_fgm': (embedding_classifier, derived_optimizer, True, (tokens, labels)),
    }

    def one_step(case, strategy, initial):
        make_model, make_optimizer, fgm, data = CASES[case]
        with strategy.scope():
            model = make_model()
            if initial is not None:
                model.set_weights(initial)
            model.compile(optimizer=make_optimizer(), loss='sparse_categorical_crossentropy')
            if fgm:
                adversarial_training(model, epsilon=0.5)
        initial = [w.numpy() for w in model.weights]
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(8)  # one global batch, split 4 + 4
        loss = model.fit(dataset, epochs=1, verbose=0).history['loss'][0]
        return initial, loss, model

    mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
    results = {'replicas': mirrored.num_replicas_in_sync}
    for case in CASES:
        initial, single_loss, single = one_step(case, tf.distribute.get_strategy(), None)
        _, mirrored_loss, distributed = one_step(case, mirrored, initial)
        weights = max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(single.weights, distributed.weights))
        moved = max(float(np.abs(a.numpy() - b).max()) for a, b in zip(single.weights, initial))
        entry = {'single_loss': single_loss, 'mirrored_loss': mirrored_loss, 'weight_diff': weights, 'moved': moved}
        if case == 'derived_fgm':
            optimizer_diff = max(float(np.abs(a.numpy() - b.numpy()).max())
                                 for a, b in zip(single.optimizer.variables, distributed.optimizer.variables))
            entry['optimizer_state_diff'] = optimizer_diff
        results[case] = entry
    print('RESULTS ' + json.dumps(results))
''')


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='-1')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env['PYTHONPATH'] = root + os.pathsep + env.get('PYTHONPATH', '')
    proc = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path_factory.mktemp('ckpt'))], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('RESULTS ')]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len('RESULTS '):])


def test_two_logical_devices(results):
    assert results['replicas'] == 2


@pytest.mark.parametrize('case', ['bert_adam', 'derived_fgm'])
def test_mirrored_step_equals_single_device_step(results, case):
    r = results[case]
    assert r['moved'] > 1e-4  # the step did something
    assert abs(r['single_loss'] - r['mirrored_loss']) <= 1e-5 * max(1.0, abs(r['single_loss']))
    assert r['weight_diff'] <= 1e-6, r
    if 'optimizer_state_diff' in r:  # slots, slow weights, averages, step counter
        assert r['optimizer_state_diff'] <= 1e-6, r
