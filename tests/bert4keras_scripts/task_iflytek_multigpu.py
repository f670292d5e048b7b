#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_iflytek_multigpu.py: text classification under
tf.distribute.MirroredStrategy, fed by `DataGenerator.to_dataset(..., padded_batch=True)`.

Changed besides imports / paths / sizes:
- The data: a small IFLYTEK-format file (CLUE json lines with 'label', 'label_des', 'sentence') whose
  classes are told apart by class-specific characters, written first; 4 classes instead of 119.
- Adam(3e-3) instead of Adam(2e-5): the tiny random checkpoint needs a larger step to learn in 4 epochs.
- Checks at the end (loss falls, accuracies in [0, 1], the best weights load back) and the RESULT line.
On a machine without GPUs the strategy has one replica (the CPU); with several GPUs it mirrors the
model on all of them, as the original.
"""
# 文本分类多gpu版
# 数据集：IFLYTEK' 长文本分类 (https://github.com/CLUEbenchmark/CLUE)

import os

os.environ['TF_KERAS'] = '1'  # 必须使用tf.keras

import json
import numpy as np
import tensorflow as tf
from bert4keras_ext.backend import keras, K
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, DataGenerator, to_array
from keras.layers import Lambda, Dense
from tqdm import tqdm

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
            l = {'id': i, 'label': str(label), 'label_des': 'class_%d' % label, 'sentence': ''.join(text)}
            f.write(json.dumps(l, ensure_ascii=False) + '\n')
    return filename


def load_data(filename):
    """加载数据
    单条格式：(文本, 标签id)
    """
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
        for is_end, (text, label) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            yield [token_ids, segment_ids], [[label]]  # 返回一条样本


# 转换数据集
train_generator = data_generator(train_data, batch_size)
valid_generator = data_generator(valid_data, batch_size)

# 建立单机多卡策略
strategy = tf.distribute.MirroredStrategy()

with strategy.scope():  # 调用该策略

    # 加载预训练模型
    bert = build_transformer_model(
        config_path=config_path,
        checkpoint_path=None,
        return_keras_model=False,
    )

    output = Lambda(lambda x: x[:, 0])(bert.model.output)
    output = Dense(
        units=num_classes,
        activation='softmax',
        kernel_initializer=bert.initializer,
        name='Probas'
    )(output)

    model = keras.models.Model(bert.model.input, output)
    model.compile(
        loss='sparse_categorical_crossentropy',
        optimizer=Adam(3e-3),
        metrics=['sparse_categorical_accuracy'],
    )
    model.summary()
    bert.load_weights_from_checkpoint(checkpoint_path)  # 必须最后才加载预训练权重


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_val_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        val_acc = logs['sparse_categorical_accuracy']
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            model.save_weights('best_model.weights.h5')
        print(
            u'val_acc: %.5f, best_val_acc: %.5f\n' %
            (val_acc, self.best_val_acc)
        )


def predict_to_file(in_file, out_file):
    """输出预测结果到文件
    结果文件可以提交到 https://www.cluebenchmarks.com 评测。
    """
    fw = open(out_file, 'w')
    with open(in_file) as fr:
        for l in tqdm(fr):
            l = json.loads(l)
            text = l['sentence']
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            token_ids, segment_ids = to_array([token_ids], [segment_ids])
            label = model.predict([token_ids, segment_ids])[0].argmax()
            l = json.dumps({'id': str(l['id']), 'label': str(label)})
            fw.write(l + '\n')
    fw.close()


if __name__ == '__main__':

    evaluator = Evaluator()

    train_dataset = train_generator.to_dataset(
        types=[('float32', 'float32'), ('float32',)],
        shapes=[([None], [None]), ([1],)],  # 配合后面的padded_batch=True，实现自动padding
        names=[('Input-Token', 'Input-Segment'), ('Probas',)],
        padded_batch=True
    )  # 数据要转为tf.data.Dataset格式，names跟输入层/输出层的名字对应

    valid_dataset = valid_generator.to_dataset(
        types=[('float32', 'float32'), ('float32',)],
        shapes=[([None], [None]), ([1],)],  # 配合后面的padded_batch=True，实现自动padding
        names=[('Input-Token', 'Input-Segment'), ('Probas',)],
        padded_batch=True
    )  # 数据要转为tf.data.Dataset格式，names跟输入层/输出层的名字对应

    history = model.fit(
        train_dataset,
        steps_per_epoch=len(train_generator),
        epochs=4,
        validation_data=valid_dataset,
        validation_steps=len(valid_generator),
        callbacks=[evaluator]
    )

    # ---- checks (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], losses
    assert strategy.num_replicas_in_sync >= 1
    val_accs = history.history['val_sparse_categorical_accuracy']
    assert all(0.0 <= a <= 1.0 for a in val_accs), val_accs
    # predictions, then the best epoch's weights saved by the evaluator, loaded back into a new model
    in_file = tiny.data_path('iflytek_dev.json')
    out_file = tiny.data_path('iflytek_predict.json')
    model.load_weights('best_model.weights.h5')
    predict_to_file(in_file, out_file)
    predictions = [json.loads(l) for l in open(out_file)]
    assert len(predictions) == len(valid_data)
    assert all(0 <= int(p['label']) < num_classes for p in predictions)
    x = to_array(*[sequence_padding(a) for a in zip(*[tokenizer.encode(t, maxlen=maxlen) for t, _ in valid_data])])
    probas = model.predict(list(x))
    with strategy.scope():
        bert2 = build_transformer_model(config_path=config_path, return_keras_model=False)
        output2 = Dense(num_classes, activation='softmax', name='Probas')(
            Lambda(lambda x: x[:, 0])(bert2.model.output))
        model2 = keras.models.Model(bert2.model.input, output2)
    model2.load_weights('best_model.weights.h5')
    assert np.allclose(model2.predict(list(x)), probas, atol=1e-5)
    print('RESULT', json.dumps({'loss': [round(float(l), 4) for l in losses],
                                'val_acc': [round(float(a), 4) for a in val_accs],
                                'best_train_acc': float(evaluator.best_val_acc),
                                'replicas': strategy.num_replicas_in_sync}))

else:

    model.load_weights('best_model.weights.h5')
    # predict_to_file('/root/CLUE-master/baselines/CLUEdataset/iflytek/test.json', 'iflytek_predict.json')
