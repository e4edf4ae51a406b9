"""One robust GRPO step, shared by every host: the project's trainer, TRL and verl.

Once a step's rollouts are generated and scored, every host needs the same arithmetic on flat,
*ragged* arrays (a different number of rollouts per prompt). It lives here, once; the trainer
(:mod:`llm_bridge.trainer`), TRL (:mod:`llm_bridge.integrations.trl`) and verl
(:mod:`llm_bridge.integrations.verl`) are thin adapters that gather their host's arrays, call
:class:`RobustAdvantage` and hand the advantages back:

1. optional robust shaping of the rewards within each group from sequence log-probabilities
   (:data:`SHAPINGS`: DRRO eq. 4.14 hard / 4.15 soft, or the value-robust DRO rule;
   :func:`solvers.drro_rewards`, :func:`solvers.dro_rewards`), with a budget that is static or
   KL-driven (DRRO eq. 4.17: ``delta + kl_alpha * KL``, KL the k3 estimate of the sampler's
   drift from the reference averaged over the last ``kl_window`` steps) and, as an explicit
   option, proportional to the group size (DRRO Sec. 4.5's scaled budget is linear in ``G``);
2. group-relative advantages of the (shaped) rewards by a kind of
   :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`: the papers' definitions or a host's own
   (TRL's and verl's, which reproduce the host bit for bit on equal groups);
3. the controller's per-prompt advantage multipliers (Prompt-GDRO, GDRO eq. 17; 1 when unused).

A controller's training selection may instead give per-prompt *baselines*
(:class:`bandits.controllers.TrainSelection`, e.g. Reinforce-Ada's mean over all of a prompt's
rollouts of the step): step 2 is then ``(shaped) r - b_i`` for every rollout of prompt ``i``, no
standard-deviation scaling, whatever the kind (the kind's own baseline is replaced).

It also maps rewards of any range to the success values a controller observes
(:func:`success_values`) and turns a step into the ``robust/*`` statistics a host logs
(:func:`step_metrics`). NumPy and the project's ``solvers`` only (torch for the hosts' kinds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from bandits.controllers import learns_from_rewards
from solvers import ShapedRewards, dro_rewards, drro_rewards, dynamic_budget, k3_kl
from solvers._validation import (
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
)

from .advantage_kinds import get_advantage_kind, kind_advantages

__all__ = [
    "DEFAULT_KL_WINDOW",
    "SHAPINGS",
    "SHAPING_RULES",
    "RobustAdvantage",
    "RobustStepResult",
    "Shaping",
    "robust_step",
    "step_metrics",
    "success_values",
]

SHAPINGS = MappingProxyType({
    "none": "no shaping: the rewards as scored",
    "drro": "DRRO regret-robust bonus: hard rule eq. (4.14) (tau=None) or soft SNIS rule eq. (4.15) (tau > 0)",
    "dro": "value-robust DRO penalty on the likeliest rollouts: hard (tau=None) or soft SNIS (tau > 0), DRRO Sec. 6.1",
})  # fmt: skip
"""The one shaping vocabulary of every host: rule name -> definition. A rule is hard without a
temperature (``tau=None``) and soft (SNIS) with one."""
SHAPING_RULES = SHAPINGS
"""Alias of :data:`SHAPINGS`."""

DEFAULT_KL_WINDOW = 20
"""Steps over which the k3 KL of the dynamic budget is averaged (the DRRO paper's window)."""

_OLD_NAMES = {"drro-soft": "drro", "drro-hard": "drro", "dro-soft": "dro", "dro-hard": "dro"}


@dataclass(frozen=True)
class Shaping:
    """Robust reward shaping of a step's groups.

    Parameters
    ----------
    rule : {"drro", "dro"}
        See :data:`SHAPINGS`.
    delta : float >= 0
        Scaled ambiguity budget delta-tilde (DRRO Sec. 4.5); with ``kl_alpha`` the base
        ``delta_tilde_0`` of eq. (4.17).
    tau : float > 0 or None
        Temperature of the soft (SNIS) rule, eq. (4.15) (the DRRO paper's standard setting is 2);
        None for the hard rule, eq. (4.14).
    kl_alpha : float >= 0 or None
        If set, the budget is dynamic, eq. (4.17): ``delta + kl_alpha * KL``, KL the mean k3
        estimate of ``KL(pi_old || pi_ref)`` over the step's rollouts averaged over the last
        ``kl_window`` steps (the paper: alpha = 10, window 20). Needs reference log-probs; a step
        without them uses the static ``delta`` and reports ``kl=None``.
    kl_window : int >= 1
        Steps of the KL average (default :data:`DEFAULT_KL_WINDOW`).
    reference_group_size : int >= 1 or None
        Group-size scaling of the budget: ``delta`` is the budget of a group of this many
        rollouts and a group of ``n`` gets ``delta * n / reference_group_size`` (the scaled budget
        ``(G / n) delta`` is linear in the group size ``G``; set it to the mean rollouts per prompt).
        None: every group gets ``delta``.
    """

    rule: str = "drro"
    delta: float = 1.0
    tau: float | None = None
    kl_alpha: float | None = None
    kl_window: int = DEFAULT_KL_WINDOW
    reference_group_size: int | None = None

    def __post_init__(self) -> None:
        rule = self.rule.lower() if isinstance(self.rule, str) else self.rule
        if rule in _OLD_NAMES:
            raise ValueError(f"shaping rule {self.rule!r} is not a rule name: use rule={_OLD_NAMES[rule]!r} with "
                             "tau=None for the hard rule or tau > 0 for the soft (SNIS) rule")
        if rule not in SHAPINGS or rule == "none":
            raise ValueError(f"unknown shaping rule {self.rule!r}; valid rules: ['drro', 'dro'] (see SHAPINGS)")
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "delta", check_finite_scalar(self.delta, "delta", lo=0.0))
        if self.tau is not None:
            object.__setattr__(self, "tau", check_finite_scalar(self.tau, "tau", lo=0.0, lo_open=True))
        if self.kl_alpha is not None:
            object.__setattr__(self, "kl_alpha", check_finite_scalar(self.kl_alpha, "kl_alpha", lo=0.0))
        object.__setattr__(self, "kl_window", check_int_scalar(self.kl_window, "kl_window", lo=1))
        if self.reference_group_size is not None:
            object.__setattr__(self, "reference_group_size",
                               check_int_scalar(self.reference_group_size, "reference_group_size", lo=1))

    @classmethod
    def coerce(cls, shaping: Any, **params: Any) -> Shaping | None:
        """``None`` or ``"none"`` -> None; a rule name plus keyword parameters, or a dict -> Shaping;
        a Shaping as is."""
        if shaping is None or (isinstance(shaping, str) and shaping.lower() == "none"):
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

    def group_budget(self, base: float, sizes: np.ndarray) -> np.ndarray:
        """Budget of each group: ``base`` (the static or dynamic delta), scaled by group size if asked."""
        if self.reference_group_size is None:
            return np.full(sizes.shape, float(base))
        return float(base) * sizes.astype(np.float64) / float(self.reference_group_size)


