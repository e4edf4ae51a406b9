"""Tests for bandits.RolloutGDRO and bandits.PrimalDualRolloutGDRO (GDRO Sec. 3.3, App. C.2.2,
F.2.3-F.2.4, eq. 36-38, 64-71, Thm. F.17 and F.22)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from bandits import PrimalDualRolloutGDRO, RolloutGDRO
from solvers import sqrt_allocation

ARMS = np.arange(2, 13)


def _state(ctrl: RolloutGDRO):
    return (
        ctrl.log_weights.copy(),
        ctrl.arm_scores.copy(),
        ctrl.arm_share_ema.copy(),
        ctrl.arm_seen.copy(),
        ctrl.shadow_price,
        ctrl.step,
    )


def _assert_same_state(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def _warm(ctrl: RolloutGDRO, steps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        bins = rng.integers(0, ctrl.n_bins, size=24)
        n = ctrl.allocate(bins)
        ctrl.update(bins, n, rng.normal(size=24) - 0.05 * n)


# --------------------------------------------------------------------------------------------
# budget matching (eq. 36, App. C.2.2)
# --------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(
    st.lists(st.integers(0, 9), min_size=1, max_size=300),
    st.integers(0, 6),
    st.integers(0, 2**31 - 1),
)
def test_allocate_meets_the_mean_budget_exactly(bins, warm_steps, seed):
    """Eq. 36 compute neutrality: sum_i n_i == n_bar * M for every batch (reachable: integer
    n_bar that is an arm), arms respected, one arm per bin."""
    ctrl = RolloutGDRO(seed=seed)
    _warm(ctrl, warm_steps, seed)
    n = ctrl.allocate(bins)
    bins = np.asarray(bins)
    assert n.dtype == np.int64 and n.shape == bins.shape
    assert int(n.sum()) == 4 * len(bins)
    assert np.all(np.isin(n, ARMS))
    for b in np.unique(bins):
        assert np.unique(n[bins == b]).size == 1
    info = ctrl.last_allocation
    assert info.exact and info.total == 4 * len(bins) and info.match.success


@settings(max_examples=40)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=9),
    st.sampled_from([2.5, 3.5, 4.25, 5.0, 5.5]),
    st.integers(0, 1000),
)
def test_unreachable_budget_gives_the_nearest_reachable_total(bins, n_bar, seed):
    """When n_bar * M is not a reachable total, the allocation uses the reachable total nearest
    to round(n_bar * M) (ties: smaller), checked by brute force over all arm combinations."""
    arms = [2, 4, 6]
    ctrl = RolloutGDRO(n_bins=4, arms=arms, mean_budget=n_bar, seed=seed)
    n = ctrl.allocate(bins)
    counts = np.bincount(bins, minlength=4)
    present = np.flatnonzero(counts)
    totals = {
        int(sum(counts[b] * a for b, a in zip(present, combo)))
        for combo in itertools.product(arms, repeat=present.size)
    }
    target = int(round(n_bar * len(bins)))
    best = min(totals, key=lambda s: (abs(s - target), s))
    info = ctrl.last_allocation
    assert int(n.sum()) == best == info.total
    assert info.exact == (best == n_bar * len(bins))
    assert info.requested_total == n_bar * len(bins)


@settings(max_examples=40)
@given(
    st.sets(st.integers(1, 9), min_size=1, max_size=4),
    st.lists(st.integers(0, 2), min_size=1, max_size=7),
    st.integers(0, 100),
    st.data(),
)
def test_exact_iff_reachable_for_any_arm_set(arm_set, bins, seed, data):
    """Eq. 36 for arbitrary arm sets (unsorted input) and integer budgets that need not be arms:
    the mean budget is met exactly iff some per-bin arm choice reaches it (brute force), and the
    allocation only uses the given arms."""
    arms = sorted(arm_set, reverse=True)
    n_bar = data.draw(st.integers(min(arms), max(arms)))
    ctrl = RolloutGDRO(n_bins=3, arms=arms, mean_budget=n_bar, seed=seed)
    n = ctrl.allocate(bins)
    counts = np.bincount(bins, minlength=3)
    present = np.flatnonzero(counts)
    totals = {
        int(sum(counts[b] * a for b, a in zip(present, combo)))
        for combo in itertools.product(arms, repeat=present.size)
    }
    reachable = n_bar * len(bins) in totals
    assert ctrl.last_allocation.exact == reachable
    assert (int(n.sum()) == n_bar * len(bins)) == reachable
    assert set(n.tolist()) <= set(arms)
    np.testing.assert_array_equal(ctrl.arms, sorted(arms))


@settings(max_examples=30)
@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=12),
    st.integers(0, 2**31 - 1),
    st.integers(0, 4),
)
def test_mode_selection_is_the_most_probable_feasible_joint_allocation(bins, seed, warm):
    """selection="mode": the DP returns argmin sum_b c_b (-log p_b(n_b)) s.t. the exact budget,
    checked by brute force over all K^B arm combinations."""
    arms = [2, 3, 5, 8]
    ctrl = RolloutGDRO(n_bins=3, arms=arms, mean_budget=5, selection="mode", seed=seed)
    rng = np.random.default_rng(seed)
    ctrl.log_weights = rng.normal(size=(3, 4))
    _warm(ctrl, warm, seed)
    n = ctrl.allocate(bins)
    counts = np.bincount(bins, minlength=3)
    logp = np.log(ctrl.arm_probabilities())
    best = math.inf
    for combo in itertools.product(range(4), repeat=3):
        if sum(counts[b] * arms[k] for b, k in enumerate(combo)) != 5 * len(bins):
            continue
        best = min(best, -sum(counts[b] * logp[b, k] for b, k in enumerate(combo)))
    chosen = {int(b): arms.index(int(v)) for b, v in zip(bins, n)}
    value = -sum(counts[b] * logp[b, k] for b, k in chosen.items())
    assert value == pytest.approx(best, rel=1e-12, abs=1e-12)


def test_gumbel_selection_keeps_the_exp3p_draw_when_it_meets_the_budget():
    """selection="gumbel": the per-bin argmin of -(log p_b + G_b) is an exact draw from p_b
    (Gumbel-max); whenever those draws already meet the budget, the DP returns exactly them (the
    projection only acts when needed). Replays the controller's noise from the same seed (one
    ``gumbel(size=(n_bins, n_arms))`` call per allocate)."""
    arms = np.array([2, 3, 4, 5, 6])
    p_rows = np.array([[0.1, 0.4, 0.2, 0.25, 0.05], [0.3, 0.1, 0.2, 0.1, 0.3], [0.2] * 5])
    bins = np.array([0, 0, 1, 2, 2, 2])
    counts = np.bincount(bins, minlength=3)
    agreed = 0
    for seed in range(300):
        ctrl = RolloutGDRO(n_bins=3, arms=arms, mean_budget=4, exploration=0.0, seed=seed)
        ctrl.log_weights = np.log(p_rows)
        n = ctrl.allocate(bins)
        noise = np.random.default_rng(seed).gumbel(size=(3, 5))
        draw = arms[np.argmax(np.log(p_rows) + noise, axis=1)]
        if int(counts @ draw) == 4 * bins.size:
            agreed += 1
            np.testing.assert_array_equal(n, draw[bins])
        assert int(n.sum()) == 4 * bins.size
    assert agreed >= 10  # the check above did run


# --------------------------------------------------------------------------------------------
# learning rule, shadow price (eq. 37-38)
# --------------------------------------------------------------------------------------------


def test_hand_checked_first_update():
    """Eq. 37-38 by hand: share-debiased arm scores, unplayed arm imputed (``arm_model="free"``),
    exponentiated-gradient step with the price before the dual step, then the signed dual step on
    the violation of the *updated* proposal (alternating order). With n_bar = 4 the midpoint of
    arms (2, 4, 6), the budget start is the uniform distribution."""
    arms = [2, 4, 6]
    a = np.array(arms, dtype=float)
    ctrl = RolloutGDRO(
        n_bins=2, arms=arms, mean_budget=4, dual_step=0.1, step_size=0.5, exploration=0.0, ema=0.4
    )
    np.testing.assert_allclose(ctrl.arm_probabilities(), 1 / 3)  # max-entropy with mean 4 = uniform
    # bin 0: two prompts at arm 2 (utilities 1, 3) and one at arm 6 (utility -1); bin 1 absent
    ctrl.update([0, 0, 0], [2, 2, 6], [1.0, 3.0, -1.0])
    # arm losses -J: arm 2 -> -2 (share 2/3), arm 6 -> +1 (share 1/3); first obs set the scores
    np.testing.assert_allclose(ctrl.arm_scores[0], [-2.0, 0.0, 1.0])
    np.testing.assert_allclose(ctrl.arm_share_ema[0], [0.4 * 2 / 3, 0.0, 0.4 / 3])
    np.testing.assert_array_equal(ctrl.arm_seen, [[True, False, True], [False, False, False]])
    # unplayed arm 4 imputed with the mean (-2 + 1) / 2; price 0 at the primal step
    est = np.array([-2.0, -0.5, 1.0])
    p = np.exp(-0.5 * est)
    p /= p.sum()
    np.testing.assert_allclose(ctrl.arm_probabilities()[0], p, rtol=1e-12)
    np.testing.assert_allclose(ctrl.arm_probabilities()[1], [1 / 3] * 3)  # absent bin unchanged
    # dual step: shares (1, 0), violation of the updated proposal E_p[n] - 4 < 0 -> negative price
    mu1 = 0.1 * (float(p @ a) - 4.0)
    assert mu1 < 0 and ctrl.shadow_price == pytest.approx(mu1, rel=1e-12)
    # second update: the primal step uses mu1 and the new score of arm 4 (first obs: 0)
    ctrl.update([0], [4], [0.0])
    est2 = np.array([-2.0, 0.0, 1.0])
    p2 = p * np.exp(-0.5 * (est2 - est2.mean() + mu1 * (a - 4.0)))
    p2 /= p2.sum()
    np.testing.assert_allclose(ctrl.arm_probabilities()[0], p2, rtol=1e-12)
    assert ctrl.shadow_price == pytest.approx(mu1 + 0.1 * (float(p2 @ a) - 4.0), rel=1e-12)
    # the paper's projection on [0, mu_max] (signed_price=False) keeps the price at 0 here
    clipped = RolloutGDRO(n_bins=2, arms=arms, mean_budget=4, dual_step=0.1, step_size=0.5, exploration=0.0,
                          signed_price=False)
    clipped.update([0, 0, 0], [2, 2, 6], [1.0, 3.0, -1.0])
    assert clipped.shadow_price == 0.0


def test_inverse_arm_model_imputes_the_one_over_n_law():
    """``arm_model="inverse"`` (utility -c_b / n, Remark F.25): an unplayed arm n gets the score
    c_hat_b / n with c_hat_b the share-EMA-weighted mean of n_k * score_k over the played arms."""
    arms = [2, 4, 8]
    ctrl = RolloutGDRO(n_bins=1, arms=arms, mean_budget=4, dual_step=0.0, step_size=1.0, exploration=0.0,
                       arm_model="inverse", arm_start="uniform")
    # three prompts at arm 2 with -J = 0.5 (c = 1) and one at arm 8 with -J = 0.25 (c = 2)
    ctrl.update([0, 0, 0, 0], [2, 2, 2, 8], [-0.5, -0.5, -0.5, -0.25])
    c_hat = (0.75 * 2 * 0.5 + 0.25 * 8 * 0.25) / (0.75 + 0.25)  # share EMAs 0.4 * (3/4, 1/4)
    est = np.array([0.5, c_hat / 4, 0.25])
    p = np.exp(-(est - np.mean([0.5, 0.25])))
    p /= p.sum()
    np.testing.assert_allclose(ctrl.arm_probabilities()[0], p, rtol=1e-12)
    free = RolloutGDRO(n_bins=1, arms=arms, mean_budget=4, dual_step=0.0, step_size=1.0, exploration=0.0,
                       arm_start="uniform")
    free.update([0, 0, 0, 0], [2, 2, 2, 8], [-0.5, -0.5, -0.5, -0.25])
    p_free = np.exp(-np.array([0.5, 0.375, 0.25]))
    np.testing.assert_allclose(free.arm_probabilities()[0], p_free / p_free.sum(), rtol=1e-12)


@settings(max_examples=40)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=8, unique=True), st.floats(0.0, 1.0))
def test_budget_start_is_the_max_entropy_distribution_with_mean_budget(arm_set, frac):
    """``arm_start="budget"``: every bin starts from p(n) ~ exp(-lam n) (GDRO eq. 60 with a flat
    cost) whose mean is exactly n_bar -- the maximum-entropy distribution on the arms with that
    mean (the exponential family in n with that mean) -- so the initial proposal meets the budget;
    a point mass at an end arm."""
    arms = np.array(sorted(arm_set))
    n_bar = float(arms[0] + frac * (arms[-1] - arms[0]))
    ctrl = RolloutGDRO(n_bins=2, arms=arms, mean_budget=n_bar, exploration=0.0, seed=0)
    p = ctrl.arm_probabilities()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p @ arms, n_bar, rtol=1e-9, atol=1e-9 * arms[-1])
    if arms.size >= 3 and arms[0] < n_bar < arms[-1]:
        # exponential family in n: log p is affine in n (where not floored)
        lp = np.log(p[0])
        slope = np.diff(lp) / np.diff(arms)
        np.testing.assert_allclose(slope, slope[0], rtol=1e-6, atol=1e-9)



def test_shadow_price_is_projected_on_its_interval():
    ctrl = RolloutGDRO(n_bins=2, dual_step=1.0, price_cap=0.7, seed=0)
    bins = [0, 1, 1]
    for _ in range(8):  # utility grows with n faster than the capped price: E[n] stays > 4
        n = ctrl.allocate(bins)
        ctrl.update(bins, n, 10.0 * n)
        assert 0.0 <= ctrl.shadow_price <= 0.7
    assert ctrl.shadow_price == 0.7
    # n_bar = max arm: the proposal (with exploration) is below the budget, violation < 0
    low = RolloutGDRO(n_bins=2, mean_budget=12, dual_step=1.0, seed=0, signed_price=False)
    n = low.allocate(bins)
    assert np.all(n == 12)
    low.update(bins, n, [0.0, 0.0, 0.0])
    assert low.shadow_price == 0.0  # the paper's projection on [0, mu_max] (eq. 65)
    signed = RolloutGDRO(n_bins=2, mean_budget=12, dual_step=1.0, seed=0, price_cap=0.03)
    for _ in range(3):
        signed.update(bins, signed.allocate(bins), [0.0, 0.0, 0.0])
        assert -0.03 <= signed.shadow_price < 0.0  # equality budget: a sign-free price in [-mu_max, mu_max]
    assert signed.shadow_price == -0.03


def test_learns_a_variance_aware_allocation():
    """Fed the utility J_b(n) = -v_b / n (minus the variance proxy, Remark F.25), the proposal
    distributions put more rollouts on noisier bins (the square-root ordering of Thm. F.17) while
    every realised allocation meets the budget exactly."""
    v = np.array([0.5, 2.0, 8.0, 32.0])
    ctrl = RolloutGDRO(n_bins=4, dual_step=0.05, seed=3)
    rng = np.random.default_rng(3)
    for _ in range(400):
        bins = rng.integers(0, 4, size=64)
        n = ctrl.allocate(bins)
        assert n.sum() == 4 * 64
        ctrl.update(bins, n, -v[bins] / n)
    e = ctrl.expected_allocation()
    assert np.all(np.diff(e) > 0), e
    assert ctrl.shadow_price > 0


def _stationary(steps, seed, **kw):
    """Fixed bins with fixed success probabilities, Bernoulli rewards, Rollout-GDRO fed J = -4 s2 / n
    (Remark F.25). Returns the last 50 steps' mean counts per bin and eq. 19 proxy over uniform's."""
    p_b = np.array([0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 0.995])
    q = np.array([0.3, 0.15, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05])
    v = p_b * (1 - p_b)
    rng = np.random.default_rng(seed)
    ctrl = RolloutGDRO(n_bins=8, arms=ARMS, mean_budget=4, seed=seed, **kw)
    sums, seen, ratios = np.zeros(8), np.zeros(8), []
    for t in range(steps):
        bins = rng.choice(8, size=128, p=q)
        n = ctrl.allocate(bins)
        succ = rng.binomial(n, p_b[bins])
        ctrl.update(bins, n, -4.0 * (succ - succ**2 / n) / (n - 1) / n)
        if t >= steps - 50:
            np.add.at(sums, bins, n)
            np.add.at(seen, bins, 1)
            ratios.append(np.mean(v[bins] / n) / np.mean(v[bins] / 4.0))
    target = sqrt_allocation(v, q, 4.0, lower=2.0, upper=12.0).n
    return sums / seen, target, q, float(np.mean(ratios)), ctrl


def test_moves_toward_the_square_root_law_on_a_stationary_instance():
    """Thm F.17 / eq. 19-21 and Remark F.25: on a stationary instance (fixed bins and success
    probabilities), Rollout-GDRO with the variance utility and its fixes (start at the budget,
    signed price, 1/n law for unplayed arms) moves its per-bin counts toward the square-root
    allocation n_b* (sqrt_allocation with the true v_b = p_b (1 - p_b), bounds 2..12): the
    share-weighted distance to n_b* falls below half of uniform's, the eq. 19 proxy falls below
    0.9 of uniform's (the continuous optimum is 0.79), and the price stays bounded (no oscillation)."""
    for seed in (0, 1):
        n, target, q, ratio, ctrl = _stationary(300, seed, arm_model="inverse")
        dist = math.sqrt(q @ (n - target) ** 2)
        dist_uniform = math.sqrt(q @ (4.0 - target) ** 2)
        assert dist < dist_uniform / 2, (n, target)
        assert ratio < 0.9, ratio
        assert abs(ctrl.shadow_price) < 0.5


