"""Tests for ``solvers.rebel``: the REBEL loss, DRO-REBEL weights and Wasserstein penalty, and the
exact linear (DRO-)REBEL step, against slow references (explicit formulas, cvxpy, lstsq, finite
differences) and hypothesis properties."""

from __future__ import annotations

import itertools
import warnings

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from solvers import (
    RebelStepResult,
    chi2_worst_case,
    dro_rebel_weights,
    kl_worst_case,
    rebel_loss,
    rebel_step_linear,
    wasserstein_penalty,
)
from solvers._status import ITERATION_LIMIT

finite_losses = hnp.arrays(
    np.float64, st.integers(1, 12), elements=st.floats(0.0, 50.0, allow_nan=False, allow_infinity=False)
)


def _instance(rng, n, d, noise=1.0):
    fa = rng.normal(size=(n, d))
    fb = rng.normal(size=(n, d))
    theta_star = rng.normal(size=d)
    ra = fa @ theta_star + noise * rng.normal(size=n)
    rb = fb @ theta_star + noise * rng.normal(size=n)
    return fa, fb, ra, rb


# --------------------------------------------------------------------------------------------
# rebel_loss
# --------------------------------------------------------------------------------------------


def test_rebel_loss_matches_the_formula_pair_by_pair():
    """DRO-REBEL summary, l_REBEL(z; theta) = (1/eta [lr_a - lr_b] - [r_a - r_b])^2, pair by pair."""
    rng = np.random.default_rng(0)
    la, lb, ra, rb = rng.normal(size=(4, 17))
    for eta in (0.01, 0.3, 5.0):
        out = rebel_loss(la, lb, ra, rb, eta)
        ref = [((la[i] - lb[i]) / eta - (ra[i] - rb[i])) ** 2 for i in range(17)]
        np.testing.assert_allclose(out.losses, ref, rtol=1e-14)
        assert out.mean == pytest.approx(np.mean(ref), rel=1e-14)
        np.testing.assert_allclose(out.residuals**2, out.losses, rtol=1e-14)


def test_rebel_loss_of_a_log_linear_policy_is_the_linear_regression_loss():
    """With pi_theta(y|x) ~ exp(theta.phi(x,y)) over K responses, log-ratios against pi_t (REBEL's
    rollout policy) have their partition functions cancel: loss = ((theta - theta_t).dphi/eta - dr)^2."""
    rng = np.random.default_rng(1)
    n, k, d, eta = 9, 6, 4, 0.7
    phi = rng.normal(size=(n, k, d))
    theta_t, theta = rng.normal(size=d), rng.normal(size=d)

    def logp(th):
        s = phi @ th
        return s - np.log(np.exp(s - s.max(1, keepdims=True)).sum(1, keepdims=True)) - s.max(1, keepdims=True)

    lr = logp(theta) - logp(theta_t)
    ia, ib = rng.integers(0, k, n), rng.integers(0, k, n)
    rows = np.arange(n)
    r = rng.normal(size=(n, k))
    out = rebel_loss(lr[rows, ia], lr[rows, ib], r[rows, ia], r[rows, ib], eta)
    dphi = phi[rows, ia] - phi[rows, ib]
    np.testing.assert_allclose(out.losses, (dphi @ (theta - theta_t) / eta - (r[rows, ia] - r[rows, ib])) ** 2,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "args, match",
    [
        (([0.0, 1.0], [0.0], [0.0, 0.0], [0.0, 0.0], 1.0), "logratio_a and logratio_b must have the same shape"),
        (([0.0], [0.0], [0.0], [0.0, 1.0], 1.0), "reward_b must have the same shape"),
        (([0.0], [0.0], [0.0], [0.0], 0.0), "eta must be > 0"),
        (([0.0], [0.0], [0.0], [0.0], -1.0), "eta must be > 0"),
        (([np.nan], [0.0], [0.0], [0.0], 1.0), "logratio_a must be finite"),
        (([0.0], [0.0], [np.inf], [0.0], 1.0), "reward_a must be finite"),
        (([], [], [], [], 1.0), "logratio_a must have at least 1"),
        (([1e300], [-1e300], [0.0], [0.0], 1e-10), "overflowed"),
    ],
)
def test_rebel_loss_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        rebel_loss(*args)


# --------------------------------------------------------------------------------------------
# dro_rebel_weights
# --------------------------------------------------------------------------------------------


