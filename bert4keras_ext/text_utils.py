"""String, file and sequence helpers with bert4keras' names (re-exported by snippets and tokenizers).

Pure Python + numpy (no TensorFlow), so the tokenizer and data pipelines can use them cheaply.

Public names (bert4keras 0.11.5 ``snippets`` semantics)::

    is_py2, basestring, is_string, strQ2B, string_matching, convert_to_unicode, convert_to_str,
    lowercase_and_normalize, open, truncate_sequences,
    longest_common_substring, longest_common_subsequence

bert4keras supported Python 2 and 3; this package is Python 3 only, so ``is_py2`` is ``False`` and
the py2 branches of the conversions are gone (``convert_to_str`` of ``bytes`` still decodes, as in
bert4keras on Python 3).
"""
import builtins
import json
import numbers
import os
import re
import unicodedata

import numpy as np

__all__ = [
    'is_py2',
    'basestring',
    'is_string',
    'strQ2B',
    'string_matching',
    'convert_to_unicode',
    'convert_to_str',
    'lowercase_and_normalize',
    'open',
    'truncate_sequences',
    'longest_common_substring',
    'longest_common_subsequence',
]

is_py2 = False
basestring = str  # bert4keras' py2/py3 alias, kept because scripts use it in isinstance checks

# ``open`` below shadows the builtin inside this module (bert4keras does the same).
_builtin_open = builtins.open


def is_string(s):
    """True when ``s`` is a ``str`` (bert4keras kept this for py2/py3 compatibility)."""
    return isinstance(s, str)


def strQ2B(ustring):
    """Full-width characters to their half-width forms.

    U+3000 (ideographic space) becomes ' ' and U+FF01..U+FF5E become U+0021..U+007E
    (e.g. ``'ＡＢＣ１２３！'`` -> ``'ABC123!'``); every other character is kept.
    (bert4keras' version called the py2 builtin ``unichr`` and failed on Python 3.)
    """
    out = []
    for ch in ustring:
        code = ord(ch)
        if code == 0x3000:
            code = 0x20
        elif 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        out.append(chr(code))
    return ''.join(out)


def string_matching(s, keywords):
    """True when at least one of ``keywords`` (regular expressions) is found in ``s`` (``re.search``)."""
    return any(re.search(k, s) for k in keywords)


def convert_to_unicode(text, encoding='utf-8', errors='ignore'):
    """``bytes`` decoded with ``encoding`` (bad bytes dropped by default); anything else unchanged."""
    if isinstance(text, bytes):
        text = text.decode(encoding, errors=errors)
    return text


def convert_to_str(text, encoding='utf-8', errors='ignore'):
    """On Python 3 the same as :func:`convert_to_unicode` (``str`` is already unicode)."""
    return convert_to_unicode(text, encoding, errors)


def lowercase_and_normalize(text):
    """Lower-case, NFD-decompose and drop combining marks (category Mn), e.g. ``'Héllo'`` -> ``'hello'``.

    This is what uncased BERT vocabularies expect (Google's ``_run_strip_accents`` after ``lower``).
    """
    text = unicodedata.normalize('NFD', text.lower())
    return ''.join(ch for ch in text if unicodedata.category(ch) != 'Mn')


# ---------------------------------------------------------------------------------------------
# open: a file object that can also be indexed by line
# ---------------------------------------------------------------------------------------------

