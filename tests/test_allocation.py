"""Tests of solvers.allocate (VIP eq. 5-9, Thm 5.1/5.2; GDRO eq. 19-21) against independent
references: cvxpy (rloo, inverse), a slow pure-Python KKT bisection (drgrpo), brute force and a
heapq greedy (integer), and the kernels' pure-Python twins."""

from __future__ import annotations

import heapq
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import COST_FAMILIES, allocate, get_cost, round_greedy
from solvers import _allocation_kernels as K
from solvers._status import OPTIMAL

COSTS = ["rloo", "drgrpo", "inverse"]


def f_value(cost, a, n):
    a = np.asarray(a, float)
    n = np.asarray(n, float)
    if cost == "rloo":
        v = a / (n - 1)
    elif cost == "drgrpo":
        v = a * (n - 1) / n**2
    else:
        v = a / n
    return float(np.where(a == 0, 0.0, v).sum())


def f_marginal(cost, a, n):
    """-f'(n), independent numpy formula."""
    if cost == "rloo":
        return a / (n - 1) ** 2
    if cost == "drgrpo":
        return a * (n - 2) / n**3
    return a / n**2


def random_instance(rng, cost, size, *, zeros=False, inf_upper=False, integer=False):
    a = rng.gamma(0.7, 1.0, size) * rng.choice([1e-3, 1.0, 50.0], size)
    if zeros:
        a[rng.random(size) < 0.3] = 0.0
    base = 3 if cost == "drgrpo" else 2
    lower = base + rng.integers(0, 4, size).astype(float)
    upper = lower + rng.integers(0, 30, size).astype(float)
    if not integer:
        lower = lower + rng.random(size) * 0.5
        upper = np.maximum(lower, upper + rng.random(size) * 0.5)
    if inf_upper:
        upper[rng.random(size) < 0.5] = np.inf
    hi = upper.sum() if np.isfinite(upper.sum()) else lower.sum() + 40 * size
    t = rng.random()
    budget = lower.sum() + t * (hi - lower.sum())
    if integer:
        budget = int(math.floor(budget))
    return a, float(budget) if not integer else budget, lower, upper


def check_certificate(res, cost, a, budget, lower, upper, rtol=1e-6):
    """Feasibility and the KKT conditions of Thm 5.1/5.2, checked with independent formulas."""
    n = np.asarray(res.n, float)
    assert res.success and res.status == OPTIMAL, res.message
    assert np.all(np.isfinite(n))
    assert np.all(n >= lower) and np.all(n <= upper)
    assert abs(n.sum() - budget) <= 1e-8 * max(1.0, budget)
    lam = res.price
    assert lam >= 0
    g = f_marginal(cost, a, n)
    free = lower < upper
    inner = free & (n > lower) & (n < upper)
    tol = rtol * max(lam, 1e-300) + 1e-14 * max(1.0, g.max(initial=0.0))
    assert np.all(np.abs(g[inner] - lam) <= tol + rtol * g[inner])
    at_lo = free & (n == lower)
    at_hi = free & (n == upper)
    assert np.all(g[at_lo] <= lam + tol + rtol * g[at_lo])
    assert np.all(g[at_hi] >= lam - tol - rtol * g[at_hi])


# ----------------------------------------------------------------------------------------------
# references
# ----------------------------------------------------------------------------------------------


def cvxpy_solve(cost, a, budget, lower, upper):
    cp = pytest.importorskip("cvxpy")
    n = cp.Variable(a.size)
    shift = 1.0 if cost == "rloo" else 0.0
    obj = cp.sum(cp.multiply(a, cp.inv_pos(n - shift)))
    cons = [cp.sum(n) == budget, n >= lower]
    fin = np.isfinite(upper)
    if fin.any():
        cons.append(n[np.flatnonzero(fin)] <= upper[fin])
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.CLARABEL)
    assert prob.status == "optimal"
    return np.asarray(n.value), float(prob.value)


def slow_drgrpo(a, budget, lower, upper):
    """Pure-Python KKT solve of VIP Thm 5.1: bisection on lambda, scalar bisection per prompt."""

    def n_of(aq, lam, lo, hi):
        if aq == 0.0:
            return lo
        g = lambda x: aq * (x - 2) / x**3 - lam  # decreasing on [3, inf)
        if g(lo) <= 0:
            return lo
        top = hi if np.isfinite(hi) else max(lo, 1.0) * 2
        while not np.isfinite(hi) and g(top) > 0:
            top *= 2
        if g(top) >= 0:
            return hi
        left, right = lo, top
        for _ in range(200):
            mid = 0.5 * (left + right)
            if g(mid) > 0:
                left = mid
            else:
                right = mid
        return 0.5 * (left + right)

    total = lambda lam: sum(n_of(a[q], lam, lower[q], upper[q]) for q in range(a.size))
    lam_lo, lam_hi = 0.0, float(np.max(a * (lower - 2) / lower**3)) + 1.0
    for _ in range(200):
        mid = 0.5 * (lam_lo + lam_hi)
        if total(mid) > budget:
            lam_lo = mid
        else:
            lam_hi = mid
    lam = 0.5 * (lam_lo + lam_hi)
    return np.array([n_of(a[q], lam, lower[q], upper[q]) for q in range(a.size)]), lam


def brute_force_integer(cost, a, budget, lower, upper):
    ranges = [range(int(lo), int(hi) + 1) for lo, hi in zip(lower, upper)]
    best = np.inf
    for combo in itertools.product(*ranges):
        if sum(combo) == budget:
            best = min(best, f_value(cost, a, combo))
    return best


def heapq_greedy(cost, a, budget, lower, upper):
    """Independent integer greedy from the lower bounds (exact for separable convex costs)."""
    x = [int(v) for v in lower]
    f = lambda q, n: f_value(cost, a[q : q + 1], [n])
    heap = [(-(f(q, x[q]) - f(q, x[q] + 1)), q) for q in range(len(x)) if x[q] < upper[q]]
    heapq.heapify(heap)
    for _ in range(budget - sum(x)):
        _, q = heapq.heappop(heap)
        x[q] += 1
        if x[q] < upper[q]:
            heapq.heappush(heap, (-(f(q, x[q]) - f(q, x[q] + 1)), q))
    return np.array(x)


