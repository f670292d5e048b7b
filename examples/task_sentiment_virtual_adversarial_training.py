#! -*- coding: utf-8 -*-
"""Semi-supervised sentiment classification with virtual adversarial training (VAT).

bert4keras' task_sentiment_virtual_adversarial_training.py on Keras 3: a few labeled reviews train
`model` as usual; after each of its batches, `model_vat` — the same layers, compiled with loss='kld'
and hooked with `virtual_adversarial_training` — takes one step on a batch of *unlabeled* reviews,
pulling the predictions at the adversarially perturbed embeddings towards the model's own
predictions (kexue.fm/archives/7466). The supervised-only run is trained too, and both accuracies are
printed.

    python examples/task_sentiment_virtual_adversarial_training.py          # tiny BERT + generated data
    python examples/task_sentiment_virtual_adversarial_training.py --data-dir ../shared/datasets/sentiment \\
        --checkpoint-dir chinese_L-12_H-768_A-12 --num-labeled 169         # 1% labeled, as in bert4keras

--data-dir holds sentiment.{train,valid,test}.data (`text<TAB>label`); the first --num-labeled training
reviews keep their labels, the rest are used without labels. --checkpoint-dir is an unpacked
Google-format BERT release; without it a tiny random BERT is written for the run.
"""
import argparse
import os
import tempfile
import time

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.adversarial import virtual_adversarial_training  # noqa: E402
from bert4keras_ext.backend import keras  # noqa: E402
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import (  # noqa: E402
    existing_dir, positive_float, positive_int, progress, progress_verbose, use_first,
)
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: E402,N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment  # noqa: E402
from bert4keras_ext.layers import ExtractToken  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402


def accuracy(model, generator, desc='evaluating'):
    right, total = 0, 0
    for x_true, y_true in progress(generator, desc=desc, leave=False):
        y_pred = model.predict(x_true, verbose=0).argmax(axis=1)
        right += int((y_pred == y_true[:, 0]).sum())
        total += len(y_true)
    return right / total


