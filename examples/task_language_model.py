#! -*- coding: utf-8 -*-
"""A causal language model on BERT (`application='lm'`), after bert4keras' task_language_model.py.

    python examples/task_language_model.py                         # tiny BERT, generated reviews
    python examples/task_language_model.py --data-dir ../shared/datasets/sentiment --checkpoint-dir roberta_base

`application='lm'` gives BERT a lower-triangular attention mask, so position t sees only tokens ≤ t
and the MLM head predicts token t+1: a GPT-style model with BERT weights. Training minimises the
cross-entropy of every next token of `[CLS] text [SEP]` (a `Loss` layer; padding excluded). Then:

- perplexity of held-out text (exp of the mean next-token negative log-likelihood, [SEP] included),
  next to a character unigram model fitted on the training text (add-one smoothed) as the baseline;
- continuations of a few prompts with `CachedDecoder` (key/value cache): greedy (beam of 1), beam
  search (topk 3) and seeded sampling with top-k / top-p, plus the share of sampled character
  bigrams that occur in the training text.

With no arguments: Chinese reviews generated from templates (`bert4keras_ext.demo.generate_reviews`)
and a tiny random BERT whose vocabulary covers them. --data-dir reads sentiment.train.data and
sentiment.valid.data (`text<TAB>label`, labels ignored), e.g. the sentiment corpus of the bert4keras
examples; --checkpoint-dir loads an unpacked Google-format BERT release (simplified vocabulary with
`keep_tokens`, as bert4keras does).
"""
import argparse
import collections
import os
import tempfile
import time

import numpy as np

from bert4keras_ext.console import quiet_tensorflow

if __name__ == '__main__':  # run as a script: keep TensorFlow's C++ start-up logging off stderr
    quiet_tensorflow()

from bert4keras_ext.backend import keras, ops  # noqa: E402
from bert4keras_ext.checkpoints import find_checkpoint_files, make_random_checkpoint  # noqa: E402
from bert4keras_ext.console import (  # noqa: E402
    existing_dir, positive_float, positive_int, progress, progress_verbose, use_first,
)
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment  # noqa: E402
from bert4keras_ext.generation import CachedDecoder  # noqa: E402
from bert4keras_ext.layers import Loss  # noqa: E402
from bert4keras_ext.metrics import ngram_hit_rate  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.snippets import DataGenerator, sequence_padding  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer, load_vocab  # noqa: E402

GENERATED_PROMPTS = ['房间', '这本书', '快递', '服务']


class data_generator(DataGenerator):
    """Batches of ([token_ids, segment_ids], None) for `[CLS] text [SEP]` (segments all 0)."""

    def __init__(self, texts, tokenizer, maxlen, batch_size=32):
        super().__init__(texts, batch_size)
        self.tokenizer, self.maxlen = tokenizer, maxlen

    def __iter__(self, random=False):
        batch_token_ids, batch_segment_ids = [], []
        for is_end, text in self.sample(random):
            token_ids, segment_ids = self.tokenizer.encode(text, maxlen=self.maxlen)
            batch_token_ids.append(token_ids)
            batch_segment_ids.append(segment_ids)
            if len(batch_token_ids) == self.batch_size or is_end:
                yield [sequence_padding(batch_token_ids), sequence_padding(batch_segment_ids)], None
                batch_token_ids, batch_segment_ids = [], []


class CrossEntropy(Loss):
    """Next-token cross-entropy: position t predicts token t+1, padded targets (id 0) excluded."""

    def compute_loss(self, inputs, mask=None):
        token_ids, y_pred = inputs
        y_true = token_ids[:, 1:]
        y_mask = ops.cast(ops.greater(y_true, 0), y_pred.dtype)
        loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred[:, :-1])
        return ops.sum(loss * y_mask) / ops.maximum(ops.sum(y_mask), 1.0)


def perplexity(model, tokenizer, texts, maxlen, batch_size=64):
    """exp(mean negative log-likelihood) of every token after [CLS] (the final [SEP] included)."""
    total_nll, count = 0.0, 0
    for i in progress(range(0, len(texts), batch_size), desc='perplexity', unit='batch', leave=False):
        encoded = [tokenizer.encode(t, maxlen=maxlen) for t in texts[i:i + batch_size]]
        token_ids = sequence_padding([t for t, _ in encoded])
        probas = model.predict([token_ids, np.zeros_like(token_ids)], verbose=0)
        targets = token_ids[:, 1:]
        p = np.take_along_axis(probas[:, :-1], targets[..., None], axis=2)[..., 0]
        valid = targets > 0
        total_nll -= np.log(np.maximum(p[valid], 1e-12)).sum()
        count += int(valid.sum())
    return float(np.exp(total_nll / count))