# ----------------------------------------------------------------------------------------------
# continuous
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cost", ["rloo", "inverse"])
def test_continuous_matches_cvxpy(cost):
    rng = np.random.default_rng(1)
    for trial in range(12):
        a, budget, lower, upper = random_instance(
            rng, cost, int(rng.integers(1, 25)), zeros=trial % 3 == 0, inf_upper=trial % 4 == 1
        )
        if np.all(a == 0):
            a[0] = 1.0
        res = allocate(a, budget, lower, upper, cost=cost)
        check_certificate(res, cost, a, budget, lower, upper)
        n_ref, v_ref = cvxpy_solve(cost, a, budget, lower, upper)
        assert res.objective <= v_ref * (1 + 1e-7) + 1e-9
        assert res.objective == pytest.approx(v_ref, rel=1e-5, abs=1e-8)
        pos = a > 0
        np.testing.assert_allclose(res.n[pos], n_ref[pos], rtol=2e-3, atol=2e-3)


def test_drgrpo_matches_slow_kkt():
    rng = np.random.default_rng(2)
    for trial in range(10):
        a, budget, lower, upper = random_instance(
            rng, "drgrpo", int(rng.integers(1, 12)), zeros=trial % 3 == 0, inf_upper=trial % 4 == 1
        )
        if np.all(a == 0):
            a[0] = 1.0
        res = allocate(a, budget, lower, upper, cost="drgrpo")
        check_certificate(res, "drgrpo", a, budget, lower, upper)
        n_ref, _ = slow_drgrpo(a, budget, lower, upper)
        pos = a > 0
        np.testing.assert_allclose(res.n[pos], n_ref[pos], rtol=1e-6, atol=1e-6)
        assert res.objective == pytest.approx(f_value("drgrpo", a, n_ref), rel=1e-9)


def test_closed_form_rloo_unbounded():
    """VIP Thm 5.2 with inactive bounds: n_q = 1 + sqrt(a_q / lambda), so n_q - 1 ∝ sqrt(a_q)."""
    a = np.array([1.0, 4.0, 9.0])
    res = allocate(a, 3 + 60, 1.5, np.inf, cost="rloo")
    np.testing.assert_allclose(res.n - 1, 60 * np.sqrt(a) / np.sqrt(a).sum(), rtol=1e-12)
    assert res.price == pytest.approx((np.sqrt(a).sum() / 60) ** 2, rel=1e-12)


def test_price_is_shadow_price():
    """lambda* = -dV/dC: compare with a central finite difference of the optimal value."""
    rng = np.random.default_rng(3)
    for cost in COSTS:
        a, budget, lower, upper = random_instance(rng, cost, 10)
        upper = upper + 5
        h = 1e-4
        vp = allocate(a, budget + h, lower, upper, cost=cost).objective
        vm = allocate(a, budget - h, lower, upper, cost=cost).objective
        res = allocate(a, budget, lower, upper, cost=cost)
        assert res.price == pytest.approx(-(vp - vm) / (2 * h), rel=1e-4, abs=1e-10)


def test_zero_a_prompts_no_nan():
    lower, upper = np.full(4, 3.0), np.full(4, 10.0)
    # price > 0: a == 0 prompts stay at their lower bound
    res = allocate([0.0, 1.0, 0.0, 2.0], 20, lower, upper, cost="rloo")
    assert res.n[0] == 3 and res.n[2] == 3 and res.price > 0 and res.success
    # every a > 0 prompt at its upper bound: leftover spread evenly over a == 0 prompts, price 0
    res = allocate([0.0, 1.0, 0.0, 2.0], 31, lower, upper, cost="rloo")
    np.testing.assert_allclose(res.n, [5.5, 10, 5.5, 10])
    assert res.price == 0.0 and res.success
    # all zero: any feasible point is optimal; the documented choice is the common level
    res = allocate(np.zeros(3), 20, [3, 5, 9], [12, 6, 12], cost="drgrpo")
    np.testing.assert_allclose(res.n, [5.5, 5.5, 9])
    assert res.objective == 0.0 and res.success
    res = allocate(np.zeros(3), 20, [3, 5, 9], [12, 6, 12], cost="drgrpo", integer=True)
    assert res.n.tolist() == [6, 5, 9]  # floor of the level, then fewest rollouts, lowest index
    assert res.success


def test_budget_at_the_ends():
    a = np.array([1.0, 2.0, 0.5])
    res = allocate(a, 9, 3, 8, cost="drgrpo")
    np.testing.assert_array_equal(res.n, [3, 3, 3])
    assert res.price == pytest.approx(2.0 * 1 / 27)  # smallest multiplier the KKT conditions allow
    res = allocate(a, 24, 3, 8, cost="drgrpo", integer=True)
    np.testing.assert_array_equal(res.n, [8, 8, 8])
    assert res.success and res.price == 0.0


# ----------------------------------------------------------------------------------------------
# integer
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cost", COSTS)
def test_integer_matches_brute_force(cost):
    rng = np.random.default_rng(4)
    for trial in range(15):
        size = int(rng.integers(1, 5))
        a, budget, lower, upper = random_instance(rng, cost, size, zeros=trial % 4 == 0, integer=True)
        upper = np.minimum(upper, lower + 7)
        budget = int(rng.integers(lower.sum(), upper.sum() + 1))
        res = allocate(a, budget, lower, upper, cost=cost, integer=True)
        assert res.success, res.message
        assert res.n.dtype == np.int64 and res.n.sum() == budget
        assert np.all(res.n >= lower) and np.all(res.n <= upper)
        best = brute_force_integer(cost, a, budget, lower, upper)
        assert res.objective == pytest.approx(best, rel=1e-12, abs=1e-15)
        assert res.objective >= res.lower_bound - 1e-12 * max(1, abs(res.lower_bound))


