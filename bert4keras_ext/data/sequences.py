"""Padding and text helpers with bert4keras names and semantics: `sequence_padding`, `text_segmentate`,
`to_array`, `softmax` (numpy + the standard library)."""
import numbers

import numpy as np

from bert4keras_ext.text_utils import _is_nonneg_int

__all__ = ['softmax', 'to_array', 'sequence_padding', 'text_segmentate']


def softmax(x, axis=-1):
    """Numerically stable numpy softmax.

    x: array of any shape → array of the same shape, summing to 1 along ``axis``.
    """
    x = np.asarray(x)
    # Subtracting the max keeps exp() from overflowing; it cancels in the ratio.
    x = x - x.max(axis=axis, keepdims=True)
    x = np.exp(x)
    return x / x.sum(axis=axis, keepdims=True)


def to_array(*args):
    """Convert each argument with ``np.array``.

    Returns one array for one argument, else a list of arrays (bert4keras behaviour, so
    ``token_ids, segment_ids = to_array([t], [s])`` and ``x = to_array(x)`` both work).
    """
    results = [np.array(a) for a in args]
    if len(args) == 1:
        return results[0]
    return results


# ---------------------------------------------------------------------------------------------
# Padding and truncation
# ---------------------------------------------------------------------------------------------

def _per_dim(arg, seq_dims, name, allow_none_items):
    """Normalise an int-or-sequence argument to a list with one entry per padded dimension."""
    if arg is None:
        return [None] * seq_dims
    if isinstance(arg, (list, tuple, np.ndarray)):
        items = list(arg)
        if len(items) != seq_dims:
            raise ValueError(
                f'{name} has {len(items)} entries but seq_dims={seq_dims}; give one per padded '
                f'dimension (or a single int for all of them)'
            )
    else:
        items = [arg] * seq_dims
    for v in items:
        if v is None and allow_none_items:
            continue
        if not _is_nonneg_int(v):
            raise ValueError(f'{name} entries must be non-negative ints, got {arg!r}')
    return [None if v is None else int(v) for v in items]


