"""Where the time of a BERT-base step goes: matmuls vs softmax/layernorm/gelu vs data movement vs
optimizer vs framework overhead, from TensorFlow's own profiler.

    python benchmarks/profile_bert.py                      # fine-tuning step, 12 × 768, batch 16 × 128
    python benchmarks/profile_bert.py --what inference
    python benchmarks/profile_bert.py --batch 4 --seq 512

Runs --steps steps under `tf.profiler`, converts the trace with the profiler's op-statistics tool and
groups every TensorFlow op by what it does. "outside ops" is the wall time of a step not spent in any
op (Python, Keras' train_step bookkeeping, executor scheduling). The matmul line also gives the GFLOP/s
the matmul kernels reach by themselves, so the gap to the machine's peak splits into "matmuls below
peak" and "time spent outside matmuls". Op times are as the profiler records them (with intra-op
threads an op's time is its wall time); the profiler itself adds a few percent.
"""
import argparse
import collections
import glob
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import bert_base_config, bert_forward_flops, measure_matmul_peak, random_token_batch  # noqa

# op type → group; checked in order, first match wins (names are TensorFlow op types)
GROUPS = (
    ('matmul', ('MatMul', 'Einsum', 'Conv')),
    ('softmax / layernorm / gelu / elementwise', (
        'Softmax', 'Erf', 'Tanh', 'Exp', 'Log', 'Rsqrt', 'Sqrt', 'Mean', 'Sum', 'Max', 'Square', 'Mul', 'Add',
        'Sub', 'RealDiv', 'Div', 'Neg', 'Maximum', 'Minimum', 'Select', 'BiasAdd', 'Cast', 'Relu', 'Pow',
        'Less', 'Greater', 'Equal', 'LogicalAnd', 'LogicalOr', 'LogicalNot', 'Reciprocal', 'Sign', 'Prod',
        'ArgMax', 'SparseSoftmaxCrossEntropyWithLogits', 'Dropout', 'RandomUniform', 'StatelessRandom')),
    ('data movement (transpose/reshape/gather/concat)', (
        'Transpose', 'Reshape', 'Gather', 'Concat', 'Slice', 'StridedSlice', 'Pad', 'Tile', 'BroadcastTo',
        'Pack', 'Unpack', 'Split', 'UnsortedSegmentSum', 'ScatterNd', 'Fill', 'ZerosLike', 'OnesLike',
        'Identity', 'ExpandDims', 'Squeeze', 'Shape', 'Range', 'Const')),
)
OPTIMIZER_HINTS = ('adam', 'optimizer', 'assignvariable', 'assignaddvariable', 'assignsubvariable',
                   'resourceapply')


def classify(op_type, op_name):
    if any(h in op_name.lower() or h in op_type.lower() for h in OPTIMIZER_HINTS):
        return 'optimizer update'
    for group, patterns in GROUPS:
        if any(p in op_type for p in patterns):
            return group
    return 'other ops'


def op_statistics(logdir):
    """Rows of the profiler's framework op statistics: dicts with type, operation, self time (us)."""
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError as exc:  # a private module of TensorFlow; say so rather than fail obscurely
        raise RuntimeError('this TensorFlow build has no profiler conversion tool (%s); profile with '
                           'TensorBoard instead' % exc)
    paths = glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True)
    if not paths:
        raise RuntimeError('the profiler wrote no trace under %s' % logdir)
    data, _ = plugin.xspace_to_tools_data(paths[:1], 'framework_op_stats', {})
    table = json.loads(data.decode() if isinstance(data, bytes) else data)[0]
    columns = [c['id'] for c in table['cols']]
    rows = [dict(zip(columns, [cell['v'] if cell else None for cell in row['c']])) for row in table['rows']]
    return [r for r in rows if r['type'] != 'IDLE']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--what', choices=['train', 'inference'], default='train')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--seq', type=int, default=128)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--steps', type=int, default=2)
    parser.add_argument('--top', type=int, default=12, help='also list the most expensive op types')
    args = parser.parse_args(argv)

    import tensorflow as tf
    from benchmarks.bench_bert import build_classifier
    from bert4keras_ext.optimizers import Adam
    peak = measure_matmul_peak()
    config = bert_base_config(layers=args.layers)
    token_ids, segment_ids = random_token_batch(args.batch, args.seq, config['vocab_size'])
    bert, classifier = build_classifier(config)
    if args.what == 'train':
        labels = tf.constant(token_ids[:, 1] % 2)
        classifier.compile(optimizer=Adam(2e-5), loss='sparse_categorical_crossentropy')
        run = lambda: classifier.train_on_batch([token_ids, segment_ids], labels)  # noqa: E731
        flops = 3 * bert_forward_flops(args.seq, layers=args.layers) * args.batch
    else:
        forward = tf.function(lambda t, s: bert([t, s], training=False))
        t, s = tf.constant(token_ids), tf.constant(segment_ids)
        run = lambda: forward(t, s).numpy()  # noqa: E731
        flops = bert_forward_flops(args.seq, layers=args.layers) * args.batch
    run()  # trace
    run()
    logdir = tempfile.mkdtemp(prefix='bert_profile_')
    try:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(args.steps):
            run()
        wall = (time.perf_counter() - start) / args.steps
        tf.profiler.experimental.stop()
        rows = op_statistics(logdir)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)

    groups, by_type = collections.Counter(), collections.Counter()
    for r in rows:
        seconds = r['total_self_time'] / 1e6 / args.steps
        groups[classify(r['type'], r['operation'])] += seconds
        by_type[r['type']] += seconds
    in_ops = sum(groups.values())
    groups['outside ops (python, scheduling)'] = max(wall - in_ops, 0.0)
    print('BERT %d × 768, batch %d × %d, %s step: %.2f s wall (profiled), %.2f s inside ops; '
          'matmul peak %.1f GFLOP/s' % (args.layers, args.batch, args.seq, args.what, wall, in_ops, peak))
    print('%-50s %9s %8s' % ('where the time goes', 's/step', 'share'))
    total = max(wall, in_ops)
    for group, seconds in groups.most_common():
        print('%-50s %9.3f %7.1f%%' % (group, seconds, 100 * seconds / total))
    matmul_s = groups['matmul']
    overlap = in_ops > 1.05 * wall
    results = {'what': args.what, 'wall_s': wall, 'op_s': in_ops, 'groups_s': dict(groups), 'peak_gflops': peak,
               'model_gflops_per_s': flops / wall / 1e9,
               'matmul_kernel_gflops_per_s': None if overlap else flops / matmul_s / 1e9}
    print('whole step: %.1f GFLOP/s = %.1f%% of peak' % (results['model_gflops_per_s'],
                                                       100 * results['model_gflops_per_s'] / peak))
    if overlap:
        print('ops ran concurrently (%.2f s of op time in %.2f s): shares are of op time, and per-op times '
              'include waiting for the cores the concurrent op held' % (in_ops, wall))
    else:
        print('inside the matmul kernels alone: %.1f GFLOP/s = %.1f%% of peak'
              % (results['matmul_kernel_gflops_per_s'], 100 * results['matmul_kernel_gflops_per_s'] / peak))
    print('\nmost expensive op types:')
    for op_type, seconds in by_type.most_common(args.top):
        print('  %-40s %8.3f s/step %6.1f%%' % (op_type, seconds, 100 * seconds / total))
    return results


if __name__ == '__main__':
    main()
