"""bert4keras' ``tokenizers`` import path: a facade over ``bert4keras_ext.tokenization``.

Usage (bert4keras-compatible)::

    from bert4keras_ext.tokenizers import Tokenizer, load_vocab

    tokenizer = Tokenizer('vocab.txt', do_lower_case=True)
    tokenizer.tokenize('语言模型BERT')    # ['[CLS]', '语', '言', '模', '型', 'bert', '[SEP]']
    token_ids, segment_ids = tokenizer.encode('句子一', '句子二', maxlen=128)
    tokenizer.rematch(text, tokens)       # token -> indices of the original characters

The code lives in ``bert4keras_ext/tokenization/`` (one job per module: ``normalization``,
``wordpiece``, ``alignment``, ``truncation``, ``vocab``, ``base``, ``tokenizer``; see
``tokenization/tokenizer.py`` for what "Google-exact" means and where this differs from
bert4keras). This module re-exports bert4keras' ``tokenizers`` names: ``Tokenizer``,
``TokenizerBase``, ``load_vocab``, ``save_vocab`` and the helpers bert4keras imported from snippets
(``convert_to_unicode``, ``is_string``, ``is_py2``, ``lowercase_and_normalize``, ``open``,
``truncate_sequences``), plus the private helpers that code written against the single-module
version imports from here (``_basic_tokenize``, ``_is_punctuation``, ...).

Pure Python (no TensorFlow import), so data pipelines can use it cheaply.
"""
# bert4keras' tokenizers module re-exports these snippets helpers; scripts import them from here.
from bert4keras_ext.text_utils import (  # noqa: F401
    convert_to_unicode,
    is_py2,
    is_string,
    lowercase_and_normalize,
    open,
    truncate_sequences,
)
from bert4keras_ext.tokenization.alignment import _nfd, _original_span  # noqa: F401
from bert4keras_ext.tokenization.base import TokenizerBase  # noqa: F401
from bert4keras_ext.tokenization.normalization import (  # noqa: F401
    _CASED_TABLE,
    _CJK_PUNCTUATION,
    _CLEAN_TABLE,
    _SIMPLE_PUNCTUATION,
    _SIMPLE_RUN,
    _SLOW,
    _STRIP_SPLIT_TABLE,
    _UNCASED_TABLE,
    _basic_tokenize,
    _cased_entry,
    _CharTable,
    _clean_entry,
    _is_cjk_character,
    _is_control,
    _is_dropped,
    _is_punctuation,
    _is_simple_char,
    _is_whitespace,
    _spaced_punctuation,
    _strip_accents,
    _strip_split_entry,
    _uncased_entry,
)
from bert4keras_ext.tokenization.tokenizer import Tokenizer  # noqa: F401
from bert4keras_ext.tokenization.truncation import _truncate  # noqa: F401
from bert4keras_ext.tokenization.vocab import _vocab_decode_error, load_vocab, save_vocab  # noqa: F401
from bert4keras_ext.tokenization.wordpiece import _WordCache  # noqa: F401

__all__ = [
    'Tokenizer',
    'TokenizerBase',
    'load_vocab',
    'save_vocab',
    'convert_to_unicode',
    'is_string',
    'lowercase_and_normalize',
    'open',
    'truncate_sequences',
]
