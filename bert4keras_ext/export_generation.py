"""Export a LM / UniLM with its whole decoding loop in the graph, for TF Serving (no Python per token).

`CachedDecoder` drives the search from Python: one network call per step, the search bookkeeping in
numpy. TF Serving runs graphs only, so here the same searches are written with TensorFlow ops: a prefill
and every step go through the model's own `Transformer.cached_call` (`bert4keras_ext.caching`), and a
`tf.while_loop` carries the key/value caches and the search state from token to token::

    transformer = build_transformer_model(config, ckpt, application='unilm', return_keras_model=False)
    export_generator(transformer, 'export/title/1', end_id=tokenizer._token_end_id, maxlen=32)
    # in any process with TensorFlow only:
    loaded = tf.saved_model.load('export/title/1')
    out = loaded.beam_search(token_ids, segment_ids, tf.constant(3))   # out['output_ids'], out['lengths'], ...

Cache layout (why it differs from `IncrementalModel`'s): every signature takes batches of any size and
length, so no shape is known while tracing, and the prefix block of `continue_cache` pads to sizes known
in Python. Instead the sources are right-padded with `maxlen` empty slots and prefilled as one rows
block of S + maxlen slots per row (`Transformer.cached_call` without caches); a step writes its token
into the next slot (the same slot for every row, while position ids stay per row: padded slots are
invisible keys, so each row computes what it would alone). Beams copy their input's rows block (a
gather, once); beam moves reorder the rows, as in `IncrementalModel`.

Search semantics are `CachedDecoder`'s (bert4keras'): `end_id` ends an output once it holds `min_ends`
end tokens, `minlen` forbids the end token before, outputs start with `start_id` when one is given,
beam search follows `decoders.Beam` (finished outputs set aside, the beam shrinking by as many, stop when
the best finished output scores at least the best live one), sampling filters top-k then top-p as
`AutoRegressiveDecoder.filter_probas` (ties to the lowest ids, the token that reaches p kept) but draws
with TensorFlow's stateless random ops, so samples are reproducible per seed, not equal to numpy's.

(Over 400 lines: the three searches are graph code sharing one prefill, one step and the export; split,
each part would need the others' private layout.) docs/serving.md, "Generation", is the user guide.
"""
import os

import numpy as np

from bert4keras_ext.backend import ops
from bert4keras_ext.caching import Decoding
from bert4keras_ext.decoding_args import check_int
from bert4keras_ext.incremental import IncrementalModel

__all__ = ['GraphGenerator', 'export_generator', 'SIGNATURES']

SIGNATURES = ('greedy', 'sample', 'beam_search')
_NEG = -1e30  # log-probability of a forbidden token, as decoding_args (finite: no NaN from arithmetic)


