"""Ragged rollout batches returned by the simulators' ``rollout`` methods.

Rollout batches are ragged everywhere in the project (docs/architecture.md, data flow): one flat
vector per rollout quantity plus integer ``group_ids`` giving the *position* in the batch's
``ids`` of the prompt each rollout belongs to. The simulators emit the rollouts of prompt 0 first,
then those of prompt 1, and so on (``group_ids`` is sorted), but nothing downstream relies on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RolloutBatch", "ScoreBatch"]


@dataclass(frozen=True, eq=False)
class RolloutBatch:
    """One step's rollouts from :class:`sim.SoftmaxRLVR`.

    Attributes
    ----------
    ids : ndarray of int64, shape (P,)
        Prompt ids of the batch (may repeat).
    counts : ndarray of int64, shape (P,)
        Rollouts per prompt, ``counts >= 1``; ``N = counts.sum()``.
    group_ids : ndarray of int64, shape (N,)
        Position in ``ids`` of each rollout's prompt.
    actions : ndarray of int64, shape (N,)
        Sampled answer index in ``[0, n_answers)``.
    rewards : ndarray of float64, shape (N,)
        Reward of each rollout, in ``[0, 1]`` (binary task: ``1`` iff the answer is correct).
    probs : ndarray of float64, shape (P, n_answers)
        The sampling policy ``pi_theta(. | q)`` of each prompt when the batch was drawn; the score
        function of :meth:`sim.SoftmaxRLVR.gradient` is evaluated at this policy (on-policy).
    """

    ids: np.ndarray
    counts: np.ndarray
    group_ids: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    probs: np.ndarray

    @property
    def n_rollouts(self) -> int:
        """Total number of rollouts ``N``."""
        return int(self.rewards.shape[0])

    def successes(self) -> np.ndarray:
        """Per-prompt sum of rewards, shape (P,) (the number of correct rollouts for binary rewards)."""
        return np.bincount(self.group_ids, weights=self.rewards, minlength=self.ids.shape[0])


@dataclass(frozen=True, eq=False)
class ScoreBatch:
    """One batch of (reward, projected score) pairs from :class:`sim.IndependentScoreBandit`.

    Attributes
    ----------
    ids, counts, group_ids :
        As in :class:`RolloutBatch`.
    rewards : ndarray of float64, shape (N,)
        ``R`` in VIP's convention: ``{-1, +1}`` for binary rewards (VIP Sec. 3), real-valued in
        ``[0, 1]`` for the continuous variant (VIP App. E).
    successes : ndarray of float64, shape (N,)
        The same rewards on the ``[0, 1]`` scale the controllers observe: ``(R + 1) / 2`` for binary
        rewards, ``R`` itself for continuous ones.
    scores : ndarray of float64, shape (N,)
        Projected per-rollout gradient ``Z = ||H(o)||_2`` (VIP Sec. 4), independent of ``R``.
    """

    ids: np.ndarray
    counts: np.ndarray
    group_ids: np.ndarray
    rewards: np.ndarray
    successes: np.ndarray
    scores: np.ndarray

    @property
    def n_rollouts(self) -> int:
        """Total number of rollouts ``N``."""
        return int(self.rewards.shape[0])