@dataclass(frozen=True)
class RobustStepResult:
    """Everything one robust step computed, in the row order of its input (flat, ragged).

    Attributes
    ----------
    advantages : ndarray (N,)
        Final per-rollout advantages: group advantages of the (shaped) rewards times the prompt's
        multiplier (0 for unscored rollouts).
    rewards : ndarray (N,)
        The input rewards (NaN where a rollout was not scored).
    shaped_rewards : ndarray (N,)
        Rewards after shaping (``rewards`` without shaping).
    group_ids : ndarray of int64 (N,)
    group_sizes : ndarray of int64 (P,)
    multipliers : ndarray (P,)
        Multipliers applied (1.0 when unused).
    delta : float or None
        The base shaping budget of this step (static or dynamic; None without shaping).
    group_delta : ndarray (P,) or None
        The budget each group got (``delta``, scaled by group size when asked).
    kl : float or None
        Mean k3 KL to the reference of this step's rollouts (None without a dynamic budget or
        without reference log-probs).
    kind : str
        The advantage kind.
    shaping_result : solvers.ShapedRewards or None
        The shaping solver's diagnostics (adversary weights, picks, ESS; None without shaping).
    """

    advantages: np.ndarray
    rewards: np.ndarray
    shaped_rewards: np.ndarray
    group_ids: np.ndarray
    group_sizes: np.ndarray
    multipliers: np.ndarray
    delta: float | None
    group_delta: np.ndarray | None
    kl: float | None
    kind: str
    shaping_result: ShapedRewards | None = None


