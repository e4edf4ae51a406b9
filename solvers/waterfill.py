"""Water-filling minimiser of promptwise worst-case regret (DRRO Thm 3.4).

For one prompt with proxy rewards ``r_hat`` (n responses) and an l1 ambiguity budget ``delta``, the
DRRO policy solves (DRRO eq. 3.1)

    min_{pi in simplex} max_{||Delta||_1 <= delta} Reg(pi, r_hat + Delta)
    = delta - max_{pi in simplex} F_delta(pi; r_hat),
    F_delta(pi; r_hat) = <pi, r_hat> - max_i (r_hat_i - delta pi_i)            (eq. 3.4)

whose optimum is the water-filling rule of Theorem 3.4: with t0 the root of
``sum_i (r_hat_i - t)_+ = delta`` (eq. 3.5) and
``t* = inf{t >= t0 : sum_{i: r_hat_i > t} (max r_hat - r_hat_i) <= delta}``,

    pi_i = (r_hat_i - t*)_+ / delta  for non-top responses,  the leftover mass on the top response (3.6).

Implementation notes
--------------------
* Everything is computed in the gaps ``d_i = max(r_hat) - r_hat_i >= 0`` (so ``t = max r_hat - u``):
  ``u0 = (delta + D_k0) / k0`` with ``D_k`` the sum of the k smallest gaps and
  ``k0 = max{k : k d_(k) - D_k < delta}``; ``K = max{k : D_k <= delta}``; ``u* = min(u0, d_(K+1))``;
  ``pi_i = (u* - d_i)_+ / delta``.  Differences of rewards are formed once, so small ``delta`` does
  not lose precision to cancellation against large rewards.  O(n log n) per row: one sort of the
  values (insertion sort inside the kernel for n <= 32, a NumPy row sort before it otherwise), then
  O(n) passes in the original order (no argsort needed).
* **Ties at the top** (our choice; the theorem numbers responses so that one is "response 1"): the
  leftover mass ``1 - sum_i (r_hat_i - t*)_+ / delta`` is split *equally* among all responses whose
  reward equals the maximum.  Every such split is optimal for the LP (3.7); the equal split makes the
  policy permutation-equivariant (equal rewards give the uniform policy).
* **delta = 0**: the uniform policy on the argmax set (the limit delta -> 0 of the rule above, i.e.
  proxy-greedy with ties split equally).
* **Large delta**: the returned policy is ``pi_i = 1/n + (r_hat_i - mean)/delta`` (``t* = t0 =
  mean - delta/n``) if and only if ``delta >= n * max(max(r_hat) - mean, mean - min(r_hat))``, i.e.
  both (a) ``delta >= n (mean - min r_hat) = sum_i (r_hat_i - r_hat_n)``: every response is active
  at ``t0`` (``pi_n >= 0``), and (b) ``delta >= n (max r_hat - mean) = sum_i (r_hat_1 - r_hat_i)``:
  the slope (3.11) of psi at ``t0`` with all responses active is ``<= 0``, so ``t* = t0``.  The
  paper's "sanity checks" paragraph after Thm 3.4 states only (a) (``delta > sum_i (r_hat_i -
  r_hat_n)``), which is *not* sufficient: for ``r_hat = (10, 0, 0)`` and ``delta = 15`` (a) holds
  but (b) fails (15 < 20), and the optimum is ``e_1`` (F = 10 versus 9.44 for the 1/n formula).  We
  implement the theorem, not that paragraph (tested against the LP, including both boundaries).
* **Non-uniqueness**: when the slope of psi (eq. 3.11) vanishes on an interval, several policies are
  optimal; taking ``t*`` as the infimum (as the theorem does) returns the one with the largest
  support, so the support is monotone in ``delta``.
* **Certificate**: every row is certified by LP duality.  The primal value ``F_delta(pi)`` is evaluated
  directly from the returned policy; a dual point ``lambda`` (the adversary's mixed strategy) of
  ``min_{lambda in simplex} max_i (r_hat_i + delta lambda_i) - <lambda, r_hat>`` is built from the
  complementary-slackness conditions; the duality gap must be below ``1e-9 (delta + range(r_hat))``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL, OVERFLOW, overflow_message
from ._validation import as_float_array, broadcast_to_size, check_finite_scalar

__all__ = ["waterfill", "WaterfillResult"]

_GAP_RTOL = 1e-9
_SMALL_N = 32


@dataclass(frozen=True)
class WaterfillResult:
    """Full output of :func:`waterfill` (``full_output=True``).

    Attributes
    ----------
    policy : ndarray, shape (n,) or (P, n)
        The DRRO optimal policy (eq. 3.6).
    threshold : float or ndarray (P,)
        The optimal water level ``t*`` of Theorem 3.4 (``max(r_hat)`` when ``delta = 0``).
    baseline_threshold : float or ndarray (P,)
        ``t0``, the root of eq. (3.5) (``max(r_hat)`` when ``delta = 0``).
    objective : float or ndarray (P,)
        The robust utility ``F_delta(pi; r_hat)`` of eq. (3.4) at the returned policy.
    worst_case_regret : float or ndarray (P,)
        ``delta - objective`` (Prop 3.3): the minimal worst-case regret.
    duality_gap : float or ndarray (P,)
        Gap between the LP dual bound and ``objective`` (>= 0 up to rounding).
    success : bool
        True when every row passed its certificate.
    status : int
        ``OPTIMAL`` or ``CERTIFICATE_FAILED`` (see :mod:`solvers._status`).
    message : str
    """

    policy: np.ndarray
    threshold: Any
    baseline_threshold: Any
    objective: Any
    worst_case_regret: Any
    duality_gap: Any
    success: bool
    status: int
    message: str


@numba.njit(cache=True)
def _sort_desc_small(r, out):
    """Insertion sort of the values of ``r`` into ``out`` in decreasing order (fast for small n)."""
    n = r.shape[0]
    for j in range(n):
        v = r[j]
        k = j - 1
        while k >= 0 and out[k] < v:
            out[k + 1] = out[k]
            k -= 1
        out[k + 1] = v


def _presort_desc(r2: np.ndarray) -> np.ndarray:
    """Row-wise decreasing sort with NumPy (used for n > _SMALL_N: faster than a Numba sort)."""
    if r2.shape[1] <= _SMALL_N:
        return np.empty((1, r2.shape[1]))
    return np.ascontiguousarray(np.sort(r2, axis=1)[:, ::-1])


@numba.njit(cache=True)
def _row_scale(top, bottom, delta, n):
    """A power of two ``c`` such that the row ``c r`` with budget ``c delta`` keeps every sum of
    the kernels (``n (max r - min r + delta)`` at most) far from overflow and subnormal spreads
    away from the subnormal range; 1.0 for ordinary rows (so they are computed bit for bit as
    without scaling). The policies of Thm 3.4 and Lemma H.1 are invariant under
    ``(r, delta) -> (c r, c delta)`` for ``c > 0``; thresholds, values and gaps scale by ``c``.
    When ``c > 1`` (a tiny spread plus budget) the callers shift the row by its top reward before
    scaling, so that ``c r`` cannot overflow for large ``|r|`` (both policies and ``F_delta`` are
    also invariant under ``r -> r + const``)."""
    m = (top - bottom) + delta  # range + delta (exact for subnormal rows)
    if m == 0.0:
        return 1.0
    if m < np.inf:
        size = m * (4.0 * n)
        if size >= 2.0**-900 and size <= 2.0**1000:
            return 1.0
        e = math.frexp(m)[1]  # m = f 2^e, f in [0.5, 1)
    else:  # the range overflows: halve first
        e = math.frexp(0.5 * top - 0.5 * bottom + 0.5 * delta)[1] + 1
    return math.ldexp(1.0, min(-e, 1000))


@numba.njit(cache=True)
def _waterfill_row(r, rs, delta, out):
    """One row of Theorem 3.4 (``rs`` = values of ``r`` sorted decreasingly); writes ``out`` and
    returns (t*, t0, F, duality_gap, certified), rescaling the row by :func:`_row_scale` when its
    spread would overflow (1e308 and -1e308) or is subnormal."""
    n = r.shape[0]
    c = _row_scale(rs[0], rs[n - 1], delta, n)
    if c == 1.0:
        return _waterfill_core(r, rs, delta, out)
    if c > 1.0:
        # tiny spread + budget: shift by the top reward before scaling up, or c r overflows when
        # |r| is large (r = 3e16 with delta = 2e-313: c = 2**1000). Thm 3.4's policy and F_delta
        # are shift invariant; the thresholds shift back by r1.
        r1 = rs[0]
        t1, t0, primal, gap, ok = _waterfill_core((r - r1) * c, (rs - r1) * c, delta * c, out)
        return r1 + t1 / c, r1 + t0 / c, primal / c, gap / c, ok
    t1, t0, primal, gap, ok = _waterfill_core(r * c, rs * c, delta * c, out)
    return t1 / c, t0 / c, primal / c, gap / c, ok


@numba.njit(cache=True)
def _waterfill_core(r, rs, delta, out):
    """Theorem 3.4 on one (well-scaled) row; see :func:`_waterfill_row`."""
    n = r.shape[0]
    r1 = rs[0]
    m_top = 0
    for j in range(n):
        if rs[j] == r1:
            m_top += 1
        else:
            break
    if delta == 0.0:
        for i in range(n):
            out[i] = 1.0 / m_top if r[i] == r1 else 0.0
        return r1, r1, 0.0, 0.0, True
    # k0 = max{k : k d_(k) - D_k < delta} (eq. 3.5 in gap form); K = max{k : D_k <= delta}.
    cum = 0.0
    k0 = 1
    d_k0 = 0.0
    big_k = 1
    for k in range(1, n + 1):
        dk = r1 - rs[k - 1]
        cum += dk
        if k * dk - cum < delta:
            k0 = k
            d_k0 = cum
        if cum <= delta:
            big_k = k
    u0 = (delta + d_k0) / k0
    ustar = u0
    if big_k < n and r1 - rs[big_k] < ustar:
        ustar = r1 - rs[big_k]
    inv_delta = 1.0 / delta
    total = 0.0
    for i in range(n):
        gap = ustar - (r1 - r[i])
        if gap > 0.0:
            p = gap * inv_delta if inv_delta < np.inf else gap / delta  # subnormal delta
        else:
            p = 0.0
        out[i] = p
        total += p
    leftover = (1.0 - total) / m_top
    # --- certificate: primal value from the policy, dual value from the adversary's mixed strategy.
    min_cov = np.inf
    lin = 0.0
    for i in range(n):
        d = r1 - r[i]
        if d == 0.0:
            out[i] += leftover
        p = out[i]
        c = d + delta * p
        if c < min_cov:
            min_cov = c
        lin += p * d
    primal = min_cov - lin  # F_delta(pi) = <pi, r> - max_i(r_i - delta pi_i), in gap form
    tol = _GAP_RTOL * (delta + (r1 - rs[n - 1]))
    # Dual point from complementary slackness: w = nu - max(r) = 0 when mass is left over
    # (t* > t0), else w = (delta - D_k0)/k0; the other candidate is tried if the first fails.
    # w / delta = (1 - D_k0 / delta) / k0 is formed without w itself, which rounds to 0 for a
    # subnormal delta (the tied tops then got no dual mass); D_k0 < k0 delta, so it stays finite.
    w_alt_scaled = (1.0 - d_k0 / delta) / k0
    first = 0 if ustar < u0 else 1
    best_gap = np.inf
    for attempt in range(2):
        cand = first if attempt == 0 else 1 - first
        w_scaled = 0.0 if cand == 0 else w_alt_scaled
        if w_scaled < 0.0:
            continue
        rem = 1.0
        top = -np.inf
        lin = 0.0
        for j in range(n):
            d = r1 - rs[j]
            cap = w_scaled + (d * inv_delta if inv_delta < np.inf else d / delta)
            lam = cap if cap < rem else rem
            if lam < 0.0:
                lam = 0.0
            rem -= lam
            v = delta * lam - d
            if v > top:
                top = v
            lin += lam * d
            if rem <= 0.0:
                # remaining lambdas are 0: their terms -d_j <= 0 <= top (j = 0 has d = 0), lin unchanged
                break
        if rem > 1e-12:
            continue
        g = top + lin - primal
        if g < best_gap:
            best_gap = g
        if abs(best_gap) <= tol:
            break
    return r1 - ustar, r1 - u0, primal, best_gap, abs(best_gap) <= tol


@numba.njit(cache=True)
def _waterfill_kernel(r_hat, presorted, delta, policy, tstar, t0, objective, gap, certified):
    """Batched water-filling: ``r_hat`` (P, n) C-contiguous float64, ``delta`` (P,).

    ``presorted`` is the row-wise decreasing sort of ``r_hat`` when n > _SMALL_N (else a dummy)."""
    n_rows, n = r_hat.shape
    buf = np.empty(n, dtype=np.float64)
    small = n <= _SMALL_N
    for b in range(n_rows):
        if small:
            _sort_desc_small(r_hat[b], buf)
            res = _waterfill_row(r_hat[b], buf, delta[b], policy[b])
        else:
            res = _waterfill_row(r_hat[b], presorted[b], delta[b], policy[b])
        tstar[b] = res[0]
        t0[b] = res[1]
        objective[b] = res[2]
        gap[b] = res[3]
        certified[b] = res[4]


def _waterfill_iv(r_hat: Any, delta: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    r = as_float_array(r_hat, "r_hat", ndim=(1, 2))
    one_d = r.ndim == 1
    r2 = r.reshape(1, -1) if one_d else r
    if r2.shape[1] < 1:
        raise ValueError(f"r_hat must have at least one response per row, got shape {r.shape}")
    if one_d:
        dl = np.array([check_finite_scalar(delta, "delta", lo=0.0)])
    else:
        dl = broadcast_to_size(delta, "delta", r2.shape[0], nonneg=True)
    return np.ascontiguousarray(r2), np.ascontiguousarray(dl), one_d


def waterfill_numpy(r_hat: np.ndarray, delta: float) -> np.ndarray:
    """Pure-NumPy twin of the water-filling kernel for one row (reference and benchmark peer).

    Same math, tie rule and row scaling (:func:`_row_scale`) as :func:`waterfill`, written with
    ``argsort``/``cumsum``; no validation.
    """
    r = np.asarray(r_hat, dtype=np.float64)
    n = r.size
    c = _row_scale.py_func(float(r.max()), float(r.min()), float(delta), n)
    r, delta = ((r - r.max()) * c if c > 1.0 else r * c), delta * c
    order = np.argsort(-r, kind="stable")
    d = r[order[0]] - r[order]
    top = d == 0.0
    m_top = int(top.sum())
    pi = np.zeros(n)
    if delta == 0.0:
        pi[order[:m_top]] = 1.0 / m_top
        return pi
    ks = np.arange(1, n + 1)
    cum = np.cumsum(d)
    k0 = int(np.nonzero(ks * d - cum < delta)[0][-1]) + 1
    big_k = int(np.nonzero(cum <= delta)[0][-1]) + 1
    u0 = (delta + cum[k0 - 1]) / k0
    ustar = min(u0, d[big_k]) if big_k < n else u0
    d_orig = r[order[0]] - r
    inv_delta = 1.0 / delta
    gap = np.maximum(ustar - d_orig, 0.0)
    pi = gap * inv_delta if np.isfinite(inv_delta) else gap / delta
    pi[d_orig == 0.0] += (1.0 - pi.sum()) / m_top
    return pi


def _feasible_rows(policy: np.ndarray, r2: np.ndarray, certified: np.ndarray) -> None:
    """Make every row of ``policy`` a probability vector, in place (a last line of defence).

    A returned policy is always a distribution, certified or not: callers that skip ``success``
    would otherwise train on a zero or non-finite row. A row that is not finite, has a negative
    entry or sums to more than ``n * 2**-40`` away from 1 is replaced by the proxy-greedy policy
    (uniform on the argmax set, the ``delta -> 0`` limit of both Thm 3.4 and Lemma H.1) and its
    certificate is marked failed. No row of a finite input is known to reach this branch (the
    row scaling of :func:`_row_scale` covers the extreme inputs found so far)."""
    n = policy.shape[1]
    with np.errstate(invalid="ignore", over="ignore"):
        bad = ~np.isfinite(policy).all(axis=1) | (policy < 0.0).any(axis=1)
        bad |= ~(np.abs(policy.sum(axis=1) - 1.0) <= n * 2.0**-40)
    if not bad.any():
        return
    rows = r2[bad]
    top = rows == rows.max(axis=1, keepdims=True)
    policy[bad] = top / top.sum(axis=1, keepdims=True)
    certified[bad] = False


def _row_certificate(
    certified: np.ndarray, name: str, *, warn: bool, reported: dict[str, np.ndarray] | None = None
) -> tuple[bool, int, str]:
    """Status and message from per-row duality-gap certificates; optionally warn on failure.

    Shared by :func:`waterfill` and :func:`solvers.dro_policy` (whose plain-array return has no
    ``status`` field, so a failed certificate is surfaced as a ``RuntimeWarning``). ``reported``
    holds the per-row numbers of the full output: any that is not finite (a value of rewards near
    +-DBL_MAX that overflows) gives ``OVERFLOW`` (the policy itself is certified and finite).
    """
    ok = bool(certified.all())
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[status]
    if not ok:
        rows = np.flatnonzero(~certified)[:5].tolist()
        message = f"{MESSAGES[status]}: duality gap above tolerance in rows {rows}"
        if warn:
            warnings.warn(f"{name}: {message}", RuntimeWarning, stacklevel=3)
    elif reported:
        bad = [k for k, v in reported.items() if not np.all(np.isfinite(v))]
        if bad:
            ok, status, message = False, OVERFLOW, overflow_message(bad, "r_hat and delta")
    return ok, status, message


def waterfill(r_hat: Any, delta: Any, *, full_output: bool = False) -> Any:
    """DRRO optimal policy by water-filling with leftover mass (DRRO Theorem 3.4, eq. 3.5-3.6).

    Parameters
    ----------
    r_hat : array_like, shape (n,) or (P, n)
        Proxy rewards of the n responses of one prompt, or one row per prompt.  Any order, ties allowed.
    delta : float or array_like of shape (P,)
        l1 ambiguity budget ``delta >= 0`` (one per row allowed for 2-D ``r_hat``).
    full_output : bool, default False
        Return a :class:`WaterfillResult` (thresholds, objective, certificate) instead of the array.

    Returns
    -------
    policy : ndarray, same shape as ``r_hat``
        The minimiser of worst-case regret (eq. 3.1), i.e. the maximiser of ``F_delta`` (eq. 3.4).
        Leftover mass is split equally over tied top responses; ``delta = 0`` gives the uniform
        policy on the argmax set.  See the module docstring for the large-delta limit.

    Raises
    ------
    ValueError
        Non-finite ``r_hat`` or ``delta``, negative ``delta``, empty rows, wrong shapes.

    Warns
    -----
    RuntimeWarning
        If a row fails its LP-duality certificate (only when ``full_output=False``; otherwise
        reported in ``status``).

    Examples
    --------
    >>> waterfill([1.0, 0.5, 0.0], 0.2)
    array([1., 0., 0.])
    >>> waterfill([1.0, 0.5, 0.0], 1.0).round(3)
    array([0.75, 0.25, 0.  ])
    """
    r2, dl, one_d = _waterfill_iv(r_hat, delta)
    n_rows, n = r2.shape
    policy = np.empty_like(r2)
    tstar = np.empty(n_rows)
    t0 = np.empty(n_rows)
    obj = np.empty(n_rows)
    gap = np.empty(n_rows)
    certified = np.empty(n_rows, dtype=np.bool_)
    if n_rows:
        _waterfill_kernel(r2, _presort_desc(r2), dl, policy, tstar, t0, obj, gap, certified)
        _feasible_rows(policy, r2, certified)
    if not full_output:
        _row_certificate(certified, "waterfill", warn=True)
        return policy[0] if one_d else policy
    with np.errstate(over="ignore", invalid="ignore"):
        regret = dl - obj
    ok, status, message = _row_certificate(
        certified, "waterfill", warn=False,
        reported={"threshold": tstar, "baseline_threshold": t0, "objective": obj,
                  "worst_case_regret": regret, "duality_gap": gap},
    )

    def pick(a: np.ndarray) -> Any:
        return float(a[0]) if one_d else a

    return WaterfillResult(
        policy=policy[0] if one_d else policy,
        threshold=pick(tstar),
        baseline_threshold=pick(t0),
        objective=pick(obj),
        worst_case_regret=pick(regret),
        duality_gap=pick(gap),
        success=ok,
        status=status,
        message=message,
    )
