"""Tests for solvers.variance (VIP Prop 4.2, 4.3, E.1, E.2; GDRO eq. 19, 23)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from solvers import (
    GRADIENT_ESTIMATORS,
    grad_variance,
    grad_variance_continuous,
    variance_proxy,
    weighted_standard_error,
)

# ------------------------------------------------------------------------------------------
# Monte Carlo checks of the propositions
# ------------------------------------------------------------------------------------------

N_REPLICATES = 200_000
BAND = 5.0  # standard errors of the variance estimate


def projected_gradient(R, Z, estimator, rloo_baseline_scale=None):
    """G = (1/n) sum_j A_j Z_j with the paper's advantages (VIP Sec. 2 and App. A.1).

    Dr. GRPO: A_j = R_j - (1/n) sum_k R_k.
    RLOO:     A_j = R_j - (1/(n-1)) sum_{k != j} R_k  (``rloo_baseline_scale`` overrides 1/(n-1)).
    """
    n = R.shape[1]
    if estimator == "drgrpo":
        A = R - R.mean(axis=1, keepdims=True)
    else:
        scale = 1.0 / (n - 1) if rloo_baseline_scale is None else rloo_baseline_scale
        A = R - scale * (R.sum(axis=1, keepdims=True) - R)
    return (A * Z).mean(axis=1)


def variance_and_se(G):
    """Sample variance of G and its standard error sqrt((m4 - s^4) / N)."""
    centred = G - G.mean()
    s2 = float(np.mean(centred**2)) * G.size / (G.size - 1)
    m4 = float(np.mean(centred**4))
    return s2, np.sqrt(max(m4 - s2**2, 0.0) / G.size)


def sample_Z(rng, shape):
    """Projected gradient norms: Gamma(2, 0.5) -> mean 1, variance sigma_Z^2 = 0.5 (non-zero mean
    on purpose: the propositions hold for any mean of Z)."""
    return rng.gamma(2.0, 0.5, size=shape)


SIGMA2_Z = 0.5


@pytest.mark.parametrize("estimator", ["drgrpo", "rloo"])
@pytest.mark.parametrize("p, n", [(0.5, 2), (0.3, 4), (0.85, 8), (0.1, 3)])
def test_monte_carlo_binary_rewards(estimator, p, n):
    """VIP Prop 4.2 (Dr. GRPO) and Prop 4.3 (RLOO): with R in {-1, +1}, P(R = 1) = p and Z
    i.i.d. independent of R (Assumption 4.1), Var(G) = 4 sigma_Z^2 p (1-p) (n-1)/n^2, resp.
    4 sigma_Z^2 p (1-p) / (n-1). Band: 5 standard errors of the sample variance (seeded)."""
    rng = np.random.default_rng(1000 + int(100 * p) + n)
    R = np.where(rng.random((N_REPLICATES, n)) < p, 1.0, -1.0)
    Z = sample_Z(rng, (N_REPLICATES, n))
    s2, se = variance_and_se(projected_gradient(R, Z, estimator))
    formula = grad_variance(p, n, estimator=estimator, sigma2=SIGMA2_Z)
    assert abs(s2 - formula) <= BAND * se, (s2, formula, se)


def test_monte_carlo_band_rejects_the_other_rloo_baseline():
    """The band is discriminative: VIP's Sec. 4 display writes the RLOO baseline with 1/n
    instead of 1/(n-1) (Sec. 2, App. A.1); that estimator does NOT match Prop 4.3, which is why
    the 1/(n-1) definition is the one the formula (and this module) refers to."""
    rng = np.random.default_rng(99)
    p, n = 0.4, 2
    R = np.where(rng.random((N_REPLICATES, n)) < p, 1.0, -1.0)
    Z = sample_Z(rng, (N_REPLICATES, n))
    s2, se = variance_and_se(projected_gradient(R, Z, "rloo", rloo_baseline_scale=1.0 / n))
    assert abs(s2 - grad_variance(p, n, estimator="rloo", sigma2=SIGMA2_Z)) > 15 * se


@pytest.mark.parametrize("estimator", ["drgrpo", "rloo"])
@pytest.mark.parametrize("n", [2, 5])
def test_monte_carlo_continuous_rewards(estimator, n):
    """VIP Prop E.1 / E.2: real-valued R with variance Var(R): Var(G) = sigma_Z^2 Var(R)(n-1)/n^2
    (Dr. GRPO), sigma_Z^2 Var(R)/(n-1) (RLOO). R ~ Gamma(3, 0.5) - 7 has Var(R) = 0.75."""
    rng = np.random.default_rng(2000 + n)
    R = rng.gamma(3.0, 0.5, size=(N_REPLICATES, n)) - 7.0
    Z = sample_Z(rng, (N_REPLICATES, n))
    s2, se = variance_and_se(projected_gradient(R, Z, estimator))
    formula = grad_variance_continuous(0.75, n, estimator=estimator, sigma2=SIGMA2_Z)
    assert abs(s2 - formula) <= BAND * se, (s2, formula, se)


# ------------------------------------------------------------------------------------------
# formulas, broadcasting, edge cases
# ------------------------------------------------------------------------------------------


def test_formula_values():
    assert grad_variance(0.5, 4, estimator="drgrpo") == pytest.approx(4 * 0.25 * 3 / 16)
    assert grad_variance(0.5, 4, estimator="rloo") == pytest.approx(4 * 0.25 / 3)
    assert grad_variance(0.2, 5, estimator="rloo", sigma2=2.0) == pytest.approx(2 * 4 * 0.16 / 4)
    assert grad_variance(0.3, 1, estimator="drgrpo") == 0.0  # a group of one carries no signal
    assert grad_variance(0.0, 6, estimator="rloo") == 0.0
    assert grad_variance(1.0, 6, estimator="drgrpo") == 0.0
    assert isinstance(grad_variance(0.3, 3, estimator="rloo"), float)


def test_broadcasting_and_relation_between_estimators():
    p = np.linspace(0, 1, 11)[:, None]
    n = np.array([2.0, 3.0, 8.0, 16.0])
    dr = grad_variance(p, n, estimator="drgrpo", sigma2=0.7)
    rl = grad_variance(p, n, estimator="rloo", sigma2=0.7)
    assert dr.shape == rl.shape == (11, 4)
    # RLOO advantages are n/(n-1) times Dr. GRPO's, so the variance ratio is (n/(n-1))^2
    np.testing.assert_allclose(rl, dr * (n / (n - 1)) ** 2, rtol=1e-12)


@given(
    p=st.floats(0.0, 1.0),
    n=st.floats(2.0, 64.0),
    sigma2=st.floats(0.0, 10.0),
    estimator=st.sampled_from(sorted(GRADIENT_ESTIMATORS)),
)
def test_binary_is_the_continuous_formula_with_var_r_4p1mp(p, n, sigma2, estimator):
    """VIP Prop 4.2/4.3 are Prop E.1/E.2 with Var(R) = 4 p (1 - p) for R in {-1, +1}."""
    a = grad_variance(p, n, estimator=estimator, sigma2=sigma2)
    b = grad_variance_continuous(4 * p * (1 - p), n, estimator=estimator, sigma2=sigma2)
    assert a == pytest.approx(b, rel=1e-12, abs=1e-300)
    assert a >= 0.0


@given(p=st.floats(0.01, 0.99), n=st.integers(2, 63))
def test_rloo_variance_decreases_with_n(p, n):
    """VIP Prop 4.3: a/(n-1) is strictly decreasing; Dr. GRPO's (n-1)/n^2 decreases for n >= 2."""
    assert grad_variance(p, n + 1, estimator="rloo") < grad_variance(p, n, estimator="rloo")
    assert grad_variance(p, n + 1, estimator="drgrpo") < grad_variance(p, n, estimator="drgrpo")


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: grad_variance(1.2, 4, estimator="rloo"), ValueError, r"p must lie in \[0, 1\], got 1.2"),
        (lambda: grad_variance(-0.1, 4, estimator="rloo"), ValueError, r"p must lie in \[0, 1\]"),
        (lambda: grad_variance(np.nan, 4, estimator="rloo"), ValueError, "p must be finite"),
        (lambda: grad_variance(0.5, 1, estimator="rloo"), ValueError, r"n must be >= 2 for estimator 'rloo', got 1.0"),
        (lambda: grad_variance(0.5, 0.5, estimator="drgrpo"), ValueError, r"n must be >= 1 for estimator 'drgrpo'"),
        (lambda: grad_variance(0.5, 4, estimator="grpo"), ValueError, r"unknown estimator 'grpo'; valid estimators: \['drgrpo', 'rloo'\]"),
        (lambda: grad_variance(0.5, 4, estimator=None), TypeError, "estimator must be a str"),
        (lambda: grad_variance(0.5, 4, estimator="rloo", sigma2=-1.0), ValueError, "sigma2 must be non-negative"),
        (lambda: grad_variance([0.1, 0.2, 0.3], [2, 3], estimator="rloo"), ValueError, "p, n and sigma2 must broadcast together"),
        (lambda: grad_variance_continuous(-1.0, 4, estimator="rloo"), ValueError, "reward_var must be non-negative"),
        (lambda: grad_variance_continuous(1.0, np.inf, estimator="rloo"), ValueError, "n must be finite"),
    ],
)
def test_invalid_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------------------------------
# GDRO bin-level proxies
# ------------------------------------------------------------------------------------------


