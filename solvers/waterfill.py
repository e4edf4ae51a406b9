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
  not lose precision to cancellation against large rewards.  O(n log n) per row (one sort).
* **Ties at the top** (our choice; the theorem numbers responses so that one is "response 1"): the
  leftover mass ``1 - sum_i (r_hat_i - t*)_+ / delta`` is split *equally* among all responses whose
  reward equals the maximum.  Every such split is optimal for the LP (3.7); the equal split makes the
  policy permutation-equivariant (equal rewards give the uniform policy).
* **delta = 0**: the uniform policy on the argmax set (the limit delta -> 0 of the rule above, i.e.
  proxy-greedy with ties split equally).
* **Large delta**: ``pi_i = 1/n + (r_hat_i - mean)/delta`` holds once
  ``delta >= n * max(max(r_hat) - mean, mean - min(r_hat))``.  The sufficient condition printed in the
  paper's "sanity checks" paragraph (``delta > sum_i (r_hat_i - r_hat_n)``) is *not* sufficient: for
  ``r_hat = (10, 0, 0)`` and ``delta = 15`` it holds, yet the optimum is ``e_1`` (F = 10 versus 9.44
  for the 1/n formula); we implement the theorem, not that paragraph (tested against the LP).
* **Non-uniqueness**: when the slope of psi (eq. 3.11) vanishes on an interval, several policies are
  optimal; taking ``t*`` as the infimum (as the theorem does) returns the one with the largest
  support, so the support is monotone in ``delta``.
* **Certificate**: every row is certified by LP duality.  The primal value ``F_delta(pi)`` is evaluated
  directly from the returned policy; a dual point ``lambda`` (the adversary's mixed strategy) of
  ``min_{lambda in simplex} max_i (r_hat_i + delta lambda_i) - <lambda, r_hat>`` is built from the
  complementary-slackness conditions; the duality gap must be below ``1e-9 (delta + range(r_hat))``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL
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
def _sorted_desc_index(r, idx):
    """Indices sorting ``r`` in decreasing order (stable); insertion sort for small n."""
    n = r.shape[0]
    if n <= _SMALL_N:
        for j in range(n):
            idx[j] = j
        for j in range(1, n):
            cur = idx[j]
            v = r[cur]
            k = j - 1
            while k >= 0 and r[idx[k]] < v:
                idx[k + 1] = idx[k]
                k -= 1
            idx[k + 1] = cur
    else:
        order = np.argsort(-r, kind="mergesort")
        for j in range(n):
            idx[j] = order[j]


@numba.njit(cache=True)
def _waterfill_row(r, delta, out, idx, d):
    """One row of Theorem 3.4; writes ``out`` and returns (t*, t0, F, duality_gap)."""
    n = r.shape[0]
    _sorted_desc_index(r, idx)
    r1 = r[idx[0]]
    for j in range(n):
        d[j] = r1 - r[idx[j]]
    m_top = 0
    for j in range(n):
        if d[j] == 0.0:
            m_top += 1
        else:
            break
    if delta == 0.0:
        for j in range(n):
            out[j] = 0.0
        for j in range(m_top):
            out[idx[j]] = 1.0 / m_top
        return r1, r1, 0.0, 0.0
    # k0 = max{k : k d_(k) - D_k < delta} (eq. 3.5 in gap form); K = max{k : D_k <= delta}.
    cum = 0.0
    k0 = 1
    d_k0 = 0.0
    big_k = 1
    for k in range(1, n + 1):
        cum += d[k - 1]
        if k * d[k - 1] - cum < delta:
            k0 = k
            d_k0 = cum
        if cum <= delta:
            big_k = k
    u0 = (delta + d_k0) / k0
    ustar = u0
    if big_k < n and d[big_k] < ustar:
        ustar = d[big_k]
    total = 0.0
    for j in range(n):
        gap = ustar - d[j]
        p = gap / delta if gap > 0.0 else 0.0
        out[idx[j]] = p
        total += p
    leftover = (1.0 - total) / m_top
    for j in range(m_top):
        out[idx[j]] += leftover
    # --- certificate: primal value from the policy, dual value from the adversary's mixed strategy.
    min_cov = np.inf
    lin = 0.0
    for j in range(n):
        p = out[idx[j]]
        c = d[j] + delta * p
        if c < min_cov:
            min_cov = c
        lin += p * d[j]
    primal = min_cov - lin  # F_delta(pi) = <pi, r> - max_i(r_i - delta pi_i), in gap form
    best_dual = np.inf
    for cand in range(2):
        if cand == 0:
            w = 0.0
        else:
            w = (delta - d_k0) / k0
            if w < 0.0:
                continue
        rem = 1.0
        top = -np.inf
        lin = 0.0
        for j in range(n):
            cap = (w + d[j]) / delta
            lam = cap if cap < rem else rem
            if lam < 0.0:
                lam = 0.0
            rem -= lam
            v = delta * lam - d[j]
            if v > top:
                top = v
            lin += lam * d[j]
        if rem > 1e-12:
            continue
        dual = top + lin
        if dual < best_dual:
            best_dual = dual
    return r1 - ustar, r1 - u0, primal, best_dual - primal


@numba.njit(cache=True)
def _waterfill_kernel(r_hat, delta, policy, tstar, t0, objective, gap):
    """Batched water-filling: ``r_hat`` (P, n) C-contiguous float64, ``delta`` (P,)."""
    n_rows, n = r_hat.shape
    idx = np.empty(n, dtype=np.int64)
    d = np.empty(n, dtype=np.float64)
    for b in range(n_rows):
        res = _waterfill_row(r_hat[b], delta[b], policy[b], idx, d)
        tstar[b] = res[0]
        t0[b] = res[1]
        objective[b] = res[2]
        gap[b] = res[3]


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

    Same math and tie rule as :func:`waterfill`, written with ``argsort``/``cumsum``; no validation.
    """
    r = np.asarray(r_hat, dtype=np.float64)
    n = r.size
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
    p_sorted = np.maximum(ustar - d, 0.0) / delta
    p_sorted[:m_top] += (1.0 - p_sorted.sum()) / m_top
    pi[order] = p_sorted
    return pi


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
    if n_rows:
        _waterfill_kernel(r2, dl, policy, tstar, t0, obj, gap)
    scale = dl + (r2.max(axis=1) - r2.min(axis=1) if n_rows else 0.0)
    bad = ~(np.abs(gap) <= _GAP_RTOL * scale + 1e-300)
    ok = not bool(bad.any())
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[status]
    if not ok:
        rows = np.flatnonzero(bad)[:5].tolist()
        message = f"{MESSAGES[status]}: duality gap above tolerance in rows {rows}"
    if not full_output:
        if not ok:
            warnings.warn(f"waterfill: {message}", RuntimeWarning, stacklevel=2)
        return policy[0] if one_d else policy

    def pick(a: np.ndarray) -> Any:
        return float(a[0]) if one_d else a

    return WaterfillResult(
        policy=policy[0] if one_d else policy,
        threshold=pick(tstar),
        baseline_threshold=pick(t0),
        objective=pick(obj),
        worst_case_regret=pick(dl - obj),
        duality_gap=pick(gap),
        success=ok,
        status=status,
        message=message,
    )
