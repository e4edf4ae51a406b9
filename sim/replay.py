"""Offline replay of a rollout log: what every controller would have done with a real run's prompts.

Input: a :class:`sim.rollout_log.RolloutLog` (per step and prompt, ``n`` rollouts and their
``successes``). Steps:

1. **Success-rate trajectories.** For each prompt, its visits (the steps at which it was
   sampled) in order; the success rate at visit ``k`` is the pooled estimate

       ``p_hat_k = (sum_j w_jk s_j + a) / (sum_j w_jk n_j + 2 a)``,  ``w_jk = smoothing ** |j - k|``,

   over all visits ``j`` of the prompt (two-sided exponential smoothing in visits, so that a
   visit's own few rollouts are pooled with its neighbours'; ``a = 1/2``, the Jeffreys prior, so
   that an always-failing prompt gets a small positive rate rather than exactly 0).
2. **Offline evaluation.** Every controller of :data:`bandits.controllers.CONTROLLERS` is run
   over the log's steps in order: at step ``t`` the batch is the log's prompts of step ``t``,
   the budget ``M_t * mean_budget``; the controller plans (and, if it samples in rounds,
   extends and selects) with rewards drawn as Bernoulli(``p_hat``) of each row (a seeded
   generator: the counterfactual outcomes), and observes them. Controllers that need prompt
   embeddings (the GP of VIP) use the Beta-Binomial success predictor instead (a log has no
   embeddings); ``oracle`` receives ``p_hat`` of the current step as the true success rate.
3. **Measures**, per controller (and for the log's own allocation, ``logged``, whose outcomes
   are the real ones):

   * **GDRO eq. 19 variance proxy relative to uniform**: per step ``VarProxy_t = sum_i q_i v_i /
     n_i`` with each prompt its own bin (``q_i = 1 / M'_t`` over the ``M'_t`` prompts that got
     rollouts; a skipped prompt is not in the gradient) and ``v_i = 4 p_hat_i (1 - p_hat_i)``
     (the per-rollout variance of a {-1, +1} reward); reported as ``sum_t VarProxy_t / sum_t
     VarProxy_t(uniform)`` with uniform's ``n_i = mean_budget`` (below 1: less gradient noise
     than uniform at the same budget), and per step;
   * **share of rollouts in all-equal groups** (every reward of the group equal: zero GRPO/RLOO
     advantage, no signal), with the counterfactual outcomes -- for ``logged`` too, so that the
     rows compare like with like (the smoothed ``p_hat`` is less extreme than the raw rates, so
     this share is below the one observed in the log, which the log summary reports beside it);
   * **rollouts per difficulty band**: mean rollouts per prompt in each band of ``p_hat``;
   * rollouts spent relative to the budget, prompts skipped, rollouts in the training selection.

The result holds numbers, tables and declarative figures; :mod:`benchmarks` renders them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np

from solvers.claims import Figure, Panel, Series, Table

from .rollout_log import RolloutLog

__all__ = ["DEFAULT_BANDS", "ControllerReplay", "ReplayResult", "estimate_success", "replay"]

DEFAULT_BANDS = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
"""Difficulty bands of ``p_hat``: hopeless, hard, medium-hard, medium-easy, easy, solved."""

_PREDICTIVE = ("vip", "vip-paper", "inverse-accuracy", "inverse-variance", "skip-saturated")
PRIOR = 0.5
"""Pseudo-successes and pseudo-failures of the Jeffreys prior in the success-rate estimate."""


# ------------------------------------------------------------------------------------------ estimation
@numba.njit(cache=True)
def _smooth_kernel(prompt, n, s, lam):  # pragma: no cover - compiled
    """Two-sided exponential sums over consecutive rows of the same prompt (rows sorted by
    prompt, then step): returns (S, N) with S_k = sum_j lam^|j-k| s_j within the prompt's run."""
    r = prompt.shape[0]
    fs = np.empty(r)
    fn = np.empty(r)
    for k in range(r):
        if k > 0 and prompt[k] == prompt[k - 1]:
            fs[k] = s[k] + lam * fs[k - 1]
            fn[k] = n[k] + lam * fn[k - 1]
        else:
            fs[k] = s[k]
            fn[k] = n[k]
    out_s = np.empty(r)
    out_n = np.empty(r)
    bs = 0.0
    bn = 0.0
    for k in range(r - 1, -1, -1):
        if k < r - 1 and prompt[k] == prompt[k + 1]:
            bs = s[k] + lam * bs
            bn = n[k] + lam * bn
        else:
            bs = s[k]
            bn = n[k]
        out_s[k] = fs[k] + bs - s[k]
        out_n[k] = fn[k] + bn - n[k]
    return out_s, out_n


