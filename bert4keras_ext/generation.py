"""Fast autoregressive decoding for BERT-family LM / UniLM models: a key/value cache and batched search.

bert4keras decodes by re-running the whole sequence for every new token (O(L) passes of O(L²) work).
Here the source (or prompt) runs through the network once, every layer's keys and values are kept, and
each step feeds only the newest token per row — all rows of all inputs and beams in one call of a
compiled `tf.function`. Results equal full recomputation (the tests check logits to 1e-5 and identical
beams against `AutoRegressiveDecoder` with a full-recompute `predict`).

    transformer = build_transformer_model(config, ckpt, application='unilm', return_keras_model=False)
    decoder = CachedDecoder(transformer, end_id=tokenizer._token_end_id, maxlen=32)
    token_ids, segment_ids = tokenizer.encode(content)
    title_ids = decoder.beam_search([token_ids, segment_ids], topk=3)
    many = decoder.beam_search_batch([[t1, s1], [t2, s2], ...], topk=3)   # one batched search

Attention rule (the same as the masks of `application='lm'|'unilm'`): every position has an *order* —
its index for 'lm', the running count of segment-1 tokens (cumsum of segment ids) for 'unilm' — and a
query sees the valid keys whose order is ≤ its own. The prefill applies it to the source; a generated
token's order is above every source token's, so it sees all real source tokens and the generated ones
up to itself. Rows of a batch have different source lengths: their new tokens share a cache slot while
position ids stay per row, and padded slots are never visible, so each row computes exactly what it
would alone.

Speed (BERT-base UniLM, 2 CPU cores, `python benchmarks/bench_decoding.py`): a step is a chain of
small-row matmuls that reads all ~100M weights, so the work around them decides the rest. The source
keys/values are kept once per input, not per beam; the generated block is preallocated and written one
slot per step; Q/K/V are one fused matmul; the step is XLA-compiled (it fuses the ~40 small cache and
attention ops per layer); shapes stay fixed for a whole search so it compiles once; and the compiled
function is called as a concrete function (tf.function's per-call dispatch over ~80 arguments cost as
much as a quarter of a step).
"""
import numpy as np

from bert4keras_ext import _tf_private
from bert4keras_ext.backend import keras, ops
from bert4keras_ext.decoders import AutoRegressiveDecoder, Beam, sample_rows
from bert4keras_ext.decoding_args import (
    check_search_args, check_token_ids_fit, greedy_log_probs, search_temperature, tempered_log_softmax,
)

__all__ = ['IncrementalModel', 'CachedDecoder']