def test_deterministic_for_a_seed():
    def run(seed):
        ctrl = RolloutGDRO(seed=seed)
        rng = np.random.default_rng(11)
        out = []
        for _ in range(15):
            bins = rng.integers(0, 10, size=64)
            n = ctrl.allocate(bins)
            ctrl.update(bins, n, rng.normal(size=64))
            out.append(n)
        return np.concatenate(out), _state(ctrl)

    n1, s1 = run(5)
    n2, s2 = run(5)
    np.testing.assert_array_equal(n1, n2)
    _assert_same_state(s1, s2)
    n3, _ = run(6)
    assert not np.array_equal(n1, n3)
    gen = np.random.default_rng(5)
    assert np.array_equal(RolloutGDRO(seed=gen).allocate([0, 1, 2]), RolloutGDRO(seed=5).allocate([0, 1, 2]))


@pytest.mark.parametrize("big", [1e6, 1e100])
def test_extreme_utilities_keep_state_finite(big):
    ctrl = RolloutGDRO(seed=0)
    rng = np.random.default_rng(0)
    for t in range(100):
        bins = rng.integers(0, 10, size=64)
        n = ctrl.allocate(bins)
        assert n.sum() == 256
        util = np.where(rng.random(64) < 0.5, big, -big) * (1 if t % 3 else -1)
        ctrl.update(bins, n, util)
        for arr in _state(ctrl)[:3]:
            assert np.all(np.isfinite(arr))
        assert np.isfinite(ctrl.shadow_price)
        np.testing.assert_allclose(ctrl.arm_probabilities().sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "bins, n, util, exc, match",
    [
        ([0, 10], [4, 4], [0.0, 0.0], ValueError, r"bin_ids must be in \[0, 10\), got 10 at index 1"),
        ([0, 1], [4, 13], [0.0, 0.0], ValueError, "n must contain only arms"),
        ([0, 1], [4, 1], [0.0, 0.0], ValueError, "n must contain only arms"),
        ([0, 1], [4, 4.5], [0.0, 0.0], ValueError, "n must contain integers"),
        ([0, 1], [4, 4, 4], [0.0, 0.0], ValueError, "same shape"),
        ([0, 1], [4, 4], [0.0], ValueError, "same shape"),
        ([0, 1], [4, 4], [np.nan, 0.0], ValueError, "utilities must be finite"),
        ([0, 1], [4, 4], [0.0, -np.inf], ValueError, "utilities must be finite"),
        ([], [], [], ValueError, "at least 1"),
    ],
)
def test_invalid_update_raises_and_leaves_state(bins, n, util, exc, match):
    ctrl = RolloutGDRO(seed=0)
    _warm(ctrl, 2, 0)
    before = _state(ctrl)
    with pytest.raises(exc, match=match):
        ctrl.update(bins, n, util)
    _assert_same_state(before, _state(ctrl))


