"""Fast autoregressive decoding for BERT-family LM / UniLM models: a key/value cache and batched search.

bert4keras decodes by re-running the whole sequence for every new token (O(L) passes of O(L²) work).
Here the source (or prompt) runs through the network once, every attention call's keys and values are
kept, and each step feeds only the newest token per row — all rows of all inputs and beams in one call of
a compiled `tf.function`. Both the prefill and the steps run the model's *own* forward steps
(`Transformer.cached_call`: its embeddings, `apply_main_layers`, final heads), the attention layers taking
their cache as an argument (`bert4keras_ext.caching`), so what is trained is what is decoded. Results equal
full recomputation (the tests check logits to 1e-5 and identical beams against `AutoRegressiveDecoder` with
a full-recompute `predict`); a subclass with a layer the cache cannot carry gets a clear error.

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
keys/values are kept once per input, not per beam (the cache's prefix block); the rows block is
preallocated and written one slot per step; Q/K/V are one fused matmul (a per-search constant of the
attention cache); the tied output matrix is transposed once per search; the step is XLA-compiled (it fuses the ~40 small cache and
attention ops per layer); shapes stay fixed for a whole search so it compiles once; and the compiled
function is called as a concrete function (tf.function's per-call dispatch over ~80 arguments cost as
much as a quarter of a step).
"""
import numpy as np

from bert4keras_ext.decoders import AutoRegressiveDecoder, Beam, run_steps, sample_rows
from bert4keras_ext.decoding_args import (
    check_search_args, check_token_ids_fit, greedy_log_probs, search_temperature, tempered_log_softmax,
)
from bert4keras_ext.incremental import IncrementalModel

__all__ = ['IncrementalModel', 'CachedDecoder']


class CachedDecoder(AutoRegressiveDecoder):
    """`beam_search` / `random_sample` (bert4keras semantics) on a cached BERT-family LM or UniLM.

    inputs: `[token_ids, segment_ids]` of the source for UniLM (`tokenizer.encode(content)`), or
    `[token_ids]` / `[token_ids, segment_ids]` of the prompt for LM. Outputs are the generated ids
    (preceded by `start_id` when one is given, as in bert4keras).
    """

    def __init__(self, transformer, end_id, maxlen, start_id=None, minlen=1, mode=None, jit_compile=True,
                 verify='auto'):
        super().__init__(start_id=start_id, end_id=end_id, maxlen=maxlen, minlen=minlen)
        self.engine = transformer if isinstance(transformer, IncrementalModel) else \
            IncrementalModel(transformer, mode=mode, jit_compile=jit_compile, verify=verify)

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

    def beam_search_batch(self, batch_inputs, topk, temperature=1, min_ends=1, no_repeat_ngram_size=None,
                          repetition_penalty=None, return_info=False):
        """Beam search for many inputs in one batch: rows = live beams of all inputs, one network
        call per step. Each input follows `decoders.Beam`, so results equal one-at-a-time search."""
        beams = run_steps(self._beam_batch_steps(batch_inputs, topk, temperature, min_ends, no_repeat_ngram_size,
                                                 repetition_penalty))
        return [self._result(b.best_ids, b.best_score, b.finished_best, return_info) for b in beams]

    # beam_search / beam_search_stream / random_sample / random_sample_stream are the base class's, over
    # these two one-input views of the batched searches
    def _beam_steps(self, inputs, topk, states, temperature, min_ends, no_repeat_ngram_size, repetition_penalty):
        """`_beam_batch_steps` of one input: yields its `Beam` after every step, returns it."""
        for beams in self._beam_batch_steps([inputs], topk, temperature, min_ends, no_repeat_ngram_size,
                                            repetition_penalty):
            yield beams[0]
        return beams[0]

    def _sample_steps(self, inputs, n, topk, topp, states, temperature, min_ends, no_repeat_ngram_size,
                      repetition_penalty, seed, always_allow_end):
        """`_sample_batch_steps` of one input: yields the drawn tokens every step; returns (outputs, finished
        flags) as the base class's."""
        results = yield from self._sample_batch_steps([inputs], n, topk, topp, temperature, min_ends,
                                                      no_repeat_ngram_size, repetition_penalty, seed,
                                                      always_allow_end)
        return [ids for ids, _ in results[0]], [finished for _, finished in results[0]]

    def _beam_batch_steps(self, batch_inputs, topk, temperature, min_ends, no_repeat_ngram_size,
                          repetition_penalty):
        """The batched beam search as a generator: yields the `Beam`s after every step, returns them."""
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
            yield beams
            if all(beam.done for beam in beams):
                break
            logits, state = self.engine.step(np.array(new_tokens), state, rows=np.array(new_rows))
        return beams

    def random_sample_batch(self, batch_inputs, n, topk=None, topp=None, temperature=1, min_ends=1,
                            no_repeat_ngram_size=None, repetition_penalty=None, return_info=False, seed=None,
                            always_allow_end=False):
        """`n` samples for each input, all rows in one batch; returns one list of samples per input."""
        results = run_steps(self._sample_batch_steps(batch_inputs, n, topk, topp, temperature, min_ends,
                                                     no_repeat_ngram_size, repetition_penalty, seed,
                                                     always_allow_end))
        if return_info:
            return [([ids for ids, _ in r], [{'finished': f} for _, f in r]) for r in results]
        return [[ids for ids, _ in r] for r in results]

    def _sample_batch_steps(self, batch_inputs, n, topk, topp, temperature, min_ends, no_repeat_ngram_size,
                            repetition_penalty, seed, always_allow_end):
        """The batched sampling as a generator: yields the token drawn for each live row every step;
        returns per input a list of (ids, finished)."""
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
            yield sampled
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
        return results
