"""Tests for solvers.regret.worst_case_regret (DRRO Prop 3.3, Prop 4.6)."""

from __future__ import annotations

import itertools

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers.regret import WorstCaseRegretResult, worst_case_regret


def regret(pi, s):
    """Reg(pi, s) = max_beta <beta - pi, s> = max(s) - <pi, s>."""
    return float(np.max(s) - pi @ s)


def adversary_by_vertices(pi, r, delta, p):
    """max over the vertices of the l1 / l_inf ball (regret is convex in Delta, so a vertex is optimal)."""
    n = len(r)
    if p == 1:
        verts = [s * delta * np.eye(n)[j] for j in range(n) for s in (1, -1)]
    else:
        verts = [delta * np.array(sgn) for sgn in itertools.product((1.0, -1.0), repeat=n)]
    return max(regret(pi, r + v) for v in verts)


def adversary_by_cvxpy(pi, r, delta, p):
    """max_i max_{||Delta||_p <= delta} <e_i - pi, r + Delta>: n convex programs (linear over a ball)."""
    n = len(r)
    best = -np.inf
    for i in range(n):
        dlt = cp.Variable(n)
        v = np.eye(n)[i] - pi
        prob = cp.Problem(cp.Maximize(v @ (r + dlt)), [cp.norm(dlt, p) <= delta])
        prob.solve(solver=cp.CLARABEL)
        best = max(best, prob.value)
    return best


