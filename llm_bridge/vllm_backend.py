"""vLLM generation backend: offline ``vllm.LLM``, one ``SamplingParams`` per prompt, weights pushed
from the torch policy before each step.

How it maps the :class:`llm_bridge.rollout.GenerationBackend` protocol onto vLLM:

* **Per-prompt counts.** ``LLM.generate`` takes one ``SamplingParams`` per prompt; prompt ``i``
  gets ``n = counts[i]`` and ``logprobs = 0`` (vLLM then returns the log-probability of each
  *sampled* token only). Prompts are passed as token ids (``{"prompt_token_ids": ...}``) so the
  trainer and the sampler see the same tokens. Each request carries its own ``seed`` drawn from
  the backend's NumPy generator, so a resumed run replays the same requests.
* **Log-probs under the sampling distribution.** The engine is created with
  ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10.2): the returned log-probs are those of the
  distribution actually sampled from (after temperature and top-k/top-p), like the ``hf``
  backend's. They come from vLLM's own kernels, so they differ from the trainer's forward pass by
  float noise (INTEGRATION measurements: about 1e-3 after a sync on the CPU build):
  ``exact_logprobs = False`` and the trainer recomputes the old log-probs with its own forward
  pass by default.
* **Weight sync.** :meth:`VLLMBackend.sync_weights` pushes every parameter of the policy through
  ``llm.collective_rpc("reload_weights", kwargs={"weights_iterator": [(name, tensor), ...]})``
  (vLLM's model ``load_weights`` maps the Hugging Face names, including the fused QKV and
  gate/up projections). With tied embeddings vLLM skips ``lm_head.weight`` unless it is sent
  explicitly, and the head then stays stale: we always send ``("lm_head.weight", embedding)``
  for a tied model.
* **End of sequence.** vLLM stops on the tokenizer's ``eos_token_id`` and keeps that token in
  ``token_ids`` (``finish_reason == "stop"``); a completion cut at ``max_tokens`` has
  ``finish_reason == "length"``.

The engine is built from a folder holding the policy's config, weights and tokenizer
(``save_pretrained``); by default a temporary folder written at construction.

Needs the ``vllm`` extra; tested by the shared contract test wherever ``vllm`` imports.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._deps import require
from .rollout import RolloutBatch, SamplingConfig, counts_iv, decode_completions

__all__ = ["VLLMBackend", "vllm_weights"]


def vllm_weights(model: Any) -> list[tuple[str, Any]]:
    """``(name, tensor)`` pairs to push into vLLM: every parameter under its Hugging Face name,
    plus ``lm_head.weight`` = the input embedding when the embeddings are tied (see module doc)."""
    out = [(name, p.detach()) for name, p in model.named_parameters()]
    names = {n for n, _ in out}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if tied and "lm_head.weight" not in names:
        out.append(("lm_head.weight", model.get_input_embeddings().weight.detach()))
    return out


class VLLMBackend:
    """Offline vLLM engine serving the torch policy (see the module docstring).

    Parameters
    ----------
    model, tokenizer
        The torch policy and its tokenizer (saved once to ``model_dir`` for the engine to load).
    seed : int
        Seed of the per-request seeds.
    model_dir : path, optional
        Folder to save the policy into (default: a temporary folder removed with the backend).
    **llm_options
        Extra keyword arguments of ``vllm.LLM`` (e.g. ``gpu_memory_utilization=0.3``). Defaults:
        ``dtype`` of the policy, ``enforce_eager=True``, ``max_model_len`` = the model's
        ``max_position_embeddings``, ``logprobs_mode="processed_logprobs"``.
    """

    exact_logprobs = False
    name = "vllm"

    def __init__(self, model: Any, tokenizer: Any, *, seed: int = 0, model_dir: str | os.PathLike | None = None,
                 **llm_options: Any):
        vllm = require("vllm")
        torch = require("torch")
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.device = next(model.parameters()).device
        self.rng = np.random.default_rng(seed)
        self._tmp = None
        if model_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="robust-rollouts-vllm-")
            model_dir = self._tmp.name
        self.model_dir = str(model_dir)
        model.save_pretrained(self.model_dir)
        tokenizer.save_pretrained(self.model_dir)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        options = {
            "model": self.model_dir,
            "tokenizer": self.model_dir,
            "dtype": dtype,
            "enforce_eager": True,
            "seed": int(seed),
            "max_model_len": int(getattr(model.config, "max_position_embeddings", 2048)),
            "logprobs_mode": "processed_logprobs",
            "skip_tokenizer_init": False,
        }
        options.update(llm_options)
        self.llm = vllm.LLM(**options)
        self._torch = torch
        self._vllm = vllm

    # ------------------------------------------------------------------ protocol
    def sync_weights(self, model: Any) -> None:
        """Push the policy's current weights into the engine (``collective_rpc("reload_weights")``)."""
        self.model = model
        # CPU copies: the engine may live in another process, and pickled CPU tensors cross it safely
        weights = [(n, t.cpu()) for n, t in vllm_weights(model)]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})

    def reseed(self, seed: int) -> None:
        """Restart the generator of the per-request seeds from ``seed``."""
        self.rng = np.random.default_rng(seed)

    def state_dict(self) -> dict:
        return {"format": 1, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != 1:
            raise ValueError(f"unsupported vllm backend state format {state.get('format')!r}")
        self.rng.bit_generator.state = state["rng"]

    def _sampling_params(self, count: int, sampling: SamplingConfig, seed: int) -> Any:
        kwargs = {
            "n": int(count),
            "temperature": float(sampling.temperature),
            "top_p": float(sampling.top_p),
            "max_tokens": int(sampling.max_new_tokens),
            "logprobs": 0,
            "seed": int(seed),
            "skip_special_tokens": True,
        }
        if sampling.top_k > 0:
            kwargs["top_k"] = int(sampling.top_k)
        return self._vllm.SamplingParams(**kwargs)

    def generate(self, prompts: Sequence[Sequence[int]], counts: Any, sampling: SamplingConfig) -> RolloutBatch:
        """Sample ``counts[i]`` completions of each prompt with vLLM (see :class:`RolloutBatch`)."""
        torch = self._torch
        c = counts_iv(prompts, counts)
        sampling = sampling.validate()
        seeds = self.rng.integers(0, 2**31 - 1, size=c.size)
        params = [self._sampling_params(int(k), sampling, int(s)) for k, s in zip(c, seeds)]
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts]
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        if len(outputs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outputs)} request outputs for {len(prompts)} prompts")
        rows_tokens: list[list[int]] = []
        rows_logps: list[list[float]] = []
        group_ids = np.repeat(np.arange(len(prompts), dtype=np.int64), c)
        for i, out in enumerate(outputs):
            if len(out.outputs) != int(c[i]):
                raise RuntimeError(f"vLLM returned {len(out.outputs)} completions for prompt {i}, asked n={int(c[i])}")
            for comp in sorted(out.outputs, key=lambda o: o.index):
                ids = [int(t) for t in comp.token_ids]
                if not ids:
                    raise RuntimeError(f"vLLM returned an empty completion for prompt {i}")
                if comp.logprobs is None or len(comp.logprobs) != len(ids):
                    raise RuntimeError("vLLM did not return one log-prob per generated token (logprobs=0)")
                rows_tokens.append(ids)
                rows_logps.append([float(step[tok].logprob) for step, tok in zip(comp.logprobs, ids)])
        n = group_ids.size
        t_max = max(len(r) for r in rows_tokens)
        lp = max(len(p) for p in prompts)
        tokens = torch.full((n, t_max), self.pad_id, dtype=torch.long)
        logps = torch.zeros((n, t_max), dtype=torch.float32)
        cmask = torch.zeros((n, t_max), dtype=torch.float32)
        prompt_ids = torch.full((n, lp), self.pad_id, dtype=torch.long)
        prompt_mask = torch.zeros((n, lp), dtype=torch.long)
        for r, (g, ids, lps) in enumerate(zip(group_ids, rows_tokens, rows_logps)):
            p = prompts[int(g)]
            prompt_ids[r, lp - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            prompt_mask[r, lp - len(p) :] = 1
            tokens[r, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            logps[r, : len(ids)] = torch.as_tensor(lps, dtype=torch.float32)
            cmask[r, : len(ids)] = 1.0
        dev = self.device
        tokens, logps, cmask = tokens.to(dev), logps.to(dev), cmask.to(dev)
        prompt_ids, prompt_mask = prompt_ids.to(dev), prompt_mask.to(dev)
        input_ids = torch.cat([prompt_ids, tokens], dim=1)
        attention = torch.cat([prompt_mask, cmask.long()], dim=1)
        finished = np.array([ids[-1] == self.eos_id for ids in rows_tokens], dtype=bool)
        texts = decode_completions(self.tokenizer, tokens, cmask, self.eos_id)
        return RolloutBatch(input_ids, attention, lp, cmask, logps, group_ids, c, texts, finished)

    def close(self) -> None:
        """Release the engine and the temporary model folder."""
        self.llm = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
