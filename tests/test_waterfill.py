"""Tests for solvers.waterfill (DRRO Theorem 3.4, eq. 3.5-3.7)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from solvers.regret import worst_case_regret
from solvers.waterfill import WaterfillResult, waterfill, waterfill_numpy


def robust_utility(pi, r, delta):
    """F_delta(pi; r) of DRRO eq. (3.4), evaluated directly."""
    pi = np.asarray(pi, float)
    r = np.asarray(r, float)
    return float(pi @ r - np.max(r - delta * pi))


def lp_37(r, delta):
    """The LP (3.7) solved by cvxpy: max <pi, r> - t s.t. t >= r_i - delta pi_i, pi in simplex."""
    n = len(r)
    pi = cp.Variable(n, nonneg=True)
    t = cp.Variable()
    prob = cp.Problem(cp.Maximize(r @ pi - t), [cp.sum(pi) == 1, t >= r - delta * pi])
    prob.solve(solver=cp.CLARABEL)
    return prob.value, np.asarray(pi.value)


def lp_unique_policy(r, delta, value, tol=1e-7):
    """True when every coordinate of the LP's optimal face is pinned (min == max of pi_i)."""
    n = len(r)
    for i in range(n):
        lo_hi = []
        for sense in (cp.Minimize, cp.Maximize):
            pi = cp.Variable(n, nonneg=True)
            t = cp.Variable()
            cons = [cp.sum(pi) == 1, t >= r - delta * pi, r @ pi - t >= value - 1e-9]
            prob = cp.Problem(sense(pi[i]), cons)
            prob.solve(solver=cp.CLARABEL)
            lo_hi.append(prob.value)
        if lo_hi[1] - lo_hi[0] > tol:
            return False
    return True


def linprog_37(r, delta):
    """Optimal value of LP (3.7) with scipy's HiGHS (variables pi_1..pi_n, t; minimise -<pi,r> + t)."""
    n = len(r)
    c = np.concatenate([-r, [1.0]])
    a_ub = np.hstack([-delta * np.eye(n), -np.ones((n, 1))])  # r_i - delta pi_i - t <= 0
    a_eq = np.concatenate([np.ones(n), [0.0]])[None, :]
    res = linprog(c, A_ub=a_ub, b_ub=-r, A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0, None)] * n + [(None, None)], method="highs")
    assert res.status == 0
    return -res.fun


