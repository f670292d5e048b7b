"""NEZHA (Huawei Noah's Ark, arxiv.org/abs/1909.00204): BERT with functional relative positions.

NEZHA has no absolute position table. Every attention layer adds a fixed sinusoidal embedding of the clipped
relative distance between query i and key j, r_ij = E[clip(j - i, -k, k) + k] (k = max_relative_position,
64 in every release; E is the (2k + 1, head_size) sinusoidal table whose row p encodes p, sin at even and cos
at odd indices), to the keys and to the values (Shaw et al. 2018)::

    score_ij = q_i · (k_j + r_ij) / sqrt(d)          context_i = sum_j p_ij (v_j + r_ij)

as Huawei's TF code (`_generate_relative_positions_embeddings`), Hugging Face's `NezhaModel` and bert4keras'
`NEZHA` (`p_bias='typical_relative'`) compute it. The table is indexed by distance + k, so changing k changes
every embedding, not only the clipped ones.

As in bert4keras, one `Embedding-Relative-Position` layer (`RelativePositionEmbedding` with the sinusoidal
table, not trainable) gives r (n, m, head_size) to every `Transformer-{i}-MultiHeadSelfAttention`, whose
last input it is. For cached decoding (`bert4keras_ext.caching`) both layers are cache-aware: the position
layer keeps the key positions (a shared prefix block's slot j holds position j; the rows block stores the
positions written at each step) and returns r (rows, n, S + T, head_size) for the new tokens against every
cached key, and the attention adds the relative terms in its cached path too.

Checkpoints: Huawei's TF1 releases use BERT's variable names without bert/embeddings/position_embeddings
(`formats.google` family 'nezha'). `hidden_act: "gelu"` means the exact erf GELU here, as in bert4keras and
Hugging Face (Huawei's TF code used the tanh form, ~1e-3 apart); pass hidden_act='gelu_tanh' to follow it.
"""
from bert4keras_ext.backend import Sinusoidal, keras, ops
from bert4keras_ext.checkpoints import CheckpointMismatchError, CheckpointReader
from bert4keras_ext.formats.google import FAMILY_HINTS, foreign_variables
from bert4keras_ext.layers import MultiHeadAttention
from bert4keras_ext.modeling.bert import BERT
from bert4keras_ext.positions import RelativePositionEmbedding

__all__ = ['NEZHA', 'RelativeMultiHeadAttention', 'CachedRelativePositionEmbedding']

register = keras.saving.register_keras_serializable(package='bert4keras_ext')


