"""Worst-case regret of a fixed promptwise policy under an l_p reward ambiguity ball (DRRO Prop 3.3, 4.6).

For a policy ``pi`` on the simplex, proxy rewards ``r_hat`` and budget ``delta``, the inner adversary of
DRRO eq. (3.1) solves ``max_{||Delta||_p <= delta} Reg(pi, r_hat + Delta)`` with
``Reg(pi, s) = max_beta <beta - pi, s> = max(s) - <pi, s>``.  By Prop 4.6 (eq. 4.18)

    value = max_i { r_hat_i - <pi, r_hat> + delta * b_{p,i}(pi) },   b_{p,i}(pi) = ||e_i - pi||_q,

with ``1/p + 1/q = 1``.  For ``p = 1`` (q = inf) ``b_i = 1 - pi_i`` and this is Prop 3.3 (eq. 3.2):
``value = delta + max_i (r_hat_i - delta pi_i) - <pi, r_hat>``; for ``p = inf`` (q = 1)
``b_i = 2 (1 - pi_i)``.

The adversary's perturbation attains the dual norm: with ``k`` the attacked response and
``v = e_k - pi``, ``Delta* = delta * argmax_{||z||_p <= 1} <v, z>``:

* ``p = 1``: ``Delta* = delta e_k`` (the whole budget on one response, Prop 3.3);
* ``1 < p < inf``: ``Delta*_j = delta sign(v_j) |v_j|^(q-1) / ||v||_q^(q-1)``;
* ``p = inf``: ``Delta*_j = delta sign(v_j)`` (dense), with ``Delta*_j = delta`` where ``v_j = 0``.

Choices: ties in the maximisation over i are broken by the smallest index; when ``v = 0`` (``pi = e_k``)
every feasible perturbation is optimal and we return ``delta e_k``.  The bonus factors for
``1 < p < inf`` are computed in log space with prefix/suffix log-sum-exp over ``j != i`` (no
cancellation, no underflow for q large).  The answer is certified by evaluating ``Reg(pi, r_hat +
Delta*)`` directly and checking ``||Delta*||_p <= delta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL
from ._validation import as_float_array, broadcast_to_size, check_finite_scalar, check_same_shape

__all__ = ["worst_case_regret", "WorstCaseRegretResult", "vertex_bonus_factors"]

SIMPLEX_ATOL = 1e-8
"""Tolerance for ``pi`` on the simplex: entries >= -SIMPLEX_ATOL and |row sum - 1| <= SIMPLEX_ATOL."""


@dataclass(frozen=True)
class WorstCaseRegretResult:
    """Output of :func:`worst_case_regret`.

    Attributes
    ----------
    value : float or ndarray (P,)
        ``max_{||Delta||_p <= delta} Reg(pi, r_hat + Delta)`` (eq. 3.2 / 4.18).
    index : int or ndarray of int (P,)
        The response ``k`` the adversary attacks (smallest maximiser).
    perturbation : ndarray, shape (n,) or (P, n)
        The adversary's reward perturbation ``Delta*`` (``||Delta*||_p = delta``).
    bonus_factor : ndarray, shape (n,) or (P, n)
        ``b_{p,i}(pi) = ||e_i - pi||_q`` for every response (eq. 4.18).
    p : float
        The norm of the ambiguity ball.
    success, status, message
        Certificate outcome: ``Reg(pi, r_hat + Delta*)`` re-evaluated directly equals ``value``.
    """

    value: Any
    index: Any
    perturbation: np.ndarray
    bonus_factor: np.ndarray
    p: float
    success: bool
    status: int
    message: str


def _policy_iv(pi: Any, r_hat: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate ``pi`` (on the simplex, row-wise) and ``r_hat`` (same shape); return 2-D views."""
    r = as_float_array(r_hat, "r_hat", ndim=(1, 2))
    p = as_float_array(pi, "pi", ndim=(1, 2))
    check_same_shape(p, "pi", r, "r_hat")
    one_d = r.ndim == 1
    r2 = r.reshape(1, -1) if one_d else r
    p2 = p.reshape(1, -1) if one_d else p
    if r2.shape[1] < 1:
        raise ValueError(f"r_hat must have at least one response per row, got shape {r.shape}")
    neg = p2 < -SIMPLEX_ATOL
    if neg.any():
        b, j = (int(x) for x in np.argwhere(neg)[0])
        where = f"index {j}" if one_d else f"index ({b}, {j})"
        raise ValueError(
            f"pi must lie on the probability simplex (entries >= 0), got {float(p2[b, j])!r} at {where}"
        )
    sums = p2.sum(axis=1)
    off = np.abs(sums - 1.0) > SIMPLEX_ATOL
    if off.any():
        b = int(np.flatnonzero(off)[0])
        where = "" if one_d else f" (row {b})"
        raise ValueError(
            f"pi must lie on the probability simplex (entries summing to 1 within {SIMPLEX_ATOL:g}), "
            f"got sum {float(sums[b])!r}{where}"
        )
    return p2, r2, one_d


def _delta_iv(delta: Any, n_rows: int, one_d: bool) -> np.ndarray:
    if one_d:
        return np.array([check_finite_scalar(delta, "delta", lo=0.0)])
    return broadcast_to_size(delta, "delta", n_rows, nonneg=True)


def _p_iv(p: Any) -> float:
    if isinstance(p, (float, np.floating)) and float(p) == np.inf:
        return np.inf
    return check_finite_scalar(p, "p", lo=1.0)


