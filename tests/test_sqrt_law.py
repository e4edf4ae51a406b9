"""Tests for solvers.sqrt_law.sqrt_allocation (GDRO eq. 20-21, Thm F.17, eq. 57-58)."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from solvers import sqrt_allocation, variance_proxy
from solvers._status import OPTIMAL
from solvers.sqrt_law import _CERT_REASONS, _certify_kernel, _clip_level_fast, _clip_level_kernel, _clip_level_python, _sqrt_solve_kernel, _sqrt_solve_python

# ------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------


@st.composite
def instances(draw, min_bins=1, max_bins=8, positive_v=False, all_active=False):
    B = draw(st.integers(min_bins, max_bins))
    lo_v = 0.01 if positive_v else 0.0
    v = np.array(draw(st.lists(st.floats(lo_v, 10.0), min_size=B, max_size=B)))
    if not positive_v:
        zero = np.array(draw(st.lists(st.booleans(), min_size=B, max_size=B)))
        v = np.where(zero & (np.arange(B) % 2 == 1), 0.0, v)
    raw = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=B, max_size=B)))
    if not all_active:
        drop = np.array(draw(st.lists(st.booleans(), min_size=B, max_size=B)))
        drop[0] = False
        raw = np.where(drop & (np.arange(B) % 3 == 2), 0.0, raw)
    shares = raw / raw.sum()
    n_bar = draw(st.floats(0.5, 20.0))
    return v, shares, n_bar


def solve_cvxpy(v, shares, n_bar, lower=None, upper=None):
    B = len(v)
    x = cp.Variable(B)
    used = (shares > 0) & (v > 0)
    lo = np.zeros(B) if lower is None else np.broadcast_to(lower, B)
    cons = [shares @ x == n_bar, x >= lo]
    if upper is not None:
        cons.append(x <= np.broadcast_to(upper, B))
    obj = cp.sum(cp.multiply(shares[used] * v[used], cp.inv_pos(x[used]))) if used.any() else cp.Constant(0)
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal"
    return float(prob.value), x.value


def assert_feasible(res, shares, n_bar, lower=None, upper=None):
    active = shares > 0
    assert np.all(np.isfinite(res.n[active]))
    assert float(np.dot(shares[active], res.n[active])) == pytest.approx(n_bar, rel=1e-9)
    if lower is not None:
        assert np.all(res.n[active] >= np.broadcast_to(lower, len(shares))[active] * (1 - 1e-12) - 1e-12)
    else:
        assert np.all(res.n[active] >= 0)
    if upper is not None:
        assert np.all(res.n[active] <= np.broadcast_to(upper, len(shares))[active] * (1 + 1e-12))


# ------------------------------------------------------------------------------------------
# against cvxpy
# ------------------------------------------------------------------------------------------


def test_matches_cvxpy_without_bounds():
    rng = np.random.default_rng(1)
    for _ in range(20):
        B = int(rng.integers(1, 12))
        v = rng.uniform(0.0, 5.0, B) * (rng.random(B) > 0.2)
        shares = rng.random(B) * (rng.random(B) > 0.2)
        shares[0] += 0.1
        shares /= shares.sum()
        n_bar = float(rng.uniform(1, 10))
        res = sqrt_allocation(v, shares, n_bar)
        assert res.success and res.status == OPTIMAL
        ref, _ = solve_cvxpy(v, shares, n_bar)
        assert res.objective == pytest.approx(ref, rel=2e-5, abs=1e-9)
        assert res.objective <= ref * (1 + 1e-9) + 1e-12  # exact solver is never worse
        assert_feasible(res, shares, n_bar)


def test_matches_cvxpy_with_bounds():
    rng = np.random.default_rng(2)
    done = 0
    while done < 30:
        B = int(rng.integers(1, 12))
        v = rng.uniform(0.0, 5.0, B) * (rng.random(B) > 0.2)
        shares = rng.random(B) * (rng.random(B) > 0.2)
        shares[0] += 0.1
        shares /= shares.sum()
        n_bar = float(rng.uniform(2, 10))
        lower = rng.uniform(0.5, 4.0, B) if done % 3 else 2.0
        upper = (np.broadcast_to(lower, B) + rng.uniform(0.0, 10.0, B)) if done % 2 else 12.0
        active = shares > 0
        lo_sum = float(np.dot(shares[active], np.broadcast_to(lower, B)[active]))
        up_sum = float(np.dot(shares[active], np.broadcast_to(upper, B)[active]))
        if not lo_sum < n_bar < up_sum:
            continue
        res = sqrt_allocation(v, shares, n_bar, lower=lower, upper=upper)
        assert res.success, res.message
        ref, _ = solve_cvxpy(v, shares, n_bar, lower, upper)
        assert res.objective == pytest.approx(ref, rel=2e-5, abs=1e-9)
        assert res.objective <= ref * (1 + 1e-9) + 1e-12
        assert_feasible(res, shares, n_bar, lower, upper)
        done += 1


# ------------------------------------------------------------------------------------------
# properties from GDRO Thm F.17
# ------------------------------------------------------------------------------------------


@given(instances(positive_v=True))
def test_closed_form_eq21_when_unbounded(inst):
    """GDRO eq. 21 / 56: n_b = n_bar sqrt(v_b) / sum_c q_c sqrt(v_c) on active bins, price
    mu = (sum_c q_c sqrt(v_c) / n_bar)^2 (proof of Thm F.17), and eq. 57 for the value."""
    v, shares, n_bar = inst
    res = sqrt_allocation(v, shares, n_bar)
    assert res.success
    denom = float(np.dot(shares, np.sqrt(v)))
    closed = n_bar * np.sqrt(v) / denom
    np.testing.assert_allclose(res.n, closed, rtol=1e-10)  # zero-share bins too (documented)
    assert res.price == pytest.approx((denom / n_bar) ** 2, rel=1e-10)
    assert res.objective == pytest.approx(denom**2 / n_bar, rel=1e-10)  # eq. 57
    assert res.zero_share.tolist() == (shares == 0).tolist()


@given(instances())
def test_eq58_never_worse_than_uniform(inst):
    """GDRO eq. 58: VarProxy(n*) <= sum_b q_b v_b / n_bar, with equality iff v is constant on
    the active bins (Cauchy-Schwarz in the proof of Thm F.17)."""
    v, shares, n_bar = inst
    res = sqrt_allocation(v, shares, n_bar)
    active = shares > 0
    uniform = float(np.dot(shares, v)) / n_bar
    assert res.objective <= uniform * (1 + 1e-12) + 1e-15
    assert res.objective == pytest.approx(variance_proxy(v, shares, res.n), rel=1e-12)
    va = v[active]
    if np.ptp(va) == 0:
        assert res.objective == pytest.approx(uniform, rel=1e-12, abs=1e-15)
    else:
        # strict gap: uniform - optimum = Var_q(sqrt v) / n_bar (Cauchy-Schwarz defect)
        sq = np.sqrt(va)
        q = shares[active]
        gap = (float(np.dot(q, va)) - float(np.dot(q, sq)) ** 2) / n_bar
        assert gap > 0
        assert uniform - res.objective == pytest.approx(gap, rel=1e-6, abs=1e-12)


@given(
    instances(),
    st.floats(0.0, 2.0),
    st.floats(0.5, 30.0),
)
def test_feasibility_and_kkt_with_bounds(inst, lower, width):
    """Feasibility of eq. 20 with bounds, and the KKT conditions behind Thm F.17: equal marginal
    v_b / n_b^2 = price on interior bins, <= price at the lower and >= price at the upper bound."""
    v, shares, n_bar = inst
    upper = lower + width
    active = shares > 0
    n_bar = min(max(n_bar, lower + 1e-3), upper - 1e-3)
    assume(lower < n_bar < upper)
    res = sqrt_allocation(v, shares, n_bar, lower=lower, upper=upper)
    assert res.success, res.message
    assert_feasible(res, shares, n_bar, lower, upper)
    pos = active & (v > 0)
    n = res.n[pos]
    marg = v[pos] / n**2
    interior = (n > lower * (1 + 1e-9)) & (n < upper * (1 - 1e-9))
    np.testing.assert_allclose(marg[interior], res.price, rtol=1e-7)
    at_lo = n <= lower * (1 + 1e-9)
    at_hi = n >= upper * (1 - 1e-9)
    assert np.all(marg[at_lo & ~at_hi] <= res.price * (1 + 1e-7))
    assert np.all(marg[at_hi & ~at_lo] >= res.price * (1 - 1e-7))
    assert np.all(np.isfinite(res.n[active]))


@given(instances(), st.floats(1.5, 3.0))
def test_monotone_more_variance_no_fewer_rollouts(inst, factor):
    """GDRO Remark F.18: bins with larger v_b receive more rollouts (n_b = clip(sqrt(v_b/mu))),
    both across bins with equal bounds and when one bin's variance grows."""
    v, shares, n_bar = inst
    lower, upper = 0.5, 25.0
    assume(lower < n_bar < upper)
    res = sqrt_allocation(v, shares, n_bar, lower=lower, upper=upper)
    active = np.flatnonzero(shares > 0)
    order = active[np.argsort(v[active], kind="stable")]
    assert np.all(np.diff(res.n[order]) >= -1e-9 * n_bar)
    b = int(active[-1])
    v2 = v.copy()
    v2[b] = v[b] * factor + 0.1
    res2 = sqrt_allocation(v2, shares, n_bar, lower=lower, upper=upper)
    assert res2.n[b] >= res.n[b] * (1 - 1e-9)


