"""Tests of bandits.baseline_predictors against hand computations and numpy.linalg references."""

from __future__ import annotations

import numpy as np
import pytest

from bandits import (
    BetaBinomialPredictor,
    GPSuccessPredictor,
    MovingAveragePredictor,
    RidgePredictor,
)


# ----------------------------------------------------------------------------- moving average
def test_moving_average_hand_computation_with_eviction():
    ma = MovingAveragePredictor(5, window=3, prior=0.3, eps=0.01)
    np.testing.assert_allclose(ma.predict([0, 4]), [0.3, 0.3])  # prior before any data
    ma.update([0, 1], [2, 0], [4, 2])  # rates 0.5, 0.0
    np.testing.assert_allclose(ma.predict([0, 1, 2]), [0.5, 0.01, 0.25])  # own, own (clipped), global
    ma.update([0, 2], [4, 1], [4, 4])  # buffer -> (1, 0.0), (0, 1.0), (2, 0.25); (0, 0.5) evicted
    np.testing.assert_allclose(ma.predict([0, 1, 2, 3]), [0.99, 0.01, 0.25, (0 + 1 + 0.25) / 3])
    # variance: p (1 - p) / trials behind the averaged rate
    np.testing.assert_allclose(ma.predict_var([2, 3]), [0.25 * 0.75 / 4, (1.25 / 3) * (1 - 1.25 / 3) / 10])
    ma.update([3, 3, 3], [1, 1, 1], [2, 2, 2])  # window now only prompt 3's three entries
    np.testing.assert_allclose(ma.predict([0, 3]), [0.5, 0.5])


def test_moving_average_matches_brute_force_on_random_stream():
    rng = np.random.default_rng(0)
    ma = MovingAveragePredictor(20, window=37)
    log = []
    for _ in range(30):
        ids = rng.integers(0, 20, size=7)
        n = rng.integers(1, 9, size=7)
        s = rng.binomial(n, 0.4)
        ma.update(ids, s, n)
        log.extend(zip(ids.tolist(), (s / n).tolist()))
        win = log[-37:]
        glob = np.mean([r for _, r in win])
        for q in range(20):
            own = [r for i, r in win if i == q]
            want = np.mean(own) if own else glob
            assert ma.predict([q])[0] == pytest.approx(np.clip(want, 0.01, 0.99), abs=1e-12)


# ----------------------------------------------------------------------------- ridge
def ridge_reference(x, y, alpha):
    """Ridge with unpenalised intercept via an augmented least-squares problem (numpy lstsq)."""
    m, d = x.shape
    a = np.vstack([np.hstack([x, np.ones((m, 1))]), np.hstack([np.sqrt(alpha) * np.eye(d), np.zeros((d, 1))])])
    b = np.concatenate([y, np.zeros(d)])
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    return sol[:d], sol[d]


@pytest.mark.parametrize("dim", [3, 50])  # primal (m >= d) and dual (m < d) solves
def test_ridge_matches_lstsq_reference_on_the_window(dim):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(100, dim))
    rp = RidgePredictor(x, alpha=0.7, window=25, eps=0.02)
    np.testing.assert_allclose(rp.predict([0, 1]), [0.5, 0.5])  # prior before any fit
    hist_ids, hist_y = [], []
    for _ in range(3):
        ids = rng.integers(0, 100, size=12)
        n = rng.integers(1, 9, size=12)
        s = rng.binomial(n, 0.6)
        rp.update(ids, s, n)
        p = np.clip(s / n, 0.02, 0.98)
        hist_ids += ids.tolist()
        hist_y += np.log(p / (1 - p)).tolist()
        # after every update, also while the window is still filling (12, 24, then 25 entries)
        w, b = ridge_reference(x[hist_ids[-25:]], np.array(hist_y[-25:]), 0.7)
        np.testing.assert_allclose(rp.coef_, w, rtol=1e-8, atol=1e-10)
        assert rp.intercept_ == pytest.approx(b, rel=1e-8, abs=1e-10)
    z = x @ w + b
    np.testing.assert_allclose(rp.predict(np.arange(100)), np.clip(1 / (1 + np.exp(-z)), 0.02, 0.98))