rewards = st.integers(1, 8).flatmap(
    lambda n: st.one_of(
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.integers(-3, 3).map(lambda k: k / 2), min_size=n, max_size=n),  # ties
    )
).map(np.array)
deltas = st.one_of(st.just(0.0), st.floats(1e-6, 30.0), st.floats(1e-3, 1.0))


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("seed", range(14))
def test_matches_cvxpy_lp_37(seed):
    """LP (3.7): optimal value always; the policy itself whenever the LP optimum is unique.
    Odd seeds put one reward far above the rest (the regime t* > t0 with leftover mass)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    r = rng.normal(size=n) * rng.choice([0.1, 1.0, 5.0])
    if seed % 2:
        r[rng.integers(n)] += rng.uniform(2.0, 10.0)
    if seed % 3 == 0:
        r = np.round(r, 0)  # ties
    delta = float(rng.choice([0.05, 0.5, 2.0, 10.0]) * rng.uniform(0.5, 1.5))
    value, pi_lp = lp_37(r, delta)
    res = waterfill(r, delta, full_output=True)
    assert isinstance(res, WaterfillResult) and res.success
    assert res.objective == pytest.approx(value, abs=1e-6)
    assert robust_utility(res.policy, r, delta) == pytest.approx(value, abs=1e-6)
    if len(set(r.tolist())) == n and lp_unique_policy(r, delta, value):
        np.testing.assert_allclose(res.policy, pi_lp, atol=1e-5)


def test_paper_large_delta_condition_is_not_sufficient():
    """Sanity-check paragraph after Thm 3.4: delta > sum(r_i - r_n) does not give 1/n + (r-mean)/delta.

    r = (10, 0, 0), delta = 15: the LP optimum is e_1 (value 10), not the 1/n formula (value 9.44).
    """
    r = np.array([10.0, 0.0, 0.0])
    value, _ = lp_37(r, 15.0)
    assert value == pytest.approx(10.0, abs=1e-6)
    np.testing.assert_allclose(waterfill(r, 15.0), [1.0, 0.0, 0.0])
    formula = 1 / 3 + (r - r.mean()) / 15.0
    assert robust_utility(formula, r, 15.0) < value - 0.5


@given(rewards, deltas, st.integers(0, 2**32 - 1))
@settings(max_examples=80)
def test_optimality_against_random_policies(r, delta, seed):
    """Thm 3.4 (optimality): F_delta(pi*) equals the optimum of LP (3.7) (scipy HiGHS) and is >=
    F_delta(pi) for any pi in the simplex; equivalently pi* has the smallest worst-case regret
    of Prop 3.3."""
    pi_star = waterfill(r, delta)
    assert robust_utility(pi_star, r, delta) == pytest.approx(linprog_37(r, delta), abs=1e-7 * (1 + delta + np.ptp(r)))
    assert pi_star.shape == r.shape
    assert np.all(pi_star >= 0) and pi_star.sum() == pytest.approx(1.0, abs=1e-12)
    best = robust_utility(pi_star, r, delta)
    rng = np.random.default_rng(seed)
    others = rng.dirichlet(np.full(r.size, 0.5), size=20)
    others = np.vstack([others, np.eye(r.size), np.full(r.size, 1 / r.size)])
    scale = 1e-10 * (1 + delta + np.ptp(r))
    for pi in others:
        assert robust_utility(pi, r, delta) <= best + scale
    wcr_star = worst_case_regret(pi_star, r, delta).value
    assert np.all(worst_case_regret(others, np.tile(r, (len(others), 1)), delta).value >= wcr_star - scale)


@given(rewards, st.floats(0.0, 10.0), st.floats(0.0, 10.0))
def test_support_grows_with_delta(r, d1, d2):
    """Thm 3.4 / Sec. 3.3: the threshold t* falls and the support only grows as delta grows."""
    lo, hi = sorted((d1, d2))
    a = waterfill(r, lo, full_output=True)
    b = waterfill(r, hi, full_output=True)
    assert b.threshold <= a.threshold + 1e-12
    assert np.all((a.policy > 0) <= (b.policy > 0))


@given(rewards)
def test_small_delta_limit_is_proxy_greedy(r):
    """Sec. 3.3 sanity check: delta -> 0 gives proxy-greedy (uniform on the argmax set: our tie rule)."""
    top = r == r.max()
    greedy = top / top.sum()
    np.testing.assert_allclose(waterfill(r, 0.0), greedy, atol=0)
    gap = np.min(r.max() - r[~top]) if (~top).any() else 1.0
    np.testing.assert_allclose(waterfill(r, 1e-3 * gap), greedy, atol=1e-9)


@given(rewards, st.floats(1.0, 10.0))
def test_large_delta_limit(r, factor):
    """Sec. 3.3 sanity check: pi_i = 1/n + (r_i - mean)/delta once
    delta >= n max(max r - mean, mean - min r) (the corrected condition; see module docstring)."""
    n = r.size
    need = n * max(r.max() - r.mean(), r.mean() - r.min())
    delta = factor * need + 1e-9
    np.testing.assert_allclose(waterfill(r, delta), 1 / n + (r - r.mean()) / delta, atol=1e-10)
    assert np.all(np.abs(waterfill(r, 1e8) - 1 / n) < 1e-6 * (1 + np.ptp(r)))


@given(rewards, deltas, st.integers(0, 1000))
def test_permutation_equivariant_with_ties(r, delta, seed):
    """Tie rule: leftover split equally over tied tops, so permuting rewards permutes the policy."""
    perm = np.random.default_rng(seed).permutation(r.size)
    np.testing.assert_allclose(waterfill(r[perm], delta), waterfill(r, delta)[perm], atol=1e-12)


@given(st.integers(0, 10_000), st.integers(1, 40), st.booleans())
@settings(max_examples=30)
def test_kernel_equals_numpy_twin(seed, n, ties):
    """Numba batched kernel == pure-NumPy per-row twin (same math, same tie rule)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(17, n))
    if ties:
        r = np.round(r * 2) / 2
    delta = rng.exponential(size=17) * rng.choice([0.01, 1.0, 20.0], size=17)
    delta[0] = 0.0
    batch = waterfill(r, delta)
    twin = np.array([waterfill_numpy(r[i], delta[i]) for i in range(17)])
    np.testing.assert_allclose(batch, twin, atol=1e-12)


def test_full_output_consistent_with_worst_case_regret():
    rng = np.random.default_rng(3)
    r = rng.normal(size=(6, 5))
    res = waterfill(r, 0.7, full_output=True)
    wcr = worst_case_regret(res.policy, r, 0.7)
    np.testing.assert_allclose(res.worst_case_regret, wcr.value, atol=1e-12)
    assert np.all(res.baseline_threshold <= res.threshold + 1e-12)
    # eq. (3.5): sum (r - t0)_+ = delta
    np.testing.assert_allclose(np.maximum(r - res.baseline_threshold[:, None], 0).sum(1), 0.7)
    assert res.status == 0 and res.message


