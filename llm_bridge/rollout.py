"""The rollout contract shared by every generation backend: how completions are sampled
(:class:`SamplingConfig`), what a backend returns (:class:`RolloutBatch`, a ragged batch of
``sum(counts)`` completions with their token log-probs), the backend protocol
(:class:`GenerationBackend`), and the two helpers every backend uses (:func:`counts_iv`,
:func:`decode_completions`).

The backends (:mod:`llm_bridge.generation` for ``hf`` and the registry,
:mod:`llm_bridge.vllm_backend` for ``vllm``) import this module and not each other, so the
dependency points one way: ``rollout`` <- ``vllm_backend`` <- ``generation`` (the registry imports
the vLLM backend lazily, only when it is asked for).

Needs the ``llm`` extra (torch) only for the tensors of a :class:`RolloutBatch`; importing this
module imports no extra.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from solvers._validation import as_int_array, check_finite_scalar, check_int_scalar

__all__ = [
    "SamplingConfig",
    "RolloutBatch",
    "GenerationBackend",
    "counts_iv",
    "decode_completions",
]


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled.

    Attributes
    ----------
    max_new_tokens : int >= 1
        Longest completion (the end-of-sequence token counts as one of them).
    temperature : float > 0
        Logits are divided by it. The trainer's policy is the same tempered distribution.
    top_k : int >= 0
        Keep only the ``top_k`` most likely tokens (0: off).
    top_p : float in (0, 1]
        Nucleus sampling (1.0: off).
    """

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def validate(self) -> SamplingConfig:
        check_int_scalar(self.max_new_tokens, "max_new_tokens", lo=1)
        check_finite_scalar(self.temperature, "temperature", lo=0.0, lo_open=True)
        check_int_scalar(self.top_k, "top_k", lo=0)
        check_finite_scalar(self.top_p, "top_p", lo=0.0, hi=1.0, lo_open=True)
        return self

    @property
    def filtered(self) -> bool:
        """True when top-k/top-p change the distribution (sampling != trainer log-probs)."""
        return self.top_k > 0 or self.top_p < 1.0


@dataclass
class RolloutBatch:
    """A ragged batch of ``N`` completions of ``P`` prompts (torch tensors on the policy's device).

    Attributes
    ----------
    input_ids : LongTensor, shape (N, Lp + T)
        Each row: its prompt left-padded to ``Lp`` tokens, then the completion right-padded to
        ``T`` tokens (pad id after the end-of-sequence token).
    attention_mask : LongTensor, shape (N, Lp + T)
        1 on real prompt tokens and on completion tokens (through the end-of-sequence token).
    prompt_length : int
        ``Lp``; the completion starts at column ``Lp``.
    completion_mask : FloatTensor, shape (N, T)
        1.0 on generated tokens (a prefix of each row, at least one token), 0.0 after.
    token_logprobs : FloatTensor, shape (N, T)
        Log-probability of each generated token under the sampling distribution (0 off the mask).
    group_ids : ndarray of int64, shape (N,)
        Index in ``prompts`` of each row (non-decreasing: a prompt's rows are contiguous).
    counts : ndarray of int64, shape (P,)
        Completions per prompt (``bincount(group_ids) == counts``).
    texts : list of str
        Decoded completions (special tokens removed).
    finished : ndarray of bool, shape (N,)
        Whether the completion ended with the end-of-sequence token (else it hit ``T``).
    """

    input_ids: Any
    attention_mask: Any
    prompt_length: int
    completion_mask: Any
    token_logprobs: Any
    group_ids: np.ndarray
    counts: np.ndarray
    texts: list[str]
    finished: np.ndarray

    @property
    def completion_ids(self) -> Any:
        """LongTensor (N, T): the completion columns of :attr:`input_ids`."""
        return self.input_ids[:, self.prompt_length :]

    @property
    def n_rollouts(self) -> int:
        return int(self.group_ids.size)

    @property
    def completion_lengths(self) -> np.ndarray:
        """int64 (N,): generated tokens per rollout (end-of-sequence token included)."""
        return self.completion_mask.sum(dim=1).long().cpu().numpy()

    def sequence_logprobs(self) -> np.ndarray:
        """float64 (N,): masked sums of the token log-probs (log pi(y | x) under the sampler)."""
        return (self.token_logprobs.double() * self.completion_mask.double()).sum(dim=1).cpu().numpy()


@runtime_checkable
class GenerationBackend(Protocol):
    """``generate(prompts, counts, sampling) -> RolloutBatch``; ``sync_weights(model)``;
    ``state_dict()`` / ``load_state_dict()`` of its random state, ``reseed(seed)``; ``exact_logprobs`` says whether
    its token log-probs equal the trainer's forward pass up to float rounding."""

    exact_logprobs: bool

    def generate(self, prompts: Sequence[Sequence[int]], counts: Any, sampling: SamplingConfig) -> RolloutBatch:
        ...

    def sync_weights(self, model: Any) -> None:
        ...

    def reseed(self, seed: int) -> None:
        ...

    def state_dict(self) -> dict:
        ...

    def load_state_dict(self, state: dict) -> None:
        ...


def counts_iv(prompts: Sequence[Sequence[int]], counts: Any) -> np.ndarray:
    """Validate ``counts`` (one int >= 1 per prompt) and the prompts (non-empty token lists)."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of token-id lists, got {type(prompts).__name__}")
    c = as_int_array(counts, "counts", ndim=1)
    if c.size != len(prompts):
        raise ValueError(f"counts must have one entry per prompt ({len(prompts)}), got {c.size}")
    if c.size == 0:
        raise ValueError("prompts must not be empty")
    bad = c < 1
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"counts must be >= 1 for every prompt, got {int(c[i])} at index {i}")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} has no tokens")
    return c


def decode_completions(tokenizer: Any, tokens: Any, cmask: Any, eos_id: int) -> list[str]:
    """Decode each completion up to (not including) its end-of-sequence token.

    ``tokens`` is the ``(N, T)`` completion block, ``cmask`` its completion mask; special tokens
    are removed (``batch_decode(..., skip_special_tokens=True)``).
    """
    rows = tokens.cpu().numpy()
    lengths = cmask.sum(dim=1).long().cpu().numpy()
    seqs = []
    for row, length in zip(rows, lengths):
        seq = row[:length]
        if length and seq[-1] == eos_id:
            seq = seq[:-1]
        seqs.append(seq.tolist())
    return tokenizer.batch_decode(seqs, skip_special_tokens=True)