def _cvxpy_weights(losses, kind, radius):
    n = losses.size
    p = np.full(n, 1.0 / n)
    q = cp.Variable(n, nonneg=True)
    if kind == "kl":
        ball = cp.sum(cp.rel_entr(q, p)) <= radius
    else:
        ball = 0.5 * cp.sum(cp.multiply(cp.square(q - p), 1.0 / p)) <= radius
    prob = cp.Problem(cp.Maximize(losses @ q), [cp.sum(q) == 1, ball])
    prob.solve(solver=cp.CLARABEL)
    return prob.value, np.asarray(q.value)


@pytest.mark.parametrize("kind", ["kl", "chi2"])
def test_weights_match_cvxpy(kind):
    """max_q E_q[l] over the KL / chi-square ball (DRO-REBEL's inner problem) solved by cvxpy."""
    rng = np.random.default_rng(2)
    for trial in range(30):
        n = int(rng.integers(2, 40))
        losses = rng.exponential(size=n) * rng.choice([0.1, 1.0, 10.0])
        radius = float(rng.choice([0.01, 0.1, 0.5, 2.0]))
        res = dro_rebel_weights(losses, kind, radius, full_output=True)
        ref_value, ref_q = _cvxpy_weights(losses, kind, radius)
        assert res.success
        assert res.value == pytest.approx(ref_value, rel=1e-6, abs=1e-7), trial
        assert res.weights @ losses == pytest.approx(res.value, rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(res.weights, ref_q, atol=1e-4)  # unique maximiser; cvxpy is the less accurate one


@pytest.mark.parametrize("kind", ["kl", "chi2"])
def test_weights_reuse_the_exact_duals(kind):
    """No second implementation: the weights are those of solvers.kl_worst_case / chi2_worst_case."""
    rng = np.random.default_rng(3)
    losses = rng.exponential(size=25)
    dual = (kl_worst_case if kind == "kl" else chi2_worst_case)(losses, rho=0.2)
    np.testing.assert_array_equal(dro_rebel_weights(losses, kind, 0.2), dual.weights)


@settings(max_examples=60)
@given(losses=finite_losses, kind=st.sampled_from(["kl", "chi2"]), radius=st.floats(0.0, 5.0))
def test_weights_lie_on_the_simplex_inside_the_ball(losses, kind, radius):
    """q >= 0, sum q = 1, and D(q || uniform) <= radius (KL, or 1/2 chi-square)."""
    q = dro_rebel_weights(losses, kind, radius)
    n = losses.size
    assert np.all(q >= 0.0)
    assert q.sum() == pytest.approx(1.0, abs=1e-12)
    if kind == "kl":
        pos = q > 0
        div = float(np.sum(q[pos] * np.log(q[pos] * n)))
    else:
        div = 0.5 * float(np.sum((q * n - 1.0) ** 2) / n)
    assert div <= radius + 1e-9 * max(radius, 1e-3)


@settings(max_examples=40)
@given(losses=finite_losses, kind=st.sampled_from(["kl", "chi2"]))
def test_radius_zero_gives_uniform_weights(losses, kind):
    """Radius 0: the ball is {uniform}, so DRO-REBEL reduces to plain REBEL's mean."""
    np.testing.assert_allclose(dro_rebel_weights(losses, kind, 0.0), np.full(losses.size, 1.0 / losses.size),
                               rtol=1e-12)


@settings(max_examples=40)
@given(losses=finite_losses, kind=st.sampled_from(["kl", "chi2"]),
       radii=st.lists(st.floats(0.0, 5.0), min_size=2, max_size=6))
def test_weights_are_monotone_in_the_radius(losses, kind, radii):
    """Nested balls: the worst-case value E_q[l] is non-decreasing in the radius, and so is the mass on
    the largest loss (KL: q_max / q_i = exp((l_max - l_i)/tau*), tau* decreasing; chi-square:
    (l_max - eta*)/(l_i - eta*), eta* increasing)."""
    radii = sorted(radii)
    values, top_mass = [], []
    top = losses == losses.max()
    for r in radii:
        res = dro_rebel_weights(losses, kind, r, full_output=True)
        values.append(res.value)
        top_mass.append(res.weights[top].sum())
    scale = 1e-9 * max(1.0, float(np.abs(losses).max()))
    assert all(b >= a - scale for a, b in itertools.pairwise(values))
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(top_mass))


