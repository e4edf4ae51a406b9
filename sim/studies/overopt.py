"""Study ``overopt``: reward over-optimisation, and how DRO, DRRO and a KL penalty change it.

The DRRO paper's main benchmark (Sec. 5, Fig. 3, Table 1) on a simulator with a known gold reward:
:class:`sim.rlhf.FiniteResponseRLHF` (a log-linear policy over 32 responses per prompt, a gold
reward, a proxy reward with a structured error that grows where the reference rarely goes,
calibrated to the paper's 85.7 % proxy-gold agreement). Each method trains the same policy from the
reference on the proxy with GRPO-style sampled updates and is evaluated on held-out prompts with
the exact expected gold and proxy improvement over the step-0 policy and the exact sequence KL
from the reference (the paper's frontier axes).

Methods (matched: same environment, prompt batches, rollout uniforms, optimiser and steps per seed):

* ``grpo``: proxy rewards, GRPO group-normalised advantages (eq. 4.1), no KL term (as the paper).
* ``grpo_kl``: the classic mitigation, GRPO plus ``kl_coef * KL(pi_theta || pi_0)`` in the loss
  (exact gradient; ``kl_coef = 0.04``, DeepSeekMath-GRPO's value, relative to normalised advantages).
* ``dro``: value-robust shaping, :func:`solvers.dro_rewards` hard, fixed budget.
* ``drro_hard``: eq. (4.14), :func:`solvers.drro_rewards` hard, fixed budget.
* ``drro_soft``: eq. (4.15), soft with temperature ``tau``, fixed budget.
* ``drro_soft_dyn``: Algorithm 4, eq. (4.15) with the dynamic budget eq. (4.17)
  ``delta = delta0 + alpha * KL`` (k3 estimate of the batch, :func:`solvers.k3_kl`, averaged over a
  20-update window, :func:`solvers.dynamic_budget`; ``delta0 = 0`` as the paper's reported runs).

Hyperparameters are the paper's (App. G: ``G = 16`` rollouts, 16 prompts per update, 300 updates,
validation every 5, one policy-gradient step per batch -- so the clipped ratio is 1 --, fixed budget
``2.5 G``, ``alpha = 10``, ``tau = 2``) with two conversions, fixed before any run:

* Reward units. The paper's budgets are in its reward model's units; it calibrates the budget from
  the pilot l1 discrepancy between proxy and gold per response under the initial policy (Sec. 4.5).
  Its fixed ``2.5 G`` corresponds to a discrepancy of 2.5, so we multiply every reward-unit
  hyperparameter (fixed budget, ``alpha``, ``tau``) by ``m / 2.5`` with ``m`` this environment's
  exact pilot discrepancy (:meth:`FiniteResponseRLHF.pilot_discrepancy`, ~0.43): the fixed budget
  is ``G * m``.
* Optimiser. Adam (the paper uses AdamW, lr 1e-5 for LoRA on a 0.5B model); our policy has 8
  parameters, so the learning rate (0.05) is chosen so that 300 updates reach the regime where the
  proxy keeps rising after the gold reward has stopped (KL of a few nats, the range of ``pi_0``'s
  support), chosen from GRPO's trajectory only.

Theorem 6.1 along the trajectories: at every evaluation point of the robust runs, with that run's
current budget (unscaled: ``delta = (K / G) delta_tilde``) and the held-out prompts' proxy rewards,
the promptwise DRRO optimum (:func:`solvers.waterfill`) and DRO optimum (:func:`solvers.dro_policy`)
are compared: DRRO's worst-case regret (:func:`solvers.worst_case_regret`) must not exceed DRO's
(DRRO minimises it), and under rank-preserving truths ``phi(r_hat)`` (identity, exponential, rank)
DRRO's value must be at least DRO's (Thm 6.1). With the simulator's gold, which is *not* a
rank-preserving transform of the proxy, the gold advantage of DRRO's optimum is reported as an
extension beyond the theorem.
"""

from __future__ import annotations

import numpy as np

