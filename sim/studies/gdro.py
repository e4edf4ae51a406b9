"""Study ``gdro``: Prompt-GDRO, Rollout-GDRO, their coupling and the square-root law vs GRPO with uniform
allocation, on a heterogeneous-difficulty :class:`sim.SoftmaxRLVR` binned online by pass@k (GDRO eq. 10-11),
and, in the powered regime, posterior bins against pass@k bins for the two variance-aware allocators.

Regimes
-------
* ``default`` (chosen once from the GDRO paper's setup, App. C; not tuned on any verdict): 16 answers,
  ``d = 32``, a hard-skewed difficulty mixture (easy 10 %, medium 20 %, hard 40 %, nearly unsolvable
  30 %: GDRO trains base models on DAPO, whose prompts start mostly in the lowest pass@8 bins, Fig. 3/5),
  8192 training and 1024 held-out prompts, GRPO advantages, Adam step 0.02, 256 prompts per step (App.
  C.1.1), 576 steps = 18 epochs (GDRO: 1000 steps of 256 prompts over DAPO-14.1k).
* ``powered`` -- chosen because its positive control for the accuracy claims passes: GRPO at twice the
  rollout budget (``uniform-2x``) must improve final pass@8 over GRPO by clearly more than the seed
  noise. Pilot (seeds 1001-1006, disjoint from the study's; paired relative change of final pass@8,
  uniform-2x vs GRPO): ``default`` -0.07 % [-0.23, 0.08] (pass@8 saturates near 0.95); ``d = 128``,
  32 topics, no shared skill, mix 5/15/60/20 %, 1024 prompts, batch 32, 320 steps +0.38 % [0.11, 0.64];
  the same with ``d = 256``, 64 topics +0.52 % [-0.05, 1.09]; the same as the first with 160 steps
  (5 epochs; the gap to the budget-rich learner has not closed yet) +0.92 % [0.56, 1.29] -- the
  regime used. No method was run in the pilot. The run's own control values are in the summary.

Learners (same seed, task and mini-batches for all: paired)
---------------------------------------------------------
``uniform`` (GRPO, ``n_bar = 4`` each), ``uniform-2x`` (8 each: the positive control for the accuracy
claims), ``prompt-gdro`` (multipliers eq. 17, uniform counts) at the step matched to its loss range
(Thm F.7's ``sqrt(8 log B / T) / M`` with ``M = 2`` for the loss ``1 - 2 r_bar`` and ``T`` the run's
steps; :meth:`bandits.PromptGDRO.matched_step_size`), ``prompt-gdro-paper`` (the same with App. C.2.1's
0.65, reported as the paper's constant), ``rollout-gdro`` (Rollout-GDRO counts, arms ``2..12``),
``rollout-gdro-posterior`` and ``sqrt-law-posterior`` (the same on posterior bins, powered regime; see
"Binning"), ``gdro-coupled`` (both, this project's coupling; it carries no paper claim and runs at the ``full`` (and
``quick``) scale only, to keep the default study within its time budget), ``sqrt-law`` (Thm F.17 directly with online
within-prompt variances) and ``oracle-gdro`` (the positive control for the worst-group claim: the exact
GDRO best response over the task's true difficulty classes -- every step, all weight on the class with
the lowest exact success probability in the batch, multipliers ``min(1 / share, 15)`` on it and 0
elsewhere, eq. 13 and 17 with the true groups and losses). Every adversary constant except the Prompt-GDRO
step is the paper's (App. C.2).

Measurements
------------
* exact held-out mean accuracy, pass@8 (``k = 8``, GDRO Table 1) and per-difficulty-class accuracy every
  ``eval_every`` steps; *worst-group accuracy* is the lowest class accuracy, with the task's four fixed
  difficulty classes as groups. Which class is the worst is counted per learner from the data.
* GDRO eq. 23's weighted standard error ``WSE(t) = sum_b q_t(b) sigma_b(t) / sqrt(n_b(t))`` and the
  variance proxy of eq. 19, ``sum_b q_t(b) v_b(t) / n_b(t)``, with the *within-prompt* reward variance
  of each bin, exactly: ``v_b(t)`` is the mean over the batch's prompts of bin ``b`` of ``4 p (1 - p)``
  (one rollout's variance on the paper's {-1, +1} scale), ``sigma_b = sqrt(v_b)`` -- the noise that more
  rollouts reduce (Remark F.16: each term behaves like a standard error shrinking as ``1 / sqrt(n_b)``).
  Each against the compute-matched uniform ``n_b = n_bar`` on the same bins and shares; the change is
  ``mean_t / mean_t(uniform) - 1`` over the run. Beside it, the **oracle**: the best allocation with one
  arm per bin in ``[2, 12]`` and the exact budget (:func:`solvers.match_budget` with the true
  ``sigma_b / sqrt(n)`` or ``v_b / n``) on the same batches -- the largest reduction any per-bin
  allocation can reach, used as the positive control. App. E.2.1's literal ``sigma_hat_b`` (the pooled
  spread of the per-prompt loss by bin over the run) is reported too: it is mostly *between*-prompt
  spread, which no allocation changes.
* GDRO eq. 22's lead-lag gap ``mu_weight(t) - mu_data(t)`` without the steps in which every prompt of
  the batch is unseen (then all sit in bin 0 by eq. 11 and the gap is the weights' mean bin, positive by
  construction); its positive control is the same gap for the *learnable-frontier reference*
  ``w_ref(b) ~ q_t(b) v_b(t)`` (where the batch's gradient signal sits) on the same batches. Also the
  weights' normalised entropy, the mass of weights / data / rollout budget in bins ``>= high_bin`` (Fig.
  4/7), the shadow price, and per-bin shares, weights, rollouts (against the square-root target
  :func:`solvers.sqrt_allocation` with the true ``v_b``) and rewards over training.

Binning (powered regime only, to stay within the study's time budget)
-----------------------------------------------------------------------
GDRO App. B leaves "uncertainty-aware binning (e.g., Bayesian estimators or confidence-bound assignment rules)"
to future work: pass@k bins saturate (with ``k >= 4`` every prompt with ``p >= 0.5`` is in the top bin, so a
``p = 0.5`` prompt -- the largest reward variance -- shares a bin with a ``p = 0.97`` one) and rest on a few
indicators early on. ``rollout-gdro-posterior`` and ``sqrt-law-posterior`` are ``rollout-gdro`` and ``sqrt-law``
with ``binning="posterior"`` (:class:`bandits.PosteriorBinner` on each prompt's per-rollout successes) and the
statistic ``"variance"``: bins by the Beta posterior mean of ``4 p (1 - p)``, the within-prompt reward variance
that both allocators act on (eq. 19's ``v_b``, the square-root law's ``n_b ~ sqrt(v_b)``); chosen before any
run, every other option at its default (Beta(1, 1) prior, discount 0.98 = the pass@k window's memory of 50
observations, hysteresis 0.02). Each is paired by seed with the same controller on pass@k bins, on the same
batches. Two project checks per allocator:

* *eq. 19 proxy*: posterior minus pass@k bins, in points of the proxy's change vs uniform (uniform's proxy is
  ``mean_i v_i / n_bar`` whatever the bins, so the changes of the two learners share their reference). Positive
  control, same units: on the pass@k learner's batches, the oracle allocation on bins by the *true*
  within-prompt variance (edges ``b / 10`` on the exact ``4 p (1 - p)``: the posterior bins without estimation
  noise) minus the oracle on the pass@k bins -- the most a change of bins can give a per-bin allocation.
* *bin churn*: the share of revisits whose bin changed since the prompt's previous visit, counted from a
  prompt's third visit (both bins then rest on observations); posterior minus pass@k, in points. Positive
  control: the churn of the true-variance bins minus the pass@k bins' churn on the pass@k learner's visits --
  what the posterior layout churns with the estimation noise removed (the policy's own movement remains).

Claims: Rollout-GDRO lowers WSE and the eq. 19 proxy against compute-matched uniform (App. E.2.1, Fig. 6b;
Sec. 3.3); the square-root law does (Thm F.17 / eq. 58 with Remark F.25's estimate); Prompt-GDRO (both
steps) and Rollout-GDRO improve pass@8 over GRPO (Sec. 1, Table 1); Prompt-GDRO (both steps) improves
worst-group accuracy (Sec. 1 / eq. 13); Prompt-GDRO's weights lead the data early and the gap decays
(App. E.1, Fig. 6a). Each comparative claim carries its positive control (``solvers.claims``): under it,
a verdict is ``under-powered``.
"""

