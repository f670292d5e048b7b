#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_sequence_labeling_cws_crf.py: Chinese word segmentation with BERT + CRF.

Changed besides imports, paths and sizes: `save_weights` / `load_weights` use the `.weights.h5` suffix
Keras 3 requires, and `model.fit_generator` (gone in Keras 3, deprecated already in bert4keras 0.11's
Keras 2.3+) is `model.fit`. The random order is kept in the work folder instead of '../random_order.json'.
Two quirks of the original are kept as they are: the evaluator assigns `WordSegmenter.trans` (the class,
so the `segmenter` instance keeps its own `trans`), and `predict_to_file` calls an undefined
`word_segment` (it is never called). Sizes: the tiny checkpoint (so `bert_layers = 2`), maxlen 48,
3 epochs, learning rate 2e-3 (a random 32-wide model, not BERT-base at 1e-5). The data is generated in
the SIGHAN 2005 (PKU) format — one sentence a line, words separated by spaces — from a small lexicon
whose words share no characters, so the segmentation is learnable. Checks added at the end: the loss
falls, the accuracy lies in [0, 1], the segmenter returns words that join back to the text, and the
saved best weights load back to identical predictions.
"""
import re, os, json
import numpy as np
from bert4keras_ext.backend import keras, K
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.snippets import sequence_padding, DataGenerator
from bert4keras_ext.snippets import open, ViterbiDecoder
from bert4keras_ext.layers import ConditionalRandomField
from keras.layers import Dense
from keras.models import Model
from tqdm import tqdm

from tiny import bert_paths, data_path, vocab_chars

np.random.seed(42)
keras.utils.set_random_seed(42)

maxlen = 48
epochs = 3
num_labels = 4
batch_size = 16
bert_layers = 2
learing_rate = 2e-3  # bert_layers越小，学习率应该要越大
crf_lr_multiplier = 1  # 必要时扩大CRF层的学习率

# bert配置
config_path, checkpoint_path, dict_path = bert_paths()


def write_pku(filename, num_sentences, seed):
    """A segmented corpus in the PKU training format, words drawn from a small lexicon."""
    chars = list(vocab_chars(dict_path)[:200])
    rng = np.random.RandomState(0)  # the same lexicon for every file
    rng.shuffle(chars)
    lexicon = []
    while len(chars) >= 4:
        n = rng.randint(1, 5)
        lexicon.append(''.join(chars[:n]))
        chars = chars[n:]
    rng = np.random.RandomState(seed)
    with open(filename, 'w', encoding='utf-8') as f:
        for _ in range(num_sentences):
            words = [lexicon[i] for i in rng.randint(len(lexicon), size=rng.randint(3, 12))]
            f.write('  '.join(words) + '\n')


write_pku(data_path('pku_training.utf8'), 160, 1)


def load_data(filename):
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            D.append(re.split(' +', l.strip()))
    return D


# 标注数据
data = load_data(data_path('pku_training.utf8'))

# 保存一个随机序（供划分valid用）
if not os.path.exists(data_path('random_order.json')):
    random_order = list(range(len(data)))
    np.random.shuffle(random_order)
    json.dump(random_order, open(data_path('random_order.json'), 'w'), indent=4)
else:
    random_order = json.load(open(data_path('random_order.json')))

# 划分valid
train_data = [data[j] for i, j in enumerate(random_order) if i % 10 != 0]
valid_data = [data[j] for i, j in enumerate(random_order) if i % 10 == 0]

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class data_generator(DataGenerator):
    """数据生成器
    """
    def __iter__(self, random=False):
        """标签含义
        0: 单字词； 1: 多字词首字； 2: 多字词中间； 3: 多字词末字
        """
        batch_token_ids, batch_segment_ids, batch_labels = [], [], []
        for is_end, item in self.sample(random):
            token_ids, labels = [tokenizer._token_start_id], [0]
            for w in item:
                w_token_ids = tokenizer.encode(w)[0][1:-1]
                if len(token_ids) + len(w_token_ids) < maxlen:
                    token_ids += w_token_ids
                    if len(w_token_ids) == 1:
                        labels += [0]
                    else:
                        labels += [1] + [2] * (len(w_token_ids) - 2) + [3]
                else:
                    break
            token_ids += [tokenizer._token_end_id]
            labels += [0]
            segment_ids = [0] * len(token_ids)
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
output = Dense(num_labels)(output)
CRF = ConditionalRandomField(lr_multiplier=crf_lr_multiplier)
output = CRF(output)

model = Model(model.input, output)
model.summary()

model.compile(
    loss=CRF.sparse_loss,
    optimizer=Adam(learing_rate),
    metrics=[CRF.sparse_accuracy]
)


class WordSegmenter(ViterbiDecoder):
    """基本分词器
    """
    def tokenize(self, text):
        tokens = tokenizer.tokenize(text)
        while len(tokens) > 512:
            tokens.pop(-2)
        mapping = tokenizer.rematch(text, tokens)
        token_ids = tokenizer.tokens_to_ids(tokens)
        segment_ids = [0] * len(token_ids)
        nodes = model.predict([[token_ids], [segment_ids]])[0]
        labels = self.decode(nodes)
        words = []
        for i, label in enumerate(labels[1:-1]):
            if label < 2:
                words.append([i + 1])
            else:
                words[-1].append(i + 1)
        return [text[mapping[w[0]][0]:mapping[w[-1]][-1] + 1] for w in words]


segmenter = WordSegmenter(trans=K.eval(CRF.trans), starts=[0], ends=[0])


def simple_evaluate(data):
    """简单的评测
    该评测指标不等价于官方的评测指标，但基本呈正相关关系，
    可以用来快速筛选模型。
    """
    total, right = 0., 0.
    for w_true in tqdm(data):
        w_pred = segmenter.tokenize(''.join(w_true))
        w_pred = set(w_pred)
        w_true = set(w_true)
        total += len(w_true)
        right += len(w_true & w_pred)
    return right / total


def predict_to_file(in_file, out_file):
    """预测结果到文件，便于用官方脚本评测
    使用示例：
    predict_to_file('/root/icwb2-data/testing/pku_test.utf8', 'myresult.txt')
    官方评测代码示例：
    data_dir="/root/icwb2-data"
    $data_dir/scripts/score $data_dir/gold/pku_training_words.utf8 $data_dir/gold/pku_test_gold.utf8 myresult.txt > myscore.txt
    （执行完毕后查看myscore.txt的内容末尾）
    """
    fw = open(out_file, 'w', encoding='utf-8')
    with open(in_file, encoding='utf-8') as fr:
        for l in tqdm(fr):
            l = l.strip()
            if l:
                l = ' '.join(word_segment(l))  # noqa: F821 (as in the original)
            fw.write(l + '\n')
    fw.close()


# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluate(keras.callbacks.Callback):
    def __init__(self):
        self.best_val_acc = 0
        self.accs = []

    def on_epoch_end(self, epoch, logs=None):
        trans = K.eval(CRF.trans)
        WordSegmenter.trans = trans
        print(WordSegmenter.trans)
        acc = simple_evaluate(valid_data)
        self.accs.append(acc)
        # 保存最优
        if acc >= self.best_val_acc:
            self.best_val_acc = acc
            model.save_weights('./best_model.weights.h5')
            self.best_probe = model.predict(probe_inputs)
        print('acc: %.5f, best acc: %.5f' % (acc, self.best_val_acc))


if __name__ == '__main__':

    evaluator = Evaluate()
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
    assert all(0 <= acc <= 1 for acc in evaluator.accs), evaluator.accs
    text = ''.join(valid_data[0])
    words = segmenter.tokenize(text)
    assert words and all(isinstance(w, str) and w for w in words), words
    assert ''.join(words) == text, (words, text)
    # with the trained transitions (the evaluator's class assignment does not reach the instance)
    segmenter.trans = K.eval(CRF.trans)
    trained_acc = simple_evaluate(valid_data)
    assert 0 <= trained_acc <= 1 and trained_acc > 0.5, (trained_acc, evaluator.accs)

    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps({
        'loss_first': float(losses[0]), 'loss_last': float(losses[-1]),
        'best_val_acc': float(evaluator.best_val_acc), 'trained_trans_acc': float(trained_acc),
    }))

else:

    model.load_weights('./best_model.weights.h5')
