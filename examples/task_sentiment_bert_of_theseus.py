#! -*- coding: utf-8 -*-
"""Compressing a fine-tuned BERT with BERT-of-Theseus, on the sentiment task.

bert4keras' task_iflytek_bert_of_theseus.py on Keras 3 (kexue.fm/archives/7575):
1. fine-tune the predecessor (default 6 layers) with a [CLS] classifier;
2. Theseus training: the successor (default 3 layers, initialised from the checkpoint's first
   layers) replaces predecessor modules of 2 layers at random, per batch, with a replace rate rising
   linearly from 0.5 to 1 (`ReplaceRateScheduler`); the predecessor and the classifier are frozen;
3. fine-tune the successor alone, with the classifier.
A same-size baseline (the checkpoint's first layers fine-tuned directly) is trained for comparison;
predecessor, successor and baseline accuracies are printed.

    python examples/task_sentiment_bert_of_theseus.py              # tiny generated BERT + reviews
    python examples/task_sentiment_bert_of_theseus.py --data-dir ../shared/datasets/sentiment \\
        --checkpoint-dir chinese_L-12_H-768_A-12 --predecessor-layers 12 --successor-layers 3

--data-dir holds sentiment.{train,valid,test}.data (`text<TAB>label`); --checkpoint-dir an unpacked
Google-format BERT release. Without --checkpoint-dir a tiny random 6-layer BERT is written for the run.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.backend import keras  # noqa: E402
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import existing_dir, positive_float, positive_int, progress_verbose, use_first  # noqa: E402
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: E402,N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment  # noqa: E402
from bert4keras_ext.layers import ExtractToken  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.snippets import sequence_padding  # noqa: E402
from bert4keras_ext.theseus import ReplaceRateScheduler, bert_of_theseus  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402


def encode(tokenizer, data, maxlen):
    pairs = [tokenizer.encode(text, maxlen=maxlen) for text, _ in data]
    return [sequence_padding([t for t, _ in pairs], length=maxlen),
            sequence_padding([s for _, s in pairs], length=maxlen)], np.array([label for _, label in data])


def parameter_count(model, trainable=True):
    return int(sum(np.prod(w.shape) for w in (model.trainable_weights if trainable else model.weights)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--predecessor-layers', type=positive_int, default=None,
                        help="predecessor depth (default: the checkpoint's, 6 for the generated one)")
    parser.add_argument('--successor-layers', type=positive_int, default=3, help='must divide the predecessor depth')
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='epochs of each of the three phases (default 3 real, 2 tiny)')
    parser.add_argument('--batch-size', type=positive_int, default=32)
    parser.add_argument('--maxlen', type=positive_int, default=None, help='default 32 generated, 128 --data-dir')
    parser.add_argument('--num-train', type=positive_int, default=None,
                        help='training examples: generated (default 800), or a cap on --data-dir (default all)')
    parser.add_argument('--num-eval', type=positive_int, default=None,
                        help='valid/test examples each: generated (default 200), or a cap on --data-dir (default all)')
    parser.add_argument('--learning-rate', type=positive_float, default=None)
    parser.add_argument('--hidden-size', type=positive_int, default=64,
                        help='width of the generated tiny BERT (even: 2 attention heads)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, choices=(0, 1, 2), default=0,
                        help='Keras fit verbosity; 1 is a progress bar on a terminal, one line per epoch otherwise')
    args = parser.parse_args(argv)
    if args.data_dir:
        missing = [n for n in ('sentiment.train.data', 'sentiment.valid.data', 'sentiment.test.data')
                   if not os.path.isfile(os.path.join(args.data_dir, n))]
        if missing:
            parser.error('--data-dir %s has no %s' % (args.data_dir, ', '.join(missing)))
    verbose = progress_verbose(args.verbose)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)

    if args.data_dir:
        train = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.train.data')), args.num_train,
                          'training examples', '--num-train')
        valid = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.valid.data')), args.num_eval,
                          'validation examples', '--num-eval')
        test = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.test.data')), args.num_eval,
                         'test examples', '--num-eval')
        maxlen = args.maxlen or 128
    else:
        train = generate_reviews(args.num_train or 800, seed=args.seed)
        valid = generate_reviews(args.num_eval or 200, seed=args.seed + 1)
        test = generate_reviews(args.num_eval or 200, seed=args.seed + 2)
        maxlen = args.maxlen or 32
    if args.checkpoint_dir:
        paths = find_checkpoint_files(args.checkpoint_dir)
        learning_rate, epochs = args.learning_rate or 2e-5, args.epochs or 3
    else:
        vocab = build_vocab(text for text, _ in train + valid + test)
        paths = make_random_checkpoint(tempfile.mkdtemp(prefix='tiny_bert_'), vocab=vocab, seed=args.seed,
                                       hidden_size=args.hidden_size, num_attention_heads=2,
                                       num_hidden_layers=args.predecessor_layers or 6,
                                       intermediate_size=2 * args.hidden_size, max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        learning_rate, epochs = args.learning_rate or 1e-3, args.epochs or 2
    tokenizer = Tokenizer(paths['vocab'], do_lower_case=True)
    train_generator = data_generator(train, tokenizer, maxlen, args.batch_size)
    valid_x, valid_y = encode(tokenizer, valid, maxlen)
    test_x, test_y = encode(tokenizer, test, maxlen)

    def evaluate(model):
        return {split: float((model.predict(x, batch_size=64, verbose=0).argmax(1) == y).mean())
                for split, (x, y) in (('val_acc', (valid_x, valid_y)), ('test_acc', (test_x, test_y)))}

    def train_model(model, name, callbacks=(), evaluated=None):
        """Fit `model`, then score `evaluated` (default: `model` itself) on valid and test."""
        model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(learning_rate),
                      metrics=['sparse_categorical_accuracy'])
        model.optimizer.build(model.trainable_variables)  # built now, fit traces its step once instead of twice
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=epochs,
                  callbacks=list(callbacks), verbose=verbose)
        scores = evaluate(evaluated or model)
        print('%-34s val_acc %.4f, test_acc %.4f  (%d trainable parameters)' % (
            name, scores['val_acc'], scores['test_acc'], parameter_count(model)))
        return scores

    # the models: predecessor (all layers), successor and baseline (first layers), and a shared classifier
    options = {} if args.predecessor_layers is None else {'num_hidden_layers': args.predecessor_layers}
    predecessor = build_transformer_model(paths['config'], paths['checkpoint'], return_keras_model=False, **options)
    successor = build_transformer_model(paths['config'], paths['checkpoint'], return_keras_model=False,
                                        num_hidden_layers=args.successor_layers, prefix='Successor-')
    baseline = build_transformer_model(paths['config'], paths['checkpoint'], return_keras_model=False,
                                       num_hidden_layers=args.successor_layers, prefix='Baseline-')
    if predecessor.num_hidden_layers % successor.num_hidden_layers:
        parser.error('--successor-layers %d does not divide the predecessor depth %d'
                     % (successor.num_hidden_layers, predecessor.num_hidden_layers))
    print('%d train / %d valid / %d test examples, maxlen %d; predecessor %d layers -> successor %d layers' % (
        len(train), len(valid), len(test), maxlen, predecessor.num_hidden_layers, successor.num_hidden_layers))

    def classifier_head(name):
        """A head on the [CLS] vector, shared by the models that use it."""
        x_in = keras.layers.Input(shape=(predecessor.hidden_size,))
        x = keras.layers.Dense(units=2, activation='softmax', kernel_initializer=predecessor.initializer)(x_in)
        return keras.Model(x_in, x, name=name)

    def with_head(inputs, sequence_output, head):
        return keras.Model(inputs, head(ExtractToken(0)(sequence_output)))

    classifier = classifier_head('Classifier')
    predecessor_model = with_head(predecessor.inputs, predecessor.model.output, classifier)
    successor_model = with_head(successor.inputs, successor.model.output, classifier)
    baseline_model = with_head(baseline.inputs, baseline.model.output, classifier_head('Baseline-Classifier'))

    results = {}
    results['predecessor'] = train_model(predecessor_model, '1. predecessor (fine-tuned):')
    theseus = bert_of_theseus(predecessor, successor)  # freezes the predecessor
    classifier.trainable = False
    theseus_model = with_head(theseus.inputs, theseus.output, classifier)
    # at inference the Theseus model *is* the successor, so score the successor's own (smaller) model
    results['theseus'] = train_model(theseus_model, '2. Theseus training (successor):',
                                     callbacks=[ReplaceRateScheduler(start=0.5, end=1.0)], evaluated=successor_model)
    classifier.trainable = True
    results['successor'] = train_model(successor_model, '3. successor (fine-tuned alone):')
    results['baseline'] = train_model(baseline_model, 'baseline (first layers fine-tuned):')
    results['parameters'] = {'predecessor': parameter_count(predecessor.model, trainable=False),
                             'successor': parameter_count(successor.model, trainable=False)}
    print('predecessor %.4f | successor %.4f | same-size baseline %.4f  (test accuracy)' % (
        results['predecessor']['test_acc'], results['successor']['test_acc'], results['baseline']['test_acc']))
    results['seconds'] = time.perf_counter() - start
    print('done in %.1f s' % results['seconds'])
    return results


if __name__ == '__main__':
    main()
