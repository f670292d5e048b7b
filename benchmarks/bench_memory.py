"""Peak memory of a BERT-base fine-tuning step, with and without `recompute=True`.

    python benchmarks/bench_memory.py                         # batch 4 × 512 and 1 × 2048 (hierarchical)
    python benchmarks/bench_memory.py --cases 4x512

Each case runs in a fresh process (peak RSS is per process): build the model and the Adam slots,
record the resident memory, run --steps training steps, and report the peak resident memory of the
process and the part of it added by the steps (activations, gradients and temporaries), plus the step
time. The 2,048-token case uses hierarchical position embeddings (a 512-row table).
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_case(batch, seq_len, recompute, steps, layers):
    """Runs inside the child process; prints one JSON line."""
    import numpy as np

    from benchmarks.common import bert_base_config, peak_rss_mb, random_token_batch
    from bert4keras_ext.backend import keras
    from bert4keras_ext.optimizers import Adam  # bert4keras users' optimizer (fused update)
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model

    config = bert_base_config(layers=layers)
    bert = build_transformer_model(recompute=recompute, hierarchical_position=seq_len > 512, **config)
    output = keras.layers.Dense(2, activation='softmax')(ExtractToken(0)(bert.output))
    model = keras.Model(bert.inputs, output)
    model.compile(optimizer=Adam(2e-5), loss='sparse_categorical_crossentropy')
    model.optimizer.build(model.trainable_variables)
    token_ids, segment_ids = random_token_batch(batch, seq_len, config['vocab_size'])
    labels = np.zeros((batch,), 'int32')
    baseline = peak_rss_mb()
    model.train_on_batch([token_ids, segment_ids], labels)  # traces the step
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch([token_ids, segment_ids], labels)
        times.append(time.perf_counter() - start)
    peak = peak_rss_mb()
    print(json.dumps({'peak_mb': peak, 'baseline_mb': baseline, 'step_mb': peak - baseline,
                      'step_s': min(times)}))


def measure(batch, seq_len, recompute, steps, layers):
    code = ('import sys; sys.path.insert(0, %r); from benchmarks.bench_memory import run_case; '
            'run_case(%d, %d, %r, %d, %d)' % (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                              batch, seq_len, recompute, steps, layers))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{')]
    if out.returncode or not lines:
        raise RuntimeError('case %dx%d recompute=%s failed:\n%s' % (batch, seq_len, recompute, out.stderr[-3000:]))
    return json.loads(lines[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cases', nargs='+', default=['4x512', '1x2048'])
    parser.add_argument('--steps', type=int, default=1)
    parser.add_argument('--layers', type=int, default=12)
    args = parser.parse_args(argv)
    print('BERT-base-sized (%d layers × 768) fine-tuning step; peak resident memory per fresh process' % args.layers)
    print('%-10s %-10s %12s %14s %10s' % ('case', 'recompute', 'peak MiB', 'step adds MiB', 'step s'))
    results = {}
    for case in args.cases:
        batch, seq_len = (int(v) for v in case.split('x'))
        for recompute in (False, True):
            r = measure(batch, seq_len, recompute, args.steps, args.layers)
            results['%s_%s' % (case, 'recompute' if recompute else 'plain')] = r
            print('%-10s %-10s %12.0f %14.0f %10.2f' % (case, recompute, r['peak_mb'], r['step_mb'], r['step_s']))
        plain, remat = results[case + '_plain'], results[case + '_recompute']
        print('%-10s peak -%.0f%%, step memory -%.0f%%, step time %+.0f%%' % (
            case, 100 * (1 - remat['peak_mb'] / plain['peak_mb']), 100 * (1 - remat['step_mb'] / plain['step_mb']),
            100 * (remat['step_s'] / plain['step_s'] - 1)))
    return results


if __name__ == '__main__':
    main()
