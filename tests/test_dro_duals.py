"""Tests for the DRO duals (``solvers.dro_duals``): entropic, KL and chi-square worst cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from solvers import DROResult, chi2_worst_case, entropic_worst_case, kl_worst_case
from solvers._status import OVERFLOW
from solvers.dro_duals import (
    _chi2_batch,
    _chi2_batch_sorted,
    _chi2_reference,
    _kl_reference,
    _kl_tilt,
    _normalise_rows,
)

finite_losses = hnp.arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False),
)


# --------------------------------------------------------------------------------------------
# entropic_worst_case
# --------------------------------------------------------------------------------------------


def _entropic_reference(losses, eta):
    """Slow reference: brute log(sum exp) in extended precision via Python floats' math.fsum."""
    import math

    m = max(losses)
    terms = [math.exp(eta * (x - m)) for x in losses]
    total = math.fsum(terms)
    return m + math.log(total) / eta, np.array(terms) / total


@settings(max_examples=40)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e3))
def test_entropic_matches_reference_and_cor_f2(losses, eta):
    """GDRO eq. (15)-(16) value/weights and Cor. F.2 (eq. 28): max l <= value <= max l + log(B)/eta."""
    res = entropic_worst_case(losses, eta)
    ref_value, ref_w = _entropic_reference(list(losses), eta)
    assert res.success and res.status == 0
    assert res.value == pytest.approx(ref_value, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(res.weights, ref_w, rtol=1e-10, atol=1e-300)
    top = losses.max()
    assert top - 1e-12 * abs(top) <= res.value <= top + np.log(losses.size) / eta + 1e-9
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert res.dual == pytest.approx(1.0 / eta)


@settings(max_examples=30)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e2))
def test_entropic_is_the_regularised_max(losses, eta):
    """GDRO eq. (14) / Lemma F.1: value = <q, l> + H(q)/eta at the softmax q, and no random q beats it."""
    res = entropic_worst_case(losses, eta)
    q = res.weights
    nz = q > 0
    ent = -np.sum(q[nz] * np.log(q[nz]))
    assert res.value == pytest.approx(q @ losses + ent / eta, rel=1e-9, abs=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = rng.dirichlet(np.ones(losses.size))
        rz = r > 0
        assert r @ losses - np.sum(r[rz] * np.log(r[rz])) / eta <= res.value + 1e-9


@settings(max_examples=30)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e2), factor=st.floats(1.01, 10.0))
def test_entropic_monotone_in_eta(losses, eta, factor):
    """Cor. F.2 consequence: eta -> (1/eta) log sum exp(eta l) is non-increasing (log-sum-exp of a sum)."""
    a = entropic_worst_case(losses, eta).value
    b = entropic_worst_case(losses, eta * factor).value
    assert b <= a + 1e-9 * max(1.0, abs(a))


def test_entropic_huge_losses_equal_losses_and_single_sample():
    res = entropic_worst_case([1e6, 1e6 - 1.0, -1e6], eta=1e6)
    assert res.success and res.value == pytest.approx(1e6, rel=1e-15)
    np.testing.assert_allclose(res.weights, [1.0, 0.0, 0.0])
    res = entropic_worst_case(np.full(7, 3.5), eta=2.0)
    np.testing.assert_allclose(res.weights, np.full(7, 1 / 7))
    assert res.value == pytest.approx(3.5 + np.log(7) / 2.0)
    res = entropic_worst_case([4.0], eta=0.3)
    assert res.value == 4.0 and res.weights.tolist() == [1.0]
    assert isinstance(res, DROResult) and isinstance(res.value, float)


def test_entropic_batched_rows_match_1d():
    rng = np.random.default_rng(1)
    losses = rng.normal(size=(5, 9))
    res = entropic_worst_case(losses, 3.0)
    assert res.weights.shape == (5, 9) and res.value.shape == (5,)
    for i in range(5):
        row = entropic_worst_case(losses[i], 3.0)
        assert res.value[i] == pytest.approx(row.value, rel=1e-14)
        np.testing.assert_allclose(res.weights[i], row.weights, rtol=1e-14)


