"""Exact variance of a group's policy-gradient estimate when rollouts have finitely many outcomes.

Setting: one prompt, ``n`` i.i.d. rollouts ``X_1..X_n``; rollout ``j`` lands on outcome ``a`` with
probability ``pi_a`` (``a = 1..K``) and then has reward ``r_a`` and score ``s_a`` in ``R^m`` (the
log-likelihood gradient ``grad log pi(a)``, or any per-outcome vector or scalar such as VIP's
projection ``Z_a = ||H(o_a)||_2``). The group's gradient estimate is

    g = (1/n) sum_j A_j s_{X_j}

with the RLOO advantage ``A_j = r_j - (1/(n-1)) sum_{k != j} r_k`` or the Dr. GRPO advantage
``A_j = r_j - (1/n) sum_k r_k`` (VIP Sec. 3). No independence between reward and score is assumed
(VIP Assumption 4.1(ii) is *not* needed): this is the ground truth that Prop 4.2/4.3 approximate.

Derivation. ``sum_j sum_{k != j} (r_j - r_k) s_j = sum_{j<k} (r_j - r_k)(s_j - s_k)``, so the RLOO
estimate is a U-statistic of order two,

    g_rloo = C(n, 2)^{-1} sum_{j<k} h(X_j, X_k),     h(x, y) = (r_x - r_y)(s_x - s_y) / 2,

with mean ``E h = Cov(r, s) =: theta`` (``= grad E[r]`` when ``s`` is the score). Hoeffding's
variance formula ``Var(U) = C(n,2)^{-1} [2 (n-2) zeta_1 + zeta_2]`` (trace of the covariance for
vectors) with ``zeta_1 = (A - |theta|^2) / 4`` and ``zeta_2 = (A + V_r V_s) / 2``, where

    A   = E[(r - E r)^2 |s - E s|^2],   V_r = Var(r),   V_s = E|s - E s|^2,

gives the closed form implemented here:

    tr Var(g_rloo)   = [(n - 1) A - (n - 2) |theta|^2 + V_r V_s] / (n (n - 1)),      n >= 2,
    tr Var(g_drgrpo) = ((n - 1) / n)^2 tr Var(g_rloo)   (the Dr. GRPO advantage is (n-1)/n times RLOO's),

and ``0`` for a Dr. GRPO group of one (its advantage is 0). When ``r`` and ``s`` are independent,
``A = V_r V_s`` and ``theta = 0`` and the formulas reduce to VIP Prop 4.3 / E.2
(``V_r V_s / (n - 1)``) and Prop 4.2 / E.1 (``V_r V_s (n - 1) / n^2``). Cost ``O(P K m)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import as_float_array

__all__ = ["VARIANCE_ESTIMATORS", "group_gradient_variance"]

VARIANCE_ESTIMATORS = ("drgrpo", "rloo")
"""Estimators whose exact group variance :func:`group_gradient_variance` computes (GRPO's std
normalisation has no closed form; measure it by Monte Carlo)."""


def _estimator_iv(estimator: Any) -> str:
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, got {type(estimator).__name__}")
    if estimator not in VARIANCE_ESTIMATORS:
        raise ValueError(
            f"unknown estimator {estimator!r} for the exact variance; valid estimators: {list(VARIANCE_ESTIMATORS)}"
        )
    return estimator


def group_gradient_variance(probs: Any, rewards: Any, scores: Any, n: Any, *, estimator: str) -> np.ndarray:
    """Exact ``tr Var(g)`` of each prompt's group gradient estimate (module docstring).

    Parameters
    ----------
    probs : array_like, shape (P, K)
        Outcome probabilities ``pi_a`` of each prompt (rows sum to 1).
    rewards : array_like, shape (P, K)
        Reward ``r_a`` of each outcome.
    scores : array_like, shape (P, K) or (P, K, m)
        Score of each outcome: a scalar (e.g. VIP's ``Z = ||H||_2``) or an ``m``-vector (e.g. the
        log-likelihood gradient). Vectors give the trace of the covariance.
    n : int or array_like of int, shape (P,)
        Group sizes: ``n >= 2`` for ``rloo``, ``n >= 1`` for ``drgrpo``.
    estimator : {"drgrpo", "rloo"}

    Returns
    -------
    ndarray, shape (P,)
        ``tr Var(g)`` per prompt (non-negative).

    Examples
    --------
    Reward and score independent (VIP Assumption 4.1): Prop 4.3 ``Var(R) Var(Z) / (n - 1)``.

    >>> import numpy as np
    >>> pi = np.full((1, 4), 0.25)
    >>> r = np.array([[1.0, 1.0, 0.0, 0.0]]); z = np.array([[1.0, 3.0, 1.0, 3.0]])
    >>> group_gradient_variance(pi, r, z, 5, estimator="rloo")   # 0.25 * 1 / 4
    array([0.0625])
    """
    est = _estimator_iv(estimator)
    pi = as_float_array(probs, "probs", ndim=2, nonneg=True)
    r = as_float_array(rewards, "rewards", ndim=2)
    s = as_float_array(scores, "scores", ndim=(2, 3))
    if r.shape != pi.shape:
        raise ValueError(f"rewards must have the shape of probs {pi.shape}, got {r.shape}")
    if s.shape[:2] != pi.shape:
        raise ValueError(f"scores must have shape {pi.shape} or {pi.shape + ('m',)}, got {s.shape}")
    if s.ndim == 2:
        s = s[:, :, None]
    total = pi.sum(axis=1)
    bad = np.abs(total - 1.0) > 1e-9
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"probs rows must sum to 1, row {i} sums to {total[i]!r}")
    n_min = 2 if est == "rloo" else 1
    nn = np.asarray(n)
    if not (np.issubdtype(nn.dtype, np.integer) or np.all(nn == np.round(nn))):
        raise ValueError(f"n must contain integers, got {n!r}")
    nn = np.broadcast_to(nn.astype(np.float64), (pi.shape[0],))
    bad = nn < n_min
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"n must be >= {n_min} for estimator {est!r}, got {nn[i]:g} at index {i}")

    rho = r - np.einsum("pk,pk->p", pi, r)[:, None]  # r - E r
    sig = s - np.einsum("pk,pkm->pm", pi, s)[:, None, :]  # s - E s
    sq = np.einsum("pkm,pkm->pk", sig, sig)  # |s - E s|^2 per outcome
    theta = np.einsum("pk,pkm->pm", pi * rho, sig)  # Cov(r, s)
    a_term = np.einsum("pk,pk->p", pi * rho * rho, sq)
    v_r = np.einsum("pk,pk->p", pi, rho * rho)
    v_s = np.einsum("pk,pk->p", pi, sq)
    th2 = np.einsum("pm,pm->p", theta, theta)
    with np.errstate(divide="ignore", invalid="ignore"):  # n = 1 (Dr. GRPO only) is set to 0 below
        var = ((nn - 1.0) * a_term - (nn - 2.0) * th2 + v_r * v_s) / (nn * (nn - 1.0))
        if est == "drgrpo":
            var = np.where(nn == 1.0, 0.0, var * ((nn - 1.0) / nn) ** 2)
    return np.maximum(var, 0.0)
