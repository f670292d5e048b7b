"""``TokenizerBase`` (bert4keras' tokenizer template); it lives in ``bert4keras_ext.tokenization.base``."""
from bert4keras_ext.tokenization.base import TokenizerBase  # noqa: F401

__all__ = ['TokenizerBase']
