"""Study ``training``: learning curves at equal rollout budget for every controller (VIP's claim
that variance-informed allocation trains better than uniform and heuristic allocation), in two
regimes, each with positive controls measured in the same run.

Regimes and how each was chosen
-------------------------------
``default`` -- kept from the first version of the study (a choice made once, before any verdict):
:class:`sim.SoftmaxRLVR` with its default difficulty mixture and geometry (``d = 32``, 8 topics,
shared skill 0.3), 1024 training and 256 held-out prompts, 16 answers, ``mean_budget = 8``
rollouts per prompt (VIP's ``C = 8 Q``) within ``[3, 24]`` (VIP Sec. 5.2's ``L >= 3``; ``U`` = 3x the
mean, GDRO App. C.2.2's "multiplier 3.0x base"), batch 32, Adam step 0.02, RLOO, 320 steps. In this
regime the batch gradient is dominated by its signal while most of the accuracy is gained (the
rollout-noise variance is a few percent of ``|grad J_B|^2`` over the first steps; the variance
table reports it), so even removing all rollout noise gains little. Its claims carry the same
positive controls as everywhere; where a control fails, the verdict is *under-powered*.

``powered`` -- chosen because its positive controls pass, never on a method's verdict. A regime in
which rollout noise limits learning: ``d = 128`` (127 skill coordinates), 32 topics with no shared
skill (learning one topic barely helps another, so every prompt's own gradient matters), a hard
mixture easy / medium / hard / nearly-unsolvable = 5 / 15 / 60 / 20 % (few prompts saturate early),
and a tight budget of 4 rollouts per prompt on average within ``[2, 12]`` (RLOO's smallest
admissible group is 2); batch 32, Adam step 0.02, RLOO, 320 steps as in ``default``. The setting
comes from an independent re-analysis of the first version of this study, which measured over 16
seeds an AUC lead of +1.94 points [1.82, 2.05] for the exact gradient and +1.04 [0.90, 1.18] for
uniform at twice the budget. Before any controller ran in it, the setting was confirmed with the
two control arms and uniform alone on seeds 1000-1011 (outside the study's seeds): AUC leads of
+1.09 points [0.91, 1.28] (uniform-2x) and +1.94 [1.71, 2.17] (exact gradient) at ``d = 128`` with
32 topics, and +1.19 [0.99, 1.39] / +2.22 [2.00, 2.43] at ``d = 256`` with 64 topics; the first was
kept because its controls pass as clearly at about 40 % of the cost. The summary prints the
controls measured in the run itself.

Both regimes run every controller of :data:`CONTROLLERS` (adding a registered controller's name
there is all it takes to include it) on the same seeds, plus two arms:

* ``exact-gradient`` -- the exact gradient of the same mini-batches, no rollout noise: the most any
  allocation of an unbiased estimator can gain;
* ``uniform-2x`` -- uniform allocation at twice the mean budget: what more rollouts buy.

Positive controls. Every comparative claim ``a - b`` about accuracy carries both arms' paired
differences to the claim's baseline ``b`` (``exact-gradient - b`` and ``uniform-2x - b``) in the
claim's own measure (:func:`sim.studies._common.binding_control`: the verdict is *under-powered*
when either control's interval is not above 0 or its effect is below the claim's minimum detectable
effect). A variance claim carries the exact integer optimum of the same
variance at the same batches and policy (the best any allocation could do).

Budget (at most 250 task-seconds at the default scale, both regimes). Per seed the ``default``
regime runs 12 learners at ``d = 32`` and the ``powered`` regime 9 at ``d = 128`` (the GDRO
controllers are left out there: their claims belong to the ``gdro`` study, and they are drawn in the
``default`` regime); the GP-based controllers cost ~3-5 ms per step at ``d = 128``. Measured as CPU
time (``time.process_time``) on the same loaded machine, one seed of this version costs 1.6-1.9x
one seed of the single-regime version, whose default run took 64 task-seconds for 10 seeds on a
quiet machine: about 11-12 s per seed, ~140 s for the 12 seeds. Steps are kept at 320 in both
regimes (the ``powered`` controls need the long tail) and the seed count is what was cut (16 in the
re-analysis, 12 here), leaving room for more controllers in :data:`CONTROLLERS` (about 1 s per
controller and seed).

Measurements (per regime, seed and learner; paired: same seed, same task, same mini-batches)
-------------------------------------------------------------------------------------------
* exact mean accuracy ``mean_q p_q(theta)`` (= expected mean@k for any k) on the test and training
  sets and exact pass@k (``k = 32``, VIP Table 1) on the test set, every ``eval_every`` steps;
  area under the test curve normalised by the horizon (:func:`area_under_curve`, mean accuracy over
  training), final accuracy and pass@k, steps to reach a target accuracy (``acc_0 +
  target_fraction * (uniform's final - acc_0)`` per seed; runs that never reach it are censored at
  the horizon and counted);
* gradient variance along training, exactly, every ``variance_every`` steps on the step's batch
  and policy: the variance of the controller's RLOO batch gradient (advantage multipliers
  included), of uniform counts, and of the exact integer optimum at equal budget
  (:func:`exact_optimal_counts`), each as the raw trace ``tr Cov`` and in Adam's geometry (every
  coordinate divided by the uniform batch gradient's second moment ``v_d = (grad J_B)_d^2 +
  Var_uniform(g_d)``; :mod:`sim.studies.metrics`), and the signal ``|grad J_B|^2`` in both geometries;
* diagnostics: rollouts per prompt against the prompt's true ``p`` (VIP Fig. 2 analogue), the share
  of rollouts spent in all-equal groups (zero advantage, no signal).

Claims (VIP Sec. 6, Table 1, Table 3, Sec. 7): paired per-seed differences ``controller - other``
with Student-t 95 % intervals; key ``training.<claim>`` in ``default`` and
``training.powered.<claim>`` in ``powered``.
"""