def test_chi2_weights_depend_on_small_radii():
    """The trap: without the "1 +" of the chi-square dual the weights ignore rho < 1/2. Ours do not."""
    losses = np.linspace(0.0, 1.0, 20)
    w1 = dro_rebel_weights(losses, "chi2", 0.01)
    w2 = dro_rebel_weights(losses, "chi2", 0.2)
    assert np.abs(w1 - w2).max() > 1e-2


@pytest.mark.parametrize("kind", ["kl", "chi2"])
def test_envelope_theorem_weights_are_constants_in_the_gradient(kind):
    """Danskin: d/dw max_q sum q_i l_i(w) = sum q*_i grad l_i(w) with q* held fixed. Checked by central
    finite differences of the robust value on the linear REBEL loss l_i(w) = (a_i.w - b_i)^2."""
    rng = np.random.default_rng(4)
    A = rng.normal(size=(30, 3))
    b = rng.normal(size=30)
    w = rng.normal(size=3)

    def value(v):
        r = A @ v - b
        return dro_rebel_weights(r * r, kind, 0.3, full_output=True).value

    r = A @ w - b
    q = dro_rebel_weights(r * r, kind, 0.3)
    detached = 2.0 * A.T @ (q * r)
    h = 1e-6
    fd = np.array([(value(w + h * e) - value(w - h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(fd, detached, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "args, exc, match",
    [
        (([1.0, np.nan], "kl", 0.1), ValueError, "losses must be finite"),
        (([1.0, np.inf], "chi2", 0.1), ValueError, "losses must be finite"),
        (([], "kl", 0.1), ValueError, "losses must have at least 1"),
        (([[1.0]], "kl", 0.1), ValueError, "losses must be 1-D"),
        (([1.0, 2.0], "kl", -0.1), ValueError, "radius must be >= 0"),
        (([1.0, 2.0], "kl", np.inf), ValueError, "radius must be finite"),
        (([1.0, 2.0], "wasserstein", 0.1), ValueError, "kind must be one of"),
        (([1.0, 2.0], 3, 0.1), TypeError, "kind must be one of"),
        (([1.0, 2.0], "kl", "0.1"), TypeError, "radius must be a real number"),
    ],
)
def test_weights_reject_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        dro_rebel_weights(*args)


# --------------------------------------------------------------------------------------------
# wasserstein_penalty
# --------------------------------------------------------------------------------------------


def test_penalty_closed_forms():
    """radius (E g^q)^(1/q): p=1 -> q=inf (max), p=2 -> RMS, p=inf -> q=1 (mean), p=3 -> q=3/2."""
    g = np.array([0.5, 2.0, 1.0, 3.0])
    assert wasserstein_penalty(g, 0.2, 1.0).value == pytest.approx(0.2 * 3.0)
    assert wasserstein_penalty(g, 0.2, 2.0).value == pytest.approx(0.2 * np.sqrt(np.mean(g**2)))
    assert wasserstein_penalty(g, 0.2, np.inf).value == pytest.approx(0.2 * np.mean(g))
    assert wasserstein_penalty(g, 0.2, 3.0).value == pytest.approx(0.2 * np.mean(g**1.5) ** (1 / 1.5))
    assert wasserstein_penalty(g, 0.2, 3.0).q == pytest.approx(1.5)
    assert wasserstein_penalty(g, 0.0, 2.0).value == 0.0
    assert wasserstein_penalty(np.zeros(3), 1.0, 2.0).value == 0.0
    np.testing.assert_array_equal(wasserstein_penalty(np.zeros(3), 1.0, 2.0).grad, 0.0)


@settings(max_examples=40)
@given(g=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0.1, 10.0)),
       p=st.sampled_from([1.0, 1.25, 1.5, 2.0, 3.0, 8.0, np.inf]), radius=st.floats(0.0, 3.0))
def test_penalty_gradient_matches_finite_differences(g, p, radius):
    """d/dg_i radius (mean g^q)^(1/q) = radius/n (g_i/M)^(q-1) (q = inf: radius on the unique max),
    checked by central differences."""
    if p == 1.0 and np.sum(g >= g.max() - 1e-4) > 1:
        return  # the max is not differentiable at ties
    out = wasserstein_penalty(g, radius, p)
    h = 1e-6
    for i in range(g.size):
        e = np.zeros(g.size)
        e[i] = h
        fd = (wasserstein_penalty(g + e, radius, p).value - wasserstein_penalty(g - e, radius, p).value) / (2 * h)
        assert out.grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-7)


@settings(max_examples=40)
@given(g=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 10.0)),
       p=st.sampled_from([1.0, 1.5, 2.0, 4.0, np.inf]), r1=st.floats(0.0, 3.0), r2=st.floats(0.0, 3.0))
