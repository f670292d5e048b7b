"""WordPiece tokenizer: Google BERT's ``FullTokenizer`` output, bert4keras's API.

Usage (bert4keras-compatible)::

    from bert4keras_ext.tokenizers import Tokenizer, load_vocab

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

Speed (~45k lines/s on the sentiment corpus, ``benchmarks/bench_tokenizer.py``): runs of CJK
ideographs and common full-width punctuation are mapped character by character to ids; the text
between them goes through the "basic tokenizer" (cleaning, CJK/punctuation splitting, lower-casing,
accent stripping) as one ``str.translate`` call with a lazily filled per-character table shared by all
tokenizers, followed by ``str.split``; WordPiece results are cached per word. A handful of characters
(Greek capital sigma, whose lower-case form depends on its neighbours, and characters whose
decomposition keeps a reorderable combining mark) make the per-character shortcut inexact; text
containing one takes the literal Google pipeline instead. The test-suite checks all paths against a
plain re-implementation of Google's code (and every code point was checked in several contexts).

This module is pure Python (no TensorFlow import) so data pipelines can use it cheaply. It also
exports bert4keras' ``tokenizers`` names: ``TokenizerBase`` (the template for user tokenizers, in
``tokenizer_base``) and the helpers bert4keras imported from snippets (``convert_to_unicode``,
``is_string``, ``is_py2``, ``lowercase_and_normalize``, ``open``, ``truncate_sequences``).
"""
import builtins
import functools
import os
import re
import unicodedata
import warnings
from itertools import chain

# bert4keras' tokenizers module re-exports these snippets helpers; scripts import them from here.
from bert4keras_ext.text_utils import (  # noqa: F401
    convert_to_unicode,
    is_py2,
    is_string,
    lowercase_and_normalize,
    open,
    truncate_sequences,
)
from bert4keras_ext.tokenizer_base import TokenizerBase

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


# ----------------------------------------------------------------------------------------------
# Character classes (Google tokenization.py definitions)
# ----------------------------------------------------------------------------------------------

def _is_whitespace(ch):
    """Google ``_is_whitespace``: space, \\t, \\n, \\r or Unicode category Zs."""
    return ch in ' \t\n\r' or unicodedata.category(ch) == 'Zs'


def _is_control(ch):
    """Google ``_is_control``: category Cc/Cf, except \\t \\n \\r (those count as whitespace)."""
    if ch in '\t\n\r':
        return False
    return unicodedata.category(ch) in ('Cc', 'Cf')


def _is_punctuation(ch):
    """Google ``_is_punctuation``: every non-alphanumeric printable ASCII char, or category P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith('P')


def _is_cjk_character(ch):
    """Google ``_is_chinese_char``: the CJK Unified/Compatibility Ideograph blocks only.

    Hangul, Hiragana and Katakana are *not* included (Google splits only ideographs one per token).
    """
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_dropped(ch):
    """Characters Google's ``_clean_text`` deletes: U+0000, U+FFFD and control characters."""
    return ch == '\x00' or ch == '\ufffd' or _is_control(ch)


# Full-width / CJK punctuation after which ``decode`` puts no space (the set bert4keras uses).
_CJK_PUNCTUATION = frozenset(
    '\u00b7\u2013\u2014\u2018\u2019\u201b\u201c\u201d\u201e\u201f\u2026\u2027'
    '\u3000\u3001\u3002\u3003\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011'
    '\u3014\u3015\u3016\u3017\u3018\u3019\u301a\u301b\u301c\u301d\u301e\u301f\u3030\u303e\u303f'
    '\ufe4f\ufe51\ufe54'
    '\uff01\uff02\uff03\uff04\uff05\uff06\uff07\uff08\uff09\uff0a\uff0b\uff0c\uff0d\uff0f'
    '\uff1a\uff1b\uff1c\uff1d\uff1e\uff1f\uff20\uff3b\uff3c\uff3d\uff3e\uff3f\uff40'
    '\uff5b\uff5c\uff5d\uff5e\uff5f\uff60\uff61\uff62\uff63\uff64'
)


# ----------------------------------------------------------------------------------------------
# Lazily filled str.translate tables
# ----------------------------------------------------------------------------------------------

# Marks "this text needs the literal pipeline" in the output of the fast translate. U+0000 is always
# deleted by cleaning and no lower-casing/decomposition produces it, so it cannot occur otherwise.
_SLOW = '\x00'