from __future__ import annotations

import numpy as np

from bandits.binning import PassAtKBinner
from bandits.controllers import Controller, StepPlan
from bandits.diagnostics import high_bin_mass, lead_lag_gap, weight_entropy
from solvers import match_budget, sqrt_allocation
from solvers.claims import (
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    make_claim,
    mean_ci,
)

from ..softmax_rlvr import DIFFICULTY_CLASSES
from ._common import curve_ci
from ._controlled import ControlledTrainer, make_split_env, make_study_controller
from .metrics import (
    area_under_curve,
    bin_means,
    pooled_bin_std,
    weighted_standard_error,
)

NAME = "gdro"
TITLE = "GDRO on heterogeneous difficulty: Prompt-GDRO, Rollout-GDRO, their coupling and the square-root law vs GRPO"

#: learner -> (controller name, budget multiplier); options are set in :func:`_learner_options`
LEARNERS = {
    "uniform": ("uniform", 1),
    "uniform-2x": ("uniform", 2),
    "prompt-gdro": ("prompt-gdro", 1),
    "prompt-gdro-paper": ("prompt-gdro", 1),
    "rollout-gdro": ("rollout-gdro", 1),
    "gdro-coupled": ("gdro-coupled", 1),
    "sqrt-law": ("sqrt-law", 1),
    "rollout-gdro-posterior": ("rollout-gdro", 1),
    "sqrt-law-posterior": ("sqrt-law", 1),
    "oracle-gdro": ("uniform", 1),
}
LABELS = {"uniform": "GRPO", "uniform-2x": "uniform-2x", "prompt-gdro": "prompt-gdro",
          "prompt-gdro-paper": "prompt-gdro (step 0.65)", "rollout-gdro": "rollout-gdro",
          "gdro-coupled": "gdro-coupled", "sqrt-law": "sqrt-law", "rollout-gdro-posterior": "rollout-gdro (posterior bins)",
          "sqrt-law-posterior": "sqrt-law (posterior bins)", "oracle-gdro": "oracle-gdro"}
CLASSES = list(DIFFICULTY_CLASSES)
_WEIGHTED = ("prompt-gdro", "prompt-gdro-paper", "gdro-coupled")
_BUDGETED = ("rollout-gdro", "gdro-coupled", "sqrt-law", "rollout-gdro-posterior", "sqrt-law-posterior")
POSTERIOR = {"rollout-gdro-posterior": "rollout-gdro", "sqrt-law-posterior": "sqrt-law"}
"""Learners with posterior bins -> the same controller with pass@k bins (their paired reference)."""
POSTERIOR_BINNING = {"statistic": "variance"}
"""``binning_options`` of the posterior learners (:class:`bandits.PosteriorBinner`; every other option at its
default: uniform Beta(1, 1) prior, discount 0.98 -- an effective memory of 50 observations, the pass@k
window -- and hysteresis 0.02). ``"variance"`` bins by the posterior mean of ``4 p (1 - p)``, the within-prompt
reward variance that both allocators act on (eq. 19's ``v_b``); chosen before any run."""
PAPER_PROMPT_STEP = 0.65
"""GDRO App. C.2.1's adversary learning rate, run as the learner ``prompt-gdro-paper``."""


def _default_regime() -> dict:
    return {
        "env": {"n_prompts": 8192, "n_test": 1024, "n_answers": 16, "dim": 32,
                "mix": {"easy": 0.1, "medium": 0.2, "hard": 0.4, "nearly-unsolvable": 0.3}},
        "training": {"batch": 256, "steps": 576, "lr": 0.02, "estimator": "grpo"},
        "budget": {"mean_budget": 4, "lower": 2, "upper": 12},
        "learners": ["uniform", "uniform-2x", "prompt-gdro", "prompt-gdro-paper", "rollout-gdro", "sqrt-law",
                     "oracle-gdro"],
        "eval_every": 16,
        "window_steps": 16,
    }


def _powered_regime() -> dict:
    return {
        "env": {"n_prompts": 1024, "n_test": 512, "n_answers": 16, "dim": 128, "n_topics": 32,
                "shared_skill": 0.0,
                "mix": {"easy": 0.05, "medium": 0.15, "hard": 0.6, "nearly-unsolvable": 0.2}},
        "training": {"batch": 32, "steps": 160, "lr": 0.02, "estimator": "grpo"},
        "budget": {"mean_budget": 4, "lower": 2, "upper": 12},
        "learners": ["uniform", "uniform-2x", "prompt-gdro", "rollout-gdro", "sqrt-law", "rollout-gdro-posterior",
                     "sqrt-law-posterior", "oracle-gdro"],
        "eval_every": 16,
        "window_steps": 16,
    }


def config(scale: str) -> dict:
    """Configuration for ``scale`` in {"quick", "default", "full"} (module docstring)."""
    cfg = {
        "seeds": 10,
        "regimes": {"default": _default_regime(), "powered": _powered_regime()},
        "n_bins": 10,
        "window": 50,
        "pass_k": 8,
        "high_bin": 8,
        "phase_fraction": 0.25,
        "selected_bins": 3,
    }
    if scale in ("quick", "full"):  # quick: so that the tests exercise every learner
        cfg["regimes"]["default"]["learners"].insert(5, "gdro-coupled")  # this project's coupling: no claim
    if scale == "quick":
        cfg["seeds"] = 2
        d, p = cfg["regimes"]["default"], cfg["regimes"]["powered"]
        d["env"].update(n_prompts=256, n_test=64)
        d["training"].update(batch=32, steps=32)
        d.update(eval_every=8, window_steps=8)
        p["env"].update(n_prompts=128, n_test=64, dim=32)
        p["training"].update(batch=16, steps=24)
        p.update(eval_every=8, window_steps=8)
    elif scale == "full":
        cfg["seeds"] = 20
    elif scale != "default":
        raise ValueError(f"scale must be 'quick', 'default' or 'full', got {scale!r}")
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    """One task per (regime, seed, learner)."""
    return [{"seed": int(s), "regime": r, "controller": n, "label": f"{r} {n} seed {s}"}
            for r, reg in config["regimes"].items() for s in seeds for n in reg["learners"]]


def checkpoints(regime: dict) -> list[int]:
    steps = regime["training"]["steps"]
    out = list(range(0, steps + 1, regime["eval_every"]))
    return out if out[-1] == steps else [*out, steps]


