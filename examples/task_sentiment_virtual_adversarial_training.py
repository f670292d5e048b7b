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

from bert4keras_ext.adversarial import virtual_adversarial_training
from bert4keras_ext.backend import keras
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint
from bert4keras_ext.demo import SentimentGenerator as data_generator  # noqa: N813
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment
from bert4keras_ext.layers import ExtractToken
from bert4keras_ext.models import build_transformer_model
from bert4keras_ext.optimizers import Adam
from bert4keras_ext.tokenizers import Tokenizer


def accuracy(model, generator):
    right, total = 0, 0
    for x_true, y_true in generator:
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
    parser.add_argument('--data-dir', help='folder with sentiment.{train,valid,test}.data')
    parser.add_argument('--checkpoint-dir', help='unpacked Google-format BERT release')
    parser.add_argument('--num-labeled', type=int, default=None,
                        help='labeled training reviews (default 1%% of the file, or 80 generated)')
    parser.add_argument('--num-unlabeled', type=int, default=None, help='cap on unlabeled reviews')
    parser.add_argument('--epsilon', type=float, default=None,
                        help="VAT perturbation size (bert4keras' 1 for a real checkpoint, 0.05 for the tiny one)")
    parser.add_argument('--xi', type=float, default=10.0)
    parser.add_argument('--iters', type=int, default=1)
    parser.add_argument('--epochs', type=int, default=None)
    parser.add_argument('--batch-size', type=int, default=None, help='default 32, or 16 for the generated data')
    parser.add_argument('--maxlen', type=int, default=None)
    parser.add_argument('--learning-rate', type=float, default=None)
    parser.add_argument('--hidden-size', type=int, default=64, help='width of the generated tiny BERT')
    parser.add_argument('--num-layers', type=int, default=2, help='depth of the generated tiny BERT')
    parser.add_argument('--num-eval', type=int, default=None, help='cap on valid/test reviews')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()

    if args.data_dir:
        train = load_sentiment(os.path.join(args.data_dir, 'sentiment.train.data'))
        valid = load_sentiment(os.path.join(args.data_dir, 'sentiment.valid.data'), limit=args.num_eval)
        test = load_sentiment(os.path.join(args.data_dir, 'sentiment.test.data'), limit=args.num_eval)
        num_labeled = args.num_labeled or int(len(train) * 0.01)
        maxlen = args.maxlen or 128
    else:
        train = generate_reviews(800, seed=args.seed)
        valid = generate_reviews(args.num_eval or 200, seed=args.seed + 1)
        test = generate_reviews(args.num_eval or 200, seed=args.seed + 2)
        num_labeled = args.num_labeled or 80
        maxlen = args.maxlen or 32
    batch_size = args.batch_size or (32 if args.data_dir else 16)
    labeled = train[:num_labeled]
    unlabeled = [(text, 0) for text, _ in train[num_labeled:]][:args.num_unlabeled]
    if args.checkpoint_dir:
        paths = find_checkpoint_files(args.checkpoint_dir)
        learning_rate, epochs, epsilon = args.learning_rate or 2e-5, args.epochs or 10, args.epsilon or 1.0
    else:
        vocab = build_vocab(text for text, _ in train + valid + test)
        paths = make_random_checkpoint(tempfile.mkdtemp(prefix='tiny_bert_'), vocab=vocab, seed=args.seed,
                                       hidden_size=args.hidden_size, num_hidden_layers=args.num_layers,
                                       num_attention_heads=2, intermediate_size=2 * args.hidden_size,
                                       max_position_embeddings=max(64, maxlen))
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
                      callbacks=callbacks, verbose=args.verbose)
            val_acc = accuracy(model, valid_generator)
            if val_acc >= best['val_acc']:
                best = {'val_acc': val_acc, 'test_acc': accuracy(model, test_generator)}
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
