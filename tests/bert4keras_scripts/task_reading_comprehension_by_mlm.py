#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_reading_comprehension_by_mlm.py: extractive reading comprehension
as masked language modelling — [CLS][MASK]*max_a_len[SEP]question[SEP]passage[SEP], the MLM head fills
the masks with the answer, decoded greedily under the constraint that the answer is an n-gram of the
passage.

Changed besides imports, paths and sizes: the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random
model learns something in 2 short epochs), Keras 3's `.weights.h5` suffix for the saved weights, and
the random order is kept in the work folder instead of '../random_order.json'. WebQA.json / SogouQA.json
are generated in the dgcnn_for_reading_comprehension format ([{'id', 'question', 'passages':
[{'passage', 'answer'}]}]). The original scores predict_to_file's output with an external script;
here the exact-match accuracy on valid_data is computed in the checks. Checks (not in the original):
the loss falls, every answer `gen_answer` returns is a piece of one of its passages (the n-gram
constraint), its scores are in [0, 1], the accuracy is in [0, 1], `predict_to_file` writes one
"id\tanswer" line per question, and the best weights saved by the evaluator load back to the same
predictions.
"""
import json, os, re
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open
from keras.layers import Lambda
from keras.models import Model
from tqdm import tqdm

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

max_p_len = 24
max_q_len = 8
max_a_len = 4
batch_size = 16
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()


# ---- tiny WebQA / SogouQA files ------------------------------------------------------------------
def _make_qa(n, chars, prefix):
    samples = []
    for i in range(n):
        passages = []
        for _ in range(2):
            passage = ''.join(np.random.choice(chars, np.random.randint(12, 20))) + u'。'
            start = np.random.randint(0, 8)
            passages.append({'passage': passage, 'answer': passage[start:start + 2]})
        passages.append({'passage': ''.join(np.random.choice(chars, 10)) + u'。', 'answer': ''})
        answer = passages[0]['answer']
        samples.append({'id': '%s%d' % (prefix, i), 'question': answer[0] + u'什么是' + answer[1] + u'？',
                        'passages': passages})
    return samples


_chars = tiny.vocab_chars(dict_path)[:40]
os.makedirs(tiny.data_path('qa'), exist_ok=True)
for _name in ['WebQA', 'SogouQA']:
    with open(tiny.data_path('qa/%s.json' % _name), 'w', encoding='utf-8') as f:
        json.dump(_make_qa(24, _chars, _name), f, ensure_ascii=False)

# 标注数据
webqa_data = json.load(open(tiny.data_path('qa/WebQA.json')))
sogou_data = json.load(open(tiny.data_path('qa/SogouQA.json')))

# 保存一个随机序（供划分valid用）
if not os.path.exists(tiny.data_path('random_order_sogou.json')):
    random_order = list(range(len(sogou_data)))
    np.random.shuffle(random_order)
    json.dump(random_order, open(tiny.data_path('random_order_sogou.json'), 'w'), indent=4)
else:
    random_order = json.load(open(tiny.data_path('random_order_sogou.json')))

# 划分valid
train_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 != 0]
valid_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 == 0]
train_data.extend(train_data)
train_data.extend(webqa_data)  # 将SogouQA和WebQA按2:1的比例混合

# 加载并精简词表，建立分词器
token_dict, keep_tokens = load_vocab(
    dict_path=dict_path,
    simplified=True,
    startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'],
)
tokenizer = Tokenizer(token_dict, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        """单条样本格式为
        输入：[CLS][MASK][MASK][SEP]问题[SEP]篇章[SEP]
        输出：答案
        """
        batch_token_ids, batch_segment_ids, batch_a_token_ids = [], [], []
        for is_end, D in self.sample(random):
            question = D['question']
            answers = [p['answer'] for p in D['passages'] if p['answer']]
            passage = np.random.choice(D['passages'])['passage']
            passage = re.sub(u' |、|；|，', ',', passage)
            final_answer = ''
            for answer in answers:
                if all([
                    a in passage[:max_p_len - 2] for a in answer.split(' ')
                ]):
                    final_answer = answer.replace(' ', ',')
                    break
            a_token_ids, _ = tokenizer.encode(
                final_answer, maxlen=max_a_len + 1
            )
            q_token_ids, _ = tokenizer.encode(question, maxlen=max_q_len + 1)
            p_token_ids, _ = tokenizer.encode(passage, maxlen=max_p_len + 1)
            token_ids = [tokenizer._token_start_id]
            token_ids += ([tokenizer._token_mask_id] * max_a_len)
            token_ids += [tokenizer._token_end_id]
            token_ids += (q_token_ids[1:] + p_token_ids[1:])
            segment_ids = [0] * len(token_ids)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_a_token_ids.append(a_token_ids[1:])
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_a_token_ids = sequence_padding(
                    batch_a_token_ids, max_a_len
                )
                yield [batch_token_ids, batch_segment_ids], batch_a_token_ids
                batch_token_ids, batch_segment_ids, batch_a_token_ids = [], [], []


model = build_transformer_model(
    config_path,
    checkpoint_path,
    with_mlm=True,
    keep_tokens=keep_tokens,  # 只保留keep_tokens中的字，精简原字表
)
output = Lambda(lambda x: x[:, 1:max_a_len + 1])(model.output)
model = Model(model.input, output)
model.summary()


def masked_cross_entropy(y_true, y_pred):
    """交叉熵作为loss，并mask掉padding部分的预测
    """
    y_true = K.reshape(y_true, [K.shape(y_true)[0], -1])
    y_mask = K.cast(K.not_equal(y_true, 0), K.floatx())
    cross_entropy = K.sparse_categorical_crossentropy(y_true, y_pred)
    cross_entropy = K.sum(cross_entropy * y_mask) / K.sum(y_mask)
    return cross_entropy


model.compile(loss=masked_cross_entropy, optimizer=Adam(1e-3))


def get_ngram_set(x, n):
    """生成ngram合集，返回结果格式是:
    {(n-1)-gram: set([n-gram的第n个字集合])}
    """
    result = {}
    for i in range(len(x) - n + 1):
        k = tuple(x[i:i + n])
        if k[:-1] not in result:
            result[k[:-1]] = set()
        result[k[:-1]].add(k[-1])
    return result


def gen_answer(question, passages):
    """由于是MLM模型，所以可以直接argmax解码。
    """
    all_p_token_ids, token_ids, segment_ids = [], [], []
    for passage in passages:
        passage = re.sub(u' |、|；|，', ',', passage)
        p_token_ids, _ = tokenizer.encode(passage, maxlen=max_p_len + 1)
        q_token_ids, _ = tokenizer.encode(question, maxlen=max_q_len + 1)
        all_p_token_ids.append(p_token_ids[1:])
        token_ids.append([tokenizer._token_start_id])
        token_ids[-1] += ([tokenizer._token_mask_id] * max_a_len)
        token_ids[-1] += [tokenizer._token_end_id]
        token_ids[-1] += (q_token_ids[1:] + p_token_ids[1:])
        segment_ids.append([0] * len(token_ids[-1]))
    token_ids = sequence_padding(token_ids)
    segment_ids = sequence_padding(segment_ids)
    probas = model.predict([token_ids, segment_ids])
    results = {}
    for t, p in zip(all_p_token_ids, probas):
        a, score = tuple(), 0.
        for i in range(max_a_len):
            idxs = list(get_ngram_set(t, i + 1)[a])
            if tokenizer._token_end_id not in idxs:
                idxs.append(tokenizer._token_end_id)
            # pi是将passage以外的token的概率置零
            pi = np.zeros_like(p[i])
            pi[idxs] = p[i, idxs]
            a = a + (pi.argmax(),)
            score += pi.max()
            if a[-1] == tokenizer._token_end_id:
                break
        score = score / (i + 1)
        a = tokenizer.decode(a)
        if a:
            results[a] = results.get(a, []) + [score]
    results = {
        k: (np.array(v)**2).sum() / (sum(v) + 1)
        for k, v in results.items()
    }
    return results


def max_in_dict(d):
    if d:
        return sorted(d.items(), key=lambda s: -s[1])[0][0]


def predict_to_file(data, filename):
    """将预测结果输出到文件，方便评估
    """
    with open(filename, 'w', encoding='utf-8') as f:
        for d in tqdm(iter(data), desc=u'正在预测(共%s条样本)' % len(data)):
            q_text = d['question']
            p_texts = [p['passage'] for p in d['passages']]
            a = gen_answer(q_text, p_texts)
            a = max_in_dict(a)
            if a:
                s = u'%s\t%s\n' % (d['id'], a)
            else:
                s = u'%s\t\n' % (d['id'])
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
    correct = 0
    for d in valid_data:
        passages = [p['passage'] for p in d['passages']]
        answers = gen_answer(d['question'], passages)
        for a, score in answers.items():
            # decoding only follows n-grams of a passage, so an answer is a piece of one of them
            assert any(a in re.sub(u' |、|；|，', ',', p) for p in passages), (a, passages)
            assert 0 <= score <= 1, score
        gold = [p['answer'] for p in d['passages'] if p['answer']]
        correct += max_in_dict(answers) in gold
    accuracy = correct / len(valid_data)
    assert 0 <= accuracy <= 1
    predict_to_file(valid_data, 'reading_comprehension.txt')
    lines = open('reading_comprehension.txt', encoding='utf-8').read().rstrip('\n').split('\n')
    assert [l.split('\t')[0] for l in lines] == [d['id'] for d in valid_data], lines

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]), 'valid_accuracy': accuracy,
        'train': len(train_data), 'valid': len(valid_data),
    }))

else:

    model.load_weights('./best_model.weights.h5')
