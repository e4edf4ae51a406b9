"""Study ``peers``: every controller head to head at equal rollouts per step -- the project's
allocation rules and the peers' (Knapsack RL, Reinforce-Ada, GRESO, DAPO dynamic sampling, AR3PO)
-- with a ranking, its 95 % intervals, and the peers' claims against uniform allocation.

Regime and how it was chosen
----------------------------
One regime, ``powered``: the ``training`` study's regime of that name, imported from
:func:`sim.studies.training.config` (never copied, so the two stay the same): :class:`sim.SoftmaxRLVR`
with ``d = 128``, 32 topics, no shared skill, a hard difficulty mixture easy / medium / hard /
nearly-unsolvable = 5 / 15 / 60 / 20 %, 1024 training and 256 held-out prompts, 16 answers, a mean
budget of 4 rollouts per prompt within ``[2, 12]``, batch 32, Adam step 0.02, RLOO, 320 steps. It
was chosen -- by the ``training`` study, before any controller ran in it -- because its positive
controls pass there: uniform allocation at twice the budget and the exact gradient both lead
uniform's learning-curve area by more than its claims' minimum detectable effect (the training
study's docstring gives the pilot's numbers). The ``training`` study's ``default`` regime is not
run here: its controls fail (rollout noise is a few percent of the batch gradient's signal), so
every comparison there is under-powered by construction. The summary prints the controls measured
in this run.

Learners (paired: same seed, same task, same mini-batches)
----------------------------------------------------------
Every name of :data:`CANDIDATES` that is registered in :data:`bandits.controllers.CONTROLLERS`
when the configuration is built (the configuration records the list that ran), each with its
registered defaults -- constants from the papers or their public code, as each controller's
docstring says; nothing is tuned on this study's outcome -- plus the two positive-control arms of
:mod:`sim.studies._controlled`: ``uniform-2x`` (uniform at twice the mean budget) and
``exact-gradient`` (the mini-batch's exact gradient, no rollout noise). Controllers that sample in
rounds are driven round by round through :func:`bandits.controllers.sample_step` by
:class:`sim.studies._controlled.ControlledTrainer`.

Equal compute. Every controller gets the same budget, ``batch * mean_budget`` rollouts per step,
and every rollout of every round counts against it -- including the rollouts of groups a controller
then drops from the gradient. Single-round controllers spend it exactly; controllers that sample
in rounds spend at most it (they stop when their rule says so), and the study reports what each
actually spent. No controller may carry unspent rollouts to a later step.

Measurements per (seed, learner)
--------------------------------
* exact held-out mean accuracy ``mean_q p_q(theta)`` every ``eval_every`` steps; its normalised
  area under the curve (AUC: mean accuracy over training) and its final value;
* rollouts per prompt actually generated per step (every round);
* wasted rollouts: the share of all generated rollouts that fell in groups whose rewards were all
  equal (zero RLOO/GRPO advantage, no learning signal), whatever the controller did with them;
* the share of generated rollouts that entered the gradient (a controller's training selection
  drops groups or down-samples), prompts left without rollouts, responses reused (AR3PO);
* generation rounds per step: the number of sequential generation calls a step needs. It is this
  study's deterministic measure of a controller's cost in time beyond its rollouts -- in an LLM
  run, every round is a separate generation pass whose latency adds up -- counted, not timed.

Wall time. A study's results are a deterministic function of its seeds, so no clock reading goes
into them. The runner's ``timings.json`` holds the wall time of every task (``task_seconds[i]``
for ``tasks[i]``, i.e. one learner's whole run: divide by the steps for the time per step; it
includes the simulator's own work and depends on the machine and its load), and the
``controllers`` perf suite (``robust-rollouts perf controllers``) times each controller's own
per-step bookkeeping.

Statistics
----------
Differences to uniform are paired by seed (Student-t 95 % intervals). Ranking: learners ordered by
mean AUC; the 95 % interval of each rank comes from resampling the seeds (percentile bootstrap,
``rank_resamples`` resamples drawn from a generator seeded by the seeds themselves, so the
interval is a deterministic function of the seeds; resampling a seed keeps all its learners
together, which keeps the pairing). Which differences are significant: every controller's paired
AUC (and final-accuracy) difference to uniform gets a two-sided t-test, and Holm's step-down
procedure controls the family-wise error at ``alpha`` over the family of controllers (the two
control arms are reported but are not part of the family).

Claims (key ``peers.powered.<claim>``): each peer's paper reports that its method beats GRPO's
uniform allocation at equal or lower compute; tested here as "X beats uniform at equal rollouts"
on the AUC, each with both positive controls (:func:`sim.studies._common.binding_control`: the
verdict is *under-powered* unless both arms lead uniform by at least the claim's minimum detectable
effect).

Budget. Not a default study: ``robust-rollouts study peers`` runs it. Measured as CPU time
(``time.process_time`` around each task, on a loaded 2-core machine; CPU time depends little on the
load), one seed of the 15 controllers and 2 arms at the default scale costs 11.4 s (0.24 s for
``exact-gradient`` to 0.93 s for ``dapo-dynamic`` per learner), so the default 32 seeds take about
365 task-seconds: about 3 minutes on 2 cores (each further registered controller adds about 0.7 s
per seed). On the same loaded machine the whole default run (``--jobs 2``) took 387 s of wall time
and 754 task-seconds (wall time inside the workers, inflated by the load). ``--quick`` (2 seeds,
the training study's quick ``powered`` regime: d = 32, 24 steps) takes about 1.4 task-seconds.
"""

