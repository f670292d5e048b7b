#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_conditional_language_model.py: a class-conditional language model.

bert with application='lm' whose LayerNorms are conditioned on a label embedding (layer_norm_cond=...,
additional_input_layers=...), then sentences sampled per label with an `AutoRegressiveDecoder`.

Changed besides imports, paths and sizes: the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random
model learns the synthetic data in 2 epochs), and the saved weights' name gets Keras 3's `.weights.h5`
suffix. The data are generated: label-1 "reviews" use one half of the vocabulary's characters and end
with '！', label-0 ones the other half and end with '。'. Checks (not in the original): the loss falls,
the samples are lists of str, the conditioning matters (the same text gets different probabilities under
the two labels), and the best weights saved by the evaluator load back to the same predictions.
"""
from __future__ import print_function
import json
import re
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import text_segmentate
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from bert4keras_ext.snippets import uniout  # 打印中文
from keras.layers import Input, Embedding, Reshape
from keras.models import Model

import os
import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

# 模型配置
maxlen = 12
batch_size = 16
num_classes = 2
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# ---- a tiny data set in the original's format: "text\tlabel" per line ----------------------------
_chars = tiny.vocab_chars(dict_path)[:40]
_pos_chars, _neg_chars = _chars[:20], _chars[20:]
os.makedirs(tiny.data_path('sentiment'), exist_ok=True)
for _name, _n in [('train', 160), ('valid', 32), ('test', 32)]:
    with open(tiny.data_path('sentiment/sentiment.%s.data' % _name), 'w', encoding='utf-8') as f:
        for _i in range(_n):
            _label = _i % 2
            _pool = _pos_chars if _label else _neg_chars
            _text = ''.join(np.random.choice(_pool, np.random.randint(4, 9)))
            _text += u'！' if _label else u'。'
            f.write(u'%s\t%d\n' % (_text, _label))

# 加载并精简词表，建立分词器
token_dict, keep_tokens = load_vocab(
    dict_path=dict_path,
    simplified=True,
    startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'],
)
tokenizer = Tokenizer(token_dict, do_lower_case=True)


def load_data(filenames):
    """加载数据，并尽量划分为不超过maxlen的句子
    """
    D = []
    seps, strips = u'\n。！？!?；;，, ', u'；;，, '
    for filename in filenames:
        with open(filename, encoding='utf-8') as f:
            for l in f:
                text, label = l.strip().split('\t')
                for t in text_segmentate(text, maxlen - 2, seps, strips):
                    D.append((t, int(label)))
    return D


# 加载数据集
data = load_data([
    tiny.data_path('sentiment/sentiment.train.data'),
    tiny.data_path('sentiment/sentiment.valid.data'),
    tiny.data_path('sentiment/sentiment.test.data'),
])


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
                yield [batch_token_ids, batch_segment_ids, batch_labels], None
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


class CrossEntropy(Loss):
    """交叉熵作为loss，并mask掉padding部分
    """
    def compute_loss(self, inputs, mask=None):
        y_true, y_pred = inputs
        if mask[1] is None:
            y_mask = 1.0
        else:
            y_mask = K.cast(mask[1], K.floatx())[:, 1:]
        y_true = y_true[:, 1:]  # 目标token_ids
        y_pred = y_pred[:, :-1]  # 预测序列，错开一位
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        loss = K.sum(loss * y_mask) / K.sum(y_mask)
        return loss


c_in = Input(shape=(1,))
c = Embedding(num_classes, 128)(c_in)
c = Reshape((128,))(c)

# Bert模型
model = build_transformer_model(
    config_path,
    checkpoint_path,
    application='lm',
    keep_tokens=keep_tokens,  # 只保留keep_tokens中的字，精简原字表
    layer_norm_cond=c,
    additional_input_layers=c_in,
)

output = CrossEntropy(1)([model.inputs[0], model.outputs[0]])

model = Model(model.inputs, output)
model.compile(optimizer=Adam(1e-3))
model.summary()


class RandomSentiment(AutoRegressiveDecoder):
    """根据情感标签（0:负，1:正）随机生成一批句子
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids = output_ids
        segment_ids = np.zeros_like(token_ids)
        return self.last_token(model).predict([
            token_ids, segment_ids, inputs[0]
        ])

    def generate(self, label, n=1, topp=0.95):
        results = self.random_sample([[label]], n, topp=topp)  # 基于随机采样
        return [tokenizer.decode(ids) for ids in results]


random_sentiment = RandomSentiment(
    start_id=tokenizer._token_start_id,
    end_id=tokenizer._token_end_id,
    maxlen=maxlen
)


def just_show():
    print(u'正面采样:')
    print(random_sentiment.generate(1, 5, 5), '\n')
    print(u'负面采样:')
    print(random_sentiment.generate(0, 5, 5), '\n')


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(data, batch_size)))[0]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        # 保存最优
        if logs['loss'] <= self.lowest:
            self.lowest = logs['loss']
            model.save_weights('./best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)
        # 演示效果
        just_show()


if __name__ == '__main__':

    evaluator = Evaluator()
    train_generator = data_generator(data, batch_size)

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    assert abs(evaluator.lowest - min(losses)) < 1e-6, (evaluator.lowest, losses)
    samples = random_sentiment.generate(1, 3)
    assert isinstance(samples, list) and len(samples) == 3, samples
    assert all(isinstance(s, str) for s in samples), samples
    # the label reaches the model: the same text, two labels, two different distributions
    token_ids, segment_ids = probe_inputs[0][:1], probe_inputs[1][:1]
    p_pos = model.predict([token_ids, segment_ids, np.array([[1]])])
    p_neg = model.predict([token_ids, segment_ids, np.array([[0]])])
    log_diff = float(np.abs(np.log(p_pos) - np.log(p_neg)).max())
    assert log_diff > 1e-2, log_diff
    # positive text continues with the positive characters more under label 1 than under label 0
    pos_ids = [tokenizer.token_to_id(ch) for ch in _pos_chars]
    mass_pos = p_pos[0, :, pos_ids].sum(axis=0).mean()
    mass_neg = p_neg[0, :, pos_ids].sum(axis=0).mean()
    print('mass of label-1 characters: under label 1 %.4f, under label 0 %.4f' % (mass_pos, mass_neg))

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'label1_char_mass_given_1': float(mass_pos), 'label1_char_mass_given_0': float(mass_neg),
        'sample': samples[0],
    }, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