def test_edge_cases():
    np.testing.assert_array_equal(waterfill([2.5], 3.0), [1.0])
    np.testing.assert_array_equal(waterfill([2.5], 0.0), [1.0])
    np.testing.assert_allclose(waterfill([1.0, 1.0, 1.0, 1.0], 0.3), np.full(4, 0.25))
    np.testing.assert_allclose(waterfill([1.0, 1.0, 0.0], 0.0), [0.5, 0.5, 0.0])
    assert waterfill(np.zeros((0, 4)), 1.0).shape == (0, 4)
    # precision with tiny delta and large rewards: the gaps are formed once
    np.testing.assert_allclose(waterfill([1e6 + 1e-9, 1e6], 1e-9), [1.0, 0.0], atol=1e-6)
    # per-row delta
    out = waterfill([[1.0, 0.0], [1.0, 0.0]], [0.0, 4.0])
    np.testing.assert_allclose(out, [[1.0, 0.0], [0.5 + 0.5 / 4, 0.5 - 0.5 / 4]])


@pytest.mark.parametrize(
    "r, delta, exc, match",
    [
        ([1.0, np.nan], 1.0, ValueError, "r_hat must be finite"),
        ([1.0, np.inf], 1.0, ValueError, "r_hat must be finite"),
        ([1.0, 0.0], np.nan, ValueError, "delta must be finite"),
        ([1.0, 0.0], -0.1, ValueError, "delta must be >= 0"),
        ([[1.0, 0.0]], [1.0, 2.0], ValueError, "delta must be a scalar or have length 1"),
        ([[1.0, 0.0]], [-1.0], ValueError, "delta must be non-negative"),
        ([], 1.0, ValueError, "r_hat must have at least one response"),
        (np.zeros((2, 2, 2)), 1.0, ValueError, "r_hat must be 1-D or 2-D"),
        ("abc", 1.0, TypeError, "r_hat must be an array"),
        ([1.0, 0.0], "x", TypeError, "delta must be a real number"),
    ],
)
def test_validation(r, delta, exc, match):
    with pytest.raises(exc, match=match):
        waterfill(r, delta)


@given(rewards, st.floats(0.05, 0.95))
@settings(max_examples=60)
def test_large_delta_condition_is_necessary(r, frac):
    """Module docstring: the 1/n formula is the returned policy *only* if
    delta >= n max(max r - mean, mean - min r). Below the bound it is either infeasible
    (delta < n (mean - min r): pi_n < 0) or strictly worse than the LP optimum (3.7)
    (n (mean - min r) <= delta < n (max r - mean): slope (3.11) positive at t0)."""
    n = r.size
    a_need = n * (r.mean() - r.min())  # condition (a), the paper's
    b_need = n * (r.max() - r.mean())  # condition (b), the missing one
    need = max(a_need, b_need)
    if need <= 1e-6 or n < 2:
        return
    delta = frac * need
    if abs(delta - a_need) <= 1e-9 * need:
        # boundary of condition (a): the formula has a zero entry and can coincide with the
        # optimum (e.g. r = (0, 0, 1), delta = 1 gives e_3 both ways), so "only if" is not strict
        return
    formula = 1 / n + (r - r.mean()) / delta
    pi = waterfill(r, delta)
    assert np.max(np.abs(pi - formula)) > 1e-9
    if delta >= a_need and b_need - delta > 1e-6 * need:
        # the formula is a feasible policy here (the paper's regime), yet not optimal
        assert np.all(formula >= -1e-12)
        assert robust_utility(formula, r, delta) < linprog_37(r, delta) - 1e-9 * (1 + delta)


@pytest.mark.parametrize("one_d", [True, False])
def test_rows_whose_spread_overflows_or_is_subnormal(one_d):
    """Extreme inputs: for ``[1e308, -1e308]`` (max - min overflows) waterfill returned the right policy
    but objective and regret NaN and duality gap inf beside ``success=True`` (the certificate's
    tolerance ``1e-9 (delta + range)`` was inf). The row is now rescaled by a power of two
    (the policy is invariant, eq. 3.4 is positively homogeneous) and everything is finite."""
    rows = [([1e308, -1e308], 1.0, [1.0, 0.0], 1.0), ([5e-324, 0.0, 5e-324], 5e-324, [0.5, 0.0, 0.5], 0.0)]
    for r, delta, policy, objective in rows:
        res = waterfill(r if one_d else [r], delta if one_d else [delta], full_output=True)
        assert res.success, res.message
        np.testing.assert_array_equal(np.ravel(res.policy), policy)
        np.testing.assert_array_equal(np.ravel(res.objective), [objective])
        assert np.all(np.isfinite(res.worst_case_regret)) and np.all(np.isfinite(res.duality_gap))
        np.testing.assert_array_equal(waterfill_numpy(np.array(r), delta), policy)
    # a regret delta - F beyond DBL_MAX is not representable: reported, never success
    res = waterfill([1e308, -1e308, -1e308], np.finfo(float).max, full_output=True)
    assert np.all(np.isfinite(res.policy))
    assert res.success == bool(np.isfinite(res.worst_case_regret) and np.isfinite(res.objective))


