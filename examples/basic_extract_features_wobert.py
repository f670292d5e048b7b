#! -*- coding: utf-8 -*-
"""Feature extraction with WoBERT (word-level Chinese BERT).

    python examples/basic_extract_features_wobert.py                      # tiny generated WoBERT
    python examples/basic_extract_features_wobert.py --checkpoint-dir chinese_wobert_plus_L-12_H-768_A-12

Without a checkpoint the script builds what WoBERT's authors built: it starts from a character-level
BERT checkpoint (tiny and random here), appends jieba words to the vocabulary, initialises each word's
embedding as the mean of its characters' embeddings (`compound_tokens`), and saves the result as a
Google-format checkpoint; then, as with a real release, it loads the word-level model, tokenizes with
jieba (HMM off) and prints the per-token features. Needs jieba (`pip install "bert4keras_ext[wobert]"`).
"""
import argparse
import os
import tempfile

import numpy as np

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.checkpoints import default_vocab, find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import existing_dir  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer, save_vocab  # noqa: E402
from bert4keras_ext.wobert import JiebaPreTokenizer, extend_vocab, word_compound_tokens, wobert_tokenizer  # noqa: E402

SENTENCES = ['语言模型是自然语言处理的基础', '今天的天气不错，我们去公园散步']


def make_tiny_wobert(work_dir, seed=0):
    """Char-level tiny BERT → word-level WoBERT checkpoint (vocab + compound init), in Google format."""
    chars = sorted({ch for s in SENTENCES for ch in s})
    base_vocab = default_vocab(extra_tokens=chars)
    char_ckpt = make_random_checkpoint(os.path.join(work_dir, 'char_bert'), vocab=base_vocab, seed=seed,
                                       hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=128)
    base_dict = {t: i for i, t in enumerate(base_vocab)}
    cut = JiebaPreTokenizer()
    words = [w for s in SENTENCES for w in cut(s) if len(w) > 1]
    token_dict, new_words = extend_vocab(base_dict, words)
    compound = word_compound_tokens(Tokenizer(base_dict, do_lower_case=True), new_words)
    wobert = build_transformer_model(char_ckpt['config'], char_ckpt['checkpoint'], model='wobert',
                                     with_mlm=True, compound_tokens=compound, return_keras_model=False)
    out_dir = os.path.join(work_dir, 'tiny_wobert')
    wobert.save_weights_as_checkpoint(os.path.join(out_dir, 'bert_model.ckpt'))
    save_vocab(os.path.join(out_dir, 'vocab.txt'), token_dict)
    with open(char_ckpt['config'], encoding='utf-8') as f:
        config = f.read().replace('"vocab_size": %d' % len(base_vocab), '"vocab_size": %d' % len(token_dict))
    with open(os.path.join(out_dir, 'bert_config.json'), 'w', encoding='utf-8') as f:
        f.write(config)
    print('built a tiny WoBERT: %d characters + %d words (%s) initialised from their characters; written to %s'
          % (len(base_vocab), len(new_words), ' '.join(new_words), out_dir))
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked WoBERT / WoBERT-plus release')
    parser.add_argument('--text', action='append', help='sentence(s) to encode (default: two examples)')
    args = parser.parse_args(argv)
    checkpoint_dir = args.checkpoint_dir or make_tiny_wobert(tempfile.mkdtemp(prefix='wobert_'))
    paths = find_checkpoint_files(checkpoint_dir)
    tokenizer = wobert_tokenizer(paths['vocab'])
    model = build_transformer_model(paths['config'], paths['checkpoint'], model='wobert')
    results = {}
    for text in args.text or SENTENCES:
        token_ids, segment_ids = tokenizer.encode(text)
        features = model.predict([np.array([token_ids]), np.array([segment_ids])], verbose=0)[0]
        tokens = tokenizer.ids_to_tokens(token_ids)
        print('%s\n  tokens (%d for %d characters): %s' % (text, len(tokens), len(text), ' | '.join(tokens)))
        print('  features: %s; [CLS] vector starts %s' % (features.shape, np.round(features[0, :4], 4)))
        results[text] = {'tokens': tokens, 'features_shape': features.shape}
    return results


if __name__ == '__main__':
    main()
