#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_sentence_similarity_lcqmc.py: sentence-pair classification (LCQMC).

Changed besides imports, paths and sizes: `save_weights` / `load_weights` use the `.weights.h5` suffix
Keras 3 requires. The copy of the example in bert4keras' repository predates 0.11 (it calls
`tokenizer.encode(..., max_length=maxlen)` and `model.fit_generator`); this port is written against the
0.11.5 API those became (`maxlen=`, `model.fit`), as bert4keras 0.11.5 itself requires. Sizes: the tiny
checkpoint, maxlen 48, 3 epochs, learning rate 3e-3 (a random 32-wide model, not BERT-base at 2e-5).
The data is generated in LCQMC's format ("text1<TAB>text2<TAB>label" lines): similar pairs (1) are
written with the first half of the vocabulary's characters, dissimilar ones (0) with the second, so a
tiny model learns the labels in a few epochs. Checks added at the end:
the loss falls, accuracies lie in [0, 1] and beat chance, the best weights load back to the same
predictions.
"""
import json

import numpy as np
from bert4keras_ext.backend import keras, set_gelu, K
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open
from keras.layers import Dropout, Dense

from tiny import bert_paths, data_path, vocab_chars

np.random.seed(42)
keras.utils.set_random_seed(42)

set_gelu('tanh')  # 切换gelu版本

maxlen = 48
batch_size = 16
config_path, checkpoint_path, dict_path = bert_paths()


def write_lcqmc(filename, num_pairs, seed):
    """Question pairs in LCQMC's tab-separated format."""
    chars = vocab_chars(dict_path)
    groups = [chars[:250], chars[250:500]]
    rng = np.random.RandomState(seed)
    with open(filename, 'w', encoding='utf-8') as f:
        for _ in range(num_pairs):
            label = rng.randint(2)
            text1 = ''.join(rng.choice(groups[label], rng.randint(4, 15)))
            text2 = ''.join(rng.choice(groups[label], rng.randint(4, 15)))
            f.write('%s\t%s\t%d\n' % (text1, text2, label))


write_lcqmc(data_path('lcqmc.train.data'), 192, 1)
write_lcqmc(data_path('lcqmc.valid.data'), 48, 2)
write_lcqmc(data_path('lcqmc.test.data'), 48, 3)


def load_data(filename):
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            text1, text2, label = l.strip().split('\t')
            D.append((text1, text2, int(label)))
    return D


# 加载数据集
train_data = load_data(data_path('lcqmc.train.data'))
valid_data = load_data(data_path('lcqmc.valid.data'))
test_data = load_data(data_path('lcqmc.test.data'))

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text1, text2, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(
                text1, text2, maxlen=maxlen
            )
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


# 加载预训练模型
bert = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    with_pool=True,
    return_keras_model=False,
)

output = Dropout(rate=0.1)(bert.model.output)
output = Dense(
    units=2, activation='softmax', kernel_initializer=bert.initializer
)(output)

model = keras.models.Model(bert.model.input, output)
model.summary()

model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=Adam(3e-3),  # 用足够小的学习率
    # optimizer=PiecewiseLinearLearningRate(Adam(5e-5), {10000: 1, 30000: 0.1}),
    metrics=['accuracy'],
)

# 转换数据集
train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)
test_generator = data_generator(test_data, batch_size)


def evaluate(data):
    total, right = 0., 0.
    for x_true, y_true in data:
        y_pred = model.predict(x_true).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(valid_generator))[0]


class Evaluator(keras.callbacks.Callback):
    def __init__(self):
        self.best_val_acc = 0.
        self.accs = []

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('best_model.weights.h5')
            self.best_test_acc = evaluate(test_generator)
            self.best_probe = model.predict(probe_inputs)
        test_acc = evaluate(test_generator)
        self.accs += [val_acc, test_acc]
        print(
            u'val_acc: %.5f, best_val_acc: %.5f, test_acc: %.5f\n' %
            (val_acc, self.best_val_acc, test_acc)
        )


evaluator = Evaluator()
history = model.fit(
    train_generator.forfit(),
    steps_per_epoch=len(train_generator),
    epochs=3,
    callbacks=[evaluator]
)

model.load_weights('best_model.weights.h5')
final_test_acc = evaluate(test_generator)
print(u'final test acc: %05f\n' % (final_test_acc))

# ---- checks of the outcome (not in the original) ----
losses = history.history['loss']
assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
assert all(0 <= acc <= 1 for acc in evaluator.accs + [final_test_acc]), evaluator.accs
assert evaluator.best_val_acc > 0.6, 'pairs not learnt: %s' % evaluator.accs
# the reloaded best weights give the test accuracy measured when they were saved
assert final_test_acc == evaluator.best_test_acc, (final_test_acc, evaluator.best_test_acc)
assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-6)
print('RESULT', json.dumps({
    'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
    'best_val_acc': float(evaluator.best_val_acc), 'final_test_acc': float(final_test_acc),
}))
