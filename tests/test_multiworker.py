"""Two-worker `tf.distribute.MultiWorkerMirroredStrategy` training equals one process.

Two worker processes on localhost (free ports, `TF_CONFIG`, CPU only) each build the same tiny BERT
classifier inside the strategy's scope and train 2 steps of `model.fit` on global batches of 8 (the
dataset is sharded by element, so each worker computes 4 examples per step, as docs/distributed.md
recommends). The reference is a single process training the same model on the same global batches.
Both workers must end with the same weights, equal to the reference's, and report the same losses.
Plain Keras 3.15 fails here at the first batch; the package's import installs the fix
(`bert4keras_ext._tf_private.fix_multi_worker_fit`), which the workers get by importing the package.
"""
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

STEPS = 2
GLOBAL_BATCH = 8
TIMEOUT = 150  # seconds for both workers together: startup + one traced train function + 2 steps
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = dict(seed=1, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
             max_position_embeddings=16)

# Shared by the workers and the reference (exec'd in both): data, model, dataset, training.
COMMON = textwrap.dedent(r'''
    import numpy as np

    def make_data(steps, global_batch):
        rng = np.random.RandomState(0)
        n = steps * global_batch
        tokens = rng.randint(5, 100, (n, 10))
        tokens[:, 0] = 2
        tokens[n // 2:, 7:] = 0
        segments = ((np.arange(10) >= 5)[None] & (tokens > 0)).astype('float32')
        return (tokens.astype('float32'), segments), rng.randint(0, 2, n)

    def build_classifier(paths):
        import keras
        from bert4keras_ext.layers import ExtractToken
        from bert4keras_ext.models import build_transformer_model
        bert = build_transformer_model(paths['config'], paths['checkpoint'], dropout_rate=0.0,
                                       attention_dropout_rate=0.0)
        dense = keras.layers.Dense(2, activation='softmax', name='Classifier',
                                   kernel_initializer=keras.initializers.GlorotUniform(seed=3))
        model = keras.Model(bert.inputs, dense(ExtractToken(0)(bert.output)))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss='sparse_categorical_crossentropy')
        return model

    def train(model, data, global_batch):
        import keras
        import tensorflow as tf
        options = tf.data.Options()
        # a generator- or tensor-fed dataset has no files to split: each worker takes its share of
        # every global batch (docs/distributed.md)
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = tf.data.Dataset.from_tensor_slices(data).batch(global_batch).with_options(options)
        losses = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs['loss']))  # running mean over the epoch's steps so far

        model.fit(dataset, epochs=1, verbose=0, callbacks=[Record()])
        return losses
''')

WORKER = COMMON + textwrap.dedent(r'''
    import json, os, sys
    import tensorflow as tf

    # first, before any other TensorFlow call: the strategy joins the cluster named in TF_CONFIG
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=float(sys.argv[3])))
    paths, out = json.loads(sys.argv[1]), sys.argv[2]
    with strategy.scope():
        model = build_classifier(paths)
    losses = train(model, make_data(%(steps)d, %(batch)d), %(batch)d)
    np.savez(out, *[w.numpy() for w in model.weights])
    print('RESULTS ' + json.dumps({'losses': losses, 'replicas': strategy.num_replicas_in_sync,
                                   'task': json.loads(os.environ['TF_CONFIG'])['task']}))
''' % {'steps': STEPS, 'batch': GLOBAL_BATCH})


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('localhost', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    from bert4keras_ext.checkpoints import make_random_checkpoint
    root = tmp_path_factory.mktemp('multiworker')
    paths = make_random_checkpoint(str(root / 'ckpt'), **SIZES)
    cluster = {'worker': ['localhost:%d' % port for port in _free_ports(2)]}
    env = {key: value for key, value in os.environ.items() if key != 'TF_CONFIG'}
    env.update(TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='-1',
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    workers = []
    for index in range(2):
        env['TF_CONFIG'] = json.dumps({'cluster': cluster, 'task': {'type': 'worker', 'index': index}})
        out = str(root / ('worker%d.npz' % index))
        log = open(str(root / ('worker%d.log' % index)), 'w+')
        proc = subprocess.Popen([sys.executable, '-c', WORKER, json.dumps(paths), out, str(TIMEOUT)],
                                env=dict(env), stdout=log, stderr=subprocess.STDOUT, text=True)
        workers.append((proc, log, out))

    # the single-process reference runs here meanwhile
    namespace = {}
    exec(COMMON, namespace)
    reference = namespace['build_classifier'](paths)
    reference_losses = namespace['train'](reference, namespace['make_data'](STEPS, GLOBAL_BATCH), GLOBAL_BATCH)

    deadline = time.time() + TIMEOUT
    results = []
    try:
        while any(proc.poll() is None for proc, _, _ in workers):
            failed = [i for i, (proc, _, _) in enumerate(workers) if proc.poll() not in (None, 0)]
            if failed:  # the other worker would wait for it in a collective until the timeout
                pytest.fail('worker %d exited with %s; its log:\n%s'
                            % (failed[0], workers[failed[0]][0].returncode, _tail(workers[failed[0]][1])))
            if time.time() > deadline:
                pytest.fail('MultiWorkerMirroredStrategy: the workers did not finish within %d s (they could not '
                            'reach each other on %s, or a collective hung); their logs:\n%s'
                            % (TIMEOUT, cluster['worker'], '\n'.join(_tail(log, 2000) for _, log, _ in workers)))
            time.sleep(0.2)
        for index, (proc, log, out) in enumerate(workers):
            lines = [line for line in _tail(log, None).splitlines() if line.startswith('RESULTS ')]
            if proc.returncode != 0 or not lines:
                pytest.fail('worker %d exited with %s; its log:\n%s' % (index, proc.returncode, _tail(log)))
            result = json.loads(lines[-1][len('RESULTS '):])
            with np.load(out) as weights:
                result['weights'] = [weights['arr_%d' % i] for i in range(len(weights.files))]
            results.append(result)
    finally:
        for proc, log, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return {'workers': results, 'reference_losses': reference_losses,
            'reference_weights': [w.numpy() for w in reference.weights],
            'initial_weights': [w.numpy() for w in namespace['build_classifier'](paths).weights]}


def _tail(log, limit=4000):
    log.flush()
    log.seek(0)
    text = log.read()
    return text if limit is None else text[-limit:]


def test_two_workers_joined_one_cluster(runs):
    assert [r['task']['index'] for r in runs['workers']] == [0, 1]
    assert [r['replicas'] for r in runs['workers']] == [2, 2]  # one CPU replica per worker


def test_workers_report_the_reference_losses(runs):
    assert len(runs['reference_losses']) == STEPS
    for worker in runs['workers']:
        np.testing.assert_allclose(worker['losses'], runs['reference_losses'], rtol=1e-5, atol=1e-6)


def test_workers_end_with_the_reference_weights(runs):
    reference, initial = runs['reference_weights'], runs['initial_weights']
    moved = max(float(np.abs(a - b).max()) for a, b in zip(reference, initial))
    assert moved > 1e-4  # the steps did something
    for worker in runs['workers']:
        assert len(worker['weights']) == len(reference)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(worker['weights'], reference))
        assert diff <= 1e-5, diff