def _step_iv(rewards: Any, group_ids: Any, n_groups: Any, multipliers: Any):
    try:
        r = np.array(rewards, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"rewards must be an array of real numbers, got {type(rewards).__name__}: {exc}") from None
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D (one reward per rollout), got shape {r.shape}")
    if np.isinf(r).any():
        raise ValueError("rewards must be finite (NaN marks a rollout no reward function scored), got "
                         f"{float(r[np.isinf(r)][0])!r}")
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
    return r, g, sizes, m


def _baselines_iv(baselines: Any, n_groups: int) -> np.ndarray | None:
    if baselines is None:
        return None
    b = as_float_array(baselines, "baselines", ndim=1)
    if b.shape != (n_groups,):
        raise ValueError(f"baselines must have shape ({n_groups},) (one per prompt), got {b.shape}")
    return b


def robust_step(rewards: Any, group_ids: Any, *, kind: str = "grpo", n_groups: int | None = None,
                multipliers: Any = None, shaping: Shaping | None = None, seq_logprobs: Any = None,
                delta: Any = None, eps: float | None = None, baselines: Any = None) -> RobustStepResult:
    """Shaping -> advantages of kind ``kind`` -> multipliers, on one ragged batch (stateless).

    Parameters
    ----------
    rewards : array_like (N,)
        One reward per rollout, any real range; NaN marks a rollout that no reward function
        scored (left out of its group's statistics, advantage 0; not allowed with shaping).
    group_ids : array_like of int (N,)
        Prompt position of each rollout, in ``[0, n_groups)``; every group non-empty.
    kind : str
        A name of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`.
    n_groups : int, optional
        Number of prompts (default ``max(group_ids) + 1``).
    multipliers : array_like (n_groups,), optional
        Per-prompt advantage multipliers (finite, >= 0); default 1.
    shaping : Shaping, optional
        The rule and its temperature; the budget comes from ``delta``.
    seq_logprobs : array_like (N,), required with shaping
        Sequence log-probabilities of the rollouts under the sampling policy.
    delta : float or array_like (n_groups,), optional
        The budget of each group (default: ``shaping.group_budget(shaping.delta, sizes)``).
    eps : float, optional
        Override of the kind's std offset.
    baselines : array_like (n_groups,), optional
        Per-prompt baselines that replace the kind's: the advantage of a rollout of prompt ``i``
        is ``(shaped) r - baselines[i]`` (no std scaling; 0 for an unscored rollout), times the
        prompt's multiplier (a controller's training selection,
        :class:`bandits.controllers.TrainSelection`).
    """
    spec = get_advantage_kind(kind)
    if shaping is not None and not isinstance(shaping, Shaping):
        raise TypeError(f"shaping must be a Shaping or None, got {type(shaping).__name__}")
    r, g, sizes, m = _step_iv(rewards, group_ids, n_groups, multipliers)
    base_b = _baselines_iv(baselines, sizes.size)
    shaped, base, group_delta, res = r, None, None, None
    if shaping is not None:
        if seq_logprobs is None:
            raise ValueError(f"shaping {shaping.rule!r} needs seq_logprobs (sequence log-probabilities)")
        if np.isnan(r).any():
            raise ValueError(f"shaping {shaping.rule!r} needs a reward for every rollout; {int(np.isnan(r).sum())} "
                             "rollout(s) were not scored by any reward function")
        lp = as_float_array(seq_logprobs, "seq_logprobs", ndim=1)
        if lp.shape != r.shape:
            raise ValueError(f"seq_logprobs must have the shape of rewards {r.shape}, got {lp.shape}")
        if delta is None:
            base = shaping.delta
            group_delta = shaping.group_budget(base, sizes)
        else:
            d = np.asarray(delta, dtype=np.float64)
            group_delta = np.broadcast_to(d, sizes.shape).astype(np.float64) if d.ndim == 0 else \
                as_float_array(d, "delta", ndim=1, nonneg=True)
            if group_delta.shape != sizes.shape:
                raise ValueError(f"delta must be a scalar or one budget per group {sizes.shape}, got {d.shape}")
            base = float(d) if d.ndim == 0 else float(np.mean(group_delta))
        fn = drro_rewards if shaping.rule == "drro" else dro_rewards
        res = fn(r, lp, group_delta, tau=shaping.tau, group_ids=g)
        if not res.success:  # pragma: no cover - defensive; the solver certifies its weights
            raise RuntimeError(f"{shaping.rule} shaping failed its certificate: {res.message}")
        shaped = res.rewards
    if base_b is None:
        adv = kind_advantages(shaped, g, spec.name, n_groups=sizes.size, eps=eps)
    else:
        adv = np.where(np.isnan(shaped), 0.0, shaped - base_b[g])
    if multipliers is not None:
        adv = adv * m[g]
    return RobustStepResult(adv, r, shaped, g, sizes, m, base, group_delta, None, spec.name, res)


