"""Gibbs sampling of sentences from a BERT masked language model (kexue.fm/archives/8119).

A chain is a fixed-length token sequence `[CLS] x_1 … x_l [SEP]`. Each step picks one position i
uniformly among the sampled positions, replaces x_i by [MASK], asks the MLM for p(x_i | x_{-i}), draws a
token from it and writes it back. After a burn-in the chain's states are (approximately) samples of the
sentence distribution the MLM implies. Strictly, an MLM's conditionals need not be those of any joint
distribution (the author's own erratum), so "the" stationary distribution is a convenient fiction; with
exactly consistent conditionals (as in the tests) it is the joint.

Many chains run side by side: one MLM call per step covers all of them, each chain with its own position.

    model = build_transformer_model(config, checkpoint, with_mlm=True)
    result = gibbs_sample(model, tokenizer, length=12, steps=2000, burn_in=500, num_chains=8, seed=0)
    result.samples            # (chains, kept steps, 14) token ids after burn-in
    tokenizer.decode(result.final[0])
"""
import collections

import numpy as np

__all__ = ['GibbsResult', 'gibbs_sample', 'special_token_ids']

GibbsResult = collections.namedtuple('GibbsResult', ['samples', 'final', 'positions'])
GibbsResult.__doc__ = """Output of `gibbs_sample`.

samples: int array (chains, kept, length): the state after every recorded step past the burn-in.
final: int array (chains, length): the last state of each chain.
positions: int array (chains, steps): the position resampled at each step (all steps, burn-in too).
"""


def special_token_ids(tokenizer):
    """Ids of the bracketed special tokens of a tokenizer's vocabulary ([PAD], [UNK], [CLS], [SEP],
    [MASK], [unused*], …): tokens a sampled sentence should not contain."""
    return sorted(i for token, i in tokenizer.token_dict.items() if tokenizer._is_special(token))


def _predictor(model, from_logits):
    """A function (token_ids, segment_ids) → (chains, length, vocab) float64 probabilities."""
    call = model.predict_on_batch if hasattr(model, 'predict_on_batch') else model

    def predict(token_ids, segment_ids):
        output = call([token_ids, segment_ids])
        if isinstance(output, (list, tuple)):  # e.g. a model with several heads: the MLM one is last
            output = output[-1]
        output = np.asarray(output, dtype='float64')
        if output.ndim != 3 or output.shape[:2] != token_ids.shape:
            raise ValueError('gibbs_sample: the model must return (batch, length, vocab) MLM outputs for '
                             '(batch, length) inputs; got shape %s for %s' % (output.shape, token_ids.shape))
        if from_logits:
            output = np.exp(output - output.max(axis=-1, keepdims=True))
        return output
    return predict