from __future__ import annotations

import math

import numpy as np

from solvers.claims import (
    VERDICTS,
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    make_claim,
    mean_ci,
)

from ._common import binding_control, curve_ci
from ._controlled import (
    EXACT,
    UNIFORM_2X,
    ControlledTrainer,
    all_equal_groups,
    make_learner,
    make_split_env,
)
from .metrics import (
    area_under_curve,
    bin_means,
    exact_optimal_counts,
    group_variance_terms,
    second_moment_scale,
    steps_to_target,
)

NAME = "training"
TITLE = "Learning curves at equal rollout budget: VIP vs uniform, heuristics and GDRO on SoftmaxRLVR"

CONTROLLERS = ("uniform", "vip", "vip-paper", "oracle", "inverse-accuracy", "inverse-variance", "skip-saturated",
               "rollout-gdro", "prompt-gdro", "gdro-coupled")
"""Controllers every regime runs (registered names of :mod:`bandits.controllers`)."""
ARMS = (UNIFORM_2X, EXACT)
"""The positive-control arms run beside the controllers."""
FAMILIES = {
    "VIP and oracle": ("vip", "vip-paper", "oracle"),
    "heuristics": ("inverse-accuracy", "inverse-variance", "skip-saturated"),
    "GDRO": ("rollout-gdro", "prompt-gdro", "gdro-coupled"),
}
"""Figure panels; a controller in no family is drawn in an "other controllers" panel."""
REGIMES = ("default", "powered")

