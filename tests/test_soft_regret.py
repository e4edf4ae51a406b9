"""Tests for solvers.soft_regret (DRRO eq. 4.6-4.8, Prop 4.2, Prop 4.3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp, softmax

from solvers.regret import worst_case_regret
from solvers.soft_regret import SoftRegretGradResult, soft_regret_grad, soft_regret_objective

instances = st.integers(1, 7).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0.01, 1.0), min_size=n, max_size=n),
        st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
        st.floats(0.0, 10.0),
        st.floats(1e-3, 5.0),
    )
).map(lambda t: (np.array(t[0]) / sum(t[0]), np.array(t[1]), t[2], t[3]))


def reference_objective(pi, r, delta, tau):
    """eq. (4.6) with scipy's logsumexp."""
    return float(pi @ r - tau * logsumexp((r - delta * pi) / tau))


@given(instances)
@settings(max_examples=60)
def test_matches_scipy_reference(inst):
    """eq. (4.6) and sigma = softmax((r - delta pi)/tau) against scipy."""
    pi, r, delta, tau = inst
    tol = 1e-10 * (1 + np.abs(r).max() + delta)
    assert soft_regret_objective(pi, r, delta, tau) == pytest.approx(
        reference_objective(pi, r, delta, tau), abs=tol
    )
    res = soft_regret_grad(pi, r, delta, tau)
    assert isinstance(res, SoftRegretGradResult)
    np.testing.assert_allclose(res.sigma, softmax((r - delta * pi) / tau), atol=1e-12)
    np.testing.assert_allclose(res.shaped_rewards, r + delta * res.sigma, atol=1e-12)
    np.testing.assert_array_equal(res.grad, res.shaped_rewards)
    assert res.objective == soft_regret_objective(pi, r, delta, tau)


@given(instances)
@settings(max_examples=80)
def test_prop_4_2_bound(inst):
    """Prop 4.2 (eq. 4.7): 0 <= F_delta - F_{delta,tau} <= tau log n, with F_delta from Prop 3.3."""
    pi, r, delta, tau = inst
    hard = delta - worst_case_regret(pi, r, delta).value  # F_delta of eq. (3.4)
    soft = soft_regret_objective(pi, r, delta, tau)
    tol = 1e-10 * (1 + np.abs(r).max() + delta)
    assert -tol <= hard - soft <= tau * np.log(r.size) + tol


