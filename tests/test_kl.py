"""Tests for solvers.kl: k3 KL estimator and the dynamic budget (DRRO paper Sec. 4.5, eq. 4.17)."""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import K3KL, dynamic_budget, k3_kl


def k3_exact(z: float) -> float:
    """exp(z) - z - 1 to ~1e-30 relative: exact-rational Taylor sum for |z| < 1, math.exp otherwise."""
    if abs(z) >= 1.0:
        return math.exp(z) - z - 1.0  # no catastrophic cancellation: the result is >= 0.718 |z| ~ O(1)
    zf = Fraction(z)
    term = zf * zf / 2
    total = Fraction(0)
    n = 2
    while True:
        total += term
        n += 1
        term = term * zf / n
        if abs(term) < Fraction(1, 10**40) * abs(total) or term == 0:
            return float(total + term)


# ----------------------------------------------------------------------------- k3
@given(
    z=st.one_of(
        st.floats(-50.0, 50.0),
        st.floats(-1e-3, 1e-3),
        st.floats(1e-12, 1e-6),
        st.floats(-1e-6, -1e-12),
    ),
    base=st.floats(-1e4, 0.0),
)
@settings(max_examples=150)
def test_k3_matches_exact_formula_and_is_nonnegative(z, base):
    """k3 = exp(z) - z - 1 >= 0 (Sec. 4.5, after eq. 4.17), to near full relative precision, tiny z included."""
    logp = np.array([base])
    logp_ref = logp + z
    z_eff = float(logp_ref[0] - logp[0])  # the z the function actually sees
    res = k3_kl(logp_ref, logp)
    assert isinstance(res, K3KL)
    assert res.per_sample[0] >= 0.0
    assert res.per_sample[0] == pytest.approx(k3_exact(z_eff), rel=1e-13, abs=1e-300)
    assert res.mean == res.per_sample[0]


def test_k3_small_z_keeps_relative_precision():
    """Naive exp(z) - z - 1 is 0 or garbage at z = 1e-9; the stable form gives z^2/2."""
    z = np.array([1e-9, -1e-9, 3e-5, -2e-3])
    res = k3_kl(z, np.zeros(4))
    np.testing.assert_allclose(res.per_sample, [k3_exact(float(v)) for v in z], rtol=1e-14)
    assert res.per_sample[0] == pytest.approx(5e-19, rel=1e-8)


def test_k3_shapes_and_group_mean():
    rng = np.random.default_rng(0)
    logp = rng.uniform(-50, -1, size=(3, 5))
    logp_ref = logp + rng.normal(scale=0.5, size=(3, 5))
    res = k3_kl(logp_ref, logp)
    assert res.per_sample.shape == (3, 5) and res.mean.shape == (3,)
    np.testing.assert_allclose(res.mean, res.per_sample.mean(axis=1), rtol=1e-15)
    one = k3_kl(logp_ref[1], logp[1])
    assert isinstance(one.mean, float)
    assert one.mean == pytest.approx(res.mean[1], rel=1e-15)


def test_k3_expectation_equals_kl_exactly():
    """E_{y~p}[exp(z) - z - 1] = KL(p || q) for z = log q(y) - log p(y): exact identity on a discrete example."""
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(6))
    q = rng.dirichlet(np.ones(6))
    per = k3_kl(np.log(q), np.log(p)).per_sample  # one "sample" per support point
    kl = float(np.sum(p * np.log(p / q)))
    assert float(np.sum(p * per)) == pytest.approx(kl, rel=1e-12)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=5)
def test_k3_group_mean_unbiased_monte_carlo(seed):
    """Unbiasedness of the k3 group mean for KL(p_model || p_ref) (Schulman 2020; Sec. 4.5).

    Draw M groups of G rollouts from p_model on a 5-point space; the average of the group means is
    within 5 standard errors of the exact KL (false-failure probability < 1e-6).
    """
    rng = np.random.default_rng(seed)
    p_model = rng.dirichlet(np.full(5, 2.0))
    p_ref = rng.dirichlet(np.full(5, 2.0))
    kl = float(np.sum(p_model * np.log(p_model / p_ref)))
    M, G = 4000, 8
    y = rng.choice(5, size=(M, G), p=p_model)
    res = k3_kl(np.log(p_ref)[y], np.log(p_model)[y])
    group_means = res.mean
    se = group_means.std(ddof=1) / math.sqrt(M)
    assert abs(group_means.mean() - kl) <= 5 * se + 1e-12
    assert np.all(res.per_sample >= 0)


def test_k3_extreme_logprobs():
    """Sequence log-probs of -1e4 are fine: only the difference z matters."""
    res = k3_kl([[-1e4, -1e4 + 1.0]], [[-1e4, -1e4]])
    np.testing.assert_allclose(res.per_sample, [[0.0, math.e - 2.0]], rtol=1e-12, atol=0)