class open:  # noqa: N801  (bert4keras' name, used as `from bert4keras.snippets import open`)
    """The builtin ``open`` plus line indexing, with bert4keras' signature.

    ``open(name, indexable=True)[k]`` is line ``k`` of the file (with its newline), read by seeking
    to a stored offset, so a large corpus can be used as random-access ``DataGenerator`` data
    without loading it. ``len(f)`` is then the number of lines.

    Args:
        name: path of the file.
        mode, encoding, errors: as for the builtin ``open`` (``errors`` is ignored in binary mode).
        indexable: ``False``; ``True`` (scan the file once to record where each line starts); or a
            path of a JSON cache of those offsets: loaded when the file exists, otherwise created
            after the scan (bert4keras' format: a JSON list of ``tell()`` positions). A cache made
            for another file gives wrong lines: delete it when the data file changes.

    The object iterates over lines, supports ``next``, ``read``, ``readline``, ``readlines``,
    ``write``, ``flush``, ``close``, ``tell``, ``seek`` and ``with``; other attributes of the
    underlying file (``closed``, ``fileno``, ...) are forwarded.
    """

    def __init__(self, name, mode='r', encoding=None, errors='strict', indexable=False):
        self.name = name
        if 'b' in mode:
            # the builtin refuses any errors= in binary mode (bert4keras' 'strict' default failed)
            self.file = _builtin_open(name, mode)
        else:
            self.file = _builtin_open(name, mode, encoding=encoding, errors=errors)
        self.encoding = encoding
        self.errors = errors
        self.iterator = None
        if indexable:
            if is_string(indexable) and os.path.exists(indexable):
                with _builtin_open(indexable) as f:
                    self.offsets = json.load(f)
            else:
                self.create_indexes()
                if is_string(indexable):
                    with _builtin_open(indexable, 'w') as f:
                        json.dump(self.offsets, f)

    def create_indexes(self):
        """Record where every line starts (``self.offsets``), then rewind to the start."""
        self.seek(0)
        offsets, offset = [], 0
        # readline + tell (not iteration, which disables tell() on text files); the positions are
        # the file's own tell() values, so seek() accepts them in text and binary mode alike.
        while self.file.readline():
            offsets.append(offset)
            offset = self.file.tell()
        self.offsets = offsets
        self.seek(0)

    def _check_indexed(self, what):
        if not hasattr(self, 'offsets'):
            raise TypeError(
                '%s needs a line index: open the file with indexable=True (or indexable='
                '"offsets.json" to cache it)' % what
            )

    def __getitem__(self, key):
        self._check_indexed('open(...)[i]')
        if isinstance(key, slice):
            return [self[i] for i in range(*key.indices(len(self.offsets)))]
        if isinstance(key, bool) or not isinstance(key, numbers.Integral):
            raise TypeError('line index must be an int or a slice, got %r' % (key,))
        try:
            offset = self.offsets[key]
        except IndexError:
            raise IndexError('line %d out of range: the file has %d lines'
                             % (key, len(self.offsets))) from None
        self.seek(offset)
        return self.readline()

    def __len__(self):
        self._check_indexed('len(open(...))')
        return len(self.offsets)

    def __iter__(self):
        for line in self.file:
            yield convert_to_unicode(line, self.encoding, self.errors) if self.encoding else line

    def next(self):
        if self.iterator is None:
            self.iterator = self.__iter__()
        return next(self.iterator)

    __next__ = next

    def read(self, *args):
        text = self.file.read(*args)
        return convert_to_unicode(text, self.encoding, self.errors) if self.encoding else text

    def readline(self, *args):
        text = self.file.readline(*args)
        return convert_to_unicode(text, self.encoding, self.errors) if self.encoding else text

    def readlines(self, *args):
        lines = self.file.readlines(*args)
        if self.encoding:
            lines = [convert_to_unicode(t, self.encoding, self.errors) for t in lines]
        return lines

    def write(self, text):
        if self.encoding:
            text = convert_to_str(text, self.encoding, self.errors)
        return self.file.write(text)

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()

    def tell(self):
        return self.file.tell()

    def seek(self, offset=0, whence=0):
        return self.file.seek(offset, whence)

    def __getattr__(self, attr):
        # only called for names not defined here: closed, fileno, mode, buffer, ...
        if attr == 'file':  # not yet set (the builtin open failed in __init__)
            raise AttributeError(attr)
        return getattr(self.file, attr)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, tb):
        self.close()


# ---------------------------------------------------------------------------------------------
# Sequences
# ---------------------------------------------------------------------------------------------

def _is_nonneg_int(x):
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 0


