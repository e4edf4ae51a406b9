"""``dapo-dynamic``: DAPO's dynamic sampling under a per-step rollout budget.

Source: Q. Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
arXiv:2503.14476, Sec. 3.2 ("Dynamic Sampling"): over-sample and filter out prompts whose group
accuracy is 1 or 0, and keep sampling until the batch is full of groups with a non-zero advantage.
The paper's text was read through summaries in the reference index; the mechanism and constants
below follow its public implementation, verl's DAPO recipe (``recipe/dapo/dapo_ray_trainer.py``
and its run scripts, ``volcengine/verl``): groups are kept when the standard deviation of their
rewards is > 0, generation batches are drawn until ``train_batch_size`` groups are kept, the
surplus is truncated, a generation batch is 3x the training batch (``gen_prompt_bsz =
train_prompt_bsz * 3``) and at most ``max_num_gen_batches = 10`` batches are drawn per step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import check_finite_scalar, check_int_scalar

from ..base import Controller, Observation, StepPlan, TrainSelection
from ._common import all_equal, group_size_iv
from ._round_state import RoundCounterState

__all__ = ["DAPODynamicController"]


class DAPODynamicController(RoundCounterState, Controller):
    """``dapo-dynamic``: sample groups prompt by prompt, drop all-equal groups, refill until full.

    The step's ``M`` prompts are DAPO's pool of candidate prompts (the generation batch); the
    controller trains on at most ``T = max(1, round(train_fraction * M))`` groups of
    ``group_size`` rollouts, all of them with reward spread (GRPO/RLOO advantage not all zero).

    Rounds (sampling in rounds, :mod:`bandits.controllers.base`):

    * ``plan``: ``group_size`` rollouts for each of the first ``T`` prompts of the batch (the
      rest get 0 for now);
    * ``extend``: after each round, count the groups with reward spread (``kept``); while
      ``kept < T``, the next ``T - kept`` unsampled prompts of the batch (in batch order) get
      ``group_size`` rollouts each -- exactly the deficit, limited by the budget left
      (``floor(left / group_size)`` groups) and the prompts left; stop after ``max_rounds``
      rounds;
    * ``select``: only groups with reward spread enter the gradient (never an all-equal group);
      the rollouts of dropped groups were spent all the same (they count against the budget).

    Budget: at most ``M * mean_budget``; usually less (DAPO spends what the batch needs). With
    ``group_size = mean_budget`` every prompt of the pool can be sampled once, so the budget
    never binds before the pool does.

    Deviations from the recipe, stated: (1) the recipe samples a whole generation batch of
    ``3 T`` prompts per round and truncates the surplus groups; inside a fixed batch and budget
    that would spend the whole budget in the first round and leave nothing to refill, so each
    round here samples just the missing number of groups (no surplus is generated). The ratio 3
    survives as the default ``train_fraction = 1/3`` (the pool is 3x the training batch).
    (2) After ``max_num_gen_batches`` without a full batch the recipe stops with an error; here
    the step trains on the groups it has. (3) The recipe keeps a group of a single rollout; its
    GRPO advantage is 0 in this project (a group of one has no signal), so it is dropped.

    Parameters
    ----------
    group_size : int, optional
        Rollouts per sampled prompt (DAPO's ``n``), in ``[lower, min(upper, floor(mean_budget))]``;
        default ``floor(mean_budget)`` clipped to that range.
    train_fraction : float, default 1/3
        ``T / M``: the training batch as a fraction of the pool, in ``(0, 1]``.
    max_rounds : int, default 10
        Generation rounds per step (verl's ``max_num_gen_batches``).

    Examples
    --------
    >>> from bandits.controllers import make_controller
    >>> ctrl = make_controller("dapo-dynamic", n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0)
    >>> ctrl.plan(list(range(6))).counts.tolist()    # T = 2 of the 6 prompts, 4 rollouts each
    [4, 4, 0, 0, 0, 0]
    """

    name = "dapo-dynamic"
    samples_in_rounds = True
    skips_prompts = True

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 group_size: Any = None, train_fraction: Any = 1 / 3, max_rounds: Any = 10) -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self.group_size, self.train_fraction, self.max_rounds = self._options_iv(group_size, train_fraction,
                                                                                 max_rounds)
        self.round = 0

    def _options_iv(self, group_size: Any, train_fraction: Any, max_rounds: Any) -> tuple[int, float, int]:
        most = math.floor(self.mean_budget)
        if group_size is None:
            top = most if self.upper == math.inf else min(int(self.upper), most)
            group_size = max(self.lower, top)
        g = group_size_iv(group_size, "group_size", self.lower, self.upper, most)
        f = check_finite_scalar(train_fraction, "train_fraction")
        if not (0.0 < f <= 1.0):
            raise ValueError(f"train_fraction must be in (0, 1], got {f!r}")
        r = check_int_scalar(max_rounds, "max_rounds", lo=1)
        return g, f, r

    def _options(self) -> dict:
        return {"group_size": self.group_size, "train_fraction": self.train_fraction, "max_rounds": self.max_rounds}

    def train_groups(self, batch_size: Any) -> int:
        """``T``: the number of groups the step trains on when the pool allows it."""
        m = check_int_scalar(batch_size, "batch_size", lo=1)
        return max(1, min(m, round(self.train_fraction * m)))

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        self.round = 0
        counts = np.zeros(ids.size, dtype=np.int64)
        first = min(self.train_groups(ids.size), total // self.group_size)
        counts[:first] = self.group_size
        return StepPlan(counts, np.ones(ids.size))

    def _extend(self, obs: Observation, total: int) -> np.ndarray:
        extra = np.zeros(obs.ids.size, dtype=np.int64)
        if self.round + 1 >= self.max_rounds:
            return extra
        kept = int(((obs.counts > 0) & ~all_equal(obs)).sum())
        deficit = self.train_groups(obs.ids.size) - kept
        left = total - int(obs.counts.sum())
        fresh = np.flatnonzero(obs.counts == 0)
        k = min(max(deficit, 0), left // self.group_size, fresh.size)
        if k > 0:
            extra[fresh[:k]] = self.group_size
            self.round += 1
        return extra

    def _select(self, obs: Observation) -> TrainSelection:
        keep = (obs.counts > 0) & ~all_equal(obs)
        return TrainSelection(keep[obs.group_ids])

    def _observe(self, obs: Observation) -> None:
        return None
