"""Value-robust (DRO) promptwise optimum: uniform on the top m responses (DRRO Lemma H.1).

Under the same l1 ambiguity ``||Delta||_1 <= delta`` used for DRRO, the promptwise DRO problem is
(DRRO Section 6.1)

    max_{pi in simplex}  min_{||Delta||_1 <= delta} <pi, r_hat + Delta>  =  max_pi <pi, r_hat> - delta ||pi||_inf.

Lemma H.1: with rewards sorted decreasingly, ``A_k = (1/k) sum_{i<=k} r_hat_(i)``, an optimiser is
``u^(m)`` (uniform on the top m) for ``m in argmax_k {A_k - delta/k}``.

Choices (documented and tested)
-------------------------------
* **Which maximiser m**: the *largest* one.  If ``r_hat_(m) = r_hat_(m+1)`` and m is a maximiser then
  ``v_{m+1} - v_m`` has the sign of ``v_m - v_{m-1} >= 0`` (``v_k = A_k - delta/k``), so m+1 is a
  maximiser too; hence the largest maximiser never cuts through a group of tied rewards and the policy
  is permutation-equivariant (equal rewards give the uniform policy; ``delta = 0`` gives the uniform
  policy on the argmax set, the same convention as :func:`solvers.waterfill.waterfill`).  Values
  ``v_k`` within ``4 eps`` (relative) of the best are treated as ties; the tie-group extension is
  then applied exactly.
* **Certificate**: LP duality.  The dual of ``max <pi,r> - delta s, pi_i <= s, pi in simplex`` is
  ``min nu  s.t.  sum_i (r_hat_i - nu)_+ <= delta``, whose optimum is exactly the threshold ``t0`` of
  eq. (3.5).  So the DRO value equals ``t0``; we compute ``t0`` independently and check the gap
  against the value of the returned policy evaluated directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from .waterfill import (
    _GAP_RTOL,
    _SMALL_N,
    _feasible_rows,
    _presort_desc,
    _row_certificate,
    _row_scale,
    _sort_desc_small,
    _waterfill_iv,
)

__all__ = ["dro_policy", "DroPolicyResult"]


@dataclass(frozen=True)
class DroPolicyResult:
    """Full output of :func:`dro_policy` (``full_output=True``).

    Attributes
    ----------
    policy : ndarray, shape (n,) or (P, n)
        Uniform on the top ``support_size`` responses (Lemma H.1).
    support_size : int or ndarray of int (P,)
        ``m`` of Lemma H.1 (largest maximiser of ``A_k - delta/k``).
    objective : float or ndarray (P,)
        ``<pi, r_hat> - delta ||pi||_inf`` at the returned policy (the DRO value).
    dual_value : float or ndarray (P,)
        ``t0`` of eq. (3.5), the optimal value of the LP dual (equal to the DRO value).
    duality_gap : float or ndarray (P,)
    success, status, message
        Certificate outcome (see :mod:`solvers._status`).
    """

    policy: np.ndarray
    support_size: Any
    objective: Any
    dual_value: Any
    duality_gap: Any
    success: bool
    status: int
    message: str


@numba.njit(cache=True)
def _dro_row(r, rs, delta, out):
    """One row of Lemma H.1 (``rs`` = values of ``r`` sorted decreasingly), rescaled by
    :func:`solvers.waterfill._row_scale` when its spread would overflow or is subnormal (the
    policy is invariant, the values scale)."""
    n = r.shape[0]
    c = _row_scale(rs[0], rs[n - 1], delta, n)
    if c == 1.0:
        return _dro_core(r, rs, delta, out)
    if c > 1.0:
        # scaling up a tiny spread: shift by the top reward first so that c r cannot overflow
        # (Lemma H.1's policy is shift invariant; values shift back by r1)
        r1 = rs[0]
        m, value, dual, gap, ok = _dro_core((r - r1) * c, (rs - r1) * c, delta * c, out)
        return m, r1 + value / c, r1 + dual / c, gap / c, ok
    m, value, dual, gap, ok = _dro_core(r * c, rs * c, delta * c, out)
    return m, value / c, dual / c, gap / c, ok


@numba.njit(cache=True)
def _dro_core(r, rs, delta, out):
    """Lemma H.1 on one (well-scaled) row; see :func:`_dro_row`."""
    n = r.shape[0]
    r1 = rs[0]
    # v_k = A_k - delta/k = r1 - (D_k + delta)/k; minimise c_k = (D_k + delta)/k, largest minimiser.
    cum = 0.0
    best = np.inf
    m = 1
    tol = 4.0 * 2.220446049250313e-16 * (delta + (r1 - rs[n - 1]))
    k0 = 1
    d_k0 = 0.0
    for k in range(1, n + 1):
        dk = r1 - rs[k - 1]
        cum += dk
        c = (cum + delta) / k
        if c < best - tol:
            best = c
            m = k
        elif c <= best + tol:
            if c < best:
                best = c
            m = k
        if k * dk - cum < delta:
            k0 = k
            d_k0 = cum
    while m < n and rs[m] == rs[m - 1]:
        m += 1
    cut = rs[m - 1]
    # certificate: primal value of the returned policy vs the dual value t0 (eq. 3.5).
    lin = 0.0
    pmax = 0.0
    for i in range(n):
        p = 1.0 / m if r[i] >= cut else 0.0
        out[i] = p
        lin += p * (r1 - r[i])
        if p > pmax:
            pmax = p
    primal_gap_form = -lin - delta * pmax  # value - r1
    if delta == 0.0:
        dual_gap_form = 0.0  # nu = max r_hat
    else:
        dual_gap_form = -(delta + d_k0) / k0
    gap = dual_gap_form - primal_gap_form
    ok = abs(gap) <= _GAP_RTOL * (delta + (r1 - rs[n - 1]))
    return m, r1 + primal_gap_form, r1 + dual_gap_form, gap, ok


@numba.njit(cache=True)
def _dro_kernel(r_hat, presorted, delta, policy, support, objective, dual, gap, certified):
    n_rows, n = r_hat.shape
    buf = np.empty(n, dtype=np.float64)
    small = n <= _SMALL_N
    for b in range(n_rows):
        if small:
            _sort_desc_small(r_hat[b], buf)
            res = _dro_row(r_hat[b], buf, delta[b], policy[b])
        else:
            res = _dro_row(r_hat[b], presorted[b], delta[b], policy[b])
        support[b] = res[0]
        objective[b] = res[1]
        dual[b] = res[2]
        gap[b] = res[3]
        certified[b] = res[4]


def dro_policy_numpy(r_hat: np.ndarray, delta: float) -> np.ndarray:
    """Pure-NumPy twin of the DRO kernel for one row (reference and benchmark peer); no validation."""
    r = np.asarray(r_hat, dtype=np.float64)
    n = r.size
    scale = _row_scale.py_func(float(r.max()), float(r.min()), float(delta), n)
    r, delta = ((r - r.max()) * scale if scale > 1.0 else r * scale), delta * scale
    order = np.argsort(-r, kind="stable")
    d = r[order[0]] - r[order]
    c = (np.cumsum(d) + delta) / np.arange(1, n + 1)
    tol = 4.0 * np.finfo(float).eps * (delta + d[-1])
    m = int(np.nonzero(c <= c.min() + tol)[0][-1]) + 1
    while m < n and d[m] == d[m - 1]:
        m += 1
    return np.where(r >= r[order[m - 1]], 1.0 / m, 0.0)


def dro_policy(r_hat: Any, delta: Any, *, full_output: bool = False) -> Any:
    """Value-robust (DRO) optimal policy: uniform on the top m responses (DRRO Lemma H.1).

    Solves ``max_{pi in simplex} <pi, r_hat> - delta ||pi||_inf`` (DRRO Sec. 6.1), the l1-DRO
    counterpart of :func:`solvers.waterfill.waterfill`, with the same array interface.

    Parameters
    ----------
    r_hat : array_like, shape (n,) or (P, n)
        Proxy rewards (any order, ties allowed); one row per prompt for 2-D input.
    delta : float or array_like of shape (P,)
        l1 ambiguity budget ``delta >= 0``.
    full_output : bool, default False
        Return a :class:`DroPolicyResult` instead of the policy array.

    Returns
    -------
    policy : ndarray, same shape as ``r_hat``
        ``u^(m)`` with ``m`` the largest maximiser of ``A_k - delta/k``; tied rewards are never split
        (module docstring).  ``delta = 0``: uniform on the argmax set.

    Examples
    --------
    >>> dro_policy([1.0, 0.5, 0.0], 0.2)
    array([1., 0., 0.])
    >>> dro_policy([1.0, 0.5, 0.0], 1.0)
    array([0.5, 0.5, 0. ])
    """
    r2, dl, one_d = _waterfill_iv(r_hat, delta)
    n_rows, n = r2.shape
    policy = np.empty_like(r2)
    support = np.empty(n_rows, dtype=np.int64)
    obj = np.empty(n_rows)
    dual = np.empty(n_rows)
    gap = np.empty(n_rows)
    certified = np.empty(n_rows, dtype=np.bool_)
    if n_rows:
        _dro_kernel(r2, _presort_desc(r2), dl, policy, support, obj, dual, gap, certified)
        _feasible_rows(policy, r2, certified)
    if not full_output:
        _row_certificate(certified, "dro_policy", warn=True)
        return policy[0] if one_d else policy
    ok, status, message = _row_certificate(
        certified, "dro_policy", warn=False,
        reported={"objective": obj, "dual_value": dual, "duality_gap": gap},
    )

    def pick(a: np.ndarray, cast=float) -> Any:
        return cast(a[0]) if one_d else a

    return DroPolicyResult(
        policy=policy[0] if one_d else policy,
        support_size=pick(support, int),
        objective=pick(obj),
        dual_value=pick(dual),
        duality_gap=pick(gap),
        success=ok,
        status=status,
        message=message,
    )