def smooth_reference(prompt: np.ndarray, n: np.ndarray, s: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obviously correct twin of the smoothing kernel: the double sum over each prompt's
    visits (rows sorted by prompt, then step)."""
    out_s = np.zeros(prompt.size)
    out_n = np.zeros(prompt.size)
    for q in np.unique(prompt):
        rows = np.flatnonzero(prompt == q)
        for a, k in enumerate(rows):
            for b, j in enumerate(rows):
                w = lam ** abs(a - b)
                out_s[k] += w * s[j]
                out_n[k] += w * n[j]
    return out_s, out_n


def estimate_success(log: RolloutLog, smoothing: float = 0.5) -> np.ndarray:
    """Each row's success rate ``p_hat`` (module docstring, step 1), float64 ``(R,)`` in (0, 1).

    Parameters
    ----------
    log : RolloutLog
    smoothing : float in [0, 1)
        Weight of a visit one apart (0: each visit on its own rollouts).
    """
    lam = _smoothing_iv(smoothing)
    order = np.lexsort((log.step, log.prompt))
    ps, pn = _smooth_kernel(log.prompt[order], log.n[order].astype(np.float64), log.successes[order], lam)
    p = np.empty(log.n_rows)
    p[order] = (ps + PRIOR) / (pn + 2.0 * PRIOR)
    return p


def _smoothing_iv(smoothing: Any) -> float:
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.integer, np.floating)):
        raise TypeError(f"smoothing must be a number in [0, 1), got {type(smoothing).__name__}")
    v = float(smoothing)
    if not (0.0 <= v < 1.0):
        raise ValueError(f"smoothing must be in [0, 1), got {v!r}")
    return v


# ------------------------------------------------------------------------------------------ results
@dataclass
class ControllerReplay:
    """The measures of one allocation over a whole log (module docstring, step 3).

    ``proxy_ratio`` is ``sum_t VarProxy_t / sum_t VarProxy_t(uniform)``; ``proxy_ratio_steps``
    the per-step ratio (NaN where uniform's proxy is 0, i.e. every prompt of the step has
    ``p_hat`` at 0 or 1 -- impossible with the Jeffreys prior, kept for user-supplied rates).
    """

    name: str
    note: str
    rollouts: int
    budget: int
    proxy_ratio: float
    proxy_ratio_steps: np.ndarray
    all_equal_share: float
    trained_share: float
    skipped_share: float
    band_mean: np.ndarray
    band_share: np.ndarray
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def summary(self) -> dict:
        return {"note": self.note, "rollouts": self.rollouts, "budget": self.budget,
                "spent_share": self.rollouts / self.budget if self.budget else float("nan"),
                "varproxy_ratio_to_uniform": self.proxy_ratio, "all_equal_share": self.all_equal_share,
                "trained_share": self.trained_share, "skipped_share": self.skipped_share,
                "mean_rollouts_per_band": self.band_mean.tolist(), "budget_share_per_band": self.band_share.tolist(),
                "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


@dataclass
class ReplayResult:
    """Everything :func:`replay` measured; :meth:`tables`, :meth:`figures` and :meth:`to_jsonable`
    give the report's content."""

    config: dict
    log_summary: dict
    steps: np.ndarray
    rows: dict[str, ControllerReplay]
    not_run: dict[str, str]
    band_labels: tuple[str, ...]
    band_counts: np.ndarray
    seconds: dict = field(default_factory=dict)

    def tables(self) -> list[Table]:
        mb = self.config["mean_budget"]
        main = []
        for name, r in self.rows.items():
            main.append((name, r.proxy_ratio, r.all_equal_share, r.rollouts / r.budget, r.skipped_share,
                         r.trained_share, r.note))
        t1 = Table(
            f"Replay of {self.log_summary['rows']} rows ({self.log_summary['steps']} steps, "
            f"{self.log_summary['prompts']} prompts) at {mb} rollouts per prompt",
            ("controller", "VarProxy / uniform (GDRO eq. 19)", "rollouts in all-equal groups", "spent / budget",
             "prompts skipped", "rollouts trained on", "note"),
            tuple(main),
            note="VarProxy: sum over steps of sum_i q_i 4 p_hat (1 - p_hat) / n_i relative to uniform allocation of "
                 "the same steps (below 1: less gradient noise at the same budget). Outcomes are Bernoulli(p_hat) "
                 "draws (seed recorded) for every row, 'logged' (the run's own allocation) included; the log's own "
                 f"outcomes had {self.log_summary['observed_all_equal_share']:.3f} of its rollouts in all-equal groups.")
        band_rows = [(name, *r.band_mean.tolist()) for name, r in self.rows.items()]
        t2 = Table("Mean rollouts per prompt in each difficulty band of p_hat",
                   ("controller", *self.band_labels), tuple(band_rows),
                   note="prompt-steps per band: " + ", ".join(f"{lbl} {int(c)}" for lbl, c in
                                                            zip(self.band_labels, self.band_counts)))
        out = [t1, t2]
        if self.not_run:
            out.append(Table("Controllers not replayed", ("controller", "reason"), tuple(self.not_run.items())))
        return out

    def figures(self, max_points: int = 400) -> list[Figure]:
        steps = self.steps.astype(np.float64)
        width = max(1, math.ceil(steps.size / max_points))
        x = _window_mean(steps, width)
        series = []
        for name, r in self.rows.items():
            y = _window_mean(r.proxy_ratio_steps, width)
            series.append(Series(name, x, y, linestyle="dashed" if name == "logged" else "solid"))
        fig1 = Figure("replay_varproxy", "GDRO eq. 19 variance proxy relative to uniform, step by step", (
            Panel("VarProxy / uniform's", "training step of the log", "variance proxy ratio (1 = uniform)",
                  tuple(series), yscale="log", hlines=((1.0, "uniform"),)),
        ), caption=f"Per-step ratio of each allocation's variance proxy to uniform allocation of the same prompts "
                   f"(means over windows of {width} step(s)); dashed: the log's own allocation.", ncols=1)
        pos = list(range(len(self.band_labels)))
        bands = [Series(name, pos, r.band_mean, style="errorbar", linestyle="dashed" if name == "logged" else "solid")
                 for name, r in self.rows.items()]
        names = list(self.rows)
        idx = list(range(len(names)))
        waste = Series("rollouts in all-equal groups", idx, [self.rows[n].all_equal_share for n in names], style="bar")
        ratio = Series("VarProxy / uniform", idx, [self.rows[n].proxy_ratio for n in names], style="bar")
        fig2 = Figure("replay_allocation", "Where each controller would have spent the log's budget", (
            Panel("mean rollouts per prompt by difficulty", "difficulty band of p_hat", "rollouts per prompt",
                  tuple(bands), xticklabels=self.band_labels,
                  hlines=((float(self.config["mean_budget"]), "uniform"),)),
            Panel("rollouts in all-equal groups (no signal)", "controller", "share of rollouts", (waste,),
                  xticklabels=tuple(names)),
            Panel("variance proxy over the whole log", "controller", "VarProxy / uniform", (ratio,),
                  xticklabels=tuple(names), hlines=((1.0, "uniform"),)),
        ), caption="Left: rollouts per prompt against the estimated success rate (uniform: the dashed reference "
                   "line). Middle: rollouts spent on groups whose rewards were all equal. Right: the eq. 19 proxy "
                   "summed over steps, relative to uniform.", ncols=3)
        return [fig1, fig2]

    def to_jsonable(self) -> dict:
        return {
            "config": self.config,
            "log": self.log_summary,
            "bands": {"labels": list(self.band_labels), "prompt_steps": self.band_counts.tolist()},
            "controllers": {n: r.summary() for n, r in self.rows.items()},
            "per_step": {"step": self.steps.tolist(),
                         "varproxy_ratio": {n: [None if not math.isfinite(v) else v for v in r.proxy_ratio_steps.tolist()]
                                            for n, r in self.rows.items()}},
            "not_run": self.not_run,
            "seconds": self.seconds,
        }


def _window_mean(x: np.ndarray, w: int) -> np.ndarray:
    n = x.size
    if w <= 1:
        return np.asarray(x, dtype=np.float64)
    out = []
    for i in range(0, n, w):
        chunk = x[i:i + w]
        chunk = chunk[np.isfinite(chunk)]
        out.append(float(chunk.mean()) if chunk.size else float("nan"))
    return np.array(out)


# ------------------------------------------------------------------------------------------ replay
def _bands_iv(bands: Any) -> np.ndarray:
    b = np.asarray(bands, dtype=np.float64)
    if b.ndim != 1 or b.size < 2 or not np.all(np.isfinite(b)) or b[0] != 0.0 or b[-1] != 1.0 or np.any(np.diff(b) <= 0):
        raise ValueError(f"bands must be increasing edges from 0 to 1 (at least two), got {np.asarray(bands).tolist()}")
    return b


def _band_labels(edges: np.ndarray) -> tuple[str, ...]:
    return tuple(f"p {edges[k]:g}-{edges[k + 1]:g}" for k in range(edges.size - 1))


def _budget_defaults(log: RolloutLog, mean_budget: Any, lower: Any, upper: Any) -> tuple[int, int, int]:
    mb = int(max(1, round(float(log.n.mean())))) if mean_budget is None else mean_budget
    if isinstance(mb, bool) or not isinstance(mb, (int, np.integer)) or int(mb) < 1:
        raise ValueError(f"mean_budget must be an integer >= 1 (rollouts per prompt), got {mb!r}")
    mb = int(mb)
    lo = min(2, mb) if lower is None else lower
    up = 3 * mb if upper is None else upper
    for name, v in (("lower", lo), ("upper", up)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    lo, up = int(lo), int(up)
    if not (lo <= mb <= up):
        raise ValueError(f"need lower <= mean_budget <= upper, got lower={lo}, mean_budget={mb}, upper={up}")
    return mb, lo, up


def _measures(name: str, note: str, counts: np.ndarray, flat: np.ndarray, trained: np.ndarray, v: np.ndarray,
              step_idx: np.ndarray, n_steps: int, proxy_uniform: np.ndarray, band: np.ndarray, n_bands: int,
              budget: int, seconds: float) -> ControllerReplay:
    """The measures of one allocation (``counts`` per row, ``flat``: its group was all-equal,
    ``trained``: rollouts in the training selection)."""
    used = counts > 0
    frac = np.zeros(counts.size)
    frac[used] = v[used] / counts[used]
    m_used = np.bincount(step_idx, weights=used.astype(np.float64), minlength=n_steps)
    proxy = np.bincount(step_idx, weights=frac, minlength=n_steps) / np.maximum(m_used, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_step = np.where(proxy_uniform > 0, proxy / np.where(proxy_uniform > 0, proxy_uniform, 1.0), np.nan)
    total_u = float(proxy_uniform.sum())
    ratio = float(proxy.sum()) / total_u if total_u > 0 else float("nan")
    spent = int(counts.sum())
    rows_per_band = np.bincount(band, minlength=n_bands).astype(np.float64)
    per_band = np.bincount(band, weights=counts.astype(np.float64), minlength=n_bands)
    band_mean = np.where(rows_per_band > 0, per_band / np.maximum(rows_per_band, 1.0), np.nan)
    return ControllerReplay(
        name, note, spent, budget, ratio, per_step,
        float(counts[flat].sum()) / spent if spent else 0.0,
        float(trained.sum()) / spent if spent else 0.0,
        float((~used).mean()),
        band_mean, per_band / spent if spent else np.zeros(n_bands), seconds)


_SHARED: dict = {}
"""The log and its estimates, shared with the worker processes (set once per process)."""


def _share(arrays: dict) -> None:
    _SHARED.clear()
    _SHARED.update(arrays)


def _replay_controller(k: int, name: str) -> tuple[str, Any]:
    """Run controller ``name`` (``k``-th of the list) over the shared log: its measures, or the
    reason it cannot run."""
    from bandits.controllers import close_step, make_controller, sample_step

    sh = _SHARED
    prompt, p_hat, bounds = sh["prompt"], sh["p_hat"], sh["bounds"]
    mb, lo, up, seed, n_prompts = sh["mean_budget"], sh["lower"], sh["upper"], sh["seed"], sh["n_prompts"]
    cur_p = np.full(n_prompts, 0.5)
    opts: dict = {}
    note = ""
    if name in _PREDICTIVE:
        opts["predictor"] = "beta-binomial"
        note = "Beta-Binomial predictor (no embeddings in a log)"
    if name == "oracle":
        opts["true_success"] = lambda ids: cur_p[ids]
        note = "p_hat of the step as the true rate"
    try:
        ctrl = make_controller(name, n_prompts=n_prompts, mean_budget=mb, lower=lo, upper=up,
                               seed=np.random.default_rng([seed, 1, k]), **opts)
    except (ValueError, TypeError) as exc:
        return name, str(exc)
    rng = np.random.default_rng([seed, 2, k])
    r = prompt.size
    counts = np.zeros(r, dtype=np.int64)
    flat = np.zeros(r, dtype=bool)
    trained = np.zeros(r, dtype=np.int64)

    def generate(ids: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        g = np.repeat(np.arange(ids.size), c)
        return (rng.random(g.size) < cur_p[ids][g]).astype(np.float64), g, None

    ts, cpu = time.perf_counter(), time.process_time()
    for t in range(bounds.size - 1):
        a, b = int(bounds[t]), int(bounds[t + 1])
        ids = prompt[a:b]
        cur_p[ids] = p_hat[a:b]
        step = sample_step(ctrl, ids, generate, check_generated=False)  # float 0/1 rewards, int64 ids
        m = b - a
        c = step.counts
        succ = np.bincount(step.group_ids, weights=step.rewards, minlength=m)
        # all-equal: every reward 0 or every reward 1 (the draws are 0/1)
        flat[a:b] = (c > 0) & ((succ == 0) | (succ == c))
        counts[a:b] = c
        sel = step.selection
        trained[a:b] = c if sel.train_mask.all() else np.bincount(step.group_ids[sel.train_mask], minlength=m)
        close_step(ctrl, step)
    secs, cpu = time.perf_counter() - ts, time.process_time() - cpu
    return name, (note, counts, flat, trained, secs, cpu)


def _init_worker(arrays: dict) -> None:
    _share(arrays)


def replay(log: RolloutLog, *, controllers: Any = None, mean_budget: Any = None, lower: Any = None, upper: Any = None,
           seed: Any = 0, smoothing: Any = 0.5, bands: Any = DEFAULT_BANDS, jobs: Any = 0,
           log_progress: Any = None) -> ReplayResult:
    """Replay ``log`` with every controller (module docstring).

    Parameters
    ----------
    log : RolloutLog
        From :func:`sim.rollout_log.read_rollout_log`.
    controllers : sequence of str, optional
        Names in :data:`bandits.controllers.CONTROLLERS` (default: all).
    mean_budget, lower, upper : int, optional
        The controllers' budget: ``mean_budget`` rollouts per prompt (default: the log's mean
        ``n``, rounded), bounds ``lower`` (default ``min(2, mean_budget)``) and ``upper``
        (default ``3 * mean_budget``). A controller that cannot run with them (e.g. ``vip``
        with ``lower < 2``) is listed in ``not_run`` with the reason.
    seed : int
        Seeds every controller and the counterfactual outcomes (controller ``k`` of the list
        gets the streams ``(seed, 1, k)`` and ``(seed, 2, k)``; the log's own allocation
        ``(seed, 3)``): results do not depend on ``jobs``.
    smoothing : float in [0, 1)
        Success-rate smoothing over visits (:func:`estimate_success`).
    bands : sequence of float
        Edges of the difficulty bands, from 0 to 1.
    jobs : int, default 0
        Worker processes (spawned, one controller per task); 0 runs in this process.
    log_progress : callable, optional
        Called with one line per controller.

    Returns
    -------
    ReplayResult
    """
    from bandits.controllers import CONTROLLERS

    if not isinstance(log, RolloutLog):
        raise TypeError(f"log must be a RolloutLog (sim.rollout_log.read_rollout_log), got {type(log).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or int(jobs) < 0:
        raise ValueError(f"jobs must be a non-negative integer, got {jobs!r}")
    seed, jobs = int(seed), int(jobs)
    names = sorted(CONTROLLERS) if controllers is None else list(controllers)
    unknown = [c for c in names if c not in CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controller(s) {unknown}; valid controllers: {sorted(CONTROLLERS)}")
    mb, lo, up = _budget_defaults(log, mean_budget, lower, upper)
    edges = _bands_iv(bands)
    t0 = time.perf_counter()
    p_hat = estimate_success(log, smoothing)
    t_est = time.perf_counter() - t0
    v = 4.0 * p_hat * (1.0 - p_hat)
    steps, step_idx = np.unique(log.step, return_inverse=True)
    step_idx = step_idx.reshape(-1)
    n_steps = steps.size
    bounds = np.r_[0, np.flatnonzero(np.diff(step_idx)) + 1, log.n_rows]
    m_per_step = np.diff(bounds)
    proxy_uniform = np.bincount(step_idx, weights=v, minlength=n_steps) / (m_per_step * float(mb))
    band = np.clip(np.searchsorted(edges, p_hat, side="right") - 1, 0, edges.size - 2)
    n_bands = edges.size - 1
    budget_total = int(log.n_rows * mb)
    measure = (v, step_idx, n_steps, proxy_uniform, band, n_bands)
    rows: dict[str, ControllerReplay] = {}
    # the log's own allocation, with counterfactual outcomes drawn like everyone else's
    sim_succ = np.random.default_rng([seed, 3]).binomial(log.n, p_hat)
    logged_flat = (sim_succ == 0) | (sim_succ == log.n)
    rows["logged"] = _measures("logged", "the run's own allocation", log.n, logged_flat, log.n, *measure,
                               int(log.n.sum()), 0.0)
    shared = {"prompt": log.prompt, "p_hat": p_hat, "bounds": bounds, "mean_budget": mb, "lower": lo, "upper": up,
              "seed": seed, "n_prompts": log.n_prompts}
    tasks = list(enumerate(names))
    t1 = time.perf_counter()
    if jobs == 0:
        _share(shared)
        outcomes = [_replay_controller(k, name) for k, name in tasks]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(shared,)) as pool:
            outcomes = list(pool.map(_replay_controller, [k for k, _ in tasks], [n for _, n in tasks]))
    t_ctrl = time.perf_counter() - t1
    not_run: dict[str, str] = {}
    for name, out in outcomes:
        if isinstance(out, str):
            not_run[name] = out
            continue
        note, counts, flat, trained, secs, cpu = out
        rows[name] = _measures(name, note, counts, flat, trained, *measure, budget_total, secs)
        rows[name].cpu_seconds = cpu
        if log_progress is not None:
            log_progress(f"  {name}: {secs:.2f} s, VarProxy / uniform {rows[name].proxy_ratio:.3f}")
    config = {"mean_budget": mb, "lower": lo, "upper": up, "seed": seed, "smoothing": float(smoothing),
              "bands": edges.tolist(), "controllers": names, "outcomes": "Bernoulli(p_hat), seeded",
              "prior": "Jeffreys (a = 1/2)"}
    real_flat = (log.successes == 0) | (log.successes == log.n)
    summary = {"source": log.source, "rows": log.n_rows, "steps": int(n_steps), "prompts": log.n_prompts,
               "rollouts": int(log.n.sum()), "mean_n": float(log.n.mean()),
               "mean_success_rate": float(log.successes.sum() / log.n.sum()),
               "observed_all_equal_share": float(log.n[real_flat].sum() / log.n.sum())}
    seconds = {"estimate": t_est, "controllers_wall": t_ctrl,
               "per_controller": {n: r.seconds for n, r in rows.items() if n != "logged"},
               "per_controller_cpu": {n: r.cpu_seconds for n, r in rows.items() if n != "logged"}}
    return ReplayResult(config, summary, steps, rows, not_run, _band_labels(edges),
                        np.bincount(band, minlength=n_bands), seconds)
