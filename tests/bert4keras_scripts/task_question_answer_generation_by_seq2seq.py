#! -*- coding: utf-8- -*-
"""Port of bert4keras examples/task_question_answer_generation_by_seq2seq.py: build reading-comprehension
data with UniLM seq2seq — sample an answer from a passage, then beam-search a question for it.

Changed besides imports, paths and sizes: the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random
model learns something in 2 short epochs), Keras 3's `.weights.h5` suffix for the saved weights, and
the random order is kept in the work folder instead of '../random_order.json'. WebQA.json / SogouQA.json
are generated in the dgcnn_for_reading_comprehension format ([{'question', 'passages': [{'passage',
'answer'}]}]; the answer is a piece of the passage). Checks (not in the original): the loss falls,
`qag.generate` returns a (question, answer) pair of str with at most `max_q_len` tokens each,
`predict_to_file` writes one "question\tanswer\tpassage" line per sample, and the best weights saved
by the evaluator load back to the same predictions.
"""
import json, os
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from bert4keras_ext.snippets import text_segmentate
from keras.models import Model
from tqdm import tqdm

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

# 基本参数
max_p_len = 24
max_q_len = 8
max_a_len = 4
batch_size = 16
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()


# ---- tiny WebQA / SogouQA files ------------------------------------------------------------------
def _make_qa(n, chars):
    samples = []
    for i in range(n):
        passages = []
        for _ in range(2):
            passage = ''.join(np.random.choice(chars, np.random.randint(12, 20))) + u'。'
            start = np.random.randint(0, 8)
            passages.append({'passage': passage, 'answer': passage[start:start + 2]})
        passages.append({'passage': ''.join(np.random.choice(chars, 10)) + u'。', 'answer': ''})
        answer = passages[0]['answer']
        samples.append({'id': 'q%d' % i, 'question': answer[0] + u'什么是' + answer[1] + u'？',
                        'passages': passages})
    return samples


_chars = tiny.vocab_chars(dict_path)[:40]
os.makedirs(tiny.data_path('qa'), exist_ok=True)
for _name in ['WebQA', 'SogouQA']:
    with open(tiny.data_path('qa/%s.json' % _name), 'w', encoding='utf-8') as f:
        json.dump(_make_qa(30, _chars), f, ensure_ascii=False)

# 标注数据
webqa_data = json.load(open(tiny.data_path('qa/WebQA.json')))
sogou_data = json.load(open(tiny.data_path('qa/SogouQA.json')))

# 筛选数据
seps, strips = u'\n。！？!?；;，, ', u'；;，, '
data = []
for d in webqa_data + sogou_data:
    for p in d['passages']:
        if p['answer']:
            for t in text_segmentate(p['passage'], max_p_len - 2, seps, strips):
                if p['answer'] in t:
                    data.append((t, d['question'], p['answer']))

del webqa_data
del sogou_data

# 保存一个随机序（供划分valid用）
if not os.path.exists(tiny.data_path('random_order.json')):
    random_order = list(range(len(data)))
    np.random.shuffle(random_order)
    json.dump(random_order, open(tiny.data_path('random_order.json'), 'w'), indent=4)
else:
    random_order = json.load(open(tiny.data_path('random_order.json')))

# 划分valid
train_data = [data[j] for i, j in enumerate(random_order) if i % 10 != 0]
valid_data = [data[j] for i, j in enumerate(random_order) if i % 10 == 0]

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
        """单条样本格式：[CLS]篇章[SEP]答案[SEP]问题[SEP]
        """
        batch_token_ids, batch_segment_ids = [], []
        for is_end, (p, q, a) in self.sample(random):
            p_token_ids, _ = tokenizer.encode(p, maxlen=max_p_len + 1)
            a_token_ids, _ = tokenizer.encode(a, maxlen=max_a_len)
            q_token_ids, _ = tokenizer.encode(q, maxlen=max_q_len)
            token_ids = p_token_ids + a_token_ids[1:] + q_token_ids[1:]
            segment_ids = [0] * len(p_token_ids)
            segment_ids += [1] * (len(token_ids) - len(p_token_ids))
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


class QuestionAnswerGeneration(AutoRegressiveDecoder):
    """随机生成答案，并且通过beam search来生成问题
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, passage, topk=1, topp=0.95):
        token_ids, segment_ids = tokenizer.encode(passage, maxlen=max_p_len)
        a_ids = self.random_sample([token_ids, segment_ids], 1,
                                   topp=topp)[0]  # 基于随机采样
        token_ids += list(a_ids)
        segment_ids += [1] * len(a_ids)
        q_ids = self.beam_search([token_ids, segment_ids],
                                 topk=topk)  # 基于beam search
        return (tokenizer.decode(q_ids), tokenizer.decode(a_ids))


qag = QuestionAnswerGeneration(
    start_id=None, end_id=tokenizer._token_end_id, maxlen=max_q_len
)


def predict_to_file(data, filename, topk=1):
    """将预测结果输出到文件，方便评估
    """
    with open(filename, 'w', encoding='utf-8') as f:
        for d in tqdm(iter(data), desc=u'正在预测(共%s条样本)' % len(data)):
            q, a = qag.generate(d[0])
            s = '%s\t%s\t%s\n' % (q, a, d[0])
            f.write(s)
            f.flush()


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


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


if __name__ == '__main__':

    evaluator = Evaluator()
    train_generator = data_generator(train_data, batch_size)

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    assert all(a in p for p, q, a in data) and len(valid_data) >= 2, len(valid_data)
    q, a = qag.generate(valid_data[0][0], topk=3)
    assert isinstance(q, str) and isinstance(a, str), (q, a)
    assert len(tokenizer.tokenize(q)) - 2 <= max_q_len and len(tokenizer.tokenize(a)) - 2 <= max_q_len, (q, a)
    predict_to_file(valid_data[:2], 'qa.csv')
    lines = open('qa.csv', encoding='utf-8').read().rstrip('\n').split('\n')
    assert len(lines) == 2 and all(l.split('\t')[2] == d[0] for l, d in zip(lines, valid_data)), lines

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]), 'train': len(train_data),
        'valid': len(valid_data), 'question': q, 'answer': a,
    }, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
    # predict_to_file(valid_data, 'qa.csv')
