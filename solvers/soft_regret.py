"""Soft (log-sum-exp) DRRO objective and its gradient: DRRO eq. (4.6)-(4.8), Prop 4.2-4.3.

The hard robust utility ``F_delta(pi) = <pi, r_hat> - max_i (r_hat_i - delta pi_i)`` (eq. 3.4) is smoothed
with temperature ``tau > 0``:

    F_{delta,tau}(pi; r_hat) = <pi, r_hat> - tau log sum_i exp((r_hat_i - delta pi_i) / tau)      (4.6)

with ``F_{delta,tau} <= F_delta <= F_{delta,tau} + tau log n`` (Prop 4.2, eq. 4.7).  Its gradient in
``pi`` (Prop 4.3) is

    dF_{delta,tau} / dpi_i = r_hat_i + delta sigma_i,   sigma = softmax((r_hat - delta pi) / tau),

the shaped reward of eq. (4.8): the policy-gradient weight of response i is ``pi_i (r_hat_i + delta
sigma_i)``.  ``sigma`` is the soft adversary (the soft version of Prop 3.3's single attacked response).

Choice: ``grad`` is the Euclidean gradient of (4.6) as a function on R^n (not projected onto the
simplex's tangent space; adding a constant to it does not change any direction within the simplex).
It is therefore numerically identical to ``shaped_rewards`` = ``r_hat + delta * sigma``; both fields
are exposed so call sites can say what they mean.  Everything is computed with a max-shifted
log-sum-exp, so no overflow for large rewards or tiny ``tau``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_finite_scalar
from .regret import _delta_iv, _policy_iv

__all__ = ["soft_regret_objective", "soft_regret_grad", "SoftRegretGradResult"]


@dataclass(frozen=True)
class SoftRegretGradResult:
    """Output of :func:`soft_regret_grad`.

    Attributes
    ----------
    objective : float or ndarray (P,)
        ``F_{delta,tau}(pi; r_hat)`` (eq. 4.6).
    grad : ndarray, shape (n,) or (P, n)
        Gradient of (4.6) in ``pi``: ``r_hat + delta * sigma`` (Prop 4.3).
    sigma : ndarray, shape (n,) or (P, n)
        Soft adversary ``softmax((r_hat - delta pi) / tau)`` (rows sum to 1).
    shaped_rewards : ndarray, shape (n,) or (P, n)
        ``r_hat + delta * sigma``, the bracket of eq. (4.8) (equal to ``grad``).
    """

    objective: Any
    grad: np.ndarray
    sigma: np.ndarray
    shaped_rewards: np.ndarray


def _soft_iv(pi: Any, r_hat: Any, delta: Any, tau: Any):
    pi2, r2, one_d = _policy_iv(pi, r_hat)
    dl = _delta_iv(delta, r2.shape[0], one_d)
    t = check_finite_scalar(tau, "tau", lo=0.0, lo_open=True)
    return pi2, r2, dl, t, one_d


def _soft_core(pi2, r2, dl, tau):
    # x = r - delta pi (the uncovered rewards); shift by the row max *before* dividing by tau, so a
    # tiny tau (or a wide spread of x) gives exp(-large) -> 0 instead of inf - inf = NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        x = r2 - dl[:, None] * pi2
        top = x.max(axis=1, keepdims=True)
        a = (x - top) / tau  # <= 0 (or -inf)
        e = np.exp(a)
        s = e.sum(axis=1, keepdims=True)  # >= 1: the maximiser contributes exp(0)
        sigma = e / s
        # <pi, r> - tau * lse((r - delta pi) / tau) = <pi, r> - max(x) - tau * log(s)
        obj = np.einsum("ij,ij->i", pi2, r2) - top[:, 0] - tau * np.log(s[:, 0])
    if not (np.isfinite(obj).all() and np.isfinite(sigma).all()):
        b = int(np.flatnonzero(~(np.isfinite(obj) & np.isfinite(sigma).all(axis=1)))[0])
        raise ValueError(
            f"soft DRRO objective overflowed float64 in row {b} (max |r_hat|={float(np.abs(r2[b]).max())!r}, "
            f"delta={float(dl[b])!r}, tau={tau!r}): rescale r_hat/delta"
        )
    return obj, sigma


def soft_regret_objective(pi: Any, r_hat: Any, delta: Any, tau: Any) -> Any:
    """Soft DRRO utility ``F_{delta,tau}(pi; r_hat)`` of DRRO eq. (4.6), computed with log-sum-exp.

    Parameters
    ----------
    pi : array_like, shape (n,) or (P, n)
        Policy on the simplex (per row).
    r_hat : array_like, same shape
        Proxy rewards.
    delta : float or array_like (P,)
        Budget ``delta >= 0``.
    tau : float
        Temperature ``tau > 0``.

    Returns
    -------
    float or ndarray (P,)
        Satisfies ``F_soft <= F_delta <= F_soft + tau log n`` (Prop 4.2), with
        ``F_delta = delta - worst_case_regret(pi, r_hat, delta).value``.

    Raises
    ------
    ValueError
        Invalid input (``pi`` off the simplex, non-finite values, ``tau <= 0``), or an objective
        that overflows float64 (rewards and budgets near 1e308).

    Examples
    --------
    >>> round(soft_regret_objective([0.5, 0.5], [1.0, 0.0], 1.0, 0.5), 6)
    -0.063464
    """
    pi2, r2, dl, t, one_d = _soft_iv(pi, r_hat, delta, tau)
    obj, _ = _soft_core(pi2, r2, dl, t)
    return float(obj[0]) if one_d else obj


def soft_regret_grad(pi: Any, r_hat: Any, delta: Any, tau: Any) -> SoftRegretGradResult:
    """Gradient of the soft DRRO utility in ``pi`` and the soft adversary (DRRO Prop 4.3, eq. 4.8).

    Parameters
    ----------
    pi, r_hat, delta, tau
        As in :func:`soft_regret_objective`.

    Returns
    -------
    SoftRegretGradResult
        ``objective`` (eq. 4.6), ``grad = r_hat + delta * sigma``, ``sigma`` (softmax of
        ``(r_hat - delta pi)/tau``) and ``shaped_rewards`` (same as ``grad``; eq. 4.8).

    Raises
    ------
    ValueError
        As :func:`soft_regret_objective` (invalid input, or an objective that overflows float64),
        and when ``r_hat + delta * sigma`` overflows float64 (e.g. ``r_hat`` and ``delta`` near
        1e308): every returned number is finite.

    Examples
    --------
    >>> res = soft_regret_grad([0.5, 0.5], [1.0, 0.0], 1.0, 0.1)
    >>> res.sigma.round(4), res.shaped_rewards.round(4)
    (array([1., 0.]), array([2., 0.]))
    """
    pi2, r2, dl, t, one_d = _soft_iv(pi, r_hat, delta, tau)
    obj, sigma = _soft_core(pi2, r2, dl, t)
    with np.errstate(over="ignore", invalid="ignore"):
        shaped = r2 + dl[:, None] * sigma
    if not np.isfinite(shaped).all():
        # the same rule (and message) as the objective: a non-representable result raises
        b = int(np.flatnonzero(~np.isfinite(shaped).all(axis=1))[0])
        raise ValueError(
            f"soft DRRO gradient r_hat + delta * sigma overflowed float64 in row {b} (max |r_hat|="
            f"{float(np.abs(r2[b]).max())!r}, delta={float(dl[b])!r}, tau={t!r}): rescale r_hat/delta"
        )
    if one_d:
        return SoftRegretGradResult(float(obj[0]), shaped[0].copy(), sigma[0], shaped[0])
    return SoftRegretGradResult(obj, shaped.copy(), sigma, shaped)
