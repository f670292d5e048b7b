#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/basic_gibbs_sampling_via_mlm.py: Gibbs sampling of sentences with an MLM.

Changed besides imports, paths and sizes (steps 10000 -> 40, converged_steps 1000 -> 10): nothing.
`np.random.seed` is set so the run is reproducible. Checks: every step re-samples exactly one position
from a valid distribution (the probabilities the model gives there sum to 1), the length and the
[CLS]/[SEP] frame of the sentence never change, and every sample decodes to a non-empty str.
"""
import json

from tqdm import tqdm
import numpy as np
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.snippets import to_array

import tiny

np.random.seed(42)

config_path, checkpoint_path, dict_path = tiny.bert_paths()

tokenizer = Tokenizer(dict_path, do_lower_case=True)  # 建立分词器
model = build_transformer_model(
    config_path=config_path, checkpoint_path=checkpoint_path, with_mlm=True
)  # 建立模型，加载权重

sentences = []
init_sent = u'科学技术是第一生产力。'  # 给定句子或者None
minlen, maxlen = 8, 32
steps = 40
converged_steps = 10
vocab_size = tokenizer._vocab_size

if init_sent is None:
    length = np.random.randint(minlen, maxlen + 1)
    tokens = ['[CLS]'] + ['[MASK]'] * length + ['[SEP]']
    token_ids = tokenizer.tokens_to_ids(tokens)
    segment_ids = [0] * len(token_ids)
else:
    token_ids, segment_ids = tokenizer.encode(init_sent)
    length = len(token_ids) - 2

init_token_ids = list(token_ids)
changed_positions = []
for _ in tqdm(range(steps), desc='Sampling'):
    # Gibbs采样流程：随机mask掉一个token，然后通过MLM模型重新采样这个token。
    i = np.random.choice(length) + 1
    token_ids[i] = tokenizer._token_mask_id
    probas = model.predict(to_array([token_ids], [segment_ids]))[0, i]
    assert abs(float(probas.sum()) - 1) < 1e-4, probas.sum()
    token = np.random.choice(vocab_size, p=probas)
    token_ids[i] = token
    changed_positions.append(i)
    sentences.append(tokenizer.decode(token_ids))

print(u'部分随机采样结果：')
for _ in range(10):
    print(np.random.choice(sentences[converged_steps:]))

# ---- checks -------------------------------------------------------------------------------------
assert len(sentences) == steps
assert all(isinstance(s, str) and s for s in sentences), sentences
assert len(token_ids) == len(init_token_ids)
assert token_ids[0] == tokenizer._token_start_id and token_ids[-1] == tokenizer._token_end_id
assert all(1 <= i <= length for i in changed_positions)
assert token_ids != init_token_ids  # 40 draws from a random model's MLM change the sentence

print('RESULT', json.dumps({'samples': len(sentences), 'last': sentences[-1],
                            'positions_changed': int(sum(a != b for a, b in zip(token_ids, init_token_ids)))},
                           ensure_ascii=False))