class IncrementalModel:
    """Step-by-step execution of a built BERT / ALBERT with an MLM head, using a key/value cache.

    The cache has two blocks per layer. The **source** block holds the keys/values of the encoded
    sources, one row per *input* (never per beam or sample), keys stored transposed (n_inputs, heads,
    key_size, S) so a step multiplies without transposing, values (n_inputs, heads, S, head_size);
    it is written once and never copied. The **generated** block holds one row per beam/sample,
    (rows, heads, key_size, T) / (rows, heads, T, head_size) with T = max_new_tokens: rows follow
    their parents (beams move) and each step writes one slot. Queries of the rows of an input are
    grouped to meet their shared source block in one batched matmul. Shapes stay fixed for a whole
    search (rows padded to n_inputs × rows_per_input), so the XLA-compiled step compiles once.

    Visibility: a generated token sees every real source token (its order is above all of them,
    for 'lm' and 'unilm' alike) and the generated tokens up to itself.

    Args:
        transformer: the `Transformer` from `build_transformer_model(..., return_keras_model=False)`
            (with_mlm enabled, as `application='lm'|'unilm'` does by default).
        mode: 'unilm' or 'lm' (default: taken from the transformer's application).
        jit_compile: compile the step with XLA. Measured on 2 CPU cores (BERT-base, benchmarks/
            bench_decoding.py) it fuses the ~40 small attention/cache ops per layer and makes a step
            ~1.35× faster, at a compilation (~10 s for BERT-base) per shape: inputs and source length
            rounded up to powers of two, rows per input, maxlen. The prefill is never compiled.
    """

    def __init__(self, transformer, mode=None, jit_compile=True):
        import tensorflow as tf
        if not getattr(transformer, 'with_mlm', False):
            raise ValueError('IncrementalModel needs a model with an MLM head: build it with application='
                             "'unilm' or 'lm' (or with_mlm=True)")
        if mode is None:
            names = set(transformer.layers)
            mode = 'unilm' if 'Attention-UniLM-Mask' in names else 'lm' if 'Attention-LM-Mask' in names else None
            if mode is None:
                raise ValueError("IncrementalModel: the model has no LM or UniLM mask; build it with "
                                 "application='lm' or 'unilm', or pass mode= explicitly")
        if mode not in ('lm', 'unilm'):
            raise ValueError("IncrementalModel: mode must be 'lm' or 'unilm', got %r" % (mode,))
        _check_decodable(transformer)
        self.transformer = transformer
        self.mode = mode
        self.jit_compile = bool(jit_compile)
        layers = transformer.layers
        self.token_embedding = layers[transformer.prefixed('Embedding-Token')]
        self.segment_embedding = layers.get(transformer.prefixed('Embedding-Segment'))
        self.position_embedding = layers[transformer.prefixed('Embedding-Position')]
        self.embedding_norm = layers[transformer.prefixed('Embedding-Norm')]
        self.embedding_mapping = layers.get(transformer.prefixed('Embedding-Mapping'))
        self.blocks = []
        for i in range(transformer.num_hidden_layers):
            attention = transformer.attention_layer_name(i)
            feed_forward = transformer.feed_forward_layer_name(i)
            self.blocks.append(tuple(layers[transformer.prefixed(n)] for n in (
                attention, attention + '-Norm', feed_forward, feed_forward + '-Norm')))
        self.mlm_layers = [layers[transformer.prefixed(n)] for n in ('MLM-Dense', 'MLM-Norm', 'MLM-Bias')]
        self.residual = bool(transformer.residual_attention_scores)
        # the prefill runs once per search: not worth an XLA compilation per source shape
        self._prefill = tf.function(self._prefill_fn, reduce_retracing=True)
        self._step = tf.function(self._step_fn, jit_compile=jit_compile)
        self._concrete_steps = {}

    # ------------------------------------------------------------------------------- network pieces
    def _embed(self, token_ids, segment_ids, position_ids):
        x = ops.take(ops.cast(self.token_embedding.embeddings, self.token_embedding.compute_dtype), token_ids, axis=0)
        if self.segment_embedding is not None:
            table = ops.cast(self.segment_embedding.embeddings, self.segment_embedding.compute_dtype)
            x = x + ops.take(table, segment_ids, axis=0)
        x = x + self.position_embedding.position_embeddings(position_ids=position_ids)
        x = self.embedding_norm(x)
        if self.embedding_mapping is not None:
            x = self.embedding_mapping(x)
        return x

    def _logits(self, h, output_kernel):
        """MLM head on (b, d) states; `output_kernel` is the (d, vocab) transposed token embedding."""
        dense, norm, bias = self.mlm_layers
        h = norm(dense(h))
        return ops.cast(bias(ops.matmul(h, ops.cast(output_kernel, h.dtype))), 'float32')

    def _fused_projections(self):
        """Per block, the query/key/value kernels side by side (d, 2·h·dk + h·dv) and their biases.

        One matmul instead of three: a decoding step is a chain of matrix-vector products whose cost
        is reading the weights, and three calls read the input three times and pay three call overheads.
        """
        kernels, biases = [], []
        for attention, _, _, _ in self.blocks:
            denses = (attention.q_dense, attention.k_dense, attention.v_dense)
            dtype = attention.q_dense.compute_dtype
            kernels.append(ops.concatenate([ops.cast(d.kernel, dtype) for d in denses], axis=1))
            biases.append(ops.concatenate([ops.cast(d.bias, dtype) for d in denses], axis=0) if attention.use_bias
                          else ops.zeros((kernels[-1].shape[1],), dtype))
        return list(zip(kernels, biases))

    # ------------------------------------------------------------------------------- compiled steps
    def _prefill_fn(self, token_ids, segment_ids, output_kernel):
        """All source positions at once (b = n_inputs, S). Returns (logits at each row's last real
        token, source caches [(keys (b, h, dk, S), values (b, h, S, dv))], lengths (b,))."""
        valid = ops.not_equal(token_ids, 0)
        n = ops.shape(token_ids)[1]
        if self.mode == 'unilm':
            order = ops.cumsum(ops.cast(segment_ids, 'int32'), axis=1)
        else:
            order = ops.broadcast_to(ops.arange(n, dtype='int32')[None], ops.shape(token_ids))
        positions = ops.broadcast_to(ops.arange(n, dtype='int32')[None], ops.shape(token_ids))
        allowed = ops.logical_and(valid[:, None, :], order[:, None, :] <= order[:, :, None])[:, None]
        x = self._embed(token_ids, segment_ids, positions)
        caches, previous_scores = [], None
        for attention, attention_norm, feed_forward, feed_forward_norm in self.blocks:
            q, k, v = attention.project(x, x, x)
            caches.append((ops.transpose(k, (0, 2, 3, 1)), ops.transpose(v, (0, 2, 1, 3))))
            scores = ops.einsum('bqhd,bkhd->bhqk', q, k)
            biases = [allowed] + ([previous_scores] if self.residual and previous_scores is not None else [])
            context, previous_scores = attention.attend(scores, v, biases, training=False)
            context = ops.reshape(context, tuple(ops.shape(context)[:2]) + (attention.heads * attention.head_size,))
            x = attention_norm(x + attention.o_dense(context))
            x = feed_forward_norm(x + feed_forward(x))
        lengths = ops.sum(ops.cast(valid, 'int32'), axis=1)
        last = ops.take_along_axis(x, ops.reshape(lengths - 1, (-1, 1, 1)), axis=1)[:, 0]
        return self._logits(last, output_kernel), caches, lengths

    def _step_fn(self, token_ids, positions, owner, parents, grouped_rows, group_slot, step, source, source_valid,
                 generated, fused, output_kernel):
        """One new token per row.

        token_ids, positions, owner (input of each row), parents (generated-cache row each row
        continues), group_slot (row → slot in the (n_inputs · r, ...) grouping): (rows,).
        grouped_rows: (n_inputs · r,) row filling each grouping slot, `rows` for an empty slot.
        step: the slot of the new token in the generated block. source, generated: per layer (keys,
        values); fused: per layer (kernel, bias) of the fused query/key/value projection.
        Returns (logits (rows, vocab), generated).
        """
        rows = ops.shape(token_ids)[0]
        segment_id = 1 if self.mode == 'unilm' else 0
        x = self._embed(token_ids[:, None], ops.full((rows, 1), segment_id, dtype='int32'), positions[:, None])[:, 0]
        capacity = ops.shape(generated[0][1])[2]
        # a new token sees its input's real source tokens and the generated slots up to its own
        allowed = ops.concatenate([ops.take(source_valid, owner, axis=0),
                                   ops.broadcast_to((ops.arange(capacity) <= step)[None], (rows, capacity))],
                                  axis=1)[:, None, None, :]
        new_generated, previous_scores = [], None
        for i, (attention, attention_norm, feed_forward, feed_forward_norm) in enumerate(self.blocks):
            qkv = ops.matmul(x, fused[i][0]) + fused[i][1]
            residual = [previous_scores] if self.residual and previous_scores is not None else []
            context, k_cache, v_cache, previous_scores = self._cached_attention(
                attention, qkv, source[i][0], source[i][1], generated[i][0], generated[i][1], allowed, parents,
                step, grouped_rows, group_slot, *residual)
            new_generated.append((k_cache, v_cache))
            x = attention_norm(x + attention.o_dense(context))
            x = feed_forward_norm(x + feed_forward(x))
        return self._logits(x, output_kernel), new_generated

    @staticmethod
    def _cached_attention(attention, qkv, source_k, source_v, k_cache, v_cache, allowed, parents, step,
                          grouped_rows, group_slot, previous_scores=None):
        """Attention of one new token per row over the source block and the generated block.

        qkv (rows, 2·h·dk + h·dv) projections of the new tokens; source_k (n_inputs, h, dk, S),
        source_v (n_inputs, h, S, dv); k_cache (rows_before, h, dk, T), v_cache (rows_before, h, T, dv)
        are reordered by `parents` and get the new key/value at slot `step`; allowed (rows, 1, 1, S + T).
        Returns (context (rows, h·dv), k_cache, v_cache, scores (rows, h, 1, S + T)).
        """
        rows = ops.shape(qkv)[0]
        n_inputs = ops.shape(source_k)[0]
        heads, key_size, head_size = attention.heads, attention.key_size, attention.head_size
        q = ops.reshape(qkv[:, :heads * key_size], (rows, heads, key_size))
        k = ops.reshape(qkv[:, heads * key_size:2 * heads * key_size], (rows, heads, key_size, 1))
        v = ops.reshape(qkv[:, 2 * heads * key_size:], (rows, heads, 1, head_size))
        k_cache = ops.slice_update(ops.take(k_cache, parents, axis=0), (0, 0, 0, step), ops.cast(k, k_cache.dtype))
        v_cache = ops.slice_update(ops.take(v_cache, parents, axis=0), (0, 0, step, 0), ops.cast(v, v_cache.dtype))
        if attention.attention_scale:
            q = q * ops.cast(1.0 / np.sqrt(key_size), q.dtype)

        def grouped(t):
            """(rows, h, m) → (n_inputs, h, r, m): each input's rows side by side (zeros pad)."""
            h, m = ops.shape(t)[1], ops.shape(t)[2]
            t = ops.take(ops.concatenate([t, ops.zeros_like(t[:1])], axis=0), grouped_rows, axis=0)
            return ops.transpose(ops.reshape(t, (n_inputs, -1, h, m)), (0, 2, 1, 3))

        def ungrouped(t):
            """(n_inputs, h, r, m) → (rows, h, m)."""
            h, m = ops.shape(t)[1], ops.shape(t)[3]
            return ops.take(ops.reshape(ops.transpose(t, (0, 2, 1, 3)), (-1, h, m)), group_slot, axis=0)

        source_scores = ungrouped(ops.matmul(grouped(q), ops.cast(source_k, q.dtype)))          # (rows, h, S)
        generated_scores = ops.matmul(q[:, :, None, :], ops.cast(k_cache, q.dtype))[:, :, 0]    # (rows, h, T)
        scores = ops.concatenate([source_scores, generated_scores], axis=2)[:, :, None, :]
        biases = [allowed] + ([previous_scores] if previous_scores is not None else [])
        probs, scores = attention.attention_probs(scores, biases, q.dtype, training=False)
        n_source = ops.shape(source_scores)[2]
        context = ungrouped(ops.matmul(grouped(probs[:, :, 0, :n_source]), ops.cast(source_v, q.dtype)))
        context = context + ops.matmul(probs[:, :, :, n_source:], ops.cast(v_cache, q.dtype))[:, :, 0]
        return ops.reshape(context, (rows, heads * head_size)), k_cache, v_cache, scores

    # ------------------------------------------------------------------------------- public API
    def start(self, token_ids, segment_ids, max_new_tokens, rows_per_input=1):
        """Encode a right-padded batch of sources (n_inputs, S); returns (logits (n_inputs, vocab), state).

        The state has one row per input; `step(..., rows=...)` duplicates / reorders rows.
        `rows_per_input`: the most rows (beams, samples) an input will have. Steps always run on
        n_inputs × rows_per_input rows (unused ones are padding), and the source length is rounded
        up to a multiple of 16 (with jit_compile: inputs and length to powers of two), so a search
        keeps one shape and a compiled step compiles once per such shape.
        """
        import tensorflow as tf
        token_ids = np.asarray(token_ids, dtype='int32')
        segment_ids = np.asarray(segment_ids, dtype='int32')
        if token_ids.ndim != 2 or token_ids.shape != segment_ids.shape:
            raise ValueError('start: token_ids and segment_ids must be (batch, length) arrays of the same shape; '
                             'got %s and %s' % (token_ids.shape, segment_ids.shape))
        if (token_ids[:, 0] == 0).any():
            raise ValueError('start: every source needs at least one token (id 0 is padding)')
        if max_new_tokens < 1 or rows_per_input < 1:
            raise ValueError('start: max_new_tokens and rows_per_input must be >= 1, got %r and %r'
                             % (max_new_tokens, rows_per_input))
        limit = self.position_embedding.max_length
        if int((token_ids != 0).sum(1).max()) + max_new_tokens > limit:
            raise ValueError('source length + maxlen (%d) exceeds the position table (%d positions); shorten '
                             'the source or use hierarchical_position=True'
                             % (int((token_ids != 0).sum(1).max()) + max_new_tokens, limit))
        pad = -token_ids.shape[1] % 16
        token_ids = np.pad(token_ids, [(0, 0), (0, pad)])
        segment_ids = np.pad(segment_ids, [(0, 0), (0, pad)])
        # A materialised (d, vocab) copy of the tied output matrix, made once per search: TensorFlow's
        # CPU matmul with a transposed right operand is ~10× slower for the few rows of a decoding step.
        output_kernel = tf.identity(tf.transpose(self.token_embedding.embeddings))
        logits, source, lengths = self._prefill(tf.constant(token_ids), tf.constant(segment_ids), output_kernel)
        n_inputs, length = token_ids.shape
        valid = token_ids != 0
        if self.jit_compile:
            # Few shapes for the compiled step (one XLA compilation each): the source block is padded
            # to a power-of-two length and number of inputs with invisible zero slots, so a stream of
            # batches with varying lengths and a short last batch reuses a handful of compilations.
            to_inputs, to_length = _power_of_two(n_inputs), _power_of_two(length)
            source = [(tf.pad(k, [[0, to_inputs - n_inputs], [0, 0], [0, 0], [0, to_length - length]]),
                       tf.pad(v, [[0, to_inputs - n_inputs], [0, 0], [0, to_length - length], [0, 0]]))
                      for k, v in source]
            valid = np.pad(valid, [(0, to_inputs - n_inputs), (0, to_length - length)])
        state = {'source': source, 'source_valid': tf.constant(valid),
                 'fused': self._fused_projections(), 'output_kernel': output_kernel,
                 'owner': np.arange(n_inputs), 'positions': np.asarray(lengths), 'step': 0,
                 'max_new_tokens': int(max_new_tokens), 'width': int(rows_per_input)}
        state['generated'] = self._empty_generated(len(valid) * state['width'], max_new_tokens, source[0][0].dtype)
        return np.asarray(logits), state

    def _empty_generated(self, rows, capacity, dtype):
        """Zero generated blocks, per layer: keys (rows, h, dk, T), values (rows, h, T, dv)."""
        import tensorflow as tf
        return [(tf.zeros((rows, a.heads, a.key_size, capacity), dtype),
                 tf.zeros((rows, a.heads, capacity, a.head_size), dtype)) for a, _, _, _ in self.blocks]

    def step(self, token_ids, state, rows=None):
        """Feed one token per row (after reordering rows by `rows`); returns (logits, new state)."""
        import tensorflow as tf
        if state['step'] >= state['max_new_tokens']:
            raise ValueError('step: the cache is full (max_new_tokens = %d reached)' % state['max_new_tokens'])
        current = len(state['owner'])
        rows = np.arange(current) if rows is None else np.asarray(rows, dtype=int)
        token_ids = np.asarray(token_ids, dtype='int32').reshape(-1)
        if len(token_ids) != len(rows):
            raise ValueError('step: %d token ids for %d rows' % (len(token_ids), len(rows)))
        if len(rows) and (rows.min() < 0 or rows.max() >= current):
            raise ValueError('step: rows must index the %d current rows, got %s' % (current, rows))
        owner, positions = state['owner'][rows], state['positions'][rows]
        n_inputs = int(state['source_valid'].shape[0])
        generated, width = state['generated'], state['width']
        most = int(np.bincount(owner, minlength=n_inputs).max()) if len(owner) else 0
        if most > width:  # more rows than announced: a bigger (re-compiled) shape for the rest of the search
            width = most
            extra = self._empty_generated(n_inputs * width - generated[0][0].shape[0], state['max_new_tokens'],
                                          generated[0][0].dtype)
            generated = [(tf.concat([k, more_k], 0), tf.concat([v, more_v], 0))
                         for (k, v), (more_k, more_v) in zip(generated, extra)]
        capacity = n_inputs * width
        padding = capacity - len(rows)

        def padded(values):
            return tf.constant(np.concatenate([values, np.zeros(padding, dtype='int64')]).astype('int32'))

        grouped_rows, group_slot = _grouping(owner, n_inputs, width, capacity)
        args = (padded(token_ids), padded(positions), padded(owner), padded(rows), tf.constant(grouped_rows),
                tf.constant(group_slot), tf.constant(state['step'], dtype='int32'), state['source'],
                state['source_valid'], generated, state['fused'], state['output_kernel'])
        key = (capacity, n_inputs) + tuple(state['source'][0][0].shape) + tuple(generated[0][0].shape)
        logits, generated = self._call_step(key, args)
        new_state = dict(state, generated=generated, owner=owner, positions=positions + 1, step=state['step'] + 1,
                         width=width)
        return np.asarray(logits)[:len(rows)], new_state

    def _call_step(self, key, args):
        """Run the compiled step of this shape with as little Python per call as possible.

        tf.function's dispatch hashes and checks every one of the ~80 nested arguments on each call
        (~14 ms a step, a quarter of a BERT-base beam step); the concrete function of the shape,
        looked up once, still re-checks them (~5 ms). So the flat entry of the concrete function is
        used when this TensorFlow has it — checked once per shape against the public call, whose
        result is used instead if anything differs.
        """
        import tensorflow as tf
        entry = self._concrete_steps.get(key)
        if entry is None:
            concrete = self._step.get_concrete_function(*args)
            expected = concrete(*args)
            flat_ok = False
            if _tf_private.has_concrete_flat_call(concrete):
                try:
                    got = _tf_private.call_concrete_flat(concrete, args)
                    flat_ok = (tf.nest.map_structure(lambda t: t.shape, got)
                               == tf.nest.map_structure(lambda t: t.shape, expected)) and \
                        np.array_equal(np.asarray(got[0]), np.asarray(expected[0]))
                except Exception:  # a TensorFlow whose private entry differs: use the public call
                    flat_ok = False
            self._concrete_steps[key] = (concrete, flat_ok)
            return expected
        concrete, flat_ok = entry
        if flat_ok:
            return _tf_private.call_concrete_flat(concrete, args)
        return concrete(*args)


