"""Exact per-prompt rollout allocation (VIP Sec. 5.2, eq. 5-9, Thm 5.1/5.2; GDRO eq. 19-21).

Minimise the total gradient-variance proxy of a batch of prompts,

    minimise  sum_q f(a_q, n_q)   s.t.  sum_q n_q = budget,  lower_q <= n_q <= upper_q,

over real ``n`` (the continuous relaxation, VIP eq. 6/8) or integer ``n`` (VIP eq. 5), for the
cost families of :data:`COST_FAMILIES`:

======== ====================== ===================================== ========================
name     f(a, n)                source                                needs
======== ====================== ===================================== ========================
rloo     a / (n - 1)            VIP Prop 4.3 / E.2, Thm 5.2 (eq. 8-9) lower > 1
drgrpo   a (n - 1) / n^2        VIP Prop 4.2 / E.1, Thm 5.1 (eq. 6-7) lower >= 3 (convexity)
inverse  a / n                  GDRO variance proxy, eq. 19-21        lower > 0
======== ====================== ===================================== ========================

``a_q >= 0``, e.g. ``a_q = 4 sigma_Z^2 p_q (1 - p_q)`` (binary rewards) or
``a_q = sigma_Z^2 Var(R_q)`` (continuous rewards, VIP E.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import _allocation_kernels as _k
from ._status import CERTIFICATE_FAILED, ITERATION_LIMIT, MESSAGES, OPTIMAL, OVERFLOW, overflow_message
from ._validation import as_float_array, broadcast_to_size, check_finite_scalar, check_int_scalar

__all__ = ["allocate", "AllocationResult", "CostFamily", "COST_FAMILIES", "get_cost"]


@dataclass(frozen=True)
class CostFamily:
    """One per-prompt cost ``f(a, n)``, decreasing and convex on ``n >= min_lower``.

    Attributes
    ----------
    name : str
    code : int
        Kernel code.
    formula : str
    min_lower : float
        Smallest admissible lower bound; ``lower_open`` says whether it is excluded.
    value : callable ``(a, n) -> f``
    marginal : callable ``(a, n) -> -f'(n)`` (the marginal decrease compared with the price)
    inverse : callable ``(a, price) -> n`` with ``-f'(n) = price`` (unbounded, a > 0, price > 0)
    """

    name: str
    code: int
    formula: str
    min_lower: float
    lower_open: bool
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]
    marginal: Callable[[np.ndarray, np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def check_lower(self, lower: np.ndarray) -> None:
        bad = lower <= self.min_lower if self.lower_open else lower < self.min_lower
        if bad.any():
            i = int(np.argmax(bad))
            op = ">" if self.lower_open else ">="
            raise ValueError(
                f"cost {self.name!r} (f = {self.formula}) needs lower {op} {self.min_lower:g}, "
                f"got lower={lower[i]!r} at index {i}"
            )


def _vec(fn: Callable[..., float], code: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def apply(a: Any, n: Any) -> np.ndarray:
        a_arr, n_arr = np.broadcast_arrays(np.asarray(a, float), np.asarray(n, float))
        out = np.array([fn(code, float(x), float(y)) for x, y in zip(a_arr.ravel(), n_arr.ravel())])
        return out.reshape(a_arr.shape)

    return apply


def _inverse(code: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def apply(a: Any, price: Any) -> np.ndarray:
        a_arr, p_arr = np.broadcast_arrays(np.asarray(a, float), np.asarray(price, float))
        out = np.array(
            [_k.inverse_marginal(code, float(x), float(p), 0.0, np.inf) for x, p in zip(a_arr.ravel(), p_arr.ravel())]
        )
        return out.reshape(a_arr.shape)

    return apply


COST_FAMILIES: dict[str, CostFamily] = {
    "rloo": CostFamily("rloo", _k.RLOO, "a/(n-1)", 1.0, True,
                       _vec(_k.cost_value, _k.RLOO), _vec(_k.cost_marginal, _k.RLOO), _inverse(_k.RLOO)),
    "drgrpo": CostFamily("drgrpo", _k.DRGRPO, "a(n-1)/n^2", 3.0, False,
                         _vec(_k.cost_value, _k.DRGRPO), _vec(_k.cost_marginal, _k.DRGRPO),
                         _inverse(_k.DRGRPO)),
    "inverse": CostFamily("inverse", _k.INVERSE, "a/n", 0.0, True,
                          _vec(_k.cost_value, _k.INVERSE), _vec(_k.cost_marginal, _k.INVERSE),
                          _inverse(_k.INVERSE)),
}
"""Registry of cost families: name -> :class:`CostFamily`."""


def get_cost(name: Any) -> CostFamily:
    """Look up a cost family by name; the error lists the valid names."""
    if not isinstance(name, str):
        raise TypeError(f"cost must be a string, one of {sorted(COST_FAMILIES)}, got {type(name).__name__}")
    try:
        return COST_FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; valid costs: {sorted(COST_FAMILIES)}") from None


@dataclass(frozen=True)
class AllocationResult:
    """Result of :func:`allocate`.

    Attributes
    ----------
    n : ndarray, shape (B,)
        The allocation: float64 (continuous) or int64 (``integer=True``).
    objective : float
        ``sum_q f(a_q, n_q)``.
    price : float
        The budget's Lagrange multiplier lambda* >= 0 of the continuous problem (the shadow price:
        the marginal decrease of the optimal objective per extra unit of budget). Where the
        multiplier is not unique (no prompt strictly between its bounds, e.g. integer bounds and
        budget on a breakpoint), the smallest value the KKT conditions allow (the right derivative
        ``-dV/dC+``); a count within the search's precision (~1e-13 budget) of a bound is put at
        that bound.
    lower_bound : float
        The continuous optimum (a certificate: the integer optimum is >= it); equals ``objective``
        in continuous mode.
    success : bool
    status : int
        A code of :mod:`solvers._status`.
    message : str
    cost : str
    integer : bool
    """

    n: np.ndarray
    objective: float
    price: float
    lower_bound: float
    success: bool
    status: int
    message: str
    cost: str
    integer: bool


_MAX_INT_BUDGET = 2**53
"""Largest integer budget: the kernels hold counts and bounds in float64."""


def _fmt(x: float) -> str:
    return str(int(x)) if np.isfinite(x) and float(x).is_integer() and abs(x) < 2**63 else f"{x:g}"


_SCALAR_BOUNDS: dict[tuple[float, int], np.ndarray] = {}
"""Scalar bounds broadcast to arrays, reused across calls (a training loop passes the same
scalar bounds every step). The kernels never write to their bound arrays and these never leave
this module. Small sizes only (at large B filling the array costs nothing next to the solve)."""
_SCALAR_BOUNDS_MAX_SIZE = 1 << 16
_SCALAR_BOUNDS_MAX_ENTRIES = 16


def _bound_fast(x: Any, size: int) -> np.ndarray | None:
    """A bound as a float64 array of length ``size`` if that needs no checking of shape or dtype."""
    if type(x) in (int, float):
        if type(x) is int and not -_MAX_INT_BUDGET <= x <= _MAX_INT_BUDGET:
            return None  # huge Python ints: the full validation names them
        if size > _SCALAR_BOUNDS_MAX_SIZE:
            return np.full(size, float(x))
        key = (x, size)
        out = _SCALAR_BOUNDS.get(key)
        if out is None:
            if len(_SCALAR_BOUNDS) >= _SCALAR_BOUNDS_MAX_ENTRIES:
                _SCALAR_BOUNDS.clear()
            out = _SCALAR_BOUNDS[key] = np.full(size, float(x))
        return out
    if type(x) is np.ndarray and x.dtype == np.float64 and x.shape == (size,) and x.flags.c_contiguous:
        return x
    return None


def _fast_path(a: Any, budget: Any, lower: Any, upper: Any, cost: Any, integer: Any) -> tuple | None:
    """The common call (float64 array, numeric budget, scalar or matching float64 bounds): the
    kernel checks in its first pass that nothing needs an error message and solves. Returns None
    whenever the full validation must run (it then raises the appropriate error)."""
    if type(cost) is not str or cost not in COST_FAMILIES or type(integer) is not bool:
        return None
    if not (type(a) is np.ndarray and a.dtype == np.float64 and a.ndim == 1 and a.size and a.flags.c_contiguous):
        return None
    if type(budget) not in (int, float, np.int64, np.float64):
        return None
    if type(budget) is int and not -_MAX_INT_BUDGET <= budget <= _MAX_INT_BUDGET:
        return None  # math.isfinite would raise OverflowError on ints beyond float64
    if not math.isfinite(budget):
        return None
    if integer and not (float(budget).is_integer() and abs(budget) <= _MAX_INT_BUDGET):
        return None
    lo = _bound_fast(lower, a.size)
    hi = _bound_fast(upper, a.size)
    if lo is None or hi is None:
        return None
    family = COST_FAMILIES[cost]
    res = _k.allocate_kernel(family.code, a, lo, hi, float(budget), integer, True)
    if res[5] == _k.CERT_INPUT:
        return None
    return family, res


def bounds_iv(
    lower: Any, upper: Any, size: int, family: CostFamily, budget: float, *, integer: bool, why: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Validate per-prompt bounds for ``size`` prompts against a cost family and a budget.

    Shared by :func:`allocate` and :func:`solvers.round_greedy`. ``lower`` must be finite and at
    least what the cost needs; ``upper`` may be ``inf``; with ``integer=True`` both must be
    integral (``why`` is a template explaining that, formatted with "lower"/"upper"); and
    ``sum(lower) <= budget <= sum(upper)``. Returns float64 arrays of length ``size``.
    """
    lower_arr = broadcast_to_size(lower, "lower", size)
    upper_arr = broadcast_to_size(upper, "upper", size, finite=False)
    bad = lower_arr > upper_arr
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"lower must be <= upper, got lower={lower_arr[i]!r} > upper={upper_arr[i]!r} at index {i}")
    family.check_lower(lower_arr)
    if integer:
        fin = np.isfinite(upper_arr)
        for name, arr, bad in (
            ("lower", lower_arr, lower_arr != np.floor(lower_arr)),
            ("upper", upper_arr, fin & (upper_arr != np.floor(np.where(fin, upper_arr, 0.0)))),
        ):
            if bad.any():
                i = int(np.argmax(bad))
                extra = " or inf" if name == "upper" else ""
                raise ValueError(
                    f"{name} must contain integers{extra} ({why.format(name)}), got {name}={arr[i]!r} at index {i}"
                )
    with np.errstate(over="ignore"):  # sums beyond DBL_MAX are inf: any budget fits below them
        lo_sum = float(lower_arr.sum())
        hi_sum = float(upper_arr.sum())
    if not (lo_sum <= budget <= hi_sum):
        raise ValueError(
            f"budget {_fmt(budget)} is infeasible: need sum(lower)={_fmt(lo_sum)} <= budget "
            f"<= sum(upper)={_fmt(hi_sum)}"
        )
    return lower_arr, upper_arr


