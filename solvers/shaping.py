"""Group-level robust reward shaping for a training batch: DRRO (regret-robust) and DRO (value-robust).

Both functions take a batch of ``P`` prompts with ``G`` sampled rollouts each -- proxy rewards
``r[p, k]`` and sequence log-probabilities ``log pi_bar(y_k | x_p)`` under the rollout policy -- and
return shaped rewards that are then normalised within each group (e.g. with
:func:`solvers.group_advantages`) and fed to an unchanged GRPO surrogate (DRRO paper, Sec. 4,
Algorithms 2-4).

Coordinates (DRRO paper Sec. 4.5, "Numerical stabilization"): sequence probabilities are tiny, so
everything is computed with the *group-normalised* probabilities

    pi_tilde[p, k] = pi_bar(y_k | x_p) / sum_l pi_bar(y_l | x_p) = softmax(seq_logprobs[p, :])[k],

obtained from a log-softmax of the log-probs (raw log-probs are never exponentiated), and with the
*scaled* budget ``delta`` (the paper's delta-tilde = (G / n) delta).

Rules implemented (``delta`` = delta-tilde, ``tau`` = temperature):

* DRRO hard, eq. (4.14): ``k* = argmax_k r_k - delta pi_tilde_k``; shaped ``r_k + delta 1{k = k*}``.
* DRRO soft (SNIS), eq. (4.15): ``u_k = exp((r_k - delta pi_tilde_k) / tau) / pi_tilde_k``,
  ``w = u / sum u``; shaped ``r_k + delta G w_k pi_tilde_k``.
* DRO hard: the value-robust promptwise objective is ``<pi, r> - delta ||pi||_inf`` (the inner
  minimum over the l1 reward ball; DRRO paper Sec. 6.1, Lemma H.1), whose gradient in ``pi_k`` is
  ``r_k - delta 1{k = argmax_i pi_i}``. Sampled in the same group coordinates:
  ``k* = argmax_k pi_tilde_k``; shaped ``r_k - delta 1{k = k*}`` -- a *penalty* of size delta on
  the most likely rollout (DRRO instead gives a *bonus* of size delta to the most threatening one).
* DRO soft: the max is smoothed like eq. (4.6),
  ``<pi, r> - tau log sum_i exp(delta pi_i / tau)`` (within ``tau log n`` of the hard objective), whose
  gradient is ``r_k - delta softmax(delta pi / tau)_k``; the soft-max mass is estimated by the same
  SNIS construction as eq. (4.15): ``u_k = exp(delta pi_tilde_k / tau) / pi_tilde_k``,
  ``w = u / sum u``; shaped ``r_k - delta G w_k pi_tilde_k``.

Ragged batches (a different number of rollouts per prompt): pass flat ``rewards`` /
``seq_logprobs`` of shape (N,) with ``group_ids`` (N,) naming each rollout's prompt ``0..P-1``.
The rollouts of each group are gathered (keeping their input order), groups of equal size are
shaped together by the same kernels as a dense (P_s, s) batch, and the results are scattered
back -- so every group is shaped exactly as the dense path shapes that row (tested bit for bit).

So DRO is exactly the DRRO code with the adversary's score ``r_k - delta pi_tilde_k`` replaced by
``delta pi_tilde_k`` and the sign of the correction flipped; both share the same kernels.

The DRO rules are *our derivation*: the paper's DRO-RLHF baseline only "applies the value-robust
correction instead of the regret-robust correction" with "the same rollout and budget interface"
(DRRO paper App. G) and prints no formula. We differentiate the Sec. 6.1 objective exactly as the
paper differentiates ``F_delta`` in Prop 4.1 / 4.3 (hard: the indicator of the maximiser; soft:
the softmax of the smoothed max) and estimate it in the same group coordinates, so the two
baselines differ only in the robust objective. Sign: the DRO correction is a penalty (the
adversary lowers the reward of the response the policy relies on most), the DRRO one a bonus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL
from ._validation import as_float_array, as_int_array, broadcast_to_size, check_finite_scalar, check_same_shape

__all__ = ["ShapedRewards", "drro_rewards", "dro_rewards"]


@dataclass(frozen=True)
class ShapedRewards:
    """Shaped rewards of one batch and the adversary's diagnostics.

    Attributes
    ----------
    rewards : ndarray, shape (P, G), or (N,) for ragged input
        Shaped rewards (input rewards plus the robust correction); normalise these within each
        group to form advantages. For ragged input (``group_ids`` given) ``rewards``, ``bonus``,
        ``weights`` and ``probs`` are flat (N,) like the input; ``index``, ``ess`` and ``delta``
        have one entry per group, and ``index`` holds the *flat position* of the pick.
    bonus : ndarray, shape (P, G)
        The correction ``rewards - input rewards`` (>= 0 for DRRO, <= 0 for DRO).
    weights : ndarray, shape (P, G)
        The adversary's distribution over the group: the SNIS weights ``w`` of eq. (4.15) for
        ``tau > 0``; the one-hot indicator of the pick for ``tau=None``. Rows sum to 1.
    index : ndarray of int64, shape (P,)
        The adversary's pick ``k*`` for ``tau=None``; for ``tau > 0`` the rollout with the largest
        SNIS weight (a diagnostic only; the soft correction is spread over the group).
    ess : ndarray, shape (P,)
        Effective sample size ``1 / sum_k w_k^2`` of the weights, in ``[1, G]`` (1 for the hard rule).
    probs : ndarray, shape (P, G)
        Group-normalised probabilities ``pi_tilde`` (softmax of the sequence log-probs per row).
    delta : ndarray, shape (P,)
        The scaled budget used for each prompt.
    tau : float or None
        Temperature (``None`` for the hard rule).
    rule : str
        ``"drro-hard"``, ``"drro-soft"``, ``"dro-hard"`` or ``"dro-soft"``.
    success, status, message
        Post-solve certificate: every output is finite and the weight rows (and pi_tilde rows for the
        hard rule) sum to 1 within ``1e-12 G``.
    """

    rewards: np.ndarray
    bonus: np.ndarray
    weights: np.ndarray
    index: np.ndarray
    ess: np.ndarray
    probs: np.ndarray
    delta: np.ndarray
    tau: float | None
    rule: str
    success: bool
    status: int
    message: str


# The kernels are split around NumPy's SIMD ``np.exp`` (about 10x faster than the scalar libm ``exp``
# a Numba loop calls): per-row passes (max, sums, argmax, outputs) run in Numba, the two
# transcendental passes over the whole (P, G) array run as in-place NumPy ufuncs.


@numba.njit(cache=True)
def _shift_rows(seq_logprobs, top, out_shifted):  # pragma: no cover - compiled
    """``top[p] = max_k lp[p, k]``; ``out_shifted = lp - top`` (the log-softmax's stable shift)."""
    n_prompts, group = seq_logprobs.shape
    for p in range(n_prompts):
        m = seq_logprobs[p, 0]
        for k in range(1, group):
            if seq_logprobs[p, k] > m:
                m = seq_logprobs[p, k]
        top[p] = m
        for k in range(group):
            out_shifted[p, k] = seq_logprobs[p, k] - m


@numba.njit(cache=True)
def _hard_rows(rewards, seq_logprobs, delta, value_robust, probs, out_rewards, out_bonus, out_weights,
               out_index, out_ess):  # pragma: no cover - compiled
    """``probs`` holds exp(lp - top) on entry and pi_tilde on exit; hard pick and its correction.

    The pick is the exact argmax of eq. (4.14) / the DRO rule: DRO compares the log-probs
    themselves (``argmax pi_tilde = argmax lp``, no rounding); DRRO compares the rounded scores
    ``r - delta pi_tilde`` and breaks exact float ties by the smaller log-prob (the larger exact
    score: with equal rounded scores, ``delta pi_tilde`` fell below the rounding of ``r``), then
    by the lower index. Returns the largest |row sum of pi_tilde - 1| (inf if any output is not
    finite).
    """
    n_prompts, group = rewards.shape
    sign = -1.0 if value_robust else 1.0
    worst = 0.0
    for p in range(n_prompts):
        total = 0.0
        for k in range(group):
            total += probs[p, k]
        inv_total = 1.0 / total
        d = delta[p]
        best = 0
        best_score = -np.inf
        mass = 0.0
        for k in range(group):
            pi = probs[p, k] * inv_total
            probs[p, k] = pi
            mass += pi
            # adversary's score: r - delta pi (DRRO, eq. 4.14) or log pi (DRO); ties: see above
            score = seq_logprobs[p, k] if value_robust else rewards[p, k] - d * pi
            if score > best_score or (
                score == best_score and not value_robust and seq_logprobs[p, k] < seq_logprobs[p, best]
            ):
                best_score = score
                best = k
            out_rewards[p, k] = rewards[p, k]
            out_bonus[p, k] = 0.0
            out_weights[p, k] = 0.0
        out_bonus[p, best] = sign * d
        out_rewards[p, best] = rewards[p, best] + sign * d
        out_weights[p, best] = 1.0
        out_index[p] = best
        out_ess[p] = 1.0
        err = abs(mass - 1.0)
        if not (np.isfinite(out_rewards[p, best]) and np.isfinite(best_score)):
            err = np.inf
        worst = max(worst, err)
    return worst


@numba.njit(cache=True)
def _soft_log_weights(rewards, seq_logprobs, top, delta, tau, value_robust, probs, out_log_u,
                      out_index):  # pragma: no cover - compiled
    """``probs``: exp(lp - top) -> pi_tilde. ``out_log_u`` = log u - max_k log u per row, with
    log u = log a - log pi_tilde and log pi_tilde = (lp - top) - log(sum exp(lp - top)) (eq. 4.15);
    ``out_index`` = first argmax of log u (= of the SNIS weights)."""
    n_prompts, group = rewards.shape
    inv_tau = 1.0 / tau
    for p in range(n_prompts):
        total = 0.0
        for k in range(group):
            total += probs[p, k]
        log_total = np.log(total)
        inv_total = 1.0 / total
        d = delta[p]
        m = -np.inf
        best = 0
        for k in range(group):
            pi = probs[p, k] * inv_total
            probs[p, k] = pi
            log_pi = (seq_logprobs[p, k] - top[p]) - log_total
            log_a = d * pi * inv_tau if value_robust else (rewards[p, k] - d * pi) * inv_tau
            v = log_a - log_pi
            out_log_u[p, k] = v
            if v > m:
                m = v
                best = k
        out_index[p] = best
        for k in range(group):
            out_log_u[p, k] -= m


@numba.njit(cache=True)
def _soft_rows(rewards, delta, value_robust, probs, weights, out_rewards, out_bonus,
               out_ess):  # pragma: no cover - compiled
    """``weights`` holds exp(log u - max) on entry and the SNIS weights w on exit; shaped rewards.

    Returns the largest |row sum of w - 1| (inf if any output is not finite).
    """
    n_prompts, group = rewards.shape
    sign = -1.0 if value_robust else 1.0
    worst = 0.0
    for p in range(n_prompts):
        total = 0.0
        for k in range(group):
            total += weights[p, k]
        inv_total = 1.0 / total
        scale = sign * delta[p] * group
        sum_sq = 0.0
        mass = 0.0
        poison = 0.0  # becomes NaN if any output is inf/NaN (inf * 0 = NaN); branch-free check
        for k in range(group):
            w = weights[p, k] * inv_total
            weights[p, k] = w
            mass += w
            sum_sq += w * w
            b = scale * w * probs[p, k]
            out_bonus[p, k] = b
            out_rewards[p, k] = rewards[p, k] + b
            poison += (out_rewards[p, k] + w) * 0.0
        out_ess[p] = 1.0 / sum_sq
        err = abs(mass - 1.0) if poison == 0.0 else np.inf
        if not err <= worst:  # also catches NaN
            worst = err if err == err else np.inf
    return worst


def _shape_numpy(r: np.ndarray, lp: np.ndarray, d: np.ndarray, tau: float | None, value_robust: bool):
    """Vectorised NumPy twin of the kernels (same math; the test reference for them).

    Returns ``(rewards, weights, index, ess, probs)``; inputs already validated (float64, d of shape (P,)).
    """
    shifted = lp - lp.max(axis=1, keepdims=True)
    log_pi = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    pi = np.exp(log_pi)
    sign = -1.0 if value_robust else 1.0
    score = d[:, None] * pi if value_robust else r - d[:, None] * pi
    if tau is None:
        if value_robust:  # argmax pi_tilde = argmax of the log-probs (exact)
            index = np.argmax(lp, axis=1)
        else:  # float ties of the score: smaller log-prob, then lower index (see _hard_rows)
            index = np.argmin(np.where(score == score.max(axis=1, keepdims=True), lp, np.inf), axis=1)
        weights = np.zeros_like(r)
        weights[np.arange(r.shape[0]), index] = 1.0
        return r + sign * d[:, None] * weights, weights, index, np.ones(r.shape[0]), pi
    log_u = score / tau - log_pi
    u = np.exp(log_u - log_u.max(axis=1, keepdims=True))
    weights = u / u.sum(axis=1, keepdims=True)
    shaped = r + sign * d[:, None] * r.shape[1] * weights * pi
    return shaped, weights, np.argmax(log_u, axis=1), 1.0 / (weights**2).sum(axis=1), pi


def _shaping_iv(rewards: Any, seq_logprobs: Any, delta: Any, tau: Any):
    r = as_float_array(rewards, "rewards", ndim=2)
    lp = as_float_array(seq_logprobs, "seq_logprobs", ndim=2)
    check_same_shape(r, "rewards", lp, "seq_logprobs")
    if r.shape[1] < 1:
        raise ValueError(f"rewards must have at least one rollout per prompt, got shape {r.shape}")
    if np.ndim(delta) == 0:
        d = np.full(r.shape[0], check_finite_scalar(delta, "delta", lo=0.0))
    else:
        d = broadcast_to_size(delta, "delta", r.shape[0], nonneg=True)
    t = None if tau is None else check_finite_scalar(tau, "tau", lo=0.0, lo_open=True)
    return r, lp, d, t


def _shape(rewards, seq_logprobs, delta, tau, value_robust: bool) -> ShapedRewards:
    r, lp, d, t = _shaping_iv(rewards, seq_logprobs, delta, tau)
    n_prompts, group = r.shape
    out_rewards = np.empty_like(r)
    out_bonus = np.empty_like(r)
    out_weights = np.empty_like(r)
    probs = np.empty_like(r)
    out_index = np.empty(n_prompts, dtype=np.int64)
    out_ess = np.empty(n_prompts)
    top = np.empty(n_prompts)
    soft = t is not None
    rule = ("dro" if value_robust else "drro") + ("-soft" if soft else "-hard")
    _shift_rows(lp, top, probs)
    np.exp(probs, out=probs)
    if soft:
        _soft_log_weights(r, lp, top, d, t, value_robust, probs, out_weights, out_index)
        np.exp(out_weights, out=out_weights)
        worst = _soft_rows(r, d, value_robust, probs, out_weights, out_rewards, out_bonus, out_ess)
    else:
        worst = _hard_rows(r, lp, d, value_robust, probs, out_rewards, out_bonus, out_weights, out_index,
                           out_ess)
    if not np.isfinite(worst):
        raise ValueError(
            f"{rule} shaping overflowed float64 (tau={t!r}, max |reward|={np.abs(r).max()!r}, "
            f"max delta={d.max()!r}): increase tau or rescale rewards/delta"
        )
    # certificate: weights (and pi_tilde for the hard rule) are distributions up to rounding
    if worst <= 1e-12 * group:
        status, message = OPTIMAL, MESSAGES[OPTIMAL]
    else:  # pragma: no cover - defensive; rounding keeps the error ~ G * 1e-16
        status = CERTIFICATE_FAILED
        message = f"{MESSAGES[CERTIFICATE_FAILED]}: weight rows sum to 1 only within {worst:.2e}"
    return ShapedRewards(out_rewards, out_bonus, out_weights, out_index, out_ess, probs, d, t, rule,
                         status == OPTIMAL, status, message)


def _shape_ragged(rewards, seq_logprobs, delta, tau, group_ids, value_robust: bool) -> ShapedRewards:
    """Ragged shaping: gather each group (input order kept), shape equal-size groups with the dense
    path, scatter back. ``index`` is the flat position of each group's pick."""
    r = as_float_array(rewards, "rewards", ndim=1)
    lp = as_float_array(seq_logprobs, "seq_logprobs", ndim=1)
    check_same_shape(r, "rewards", lp, "seq_logprobs")
    ids = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    check_same_shape(r, "rewards", ids, "group_ids")
    if r.size < 1:
        raise ValueError("rewards must have at least one rollout")
    n_groups = int(ids.max()) + 1
    sizes = np.bincount(ids, minlength=n_groups)
    empty = sizes == 0
    if empty.any():
        raise ValueError(f"group_ids must label groups 0..{n_groups - 1} with at least one rollout each; "
                         f"group {int(np.argmax(empty))} has none")
    if np.ndim(delta) == 0:
        d = np.full(n_groups, check_finite_scalar(delta, "delta", lo=0.0))
    else:
        d = broadcast_to_size(delta, "delta", n_groups, nonneg=True)
    t = None if tau is None else check_finite_scalar(tau, "tau", lo=0.0, lo_open=True)
    order = np.argsort(ids, kind="stable")  # rollouts of group g: order[start[g]:start[g] + size[g]]
    start = np.zeros(n_groups, dtype=np.int64)
    np.cumsum(sizes[:-1], out=start[1:])
    out_rewards = np.empty_like(r)
    out_bonus = np.empty_like(r)
    out_weights = np.empty_like(r)
    probs = np.empty_like(r)
    out_index = np.empty(n_groups, dtype=np.int64)
    out_ess = np.empty(n_groups)
    status, message, rule = OPTIMAL, MESSAGES[OPTIMAL], ""
    for size in np.unique(sizes):
        groups = np.flatnonzero(sizes == size)
        pos = order[start[groups][:, None] + np.arange(size)]  # (groups, size) flat positions
        block = _shape(r[pos], lp[pos], d[groups], t, value_robust)
        out_rewards[pos] = block.rewards
        out_bonus[pos] = block.bonus
        out_weights[pos] = block.weights
        probs[pos] = block.probs
        out_index[groups] = pos[np.arange(groups.size), block.index]
        out_ess[groups] = block.ess
        rule = block.rule
        if not block.success:  # pragma: no cover - defensive, see _shape
            status, message = block.status, block.message
    return ShapedRewards(out_rewards, out_bonus, out_weights, out_index, out_ess, probs, d, t, rule,
                         status == OPTIMAL, status, message)


def drro_rewards(rewards: Any, seq_logprobs: Any, delta: Any, *, tau: float | None = None,
                 group_ids: Any = None) -> ShapedRewards:
    """DRRO (regret-robust) shaped rewards of a batch of rollout groups, eq. (4.14) / (4.15).

    Parameters
    ----------
    rewards : array_like, shape (P, G)
        Proxy rewards ``r_hat^(k)`` of ``G`` rollouts for each of ``P`` prompts. Finite.
    seq_logprobs : array_like, shape (P, G)
        Sequence log-probabilities ``log pi_bar(y^(k) | x)`` under the rollout policy (any finite
        values, e.g. -1e4; only differences within a row matter). The group-normalised
        probabilities are ``pi_tilde = softmax(seq_logprobs, axis=1)`` computed by a log-softmax.
    delta : float or array_like, shape (P,)
        Scaled ambiguity budget delta-tilde >= 0 (the paper uses 2.5 G fixed, or eq. 4.17 via
        :func:`solvers.dynamic_budget`), one per prompt or shared.
    tau : float > 0 or None
        ``None``: hard rule eq. (4.14). ``tau > 0``: soft SNIS rule eq. (4.15) with temperature tau
        (the paper's standard setting is tau = 2).
    group_ids : array_like of int, shape (N,), optional
        Ragged batch: ``rewards`` and ``seq_logprobs`` are then flat (N,) and ``group_ids[i]`` is
        the prompt ``0..P-1`` of rollout ``i`` (every prompt needs at least one rollout; groups
        may be interleaved). ``delta`` is a scalar or one value per group. Each group is shaped
        exactly as the dense path shapes that row (see the module docstring).

    Returns
    -------
    ShapedRewards
        ``.rewards`` (P, G), ``.bonus``, ``.weights`` (SNIS weights, or the one-hot pick),
        ``.index`` (P,), ``.ess`` (P,), ``.probs`` (pi_tilde) and the certificate fields.

    Notes
    -----
    Hard rule: ``k* = argmax_k {r_k - delta pi_tilde_k}``; the bonus delta is added to ``r_{k*}``
    only. Scores that are exactly equal in float64 are broken by the smaller ``log pi_tilde_k``
    (then the lower index): equal rounded scores with equal rewards mean that ``delta pi_tilde``
    fell below the rounding of ``r``, and the exact score ``r - delta pi_tilde`` is then larger for
    the less likely rollout (e.g. rewards ``[.25, .25, .25]``, log-probs ``[0, -50, -60]``,
    ``delta = 40``: the exact argmax is the third rollout although all three scores round to 0.25).

    Soft rule, computed in log space: ``log u_k = (r_k - delta pi_tilde_k) / tau - log pi_tilde_k``
    with ``log pi_tilde`` taken from the log-softmax (so ``-log pi_tilde`` is exact even when
    ``pi_tilde`` underflows), ``w = softmax(log u)``, shaped ``r_k + delta G w_k pi_tilde_k``.

    As ``tau -> 0`` (unique hard argmax) the SNIS weights tend to the one-hot hard pick, so the soft
    bonus tends to ``delta G pi_tilde_{k*}`` on ``k*``: this equals the hard bonus ``delta`` only
    when ``pi_tilde_{k*} = 1/G``. Both rules are implemented exactly as printed in the paper.
    With ``delta = 0`` the rewards are returned unchanged; with ``G = 1`` the single rollout gets
    the bonus ``delta``.

    Examples
    --------
    >>> import numpy as np
    >>> res = drro_rewards([[1.0, 0.0, 0.5]], [[-3.0, -3.0, -3.0]], 0.3)
    >>> res.index.tolist(), np.round(res.rewards, 3).tolist()
    ([0], [[1.3, 0.0, 0.5]])
    >>> ragged = drro_rewards([1.0, 0.2, 0.0, 0.5], [-3.0, -1.0, -3.0, -3.0], 0.3, group_ids=[0, 1, 0, 0])
    >>> ragged.index.tolist(), np.round(ragged.rewards, 3).tolist()
    ([0, 1], [1.3, 0.5, 0.0, 0.5])
    >>> soft = drro_rewards([[1.0, 0.0, 0.5]], [[-3.0, -3.0, -3.0]], 0.3, tau=0.5)
    >>> bool(np.isclose(soft.bonus.sum(), 0.3 * 3 * (soft.weights * soft.probs).sum()))
    True
    """
    if group_ids is not None:
        return _shape_ragged(rewards, seq_logprobs, delta, tau, group_ids, value_robust=False)
    return _shape(rewards, seq_logprobs, delta, tau, value_robust=False)


def dro_rewards(rewards: Any, seq_logprobs: Any, delta: Any, *, tau: float | None = None,
                group_ids: Any = None) -> ShapedRewards:
    """DRO (value-robust) shaped rewards with the same interface as :func:`drro_rewards`.

    The value-robust promptwise objective over the l1 reward ball is
    ``min_{||r - r_hat||_1 <= delta} <pi, r> = <pi, r_hat> - delta max_i pi_i`` (DRRO paper,
    Sec. 6.1; its maximiser is Lemma H.1), so the DRO correction is the gradient of
    ``-delta max_i pi_i`` (the paper prints no DRO shaping rule; see the module docstring):

    * hard (``tau=None``): ``k* = argmax_k pi_tilde_k``, computed on the log-probs (exact; ties
      of equal log-probs to the lowest index); shaped
      ``r_k - delta 1{k = k*}`` -- a *penalty* delta on the most likely rollout of the group.
    * soft (``tau > 0``): ``max`` replaced by ``tau log sum exp(delta pi / tau)`` (like eq. 4.6,
      within ``tau log n``); its soft-max mass is estimated from the group by SNIS exactly as in
      eq. (4.15): ``log u_k = delta pi_tilde_k / tau - log pi_tilde_k``, ``w = softmax(log u)``;
      shaped ``r_k - delta G w_k pi_tilde_k``.

    Parameters, returns and numerics are those of :func:`drro_rewards` (``.bonus <= 0`` here).

    Examples
    --------
    >>> res = dro_rewards([[1.0, 0.0, 0.5]], [[-1.0, -2.0, -3.0]], 0.3)
    >>> res.index.tolist(), res.rewards.round(3).tolist()
    ([0], [[0.7, 0.0, 0.5]])
    """
    if group_ids is not None:
        return _shape_ragged(rewards, seq_logprobs, delta, tau, group_ids, value_robust=True)
    return _shape(rewards, seq_logprobs, delta, tau, value_robust=True)
