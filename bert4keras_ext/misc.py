"""Small bert4keras helpers that are neither text nor data: decorators, identity tests, resizing.

numpy + standard library only. Re-exported by ``bert4keras_ext.snippets`` (bert4keras' home for them).

Public names: ``is_one_of``, ``insert_arguments``, ``delete_arguments``, ``orthogonally_resize``.
"""
import functools

import numpy as np

__all__ = ['is_one_of', 'insert_arguments', 'delete_arguments', 'orthogonally_resize']


def is_one_of(x, ys):
    """True when ``x`` *is* (identity, not ``==``) one of ``ys``.

    Use it where ``x in ys`` would compare tensors or arrays element-wise and fail.
    """
    return any(x is y for y in ys)


def insert_arguments(**arguments):
    """Decorator for methods (usually ``__init__``) that adds keyword arguments with defaults.

    Each ``name=default`` becomes ``self.name``: the caller's keyword value when given (it is
    removed from the keywords passed on), else the default. E.g.::

        class MyLayer(keras.layers.Layer):
            @insert_arguments(scale=1.0)
            def __init__(self, **kwargs):
                super().__init__(**kwargs)   # self.scale is already set
    """
    def decorator(func):
        @functools.wraps(func)
        def new_func(self, *args, **kwargs):
            for name, default in arguments.items():
                setattr(self, name, kwargs.pop(name, default))
            return func(self, *args, **kwargs)

        return new_func

    return decorator


def delete_arguments(*arguments):
    """Decorator for methods that rejects the given keyword arguments with a ``TypeError``.

    For subclasses that fix an option of their parent, e.g. ``@delete_arguments('with_pool')``.
    """
    def decorator(func):
        @functools.wraps(func)
        def new_func(self, *args, **kwargs):
            for name in arguments:
                if name in kwargs:
                    raise TypeError(
                        "%s got an unexpected keyword argument '%s'" % (type(self).__name__, name)
                    )
            return func(self, *args, **kwargs)

        return new_func

    return decorator


def orthogonally_resize(a, new_shape, window=2):
    """Resize a weight array to ``new_shape`` by block repetition and cropping, keeping its norm.

    Used to initialise a larger (or smaller) model from a trained one. Along each axis whose size
    changes from ``d1`` to ``d2``: when ``d2 > d1`` the axis is cut into blocks of ``window``
    consecutive entries and every block is repeated ``k = ceil(d2 / d1)`` times in place
    (``window=2``, 4 -> 6: rows ``[0, 1, 2, 3]`` -> ``[0, 1, 0, 1, 2, 3, 2, 3]``), then the axis is
    cropped to its first ``d2`` entries (which is all that happens when ``d2 < d1``). Finally the
    array is rescaled to the Frobenius norm of ``a``.

    Args:
        a: numpy array.
        new_shape: target shape, same number of dims as ``a``.
        window: block size; every axis that grows must have a size divisible by it.

    Returns:
        np.ndarray of shape ``new_shape``.
    """
    a = np.asarray(a)
    new_shape = tuple(int(d) for d in new_shape)
    if a.ndim != len(new_shape):
        raise ValueError('orthogonally_resize: a has %d dims %s but new_shape %s has %d'
                         % (a.ndim, a.shape, new_shape, len(new_shape)))
    norm = np.linalg.norm(a)
    for axis, (d1, d2) in enumerate(zip(a.shape, new_shape)):
        k = -(-d2 // d1)
        if d1 != d2 and k > 1:
            if d1 % window:
                raise ValueError(
                    'orthogonally_resize: axis %d grows from %d to %d, but %d is not divisible by '
                    'window=%d' % (axis, d1, d2, d1, window)
                )
            blocks = a.reshape(a.shape[:axis] + (d1 // window, window) + a.shape[axis + 1:])
            blocks = np.repeat(blocks, k, axis=axis)
            a = blocks.reshape(a.shape[:axis] + (d1 * k,) + a.shape[axis + 1:])
    a = a[tuple(slice(0, d) for d in new_shape)]
    return a / np.linalg.norm(a) * norm