class _CharTable(dict):
    """A ``str.translate`` table (code point -> replacement str) computed on first use.

    ``str.translate`` looks characters up with ``mapping[cp]``, which for a dict subclass calls
    ``__missing__`` on a miss; every distinct character is therefore classified once per process,
    and afterwards the whole translation runs in C. Entries depend only on Unicode data, so the
    tables are shared module-level caches (at most one entry per code point ever seen).
    """

    def __init__(self, entry):
        super().__init__()
        self._entry = entry

    def __missing__(self, cp):
        value = self._entry(chr(cp))
        self[cp] = value
        return value


def _spaced_punctuation(chars):
    """Surround every punctuation character with spaces (Google ``_run_split_on_punc``)."""
    return ''.join(' %s ' % c if _is_punctuation(c) else c for c in chars)


def _cased_entry(ch):
    """Per-character basic tokenization without lower-casing (fully context free)."""
    if _is_dropped(ch):
        return ''
    if _is_whitespace(ch):
        return ' '
    if _is_cjk_character(ch) or _is_punctuation(ch):
        return ' %s ' % ch
    return ch


def _uncased_entry(ch):
    """Per-character basic tokenization with lower-casing and accent stripping.

    Google lower-cases and NFD-decomposes whole words, then drops Mn marks and splits punctuation.
    Doing it per character gives the same result except when (a) ``str.lower`` looks at neighbours
    (only U+03A3, the final-sigma rule) or (b) a kept (non-Mn) character with a non-zero canonical
    combining class could be reordered against another one by NFD. Such characters return ``_SLOW``.
    """
    if _is_dropped(ch):
        return ''
    if _is_whitespace(ch):
        return ' '
    if ch == '\u03a3':
        return _SLOW
    kept = []
    for c in unicodedata.normalize('NFD', ch.lower()):
        if unicodedata.category(c) == 'Mn':
            continue
        if unicodedata.combining(c):
            return _SLOW
        kept.append(c)
    out = _spaced_punctuation(kept)
    # Google isolates ideographs before lower-casing, punctuation after (decomposition may create
    # punctuation, e.g. U+1FEF -> '`'); mirror both.
    return ' %s ' % out if _is_cjk_character(ch) else out


def _clean_entry(ch):
    """Literal pipeline step 1: Google ``_clean_text`` + ``_tokenize_chinese_chars``."""
    if _is_dropped(ch):
        return ''
    if _is_whitespace(ch):
        return ' '
    if _is_cjk_character(ch):
        return ' %s ' % ch
    return ch


def _strip_split_entry(ch):
    """Literal pipeline step 2 (after lower + NFD): drop Mn marks, isolate punctuation."""
    if unicodedata.category(ch) == 'Mn':
        return ''
    return ' %s ' % ch if _is_punctuation(ch) else ch


_CASED_TABLE = _CharTable(_cased_entry)
_UNCASED_TABLE = _CharTable(_uncased_entry)
_CLEAN_TABLE = _CharTable(_clean_entry)
_STRIP_SPLIT_TABLE = _CharTable(_strip_split_entry)


def _basic_tokenize(text, do_lower_case):
    """Google ``BasicTokenizer(do_lower_case).tokenize(text)``: list of words (str)."""
    if not do_lower_case:
        return text.translate(_CASED_TABLE).split()
    out = text.translate(_UNCASED_TABLE)
    if _SLOW not in out:
        return out.split()
    # Literal order of Google's steps. Lower-casing / NFD of the whole text equals doing it per
    # whitespace-separated word, because whitespace is neither cased nor case-ignorable (so the
    # final-sigma context stops there) and is a canonical starter (so NFD never reorders across it).
    out = text.translate(_CLEAN_TABLE).lower()
    out = unicodedata.normalize('NFD', out)
    return out.translate(_STRIP_SPLIT_TABLE).split()


