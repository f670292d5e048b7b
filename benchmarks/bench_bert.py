"""BERT-base speed on this machine: inference and fine-tuning sequences/s, with and without XLA.

    python benchmarks/bench_bert.py                       # 12 × 768, batch 16 × 128, both jit modes
    python benchmarks/bench_bert.py --jit off --steps 3   # quicker
    python benchmarks/bench_bert.py --jit off --policy mixed_bfloat16   # 16-bit matmuls (CPUs with AVX512_BF16/AMX)

Random weights (no checkpoint needed). Prints the machine's matmul GFLOP/s in the model's compute dtype
(float32, or bfloat16/float16 under --policy) measured in the same process and the fraction of it each
mode reaches (matmul FLOPs only; see common.bert_forward_flops).
A fine-tuning step is forward + backward + Adam (bert4keras_ext.optimizers.Adam, the fused update) on a
[CLS] classifier, i.e. ~3× the forward FLOPs.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import (  # noqa: E402
    bert_base_config, bert_forward_flops, measure_matmul_peak, peak_rss_mb, random_token_batch, runtime_description,
    time_calls,
)


def build_classifier(config, num_classes=2):
    from bert4keras_ext.backend import keras
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    bert = build_transformer_model(**config)
    cls = ExtractToken(0, name='CLS')(bert.output)
    output = keras.layers.Dense(num_classes, activation='softmax', name='classifier')(cls)
    return bert, keras.Model(bert.inputs, output)


def bench_inference(bert, token_ids, segment_ids, jit, repeats):
    import tensorflow as tf

    @tf.function(jit_compile=jit, reduce_retracing=True)
    def forward(t, s):
        return bert([t, s], training=False)

    t, s = tf.constant(token_ids), tf.constant(segment_ids)
    start = time.perf_counter()
    forward(t, s).numpy()
    compile_s = time.perf_counter() - start
    times = time_calls(lambda: forward(t, s).numpy(), warmup=1, repeats=repeats)
    return min(times), compile_s


def bench_train(classifier, token_ids, segment_ids, jit, repeats):
    from bert4keras_ext.optimizers import Adam  # bert4keras users' optimizer (fused update)
    import numpy as np
    labels = np.random.RandomState(0).randint(0, 2, size=(len(token_ids),))
    classifier.compile(optimizer=Adam(2e-5), loss='sparse_categorical_crossentropy',
                       jit_compile=jit)
    data = ([token_ids, segment_ids], labels)
    start = time.perf_counter()
    classifier.train_on_batch(*data)
    compile_s = time.perf_counter() - start
    times = time_calls(lambda: classifier.train_on_batch(*data), warmup=1, repeats=repeats)
    return min(times), compile_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--seq', type=int, default=128)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--steps', type=int, default=3, help='timed repeats per measurement (best is reported)')
    parser.add_argument('--jit', choices=['off', 'on', 'both'], default='both')
    parser.add_argument('--train-jit', choices=['off', 'on', 'both'], default=None,
                        help='jit modes of the fine-tuning step (default: as --jit)')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--policy', choices=['float32', 'mixed_bfloat16', 'mixed_float16'], default='float32',
                        help='Keras dtype policy of the model; fractions are then of the 16-bit matmul peak')
    parser.add_argument('--json', help='also write the figures to this JSON file')
    args = parser.parse_args(argv)
    from bert4keras_ext.backend import keras
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(args.policy)
    try:
        return _run(args)
    finally:  # run.py goes on with other parts in the same process
        keras.mixed_precision.set_global_policy(previous_policy)


def _run(args):
    from bert4keras_ext.backend import keras
    peak_dtype = keras.mixed_precision.global_policy().compute_dtype
    peak = measure_matmul_peak(dtype=peak_dtype)
    config = bert_base_config(layers=args.layers)
    token_ids, segment_ids = random_token_batch(args.batch, args.seq, config['vocab_size'])
    flops = bert_forward_flops(args.seq, layers=args.layers) * args.batch
    print('machine: %s; %s matmul peak %.1f GFLOP/s' % (runtime_description(), peak_dtype, peak))
    if args.policy != 'float32':
        print('dtype policy: %s (variables float32, matmuls in %s)' % (args.policy, peak_dtype))
    print('model: BERT %d layers × 768, vocab 21128; batch %d × %d tokens; %.1f GFLOP per forward batch'
          % (args.layers, args.batch, args.seq, flops / 1e9))

    bert, classifier = build_classifier(config)
    results = {'peak_gflops': peak, 'batch': args.batch, 'seq_len': args.seq, 'layers': args.layers,
               'runtime': runtime_description(), 'policy': args.policy, 'peak_dtype': peak_dtype}
    modes = {'off': [False], 'on': [True], 'both': [False, True]}[args.jit]
    print('%-26s %10s %12s %9s %10s' % ('measurement', 'seq/s', 'GFLOP/s', '% peak', 'compile s'))
    for jit in modes:
        seconds, compile_s = bench_inference(bert, token_ids, segment_ids, jit, args.steps)
        gflops = flops / seconds / 1e9
        key = 'inference_jit' if jit else 'inference'
        results[key] = {'seq_per_s': args.batch / seconds, 'gflops': gflops, 'fraction': gflops / peak,
                        'compile_s': compile_s}
        print('%-26s %10.2f %12.1f %8.1f%% %10.1f' % (key, args.batch / seconds, gflops, 100 * gflops / peak,
                                                     compile_s))
    if not args.skip_train:
        for jit in {'off': [False], 'on': [True], 'both': [False, True]}[args.train_jit or args.jit]:
            bert, classifier = build_classifier(config)
            seconds, compile_s = bench_train(classifier, token_ids, segment_ids, jit, args.steps)
            gflops = 3 * flops / seconds / 1e9
            key = 'train_step_jit' if jit else 'train_step'
            results[key] = {'seq_per_s': args.batch / seconds, 'gflops': gflops, 'fraction': gflops / peak,
                            'compile_s': compile_s}
            print('%-26s %10.2f %12.1f %8.1f%% %10.1f' % (key, args.batch / seconds, gflops, 100 * gflops / peak,
                                                         compile_s))
    after = measure_matmul_peak(dtype=peak_dtype)
    if after > peak:  # the ceiling measured after the work was higher: quote against it
        print('matmul peak re-measured after the run: %.1f GFLOP/s; fractions use it' % after)
        for key, value in results.items():
            if isinstance(value, dict) and 'gflops' in value:
                value['fraction'] = value['gflops'] / after
                print('  %-24s %.1f%% of peak' % (key, 100 * value['fraction']))
        results['peak_gflops'] = peak = after
    results['peak_rss_mb'] = peak_rss_mb()
    print('peak resident memory: %.0f MiB' % results['peak_rss_mb'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
