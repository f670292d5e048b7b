#! -*- coding:utf-8 -*-
"""Port of bert4keras examples/task_relation_extraction_gplinker.py: triple extraction with GPLinker
(EfficientGlobalPointer heads for entities, subject-object heads and subject-object tails).

Changed besides imports, paths and sizes: `save_weights` / `load_weights` use the `.weights.h5` suffix
Keras 3 requires. Sizes: the tiny checkpoint, maxlen 48, 4 epochs, batch 16, learning rate 5e-3 (a random
32-wide model instead of BERT-base at 1e-5). The data is generated in the DuIE (SKED) format — json
lines {"text", "spo_list": [{"subject", "predicate", "object", ...}]} and the all_50_schemas file —
with subjects, objects and a predicate cue drawn from separate characters so the task is learnable;
some texts hold an emoji (outside the vocabulary: the tokenizer gives [UNK], which `rematch` must map
back to the emoji). Checks added at the end: the loss falls, F1/precision/recall lie in [0, 1], the
extracted triples are (str, predicate, str) with substrings of the text, [UNK] maps to the emoji, and
the saved best (EMA) weights load back to identical predictions.
"""
import json
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.backend import sparse_multilabel_categorical_crossentropy
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.layers import EfficientGlobalPointer as GlobalPointer
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam, extend_with_exponential_moving_average
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open, to_array
from tqdm import tqdm

from tiny import bert_paths, data_path, vocab_chars

np.random.seed(42)
keras.utils.set_random_seed(42)

maxlen = 48
batch_size = 16
config_path, checkpoint_path, dict_path = bert_paths()

EMOJI = u'\U0001F600'
SCHEMAS = [(u'作者', u'图书作品', u'人物'), (u'出生地', u'人物', u'地点'), (u'导演', u'影视作品', u'人物')]


def write_duie(filename, num_texts, seed):
    """Texts with 1-2 triples in the DuIE json-lines format; every 4th text holds an emoji."""
    chars = vocab_chars(dict_path)
    subject_chars, object_chars, filler = chars[:60], chars[60:120], chars[200:400]
    cues = chars[120:120 + len(SCHEMAS)]  # one cue character per predicate
    rng = np.random.RandomState(seed)
    with open(filename, 'w', encoding='utf-8') as f:
        for n in range(num_texts):
            text, spo_list = ''.join(rng.choice(filler, rng.randint(0, 4))), []
            if n % 4 == 0:
                text += EMOJI
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
        batch_entity_labels, batch_head_labels, batch_tail_labels = [], [], []
        for is_end, d in self.sample(random):
            token_ids, segment_ids = tokenizer.encode(d['text'], maxlen=maxlen)
            # 整理三元组 {(s, o, p)}
            spoes = set()
            for s, p, o in d['spo_list']:
                s = tokenizer.encode(s)[0][1:-1]
                p = predicate2id[p]
                o = tokenizer.encode(o)[0][1:-1]
                sh = search(s, token_ids)
                oh = search(o, token_ids)
                if sh != -1 and oh != -1:
                    spoes.add((sh, sh + len(s) - 1, p, oh, oh + len(o) - 1))
            # 构建标签
            entity_labels = [set() for _ in range(2)]
            head_labels = [set() for _ in range(len(predicate2id))]
            tail_labels = [set() for _ in range(len(predicate2id))]
            for sh, st, p, oh, ot in spoes:
                entity_labels[0].add((sh, st))
                entity_labels[1].add((oh, ot))
                head_labels[p].add((sh, oh))
                tail_labels[p].add((st, ot))
            for label in entity_labels + head_labels + tail_labels:
                if not label:  # 至少要有一个标签
                    label.add((0, 0))  # 如果没有则用0填充
            entity_labels = sequence_padding([list(l) for l in entity_labels])
            head_labels = sequence_padding([list(l) for l in head_labels])
            tail_labels = sequence_padding([list(l) for l in tail_labels])
            # 构建batch
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_entity_labels.append(entity_labels)
            batch_head_labels.append(head_labels)
            batch_tail_labels.append(tail_labels)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_entity_labels = sequence_padding(
                    batch_entity_labels, seq_dims=2
                )
                batch_head_labels = sequence_padding(
                    batch_head_labels, seq_dims=2
                )
                batch_tail_labels = sequence_padding(
                    batch_tail_labels, seq_dims=2
                )
                yield [batch_token_ids, batch_segment_ids], [
                    batch_entity_labels, batch_head_labels, batch_tail_labels
                ]
                batch_token_ids, batch_segment_ids = [], []
                batch_entity_labels, batch_head_labels, batch_tail_labels = [], [], []


