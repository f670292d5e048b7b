#! -*- coding: utf-8 -*-
"""Sentiment classification with adversarial training on the token embeddings (FGM or gradient penalty).

bert4keras' task_iflytek_adversarial_training.py / task_iflytek_gradient_penalty.py on the sentiment
task: the same classifier is trained twice from the same checkpoint, without and with the hook, and
both accuracies are printed (kexue.fm/archives/7234).

    python examples/task_sentiment_adversarial_training.py            # tiny generated BERT + reviews
    python examples/task_sentiment_adversarial_training.py --data-dir ../shared/datasets/sentiment \\
        --checkpoint-dir chinese_L-12_H-768_A-12                        # the real thing
    python examples/task_sentiment_adversarial_training.py --method gradient_penalty

--data-dir holds sentiment.{train,valid,test}.data (`text<TAB>label`); --checkpoint-dir an unpacked
Google-format BERT release (bert_config.json, bert_model.ckpt.*, vocab.txt). Without --checkpoint-dir
a tiny random BERT is written for the run, so the figures show the mechanics, not BERT's accuracy.
"""
import argparse
import os
import tempfile
import time

import numpy as np

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.adversarial import adversarial_training  # noqa: E402
from bert4keras_ext.backend import keras  # noqa: E402
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import existing_dir, positive_float, positive_int, progress_verbose, use_first  # noqa: E402
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: E402,N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment  # noqa: E402
from bert4keras_ext.layers import ExtractToken  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.snippets import sequence_padding  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402


def encode(tokenizer, data, maxlen):
    """All of `data` as padded arrays, for one `predict` call per evaluation."""
    pairs = [tokenizer.encode(text, maxlen=maxlen) for text, _ in data]
    return [sequence_padding([t for t, _ in pairs], length=maxlen),
            sequence_padding([s for _, s in pairs], length=maxlen)], np.array([label for _, label in data])


def accuracy(model, x, y):
    return float((model.predict(x, batch_size=64, verbose=0).argmax(axis=1) == y).mean())


def load_task(args):
    """(train, valid, test, checkpoint paths, maxlen, defaults) from the arguments."""
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
    else:  # a tiny BERT in Google's format, written for this run
        vocab = build_vocab(text for text, _ in train + valid + test)
        paths = make_random_checkpoint(tempfile.mkdtemp(prefix='tiny_bert_'), vocab=vocab, seed=args.seed,
                                       hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                                       num_attention_heads=2, intermediate_size=2 * args.hidden_size,
                                       max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        learning_rate, epochs = args.learning_rate or 1e-3, args.epochs or 3
    return train, valid, test, paths, maxlen, learning_rate, epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--method', choices=['fgm', 'gradient_penalty'], default='fgm')
    parser.add_argument('--epsilon', type=positive_float, default=None,
                        help='perturbation size (fgm) or penalty weight (gradient_penalty). Defaults: bert4keras\' '
                             '0.5 and 1 for a real checkpoint; 0.05 and 1 for the tiny generated BERT, whose '
                             'embedding matrix is much smaller in norm')
    parser.add_argument('--epochs', type=positive_int, default=None, help='default 3')
    parser.add_argument('--batch-size', type=positive_int, default=32)
    parser.add_argument('--maxlen', type=positive_int, default=None, help='default 32 generated, 128 --data-dir')
    parser.add_argument('--num-train', type=positive_int, default=None,
                        help='training examples: generated (default 800), or a cap on --data-dir (default all)')
    parser.add_argument('--num-eval', type=positive_int, default=None,
                        help='valid/test examples each: generated (default 200), or a cap on --data-dir (default all)')
    parser.add_argument('--learning-rate', type=positive_float, default=None)
    parser.add_argument('--hidden-size', type=positive_int, default=64,
                        help='width of the generated tiny BERT (even: 2 attention heads)')
    parser.add_argument('--num-layers', type=positive_int, default=2, help='depth of the generated tiny BERT')
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
    epsilon = args.epsilon
    if epsilon is None:
        if args.method == 'fgm':
            epsilon = 0.5 if args.checkpoint_dir else 0.05
        else:
            epsilon = 1.0
    start = time.perf_counter()

    train, valid, test, paths, maxlen, learning_rate, epochs = load_task(args)
    tokenizer = Tokenizer(paths['vocab'], do_lower_case=True)
    train_generator = data_generator(train, tokenizer, maxlen, args.batch_size)
    valid_x, valid_y = encode(tokenizer, valid, maxlen)
    test_x, test_y = encode(tokenizer, test, maxlen)
    source = paths['checkpoint'] if args.checkpoint_dir else 'tiny generated BERT'
    print('%d train / %d valid / %d test examples, maxlen %d, %s' % (len(train), len(valid), len(test), maxlen, source))

    results = {}
    for hooked in (False, True):
        keras.utils.set_random_seed(args.seed)  # the same head initialisation and batch order for both runs
        bert = build_transformer_model(config_path=paths['config'], checkpoint_path=paths['checkpoint'],
                                       return_keras_model=False)
        output = ExtractToken(0, name='CLS-token')(bert.model.output)
        output = keras.layers.Dense(units=2, activation='softmax', kernel_initializer=bert.initializer)(output)
        model = keras.models.Model(bert.model.input, output)
        model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(learning_rate),
                      metrics=['sparse_categorical_accuracy'])
        model.optimizer.build(model.trainable_variables)  # built now, fit traces its step once instead of twice
        name = args.method if hooked else 'baseline'
        if hooked:  # one line turns it on, as in bert4keras
            adversarial_training(model, 'Embedding-Token', epsilon, method=args.method)
        best = {'val_acc': 0.0, 'test_acc': 0.0}
        for epoch in range(epochs):
            model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1, verbose=verbose)
            val_acc = accuracy(model, valid_x, valid_y)
            if val_acc >= best['val_acc']:
                best = {'val_acc': val_acc, 'test_acc': accuracy(model, test_x, test_y)}
            print('[%s] epoch %d: val_acc %.4f, best_val_acc %.4f' % (name, epoch + 1, val_acc, best['val_acc']))
        results[name] = best

    hooked = results[args.method]
    print('without adversarial training: best val_acc %.4f, test_acc %.4f' % (
        results['baseline']['val_acc'], results['baseline']['test_acc']))
    print('with %s (epsilon=%g):%s best val_acc %.4f, test_acc %.4f' % (
        args.method, epsilon, ' ' * max(0, 10 - len(args.method)), hooked['val_acc'], hooked['test_acc']))
    results['seconds'] = time.perf_counter() - start
    print('done in %.1f s' % results['seconds'])
    return results


if __name__ == '__main__':
    main()
