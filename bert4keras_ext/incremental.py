"""`IncrementalModel`: a built LM / UniLM run step by step through its own layers, with a key/value cache.

The search bookkeeping around `Transformer.cached_call` (`bert4keras_ext.caching`): a prefill of the sources,
then one new token per row per step, rows following their parents as beams move, shapes fixed for XLA, the
compiled step called as a concrete function. `generation.CachedDecoder` searches with it; `decoders`'
`last_token(model).predict` reuses it transparently for bert4keras-style decoders (`prefix_reuse`).
"""
import numpy as np

from bert4keras_ext import _tf_private
from bert4keras_ext.backend import keras, ops
from bert4keras_ext.caching import Decoding, PrefixGrouping, prefix_grouping
from bert4keras_ext.layers import AttentionMask

__all__ = ['IncrementalModel']


class IncrementalModel:
    """Step-by-step execution of a built LM / UniLM through its own layers, with a key/value cache.

    Every step calls `Transformer.cached_call`: the model's own `apply_embeddings` →
    `apply_main_layers` → `apply_final_layers` on the new token of each row, each attention layer
    reading and extending its cache (`bert4keras_ext.caching`). So every option of the builder
    (log-n scale, RealFormer scores, hierarchical positions, ALBERT's shared block, shared segment
    embeddings) and a user subclass decode with exactly the model they train.

    The cache has two blocks per attention call. The **prefix** block holds the keys/values of the
    encoded sources, one row per *input* (never per beam or sample), keys stored transposed (n_inputs,
    heads, key_size, S) so a step multiplies without transposing; it is written once and never copied.
    The **rows** block holds one row per beam/sample with T = max_new_tokens slots: rows follow their
    parents (beams move) and each step writes one slot. Shapes stay fixed for a whole search (rows padded
    to n_inputs × rows_per_input), so the XLA-compiled step compiles once.

    Args:
        transformer: the `Transformer` from `build_transformer_model(..., return_keras_model=False)`
            (with_mlm enabled, as `application='lm'|'unilm'` does by default).
        mode: 'unilm' or 'lm' (default: taken from the model's attention mask).
        jit_compile: compile the step with XLA. Measured on 2 CPU cores (BERT-base, benchmarks/
            bench_decoding.py) it fuses the ~40 small attention/cache ops per layer and makes a step
            ~1.35× faster, at a compilation (~10 s for BERT-base) per shape: inputs and source length
            rounded up to powers of two, rows per input, maxlen. The prefill is never compiled.
        verify: compare the cached model with the full model once, on the first search (a prefill and
            one step, against `transformer.model`), and raise a clear error if they differ. 'auto' does it
            when the model class overrides a forward step outside this package or calls a layer class
            that is neither cache-aware nor known to be position-wise.
    """

    def __init__(self, transformer, mode=None, jit_compile=True, verify='auto'):
        import tensorflow as tf
        if not getattr(transformer, 'with_mlm', False):
            raise ValueError('IncrementalModel needs a model with an MLM head: build it with application='
                             "'unilm' or 'lm' (or with_mlm=True)")
        if transformer.with_mlm not in (True, 'softmax', 'linear'):
            raise ValueError("IncrementalModel: the MLM head's activation must be softmax or 'linear' (logits), "
                             'got with_mlm=%r' % (transformer.with_mlm,))
        masks = {layer.mode for layer in transformer.layers.values() if isinstance(layer, AttentionMask)}
        if mode is None:
            mode = 'unilm' if 'unilm' in masks else 'lm' if 'lm' in masks else None
            if mode is None:
                raise ValueError("IncrementalModel: the model has no LM or UniLM mask; build it with "
                                 "application='lm' or 'unilm', or pass mode= explicitly")
        if mode not in ('lm', 'unilm'):
            raise ValueError("IncrementalModel: mode must be 'lm' or 'unilm', got %r" % (mode,))
        if verify not in ('auto', True, False):
            raise ValueError("IncrementalModel: verify must be 'auto', True or False, got %r" % (verify,))
        _check_decodable(transformer)
        self.transformer = transformer
        self.mode = mode
        self.jit_compile = bool(jit_compile)
        self.position_embedding = transformer.layers.get(transformer.prefixed('Embedding-Position'))
        self.with_segments = len(transformer.inputs) > 1
        self._verify = verify
        self._overrides = _overridden_steps(transformer)
        self._cache_layers = None  # the cache-aware layer calls, in call order (known after the first prefill)
        self._unverified_layers = set()
        # the prefill runs once per search: not worth an XLA compilation per source shape
        self._prefill = tf.function(self._prefill_fn, reduce_retracing=True)
        self._step = tf.function(self._step_fn, jit_compile=jit_compile)
        self._concrete_steps = {}

    # ------------------------------------------------------------------------------- compiled steps
    def _inputs(self, token_ids, segment_ids):
        return [token_ids, segment_ids] if self.with_segments else [token_ids]

    @staticmethod
    def _token_output(outputs):
        """The per-token distribution among the model's outputs (the last one, as bert4keras' decoders take)."""
        return outputs[-1] if isinstance(outputs, (list, tuple)) else outputs

    def _prefill_fn(self, token_ids, segment_ids):
        """All source positions at once (b = n_inputs, S). Returns (logits at each row's last real token
        (b, vocab), caches, lengths (b,))."""
        outputs, caches, context = self.transformer.cached_call(self._inputs(token_ids, segment_ids))
        self._cache_layers = context.layers  # Python side effect at trace time: the same on every trace
        self._unverified_layers = set(context.unverified)
        logits = ops.cast(self._token_output(outputs), 'float32')
        lengths = ops.sum(ops.cast(ops.not_equal(token_ids, 0), 'int32'), axis=1)
        last = ops.take_along_axis(logits, ops.reshape(lengths - 1, (-1, 1, 1)), axis=1)[:, 0]
        return last, caches, lengths

    def _step_fn(self, token_ids, positions, owner, parents, grouped_rows, group_slot, index, rows_caches,
                 fixed_caches):
        """One new token per row.

        token_ids, positions, owner (input of each row), parents (rows-block row each row continues),
        group_slot (row → slot in the (n_inputs · r, ...) grouping): (rows,). grouped_rows: (n_inputs · r,)
        row filling each grouping slot, `rows` for an empty slot. index: the slot of the new token in the
        rows block. rows_caches / fixed_caches: per cache-aware layer call, the parts that follow the rows
        (reordered by `parents` here) and the parts that do not (prefix blocks, constants).
        Returns (logits (rows, vocab), rows_caches).
        """
        segment_id = 1 if self.mode == 'unilm' else 0
        rows_caches = [{name: ops.take(t, parents, axis=0) for name, t in part.items()} for part in rows_caches]
        caches = [dict(fixed, rows=rows) if rows else dict(fixed) for rows, fixed in zip(rows_caches, fixed_caches)]
        decoding = Decoding(positions[:, None], index, PrefixGrouping(owner, grouped_rows, group_slot))
        token_ids = token_ids[:, None]
        outputs, caches, _ = self.transformer.cached_call(
            self._inputs(token_ids, ops.full(ops.shape(token_ids), segment_id, dtype='int32')), caches, decoding)
        logits = ops.cast(self._token_output(outputs), 'float32')[:, 0]
        return logits, [cache.get('rows', {}) for cache in caches]

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
        if self.position_embedding is not None:
            limit = self.position_embedding.max_length
            longest = int((token_ids != 0).sum(1).max())
            if longest + max_new_tokens > limit:
                raise ValueError('source length + maxlen (%d) exceeds the position table (%d positions); shorten '
                                 'the source or use hierarchical_position=True' % (longest + max_new_tokens, limit))
        original = (token_ids, segment_ids)
        pad = -token_ids.shape[1] % 16
        token_ids = np.pad(token_ids, [(0, 0), (0, pad)])
        segment_ids = np.pad(segment_ids, [(0, 0), (0, pad)])
        logits, caches, lengths = self._prefill(tf.constant(token_ids), tf.constant(segment_ids))
        n_inputs, length = token_ids.shape
        prefix_rows, prefix_length = n_inputs, length
        if self.jit_compile:
            # Few shapes for the compiled step (one XLA compilation each): the prefix block is padded
            # to a power-of-two length and number of inputs with invisible slots, so a stream of batches
            # with varying lengths and a short last batch reuses a handful of compilations.
            prefix_rows, prefix_length = _power_of_two(n_inputs), _power_of_two(length)
        width = int(rows_per_input)
        continued = [layer.continue_cache(cache, prefix_rows * width, int(max_new_tokens), prefix_rows, prefix_length)
                     for layer, cache in zip(self._cache_layers, caches)]
        state = {'rows_caches': [c.get('rows', {}) for c in continued],
                 'fixed_caches': [{k: v for k, v in c.items() if k != 'rows'} for c in continued],
                 'n_prefix': prefix_rows, 'owner': np.arange(n_inputs), 'positions': np.asarray(lengths), 'step': 0,
                 'max_new_tokens': int(max_new_tokens), 'width': width}
        logits = np.asarray(logits)
        if self._verify is True or (self._verify == 'auto' and (self._overrides or self._unverified_layers)):
            self._check_against_full_model(original, logits, state)
            self._verify = False
        return logits, state

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
        n_prefix = state['n_prefix']
        rows_caches, width = state['rows_caches'], state['width']
        most = int(np.bincount(owner, minlength=n_prefix).max()) if len(owner) else 0
        if most > width:  # more rows than announced: a bigger (re-compiled) shape for the rest of the search
            extra = n_prefix * (most - width)
            width = most
            rows_caches = [{name: tf.concat([t, tf.zeros((extra,) + tuple(t.shape[1:]), t.dtype)], 0)
                            for name, t in part.items()} for part in rows_caches]
        capacity = n_prefix * width
        padding = capacity - len(rows)

        def padded(values):
            return tf.constant(np.concatenate([values, np.zeros(padding, dtype='int64')]).astype('int32'))

        grouped_rows, group_slot = prefix_grouping(owner, n_prefix, width, capacity)
        args = (padded(token_ids), padded(positions), padded(owner), padded(rows), tf.constant(grouped_rows),
                tf.constant(group_slot), tf.constant(state['step'], dtype='int32'), rows_caches,
                state['fixed_caches'])
        key = (capacity, n_prefix) + tuple(tuple(t.shape) for part in rows_caches + state['fixed_caches']
                                           for t in tf.nest.flatten(part))
        logits, rows_caches = self._call_step(key, args)
        new_state = dict(state, rows_caches=rows_caches, owner=owner, positions=positions + 1,
                         step=state['step'] + 1, width=width)
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

    # ------------------------------------------------------------------------------- verification
    def _check_against_full_model(self, sources, logits, state):
        """Compare a prefill and one step with `transformer.model` on the whole sequences; raise a clear
        error if they differ (the model does something the cache does not carry)."""
        token_ids, segment_ids = sources
        model = self.transformer.model
        embedding = self.transformer.layers.get(self.transformer.prefixed('Embedding-Token'))
        dtype = 'float32' if embedding is None else keras.backend.standardize_dtype(embedding.compute_dtype)
        tolerance = 1e-4 if dtype == 'float32' else 2e-2
        n_inputs = len(token_ids)
        extra = [int(ids[0]) for ids in token_ids]  # any valid token will do: here each source's first
        step_logits, _ = self.step(np.array(extra), state, rows=np.arange(n_inputs))
        worst = 0.0
        for i in range(n_inputs):
            length = int((token_ids[i] != 0).sum())
            ids, segments = token_ids[i, :length], segment_ids[i, :length]
            for got, sequence, segment in ((logits[i], ids, segments),
                                           (step_logits[i], np.append(ids, extra[i]),
                                            np.append(segments, 1 if self.mode == 'unilm' else 0))):
                inputs = self._inputs(np.array([sequence], 'float32'), np.array([segment], 'float32'))
                expected = np.asarray(self._token_output(model(inputs, training=False)), 'float64')[0, -1]
                if self.transformer.with_mlm == 'linear':
                    expected = expected - expected.max()
                    expected = np.exp(expected) / np.exp(expected).sum()
                got = np.exp(got - got.max())
                worst = max(worst, float(np.abs(got / got.sum() - expected).max()))
        if not worst <= tolerance:
            reasons = []
            if self._overrides:
                reasons.append('it overrides %s' % ', '.join(self._overrides))
            if self._unverified_layers:
                reasons.append('it calls layers without a decoding cache that may mix positions: %s'
                               % ', '.join(sorted(self._unverified_layers)))
            raise NotImplementedError(
                'CachedDecoder: %s decoded with the key/value cache gives next-token probabilities that differ '
                'from the full model by up to %.3g (%s). Layers that mix positions must be cache-aware '
                '(see bert4keras_ext.caching) and be created through Transformer.apply. Decode this model with '
                'an AutoRegressiveDecoder subclass whose predict() calls model.predict on the whole sequence '
                '(full recomputation) instead.' % (type(self.transformer).__name__, worst,
                                                   '; '.join(reasons) or 'no reason found'))


