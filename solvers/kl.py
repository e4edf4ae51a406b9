"""Sampled KL drift (Schulman's k3 estimator) and the KL-driven ambiguity budget of DRRO eq. (4.17).

The DRRO paper (Sec. 4.5, "Dynamic ambiguity budget") sets the scaled promptwise budget

    delta_tilde(x) = delta_tilde_0 + alpha * KL(pi_bar(. | x) || pi_0(. | x)),        (4.17)

and estimates the KL on the sampled group with k3: for ``z = log pi_0(y) - log pi_bar(y)``,
average ``exp(z) - z - 1`` over the group. In the reported runs the estimate is smoothed over a
sliding window of 20 updates (DRRO appendix, "DRRO, DRO, and grid search"). Neither quantity is
differentiated (compute it from detached log-probs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_float_array, check_finite_scalar, check_int_scalar, check_same_shape

__all__ = ["K3KL", "k3_kl", "dynamic_budget"]

# |z| below this: Taylor series of exp(z) - z - 1 (terms up to z^9/9!; truncation < 1e-19 relative);
# above it expm1(z) - z loses at most log2(2 / |z|) ~ 8 bits to cancellation.
_SERIES_CUTOFF = 1e-2
# expm1 overflows float64 above log(DBL_MAX) = 709.78...
_Z_MAX = float(np.log(np.finfo(np.float64).max))


@dataclass(frozen=True)
class K3KL:
    """k3 KL estimate of a batch.

    Attributes
    ----------
    per_sample : ndarray, same shape as the inputs
        ``exp(z) - z - 1 >= 0`` with ``z = logp_ref - logp``, one value per rollout.
    mean : float or ndarray
        Mean of ``per_sample`` over the last axis (the group): a float for 1-D input, shape (P,)
        for (P, G) input. An unbiased estimate of ``KL(p_model || p_ref)`` when the rollouts are
        drawn from ``p_model``.
    """

    per_sample: np.ndarray
    mean: float | np.ndarray


def _k3(z: np.ndarray) -> np.ndarray:
    """``exp(z) - z - 1`` without cancellation: a Taylor series near 0, ``expm1(z) - z`` elsewhere."""
    out = np.expm1(z) - z
    small = np.abs(z) < _SERIES_CUTOFF
    if small.any():
        zs = z[small]
        # z^2/2! + z^3/3! + ... + z^9/9!, Horner form
        poly = 1.0 / 362880.0
        for k in (40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0):
            poly = poly * zs + 1.0 / k
        out[small] = poly * zs * zs
    return out


def k3_kl(logp_ref: Any, logp: Any) -> K3KL:
    """Schulman's k3 estimate of ``KL(p_model || p_ref)`` per rollout and per group.

    Parameters
    ----------
    logp_ref : array_like, shape (G,) or (P, G)
        Sequence log-probabilities of the sampled rollouts under the reference policy ``pi_0``.
    logp : array_like, same shape
        Their log-probabilities under the (rollout) policy that sampled them, ``pi_bar``.

    Returns
    -------
    K3KL
        ``.per_sample = exp(z) - z - 1`` with ``z = logp_ref - logp``, computed as
        ``expm1(z) - z`` (a Taylor series for ``|z| < 1e-2``, so tiny drifts keep full relative
        precision), and ``.mean`` over the last axis (a float for 1-D input, shape (P,) otherwise).

    Raises
    ------
    ValueError
        For NaN/inf inputs, mismatched shapes, an empty group, ``z > 709.78`` (``exp(z)``
        overflows float64: the reference is ``e^709`` times likelier than the sampler there), or
        ``logp_ref - logp`` below ``-DBL_MAX`` (``k3 ~ -z`` is not representable).

    Notes
    -----
    DRRO paper Sec. 4.5 (text after eq. 4.17). Each term is >= 0 (``e^z >= 1 + z``) and, for
    rollouts drawn from ``p_model``, ``E[exp(z) - z - 1] = 1 + KL(p_model || p_ref) - 1``.

    Examples
    --------
    >>> res = k3_kl([[-1.0, -2.0]], [[-1.0, -1.5]])
    >>> res.per_sample.round(4).tolist(), res.mean.round(4).tolist()
    ([[0.0, 0.1065]], [0.0533])
    """
    ref = as_float_array(logp_ref, "logp_ref", ndim=(1, 2))
    cur = as_float_array(logp, "logp", ndim=(1, 2))
    check_same_shape(ref, "logp_ref", cur, "logp")
    if ref.shape[-1] < 1:
        raise ValueError(f"logp_ref must have at least one rollout per group, got shape {ref.shape}")
    with np.errstate(over="ignore"):
        z = ref - cur
    # z > 709.78: exp(z) overflows; z = -inf: logp_ref - logp itself overflowed (k3 ~ -z > DBL_MAX)
    too_big = (z > _Z_MAX) | (z == -np.inf)
    if too_big.any():
        idx = np.argwhere(too_big)[0]
        where = tuple(int(i) for i in idx) if z.ndim > 1 else int(idx[0])
        zi = float(z[tuple(idx)])
        why = f"> {_Z_MAX:.2f}" if zi > 0 else "(the difference itself overflows)"
        raise ValueError(f"k3 overflows float64: z = logp_ref - logp = {zi!r} {why} at index {where}")
    per_sample = _k3(z)
    with np.errstate(over="ignore"):
        mean = per_sample.mean(axis=-1)
    if not np.all(np.isfinite(mean)):
        # the sum of values near DBL_MAX overflows; the mean of x / G cannot (each term is finite
        # and non-negative, so their sum is at most max x). Only the overflowing rows change.
        safe = (per_sample / per_sample.shape[-1]).sum(axis=-1)
        safe = np.minimum(safe, per_sample.max(axis=-1))  # rounding may push it above the max
        mean = np.where(np.isfinite(mean), mean, safe)
    return K3KL(per_sample, float(mean) if per_sample.ndim == 1 else mean)


def dynamic_budget(delta0: float, alpha: float, kl: Any, *, window: int | None = None) -> float | np.ndarray:
    """KL-driven scaled ambiguity budget, DRRO eq. (4.17): ``delta0 + alpha * KL``.

    A pure function: with ``window`` the caller passes the history of KL estimates and the
    budget uses their sliding-window mean (keep the history yourself, e.g. a list you append the
    latest :func:`k3_kl` mean to).

    Parameters
    ----------
    delta0 : float >= 0
        Base (pilot-calibrated) scaled budget delta-tilde_0. The paper's dynamic runs use 0.
    alpha : float >= 0
        Scaling coefficient (the paper's standard setting is alpha = 10).
    kl : float or array_like, non-negative
        ``window=None``: the current KL estimate(s), any shape (e.g. a scalar, or one per prompt
        of shape (P,)); the budget is computed elementwise.
        ``window=W``: a history of estimates, oldest first, shape (T,) or (T, P) with ``T >= 1``.
    window : int >= 1, optional
        Smooth over the last ``min(W, T)`` entries of the history along axis 0 (the paper uses
        ``W = 20``). During warm-up (``T < W``) all available entries are averaged.

    Returns
    -------
    float or ndarray
        The budget: a float for a scalar ``kl`` (or a 1-D history), otherwise an array of the
        per-prompt shape.

    Raises
    ------
    ValueError
        For negative or non-finite inputs (a budget must be >= 0; k3 estimates are >= 0), or a
        budget that overflows float64.

    Examples
    --------
    >>> dynamic_budget(0.0, 10.0, 0.25)
    2.5
    >>> dynamic_budget(1.0, 2.0, [0.0, 1.0, 2.0, 3.0], window=2)   # mean of the last 2 = 2.5
    6.0
    """
    d0 = check_finite_scalar(delta0, "delta0", lo=0.0)
    a = check_finite_scalar(alpha, "alpha", lo=0.0)
    if window is None:
        if np.ndim(kl) == 0:
            smoothed = check_finite_scalar(kl, "kl", lo=0.0)
        else:
            smoothed = as_float_array(kl, "kl", nonneg=True)
    else:
        w = check_int_scalar(window, "window", lo=1)
        k = as_float_array(kl, "kl", ndim=(1, 2), nonneg=True)
        if k.shape[0] < 1:
            raise ValueError(f"kl history must have at least one entry along axis 0, got shape {k.shape}")
        smoothed = k[-w:].mean(axis=0)
    with np.errstate(over="ignore"):
        budget = d0 + a * smoothed
    if not np.all(np.isfinite(budget)):
        raise ValueError(
            f"dynamic budget overflowed float64: delta0={d0!r} + alpha={a!r} * kl "
            f"(max {float(np.max(smoothed))!r}) is not finite"
        )
    if np.ndim(budget) == 0:
        return float(budget)
    return budget