def vertex_bonus_factors(pi: np.ndarray, p: float) -> np.ndarray:
    """``b_{p,i}(pi) = ||e_i - pi||_q`` for every i and every row of a 2-D ``pi`` (DRRO eq. 4.18).

    ``p = 1``: ``1 - pi_i``; ``p = inf``: ``2 (1 - pi_i)`` (Prop 4.6); otherwise the q-norm with
    ``q = p / (p - 1)``, evaluated in log space (prefix/suffix log-sum-exp over ``j != i``).
    No validation (internal; ``pi`` must be 2-D float64).
    """
    head = np.abs(1.0 - pi)
    if p == 1.0:
        return head
    if p == np.inf:
        absum = np.abs(pi).sum(axis=1, keepdims=True)
        return head + np.maximum(absum - np.abs(pi), 0.0)  # |1 - pi_i| + sum_{j != i} |pi_j|
    q = p / (p - 1.0)
    with np.errstate(divide="ignore"):
        logs = q * np.log(np.abs(pi))  # -inf for zeros
    neg_inf = np.full((pi.shape[0], 1), -np.inf)
    prefix = np.logaddexp.accumulate(np.concatenate([neg_inf, logs[:, :-1]], axis=1), axis=1)
    suffix = np.logaddexp.accumulate(
        np.concatenate([neg_inf, logs[:, :0:-1]], axis=1), axis=1
    )[:, ::-1]
    rest = np.logaddexp(prefix, suffix)  # log sum_{j != i} |pi_j|^q
    with np.errstate(divide="ignore", invalid="ignore"):
        log_head = np.log(head)
        # log ||v||_q^q = log(head^q + exp(rest)); scale by the larger of the two terms.
        big = np.maximum(q * log_head, rest)
        log_norm_q = big + np.log(np.exp(q * log_head - big) + np.exp(rest - big))
        out = np.exp(log_norm_q / q)
    out[np.isneginf(big)] = 0.0
    return out


def _perturbation(pi_row: np.ndarray, k: int, delta: float, p: float) -> np.ndarray:
    n = pi_row.size
    v = -pi_row.copy()
    v[k] += 1.0
    e_k = np.zeros(n)
    e_k[k] = delta
    if p == 1.0 or not np.any(v):
        return e_k
    if p == np.inf:
        s = np.sign(v)
        s[s == 0] = 1.0
        return delta * s
    q = p / (p - 1.0)
    a = np.abs(v)
    m = a.max()
    w = (a / m) ** (q - 1.0)  # |v_j|^(q-1), scaled; ||z||_p = 1 after normalisation
    z = np.sign(v) * w
    z /= np.linalg.norm(w, ord=p)
    return delta * z


def worst_case_regret(pi: Any, r_hat: Any, delta: Any, *, p: Any = 1) -> WorstCaseRegretResult:
    """Worst-case regret of ``pi`` over the l_p ball of radius ``delta`` (DRRO Prop 3.3, Prop 4.6).

    Parameters
    ----------
    pi : array_like, shape (n,) or (P, n)
        Policy on the probability simplex (each row; tolerance ``SIMPLEX_ATOL``).
    r_hat : array_like, same shape as ``pi``
        Proxy rewards.
    delta : float or array_like of shape (P,)
        Budget ``delta >= 0`` (per row allowed for 2-D input).
    p : float in [1, inf], keyword-only, default 1
        Norm of the ambiguity ball ``||Delta||_p <= delta``; ``numpy.inf`` allowed.

    Returns
    -------
    WorstCaseRegretResult
        ``value`` (eq. 3.2 for p = 1, eq. 4.18 in general), ``index`` (attacked response),
        ``perturbation`` (``Delta*``), ``bonus_factor`` and the certificate.  Scalars ``value``/``index``
        for 1-D input, arrays of length P for 2-D input.

    Examples
    --------
    >>> res = worst_case_regret([0.5, 0.5, 0.0], [1.0, 0.8, 0.0], 0.3)
    >>> round(res.value, 6), res.index, res.perturbation
    (0.25, 0, array([0.3, 0. , 0. ]))
    """
    pi2, r2, one_d = _policy_iv(pi, r_hat)
    pval = _p_iv(p)
    dl = _delta_iv(delta, r2.shape[0], one_d)
    n_rows, n = r2.shape
    bonus = vertex_bonus_factors(pi2, pval)
    base = np.einsum("ij,ij->i", pi2, r2)
    # r_i - <pi, r> is formed as a difference of rewards first to limit cancellation.
    scores = (r2 - base[:, None]) + dl[:, None] * bonus
    index = np.argmax(scores, axis=1) if n_rows else np.zeros(0, dtype=np.int64)
    value = scores[np.arange(n_rows), index]
    pert = np.empty_like(r2)
    for b in range(n_rows):
        pert[b] = _perturbation(pi2[b], int(index[b]), float(dl[b]), pval)
    # certificate: regret at r_hat + Delta* re-evaluated directly, and the norm constraint.
    s = r2 + pert
    direct = s.max(axis=1) - np.einsum("ij,ij->i", pi2, s) if n_rows else np.zeros(0)
    norms = np.linalg.norm(pert, ord=pval, axis=1) if n_rows else np.zeros(0)
    scale = 1.0 + np.abs(r2).max(axis=1) + dl if n_rows else np.zeros(0)
    ok_rows = (np.abs(direct - value) <= 1e-9 * scale) & (norms <= dl * (1 + 1e-9) + 1e-300)
    ok = bool(ok_rows.all())
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[status]
    if not ok:
        message += f": rows {np.flatnonzero(~ok_rows)[:5].tolist()}"
    if one_d:
        return WorstCaseRegretResult(
            float(value[0]), int(index[0]), pert[0], bonus[0], pval, ok, status, message
        )
    return WorstCaseRegretResult(value, index.astype(np.int64), pert, bonus, pval, ok, status, message)
