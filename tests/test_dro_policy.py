"""Tests for solvers.dro_policy (DRRO Lemma H.1) and the DRRO-versus-DRO comparison (Thm 6.1)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from solvers.dro_policy import DroPolicyResult, dro_policy, dro_policy_numpy
from solvers.waterfill import waterfill


def dro_value(pi, r, delta):
    pi = np.asarray(pi, float)
    return float(pi @ np.asarray(r, float) - delta * pi.max())


def cvxpy_dro(r, delta):
    """max <pi, r> - delta ||pi||_inf over the simplex (DRRO Sec. 6.1) with cvxpy."""
    pi = cp.Variable(len(r), nonneg=True)
    prob = cp.Problem(cp.Maximize(r @ pi - delta * cp.norm(pi, "inf")), [cp.sum(pi) == 1])
    prob.solve(solver=cp.CLARABEL)
    return prob.value, np.asarray(pi.value)


def linprog_dro(r, delta):
    """DRO value as the LP max <pi, r> - delta s, pi_i <= s, pi in simplex (scipy HiGHS)."""
    n = len(r)
    c = np.concatenate([-r, [delta]])
    a_ub = np.hstack([np.eye(n), -np.ones((n, 1))])
    a_eq = np.concatenate([np.ones(n), [0.0]])[None, :]
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0],
                  bounds=[(0, None)] * (n + 1), method="highs")
    assert res.status == 0
    return -res.fun


rewards = st.integers(1, 8).flatmap(
    lambda n: st.one_of(
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.integers(-3, 3).map(lambda k: k / 2), min_size=n, max_size=n),
    )
).map(np.array)
deltas = st.one_of(st.just(0.0), st.floats(1e-6, 30.0))


@pytest.mark.parametrize("seed", range(10))
def test_matches_cvxpy(seed):
    """The DRO problem max <pi, r> - delta ||pi||_inf: value always, policy when the optimum is unique
    (checked by enumeration: a unique maximiser of A_k - delta/k)."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 9))
    r = rng.normal(size=n) * rng.choice([0.3, 1.0, 4.0])
    delta = float(rng.choice([0.05, 0.5, 2.0, 10.0]))
    value, pi_cvx = cvxpy_dro(r, delta)
    res = dro_policy(r, delta, full_output=True)
    assert isinstance(res, DroPolicyResult) and res.success
    assert res.objective == pytest.approx(value, abs=1e-6)
    assert dro_value(res.policy, r, delta) == pytest.approx(value, abs=1e-6)
    rs = np.sort(r)[::-1]
    v = np.cumsum(rs) / np.arange(1, n + 1) - delta / np.arange(1, n + 1)
    if np.sum(v >= v.max() - 1e-6) == 1:
        np.testing.assert_allclose(res.policy, pi_cvx, atol=1e-5)


@given(rewards, deltas, st.integers(0, 2**32 - 1))
@settings(max_examples=60)
def test_lemma_h1_value_and_optimality(r, delta, seed):
    """Lemma H.1: the value is max_k A_k - delta/k, equals the LP optimum (scipy HiGHS), and no
    policy in the simplex does better."""
    pi = dro_policy(r, delta)
    assert dro_value(pi, r, delta) == pytest.approx(linprog_dro(r, delta), abs=1e-7 * (1 + delta + np.ptp(r)))
    n = r.size
    rs = np.sort(r)[::-1]
    k = np.arange(1, n + 1)
    best = np.max(np.cumsum(rs) / k - delta / k)
    tol = 1e-10 * (1 + delta + np.abs(r).max())
    assert dro_value(pi, r, delta) == pytest.approx(best, abs=tol)
    others = np.random.default_rng(seed).dirichlet(np.full(n, 0.5), size=20)
    for q in others:
        assert dro_value(q, r, delta) <= best + tol
    # uniform on its support
    supp = pi > 0
    np.testing.assert_allclose(pi[supp], 1 / supp.sum())


@given(rewards, deltas)
def test_ties_never_split_and_dual_is_t0(r, delta):
    """Choice (largest maximiser m): equal rewards get equal mass; the value equals t0 of eq. (3.5)."""
    pi = dro_policy(r, delta)
    for val in np.unique(r):
        grp = pi[r == val]
        assert np.ptp(grp) == 0.0
    res = dro_policy(r, delta, full_output=True)
    wf = waterfill(r, delta, full_output=True)
    assert res.dual_value == pytest.approx(wf.baseline_threshold, abs=1e-12 * (1 + np.abs(r).max() + delta))
    assert res.objective == pytest.approx(res.dual_value, abs=1e-9 * (1 + delta + np.ptp(r)))


