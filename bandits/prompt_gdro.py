"""Prompt-GDRO: the data adversary of GDRO (Sec. 3.2, eq. 13-17; App. C.2.1; App. F.1.2).

Prompt-GDRO keeps an adversarial distribution ``q`` over the ``B`` online difficulty bins (eq. 13)
and applies it *compute-neutrally*: the rollout counts are untouched and the advantages of a prompt
in bin ``b`` are scaled by a clipped multiplier ``min(omega_b, w_max)`` (eq. 17). The distribution is
maintained by exponential weights (entropic mirror ascent, the adversary of Thm. F.7) driven by an
EMA of *intensive* (mean) bin losses that is debiased by the realised bin share (App. C.2.1: "score
EMA decay 0.12", "loss normalization: normalized by class share"), with uniform exploration mixing
("exploration rate 0.01"). See :class:`PromptGDRO` for every interpretive choice.

The module also holds two private helpers shared with :mod:`bandits.rollout_gdro` (bin-id
validation and the share-debiased EMA).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import (
    MAX_SIZE,
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
    check_same_shape,
)

from ._state import StateReader, new_state, rng_state

__all__ = ["PromptGDRO"]

LOG_WEIGHT_FLOOR = -700.0
"""Lowest stored log weight relative to the best bin/arm (``exp(-700) ~ 1e-304``).

Below this a weight is indistinguishable from 0 after the exploration mixing; flooring keeps every
state finite whatever the losses, and acts as a mild implicit restart for long-dominated bins."""

MAX_ABS_LOSS = 1e100
"""Largest accepted magnitude of a loss or utility; keeps every product ``step * score`` finite."""


# --------------------------------------------------------------------------------------------
# shared private helpers (also used by bandits.rollout_gdro)
# --------------------------------------------------------------------------------------------


def _bin_ids_iv(bin_ids: Any, n_bins: int, name: str = "bin_ids") -> np.ndarray:
    """Validate a 1-D, non-empty array of bin indices in ``[0, n_bins)``; return int64."""
    ids = as_int_array(bin_ids, name, ndim=1, min_size=1)
    bad = (ids < 0) | (ids >= n_bins)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be in [0, {n_bins}), got {int(ids[i])} at index {i}")
    return ids


def _values_iv(values: Any, name: str, ids: np.ndarray, ids_name: str = "bin_ids") -> np.ndarray:
    """Validate finite per-prompt values aligned with ``ids`` and of bounded magnitude."""
    vals = as_float_array(values, name, ndim=1)
    check_same_shape(ids, ids_name, vals, name)
    big = np.abs(vals) > MAX_ABS_LOSS
    if big.any():
        i = int(np.argmax(big))
        raise ValueError(
            f"{name} must have magnitude <= {MAX_ABS_LOSS:g}, got {vals[i]!r} at index {i}"
        )
    return vals


def _share_debiased_ema(
    score: np.ndarray,
    share_ema: np.ndarray,
    means: np.ndarray,
    shares: np.ndarray,
    decay: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One step of the share-debiased EMA (returns new arrays; inputs are not modified).

    With ``S`` the EMA of the *extensive* signal ``share * mean`` and ``Q`` the EMA of ``share``
    (both started at 0, both decayed every step with weight ``decay`` on the new value), the score
    is ``S / Q``: a share-weighted EMA of the means that is exactly unbiased at start (the first
    observation sets the score) and unchanged on steps with ``share == 0``. It is stored in the
    numerically safe recursive form ``score <- (1 - g) score + g mean`` with gain
    ``g = decay * share / Q_new`` (``Q_new = (1 - decay) Q + decay * share``), a convex
    combination, so scores stay within the range of the observed means.
    """
    new_q = (1.0 - decay) * share_ema + decay * shares
    present = shares > 0
    gain = np.zeros_like(score)
    gain[present] = decay * shares[present] / new_q[present]
    gain = np.minimum(gain, 1.0)  # guards the last ulp; gain <= 1 mathematically
    new_score = np.where(present, (1.0 - gain) * score + gain * means, score)
    return new_score, new_q