@pytest.mark.parametrize(
    "losses, eta, exc, match",
    [
        ([1.0, np.nan], 1.0, ValueError, r"losses must be finite, got nan at index 1"),
        ([], 1.0, ValueError, r"losses must have at least 1 element"),
        ([[1.0]], 0.0, ValueError, r"eta must be > 0.0, got 0.0"),
        ([1.0], np.inf, ValueError, r"eta must be finite"),
        ([1.0], np.nan, ValueError, r"eta must be finite"),
        ("abc", 1.0, TypeError, r"losses must be an array of real numbers"),
        (np.zeros((2, 2, 2)), 1.0, ValueError, r"losses must be 1-D or 2-D"),
    ],
)
def test_entropic_validation(losses, eta, exc, match):
    with pytest.raises(exc, match=match):
        entropic_worst_case(losses, eta)


# --------------------------------------------------------------------------------------------
# shared helpers for the KL and chi-square balls
# --------------------------------------------------------------------------------------------


def _instance(seed):
    """A random instance (losses, p, rho) with full-support p; radii span interior and edge cases."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 13))
    losses = rng.normal(size=n) * rng.choice([0.1, 1.0, 10.0])
    if seed % 5 == 0:
        losses[rng.integers(n)] = losses.max()  # a tied argmax set
    p = rng.dirichlet(np.full(n, rng.choice([0.5, 1.0, 5.0])))
    p = np.maximum(p, 1e-3)
    p /= p.sum()
    rho = float(rng.choice([1e-4, 1e-2, 0.05, 0.2, 0.6, 1.5, 4.0]))
    return losses, p, rho


def _kl(q, p):
    nz = q > 0
    return float(np.sum(q[nz] * np.log(q[nz] / p[nz])))


def _chi2(q, p):
    return 0.5 * float(np.sum((q - p) ** 2 / p))


def _cvxpy_kl(losses, p, rho):
    cp = pytest.importorskip("cvxpy")
    q = cp.Variable(losses.size, nonneg=True)
    prob = cp.Problem(cp.Maximize(q @ losses), [cp.sum(q) == 1, cp.sum(cp.rel_entr(q, p)) <= rho])
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8)
    assert prob.status == "optimal", prob.status
    return prob.value, q.value


def _cvxpy_chi2(losses, p, rho):
    cp = pytest.importorskip("cvxpy")
    q = cp.Variable(losses.size, nonneg=True)
    div = 0.5 * cp.sum(cp.multiply(cp.square(q - p), 1.0 / p))
    prob = cp.Problem(cp.Maximize(q @ losses), [cp.sum(q) == 1, div <= rho])
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8)
    assert prob.status == "optimal", prob.status
    return prob.value, q.value


balls = pytest.mark.parametrize(
    "solve, div, name", [(kl_worst_case, _kl, "kl"), (chi2_worst_case, _chi2, "chi2")]
)

ball_instance = st.tuples(
    hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-20.0, 20.0)),
    st.floats(0.0, 5.0),  # includes subnormal radii
    st.integers(0, 2**32 - 1),
)
# the SciPy references minimise the dual on a bounded interval: keep them away from rho ~ 1e-300
reference_instance = st.tuples(
    hnp.arrays(np.float64, st.integers(1, 10), elements=st.floats(-20.0, 20.0)),
    st.one_of(st.just(0.0), st.floats(1e-6, 5.0)),
    st.integers(0, 2**32 - 1),
)


def _p_for(losses, seed):
    p = np.random.default_rng(seed).dirichlet(np.ones(losses.size)) + 0.01
    return p / p.sum()


# --------------------------------------------------------------------------------------------
# cvxpy primal references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_kl_matches_cvxpy_primal(seed):
    """max q @ l s.t. sum rel_entr(q, p) <= rho, q on the simplex (CLARABEL) vs the tilted dual."""
    losses, p, rho = _instance(seed)
    res = kl_worst_case(losses, p, rho)
    ref_value, ref_q = _cvxpy_kl(losses, p, rho)
    assert res.success, res.message
    assert res.value == pytest.approx(ref_value, rel=1e-5, abs=1e-6 * np.ptp(losses) + 1e-9)
    # the maximiser is unique (linear objective, strictly convex ball) except when the point mass
    # on a tied argmax set is inside the ball: then any split of the set's mass... is optimal
    tied = np.sum(losses == losses.max()) > 1 and rho >= -np.log(p[losses == losses.max()].sum())
    if not tied:
        np.testing.assert_allclose(res.weights, ref_q, atol=2e-4)


@pytest.mark.parametrize("seed", range(30))
def test_chi2_matches_cvxpy_primal(seed):
    """max q @ l s.t. 0.5 * sum (q - p)^2 / p <= rho, q on the simplex (CLARABEL) vs the exact dual."""
    losses, p, rho = _instance(seed)
    res = chi2_worst_case(losses, p, rho)
    ref_value, ref_q = _cvxpy_chi2(losses, p, rho)
    assert res.success, res.message
    assert res.value == pytest.approx(ref_value, rel=1e-5, abs=1e-6 * np.ptp(losses) + 1e-9)
    top = losses == losses.max()
    tied = top.sum() > 1 and 1 + 2 * rho >= 1 / p[top].sum()
    if not tied:
        np.testing.assert_allclose(res.weights, ref_q, atol=2e-4)


# --------------------------------------------------------------------------------------------
# Numba kernels vs the slow SciPy references (twins)
# --------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(inst=reference_instance)
def test_kl_kernel_matches_scipy_reference(inst):
    """The Numba root-finder agrees with a bounded SciPy minimisation of the KL dual (same problem)."""
    losses, rho, seed = inst
    p = _p_for(losses, seed)
    res = kl_worst_case(losses, p, rho)
    ref_value, ref_q, _ = _kl_reference(losses, p, rho)
    assert res.success, res.message
    scale = 1.0 + np.abs(losses).max()
    assert res.value == pytest.approx(ref_value, abs=1e-7 * scale)
    assert res.value <= ref_value + 1e-9 * scale  # the reference's value is a dual (upper) bound


@settings(max_examples=60)
@given(inst=reference_instance)
def test_chi2_kernel_matches_scipy_reference(inst):
    """The exact segment search agrees with a bounded SciPy minimisation of g(eta) (same problem)."""
    losses, rho, seed = inst
    p = _p_for(losses, seed)
    res = chi2_worst_case(losses, p, rho)
    ref_value, ref_q, _ = _chi2_reference(losses, p, rho)
    assert res.success, res.message
    scale = 1.0 + np.abs(losses).max()
    assert res.value == pytest.approx(ref_value, abs=1e-7 * scale)
    assert res.value <= ref_value + 1e-9 * scale


@settings(max_examples=60)
@given(
    losses=hnp.arrays(np.float64, st.integers(1, 40), elements=st.sampled_from([-2.0, -1.0, 0.0, 0.5, 3.0])
                      | st.floats(-5.0, 5.0)),
    rho=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32 - 1),
    zero_frac=st.sampled_from([0.0, 0.3]),
)
def test_chi2_selection_kernel_matches_sorted_twin(losses, rho, seed, zero_frac):
    """The expected-O(B) quickselect segment search equals the sorted O(B log B) scan (same root of
    h(eta) = 1 + 2 rho), with many ties and zero-probability samples."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(losses.size))
    p[rng.random(losses.size) < zero_frac] = 0.0
    if p.sum() == 0:
        p[0] = 1.0
    p = (p / p.sum())[None, :]
    z2, _, _ = _normalise_rows(losses[None, :], p)
    v1, q1, e1, s1 = _chi2_batch(z2, p, rho)
    v2, q2, e2, s2 = _chi2_batch_sorted(z2, p, rho)
    assert s1[0] == 0 and s2[0] == 0
    assert v1[0] == pytest.approx(v2[0], abs=1e-12)
    np.testing.assert_allclose(q1, q2, atol=1e-12)