@pytest.mark.parametrize("cost", COSTS)
def test_integer_matches_heapq_greedy(cost):
    rng = np.random.default_rng(5)
    for trial in range(10):
        a, budget, lower, upper = random_instance(rng, cost, int(rng.integers(5, 60)), integer=True)
        res = allocate(a, budget, lower, upper, cost=cost, integer=True)
        ref = heapq_greedy(cost, a, budget, lower, upper)
        assert res.success
        assert res.objective == pytest.approx(f_value(cost, a, ref), rel=1e-12)


def test_integer_fallback_paths_are_exact():
    """The heap fallbacks of solve_integer (used only if the fast path fails its certificate)."""
    rng = np.random.default_rng(6)
    a, budget, lower, upper = random_instance(rng, "rloo", 30, integer=True)
    best = allocate(a, budget, lower, upper, cost="rloo", integer=True).objective
    # a continuous point far from optimal (all mass on the lower bounds) forces the heap path
    x, detail, path = K.solve_integer(K.RLOO, a, lower, upper, budget, lower.copy())
    assert detail == K.CERT_OK and path in (1, 2)
    assert f_value("rloo", a, x) == pytest.approx(best, rel=1e-12)
    # a start above the optimum (sum > budget) falls back to the lower bounds
    x, detail, path = K.solve_integer(K.RLOO, a, lower, upper, budget, upper.copy())
    assert detail == K.CERT_OK
    assert f_value("rloo", a, x) == pytest.approx(best, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# kernels == pure-Python twins
# ----------------------------------------------------------------------------------------------


def test_kth_smallest_equals_numpy_partition(monkeypatch):
    """The integer fast path's selection (quickselect with a three-way partition) returns
    np.partition(v, k)[k] -- compiled and pure-Python twin -- on random, heavily tied, -inf-laden,
    constant, sorted and reversed arrays; and so does its sort fallback (forced in the twin by a
    round limit of 0, since median-of-three rarely exhausts the real one)."""
    rng = np.random.default_rng(11)
    for trial in range(2000):
        size = int(rng.integers(1, 80))
        kind = trial % 5
        if kind == 0:
            v = rng.normal(size=size)
        elif kind == 1:
            v = rng.integers(0, 3, size).astype(float)
        elif kind == 2:
            v = np.where(rng.random(size) < 0.3, -np.inf, rng.random(size))
        elif kind == 3:
            v = np.full(size, 2.5)
        else:
            v = np.sort(rng.normal(size=size))[:: 1 if trial % 2 else -1].copy()
        k = int(rng.integers(0, size))
        expected = np.partition(v, k)[k]
        assert K.kth_smallest(v, k) == expected
        assert K.kth_smallest.py_func(v, k) == expected
    class NoRounds:  # log2 -> -4 makes the round limit 2 * (-4) + 8 = 0: sort at once
        @staticmethod
        def log2(x):
            return -4.0

    monkeypatch.setattr(K, "math", NoRounds)
    for trial in range(200):
        v = rng.integers(0, 5, int(rng.integers(2, 40))).astype(float)
        k = int(rng.integers(0, v.size))
        assert K.kth_smallest.py_func(v, k) == np.partition(v, k)[k]
    monkeypatch.undo()
    v = rng.normal(size=100_000)
    before = v.copy()
    assert K.kth_smallest(v, 12_345) == np.partition(v, 12_345)[12_345]
    assert np.array_equal(v, before)  # works on a scratch copy


@pytest.mark.parametrize("cost", COSTS)
def test_kernels_equal_python_twins(cost):
    code = get_cost(cost).code
    rng = np.random.default_rng(7)
    for trial in range(4):
        a, budget, lower, upper = random_instance(rng, cost, 12, zeros=trial == 1, integer=True)
        n1, p1, ok1 = K.solve_continuous(code, a, lower, upper, float(budget))
        n2, p2, ok2 = K.solve_continuous.py_func(code, a, lower, upper, float(budget))
        np.testing.assert_allclose(n1, n2, rtol=1e-13)
        assert p1 == pytest.approx(p2, rel=1e-12) and ok1 == ok2
        pos = a > 0
        root = np.sqrt(a)
        s1 = K.price_search(code, a, root, lower, upper, budget - lower[~pos].sum(), False)
        s2 = K.price_search.py_func(code, a, root, lower, upper, budget - lower[~pos].sum(), False)
        assert s1[0] == pytest.approx(s2[0], rel=1e-12) and s1[1:3] == s2[1:3]
        np.testing.assert_allclose(s1[3], s2[3], rtol=1e-12)
        x1 = K.solve_integer(code, a, lower, upper, budget, n1)
        x2 = K.solve_integer.py_func(code, a, lower, upper, budget, n1)
        np.testing.assert_array_equal(x1[0], x2[0])
        assert x1[1:] == x2[1:]
        assert K.certify_continuous(code, a, lower, upper, float(budget), n1, p1) == (
            K.certify_continuous.py_func(code, a, lower, upper, float(budget), n1, p1)
        )
        r1 = K.round_greedy_kernel(code, a, n1, upper, budget)
        r2 = K.round_greedy_kernel.py_func(code, a, n1, upper, budget)
        np.testing.assert_array_equal(r1[0], r2[0])


def test_drgrpo_inverse_roots():
    for y in [1e-12, 1e-6, 1e-3, 0.02, 1 / 27 - 1e-9, 1 / 27]:
        n = K.drgrpo_inverse(y)
        assert n >= 3
        assert (n - 2) / n**3 == pytest.approx(y, rel=1e-10)


def test_drgrpo_vectorised_pass_roots_are_the_cubic_roots():
    """The price search's vectorised drgrpo pass (VIP Thm 5.1: n solves a (n - 2)/n^3 = lambda):
    compiled == pure-Python twin; the class of each prompt is the bound test of solve_continuous
    (y >= g(L): lower, y <= g(U): upper); every root it marks as trusted equals the closed-form
    root drgrpo_inverse(y) to a few ulp, from cold (guess < 0) and from perturbed warm starts, and
    roots near the double root n = 3 are left to the closed form."""
    rng = np.random.default_rng(12)
    size = 4000
    a = np.exp(rng.uniform(-12, 12, size))
    root = np.sqrt(a)
    lower = rng.integers(3, 6, size).astype(float)
    upper = lower + rng.integers(0, 200, size)
    upper[::7] = np.inf
    for s in (0.3, 3.0, 11.4, 250.0):
        y = 1.0 / a / (s * s)
        exact = np.array([K.drgrpo_inverse(v) for v in y])
        for guess in (np.full(size, -1.0), exact * (1.0 + rng.uniform(-0.05, 0.05, size))):
            out = []
            for fn in (K._drgrpo_pass_roots, K._drgrpo_pass_roots.py_func):
                n, cls = np.empty(size), np.empty(size, dtype=np.int8)
                fn(a, root, lower, upper, s, guess, n, cls)
                out.append((n, cls))
            np.testing.assert_array_equal(out[0][0], out[1][0])
            np.testing.assert_array_equal(out[0][1], out[1][1])
            n, cls = out[0]
            g_lower = (lower - 2.0) / lower**3
            with np.errstate(invalid="ignore"):  # inf / inf where upper = inf (masked out)
                g_upper = np.where(np.isfinite(upper), (upper - 2.0) / upper**3, 0.0)
            np.testing.assert_array_equal(cls == K._AT_LOWER, y >= g_lower)
            np.testing.assert_array_equal(cls == K._AT_UPPER, (y < g_lower) & (y <= g_upper))
            ok = cls == K._NEWTON_OK
            assert ok.sum() > 0
            np.testing.assert_allclose(n[ok], exact[ok], rtol=1e-14)
            assert np.all(exact[ok] >= 4.0 - 1e-9)


# ----------------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------------


@st.composite
def instances(draw, integer=False):
    cost = draw(st.sampled_from(COSTS))
    size = draw(st.integers(1, 12))
    a = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-4, 1e3)), min_size=size, max_size=size)))
    base = 3 if cost == "drgrpo" else 2
    lower = np.array(draw(st.lists(st.integers(base, base + 5), min_size=size, max_size=size)), float)
    width = np.array(draw(st.lists(st.integers(0, 40), min_size=size, max_size=size)), float)
    upper = lower + width
    if not integer and draw(st.booleans()):
        upper[0] = np.inf
    hi = upper.sum() if np.isfinite(upper.sum()) else lower.sum() + 50
    t = draw(st.floats(0, 1))
    budget = lower.sum() + t * (hi - lower.sum())
    if integer:
        budget = int(math.floor(budget))
    return cost, a, budget, lower, upper