def _window_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Means over consecutive windows of ``w`` rows (the last window may be shorter)."""
    n = x.shape[0]
    return np.array([x[i:i + w].mean(axis=0) for i in range(0, n, w)])


class _WorstClassOracle(Controller):
    """The ``oracle-gdro`` reference learner: GDRO's exact best response over the true difficulty classes.

    Counts are uniform (``mean_budget`` each, an integer in this study); the multipliers put all the
    adversary's weight on the class with the lowest exact mean success probability among the batch's
    prompts (eq. 13's worst group, with the true groups and losses) and normalise it by its share as
    eq. 17 does: ``min(1 / share, weight_cap)`` on that class, 0 elsewhere. It needs no feedback. A
    study-only reference (it reads the simulator's ground truth), not a registered controller.
    """

    name = "oracle-gdro"
    learns_from_rewards = False

    def __init__(self, env, mean_budget: int, weight_cap: float = 15.0) -> None:
        m = int(mean_budget)
        super().__init__(n_prompts=env.n_prompts, mean_budget=m, lower=m, upper=m)
        self.env, self.weight_cap = env, float(weight_cap)

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        cls = self.env.difficulty[ids]
        p = self.env.success_prob(ids)
        present = np.unique(cls)
        worst = present[int(np.argmin([p[cls == c].mean() for c in present]))]
        on = cls == worst
        mult = np.where(on, min(ids.size / on.sum(), self.weight_cap), 0.0)
        return StepPlan(np.full(ids.size, total // ids.size, dtype=np.int64), mult)

    def _observe(self, obs) -> None:
        """No feedback: the oracle reads the true success probabilities."""


class _BinChurn:
    """Bin churn between a prompt's consecutive visits (the study's stability measure of a binning).

    :meth:`update` takes a step's prompt ids (distinct) with the bins the learner used and the bins by
    the true within-prompt variance, and counts the *eligible* revisits -- visits whose bin and the
    previous visit's bin both rest on observations, i.e. from a prompt's third visit on (at the first
    visit every binner shows its unseen bin) -- and how many of them changed bin, and true bin, since
    the previous visit. Churn is ``changed / eligible`` summed over a run.

    Examples
    --------
    >>> c = _BinChurn(3)
    >>> [c.update(np.array([0, 1]), np.array([0, 0]), np.array([1, 1])) for _ in range(2)]
    [(0, 0, 0), (0, 0, 0)]
    >>> c.update(np.array([0, 1]), np.array([0, 2]), np.array([1, 1]))
    (2, 1, 0)
    """

    def __init__(self, n_prompts: int) -> None:
        self.last_bin = np.full(n_prompts, -1, dtype=np.int64)
        self.last_true = np.full(n_prompts, -1, dtype=np.int64)
        self.visits = np.zeros(n_prompts, dtype=np.int64)

    def update(self, ids: np.ndarray, bins: np.ndarray, true_bins: np.ndarray) -> tuple[int, int, int]:
        again = self.visits[ids] >= 2
        out = (int(again.sum()), int((again & (bins != self.last_bin[ids])).sum()),
               int((again & (true_bins != self.last_true[ids])).sum()))
        self.last_bin[ids], self.last_true[ids] = bins, true_bins
        self.visits[ids] += 1
        return out


def _learner_options(name: str, config: dict, regime: dict) -> dict:
    if name in POSTERIOR:
        return {"n_bins": config["n_bins"], "binning": "posterior", "binning_options": dict(POSTERIOR_BINNING)}
    opts = {} if name in ("uniform", "uniform-2x", "oracle-gdro") else {"n_bins": config["n_bins"],
                                                                          "window": config["window"]}
    if name in ("prompt-gdro", "gdro-coupled"):
        opts["prompt_horizon"] = regime["training"]["steps"]  # Thm F.7's step for this run's horizon
    if name == "prompt-gdro-paper":
        opts["prompt_step_size"] = PAPER_PROMPT_STEP
    return opts


def _oracle(costs: np.ndarray, counts: np.ndarray, arms: np.ndarray, total: int) -> float:
    """Smallest ``sum_b counts_b costs[b, k_b]`` over one arm per bin with the exact total (the DP)."""
    return float(match_budget(costs, counts, arms, total, nearest=True).objective)


def run_task(task: dict, config: dict) -> dict:
    """Train one learner for one seed of one regime; return accuracy curves and GDRO diagnostics."""
    seed, name = int(task["seed"]), task["controller"]
    reg = config["regimes"][task["regime"]]
    env = make_split_env(reg["env"], seed)
    n_train = reg["env"]["n_prompts"]
    test_ids = np.arange(n_train, n_train + reg["env"]["n_test"])
    test_cls = env.difficulty[test_ids]
    base, mult = LEARNERS[name]
    bud = dict(reg["budget"])
    bud["mean_budget"] = bud["mean_budget"] * mult
    bud["upper"] = max(bud["upper"], bud["mean_budget"])
    nb = int(config["n_bins"])
    if name == "oracle-gdro":
        ctrl = _WorstClassOracle(env, bud["mean_budget"])
    else:
        ctrl = make_study_controller(base, env, bud, seed, _learner_options(name, config, reg))
    binner = getattr(ctrl, "binner", None)
    shadow = PassAtKBinner(nb, config["window"]) if binner is None else None  # an observer's bins for GRPO
    trainer = ControlledTrainer(env, ctrl, reg["training"], n_train, seed)
    evals = set(checkpoints(reg))
    steps = reg["training"]["steps"]
    k = config["pass_k"]
    nbar = float(bud["mean_budget"])
    arms = np.arange(bud["lower"], bud["upper"] + 1)
    af = arms.astype(np.float64)
    out: dict = {"test_acc": [], "test_pass": [], "class_acc": []}
    shares = np.zeros((steps, nb))
    mean_n = np.zeros((steps, nb))
    budget_share = np.zeros((steps, nb))
    rew_sum = np.zeros((steps, nb))
    weights = np.zeros((steps, nb))
    frontier = np.zeros((steps, nb))
    var_bin = np.zeros((steps, nb))
    target = np.full((steps, nb), np.nan)
    unseen = np.zeros(steps)
    series = {key: np.zeros(steps) for key in ("wse", "wse_uniform", "wse_oracle", "proxy", "proxy_uniform",
                                               "proxy_oracle", "proxy_oracle_true_bins")}
    # bin churn and the bins by the true within-prompt variance, only in the regimes that run posterior bins
    # (the binning comparison): per step, revisits whose bins both rest on observations, and how many changed
    binning_check = any(n in POSTERIOR for n in reg["learners"])
    v_edges = np.arange(1, nb) / nb  # inner edges b / B on 4 p (1 - p), as PosteriorBinner's "variance" bins
    tracker = _BinChurn(env.n_prompts)
    churn = np.zeros((steps, 3))  # eligible revisits, bin changed, true-variance bin changed
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
        obs_binner = binner if binner is not None else shadow
        unseen[t] = float(np.mean(obs_binner.counts(ids) == 0))
        bins = plan.bins if plan.bins is not None else shadow.bins(ids)
        counts = batch.counts.astype(np.float64)  # every round's rollouts (plan.counts for a single-round controller)
        if name in _WEIGHTED:
            weights[t] = ctrl.prompt.weights
        if base in ("rollout-gdro", "gdro-coupled"):
            price[t] = ctrl.rollout.shadow_price
        elif base == "sqrt-law":
            price[t] = ctrl.shadow_price
        r_bar = np.bincount(batch.group_ids, weights=batch.rewards, minlength=ids.size) / counts
        sig_values.append(1.0 - 2.0 * r_bar)  # the prompt loss fed to Prompt-GDRO (App. E.2.1's signal)
        sig_bins.append(bins)
        n_mean, occ = bin_means(counts, bins, nb)
        m = ids.size
        shares[t] = occ / m
        mean_n[t] = n_mean
        budget_share[t] = np.bincount(bins, weights=counts, minlength=nb) / counts.sum()
        rew_sum[t] = np.bincount(bins, weights=2.0 * r_bar - 1.0, minlength=nb)
        # within-prompt reward variance on the {-1, +1} scale, exact: the noise more rollouts reduce
        p = np.einsum("pk,pk->p", batch.probs, env.reward_table[ids])  # exact p of the sampling policy
        v_i = 4.0 * p * (1.0 - p)
        present = occ > 0
        v_b = np.divide(np.bincount(bins, weights=v_i, minlength=nb), occ, out=np.zeros(nb), where=present)
        var_bin[t] = v_b
        sd_b = np.sqrt(v_b)
        series["wse"][t] = float(np.mean(sd_b[bins] / np.sqrt(counts)))  # eq. 23, true per-bin sigma
        series["wse_uniform"][t] = float(shares[t] @ sd_b) / np.sqrt(nbar)
        series["proxy"][t] = float(np.mean(v_b[bins] / counts))  # eq. 19
        series["proxy_uniform"][t] = float(shares[t] @ v_b) / nbar
        if binning_check:
            true_bins = np.searchsorted(v_edges, v_i, side="right")
            churn[t] = tracker.update(ids, bins, true_bins)
        fw = shares[t] * v_b  # where the batch's learning signal sits (the learnable frontier)
        frontier[t] = fw / fw.sum() if fw.sum() > 0 else shares[t]
        if name in _BUDGETED:
            total = round(nbar * m)
            occ_i = occ.astype(np.int64)
            series["wse_oracle"][t] = _oracle(sd_b[:, None] / np.sqrt(af)[None, :], occ_i, arms, total) / m
            series["proxy_oracle"][t] = _oracle(v_b[:, None] / af[None, :], occ_i, arms, total) / m
            if binning_check:  # the same oracle on bins by the true within-prompt variance
                occ_t = np.bincount(true_bins, minlength=nb)
                v_t = np.divide(np.bincount(true_bins, weights=v_i, minlength=nb), occ_t, out=np.zeros(nb),
                                where=occ_t > 0)
                series["proxy_oracle_true_bins"][t] = _oracle(v_t[:, None] / af[None, :], occ_t, arms, total) / m
            target[t] = sqrt_allocation(v_b, shares[t], nbar, lower=float(arms[0]), upper=float(arms[-1])).n
        if shadow is not None:
            any_correct = np.bincount(batch.group_ids, weights=(batch.rewards >= 1.0).astype(np.float64),
                                      minlength=ids.size) > 0
            shadow.update(ids, any_correct)
        trainer.update(ids, plan, batch)

    w = int(reg["window_steps"])
    # App. E.2.1's literal sigma_hat_b: the pooled spread of the per-prompt loss by bin over the run
    sigma = pooled_bin_std(np.concatenate(sig_values), np.concatenate(sig_bins), nb)
    wse_pooled = weighted_standard_error(shares, sigma, np.where(shares > 0, mean_n, 1.0))
    wse_pooled_unif = weighted_standard_error(shares, sigma, nbar)
    out["wse_pooled_ratio"] = float(wse_pooled.mean() / wse_pooled_unif.mean())
    if name in _BUDGETED:
        for key in ("wse", "proxy"):
            out[f"{key}_oracle_ratio"] = float(series[f"{key}_oracle"].mean() / series[f"{key}_uniform"].mean())
        if binning_check:
            out["proxy_oracle_true_bins_ratio"] = float(series["proxy_oracle_true_bins"].mean()
                                                        / series["proxy_uniform"].mean())
            out["proxy_oracle_true_bins"] = _window_mean(series["proxy_oracle_true_bins"], w).tolist()
    for key in ("wse", "proxy"):
        out[f"{key}_ratio"] = float(series[key].mean() / series[f"{key}_uniform"].mean())
    if binning_check:
        eligible = churn[:, 0].sum()
        out["bin_churn"] = float(churn[:, 1].sum() / eligible) if eligible else None
        out["true_bin_churn"] = float(churn[:, 2].sum() / eligible) if eligible else None
        out["churn_counts"] = _window_mean(churn, w).tolist()  # per window: mean eligible, changed, true changed
    occ_total = _window_mean(shares, w)
    seen_steps = unseen < 1.0  # steps where at least one prompt of the batch has been observed before
    out.update(
        sigma_hat=sigma.tolist(),
        seen_steps=seen_steps.tolist(),
        unseen_share=_window_mean(unseen, w).tolist(),
        wse=_window_mean(series["wse"], w).tolist(),
        wse_uniform=_window_mean(series["wse_uniform"], w).tolist(),
        proxy=_window_mean(series["proxy"], w).tolist(),
        proxy_uniform=_window_mean(series["proxy_uniform"], w).tolist(),
        shares=occ_total.tolist(),
        budget_share=_window_mean(budget_share, w).tolist(),
        mean_rollouts=np.divide(_window_mean(shares * mean_n, w), occ_total, out=np.full(occ_total.shape, nbar),
                                where=occ_total > 0).tolist(),
        bin_reward=np.divide(_window_mean(rew_sum / m, w), occ_total, out=np.zeros(occ_total.shape),
                             where=occ_total > 0).tolist(),
        bin_present=(occ_total > 0).tolist(),
        bin_variance=np.divide(_window_mean(shares * var_bin, w), occ_total, out=np.zeros(occ_total.shape),
                               where=occ_total > 0).tolist(),
        data_high_mass=_window_mean(shares[:, config["high_bin"]:].sum(axis=1), w).tolist(),
        budget_high_mass=_window_mean(budget_share[:, config["high_bin"]:].sum(axis=1), w).tolist(),
        frontier_gap_steps=lead_lag_gap(frontier, np.maximum(shares, 0.0)).tolist(),
    )
    if name in _BUDGETED:
        tgt = np.where(shares > 0, target, 0.0)
        out.update(
            wse_oracle=_window_mean(series["wse_oracle"], w).tolist(),
            proxy_oracle=_window_mean(series["proxy_oracle"], w).tolist(),
            sqrt_target=np.divide(_window_mean(shares * tgt, w), occ_total, out=np.full(occ_total.shape, nbar),
                                  where=occ_total > 0).tolist(),
            shadow_price=_window_mean(price, w).tolist(),
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
    return out


# ------------------------------------------------------------------------------------- summary
def _phase_means(series: np.ndarray, fraction: float, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed means of the first and last ``fraction`` of the steps kept by ``keep`` (seeds, steps)."""
    early, late = [], []
    for row, k in zip(series, keep):
        x = row[k] if k.any() else row
        m = max(1, round(x.size * fraction))
        early.append(x[:m].mean())
        late.append(x[-m:].mean())
    return np.array(early), np.array(late)


def _fmt_counts(names: list[str], counts: np.ndarray, n: int) -> str:
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{names[i]} {int(counts[i])}/{n}" for i in order if counts[i] > 0)


def _selected_bins(shares: np.ndarray, nb: int) -> list[int]:
    """Bin 0 (hardest), the middle bin with the largest mean data share, and the top bin."""
    middle = 1 + int(np.argmax(shares[1:nb - 1])) if nb > 2 else 0
    return sorted({0, middle, nb - 1})


def _bin_label(b: int, nb: int) -> str:
    return f"bin {b}" + (" (hardest)" if b == 0 else " (easiest)" if b == nb - 1 else "")


BINNING_SOURCE = "GDRO App. B (future work: uncertainty-aware binning)"


def _churn_by_window(res: dict, seeds: tuple, name: str, column: int) -> np.ndarray:
    """(seeds, windows) share of the eligible revisits whose bin (``column`` 1) or true-variance bin
    (``column`` 2) changed; NaN in windows without an eligible revisit."""
    c = np.array([res[(s, name)]["churn_counts"] for s in seeds], dtype=np.float64)
    return np.divide(c[:, :, column], c[:, :, 0], out=np.full(c.shape[:2], np.nan), where=c[:, :, 0] > 0)


def _band_where_defined(a: np.ndarray) -> tuple:
    """Mean and 95 % CI per column of a (seeds, points) array; NaN where a seed has no value."""
    out: list[list[float]] = [[], [], []]
    for j in range(a.shape[1]):
        col = a[:, j]
        e = mean_ci(col) if np.all(np.isfinite(col)) else None
        for i, v in enumerate((e.mean, e.low, e.high) if e is not None else (np.nan,) * 3):
            out[i].append(v)
    return tuple(out)


def _binning_part(regime: str, pre: str, fig_pre: str, names: list, seeds: tuple, res: dict, red: dict, wx: list,
                  setting: str) -> dict:
    """Posterior vs pass@k bins for the allocators run both ways in ``regime``: claims (project checks),
    a table, a figure, a summary sentence and the per-seed data (module docstring, "Binning")."""
    pairs = [(n, POSTERIOR[n]) for n in POSTERIOR if n in names and POSTERIOR[n] in names]
    out: dict = {"claims": [], "tables": [], "figures": [], "summary": "", "data": {}}
    if not pairs:
        return out

    def arr(name: str, key: str) -> np.ndarray:
        return np.array([res[(s, name)][key] for s in seeds], dtype=np.float64)

    n_seeds = len(seeds)
    stat = POSTERIOR_BINNING["statistic"]
    rows, sentences, ser_proxy, ser_churn = [], [], [], []
    for n, ref in pairs:
        tag = ref.replace("-", "_")
        d_proxy = red["proxy"][n] - red["proxy"][ref]  # percentage points of the change vs uniform
        orc_ref, orc_post = 100.0 * (arr(ref, "proxy_oracle_ratio") - 1.0), 100.0 * (arr(n, "proxy_oracle_ratio") - 1.0)
        orc_true = 100.0 * (arr(ref, "proxy_oracle_true_bins_ratio") - 1.0)
        ctrl_proxy = orc_true - orc_ref
        churn_post, churn_ref = 100.0 * arr(n, "bin_churn"), 100.0 * arr(ref, "bin_churn")
        churn_true = 100.0 * arr(ref, "true_bin_churn")
        d_churn, ctrl_churn = churn_post - churn_ref, churn_true - churn_ref
        out["claims"].append(make_claim(
            f"{pre}{tag}_posterior_bins_proxy", BINNING_SOURCE,
            f"{ref} with posterior bins (Beta posterior mean of the within-prompt reward variance) attains a lower "
            "eq. 19 variance proxy than with pass@k bins",
            "paired difference, posterior minus pass@k bins, of the eq. 19 proxy's relative change vs compute-matched "
            "uniform averaged over training (percentage points), true within-prompt variance per bin",
            mean_ci(d_proxy), less=0.0, regime=regime, kind="project check", control=mean_ci(ctrl_proxy),
            control_label=("oracle allocation on bins by the true within-prompt variance minus the oracle on the pass@k "
                           f"bins, {ref}'s batches (points): the most a change of bins gives a per-bin allocation"),
            note=(f"eq. 19 change vs uniform: pass@k bins {mean_ci(red['proxy'][ref]).format()} %, posterior bins "
                  f"{mean_ci(red['proxy'][n]).format()} %; the oracle allocation on each learner's own bins: "
                  f"{mean_ci(orc_ref).format()} % and {mean_ci(orc_post).format()} %, on true-variance bins "
                  f"{mean_ci(orc_true).format()} %; {setting}")))
        out["claims"].append(make_claim(
            f"{pre}{tag}_posterior_bins_churn", BINNING_SOURCE,
            f"posterior bins change less often than pass@k bins between a prompt's consecutive visits ({ref})",
            "paired difference, posterior minus pass@k bins, of the bin churn: the share of revisits (both bins "
            "resting on observations) whose bin changed since the prompt's previous visit (percentage points)",
            mean_ci(d_churn), less=0.0, regime=regime, kind="project check", control=mean_ci(ctrl_churn),
            control_label=("bins by the true within-prompt variance (the posterior bins' layout without estimation "
                           f"noise) minus the pass@k bins, {ref}'s visits (points)"),
            note=(f"churn: pass@k bins {mean_ci(churn_ref).format()} %, posterior bins {mean_ci(churn_post).format()} %, "
                  f"true-variance bins {mean_ci(churn_true).format()} % (the churn the policy's own movement "
                  "causes in that layout)")))
        for lab, name, orc, churn in ((LABELS[ref], ref, orc_ref, churn_ref), (LABELS[n], n, orc_post, churn_post)):
            rows.append((lab, mean_ci(red["proxy"][name]).format(), mean_ci(orc).format(), mean_ci(orc_true).format(),
                         mean_ci(churn).format(), mean_ci(churn_true).format(),
                         mean_ci(d_proxy).format() if name == n else "", mean_ci(d_churn).format() if name == n else ""))
        sentences.append(f"{ref} eq. 19 {mean_ci(d_proxy).format()} points (control {mean_ci(ctrl_proxy).format()}), "
                         f"churn {mean_ci(d_churn).format()} points (control {mean_ci(ctrl_churn).format()})")
        curve = 100.0 * (arr(n, "proxy") / arr(n, "proxy_uniform") - arr(ref, "proxy") / arr(ref, "proxy_uniform"))
        ser_proxy.append(Series(LABELS[n], wx, *curve_ci(curve)))
        ser_churn.append(Series(LABELS[n], wx, *_band_where_defined(
            100.0 * (_churn_by_window(res, seeds, n, 1) - _churn_by_window(res, seeds, ref, 1)))))
        out["data"][n] = {"reference": ref, "proxy_difference_points": d_proxy.tolist(),
                          "proxy_control_points": ctrl_proxy.tolist(), "churn_pct": churn_post.tolist(),
                          "reference_churn_pct": churn_ref.tolist(), "true_bin_churn_pct": churn_true.tolist()}
    ref0 = pairs[0][1]
    ser_proxy.append(Series("oracle: true-variance bins", wx, *curve_ci(100.0 * (
        arr(ref0, "proxy_oracle_true_bins") - arr(ref0, "proxy_oracle")) / arr(ref0, "proxy_uniform")),
        linestyle="dashed"))
    ser_churn.append(Series("true-variance bins", wx, *_band_where_defined(
        100.0 * (_churn_by_window(res, seeds, ref0, 2) - _churn_by_window(res, seeds, ref0, 1))), linestyle="dashed"))
    out["tables"].append(Table(
        f"[{regime}] Posterior vs pass@k bins for the variance-aware allocators ({n_seeds} seeds, 95% CI)",
        ("learner", "eq. 19 change vs uniform (%)", "oracle on its bins (%)", "oracle on true-variance bins (%)",
         "bin churn (%)", "true-variance bin churn (%)", "eq. 19: posterior - pass@k (points)",
         "churn: posterior - pass@k (points)"),
        tuple(rows),
        note=(f"posterior bins: bandits.PosteriorBinner, statistic {stat!r} (posterior mean of 4 p (1 - p)), prior "
              "Beta(1, 1), discount 0.98, hysteresis 0.02; oracle: the best per-bin integer allocation with the true "
              "variances on the learner's batches; true-variance bins: edges b/10 on the exact 4 p (1 - p) of the "
              "sampling policy; churn over revisits whose current and previous bins both rest on observations")))
    out["figures"].append(Figure(
        f"{fig_pre}binning", f"Posterior vs pass@k bins for rollout-gdro and sqrt-law ({regime} regime)", (
            Panel("eq. 19 proxy: posterior minus pass@k bins (paired)", "training step",
                  "difference of the change vs uniform (points)", tuple(ser_proxy), hlines=((0.0, ""),)),
            Panel("bin churn: posterior minus pass@k bins (paired)", "training step",
                  "difference of the churn (points)", tuple(ser_churn), hlines=((0.0, ""),)),
        ), caption=(f"Paired differences (mean and 95% CI over {n_seeds} seeds, windows of steps) of each allocator "
                    "with posterior bins against itself with pass@k bins; below 0: the posterior bins lower the proxy or "
                    f"change less. Dashed: the positive controls on {ref0}'s batches (the oracle allocation on bins by "
                    "the true within-prompt variance minus on pass@k bins; the churn of those true-variance bins minus "
                    "the pass@k bins' churn). Churn is undefined before a prompt's third visit."), ncols=2))
    out["summary"] = f" Posterior ({stat}) vs pass@k bins, paired: " + "; ".join(sentences) + "."
    return out



def _regime_result(config: dict, regime: str, seeds: tuple, res: dict) -> dict:
    """Claims, tables, figures, summary text and data of one regime."""
    reg = config["regimes"][regime]
    names = list(reg["learners"])
    pre = "gdro." if regime == "default" else f"gdro.{regime}."
    fig_pre = "" if regime == "default" else f"{regime}_"
    x = checkpoints(reg)
    k = config["pass_k"]
    nb = config["n_bins"]
    hb = config["high_bin"]
    frac = config["phase_fraction"]
    pct = round(100 * frac)
    bud = reg["budget"]
    steps = reg["training"]["steps"]
    w = reg["window_steps"]
    wx = [(i + min(i + w, steps)) / 2.0 for i in range(0, steps, w)]  # window centres (steps)

    def arr(name: str, key: str) -> np.ndarray:
        return np.array([res[(s, name)][key] for s in seeds], dtype=np.float64)

    def class_arr(name: str) -> np.ndarray:  # (seeds, checkpoints, classes), NaN where a class is absent
        return np.array([[[np.nan if v is None else v for v in row] for row in res[(s, name)]["class_acc"]]
                         for s in seeds], dtype=np.float64)

    worst = {n: np.nanmin(class_arr(n), axis=2) for n in names}  # (seeds, checkpoints)
    worst_class = {n: np.bincount(np.nanargmin(class_arr(n)[:, -1, :], axis=1), minlength=len(CLASSES))
                   for n in names}
    final_pass = {n: arr(n, "test_pass")[:, -1] for n in names}
    final_acc = {n: arr(n, "test_acc")[:, -1] for n in names}
    auc = {n: np.array([area_under_curve(x, a) for a in arr(n, "test_acc")]) for n in names}
    rel_pass = {n: 100.0 * (final_pass[n] / final_pass["uniform"] - 1.0) for n in names}
    peak_pass = {n: arr(n, "test_pass").max(axis=1) for n in names}  # the paper's protocol: peak checkpoint
    rel_peak = {n: 100.0 * (peak_pass[n] / peak_pass["uniform"] - 1.0) for n in names}
    d_worst = {n: worst[n][:, -1] - worst["uniform"][:, -1] for n in names}
    d_acc = {n: final_acc[n] - final_acc["uniform"] for n in names}
    red = {key: {n: 100.0 * (arr(n, f"{key}_ratio") - 1.0) for n in names} for key in ("wse", "proxy", "wse_pooled")}
    orc = {key: {n: 100.0 * (arr(n, f"{key}_oracle_ratio") - 1.0) for n in names if n in _BUDGETED}
           for key in ("wse", "proxy")}
    n_seeds = len(seeds)
    setting = (f"regime {regime}: SoftmaxRLVR d = {reg['env']['dim']}, {reg['env']['n_prompts']} train / "
               f"{reg['env']['n_test']} test prompts, batch {reg['training']['batch']}, GRPO, mean "
               f"{bud['mean_budget']} rollouts in [{bud['lower']}, {bud['upper']}], {nb} pass@k bins, {steps} steps")
    worst_note = {n: _fmt_counts(CLASSES, worst_class[n], n_seeds) for n in names}

    claims = []
    ctrl_2x = mean_ci(rel_pass["uniform-2x"]) if "uniform-2x" in names else None
    for key, what, paper in (("wse", "eq. 23 weighted standard error (WSE)", "-22.6 % to -37.1 % (offline sigma_hat)"),
                             ("proxy", "eq. 19 variance proxy", "not reported")):
        for n, ckey, source, statement in (
            ("rollout-gdro", f"rollout_{key}", "GDRO App. E.2.1 / Fig. 6b / eq. 23" if key == "wse"
             else "GDRO Sec. 3.3 / eq. 19 / Remark F.25",
             f"Rollout-GDRO attains a lower {what} than the compute-matched uniform allocation over training"),
            ("sqrt-law", f"sqrt_law_{key}", "GDRO Thm F.17 / eq. 58 (Remark F.25 estimate)",
             (f"the square-root law with online within-prompt variances attains a lower {what} than the "
              "compute-matched uniform allocation over training")),
        ):
            if n not in names or (n == "sqrt-law" and key == "wse"):
                continue
            claims.append(make_claim(
                pre + ckey, source, statement,
                f"relative change of the {what} averaged over training vs n_b = n_bar (%), true within-prompt "
                "variance per bin",
                mean_ci(red[key][n]), less=0.0, regime=regime,
                control=mean_ci(orc[key][n]),
                control_label="best per-bin integer allocation with the true variances (oracle), same batches",
                note=(f"paper: {paper}; with App. E.2.1's pooled sigma_hat (between-prompt spread): "
                      f"{mean_ci(red['wse_pooled'][n]).format()} %; {setting}")))
    for n, tag, paper in (("prompt-gdro", "prompt_gdro", "+9.0 % to +13.1 %"),
                          ("prompt-gdro-paper", "prompt_gdro_paper_step", "+9.0 % to +13.1 %"),
                          ("rollout-gdro", "rollout_gdro", "+9.2 % to +10.6 %")):
        if n not in names:
            continue
        claims.append(make_claim(
            f"{pre}{tag}_pass{k}", "GDRO Sec. 1 / Table 1 / Key Finding 1",
            f"{LABELS[n]} improves pass@{k} over GRPO at equal compute",
            f"paired relative change of final held-out pass@{k} (exact) vs GRPO (%)", mean_ci(rel_pass[n]),
            greater=0.0, regime=regime, control=ctrl_2x, control_label=f"uniform-2x - GRPO, pass@{k} (%)",
            note=f"paper (Qwen3 1.7B/4B/8B, peak checkpoint): {paper}; here at each learner's peak checkpoint: "
                 f"{mean_ci(rel_peak[n]).format()} %"
                 + (f" (uniform-2x: {mean_ci(rel_peak['uniform-2x']).format()} %)" if "uniform-2x" in names else "")
                 + f"; {setting}"))
    for n, tag in (("prompt-gdro", "prompt_gdro"), ("prompt-gdro-paper", "prompt_gdro_paper_step")):
        if n not in names:
            continue
        claims.append(make_claim(
            f"{pre}{tag}_worst_group", "GDRO Sec. 1 / eq. 13",
            f"{LABELS[n]} improves worst-group accuracy over GRPO",
            "paired difference of final held-out accuracy of the worst difficulty class (exact), vs GRPO",
            mean_ci(d_worst[n]), greater=0.0, regime=regime,
            control=mean_ci(d_worst["oracle-gdro"]) if "oracle-gdro" in names else None,
            control_label="oracle-gdro (exact worst-class best response) - GRPO" if "oracle-gdro" in names else "",
            note=f"worst class at the end (seeds): {LABELS[n]}: {worst_note[n]}; GRPO: {worst_note['uniform']}"))
    lead = {}
    for n in names:
        if n in _WEIGHTED:
            keep = np.array([res[(s, n)]["seen_steps"] for s in seeds], dtype=bool)
            gap = np.array([res[(s, n)]["lead_lag_steps"] for s in seeds])
            ref = np.array([res[(s, n)]["frontier_gap_steps"] for s in seeds])
            lead[n] = (*_phase_means(gap, frac, keep), *_phase_means(ref, frac, keep),
                       int(steps - keep.sum(axis=1).min()))
    if "prompt-gdro" in lead:
        e, l_, re, rl, dropped = lead["prompt-gdro"]
        claims.append(make_claim(
            pre + "prompt_gdro_lead", "GDRO App. E.1 / Fig. 6a / eq. 22",
            "Prompt-GDRO's weights lead the data early in training: the lead-lag gap mu_weight - mu_data is positive",
            f"mean lead-lag gap over the first {pct} % of the steps with a seen prompt (bins)", mean_ci(e),
            greater=0.0, regime=regime, control=mean_ci(re),
            control_label="learnable-frontier reference w ~ share x within-prompt variance, same batches (bins)",
            note=f"positive = the weights sit on more solvable bins than the batch's prompts; up to {dropped} "
                 "first-epoch steps in which every prompt was unseen (all in bin 0) are left out"))
        claims.append(make_claim(
            pre + "prompt_gdro_lead_decays", "GDRO App. E.1 / Fig. 6a",
            "the lead-lag gap decays over training (the weights and the data progressively align)",
            f"|mean gap over the first {pct} %| minus |mean gap over the last {pct} %| of the steps with a seen "
            "prompt (bins)",
            mean_ci(np.abs(e) - np.abs(l_)), greater=0.0, regime=regime, control=mean_ci(np.abs(re) - np.abs(rl)),
            control_label="the same for the learnable-frontier reference (bins)",
            note=f"first {pct} %: {mean_ci(e).format()}, last {pct} %: {mean_ci(l_).format()}"))

    binning = _binning_part(regime, pre, fig_pre, names, seeds, res, red, wx, setting)
    claims += binning["claims"]

    # ---- tables
    tables = []
    rows = []
    for n in names:
        rp, dw = mean_ci(rel_pass[n]), mean_ci(d_worst[n])
        rows.append((LABELS[n], mean_ci(final_acc[n]).mean, mean_ci(d_acc[n]).mean, mean_ci(auc[n]).mean,
                     mean_ci(final_pass[n]).mean, rp.mean, rp.low, rp.high, mean_ci(rel_peak[n]).format(),
                     mean_ci(worst[n][:, -1]).mean, dw.mean, dw.low, dw.high, worst_note[n]))
    tables.append(Table(
        f"[{regime}] Held-out accuracy at equal compute ({n_seeds} seeds; paired differences vs GRPO, 95% CI)",
        ("learner", "final mean acc.", "diff vs GRPO", "mean acc. over training", f"final pass@{k}",
         f"pass@{k} change vs GRPO (%)", "CI low", "CI high", f"peak-checkpoint pass@{k} change (%)",
         "worst-class acc.", "diff vs GRPO", "CI low", "CI high", "worst class (seeds)"),
        tuple(rows), note=setting + "; uniform-2x spends twice the rollouts (the positive control)"))
    crow = []
    for n in names:
        ca = class_arr(n)[:, -1, :]
        crow.append((LABELS[n], *[mean_ci(ca[:, c][~np.isnan(ca[:, c])]).mean for c in range(len(CLASSES))]))
    tables.append(Table(f"[{regime}] Final held-out accuracy per difficulty class (mean over seeds)",
                        ("learner", *CLASSES), tuple(crow)))
    drows = []
    for n in names:
        if n not in _BUDGETED and n not in _WEIGHTED:
            continue
        row = [LABELS[n]]
        for key in ("wse", "proxy"):
            row += [mean_ci(red[key][n]).format(), mean_ci(orc[key][n]).format() if n in _BUDGETED else ""]
        row += [mean_ci(red["wse_pooled"][n]).format(),
                mean_ci(arr(n, "budget_high_mass").mean(axis=1)).mean, mean_ci(arr(n, "data_high_mass").mean(axis=1)).mean]
        if n in lead:
            e, l_, re, rl, _ = lead[n]
            row += [mean_ci(e).format(), mean_ci(l_).format(), mean_ci(re).format(),
                    mean_ci(arr(n, "weight_entropy").mean(axis=1)).mean, mean_ci(arr(n, "weight_high_mass").mean(axis=1)).mean]
        else:
            row += ["", "", "", "", ""]
        drows.append(tuple(row))
    tables.append(Table(
        f"[{regime}] GDRO diagnostics (means over training; changes with 95% CI over seeds)",
        ("learner", "WSE change (%)", "oracle WSE change (%)", "eq. 19 change (%)", "oracle eq. 19 change (%)",
         "WSE change, pooled sigma_hat (%)", f"budget share bins >= {hb}", f"data share bins >= {hb}",
         "lead-lag early", "lead-lag late", "frontier reference early", "weight entropy (norm.)",
         f"weight mass bins >= {hb}"),
        tuple(drows),
        note="WSE (eq. 23) and eq. 19 with the true within-prompt variance per bin, relative to n_b = n_bar on the "
             "same bins and shares; oracle: best per-bin integer allocation (arms, exact budget) on the same batches; "
             "pooled sigma_hat: App. E.2.1's offline estimate (mostly between-prompt spread). Early/late: first/last "
             f"{pct} % of the steps with a seen prompt."))
    sel = None
    budgeted = [n for n in ("rollout-gdro", "sqrt-law") if n in names]
    if budgeted:
        sh = np.mean([arr(n, "shares") for n in budgeted], axis=(0, 1)).mean(axis=0)
        sel = _selected_bins(sh, nb)
        m = max(1, round(len(wx) * frac))
        brow = []
        for b in range(nb):
            row = [str(b)]
            for n in budgeted:
                pres = arr(n, "bin_present")[:, -m:, b] > 0
                share = arr(n, "shares")[:, -m:, b].mean()
                vals = [arr(n, "mean_rollouts")[:, -m:, b][pres], arr(n, "sqrt_target")[:, -m:, b][pres],
                        arr(n, "bin_variance")[:, -m:, b][pres]]
                row += [share] + [float(v.mean()) if v.size else "" for v in vals]
            brow.append(tuple(row))
        cols = ["bin"]
        for n in budgeted:
            cols += [f"{n}: share", f"{n}: rollouts", f"{n}: square-root target", f"{n}: v_b (true)"]
        tables.append(Table(
            f"[{regime}] Rollouts per prompt by bin against the square-root target (last {pct} % of training)",
            tuple(cols), tuple(brow),
            note="square-root target: solvers.sqrt_allocation with the true within-prompt variance v_b of the step's "
                 "bins and shares, bounds [lower, upper] (Thm F.17 / eq. 56); means over the steps a bin is present"))

    # ---- figures
    band = curve_ci
    figures = []
    diff_pass = {n: 100.0 * (arr(n, "test_pass") / arr("uniform", "test_pass") - 1.0) for n in names}
    diff_worst = {n: worst[n] - worst["uniform"] for n in names}
    diff_acc = {n: arr(n, "test_acc") - arr("uniform", "test_acc") for n in names}
    alloc = [n for n in ("uniform-2x", "rollout-gdro", "sqrt-law") if n in names]
    rew = [n for n in ("uniform-2x", "prompt-gdro", "prompt-gdro-paper", "gdro-coupled") if n in names]
    wg = [n for n in ("oracle-gdro", "prompt-gdro", "prompt-gdro-paper") if n in names]
    acc_n = [n for n in ("prompt-gdro", "prompt-gdro-paper", "rollout-gdro", "sqrt-law") if n in names]
    worst_title = _fmt_counts(CLASSES, worst_class["uniform"], n_seeds)
    panels = [
        Panel(f"GRPO (reference level; worst class: {worst_title})", "training step", "held-out probability",
              (Series("GRPO", x, *band(arr("uniform", "test_pass"))),
               Series("GRPO mean accuracy", x, *band(arr("uniform", "test_acc")), linestyle="dashed"),
               Series("GRPO worst class", x, *band(worst["uniform"]), linestyle="dotted"))),
        Panel(f"pass@{k} vs GRPO: allocation (paired)", "training step", f"pass@{k} change vs GRPO (%)",
              tuple(Series(LABELS[n], x, *band(diff_pass[n])) for n in alloc), hlines=((0.0, ""),)),
        Panel(f"pass@{k} vs GRPO: reweighting (paired)", "training step", f"pass@{k} change vs GRPO (%)",
              tuple(Series(LABELS[n], x, *band(diff_pass[n])) for n in rew), hlines=((0.0, ""),)),
        Panel("worst-class accuracy vs GRPO (paired)", "training step", "worst-class accuracy - GRPO's",
              tuple(Series(LABELS[n], x, *band(diff_worst[n])) for n in wg), hlines=((0.0, ""),)),
        Panel("mean accuracy vs GRPO (paired)", "training step", "mean accuracy - GRPO's",
              tuple(Series(LABELS[n], x, *band(diff_acc[n])) for n in acc_n), hlines=((0.0, ""),)),
    ]
    figures.append(Figure(f"{fig_pre}accuracy", f"Held-out accuracy at equal compute ({regime} regime)",
                          tuple(p for p in panels if p.series), ncols=3,
                          caption=f"First panel: GRPO's held-out pass@{k} (solid), mean accuracy (dashed) and worst-class "
                                  "accuracy (dotted); the others: paired differences to GRPO (mean and 95% CI over "
                                  f"{n_seeds} seeds; the grey line is no difference). uniform-2x (twice the rollouts) and "
                                  "oracle-gdro (the exact worst-class adversary) are the positive controls."))
    if "prompt-gdro" in names and regime == "default":
        sh_all = arr("prompt-gdro", "shares")
        wt_all = arr("prompt-gdro", "weights")
        rw_all = arr("prompt-gdro", "bin_reward")
        pres = arr("prompt-gdro", "bin_present") > 0
        bins_pg = _selected_bins(sh_all.mean(axis=(0, 1)), nb)

        def masked_band(a: np.ndarray, mask: np.ndarray) -> tuple:
            out = [[], [], []]
            for j in range(a.shape[1]):
                e = mean_ci(a[:, j][mask[:, j]])
                out[0].append(e.mean)
                out[1].append(e.low)
                out[2].append(e.high)
            return tuple(out)

        figures.append(Figure("prompt_gdro_bins", "Prompt-GDRO: data share, adversary weight and reward in selected "
                                                  "bins (GDRO Fig. 3 analogue)", (
            Panel("prompt share (data)", "training step", "share of the batch's prompts",
                  tuple(Series(_bin_label(b, nb), wx, *band(sh_all[:, :, b])) for b in bins_pg)),
            Panel("adversary weight", "training step", "normalised Prompt-GDRO weight",
                  tuple(Series(_bin_label(b, nb), wx, *band(wt_all[:, :, b])) for b in bins_pg)),
            Panel("realised reward", "training step", "mean reward in {-1, +1} (bin mean)",
                  tuple(Series(_bin_label(b, nb), wx, *masked_band(rw_all[:, :, b], pres[:, :, b])) for b in bins_pg)),
        ), caption=f"prompt-gdro at the matched step; bins shown: 0, the middle bin with the largest mean share, and "
                   f"{nb - 1} (bin 0 = lowest pass rate); mean and 95% CI over {n_seeds} seeds, windows of {w} steps."
                   " The other bins are in the results' data.", ncols=3))
    shown = [n for n in ("prompt-gdro", "prompt-gdro-paper") if n in lead]  # gdro-coupled: in the table
    if shown and regime == "default":
        seen_w = arr(shown[0], "unseen_share").mean(axis=0) < 1.0  # windows with a seen prompt

        def seen_band(a: np.ndarray) -> tuple:
            return tuple(np.where(seen_w, v, np.nan) for v in band(a))

        ll = [Series(LABELS[n], wx, *seen_band(arr(n, "lead_lag"))) for n in shown]
        fr = np.array([_window_mean(np.array(res[(s, shown[0])]["frontier_gap_steps"])[:, None], w)[:, 0]
                       for s in seeds])
        ll.append(Series("learnable-frontier reference", wx, *seen_band(fr), linestyle="dashed"))
        mass = [Series(LABELS[n], wx, *band(arr(n, "weight_high_mass"))) for n in shown]
        mass += [Series("data", wx, *band(arr(shown[0], "data_high_mass")), linestyle="dashed")]
        figures.append(Figure("lead_lag", "Prompt-GDRO diagnostics (GDRO Fig. 4 / 6a)", (
            Panel("lead-lag gap (eq. 22)", "training step", r"$\mu_{weight} - \mu_{data}$ (bins)", tuple(ll),
                  hlines=((0.0, ""),)),
            Panel("weight entropy", "training step", r"entropy / $\log B$",
                  tuple(Series(LABELS[n], wx, *band(arr(n, "weight_entropy"))) for n in shown)),
            Panel(f"mass in bins >= {hb}", "training step", "adversary weight (solid) or data share (dashed)",
                  tuple(mass)),
        ), caption="Lead-lag gap (windows where every prompt was unseen are left blank) against the learnable-frontier "
                   "reference (the gap of weights proportional to share x within-prompt variance, the positive "
                   f"control); the grey line is no lead. 95% CI over {n_seeds} seeds, windows of {w} steps. "
                   "gdro-coupled's adversary is in the diagnostics table.", ncols=3))
    wse_panels = []
    for key, title in (("wse", "eq. 23 WSE, true within-prompt sigma"), ("proxy", "eq. 19 variance proxy")):
        ser = []
        for n in budgeted:
            ser.append(Series(LABELS[n], wx, *band(100.0 * (arr(n, key) / arr(n, f"{key}_uniform") - 1.0))))
        if "rollout-gdro" in names:
            ser.append(Series("oracle", wx, *band(100.0 * (arr("rollout-gdro", f"{key}_oracle")
                                                        / arr("rollout-gdro", f"{key}_uniform") - 1.0)),
                              linestyle="dashed"))
        if ser:
            wse_panels.append(Panel(f"change vs compute-matched uniform: {title}", "training step", "change (%)",
                                    tuple(ser), hlines=((0.0, ""),)))
    if wse_panels:
        figures.append(Figure(f"{fig_pre}wse", f"Variance-aware allocation: WSE and eq. 19 proxy ({regime} regime, "
                                               "GDRO Fig. 6b)", tuple(wse_panels),
                              caption="Relative change against n_b = n_bar on the same bins and shares (below 0: the "
                                      "allocation lowers the proxy); oracle: the best per-bin integer allocation with "
                                      "the true variances on rollout-gdro's batches. The paper reports -22.6 % to "
                                      f"-37.1 % for WSE with its pooled sigma_hat. 95% CI over {n_seeds} seeds.",
                              ncols=2))
    if budgeted and regime == "default":
        panels = []
        for b in sel:
            ser = [Series(LABELS[n], wx, *band(arr(n, "mean_rollouts")[:, :, b])) for n in budgeted]
            ser.append(Series("square-root target", wx, *band(arr(budgeted[0], "sqrt_target")[:, :, b]),
                              linestyle="dashed"))
            panels.append(Panel(_bin_label(b, nb), "training step", "rollouts per prompt", tuple(ser),
                                hlines=((float(bud["mean_budget"]), ""),)))
        panels.append(Panel("shadow price", "training step", r"shadow price $\mu$",
                            tuple(Series(LABELS[n], wx, *band(arr(n, "shadow_price")))
                                  for n in ("rollout-gdro",) if n in names)))
        figures.append(Figure("rollout_budget", "Rollouts per prompt in selected bins against the square-root law "
                                                "(GDRO Fig. 2 / 7, Thm F.17)", tuple(panels), ncols=2,
                              caption="Mean rollouts given to a prompt of the bin (95% CI over seeds, windows of "
                                      f"{w} steps; grey line: n_bar) and the square-root target with the true "
                                      f"within-prompt variances ({budgeted[0]}'s bins); last panel: Rollout-GDRO's "
                                      "signed shadow price."))
        if "rollout-gdro" in names:
            shr = arr("rollout-gdro", "shares").mean(axis=0)
            bsh = arr("rollout-gdro", "budget_share").mean(axis=0)
            nwin = shr.shape[0]
            snaps = sorted({0, nwin // 4, nwin // 2, nwin - 1})
            panels = []
            for j in snaps:
                panels.append(Panel(f"steps {int(wx[j] - w / 2)}-{int(min(wx[j] + w / 2, steps))}", "pass@k bin",
                                    "share", (
                    Series("dataset share", list(range(nb)), shr[j], style="bar"),
                    Series("rollout budget share", list(range(nb)), bsh[j], style="bar"),
                ), xticklabels=tuple(str(b) for b in range(nb))))
            figures.append(Figure("budget_snapshots", "Rollout-GDRO's allocation economy (GDRO Fig. 8 analogue)",
                                  tuple(panels), caption="At four snapshots, each bin's share of the prompts against its "
                                                         f"share of the rollout budget (mean over {n_seeds} seeds); a "
                                                         "budget bar above the data bar: more than n_bar rollouts per "
                                                         "prompt.", ncols=2))
    tables += binning["tables"]
    figures += binning["figures"]
    summary = (
        f"[{regime}] {setting}, {n_seeds} seeds, paired. Final pass@{k} vs GRPO: "
        + ", ".join(f"{LABELS[n]} {mean_ci(rel_pass[n]).format()} %" for n in names if n != "uniform")
        + (f". Positive control uniform-2x: {ctrl_2x.format()} %" if ctrl_2x is not None else "")
        + (f". Rollout-GDRO WSE {mean_ci(red['wse']['rollout-gdro']).format()} % (oracle "
           f"{mean_ci(orc['wse']['rollout-gdro']).format()} %), eq. 19 {mean_ci(red['proxy']['rollout-gdro']).format()} % "
           f"(oracle {mean_ci(orc['proxy']['rollout-gdro']).format()} %)" if "rollout-gdro" in names else "")
        + (f"; sqrt-law eq. 19 {mean_ci(red['proxy']['sqrt-law']).format()} %" if "sqrt-law" in names else "")
        + (f". Worst class at the end: GRPO {worst_note['uniform']}"
           + (f"; prompt-gdro {worst_note['prompt-gdro']}" if "prompt-gdro" in names else ""))
        + "." + binning["summary"]
    )
    data = {
        "checkpoints": x, "window_centres": wx, "selected_bins": sel,
        "final_pass": {n: final_pass[n].tolist() for n in names},
        "relative_pass_change_pct": {n: rel_pass[n].tolist() for n in names},
        "worst_class_final": {n: worst[n][:, -1].tolist() for n in names},
        "worst_class_counts": {n: dict(zip(CLASSES, worst_class[n].tolist())) for n in names},
        "wse_change_pct": {n: red["wse"][n].tolist() for n in names},
        "proxy_change_pct": {n: red["proxy"][n].tolist() for n in names},
        "wse_pooled_change_pct": {n: red["wse_pooled"][n].tolist() for n in names},
        "oracle_change_pct": {key: {n: v.tolist() for n, v in orc[key].items()} for key in orc},
        "binning": binning["data"],
        "runs": {f"{s}/{n}": {kk: v for kk, v in res[(s, n)].items()
                              if kk not in ("lead_lag_steps", "frontier_gap_steps", "seen_steps")}
                 for s in seeds for n in names},
    }
    return {"claims": claims, "tables": tables, "figures": figures, "summary": summary, "data": data}


def summarize(config: dict, seeds, tasks, results) -> StudyResult:
    seeds = tuple(seeds)
    out = {"claims": [], "tables": [], "figures": [], "summary": [], "data": {}}
    for regime in config["regimes"]:
        res = {(t["seed"], t["controller"]): r for t, r in zip(tasks, results) if t["regime"] == regime}
        part = _regime_result(config, regime, seeds, res)
        for key in ("claims", "tables", "figures"):
            out[key] += part[key]
        out["summary"].append(part["summary"])
        out["data"][regime] = part["data"]
    held = sum(c.verdict == "holds" for c in out["claims"])
    summary = (" ".join(out["summary"]) + f" {held} of {len(out['claims'])} claims hold. The powered regime was chosen "
               "by its positive control (uniform-2x's pass@8 gain over GRPO in a pilot on seeds 1001-1006, see the "
               "module docstring); its value in this run is the control of each pass@8 claim.")
    return StudyResult(NAME, TITLE, summary, config, seeds, tuple(out["claims"]), tuple(out["tables"]),
                       tuple(out["figures"]), {"regimes": out["data"]})
