#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_sequence_labeling_ner_crf.py: Chinese NER with BERT + CRF.

Changed besides imports, paths and sizes: `save_weights` / `load_weights` use the `.weights.h5` suffix
Keras 3 requires. Sizes: the tiny 2-layer checkpoint (so `bert_layers = 2`), maxlen 48, 3 epochs, and a
learning rate (2e-3) / CRF lr multiplier (10) that suit a random 32-wide model instead of BERT-base's
(1e-5 / 1000). The data is generated in the People's Daily corpus format ("char flag" lines, blank line
between sentences): entities are drawn from category-specific characters, so the task is learnable.
Checks added at the end: the loss falls, F1/precision/recall lie in [0, 1], the recogniser returns
(start, end, label) spans of the text, and the saved best weights load back to identical predictions.
"""
import json

import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open, ViterbiDecoder, to_array
from bert4keras_ext.layers import ConditionalRandomField
from keras.layers import Dense
from keras.models import Model
from tqdm import tqdm

from tiny import bert_paths, data_path, vocab_chars

np.random.seed(42)
keras.utils.set_random_seed(42)

maxlen = 48
epochs = 3
batch_size = 16
bert_layers = 2
learning_rate = 2e-3  # bert_layers越小，学习率应该要越大
crf_lr_multiplier = 10  # 必要时扩大CRF层的学习率
categories = set()

# bert配置
config_path, checkpoint_path, dict_path = bert_paths()


def write_corpus(filename, num_sentences, seed):
    """A tiny corpus in the china-people-daily-ner-corpus format."""
    chars = vocab_chars(dict_path)
    entity_chars = {'PER': chars[:25], 'LOC': chars[25:50], 'ORG': chars[50:75]}
    other_chars = chars[100:400]
    rng = np.random.RandomState(seed)
    with open(filename, 'w', encoding='utf-8') as f:
        for _ in range(num_sentences):
            lines = []
            for _ in range(rng.randint(1, 4)):
                lines.extend('%s O' % c for c in rng.choice(other_chars, rng.randint(2, 8)))
                label = ['PER', 'LOC', 'ORG'][rng.randint(3)]
                word = rng.choice(entity_chars[label], rng.randint(2, 5))
                lines.extend('%s %s-%s' % (c, 'B' if i == 0 else 'I', label) for i, c in enumerate(word))
            lines.extend('%s O' % c for c in rng.choice(other_chars, rng.randint(0, 5)))
            f.write('\n'.join(lines) + '\n\n')


write_corpus(data_path('example.train'), 160, 1)
write_corpus(data_path('example.dev'), 16, 2)
write_corpus(data_path('example.test'), 16, 3)


def load_data(filename):
    """加载数据
    单条格式：[text, (start, end, label), (start, end, label), ...]，
              意味着text[start:end + 1]是类型为label的实体。
    """
    D = []
    with open(filename, encoding='utf-8') as f:
        f = f.read()
        for l in f.split('\n\n'):
            if not l:
                continue
            d = ['']
            for i, c in enumerate(l.split('\n')):
                char, flag = c.split(' ')
                d[0] += char
                if flag[0] == 'B':
                    d.append([i, i, flag[2:]])
                    categories.add(flag[2:])
                elif flag[0] == 'I':
                    d[-1][1] = i
            D.append(d)
    return D


# 标注数据
train_data = load_data(data_path('example.train'))
valid_data = load_data(data_path('example.dev'))
test_data = load_data(data_path('example.test'))
categories = list(sorted(categories))

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, d in self.sample(random):
            tokens = tokenizer.tokenize(d[0], maxlen=maxlen)
            mapping = tokenizer.rematch(d[0], tokens)
            start_mapping = {j[0]: i for i, j in enumerate(mapping) if j}
            end_mapping = {j[-1]: i for i, j in enumerate(mapping) if j}
            token_ids = tokenizer.tokens_to_ids(tokens)
            segment_ids = [0] * len(token_ids)
            labels = np.zeros(len(token_ids))
            for start, end, label in d[1:]:
                if start in start_mapping and end in end_mapping:
                    start = start_mapping[start]
                    end = end_mapping[end]
                    labels[start] = categories.index(label) * 2 + 1
                    labels[start + 1:end + 1] = categories.index(label) * 2 + 2
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            batch_labels.append(labels)
            if len(batch_token_ids) == self.batch_size or is_end:
                batch_token_ids = sequence_padding(batch_token_ids)
                batch_segment_ids = sequence_padding(batch_segment_ids)
                batch_labels = sequence_padding(batch_labels)
                yield [batch_token_ids, batch_segment_ids], batch_labels
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []


model = build_transformer_model(
    config_path,
    checkpoint_path,
)

output_layer = 'Transformer-%s-FeedForward-Norm' % (bert_layers - 1)
output = model.get_layer(output_layer).output
output = Dense(len(categories) * 2 + 1)(output)
CRF = ConditionalRandomField(lr_multiplier=crf_lr_multiplier)
output = CRF(output)

model = Model(model.input, output)
model.summary()

model.compile(
    loss=CRF.sparse_loss,
    optimizer=Adam(learning_rate),
    metrics=[CRF.sparse_accuracy]
)


class NamedEntityRecognizer(ViterbiDecoder):
    """命名实体识别器
    """
    def recognize(self, text):
        tokens = tokenizer.tokenize(text, maxlen=512)
        mapping = tokenizer.rematch(text, tokens)
        token_ids = tokenizer.tokens_to_ids(tokens)
        segment_ids = [0] * len(token_ids)
        token_ids, segment_ids = to_array([token_ids], [segment_ids])
        nodes = model.predict([token_ids, segment_ids])[0]
        labels = self.decode(nodes)
        entities, starting = [], False
        for i, label in enumerate(labels):
            if label > 0:
                if label % 2 == 1:
                    starting = True
                    entities.append([[i], categories[(label - 1) // 2]])
                elif starting:
                    entities[-1][0].append(i)
                else:
                    starting = False
            else:
                starting = False
        return [(mapping[w[0]][0], mapping[w[-1]][-1], l) for w, l in entities]


NER = NamedEntityRecognizer(trans=K.eval(CRF.trans), starts=[0], ends=[0])


def evaluate(data):
    """评测函数
    """
    X, Y, Z = 1e-10, 1e-10, 1e-10
    for d in tqdm(data, ncols=100):
        R = set(NER.recognize(d[0]))
        T = set([tuple(i) for i in d[1:]])
        X += len(R & T)
        Y += len(R)
        Z += len(T)
    f1, precision, recall = 2 * X / (Y + Z), X / Y, X / Z
    return f1, precision, recall


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_val_f1 = 0
        self.scores = []

    def on_epoch_end(self, epoch, logs=None):
        trans = K.eval(CRF.trans)
        NER.trans = trans
        print(NER.trans)
        f1, precision, recall = evaluate(valid_data)
        self.scores.append((f1, precision, recall))
        # 保存最优
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
            model.save_weights('./best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)
        print(
            'valid:  f1: %.5f, precision: %.5f, recall: %.5f, best f1: %.5f\n' %
            (f1, precision, recall, self.best_val_f1)
        )
        f1, precision, recall = evaluate(test_data)
        self.scores.append((f1, precision, recall))
        print(
            'test:  f1: %.5f, precision: %.5f, recall: %.5f\n' %
            (f1, precision, recall)
        )


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
    assert losses[-1] < losses[0], 'CRF loss did not fall: %s' % losses
    assert evaluator.best_val_f1 > 0.2, 'the entities were not learnt: %s' % evaluator.scores
    for scores in evaluator.scores:
        assert all(0 <= s <= 1 for s in scores), scores
    # batches are padded to their own longest sentence, so fit() saw several lengths
    lengths = set(x[0].shape[1] for x, _ in data_generator(train_data, batch_size))
    assert len(lengths) > 1, lengths
    text = test_data[0][0]
    entities = NER.recognize(text)
    assert isinstance(entities, list)
    for start, end, label in entities:
        assert 0 <= start <= end < len(text) and label in categories, (start, end, label)
    assert K.eval(CRF.trans).shape == (len(categories) * 2 + 1,) * 2

    model.load_weights('./best_model.weights.h5')
    NER.trans = K.eval(CRF.trans)
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    f1, precision, recall = evaluate(test_data)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'best_val_f1': float(evaluator.best_val_f1), 'test_f1': float(f1),
        'test_precision': float(precision), 'test_recall': float(recall),
    }))

else:

    model.load_weights('./best_model.weights.h5')
    NER.trans = K.eval(CRF.trans)
