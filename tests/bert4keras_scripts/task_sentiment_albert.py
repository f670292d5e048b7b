#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_sentiment_albert.py: sentiment classification on ALBERT with a
piecewise-linear learning rate. Imported by task_sentiment_integrated_gradients.py, which then only
loads the weights this script saved (the `else:` branch), as in bert4keras.

Changed besides imports / paths / sizes:
- The data: small sentiment files in the original's format ("text<TAB>label" lines), written first; a
  review's label is told by positive / negative characters.
- AdamLR(learning_rate=3e-3, lr_schedule={10: 1, 40: 0.1}) instead of (1e-4, {1000: 1, 2000: 0.1}):
  the tiny random checkpoint needs a larger step, and the run has ~40 steps instead of thousands.
- Checks at the end (loss falls, accuracies in [0, 1], the best weights load back) and the RESULT line.
"""
# 情感分析例子，加载albert_zh权重(https://github.com/brightmart/albert_zh)

import json
import numpy as np
from bert4keras_ext.backend import keras, set_gelu
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam, extend_with_piecewise_linear_lr
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open
from keras.layers import Lambda, Dense

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

set_gelu('tanh')  # 切换gelu版本

num_classes = 2
maxlen = 32
batch_size = 16
config_path, checkpoint_path, dict_path = tiny.albert_paths()


def write_sentiment_file(filename, n, seed):
    """Sentiment data in the original's format: "text<TAB>label" lines, 1 = positive."""
    rng = np.random.RandomState(seed)
    chars = tiny.vocab_chars(dict_path)
    polar = [chars[20:26], chars[26:32]]  # negative, positive characters
    filler = chars[100:300]
    with open(filename, 'w', encoding='utf-8') as f:
        for i in range(n):
            label = i % 2
            text = list(rng.choice(filler, rng.randint(4, 12)))
            for c in rng.choice(polar[label], 3, replace=False):
                text.insert(rng.randint(len(text) + 1), c)
            f.write(u'%s\t%d\n' % (''.join(text), label))
    return filename


def load_data(filename):
    """加载数据
    单条格式：(文本, 标签id)
    """
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            text, label = l.strip().split('\t')
            D.append((text, int(label)))
    return D


# 加载数据集
train_data = load_data(write_sentiment_file(tiny.data_path('sentiment.train.data'), 160, 0))
valid_data = load_data(write_sentiment_file(tiny.data_path('sentiment.valid.data'), 32, 1))
test_data = load_data(write_sentiment_file(tiny.data_path('sentiment.test.data'), 32, 2))

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append([label])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


# 转换数据集
train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)
test_generator = data_generator(test_data, batch_size)

# 加载预训练模型
bert = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    model='albert',
    return_keras_model=False,
)

output = Lambda(lambda x: x[:, 0], name='CLS-token')(bert.model.output)
output = Dense(
    units=num_classes,
    activation='softmax',
    kernel_initializer=bert.initializer
)(output)

model = keras.models.Model(bert.model.input, output)
model.summary()

# 派生为带分段线性学习率的优化器。
# 其中name参数可选，但最好填入，以区分不同的派生优化器。
AdamLR = extend_with_piecewise_linear_lr(Adam, name='AdamLR')

model.compile(
    loss='sparse_categorical_crossentropy',
    # optimizer=Adam(1e-5),  # 用足够小的学习率
    optimizer=AdamLR(learning_rate=3e-3, lr_schedule={
        10: 1,
        40: 0.1
    }),
    metrics=['accuracy'],
)


def evaluate(data):
    total, right = 0., 0.
    for x_true, y_true in data:
        y_pred = model.predict(x_true).argmax(axis=1)
        y_true = y_true[:, 0]
        total += len(y_true)
        right += (y_true == y_pred).sum()
    return right / total


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_val_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('best_model.weights.h5')
        test_acc = evaluate(test_generator)
        print(
            u'val_acc: %.5f, best_val_acc: %.5f, test_acc: %.5f\n' %
            (val_acc, self.best_val_acc, test_acc)
        )


if __name__ == '__main__':

    evaluator = Evaluator()

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=4,
        callbacks=[evaluator]
    )

    model.load_weights('best_model.weights.h5')
    test_acc = evaluate(test_generator)
    print(u'final test acc: %05f\n' % (test_acc))

    # ---- checks (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], losses
    assert 0.0 <= evaluator.best_val_acc <= 1.0 and 0.0 <= test_acc <= 1.0
    assert abs(evaluate(valid_generator) - evaluator.best_val_acc) < 1e-6  # the best weights are back
    print('RESULT', json.dumps({'loss': [round(float(l), 4) for l in losses],
                                'best_val_acc': float(evaluator.best_val_acc), 'test_acc': float(test_acc)}))

else:

    model.load_weights('best_model.weights.h5')
