#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_language_model.py: bert as a left-to-right language model (novel
continuation), trained with a `Loss` layer and sampled with an `AutoRegressiveDecoder` (top-p).

Changed besides imports, paths and sizes: the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random
model learns something in 2 short epochs), the saved weights' name gets Keras 3's `.weights.h5` suffix,
and the three demo prompts are sentences of the generated corpus (the originals' characters are not all
in the tiny vocabulary). The "novels" are generated: GBK-encoded .txt files of short sentences ending
with '。', read back exactly as the original reads Jin Yong's novels. Checks (not in the original): the
loss falls, every continuation is a str that starts with its prompt, and the best weights saved by the
evaluator load back to the same predictions.
"""
from __future__ import print_function
import glob, re
import json, os
import numpy as np
from tqdm import tqdm
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

maxlen = 16
batch_size = 16
steps_per_epoch = 8
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# ---- tiny "novels" in the original's layout: <dir>/<book>/<chapter>.txt, GBK-encoded -------------
_chars = tiny.vocab_chars(dict_path)[:30]
for _book in range(2):
    os.makedirs(tiny.data_path('novels/book%d' % _book), exist_ok=True)
    for _chapter in range(3):
        _sents = [''.join(np.random.choice(_chars, np.random.randint(3, 7))) + u'。' for _ in range(40)]
        with open(tiny.data_path('novels/book%d/%d.txt' % (_book, _chapter)), 'w', encoding='gbk') as f:
            f.write(u'\u3000\u3000' + ''.join(_sents[:20]) + u'\r\n\u3000\u3000' + ''.join(_sents[20:]))

novels = []

for txt in glob.glob(tiny.data_path('novels/*/*.txt')):
    txt = open(txt, encoding='gbk').read()
    txt = txt.replace('\r', '').replace('\n', '')
    txt = txt.replace(u'整理制作，并提供下载', '')
    txt = re.sub(u'www.*?com', '', txt)
    txt = txt.replace(u'\u3000', ' ')
    sents = []
    for t in txt.split('  '):
        for s in re.findall(u'.*?。', t):
            if len(s) <= maxlen - 2:
                sents.append(s)
    novels.append(sents)

# 加载并精简词表，建立分词器
token_dict, keep_tokens = load_vocab(
    dict_path=dict_path,
    simplified=True,
    startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'],
)
tokenizer = Tokenizer(token_dict, do_lower_case=True)

data = []
pbar = tqdm(desc=u'构建语料中', total=sum(len(n) for n in novels))

for novel in novels:
    s = u''
    for i in range(len(novel)):
        for j in range(len(novel) - i):
            if len(s) + len(novel[i + j]) > maxlen - 2:
                data.append(s)
                s = u''
                break
            else:
                s += novel[i + j]
        pbar.update(1)
        if i + j >= len(novel):
            break
    if s:
        data.append(s)

pbar.close()
np.random.shuffle(data)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, text in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(text)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                yield [batch_token_ids, batch_segment_ids], None
                batch_token_ids, batch_segment_ids = [], []


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


model = build_transformer_model(
    config_path,
    checkpoint_path,
    application='lm',
    keep_tokens=keep_tokens,  # 只保留keep_tokens中的字，精简原字表
)

output = CrossEntropy(1)([model.inputs[0], model.outputs[0]])

model = Model(model.inputs, output)
model.compile(optimizer=Adam(1e-3))
model.summary()


class StoryCompletion(AutoRegressiveDecoder):
    """基于随机采样的故事续写
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids = inputs[0]
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.zeros_like(token_ids)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text, n=1, topp=0.95):
        token_ids, _ = tokenizer.encode(text)
        results = self.random_sample([token_ids[:-1]], n, topp=topp)  # 基于随机采样
        return [text + tokenizer.decode(ids) for ids in results]


story_completion = StoryCompletion(
    start_id=None, end_id=tokenizer._token_end_id, maxlen=maxlen
)


def just_show():
    s1, s2, s3 = novels[0][0], novels[0][1], novels[1][0]
    for s in [s1, s2, s3]:
        t = story_completion.generate(s)
        print(u'输入: %s' % s)
        print(u'结果: %s\n' % ('\n'.join(t)))


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
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    assert len(data) > batch_size and all(0 < len(d) <= maxlen - 2 for d in data), len(data)
    prompt = novels[1][1]
    continuations = story_completion.generate(prompt, n=2)
    assert len(continuations) == 2, continuations
    assert all(isinstance(t, str) and t.startswith(prompt) for t in continuations), continuations

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]), 'corpus_pieces': len(data),
        'continuation': continuations[0],
    }, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