def _allocate_iv(
    a: Any, budget: Any, lower: Any, upper: Any, cost: Any, integer: Any
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, CostFamily, bool]:
    family = get_cost(cost)
    if not isinstance(integer, (bool, np.bool_)):
        raise TypeError(f"integer must be a bool, got {type(integer).__name__}")
    integer = bool(integer)
    a_arr = as_float_array(a, "a", ndim=1, nonneg=True, min_size=1)
    size = a_arr.shape[0]
    if integer:
        budget_i = check_int_scalar(budget, "budget")
        if abs(budget_i) > _MAX_INT_BUDGET:
            raise ValueError(
                f"budget {budget_i} exceeds 2**53: integer=True counts are exact only up to 2**53 "
                "(float64 integers)"
            )
        budget_v = float(budget_i)
    else:
        budget_v = check_finite_scalar(budget, "budget")
    lower_arr, upper_arr = bounds_iv(
        lower, upper, size, family, budget_v, integer=integer, why="integer=True needs integer {} bounds"
    )
    return a_arr, budget_v, lower_arr, upper_arr, family, integer


_CERT_TEXT = {
    _k.CERT_NONFINITE: "non-finite allocation",
    _k.CERT_BOUNDS: "allocation outside [lower, upper]",
    _k.CERT_SUM: "allocation does not sum to the budget",
    _k.CERT_MARGINAL: "equal-marginal (KKT) condition violated",
    _k.CERT_EXCHANGE: "a single-unit exchange would lower the objective",
}