# The Transformer steps of the forward pass: a subclass overriding one of them outside this package is
# decoded through its own code, and checked once against the full model (`verify='auto'`).
_FORWARD_STEPS = ('get_inputs', 'apply_embeddings', 'apply_main_layers', 'apply_final_layers', 'call',
                  'compute_attention_bias', 'make_attention_bias', 'apply_layer_norm', 'apply',
                  'attention_layer_name', 'feed_forward_layer_name')


def _overridden_steps(transformer):
    """'Class.step' for each forward step a class outside the package's own modules overrides."""
    found = []
    for step in _FORWARD_STEPS:
        owner = next((c for c in type(transformer).__mro__ if step in c.__dict__), None)
        if owner is not None and not owner.__module__.startswith('bert4keras_ext.'):
            found.append('%s.%s()' % (owner.__qualname__, step))
    return found


def _check_decodable(transformer):
    """Refuse what the decoder cannot feed: extra model inputs and conditional layer normalisation."""
    unsupported = []
    if getattr(transformer, 'layer_norm_conds', [None])[0] is not None:
        unsupported.append('layer_norm_cond (Conditional LayerNorm)')
    if getattr(transformer, 'custom_position_ids', False):
        unsupported.append('custom_position_ids')
    expected = 1 + (getattr(transformer, 'segment_vocab_size', 0) > 0)
    if not unsupported and len(transformer.inputs) != expected:
        unsupported.append('inputs other than token ids and segment ids (%s)'
                           % ', '.join(getattr(t, 'name', str(t)) for t in transformer.inputs[expected:]))
    if unsupported:
        raise NotImplementedError(
            'CachedDecoder does not support models built with %s; decode them with an AutoRegressiveDecoder '
            'whose predict() calls model.predict (full recomputation).' % ', '.join(unsupported))


def _power_of_two(n):
    """The smallest power of two >= n (and >= 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()