def _normalise_log_weights(log_w: np.ndarray) -> np.ndarray:
    """Log-softmax along the last axis (max-subtracted), floored at :data:`LOG_WEIGHT_FLOOR`."""
    m = log_w.max(axis=-1, keepdims=True)
    z = log_w - m
    z = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return np.maximum(z, LOG_WEIGHT_FLOOR)


# --------------------------------------------------------------------------------------------
# Prompt-GDRO
# --------------------------------------------------------------------------------------------


class PromptGDRO:
    r"""Prompt-GDRO adversary over difficulty bins (GDRO Sec. 3.2, eq. 17; App. C.2.1).

    Each :meth:`update` receives the bins and prompt-level losses of one batch and performs

    1. **Share-debiased EMA of intensive bin losses.** With ``M`` prompts, realised shares
       ``qhat_b = c_b / M`` and bin mean losses ``m_b`` (intensive: per prompt, not summed),
       ``S_b <- (1-beta) S_b + beta qhat_b m_b`` and ``Q_b <- (1-beta) Q_b + beta qhat_b`` for
       every bin, and the score is ``s_b = S_b / Q_b`` (``beta = ema``, the weight of the new
       observation). This is our reading of "EMA-debiased", "normalized by class share (to
       prevent frequency bias)": dividing the EMA of the extensive (share-weighted) loss by the
       EMA of the share makes the score an *intensive* difficulty that a rare bin can win, removes
       the zero-initialisation bias exactly (the first observation sets ``s_b = m_b``; with a
       constant share it is the Adam-style bias-corrected EMA of the means), and weights each
       step's mean by how many prompts it rests on. Stored as ``s_b <- (1-g) s_b + g m_b`` with
       gain ``g = beta qhat_b / Q_b`` (see ``scores`` and ``share_ema``).
    2. **Exponential weights** (entropic mirror ascent on the loss scores, the adversary of
       Thm. F.7 / eq. 16's online counterpart): ``log w_b <- log w_b + eta (s_b - c)`` for every
       bin that has ever been observed, with ``eta = step_size``. Bins never observed get the
       neutral update: ``c`` is the mean score of the observed bins, which is equivalent to
       imputing that mean for unseen bins (softmax is shift invariant, so ``c`` changes nothing
       among observed bins). Log weights are then normalised (log-softmax, so ``log_weights`` are
       log-probabilities) and floored at ``LOG_WEIGHT_FLOOR = -700``. The weights *accumulate*
       (``log w_{t+1} = log w_t + eta s_t``, the exponentiated-gradient adversary of Thm. F.7);
       Sec. 3.2's phrase "practical counterpart of (16)" could also be read as the memoryless
       best response ``q = softmax(eta s_t)``. We follow the EXP3-style (cumulative) reading that
       App. C.2.1 names ("GDRO-EXP3P") and that Thm. F.7 analyses: it
       concentrates on a persistently hardest bin, the log-odds growing by ``eta`` times the
       score gap per step (the exploration floor ``gamma / B`` keeps every bin alive).
    3. **Exploration mixing:** ``q = (1 - gamma) softmax(log w) + gamma / B`` with
       ``gamma = exploration`` (exposed as ``weights``).

    *Why no importance weighting* (App. C.2.1 names "GDRO-EXP3P", whose estimator divides the
    observed loss by the probability the adversary sampled the group with): Prompt-GDRO does not
    sample bins, it reweights a batch drawn by the data pipeline, and it observes the loss of
    every bin present in the batch. There is no adversary propensity to divide by; the
    share-debiased EMA plays the estimator's role, and ``q`` only enters through the multipliers.

    **Empty bins** (absent from a batch) keep their score exactly (their share is 0, so the gain is
    0); their share EMA decays like every EMA (one tick per update), so a bin that has been absent
    for long gives its next observation more weight. They still take part in step 2 with their
    stored score (the adversary's estimate of their difficulty does not vanish because the bin was
    not sampled -- a group absent from a batch must not lose weight for that reason).

    **Multipliers** (eq. 17) for a batch with realised shares ``qhat``: with ``normalization=
    "share"`` (default) ``omega_b = qtilde_b / qhat_b``, where ``qtilde`` is ``q`` renormalised over
    the bins present in the batch. Then the reweighted batch average of any per-prompt quantity
    equals the ``q``-mixture of bin means, ``mean_i omega_{b_i} x_i = sum_b qtilde_b m_b`` -- the
    GDRO objective eq. 13 with intensive bin losses -- and the mean multiplier over the batch is
    exactly 1 before clipping (compute neutrality). This is also what makes the paper's cap of 15
    meaningful: a bin with a tiny share but a large weight would otherwise get a huge multiplier.
    With ``normalization="uniform"`` ``omega_b = B q_b`` (1 for every bin when ``q`` is uniform,
    independent of the batch). In both cases the returned multiplier is ``min(omega_b,
    weight_cap)`` (eq. 17); the cap is applied last, so with clipping the batch mean is <= 1.
    Note that with ``"share"`` even the initial, uniform ``q`` reweights the batch towards
    group balance (every present bin gets the same total weight, rare bins are up-weighted up to
    the cap) -- that is the GDRO objective over bins; ``"uniform"`` starts from plain GRPO
    weighting (all multipliers 1).

    Parameters
    ----------
    n_bins : int, default 10
        Number of difficulty bins ``B``.
    step_size : float, default 0.65
        Exponential-weights step ``eta_q``, in ``(0, 1e6]``. The default is App. C.2.1's constant,
        set in the paper for its eq. 6 loss (close to 0 on-policy); for a loss of range ``M`` use
        :meth:`matched_step_size` (Thm F.7's step, ``sqrt(8 log B / T) / M``) -- the GDRO
        controllers of :mod:`bandits.controllers` do so by default.
    exploration : float, default 0.01
        Uniform mixing ``gamma`` in ``[0, 1]``.
    ema : float, default 0.12
        EMA weight ``beta`` of the new observation ("score EMA decay"), in ``(0, 1]``. App. C.2.1
        calls 0.12 a "decay", which could also mean the weight of the *old* value; we read it as
        the weight of the new one (an average over roughly ``1 / 0.12 ~ 8`` steps), since the other
        reading (0.88 on each new batch) would hardly smooth at all. Pass ``ema=0.88`` for it.
    weight_cap : float, default 15.0
        Multiplier cap ``w_max`` of eq. 17, ``> 0``.
    normalization : {"share", "uniform"}, default "share"
        How multipliers are formed from ``q`` (see above).
    seed : None, int or numpy.random.Generator
        Accepted for a uniform constructor signature; Prompt-GDRO draws no random numbers, so its
        trajectory is a deterministic function of its inputs.

    Attributes
    ----------
    log_weights : ndarray, shape (B,)
        Log-probabilities of the exponential-weights distribution (before exploration mixing).
    scores : ndarray, shape (B,)
        Share-debiased EMA of the intensive bin losses (0 for never-observed bins; see ``seen``).
    share_ema : ndarray, shape (B,)
        EMA of the realised bin shares (the debiasing denominator ``Q``).
    seen : ndarray of bool, shape (B,)
        Whether each bin has ever been observed.
    step : int
        Number of completed updates.

    Examples
    --------
    >>> ctrl = PromptGDRO(n_bins=3, step_size=1.0, exploration=0.0)
    >>> ctrl.update([0, 0, 2], [1.0, 3.0, 0.0])
    >>> ctrl.scores.tolist()
    [2.0, 0.0, 0.0]
    >>> bool(ctrl.weights[0] > ctrl.weights[1] > ctrl.weights[2])
    True
    >>> ctrl.multipliers([0, 2]).round(3).tolist()
    [1.762, 0.238]
    """

    def __init__(
        self,
        n_bins: Any = 10,
        step_size: Any = 0.65,
        exploration: Any = 0.01,
        ema: Any = 0.12,
        weight_cap: Any = 15.0,
        *,
        normalization: str = "share",
        seed: Any = None,
    ) -> None:
        self.n_bins = check_int_scalar(n_bins, "n_bins", lo=1, hi=MAX_SIZE)
        self.step_size = check_finite_scalar(step_size, "step_size", lo=0.0, hi=1e6, lo_open=True)
        self.exploration = check_finite_scalar(exploration, "exploration", lo=0.0, hi=1.0)
        self.ema = check_finite_scalar(ema, "ema", lo=0.0, hi=1.0, lo_open=True)
        self.weight_cap = check_finite_scalar(weight_cap, "weight_cap", lo=0.0, lo_open=True)
        if normalization not in ("share", "uniform"):
            raise ValueError(
                f"normalization must be 'share' or 'uniform', got {normalization!r}"
            )
        self.normalization = normalization
        self._rng = check_rng(seed)
        b = self.n_bins
        self.log_weights = np.full(b, -np.log(b), dtype=np.float64)
        self.scores = np.zeros(b, dtype=np.float64)
        self.share_ema = np.zeros(b, dtype=np.float64)
        self.seen = np.zeros(b, dtype=bool)
        self.step = 0

    @staticmethod
    def matched_step_size(n_bins: Any, loss_range: Any, horizon: Any) -> float:
        r"""Exponential-weights step matched to the loss range: Thm F.7's ``eta_q``.

        The adversary's part of the saddle-gap bound eq. 33, ``log B / (eta T) + eta M^2 / 8``
        for losses in an interval of length ``M`` over ``T`` rounds, is smallest at

        ``eta_q = sqrt(8 log B / T) / M``

        (``B`` bins; ``log 2`` is used for ``B = 1``, where any step gives the same weights). The
        step scales as ``1 / M``: the log-odds of two bins move by at most ``eta_q M`` per step,
        whatever the loss units. App. C.2.1's 0.65 was set for the paper's eq. 6 loss (negative
        clipped GRPO surrogate plus a KL term, close to 0 on-policy); on a loss of range 2, such
        as ``1 - 2 r_bar``, it moves the log-odds by up to 1.3 nats per step.

        Parameters
        ----------
        n_bins : int
            ``B >= 1``.
        loss_range : float
            ``M > 0``, the length of the interval the bin losses (scores) lie in.
        horizon : int
            ``T >= 1``, the number of updates the step is tuned for.

        Examples
        --------
        >>> round(PromptGDRO.matched_step_size(10, 2.0, 1000), 4)
        0.0679
        """
        b = check_int_scalar(n_bins, "n_bins", lo=1, hi=MAX_SIZE)
        m = check_finite_scalar(loss_range, "loss_range", lo=0.0, lo_open=True)
        t = check_int_scalar(horizon, "horizon", lo=1)
        eta = float(np.sqrt(8.0 * np.log(max(b, 2)) / t) / m)
        if not 0.0 < eta <= 1e6:
            raise ValueError(f"the matched step sqrt(8 log B / T) / loss_range = {eta!r} is outside (0, 1e6] "
                             f"(loss_range={m!r}, horizon={t}); rescale the losses")
        return eta

    # -- distribution ----------------------------------------------------------------------
    @property
    def weights(self) -> np.ndarray:
        """Adversarial bin distribution ``q = (1 - gamma) softmax(log_weights) + gamma / B``."""
        p = np.exp(self.log_weights - self.log_weights.max())
        p /= p.sum()
        return (1.0 - self.exploration) * p + self.exploration / self.n_bins

    def multipliers(self, bin_ids: Any) -> np.ndarray:
        """Per-prompt advantage multipliers ``min(omega_b, weight_cap)`` (GDRO eq. 17).

        Parameters
        ----------
        bin_ids : array_like of int, shape (M,)
            Bin of every prompt of the batch, in ``[0, n_bins)``.

        Returns
        -------
        ndarray of float64, shape (M,)
            Multiplier of each prompt (see the class docstring for ``omega``). Does not change
            the state.
        """
        ids = _bin_ids_iv(bin_ids, self.n_bins)
        q = self.weights
        if self.normalization == "uniform":
            omega = self.n_bins * q
        else:
            counts = np.bincount(ids, minlength=self.n_bins).astype(np.float64)
            present = counts > 0
            q_present = np.where(present, q, 0.0)
            q_present /= q_present.sum()
            shares = counts / ids.size
            omega = np.zeros(self.n_bins)
            omega[present] = q_present[present] / shares[present]
        return np.minimum(omega, self.weight_cap)[ids]

    # -- learning --------------------------------------------------------------------------
    def update(self, bin_ids: Any, prompt_losses: Any) -> None:
        """Feed one batch: EMA-debiased scores, then one exponential-weights step.

        Parameters
        ----------
        bin_ids : array_like of int, shape (M,)
            Bin of every prompt, in ``[0, n_bins)``.
        prompt_losses : array_like of float, shape (M,)
            Prompt-level loss signal (e.g. the GRPO prompt loss of eq. 6; larger = harder).
            Finite, magnitude <= 1e100.

        Raises
        ------
        ValueError, TypeError
            On invalid input; the state is then left unchanged.
        """
        ids = _bin_ids_iv(bin_ids, self.n_bins)
        losses = _values_iv(prompt_losses, "prompt_losses", ids)
        b = self.n_bins
        counts = np.bincount(ids, minlength=b).astype(np.float64)
        # mean as a sum of x_i / c_b: never overflows for finite inputs.
        per = losses / counts[ids]
        means = np.bincount(ids, weights=per, minlength=b)
        shares = counts / ids.size
        scores, share_ema = _share_debiased_ema(self.scores, self.share_ema, means, shares, self.ema)
        seen = self.seen | (counts > 0)
        centre = float(scores[seen].mean())
        increment = np.where(seen, scores - centre, 0.0)
        log_w = _normalise_log_weights(self.log_weights + self.step_size * increment)
        # commit (all computations above are on copies)
        self.scores, self.share_ema, self.seen, self.log_weights = scores, share_ema, seen, log_w
        self.step += 1

    def __repr__(self) -> str:
        return f"PromptGDRO(n_bins={self.n_bins}, step={self.step})"

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "step_size": self.step_size, "exploration": self.exploration,
                "ema": self.ema, "weight_cap": self.weight_cap, "normalization": self.normalization}

    def state_dict(self) -> dict:
        """Checkpoint: hyperparameters, ``log_weights``, ``scores``, ``share_ema``, ``seen``,
        ``step`` and the (unused) generator state."""
        return new_state(self, self._hyperparameters(), log_weights=self.log_weights, scores=self.scores,
                         share_ema=self.share_ema, seen=self.seen, step=self.step, rng=rng_state(self._rng))

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shape or non-finite values."""
        b = self.n_bins
        r = StateReader(self, state, self._hyperparameters())
        log_w = r.array("log_weights", (b,), np.float64, lo=LOG_WEIGHT_FLOOR, hi=0.0)
        scores = r.array("scores", (b,), np.float64)
        share_ema = r.array("share_ema", (b,), np.float64, lo=0.0)
        seen = r.array("seen", (b,), np.bool_)
        step = r.int("step", lo=0)
        rng = r.rng("rng", self._rng)
        self.log_weights, self.scores, self.share_ema, self.seen, self.step = log_w, scores, share_ema, seen, step
        self._rng.bit_generator.state = rng
