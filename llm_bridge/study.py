"""Study ``llm``: rollout controllers in real GRPO training of a tiny transformer, at equal rollouts.

Setting. The default tiny Qwen2 (0.13 M parameters, character tokenizer) after the default
supervised warm start (:mod:`llm_bridge.models`) is trained with GRPO
(:class:`llm_bridge.Trainer`: clipped surrogate, token-mean, AdamW ``lr = 3e-4``, one epoch of two
minibatches per step) on the ``arithmetic`` task (64 prompts, exact-match reward). Every step
draws 16 prompts and spends exactly ``16 x 8 = 128`` rollouts; the controllers only decide how
they are spread (between 2 and 16 per prompt) and how advantages are weighted:

* ``uniform`` -- 8 rollouts each (GRPO);
* ``vip`` -- VIP: GP success predictor on the task's difficulty features + exact integer
  variance-minimising allocation (VIP Sec. 5, RLOO cost);
* ``rollout-gdro`` -- Rollout-GDRO: rollout arms per pass@k bin under the mean budget (GDRO Sec. 3.3);
* ``prompt-gdro`` -- Prompt-GDRO: 8 rollouts each, advantages reweighted per bin (GDRO eq. 17).

Each (controller, seed) run starts from the same seed-specific warm-started model and prompt pool;
the seed also drives sampling, prompt order and the controller. The policy is evaluated on the
whole pool before training and every ``eval_every`` steps with 8 samples per prompt (its own
seeded sampler, identical across controllers for a given seed and step): mean@8 (mean success
rate) and pass@8 (share of prompts with a success among the 8).

Claims (verdicts from 95 % confidence intervals over seeds, paired by seed):

* ``llm.rises.<controller>`` -- training raises mean@8 (final - initial > 0) for every controller
  (issue 10's acceptance check that the loop learns);
* ``llm.vip_mean`` / ``llm.vip_pass`` -- VIP beats uniform at equal rollouts in mean@8 and pass@8
  (VIP Sec. 6, Table 1: "adding VIP yields consistent improvements on Pass@32 and Mean@32"),
  measured as the mean over the evaluations after step 0 (area under the learning curve);
* ``llm.rollout_gdro_pass`` / ``llm.prompt_gdro_pass`` -- Rollout-GDRO and Prompt-GDRO beat
  uniform in pass@8 (GDRO Sec. 4, Table 1: "+9-13 % pass@8 over GRPO"), same AUC measure.

The setting (model, warm start, learning rate, steps) was chosen before any comparison was run,
from the step-time budget and a check that uniform GRPO learns at all; it was not tuned on the
verdicts. A tiny model on 64 prompts over a few dozen steps is far from the papers' settings
(billion-parameter models, thousands of prompts, hundreds of steps): an inconclusive or failing
comparison here says that the effect is not visible at this scale, not that the papers are wrong.

Nothing here plots (``benchmarks`` renders the declarative figures).
"""

from __future__ import annotations

import numpy as np

from solvers.claims import Figure, Panel, Series, StudyResult, Table, make_claim, mean_ci

NAME = "llm"
TITLE = "GRPO on a tiny transformer: VIP / Rollout-GDRO / Prompt-GDRO vs uniform at equal rollouts"

