"""The study registry and runner behind ``robust-rollouts study``.

A *study* is a module with

``NAME`` : str
    The name on the command line.
``TITLE`` : str
    One line.
``config(scale) -> dict``
    The JSON-able configuration for ``scale`` in :data:`SCALES` (``"quick"``: seconds, for tests;
    ``"default"``: the README's main job; ``"full"``: more seeds and longer runs). It must contain
    ``"seeds"``, the default number of seeds (seeds are ``0 .. seeds-1``).
``tasks(config, seeds) -> list[dict]``
    Independent units of work, each JSON-able with a ``"seed"`` key and optionally a
    ``"label"`` (shown by the progress bar).
``run_task(task, config) -> dict``
    A pure function of its arguments returning JSON-able numbers. Tasks run in worker processes,
    in any order; every random number must come from the task's seed.
``summarize(config, seeds, tasks, results) -> solvers.claims.StudyResult``
    Confidence intervals over seeds, claims with verdicts computed in code, tables and declarative
    figures; ``results[i]`` belongs to ``tasks[i]``.

Studies live in ``sim.studies`` (simulators) and ``llm_bridge`` (real training); they are
registered here by module path and imported lazily, so a missing optional dependency of one
study (torch for the LLM study) cannot break the others.

Tasks run in a pool of ``jobs`` *spawned* worker processes whose BLAS/OpenMP libraries are pinned
to one thread each. Results therefore do not depend on ``jobs`` or on the machine's thread count:
the same seeds give the same ``results.json`` (timings are kept apart, in ``timings.json``).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from solvers.claims import VERDICTS, StudyResult, parse_seeds, to_jsonable

__all__ = [
    "DEFAULT_STUDIES",
    "SCALES",
    "STUDIES",
    "StudyRun",
    "eta_seconds",
    "load_study",
    "run_studies",
    "run_study",
]

SCALES = ("quick", "default", "full")

#: name -> module path. Order is the report's reading order.
STUDIES: dict[str, str] = {
    "variance": "sim.studies.variance",  # VIP Prop 4.2/4.3/E.1/E.2, App. B, allocation at equal budget
    "training": "sim.studies.training",  # learning curves at equal budget: VIP vs uniform, heuristics, GDRO
    "gdro": "sim.studies.gdro",  # Prompt-/Rollout-/coupled GDRO vs GRPO: pass@k, worst group, WSE, lead-lag
    "predictor": "sim.studies.predictor",  # VIP Fig. 3: success-probability prediction along training
    "overopt": "sim.studies.overopt",  # DRRO Sec. 6 / Table 1: over-optimisation frontier
    "preference-shift": "sim.studies.preference_shift",  # DRO-REBEL under preference shift
    "rate": "sim.studies.rate",  # DRO-REBEL's O(d/n) rate
    "peers": "sim.studies.peers",  # every controller head to head at equal rollouts, the peers' included (optional)
    "llm": "llm_bridge.study",  # GRPO on a tiny transformer: controllers at equal rollouts (not a default study)
}

#: the studies ``robust-rollouts study`` runs when no name is given (the README's main job).
DEFAULT_STUDIES: tuple[str, ...] = (
    "variance", "training", "gdro", "predictor", "overopt", "preference-shift", "rate",
)

_REQUIRED = ("NAME", "TITLE", "config", "tasks", "run_task", "summarize")
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def load_study(name: str) -> ModuleType:
    """Import the study registered under ``name`` (or a dotted module path) and check its protocol.

    Raises
    ------
    ValueError
        Unknown name (the message lists the registered ones) or a module missing part of the
        protocol.
    """
    if not isinstance(name, str):
        raise TypeError(f"study name must be a string, got {type(name).__name__}")
    if name in STUDIES:
        path = STUDIES[name]
    elif "." in name:
        path = name
    else:
        raise ValueError(f"unknown study {name!r}; valid studies: {list(STUDIES)}")
    module = importlib.import_module(path)
    missing = [a for a in _REQUIRED if not hasattr(module, a)]
    if missing:
        raise ValueError(f"study module {path} lacks {missing} (see benchmarks.study_runner)")
    return module


@dataclass
class StudyRun:
    """A finished study: its result, or the error that stopped it, and timings.

    ``task_seconds[i]`` is the wall time of ``tasks[i]`` inside its worker; ``wall_seconds`` the
    study's elapsed time as seen by the runner (tasks of several studies may overlap).
    """

    name: str
    scale: str
    config: dict
    seeds: tuple[int, ...]
    result: StudyResult | None = None
    error: str | None = None
    task_seconds: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0


def _run_one(module_path: str, task: dict, config: dict) -> tuple[dict, float]:
    """Worker entry point: import the study, run one task, return (JSON-able result, seconds)."""
    module = importlib.import_module(module_path)
    t0 = time.perf_counter()
    out = module.run_task(task, config)
    return to_jsonable(out), time.perf_counter() - t0


@contextmanager
def _single_threaded_env() -> Iterator[None]:
    """Set the thread-count variables to 1 while the pool spawns its workers, then restore them."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _seeds_iv(seeds: Any) -> int | tuple[int, ...] | None:
    """``None``, a positive count, or explicit non-negative distinct seeds (a sequence or a
    :func:`~solvers.claims.parse_seeds` string such as ``"101-110"``)."""
    if seeds is None:
        return None
    if isinstance(seeds, str):
        return parse_seeds(seeds)
    if isinstance(seeds, bool):
        raise ValueError(f"seeds must be a positive integer or a sequence of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
        return seeds
    if isinstance(seeds, Sequence):
        out = []
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise ValueError(f"seeds must be non-negative integers, got {list(seeds)!r}")
            out.append(int(s))
        if not out or len(set(out)) != len(out):
            raise ValueError(f"seeds must be a non-empty sequence of distinct integers, got {list(seeds)!r}")
        return tuple(out)
    raise ValueError(f"seeds must be a positive integer or a sequence of seeds, got {seeds!r}")


def _prepare(name: str, scale: str, seed_spec: Any) -> tuple[ModuleType, str, dict, tuple[int, ...], list[dict]]:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    module = load_study(name)
    config = to_jsonable(module.config(scale))
    if not isinstance(config, dict) or "seeds" not in config:
        raise ValueError(f"study {name}: config({scale!r}) must be a dict with a 'seeds' entry")
    spec = _seeds_iv(seed_spec)
    if isinstance(spec, tuple):
        config["seeds"] = len(spec)
        seeds = spec
    else:
        if spec is not None:
            config["seeds"] = spec
        seeds = tuple(range(int(config["seeds"])))
    tasks = to_jsonable(module.tasks(config, seeds))
    if not tasks or not all(isinstance(t, dict) and "seed" in t for t in tasks):
        raise ValueError(f"study {name}: tasks() must return a non-empty list of dicts with a 'seed'")
    return module, module.__name__, config, seeds, tasks


def run_studies(
    names: Sequence[str],
    *,
    scale: str = "default",
    seeds: int | Sequence[int] | str | None = None,
    jobs: int = 2,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[StudyRun]:
    """Run several studies, sharing one worker pool, and summarise each.

    Parameters
    ----------
    names : sequence of str
        Registered study names (or dotted module paths).
    scale : {"quick", "default", "full"}
    seeds : int, sequence of int or str, optional
        Seeds for every study: a count (seeds ``0..n-1``), explicit seeds, or a string such as
        ``"101-110"`` / ``"3,5,8"`` (default: each study's own number of seeds for ``scale``).
    jobs : int, default 2
        Worker processes (spawned, each pinned to one BLAS/OpenMP thread). ``0`` runs every task in
        this process (for debugging; results are then subject to this process's thread settings).
    progress : bool
        Show a progress bar (tqdm) over all tasks.
    log : callable
        Receives one line per finished study.

    Returns
    -------
    list of StudyRun
        In the order of ``names``. A study whose task or summary raised has ``error`` set and
        ``result`` None; the others are unaffected.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ValueError(f"jobs must be a non-negative integer, got {jobs!r}")
    prepared = [(name, *_prepare(name, scale, seeds)) for name in names]
    runs = [StudyRun(name, scale, cfg, sds) for name, _, _, cfg, sds, _ in prepared]
    units = [(i, j) for i, p in enumerate(prepared) for j in range(len(p[5]))]
    results: list[list[Any]] = [[None] * len(p[5]) for p in prepared]
    seconds: list[list[float]] = [[0.0] * len(p[5]) for p in prepared]
    remaining = [len(p[5]) for p in prepared]
    started = [time.perf_counter()] * len(prepared)

    bar = _progress_bar(len(units), progress)
    t_start = time.perf_counter()
    finished_at: list[float] = []
    warmup = max(1, jobs)  # the first task of each worker compiles: no estimate from those

    def finish(i: int) -> None:
        name, module, _, cfg, sds, tasks = prepared[i]
        run = runs[i]
        run.task_seconds = seconds[i]
        if run.error is None:
            try:
                res = module.summarize(cfg, sds, tasks, results[i])
                if not isinstance(res, StudyResult):
                    raise TypeError(f"summarize() returned {type(res).__name__}, expected StudyResult")
                run.result = res
            except Exception as exc:  # report, keep the other studies
                run.error = f"summarize failed: {type(exc).__name__}: {exc}"
        run.wall_seconds = time.perf_counter() - started[i]
        status = "failed: " + run.error if run.error else (
            f"{len(run.result.claims)} claims (smoke run: no verdicts)" if scale == "quick" else
            f"{len(run.result.claims)} claims, "
            + ", ".join(f"{v} {sum(c.verdict == v for c in run.result.claims)}"
                        for v in VERDICTS)
        )
        log(f"study {name} ({scale}, {len(sds)} seeds) done in {run.wall_seconds:.1f} s: {status}")

    def record(u: tuple[int, int], value: Any, secs: float | None, exc: BaseException | None) -> None:
        i, j = u
        if exc is not None:
            if runs[i].error is None:
                task = prepared[i][5][j]
                runs[i].error = f"task {task} failed: {type(exc).__name__}: {exc}"
        else:
            results[i][j] = value
            seconds[i][j] = secs
        remaining[i] -= 1
        finished_at.append(time.perf_counter() - t_start)
        if bar is not None:
            task = prepared[i][5][j]
            label = task.get("label") or f"seed {task['seed']}"
            eta = eta_seconds(finished_at, len(units), warmup)
            left = "ETA after the first tasks" if eta is None else f"ETA {_format_interval(eta)}"
            bar.set_postfix_str(f"{left}; {prepared[i][0]}: {label}", refresh=False)
            bar.update(1)
        if remaining[i] == 0:
            finish(i)

    try:
        if jobs == 0:
            for u in units:
                i, j = u
                try:
                    value, secs = _run_one(prepared[i][2], prepared[i][5][j], prepared[i][3])
                    record(u, value, secs, None)
                except Exception as exc:
                    record(u, None, None, exc)
        else:
            with _single_threaded_env():
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                    pending = {}
                    for u in units:
                        i, j = u
                        fut = pool.submit(_run_one, prepared[i][2], prepared[i][5][j], prepared[i][3])
                        pending[fut] = u
                    while pending:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in done:
                            u = pending.pop(fut)
                            exc = fut.exception()
                            if exc is None:
                                value, secs = fut.result()
                                record(u, value, secs, None)
                            else:
                                record(u, None, None, exc)
    finally:
        if bar is not None:
            bar.close()
    return runs


def run_study(name: str, *, scale: str = "default", seeds: int | Sequence[int] | str | None = None,
              jobs: int = 0) -> StudyResult:
    """Run one study and return its :class:`StudyResult` (raises if the study failed).

    Defaults to running in this process (``jobs=0``), which is what tests and notebooks want.
    """
    (run,) = run_studies([name], scale=scale, seeds=seeds, jobs=jobs, progress=False, log=lambda s: None)
    if run.error:
        raise RuntimeError(f"study {name} failed: {run.error}")
    return run.result


def eta_seconds(finished_at: Sequence[float], total: int, warmup: int = 1) -> float | None:
    """Seconds left for ``total`` tasks, estimated from the rate of the tasks finished after the
    first ``warmup`` (those pay JIT compilation and imports in every worker; an estimate from them
    would be hours off). ``finished_at``: the elapsed seconds at each completion, in order.
    None until at least one task after the warm-up has finished."""
    done = len(finished_at)
    warmup = max(1, int(warmup))
    if done <= warmup:
        return None
    span = finished_at[-1] - finished_at[warmup - 1]
    if span <= 0:
        return None
    return max(0, total - done) * span / (done - warmup)


def _format_interval(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a convenience; the log lines still say what finished
        return None
    # no built-in remaining time: tqdm's rate would include the first (compiling) tasks
    return tqdm(total=total, unit="task", desc="studies", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