from __future__ import annotations

import math

import numpy as np

from solvers.claims import (
    Estimate,
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    holm,
    make_claim,
    mean_ci,
    one_sided_p_value,
)

from . import training
from ._common import binding_control, curve_ci, stream
from ._controlled import (
    EXACT,
    UNIFORM_2X,
    ControlledTrainer,
    all_equal_groups,
    make_learner,
    make_split_env,
)
from .metrics import area_under_curve

NAME = "peers"
TITLE = "Head to head at equal rollouts per step: every allocation controller, the peers' included"

ORIGINAL = ("uniform", "vip", "vip-paper", "oracle", "inverse-accuracy", "inverse-variance", "skip-saturated",
            "rollout-gdro", "prompt-gdro", "gdro-coupled")
"""The project's controllers (VIP, its heuristics, GDRO) and uniform allocation."""
PEERS = ("knapsack", "reinforce-ada", "greso", "dapo-dynamic", "ar3po")
"""The peers' controllers."""
CANDIDATES = (*ORIGINAL, *PEERS, "sqrt-law")
"""Every controller the study runs when it is registered in :data:`bandits.controllers.CONTROLLERS`."""
ARMS = (UNIFORM_2X, EXACT)
"""The positive-control arms run beside the controllers."""
REGIME = "powered"
"""The regime (the ``training`` study's regime of that name)."""
SCALE_FACTOR = 5.0
"""A panel of paired differences holds learners whose differences are within this factor of its largest."""

PEER_CLAIMS = {
    "knapsack": (
        "Knapsack RL (arXiv:2509.25849), abstract",
        ("Knapsack RL's value-maximising split of the rollout budget trains better than uniform allocation "
         "(GRPO's fixed group size) at the same rollouts per step (the paper: 2-4 points on average at equal "
         "budget)"),
    ),
    "reinforce-ada": (
        "Reinforce-Ada (arXiv:2510.04996), abstract",
        ("Reinforce-Ada's adaptive sampling in rounds (balanced variant) accelerates convergence and improves final "
         "performance over GRPO with uniform sampling -- tested with every round's rollouts counted against the "
         "same per-step budget"),
    ),
    "greso": (
        "GRESO (arXiv:2506.02177), abstract",
        ("GRESO's skipping of prompts predicted uninformative spends the budget where it pays: at the same "
         "rollouts per step it trains better than uniform allocation (the paper: no loss of accuracy with up to "
         "2.4x less rollout time)"),
    ),
    "dapo-dynamic": (
        "DAPO (arXiv:2503.14476), Sec. 3.2 (dynamic sampling)",
        ("DAPO's dynamic sampling (drop all-equal groups, refill until the batch is full) trains better than "
         "uniform allocation -- tested with the rollouts of dropped groups counted against the same per-step "
         "budget"),
    ),
    "ar3po": (
        "AR3PO (arXiv:2509.25808), abstract",
        ("AR3PO's adaptive rollout in stages with response reuse outperforms GRPO with uniform sampling at lower "
         "rollout cost -- tested at the same per-step budget"),
    ),
}
"""The peers' claims: name -> (source, statement)."""


