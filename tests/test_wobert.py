"""WoBERT: jieba word pre-tokenization, word rows initialised from characters, clear error without jieba."""
import sys

import numpy as np
import pytest

from bert4keras_ext.checkpoints import default_vocab, make_random_checkpoint
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.tokenizers import Tokenizer
from bert4keras_ext.wobert import JiebaPreTokenizer, extend_vocab, word_compound_tokens, wobert_tokenizer
from numpy_reference import read_arrays

jieba = pytest.importorskip('jieba', reason='jieba (the wobert extra) is not installed')


def test_jieba_cut_without_hmm():
    words = JiebaPreTokenizer()('今天的天气不错，我们去公园散步')
    assert words == ['今天', '的', '天气', '不错', '，', '我们', '去', '公园', '散步']


def test_words_in_vocab_stay_whole_and_others_fall_back_to_characters():
    vocab = default_vocab(extra_tokens=['今', '天', '气', '园', '公', '去', '我', '们', '的', '散', '步'])
    token_dict = {t: i for i, t in enumerate(vocab)}
    token_dict, added = extend_vocab(token_dict, ['今天', '公园', '今天'])
    assert added == ['今天', '公园'] and token_dict['公园'] == len(vocab) + 1
    tokenizer = wobert_tokenizer(token_dict)
    tokens = tokenizer.tokenize('今天的天气不错，我们去公园散步')
    # '今天' and '公园' are vocabulary words; '天气', '不错', '我们', '散步' are jieba words the vocab lacks
    assert tokens == ['[CLS]', '今天', '的', '天', '气', '不', '错', '，', '我', '们', '去', '公园', '散', '步',
                      '[SEP]']
    token_ids, _ = tokenizer.encode('今天的天气不错')
    assert token_ids[1] == token_dict['今天']
    # character-level tokenizer on the same vocab splits everything
    assert Tokenizer(token_dict, do_lower_case=True).tokenize('公园')[1:-1] == ['公', '园']


def test_new_word_rows_are_the_mean_of_their_characters(tmp_path):
    base_vocab = default_vocab()
    paths = make_random_checkpoint(str(tmp_path), vocab=base_vocab, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=4, intermediate_size=48)
    W = read_arrays(paths['checkpoint'])
    base_dict = {t: i for i, t in enumerate(base_vocab)}
    words = ['服务', '满意度', '服务']
    token_dict, added = extend_vocab(base_dict, words)
    compound = word_compound_tokens(Tokenizer(base_dict, do_lower_case=True), added)
    assert compound == [[base_dict['服'], base_dict['务']], [base_dict['满'], base_dict['意'], base_dict['度']]]
    model = build_transformer_model(paths['config'], paths['checkpoint'], model='wobert', with_mlm='linear',
                                    compound_tokens=compound)
    E = np.asarray(model.get_layer('Embedding-Token').embeddings)
    ref = W['bert/embeddings/word_embeddings']
    assert E.shape[0] == len(token_dict)
    assert np.abs(E[token_dict['服务']] - ref[compound[0]].mean(0)).max() <= 1e-6
    assert np.abs(E[token_dict['满意度']] - ref[compound[1]].mean(0)).max() <= 1e-6
    bias = np.asarray(model.get_layer('MLM-Bias').bias)
    assert abs(bias[token_dict['服务']] - W['cls/predictions/output_bias'][compound[0]].mean()) <= 1e-6
    # the word-level tokenizer feeds the extended model
    tokenizer = wobert_tokenizer(token_dict)
    token_ids, segment_ids = tokenizer.encode('服务满意度高')
    assert token_dict['服务'] in token_ids and token_dict['满意度'] in token_ids
    logits = model.predict([np.array([token_ids]), np.array([segment_ids])], verbose=0)
    assert logits.shape == (1, len(token_ids), len(token_dict))
    with pytest.raises(ValueError, match='no known characters'):
        word_compound_tokens(Tokenizer(base_dict), ['😀😀'])


def test_missing_jieba_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, 'jieba', None)  # makes `import jieba` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "bert4keras_ext\[wobert\]"'):
        wobert_tokenizer({'[PAD]': 0, '[UNK]': 1, '[CLS]': 2, '[SEP]': 3, '[MASK]': 4})
    with pytest.raises(ImportError, match='needs jieba'):
        JiebaPreTokenizer()('文本')