@settings(max_examples=40)
@given(inst=reference_instance, log_tau=st.floats(-4.0, 8.0))
def test_kl_evaluations_agree(inst, log_tau):
    """The cancellation-free KL (sum p psi(q/p - 1), used for rho < 1e-4) and the cheap
    E_q[s] - log Z agree with a direct sum q log(q/p) of the same tilted q."""
    losses, _, seed = inst
    p = _p_for(losses, seed)
    z2, _, _ = _normalise_rows(losses[None, :], p[None, :])
    n = losses.size
    q_acc, q_fast = np.empty(n), np.empty(n)
    kl_acc, var_acc = _kl_tilt(z2[0], p, np.exp(log_tau), q_acc, np.empty(n), np.empty(n), True)
    kl_fast, var_fast = _kl_tilt(z2[0], p, np.exp(log_tau), q_fast, np.empty(n), np.empty(n), False)
    np.testing.assert_allclose(q_acc, q_fast, rtol=1e-13, atol=1e-300)
    direct = _kl(q_acc, p)
    assert kl_acc == pytest.approx(direct, rel=1e-9, abs=1e-15)
    assert kl_fast == pytest.approx(direct, rel=1e-9, abs=1e-15)
    assert var_acc == pytest.approx(var_fast, rel=1e-12, abs=1e-300)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------