CONTROLLERS = ("uniform", "vip", "rollout-gdro", "prompt-gdro")
LABELS = {"uniform": "uniform (GRPO)", "vip": "VIP", "rollout-gdro": "Rollout-GDRO", "prompt-gdro": "Prompt-GDRO"}


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}."""
    cfg = {
        "seeds": 5,
        "controllers": list(CONTROLLERS),
        "train": {
            "task": "arithmetic", "n_prompts": 64, "prompts_per_step": 16, "mean_budget": 8, "lower": 2,
            "upper": 16, "steps": 60, "lr": 3e-4, "advantage": "grpo", "eval_every": 10, "eval_samples": 8,
            "pass_k": 8, "minibatch_size": 64, "ppo_epochs": 1,
            "sampling": {"max_new_tokens": 16, "temperature": 1.0},
        },
        "model": {},  # the default ModelSpec
        "warm_start": {},  # the default WarmStartConfig
        "cache_dir": None,  # warm-start cache: $ROBUST_ROLLOUTS_CACHE or ~/.cache/robust-rollouts
    }
    if scale == "quick":  # seconds: exercises the code path only (claims are meaningless here)
        cfg["seeds"] = 2
        cfg["train"].update(n_prompts=12, prompts_per_step=4, mean_budget=4, lower=2, upper=6, steps=4,
                            eval_every=2, eval_samples=4, pass_k=4, minibatch_size=0,
                            sampling={"max_new_tokens": 5, "temperature": 1.0})
        cfg["model"] = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "max_positions": 32}
        cfg["warm_start"] = {"steps": 40, "batch_size": 32, "n_examples": 512}
    elif scale == "full":
        cfg["seeds"] = 10
        cfg["train"].update(steps=120)
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    """One training run per (seed, controller); seeds outermost so a seed's warm start is cached
    by its first run and reused by the others."""
    return [{"seed": int(s), "controller": c, "label": f"{c} seed {s}"} for s in seeds for c in config["controllers"]]


def _train_config(task: dict, config: dict):
    from .generation import SamplingConfig
    from .models import ModelSpec, WarmStartConfig
    from .trainer import TrainConfig

    t = dict(config["train"])
    sampling = SamplingConfig(**t.pop("sampling"))
    return TrainConfig(controller=task["controller"], seed=int(task["seed"]), sampling=sampling,
                       model=ModelSpec(**config["model"]), warm_start=WarmStartConfig(**config["warm_start"]),
                       cache_dir=config.get("cache_dir"), **t)


def run_task(task: dict, config: dict) -> dict:
    """Train one controller on one seed; return the evaluation curve and per-step summaries."""
    from ._deps import require

    torch = require("torch")
    torch.set_num_threads(1)
    from .trainer import Trainer

    trainer = Trainer(_train_config(task, config))
    records = trainer.train()
    evals = [r for r in records if "eval_accuracy" in r]
    steps = [r for r in records if "accuracy" in r and "eval_accuracy" not in r]
    counts = [np.asarray(r["counts"]) for r in steps]
    return {
        "controller": task["controller"],
        "seed": int(task["seed"]),
        "eval_steps": [int(r["step"]) for r in evals],
        "eval_mean": [float(r["eval_accuracy"]) for r in evals],
        "eval_pass": [float(r["eval_pass_at_k"]) for r in evals],
        "per_prompt_first": evals[0]["eval_per_prompt"],
        "per_prompt_last": evals[-1]["eval_per_prompt"],
        "train_accuracy": [float(r["accuracy"]) for r in steps],
        "rollouts_per_step": sorted({int(c.sum()) for c in counts}),
        "counts_std": float(np.mean([c.std() for c in counts])) if counts else 0.0,
        "counts_max": int(max(c.max() for c in counts)) if counts else 0,
        "nonzero_adv_groups": float(np.mean([r["adv_nonzero_groups"] for r in steps])) if steps else 0.0,
        "parameters": int(trainer.n_parameters),
    }


def _by(results: list[dict], controller: str) -> dict[int, dict]:
    return {r["seed"]: r for r in results if r["controller"] == controller}


def _auc(values: list[float]) -> float:
    """Mean of the evaluations after step 0 (the area under the learning curve per step)."""
    return float(np.mean(values[1:])) if len(values) > 1 else float(values[0])


def _curve(runs: list[dict], key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    steps = runs[0]["eval_steps"]
    mat = np.array([r[key] for r in runs], dtype=float)
    est = [mean_ci(mat[:, j]) for j in range(mat.shape[1])]
    return steps, [e.mean for e in est], [e.low for e in est], [e.high for e in est]


def summarize(config: dict, seeds, tasks: list[dict], results: list[dict]) -> StudyResult:
    """Claims, tables and learning-curve figures (see the module docstring)."""
    controllers = list(config["controllers"])
    runs = {c: _by(results, c) for c in controllers}
    common = sorted(set.intersection(*(set(v) for v in runs.values())))
    claims = []
    rows = []
    for c in controllers:
        rs = [runs[c][s] for s in common]
        gain = mean_ci([r["eval_mean"][-1] - r["eval_mean"][0] for r in rs])
        claims.append(make_claim(
            f"llm.rises.{c}", "issue 10 (the loop learns)",
            f"GRPO training with the {LABELS[c]} controller raises the policy's mean@8 on the task",
            "final - initial mean@8 (evaluation on the whole pool)", gain, greater=0.0))
        first = mean_ci([r["eval_mean"][0] for r in rs])
        last = mean_ci([r["eval_mean"][-1] for r in rs])
        auc = mean_ci([_auc(r["eval_mean"]) for r in rs])
        pauc = mean_ci([_auc(r["eval_pass"]) for r in rs])
        plast = mean_ci([r["eval_pass"][-1] for r in rs])
        spread = float(np.mean([r["counts_std"] for r in rs]))
        rows.append((LABELS[c], first.format(), last.format(), auc.format(), plast.format(), pauc.format(),
                     f"{spread:.2f}", ", ".join(str(x) for x in sorted({v for r in rs for v in r["rollouts_per_step"]}))))

    def paired(c: str, key: str):
        return mean_ci([_auc(runs[c][s][key]) - _auc(runs["uniform"][s][key]) for s in common])

    note = ("tiny model, 64 prompts, a few dozen steps; an effect the papers report at scale may not be visible "
            "here")
    if "vip" in controllers and "uniform" in controllers:
        claims.append(make_claim("llm.vip_mean", "VIP Sec. 6, Table 1 (Mean@32)",
                                 "VIP allocation gives a higher mean@k than uniform at equal rollouts per step",
                                 "VIP - uniform, mean@8 averaged over the evaluations after step 0 (paired by seed)",
                                 paired("vip", "eval_mean"), greater=0.0, note=note))
        claims.append(make_claim("llm.vip_pass", "VIP Sec. 6, Table 1 (Pass@32)",
                                 "VIP allocation gives a higher pass@k than uniform at equal rollouts per step",
                                 "VIP - uniform, pass@8 averaged over the evaluations after step 0 (paired by seed)",
                                 paired("vip", "eval_pass"), greater=0.0, note=note))
    for c, key in (("rollout-gdro", "llm.rollout_gdro_pass"), ("prompt-gdro", "llm.prompt_gdro_pass")):
        if c in controllers and "uniform" in controllers:
            claims.append(make_claim(key, "GDRO Sec. 4, Table 1 (pass@8)",
                                     f"{LABELS[c]} gives a higher pass@8 than GRPO with uniform rollouts at equal "
                                     "compute",
                                     f"{LABELS[c]} - uniform, pass@8 averaged over the evaluations after step 0 "
                                     "(paired by seed)", paired(c, "eval_pass"), greater=0.0, note=note))
    table = Table(
        "Evaluation on the whole prompt pool (mean over seeds, 95 % CI)",
        ("controller", "mean@8 at step 0", "mean@8 final", "mean@8 AUC", "pass@8 final", "pass@8 AUC",
         "std of rollouts per prompt", "rollouts per step"),
        tuple(rows),
        note="AUC = mean of the evaluations after step 0. Every controller spends the same rollouts per step.",
    )
    # hardest third of the pool (by the initial evaluation of each seed): where does the gain go?
    hard_rows = []
    for c in controllers:
        vals = []
        for s in common:
            r = runs[c][s]
            first = np.asarray(r["per_prompt_first"])
            idx = np.argsort(first, kind="stable")[: max(1, len(first) // 3)]
            vals.append(float(np.mean(np.asarray(r["per_prompt_last"])[idx]) - np.mean(first[idx])))
        hard_rows.append((LABELS[c], mean_ci(vals).format()))
    hard = Table("Gain on the hardest third of the prompts (lowest initial mean@8 of each seed)",
                 ("controller", "final - initial mean@8 on the hardest third"), tuple(hard_rows))
    panels = []
    for key, ylabel, title in (("eval_mean", "mean@8 (success rate)", "Mean@8 on the pool"),
                               ("eval_pass", "pass@8 (share of prompts)", "Pass@8 on the pool")):
        series = []
        for c in controllers:
            x, y, lo, hi = _curve([runs[c][s] for s in common], key)
            series.append(Series(LABELS[c], x, y, lo, hi))
        panels.append(Panel(title, "training step", ylabel, tuple(series)))
    train_series = []
    for c in controllers:
        mat = np.array([runs[c][s]["train_accuracy"] for s in common], dtype=float)
        x = np.arange(1, mat.shape[1] + 1)
        train_series.append(Series(LABELS[c], x, mat.mean(axis=0)))
    panels.append(Panel("Training-batch accuracy (mean over seeds)", "training step", "accuracy (success rate)",
                        tuple(train_series)))
    figure = Figure("curves", "Learning curves at equal rollouts per step", tuple(panels),
                    caption="Evaluation on the whole pool (8 samples per prompt) with 95 % CI bands over seeds; "
                            "the right panel is the accuracy of each step's own rollouts.", ncols=3)
    t = config["train"]
    p = results[0]["parameters"] if results else 0
    verdicts = ", ".join(f"{cl.key}: {cl.verdict}" for cl in claims)
    summary = (f"GRPO on a {p:,}-parameter Qwen2 over {t['n_prompts']} arithmetic prompts, {t['steps']} steps of "
               f"{t['prompts_per_step']} prompts x mean {t['mean_budget']} rollouts, {len(common)} seeds. "
               f"Verdicts: {verdicts}.")
    data = {"results": results, "common_seeds": common}
    return StudyResult(NAME, TITLE, summary, config, tuple(seeds), tuple(claims), (table, hard), (figure,), data)
