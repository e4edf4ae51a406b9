"""``knapsack``: Knapsack RL's value-maximising split of the rollout budget.

Source: Z. Li, C. Chen, T. Yang, T. Ding, R. Sun, G. Zhang, W. Huang, Z.-Q. Luo, "Knapsack RL:
Unlocking Exploration of LLMs via Optimizing Budget Allocation", arXiv:2509.25849 (the value of
a task as ``P(non-zero gradient) * InfoGain`` with ``InfoGain(p) ~ p (1 - p)^2``, solved as a
knapsack by dynamic programming), and its public code, read in full: ``liziniu/KnapsackRL``
(``verl/trainer/ppo/exploration_utils.py::sampling_budget_by_knapsack``,
``verl/utils/dataset/rl_dataset.py`` for the success-rate estimate,
``examples/knapsack_trainer/run_knapsack_grpo_7b.sh``). Code defaults taken here: the value
``v(N, p) = (1 - p^N - (1 - p)^N) p (1 - p)^2`` of ``N`` rollouts, the per-prompt success rate
from the last visit if it had >= 16 rollouts, else from the last 16 rewards
(``reward_buffer_length = 16``), valid after 8 observed rollouts (``min_buffer_length = 8``,
otherwise the prompt gets the uniform share), the cost ``log(1 - alpha) / log(max(p, 1 - p))``
with ``alpha = 0.9`` for the fallback rule, ``min_n = negative_n = positive_n`` (here
``lower``) and ``max_n`` (here ``upper``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, as_float_array, check_int_scalar

from ..base import Controller, Observation, StepPlan, even_split
from ._common import bool_iv, probability_iv, rank_within, spread

__all__ = ["KnapsackController", "knapsack_extras", "rollout_value"]


def rollout_value(n: Any, p: Any) -> np.ndarray:
    """Knapsack RL's value of ``n`` rollouts for a prompt of success rate ``p``:
    ``(1 - p^n - (1 - p)^n) p (1 - p)^2`` (probability of a non-zero GRPO gradient times the
    InfoGain approximation ``p (1 - p)^2``), broadcast over ``n`` and ``p``."""
    n = np.asarray(n, dtype=np.float64)
    p = as_float_array(p, "p")
    with np.errstate(under="ignore"):
        return (1.0 - p**n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


def knapsack_extras(p: Any, units: int, lower: int, upper: float) -> np.ndarray:
    """Exact split of ``units`` rollouts over prompts that already have ``lower`` each.

    Maximises ``sum_i v(lower + k_i, p_i)`` (:func:`rollout_value`) over integers
    ``0 <= k_i <= upper - lower`` with ``sum_i k_i = min(units, capacity)``. Knapsack RL solves
    this multiple-choice knapsack by dynamic programming over (item, budget); here it is solved
    exactly by its structure: the increments ``v(N + 1) - v(N) = p (1 - p)^2 [p^N (1 - p) +
    (1 - p)^N p]`` are non-increasing in ``N`` for every ``p`` in [0, 1], so taking the
    ``units`` largest increments over all (prompt, N) pairs is optimal (a concave separable
    resource allocation), ``O(P K)`` with ``K = min(upper, lower + units) - lower`` (a
    selection, no sort). Ties go to the earlier prompt.

    Returns
    -------
    ndarray of int64, shape (P,)
        The extra rollouts ``k_i``.
    """
    p = as_float_array(p, "p", ndim=1)
    units = check_int_scalar(units, "units", lo=0)
    k_max = units if upper == math.inf else min(units, int(upper) - lower)
    if p.size == 0 or k_max <= 0 or units == 0:
        return np.zeros(p.size, dtype=np.int64)
    n = lower + np.arange(k_max, dtype=np.float64)  # N = lower .. lower + k_max - 1
    q = 1.0 - p
    with np.errstate(under="ignore"):
        inc = (p * q * q)[:, None] * (p[:, None] ** n * q[:, None] + q[:, None] ** n * p[:, None])
    flat = inc.reshape(-1)
    take = min(units, flat.size)
    if take == flat.size:
        chosen = np.arange(flat.size)
    else:  # the `take` largest increments: all above the take-th largest, then ties in (prompt, N) order
        thr = np.partition(flat, flat.size - take)[flat.size - take]
        above = np.flatnonzero(flat > thr)
        ties = np.flatnonzero(flat == thr)[: take - above.size]
        chosen = np.concatenate([above, ties])
    return np.bincount(chosen // k_max, minlength=p.size).astype(np.int64)


class KnapsackController(Controller):
    """``knapsack``: per-prompt value of ``n`` rollouts from the estimated success rate, budget split by a knapsack.

    Success-rate estimate (Knapsack RL's ``epoch_estimation`` with ``robust_epoch_estimation``):
    per prompt, the mean reward of its last visit if that visit had at least ``buffer_length``
    rollouts, else the mean of its ``buffer_length`` most recent rewards over its visits; the
    estimate is *valid* once the prompt has ``min_history`` observed rollouts.

    Allocation rule (exact total ``T = M * mean_budget``, ``lower <= n <= upper``):

    1. prompts without a valid estimate get the uniform share (``floor(T / M)`` or one more);
       prompts with ``p = 0``, ``p = 1`` or ``0 < p < 1`` get ``lower``;
    2. the remaining ``R`` rollouts: if no prompt has ``0 < p < 1``, they go evenly to the
       ``p = 0`` prompts (else to every prompt); otherwise, with ``fallback``, when the
       prompts with ``0 < p < 1`` need fewer than ``R`` extra rollouts to show a non-zero
       gradient with probability ``alpha`` (``ceil(log(1 - alpha) / log(max(p, 1 - p)))``,
       capped at ``upper``), the surplus goes evenly to the ``p = 0`` prompts (else to the
       other prompts without ``0 < p < 1``) -- Knapsack RL's fallback for hard prompts;
    3. the rest is split over the prompts with ``0 < p < 1`` by the exact knapsack of
       :func:`knapsack_extras` (maximise ``sum v(n_i, p_i)``); whatever no prompt can take
       below ``upper`` is spread evenly over the prompts with room.

    Deviations from the code, stated: the code's DP gives an item's first ``lower`` rollouts
    no value when it adds nothing to them (a quirk of its ``k = 0`` branch); here every
    allocation is valued by ``v(n, p)``. The code's fallback compares the truncated cost
    ``int(min(max_n, cost))`` (rollouts in total) with the remaining budget; here the extra
    need ``min(upper, ceil(cost)) - lower``. The knapsack is solved exactly without the DP table
    (module function), which the tests check against brute force.

    Parameters
    ----------
    alpha : float, default 0.9
        Confidence of the fallback's cost estimate, in (0, 1).
    buffer_length : int, default 16
    min_history : int, default 8
    fallback : bool, default True
    """

    name = "knapsack"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 alpha: Any = 0.9, buffer_length: Any = 16, min_history: Any = 8, fallback: Any = True) -> None:
        check_int_scalar(n_prompts, "n_prompts", lo=1, hi=MAX_SIZE)  # per-prompt state arrays
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self.alpha = probability_iv(alpha, "alpha", open_low=True, open_high=True)
        self.buffer_length = check_int_scalar(buffer_length, "buffer_length", lo=1, hi=2**16)
        self.min_history = check_int_scalar(min_history, "min_history", lo=0)
        self.fallback = bool_iv(fallback, "fallback")
        n = self.n_prompts
        self.recent = np.zeros((n, self.buffer_length))  # most recent reward first
        self.recent_len = np.zeros(n, dtype=np.int64)
        self.last_mean = np.zeros(n)
        self.last_count = np.zeros(n, dtype=np.int64)
        self.total_count = np.zeros(n, dtype=np.int64)

    def _options(self) -> dict:
        return {"alpha": self.alpha, "buffer_length": self.buffer_length, "min_history": self.min_history,
                "fallback": self.fallback}

    def predict(self, prompt_ids: Any) -> np.ndarray:
        """The success rates the next :meth:`plan` uses, float64 ``(M,)`` (0.5 where no estimate
        is valid yet; those prompts get the uniform share)."""
        ids = self._ids_iv(prompt_ids)
        p, valid = self._estimate(ids)
        return np.where(valid, p, 0.5)

    def _estimate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        valid = self.total_count[ids] >= max(self.min_history, 1)
        k = self.recent_len[ids]
        buffered = self.recent[ids].sum(axis=1) / np.maximum(k, 1)
        p = np.where(self.last_count[ids] >= self.buffer_length, self.last_mean[ids], buffered)
        return np.clip(p, 0.0, 1.0), valid

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        m = ids.size
        p, valid = self._estimate(ids)
        share = even_split(total, m, self._rng)
        counts = np.where(valid, self.lower, share).astype(np.int64)
        eff = valid & (p > 0.0) & (p < 1.0)
        zero = valid & (p <= 0.0)
        rest = total - int(counts.sum())
        if rest > 0 and not eff.any():
            rest = spread(counts, rest, zero if zero.any() else np.ones(m, dtype=bool), self.upper, self._rng)
        elif rest > 0:
            if self.fallback:
                q = p[eff]
                with np.errstate(divide="ignore"):
                    cost = np.log(1.0 - self.alpha) / np.log(np.maximum(q, 1.0 - q))
                cap = np.inf if self.upper == math.inf else float(self.upper)
                need = int((np.minimum(np.ceil(cost), cap) - self.lower).clip(min=0).sum())
                if need < rest:
                    targets = zero if zero.any() else ~eff
                    surplus = rest - need
                    rest = need + spread(counts, surplus, targets, self.upper, self._rng)
            extra = knapsack_extras(p[eff], rest, self.lower, self.upper)
            counts[eff] += extra
            rest -= int(extra.sum())
        if rest > 0:  # nothing with 0 < p < 1 can take more: anything with room
            rest = spread(counts, rest, np.ones(m, dtype=bool), self.upper, self._rng)
        return StepPlan(counts, np.ones(m), None, np.where(valid, p, 0.5))

    def _observe(self, obs: Observation) -> None:
        sampled = obs.counts > 0
        # visits in batch order; a prompt repeated in the batch is visited once per occurrence
        visit_rank = rank_within(obs.ids)
        # the rewards of each visit, most recent (last in the flat order) first
        gid = obs.group_ids
        if gid.size and bool(np.all(gid[1:] >= gid[:-1])):  # already grouped (the usual layout)
            g, r = gid, obs.rewards
        else:
            order = np.argsort(gid, kind="stable")
            g, r = gid[order], obs.rewards[order]
        start = np.r_[0, np.cumsum(obs.counts)[:-1]]
        pos_in_group = np.arange(g.size) - start[g]
        back = obs.counts[g] - 1 - pos_in_group  # 0 for the last reward of the visit
        b = self.buffer_length
        for v in range(int(visit_rank.max()) + 1 if obs.ids.size else 0):
            at = np.flatnonzero((visit_rank == v) & sampled)
            if at.size == 0:
                continue
            q = obs.ids[at]
            n = obs.counts[at]
            new = np.zeros((at.size, b))
            row = np.full(obs.ids.size, -1, dtype=np.int64)
            row[at] = np.arange(at.size)
            sel = (row[g] >= 0) & (back < b)
            new[row[g[sel]], back[sel]] = r[sel]
            old = self.recent[q]
            cols = np.arange(b)[None, :]
            shifted = cols - n[:, None]  # old entry k moves to k + n
            fill = np.take_along_axis(old, np.clip(shifted, 0, b - 1), axis=1)
            merged = np.where(cols < n[:, None], new, np.where(shifted >= 0, fill, 0.0))
            self.recent[q] = merged
            self.recent_len[q] = np.minimum(self.recent_len[q] + n, b)
            self.last_mean[q] = obs.mean_rewards[at]
            self.last_count[q] = n
            self.total_count[q] += n

    # -- state beyond the components
    def _extra_state(self) -> dict:
        return {"recent": self.recent.copy(), "recent_len": self.recent_len.copy(), "last_mean": self.last_mean.copy(),
                "last_count": self.last_count.copy(), "total_count": self.total_count.copy()}

    def _read_extra_state(self, reader: Any) -> dict:
        n, b = self.n_prompts, self.buffer_length
        return {"recent": reader.array("recent", (n, b), np.float64, lo=0.0, hi=1.0),
                "recent_len": reader.array("recent_len", (n,), np.int64, lo=0, hi=b),
                "last_mean": reader.array("last_mean", (n,), np.float64, lo=0.0, hi=1.0),
                "last_count": reader.array("last_count", (n,), np.int64, lo=0),
                "total_count": reader.array("total_count", (n,), np.int64, lo=0)}

    def _commit_extra_state(self, extra: dict) -> None:
        for key, value in extra.items():
            setattr(self, key, value)
