"""Study ``gdro``: Prompt-GDRO, Rollout-GDRO and their coupling vs GRPO with uniform allocation, on a
heterogeneous-difficulty :class:`sim.SoftmaxRLVR` binned online by pass@k (GDRO eq. 10-11).

Setting (chosen once from the GDRO paper's setup, App. C; not tuned on any verdict)
--------------------------------------------------------------------------------
* Task: :class:`sim.SoftmaxRLVR`, 16 answers, ``d = 32``, with a hard-skewed difficulty mixture
  (easy 10 %, medium 20 %, hard 40 %, nearly unsolvable 30 %): GDRO trains base models on DAPO,
  whose prompts start mostly in the lowest pass@8 bins (Fig. 3/5: a plurality of the data sits in
  ``accbin_0``, "heterogeneous, heavy-tailed"); with this mixture about a third of the prompts start
  in bin 0 of the online pass@4 binning. 8192 training prompts and 1024 held-out test prompts.
* Training: GRPO advantages (std-normalised, App. C.1.1) for every learner, Adam with step 0.02,
  256 prompts per step (App. C.1.1's global batch), 576 steps = 18 epochs (GDRO: 1000 steps of 256
  prompts over DAPO-14.1k, about 18 epochs, so each prompt is binned from ~18 observations as in
  the paper).
* Compute: mean budget ``n_bar = 4`` rollouts per prompt, arms ``2..12`` (App. C.1.2 / C.2.2), 10
  pass@k bins over a window of ``H = 50`` of the prompt's own observations; every adversary
  constant is the paper's (the controllers' defaults, App. C.2). GRPO = ``uniform`` (4 rollouts
  each, multipliers 1).
* Learners: ``uniform`` (GRPO), ``prompt-gdro`` (multipliers eq. 17, uniform counts),
  ``rollout-gdro`` (Rollout-GDRO counts, multipliers 1) and ``gdro-coupled`` (both; this project's
  coupling, see :class:`bandits.controllers.CoupledGDROController`). Same seed, same task, same
  mini-batches for all four (paired).

Measurements
------------
* exact held-out mean accuracy, pass@8 (``k = 8``, GDRO Table 1) and per-difficulty-class accuracy
  every ``eval_every`` steps; *worst-group accuracy* is the lowest class accuracy, with the four
  fixed difficulty classes of the task as groups (GDRO's objective eq. 13 is the worst bin; its
  online bins are relabelled every step, so a fixed grouping is what can be compared across runs);
* GDRO eq. 23's weighted standard-error proxy ``WSE(t) = sum_b q_t(b) sigma_hat_b / sqrt(n_b(t))``
  with the paper's offline ``sigma_hat_b`` (App. E.2.1: the sample standard deviation, pooled by bin
  over the run, of the per-prompt signal; our signal is the prompt loss ``1 - 2 r_bar`` the
  controllers feed Prompt-GDRO) against the compute-matched uniform ``n_b = n_bar``, and its
  ground-truth version with each prompt's exact reward standard deviation ``2 sqrt(p (1 - p))``;
  the reduction is ``mean_t WSE / mean_t WSE_uniform - 1`` over the whole run ("averaged over the
  plotted horizon");
* GDRO eq. 22's lead-lag gap ``mu_weight(t) - mu_data(t)`` (normalised Prompt-GDRO weights vs the
  batch's bin shares), the weights' normalised entropy, the mass of weights / data / rollout budget
  in bins ``>= high_bin`` (Fig. 4/7), the shadow price, and per-bin shares, weights, rollouts and
  realised rewards over training (Fig. 2/3/8), averaged over windows of ``window_steps`` steps.

Claims (what the paper claims and a simulator can test; section cited in each): Rollout-GDRO lowers
WSE against compute-matched uniform (App. E.2.1, Fig. 6b); each controller improves pass@8 over
GRPO (Sec. 1, Table 1, Key Finding 1); Prompt-GDRO improves worst-group accuracy (Sec. 1 / eq. 13);
Prompt-GDRO's weights lead the data early (positive lead-lag gap) and the gap decays (App. E.1,
Fig. 6a).
"""