@pytest.mark.parametrize("kernel", [_clip_level_kernel, _clip_level_fast])
def test_clip_level_kernels_equal_python_twin(kernel):
    """Both compiled root finders (sorted breakpoints; safeguarded Newton) against bisection."""
    rng = np.random.default_rng(4)
    for trial in range(400):
        m = int(rng.integers(1, 8)) if trial < 300 else int(rng.integers(50, 400))
        weight = rng.uniform(0.05, 1.0, m)
        slope = rng.uniform(0.1, 3.0, m)
        lower = rng.uniform(0.0, 3.0, m) * (rng.random(m) > 0.3)
        upper = lower + rng.uniform(0.0, 5.0, m)
        if rng.random() < 0.4:
            upper[rng.random(m) < 0.5] = np.inf
        lo_sum = float(np.dot(weight, lower))
        target = lo_sum + float(rng.uniform(0.0, 10.0))
        if trial >= 300:  # anywhere in (and a little beyond) the range of h
            top = float(np.dot(weight, np.where(np.isfinite(upper), upper, lower + 5.0)))
            target = lo_sum + float(rng.uniform(0.0, 1.2)) * (top - lo_sum)
        fast = kernel(weight, slope, lower, upper, target)
        slow = _clip_level_python(weight, slope, lower, upper, target)
        if np.isinf(slow):
            assert np.isinf(fast)
            continue
        # compare the allocations (t itself is not unique on flat pieces of h)
        nf = np.clip(fast * slope, lower, upper)
        ns = np.clip(slow * slope, lower, upper)
        np.testing.assert_allclose(nf, ns, rtol=1e-9, atol=1e-9)
        assert float(np.dot(weight, nf)) == pytest.approx(target, rel=1e-12)


