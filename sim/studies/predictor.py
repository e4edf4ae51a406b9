"""Study ``predictor``: VIP Fig. 3 on a simulator -- predicting each next mini-batch's success
probabilities along a real (non-stationary) training trajectory.

Setting. :class:`sim.SoftmaxRLVR` trained with uniform allocation (``rollouts`` per prompt, RLOO,
Adam) on epochs of shuffled mini-batches. Before each step every predictor predicts the success
probability of the prompts of the coming mini-batch from the observations of the previous steps
(``update(ids, successes, trials)``), and the mean absolute error against the *exact* success
probabilities ``p_q(theta_t)`` is recorded; then the batch is rolled out, every predictor observes
it, and the policy takes its step. All predictors see the same trajectory.

Predictors (``bandits``): the GP of VIP Sec. 5.1 / Alg. 1 in the paper's mode (``noise=0``; the
claims are about this one) and with binomial observation noise, on the simulator's noisy prompt
embeddings; moving average and ridge regression on the 1024 most recent samples (VIP Fig. 3's
baselines); a per-prompt beta-binomial posterior (the baseline a user would try first: it needs no
embedding). And one reference that is not a predictor a user could run:

* ``oracle (previous step)`` predicts the *exact* success probability of each prompt under the
  policy of the previous step, ``p_q(theta_{t-1})``: it knows everything about the past and only
  misses the last update's drift. It is the **positive control** of the claims: a claim "the GP's
  MAE is below the baseline's" is measured as ``MAE(GP) - MAE(baseline) < 0``, and the control is
  ``MAE(oracle) - MAE(baseline)`` in the same units -- how far below the baseline any predictor
  could get in this regime. When even the oracle is not ahead of the baseline by the claim's minimum
  detectable effect, the baseline sits at the floor and the verdict is *under-powered* (a tie is
  then "everyone near the floor", not a win or a loss). Not a strict bound (a predictor could in
  principle anticipate the update), a floor in practice.

Regimes (both run in every default study; chosen by what they model, not by a verdict):

* ``default`` -- the simulator's default embedding layout (``embedding="features"``): the embedding
  is a noisy copy of the prompt features, whose coordinate 0 is ``difficulty_signal * logit(p_q
  (theta_0)) / 4``, and the success logit stays close to linear in it along training (a linear fit of
  the initial logit on the embedding has R^2 ~ 0.98). This is exactly ridge regression's model class,
  so it favours ridge by construction.
* ``topic-clusters`` -- what a sentence encoder gives (VIP embeds prompts with a text encoder and
  its Fig. 3 is about that setting): ``embedding="topic-clusters"`` with 64 topics in ``d = 32``
  dimensions; each topic has a random semantic centroid and one difficulty class, so difficulty is a
  piecewise-constant, non-linear function of the embedding (a linear fit of the initial logit has
  R^2 ~ 0.3) that a kernel method can represent and a linear one cannot.

Claims (VIP Sec. 6, "Success probability prediction quality", Fig. 3), per regime: the GP has a
lower MAE than the moving average, than ridge regression and than the beta-binomial posterior --
the per-seed mean over steps of ``MAE(GP) - MAE(baseline)`` is negative (95 % CI over seeds below
0). One sign convention everywhere (claims, table, figures, summary): negative means the GP is
better. The first step (every predictor at its prior) is left out of the means.

The training trajectory (Adam, ``lr = 0.02``) is the one of the ``variance`` study, set once so that
the success probabilities drift visibly without saturating; it was not tuned against a verdict.
The moving average and ridge keep the 1024 most recent (prompt, step) observations, 8 steps of 128
prompts, while an epoch is 16 steps: as in VIP's setting (17k prompts, batch 512) the moving average
rarely holds the prompt itself and falls back to the window's mean rate.
"""

from __future__ import annotations

import numpy as np

from bandits import (
    BetaBinomialPredictor,
    GPSuccessPredictor,
    MovingAveragePredictor,
    RidgePredictor,
)
from solvers.claims import (
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    make_claim,
    mean_ci,
)

from ..softmax_rlvr import SoftmaxRLVR
from ._common import Trainer, curve_ci, stream

NAME = "predictor"
TITLE = "VIP Fig. 3: predicting next-batch success probabilities along training (GP vs baselines)"