def _is_simple_char(ch):
    """True if ``ch`` can be tokenized on its own, skipping the general path.

    That holds for a character which Google always makes a token of its own (an ideograph or a
    punctuation mark), which cleaning, lower-casing and NFD leave unchanged, and at which cutting the
    text changes nothing for its neighbours: combining class 0 (NFD never reorders across it) and
    neither cased nor case-ignorable (so the final-sigma rule never looks through it; a following
    Alpha turns the sigma into the final form only if ``ch`` is such a character).
    """
    return (
        (_is_cjk_character(ch) or _is_punctuation(ch))
        and not _is_dropped(ch)
        and not _is_whitespace(ch)
        and unicodedata.normalize('NFD', ch) == ch
        and ch.lower() == ch
        and unicodedata.category(ch) != 'Mn'
        and unicodedata.combining(ch) == 0
        and ('\u0391\u03a3' + ch + '\u0391').lower()[1] == '\u03c2'
    )


# Runs of "simple" characters: the two main CJK ideograph blocks (no decompositions, category Lo)
# and the most frequent full-width punctuation that passes ``_is_simple_char`` (the test-suite
# checks every character of the class). Such a run maps character by character to tokens.
_SIMPLE_PUNCTUATION = ''.join(
    c for c in '\uff0c\u3002\uff01\uff1f\u3001\uff1b\uff1a\u201c\u201d\u2018\u2019\u300a\u300b'
    '\uff08\uff09\u3010\u3011\u2026\u2014\uff5e'
    if _is_simple_char(c)
)
_SIMPLE_RUN = re.compile(
    '[\u3400-\u4dbf\u4e00-\u9fff%s]+' % ''.join(re.escape(c) for c in _SIMPLE_PUNCTUATION)
)


def _strip_accents(text):
    """NFD-decompose and drop Mn marks (Google ``_run_strip_accents``)."""
    if text.isascii():
        return text
    text = unicodedata.normalize('NFD', text)
    return ''.join(c for c in text if unicodedata.category(c) != 'Mn')


@functools.lru_cache(maxsize=1 << 16)
def _nfd(ch):
    """NFD decomposition of one (already lower-cased) character, cached for ``rematch``."""
    return unicodedata.normalize('NFD', ch)


# ----------------------------------------------------------------------------------------------
# Vocabulary files
# ----------------------------------------------------------------------------------------------

def load_vocab(dict_path, encoding='utf-8', simplified=False, startswith=None):
    """Read a BERT vocabulary file (one token per line; the id is the line number).

    Args:
        dict_path: path of ``vocab.txt``. A line's token is its first whitespace-separated field
            (so ``token<TAB>count`` files work); a blank line is the token ``''``. If a token occurs
            twice, the later line wins (Google ``load_vocab``) and ids stay equal to line numbers, so
            they index the checkpoint's embedding rows.
        encoding: file encoding.
        simplified: if True, drop tokens that a char-level Chinese model never produces or that are
            redundant, exactly like bert4keras: a token longer than one character is dropped when
            its stem (the token without a leading ``##``) contains a CJK ideograph or a punctuation
            character. That removes ``##的``-style continuations of ideographs, ``[unusedN]`` and the
            other bracketed special tokens, and multi-character punctuation such as ``...``.
            Single characters and English word pieces are kept.
        startswith: tokens placed first, in this order, whatever the rule says (typically
            ``['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']`` so the special tokens survive).

    Returns:
        ``token_dict`` ({token: id}); with ``simplified=True`` a pair ``(new_token_dict,
        keep_tokens)`` where ``new_token_dict`` has ids ``0..n-1`` and ``keep_tokens[new_id]`` is
        the old id (pass it to ``build_transformer_model(keep_tokens=...)`` to slice the embeddings).

    Raises:
        FileNotFoundError: ``dict_path`` does not exist.
        ValueError: a ``startswith`` token is not in the vocabulary.
    """
    path = os.fspath(dict_path)
    if not os.path.isfile(path):
        raise FileNotFoundError('vocabulary file not found: %r' % path)
    token_dict = {}
    try:
        with builtins.open(path, encoding=encoding) as reader:
            for index, line in enumerate(reader):
                fields = line.split()
                token_dict[fields[0] if fields else line.strip()] = index
    except UnicodeDecodeError as e:
        raise _vocab_decode_error(path, encoding, e) from e

    if not simplified:
        return token_dict

    new_token_dict, keep_tokens = {}, []
    for token in startswith or []:
        if token not in token_dict:
            raise ValueError('load_vocab: startswith token %r is not in %r' % (token, path))
        if token not in new_token_dict:
            new_token_dict[token] = len(new_token_dict)
            keep_tokens.append(token_dict[token])
    for token, index in sorted(token_dict.items(), key=lambda item: item[1]):
        if token in new_token_dict:
            continue
        if len(token) > 1 and any(
            _is_cjk_character(c) or _is_punctuation(c) for c in Tokenizer.stem(token)
        ):
            continue
        new_token_dict[token] = len(new_token_dict)
        keep_tokens.append(index)
    return new_token_dict, keep_tokens