def test_solve_kernel_equals_numpy_twin():
    rng = np.random.default_rng(8)
    checked = 0
    for trial in range(300):
        B = int(rng.integers(1, 9))
        v = rng.uniform(0.0, 5.0, B) * (rng.random(B) > 0.25)
        shares = rng.random(B) * (rng.random(B) > 0.25)
        shares[0] += 0.05
        shares /= shares.sum()
        lower = rng.uniform(0.0, 3.0, B) * (rng.random(B) > 0.3)
        upper = lower + rng.uniform(0.0, 8.0, B)
        if trial % 3 == 0:
            upper[rng.random(B) < 0.5] = np.inf
        a = shares > 0
        lo_sum, up_sum = float(np.dot(shares[a], lower[a])), float(np.dot(shares[a], upper[a]))
        n_bar = lo_sum + float(rng.uniform(0.05, 1.0)) * (min(up_sum, lo_sum + 20.0) - lo_sum)
        if not lo_sum < n_bar <= up_sum:
            continue
        n_fast, price_fast = _sqrt_solve_kernel(v, shares, n_bar, lower, upper)
        n_slow, price_slow = _sqrt_solve_python(v, shares, n_bar, lower, upper)
        np.testing.assert_allclose(n_fast, n_slow, rtol=1e-9, atol=1e-9)
        assert price_fast == pytest.approx(price_slow, rel=1e-8, abs=1e-300)
        assert sqrt_allocation(v, shares, n_bar, lower=lower, upper=upper).success
        checked += 1
    assert checked > 200