def registered(names=CANDIDATES) -> list[str]:
    """The names of ``names`` registered in :data:`bandits.controllers.CONTROLLERS`, in order."""
    from bandits.controllers import CONTROLLERS

    return [n for n in names if n in CONTROLLERS]


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"}: the ``training`` study's
    ``powered`` regime at that scale (environment, training, budget, evaluation grid)."""
    if scale not in ("quick", "default", "full"):
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    powered = training.config(scale)["regimes"][REGIME]
    regime = {k: powered[k] for k in ("env", "training", "budget", "eval_every")}
    return {
        "seeds": {"quick": 2, "default": 32, "full": 64}[scale],
        "regimes": {REGIME: regime},
        "controllers": registered(),
        "arms": list(ARMS),
        "rank_resamples": 2000,
        "alpha": 0.05,
    }


def learners(config: dict) -> list[str]:
    """The controllers, then the control arms."""
    return [*config["controllers"], *config["arms"]]


def tasks(config: dict, seeds) -> list[dict]:
    """One task per (regime, seed, learner)."""
    return [{"regime": reg, "seed": int(s), "controller": name, "label": f"{name} seed {s}"}
            for reg in config["regimes"] for s in seeds for name in learners(config)]


def run_task(task: dict, config: dict) -> dict:
    """Train one learner for one seed; return its held-out curve and what its steps spent."""
    seed, name = int(task["seed"]), task["controller"]
    reg = config["regimes"][task["regime"]]
    env = make_split_env(reg["env"], seed)
    n_train, n_test = reg["env"]["n_prompts"], reg["env"]["n_test"]
    ctrl = make_learner(name, env, reg["budget"], seed)
    trainer = ControlledTrainer(env, ctrl, reg["training"], n_train, seed)
    test_ids = np.arange(n_train, n_train + n_test)
    evals = set(training.checkpoints(reg))
    steps = reg["training"]["steps"]
    acc: list[float] = []
    spent = wasted = trained = rounds = skipped = reused = 0
    max_rounds = 0
    for t in range(steps + 1):
        if t in evals:
            acc.append(float(env.success_prob(test_ids).mean()))
        if t == steps:
            break
        ids, plan, batch = trainer.sample()
        if ctrl is not None:
            step = trainer.last_step
            counts = batch.counts
            spent += int(counts.sum())
            wasted += int(counts[all_equal_groups(batch)].sum())
            trained += int(step.selection.train_mask.sum())
            rounds += len(step.rounds)
            max_rounds = max(max_rounds, len(step.rounds))
            skipped += int(np.sum(counts == 0))
            if step.selection.reuse is not None:
                reused += int(np.sum(step.selection.reuse & (trainer.bank[ids] >= 0)))
        trainer.update(ids, plan, batch)
    out: dict = {"test_acc": acc}
    if ctrl is not None:
        prompts = steps * reg["training"]["batch"]
        out.update(spent_per_prompt=spent / prompts, wasted=wasted / spent, trained=trained / spent,
                   rounds=rounds / steps, max_rounds=max_rounds, skipped=skipped / prompts,
                   reused=reused / steps)
    return out


# ------------------------------------------------------------------------------------- summary
def two_sided_p(est: Estimate) -> float:
    """Two-sided p-value of a paired t-test of ``mean = 0`` (NaN when the interval is undefined)."""
    p = 2.0 * min(one_sided_p_value(est, greater=0.0), one_sided_p_value(est, less=0.0))
    return min(p, 1.0) if math.isfinite(p) else math.nan


def rank_intervals(auc: dict[str, np.ndarray], seeds: tuple, resamples: int) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap 95 % interval of each learner's rank by mean AUC (1 = best), resampling
    seeds (all learners of a seed together); the generator is seeded by ``seeds``."""
    names = list(auc)
    mat = np.array([auc[n] for n in names])  # (learners, seeds)
    rng = stream(len(seeds), *seeds, 0x7A4C)
    pick = rng.integers(0, mat.shape[1], size=(resamples, mat.shape[1]))
    means = mat[:, pick].mean(axis=2)  # (learners, resamples)
    ranks = np.empty_like(means)
    order = np.argsort(-means, axis=0, kind="stable")
    np.put_along_axis(ranks, order, np.arange(1, len(names) + 1, dtype=np.float64)[:, None]
                      * np.ones((1, resamples)), axis=0)
    lo, hi = np.percentile(ranks, [2.5, 97.5], axis=1, method="nearest")
    return {n: (float(lo[i]), float(hi[i])) for i, n in enumerate(names)}


