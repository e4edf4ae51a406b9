"""``robust-rollouts train``: GRPO on a real (tiny, or local) transformer with a rollout controller.

The subcommand is defined here and registered by :mod:`benchmarks.cli`; importing this module
imports neither torch nor transformers (they load when the command runs).

Example::

    robust-rollouts train --task arithmetic --controller vip --steps 60 --out runs/vip

writes ``runs/vip/config.json``, ``runs/vip/metrics.jsonl`` (one line per step and per
evaluation) and a checkpoint ``runs/vip/checkpoint/`` (``--resume runs/vip/checkpoint --steps 100``
continues it up to 100 steps in all), and prints a summary: evaluation accuracy before and after
(the last evaluation is always at the last step), mean step time and the bridge overhead share.

Before GRPO, a tiny model built from a config gets a short supervised warm start
(``--warm-start-steps``, default 400: with exact-match rewards an untrained model fails every
rollout and GRPO learns nothing; see :mod:`llm_bridge.models`). It runs once per configuration
and is then loaded from the cache folder (``--cache-dir``).

Bad input -- an output folder that cannot be written, a checkpoint already at or past ``--steps``
-- is reported in one line with exit status 2 before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ._deps import require

__all__ = ["add_train_parser", "cmd_train", "output_dir_error"]


def output_dir_error(path: str | os.PathLike, option: str = "--out") -> str | None:
    """Why ``path`` cannot be an output folder, or None when it can.

    The folder is created (with its parents) if missing, and a scratch file is written and removed
    in it. Commands call this before any work, so that a long run never ends in a traceback for
    want of a place to write its results.

    Examples
    --------
    >>> output_dir_error("/proc/no-such-folder") is not None
    True
    """
    text = os.fspath(path)
    if not str(text).strip():
        return f"{option} must name a folder, got {text!r}"
    folder = Path(text)
    try:
        if folder.exists() and not folder.is_dir():
            return f"{option} {text!r} exists and is not a folder"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{option} {text!r} cannot be used as an output folder: {reason}"
    return None


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to a ``robust-rollouts`` argument parser."""
    p = subparsers.add_parser("train", help="GRPO on a small transformer with a rollout controller (needs [llm])",
                              description="GRPO training of a tiny (or local) causal LM on a verifiable task, "
                                          "with the rollout allocation / reweighting of a controller. A tiny "
                                          "model first gets a supervised warm start (--warm-start-steps, "
                                          "default 400), run once and then loaded from the cache folder.")
    p.add_argument("--task", default="arithmetic", help="task name (default: arithmetic; see llm_bridge.TASKS)")
    p.add_argument("--controller", default="uniform",
                   help="controller name (uniform, vip, rollout-gdro, prompt-gdro, ...; default: uniform)")
    p.add_argument("--steps", type=int, default=50,
                   help="training steps in all (default: 50); with --resume, the total to reach, which must "
                        "exceed the checkpoint's step")
    p.add_argument("--backend", default="hf", help="generation backend: hf or vllm (default: hf)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--out", default="train-results", help="output folder (default: train-results)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-prompts", type=int, default=64, help="prompt pool size (default: 64)")
    p.add_argument("--prompts-per-step", type=int, default=16)
    p.add_argument("--mean-budget", type=int, default=8, help="mean rollouts per prompt (default: 8)")
    p.add_argument("--lower", type=int, default=2, help="fewest rollouts of a prompt (default: 2)")
    p.add_argument("--upper", type=int, default=16, help="most rollouts of a prompt (default: 16)")
    p.add_argument("--advantage", default="grpo",
                   help="grpo, drgrpo, rloo (the papers'), or a host's convention: trl-group, trl-batch, trl-none, "
                        "verl-grpo, verl-drgrpo, verl-rloo (default: grpo)")
    p.add_argument("--shaping", default="none", help="none, drro or dro (default: none)")
    p.add_argument("--shaping-delta", type=float, default=0.0, help="budget of a mean-size group")
    p.add_argument("--shaping-same-budget", action="store_true",
                   help="give every group the budget --shaping-delta (default: scaled by group size / mean budget)")
    p.add_argument("--shaping-tau", type=float, default=None, help="soft shaping temperature (default: hard)")
    p.add_argument("--shaping-alpha", type=float, default=0.0, help="dynamic budget coefficient (eq. 4.17)")
    p.add_argument("--kl-coef", type=float, default=0.0, help="k3 KL penalty to the initial model")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--ppo-epochs", type=int, default=1)
    p.add_argument("--minibatch-size", type=int, default=64, help="rollouts per update (0: whole batch)")
    p.add_argument("--aggregation", default="token-mean", help="token-mean or seq-mean-token-mean")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--model-path", default=None, help="local Hugging Face checkpoint (default: a tiny Qwen2)")
    p.add_argument("--arch", default="qwen2", help="qwen2 or llama (tiny model)")
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--warm-start-steps", type=int, default=400,
                   help="steps of supervised warm start before GRPO, so that the tiny model solves some prompts "
                        "(default 400; run once, then loaded from --cache-dir; 0: none)")
    p.add_argument("--cache-dir", default=None, help="warm-start cache (default: $ROBUST_ROLLOUTS_CACHE or "
                                                     "~/.cache/robust-rollouts)")
    p.add_argument("--eval-every", type=int, default=10,
                   help="evaluate before the first step, every N steps and after the last (0: never; default 10)")
    p.add_argument("--eval-samples", type=int, default=8, help="completions per prompt in evaluations")
    p.add_argument("--checkpoint-every", type=int, default=0,
                   help="also keep a checkpoint-<step> folder every N steps (the final one is always written)")
    p.add_argument("--resume", default=None,
                   help="continue from a checkpoint folder up to --steps steps in all (its configuration is used)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)
    return p


def _config(args: argparse.Namespace):
    from .generation import SamplingConfig
    from .models import ModelSpec, WarmStartConfig
    from .trainer import TrainConfig

    return TrainConfig(
        task=args.task, n_prompts=args.n_prompts, prompts_per_step=args.prompts_per_step,
        model=ModelSpec(arch=args.arch, hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads),
        model_path=args.model_path, warm_start=WarmStartConfig(steps=args.warm_start_steps),
        cache_dir=args.cache_dir, controller=args.controller, mean_budget=args.mean_budget, lower=args.lower,
        upper=args.upper, backend=args.backend, device=args.device,
        sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature),
        advantage=args.advantage, shaping=args.shaping, shaping_delta=args.shaping_delta,
        shaping_tau=args.shaping_tau, shaping_alpha=args.shaping_alpha,
        shaping_scale_by_group_size=not args.shaping_same_budget, kl_coef=args.kl_coef, lr=args.lr,
        ppo_epochs=args.ppo_epochs, minibatch_size=args.minibatch_size, aggregation=args.aggregation,
        steps=args.steps, seed=args.seed, eval_every=args.eval_every, eval_samples=args.eval_samples,
    )


