#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/basic_masked_language_model.py: predict masked tokens with the MLM head.

Changed besides imports, paths and sizes: nothing. The checkpoint is a tiny random one, so the argmax
is not "技术" as with the released BERT; instead the script checks the MLM probabilities against a numpy
re-computation of the MLM head (dense -> gelu -> LayerNorm -> tied embeddings + bias -> softmax) from
the checkpoint's own variables, read with `tf.train.load_checkpoint`.
"""
import json
import math

from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
import numpy as np

import tiny

config_path, checkpoint_path, dict_path = tiny.bert_paths()

tokenizer = Tokenizer(dict_path, do_lower_case=True)  # 建立分词器
model = build_transformer_model(
    config_path=config_path, checkpoint_path=checkpoint_path, with_mlm=True
)  # 建立模型，加载权重

token_ids, segment_ids = tokenizer.encode(u'科学技术是第一生产力')

# mask掉“技术”
token_ids[3] = token_ids[4] = tokenizer._token_dict['[MASK]']

# 用mlm模型预测被mask掉的部分
probas = model.predict([np.array([token_ids]), np.array([segment_ids])])[0]
print(tokenizer.decode(probas[3:5].argmax(axis=1)))  # 结果正是“技术”（发布的BERT权重下）

# ---- checks -------------------------------------------------------------------------------------
import tensorflow as tf
from bert4keras_ext.backend import keras

assert probas.shape == (len(token_ids), tokenizer._vocab_size), probas.shape
assert np.allclose(probas.sum(axis=1), 1, atol=1e-4)
assert isinstance(tokenizer.decode(probas[3:5].argmax(axis=1)), str)

# independent reference for the MLM head: the last Transformer layer's output, then the head in numpy
hidden_model = keras.Model(model.inputs, model.get_layer('Transformer-1-FeedForward-Norm').output)
hidden = hidden_model.predict([np.array([token_ids]), np.array([segment_ids])], verbose=0)[0]
reader = tf.train.load_checkpoint(checkpoint_path)
get = reader.get_tensor
x = hidden @ get('cls/predictions/transform/dense/kernel') + get('cls/predictions/transform/dense/bias')
x = 0.5 * x * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))  # exact gelu, as Google's BERT
mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
x = (x - mean) / np.sqrt(var + 1e-12) * get('cls/predictions/transform/LayerNorm/gamma') \
    + get('cls/predictions/transform/LayerNorm/beta')
logits = x @ get('bert/embeddings/word_embeddings').T + get('cls/predictions/output_bias')
expected = np.exp(logits - logits.max(-1, keepdims=True))
expected /= expected.sum(-1, keepdims=True)
max_diff = float(np.abs(expected - probas).max())
assert max_diff < 1e-4, max_diff
assert (expected[3:5].argmax(axis=1) == probas[3:5].argmax(axis=1)).all()

print('RESULT', json.dumps({'predicted': tokenizer.decode(probas[3:5].argmax(axis=1)),
                            'max_abs_diff_vs_numpy_mlm_head': max_diff}, ensure_ascii=False))
