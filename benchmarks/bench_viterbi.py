"""Viterbi decoding throughput: batched `viterbi_decode` vs bert4keras' one-at-a-time numpy decoder.

    python benchmarks/bench_viterbi.py                          # batch 64 × length 128 × 20 tags
    python benchmarks/bench_viterbi.py --batch 256 --length 64 --tags 9 --seconds 5

Both decode the same random emissions/transitions (full-length rows, so the one-at-a-time decoder
does exactly the same work) and must return identical paths, which is checked before timing.

- one-at-a-time: `ViterbiDecoder(trans).decode(nodes)` for each row, the bert4keras NER idiom;
- batched: `viterbi_decode(emissions, trans, mask)` on the whole padded batch (while_loops over time,
  XLA-compiled once per shape; the compilation is a warm-up call and is reported separately).

Reported: sequences/s of each (best of alternating timed rounds, so both see the same machine load)
and the speed-up. Timings are never asserted
in tests (see DESIGN.md).
"""
import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from benchmarks.common import time_calls  # noqa: E402

import numpy as np  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--length', type=int, default=128)
    parser.add_argument('--tags', type=int, default=20)
    parser.add_argument('--seconds', type=float, default=3.0, help='minimum timed seconds per method')
    parser.add_argument('--min-rounds', type=int, default=5, help='minimum alternating timing rounds')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    from bert4keras_ext.viterbi import ViterbiDecoder, viterbi_decode

    rng = np.random.RandomState(args.seed)
    emissions = rng.randn(args.batch, args.length, args.tags).astype('float32')
    trans = rng.randn(args.tags, args.tags).astype('float32')
    mask = np.ones((args.batch, args.length), dtype=bool)
    decoder = ViterbiDecoder(trans)

    def one_at_a_time():
        return np.stack([decoder.decode(row) for row in emissions])

    def batched():
        return viterbi_decode(emissions, trans, mask)

    start = time.perf_counter()
    batched_paths = batched()
    compile_s = time.perf_counter() - start
    if not np.array_equal(batched_paths, one_at_a_time()):
        raise SystemExit('batched and one-at-a-time paths differ; not timing a wrong decoder')

    # Rounds alternate between the two methods so that both see the same machine load (the numbers
    # are best-of-rounds wall times); the batched call is warm (compiled) by now.
    single_s, batch_s = float('inf'), float('inf')
    deadline = time.perf_counter() + 2 * args.seconds
    rounds = 0
    while rounds < args.min_rounds or time.perf_counter() < deadline:
        single_s = min(single_s, min(time_calls(one_at_a_time, warmup=0, repeats=1)))
        batch_s = min(batch_s, min(time_calls(batched, warmup=0, repeats=3)))
        rounds += 1
    single_rate, batch_rate = args.batch / single_s, args.batch / batch_s
    print('Viterbi, batch %d × length %d × %d tags (%d CPU threads visible)'
          % (args.batch, args.length, args.tags, os.cpu_count() or 0))
    print('  one-at-a-time numpy ViterbiDecoder.decode: %10.0f sequences/s' % single_rate)
    print('  batched viterbi_decode (XLA):              %10.0f sequences/s  (first call incl. compile %.2f s)'
          % (batch_rate, compile_s))
    print('  speed-up: %.1f×  (best of %d alternating rounds)' % (batch_rate / single_rate, rounds))
    return {'one_at_a_time_seq_s': single_rate, 'batched_seq_s': batch_rate, 'speedup': batch_rate / single_rate}


if __name__ == '__main__':
    main()
