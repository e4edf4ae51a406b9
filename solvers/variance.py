"""Gradient-variance formulas of group-based policy-gradient estimators, and bin-level proxies.

Per-prompt variance of the projected gradient estimator
``G = (1/n) sum_j A_j Z_j`` (VIP Sec. 4; ``Z_j = ||H(o_j)||_2``, ``A_j`` the advantage) under
VIP Assumption 4.1 (i.i.d. rewards ``R_j`` and projected gradients ``Z_j``, uncorrelated with each
other up to second order):

=========  ==================================  =================================
estimator  advantage ``A_j``                   ``Var(G)``
=========  ==================================  =================================
drgrpo     ``R_j - (1/n) sum_k R_k``            ``sigma2 Var(R) (n - 1) / n**2``
rloo       ``R_j - (1/(n-1)) sum_{k!=j} R_k``   ``sigma2 Var(R) / (n - 1)``
=========  ==================================  =================================

With binary rewards ``R in {-1, +1}``, ``P(R = 1) = p``: ``Var(R) = 4 p (1 - p)`` (VIP Prop 4.2,
4.3); with real-valued rewards ``Var(R)`` is given directly (VIP Prop E.1, E.2).

Bin-level proxies of GDRO: the variance proxy ``sum_b q_b v_b / n_b`` (eq. 19) and the weighted
standard error ``sum_b q_b sigma_b / sqrt(n_b)`` (eq. 23).
"""

from __future__ import annotations

import numpy as np

from ._validation import as_float_array

__all__ = [
    "GRADIENT_ESTIMATORS",
    "grad_variance",
    "grad_variance_continuous",
    "variance_proxy",
    "weighted_standard_error",
]

GRADIENT_ESTIMATORS = {"drgrpo": 1.0, "rloo": 2.0}
"""Valid ``estimator`` names, mapped to the smallest group size ``n`` each needs."""


def _as_float(x, name, **kwargs) -> np.ndarray:
    """``as_float_array`` for scalars or arrays of any shape (validated as 1-D, shape restored)."""
    if isinstance(x, (str, bytes)) or x is None:
        return as_float_array(x, name, **kwargs)  # raises the TypeError
    shape = np.shape(x)
    arr = as_float_array(np.reshape(np.asarray(x), -1) if shape != () else np.atleast_1d(x), name, **kwargs)
    return arr.reshape(shape)


def _check_estimator(estimator) -> float:
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, got {type(estimator).__name__}")
    if estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; valid estimators: {sorted(GRADIENT_ESTIMATORS)}")
    return GRADIENT_ESTIMATORS[estimator]


def _grad_variance_iv(reward_var, n, estimator, sigma2, reward_name):
    n_min = _check_estimator(estimator)
    n = _as_float(n, "n")
    bad = n < n_min
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(
            f"n must be >= {int(n_min)} for estimator {estimator!r}, got {n[tuple(idx)].item()!r}"
            + (" (RLOO needs at least two rollouts for a leave-one-out baseline)" if estimator == "rloo" else "")
        )
    sigma2 = _as_float(sigma2, "sigma2", nonneg=True)
    try:
        reward_var, n, sigma2 = np.broadcast_arrays(reward_var, n, sigma2)
    except ValueError as exc:
        raise ValueError(
            f"{reward_name}, n and sigma2 must broadcast together, got shapes "
            f"{np.shape(reward_var)}, {np.shape(n)} and {np.shape(sigma2)}"
        ) from exc
    return reward_var, n, sigma2


def _variance_of_estimator(reward_var, n, sigma2, estimator, reward_name="reward_var"):
    # the n-factor first: sigma2 * reward_var may overflow where the variance does not, and
    # n * n overflows for n > 1e154 (where (n - 1) / n^2 ~ 1/n is representable)
    with np.errstate(over="ignore", invalid="ignore"):
        if estimator == "drgrpo":
            out = sigma2 * (reward_var * (((n - 1.0) / n) / n))
        else:
            out = sigma2 * (reward_var / (n - 1.0))
    if not np.all(np.isfinite(out)):
        idx = np.argwhere(~np.isfinite(np.atleast_1d(out)))[0]
        at = "" if out.ndim == 0 else f" at index {tuple(int(i) for i in idx)}"
        raise ValueError(
            f"gradient variance overflows float64{at}: {reward_name}={float(np.atleast_1d(reward_var)[tuple(idx)])!r}, "
            f"n={float(np.atleast_1d(n)[tuple(idx)])!r}, sigma2={float(np.atleast_1d(sigma2)[tuple(idx)])!r}; "
            "rescale sigma2"
        )
    return float(out) if out.ndim == 0 else out


