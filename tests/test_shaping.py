"""Tests for solvers.shaping: DRRO / DRO group shaping (DRRO paper eq. 4.14, 4.15, Prop 4.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import ShapedRewards, dro_rewards, drro_rewards
from solvers._status import OPTIMAL

SHAPERS = {"drro": drro_rewards, "dro": dro_rewards}


# ----------------------------------------------------------------------------- references
def reference_row(r, lp, delta, tau, value_robust):
    """One group, straight from the equations (float64, no log-space tricks; safe inputs only).

    pi_tilde_k = pi_k / sum_l pi_l with pi_k = exp(lp_k)                        (Sec. 4.5)
    DRRO hard (4.14): k* = argmax r_k - delta pi_tilde_k, bonus +delta on k*
    DRRO soft (4.15): u_k = exp((r_k - delta pi_tilde_k)/tau) / pi_tilde_k, w = u/sum u,
                      bonus +delta G w_k pi_tilde_k
    DRO: adversary score delta pi_tilde_k (hard: argmax pi_tilde), correction with a minus sign.
    """
    G = len(r)
    pi_raw = [math.exp(x) for x in lp]
    total = sum(pi_raw)
    pi = [x / total for x in pi_raw]
    sign = -1.0 if value_robust else 1.0
    if tau is None:
        scores = [pi[k] if value_robust else r[k] - delta * pi[k] for k in range(G)]
        best = 0
        for k in range(1, G):
            if scores[k] > scores[best]:
                best = k
        w = [1.0 if k == best else 0.0 for k in range(G)]
        shaped = [r[k] + (sign * delta if k == best else 0.0) for k in range(G)]
    else:
        a = [math.exp((delta * pi[k] if value_robust else r[k] - delta * pi[k]) / tau) for k in range(G)]
        u = [a[k] / pi[k] for k in range(G)]
        su = sum(u)
        w = [x / su for x in u]
        best = max(range(G), key=lambda k: w[k])
        shaped = [r[k] + sign * delta * G * w[k] * pi[k] for k in range(G)]
    ess = 1.0 / sum(x * x for x in w)
    return np.array(shaped), np.array(w), best, ess, np.array(pi)


def reference_row_mp(r, lp, delta, tau, value_robust, dps=60):
    """High-precision (mpmath) version of :func:`reference_row` for extreme log-probs (-1e4)."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(dps):
        G = len(r)
        pi_raw = [mpmath.exp(mpmath.mpf(x)) for x in lp]
        total = mpmath.fsum(pi_raw)
        pi = [x / total for x in pi_raw]
        sign = -1 if value_robust else 1
        a = [mpmath.exp((delta * pi[k] if value_robust else r[k] - delta * pi[k]) / tau) for k in range(G)]
        u = [a[k] / pi[k] for k in range(G)]
        su = mpmath.fsum(u)
        w = [x / su for x in u]
        shaped = [r[k] + sign * delta * G * w[k] * pi[k] for k in range(G)]
        return np.array([float(x) for x in shaped]), np.array([float(x) for x in w])


def random_instance(seed, P, G, *, lp_low=-20.0):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(P, G))
    lp = rng.uniform(lp_low, 0.0, size=(P, G))
    return rng, r, lp