class GraphGenerator:
    """Greedy search, sampling and beam search of a LM / UniLM as TensorFlow graph functions.

    Each search function takes a right-padded batch `token_ids` (b, S) int32 (id 0 = padding, every row
    at least one token), `segment_ids` (b, S) int32 when the model has a segment input, and returns a dict:
    'output_ids' (b, L) int32 — the generated ids (preceded by `start_id` when given), 0 after each
    row's end, L the longest output of the batch; 'lengths' (b,) int32; 'finished' (b,) bool (False:
    cut at `maxlen` without the end token); beam search adds 'scores' (b,) float32, the sum of the
    output's log-probabilities.

    Args:
        transformer: the `Transformer` of `build_transformer_model(..., application='lm'|'unilm',
            return_keras_model=False)` (with its MLM head).
        end_id: the id that ends an output (None: outputs run to `maxlen`).
        maxlen: the most generated tokens per output.
        start_id: id appended to each source and returned first in each output (None: none, as UniLM
            seq2seq does).
        minlen: the end token is forbidden while the output (counting `start_id` and the end token)
            would be shorter.
        min_ends: an output ends when it holds this many end tokens.
        mode: 'unilm' or 'lm' (default: the model's attention mask).
    """

    def __init__(self, transformer, end_id, maxlen, start_id=None, minlen=1, min_ends=1, mode=None):
        where = 'export_generator'
        self.maxlen = check_int('maxlen', maxlen, 1, where=where)
        self.minlen = check_int('minlen', minlen, 0, where=where)
        self.min_ends = check_int('min_ends', min_ends, 1, where=where)
        self.end_id = check_int('end_id', end_id, 0, allow_none=True, where=where)
        self.start_id = check_int('start_id', start_id, 0, allow_none=True, where=where)
        # IncrementalModel refuses what cached decoding cannot run (no MLM head, no LM/UniLM mask,
        # conditional layer norm, extra inputs) and finds the mode; its start() below checks a model
        # with user-overridden steps against the full model, as CachedDecoder does.
        engine = IncrementalModel(transformer, mode=mode, jit_compile=False)
        self.transformer = transformer
        self.mode = engine.mode
        self.with_segments = engine.with_segments
        self.vocab_size = int(transformer.vocab_size)
        for name, value in (('end_id', self.end_id), ('start_id', self.start_id)):
            if value is not None and value >= self.vocab_size:
                raise ValueError('%s: %s=%d is outside the model vocabulary (ids 0..%d)'
                                 % (where, name, value, self.vocab_size - 1))
        self.first_ids = [] if self.start_id is None else [self.start_id]
        self.limit = None if engine.position_embedding is None else int(engine.position_embedding.max_length)
        if self.limit is not None and 1 + len(self.first_ids) + self.maxlen > self.limit:
            raise ValueError('%s: maxlen=%d leaves no room for a source in the position table (%d positions)'
                             % (where, self.maxlen, self.limit))
        probe = self.first_ids[:1] or [self.end_id if self.end_id is not None else 1]
        engine.start(np.array([probe]), np.zeros((1, 1), 'int32'), 1)  # verify='auto' (see above)

    # ------------------------------------------------------------------------------- model calls
    def _inputs(self, token_ids, segment_ids):
        return [token_ids, segment_ids] if self.with_segments else [token_ids]

    @staticmethod
    def _token_logits(outputs):
        """The per-token scores among the model's outputs (the last one, as the decoders take)."""
        outputs = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        return ops.cast(outputs, 'float32')

    def _prefill(self, token_ids, segment_ids):
        """Checks the batch, appends `start_id`, prefills S' + maxlen slots per row.

        Returns (logits (b, vocab) at each row's last token, rows caches, fixed caches, lengths (b,)
        including `start_id`, S' the source width (the slot of the first generated token)).
        """
        import tensorflow as tf
        token_ids = _dynamic(tf.cast(token_ids, tf.int32))
        segment_ids = tf.zeros_like(token_ids) if segment_ids is None else _dynamic(tf.cast(segment_ids, tf.int32))
        width = tf.shape(token_ids)[1]
        valid = tf.not_equal(token_ids, 0)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        checks = [
            tf.debugging.assert_equal(tf.shape(segment_ids), tf.shape(token_ids), message=(
                'generation: token_ids and segment_ids must have the same shape (batch, length)')),
            tf.debugging.assert_positive(lengths, message=(
                'generation: every row of token_ids needs at least one token (id 0 is padding)')),
            tf.debugging.assert_equal(valid, tf.range(width)[None] < lengths[:, None], message=(
                'generation: token_ids must be right-padded with 0 (a 0 followed by a token was found)')),
        ]
        if self.limit is not None:
            checks.append(tf.debugging.assert_less_equal(
                lengths + (len(self.first_ids) + self.maxlen), self.limit, message=(
                    'generation: source length + %d (maxlen%s) exceeds the position table (%d positions); '
                    'shorten the source' % (len(self.first_ids) + self.maxlen,
                                            ' + start_id' if self.first_ids else '', self.limit))))
        with tf.control_dependencies(checks):  # everything below depends on the checks: they fail first
            token_ids, segment_ids = tf.identity(token_ids), tf.identity(segment_ids)
        valid = tf.not_equal(token_ids, 0)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
        segment_ids = tf.where(valid, segment_ids, 0)  # as sequence_padding pads: no order from padding
        if self.start_id is not None:
            token_ids = tf.pad(token_ids, [[0, 0], [0, 1]])
            segment_ids = tf.pad(segment_ids, [[0, 0], [0, 1]])
            at = tf.one_hot(lengths, width + 1, on_value=True, off_value=False, dtype=tf.bool)
            token_ids = tf.where(at, self.start_id, token_ids)
            segment_ids = tf.where(at, 1 if self.mode == 'unilm' else 0, segment_ids)
            lengths = lengths + 1
            width = width + 1
        token_ids = tf.pad(token_ids, [[0, 0], [0, self.maxlen]])
        segment_ids = tf.pad(segment_ids, [[0, 0], [0, self.maxlen]])
        # padded slots get position 0 (any position in the table: they are invisible keys, overwritten
        # by the generated tokens), so a batch's padding never overflows the table
        positions = tf.range(width + self.maxlen)[None] * tf.cast(tf.not_equal(token_ids, 0), tf.int32)
        outputs, caches, _ = self.transformer.cached_call(self._inputs(token_ids, segment_ids), None,
                                                          Decoding(positions, 0, None, portable=True))
        logits = tf.gather(self._token_logits(outputs), lengths - 1, batch_dims=1)
        if logits.shape[-1] != self.vocab_size:
            raise ValueError('export_generator: the model scores %s tokens but its vocab_size is %d; export a '
                             'model whose last output is the MLM head' % (logits.shape[-1], self.vocab_size))
        rows = [cache.get('rows', {}) for cache in caches]
        fixed = [{key: value for key, value in cache.items() if key != 'rows'} for cache in caches]
        return logits, rows, fixed, lengths, width

    def _step(self, token_ids, positions, index, rows, fixed, parents=None):
        """One token per row (rows reordered by `parents` first); returns (logits (rows, vocab), rows)."""
        import tensorflow as tf
        if parents is not None:
            rows = [{name: tf.gather(t, parents, axis=0) for name, t in part.items()} for part in rows]
        caches = [dict(f, rows=r) if r else dict(f) for r, f in zip(rows, fixed)]
        token_ids = token_ids[:, None]
        segment_ids = tf.fill(tf.shape(token_ids), 1 if self.mode == 'unilm' else 0)
        outputs, caches, _ = self.transformer.cached_call(
            self._inputs(token_ids, segment_ids), caches, Decoding(positions[:, None], index, None, portable=True))
        return self._token_logits(outputs)[:, 0], [cache.get('rows', {}) for cache in caches]

    def _log_probs(self, logits, t, temperature=None):
        """float64 log softmax(logits / T) with the end token forbidden before `minlen` (step t)."""
        import tensorflow as tf
        logits = tf.cast(logits, tf.float64)
        if temperature is not None:
            logits = logits / tf.where(temperature > 0, temperature, tf.ones_like(temperature))
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        if self.end_id is not None and self.minlen > 1:
            # adjust_scores: the output (first ids + t tokens) plus this one shorter than minlen
            forbid = tf.logical_and(len(self.first_ids) + t + 1 < self.minlen,
                                    tf.equal(tf.range(self.vocab_size), self.end_id))
            log_probs = tf.where(forbid, tf.constant(_NEG, tf.float64), log_probs)
        return log_probs

    # ------------------------------------------------------------------------------- one row per input
    def _row_search(self, token_ids, segment_ids, choose):
        """Greedy / sampling: `choose(logits, t)` → the token of each row at step t."""
        import tensorflow as tf
        logits, rows, fixed, lengths, width = self._prefill(token_ids, segment_ids)
        batch = tf.shape(lengths)[0]
        end = -1 if self.end_id is None else self.end_id
        first_ends = self.first_ids.count(end)

        def pick(t, logits, state):
            live = tf.logical_not(state['done'])
            tokens = tf.where(live, choose(logits, t), 0)
            column = tf.one_hot(t, self.maxlen, dtype=tf.int32)
            is_end = tf.logical_and(live, tf.equal(tokens, end))
            ends = state['ends'] + tf.cast(is_end, tf.int32)
            ended = tf.logical_and(is_end, ends >= self.min_ends)
            return tokens, {'ids': state['ids'] + tokens[:, None] * column[None],
                            'ends': ends,
                            'lengths': tf.where(live, t + 1, state['lengths']),
                            'finished': tf.logical_or(state['finished'], ended),
                            'done': tf.logical_or(state['done'], tf.logical_or(ended, t == self.maxlen - 1))}

        state = {'ids': tf.zeros((batch, self.maxlen), tf.int32),
                 'ends': tf.fill((batch,), first_ends), 'lengths': tf.zeros((batch,), tf.int32),
                 'finished': tf.zeros((batch,), tf.bool), 'done': tf.zeros((batch,), tf.bool)}
        tokens, state = pick(tf.constant(0), logits, state)

        def body(t, tokens, state, rows):
            # t tokens are chosen; the last one sits at position length + t - 1, slot width + t - 1
            logits, rows = self._step(tokens, lengths + t - 1, width + t - 1, rows, fixed)
            tokens, state = pick(t, logits, state)
            return t + 1, tokens, state, rows

        def cond(t, tokens, state, rows):
            return tf.logical_and(t < self.maxlen, tf.reduce_any(tf.logical_not(state['done'])))

        _, _, state, _ = tf.while_loop(cond, body, (tf.constant(1), tokens, state, rows),
                                       maximum_iterations=self.maxlen - 1)
        return self._outputs(state['ids'], state['lengths'], state['finished'])

    def _outputs(self, ids, lengths, finished, scores=None):
        """`start_id` first, trimmed to the longest output of the batch."""
        import tensorflow as tf
        if self.first_ids:
            ids = tf.concat([tf.fill((tf.shape(ids)[0], 1), self.start_id), ids], axis=1)
            lengths = lengths + 1
        ids = ids[:, :tf.reduce_max(tf.concat([lengths, [0]], 0))]
        outputs = {'output_ids': ids, 'lengths': lengths, 'finished': finished}
        if scores is not None:
            outputs['scores'] = tf.cast(scores, tf.float32)
        return outputs

    def greedy(self, token_ids, segment_ids=None):
        """The most likely token at each step (equals `CachedDecoder.beam_search(topk=1)`)."""
        import tensorflow as tf

        def choose(logits, t):
            return tf.argmax(self._log_probs(logits, t), axis=-1, output_type=tf.int32)
        return self._row_search(token_ids, segment_ids, choose)

    def sample(self, token_ids, segment_ids=None, topk=0, topp=1.0, temperature=1.0, seed=0):
        """One sample per row: top-k (0 = off) then top-p (>= 1 = off) at `temperature` (0 = greedy).

        Draws are TensorFlow stateless uniforms keyed by (seed, step): the same seed gives the same
        samples; rows of a batch draw independently (repeat a source to get several samples).
        """
        import tensorflow as tf
        topk = tf.cast(topk, tf.int32)
        topp = tf.cast(topp, tf.float64)
        temperature = tf.cast(temperature, tf.float64)
        seed = tf.cast(seed, tf.int64)
        checks = [
            tf.debugging.assert_non_negative(topk, message='sample: topk must be >= 0 (0 = no top-k filter)'),
            # NaN fails both comparisons, so one message covers "not a number" too
            tf.debugging.assert_equal(topp > 0, True, message=(
                'sample: topp must be a finite number > 0 (1 or more keeps every token)')),
            tf.debugging.assert_equal(temperature >= 0, True, message=(
                'sample: temperature must be a finite number >= 0 (0 = greedy)')),
            tf.debugging.assert_all_finite(topp, message='sample: topp must be a finite number > 0'),
            tf.debugging.assert_all_finite(temperature, message='sample: temperature must be a finite number >= 0'),
        ]
        with tf.control_dependencies(checks):
            token_ids = tf.identity(token_ids)
        vocab = self.vocab_size
        kept_k = tf.where(topk > 0, tf.minimum(topk, vocab), vocab)

        def choose(logits, t):
            log_probs = self._log_probs(logits, t, temperature)
            greedy = tf.one_hot(tf.argmax(log_probs, axis=-1), vocab, on_value=0.0, off_value=_NEG,
                                dtype=tf.float64)
            probs = tf.exp(tf.where(temperature > 0, log_probs, greedy))
            # stable descending order: probability, then the lowest id first (filter_probas' ties)
            order = tf.argsort(probs, axis=-1, direction='DESCENDING', stable=True)
            ranked = tf.gather(probs, order, batch_dims=1)
            keep = tf.range(vocab)[None] < kept_k
            top = tf.where(keep, ranked, 0.0)
            top = top / tf.reduce_sum(top, axis=-1, keepdims=True)
            # top-p on the renormalised top-k: keep while the mass before a token is below p
            keep = tf.logical_and(keep, tf.cumsum(top, axis=-1, exclusive=True) < topp)
            kept = tf.where(keep, ranked, 0.0)
            cdf = tf.cumsum(kept, axis=-1) / tf.reduce_sum(kept, axis=-1, keepdims=True)
            uniforms = tf.random.stateless_uniform(tf.shape(probs)[:1], tf.stack([seed, tf.cast(t, tf.int64)]),
                                                   dtype=tf.float64)
            rank = tf.reduce_sum(tf.cast(cdf <= uniforms[:, None], tf.int32), axis=-1)
            return tf.gather(order, tf.minimum(rank, vocab - 1), batch_dims=1)
        return self._row_search(token_ids, segment_ids, choose)

    # ------------------------------------------------------------------------------- beam search
    def beam_search(self, token_ids, segment_ids=None, topk=1):
        """`decoders.Beam` for every input at once, `topk` rows per input (the beam width)."""
        import tensorflow as tf
        beam = _dynamic(tf.cast(topk, tf.int32))
        check = tf.debugging.assert_positive(beam, message='beam_search: topk (the beam width) must be >= 1')
        with tf.control_dependencies([check]):
            token_ids = tf.identity(token_ids)
        logits, rows, fixed, lengths, width = self._prefill(token_ids, segment_ids)
        batch = tf.shape(lengths)[0]
        vocab, maxlen = self.vocab_size, self.maxlen
        end = -1 if self.end_id is None else self.end_id
        inputs = tf.repeat(tf.range(batch), beam)                 # the input of each row
        rows = [{name: tf.gather(t, inputs, axis=0) for name, t in part.items()} for part in rows]
        logits = tf.gather(logits, inputs)
        row_lengths = tf.gather(lengths, inputs)
        rank = tf.range(beam)[None]                               # (1, k)
        inf = tf.constant(np.inf, tf.float64)

        def advance(t, logits, s):
            """One `Beam.advance` for every input; returns (tokens, parents) of the next step's rows."""
            log_probs = tf.reshape(self._log_probs(logits, t), (batch, beam, vocab))
            scores = s['alive_score'][:, :, None] + log_probs     # dead slots: -inf
            values, index = tf.math.top_k(tf.reshape(scores, (batch, beam * vocab)), beam)
            parent, token = index // vocab, index % vocab
            selected = rank < tf.minimum(s['width'], s['alive'] * vocab)[:, None]
            parent_ends = tf.gather(s['alive_ends'], parent, batch_dims=1)
            is_end = tf.equal(token, end)
            ended = selected & is_end & (parent_ends + 1 >= self.min_ends)
            going_on = selected & ~ended
            ids = tf.gather(s['alive_ids'], parent, batch_dims=1) + \
                token[:, :, None] * tf.one_hot(t, maxlen, dtype=tf.int32)[None, None]
            # the best output ended so far: the first (highest-ranked) one of this step if it beats the
            # earlier best strictly (Python's max keeps the first of equal scores)
            first = tf.argmax(tf.cast(ended, tf.int32), axis=1, output_type=tf.int32)
            step_best = tf.where(tf.reduce_any(ended, 1), tf.gather(values, first, batch_dims=1), -inf)
            better = (step_best > s['best_score']) & ~s['done']
            best_score = tf.where(better, step_best, s['best_score'])
            best_ids = tf.where(better[:, None], tf.gather(ids, first, batch_dims=1), s['best_ids'])
            best_length = tf.where(better, t + 1, s['best_length'])
            # the live extensions, in rank order, fill the first slots; the beam shrinks to their number
            order = tf.argsort(tf.where(going_on, rank, beam + rank), axis=1, stable=True)
            alive = tf.reduce_sum(tf.cast(going_on, tf.int32), axis=1)
            live_slot = rank < alive[:, None]
            alive_score = tf.where(live_slot, tf.gather(values, order, batch_dims=1), -inf)
            alive_ids = tf.gather(ids, order, batch_dims=1)
            top_alive = alive_score[:, 0]
            finished_wins = (best_score > -inf) & (best_score >= top_alive)
            newly = ~s['done'] & (finished_wins | (t == maxlen - 1))
            new = {
                'alive_score': alive_score, 'alive_ids': alive_ids, 'alive': alive, 'width': alive,
                'alive_ends': tf.gather(parent_ends + tf.cast(is_end, tf.int32), order, batch_dims=1),
                'best_score': best_score, 'best_ids': best_ids, 'best_length': best_length,
                'ids': tf.where(newly[:, None], tf.where(finished_wins[:, None], best_ids, alive_ids[:, 0]),
                                s['ids']),
                'lengths': tf.where(newly, tf.where(finished_wins, best_length, t + 1), s['lengths']),
                'scores': tf.where(newly, tf.where(finished_wins, best_score, top_alive), s['scores']),
                'finished': tf.where(newly, finished_wins, s['finished']),
                'done': s['done'] | newly,
            }
            tokens = tf.where(live_slot, tf.gather(token, order, batch_dims=1), 0)
            parents = tf.range(batch)[:, None] * beam + tf.where(live_slot, tf.gather(parent, order, batch_dims=1), 0)
            return tf.reshape(tokens, (-1,)), tf.reshape(parents, (-1,)), new

        state = {
            'alive_score': tf.where(tf.broadcast_to(rank, (batch, beam)) == 0,
                                    tf.zeros((batch, beam), tf.float64), -inf),
            'alive_ids': tf.zeros((batch, beam, maxlen), tf.int32),
            'alive': tf.ones((batch,), tf.int32), 'width': tf.fill((batch,), beam),
            'alive_ends': tf.fill((batch, beam), self.first_ids.count(end)),
            'best_score': tf.fill((batch,), -inf), 'best_ids': tf.zeros((batch, maxlen), tf.int32),
            'best_length': tf.zeros((batch,), tf.int32),
            'ids': tf.zeros((batch, maxlen), tf.int32), 'lengths': tf.zeros((batch,), tf.int32),
            'scores': tf.zeros((batch,), tf.float64), 'finished': tf.zeros((batch,), tf.bool),
            'done': tf.zeros((batch,), tf.bool),
        }
        tokens, parents, state = advance(tf.constant(0), logits, state)

        def body(t, tokens, parents, state, rows):
            logits, rows = self._step(tokens, row_lengths + t - 1, width + t - 1, rows, fixed, parents)
            tokens, parents, state = advance(t, logits, state)
            return t + 1, tokens, parents, state, rows

        def cond(t, tokens, parents, state, rows):
            return tf.logical_and(t < maxlen, tf.reduce_any(tf.logical_not(state['done'])))

        _, _, _, state, _ = tf.while_loop(cond, body, (tf.constant(1), tokens, parents, state, rows),
                                          maximum_iterations=maxlen - 1)
        return self._outputs(state['ids'], state['lengths'], state['finished'], state['scores'])


