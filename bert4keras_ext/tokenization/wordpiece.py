"""WordPiece: Google's greedy longest-match-first ``WordpieceTokenizer`` with per-word caches.

``WordPieceMixin`` holds the WordPiece half of ``Tokenizer``, which inherits it (so the caches stay
attributes of the tokenizer, e.g. ``tokenizer._pieces``, and a subclass can still override
``_word_piece_tokenize``). Results are cached per word (``_WordCache``), which is
what makes repeated words cost one dict lookup.

Pure Python (no TensorFlow).
"""

__all__ = ['WordPieceMixin']


def _stem(token):
    """A token without its leading ``##`` (continuation marker)."""
    return token[2:] if token[:2] == '##' else token


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


class WordPieceMixin(object):
    """The WordPiece methods of ``Tokenizer``: greedy longest-match-first pieces, cached per word.

    Args:
        none: a mixin without a constructor. The host class sets ``_token_dict`` ({token: id}),
            ``_token_unk`` (str) and ``_token_unk_id`` (int or None), ``_word_maxlen`` (int) and
            ``_token_translate`` ({token: token}), then calls ``_setup_caches()``.

    After ``_setup_caches()``: ``_pieces`` / ``_piece_ids`` map a word (str) to a tuple of pieces
    (str) / of ids (int), of length >= 1; ``_char_pieces`` / ``_char_piece_ids`` map one character
    to one piece / one id. The caches are dropped when pickling and rebuilt when unpickling.
    """

    # entries per word cache before it is cleared (bounds memory on endless streams of new words)
    _cache_size = 1 << 17

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