# ----------------------------------------------------------------------------- vs reference
@given(
    seed=st.integers(0, 2**32 - 1),
    P=st.integers(1, 5),
    G=st.integers(1, 9),
    tau=st.one_of(st.none(), st.floats(0.05, 5.0)),
    per_prompt=st.booleans(),
    value_robust=st.booleans(),
)
@settings(max_examples=60)
def test_matches_reference(seed, P, G, tau, per_prompt, value_robust):
    """Eq. (4.14)/(4.15) and the DRO counterpart against a per-row reference written from the equations."""
    rng, r, lp = random_instance(seed, P, G)
    delta = rng.uniform(0.0, 3.0, size=P) if per_prompt else float(rng.uniform(0.0, 3.0))
    fn = dro_rewards if value_robust else drro_rewards
    res = fn(r, lp, delta, tau=tau)
    assert isinstance(res, ShapedRewards)
    assert res.success and res.status == OPTIMAL
    deltas = np.broadcast_to(delta, (P,))
    for p in range(P):
        shaped, w, best, ess, pi = reference_row(list(r[p]), list(lp[p]), float(deltas[p]), tau, value_robust)
        np.testing.assert_allclose(res.rewards[p], shaped, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.weights[p], w, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(res.probs[p], pi, rtol=1e-12, atol=1e-300)
        assert res.ess[p] == pytest.approx(ess, rel=1e-10)
        if tau is None:
            assert res.index[p] == best
    np.testing.assert_allclose(res.bonus, res.rewards - r, atol=0)
    assert res.rule == ("dro" if value_robust else "drro") + ("-hard" if tau is None else "-soft")
    assert np.all(res.ess >= 1 - 1e-12) and np.all(res.ess <= G + 1e-9)
    if value_robust:
        assert np.all(res.bonus <= 0)
    else:
        assert np.all(res.bonus >= 0)


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.7])
def test_per_prompt_delta_equals_rowwise_scalar_calls(name, tau):
    """A [P] budget shapes each row as the scalar call on that row would."""
    _, r, lp = random_instance(3, 6, 5)
    delta = np.linspace(0.0, 4.0, 6)
    batch = SHAPERS[name](r, lp, delta, tau=tau)
    for p in range(6):
        row = SHAPERS[name](r[p : p + 1], lp[p : p + 1], delta[p], tau=tau)
        np.testing.assert_array_equal(batch.rewards[p], row.rewards[0])
        np.testing.assert_array_equal(batch.weights[p], row.weights[0])


# ----------------------------------------------------------------------------- soft -> hard
@given(
    seed=st.integers(0, 2**32 - 1),
    G=st.integers(2, 10),
    delta=st.floats(0.1, 5.0),
    value_robust=st.booleans(),
)
@settings(max_examples=40)
def test_soft_tends_to_hard_as_tau_to_zero(seed, G, delta, value_robust):
    """DRRO eq. (4.15) -> eq. (4.14) as tau -> 0 when the hard argmax is unique (same for DRO).

    The SNIS weights tend to the one-hot hard pick (log u gap = score gap / tau - log-prob spread),
    so the soft bonus tends to sign * delta * G * pi_tilde_{k*} on k* (the paper's formulas,
    implemented as printed).
    """
    rng, r, lp = random_instance(seed, 1, G, lp_low=-5.0)
    hard = (dro_rewards if value_robust else drro_rewards)(r, lp, delta)
    pi = hard.probs[0]
    scores = np.sort(delta * pi if value_robust else r[0] - delta * pi)  # the adversary's log-a * tau
    gap = scores[-1] - scores[-2]
    if gap < 1e-6:
        return  # argmax not (numerically) unique: the property does not apply
    spread = np.log(pi).max() - np.log(pi).min()  # range of -log pi_tilde across the group
    tau = gap / (spread + 60.0)  # gap/tau - spread >= 60: non-pick weights <= G e^-60
    soft = (dro_rewards if value_robust else drro_rewards)(r, lp, delta, tau=tau)
    k = int(hard.index[0])
    assert soft.index[0] == k
    np.testing.assert_allclose(soft.weights, hard.weights, atol=1e-20 + G * math.exp(-60))
    sign = -1.0 if value_robust else 1.0
    expected = r[0].copy()
    expected[k] += sign * delta * G * pi[k]
    np.testing.assert_allclose(soft.rewards[0], expected, rtol=1e-12, atol=1e-12)
    assert soft.ess[0] == pytest.approx(1.0, abs=1e-12)