@register
class CachedRelativePositionEmbedding(RelativePositionEmbedding):
    """`RelativePositionEmbedding` that also runs cached decoding (`layer(inputs, cache=, decoding=)`).

    Training / inference: inputs ``[q, v]`` (b, n, ...), (b, m, ...) → (n, m, output_dim), row
    E[clip(j - i, -k, k) + k] for query i and key j, k = (input_dim - 1) // 2 (the parent layer).

    Decoding: a prefill (no cache) is the training case (positions 0..n-1) and starts a cache holding the
    key positions, ``cache['rows']['positions']`` (rows, T) int32; a step writes the new tokens' positions
    (`decoding.positions`, (rows, n)) at slot `decoding.index` and returns (rows, n, S + T, output_dim) for
    the new tokens against the prefix block's S slots (slot j = position j) and the T rows slots, the key
    order of `MultiHeadAttention`'s cached scores.
    """

    supports_decoding_cache = True

    def relative_position_ids(self, query_positions, key_positions):
        """Table rows of the distances key - query (broadcast int tensors), clipped to ±k and shifted by k."""
        k = (self.input_dim - 1) // 2
        return ops.clip(ops.cast(key_positions, 'int32') - ops.cast(query_positions, 'int32'), -k, k) + k

    def compute_position_ids(self, inputs):
        q, v = inputs
        return self.relative_position_ids(ops.arange(ops.shape(q)[1], dtype='int32')[:, None],
                                          ops.arange(ops.shape(v)[1], dtype='int32')[None, :])

    def call(self, inputs, cache=None, decoding=None):
        if decoding is None:
            return super().call(inputs)
        cache = cache or {}
        queries = ops.cast(decoding.positions, 'int32')                                    # (rows, n)
        if cache.get('rows') is None:  # a prefill: whole sequences from position 0, as in training
            return super().call(inputs), {'rows': {'positions': queries}}
        keys = decoding.write(cache['rows']['positions'], queries, axis=1)                   # (rows, T)
        all_keys = keys
        prefix = cache.get('prefix')
        if prefix is not None:
            slots = ops.broadcast_to(prefix['positions'][None], (ops.shape(keys)[0], ops.shape(prefix['positions'])[0]))
            all_keys = ops.concatenate([slots, keys], axis=1)                             # (rows, S + T)
        ids = self.relative_position_ids(queries[:, :, None], all_keys[:, None, :])      # (rows, n, S + T)
        new_cache = {'rows': {'positions': keys}}
        if prefix is not None:
            new_cache['prefix'] = prefix
        return ops.take(ops.cast(self.embeddings, self.compute_dtype), ids, axis=0), new_cache

    def continue_cache(self, cache, rows, capacity, prefix_rows=None, prefix_length=None):
        """The cache of a prefill → the cache of the steps after it (see `bert4keras_ext.caching`)."""
        prefix_length = prefix_length or cache['rows']['positions'].shape[1]
        return {'prefix': {'positions': ops.arange(prefix_length, dtype='int32')},
                'rows': {'positions': ops.zeros((rows, capacity), 'int32')}}


@register
class RelativeMultiHeadAttention(MultiHeadAttention):
    """`MultiHeadAttention` with NEZHA's relative position terms (bert4keras' ``p_bias='typical_relative'``).

    Inputs ``[q, k, v, *biases, r]``: the masks/biases of `MultiHeadAttention`, then the relative embeddings
    r (n, m, key_size) (or (b, n, m, key_size), as cached decoding gives them), added to the keys in the
    scores and to the values in the context::

        scores = (q kᵀ + q rᵀ) / sqrt(key_size)        context = softmax(scores) (v + r)

    Needs key_size == head_size (one table for keys and values, as NEZHA). Output as `MultiHeadAttention`.
    """

    def build(self, input_shape):
        if self.key_size != self.head_size:
            raise ValueError('%s: relative positions are added to keys and values, so key_size (%d) must equal '
                             'head_size (%d)' % (self.name, self.key_size, self.head_size))
        super().build(input_shape[:-1])

    def call(self, inputs, mask=None, training=None, cache=None, decoding=None):
        inputs = list(inputs)
        if len(inputs) < 4:
            raise ValueError('%s: inputs must be [q, k, v, *biases, relative_embeddings], got %d tensors'
                             % (self.name, len(inputs)))
        if len(inputs) == 4 and isinstance(mask, (list, tuple)) and len(mask) > 2 and mask[2] is not None:
            inputs.insert(3, mask[2][:, None, None, :])  # no explicit bias: the Keras mask of the values
        # The relative embeddings travel as the last "bias"; `_attention` / `_cached_attention` take them off.
        return super().call(inputs, mask=None, training=training, cache=cache, decoding=decoding)

    # The relative embeddings travel as the last "bias"; the base class adds their terms in both paths.
    def split_biases(self, biases):
        return list(biases[:-1]), biases[-1]

    def extra_scores(self, qw, relative):
        """qw (b, h, n, d) · r (n, m, d) (training, prefill) or (b, n, m, d) (a cached step) → (b, h, n, m).
        The queries are already scaled: (q·r)/sqrt(d) = (q/sqrt(d))·r."""
        relative = ops.cast(relative, qw.dtype)
        if len(relative.shape) == 3:
            return ops.einsum('bhqd,qkd->bhqk', qw, relative)
        return ops.einsum('bhqd,bqkd->bhqk', qw, relative)

    def extra_context(self, probs, relative):
        """probs (b, h, n, m) · r → (b, h, n, d)."""
        relative = ops.cast(relative, probs.dtype)
        if len(relative.shape) == 3:
            return ops.einsum('bhqk,qkd->bhqd', probs, relative)
        return ops.einsum('bhqk,bqkd->bhqd', probs, relative)

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(input_shape[:-1])


