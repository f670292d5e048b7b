"""Alignment of tokens with the original text: ``rematch`` (token -> character indices).

``RematchMixin`` holds ``Tokenizer.rematch`` and its helpers: the text is normalised as the tokens
see it (cleaned, lower-cased, NFD with marks dropped) while remembering which original character
each normalised character came from; tokens are then found in order, and an ``[UNK]`` token covers
the basic word it replaced.

Pure Python (no TensorFlow).
"""
import functools
import unicodedata

from bert4keras_ext.tokenization.normalization import _is_cjk_character, _is_dropped, _is_punctuation

__all__ = ['RematchMixin']


@functools.lru_cache(maxsize=1 << 16)
def _nfd(ch):
    """NFD decomposition of one (already lower-cased) character, cached for ``rematch``."""
    return unicodedata.normalize('NFD', ch)


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


class RematchMixin(object):
    """The ``rematch`` method of ``Tokenizer`` (token -> indices of the original characters).

    Args:
        none: a mixin without a constructor. The host class provides ``_do_lower_case`` (bool),
            ``_token_unk`` (str), ``stem(token)``, ``_is_special(token)`` and
            ``_check_text(text, where)``.
    """

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