def test_k3_invalid_inputs():
    with pytest.raises(ValueError, match=r"logp_ref must be finite, got nan at index 1"):
        k3_kl([0.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="logp must be finite, got -inf"):
        k3_kl([0.0, 0.0], [0.0, -np.inf])
    with pytest.raises(ValueError, match="same shape"):
        k3_kl([0.0, 0.0], [0.0])
    with pytest.raises(ValueError, match="logp_ref must be 1-D or 2-D"):
        k3_kl(0.0, 0.0)
    with pytest.raises(ValueError, match="at least one rollout"):
        k3_kl(np.zeros((2, 0)), np.zeros((2, 0)))
    overflow = r"k3 overflows float64: z = logp_ref - logp = 710.0 > 709.78 at index \(0, 1\)"
    with pytest.raises(ValueError, match=overflow):
        k3_kl([[0.0, 0.0]], [[0.0, -710.0]])
    assert np.isfinite(k3_kl([0.0], [-709.0]).mean)


# ----------------------------------------------------------------------------- dynamic budget
def test_dynamic_budget_eq_4_17():
    """delta_tilde = delta_tilde_0 + alpha * KL, elementwise for per-prompt KL."""
    assert dynamic_budget(0.5, 10.0, 0.25) == 3.0
    np.testing.assert_allclose(dynamic_budget(1.0, 2.0, [0.0, 0.5, 3.0]), [1.0, 2.0, 7.0])
    assert isinstance(dynamic_budget(0.0, 1.0, np.float64(2.0)), float)
    # k3 result feeds straight in
    kl = k3_kl([[-1.0, -2.0], [-3.0, -3.0]], [[-1.5, -1.0], [-3.0, -3.0]]).mean
    np.testing.assert_allclose(dynamic_budget(0.0, 10.0, kl), 10.0 * kl)


@given(
    history=st.lists(st.floats(0.0, 100.0), min_size=1, max_size=40),
    window=st.integers(1, 25),
    delta0=st.floats(0.0, 10.0),
    alpha=st.floats(0.0, 20.0),
)
@settings(max_examples=60)
def test_dynamic_budget_window_matches_streaming_smoother(history, window, delta0, alpha):
    """Sliding-window smoothing of eq. (4.17) (DRRO appendix: k3 smoothed over 20 updates).

    Reference: a streaming smoother (deque of the last `window` estimates, averaged); at every
    step t the pure function on history[:t+1] must equal it, including the warm-up t < window.
    """
    buf: deque[float] = deque(maxlen=window)
    for t, kl in enumerate(history):
        buf.append(kl)
        expected = delta0 + alpha * (sum(buf) / len(buf))
        got = dynamic_budget(delta0, alpha, history[: t + 1], window=window)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_dynamic_budget_window_per_prompt_history():
    hist = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])  # (T=3, P=2)
    np.testing.assert_allclose(dynamic_budget(1.0, 2.0, hist, window=2), [1.0 + 2.0 * 3.0, 1.0 + 2.0 * 4.0])
    np.testing.assert_allclose(dynamic_budget(0.0, 1.0, hist, window=20), [2.0, 3.0])
    np.testing.assert_allclose(dynamic_budget(0.0, 1.0, hist, window=1), [4.0, 5.0])
    # window=None treats the array as per-prompt values, not a history
    np.testing.assert_allclose(dynamic_budget(0.0, 1.0, hist), hist)


def test_dynamic_budget_invalid_inputs():
    with pytest.raises(ValueError, match=r"kl must be non-negative, got -0.1 at index 1"):
        dynamic_budget(0.0, 1.0, [0.2, -0.1])
    with pytest.raises(ValueError, match="kl must be finite"):
        dynamic_budget(0.0, 1.0, [np.nan], window=3)
    with pytest.raises(ValueError, match="kl must be >= 0.0, got -0.5"):
        dynamic_budget(0.0, 1.0, -0.5)
    with pytest.raises(ValueError, match="kl must be finite"):
        dynamic_budget(0.0, 1.0, np.nan)
    with pytest.raises(ValueError, match="delta0 must be >= 0.0"):
        dynamic_budget(-1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="alpha must be >= 0.0"):
        dynamic_budget(0.0, -2.0, 0.5)
    with pytest.raises(ValueError, match="alpha must be finite"):
        dynamic_budget(0.0, np.inf, 0.5)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        dynamic_budget(0.0, 1.0, [0.5], window=0)
    with pytest.raises(TypeError, match="window must be an integer"):
        dynamic_budget(0.0, 1.0, [0.5], window="20")
    with pytest.raises(ValueError, match="at least one entry"):
        dynamic_budget(0.0, 1.0, [], window=5)
    with pytest.raises(ValueError, match="kl must be 1-D or 2-D"):
        dynamic_budget(0.0, 1.0, 0.5, window=5)
    # an overflowing budget is an error, not a silent inf (delta must be finite downstream)
    with pytest.raises(ValueError, match="dynamic budget overflowed float64"):
        dynamic_budget(1e308, 1e308, 1e308)
    with pytest.raises(ValueError, match="dynamic budget overflowed float64"):
        dynamic_budget(0.0, 1e300, [[1e10, 0.0]], window=1)


def test_k3_mean_of_values_near_dbl_max_is_finite():
    """Extreme inputs: ``k3_kl([-1e308, -1e308], [0, 0])`` had finite per-sample values (1e308 each) but
    ``mean=inf`` (their sum overflows); the mean is now summed as x / G in that case."""
    res = k3_kl([-1e308, -1e308], [0.0, 0.0])
    assert res.mean == pytest.approx(1e308, rel=1e-15)
    res = k3_kl([[-1e308, -1e308], [-1.0, -2.0]], np.zeros((2, 2)))
    assert res.mean[0] == pytest.approx(1e308, rel=1e-15)
    assert res.mean[1] == np.mean(res.per_sample[1])  # ordinary rows: unchanged


def test_k3_of_an_overflowing_difference_is_a_value_error():
    """Found by the mixed extreme-input sweep: ``logp_ref = -DBL_MAX``, ``logp = DBL_MAX`` gives
    ``z = -inf`` and per-sample ``inf`` (k3 ~ -z is not representable): now a ValueError."""
    with pytest.raises(ValueError, match=r"z = logp_ref - logp = -inf \(the difference itself overflows\)"):
        k3_kl([-1.7e308], [1.7e308])
