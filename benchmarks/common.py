"""Shared measurement helpers for the benchmarks: matmul peak, BERT FLOP counts, timing, memory."""
import os
import resource
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Imported before TensorFlow, as a user's script would: the package's kernel choice (oneDNN on x86-64,
# unless TF_ENABLE_ONEDNN_OPTS is set) is what the figures measure. `TF_ENABLE_ONEDNN_OPTS=0 python -m
# benchmarks` measures TensorFlow's own kernels instead.
import bert4keras_ext  # noqa: E402,F401
import numpy as np  # noqa: E402


PEAK_SHAPES = ((2048, 2048, 2048), (2048, 768, 3072), (2048, 3072, 768))


def measure_matmul_peak(shapes=PEAK_SHAPES, repeats=4, seconds=4.0, with_numpy=True, dtype='float32'):
    """Best GFLOP/s (float32 unless `dtype` says otherwise) this machine reaches over a few matmul shapes.

    Shapes: a square 2048³ one and BERT-base's feed-forward ones at 16 × 128 tokens; each is a chain
    of 8 dependent matmuls, timed at least 3 times, and the best run of the best shape and library is
    the ceiling the model fractions are quoted against (same process, same cores). numpy's BLAS
    (OpenBLAS in the pip wheels) is included so that the ceiling is the machine's, not whatever
    kernels TensorFlow happens to use in this process. On a shared machine a neighbour can slow any
    single run, so benchmarks measure this before and after their work and keep the larger value: a
    depressed ceiling would flatter the fractions.

    ``dtype='bfloat16'`` measures the 16-bit ceiling a ``mixed_bfloat16`` model is held to (TensorFlow
    only: numpy has no bfloat16).
    """
    import tensorflow as tf
    best = 0.0
    with_numpy = with_numpy and dtype == 'float32'
    for m, k, n in shapes:
        a = tf.cast(tf.random.normal((m, k)), dtype)
        b = tf.cast(tf.random.normal((k, n)), dtype)
        c = tf.cast(tf.random.normal((n, k)), dtype)

        @tf.function
        def chain(x):
            for _ in range(4):  # (m, k) → (m, n) → (m, k): 8 matmuls; the scaling keeps values finite
                x = tf.matmul(tf.matmul(x, b) * 1e-2, c) * 1e-2
            return x

        def numpy_chain(x, b=b.numpy(), c=c.numpy()):
            for _ in range(4):
                x = ((x @ b) * 1e-2) @ c * 1e-2
            return x

        runs = [lambda: chain(a).numpy()]
        if with_numpy:
            a_np = a.numpy()
            runs.append(lambda: numpy_chain(a_np))
        for run in runs:
            run()
            deadline = time.perf_counter() + seconds
            for i in range(repeats):
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
                best = max(best, 8 * 2 * m * k * n / elapsed / 1e9)
                if i >= 2 and time.perf_counter() > deadline:
                    break
    return best


def cpu_has_bf16():
    """Whether the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX), where `mixed_bfloat16` pays
    off; elsewhere TensorFlow emulates it and it is slower than float32. Read from /proc/cpuinfo."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line for line in f if line.startswith('flags')), '').split()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def runtime_description():
    """One line naming the kernels in use: TensorFlow version, oneDNN on/off, CPU threads."""
    import tensorflow as tf
    from bert4keras_ext.backend import onednn_enabled
    onednn = onednn_enabled()
    return 'TensorFlow %s, oneDNN kernels %s, %d CPU threads' % (
        tf.__version__, {True: 'on', False: 'off', None: 'unknown'}[onednn], os.cpu_count())


def bert_forward_flops(seq_len, hidden=768, layers=12, intermediate=3072, with_classifier=0):
    """Matmul FLOPs of one BERT encoder forward pass over one sequence (multiply-add = 2 FLOPs).

    Per token per layer: Q, K, V, O projections 4·2·H², feed-forward 2·2·H·I, attention scores and
    weighted sum 2·2·n·H. Embedding lookups, softmax, LayerNorm and GELU are not counted (they are not
    matmuls), which is the usual convention for 'fraction of matmul peak'.
    """
    per_token_layer = 8 * hidden * hidden + 4 * hidden * intermediate + 4 * seq_len * hidden
    return seq_len * layers * per_token_layer + 2 * hidden * hidden + 2 * hidden * with_classifier


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process' own memory. Not
    getrusage's ru_maxrss: that one survives fork + exec, so a child started by a big parent (as
    bench_memory's cases are by benchmarks/run.py) would report the parent's peak as its own.
    """
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux, other OSes differ


def time_calls(fn, warmup=1, repeats=3, min_seconds=0.0):
    """Run `fn` `warmup` times untimed, then at least `repeats` times; returns the list of seconds."""
    for _ in range(warmup):
        fn()
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_seconds:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def bert_base_config(vocab_size=21128, layers=12, hidden=768, heads=12, intermediate=3072, max_position=512):
    return dict(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                intermediate_size=intermediate, max_position=max_position, hidden_act='gelu',
                dropout_rate=0.1, attention_dropout_rate=0.1)


def random_token_batch(batch, seq_len, vocab_size, seed=0):
    rng = np.random.RandomState(seed)
    token_ids = rng.randint(104, vocab_size, size=(batch, seq_len)).astype('int32')
    token_ids[:, 0], token_ids[:, -1] = 101, 102
    segment_ids = np.zeros_like(token_ids)
    return token_ids, segment_ids
