"""bert4keras' ``snippets`` module: data helpers with bert4keras names and semantics.

Everything here is numpy + the standard library, so data pipelines can be built and tested
without TensorFlow; only :meth:`DataGenerator.forfit` / ``fortest`` / ``to_dataset`` import
TensorFlow, and only when called (``K``, ``keras`` and ``tf``, which bert4keras' snippets also
exposed, are loaded on first access). The decoders re-exported at the end load TensorFlow when it
is installed; without it this module still imports, without them.

Public names: every name of bert4keras 0.11.5 ``snippets``::

    to_array, is_string, strQ2B, string_matching, convert_to_unicode, convert_to_str,
    lowercase_and_normalize, open, parallel_apply_generator, parallel_apply, sequence_padding,
    truncate_sequences, text_segmentate, is_one_of, DataGenerator, ViterbiDecoder, softmax,
    AutoRegressiveDecoder, insert_arguments, delete_arguments, longest_common_substring,
    longest_common_subsequence, orthogonally_resize, WebServing, uniout, is_py2, basestring,
    K, keras, tf, np

Homes: padding, segmentation, batching and ``softmax`` here; strings/files/truncation/LCS in
``text_utils``; ``parallel_apply*`` in ``parallel``; ``WebServing`` in ``webserving``; decorators
and ``orthogonally_resize`` in ``misc``; the decoders in ``decoders`` (all re-exported here).

Randomness (``DataGenerator.sample(random=True)``) uses numpy's global generator, exactly like
bert4keras, so ``np.random.seed(...)`` at the top of a competition script keeps runs repeatable.
"""
import numbers
import types
import warnings

import numpy as np

from bert4keras_ext import bucketing
from bert4keras_ext.misc import (  # noqa: F401  (re-exported)
    delete_arguments,
    insert_arguments,
    is_one_of,
    orthogonally_resize,
)
from bert4keras_ext.parallel import parallel_apply, parallel_apply_generator  # noqa: F401
from bert4keras_ext.text_utils import (  # noqa: F401  (re-exported)
    _is_nonneg_int,
    basestring,
    convert_to_str,
    convert_to_unicode,
    is_py2,
    is_string,
    longest_common_subsequence,
    longest_common_substring,
    lowercase_and_normalize,
    open,
    strQ2B,
    string_matching,
    truncate_sequences,
)
from bert4keras_ext.webserving import WebServing  # noqa: F401

# `model.fit(gen.forfit(), ...)` hands Keras a dataset that DataGenerator already shuffles (random=True),
# so Keras' note that it will not shuffle a tf.data.Dataset is noise for every bert4keras-style script.
warnings.filterwarnings('ignore', message='`shuffle=True` was passed, but will be ignored since the data `x` '
                                          'was provided as a tf.data.Dataset')

# bert4keras: `from bert4keras.snippets import uniout` imported the py2 `uniout` package (printing
# lists of Chinese strings readably) and did nothing on Python 3, which prints them readably anyway.
uniout = types.ModuleType('uniout', 'No-op stand-in for the Python 2 uniout package (see snippets).')

__all__ = [
    'to_array',
    'is_string',
    'strQ2B',
    'string_matching',
    'convert_to_unicode',
    'convert_to_str',
    'lowercase_and_normalize',
    'open',
    'parallel_apply_generator',
    'parallel_apply',
    'sequence_padding',
    'truncate_sequences',
    'text_segmentate',
    'is_one_of',
    'DataGenerator',
    'softmax',
    'insert_arguments',
    'delete_arguments',
    'longest_common_substring',
    'longest_common_subsequence',
    'orthogonally_resize',
    'WebServing',
    'uniout',
    'is_py2',
    'basestring',
]  # + ViterbiDecoder, AutoRegressiveDecoder once decoders.py is importable (see the end)


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


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------

