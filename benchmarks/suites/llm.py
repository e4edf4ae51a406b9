"""Perf suite "llm": one GRPO step of the LLM bridge on a tiny transformer, on CPU, per controller.

What is timed: :meth:`llm_bridge.Trainer.step_once` with the default configuration -- the default
tiny Qwen2 (0.13 M parameters) after the default warm start, 16 prompts x mean 8 rollouts (128
per step, 2..16 per prompt) x up to 16 new tokens, ``hf`` backend, one epoch of two minibatches
of 64, reference model for the KL metric, one torch thread -- for each controller of the ``llm``
study. After ``warmup`` untimed steps, every step's phases are timed by the trainer itself
(``time_<phase>_s`` of its metrics) and reported as medians over the timed steps:

* ``full step``: the whole step (this project's target, :mod:`benchmarks.targets`: <= 0.5 s);
* ``bridge overhead``: allocation (``plan``), shaping + advantages + multipliers, the controller's
  ``observe`` and bookkeeping (prompt sampling, tensor assembly, metrics) -- everything that is not
  generation, verification, log-prob passes or the optimiser (target: <= 5 % of the step,
  checked as ``full step / bridge overhead >= 20``);
* each phase on its own (generate, update, logprobs, verify, sync, plan, advantages, observe,
  bookkeeping).

The warm start is set-up, not part of a step: in full mode it is also timed once with an empty
cache (what a fresh CI run pays), as a row of size ``"once"`` (no problem size: the report lists it
under the figure instead of drawing it on the rollouts axis). Skipped with a message when torch/transformers are missing
(``pip install "robust-rollouts[llm]"``).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time

import numpy as np

from ..harness import Measurement, PerfConfig

NAME = "llm"
DESCRIPTION = "GRPO step of the LLM bridge on a tiny transformer (CPU, 16 x 8 x <=16 tokens): step time and overhead"

CONTROLLERS = ("uniform", "vip", "rollout-gdro", "prompt-gdro")
PHASES = ("generate", "update", "logprobs", "verify", "sync", "plan", "advantages", "observe", "bookkeeping")
ROLLOUTS = 128


def _stats(values: list[float]) -> tuple[float, float, float]:
    a = np.asarray(values, dtype=float)
    return float(np.median(a)), float(np.quantile(a, 0.25)), float(np.quantile(a, 0.75))


def run(cfg: PerfConfig) -> list[Measurement]:
    missing = [m for m in ("torch", "transformers", "tokenizers") if importlib.util.find_spec(m) is None]
    if missing:
        cfg.log(f"  [llm] skipped: {missing} not installed (pip install \"robust-rollouts[llm]\")")
        return []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from llm_bridge.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)  # one thread: on small shared machines more threads stall torch 10-30x
    warmup, timed = (2, 6) if cfg.quick else (3, 25)
    rows: list[Measurement] = []
    if not cfg.quick:
        with tempfile.TemporaryDirectory() as cold:
            t0 = time.perf_counter()
            Trainer(TrainConfig(seed=cfg.seed, cache_dir=cold, steps=0))
            cold_s = time.perf_counter() - t0
        rows.append(Measurement(NAME, "trainer set-up, empty warm-start cache", "once", "Trainer(TrainConfig())", "ours",
                                cold_s, cold_s, cold_s, 1,
                                note="model + 400-step warm start + controller; what a fresh CI run pays once"))
        cfg.log(f"  [llm] set-up with an empty warm-start cache: {cold_s:.1f} s")
    for name in CONTROLLERS:
        trainer = Trainer(TrainConfig(controller=name, seed=cfg.seed, steps=warmup + timed))
        trainer.train(warmup)
        recs = trainer.train(timed)
        recs = [r for r in recs if "time_step_s" in r]
        step = _stats([r["time_step_s"] for r in recs])
        over = _stats([r["bridge_overhead_s"] for r in recs])
        share = float(np.sum([r["bridge_overhead_s"] for r in recs]) / np.sum([r["time_step_s"] for r in recs]))
        n = len(recs)
        note = (f"{trainer.n_parameters:,} params; 16 prompts x mean 8 rollouts x <=16 tokens; mean completion "
                f"{np.mean([r['completion_len_mean'] for r in recs]):.1f} tokens; 1 torch thread")
        case = f"GRPO step ({name})"
        rows.append(Measurement(NAME, case, ROLLOUTS, "full step", "ours", *step, n, note=note))
        rows.append(Measurement(NAME, case, ROLLOUTS, "bridge overhead", "phase", *over, n,
                                note=f"overhead share of the summed step time {share:.2%}"))
        for ph in PHASES:
            vals = [r.get(f"time_{ph}_s", 0.0) for r in recs]
            rows.append(Measurement(NAME, case, ROLLOUTS, f"phase: {ph}", "phase", *_stats(vals), n))
        ocase = f"bridge overhead ({name})"
        rows.append(Measurement(NAME, ocase, ROLLOUTS, "bridge overhead", "ours", *over, n,
                                note=f"allocation, shaping, advantages, controller update, bookkeeping; share {share:.2%}"))
        rows.append(Measurement(NAME, ocase, ROLLOUTS, "full step", "peer", *step, n,
                                note="the step the overhead is part of (ratio = step / overhead)"))
        cfg.log(f"  [llm] {name}: step median {step[0] * 1e3:.1f} ms, bridge overhead median {over[0] * 1e3:.2f} ms "
                f"({share:.2%} of the step time) over {n} steps")
    return rows
