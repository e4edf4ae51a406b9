"""Policy models: a tiny Qwen2/Llama built from a config (no download) or a local checkpoint, and a
short, seeded, disk-cached supervised warm start.

Why a warm start: with exact-match rewards an untrained model fails every rollout, so every group
is all-0, every GRPO advantage is 0 and nothing is learned. :func:`warm_start` runs a few hundred
steps of teacher-forced cross-entropy on the answers of examples drawn from the task's own
distribution (a different seed from the prompt pool), which leaves a tiny model with a *mixed*
success profile: easy prompts (one-digit sums) mostly right, hard ones (multi-digit products)
mostly wrong, many in between -- the regime where allocation and reweighting matter.

The result is cached as a ``.pt`` state dict under ``cache_dir`` (default
``$ROBUST_ROLLOUTS_CACHE`` or ``~/.cache/robust-rollouts``), keyed by a hash of everything that
determines it: the model config, the tokenizer's vocabulary, the task and its options, the warm
start settings and the seed. Training is deterministic on CPU for a fixed thread count, so a cache
hit equals a fresh run.

Needs the ``llm`` extra (torch, transformers).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from solvers._validation import check_finite_scalar, check_int_scalar

from ._deps import require
from .tasks import TASKS, Task
from .tokenizer import check_tokenizer_covers

__all__ = [
    "ARCHITECTURES",
    "ModelSpec",
    "WarmStartConfig",
    "WarmStartResult",
    "build_model",
    "load_model",
    "warm_start",
    "default_cache_dir",
    "prompt_embeddings",
    "count_parameters",
]

ARCHITECTURES = ("qwen2", "llama")
"""Architectures :func:`build_model` can build from a config."""


@dataclass(frozen=True)
class ModelSpec:
    """A tiny decoder-only transformer built from a config (no weights downloaded).

    Attributes
    ----------
    arch : {"qwen2", "llama"}
    hidden_size, num_layers, num_heads : int
        Width, depth and attention heads (``hidden_size`` divisible by ``num_heads``).
    num_kv_heads : int or None
        Grouped-query KV heads (default: ``num_heads``).
    intermediate_size : int or None
        MLP width (default ``4 * hidden_size``).
    max_positions : int
        Longest prompt + completion (positions).
    tie_embeddings : bool
        Share the input embedding and the output head (as small Qwen2 models do).
    """

    arch: str = "qwen2"
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int | None = None
    intermediate_size: int | None = None
    max_positions: int = 64
    tie_embeddings: bool = True

    def validate(self) -> ModelSpec:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"unknown model architecture {self.arch!r}; valid: {list(ARCHITECTURES)}")
        h = check_int_scalar(self.hidden_size, "hidden_size", lo=1)
        heads = check_int_scalar(self.num_heads, "num_heads", lo=1)
        check_int_scalar(self.num_layers, "num_layers", lo=1)
        check_int_scalar(self.max_positions, "max_positions", lo=2)
        if h % heads or (h // heads) % 2:
            raise ValueError(f"hidden_size {h} must be a multiple of num_heads {heads} with an even head size")
        kv = heads if self.num_kv_heads is None else check_int_scalar(self.num_kv_heads, "num_kv_heads", lo=1)
        if heads % kv:
            raise ValueError(f"num_heads {heads} must be a multiple of num_kv_heads {kv}")
        if self.intermediate_size is not None:
            check_int_scalar(self.intermediate_size, "intermediate_size", lo=1)
        return self


def _hf_config(spec: ModelSpec, tokenizer: Any) -> Any:
    transformers = require("transformers")
    cls = transformers.Qwen2Config if spec.arch == "qwen2" else transformers.LlamaConfig
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size or 4 * spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads or spec.num_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=spec.tie_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def build_model(spec: ModelSpec, tokenizer: Any, *, seed: int = 0) -> Any:
    """A freshly initialised ``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` (float32, CPU, eval mode off).

    The initialisation is seeded and leaves torch's global random state untouched (it runs inside
    ``torch.random.fork_rng``).
    """
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    spec.validate()
    s = check_int_scalar(seed, "seed", lo=0)
    torch = require("torch")
    transformers = require("transformers")
    config = _hf_config(spec, tokenizer)
    cls = transformers.Qwen2ForCausalLM if spec.arch == "qwen2" else transformers.LlamaForCausalLM
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        model = cls(config)
    return model.float()


def load_model(path: str | os.PathLike) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a *local* Hugging Face checkpoint folder.

    Nothing is downloaded (``local_files_only=True``); a missing folder raises ``ValueError``.
    """
    p = Path(path)
    if not p.is_dir():
        raise ValueError(f"model path {str(path)!r} is not a local checkpoint folder")
    transformers = require("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(p, local_files_only=True)
    model = transformers.AutoModelForCausalLM.from_pretrained(p, local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model.float(), tok


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# warm start
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarmStartConfig:
    """Settings of the supervised warm start (defaults: about 10-20 s on one CPU thread for the
    default tiny model).

    Attributes
    ----------
    steps : int >= 0
        Optimiser steps (0 disables the warm start).
    batch_size : int
    lr : float
        Peak AdamW learning rate (linear warm-up over 5 % of the steps, then cosine decay to 10 %).
    n_examples : int
        Size of the training set drawn from the task's distribution.
    seed : int
        Seed of the training set and the batch order (the model initialisation has its own seed).
    """

    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    n_examples: int = 8192
    seed: int = 0

    def validate(self) -> WarmStartConfig:
        check_int_scalar(self.steps, "warm_start.steps", lo=0)
        check_int_scalar(self.batch_size, "warm_start.batch_size", lo=1)
        check_finite_scalar(self.lr, "warm_start.lr", lo=0.0, lo_open=True)
        check_int_scalar(self.n_examples, "warm_start.n_examples", lo=1)
        check_int_scalar(self.seed, "warm_start.seed", lo=0)
        return self


@dataclass(frozen=True)
class WarmStartResult:
    """What :func:`warm_start` did: cache file, whether it was a hit, seconds and the loss curve."""

    path: Path | None
    from_cache: bool
    seconds: float
    losses: tuple[float, ...]


WARM_START_DATA_OFFSET = 1_000_003
"""The warm start draws ``n_examples`` examples with seed ``warm.seed + WARM_START_DATA_OFFSET``
(a stream distinct from the prompt pool's seed)."""


def default_cache_dir() -> Path:
    """``$ROBUST_ROLLOUTS_CACHE`` if set, else ``~/.cache/robust-rollouts``."""
    env = os.environ.get("ROBUST_ROLLOUTS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "robust-rollouts"


def _cache_key(model: Any, tokenizer: Any, task: Task, warm: WarmStartConfig, init_seed: int) -> str:
    torch = require("torch")
    cfg = model.config.to_dict()
    cfg = {k: v for k, v in cfg.items() if k not in ("transformers_version", "_name_or_path", "torch_dtype",
                                                     "dtype", "architectures")}
    payload = {
        "format": 1,
        "model": cfg,
        "vocab": sorted(tokenizer.get_vocab().items()),
        "task": task.name,
        "task_options": task.options,
        "warm": asdict(warm),
        "init_seed": init_seed,
        "torch": torch.__version__.split("+")[0],
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _supervised_batches(tokenizer: Any, task: Task, warm: WarmStartConfig):
    """Right-padded ``(input_ids, labels)`` of the warm-start set; labels cover answer + eos only."""
    torch = require("torch")
    spec = TASKS[task.name]
    examples = list(spec.examples(warm.n_examples, warm.seed + WARM_START_DATA_OFFSET, **task.options))
    text = "".join(e.prompt + e.answer for e in examples)
    check_tokenizer_covers(tokenizer, text, what=f"the warm-start examples of task {task.name!r}")
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    answers = tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    length = max(len(p) + len(a) + 1 for p, a in zip(prompts, answers))
    ids = torch.full((len(examples), length), pad, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        seq = p + a + [eos]
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(a + [eos])
    return ids, labels


def warm_start(model: Any, tokenizer: Any, task: Task, warm: WarmStartConfig | None = None, *,
               init_seed: int = 0, cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
               progress: bool = False) -> WarmStartResult:
    """Supervised warm start of ``model`` in place (teacher-forced cross-entropy on the answers).

    Parameters
    ----------
    model, tokenizer
        From :func:`build_model` (or :func:`load_model`). Modified in place.
    task : Task
        Its registered ``examples`` function draws the training set (``warm.n_examples``
        examples, seed ``warm.seed + WARM_START_DATA_OFFSET``).
    warm : WarmStartConfig
    init_seed : int
        The seed the model was initialised with (part of the cache key).
    cache_dir : path, optional
        Folder of cached results (default :func:`default_cache_dir`).
    use_cache : bool
        Read and write the cache (False: always train, write nothing).

    Returns
    -------
    WarmStartResult
    """
    warm = (warm or WarmStartConfig()).validate()
    torch = require("torch")
    if warm.steps == 0:
        return WarmStartResult(None, False, 0.0, ())
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"warm-{_cache_key(model, tokenizer, task, warm, init_seed)}.pt"
    if not use_cache:
        seconds, losses = _train_warm(model, tokenizer, task, warm, progress)
        return WarmStartResult(None, False, seconds, tuple(losses.tolist()))
    if path.is_file():
        return _load_warm(model, path)
    with _cache_lock(folder, path.stem):  # concurrent workers: one trains, the others wait and load
        if path.is_file():
            return _load_warm(model, path)
        seconds, losses = _train_warm(model, tokenizer, task, warm, progress)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"model": model.state_dict(), "losses": torch.from_numpy(losses)}, tmp)
        os.replace(tmp, path)  # atomic: concurrent runs never read a half-written file
    return WarmStartResult(path, False, seconds, tuple(losses.tolist()))


def _load_warm(model: Any, path: Path) -> WarmStartResult:
    torch = require("torch")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    return WarmStartResult(path, True, 0.0, tuple(blob["losses"].tolist()))


@contextmanager
def _cache_lock(folder: Path, stem: str):
    """An exclusive advisory lock on ``folder/<stem>.lock`` (POSIX ``flock``; no lock elsewhere), so
    that processes warm-starting the same model concurrently train it once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{stem}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _train_warm(model: Any, tokenizer: Any, task: Task, warm: WarmStartConfig, progress: bool) -> tuple[float, np.ndarray]:
    """The warm start itself: ``(seconds, losses)``."""
    torch = require("torch")
    t0 = time.perf_counter()
    ids, labels = _supervised_batches(tokenizer, task, warm)
    attn = ids != tokenizer.pad_token_id  # right padding: pads come after every label
    rng = np.random.default_rng(warm.seed)
    gen_params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(gen_params, lr=warm.lr, weight_decay=0.0)
    warmup = max(1, warm.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return warm.lr * (step + 1) / warmup
        frac = (step - warmup) / max(1, warm.steps - warmup)
        return warm.lr * (0.1 + 0.9 * 0.5 * (1.0 + np.cos(np.pi * frac)))

    losses = np.empty(warm.steps)
    model.train()
    bar = _progress(warm.steps, "warm start") if progress else None
    n = ids.shape[0]
    order = rng.permutation(n)
    cursor = 0
    for step in range(warm.steps):
        if cursor + warm.batch_size > n:
            order, cursor = rng.permutation(n), 0
        idx = torch.from_numpy(order[cursor : cursor + warm.batch_size])
        cursor += warm.batch_size
        b_ids, b_lab, b_att = ids[idx], labels[idx], attn[idx]
        keep = int(b_att.sum(dim=1).max())  # trim trailing all-pad columns
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        out = model(input_ids=b_ids[:, :keep], attention_mask=b_att[:, :keep].long(), labels=b_lab[:, :keep])
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(gen_params, 1.0)
        opt.step()
        losses[step] = float(out.loss.detach())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[step]:.3f}")
    if bar is not None:
        bar.close()
    return time.perf_counter() - t0, losses


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the llm extra
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def prompt_embeddings(model: Any, tokenizer: Any, prompts: list[str], *, batch_size: int = 256) -> np.ndarray:
    """Mean final hidden state of ``model`` over each prompt's tokens, shape (n, hidden) float64.

    The fallback embedding for tasks whose examples carry no features (GP predictor input).
    """
    torch = require("torch")
    out = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            enc = tokenizer(chunk, add_special_tokens=False, padding=True, return_tensors="pt")
            mask = enc["attention_mask"]
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            h = model.model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=pos).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1)).double().numpy())
    model.train(was_training)
    return np.concatenate(out, axis=0)