# ----------------------------------------------------------------------------- beta-binomial
def test_beta_binomial_hand_computation():
    bb = BetaBinomialPredictor(4, a0=2.0, b0=1.0)
    np.testing.assert_allclose(bb.predict([0]), [2 / 3])
    bb.update([0, 1, 0], [3, 0, 1], [4, 5, 1])  # prompt 0: 4 successes, 1 failure (pooled)
    a, b = bb.posterior([0, 1, 2])
    np.testing.assert_allclose(a, [6, 2, 2])
    np.testing.assert_allclose(b, [2, 6, 1])
    np.testing.assert_allclose(bb.predict([0, 1, 2]), [6 / 8, 2 / 8, 2 / 3])
    np.testing.assert_allclose(bb.predict_var([0]), [6 * 2 / (64 * 9)])


def test_beta_binomial_discount_hand_computation():
    """S_q = sum_t gamma^(T - t) s_{q,t}: with gamma = 0.5, s = 4 at t = 1, 2 at t = 3, T = 3:
    S = 4 * 0.25 + 2 = 3; failures F = 0 * 0.25 + 2 = 2."""
    bb = BetaBinomialPredictor(3, discount=0.5)
    bb.update([0], [4], [4])
    bb.update([1], [1], [1])
    bb.update([0], [2], [4])
    a, b = bb.posterior([0, 1])
    np.testing.assert_allclose(a, [1 + 3.0, 1 + 0.5])
    np.testing.assert_allclose(b, [1 + 2.0, 1 + 0.0])


# ----------------------------------------------------------------------------- common interface
def all_predictors(x):
    n = x.shape[0]
    return [
        GPSuccessPredictor(x, seed=0),
        GPSuccessPredictor(x, seed=0, noise="binomial"),
        MovingAveragePredictor(n),
        RidgePredictor(x),
        BetaBinomialPredictor(n, discount=0.9),
    ]


@pytest.mark.parametrize("outcome", ["success", "failure", "mixed"])
def test_common_interface_never_nan_and_in_range(outcome):
    x = np.random.default_rng(0).normal(size=(40, 5))
    ids = np.arange(0, 40, 3)
    n = np.full(ids.size, 6)
    s = {"success": n, "failure": np.zeros_like(n), "mixed": np.arange(ids.size) % 7}[outcome]
    for pred in all_predictors(x):
        before = pred.predict(np.arange(40))
        assert before.dtype == np.float64 and np.all(np.isfinite(before))
        pred.update(ids, s, n)
        pred.update(ids, s, n)
        p = pred.predict(np.arange(40))
        assert p.dtype == np.float64 and p.shape == (40,)
        assert np.all(np.isfinite(p)) and np.all((p >= pred.eps) & (p <= 1 - pred.eps)), type(pred)
        if hasattr(pred, "predict_var"):
            v = pred.predict_var(np.arange(40))
            assert np.all(np.isfinite(v)) and np.all(v >= 0)


