"""``reinforce-ada``: Reinforce-Ada's adaptive sampling by successive elimination.

Source: W. Xiong, C. Ye, B. Liao, H. Dong, X. Xu, C. Monz, J. Bian, N. Jiang, T. Zhang,
"Reinforce-Ada: An Adaptive Sampling Framework for Reinforce-Style LLM Training",
arXiv:2510.04996 (abstract and Algorithm 1 as summarised in the paper's public repository), and
its public code, read in full: ``RLHFlow/Reinforce-Ada`` (``WeiXiongUST/Reinforce-Ada``:
``verl/trainer/ppo/ray_trainer.py::_generate_multi_round_adaptive_downsampling``,
``core_algos.py::compute_grpo_outcome_advantage`` with ``global_stat_est``,
``scripts/run_reinforce_ada.sh``) and the Tinker port ``RLHFlow/Reinforce-Ada-Tinker``
(``tinker_cookbook/rl/adaptive_sampling.py``). Code defaults taken here: ``max_rounds = 4``,
``positive_threshold = 0.7`` (a rollout is positive when its reward exceeds it), the exit rules
``balanced`` (at least ``keep // 2`` positives and ``keep - keep // 2`` negatives) and
``positive`` (``positive_focused``: at least one positive), the down-sampling to ``keep``
rollouts per prompt (the first positives and negatives in generation order, balanced where
possible), the fallback for prompts that never exit (keep what there is, up to ``keep``), and
the script's ``global_stat_est=True`` with ``norm_adv_by_std_in_grpo=False``: the baseline is the
mean reward over *all* the prompt's rollouts of the step, without standard-deviation scaling.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import check_int_scalar

from ..base import Controller, Observation, StepPlan, TrainSelection
from ._common import (
    bool_iv,
    choice_iv,
    group_size_iv,
    probability_iv,
    rank_within,
    round_request,
)
from ._round_state import RoundCounterState

__all__ = ["ReinforceAdaController"]

_VARIANTS = ("balanced", "positive")


class ReinforceAdaController(RoundCounterState, Controller):
    """``reinforce-ada``: sample in rounds, stop a prompt once it has its signal, train on balanced groups.

    Rounds (sampling in rounds, :mod:`bandits.controllers.base`):

    * ``plan``: ``round_size`` rollouts for every prompt of the batch;
    * ``extend``: a prompt is *done* once its rollouts so far meet the exit rule (``balanced``:
      ``keep // 2`` positives and ``keep - keep // 2`` negatives; ``positive``: one positive;
      a rollout is positive when its reward is ``> positive_threshold``); every prompt not done
      gets ``round_size`` more (never past ``upper``), for at most ``max_rounds`` rounds in all;
      when the budget left cannot pay for a full round it is split as evenly as possible over
      the prompts still active;
    * ``select``: each prompt trains on ``keep`` of its rollouts (or all it has, if fewer): the
      first ``keep // 2`` positives and ``keep - keep // 2`` negatives in generation order, the
      other kind filling in where one is short; ``baselines``: the mean reward of *all* the prompt's rollouts of the
      step (``global_baseline=True``), the advantage being ``r - baseline``. The code
      down-samples the same way under both exit rules and for prompts that never exit.

    The controller learns nothing across steps (``observe`` only validates); its only state is
    the round counter of the current step.

    Equal compute. The public code spends up to ``max_rounds * round_repeat = 4 * 8`` rollouts
    per prompt to train on ``keep = n = 4``; here every rollout comes out of the step's budget
    ``M * mean_budget``. The defaults keep the code's proportions where the budget allows:
    ``round_size = max(lower, ceil(mean_budget / 2))`` (half the budget in the first round, the
    other half for the prompts still without their signal) and ``keep = round_size``.

    Parameters
    ----------
    variant : {"balanced", "positive"}, default "balanced"
        Exit rule (code: ``reinforce_ada_choice``).
    round_size : int, optional
        Rollouts per active prompt and round (code: ``round_repeat``), in ``[lower,
        min(upper, floor(mean_budget))]``.
    keep : int, optional
        Rollouts per prompt in the gradient (code: ``final_keep_per_prompt = n``), >= 2.
    max_rounds : int, default 4
    positive_threshold : float, default 0.7
        In [0, 1).
    global_baseline : bool, default True
        Baseline from all the prompt's rollouts of the step (code: ``global_stat_est``); False:
        the estimator's own baseline over the kept rollouts.
    """

    name = "reinforce-ada"
    samples_in_rounds = True

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 variant: str = "balanced", round_size: Any = None, keep: Any = None, max_rounds: Any = 4,
                 positive_threshold: Any = 0.7, global_baseline: Any = True) -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        (self.variant, self.round_size, self.keep, self.max_rounds, self.positive_threshold,
         self.global_baseline) = self._options_iv(variant, round_size, keep, max_rounds, positive_threshold,
                                                  global_baseline)
        self.round = 0

    def _options_iv(self, variant: Any, round_size: Any, keep: Any, max_rounds: Any, positive_threshold: Any,
                    global_baseline: Any) -> tuple:
        v = choice_iv(variant, "variant", _VARIANTS)
        most = math.floor(self.mean_budget)
        if round_size is None:
            cap = most if self.upper == math.inf else min(int(self.upper), most)
            round_size = min(max(self.lower, math.ceil(self.mean_budget / 2)), cap)
        r = group_size_iv(round_size, "round_size", self.lower, self.upper, most)
        k = max(r, 2) if keep is None else check_int_scalar(keep, "keep", lo=2)
        rounds = check_int_scalar(max_rounds, "max_rounds", lo=1)
        thr = probability_iv(positive_threshold, "positive_threshold", open_high=True)
        return v, r, k, rounds, thr, bool_iv(global_baseline, "global_baseline")

    def _options(self) -> dict:
        return {"variant": self.variant, "round_size": self.round_size, "keep": self.keep,
                "max_rounds": self.max_rounds, "positive_threshold": self.positive_threshold,
                "global_baseline": self.global_baseline}

    # -- the exit rule
    def _signs(self, obs: Observation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        positive = obs.rewards > self.positive_threshold
        m = obs.ids.size
        pos = np.bincount(obs.group_ids, weights=positive.astype(np.float64), minlength=m).astype(np.int64)
        return positive, pos, obs.counts - pos

    def _done(self, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
        if self.variant == "balanced":
            half = self.keep // 2
            return (pos >= half) & (neg >= self.keep - half)
        return pos >= 1

    # -- protocol
    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        self.round = 0
        return StepPlan(np.full(ids.size, self.round_size, dtype=np.int64), np.ones(ids.size))

    def _extend(self, obs: Observation, total: int) -> np.ndarray:
        if self.round + 1 >= self.max_rounds:
            return np.zeros(obs.ids.size, dtype=np.int64)
        _, pos, neg = self._signs(obs)
        active = ~self._done(pos, neg)
        extra = round_request(obs.counts, active, self.round_size, total - int(obs.counts.sum()), self.upper,
                              self._rng)
        if extra.any():
            self.round += 1
        return extra

    def _select(self, obs: Observation) -> TrainSelection:
        positive, pos, neg = self._signs(obs)
        take = np.minimum(self.keep, obs.counts)
        # the code's down-sampling (the same for both exit rules and for the fallback of prompts
        # that never exit): keep // 2 positives, the rest negatives, the other kind filling in
        want_pos = np.minimum(self.keep // 2, pos)
        want_neg = np.minimum(take - want_pos, neg)
        want_pos = np.minimum(pos, take - want_neg)
        # the first want_pos positives and want_neg negatives of each prompt, in generation order
        key = obs.group_ids * 2 + positive.astype(np.int64)
        rank = rank_within(key)
        limit = np.where(positive, want_pos[obs.group_ids], want_neg[obs.group_ids])
        mask = rank < limit
        baselines = obs.mean_rewards.copy() if self.global_baseline else None
        return TrainSelection(mask, baselines)

    def _observe(self, obs: Observation) -> None:
        return None
