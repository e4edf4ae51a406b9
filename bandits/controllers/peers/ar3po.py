"""``ar3po``: AR3PO's adaptive rollout in stages and response reuse.

Source: Y. Zhang, W. Yao, C. Yu, Y. Liu, Q. Yin, B. Yin, H. Yun, L. Li, "Improving Sampling
Efficiency in RLVR through Adaptive Rollout and Response Reuse" (AR3PO), arXiv:2509.25808.
**Neither the paper's full text nor a public implementation is in the reference index this
project was built from**: only the abstract and third-party summaries were available. They
describe the mechanism implemented here -- *adaptive rollout*: responses are generated in
stages, and a prompt stops receiving responses once a correct response appears, so easy prompts
cost little and hard ones get more; *response reuse*: when no new response of a prompt is
correct, a correct response generated for it at an earlier step is reused to give the group a
training signal. Every constant below is therefore this project's choice (stated with it), not
the paper's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, check_int_scalar

from ..base import Controller, Observation, StepPlan, TrainSelection
from ._common import bool_iv, group_size_iv, round_request

__all__ = ["AR3POController"]


class AR3POController(Controller):
    """``ar3po``: stages of rollouts until a correct response appears; reuse earlier correct responses.

    Rounds (sampling in rounds, :mod:`bandits.controllers.base`):

    * ``plan``: ``stage_size`` rollouts for every prompt of the batch (stage 1);
    * ``extend``: every prompt without a correct response so far (no reward equal to 1 in the
      step) gets ``stage_size`` more, never past ``upper``, for at most ``max_stages`` stages;
      when the budget left cannot pay for a full stage it is split as evenly as possible over
      the prompts still active;
    * ``select``: every generated rollout enters the gradient; ``reuse[i]`` is set for a prompt
      with no correct response in this step that had one at an earlier step -- the training
      loop adds that earlier correct response (reward 1) to the prompt's group, which then has a
      non-zero advantage (the loop keeps the responses; a reused response costs no rollout).

    State: per prompt, whether a correct response has been seen at an earlier step (updated by
    ``observe`` from the generated rollouts; GDRO eq. 10's "reward exactly 1"), and the stage
    counter of the current step.

    Constants (not from the paper, see the module docstring): ``stage_size = max(lower,
    ceil(mean_budget / 2))`` -- half the budget in the first stage, the rest for prompts still
    without a correct response; ``max_stages`` unlimited (the budget and ``upper`` end the
    stages); one reused response per prompt and step.

    Parameters
    ----------
    stage_size : int, optional
        Rollouts per active prompt and stage, in ``[lower, min(upper, floor(mean_budget))]``.
    max_stages : int or None, default None
        Stages per step (None: until the budget or ``upper`` stops them).
    reuse : bool, default True
        Response reuse on (False: adaptive rollout only).
    """

    name = "ar3po"
    samples_in_rounds = True

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 stage_size: Any = None, max_stages: Any = None, reuse: Any = True) -> None:
        check_int_scalar(n_prompts, "n_prompts", lo=1, hi=MAX_SIZE)  # per-prompt state arrays
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self.stage_size, self.max_stages, self.reuse = self._options_iv(stage_size, max_stages, reuse)
        self.has_correct = np.zeros(self.n_prompts, dtype=bool)
        self.stage = 0

    def _options_iv(self, stage_size: Any, max_stages: Any, reuse: Any) -> tuple[int, int | None, bool]:
        most = math.floor(self.mean_budget)
        if stage_size is None:
            cap = most if self.upper == math.inf else min(int(self.upper), most)
            stage_size = min(max(self.lower, math.ceil(self.mean_budget / 2)), cap)
        s = group_size_iv(stage_size, "stage_size", self.lower, self.upper, most)
        k = None if max_stages is None else check_int_scalar(max_stages, "max_stages", lo=1)
        return s, k, bool_iv(reuse, "reuse")

    def _options(self) -> dict:
        return {"stage_size": self.stage_size, "max_stages": self.max_stages, "reuse": self.reuse}

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        self.stage = 0
        return StepPlan(np.full(ids.size, self.stage_size, dtype=np.int64), np.ones(ids.size))

    def _extend(self, obs: Observation, total: int) -> np.ndarray:
        if self.max_stages is not None and self.stage + 1 >= self.max_stages:
            return np.zeros(obs.ids.size, dtype=np.int64)
        extra = round_request(obs.counts, ~obs.any_correct, self.stage_size, total - int(obs.counts.sum()),
                              self.upper, self._rng)
        if extra.any():
            self.stage += 1
        return extra

    def _select(self, obs: Observation) -> TrainSelection:
        reuse = (~obs.any_correct) & self.has_correct[obs.ids] if self.reuse else np.zeros(obs.ids.size, dtype=bool)
        return TrainSelection(np.ones(obs.rewards.size, dtype=bool), None, reuse)

    def _observe(self, obs: Observation) -> None:
        self.has_correct[obs.ids[obs.any_correct]] = True

    # -- state beyond the components
    def _extra_state(self) -> dict:
        return {"has_correct": self.has_correct.copy(), "stage": self.stage}

    def _read_extra_state(self, reader: Any) -> dict:
        return {"has_correct": reader.array("has_correct", (self.n_prompts,), np.bool_),
                "stage": reader.int("stage", lo=0)}

    def _commit_extra_state(self, extra: dict) -> None:
        self.has_correct = extra["has_correct"]
        self.stage = extra["stage"]