@balls
@settings(max_examples=40)
@given(inst=ball_instance, factor=st.floats(1.05, 4.0))
def test_ball_weights_feasible_and_value_monotone_in_rho(solve, div, name, inst, factor):
    """DRO-REBEL KL / chi-square balls: q lies on the simplex and in the ball (div(q, p) <= rho),
    value = E_q[l], E_p[l] <= value <= max l, and the value is non-decreasing in rho (nested balls)."""
    losses, rho, seed = inst
    p = _p_for(losses, seed)
    res = solve(losses, p, rho)
    assert res.success, res.message
    q = res.weights
    assert np.all(q >= 0) and q.sum() == pytest.approx(1.0, abs=1e-12)
    assert div(q, p) <= rho + 1e-9 * max(rho, 1e-3)
    scale = 1.0 + np.abs(losses).max()
    assert res.value == pytest.approx(q @ losses, abs=1e-10 * scale)
    assert p @ losses - 1e-10 * scale <= res.value <= losses.max() + 1e-12 * scale
    bigger = solve(losses, p, rho * factor + 1e-6)
    assert bigger.value >= res.value - 1e-10 * scale


@settings(max_examples=40)
@given(inst=ball_instance)
def test_kl_value_within_pinsker_bound(inst):
    """Pinsker: TV(q, p) <= sqrt(KL/2), so E_q[l] - E_p[l] <= (max l - min l) * sqrt(rho / 2)."""
    losses, rho, seed = inst
    p = _p_for(losses, seed)
    res = kl_worst_case(losses, p, rho)
    gap = res.value - p @ losses
    assert gap <= np.ptp(losses) * np.sqrt(rho / 2) + 1e-9 * (1 + np.abs(losses).max())


@settings(max_examples=40)
@given(inst=ball_instance)
def test_chi2_value_within_cauchy_schwarz_bound_and_interior_closed_form(inst):
    """chi-square ball, E_p[(q/p - 1)^2] <= 2 rho: by Cauchy-Schwarz E_q[l] - E_p[l] <= sqrt(2 rho Var_p l),
    with equality exactly when q = p (1 + c (l - E_p l)), c = sqrt(2 rho / Var_p l), is non-negative."""
    losses, rho, seed = inst
    p = _p_for(losses, seed)
    res = chi2_worst_case(losses, p, rho)
    mean = p @ losses
    var = p @ (losses - mean) ** 2
    scale = 1.0 + np.abs(losses).max()
    assert res.value <= mean + np.sqrt(2 * rho * var) + 1e-9 * scale
    if np.ptp(losses) > 0:
        c = np.sqrt(2 * rho / var)
        q_int = p * (1 + c * (losses - mean))
        if np.all(q_int >= 0):
            assert res.value == pytest.approx(mean + np.sqrt(2 * rho * var), abs=1e-9 * scale)
            np.testing.assert_allclose(res.weights, q_int, atol=1e-10)


@balls
@pytest.mark.parametrize("seed", range(5))
def test_ball_limits_rho_to_zero_and_large(solve, div, name, seed):
    """rho = 0 gives q = p and E_p[l]; tiny rho gives E_p[l] + O(sqrt(rho)); large rho gives max l on
    the argmax set (the point mass, p restricted and renormalised)."""
    losses, p, _ = _instance(seed)
    res0 = solve(losses, p, 0.0)
    np.testing.assert_allclose(res0.weights, p, atol=1e-15)
    assert res0.value == pytest.approx(p @ losses, rel=1e-12, abs=1e-12)
    tiny = solve(losses, p, 1e-12)
    assert tiny.success and abs(tiny.value - p @ losses) <= 2e-6 * np.ptp(losses) + 1e-12
    top = losses == losses.max()
    big = solve(losses, p, 1.0 / p[top].sum())  # >= -log p(A) and >= (1/p(A) - 1)/2
    assert big.value == losses.max()
    np.testing.assert_allclose(big.weights, np.where(top, p, 0) / p[top].sum(), atol=1e-15)


