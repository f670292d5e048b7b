"""Token embeddings (also the tied MLM output projection), the MLM output bias and absolute position embeddings."""
import numpy as np

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.nn.common import materialised, register

__all__ = ['Embedding', 'BiasAdd', 'PositionEmbedding']


@register
class Embedding(keras.layers.Embedding):
    """Token embedding that can also act as its own transposed output projection.

    `layer(token_ids)` looks rows up (b, n) → (b, n, d). `layer(hidden, mode='dense')` multiplies by
    the transposed matrix (b, n, d) → (b, n, vocab): this is how BERT's MLM head ties its output
    weights to the input embedding.

    The Keras mask of a lookup is `token_ids != 0` (id 0 is padding) when `mask_zero=True`; in dense
    mode the incoming mask is passed through.
    """

    # Cached decoding (see `bert4keras_ext.caching`): the output projection keeps a materialised transposed
    # matrix for the whole search.
    supports_decoding_cache = True

    def call(self, inputs, mode='embedding', cache=None, decoding=None):
        if mode == 'embedding':
            outputs = super().call(self._checked_ids(inputs))
            return outputs if decoding is None else (outputs, {})
        if mode != 'dense':
            raise ValueError("Embedding.call: mode must be 'embedding' or 'dense', got %r" % (mode,))
        kernel = ops.cast(self.embeddings, self.compute_dtype)
        if decoding is None:
            return ops.matmul(inputs, ops.transpose(kernel))
        # A (d, vocab) copy of the transposed matrix, made once per search: TensorFlow's CPU matmul with a
        # transposed right operand is ~10x slower for the few rows of a decoding step.
        constants = (cache or {}).get('constants') or {'transposed': materialised(ops.transpose(kernel))}
        return ops.matmul(inputs, constants['transposed']), {'constants': constants}

    def continue_cache(self, cache, rows, capacity, prefix_rows=None, prefix_length=None):
        """Only the constants carry over (see `bert4keras_ext.caching`)."""
        return {'constants': cache['constants']} if cache.get('constants') else {}

    def _checked_ids(self, ids):
        """`ids` as int32, after checking they are whole numbers in [0, input_dim).

        A lookup with a bad id is silently wrong on some devices (a negative id wraps around, a float id
        is truncated) and an opaque kernel error on others, so the check runs first: in eager code it
        raises a ValueError with the offending values; inside a compiled `fit` / `predict` it is an
        assertion whose message says the same.
        """
        dtype = keras.backend.standardize_dtype(ids.dtype)
        if 'int' in dtype and 'uint' not in dtype and dtype != 'int32':
            ids = ops.cast(ids, 'int32')
        import tensorflow as tf  # the check needs TF's eager test and assertions; layers run on TF here
        ids = tf.convert_to_tensor(ids)
        describe = 'layer %r expects ids in [0, %d) (whole numbers)' % (self.name, self.input_dim)
        if tf.executing_eagerly():
            values = ids.numpy()
            bad = (values < 0) | (values >= self.input_dim)
            if 'float' in dtype:
                bad |= values != np.round(values)
            if bad.any():
                raise ValueError('%s, got %s at positions %s (out of range ids are not wrapped or clipped)'
                                 % (describe, sorted(set(values[bad].tolist()))[:10],
                                    [tuple(p) for p in np.argwhere(bad)[:5].tolist()]))
            return ops.cast(ids, 'int32')
        checks = [tf.debugging.assert_non_negative(ids, message='%s, got a negative id' % describe),
                  tf.debugging.assert_less(ids, tf.cast(self.input_dim, ids.dtype),
                                           message='%s, got an id >= %d' % (describe, self.input_dim))]
        if 'float' in dtype:
            checks.append(tf.debugging.assert_equal(ids, tf.round(ids),
                                                    message='%s, got a non-integer id' % describe))
        with tf.control_dependencies(checks):
            return tf.cast(ids, 'int32')

    def compute_mask(self, inputs, mask=None):
        if self._is_dense_mode_input(inputs):
            return mask
        return super().compute_mask(inputs, mask)

    def _is_dense_mode_input(self, inputs):
        """Hidden states (b, ..., output_dim) rather than ids. Ids may be float: models built here take
        float ids as bert4keras' do, so the dtype alone does not tell."""
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        return 'float' in dtype and len(inputs.shape) >= 3 and inputs.shape[-1] == self.output_dim

    def compute_output_shape(self, input_shape, mode='embedding'):
        if mode == 'dense':
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return super().compute_output_shape(input_shape)

    def compute_output_spec(self, inputs, mode='embedding'):
        shape = self.compute_output_shape(inputs.shape, mode=mode)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