class RobustAdvantage:
    """The robust step with its one piece of state: the KL history of the dynamic budget.

    Parameters
    ----------
    kind : str
        Advantage kind, a name of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS` (the papers'
        ``grpo`` / ``drgrpo`` / ``rloo`` or a host's, e.g. ``trl-group``, ``verl-grpo``).
    shaping : Shaping or None
        Robust reward shaping, or None for plain group advantages.
    eps : float >= 0, optional
        Override of the kind's std offset.

    Examples
    --------
    >>> import numpy as np
    >>> step = RobustAdvantage("drgrpo")
    >>> res = step(np.array([1.0, 0.0, 1.0, 0.5]), np.array([0, 0, 0, 1]), multipliers=[2.0, 1.0])
    >>> res.group_sizes.tolist(), np.round(res.advantages, 3).tolist()
    ([3, 1], [0.667, -1.333, 0.667, 0.0])
    """

    STATE_VERSION = 1

    def __init__(self, kind: str = "grpo", shaping: Shaping | None = None, *, eps: float | None = None):
        self.kind = get_advantage_kind(kind).name
        if shaping is not None and not isinstance(shaping, Shaping):
            raise TypeError(f"shaping must be a Shaping or None, got {type(shaping).__name__}")
        self.shaping = shaping
        self.eps = None if eps is None else check_finite_scalar(eps, "eps", lo=0.0)
        self.kl_history: list[float] = []

    def __call__(self, rewards: Any, group_ids: Any, *, n_groups: int | None = None, multipliers: Any = None,
                 seq_logprobs: Any = None, ref_seq_logprobs: Any = None, baselines: Any = None) -> RobustStepResult:
        """Advantages of one step (see :func:`robust_step`, ``baselines`` included); with a dynamic budget and
        ``ref_seq_logprobs`` (sequence log-probs under the reference policy) this step's KL joins
        the history first, then the budget is eq. (4.17) over the window."""
        s = self.shaping
        kl, base = None, None
        if s is not None:
            base = s.delta
            if s.kl_alpha is not None and ref_seq_logprobs is not None and seq_logprobs is not None:
                lp = as_float_array(seq_logprobs, "seq_logprobs", ndim=1)
                ref = as_float_array(ref_seq_logprobs, "ref_seq_logprobs", ndim=1)
                if ref.shape != lp.shape:
                    raise ValueError(f"ref_seq_logprobs must have the shape of seq_logprobs {lp.shape}, got {ref.shape}")
                kl = float(k3_kl(ref, lp).mean)
                history = self.kl_history + [kl]
                base = float(dynamic_budget(s.delta, s.kl_alpha, np.asarray(history), window=s.kl_window))
        g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
        delta = None
        if s is not None and g.size:
            p = int(g.max()) + 1 if n_groups is None else int(n_groups)
            delta = s.group_budget(base, np.bincount(g, minlength=p))
        res = robust_step(rewards, g, kind=self.kind, n_groups=n_groups, multipliers=multipliers, shaping=s,
                          seq_logprobs=seq_logprobs, delta=delta, eps=self.eps, baselines=baselines)
        if kl is not None:  # the step succeeded: keep its KL
            self.kl_history = (self.kl_history + [kl])[-s.kl_window:]
        return RobustStepResult(res.advantages, res.rewards, res.shaped_rewards, res.group_ids, res.group_sizes,
                                res.multipliers, base, res.group_delta, kl, res.kind, res.shaping_result)

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


