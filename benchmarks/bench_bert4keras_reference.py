"""The same bert4keras-style decode loop on bert4keras 0.11.5 itself (the reference for bench_ported_decoder.py).

Runs in a separate environment with bert4keras and a Keras 2 TensorFlow, not in this package's:

    python -m venv /tmp/b4kvenv
    /tmp/b4kvenv/bin/pip install "tensorflow==2.15.1" "numpy<2"
    /tmp/b4kvenv/bin/pip install --no-deps bert4keras==0.11.5
    TF_KERAS=1 /tmp/b4kvenv/bin/python benchmarks/bench_bert4keras_reference.py --new-tokens 6

BERT-base UniLM with random weights, a 128-token source, bert4keras' task_seq2seq_autotitle `AutoTitle`
(`self.last_token(model).predict` on the whole sequence every step), no end token: tokens/s of beam search
(topk 4) and of `random_sample` (n=1, top-k 5). Run it interleaved with `bench_ported_decoder.py` on the same
machine to compare.
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

os.environ.setdefault('TF_KERAS', '1')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--layers', type=int, default=12)
    parser.add_argument('--source', type=int, default=128)
    parser.add_argument('--new-tokens', type=int, default=6)
    parser.add_argument('--topk', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=2)
    args = parser.parse_args(argv)

    if os.environ.get('TF_KERAS') == '1':
        # TensorFlow 2.15's tf.keras is a lazy module: bert4keras puts it in sys.modules['keras'] before it has
        # loaded, and its first attribute access then recurses forever; touching it first loads it.
        import tensorflow as tf
        tf.keras.backend.floatx()
    from bert4keras.models import build_transformer_model
    from bert4keras.snippets import AutoRegressiveDecoder
    config = {'vocab_size': 21128, 'hidden_size': 768, 'num_hidden_layers': args.layers, 'num_attention_heads': 12,
              'intermediate_size': 3072, 'hidden_act': 'gelu', 'max_position_embeddings': 512,
              'type_vocab_size': 2, 'hidden_dropout_prob': 0.0, 'attention_probs_dropout_prob': 0.0}
    path = os.path.join(tempfile.mkdtemp(), 'bert_config.json')
    with open(path, 'w') as f:
        json.dump(config, f)
    model = build_transformer_model(path, application='unilm')

    class AutoTitle(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype='probas')
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = np.concatenate([token_ids, output_ids], 1)
            segment_ids = np.concatenate([segment_ids, np.ones_like(output_ids)], 1)
            return self.last_token(model).predict([token_ids, segment_ids])

    decoder = AutoTitle(start_id=None, end_id=None, maxlen=args.new_tokens)
    rng = np.random.RandomState(0)
    source = [101] + list(rng.randint(104, 21128, size=args.source - 2)) + [102]
    inputs = [source, [0] * len(source)]
    searches = {
        'beam search topk %d' % args.topk: lambda: [decoder.beam_search(inputs, topk=args.topk)],
        'random_sample n=1 topk 5': lambda: decoder.random_sample(inputs, 1, topk=5),
    }
    for search in searches.values():  # build the last-token model and warm up, untimed
        search()
    import bert4keras
    import tensorflow as tf
    print('bert4keras %s, TensorFlow %s; UniLM BERT %d × 768, source %d tokens, %d new tokens'
          % (bert4keras.__version__, tf.__version__, args.layers, args.source, args.new_tokens))
    for name, search in searches.items():
        best = 0.0
        for _ in range(args.repeat):
            start = time.perf_counter()
            outputs = search()
            best = max(best, sum(len(o) for o in outputs) / (time.perf_counter() - start))
        print('%-28s %8.2f tokens/s' % (name, best))


if __name__ == '__main__':
    main()
