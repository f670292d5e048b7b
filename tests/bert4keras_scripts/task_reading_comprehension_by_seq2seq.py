#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_reading_comprehension_by_seq2seq.py: reading comprehension as UniLM
seq2seq ("[CLS]passage[SEP]question[SEP]answer[SEP]"), answered by a beam search that votes over several
passages, drops the passages whose first prediction is [SEP] (no answer), and in 'extractive' mode only
allows continuations that are n-grams of a passage.

Written after bert4keras' current example (0.11.x API: `@AutoRegressiveDecoder.wraps(default_rtype=
'probas', use_states=True)` with the step count as the decoder state, `beam_search(..., states=0)`,
`tokenizer.encode(..., maxlen=...)`, `model.fit`); the older revision in the search index still has
`set_rtype` / `max_length` / `fit_generator`, which 0.11.5 no longer has either.
Changed besides imports, paths and sizes: Adam(1e-5) -> Adam(1e-3) (a tiny random model, 3 short
epochs), './best_model.weights' -> './best_model.weights.h5', and random_order.json is written in the
work folder instead of '../'. The WebQA / SogouQA files are generated in their format (a json list of
{'id', 'question', 'passages': [{'passage', 'answer'}]}), the answer a span of its passage or ''.
Checks (not in the original): the loss falls; every answer is a str and, being extractive, a substring of
one of its passages (or ''); predict_to_file writes one "id<TAB>answer" line per question; a question
whose passages all answer [SEP] first gets '', and with a stand-in model of random probabilities
(where [SEP] is unlikely) the answers are non-empty passage pieces; the best weights load back to the same predictions.
"""
# 用seq2seq的方式做阅读理解任务
# 数据集和评测同 https://github.com/bojone/dgcnn_for_reading_comprehension

import json, os, re
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from keras.models import Model
from tqdm import tqdm

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

max_p_len = 24
max_q_len = 8
max_a_len = 6
max_qa_len = max_q_len + max_a_len
batch_size = 16
epochs = 3

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()


def write_qa_file(filename, n, seed):
    """A small WebQA / SogouQA-format file: the answer is the 3 characters after the marker '是'."""
    rng = np.random.RandomState(seed)
    chars = tiny.vocab_chars(dict_path)
    filler = [c for c in chars[100:260] if c != u'是']
    data = []
    for i in range(n):
        question = u''.join(rng.choice(filler, rng.randint(3, 6))) + u'是什么'
        answer = u''.join(rng.choice(filler, 3))
        passages = []
        for j in range(rng.randint(1, 4)):
            left, right = rng.choice(filler, rng.randint(2, 8)), rng.choice(filler, rng.randint(2, 8))
            if j == 0 or rng.rand() < 0.5:
                passages.append({'passage': u''.join(left) + u'是' + answer + u''.join(right),
                                 'answer': answer})
            else:
                passages.append({'passage': u''.join(left) + u'，' + u''.join(right), 'answer': ''})
        data.append({'id': '%s_%d' % (os.path.basename(filename), i), 'question': question,
                     'passages': passages})
    with open(filename, 'w', encoding='utf-8') as f:
        json.dump(data, f, ensure_ascii=False)
    return filename


# 标注数据
webqa_data = json.load(open(write_qa_file(tiny.data_path('WebQA.json'), 40, 0)))
sogou_data = json.load(open(write_qa_file(tiny.data_path('SogouQA.json'), 60, 1)))

# 保存一个随机序（供划分valid用）
if not os.path.exists(tiny.data_path('random_order.json')):
    random_order = list(range(len(sogou_data)))
    np.random.shuffle(random_order)
    json.dump(random_order, open(tiny.data_path('random_order.json'), 'w'), indent=4)
else:
    random_order = json.load(open(tiny.data_path('random_order.json')))

# 划分valid
train_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 != 0]
valid_data = [sogou_data[j] for i, j in enumerate(random_order) if i % 3 == 0]
train_data.extend(train_data)
train_data.extend(webqa_data)  # 将SogouQA和WebQA按2:1的比例混合

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
        """单条样本格式：[CLS]篇章[SEP]问题[SEP]答案[SEP]
        """
        batch_token_ids, batch_segment_ids = [], []
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
            qa_token_ids, qa_segment_ids = tokenizer.encode(
                question, final_answer, maxlen=max_qa_len + 1
            )
            p_token_ids, p_segment_ids = tokenizer.encode(
                passage, maxlen=max_p_len
            )
            token_ids = p_token_ids + qa_token_ids[1:]
            segment_ids = p_segment_ids + qa_segment_ids[1:]
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


class ReadingComprehension(AutoRegressiveDecoder):
    """beam search解码来生成答案
    passages为多篇章组成的list，从多篇文章中自动决策出最优的答案，
    如果没答案，则返回空字符串。
    mode是extractive时，按照抽取式执行，即答案必须是原篇章的一个片段。
    """
    def __init__(self, mode='extractive', **kwargs):
        super(ReadingComprehension, self).__init__(**kwargs)
        self.mode = mode

    def get_ngram_set(self, x, n):
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

    @AutoRegressiveDecoder.wraps(default_rtype='probas', use_states=True)
    def predict(self, inputs, output_ids, states):
        inputs = [i for i in inputs if i[0, 0] > -1]  # 过滤掉无答案篇章
        topk = len(inputs[0])
        all_token_ids, all_segment_ids = [], []
        for token_ids in inputs:  # inputs里每个元素都代表一个篇章
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.zeros_like(token_ids)
            if states > 0:
                segment_ids[:, -output_ids.shape[1]:] = 1
            all_token_ids.extend(token_ids)
            all_segment_ids.extend(segment_ids)
        padded_all_token_ids = sequence_padding(all_token_ids)
        padded_all_segment_ids = sequence_padding(all_segment_ids)
        probas = model.predict([padded_all_token_ids, padded_all_segment_ids])
        probas = [
            probas[i, len(ids) - 1] for i, ids in enumerate(all_token_ids)
        ]
        probas = np.array(probas).reshape((len(inputs), topk, -1))
        if states == 0:
            # 这一步主要是排除没有答案的篇章
            # 如果一开始最大值就为end_id，那说明该篇章没有答案
            argmax = probas[:, 0].argmax(axis=1)
            available_idxs = np.where(argmax != self.end_id)[0]
            if len(available_idxs) == 0:
                scores = np.zeros_like(probas[0])
                scores[:, self.end_id] = 1
                return scores, states + 1
            else:
                for i in np.where(argmax == self.end_id)[0]:
                    inputs[i][:, 0] = -1  # 无答案篇章首位标记为-1
                probas = probas[available_idxs]
                inputs = [i for i in inputs if i[0, 0] > -1]  # 过滤掉无答案篇章
        if self.mode == 'extractive':
            # 如果是抽取式，那么答案必须是篇章的一个片段
            # 那么将非篇章片段的概率值全部置0
            new_probas = np.zeros_like(probas)
            ngrams = {}
            for token_ids in inputs:
                token_ids = token_ids[0]
                sep_idx = np.where(token_ids == tokenizer._token_end_id)[0][0]
                p_token_ids = token_ids[1:sep_idx]
                for k, v in self.get_ngram_set(p_token_ids, states + 1).items():
                    ngrams[k] = ngrams.get(k, set()) | v
            for i, ids in enumerate(output_ids):
                available_idxs = ngrams.get(tuple(ids), set())
                available_idxs.add(tokenizer._token_end_id)
                available_idxs = list(available_idxs)
                new_probas[:, i, available_idxs] = probas[:, i, available_idxs]
            probas = new_probas
        return (probas**2).sum(0) / (probas.sum(0) + 1), states + 1  # 某种平均投票方式

    def answer(self, question, passages, topk=1):
        token_ids = []
        for passage in passages:
            passage = re.sub(u' |、|；|，', ',', passage)
            p_token_ids = tokenizer.encode(passage, maxlen=max_p_len)[0]
            q_token_ids = tokenizer.encode(question, maxlen=max_q_len + 1)[0]
            token_ids.append(p_token_ids + q_token_ids[1:])
        output_ids = self.beam_search(
            token_ids, topk=topk, states=0
        )  # 基于beam search
        return tokenizer.decode(output_ids)


reader = ReadingComprehension(
    start_id=None,
    end_id=tokenizer._token_end_id,
    maxlen=max_a_len,
    mode='extractive'
)


def predict_to_file(data, filename, topk=1):
    """将预测结果输出到文件，方便评估
    """
    with open(filename, 'w', encoding='utf-8') as f:
        for d in tqdm(iter(data), desc=u'正在预测(共%s条样本)' % len(data)):
            q_text = d['question']
            p_texts = [p['passage'] for p in d['passages']]
            a = reader.answer(q_text, p_texts, topk)
            if a:
                s = u'%s\t%s\n' % (d['id'], a)
            else:
                s = u'%s\t\n' % (d['id'])
            f.write(s)
            f.flush()


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluate(keras.callbacks.Callback):
    def __init__(self):
        self.lowest = 1e10

    def on_epoch_end(self, epoch, logs=None):
        # 保存最优
        if logs['loss'] <= self.lowest:
            self.lowest = logs['loss']
            model.save_weights('./best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)


if __name__ == '__main__':

    evaluator = Evaluate()
    train_generator = data_generator(train_data, batch_size)

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses

    def normalised(passage):
        return re.sub(u' |、|；|，', ',', passage)

    def is_piece(a, passages, limit=None):
        # tokenizer.decode puts a space after ',' as bert4keras' does: compare without spaces
        return any(a.replace(' ', '') in normalised(p['passage'])[:limit] for p in passages)

    sample = valid_data[:6]
    pred_file = tiny.data_path('valid_predictions.txt')
    predict_to_file(sample, pred_file, topk=2)
    lines = open(pred_file, encoding='utf-8').read().split('\n')[:-1]
    assert len(lines) == len(sample), lines
    answers = []
    for d, line in zip(sample, lines):
        qid, a = line.split('\t')
        assert qid == d['id'], (qid, d['id'])
        assert isinstance(a, str) and len(a) <= max_a_len, a
        # extractive: an answer is a piece of one of the (truncated) passages
        assert a == '' or is_piece(a, d['passages'], max_p_len - 2), (a, d)
        answers.append(a)
    for topk in [1, 3]:
        a = reader.answer(sample[0]['question'], [p['passage'] for p in sample[0]['passages']], topk)
        assert isinstance(a, str)
        assert a == '' or is_piece(a, sample[0]['passages']), a

    # a passage whose first prediction is [SEP] has no answer: when all of them do, the answer is ''
    class NoAnswerModel(object):
        """Stands in for `model` and puts all the probability on [SEP] everywhere."""
        def predict(self, inputs):
            probas = np.zeros(inputs[0].shape + (len(token_dict),))
            probas[..., tokenizer._token_end_id] = 1
            return probas

    class RandomModel(object):
        """Stands in for `model` with random next-token probabilities, [SEP] unlikely: no passage is
        dropped, and every answer comes through the extractive n-gram filter."""
        rng = np.random.RandomState(0)

        def predict(self, inputs):
            probas = self.rng.uniform(0.5, 1, inputs[0].shape + (len(token_dict),))
            probas[..., tokenizer._token_end_id] = 1e-3
            return probas / probas.sum(axis=-1, keepdims=True)
    trained_model = model
    model = NoAnswerModel()
    assert reader.answer(sample[0]['question'], [p['passage'] for p in sample[0]['passages']], 2) == ''
    model = RandomModel()
    random_answers = []
    for d in sample:
        a = reader.answer(d['question'], [p['passage'] for p in d['passages']], 2)
        assert len(a) >= 1 and is_piece(a, d['passages']), (a, d)
        random_answers.append(a)
    model = trained_model

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({'loss': [round(float(l), 4) for l in losses], 'answers': answers,
                                'random_model_answers': random_answers},
                               ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
