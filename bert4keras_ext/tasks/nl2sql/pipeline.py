"""Batching, prediction and evaluation around the NL2SQL models (the glue the example script uses).

    encoded, stats = encode_examples(encoder, examples, tables, maxlen=160)      # training items
    dataset = training_dataset(NL2SQLBatches(encoded, batch_size=32))              # endless tf.data
    train_model.fit(dataset, steps_per_epoch=..., epochs=...)
    predictions = predict_sql(predict_model, encoder, valid_examples, tables)      # SQL dicts / None
    metrics = evaluate_sql(predictions, valid_examples, SQLiteTables(tables))
"""
import numpy as np

from bert4keras_ext.snippets import DataGenerator, sequence_padding
from bert4keras_ext.tasks.nl2sql.data import NO_OP, NOT_SELECTED
from bert4keras_ext.tasks.nl2sql.decoding import decode_sql

__all__ = ['encode_examples', 'pad_inputs', 'pad_training_batch', 'NL2SQLBatches', 'training_dataset',
           'predict_sql', 'dataset_loss']


def encode_examples(encoder, examples, tables, maxlen=None):
    """Encode labelled examples for training.

    Returns:
        (items, stats): items are dicts with the encoding and labels; examples whose sequence is longer
        than `maxlen` are skipped (as in the baseline). stats = {'encoded', 'too_long', 'aligned_values',
        'unaligned_values'}.
    """
    items, stats = [], {'encoded': 0, 'too_long': 0, 'aligned_values': 0, 'unaligned_values': 0}
    for example in examples:
        table = tables[example.table_id]
        encoded = encoder.encode(example.question, table)
        if maxlen is not None and len(encoded['token_ids']) > maxlen:
            stats['too_long'] += 1
            continue
        labels = encoder.labels(example.question, example.sql, table, len(encoded['token_ids']))
        stats['aligned_values'] += labels['aligned']
        stats['unaligned_values'] += labels['unaligned']
        items.append(dict(encoded, **labels))
        stats['encoded'] += 1
    return items, stats


def pad_inputs(items, multiple=8):
    """[token_ids (b, n), segment_ids (b, n), header_positions (b, H)] int32 arrays of encoded items;
    n is rounded up to `multiple` so a compiled function sees few distinct shapes."""
    token_ids = sequence_padding([i['token_ids'] for i in items], multiple=multiple, dtype='int32')
    segment_ids = sequence_padding([i['segment_ids'] for i in items], length=token_ids.shape[1], dtype='int32')
    header_positions = sequence_padding([i['header_positions'] for i in items], dtype='int32')
    return [token_ids, segment_ids, header_positions]


def pad_training_batch(items, multiple=8):
    """The train model's inputs: pad_inputs + [sel (b, H), conn (b, 1), op (b, n), col (b, n),
    question_mask (b, n)]."""
    token_ids, segment_ids, header_positions = pad_inputs(items, multiple)
    n = token_ids.shape[1]
    sel = sequence_padding([i['sel'] for i in items], value=NOT_SELECTED, dtype='int32')
    conn = np.array([[i['conn']] for i in items], dtype='int32')
    op = sequence_padding([i['op'] for i in items], length=n, value=NO_OP, dtype='int32')
    col = sequence_padding([i['col'] for i in items], length=n, dtype='int32')
    question_mask = np.zeros((len(items), n), dtype='float32')
    for k, item in enumerate(items):
        question_mask[k, 1:item['question_length'] + 1] = 1.0
    return [token_ids, segment_ids, header_positions, sel, conn, op, col, question_mask]


class NL2SQLBatches(DataGenerator):
    """Training batches (tuples of the train model's 8 inputs) over encoded items."""

    def __iter__(self, random=False):
        batch = []
        for is_end, item in self.sample(random):
            batch.append(item)
            if len(batch) == self.batch_size or is_end:
                yield tuple(pad_training_batch(batch)), None
                batch = []


def training_dataset(generator):
    """An endless, shuffled tf.data.Dataset of `generator`'s batches with every length dynamic."""
    import tensorflow as tf

    specs = (tf.TensorSpec((None, None), tf.int32),) * 3 + (
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, 1), tf.int32),
        tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.int32),
        tf.TensorSpec((None, None), tf.float32))

    def batches():
        for batch in generator.batches(random=True):
            yield batch

    return tf.data.Dataset.from_generator(batches, output_signature=(specs,)).prefetch(2)


def dataset_loss(train_model, items, batch_size=64):
    """Mean training loss of `train_model` over `items` (inference mode, no dropout), batch-weighted."""
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        loss = train_model.test_on_batch(pad_training_batch(batch), return_dict=True)['loss']
        total += float(loss) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def predict_sql(predict_model, encoder, examples, tables, batch_size=32, max_length=None, snap_values=True,
                progress=False):
    """Predict the SQL dict of every example (None when its sequence exceeds `max_length`).

    Examples are batched in order of length (less padding) and returned in their original order.
    """
    predictions = [None] * len(examples)
    encoded = []
    for k, example in enumerate(examples):
        item = encoder.encode(example.question, tables[example.table_id])
        if max_length is None or len(item['token_ids']) <= max_length:
            encoded.append((k, item))
    encoded.sort(key=lambda pair: len(pair[1]['token_ids']))
    batches = range(0, len(encoded), batch_size)
    if progress:
        from tqdm import tqdm
        batches = tqdm(batches, desc='predicting', unit='batch', leave=False)
    for start in batches:
        chunk = encoded[start:start + batch_size]
        conn, sel, op, col = predict_model.predict_on_batch(pad_inputs([item for _, item in chunk]))
        for row, (k, _) in enumerate(chunk):
            example = examples[k]
            predictions[k] = decode_sql(example.question, tables[example.table_id], conn[row], sel[row], op[row],
                                        col[row], snap_values=snap_values)
    return predictions
