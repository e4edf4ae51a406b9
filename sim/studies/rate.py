"""Study ``rate``: squared parameter error of REBEL and DRO-REBEL against the number of pairs.

DRO-REBEL's rate claim: under linear rewards, log-linear policies and coverage, the squared
parameter error of the (robust) relative-reward regression is ``O~(d / n)``, matching non-robust
RLHF in benign regimes. Setting: :class:`sim.preferences.LinearBTPreferences` with a single
objective (no shift: the benign regime), reward noise 1 per response, pair features ``N(0, I_d)``;
``n`` in ``{200, 400, ..., 6400}`` (32x) and ``d in {4, 16}``. Each method makes one exact REBEL step
(:func:`solvers.rebel_step_linear`) and its direction ``w_n`` is compared with the method's
population target ``w_inf`` (the minimiser of its population objective; the DRO-REBEL bounds are
stated for this estimation error):

* REBEL, KL and chi-square: ``w_inf = theta*``. (At ``theta*`` the residual is the reward noise,
  independent of the features and symmetric, and the worst-case weights depend on the loss only,
  so the robust population objective -- convex -- is stationary at ``theta*``.)
* Wasserstein: the minimiser of ``sqrt(2 ||w - theta*||^2 + 2 noise^2) + radius ||w||`` (the
  population form of the exact worst case with ``Delta phi ~ N(0, 2 I)``), a shrunk ``c theta*``
  computed by a 1-D minimisation; its squared bias ``||w_inf - theta*||^2`` is reported too.

Radii fixed a priori: KL 0.1, chi-square 0.1, Wasserstein 0.1 (feature units). The Wasserstein
radius is reported against the collapse radius ``rho*`` of each sample
(:func:`solvers.wasserstein_collapse_radius`: at and above ``rho*`` the robust estimate is exactly
``w = 0``); in this setting ``rho* -> E[dphi dr] / sqrt(E dr^2) = 2 / sqrt(2 + 2 noise^2) = 1`` for
unit-norm ``theta*`` and noise 1, so 0.1 is about a tenth of it.

For each method, ``log(error / d)`` is regressed on ``log n`` over all seeds, sizes and both
dimensions (one line: the ``O(d/n)`` form predicts that ``error / d`` depends on ``n`` alone), with
a t interval on the slope (:func:`solvers.claims.linear_fit`); the claim is slope ``-1`` (the CI
inside ``[-1.1, -0.9]``, which separates it from the ``-1/2`` of an ``O(sqrt(d/n))`` rate). Linearity in
``d`` at fixed ``n``: per seed, ``S_d = sum_n n error_d(n)`` (each term estimates the constant
``C d`` of ``C d / n``, and summing over ``n`` tames the chi-square noise of a single error) and the
exponent ``log(S_16 / S_4) / log 4``; its CI must lie inside ``[0.8, 1.2]`` (away from 1/2 and 2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from sim.preferences import LinearBTPreferences
from solvers import rebel_step_linear, wasserstein_collapse_radius
from solvers.claims import (
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    linear_fit,
    make_claim,
    mean_ci,
)

NAME = "rate"
TITLE = "Rate: squared parameter error of REBEL / DRO-REBEL vs number of pairs (O(d/n))"

METHODS = ("rebel", "wasserstein", "kl", "chi2")
LABELS = {"rebel": "REBEL", "wasserstein": "DRO-REBEL Wasserstein", "kl": "DRO-REBEL KL",
          "chi2": "DRO-REBEL chi-square"}


def config(scale: str) -> dict:
    cfg = {
        "seeds": 20,
        "dims": [4, 16],
        "sizes": [200, 400, 800, 1600, 3200, 6400],
        "noise": 1.0,
        "radius": {"wasserstein": 0.1, "kl": 0.1, "chi2": 0.1},
        "slope_band": [-1.1, -0.9],
        "d_exponent_band": [0.8, 1.2],
    }
    if scale == "quick":
        cfg.update(seeds=3, sizes=[100, 200, 400, 800, 1600, 3200], dims=[2, 8])
    elif scale == "full":
        cfg.update(seeds=30)
    return cfg


def tasks(config: dict, seeds) -> list[dict]:
    return [{"seed": int(s), "dim": int(d), "n": int(n), "label": f"d={d} n={n} seed {s}"}
            for s in seeds for d in config["dims"] for n in config["sizes"]]


def wasserstein_target(theta_star: np.ndarray, noise: float, radius: float) -> np.ndarray:
    """Population minimiser of ``sqrt(E (Dphi.w - Dr)^2) + radius ||w||`` with ``Dphi ~ N(0, 2 I)``
    and ``Dr = Dphi.theta* + noise (eps_a - eps_b)``: ``E(...)^2 = 2 ||w - theta*||^2 + 2 noise^2``.
    The minimiser lies on the segment ``c theta*``, ``c in [0, 1]`` (both terms only grow off it)."""
    t = float(np.linalg.norm(theta_star))

    def f(c: float) -> float:
        return math.sqrt(2.0 * (1.0 - c) ** 2 * t * t + 2.0 * noise * noise) + radius * c * t

    res = minimize_scalar(f, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-12})
    c = min((0.0, 1.0, float(res.x)), key=f)
    return c * theta_star


def run_task(task: dict, config: dict) -> dict:
    seed, d, n = int(task["seed"]), int(task["dim"]), int(task["n"])
    prefs = LinearBTPreferences(dim=d, mixture=[1.0], noise=config["noise"],
                                seed=np.random.default_rng([seed, d, 0]))
    theta_star = prefs.theta()
    fa, fb, ra, rb, _ = prefs.sample_pairs(n, np.random.default_rng([seed, d, n, 1]))
    out = {"certified": {}, "rho_star": wasserstein_collapse_radius(fa, fb, ra, rb)}
    for m in METHODS:
        robust = None if m == "rebel" else (m, config["radius"][m])
        fit = rebel_step_linear(np.zeros(d), fa, fb, ra, rb, 1.0, robust=robust, full_output=True)
        target = wasserstein_target(theta_star, config["noise"], config["radius"][m]) if m == "wasserstein" \
            else theta_star
        out[m] = float(np.sum((fit.direction - target) ** 2))
        out["certified"][m] = bool(fit.success)
        if m == "wasserstein":
            out["wasserstein_bias"] = float(np.sum((target - theta_star) ** 2))
            out["wasserstein_error_to_theta_star"] = float(np.sum((fit.direction - theta_star) ** 2))
    return out


def summarize(config: dict, seeds, tasks: list[dict], results: list[dict]) -> StudyResult:
    seeds = [int(s) for s in seeds]
    dims, sizes = list(config["dims"]), list(config["sizes"])
    err = {m: {(t["dim"], t["n"], t["seed"]): r[m] for t, r in zip(tasks, results)} for m in METHODS}
    lo_s, hi_s = config["slope_band"]
    lo_d, hi_d = config["d_exponent_band"]
    claims, fits, rows = [], {}, []
    for m in METHODS:
        x = [math.log(n) for d in dims for n in sizes for s in seeds]
        y = [math.log(err[m][(d, n, s)] / d) for d in dims for n in sizes for s in seeds]
        fit = linear_fit(x, y)
        fits[m] = fit
        per_d = [linear_fit([math.log(n) for n in sizes for s in seeds],
                            [math.log(err[m][(d, n, s)] / d) for n in sizes for s in seeds]).slope for d in dims]
        claims.append(make_claim(
            f"rate.{m}_slope", "DRO-REBEL (O~(d/n) squared parameter error)",
            f"{LABELS[m]}: squared parameter error decays as 1/n",
            f"log-log slope of error/d against n ({sizes[0]}..{sizes[-1]}, d in {dims})", fit.slope,
            within=(lo_s, hi_s),
            note="slopes fitted per dimension: " + ", ".join(f"d={d}: {e.format()}" for d, e in zip(dims, per_d))))
        # per seed: sum_n n * err_d (each term ~ C d under O(d/n)), then the exponent of the ratio
        expo = mean_ci([math.log(sum(n * err[m][(dims[-1], n, s)] for n in sizes)
                                 / sum(n * err[m][(dims[0], n, s)] for n in sizes))
                        / math.log(dims[-1] / dims[0]) for s in seeds])
        claims.append(make_claim(
            f"rate.{m}_linear_in_d", "DRO-REBEL (O~(d/n) squared parameter error)",
            f"{LABELS[m]}: at fixed n the error grows linearly with d",
            f"exponent log(S_d{dims[-1]} / S_d{dims[0]}) / log({dims[-1]}/{dims[0]}), S_d = sum_n n err_d(n)", expo,
            within=(lo_d, hi_d)))
        rows.append((LABELS[m], fit.slope.format(), f"{math.exp(fit.intercept):.3g}", expo.format()))
    table = Table("Fitted rates (error/d = C n^slope; slope with 95% CI)",
                  ("method", "slope", "C", "d-exponent"), tuple(rows),
                  note="Errors are measured to each method's population target (theta* except for Wasserstein).")
    means = Table("Mean squared parameter error (95% CI over seeds)", ("method", "d", *[f"n={n}" for n in sizes]),
                  tuple((LABELS[m], d, *(mean_ci([err[m][(d, n, s)] for s in seeds]).format(2) for n in sizes))
                        for m in METHODS for d in dims))
    bias = [mean_ci([r["wasserstein_bias"] for t, r in zip(tasks, results) if t["dim"] == d]) for d in dims]
    rho = mean_ci([r["rho_star"] for r in results])
    rho_min = min(r["rho_star"] for r in results)
    # x axis: log2(n / n_min) with the sizes as tick labels (the sizes double), so it is a log axis with
    # one readable label per size; y on a log scale
    pos = [math.log2(n / sizes[0]) for n in sizes]
    ticks = tuple(str(n) for n in sizes) if all(math.isclose(p, round(p)) for p in pos) and \
        [round(p) for p in pos] == list(range(len(sizes))) else None
    xs = pos if ticks is not None else sizes
    panels = []
    for m in METHODS:
        series = []
        for d in dims:
            e = [mean_ci([err[m][(d, n, s)] for s in seeds]) for n in sizes]
            series.append(Series(f"d = {d}", xs, [v.mean for v in e], [v.low for v in e], [v.high for v in e],
                                 style="points"))
            fit = fits[m]
            line = [d * math.exp(fit.intercept) * n ** fit.slope.mean for n in sizes]
            series.append(Series(f"d = {d}", xs, line, linestyle="dashed"))
        title = f"{LABELS[m]} (slope {fits[m].slope.format()})"
        if m == "wasserstein":
            title = (f"{LABELS[m]} (slope {fits[m].slope.format()})\n"
                     f"radius {config['radius'][m]:g} = {config['radius'][m] / rho.mean:.2g} $\\rho^\\star$")
        panels.append(Panel(title, "pairs n (log scale)",
                            r"squared parameter error $\|w_n - w_\infty\|^2$", tuple(series), xscale="linear" if ticks else "log",
                            yscale="log", xticklabels=ticks))
    fig = Figure("loglog", "Squared parameter error against the number of pairs", tuple(panels),
                 caption="Means with 95% CIs over seeds (points); dashed: the pooled fit error = C d n^slope "
                         "(same colour as its d).", ncols=2)
    cert = {m: sum(r["certified"][m] for r in results) for m in METHODS}
    summary = (
        f"Benign regime (one objective, reward noise {config['noise']:g}), n from {sizes[0]} to {sizes[-1]}, d in "
        f"{dims}, {len(seeds)} seeds. Fitted slopes: "
        + "; ".join(f"{LABELS[m]} {fits[m].slope.format()}" for m in METHODS)
        + ". Wasserstein's population target is shrunk (squared bias to theta*: "
        + ", ".join(f"d={d}: {b.format()}" for d, b in zip(dims, bias))
        + f"); its radius {config['radius']['wasserstein']:g} is {config['radius']['wasserstein'] / rho.mean:.3g} "
        f"times the mean collapse radius rho* {rho.format()} (smallest {rho_min:.3g}; at rho* the estimate is w = 0)"
        + ". Certified solves: " + ", ".join(f"{LABELS[m]} {cert[m]}/{len(results)}" for m in METHODS) + "."
    )
    data = {m: {f"{d},{n}": [err[m][(d, n, s)] for s in seeds] for d in dims for n in sizes} for m in METHODS}
    data["rho_star"] = [r["rho_star"] for r in results]
    data["fits"] = {m: {"slope": fits[m].slope.mean, "intercept": fits[m].intercept} for m in METHODS}
    return StudyResult(NAME, TITLE, summary, config, tuple(seeds), tuple(claims), (table, means), (fig,), data)