def sequence_padding(inputs, length=None, value=0, seq_dims=1, mode='post', dtype=None,
                     multiple=None):
    """Pad a batch of (nested) sequences to one rectangular numpy array.

    Args:
        inputs: non-empty list of samples; sample ``k`` converts with ``np.asarray`` to shape
            ``(L_k1, ..., L_kd, *trailing)`` where ``d = seq_dims``. ``trailing`` must be the same
            for every sample (e.g. the 2 of a list of ``(start, end)`` pairs).
        length: padded size of the first ``seq_dims`` dims: ``None`` (use the batch maximum),
            an int (used for every padded dim), or a list/tuple with one int-or-None per dim.
            **When a length is given explicitly, longer samples are truncated to it** (their head
            is kept, in both modes) — that is bert4keras behaviour. With ``length=None`` nothing
            is ever cut.
        value: padding value.
        seq_dims: how many leading dims of each sample are padded (1 for token ids; 2 for e.g.
            per-head lists of spans in GlobalPointer labels; 3 for dense ``(heads, L, L)`` labels).
        mode: ``'post'`` pads at the end, ``'pre'`` at the start.
        dtype: output dtype; ``None`` infers it from the samples like ``np.array`` would.
        multiple: int (or one per padded dim). Round the padded size up to a multiple of it, so
            a compiled (XLA / ``jit_compile``) model sees a few static shapes instead of one per
            batch maximum. With an explicit ``length``, samples are still cut at ``length`` and
            the array width is ``length`` rounded up.

    Returns:
        np.ndarray of shape ``(len(inputs), P_1, ..., P_d, *trailing)``.

    Extensions over bert4keras (all were errors there): ``length`` may be an int with
    ``seq_dims > 1``; ``length`` items may be ``None``; an empty sample ``[]`` is accepted even
    when the others have trailing dims (it becomes shape ``(0, ..., 0, *trailing)``), so label
    lists need no dummy ``(0, 0)`` entry.
    """
    if mode not in ('post', 'pre'):
        raise ValueError(f'mode must be "post" or "pre", got {mode!r}')
    if not (isinstance(seq_dims, numbers.Integral) and not isinstance(seq_dims, bool)
            and seq_dims >= 1):
        raise ValueError(f'seq_dims must be an int >= 1, got {seq_dims!r}')
    if inputs is None:
        raise ValueError('sequence_padding: inputs is None; pass a list of sequences')
    if not hasattr(inputs, '__len__'):
        inputs = list(inputs)
    if len(inputs) == 0:
        raise ValueError('sequence_padding: inputs is empty; there is nothing to pad '
                         '(a batch needs at least one sample)')
    lengths_arg = _per_dim(length, seq_dims, 'length', allow_none_items=True)
    multiples = _per_dim(multiple, seq_dims, 'multiple', allow_none_items=True)
    if any(m == 0 for m in multiples):
        raise ValueError(f'multiple must be >= 1, got {multiple!r}')

    arrays = []
    for k, x in enumerate(inputs):
        try:
            a = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
        except ValueError as e:
            raise ValueError(
                f'sequence_padding: inputs[{k}] is ragged inside a sample ({e}); only the first '
                f'seq_dims={seq_dims} dims may differ in size *between* samples — pad the inner '
                f'level first, or raise seq_dims'
            ) from None
        if a.ndim == 0:
            raise ValueError(f'sequence_padding: inputs[{k}] is a scalar ({x!r}); every sample '
                             f'must be a sequence')
        arrays.append(a)

    # The reference sample fixes the nesting depth and trailing dims; empty samples ([] has
    # shape (0,)) carry no information about them, so they do not vote.
    non_empty = [a for a in arrays if a.size > 0]
    ref = max(non_empty or arrays, key=lambda a: a.ndim)
    if ref.ndim < seq_dims:
        raise ValueError(
            f'sequence_padding: seq_dims={seq_dims} but samples have only {ref.ndim} dims'
        )
    trailing = ref.shape[seq_dims:]
    for k, a in enumerate(arrays):
        if a.ndim != ref.ndim:
            if a.size == 0 and a.ndim == 1:
                arrays[k] = a = a.reshape((0,) * seq_dims + trailing)
            else:
                raise ValueError(
                    f'sequence_padding: inconsistent nesting depth: inputs[{k}] has {a.ndim} '
                    f'dims (shape {a.shape}) but other samples have {ref.ndim} '
                    f'(shape {ref.shape})'
                )
        if a.shape[seq_dims:] != trailing:
            raise ValueError(
                f'sequence_padding: inputs[{k}] has trailing shape {a.shape[seq_dims:]} but '
                f'others have {trailing}; only the first seq_dims={seq_dims} dims are padded'
            )

    if dtype is None:
        dtype = np.result_type(*[a.dtype for a in (non_empty or arrays)])

    maxes = [max(a.shape[i] for a in arrays) for i in range(seq_dims)]
    target = []
    for i in range(seq_dims):
        t = maxes[i] if lengths_arg[i] is None else lengths_arg[i]
        if multiples[i] is not None:
            t = -(-t // multiples[i]) * multiples[i]
        target.append(t)
    # Explicit lengths cut (bert4keras); inferred lengths never need to.
    cut = tuple(slice(None) if c is None else slice(0, c) for c in lengths_arg)

    outputs = np.full((len(arrays),) + tuple(target) + trailing, value, dtype=dtype)
    for k, a in enumerate(arrays):
        a = a[cut]
        if mode == 'post':
            where = tuple(slice(0, s) for s in a.shape[:seq_dims])
        else:
            where = tuple(slice(t - s, t) for s, t in zip(a.shape[:seq_dims], target))
        outputs[(k,) + where] = a
    return outputs


def text_segmentate(text, maxlen, seps='\n', strips=None):
    """Split ``text`` into pieces of at most ``maxlen`` characters at separator characters.

    bert4keras algorithm: if the (stripped) text is longer than ``maxlen``, split it on
    ``seps[0]`` (each piece keeps its separator), greedily merge consecutive pieces while they
    fit, and recurse on every merged chunk with ``seps[1:]``. Separators are therefore tried in
    priority order, e.g. ``'\\n。！？；，'`` (paragraphs first, then sentences, then clauses).
    Every piece is ``strip()``-ed of whitespace and then of the characters in ``strips``.

    A piece can still exceed ``maxlen`` when no separator is left to split it on; callers that
    need a hard bound must cut such pieces themselves.

    Returns:
        list of str.
    """
    text = text.strip().strip(strips)
    if seps and len(text) > maxlen:
        pieces = text.split(seps[0])
        text, texts = '', []
        for i, p in enumerate(pieces):
            # "maxlen - 1" reserves room for the separator that is glued back onto p.
            if text and p and len(text) + len(p) > maxlen - 1:
                texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
                text = ''
            if i + 1 == len(pieces):
                text = text + p
            else:
                text = text + p + seps[0]
        if text:
            texts.extend(text_segmentate(text, maxlen, seps[1:], strips))
        return texts
    return [text]
