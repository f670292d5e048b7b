"""``Tokenizer``: Google BERT's ``FullTokenizer`` output, bert4keras's API.

Usage (bert4keras-compatible)::

    from bert4keras_ext.tokenizers import Tokenizer, load_vocab   # the bert4keras path

    tokenizer = Tokenizer('vocab.txt', do_lower_case=True)
    tokenizer.tokenize('语言模型BERT')    # ['[CLS]', '语', '言', '模', '型', 'bert', '[SEP]']
    token_ids, segment_ids = tokenizer.encode('句子一', '句子二', maxlen=128)
    tokenizer.rematch(text, tokens)       # token -> indices of the original characters

What "exact" means here: for every input string, ``tokenize(text)[1:-1]`` equals what
google-research/bert ``tokenization.FullTokenizer(vocab, do_lower_case).tokenize(text)`` returns
(same cleaning, CJK splitting, lower-casing + accent stripping, punctuation splitting and greedy
longest-match-first WordPiece with ``##`` continuations). Two consequences that differ from bert4keras:

* a word that WordPiece cannot cover (or longer than ``word_maxlen``) becomes the literal token
  ``[UNK]`` (bert4keras keeps the raw word and only maps it to the [UNK] *id*). ``encode`` ids are the
  same either way, and ``rematch`` maps an ``[UNK]`` token to the characters of the word it replaced
  (an emoji, a rare ideograph, an unknown Latin word), as bert4keras' raw-word token did.
* text is cleaned (control characters dropped) *before* it is lower-cased, as Google does; this only
  matters for the context-sensitive Greek final sigma.

Empty (or all-whitespace) text is allowed and encodes to ``[CLS] [SEP]`` (as in bert4keras).

Speed (~70k lines/s on the sentiment corpus, ``benchmarks/bench_tokenizer.py``): runs of CJK
ideographs and common full-width punctuation are mapped character by character to ids; the text
between them goes through ``normalization._basic_tokenize`` (one ``str.translate`` call with cached
per-character tables, then ``str.split``; exact, see that module); WordPiece results are cached per
word. The test-suite checks all paths against a plain re-implementation of Google's code.

The pieces live in sibling modules: ``normalization`` (character tables, basic tokenization),
``wordpiece`` (``WordPieceMixin``), ``alignment`` (``RematchMixin``), ``truncation``, ``vocab``
(``load_vocab``) and ``base`` (``TokenizerBase``). This module is the class that puts them together;
it is pure Python (no TensorFlow import) so data pipelines can use it cheaply. (A little over 400
lines: what is left is the bert4keras API of one class, which does not split further by role.)
"""
import os
import re
import warnings
from itertools import chain

from bert4keras_ext.tokenization.alignment import RematchMixin
from bert4keras_ext.tokenization.base import TokenizerBase
from bert4keras_ext.tokenization.normalization import (
    _CJK_PUNCTUATION,
    _SIMPLE_RUN,
    _basic_tokenize,
    _is_cjk_character,
    _is_control,
    _is_punctuation,
    _is_whitespace,
    _strip_accents,
)
from bert4keras_ext.tokenization.truncation import _truncate
from bert4keras_ext.tokenization.vocab import load_vocab
from bert4keras_ext.tokenization.wordpiece import WordPieceMixin, _stem

__all__ = ['Tokenizer']