@settings(max_examples=60)
@given(instances())
def test_property_feasible_and_certified(inst):
    """VIP Thm 5.1/5.2 (and GDRO eq. 21): the returned point is feasible and satisfies the KKT
    conditions (equal marginal cost = price on interior prompts, one-sided at the bounds)."""
    cost, a, budget, lower, upper = inst
    res = allocate(a, budget, lower, upper, cost=cost)
    check_certificate(res, cost, a, budget, lower, upper)
    assert res.objective == res.lower_bound


@settings(max_examples=60)
@given(instances(integer=True))
def test_property_integer_between_relaxation_and_roundings(inst):
    """VIP eq. (5) vs the relaxation (6)/(8) and Algorithm 2: continuous optimum <= integer
    optimum <= VIP greedy rounding and <= naive largest-remainder rounding."""
    cost, a, budget, lower, upper = inst
    res = allocate(a, budget, lower, upper, cost=cost, integer=True)
    assert res.success, res.message
    assert res.n.sum() == budget and np.all(res.n >= lower) and np.all(res.n <= upper)
    tol = 1e-12 * max(1.0, abs(res.objective))
    assert res.objective >= res.lower_bound - tol
    cont = allocate(a, budget, lower, upper, cost=cost)
    assert res.lower_bound == pytest.approx(cont.objective, rel=1e-12)
    n_c = np.clip(cont.n, lower, upper)
    if np.floor(n_c).sum() <= budget:
        rg = round_greedy(n_c, a, budget, lower, upper, cost=cost)
        assert res.objective <= rg.objective + tol
    # naive rounding: floor, then the leftover to the largest fractional parts (capacity permitting)
    naive = np.floor(n_c).astype(np.int64)
    order = np.argsort(-(n_c - naive), kind="stable")
    left = budget - naive.sum()
    for q in itertools.cycle(order):
        if left <= 0:
            break
        if naive[q] < upper[q]:
            naive[q] += 1
            left -= 1
    assert res.objective <= f_value(cost, a, naive) + tol


@settings(max_examples=40)
@given(instances(), st.integers(0, 11), st.floats(1.01, 10.0))
def test_property_monotone_in_a(inst, which, factor):
    """VIP Thm 5.1/5.2 structure: n_q*(lambda) increases with a_q, so raising one prompt's a_q
    (others fixed) never gives it fewer rollouts."""
    cost, a, budget, lower, upper = inst
    q = which % a.size
    a2 = a.copy()
    a2[q] = a[q] * factor if a[q] > 0 else 1.0
    n1 = allocate(a, budget, lower, upper, cost=cost).n[q]
    n2 = allocate(a2, budget, lower, upper, cost=cost).n[q]
    assert n2 >= n1 - 1e-9 * max(1.0, n1)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