# The Transformer steps whose computation IncrementalModel reproduces; a subclass overriding one of them
# would be decoded without its change, so it is refused instead.
_FORWARD_STEPS = ('get_inputs', 'apply_embeddings', 'apply_main_layers', 'apply_final_layers', 'call',
                  'compute_attention_bias', 'make_attention_bias', 'apply_layer_norm', 'attention_layer_name',
                  'feed_forward_layer_name')


def _check_decodable(transformer):
    """Refuse models whose forward pass the cached step does not reproduce (a clear error, never a
    silently different model)."""
    from bert4keras_ext import models
    cls = type(transformer)
    for step in _FORWARD_STEPS:
        owner = next((c for c in cls.__mro__ if step in c.__dict__), None)
        if owner is not None and owner.__module__ != models.__name__:
            raise NotImplementedError(
                'CachedDecoder: %s overrides %s() (in %s.%s), and the cached decoding step reproduces only '
                "the package's own forward pass, so it would decode a different model. Decode with an "
                'AutoRegressiveDecoder subclass whose predict() calls model.predict on the whole sequence '
                '(full recomputation) instead.' % (cls.__name__, step, owner.__module__, owner.__qualname__))
    unsupported = []
    if getattr(transformer, 'layer_norm_conds', [None])[0] is not None:
        unsupported.append('layer_norm_cond (Conditional LayerNorm)')
    if getattr(transformer, 'custom_position_ids', False):
        unsupported.append('custom_position_ids')
    if getattr(transformer, 'shared_segment_embeddings', False):
        unsupported.append('shared_segment_embeddings')
    if unsupported:
        raise NotImplementedError(
            'CachedDecoder does not support models built with %s; decode them with an AutoRegressiveDecoder '
            'whose predict() calls model.predict (full recomputation).' % ', '.join(unsupported))