def test_baseline_validation_errors():
    x = np.ones((5, 2))
    for pred in (MovingAveragePredictor(5), RidgePredictor(x), BetaBinomialPredictor(5)):
        with pytest.raises(ValueError, match=r"ids must be prompt indices in \[0, 5\), got 5"):
            pred.predict([5])
        with pytest.raises(ValueError, match="successes must be <= trials"):
            pred.update([0], [2], [1])
    with pytest.raises(ValueError, match="window must be >= 1"):
        MovingAveragePredictor(5, window=0)
    with pytest.raises(ValueError, match="prior must be < 1"):
        MovingAveragePredictor(5, prior=1.0)
    with pytest.raises(ValueError, match="n_prompts must be >= 1"):
        BetaBinomialPredictor(0)
    with pytest.raises(ValueError, match="discount must be > 0"):
        BetaBinomialPredictor(5, discount=0.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        RidgePredictor(x, alpha=0.0)


@pytest.mark.parametrize("dim", [3, 50])  # primal and dual solves
def test_ridge_huge_embeddings_fit_in_rescaled_units(dim):
    """Finite embeddings of magnitude 1e200 overflow X'X. Extreme inputs: update raised
    FloatingPointError on every call (the predictor could never learn); the fit is now solved in
    units x / 2**k by SVD -- the ridge solution, whose penalty alpha / 2**2k underflows to the
    minimum-norm least-squares limit -- and checked against that limit computed directly."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, dim))
    big = np.vstack([x, 1e200 * rng.normal(size=(2, dim))])
    rp = RidgePredictor(big, window=6)
    rp.update([0, 1, 2, 3], [1, 2, 3, 4], [4, 4, 4, 4])
    rp.update([20, 21, 5], [1, 2, 0], [4, 4, 4])
    ids = [2, 3, 20, 21, 5]
    y = np.log(np.clip(np.array([3, 4, 1, 2, 0]) / 4, 0.01, 0.99))
    y -= np.log1p(-np.clip(np.array([3, 4, 1, 2, 0]) / 4, 0.01, 0.99))
    xw = big[[1, 2, 3, 20, 21, 5]] / 1e200
    yw = np.r_[np.log(0.5) - np.log1p(-0.5), y]
    xc = xw - xw.mean(axis=0)
    u = np.linalg.lstsq(xc, yw - yw.mean(), rcond=None)[0]  # the alpha -> 0 limit, in units 1e200
    expected = (big[ids] / 1e200 - xw.mean(axis=0)) @ u + yw.mean()
    got = rp.predict_logit(ids)
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(rp.coef_)) and np.isfinite(rp.intercept_)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.all((rp.predict(ids) >= 0.01) & (rp.predict(ids) <= 0.99))
    rp.update([4, 5, 6], [0, 1, 2], [4, 4, 4])  # and keeps working: window = last 6 entries
    assert list(rp._ids) == [20, 21, 5, 4, 5, 6]


def test_ridge_failed_fit_leaves_state_unchanged(monkeypatch):
    """An update whose fit cannot be represented raises ValueError (the documented type; it was
    FloatingPointError) and the window, coefficients and step are those before the call."""
    import bandits.baseline_predictors as bp

    rng = np.random.default_rng(1)
    rp = RidgePredictor(rng.normal(size=(20, 3)), window=6)
    rp.update([0, 1, 2, 3], [1, 2, 3, 4], [4, 4, 4, 4])
    coef, b, step, window = rp.coef_.copy(), rp.intercept_, rp.step, list(rp._ids)
    monkeypatch.setattr(bp, "_ridge_fit", lambda xw, yw, alpha: (np.full(3, 1e308), 0.0, 2.0**-900))
    with pytest.raises(ValueError, match="logits that overflow float64"):
        rp.update([5, 6, 7], [1, 2, 0], [4, 4, 4])
    np.testing.assert_array_equal(rp.coef_, coef)
    assert (rp.intercept_, rp.step, list(rp._ids)) == (b, step, window)


def test_extreme_constructor_values():
    """Extreme inputs: ``RidgePredictor(np.ones((3, 2)), window=10**19)`` raised OverflowError (deque
    maxlen beyond ssize_t); eps below 2**-53 made ``logit(1 - eps)`` infinite (every update then
    failed); a Beta prior near DBL_MAX gave ``a + b = inf``, i.e. a predicted mean of 0."""
    with pytest.raises(ValueError, match="window must be <= 9223372036854775807"):
        RidgePredictor(np.ones((3, 2)), window=10**19)
    with pytest.raises(ValueError, match="n_prompts must be <= 2147483647"):
        MovingAveragePredictor(2**53)
    with pytest.raises(ValueError, match=r"eps must be >= 1.1102230246251565e-16"):
        BetaBinomialPredictor(3, eps=5e-324)
    bb = BetaBinomialPredictor(3, a0=1e308, b0=1e308)
    np.testing.assert_allclose(bb.predict([0, 1]), [0.5, 0.5])
    v = bb.predict_var([0])
    assert np.all(np.isfinite(v)) and np.all(v >= 0.0) and v[0] < 1e-300
