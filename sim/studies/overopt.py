"""Study ``overopt``: reward over-optimisation, and how DRO, DRRO and a KL penalty change it.

The DRRO paper's main benchmark (Sec. 5, Fig. 3, Table 1) on a simulator with a known gold reward:
:class:`sim.rlhf.FiniteResponseRLHF` (a log-linear policy over 32 responses per prompt, a gold
reward, a proxy reward with a structured error that grows where the reference rarely goes). Each
method trains the same policy from the reference on the proxy with GRPO-style sampled updates and is
evaluated on held-out prompts with the exact expected gold and proxy improvement over the step-0
policy and the exact sequence KL from the reference (the paper's frontier axes).

Methods (matched: same environment, prompt batches, rollout uniforms, optimiser and steps per seed):

* ``grpo``: proxy rewards, GRPO group-normalised advantages (eq. 4.1), no KL term (as the paper).
* ``grpo_kl``: the classic mitigation, GRPO plus ``kl_coef * KL(pi_theta || pi_0)`` in the loss
  (exact gradient; ``kl_coef = 0.04``, DeepSeekMath-GRPO's value, relative to normalised advantages).
* ``dro``: value-robust shaping, :func:`solvers.dro_rewards` hard, fixed budget.
* ``drro_hard``: eq. (4.14), :func:`solvers.drro_rewards` hard, fixed budget.
* ``drro_soft``: eq. (4.15), soft with temperature ``tau``, fixed budget.
* ``drro_soft_dyn``: Algorithm 4, eq. (4.15) with the dynamic budget eq. (4.17)
  ``delta = delta0 + alpha * KL`` (k3 estimate of the batch, :func:`solvers.k3_kl`, averaged over a
  20-update window, :func:`solvers.dynamic_budget`; ``delta0 = 0`` as the paper's reported runs),
  with ``alpha`` converted in reward units *and* KL units (below).
* ``drro_soft_dyn_reward``: the same with ``alpha`` converted in reward units only (the conversion
  this study used before; kept to show what the KL conversion changes).

Hyperparameters are the paper's (App. G: ``G = 16`` rollouts, 16 prompts per update, 300 updates,
validation every 5, one policy-gradient step per batch -- so the clipped ratio is 1 --, fixed budget
``2.5 G``, ``alpha = 10``, ``tau = 2``) with three conversions, fixed before any run:

* Reward units. The paper's budgets are in its reward model's units; it calibrates the budget from
  the pilot l1 discrepancy between proxy and gold per response under the initial policy (Sec. 4.5).
  Its fixed ``2.5 G`` corresponds to a discrepancy of 2.5, so every reward-unit hyperparameter
  (fixed budget, ``alpha``, ``tau``) is multiplied by ``u = m / 2.5`` with ``m`` this environment's
  exact pilot discrepancy (:meth:`FiniteResponseRLHF.pilot_discrepancy`, ~0.43 by default): the
  fixed budget is ``G * m``.
* KL units. ``alpha`` multiplies a KL, so it also carries ``1 / nats``. In the paper the KL at
  GRPO's gold peak is 38.82 nats (Table 1; 32.47 at DRRO soft + dynamic's own peak), so at that
  drift the dynamic budget is ``alpha * KL / (2.5 G) = 10 * 38.82 / 40 = 9.7`` times the fixed
  budget (``10 * 32.47 / 40 = 8.1`` at DRRO's peak). Here the KL at GRPO's gold peak is about 3 nats
  (2.6-3.3 by seed in the default regime), so ``alpha = 10 u`` alone gives ``10 * 3 / 40 = 0.75``
  times the fixed budget: the dynamic budget never reaches the fixed one, the opposite of the
  paper. Converted in KL units too, ``alpha = 10 u * 38.82 / KL_GRPO`` (about ``129 u``, i.e. ~22
  for ``u = 0.17``), which restores ``alpha * KL_GRPO / (2.5 G u) = 9.7`` exactly
  (:func:`convert_alpha`). ``KL_GRPO`` is measured per seed by a GRPO pilot run on the same
  environment, prompt batches and rollout uniforms (the same trajectory as that seed's ``grpo``
  run; the paper also tunes ``alpha`` on held-out prompts scored by the gold evaluator, App. G).
  The paper's KL is sequence-level (App. G); its budget statistic is taken to be on the same scale.
* Optimiser. Adam (the paper uses AdamW, lr 1e-5 for LoRA on a 0.5B model); our policy has 8
  parameters, so the learning rate (0.05) is chosen so that 300 updates reach the regime where the
  proxy keeps rising after the gold reward has stopped (KL of a few nats, the range of ``pi_0``'s
  support), chosen from GRPO's trajectory only.

Regimes (each with its own claims, keys ``overopt.<claim>`` and ``overopt.stress.<claim>``):

* ``default``: the proxy calibrated to the main benchmark's 85.7 % pairwise proxy-gold agreement
  (``error_scale = 0.48``). Over-optimisation is weak here: GRPO's gold declines after its peak by
  about 4-5 % of the peak.
* ``stress``: the proxy calibrated to the paper's raw-proxy stress test, 73.6 % agreement (App. G;
  ``error_scale = 1.15``, agreement 0.736 measured exactly on 4,000 prompts). Chosen by its
  positive control, GRPO's gold decline after its peak, measured with GRPO alone on pilot seeds
  1000-1009 (not the study's seeds) for four candidates: default 0.061 (4.9 % of the peak),
  ``error_scale = 1.0`` 0.179 (19 %), ``error_scale = 1.15`` 0.250 (27 %), ``ref_quality = 1.5``
  0.177 (24 %). The stress-test calibration has the largest decline and a paper anchor; no other
  method was run to choose it.

Positive controls (how each claim is made testable; :func:`solvers.claims.make_claim`):

* ``grpo_overoptimises`` (GRPO's gold decline after its peak ``> 0``) is itself the regime's
  control: it carries none, and its value is the control of the over-optimisation claims.
* ``drro_dynamic_beats_grpo``: DRRO is a mitigation of over-optimisation, so the regime can show
  its advantage only if GRPO over-optimises: the control is GRPO's gold decline after its peak
  (gold reward units, like the claim's paired peak-gold difference), which must exceed the claim's
  minimum detectable effect.
* ``drro_dynamic_smaller_gap``: the same mechanism in the claim's own units (gold minus proxy): the
  control is how much GRPO's gold-proxy gap widens from its gold peak to the end of training (its
  gold decline plus its further proxy gain).
* ``dro_below_grpo`` (value-robust over-pessimism): the control is GRPO's peak gold improvement,
  i.e. GRPO minus a maximally pessimistic learner that never leaves ``pi_0`` (gold improvement 0);
  the effect the claim looks for is a part of that.
* ``drro_optimum_gold_beyond_thm61``: the control is the gold value of the gold-optimal
  promptwise policy (each prompt's best response) minus DRO's optimum, at the same points: the
  largest gold advantage any promptwise policy can have over DRO's.
* ``thm61_regret`` and ``thm61_rank_preserving`` are exact identities checked to rounding error
  (the theorem holds for every instance, so there is no sampling noise to power against): no
  control.

Theorem 6.1 along the trajectories: at every evaluation point of the robust runs, with that run's
current budget (unscaled: ``delta = (K / G) delta_tilde``) and the held-out prompts' proxy rewards,
the promptwise DRRO optimum (:func:`solvers.waterfill`) and DRO optimum (:func:`solvers.dro_policy`)
are compared: DRRO's worst-case regret (:func:`solvers.worst_case_regret`) must not exceed DRO's
(DRRO minimises it), and under rank-preserving truths ``phi(r_hat)`` (identity, exponential, rank)
DRRO's value must be at least DRO's (Thm 6.1). With the simulator's gold, which is *not* a
rank-preserving transform of the proxy, the gold advantage of DRRO's optimum is reported as an
extension beyond the theorem. (A fixed budget gives the same optima at every point; they are
computed once per budget.)
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

METHODS = ("grpo", "grpo_kl", "dro", "drro_hard", "drro_soft", "drro_soft_dyn", "drro_soft_dyn_reward")
LABELS = {
    "grpo": "GRPO",
    "grpo_kl": "GRPO + KL penalty",
    "dro": "DRO",
    "drro_hard": "DRRO hard",
    "drro_soft": "DRRO soft",
    "drro_soft_dyn": "DRRO soft+dyn",
    "drro_soft_dyn_reward": "DRRO soft+dyn (reward-unit alpha)",
}
ROBUST = ("dro", "drro_hard", "drro_soft", "drro_soft_dyn", "drro_soft_dyn_reward")
DYNAMIC = ("drro_soft_dyn", "drro_soft_dyn_reward")

STRESS_ERROR_SCALE = 1.15
"""``error_scale`` of the ``stress`` regime: pairwise proxy-gold agreement 0.736 under ``pi_0`` (the
DRRO paper's raw-proxy stress test, App. G: 73.6 %); the test suite checks it."""


def config(scale: str) -> dict:
    env = {"n_train": 512, "n_eval": 256, "n_responses": 32, "dim": 8}
    cfg = {
        "seeds": 10,
        "env": env,
        "regimes": {"default": {}, "stress": {"error_scale": STRESS_ERROR_SCALE}},
        "steps": 300,
        "eval_every": 5,
        "batch": 16,
        "group": 16,
        "lr": 0.05,
        "kl_coef": 0.04,
        "paper": {"budget_per_rollout": 2.5, "alpha": 10.0, "tau": 2.0, "window": 20, "delta0": 0.0,
                  "reward_unit": 2.5, "grpo_kl_at_peak": 38.82, "drro_kl_at_peak": 32.47},
        "methods": list(METHODS),
    }
    if scale == "quick":
        cfg.update(seeds=2, steps=60, eval_every=10, env={**env, "n_train": 128, "n_eval": 64})
    elif scale == "full":
        cfg.update(seeds=20)
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    return [{"seed": int(s), "regime": r, "method": m, "label": f"{r} {m} seed {s}"}
            for r in config["regimes"] for s in seeds for m in config["methods"]]


def convert_alpha(paper: dict, unit: float, kl_ref: float) -> float:
    """The paper's dynamic-budget coefficient in this environment's reward *and* KL units.

    ``alpha = paper["alpha"] * unit * paper["grpo_kl_at_peak"] / kl_ref``: at GRPO's gold-peak
    drift the dynamic budget is then the same multiple of the fixed budget as in the paper,
    ``alpha * kl_ref / (budget_per_rollout * G * unit) = paper alpha * paper KL / (budget_per_rollout
    * G)`` (9.7 with Table 1's 38.82 nats). See the module docstring for the arithmetic.

    Parameters
    ----------
    paper : dict
        The paper's constants (``config()["paper"]``).
    unit : float > 0
        Reward-unit factor ``m / reward_unit`` (pilot discrepancy over the paper's 2.5).
    kl_ref : float > 0
        KL (nats) at GRPO's gold peak in this environment.
    """
    for name, v in (("unit", unit), ("kl_ref", kl_ref)):
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return float(paper["alpha"] * unit * paper["grpo_kl_at_peak"] / kl_ref)


def _adam(state: dict, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> np.ndarray:
    """Adam's ascent direction (Kingma & Ba, Alg. 1); ``state`` holds m, v, t."""
    state["t"] += 1
    state["m"] = b1 * state["m"] + (1 - b1) * grad
    state["v"] = b2 * state["v"] + (1 - b2) * grad * grad
    m_hat = state["m"] / (1 - b1 ** state["t"])
    v_hat = state["v"] / (1 - b2 ** state["t"])
    return m_hat / (np.sqrt(v_hat) + eps)


def _thm61(env: FiniteResponseRLHF, delta: float) -> tuple[float, float, float, float, float]:
    """(max excess worst-case regret of DRRO's optimum over DRO's, min value difference under
    rank-preserving truths, mean gold advantage of DRRO's optimum over DRO's, mean gold advantage of
    the gold-optimal promptwise policy over DRO's, share of prompts where DRRO's optimum has less
    gold than DRO's) over the held-out prompts at budget ``delta``."""
    r_hat, gold = env.eval.proxy, env.eval.gold
    pi_r = waterfill(r_hat, delta)
    pi_d = dro_policy(r_hat, delta)
    excess = worst_case_regret(pi_r, r_hat, delta).value - worst_case_regret(pi_d, r_hat, delta).value
    diff = pi_r - pi_d
    ranks = np.argsort(np.argsort(r_hat, axis=1), axis=1).astype(float)
    truths = (r_hat, np.exp(r_hat - r_hat.max(axis=1, keepdims=True)), ranks)
    rank_min = min(float((diff * t).sum(axis=1).min()) for t in truths)
    oracle = float((gold.max(axis=1) - (pi_d * gold).sum(axis=1)).mean())
    gold_diff = (diff * gold).sum(axis=1)
    return float(np.max(excess)), rank_min, float(gold_diff.mean()), oracle, float(np.mean(gold_diff < 0.0))


def _env(task: dict, config: dict) -> FiniteResponseRLHF:
    regime = task.get("regime", "default")
    if regime not in config["regimes"]:
        raise ValueError(f"regime must be one of {list(config['regimes'])}, got {regime!r}")
    return FiniteResponseRLHF(**config["env"], **config["regimes"][regime],
                              seed=np.random.default_rng([int(task["seed"]), 0]))


def _train(env: FiniteResponseRLHF, seed: int, method: str, config: dict, alpha: float) -> dict:
    """Train ``method`` from the reference on ``env``; return its evaluation trajectory."""
    batch_rng = np.random.default_rng([seed, 1])  # same prompt batches for every method
    sample_rng = np.random.default_rng([seed, 2])  # same rollout uniforms for every method
    paper = config["paper"]
    B, G = int(config["batch"]), int(config["group"])
    K = env.n_responses
    unit = env.pilot_discrepancy() / paper["reward_unit"]
    delta_fixed = paper["budget_per_rollout"] * G * unit
    tau = paper["tau"] * unit
    theta = np.zeros(env.dim)
    adam = {"m": np.zeros(env.dim), "v": np.zeros(env.dim), "t": 0}
    base = env.expected(theta)
    kl_hist: list[float] = []
    out: dict[str, list] = {k: [] for k in ("step", "gold", "proxy", "kl", "budget")}
    thm = {"regret_excess": -np.inf, "rank_min": np.inf, "gold_adv": [], "oracle_adv": [], "worse_share": []}
    cache: dict[float, tuple] = {}

    def budget() -> float:
        if method in DYNAMIC:
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
            if d_tilde not in cache:
                cache[d_tilde] = _thm61(env, (K / G) * d_tilde)
            excess, rank_min, gold_adv, oracle_adv, worse = cache[d_tilde]
            thm["regret_excess"] = max(thm["regret_excess"], excess)
            thm["rank_min"] = min(thm["rank_min"], rank_min)
            thm["gold_adv"].append(gold_adv)
            thm["oracle_adv"].append(oracle_adv)
            thm["worse_share"].append(worse)

    steps, every = int(config["steps"]), int(config["eval_every"])
    for t in range(steps):
        if t % every == 0:
            record(t)
        ids = batch_rng.choice(env.n_train, size=B, replace=False)
        resp, lp = env.sample(theta, ids, G, sample_rng)
        rewards = env.rewards(ids, resp)
        seq_lp = np.take_along_axis(lp, resp, axis=1)
        if method in DYNAMIC:
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
    result = {**out, "theta": theta.tolist(), "delta_fixed": delta_fixed, "tau": tau, "unit": unit}
    if method in ROBUST:
        result.update(thm61_regret_excess=thm["regret_excess"], thm61_rank_min=thm["rank_min"],
                      thm61_gold_adv=float(np.mean(thm["gold_adv"])),
                      thm61_oracle_adv=float(np.mean(thm["oracle_adv"])),
                      thm61_worse_share=float(np.mean(thm["worse_share"])))
    return result


def run_task(task: dict, config: dict) -> dict:
    """Train one method from the reference on one seed's environment (of the task's regime);
    return its trajectory. ``drro_soft_dyn`` first runs the GRPO pilot that fixes ``alpha``'s KL
    conversion (:func:`convert_alpha`)."""
    seed, method = int(task["seed"]), task["method"]
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    env = _env(task, config)
    paper = config["paper"]
    m = env.pilot_discrepancy()
    unit = m / paper["reward_unit"]
    alpha_reward = paper["alpha"] * unit
    extra: dict = {}
    alpha = alpha_reward
    if method == "drro_soft_dyn":
        pilot = _train(env, seed, "grpo", config, 0.0)
        kl_ref = float(pilot["kl"][int(np.argmax(pilot["gold"]))])
        alpha = convert_alpha(paper, unit, kl_ref)
        extra = {"kl_ref": kl_ref}
    result = _train(env, seed, method, config, alpha)
    result.update(extra, pilot_discrepancy=m, alpha=alpha, alpha_reward_units=alpha_reward,
                  agreement=env.pairwise_agreement())
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
            "decline": float(gold[i] - gold[-1]), "peak_step": float(res["step"][i]),
            "gap_widening": float((gold[i] - res["proxy"][i]) - (gold[-1] - res["proxy"][-1])),
            "budget_at_peak": float(res["budget"][i])}


def _key(regime: str, claim: str) -> str:
    return f"overopt.{claim}" if regime == "default" else f"overopt.{regime}.{claim}"


def _regime_claims(regime: str, by: dict, stats: dict, methods: list[str], seeds: list[int]) -> list:
    """The claims of one regime (see the module docstring for the controls)."""

    def est(m: str, key: str):
        return mean_ci([stats[m][s][key] for s in seeds])

    def paired(a: str, b: str, key: str):
        return mean_ci([stats[a][s][key] - stats[b][s][key] for s in seeds])

    claims = []
    if "grpo" not in methods:
        return claims
    decline = est("grpo", "decline")
    rel = mean_ci([stats["grpo"][s]["decline"] / stats["grpo"][s]["peak_gold"] for s in seeds])
    claims.append(make_claim(
        _key(regime, "grpo_overoptimises"), "DRRO Sec. 1 / Fig. 1 (Gao et al. 2023)",
        "Optimising the proxy with GRPO, the gold reward peaks and then declines while the proxy keeps rising",
        "GRPO peak gold minus final gold (reward units)", decline, greater=0.0, regime=regime,
        note=f"the decline is {100 * rel.mean:.3g} % [{100 * rel.low:.3g}, {100 * rel.high:.3g}] of GRPO's peak gold "
             f"{est('grpo', 'peak_gold').format()}; final proxy {est('grpo', 'final_proxy').format()} vs proxy at the "
             f"gold peak {est('grpo', 'proxy_at_peak').format()}; this claim is the regime's positive control for the "
             f"over-optimisation claims and carries none itself"))
    decline_label = "GRPO's gold decline after its peak"
    widening = est("grpo", "gap_widening")
    for dyn in ("drro_soft_dyn",):
        if dyn not in methods:
            continue
        final_budget = mean_ci([by[dyn][s]["budget"][-1] for s in seeds])
        fixed = mean_ci([by[dyn][s]["delta_fixed"] for s in seeds])
        ratio_grpo = mean_ci([by[dyn][s]["alpha"] * by[dyn][s]["kl_ref"] / by[dyn][s]["delta_fixed"] for s in seeds])
        ratio_own = mean_ci([stats[dyn][s]["budget_at_peak"] / by[dyn][s]["delta_fixed"] for s in seeds])
        alpha = mean_ci([by[dyn][s]["alpha"] for s in seeds])
        kl_ref = mean_ci([by[dyn][s]["kl_ref"] for s in seeds])
        conv = (f"alpha {alpha.format()} (KL-converted: GRPO pilot KL at its gold peak {kl_ref.format()} nats; "
                f"alpha KL / fixed budget {ratio_grpo.format()}, paper 9.7); the dynamic budget is "
                f"{ratio_own.format()} x the fixed {fixed.mean:.3g} at DRRO's own gold peak (paper 8.1) and ends at "
                f"{final_budget.format()}")
        other = ""
        if "drro_soft_dyn_reward" in methods:
            other = (f"; with alpha in reward units only ({mean_ci([by['drro_soft_dyn_reward'][s]['alpha'] for s in seeds]).mean:.3g}) "
                     f"the paired peak-gold difference to GRPO is "
                     f"{paired('drro_soft_dyn_reward', 'grpo', 'peak_gold').format()}")
        claims.append(make_claim(
            _key(regime, "drro_dynamic_beats_grpo"), "DRRO Table 1 (peak gold 1.43 vs 1.27)",
            "DRRO soft + dynamic budget (Algorithm 4) reaches a higher peak gold reward than GRPO",
            "paired difference of peak gold improvement, DRRO soft+dyn - GRPO (reward units)",
            paired(dyn, "grpo", "peak_gold"), greater=0.0, control=decline, control_label=decline_label,
            regime=regime,
            note=f"{conv}; KL at peak {est(dyn, 'kl_at_peak').format()} vs GRPO {est('grpo', 'kl_at_peak').format()}"
                 f"{other}"))
        claims.append(make_claim(
            _key(regime, "drro_dynamic_smaller_gap"), "DRRO Table 1 (gold-proxy gap -1.10 vs -1.53)",
            "DRRO soft + dynamic has a smaller gold-proxy gap at its peak than GRPO",
            "paired difference of (gold - proxy) at peak, DRRO soft+dyn - GRPO (reward units)",
            paired(dyn, "grpo", "gap"), greater=0.0, control=widening,
            control_label="GRPO's gold-proxy gap widening after its gold peak", regime=regime,
            note=f"GRPO's gold decline after its peak {decline.format()}; gap at peak: DRRO soft+dyn {est(dyn, 'gap').format()}, GRPO {est('grpo', 'gap').format()}; "
                 f"proxy at peak {est(dyn, 'proxy_at_peak').format()} vs {est('grpo', 'proxy_at_peak').format()}"))
    if "dro" in methods:
        claims.append(make_claim(
            _key(regime, "dro_below_grpo"), "DRRO Table 1 (peak gold 0.79 vs 1.27), Sec. 5",
            "Value-robust DRO is over-pessimistic: its peak gold reward is below GRPO's",
            "paired difference of peak gold improvement, GRPO - DRO (reward units)", paired("grpo", "dro", "peak_gold"),
            greater=0.0, control=est("grpo", "peak_gold"),
            control_label="GRPO - a maximally pessimistic learner that never leaves pi_0", regime=regime,
            note=f"DRO peaks at KL {est('dro', 'kl_at_peak').format()} (GRPO {est('grpo', 'kl_at_peak').format()}) "
                 f"and ends at gold {est('dro', 'final_gold').format()} (GRPO {est('grpo', 'final_gold').format()}); "
                 f"its fixed budget is {mean_ci([by['dro'][s]['delta_fixed'] for s in seeds]).format()} (scaled, "
                 f"reward units)"))
    robust_here = [m for m in methods if m in ROBUST]
    if robust_here:
        excess = mean_ci([max(by[m][s]["thm61_regret_excess"] for m in robust_here) for s in seeds])
        rank_min = mean_ci([min(by[m][s]["thm61_rank_min"] for m in robust_here) for s in seeds])
        gold_adv = mean_ci([float(np.mean([by[m][s]["thm61_gold_adv"] for m in robust_here])) for s in seeds])
        oracle_adv = mean_ci([float(np.mean([by[m][s]["thm61_oracle_adv"] for m in robust_here])) for s in seeds])
        worse = mean_ci([float(np.mean([by[m][s]["thm61_worse_share"] for m in robust_here])) for s in seeds])
        claims.append(make_claim(
            _key(regime, "thm61_regret"), "DRRO Thm 3.4 / Thm 6.1 setting",
            "Along the trajectories, the DRRO optimum's worst-case regret never exceeds the DRO optimum's",
            "max over evaluation points and held-out prompts of WCR(DRRO opt) - WCR(DRO opt)", excess, less=1e-9,
            regime=regime, note="an exact identity checked to rounding error: no positive control applies"))
        claims.append(make_claim(
            _key(regime, "thm61_rank_preserving"), "DRRO Thm 6.1",
            "Under rank-preserving truth phi(r_hat) (identity, exp, rank) DRRO's optimum has at least DRO's value"
           ,
            "min over points, prompts and truths of <pi_DRRO - pi_DRO, phi(r_hat)>", rank_min, greater=-1e-9,
            regime=regime, note="an exact identity checked to rounding error: no positive control applies"))
        agreement = mean_ci([by[methods[0]][s]["agreement"] for s in seeds])
        claims.append(make_claim(
            _key(regime, "drro_optimum_gold_beyond_thm61"), "DRRO Sec. 6 (beyond Thm 6.1's assumption)",
            "With the simulator's gold reward (not rank-preserving), DRRO's promptwise optimum still has more "
            "gold value than DRO's",
            "mean gold value of pi_DRRO - pi_DRO over points and held-out prompts", gold_adv, greater=0.0,
            control=oracle_adv, control_label="gold-optimal promptwise policy - pi_DRO", regime=regime,
            note=f"DRRO's optimum holds less gold than DRO's on {100 * worse.mean:.3g} % [{100 * worse.low:.3g}, "
                 f"{100 * worse.high:.3g}] of the held-out prompts; proxy-gold pairwise agreement under pi_0 "
                 f"{agreement.format()}"))
    return claims


def _mean_band(rows: np.ndarray) -> tuple[list, list, list]:
    e = [mean_ci(c) for c in rows.T]
    return [x.mean for x in e], [x.low for x in e], [x.high for x in e]


def _frontier_figure(regime: str, by: dict, methods: list[str], seeds: list[int]) -> Figure:
    gold = {m: np.array([by[m][s]["gold"] for s in seeds]) for m in methods}
    proxy = {m: np.array([by[m][s]["proxy"] for s in seeds]) for m in methods}
    kl = {m: np.array([by[m][s]["kl"] for s in seeds]).mean(axis=0) for m in methods}
    steps = by[methods[0]][seeds[0]]["step"]
    kl_axis = r"$\mathrm{KL}(\pi_\theta\,\|\,\pi_0)$ (nats)"
    panels = []
    if "grpo" in methods:
        series = (Series("GRPO", kl["grpo"], *_mean_band(gold["grpo"])),
                  Series("GRPO proxy", kl["grpo"], *_mean_band(proxy["grpo"]), linestyle="dashed"))
        panels.append(Panel("GRPO: proxy (dashed) keeps rising, gold bends", kl_axis, "improvement over step 0 (reward units)",
                            series))
    panels.append(Panel("held-out gold against KL, every method", kl_axis, "gold improvement (reward units)",
                        tuple(Series(LABELS[m], kl[m], _mean_band(gold[m])[0]) for m in methods)))
    groups = (("DRRO variants", [m for m in methods if m.startswith("drro")]),
              ("DRO and KL penalty", [m for m in methods if m in ("dro", "grpo_kl")]))
    if "grpo" in methods:
        gap = {m: gold[m] - proxy[m] for m in methods}
        for what, arrs, ylabel in (("gold", gold, "gold minus GRPO's (reward units)"),
                                   ("gold-proxy gap", gap, "gap minus GRPO's (reward units)")):
            for title, group in groups:
                if group:
                    panels.append(Panel(f"{what} minus GRPO's, paired: {title}", "policy update", ylabel,
                                        tuple(Series(LABELS[m], steps, *_mean_band(arrs[m] - arrs["grpo"]))
                                              for m in group), hlines=((0.0, ""),)))
    name = "frontier" if regime == "default" else f"{regime}_frontier"
    return Figure(
        name, f"Reward improvement against KL from the reference, held-out prompts ({regime} regime)", tuple(panels),
        caption="DRRO paper Fig. 3 analogue. Top left: GRPO's gold (solid) and proxy (dashed) improvement against its "
                "mean KL -- over-optimisation is the gold curve bending while the proxy keeps rising. Top right: every "
                "method's mean gold frontier (x: mean KL at an evaluation step). Below: each method's gold and "
                "gold-proxy gap minus GRPO's, paired by seed, with 95% CI bands, against the update (above the dashed 0 "
                "line: higher than GRPO).", ncols=2)


def summarize(config: dict, seeds, tasks: list[dict], results: list[dict]) -> StudyResult:
    regimes = list(config["regimes"])
    by: dict[str, dict[str, dict[int, dict]]] = {r: {m: {} for m in config["methods"]} for r in regimes}
    for task, res in zip(tasks, results):
        by[task.get("regime", "default")][task["method"]][int(task["seed"])] = res
    seeds = [int(s) for s in seeds]
    claims, figures, rows, conv_rows, peak_panels, order_rows, data = [], [], [], [], [], [], {}
    lines = []
    for regime in regimes:
        b = by[regime]
        methods = [m for m in config["methods"] if len(b[m]) == len(seeds)]
        if not methods:
            continue
        stats = {m: {s: _peak_stats(b[m][s]) for s in seeds} for m in methods}

        def est(m: str, key: str, stats: dict = stats):
            return mean_ci([stats[m][s][key] for s in seeds])

        claims += _regime_claims(regime, b, stats, methods, seeds)
        rows += [(regime, LABELS[m], *(est(m, k).format() for k in ("peak_gold", "proxy_at_peak", "gap", "kl_at_peak",
                                                                     "final_gold", "final_proxy"))) for m in methods]
        first = b[methods[0]][seeds[0]]
        agreement = mean_ci([b[methods[0]][s]["agreement"] for s in seeds])
        disc = mean_ci([b[methods[0]][s]["pilot_discrepancy"] for s in seeds])
        fixed = mean_ci([b[methods[0]][s]["delta_fixed"] for s in seeds])
        if "drro_soft_dyn" in methods:
            dyn = b["drro_soft_dyn"]
            kl_ref = mean_ci([dyn[s]["kl_ref"] for s in seeds])
            alpha_kl = mean_ci([dyn[s]["alpha"] for s in seeds])
            ratio = mean_ci([dyn[s]["alpha"] * dyn[s]["kl_ref"] / dyn[s]["delta_fixed"] for s in seeds])
            conv_rows.append((regime, agreement.format(), disc.format(), fixed.format(),
                              f"{mean_ci([dyn[s]['alpha_reward_units'] for s in seeds]).format()}", kl_ref.format(),
                              alpha_kl.format(), ratio.format()))
        others = [m for m in methods if m != "grpo"] if "grpo" in methods else []

        def vs_grpo(m: str, key: str, stats: dict = stats):
            return mean_ci([stats[m][s][key] - stats["grpo"][s][key] for s in seeds])

        order_rows += [(regime, LABELS[m], vs_grpo(m, "peak_gold").format(), vs_grpo(m, "gap").format(),
                        est(m, "kl_at_peak").format()) for m in others]
        decline = est("grpo", "decline") if "grpo" in methods else None
        ordering = "; ".join(f"{LABELS[m]} {vs_grpo(m, 'peak_gold').format()}" for m in others)
        lines.append(f"{regime} regime (proxy-gold agreement {agreement.mean:.3f}, tau {first['tau']:.2f}): "
                     + (f"GRPO's gold decline after its peak (the control) {decline.format()}, GRPO's peak gold "
                        f"{est('grpo', 'peak_gold').format()}; " if decline else "")
                     + "peak gold minus GRPO's, paired: " + ordering)
        figures.append(_frontier_figure(regime, b, methods, seeds))
        if others:
            ticks = tuple(LABELS[m] for m in others)
            peak_panels.append(Panel(f"peak gold minus GRPO's, paired ({regime})", "method",
                                     "peak gold difference (reward units)",
                                     tuple(Series(LABELS[m], [i], [e.mean], [e.low], [e.high], style="points")
                                           for i, m in enumerate(others) for e in (vs_grpo(m, "peak_gold"),)),
                                     xticklabels=ticks, hlines=((0.0, ""),)))
        ticks = tuple(LABELS[m] for m in methods)
        peak_panels.append(Panel(f"KL at peak gold ({regime})", "method", r"$\mathrm{KL}(\pi_\theta\,\|\,\pi_0)$ (nats)",
                                 tuple(Series(LABELS[m], [i], [e.mean], [e.low], [e.high], style="points")
                                       for i, m in enumerate(methods) for e in (est(m, "kl_at_peak"),)),
                                 xticklabels=ticks))
        curves = {m: {"step": b[m][seeds[0]]["step"],
                      "kl_mean": np.array([b[m][s]["kl"] for s in seeds]).mean(axis=0).tolist(),
                      "gold_mean": np.array([b[m][s]["gold"] for s in seeds]).mean(axis=0).tolist(),
                      "proxy_mean": np.array([b[m][s]["proxy"] for s in seeds]).mean(axis=0).tolist()}
                  for m in methods}
        data[regime] = {"per_seed": {m: {str(s): stats[m][s] for s in seeds} for m in methods}, "curves": curves}
    table1 = Table("Table 1 analogue: peak held-out gold improvement and diagnostics (mean [95% CI] over seeds)",
                   ("regime", "method", "peak gold", "proxy at peak", "gold-proxy gap", "KL at peak (nats)",
                    "final gold", "final proxy"), tuple(rows),
                   note="Rewards are improvements over the step-0 policy on held-out prompts; proxy and gap at the "
                        "step of each seed's peak gold; KL = exact KL(pi_theta || pi_0) per prompt, averaged.")
    tables = [table1]
    if order_rows:
        tables.append(Table("Ordering against GRPO per regime (paired by seed, mean [95% CI])",
                            ("regime", "method", "peak gold minus GRPO's", "gold-proxy gap at peak minus GRPO's",
                             "KL at peak (nats)"), tuple(order_rows),
                            note="Above 0: higher peak gold (or a smaller gap) than GRPO in the same seeds."))
    if conv_rows:
        tables.append(Table(
            "Budget conversions (paper: fixed 2.5 G = 40, alpha 10, KL at GRPO's peak 38.82 nats, alpha KL / fixed = 9.7)",
            ("regime", "proxy-gold agreement", "pilot discrepancy m", "fixed budget 2.5 G m / 2.5",
             "alpha, reward units (10 m / 2.5)", "GRPO pilot KL at gold peak (nats)", "alpha, reward + KL units",
             "alpha KL / fixed budget"), tuple(conv_rows),
            note="alpha in reward + KL units = 10 (m / 2.5) x 38.82 / (GRPO pilot KL at its gold peak), per seed."))
    figures.append(Figure("peak", "Peak gold against GRPO's and the KL where it is reached", tuple(peak_panels),
                          caption="Table 1 analogue per regime: each method's peak gold minus GRPO's in the same seed "
                                  "(dashed 0: GRPO) and the KL at its peak; means with 95% CIs over seeds.", ncols=2))
    summary = (
        f"Finite-response RLHF simulator ({config['env']['n_responses']} responses per prompt, "
        f"{config['env']['dim']} features), {config['steps']} updates of {config['batch']} prompts x "
        f"{config['group']} rollouts, {len(seeds)} seeds per regime. Paper hyperparameters converted to this "
        f"environment's reward units (pilot l1 discrepancy) and, for the dynamic coefficient alpha, to its KL units "
        f"(GRPO's KL at its gold peak; see the budget table). Regimes: default (the main benchmark's proxy) and "
        f"stress (the paper's raw-proxy stress test, 73.6 % agreement), chosen because its positive control -- GRPO's "
        f"gold decline after its peak, measured with GRPO alone on pilot seeds 1000-1009 -- was the largest of four "
        f"candidates. " + ". ".join(lines) + "."
    )
    return StudyResult(NAME, TITLE, summary, config, tuple(seeds), tuple(claims), tuple(tables), tuple(figures), data)
