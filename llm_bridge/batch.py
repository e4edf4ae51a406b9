"""The ragged training batch of one GRPO step: advantages of flat, variable-size groups, and the
torch tensors the policy update consumes.

:func:`compute_advantages` is the stateless form of the one robust step
(:func:`llm_bridge.robust_step.robust_step`: shaping -> advantages of a registered kind ->
multipliers, on a flat ragged batch) with the budget given per group; the trainer calls the
stateful :class:`llm_bridge.robust_step.RobustAdvantage` (which adds the KL-driven budget).
:func:`policy_token_logprobs` is the torch forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers import ShapedRewards
from solvers._validation import as_float_array, as_int_array

from ._deps import require
from .advantage_kinds import get_advantage_kind
from .robust_step import SHAPINGS, Shaping, robust_step

__all__ = [
    "SHAPINGS",
    "AdvantageResult",
    "compute_advantages",
    "policy_token_logprobs",
    "sequence_logprobs",
]


@dataclass(frozen=True)
class AdvantageResult:
    """Advantages of one ragged batch.

    Attributes
    ----------
    advantages : ndarray (N,)
        Final per-rollout advantages (after shaping and multipliers).
    rewards : ndarray (N,)
        The rewards that were normalised (shaped, or the input rewards).
    multipliers : ndarray (N,)
        The multiplier applied to each rollout (its prompt's; 1.0 when unused).
    shaped : ShapedRewards or None
        The shaping diagnostics (None without shaping).
    """

    advantages: np.ndarray
    rewards: np.ndarray
    multipliers: np.ndarray
    shaped: ShapedRewards | None


def compute_advantages(rewards: Any, group_ids: Any, *, kind: str = "grpo", shaping: str = "none",
                       seq_logprobs: Any = None, delta: Any = 0.0, tau: float | None = None,
                       multipliers: Any = None, eps: float | None = None) -> AdvantageResult:
    """Shaping -> group advantages -> multipliers on a ragged batch (the robust step, stateless).

    Parameters
    ----------
    rewards : array_like (N,)
    group_ids : array_like of int (N,)
        Prompt (0..P-1) of each rollout; every prompt has at least one rollout.
    kind : str
        A name of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS` (``grpo``, ``drgrpo``,
        ``rloo``, or a host's convention such as ``trl-group``).
    shaping : {"none", "drro", "dro"}
        A rule of :data:`llm_bridge.robust_step.SHAPINGS`.
    seq_logprobs : array_like (N,), required when shaping
        Sequence log-probs of the rollouts under the sampler.
    delta : float or array_like (P,)
        Budget per group (shaping only).
    tau : float > 0 or None
        Soft (SNIS) temperature, None for the hard rule (shaping only).
    multipliers : array_like (P,), optional
        Per-prompt advantage multipliers (Prompt-GDRO); None = 1.
    eps : float, optional
        Override of the kind's std offset (``grpo``: 1e-6).
    """
    if shaping not in SHAPINGS:
        raise ValueError(f"unknown shaping {shaping!r}; valid: {list(SHAPINGS)}")
    get_advantage_kind(kind)
    r = as_float_array(rewards, "rewards", ndim=1)
    ids = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if ids.shape != r.shape:
        raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {ids.shape}")
    n_groups = int(ids.max()) + 1 if ids.size else 0
    m = None
    if multipliers is not None:
        m = as_float_array(multipliers, "multipliers", ndim=1, nonneg=True)
        if r.size and m.size != n_groups:
            raise ValueError(f"multipliers must have one entry per group ({n_groups}), got {m.size}")
    rule = None if shaping == "none" else Shaping(shaping, tau=tau)
    res = robust_step(r, ids, kind=kind, n_groups=n_groups, multipliers=m, shaping=rule, seq_logprobs=seq_logprobs,
                      delta=None if rule is None else delta, eps=eps)
    return AdvantageResult(res.advantages, res.shaped_rewards, res.multipliers[ids], res.shaping_result)


def policy_token_logprobs(model: Any, input_ids: Any, attention_mask: Any, prompt_length: int, *,
                          temperature: float = 1.0, with_entropy: bool = False) -> tuple[Any, Any]:
    """Token log-probs ``log softmax(logits / T)`` of the completion tokens, one forward pass.

    Parameters
    ----------
    model
        A causal LM.
    input_ids, attention_mask : LongTensor (N, Lp + T)
        Left-padded prompts followed by completions (as in :class:`~llm_bridge.RolloutBatch`).
    prompt_length : int
        ``Lp``.
    temperature : float
        The sampling temperature (the policy is the tempered distribution).
    with_entropy : bool
        Also return the per-token entropy (N, T) of the tempered distribution (detached).

    Returns
    -------
    (logp, entropy)
        ``logp`` (N, T) float32 with the graph attached when grad is enabled; ``entropy`` or None.
        Positions after a completion's end hold garbage: multiply by the completion mask.
    """
    torch = require("torch")
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
    logits = logits[:, prompt_length - 1 : -1, :].float()
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, prompt_length:]
    logp = logp_all.gather(2, targets[:, :, None]).squeeze(2)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(dim=-1)
    return logp, entropy


def sequence_logprobs(token_logprobs: Any, mask: Any) -> Any:
    """Masked sums over tokens: ``log pi(y | x)`` per rollout, shape (N,) (torch, float64)."""
    return (token_logprobs.double() * mask.double()).sum(dim=1)