ORACLE = "oracle-previous"
PREDICTORS = ("gp", "gp-binomial", "moving-average", "ridge", "beta-binomial", ORACLE)
LABELS = {
    "gp": "GP",
    "gp-binomial": "GP (binomial noise)",
    "moving-average": "moving average",
    "ridge": "ridge",
    "beta-binomial": "beta-binomial",
    ORACLE: "oracle (previous step)",
}
BASELINES_CLAIMED = ("moving-average", "ridge", "beta-binomial")
REGIMES = {
    "default": {},
    "topic-clusters": {"embedding": "topic-clusters", "n_topics": 64},
}
"""Regime name -> :class:`SoftmaxRLVR` options added to ``config["env"]`` (module docstring)."""


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}."""
    cfg = {
        "seeds": 5,
        "env": {"n_prompts": 2048, "n_answers": 16, "dim": 32},
        "regimes": {k: dict(v) for k, v in REGIMES.items()},
        "training": {"batch": 128, "rollouts": 8, "steps": 48, "lr": 0.02, "estimator": "rloo"},
        "window": 1024,
        "ridge_alpha": 1.0,
        "gp_eps": 0.01,
    }
    if scale == "quick":
        cfg["seeds"] = 3
        cfg["env"]["n_prompts"] = 512
        cfg["training"].update(batch=64, steps=16)
    elif scale == "full":
        cfg["seeds"] = 10
        cfg["training"]["steps"] = 96
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    return [{"seed": int(s), "regime": r, "label": f"{r} seed {s}"} for r in config["regimes"] for s in seeds]


def _predictors(env, cfg: dict, seed: int) -> dict:
    emb = env.embeddings
    gp_seed = int(stream(seed, 3, 2).integers(2**31))
    return {
        "gp": GPSuccessPredictor(emb, noise=0.0, eps=cfg["gp_eps"], seed=gp_seed, dtype=np.float64),
        "gp-binomial": GPSuccessPredictor(emb, noise="binomial", eps=cfg["gp_eps"], seed=gp_seed, dtype=np.float64),
        "moving-average": MovingAveragePredictor(env.n_prompts, window=cfg["window"]),
        "ridge": RidgePredictor(emb, alpha=cfg["ridge_alpha"], window=cfg["window"]),
        "beta-binomial": BetaBinomialPredictor(env.n_prompts),
    }


def make_regime_env(config: dict, regime: str, seed: int) -> SoftmaxRLVR:
    """The regime's task for ``seed`` (drawn from stream ``(seed, 0)``, as every study's task)."""
    opts = {**config["env"], **config["regimes"][regime]}
    return SoftmaxRLVR(**opts, seed=stream(seed, 0))


def run_task(task: dict, config: dict) -> dict:
    seed = task["seed"]
    env = make_regime_env(config, task["regime"], seed)
    trainer = Trainer(env, config["training"], stream(seed, 3, 1))
    preds = _predictors(env, config, seed)
    n = config["training"]["rollouts"]
    mae = {k: [] for k in PREDICTORS}
    # absolute errors summed separately over prompts observed before / never observed
    split = {k: {"seen_sum": 0.0, "seen_n": 0, "unseen_sum": 0.0, "unseen_n": 0} for k in PREDICTORS}
    batch_success, seen_before, overall = [], [], []
    seen = np.zeros(env.n_prompts, dtype=bool)
    all_ids = np.arange(env.n_prompts)
    theta_prev = env.theta  # the oracle's policy: the one before the last update
    for step in range(config["training"]["steps"]):
        ids = trainer.next_ids()
        p_true = env.success_prob(ids)
        theta_now = env.theta
        env.theta = theta_prev
        p_oracle = env.success_prob(ids)
        env.theta = theta_now
        was_seen = seen[ids]
        for k in PREDICTORS:
            pred = p_oracle if k == ORACLE else preds[k].predict(ids)
            err = np.abs(pred - p_true)
            mae[k].append(float(err.mean()))
            if step > 0:
                split[k]["seen_sum"] += float(err[was_seen].sum())
                split[k]["seen_n"] += int(was_seen.sum())
                split[k]["unseen_sum"] += float(err[~was_seen].sum())
                split[k]["unseen_n"] += int((~was_seen).sum())
        batch_success.append(float(p_true.mean()))
        seen_before.append(float(seen[ids].mean()))
        overall.append(env.objective(all_ids))
        batch = trainer.env.rollout(ids, n, trainer.rng)
        successes = np.rint(batch.successes()).astype(np.int64)
        for pr in preds.values():
            pr.update(ids, successes, batch.counts)
        seen[ids] = True
        theta_prev = env.theta
        trainer.update(batch)
    return {"mae": mae, "batch_success": batch_success, "seen_before": seen_before, "mean_success": overall,
            "split": split}


def _split_mae(results: list[dict], k: str, which: str) -> float:
    vals = [r["split"][k][f"{which}_sum"] / r["split"][k][f"{which}_n"] for r in results if r["split"][k][f"{which}_n"]]
    return float(np.mean(vals)) if vals else float("nan")


def _regime_claims(regime: str, mae: dict, results: list[dict]) -> list:
    claims = []
    prefix = "predictor." if regime == "default" else f"predictor.{regime}."
    oracle_minus = {k: mean_ci((mae[ORACLE][:, 1:] - mae[k][:, 1:]).mean(axis=1)) for k in BASELINES_CLAIMED}
    for k in BASELINES_CLAIMED:
        diff = (mae["gp"][:, 1:] - mae[k][:, 1:]).mean(axis=1)
        wins = (mae["gp"][:, 1:] < mae[k][:, 1:]).mean(axis=1)
        level = {p: float(mae[p][:, 1:].mean()) for p in ("gp", k, ORACLE)}
        note = (f"regime {regime}: mean MAE GP {level['gp']:.3f}, {LABELS[k]} {level[k]:.3f}, oracle "
                f"{level[ORACLE]:.3f}; GP lower on {100 * wins.mean():.0f}% of steps on average; MAE on prompts "
                f"rolled out before: GP {_split_mae(results, 'gp', 'seen'):.3f}, {LABELS[k]} "
                f"{_split_mae(results, k, 'seen'):.3f}; on unseen prompts: GP {_split_mae(results, 'gp', 'unseen'):.3f}, "
                f"{LABELS[k]} {_split_mae(results, k, 'unseen'):.3f}")
        claims.append(make_claim(
            f"{prefix}gp_vs_{k.replace('-', '_')}", "VIP Sec. 6 / Fig. 3",
            f"the GP predictor (VIP Alg. 1, paper mode) has a lower MAE than the {LABELS[k]} baseline when "
            "predicting the next mini-batch's success probabilities along training",
            "mean over steps of MAE(GP) - MAE(baseline), absolute probability (negative: GP better)",
            mean_ci(diff), less=0.0, control=oracle_minus[k],
            control_label=f"oracle (previous step) - {LABELS[k]}", regime=regime, note=note))
    return claims


def _regime_figure(regime: str, config: dict, mae: dict, results: list[dict]) -> Figure:
    steps = config["training"]["steps"]
    x = list(range(2, steps + 1))  # step 1: every predictor at its prior (left out of every mean)
    series = []
    for k in PREDICTORS:
        mean, low, high = curve_ci(mae[k][:, 1:])
        series.append(Series(LABELS[k], x, mean, low, high,
                             linestyle="solid" if k.startswith("gp") else "dotted" if k == ORACLE else "dashed"))
    diff_series = []
    for k in BASELINES_CLAIMED:
        mean, low, high = curve_ci(mae["gp"][:, 1:] - mae[k][:, 1:])
        diff_series.append(Series(f"GP - {LABELS[k]}", x, mean, low, high))
    x_all = list(range(1, steps + 1))
    drift = curve_ci(np.array([r["batch_success"] for r in results]))
    seen = curve_ci(np.array([r["seen_before"] for r in results]))
    overall = curve_ci(np.array([r["mean_success"] for r in results]))
    name = "mae" if regime == "default" else f"mae_{regime.replace('-', '_')}"
    return Figure(name, f"Predicting next-batch success probability along training, regime {regime} "
                        "(VIP Fig. 3 analogue)", (
        Panel("MAE per step", "training step", "mean absolute error (probability)", tuple(series), yscale="log"),
        Panel(r"MAE(GP) $-$ MAE(baseline) (below 0: GP better)", "training step", "MAE difference (probability)",
              tuple(diff_series), hlines=((0.0, "no difference"),)),
        Panel("non-stationarity", "training step", "probability / fraction", (
            Series("mean success, all prompts", x_all, *overall),
            Series("mean success, current batch", x_all, *drift, linestyle="dashed"),
            Series("batch prompts seen before", x_all, *seen, linestyle="dotted"),
        )),
    ), caption=(f"Regime {regime}. Left: MAE of each predictor against the exact success probabilities of the "
                "coming mini-batch from step 2 on (log scale; the oracle knows the previous step's exact "
                "probabilities). Middle: "
                "paired difference MAE(GP) - MAE(baseline) with its 95% CI over seeds; below zero the GP is better. "
                "Right: how the task drifts."), ncols=3)


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    steps = config["training"]["steps"]
    claims, rows, figures, data = [], [], [], {"regimes": {}}
    sentences = []
    for regime in config["regimes"]:
        res = [r for t, r in zip(tasks, results) if t["regime"] == regime]
        mae = {k: np.array([r["mae"][k] for r in res]) for k in PREDICTORS}  # (seeds, steps)
        claims += _regime_claims(regime, mae, res)
        for k in PREDICTORS:
            e = mean_ci(mae[k][:, 1:].mean(axis=1))
            d = mean_ci((mae["gp"][:, 1:] - mae[k][:, 1:]).mean(axis=1))
            last = mean_ci(mae[k][:, -1])
            rows.append((regime, LABELS[k], e.mean, e.low, e.high, last.mean,
                         d.mean if k != "gp" else 0.0, d.low if k != "gp" else None, d.high if k != "gp" else None,
                         _split_mae(res, k, "seen"), _split_mae(res, k, "unseen")))
        figures.append(_regime_figure(regime, config, mae, res))
        gaps = {k: mean_ci((mae["gp"][:, 1:] - mae[k][:, 1:]).mean(axis=1)) for k in BASELINES_CLAIMED}
        acc0 = mean_ci([r["mean_success"][0] for r in res])
        acc1 = mean_ci([r["mean_success"][-1] for r in res])
        sentences.append(
            f"In regime {regime} (mean success {acc0.mean:.2f} -> {acc1.mean:.2f}), MAE(GP) - MAE(baseline) is "
            + ", ".join(f"{gaps[k].format()} against the {LABELS[k]}" for k in BASELINES_CLAIMED)
            + f"; the oracle's MAE is {float(mae[ORACLE][:, 1:].mean()):.3f} against the GP's "
              f"{float(mae['gp'][:, 1:].mean()):.3f}.")
        data["regimes"][regime] = {
            "mae": {k: mae[k].tolist() for k in PREDICTORS},
            "batch_success": [r["batch_success"] for r in res],
            "seen_before": [r["seen_before"] for r in res],
            "mean_success": [r["mean_success"] for r in res],
        }
    table = Table(
        "Next-batch success-probability MAE (steps 2..T, 95% CI over seeds)",
        ("regime", "predictor", "mean MAE", "CI low", "CI high", "MAE at last step", "GP minus it", "CI low",
         "CI high", "MAE, prompts seen before", "MAE, unseen prompts"),
        tuple(rows),
        note=f"{config['env']['n_prompts']} prompts, batch {config['training']['batch']}, "
             f"{config['training']['rollouts']} rollouts per prompt, {steps} steps "
             f"({steps * config['training']['batch'] / config['env']['n_prompts']:.1f} epochs). 'GP minus it' is "
             "MAE(GP) - MAE(predictor): negative means the GP is better. The last two columns split the errors of "
             "steps 2..T by whether the prompt had been rolled out before (pooled over prompt-steps, mean over seeds).")
    summary = (
        f"Along {steps} steps of uniform RLOO training on SoftmaxRLVR ({config['env']['n_prompts']} prompts), in two "
        "embedding regimes -- 'default' (embedding = noisy prompt features, difficulty linear in it) and "
        "'topic-clusters' (sentence-encoder-like clusters, difficulty non-linear in it); negative differences mean "
        f"the GP is better (95% CI over {len(seeds)} seeds). " + " ".join(sentences)
    )
    return StudyResult(NAME, TITLE, summary, config, seeds, tuple(claims), (table,), tuple(figures), data)
