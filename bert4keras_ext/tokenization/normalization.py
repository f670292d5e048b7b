"""Google's basic tokenization as per-character tables: character classes, cleaning, CJK and
punctuation splitting, lower-casing and accent stripping.

``_basic_tokenize(text, do_lower_case)`` equals google-research/bert
``BasicTokenizer(do_lower_case).tokenize(text)``. It runs as one ``str.translate`` call with a
lazily filled per-character table shared by all tokenizers, followed by ``str.split``. A handful of
characters (Greek capital sigma, whose lower-case form depends on its neighbours, and characters
whose decomposition keeps a reorderable combining mark) make the per-character shortcut inexact;
text containing one takes the literal Google pipeline instead.

``_SIMPLE_RUN`` finds runs of characters (CJK ideographs, common full-width punctuation) that the
tokenizer may map one by one to tokens, skipping the tables (see ``_is_simple_char``).

Pure Python (no TensorFlow).
"""
import re
import unicodedata

__all__ = []  # package-internal: the Tokenizer, alignment and vocabulary modules use these


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