def test_kl_point_mass_edge_is_continuous():
    """Edge of the KL solve: at rho = -log p(A) the ball just contains the point mass on the argmax
    set A; slightly below, the tilted solution approaches it (tau* -> 0)."""
    losses = np.array([1.0, 3.0, 3.0, 0.0, 2.0])
    p = np.array([0.3, 0.1, 0.15, 0.25, 0.2])
    edge = -np.log(0.25)
    at = kl_worst_case(losses, p, edge)
    assert at.success and at.value == 3.0 and at.dual == 0.0
    np.testing.assert_allclose(at.weights, [0, 0.4, 0.6, 0, 0])
    below = kl_worst_case(losses, p, edge * (1 - 1e-6))
    assert below.success and 0 < below.dual < 0.2 and below.value == pytest.approx(3.0, abs=1e-3)
    assert _kl(below.weights, p) == pytest.approx(edge * (1 - 1e-6), rel=1e-9)


def test_chi2_point_mass_edge():
    """chi-square point mass: feasible iff 1 + 2 rho >= 1/p(A) (E_p[r^2] = 1/p(A) for r = 1_A/p(A))."""
    losses = np.array([1.0, 3.0, 3.0, 0.0])
    p = np.array([0.3, 0.1, 0.3, 0.3])
    edge = 0.5 * (1 / 0.4 - 1)
    at = chi2_worst_case(losses, p, edge)
    assert at.success and at.value == 3.0
    np.testing.assert_allclose(at.weights, [0, 0.25, 0.75, 0])
    below = chi2_worst_case(losses, p, edge * (1 - 1e-9))
    assert below.success and below.value == pytest.approx(3.0, abs=1e-6) and below.value < 3.0
    assert _chi2(below.weights, p) == pytest.approx(edge * (1 - 1e-9), rel=1e-9)


@pytest.mark.parametrize("solve", [entropic_worst_case, kl_worst_case, chi2_worst_case])
@pytest.mark.parametrize("seed", range(3))
def test_envelope_theorem_weights_are_the_gradient(solve, seed):
    """Envelope (Danskin) theorem: d value / d l_i = q_i, so the weights are used as constants
    (detached) in a gradient step. Checked by central finite differences."""
    losses, p, rho = _instance(seed + 100)
    call = (lambda l: solve(l, 2.0)) if solve is entropic_worst_case else (
        lambda l: solve(l, p, min(rho, 0.3)))
    q = call(losses).weights
    h = 1e-6
    grad = np.empty_like(losses)
    for i in range(losses.size):
        e = np.zeros_like(losses)
        e[i] = h
        grad[i] = (call(losses + e).value - call(losses - e).value) / (2 * h)
    np.testing.assert_allclose(grad, q, atol=1e-5)


def test_weights_detached_in_torch_gradient():
    """With torch: the gradient of (q.detach() * l).sum() is q, equal to the robust value's gradient."""
    torch = pytest.importorskip("torch")
    losses, p, _ = _instance(7)
    res = chi2_worst_case(losses, p, 0.1)
    theta = torch.tensor(losses, requires_grad=True)
    weights = torch.as_tensor(res.weights)  # constants: no graph through the solver
    (weights * theta).sum().backward()
    np.testing.assert_allclose(theta.grad.numpy(), res.weights)


# --------------------------------------------------------------------------------------------
# the chi-square trap (docs/architecture.md, "Known traps")
# --------------------------------------------------------------------------------------------


def _chi2_weights_without_one_plus(losses, p, rho):
    """What a public DRO-REBEL implementation does: bisection on the derivative of
    eta + sqrt(2 rho) sqrt(E_p[(l - eta)_+^2]) (the "1 +" dropped) over a fixed bracket."""
    lo, hi = losses.min() - 10 * (np.ptp(losses) + 1), losses.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        pos = np.maximum(losses - mid, 0.0)
        deriv = 1 - np.sqrt(2 * rho) * (p @ pos) / np.sqrt(p @ pos**2)
        lo, hi = (lo, mid) if deriv > 0 else (mid, hi)
    w = p * np.maximum(losses - 0.5 * (lo + hi), 0.0)
    return w / w.sum()


