"""The ``uniform`` controller: plain GRPO, the same number of rollouts for every prompt."""

from __future__ import annotations

import numpy as np

from .base import Controller, Observation, StepPlan, even_split

__all__ = ["UniformController"]


class UniformController(Controller):
    """``uniform``: ``n_i = mean_budget`` for every prompt (the GRPO / VIP / GDRO baseline).

    Allocation rule: with ``T = M * mean_budget`` and ``M`` prompts, every prompt gets
    ``floor(T / M)`` rollouts and ``T mod M`` prompts drawn uniformly at random (controller
    generator) get one more -- so a fractional ``mean_budget`` (e.g. 2.5) is met exactly with no
    position bias; with an integer ``mean_budget`` no randomness is used. Multipliers are 1.
    ``observe`` validates its input and learns nothing.

    Examples
    --------
    >>> from bandits.controllers import make_controller
    >>> ctrl = make_controller("uniform", n_prompts=10, mean_budget=4, lower=2, upper=8, seed=0)
    >>> ctrl.plan([3, 1, 4]).counts.tolist()
    [4, 4, 4]
    """

    name = "uniform"
    learns_from_rewards = False

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        return StepPlan(even_split(total, ids.size, self._rng), np.ones(ids.size))

    def _observe(self, obs: Observation) -> None:
        return None
