"""A classification script written the bert4keras way runs after changing only its imports.

The script below is the shape of bert4keras' `task_sentiment_albert.py` / competition baselines:
a DataGenerator subclass with `sample(random)`, `forfit()`, a Lambda on [CLS], `bert.initializer`,
`return_keras_model=False`, and the in-graph `Loss` layer variant for losses written with `K`.
"""
import numpy as np

# --- the imports are the only lines that differ from a bert4keras script ---------------------
from bert4keras_ext.backend import K, keras
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.snippets import DataGenerator, sequence_padding
from bert4keras_ext.tokenizers import Tokenizer
from keras.layers import Dense, Input, Lambda
from keras.models import Model
from keras.optimizers import Adam

maxlen = 24
batch_size = 16


def make_data(n, seed):
    """Two-class toy task: sentences built from disjoint positive / negative word lists."""
    rng = np.random.RandomState(seed)
    positive, negative = ['好', '棒', '喜欢', '满意', '不错'], ['差', '烂', '讨厌', '失望', '糟糕']
    data = []
    for _ in range(n):
        label = int(rng.rand() < 0.5)
        words = positive if label else negative
        text = '这个' + ''.join(words[rng.randint(5)] for _ in range(rng.randint(1, 4))) + '。'
        data.append((text, label))
    return data


class data_generator(DataGenerator):
    """bert4keras-style generator (lower-case class name and all)."""

    def __init__(self, data, tokenizer, batch_size=32, with_labels_as_input=False):
        super().__init__(data, batch_size)
        self.tokenizer = tokenizer
        self.with_labels_as_input = with_labels_as_input

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = self.tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                if self.with_labels_as_input:
                    yield [batch_token_ids, batch_segment_ids, batch_labels], None
                else:
                    yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


def evaluate(data, model):
    total, right = 0., 0.
    for x_true, y_true in data:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


def test_classification_script_written_the_bert4keras_way(tiny_bert):
    tokenizer = Tokenizer(tiny_bert['vocab'], do_lower_case=True)
    train_generator = data_generator(make_data(256, 0), tokenizer, batch_size)
    valid_generator = data_generator(make_data(64, 1), tokenizer, batch_size)

    bert = build_transformer_model(config_path=tiny_bert['config'], checkpoint_path=tiny_bert['checkpoint'],
                                   return_keras_model=False)
    output = Lambda(lambda x: x[:, 0], name='CLS-token')(bert.model.output)
    output = Dense(units=2, activation='softmax', kernel_initializer=bert.initializer)(output)
    model = Model(bert.model.input, output)
    model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(1e-3), metrics=['accuracy'])
    model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=4, verbose=0)

    accuracy = evaluate(valid_generator, model)
    assert accuracy >= 0.9, accuracy  # disjoint word lists: a working pipeline learns this quickly


def test_in_graph_loss_layer_written_the_bert4keras_way(tiny_bert):
    class CrossEntropy(Loss):
        """The bert4keras idiom: compute the loss inside the graph from [y_true, y_pred]."""

        def compute_loss(self, inputs, mask=None):
            y_true, y_pred = inputs
            y_true = K.cast(y_true[:, 0], 'int32')
            return K.mean(K.sparse_categorical_crossentropy(y_true, y_pred))

    tokenizer = Tokenizer(tiny_bert['vocab'], do_lower_case=True)
    train_generator = data_generator(make_data(256, 2), tokenizer, batch_size, with_labels_as_input=True)
    bert = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], return_keras_model=False)
    output = Lambda(lambda x: x[:, 0])(bert.model.output)
    output = Dense(2, activation='softmax', kernel_initializer=bert.initializer)(output)
    model = Model(bert.model.inputs, output)  # the prediction model

    y_in = Input(shape=(1,), name='Input-Label')
    output = CrossEntropy(1)([y_in, model.output])
    train_model = Model(model.inputs + [y_in], output)
    train_model.compile(optimizer=Adam(1e-3))  # no loss=: the Loss layer adds it
    history = train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=4, verbose=0)
    losses = history.history['loss']
    assert losses[-1] < 0.5 * losses[0], losses
    # the shared prediction model learned too
    valid = data_generator(make_data(64, 3), tokenizer, batch_size)
    assert evaluate(valid, model) >= 0.9
