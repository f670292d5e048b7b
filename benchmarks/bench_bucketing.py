"""One fine-tuning epoch on the sentiment data, with and without DataGenerator length bucketing.

    python benchmarks/bench_bucketing.py                          # BERT-base, the whole train split
    python benchmarks/bench_bucketing.py --layers 2 --examples 640 --bucket 100

A bert4keras sentiment-classification script (tokenize, ``[CLS]`` pooling + softmax, Adam 2e-5, batch 32,
maxlen 256) on ``../shared/datasets/sentiment`` (or --data-dir) with a BERT-base-shaped model of random
weights: the character vocabulary is built from the data (Chinese BERT tokenizes one token per
character). The epoch runs twice from the same initial weights and a fresh optimizer: bert4keras' order
(``bucket=None``) and bucketed (``DataGenerator(..., bucket=N)``). Reported per run: real tokens, padded
tokens (rows × each batch's longest row, for the epoch order of one seed), their ratio, examples/s over
the timed epoch (two untimed steps before trace the train function), and the running training loss at
each quarter of the epoch (the loss curve's shape). The padding figures for the whole train split are
printed first; they need no model.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import bert_base_config, runtime_description  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            'shared', 'datasets', 'sentiment')
SPECIAL = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


def load(data_dir):
    path = os.path.join(data_dir, 'sentiment.train.data')
    if not os.path.exists(path):
        sys.exit('bench_bucketing: %s not found; pass --data-dir (a folder with sentiment.train.data: '
                 'text<TAB>label lines)' % path)
    data = []
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                text, sep, label = line.rstrip('\n').rpartition('\t')
                if not sep or label not in ('0', '1'):
                    sys.exit('bench_bucketing: %s line %d is not text<TAB>0|1' % (path, number))
                data.append((text, int(label)))
    return data


def make_generator_class(tokenizer, maxlen):
    from bert4keras_ext.snippets import DataGenerator, sequence_padding

    class data_generator(DataGenerator):  # bert4keras' sentiment example
        def __iter__(self, random=False):
            batch_token_ids, batch_segment_ids, batch_labels = [], [], []
            for is_end, (text, label) in self.sample(random):
                token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
                batch_token_ids.append(token_ids)
                batch_segment_ids.append(segment_ids)
                batch_labels.append([label])
                if len(batch_token_ids) == self.batch_size or is_end:
                    batch_token_ids = sequence_padding(batch_token_ids)
                    batch_segment_ids = sequence_padding(batch_segment_ids)
                    yield [batch_token_ids, batch_segment_ids], batch_labels
                    batch_token_ids, batch_segment_ids, batch_labels = [], [], []

    return data_generator


def padding_only(data, tokenizer_lengths, batch_size, bucket):
    from bert4keras_ext.snippets import DataGenerator
    lengths = dict(zip((id(d) for d in data), tokenizer_lengths))
    gen = DataGenerator(data, batch_size, bucket=bucket)
    np.random.seed(0)
    order = [lengths[id(item)] for _, item in gen.sample(True)]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return sum(order), sum(len(b) * max(b) for b in batches)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data-dir', default=DEFAULT_DATA)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--examples', type=int, default=0, help='a random subset of the train split (0: all)')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--maxlen', type=int, default=256)
    parser.add_argument('--bucket', type=int, default=100, help='batches per sorting window')
    args = parser.parse_args(argv)

    data = load(args.data_dir)
    chars = sorted({c for text, _ in data for c in text})
    token_dict = {t: i for i, t in enumerate(SPECIAL + [c for c in chars if c not in SPECIAL])}
    from bert4keras_ext.tokenizers import Tokenizer
    tokenizer = Tokenizer(token_dict)
    print('sentiment train split: %d examples; batch %d, maxlen %d, bucket %d; %s'
          % (len(data), args.batch, args.maxlen, args.bucket, runtime_description()))
    all_lengths = [len(tokenizer.encode(text, maxlen=args.maxlen)[0]) for text, _ in data]
    results = {}
    for bucket in (None, args.bucket):
        real, padded = padding_only(data, all_lengths, args.batch, bucket)
        results['full_split_padded_over_real_%s' % ('bucketed' if bucket else 'plain')] = padded / real
        print('whole split, %-10s real tokens %9d  padded tokens %9d  padded/real %.3f'
              % ('bucketed' if bucket else 'plain', real, padded, padded / real))

    if args.examples:
        rng = np.random.RandomState(0)
        data = [data[i] for i in rng.permutation(len(data))[:args.examples]]
    import keras
    from bert4keras_ext.models import build_transformer_model
    config = bert_base_config(vocab_size=len(token_dict), layers=args.layers)
    bert = build_transformer_model(**config)
    output = keras.layers.Lambda(lambda x: x[:, 0], name='CLS-token')(bert.output)
    output = keras.layers.Dense(2, activation='softmax', name='classifier')(output)
    model = keras.Model(bert.inputs, output)
    initial = model.get_weights()
    model.compile(loss='sparse_categorical_crossentropy', optimizer=keras.optimizers.Adam(2e-5))
    generator_class = make_generator_class(tokenizer, args.maxlen)
    np.random.seed(1)
    model.fit(generator_class(data, args.batch).forfit(), steps_per_epoch=2, epochs=1, verbose=0)  # traces
    subset_lengths = [len(tokenizer.encode(text, maxlen=args.maxlen)[0]) for text, _ in data]
    print('\nfine-tuning epoch: BERT %d × 768 (random weights), %d examples' % (args.layers, len(data)))
    print('%-10s %10s %10s %8s %11s %8s  %s' % ('order', 'real tok', 'padded', 'pad/real', 'examples/s',
                                                 'seconds', 'running loss at 25/50/75/100% of the epoch'))
    for bucket in (None, args.bucket):
        model.set_weights(initial)
        for variable in model.optimizer.variables:  # a fresh optimizer state, without a retrace
            variable.assign(np.zeros(variable.shape, variable.dtype))
        losses = []
        callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: losses.append(logs['loss']))
        gen = generator_class(data, args.batch, bucket=bucket)
        real, padded = padding_only(data, subset_lengths, args.batch, bucket)
        np.random.seed(2)
        start = time.perf_counter()
        model.fit(gen.forfit(), steps_per_epoch=len(gen), epochs=1, verbose=0, callbacks=[callback])
        seconds = time.perf_counter() - start
        name = 'bucketed' if bucket else 'plain'
        quarters = [float(losses[max(0, int(len(losses) * q) - 1)]) for q in (0.25, 0.5, 0.75, 1.0)]
        results[name] = {'examples_per_s': len(data) / seconds, 'seconds': seconds, 'loss_quarters': quarters,
                         'real_tokens': real, 'padded_tokens': padded}
        print('%-10s %10d %10d %8.3f %11.2f %8.1f  %s' % (
            name, real, padded, padded / real, len(data) / seconds, seconds,
            ' '.join('%.4f' % v for v in quarters)))
    results['speedup'] = results['bucketed']['examples_per_s'] / results['plain']['examples_per_s']
    print('bucketed / plain examples/s: %.2fx' % results['speedup'])
    return results


if __name__ == '__main__':
    main()