@register
class BiasAdd(keras.layers.Layer):
    """Adds a learned bias vector on the last axis (BERT's `cls/predictions/output_bias`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        self.bias = self.add_weight(name='bias', shape=(input_shape[-1],), initializer='zeros')

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

@register
class PositionEmbedding(keras.layers.Layer):
    """Trainable absolute position embedding, merged into its input.

    Input (b, n, d) (or `[x, position_ids]` with `custom_position_ids=True`); output (b, n, d) for
    `merge_mode='add'|'mul'|'zero'`, (b, n, d + output_dim) for 'concat'.

    `hierarchical` (True → alpha 0.4, or a float alpha) extends a table of n trained rows to n² positions:
    with u = (E - alpha·E[0]) / (1 - alpha), position p gets alpha·u[p // n] + (1 - alpha)·u[p % n],
    which equals E[p] exactly for p < n (kexue.fm/archives/7947). Without it, a sequence longer than the
    table raises an error instead of being truncated.
    """

    def __init__(self, input_dim, output_dim, merge_mode='add', hierarchical=None,
                 embeddings_initializer='zeros', custom_position_ids=False, **kwargs):
        super().__init__(**kwargs)
        if merge_mode not in ('add', 'mul', 'zero', 'concat'):
            raise ValueError("PositionEmbedding: merge_mode must be add, mul, zero or concat, got %r" % merge_mode)
        if hierarchical is not None and hierarchical is not False and hierarchical is not True:
            if not 0 < float(hierarchical) < 1 or float(hierarchical) == 0.5:
                raise ValueError('PositionEmbedding: hierarchical alpha must be in (0, 1) and != 0.5, got %r'
                                 % hierarchical)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.merge_mode = merge_mode
        self.hierarchical = hierarchical
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.custom_position_ids = custom_position_ids
        self.supports_masking = True

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name='embeddings', shape=(self.input_dim, self.output_dim), initializer=self.embeddings_initializer
        )

    @property
    def max_length(self):
        return self.input_dim ** 2 if self.hierarchical else self.input_dim

    def _check_length(self, seq_len):
        """Return `seq_len`, failing with a clear message if the table cannot cover it."""
        if isinstance(seq_len, int):
            if seq_len > self.max_length:
                raise ValueError(self._too_long_message(seq_len))
            return seq_len
        # Dynamic length inside a traced function: a runtime assertion (TensorFlow-specific, and the
        # only TF op in this module). The length is routed through it so that the lookup cannot run
        # (and fail with an opaque shape error) before the check. XLA drops assertions.
        import tensorflow as tf
        check = tf.debugging.assert_less_equal(
            tf.cast(seq_len, 'int32'), self.max_length, message=self._too_long_message('(dynamic)')
        )
        with tf.control_dependencies([check]):
            return tf.identity(seq_len)

    def _too_long_message(self, seq_len):
        hint = '' if self.hierarchical else (
            ' Truncate inputs (e.g. tokenizer.encode(text, maxlen=%d)) or build the model with '
            'hierarchical_position=True to extend the table to %d positions.' % (self.input_dim, self.input_dim ** 2))
        return ('%s: input sequence length (or largest position id + 1) %s exceeds the position embedding table of %d positions '
                '(max_position=%d%s).%s' % (self.name, seq_len, self.max_length, self.input_dim,
                                             ', hierarchical' if self.hierarchical else '', hint))

    def position_embeddings(self, position_ids=None, seq_len=None):
        """Embeddings for `position_ids` (any int shape) or for 0..seq_len-1, shape (..., output_dim)."""
        table = ops.cast(self.embeddings, self.compute_dtype)
        if self.hierarchical:
            alpha = 0.4 if self.hierarchical is True else float(self.hierarchical)
            if position_ids is None:
                position_ids = ops.arange(seq_len, dtype='int32')
            position_ids = ops.cast(position_ids, 'int32')
            bases = (table - alpha * table[:1]) / (1 - alpha)
            coarse = ops.take(bases, position_ids // self.input_dim, axis=0)
            fine = ops.take(bases, position_ids % self.input_dim, axis=0)
            return alpha * coarse + (1 - alpha) * fine
        if position_ids is None:
            return table[:seq_len]
        return ops.take(table, ops.cast(position_ids, 'int32'), axis=0)

    # Cached decoding: the new tokens sit at `decoding.positions`, not at 0..n-1.
    uses_decoding_positions = True

    def call(self, inputs, decoding=None):
        if decoding is not None:
            if self.custom_position_ids:
                raise NotImplementedError('%s: cached decoding does not support custom_position_ids' % self.name)
            pos = self.position_embeddings(position_ids=decoding.positions)
            return self._merge(inputs, pos)
        if self.custom_position_ids:
            inputs, position_ids = inputs
            # what must fit in the table is the largest id, whatever the sequence length
            position_ids = ops.cast(position_ids, 'int32')
            largest = self._check_length(ops.max(position_ids) + 1)
            # the no-op minimum makes the lookup depend on the check, so the check runs first
            pos = self.position_embeddings(position_ids=ops.minimum(position_ids, largest))
            if len(pos.shape) == 2:
                pos = ops.expand_dims(pos, 0)
        else:
            seq_len = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
            seq_len = self._check_length(seq_len)
            pos = ops.expand_dims(self.position_embeddings(seq_len=seq_len), 0)
        return self._merge(inputs, pos)

    def _merge(self, inputs, pos):
        if self.merge_mode == 'add':
            return inputs + pos
        if self.merge_mode == 'mul':
            return inputs * (pos + 1.0)
        batch_size = ops.shape(inputs)[0]
        pos = ops.broadcast_to(pos, (batch_size,) + tuple(ops.shape(pos)[1:]))
        if self.merge_mode == 'zero':
            return pos
        return ops.concatenate([inputs, pos], axis=-1)

    def compute_mask(self, inputs, mask=None):
        if self.custom_position_ids and isinstance(mask, (list, tuple)):
            return mask[0]
        return mask

    def compute_output_shape(self, input_shape):
        if self.custom_position_ids:
            input_shape = input_shape[0]
        elif input_shape[1] is not None:  # a static sequence_length is checked when the model is built
            self._check_length(int(input_shape[1]))
        if self.merge_mode == 'concat':
            return tuple(input_shape[:2]) + (input_shape[2] + self.output_dim,)
        return tuple(input_shape[:2]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update({
            'input_dim': self.input_dim,
            'output_dim': self.output_dim,
            'merge_mode': self.merge_mode,
            'hierarchical': self.hierarchical,
            'embeddings_initializer': keras.initializers.serialize(self.embeddings_initializer),
            'custom_position_ids': self.custom_position_ids,
        })
        return config