def allocate(
    a: Any,
    budget: Any,
    lower: Any,
    upper: Any,
    *,
    cost: str = "rloo",
    integer: bool = False,
) -> AllocationResult:
    """Exact optimal rollout allocation under a total budget (VIP eq. 5-9, Thm 5.1/5.2).

    Solves ``min sum_q f(a_q, n_q)`` s.t. ``sum_q n_q = budget`` and ``lower <= n <= upper``.

    Continuous mode returns the unique KKT point of Thm 5.1 (drgrpo) / Thm 5.2 (rloo) / GDRO
    eq. 21 (inverse): ``n_q = clip(n_q(lambda*), lower_q, upper_q)`` with ``-f'(n_q(lambda)) =
    lambda``; the multiplier is found in the level ``s = lambda**-0.5`` by safeguarded Newton on
    the consumed budget ``S(s)`` inside a shrinking bracket (O(B) per pass, no sort; S is
    piecewise linear for rloo and inverse, so Newton lands on the exact root of the final piece;
    drgrpo needs the root of the cubic ``a (n - 2) / n^3 = lambda`` per prompt: Newton steps
    warm-started from the previous pass, in a vectorised pass, with the trigonometric closed form
    wherever Newton cannot be trusted). The answer is certified after
    solving (sum, bounds, equal marginal cost on interior prompts, ``>= lambda`` at upper bounds,
    ``<= lambda`` at lower bounds); a failure is reported in ``status``, never hidden.

    ``integer=True`` returns an exact integer optimum of VIP eq. (5): greedy filling by largest
    marginal decrease from ``floor`` of the continuous optimum (clipped to the bounds), certified
    by the exchange condition ``max gain <= min loss`` (necessary and sufficient for separable
    discretely convex costs); ``lower_bound`` is the continuous optimum.

    Parameters
    ----------
    a : array_like, shape (B,)
        Per-prompt variance scale ``a_q >= 0`` (finite). ``a_q = 0`` (solved or hopeless prompt)
        is allowed and never produces NaN.
    budget : float (int when ``integer=True``)
        Total number of rollouts ``C``; needs ``sum(lower) <= budget <= sum(upper)``.
    lower, upper : float or array_like, shape (B,)
        Per-prompt bounds (scalars broadcast). ``lower`` must be finite and admissible for the
        cost (rloo: > 1, drgrpo: >= 3, inverse: > 0). ``upper`` may be ``+inf`` for any cost and
        mode (all three costs are decreasing, so an unbounded prompt simply absorbs budget).
        With ``integer=True`` both must be integers (``upper`` may be ``inf``).
    cost : {"rloo", "drgrpo", "inverse"}
        Cost family (:data:`COST_FAMILIES`).
    integer : bool
        Integer (eq. 5) instead of continuous (eq. 6/8) allocation.

    Returns
    -------
    AllocationResult
        ``n``, ``objective``, ``price``, ``lower_bound``, ``success``, ``status``, ``message``.

    Notes
    -----
    Choices where the papers are silent:

    * Prompts with ``a_q = 0`` sit at their lower bound whenever ``price > 0``. The price is 0
      only when every ``a > 0`` prompt is at its (finite) upper bound; the leftover budget is
      then spread over the ``a = 0`` prompts as evenly as possible (a common level
      ``clip(w, lower, upper)``; in integer mode: one unit at a time to the prompt with the fewest
      rollouts, lowest index first). This covers the all-zero case (any feasible point is optimal).
    * ``price`` is the smallest multiplier allowed by the KKT conditions when it is not unique.
    * Integer ties (equal gains) go to the prompt with fewer rollouts, then the lower index.

    Raises
    ------
    ValueError
        Infeasible budget, negative/NaN/inf ``a``, ``lower > upper``, ``lower`` below what the cost
        needs, non-integer bounds/budget with ``integer=True``, unknown cost, shape mismatch.
    TypeError
        Non-numeric input, non-bool ``integer``, non-string ``cost``.

    Examples
    --------
    >>> import numpy as np
    >>> from solvers import allocate
    >>> p = np.array([0.1, 0.5, 0.9, 1.0])
    >>> res = allocate(4 * p * (1 - p), 32, 3, 16, cost="rloo", integer=True)
    >>> res.n.tolist(), res.success
    ([8, 13, 8, 3], True)
    >>> bool(res.objective >= res.lower_bound)
    True
    """
    out = _fast_path(a, budget, lower, upper, cost, integer)
    if out is None:
        a_arr, budget_v, lower_arr, upper_arr, family, integer = _allocate_iv(a, budget, lower, upper, cost, integer)
        out = family, _k.allocate_kernel(family.code, a_arr, lower_arr, upper_arr, budget_v, integer, False)
    family, (n_cont, n_int, price, objective, lower_bound, detail, where, converged, path) = out
    n_out = n_int if integer else n_cont
    fallback = path == 2
    if not converged:
        status = ITERATION_LIMIT
        message = f"{MESSAGES[ITERATION_LIMIT]}: the price search did not converge"
    elif detail != _k.CERT_OK:
        status = CERTIFICATE_FAILED
        loc = f" (prompt {where})" if where >= 0 else ""
        stage = "integer" if integer and not detail == _k.CERT_MARGINAL else "continuous"
        message = f"{MESSAGES[CERTIFICATE_FAILED]}: {stage} solution: {_CERT_TEXT.get(detail, 'unknown')}{loc}"
    else:
        status = OPTIMAL
        message = MESSAGES[OPTIMAL]
        if fallback:
            message += " (integer greedy restarted from the lower bounds)"
    if status == OPTIMAL and not (math.isfinite(objective) and math.isfinite(price) and math.isfinite(lower_bound)):
        # e.g. a near DBL_MAX: the allocation is right but sum_q f(a_q, n_q) is not representable
        bad = [k for k, v in (("objective", objective), ("price", price), ("lower_bound", lower_bound))
               if not math.isfinite(v)]
        status = OVERFLOW
        message = overflow_message(bad, "a")
    return AllocationResult(
        n=n_out,
        objective=float(objective),
        price=float(price),
        lower_bound=float(lower_bound),
        success=status == OPTIMAL,
        status=status,
        message=message,
        cost=family.name,
        integer=integer,
    )
