"""Square-root law for the variance-optimal bin-level rollout allocation (GDRO eq. 20-21, Thm F.17).

Problem (GDRO eq. 20 / 55), with optional per-bin bounds::

    minimise   sum_b q_b v_b / n_b
    subject to sum_b q_b n_b = n_bar,   lower_b <= n_b <= upper_b,

over the active bins ``A = {b : q_b > 0}``. Without bounds the solution is the Neyman /
square-root rule (eq. 21 / 56) ``n_b = n_bar sqrt(v_b) / sum_c q_c sqrt(v_c)``, with value
(eq. 57) ``(sum_b q_b sqrt(v_b))**2 / n_bar``. With bounds, the KKT conditions give
``n_b(mu) = clip(sqrt(v_b / mu), lower_b, upper_b)`` for a shadow price ``mu >= 0``; writing
``t = 1 / sqrt(mu)``, the consumed budget ``h(t) = sum_b q_b clip(t sqrt(v_b), lower_b, upper_b)`` is
continuous, piecewise linear and non-decreasing, so the exact ``t`` is the root of one of its
linear pieces. The solver finds that piece by a safeguarded Newton iteration started at the
unbounded square-root law (``O(B)`` per iteration, no sorting; typically a few iterations), and
falls back to a binary search over the sorted breakpoints (``O(B log B)``) if Newton has not
finished after 100 iterations. Both return the exact root of the final piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._allocation_kernels import _heapsort_range
from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL, OVERFLOW, overflow_message
from ._validation import as_float_array, broadcast_to_size, check_finite_scalar, check_same_shape

__all__ = ["SqrtAllocationResult", "sqrt_allocation"]

_SHARE_SUM_TOL = 1e-6
_CERT_TOL = 1e-8


@dataclass(frozen=True)
class SqrtAllocationResult:
    """Result of :func:`sqrt_allocation`.

    Attributes
    ----------
    n : ndarray of float64, shape (B,)
        Rollouts per prompt for each bin (real-valued relaxation).
    objective : float
        Variance proxy ``sum_{b: q_b > 0, v_b > 0} q_b v_b / n_b`` at ``n`` (GDRO eq. 19).
    price : float
        Shadow price ``mu`` of the budget constraint ``sum_b q_b n_b = n_bar`` (KKT multiplier, in
        units of variance per rollout squared: ``v_b / n_b**2 = mu`` on interior bins). ``0.0``
        when the budget is so large that every positive-variance bin sits at its upper bound.
    zero_share : ndarray of bool, shape (B,)
        Mask of bins with ``q_b == 0``: they take no part in the objective or the budget.
    success : bool
        ``status == OPTIMAL``.
    status : int
        ``OPTIMAL`` (0) or ``CERTIFICATE_FAILED`` (1); see :mod:`solvers._status`.
    message : str
        Human-readable description of the outcome.
    """

    n: np.ndarray
    objective: float
    price: float
    zero_share: np.ndarray
    success: bool
    status: int
    message: str


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------


@numba.njit(cache=True, error_model="numpy")
def _level_sum(weight, slope, lower, upper, t):  # pragma: no cover - compiled
    total = 0.0
    for i in range(weight.shape[0]):
        x = t * slope[i]
        if x < lower[i]:
            x = lower[i]
        elif x > upper[i]:
            x = upper[i]
        total += weight[i] * x
    return total


@numba.njit(cache=True, error_model="numpy")
def _clip_level_kernel(weight, slope, lower, upper, target):  # pragma: no cover - compiled
    """Solve ``sum_i weight_i * clip(t * slope_i, lower_i, upper_i) = target`` for ``t >= 0``.

    ``weight > 0``, ``slope > 0``, ``0 <= lower <= upper <= inf``. The left side ``h(t)`` is
    continuous, piecewise linear and non-decreasing with breakpoints ``lower_i / slope_i`` and
    ``upper_i / slope_i``. A binary search over the sorted breakpoints (``h`` evaluated directly,
    so no round-off accumulates) finds the linear piece holding the root, which is then solved
    from that piece's free set. If ``target <= h(first breakpoint)`` every coordinate is at its
    lower bound and the first breakpoint is returned (the largest ``t``, i.e. the smallest price,
    consistent with the KKT conditions). Returns ``inf`` when ``target > h(inf)``.
    """
    m = weight.shape[0]
    if m == 0:
        return np.inf
    times = np.empty(2 * m)
    n_ev = 0
    has_inf_upper = False
    for i in range(m):
        times[n_ev] = lower[i] / slope[i]
        n_ev += 1
        if upper[i] < np.inf:
            times[n_ev] = upper[i] / slope[i]
            n_ev += 1
        else:
            has_inf_upper = True
    times = times[:n_ev]
    # the sorted breakpoints (the same values as np.sort's), by a heapsort that compiles in a
    # fraction of the time of Numba's np.sort (this fallback is compiled on every first call)
    _heapsort_range(times, np.int64(0), np.int64(n_ev - 1))
    if _level_sum(weight, slope, lower, upper, times[0]) >= target:
        return times[0]
    last = n_ev - 1
    if _level_sum(weight, slope, lower, upper, times[last]) < target:
        if not has_inf_upper:
            return np.inf
        t_left = times[last]
        t_right = np.inf
    else:
        # smallest index hi with h(times[hi]) >= target; h(times[lo]) < target
        lo = 0
        hi = last
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _level_sum(weight, slope, lower, upper, times[mid]) >= target:
                hi = mid
            else:
                lo = mid
        t_left = times[lo]
        t_right = times[hi]
    probe = 2.0 * t_left + 1.0 if t_right == np.inf else 0.5 * (t_left + t_right)
    fixed = 0.0
    rate = 0.0
    for i in range(m):
        x = probe * slope[i]
        if x <= lower[i]:
            fixed += weight[i] * lower[i]
        elif x >= upper[i]:
            fixed += weight[i] * upper[i]
        else:
            rate += weight[i] * slope[i]
    if rate <= 0.0:  # pragma: no cover - impossible for a piece that crosses the target
        return t_right
    t = (target - fixed) / rate
    if t < t_left:
        t = t_left
    if t > t_right:
        t = t_right
    return t


@numba.njit(cache=True, error_model="numpy")
def _clip_status_same(slope, lower, upper, t_a, t_b):  # pragma: no cover - compiled
    """True if every coordinate has the same status (below / free / above) at ``t_a`` and ``t_b``."""
    for i in range(slope.shape[0]):
        xa = t_a * slope[i]
        xb = t_b * slope[i]
        sa = -1 if xa <= lower[i] else (1 if xa >= upper[i] else 0)
        sb = -1 if xb <= lower[i] else (1 if xb >= upper[i] else 0)
        if sa != sb:
            return False
    return True


@numba.njit(cache=True, error_model="numpy")
def _clip_level_fast(weight, slope, lower, upper, target):  # pragma: no cover - compiled
    """Same root as :func:`_clip_level_kernel` in ``O(m)`` per iteration, without sorting.

    Safeguarded Newton on the piecewise-linear ``h``: from the current ``t`` the free set gives
    the exact root of the current linear piece, ``t_new = (target - fixed) / rate``; if every
    coordinate keeps its status at ``t_new`` that root is the answer (exact, like the breakpoint
    search); otherwise the bracket ``[lo, hi]`` with ``h(lo) < target <= h(hi)`` shrinks and
    the next point is ``t_new`` when inside the bracket, else the midpoint (doubling while ``hi``
    is infinite). Falls back to the sorting breakpoint search after 100 iterations.
    """
    m = weight.shape[0]
    if m == 0:
        return np.inf
    t_first = np.inf
    t_last = 0.0
    has_inf_upper = False
    sum_ws = 0.0
    for i in range(m):
        a = lower[i] / slope[i]
        if a < t_first:
            t_first = a
        if upper[i] < np.inf:
            b = upper[i] / slope[i]
            if b > t_last:
                t_last = b
        else:
            has_inf_upper = True
        sum_ws += weight[i] * slope[i]
    if _level_sum(weight, slope, lower, upper, t_first) >= target:
        return t_first
    if has_inf_upper:
        hi = np.inf
    else:
        if _level_sum(weight, slope, lower, upper, t_last) < target:
            return np.inf
        hi = t_last
    lo = t_first
    t = target / sum_ws  # the unbounded square-root law
    if not (lo < t < hi):
        t = 2.0 * lo + 1.0 if hi == np.inf else 0.5 * (lo + hi)
    for _ in range(100):
        fixed = 0.0
        rate = 0.0
        for i in range(m):
            x = t * slope[i]
            if x <= lower[i]:
                fixed += weight[i] * lower[i]
            elif x >= upper[i]:
                fixed += weight[i] * upper[i]
            else:
                rate += weight[i] * slope[i]
        value = fixed + rate * t
        t_new = -1.0
        if rate > 0.0:
            t_new = (target - fixed) / rate
            if t_new >= 0.0 and _clip_status_same(slope, lower, upper, t, t_new):
                return t_new
        if value < target:
            lo = t
        else:
            hi = t
        if lo < t_new < hi:
            t = t_new
        elif hi == np.inf:
            t = 2.0 * lo + 1.0
        else:
            t = 0.5 * (lo + hi)
            if not (lo < t < hi):
                break
    return _clip_level_kernel(weight, slope, lower, upper, target)


def _clip_level_python(weight, slope, lower, upper, target):
    """Slow, obviously-correct twin of :func:`_clip_level_kernel`: bisection on ``t``.

    Evaluates ``h(t)`` directly (no breakpoint bookkeeping); used by the tests.
    """
    weight, slope, lower, upper = (np.asarray(x, dtype=np.float64) for x in (weight, slope, lower, upper))

    def h(t):
        return float(np.sum(weight * np.clip(t * slope, lower, upper)))

    if weight.size == 0:
        return np.inf
    finite_upper = np.where(np.isfinite(upper), upper, 0.0)
    if np.all(np.isfinite(upper)) and h(float(np.max(finite_upper / slope))) < target:
        return np.inf
    lo, hi = 0.0, 1.0
    while h(hi) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if h(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


# --------------------------------------------------------------------------------------------
# public function
# --------------------------------------------------------------------------------------------


def _sqrt_allocation_iv(v, shares, mean_budget, lower, upper):
    v = as_float_array(v, "v", ndim=1, nonneg=True, min_size=1)
    shares = as_float_array(shares, "shares", ndim=1, nonneg=True)
    check_same_shape(v, "v", shares, "shares")
    total_share = float(shares.sum())
    if abs(total_share - 1.0) > _SHARE_SUM_TOL:
        raise ValueError(
            f"shares must sum to 1 (bin fractions of the batch), got sum {total_share!r}; "
            "divide by their sum first"
        )
    mean_budget = check_finite_scalar(mean_budget, "mean_budget", lo=0.0, lo_open=True)
    size = v.shape[0]
    lower = np.zeros(size) if lower is None else broadcast_to_size(lower, "lower", size, nonneg=True)
    upper = (
        np.full(size, np.inf)
        if upper is None
        else broadcast_to_size(upper, "upper", size, finite=False, positive=True)
    )
    bad = lower > upper
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"lower must be <= upper, got lower={lower[i]!r} > upper={upper[i]!r} at index {i}")
    active = shares > 0
    low_sum = float(np.sum(shares[active] * lower[active]))
    up_sum = float(np.sum(shares[active] * upper[active])) if np.all(np.isfinite(upper[active])) else np.inf
    tol = 1e-12 * max(low_sum, mean_budget)  # relative: budgets of 1e-200 are not 'equal' to 0
    if not (low_sum - tol <= mean_budget <= up_sum + tol):
        raise ValueError(
            f"mean_budget {mean_budget!r} is infeasible: need sum_b q_b lower_b={low_sum!r} <= "
            f"mean_budget <= sum_b q_b upper_b={up_sum!r} (over bins with positive share)"
        )
    pinned = active & (v > 0) & (lower == 0)
    if pinned.any() and mean_budget <= low_sum + tol:
        raise ValueError(
            f"mean_budget {mean_budget!r} equals sum_b q_b lower_b, which forces n_b = 0 on bin "
            f"{int(np.argmax(pinned))} with v_b > 0 (infinite variance proxy); raise mean_budget "
            "or that bin's lower bound"
        )
    return v, shares, mean_budget, lower, upper


def sqrt_allocation(v, shares, mean_budget, *, lower=None, upper=None) -> SqrtAllocationResult:
    """Variance-optimal rollouts per bin under a mean-rollout budget: the square-root law.

    Solves (GDRO eq. 20, Thm F.17, with optional bounds)::

        minimise   sum_b q_b v_b / n_b
        subject to sum_b q_b n_b = mean_budget,   lower_b <= n_b <= upper_b.

    Without active bounds the answer is eq. 21 / 56,
    ``n_b = mean_budget * sqrt(v_b) / sum_c q_c sqrt(v_c)``, with value eq. 57; in general
    ``n_b = clip(sqrt(v_b / price), lower_b, upper_b)`` with the shadow price found exactly.

    Parameters
    ----------
    v : array_like of float, shape (B,)
        Intrinsic per-bin variance ``v_b(theta) >= 0``.
    shares : array_like of float, shape (B,)
        Bin fractions ``q_b >= 0`` of the batch; must sum to 1 (within 1e-6). They are used as
        given (not renormalised). Bins with ``q_b == 0`` are reported in ``zero_share`` and never
        divided by.
    mean_budget : float
        Mean rollouts per prompt ``n_bar > 0``.
    lower, upper : float or array_like of shape (B,), optional
        Bounds on ``n_b`` (defaults 0 and +inf). Need ``sum_b q_b lower_b <= mean_budget <=
        sum_b q_b upper_b`` over bins with positive share.

    Returns
    -------
    SqrtAllocationResult
        ``n``, ``objective``, ``price``, ``zero_share``, ``success``, ``status``, ``message``.

    Notes
    -----
    Choices where the paper leaves freedom (Thm F.17 and its proof):

    * Active bins with ``v_b == 0`` contribute nothing to the objective, so they get the
      smallest allowed count ``lower_b`` (0 without bounds, matching eq. 56; the proof's "choose
      the smallest rollout arm"). Their term ``q_b * 0 / n_b`` counts as 0 even when ``n_b = 0``.
      Only if every positive-variance bin is at its upper bound and budget remains (``price ==
      0``) do the zero-variance bins absorb the rest, by a common level
      ``n_b = clip(level, lower_b, upper_b)``.
    * Zero-share bins (``q_b == 0``) are given the shadow-price best response
      ``clip(sqrt(v_b / price), lower_b, upper_b)`` (the eq. 56 formula in the unbounded case),
      what they would receive if they appeared at the current price; with ``price == 0`` they
      get ``upper_b`` if ``v_b > 0`` (possibly ``inf``) and ``lower_b`` otherwise.

    The result is certified after solving: budget feasibility, bounds, and the KKT conditions
    (``v_b / n_b**2`` equal to ``price`` on interior bins, ``<= price`` at lower and ``>= price``
    at upper bounds), each to a relative tolerance of 1e-8.

    Examples
    --------
    >>> import numpy as np
    >>> res = sqrt_allocation(v=[1.0, 4.0], shares=[0.5, 0.5], mean_budget=3.0)
    >>> res.n.tolist()                 # proportional to sqrt(v) = (1, 2), mean 3
    [2.0, 4.0]
    >>> round(res.objective, 12)       # (0.5 * 1 + 0.5 * 2)**2 / 3, eq. 57
    0.75
    """
    v, shares, n_bar, lower, upper = _sqrt_allocation_iv(v, shares, mean_budget, lower, upper)
    n, price = _sqrt_solve_kernel(v, shares, n_bar, lower, upper)
    objective, code = _certify_kernel(v, shares, n_bar, lower, upper, n, price, _CERT_TOL)
    ok = code == 0
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[OPTIMAL] if ok else f"{MESSAGES[CERTIFICATE_FAILED]}: {_CERT_REASONS[code]}"
    active = shares > 0
    bad = [k for k, good in (("objective", np.isfinite(objective)), ("price", np.isfinite(price)),
                             ("n", np.all(np.isfinite(n[active])))) if not good]
    if bad and (ok or code == 6):  # e.g. a budget of 1e-300: price v/n^2 ~ 1e300 * v overflows
        status, message = OVERFLOW, overflow_message(bad, "v and mean_budget")
    return SqrtAllocationResult(
        n=n,
        objective=float(objective),
        price=float(price),
        zero_share=shares == 0,
        success=status == OPTIMAL,
        status=status,
        message=message,
    )


@numba.njit(cache=True, error_model="numpy")
def _sqrt_solve_kernel(v, shares, n_bar, lower, upper):  # pragma: no cover - compiled
    """Compiled solve of the bounded square-root law; returns ``(n, price)`` (see module doc)."""
    size = v.shape[0]
    n = np.empty(size)
    m_pos = 0
    m_zero = 0
    base = 0.0
    for b in range(size):
        if shares[b] > 0:
            if v[b] > 0:
                m_pos += 1
            else:
                m_zero += 1
                base += shares[b] * lower[b]
    w = np.empty(m_pos)
    s = np.empty(m_pos)
    lo = np.empty(m_pos)
    hi = np.empty(m_pos)
    j = 0
    for b in range(size):
        if shares[b] > 0 and v[b] > 0:
            w[j] = shares[b]
            s[j] = np.sqrt(v[b])
            lo[j] = lower[b]
            hi[j] = upper[b]
            j += 1
    t = _clip_level_fast(w, s, lo, hi, n_bar - base)
    if t < np.inf:
        price = (1.0 / t) / t if t > 0 else np.inf  # not 1/(t*t): t*t underflows for tiny budgets
        for b in range(size):
            if shares[b] > 0:
                if v[b] > 0:
                    x = t * np.sqrt(v[b])
                    n[b] = min(max(x, lower[b]), upper[b])
                else:
                    n[b] = lower[b]
    else:
        price = 0.0
        rest = n_bar
        zw = np.empty(m_zero)
        zlo = np.empty(m_zero)
        zhi = np.empty(m_zero)
        k = 0
        for b in range(size):
            if shares[b] > 0:
                if v[b] > 0:
                    n[b] = upper[b]
                    rest -= shares[b] * upper[b]
                else:
                    zw[k] = shares[b]
                    zlo[k] = lower[b]
                    zhi[k] = upper[b]
                    k += 1
        level = _clip_level_fast(zw, np.ones(m_zero), zlo, zhi, rest)
        for b in range(size):
            if shares[b] > 0 and v[b] == 0:
                if level < np.inf:
                    n[b] = min(max(level, lower[b]), upper[b])
                else:
                    n[b] = upper[b]
    for b in range(size):
        if shares[b] == 0:
            if price == 0.0:
                n[b] = upper[b] if v[b] > 0 else lower[b]
            elif price == np.inf:
                n[b] = lower[b]
            else:
                n[b] = min(max(np.sqrt(v[b] / price), lower[b]), upper[b])
    return n, price


def _sqrt_solve_python(v, shares, n_bar, lower, upper):
    """NumPy twin of :func:`_sqrt_solve_kernel`, built on the bisection twin
    :func:`_clip_level_python`; used by the tests. Returns ``(n, price)``."""
    size = v.shape[0]
    zero_share = shares == 0
    active = ~zero_share
    pos = active & (v > 0)
    zero_var = active & (v == 0)
    sqrt_v = np.sqrt(v)
    n = np.empty(size)
    base = float(np.sum(shares[zero_var] * lower[zero_var]))
    idx = np.flatnonzero(pos)
    t = _clip_level_python(shares[idx], sqrt_v[idx], lower[idx], upper[idx], n_bar - base)
    if np.isfinite(t):
        n[idx] = np.clip(t * sqrt_v[idx], lower[idx], upper[idx])
        n[zero_var] = lower[zero_var]
        price = (1.0 / t) / t if t > 0 else np.inf  # not 1/(t*t): t*t underflows for tiny budgets
    else:
        price = 0.0
        n[idx] = upper[idx]
        zidx = np.flatnonzero(zero_var)
        rest = n_bar - float(np.sum(shares[idx] * upper[idx]))
        level = _clip_level_python(shares[zidx], np.ones(zidx.size), lower[zidx], upper[zidx], rest)
        n[zidx] = np.clip(level, lower[zidx], upper[zidx]) if np.isfinite(level) else upper[zidx]
    zs = np.flatnonzero(zero_share)
    if zs.size:
        if price == 0:
            n[zs] = np.where(v[zs] > 0, upper[zs], lower[zs])
        elif np.isinf(price):
            n[zs] = lower[zs]
        else:
            n[zs] = np.clip(sqrt_v[zs] / np.sqrt(price), lower[zs], upper[zs])
    return n, price


_CERT_REASONS = {
    1: "budget constraint sum_b q_b n_b = mean_budget violated",
    2: "bounds violated",
    3: "unequal marginal variance reduction v_b / n_b**2 on interior bins",
    4: "a bin at its lower bound would gain from more rollouts",
    5: "a bin at its upper bound would gain from fewer rollouts",
    6: "infinite price with a bin above its lower bound",
}


@numba.njit(cache=True, error_model="numpy")
def _certify_kernel(v, shares, n_bar, lower, upper, n, price, tol):  # pragma: no cover - compiled
    """Objective and certificate code (0 = feasible and KKT; see ``_CERT_REASONS``)."""
    size = v.shape[0]
    used = 0.0
    objective = 0.0
    max_marg = 0.0
    for b in range(size):
        if shares[b] > 0:
            used += shares[b] * n[b]
            if v[b] > 0:
                objective += shares[b] * v[b] / n[b]
                marg = (v[b] / n[b]) / n[b]  # not v/(n*n): n*n underflows for tiny n
                if marg > max_marg:
                    max_marg = marg
    if not abs(used - n_bar) <= tol * max(1.0, n_bar):
        return objective, 1
    for b in range(size):
        if shares[b] > 0 and (n[b] < lower[b] * (1 - tol) - tol or n[b] > upper[b] * (1 + tol)):
            return objective, 2
    rel = 1e3 * tol * max(price, max_marg) if price < np.inf else 0.0
    for b in range(size):
        if shares[b] > 0 and v[b] > 0:
            at_lo = n[b] <= lower[b] * (1 + tol)
            at_hi = n[b] >= upper[b] * (1 - tol)
            if price == np.inf:
                if not at_lo:
                    return objective, 6
                continue
            marg = (v[b] / n[b]) / n[b]
            if not at_lo and not at_hi and abs(marg - price) > rel:
                return objective, 3
            if at_lo and not at_hi and marg > price + rel:
                return objective, 4
            if at_hi and not at_lo and marg < price - rel:
                return objective, 5
    return objective, 0