from __future__ import annotations

import numpy as np

from bandits.binning import PassAtKBinner
from bandits.diagnostics import high_bin_mass, lead_lag_gap, weight_entropy
from solvers.claims import Figure, Panel, Series, StudyResult, Table, make_claim, mean_ci

from ..softmax_rlvr import DIFFICULTY_CLASSES
from ._common import curve_ci
from ._controlled import ControlledTrainer, make_split_env, make_study_controller
from .metrics import area_under_curve, bin_means, pooled_bin_std, weighted_standard_error

NAME = "gdro"
TITLE = "GDRO on heterogeneous difficulty: Prompt-GDRO, Rollout-GDRO and their coupling vs GRPO"

CONTROLLERS = ("uniform", "prompt-gdro", "rollout-gdro", "gdro-coupled")
LABELS = {"uniform": "GRPO (uniform)", "prompt-gdro": "Prompt-GDRO", "rollout-gdro": "Rollout-GDRO",
          "gdro-coupled": "coupled GDRO"}
CLASSES = list(DIFFICULTY_CLASSES)
_WEIGHTED = ("prompt-gdro", "gdro-coupled")
_BUDGETED = ("rollout-gdro", "gdro-coupled")


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}."""
    cfg = {
        "seeds": 10,
        "env": {"n_prompts": 8192, "n_test": 1024, "n_answers": 16, "dim": 32,
                "mix": {"easy": 0.1, "medium": 0.2, "hard": 0.4, "nearly-unsolvable": 0.3}},
        "training": {"batch": 256, "steps": 576, "lr": 0.02, "estimator": "grpo"},
        "budget": {"mean_budget": 4, "lower": 2, "upper": 12},
        "controllers": list(CONTROLLERS),
        "n_bins": 10,
        "window": 50,
        "eval_every": 16,
        "window_steps": 16,
        "pass_k": 8,
        "high_bin": 8,
        "phase_fraction": 0.25,
    }
    if scale == "quick":
        cfg["seeds"] = 2
        cfg["env"].update(n_prompts=256, n_test=64)
        cfg["training"].update(batch=32, steps=32)
        cfg["eval_every"] = 8
        cfg["window_steps"] = 8
    elif scale == "full":
        cfg["seeds"] = 20
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    """One task per (seed, learner)."""
    return [{"seed": int(s), "controller": n, "label": f"{n} seed {s}"} for s in seeds for n in config["controllers"]]


def checkpoints(config: dict) -> list[int]:
    steps = config["training"]["steps"]
    out = list(range(0, steps + 1, config["eval_every"]))
    return out if out[-1] == steps else [*out, steps]


def _window_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Means over consecutive windows of ``w`` rows (the last window may be shorter)."""
    n = x.shape[0]
    return np.array([x[i:i + w].mean(axis=0) for i in range(0, n, w)])


