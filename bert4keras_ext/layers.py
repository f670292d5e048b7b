"""Keras 3 layers with bert4keras names and semantics.

Every layer here is registered for `.keras` serialization and has a complete `get_config`, so
`model.save('m.keras')` + `keras.saving.load_model('m.keras')` round-trips a model built from them.

Masks: layers accept explicit masks/biases as inputs (so they can sit on any backbone) and also honour
Keras' implicit masks where that is the natural interface (e.g. `Loss.compute_loss(inputs, mask)`).
"""
from bert4keras_ext.nn.attention import AttentionMask, MultiHeadAttention
from bert4keras_ext.nn.basic import Add, ExtractToken, Loss
from bert4keras_ext.nn.common import register  # noqa: F401  (the registry decorator, for users' layers)
from bert4keras_ext.nn.embeddings import BiasAdd, Embedding, PositionEmbedding
from bert4keras_ext.nn.feed_forward import FeedForward, FlatDense
from bert4keras_ext.nn.normalization import LayerNormalization

__all__ = [
    'Add', 'Embedding', 'BiasAdd', 'PositionEmbedding', 'LayerNormalization', 'MultiHeadAttention',
    'FeedForward', 'FlatDense', 'ExtractToken', 'AttentionMask', 'Loss',
]


# The sequence-labelling and span heads live in heads.py; bert4keras scripts import them from layers.
from bert4keras_ext.heads import (  # noqa: E402,F401
    AMSoftmaxDense, ConditionalRandomField, EfficientGlobalPointer, GlobalPointer, MaximumEntropyMarkovModel,
)

__all__ += ['ConditionalRandomField', 'MaximumEntropyMarkovModel', 'GlobalPointer', 'EfficientGlobalPointer',
            'AMSoftmaxDense']

# The rest of bert4keras' layers module (extra_layers.py, positions.py) and the backend functions it
# re-exported, so ``from bert4keras_ext.layers import ScaleOffset, sequence_masking`` works as in bert4keras.
from bert4keras_ext.backend import (  # noqa: E402,F401
    align, apply_rotary_position_embeddings, attention_normalize, recompute_grad, sequence_masking,
    sinusoidal_embeddings,
)
from bert4keras_ext.extra_layers import (  # noqa: E402,F401
    BatchConcat, BatchSplit, Concatenate1D, GlobalAveragePooling1D, GlobalMaxPooling1D, Layer, ScaleOffset,
    integerize_shape,
)
from bert4keras_ext.positions import RelativePositionEmbedding, SinusoidalPositionEmbedding  # noqa: E402,F401

__all__ += ['Layer', 'ScaleOffset', 'Concatenate1D', 'BatchSplit', 'BatchConcat', 'GlobalAveragePooling1D',
            'GlobalMaxPooling1D', 'SinusoidalPositionEmbedding', 'RelativePositionEmbedding', 'align',
            'apply_rotary_position_embeddings', 'attention_normalize', 'integerize_shape', 'recompute_grad',
            'sequence_masking', 'sinusoidal_embeddings']
