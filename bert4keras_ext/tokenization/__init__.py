"""BERT tokenization, split by role (each module has one job; all pure Python, no TensorFlow):

    normalization  Google's character classes and basic tokenization as cached per-character
                   ``str.translate`` tables (cleaning, CJK / punctuation splitting, lower-casing,
                   accent stripping), and the runs of characters that map one by one to tokens
    wordpiece      greedy longest-match-first WordPiece with per-word caches (``WordPieceMixin``)
    alignment      ``rematch``: tokens -> indices of the original characters (``RematchMixin``)
    truncation     bert4keras ``truncate_sequences`` semantics in linear time
    vocab          ``load_vocab`` / ``save_vocab`` (vocabulary files, clear decode errors)
    base           ``TokenizerBase``: bert4keras' template for user tokenizers
    tokenizer      ``Tokenizer``: the class that puts them together (bert4keras' API)

Users import from the bert4keras path, ``bert4keras_ext.tokenizers``, which re-exports these.
"""
from bert4keras_ext.tokenization.base import TokenizerBase  # noqa: F401
from bert4keras_ext.tokenization.tokenizer import Tokenizer  # noqa: F401
from bert4keras_ext.tokenization.vocab import load_vocab, save_vocab  # noqa: F401

__all__ = ['Tokenizer', 'TokenizerBase', 'load_vocab', 'save_vocab']
