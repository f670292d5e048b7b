#! -*- coding: utf-8 -*-
"""Sentiment classification by fine-tuning ALBERT (bert4keras' task_sentiment_albert.py, on Keras 3).

    python examples/task_sentiment_albert.py                 # tiny generated ALBERT + generated reviews
    python examples/task_sentiment_albert.py --data-dir ../shared/datasets/sentiment \\
        --checkpoint-dir albert_small_zh_google              # the real thing
    python examples/task_sentiment_albert.py --unshared      # model='albert_unshared' (per-layer copies)

--data-dir holds sentiment.{train,valid,test}.data (`text<TAB>label`); --checkpoint-dir an unpacked
Google-format ALBERT release (albert_config*.json, albert_model.ckpt.*, vocab.txt), e.g. the manifest's
albert_tiny_google_zh / albert_small_google_zh (`python -m bert4keras_ext checkpoints download ...`).
Written the bert4keras way (a DataGenerator subclass — demo.SentimentGenerator —, forfit, Lambda on [CLS]) to show the port.
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
from bert4keras_ext.console import (  # noqa: E402
    existing_dir, positive_float, positive_int, progress, progress_verbose, use_first,
)
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: E402,N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402


def evaluate(generator, model, desc='evaluating'):
    right, total = 0, 0
    for x_true, y_true in progress(generator, desc=desc, leave=False):
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        right += int((y_pred == y_true[:, 0]).sum())
        total += len(y_true)
    return right / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format ALBERT release')
    parser.add_argument('--unshared', action='store_true', help="model='albert_unshared'")
    parser.add_argument('--epochs', type=positive_int, default=None, help='default 3 tiny, 10 with --checkpoint-dir')
    parser.add_argument('--batch-size', type=positive_int, default=32)
    parser.add_argument('--maxlen', type=positive_int, default=None, help='default 32 generated, 128 --data-dir')
    parser.add_argument('--num-train', type=positive_int, default=None,
                        help='training examples: cap on those read from --data-dir (default all), '
                             'or how many to generate (default 1200)')
    parser.add_argument('--learning-rate', type=positive_float, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, choices=(0, 1, 2), default=1,
                        help='Keras fit verbosity; 1 is a progress bar on a terminal, one line per epoch otherwise')
    args = parser.parse_args(argv)
    if args.data_dir:
        missing = [n for n in ('sentiment.train.data', 'sentiment.valid.data', 'sentiment.test.data')
                   if not os.path.isfile(os.path.join(args.data_dir, n))]
        if missing:
            parser.error('--data-dir %s has no %s' % (args.data_dir, ', '.join(missing)))
    verbose = progress_verbose(args.verbose)
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()

    if args.data_dir:
        train = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.train.data')), args.num_train,
                          'training examples', '--num-train')
        valid = load_sentiment(os.path.join(args.data_dir, 'sentiment.valid.data'))
        test = load_sentiment(os.path.join(args.data_dir, 'sentiment.test.data'))
        maxlen = args.maxlen or 128
    else:
        train = generate_reviews(args.num_train or 1200, seed=args.seed)
        valid, test = generate_reviews(300, seed=args.seed + 1), generate_reviews(300, seed=args.seed + 2)
        maxlen = args.maxlen or 32

    if args.checkpoint_dir:
        paths = find_checkpoint_files(args.checkpoint_dir)
        learning_rate, epochs = args.learning_rate or 1e-4, args.epochs or 10
    else:  # a tiny ALBERT in Google's format, written for this run
        vocab = build_vocab(text for text, _ in train + valid + test)
        paths = make_random_checkpoint(tempfile.mkdtemp(prefix='tiny_albert_'), model='albert', vocab=vocab,
                                       seed=args.seed, hidden_size=128, embedding_size=64, num_hidden_layers=4,
                                       num_attention_heads=4, intermediate_size=256,
                                       max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random ALBERT checkpoint to %s' % paths['dir'])
        learning_rate, epochs = args.learning_rate or 5e-4, args.epochs or 3
    tokenizer = Tokenizer(paths['vocab'], do_lower_case=True)

    albert = build_transformer_model(config_path=paths['config'], checkpoint_path=paths['checkpoint'],
                                     model='albert_unshared' if args.unshared else 'albert',
                                     return_keras_model=False)
    output = keras.layers.Lambda(lambda x: x[:, 0], name='CLS-token')(albert.model.output)
    output = keras.layers.Dense(units=2, activation='softmax', kernel_initializer=albert.initializer)(output)
    model = keras.models.Model(albert.model.input, output)
    model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(learning_rate),
                  metrics=['accuracy'])

    train_generator = data_generator(train, tokenizer, maxlen, args.batch_size)
    valid_generator = data_generator(valid, tokenizer, maxlen, args.batch_size)
    test_generator = data_generator(test, tokenizer, maxlen, args.batch_size)
    best, results = 0.0, {}
    for epoch in range(epochs):
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1, verbose=verbose)
        val_acc = evaluate(valid_generator, model, 'validation')
        if val_acc >= best:
            best = val_acc
            results['test_acc'] = evaluate(test_generator, model, 'test')
        print('epoch %d: val_acc %.4f, best_val_acc %.4f' % (epoch + 1, val_acc, best))
    results.update(best_val_acc=best, seconds=time.perf_counter() - start,
                   trainable_params=int(sum(np.prod(w.shape) for w in model.trainable_weights)))
    print('test_acc (at best val): %.4f; %d trainable parameters; %.1f s'
          % (results['test_acc'], results['trainable_params'], results['seconds']))
    return results


if __name__ == '__main__':
    main()