def run_task(task: dict, config: dict) -> dict:
    """Train one learner for one seed; return accuracy curves and GDRO diagnostics (module docstring)."""
    seed, name = int(task["seed"]), task["controller"]
    env = make_split_env(config["env"], seed)
    n_train = config["env"]["n_prompts"]
    test_ids = np.arange(n_train, n_train + config["env"]["n_test"])
    test_cls = env.difficulty[test_ids]
    bud = config["budget"]
    nb = int(config["n_bins"])
    opts = {"n_bins": nb, "window": config["window"]} if name != "uniform" else {}
    ctrl = make_study_controller(name, env, bud, seed, opts)
    shadow = PassAtKBinner(nb, config["window"]) if name == "uniform" else None
    trainer = ControlledTrainer(env, ctrl, config["training"], n_train, seed)
    evals = set(checkpoints(config))
    steps = config["training"]["steps"]
    k = config["pass_k"]
    nbar = float(bud["mean_budget"])
    out: dict = {"test_acc": [], "test_pass": [], "class_acc": []}
    shares = np.zeros((steps, nb))
    mean_n = np.zeros((steps, nb))
    budget_share = np.zeros((steps, nb))
    rew_sum = np.zeros((steps, nb))
    weights = np.zeros((steps, nb))
    wse_exact = np.zeros(steps)
    wse_exact_unif = np.zeros(steps)
    price = np.zeros(steps)
    sig_values, sig_bins = [], []
    for t in range(steps + 1):
        if t in evals:
            p_test = env.success_prob(test_ids)
            out["test_acc"].append(float(p_test.mean()))
            out["test_pass"].append(float(env.pass_at_k(test_ids, k).mean()))
            out["class_acc"].append([float(p_test[test_cls == c].mean()) if np.any(test_cls == c) else None
                                     for c in range(len(CLASSES))])
        if t == steps:
            break
        ids, plan, batch = trainer.sample()
        bins = plan.bins if plan.bins is not None else shadow.bins(ids)
        counts = batch.counts.astype(np.float64)  # every round's rollouts (plan.counts for a single-round controller)
        if name in _WEIGHTED:
            weights[t] = ctrl.prompt.weights
        if name in _BUDGETED:
            price[t] = ctrl.rollout.shadow_price
        r_bar = np.bincount(batch.group_ids, weights=batch.rewards, minlength=ids.size) / counts
        loss = 1.0 - 2.0 * r_bar  # the prompt loss the controllers feed Prompt-GDRO ({-1, +1} reward scale)
        sig_values.append(loss)
        sig_bins.append(bins)
        n_mean, occ = bin_means(counts, bins, nb)
        shares[t] = occ / ids.size
        mean_n[t] = n_mean
        budget_share[t] = np.bincount(bins, weights=counts, minlength=nb) / counts.sum()
        rew_sum[t] = np.bincount(bins, weights=2.0 * r_bar - 1.0, minlength=nb)
        p = env.success_prob(ids)
        sd = 2.0 * np.sqrt(p * (1.0 - p))
        wse_exact[t] = float(np.mean(sd / np.sqrt(counts)))
        wse_exact_unif[t] = float(np.mean(sd) / np.sqrt(nbar))
        if shadow is not None:
            any_correct = np.bincount(batch.group_ids, weights=(batch.rewards >= 1.0).astype(np.float64),
                                      minlength=ids.size) > 0
            shadow.update(ids, any_correct)
        trainer.update(ids, plan, batch)

    # GDRO eq. 23 with App. E.2.1's offline sigma_hat_b (pooled over this run)
    sigma = pooled_bin_std(np.concatenate(sig_values), np.concatenate(sig_bins), nb)
    wse = weighted_standard_error(shares, sigma, np.where(shares > 0, mean_n, 1.0))
    wse_unif = weighted_standard_error(shares, sigma, nbar)
    w = int(config["window_steps"])
    occ_total = _window_mean(shares, w)
    out.update(
        sigma_hat=sigma.tolist(),
        wse_ratio=float(wse.mean() / wse_unif.mean()),
        wse_exact_ratio=float(wse_exact.mean() / wse_exact_unif.mean()),
        wse=_window_mean(wse, w).tolist(),
        wse_uniform=_window_mean(wse_unif, w).tolist(),
        wse_exact=_window_mean(wse_exact, w).tolist(),
        wse_exact_uniform=_window_mean(wse_exact_unif, w).tolist(),
        shares=occ_total.tolist(),
        budget_share=_window_mean(budget_share, w).tolist(),
        # per-window mean rollouts and realised mean reward of each bin (weighted by its prompts)
        mean_rollouts=np.divide(_window_mean(shares * mean_n, w), occ_total, out=np.full(occ_total.shape, nbar),
                                where=occ_total > 0).tolist(),
        bin_reward=np.divide(_window_mean(rew_sum / trainer.sampler.batch, w), occ_total,
                             out=np.zeros(occ_total.shape), where=occ_total > 0).tolist(),
        bin_reward_present=(occ_total > 0).tolist(),
        data_high_mass=_window_mean(shares[:, config["high_bin"]:].sum(axis=1), w).tolist(),
        budget_high_mass=_window_mean(budget_share[:, config["high_bin"]:].sum(axis=1), w).tolist(),
        budget_entropy=_window_mean(weight_entropy(np.maximum(budget_share, 0.0), normalized=True), w).tolist(),
    )
    if name in _WEIGHTED:
        gap = lead_lag_gap(weights, np.maximum(shares, 0.0))
        out.update(
            weights=_window_mean(weights, w).tolist(),
            lead_lag=_window_mean(gap, w).tolist(),
            lead_lag_steps=gap.tolist(),
            weight_entropy=_window_mean(weight_entropy(weights, normalized=True), w).tolist(),
            weight_high_mass=_window_mean(high_bin_mass(weights, config["high_bin"]), w).tolist(),
        )
    if name in _BUDGETED:
        out["shadow_price"] = _window_mean(price, w).tolist()
    return out