def test_errors():
    a = np.ones(16)
    with pytest.raises(ValueError, match=r"budget 37 is infeasible: need sum\(lower\)=48 <= budget <= sum\(upper\)=384"):
        allocate(a, 37, 3, 24)
    with pytest.raises(ValueError, match=r"budget 400 is infeasible"):
        allocate(a, 400, 3, 24, integer=True)
    with pytest.raises(ValueError, match="a must be non-negative"):
        allocate([1.0, -1.0], 10, 3, 10)
    with pytest.raises(ValueError, match="a must be finite"):
        allocate([1.0, np.nan], 10, 3, 10)
    with pytest.raises(ValueError, match="a must be finite"):
        allocate([1.0, np.inf], 10, 3, 10)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        allocate([1.0, 1.0], 10, [3, 5], [4, 4])
    with pytest.raises(ValueError, match=r"cost 'drgrpo' .* needs lower >= 3"):
        allocate([1.0, 1.0], 10, 2, 10, cost="drgrpo")
    with pytest.raises(ValueError, match=r"cost 'rloo' .* needs lower > 1"):
        allocate([1.0, 1.0], 10, 1, 10, cost="rloo")
    with pytest.raises(ValueError, match=r"cost 'inverse' .* needs lower > 0"):
        allocate([1.0, 1.0], 10, 0, 10, cost="inverse")
    with pytest.raises(ValueError, match=r"unknown cost 'grpo'; valid costs: \['drgrpo', 'inverse', 'rloo'\]"):
        allocate([1.0], 5, 3, 10, cost="grpo")
    with pytest.raises(ValueError, match="lower must be a scalar or have length 2"):
        allocate([1.0, 1.0], 10, [3, 3, 3], 10)
    with pytest.raises(ValueError, match="a must be 1-D"):
        allocate([[1.0, 1.0]], 10, 3, 10)
    with pytest.raises(ValueError, match="integer=True needs integer lower bounds"):
        allocate([1.0, 1.0], 10, 3.5, 10, integer=True)
    with pytest.raises(ValueError, match="budget must be an integer"):
        allocate([1.0, 1.0], 10.5, 3, 10, integer=True)
    with pytest.raises(ValueError, match="upper must not contain NaN"):
        allocate([1.0, 1.0], 10, 3, [10, np.nan])
    with pytest.raises(TypeError, match="integer must be a bool"):
        allocate([1.0, 1.0], 10, 3, 10, integer=1)
    with pytest.raises(TypeError, match="cost must be a string"):
        allocate([1.0, 1.0], 10, 3, 10, cost=None)
    assert set(COST_FAMILIES) == {"rloo", "drgrpo", "inverse"}


def test_errors_on_the_fast_path():
    """float64 arrays with scalar bounds take the one-pass Numba check; bad values still raise the
    full validation's messages."""
    ok = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="a must be non-negative"):
        allocate(np.array([1.0, -1.0]), 10.0, 3.0, 10.0)
    with pytest.raises(ValueError, match="a must be finite"):
        allocate(np.array([1.0, np.nan]), 10.0, 3.0, 10.0)
    with pytest.raises(ValueError, match=r"budget 5 is infeasible: need sum\(lower\)=6"):
        allocate(ok, 5, 3, 10)
    with pytest.raises(ValueError, match=r"budget 21 is infeasible: .* sum\(upper\)=20"):
        allocate(ok, 21, 3.0, 10.0, integer=True)
    with pytest.raises(ValueError, match="lower must be <= upper"):
        allocate(ok, 10, np.array([3.0, 5.0]), np.array([4.0, 4.0]))
    with pytest.raises(ValueError, match="needs lower >= 3"):
        allocate(ok, 10, 2.5, 10.0, cost="drgrpo")
    with pytest.raises(ValueError, match="integer=True needs integer .*upper"):
        allocate(ok, 10, 3, np.array([10.0, 7.5]), integer=True)
    with pytest.raises(ValueError, match="lower must be finite"):
        allocate(ok, 10, np.array([3.0, np.inf]), np.inf)
    with pytest.raises(ValueError, match="budget must be finite"):
        allocate(ok, np.inf, 3, np.inf)
    with pytest.raises(ValueError, match="budget must be an integer"):
        allocate(ok, 10.5, 3, 10, integer=True)
    # and valid input gives the same answer on both paths
    r1 = allocate(ok, 10.0, 3.0, 10.0)
    r2 = allocate([1, 2], 10, [3, 3], [10, 10])
    np.testing.assert_array_equal(r1.n, r2.n)


@pytest.mark.parametrize("cost", COSTS)
def test_cost_registry_callables(cost):
    """Registry entries: value is f, marginal is -f' (central difference), inverse inverts it."""
    fam = COST_FAMILIES[cost]
    a = np.array([0.5, 2.0, 7.0])
    n = np.array([3.5, 6.0, 40.0])
    np.testing.assert_allclose(fam.value(a, n), [f_value(cost, a[i : i + 1], n[i : i + 1]) for i in range(3)])
    h = 1e-5
    fd = -(fam.value(a, n + h) - fam.value(a, n - h)) / (2 * h)
    np.testing.assert_allclose(fam.marginal(a, n), fd, rtol=1e-6)
    np.testing.assert_allclose(fam.inverse(a, fam.marginal(a, n)), n, rtol=1e-10)
    assert fam.value(np.array([0.0]), np.array([5.0]))[0] == 0.0


@pytest.mark.parametrize("cost", COSTS)
def test_extreme_scales(cost):
    """Denormal, tiny and huge a (found by hypothesis: a*s*s underflowing to 0 once raised
    ZeroDivisionError in a kernel; kernels now use IEEE division)."""
    for a in ([36.0, 5e-324], [1e-300, 1e300, 1.0], [1e-12, 1e-12], [1e12, 3.0, 0.0]):
        a = np.array(a)
        for budget in (3.0 * a.size, 3.0 * a.size + 0.5, 3.0 * a.size + 7.0):
            res = allocate(a, budget, 3, 10, cost=cost)
            assert res.success, (a, budget, res.message)
            assert np.all(np.isfinite(res.n)) and abs(res.n.sum() - budget) <= 1e-9 * budget
            ires = allocate(a, int(budget), 3, 10, cost=cost, integer=True)
            assert ires.success and ires.n.sum() == int(budget)


