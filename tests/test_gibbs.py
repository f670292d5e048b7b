"""Gibbs sampling via MLM: exact bookkeeping properties, and the distribution it samples.

The distributional checks use a stub "MLM" whose conditionals p(x_i | x_-i) are those of a joint
distribution written by hand, so the chain's stationary distribution is known exactly; frequencies are
compared with Pearson's chi-square at the 0.001 level (critical values from the chi-square table).
Seeds are fixed, so every run is the same.
"""
import numpy as np
import pytest

from bert4keras_ext.gibbs import gibbs_sample, special_token_ids

PAD, CLS, SEP, MASK = 0, 1, 2, 3
CHI2_CRITICAL_001 = {1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467, 8: 26.124, 9: 27.877}


def chi_square(counts, probabilities):
    counts = np.asarray(counts, dtype=float)
    expected = counts.sum() * np.asarray(probabilities, dtype=float)
    return float(((counts - expected) ** 2 / expected).sum())


class FixedStub:
    """Every masked position gets the same distribution `p` over the vocabulary."""

    def __init__(self, p):
        self.p = np.asarray(p, dtype=float)
        self.calls = 0

    def predict_on_batch(self, inputs):
        token_ids, segment_ids = inputs
        assert token_ids.shape == segment_ids.shape and (segment_ids == 0).all()
        self.calls += 1
        return np.broadcast_to(self.p, token_ids.shape + self.p.shape).copy()


class JointStub:
    """Two free positions (1 and 2) of `[CLS] x1 x2 [SEP]`, with p(x1, x2) = joint[a, b] over `tokens`.

    At a [MASK]ed position the stub returns the exact conditional given the other position (or the
    marginal while the other is still [MASK]), so Gibbs sampling must converge to `joint`.
    """

    def __init__(self, joint, tokens, vocab_size):
        self.joint = np.asarray(joint, dtype=float)
        self.tokens = np.asarray(tokens)
        self.vocab_size = vocab_size
        self.index = {t: k for k, t in enumerate(tokens)}

    def __call__(self, inputs):  # no predict_on_batch: exercises the plain-callable path
        token_ids = np.asarray(inputs[0])
        out = np.full(token_ids.shape + (self.vocab_size,), 1.0 / self.vocab_size)
        for r, row in enumerate(token_ids):
            for i, other in ((1, row[2]), (2, row[1])):
                if row[i] != MASK:
                    continue
                if other in self.index:
                    table = self.joint if i == 2 else self.joint.T  # rows: value of the other position
                    conditional = table[self.index[other]] / table[self.index[other]].sum()
                else:
                    conditional = self.joint.sum(axis=1 if i == 1 else 0)
                out[r, i] = 0.0
                out[r, i, self.tokens] = conditional
        return out


JOINT = np.array([[0.30, 0.05, 0.02],
                  [0.03, 0.20, 0.05],
                  [0.02, 0.08, 0.25]])
TOKENS = [4, 5, 6]


def test_chains_converge_to_the_joint_distribution_of_consistent_conditionals():
    stub = JointStub(JOINT, TOKENS, vocab_size=8)
    result = gibbs_sample(stub, token_ids=[CLS, MASK, MASK, SEP], mask_id=MASK, steps=30, burn_in=29,
                          num_chains=3000, seed=0, banned_ids=[PAD, CLS, SEP, MASK])
    final = result.final
    assert (final[:, 0] == CLS).all() and (final[:, 3] == SEP).all()
    assert np.isin(final[:, 1:3], TOKENS).all()
    counts = np.zeros((3, 3))
    for a, b in final[:, 1:3]:
        counts[TOKENS.index(a), TOKENS.index(b)] += 1
    assert chi_square(counts.ravel(), JOINT.ravel()) < CHI2_CRITICAL_001[8]
    # the test has power: the product of the marginals (what sampling each position on its own,
    # ignoring the other, would give) is rejected by a wide margin
    independent = np.outer(JOINT.sum(1), JOINT.sum(0))
    assert chi_square(counts.ravel(), independent.ravel()) > 10 * CHI2_CRITICAL_001[8]


