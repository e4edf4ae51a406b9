"""Tests for solvers.budget_matching.match_budget (GDRO App. C.2.2 "budget matching")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import match_budget, sqrt_allocation
from solvers._status import ADJUSTED, OPTIMAL
from solvers.budget_matching import _budget_dp_kernel, _budget_dp_python, _reachable_kernel


def brute_force(costs, counts, arms, total):
    """Minimum of sum_b counts_b costs[b, k_b] over all K**B choices with the exact total."""
    B, K = costs.shape
    best, best_combo = None, None
    for combo in itertools.product(range(K), repeat=B):
        if sum(int(counts[b]) * int(arms[combo[b]]) for b in range(B)) != total:
            continue
        obj = sum(float(counts[b]) * float(costs[b, combo[b]]) for b in range(B))
        if best is None or obj < best:
            best, best_combo = obj, combo
    return best, best_combo


def reachable_totals(counts, arms):
    return sorted(
        {sum(int(c) * int(arms[k]) for c, k in zip(counts, combo)) for combo in itertools.product(range(len(arms)), repeat=len(counts))}
    )


def random_instance(rng):
    B = int(rng.integers(1, 5))
    K = int(rng.integers(1, 5))
    arms = rng.choice(np.arange(1, 11), size=K, replace=False)
    counts = rng.integers(0, 5, size=B)
    costs = rng.normal(size=(B, K))
    if rng.random() < 0.3:  # integer costs create ties
        costs = np.round(costs)
    return costs, counts, arms


def test_matches_brute_force_on_random_instances():
    rng = np.random.default_rng(20261125)
    solved = unreachable = 0
    for _ in range(400):
        costs, counts, arms = random_instance(rng)
        totals = reachable_totals(counts, arms)
        # a reachable total most of the time, sometimes an arbitrary one
        total = int(rng.choice(totals)) if rng.random() < 0.8 else int(rng.integers(0, 60))
        best, _ = brute_force(costs, counts, arms, total)
        if best is None:
            with pytest.raises(ValueError, match="not reachable"):
                match_budget(costs, counts, arms, total)
            unreachable += 1
            continue
        res = match_budget(costs, counts, arms, total)
        assert res.success and res.status == OPTIMAL
        assert res.total == total == res.requested_total
        assert np.array_equal(res.n, arms[res.arm_index])
        assert int(np.dot(counts, res.n)) == total
        assert res.objective == pytest.approx(best, abs=1e-9)
        recomputed = float(np.sum(counts * costs[np.arange(len(counts)), res.arm_index]))
        assert res.objective == pytest.approx(recomputed, abs=1e-12)
        solved += 1
    assert solved > 250 and unreachable > 10


def test_zero_count_bins_get_their_cheapest_arm():
    costs = np.array([[3.0, 1.0, 1.0], [0.0, 5.0, 2.0], [2.0, 0.5, 9.0]])
    res = match_budget(costs, counts=[0, 4, 0], arms=[2, 4, 8], total=16)
    assert res.arm_index.tolist() == [1, 1, 1]  # bin 0: tie 1.0/1.0 -> smallest index
    assert res.n.tolist() == [4, 4, 4]
    assert res.objective == pytest.approx(20.0)


def test_all_bins_empty_only_total_zero():
    res = match_budget(np.array([[1.0, 0.0]]), [0], [2, 3], 0)
    assert res.success and res.total == 0 and res.arm_index.tolist() == [1]
    with pytest.raises(ValueError, match=r"\[0, 0\]"):
        match_budget(np.array([[1.0, 0.0]]), [0], [2, 3], 5)


def test_unreachable_message_gives_range_and_nearest_totals():
    # counts 2 and 4 with arms {3, 5}: totals 2a + 4b in {18, 22, 26, 30}; g = 4
    costs = np.zeros((2, 2))
    assert reachable_totals([2, 4], [3, 5]) == [18, 22, 26, 30]
    with pytest.raises(ValueError, match=r"total 24 is not reachable.*\[18, 30\] in steps of 4.*below: 22, above: 26"):
        match_budget(costs, [2, 4], [3, 5], 24)
    with pytest.raises(ValueError, match=r"below: None, above: 18"):
        match_budget(costs, [2, 4], [3, 5], 5)
    with pytest.raises(ValueError, match=r"below: 30, above: None.*nearest=True"):
        match_budget(costs, [2, 4], [3, 5], 99)


def test_nearest_option_against_brute_force():
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(200):
        costs, counts, arms = random_instance(rng)
        totals = np.array(reachable_totals(counts, arms))
        total = int(rng.integers(-3, 60))
        if total in totals:
            continue
        dist = np.abs(totals - total)
        expected_total = int(totals[dist == dist.min()].min())  # tie -> the smaller
        res = match_budget(costs, counts, arms, total, nearest=True)
        assert res.status == ADJUSTED and res.success
        assert res.requested_total == total and res.total == expected_total
        assert f"nearest reachable total {expected_total}" in res.message
        best, _ = brute_force(costs, counts, arms, expected_total)
        assert res.objective == pytest.approx(best, abs=1e-9)
        checked += 1
    assert checked > 50


def test_nearest_tie_picks_the_smaller_total():
    # reachable {18, 22, 26, 30}; 24 is equidistant from 22 and 26
    res = match_budget(np.zeros((2, 2)), [2, 4], [3, 5], 24, nearest=True)
    assert res.total == 22 and res.status == ADJUSTED


def test_reachable_kernel_matches_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(100):
        _, counts, arms = random_instance(rng)
        counts = counts[counts > 0]
        if counts.size == 0:
            continue
        inc = np.ascontiguousarray(counts[:, None] * (arms[None, :] - arms.min()))
        mask = _reachable_kernel(inc)
        got = sorted(int(arms.min() * counts.sum() + s) for s in np.flatnonzero(mask))
        assert got == reachable_totals(counts, arms)


def test_numba_kernel_equals_python_twin():
    rng = np.random.default_rng(11)
    for _ in range(150):
        B, K = int(rng.integers(0, 6)), int(rng.integers(1, 6))
        weights = np.round(rng.normal(size=(B, K)), 1)  # many ties
        inc = rng.integers(0, 6, size=(B, K)).astype(np.int64)
        target = int(rng.integers(0, 20))
        c_fast, v_fast = _budget_dp_kernel(weights, inc, target)
        c_slow, v_slow = _budget_dp_python(weights, inc, target)
        assert np.array_equal(c_fast, c_slow)
        assert v_fast == v_slow or (np.isinf(v_fast) and np.isinf(v_slow))


def test_arm_order_does_not_matter():
    rng = np.random.default_rng(5)
    arms = np.array([2, 4, 6, 8, 12])
    counts = np.array([5, 3, 0, 7])
    costs = rng.normal(size=(4, 5))
    perm = rng.permutation(5)
    a = match_budget(costs, counts, arms, 90)
    b = match_budget(costs[:, perm], counts, arms[perm], 90)
    assert a.objective == pytest.approx(b.objective, abs=1e-12)
    assert b.total == 90


def test_training_scale_instance_is_feasible_and_not_worse_than_uniform():
    rng = np.random.default_rng(0)
    arms = np.arange(2, 13)
    counts = rng.multinomial(256, np.full(10, 0.1))
    v = rng.uniform(0.1, 2.0, 10)
    costs = v[:, None] / arms[None, :]
    res = match_budget(costs, counts, arms, 4 * 256)
    assert res.success and res.total == 1024
    uniform = float(np.sum(counts * v / 4.0))  # arm 4 for every bin is feasible
    assert res.objective <= uniform + 1e-12


@settings(max_examples=40)
@given(
    v=st.lists(st.floats(0.05, 5.0), min_size=1, max_size=4),
    counts=st.lists(st.integers(1, 6), min_size=4, max_size=4),
    n_bar=st.integers(2, 6),
)
def test_dp_optimum_is_bounded_below_by_the_square_root_law(v, counts, n_bar):
    """GDRO Thm F.17 / eq. 57: the continuous optimum lower-bounds the discrete budget matching
    with costs v_b / n (eq. 19), since every feasible arm choice is feasible for eq. 20."""
    v = np.array(v)
    counts = np.array(counts[: len(v)])
    arms = np.arange(1, 9)
    total = n_bar * int(counts.sum())
    res = match_budget(v[:, None] / arms[None, :], counts, arms, total)
    shares = counts / counts.sum()
    cont = sqrt_allocation(v, shares, n_bar)
    assert res.objective / counts.sum() >= cont.objective * (1 - 1e-12) - 1e-12
    # eq. 58: never worse than giving every bin the mean budget (a feasible arm choice here)
    assert res.objective / counts.sum() <= float(np.dot(shares, v)) / n_bar + 1e-12


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(costs=np.zeros((2, 3)), counts=[1, 2, 3], arms=[1, 2, 3], total=6), ValueError, r"costs must have shape \(len\(counts\), len\(arms\)\) = \(3, 3\)"),
        (dict(costs=np.zeros((2, 2)), counts=[1, 2], arms=[2, 2], total=6), ValueError, "arms must be distinct, got 2"),
        (dict(costs=np.zeros((2, 2)), counts=[1, 2], arms=[0, 2], total=6), ValueError, "arms must be positive integers, got 0"),
        (dict(costs=np.zeros((2, 2)), counts=[1, -2], arms=[1, 2], total=6), ValueError, "counts must be non-negative"),
        (dict(costs=[[0.0, np.nan], [0, 0]], counts=[1, 2], arms=[1, 2], total=6), ValueError, "costs must be finite"),
        (dict(costs=np.zeros((2, 2)), counts=[1, 2], arms=[1, 2], total=6.5), ValueError, "total must be an integer"),
        (dict(costs=np.zeros((2, 2)), counts=[1.5, 2], arms=[1, 2], total=6), ValueError, "counts must contain integers"),
        (dict(costs=np.zeros(2), counts=[1, 2], arms=[1, 2], total=6), ValueError, "costs must be 2-D"),
        (dict(costs=np.zeros((2, 2)), counts=[1, 2], arms=[1, 2], total=6, nearest=1), TypeError, "nearest must be a bool"),
        (dict(costs=np.zeros((2, 2)), counts=[1, 2], arms=[1, 2], total="6"), TypeError, "total must be an integer"),
    ],
)
def test_invalid_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        match_budget(**kwargs)


def test_matches_scipy_milp_on_medium_instances():
    """Larger instances than brute force can enumerate: the same problem as a MILP (HiGHS)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    rng = np.random.default_rng(42)
    arms = np.arange(2, 13)
    for _ in range(12):
        B = int(rng.integers(3, 9))
        counts = rng.multinomial(int(rng.integers(20, 120)), rng.dirichlet(np.ones(B)))
        costs = rng.normal(size=(B, arms.size))
        total = int(rng.integers(3, 9)) * int(counts.sum())
        c = (counts[:, None] * costs).ravel()
        A_one = np.kron(np.eye(B), np.ones((1, arms.size)))
        A_tot = (counts[:, None] * arms[None, :]).ravel()[None, :].astype(float)
        ref = milp(
            c,
            constraints=[LinearConstraint(A_one, 1, 1), LinearConstraint(A_tot, total, total)],
            integrality=np.ones(c.size),
            bounds=Bounds(0, 1),
            options={"mip_rel_gap": 0.0},
        )
        if ref.status != 0:  # infeasible for HiGHS -> we must say unreachable
            with pytest.raises(ValueError, match="not reachable"):
                match_budget(costs, counts, arms, total)
            continue
        res = match_budget(costs, counts, arms, total)
        assert res.success and res.total == total
        assert res.objective == pytest.approx(ref.fun, abs=1e-7 * max(1.0, abs(ref.fun)))


