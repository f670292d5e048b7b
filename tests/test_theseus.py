"""BERT-of-Theseus pieces: the random module choice, the replace-rate schedule and the mixed model's wiring."""
import numpy as np
import pytest

from bert4keras_ext.backend import keras
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.theseus import BinaryRandomChoice, ReplaceRateScheduler, bert_of_theseus


def pair():
    rng = np.random.RandomState(0)
    return [keras.ops.convert_to_tensor(rng.randn(2, 3, 4).astype('float32')) for _ in range(2)]


def test_binary_random_choice_picks_one_input_per_call():
    a, b = pair()
    layer = BinaryRandomChoice(0.5, seed=1)
    np.testing.assert_array_equal(layer([a, b]), b)  # inference: the successor
    picks = []
    for _ in range(400):
        out = keras.ops.convert_to_numpy(layer([a, b], training=True))
        is_b = np.array_equal(out, b)
        assert is_b or np.array_equal(out, a)  # a whole input, never a mixture
        picks.append(is_b)
    assert 0.4 < np.mean(picks) < 0.6  # 400 draws at p = 0.5: 5 standard deviations either side
    layer.replace_rate.assign(0.0)
    assert np.array_equal(layer([a, b], training=True), a)
    layer.replace_rate.assign(1.0)
    assert np.array_equal(layer([a, b], training=True), b)


def test_binary_random_choice_mask_and_config():
    token_ids = keras.Input((None,), dtype='int32')
    x = keras.layers.Embedding(10, 4, mask_zero=True)(token_ids)
    y = keras.layers.Embedding(10, 4, mask_zero=True)(token_ids)
    out = BinaryRandomChoice(0.3, name='choice')([x, y])
    assert out._keras_mask is not None
    config = BinaryRandomChoice(0.3, seed=5).get_config()
    assert config['replace_rate'] == 0.3 and config['seed'] == 5
    with pytest.raises(ValueError, match='replace_rate'):
        BinaryRandomChoice(1.5)


def test_replace_rate_scheduler_is_linear_and_sets_the_layers():
    scheduler = ReplaceRateScheduler(start=0.5, end=1.0, steps=10)
    assert [scheduler.rate(t) for t in (0, 5, 10, 20)] == [0.5, 0.75, 1.0, 1.0]
    inputs = keras.Input((4,))
    choice = BinaryRandomChoice(0.5)
    out = choice([keras.layers.Dense(4)(inputs), keras.layers.Dense(4)(inputs)])
    model = keras.Model(inputs, keras.layers.Dense(1)(out))
    model.compile('sgd', 'mse')
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):  # runs after the scheduler's hook
            seen.append(float(choice.replace_rate.numpy()))

    model.fit(np.zeros((8, 4)), np.zeros((8, 1)), batch_size=2, epochs=2, verbose=0,
              callbacks=[ReplaceRateScheduler(start=0.2, end=1.0), Spy()])
    np.testing.assert_allclose(seen, [0.2 + 0.8 * t / 8 for t in range(8)], atol=1e-6)


def test_theseus_model_wiring(tiny_bert):
    """Rate 0 → exactly the predecessor; rate 1 or inference → exactly the successor; only the successor trains."""
    kwargs = dict(dropout_rate=0.0, attention_dropout_rate=0.0, return_keras_model=False)
    predecessor = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], **kwargs)
    successor = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], num_hidden_layers=1,
                                        prefix='Successor-', **kwargs)
    rng = np.random.RandomState(0)
    token_ids = rng.randint(1, 100, (3, 9))
    token_ids[1, 6:] = 0
    inputs = [keras.ops.convert_to_tensor(token_ids), keras.ops.convert_to_tensor(np.zeros_like(token_ids))]
    # make the two encoders differ, so that the comparisons below mean something
    for weight in successor.model.weights:
        weight.assign(weight.numpy() * 1.1)
    expected_predecessor = keras.ops.convert_to_numpy(predecessor.model(inputs))
    expected_successor = keras.ops.convert_to_numpy(successor.model(inputs))
    assert np.abs(expected_predecessor - expected_successor).max() > 1e-2

    theseus = bert_of_theseus(predecessor, successor)
    choices = [layer for layer in theseus.layers if isinstance(layer, BinaryRandomChoice)]
    assert len(choices) == 2  # embeddings + one module of two predecessor layers
    assert {id(w) for w in theseus.trainable_weights} == {id(w) for w in successor.model.trainable_weights}
    np.testing.assert_allclose(theseus(inputs), expected_successor, atol=1e-5)
    for choice in choices:
        choice.replace_rate.assign(0.0)
    np.testing.assert_allclose(theseus(inputs, training=True), expected_predecessor, atol=1e-5)
    for choice in choices:
        choice.replace_rate.assign(1.0)
    np.testing.assert_allclose(theseus(inputs, training=True), expected_successor, atol=1e-5)

    three_layers = build_transformer_model(tiny_bert['config'], None, num_hidden_layers=3, prefix='Three-', **kwargs)
    with pytest.raises(ValueError, match='must divide'):
        bert_of_theseus(predecessor, three_layers)