def unigram_perplexity(tokenizer, train_texts, texts, maxlen):
    """Perplexity of a context-free model p(token) = (count + 1) / (N + V) fitted on the training text."""
    counts = collections.Counter()
    for text in train_texts:
        counts.update(tokenizer.encode(text, maxlen=maxlen)[0][1:])
    total, vocab_size = sum(counts.values()), tokenizer._vocab_size
    nll, n = 0.0, 0
    for text in texts:
        for token in tokenizer.encode(text, maxlen=maxlen)[0][1:]:
            nll -= np.log((counts[token] + 1) / (total + vocab_size))
            n += 1
    return float(np.exp(nll / n))


def continue_prompt(decoder, tokenizer, prompt, method, topk=None, topp=None, n=1, seed=None):
    """Continuations of `prompt` (list of (text, finished)); method 'greedy', 'beam' or 'sample'."""
    token_ids = tokenizer.encode(prompt)[0][:-1]  # [CLS] prompt, without the closing [SEP]
    if method == 'sample':
        outputs, infos = decoder.random_sample([token_ids], n, topk=topk, topp=topp, seed=seed, return_info=True)
    else:
        ids, info = decoder.beam_search([token_ids], topk=1 if method == 'greedy' else topk, return_info=True)
        outputs, infos = [ids], [info]
    return [(prompt + tokenizer.decode(ids), info['finished']) for ids, info in zip(outputs, infos)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', type=existing_dir, help='folder with sentiment.train.data / sentiment.valid.data')
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--epochs', type=positive_int, help='training epochs (default 4 generated, 10 real)')
    parser.add_argument('--num-train', type=positive_int,
                        help='training texts (default 1500 generated; a cap on those read from --data-dir, default all)')
    parser.add_argument('--num-valid', type=positive_int,
                        help='held-out texts (default 200 generated; a cap on those read from --data-dir, default 500)')
    parser.add_argument('--maxlen', type=positive_int, help='tokens per text (default 40 generated, 128 real)')
    parser.add_argument('--gen-maxlen', type=positive_int, default=32, help='longest continuation in tokens')
    parser.add_argument('--batch-size', type=positive_int, help='training batch (default 32 generated, 16 real)')
    parser.add_argument('--lr', type=positive_float, help='Adam learning rate (default 2e-3 tiny model, 2e-5 real)')
    parser.add_argument('--prompts', nargs='*', help='prompts to continue (default: a few built-in ones)')
    parser.add_argument('--topk', type=positive_int, default=10, help='top-k of sampling (and beam size 3 for beam)')
    parser.add_argument('--topp', type=positive_float, default=0.9, help='top-p of sampling')
    parser.add_argument('--samples', type=positive_int, default=3, help='samples per prompt')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--verbose', type=int, choices=(0, 1, 2), default=0,
                        help='1: per-epoch progress (a bar on a terminal, a line per epoch when piped)')
    args = parser.parse_args(argv)
    verbose = progress_verbose(args.verbose)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    real = bool(args.checkpoint_dir)

    if args.data_dir:
        train_path = os.path.join(args.data_dir, 'sentiment.train.data')
        valid_path = os.path.join(args.data_dir, 'sentiment.valid.data')
        if not (os.path.isfile(train_path) and os.path.isfile(valid_path)):
            parser.error('--data-dir %s needs sentiment.train.data and sentiment.valid.data' % args.data_dir)
        train = [text for text, _ in use_first(load_sentiment(train_path), args.num_train,
                                               'training texts', '--num-train')]
        valid = [text for text, _ in use_first(load_sentiment(valid_path), args.num_valid or 500,
                                               'held-out texts', '--num-valid')]
        prompts = args.prompts or [text[:2] for text in valid[:4]]
        source = args.data_dir
    else:
        train = [text for text, _ in generate_reviews(args.num_train or 1500, seed=args.seed)]
        valid = [text for text, _ in generate_reviews(args.num_valid or 200, seed=args.seed + 1000)]
        prompts = args.prompts or GENERATED_PROMPTS
        source = 'generated reviews'
    large = real or bool(args.data_dir)
    maxlen = args.maxlen or (128 if large else 40)
    epochs = args.epochs or (10 if real else 4)
    batch_size = args.batch_size or (16 if real else 32)
    lr = args.lr or (2e-5 if real else 2e-3)
    print('task: %s — %d train / %d held-out texts, maxlen %d' % (source, len(train), len(valid), maxlen))

    if real:
        paths = find_checkpoint_files(args.checkpoint_dir)
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='language_model_')
        vocab = build_vocab(train + valid + list(prompts))
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=vocab, seed=args.seed,
                                       hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=256,
                                       max_position_embeddings=max(64, maxlen, 16 + args.gen_maxlen))
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
    token_dict, keep_tokens = load_vocab(paths['vocab'], simplified=True,
                                         startswith=['[PAD]', '[UNK]', '[CLS]', '[SEP]'])
    tokenizer = Tokenizer(token_dict, do_lower_case=True)

    transformer = build_transformer_model(paths['config'], paths['checkpoint'], application='lm',
                                          keep_tokens=keep_tokens, return_keras_model=False)
    model = transformer.model
    output = CrossEntropy(1)([model.inputs[0], model.output])
    train_model = keras.Model(model.inputs, output)
    train_model.compile(optimizer=Adam(lr))

    results = {'perplexity_before': perplexity(model, tokenizer, valid, maxlen)}
    train_generator = data_generator(train, tokenizer, maxlen, batch_size)
    train_start = time.perf_counter()
    for epoch in range(epochs):
        # forfit() already shuffles (DataGenerator.sample); a dataset cannot be shuffled by Keras
        history = train_model.fit(train_generator.forfit(), steps_per_epoch=len(train_generator), epochs=1,
                                  shuffle=False, verbose=verbose)
        print('epoch %d/%d: loss %.4f' % (epoch + 1, epochs, history.history['loss'][-1]))
    results['train_seconds'] = time.perf_counter() - train_start
    results['perplexity'] = perplexity(model, tokenizer, valid, maxlen)
    results['unigram_perplexity'] = unigram_perplexity(tokenizer, train, valid, maxlen)
    print('held-out perplexity: %.2f (untrained %.2f; character unigram baseline %.2f)'
          % (results['perplexity'], results['perplexity_before'], results['unigram_perplexity']))

    decoder = CachedDecoder(transformer, end_id=tokenizer._token_end_id, maxlen=args.gen_maxlen)
    generations, sampled = {}, []
    for i, prompt in enumerate(prompts):
        generations[prompt] = {
            'greedy': continue_prompt(decoder, tokenizer, prompt, 'greedy'),
            'beam': continue_prompt(decoder, tokenizer, prompt, 'beam', topk=3),
            'sample': continue_prompt(decoder, tokenizer, prompt, 'sample', topk=args.topk, topp=args.topp,
                                      n=args.samples, seed=args.seed + i),
        }
        print('prompt %r' % prompt)
        for method, label in (('greedy', 'greedy'), ('beam', 'beam (topk 3)'),
                              ('sample', 'sample (topk %d, topp %.2f)' % (args.topk, args.topp))):
            for text, finished in generations[prompt][method]:
                cut = '' if finished else '  [cut at %d tokens]' % args.gen_maxlen
                print('  %-28s %s%s' % (label + ':', text, cut))
        sampled.extend(text for text, _ in generations[prompt]['sample'])
    finished = [f for g in generations.values() for outputs in g.values() for _, f in outputs]
    results.update(generations=generations, finished_rate=float(np.mean(finished)),
                   sample_bigram_hit_rate=ngram_hit_rate(sampled, train, n=2))
    results['seconds'] = time.perf_counter() - start
    print('samples: %.0f%% of their character bigrams occur in the training text; %.0f%% of all continuations '
          'ended with [SEP]' % (100 * results['sample_bigram_hit_rate'], 100 * results['finished_rate']))
    print('done in %.1f s (training %.1f s)' % (results['seconds'], results['train_seconds']))
    return results


if __name__ == '__main__':
    main()
