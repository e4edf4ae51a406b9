"""VIP's heuristic rounding of a continuous allocation (VIP Appendix D, Algorithm 2).

Kept as the paper's baseline; :func:`solvers.allocate` with ``integer=True`` is the exact,
certified integer solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _allocation_kernels as _k
from ._status import OPTIMAL, OVERFLOW, overflow_message
from ._validation import as_float_array, check_int_scalar, check_same_shape
from .allocation import bounds_iv, get_cost

__all__ = ["round_greedy", "RoundingResult"]

MAX_GREEDY_STEPS = 2**26
"""Most unit steps :func:`round_greedy` takes (a budget of 2**53 above the floors would otherwise
loop for years; from a continuous optimum at most ``len(a)`` steps remain)."""


@dataclass(frozen=True)
class RoundingResult:
    """Result of :func:`round_greedy`.

    Attributes
    ----------
    n : ndarray of int64, shape (B,)
        The integer allocation (sums to ``budget``, within the bounds).
    objective : float
        ``sum_q f(a_q, n_q)``.
    steps : int
        Number of unit increments made by the greedy loop (``budget - sum(floor(n_continuous))``).
    success, status, message
        ``success`` is True: Algorithm 2 always completes on valid input (invalid input raises).
        It is a heuristic; nothing about optimality is certified here. The one exception: an
        objective that overflows float64 (``a`` near DBL_MAX) gives ``status == OVERFLOW`` and
        ``success=False`` (the counts are still Algorithm 2's).
    """

    n: np.ndarray
    objective: float
    steps: int
    success: bool
    status: int
    message: str


def round_greedy(
    n_continuous: Any, a: Any, budget: Any, lower: Any, upper: Any, *, cost: str
) -> RoundingResult:
    """VIP Algorithm 2 ("heuristic rounding for integer rollout allocation"), as the paper states it.

    Steps (VIP Appendix D): (1) ``n_q <- floor(n*_q)``; (2) ``C_rem <- C - sum_q n_q``;
    (3-5) incentive ``Delta_q <- f_q(n_q) - f_q(n_q + 1)`` for every q with ``n_q < U``;
    (6-11) while ``C_rem > 0``: ``q* = argmax_{q: n_q < U} Delta_q``, ``n_q* += 1``, recompute
    ``Delta_q*``, ``C_rem -= 1``.

    Reproduced quirks and choices (documented, tested):

    * The incentive is the literal difference ``f(n) - f(n+1)`` as written in the paper (not a
      cancellation-free closed form), so near-ties may order differently from :func:`allocate`.
    * ``argmax`` ties go to the lowest index (``numpy.argmax`` convention; the paper is silent).
      The loop uses a heap, which gives the same sequence of choices in O(B + C_rem log B).
    * The floor is taken without any tolerance: a continuous value ``4.9999999999`` becomes 4.
    * The paper assumes ``n*`` is the continuous optimum; any ``n_continuous`` within
      ``[lower, upper]`` is accepted, but the algorithm has no step that lowers a count, so the
      input must satisfy ``sum(floor(n_continuous)) <= budget`` (else ``ValueError``), and
      ``lower``/``upper`` must be integers (then ``floor`` keeps the lower bound). At most
      ``2**26`` units may remain after the floor (``ValueError`` otherwise).

    Parameters
    ----------
    n_continuous : array_like, shape (B,)
        Continuous allocation, ``lower <= n_continuous <= upper``.
    a : array_like, shape (B,)
        Per-prompt variance scale ``a_q >= 0``.
    budget : int
        Total rollouts ``C``, ``sum(lower) <= C <= sum(upper)``.
    lower, upper : int or array_like of int, shape (B,)
        Integer bounds ``L``, ``U`` (``upper`` may be ``inf``).
    cost : {"rloo", "drgrpo", "inverse"}
        The per-prompt objective ``f_q`` (see :data:`solvers.COST_FAMILIES`).

    Returns
    -------
    RoundingResult

    Examples
    --------
    >>> from solvers import allocate, round_greedy
    >>> a = [0.36, 1.0, 0.36, 0.0]
    >>> cont = allocate(a, 32, 3, 16, cost="rloo")
    >>> round_greedy(cont.n, a, 32, 3, 16, cost="rloo").n.tolist()
    [8, 13, 8, 3]
    """
    family = get_cost(cost)
    a_arr = as_float_array(a, "a", ndim=1, nonneg=True, min_size=1)
    x_arr = as_float_array(n_continuous, "n_continuous", ndim=1)
    check_same_shape(x_arr, "n_continuous", a_arr, "a")
    size = a_arr.shape[0]
    budget_v = check_int_scalar(budget, "budget")
    lower_arr, upper_arr = bounds_iv(
        lower, upper, size, family, budget_v, integer=True, why="Algorithm 2 rounds to integer {} bounds"
    )
    bad = (x_arr < lower_arr) | (x_arr > upper_arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"n_continuous must lie within [lower, upper], got {x_arr[i]!r} outside "
            f"[{lower_arr[i]!r}, {upper_arr[i]!r}] at index {i}"
        )
    floor_sum = int(np.floor(x_arr).sum())
    if floor_sum > budget_v:
        raise ValueError(
            f"sum(floor(n_continuous))={floor_sum} exceeds budget {budget_v}: Algorithm 2 only adds rollouts"
        )
    if budget_v - floor_sum > MAX_GREEDY_STEPS:
        raise ValueError(
            f"budget - sum(floor(n_continuous)) = {budget_v - floor_sum} rollouts left to place one at a "
            f"time; Algorithm 2 is run for at most {MAX_GREEDY_STEPS} (2**26) steps: pass n_continuous "
            "from allocate (then at most len(a) steps remain), or use allocate(integer=True)"
        )
    x, left = _k.round_greedy_kernel(family.code, a_arr, x_arr, upper_arr, budget_v)
    if left != 0:  # unreachable after the checks above (sum(upper) >= budget)
        raise RuntimeError(f"round_greedy could not place {left} rollouts")  # pragma: no cover
    obj = float(_k.objective(family.code, a_arr, x.astype(np.float64)))
    status, message = OPTIMAL, "completed (VIP Algorithm 2; heuristic, not certified optimal)"
    if not np.isfinite(obj):  # a near DBL_MAX: the counts are right, their objective is not representable
        status, message = OVERFLOW, overflow_message(["objective"], "a")
    return RoundingResult(
        n=x,
        objective=obj,
        steps=budget_v - floor_sum,
        success=status == OPTIMAL,
        status=status,
        message=message,
    )
