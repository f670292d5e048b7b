"""BERT vocabulary files: ``load_vocab`` (with bert4keras' ``simplified`` / ``startswith``) and
``save_vocab``; a file that is not valid in its encoding raises a ValueError naming the line.

Pure Python (no TensorFlow).
"""
import builtins
import os

from bert4keras_ext.tokenization.normalization import _is_cjk_character, _is_punctuation
from bert4keras_ext.tokenization.wordpiece import _stem

__all__ = ['load_vocab', 'save_vocab']


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
            _is_cjk_character(c) or _is_punctuation(c) for c in _stem(token)
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