def test_variance_proxy_and_wse_values():
    v = np.array([1.0, 4.0, 9.0, 0.0])
    q = np.array([0.5, 0.25, 0.0, 0.25])
    n = np.array([2.0, 8.0, 0.0, 0.0])  # zero-share and zero-variance bins may have n = 0
    assert variance_proxy(v, q, n) == pytest.approx(0.5 * 1 / 2 + 0.25 * 4 / 8)
    assert weighted_standard_error(np.sqrt(v), q, n) == pytest.approx(0.5 / np.sqrt(2) + 0.25 * 2 / np.sqrt(8))
    assert variance_proxy(v, q, [2.0, np.inf, 1.0, 1.0]) == pytest.approx(0.25)


def test_proxies_batched_over_steps():
    rng = np.random.default_rng(0)
    v = rng.uniform(0, 2, (5, 7))
    q = rng.dirichlet(np.ones(7), size=5)
    n = rng.uniform(1, 10, (5, 7))
    out = variance_proxy(v, q, n)
    wse = weighted_standard_error(np.sqrt(v), q, n)
    assert out.shape == wse.shape == (5,)
    for t in range(5):
        assert out[t] == pytest.approx(sum(q[t, b] * v[t, b] / n[t, b] for b in range(7)))
        assert wse[t] == pytest.approx(sum(q[t, b] * np.sqrt(v[t, b] / n[t, b]) for b in range(7)))