def test_soft_limit_equals_hard_bonus_for_uniform_group():
    """With pi_tilde = 1/G the soft bonus limit delta G pi_tilde_{k*} is exactly the hard bonus delta."""
    r = np.array([[0.3, 1.0, -0.2, 0.5]])
    lp = np.full((1, 4), -7.0)
    hard = drro_rewards(r, lp, 2.0)
    soft = drro_rewards(r, lp, 2.0, tau=1e-3)
    np.testing.assert_allclose(soft.rewards, hard.rewards, atol=1e-12)
    assert hard.index[0] == 1


# ----------------------------------------------------------------------------- Prop 4.4
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=4)
def test_prop_4_4_snis_error_bound(seed):
    """DRRO Prop. 4.4 (eq. 4.11): |mu_hat - mu| <= 4 U H / nu sqrt(log(4/eta) / (2K)) w.p. >= 1 - eta.

    Synthetic hidden simplex of n responses with policy pi (the proposal q = pi_bar = pi), test
    function h, a = exp((r - delta pi)/tau), u = a / q: U = max u, H = max |h|, nu = E_q[u] = sum a.
    The SNIS weights are those of drro_rewards (eq. 4.9 is reproduced exactly by passing the
    per-row budget delta * sum_k pi(y_k), since delta_tilde pi_tilde = delta pi). K is 100x the
    proposition's minimum, so the bound is H/5: a mis-weighted estimator (e.g. missing 1/q) fails.
    Monte Carlo over M replicates; the violation count must be <= eta M + 3 binomial SEs.
    """
    rng = np.random.default_rng(seed)
    n, delta, tau, eta = 8, 1.0, 0.5, 0.1
    pi = rng.dirichlet(np.full(n, 3.0))
    r = rng.uniform(0.0, 2.0, size=n)
    h = rng.uniform(-1.0, 1.0, size=n)
    a = np.exp((r - delta * pi) / tau)
    u = a / pi
    U, H, nu = u.max(), np.abs(h).max(), a.sum()
    mu = (a * h).sum() / a.sum()
    k_min = math.ceil(2 * U**2 / nu**2 * math.log(4 / eta))
    K = 100 * k_min
    bound = 4 * U * H / nu * math.sqrt(math.log(4 / eta) / (2 * K))
    assert bound <= H / 5 + 1e-12
    M = 200
    idx = rng.choice(n, size=(M, K), p=pi)
    row_delta = delta * pi[idx].sum(axis=1)
    res = drro_rewards(r[idx], np.log(pi)[idx], row_delta, tau=tau)
    mu_hat = (res.weights * h[idx]).sum(axis=1)
    violations = int((np.abs(mu_hat - mu) > bound).sum())
    assert violations <= eta * M + 3 * math.sqrt(M * eta * (1 - eta))
    # sanity: the estimator is consistent, so its average error is far below the bound
    assert np.abs(mu_hat - mu).mean() < bound / 2


