"""The GRPO trainer: a readable loop over a real transformer with a different number of rollouts
per prompt, decided each step by a controller of :mod:`bandits.controllers`.

One step (:meth:`Trainer.step_once`), in this order:

1. ``plan = controller.plan(prompt_ids)`` -- rollouts per prompt and advantage multipliers;
2. ``backend.generate(prompts, counts, sampling)`` -- a ragged :class:`~llm_bridge.RolloutBatch`,
   and ``task.verify`` -- rewards in [0, 1];
3. a controller that samples in rounds (Reinforce-Ada, DAPO dynamic sampling, AR3PO) is asked
   for more (``controller.extend`` with every rollout so far) and 2 runs again for the prompts it
   names, until it asks for none; every round comes out of the step's budget
   ``prompts_per_step * mean_budget``. Then the controller's training selection
   (:class:`bandits.controllers.TrainSelection`) says which rollouts enter the gradient. Steps
   1-3 are :func:`bandits.controllers.sample_step` around the backend
   (:func:`llm_bridge.rounds.drive_step`); a single-round controller gets exactly one generation
   call with the whole batch, as a plain plan -> generate loop would;
4-6. the training batch (:func:`llm_bridge.rounds.training_batch`) holds the selected rollouts:
   a dropped group (none of its rollouts selected, e.g. an all-equal group under DAPO or GRESO) is
   not in it at all, a skipped prompt (0 rollouts) neither, and a prompt flagged for reuse gets
   the most recent correct completion the trainer saw for it at an earlier step (AR3PO; reward 1,
   old log-probs under the current policy; no rollout spent). On it, the one robust step
   (:class:`llm_bridge.robust_step.RobustAdvantage`, shared with the TRL and verl adapters):
   optional shaping (DRRO eq. 4.14/4.15 or DRO) with the sampler's sequence log-probs, advantages
   of the configured kind over the ragged groups (the papers' GRPO / Dr.GRPO / RLOO, or a host's
   convention) -- or ``r - b`` with the controller's per-prompt baselines ``b`` when its
   selection gives them (Reinforce-Ada) -- times each prompt's ``plan.multipliers``
   (Prompt-GDRO, eq. 17);
7. ``ppo_epochs`` passes of minibatch updates of the clipped surrogate (+ optional k3 KL penalty);
   a step whose every group was dropped makes no update;
8. ``controller.observe(prompt_ids, counts, rewards, group_ids)`` with *every* generated rollout
   of every round (dropped groups included).

Each step appends one JSON line to ``<out>/metrics.jsonl``: prompt-averaged accuracy, pass@k and
reward over every generated rollout (:func:`llm_bridge.metrics.success_metrics`; skipped prompts
left out), KL to the reference, token entropy, clip fraction, gradient norm, rollouts per prompt,
and the wall time of every phase. The compute of the step counts every round: ``rollouts``
(generated, dropped groups included; ``budget`` is the most the step may spend),
``tokens_generated``, ``rounds``; beside it what was trained on: ``rollouts_trained``,
``tokens_trained``, ``groups_trained``, ``groups_dropped``, ``prompts_skipped``,
``responses_reused``, and the generated groups without reward spread (``groups_all_equal``,
``rollouts_all_equal``: rollouts that carry no group-relative signal). ``bridge_overhead_s`` is the time spent outside generation, verification,
log-prob passes and the optimiser (allocation and rounds' decisions, shaping, advantages,
controller updates, bookkeeping).

Checkpoints (:meth:`Trainer.save_checkpoint`) hold the model, the optimiser, the reference model,
every random state (prompt sampling, minibatch order, the sampler's generator), the controller's
``state_dict``, the bank of correct completions kept for response reuse
(:class:`llm_bridge.rounds.ResponseBank`) and the step; resuming (:meth:`Trainer.from_checkpoint`) continues bit-identically.
A checkpoint written under another configuration is refused with the differing settings named.

Old log-probs: with the ``hf`` backend (exact log-probs) and no top-k/top-p filtering the
sampler's token log-probs *are* the policy's log-probs at sampling time and are used directly;
otherwise (``vllm``, filtering, or ``recompute_old_logprobs=True``) they are recomputed with one
no-grad forward pass of the policy before the update.

Shaping budget with uneven groups: the DRRO paper's scaled budget ``delta-tilde = (G / n) delta``
(Sec. 4.5) is linear in the group size ``G``; with ``shaping_scale_by_group_size`` (the default)
``shaping_delta`` is the budget of a group of ``mean_budget`` rollouts and a group of ``n_g``
rollouts gets ``shaping_delta * n_g / mean_budget`` (the paper's fixed setting ``2.5 G`` is
``shaping_delta = 2.5 * mean_budget``); without it every group gets ``shaping_delta``. With
``shaping_alpha > 0`` the budget is dynamic, eq. (4.17): ``shaping_delta + alpha * KL`` (same
scaling), KL the k3 estimate of the sampler's drift from the reference, averaged over the last
:data:`llm_bridge.robust_step.DEFAULT_KL_WINDOW` = 20 steps (the paper's window).

Needs the ``llm`` extra.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from bandits.controllers import Controller, check_controller, close_step
from solvers import k3_kl
from solvers._validation import check_finite_scalar, check_int_scalar

from ._deps import require
from .advantage_kinds import ADVANTAGE_KINDS
from .batch import policy_token_logprobs
from .generation import BACKENDS, SamplingConfig, make_backend
from .losses import AGGREGATIONS, aggregate, clipped_policy_loss, k3_token_kl
from .metrics import success_metrics
from .models import (
    WARM_START_DATA_OFFSET,
    ModelSpec,
    WarmStartConfig,
    build_model,
    count_parameters,
    load_model,
    prompt_embeddings,
    warm_start,
)
from .robust_step import DEFAULT_KL_WINDOW, SHAPINGS, RobustAdvantage, Shaping
from .rounds import ResponseBank, check_round_controller, drive_step, merge_rollouts, training_batch
from .tasks import TASKS, make_task
from .tokenizer import char_tokenizer, check_tokenizer_covers, encode_prompts

__all__ = ["COMPUTE_PHASES", "OVERHEAD_PHASES", "TrainConfig", "Trainer"]

CHECKPOINT_FORMAT = "robust-rollouts.trainer"
CHECKPOINT_VERSION = 1
KL_WINDOW = DEFAULT_KL_WINDOW  # DRRO appendix: the k3 KL is smoothed over a sliding window of 20 updates

COMPUTE_PHASES = ("sync", "generate", "verify", "logprobs", "update")
"""Phases that are the training step itself (model and verifier work)."""
OVERHEAD_PHASES = ("plan", "advantages", "observe", "bookkeeping")
"""Phases that are the bridge's overhead (allocation, shaping + advantages + multipliers,
controller updates, everything else: prompt sampling, tensor assembly, metrics)."""

# settings that do not change the training trajectory (excluded from the configuration fingerprint)
_NON_TRAJECTORY = ("steps", "eval_every", "eval_samples", "cache_dir")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (see the module docstring for the semantics).

    Task: ``task`` (a name in :data:`llm_bridge.TASKS`), ``task_options``, ``n_prompts`` (pool
    size), ``prompts_per_step``. Model: ``model`` (:class:`~llm_bridge.ModelSpec`) or
    ``model_path`` (a local checkpoint), ``warm_start`` (:class:`~llm_bridge.WarmStartConfig`),
    ``cache_dir``. Controller: ``controller`` (a name in ``bandits.controllers.CONTROLLERS``),
    ``controller_options``, ``mean_budget``, ``lower``, ``upper``. Generation: ``backend``
    (``"hf"`` / ``"vllm"``), ``backend_options``, ``sampling``, ``device``. Objective:
    ``advantage`` (a name of :data:`llm_bridge.advantage_kinds.ADVANTAGE_KINDS`: grpo / drgrpo /
    rloo, or a host's convention), ``shaping`` (none / drro / dro), ``shaping_delta``,
    ``shaping_tau`` (None = hard rule), ``shaping_alpha``, ``shaping_scale_by_group_size``, ``kl_coef``, ``clip_eps``, ``clip_eps_high``,
    ``aggregation``, ``ppo_epochs``, ``minibatch_size`` (rollouts; 0 = the whole batch), ``lr``,
    ``max_grad_norm``, ``recompute_old_logprobs`` (None = automatic), ``reference`` (keep a frozen
    copy of the initial model for the KL metric / penalty). Run: ``steps``, ``seed``,
    ``eval_every`` (0 = off), ``eval_samples``, ``pass_k``.
    """

    task: str = "arithmetic"
    task_options: dict = field(default_factory=dict)
    n_prompts: int = 64
    prompts_per_step: int = 16
    model: ModelSpec = field(default_factory=ModelSpec)
    model_path: str | None = None
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    cache_dir: str | None = None
    controller: str = "uniform"
    controller_options: dict = field(default_factory=dict)
    mean_budget: int = 8
    lower: int = 2
    upper: int = 16
    backend: str = "hf"
    backend_options: dict = field(default_factory=dict)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    device: str = "cpu"
    advantage: str = "grpo"
    shaping: str = "none"
    shaping_delta: float = 0.0
    shaping_tau: float | None = None
    shaping_alpha: float = 0.0
    shaping_scale_by_group_size: bool = True
    kl_coef: float = 0.0
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    aggregation: str = "token-mean"
    ppo_epochs: int = 1
    minibatch_size: int = 64
    lr: float = 3e-4
    max_grad_norm: float = 1.0
    recompute_old_logprobs: bool | None = None
    reference: bool = True
    steps: int = 50
    seed: int = 0
    eval_every: int = 0
    eval_samples: int = 8
    pass_k: int = 4

    # -------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        """Plain JSON-able dict (nested specs as dicts)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error naming them)."""
        if not isinstance(data, dict):
            raise TypeError(f"config must be a dict, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; valid: {sorted(names)}")
        d = dict(data)
        for key, typ in (("model", ModelSpec), ("warm_start", WarmStartConfig), ("sampling", SamplingConfig)):
            if isinstance(d.get(key), dict):
                d[key] = typ(**d[key])
        return cls(**d)

    def fingerprint(self) -> dict:
        """The settings that determine the trajectory (everything but steps, evaluation, cache)."""
        d = self.to_dict()
        for k in _NON_TRAJECTORY:
            d.pop(k, None)
        return d

    def validate(self) -> TrainConfig:
        """Check names and ranges; raise ``ValueError``/``TypeError`` naming the setting."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; valid tasks: {sorted(TASKS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; valid backends: {list(BACKENDS)}")
        if self.advantage not in ADVANTAGE_KINDS:
            raise ValueError(f"unknown advantage {self.advantage!r}; valid: {sorted(ADVANTAGE_KINDS)}")
        if self.shaping not in SHAPINGS:
            raise ValueError(f"unknown shaping {self.shaping!r}; valid: {list(SHAPINGS)}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown loss aggregation {self.aggregation!r}; valid: {list(AGGREGATIONS)}")
        if not isinstance(self.device, str) or self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")
        for name in ("task_options", "controller_options", "backend_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        n = check_int_scalar(self.n_prompts, "n_prompts", lo=1)
        m = check_int_scalar(self.prompts_per_step, "prompts_per_step", lo=1)
        if m > n:
            raise ValueError(f"prompts_per_step {m} exceeds the pool size n_prompts={n}")
        check_int_scalar(self.mean_budget, "mean_budget", lo=1)
        check_int_scalar(self.lower, "lower", lo=1)
        check_int_scalar(self.upper, "upper", lo=1)
        check_finite_scalar(self.shaping_delta, "shaping_delta", lo=0.0)
        check_finite_scalar(self.shaping_alpha, "shaping_alpha", lo=0.0)
        if self.shaping_tau is not None:
            check_finite_scalar(self.shaping_tau, "shaping_tau", lo=0.0, lo_open=True)
        check_finite_scalar(self.kl_coef, "kl_coef", lo=0.0)
        check_finite_scalar(self.clip_eps, "clip_eps", lo=0.0, lo_open=True)
        if self.clip_eps_high is not None:
            check_finite_scalar(self.clip_eps_high, "clip_eps_high", lo=0.0, lo_open=True)
        check_int_scalar(self.ppo_epochs, "ppo_epochs", lo=1)
        check_int_scalar(self.minibatch_size, "minibatch_size", lo=0)
        check_finite_scalar(self.lr, "lr", lo=0.0, lo_open=True)
        check_finite_scalar(self.max_grad_norm, "max_grad_norm", lo=0.0, lo_open=True)
        check_int_scalar(self.steps, "steps", lo=0)
        check_int_scalar(self.seed, "seed", lo=0)
        check_int_scalar(self.eval_every, "eval_every", lo=0)
        check_int_scalar(self.eval_samples, "eval_samples", lo=1)
        check_int_scalar(self.pass_k, "pass_k", lo=1)
        if (self.kl_coef > 0 or self.shaping_alpha > 0) and not self.reference:
            raise ValueError("kl_coef > 0 and shaping_alpha > 0 need the reference model (reference=True)")
        if self.shaping_alpha > 0 and self.shaping == "none":
            raise ValueError("shaping_alpha > 0 (dynamic budget) needs shaping='drro' or 'dro'")
        if not isinstance(self.shaping_scale_by_group_size, bool):
            raise TypeError(f"shaping_scale_by_group_size must be a bool, got {self.shaping_scale_by_group_size!r}")
        self.model.validate()
        self.warm_start.validate()
        self.sampling.validate()
        return self


# ------------------------------------------------------------------------------------ helpers
class _PhaseTimer:
    """Wall time per named phase of one step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0