def _dynamic(t):
    """`t` with its static shape (and constant value) forgotten: traced with known sizes, the loop state
    would start with static shapes that the body's dynamic ones do not match; the exported signatures
    have unknown sizes anyway."""
    import tensorflow as tf
    return tf.raw_ops.PlaceholderWithDefault(input=t, shape=tf.TensorShape([None] * len(t.shape)))


def export_generator(transformer, path, end_id, maxlen, start_id=None, minlen=1, min_ends=1, mode=None,
                     signatures=SIGNATURES):
    """Write a SavedModel whose signatures run whole searches in the graph (TF Serving, no Python).

    Signatures (inputs named as written; `segment_ids` only when the model has a segment input):
      * 'greedy' (also `serving_default`): token_ids (b, S) int32, segment_ids (b, S) int32;
      * 'sample': the same + topk () int32 (0 = off), topp () float32 (>= 1 = off), temperature ()
        float32 (0 = greedy), seed () int64;
      * 'beam_search': the same + topk () int32, the beam width.
    Each returns output_ids (b, L) int32, lengths (b,) int32, finished (b,) bool (+ scores (b,) float32
    for beam search): see `GraphGenerator`.

    Args:
        transformer: a built LM / UniLM `Transformer` (`return_keras_model=False`).
        path: the SavedModel folder (e.g. 'export/title/1', the version folder TF Serving expects).
        end_id, maxlen, start_id, minlen, min_ends, mode: as `GraphGenerator` (fixed in the export).
        signatures: which of 'greedy', 'sample', 'beam_search' to write (the first is also
            `serving_default`, the signature TF Serving calls when a request names none).
    Returns:
        the `GraphGenerator` (its methods run the same searches in this process).
    """
    import tensorflow as tf
    signatures = [signatures] if isinstance(signatures, str) else list(signatures)
    unknown = [name for name in signatures if name not in SIGNATURES]
    if not signatures or unknown or len(set(signatures)) != len(signatures):
        raise ValueError('export_generator: signatures must be distinct names among %s, got %r'
                         % (list(SIGNATURES), signatures))
    path = os.fspath(path)
    if os.path.isfile(path):
        raise ValueError('export_generator: %s is a file; expected a folder for the SavedModel' % path)
    generator = GraphGenerator(transformer, end_id, maxlen, start_id=start_id, minlen=minlen,
                               min_ends=min_ends, mode=mode)
    ids = [tf.TensorSpec((None, None), tf.int32, name='token_ids')]
    if generator.with_segments:
        ids.append(tf.TensorSpec((None, None), tf.int32, name='segment_ids'))
    extra = {
        'greedy': [],
        'sample': [tf.TensorSpec((), tf.int32, name='topk'), tf.TensorSpec((), tf.float32, name='topp'),
                   tf.TensorSpec((), tf.float32, name='temperature'), tf.TensorSpec((), tf.int64, name='seed')],
        'beam_search': [tf.TensorSpec((), tf.int32, name='topk')],
    }

    def endpoint(name):
        search = getattr(generator, name)
        if generator.with_segments:
            return lambda token_ids, segment_ids, *rest: search(token_ids, segment_ids, *rest)
        return lambda token_ids, *rest: search(token_ids, None, *rest)

    # A plain tf.Module rather than keras.export.ExportArchive: the archive traces every endpoint twice
    # (about twice the export time here); the module only has to hold the model's variables.
    module = tf.Module()
    module.model_variables = list(transformer.model.variables)
    functions = {}
    for name in signatures:
        function = tf.function(endpoint(name), input_signature=ids + extra[name], autograph=False)
        setattr(module, name, function)
        functions[name] = function.get_concrete_function()
    functions['serving_default'] = functions[signatures[0]]
    tf.saved_model.save(module, path, signatures=functions)
    return generator
