"""Policy-gradient losses on torch tensors: the clipped surrogate (PPO/GRPO) with token-level or
sequence-level aggregation, and the k3 KL penalty to a frozen reference.

Shapes: ``(N, T)`` per-token tensors for ``N`` rollouts of up to ``T`` completion tokens with a
``mask`` of 1.0 on generated tokens; ``advantages`` has one value per rollout, shape ``(N,)``
(GRPO-style: the sequence advantage broadcast over the sequence's tokens) or ``(N, T)``.

Aggregations (:data:`AGGREGATIONS`):

``"token-mean"``
    Sum of the per-token losses over every generated token of the (mini)batch divided by the
    number of those tokens (DAPO; TRL's ``loss_type="dapo"``, verl's ``token-mean``): every token
    weighs the same, so long completions weigh more.
``"seq-mean-token-mean"``
    Mean over tokens within each sequence, then mean over sequences (the original GRPO objective,
    DeepSeekMath eq. 3; verl's ``seq-mean-token-mean``): every sequence weighs the same.

Clipped surrogate, per token with ratio ``rho = exp(logp - old_logp)``:
``loss = -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)`` (PPO; GRPO eq. 3 of the GDRO paper).

Needs the ``llm`` extra (torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from solvers._validation import check_finite_scalar

from ._deps import require

__all__ = ["AGGREGATIONS", "PolicyLoss", "aggregate", "clipped_policy_loss", "k3_token_kl", "token_entropy"]

AGGREGATIONS = ("token-mean", "seq-mean-token-mean")
"""Names of the loss aggregations (see the module docstring)."""


def _aggregation_iv(aggregation: Any) -> str:
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {aggregation!r}; valid: {list(AGGREGATIONS)}")
    return aggregation


def aggregate(values: Any, mask: Any, aggregation: str) -> Any:
    """Reduce per-token ``values`` (N, T) over the tokens where ``mask`` (N, T) is 1.

    Rows with an all-zero mask are ignored by ``"seq-mean-token-mean"`` (and contribute no tokens
    to ``"token-mean"``); an all-zero mask gives 0.
    """
    _aggregation_iv(aggregation)
    mask = mask.to(values.dtype)
    if aggregation == "token-mean":
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    lengths = mask.sum(dim=1)
    per_seq = (values * mask).sum(dim=1) / lengths.clamp(min=1.0)
    has = (lengths > 0).to(values.dtype)
    return (per_seq * has).sum() / has.sum().clamp(min=1.0)


@dataclass(frozen=True)
class PolicyLoss:
    """The clipped surrogate of one (mini)batch and its diagnostics (detached floats).

    Attributes
    ----------
    loss : torch scalar
        The aggregated loss (differentiable).
    clip_fraction : float
        Share of tokens where the clipped branch is active (the gradient is zero there).
    approx_kl : float
        Token mean of ``(rho - 1) - log rho`` (k3 estimate of KL(old || new)).
    ratio_mean : float
    """

    loss: Any
    clip_fraction: float
    approx_kl: float
    ratio_mean: float


def clipped_policy_loss(logp: Any, old_logp: Any, advantages: Any, mask: Any, *, clip_eps: float = 0.2,
                        clip_eps_high: float | None = None, aggregation: str = "token-mean") -> PolicyLoss:
    """PPO/GRPO clipped surrogate ``-min(rho A, clip(rho, 1 - eps, 1 + eps_high) A)``, aggregated.

    Parameters
    ----------
    logp : Tensor (N, T)
        Token log-probs under the current policy (requires grad).
    old_logp : Tensor (N, T)
        Token log-probs under the policy that sampled the rollouts (no grad).
    advantages : Tensor (N,) or (N, T)
    mask : Tensor (N, T)
        1.0 on generated tokens.
    clip_eps, clip_eps_high : float
        Lower and upper clip radius (``clip_eps_high=None``: symmetric; DAPO's "clip-higher"
        uses e.g. 0.28).
    aggregation : {"token-mean", "seq-mean-token-mean"}
    """
    torch = require("torch")
    lo = check_finite_scalar(clip_eps, "clip_eps", lo=0.0, lo_open=True)
    hi = lo if clip_eps_high is None else check_finite_scalar(clip_eps_high, "clip_eps_high", lo=0.0, lo_open=True)
    _aggregation_iv(aggregation)
    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp, old_logp and mask must have one shape, got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)}, {tuple(mask.shape)}")
    adv = advantages.to(logp.dtype)
    if adv.dim() == 1:
        if adv.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages must have {logp.shape[0]} entries, got {adv.shape[0]}")
        adv = adv[:, None]
    elif adv.shape != logp.shape:
        raise ValueError(f"advantages must have shape (N,) or {tuple(logp.shape)}, got {tuple(adv.shape)}")
    log_ratio = (logp - old_logp) * mask
    ratio = torch.exp(log_ratio)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - lo, 1.0 + hi) * adv
    per_token = -torch.minimum(unclipped, clipped)
    loss = aggregate(per_token, mask, aggregation)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        n_tok = m.sum().clamp(min=1.0)
        clip_frac = float(((clipped < unclipped).to(logp.dtype) * m).sum() / n_tok)
        approx_kl = float((((ratio - 1.0) - log_ratio) * m).sum() / n_tok)
        ratio_mean = float((ratio * m).sum() / n_tok)
    return PolicyLoss(loss, clip_frac, approx_kl, ratio_mean)


def k3_token_kl(logp: Any, ref_logp: Any) -> Any:
    """Per-token k3 estimate of KL(pi || pi_ref): ``exp(z) - z - 1`` with ``z = ref_logp - logp``
    (>= 0; the GRPO KL penalty, DeepSeekMath eq. 4; the per-token analogue of :func:`solvers.k3_kl`).
    Differentiable in ``logp``; mask and aggregate it like the policy loss."""
    torch = require("torch")
    z = ref_logp - logp
    return torch.expm1(z) - z


def token_entropy(logits: Any) -> Any:
    """Entropy of the categorical distribution at every position, shape ``logits.shape[:-1]``."""
    torch = require("torch")
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)