def test_budget_equal_to_sum_of_lower_in_any_summation_order():
    """A budget equal to numpy's (pairwise) sum(lower) is feasible even where a sequential sum
    differs by an ulp; the answer is the lower bounds."""
    rng = np.random.default_rng(8)
    for _ in range(20):
        lower = 1.5 + rng.random(1000)
        upper = lower + 3.0
        a = rng.random(1000)
        res = allocate(a, float(lower.sum()), lower, upper)
        assert res.success, res.message
        np.testing.assert_allclose(res.n, lower, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cost", COSTS)
def test_fused_exchange_check_equals_certificate(cost):
    """The fast path's fused exchange check agrees with certify_integer on x in {y, y + 1}."""
    code = get_cost(cost).code
    rng = np.random.default_rng(9)
    agree = {True: 0, False: 0}
    for _ in range(300):
        size = int(rng.integers(1, 8))
        a = np.round(rng.random(size), 1)
        lower = np.full(size, 3.0)
        upper = lower + rng.integers(0, 4, size)
        start = (lower + np.floor(rng.random(size) * (upper - lower + 1))).astype(np.int64)
        start = np.minimum(start, upper.astype(np.int64))
        x = start + ((rng.random(size) < 0.5) & (start < upper)).astype(np.int64)
        gain = np.array([K.cost_gain(code, a[q], float(start[q])) if start[q] < upper[q] else -np.inf
                         for q in range(size)])
        fused = K._exchange_ok_from(code, a, lower, upper, start, x, gain)
        full = K.certify_integer(code, a, lower, upper, int(x.sum()), x)[0] == K.CERT_OK
        assert fused == full
        agree[full] += 1
    assert agree[True] > 10 and agree[False] > 10


def test_drgrpo_prompt_at_its_upper_breakpoint_is_certified():
    """Found in review: the price search classified a prompt as "at upper" (y <= g(U)) while the
    final allocation recomputed its root from a differently rounded y, landing 1 ulp inside
    (L, U): the prompt then counted as interior with marginal != price and the certificate
    failed on a correct allocation (with the price from the flat-case rule). The final n must
    use the same classification as the search; the price is then a valid KKT multiplier."""
    a = np.array([1.6388260078307058, 0.0009164608999842722, 1.8400561922810077,
                  0.028537023044144027, 0.16532588069790222, 1.5196553236068147])
    lower = np.array([4.0, 3.0, 4.0, 4.0, 4.0, 4.0])
    upper = np.array([5.0, 5.0, 6.0, 5.0, 9.0, 8.0])
    res = allocate(a, 35.0, lower, upper, cost="drgrpo")
    check_certificate(res, "drgrpo", a, 35.0, lower, upper)
    n_ref, _ = slow_drgrpo(a, 35.0, lower, upper)
    np.testing.assert_allclose(res.n, n_ref, rtol=1e-9)
    assert allocate(a, 35, lower, upper, cost="drgrpo", integer=True).success


@pytest.mark.parametrize("cost", COSTS)
def test_small_integer_bounds_sweep_certified(cost):
    """Many small instances with integer bounds (the setting where budgets hit breakpoints
    exactly): every continuous answer certified against independent KKT formulas, every
    integer answer equal to an independent greedy from the lower bounds."""
    rng = np.random.default_rng(11)
    base = {"rloo": 2, "drgrpo": 3, "inverse": 1}[cost]
    for _ in range(400):
        size = int(rng.integers(1, 10))
        a = rng.gamma(0.5, 1.0, size) * 10.0 ** rng.uniform(-3, 3, size)
        lower = base + rng.integers(0, 3, size).astype(float)
        upper = lower + rng.integers(0, 6, size).astype(float)
        budget = int(rng.integers(lower.sum(), upper.sum() + 1))
        res = allocate(a, float(budget), lower, upper, cost=cost)
        check_certificate(res, cost, a, budget, lower, upper)
        ires = allocate(a, budget, lower, upper, cost=cost, integer=True)
        assert ires.success, ires.message
        ref = heapq_greedy(cost, a, budget, lower, upper)
        assert ires.objective <= f_value(cost, a, ref) * (1 + 1e-12)


@pytest.mark.parametrize("cost", COSTS)
def test_huge_a_objective_is_finite(cost):
    """Found in review: a * (n - 1) / n^2 overflowed to inf for a near DBL_MAX (drgrpo), so a
    certified result reported objective = inf; the kernels now scale a last."""
    a = np.array([1e308, 0.5e308])
    for integer in (False, True):
        res = allocate(a, 8, 3, 8, cost=cost, integer=integer)
        assert res.success, res.message
        assert np.isfinite(res.objective) and np.isfinite(res.lower_bound)
        assert res.objective == pytest.approx(f_value(cost, a / 1e300, res.n) * 1e300, rel=1e-12)
    fam = get_cost(cost)
    assert np.all(np.isfinite(fam.marginal(a, np.array([3.5, 4.0]))))
    assert np.all(np.isfinite([K.cost_gain(fam.code, 1e308, 3.0), K.cost_value(fam.code, 1e308, 3.0)]))


@pytest.mark.parametrize("cost", COSTS)
def test_a_spanning_hundreds_of_orders_of_magnitude(cost):
    """Found in review: with a_q spread over 1e-300..1e300 the price search's bisection fallback
    (arithmetic midpoint, doubling) ran out of its 300 iterations (status ITERATION_LIMIT on
    ~1/3 of such instances); the fallback is now geometric while the bracket is wide."""
    rng = np.random.default_rng(12)
    base = {"rloo": 2, "drgrpo": 3, "inverse": 1}[cost]
    for _ in range(150):
        size = int(rng.integers(2, 12))
        a = 10.0 ** rng.uniform(-300, 300, size)
        lower = base + rng.integers(0, 3, size).astype(float)
        upper = lower + rng.integers(0, 60, size).astype(float)
        if rng.random() < 0.3:
            upper[rng.random(size) < 0.3] = np.inf
        hi = upper.sum() if np.isfinite(upper.sum()) else lower.sum() + 30 * size
        budget = int(rng.integers(lower.sum(), hi + 1))
        res = allocate(a, float(budget), lower, upper, cost=cost)
        assert res.success, (a, budget, lower, upper, res.message)
        assert np.all(np.isfinite(res.n)) and abs(res.n.sum() - budget) <= 1e-9 * budget
        ires = allocate(a, budget, lower, upper, cost=cost, integer=True)
        assert ires.success and ires.n.sum() == budget, ires.message


def test_price_is_the_smallest_multiplier_when_the_budget_sits_on_a_breakpoint():
    """Found in review: with integer bounds and budget the budget often falls on a breakpoint
    of S(lambda) where no prompt is strictly interior, and rounding left one prompt a few ulps
    inside its bound; the price was then that prompt's marginal (the largest multiplier, the
    left derivative of the optimal value) instead of the documented smallest one (the right
    derivative -dV/dC+). Reference: a one-sided finite difference of the optimal value."""
    a = np.array([0.50640518, 0.9683211, 3.35664437, 0.39758009])
    lower, upper = np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 4.0, 6.0])
    res = allocate(a, 9.0, lower, upper, cost="inverse")
    assert res.n.tolist() == [1.0, 1.0, 4.0, 3.0]
    assert res.price == pytest.approx(a[3] / 9.0, rel=1e-12)  # prompt 3 absorbs extra budget
    rng = np.random.default_rng(13)
    checked = 0
    for t in range(600):
        cost = ["rloo", "inverse", "drgrpo"][t % 3]
        size = int(rng.integers(1, 7))
        a = rng.choice([0.0, 0.5, 1.0, 3.0], size) * rng.uniform(0.5, 2, size)
        base = {"rloo": 2, "drgrpo": 3, "inverse": 1}[cost]
        lower = base + rng.integers(0, 3, size).astype(float)
        upper = lower + rng.integers(0, 4, size).astype(float)
        budget = float(rng.integers(lower.sum(), upper.sum() + 1))
        res = allocate(a, budget, lower, upper, cost=cost)
        h = 1e-6
        if budget + h > upper.sum() or (cost == "drgrpo" and np.any(res.n == 3.0)):
            continue  # no right derivative / f'' = 0 at n = 3 makes the difference inaccurate
        right = -(allocate(a, budget + h, lower, upper, cost=cost).objective - res.objective) / h
        assert res.price == pytest.approx(right, rel=1e-4, abs=1e-9), (cost, a, budget, lower, upper)
        checked += 1
    assert checked > 300


