"""One entry point for the speed and memory figures: prints a table and writes a JSON record.

    python -m benchmarks.run                       # everything (under 10 minutes on 2 CPU cores)
    python -m benchmarks.run --full                # plus the 1 × 2,048-token recompute memory case
    python -m benchmarks.run --only bert tokenizer --json figures.json

Each part is also a script of its own (benchmarks/bench_*.py) with more options. Fractions of the
machine's float32 matmul peak are measured against the peak measured in the same run.
"""
import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PARTS = ('bert', 'bert512', 'decoding', 'viterbi', 'tokenizer', 'memory')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=PARTS, default=list(PARTS))
    parser.add_argument('--json', default='benchmark_results.json', help='where to write the record')
    parser.add_argument('--full', action='store_true',
                        help='also the 1 × 2,048-token memory case (about 4 more minutes)')
    args = parser.parse_args(argv)
    from benchmarks.common import runtime_description  # before TensorFlow: see benchmarks/common.py
    import tensorflow as tf
    record = {'time': time.strftime('%Y-%m-%d %H:%M:%S'), 'machine': platform.machine(),
              'cpus': os.cpu_count(), 'tensorflow': tf.__version__, 'runtime': runtime_description(),
              'results': {}}
    print(record['runtime'])
    started = time.perf_counter()
    if 'bert' in args.only:
        from benchmarks import bench_bert
        print('\n== BERT-base, batch 16 × 128: inference and fine-tuning step ==')
        # XLA training is left out here: measured slower than plain (see docs/performance.md) and a
        # 60-70 s compilation; `python benchmarks/bench_bert.py` times it
        record['results']['bert_16x128'] = bench_bert.main(['--steps', '2', '--train-jit', 'off'])
        from benchmarks.common import cpu_has_bf16
        if cpu_has_bf16():  # a switch for users (keras.mixed_precision), not a default: it changes numerics
            print('\n== BERT-base, batch 16 × 128, mixed_bfloat16 (this CPU multiplies bfloat16 natively) ==')
            record['results']['bert_16x128_bf16'] = bench_bert.main(
                ['--steps', '2', '--jit', 'off', '--policy', 'mixed_bfloat16'])
        else:
            print('\n(mixed_bfloat16 skipped: no AVX512_BF16/AMX on this CPU, where TensorFlow emulates it)')
    if 'bert512' in args.only:
        from benchmarks import bench_bert
        print('\n== BERT-base, batch 4 × 512: inference ==')
        record['results']['bert_4x512'] = bench_bert.main(['--batch', '4', '--seq', '512', '--steps', '2',
                                                           '--jit', 'off', '--skip-train'])
    if 'decoding' in args.only:
        from benchmarks import bench_decoding
        print('\n== UniLM decoding, 128-token source → 64 tokens ==')
        record['results']['decoding'] = bench_decoding.main(['--plain'])
    if 'viterbi' in args.only:
        print('\n== Viterbi, batch 64 × 128 × 20 tags ==')
        from benchmarks import bench_viterbi
        record['results']['viterbi'] = bench_viterbi.main([])
    if 'tokenizer' in args.only:
        print('\n== Tokenizer, sentiment train split ==')
        from benchmarks import bench_tokenizer
        record['results']['tokenizer'] = bench_tokenizer.main([])
    if 'memory' in args.only:
        print('\n== Peak memory of a fine-tuning step, recompute off/on ==')
        from benchmarks import bench_memory
        record['results']['memory'] = bench_memory.main(['--cases'] + (['4x512', '1x2048'] if args.full else ['4x512']))
    record['seconds'] = time.perf_counter() - started
    with open(args.json, 'w') as f:
        json.dump(record, f, indent=2, default=float)
    print('\nall parts in %.0f s; record written to %s' % (record['seconds'], args.json))
    return record


if __name__ == '__main__':
    main()
