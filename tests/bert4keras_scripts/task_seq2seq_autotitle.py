#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_seq2seq_autotitle.py: title generation as UniLM seq2seq
(application='unilm', a `Loss` layer masking the input part, beam search with `AutoRegressiveDecoder`).

Changed besides imports, paths and sizes: the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random
model learns something in 2 short epochs), the saved weights' name gets Keras 3's `.weights.h5` suffix,
and the two demo texts are articles of the generated corpus (the originals' characters are not all in
the tiny vocabulary). The "THUCNews" corpus is generated: one .txt per article, the title on the first
line (the article's first characters) and the content below, read back as the original reads them.
Checks (not in the original): the loss falls, beam search (topk=1 and topk=3) returns str titles of at
most `autotitle.maxlen` tokens, and the best weights saved by the evaluator load back to the same
predictions.
"""
from __future__ import print_function
import glob
import json, os
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from keras.models import Model

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

# 基本参数
maxlen = 48
batch_size = 16
steps_per_epoch = 6
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# ---- a tiny "THUCNews": <dir>/<category>/<id>.txt, first line the title, then the content ---------
_chars = tiny.vocab_chars(dict_path)[:60]
for _category in [u'体育', u'科技']:
    os.makedirs(tiny.data_path('THUCNews/' + _category), exist_ok=True)
    for _i in range(48):
        _content = ''.join(np.random.choice(_chars, np.random.randint(16, 30))) + u'。'
        with open(tiny.data_path('THUCNews/%s/%d.txt' % (_category, _i)), 'w', encoding='utf-8') as f:
            f.write(_content[:4] + u'\n' + _content)

# 训练样本。THUCNews数据集，每个样本保存为一个txt。
txts = glob.glob(tiny.data_path('THUCNews/*/*.txt'))

# 加载并精简词表，建立分词器
token_dict, keep_tokens = load_vocab(
    dict_path=dict_path,
    simplified=True,
    startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'],
)
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, txt in self.sample(random):
            text = open(txt, encoding='utf-8').read()
            text = text.split('\n')
            if len(text) > 1:
                title = text[0]
                content = '\n'.join(text[1:])
                token_ids, segment_ids = tokenizer.encode(
                    content, title, maxlen=maxlen
                )
                batch_token_ids.append(token_ids)
                batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """交叉熵作为loss，并mask掉输入部分
    """
    def compute_loss(self, inputs, mask=None):
        y_true, y_mask, y_pred = inputs
        y_true = y_true[:, 1:]  # 目标token_ids
        y_mask = y_mask[:, 1:]  # segment_ids，刚好指示了要预测的部分
        y_pred = y_pred[:, :-1]  # 预测序列，错开一位
        loss = K.sparse_categorical_crossentropy(y_true, y_pred)
        loss = K.sum(loss * y_mask) / K.sum(y_mask)
        return loss


model = build_transformer_model(
    config_path,
    checkpoint_path,
    application='unilm',
    keep_tokens=keep_tokens,  # 只保留keep_tokens中的字，精简原字表
)

output = CrossEntropy(2)(model.inputs + model.outputs)

model = Model(model.inputs, output)
model.compile(optimizer=Adam(1e-3))
model.summary()


class AutoTitle(AutoRegressiveDecoder):
    """seq2seq解码器
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        max_c_len = maxlen - self.maxlen
        token_ids, segment_ids = tokenizer.encode(text, maxlen=max_c_len)
        output_ids = self.beam_search([token_ids, segment_ids],
                                      topk=topk)  # 基于beam search
        return tokenizer.decode(output_ids)


autotitle = AutoTitle(start_id=None, end_id=tokenizer._token_end_id, maxlen=8)


def just_show():
    s1 = open(txts[0], encoding='utf-8').read().split('\n', 1)[1]
    s2 = open(txts[-1], encoding='utf-8').read().split('\n', 1)[1]
    for s in [s1, s2]:
        print(u'生成标题:', autotitle.generate(s))
    print()


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(txts, batch_size)))[0]


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
    train_generator = data_generator(txts, batch_size)

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    content = open(txts[1], encoding='utf-8').read().split('\n', 1)[1]
    titles = [autotitle.generate(content), autotitle.generate(content, topk=3)]
    for title in titles:
        assert isinstance(title, str), title
        assert len(tokenizer.tokenize(title)) - 2 <= autotitle.maxlen, title

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'title_greedy': titles[0], 'title_beam3': titles[1],
    }, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