def _encode(obj: Any) -> Any:
    """JSON-able, bit-exact encoding of nested states (NumPy arrays as base64 + dtype + shape)."""
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {"__ndarray__": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": arr.dtype.str,
                "shape": list(arr.shape)}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            raw = base64.b64decode(obj["__ndarray__"])
            return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested plain dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} ({a!r} in the checkpoint, {b!r} here)"]


def warm_start_alphabet(task: Any, warm: WarmStartConfig) -> str:
    """Characters of the task's warm-start examples (a char tokenizer must cover them too)."""
    if warm.steps == 0:
        return ""
    ex = TASKS[task.name].examples(warm.n_examples, warm.seed + WARM_START_DATA_OFFSET, **task.options)
    return "".join(sorted(set("".join(e.prompt + e.answer for e in ex))))


# ------------------------------------------------------------------------------------ trainer
class Trainer:
    """GRPO training of a causal LM on a verifiable task with a rollout controller.

    Parameters
    ----------
    config : TrainConfig
    out_dir : path, optional
        Where ``metrics.jsonl`` and ``config.json`` are written (nothing is written if None).
    progress : bool
        Show a progress bar in :meth:`train`.
    controller : object, optional
        A ready controller (``plan``/``observe``/``state_dict``/``load_state_dict``) used instead
        of ``make_controller(config.controller, ...)``.

    Attributes
    ----------
    task, tokenizer, model, reference, backend, controller, optimizer
    step : int
        Completed steps.
    history : list of dict
        The metrics of every step (and evaluation) of this process.
    """

    def __init__(self, config: TrainConfig, *, out_dir: str | os.PathLike | None = None, progress: bool = False,
                 controller: Any = None, _initial_weights: bool = True, _embeddings: Any = None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config.validate()
        torch = require("torch")
        self._torch = torch
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device {config.device!r} requested but torch sees no CUDA device")
        self.device = torch.device(config.device)
        self.progress = bool(progress)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        seeds = np.random.SeedSequence(config.seed).spawn(5)
        self.rng_prompts = np.random.default_rng(seeds[0])
        self.rng_minibatch = np.random.default_rng(seeds[1])
        controller_seed = int(seeds[2].generate_state(1)[0])
        backend_seed = int(seeds[3].generate_state(1)[0]) & 0x7FFFFFFF
        self._eval_seed = int(seeds[4].generate_state(1)[0]) & 0x7FFFFFFF

        # task, tokenizer, model
        self.task = make_task(config.task, n_prompts=config.n_prompts, seed=config.seed, **config.task_options)
        if config.model_path is not None:
            self.model, self.tokenizer = load_model(config.model_path)
        else:
            self.tokenizer = char_tokenizer(self.task.alphabet + warm_start_alphabet(self.task, config.warm_start))
            self.model = build_model(config.model, self.tokenizer, seed=config.seed)
        check_tokenizer_covers(self.tokenizer, self.task.alphabet, what=f"task {config.task!r}")
        self.warm_result = None
        if _initial_weights and config.warm_start.steps > 0:
            self.warm_result = warm_start(self.model, self.tokenizer, self.task, config.warm_start,
                                          init_seed=config.seed, cache_dir=config.cache_dir, progress=progress)
        self.model.to(self.device)
        self.model.train()
        self.reference = None
        if config.reference:
            self.reference = copy.deepcopy(self.model).eval()
            for p in self.reference.parameters():
                p.requires_grad_(False)
        self.prompt_tokens = encode_prompts(self.tokenizer, self.task.prompts)
        self.embeddings = self.task.embeddings
        if _embeddings is not None:  # resuming: the embeddings the run started with
            self.embeddings = np.asarray(_embeddings, dtype=np.float64)
        elif self.embeddings is None:  # no task features: mean hidden state of the initial model
            self.embeddings = prompt_embeddings(self.model, self.tokenizer, self.task.prompts)

        # controller, backend, optimiser
        if controller is None:
            from bandits.controllers import controller_options, make_controller

            opts = dict(config.controller_options)
            if "embeddings" in controller_options(config.controller) and "embeddings" not in opts:
                opts["embeddings"] = self.embeddings
            if config.controller == "oracle" and "true_success" not in opts:
                raise ValueError("controller 'oracle' needs true success probabilities (true_success=), which a "
                                 "real task does not have: it is for the simulator only")
            controller = make_controller(config.controller, n_prompts=config.n_prompts,
                                         mean_budget=config.mean_budget, lower=config.lower, upper=config.upper,
                                         seed=controller_seed, **opts)
        self.controller = check_controller(controller)
        check_round_controller(self.controller)
        self.bank = ResponseBank(config.n_prompts)  # correct completions for response reuse (AR3PO)
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.backend = make_backend(config.backend, self.model, self.tokenizer, seed=backend_seed,
                                    **config.backend_options)
        self.recompute_old = (config.recompute_old_logprobs if config.recompute_old_logprobs is not None
                              else (not self.backend.exact_logprobs or config.sampling.filtered))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=(0.9, 0.99), eps=1e-8,
                                           weight_decay=0.0)
        self.step = 0
        self.robust = RobustAdvantage(config.advantage, self.shaping_spec(config))
        self.history: list[dict] = []
        self.n_parameters = count_parameters(self.model)
        self._warm_up_kernels()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    @staticmethod
    def shaping_spec(config: TrainConfig) -> Shaping | None:
        """The robust step's :class:`~llm_bridge.robust_step.Shaping` of a configuration."""
        if config.shaping == "none":
            return None
        return Shaping(config.shaping, delta=config.shaping_delta, tau=config.shaping_tau,
                       kl_alpha=config.shaping_alpha if config.shaping_alpha > 0 else None, kl_window=KL_WINDOW,
                       reference_group_size=config.mean_budget if config.shaping_scale_by_group_size else None)

    @property
    def kl_history(self) -> list[float]:
        """The k3 KL estimates of the dynamic budget's window (held by the robust step)."""
        return self.robust.kl_history

    def _warm_up_kernels(self) -> None:
        """Run the NumPy/Numba bridge code once on a dummy batch, so that JIT compilation (or
        loading compiled code from Numba's cache) is not charged to the first step's overhead."""
        cfg = self.config
        r, g, lp = np.array([0.0, 1.0, 1.0]), np.array([0, 0, 1]), np.array([-1.0, -2.0, -3.0])
        RobustAdvantage(cfg.advantage, self.shaping_spec(cfg))(r, g, multipliers=np.ones(2), seq_logprobs=lp)
        success_metrics(r, g, 2, k=1)
        k3_kl(lp, lp)

    # ------------------------------------------------------------------ one step
    def _sample_prompts(self) -> np.ndarray:
        return np.sort(self.rng_prompts.choice(self.config.n_prompts, size=self.config.prompts_per_step,
                                               replace=False)).astype(np.int64)

    def _generate_round(self, timer: _PhaseTimer) -> Any:
        """The generator of one round (the ``generate`` of :func:`bandits.controllers.sample_step`):
        sample ``counts[i]`` completions of prompt ``ids[i]`` and verify them."""
        cfg = self.config

        def generate(ids: np.ndarray, counts: np.ndarray):
            with timer("generate"):
                batch = self.backend.generate([self.prompt_tokens[q] for q in ids], counts, cfg.sampling)
            with timer("verify"):
                rewards = np.asarray(self.task.verify(ids[batch.group_ids], batch.texts), dtype=np.float64)
            return rewards, batch.group_ids, batch

        return generate

    def step_once(self) -> dict:
        """Run one training step (see the module docstring) and return its metrics."""
        torch = self._torch
        cfg = self.config
        timer = _PhaseTimer()
        t_start = time.perf_counter()
        prompt_ids = self._sample_prompts()
        t_plan = time.perf_counter()
        step = drive_step(self.controller, prompt_ids, self._generate_round(timer))
        # plan, every extension and the selection: the time of the step's rounds less generation and verification
        timer.seconds["plan"] = max(0.0, time.perf_counter() - t_plan - timer.seconds.get("generate", 0.0)
                                    - timer.seconds.get("verify", 0.0))
        counts = step.counts
        multipliers = np.asarray(step.plan.multipliers, dtype=np.float64)
        merged = merge_rollouts(step, self.pad_id)
        tb = training_batch(merged, step, self.bank, self.prompt_tokens, self.pad_id)
        adv = upd = None
        kl_seq = kl_tok = None
        tokens_trained = 0
        if tb.batch is not None:
            batch = tb.batch
            lp = batch.prompt_length
            mask = batch.completion_mask
            tokens_trained = int(mask.sum().item())
            with timer("logprobs"), torch.no_grad():
                if self.recompute_old:
                    old, _ = policy_token_logprobs(self.model, batch.input_ids, batch.attention_mask, lp,
                                                   temperature=cfg.sampling.temperature)
                    old = old * mask
                else:
                    old = batch.token_logprobs
                    if tb.reused.any():  # a reused response: its log-probs under the current policy
                        rows = torch.as_tensor(np.flatnonzero(tb.reused), device=self.device)
                        fresh, _ = policy_token_logprobs(self.model, batch.input_ids[rows],
                                                         batch.attention_mask[rows], lp,
                                                         temperature=cfg.sampling.temperature)
                        old = old.clone()
                        old[rows] = fresh * mask[rows]
                ref = None
                if self.reference is not None:
                    ref, _ = policy_token_logprobs(self.reference, batch.input_ids, batch.attention_mask, lp,
                                                   temperature=cfg.sampling.temperature)
                    ref = ref * mask
            seq_old = (old.double() * mask.double()).sum(dim=1).cpu().numpy()
            seq_ref = None
            if ref is not None:
                seq_ref = (ref.double() * mask.double()).sum(dim=1).cpu().numpy()
                kl_seq = float(k3_kl(seq_ref, seq_old).mean)
            with timer("advantages"):
                adv = self.robust(tb.rewards, batch.group_ids, n_groups=tb.positions.size,
                                  multipliers=multipliers[tb.positions],
                                  seq_logprobs=seq_old if cfg.shaping != "none" else None, ref_seq_logprobs=seq_ref,
                                  baselines=tb.baselines)
                adv_t = torch.as_tensor(adv.advantages, dtype=torch.float32, device=self.device)
            with timer("update"):
                upd = self._update(batch, old, ref, adv_t)
            if ref is not None:
                kl_tok = float((k3_token_kl(old, ref) * mask).sum().item() / max(tokens_trained, 1))
        with timer("sync"):
            self.backend.sync_weights(self.model)
        with timer("observe"):
            if isinstance(self.controller, Controller):
                close_step(self.controller, step)
            else:
                self.controller.observe(prompt_ids, counts, step.rewards, step.group_ids)
            self.bank.record(prompt_ids, merged, step.rewards)
        self.step += 1
        # bookkeeping (counted in the overhead: everything outside the timed phases)
        sampled = np.flatnonzero(counts > 0)
        if sampled.size == counts.size:
            succ = success_metrics(step.rewards, step.group_ids, counts.size, k=cfg.pass_k)
        else:  # prompts a controller skipped have no rollouts: metrics over the sampled ones
            where = np.full(counts.size, -1, dtype=np.int64)
            where[sampled] = np.arange(sampled.size)
            succ = success_metrics(step.rewards, where[step.group_ids], sampled.size, k=cfg.pass_k)
        tokens = int(merged.completion_mask.sum().item())
        n_train = 0 if tb.batch is None else tb.batch.n_rollouts
        lo = np.full(counts.size, np.inf)
        hi = np.full(counts.size, -np.inf)
        np.minimum.at(lo, step.group_ids, step.rewards)
        np.maximum.at(hi, step.group_ids, step.rewards)
        all_equal = (counts > 0) & (lo == hi)  # no reward spread: a zero group-relative advantage
        total = time.perf_counter() - t_start
        phases = dict(timer.seconds)
        phases["bookkeeping"] = max(0.0, total - sum(phases.values()))
        nonzero = 0 if adv is None else int(np.unique(tb.batch.group_ids[adv.advantages != 0]).size)
        record = {
            "step": self.step,
            **succ,
            "kl_ref": kl_tok,
            "kl_ref_seq": kl_seq,
            "entropy": None if upd is None else upd["entropy"],
            "loss": None if upd is None else upd["loss"],
            "clip_fraction": None if upd is None else upd["clip_fraction"],
            "approx_kl_old": None if upd is None else upd["approx_kl"],
            "grad_norm": 0.0 if upd is None else upd["grad_norm"],
            "n_updates": 0 if upd is None else upd["n_updates"],
            "shaping_delta_mean": (float(np.mean(adv.group_delta)) if adv is not None and adv.group_delta is not None
                                   else None),
            "adv_abs_mean": 0.0 if adv is None else float(np.abs(adv.advantages).mean()),
            "adv_nonzero_groups": nonzero,
            "rollouts": int(counts.sum()),
            "counts_min": int(counts.min()),
            "counts_max": int(counts.max()),
            "prompt_ids": prompt_ids.tolist(),
            "counts": counts.tolist(),
            "multipliers": [round(float(x), 6) for x in multipliers],
            "tokens_generated": tokens,
            "completion_len_mean": tokens / max(1, merged.n_rollouts),
            "finished_frac": float(np.asarray(merged.finished).mean()),
            "rounds": len(step.rounds),
            "budget": int(step.budget),
            "rollouts_trained": n_train,
            "tokens_trained": tokens_trained,
            "groups_trained": int(tb.positions.size),
            "groups_dropped": int(sampled.size - np.intersect1d(sampled, tb.positions).size),
            "prompts_skipped": int(counts.size - sampled.size),
            "responses_reused": tb.n_reused,
            "groups_all_equal": int(all_equal.sum()),
            "rollouts_all_equal": int(counts[all_equal].sum()),
            **{f"time_{k}_s": v for k, v in phases.items()},
            "time_step_s": total,
            "bridge_overhead_s": sum(phases.get(k, 0.0) for k in OVERHEAD_PHASES),
        }
        record["bridge_overhead_frac"] = record["bridge_overhead_s"] / total if total > 0 else 0.0
        self._emit(record)
        if cfg.eval_every and self.step % cfg.eval_every == 0:
            self._emit({"step": self.step, **self.evaluate()})
        return record

    def _update(self, batch: Any, old: Any, ref: Any, adv_t: Any) -> dict:
        torch = self._torch
        cfg = self.config
        n = batch.n_rollouts
        size = cfg.minibatch_size or n
        lp = batch.prompt_length
        mask_all = batch.completion_mask
        losses, clips, akl, gnorms, ents = [], [], [], [], []
        ent_tokens = 0
        self.model.train()
        for epoch in range(cfg.ppo_epochs):
            order = self.rng_minibatch.permutation(n)
            for start in range(0, n, size):
                idx = torch.as_tensor(order[start : start + size], device=self.device)
                mask = mask_all[idx]
                t_eff = int(mask.sum(dim=0).nonzero().max().item()) + 1  # drop all-padding columns
                mask = mask[:, :t_eff]
                ids = batch.input_ids[idx, : lp + t_eff]
                att = batch.attention_mask[idx, : lp + t_eff]
                logp, ent = policy_token_logprobs(self.model, ids, att, lp, temperature=cfg.sampling.temperature,
                                                  with_entropy=epoch == 0)
                pl = clipped_policy_loss(logp, old[idx, :t_eff], adv_t[idx], mask, clip_eps=cfg.clip_eps,
                                         clip_eps_high=cfg.clip_eps_high, aggregation=cfg.aggregation)
                loss = pl.loss
                if cfg.kl_coef > 0:
                    loss = loss + cfg.kl_coef * aggregate(k3_token_kl(logp, ref[idx, :t_eff]), mask, cfg.aggregation)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                losses.append(float(loss.detach()))
                clips.append(pl.clip_fraction)
                akl.append(pl.approx_kl)
                gnorms.append(float(gn))
                if ent is not None:
                    ents.append(float((ent * mask).sum()))
                    ent_tokens += float(mask.sum())
        return {
            "loss": float(np.mean(losses)),
            "clip_fraction": float(np.mean(clips)),
            "approx_kl": float(np.mean(akl)),
            "grad_norm": float(np.mean(gnorms)),
            "entropy": float(np.sum(ents) / max(ent_tokens, 1.0)),
            "n_updates": len(losses),
        }

    def evaluate(self, prompt_ids: Any = None, *, samples: int | None = None) -> dict:
        """Success metrics of the current policy on ``prompt_ids`` (default: the whole pool) with
        ``samples`` completions each (default ``config.eval_samples``), drawn from a generator
        seeded by the step. Evaluation never touches the training random states.

        Returns a dict with ``eval_accuracy``, ``eval_reward``, ``eval_pass_at_k`` ... and
        ``eval_per_prompt`` (the per-prompt success rates).
        """
        ids = np.arange(self.config.n_prompts) if prompt_ids is None else self.task.prompt_ids_iv(prompt_ids)
        k = check_int_scalar(samples if samples is not None else self.config.eval_samples, "samples", lo=1)
        saved = self.backend.state_dict()
        self.backend.reseed((self._eval_seed + 1_000_003 * self.step) & 0x7FFFFFFF)
        try:
            batch = self.backend.generate([self.prompt_tokens[q] for q in ids], np.full(ids.size, k), self.config.sampling)
        finally:
            self.backend.load_state_dict(saved)
        rewards = self.task.verify(ids[batch.group_ids], batch.texts)
        succ = success_metrics(rewards, batch.group_ids, ids.size, k=min(self.config.pass_k, k))
        per = np.bincount(batch.group_ids, weights=(rewards >= 1.0).astype(float), minlength=ids.size) / k
        out = {f"eval_{key}": v for key, v in succ.items()}
        out["eval_samples"] = k
        out["eval_per_prompt"] = [round(float(x), 6) for x in per]
        return out

    def _emit(self, record: dict) -> None:
        self.history.append(record)
        if self.out_dir is not None:
            with open(self.out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def train(self, steps: int | None = None) -> list[dict]:
        """Run ``steps`` more steps (default: until ``config.steps`` steps are done).

        With ``config.eval_every > 0`` the policy is also evaluated before the first step (if no
        step has run yet) and every ``eval_every`` steps. Returns the new metric records.
        """
        target = self.config.steps if steps is None else self.step + check_int_scalar(steps, "steps", lo=0)
        start = len(self.history)
        if self.config.eval_every and self.step == 0 and target > 0:
            self._emit({"step": 0, **self.evaluate()})
        bar = None
        if self.progress:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=max(0, target - self.step), desc=f"GRPO {self.config.controller}",
                           dynamic_ncols=True)
            except ImportError:  # pragma: no cover
                bar = None
        while self.step < target:
            rec = self.step_once()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{rec['accuracy']:.2f}", reward=f"{rec['reward']:.2f}",
                                step_s=f"{rec['time_step_s']:.2f}")
        if bar is not None:
            bar.close()
        return self.history[start:]

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """The JSON-able part of a checkpoint (everything but tensors)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "fingerprint": _digest(self.config.fingerprint()),
            "controller_name": getattr(self.controller, "name", type(self.controller).__name__),
            "step": self.step,
            "rng_prompts": _encode(self.rng_prompts.bit_generator.state),
            "rng_minibatch": _encode(self.rng_minibatch.bit_generator.state),
            "backend": _encode(self.backend.state_dict()),
            "controller": _encode(self.controller.state_dict()),
            "kl_history": list(self.kl_history),
            "embeddings": _encode(np.asarray(self.embeddings)),
            "response_bank": self.bank.state_dict(),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint folder: ``tensors.pt`` (model, optimiser, reference) and ``state.json``."""
        torch = self._torch
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "reference": self.reference.state_dict() if self.reference is not None else None}
        tmp = folder / f"tensors.pt.tmp{os.getpid()}"
        torch.save(tensors, tmp)
        os.replace(tmp, folder / "tensors.pt")
        (folder / "state.json").write_text(json.dumps(self.state()) + "\n")
        return folder

    @staticmethod
    def _read_state(path: str | os.PathLike) -> dict:
        folder = Path(path)
        if not (folder / "state.json").is_file() or not (folder / "tensors.pt").is_file():
            raise ValueError(f"{str(path)!r} is not a trainer checkpoint (needs state.json and tensors.pt)")
        state = json.loads((folder / "state.json").read_text())
        if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"{str(path)!r}: unsupported checkpoint format {state.get('format')!r} "
                             f"version {state.get('version')!r}")
        return state

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written under the same configuration (else ``ValueError`` naming
        the differing settings). The trainer continues bit-identically from the saved step."""
        torch = self._torch
        state = self._read_state(path)
        saved_cfg = TrainConfig.from_dict(state["config"])
        if _digest(saved_cfg.fingerprint()) != _digest(self.config.fingerprint()):
            diffs = _diff(saved_cfg.fingerprint(), self.config.fingerprint())
            raise ValueError(f"checkpoint {str(path)!r} was written by another configuration; differs in: "
                             + "; ".join(diffs))
        name = getattr(self.controller, "name", type(self.controller).__name__)
        if state["controller_name"] != name:
            raise ValueError(f"checkpoint {str(path)!r} holds controller {state['controller_name']!r}, this "
                             f"trainer has {name!r}")
        bank = ResponseBank(self.config.n_prompts)
        if "response_bank" in state:  # (checkpoints written before response reuse have none: an empty bank)
            bank.load_state_dict(state["response_bank"])
        tensors = torch.load(Path(path) / "tensors.pt", map_location=self.device, weights_only=True)
        self.controller.load_state_dict(_decode(state["controller"]))
        self.model.load_state_dict(tensors["model"])
        self.optimizer.load_state_dict(tensors["optimizer"])
        if self.reference is not None:
            if tensors["reference"] is None:
                raise ValueError(f"checkpoint {str(path)!r} has no reference model")
            self.reference.load_state_dict(tensors["reference"])
        self.rng_prompts.bit_generator.state = _decode(state["rng_prompts"])
        self.rng_minibatch.bit_generator.state = _decode(state["rng_minibatch"])
        self.backend.load_state_dict(_decode(state["backend"]))
        self.backend.sync_weights(self.model)
        self.robust.load_state_dict({"version": RobustAdvantage.STATE_VERSION, "kl_history": state["kl_history"]})
        self.bank = bank
        self.step = int(state["step"])

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, steps: int | None = None,
                        out_dir: str | os.PathLike | None = None, progress: bool = False,
                        controller: Any = None) -> Trainer:
        """Rebuild a trainer from a checkpoint folder and restore it (``steps`` overrides the
        configured total). The embeddings and the weights come from the checkpoint (no warm start)."""
        state = cls._read_state(path)
        config = TrainConfig.from_dict(state["config"])
        if steps is not None:
            config = replace(config, steps=check_int_scalar(steps, "steps", lo=0))
        trainer = cls(config, out_dir=out_dir, progress=progress, controller=controller, _initial_weights=False,
                      _embeddings=_decode(state["embeddings"]))
        trainer.load_checkpoint(path)
        if trainer.out_dir is not None:
            _truncate_metrics(trainer.out_dir / "metrics.jsonl", trainer.step)
        return trainer


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines after ``step`` (a run resumed from an earlier checkpoint rewrites them)."""
    if not path.is_file():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))

