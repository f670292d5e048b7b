"""The helpers bert4keras' `models` module exposes besides the model classes; `bert4keras_ext.models`
re-exports them, so ``from bert4keras_ext.models import extend_with_language_model`` works as in bert4keras.

- `extend_with_language_model(BaseModel)` / `extend_with_unified_language_model(BaseModel)`: a subclass of
  a Transformer class with the causal (LM) or UniLM attention mask and the MLM head on by default.
- `data_parallel`: raises — Keras 3 does not honour ``tf.device`` scopes recorded while building a
  functional model, so bert4keras' split-and-concat trick would silently run on one device. Use
  ``tf.distribute.MirroredStrategy`` (docs/distributed.md).
- `insert_arguments`, `delete_arguments`, `is_string`, `string_matching`, `orthogonally_resize`,
  `get_available_gpus`: bert4keras' small utilities, re-exported from `misc`, `text_utils` and `backend`.

This module imports `bert4keras_ext.models` only inside functions, so models.py can import it.
"""
from bert4keras_ext._keras_compat import Keras2APIError
from bert4keras_ext.backend import get_available_gpus
# bert4keras' models module re-exported these snippets helpers; they live in misc / text_utils here
from bert4keras_ext.misc import delete_arguments, insert_arguments, orthogonally_resize
from bert4keras_ext.text_utils import is_string, string_matching

__all__ = [
    'extend_with_language_model', 'extend_with_unified_language_model', 'data_parallel', 'insert_arguments',
    'delete_arguments', 'is_string', 'string_matching', 'orthogonally_resize', 'get_available_gpus',
]


def _model_class(BaseModel):
    """`BaseModel` as a Transformer subclass (a model name such as 'bert' is accepted too)."""
    from bert4keras_ext import models
    if isinstance(BaseModel, str):
        if BaseModel.lower() not in models.MODELS:
            raise ValueError('unknown model %r; expected one of %s or a Transformer subclass'
                             % (BaseModel, sorted(models.MODELS)))
        return models.MODELS[BaseModel.lower()]
    if not (isinstance(BaseModel, type) and issubclass(BaseModel, models.Transformer)):
        raise TypeError('BaseModel must be a Transformer subclass (e.g. bert4keras_ext.models.BERT), got %r'
                        % (BaseModel,))
    return BaseModel


def _with_mask(BaseModel, mask_name, class_name, doc):
    from bert4keras_ext import models
    base = _model_class(BaseModel)
    mixin = getattr(models, mask_name)

    class Extended(mixin, base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # a language model predicts tokens: the MLM head is on unless the caller chose one
            self.with_mlm = getattr(self, 'with_mlm', False) or True

    Extended.__name__ = Extended.__qualname__ = class_name
    Extended.__doc__ = doc
    return Extended


def extend_with_language_model(BaseModel):
    """A subclass of `BaseModel` (a Transformer class, e.g. `BERT`) with a lower-triangular attention mask
    (unidirectional language model) and ``with_mlm=True`` unless given; pass it as
    ``build_transformer_model(..., model=extend_with_language_model(BERT))``."""
    return _with_mask(BaseModel, 'LM_Mask', 'LanguageModel',
                      'Transformer with a causal attention mask (language model).')


def extend_with_unified_language_model(BaseModel):
    """A subclass of `BaseModel` with the UniLM seq2seq attention mask (segment 0 bidirectional, segment 1
    causal; arxiv.org/abs/1905.03197) and ``with_mlm=True`` unless given."""
    return _with_mask(BaseModel, 'UniLM_Mask', 'UnifiedLanguageModel',
                      'Transformer with the UniLM attention mask (seq2seq).')


def data_parallel(model, devices=None, parts=None):
    """bert4keras' hand-made multi-GPU wrapper; not available on Keras 3 (raises `Keras2APIError`)."""
    raise Keras2APIError(
        'data_parallel(model) is not available on Keras 3: tf.device scopes used while building a functional '
        'model are not kept, so the copies would all run on one device. Train data-parallel with a '
        'tf.distribute strategy instead: strategy = tf.distribute.MirroredStrategy(); build the model, '
        'compile it (and apply any adversarial_training / optimizer extension) inside `with strategy.scope():`, '
        'then model.fit(...) as usual, feeding the global batch (see docs/distributed.md).'
    )
