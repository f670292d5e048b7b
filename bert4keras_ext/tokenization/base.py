"""``TokenizerBase``: bert4keras' tokenizer template (special tokens, ``tokenize``, ``encode``).

A subclass implements ``_tokenize(text)`` (text -> list of tokens, without start/end),
``token_to_id``, ``id_to_token`` and, if it needs it, ``decode``; ``tokenize``, ``encode``,
``tokens_to_ids`` and ``ids_to_tokens`` then work as in bert4keras::

    class CharTokenizer(TokenizerBase):
        def __init__(self, vocab, **kwargs):
            super().__init__(**kwargs)
            self.vocab = vocab
        def _tokenize(self, text):
            return list(text)
        def token_to_id(self, token):
            return self.vocab.get(token, self.vocab['[UNK]'])
        ...

``bert4keras_ext.tokenizers.Tokenizer`` (Google-exact WordPiece) is a subclass with its own fast
paths. Pure Python, no TensorFlow. (``bert4keras_ext.tokenizer_base`` re-exports it from here.)
"""
import numbers

from bert4keras_ext.text_utils import is_string, truncate_sequences

__all__ = ['TokenizerBase']

_PATTERNS = ('S*E*E', 'S*ES*E')


class TokenizerBase(object):
    """Tokenizer template with bert4keras' constructor and methods.

    Args:
        token_start: token put before every sequence (``None``: none).
        token_end: token put after every sequence (``None``: none).
        pre_tokenize: optional callable ``text -> iterable of words`` that a subclass's
            ``_tokenize`` may use to pre-split text (e.g. ``jieba.cut``); stored as
            ``self._pre_tokenize``.
        token_translate: optional ``{token: token}`` applied to the tokens of ``_tokenize``
            (``self._token_translate``; the inverse is ``self._token_translate_inv``).

    The pad, unk and mask tokens are ``'[PAD]'``, ``'[UNK]'`` and ``'[MASK]'``
    (``self._token_pad`` / ``_token_unk`` / ``_token_mask``), as in bert4keras.
    """

    def __init__(self, token_start='[CLS]', token_end='[SEP]', pre_tokenize=None,
                 token_translate=None):
        if pre_tokenize is not None and not callable(pre_tokenize):
            raise TypeError('%s: pre_tokenize must be callable (text -> iterable of words), got %r'
                            % (type(self).__name__, pre_tokenize))
        self._token_pad = '[PAD]'
        self._token_unk = '[UNK]'
        self._token_mask = '[MASK]'
        self._token_start = token_start
        self._token_end = token_end
        self._pre_tokenize = pre_tokenize
        self._token_translate = dict(token_translate or {})
        self._token_translate_inv = {v: k for k, v in self._token_translate.items()}

    # -- to implement --------------------------------------------------------------------------

    def _tokenize(self, text):
        """Split ``text`` into tokens (no start/end tokens). Subclasses implement this."""
        raise NotImplementedError('%s must implement _tokenize(text)' % type(self).__name__)

    def token_to_id(self, token):
        """Id of ``token``. Subclasses implement this."""
        raise NotImplementedError('%s must implement token_to_id(token)' % type(self).__name__)

    def id_to_token(self, i):
        """Token of id ``i``. Subclasses implement this."""
        raise NotImplementedError('%s must implement id_to_token(i)' % type(self).__name__)

    def decode(self, ids):
        """Readable text of ``ids``. Subclasses implement this."""
        raise NotImplementedError('%s must implement decode(ids)' % type(self).__name__)

    # -- provided ------------------------------------------------------------------------------

    def tokenize(self, text, maxlen=None):
        """``_tokenize(text)`` translated by ``token_translate``, with start/end tokens added.

        ``maxlen`` (optional) drops tokens from the end, keeping the end token (bert4keras).
        """
        tokens = [self._token_translate.get(token) or token for token in self._tokenize(text)]
        if self._token_start is not None:
            tokens.insert(0, self._token_start)
        if self._token_end is not None:
            tokens.append(self._token_end)
        if maxlen is not None:
            self._check_maxlen(maxlen, self._n_special(), 'tokenize')
            index = int(self._token_end is not None) + 1
            truncate_sequences(maxlen, -index, tokens)
        return tokens

    def tokens_to_ids(self, tokens):
        """List of ids of a list of tokens."""
        return [self.token_to_id(token) for token in tokens]

    def ids_to_tokens(self, ids):
        """List of tokens of a list of ids."""
        return [self.id_to_token(i) for i in ids]

    def encode(self, first_text, second_text=None, maxlen=None, pattern='S*E*E',
               truncate_from='right'):
        """Token ids and segment ids of one text or a pair (bert4keras semantics).

        Args:
            first_text, second_text: str (tokenized with :meth:`tokenize`) or a list of tokens
                (used as given, start/end included; with ``maxlen`` the list is cut in place, as in
                bert4keras).
            maxlen: optional total length; tokens are popped one at a time from the longer
                sequence: before the end token (``truncate_from='right'``), after the start token
                (``'left'``), or at a given int position.
            pattern: ``'S*E*E'`` drops the second sequence's start token (``[CLS] a [SEP] b
                [SEP]``); ``'S*ES*E'`` keeps it.
            truncate_from: ``'right'``, ``'left'`` or an int.

        Returns:
            ``(token_ids, segment_ids)``, segment 0 for the first sequence and 1 for the second.
        """
        if pattern not in _PATTERNS:
            raise ValueError("encode: pattern must be 'S*E*E' or 'S*ES*E', got %r" % (pattern,))
        first_tokens = self._tokens_of(first_text, 'first_text')
        second_tokens = None if second_text is None else self._tokens_of(second_text, 'second_text')
        drop_second_start = (second_tokens is not None and pattern == 'S*E*E'
                             and self._token_start is not None)

        if maxlen is not None:
            minimum = self._n_special()
            if second_tokens is not None:
                minimum += self._n_special() - int(drop_second_start)
            self._check_maxlen(maxlen, minimum, 'encode')
            if truncate_from == 'right':
                index = -int(self._token_end is not None) - 1
            elif truncate_from == 'left':
                index = int(self._token_start is not None)
            elif isinstance(truncate_from, numbers.Integral) and not isinstance(truncate_from, bool):
                index = int(truncate_from)
            else:
                raise ValueError("encode: truncate_from must be 'right', 'left' or an int, got %r"
                                 % (truncate_from,))
            # the second start token is counted while balancing, then removed (bert4keras)
            truncate_sequences(maxlen + int(drop_second_start), index, first_tokens,
                               second_tokens)

        token_ids = self.tokens_to_ids(first_tokens)
        segment_ids = [0] * len(token_ids)
        if second_tokens is not None:
            if drop_second_start:
                second_tokens = second_tokens[1:]
            second_ids = self.tokens_to_ids(second_tokens)
            token_ids.extend(second_ids)
            segment_ids.extend([1] * len(second_ids))
        return token_ids, segment_ids

    # -- helpers -------------------------------------------------------------------------------

    def _tokens_of(self, text, name):
        if is_string(text):
            return self.tokenize(text)
        if isinstance(text, list):
            return text
        if isinstance(text, tuple):
            return list(text)
        raise TypeError('encode: %s must be a str (or a list of tokens), got %s'
                        % (name, type(text).__name__))

    def _n_special(self):
        return int(self._token_start is not None) + int(self._token_end is not None)

    @staticmethod
    def _check_maxlen(maxlen, minimum, where):
        if isinstance(maxlen, bool) or not isinstance(maxlen, numbers.Integral):
            raise TypeError('%s: maxlen must be an int, got %r' % (where, maxlen))
        if maxlen < minimum:
            raise ValueError('%s: maxlen=%d cannot hold the special tokens; the minimum is %d'
                             % (where, maxlen, minimum))
