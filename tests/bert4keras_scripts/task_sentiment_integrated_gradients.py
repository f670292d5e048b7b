#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/task_sentiment_integrated_gradients.py: rank the input characters of a
review by integrated gradients of the task_sentiment_albert.py classifier.

Changed besides imports / paths / sizes:
- The original follows a finished run of task_sentiment_albert.py (its comment: 接
  task_sentiment_albert.py), whose `else:` branch loads that run's best_model weights on import; this
  script first does that run (runpy, as `__main__`) so it never picks up another script's weights file.
- The example texts are replaced by a review of the generated test set (the tiny vocabulary lacks
  their characters).
- The original's `Gradient` layer takes `K.gradients(output, [input])` between two tensors of the
  functional graph, which Keras 3 cannot do (a layer's call sees concrete tensors). The layer and
  `grad_model` are kept, and the script checks that `grad_model.predict` raises an error naming the
  replacement; each path point's gradient·input is then computed under `tf.GradientTape`, from the
  token-embedding matrix's gradient rows (one per looked-up position, as ∂output/∂input).
- Checks at the end (the tape gradient matches central differences, the path ends at the original
  embeddings, scores normalised to [0, 1], one score per character) and the RESULT line.
"""
# 通过积分梯度（Integrated Gradients）来给输入进行重要性排序
# 接 task_sentiment_albert.py
# 原始论文：https://arxiv.org/abs/1703.01365
# 博客介绍：https://kexue.fm/archives/7533
# 请读者务必先弄懂原理再看代码，下述代码仅是交互式演示代码，并非成品API

import os
import runpy

runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'task_sentiment_albert.py'),
               run_name='__main__')  # 先训练 task_sentiment_albert.py，保存 best_model.weights.h5

from task_sentiment_albert import *
from keras.layers import Layer, Input
from bert4keras_ext.backend import K, batch_gather
from keras.models import Model
from bert4keras_ext.snippets import uniout


class Gradient(Layer):
    """获取梯度的层
    """
    def __init__(self, **kwargs):
        super(Gradient, self).__init__(**kwargs)
        self.supports_masking = True

    def call(self, input):
        input, output, label = input
        output = batch_gather(output, label)
        return K.gradients(output, [input])[0] * input

    def compute_output_shape(self, input_shape):
        return input_shape[0]


label_in = Input(shape=(1,))  # 指定标签
input = model.get_layer('Embedding-Token').output
output = model.output
grads = Gradient()([input, output, label_in])
grad_model = Model(model.inputs + [label_in], grads)

# 获取原始embedding层
embeddings = model.get_layer('Embedding-Token').embeddings
values = K.eval(embeddings)

text = test_data[1][0]  # a positive review (3 of its characters carry the sentiment)
token_ids, segment_ids = tokenizer.encode(text)
preds = model.predict([[token_ids], [segment_ids]])
label = np.argmax(preds[0])

# Keras 3: grad_model cannot run; it must say what to use instead.
try:
    grad_model.predict([[token_ids], [segment_ids], [[label]]])
except Exception as e:
    assert 'GradientTape' in str(e), repr(e)
    print('Keras 2 Gradient layer refused as expected: %s: %s' % (type(e).__name__, str(e)[:100]))
else:
    raise AssertionError('the Keras 2 Gradient layer unexpectedly worked')

import tensorflow as tf


def output_gradient(token_ids, segment_ids, label):
    """∂probas[label]/∂(Embedding-Token output) for one text, (seq_len, embedding_size), by tf.GradientTape:
    the embedding matrix's gradient from a lookup keeps one row per looked-up position."""
    inputs = [np.array([token_ids], 'float32'), np.array([segment_ids], 'float32')]
    with tf.GradientTape() as tape:
        output = batch_gather(model(inputs), np.array([[label]]))
    gradient = tape.gradient(output, embeddings.value)
    assert isinstance(gradient, tf.IndexedSlices) and list(gradient.indices.numpy()) == list(token_ids)
    return gradient.values.numpy()


def gradient_times_input(token_ids, segment_ids, label):
    """What grad_model.predict gave for one text: the gradient times the Embedding-Token output."""
    return output_gradient(token_ids, segment_ids, label) * K.eval(embeddings)[token_ids]


pred_grads = []
n = 20
for i in range(n):
    # nlp任务中参照背景通常直接选零向量，所以这里
    # 让embedding层从零渐变到原始值，以实现路径变换。
    alpha = 1.0 * i / (n - 1)
    K.set_value(embeddings, alpha * values)
    pred_grad = gradient_times_input(token_ids, segment_ids, label)
    pred_grads.append(pred_grad)

# 然后求平均
pred_grads = np.mean(pred_grads, 0)

# 这时候我们得到形状为(seq_len, hidden_dim)的矩阵，我们要将它变换成(seq_len,)
# 这时候有两种方案：1、直接求模长；2、取绝对值后再取最大。两者效果差不多。
scores = np.sqrt((pred_grads**2).sum(axis=1))
scores = (scores - scores.min()) / (scores.max() - scores.min())
scores = scores.round(4)
results = [(tokenizer.decode([t]), s) for t, s in zip(token_ids, scores)]
print(results[1:-1])
norm_results = results

scores = np.abs(pred_grads).max(axis=1)
scores = (scores - scores.min()) / (scores.max() - scores.min())
scores = scores.round(4)
results = [(tokenizer.decode([t]), s) for t, s in zip(token_ids, scores)]
print(results[1:-1])

# ---- checks (not in the original) ----
from bert4keras_ext.snippets import to_array
assert np.array_equal(K.eval(embeddings), values)  # the path ends at the original embeddings
assert preds.shape == (1, 2) and 0 <= label < 2
# the tape gradient against central differences of probas[label] along one embedding row
position = 5  # a character that occurs once in the text
assert list(token_ids).count(token_ids[position]) == 1
direction = np.random.RandomState(0).randn(values.shape[1])
direction /= np.linalg.norm(direction)
h = 1e-3
probas = []
for sign in (1, -1):
    moved = values.copy()
    moved[token_ids[position]] += sign * h * direction
    K.set_value(embeddings, moved)
    probas.append(model.predict(to_array([token_ids], [segment_ids]))[0, label])
K.set_value(embeddings, values)
numeric = (probas[0] - probas[1]) / (2 * h)
analytic = float(np.dot(output_gradient(token_ids, segment_ids, label)[position], direction))
assert abs(numeric - analytic) <= 1e-2 * max(1.0, abs(analytic)), (numeric, analytic)
for results in (norm_results, results):
    assert len(results) == len(token_ids) and [r[0] for r in results[1:-1]] == list(text)
    assert all(0.0 <= s <= 1.0 for _, s in results)
print('RESULT', json.dumps({'label': int(label), 'scores': [[c, float(s)] for c, s in norm_results[1:-1]],
                            'gradient_check': [float(numeric), analytic]}, ensure_ascii=False))
