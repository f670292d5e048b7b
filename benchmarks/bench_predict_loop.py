"""A bert4keras decoding loop's per-step `model.predict`: Keras' predict vs the fast path, interleaved.

    python benchmarks/bench_predict_loop.py                       # BERT-base UniLM, 64-token source, 32 steps
    python benchmarks/bench_predict_loop.py --layers 12 --steps 16 --rows 4 --repeat 3

bert4keras' `AutoRegressiveDecoder.predict` calls ``self.last_token(model).predict([token_ids,
segment_ids])`` once per generated token, on the whole sequence so far (no cache). This times exactly
that loop, one token longer every step, on a BERT-base-shaped UniLM with random weights: once through
Keras 3's own predict (``fast=False``: a data adapter and tf.data pipeline per call) and once through
`bert4keras_ext.fast_predict` (the default), alternating the two for --repeat rounds so that a busy
neighbour slows both alike, after one untimed round each (tracing). It also checks that both give the
same bits. Reported: steps/s (best round) and the mean milliseconds per step.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import bert_base_config, runtime_description  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--source', type=int, default=64, help='source tokens before the first step')
    parser.add_argument('--steps', type=int, default=32, help='predict calls per loop (one token more each)')
    parser.add_argument('--rows', type=int, default=1, help='rows per call (beam width)')
    parser.add_argument('--repeat', type=int, default=3, help='timed rounds of each path, interleaved')
    args = parser.parse_args(argv)

    from bert4keras_ext.decoders import AutoRegressiveDecoder
    from bert4keras_ext.models import build_transformer_model
    config = bert_base_config(layers=args.layers)
    config.update(dropout_rate=0.0, attention_dropout_rate=0.0)
    model = build_transformer_model(application='unilm', **config)
    last = AutoRegressiveDecoder(start_id=None, end_id=None, maxlen=args.steps).last_token(model)
    rng = np.random.RandomState(0)
    total = args.source + args.steps
    token_ids = rng.randint(104, config['vocab_size'], size=(args.rows, total))
    segment_ids = np.zeros_like(token_ids)
    segment_ids[:, args.source:] = 1

    def loop(fast):
        outputs = []
        for length in range(args.source, total):
            outputs.append(last.predict([token_ids[:, :length], segment_ids[:, :length]], fast=fast))
        return outputs

    print('UniLM BERT %d × 768, vocab %d; %d row(s), source %d tokens, %d steps; %s'
          % (args.layers, config['vocab_size'], args.rows, args.source, args.steps, runtime_description()))
    reference, fast = loop(False), loop(True)  # untimed: traces both functions
    identical = all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(reference, fast))
    seconds = {False: [], True: []}
    for round_index in range(args.repeat):
        for flag in ((False, True) if round_index % 2 == 0 else (True, False)):
            start = time.perf_counter()
            loop(flag)
            seconds[flag].append(time.perf_counter() - start)
    results = {'identical_outputs': identical}
    print('%-40s %10s %12s' % ('path', 'steps/s', 'ms/step'))
    for flag, name in ((False, 'keras'), (True, 'fast')):
        best, mean = min(seconds[flag]), float(np.mean(seconds[flag]))
        results['%s_steps_per_s' % name] = args.steps / best
        results['%s_ms_per_step' % name] = 1000 * mean / args.steps
        print('%-40s %10.2f %12.1f' % ('model.predict, ' + ('fast path' if flag else "Keras' predict (fast=False)"),
                                        args.steps / best, 1000 * mean / args.steps))
    results['speedup'] = results['fast_steps_per_s'] / results['keras_steps_per_s']
    print('speed-up %.2fx; outputs bit-identical: %s' % (results['speedup'], identical))
    return results


if __name__ == '__main__':
    main()