def _vocab_decode_error(path, encoding, error):
    """A ValueError naming the file, line and bytes that ``encoding`` cannot decode."""
    with builtins.open(path, 'rb') as f:
        raw = f.read()
    start = error.start
    try:
        # the bytes before the bad ones decode (text-mode reads decode in chunks, so the error's own
        # offset is relative to a chunk: find the absolute one by decoding the whole file)
        raw.decode(encoding)
    except UnicodeDecodeError as whole:
        start = whole.start
    before = raw[:start].decode(encoding, errors='replace')
    # line numbers as text-mode reading counts them (universal newlines: \n, \r\n or \r)
    line = before.count('\n') + before.count('\r') - before.count('\r\n') + 1
    return ValueError(
        'vocabulary file %r: line %d is not valid %s (bytes %r at byte offset %d: %s); save the '
        'file as %s or pass the right encoding= to load_vocab'
        % (path, line, encoding, raw[start:start + 4], start, error.reason, encoding)
    )


def save_vocab(dict_path, token_dict, encoding='utf-8'):
    """Write ``token_dict`` as a vocabulary file, one token per line in id order.

    Line numbers equal ids only if the ids are ``0..n-1`` (true for ``load_vocab`` results, simplified
    or not); a dict with gaps raises ValueError rather than silently shifting ids.
    """
    items = sorted(token_dict.items(), key=lambda item: item[1])
    if [index for _, index in items] != list(range(len(items))):
        raise ValueError('save_vocab: token ids must be exactly 0..%d' % (len(items) - 1))
    with builtins.open(os.fspath(dict_path), 'w', encoding=encoding) as writer:
        for token, _ in items:
            writer.write(token + '\n')


# ----------------------------------------------------------------------------------------------
# Truncation (bert4keras truncate_sequences semantics, computed without popping one by one)
# ----------------------------------------------------------------------------------------------

def _truncate(maxlen, index, sequences):
    """Cut the lists in ``sequences`` in place like bert4keras ``truncate_sequences``; return them.

    bert4keras repeatedly pops ``index`` from the currently longest sequence (first one on ties)
    until the total length is at most ``maxlen``. Here the number of pops per sequence is counted
    first, then each sequence is cut once, which is the same result in linear time.
    """
    lengths = [len(s) for s in sequences]
    total = sum(lengths)
    if total <= maxlen:
        return sequences
    pops = [0] * len(sequences)
    if len(sequences) == 1:
        pops[0] = total - maxlen
    else:
        while total > maxlen:
            i = lengths.index(max(lengths))
            lengths[i] -= 1
            pops[i] += 1
            total -= 1
    for seq, k in zip(sequences, pops):
        if k:
            n = len(seq)
            # popping position ``index`` k times removes one contiguous block
            start = index if index >= 0 else n + index - k + 1
            if start < 0 or start + k > n:
                raise ValueError(
                    'cannot truncate a sequence of length %d by %d at index %d' % (n, k, index)
                )
            del seq[start:start + k]
    return sequences


def _original_span(text, char_mapping, start, end):
    """Indices of the original characters of the normalised word ``[start, end)`` (an [UNK]).

    Every original character from the word's first to the one before the next kept character
    (or the end of the text) belongs to it: that includes characters normalisation dropped inside
    or after the word (accents, zero-width controls), since Google's cleaning joins them to it.
    """
    if start >= end:
        return []
    first = char_mapping[start]
    stop = char_mapping[end] if end < len(char_mapping) else len(text)
    return list(range(first, max(stop, char_mapping[end - 1] + 1)))


# ----------------------------------------------------------------------------------------------
# Tokenizer
# ----------------------------------------------------------------------------------------------

class _WordCache(dict):
    """word -> tuple of pieces, computed by ``compute`` on a miss; cleared when full."""

    def __init__(self, compute, maxsize):
        super().__init__()
        self._compute = compute
        self._maxsize = maxsize

    def __missing__(self, word):
        if len(self) >= self._maxsize:
            self.clear()
        value = self[word] = self._compute(word)
        return value


