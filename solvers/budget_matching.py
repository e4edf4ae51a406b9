"""Exact budget matching: one rollout arm per bin under an exact total-rollout constraint.

GDRO (App. C.2.2, "Budget Matching: exact constrained selection via dynamic programming") picks,
for every difficulty bin ``b``, one rollout count ``n_b`` from a discrete set of arms so that the
batch uses exactly the requested number of rollouts (compute neutrality, GDRO eq. 36):

    minimise   sum_b counts_b * costs[b, k_b]
    subject to sum_b counts_b * arms[k_b] = total,

where ``counts_b`` is the number of prompts of bin ``b`` in the batch. This is a multiple-choice
knapsack with an equality constraint; the dynamic program over bins with the running total as state
solves it exactly in ``O(B * S * K)`` time, ``S`` the number of reachable running totals.

State compression (exact, not a heuristic): every total is ``base + g * s`` with
``base = min(arms) * sum(counts)`` and ``g`` the gcd of all increments
``counts_b * (arms_k - min(arms))``; the DP runs over ``s`` only, and only over the states that can
still reach the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from ._status import ADJUSTED, CERTIFICATE_FAILED, MESSAGES, OPTIMAL
from ._validation import as_float_array, as_int_array, check_int_scalar

__all__ = ["BudgetMatchResult", "match_budget"]

_MAX_TABLE_ENTRIES = 200_000_000
"""Largest back-pointer table (bins x states) the DP will allocate (int32 entries, ~800 MB)."""


@dataclass(frozen=True)
class BudgetMatchResult:
    """Result of :func:`match_budget`.

    Attributes
    ----------
    n : ndarray of int64, shape (B,)
        Chosen arm value (rollouts per prompt) for each bin.
    arm_index : ndarray of int64, shape (B,)
        Index into ``arms`` of the chosen arm for each bin.
    total : int
        Achieved total ``sum_b counts_b * n_b``.
    requested_total : int
        The ``total`` passed by the caller (differs from ``total`` only when ``nearest=True``
        adjusted it; then ``status == ADJUSTED``).
    objective : float
        ``sum_b counts_b * costs[b, arm_index_b]``.
    success : bool
        True when the problem was solved and certified, including the adjusted problem of
        ``nearest=True`` (``status == ADJUSTED`` tells the two apart: the caller asked for the
        adjustment, so it is not a failure). False only with ``CERTIFICATE_FAILED``.
    status : int
        ``OPTIMAL`` (0), ``CERTIFICATE_FAILED`` (1) or ``ADJUSTED`` (3); see :mod:`solvers._status`.
    message : str
        Human-readable description of the outcome.
    """

    n: np.ndarray
    arm_index: np.ndarray
    total: int
    requested_total: int
    objective: float
    success: bool
    status: int
    message: str


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _budget_dp_kernel(weights, increments, target):  # pragma: no cover - compiled
    """Exact multiple-choice DP, "pull" form.

    Parameters
    ----------
    weights : float64 [Ba, K]   cost of choosing arm k for bin b (already multiplied by counts).
    increments : int64 [Ba, K]  compressed state increment of arm k for bin b (>= 0).
    target : int                compressed target state.

    Returns
    -------
    choice : int64 [Ba]  chosen arm per bin (all -1 if the target is unreachable).
    value : float        optimal objective (inf if unreachable).

    Ties are broken towards the smallest arm index of the last bin first (strict ``<`` while
    scanning k in increasing order), which makes the result deterministic.
    """
    n_bins, n_arms = weights.shape
    choice = np.full(n_bins, -1, dtype=np.int64)
    if n_bins == 0:
        if target == 0:
            return choice, 0.0
        return choice, np.inf
    max_inc = np.zeros(n_bins, dtype=np.int64)
    for b in range(n_bins):
        m = 0
        for k in range(n_arms):
            if increments[b, k] > m:
                m = increments[b, k]
        max_inc[b] = m
    # remaining[b] = largest total increment the bins after b can still add
    remaining = np.zeros(n_bins, dtype=np.int64)
    acc = 0
    for b in range(n_bins - 1, -1, -1):
        remaining[b] = acc
        acc += max_inc[b]
    if acc < target or target < 0:
        return choice, np.inf

    width = target + 1
    back = np.full((n_bins, width), -1, dtype=np.int32)
    prev = np.full(width, np.inf)
    cur = np.full(width, np.inf)
    prev[0] = 0.0
    prev_hi = 0  # largest state reachable so far (an upper bound; states may be inf)
    for b in range(n_bins):
        lo = target - remaining[b]
        if lo < 0:
            lo = 0
        hi = prev_hi + max_inc[b]
        if hi > target:
            hi = target
        for s in range(width):
            cur[s] = np.inf
        # k outer, s inner: a branch-light loop the compiler can vectorise. Strict "<" with k
        # increasing keeps the smallest arm index among ties. Entries of ``prev`` above
        # ``prev_hi`` are inf, so no explicit reachability test is needed.
        for k in range(n_arms):
            step = increments[b, k]
            w = weights[b, k]
            s_lo = lo if lo > step else step
            for s in range(s_lo, hi + 1):
                val = prev[s - step] + w
                if val < cur[s]:
                    cur[s] = val
                    back[b, s] = k
        prev_hi = hi
        tmp = prev
        prev = cur
        cur = tmp
    value = prev[target]
    if value == np.inf:
        return choice, np.inf
    s = target
    for b in range(n_bins - 1, -1, -1):
        k = back[b, s]
        choice[b] = k
        s -= increments[b, k]
    return choice, value


@numba.njit(cache=True)
def _reachable_kernel(increments):  # pragma: no cover - compiled
    """Boolean mask over compressed states 0..sum_b max_k increments[b, k] that are reachable."""
    n_bins, n_arms = increments.shape
    total_max = 0
    for b in range(n_bins):
        m = 0
        for k in range(n_arms):
            if increments[b, k] > m:
                m = increments[b, k]
        total_max += m
    reach = np.zeros(total_max + 1, dtype=np.bool_)
    nxt = np.zeros(total_max + 1, dtype=np.bool_)
    reach[0] = True
    hi = 0
    for b in range(n_bins):
        for s in range(total_max + 1):
            nxt[s] = False
        new_hi = hi
        for s in range(hi + 1):
            if reach[s]:
                for k in range(n_arms):
                    t = s + increments[b, k]
                    nxt[t] = True
                    if t > new_hi:
                        new_hi = t
        hi = new_hi
        tmp = reach
        reach = nxt
        nxt = tmp
    return reach


@numba.njit(cache=True)
def _prepare_kernel(costs, counts, arms):  # pragma: no cover - compiled
    """Split bins into idle (count 0: cheapest arm, ties -> smallest index) and active ones, and
    build the compressed DP data of the active bins.

    Returns ``(arm_index, active, weights, increments, base, g, max_state)``: ``arm_index`` has
    the idle bins filled (-1 elsewhere), ``weights = counts * costs`` and ``increments =
    counts * (arms - min(arms)) / g`` on active bins, ``base = min(arms) * sum(counts)``, ``g``
    the gcd of the raw increments (1 if all are 0) and ``max_state = sum_b max_k increments``.
    """
    n_bins, n_arms = costs.shape
    arm_min = arms[0]
    for k in range(n_arms):
        if arms[k] < arm_min:
            arm_min = arms[k]
    arm_index = np.full(n_bins, -1, dtype=np.int64)
    n_active = 0
    for b in range(n_bins):
        if counts[b] > 0:
            n_active += 1
        else:
            best = 0
            for k in range(1, n_arms):
                if costs[b, k] < costs[b, best]:
                    best = k
            arm_index[b] = best
    active = np.empty(n_active, dtype=np.int64)
    weights = np.empty((n_active, n_arms))
    increments = np.empty((n_active, n_arms), dtype=np.int64)
    base = 0
    g = 0
    j = 0
    for b in range(n_bins):
        if counts[b] > 0:
            active[j] = b
            base += counts[b] * arm_min
            for k in range(n_arms):
                weights[j, k] = counts[b] * costs[b, k]
                d = counts[b] * (arms[k] - arm_min)
                increments[j, k] = d
                x = g  # g = gcd(g, d) by Euclid
                y = d
                while y != 0:
                    x, y = y, x % y
                g = x
            j += 1
    if g == 0:
        g = 1
    max_state = 0
    for j in range(n_active):
        m = 0
        for k in range(n_arms):
            increments[j, k] //= g
            if increments[j, k] > m:
                m = increments[j, k]
        max_state += m
    return arm_index, active, weights, increments, base, g, max_state


@numba.njit(cache=True)
def _evaluate_kernel(costs, counts, arms, arm_index):  # pragma: no cover - compiled
    """Achieved total ``sum_b counts_b arms[k_b]`` and objective ``sum_b counts_b costs[b, k_b]``."""
    total = 0
    objective = 0.0
    for b in range(counts.shape[0]):
        k = arm_index[b]
        total += counts[b] * arms[k]
        objective += counts[b] * costs[b, k]
    return total, objective


def _budget_dp_python(weights: np.ndarray, increments: np.ndarray, target: int):
    """Plain-Python twin of :func:`_budget_dp_kernel` (same algorithm and tie-breaking).

    Written with dictionaries over reachable states only, so it shares no indexing code with the
    kernel; used by the tests to check the compiled kernel.
    """
    n_bins, n_arms = weights.shape
    choice = np.full(n_bins, -1, dtype=np.int64)
    layers: list[dict[int, tuple[float, int]]] = []
    states: dict[int, float] = {0: 0.0}
    for b in range(n_bins):
        new: dict[int, tuple[float, int]] = {}
        candidates = sorted({s + int(increments[b, k]) for s in states for k in range(n_arms)})
        for s in candidates:
            if s > target:
                continue
            best, best_k = math.inf, -1
            for k in range(n_arms):
                t = s - int(increments[b, k])
                if t in states:
                    val = states[t] + float(weights[b, k])
                    if val < best:
                        best, best_k = val, k
            new[s] = (best, best_k)
        layers.append(new)
        states = {s: v for s, (v, _) in new.items()}
    if target not in states:
        return choice, math.inf
    s = target
    for b in range(n_bins - 1, -1, -1):
        k = layers[b][s][1]
        choice[b] = k
        s -= int(increments[b, k])
    return choice, states[target]


# --------------------------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------------------------


def _match_budget_iv(costs, counts, arms, total, nearest):
    costs = as_float_array(costs, "costs", ndim=2)
    counts = as_int_array(counts, "counts", ndim=1, nonneg=True, min_size=1)
    arms = as_int_array(arms, "arms", ndim=1, min_size=1)
    total = check_int_scalar(total, "total")
    if not isinstance(nearest, (bool, np.bool_)):
        raise TypeError(f"nearest must be a bool, got {type(nearest).__name__}")
    if costs.shape != (counts.shape[0], arms.shape[0]):
        raise ValueError(
            f"costs must have shape (len(counts), len(arms)) = ({counts.shape[0]}, {arms.shape[0]}), "
            f"got {costs.shape}"
        )
    bad = arms <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"arms must be positive integers, got {int(arms[i])} at index {i}")
    srt = np.sort(arms)
    dup = srt[1:] == srt[:-1]
    if dup.any():
        raise ValueError(f"arms must be distinct, got {int(srt[1:][dup][0])} more than once")
    largest = sum(counts.tolist()) * int(srt[-1])  # Python ints: exact
    if largest >= 2**62:
        raise ValueError(
            f"sum(counts) * max(arms) = {largest} would overflow the int64 totals of the DP (limit 2**62)"
        )
    with np.errstate(over="ignore"):
        worst = np.abs(counts[:, None] * costs).max(axis=1, initial=0.0).sum()
    if not np.isfinite(worst):
        raise ValueError("counts * costs overflows float64: rescale costs")
    return costs, counts, arms, int(total), bool(nearest)


def _check_table_size(rows: int, width: int) -> None:
    if rows * width > _MAX_TABLE_ENTRIES:
        raise ValueError(
            f"problem too large for the exact DP: {rows} bins x {width} states exceeds "
            f"{_MAX_TABLE_ENTRIES} table entries (the states come from counts, arms and total: "
            "(total - min(arms) * sum(counts)) / gcd of the arm steps)"
        )


def match_budget(costs, counts, arms, total, *, nearest=False) -> BudgetMatchResult:
    """Choose one rollout arm per bin, exactly meeting a total rollout budget, at minimum cost.

    Solves (GDRO App. C.2.2 "budget matching", the discrete form of the compute-neutral
    allocation problem eq. 36)::

        minimise   sum_b counts[b] * costs[b, k_b]
        subject to sum_b counts[b] * arms[k_b] == total,   k_b in {0, ..., K-1},

    exactly, by dynamic programming over bins with the running total as state.

    Parameters
    ----------
    costs : array_like of float, shape (B, K)
        Per-prompt cost of giving arm ``k`` to the prompts of bin ``b`` (e.g. the augmented arm
        loss of GDRO eq. 37, or a variance proxy ``v_b / arms[k]``). Finite; may be negative.
    counts : array_like of int, shape (B,)
        Number of prompts of each bin in the batch (non-negative). Bins with ``counts[b] == 0``
        add nothing to the objective or the total; they are given their lowest-cost arm
        (ties: smallest index) so that ``n`` is defined for every bin.
    arms : array_like of int, shape (K,)
        Distinct positive rollout counts to choose from (any order).
    total : int
        Required total number of rollouts ``sum_b counts[b] * n_b`` (e.g. ``n_bar * sum(counts)``).
    nearest : bool, default False
        If ``total`` is not reachable: ``False`` raises ``ValueError``; ``True`` solves for the
        reachable total nearest to ``total`` (ties: the smaller one) and reports
        ``status == ADJUSTED`` with a message naming the total used. Never silent.

    Returns
    -------
    BudgetMatchResult
        ``n`` (arm value per bin), ``arm_index``, ``total`` (achieved), ``requested_total``,
        ``objective``, ``success``, ``status``, ``message``.

    Raises
    ------
    ValueError
        On invalid input, or if ``total`` is unreachable and ``nearest`` is False (the message
        gives the reachable range and the nearest reachable totals below and above).

    Notes
    -----
    Exact: the optimum over all ``K**B`` combinations. Ties between equal-cost solutions are
    broken deterministically (smallest arm index, deciding the last bin first). The answer is
    certified after solving: the achieved total is recomputed, and the objective recomputed from
    the chosen arms must equal the DP value.

    Complexity ``O(B * K * S)`` with ``S <= (total - min(arms) * sum(counts)) / g + 1`` states
    (``g`` the gcd of the arm increments); batch 256, 10 bins, arms 2..12 takes tens of
    microseconds.

    Examples
    --------
    >>> import numpy as np
    >>> arms = np.array([2, 4, 8])
    >>> v = np.array([1.0, 9.0])                 # bin variances
    >>> costs = v[:, None] / arms[None, :]       # variance proxy v_b / n
    >>> res = match_budget(costs, counts=[3, 1], arms=arms, total=4 * 4)
    >>> res.n.tolist(), res.total
    ([4, 4], 16)
    """
    costs, counts, arms, total, nearest = _match_budget_iv(costs, counts, arms, total, nearest)
    arm_index, active, weights, inc, base, g, max_state = _prepare_kernel(costs, counts, arms)
    lowest, highest = base, base + g * max_state

    requested = total
    status, adjust_note = OPTIMAL, ""
    reachable = (total - base) % g == 0 and lowest <= total <= highest
    target = (total - base) // g if reachable else -1
    if reachable:
        _check_table_size(inc.shape[0], target + 1)
        choice, value = _budget_dp_kernel(weights, inc, target)
        reachable = bool(np.isfinite(value))
    if not reachable:
        # lowest (min arm everywhere) and highest (max arm everywhere) are always reachable, so
        # the full reachability mask is needed only for a total strictly inside the range
        if total > highest:
            near_below, near_above = highest, None
        elif total < lowest:
            near_below, near_above = None, lowest
        else:
            _check_table_size(1, max_state + 1)
            states = np.flatnonzero(_reachable_kernel(inc))
            totals = base + g * states
            below = totals[totals < total]
            above = totals[totals > total]
            near_below = int(below.max()) if below.size else None
            near_above = int(above.min()) if above.size else None
        if not nearest:
            raise ValueError(
                f"total {total} is not reachable with these counts and arms: reachable totals "
                f"(sum_b counts_b * n_b) lie in [{lowest}, {highest}]"
                + (f" in steps of {g}" if g > 1 else "")
                + f"; nearest reachable below: {near_below}, above: {near_above}. "
                "Pass nearest=True to solve for the nearest reachable total."
            )
        if near_below is None:
            total = near_above
        elif near_above is None:
            total = near_below
        else:
            total = near_below if total - near_below <= near_above - total else near_above
        target = (total - base) // g
        _check_table_size(inc.shape[0], target + 1)
        choice, value = _budget_dp_kernel(weights, inc, target)
        status = ADJUSTED
        adjust_note = (
            f"requested total {requested} is not reachable (reachable range [{lowest}, {highest}]"
            f"); solved for the nearest reachable total {total}"
        )

    arm_index[active] = choice
    n = arms[arm_index]
    achieved, objective = _evaluate_kernel(costs, counts, arms, arm_index)
    achieved, objective = int(achieved), float(objective)
    dp_value = float(value)
    ok = (
        achieved == total
        and bool(np.all(arm_index >= 0))
        and abs(objective - dp_value) <= 1e-9 * max(1.0, float(np.abs(weights).sum()))
    )
    if not ok:
        status = CERTIFICATE_FAILED
        message = (
            f"certificate failed: achieved total {achieved} vs {total}, objective {objective} vs "
            f"DP value {dp_value}"
        )
    elif status == ADJUSTED:
        message = adjust_note
    else:
        message = MESSAGES[OPTIMAL]
    return BudgetMatchResult(
        n=n,
        arm_index=arm_index,
        total=achieved,
        requested_total=requested,
        objective=objective,
        success=ok,
        status=status,
        message=message,
    )
