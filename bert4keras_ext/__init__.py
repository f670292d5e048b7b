"""bert4keras_ext: the bert4keras way of doing Chinese NLP, on Keras 3 + TensorFlow.

The public surface mirrors bert4keras::

    from bert4keras_ext.backend import keras, K
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.tokenizers import Tokenizer, load_vocab
    from bert4keras_ext.snippets import sequence_padding, DataGenerator

Importing the package itself is cheap: submodules load TensorFlow only when imported.
"""

__version__ = '0.1.0'
