#! -*- coding: utf-8 -*-
"""Chinese NL2SQL with the BERT baseline (kexue.fm/archives/6771), evaluated by executing SQL in SQLite.

    python examples/task_nl2sql.py                      # generated tables + questions, tiny random BERT
    python examples/task_nl2sql.py --data-dir DATA --checkpoint-dir chinese_wwm_ext_L-12_H-768_A-12

DATA holds the TianChi files train.json, train.tables.json, val.json, val.tables.json; the checkpoint
directory holds bert_config.json, bert_model.ckpt.* and vocab.txt. See docs/nl2sql.md.

Steps: 1. data (validated, bad records reported with file:line) → 2. checkpoint (a tiny random one whose
vocab covers the data when none is given) → 3. char-level encoding with value alignment → 4. BERT + heads,
trained with the summed loss → 5. decode every validation question to a SQL dict, snap values to table
cells, run predicted and gold SQL in SQLite → logical-form and execution accuracy.

With --checkpoint-dir the training settings are the baseline's (15 epochs, batch 32, 1-epoch warm-up to 5e-5,
decay to 1e-5 over the next epoch). Without it the tiny random BERT trains from scratch with settings tuned for
a one-minute CPU run (10 epochs, batch 16, peak LR 3e-3, no dropout, sinusoidal position embeddings, headers
in segment 1); every setting has a flag.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

from bert4keras_ext.console import (
    existing_dir, int_at_least, is_interactive, non_negative_int, positive_float, positive_int, progress_verbose,
    quiet_tensorflow, use_first,
)

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.tasks.nl2sql import (  # noqa: E402
    NL2SQLEncoder, SQLiteTables, evaluate_sql, load_split, render_sql,
)
from bert4keras_ext.tasks.nl2sql.synthetic import generate_dataset  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='TianChi NL2SQL folder (train.json, train.tables.json, val.json, '
                                           'val.tables.json); default: generated data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='Google-format BERT folder (bert_config.json, bert_model.ckpt, '
                                                 'vocab.txt); default: a tiny random BERT')
    parser.add_argument('--work-dir', help='where the tiny checkpoint goes (default: a new temp folder)')
    parser.add_argument('--epochs', type=positive_int, help='training epochs (default 15 with --checkpoint-dir / 10 tiny)')
    parser.add_argument('--batch-size', type=positive_int, help='default 32 with --checkpoint-dir / 16 tiny')
    parser.add_argument('--maxlen', type=int_at_least(8), default=160, help='longer training sequences are skipped (160)')
    parser.add_argument('--learning-rate', type=positive_float, help='peak LR after the 1-epoch warm-up (5e-5 with '
                                                            '--checkpoint-dir / 3e-3 tiny)')
    parser.add_argument('--min-learning-rate', type=positive_float, help='LR reached after the decay (1e-5 with '
                                                                '--checkpoint-dir / 3e-4 tiny)')
    parser.add_argument('--decay-epochs', type=positive_int, help='epochs of linear decay after the warm-up (1 with '
                                                         '--checkpoint-dir, as the baseline / all remaining tiny)')
    parser.add_argument('--pointer-units', type=positive_int, help='column pointer width (256 with --checkpoint-dir / 64 tiny)')
    parser.add_argument('--header-segment', type=int, choices=(0, 1),
                        help='segment id of the header part (0 with --checkpoint-dir, as the baseline / 1 tiny)')
    parser.add_argument('--train-size', type=positive_int, default=1200, help='generated training questions')
    parser.add_argument('--valid-size', type=positive_int, default=300, help='generated validation questions')
    parser.add_argument('--tables-per-theme', type=positive_int, default=4, help='generated tables of each of the 5 kinds')
    parser.add_argument('--max-train', type=positive_int, help='cap on training questions read from --data-dir (default all)')
    parser.add_argument('--max-valid', type=positive_int,
                        help='cap on validation questions read from --data-dir (default all)')
    parser.add_argument('--hidden-size', type=positive_int, default=64, help='tiny random BERT width (without --checkpoint-dir)')
    parser.add_argument('--num-layers', type=positive_int, default=2, help='tiny random BERT depth (without --checkpoint-dir)')
    parser.add_argument('--no-type-markers', action='store_true', help='do not mark column types in the input')
    parser.add_argument('--skip-bad', action='store_true', help='skip malformed data records (listed) instead of failing')
    parser.add_argument('--predictions', help='write validation predictions (JSON lines) to this file')
    parser.add_argument('--show', type=non_negative_int, default=3, help='print this many decoded validation questions')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)
    if not args.data_dir and (args.max_train or args.max_valid):
        parser.error('--max-train / --max-valid cap the questions read from --data-dir; for generated data use '
                     '--train-size / --valid-size')
    if args.predictions and not os.path.isdir(os.path.dirname(os.path.abspath(args.predictions))):
        parser.error('--predictions %s: its folder does not exist' % args.predictions)
    if args.checkpoint_dir and not os.path.isfile(os.path.join(args.checkpoint_dir, 'bert_config.json')):
        parser.error('--checkpoint-dir %s has no bert_config.json' % args.checkpoint_dir)
    return args


def load_data(args):
    """(train examples, valid examples, {table id: Table}) from --data-dir or the generator."""
    if not args.data_dir:
        train, valid, tables = generate_dataset(args.train_size, args.valid_size, args.tables_per_theme,
                                                seed=args.seed)
        return train, valid, tables, 'generated tables and template questions'
    train, train_tables, skipped = load_split(args.data_dir, 'train', skip_bad=args.skip_bad)
    valid, valid_tables, skipped_valid = load_split(args.data_dir, 'val', skip_bad=args.skip_bad)
    for message in skipped + skipped_valid:
        print('      skipped %s' % message)
    overlap = set(train_tables) & set(valid_tables)
    if any(train_tables[t].header != valid_tables[t].header for t in overlap):
        raise ValueError('train and val tables share ids with different headers')
    tables = dict(train_tables, **valid_tables)
    train = use_first(train, args.max_train, 'training questions', '--max-train')
    valid = use_first(valid, args.max_valid, 'validation questions', '--max-valid')
    return train, valid, tables, 'TianChi NL2SQL data from %s' % args.data_dir


def prepare_checkpoint(args, train, valid, tables, work_dir):
    """{'config', 'checkpoint', 'vocab'} of the BERT to fine-tune."""
    if args.checkpoint_dir:
        from bert4keras_ext.checkpoints import resolve_checkpoint_path
        return {'config': os.path.join(args.checkpoint_dir, 'bert_config.json'),
                'checkpoint': resolve_checkpoint_path(args.checkpoint_dir),
                'vocab': os.path.join(args.checkpoint_dir, 'vocab.txt')}
    from bert4keras_ext.checkpoints import make_random_checkpoint
    from bert4keras_ext.demo import build_vocab
    texts = [e.question for e in train + valid]
    for table in tables.values():
        texts.extend(table.header)
        texts.extend(cell for j in range(table.num_columns) for cell in table.text_cells(j))
    paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=build_vocab(texts), seed=args.seed,
                                   hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                                   num_attention_heads=max(args.hidden_size // 16, 1),
                                   intermediate_size=2 * args.hidden_size,
                                   max_position_embeddings=max(args.maxlen, 128))
    with_sinusoidal_positions(paths['checkpoint'])
    return paths


def with_sinusoidal_positions(prefix, scale=0.05):
    """Rewrite a random checkpoint's position embeddings as (scaled) sinusoids.

    A random BERT has no notion of word order; sinusoids make "the words just before this one" easy to
    attend to, which the operator tags and the column pointer need, so a one-minute run learns more.
    """
    import tensorflow as tf

    from bert4keras_ext.backend import sinusoidal_embeddings
    from bert4keras_ext.checkpoints import write_checkpoint
    reader = tf.train.load_checkpoint(prefix)
    arrays = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    del reader
    name = 'bert/embeddings/position_embeddings'
    length, dim = arrays[name].shape
    table = np.asarray(sinusoidal_embeddings(np.arange(length, dtype='float32'), dim))
    arrays[name] = (scale * table).astype(arrays[name].dtype)
    write_checkpoint(prefix, arrays)


def main(argv=None):
    """Run the example; returns a dict with the accuracies, losses and timings it printed."""
    from bert4keras_ext.backend import keras
    from bert4keras_ext.checkpoints import load_config
    from bert4keras_ext.optimizers import Adam
    from bert4keras_ext.tasks.nl2sql.model import WarmupDecay, build_nl2sql_models
    from bert4keras_ext.tasks.nl2sql.pipeline import (
        NL2SQLBatches, dataset_loss, encode_examples, predict_sql, training_dataset,
    )

    args = parse_args(argv)
    # a pretrained BERT is fine-tuned with the baseline's settings; the tiny random one trains from scratch
    pretrained = bool(args.checkpoint_dir)
    epochs = args.epochs or (15 if pretrained else 10)
    batch_size = args.batch_size or (32 if pretrained else 16)
    peak_lr = args.learning_rate or (5e-5 if pretrained else 3e-3)
    floor_lr = args.min_learning_rate or (1e-5 if pretrained else 3e-4)
    decay_epochs = args.decay_epochs or (1 if pretrained else max(epochs - 1, 1))
    pointer_units = args.pointer_units or (256 if pretrained else 64)
    header_segment = args.header_segment if args.header_segment is not None else (0 if pretrained else 1)
    verbose = 0 if args.quiet else progress_verbose(1)
    keras.utils.set_random_seed(args.seed)
    start_all = time.perf_counter()
    work_dir = None
    if not pretrained:  # the tiny random checkpoint is written here
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='nl2sql_')
        print('work dir: %s%s' % (work_dir, '' if args.work_dir else ' (a new temporary folder; --work-dir chooses another)'))

    train, valid, tables, source = load_data(args)
    print('[1/5] data: %s — %d train / %d valid questions over %d tables' % (source, len(train), len(valid), len(tables)))

    paths = prepare_checkpoint(args, train, valid, tables, work_dir)
    print('[2/5] checkpoint: %s' % paths['checkpoint'])

    encoder = NL2SQLEncoder(paths['vocab'], mark_types=not args.no_type_markers, header_segment=header_segment)
    items, stats = encode_examples(encoder, train, tables, maxlen=args.maxlen)
    print('[3/5] encoded %(encoded)d training questions (%(too_long)d longer than maxlen skipped); condition values '
          'found in the question: %(aligned_values)d, not found: %(unaligned_values)d' % stats)
    if not items:
        raise ValueError('no training question fits maxlen=%d' % args.maxlen)

    # the tiny random BERT trains from scratch for a minute and has no use for dropout
    bert_options = {} if pretrained else {'dropout_rate': 0.0, 'attention_dropout_rate': 0.0}
    predict_model, train_model = build_nl2sql_models(paths['config'], paths['checkpoint'], pointer_units=pointer_units,
                                                     **bert_options)
    steps = -(-len(items) // batch_size)
    schedule = WarmupDecay(peak_lr, warmup_steps=steps, decay_steps=decay_epochs * steps, floor=floor_lr)
    train_model.compile(optimizer=Adam(schedule), jit_compile=False)
    probe = [items[i] for i in np.random.RandomState(args.seed).permutation(len(items))[:256]]
    loss_before = dataset_loss(train_model, probe)
    print('[4/5] training %d epochs × %d steps (batch %d; lr: 1-epoch warm-up to %g, %d-epoch decay to %g); '
          'loss before: %.4f' % (epochs, steps, batch_size, peak_lr, decay_epochs, floor_lr, loss_before))
    start = time.perf_counter()
    history = train_model.fit(training_dataset(NL2SQLBatches(items, batch_size)), steps_per_epoch=steps,
                              epochs=epochs, verbose=verbose, shuffle=False)  # the batches are already shuffled
    train_seconds = time.perf_counter() - start
    loss_after = dataset_loss(train_model, probe)
    print('      loss after: %.4f (%.1f s)' % (loss_after, train_seconds))

    max_length = load_config(paths['config']).get('max_position_embeddings')
    predictions = predict_sql(predict_model, encoder, valid, tables, batch_size=64, max_length=max_length,
                              progress=not args.quiet and is_interactive())
    with SQLiteTables(tables) as db:
        metrics = evaluate_sql(predictions, valid, db)
        for example, pred in list(zip(valid, predictions))[:args.show]:
            table = tables[example.table_id]
            print('      Q: %s\n         gold: %s\n         pred: %s' % (
                example.question, render_sql(table, example.sql),
                render_sql(table, pred) if pred is not None else '(too long)'))
    print('[5/5] validation (%d questions): logical-form accuracy %.2f%%, execution accuracy %.2f%%, score %.2f%% '
          '(sel/agg %.2f%%, conditions %.2f%%, connector %.2f%%)' % (
              metrics['count'], 100 * metrics['logical_form_accuracy'], 100 * metrics['execution_accuracy'],
              100 * metrics['score'], 100 * metrics['sel_agg_accuracy'], 100 * metrics['conds_accuracy'],
              100 * metrics['conn_accuracy']))
    if args.predictions:
        with open(args.predictions, 'w', encoding='utf-8') as f:
            for example, pred in zip(valid, predictions):
                f.write(json.dumps({'table_id': example.table_id, 'question': example.question, 'sql': pred},
                                   ensure_ascii=False) + '\n')
        print('      wrote the validation predictions to %s' % args.predictions)
    total = time.perf_counter() - start_all
    print('done in %.1f s' % total)
    return dict(metrics, loss_before=loss_before, loss_after=loss_after, epoch_losses=history.history['loss'],
                train_seconds=train_seconds, total_seconds=total, train_questions=len(items),
                valid_questions=len(valid), work_dir=work_dir)


if __name__ == '__main__':
    main()