# ----------------------------------------------------------------------------- robustness
@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.5, 3.0])
def test_shift_invariance_extreme_logprobs(name, tau):
    """Only within-group differences of log-probs matter: shifting a row by -1e4 changes nothing."""
    _, r, lp = random_instance(11, 4, 6, lp_low=-10.0)
    base = SHAPERS[name](r, lp, 1.5, tau=tau)
    shifted = SHAPERS[name](r, lp - 1e4, 1.5, tau=tau)
    np.testing.assert_allclose(shifted.rewards, base.rewards, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(shifted.weights, base.weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(shifted.index, base.index)


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [0.2, 2.0])
def test_extreme_logprob_spread_against_mpmath(name, tau):
    """Log-probs spanning -1e4..0 in one group: pi_tilde underflows, -log pi_tilde ~ 1e4 must not."""
    r = np.array([[0.5, 1.0, -0.3, 0.2, 0.9]])
    lp = np.array([[-1e4, -1.0, -2.0, -1e4 + 5.0, -300.0]])
    res = SHAPERS[name](r, lp, 2.0, tau=tau)
    assert np.isfinite(res.rewards).all() and np.isfinite(res.ess).all() and res.success
    shaped, w = reference_row_mp(list(r[0]), list(lp[0]), 2.0, tau, name == "dro")
    np.testing.assert_allclose(res.rewards[0], shaped, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.weights[0], w, rtol=1e-9, atol=1e-300)
    # the near-zero-probability rollouts carry almost all SNIS weight (u = a / pi_tilde)
    assert res.weights[0, 0] + res.weights[0, 3] > 0.99


@pytest.mark.parametrize("tau", [None, 1.0])
def test_extreme_logprobs_hard_pick(tau):
    """Hard DRRO with pi_tilde ~ 0 for some rollouts: the score reduces to the reward there."""
    r = np.array([[0.5, 1.0, 0.9]])
    lp = np.array([[-1e4, -1e4, 0.0]])
    res = drro_rewards(r, lp, 0.5)
    assert res.index[0] == 1 and res.rewards[0, 1] == 1.5
    res_dro = dro_rewards(r, lp, 0.5)
    assert res_dro.index[0] == 2 and res_dro.rewards[0, 2] == pytest.approx(0.4)


@pytest.mark.parametrize("name", ["drro", "dro"])
def test_equal_rewards_and_probs_ties(name):
    """Exact ties go to the lowest index (hard); the soft weights are uniform (ESS = G)."""
    G, delta = 5, 1.2
    r = np.full((2, G), 0.7)
    lp = np.full((2, G), -42.0)
    sign = -1.0 if name == "dro" else 1.0
    hard = SHAPERS[name](r, lp, delta)
    np.testing.assert_array_equal(hard.index, [0, 0])
    expected = r.copy()
    expected[:, 0] += sign * delta
    np.testing.assert_allclose(hard.rewards, expected, rtol=0, atol=1e-15)
    soft = SHAPERS[name](r, lp, delta, tau=0.3)
    np.testing.assert_allclose(soft.weights, 1.0 / G, rtol=1e-14)
    np.testing.assert_allclose(soft.ess, G, rtol=1e-12)
    np.testing.assert_allclose(soft.bonus, sign * delta / G, rtol=1e-12)


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_single_rollout_group(name, tau):
    """G = 1: pi_tilde = 1, the single rollout takes the whole correction +/- delta."""
    r = np.array([[0.2], [1.0], [-3.0]])
    lp = np.array([[-5.0], [-1e4], [0.0]])
    res = SHAPERS[name](r, lp, [0.5, 1.0, 2.0], tau=tau)
    sign = -1.0 if name == "dro" else 1.0
    np.testing.assert_allclose(res.rewards[:, 0], r[:, 0] + sign * np.array([0.5, 1.0, 2.0]), rtol=1e-15)
    np.testing.assert_array_equal(res.weights, 1.0)
    np.testing.assert_array_equal(res.ess, 1.0)


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_zero_delta_leaves_rewards_unchanged(name, tau):
    _, r, lp = random_instance(5, 3, 4)
    res = SHAPERS[name](r, lp, 0.0, tau=tau)
    np.testing.assert_array_equal(res.rewards, r)
    np.testing.assert_array_equal(res.bonus, 0.0)


def test_empty_batch():
    res = drro_rewards(np.zeros((0, 4)), np.zeros((0, 4)), 1.0, tau=1.0)
    assert res.rewards.shape == (0, 4) and res.ess.shape == (0,) and res.success


@pytest.mark.parametrize("name", ["drro", "dro"])
def test_invalid_inputs(name):
    fn = SHAPERS[name]
    r = np.zeros((2, 3))
    lp = np.zeros((2, 3))
    bad = r.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"rewards must be finite, got nan at index \(1, 2\)"):
        fn(bad, lp, 1.0)
    with pytest.raises(ValueError, match="seq_logprobs must be finite"):
        fn(r, bad, 1.0, tau=1.0)
    lp_inf = lp.copy()
    lp_inf[0, 0] = -np.inf
    with pytest.raises(ValueError, match="seq_logprobs must be finite, got -inf"):
        fn(r, lp_inf, 1.0)
    with pytest.raises(ValueError, match="delta must be finite"):
        fn(r, lp, np.nan)
    with pytest.raises(ValueError, match="delta must be >= 0.0, got -0.5"):
        fn(r, lp, -0.5)
    with pytest.raises(ValueError, match=r"delta must be non-negative, got -1.0 at index 1"):
        fn(r, lp, [0.5, -1.0])
    with pytest.raises(ValueError, match="delta must be a scalar or have length 2, got length 3"):
        fn(r, lp, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="tau must be > 0.0, got 0.0"):
        fn(r, lp, 1.0, tau=0.0)
    with pytest.raises(ValueError, match="tau must be finite"):
        fn(r, lp, 1.0, tau=float("nan"))
    with pytest.raises(TypeError, match="tau must be a real number"):
        fn(r, lp, 1.0, tau="1")
    with pytest.raises(ValueError, match="same shape"):
        fn(r, np.zeros((2, 4)), 1.0)
    with pytest.raises(ValueError, match="rewards must be 2-D, got shape"):
        fn(np.zeros(3), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="at least one rollout"):
        fn(np.zeros((2, 0)), np.zeros((2, 0)), 1.0)
    with pytest.raises(TypeError, match="rewards must be an array of real numbers"):
        fn("abc", lp, 1.0)