def test_single_position_draws_follow_the_conditional_with_banned_tokens_and_temperature():
    p = np.array([0.05, 0.05, 0.0, 0.1, 0.4, 0.3, 0.1, 0.0])  # ids 0..7
    start = [CLS, MASK, SEP]
    # banned ids 0, 1, 3 → renormalised over 4, 5, 6: (0.4, 0.3, 0.1) / 0.8
    result = gibbs_sample(FixedStub(p), token_ids=start, mask_id=MASK, banned_ids=[PAD, CLS, MASK], steps=4000,
                          burn_in=0, seed=1)
    draws = result.samples[0, :, 1]
    assert set(np.unique(draws)) <= {4, 5, 6}
    counts = [np.sum(draws == t) for t in (4, 5, 6)]
    assert chi_square(counts, np.array([0.4, 0.3, 0.1]) / 0.8) < CHI2_CRITICAL_001[2]
    # temperature 0.5 → p² renormalised: (0.16, 0.09, 0.01) / 0.26
    result = gibbs_sample(FixedStub(p), token_ids=start, mask_id=MASK, banned_ids=[PAD, CLS, MASK], steps=4000,
                          burn_in=0, seed=2, temperature=0.5)
    draws = result.samples[0, :, 1]
    counts = [np.sum(draws == t) for t in (4, 5, 6)]
    assert chi_square(counts, np.array([0.16, 0.09, 0.01]) / 0.26) < CHI2_CRITICAL_001[2]


def test_only_the_chosen_position_changes_and_positions_are_uniform():
    vocab = 60
    p = np.r_[np.zeros(4), np.full(vocab - 4, 1.0 / (vocab - 4))]  # uniform over ids 4..59
    start = [CLS, 10, 11, 12, 13, 14, SEP]
    stub = FixedStub(p)
    result = gibbs_sample(stub, token_ids=start, mask_id=MASK, steps=600, burn_in=0, num_chains=5, seed=3)
    assert stub.calls == 600  # one model call per step for all chains together
    assert result.samples.shape == (5, 600, 7) and result.positions.shape == (5, 600)
    previous = np.tile(start, (5, 1))
    changed_steps = 0
    for step in range(600):
        current = result.samples[:, step]
        for chain in range(5):
            differs = np.flatnonzero(current[chain] != previous[chain])
            assert set(differs) <= {result.positions[chain, step]}
            changed_steps += len(differs)
        previous = current
    assert changed_steps > 0.9 * 600 * 5  # 55 of 56 tokens differ from the current one
    assert (result.final == result.samples[:, -1]).all()
    # positions: never [CLS] / [SEP], uniform over 1..5
    assert result.positions.min() == 1 and result.positions.max() == 5
    counts = np.bincount(result.positions.ravel(), minlength=7)[1:6]
    assert chi_square(counts, np.full(5, 0.2)) < CHI2_CRITICAL_001[4]
    # explicit positions: only those are ever touched
    result = gibbs_sample(FixedStub(p), token_ids=start, mask_id=MASK, steps=50, burn_in=0, seed=3, positions=[2, 4])
    assert set(np.unique(result.positions)) <= {2, 4}
    assert (result.final[0, [0, 1, 3, 5, 6]] == np.array(start)[[0, 1, 3, 5, 6]]).all()


def test_seeded_runs_are_identical_and_burn_in_and_thinning_drop_the_right_states():
    p = np.r_[np.zeros(4), np.full(20, 0.05)]
    kwargs = dict(token_ids=[CLS, 5, 6, 7, 8, SEP], mask_id=MASK, num_chains=3, steps=40)
    full = gibbs_sample(FixedStub(p), burn_in=0, seed=7, **kwargs)
    again = gibbs_sample(FixedStub(p), burn_in=0, seed=7, **kwargs)
    other = gibbs_sample(FixedStub(p), burn_in=0, seed=8, **kwargs)
    assert (full.samples == again.samples).all() and (full.positions == again.positions).all()
    assert not (full.samples == other.samples).all()
    # the burn-in only decides what is recorded: the kept states are the full run's states from step 15 on
    burned = gibbs_sample(FixedStub(p), burn_in=15, seed=7, **kwargs)
    assert burned.samples.shape == (3, 25, 6)
    assert (burned.samples == full.samples[:, 15:]).all()
    assert (burned.final == full.final).all()
    thinned = gibbs_sample(FixedStub(p), burn_in=15, thin=4, seed=7, **kwargs)
    assert thinned.samples.shape == (3, 7, 6)  # steps 15, 19, …, 39
    assert (thinned.samples == full.samples[:, 15::4]).all()
    nothing = gibbs_sample(FixedStub(p), burn_in=40, seed=7, **kwargs)
    assert nothing.samples.shape == (3, 0, 6) and (nothing.final == full.final).all()