def success_values(rewards: Any, controller: Any, success_fn: Callable[[np.ndarray], Any] | None = None) -> np.ndarray:
    """The success values in [0, 1] a controller observes, from rewards of any range.

    * ``success_fn`` given: ``success_fn(rewards)`` (a copy; NaN rows, i.e. unscored rollouts, are
      then set to 0), which must return finite values in [0, 1] of the same shape;
    * else rewards already in [0, 1] are the success values (the documented default: 1 = success,
      in between = partial credit);
    * else a controller that learns nothing from rewards (``learns_from_rewards`` False:
      ``uniform``, ``oracle``) gets the rewards clipped to [0, 1] -- its ``observe`` only validates
      and counts the step -- so any reward range works with it;
    * else ``ValueError``: the controller predicts success and needs a mapping (``success_fn``).

    Unscored rollouts (NaN rewards) count as failures (0).
    """
    r = np.asarray(rewards, dtype=np.float64)
    scored = ~np.isnan(r)
    if success_fn is not None:
        s = np.asarray(success_fn(r.copy()), dtype=np.float64)
        if s.shape != r.shape:
            raise ValueError(f"success_fn must return one value per rollout, shape {r.shape}, got {s.shape}")
        s = np.where(scored, s, 0.0)
        if not np.all(np.isfinite(s)) or s.min(initial=0.0) < 0 or s.max(initial=0.0) > 1:
            raise ValueError(f"success_fn must return finite values in [0, 1], got values in "
                             f"[{np.nanmin(s):.4g}, {np.nanmax(s):.4g}]")
        return s
    lo = float(np.min(r[scored])) if scored.any() else 0.0
    hi = float(np.max(r[scored])) if scored.any() else 0.0
    if 0.0 <= lo and hi <= 1.0:
        return np.where(scored, r, 0.0)
    if not learns_from_rewards(controller):
        return np.where(scored, np.clip(r, 0.0, 1.0), 0.0)
    name = getattr(controller, "name", type(controller).__name__)
    raise ValueError(f"controller {name!r} learns success probabilities from the rewards, which must then be in "
                     f"[0, 1] (1 = success); this step's rewards span [{lo:.4g}, {hi:.4g}]: pass success_fn= to map "
                     "them (e.g. success_fn=lambda r: (r > 0).astype(float)), or use a controller that does not "
                     "learn from rewards (uniform)")


def step_metrics(result: RobustStepResult, bins: Any = None, *, prefix: str = "robust/") -> dict[str, float]:
    """Scalar statistics of a step for a host's logger.

    Real group sizes (min / mean / max, number of groups of one), the mean absolute advantage, the
    shaping correction and budget, and per difficulty bin (when the controller gives ``bins``, one
    per prompt): prompts, rollouts, mean reward and mean multiplier. Unscored rollouts are left out
    of the reward means.
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
        out[f"{prefix}shaping/bonus_mean"] = float(np.nanmean(result.shaped_rewards - result.rewards))
    if result.kl is not None:
        out[f"{prefix}shaping/kl"] = float(result.kl)
    if bins is not None:
        b = as_int_array(bins, "bins", ndim=1, nonneg=True)
        if b.shape != sizes.shape:
            raise ValueError(f"bins must have one entry per prompt {sizes.shape}, got {b.shape}")
        scored = ~np.isnan(result.rewards)
        reward_sum = np.bincount(result.group_ids[scored], weights=result.rewards[scored], minlength=sizes.size)
        scored_n = np.bincount(result.group_ids[scored], minlength=sizes.size)
        for k in np.unique(b).tolist():
            sel = b == k
            out[f"{prefix}bin_{k}/prompts"] = float(sel.sum())
            out[f"{prefix}bin_{k}/rollouts"] = float(sizes[sel].sum())
            out[f"{prefix}bin_{k}/reward_mean"] = float(reward_sum[sel].sum() / max(scored_n[sel].sum(), 1))
            out[f"{prefix}bin_{k}/multiplier"] = float(result.multipliers[sel].mean())
    return out
