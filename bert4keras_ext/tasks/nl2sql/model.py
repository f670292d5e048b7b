"""The baseline's heads on a BERT encoder, its loss, and a warm-up/decay learning-rate schedule.

Inputs: `Input-Token` / `Input-Segment` (b, n) as for every BERT here, and `Input-Header-Position`
(b, H) int32: the position of each header's [CLS] token, 0 for padded header slots (position 0 is the
question's [CLS], never a header's, so `position > 0` is the header mask).

Outputs of the prediction model (probabilities, float32):
    conn (b, 3)      connector, read at the question's [CLS]
    sel  (b, H, 7)   aggregation 0-5 or NOT_SELECTED, read at each header's [CLS]
    op   (b, n, 5)   operator 0-3 of the value a token belongs to, or NO_OP
    col  (b, n, H)   the column a token's value compares with: an additive-attention pointer
                     v·tanh(W_x x_i + W_h h_j), padded headers masked with a large finite negative.

The notes' shorthand "Dense(1)(x_i) + Dense(1)(h_j)" would give every token the same ranking of columns
(the x_i term is constant over j), so the pointer follows the original baseline instead: both sides are
projected to `pointer_units`, added, tanh, then Dense(1).

The training model adds four inputs (labels and the question mask) and the summed loss (`NL2SQLLoss`):
sel cross-entropy averaged over real headers, conn cross-entropy averaged over the batch, op
cross-entropy averaged over question tokens, col cross-entropy averaged over question tokens that belong
to a value.
"""
from bert4keras_ext.backend import keras, mask_value, ops
from bert4keras_ext.layers import ExtractToken, Loss
from bert4keras_ext.tasks.nl2sql.data import NO_OP, NUM_AGG, NUM_CONN, NUM_OP

__all__ = ['GatherPositions', 'ColumnPointer', 'NL2SQLLoss', 'nl2sql_loss', 'build_nl2sql_models', 'WarmupDecay']

register = keras.saving.register_keras_serializable(package='bert4keras_ext.nl2sql')


