"""``sqrt-law``: the square-root law of GDRO Thm F.17 applied directly, per difficulty bin.

Rollout-GDRO (:mod:`bandits.controllers.gdro`) *learns* an allocation by bandit feedback; when its
utility is minus the variance proxy (Remark F.25) the allocation it is meant to approach is the
minimiser of GDRO eq. 19-20,

    minimise  sum_b qhat_b v_b / n_b   subject to  sum_b qhat_b n_b = n_bar,

whose continuous solution is the square-root law ``n_b* = n_bar sqrt(v_b) / sum_c qhat_c sqrt(v_c)``
(eq. 21 / 56). This controller skips the bandit: it estimates ``v_b`` online and solves the problem
every step.

* **Variance estimate** (Remark F.25: "the empirical variance of reward ... within each bin"): for
  every observed prompt the unbiased within-prompt sample variance of its rewards
  ``s2_i = sum_j (r_ij - r_bar_i)^2 / (n_i - 1)`` (rewards on the [0, 1] scale; the scale does not
  change the allocation), averaged over the prompts of each bin of the step, then smoothed over
  steps by the share-debiased EMA of :class:`bandits.PromptGDRO` with weight ``variance_ema`` on the
  new value (the first observation of a bin sets its estimate; a bin absent from a step keeps it).
  This is the noise that more rollouts reduce: ``E[s2_i] = Var(r | prompt i)`` and a prompt's mean
  reward has variance ``Var(r | i) / n_i`` -- not the spread of mean rewards *between* prompts.
  Bins never observed get the mean estimate of the observed bins (before any observation every
  bin is equal and the allocation is uniform).
* **Allocation** for a batch with realised bin counts ``c_b`` (shares ``qhat_b = c_b / M``):
  :func:`solvers.sqrt_allocation` gives the continuous optimum with the bounds ``[lower, upper]``
  and its shadow price (``last_target``, ``shadow_price``); the integer counts are the exact
  optimum of the same objective with one arm ``n_b in {lower, ..., upper}`` per bin and the exact
  total ``M * n_bar`` -- :func:`solvers.match_budget` with costs ``v_b / n`` (the discrete Thm
  F.17). Bins whose estimate is 0 contribute nothing to the objective and get the smallest arm the
  budget allows (the proof of Thm F.17: "choose the smallest rollout arm"). When the total is not
  reachable with one arm per bin (a non-integer ``mean_budget``), single prompts are moved by one
  rollout, chosen uniformly among those that can move, as in ``rollout-gdro``.
* **Binning**: pass@k bins (GDRO eq. 10-11, :class:`bandits.PassAtKBinner`; default), posterior
  bins by name (``binning="posterior"``, :class:`bandits.PosteriorBinner`) or any plugged-in
  binner (``binner=``; all three: :func:`bandits.controllers.gdro.binner_iv`); ``observe`` reads
  the bins ``plan`` used, then updates the estimate and the binner. Multipliers are 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers import match_budget, sqrt_allocation
from solvers._validation import check_finite_scalar

from .._state import StateReader, new_state
from ..prompt_gdro import _share_debiased_ema
from ..rollout_gdro import _MAX_ARM
from .base import Observation, StepPlan, fix_total
from .gdro import _Binned

__all__ = ["SqrtLawController"]


class _BinVariance:
    """Share-debiased EMA of the per-bin mean within-prompt reward variance (state of ``sqrt-law``)."""

    def __init__(self, n_bins: int, ema: float) -> None:
        self.n_bins, self.ema = n_bins, ema
        self.scores = np.zeros(n_bins)
        self.share_ema = np.zeros(n_bins)
        self.seen = np.zeros(n_bins, dtype=bool)

    def update(self, bins: np.ndarray, sample_vars: np.ndarray) -> None:
        counts = np.bincount(bins, minlength=self.n_bins).astype(np.float64)
        means = np.bincount(bins, weights=sample_vars / counts[bins], minlength=self.n_bins)
        scores, share_ema = _share_debiased_ema(self.scores, self.share_ema, means, counts / bins.size, self.ema)
        self.scores, self.share_ema, self.seen = scores, share_ema, self.seen | (counts > 0)

    def estimate(self) -> np.ndarray:
        """``v_hat_b`` for every bin (unseen bins: the mean over seen bins; all 1 before any data)."""
        if not self.seen.any():
            return np.ones(self.n_bins)
        return np.where(self.seen, self.scores, float(self.scores[self.seen].mean()))

    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "ema": self.ema}

    def state_dict(self) -> dict:
        return new_state(self, self._hyperparameters(), scores=self.scores, share_ema=self.share_ema, seen=self.seen)

    def load_state_dict(self, state: Any) -> None:
        b = self.n_bins
        r = StateReader(self, state, self._hyperparameters())
        scores = r.array("scores", (b,), np.float64, lo=0.0)
        share_ema = r.array("share_ema", (b,), np.float64, lo=0.0)
        seen = r.array("seen", (b,), np.bool_)
        self.scores, self.share_ema, self.seen = scores, share_ema, seen


class SqrtLawController(_Binned):
    """``sqrt-law``: per-bin counts minimising GDRO's variance proxy eq. 19 with online within-prompt
    variances (Thm F.17 / eq. 21 directly; Remark F.25's estimate). See the module docstring.

    Parameters (keyword options of ``make_controller``)
    ----------------------------------------------------
    n_bins=10, window=50, bin_mode="window", bin_quantile=None
        :class:`bandits.PassAtKBinner` (GDRO App. C.2).
    binning="pass@k", binning_options=None
        The binner by name: ``"pass@k"`` or ``"posterior"`` (:class:`bandits.PosteriorBinner`;
        ``binning_options={"statistic": "variance"}`` orders bins by the posterior mean of the
        within-prompt reward variance, the quantity this allocation acts on), built with the
        shared ``n_bins`` (:func:`bandits.controllers.gdro.binner_iv`).
    binner=None
        Any other difficulty binner (:func:`bandits.controllers.gdro.binner_iv`); then ``n_bins`` is
        the binner's.
    variance_ema=0.1
        EMA weight of a step's per-bin variance in ``(0, 1]`` (about ``1 / variance_ema`` steps of
        memory: bins drift as prompts are learnt and move between bins).

    Attributes
    ----------
    variance : ndarray, shape (n_bins,)
        Current estimate ``v_hat_b`` (read-only view of the state).
    last_target : ndarray or None
        Continuous square-root allocation of the last plan (:func:`solvers.sqrt_allocation`), per bin.
    shadow_price : float
        Its shadow price (the KKT multiplier of eq. 20; 0 before the first plan). ``last_target``
        and ``shadow_price`` describe the last plan; they are not part of the checkpoint.

    Examples
    --------
    >>> import numpy as np
    >>> from bandits.controllers import make_controller
    >>> ctrl = make_controller("sqrt-law", n_prompts=8, mean_budget=4, lower=2, upper=8, seed=0, n_bins=2)
    >>> plan = ctrl.plan(np.arange(8))
    >>> plan.counts.tolist()           # nothing observed yet: every bin equal, uniform counts
    [4, 4, 4, 4, 4, 4, 4, 4]
    """

    name = "sqrt-law"
    min_lower = 2
    allows_infinite_upper = False

    def _lower_reason(self) -> str:
        return " (the within-prompt sample variance needs two rollouts per prompt)"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 n_bins: Any = 10, window: Any = 50, bin_mode: str = "window", bin_quantile: Any = None,
                 binner: Any = None, binning: str = "pass@k", binning_options: Any = None,
                 variance_ema: Any = 0.1) -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        if self.upper > _MAX_ARM:
            raise ValueError(f"controller {self.name!r} needs upper <= 2**20 (its arms are the integers "
                             f"lower..upper), got upper={self.upper}")
        self._init_binner(n_bins, window, bin_mode, bin_quantile, binner, binning, binning_options)
        ema = check_finite_scalar(variance_ema, "variance_ema", lo=0.0, hi=1.0, lo_open=True)
        self.estimator = _BinVariance(self.n_bins, ema)
        self.arms = np.arange(self.lower, int(self.upper) + 1, dtype=np.int64)
        self.last_target: np.ndarray | None = None
        self.shadow_price = 0.0

    @property
    def variance(self) -> np.ndarray:
        return self.estimator.estimate()

    def _options(self) -> dict:
        return {**self._binner_options(), "variance_ema": self.estimator.ema}

    def _components(self) -> dict:
        return {"binner": self.binner, "variance": self.estimator}

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        bins = self.binner.bins(ids)
        counts = np.bincount(bins, minlength=self.n_bins)
        v = self.estimator.estimate()
        shares = counts / ids.size
        target = sqrt_allocation(v, shares, float(self.mean_budget), lower=float(self.lower),
                                 upper=float(self.upper))
        self.last_target, self.shadow_price = target.n, float(target.price)
        match = match_budget(v[:, None] / self.arms[None, :].astype(np.float64), counts, self.arms, total,
                             nearest=True)
        n = match.n[bins].astype(np.int64)
        if int(n.sum()) != total:
            n = fix_total(n, total, self.lower, self.upper, self._rng)
        return StepPlan(n, np.ones(ids.size), bins)

    def _check_observation(self, obs: Observation) -> None:
        bad = obs.counts < 2
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"counts must be >= 2 for controller {self.name!r} (a within-prompt sample variance), "
                             f"got {int(obs.counts[i])} at index {i}")

    def _observe(self, obs: Observation) -> None:
        bins = self.binner.bins(obs.ids)
        self.estimator.update(bins, obs.sample_vars)
        self._update_binner(obs)