from sim.rlhf import FiniteResponseRLHF
from solvers import (
    dro_policy,
    dro_rewards,
    drro_rewards,
    dynamic_budget,
    group_advantages,
    k3_kl,
    waterfill,
    worst_case_regret,
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

NAME = "overopt"
TITLE = "RLHF over-optimisation: GRPO, KL penalty, DRO and DRRO on a gold/proxy simulator (DRRO Sec. 5-6)"

METHODS = ("grpo", "grpo_kl", "dro", "drro_hard", "drro_soft", "drro_soft_dyn")
LABELS = {
    "grpo": "GRPO",
    "grpo_kl": "GRPO + KL penalty",
    "dro": "DRO (hard)",
    "drro_hard": "DRRO hard",
    "drro_soft": "DRRO soft",
    "drro_soft_dyn": "DRRO soft + dynamic",
}
ROBUST = ("dro", "drro_hard", "drro_soft", "drro_soft_dyn")


def config(scale: str) -> dict:
    env = {"n_train": 512, "n_eval": 256, "n_responses": 32, "dim": 8}
    cfg = {
        "seeds": 10,
        "env": env,
        "steps": 300,
        "eval_every": 5,
        "batch": 16,
        "group": 16,
        "lr": 0.05,
        "kl_coef": 0.04,
        "paper": {"budget_per_rollout": 2.5, "alpha": 10.0, "tau": 2.0, "window": 20, "delta0": 0.0,
                  "reward_unit": 2.5},
        "methods": list(METHODS),
    }
    if scale == "quick":
        cfg.update(seeds=2, steps=60, eval_every=10, env={**env, "n_train": 128, "n_eval": 64})
    elif scale == "full":
        cfg.update(seeds=20)
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    return [{"seed": int(s), "method": m, "label": f"{m} seed {s}"} for s in seeds for m in config["methods"]]


def _adam(state: dict, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    """Adam's ascent direction (Kingma & Ba, Alg. 1); ``state`` holds m, v, t."""
    state["t"] += 1
    state["m"] = b1 * state["m"] + (1 - b1) * grad
    state["v"] = b2 * state["v"] + (1 - b2) * grad * grad
    m_hat = state["m"] / (1 - b1 ** state["t"])
    v_hat = state["v"] / (1 - b2 ** state["t"])
    return m_hat / (np.sqrt(v_hat) + eps)


def _thm61(env: FiniteResponseRLHF, delta: float) -> tuple[float, float, float]:
    """(max excess worst-case regret of DRRO's optimum over DRO's, min value difference under
    rank-preserving truths, mean gold advantage) over the held-out prompts at budget ``delta``."""
    r_hat, gold = env.eval.proxy, env.eval.gold
    pi_r = waterfill(r_hat, delta)
    pi_d = dro_policy(r_hat, delta)
    excess = worst_case_regret(pi_r, r_hat, delta).value - worst_case_regret(pi_d, r_hat, delta).value
    diff = pi_r - pi_d
    ranks = np.argsort(np.argsort(r_hat, axis=1), axis=1).astype(float)
    truths = (r_hat, np.exp(r_hat - r_hat.max(axis=1, keepdims=True)), ranks)
    rank_min = min(float((diff * t).sum(axis=1).min()) for t in truths)
    return float(np.max(excess)), rank_min, float((diff * gold).sum(axis=1).mean())


def run_task(task: dict, config: dict) -> dict:
    """Train one method from the reference on one seed's environment; return its trajectory."""
    seed, method = int(task["seed"]), task["method"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    env = FiniteResponseRLHF(**config["env"], seed=np.random.default_rng([seed, 0]))
    batch_rng = np.random.default_rng([seed, 1])  # same prompt batches for every method
    sample_rng = np.random.default_rng([seed, 2])  # same rollout uniforms for every method
    paper = config["paper"]
    B, G = int(config["batch"]), int(config["group"])
    K = env.n_responses
    m = env.pilot_discrepancy()
    unit = m / paper["reward_unit"]
    delta_fixed = paper["budget_per_rollout"] * G * unit
    alpha, tau = paper["alpha"] * unit, paper["tau"] * unit
    theta = np.zeros(env.dim)
    adam = {"m": np.zeros(env.dim), "v": np.zeros(env.dim), "t": 0}
    base = env.expected(theta)
    kl_hist: list[float] = []
    out: dict[str, list] = {k: [] for k in ("step", "gold", "proxy", "kl", "budget")}
    thm = {"regret_excess": -np.inf, "rank_min": np.inf, "gold_adv": []}

    def budget() -> float:
        if method == "drro_soft_dyn":
            if not kl_hist:
                return paper["delta0"]
            return float(dynamic_budget(paper["delta0"], alpha, np.array(kl_hist), window=paper["window"]))
        return delta_fixed if method in ROBUST else 0.0

    def record(t: int) -> None:
        now = env.expected(theta)
        d_tilde = budget()
        out["step"].append(t)
        out["gold"].append(now["gold"] - base["gold"])
        out["proxy"].append(now["proxy"] - base["proxy"])
        out["kl"].append(now["kl"])
        out["budget"].append(d_tilde)
        if method in ROBUST:
            excess, rank_min, gold_adv = _thm61(env, (K / G) * d_tilde)
            thm["regret_excess"] = max(thm["regret_excess"], excess)
            thm["rank_min"] = min(thm["rank_min"], rank_min)
            thm["gold_adv"].append(gold_adv)

    steps, every = int(config["steps"]), int(config["eval_every"])
    for t in range(steps):
        if t % every == 0:
            record(t)
        ids = batch_rng.choice(env.n_train, size=B, replace=False)
        resp, lp = env.sample(theta, ids, G, sample_rng)
        rewards = env.rewards(ids, resp)
        seq_lp = np.take_along_axis(lp, resp, axis=1)
        if method == "drro_soft_dyn":
            ref_lp = np.take_along_axis(env.train.ref_logprobs[ids], resp, axis=1)
            kl_hist.append(float(np.mean(k3_kl(ref_lp, seq_lp).mean)))
        if method in ("grpo", "grpo_kl"):
            shaped = rewards
        elif method == "dro":
            shaped = dro_rewards(rewards, seq_lp, budget()).rewards
        elif method == "drro_hard":
            shaped = drro_rewards(rewards, seq_lp, budget()).rewards
        else:
            shaped = drro_rewards(rewards, seq_lp, budget(), tau=tau).rewards
        adv = group_advantages(shaped, kind="grpo")
        grad = np.einsum("pg,pgd->d", adv, env.score(theta, ids, resp)) / (B * G)
        if method == "grpo_kl":
            grad = grad - config["kl_coef"] * env.kl_gradient(theta, ids)
        theta = theta + config["lr"] * _adam(adam, grad)
    record(steps)
    result = {**out, "theta": theta.tolist(), "pilot_discrepancy": m, "delta_fixed": delta_fixed,
              "alpha": alpha, "tau": tau, "agreement": env.pairwise_agreement()}
    if method in ROBUST:
        result.update(thm61_regret_excess=thm["regret_excess"], thm61_rank_min=thm["rank_min"],
                      thm61_gold_adv=float(np.mean(thm["gold_adv"])))
    return result


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------


def _peak_stats(res: dict) -> dict[str, float]:
    gold = np.asarray(res["gold"])
    i = int(np.argmax(gold))
    return {"peak_gold": float(gold[i]), "proxy_at_peak": float(res["proxy"][i]),
            "gap": float(gold[i] - res["proxy"][i]), "kl_at_peak": float(res["kl"][i]),
            "final_gold": float(gold[-1]), "final_proxy": float(res["proxy"][-1]),
            "decline": float(gold[i] - gold[-1]), "peak_step": float(res["step"][i])}


def summarize(config: dict, seeds, tasks: list[dict], results: list[dict]) -> StudyResult:
    by: dict[str, dict[int, dict]] = {m: {} for m in config["methods"]}
    for task, res in zip(tasks, results):
        by[task["method"]][int(task["seed"])] = res
    seeds = [int(s) for s in seeds]
    methods = [m for m in config["methods"] if len(by[m]) == len(seeds)]
    stats = {m: {s: _peak_stats(by[m][s]) for s in seeds} for m in methods}

    def est(m: str, key: str):
        return mean_ci([stats[m][s][key] for s in seeds])

    def paired(a: str, b: str, key: str):
        return mean_ci([stats[a][s][key] - stats[b][s][key] for s in seeds])

    columns = ("method", "peak gold", "proxy at peak", "gold-proxy gap", "KL at peak (nats)", "final gold",
               "final proxy")
    rows = tuple((LABELS[m], *(est(m, k).format() for k in ("peak_gold", "proxy_at_peak", "gap", "kl_at_peak",
                                                            "final_gold", "final_proxy"))) for m in methods)
    table1 = Table("Table 1 analogue: peak held-out gold improvement and diagnostics (mean [95% CI] over seeds)",
                   columns, rows,
                   note="Rewards are improvements over the step-0 policy on held-out prompts; proxy and gap at the "
                        "step of each seed's peak gold; KL = exact KL(pi_theta || pi_0) per prompt, averaged.")
    claims = []
    if "grpo" in methods:
        decline = est("grpo", "decline")
        claims.append(make_claim(
            "overopt.grpo_overoptimises", "DRRO Sec. 1 / Fig. 1 (Gao et al. 2023)",
            "Optimising the proxy with GRPO, the gold reward peaks and then declines while the proxy keeps rising",
            "GRPO peak gold minus final gold (reward units)", decline, greater=0.0,
            note=f"final proxy {est('grpo', 'final_proxy').format()} vs proxy at the gold peak "
                 f"{est('grpo', 'proxy_at_peak').format()}"))
    if {"grpo", "drro_soft_dyn"} <= set(methods):
        claims.append(make_claim(
            "overopt.drro_dynamic_beats_grpo", "DRRO Table 1 (peak gold 1.43 vs 1.27)",
            "DRRO soft + dynamic budget (Algorithm 4) reaches a higher peak gold reward than GRPO",
            "paired difference of peak gold improvement, DRRO soft+dyn - GRPO", paired("drro_soft_dyn", "grpo",
                                                                                       "peak_gold"), greater=0.0,
            note=f"the dynamic budget ends at {mean_ci([by['drro_soft_dyn'][s]['budget'][-1] for s in seeds]).format()}"
                 f" (fixed budget {by['drro_soft_dyn'][seeds[0]]['delta_fixed']:.3g}); KL at peak "
                 f"{est('drro_soft_dyn', 'kl_at_peak').format()} vs GRPO {est('grpo', 'kl_at_peak').format()}"))
        claims.append(make_claim(
            "overopt.drro_dynamic_smaller_gap", "DRRO Table 1 (gold-proxy gap -1.10 vs -1.53)",
            "DRRO soft + dynamic has a smaller gold-proxy gap at its peak than GRPO",
            "paired difference of (gold - proxy) at peak, DRRO soft+dyn - GRPO", paired("drro_soft_dyn", "grpo",
                                                                                         "gap"), greater=0.0))
    if {"grpo", "dro"} <= set(methods):
        claims.append(make_claim(
            "overopt.dro_below_grpo", "DRRO Table 1 (peak gold 0.79 vs 1.27), Sec. 5",
            "Value-robust DRO is over-pessimistic: its peak gold reward is below GRPO's",
            "paired difference of peak gold improvement, GRPO - DRO", paired("grpo", "dro", "peak_gold"), greater=0.0,
            note=f"DRO peaks at KL {est('dro', 'kl_at_peak').format()} (GRPO {est('grpo', 'kl_at_peak').format()}) "
                 f"and ends at gold {est('dro', 'final_gold').format()} (GRPO {est('grpo', 'final_gold').format()})"))
    robust_here = [m for m in methods if m in ROBUST]
    if robust_here:
        excess = mean_ci([max(by[m][s]["thm61_regret_excess"] for m in robust_here) for s in seeds])
        rank_min = mean_ci([min(by[m][s]["thm61_rank_min"] for m in robust_here) for s in seeds])
        gold_adv = mean_ci([float(np.mean([by[m][s]["thm61_gold_adv"] for m in robust_here])) for s in seeds])
        claims.append(make_claim(
            "overopt.thm61_regret", "DRRO Thm 3.4 / Thm 6.1 setting",
            "Along the trajectories, the DRRO optimum's worst-case regret never exceeds the DRO optimum's",
            "max over evaluation points and held-out prompts of WCR(DRRO opt) - WCR(DRO opt)", excess, less=1e-9))
        claims.append(make_claim(
            "overopt.thm61_rank_preserving", "DRRO Thm 6.1",
            "Under rank-preserving truth phi(r_hat) (identity, exp, rank) DRRO's optimum has at least DRO's value",
            "min over points, prompts and truths of <pi_DRRO - pi_DRO, phi(r_hat)>", rank_min, greater=-1e-9))
        agreement = mean_ci([by[methods[0]][s]["agreement"] for s in seeds])
        claims.append(make_claim(
            "overopt.drro_optimum_gold_beyond_thm61", "DRRO Sec. 6 (beyond Thm 6.1's assumption)",
            "With the simulator's gold reward (not rank-preserving), DRRO's promptwise optimum still has more "
            "gold value than DRO's",
            "mean gold value of pi_DRRO - pi_DRO over points and held-out prompts", gold_adv, greater=0.0,
            note=f"proxy-gold pairwise agreement under pi_0 {agreement.format()}"))

    # frontier figure: mean KL (x) against mean improvement (y) with CI bands, per evaluation step
    gold_series, proxy_series, step_series, diff_series = [], [], [], []
    curves = {}
    gold_all = {m: np.array([by[m][s]["gold"] for s in seeds]) for m in methods}
    for m in methods:
        g = gold_all[m]
        p = np.array([by[m][s]["proxy"] for s in seeds])
        k = np.array([by[m][s]["kl"] for s in seeds])
        ge = [mean_ci(c) for c in g.T]
        pe = [mean_ci(c) for c in p.T]
        x = k.mean(axis=0)
        steps = by[m][seeds[0]]["step"]
        gold_series.append(Series(LABELS[m], x, [e.mean for e in ge], [e.low for e in ge], [e.high for e in ge]))
        proxy_series.append(Series(LABELS[m], x, [e.mean for e in pe], [e.low for e in pe], [e.high for e in pe]))
        step_series.append(Series(LABELS[m], steps, [e.mean for e in ge], [e.low for e in ge], [e.high for e in ge]))
        if m != "grpo" and "grpo" in methods:
            de = [mean_ci(c) for c in (g - gold_all["grpo"]).T]
            diff_series.append(Series(LABELS[m], steps, [e.mean for e in de], [e.low for e in de],
                                      [e.high for e in de]))
        curves[m] = {"step": steps, "kl_mean": x.tolist(), "gold_mean": [e.mean for e in ge],
                     "proxy_mean": [e.mean for e in pe]}
    kl_axis = "KL(pi_theta || pi_0) (nats)"
    panels = [
        Panel("gold (held-out evaluator) vs KL", kl_axis, "gold improvement (reward units)", tuple(gold_series),
              hlines=((0.0, "step 0"),)),
        Panel("proxy (training reward) vs KL", kl_axis, "proxy improvement (reward units)", tuple(proxy_series),
              hlines=((0.0, "step 0"),)),
        Panel("gold vs update", "policy update", "gold improvement (reward units)", tuple(step_series)),
    ]
    if diff_series:
        panels.append(Panel("gold minus GRPO's (paired by seed)", "policy update", "gold difference (reward units)",
                            tuple(diff_series), hlines=((0.0, "GRPO"),)))
    frontier = Figure(
        "frontier", "Reward improvement against KL from the reference (held-out prompts)", tuple(panels),
        caption="DRRO paper Fig. 3 analogue (top): each curve is one method's mean trajectory over seeds (x: mean KL "
                "at an evaluation step, band: 95% CI of the improvement). Over-optimisation shows as a proxy that "
                "keeps rising while the gold curve bends down. Bottom: gold against the update, and each method's "
                "paired gold difference to GRPO (above 0: better than GRPO at that update).", ncols=2)
    peak_e = [est(m, "peak_gold") for m in methods]
    kl_e = [est(m, "kl_at_peak") for m in methods]
    ticks = tuple(LABELS[m] for m in methods)
    bars = Figure(
        "peak", "Peak gold improvement and the KL where it is reached",
        (Panel("peak gold improvement", "method", "gold improvement (reward units)",
               tuple(Series(LABELS[m], [i], [e.mean], [e.low], [e.high], style="points")
                     for i, (m, e) in enumerate(zip(methods, peak_e))), xticklabels=ticks),
         Panel("KL at peak gold", "method", "KL(pi_theta || pi_0) (nats)",
               tuple(Series(LABELS[m], [i], [e.mean], [e.low], [e.high], style="points")
                     for i, (m, e) in enumerate(zip(methods, kl_e))), xticklabels=ticks)),
        caption="Table 1 analogue: means with 95% CIs over seeds.", ncols=2)
    first = by[methods[0]][seeds[0]]
    lines = [f"{LABELS[m]} {est(m, 'peak_gold').format()}" for m in methods]
    summary = (
        f"Finite-response RLHF simulator ({config['env']['n_responses']} responses per prompt, "
        f"{config['env']['dim']} features, proxy-gold agreement {first['agreement']:.3f} under pi_0), "
        f"{config['steps']} updates of {config['batch']} prompts x {config['group']} rollouts, "
        f"{len(seeds)} seeds. Paper hyperparameters in this environment's reward units: fixed budget "
        f"{first['delta_fixed']:.2f}, alpha {first['alpha']:.2f}, tau {first['tau']:.2f} (pilot l1 discrepancy "
        f"{first['pilot_discrepancy']:.3f} per response). Peak gold improvement: " + "; ".join(lines) + "."
    )
    data = {"per_seed": {m: {str(s): stats[m][s] for s in seeds} for m in methods}, "curves": curves}
    return StudyResult(NAME, TITLE, summary, config, tuple(seeds), tuple(claims), (table1,), (frontier, bars), data)