class _Regime:
    """Per-seed measures of the regime (arrays over seeds, paired)."""

    def __init__(self, name: str, config: dict, seeds: tuple, res: dict) -> None:
        self.name, self.seeds = name, seeds
        self.reg = config["regimes"][name]
        self.names = learners(config)
        self.ctrl_names = list(config["controllers"])
        self.res = {n: [res[(name, s, n)] for s in seeds] for n in self.names}
        self.x = training.checkpoints(self.reg)
        self.acc = {n: np.array([r["test_acc"] for r in self.res[n]], dtype=np.float64) for n in self.names}
        self.auc = {n: np.array([area_under_curve(self.x, a) for a in self.acc[n]]) for n in self.names}
        self.final = {n: self.acc[n][:, -1] for n in self.names}
        self.cost = {key: {n: np.array([r[key] for r in self.res[n]], dtype=np.float64)
                           for n in self.names if n != EXACT}
                     for key in ("spent_per_prompt", "wasted", "trained", "rounds", "max_rounds", "skipped", "reused")}
        self.d_auc = {n: mean_ci(self.auc[n] - self.auc["uniform"]) for n in self.names}
        self.d_final = {n: mean_ci(self.final[n] - self.final["uniform"]) for n in self.names}
        family = [n for n in self.ctrl_names if n != "uniform"]
        self.p_auc = {n: two_sided_p(self.d_auc[n]) for n in self.names if n != "uniform"}
        self.p_final = {n: two_sided_p(self.d_final[n]) for n in self.names if n != "uniform"}
        self.holm_auc = holm({n: self.p_auc[n] for n in family}, alpha=config["alpha"]) if family else {}
        self.holm_final = holm({n: self.p_final[n] for n in family}, alpha=config["alpha"]) if family else {}
        self.ranking = sorted(self.names, key=lambda n: -float(np.mean(self.auc[n])))
        self.rank_ci = rank_intervals(self.auc, seeds, int(config["rank_resamples"]))
        self.controls = {f"{arm} - uniform": self.d_auc[arm] for arm in ARMS if arm in self.auc}
        bud, tr = self.reg["budget"], self.reg["training"]
        self.setting = (
            f"SoftmaxRLVR d = {self.reg['env']['dim']}, {self.reg['env']['n_prompts']} train / "
            f"{self.reg['env']['n_test']} test prompts, batch {tr['batch']}, {bud['mean_budget']} rollouts per prompt "
            f"and step on average in [{bud['lower']}, {bud['upper']}], {tr['estimator'].upper()}, {tr['steps']} steps")

    def significance(self, n: str, holm_map: dict, d: dict) -> str:
        """``better`` / ``worse`` (Holm-significant, by the sign of the mean), ``n.s.``, or what ``n`` is."""
        if n == "uniform":
            return "baseline"
        if n not in holm_map:
            return "control arm"
        if not holm_map[n]:
            return "n.s."
        return "better" if d[n].mean > 0 else "worse"


def _key(regime: str, claim: str) -> str:
    return f"peers.{claim}" if regime == "default" else f"peers.{regime}.{claim}"