class VATStep(keras.callbacks.Callback):
    """After each supervised batch, one VAT step of `model_vat` on an unlabeled batch (bert4keras' Evaluator)."""

    def __init__(self, model_vat, unlabeled_batches):
        super().__init__()
        self.model_vat, self.unlabeled_batches = model_vat, unlabeled_batches

    steps = 0

    def on_train_batch_end(self, batch, logs=None):
        inputs, _ = next(self.unlabeled_batches)
        self.model_vat.train_on_batch(inputs)  # labels are not needed: the targets are the model's predictions
        self.steps += 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--num-labeled', type=positive_int, default=None,
                        help='labeled training reviews (default 1%% of the file, or 80 of the 800 generated)')
    parser.add_argument('--num-unlabeled', type=positive_int, default=None,
                        help='cap on unlabeled reviews (default: all the training reviews that are not labeled)')
    parser.add_argument('--epsilon', type=positive_float, default=None,
                        help="VAT perturbation size (bert4keras' 1 for a real checkpoint, 0.05 for the tiny one)")
    parser.add_argument('--xi', type=positive_float, default=10.0)
    parser.add_argument('--iters', type=positive_int, default=1)
    parser.add_argument('--epochs', type=positive_int, default=None, help='default 10 real, 6 tiny')
    parser.add_argument('--batch-size', type=positive_int, default=None, help='default 32, or 16 for the generated data')
    parser.add_argument('--maxlen', type=positive_int, default=None, help='default 32 generated, 128 --data-dir')
    parser.add_argument('--learning-rate', type=positive_float, default=None)
    parser.add_argument('--hidden-size', type=positive_int, default=64,
                        help='width of the generated tiny BERT (even: 2 attention heads)')
    parser.add_argument('--num-layers', type=positive_int, default=2, help='depth of the generated tiny BERT')
    parser.add_argument('--num-eval', type=positive_int, default=None,
                        help='valid/test reviews each: generated (default 200), or a cap on --data-dir (default all)')
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

    if args.data_dir:
        train = load_sentiment(os.path.join(args.data_dir, 'sentiment.train.data'))
        valid = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.valid.data')), args.num_eval,
                          'validation reviews', '--num-eval')
        test = use_first(load_sentiment(os.path.join(args.data_dir, 'sentiment.test.data')), args.num_eval,
                         'test reviews', '--num-eval')
        num_labeled = args.num_labeled or max(1, int(len(train) * 0.01))
        maxlen = args.maxlen or 128
    else:
        train = generate_reviews(800, seed=args.seed)
        valid = generate_reviews(args.num_eval or 200, seed=args.seed + 1)
        test = generate_reviews(args.num_eval or 200, seed=args.seed + 2)
        num_labeled = args.num_labeled or 80
        maxlen = args.maxlen or 32
    batch_size = args.batch_size or (32 if args.data_dir else 16)
    if num_labeled >= len(train):
        parser.error('--num-labeled %d leaves no unlabeled review of the %d training reviews for VAT'
                     % (num_labeled, len(train)))
    labeled = train[:num_labeled]
    unlabeled = use_first([(text, 0) for text, _ in train[num_labeled:]], args.num_unlabeled,
                          'unlabeled reviews (the training reviews after the %d labeled ones)' % num_labeled,
                          '--num-unlabeled')
    if args.checkpoint_dir:
        paths = find_checkpoint_files(args.checkpoint_dir)
        learning_rate, epochs, epsilon = args.learning_rate or 2e-5, args.epochs or 10, args.epsilon or 1.0
    else:
        vocab = build_vocab(text for text, _ in train + valid + test)
        paths = make_random_checkpoint(tempfile.mkdtemp(prefix='tiny_bert_'), vocab=vocab, seed=args.seed,
                                       hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                                       num_attention_heads=2, intermediate_size=2 * args.hidden_size,
                                       max_position_embeddings=max(64, maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
        learning_rate, epochs, epsilon = args.learning_rate or 1e-3, args.epochs or 6, args.epsilon or 0.05
    tokenizer = Tokenizer(paths['vocab'], do_lower_case=True)
    print('%d labeled / %d unlabeled / %d valid / %d test reviews, maxlen %d' % (
        len(labeled), len(unlabeled), len(valid), len(test), maxlen))

    train_generator = data_generator(labeled, tokenizer, maxlen, batch_size)
    valid_generator = data_generator(valid, tokenizer, maxlen, 64)
    test_generator = data_generator(test, tokenizer, maxlen, 64)

    results = {}
    for use_vat in (False, True):
        keras.utils.set_random_seed(args.seed)  # same initialisation and batch order for both runs
        bert = build_transformer_model(config_path=paths['config'], checkpoint_path=paths['checkpoint'],
                                       return_keras_model=False)
        output = ExtractToken(0, name='CLS-token')(bert.model.output)
        output = keras.layers.Dense(units=2, activation='softmax', kernel_initializer=bert.initializer)(output)
        # the model for ordinary (supervised) training
        model = keras.models.Model(bert.model.input, output)
        model.compile(loss='sparse_categorical_crossentropy', optimizer=Adam(learning_rate),
                      metrics=['sparse_categorical_accuracy'])
        model.optimizer.build(model.trainable_variables)  # built now, fit traces its step once instead of twice
        callbacks = []
        if use_vat:
            # the model for virtual adversarial training: the same layers, its own optimizer and loss
            model_vat = keras.models.Model(bert.model.input, output)
            model_vat.compile(loss='kld', optimizer=Adam(learning_rate / 2))
            virtual_adversarial_training(model_vat, 'Embedding-Token', epsilon=epsilon, xi=args.xi,
                                         iters=args.iters, seed=args.seed)
            unlabeled_batches = data_generator(unlabeled, tokenizer, maxlen, batch_size).batches(random=True)
            model_vat.optimizer.build(model_vat.trainable_variables)  # traced once instead of twice
            vat_step = VATStep(model_vat, unlabeled_batches)
            callbacks.append(vat_step)
        name = 'vat' if use_vat else 'supervised'
        best = {'val_acc': 0.0, 'test_acc': 0.0}
        for epoch in range(epochs):
            model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1,
                      callbacks=callbacks, verbose=verbose)
            val_acc = accuracy(model, valid_generator, 'validation')
            if val_acc >= best['val_acc']:
                best = {'val_acc': val_acc, 'test_acc': accuracy(model, test_generator, 'test')}
            print('[%s] epoch %d: val_acc %.4f, best_val_acc %.4f' % (name, epoch + 1, val_acc, best['val_acc']))
        results[name] = best

    print('labeled data only:        best val_acc %.4f, test_acc %.4f' % (
        results['supervised']['val_acc'], results['supervised']['test_acc']))
    print('+ VAT on unlabeled data:  best val_acc %.4f, test_acc %.4f (epsilon=%g, xi=%g, iters=%d)' % (
        results['vat']['val_acc'], results['vat']['test_acc'], epsilon, args.xi, args.iters))
    results['vat_steps'] = vat_step.steps
    results['seconds'] = time.perf_counter() - start
    print('done in %.1f s' % results['seconds'])
    return results


if __name__ == '__main__':
    main()