def test_penalty_is_monotone_in_radius_and_order(g, p, r1, r2):
    """Linear in the radius; the power mean M_q grows with q, so the penalty decreases with p."""
    lo, hi = sorted((r1, r2))
    assert wasserstein_penalty(g, lo, p).value <= wasserstein_penalty(g, hi, p).value + 1e-12
    assert wasserstein_penalty(g, 1.0, 1.5).value >= wasserstein_penalty(g, 1.0, 3.0).value - 1e-12


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0, -1.0], 0.1, 2.0), "grad_norms must be non-negative"),
        (([1.0, np.nan], 0.1, 2.0), "grad_norms must be finite"),
        (([], 0.1, 2.0), "grad_norms must have at least 1"),
        (([1.0], -0.1, 2.0), "radius must be >= 0"),
        (([1.0], 0.1, 0.5), "p must be >= 1"),
        (([1.0], 0.1, np.nan), "p must be finite"),
    ],
)
def test_penalty_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        wasserstein_penalty(*args)


# --------------------------------------------------------------------------------------------
# rebel_step_linear
# --------------------------------------------------------------------------------------------


def test_plain_step_matches_lstsq():
    """theta + eta argmin_w ||(f_a - f_b) w - (r_a - r_b)||^2 with numpy.linalg.lstsq (min-norm)."""
    rng = np.random.default_rng(5)
    for n, d in [(50, 3), (200, 8), (5, 8), (1, 1)]:
        fa, fb, ra, rb = _instance(rng, n, d)
        theta = rng.normal(size=d)
        for eta in (0.1, 1.0, 3.0):
            got = rebel_step_linear(theta, fa, fb, ra, rb, eta, full_output=True)
            ref = theta + eta * np.linalg.lstsq(fa - fb, ra - rb, rcond=None)[0]
            np.testing.assert_allclose(got.theta, ref, rtol=1e-9, atol=1e-9)
            assert got.success and got.gap >= 0
            mean = rebel_loss((fa - fb) @ (got.theta - theta), np.zeros(n), ra, rb, eta).mean
            assert got.objective == pytest.approx(mean, rel=1e-10, abs=1e-14)


def test_plain_step_minimises_the_rebel_loss_at_theta_new():
    """The plain step is the minimiser of the REBEL loss (log-ratios against pi_t = pi_theta)."""
    rng = np.random.default_rng(6)
    fa, fb, ra, rb = _instance(rng, 60, 4)
    theta, eta = rng.normal(size=4), 0.5
    new = rebel_step_linear(theta, fa, fb, ra, rb, eta)

    def loss(th):
        return rebel_loss(fa @ (th - theta), fb @ (th - theta), ra, rb, eta).mean

    base = loss(new)
    for _ in range(20):
        assert loss(new + 1e-3 * rng.normal(size=4)) >= base


def _cvxpy_step(A, b, kind, radius):
    """Slow reference: the robust problems as convex programs (Clarabel)."""
    n, d = A.shape
    w = cp.Variable(d)
    if kind == "wasserstein":
        prob = cp.Problem(cp.Minimize(cp.norm(A @ w - b) / np.sqrt(n) + radius * cp.norm(w)))
        prob.solve(solver=cp.CLARABEL)
        return prob.value**2, np.asarray(w.value)
    s = cp.Variable(n)
    cons = [s >= cp.square(A @ w - b)]
    if kind == "kl":  # min tau rho + tau log E exp(l / tau) via exponential cones
        tau, t, u = cp.Variable(nonneg=True), cp.Variable(), cp.Variable(n)
        cons += [cp.constraints.ExpCone(s - t, tau * np.ones(n), u), cp.sum(u) / n <= tau]
        obj = tau * radius + t
    else:  # min eta + sqrt(1 + 2 rho) sqrt(E (l - eta)_+^2)
        eta = cp.Variable()
        obj = eta + np.sqrt(1 + 2 * radius) * cp.norm(cp.pos(s - eta)) / np.sqrt(n)
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.CLARABEL)
    return prob.value, np.asarray(w.value)