def test_discrete_convexity_on_the_admissible_integer_range():
    """The integer solver (greedy + exchange certificate) is exact only for discretely convex
    costs: gains f(n) - f(n+1) non-increasing in n. Checked in exact rational arithmetic for
    a (n-1)/n^2 on n >= 3, a/(n-1) on n >= 2 and a/n on n >= 1 (n up to 2000), and the gain
    closed forms of the kernel against the plain difference. Also: drgrpo from n = 2 is NOT
    discretely convex (gain(2) = a/36 < gain(3) = 5a/144), which is why lower >= 3 is required."""
    from fractions import Fraction as Fr

    f = {
        "rloo": lambda n: Fr(1, n - 1),
        "drgrpo": lambda n: Fr(n - 1, n * n),
        "inverse": lambda n: Fr(1, n),
    }
    start = {"rloo": 2, "drgrpo": 3, "inverse": 1}
    for cost, fn in f.items():
        code = get_cost(cost).code
        gains = [fn(n) - fn(n + 1) for n in range(start[cost], 2001)]
        assert all(g1 >= g2 > 0 for g1, g2 in zip(gains, gains[1:])), cost
        for n, g in zip(range(start[cost], 2001, 37), gains[::37]):
            assert K.cost_gain(code, 1.0, float(n)) == pytest.approx(float(g), rel=1e-15)
    assert f["drgrpo"](2) - f["drgrpo"](3) < f["drgrpo"](3) - f["drgrpo"](4)
    with pytest.raises(ValueError, match="needs lower >= 3"):
        allocate([1.0, 1.0], 7, 2, 10, cost="drgrpo", integer=True)


def test_integer_budget_beyond_float64_integers_is_rejected():
    """Found in review: an integer budget above 2**53 was rounded to the nearest float64 and the
    allocation silently summed to a different total (2**53 + 1 -> 2**53, "optimal")."""
    for budget in (2**53 + 1, np.int64(2**60)):
        with pytest.raises(ValueError, match=r"budget .* exceeds 2\*\*53"):
            allocate(np.array([1.0, 2.0]), budget, 3, np.inf, cost="rloo", integer=True)
    res = allocate(np.array([1.0, 2.0]), 2**53, 3, np.inf, cost="rloo", integer=True)
    assert int(res.n.sum()) == 2**53


def test_scalar_bound_cache_is_bounded_and_never_changes_results():
    """Scalar bounds are broadcast once per (value, size) and reused: results equal those with
    explicit arrays, the cached arrays keep their values after solves, and the cache stays small."""
    from solvers import allocation as alloc_mod

    rng = np.random.default_rng(13)
    for trial in range(40):
        size = int(rng.integers(1, 50))
        a = rng.uniform(0.0, 2.0, size)
        lo, hi = int(rng.integers(2, 5)), float(rng.integers(6, 20))
        budget = int(rng.integers(lo * size, int(hi) * size + 1))
        for integer in (False, True):
            got = allocate(a, budget, lo, hi, cost="rloo", integer=integer)
            ref = allocate(a, budget, np.full(size, float(lo)), np.full(size, hi), cost="rloo", integer=integer)
            np.testing.assert_array_equal(got.n, ref.n)
    assert len(alloc_mod._SCALAR_BOUNDS) <= alloc_mod._SCALAR_BOUNDS_MAX_ENTRIES
    for (value, size), arr in alloc_mod._SCALAR_BOUNDS.items():
        assert arr.shape == (size,) and np.all(arr == value)


# -- extreme inputs ----------------------------------------------------------------------------