@given(
    st.lists(st.tuples(st.floats(0.0, 10.0), st.floats(0.0, 1.0), st.floats(0.5, 20.0)), min_size=1, max_size=10)
)
def test_wse_squared_is_bounded_by_the_variance_proxy(rows):
    """GDRO Remark F.16 (Cauchy-Schwarz): (sum_b q_b sqrt(v_b/n_b))^2 <= (sum_b q_b) VarProxy."""
    v, q, n = (np.array(c) for c in zip(*rows))
    wse = weighted_standard_error(np.sqrt(v), q, n)
    vp = variance_proxy(v, q, n)
    assert wse**2 <= q.sum() * vp * (1 + 1e-12) + 1e-300


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: variance_proxy([1.0, 2.0], [0.5, 0.5], [1.0, 0.0]), "n must be positive on bins with positive share and positive v, got n=0 at index 1"),
        (lambda: variance_proxy([1.0, 2.0], [0.5, 0.5, 0.0], [1.0, 2.0]), "v, shares and n must have the same shape"),
        (lambda: variance_proxy([1.0, -2.0], [0.5, 0.5], [1.0, 2.0]), "v must be non-negative"),
        (lambda: variance_proxy([1.0, 2.0], [0.5, 0.5], [1.0, np.nan]), "n must not contain NaN"),
        (lambda: weighted_standard_error([1.0, 2.0], [-0.5, 0.5], [1.0, 2.0]), "shares must be non-negative"),
        (lambda: weighted_standard_error([[[1.0]]], [1.0], [1.0]), "sigma must be 1-D or 2-D"),
    ],
)
def test_proxy_invalid_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_overflow_is_a_value_error_and_representable_results_are_exact():
    """Extreme inputs: ``grad_variance_continuous(1e308, 2, ...)`` returned inf (``sigma2 * reward_var``
    overflowed before the division by n), and ``variance_proxy([1], [1], [5e-324])`` /
    ``weighted_standard_error([1e308], [1], [1e-300])`` returned inf silently. Representable
    results are now computed (n-factor first), the others raise a ValueError naming the inputs."""
    assert grad_variance_continuous(1e308, 2, estimator="drgrpo", sigma2=4.0) == 1e308
    assert grad_variance(0.5, 4, estimator="drgrpo", sigma2=1e308) == pytest.approx(1.875e307)
    assert grad_variance_continuous(1.0, 1e300, estimator="drgrpo") == pytest.approx(1e-300)
    with pytest.raises(ValueError, match=r"gradient variance overflows float64: reward_var=1e\+308, n=2.0, sigma2=4e\+300"):
        grad_variance_continuous(1e308, 2, estimator="rloo", sigma2=4e300)
    with pytest.raises(ValueError, match=r"proxy overflows float64 \(v, shares, n"):
        variance_proxy([1.0], [1.0], [5e-324])
    with pytest.raises(ValueError, match=r"proxy overflows float64 \(sigma, shares, n"):
        weighted_standard_error([1e308], [1.0], [1e-300])
