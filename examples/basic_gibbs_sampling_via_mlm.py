#! -*- coding: utf-8 -*-
"""Sampling sentences from BERT's masked language model by Gibbs sampling (kexue.fm/archives/8119;
bert4keras' basic_gibbs_sampling_via_mlm.py, batched over chains).

    python examples/basic_gibbs_sampling_via_mlm.py                  # tiny BERT adapted on generated reviews
    python examples/basic_gibbs_sampling_via_mlm.py --checkpoint-dir chinese_L-12_H-768_A-12 \\
        --sentence 科学技术是第一生产力。 --steps 10000 --burn-in 1000

A chain is a fixed-length sentence. Each step picks a position uniformly, masks it, asks the MLM for
p(token | the rest) and writes a draw from it back (`bert4keras_ext.gibbs.gibbs_sample`, several
chains per model call). States after the burn-in are samples of what the MLM thinks a sentence of
that length looks like. Two starts are shown: all-[MASK] (length drawn from [--minlen, --maxlen]
unless --length is given) and a given sentence.

With no arguments: a tiny random one-layer BERT in Google's format whose vocabulary covers generated reviews
(`bert4keras_ext.demo.generate_reviews`), first adapted with a short masked-LM fit on them so samples
look like the data; the script reports the share of sampled character bigrams that occur in that text,
next to the same figure for random strings of its characters. --data-dir adapts on the sentiment
corpus instead (sentiment.train.data, `text<TAB>label`); --checkpoint-dir samples from a real BERT
(no adaptation unless --mlm-epochs is given).
"""
import argparse
import json
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
    existing_dir, is_interactive, non_negative_int, positive_float, positive_int, progress_verbose,
    use_first,
)
from bert4keras_ext.demo import build_vocab, generate_reviews, load_sentiment, mask_tokens  # noqa: E402
from bert4keras_ext.gibbs import gibbs_sample  # noqa: E402
from bert4keras_ext.metrics import ngram_hit_rate  # noqa: E402
from bert4keras_ext.models import build_transformer_model  # noqa: E402
from bert4keras_ext.optimizers import Adam  # noqa: E402
from bert4keras_ext.snippets import sequence_padding  # noqa: E402
from bert4keras_ext.tokenizers import Tokenizer  # noqa: E402


