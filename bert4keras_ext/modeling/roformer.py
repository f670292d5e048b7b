"""RoFormer and RoFormer-v2 (ZhuiyiTechnology) in bert4keras' layout: rotary position embeddings (RoPE).

RoFormer (arxiv.org/abs/2104.09864, kexue.fm/archives/8265) is BERT without the absolute position table:
in every attention layer the per-head queries and keys of the token at position p are rotated pairwise,
dimensions (2i, 2i+1) by the angle p·θ_i, θ_i = 10000^(-2i/d) (`RotaryMultiHeadAttention`), so q·k depends
on the distance between the tokens only. The pairs are *interleaved* (2i, 2i+1) as in bert4keras and the
released checkpoints, not the two halves (i, i + d/2) of GPT-NeoX-style code: the two differ by O(1).

RoFormer-v2 (kexue.fm/archives/8998) drops every bias and the normalisation weights: the norms are
x / sqrt(mean(x²) + ε) (`WeightlessRMSNorm`), still post-norm, with dropout before the embedding norm, and
the MLM head is the tied token embedding alone. Checkpoint names: `formats.google` tables 'roformer' /
'roformer_v2'.
"""
import math

from bert4keras_ext.backend import (
    apply_rotary_position_embeddings, keras, ops, sinusoidal_embeddings,
)
from bert4keras_ext.checkpoints import CheckpointMismatchError, CheckpointReader
from bert4keras_ext.formats import FAMILY_HINTS, detect_family
from bert4keras_ext.layers import Embedding, LayerNormalization, MultiHeadAttention
from bert4keras_ext.modeling.bert import BERT
from bert4keras_ext.nn.common import is_16bit, register

__all__ = ['RoFormer', 'RoFormerV2', 'RotaryMultiHeadAttention', 'WeightlessRMSNorm', 'RoFormerV2Initializer']

@register
class RotaryMultiHeadAttention(MultiHeadAttention):
    """`MultiHeadAttention` with rotary position embeddings on the queries and keys (bert4keras'
    ``p_bias='rotary'``).

    Same inputs, outputs, weights and cache as `MultiHeadAttention`. The per-head queries and keys
    (b, n, h, dk) of the tokens at positions p (0..n-1 in a full pass, `decoding.positions` in cached
    decoding) are rotated before the 1/sqrt(dk) scaling::

        out[2i]   = x[2i]·cos(p·θ_i) - x[2i+1]·sin(p·θ_i)
        out[2i+1] = x[2i+1]·cos(p·θ_i) + x[2i]·sin(p·θ_i),    θ_i = 10000^(-2i/dk)

    Keys enter the cache rotated, so a decoding step rotates only its new tokens. The rotation runs in
    float32 under 16-bit policies (angles of long positions lose their precision in float16).
    """

    def __init__(self, heads, head_size, key_size=None, **kwargs):
        super().__init__(heads, head_size, key_size=key_size, **kwargs)
        if self.key_size % 2:
            raise ValueError('RotaryMultiHeadAttention: rotary positions rotate pairs of dimensions, so the key '
                             'size (%d) must be even' % self.key_size)

    def apply_positions(self, qw, kw, positions):
        return self._rotate(qw, positions), self._rotate(kw, positions)

    def _rotate(self, x, positions):
        """x (b, n, h, dk) at positions (b, n) int (None: 0..n-1) → rotated x, same dtype."""
        if positions is None:
            positions = ops.arange(ops.shape(x)[1], dtype='float32')[None]
        angles = sinusoidal_embeddings(ops.cast(positions, 'float32'), self.key_size)      # (b|1, n, dk)
        rotated = apply_rotary_position_embeddings(angles, ops.cast(x, 'float32'))
        return ops.cast(rotated, x.dtype)


@register
class WeightlessRMSNorm(LayerNormalization):
    """x / sqrt(mean(x²) + epsilon) over the last axis, no weights: RoFormer-v2's normalisation (bert4keras'
    ``LayerNormalization(zero_mean=False, scale=False, offset=False)``, epsilon K.epsilon() = 1e-7).

    (b, ..., d) → (b, ..., d); statistics in float32 under 16-bit policies. A `LayerNormalization` (no mean
    subtraction, no gamma/beta), so cached decoding treats it as position-wise like any norm.
    """

    def __init__(self, epsilon=1e-7, **kwargs):
        kwargs.pop('center', None)  # fixed here; present in a saved config
        kwargs.pop('scale', None)
        if kwargs.get('conditional'):
            raise ValueError('WeightlessRMSNorm has no gamma/beta to condition (RoFormer-v2 has no conditional '
                             'layer normalisation)')
        super().__init__(center=False, scale=False, epsilon=epsilon, **kwargs)

    def call(self, inputs):
        x = inputs
        if is_16bit(x.dtype):
            x = ops.cast(x, 'float32')
        x = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(x, inputs.dtype)


