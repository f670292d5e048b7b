"""What `DataGenerator` hands Keras and tf.data: bert4keras-style batches put in the structure Keras 3 reads,
``to_dataset`` samples checked against their declared types, and datasets that ``next()`` still works on."""
import numpy as np

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