@pytest.mark.parametrize("kind", ["kl", "chi2", "wasserstein"])
def test_robust_step_matches_cvxpy(kind):
    """The robust step's objective and minimiser agree with the convex program solved by cvxpy."""
    rng = np.random.default_rng(7)
    for trial in range(12):
        n, d = int(rng.integers(8, 80)), int(rng.integers(1, 6))
        fa, fb, ra, rb = _instance(rng, n, d, noise=float(rng.choice([0.1, 1.0])))
        radius = float(rng.choice([0.01, 0.1, 0.4] if kind == "wasserstein" else [0.02, 0.2, 1.0]))
        theta = rng.normal(size=d)
        got = rebel_step_linear(theta, fa, fb, ra, rb, 0.5, robust=(kind, radius), full_output=True)
        ref_obj, ref_w = _cvxpy_step(fa - fb, ra - rb, kind, radius)
        assert got.success, (trial, got.message)
        assert got.objective == pytest.approx(ref_obj, rel=1e-5, abs=1e-7), trial
        np.testing.assert_allclose(got.direction, ref_w, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(got.theta, theta + 0.5 * got.direction, rtol=1e-14, atol=1e-14)
        assert got.lower_bound <= ref_obj * (1 + 1e-6) + 1e-9  # a true lower bound
        assert 0.0 <= got.gap <= 1e-10 * max(got.objective, np.mean((ra - rb) ** 2))


@pytest.mark.parametrize("kind", ["kl", "chi2"])
def test_reweighted_step_is_a_saddle_point(kind):
    """At w*: q* = worst-case weights of l(w*) and w* = weighted least squares under q*."""
    rng = np.random.default_rng(8)
    fa, fb, ra, rb = _instance(rng, 120, 5)
    res = rebel_step_linear(np.zeros(5), fa, fb, ra, rb, 1.0, robust=(kind, 0.3), full_output=True)
    A, b = fa - fb, ra - rb
    r = A @ res.direction - b
    q = dro_rebel_weights(r * r, kind, 0.3)
    np.testing.assert_allclose(res.weights, q, atol=1e-10)
    sq = np.sqrt(q)
    w_q = np.linalg.lstsq(sq[:, None] * A, sq * b, rcond=None)[0]
    # the certified gap is exactly the weighted-least-squares excess (w_q - w*)' A'QA (w_q - w*)
    dw = w_q - res.direction
    excess = float(dw @ (A.T * q) @ A @ dw)
    assert excess == pytest.approx(res.gap, rel=1e-3, abs=1e-13)
    assert res.gap <= 1e-10 * res.objective
    grad = 2 * A.T @ (q * r)
    assert np.linalg.norm(grad) <= 1e-4 * np.linalg.norm(2 * A.T @ (q * b))


def test_wasserstein_objective_is_the_exact_worst_case_and_expands_into_the_penalty():
    """(sqrt(L) + rho ||w||)^2 is attained by moving a_i by rho |res_i|/sqrt(L) along sign(res_i) w/||w||
    (mean squared transport cost rho^2), and equals L + wasserstein_penalty(2|res| ||w||, rho, 2) +
    rho^2 ||w||^2 (DRO-REBEL's first-order gradient regularisation plus the second-order term)."""
    rng = np.random.default_rng(9)
    fa, fb, ra, rb = _instance(rng, 40, 3)
    A, b = fa - fb, ra - rb
    rho = 0.15
    res = rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=("wasserstein", rho), full_output=True)
    w = res.direction
    r = A @ w - b
    loss = float(np.mean(r**2))
    wn = float(np.linalg.norm(w))
    shift = (rho * np.abs(r) / np.sqrt(loss))[:, None] * np.sign(r)[:, None] * (w / wn)[None, :]
    assert np.mean(np.sum(shift**2, axis=1)) == pytest.approx(rho**2, rel=1e-12)
    attained = float(np.mean(((A + shift) @ w - b) ** 2))
    assert attained == pytest.approx(res.objective, rel=1e-9)
    penalty = wasserstein_penalty(2 * np.abs(r) * wn, rho, 2.0).value
    assert loss + penalty + rho**2 * wn**2 == pytest.approx(res.objective, rel=1e-12)
    # no feasible transport does better: random shifts of the same cost give at most the bound
    for _ in range(50):
        z = rng.normal(size=A.shape)
        z *= rho / np.sqrt(np.mean(np.sum(z**2, axis=1)))
        assert np.mean(((A + z) @ w - b) ** 2) <= res.objective * (1 + 1e-12)