@given(instances)
@settings(max_examples=40)
def test_prop_4_3_gradient_finite_differences(inst):
    """Prop 4.3: dF/dpi_i = r_i + delta sigma_i, checked by central finite differences in R^n."""
    pi, r, delta, tau = inst
    grad = soft_regret_grad(pi, r, delta, tau).grad
    h = 1e-6 * max(tau, 1e-2)

    def f(x):
        return float(x @ r - tau * logsumexp((r - delta * x) / tau))

    fd = np.array([(f(pi + h * e) - f(pi - h * e)) / (2 * h) for e in np.eye(r.size)])
    np.testing.assert_allclose(grad, fd, atol=1e-5 * (1 + np.abs(r).max() + delta), rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_eq_4_8_policy_gradient_chain_rule(seed):
    """eq. (4.8): for pi_theta = softmax(theta), grad_theta F = sum_i pi_i (r_i + delta sigma_i)
    grad_theta log pi_i, against finite differences in theta."""
    rng = np.random.default_rng(seed)
    n = 6
    theta = rng.normal(size=n)
    r = rng.normal(size=n)
    delta, tau = 1.5, 0.3

    def f(th):
        return soft_regret_objective(softmax(th), r, delta, tau)

    pi = softmax(theta)
    res = soft_regret_grad(pi, r, delta, tau)
    jac_log = np.eye(n) - pi[None, :]  # d log pi_i / d theta = e_i - pi
    grad_theta = (pi * res.shaped_rewards) @ jac_log
    h = 1e-6
    fd = np.array([(f(theta + h * e) - f(theta - h * e)) / (2 * h) for e in np.eye(n)])
    np.testing.assert_allclose(grad_theta, fd, atol=1e-7)


def test_small_tau_recovers_hard_adversary():
    """tau -> 0: sigma concentrates on argmax(r - delta pi) (Prop 3.3's attacked response)."""
    pi = np.array([0.6, 0.3, 0.1])
    r = np.array([1.0, 0.9, 0.2])
    hard = worst_case_regret(pi, r, 0.5)
    res = soft_regret_grad(pi, r, 0.5, 1e-4)
    assert int(np.argmax(res.sigma)) == hard.index
    assert res.sigma[hard.index] == pytest.approx(1.0, abs=1e-12)


def test_numerically_stable_extremes():
    pi = np.array([0.5, 0.5])
    r = np.array([1e6, -1e6])
    res = soft_regret_grad(pi, r, 3.0, 1e-8)
    assert np.all(np.isfinite(res.sigma)) and np.isfinite(res.objective)
    np.testing.assert_allclose(res.sigma, [1.0, 0.0])
    assert res.objective == pytest.approx(-1e6 + 1.5, abs=1e-9)  # <pi, r> - max(r - delta pi)
    # equal rewards, n = 1, delta = 0
    eq = soft_regret_grad(np.full(4, 0.25), np.full(4, 2.0), 1.0, 0.5)
    np.testing.assert_allclose(eq.sigma, np.full(4, 0.25))
    assert eq.objective == pytest.approx(2.0 - (2.0 - 0.25) - 0.5 * np.log(4))
    one = soft_regret_grad([1.0], [3.0], 2.0, 0.7)
    assert one.objective == pytest.approx(2.0) and one.sigma.tolist() == [1.0]
    z = soft_regret_grad([0.2, 0.8], [1.0, 0.0], 0.0, 1.0)
    np.testing.assert_allclose(z.shaped_rewards, [1.0, 0.0])


def test_batched_rows():
    rng = np.random.default_rng(1)
    pi = rng.dirichlet(np.ones(5), size=4)
    r = rng.normal(size=(4, 5))
    delta = np.array([0.0, 0.5, 1.0, 4.0])
    obj = soft_regret_objective(pi, r, delta, 0.2)
    res = soft_regret_grad(pi, r, delta, 0.2)
    assert obj.shape == (4,) and res.sigma.shape == (4, 5)
    for b in range(4):
        assert obj[b] == pytest.approx(reference_objective(pi[b], r[b], delta[b], 0.2), abs=1e-12)
        np.testing.assert_allclose(res.grad[b], soft_regret_grad(pi[b], r[b], delta[b], 0.2).grad)


@pytest.mark.parametrize(
    "pi, r, delta, tau, exc, match",
    [
        ([0.5, 0.5], [1.0, 0.0], 1.0, 0.0, ValueError, "tau must be > 0"),
        ([0.5, 0.5], [1.0, 0.0], 1.0, -1.0, ValueError, "tau must be > 0"),
        ([0.5, 0.5], [1.0, 0.0], 1.0, np.nan, ValueError, "tau must be finite"),
        ([0.5, 0.5], [1.0, 0.0], -1.0, 1.0, ValueError, "delta must be >= 0"),
        ([0.7, 0.5], [1.0, 0.0], 1.0, 1.0, ValueError, "pi must lie on the probability simplex"),
        ([0.5, 0.5], [np.nan, 0.0], 1.0, 1.0, ValueError, "r_hat must be finite"),
        ([0.5, np.nan], [1.0, 0.0], 1.0, 1.0, ValueError, "pi must be finite"),
        ([0.5, 0.5], [1.0], 1.0, 1.0, ValueError, "same shape"),
    ],
)
def test_validation(pi, r, delta, tau, exc, match):
    with pytest.raises(exc, match=match):
        soft_regret_objective(pi, r, delta, tau)
    with pytest.raises(exc, match=match):
        soft_regret_grad(pi, r, delta, tau)


def test_tiny_tau_and_huge_inputs_never_return_nan():
    """(r - delta pi)/tau overflowing float64 must not give inf - inf = NaN: the shift by the max is
    taken before dividing by tau, so sigma is the hard adversary (Prop 3.3) and the objective is
    F_delta up to tau log n (Prop 4.2); a genuinely unrepresentable objective raises."""
    pi = np.array([0.5, 0.5])
    res = soft_regret_grad(pi, [1e300, -1e300], 1.0, 1e-10)
    np.testing.assert_allclose(res.sigma, [1.0, 0.0])
    assert res.objective == pytest.approx(-1e300, rel=1e-12)  # <pi,r> - max(r - delta pi) = 0 - 1e300
    res = soft_regret_grad(pi, [1.0, 0.0], 1e300, 1e-10)  # delta pi / tau overflows
    np.testing.assert_allclose(res.sigma, [0.5, 0.5])
    assert np.isfinite(res.objective) and np.all(np.isfinite(res.grad))
    assert res.objective == pytest.approx(0.5 - (1.0 - 0.5e300) - 1e-10 * np.log(2), rel=1e-12)
    with pytest.raises(ValueError, match="overflowed float64"):
        soft_regret_objective([0.0, 1.0], [1.7e308, -1.7e308], 1.0, 1.0)  # true value -3.4e308


def test_gradient_that_overflows_raises_like_the_objective():
    """Extreme inputs: ``soft_regret_grad`` returned ``r_hat + delta sigma = inf`` where
    ``soft_regret_objective`` raises on overflow; both now raise a ValueError naming r_hat/delta
    and never return a non-finite number."""
    with pytest.raises(ValueError, match=r"soft DRRO gradient .* overflowed float64 .*rescale r_hat/delta"):
        soft_regret_grad([0.5, 0.5], [1e308, -1e308], 1e308, 1.0)
    for fn in (soft_regret_objective, soft_regret_grad):  # r_hat - delta pi = -inf everywhere
        with pytest.raises(ValueError, match=r"soft DRRO objective overflowed float64"):
            fn([0.5, 0.5], [-1.5e308, -1.5e308], 1e308, 1.0)