class NEZHA(BERT):
    """NEZHA: BERT's post-LN encoder with functional relative positions instead of a position table.

    Args (besides BERT's):
        max_relative_position: relative distances are clipped to ±this (64 in Huawei's releases); the
            table has 2·k + 1 rows, so a different k changes every position's embedding.
        use_relative_position: the release config's flag; False would be a plain BERT (an error here).
    Inputs, outputs and heads (with_pool, with_nsp, with_mlm) as `BERT`; sequences of any length (no
    absolute positions: `max_position` is only the config's number).
    """

    checkpoint_family = 'nezha'

    def __init__(self, max_relative_position=64, use_relative_position=True, **kwargs):
        if not use_relative_position:
            raise ValueError("NEZHA: the config has use_relative_position=false, which is a BERT with absolute "
                             "positions: build it with model='bert'")
        if kwargs.get('custom_position_ids') or kwargs.get('hierarchical_position'):
            raise ValueError('NEZHA has no absolute position embeddings: custom_position_ids and '
                             'hierarchical_position do not apply (relative distances are clipped to '
                             '±max_relative_position, so any length works)')
        max_relative_position = int(max_relative_position)
        if max_relative_position < 1:
            raise ValueError('NEZHA: max_relative_position must be a positive integer, got %r'
                             % (max_relative_position,))
        super().__init__(**kwargs)
        if self.attention_key_size != self.attention_head_size:
            raise ValueError('NEZHA adds its relative embeddings to keys and values, so attention_key_size (%d) '
                             'must equal the head size (%d)' % (self.attention_key_size, self.attention_head_size))
        self.max_relative_position = max_relative_position
        self.position_bias = None

    attention_class = RelativeMultiHeadAttention  # inputs [q, k, v, *biases, r]

    def apply_position_embeddings(self, x, inputs):
        """No absolute table; the relative embeddings are made by the first block from its input (per call,
        cached decoding included)."""
        self.position_bias = None
        return x

    def compute_position_bias(self, inputs=None):
        """The relative embeddings r (n, n, head_size) shared by every block (bert4keras' name and layer)."""
        if self.position_bias is None:
            self.position_bias = self.apply(
                [inputs, inputs], CachedRelativePositionEmbedding, input_dim=2 * self.max_relative_position + 1,
                output_dim=self.attention_key_size, embeddings_initializer=Sinusoidal(), trainable=False,
                name='Embedding-Relative-Position')
        return self.position_bias

    def attention_inputs(self, x, index):
        """BERT's attention inputs, then the relative embeddings r (n, m, head_size)."""
        return super().attention_inputs(x, index) + [self.compute_position_bias(x)]

    def variable_mapping(self):
        return self._table_mapping('nezha')

    def load_weights_from_checkpoint(self, checkpoint, mapping=None):
        """BERT's loading, after refusing a checkpoint with an absolute position table (a BERT-family release:
        NEZHA's names are BERT's minus that table, so it would otherwise load with the table ignored)."""
        reader = checkpoint if isinstance(checkpoint, CheckpointReader) else CheckpointReader(checkpoint)
        foreign = foreign_variables('nezha', reader.names)
        if foreign:
            raise CheckpointMismatchError(
                'checkpoint %s has %s, which NEZHA releases do not have (NEZHA has no absolute position '
                'table): it is not a NEZHA checkpoint. Hint: %s' % (reader.path, ', '.join(foreign),
                                                                   FAMILY_HINTS['bert']))
        return super().load_weights_from_checkpoint(reader, mapping)
