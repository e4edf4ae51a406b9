"""Study ``training``: learning curves at equal rollout budget for every controller (VIP's claim
that variance-informed allocation trains better than uniform and heuristic allocation).

Setting (chosen once, from VIP's training setup and first principles; not tuned on any verdict)
----------------------------------------------------------------------------------------------
* Task: :class:`sim.SoftmaxRLVR` with its default difficulty mixture, 1024 training prompts and 256
  held-out test prompts from the same distribution (VIP trains on DAPO-17k and evaluates on held-out
  AIME, so the claims are scored on the held-out set; the training-set curve is reported too),
  16 answers, ``d = 32`` (the defaults shared with the ``variance`` and ``predictor`` studies).
* Budget: ``mean_budget = 8`` rollouts per prompt (VIP's ``C = 8 Q`` budget), bounds
  ``L = 3`` (VIP Sec. 5.2: "we require L >= 3") and ``U = 24`` (VIP states no ``U``; 3x the mean,
  the only published ratio, GDRO App. C.2.2's "multiplier 3.0x base"). Every controller gets exactly
  ``32 * 8 = 256`` rollouts per step.
* Estimator: RLOO (VIP's ablation table and its strongest results are RLOO; RLOO is unbiased for
  every ``n >= 2``, so allocation changes only the gradient's variance -- which is VIP's mechanism).
  Prompt-GDRO's multipliers scale the RLOO advantages (GDRO eq. 17) for ``prompt-gdro`` and
  ``gdro-coupled``.
* Optimiser: Adam (VIP App. C uses AdamW; no weight decay here, there is no regulariser), step
  0.02 (the value of the ``variance`` and ``predictor`` studies).
* Batch: 32 prompts per step, ~3 % of the training set (VIP: 512 of DAPO's ~17k prompts).
  Horizon: 320 steps = 10 epochs. VIP trains two epochs; here the horizon is set so that the
  uniform learning curve approaches its plateau (within about 2 % of its 400-step value), which
  covers both the fast, signal-dominated phase and the slow tail in which the batch is below the
  gradient noise scale ``tr Cov / |grad J|^2`` (measured at ~1 prompt initially, ~50 prompts after
  200 steps) -- the regime in which the variance of the gradient, and therefore allocation, can
  matter at all. Ten epochs also give the GP predictor a history of every prompt.

Measurements (per seed and controller; paired: same seed, same task, same mini-batches)
---------------------------------------------------------------------------------------
* exact mean accuracy ``mean_q p_q(theta)`` (= expected mean@k for any k) on the test and training
  sets and exact pass@k (``k = 32``, VIP Table 1) on the test set, every ``eval_every`` steps;
* area under the test accuracy curve normalised by the horizon (:func:`area_under_curve`: mean
  accuracy over training), final mean accuracy and pass@k, steps to reach a target accuracy
  (``acc_0 + target_fraction * (uniform's final - acc_0)`` per seed; runs that never reach it are
  censored at the horizon and counted);
* gradient variance along training, exactly: every ``variance_every`` steps, on the step's batch
  and policy, ``tr Cov`` of the controller's RLOO batch gradient
  ``(1/B^2) sum_i m_i^2 tr Var g_i(n_i)`` (closed form, :meth:`sim.SoftmaxRLVR.gradient_variance`)
  and the same with uniform counts (so the ratio isolates the allocation), and the signal
  ``|grad J_B|^2`` of the batch;
* diagnostics: rollouts per prompt against the prompt's true ``p`` (VIP Fig. 2 analogue), the share
  of rollouts spent in all-equal groups (zero advantage, no signal);
* the reference learner ``exact-gradient`` (the exact gradient of the same mini-batches, no rollout
  noise): the most any allocation of an unbiased estimator could gain.

Claims (VIP Sec. 6, Table 1, Table 3, Sec. 7): paired per-seed differences ``controller - other``
with Student-t 95 % intervals; holds when the interval lies above 0.
"""

from __future__ import annotations

import math

import numpy as np