class Tokenizer(WordPieceMixin, RematchMixin, TokenizerBase):
    """BERT WordPiece tokenizer with Google-exact tokens and the bert4keras interface.

    Args:
        token_dict: ``{token: id}`` dict, or the path of a ``vocab.txt`` (read with ``load_vocab``).
        do_lower_case: lower-case and strip accents (NFD, drop Mn) like Google's uncased models.
            Google's and HIT's Chinese BERT/RoBERTa vocabularies are used with ``True``.
        pre_tokenize: optional callable ``text -> iterable of words`` (e.g. ``lambda s:
            jieba.cut(s, HMM=False)`` for WoBERT). A word found in the vocabulary becomes one token;
            any other word goes through the normal tokenizer. With ``do_lower_case`` the callable
            receives the lower-cased, accent-stripped text (as in bert4keras).
        token_start, token_end: tokens added around every sequence (``None`` to omit). A token
            that the vocabulary lacks is still added, as bert4keras does, and ``encode`` gives it
            the ``[UNK]`` id (a warning says so; its ``_token_start_id`` / ``_token_end_id`` is
            ``None``): pass ``None`` to add nothing instead.
        token_unk, token_pad, token_mask: special tokens, each optional in the vocabulary (its
            ``_id`` attribute is then ``None``). Without an unk id, a token the vocabulary lacks
            raises ``ValueError`` until the script sets ``tokenizer._token_unk_id`` (as bert4keras
            scripts with hand-made vocabularies do, e.g. ``tokenizer._token_unk_id = 0``).
        word_maxlen: words longer than this many characters become ``[UNK]`` (Google's
            ``max_input_chars_per_word``; 200 as in Google's code and bert4keras, HF uses 100).
        token_translate: optional ``{token: token}`` applied to word pieces after tokenizing.

    Raises:
        FileNotFoundError: the vocabulary path does not exist.
        ValueError: the vocabulary file is not valid in its encoding (the message names the line).
    """


    def __init__(
        self,
        token_dict,
        do_lower_case=False,
        pre_tokenize=None,
        token_start='[CLS]',
        token_end='[SEP]',
        token_unk='[UNK]',
        token_pad='[PAD]',
        token_mask='[MASK]',
        word_maxlen=200,
        token_translate=None,
    ):
        if isinstance(token_dict, (str, bytes, os.PathLike)):
            token_dict = load_vocab(token_dict)
        elif not isinstance(token_dict, dict):
            raise TypeError(
                'Tokenizer: token_dict must be a {token: id} dict or a vocab file path, got %s'
                % type(token_dict).__name__
            )
        if not token_dict:
            raise ValueError('Tokenizer: the vocabulary is empty')
        if pre_tokenize is not None and not callable(pre_tokenize):
            raise TypeError('Tokenizer: pre_tokenize must be callable (text -> iterable of words)')
        super().__init__(token_start=token_start, token_end=token_end, pre_tokenize=pre_tokenize,
                         token_translate=token_translate)

        self._token_dict = token_dict
        self._token_dict_inv = {v: k for k, v in token_dict.items()}
        self._vocab_size = max(token_dict.values()) + 1
        self._do_lower_case = bool(do_lower_case)
        self._word_maxlen = int(word_maxlen)

        self._token_unk = token_unk
        self._token_pad = token_pad
        self._token_mask = token_mask
        if token_unk is None:
            raise ValueError('Tokenizer: token_unk is required (words WordPiece cannot cover)')
        for name in ('start', 'end', 'unk', 'pad', 'mask'):
            token = getattr(self, '_token_%s' % name)
            setattr(self, '_token_%s_id' % name, token_dict.get(token) if token else None)
        for name in ('start', 'end'):
            token = getattr(self, '_token_%s' % name)
            if token is not None and token not in token_dict:
                warnings.warn(
                    'Tokenizer: the vocabulary has no %s token %r; as in bert4keras, tokenize() '
                    'still adds it and encode() gives it the %s id (%s). Pass token_%s=None to add '
                    'nothing, or token_%s=<a vocabulary token>.'
                    % (name, token, token_unk, 'not set: the vocabulary has no %s' % token_unk
                       if self._token_unk_id is None else self._token_unk_id, name, name),
                    stacklevel=2,
                )

        self._setup_caches()


    @property
    def token_dict(self):
        """The ``{token: id}`` vocabulary."""
        return self._token_dict

    @property
    def vocab_size(self):
        """Number of ids (max id + 1)."""
        return self._vocab_size

    # -- tokenization ------------------------------------------------------------------------------

    def _words(self, text):
        """Words to run WordPiece on: Google's basic tokenization, or the pre_tokenize words."""
        if self._pre_tokenize is None:
            return _basic_tokenize(text, self._do_lower_case)
        if self._do_lower_case:
            text = _strip_accents(text.lower())
        words = []
        for word in self._pre_tokenize(text):
            if word in self._token_dict:
                # a vocabulary word is one piece: WordPiece maps an in-vocab word to itself
                words.append(word)
            else:
                words.extend(_basic_tokenize(word, self._do_lower_case))
        return words

    def _collect(self, text, out, word_cache, char_cache):
        """Append the pieces (tokens or ids, per the caches) of ``text`` to the list ``out``.

        Runs of simple characters (ideographs, common full-width punctuation) are looked up one
        character at a time; the text between them takes Google's basic tokenizer. Cutting at those
        characters is exact (see ``_is_simple_char``). Everything inside is C-level iteration with
        one dict lookup per word; ``__missing__`` runs WordPiece on a word's first appearance.
        """
        if self._pre_tokenize is not None:
            out.extend(chain.from_iterable(map(word_cache.__getitem__, self._words(text))))
            return out
        word_piece, char_piece = word_cache.__getitem__, char_cache.__getitem__
        lower, pos = self._do_lower_case, 0
        for run in _SIMPLE_RUN.finditer(text):
            start = run.start()
            if start > pos:
                words = _basic_tokenize(text[pos:start], lower)
                out.extend(chain.from_iterable(map(word_piece, words)))
            out.extend(map(char_piece, run.group()))
            pos = run.end()
        if pos < len(text):
            words = _basic_tokenize(text[pos:] if pos else text, lower)
            out.extend(chain.from_iterable(map(word_piece, words)))
        return out

    def _tokenize(self, text):
        """Tokens of ``text`` without the start/end tokens."""
        return self._collect(text, [], self._pieces, self._char_pieces)

    def _text_to_ids(self, text):
        """Ids of ``text`` including the start/end ids (the fast path behind ``encode``)."""
        # token_to_id, not _token_start_id: a start/end token missing from the vocabulary
        # encodes as [UNK] (bert4keras)
        ids = [self.token_to_id(self._token_start)] if self._token_start is not None else []
        self._collect(text, ids, self._piece_ids, self._char_piece_ids)
        if self._token_end is not None:
            ids.append(self.token_to_id(self._token_end))
        return ids

    def tokenize(self, text, maxlen=None):
        """Split ``text`` into tokens, with ``token_start``/``token_end`` around them.

        Args:
            text: str (may be empty).
            maxlen: optional maximum number of tokens; content tokens are dropped from the end
                (before ``[SEP]``) as bert4keras does.

        Returns:
            list of str, e.g. ``['[CLS]', '我', 'love', '##s', '[SEP]']``.
        """
        self._check_text(text, 'tokenize')
        tokens = self._tokenize(text)
        if self._token_start is not None:
            tokens.insert(0, self._token_start)
        if self._token_end is not None:
            tokens.append(self._token_end)
        if maxlen is not None:
            self._check_maxlen(maxlen, self._n_special(), 'tokenize')
            index = -2 if self._token_end is not None else -1
            tokens = _truncate(maxlen, index, [tokens])[0]
        return tokens

    def encode(
        self, first_text, second_text=None, maxlen=None, pattern='S*E*E', truncate_from='right'
    ):
        """Token ids and segment ids of one text or a text pair.

        Args:
            first_text, second_text: str, or an already tokenized list of tokens (bert4keras
                accepts both; a list should then include the start/end tokens).
            maxlen: optional total length budget. Tokens are removed one at a time from whichever
                sequence is currently longer (first on ties), at the end (before ``[SEP]``) when
                ``truncate_from='right'``, right after ``[CLS]`` when ``'left'``, or at a given int
                position. The special tokens are always kept.
            pattern: ``'S*E*E'`` -> ``[CLS] a [SEP] b [SEP]`` (BERT); ``'S*ES*E'`` keeps the second
                ``[CLS]``: ``[CLS] a [SEP] [CLS] b [SEP]``.
            truncate_from: ``'right'``, ``'left'`` or an int index.

        Returns:
            ``(token_ids, segment_ids)``: two lists of int of the same length; segment id 0 for the
            first text (and its start/end), 1 for the second.

        Raises:
            TypeError: a text is neither str nor a list/tuple of tokens.
            ValueError: ``maxlen`` smaller than the special tokens need (the message gives the
                minimum), or an unknown ``pattern`` / ``truncate_from``.
        """
        if pattern not in ('S*E*E', 'S*ES*E'):
            raise ValueError("encode: pattern must be 'S*E*E' or 'S*ES*E', got %r" % (pattern,))
        first_ids = self._encode_input(first_text, 'first_text')
        second_ids = None
        if second_text is not None:
            second_ids = self._encode_input(second_text, 'second_text')
        # the second sequence's start token is dropped with 'S*E*E'
        drop_second_start = (
            second_ids is not None and pattern == 'S*E*E' and self._token_start is not None
        )

        if maxlen is not None:
            minimum = self._n_special()
            if second_ids is not None:
                minimum += self._n_special() - int(drop_second_start)
            self._check_maxlen(maxlen, minimum, 'encode')
            if truncate_from == 'right':
                index = -2 if self._token_end is not None else -1
            elif truncate_from == 'left':
                index = 1 if self._token_start is not None else 0
            elif isinstance(truncate_from, int) and not isinstance(truncate_from, bool):
                index = truncate_from
            else:
                raise ValueError(
                    "encode: truncate_from must be 'right', 'left' or an int, got %r"
                    % (truncate_from,)
                )
            if second_ids is None:
                first_ids = _truncate(maxlen, index, [first_ids])[0]
            else:
                # bert4keras counts the second [CLS] while balancing, then removes it
                budget = maxlen + int(drop_second_start)
                first_ids, second_ids = _truncate(budget, index, [first_ids, second_ids])

        segment_ids = [0] * len(first_ids)
        if second_ids is not None:
            if drop_second_start:
                second_ids = second_ids[1:]
            first_ids = first_ids + second_ids
            segment_ids.extend([1] * len(second_ids))
        return first_ids, segment_ids

    def _encode_input(self, text, name):
        if isinstance(text, str):
            return self._text_to_ids(text)
        if isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text):
            return self.tokens_to_ids(text)
        raise TypeError(
            'encode: %s must be a str (or a list of tokens), got %s%s'
            % (
                name,
                type(text).__name__,
                ' (decode bytes first, e.g. text.decode("utf-8"))' if isinstance(text, bytes) else '',
            )
        )

    @staticmethod
    def _check_text(text, where):
        if not isinstance(text, str):
            raise TypeError('%s: text must be a str, got %s' % (where, type(text).__name__))

    def _n_special(self):
        return int(self._token_start is not None) + int(self._token_end is not None)

    @staticmethod
    def _check_maxlen(maxlen, minimum, where):
        if isinstance(maxlen, bool) or not isinstance(maxlen, int):
            raise TypeError('%s: maxlen must be an int, got %r' % (where, maxlen))
        if maxlen < minimum:
            raise ValueError(
                '%s: maxlen=%d cannot hold the special tokens; the minimum is %d'
                % (where, maxlen, minimum)
            )

    # -- ids <-> tokens ------------------------------------------------------------------------

    def token_to_id(self, token):
        """Id of ``token``; unknown tokens give the ``[UNK]`` id."""
        i = self._token_dict.get(token, self._token_unk_id)
        if i is None:
            self._raise_no_unk(token)
        return i

    def tokens_to_ids(self, tokens):
        """List of ids for a list of tokens."""
        get, unk = self._token_dict.get, self._token_unk_id
        ids = [get(token, unk) for token in tokens]
        if unk is None and None in ids:
            self._raise_no_unk(tokens[ids.index(None)])
        return ids

    def id_to_token(self, i):
        """Token of id ``i`` (KeyError for an id that is not in the vocabulary)."""
        try:
            return self._token_dict_inv[i]
        except KeyError:
            raise KeyError('id %r is not in the vocabulary (size %d)' % (i, self._vocab_size))

    def ids_to_tokens(self, ids):
        """List of tokens for a list of ids."""
        return [self.id_to_token(int(i)) for i in ids]

    def decode(self, ids, tokens=None):
        """Readable text from ids (or from ``tokens`` when given), bert4keras style.

        Special ``[...]`` tokens are dropped, ``##`` pieces are glued to the previous token, CJK
        characters and CJK punctuation get no spaces, English words are separated by one space.
        Lower-casing and accent stripping are of course not undone.
        """
        tokens = tokens or self.ids_to_tokens(ids)
        tokens = [t for t in tokens if not self._is_special(t)]

        text = ''
        for i, token in enumerate(tokens):
            if token[:2] == '##':
                text += token[2:]
            elif len(token) == 1 and self._is_cjk_character(token):
                text += token
            elif len(token) == 1 and self._is_punctuation(token):
                text += token + ' '
            elif i > 0 and text and self._is_cjk_character(text[-1]):
                text += token
            else:
                text += ' ' + token

        text = re.sub(' +', ' ', text)
        text = re.sub(r"' (re|m|s|t|ve|d|ll) ", r"'\1 ", text)  # "don ' t" -> "don't"
        no_space_after = ''.join(sorted(_CJK_PUNCTUATION)) + '+-/={(<['
        text = re.sub('([%s]) ' % re.escape(no_space_after), r'\1', text)
        text = re.sub(r'(\d\.) (\d)', r'\1\2', text)  # "3. 14" -> "3.14"
        return text.strip()

    # -- bert4keras static helpers ----------------------------------------------------------------

    # bert4keras' static method; the function is shared with load_vocab's ``simplified`` rule
    stem = staticmethod(_stem)

    @staticmethod
    def _is_space(ch):
        """Whitespace as Google defines it: space, \\t, \\n, \\r, category Zs."""
        return _is_whitespace(ch)

    @staticmethod
    def _is_punctuation(ch):
        """ASCII non-alphanumeric printable characters and Unicode category P*."""
        return _is_punctuation(ch)

    @staticmethod
    def _is_cjk_character(ch):
        """CJK ideographs (the blocks Google splits one per token; not Hangul or kana)."""
        return _is_cjk_character(ch)

    @staticmethod
    def _is_control(ch):
        """Category Cc/Cf except \\t \\n \\r."""
        return _is_control(ch)

    @staticmethod
    def _is_special(token):
        """``[...]``-style special tokens such as ``[CLS]``, ``[UNK]``, ``[unused1]``."""
        return bool(token) and token[0] == '[' and token[-1] == ']'

    @staticmethod
    def _cjk_punctuation():
        """The CJK / full-width punctuation characters (as one string) used by ``decode``."""
        return ''.join(sorted(_CJK_PUNCTUATION))