def _power_of_two(n):
    """The smallest power of two >= n (and >= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def _grouping(owner, n_inputs, width, capacity):
    """Rows of each input side by side, `width` slots per input: (grouped_rows (n_inputs · width,),
    group_slot (capacity,)). Empty grouping slots point at row `capacity` (a zero pad row); padding
    rows (after the real ones) read slot 0 and are ignored."""
    rank = np.zeros(len(owner), dtype='int32')
    seen = np.zeros(n_inputs, dtype='int32')
    for row, input_index in enumerate(owner):
        rank[row] = seen[input_index]
        seen[input_index] += 1
    group_slot = np.zeros(capacity, dtype='int32')
    group_slot[:len(owner)] = owner * width + rank
    grouped_rows = np.full(n_inputs * width, capacity, dtype='int32')
    grouped_rows[group_slot[:len(owner)]] = np.arange(len(owner), dtype='int32')
    return grouped_rows, group_slot


class CachedDecoder(AutoRegressiveDecoder):
    """`beam_search` / `random_sample` (bert4keras semantics) on a cached BERT-family LM or UniLM.

    inputs: `[token_ids, segment_ids]` of the source for UniLM (`tokenizer.encode(content)`), or
    `[token_ids]` / `[token_ids, segment_ids]` of the prompt for LM. Outputs are the generated ids
    (preceded by `start_id` when one is given, as in bert4keras).
    """

    def __init__(self, transformer, end_id, maxlen, start_id=None, minlen=1, mode=None, jit_compile=True):
        super().__init__(start_id=start_id, end_id=end_id, maxlen=maxlen, minlen=minlen)
        self.engine = transformer if isinstance(transformer, IncrementalModel) else \
            IncrementalModel(transformer, mode=mode, jit_compile=jit_compile)

    def _start(self, batch_inputs, rows_per_input):
        from bert4keras_ext.snippets import sequence_padding
        sources, segments = [], []
        for inputs in batch_inputs:
            token_ids = list(inputs[0]) + list(self.first_output_ids[0])
            segment_ids = list(inputs[1]) if len(inputs) > 1 else [0] * len(inputs[0])
            first_segment = 1 if self.engine.mode == 'unilm' else 0
            segment_ids += [first_segment] * self.first_output_ids.shape[1]
            if not len(inputs[0]):
                raise ValueError('decoding needs a non-empty source/prompt')
            sources.append(token_ids)
            segments.append(segment_ids)
        return self.engine.start(sequence_padding(sources), sequence_padding(segments), self.maxlen, rows_per_input)

    def beam_search(self, inputs, topk, states=None, temperature=1, min_ends=1, no_repeat_ngram_size=None,
                    repetition_penalty=None, return_info=False):
        return self.beam_search_batch([inputs], topk, temperature=temperature, min_ends=min_ends,
                                      no_repeat_ngram_size=no_repeat_ngram_size,
                                      repetition_penalty=repetition_penalty, return_info=return_info)[0]

    def beam_search_batch(self, batch_inputs, topk, temperature=1, min_ends=1, no_repeat_ngram_size=None,
                          repetition_penalty=None, return_info=False):
        """Beam search for many inputs in one batch: rows = live beams of all inputs, one network
        call per step. Each input follows `decoders.Beam`, so results equal one-at-a-time search."""
        check_search_args('beam_search', temperature, min_ends, no_repeat_ngram_size, repetition_penalty,
                          topk=topk, beam=True)
        beams = [Beam(self.first_output_ids[0], topk, self.end_id, min_ends) for _ in batch_inputs]
        logits, state = self._start(batch_inputs, topk)
        check_token_ids_fit(logits.shape[-1], self.start_id, self.end_id, 'beam_search')
        rows_of = [[b] for b in range(len(batch_inputs))]  # state rows holding each input's live beams
        for step in range(self.maxlen):
            log_probs = tempered_log_softmax(logits, search_temperature(temperature))
            new_rows, new_tokens = [], []
            for beam, rows in zip(beams, rows_of):
                if beam.done:
                    continue
                scores = self.adjust_scores(log_probs[rows], beam.output_ids(), no_repeat_ngram_size,
                                            repetition_penalty)
                if temperature == 0:
                    scores = greedy_log_probs(scores)
                parents = beam.advance(scores, last_step=step == self.maxlen - 1)
                if beam.done:
                    continue
                start = len(new_rows)
                new_rows.extend(rows[p] for p in parents)
                new_tokens.extend(ids[-1] for ids, _ in beam.alive)
                rows[:] = range(start, len(new_rows))
            if all(beam.done for beam in beams):
                break
            logits, state = self.engine.step(np.array(new_tokens), state, rows=np.array(new_rows))
        return [self._result(b.best_ids, b.best_score, b.finished_best, return_info) for b in beams]

    def random_sample(self, inputs, n, topk=None, topp=None, states=None, temperature=1, min_ends=1,
                      no_repeat_ngram_size=None, repetition_penalty=None, return_info=False, seed=None,
                      always_allow_end=False):
        return self.random_sample_batch([inputs], n, topk=topk, topp=topp, temperature=temperature,
                                        min_ends=min_ends, no_repeat_ngram_size=no_repeat_ngram_size,
                                        repetition_penalty=repetition_penalty, return_info=return_info,
                                        seed=seed, always_allow_end=always_allow_end)[0]

    def random_sample_batch(self, batch_inputs, n, topk=None, topp=None, temperature=1, min_ends=1,
                            no_repeat_ngram_size=None, repetition_penalty=None, return_info=False, seed=None,
                            always_allow_end=False):
        """`n` samples for each input, all rows in one batch; returns one list of samples per input."""
        check_search_args('random_sample', temperature, min_ends, no_repeat_ngram_size, repetition_penalty,
                          topk=topk, topp=topp, n=n)
        rng = np.random if seed is None else np.random.RandomState(seed)
        n_inputs = len(batch_inputs)
        logits, state = self._start(batch_inputs, n)
        check_token_ids_fit(logits.shape[-1], self.start_id, self.end_id, 'random_sample')
        rows = np.repeat(np.arange(n_inputs), n)          # state row of each live sample
        owner = np.repeat(np.arange(n_inputs), n)         # which input each live sample belongs to
        outputs = np.repeat(self.first_output_ids, n * n_inputs, axis=0)
        logits = logits[rows]
        results = [[] for _ in range(n_inputs)]
        for step in range(self.maxlen):
            log_probs = self.adjust_scores(tempered_log_softmax(logits, search_temperature(temperature)), outputs,
                                           no_repeat_ngram_size, repetition_penalty)
            if temperature == 0:
                log_probs = greedy_log_probs(log_probs)
            probas = self.filter_probas(np.exp(log_probs), topk, topp, always_allow_end)
            sampled = sample_rows(probas, rng)
            outputs = np.concatenate([outputs, sampled[:, None]], 1)
            done = (sampled == self.end_id) & ((outputs == self.end_id).sum(1) >= min_ends)
            if step == self.maxlen - 1:
                done[:] = True
            for i in np.where(done)[0]:
                finished = bool(outputs[i, -1] == self.end_id and (outputs[i] == self.end_id).sum() >= min_ends)
                results[owner[i]].append((outputs[i], finished))
            keep = ~done
            if not keep.any():
                break
            outputs, owner, tokens = outputs[keep], owner[keep], sampled[keep]
            logits, state = self.engine.step(tokens, state, rows=rows[keep])
            rows = np.arange(len(tokens))
        if return_info:
            return [([ids for ids, _ in r], [{'finished': f} for _, f in r]) for r in results]
        return [[ids for ids, _ in r] for r in results]
