#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_seq2seq_autotitle_csl.py: title generation on CSL (UniLM seq2seq,
beam search) scored with ROUGE-1/2/L and BLEU each epoch.

Changed besides imports, paths and sizes:
- the original imports `rouge.Rouge` and `nltk`'s `sentence_bleu` / `SmoothingFunction().method1`, which
  are not installed here; the scores are computed with `bert4keras_ext.metrics` instead, on the same
  units (characters): `rouge_n(pred, title, 1)`, `rouge_n(..., 2)`, `rouge_l(...)` (the F1 that
  `Rouge().get_scores(...)[0][...]['f']` reports) and `bleu([title], [pred], smoothing='epsilon')`
  (sentence BLEU-4 with NLTK's method1 smoothing: a zero n-gram match count becomes 0.1);
- the learning rate (Adam(1e-5) -> Adam(1e-3), so a tiny random model learns something in 2 epochs) and
  Keras 3's `.weights.h5` suffix for the saved weights.
The CSL files (`title\tcontent` per line) are generated: the title is the content's first characters.
Checks (not in the original): the loss falls, every metric lies in [0, 1], the evaluator's best BLEU is
the maximum over epochs, and the best weights saved by the evaluator (or, if no epoch scored above
0, the final ones) load back to the same predictions.
"""
from __future__ import print_function
import json
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
# instead of `from rouge import Rouge` and `from nltk.translate.bleu_score import ...` (not installed):
from bert4keras_ext.metrics import rouge_n, rouge_l, bleu

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

# 基本参数
maxlen = 48
batch_size = 16
epochs = 2

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# ---- tiny CSL files: "title\tcontent" per line ---------------------------------------------------
_chars = tiny.vocab_chars(dict_path)[:12]
for _name, _n in [('train', 96), ('val', 5), ('test', 5)]:
    with open(tiny.data_path('csl_%s.tsv' % _name), 'w', encoding='utf-8') as f:
        for _ in range(_n):
            _content = ''.join(np.random.choice(_chars, np.random.randint(16, 30))) + u'。'
            f.write(u'%s\t%s\n' % (_content[:4], _content))


def load_data(filename):
    """加载数据
    单条格式：(标题, 正文)
    """
    D = []
    with open(filename, encoding='utf-8') as f:
        for l in f:
            title, content = l.strip().split('\t')
            D.append((title, content))
    return D


# 加载数据集
train_data = load_data(tiny.data_path('csl_train.tsv'))
valid_data = load_data(tiny.data_path('csl_val.tsv'))
test_data = load_data(tiny.data_path('csl_test.tsv'))

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
        for is_end, (title, content) in self.sample(random):
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


autotitle = AutoTitle(start_id=None, end_id=tokenizer._token_end_id, maxlen=6)

# a fixed batch whose predictions are recorded whenever the best weights are saved (for the reload check)
probe_inputs = next(iter(data_generator(valid_data, batch_size)))[0]


class Evaluator(keras.callbacks.Callback):
    """评估与保存
    """
    def __init__(self):
        self.best_bleu = 0.
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        metrics = self.evaluate(valid_data)  # 评测模型
        if metrics['bleu'] > self.best_bleu:
            self.best_bleu = metrics['bleu']
            model.save_weights('./best_model.weights.h5')  # 保存模型
            self.best_probe = model.predict(probe_inputs)
        metrics['best_bleu'] = self.best_bleu
        self.history.append(metrics)
        print('valid_data:', metrics)

    def evaluate(self, data, topk=1):
        total = 0
        rouge_1, rouge_2, rouge_l_, bleu_ = 0, 0, 0, 0
        for title, content in tqdm(data):
            total += 1
            title = ' '.join(title).lower()
            pred_title = ' '.join(autotitle.generate(content, topk)).lower()
            if pred_title.strip():
                rouge_1 += rouge_n(pred_title, title, 1)
                rouge_2 += rouge_n(pred_title, title, 2)
                rouge_l_ += rouge_l(pred_title, title)
                bleu_ += bleu([title.split(' ')], [pred_title.split(' ')], smoothing='epsilon')
        rouge_1 /= total
        rouge_2 /= total
        rouge_l_ /= total
        bleu_ /= total
        return {
            'rouge-1': rouge_1,
            'rouge-2': rouge_2,
            'rouge-l': rouge_l_,
            'bleu': bleu_,
        }


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
    assert len(evaluator.history) == epochs
    for metrics in evaluator.history:
        assert all(0 <= v <= 1 for v in metrics.values()), metrics
    assert evaluator.best_bleu == max(m['bleu'] for m in evaluator.history)
    # the local metrics on a hand-computed case: hyp "a b c", ref "a b d"
    assert abs(rouge_n('abc', 'abd', 1) - 2 / 3) < 1e-9 and abs(rouge_n('abc', 'abd', 2) - 1 / 2) < 1e-9
    assert abs(rouge_l('abc', 'abd') - 2 / 3) < 1e-9
    title = autotitle.generate(test_data[0][1])
    assert isinstance(title, str), title

    if evaluator.best_bleu == 0:
        # no epoch scored above 0, so nothing was saved: save now, then spoil the weights before loading
        model.save_weights('./best_model.weights.h5')
        evaluator.best_probe = model.predict(probe_inputs)
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights('./best_model.weights.h5')
    assert np.allclose(model.predict(probe_inputs), evaluator.best_probe, atol=1e-5)
    print('RESULT', json.dumps(dict(evaluator.history[-1], loss_first=float(losses[0]),
                                    loss_last=float(losses[-1]), test_title=title), ensure_ascii=False))

else:

    model.load_weights('./best_model.weights.h5')
