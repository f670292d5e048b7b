"""bert4keras' `DataGenerator`: batches from ``__iter__``, as a Python generator or a `tf.data.Dataset`.

Randomness (``DataGenerator.sample(random=True)``) uses numpy's global generator, exactly like
bert4keras, so ``np.random.seed(...)`` at the top of a competition script keeps runs repeatable.
TensorFlow is imported only by ``forfit`` / ``fortest`` / ``to_dataset``, when called.
"""
import numbers
import warnings

import numpy as np

from bert4keras_ext import bucketing
from bert4keras_ext.data.batches import (
    _as_keras_batch, _check_same_len, _conform, _map_types_and_shapes, _nextable,
)
from bert4keras_ext.text_utils import _is_nonneg_int, is_string

__all__ = ['DataGenerator']

# `model.fit(gen.forfit(), ...)` hands Keras a dataset that DataGenerator already shuffles (random=True),
# so Keras' note that it will not shuffle a tf.data.Dataset is noise for every bert4keras-style script.
warnings.filterwarnings('ignore', message='`shuffle=True` was passed, but will be ignored since the data `x` '
                                          'was provided as a tf.data.Dataset')


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
