#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_relation_extraction.py: triple extraction with the "half pointer, half
tagging" model — a subject pointer, then object/predicate pointers conditioned on the subject through a
Conditional LayerNorm (`LayerNormalization(conditional=True)`) fed by `batch_gather`.

Changed besides imports, paths and sizes: `save_weights` / `load_weights` use the `.weights.h5` suffix
Keras 3 requires. `bert.model.layers[-2].get_output_at(-1)` is kept as written (Keras 3 layers have no
`get_output_at`; the package provides it). Sizes: the tiny checkpoint, maxlen 48, 4 epochs, batch 16,
learning rate 5e-3 (a random 32-wide model instead of BERT-base at 1e-5). The data is generated in the
DuIE (SKED) format — json lines {"text", "spo_list": [{"subject", "predicate", "object", ...}]} and the
all_50_schemas file — with subjects, objects and a predicate cue drawn from separate characters.
Checks added at the end: the loss falls, F1/precision/recall lie in [0, 1], `get_output_at(-1)` is the
last block's residual sum (the input of its final LayerNorm), the subject vector that `extract_subject`
gathers matches a numpy gather, the extracted triples are substrings of the text with known predicates,
and the saved best (EMA) weights load back to identical predictions.
"""
import json
import numpy as np
from bert4keras_ext.backend import keras, K, batch_gather
from bert4keras_ext.layers import Loss
from bert4keras_ext.layers import LayerNormalization
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam, extend_with_exponential_moving_average
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open, to_array
from keras.layers import Input, Dense, Lambda, Reshape
from keras.models import Model
from tqdm import tqdm

from tiny import bert_paths, data_path, vocab_chars

np.random.seed(42)
keras.utils.set_random_seed(42)

maxlen = 48
batch_size = 16
config_path, checkpoint_path, dict_path = bert_paths()

SCHEMAS = [(u'作者', u'图书作品', u'人物'), (u'出生地', u'人物', u'地点'), (u'导演', u'影视作品', u'人物')]


def write_duie(filename, num_texts, seed):
    """Texts with 1-2 triples in the DuIE json-lines format."""
    chars = vocab_chars(dict_path)
    subject_chars, object_chars, filler = chars[:60], chars[60:120], chars[200:400]
    cues = chars[120:120 + len(SCHEMAS)]  # one cue character per predicate
    rng = np.random.RandomState(seed)
    with open(filename, 'w', encoding='utf-8') as f:
        for _ in range(num_texts):
            text, spo_list = ''.join(rng.choice(filler, rng.randint(0, 4))), []
            for _ in range(rng.randint(1, 3)):
                p = rng.randint(len(SCHEMAS))
                s = ''.join(rng.choice(subject_chars, rng.randint(2, 4)))
                o = ''.join(rng.choice(object_chars, rng.randint(2, 4)))
                text += s + cues[p] + o + ''.join(rng.choice(filler, rng.randint(1, 4)))
                spo_list.append({'predicate': SCHEMAS[p][0], 'subject_type': SCHEMAS[p][1],
                                 'object_type': SCHEMAS[p][2], 'subject': s, 'object': o})
            f.write(json.dumps({'text': text, 'spo_list': spo_list}, ensure_ascii=False) + '\n')


write_duie(data_path('train_data.json'), 160, 1)
write_duie(data_path('dev_data.json'), 12, 2)
with open(data_path('all_50_schemas'), 'w', encoding='utf-8') as f:
    for p, s, o in SCHEMAS:
        f.write(json.dumps({'object_type': o, 'predicate': p, 'subject_type': s}, ensure_ascii=False) + '\n')


def load_data(filename):
    """加载数据
    单条格式：{'text': text, 'spo_list': [(s, p, o)]}
    """
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            l = json.loads(l)
            D.append({
                'text': l['text'],
                'spo_list': [(spo['subject'], spo['predicate'], spo['object'])
                             for spo in l['spo_list']]
            })
    return D


# 加载数据集
train_data = load_data(data_path('train_data.json'))
valid_data = load_data(data_path('dev_data.json'))
predicate2id, id2predicate = {}, {}

with open(data_path('all_50_schemas')) as f:
    for l in f:
        l = json.loads(l)
        if l['predicate'] not in predicate2id:
            id2predicate[len(predicate2id)] = l['predicate']
            predicate2id[l['predicate']] = len(predicate2id)

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)


def search(pattern, sequence):
    """从sequence中寻找子串pattern
    如果找到，返回第一个下标；否则返回-1。
    """
    n = len(pattern)
    for i in range(len(sequence)):
        if sequence[i:i + n] == pattern:
            return i
    return -1


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        batch_subject_labels, batch_subject_ids, batch_object_labels = [], [], []
        for is_end, d in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(d['text'], maxlen=maxlen)
            # 整理三元组 {s: [(o, p)]}
            spoes = {}
            for s, p, o in d['spo_list']:
                s = tokenizer.encode(s)[0][1:-1]
                p = predicate2id[p]
                o = tokenizer.encode(o)[0][1:-1]
                s_idx = search(s, token_ids)
                o_idx = search(o, token_ids)
                if s_idx != -1 and o_idx != -1:
                    s = (s_idx, s_idx + len(s) - 1)
                    o = (o_idx, o_idx + len(o) - 1, p)
                    if s not in spoes:
                        spoes[s] = []
                    spoes[s].append(o)
            if spoes:
                # subject标签
                subject_labels = np.zeros((len(token_ids), 2))
                for s in spoes:
                    subject_labels[s[0], 0] = 1
                    subject_labels[s[1], 1] = 1
                # 随机选一个subject（这里没有实现错误！这就是想要的效果！！）
                start, end = np.array(list(spoes.keys())).T
                start = np.random.choice(start)
                end = np.random.choice(end[end >= start])
                subject_ids = (start, end)
                # 对应的object标签
                object_labels = np.zeros((len(token_ids), len(predicate2id), 2))
                for o in spoes.get(subject_ids, []):
                    object_labels[o[0], o[2], 0] = 1
                    object_labels[o[1], o[2], 1] = 1
                # 构建batch
                batch_token_ids.append(token_ids)
                batch_segment_ids.append(segment_ids)
                batch_subject_labels.append(subject_labels)
                batch_subject_ids.append(subject_ids)
                batch_object_labels.append(object_labels)
                if len(batch_token_ids) == self.batch_size or is_end:
                    batch_token_ids = sequence_padding(batch_token_ids)
                    batch_segment_ids = sequence_padding(batch_segment_ids)
                    batch_subject_labels = sequence_padding(
                        batch_subject_labels
                    )
                    batch_subject_ids = np.array(batch_subject_ids)
                    batch_object_labels = sequence_padding(batch_object_labels)
                    yield [
                        batch_token_ids, batch_segment_ids,
                        batch_subject_labels, batch_subject_ids,
                        batch_object_labels
                    ], None
                    batch_token_ids, batch_segment_ids = [], []
                    batch_subject_labels, batch_subject_ids, batch_object_labels = [], [], []


def extract_subject(inputs):
    """根据subject_ids从output中取出subject的向量表征
    """
    output, subject_ids = inputs
    start = batch_gather(output, subject_ids[:, :1])
    end = batch_gather(output, subject_ids[:, 1:])
    subject = K.concatenate([start, end], 2)
    return subject[:, 0]


# 补充输入
subject_labels = Input(shape=(None, 2), name='Subject-Labels')
subject_ids = Input(shape=(2,), name='Subject-Ids')
object_labels = Input(shape=(None, len(predicate2id), 2), name='Object-Labels')

# 加载预训练模型
bert = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    return_keras_model=False,
)

# 预测subject
output = Dense(
    units=2, activation='sigmoid', kernel_initializer=bert.initializer
)(bert.model.output)
subject_preds = Lambda(lambda x: x**2)(output)

subject_model = Model(bert.model.inputs, subject_preds)

# 传入subject，预测object
# 通过Conditional Layer Normalization将subject融入到object的预测中
output = bert.model.layers[-2].get_output_at(-1)  # 自己想为什么是-2而不是-1
subject = Lambda(extract_subject)([output, subject_ids])
output = LayerNormalization(conditional=True)([output, subject])
output = Dense(
    units=len(predicate2id) * 2,
    activation='sigmoid',
    kernel_initializer=bert.initializer
)(output)
output = Lambda(lambda x: x**4)(output)
object_preds = Reshape((-1, len(predicate2id), 2))(output)

object_model = Model(bert.model.inputs + [subject_ids], object_preds)


class TotalLoss(Loss):
    """subject_loss与object_loss之和，都是二分类交叉熵
    """
    def compute_loss(self, inputs, mask=None):
        subject_labels, object_labels = inputs[:2]
        subject_preds, object_preds, _ = inputs[2:]
        if mask[4] is None:
            mask = 1.0
        else:
            mask = K.cast(mask[4], K.floatx())
        # sujuect部分loss
        subject_loss = K.binary_crossentropy(subject_labels, subject_preds)
        subject_loss = K.mean(subject_loss, 2)
        subject_loss = K.sum(subject_loss * mask) / K.sum(mask)
        # object部分loss
        object_loss = K.binary_crossentropy(object_labels, object_preds)
        object_loss = K.sum(K.mean(object_loss, 3), 2)
        object_loss = K.sum(object_loss * mask) / K.sum(mask)
        # 总的loss
        return subject_loss + object_loss


subject_preds, object_preds = TotalLoss([2, 3])([
    subject_labels, object_labels, subject_preds, object_preds,
    bert.model.output
])

# 训练模型
train_model = Model(
    bert.model.inputs + [subject_labels, subject_ids, object_labels],
    [subject_preds, object_preds]
)

AdamEMA = extend_with_exponential_moving_average(Adam, name='AdamEMA')
optimizer = AdamEMA(learning_rate=5e-3)
train_model.compile(optimizer=optimizer)


def extract_spoes(text):
    """抽取输入text所包含的三元组
    """
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    token_ids, segment_ids = to_array([token_ids], [segment_ids])
    # 抽取subject
    subject_preds = subject_model.predict([token_ids, segment_ids])
    start = np.where(subject_preds[0, :, 0] > 0.6)[0]
    end = np.where(subject_preds[0, :, 1] > 0.5)[0]
    subjects = []
    for i in start:
        j = end[end >= i]
        if len(j) > 0:
            j = j[0]
            subjects.append((i, j))
    if subjects:
        spoes = []
        token_ids = np.repeat(token_ids, len(subjects), 0)
        segment_ids = np.repeat(segment_ids, len(subjects), 0)
        subjects = np.array(subjects)
        # 传入subject，抽取object和predicate
        object_preds = object_model.predict([token_ids, segment_ids, subjects])
        for subject, object_pred in zip(subjects, object_preds):
            start = np.where(object_pred[:, :, 0] > 0.6)
            end = np.where(object_pred[:, :, 1] > 0.5)
            for _start, predicate1 in zip(*start):
                for _end, predicate2 in zip(*end):
                    if _start <= _end and predicate1 == predicate2:
                        spoes.append(
                            ((mapping[subject[0]][0],
                              mapping[subject[1]][-1]), predicate1,
                             (mapping[_start][0], mapping[_end][-1]))
                        )
                        break
        return [(text[s[0]:s[1] + 1], id2predicate[p], text[o[0]:o[1] + 1])
                for s, p, o, in spoes]
    else:
        return []


class SPO(tuple):
    """用来存三元组的类
    表现跟tuple基本一致，只是重写了 __hash__ 和 __eq__ 方法，
    使得在判断两个三元组是否等价时容错性更好。
    """
    def __init__(self, spo):
        self.spox = (
            tuple(tokenizer.tokenize(spo[0])),
            spo[1],
            tuple(tokenizer.tokenize(spo[2])),
        )

    def __hash__(self):
        return self.spox.__hash__()

    def __eq__(self, spo):
        return self.spox == spo.spox


def evaluate(data):
    """评估函数，计算f1、precision、recall
    """
    X, Y, Z = 1e-10, 1e-10, 1e-10
    f = open('dev_pred.json', 'w', encoding='utf-8')
    pbar = tqdm()
    for d in data:
        R = set([SPO(spo) for spo in extract_spoes(d['text'])])
        T = set([SPO(spo) for spo in d['spo_list']])
        X += len(R & T)
        Y += len(R)
        Z += len(T)
        f1, precision, recall = 2 * X / (Y + Z), X / Y, X / Z
        pbar.update()
        pbar.set_description(
            'f1: %.5f, precision: %.5f, recall: %.5f' % (f1, precision, recall)
        )
        s = json.dumps({
            'text': d['text'],
            'spo_list': list(T),
            'spo_list_pred': list(R),
            'new': list(R - T),
            'lack': list(T - R),
        },
                       ensure_ascii=False,
                       indent=4)
        f.write(s + '\n')
    pbar.close()
    f.close()
    return f1, precision, recall


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_val_f1 = 0.
        self.scores = []

    def on_epoch_end(self, epoch, logs=None):
        optimizer.apply_ema_weights()
        f1, precision, recall = evaluate(valid_data)
        self.scores.append((f1, precision, recall))
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            train_model.save_weights('best_model.weights.h5')
            self.best_probe = object_model.predict(probe_inputs[:2] + probe_inputs[3:4])
        optimizer.reset_old_weights()
        print(
            'f1: %.5f, precision: %.5f, recall: %.5f, best f1: %.5f\n' %
            (f1, precision, recall, self.best_val_f1)
        )


if __name__ == '__main__':

    train_generator = data_generator(train_data, batch_size)
    evaluator = Evaluator()

    history = train_model.fit(
        train_generator.forfit(),
        steps_per_epoch=len(train_generator),
        epochs=4,
        callbacks=[evaluator]
    )

    # ---- checks of the outcome (not in the original) ----
    losses = history.history['loss']
    assert losses[-1] < losses[0], 'loss did not fall: %s' % losses
    for scores in evaluator.scores:
        assert all(0 <= s <= 1 for s in scores), scores
    # get_output_at(-1) of layers[-2] is the last block's residual sum, the input of its final LayerNorm
    token_ids, segment_ids, _, batch_subject_ids, _ = probe_inputs
    last_add = bert.model.layers[-2]
    assert last_add.name == 'Transformer-1-FeedForward-Add', last_add.name
    hidden = Model(bert.model.inputs, last_add.get_output_at(-1)).predict([token_ids, segment_ids])
    gathered = Model(bert.model.inputs + [subject_ids], subject).predict(
        [token_ids, segment_ids, batch_subject_ids])
    rows = np.arange(len(hidden))
    expected = np.concatenate([hidden[rows, batch_subject_ids[:, 0].astype(int)],
                               hidden[rows, batch_subject_ids[:, 1].astype(int)]], axis=1)
    assert np.allclose(gathered, expected, atol=1e-5)
    for d in valid_data[:4]:
        for s, p, o in extract_spoes(d['text']):
            assert isinstance(s, str) and s in d['text'] and isinstance(o, str) and o in d['text'], (s, o)
            assert p in predicate2id, p

    train_model.load_weights('best_model.weights.h5')
    predictions = object_model.predict(probe_inputs[:2] + probe_inputs[3:4])
    assert np.allclose(predictions, evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'best_val_f1': float(evaluator.best_val_f1),
        'last_f1_precision_recall': [float(s) for s in evaluator.scores[-1]],
    }))

else:

    train_model.load_weights('best_model.weights.h5')