def test_wasserstein_zero_and_interpolation_regimes_are_certified():
    rng = np.random.default_rng(10)
    fa, fb, ra, rb = _instance(rng, 30, 3)
    big = rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=("wasserstein", 50.0), full_output=True)
    assert big.success and np.all(big.direction == 0.0)
    fa, fb, ra, rb = _instance(rng, 4, 10)  # n < d: least squares interpolates
    small = rebel_step_linear(np.zeros(10), fa, fb, ra, rb, 1.0, robust=("wasserstein", 1e-3), full_output=True)
    ref_obj, _ = _cvxpy_step(fa - fb, ra - rb, "wasserstein", 1e-3)
    assert small.success and small.objective == pytest.approx(ref_obj, rel=1e-5)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["kl", "chi2", "wasserstein"]))
def test_radius_zero_is_plain_rebel(seed, kind):
    """robust=(kind, 0) returns exactly the plain REBEL step."""
    rng = np.random.default_rng(seed)
    fa, fb, ra, rb = _instance(rng, int(rng.integers(2, 30)), int(rng.integers(1, 5)))
    theta = rng.normal(size=fa.shape[1])
    np.testing.assert_array_equal(rebel_step_linear(theta, fa, fb, ra, rb, 0.3, robust=(kind, 0.0)),
                                  rebel_step_linear(theta, fa, fb, ra, rb, 0.3))


@settings(max_examples=20)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["kl", "chi2", "wasserstein"]),
       radii=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4))
def test_robust_optimum_is_monotone_in_radius(seed, kind, radii):
    """Nested ambiguity sets: min_w sup_{Q in ball(r)} E_Q[l] is non-decreasing in r, and at least the
    plain REBEL optimum."""
    rng = np.random.default_rng(seed)
    fa, fb, ra, rb = _instance(rng, int(rng.integers(10, 40)), int(rng.integers(1, 4)))
    plain = rebel_step_linear(np.zeros(fa.shape[1]), fa, fb, ra, rb, 1.0, full_output=True).objective
    values = []
    for r in sorted(radii):
        res = rebel_step_linear(np.zeros(fa.shape[1]), fa, fb, ra, rb, 1.0, robust=(kind, r), full_output=True)
        assert res.success, res.message
        values.append(res.objective)
    tol = 1e-8 * max(values[-1], 1.0)
    assert values[0] >= plain - tol
    assert all(b >= a - tol for a, b in itertools.pairwise(values))


def test_iteration_limit_is_reported_and_warned():
    rng = np.random.default_rng(11)
    fa, fb, ra, rb = _instance(rng, 50, 3)
    res = rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=("kl", 0.5), max_iter=0, full_output=True)
    assert not res.success and res.status == ITERATION_LIMIT and res.gap > 0
    with pytest.warns(RuntimeWarning, match="iteration limit"):
        rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=("kl", 0.5), max_iter=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=("kl", 0.5))


@pytest.mark.parametrize("kind", ["kl", "chi2"])
def test_degenerate_regime_is_reported_with_valid_bounds(kind):
    """n close to d, heavy-tailed noise, radius 1: the robust optimum can tie the losses (non-smooth R).
    Whatever the outcome, lower_bound <= optimum (cvxpy) <= objective, and an uncertified result says
    so (status, RuntimeWarning)."""
    rng = np.random.default_rng(13)
    for _ in range(6):
        A = rng.normal(size=(20, 16))
        b = A @ rng.normal(size=16) + 0.3 * rng.standard_t(3, size=20)
        res = rebel_step_linear(np.zeros(16), A, np.zeros((20, 16)), b, np.zeros(20), 1.0,
                                robust=(kind, 1.0), full_output=True)
        ref, _ = _cvxpy_step(A, b, kind, 1.0)
        assert res.lower_bound <= ref * (1 + 1e-6) + 1e-9
        assert res.objective >= ref * (1 - 1e-6) - 1e-9
        if not res.success:
            assert res.status == ITERATION_LIMIT and res.gap > 1e-10 * res.objective
            with pytest.warns(RuntimeWarning, match="gap"):
                rebel_step_linear(np.zeros(16), A, np.zeros((20, 16)), b, np.zeros(20), 1.0, robust=(kind, 1.0))
        else:
            assert res.objective == pytest.approx(ref, rel=1e-5)