def test_chi2_trap_dropping_one_plus_ignores_rho():
    """The chi-square trap: without the "1 +" the dual is unbounded below for rho < 1/2, so the weights sit
    at the bracket's edge and do not change with rho; ours change with rho and match cvxpy."""
    rng = np.random.default_rng(3)
    losses = rng.normal(size=8)
    p = np.full(8, 1 / 8)
    wrong = [_chi2_weights_without_one_plus(losses, p, r) for r in (0.01, 0.1, 0.3)]
    np.testing.assert_allclose(wrong[0], wrong[1], atol=1e-12)
    np.testing.assert_allclose(wrong[0], wrong[2], atol=1e-12)
    ours = [chi2_worst_case(losses, p, r) for r in (0.01, 0.1, 0.3)]
    assert ours[0].value < ours[1].value < ours[2].value
    assert np.abs(ours[0].weights - ours[2].weights).max() > 0.05
    for r, res in zip((0.01, 0.1, 0.3), ours):
        ref_value, ref_q = _cvxpy_chi2(losses, p, r)
        assert res.value == pytest.approx(ref_value, rel=1e-6)
        np.testing.assert_allclose(res.weights, ref_q, atol=1e-4)
    # for rho >= 1/2 the wrong dual solves the problem of radius rho - 1/2
    np.testing.assert_allclose(
        _chi2_weights_without_one_plus(losses, p, 0.8), chi2_worst_case(losses, p, 0.3).weights,
        atol=1e-8,
    )


# --------------------------------------------------------------------------------------------
# numerical robustness, batching, support, validation
# --------------------------------------------------------------------------------------------


@balls
def test_ball_huge_losses_shift_and_scale(solve, div, name):
    """Translation equivariance value(l + c) = value(l) + c, and positive homogeneity
    value(s l) = s value(l) (both balls are invariant under these maps), at |l| ~ 1e6."""
    rng = np.random.default_rng(11)
    losses = rng.normal(size=9)
    p = _p_for(losses, 5)
    base = solve(losses, p, 0.1)
    shifted = solve(losses + 1e6, p, 0.1)
    scaled = solve(losses * 1e6, p, 0.1)
    assert shifted.success and scaled.success
    assert shifted.value - 1e6 == pytest.approx(base.value, abs=1e-8)
    assert scaled.value == pytest.approx(1e6 * base.value, rel=1e-9)
    np.testing.assert_allclose(shifted.weights, base.weights, atol=1e-8)
    np.testing.assert_allclose(scaled.weights, base.weights, atol=1e-10)
    spread = solve(np.array([1e6, -1e6, 0.0]), None, 0.05)
    assert spread.success and np.isfinite(spread.value)
    # spreads that overflow (l_max - l_min = inf) and tiny ones (1e-300): same weights as unit scale
    unit = solve(np.array([1.0, -1.0, 0.0]), None, 0.05)
    for c in (1e308, 1e-300):
        res = solve(np.array([c, -c, 0.0]), None, 0.05)
        assert res.value == pytest.approx(c * unit.value, rel=1e-12)
        np.testing.assert_allclose(res.weights, unit.weights, rtol=1e-12)
        if np.isfinite(res.dual):
            assert res.success, res.message
        else:  # extreme inputs: tau* (KL) or eta* (chi2) beyond +-DBL_MAX is reported, never success
            assert c == 1e308 and not res.success and res.status == OVERFLOW
            assert "dual" in res.message


@balls
@pytest.mark.parametrize("rho", [1e-300, 1e-40, 1e-20])
def test_ball_tiny_radius_second_order_expansion(solve, div, name, rho):
    """Tiny rho: value = E_p[l] + sqrt(2 rho Var_p l) + O(rho) for both balls (local chi-square
    approximation of the KL); the solve stays certified and finite (no 0/0 at tau ~ 1/sqrt(rho))."""
    losses = np.array([0.0, 1.0, 3.0, -2.0])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    res = solve(losses, p, rho)
    mean = p @ losses
    var = p @ (losses - mean) ** 2
    assert res.success, res.message
    assert res.value == pytest.approx(mean + np.sqrt(2 * rho * var), abs=1e-15)
    assert div(res.weights, p) <= rho * (1 + 1e-6) + 1e-300


@balls
def test_ball_equal_losses_and_single_sample(solve, div, name):
    for rho in (0.0, 1e-9, 0.3, 10.0):
        res = solve(np.full(6, 2.5), None, rho)
        assert res.success and res.value == 2.5
        np.testing.assert_allclose(res.weights, np.full(6, 1 / 6))
        one = solve([7.0], None, rho)
        assert one.success and one.value == 7.0 and one.weights.tolist() == [1.0]