def _claims(g: _Regime) -> list:
    claims = []
    for n, (source, statement) in PEER_CLAIMS.items():
        if n not in g.auc:
            continue
        est = g.d_auc[n]
        label, ctrl, other = binding_control(est, g.controls, greater=0.0)
        c = g.cost
        note = (f"{g.setting}; {n} generated {mean_ci(c['spent_per_prompt'][n]).format()} rollouts per prompt and "
                f"step against uniform's {mean_ci(c['spent_per_prompt']['uniform']).format()}, "
                f"{100 * mean_ci(c['wasted'][n]).mean:.0f} % of them in all-equal groups (uniform "
                f"{100 * mean_ci(c['wasted']['uniform']).mean:.0f} %), {100 * mean_ci(c['trained'][n]).mean:.0f} % "
                f"entered the gradient"
                + (f", {100 * mean_ci(c['skipped'][n]).mean:.0f} % of the batch's prompts got no rollout"
                   if mean_ci(c["skipped"][n]).mean > 0 else "")
                + (f", {mean_ci(c['reused'][n]).mean:.2f} earlier correct responses reused per step"
                   if mean_ci(c["reused"][n]).mean > 0 else "")
                + f", {mean_ci(c['rounds'][n]).mean:.2f} generation rounds per step; final accuracy "
                f"- uniform's {g.d_final[n].format()}; rank {g.ranking.index(n) + 1} of {len(g.names)} by mean AUC "
                f"(95 % interval {g.rank_ci[n][0]:.0f}-{g.rank_ci[n][1]:.0f})")
        claims.append(make_claim(
            _key(g.name, f"{n.replace('-', '_')}_vs_uniform_auc"), source, statement,
            f"paired difference in mean held-out accuracy over training (normalised AUC), {n} - uniform, at "
            f"{g.reg['budget']['mean_budget']} rollouts per prompt and step (every round counted)",
            est, greater=0.0, control=ctrl, control_label=label, regime=g.name,
            note="; ".join(x for x in (other, note) if x)))
    return claims


def _tables(g: _Regime) -> list[Table]:
    rows = []
    for pos, n in enumerate(g.ranking, start=1):
        a, da, df = mean_ci(g.auc[n]), g.d_auc[n], g.d_final[n]
        lo, hi = g.rank_ci[n]
        rows.append((pos, n, f"{lo:.0f}-{hi:.0f}", a.mean, a.low, a.high, da.mean, da.low, da.high,
                     g.p_auc.get(n, math.nan), g.significance(n, g.holm_auc, g.d_auc),
                     mean_ci(g.final[n]).mean, df.mean, df.low, df.high, g.significance(n, g.holm_final, g.d_final)))
    crow = []
    budget = float(g.reg["budget"]["mean_budget"])
    for n in g.ranking:
        if n == EXACT:
            continue
        c = {k: mean_ci(v[n]) for k, v in g.cost.items()}
        crow.append((n, c["spent_per_prompt"].mean, c["spent_per_prompt"].low, c["spent_per_prompt"].high,
                     c["spent_per_prompt"].mean / budget, c["wasted"].mean, c["wasted"].low, c["wasted"].high,
                     c["trained"].mean, c["skipped"].mean, c["rounds"].mean, float(np.max(g.cost["max_rounds"][n])),
                     c["reused"].mean))
    fam = len(g.holm_auc)
    return [
        Table(f"Ranking by mean held-out accuracy over training ({len(g.seeds)} seeds, paired; 95% CIs)",
              ("rank", "learner", "rank 95% interval", "AUC", "CI low", "CI high", "AUC - uniform", "CI low",
               "CI high", "p (two-sided)", "Holm vs uniform", "final acc.", "final - uniform", "CI low", "CI high",
               "Holm (final)"),
              tuple(rows),
              note=f"{g.setting}. AUC: normalised area under the held-out mean-accuracy curve (mean accuracy over "
                   f"training). Rank interval: percentile bootstrap over seeds. Holm: step-down correction at "
                   f"family-wise 5% over the {fam} controllers' paired two-sided t-tests against uniform (better / "
                   f"worse: significant after correction; n.s.: not); the control arms (uniform-2x: twice the "
                   f"budget; exact-gradient: no rollout noise) are outside the family."),
        Table("What each learner spent per step (mean over seeds, 95% CI)",
              ("learner", "rollouts per prompt", "CI low", "CI high", "share of budget", "in all-equal groups",
               "CI low", "CI high", "share in the gradient", "prompts skipped", "generation rounds per step",
               "most rounds in a step", "reused responses per step"),
              tuple(crow),
              note=f"Every rollout of every round counted; budget {g.reg['budget']['mean_budget']} rollouts per "
                   f"prompt and step (uniform-2x: twice that). In all-equal groups: share of generated rollouts in "
                   f"groups with identical rewards (no advantage: wasted). Share in the gradient: generated rollouts "
                   f"the controller's training selection kept. Generation rounds: sequential generation calls per "
                   f"step (each a separate pass in an LLM run: the step's latency beyond its rollouts)."),
    ]


def _style(n: str) -> str:
    return "dashed" if n in ARMS else "solid"