def truncate_sequences(maxlen, indices, *sequences):
    """Cut sequences until their total length is at most ``maxlen``, always from the longest.

    Each step pops the element at position ``indices[i]`` from the currently longest sequence
    (the first one on ties). bert4keras passes ``-2`` so the trailing ``[SEP]`` survives.

    Args:
        maxlen: non-negative int, the budget for the summed lengths.
        indices: an int used for every sequence, or a list/tuple with one int per sequence.
        *sequences: lists (or ``None``). ``None`` and empty sequences are left alone, as in
            bert4keras. Lists are truncated **in place** (bert4keras' ``Tokenizer.encode`` relies
            on that); other sequence types are copied to lists first and only the returned
            copies are truncated.

    Returns:
        list of the sequences, one per argument and in argument order (``None`` stays ``None``).
        (bert4keras returned only the non-empty ones; callers almost always rely on the in-place
        cut instead, which is the same.)
    """
    if not _is_nonneg_int(maxlen):
        raise ValueError(f'truncate_sequences: maxlen must be a non-negative int, got {maxlen!r}')
    if isinstance(indices, (list, tuple)):
        if len(indices) != len(sequences):
            raise ValueError(
                f'truncate_sequences: {len(indices)} indices for {len(sequences)} sequences'
            )
        indices = list(indices)
    else:
        indices = [indices] * len(sequences)

    sequences = [s if s is None or isinstance(s, list) else list(s) for s in sequences]
    live = [i for i, s in enumerate(sequences) if s]
    lengths = [len(sequences[i]) for i in live]
    total = sum(lengths)
    while total > maxlen:
        j = int(np.argmax(lengths))
        i = live[j]
        try:
            sequences[i].pop(indices[i])
        except IndexError:
            raise ValueError(
                f'truncate_sequences: cannot reach maxlen={maxlen}: sequence {i} has length '
                f'{lengths[j]} and index {indices[i]} is out of range for it'
            ) from None
        lengths[j] -= 1
        total -= 1
    return sequences


def longest_common_substring(source, target):
    """Longest common contiguous slice of two sequences (strings, lists, ...).

    Returns:
        ``(length, (i0, i1, j0, j1))`` with ``source[i0:i1] == target[j0:j1]`` of that length;
        ``(0, (0, 0, 0, 0))`` when nothing is shared. Among several longest ones, the one whose end
        comes first in ``source`` (then in ``target``) is returned, as bert4keras does.
    """
    best, span = 0, (0, 0, 0, 0)
    # run[j] = length of the common run ending at source[i-1], target[j-1] (one DP row at a time)
    previous = [0] * (len(target) + 1)
    for i, si in enumerate(source, 1):
        current = [0] * (len(target) + 1)
        for j, tj in enumerate(target, 1):
            if si == tj:
                n = current[j] = previous[j - 1] + 1
                if n > best:
                    best, span = n, (i - n, i, j - n, j)
        previous = current
    return best, span


def longest_common_subsequence(source, target):
    """Longest common (not necessarily contiguous) subsequence of two sequences.

    Returns:
        ``(length, mapping)`` where ``mapping`` is a list of ``(i, j)`` pairs, increasing in both,
        with ``source[i] == target[j]``. Ties between equally long answers are broken as in
        bert4keras, so the same pairs come out.
    """
    n, m = len(source), len(target)
    # c[i][j]: LCS length of source[:i] and target[:j]
    c = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        si, row, up = source[i - 1], c[i], c[i - 1]
        for j in range(1, m + 1):
            if si == target[j - 1]:
                row[j] = up[j - 1] + 1
            else:
                row[j] = row[j - 1] if row[j - 1] > up[j] else up[j]
    length, mapping = c[n][m], []
    i, j = n - 1, m - 1
    while len(mapping) < length:
        if source[i] == target[j]:
            mapping.append((i, j))
            i, j = i - 1, j - 1
        elif c[i + 1][j] > c[i][j + 1]:
            j -= 1
        else:
            i -= 1
    return length, mapping[::-1]
