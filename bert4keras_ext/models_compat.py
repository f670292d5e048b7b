"""The helpers bert4keras' `models` module exposes besides the model classes and applications;
`bert4keras_ext.models` re-exports them, so ``from bert4keras_ext.models import data_parallel`` works as in
bert4keras (`extend_with_language_model` / `extend_with_unified_language_model` live in models.py itself).

- `data_parallel`: raises — Keras 3 does not honour ``tf.device`` scopes recorded while building a
  functional model, so bert4keras' split-and-concat trick would silently run on one device. Use
  ``tf.distribute.MirroredStrategy`` (docs/distributed.md).
- `insert_arguments`, `delete_arguments`, `is_string`, `string_matching`, `orthogonally_resize`,
  `get_available_gpus`: bert4keras' small utilities, re-exported from `misc`, `text_utils` and `backend`.

This module does not import `bert4keras_ext.models`, so models.py can import it.
"""
from bert4keras_ext._keras_compat import Keras2APIError
from bert4keras_ext.backend import get_available_gpus
# bert4keras' models module re-exported these snippets helpers; they live in misc / text_utils here
from bert4keras_ext.misc import delete_arguments, insert_arguments, orthogonally_resize
from bert4keras_ext.text_utils import is_string, string_matching

__all__ = [
    'data_parallel', 'insert_arguments',
    'delete_arguments', 'is_string', 'string_matching', 'orthogonally_resize', 'get_available_gpus',
]


def data_parallel(model, devices=None, parts=None):
    """bert4keras' hand-made multi-GPU wrapper; not available on Keras 3 (raises `Keras2APIError`)."""
    raise Keras2APIError(
        'data_parallel(model) is not available on Keras 3: tf.device scopes used while building a functional '
        'model are not kept, so the copies would all run on one device. Train data-parallel with a '
        'tf.distribute strategy instead: strategy = tf.distribute.MirroredStrategy(); build the model, '
        'compile it (and apply any adversarial_training / optimizer extension) inside `with strategy.scope():`, '
        'then model.fit(...) as usual, feeding the global batch (see docs/distributed.md).'
    )