policies = st.integers(1, 6).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n).filter(lambda w: sum(w) > 1e-3),
        st.lists(st.floats(-4, 4, allow_nan=False), min_size=n, max_size=n),
    )
).map(lambda t: (np.array(t[0]) / sum(t[0]), np.array(t[1])))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("p", [1, 2, 3, np.inf])
def test_matches_cvxpy_adversary(seed, p):
    """Prop 4.6 (eq. 4.18), and Prop 3.3 for p = 1, against n independent cvxpy programs."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    pi = rng.dirichlet(np.ones(n))
    r = rng.normal(size=n)
    delta = float(rng.choice([0.1, 1.0, 3.0]))
    res = worst_case_regret(pi, r, delta, p=p)
    assert isinstance(res, WorstCaseRegretResult) and res.success
    assert res.value == pytest.approx(adversary_by_cvxpy(pi, r, delta, p), abs=1e-6)
    assert regret(pi, r + res.perturbation) == pytest.approx(res.value, abs=1e-12)
    assert np.linalg.norm(res.perturbation, ord=p) <= delta * (1 + 1e-12)


@given(policies, st.floats(0.0, 5.0))
@settings(max_examples=60)
def test_l1_matches_vertex_enumeration_prop_3_3(pr, delta):
    """Prop 3.3: value = delta + max_i(r_i - delta pi_i) - <pi, r> (eq. 3.2) equals the maximum over
    the 2n vertices of the l1 ball, and the adversary puts its whole budget on one response."""
    pi, r = pr
    res = worst_case_regret(pi, r, delta)
    tol = 1e-10 * (1 + delta + np.abs(r).max())
    assert res.value == pytest.approx(adversary_by_vertices(pi, r, delta, 1), abs=tol)
    assert res.value == pytest.approx(delta + np.max(r - delta * pi) - pi @ r, abs=tol)
    expected = np.zeros_like(r)
    expected[res.index] = delta
    np.testing.assert_array_equal(res.perturbation, expected)
    assert regret(pi, r + res.perturbation) == pytest.approx(res.value, abs=tol)
    assert (r - delta * pi)[res.index] == pytest.approx(np.max(r - delta * pi), abs=tol)


@given(policies, st.floats(0.0, 5.0), st.integers(0, 2**32 - 1))
@settings(max_examples=40)
def test_no_perturbation_in_ball_beats_value(pr, delta, seed):
    """Prop 3.3 / 4.6 upper bound: random Delta on the sphere of each ball never exceed the value."""
    pi, r = pr
    rng = np.random.default_rng(seed)
    for p in (1, 2, np.inf):
        val = worst_case_regret(pi, r, delta, p=p).value
        z = rng.normal(size=(30, r.size))
        z = delta * z / np.linalg.norm(z, ord=p, axis=1, keepdims=True)
        for dz in z:
            assert regret(pi, r + dz) <= val + 1e-10 * (1 + delta + np.abs(r).max())


@given(policies, st.floats(0.0, 5.0))
@settings(max_examples=40)
def test_bonus_factors_prop_4_6(pr, delta):
    """Prop 4.6: b_{1,i} = 1 - pi_i, b_{inf,i} = 2(1 - pi_i), b_{2,i} = ||e_i - pi||_2; the l_inf value
    is 2 delta + max_i(r_i - 2 delta pi_i) - <pi, r>, and matches the 2^n-vertex enumeration."""
    pi, r = pr
    n = r.size
    b1 = worst_case_regret(pi, r, delta, p=1).bonus_factor
    b2 = worst_case_regret(pi, r, delta, p=2).bonus_factor
    binf = worst_case_regret(pi, r, delta, p=np.inf)
    np.testing.assert_allclose(b1, 1 - pi, atol=1e-14)
    np.testing.assert_allclose(binf.bonus_factor, 2 * (1 - pi), atol=1e-14)
    np.testing.assert_allclose(b2, [np.linalg.norm(np.eye(n)[i] - pi) for i in range(n)], atol=1e-14)
    tol = 1e-10 * (1 + delta + np.abs(r).max())
    assert binf.value == pytest.approx(2 * delta + np.max(r - 2 * delta * pi) - pi @ r, abs=tol)
    assert binf.value == pytest.approx(adversary_by_vertices(pi, r, delta, np.inf), abs=tol)


def test_bonus_factor_not_local_for_p2():
    """Prop 4.6 (n >= 3, 1 < p < inf): two policies with the same pi_1 get different b_{p,1}."""
    a = 0.3
    pi = np.array([a, 1 - a, 0.0])
    pi2 = np.array([a, (1 - a) / 2, (1 - a) / 2])
    r = np.zeros(3)
    b = worst_case_regret(pi, r, 1.0, p=2).bonus_factor[0]
    b2 = worst_case_regret(pi2, r, 1.0, p=2).bonus_factor[0]
    assert b == pytest.approx(2**0.5 * (1 - a))
    assert b2 == pytest.approx((1 - a) * (1 + 2 ** (1 - 2)) ** 0.5)


def test_extreme_q_is_stable():
    """p close to 1 (q huge): log-space bonus factors do not underflow or lose the small terms."""
    pi = np.array([0.999999, 1e-6, 0.0])
    res = worst_case_regret(pi, np.array([0.0, 1.0, 0.5]), 1.0, p=1.0001)
    expect = [np.linalg.norm(np.eye(3)[i] - pi, ord=10001.0) for i in range(3)]
    np.testing.assert_allclose(res.bonus_factor[1:], expect[1:], rtol=1e-9)
    assert 0 < res.bonus_factor[0] and np.isfinite(res.value) and res.success


def test_batched_rows_equal_single_rows():
    rng = np.random.default_rng(7)
    pi = rng.dirichlet(np.ones(4), size=5)
    r = rng.normal(size=(5, 4))
    delta = np.array([0.0, 0.1, 1.0, 2.0, 5.0])
    for p in (1, 2.5, np.inf):
        res = worst_case_regret(pi, r, delta, p=p)
        assert res.value.shape == (5,) and res.index.shape == (5,) and res.perturbation.shape == (5, 4)
        for b in range(5):
            one = worst_case_regret(pi[b], r[b], delta[b], p=p)
            assert one.value == res.value[b] and one.index == res.index[b]
            np.testing.assert_array_equal(one.perturbation, res.perturbation[b])


def test_edge_cases():
    one = worst_case_regret([1.0], [3.0], 2.0)
    assert one.value == 0.0 and one.index == 0
    np.testing.assert_array_equal(one.perturbation, [2.0])
    zero = worst_case_regret([0.25, 0.75], [1.0, 0.0], 0.0)
    assert zero.value == pytest.approx(0.75)
    eq = worst_case_regret([0.5, 0.5], [2.0, 2.0], 1.0)
    assert eq.value == pytest.approx(0.5) and eq.index == 0  # ties: smallest index
    for p in (1, 2, np.inf):
        assert worst_case_regret([1.0, 0.0], [5.0, 0.0], 0.1, p=p).value == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    "pi, r, delta, p, exc, match",
    [
        ([0.5, 0.6], [1.0, 0.0], 1.0, 1, ValueError, "pi must lie on the probability simplex"),
        ([1.2, -0.2], [1.0, 0.0], 1.0, 1, ValueError, "pi must lie on the probability simplex"),
        ([[0.5, 0.5], [0.9, 0.2]], [[1.0, 0.0]] * 2, 1.0, 1, ValueError, r"got sum 1.1.* \(row 1\)"),
        ([np.nan, 1.0], [1.0, 0.0], 1.0, 1, ValueError, "pi must be finite"),
        ([0.5, 0.5], [np.nan, 0.0], 1.0, 1, ValueError, "r_hat must be finite"),
        ([0.5, 0.5], [1.0, 0.0, 2.0], 1.0, 1, ValueError, "pi and r_hat must have the same shape"),
        ([0.5, 0.5], [1.0, 0.0], -1.0, 1, ValueError, "delta must be >= 0"),
        ([0.5, 0.5], [1.0, 0.0], np.nan, 1, ValueError, "delta must be finite"),
        ([0.5, 0.5], [1.0, 0.0], 1.0, 0.5, ValueError, "p must be >= 1"),
        ([0.5, 0.5], [1.0, 0.0], 1.0, np.nan, ValueError, "p must be finite"),
        ([0.5, 0.5], [1.0, 0.0], 1.0, "2", TypeError, "p must be a real number"),
    ],
)
def test_validation(pi, r, delta, p, exc, match):
    with pytest.raises(exc, match=match):
        worst_case_regret(pi, r, delta, p=p)


def test_public_names_are_reexported():
    import solvers

    for name in ("worst_case_regret", "waterfill", "dro_policy", "soft_regret_objective", "soft_regret_grad"):
        assert name in solvers.__all__ and callable(getattr(solvers, name))
    assert solvers.worst_case_regret is worst_case_regret