def test_chains_from_a_2d_start_and_from_length():
    p = np.r_[np.zeros(4), np.full(4, 0.25)]
    start = np.array([[CLS, 4, 4, SEP], [CLS, 5, 5, SEP]])
    result = gibbs_sample(FixedStub(p), token_ids=start, mask_id=MASK, steps=3, burn_in=0, num_chains=10, seed=0)
    assert result.final.shape == (2, 4)  # one chain per row; num_chains ignored


def test_argument_errors():
    stub = FixedStub(np.r_[np.zeros(4), np.ones(4) / 4])
    with pytest.raises(ValueError, match='exactly one'):
        gibbs_sample(stub, mask_id=MASK, steps=1)
    with pytest.raises(ValueError, match='tokenizer'):
        gibbs_sample(stub, steps=1, token_ids=[CLS, MASK, SEP])
    with pytest.raises(ValueError, match='no probability'):
        gibbs_sample(stub, token_ids=[CLS, MASK, SEP], mask_id=MASK, banned_ids=[4, 5, 6, 7], steps=1)
    with pytest.raises(ValueError, match='no valid position'):
        gibbs_sample(stub, token_ids=[CLS, SEP], mask_id=MASK, steps=1)
    with pytest.raises(ValueError):
        gibbs_sample(stub, token_ids=[CLS, MASK, SEP], mask_id=MASK, steps=5, thin=0)


def test_on_a_tiny_bert_mlm(tiny_bert):
    from bert4keras_ext.models import build_transformer_model
    from bert4keras_ext.tokenizers import Tokenizer
    tokenizer = Tokenizer(tiny_bert['vocab'], do_lower_case=True)
    model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm=True)
    first = gibbs_sample(model, tokenizer, length=6, steps=12, burn_in=4, num_chains=3, seed=5)
    second = gibbs_sample(model, tokenizer, length=6, steps=12, burn_in=4, num_chains=3, seed=5)
    assert first.samples.shape == (3, 8, 8)
    assert (first.samples == second.samples).all()
    final = first.final
    assert (final[:, 0] == tokenizer._token_start_id).all() and (final[:, -1] == tokenizer._token_end_id).all()
    banned = set(special_token_ids(tokenizer))
    assert {'[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '[unused1]'} <= {tokenizer.id_to_token(i) for i in banned}
    touched = np.zeros_like(final, dtype=bool)
    touched[np.arange(3)[:, None], first.positions] = True
    # every resampled position holds an ordinary token; untouched ones are still [MASK]
    assert not np.isin(final[touched], list(banned)).any()
    inner, inner_touched = final[:, 1:-1], touched[:, 1:-1]
    assert (inner[~inner_touched] == tokenizer._token_mask_id).all()
    # from a sentence, with logits: the model's own `with_mlm='linear'` head works with from_logits
    logits_model = build_transformer_model(tiny_bert['config'], tiny_bert['checkpoint'], with_mlm='linear')
    token_ids, _ = tokenizer.encode('今天天气很好')
    a = gibbs_sample(logits_model, tokenizer, token_ids=token_ids, steps=6, burn_in=0, seed=1, from_logits=True)
    b = gibbs_sample(model, tokenizer, token_ids=token_ids, steps=6, burn_in=0, seed=1)
    assert (a.samples == b.samples).all()  # softmax(logits) and the probabilities head sample alike