def _checkpoint_step(path: str) -> int | None:
    """The step a checkpoint folder holds (None when it cannot be read: the trainer says why)."""
    try:
        return int(json.loads((Path(path) / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _fail(message: str) -> int:
    print(f"robust-rollouts train: error: {message}", file=sys.stderr)
    return 2


def cmd_train(args: argparse.Namespace) -> int:
    """Run the ``train`` subcommand; returns the exit status (2 on bad input, before any work)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.resume:
        done = _checkpoint_step(args.resume)
        if done is not None and args.steps <= done:
            return _fail(f"checkpoint {args.resume!r} is already at step {done} and --steps {args.steps} is the "
                         f"total to reach, so there is nothing to train: pass --steps larger than {done}")
    problem = output_dir_error(args.out)
    if problem:
        return _fail(problem)
    try:
        torch = require("torch")
        if args.device == "cpu":
            torch.set_num_threads(1)  # one thread: on small shared machines more threads stall torch 10-30x
        from .trainer import Trainer

        out = Path(args.out)
        if not args.resume and args.warm_start_steps > 0 and args.model_path is None:
            from .models import default_cache_dir

            cache = args.cache_dir or default_cache_dir()
            print(f"building the model; supervised warm start of {args.warm_start_steps} steps before GRPO (run "
                  f"once, then loaded from {cache}; --warm-start-steps 0 skips it)", file=sys.stderr)
        if args.resume:
            trainer = Trainer.from_checkpoint(args.resume, steps=args.steps, out_dir=out,
                                              progress=not args.no_progress)
        else:
            trainer = Trainer(_config(args), out_dir=out, progress=not args.no_progress)
    except (ValueError, TypeError, ImportError) as exc:
        return _fail(str(exc))
    cfg = trainer.config
    print(f"task {cfg.task} ({cfg.n_prompts} prompts), controller {cfg.controller}, backend {cfg.backend} on "
          f"{cfg.device}, model {trainer.n_parameters:,} parameters, {cfg.prompts_per_step} prompts x mean "
          f"{cfg.mean_budget} rollouts per step", file=sys.stderr)
    if trainer.warm_result is not None:
        w = trainer.warm_result
        print("warm start: " + (f"loaded from {w.path}" if w.from_cache else f"{w.seconds:.1f} s") +
              f", final loss {w.losses[-1]:.3f}", file=sys.stderr)
    every = max(0, int(args.checkpoint_every))
    while trainer.step < cfg.steps:
        n = cfg.steps - trainer.step
        if every:
            n = min(n, every - trainer.step % every)
        trainer.train(n)
        if every and trainer.step % every == 0 and trainer.step < cfg.steps:
            trainer.save_checkpoint(out / f"checkpoint-{trainer.step}")
    evals = [r for r in trainer.history if "eval_accuracy" in r]
    if cfg.eval_every and (not evals or evals[-1]["step"] != trainer.step):
        trainer._emit({"step": trainer.step, **trainer.evaluate()})  # eval_last is the last step
    trainer.save_checkpoint(out / "checkpoint")
    steps = [r for r in trainer.history if "time_step_s" in r]
    evals = [r for r in trainer.history if "eval_accuracy" in r]
    summary = {"steps": trainer.step, "out": str(out)}
    if steps:
        t = [r["time_step_s"] for r in steps[1:]] or [steps[0]["time_step_s"]]
        o = [r["bridge_overhead_s"] for r in steps[1:]] or [steps[0]["bridge_overhead_s"]]
        summary.update(mean_step_s=sum(t) / len(t), bridge_overhead_share=sum(o) / sum(t),
                       last_train_accuracy=steps[-1]["accuracy"])
    if evals:
        summary.update(eval_first={"step": evals[0]["step"], "accuracy": evals[0]["eval_accuracy"]},
                       eval_last={"step": evals[-1]["step"], "accuracy": evals[-1]["eval_accuracy"]})
    print(json.dumps(summary, indent=2))
    return 0
