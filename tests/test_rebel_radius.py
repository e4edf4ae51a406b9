"""Tests for ``solvers.wasserstein_collapse_radius``: the closed form ``rho*`` against the radius at
which independent solves of the Wasserstein DRO-REBEL problem (cvxpy, a brute-force grid, and the
exact ridge-path solver) first return ``w = 0``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import rebel_step_linear, wasserstein_collapse_radius


def _instance(rng, n, d, noise=1.0):
    fa = rng.normal(size=(n, d))
    fb = rng.normal(size=(n, d))
    theta = rng.normal(size=d)
    ra = fa @ theta + noise * rng.normal(size=n)
    rb = fb @ theta + noise * rng.normal(size=n)
    return fa, fb, ra, rb


def _cvxpy_direction(fa, fb, ra, rb, radius):
    """min_w ||A w - b|| / sqrt(n) + radius ||w||: the square root of the exact Wasserstein worst-case
    loss (sqrt(L(w)) + radius ||w||)^2 of the DRO-REBEL step, solved as a second-order cone program."""
    cp = pytest.importorskip("cvxpy")
    A, b = fa - fb, ra - rb
    n, d = A.shape
    w = cp.Variable(d)
    prob = cp.Problem(cp.Minimize(cp.norm(A @ w - b, 2) / np.sqrt(n) + radius * cp.norm(w, 2)))
    prob.solve(solver=cp.CLARABEL)
    return np.asarray(w.value)


def _first_zero_radius(solve, hi, tol_w, iters=40):
    """Bisection for the smallest radius whose solution has ``||w|| <= tol_w`` (``solve(hi)`` is 0)."""
    lo = 0.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if np.linalg.norm(solve(mid)) <= tol_w:
            hi = mid
        else:
            lo = mid
    return hi


@pytest.mark.parametrize("n, d, seed", [(12, 2, 0), (30, 3, 1), (40, 5, 2), (8, 4, 3)])
def test_rho_star_is_where_cvxpy_first_returns_zero(n, d, seed):
    """The robust problem min sqrt(L(w)) + rho ||w|| first has w = 0 as its solution at rho* (the
    subgradient condition of the module docstring), located here by bisection on cvxpy solves."""
    fa, fb, ra, rb = _instance(np.random.default_rng(seed), n, d)
    rho = wasserstein_collapse_radius(fa, fb, ra, rb)
    assert rho > 0
    found = _first_zero_radius(lambda r: _cvxpy_direction(fa, fb, ra, rb, r), 4 * rho, tol_w=1e-5, iters=25)
    assert found == pytest.approx(rho, rel=2e-3)
    assert np.linalg.norm(_cvxpy_direction(fa, fb, ra, rb, 0.95 * rho)) > 1e-3
    assert np.linalg.norm(_cvxpy_direction(fa, fb, ra, rb, 1.05 * rho)) < 1e-6


def test_rho_star_is_where_a_brute_force_grid_first_returns_zero():
    """Brute force in d = 2: minimise J(w) = sqrt(L(w)) + rho ||w|| over a grid of w containing 0,
    for a grid of radii; the first radius whose grid minimiser is w = 0 brackets rho* to within the
    grid's resolution (the obviously-correct reference)."""
    fa, fb, ra, rb = _instance(np.random.default_rng(7), 25, 2)
    A, b = fa - fb, ra - rb
    rho = wasserstein_collapse_radius(fa, fb, ra, rb)
    w_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    half = 1.2 * float(np.abs(w_ls).max())
    axis = np.linspace(-half, half, 401)  # 401 points: 0 is on the grid
    W = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    root_l = np.sqrt(np.mean((W @ A.T - b) ** 2, axis=1))
    norms = np.linalg.norm(W, axis=1)
    zero = int(np.argmin(norms))
    radii = rho * np.linspace(0.5, 1.5, 201)
    first = next(r for r in radii if int(np.argmin(root_l + r * norms)) == zero)
    step = axis[1] - axis[0]
    # the grid misses minimisers shorter than one step: it may declare 0 slightly before rho*
    assert rho - 0.05 * rho <= first <= rho + (radii[1] - radii[0]) + 1e-12
    assert first == pytest.approx(rho, rel=0.05), (first, rho, step)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40), d=st.integers(1, 6), noise=st.floats(0.0, 3.0))
def test_exact_step_collapses_exactly_at_rho_star(seed, n, d, noise):
    """DRO-REBEL (Wasserstein, linear rewards): the exact step's direction is 0 for radius >= rho*
    and non-zero below it (the subgradient condition of ``solvers.rebel_radius``)."""
    fa, fb, ra, rb = _instance(np.random.default_rng(seed), n, d, noise)
    rho = wasserstein_collapse_radius(fa, fb, ra, rb)
    if rho < 1e-8:
        return
    above = rebel_step_linear(np.zeros(d), fa, fb, ra, rb, 1.0, robust=("wasserstein", rho * (1 + 1e-9)),
                              full_output=True)
    assert np.all(above.direction == 0.0)
    below = rebel_step_linear(np.zeros(d), fa, fb, ra, rb, 1.0, robust=("wasserstein", 0.9 * rho),
                              full_output=True)
    assert np.linalg.norm(below.direction) > 0.0
    # at 0.9 rho* the objective is below the value of w = 0 (A^T b is a descent direction)
    assert below.objective < np.mean((ra - rb) ** 2)


def test_rho_star_scaling_and_degenerate_rewards():
    fa, fb, ra, rb = _instance(np.random.default_rng(3), 20, 3)
    rho = wasserstein_collapse_radius(fa, fb, ra, rb)
    assert wasserstein_collapse_radius(fa, fb, 7.0 * ra, 7.0 * rb) == pytest.approx(rho)
    assert wasserstein_collapse_radius(2.0 * fa, 2.0 * fb, ra, rb) == pytest.approx(2.0 * rho)
    assert wasserstein_collapse_radius(fa, fb, 1e200 * ra, 1e200 * rb) == pytest.approx(rho)
    assert wasserstein_collapse_radius(fa, fb, ra, ra) == 0.0


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((np.zeros((2, 2)), np.zeros((3, 2)), np.zeros(2), np.zeros(2)), ValueError, "same shape"),
        ((np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(3), np.zeros(3)), ValueError, "rewards_a must have shape"),
        ((np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)), ValueError, "features_a"),
        ((np.full((2, 1), np.nan), np.zeros((2, 1)), np.zeros(2), np.zeros(2)), ValueError, "features_a"),
        ((np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0)), ValueError, "at least one pair"),
        (("a", np.zeros((2, 2)), np.zeros(2), np.zeros(2)), TypeError, "features_a"),
    ],
)
def test_rejects_bad_input(args, exc, match):
    with pytest.raises(exc, match=match):
        wasserstein_collapse_radius(*args)
