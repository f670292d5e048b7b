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

Attention rule (the same as the masks of `application='lm'|'unilm'`): every cached position has an
*order* — its index for 'lm', the running count of segment-1 tokens (cumsum of segment ids) for
'unilm' — and a query sees the valid keys whose order is ≤ its own. Rows of a batch have different
source lengths: their new tokens share a cache slot while position ids stay per row, and padded slots
are never visible, so each row computes exactly what it would alone.
"""
import numpy as np

from bert4keras_ext.backend import keras, ops
from bert4keras_ext.decoders import AutoRegressiveDecoder, Beam, _log_softmax

__all__ = ['IncrementalModel', 'CachedDecoder']


class IncrementalModel:
    """Step-by-step execution of a built BERT / ALBERT with an MLM head, using a key/value cache.

    Args:
        transformer: the `Transformer` from `build_transformer_model(..., return_keras_model=False)`
            (with_mlm enabled, as `application='lm'|'unilm'` does by default).
        mode: 'unilm' or 'lm' (default: taken from the transformer's application).
        jit_compile: compile the step with XLA (a switch: measure before turning it on).
    """

    def __init__(self, transformer, mode=None, jit_compile=False):
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
        self.transformer = transformer
        self.mode = mode
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
        self._prefill = tf.function(self._prefill_fn, jit_compile=jit_compile, reduce_retracing=True)
        self._step = tf.function(self._step_fn, jit_compile=jit_compile, reduce_retracing=True)

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

    def _blocks(self, x, caches, write, allowed):
        """Run all blocks on new tokens x (b, t, d) and store their keys/values.

        `write(cache, new, i)` returns layer i's cache with `new` stored: the prefill builds the cache
        by padding, a step overwrites one slot with a `where` (the XLA-only dynamic-update-slice op
        behind `ops.slice_update` is slow outside XLA on TensorFlow).
        """
        new_caches, previous_scores = [], None
        for i, (attention, attention_norm, feed_forward, feed_forward_norm) in enumerate(self.blocks):
            q = attention._split_heads(attention.q_dense(x), attention.key_size)
            k = attention._split_heads(attention.k_dense(x), attention.key_size)
            v = attention._split_heads(attention.v_dense(x), attention.head_size)
            k_cache, v_cache = write(k, v, i)
            new_caches.append((k_cache, v_cache))
            if attention.attention_scale:
                q = q * ops.cast(1.0 / np.sqrt(attention.key_size), q.dtype)
            scores = ops.einsum('bqhd,bkhd->bhqk', q, ops.cast(k_cache, q.dtype))
            biases = [allowed]
            if self.residual and previous_scores is not None:
                biases.append(previous_scores)
            context, scores = attention.attend(scores, ops.cast(v_cache, q.dtype), biases, training=False)
            previous_scores = scores
            context = ops.reshape(context, tuple(ops.shape(context)[:2]) + (attention.heads * attention.head_size,))
            x = attention_norm(x + attention.o_dense(context))
            x = feed_forward_norm(x + feed_forward(x))
        return x, new_caches

    def _logits(self, h, output_kernel):
        """MLM head on (b, d) states; `output_kernel` is the (d, vocab) transposed token embedding."""
        dense, norm, bias = self.mlm_layers
        h = norm(dense(h))
        return ops.cast(bias(ops.matmul(h, ops.cast(output_kernel, h.dtype))), 'float32')

    # ------------------------------------------------------------------------------- compiled steps
    def _prefill_fn(self, token_ids, segment_ids, total, output_kernel):
        """All source positions at once. Returns (logits at each row's last real token, caches,
        order (b, S), valid (b, S), last order (b,))."""
        valid = ops.not_equal(token_ids, 0)
        n = ops.shape(token_ids)[1]
        if self.mode == 'unilm':
            order = ops.cumsum(ops.cast(segment_ids, 'int32'), axis=1)
        else:
            order = ops.broadcast_to(ops.arange(n, dtype='int32')[None], ops.shape(token_ids))
        positions = ops.broadcast_to(ops.arange(n, dtype='int32')[None], ops.shape(token_ids))
        allowed = ops.logical_and(valid[:, None, :], order[:, None, :] <= order[:, :, None])[:, None]
        x = self._embed(token_ids, segment_ids, positions)
        pad = [[0, 0], [0, total - n], [0, 0], [0, 0]]
        allowed = ops.pad(allowed, [[0, 0], [0, 0], [0, 0], [0, total - n]], constant_values=False)
        x, caches = self._blocks(x, None, lambda k, v, i: (ops.pad(k, pad), ops.pad(v, pad)), allowed)
        lengths = ops.sum(ops.cast(valid, 'int32'), axis=1)
        last = ops.take_along_axis(x, ops.reshape(lengths - 1, (-1, 1, 1)), axis=1)[:, 0]
        last_order = ops.take_along_axis(order, ops.reshape(lengths - 1, (-1, 1)), axis=1)[:, 0]
        return self._logits(last, output_kernel), caches, order, valid, lengths, last_order

    def _step_fn(self, token_ids, rows, slot, caches, order, valid, positions, orders, segment_id, output_kernel,
                 reorder=True):
        """One new token per row. `rows` reorders/duplicates the cached rows first (beam search).

        token_ids, positions, orders: (b,); order / valid: (b, T_cache) bookkeeping of cached slots.
        Returns (logits (b, vocab), caches, order, valid).
        """
        if reorder:  # a Python flag (one trace each): sampling rows rarely move, so skip the copies then
            caches = [(ops.take(k, rows, axis=0), ops.take(v, rows, axis=0)) for k, v in caches]
            order = ops.take(order, rows, axis=0)
            valid = ops.take(valid, rows, axis=0)
        slot_mask = ops.arange(ops.shape(order)[1]) == slot
        order = ops.where(slot_mask[None], orders[:, None], order)
        valid = ops.logical_or(valid, slot_mask[None])
        allowed = ops.logical_and(valid, order <= orders[:, None])[:, None, None, :]
        segments = ops.full(ops.shape(token_ids), segment_id, dtype='int32')
        x = self._embed(token_ids[:, None], segments[:, None], positions[:, None])
        at_slot = slot_mask[None, :, None, None]

        def write(k, v, i):
            k_cache, v_cache = caches[i]
            return (ops.where(at_slot, ops.cast(k, k_cache.dtype), k_cache),
                    ops.where(at_slot, ops.cast(v, v_cache.dtype), v_cache))

        x, caches = self._blocks(x, caches, write, allowed)
        return self._logits(x[:, 0], output_kernel), caches, order, valid

    # ------------------------------------------------------------------------------- public API
    def start(self, token_ids, segment_ids, max_new_tokens):
        """Encode a right-padded batch of sources (b, S); returns (logits (b, vocab), state)."""
        import tensorflow as tf
        token_ids = np.asarray(token_ids, dtype='int32')
        segment_ids = np.asarray(segment_ids, dtype='int32')
        if token_ids.ndim != 2 or token_ids.shape != segment_ids.shape:
            raise ValueError('start: token_ids and segment_ids must be (batch, length) arrays of the same shape; '
                             'got %s and %s' % (token_ids.shape, segment_ids.shape))
        if (token_ids[:, 0] == 0).any():
            raise ValueError('start: every source needs at least one token (id 0 is padding)')
        b, s = token_ids.shape
        total = s + max_new_tokens
        limit = self.position_embedding.max_length
        if int((token_ids != 0).sum(1).max()) + max_new_tokens > limit:
            raise ValueError('source length + maxlen (%d) exceeds the position table (%d positions); shorten '
                             'the source or use hierarchical_position=True'
                             % (int((token_ids != 0).sum(1).max()) + max_new_tokens, limit))
        # A materialised (d, vocab) copy of the tied output matrix, made once per search: TensorFlow's
        # CPU matmul with a transposed right operand is ~10× slower for the few rows of a decoding step.
        output_kernel = tf.identity(tf.transpose(self.token_embedding.embeddings))
        logits, caches, order, valid, lengths, last_order = self._prefill(
            tf.constant(token_ids), tf.constant(segment_ids), tf.constant(total, dtype='int32'), output_kernel)
        order = tf.pad(order, [[0, 0], [0, max_new_tokens]])
        valid = tf.pad(valid, [[0, 0], [0, max_new_tokens]])
        state = {'caches': caches, 'order': order, 'valid': valid, 'slot': s, 'total': total,
                 'output_kernel': output_kernel,
                 'positions': np.asarray(lengths), 'orders': np.asarray(last_order)}
        return np.asarray(logits), state

    def step(self, token_ids, state, rows=None):
        """Feed one token per row (after reordering rows by `rows`); returns (logits, new state)."""
        import tensorflow as tf
        if state['slot'] >= state['total']:
            raise ValueError('step: the cache is full (max_new_tokens reached)')
        current = len(state['positions'])
        rows = np.arange(current) if rows is None else np.asarray(rows)
        reorder = not (len(rows) == current and (rows == np.arange(current)).all())
        positions = state['positions'][rows]
        orders = state['orders'][rows] + 1 if self.mode == 'unilm' else positions
        segment_id = 1 if self.mode == 'unilm' else 0
        logits, caches, order, valid = self._step(
            tf.constant(np.asarray(token_ids, dtype='int32')), tf.constant(rows.astype('int32')),
            tf.constant(state['slot'], dtype='int32'), state['caches'], state['order'], state['valid'],
            tf.constant(positions.astype('int32')), tf.constant(orders.astype('int32')),
            tf.constant(segment_id, dtype='int32'), state['output_kernel'], reorder=reorder)
        new_state = dict(state, caches=caches, order=order, valid=valid, slot=state['slot'] + 1,
                         positions=positions + 1, orders=orders)
        return np.asarray(logits), new_state


class CachedDecoder(AutoRegressiveDecoder):
    """`beam_search` / `random_sample` (bert4keras semantics) on a cached BERT-family LM or UniLM.

    inputs: `[token_ids, segment_ids]` of the source for UniLM (`tokenizer.encode(content)`), or
    `[token_ids]` / `[token_ids, segment_ids]` of the prompt for LM. Outputs are the generated ids
    (preceded by `start_id` when one is given, as in bert4keras).
    """

    def __init__(self, transformer, end_id, maxlen, start_id=None, minlen=1, mode=None, jit_compile=False):
        super().__init__(start_id=start_id, end_id=end_id, maxlen=maxlen, minlen=minlen)
        self.engine = transformer if isinstance(transformer, IncrementalModel) else \
            IncrementalModel(transformer, mode=mode, jit_compile=jit_compile)

    def _start(self, batch_inputs):
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
        return self.engine.start(sequence_padding(sources), sequence_padding(segments), self.maxlen)

    def beam_search(self, inputs, topk, states=None, temperature=1, min_ends=1, no_repeat_ngram_size=None,
                    repetition_penalty=None, return_info=False):
        return self.beam_search_batch([inputs], topk, temperature=temperature, min_ends=min_ends,
                                      no_repeat_ngram_size=no_repeat_ngram_size,
                                      repetition_penalty=repetition_penalty, return_info=return_info)[0]

    def beam_search_batch(self, batch_inputs, topk, temperature=1, min_ends=1, no_repeat_ngram_size=None,
                          repetition_penalty=None, return_info=False):
        """Beam search for many inputs in one batch: rows = live beams of all inputs, one network
        call per step. Each input follows `decoders.Beam`, so results equal one-at-a-time search."""
        beams = [Beam(self.first_output_ids[0], topk, self.end_id, min_ends) for _ in batch_inputs]
        logits, state = self._start(batch_inputs)
        rows_of = [[b] for b in range(len(batch_inputs))]  # state rows holding each input's live beams
        for step in range(self.maxlen):
            log_probs = _log_softmax(logits / temperature)
            new_rows, new_tokens = [], []
            for beam, rows in zip(beams, rows_of):
                if beam.done:
                    continue
                scores = self.adjust_scores(log_probs[rows], beam.output_ids(), no_repeat_ngram_size,
                                            repetition_penalty)
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
        if n < 1:
            raise ValueError('random_sample: n must be >= 1, got %r' % (n,))
        rng = np.random if seed is None else np.random.RandomState(seed)
        n_inputs = len(batch_inputs)
        logits, state = self._start(batch_inputs)
        rows = np.repeat(np.arange(n_inputs), n)          # state row of each live sample
        owner = np.repeat(np.arange(n_inputs), n)         # which input each live sample belongs to
        outputs = np.repeat(self.first_output_ids, n * n_inputs, axis=0)
        logits = logits[rows]
        results = [[] for _ in range(n_inputs)]
        for step in range(self.maxlen):
            log_probs = self.adjust_scores(_log_softmax(logits / temperature), outputs,
                                           no_repeat_ngram_size, repetition_penalty)
            probas = self.filter_probas(np.exp(log_probs), topk, topp, always_allow_end)
            sampled = np.array([rng.choice(len(p), p=p) for p in probas])
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
