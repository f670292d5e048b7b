"""HTTP serving throughput and latency: `python -m bert4keras_ext serve --task classify` under load.

    python benchmarks/bench_serve.py                           # BERT-base shape, random weights
    python benchmarks/bench_serve.py --size small --requests 64 # a 4-layer, hidden-256 model: quick
    python benchmarks/bench_serve.py --max-batch 1              # the same load without micro-batching

Builds a sentence classifier (BERT + [CLS] + Dense softmax, random weights), saves it as a .keras
file, starts the real command in a subprocess (`python -m bert4keras_ext serve --port 0`) and sends
`--requests` POST /classify requests per level from 1, 8 and 32 concurrent clients (threads, one
keep-alive connection each, each sending its next request when the previous answer arrives). Texts are
random Chinese strings of `--chars` characters (`--chars` + 2 tokens).

Each level starts with an untimed round of 2 × clients requests (the first batches of a new shape set
up kernels). Reported per level: requests/s (answered requests / wall time of the level), p50 / p99 latency of
one request as a client sees it, and the mean batch size the server ran (from GET /health). Clients
and server share the machine's cores, as they would on a one-box deployment. Timings are never
asserted in tests.
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

SIZES = {  # hidden, layers, heads, intermediate
    'base': (768, 12, 12, 3072),
    'small': (256, 4, 4, 1024),
}
CHARS = '的是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天'


def build_classifier(out_dir, size, seed=0):
    """Save a random-weight classifier (.keras) and its vocab.txt into out_dir; returns (model, vocab) paths."""
    import keras

    from bert4keras_ext.checkpoints import default_vocab
    from bert4keras_ext.layers import ExtractToken
    from bert4keras_ext.models import build_transformer_model
    keras.utils.set_random_seed(seed)
    vocab = default_vocab()
    vocab_path = os.path.join(out_dir, 'vocab.txt')
    with open(vocab_path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(vocab) + '\n')
    hidden, layers, heads, intermediate = SIZES[size]
    bert = build_transformer_model(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=intermediate,
                                   hidden_act='gelu', max_position_embeddings=512, type_vocab_size=2)
    probs = keras.layers.Dense(2, activation='softmax')(ExtractToken(0)(bert.output))
    model_path = os.path.join(out_dir, 'classifier.keras')
    keras.Model(bert.inputs, probs).save(model_path)
    return model_path, vocab_path


def start_server(model_path, vocab_path, max_batch, max_wait_ms, maxlen):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # set by quiet_tensorflow here; the server quiets its own start-up
    process = subprocess.Popen(
        [sys.executable, '-m', 'bert4keras_ext', 'serve', '--task', 'classify', '--model', model_path,
         '--vocab', vocab_path, '--port', '0', '--max-batch', str(max_batch), '--max-wait-ms', str(max_wait_ms),
         '--maxlen', str(maxlen)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    line = process.stdout.readline()
    if not line.startswith('serving '):
        process.kill()
        raise SystemExit('the server did not start: %r' % line)
    host, port = line.split()[3][len('http://'):].split(':')
    return process, host, int(port)


def run_level(host, port, clients, requests, texts):
    """`requests` requests from `clients` threads; returns (wall seconds, sorted latencies, errors)."""
    latencies, errors = [], []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client(k):
        connection = http.client.HTTPConnection(host, port, timeout=600)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({'text': texts[i % len(texts)]}).encode('utf-8')
            start = time.perf_counter()
            connection.request('POST', '/classify', body, {'Content-Type': 'application/json'})
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                else:
                    errors.append((response.status, payload[:200]))
        connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, sorted(latencies), errors


def health(host, port):
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request('GET', '/health')
    stats = json.loads(connection.getresponse().read())['stats']
    connection.close()
    return stats


def percentile(sorted_values, q):
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[index]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', choices=sorted(SIZES), default='base')
    parser.add_argument('--clients', type=int, nargs='+', default=[1, 8, 32])
    parser.add_argument('--requests', type=int, default=96, help='requests per concurrency level')
    parser.add_argument('--chars', type=int, default=30, help='characters per text')
    parser.add_argument('--max-batch', type=int, default=32)
    parser.add_argument('--max-wait-ms', type=float, default=5.0)
    args = parser.parse_args(argv)
    from bert4keras_ext.console import quiet_tensorflow
    quiet_tensorflow()
    import numpy as np
    rng = np.random.RandomState(0)
    texts = [''.join(rng.choice(list(CHARS), args.chars)) for _ in range(256)]
    with tempfile.TemporaryDirectory(prefix='bench_serve_') as work:
        started = time.perf_counter()
        model_path, vocab_path = build_classifier(work, args.size)
        print('classifier: BERT-%s shape (hidden %d, %d layers), random weights, %d tokens per request; saved in %.1f s'
              % (args.size, SIZES[args.size][0], SIZES[args.size][1], args.chars + 2, time.perf_counter() - started))
        process, host, port = start_server(model_path, vocab_path, args.max_batch, args.max_wait_ms, args.chars + 2)
        results = {}
        try:
            run_level(host, port, 1, 4, texts)  # warm-up: first calls trace the model function
            print('server: --max-batch %d --max-wait-ms %g; %d requests per level; %d CPU threads'
                  % (args.max_batch, args.max_wait_ms, args.requests, os.cpu_count() or 0))
            print('  clients   requests/s   p50 ms   p99 ms   mean batch')
            for clients in args.clients:
                # one untimed round at this concurrency first: new batch shapes pay one-time kernel set-up
                run_level(host, port, clients, 2 * clients, texts)
                before = health(host, port)
                wall, latencies, errors = run_level(host, port, clients, args.requests, texts)
                after = health(host, port)
                if errors:
                    raise SystemExit('%d requests failed, e.g. %s' % (len(errors), errors[0]))
                batches = after['batches'] - before['batches']
                mean_batch = (after['items'] - before['items']) / max(batches, 1)
                rate = len(latencies) / wall
                p50, p99 = 1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99)
                print('  %7d   %10.1f   %6.0f   %6.0f   %10.1f' % (clients, rate, p50, p99, mean_batch))
                results[clients] = {'requests_per_s': rate, 'p50_ms': p50, 'p99_ms': p99, 'mean_batch': mean_batch}
        finally:
            process.terminate()
            process.communicate(timeout=60)
    return results


if __name__ == '__main__':
    main()