def test_certificate_rejects_perturbed_allocations():
    """The post-solve certificate can fail: feasibility, bounds and each KKT condition."""
    v = np.array([1.0, 4.0, 9.0])
    q = np.array([0.2, 0.3, 0.5])
    lo, up = np.full(3, 1.0), np.full(3, 10.0)
    res = sqrt_allocation(v, q, 4.0, lower=lo, upper=up)
    args = (v, q, 4.0, lo, up)
    assert _certify_kernel(*args, res.n, res.price, 1e-8)[1] == 0
    bad_budget = res.n * 1.01
    assert _certify_kernel(*args, bad_budget, res.price, 1e-8)[1] == 1
    shifted = res.n + np.array([0.3, 0.0, -0.12])  # same budget, unequal marginals
    assert float(np.dot(q, shifted)) == pytest.approx(4.0)
    assert _certify_kernel(*args, shifted, res.price, 1e-8)[1] == 3
    below = np.array([0.5, res.n[1], (4.0 - 0.1 - 0.3 * res.n[1]) / 0.5])
    assert _certify_kernel(*args, below, res.price, 1e-8)[1] == 2
    # at the lower bound although its marginal exceeds the price
    at_lo = np.array([1.0, 1.0, (4.0 - 0.2 - 0.3) / 0.5])
    assert _certify_kernel(v, q, 4.0, lo, up, at_lo, 0.01, 1e-8)[1] == 4
    # at the upper bound although its marginal is below the price
    at_hi = np.array([10.0, 2.5, 2.5])
    assert float(np.dot(q, at_hi)) == pytest.approx(4.0)
    assert _certify_kernel(v, q, 4.0, lo, up, at_hi, 1.0, 1e-8)[1] == 5
    assert set(_CERT_REASONS) == {1, 2, 3, 4, 5, 6}


# ------------------------------------------------------------------------------------------
# degenerate cases: zero variance, zero share, large budgets
# ------------------------------------------------------------------------------------------


def test_zero_variance_and_zero_share_bins_without_nan():
    v = np.array([0.0, 4.0, 1.0, 9.0])
    shares = np.array([0.25, 0.5, 0.25, 0.0])
    res = sqrt_allocation(v, shares, 3.0)
    assert res.success and np.all(np.isfinite(res.n))
    assert res.n[0] == 0.0  # eq. 56 with v_b = 0 (and lower = 0)
    # active positive bins: n = 3 sqrt(v) / (0.5*2 + 0.25*1) = 2.4 sqrt(v)
    np.testing.assert_allclose(res.n[1:3], [4.8, 2.4])
    assert res.zero_share.tolist() == [False, False, False, True]
    np.testing.assert_allclose(res.n[3], 2.4 * 3.0)  # shadow-price response, eq. 56 formula
    assert res.objective == pytest.approx(0.5 * 4 / 4.8 + 0.25 * 1 / 2.4)


def test_zero_variance_bins_take_the_lower_bound():
    res = sqrt_allocation([0.0, 1.0], [0.5, 0.5], 4.0, lower=2.0)
    np.testing.assert_allclose(res.n, [2.0, 6.0])
    assert res.success


def test_all_zero_variance_spreads_budget_by_a_common_level():
    res = sqrt_allocation([0.0, 0.0, 0.0], [0.2, 0.3, 0.5], 4.0)
    np.testing.assert_allclose(res.n, [4.0, 4.0, 4.0])
    assert res.objective == 0.0 and res.price == 0.0 and res.success