def grad_variance(p, n, *, estimator, sigma2=1.0):
    """Variance of the per-prompt projected gradient for binary rewards (VIP Prop 4.2, 4.3).

    ``drgrpo``: ``4 sigma2 p (1 - p) (n - 1) / n**2``  (Prop 4.2);
    ``rloo``:   ``4 sigma2 p (1 - p) / (n - 1)``        (Prop 4.3).

    Parameters
    ----------
    p : float or array_like
        Success probability ``P(R = 1)`` of the prompt, rewards ``R in {-1, +1}``; in [0, 1].
    n : float or array_like
        Rollouts per prompt (group size). Non-integer values evaluate the continuous relaxation
        used by the allocators. Needs ``n >= 1`` for ``drgrpo`` (``n = 1`` gives 0: a group of
        one has zero advantage) and ``n >= 2`` for ``rloo``.
    estimator : {"drgrpo", "rloo"}
        Advantage estimator (VIP Sec. 2): Dr. GRPO subtracts the group mean, RLOO the
        leave-one-out mean ``(1/(n-1)) sum_{k != j} R_k``.
    sigma2 : float or array_like, default 1.0
        Variance ``sigma_Z^2`` of the projected per-rollout gradient ``Z = ||H(o)||_2``.

    Returns
    -------
    float or ndarray
        ``Var(G)``, broadcast over ``p``, ``n`` and ``sigma2`` (a float when all are scalars).

    Notes
    -----
    VIP's Sec. 4 display of the RLOO estimator writes the baseline with ``1/n``; its Sec. 2
    definition and the proof of Prop 4.3 (App. A.1) use ``1/(n-1)``, which is what the formula
    ``1/(n-1)`` corresponds to and what is implemented (and Monte-Carlo tested) here.

    Examples
    --------
    >>> grad_variance(0.5, 4, estimator="drgrpo")   # 4 * 0.25 * 3 / 16
    0.1875
    >>> grad_variance(0.5, 4, estimator="rloo")     # 4 * 0.25 / 3
    0.3333333333333333
    """
    p = _as_float(p, "p")
    bad = (p < 0) | (p > 1)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(f"p must lie in [0, 1], got {p[tuple(idx)].item()!r}")
    reward_var = 4.0 * p * (1.0 - p)
    reward_var, n, sigma2 = _grad_variance_iv(reward_var, n, estimator, sigma2, "p")
    return _variance_of_estimator(reward_var, n, sigma2, estimator, "4 p (1 - p)")


def grad_variance_continuous(reward_var, n, *, estimator, sigma2=1.0):
    """Variance of the per-prompt projected gradient for real-valued rewards (VIP Prop E.1, E.2).

    ``drgrpo``: ``sigma2 Var(R) (n - 1) / n**2``  (Prop E.1);
    ``rloo``:   ``sigma2 Var(R) / (n - 1)``        (Prop E.2).

    With ``R in {-1, +1}``, ``Var(R) = 4 p (1 - p)`` and this equals :func:`grad_variance`.

    Parameters
    ----------
    reward_var : float or array_like
        Reward variance ``Var(R) >= 0`` of the prompt (e.g. a predicted or sample variance).
    n : float or array_like
        Rollouts per prompt; ``n >= 1`` for ``drgrpo``, ``n >= 2`` for ``rloo``.
    estimator : {"drgrpo", "rloo"}
        Advantage estimator, as in :func:`grad_variance`.
    sigma2 : float or array_like, default 1.0
        Variance ``sigma_Z^2`` of the projected per-rollout gradient.

    Returns
    -------
    float or ndarray
        ``Var(G)``, broadcast over the inputs.

    Examples
    --------
    >>> grad_variance_continuous(2.0, 3, estimator="rloo", sigma2=0.5)   # 0.5 * 2 / 2
    0.5
    """
    reward_var = _as_float(reward_var, "reward_var", nonneg=True)
    reward_var, n, sigma2 = _grad_variance_iv(reward_var, n, estimator, sigma2, "reward_var")
    return _variance_of_estimator(reward_var, n, sigma2, estimator)


