"""The ragged training batch of one GRPO step: advantages of flat, variable-size groups, and the
torch tensors the policy update consumes.

Flow (one step, :class:`llm_bridge.trainer.Trainer`):

1. rewards (N,) from the verifier, ``group_ids`` (N,) from the rollout batch;
2. optional robust shaping with the sequence log-probs of the sampler (masked sums of token
   log-probs): DRRO eq. (4.14)/(4.15) or its DRO counterpart, ragged
   (:func:`solvers.drro_rewards` / :func:`solvers.dro_rewards` with ``group_ids``);
3. group-relative advantages of the (shaped) rewards, :func:`solvers.group_advantages` with
   ``group_ids`` (GRPO / Dr.GRPO / RLOO; a group of one and a group of equal rewards get exactly 0);
4. Prompt-GDRO multipliers (GDRO eq. 17): each advantage times its prompt's multiplier.

Steps 2-4 are NumPy (the bridge overhead measured by the ``llm`` perf suite);
:func:`policy_token_logprobs` is the torch forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers import ADVANTAGE_KINDS, ShapedRewards, dro_rewards, drro_rewards, group_advantages
from solvers._validation import as_float_array, as_int_array

from ._deps import require

__all__ = [
    "SHAPINGS",
    "AdvantageResult",
    "compute_advantages",
    "policy_token_logprobs",
    "sequence_logprobs",
]

SHAPINGS = ("none", "drro", "dro")
"""Reward shaping rules accepted by :func:`compute_advantages`."""


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
                       multipliers: Any = None, eps: float = 1e-6) -> AdvantageResult:
    """Shaping -> group advantages -> multipliers on a ragged batch.

    Parameters
    ----------
    rewards : array_like (N,)
    group_ids : array_like of int (N,)
        Prompt (0..P-1) of each rollout.
    kind : {"grpo", "drgrpo", "rloo"}
    shaping : {"none", "drro", "dro"}
    seq_logprobs : array_like (N,), required when shaping
        Sequence log-probs of the rollouts under the sampler.
    delta : float or array_like (P,)
        Scaled budget per group (shaping only).
    tau : float > 0 or None
        Soft (SNIS) temperature, None for the hard rule (shaping only).
    multipliers : array_like (P,), optional
        Per-prompt advantage multipliers (Prompt-GDRO); None = 1.
    """
    if shaping not in SHAPINGS:
        raise ValueError(f"unknown shaping {shaping!r}; valid: {list(SHAPINGS)}")
    if kind not in ADVANTAGE_KINDS:
        raise ValueError(f"unknown advantage kind {kind!r}; valid: {sorted(ADVANTAGE_KINDS)}")
    r = as_float_array(rewards, "rewards", ndim=1)
    ids = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if ids.shape != r.shape:
        raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {ids.shape}")
    shaped = None
    target = r
    if shaping != "none":
        if seq_logprobs is None:
            raise ValueError(f"shaping={shaping!r} needs seq_logprobs")
        fn = drro_rewards if shaping == "drro" else dro_rewards
        shaped = fn(r, seq_logprobs, delta, tau=tau, group_ids=ids)
        target = shaped.rewards
    adv = group_advantages(target, kind=kind, group_ids=ids, eps=eps)
    if multipliers is None:
        mult = np.ones_like(r)
    else:
        m = as_float_array(multipliers, "multipliers", ndim=1, nonneg=True)
        if r.size and m.size <= int(ids.max()):
            raise ValueError(f"multipliers must have one entry per group ({int(ids.max()) + 1}), got {m.size}")
        mult = m[ids]
        adv = adv * mult
    return AdvantageResult(adv, target, mult, shaped)


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
