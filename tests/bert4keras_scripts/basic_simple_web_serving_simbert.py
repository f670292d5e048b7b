#! -*- coding: utf-8 -*-
"""Port of bert4keras examples/basic_simple_web_serving_simbert.py: SimBERT (BERT with a linear pooler and
the UniLM seq2seq mask, `with_pool='linear', application='unilm'`) serving synonym generation over HTTP
with `WebServing`: random sampling from the seq2seq head, then ranking by the pooled encoder's cosine.

Changed besides imports and paths: `WebServing(port=8864)` -> `WebServing(host='127.0.0.1', port=0)`
(a free port, this machine only), and `web.start()`, which blocks, runs in a thread so the script can
send a few requests with urllib and then `web.stop()` it. The tiny checkpoint is random (no SimBERT
training), so the "synonyms" are random text; the checks are about the plumbing.
Checks (not in the original): both outputs of the model (pooled vector, next-token distribution); the
served answers (JSON code 0, a list of at most k str, the query text excluded, ranked by decreasing
cosine similarity recomputed here in numpy); a missing required argument answers code 1.
"""
# 利用自带的接口，将SimBERT的同义句生成搭建成Web服务。
# 基于bottlepy简单封装，仅作为临时测试使用，不保证性能。

import json
import threading
from urllib.parse import quote
from urllib.request import urlopen

import numpy as np
from collections import Counter
from bert4keras_ext.backend import keras, K
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.snippets import sequence_padding, AutoRegressiveDecoder
from bert4keras_ext.snippets import WebServing

import tiny

np.random.seed(42)
keras.utils.set_random_seed(42)

maxlen = 32

# bert配置
config_path, checkpoint_path, dict_path = tiny.bert_paths()

# 建立分词器
tokenizer = Tokenizer(dict_path, do_lower_case=True)  # 建立分词器

# 建立加载模型
bert = build_transformer_model(
    config_path,
    checkpoint_path,
    with_pool='linear',
    application='unilm',
    return_keras_model=False,
)

encoder = keras.models.Model(bert.model.inputs, bert.model.outputs[0])
seq2seq = keras.models.Model(bert.model.inputs, bert.model.outputs[1])


class SynonymsGenerator(AutoRegressiveDecoder):
    """seq2seq解码器
    """
    @AutoRegressiveDecoder.wraps(default_rtype='probas')
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = np.concatenate([token_ids, output_ids], 1)
        segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
        return seq2seq.predict([token_ids, segment_ids])[:, -1]

    def generate(self, text, n=1, topk=5):
        token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
        output_ids = self.random_sample([token_ids, segment_ids], n,
                                        topk)  # 基于随机采样
        return [tokenizer.decode(ids) for ids in output_ids]


synonyms_generator = SynonymsGenerator(
    start_id=None, end_id=tokenizer._token_end_id, maxlen=maxlen
)


def gen_synonyms(text, n=100, k=20):
    """"含义： 产生sent的n个相似句，然后返回最相似的k个。
    做法：用seq2seq生成，并用encoder算相似度并排序。
    """
    r = synonyms_generator.generate(text, n)
    r = [i for i in set(r) if i != text]
    r = [text] + r
    X, S = [], []
    for t in r:
        x, s = tokenizer.encode(t)
        X.append(x)
        S.append(s)
    X = sequence_padding(X)
    S = sequence_padding(S)
    Z = encoder.predict([X, S])
    Z /= (Z**2).sum(axis=1, keepdims=True)**0.5
    argsort = np.dot(Z[1:], -Z[0]).argsort()
    return [r[i + 1] for i in argsort[:k]]


def cosine_to(text, candidates):
    """(not in the original) cosine of each candidate's pooled vector with text's, one sentence at a time."""
    def vector(t):
        x, s = tokenizer.encode(t)
        v = encoder.predict([np.array([x]), np.array([s])], verbose=0)[0]
        return v / np.linalg.norm(v)
    v0 = vector(text)
    return [float(np.dot(vector(c), v0)) for c in candidates]


if __name__ == '__main__':

    arguments = {'text': (None, True), 'n': (int, False), 'k': (int, False)}
    web = WebServing(host='127.0.0.1', port=0)
    web.route('/gen_synonyms', gen_synonyms, arguments)
    server = threading.Thread(target=web.start, daemon=True)
    server.start()
    # 现在可以测试访问 https://127.0.0.1:8864/gen_synonyms?text=苹果多少钱一斤

    # ---- checks (not in the original) ----
    chars = tiny.vocab_chars(dict_path)
    text = u''.join(chars[40:47])
    x, s = tokenizer.encode(text)
    pooled = encoder.predict([np.array([x]), np.array([s])], verbose=0)
    assert pooled.shape == (1, 32), pooled.shape
    probas = seq2seq.predict([np.array([x]), np.array([s])], verbose=0)
    assert probas.shape == (1, len(x), tokenizer._vocab_size), probas.shape
    assert np.allclose(probas.sum(axis=-1), 1, atol=1e-4)

    assert web.wait_started(timeout=30), 'the server did not start'
    base = 'http://127.0.0.1:%d' % web.port
    answers = []
    try:
        for n, k in [(8, 3), (6, 6)]:
            url = '%s/gen_synonyms?text=%s&n=%d&k=%d' % (base, quote(text), n, k)
            with urlopen(url, timeout=60) as f:
                answer = json.loads(f.read().decode('utf-8'))
            print(answer)
            assert answer['code'] == 0, answer
            synonyms = answer['data']
            assert isinstance(synonyms, list) and 0 < len(synonyms) <= k, synonyms
            assert all(isinstance(t, str) for t in synonyms) and text not in synonyms, synonyms
            sims = cosine_to(text, synonyms)
            assert all(a >= b - 1e-5 for a, b in zip(sims, sims[1:])), sims  # most similar first
            answers.append(synonyms)
        with urlopen(base + '/gen_synonyms?n=3', timeout=60) as f:
            missing = json.loads(f.read().decode('utf-8'))
        assert missing['code'] == 1 and 'text' in missing['desc'], missing
    finally:
        web.stop()
        server.join(timeout=30)
    assert not server.is_alive(), 'the server did not stop'

    print('RESULT', json.dumps({'port': web.port, 'answers': answers, 'missing_text': missing},
                               ensure_ascii=False))
