#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_seq2seq_ape210k_math_word_problem.py: solving primary-school math word
problems by generating the equation with UniLM seq2seq (`Loss` layer, `AutoRegressiveDecoder` beam
search), evaluated by `eval`-ing the generated equation.

Changed besides imports, paths and sizes: Adam(2e-5) -> Adam(1e-3) (a tiny random model, 3 short
epochs), './best_model.weights' -> './best_model.weights.h5'; and `import pandas as pd` falls back to a
small csv reader when pandas is not installed (pandas is not a dependency of this package; the original
only uses `pd.read_csv(...).values` in `predict`); the regular expressions are raw strings (the same
patterns, without Python 3.12's invalid-escape warnings). The ape210k files are generated in their format (json
lines with 'id', 'original_text', 'equation', 'ans'), single-digit numbers (the tiny vocabulary has
no '##0'-style pieces), with the cases load_data normalises: mixed numbers "3(1/2)", percentages, 'x='
and redundant brackets, and one line whose answer disagrees with its equation (dropped).
Checks (not in the original): load_data's normalisation on hand-worked lines; the loss falls; the
accuracy lies in [0, 1]; generated equations are str without spaces; `predict` writes one "id,answer"
line per question; the best weights load back to the same predictions.
"""
# 用Seq2Seq做小学数学应用题
# 数据集为ape210k：https://github.com/Chenny0808/ape210k
# 介绍链接：https://kexue.fm/archives/7809

from __future__ import division
import json, re
import numpy as np
try:
    import pandas as pd
except ImportError:  # (not in the original) see the docstring
    pd = None
from tqdm import tqdm
from bert4keras_ext.backend import keras, K
from bert4keras_ext.layers import Loss
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, open
from bert4keras_ext.snippets import DataGenerator, AutoRegressiveDecoder
from keras.models import Model
from sympy import Integer

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

if pd is None:
    import csv

    class pd(object):
        """(not in the original) the one pandas call of `predict`: read_csv(...).values."""
        class DataFrame(object):
            def __init__(self, rows):
                self.values = np.array(rows, dtype=object)

        @staticmethod
        def read_csv(filename, header=None, encoding='utf-8'):
            assert header is None
            with open(filename, encoding=encoding) as f:
                return pd.DataFrame([row for row in csv.reader(f) if row])

# 基本参数
maxlen = 40
batch_size = 16
epochs = 3

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()


def write_ape_file(filename, n, seed):
    """ape210k-format json lines: a few question templates over single-digit numbers."""
    rng = np.random.RandomState(seed)
    names = tiny.vocab_chars(dict_path)[300:400]
    lines = []
    for i in range(n):
        name = u''.join(rng.choice(names, 2))
        a, b = rng.randint(2, 10), rng.randint(1, 10)
        kind = i % 4
        if kind == 0:
            l = (u'%s有%d本书，又买了%d本，一共有几本？' % (name, a, b), 'x=%d+%d' % (a, b), str(a + b))
        elif kind == 1:
            a, b = max(a, b), min(a, b)
            l = (u'%s有%d元钱，吃了%d元，还有多少元？' % (name, a, b), 'x=(%d-%d)' % (a, b), str(a - b))
        elif kind == 2:
            l = (u'%s每天买%d本书，%d天一共买几本？' % (name, a, b), 'x=%d*%d' % (a, b), str(a * b))
        else:
            l = (u'%s有%d(1/2)本书，又买了%d本，一共有几本？' % (name, a, b), 'x=%d(1/2)+%d' % (a, b),
                 '%d(1/2)' % (a + b))
        lines.append({'id': str(i), 'original_text': l[0], 'equation': l[1], 'ans': l[2]})
    # a percentage, and an answer that disagrees with its equation (load_data drops it)
    lines.append({'id': str(n), 'original_text': u'有8元钱，用了5%，还有多少元？', 'equation': 'x=8*(1-5%)',
                  'ans': '7.6'})
    lines.append({'id': str(n + 1), 'original_text': u'有8元钱，还有多少元？', 'equation': 'x=8', 'ans': '9'})
    with open(filename, 'w', encoding='utf-8') as f:
        for l in lines:
            f.write(json.dumps(l, ensure_ascii=False) + '\n')
    return filename


def is_equal(a, b):
    """比较两个结果是否相等
    """
    a = round(float(a), 6)
    b = round(float(b), 6)
    return a == b


def remove_bucket(equation):
    """去掉冗余的括号
    """
    l_buckets, buckets = [], []
    for i, c in enumerate(equation):
        if c == '(':
            l_buckets.append(i)
        elif c == ')':
            buckets.append((l_buckets.pop(), i))
    eval_equation = eval(equation)
    for l, r in buckets:
        new_equation = '%s %s %s' % (
            equation[:l], equation[l + 1:r], equation[r + 1:]
        )
        try:
            if is_equal(eval(new_equation.replace(' ', '')), eval_equation):
                equation = new_equation
        except:
            pass
    return equation.replace(' ', '')


def load_data(filename):
    """读取训练数据，并做一些标准化，保证equation是可以eval的
    参考：https://kexue.fm/archives/7809
    """
    D = []
    for l in open(filename):
        l = json.loads(l)
        question, equation, answer = l['original_text'], l['equation'], l['ans']
        # 处理带分数
        question = re.sub(r'(\d+)\((\d+/\d+)\)', '(\\1+\\2)', question)
        equation = re.sub(r'(\d+)\((\d+/\d+)\)', '(\\1+\\2)', equation)
        answer = re.sub(r'(\d+)\((\d+/\d+)\)', '(\\1+\\2)', answer)
        equation = re.sub(r'(\d+)\(', '\\1+(', equation)
        answer = re.sub(r'(\d+)\(', '\\1+(', answer)
        # 分数去括号
        question = re.sub(r'\((\d+/\d+)\)', '\\1', question)
        # 处理百分数
        equation = re.sub(r'([\.\d]+)%', '(\\1/100)', equation)
        answer = re.sub(r'([\.\d]+)%', '(\\1/100)', answer)
        # 冒号转除号、剩余百分号处理
        equation = equation.replace(':', '/').replace('%', '/100')
        answer = answer.replace(':', '/').replace('%', '/100')
        if equation[:2] == 'x=':
            equation = equation[2:]
        try:
            if is_equal(eval(equation), eval(answer)):
                D.append((question, remove_bucket(equation), answer))
        except:
            continue
    return D


# 加载数据集
train_data = load_data(write_ape_file(tiny.data_path('train.ape.json'), 120, 0))
valid_data = load_data(write_ape_file(tiny.data_path('valid.ape.json'), 5, 1))
test_data = load_data(write_ape_file(tiny.data_path('test.ape.json'), 5, 2))

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
        for is_end, (question, equation, answer) in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(
                question, equation, maxlen=maxlen
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


class AutoSolve(AutoRegressiveDecoder):
    """seq2seq解码器
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return self.last_token(model).predict([token_ids, segment_ids])

    def generate(self, text, topk=1):
        token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
        output_ids = self.beam_search([token_ids, segment_ids],
                                      topk=topk)  # 基于beam search
        return tokenizer.decode(output_ids).replace(' ', '')