# ------------------------------------------------------------------------------------- summary
def _phase_means(series: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed means of the first and last ``fraction`` of a (seeds, steps) array."""
    m = max(1, int(round(series.shape[1] * fraction)))
    return series[:, :m].mean(axis=1), series[:, -m:].mean(axis=1)


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    res = {(t["seed"], t["controller"]): r for t, r in zip(tasks, results)}
    names = list(config["controllers"])
    x = checkpoints(config)
    k = config["pass_k"]
    nb = config["n_bins"]
    bud = config["budget"]
    steps = config["training"]["steps"]
    w = config["window_steps"]
    wx = [(i + min(i + w, steps)) / 2.0 for i in range(0, steps, w)]  # window centres (steps)

    def arr(name: str, key: str) -> np.ndarray:
        return np.array([res[(s, name)][key] for s in seeds], dtype=np.float64)

    def class_arr(name: str) -> np.ndarray:  # (seeds, checkpoints, classes), NaN where a class is absent
        return np.array([[[np.nan if v is None else v for v in row] for row in res[(s, name)]["class_acc"]]
                         for s in seeds], dtype=np.float64)

    worst = {n: np.nanmin(class_arr(n), axis=2) for n in names}  # (seeds, checkpoints)
    final_pass = {n: arr(n, "test_pass")[:, -1] for n in names}
    final_acc = {n: arr(n, "test_acc")[:, -1] for n in names}
    auc = {n: np.array([area_under_curve(x, a) for a in arr(n, "test_acc")]) for n in names}
    rel_pass = {n: 100.0 * (final_pass[n] / final_pass["uniform"] - 1.0) for n in names}
    d_worst = {n: worst[n][:, -1] - worst["uniform"][:, -1] for n in names}
    wse_red = {n: 100.0 * (arr(n, "wse_ratio") - 1.0) for n in names}
    wse_exact_red = {n: 100.0 * (arr(n, "wse_exact_ratio") - 1.0) for n in names}
    setting = (f"SoftmaxRLVR, {config['env']['n_prompts']} train / {config['env']['n_test']} test prompts "
               f"(hard-skewed mix), batch {config['training']['batch']}, GRPO, mean {bud['mean_budget']} rollouts in "
               f"[{bud['lower']}, {bud['upper']}], {nb} pass@k bins, {steps} steps")

    claims = []
    if "rollout-gdro" in names:
        claims.append(make_claim(
            "gdro.rollout_wse", "GDRO App. E.2.1 / Fig. 6b / eq. 23",
            "Rollout-GDRO attains a lower weighted standard-error proxy (WSE) than the compute-matched uniform "
            "allocation over training",
            "relative change of WSE averaged over training vs n_b = n_bar (%), offline sigma_hat_b",
            mean_ci(wse_red["rollout-gdro"]), less=0.0,
            note="paper: -37.1 % (1.7B), -22.6 % (4B), -33.4 % (8B); exact-sigma version: "
                 f"{mean_ci(wse_exact_red['rollout-gdro']).format()} %"))
        claims.append(make_claim(
            "gdro.rollout_wse_exact", "GDRO App. E.2.1 (interpretation, ground truth)",
            "Rollout-GDRO lowers the standard error of the per-prompt mean reward (each prompt's exact reward "
            "standard deviation over sqrt(n)) against uniform allocation of the same batches",
            "relative change of mean_i 2 sqrt(p_i (1-p_i)) / sqrt(n_i) averaged over training vs n_i = n_bar (%)",
            mean_ci(wse_exact_red["rollout-gdro"]), less=0.0,
            note="the paper reads its proxy as 'more rollouts to high-variance bins'; here the variance is known"))
    for n, paper in (("prompt-gdro", "+9.0 % to +13.1 %"), ("rollout-gdro", "+9.2 % to +10.6 %")):
        if n in names:
            claims.append(make_claim(
                f"gdro.{n.replace('-', '_')}_pass{k}", "GDRO Sec. 1 / Table 1 / Key Finding 1",
                f"{LABELS[n]} improves pass@{k} over GRPO at equal compute",
                f"paired relative change of final held-out pass@{k} (exact) vs GRPO (%)", mean_ci(rel_pass[n]),
                greater=0.0, note=f"paper (Qwen3 1.7B/4B/8B, peak checkpoint): {paper}; {setting}"))
    if "prompt-gdro" in names:
        claims.append(make_claim(
            "gdro.prompt_gdro_worst_group", "GDRO Sec. 1 / eq. 13",
            "Prompt-GDRO improves worst-group accuracy over GRPO",
            "paired difference of final held-out accuracy of the worst difficulty class (exact), Prompt-GDRO - GRPO",
            mean_ci(d_worst["prompt-gdro"]), greater=0.0,
            note="groups: the task's four fixed difficulty classes; the worst is the nearly-unsolvable class"))
        ll = np.array([res[(s, "prompt-gdro")]["lead_lag_steps"] for s in seeds])
        early, late = _phase_means(ll, config["phase_fraction"])
        pct = int(round(100 * config["phase_fraction"]))
        claims.append(make_claim(
            "gdro.prompt_gdro_lead", "GDRO App. E.1 / Fig. 6a / eq. 22",
            "Prompt-GDRO's weights lead the data early in training: the lead-lag gap mu_weight - mu_data is positive",
            f"mean lead-lag gap over the first {pct} % of steps (bins)", mean_ci(early), greater=0.0,
            note="positive = the weights sit on more solvable bins than the batch's prompts; first-epoch steps "
                 "(all prompts unseen, in bin 0) are included"))
        claims.append(make_claim(
            "gdro.prompt_gdro_lead_decays", "GDRO App. E.1 / Fig. 6a",
            "the lead-lag gap decays over training (the weights and the data progressively align)",
            f"|mean gap over the first {pct} %| minus |mean gap over the last {pct} %| of steps (bins)",
            mean_ci(np.abs(early) - np.abs(late)), greater=0.0,
            note=f"first {pct} %: {mean_ci(early).format()}, last {pct} %: {mean_ci(late).format()}; in the first "
                 "epoch every prompt is unseen and sits in bin 0 (eq. 11 with an empty window), so the gap starts at "
                 "the weights' mean bin"))

    # ---- tables
    rows = []
    for n in names:
        rp, dw = mean_ci(rel_pass[n]), mean_ci(d_worst[n])
        rows.append((LABELS[n], mean_ci(final_acc[n]).mean, mean_ci(auc[n]).mean, mean_ci(final_pass[n]).mean,
                     rp.mean, rp.low, rp.high, mean_ci(worst[n][:, -1]).mean, dw.mean, dw.low, dw.high))
    tables = [Table(
        f"Held-out accuracy at equal compute ({len(seeds)} seeds; paired differences vs GRPO, 95% CI)",
        ("learner", "final mean acc.", "mean acc. over training", f"final pass@{k}", f"pass@{k} change vs GRPO (%)",
         "CI low", "CI high", "worst-class acc.", "diff vs GRPO", "CI low", "CI high"),
        tuple(rows), note=setting)]
    crow = []
    for n in names:
        ca = class_arr(n)[:, -1, :]
        crow.append((LABELS[n], *[mean_ci(ca[:, c][~np.isnan(ca[:, c])]).mean for c in range(len(CLASSES))]))
    tables.append(Table("Final held-out accuracy per difficulty class (mean over seeds)",
                        ("learner", *CLASSES), tuple(crow)))
    drows = []
    for n in names:
        wr, we = mean_ci(wse_red[n]), mean_ci(wse_exact_red[n])
        row = [LABELS[n], wr.mean, wr.low, wr.high, we.mean, we.low, we.high,
               mean_ci(arr(n, "budget_high_mass").mean(axis=1)).mean, mean_ci(arr(n, "data_high_mass").mean(axis=1)).mean]
        if n in _WEIGHTED:
            ll = np.array([res[(s, n)]["lead_lag_steps"] for s in seeds])
            e, l_ = _phase_means(ll, config["phase_fraction"])
            row += [mean_ci(e).mean, mean_ci(l_).mean, mean_ci(arr(n, "weight_entropy").mean(axis=1)).mean,
                    mean_ci(arr(n, "weight_high_mass").mean(axis=1)).mean]
        else:
            row += ["", "", "", ""]
        drows.append(tuple(row))
    hb = config["high_bin"]
    tables.append(Table(
        "GDRO diagnostics (means over training and seeds; WSE changes with 95% CI)",
        ("learner", "WSE change (%)", "CI low", "CI high", "exact-sigma WSE change (%)", "CI low", "CI high",
         f"budget share bins >= {hb}", f"data share bins >= {hb}", "lead-lag early", "lead-lag late",
         "weight entropy (norm.)", f"weight mass bins >= {hb}"),
        tuple(drows),
        note="WSE: GDRO eq. 23 with sigma_hat_b pooled over the run (App. E.2.1), relative to n_b = n_bar on the same "
             "bins and shares; exact-sigma: each prompt's exact reward sd. Early/late: first/last "
             f"{int(100 * config['phase_fraction'])} % of steps. For GRPO the bins are an observer's (same binner)."))

    # ---- figures
    def band(values: np.ndarray) -> tuple:
        return curve_ci(values)

    acc_panels = (
        Panel("mean accuracy", "training step", "held-out mean accuracy (probability)",
              tuple(Series(LABELS[n], x, *band(arr(n, "test_acc"))) for n in names)),
        Panel(f"pass@{k}", "training step", f"held-out pass@{k} (probability)",
              tuple(Series(LABELS[n], x, *band(arr(n, "test_pass"))) for n in names)),
        Panel("worst group (nearly-unsolvable class)", "training step", "worst-class accuracy (probability)",
              tuple(Series(LABELS[n], x, *band(worst[n])) for n in names)),
        Panel(f"pass@{k} vs GRPO (paired)", "training step", f"pass@{k} - GRPO's (probability)",
              tuple(Series(LABELS[n], x, *band(arr(n, "test_pass") - arr("uniform", "test_pass")))
                    for n in names if n != "uniform"), hlines=((0.0, "GRPO"),)),
    )
    figures = [Figure("accuracy", "Held-out accuracy at equal compute", acc_panels,
                      caption=f"Exact held-out accuracy, pass@{k} and worst-class accuracy over training (mean over "
                              f"{len(seeds)} seeds, 95% CI bands); last panel: paired difference to GRPO.")]
    bin_labels = [f"bin {b}" + (" (hardest)" if b == 0 else " (easiest)" if b == nb - 1 else "") for b in range(nb)]
    if "prompt-gdro" in names:
        sh = np.array([res[(s, "prompt-gdro")]["shares"] for s in seeds]).mean(axis=0)
        wt = np.array([res[(s, "prompt-gdro")]["weights"] for s in seeds]).mean(axis=0)
        rw = np.array([res[(s, "prompt-gdro")]["bin_reward"] for s in seeds])
        pres = np.array([res[(s, "prompt-gdro")]["bin_reward_present"] for s in seeds])
        rw_mean = np.where(pres.sum(axis=0) > 0, (rw * pres).sum(axis=0) / np.maximum(pres.sum(axis=0), 1), np.nan)
        figures.append(Figure("prompt_gdro_bins", "Prompt-GDRO: data share, adversary weights and reward by bin "
                                                  "(GDRO Fig. 3 analogue)", (
            Panel("prompt share (data)", "training step", "share of the batch's prompts",
                  tuple(Series(bin_labels[b], wx, sh[:, b]) for b in range(nb))),
            Panel("adversary weights", "training step", "normalised Prompt-GDRO weight",
                  tuple(Series(bin_labels[b], wx, wt[:, b]) for b in range(nb))),
            Panel("realised reward", "training step", "mean reward in {-1, +1} (bin mean)",
                  tuple(Series(bin_labels[b], wx, rw_mean[:, b]) for b in range(nb))),
        ), caption=f"Per pass@k bin, averaged over {len(seeds)} seeds and windows of {w} steps (bin 0 = lowest "
                   "pass rate). GDRO Fig. 3 shows these as heatmaps.", ncols=3))
    ll_series = [Series(LABELS[n], wx, *band(arr(n, "lead_lag"))) for n in names if n in _WEIGHTED]
    ent_series = [Series(LABELS[n], wx, *band(arr(n, "weight_entropy"))) for n in names if n in _WEIGHTED]
    mass_series = [Series(f"{LABELS[n]} weights", wx, *band(arr(n, "weight_high_mass"))) for n in names
                   if n in _WEIGHTED]
    mass_series += [Series(f"data (under {LABELS[n]})", wx, *band(arr(n, "data_high_mass")), linestyle="dashed")
                    for n in names if n in _WEIGHTED]
    if ll_series:
        figures.append(Figure("lead_lag", "Prompt-GDRO diagnostics (GDRO Fig. 4 / 6a)", (
            Panel("lead-lag gap (eq. 22)", "training step", "mu_weight - mu_data (bins)", tuple(ll_series),
                  hlines=((0.0, "no lead"),)),
            Panel("weight entropy", "training step", "entropy / log B", tuple(ent_series)),
            Panel(f"mass in bins >= {hb}", "training step", "share", tuple(mass_series)),
        ), caption="Positive lead-lag gap: the adversary's weights sit on more solvable bins than the batch's prompts "
                   f"(95% CI over seeds, windows of {w} steps).", ncols=3))
    wse_panels = []
    for n in names:
        if n in _BUDGETED:
            wse_panels.append(Panel(f"{LABELS[n]}: WSE (eq. 23)", "training step", "WSE (reward units, {-1, +1})", (
                Series(LABELS[n], wx, *band(arr(n, "wse"))),
                Series("compute-matched uniform", wx, *band(arr(n, "wse_uniform")), linestyle="dashed"),
            )))
    for title, key in (("offline sigma_hat_b (eq. 23, App. E.2.1)", "wse"), ("exact per-prompt sigma", "wse_exact")):
        rel = tuple(Series(LABELS[n], wx, *band(100.0 * (arr(n, key) / arr(n, f"{key}_uniform") - 1.0)))
                    for n in names if n in _BUDGETED)
        if rel:
            wse_panels.append(Panel(f"change vs uniform, {title}", "training step", "WSE change (%)", rel,
                                    hlines=((0.0, "uniform"), (-22.6, "paper: -22.6 %"), (-37.1, "-37.1 %"))))
    if wse_panels:
        figures.append(Figure("wse", "Rollout-GDRO weighted standard-error proxy (GDRO Fig. 6b)", tuple(wse_panels),
                              caption="WSE with the paper's offline per-bin sigma_hat against n_b = n_bar on the same "
                                      "bins and shares, and its change relative to that baseline, also with each "
                                      "prompt's exact reward sd (95% CI over seeds); below 0 % the allocation lowers "
                                      "the proxy.", ncols=2))
    if "rollout-gdro" in names:
        mr = np.array([res[(s, "rollout-gdro")]["mean_rollouts"] for s in seeds]).mean(axis=0)
        shr = np.array([res[(s, "rollout-gdro")]["shares"] for s in seeds]).mean(axis=0)
        bsh = np.array([res[(s, "rollout-gdro")]["budget_share"] for s in seeds]).mean(axis=0)
        nwin = mr.shape[0]
        snaps = sorted({0, nwin // 4, nwin // 2, nwin - 1})
        figures.append(Figure("rollout_budget", "Rollout-GDRO: rollouts per prompt by pass@k bin (GDRO Fig. 2 / 7)", (
            Panel("rollouts per prompt by bin", "training step", "mean rollouts per prompt",
                  tuple(Series(bin_labels[b], wx, mr[:, b]) for b in range(nb)),
                  hlines=((float(bud["mean_budget"]), "n_bar"),)),
            Panel("shadow price", "training step", "shadow price mu (dual variable)",
                  (Series(LABELS["rollout-gdro"], wx, *band(arr("rollout-gdro", "shadow_price"))),)),
        ), caption=f"Mean rollouts given to a prompt of each bin (mean over {len(seeds)} seeds, windows of {w} steps; "
                   "bin 0 = lowest pass rate) and the budget's shadow price.", ncols=2))
        panels = []
        for j in snaps:
            panels.append(Panel(f"steps {int(wx[j] - w / 2)}-{int(min(wx[j] + w / 2, steps))}", "pass@k bin",
                                "share", (
                Series("dataset share", list(range(nb)), shr[j], style="bar"),
                Series("rollout budget share", list(range(nb)), bsh[j], style="bar"),
            ), xticklabels=tuple(str(b) for b in range(nb))))
        figures.append(Figure("budget_snapshots", "Rollout-GDRO's allocation economy (GDRO Fig. 8 analogue)",
                              tuple(panels), caption="At four snapshots, each bin's share of the prompts against its "
                                                     f"share of the rollout budget (mean over {len(seeds)} seeds); a "
                                                     "budget bar above the data bar: more than n_bar rollouts per "
                                                     "prompt.", ncols=2))

    held = sum(c.verdict == "holds" for c in claims)
    summary = (
        f"{setting}, {len(seeds)} seeds, paired by seed. Final held-out pass@{k}: "
        + ", ".join(f"{LABELS[n]} {mean_ci(final_pass[n]).format()}" for n in names)
        + ". Relative to GRPO: "
        + ", ".join(f"{LABELS[n]} {mean_ci(rel_pass[n]).format()} %" for n in names if n != "uniform")
        + (f". Rollout-GDRO's WSE vs compute-matched uniform: {mean_ci(wse_red['rollout-gdro']).format()} % (paper "
           f"-22.6 % to -37.1 %); with exact sigma {mean_ci(wse_exact_red['rollout-gdro']).format()} %"
           if "rollout-gdro" in names else "")
        + f". {held} of {len(claims)} claims hold."
    )
    data = {
        "checkpoints": x, "window_centres": wx,
        "final_pass": {n: final_pass[n].tolist() for n in names},
        "relative_pass_change_pct": {n: rel_pass[n].tolist() for n in names},
        "worst_class_final": {n: worst[n][:, -1].tolist() for n in names},
        "wse_change_pct": {n: wse_red[n].tolist() for n in names},
        "wse_exact_change_pct": {n: wse_exact_red[n].tolist() for n in names},
        "runs": {f"{s}/{n}": {kk: v for kk, v in res[(s, n)].items() if kk != "lead_lag_steps"}
                 for s in seeds for n in names},
    }
    return StudyResult(NAME, TITLE, summary, config, seeds, tuple(claims), tuple(tables), tuple(figures), data)