_POWERED_MIX = {"easy": 0.05, "medium": 0.15, "hard": 0.60, "nearly-unsolvable": 0.20}


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}."""
    default = {
        "env": {"n_prompts": 1024, "n_test": 256, "n_answers": 16, "dim": 32, "mix": None},
        "training": {"batch": 32, "steps": 320, "lr": 0.02, "estimator": "rloo"},
        "budget": {"mean_budget": 8, "lower": 3, "upper": 24},
        "eval_every": 8,
        "variance_every": 2,
    }
    powered = {
        "env": {"n_prompts": 1024, "n_test": 256, "n_answers": 16, "dim": 128, "mix": dict(_POWERED_MIX),
                "n_topics": 32, "shared_skill": 0.0},
        "training": {"batch": 32, "steps": 320, "lr": 0.02, "estimator": "rloo"},
        "budget": {"mean_budget": 4, "lower": 2, "upper": 12},
        "eval_every": 8,
        "variance_every": 4,
        # the GDRO controllers' claims are the gdro study's; here they are drawn in the default regime
        "exclude": ["rollout-gdro", "prompt-gdro", "gdro-coupled"],
    }
    cfg = {
        "seeds": 12,
        "regimes": {"default": default, "powered": powered},
        "controllers": list(CONTROLLERS),
        "arms": list(ARMS),
        "pass_k": 32,
        "target_fraction": 0.8,
        "p_bins": 10,
        "early_steps": 10,
    }
    if scale == "quick":
        cfg["seeds"] = 2
        for reg in (default, powered):
            reg["env"].update(n_prompts=128, n_test=64)
            reg["training"].update(batch=16, steps=24)
            reg["eval_every"] = 4
            reg["variance_every"] = 4
        powered["env"].update(dim=32, n_topics=8)
    elif scale == "full":
        cfg["seeds"] = 20
        default["training"]["steps"] = 480
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def learners(config: dict, regime: str) -> list[str]:
    """Every learner ``regime`` runs: the controllers (less the regime's ``exclude`` list), then the
    control arms."""
    skip = set(config["regimes"][regime].get("exclude", ()))
    return [*(n for n in config["controllers"] if n not in skip), *config["arms"]]


def tasks(config: dict, seeds) -> list[dict]:
    """One task per (regime, seed, learner)."""
    return [{"regime": reg, "seed": int(s), "controller": name, "label": f"{reg}: {name} seed {s}"}
            for reg in config["regimes"] for s in seeds for name in learners(config, reg)]


def checkpoints(regime: dict) -> list[int]:
    """Training steps at which accuracy is evaluated (0, every ``eval_every`` steps, and the end)."""
    steps = regime["training"]["steps"]
    out = list(range(0, steps + 1, regime["eval_every"]))
    return out if out[-1] == steps else [*out, steps]


def _variance_record(env, ids: np.ndarray, counts: np.ndarray, mult: np.ndarray, budget: dict) -> dict:
    """Exact variances of the step's RLOO batch gradient (module docstring), raw and in Adam's geometry."""
    b = ids.size
    terms = group_variance_terms(env.policy(ids), env.reward_table[ids], env.scores(ids))
    m2 = mult**2
    base = int(budget["mean_budget"])
    var_u = m2 @ terms.variance(base) / b**2  # per coordinate, uniform counts
    var_c = m2 @ terms.variance(counts) / b**2
    g_plain = terms.mean.sum(axis=0) / b
    g_w = mult @ terms.mean / b
    v = second_moment_scale(g_w, var_u)
    w = 1.0 / v
    n_range = np.arange(budget["lower"], budget["upper"] + 1)
    table_n = np.broadcast_to(n_range, (b, n_range.size))
    total = b * base
    out = {}
    for geo, weights in (("raw", np.ones(env.dim)), ("norm", w)):
        table = m2[:, None] * terms.variance(table_n, weights=weights)
        opt = exact_optimal_counts(table, budget["lower"], total)
        out[f"{geo}_opt"] = float(table[np.arange(b), opt - budget["lower"]].sum()) / b**2
        out[f"{geo}_ctrl"] = float(var_c @ weights)
        out[f"{geo}_uniform"] = float(var_u @ weights)
    out["signal"] = float(g_plain @ g_plain)
    out["norm_signal"] = float((g_w * g_w) @ w)
    return out


def _evaluate(env, all_ids: np.ndarray, n_train: int, k: int, out: dict) -> None:
    """Append exact test and training mean accuracy and test pass@k, from one pass over all prompts
    (binary rewards: pass@k = 1 - (1 - p)^k, as :meth:`sim.SoftmaxRLVR.pass_at_k` computes it)."""
    p = env.success_prob(all_ids)
    test = p[n_train:]
    out["test_acc"].append(float(test.mean()))
    out["train_acc"].append(float(p[:n_train].mean()))
    if env.reward_kind == "binary":
        out["test_pass"].append(float((-np.expm1(k * np.log1p(-np.minimum(test, 1.0)))).mean()))
    else:
        out["test_pass"].append(float(env.pass_at_k(all_ids[n_train:], k).mean()))


def run_task(task: dict, config: dict) -> dict:
    """Train one learner for one seed in one regime; return its curves and diagnostics."""
    seed, name = int(task["seed"]), task["controller"]
    reg = config["regimes"][task["regime"]]
    env = make_split_env(reg["env"], seed)
    n_train = reg["env"]["n_prompts"]
    budget = reg["budget"]
    ctrl = make_learner(name, env, budget, seed)
    trainer = ControlledTrainer(env, ctrl, reg["training"], n_train, seed)
    evals = set(checkpoints(reg))
    k = config["pass_k"]
    all_ids = np.arange(n_train + reg["env"]["n_test"])
    nbins = config["p_bins"]
    p_edges = np.linspace(0.0, 1.0, nbins + 1)
    out: dict = {"test_acc": [], "train_acc": [], "test_pass": []}
    keys = ("raw_ctrl", "raw_uniform", "raw_opt", "norm_ctrl", "norm_uniform", "norm_opt", "signal", "norm_signal")
    if ctrl is not None:
        out.update({"var_step": [], "wasted": [], "counts_sd": []}, **{key: [] for key in keys})
        alloc = {ph: {"sum": np.zeros(nbins), "n": np.zeros(nbins, dtype=np.int64)}
                 for ph in ("first half", "second half")}
    steps = reg["training"]["steps"]
    for t in range(steps + 1):
        if t in evals:
            _evaluate(env, all_ids, n_train, k, out)
        if t == steps:
            break
        ids, plan, batch = trainer.sample()
        if ctrl is not None:
            counts = batch.counts  # every round's rollouts (plan.counts for a single-round controller)
            if t % reg["variance_every"] == 0:
                # exact variances with the rollouts each prompt got; prompts a controller skipped are
                # not in its gradient, and a training selection that depends on the outcomes (dropped
                # groups, down-sampling) is not modelled by this measure
                sampled = counts > 0
                mult = np.asarray(plan.multipliers, dtype=np.float64)
                rec = _variance_record(env, ids[sampled], counts[sampled], mult[sampled], budget)
                out["var_step"].append(t)
                for key in keys:
                    out[key].append(rec[key])
            flat = all_equal_groups(batch)
            out["wasted"].append(float(counts[flat].sum() / counts.sum()))
            out["counts_sd"].append(float(np.std(counts)))
            pb = np.clip(np.searchsorted(p_edges, env.success_prob(ids), side="right") - 1, 0, nbins - 1)
            s, c = bin_means(counts.astype(np.float64), pb, nbins)
            a = alloc["first half" if t < steps // 2 else "second half"]
            a["sum"] += s * c
            a["n"] += c
        trainer.update(ids, plan, batch)
    if ctrl is not None:
        out["alloc_by_p"] = {ph: {"sum": a["sum"].tolist(), "n": a["n"].tolist()} for ph, a in alloc.items()}
        out["wasted"] = float(np.mean(out["wasted"]))
        out["counts_sd"] = float(np.mean(out["counts_sd"]))
    return out


# ------------------------------------------------------------------------------------- summary
def log_curve_ci(samples) -> tuple[list[float], list[float], list[float]]:
    """Per-column geometric mean and 95 % CI of a (seeds, points) array of positive ratios: the
    Student-t interval of ``log x``, exponentiated (ratios are scale factors; the interval stays
    positive on a log axis)."""
    logs = np.log(np.asarray(samples, dtype=np.float64))
    m, lo, hi = curve_ci(logs)
    return np.exp(m).tolist(), np.exp(lo).tolist(), np.exp(hi).tolist()


def _key(regime: str, claim: str) -> str:
    return f"training.{claim}" if regime == "default" else f"training.{regime}.{claim}"


def _families(ctrl_names: list[str]) -> dict[str, list[str]]:
    fams = {fam: [n for n in members if n in ctrl_names] for fam, members in FAMILIES.items()}
    known = {n for members in FAMILIES.values() for n in members} | {"uniform", *ARMS}
    fams["other controllers"] = [n for n in ctrl_names if n not in known]
    return {fam: members for fam, members in fams.items() if members}


class _Regime:
    """Per-seed measures of one regime (paired arrays over seeds)."""

    def __init__(self, name: str, reg: dict, config: dict, seeds: tuple, res: dict) -> None:
        self.name, self.reg, self.seeds = name, reg, seeds
        self.names = learners(config, name)
        self.ctrl_names = [n for n in self.names if n != EXACT]
        self.res = {n: [res[(name, s, n)] for s in seeds] for n in self.names}
        self.x = checkpoints(reg)
        self.horizon = reg["training"]["steps"]
        self.auc = {n: np.array([area_under_curve(self.x, r["test_acc"]) for r in self.res[n]]) for n in self.names}
        self.auc_train = {n: np.array([area_under_curve(self.x, r["train_acc"]) for r in self.res[n]])
                          for n in self.names}
        self.final_acc = {n: self.arr(n, "test_acc")[:, -1] for n in self.names}
        self.final_pass = {n: self.arr(n, "test_pass")[:, -1] for n in self.names}
        acc0 = self.arr("uniform", "test_acc")[:, 0]
        self.targets = acc0 + config["target_fraction"] * (self.final_acc["uniform"] - acc0)
        self.to_target, self.censored = {}, {}
        for n in self.names:
            raw = np.array([steps_to_target(self.x, r["test_acc"], tg) for r, tg in zip(self.res[n], self.targets)])
            self.censored[n] = int(np.sum(~np.isfinite(raw)))
            self.to_target[n] = np.where(np.isfinite(raw), raw, float(self.horizon))
        self.ratio = {geo: {n: self.total_ratio(n, f"{geo}_ctrl") for n in self.ctrl_names} for geo in ("raw", "norm")}
        self.opt_ratio = {geo: {n: self.total_ratio(n, f"{geo}_opt") for n in self.ctrl_names} for geo in ("raw", "norm")}
        early = config["early_steps"]
        self.noise_signal, self.noise_signal_early = {}, {}
        for geo, sig in (("raw", "signal"), ("norm", "norm_signal")):
            self.noise_signal[geo] = {n: np.array([np.mean(np.array(r[f"{geo}_ctrl"]) / np.array(r[sig]))
                                                   for r in self.res[n]]) for n in self.ctrl_names}
            self.noise_signal_early[geo] = {
                n: np.array([np.mean((np.array(r[f"{geo}_ctrl"]) / np.array(r[sig]))[np.array(r["var_step"]) <= early])
                             for r in self.res[n]]) for n in self.ctrl_names}
        self.wasted = {n: self.arr(n, "wasted") for n in self.ctrl_names}
        self.counts_sd = {n: self.arr(n, "counts_sd") for n in self.ctrl_names}
        bud = reg["budget"]
        self.setting = (
            f"SoftmaxRLVR d = {reg['env']['dim']}, {reg['env']['n_prompts']} train / {reg['env']['n_test']} test "
            f"prompts, batch {reg['training']['batch']}, {bud['mean_budget']} rollouts per prompt on average in "
            f"[{bud['lower']}, {bud['upper']}], {reg['training']['estimator'].upper()}, {self.horizon} steps")

    def arr(self, n: str, key: str) -> np.ndarray:
        return np.array([r[key] for r in self.res[n]], dtype=np.float64)

    def total_ratio(self, n: str, key: str) -> np.ndarray:
        return np.array([np.sum(r[key]) / np.sum(r[key.split("_")[0] + "_uniform"]) for r in self.res[n]])

    def diff(self, measure: dict, a: str, b: str = "uniform") -> np.ndarray:
        return measure[a] - measure[b]

    def controls(self, measure: dict, baseline: str = "uniform") -> dict:
        """The positive controls of a claim ``a - baseline`` in ``measure``: each arm ``- baseline``."""
        return {f"{arm} - {baseline}": mean_ci(self.diff(measure, arm, baseline)) for arm in ARMS if arm in measure}


def _claims(g: _Regime, k: int) -> list:
    claims = []
    reg = g.name

    def comparative(key, source, statement, metric, est, measure, note, baseline="uniform"):
        label, ctrl, other = binding_control(est, g.controls(measure, baseline), greater=0.0)
        return make_claim(_key(reg, key), source, statement, metric, est, greater=0.0, note="; ".join(
            x for x in (other, note) if x), control=ctrl, control_label=label, regime=reg)

    gain2x = mean_ci(g.diff(g.auc, UNIFORM_2X)).mean if UNIFORM_2X in g.auc else math.nan
    cut2x = 1.0 - mean_ci(g.ratio["norm"][UNIFORM_2X]).mean if UNIFORM_2X in g.ratio["norm"] else math.nan
    auc_metric = "paired difference in mean test accuracy over training (normalised AUC), {a} - {b}"
    for a, b, source, statement in (
        ("vip", "uniform", "VIP Sec. 6 / Table 1 / App. F",
         "VIP (GP + variance-optimal integer allocation) trains faster than uniform allocation at equal budget"),
        ("vip-paper", "uniform", "VIP Sec. 6 / Table 1",
         "VIP as published (continuous optimum + Alg. 2 rounding, noise-free GP) trains faster than uniform"),
        ("oracle", "uniform", "VIP Sec. 5.2 (mechanism)",
         "the variance-optimal allocation with the true success probabilities trains faster than uniform"),
        ("vip", "inverse-accuracy", "VIP Table 3", "VIP trains faster than the inverse-accuracy heuristic"),
        ("vip", "inverse-variance", "VIP Table 3", "VIP trains faster than the inverse-variance heuristic"),
        ("vip", "skip-saturated", "VIP Sec. 7 ('gains over heuristic or uniform strategies')",
         "VIP trains faster than skipping predicted-saturated prompts (DAPO-style filtering at equal budget)"),
    ):
        if a not in g.auc or b not in g.auc:
            continue
        ra, rb = mean_ci(g.ratio["norm"][a]), mean_ci(g.ratio["norm"][b])
        cut = 1.0 - ra.mean / rb.mean
        note = (f"{g.setting}; in Adam's geometry {a}'s allocation has {ra.format()}"
                + (f" and {b}'s {rb.format()}" if b != "uniform" else "")
                + f" of uniform's batch-gradient variance (the exact optimum "
                f"{mean_ci(g.opt_ratio['norm'][a]).format()} on {a}'s batches)")
        if b != "uniform":
            note += (f"; against uniform: {a} {mean_ci(g.diff(g.auc, a)).format()}, "
                     f"{b} {mean_ci(g.diff(g.auc, b)).format()}")
        if b == "uniform" and math.isfinite(gain2x) and cut2x > 0:
            note += (f"; first-order reading: uniform-2x cuts that variance by {100 * cut2x:.0f} % for "
                     f"{gain2x:+.2g} AUC, so a {100 * cut:.0f} % cut is worth about {gain2x * cut / cut2x:+.2g}")
        claims.append(comparative(f"{a.replace('-', '_')}_vs_{b.replace('-', '_')}_auc", source, statement,
                                  auc_metric.format(a=a, b=b), mean_ci(g.diff(g.auc, a, b)), g.auc, note, b))
    if "vip" in g.auc:
        claims.append(comparative(
            "vip_vs_uniform_pass", "VIP Table 1 (Pass@32)",
            f"VIP ends training with a higher pass@{k} than uniform allocation at equal budget",
            f"paired difference in final test pass@{k} (exact), vip - uniform", mean_ci(g.diff(g.final_pass, "vip")),
            g.final_pass, g.setting))
        claims.append(comparative(
            "vip_vs_uniform_mean", "VIP Table 1 (Mean@32)",
            "VIP ends training with a higher mean accuracy (mean@k) than uniform allocation at equal budget",
            "paired difference in final test mean accuracy (exact), vip - uniform",
            mean_ci(g.diff(g.final_acc, "vip")), g.final_acc, g.setting))
        for geo, key, what in (
            ("raw", "vip_variance_along_training", "exact tr Cov(batch gradient)"),
            ("norm", "vip_normalised_variance_along_training",
             "exact variance of the batch gradient in Adam's geometry (sum_d Var(g_d) / v_d)"),
        ):
            est = mean_ci(g.ratio[geo]["vip"])
            opt = mean_ci(g.opt_ratio[geo]["vip"])
            claims.append(make_claim(
                _key(reg, key), "VIP Sec. 5.2 (eq. 5)",
                "along its own training run, VIP's allocation lowers the exact variance of the RLOO batch gradient "
                "below uniform allocation of the same batches"
                + (" (each coordinate scaled as Adam scales it)" if geo == "norm" else ""),
                f"sum over checkpoints of {what}: vip counts / uniform counts, same batch and policy", est, less=1.0,
                control=opt, control_label="exact optimum / uniform counts on vip's batches", regime=reg,
                note=(f"oracle reaches {mean_ci(g.ratio[geo]['oracle']).format()}; vip captures "
                      f"{100 * (1 - est.mean) / max(1 - opt.mean, 1e-12):.0f} % of the exact optimum's reduction"
                      if "oracle" in g.ratio[geo] else "")))
    return claims


def _tables(regimes: list[_Regime], config: dict) -> list[Table]:
    k = config["pass_k"]
    rows, vrows = [], []
    for g in regimes:
        for n in g.names:
            d_auc = mean_ci(g.diff(g.auc, n))
            d_pass = mean_ci(g.diff(g.final_pass, n))
            rows.append((g.name, n, mean_ci(g.auc[n]).mean, d_auc.mean, d_auc.low, d_auc.high,
                         mean_ci(g.final_acc[n]).mean, mean_ci(g.final_pass[n]).mean, d_pass.mean, d_pass.low,
                         d_pass.high, mean_ci(g.to_target[n]).mean, f"{g.censored[n]}/{len(g.seeds)}",
                         mean_ci(g.auc_train[n]).mean))
        for n in g.ctrl_names:
            vr, vn = mean_ci(g.ratio["raw"][n]), mean_ci(g.ratio["norm"][n])
            vrows.append((g.name, n, vr.mean, vr.low, vr.high, vn.mean, vn.low, vn.high,
                          mean_ci(g.opt_ratio["raw"][n]).mean, mean_ci(g.opt_ratio["norm"][n]).mean,
                          mean_ci(g.noise_signal["raw"][n]).mean, mean_ci(g.noise_signal_early["raw"][n]).mean,
                          mean_ci(g.noise_signal["norm"][n]).mean, mean_ci(g.wasted[n]).mean,
                          mean_ci(g.counts_sd[n]).mean))
    seeds = regimes[0].seeds
    return [
        Table(f"Test accuracy at equal budget ({len(seeds)} seeds per regime; differences are paired, 95% CI)",
              ("regime", "learner", "mean acc. over training", "diff vs uniform", "CI low", "CI high",
               "final mean acc.", f"final pass@{k}", f"pass@{k} diff vs uniform", "CI low", "CI high",
               "steps to target", "not reached", "train mean acc. over training"),
              tuple(rows),
              note="; ".join(f"{g.name}: {g.setting}" for g in regimes)
                   + f". Target per seed: initial + {config['target_fraction']} x (uniform's final - initial) test "
                     "accuracy; runs that never reach it count as the horizon ('not reached'). exact-gradient: the "
                     "batch's exact gradient, no rollout noise; uniform-2x: uniform at twice the mean budget."),
        Table("Gradient variance along training (exact, at each learner's own checkpoints; 95% CI over seeds)",
              ("regime", "controller", "tr Cov ratio to uniform counts", "CI low", "CI high",
               "Adam-geometry ratio", "CI low", "CI high", "exact optimum (tr Cov)", "exact optimum (Adam)",
               "noise / signal (tr Cov / |grad J_B|^2)", f"same, steps <= {config['early_steps']}",
               "noise / signal (Adam geometry)", "rollouts in all-equal groups", "sd of counts"),
              tuple(vrows),
              note="ratio: the controller's allocation against uniform counts on the same batch at the same policy "
                   "(multipliers included); Adam geometry: every coordinate divided by the uniform batch gradient's "
                   "second moment (grad J_B)_d^2 + Var(g_d); exact optimum: the integer allocation minimising that "
                   "variance at equal budget; noise / signal > 1 means the batch gradient is noise-dominated. "
                   "uniform-2x spends twice the budget (its ratio is what doubling buys)."),
    ]


def _split_by_scale(names: list[str], size: dict, factor: float = 10.0) -> list[list[str]]:
    """Group ``names`` so that no member of a group is smaller than ``1/factor`` of the group's
    largest ``size`` (panels with their own scale: a large curve never flattens a small one)."""
    groups: list[list[str]] = []
    for n in sorted(names, key=lambda m: -size[m]):
        if groups and size[n] * factor >= size[groups[-1][0]]:
            groups[-1].append(n)
        else:
            groups.append([n])
    return [[n for n in names if n in grp] for grp in groups]


def _point_series(names: list[str], measure_fn) -> tuple[list[Series], list[str]]:
    series = []
    for pos, n in enumerate(names):
        e = measure_fn(n)
        series.append(Series(n, [pos], [e.mean], [e.low], [e.high], style="errorbar",
                             linestyle="dashed" if n in ARMS else "solid"))
    return series, names


def _figures(regimes: list[_Regime], config: dict) -> list[Figure]:
    figs = []
    # curves: uniform's absolute curve, and the positive controls as paired differences
    panels = []
    for g in regimes:
        panels.append(Panel(f"{g.name}: uniform allocation", "training step", "test mean accuracy (probability)",
                            (Series("uniform", g.x, *curve_ci(g.arr("uniform", "test_acc"))),)))
        panels.append(Panel(f"{g.name}: positive controls", "training step",
                            "test accuracy $-$ uniform's (paired)",
                            tuple(Series(arm, g.x, *curve_ci(g.arr(arm, "test_acc") - g.arr("uniform", "test_acc")),
                                         linestyle="dashed") for arm in ARMS if arm in g.names),
                            hlines=((0.0, ""),)))
    figs.append(Figure("curves", "Held-out accuracy of uniform allocation and what its positive controls gain",
                       tuple(panels),
                       caption="Left: uniform's exact held-out mean accuracy along training (mean over seeds, 95% CI "
                               "band: mostly the spread between seeds' tasks). Right: the control arms' paired "
                               "differences to uniform (same seed, task and batches; 95% CI): the exact batch "
                               "gradient (no rollout noise, the ceiling for any allocation) and uniform at twice the "
                               "budget. The grey dashed line is 0 (uniform).", ncols=2))
    # differences per family, each family split into panels of comparable scale
    panels = []
    for g in regimes:
        for fam, members in _families(g.ctrl_names).items():
            members = [n for n in members if n not in ARMS]
            curves = {n: curve_ci(g.arr(n, "test_acc") - g.arr("uniform", "test_acc")) for n in members}
            size = {n: float(np.nanmax(np.abs(np.array(curves[n])))) for n in members}  # mean and CI (CI is NaN for one seed)
            groups = _split_by_scale(members, size)
            for k, grp in enumerate(groups):
                title = f"{g.name}: {fam}" + (f" ({k + 1} of {len(groups)}, own scale)" if len(groups) > 1 else "")
                panels.append(Panel(title, "training step", "test accuracy $-$ uniform's (paired)",
                                    tuple(Series(n, g.x, *curves[n]) for n in grp), hlines=((0.0, ""),)))
    figs.append(Figure("differences", "Paired accuracy differences to uniform allocation", tuple(panels),
                       caption="Held-out mean accuracy minus uniform's on the same seed (same task, same batches), "
                               "95% CI over seeds; above the grey dashed 0 line is better than uniform. Each family "
                               "has its own scale, and a family whose curves differ by more than 10x in size is split "
                               "into panels of comparable scale.", ncols=3))
    # summary: AUC differences, claims' learners and controls apart from the others
    rows = []
    for g in regimes:
        main = [n for n in ("vip", "vip-paper", "oracle", *ARMS) if n in g.names]
        est = {n: mean_ci(g.diff(g.auc, n)) for n in g.names}
        blocks = [("claims' learners and controls", main)]
        blocks += [(fam, [n for n in members if n not in main]) for fam, members in _families(g.ctrl_names).items()]
        row = []
        for title, names in blocks:
            if names:
                series, ticks = _point_series(names, lambda n, est=est: est[n])
                row.append(Panel(f"{g.name}: {title}", "learner", "AUC $-$ uniform's (probability)", tuple(series),
                                 hlines=((0.0, ""),), xticklabels=tuple(ticks)))
        rows.append(row)
    figs.append(Figure("summary", "Mean test accuracy over training, paired against uniform",
                       tuple(p for row in rows for p in row),
                       caption="Paired per-seed difference in normalised AUC to uniform allocation (mean, 95% CI over "
                               "seeds; grey dashed line: 0). The claims' learners sit beside their positive controls "
                               "(exact gradient, uniform at 2x budget); every other family is on its own scale, so "
                               "that a large difference there does not flatten the claims' points.",
                       ncols=max(len(row) for row in rows)))
    # variance along training
    panels = []
    for g in regimes:
        vx = g.res[g.ctrl_names[0]][0]["var_step"]
        for geo, ylab in (("raw", "tr Cov / uniform counts'"), ("norm", "Adam-geometry variance / uniform's")):
            series = []
            for n in ("vip", "vip-paper", "oracle"):
                if n in g.ctrl_names:
                    per = np.array([np.array(r[f"{geo}_ctrl"]) / np.array(r[f"{geo}_uniform"]) for r in g.res[n]])
                    series.append(Series(n, vx, *log_curve_ci(per)))
            if "vip" in g.ctrl_names:
                opt = np.array([np.array(r[f"{geo}_opt"]) / np.array(r[f"{geo}_uniform"]) for r in g.res["vip"]])
                series.append(Series("exact-optimum", vx, *log_curve_ci(opt), linestyle="dotted"))
            if series:
                panels.append(Panel(f"{g.name}: {'raw trace' if geo == 'raw' else 'Adam geometry'}", "training step",
                                    ylab, tuple(series), hlines=((1.0, ""),)))
        ns = [Series(f"uniform, {'raw trace' if geo == 'raw' else 'Adam geometry'}", vx,
                     *log_curve_ci(np.array([np.array(r[f"{geo}_ctrl"]) / np.array(r[sig]) for r in g.res["uniform"]])),
                     linestyle="solid" if geo == "raw" else "dashed")
              for geo, sig in (("raw", "signal"), ("norm", "norm_signal"))]
        panels.append(Panel(f"{g.name}: noise-to-signal ratio of uniform", "training step",
                            r"batch-gradient variance / $|\nabla J_B|^2$", tuple(ns), yscale="log",
                            hlines=((1.0, ""),)))
    figs.append(Figure("variance", "Exact batch-gradient variance along training", tuple(panels),
                       caption="Exact variance of the RLOO batch gradient under vip, vip-paper and oracle divided by "
                               "that of uniform counts on the same batch and policy (geometric mean over seeds, 95% "
                               "CI; below the grey line at 1 the allocation reduces variance), as the raw trace and "
                               "with every coordinate scaled as Adam scales it; dotted: the exact optimum at equal "
                               "budget on vip's batches. Right: uniform's noise-to-signal ratio (grey line: noise = "
                               "signal). Every controller's ratios are in the variance table.", ncols=3))
    # allocation against p
    centres = ((np.arange(config["p_bins"]) + 0.5) / config["p_bins"]).tolist()
    panels = []
    for g in regimes:
        for ph in ("first half", "second half"):
            series = []
            for n in ("vip", "vip-paper", "oracle", "inverse-accuracy"):
                if n not in g.ctrl_names:
                    continue
                per = []
                for r in g.res[n]:
                    tot, cnt = np.array(r["alloc_by_p"][ph]["sum"]), np.array(r["alloc_by_p"][ph]["n"])
                    per.append(np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan))
                per = np.array(per)
                ok = ~np.isnan(per).any(axis=0)
                if ok.any():
                    series.append(Series(n, np.array(centres)[ok], *curve_ci(per[:, ok]), style="errorbar"))
            if series:
                panels.append(Panel(f"{g.name}: {ph} of training", "true success probability $p$ (bin centre)",
                                    "mean rollouts per prompt", tuple(series),
                                    hlines=((float(g.reg["budget"]["mean_budget"]), ""),)))
    figs.append(Figure("allocation", "Rollouts per prompt against the prompt's true success probability",
                       tuple(panels),
                       caption="Mean rollouts given to prompts in each true-p bin (VIP Fig. 2 analogue; mean over "
                               "seeds with 95% CI); the grey dashed line is uniform allocation's mean budget.",
                       ncols=2))
    return figs


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    res = {(t["regime"], t["seed"], t["controller"]): r for t, r in zip(tasks, results)}
    regimes = [_Regime(name, config["regimes"][name], config, seeds, res) for name in config["regimes"]]
    claims = [c for g in regimes for c in _claims(g, config["pass_k"])]
    tables = _tables(regimes, config)
    figures = _figures(regimes, config)

    parts = [f"{len(seeds)} seeds per regime, paired by seed (same task and mini-batches for every learner)."]
    for g in regimes:
        ctrl = g.controls(g.auc)
        own = [c for c in claims if c.regime == g.name]
        vip = mean_ci(g.diff(g.auc, "vip")) if "vip" in g.auc else None
        mde = next((c.mde for c in own if c.key.endswith("vip_vs_uniform_auc")), math.nan)
        why = ("kept from the first version of the study" if g.name == "default" else
               "chosen because its positive controls pass")
        parts.append(
            f"Regime {g.name} ({why}; {g.setting}): mean held-out accuracy over training under uniform "
            f"{mean_ci(g.auc['uniform']).format()}; positive controls "
            + ", ".join(f"{k} {v.format()}" for k, v in ctrl.items())
            + (f" against a minimum detectable effect of {mde:.2g} for vip - uniform" if math.isfinite(mde) else "")
            + (f"; vip - uniform {vip.format()}" if vip else "")
            + (f"; vip's allocation leaves {mean_ci(g.ratio['raw']['vip']).format()} of uniform's batch-gradient "
               f"variance as a raw trace and {mean_ci(g.ratio['norm']['vip']).format()} in Adam's geometry (exact "
               f"optimum {mean_ci(g.opt_ratio['norm']['vip']).format()}); uniform's noise-to-signal ratio averages "
               f"{mean_ci(g.noise_signal['raw']['uniform']).format()} (first {config['early_steps']} steps "
               f"{mean_ci(g.noise_signal_early['raw']['uniform']).format()})" if "vip" in g.ratio["raw"] else "")
            + f". Verdicts of its {len(own)} claims: "
            + ", ".join(f"{v} {sum(c.verdict == v for c in own)}" for v in VERDICTS) + ".")
    summary = " ".join(parts)

    data = {
        "checkpoints": {g.name: g.x for g in regimes},
        "targets": {g.name: g.targets.tolist() for g in regimes},
        "auc": {g.name: {n: g.auc[n].tolist() for n in g.names} for g in regimes},
        "final_acc": {g.name: {n: g.final_acc[n].tolist() for n in g.names} for g in regimes},
        "final_pass": {g.name: {n: g.final_pass[n].tolist() for n in g.names} for g in regimes},
        "steps_to_target": {g.name: {n: g.to_target[n].tolist() for n in g.names} for g in regimes},
        "variance_ratio": {g.name: {n: g.ratio["raw"][n].tolist() for n in g.ctrl_names} for g in regimes},
        "normalised_variance_ratio": {g.name: {n: g.ratio["norm"][n].tolist() for n in g.ctrl_names}
                                      for g in regimes},
        "optimum_ratio": {g.name: {geo: {n: g.opt_ratio[geo][n].tolist() for n in g.ctrl_names}
                                   for geo in ("raw", "norm")} for g in regimes},
        "runs": {f"{g.name}/{s}/{n}": res[(g.name, s, n)] for g in regimes for s in seeds for n in g.names},
    }
    return StudyResult(NAME, TITLE, summary, config, seeds, tuple(claims), tuple(tables), tuple(figures), data)