def test_budget_above_all_upper_bounds_of_positive_bins():
    # bin 1 (v > 0) saturates at 5; the zero-variance bin absorbs the remainder at price 0
    res = sqrt_allocation([0.0, 1.0, 4.0], [0.5, 0.25, 0.25], 8.0, lower=1.0, upper=[20.0, 5.0, 6.0])
    assert res.success and res.price == 0.0
    np.testing.assert_allclose(res.n[1:], [5.0, 6.0])
    assert float(np.dot([0.5, 0.25, 0.25], res.n)) == pytest.approx(8.0)


def test_budget_at_the_lower_bounds():
    res = sqrt_allocation([1.0, 4.0], [0.5, 0.5], 2.0, lower=2.0, upper=10.0)
    np.testing.assert_allclose(res.n, [2.0, 2.0])
    assert res.success and res.price == pytest.approx(1.0)  # max v_b / lower_b^2


def test_shares_are_used_as_given_and_must_sum_to_one():
    with pytest.raises(ValueError, match=r"shares must sum to 1 .*got sum 2.0"):
        sqrt_allocation([1.0, 2.0], [1.0, 1.0], 3.0)


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (([1.0, -1.0], [0.5, 0.5], 3.0), {}, ValueError, "v must be non-negative"),
        (([1.0, 1.0], [0.5, 0.5, 0.0], 3.0), {}, ValueError, "v and shares must have the same shape"),
        (([1.0, 1.0], [0.5, 0.5], 0.0), {}, ValueError, "mean_budget must be > 0"),
        (([1.0, 1.0], [0.5, 0.5], 3.0), dict(lower=4.0), ValueError, r"mean_budget 3.0 is infeasible: need sum_b q_b lower_b=4.0"),
        (([1.0, 1.0], [0.5, 0.5], 3.0), dict(upper=2.0), ValueError, r"sum_b q_b upper_b=2.0"),
        (([1.0, 1.0], [0.5, 0.5], 3.0), dict(lower=[1.0, 5.0], upper=[4.0, 4.0]), ValueError, "lower must be <= upper"),
        (([1.0, 1.0], [0.5, 0.5], 3.0), dict(lower=[1.0, 1.0, 1.0]), ValueError, "lower must be a scalar or have length 2"),
        (([1.0, 1.0], [0.5, 0.5], 1.0), dict(lower=[0.0, 2.0]), ValueError, "forces n_b = 0 on bin 0"),
        (([1.0, np.nan], [0.5, 0.5], 1.0), {}, ValueError, "v must be finite"),
        (("ab", [0.5, 0.5], 1.0), {}, TypeError, "v must be an array of real numbers"),
    ],
)
def test_invalid_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sqrt_allocation(*args, **kwargs)


def test_tiny_budgets_and_spreads_do_not_divide_by_zero():
    """Extreme inputs: ``sqrt_allocation([1.0], [1.0], 1e-300, lower=1e-308)`` and ``sqrt_allocation([1e-300,
    1e300], ...)`` raised ZeroDivisionError in the kernels (``1/(t*t)`` and ``v/(n*n)``
    underflowing). Now the square-root law holds exactly, and a price that overflows (v/n^2 ~
    1e600) is reported as OVERFLOW, never as success."""
    res = sqrt_allocation([1.0], [1.0], 1e-300, lower=1e-308)
    np.testing.assert_array_equal(res.n, [1e-300])
    assert not res.success and res.status == 4 and "price" in res.message
    res = sqrt_allocation([1e-300, 1e300], [0.5, 0.5], 1.0)
    assert res.success, res.message
    np.testing.assert_allclose(res.n, [2e-300, 2.0], rtol=1e-12)  # n_b ∝ sqrt(v_b), eq. 21
    assert res.price == pytest.approx(2.5e299, rel=1e-12)
    res = sqrt_allocation([1.0, 4.0], [0.5, 0.5], 1e-200)  # tiny but positive budget: solved
    np.testing.assert_allclose(res.n, [1e-200 / 1.5, 2e-200 / 1.5], rtol=1e-12)