def globalpointer_crossentropy(y_true, y_pred):
    """给GlobalPointer设计的交叉熵
    """
    shape = K.shape(y_pred)
    y_true = y_true[..., 0] * K.cast(shape[2], K.floatx()) + y_true[..., 1]
    y_pred = K.reshape(y_pred, (shape[0], -1, K.prod(shape[2:])))
    loss = sparse_multilabel_categorical_crossentropy(y_true, y_pred, True)
    return K.mean(K.sum(loss, axis=1))


# 加载预训练模型
base = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    return_keras_model=False
)

# 预测结果
entity_output = GlobalPointer(heads=2, head_size=64)(base.model.output)
head_output = GlobalPointer(
    heads=len(predicate2id), head_size=64, RoPE=False, tril_mask=False
)(base.model.output)
tail_output = GlobalPointer(
    heads=len(predicate2id), head_size=64, RoPE=False, tril_mask=False
)(base.model.output)
outputs = [entity_output, head_output, tail_output]

# 构建模型
AdamEMA = extend_with_exponential_moving_average(Adam, name='AdamEMA')
optimizer = AdamEMA(learning_rate=5e-3)
model = keras.models.Model(base.model.inputs, outputs)
model.compile(loss=globalpointer_crossentropy, optimizer=optimizer)
model.summary()


def extract_spoes(text, threshold=0):
    """抽取输入text所包含的三元组
    """
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    token_ids, segment_ids = to_array([token_ids], [segment_ids])
    outputs = model.predict([token_ids, segment_ids])
    outputs = [o[0] for o in outputs]
    # 抽取subject和object
    subjects, objects = set(), set()
    outputs[0][:, [0, -1]] -= np.inf
    outputs[0][:, :, [0, -1]] -= np.inf
    for l, h, t in zip(*np.where(outputs[0] > threshold)):
        if l == 0:
            subjects.add((h, t))
        else:
            objects.add((h, t))
    # 识别对应的predicate
    spoes = set()
    for sh, st in subjects:
        for oh, ot in objects:
            p1s = np.where(outputs[1][:, sh, oh] > threshold)[0]
            p2s = np.where(outputs[2][:, st, ot] > threshold)[0]
            ps = set(p1s) & set(p2s)
            for p in ps:
                spoes.add((
                    text[mapping[sh][0]:mapping[st][-1] + 1], id2predicate[p],
                    text[mapping[oh][0]:mapping[ot][-1] + 1]
                ))
    return list(spoes)


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
            model.save_weights('best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)
        optimizer.reset_old_weights()
        print(
            'f1: %.5f, precision: %.5f, recall: %.5f, best f1: %.5f\n' %
            (f1, precision, recall, self.best_val_f1)
        )


if __name__ == '__main__':

    train_generator = data_generator(train_data, batch_size)
    evaluator = Evaluator()

    history = model.fit(
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
    emoji_text = [d['text'] for d in valid_data if EMOJI in d['text']][0]
    tokens = tokenizer.tokenize(emoji_text, maxlen=maxlen)
    mapping = tokenizer.rematch(emoji_text, tokens)
    unk = [i for i, t in enumerate(tokens) if t == '[UNK]' or t == EMOJI]
    assert len(unk) == 1 and emoji_text[mapping[unk[0]][0]] == EMOJI, (tokens, mapping)
    for text in [emoji_text] + [d['text'] for d in valid_data[:3]]:
        for s, p, o in extract_spoes(text):
            assert isinstance(s, str) and s in text and isinstance(o, str) and o in text, (s, o, text)
            assert p in predicate2id, p

    model.load_weights('best_model.weights.h5')
    predictions = model.predict(probe_inputs)
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(predictions, evaluator.best_probe))
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'best_val_f1': float(evaluator.best_val_f1),
        'last_f1_precision_recall': [float(s) for s in evaluator.scores[-1]],
    }))

else:

    model.load_weights('best_model.weights.h5')