def test_invalid_allocate_and_constructor():
    ctrl = RolloutGDRO(n_bins=3, seed=0)
    with pytest.raises(ValueError, match=r"bin_ids must be in \[0, 3\)"):
        ctrl.allocate([0, 3])
    with pytest.raises(ValueError, match="at least 1"):
        ctrl.allocate([])
    assert ctrl.last_allocation is None
    with pytest.raises(ValueError, match="mean_budget must be <= 12"):
        RolloutGDRO(mean_budget=13)
    with pytest.raises(ValueError, match="mean_budget must be >= 2"):
        RolloutGDRO(mean_budget=1)
    with pytest.raises(ValueError, match="arms must be distinct"):
        RolloutGDRO(arms=[2, 2, 4])
    with pytest.raises(ValueError, match="arms must be positive"):
        RolloutGDRO(arms=[0, 2, 4], mean_budget=2)
    with pytest.raises(ValueError, match="selection"):
        RolloutGDRO(selection="greedy")
    with pytest.raises(ValueError, match="dual_step must be >= 0"):
        RolloutGDRO(dual_step=-0.1)


# --------------------------------------------------------------------------------------------
# full-information primal-dual controller (eq. 64-71, Thm. F.22)
# --------------------------------------------------------------------------------------------


def _lp_optimum(v_costs, q, arms, n_bar):
    """Eq. 69 as an LP over the per-bin arm distributions (scipy HiGHS, independent)."""
    b, k = v_costs.shape
    res = linprog(
        (q[:, None] * v_costs).ravel(),
        A_ub=(q[:, None] * np.asarray(arms, float)[None, :]).ravel()[None, :],
        b_ub=[n_bar],
        A_eq=np.kron(np.eye(b), np.ones(k)),
        b_eq=np.ones(b),
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0
    return res.fun, res.x.reshape(b, k)


class _ReferencePrimalDual:
    """Literal eq. 64-65 in probability space (multiplicative update, explicit normalisation)."""

    def __init__(self, b, arms, n_bar, eta_p, eta_mu, mu_max):
        self.p = np.full((b, len(arms)), 1.0 / len(arms))
        self.a = np.asarray(arms, float)
        self.n_bar, self.eta_p, self.eta_mu, self.mu_max = n_bar, eta_p, eta_mu, mu_max
        self.mu = 0.0
        self.ps, self.mus = [], []

    def update(self, costs, q):
        self.ps.append(self.p.copy())
        self.mus.append(self.mu)
        g = sum(q[b] * (self.p[b] @ self.a) for b in range(len(q))) - self.n_bar
        new = self.p * np.exp(-self.eta_p * q[:, None] * (costs + self.mu * self.a[None, :]))
        self.p = new / new.sum(axis=1, keepdims=True)
        self.mu = min(max(self.mu + self.eta_mu * g, 0.0), self.mu_max)


def test_primal_dual_matches_the_literal_recursion():
    rng = np.random.default_rng(0)
    arms = [2, 3, 5, 8]
    ctrl = PrimalDualRolloutGDRO(3, arms, 4.0, primal_step=0.4, dual_step=0.2, price_cap=3.0)
    ref = _ReferencePrimalDual(3, arms, 4.0, 0.4, 0.2, 3.0)
    for _ in range(60):
        costs = rng.uniform(0, 2, size=(3, 4))
        q = rng.dirichlet(np.ones(3))
        ctrl.update(costs, q)
        ref.update(costs, q)
        np.testing.assert_allclose(ctrl.arm_probabilities(), ref.p, rtol=1e-10)
        assert ctrl.shadow_price == pytest.approx(ref.mu, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(ctrl.average_arm_probabilities(), np.mean(ref.ps, axis=0), rtol=1e-10)
    assert ctrl.average_shadow_price == pytest.approx(np.mean(ref.mus), rel=1e-12)


@settings(max_examples=12)
@given(
    st.lists(st.floats(0.2, 40.0), min_size=2, max_size=5),
    st.integers(0, 2**31 - 1),
    st.sampled_from([300, 1500]),
    st.sampled_from([0.5, 2.0, 6.0]),
    st.sampled_from([3.0, 4.0, 6.5]),
)
def test_theorem_f22_gap_optimality_and_feasibility(v, seed, horizon, mu_max, n_bar):
    """Thm. F.22 with a fixed cost landscape V_b(n) = v_b / n and the step sizes of eq. 67: the
    saddle gap of the averaged iterates obeys eq. 66 and eq. 68; pbar is Gap_T-optimal for the
    budgeted problem eq. 69 (eq. 70, optimum by LP) and Gap_T-feasible (eq. 71)."""
    v = np.asarray(v)
    b = v.size
    q = np.random.default_rng(seed).dirichlet(np.ones(b))
    costs = v[:, None] / ARMS[None, :]
    v_max = float(costs.max())
    eta_p, eta_mu = PrimalDualRolloutGDRO.theorem_step_sizes(horizon, b, 11, v_max, mu_max, 12)
    ctrl = PrimalDualRolloutGDRO(b, ARMS, n_bar, primal_step=eta_p, dual_step=eta_mu, price_cap=mu_max)
    for _ in range(horizon):
        ctrl.update(costs, q)
    gap = ctrl.saddle_gap(costs, q)
    bound66 = ctrl.gap_bound(v_max)
    bound68 = PrimalDualRolloutGDRO.theorem_gap_bound(horizon, b, 11, v_max, mu_max, 12)
    assert -1e-12 <= gap <= bound66 * (1 + 1e-12)
    assert bound66 <= bound68 * (1 + 1e-12)  # eq. 67 steps give eq. 68 (AM-GM, equality)
    opt, _ = _lp_optimum(costs, q, ARMS, n_bar)
    pbar = ctrl.average_arm_probabilities()
    objective = float(q @ (pbar * costs).sum(axis=1))
    violation = float(q @ (pbar @ ARMS)) - n_bar
    assert objective - opt <= bound66 + 1e-12  # eq. 70
    assert max(violation, 0.0) <= (opt + bound66) / mu_max + 1e-12  # eq. 71
    assert max(violation, 0.0) <= (v_max + bound66) / mu_max + 1e-12


def test_saddle_gap_closed_form_matches_the_lagrangian():
    rng = np.random.default_rng(4)
    arms = [2, 4, 7]
    costs = rng.uniform(0, 3, size=(3, 3))
    q = np.array([0.2, 0.5, 0.3])
    ctrl = PrimalDualRolloutGDRO(3, arms, 4, primal_step=0.3, dual_step=0.1, price_cap=2.0)
    for _ in range(40):
        ctrl.update(costs, q)
    pbar, mubar = ctrl.average_arm_probabilities(), ctrl.average_shadow_price
    # max over mu of a linear function: at an endpoint; min over p: over all vertex profiles
    upper = max(ctrl.lagrangian(pbar, mu, costs, q) for mu in np.linspace(0.0, 2.0, 201))
    lower = min(
        ctrl.lagrangian(np.eye(3)[list(combo)], mubar, costs, q)
        for combo in itertools.product(range(3), repeat=3)
    )
    assert ctrl.saddle_gap(costs, q) == pytest.approx(upper - lower, rel=1e-12, abs=1e-12)


def test_average_allocation_approaches_the_square_root_law():
    """Thm. F.17 via Thm. F.22: with V_b(n) = v_b / n, the averaged allocation E_pbar[n]
    approaches the square-root law (solvers.sqrt_allocation with the arm range as bounds): the
    error shrinks with T and is below one arm step at T = 8000."""
    v = np.array([2.0, 9.0, 30.0, 5.0])
    q = np.array([0.3, 0.3, 0.2, 0.2])
    costs = v[:, None] / ARMS[None, :]
    target = sqrt_allocation(v, q, 4.0, lower=2, upper=12).n  # (2, 4.18, 7.62, 3.11)
    errors = []
    for horizon in (500, 2000, 8000):
        eta_p, eta_mu = PrimalDualRolloutGDRO.theorem_step_sizes(horizon, 4, 11, costs.max(), 1.0, 12)
        ctrl = PrimalDualRolloutGDRO(4, ARMS, 4, primal_step=eta_p, dual_step=eta_mu, price_cap=1.0)
        for _ in range(horizon):
            ctrl.update(costs, q)
        errors.append(float(np.max(np.abs(ctrl.expected_allocation() - target))))
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 0.75, (errors, target)  # within one arm step of the continuous law


def test_primal_dual_validation():
    ctrl = PrimalDualRolloutGDRO(2, [2, 4], 3)
    before = (ctrl.log_weights.copy(), ctrl.shadow_price, ctrl.step)
    with pytest.raises(ValueError, match=r"arm_costs must have shape \(n_bins, n_arms\) = \(2, 2\)"):
        ctrl.update(np.zeros((2, 3)), [0.5, 0.5])
    with pytest.raises(ValueError, match="arm_costs must be finite"):
        ctrl.update([[0.0, np.nan], [0.0, 0.0]], [0.5, 0.5])
    with pytest.raises(ValueError, match="shares must sum to 1"):
        ctrl.update(np.zeros((2, 2)), [0.5, 0.6])
    with pytest.raises(ValueError, match="shares must be non-negative"):
        ctrl.update(np.zeros((2, 2)), [1.5, -0.5])
    np.testing.assert_array_equal(before[0], ctrl.log_weights)
    assert (ctrl.shadow_price, ctrl.step) == before[1:]
    assert ctrl.gap_bound(1.0) == math.inf
    with pytest.raises(ValueError, match=r"p must have shape \(n_bins, n_arms\) = \(2, 2\)"):
        ctrl.expected_allocation(np.ones((3, 5)) / 5)
    # eq. 67 divides by V_max + mu_max a_max: an underflowing product must not ZeroDivisionError
    with pytest.raises(ValueError, match="cost_max \\+ price_cap \\* arm_max must be > 0"):
        PrimalDualRolloutGDRO.theorem_step_sizes(10, 2, 2, 0.0, 1e-320, 1e-320)


def test_gap_bound_and_theorem_helpers_overflow_as_value_errors():
    """Extreme inputs: ``PrimalDualRolloutGDRO.gap_bound(1e308)`` raised OverflowError (Python float
    ``**``); the eq. 67/68 helpers returned inf or 0 for extreme inputs. All raise a ValueError
    naming the inputs; ordinary values are unchanged."""
    ctrl = PrimalDualRolloutGDRO(3, range(2, 13), 4)
    costs = np.array([1.0, 4.0, 16.0])[:, None] / np.arange(2, 13)[None, :]
    ctrl.update(costs, [0.5, 0.3, 0.2])
    assert math.isfinite(ctrl.gap_bound(8.0))
    with pytest.raises(ValueError, match=r"eq. 66 bound overflows float64 \(cost_max=1e\+308"):
        ctrl.gap_bound(1e308)
    with pytest.raises(ValueError, match=r"eq. 67 step sizes are not representable"):
        PrimalDualRolloutGDRO.theorem_step_sizes(100, 3, 11, 8.0, 2.0, 5e-324)
    with pytest.raises(ValueError, match=r"eq. 68 bound overflows float64"):
        PrimalDualRolloutGDRO.theorem_gap_bound(100, 3, 11, 8.0, 1e308, 1e308)
    with pytest.raises(ValueError, match=r"Lagrangian overflows float64 \(price=1e\+308"):
        ctrl.lagrangian(np.full((3, 11), 1 / 11), 1e308, costs, [0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match="p must have rows on the probability simplex"):
        ctrl.expected_allocation(np.full((3, 11), 1e308))


def test_arms_and_sizes_are_bounded():
    """Arms beyond 2**20 (``2**53`` was accepted, then every allocate failed in budget matching)
    and sizes such as ``n_bins=1e300`` are rejected at construction."""
    with pytest.raises(ValueError, match=r"arms must be <= 2\*\*20"):
        RolloutGDRO(3, arms=[2, 4, 2**53], mean_budget=4)
    with pytest.raises(ValueError, match="n_bins must be <= 2147483647"):
        RolloutGDRO(1e300)
    with pytest.raises(ValueError, match="mean_budget must be finite, got the integer"):
        PrimalDualRolloutGDRO(3, range(2, 13), 10**400)