def _figures(g: _Regime) -> list[Figure]:
    order = g.ranking
    auc = {n: mean_ci(g.auc[n]) for n in order}
    rank_series = tuple(Series(n, [i], [auc[n].mean], [auc[n].low], [auc[n].high], style="errorbar",
                               linestyle=_style(n)) for i, n in enumerate(order))
    rci = tuple(Series(n, [i], [float(i + 1)], [g.rank_ci[n][0]], [g.rank_ci[n][1]], style="errorbar",
                       linestyle=_style(n)) for i, n in enumerate(order))
    figs = [Figure(
        "ranking", "Ranking of every learner by mean held-out accuracy over training",
        (Panel(f"{g.name}: mean accuracy over training", "learner (ranked)", "AUC (mean held-out accuracy)",
               rank_series, xticklabels=tuple(order)),
         Panel(f"{g.name}: rank (1 = best)", "learner (ranked)", "rank, 95% bootstrap interval", rci,
               xticklabels=tuple(order))),
        caption="Left: normalised AUC per learner (mean and 95% CI over seeds; the interval is mostly the spread "
                "between seeds' tasks, which pairing removes: see the differences figure). Right: the rank with a "
                "95% interval from resampling seeds (all learners of a seed together). Dashed: the positive-control "
                "arms.", ncols=2)]
    ctrl = [n for n in order if n not in ARMS and n != "uniform"]
    diffs = []
    for title, ylabel, d, names in (
        ("controllers: AUC", "AUC $-$ uniform's (paired)", g.d_auc, ctrl),
        ("positive controls: AUC", "AUC $-$ uniform's (paired)", g.d_auc, [n for n in ARMS if n in g.auc]),
        ("controllers: final accuracy", "final accuracy $-$ uniform's (paired)", g.d_final, ctrl),
    ):
        if not names:
            continue
        names = sorted(names, key=lambda n: -d[n].mean)
        size = {n: float(np.nanmax(np.abs([d[n].mean, d[n].low, d[n].high]))) for n in names}
        groups = training._split_by_scale(names, size, factor=SCALE_FACTOR)
        for k, grp in enumerate(groups):
            part = f" ({k + 1} of {len(groups)}, own scale)" if len(groups) > 1 else ""
            diffs.append(Panel(f"{g.name}: {title}{part}", "learner", ylabel,
                               tuple(Series(n, [i], [d[n].mean], [d[n].low], [d[n].high], style="errorbar",
                                            linestyle=_style(n)) for i, n in enumerate(grp)),
                               hlines=((0.0, ""),), xticklabels=tuple(grp)))
    figs.append(Figure(
        "differences", "Paired differences to uniform allocation", tuple(diffs),
        caption="Per-seed difference to uniform allocation on the same seed (same task, same mini-batches), mean and "
                "95% CI; above the grey dashed 0 line is better than uniform. The positive controls (twice the budget, "
                "exact gradient) are on their own scale: they show how large an effect this regime can reveal. Where "
                f"the differences of one measure span more than {SCALE_FACTOR:g}x, they are split into panels of "
                "comparable scale, so that a collapsed learner does not flatten the others.",
        ncols=3))
    cost_names = [n for n in order if n != EXACT]
    panels = []
    for key, ylabel, title, ref in (
        ("wasted", "share of generated rollouts", "rollouts in all-equal groups (wasted)", None),
        ("spent_per_prompt", "rollouts per prompt and step", "rollouts actually generated",
         float(g.reg["budget"]["mean_budget"])),
        ("rounds", "generation rounds per step", "sequential generation rounds", None),
    ):
        est = {n: mean_ci(g.cost[key][n]) for n in cost_names}
        names = sorted(cost_names, key=lambda n: est[n].mean)
        bars = Series("mean over seeds, 95% CI", list(range(len(names))), [est[n].mean for n in names],
                      [est[n].low for n in names], [est[n].high for n in names], style="bar")
        panels.append(Panel(f"{g.name}: {title}", "learner", ylabel, (bars,),
                            hlines=((ref, ""),) if ref is not None else (), xticklabels=tuple(names)))
    figs.append(Figure(
        "compute", "What each learner spends per step", tuple(panels),
        caption="Mean over seeds with 95% CI. Left: share of the generated rollouts that fell in all-equal groups "
                "(no learning signal). Middle: rollouts per prompt actually generated (every round; grey dashed line: "
                "the budget every controller has; uniform-2x has twice it). Right: sequential generation rounds per "
                "step.", ncols=3))
    peers = [n for n in PEERS if n in g.auc]
    if peers:
        panels = [Panel(f"{g.name}: peers", "training step", "held-out accuracy $-$ uniform's (paired)",
                        tuple(Series(n, g.x, *curve_ci(g.acc[n] - g.acc["uniform"])) for n in peers),
                        hlines=((0.0, ""),)),
                  Panel(f"{g.name}: positive controls", "training step", "held-out accuracy $-$ uniform's (paired)",
                        tuple(Series(n, g.x, *curve_ci(g.acc[n] - g.acc["uniform"]), linestyle="dashed")
                              for n in ARMS if n in g.acc),
                        hlines=((0.0, ""),))]
        figs.append(Figure(
            "curves", "The peers along training, paired against uniform allocation", tuple(panels),
            caption="Held-out mean accuracy minus uniform's on the same seed along training (mean, 95% CI band); "
                    "left the peers, right the positive-control arms on their own scale.", ncols=2))
    return figs


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    res = {(t["regime"], t["seed"], t["controller"]): r for t, r in zip(tasks, results)}
    regimes = [_Regime(name, config, seeds, res) for name in config["regimes"]]
    claims = [c for g in regimes for c in _claims(g)]
    tables = [t for g in regimes for t in _tables(g)]
    figures = [f for g in regimes for f in _figures(g)]
    ran = ", ".join(config["controllers"])
    missing = [n for n in CANDIDATES if n not in config["controllers"]]
    parts = [f"{len(seeds)} seeds, paired by seed (same task and mini-batches for every learner). Controllers run: "
             f"{ran}" + (f" (not registered, so not run: {', '.join(missing)})" if missing else "") + "."]
    for g in regimes:
        better = [n for n in g.ctrl_names if g.significance(n, g.holm_auc, g.d_auc) == "better"]
        worse = [n for n in g.ctrl_names if g.significance(n, g.holm_auc, g.d_auc) == "worse"]
        top = ", ".join(f"{i + 1}. {n} {g.d_auc[n].format()}" for i, n in enumerate(g.ranking[:5]))
        parts.append(
            f"Regime {g.name} (the training study's regime chosen because its positive controls pass; {g.setting}): "
            f"uniform's mean held-out accuracy over training {mean_ci(g.auc['uniform']).format()}; positive controls "
            + ", ".join(f"{k} {v.format()}" for k, v in g.controls.items())
            + f". Ranking by AUC (difference to uniform): {top}, ... Significantly better than uniform after Holm's "
              f"correction over {len(g.holm_auc)} controllers: {', '.join(better) or 'none'}; significantly worse: "
              f"{', '.join(worse) or 'none'}. On final held-out accuracy, significantly better: "
              f"{', '.join(n for n in g.ctrl_names if g.significance(n, g.holm_final, g.d_final) == 'better') or 'none'}; "
              f"significantly worse: "
              f"{', '.join(n for n in g.ctrl_names if g.significance(n, g.holm_final, g.d_final) == 'worse') or 'none'}.")
    g = regimes[0]
    data = {
        "checkpoints": {g.name: g.x for g in regimes},
        "ranking": {g.name: g.ranking for g in regimes},
        "rank_interval": {g.name: {n: list(g.rank_ci[n]) for n in g.names} for g in regimes},
        "auc": {g.name: {n: g.auc[n].tolist() for n in g.names} for g in regimes},
        "final_acc": {g.name: {n: g.final[n].tolist() for n in g.names} for g in regimes},
        "p_auc_vs_uniform": {g.name: g.p_auc for g in regimes},
        "holm_auc_vs_uniform": {g.name: g.holm_auc for g in regimes},
        "cost": {g.name: {k: {n: v.tolist() for n, v in per.items()} for k, per in g.cost.items()} for g in regimes},
        "runs": {f"{g.name}/{s}/{n}": res[(g.name, s, n)] for g in regimes for s in seeds for n in g.names},
    }
    return StudyResult(NAME, TITLE, " ".join(parts), config, seeds, tuple(claims), tuple(tables), tuple(figures), data)
