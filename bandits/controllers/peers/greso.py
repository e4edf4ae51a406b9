"""``greso``: GRESO's pre-rollout skipping of prompts predicted to give zero-variance groups.

Source: H. Zheng, Y. Zhou, B. R. Bartoldson, B. Kailkhura, F. Lai, J. Zhao, B. Chen, "Act Only
When It Pays: Efficient Reinforcement Learning for LLM Reasoning via Selective Rollouts"
(GRESO), arXiv:2506.02177, and its public code, read in full: ``Infini-AI-Lab/GRESO``
(``verl/trainer/ttis/presampling_selector.py::DataProfiler.filter_examples_all_probabilistic``,
``verl/trainer/ppo/ray_trainer.py`` for the adaptive exploration probabilities and the
``dynamic_sampling`` filter, ``train-scripts/*_greso.sh``). Code defaults taken here:
``p_easy = p_hard = 0.5`` initial keep-probability bases, a skip probability
``1 - max(p ** streak, 0.01)`` for a prompt whose last ``streak`` visits were all-correct
(``p_easy``) or all-wrong (``p_hard``), the self-adjusting bases (``target_zero_variance = 0.25``
split 1/3 easy, 2/3 hard; steps of 0.01 within ``[0.05, 0.95]``), and the post-rollout filter of
zero-advantage groups (GRESO runs on top of dynamic sampling).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, check_int_scalar

from ..base import Controller, Observation, StepPlan, TrainSelection, even_split
from ._common import all_equal, bool_iv, probability_iv, rank_within

__all__ = ["GRESOController"]


class GRESOController(Controller):
    """``greso``: skip prompts whose recent groups were all correct or all wrong, with exploration.

    Allocation rule (one round). Per prompt the controller keeps two streaks: the number of its
    most recent visits (steps in which it got rollouts) whose rewards were *all 1* (``easy``)
    and whose rewards were *all 0* (``hard``); at most one is non-zero. ``plan`` skips prompt
    ``i`` with probability

        ``1 - max(p_easy ** easy_i, floor)``  if ``easy_i > 0``,
        ``1 - max(p_hard ** hard_i, floor)``  if ``hard_i > 0``, else 0

    (``floor = 0.01``: a prompt is always explored with probability >= 1 %), and gives the
    step's whole budget ``M * mean_budget`` evenly to the prompts it keeps (random remainder,
    ``<= upper``; if the kept prompts cannot absorb it, skipped prompts are taken back in random
    order; if every prompt is skipped, the step is uniform). Skipped prompts get 0 rollouts.
    ``select`` drops groups with all-equal rewards (``drop_zero_variance``). ``observe`` updates
    the streaks of the prompts that got rollouts and, once any prompt of the step had a history
    (the code adapts from its second epoch on), moves each base by ``adapt_step`` toward its
    target share of zero-variance prompts: ``p_hard`` falls (more skipping) while the share of
    all-wrong groups among the sampled prompts is ``>= 2/3 * target_zero_variance``, and rises
    otherwise; ``p_easy`` likewise against ``1/3 * target_zero_variance``; both stay in
    ``[min_p, max_p]``.

    Equal compute. In the paper the rollouts GRESO saves shorten the step (dynamic sampling
    draws more prompts instead); with a fixed batch and budget they go to the prompts kept.

    Parameters
    ----------
    p_easy, p_hard : float, default 0.5
        Initial keep-probability bases, in [min_p, max_p].
    target_zero_variance : float, default 0.25
        Target share of zero-variance prompts, in [0, 1].
    adapt_step : float, default 0.01
    min_p, max_p : float, default 0.05, 0.95
    floor : float, default 0.01
        Smallest keep probability, in (0, 1].
    drop_zero_variance : bool, default True
        Drop all-equal groups from the gradient (GRESO's dynamic-sampling filter).
    """

    name = "greso"
    skips_prompts = True

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 p_easy: Any = 0.5, p_hard: Any = 0.5, target_zero_variance: Any = 0.25, adapt_step: Any = 0.01,
                 min_p: Any = 0.05, max_p: Any = 0.95, floor: Any = 0.01, drop_zero_variance: Any = True) -> None:
        check_int_scalar(n_prompts, "n_prompts", lo=1, hi=MAX_SIZE)  # per-prompt state arrays
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        opts = self._options_iv(p_easy, p_hard, target_zero_variance, adapt_step, min_p, max_p, floor,
                                drop_zero_variance)
        (self.p_easy0, self.p_hard0, self.target_zero_variance, self.adapt_step, self.min_p, self.max_p,
         self.floor, self.drop_zero_variance) = opts
        self.p_easy, self.p_hard = self.p_easy0, self.p_hard0
        self.easy_streak = np.zeros(self.n_prompts, dtype=np.int64)
        self.hard_streak = np.zeros(self.n_prompts, dtype=np.int64)
        self.seen = np.zeros(self.n_prompts, dtype=bool)

    @staticmethod
    def _options_iv(p_easy: Any, p_hard: Any, target: Any, step: Any, min_p: Any, max_p: Any, floor: Any,
                    drop: Any) -> tuple:
        lo = probability_iv(min_p, "min_p")
        hi = probability_iv(max_p, "max_p")
        if lo > hi:
            raise ValueError(f"min_p must be <= max_p, got min_p={lo!r} > max_p={hi!r}")
        pe = probability_iv(p_easy, "p_easy")
        ph = probability_iv(p_hard, "p_hard")
        for name, v in (("p_easy", pe), ("p_hard", ph)):
            if not (lo <= v <= hi):
                raise ValueError(f"{name} must be in [min_p, max_p] = [{lo!r}, {hi!r}], got {v!r}")
        t = probability_iv(target, "target_zero_variance")
        s = probability_iv(step, "adapt_step")
        f = probability_iv(floor, "floor", open_low=True)
        return pe, ph, t, s, lo, hi, f, bool_iv(drop, "drop_zero_variance")

    def _options(self) -> dict:
        return {"p_easy": self.p_easy0, "p_hard": self.p_hard0, "target_zero_variance": self.target_zero_variance,
                "adapt_step": self.adapt_step, "min_p": self.min_p, "max_p": self.max_p, "floor": self.floor,
                "drop_zero_variance": self.drop_zero_variance}

    def skip_probabilities(self, prompt_ids: Any) -> np.ndarray:
        """The probability that the next :meth:`plan` skips each prompt, float64 ``(M,)``."""
        return self._skip_prob(self._ids_iv(prompt_ids))

    def _skip_prob(self, ids: np.ndarray) -> np.ndarray:
        easy, hard = self.easy_streak[ids], self.hard_streak[ids]
        with np.errstate(under="ignore"):
            keep_easy = np.maximum(np.power(self.p_easy, easy.astype(np.float64)), self.floor)
            keep_hard = np.maximum(np.power(self.p_hard, hard.astype(np.float64)), self.floor)
        return np.where(easy > 0, 1.0 - keep_easy, np.where(hard > 0, 1.0 - keep_hard, 0.0))

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        m = ids.size
        skip = self._rng.random(m) < self._skip_prob(ids)
        kept = ~skip
        if not kept.any():
            kept[:] = True
        if self.upper != np.inf:  # the kept prompts must absorb the budget (<= upper each)
            need = -(-total // int(self.upper)) - int(kept.sum())
            if need > 0:
                kept[self._rng.choice(np.flatnonzero(~kept), need, replace=False)] = True
        counts = np.zeros(m, dtype=np.int64)
        counts[kept] = even_split(total, int(kept.sum()), self._rng)  # ceil(total / kept) <= upper
        return StepPlan(counts, np.ones(m))

    def _select(self, obs: Observation) -> TrainSelection:
        if not self.drop_zero_variance:
            return TrainSelection(np.ones(obs.rewards.size, dtype=bool))
        keep = (obs.counts > 0) & ~all_equal(obs)
        return TrainSelection(keep[obs.group_ids])

    def _observe(self, obs: Observation) -> None:
        m = obs.ids.size
        sampled = obs.counts > 0
        lo = np.full(m, np.inf)
        hi = np.full(m, -np.inf)
        np.minimum.at(lo, obs.group_ids, obs.rewards)
        np.maximum.at(hi, obs.group_ids, obs.rewards)
        all_right = sampled & (lo >= 1.0)
        all_wrong = sampled & (hi <= 0.0)
        had_history = bool(self.seen[obs.ids[sampled]].any())
        # visits in batch order; a prompt repeated in the batch is visited once per occurrence
        rank = rank_within(obs.ids)
        for r in range(int(rank.max()) + 1 if m else 0):
            at = np.flatnonzero((rank == r) & sampled)
            q = obs.ids[at]
            self.easy_streak[q] = np.where(all_right[at], self.easy_streak[q] + 1, 0)
            self.hard_streak[q] = np.where(all_wrong[at], self.hard_streak[q] + 1, 0)
            self.seen[q] = True
        n = int(sampled.sum())
        if had_history and n:
            easy_ratio = float(all_right.sum()) / n
            hard_ratio = float(all_wrong.sum()) / n
            target_easy = self.target_zero_variance / 3.0
            target_hard = self.target_zero_variance * 2.0 / 3.0
            if hard_ratio >= target_hard:
                self.p_hard = max(self.p_hard - self.adapt_step, self.min_p)
            else:
                self.p_hard = min(self.p_hard + self.adapt_step, self.max_p)
            if easy_ratio >= target_easy:
                self.p_easy = max(self.p_easy - self.adapt_step, self.min_p)
            else:
                self.p_easy = min(self.p_easy + self.adapt_step, self.max_p)

    # -- state beyond the components
    def _extra_state(self) -> dict:
        return {"p_easy": self.p_easy, "p_hard": self.p_hard, "easy_streak": self.easy_streak.copy(),
                "hard_streak": self.hard_streak.copy(), "seen": self.seen.copy()}

    def _read_extra_state(self, reader: Any) -> dict:
        n = self.n_prompts
        return {"p_easy": reader.float("p_easy", lo=0.0, hi=1.0), "p_hard": reader.float("p_hard", lo=0.0, hi=1.0),
                "easy_streak": reader.array("easy_streak", (n,), np.int64, lo=0),
                "hard_streak": reader.array("hard_streak", (n,), np.int64, lo=0),
                "seen": reader.array("seen", (n,), np.bool_)}

    def _commit_extra_state(self, extra: dict) -> None:
        for key, value in extra.items():
            setattr(self, key, value)