def test_overflowing_totals_and_weights_are_rejected():
    """Found in review: sum(counts) * max(arms) beyond int64 wrapped around (the error message
    then gave a negative "reachable range"), and counts * costs overflowing to inf made a
    reachable total look unreachable. Both now raise a ValueError naming the cause."""
    with pytest.raises(ValueError, match="overflow"):
        match_budget(np.zeros((2, 2)), [2**62, 2**62], [1, 3], 2**62)
    with pytest.raises(ValueError, match="total must be <= 9223372036854775807"):  # beyond int64
        match_budget(np.zeros((2, 2)), [2**62, 2**62], [1, 3], 2**63)
    with pytest.raises(ValueError, match="counts \\* costs"):
        match_budget(np.array([[1e300, 0.0], [0.0, 0.0]]), [10**10, 1], [1, 2], 10**10 + 1)


def test_out_of_range_totals_never_build_the_full_state_space(monkeypatch):
    """Found in review: a total outside [lowest, highest] built the reachability mask over all
    max_state + 1 compressed states (unbounded memory: arms [1, 2, 10**12] -> 2e12 states) and,
    with nearest=True, ran the DP at that size without the table-size guard. The nearest
    reachable totals outside the range are the range's ends (min / max arm everywhere), and
    every DP or mask is now bounded by the same limit."""
    import solvers.budget_matching as bm

    monkeypatch.setattr(bm, "_MAX_TABLE_ENTRIES", 10_000)
    costs = np.zeros((2, 3))
    arms = [1, 2, 10**6]
    with pytest.raises(ValueError, match=r"nearest reachable below: 2000000, above: None"):
        match_budget(costs, [1, 1], arms, 3 * 10**6)
    with pytest.raises(ValueError, match=r"nearest reachable below: None, above: 2"):
        match_budget(costs, [1, 1], arms, 1)
    res = match_budget(costs, [1, 1], arms, 1, nearest=True)
    assert res.total == 2 and res.status == ADJUSTED
    with pytest.raises(ValueError, match="too large"):
        match_budget(costs, [1, 1], arms, 3 * 10**6, nearest=True)
    with pytest.raises(ValueError, match="too large"):
        match_budget(costs, [1, 1], arms, 10**6 + 5)  # in range: the DP itself is too large