class Tokenizer(TokenizerBase):
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

    # entries per word cache before it is cleared (bounds memory on endless streams of new words)
    _cache_size = 1 << 17

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

    # -- caches (rebuilt after unpickling; they hold bound methods) ----------------------------

    def _setup_caches(self):
        vocab = self._token_dict
        # WordPiece never needs to try a substring longer than the longest vocabulary entry.
        self._max_piece = max(map(len, vocab))
        self._max_cont_piece = max([len(t) - 2 for t in vocab if t.startswith('##')] or [0])
        self._pieces = _WordCache(self._compute_pieces, self._cache_size)
        self._piece_ids = _WordCache(self._compute_piece_ids, self._cache_size)
        # a one-character word is always exactly one piece (itself or [UNK])
        self._char_pieces = _WordCache(lambda ch: self._pieces[ch][0], self._cache_size)
        self._char_piece_ids = _WordCache(lambda ch: self._piece_ids[ch][0], self._cache_size)

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ('_pieces', '_piece_ids', '_char_pieces', '_char_piece_ids'):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._setup_caches()

    @property
    def token_dict(self):
        """The ``{token: id}`` vocabulary."""
        return self._token_dict

    @property
    def vocab_size(self):
        """Number of ids (max id + 1)."""
        return self._vocab_size

    # -- WordPiece -------------------------------------------------------------------------------

    def _word_piece_tokenize(self, word):
        """Google ``WordpieceTokenizer`` on one word: list of pieces, or ``[token_unk]``.

        Greedy longest-match-first; a continuation piece is looked up as ``'##' + piece``. If some
        position cannot be matched, the *whole* word is unknown (not just that part).
        """
        n = len(word)
        if n > self._word_maxlen:
            return [self._token_unk]
        vocab = self._token_dict
        if word in vocab:
            return [word]
        pieces, start = [], 0
        while start < n:
            if start == 0:
                end = min(n, self._max_piece)
                while end > 0 and word[:end] not in vocab:
                    end -= 1
                piece = word[:end]
            else:
                end = min(n, start + self._max_cont_piece)
                piece = None
                while end > start:
                    piece = '##' + word[start:end]
                    if piece in vocab:
                        break
                    end -= 1
            if end == start:
                return [self._token_unk]
            pieces.append(piece)
            start = end
        return pieces

    def _compute_pieces(self, word):
        translate = self._token_translate
        pieces = self._word_piece_tokenize(word)
        if translate:
            pieces = [translate.get(p) or p for p in pieces]
        return tuple(pieces)

    def _compute_piece_ids(self, word):
        get, unk = self._token_dict.get, self._token_unk_id
        ids = tuple([get(p, unk) for p in self._pieces[word]])
        if unk is None and None in ids:
            self._raise_no_unk(word)
        return ids

    def _raise_no_unk(self, token):
        # bert4keras leaves `_token_unk_id` unset for such vocabularies (an AttributeError here)
        raise ValueError(
            'Tokenizer: %r is not in the vocabulary, which has no unk token %r: set '
            'tokenizer._token_unk_id = <an id> (as bert4keras scripts do), or pass token_unk=<a '
            'vocabulary token>' % (token, self._token_unk))

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

    # -- alignment ---------------------------------------------------------------------------------

    def _normalize_with_mapping(self, text):
        """Text as the tokens see it (cleaned, lower-cased, accents stripped) + origin of each char.

        Returns ``(normalized, mapping)`` with ``mapping[j]`` the index in ``text`` of the character
        ``normalized[j]`` came from. Whitespace is kept (the token search skips it).
        """
        kept = [(i, ch) for i, ch in enumerate(text) if not _is_dropped(ch)]
        if not self._do_lower_case:
            return ''.join(ch for _, ch in kept), [i for i, _ in kept]
        if text.isascii():
            return ''.join(ch for _, ch in kept).lower(), [i for i, _ in kept]

        # lower-case with the whole text's context (final sigma); per-char lengths are context free
        if '\u03a3' in text:
            lowered_text = ''.join(ch for _, ch in kept).lower()
            pos, lowered = 0, []
            for i, ch in kept:
                n = len(ch.lower())
                lowered.append((i, lowered_text[pos:pos + n]))
                pos += n
        else:
            lowered = [(i, ch.lower()) for i, ch in kept]

        chars, mapping = [], []
        for i, low in lowered:
            for c in (_nfd(low) if len(low) == 1 else unicodedata.normalize('NFD', low)):
                chars.append(c)
                mapping.append(i)
        if not unicodedata.is_normalized('NFD', ''.join(chars)):
            # canonical reordering across characters: stable sort each run of combining marks
            combining = [unicodedata.combining(c) for c in chars]
            k, n = 0, len(chars)
            while k < n:
                if not combining[k]:
                    k += 1
                    continue
                j = k
                while j < n and combining[j]:
                    j += 1
                order = sorted(range(k, j), key=combining.__getitem__)
                chars[k:j] = [chars[m] for m in order]
                mapping[k:j] = [mapping[m] for m in order]
                k = j
        keep = [j for j, c in enumerate(chars) if unicodedata.category(c) != 'Mn']
        return ''.join(chars[j] for j in keep), [mapping[j] for j in keep]

    def rematch(self, text, tokens):
        """Map each token back to the indices of the original characters it covers.

        Args:
            text: the original str.
            tokens: tokens of ``text`` from this tokenizer (e.g. ``tokenize(text)``, possibly
                truncated).

        Returns:
            list (one per token) of lists of int indices into ``text``. An ``[UNK]`` token maps to
            the characters of the word it replaced (Google's WordPiece replaces a whole word that
            it cannot split, e.g. an emoji, a rare ideograph, an unknown Latin word), so span
            code such as ``text[mapping[h][0]:mapping[t][-1] + 1]`` works on any text; the other
            bracketed special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``, ``[unused1]``,
            ... as bert4keras' ``_is_special``) map to ``[]``. Indices are exact after
            lower-casing and accent stripping too: a character that normalises to several
            characters (e.g. 'İ' -> 'i') is reported for each token that covers part of it.

        Raises:
            ValueError: a token cannot be found in the text (it was not produced from this text
                by a tokenizer with the same ``do_lower_case``).
        """
        self._check_text(text, 'rematch')
        normalized, char_mapping = self._normalize_with_mapping(text)
        token_mapping, offset, fallback = [], 0, None
        unk = None  # (index in token_mapping, normalized start) of the last [UNK]
        for token in tokens:
            if token == self._token_unk:
                start = offset
                offset, fallback = self._skip_unknown_word(text, normalized, char_mapping, offset)
                if fallback is not None:
                    start = fallback - 1  # the word's first character (whitespace skipped)
                unk = (len(token_mapping), start)
                token_mapping.append(_original_span(text, char_mapping, start, offset))
                continue
            if self._is_special(token):
                token_mapping.append([])
                continue
            stem = self.stem(token)
            start = normalized.find(stem, offset)
            if start < 0 and fallback is not None:
                # pre_tokenize may have cut the unknown word inside a basic word: the [UNK] then
                # covers only the part before this token
                start = normalized.find(stem, fallback)
                if start >= 0 and unk is not None:
                    position, unk_start = unk
                    token_mapping[position] = _original_span(text, char_mapping, unk_start,
                                                             max(start, fallback))
            if start < 0:
                raise ValueError(
                    'rematch: token %r not found in the text after position %d; were the tokens '
                    'produced from this text with do_lower_case=%s?'
                    % (token, char_mapping[offset] if offset < len(char_mapping) else len(text),
                       self._do_lower_case)
                )
            end = start + len(stem)
            token_mapping.append(char_mapping[start:end])
            offset, fallback, unk = end, None, None
        return token_mapping

    def _skip_unknown_word(self, text, normalized, char_mapping, offset):
        """Position after the basic word that an ``[UNK]`` token replaced, and a fallback position.

        A basic word is one ideograph, one punctuation character, or a maximal run of other
        non-whitespace characters (ideographs are judged on the original character, as Google
        isolates them before normalising).
        """
        n = len(normalized)
        while offset < n and normalized[offset].isspace():
            offset += 1
        if offset >= n:
            return offset, None

        def is_boundary(j):
            c = normalized[j]
            return c.isspace() or _is_punctuation(c) or _is_cjk_character(text[char_mapping[j]])

        end = offset + 1
        if not is_boundary(offset):
            while end < n and not is_boundary(end):
                end += 1
        return end, offset + 1

    # -- bert4keras static helpers ----------------------------------------------------------------

    @staticmethod
    def stem(token):
        """A token without its leading ``##`` (continuation marker)."""
        return token[2:] if token[:2] == '##' else token

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