def adapt(model, tokenizer, texts, maxlen, epochs, rng, rate=0.4, batch_size=32, lr=2e-3, verbose=0):
    """A short masked-LM fit of a logits MLM model on `texts` (fresh BERT-style masks every epoch).

    The masking rate is above BERT's 15% on purpose: a random-initialised tiny model gets more
    targets per epoch, which matters more in a one-minute run than matching pre-training exactly.
    """
    token_ids = sequence_padding([tokenizer.encode(t, maxlen=maxlen)[0] for t in texts])
    model.compile(optimizer=Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = []
    for _ in range(epochs):
        masked, targets, weights = mask_tokens(token_ids, tokenizer, rng, rate=rate)
        history = model.fit([masked, np.zeros_like(masked)], targets, sample_weight=weights, batch_size=batch_size,
                            epochs=1, verbose=verbose)
        losses.append(history.history['loss'][-1])
    return losses


def random_strings(texts, lengths, rng):
    """Strings of the given lengths whose characters are drawn uniformly from those of `texts`."""
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    return [''.join(rng.choice(chars, size=n)) for n in lengths]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--checkpoint-dir', type=existing_dir, help='unpacked Google-format BERT release')
    parser.add_argument('--data-dir', type=existing_dir,
                        help='folder with sentiment.train.data (text<TAB>label) to adapt on')
    parser.add_argument('--sentence', help='start sentence (default: a review, or the bert4keras one)')
    parser.add_argument('--length', type=positive_int, help='tokens of the all-[MASK] start (default: drawn)')
    parser.add_argument('--minlen', type=positive_int, default=8)
    parser.add_argument('--maxlen', type=positive_int, default=16)
    parser.add_argument('--steps', type=positive_int, default=None, help='Gibbs steps (default 1000 tiny, 10000 real)')
    parser.add_argument('--burn-in', type=non_negative_int, default=None,
                        help='steps discarded (default 200 / 1000); fewer than --steps')
    parser.add_argument('--chains', type=positive_int, default=4, help='chains per start, sampled side by side')
    parser.add_argument('--temperature', type=positive_float, default=1.0)
    parser.add_argument('--show', type=non_negative_int, default=5, help='samples printed per start')
    parser.add_argument('--mlm-epochs', type=non_negative_int,
                        help='masked-LM adaptation epochs (default 10 tiny, 0 real; 0 = no adaptation)')
    parser.add_argument('--num-train', type=positive_int,
                        help='texts to adapt on (default 1500; a cap on those read from --data-dir)')
    parser.add_argument('--mask-rate', type=positive_float, default=0.4,
                        help='share of tokens masked while adapting (0 < rate <= 1)')
    parser.add_argument('--no-adapt', action='store_true', help='sample from the model as loaded')
    parser.add_argument('--work-dir', help='where the tiny checkpoint is written (default: a temp folder)')
    parser.add_argument('--seed', type=int, default=0, help='seeds the data, the adaptation and the chains')
    parser.add_argument('--verbose', type=int, choices=(0, 1, 2), default=0,
                        help='1: Keras progress (a line per epoch when piped) and a Gibbs progress bar on a terminal')
    args = parser.parse_args(argv)
    if args.minlen > args.maxlen:
        parser.error('--minlen %d is above --maxlen %d' % (args.minlen, args.maxlen))
    if args.mask_rate > 1:
        parser.error('--mask-rate is a share of the tokens: expected a number in (0, 1], got %s' % args.mask_rate)
    steps = args.steps if args.steps is not None else 10000 if args.checkpoint_dir else 1000
    burn_in = args.burn_in if args.burn_in is not None else 1000 if args.checkpoint_dir else 200
    if burn_in >= steps:
        parser.error('--burn-in %d leaves no samples of %d --steps: expected fewer burn-in steps than steps'
                     % (burn_in, steps))
    verbose = progress_verbose(args.verbose)
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    real = bool(args.checkpoint_dir)

    if args.data_dir:
        path = os.path.join(args.data_dir, 'sentiment.train.data')
        if not os.path.isfile(path):
            parser.error('--data-dir %s has no sentiment.train.data' % args.data_dir)
        texts = [text for text, _ in use_first(load_sentiment(path), args.num_train or 1500,
                                               'texts of sentiment.train.data', '--num-train')]
    elif real:
        texts = []
    else:
        texts = [text for text, _ in generate_reviews(args.num_train or 1500, seed=args.seed)]
    sentence = args.sentence or ('科学技术是第一生产力。' if real else texts[0] if args.data_dir else '房间很干净，下次还会再来')

    if real:
        paths = find_checkpoint_files(args.checkpoint_dir)
    else:
        work_dir = args.work_dir or tempfile.mkdtemp(prefix='gibbs_')
        paths = make_random_checkpoint(os.path.join(work_dir, 'tiny_bert'), vocab=build_vocab(texts + [sentence]),
                                       seed=args.seed, hidden_size=128, num_hidden_layers=1, num_attention_heads=4,
                                       intermediate_size=256, max_position_embeddings=64)
        print('wrote a tiny random BERT checkpoint to %s' % paths['dir'])
    tokenizer = Tokenizer(paths['vocab'], do_lower_case=True)
    # logits head: trained with a from_logits loss, sampled with from_logits=True
    model = build_transformer_model(paths['config'], paths['checkpoint'], with_mlm='linear')

    mlm_epochs = 0 if args.no_adapt or not texts else (args.mlm_epochs if args.mlm_epochs is not None
                                                       else 0 if real else 10)
    results = {'adapt_losses': []}
    if mlm_epochs:
        adapt_start = time.perf_counter()
        results['adapt_losses'] = adapt(model, tokenizer, texts, maxlen=max(args.maxlen + 2, 32), epochs=mlm_epochs,
                                        rng=rng, rate=args.mask_rate, verbose=verbose)
        print('masked-LM adaptation on %d texts: %d epochs, loss %s (%.1f s)'
              % (len(texts), mlm_epochs, ' → '.join('%.3f' % x for x in results['adapt_losses']),
                 time.perf_counter() - adapt_start))
    else:
        why = ('--no-adapt' if args.no_adapt else 'no texts to adapt on: give --data-dir' if not texts
               else '--mlm-epochs 0' if args.mlm_epochs == 0 else 'the default with --checkpoint-dir')
        print('no masked-LM adaptation (%s): sampling from the model as loaded' % why)

    length = args.length or int(rng.randint(args.minlen, args.maxlen + 1))
    with open(paths['config'], encoding='utf-8') as f:
        max_positions = json.load(f)['max_position_embeddings']
    token_ids, _ = tokenizer.encode(sentence, maxlen=max_positions)
    starts = [('all-[MASK] start, %d tokens' % length, dict(length=length)),
              ('start %r' % sentence, dict(token_ids=token_ids))]
    sampling_start = time.perf_counter()
    for index, (key, (label, start_arguments)) in enumerate(zip(('from_masks', 'from_sentence'), starts)):
        chains = gibbs_sample(model, tokenizer, steps=steps, burn_in=burn_in, num_chains=args.chains,
                              seed=args.seed + 1 + index, temperature=args.temperature, from_logits=True,
                              progress=args.verbose > 0 and is_interactive(), **start_arguments)
        flat = chains.samples.reshape(-1, chains.samples.shape[-1])
        decoded = [tokenizer.decode(ids) for ids in flat]
        shown = [decoded[i] for i in rng.choice(len(decoded), size=min(args.show, len(decoded)), replace=False)]
        print('%s: %d chains × %d steps, %d discarded as burn-in; random samples:'
              % (label, args.chains, steps, burn_in))
        for text in shown:
            print('  ' + text)
        print('  final states: ' + ' | '.join(tokenizer.decode(ids) for ids in chains.final))
        results[key] = {'samples': decoded, 'shown': shown, 'final': [tokenizer.decode(ids) for ids in chains.final],
                        'final_ids': chains.final.tolist()}
        if texts:
            hit_rate = ngram_hit_rate(decoded, texts, n=2)
            baseline = ngram_hit_rate(random_strings(texts, [len(t) for t in decoded], rng), texts, n=2)
            results[key].update(bigram_hit_rate=hit_rate, random_bigram_hit_rate=baseline)
            print('  %.0f%% of the sampled character bigrams occur in the training text (random strings of its '
                  'characters: %.0f%%)' % (100 * hit_rate, 100 * baseline))
    results['sampling_seconds'] = time.perf_counter() - sampling_start
    results['seconds'] = time.perf_counter() - start
    print('done in %.1f s (sampling %.1f s)' % (results['seconds'], results['sampling_seconds']))
    return results


if __name__ == '__main__':
    main()