class DataGenerator:
    """Batch generator template; subclasses implement ``__iter__(self, random=False)``.

    The bert4keras way::

        class data_generator(DataGenerator):
            def __iter__(self, random=False):
                batch_token_ids, batch_segment_ids, batch_labels = [], [], []
                for is_end, (text, label) in self.sample(random):
                    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
                    batch_token_ids.append(token_ids)
                    ...
                    if len(batch_token_ids) == self.batch_size or is_end:
                        batch_token_ids = sequence_padding(batch_token_ids)
                        ...
                        yield [batch_token_ids, batch_segment_ids], batch_labels
                        batch_token_ids, batch_segment_ids, batch_labels = [], [], []

        train_generator = data_generator(train_data, batch_size)
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=...)

    Args:
        data: a sized, indexable collection (list, array) or any re-iterable object (e.g. a
            class whose ``__iter__`` re-reads a file). A one-shot generator only lasts one epoch.
        batch_size: int >= 1.
        buffer_size: shuffle-buffer size for data without ``len`` (default ``1000 * batch_size``).
        bucket: None (default: bert4keras' order) or an int >= 1: length bucketing for shuffled
            epochs (``sample(random=True)``, i.e. ``forfit``). The shuffled items are taken in windows
            of ``bucket * batch_size``, sorted by length within each window and handed out in chunks of
            ``batch_size`` in random order, so that each batch an ``__iter__`` collects holds items of
            similar length and carries little padding. Every item still comes once per epoch; the
            unshuffled order (``fortest``, ``sample(False)``) is never changed. ``bucket=100`` suits
            ~10k-100k items (see ``bert4keras_ext.bucketing`` and README for the measured gain).
        length: callable item -> number used by ``bucket``; default
            ``bert4keras_ext.bucketing.default_length``: the characters of the item's strings (a
            ``(text, label)`` tuple counts ``text``; a pair or a dict sums its strings), else the
            ``len()`` of its first sequence (e.g. pre-tokenized ids).

    Attributes:
        steps: batches per epoch, ``ceil(len(data) / batch_size)``, or ``None`` without ``len``.
        bucket, length: as given (may be set after construction).
    """

    def __init__(self, data, batch_size=32, buffer_size=None, bucket=None, length=None):
        if not (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool)
                and batch_size >= 1):
            raise ValueError(f'DataGenerator: batch_size must be an int >= 1, got {batch_size!r}')
        if buffer_size is not None and not (_is_nonneg_int(buffer_size) and buffer_size >= 1):
            raise ValueError(
                f'DataGenerator: buffer_size must be an int >= 1 or None, got {buffer_size!r}'
            )
        self.data = data
        self.batch_size = int(batch_size)
        if hasattr(self.data, '__len__'):
            self.steps = -(-len(self.data) // self.batch_size)
        else:
            self.steps = None
        self.buffer_size = buffer_size or self.batch_size * 1000
        self.bucket = bucketing.check_bucket(bucket)
        if length is not None and not callable(length):
            raise ValueError(f'DataGenerator: length must be a callable item -> number, got {length!r}')
        self.length = length

    def __len__(self):
        if self.steps is None:
            # bert4keras let len() fail with an opaque "NoneType" TypeError here.
            raise TypeError(
                'DataGenerator: data has no len(), so the number of steps is unknown; pass '
                'steps_per_epoch yourself (or set self.steps)'
            )
        return self.steps

    def sample(self, random=False):
        """Yield ``(is_end, item)`` for every item of ``data``; ``is_end`` is True on the last.

        ``random=True`` shuffles: a fresh permutation for indexable data, otherwise a buffered
        shuffle (keep up to ``buffer_size`` items, emit a uniformly chosen one per new item,
        drain the buffer at the end). Either way every item appears exactly once per call.
        With ``self.bucket`` set, shuffled items are then grouped by length (see the class
        docstring). Empty data yields nothing.
        """
        if random:
            if hasattr(self.data, '__len__') and hasattr(self.data, '__getitem__'):

                def generator():
                    for i in np.random.permutation(len(self.data)):
                        yield self.data[i]

            else:

                def generator():
                    caches, isfull = [], False
                    for d in self.data:
                        caches.append(d)
                        if isfull:
                            i = np.random.randint(len(caches))
                            yield caches.pop(i)
                        elif len(caches) == self.buffer_size:
                            isfull = True
                    while caches:
                        i = np.random.randint(len(caches))
                        yield caches.pop(i)

            data = generator()
            bucket = bucketing.check_bucket(getattr(self, 'bucket', None))  # a subclass may skip __init__
            if bucket is not None:
                data = bucketing.bucketed(data, self.batch_size, bucket, getattr(self, 'length', None))
        else:
            data = iter(self.data)

        # Look one item ahead so the last one can be flagged: the subclass must flush its
        # partial batch on is_end.
        try:
            d_current = next(data)
        except StopIteration:
            return
        for d_next in data:
            yield False, d_current
            d_current = d_next
        yield True, d_current

    def __iter__(self, random=False):
        raise NotImplementedError(
            f'{type(self).__name__} must implement __iter__(self, random=False) yielding batches'
        )

    def batches(self, random=True):
        """Endless Python generator of ``__iter__(random)`` batches, one epoch after another.

        Each batch is put in the structure Keras 3 reads (see ``_as_keras_batch``): ``[X, S], Y``
        → ``(X, S), Y``; a ``None`` target is dropped (``[X, S, Y], None`` → ``((X, S, Y),)``, for
        models whose loss is a ``Loss`` layer); labels given as (nested) Python lists become one
        numpy array (``[[0], [1]]`` → array of shape (2, 1)). Fails loudly instead of spinning on
        no data.
        """
        for d in self._epochs(random):
            yield _as_keras_batch(d)

    def _epochs(self, random):
        """``__iter__(random)`` items, epoch after epoch, as yielded (no conversion)."""
        while True:
            produced = False
            for d in self.__iter__(random):
                produced = True
                yield d
            if not produced:
                raise ValueError(
                    f'{type(self).__name__}: an epoch produced no batches (empty data, or a '
                    f'one-shot generator already exhausted: pass a list or a re-iterable object)'
                )

    def forfit(self, random=True):
        """Endless ``tf.data.Dataset`` of batches for
        ``model.fit(gen.forfit(), steps_per_epoch=len(gen))`` (bert4keras' idiom).

        Departure from bert4keras, on purpose: this returns a dataset, not a Python generator.
        Keras 3 freezes every non-batch dimension of a *generator* from its first two batches, so
        a bert4keras generator whose batches are padded to their own longest text (the usual case)
        fails at the first batch of another length. The dataset declares every dimension dynamic
        except non-batch axes of size 1 such as (batch, 1) labels (rank and dtypes read from the
        first batch), so varying lengths just work, and it prefetches the next batch while the
        model trains. For the raw generator, use :meth:`batches`.

        Scripts that pull batches by hand, as bert4keras' virtual-adversarial example does
        (``self.data = gen.forfit(); next(self.data)``), still can: ``next()`` on the returned dataset
        yields the raw ``__iter__`` items, epoch after epoch, exactly as bert4keras' generator did.
        """
        return _nextable(self._dataset(lambda: self.batches(random)), lambda: self._epochs(random))

    def fortest(self, random=False):
        """Endless ``tf.data.Dataset`` of the *inputs* of each batch, for
        ``model.predict(gen.fortest(), steps=len(gen))`` (see :meth:`forfit` for why a dataset).

        Each element is ``(inputs,)``: Keras reads a 1-tuple as inputs without targets. ``next()`` on
        it yields ``d[0]`` of the raw items, as bert4keras' generator did.
        """
        return _nextable(self._dataset(lambda: ((d[0],) for d in self.batches(random))),
                         lambda: (d[0] for d in self._epochs(random)))

    def _dataset(self, make_generator):
        import tensorflow as tf  # lazily: the rest of this module needs only numpy

        first = next(make_generator())  # only to read the structure, ranks and dtypes

        def spec(x):
            # Every dimension is dynamic except non-batch dims of size 1: bert4keras labels are
            # (batch, 1) (`batch_labels.append([label])`), and Keras squeezes that axis for sparse
            # losses only when it is known to be 1. Token sequences always hold [CLS] and [SEP].
            x = np.asarray(x)
            shape = [None] + [1 if d == 1 else None for d in x.shape[1:]] if x.ndim else []
            return tf.TensorSpec(shape=shape, dtype=tf.as_dtype(x.dtype))

        signature = tf.nest.map_structure(spec, first)
        dataset = tf.data.Dataset.from_generator(make_generator, output_signature=signature)
        return dataset.prefetch(2)

    def to_dataset(self, types, shapes, names=None, padded_batch=False):
        """An endless, shuffled, batched, prefetched ``tf.data.Dataset`` of ``__iter__`` samples.

        As in bert4keras, **``__iter__`` must yield single samples here** and the dataset does
        the batching: ``padded_batch=False`` → ``batch(batch_size)`` (every sample must already
        have the shape in ``shapes``); ``padded_batch=True`` → ``padded_batch(batch_size,
        shapes)`` (samples may vary in length; ``None`` dims pad to the batch maximum, int dims
        to that size; padding value 0).

        Args:
            types: per-sample dtypes, with the structure of one sample, e.g.
                ``('int32', 'int32')`` or ``(('int32', 'int32'), 'float32')``. Samples may use
                lists where ``types`` has tuples.
            shapes: per-sample shapes with the same structure, e.g. ``([None], [None])``.
            names: optional keys that turn samples into dicts, as in bert4keras:

                * a string: the sample becomes ``{names: sample}`` (the model's inputs);
                * a sequence of strings: ``dict(zip(names, sample))`` (all of it inputs, keyed
                  by the ``Input`` layer names, e.g. for a model whose loss is a ``Loss`` layer);
                * a sequence of such sequences: ``(inputs, targets)`` (or ``(inputs, targets,
                  sample_weights)``) each made a dict, e.g. ``(('Input-Token', 'Input-Segment'),
                  ('CRF',))``: inputs keyed by input layer names, targets by output layer names.
                  Keras 3 matches a dict target to the outputs by name only for multi-output
                  models, so a target (or weight) group with **one** name is passed as the bare
                  tensor; with several names it stays a dict keyed by the output layer names.
            padded_batch: see above.

        Returns:
            an infinite ``tf.data.Dataset``; use ``steps_per_epoch`` with it.
        """
        import tensorflow as tf  # lazily: the rest of this module needs only numpy

        sample_types = types  # the structure samples are checked against
        if names is None:
            def prepare(d):
                return d
        else:
            if is_string(names):
                def warps(k, v):
                    return {k: v}
            elif is_string(names[0]):
                def warps(k, v):
                    _check_same_len(k, v)
                    return dict(zip(k, v))
            else:
                def warps(k, v):
                    _check_same_len(k, v)
                    out = []
                    for position, (i, j) in enumerate(zip(k, v)):
                        _check_same_len(i, j)
                        group = dict(zip(i, j))
                        if position > 0 and len(group) == 1:
                            # targets / weights of a single output: Keras 3 wants the bare tensor
                            (group,) = group.values()
                        out.append(group)
                    return tuple(out)

            def prepare(d):
                return warps(names, d)

            types = warps(names, types)
            shapes = warps(names, shapes)

        def generator():
            for d in self._epochs(True):
                yield prepare(_conform(d, sample_types))

        def spec(dtype, shape):
            shape = tf.TensorShape(shape)
            if padded_batch and shape.rank is not None:
                # Samples may be shorter than a fixed padded_shape, so accept any size here.
                shape = tf.TensorShape([None] * shape.rank)
            return tf.TensorSpec(shape=shape, dtype=tf.as_dtype(dtype))

        signature = _map_types_and_shapes(spec, types, shapes)
        dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
        if padded_batch:
            padded_shapes = _map_types_and_shapes(lambda t, s: tf.TensorShape(s), types, shapes)
            dataset = dataset.padded_batch(self.batch_size, padded_shapes)
        else:
            dataset = dataset.batch(self.batch_size)
        return dataset.prefetch(tf.data.AUTOTUNE)


_NEXTABLE_CLASSES = {}


def _next_raw_item(self):
    state = self.__dict__
    if state.get('_bert4keras_items') is None:
        object.__setattr__(self, '_bert4keras_items', state['_bert4keras_make_items']())
    return next(state['_bert4keras_items'])


def _nextable(dataset, make_items):
    """Give `dataset` a ``__next__`` that yields `make_items()`'s items (bert4keras' generator protocol).

    The dataset keeps its class for Keras and tf.data (a subclass adds only ``__next__``), so
    ``model.fit(dataset)`` is unaffected; ``next(dataset)`` draws from its own Python generator.
    """
    base = type(dataset)
    if base not in _NEXTABLE_CLASSES:
        _NEXTABLE_CLASSES[base] = type(base.__name__, (base,), {'__next__': _next_raw_item})
    dataset.__class__ = _NEXTABLE_CLASSES[base]
    object.__setattr__(dataset, '_bert4keras_make_items', make_items)
    object.__setattr__(dataset, '_bert4keras_items', None)
    return dataset


def _holds_array(x):
    if isinstance(x, (list, tuple)):
        return any(_holds_array(v) for v in x)
    if isinstance(x, dict):
        return any(_holds_array(v) for v in x.values())
    return hasattr(x, 'shape') and hasattr(x, 'dtype')


def _is_plain_sequence(x):
    # namedtuples and other tuple subclasses are data, not batch structure
    return type(x) in (list, tuple)


def _as_keras_batch(d):
    """A batch in the structure Keras 3 reads, from what a bert4keras ``__iter__`` yields.

    A top-level list/tuple is ``(inputs, targets[, sample_weights])``; a trailing ``None`` is
    dropped (``[X, S, Y], None`` → ``((X, S, Y),)``: inputs only, for ``Loss``-layer models).
    ``inputs`` given as a list/tuple whose items are sequences or arrays is one item per model input
    (Keras 2's reading of ``[X, S]``); every other part goes through ``_as_keras_data``.
    """
    if not _is_plain_sequence(d):
        return _as_keras_data(d)
    parts = list(d)
    if len(parts) >= 2 and parts[-1] is None:
        parts = parts[:-1]
    inputs = parts[0]
    if _is_plain_sequence(inputs) and any(
        _is_plain_sequence(x) or hasattr(x, 'shape') for x in inputs
    ):
        inputs = tuple(_as_keras_data(x) for x in inputs)
    else:
        inputs = _as_keras_data(inputs)
    parts = [inputs] + [_as_keras_data(p) for p in parts[1:]]
    # `[X], Y` / `X, [Y]`: Keras 3 takes the bare array for a one-input (one-output) model, listed
    # or not, but warns about a 1-tuple given to a model built on a bare Input
    return tuple(p[0] if type(p) is tuple and len(p) == 1 else p for p in parts)


def _as_keras_data(x):
    """Lists/tuples holding arrays become tuples (structure: several inputs or outputs); lists of
    plain values (``batch_labels`` of ``[label]`` lists, unpadded-but-rectangular ids) become one
    numpy array, since tf.data would read their items as separate tensors."""
    if _is_plain_sequence(x):
        if _holds_array(x):
            return tuple(_as_keras_data(v) for v in x)
        try:
            array = np.asarray(x)
        except ValueError:
            array = None
        if array is None or array.dtype == object:
            raise ValueError(
                'DataGenerator: a batch holds a ragged list (rows of different lengths); pad it '
                'with sequence_padding(...) before yielding it'
            )
        return array
    if isinstance(x, dict):
        return {k: _as_keras_data(v) for k, v in x.items()}
    return x


def _conform(sample, types):
    """``sample`` with tuples wherever ``types`` has a list/tuple (to_dataset samples may use
    lists); raises a clear error when the two structures differ."""
    if _is_dtype_leaf(types):
        return sample
    if isinstance(types, dict):
        if not isinstance(sample, dict) or set(sample) != set(types):
            raise ValueError(f'to_dataset: a sample {sample!r} does not match types {types!r}')
        return {k: _conform(sample[k], types[k]) for k in types}
    if isinstance(types, (list, tuple)):
        if not isinstance(sample, (list, tuple)) or len(sample) != len(types):
            raise ValueError(
                f'to_dataset: a sample {sample!r} does not match types {types!r} (one item per '
                f'dtype expected)'
            )
        return tuple(_conform(v, t) for v, t in zip(sample, types))
    return sample


def _check_same_len(names, values):
    if len(names) != len(values):
        raise ValueError(f'to_dataset: {len(names)} names {tuple(names)!r} for '
                         f'{len(values)} values')


def _is_dtype_leaf(t):
    # A dtype is a string ('int32'), a numpy dtype / scalar type, or a tf.DType.
    return isinstance(t, (str, np.dtype, type)) or hasattr(t, 'as_numpy_dtype')


def _map_types_and_shapes(fn, types, shapes):
    """Apply ``fn(dtype, shape)`` at every dtype leaf of ``types``.

    ``types`` decides the structure because a shape such as ``[None, 2]`` is itself a list and
    cannot be told apart from a structure on its own.
    """
    if _is_dtype_leaf(types):
        return fn(types, shapes)
    if isinstance(types, dict):
        if not isinstance(shapes, dict) or set(types) != set(shapes):
            raise ValueError(f'to_dataset: shapes {shapes!r} do not match types {types!r}')
        return {k: _map_types_and_shapes(fn, types[k], shapes[k]) for k in types}
    if isinstance(types, (list, tuple)):
        if not isinstance(shapes, (list, tuple)) or len(shapes) != len(types):
            raise ValueError(f'to_dataset: shapes {shapes!r} do not match types {types!r}')
        return tuple(_map_types_and_shapes(fn, t, s) for t, s in zip(types, shapes))
    raise ValueError(f'to_dataset: cannot read {types!r} as a dtype or a structure of dtypes')


# ---------------------------------------------------------------------------------------------
# Decoders: their home is bert4keras_ext/decoders.py; bert4keras scripts import them from
# snippets, so they are re-exported here.
# ---------------------------------------------------------------------------------------------

def __getattr__(name):
    # Fallback for the eager import below: if decoders.py imports this module first, the
    # eager import meets a half-initialised decoders module and is skipped; resolve lazily then.
    if name in ('ViterbiDecoder', 'AutoRegressiveDecoder'):
        try:
            from bert4keras_ext import decoders
        except ImportError as e:
            # AttributeError keeps hasattr() working; the cause says why decoders did not load.
            raise AttributeError(
                f'{name} lives in bert4keras_ext.decoders, which could not be imported: {e}'
            ) from e
        return getattr(decoders, name)
    if name in ('K', 'keras'):
        # bert4keras' snippets imported these from its backend; loaded on first use so that
        # snippets itself needs no TensorFlow.
        from bert4keras_ext import backend
        return getattr(backend, name)
    if name == 'tf':
        import tensorflow
        return tensorflow
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


try:  # decoders.py is the home of these classes
    from bert4keras_ext.decoders import ViterbiDecoder, AutoRegressiveDecoder  # noqa: F401,E402
    __all__ += ['ViterbiDecoder', 'AutoRegressiveDecoder']
except ImportError:
    pass