@register
class RoFormerV2Initializer(keras.initializers.Initializer):
    """bert4keras' RoFormer-v2 initializer: truncated normal with stddev 1.13684723 / sqrt(fan) / sqrt(L).

    fan = shape[1] for embedding-like shapes (shape[0] > 10000 or < 10, e.g. the token table or the
    segment table), else shape[0]; L = num_hidden_layers; 1.13684723 undoes the variance lost by the
    truncation at 2 stddev, so the weights have variance 1 / (fan · L).
    """

    def __init__(self, num_hidden_layers, seed=None):
        self.num_hidden_layers = int(num_hidden_layers)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        fan = shape[1] if (shape[0] > 10000 or shape[0] < 10) and len(shape) > 1 else shape[0]
        stddev = 1.13684723 / math.sqrt(fan) / math.sqrt(self.num_hidden_layers)
        return keras.random.truncated_normal(shape, stddev=stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {'num_hidden_layers': self.num_hidden_layers, 'seed': self.seed}


class RoFormer(BERT):
    """RoFormer: BERT with rotary position embeddings instead of the absolute position table.

    Inputs `[token_ids (b, n), segment_ids (b, n)]`, outputs and heads (`with_pool`, `with_nsp`,
    `with_mlm`) as `BERT`; every attention layer is a `RotaryMultiHeadAttention`. Sequences are not limited
    by `max_position` (the released word-level model is fine-tuned at maxlen 1024). Loads the released
    `chinese_roformer*` checkpoints (`formats.google` table 'roformer': BERT's names without
    `position_embeddings`); a checkpoint with the absolute table (BERT) or without biases (RoFormer-v2) is
    refused with the `model=` to use.
    """

    checkpoint_family = 'roformer'
    use_bias = True

    def __init__(self, custom_position_ids=False, hierarchical_position=None, **kwargs):
        if custom_position_ids:
            raise ValueError('%s: custom_position_ids is not supported (the rotary angles use the positions '
                             '0..n-1 of each sequence)' % type(self).__name__)
        if hierarchical_position:
            raise ValueError('%s: hierarchical_position decomposes an absolute position table, which RoFormer '
                             'does not have (rotary positions need no table: any length works)'
                             % type(self).__name__)
        super().__init__(**kwargs)

    # ------------------------------------------------------------------------------------ forward steps
    attention_class = RotaryMultiHeadAttention  # the rotation happens in every attention layer

    def apply_position_embeddings(self, x, inputs):
        return x  # no absolute position table

    # ------------------------------------------------------------------------------------ checkpoints
    def variable_mapping(self):
        return self._table_mapping(self.checkpoint_family)

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        """As `Transformer.load_weights_from_checkpoint`, after refusing a checkpoint of another family.

        RoFormer's names are a subset of BERT's, and RoFormer-v2's of RoFormer's: loading a BERT checkpoint
        as RoFormer (or a RoFormer one as RoFormer-v2) would find every variable it looks for and silently
        drop the position table (or the biases and norms), so the layout is checked first.
        """
        reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
        if mapping is None:
            family = detect_family(reader.names)
            if family in FAMILY_HINTS and family != self.checkpoint_family:
                raise CheckpointMismatchError(self._mismatch_message(reader, [], [], []))
        return super().load_weights_from_checkpoint(reader, mapping)


class RoFormerV2(RoFormer):
    """RoFormer-v2: RoFormer without biases and with weightless RMS normalisation (bert4keras' `RoFormerV2`).

    Embeddings: token (+ segment) → dropout → norm (→ bias-free `Embedding-Mapping` if factorised). Blocks:
    post-norm, rotary attention and feed-forward without biases, `WeightlessRMSNorm` (epsilon 1e-7, bert4keras'
    K.epsilon()). Outputs: the sequence (b, n, hidden), or with `with_mlm` only the token distribution
    (b, n, vocab) through the tied token embedding (`Output-MLM-Dropout`, `Embedding-Token` in dense mode,
    `Output-MLM-Activation`; no MLM dense/norm/bias). There is no pooler: take ``x[:, 0]`` yourself.
    Weights start from `RoFormerV2Initializer`. Checkpoint table: 'roformer_v2' (kernels only).
    """

    checkpoint_family = 'roformer_v2'
    use_bias = False

    def __init__(self, with_pool=False, with_nsp=False, layer_norm_epsilon=1e-7, **kwargs):
        if with_pool or with_nsp:
            raise ValueError('RoFormerV2 has no pooler or NSP head (the release has no such weights): build the '
                             'encoder and take the [CLS] vector, e.g. keras.layers.Lambda(lambda x: x[:, 0])')
        super().__init__(layer_norm_epsilon=layer_norm_epsilon, **kwargs)
        if self.embedding_size != self.hidden_size:
            raise ValueError('RoFormerV2: embedding_size (%d) must equal hidden_size (%d); the releases are not '
                             'factorised and the output mapping of a factorised model has no checkpoint name'
                             % (self.embedding_size, self.hidden_size))
        self.initializer = RoFormerV2Initializer(self.num_hidden_layers)

    def apply_embeddings(self, inputs):
        if self.layer_norm_conds[0] is not None:
            raise ValueError('RoFormerV2 has no normalisation weights, so layer_norm_cond (Conditional Layer '
                             'Normalization) cannot be applied')
        x = self.apply_token_segment_embeddings(list(inputs))
        x = self.apply(x, keras.layers.Dropout, rate=self.dropout_rate, name='Embedding-Dropout')
        x = self.apply_norm(x, 'Embedding-Norm')
        return self.apply_embedding_mapping(x)

    def apply_norm(self, x, name):
        return self.apply(x, WeightlessRMSNorm, epsilon=self.layer_norm_epsilon, name=name)

    def apply_final_layers(self, inputs):
        x = inputs
        if not self.with_mlm:
            return x
        mlm_activation = 'softmax' if self.with_mlm is True else self.with_mlm
        x = self.apply(x, keras.layers.Dropout, rate=self.dropout_rate, name='Output-MLM-Dropout')
        x = self.apply(x, Embedding, arguments={'mode': 'dense'}, name='Embedding-Token')
        # float32 probabilities/logits even under a mixed-precision policy
        return self.apply(x, keras.layers.Activation, activation=mlm_activation, dtype='float32',
                          name='Output-MLM-Activation')
