"""The framework-neutral part of one robust GRPO step: ragged advantages, Prompt-GDRO multipliers,
DRRO/DRO shaping, and the statistics a framework logs.

TRL's ``GRPOTrainer`` and verl's trainer differ in how they hold a batch, but once a step's rollouts
are generated and scored both need the same arithmetic on flat, *ragged* arrays (a different number
of rollouts per prompt):

1. optional robust shaping of the rewards within each group from sequence log-probabilities
   (DRRO eq. 4.14 / 4.15, or the value-robust DRO rule; :func:`solvers.drro_rewards`,
   :func:`solvers.dro_rewards`), with an optional KL-driven budget (DRRO eq. 4.17,
   :func:`solvers.dynamic_budget` on :func:`solvers.k3_kl` estimates against a reference policy);
2. group-relative advantages of the (shaped) rewards over the uneven groups
   (:func:`solvers.group_advantages`: a group of one gets 0);
3. Prompt-GDRO advantage multipliers, one per prompt (GDRO Sec. 4; 1.0 when unused).

This module imports NumPy and the project's ``solvers`` only, so it is tested without any framework
and both integrations (:mod:`llm_bridge.integrations.trl`, :mod:`llm_bridge.integrations.verl`)
share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers import (
    ADVANTAGE_KINDS,
    dro_rewards,
    drro_rewards,
    dynamic_budget,
    group_advantages,
    k3_kl,
)
from solvers._validation import (
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
)

__all__ = ["SHAPING_RULES", "RobustAdvantage", "RobustStepResult", "Shaping", "step_metrics"]

SHAPING_RULES = {
    "drro": "DRRO hard rule, eq. (4.14): bonus delta on argmax_k r_k - delta pi_tilde_k",
    "drro-soft": "DRRO soft SNIS rule, eq. (4.15), temperature tau",
    "dro": "value-robust DRO hard rule: penalty delta on the most likely rollout (DRRO Sec. 6.1)",
    "dro-soft": "value-robust DRO soft rule (SNIS estimate of the smoothed max, temperature tau)",
}
"""Robust reward shaping rules: name -> one-line definition (see :mod:`solvers.shaping`)."""


@dataclass(frozen=True)
class Shaping:
    """Robust reward shaping of a step's groups.

    Parameters
    ----------
    rule : {"drro", "drro-soft", "dro", "dro-soft"}
        See :data:`SHAPING_RULES`.
    delta : float >= 0
        Scaled ambiguity budget delta-tilde (DRRO Sec. 4.5), shared by every prompt; with
        ``kl_alpha`` it is the base ``delta_tilde_0`` of eq. (4.17).
    tau : float > 0
        Temperature of the soft rules (the DRRO paper's standard setting is 2); ignored by the
        hard rules.
    kl_alpha : float >= 0 or None
        If set, the budget is dynamic, eq. (4.17): ``delta + kl_alpha * KL`` where KL is the mean
        k3 estimate of ``KL(pi_bar || pi_ref)`` over the step's rollouts, smoothed over the last
        ``kl_window`` steps (the paper: alpha = 10, window 20). Needs reference log-probs; without
        them the static ``delta`` is used and the step reports ``kl=None``.
    kl_window : int >= 1
        Sliding window of the KL smoothing, in steps.
    """

    rule: str = "drro"
    delta: float = 1.0
    tau: float = 2.0
    kl_alpha: float | None = None
    kl_window: int = 20

    def __post_init__(self) -> None:
        if not isinstance(self.rule, str) or self.rule.lower() not in SHAPING_RULES:
            raise ValueError(f"unknown shaping rule {self.rule!r}; valid rules: {sorted(SHAPING_RULES)}")
        object.__setattr__(self, "rule", self.rule.lower())
        object.__setattr__(self, "delta", check_finite_scalar(self.delta, "delta", lo=0.0))
        object.__setattr__(self, "tau", check_finite_scalar(self.tau, "tau", lo=0.0, lo_open=True))
        if self.kl_alpha is not None:
            object.__setattr__(self, "kl_alpha", check_finite_scalar(self.kl_alpha, "kl_alpha", lo=0.0))
        object.__setattr__(self, "kl_window", check_int_scalar(self.kl_window, "kl_window", lo=1))

    @classmethod
    def coerce(cls, shaping: Any, **params: Any) -> Shaping | None:
        """``None`` -> None; a rule name plus keyword parameters -> Shaping; a Shaping as is."""
        if shaping is None:
            if params:
                raise ValueError(f"shaping parameters {sorted(params)} given without a shaping rule")
            return None
        if isinstance(shaping, Shaping):
            if params:
                raise ValueError("pass shaping parameters either in the Shaping object or as keywords, not both")
            return shaping
        if isinstance(shaping, str):
            return cls(rule=shaping, **params)
        if isinstance(shaping, dict):
            return cls(**{**shaping, **params})
        raise TypeError(f"shaping must be None, a rule name, a dict or a Shaping, got {type(shaping).__name__}")

    @property
    def soft(self) -> bool:
        return self.rule.endswith("-soft")


@dataclass(frozen=True)
class RobustStepResult:
    """Everything one robust step computed, in the row order of its input (flat, ragged).

    Attributes
    ----------
    advantages : ndarray, shape (N,)
        Final per-rollout advantages: group advantages of the (shaped) rewards times the prompt's
        multiplier.
    rewards : ndarray, shape (N,)
        The input rewards.
    shaped_rewards : ndarray, shape (N,)
        Rewards after shaping (equal to ``rewards`` without shaping).
    group_ids : ndarray of int64, shape (N,)
        Group (prompt position) of each rollout.
    group_sizes : ndarray of int64, shape (P,)
        Rollouts per prompt.
    multipliers : ndarray, shape (P,)
        Prompt-GDRO multipliers applied (1.0 when unused).
    delta : float or None
        The shaping budget used this step (None without shaping).
    kl : float or None
        Mean k3 KL to the reference of this step's rollouts (None without reference log-probs or
        without a dynamic budget).
    """

    advantages: np.ndarray
    rewards: np.ndarray
    shaped_rewards: np.ndarray
    group_ids: np.ndarray
    group_sizes: np.ndarray
    multipliers: np.ndarray
    delta: float | None
    kl: float | None


def _shape_ragged(rule: str, rewards: np.ndarray, seq_logprobs: np.ndarray, group_ids: np.ndarray,
                  delta: float, tau: float | None) -> np.ndarray:
    """Shape every group with the ragged solver (each group as its own row of eq. 4.14 / 4.15)."""
    fn = drro_rewards if rule.startswith("drro") else dro_rewards
    res = fn(rewards, seq_logprobs, delta, tau=tau, group_ids=group_ids)
    if not res.success:  # pragma: no cover - defensive; the solver certifies its weights
        raise RuntimeError(f"{rule} shaping failed its certificate: {res.message}")
    return res.rewards


class RobustAdvantage:
    """Ragged group advantages with multipliers and optional robust shaping (stateful only for the
    KL history of the dynamic budget).

    Parameters
    ----------
    kind : {"grpo", "drgrpo", "rloo"}
        Advantage kind of :func:`solvers.group_advantages` (GRPO divides by the population std).
    shaping : Shaping or None
        Robust reward shaping, or None for plain group advantages.
    eps : float >= 0
        GRPO std offset.

    Examples
    --------
    >>> import numpy as np
    >>> step = RobustAdvantage("drgrpo")
    >>> res = step(np.array([1.0, 0.0, 1.0, 0.5]), np.array([0, 0, 0, 1]), multipliers=[2.0, 1.0])
    >>> res.group_sizes.tolist(), np.round(res.advantages, 3).tolist()
    ([3, 1], [0.667, -1.333, 0.667, 0.0])
    """

    STATE_VERSION = 1

    def __init__(self, kind: str = "grpo", shaping: Shaping | None = None, *, eps: float = 1e-6):
        if not isinstance(kind, str) or kind.lower() not in ADVANTAGE_KINDS:
            raise ValueError(f"unknown advantage kind {kind!r}; valid kinds: {sorted(ADVANTAGE_KINDS)}")
        if shaping is not None and not isinstance(shaping, Shaping):
            raise TypeError(f"shaping must be a Shaping or None, got {type(shaping).__name__}")
        self.kind = kind.lower()
        self.shaping = shaping
        self.eps = check_finite_scalar(eps, "eps", lo=0.0)
        self.kl_history: list[float] = []

    def __call__(self, rewards: Any, group_ids: Any, *, n_groups: int | None = None, multipliers: Any = None,
                 seq_logprobs: Any = None, ref_seq_logprobs: Any = None) -> RobustStepResult:
        """Advantages of one step.

        Parameters
        ----------
        rewards : array_like, shape (N,)
            One scalar reward per rollout (finite).
        group_ids : array_like of int, shape (N,)
            Prompt position of each rollout, in ``[0, n_groups)``.
        n_groups : int, optional
            Number of prompts (default ``max(group_ids) + 1``); every group must be non-empty.
        multipliers : array_like, shape (n_groups,), optional
            Per-prompt advantage multipliers (finite, >= 0); default 1.
        seq_logprobs : array_like, shape (N,), optional
            Sequence log-probabilities under the rollout policy (required with shaping).
        ref_seq_logprobs : array_like, shape (N,), optional
            Sequence log-probabilities under the reference policy (for the dynamic budget).
        """
        r = as_float_array(rewards, "rewards", ndim=1)
        g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
        if g.shape != r.shape:
            raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {g.shape}")
        if r.size == 0:
            raise ValueError("rewards is empty: a step needs at least one rollout")
        p = int(g.max()) + 1 if n_groups is None else check_int_scalar(n_groups, "n_groups", lo=1)
        if int(g.max()) >= p:
            raise ValueError(f"group_ids must be < n_groups={p}, got {int(g.max())}")
        sizes = np.bincount(g, minlength=p).astype(np.int64)
        if (sizes == 0).any():
            raise ValueError(f"every group needs at least one rollout; group {int(np.argmin(sizes))} has none")
        if multipliers is None:
            m = np.ones(p)
        else:
            m = as_float_array(multipliers, "multipliers", ndim=1, nonneg=True)
            if m.shape != (p,):
                raise ValueError(f"multipliers must have shape ({p},) (one per prompt), got {m.shape}")
        shaped, delta, kl = r, None, None
        if self.shaping is not None:
            if seq_logprobs is None:
                raise ValueError(f"shaping {self.shaping.rule!r} needs seq_logprobs (sequence log-probabilities)")
            lp = as_float_array(seq_logprobs, "seq_logprobs", ndim=1)
            if lp.shape != r.shape:
                raise ValueError(f"seq_logprobs must have the shape of rewards {r.shape}, got {lp.shape}")
            delta = self.shaping.delta
            if self.shaping.kl_alpha is not None and ref_seq_logprobs is not None:
                ref = as_float_array(ref_seq_logprobs, "ref_seq_logprobs", ndim=1)
                if ref.shape != r.shape:
                    raise ValueError(f"ref_seq_logprobs must have the shape of rewards {r.shape}, got {ref.shape}")
                kl = float(k3_kl(ref, lp).mean)
                history = self.kl_history + [kl]
                delta = float(dynamic_budget(self.shaping.delta, self.shaping.kl_alpha, np.asarray(history),
                                             window=self.shaping.kl_window))
                self.kl_history = history[-self.shaping.kl_window:]
            tau = self.shaping.tau if self.shaping.soft else None
            shaped = _shape_ragged(self.shaping.rule, r, lp, g, delta, tau)
        adv = group_advantages(shaped, kind=self.kind, group_ids=g, eps=self.eps) * m[g]
        return RobustStepResult(adv, r, shaped, g, sizes, m, delta, kl)

    def state_dict(self) -> dict[str, Any]:
        """The KL history (plain floats) and a format version."""
        return {"version": self.STATE_VERSION, "kl_history": list(self.kl_history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("version") != self.STATE_VERSION:
            raise ValueError(f"state must be a dict with version {self.STATE_VERSION}, got {state!r:.80}")
        history = [float(x) for x in state.get("kl_history", [])]
        if not all(np.isfinite(history)) or any(x < 0 for x in history):
            raise ValueError("kl_history must hold finite non-negative numbers")
        self.kl_history = history


def step_metrics(result: RobustStepResult, bins: Any = None, *, prefix: str = "robust/") -> dict[str, float]:
    """Scalar statistics of a step for a framework's logger.

    Real group sizes (min / mean / max, number of groups of one), the mean absolute advantage, the
    shaping correction and budget, and per difficulty bin (when the controller gives ``bins``, one
    per prompt): prompts, rollouts, mean reward and mean multiplier.
    """
    sizes = result.group_sizes
    out = {
        f"{prefix}group_size/min": float(sizes.min()),
        f"{prefix}group_size/mean": float(sizes.mean()),
        f"{prefix}group_size/max": float(sizes.max()),
        f"{prefix}groups_of_one": float((sizes == 1).sum()),
        f"{prefix}advantage/abs_mean": float(np.abs(result.advantages).mean()),
        f"{prefix}multiplier/mean": float(result.multipliers.mean()),
        f"{prefix}multiplier/max": float(result.multipliers.max()),
    }
    if result.delta is not None:
        out[f"{prefix}shaping/delta"] = float(result.delta)
        out[f"{prefix}shaping/bonus_mean"] = float((result.shaped_rewards - result.rewards).mean())
    if result.kl is not None:
        out[f"{prefix}shaping/kl"] = float(result.kl)
    if bins is not None:
        b = as_int_array(bins, "bins", ndim=1, nonneg=True)
        if b.shape != sizes.shape:
            raise ValueError(f"bins must have one entry per prompt {sizes.shape}, got {b.shape}")
        reward_sum = np.bincount(result.group_ids, weights=result.rewards, minlength=sizes.size)
        for k in np.unique(b).tolist():
            sel = b == k
            out[f"{prefix}bin_{k}/prompts"] = float(sel.sum())
            out[f"{prefix}bin_{k}/rollouts"] = float(sizes[sel].sum())
            out[f"{prefix}bin_{k}/reward_mean"] = float(reward_sum[sel].sum() / sizes[sel].sum())
            out[f"{prefix}bin_{k}/multiplier"] = float(result.multipliers[sel].mean())
    return out
