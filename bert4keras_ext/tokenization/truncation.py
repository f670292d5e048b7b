"""bert4keras ``truncate_sequences`` semantics for the Tokenizer's ``tokenize`` / ``encode``,
computed without popping one token at a time.

Pure Python (no TensorFlow).
"""

__all__ = []  # package-internal: the Tokenizer uses ``_truncate``


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