def gibbs_sample(model, tokenizer=None, length=None, token_ids=None, steps=1000, burn_in=100, num_chains=1,
                 seed=None, thin=1, temperature=1.0, positions=None, banned_ids=None, mask_id=None,
                 from_logits=False, progress=False):
    """Run `num_chains` Gibbs chains over an MLM and return their states after the burn-in.

    Args:
        model: a Keras model built with `with_mlm=True` (inputs `[token_ids, segment_ids]`, output
            (batch, length, vocab) probabilities; `from_logits=True` for `with_mlm='linear'`), or any
            callable with that contract (`predict_on_batch` is used when the object has it).
        tokenizer: gives the [CLS]/[SEP]/[MASK] ids and, by default, the banned special tokens.
        length: start every chain from `[CLS] + [MASK] * length + [SEP]`; or
        token_ids: start from these ids — one sequence (list, as `tokenizer.encode` returns it,
            [CLS] and [SEP] included) for all chains, or a (chains, length) array, one per chain.
        steps: Gibbs steps per chain (one resampled position per chain per step).
        burn_in: the first `burn_in` steps are not recorded.
        num_chains: chains run in parallel (ignored when `token_ids` is 2-D: one chain per row).
        seed: seed of the sampler's own `numpy.random.RandomState`; the same seed, model and start
            give identical chains. None draws fresh randomness.
        thin: record every `thin`-th state after the burn-in.
        temperature: sample from p^(1/T), renormalised (T < 1 sharpens).
        positions: the positions that may be resampled (default: all but the first and the last,
            i.e. not [CLS] / [SEP]); chosen uniformly at each step.
        banned_ids: token ids never sampled (their probability is set to 0 before renormalising).
            Default: the tokenizer's special tokens (`special_token_ids`), or none without tokenizer.
        mask_id: id written at the chosen position before asking the model (default [MASK]'s).
        progress: show a tqdm progress bar over the steps.

    Returns:
        GibbsResult(samples (chains, kept, length), final (chains, length), positions (chains, steps)),
        where kept = ceil((steps - burn_in) / thin) (0 when burn_in >= steps).
    """
    if steps < 0 or burn_in < 0 or thin < 1:
        raise ValueError('gibbs_sample: need steps >= 0, burn_in >= 0 and thin >= 1; got steps=%r, burn_in=%r, '
                         'thin=%r' % (steps, burn_in, thin))
    if temperature <= 0:
        raise ValueError('gibbs_sample: temperature must be > 0, got %r' % (temperature,))
    if mask_id is None:
        if tokenizer is None or tokenizer._token_mask_id is None:
            raise ValueError('gibbs_sample: pass a tokenizer whose vocabulary has [MASK], or mask_id=')
        mask_id = tokenizer._token_mask_id
    if (length is None) == (token_ids is None):
        raise ValueError('gibbs_sample: give exactly one of length= (start from [MASK]s) and token_ids=')
    if token_ids is None:
        if tokenizer is None:
            raise ValueError('gibbs_sample: length= needs a tokenizer for the [CLS] / [SEP] ids')
        if length < 1:
            raise ValueError('gibbs_sample: length must be >= 1, got %r' % (length,))
        start = [tokenizer._token_start_id] + [mask_id] * int(length) + [tokenizer._token_end_id]
        state = np.tile(np.array(start, dtype='int32'), (num_chains, 1))
    else:
        state = np.array(token_ids, dtype='int32')
        if state.ndim == 1:
            state = np.tile(state, (num_chains, 1))
        elif state.ndim != 2:
            raise ValueError('gibbs_sample: token_ids must be one sequence or a (chains, length) array')
    chains, n = state.shape
    if positions is None:
        positions = np.arange(1, n - 1)
    positions = np.asarray(positions, dtype=int)
    if positions.size == 0 or positions.min() < 0 or positions.max() >= n:
        raise ValueError('gibbs_sample: no valid position to sample in a sequence of length %d (positions=%s)'
                         % (n, positions.tolist()))
    if banned_ids is None:
        banned_ids = special_token_ids(tokenizer) if tokenizer is not None else []
    banned_ids = np.asarray(sorted(set(int(i) for i in banned_ids)), dtype=int)

    rng = np.random.RandomState(seed)
    predict = _predictor(model, from_logits)
    segment_ids = np.zeros_like(state)
    rows = np.arange(chains)
    chosen = np.zeros((chains, steps), dtype=int)
    samples = []
    iterator = range(steps)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc='Gibbs sampling (%d chains)' % chains, unit='step')
    for step in iterator:
        where = positions[rng.randint(len(positions), size=chains)]
        chosen[:, step] = where
        masked = state.copy()
        masked[rows, where] = mask_id
        probas = predict(masked, segment_ids)[rows, where]  # (chains, vocab)
        if len(banned_ids):
            probas[:, banned_ids] = 0.0
        if temperature != 1:
            probas = probas ** (1.0 / temperature)
        totals = probas.sum(axis=1)
        if not np.all(totals > 0) or not np.all(np.isfinite(totals)):
            raise ValueError('gibbs_sample: the model gives no probability to any allowed token at step %d' % step)
        # inverse-CDF draw, one uniform per chain (vectorised and reproducible under the seed)
        cdf = np.cumsum(probas, axis=1)
        u = rng.random_sample(chains) * cdf[:, -1]
        sampled = np.minimum((cdf <= u[:, None]).sum(axis=1), probas.shape[1] - 1)
        state[rows, where] = sampled
        if step >= burn_in and (step - burn_in) % thin == 0:
            samples.append(state.copy())
    samples = np.stack(samples, axis=1) if samples else np.zeros((chains, 0, n), dtype=state.dtype)
    return GibbsResult(samples=samples, final=state, positions=chosen)