def test_large_reward_with_subnormal_budget_returns_a_distribution():
    """Bad-input finding: ``r_hat = 3.34e16`` (one response) with ``delta = 2.2e-313`` returned the
    all-zero policy (``success=False``, duality gap inf). The row scaling multiplied the rewards by
    ``2**1000`` to lift the subnormal budget, and ``3.34e16 * 2**1000`` overflowed. The row is now
    shifted by its top reward before scaling up (Thm 3.4's policy and ``F_delta`` are shift
    invariant), so the row is solved and certified."""
    r = np.array([[3.3421803631198696e16]] * 3)
    delta = np.array([0.0, 0.0, 2.2250738585e-313])
    res = waterfill(r, delta, full_output=True)
    np.testing.assert_array_equal(res.policy, np.ones((3, 1)))
    assert res.success, res.message
    assert np.all(res.threshold == r[:, 0]) and np.all(np.isfinite(res.duality_gap))
    np.testing.assert_array_equal(waterfill_numpy(r[2], delta[2]), [1.0])
    # more responses: tied tops split the leftover, the threshold stays at the top reward
    res = waterfill([1e300, 1e300, 1e300 * (1 - 2**-50)], 1e-320, full_output=True)
    assert res.success, res.message
    np.testing.assert_array_equal(res.policy, [0.5, 0.5, 0.0])
    assert res.threshold == 1e300


def test_unrepairable_rows_fall_back_to_a_distribution():
    """The last line of defence (``_feasible_rows``): a policy row that is not a distribution
    (zero, negative or non-finite entries) is replaced by the proxy-greedy policy and its
    certificate is failed; distributions are left untouched."""
    from solvers.waterfill import _feasible_rows

    r = np.array([[1.0, 3.0, 3.0], [0.0, 1.0, 2.0], [5.0, 4.0, 3.0], [1.0, 2.0, 3.0]])
    policy = np.array([[0.0, 0.0, 0.0], [np.nan, 0.5, 0.5], [1.5, -0.5, 0.0], [0.2, 0.3, 0.5]])
    certified = np.ones(4, dtype=bool)
    _feasible_rows(policy, r, certified)
    np.testing.assert_array_equal(policy, [[0.0, 0.5, 0.5], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    np.testing.assert_array_equal(certified, [False, False, False, True])


_extreme_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e-300, 1e-300),
    st.sampled_from([0.0, 5e-324, -5e-324, 2.2250738585e-313, 1e-160, 3.3421803631198696e16, 1e154,
                     1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308]),
)


@given(st.lists(st.lists(_extreme_floats, min_size=1, max_size=5), min_size=1, max_size=4).filter(
    lambda rows: len({len(x) for x in rows}) == 1),
    st.lists(st.one_of(st.floats(0.0, 1.7976931348623157e308), st.sampled_from([0.0, 5e-324, 2.2250738585e-313])),
             min_size=4, max_size=4))
@settings(max_examples=150)
def test_every_returned_row_is_a_distribution_at_extreme_scales(rows, deltas):
    """Contract of ``waterfill`` and ``dro_policy`` (DRRO Thm 3.4 / Lemma H.1 solvers): every
    returned policy row is a probability vector (finite, >= 0, sums to 1), certified or not, for
    rewards and budgets anywhere in the double range (subnormal to +-DBL_MAX); and ``success`` is
    never claimed beside a non-finite reported number."""
    from solvers.dro_policy import dro_policy

    r = np.array(rows, dtype=np.float64)
    delta = np.array(deltas[: r.shape[0]])
    for solve in (waterfill, dro_policy):
        res = solve(r, delta, full_output=True)
        p = res.policy
        assert np.all(np.isfinite(p)) and np.all(p >= 0.0), (solve.__name__, p)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=r.shape[1] * 2.0**-40)
        if res.success:
            assert np.all(np.isfinite(res.objective)) and np.all(np.isfinite(res.duality_gap))


def test_subnormal_budget_beside_large_rewards_is_certified():
    """A subnormal ``delta`` beside rewards ~1e16 (no row scaling can bring both into range):
    the greedy policy on the tied tops is optimal, and the LP-duality certificate used to fail
    (gap 3.3e16) because the dual point's ``w = (delta - D_k0)/k0`` rounded to 0 before its
    division by ``delta``. ``w / delta`` is now formed directly."""
    r = [-8.922210261956237e16, -2.023662768271035e-170, 3.34e16, 3.34e16, -5.395768109310919e-75]
    res = waterfill(r, 5e-324, full_output=True)
    assert res.success, res.message
    np.testing.assert_array_equal(res.policy, [0.0, 0.0, 0.5, 0.5, 0.0])