transforms = st.sampled_from(
    [
        ("identity", lambda x: x),
        ("exp", np.exp),
        ("cube", lambda x: x**3),
        ("logistic", lambda x: 1 / (1 + np.exp(-3 * x))),
        ("step-ish", lambda x: np.tanh(20 * x)),
        ("affine", lambda x: 7 * x - 2),
    ]
)


@given(
    st.lists(st.floats(-3, 3, allow_nan=False), min_size=2, max_size=8, unique=True).map(np.array),
    st.floats(1e-3, 20.0),
    transforms,
)
@settings(max_examples=80)
def test_theorem_6_1_drro_dominates_dro(r, delta, named_phi):
    """Thm 6.1: for strictly ordered proxy rewards and any increasing phi, the DRRO policy's true value
    sum_i pi_i phi(r_i) is >= the DRO policy's; the proof shows DRRO majorises DRO (eq. H.3), i.e.
    prefix sums over responses sorted by r_hat are larger for DRRO."""
    _, phi = named_phi
    order = np.argsort(-r)
    r = r[order]
    if np.min(-np.diff(r)) < 1e-9:
        return  # numerically tied: outside the theorem's strict-order assumption
    drro = waterfill(r, delta)
    dro = dro_policy(r, delta)
    t = phi(r)
    assert drro @ t >= dro @ t - 1e-9 * (1 + np.abs(t).max())
    prefix = np.cumsum(drro) - np.cumsum(dro)
    assert np.all(prefix[:-1] >= -1e-12)
    # strict part of Thm 6.1: phi strictly increasing and the optimisers differ => strict inequality
    if prefix[:-1].size and prefix[:-1].max() * np.min(-np.diff(t)) > 1e-10:
        assert drro @ t > dro @ t
    # support of DRO is at least that of DRRO (m >= k in the proof)
    assert (dro > 0).sum() >= (drro > 1e-15).sum()


@given(st.integers(0, 10_000), st.integers(1, 40), st.booleans())
@settings(max_examples=30)
def test_kernel_equals_numpy_twin(seed, n, ties):
    """Numba batched kernel == pure-NumPy per-row twin."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(13, n))
    if ties:
        r = np.round(r * 2) / 2
    delta = rng.exponential(size=13) * rng.choice([0.01, 1.0, 20.0], size=13)
    delta[0] = 0.0
    twin = np.array([dro_policy_numpy(r[i], delta[i]) for i in range(13)])
    np.testing.assert_array_equal(dro_policy(r, delta), twin)


def test_edge_cases():
    np.testing.assert_array_equal(dro_policy([4.0], 2.0), [1.0])
    np.testing.assert_allclose(dro_policy([1.0, 1.0, 1.0], 0.5), np.full(3, 1 / 3))
    np.testing.assert_allclose(dro_policy([1.0, 1.0, 1.0], 0.0), np.full(3, 1 / 3))
    np.testing.assert_allclose(dro_policy([2.0, 2.0, 0.0], 0.0), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(dro_policy([3.0, 0.0, 2.0], 0.0), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(dro_policy([3.0, 0.0, 2.0], 1e9), np.full(3, 1 / 3))
    res = dro_policy(np.array([[1.0, 0.0], [0.0, 1.0]]), [0.1, 5.0], full_output=True)
    np.testing.assert_array_equal(res.support_size, [1, 2])
    assert dro_policy(np.zeros((0, 3)), 1.0).shape == (0, 3)


@pytest.mark.parametrize(
    "r, delta, match",
    [
        ([np.nan, 1.0], 1.0, "r_hat must be finite"),
        ([0.0, 1.0], np.nan, "delta must be finite"),
        ([0.0, 1.0], -1.0, "delta must be >= 0"),
        ([], 1.0, "at least one response"),
    ],
)
def test_validation(r, delta, match):
    with pytest.raises(ValueError, match=match):
        dro_policy(r, delta)


def test_rows_whose_spread_overflows_are_solved_exactly():
    """Extreme inputs: ``dro_policy([1e308, -1e308], 1.0)`` returned ``[0.5, 0.5]`` as "optimal
    (certified)": the optimum is ``[1, 0]`` (A_1 - delta = 1e308 - 1 > A_2 - delta/2 = -0.5); the
    certificate tolerance had become inf once max - min overflowed. Rows are now rescaled by a
    power of two (Lemma H.1's maximiser is invariant) and certified in the scaled units."""
    res = dro_policy([1e308, -1e308], 1.0, full_output=True)
    assert res.success, res.message
    np.testing.assert_array_equal(res.policy, [1.0, 0.0])
    assert res.objective == pytest.approx(1e308) and res.duality_gap == 0.0
    np.testing.assert_array_equal(dro_policy_numpy(np.array([1e308, -1e308]), 1.0), [1.0, 0.0])
    res = dro_policy([5e-324, 0.0, 5e-324], 5e-324, full_output=True)
    assert res.success and res.support_size == 2
