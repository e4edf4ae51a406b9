"""Tests of solvers.round_greedy: VIP Algorithm 2 (Appendix D), reproduced literally."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import allocate, round_greedy


def f(cost, a, n):
    if a == 0.0:
        return 0.0
    if cost == "rloo":
        return a / (n - 1)
    if cost == "drgrpo":
        return a * (n - 1) / n**2
    return a / n


def algorithm2_literal(n_star, a, budget, lower, upper, cost):
    """VIP Algorithm 2 line by line, with a linear argmax (numpy.argmax: first index on ties)."""
    size = len(a)
    upper = np.broadcast_to(np.asarray(upper, float), (size,))
    n_hat = [math.floor(v) for v in n_star]  # 1
    c_rem = budget - sum(n_hat)  # 2
    delta = [-np.inf] * size
    for q in range(size):  # 3-5
        if n_hat[q] < upper[q]:
            delta[q] = f(cost, a[q], n_hat[q]) - f(cost, a[q], n_hat[q] + 1)
    while c_rem > 0:  # 6
        cand = [delta[q] if n_hat[q] < upper[q] else -np.inf for q in range(size)]
        q_star = int(np.argmax(cand))  # 7
        n_hat[q_star] += 1  # 8
        delta[q_star] = f(cost, a[q_star], n_hat[q_star]) - f(cost, a[q_star], n_hat[q_star] + 1)  # 9
        c_rem -= 1  # 10
    return np.array(n_hat)


@pytest.mark.parametrize("cost", ["rloo", "drgrpo", "inverse"])
def test_matches_literal_algorithm2(cost):
    rng = np.random.default_rng(11)
    for trial in range(25):
        size = int(rng.integers(1, 40))
        a = rng.gamma(0.8, 1.0, size)
        if trial % 3 == 0:
            a = np.round(a, 1)  # many exact ties
        if trial % 4 == 0:
            a[rng.random(size) < 0.3] = 0.0
        lower = 3 + rng.integers(0, 3, size)
        upper = lower + rng.integers(0, 20, size)
        budget = int(rng.integers(lower.sum(), upper.sum() + 1))
        cont = allocate(a, budget, lower, upper, cost=cost)
        res = round_greedy(cont.n, a, budget, lower, upper, cost=cost)
        ref = algorithm2_literal(cont.n, a, budget, lower, upper, cost)
        np.testing.assert_array_equal(res.n, ref)
        assert res.n.sum() == budget and np.all(res.n >= lower) and np.all(res.n <= upper)
        assert res.steps == budget - np.floor(cont.n).sum()
        assert res.objective == pytest.approx(sum(f(cost, a[q], res.n[q]) for q in range(size)), rel=1e-12)


def test_quirk_floor_without_tolerance_and_first_index_ties():
    """Floor takes 4.9999999999 to 4; with equal incentives the lowest index gets the unit."""
    a = [1.0, 1.0, 1.0]
    res = round_greedy([4.9999999999, 5.0, 5.0], a, 15, 3, 10, cost="rloo")
    # floor -> [4, 5, 5]; prompt 0 has the largest incentive (fewest rollouts)
    assert res.n.tolist() == [5, 5, 5] and res.steps == 1
    res = round_greedy([4.0, 4.0, 4.0], a, 13, 3, 10, cost="rloo")
    assert res.n.tolist() == [5, 4, 4]  # three-way tie -> index 0


def test_arbitrary_start_is_accepted_and_only_adds():
    """Any n_continuous within the bounds is rounded as given (the paper assumes the optimum)."""
    res = round_greedy([3.0, 3.0, 9.5], [5.0, 0.1, 0.1], 20, 3, 12, cost="inverse")
    assert res.n.sum() == 20 and res.n[2] >= 9 and res.n[0] > 3


@settings(max_examples=40)
@given(
    st.lists(st.floats(0.0, 100.0), min_size=1, max_size=10),
    st.integers(3, 6),
    st.integers(0, 20),
    st.floats(0, 1),
    st.sampled_from(["rloo", "drgrpo", "inverse"]),
)
def test_property_feasible_and_not_better_than_exact(a, low, width, t, cost):
    """VIP Algorithm 2 returns a feasible integer allocation (its stated postcondition), and the
    exact integer optimum of eq. (5) is never worse than it."""
    a = np.array(a)
    size = a.size
    budget = int(size * low + math.floor(t * size * width))
    cont = allocate(a, budget, low, low + width, cost=cost)
    res = round_greedy(cont.n, a, budget, low, low + width, cost=cost)
    assert res.n.sum() == budget and np.all(res.n >= low) and np.all(res.n <= low + width)
    exact = allocate(a, budget, low, low + width, cost=cost, integer=True)
    assert exact.objective <= res.objective + 1e-12 * max(1.0, res.objective)


def test_errors():
    with pytest.raises(ValueError, match=r"sum\(floor\(n_continuous\)\)=30 exceeds budget 20"):
        round_greedy([10.0, 10.0, 10.0], [1, 1, 1], 20, 3, 12, cost="rloo")
    with pytest.raises(ValueError, match="n_continuous must lie within"):
        round_greedy([2.0, 10.0], [1, 1], 12, 3, 12, cost="rloo")
    with pytest.raises(ValueError, match="lower must contain integers"):
        round_greedy([4.0, 4.0], [1, 1], 8, 3.5, 12, cost="rloo")
    with pytest.raises(ValueError, match="upper must contain integers"):
        round_greedy([4.0, 4.0], [1, 1], 8, 3, 12.5, cost="rloo")
    with pytest.raises(ValueError, match=r"budget 5 is infeasible: need sum\(lower\)=6"):
        round_greedy([3.0, 3.0], [1, 1], 5, 3, 12, cost="rloo")
    with pytest.raises(ValueError, match="n_continuous and a must have the same shape"):
        round_greedy([4.0, 4.0, 4.0], [1, 1], 12, 3, 12, cost="rloo")
    with pytest.raises(ValueError, match="unknown cost 'x'; valid costs"):
        round_greedy([4.0, 4.0], [1, 1], 8, 3, 12, cost="x")
    with pytest.raises(ValueError, match="a must be non-negative"):
        round_greedy([4.0, 4.0], [1, -1], 8, 3, 12, cost="rloo")
    with pytest.raises(ValueError, match="needs lower >= 3"):
        round_greedy([4.0, 4.0], [1, 1], 8, 2, 12, cost="drgrpo")


def test_remaining_units_are_bounded():
    """Found by the mixed extreme-input sweep: Algorithm 2 places the units above the floors one
    at a time, so ``budget = 2**40`` with ``upper = 1e308`` looped for hours (uninterruptible, in
    the kernel). More than 2**26 remaining units is now a ValueError; allocate(integer=True)
    solves such budgets in O(B)."""
    a = np.array([0.3, 1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match=r"at most 67108864 \(2\*\*26\) steps"):
        round_greedy(np.array([4.5, 7.5, 3.0, 5.0]), a, 2**40, 3, 1e308, cost="rloo")
    res = allocate(a, 2**40, 3, np.inf, cost="rloo", integer=True)
    assert res.success and int(res.n.sum()) == 2**40
