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

from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.tokenizers import Tokenizer


def evaluate(generator, model):
    right, total = 0, 0
    for x_true, y_true in generator:
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        right += int((y_pred == y_true[:, 0]).sum())
        total += len(y_true)
    return right / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', help='unpacked Google-format ALBERT release')
    parser.add_argument('--unshared', action='store_true', help="model='albert_unshared'")
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--maxlen', type=int, default=None)
    parser.add_argument('--num-train', type=int, default=None, help='cap on training examples')
    parser.add_argument('--learning-rate', type=float, default=None)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, default=1)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()

    if args.data_dir:
        train = load_sentiment(os.path.join(args.data_dir, 'sentiment.train.data'), limit=args.num_train)
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
        model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1, verbose=args.verbose)
        val_acc = evaluate(valid_generator, model)
        if val_acc >= best:
            best = val_acc
            results['test_acc'] = evaluate(test_generator, model)
        print('epoch %d: val_acc %.4f, best_val_acc %.4f' % (epoch + 1, val_acc, best))
    results.update(best_val_acc=best, seconds=time.perf_counter() - start,
                   trainable_params=int(sum(np.prod(w.shape) for w in model.trainable_weights)))
    print('test_acc (at best val): %.4f; %d trainable parameters; %.1f s'
          % (results['test_acc'], results['trainable_params'], results['seconds']))
    return results


if __name__ == '__main__':
    main()
