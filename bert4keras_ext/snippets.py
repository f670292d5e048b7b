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

Homes (all re-exported here): padding, segmentation, ``to_array`` and ``softmax`` in
``data/sequences``; ``DataGenerator`` in ``data/generator`` (its batch / dataset conversions in
``data/batches``); strings/files/truncation/LCS in ``text_utils``; ``parallel_apply*`` in
``parallel``; ``WebServing`` in ``webserving``; decorators and ``orthogonally_resize`` in ``misc``;
the decoders in ``decoders``.

Randomness (``DataGenerator.sample(random=True)``) uses numpy's global generator, exactly like
bert4keras, so ``np.random.seed(...)`` at the top of a competition script keeps runs repeatable.
"""
import types

import numpy as np  # noqa: F401  (bert4keras' snippets exposed np)

from bert4keras_ext.data.generator import DataGenerator  # noqa: F401  (re-exported)
from bert4keras_ext.data.sequences import sequence_padding, softmax, text_segmentate, to_array  # noqa: F401
from bert4keras_ext.misc import (  # noqa: F401  (re-exported)
    delete_arguments,
    insert_arguments,
    is_one_of,
    orthogonally_resize,
)
from bert4keras_ext.parallel import parallel_apply, parallel_apply_generator  # noqa: F401
from bert4keras_ext.text_utils import (  # noqa: F401  (re-exported)
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
