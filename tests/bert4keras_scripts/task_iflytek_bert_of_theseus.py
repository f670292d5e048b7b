#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_iflytek_bert_of_theseus.py: compress a fine-tuned classifier
(predecessor) into a shallower one (successor) by BERT-of-Theseus module replacement.

Changed besides imports / paths / sizes:
- The data: a small IFLYTEK-format file (CLUE json lines with 'label', 'label_des', 'sentence') whose
  classes are told apart by class-specific characters, written first; 4 classes instead of 119.
- Sizes: the predecessor has the tiny checkpoint's 2 layers and the successor 1 (12 and 3 in the
  original); 2 epochs for each of the three trainings (5, 10, 5).
- Adam(3e-3) instead of Adam(2e-5): the tiny random checkpoint needs a larger step to learn.
- Checks at the end (the predecessor's loss falls, accuracies in [0, 1], the best weights load back)
  and the RESULT line.
- Keras 3 reads `layer.trainable` when fit() starts, not at compile() as Keras 2 did (README,
  "Differences from bert4keras"), so the flags each model was compiled with are set again right before
  its fit: the predecessor and classifier trainable for the predecessor's training, frozen again for the
  Theseus training (as bert_of_theseus() left them), the classifier trainable for the successor's.
The script keeps its own `BinaryRandomChoice` layer and `bert_of_theseus` function, as the original
(bert4keras_ext.theseus has a packaged version with a replace-rate schedule).
"""
# 文本分类例子下的模型压缩
# 方法为BERT-of-Theseus
# 论文：https://arxiv.org/abs/2002.02925
# 博客：https://kexue.fm/archives/7575

import json
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam, extend_with_piecewise_linear_lr
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open
from keras.layers import Input, Lambda, Dense, Layer
from keras.models import Model

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

num_classes = 4
maxlen = 32
batch_size = 16

# BERT base
config_path, checkpoint_path, dict_path = tiny.bert_paths()


def write_iflytek_file(filename, n, seed):
    """A small IFLYTEK-format file: one json per line, the class shown by 3 of its 5 keyword characters."""
    rng = np.random.RandomState(seed)
    chars = tiny.vocab_chars(dict_path)
    keywords = [chars[20 + 5 * i:25 + 5 * i] for i in range(num_classes)]
    filler = chars[100:300]
    with open(filename, 'w', encoding='utf-8') as f:
        for i in range(n):
            label = i % num_classes
            text = list(rng.choice(filler, rng.randint(4, 12)))
            for c in rng.choice(keywords[label], 3, replace=False):
                text.insert(rng.randint(len(text) + 1), c)
            l = {'label': str(label), 'label_des': 'class_%d' % label, 'sentence': ''.join(text)}
            f.write(json.dumps(l, ensure_ascii=False) + '\n')
    return filename


def load_data(filename):
    D = []
    with open(filename) as f:
        for i, l in enumerate(f):
            l = json.loads(l)
            text, label = l['sentence'], l['label']
            D.append((text, int(label)))
    return D


# 加载数据集
train_data = load_data(write_iflytek_file(tiny.data_path('iflytek_train.json'), 160, 0))
valid_data = load_data(write_iflytek_file(tiny.data_path('iflytek_dev.json'), 32, 1))

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


class BinaryRandomChoice(Layer):
    """随机二选一
    """
    def __init__(self, **kwargs):
        super(BinaryRandomChoice, self).__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        if mask is not None:
            return mask[1]

    def call(self, inputs):
        source, target = inputs
        mask = K.random_binomial(shape=[1], p=0.5)
        output = mask * source + (1 - mask) * target
        return K.in_train_phase(output, target)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def set_trainable(layers, trainable):
    """(not in the original) Keras 3 reads trainable at fit(), Keras 2 at compile()."""
    for layer in layers:
        layer.trainable = trainable


def bert_of_theseus(predecessor, successor, classfier):
    """bert of theseus
    """
    inputs = predecessor.inputs
    # 固定住已经训练好的层
    for layer in predecessor.model.layers:
        layer.trainable = False
    classfier.trainable = False
    # Embedding层替换
    predecessor_outputs = predecessor.apply_embeddings(inputs)
    successor_outputs = successor.apply_embeddings(inputs)
    outputs = BinaryRandomChoice()([predecessor_outputs, successor_outputs])
    # Transformer层替换
    layers_per_module = predecessor.num_hidden_layers // successor.num_hidden_layers
    for index in range(successor.num_hidden_layers):
        predecessor_outputs = outputs
        for sub_index in range(layers_per_module):
            predecessor_outputs = predecessor.apply_main_layers(
                predecessor_outputs, layers_per_module * index + sub_index
            )
        successor_outputs = successor.apply_main_layers(outputs, index)
        outputs = BinaryRandomChoice()([predecessor_outputs, successor_outputs])
    # 返回模型
    outputs = classfier(outputs)
    model = Model(inputs, outputs)
    return model


def evaluate(data, model):
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
    def __init__(self, savename):
        self.best_val_acc = 0.
        self.savename = savename

    def on_epoch_end(self, epoch, logs=None):
        val_acc = evaluate(valid_generator, self.model)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.model.save_weights(self.savename)
        print(
            u'val_acc: %.5f, best_val_acc: %.5f\n' %
            (val_acc, self.best_val_acc)
        )


# 加载预训练模型（12层）
predecessor = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    return_keras_model=False,
    prefix='Predecessor-'
)

# 加载预训练模型（3层）
successor = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    return_keras_model=False,
    num_hidden_layers=1,
    prefix='Successor-'
)

# 判别模型
x_in = Input(shape=K.int_shape(predecessor.output)[1:])
x = Lambda(lambda x: x[:, 0])(x_in)
x = Dense(units=num_classes, activation='softmax')(x)
classfier = Model(x_in, x)

predecessor_model = Model(predecessor.inputs, classfier(predecessor.output))
predecessor_model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=Adam(3e-3),  # 用足够小的学习率
    metrics=['sparse_categorical_accuracy'],
)
predecessor_model.summary()

successor_model = Model(successor.inputs, classfier(successor.output))
successor_model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=Adam(3e-3),  # 用足够小的学习率
    metrics=['sparse_categorical_accuracy'],
)
successor_model.summary()

theseus_model = bert_of_theseus(predecessor, successor, classfier)
theseus_model.compile(
    loss='sparse_categorical_crossentropy',
    optimizer=Adam(3e-3),  # 用足够小的学习率
    metrics=['sparse_categorical_accuracy'],
)
theseus_model.summary()

if __name__ == '__main__':

    # 训练predecessor
    classfier_weights = classfier.get_weights()  # (for the check below)
    set_trainable(predecessor.model.layers + [classfier], True)  # Keras 3: flags as at compile()
    predecessor_evaluator = Evaluator('best_predecessor.weights.h5')
    predecessor_history = predecessor_model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=2,
        callbacks=[predecessor_evaluator]
    )
    # check (not in the original): the predecessor and its classifier were trained
    assert any(not np.array_equal(a, b) for a, b in zip(classfier_weights, classfier.get_weights())), \
        'predecessor_model.fit trained nothing: its layers were frozen by bert_of_theseus() before fit'

    # 训练theseus
    set_trainable(predecessor.model.layers + [classfier], False)  # Keras 3: flags as at compile()
    theseus_evaluator = Evaluator('best_theseus.weights.h5')
    theseus_history = theseus_model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=2,
        callbacks=[theseus_evaluator]
    )
    theseus_model.load_weights('best_theseus.weights.h5')

    # 训练successor
    set_trainable([classfier], True)  # Keras 3: flags as at compile()
    successor_evaluator = Evaluator('best_successor.weights.h5')
    successor_history = successor_model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=2,
        callbacks=[successor_evaluator]
    )

    # ---- checks (not in the original) ----
    losses = predecessor_history.history['loss']
    assert losses[-1] < losses[0], losses  # the predecessor (and the classifier) learned
    accs = [e.best_val_acc for e in (predecessor_evaluator, theseus_evaluator, successor_evaluator)]
    assert all(0.0 <= a <= 1.0 for a in accs), accs
    # each model's best weights give its best accuracy back
    predecessor_model.load_weights('best_predecessor.weights.h5')
    assert abs(evaluate(valid_generator, predecessor_model) - accs[0]) < 1e-6
    successor_model.load_weights('best_successor.weights.h5')
    assert abs(evaluate(valid_generator, successor_model) - accs[2]) < 1e-6
    print('RESULT', json.dumps({
        'predecessor_loss': [round(float(l), 4) for l in losses],
        'theseus_loss': [round(float(l), 4) for l in theseus_history.history['loss']],
        'successor_loss': [round(float(l), 4) for l in successor_history.history['loss']],
        'best_val_acc': {'predecessor': accs[0], 'theseus': accs[1], 'successor': accs[2]},
    }))
