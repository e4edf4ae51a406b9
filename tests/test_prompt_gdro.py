"""Tests for bandits.PromptGDRO (GDRO Sec. 3.2, eq. 17; App. C.2.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import PromptGDRO


def _state(ctrl: PromptGDRO):
    return (
        ctrl.log_weights.copy(),
        ctrl.scores.copy(),
        ctrl.share_ema.copy(),
        ctrl.seen.copy(),
        ctrl.step,
    )


def _assert_same_state(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _softmax(z):
    e = np.exp(np.asarray(z, dtype=float) - np.max(z))
    return e / e.sum()


class _ReferencePromptGDRO:
    """Slow, literal reference: ratio of two EMAs (S / Q) instead of the gain form, loops over
    prompts, probabilities kept as a plain vector of log weights with no floor."""

    def __init__(self, n_bins, step_size, exploration, ema):
        self.b, self.eta, self.gamma, self.beta = n_bins, step_size, exploration, ema
        self.S = [0.0] * n_bins
        self.Q = [0.0] * n_bins
        self.seen = [False] * n_bins
        self.logw = [0.0] * n_bins

    def update(self, bins, losses):
        m = len(bins)
        sums = [0.0] * self.b
        cnt = [0] * self.b
        for g, x in zip(bins, losses):
            sums[g] += x
            cnt[g] += 1
        for g in range(self.b):
            share = cnt[g] / m
            mean = sums[g] / cnt[g] if cnt[g] else 0.0
            self.S[g] = (1 - self.beta) * self.S[g] + self.beta * share * mean
            self.Q[g] = (1 - self.beta) * self.Q[g] + self.beta * share
            self.seen[g] = self.seen[g] or cnt[g] > 0
        scores = [self.S[g] / self.Q[g] if self.seen[g] else None for g in range(self.b)]
        seen_scores = [s for s in scores if s is not None]
        centre = sum(seen_scores) / len(seen_scores)
        for g in range(self.b):
            if scores[g] is not None:
                self.logw[g] += self.eta * (scores[g] - centre)

    def weights(self):
        return (1 - self.gamma) * _softmax(self.logw) + self.gamma / self.b

    def scores(self):
        return [self.S[g] / self.Q[g] if self.seen[g] else 0.0 for g in range(self.b)]


# --------------------------------------------------------------------------------------------
# hand-checked first steps
# --------------------------------------------------------------------------------------------


def test_hand_checked_first_two_steps_and_caps():
    ctrl = PromptGDRO(n_bins=3, step_size=0.5, exploration=0.1, ema=0.25, weight_cap=2.0)
    np.testing.assert_allclose(ctrl.weights, [1 / 3] * 3)

    # step 1: bins 0,0,1 with losses 1,3,5 -> means (2, 5), shares (2/3, 1/3, 0)
    ctrl.update([0, 0, 1], [1.0, 3.0, 5.0])
    np.testing.assert_allclose(ctrl.share_ema, [0.25 * 2 / 3, 0.25 / 3, 0.0])
    np.testing.assert_allclose(ctrl.scores, [2.0, 5.0, 0.0])  # first observation sets the score
    np.testing.assert_array_equal(ctrl.seen, [True, True, False])
    # centre = (2 + 5) / 2 = 3.5; increments (-1.5, +1.5, 0 for the unseen bin); step 0.5
    expected_p = _softmax([-0.75, 0.75, 0.0])
    np.testing.assert_allclose(np.exp(ctrl.log_weights), expected_p, rtol=1e-12)
    q = 0.9 * expected_p + 0.1 / 3
    np.testing.assert_allclose(ctrl.weights, q, rtol=1e-12)
    assert ctrl.step == 1

    # multipliers on the batch (0, 0, 1): q renormalised over bins {0, 1}, divided by shares
    qt = q[:2] / q[:2].sum()
    omega = qt / np.array([2 / 3, 1 / 3])
    assert omega[1] > 2.0  # the cap binds on the rare, heavy bin
    np.testing.assert_allclose(
        ctrl.multipliers([0, 0, 1]), [omega[0], omega[0], 2.0], rtol=1e-12
    )

    # step 2: bins 0,2,2,2 with losses 4,1,1,4 -> means (4, -, 2), shares (1/4, 0, 3/4)
    ctrl.update([0, 2, 2, 2], [4.0, 1.0, 1.0, 4.0])
    q_ema = np.array([0.75 * 0.25 * 2 / 3 + 0.25 * 0.25, 0.75 * 0.25 / 3, 0.25 * 0.75])
    np.testing.assert_allclose(ctrl.share_ema, q_ema)
    # bin 0: gain 0.25 * 0.25 / 0.1875 = 1/3 -> 2 + (4 - 2) / 3; bin 1 absent: kept; bin 2: first
    np.testing.assert_allclose(ctrl.scores, [8 / 3, 5.0, 2.0])
    centre = (8 / 3 + 5.0 + 2.0) / 3
    logits = np.array([-0.75, 0.75, 0.0]) + 0.5 * (np.array([8 / 3, 5.0, 2.0]) - centre)
    np.testing.assert_allclose(np.exp(ctrl.log_weights), _softmax(logits), rtol=1e-12)
    np.testing.assert_allclose(ctrl.log_weights, np.log(_softmax(logits)), rtol=1e-12)


def test_uniform_normalization_is_identity_at_start():
    ctrl = PromptGDRO(n_bins=4, normalization="uniform")
    np.testing.assert_allclose(ctrl.multipliers([0, 0, 0, 3]), 1.0)
    share = PromptGDRO(n_bins=4)
    # share normalisation: uniform q over the present bins {0, 3} -> 0.5 / 0.75 and 0.5 / 0.25
    np.testing.assert_allclose(share.multipliers([0, 0, 0, 3]), [2 / 3, 2 / 3, 2 / 3, 2.0])


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


batches = st.integers(min_value=1, max_value=40).flatmap(
    lambda m: st.tuples(
        st.lists(st.integers(0, 5), min_size=m, max_size=m),
        st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=m, max_size=m),
    )
)


@settings(max_examples=30)
@given(st.lists(batches, min_size=1, max_size=8))
def test_matches_literal_reference(seq):
    """The share-debiased EMA equals the ratio of EMAs S/Q (App. C.2.1 reading), and the weights
    follow the centred exponential-weights recursion (Thm. F.7's adversary)."""
    ctrl = PromptGDRO(n_bins=6, step_size=0.65, exploration=0.01, ema=0.12)
    ref = _ReferencePromptGDRO(6, 0.65, 0.01, 0.12)
    for bins, losses in seq:
        ctrl.update(bins, losses)
        ref.update(bins, losses)
        np.testing.assert_allclose(ctrl.scores, ref.scores(), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ctrl.weights, ref.weights(), rtol=1e-9, atol=1e-15)
    assert ctrl.step == len(seq)


@settings(max_examples=40)
@given(
    st.lists(st.integers(0, 7), min_size=1, max_size=60),
    st.lists(st.floats(-2.0, 2.0, allow_nan=False), min_size=8, max_size=8),
    st.integers(0, 5),
)
def test_share_multipliers_give_the_q_mixture(bins, losses_by_bin, n_warm):
    """Eq. 13 / 17 with normalization="share": without clipping, the multiplier-weighted batch
    mean of any per-prompt quantity is the q-mixture (renormalised over present bins) of the bin
    means, and the mean multiplier is exactly 1 (compute neutrality)."""
    ctrl = PromptGDRO(n_bins=8, weight_cap=1e9)
    rng = np.random.default_rng(n_warm)
    for _ in range(n_warm):
        ctrl.update(rng.integers(0, 8, size=20), rng.normal(size=20))
    w = ctrl.multipliers(bins)
    x = np.array([losses_by_bin[b] for b in bins]) + 0.1 * np.arange(len(bins))
    q = ctrl.weights
    present = sorted(set(bins))
    qt = {b: q[b] / sum(q[c] for c in present) for b in present}
    mixture = sum(qt[b] * np.mean([x[i] for i in range(len(bins)) if bins[i] == b]) for b in present)
    assert math.isclose(float(np.mean(w * x)), mixture, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(float(np.mean(w)), 1.0, rel_tol=1e-12)
    capped = PromptGDRO(n_bins=8, weight_cap=1.5)
    capped.log_weights = ctrl.log_weights.copy()
    np.testing.assert_allclose(capped.multipliers(bins), np.minimum(w, 1.5))


def test_empty_bins_keep_their_state():
    ctrl = PromptGDRO(n_bins=3, ema=0.3)
    ctrl.update([0, 1, 2], [1.0, 1.0, 1.0])
    before = _state(ctrl)
    # bin 2 absent; bins 0 and 1 keep the same mean loss as bin 2's stored score
    ctrl.update([0, 1, 1], [1.0, 1.0, 1.0])
    assert ctrl.scores[2] == before[1][2]
    assert ctrl.share_ema[2] == pytest.approx(0.7 * before[2][2])
    # equal scores -> the absent bin does not lose weight
    np.testing.assert_allclose(ctrl.weights, [1 / 3] * 3, rtol=1e-12)


def test_unseen_bins_get_the_neutral_update():
    """A never-observed bin keeps its log weight at the mean of the observed bins' log weights."""
    ctrl = PromptGDRO(n_bins=4, step_size=0.3)
    rng = np.random.default_rng(3)
    for _ in range(25):
        bins = rng.integers(0, 3, size=16)
        ctrl.update(bins, rng.normal(loc=bins.astype(float)))
        lw = ctrl.log_weights
        assert lw[3] == pytest.approx(lw[:3].mean(), abs=1e-9)
        assert not ctrl.seen[3]


def test_concentrates_on_the_hardest_bin():
    ctrl = PromptGDRO(n_bins=5, exploration=0.05)
    bins = np.repeat(np.arange(5), [100, 60, 40, 20, 4])  # the hardest bin is the rarest
    losses = bins * 0.5
    for _ in range(60):
        ctrl.update(bins, losses)
    q = ctrl.weights
    assert int(np.argmax(q)) == 4
    assert q[4] > 0.95 - 1e-9
    assert q.min() >= 0.05 / 5 - 1e-15  # exploration floor
    m = ctrl.multipliers(bins)
    assert m[bins == 4].min() == 15.0  # the cap binds on the rare hard bin


def test_deterministic_given_inputs():
    rng = np.random.default_rng(0)
    seq = [(rng.integers(0, 10, 64), rng.normal(size=64)) for _ in range(20)]
    a, b = PromptGDRO(seed=1), PromptGDRO(seed=2)
    for bins, losses in seq:
        a.update(bins, losses)
        b.update(bins, losses)
    _assert_same_state(_state(a), _state(b))


@pytest.mark.parametrize("big", [1e6, 1e100])
def test_extreme_losses_keep_state_finite(big):
    ctrl = PromptGDRO(n_bins=4, step_size=0.65)
    rng = np.random.default_rng(1)
    for t in range(200):
        bins = rng.integers(0, 4, size=32)
        losses = np.where(rng.random(32) < 0.5, big, -big) * (1 if t % 2 else -1)
        losses[0] = 0.0
        ctrl.update(bins, losses)
        for arr in (ctrl.log_weights, ctrl.scores, ctrl.share_ema, ctrl.weights):
            assert np.all(np.isfinite(arr))
        assert ctrl.weights.sum() == pytest.approx(1.0)
        assert np.all(np.isfinite(ctrl.multipliers(bins)))


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bins, losses, exc, match",
    [
        ([0, 3], [1.0, 2.0], ValueError, r"bin_ids must be in \[0, 3\), got 3 at index 1"),
        ([-1, 0], [1.0, 2.0], ValueError, r"bin_ids must be in \[0, 3\), got -1"),
        ([0, 1], [1.0], ValueError, "same shape"),
        ([0, 1], [1.0, np.nan], ValueError, "prompt_losses must be finite"),
        ([0, 1], [np.inf, 1.0], ValueError, "prompt_losses must be finite"),
        ([0, 1], [1e101, 1.0], ValueError, "magnitude"),
        ([], [], ValueError, "at least 1"),
        ([[0, 1]], [[1.0, 2.0]], ValueError, "1-D"),
        ([0.5, 1], [1.0, 2.0], ValueError, "integers"),
        ("ab", [1.0, 2.0], TypeError, "bin_ids"),
    ],
)
def test_invalid_update_raises_and_leaves_state(bins, losses, exc, match):
    ctrl = PromptGDRO(n_bins=3)
    ctrl.update([0, 1, 2], [0.1, 0.2, 0.3])
    before = _state(ctrl)
    with pytest.raises(exc, match=match):
        ctrl.update(bins, losses)
    _assert_same_state(before, _state(ctrl))


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        PromptGDRO(n_bins=0)
    with pytest.raises(ValueError, match="step_size must be >"):
        PromptGDRO(step_size=0.0)
    with pytest.raises(ValueError, match="exploration must be <= 1"):
        PromptGDRO(exploration=1.5)
    with pytest.raises(ValueError, match="ema must be >"):
        PromptGDRO(ema=0.0)
    with pytest.raises(ValueError, match="weight_cap"):
        PromptGDRO(weight_cap=-1.0)
    with pytest.raises(ValueError, match="normalization"):
        PromptGDRO(normalization="mean")
    with pytest.raises(ValueError, match="bin_ids must be in"):
        PromptGDRO(n_bins=2).multipliers([0, 2])
