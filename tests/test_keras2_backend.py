"""The Keras 2 backend functions bert4keras scripts call through `K`, beyond the plain tensor ops."""
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.backend import K, keras


class BinaryRandomChoice(keras.layers.Layer):
    """bert4keras' BERT-of-Theseus layer, written as its example writes it (no `training` argument)."""

    def call(self, inputs):
        source, target = inputs
        mask = K.random_binomial(shape=[1], p=0.5)
        output = mask * source + (1 - mask) * target
        return K.in_train_phase(output, target)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def test_in_train_phase_follows_the_training_flag_of_the_layer_call():
    source, target = np.ones((4, 3), 'float32'), np.zeros((4, 3), 'float32')
    layer = BinaryRandomChoice()
    for _ in range(3):  # inference (no flag, or training=False): always the target
        np.testing.assert_array_equal(layer([source, target]), target)
        np.testing.assert_array_equal(layer([source, target], training=False), target)
    # training: source or target, chosen at random per call; 40 calls draw both with probability 1 - 2^-39
    draws = {float(np.asarray(layer([source, target], training=True))[0, 0]) for _ in range(40)}
    assert draws == {0.0, 1.0}


def test_in_train_phase_inside_a_compiled_fit_draws_anew_each_step():
    """Stateful random ops: a compiled train step does not repeat the same draw (keras.random without a
    seed generator would)."""
    a, b = keras.Input((1,)), keras.Input((1,))
    chosen = BinaryRandomChoice()([a, b])
    recorder = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            recorder.append(float(logs['loss']))

    model = keras.Model([a, b], chosen)
    model.compile(loss=lambda y_true, y_pred: keras.ops.mean(y_pred))  # loss = which input was chosen
    x = [np.ones((1, 1), 'float32'), np.zeros((1, 1), 'float32')]
    model.fit(tf.data.Dataset.from_tensors((tuple(x), np.zeros((1, 1), 'float32'))).repeat(40), epochs=1,
              verbose=0, callbacks=[Record()])
    # the logged loss is the running mean of the choices: strictly between 0 and 1 once both were drawn
    # (all 40 alike has probability 2^-39), and each step's own choice (recovered from the means) is 0 or 1
    means = np.array(recorder)
    steps = np.arange(1, len(means) + 1) * means - np.arange(len(means)) * np.concatenate([[0.0], means[:-1]])
    assert 0 < means[-1] < 1
    np.testing.assert_allclose(np.round(steps), steps, atol=1e-4)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x[1])  # inference: the target


def test_random_functions_have_the_requested_statistics():
    tf.random.set_seed(0)
    binomial = np.asarray(K.random_binomial((20000,), p=0.3))
    assert set(np.unique(binomial)) <= {0.0, 1.0} and abs(binomial.mean() - 0.3) < 0.02
    normal = np.asarray(K.random_normal((20000,), mean=2.0, stddev=0.5))
    assert abs(normal.mean() - 2.0) < 0.02 and abs(normal.std() - 0.5) < 0.02
    uniform = np.asarray(K.random_uniform((20000,), -1.0, 3.0))
    assert uniform.min() >= -1 and uniform.max() < 3 and abs(uniform.mean() - 1.0) < 0.05


def test_small_helpers_against_numpy():
    x = np.arange(24, dtype='float32').reshape(2, 3, 4)
    np.testing.assert_array_equal(K.batch_flatten(x), x.reshape(2, 12))
    np.testing.assert_array_equal(K.reverse(x, 1), x[:, ::-1])
    np.testing.assert_array_equal(K.repeat(x[:, 0], 5), np.repeat(x[:, :1], 5, axis=1))
    np.testing.assert_array_equal(K.temporal_padding(x, (1, 2)), np.pad(x, [(0, 0), (1, 2), (0, 0)]))
    np.testing.assert_allclose(K.hard_sigmoid(np.array([-3.0, 0.0, 1.0, 3.0])), [0.0, 0.5, 0.7, 1.0], rtol=1e-6)
    np.testing.assert_allclose(K.softsign(np.array([-1.0, 3.0])), [-0.5, 0.75])
    np.testing.assert_array_equal(K.bias_add(x, np.ones(4)), x + 1)
    assert K.learning_phase() == 0


def test_k_function_runs_a_symbolic_graph():
    a = keras.Input((3,))
    b = keras.layers.Lambda(lambda t: 2 * t)(a)
    run = K.function([a], [b])
    np.testing.assert_array_equal(run([np.ones((1, 3))])[0], 2 * np.ones((1, 3)))


@pytest.mark.parametrize('name, fragment', [('set_learning_phase', 'no global learning phase'),
                                            ('placeholder', 'keras.Input'), ('get_session', 'K.eval')])
def test_graph_era_functions_say_what_to_use(name, fragment):
    with pytest.raises(NotImplementedError, match=fragment):
        getattr(K, name)(1)


def test_a_missing_backend_name_says_so():
    with pytest.raises(AttributeError, match='K.ctc_batch_cost: this Keras 2 backend function is not in'):
        K.ctc_batch_cost
