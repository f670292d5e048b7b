"""A bert4keras-style decoder, unchanged, on a BERT-base UniLM: tokens/s with and without the transparent cache.

    python benchmarks/bench_ported_decoder.py                    # 12 × 768, 128-token source, 64 new tokens
    python benchmarks/bench_ported_decoder.py --new-tokens 16 --full-tokens 4

The decoder is bert4keras' task_seq2seq_autotitle `AutoTitle` (its `predict` calls
`self.last_token(model).predict([token_ids, segment_ids])` on the whole sequence every step). Three ways,
interleaved on the same model and search:

* `before`: the cache switched off (`kv_cache=False`) and Keras' own `predict` (`fast_predict` off): every step
  runs the whole sequence through Keras' per-call data pipeline — what a ported script got before;
* `full`: the cache off, the fast single-batch `predict` on;
* `reused`: the same decoder with the cache on (the default): `last_token(model).predict` extends a
  key/value cache;
* `CachedDecoder`: the package's own batched decoder on the same search.

Random weights and no end token, so every search generates exactly its token budget; full recomputation is
timed over --full-tokens tokens only (its per-token cost grows with the length, so that figure is an upper
bound). "tokens/s" counts the tokens of the returned output(s).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks.common import bert_base_config, runtime_description  # noqa: E402


def autotitle_class():
    from bert4keras_ext.snippets import AutoRegressiveDecoder

    class AutoTitle(AutoRegressiveDecoder):
        def __init__(self, model, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model = model

        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
            return self.last_token(self.model).predict([token_ids, segment_ids])

    return AutoTitle


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--source', type=int, default=128)
    parser.add_argument('--new-tokens', type=int, default=64)
    parser.add_argument('--full-tokens', type=int, default=8)
    parser.add_argument('--topk', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=2, help='rounds of the interleaved measurements (best kept)')
    args = parser.parse_args(argv)

    from bert4keras_ext.generation import CachedDecoder
    from bert4keras_ext.models import build_transformer_model
    config = bert_base_config(layers=args.layers)
    config.update(dropout_rate=0.0, attention_dropout_rate=0.0)
    transformer = build_transformer_model(application='unilm', return_keras_model=False, **config)
    model = transformer.model
    rng = np.random.RandomState(0)
    source = [101] + list(rng.randint(104, 21128, size=args.source - 2)) + [102]
    inputs = [source, [0] * len(source)]
    AutoTitle = autotitle_class()
    ways = {
        'before': AutoTitle(model, start_id=None, end_id=None, maxlen=args.full_tokens, kv_cache=False),
        'full': AutoTitle(model, start_id=None, end_id=None, maxlen=args.full_tokens, kv_cache=False),
        'reused': AutoTitle(model, start_id=None, end_id=None, maxlen=args.new_tokens),
        'CachedDecoder': CachedDecoder(transformer, end_id=None, maxlen=args.new_tokens),
    }
    searches = {
        'beam search topk %d' % args.topk: lambda d: [d.beam_search(inputs, topk=args.topk)],
        'random_sample n=1 topk 5': lambda d: d.random_sample(inputs, 1, topk=5, seed=0),
    }
    print('UniLM BERT %d × 768, vocab 21128; source %d tokens, %d new tokens (full recompute: %d); %s'
          % (args.layers, args.source, args.new_tokens, args.full_tokens, runtime_description()))
    from bert4keras_ext import fast_predict

    def run(way, search):
        previous = fast_predict.set_enabled(way != 'before')
        try:
            return search(ways[way])
        finally:
            fast_predict.set_enabled(previous)

    for way in ways:  # trace / compile every path once, untimed
        for search in searches.values():
            run(way, search)
    best = {}
    for _ in range(args.repeat):
        for search_name, search in searches.items():
            for way in ways:
                start = time.perf_counter()
                outputs = run(way, search)
                seconds = time.perf_counter() - start
                rate = sum(len(o) for o in outputs) / seconds
                key = (search_name, way)
                best[key] = max(best.get(key, 0.0), rate)
    print('%-26s %12s %12s %12s %12s %14s %12s' % ('search (tokens/s)', 'before', 'full', 'reused',
                                                   'Cached', 'reused/before', 'Cached/reused'))
    for search_name in searches:
        before, full, reused, cached = (best[(search_name, w)] for w in ways)
        print('%-26s %12.2f %12.2f %12.2f %12.2f %13.1f× %11.2f×' % (search_name, before, full, reused, cached,
                                                                    reused / before, cached / reused))
    return best


if __name__ == '__main__':
    main()
