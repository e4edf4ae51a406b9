"""``IndependentScoreBandit``: the environment in which VIP Assumption 4.1 holds exactly.

Per prompt ``q`` and rollout ``j`` (VIP Sec. 4, Assumption 4.1):

* the reward ``R_j`` is i.i.d.: binary ``R in {-1, +1}`` with ``P(R = +1) = p_q`` (VIP Sec. 3), or,
  for the continuous variant (VIP App. E), ``R ~ Beta(p_q kappa, (1 - p_q) kappa)`` on ``[0, 1]``
  with mean ``p_q`` and ``Var(R) = p_q (1 - p_q) / (kappa + 1)``;
* the projected score ``Z_j = ||H(o_j)||_2`` is i.i.d., **independent of every reward**, with mean
  ``mu_Z`` and variance ``sigma_Z^2``: a Gamma law with that mean and variance by default (``Z`` is
  a norm, hence non-negative), or a normal law (``score_dist="normal"``).

The per-prompt projected estimator ``G = (1/n) sum_j A_j Z_j`` (:meth:`projected_gradient`) then has
exactly the variance of VIP Prop 4.2 (Dr. GRPO, ``sigma_Z^2 Var(R) (n - 1) / n^2``) and Prop 4.3
(RLOO, ``sigma_Z^2 Var(R) / (n - 1)``), ``Var(R) = 4 p (1 - p)`` for binary rewards; Prop E.1/E.2 for
continuous ones. Independence is more than Assumption 4.1(ii) needs: given the rewards, ``G`` is a
weighted sum of independent ``Z_j`` whose weights ``A_j / n`` sum to zero, so
``E[G | R] = 0`` and ``Var(G | R) = sigma_Z^2 sum_j A_j^2 / n^2``; averaging over ``R`` gives the
propositions for any law of ``Z`` with finite variance and any ``mu_Z``.
:meth:`grad_variance` returns those closed forms (via :func:`solvers.grad_variance_continuous`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers import grad_variance_continuous, group_advantages
from solvers._validation import (
    as_float_array,
    as_int_array,
    broadcast_to_size,
    check_finite_scalar,
    check_rng,
)

from .batch import ScoreBatch

__all__ = ["IndependentScoreBandit"]

_REWARDS = ("binary", "continuous")
_SCORE_DISTS = ("gamma", "normal")
_ESTIMATORS = ("grpo", "drgrpo", "rloo")


class IndependentScoreBandit:
    """Prompts with i.i.d. rewards and a projected score independent of them (VIP Assumption 4.1).

    Parameters
    ----------
    p : array_like, shape (Q,)
        Per-prompt ``P(R = +1)`` (binary) or mean reward (continuous), in ``[0, 1]``.
    mu_z : float or array_like, shape (Q,)
        Mean ``mu_Z`` of the projected score (``> 0`` for the Gamma law).
    sigma_z : float or array_like, shape (Q,)
        Standard deviation ``sigma_Z >= 0`` of the projected score.
    reward : {"binary", "continuous"}
    concentration : float > 0
        ``kappa`` of the continuous variant's Beta law.
    score_dist : {"gamma", "normal"}

    Examples
    --------
    >>> import numpy as np
    >>> from sim import IndependentScoreBandit
    >>> env = IndependentScoreBandit([0.5, 0.9], mu_z=2.0, sigma_z=0.5)
    >>> env.grad_variance([0, 1], n=4, estimator="rloo")   # 0.25 * 4 p (1 - p) / 3
    array([0.08333333, 0.03      ])
    >>> batch = env.rollout([0, 1], n=4, rng=0)
    >>> env.projected_gradient(batch, "rloo").shape
    (2,)
    """

    def __init__(
        self,
        p: Any,
        *,
        mu_z: Any = 1.0,
        sigma_z: Any = 1.0,
        reward: str = "binary",
        concentration: float = 4.0,
        score_dist: str = "gamma",
    ) -> None:
        pp = as_float_array(p, "p", ndim=1, min_size=1)
        bad = (pp < 0) | (pp > 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"p must lie in [0, 1], got {pp[i]!r} at index {i}")
        if not isinstance(reward, str) or reward not in _REWARDS:
            raise ValueError(f"reward must be one of {list(_REWARDS)}, got {reward!r}")
        if not isinstance(score_dist, str) or score_dist not in _SCORE_DISTS:
            raise ValueError(f"score_dist must be one of {list(_SCORE_DISTS)}, got {score_dist!r}")
        q = pp.shape[0]
        mu = broadcast_to_size(mu_z, "mu_z", q)
        sd = broadcast_to_size(sigma_z, "sigma_z", q, nonneg=True)
        if score_dist == "gamma":
            bad = mu <= 0
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"mu_z must be > 0 for the Gamma score law, got {mu[i]!r} at index {i}")
        self.kappa = check_finite_scalar(concentration, "concentration", lo=0.0, lo_open=True)
        self.n_prompts = q
        self.reward_kind = reward
        self.score_dist = score_dist
        self.p = pp
        self.mu_z = mu
        self.sigma_z = sd
        for arr in (self.p, self.mu_z, self.sigma_z):
            arr.setflags(write=False)

    def _ids_iv(self, ids: Any) -> np.ndarray:
        arr = np.atleast_1d(as_int_array(ids, "ids", ndim=(0, 1), min_size=1))
        bad = (arr < 0) | (arr >= self.n_prompts)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"ids must be prompt indices in [0, {self.n_prompts}), got {int(arr[i])} at index {i}")
        return arr

    @staticmethod
    def _counts_iv(n: Any, size: int) -> np.ndarray:
        c = as_int_array(n, "n", ndim=(0, 1))
        if c.ndim == 0:
            c = np.full(size, int(c), dtype=np.int64)
        elif c.shape[0] != size:
            raise ValueError(f"n must be a scalar or have one count per id ({size}), got length {c.shape[0]}")
        bad = c < 1
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"n must be >= 1 (rollouts per prompt), got {int(c[i])} at index {i}")
        return c

    def success_prob(self, ids: Any) -> np.ndarray:
        """``p_q`` on the ``[0, 1]`` scale (the controllers' success probability / mean reward), shape (P,)."""
        return self.p[self._ids_iv(ids)].copy()

    def reward_variance(self, ids: Any) -> np.ndarray:
        """Exact ``Var(R)``: ``4 p (1 - p)`` (binary, ``R in {-1, +1}``) or ``p (1 - p) / (kappa + 1)``."""
        p = self.p[self._ids_iv(ids)]
        if self.reward_kind == "binary":
            return 4.0 * p * (1.0 - p)
        return p * (1.0 - p) / (self.kappa + 1.0)

    def grad_variance(self, ids: Any, n: Any, estimator: str) -> np.ndarray:
        """Exact ``Var(G)`` of the projected estimator: VIP Prop 4.2/4.3 (binary) or E.1/E.2 (continuous)."""
        idx = self._ids_iv(ids)
        counts = self._counts_iv(n, idx.shape[0])
        return np.asarray(
            grad_variance_continuous(self.reward_variance(idx), counts, estimator=estimator,
                                     sigma2=self.sigma_z[idx] ** 2),
            dtype=np.float64,
        )

    def rollout(self, ids: Any, n: Any, rng: Any) -> ScoreBatch:
        """Draw ``n[i]`` independent (reward, score) pairs for prompt ``ids[i]``.

        Returns a :class:`ScoreBatch`: ``rewards`` in VIP's convention, ``successes`` on ``[0, 1]``,
        ``scores`` ``Z``; rollouts of ``ids[0]`` first.
        """
        idx = self._ids_iv(ids)
        counts = self._counts_iv(n, idx.shape[0])
        gen = check_rng(rng, "rng")
        gid = np.repeat(np.arange(idx.shape[0], dtype=np.int64), counts)
        q = idx[gid]
        p = self.p[q]
        if self.reward_kind == "binary":
            succ = (gen.random(gid.shape[0]) < p).astype(np.float64)
            rewards = 2.0 * succ - 1.0
        else:
            inner = (p > 0) & (p < 1)
            a = np.where(inner, p * self.kappa, 1.0)
            b = np.where(inner, (1.0 - p) * self.kappa, 1.0)
            rewards = np.where(inner, gen.beta(a, b), p)
            succ = rewards
        mu, sd = self.mu_z[q], self.sigma_z[q]
        if self.score_dist == "gamma":
            var = sd * sd
            pos = var > 0
            shape = np.where(pos, mu * mu / np.where(pos, var, 1.0), 1.0)
            scale = np.where(pos, var / mu, 1.0)
            scores = np.where(pos, gen.gamma(shape, scale), mu)
        else:
            scores = mu + sd * gen.standard_normal(gid.shape[0])
        return ScoreBatch(ids=idx, counts=counts, group_ids=gid, rewards=rewards, successes=succ, scores=scores)

    def projected_gradient(self, batch: ScoreBatch, estimator: str) -> np.ndarray:
        """Per-prompt ``G = (1/n) sum_j A_j Z_j`` (VIP Sec. 4), shape (P,).

        ``estimator`` in ``{"grpo", "drgrpo", "rloo"}``; advantages from
        :func:`solvers.group_advantages` on the rewards ``R`` of the batch.
        """
        if not isinstance(estimator, str):
            raise TypeError(f"estimator must be a str, got {type(estimator).__name__}")
        if estimator not in _ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; valid estimators: {list(_ESTIMATORS)}")
        if not isinstance(batch, ScoreBatch):
            raise TypeError(f"batch must be a ScoreBatch from IndependentScoreBandit.rollout, got {type(batch).__name__}")
        p = batch.ids.shape[0]
        adv = group_advantages(batch.rewards, kind=estimator, group_ids=batch.group_ids)
        return np.bincount(batch.group_ids, weights=adv * batch.scores, minlength=p) / batch.counts

    def __repr__(self) -> str:
        return (
            f"IndependentScoreBandit(n_prompts={self.n_prompts}, reward={self.reward_kind!r}, "
            f"score_dist={self.score_dist!r})"
        )
