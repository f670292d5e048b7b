#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/basic_make_uncased_model_cased.py: give an uncased model a cased vocabulary
by adding the capitalised / upper-cased forms of its English words to the vocabulary and initialising
their embeddings from the lower-cased tokens (`build_transformer_model(..., compound_tokens=...)`).

Changed besides imports and paths: the demo text, 'Welcome to BEIJING.' -> 'The GOOD and the Bads.' (the
tiny vocabulary has a few English words, not 'welcome' / 'beijing').
Checks (not in the original): the cased tokenization is the hand-derived one; the Embedding-Token matrix
grew by len(compound_tokens) rows, each new row equal to its source row; and, since every new token is
initialised as a copy of its lower-case token, the cased model on the cased text gives the same output
as the original (uncased) model on the lower-cased text.
"""
# 通过简单修改词表，使得不区分大小写的模型有区分大小写的能力
# 基本思路：将英文单词大写化后添加到词表中，并修改模型Embedding层

import json
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer, load_vocab
from bert4keras_ext.snippets import to_array
import numpy as np

import tiny

config_path, checkpoint_path, dict_path = tiny.bert_paths()

token_dict = load_vocab(dict_path)
new_token_dict = token_dict.copy()
compound_tokens = []

for t, i in sorted(token_dict.items(), key=lambda s: s[1]):
    # 这里只考虑两种情况：1、首字母大写；2、整个单词大写
    tokens = []
    if t.isalpha():
        tokens.extend([t[:1].upper() + t[1:], t.upper()])
    elif t[:2] == '##' and t[2:].isalpha():
        tokens.append(t.upper())
    for token in tokens:
        if token not in new_token_dict:
            compound_tokens.append([i])
            new_token_dict[token] = len(new_token_dict)

tokenizer = Tokenizer(new_token_dict, do_lower_case=False)

model = build_transformer_model(
    config_path,
    checkpoint_path,
    compound_tokens=compound_tokens,  # 增加新token，用旧token平均来初始化
)

text = u'The GOOD and the Bads.'
tokens = tokenizer.tokenize(text)
print(tokens)
"""
输出：['[CLS]', 'The', 'GOOD', 'and', 'the', 'Bad', '##s', '.', '[SEP]']
"""

token_ids, segment_ids = tokenizer.encode(text)
token_ids, segment_ids = to_array([token_ids], [segment_ids])
print(model.predict([token_ids, segment_ids]))

# ---- checks (not in the original) ----
assert tokens == ['[CLS]', 'The', 'GOOD', 'and', 'the', 'Bad', '##s', '.', '[SEP]'], tokens
for cased, lower in [('The', 'the'), ('GOOD', 'good'), ('Bad', 'bad'), ('##S', '##s')]:
    assert compound_tokens[new_token_dict[cased] - len(token_dict)] == [token_dict[lower]], cased

embeddings = model.get_layer('Embedding-Token').get_weights()[0]
assert embeddings.shape[0] == len(token_dict) + len(compound_tokens) == len(new_token_dict), embeddings.shape
for new_id, source in zip(range(len(token_dict), len(new_token_dict)), compound_tokens):
    assert np.array_equal(embeddings[new_id], embeddings[source].mean(axis=0)), (new_id, source)

# the same text, lower-cased, through the original uncased model and vocabulary
uncased_tokenizer = Tokenizer(dict_path, do_lower_case=True)
uncased_model = build_transformer_model(config_path, checkpoint_path)
lower_ids, lower_segments = to_array(*[[x] for x in uncased_tokenizer.encode(text)])
assert uncased_tokenizer.tokenize(text) == [t.lower() if t[0] != '[' else t for t in tokens]
cased_out = model.predict([token_ids, segment_ids])
uncased_out = uncased_model.predict([lower_ids, lower_segments])
assert np.allclose(cased_out, uncased_out, atol=1e-5), np.abs(cased_out - uncased_out).max()
# and a cased token is a different id from its lower-case token (the vocabulary is now cased)
assert token_ids[0, 1] != lower_ids[0, 1] and token_ids[0, 4] == lower_ids[0, 4]

print('RESULT', json.dumps({'tokens': tokens, 'new_tokens': len(compound_tokens),
                            'max_abs_diff_vs_uncased': float(np.abs(cased_out - uncased_out).max())}))