@balls
def test_ball_zero_probability_samples_are_excluded(solve, div, name):
    """p_i = 0 is outside the support: q_i = 0, and the answer equals the restricted problem's."""
    losses = np.array([9.0, 1.0, 2.0, 0.5])
    p = np.array([0.0, 0.5, 0.3, 0.2])
    res = solve(losses, p, 0.05)
    sub = solve(losses[1:], p[1:], 0.05)
    assert res.success and res.weights[0] == 0.0
    assert res.value == pytest.approx(sub.value, rel=1e-12)
    np.testing.assert_allclose(res.weights[1:], sub.weights, atol=1e-14)


@balls
def test_ball_batched_rows_match_1d_and_default_p_is_uniform(solve, div, name):
    rng = np.random.default_rng(2)
    losses = rng.normal(size=(4, 7))
    p2 = rng.dirichlet(np.ones(7), size=4)
    res = solve(losses, p2, 0.2)
    shared = solve(losses, p2[0], 0.2)
    uniform = solve(losses, None, 0.2)
    assert res.value.shape == (4,) and res.weights.shape == (4, 7) and res.dual.shape == (4,)
    for i in range(4):
        assert res.value[i] == pytest.approx(solve(losses[i], p2[i], 0.2).value, rel=1e-14)
        assert shared.value[i] == pytest.approx(solve(losses[i], p2[0], 0.2).value, rel=1e-14)
        assert uniform.value[i] == pytest.approx(
            solve(losses[i], np.full(7, 1 / 7), 0.2).value, rel=1e-14)


def test_kl_iteration_limit_is_reported():
    res = kl_worst_case(np.linspace(0, 1, 50), None, 0.3, max_iter=1)
    assert not res.success and res.status == 2 and "iteration limit" in res.message
    assert _kl(res.weights, np.full(50, 1 / 50)) <= 0.3  # still the feasible end of the bracket


@balls
@pytest.mark.parametrize(
    "losses, p, rho, exc, match",
    [
        ([1.0, np.nan], None, 0.1, ValueError, r"losses must be finite, got nan at index 1"),
        ([1.0, 2.0], [0.5, np.nan], 0.1, ValueError, r"p must be finite, got nan at index 1"),
        ([1.0, 2.0], [0.7, 0.7], 0.1, ValueError, r"p must be a probability vector .* got sum 1.4"),
        ([1.0, 2.0], [1.5, -0.5], 0.1, ValueError, r"p must be non-negative, got -0.5 at index 1"),
        ([1.0, 2.0], [0.2, 0.3, 0.5], 0.1, ValueError, r"p must have shape \(2,\)"),
        ([1.0, 2.0], None, -0.1, ValueError, r"rho must be >= 0.0, got -0.1"),
        ([1.0, 2.0], None, np.nan, ValueError, r"rho must be finite, got nan"),
        ([1.0, 2.0], None, None, TypeError, r"rho .* is required"),
        ([1.0, 2.0], None, "0.1", TypeError, r"rho must be a real number"),
        ([], None, 0.1, ValueError, r"losses must have at least 1 element"),
        ([1.0, 2.0], [[0.5, 0.5]], 0.1, ValueError, r"p must be 1-D for 1-D losses"),
        ([[1.0, 2.0]] * 3, [[0.5, 0.5]] * 2, 0.1, ValueError, r"p must have shape \(2,\) or \(3, 2\)"),
        ([[1.0, 2.0], [0.0, 1.0]], [[0.5, 0.5], [0.9, 0.3]], 0.1, ValueError, r"got sum 1.2"),
    ],
)
def test_ball_validation(solve, div, name, losses, p, rho, exc, match):
    with pytest.raises(exc, match=match):
        solve(losses, p, rho)


@balls
def test_ball_huge_radius_is_the_point_mass(solve, div, name):
    """rho up to the largest double (1 + 2 rho overflows to inf): still the certified point mass."""
    for rho in (1e6, 1.7e308):
        res = solve([0.0, 1.0, -3.0], None, rho)
        assert res.success and res.value == 1.0 and res.weights.tolist() == [0.0, 1.0, 0.0]


