#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/basic_extract_features.py: extract features, then save, reload, re-predict.

Changed besides imports / paths / sizes:
- `model.save('test.model')` -> `model.save('test.model.keras')`: Keras 3 saves whole models only to
  a `.keras` file (the counterpart of the allowed `.weights.h5` change for weights).
- Checks at the end (output shape, reloaded model gives the same features) and the RESULT line.
"""
# 测试代码可用性: 提取特征

import json

import numpy as np
from bert4keras_ext.backend import keras
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.snippets import to_array

import tiny

config_path, checkpoint_path, dict_path = tiny.bert_paths()

tokenizer = Tokenizer(dict_path, do_lower_case=True)  # 建立分词器
model = build_transformer_model(config_path, checkpoint_path)  # 建立模型，加载权重

# 编码测试
token_ids, segment_ids = tokenizer.encode(u'语言模型')
token_ids, segment_ids = to_array([token_ids], [segment_ids])

print('\n ===== predicting =====\n')
features = model.predict([token_ids, segment_ids])
print(features)

print('\n ===== reloading and predicting =====\n')
model.save('test.model.keras')
del model
model = keras.models.load_model('test.model.keras')
reloaded = model.predict([token_ids, segment_ids])
print(reloaded)

# ---- checks (not in the original) ----
hidden_size = json.load(open(config_path))['hidden_size']
assert token_ids.shape == (1, 6), token_ids  # [CLS] 语 言 模 型 [SEP]
assert features.shape == (1, 6, hidden_size), features.shape
assert np.all(np.isfinite(features))
assert features.std() > 1e-3  # not a constant output
assert np.allclose(features, reloaded, atol=1e-6), np.abs(features - reloaded).max()
print('RESULT', json.dumps({'shape': list(features.shape),
                            'max_abs_diff_after_reload': float(np.abs(features - reloaded).max())}))