def test_huge_python_int_budget_and_bounds_raise_value_errors():
    """Extreme inputs: ``allocate(np.array([1.0]), 10**400, 2.0, np.inf)`` raised OverflowError in the
    fast path (``math.isfinite`` of a huge int); the same for a huge int bound."""
    with pytest.raises(ValueError, match="budget must be finite, got the integer"):
        allocate(np.array([1.0]), 10**400, 2.0, np.inf)
    with pytest.raises(ValueError, match="budget must be <= 9223372036854775807, got 10000000"):
        allocate(np.array([1.0]), 10**30, 2.0, 16.0, integer=True)
    with pytest.raises(ValueError, match="lower must be an array of real numbers|lower must be finite"):
        allocate(np.array([1.0]), 4.0, 10**400, np.inf)
    with pytest.raises(ValueError, match="upper"):
        allocate(np.array([1.0, 1.0]), 4.0, 2.0, -(10**400))


@pytest.mark.parametrize("integer", [False, True])
def test_drgrpo_tiny_a_still_gives_the_feasible_optimum(integer):
    """Extreme inputs: ``allocate([5e-324], 5.0, 3.0, 16.0, cost="drgrpo")`` failed to find the only
    feasible point n = 5, and ``[1e-310, 1e-310]`` with budget 10 returned NaN: the kernels formed
    ``y = (1/a) / s^2``, and ``1/a`` overflows for a < 1/DBL_MAX. Now ``y = 1/((a s) s)``."""
    res = allocate(np.array([5e-324]), 5, 3.0, 16.0, cost="drgrpo", integer=integer)
    assert res.success, res.message
    np.testing.assert_allclose(res.n, [5], rtol=1e-13)
    res = allocate(np.array([1e-310, 1e-310]), 10, 3.0, 16.0, cost="drgrpo", integer=integer)
    assert res.success, res.message
    np.testing.assert_allclose(res.n, [5, 5], rtol=1e-13)
    # mixed scales: the tiny prompts sit at their lower bound, the unit one takes the rest
    for cost in ("drgrpo", "rloo", "inverse"):
        a = np.array([1e-310, 1.0, 5e-324, 1e-300])
        res = allocate(a, 30, 3.0, 16.0, cost=cost, integer=integer)
        assert res.success and np.all(np.isfinite(res.n)) and res.n.sum() == 30, (cost, res)
        assert res.n[1] == 16


def test_overflowing_objective_is_reported_not_success():
    """Extreme inputs: an objective that overflows float64 (``a`` near DBL_MAX) was returned as inf with
    ``success=True``; the allocation is right, the objective is not representable: OVERFLOW."""
    big = np.finfo(np.float64).max
    res = allocate(np.array([big, big]), 4.0, 1.5, 16.0, cost="rloo")
    np.testing.assert_allclose(res.n, [2.0, 2.0])
    assert not res.success and res.status == 4 and "objective" in res.message
    res = allocate([1e308], 1 + 2**-52, 1 + 2**-52, np.inf)
    assert not res.success and res.objective == np.inf


@settings(max_examples=200)
@given(
    st.lists(st.integers(-5, 5), min_size=1, max_size=60),
    st.integers(0, 30),
    st.integers(0, 30),
)
def test_small_sorts_match_numpy(values, lo, length):
    """The compile-light sorts of the integer path equal NumPy's: ``_heapsort_range`` sorts exactly
    the slice ``w[lo:hi+1]`` (values outside it untouched) and ``_stable_argsort`` is
    ``np.argsort(kind="mergesort")`` (ties in index order), compiled and as their Python twins."""
    keys = np.array(values, dtype=np.int64)
    for fn in (K._stable_argsort, K._stable_argsort.py_func):
        np.testing.assert_array_equal(fn(keys), np.argsort(keys, kind="mergesort"))
    w = keys.astype(np.float64) + 0.25 * (np.arange(keys.size) % 3)
    lo = min(lo, w.size - 1)
    hi = min(lo + length, w.size - 1)
    expected = w.copy()
    expected[lo:hi + 1] = np.sort(expected[lo:hi + 1])
    for fn in (K._heapsort_range, K._heapsort_range.py_func):
        got = w.copy()
        fn(got, np.int64(lo), np.int64(hi))
        np.testing.assert_array_equal(got, expected)


def test_allocate_kernel_recompiles_with_the_greedy_only_when_the_fast_path_fails(monkeypatch):
    """allocate_kernel's glue: the integer kernel without the heap greedy (greedy=None) reports
    _NEEDS_GREEDY when its fast path fails, and the wrapper then solves again with the greedy,
    giving solve_integer's result (the exact optimum)."""
    rng = np.random.default_rng(6)
    a, budget, lower, upper = random_instance(rng, "rloo", 30, integer=True)
    best = allocate(a, budget, lower, upper, cost="rloo", integer=True)
    start = lower.copy()  # a continuous point far from optimal: the fast path fails
    lb = best.lower_bound
    x, _, _, path = K.allocate_integer(K.RLOO, a, lower, upper, int(budget), start, lb, K.CERT_OK, None)
    assert path == K._NEEDS_GREEDY
    real = K.allocate_continuous

    def far_start(code, a_, lower_, upper_, budget_, integer, check_inputs, drgrpo):
        _, price, lower_bound, detail, where, converged = real(code, a_, lower_, upper_, budget_, integer,
                                                               check_inputs, drgrpo)
        return lower_.copy(), price, lower_bound, detail, where, converged

    monkeypatch.setattr(K, "allocate_continuous", far_start)
    out = K.allocate_kernel(K.RLOO, a, lower, upper, float(budget), True, False)
    x, detail, path = out[1], out[5], out[8]
    assert detail == K.CERT_OK and path in (1, 2)
    expected, _, _ = K.solve_integer(K.RLOO, a, lower, upper, budget, lower.copy())
    np.testing.assert_array_equal(x, expected)
    assert f_value("rloo", a, x) == pytest.approx(best.objective, rel=1e-12)