@register
class GatherPositions(keras.layers.Layer):
    """[x (b, n, d), positions (b, H) int] → x at those positions (b, H, d)."""

    def call(self, inputs):
        x, positions = inputs
        positions = ops.cast(positions, 'int32')
        return ops.take_along_axis(x, positions[:, :, None], axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        x_shape, p_shape = input_shape
        return (x_shape[0], p_shape[1], x_shape[2])


@register
class ColumnPointer(keras.layers.Layer):
    """Scores of every (token, header) pair: [x (b, n, d), h (b, H, d), positions (b, H)] → (b, n, H).

    score_ij = v · tanh(W_x x_i + W_h h_j + c); headers whose position is 0 (padding) get a large finite
    negative (safe in float16/bfloat16, no -inf arithmetic).
    """

    def __init__(self, units=256, kernel_initializer='glorot_uniform', **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        x_shape, h_shape, _ = input_shape
        self.token_dense = keras.layers.Dense(self.units, kernel_initializer=self.kernel_initializer,
                                              name='token_dense', dtype=self.dtype_policy)
        self.header_dense = keras.layers.Dense(self.units, use_bias=False, kernel_initializer=self.kernel_initializer,
                                               name='header_dense', dtype=self.dtype_policy)
        self.score_dense = keras.layers.Dense(1, kernel_initializer=self.kernel_initializer, name='score_dense',
                                              dtype=self.dtype_policy)
        self.token_dense.build(x_shape)
        self.header_dense.build(h_shape)
        self.score_dense.build(tuple(x_shape[:-1]) + (self.units,))
        self.built = True

    def call(self, inputs):
        x, h, positions = inputs
        scores = ops.tanh(self.token_dense(x)[:, :, None, :] + self.header_dense(h)[:, None, :, :])
        scores = self.score_dense(scores)[..., 0]
        valid = ops.greater(positions, 0)[:, None, :]
        return ops.where(valid, scores, ops.cast(mask_value(scores.dtype), scores.dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        x_shape, h_shape, _ = input_shape
        return (x_shape[0], x_shape[1], h_shape[1])

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def _masked_mean(values, weights):
    weights = ops.cast(weights, 'float32')
    return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1.0)


def nl2sql_loss(labels, logits, question_mask, header_positions):
    """The summed baseline loss.

    Args:
        labels: (sel (b, H), conn (b,) or (b, 1), op (b, n), col (b, n)) integer targets.
        logits: (conn (b, 3), sel (b, H, 7), op (b, n, 5), col (b, n, H)) unnormalised scores.
        question_mask: (b, n), 1 on question tokens.
        header_positions: (b, H), 0 on padded header slots.
    Returns:
        (total, (sel_loss, conn_loss, op_loss, col_loss)) scalars.
    """
    sel_true, conn_true, op_true, col_true = labels
    conn_logits, sel_logits, op_logits, col_logits = [ops.cast(t, 'float32') for t in logits]
    header_mask = ops.greater(header_positions, 0)
    question_mask = ops.cast(question_mask, 'float32')
    sel_ce = ops.sparse_categorical_crossentropy(ops.cast(sel_true, 'int32'), sel_logits, from_logits=True)
    sel_loss = _masked_mean(sel_ce, header_mask)
    conn_true = ops.reshape(ops.cast(conn_true, 'int32'), (-1,))
    conn_loss = ops.mean(ops.sparse_categorical_crossentropy(conn_true, conn_logits, from_logits=True))
    op_true = ops.cast(op_true, 'int32')
    op_ce = ops.sparse_categorical_crossentropy(op_true, op_logits, from_logits=True)
    op_loss = _masked_mean(op_ce, question_mask)
    col_ce = ops.sparse_categorical_crossentropy(ops.cast(col_true, 'int32'), col_logits, from_logits=True)
    value_mask = question_mask * ops.cast(ops.not_equal(op_true, NO_OP), 'float32')
    col_loss = _masked_mean(col_ce, value_mask)
    return sel_loss + conn_loss + op_loss + col_loss, (sel_loss, conn_loss, op_loss, col_loss)


@register
class NL2SQLLoss(Loss):
    """In-graph loss: inputs [sel, conn, op, col labels, question_mask, header_positions, conn, sel, op,
    col logits] → adds `nl2sql_loss`; returns the conn logits (output_axis=6)."""

    def __init__(self, output_axis=6, **kwargs):
        super().__init__(output_axis=output_axis, **kwargs)

    def compute_loss(self, inputs, mask=None):
        labels, (question_mask, header_positions), logits = inputs[:4], inputs[4:6], inputs[6:10]
        return nl2sql_loss(labels, logits, question_mask, header_positions)[0]


def build_nl2sql_models(config_path=None, checkpoint_path=None, pointer_units=256, head_dropout=0.0, **bert_kwargs):
    """Build the baseline on a BERT from a Google checkpoint.

    Args:
        config_path, checkpoint_path: as for `build_transformer_model` (checkpoint None = random BERT).
        pointer_units: width of the column pointer's additive attention (256 in the baseline).
        head_dropout: dropout on the encoder output before the heads (the baseline has none).
        **bert_kwargs: passed to `build_transformer_model` (e.g. dropout_rate, model='albert').
    Returns:
        (predict_model, train_model): predict_model maps [token_ids, segment_ids, header_positions] to
        [conn, sel, op, col] probabilities; train_model additionally takes [sel, conn, op, col labels,
        question_mask], outputs the conn logits and carries the loss (compile it without `loss=`).
    """
    from bert4keras_ext.models import build_transformer_model

    bert = build_transformer_model(config_path, checkpoint_path, return_keras_model=False, **bert_kwargs)
    initializer = bert.initializer
    token_ids, segment_ids = bert.model.inputs[:2]
    header_positions = keras.layers.Input(shape=(None,), dtype='int32', name='Input-Header-Position')
    x = bert.model.output
    if head_dropout:
        x = keras.layers.Dropout(head_dropout, name='NL2SQL-Dropout')(x)

    cls = ExtractToken(0, name='NL2SQL-CLS')(x)
    conn_logits = keras.layers.Dense(NUM_CONN, kernel_initializer=initializer, name='NL2SQL-Conn')(cls)
    headers = GatherPositions(name='NL2SQL-Headers')([x, header_positions])
    sel_logits = keras.layers.Dense(NUM_AGG, kernel_initializer=initializer, name='NL2SQL-Sel')(headers)
    op_logits = keras.layers.Dense(NUM_OP, kernel_initializer=initializer, name='NL2SQL-Op')(x)
    col_logits = ColumnPointer(pointer_units, kernel_initializer=initializer, name='NL2SQL-Column')(
        [x, headers, header_positions])
    logits = [conn_logits, sel_logits, op_logits, col_logits]

    probs = [keras.layers.Activation('softmax', dtype='float32', name='NL2SQL-%s-Proba' % name)(t)
             for name, t in zip(('Conn', 'Sel', 'Op', 'Column'), logits)]
    inputs = [token_ids, segment_ids, header_positions]
    predict_model = keras.Model(inputs, probs, name='nl2sql')

    sel_in = keras.layers.Input(shape=(None,), dtype='int32', name='Input-Sel')
    conn_in = keras.layers.Input(shape=(1,), dtype='int32', name='Input-Conn')
    op_in = keras.layers.Input(shape=(None,), dtype='int32', name='Input-Op')
    col_in = keras.layers.Input(shape=(None,), dtype='int32', name='Input-Column')
    question_mask = keras.layers.Input(shape=(None,), dtype='float32', name='Input-Question-Mask')
    output = NL2SQLLoss(name='NL2SQL-Loss')(
        [sel_in, conn_in, op_in, col_in, question_mask, header_positions] + logits)
    train_model = keras.Model(inputs + [sel_in, conn_in, op_in, col_in, question_mask], output, name='nl2sql_train')
    return predict_model, train_model


@register
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The baseline's schedule: linear warm-up 0 → `peak` over `warmup_steps`, then linear decay to
    `floor` over `decay_steps`, then constant `floor`."""

    def __init__(self, peak, warmup_steps, decay_steps, floor):
        self.peak, self.floor = float(peak), float(floor)
        self.warmup_steps, self.decay_steps = max(int(warmup_steps), 1), max(int(decay_steps), 1)

    def __call__(self, step):
        step = ops.cast(step, 'float32')
        warm = self.peak * step / self.warmup_steps
        progress = ops.minimum((step - self.warmup_steps) / self.decay_steps, 1.0)
        decayed = self.peak + (self.floor - self.peak) * progress
        return ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {'peak': self.peak, 'warmup_steps': self.warmup_steps, 'decay_steps': self.decay_steps,
                'floor': self.floor}