def test_overflow_raises_clear_error():
    """(r - delta pi)/tau beyond float64 range: a ValueError naming tau, never NaN output."""
    r = np.array([[1e300, -1e300]])
    with pytest.raises(ValueError, match="overflowed float64.*tau"):
        drro_rewards(r, np.zeros((1, 2)), 1.0, tau=1e-10)


@given(
    seed=st.integers(0, 2**32 - 1),
    P=st.integers(1, 6),
    G=st.integers(1, 12),
    tau=st.one_of(st.none(), st.floats(0.01, 10.0)),
    value_robust=st.booleans(),
    lp_scale=st.sampled_from([1.0, 100.0, 5000.0]),
)
@settings(max_examples=40)
def test_kernels_match_numpy_twin(seed, P, G, tau, value_robust, lp_scale):
    """The split Numba kernels equal the vectorised NumPy twin (same math), extreme log-prob spreads included."""
    from solvers.shaping import _shape_numpy

    rng = np.random.default_rng(seed)
    r = rng.normal(size=(P, G))
    lp = -np.abs(rng.normal(scale=lp_scale, size=(P, G)))
    d = rng.uniform(0.0, 3.0, size=P)
    res = (dro_rewards if value_robust else drro_rewards)(r, lp, d, tau=tau)
    shaped, w, index, ess, pi = _shape_numpy(r, lp, d, tau, value_robust)
    np.testing.assert_allclose(res.rewards, shaped, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.weights, w, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(res.probs, pi, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(res.ess, ess, rtol=1e-10)
    np.testing.assert_array_equal(res.index, index)


@pytest.mark.parametrize("tau", [0.3, 2.0])
def test_uniform_group_soft_bonus_is_eq_4_8_adversary_mass(tau):
    """With equal rollout probabilities (pi_tilde = 1/G) the SNIS factor G w_k pi_tilde_k is exactly the
    soft adversarial mass sigma_k = softmax((r - delta pi)/tau)_k of Prop. 4.3 (eq. 4.8), so the soft
    DRRO bonus is delta * sigma_k; for DRO it is -delta * softmax(delta pi / tau)_k = -delta / G."""
    r = np.array([[0.1, 0.9, 0.4, -0.3, 0.9]])
    lp = np.full((1, 5), -123.0)
    delta = 1.7
    sigma = np.exp((r - delta / 5) / tau)
    sigma /= sigma.sum()
    res = drro_rewards(r, lp, delta, tau=tau)
    np.testing.assert_allclose(res.bonus, delta * sigma, rtol=1e-13)
    res_dro = dro_rewards(r, lp, delta, tau=tau)
    np.testing.assert_allclose(res_dro.bonus, -delta / 5, rtol=1e-13)


def _fd_grad(f, pi, h=1e-7):
    """Central finite differences of f on R^n (pi treated as an unconstrained vector, as in Prop 4.1/4.3)."""
    g = np.empty_like(pi)
    for i in range(pi.size):
        e = np.zeros_like(pi)
        e[i] = h
        g[i] = (f(pi + e) - f(pi - e)) / (2 * h)
    return g


@pytest.mark.parametrize("seed", range(5))
def test_shaped_rewards_are_the_gradient_of_the_robust_objective(seed):
    """When the group is the whole response set (pi_tilde = pi), the hard shaped rewards are the
    pi-gradient of the promptwise objective: DRRO eq. (4.3) for F_delta (Prop 4.1: r + delta e_{i*}),
    and for DRO the gradient of the Sec. 6.1 objective <pi, r> - delta max_i pi_i (r - delta e_{argmax pi}).
    With uniform pi the soft DRO rule is the gradient of <pi, r> - tau log sum exp(delta pi / tau).
    Independent of the implementation: finite differences of the objectives themselves (checks the
    sign of the DRO penalty as well as its size)."""
    rng = np.random.default_rng(seed)
    n = 6
    r = rng.normal(size=n)
    pi = rng.dirichlet(np.ones(n))
    delta = float(rng.uniform(0.2, 3.0))
    lp = np.log(pi)[None, :]
    f_drro = lambda x: x @ r - np.max(r - delta * x)  # noqa: E731  (eq. 3.4)
    f_dro = lambda x: x @ r - delta * np.max(x)  # noqa: E731  (Sec. 6.1)
    np.testing.assert_allclose(drro_rewards(r[None], lp, delta).rewards[0], _fd_grad(f_drro, pi), atol=1e-6)
    np.testing.assert_allclose(dro_rewards(r[None], lp, delta).rewards[0], _fd_grad(f_dro, pi), atol=1e-6)
    tau = 0.5
    uniform = np.full(n, 1.0 / n)
    f_soft = lambda x: x @ r - tau * np.log(np.sum(np.exp(delta * x / tau)))  # noqa: E731
    res = dro_rewards(r[None], np.zeros((1, n)), delta, tau=tau)
    np.testing.assert_allclose(res.rewards[0], _fd_grad(f_soft, uniform), atol=1e-6)


def test_hard_drro_float_ties_follow_the_exact_argmax():
    """Extreme inputs (eq. 4.14): rewards [.25, .25, .25], log-probs [0, -50, -60], delta = 40. The scores
    r - delta pi_tilde all round to 0.25 (delta pi_tilde = 7.7e-21 and 3.5e-25 lie below the
    rounding of r), so the first maximiser (k = 0) won; in exact arithmetic the score is largest
    for the least likely rollout, k = 2. Float ties are broken by the smaller log pi_tilde."""
    r = np.array([[0.25, 0.25, 0.25], [1.0, 1.0, 0.0]])
    lp = np.array([[0.0, -50.0, -60.0], [-1.0, -1.0, -2.0]])
    delta = np.array([40.0, 0.0])
    res = drro_rewards(r, lp, delta)
    assert res.index.tolist() == [2, 0]  # genuine ties (equal log-probs too): lowest index
    np.testing.assert_array_equal(res.rewards[0], [0.25, 0.25, 40.25])
    from solvers.shaping import _shape_numpy

    assert _shape_numpy(r, lp, delta, None, False)[2].tolist() == [2, 0]
    # DRO picks argmax pi_tilde on the log-probs themselves (no rounding of pi_tilde)
    lp2 = np.array([[-1e-300, 0.0, -60.0], [-1.0, -1.0, -2.0]])
    assert dro_rewards(r, lp2, 1.0).index.tolist() == [1, 0]
    assert _shape_numpy(r, lp2, np.ones(2), None, True)[2].tolist() == [1, 0]