def test_result_type_and_fields():
    rng = np.random.default_rng(12)
    fa, fb, ra, rb = _instance(rng, 20, 2)
    res = rebel_step_linear([0.0, 0.0], fa, fb, ra, rb, 1.0, robust=["chi2", 0.1], full_output=True)
    assert isinstance(res, RebelStepResult)
    assert res.robust == ("chi2", 0.1) and res.weights.shape == (20,) and res.weights.sum() == pytest.approx(1.0)


_GOOD = (np.zeros(2), np.ones((3, 2)), np.zeros((3, 2)), np.ones(3), np.zeros(3), 1.0)


@pytest.mark.parametrize(
    "change, kwargs, exc, match",
    [
        ({5: 0.0}, {}, ValueError, "eta must be > 0"),
        ({5: -1.0}, {}, ValueError, "eta must be > 0"),
        ({1: np.ones((3, 3))}, {}, ValueError, "features_a and features_b must have the same shape"),
        ({1: np.ones((3, 3)), 2: np.zeros((3, 3))}, {}, ValueError, r"features_a must have shape \(n, 2\)"),
        ({3: np.ones(4), 4: np.zeros(4)}, {}, ValueError, r"rewards_a must have shape \(3,\)"),
        ({4: np.zeros(2)}, {}, ValueError, "rewards_a and rewards_b must have the same shape"),
        ({3: np.array([1.0, np.nan, 1.0])}, {}, ValueError, "rewards_a must be finite"),
        ({1: np.full((3, 2), np.inf)}, {}, ValueError, "features_a must be finite"),
        ({0: np.zeros((2, 1))}, {}, ValueError, "theta must be 1-D"),
        ({}, {"robust": ("kl", -0.1)}, ValueError, "radius must be >= 0"),
        ({}, {"robust": ("tv", 0.1)}, ValueError, "kind must be one of"),
        ({}, {"robust": ("wasserstein", 0.1, 1.0)}, ValueError, "p = 2 only"),
        ({}, {"robust": ("kl", 0.1, 2.0)}, ValueError, "only accepted for 'wasserstein'"),
        ({}, {"robust": ("kl",)}, ValueError, "2 or 3 entries"),
        ({}, {"robust": "kl"}, TypeError, "robust must be None or a tuple"),
        ({}, {"robust": 0.1}, TypeError, "robust must be None or a tuple"),
    ],
)
def test_step_rejects_bad_input(change, kwargs, exc, match):
    args = list(_GOOD)
    for i, v in change.items():
        args[i] = v
    with pytest.raises(exc, match=match):
        rebel_step_linear(*args, **kwargs)


@pytest.mark.parametrize("robust", [None, ("kl", 0.1), ("chi2", 0.2), ("wasserstein", 0.1)])
def test_step_with_huge_reward_differences_is_the_rescaled_step(robust):
    """Scale equivariance of the (robust) least-squares step: rewards times c give direction times
    c, objective times c^2 and the same weights (the KL/chi-square argmax over a ball that does not
    depend on the losses is invariant to scaling them). Reward differences near 1e154 and above
    used to overflow the squared losses inside the solve (extreme inputs)."""
    rng = np.random.default_rng(3)
    fa, fb = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    ra, rb = rng.normal(size=8), rng.normal(size=8)
    ref = rebel_step_linear(np.zeros(3), fa, fb, ra, rb, 1.0, robust=robust, full_output=True)
    c = 1e140  # rescaled internally (above 1e100); c^2 still fits in float64
    big = rebel_step_linear(np.zeros(3), fa, fb, ra * c, rb * c, 1.0, robust=robust, full_output=True)
    assert big.success and ref.success
    np.testing.assert_allclose(big.direction / c, ref.direction, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(big.weights, ref.weights, rtol=1e-6, atol=1e-12)
    assert np.isclose(big.objective / c / c, ref.objective, rtol=1e-6)
    huge = rebel_step_linear(np.zeros(3), fa, fb, ra * 1e307, rb * 1e307, 1.0, robust=robust, full_output=True)
    assert not huge.success and "overflow" in huge.message  # objective ~ 1e614: reported, not inf + success


def test_wasserstein_penalty_overflow_is_an_error():
    with pytest.raises(ValueError, match="radius"):
        wasserstein_penalty([1e300, 1e300], 1e300, 2.0)