def _bin_proxy_iv(scale, scale_name, shares, n):
    scale = as_float_array(scale, scale_name, ndim=(1, 2), nonneg=True, min_size=1)
    shares = as_float_array(shares, "shares", ndim=(1, 2), nonneg=True, min_size=1)
    n = as_float_array(n, "n", ndim=(1, 2), finite=False, nonneg=True, min_size=1)
    try:
        scale, shares, n = np.broadcast_arrays(scale, shares, n)
    except ValueError as exc:
        raise ValueError(
            f"{scale_name}, shares and n must have the same shape (bins on the last axis), got "
            f"shapes {scale.shape}, {shares.shape} and {n.shape}"
        ) from exc
    need = (shares > 0) & (scale > 0) & (n == 0)
    if need.any():
        idx = np.argwhere(need)[0]
        raise ValueError(
            f"n must be positive on bins with positive share and positive {scale_name}, got n=0 at "
            f"index {tuple(int(i) for i in idx) if n.ndim > 1 else int(idx[0])}"
        )
    return scale, shares, n


def _masked_sum(terms_num, shares, denom, scale, names):
    used = (shares > 0) & (scale > 0)
    safe = np.where(used, denom, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.sum(np.where(used, shares * (terms_num / safe), 0.0), axis=-1)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"the proxy overflows float64 ({names}: a bin with tiny n or huge "
            f"{names.split(',')[0]}/shares); rescale the inputs"
        )
    return float(out) if out.ndim == 0 else out


def variance_proxy(v, shares, n):
    """GDRO variance proxy ``sum_b q_b v_b / n_b`` (GDRO eq. 19).

    Parameters
    ----------
    v : array_like of float, shape (B,) or (T, B)
        Intrinsic per-bin variance ``v_b >= 0``.
    shares : array_like of float, shape (B,) or (T, B)
        Bin shares ``q_b >= 0`` (used as given; not required to sum to 1).
    n : array_like of float, shape (B,) or (T, B)
        Rollouts per prompt of each bin (``> 0`` where ``q_b > 0`` and ``v_b > 0``; ``inf``
        allowed).

    Returns
    -------
    float or ndarray of shape (T,)
        The proxy, summed over the last (bin) axis. Bins with ``q_b == 0`` or ``v_b == 0``
        contribute exactly 0 and are never divided by.

    Examples
    --------
    >>> variance_proxy([1.0, 4.0], [0.5, 0.5], [2.0, 4.0])
    0.75
    """
    v, shares, n = _bin_proxy_iv(v, "v", shares, n)
    return _masked_sum(v, shares, n, v, "v, shares, n")


def weighted_standard_error(sigma, shares, n):
    """GDRO weighted standard error ``WSE = sum_b q_b sigma_b / sqrt(n_b)`` (GDRO eq. 23).

    Parameters
    ----------
    sigma : array_like of float, shape (B,) or (T, B)
        Per-bin standard deviation ``sigma_b >= 0`` (e.g. ``sqrt(v_b)``).
    shares : array_like of float, shape (B,) or (T, B)
        Bin shares ``q_b >= 0``.
    n : array_like of float, shape (B,) or (T, B)
        Rollouts per prompt of each bin (``> 0`` where ``q_b > 0`` and ``sigma_b > 0``).

    Returns
    -------
    float or ndarray of shape (T,)
        The WSE, summed over the last (bin) axis; zero-share and zero-sigma bins contribute 0.

    Notes
    -----
    By Cauchy-Schwarz (GDRO Remark F.16), ``WSE**2 <= sum_b q_b * variance_proxy`` with
    ``v_b = sigma_b**2``.

    Examples
    --------
    >>> weighted_standard_error([1.0, 2.0], [0.5, 0.5], [4.0, 16.0])
    0.5
    """
    sigma, shares, n = _bin_proxy_iv(sigma, "sigma", shares, n)
    return _masked_sum(sigma, shares, np.sqrt(n), sigma, "sigma, shares, n")
