"""Length bucketing for `snippets.DataGenerator`: shuffled order in which neighbours have similar lengths.

bert4keras-style generators pad each batch to its own longest text. With shuffled data of varied lengths
most batches hold one long text, so most of every step multiplies padding. `bucketed(...)` reorders one
epoch's shuffled items so that each run of ``batch_size`` consecutive items — exactly what a bert4keras
``__iter__`` collects into a batch — holds texts of similar length:

1. take the shuffled items in windows of ``bucket * batch_size``;
2. sort each window by length (stable, so equal lengths keep their random order);
3. cut it into chunks of ``batch_size`` and shuffle the chunks' order (within the window);
4. yield the items chunk after chunk.

Every item still comes exactly once per epoch. Only the last window can hold a partial chunk; it goes
last, so batch boundaries stay aligned with the ``len(batch) == batch_size or is_end`` rule. Larger
``bucket`` means less padding and less randomness in which items share a batch (batch order stays random).

Numpy only; randomness from numpy's global generator, as `DataGenerator.sample` (``np.random.seed`` keeps
runs repeatable).
"""
import numbers

import numpy as np

__all__ = ['default_length', 'bucketed', 'check_bucket']


def check_bucket(bucket, where='DataGenerator'):
    """`bucket` if it is None or an int >= 1, else a ValueError naming `where`."""
    if bucket is None:
        return None
    if not (isinstance(bucket, numbers.Integral) and not isinstance(bucket, bool) and bucket >= 1):
        raise ValueError('%s: bucket must be None (no bucketing) or an int >= 1 (batches per sorting window), '
                         'got %r' % (where, bucket))
    return int(bucket)


def default_length(item):
    """The length used to group `item` when no `length` function is given.

    * a string: its number of characters (about its number of tokens for Chinese text);
    * a tuple / list / dict: the total characters of the strings among its elements (values), so that
      ``(text, label)`` counts the text and ``(text1, text2, label)`` both texts;
    * otherwise, or with no string among them: the ``len()`` of the first sized element (e.g. pre-tokenized
      ``(token_ids, label)``), or of the item itself.

    Raises:
        TypeError: when none of these applies (then pass ``length=`` to DataGenerator).
    """
    if isinstance(item, str):
        return len(item)
    parts = list(item.values()) if isinstance(item, dict) else item if isinstance(item, (list, tuple)) else None
    if parts is not None:
        texts = [len(p) for p in parts if isinstance(p, str)]
        if texts:
            return sum(texts)
        for p in parts:
            if hasattr(p, '__len__') and not isinstance(p, dict):
                return len(p)
    if hasattr(item, '__len__'):
        return len(item)
    raise TypeError('DataGenerator bucketing: cannot tell the length of the item %r (not a string, nor a '
                    'tuple / list / dict holding strings or sequences); pass length=lambda item: ... to '
                    'DataGenerator' % (item,))


def _length_of(length, item):
    value = length(item)
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)):
        raise ValueError('DataGenerator bucketing: the length function returned %r for the item %r; it must '
                         'return a finite number' % (value, item))
    return value


def _window_order(window, lengths, batch_size):
    """The window's items sorted by length, in batch_size chunks whose order is shuffled; a partial chunk last."""
    order = np.argsort(np.asarray(lengths), kind='stable')
    full = len(order) // batch_size
    chunks = [order[i * batch_size:(i + 1) * batch_size] for i in range(full)]
    chunks = [chunks[i] for i in np.random.permutation(full)]
    if len(order) % batch_size:
        chunks.append(order[full * batch_size:])
    for chunk in chunks:
        for i in chunk:
            yield window[i]


def bucketed(items, batch_size, bucket, length=None):
    """Yield `items` (an iterator, already shuffled) reordered into length-grouped batch_size chunks.

    Args:
        items: an iterator over one epoch's items, in shuffled order.
        batch_size: int >= 1, the batch size of the generator.
        bucket: int >= 1, batches per sorting window.
        length: callable item -> number; `default_length` when None.
    Yields:
        every item of `items` exactly once.
    """
    length = length or default_length
    window_size = batch_size * bucket
    window, lengths = [], []
    for item in items:
        window.append(item)
        lengths.append(_length_of(length, item))
        if len(window) == window_size:
            yield from _window_order(window, lengths, batch_size)
            window, lengths = [], []
    if window:
        yield from _window_order(window, lengths, batch_size)
