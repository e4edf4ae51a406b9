"""Perf suite "controllers": one training step of every controller, ``plan`` + ``observe``.

Each timed call is what a training loop pays per step for the controller: ``plan(prompt_ids)``
(validation, prediction/binning, exact allocation, multipliers) and ``observe(prompt_ids,
counts, rewards, group_ids)`` (validation, per-prompt summaries, every learner's update) -- for
a controller that samples in rounds or skips prompts, the whole step of
:func:`bandits.controllers.sample_step` (plan, every ``extend``, ``select``) and ``observe`` -- on a
cycle of pre-generated batches (mean budget 4, bounds 2..12, 10 bins and 11 arms for the GDRO
controllers). The call also builds the ragged batch from the plan (``group_ids`` by
``np.repeat`` and Bernoulli rewards from pre-drawn uniforms, a few microseconds) as a caller
would. Toy ground truth: 4,096 prompts whose success probabilities follow their first embedding
coordinate; the GP-based controllers (``vip``, ``vip-paper``, ``inverse-*``,
``skip-saturated``) use d = 64 embeddings. In full mode ``vip`` is also timed at VIP's scale
(N = 17,398 prompts, d = 384, batch 512).

Reference rows, reported and **not measured**: GDRO App. B's driver-side advantage-stage times
(Qwen3-4B: 0.355 s/step Prompt-GDRO, 0.446 s/step Rollout-GDRO, their hardware, their whole
advantage stage), and VIP Table 4 (GP training and prediction 0.745 s plus rollout allocation
29.956 s per gradient step, batch 512, their hardware). This project's target for the GDRO bookkeeping
is <= 1 ms per step at batch 256 (``gdro`` suite: the bare adversaries; here: the whole
controller, binning included).
"""

from __future__ import annotations

import itertools

import numpy as np

from ..harness import Measurement, PerfConfig, measure

NAME = "controllers"
DESCRIPTION = "every controller's plan + observe step (batch 256, mean budget 4, bounds 2..12)"

N_PROMPTS = 4096
DIM = 64
MEAN_BUDGET = 4
LOWER, UPPER = 2, 12
GP_BASED = ("vip", "vip-paper", "inverse-accuracy", "inverse-variance", "skip-saturated")
REPORTED = {
    "prompt-gdro": (0.355, "GDRO App. B: Qwen3-4B Prompt-GDRO advantage stage, their hardware"),
    "rollout-gdro": (0.446, "GDRO App. B: Qwen3-4B Rollout-GDRO advantage stage, their hardware"),
}
VIP_REPORTED = (0.745 + 29.956, "VIP Table 4: GP 0.745 s + allocation 29.956 s per step, batch 512, their hardware")


def _toy(n: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    p = 1.0 / (1.0 + np.exp(-(2.5 * emb[:, 0].astype(np.float64) - 0.5)))
    return emb, p


def _options(name: str, emb: np.ndarray, p: np.ndarray) -> dict:
    if name in GP_BASED:
        return {"embeddings": emb}
    if name == "oracle":
        return {"true_success": lambda ids: p[ids]}
    return {}


def _step_fn(ctrl, batches, p):
    from bandits.controllers import sample_step

    cyc = itertools.cycle(batches)
    if ctrl.samples_in_rounds or ctrl.skips_prompts:  # the whole step: plan, rounds, selection, observe
        def step_rounds():
            ids, u = next(cyc)
            pos = [0]

            def generate(sub, counts):
                g = np.repeat(np.arange(sub.size), counts)
                r = (u[pos[0]:pos[0] + g.size] < p[sub][g]).astype(np.float64)
                pos[0] += g.size
                return r, g, None

            s = sample_step(ctrl, ids, generate)
            ctrl.observe(ids, s.counts, s.rewards, s.group_ids)

        return step_rounds

    def step():
        ids, u = next(cyc)
        plan = ctrl.plan(ids)
        g = np.repeat(np.arange(ids.size), plan.counts)
        rewards = (u[: g.size] < p[ids][g]).astype(np.float64)
        ctrl.observe(ids, plan.counts, rewards, g)

    return step


def run(cfg: PerfConfig) -> list[Measurement]:
    from bandits.controllers import CONTROLLERS, make_controller

    rng = np.random.default_rng(cfg.seed)
    emb, p = _toy(N_PROMPTS, DIM, rng)
    sizes = [256] if cfg.quick else [256, 1024]
    rows: list[Measurement] = []
    for size in sizes:
        batches = [(rng.choice(N_PROMPTS, size=size, replace=False), rng.random(size * UPPER)) for _ in range(16)]
        for name in CONTROLLERS:
            ctrl = make_controller(name, n_prompts=N_PROMPTS, mean_budget=MEAN_BUDGET, lower=LOWER, upper=UPPER,
                                   seed=cfg.seed, **_options(name, emb, p))
            fn = _step_fn(ctrl, batches, p)
            for _ in range(8):  # warm up the learners (and every JIT kernel) before timing
                fn()
            case = f"{name}: plan + observe"
            what = f"N={N_PROMPTS}, d={DIM} GP" if name in GP_BASED else f"N={N_PROMPTS}"
            rows.append(measure(cfg, suite=NAME, case=case, size=size, impl=f"{name} controller", role="ours",
                                fn=fn, note=f"batch {size}, {what}, validation and toy rewards included"))
            if size == 256 and name in REPORTED:
                sec, note = REPORTED[name]
                rows.append(Measurement(NAME, case, size, "GDRO paper, REPORTED (not measured here)", "peer", sec,
                                        note=note))
    if not cfg.quick:
        n_big, dim_big, batch = 17_398, 384, 512
        emb_big, p_big = _toy(n_big, dim_big, rng)
        batches = [(rng.choice(n_big, size=batch, replace=False), rng.random(batch * UPPER)) for _ in range(8)]
        ctrl = make_controller("vip", n_prompts=n_big, mean_budget=MEAN_BUDGET, lower=LOWER, upper=UPPER,
                               seed=cfg.seed, embeddings=emb_big)
        fn = _step_fn(ctrl, batches, p_big)
        for _ in range(3):
            fn()
        case = "vip: plan + observe at VIP's scale (N=17,398, d=384)"
        rows.append(measure(cfg, suite=NAME, case=case, size=batch, impl="vip controller", role="ours", fn=fn,
                            note="GP update+predict (binomial noise) + exact integer allocation"))
        rows.append(Measurement(NAME, case, batch, "VIP paper, REPORTED (not measured here)", "peer",
                                VIP_REPORTED[0], note=VIP_REPORTED[1]))
    return rows