from solvers.claims import Figure, Panel, Series, StudyResult, Table, make_claim, mean_ci

from ._common import curve_ci
from ._controlled import EXACT, ControlledTrainer, all_equal_groups, make_split_env, make_study_controller
from .metrics import area_under_curve, bin_means, steps_to_target

NAME = "training"
TITLE = "Learning curves at equal rollout budget: VIP vs uniform, heuristics and GDRO on SoftmaxRLVR"

CONTROLLERS = ("uniform", "vip", "vip-paper", "oracle", "inverse-accuracy", "inverse-variance", "skip-saturated",
               "rollout-gdro", "prompt-gdro", "gdro-coupled")
FAMILIES = {
    "VIP and oracle": ("vip", "vip-paper", "oracle", EXACT),
    "heuristics": ("inverse-accuracy", "inverse-variance", "skip-saturated"),
    "GDRO": ("rollout-gdro", "prompt-gdro", "gdro-coupled"),
}


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}."""
    cfg = {
        "seeds": 10,
        "env": {"n_prompts": 1024, "n_test": 256, "n_answers": 16, "dim": 32, "mix": None},
        "training": {"batch": 32, "steps": 320, "lr": 0.02, "estimator": "rloo"},
        "budget": {"mean_budget": 8, "lower": 3, "upper": 24},
        "controllers": list(CONTROLLERS),
        "reference": EXACT,
        "eval_every": 8,
        "variance_every": 2,
        "pass_k": 32,
        "target_fraction": 0.8,
        "p_bins": 10,
    }
    if scale == "quick":
        cfg["seeds"] = 2
        cfg["env"].update(n_prompts=128, n_test=64)
        cfg["training"].update(batch=16, steps=24)
        cfg["eval_every"] = 4
        cfg["variance_every"] = 4
    elif scale == "full":
        cfg["seeds"] = 20
        cfg["training"]["steps"] = 480
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    """One task per (seed, learner): every controller and the exact-gradient reference."""
    learners = [*config["controllers"], config["reference"]]
    return [{"seed": int(s), "controller": name, "label": f"{name} seed {s}"} for s in seeds for name in learners]


def checkpoints(config: dict) -> list[int]:
    """Training steps at which accuracy is evaluated (0, every ``eval_every`` steps, and the end)."""
    steps = config["training"]["steps"]
    out = list(range(0, steps + 1, config["eval_every"]))
    return out if out[-1] == steps else [*out, steps]


def run_task(task: dict, config: dict) -> dict:
    """Train one learner for one seed; return its curves and diagnostics (see the module docstring)."""
    seed, name = int(task["seed"]), task["controller"]
    env = make_split_env(config["env"], seed)
    n_train = config["env"]["n_prompts"]
    train_ids = np.arange(n_train)
    test_ids = np.arange(n_train, n_train + config["env"]["n_test"])
    budget = config["budget"]
    ctrl = None if name == EXACT else make_study_controller(name, env, budget, seed)
    trainer = ControlledTrainer(env, ctrl, config["training"], n_train, seed)
    evals = set(checkpoints(config))
    k = config["pass_k"]
    p_edges = np.linspace(0.0, 1.0, config["p_bins"] + 1)
    out: dict = {"test_acc": [], "train_acc": [], "test_pass": []}
    if ctrl is not None:
        out.update(var_step=[], var_ctrl=[], var_uniform=[], signal=[], wasted=[], counts_sd=[])
        alloc = {ph: {"sum": np.zeros(config["p_bins"]), "n": np.zeros(config["p_bins"], dtype=np.int64)}
                 for ph in ("first half", "second half")}
    steps = config["training"]["steps"]
    for t in range(steps + 1):
        if t in evals:
            out["test_acc"].append(env.objective(test_ids))
            out["train_acc"].append(env.objective(train_ids))
            out["test_pass"].append(float(env.pass_at_k(test_ids, k).mean()))
        if t == steps:
            break
        ids, plan, batch = trainer.sample()
        if ctrl is not None:
            counts = batch.counts  # every round's rollouts (plan.counts for a single-round controller)
            if t % config["variance_every"] == 0:
                # exact tr Cov of the RLOO gradient with the rollouts each prompt got (prompts a
                # controller skipped are not in its gradient); a training selection that depends
                # on the outcomes (dropped groups, down-sampling) is not modelled by this measure
                sampled = counts > 0
                m2 = plan.multipliers**2
                b2 = float(ids.size) ** 2
                var_c = m2[sampled] @ env.gradient_variance(ids[sampled], counts[sampled], "rloo")
                out["var_step"].append(t)
                out["var_ctrl"].append(float(var_c) / float(sampled.sum()) ** 2)
                out["var_uniform"].append(float(m2 @ env.gradient_variance(ids, budget["mean_budget"], "rloo")) / b2)
                g = env.true_gradient(ids)
                out["signal"].append(float(g @ g))
            flat = all_equal_groups(batch)
            out["wasted"].append(float(counts[flat].sum() / counts.sum()))
            out["counts_sd"].append(float(np.std(counts)))
            p_true = env.success_prob(ids)
            pb = np.clip(np.searchsorted(p_edges, p_true, side="right") - 1, 0, config["p_bins"] - 1)
            s, c = bin_means(counts.astype(np.float64), pb, config["p_bins"])
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


def _label(name: str) -> str:
    return "exact gradient (no rollout noise)" if name == EXACT else name


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    res = {(t["seed"], t["controller"]): r for t, r in zip(tasks, results)}
    names = [*config["controllers"], config["reference"]]
    ctrl_names = list(config["controllers"])
    x = checkpoints(config)
    horizon = config["training"]["steps"]
    k = config["pass_k"]
    bud = config["budget"]

    def arr(name: str, key: str) -> np.ndarray:
        return np.array([res[(s, name)][key] for s in seeds], dtype=np.float64)

    auc = {n: np.array([area_under_curve(x, res[(s, n)]["test_acc"]) for s in seeds]) for n in names}
    auc_train = {n: np.array([area_under_curve(x, res[(s, n)]["train_acc"]) for s in seeds]) for n in names}
    final_acc = {n: arr(n, "test_acc")[:, -1] for n in names}
    final_pass = {n: arr(n, "test_pass")[:, -1] for n in names}
    acc0 = arr("uniform", "test_acc")[:, 0]
    targets = acc0 + config["target_fraction"] * (final_acc["uniform"] - acc0)
    to_target, censored = {}, {}
    for n in names:
        raw = np.array([steps_to_target(x, res[(s, n)]["test_acc"], tg) for s, tg in zip(seeds, targets)])
        censored[n] = int(np.sum(~np.isfinite(raw)))
        to_target[n] = np.where(np.isfinite(raw), raw, float(horizon))
    var_ratio = {n: np.array([np.sum(res[(s, n)]["var_ctrl"]) / np.sum(res[(s, n)]["var_uniform"]) for s in seeds])
                 for n in ctrl_names}
    noise_to_signal = {n: np.array([np.mean(np.array(res[(s, n)]["var_ctrl"]) / np.array(res[(s, n)]["signal"]))
                                    for s in seeds]) for n in ctrl_names}
    wasted = {n: arr(n, "wasted") for n in ctrl_names}
    counts_sd = {n: arr(n, "counts_sd") for n in ctrl_names}

    def diff(a: dict, n: str, m: str) -> np.ndarray:
        return a[n] - a[m]

    # ---- claims
    setting = (f"SoftmaxRLVR {config['env']['n_prompts']} train / {config['env']['n_test']} test prompts, batch "
               f"{config['training']['batch']}, {bud['mean_budget']} rollouts per prompt on average in "
               f"[{bud['lower']}, {bud['upper']}], {config['training']['estimator'].upper()}, {horizon} steps")
    headroom = mean_ci(diff(auc, EXACT, "uniform"))
    head_note = (f"{setting}; the exact-gradient learner (no rollout noise, the most any allocation can gain) is "
                 f"{headroom.format()} above uniform on the same measure")
    claims = []
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
        if a not in auc or b not in auc:
            continue
        claims.append(make_claim(
            f"training.{a.replace('-', '_')}_vs_{b.replace('-', '_')}_auc", source, statement,
            auc_metric.format(a=a, b=b), mean_ci(diff(auc, a, b)), greater=0.0, note=head_note))
    if "vip" in auc:
        claims.append(make_claim(
            "training.vip_vs_uniform_pass", "VIP Table 1 (Pass@32)",
            f"VIP ends training with a higher pass@{k} than uniform allocation at equal budget",
            f"paired difference in final test pass@{k} (exact), vip - uniform", mean_ci(diff(final_pass, "vip", "uniform")),
            greater=0.0, note=head_note.replace("the same measure", "mean accuracy over training")))
        claims.append(make_claim(
            "training.vip_vs_uniform_mean", "VIP Table 1 (Mean@32)",
            "VIP ends training with a higher mean accuracy (mean@k) than uniform allocation at equal budget",
            "paired difference in final test mean accuracy (exact), vip - uniform",
            mean_ci(diff(final_acc, "vip", "uniform")), greater=0.0,
            note=f"exact-gradient - uniform: {mean_ci(diff(final_acc, EXACT, 'uniform')).format()}"))
        claims.append(make_claim(
            "training.vip_variance_along_training", "VIP Sec. 5.2 (eq. 5)",
            "along its own training run, VIP's allocation lowers the exact variance of the RLOO batch gradient "
            "below uniform allocation of the same batches",
            "sum over checkpoints of exact tr Cov(batch gradient): vip counts / uniform counts, same batch and policy",
            mean_ci(var_ratio["vip"]), less=1.0,
            note=f"oracle reaches {mean_ci(var_ratio['oracle']).format()}" if "oracle" in var_ratio else ""))

    # ---- tables
    rows = []
    for n in names:
        d_auc = mean_ci(diff(auc, n, "uniform"))
        d_pass = mean_ci(diff(final_pass, n, "uniform"))
        rows.append((
            _label(n), mean_ci(auc[n]).mean, d_auc.mean, d_auc.low, d_auc.high, mean_ci(final_acc[n]).mean,
            mean_ci(final_pass[n]).mean, d_pass.mean, d_pass.low, d_pass.high,
            mean_ci(to_target[n]).mean, f"{censored[n]}/{len(seeds)}", mean_ci(auc_train[n]).mean,
        ))
    tables = [Table(
        f"Test accuracy at equal budget ({len(seeds)} seeds; differences are paired, 95% CI over seeds)",
        ("learner", "mean acc. over training", "diff vs uniform", "CI low", "CI high", "final mean acc.",
         f"final pass@{k}", f"pass@{k} diff vs uniform", "CI low", "CI high", "steps to target",
         "not reached", "train mean acc. over training"),
        tuple(rows),
        note=f"{setting}. Target per seed: initial + {config['target_fraction']} x (uniform's final - initial) test "
             f"accuracy; runs that never reach it count as {horizon} steps ('not reached'). exact gradient: the "
             "batch's exact gradient, no rollout noise.")]
    vrows = []
    for n in ctrl_names:
        vr, ns = mean_ci(var_ratio[n]), mean_ci(noise_to_signal[n])
        vrows.append((n, vr.mean, vr.low, vr.high, ns.mean, mean_ci(wasted[n]).mean, mean_ci(counts_sd[n]).mean))
    tables.append(Table(
        "Gradient variance along training (exact, at each learner's own checkpoints; 95% CI over seeds)",
        ("controller", "tr Cov ratio to uniform counts", "CI low", "CI high", "noise / signal (tr Cov / |grad J_B|^2)",
         "rollouts in all-equal groups", "sd of counts"),
        tuple(vrows),
        note="ratio: the controller's allocation against uniform counts on the same batch at the same policy "
             "(multipliers included); noise / signal > 1 means the batch gradient is noise-dominated."))

    # ---- figures
    mean_u, low_u, high_u = curve_ci(arr("uniform", "test_acc"))
    curves = []
    for n in ("uniform", "vip", "vip-paper", "oracle", EXACT):
        if n in names:
            curves.append(Series(_label(n), x, *curve_ci(arr(n, "test_acc")), linestyle="dashed" if n == EXACT else "solid"))
    pass_curves = [Series(_label(n), x, *curve_ci(arr(n, "test_pass")), linestyle="dashed" if n == EXACT else "solid")
                   for n in ("uniform", "vip", "vip-paper", "oracle", EXACT) if n in names]
    figures = [Figure("curves", "Learning curves at equal rollout budget (held-out prompts)", (
        Panel("mean accuracy (= mean@k)", "training step", "test mean accuracy (probability)", tuple(curves)),
        Panel(f"pass@{k}", "training step", f"test pass@{k} (probability)", tuple(pass_curves)),
    ), caption=f"Exact held-out accuracy along training (mean over {len(seeds)} seeds, 95% CI bands: mostly the "
               "spread between seeds' tasks, which the paired differences below remove). Dashed: the exact batch "
               "gradient, the ceiling for any rollout allocation.")]
    diff_panels = []
    for fam, members in FAMILIES.items():
        series = []
        for n in members:
            if n in names:
                d = arr(n, "test_acc") - arr("uniform", "test_acc")
                series.append(Series(_label(n), x, *curve_ci(d), linestyle="dashed" if n == EXACT else "solid"))
        if series:
            diff_panels.append(Panel(fam, "training step", "test accuracy - uniform's (paired)", tuple(series),
                                     hlines=((0.0, "uniform"),)))
    figures.append(Figure("differences", "Paired accuracy differences to uniform allocation", tuple(diff_panels),
                          caption="Held-out mean accuracy minus uniform's on the same seed (same task, same batches), "
                                  "95% CI over seeds; above 0 is better than uniform.", ncols=3))
    others = [n for n in names if n != "uniform"]
    pos = list(range(len(others)))
    ticks = tuple("exact grad." if n == EXACT else n for n in others)
    summary_panels = []
    for title, measure, ylab in (("mean test accuracy over training", auc, "AUC difference vs uniform (probability)"),
                                 (f"final test pass@{k}", final_pass, f"pass@{k} difference vs uniform (probability)")):
        est = [mean_ci(diff(measure, n, "uniform")) for n in others]
        summary_panels.append(Panel(title, "learner", ylab, (
            Series(title, pos, [e.mean for e in est], [e.low for e in est], [e.high for e in est], style="bar"),
        ), hlines=((0.0, ""),), xticklabels=ticks))
    figures.append(Figure("summary", "Claims' measures for every learner, paired against uniform",
                          tuple(summary_panels),
                          caption="Paired per-seed difference to uniform allocation (mean, 95% CI over seeds); the "
                                  "exact-gradient bar is the ceiling for any allocation of an unbiased estimator.",
                          ncols=2))
    vx = res[(seeds[0], ctrl_names[0])]["var_step"]
    var_panels = []
    for fam, members in FAMILIES.items():
        series = [Series(n, vx, *log_curve_ci(np.array([np.array(res[(s, n)]["var_ctrl"])
                                                        / np.array(res[(s, n)]["var_uniform"]) for s in seeds])))
                  for n in members if n in ctrl_names]
        if series:
            var_panels.append(Panel(fam, "training step", "tr Cov(batch grad.) / uniform counts'", tuple(series),
                                    hlines=((1.0, "uniform"),), yscale="log"))
    ns_series = [Series(n, vx, *log_curve_ci(np.array([np.array(res[(s, n)]["var_ctrl"]) / np.array(res[(s, n)]["signal"])
                                                       for s in seeds])))
                 for n in ("uniform", "vip", "oracle") if n in ctrl_names]
    var_panels.append(Panel("noise-to-signal ratio", "training step", "tr Cov(batch grad.) / |grad J_B|^2",
                            tuple(ns_series), yscale="log", hlines=((1.0, "noise = signal"),)))
    figures.append(Figure("variance", "Exact batch-gradient variance along training", tuple(var_panels),
                          caption="Exact tr Cov of each learner's RLOO batch gradient divided by that of uniform counts "
                                  "on the same batch and policy (below 1: the allocation reduces variance), and the "
                                  "noise-to-signal ratio of the batch gradient (geometric mean over seeds, 95% CI); "
                                  "below 1 the batch gradient is dominated by its signal, and lowering its variance "
                                  "changes the update little.", ncols=2))
    p_edges = np.linspace(0.0, 1.0, config["p_bins"] + 1)
    centres = ((p_edges[:-1] + p_edges[1:]) / 2).tolist()
    alloc_panels = []
    alloc_data = {}
    for ph in ("first half", "second half"):
        series = []
        for n in ctrl_names:
            if n == "uniform":
                continue
            per = []
            for s in seeds:
                a = res[(s, n)]["alloc_by_p"][ph]
                tot, cnt = np.array(a["sum"]), np.array(a["n"])
                per.append(np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan))
            per = np.array(per)
            ok = ~np.isnan(per).any(axis=0)
            m, lo, hi = curve_ci(per[:, ok]) if ok.any() else ([], [], [])
            alloc_data.setdefault(n, {})[ph] = per.tolist()
            if n in ("vip", "vip-paper", "oracle", "inverse-accuracy", "inverse-variance", "skip-saturated",
                     "rollout-gdro"):
                series.append(Series(n, np.array(centres)[ok], m, lo, hi, style="errorbar"))
        alloc_panels.append(Panel(f"{ph} of training", "true success probability p (bin centre)",
                                  "mean rollouts per prompt", tuple(series),
                                  hlines=((float(bud["mean_budget"]), "uniform"),)))
    figures.append(Figure("allocation", "Rollouts per prompt against the prompt's true success probability",
                          tuple(alloc_panels),
                          caption="Mean rollouts given to prompts in each true-p bin (VIP Fig. 2 analogue; mean over "
                                  "seeds with 95% CI); the dashed line is uniform allocation.", ncols=2))

    # ---- summary text
    v = mean_ci(diff(auc, "vip", "uniform")) if "vip" in auc else None
    o = mean_ci(diff(auc, "oracle", "uniform")) if "oracle" in auc else None
    held = sum(c.verdict == "holds" for c in claims)
    summary = (
        f"{setting}, {len(seeds)} seeds, paired by seed. Mean held-out accuracy over training: uniform "
        f"{mean_ci(auc['uniform']).format()}"
        + (f"; vip - uniform {v.format()}" if v else "")
        + (f"; oracle - uniform {o.format()}" if o else "")
        + f"; exact gradient (no rollout noise) - uniform {headroom.format()}. "
        + (f"VIP's allocation changes the exact batch-gradient variance by a factor {mean_ci(var_ratio['vip']).format()} "
           f"relative to uniform counts on the same batches; removing all rollout noise gains {headroom.mean:.2g}, so "
           f"a reduction by {100 * (1 - mean_ci(var_ratio['vip']).mean):.0f} % is worth roughly "
           f"{(1 - mean_ci(var_ratio['vip']).mean) * headroom.mean:.1g} (first-order reading); uniform's "
           f"noise-to-signal ratio averages {mean_ci(noise_to_signal['uniform']).format()} over training. "
           if "vip" in var_ratio else "")
        + f"{held} of {len(claims)} claims hold."
    )
    data = {
        "checkpoints": x,
        "targets": targets.tolist(),
        "auc": {n: auc[n].tolist() for n in names},
        "final_acc": {n: final_acc[n].tolist() for n in names},
        "final_pass": {n: final_pass[n].tolist() for n in names},
        "steps_to_target": {n: to_target[n].tolist() for n in names},
        "variance_ratio": {n: var_ratio[n].tolist() for n in ctrl_names},
        "alloc_by_p": alloc_data,
        "runs": {f"{s}/{n}": res[(s, n)] for s in seeds for n in names},
    }
    return StudyResult(NAME, TITLE, summary, config, seeds, tuple(claims), tuple(tables), tuple(figures), data)
