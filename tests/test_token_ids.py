"""Ids entering a model built here are checked: negative, too large or fractional ids raise, none wrap.

Before the check a negative id silently equalled id vocab_size - 7 (TensorFlow's gather wraps on CPU)
and a float id was truncated. Eager calls raise ValueError naming the layer, the bad values and where
they are; inside compiled `predict` / `fit` the same text is the assertion message.
"""
import numpy as np
import pytest
import tensorflow as tf

from bert4keras_ext.models import build_transformer_model


@pytest.fixture(scope='module')
def bert(tiny_bert):
    return build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'])


def vocab_size(bert):
    return bert.get_layer('Embedding-Token').input_dim


@pytest.mark.parametrize('bad', [-7, 'vocab', 2.5])
def test_eager_call_rejects_bad_token_ids(bert, bad):
    bad = vocab_size(bert) if bad == 'vocab' else bad
    token_ids = np.array([[2, bad, 3]], dtype='float32')
    with pytest.raises(ValueError) as err:
        bert([token_ids, np.zeros((1, 3))])
    message = str(err.value)
    assert "layer 'Embedding-Token' expects ids in [0, %d)" % vocab_size(bert) in message
    assert 'got [%s]' % float(bad) in message and 'positions [(0, 1)]' in message


def test_eager_call_rejects_bad_segment_ids(bert):
    with pytest.raises(ValueError, match="layer 'Embedding-Segment' expects ids in \\[0, 2\\)"):
        bert([np.array([[2, 5, 3]]), np.array([[0, 2, 0]])])


@pytest.mark.parametrize('bad, fragment', [(-7, 'got a negative id'), ('vocab', 'got an id >= '),
                                           (2.5, 'got a non-integer id')])
def test_predict_rejects_bad_ids_with_the_message_first(bert, bad, fragment):
    """Inside compiled predict the check is an assertion; its message leads the error, not TF's node trace."""
    bad = vocab_size(bert) if bad == 'vocab' else bad
    with pytest.raises(ValueError) as err:
        bert.predict([np.array([[2, bad, 3]], dtype='float32'), np.zeros((1, 3))], verbose=0)
    message = str(err.value)
    assert message.startswith("layer 'Embedding-Token' expects ids in [0, %d) (whole numbers), %s"
                              % (vocab_size(bert), fragment)), message
    assert 'found by predict' in message
    assert isinstance(err.value.__cause__, tf.errors.InvalidArgumentError)  # TensorFlow's report kept


def test_fit_rejects_bad_segment_ids_with_the_message_first(bert):
    model = bert
    model.compile(loss='mse')
    with pytest.raises(ValueError, match="^layer 'Embedding-Segment' expects ids in \\[0, 2\\)"):
        model.fit([np.array([[2, 5, 3]]), np.array([[0, 3, 0]])], np.zeros((1, 3, model.output.shape[-1])),
                  verbose=0)


def test_valid_ids_give_the_same_output_as_int_ids(bert):
    ids = np.array([[2, 5, 7, 3, 0]])
    as_float = bert.predict([ids.astype('float32'), np.zeros((1, 5))], verbose=0)
    as_int = bert.predict([ids.astype('int64'), np.zeros((1, 5), dtype='int64')], verbose=0)
    np.testing.assert_allclose(as_float, as_int, atol=1e-5)  # two compiled calls: float32 rounding only


@pytest.mark.parametrize('keep_tokens', [[], [[1, 2]], [1.5, 2.0]])
def test_bad_keep_tokens_are_refused_before_building(tiny_bert, keep_tokens):
    with pytest.raises(ValueError, match='keep_tokens must be a non-empty list of integer token ids'):
        build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], keep_tokens=keep_tokens)
