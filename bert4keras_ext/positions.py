"""bert4keras' position layers without a trained absolute table: `SinusoidalPositionEmbedding` (fixed sin-cos,
also the angles RoPE rotates by) and `RelativePositionEmbedding` (NEZHA-style clipped relative positions,
arxiv.org/abs/1803.02155). Re-exported by `bert4keras_ext.layers` (import them from there).
"""
from bert4keras_ext.backend import keras, ops, sinusoidal_embeddings
from bert4keras_ext.extra_layers import Layer

__all__ = ['SinusoidalPositionEmbedding', 'RelativePositionEmbedding']

register = keras.saving.register_keras_serializable(package='bert4keras_ext')

_MERGE_MODES = ('add', 'mul', 'zero', 'concat')


@register
class SinusoidalPositionEmbedding(Layer):
    """Fixed sinusoidal position embedding (sin, cos interleaved), merged into the input.

    Args:
        output_dim: even embedding size d.
        merge_mode: 'add' → x + P; 'mul' → x · (P + 1); 'zero' → P alone (broadcast to the batch);
            'concat' → [x, P] on the last axis.
        custom_position_ids: inputs are ``[x, position_ids]`` with position ids (b, n) or (1, n), int or
            float; otherwise positions are 0..n-1.
    Input x (b, n, d_x) (d_x = d for 'add'/'mul'); output (b, n, d) or (b, n, d_x + d) for 'concat'.
    Position p gets P[p, 2i] = sin(p / 10000^(2i/d)), P[p, 2i+1] = cos(p / 10000^(2i/d)).
    """

    def __init__(self, output_dim, merge_mode='add', custom_position_ids=False, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in _MERGE_MODES:
            raise ValueError('SinusoidalPositionEmbedding: merge_mode must be one of %s, got %r'
                             % (_MERGE_MODES, merge_mode))
        if int(output_dim) % 2:
            raise ValueError('SinusoidalPositionEmbedding: output_dim must be even, got %r' % (output_dim,))
        self.output_dim = int(output_dim)
        self.merge_mode = merge_mode
        self.custom_position_ids = custom_position_ids

    def build(self, input_shape):
        x_shape = input_shape[0] if self.custom_position_ids else input_shape
        if self.merge_mode in ('add', 'mul') and x_shape[-1] is not None and x_shape[-1] != self.output_dim:
            raise ValueError('SinusoidalPositionEmbedding(merge_mode=%r): the input\'s last axis (%s) must equal '
                             'output_dim (%d); use merge_mode="concat" to append instead'
                             % (self.merge_mode, x_shape[-1], self.output_dim))

    def call(self, inputs):
        if self.custom_position_ids:
            x, position_ids = inputs
            position_ids = ops.cast(position_ids, 'float32')
        else:
            x = inputs
            position_ids = ops.arange(ops.shape(x)[1], dtype='float32')[None]
        embeddings = ops.cast(sinusoidal_embeddings(position_ids, self.output_dim), x.dtype)
        if self.merge_mode == 'add':
            return x + embeddings
        if self.merge_mode == 'mul':
            return x * (embeddings + ops.cast(1.0, x.dtype))
        embeddings = ops.broadcast_to(embeddings, tuple(ops.shape(x)[:2]) + (self.output_dim,))
        if self.merge_mode == 'zero':
            return embeddings
        return ops.concatenate([x, embeddings], axis=-1)

    def compute_mask(self, inputs, mask=None):
        if self.custom_position_ids and isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0] if self.custom_position_ids else input_shape)
        if self.merge_mode == 'concat':
            last = None if x_shape[-1] is None else x_shape[-1] + self.output_dim
            return x_shape[:-1] + (last,)
        return x_shape[:2] + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            'output_dim': self.output_dim,
            'merge_mode': self.merge_mode,
            'custom_position_ids': self.custom_position_ids,
        })
        return config


@register
class RelativePositionEmbedding(Layer):
    """Trainable relative position table (NEZHA / Shaw et al. 2018), looked up for every (query, key) pair.

    Args:
        input_dim: table size; relative distances are clipped to ±(input_dim - 1) // 2.
        output_dim: embedding size (the attention head size in NEZHA).
        embeddings_initializer: initializer of the (input_dim, output_dim) table (zeros by default, as
            bert4keras; NEZHA checkpoints use the `Sinusoidal` initializer's table).
    Inputs ``[q, v]`` (b, n, ...) and (b, m, ...); output (n, m, output_dim) with
    out[i, j] = E[clip(j - i, -k, k) + k], k = (input_dim - 1) // 2. The output has no batch axis, so no
    Keras mask is attached (bert4keras passed q's mask on).
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer='zeros', **kwargs):
        super().__init__(**kwargs)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2 \
                or not isinstance(input_shape[0], (list, tuple)):
            raise ValueError('RelativePositionEmbedding takes two inputs [q, v], got input shape %s' % (input_shape,))
        self.embeddings = self.add_weight(name='embeddings', shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer)

    def compute_position_ids(self, inputs):
        """The (n, m) int32 table indices of the relative distances j - i (override for other bucketings)."""
        q, v = inputs
        q_idxs = ops.arange(ops.shape(q)[1], dtype='int32')[:, None]
        v_idxs = ops.arange(ops.shape(v)[1], dtype='int32')[None, :]
        max_position = (self.input_dim - 1) // 2
        return ops.clip(v_idxs - q_idxs, -max_position, max_position) + max_position

    def call(self, inputs):
        return ops.take(ops.cast(self.embeddings, self.compute_dtype), self.compute_position_ids(inputs), axis=0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0][1], input_shape[1][1], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update({
            'input_dim': self.input_dim,
            'output_dim': self.output_dim,
            'embeddings_initializer': keras.initializers.serialize(self.embeddings_initializer),
        })
        return config
