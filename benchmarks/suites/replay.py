"""Perf suite "replay": ``robust-rollouts replay`` of a large rollout log, every controller.

A synthetic log of ``steps x batch`` rows (full mode: 1,000 steps of 1,000 prompts drawn from
20,000 = 10^6 rows; quick: 100 steps = 10^5 rows), 8 rollouts per prompt, successes drawn from
per-prompt logistic rates that drift over training, is written as CSV to a temporary folder and
timed once end to end (one call: the replay is seconds long, not a micro-benchmark):
reading and validating the CSV (:func:`sim.rollout_log.read_rollout_log`), the replay of every
registered controller (:func:`sim.replay.replay` with ``jobs = min(2, CPUs)`` spawned workers:
the 2-core machine of the goal), and the sum; the goal is <= 30 s on 2 cores for 10^6 rows. Each
controller's row also notes its CPU time, which depends less on other load of the machine.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..harness import Measurement, PerfConfig

NAME = "replay"
DESCRIPTION = "robust-rollouts replay of a 10^6-row rollout log (read + every controller)"


def synthetic_log(steps: int, batch: int, n_prompts: int, seed: int):
    """A rollout log with drifting per-prompt success rates (module docstring)."""
    from sim.rollout_log import rollout_log_from_arrays

    rng = np.random.default_rng(seed)
    logit0 = rng.normal(-0.5, 2.0, n_prompts)
    speed = rng.uniform(0.0, 3.0, n_prompts)
    step = np.repeat(np.arange(steps), batch)
    ids = np.concatenate([rng.choice(n_prompts, batch, replace=False) for _ in range(steps)])
    p = 1.0 / (1.0 + np.exp(-(logit0[ids] + speed[ids] * step / steps)))
    n = np.full(step.size, 8)
    return rollout_log_from_arrays(step, ids, n, rng.binomial(n, p).astype(np.float64), source="synthetic")


def run(cfg: PerfConfig) -> list[Measurement]:
    from sim.replay import replay
    from sim.rollout_log import read_rollout_log, write_rollout_log_csv

    steps = 100 if cfg.quick else 1000
    log = synthetic_log(steps, 1000, 20_000, cfg.seed)
    jobs = min(2, os.cpu_count() or 1)
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        write_rollout_log_csv(log, path)
        cfg.log(f"  [replay] {log.n_rows} rows written to {path}")
        t0 = time.perf_counter()
        back = read_rollout_log(path)
        t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = replay(back, jobs=jobs)
    t_replay = time.perf_counter() - t1
    size = log.n_rows
    note = f"{steps} steps x 1000 prompts, 8 rollouts each, {len(res.rows) - 1} controllers, {jobs} worker(s)"
    for case, secs, impl in (("read CSV", t_read, "read_rollout_log"),
                             ("replay every controller", t_replay, f"replay (jobs={jobs})"),
                             ("read + replay, every controller", t_read + t_replay, "robust-rollouts replay")):
        rows.append(Measurement(NAME, case, size, impl, "ours", secs, secs, secs, 1, note=note))
        cfg.log(f"  [replay] {case}, {size} rows: {secs:.2f} s")
    for name, secs in res.seconds["per_controller"].items():
        cpu = res.seconds["per_controller_cpu"][name]
        rows.append(Measurement(NAME, "one controller (in its worker)", size, name, "ours", secs, secs, secs, 1,
                                note=f"{note}; CPU time {cpu:.2f} s"))
    return rows