autosolve = AutoSolve(start_id=None, end_id=tokenizer._token_end_id, maxlen=6)

# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_acc = 0.

    def on_epoch_end(self, epoch, logs=None):
        metrics = self.evaluate(valid_data)  # 评测模型
        if metrics['acc'] >= self.best_acc:
            self.best_acc = metrics['acc']
            model.save_weights('./best_model.weights.h5')  # 保存模型
            self.best_probe = model.predict(probe_inputs)
        metrics['best_acc'] = self.best_acc
        print('valid_data:', metrics)

    def evaluate(self, data, topk=1):
        total, right = 0.0, 0.0
        for question, equation, answer in tqdm(data):
            total += 1
            pred_equation = autosolve.generate(question, topk)
            try:
                right += int(is_equal(eval(pred_equation), eval(answer)))
            except:
                pass
        return {'acc': right / total}


def predict(in_file, out_file, topk=1):
    """输出预测结果到文件
    该函数主要为比赛 https://www.datafountain.cn/competitions/467 所写，
    主要是读取该比赛的测试集，然后预测equation，并且根据不同的问题输出不同格式的答案，
    out_file可以直接提交到线上评测，线上准确率可以达到38%+。
    """
    fw = open(out_file, 'w', encoding='utf-8')
    raw_data = pd.read_csv(in_file, header=None, encoding='utf-8')
    for i, question in tqdm(raw_data.values):
        question = re.sub(r'(\d+)_(\d+/\d+)', '(\\1+\\2)', question)
        pred_equation = autosolve.generate(question, topk)
        if '.' not in pred_equation:
            pred_equation = re.sub(r'([\d]+)', 'Integer(\\1)', pred_equation)
        try:
            pred_answer = eval(pred_equation)
        except:
            pred_answer = np.random.choice(21) + 1
        if '.' in pred_equation:
            if u'百分之几' in question:
                pred_answer = pred_answer * 100
            pred_answer = round(pred_answer, 2)
            if int(pred_answer) == pred_answer:
                pred_answer = int(pred_answer)
            if (
                re.findall(u'多少[辆|人|个|只|箱|包本|束|头|盒|张]', question) or
                re.findall(u'几[辆|人|个|只|箱|包|本|束|头|盒|张]', question)
            ):
                if re.findall(u'至少|最少', question):
                    pred_answer = np.ceil(pred_answer)
                elif re.findall(u'至多|最多', question):
                    pred_answer = np.floor(pred_answer)
                else:
                    pred_answer = np.ceil(pred_answer)
                pred_answer = int(pred_answer)
            pred_answer = str(pred_answer)
            if u'百分之几' in question:
                pred_answer = pred_answer + '%'
        else:
            pred_answer = str(pred_answer)
            if '/' in pred_answer:
                if re.findall(r'\d+/\d+', question):
                    a, b = pred_answer.split('/')
                    a, b = int(a), int(b)
                    if a > b:
                        pred_answer = '%s_%s/%s' % (a // b, a % b, b)
                else:
                    if re.findall(u'至少|最少', question):
                        pred_answer = np.ceil(eval(pred_answer))
                    elif re.findall(u'至多|最多', question):
                        pred_answer = np.floor(eval(pred_answer))
                    else:
                        pred_answer = np.ceil(eval(pred_answer))
                    pred_answer = str(int(pred_answer))
        fw.write(str(i) + ',' + pred_answer + '\n')
        fw.flush()
    fw.close()


if __name__ == '__main__':

    evaluator = Evaluator()
    train_generator = data_generator(train_data, batch_size)

    history = model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=epochs,
        callbacks=[evaluator]
    )

    # ---- checks (not in the original) ----
    # load_data: 120 template lines + the percentage line kept, the disagreeing line dropped
    assert len(train_data) == 121 and len(valid_data) == len(test_data) == 6, (len(train_data), len(valid_data))
    by_equation = {}
    for question, equation, answer in train_data:
        by_equation.setdefault(equation, (question, answer))
    assert by_equation['8*(1-5/100)'][1] == '7.6', by_equation.get('8*(1-5/100)')
    mixed = [(q, e, a) for q, e, a in train_data if '1/2' in e]
    assert mixed and all(re.match(r'^\d\+1/2\+\d$', e) and re.match(r'^\(\d+\+1/2\)$', a) for q, e, a in mixed), mixed[:3]
    assert all(u'(1/2)' not in q and re.search(r'\(\d\+1/2\)', q) for q, e, a in mixed), mixed[:3]
    assert not any(e.startswith('(') for q, e, a in train_data if '-' in e), 'redundant brackets were kept'

    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    metrics = evaluator.evaluate(test_data[:4])
    assert 0.0 <= metrics['acc'] <= 1.0 and 0.0 <= evaluator.best_acc <= 1.0, metrics
    equations = [autosolve.generate(q, topk) for (q, e, a), topk in zip(test_data[:3], [1, 2, 3])]
    assert all(isinstance(e, str) and ' ' not in e for e in equations), equations

    in_file, out_file = tiny.data_path('test.csv'), tiny.data_path('submit.csv')
    with open(in_file, 'w', encoding='utf-8') as f:
        for i, (q, e, a) in enumerate(test_data[:4]):
            # the competition's mixed numbers are written 3_1/2 (predict turns them into (3+1/2))
            f.write(u'%d,%s\n' % (100 + i, re.sub(r'\((\d+)\+(\d+/\d+)\)', '\\1_\\2', q)))
    predict(in_file, out_file)
    rows = [l.split(',') for l in open(out_file, encoding='utf-8').read().split('\n') if l]
    assert [r[0] for r in rows] == ['100', '101', '102', '103'] and all(len(r) == 2 and r[1] for r in rows), rows

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({'loss': [round(float(l), 4) for l in losses], 'test_acc': metrics['acc'],
                                'equations': equations, 'submission': rows}, ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