def test_entropic_overflowing_value_is_reported_not_silent():
    """eta so small that log(B)/eta overflows: the value is inf and status says so (no NaN).
    Extreme inputs: an eta whose temperature 1/eta overflows (``[0.0]``, eta = 5e-324 gave dual=inf
    beside success=True) is rejected with a ValueError naming eta."""
    res = entropic_worst_case([0.0, 1.0, 2.0, 3.0], 6e-309)  # log(4) / 6e-309 > DBL_MAX
    assert not res.success and res.status == OVERFLOW and "value" in res.message
    assert not np.isnan(res.value)
    for eta in (5e-324, 1e-310):
        with pytest.raises(ValueError, match=r"eta must be >= 5\.56\d*e-309 \(the temperature 1/eta"):
            entropic_worst_case([0.0], eta)
    res = entropic_worst_case([0.0], 1e-308)  # B = 1: value max(l) + log(1)/eta = 0, dual 1e308
    assert res.success and res.value == 0.0 and res.dual == 1e308


@pytest.mark.parametrize("seed", range(40))
def test_extremely_skewed_reference_distributions(seed):
    """p from Dirichlet(0.01) (masses spanning 1e-300..1, some exactly 0): both solvers certify
    (feasible, zero duality gap), the chi-square search equals its sorted twin, values are monotone
    in rho and lie between E_p[l] and max l."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([3, 10, 100, 1000]))
    losses = rng.normal(size=n) if seed % 2 else np.round(rng.normal(size=n), 1)
    p = rng.dirichlet(np.full(n, 0.01))
    if p.sum() == 0:
        p[0] = 1.0
    p = p / p.sum()
    supp = p > 0
    prev = {"kl": -np.inf, "chi2": -np.inf}
    for rho in (1e-12, 1e-5, 0.05, 1.0, 50.0):
        for name, solve in (("kl", kl_worst_case), ("chi2", chi2_worst_case)):
            res = solve(losses, p, rho)
            assert res.success, (name, rho, res.message)
            assert p @ losses - 1e-9 <= res.value <= losses[supp].max() + 1e-12
            assert res.value >= prev[name] - 1e-9
            prev[name] = res.value
        z2, _, _ = _normalise_rows(losses[None, :], p[None, :])
        a, b = _chi2_batch(z2, p[None, :], rho), _chi2_batch_sorted(z2, p[None, :], rho)
        assert a[0][0] == pytest.approx(b[0][0], abs=1e-12)


def test_kl_max_iter_validation():
    with pytest.raises(ValueError, match=r"max_iter must be >= 1, got 0"):
        kl_worst_case([1.0, 2.0], None, 0.1, max_iter=0)


def test_chi2_rebel_convention_without_the_half():
    """chi2_worst_case docstring: DRO-REBEL's appendix writes the ball as sum (q - p)^2 / p <= rho'
    (no 1/2); passing rho = rho'/2 solves that problem (checked against cvxpy in that convention)."""
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(7)
    for rho_rebel in (0.05, 0.4, 1.5):
        losses = rng.normal(size=6)
        p = rng.dirichlet(np.ones(6))
        q = cp.Variable(6, nonneg=True)
        div = cp.sum(cp.multiply(cp.square(q - p), 1.0 / p))
        prob = cp.Problem(cp.Maximize(q @ losses), [cp.sum(q) == 1, div <= rho_rebel])
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
        res = chi2_worst_case(losses, p, rho_rebel / 2)
        assert res.success
        assert res.value == pytest.approx(prob.value, abs=1e-6)
        assert np.sum((res.weights - p) ** 2 / p) <= rho_rebel * (1 + 1e-9)


def test_empty_batch_gives_empty_results():
    """A 2-D batch of 0 rows (e.g. no prompt in a bin this step) returns empty arrays, like the other
    batched solvers; a 1-D problem still needs at least one sample."""
    for res in (entropic_worst_case(np.zeros((0, 3)), 1.0), kl_worst_case(np.zeros((0, 3)), rho=0.1),
                chi2_worst_case(np.zeros((0, 3)), None, 0.1), kl_worst_case(np.zeros((0, 3)), [0.2, 0.3, 0.5], 0.1)):
        assert res.success and res.value.shape == (0,) and res.weights.shape == (0, 3) and res.dual.shape == (0,)
    with pytest.raises(ValueError, match="at least 1 element"):
        chi2_worst_case([], None, 0.1)
    with pytest.raises(ValueError, match="at least 1 column"):
        kl_worst_case(np.zeros((2, 0)), rho=0.1)
