"""Timing harness shared by every benchmark suite.

Rules (docs/architecture.md, "Conventions"): compile once before timing and report JIT compile time separately;
report medians (with the inter-quartile range) and ratios against a peer measured in the same run;
write machine-readable results. Nothing here is a unit test.

A suite is a module in :mod:`benchmarks.suites` exposing ``NAME``, ``DESCRIPTION`` and
``run(cfg: PerfConfig) -> list[Measurement]``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = [
    "Measurement",
    "PerfConfig",
    "PeerGate",
    "measure",
    "time_call",
    "first_call_time",
    "cold_start_times",
    "peak_memory",
]


@dataclass
class Measurement:
    """One timed implementation on one problem size.

    ``role`` is ``"ours"`` or ``"peer"``; in each (suite, case, size) group the first ``"ours"``
    row is the reference that peers' ratios are computed against (ratio = peer / ours).
    """

    suite: str
    case: str
    size: int | str
    impl: str
    role: str
    median_s: float | None
    q25_s: float | None = None
    q75_s: float | None = None
    repeats: int = 0
    compile_s: float | None = None
    peak_mib: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PerfConfig:
    """Options every suite receives.

    quick : smaller sizes and fewer repeats (used by the test-suite smoke run and ``--quick``).
    target_s : wall time to spend timing one (impl, size) pair.
    max_peer_call_s : once one call of a peer takes longer than this, larger sizes skip that peer.
    """

    quick: bool = False
    target_s: float = 0.5
    max_peer_call_s: float = 5.0
    seed: int = 0
    progress: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def log(self, msg: str) -> None:
        self.progress(msg)


def first_call_time(fn: Callable[[], Any]) -> float:
    """Wall time of one call; used on a fresh JIT function to measure compile (+ first run) time."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cold_start_times(
    cfg: PerfConfig, suite: str, snippet: str, *, runs: int = 1, timeout_s: float = 600
) -> list[dict[str, float]]:
    """First-call times measured in fresh interpreters with a private, initially empty Numba cache.

    ``snippet`` is Python source that times what it wants and prints one JSON object
    ``{label: seconds}`` as its last line of output. It runs ``runs`` times in a row with the same
    cache folder: the first run measures JIT compilation, later runs measure loading compiled code
    from the disk cache. A failed run is logged and gives ``{}`` (reported, never fatal).
    """
    results: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(runs):
            try:
                out = subprocess.run(
                    [sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=timeout_s
                )
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            except Exception as exc:  # reported, not fatal
                cfg.log(f"  [{suite}] compile-time measurement failed: {exc!r}")
                results.append({})
    return results


def time_call(
    fn: Callable[[], Any],
    *,
    target_s: float = 0.5,
    min_repeats: int = 5,
    max_repeats: int = 100_000,
) -> tuple[float, float, float, int]:
    """Median, 25th and 75th percentile wall time of ``fn()`` over repeated calls.

    Calls ``fn`` once untimed (warm-up), then times individual calls until ``target_s`` seconds
    are spent (at least ``min_repeats`` calls). Garbage collection is disabled while timing.
    """
    fn()
    times: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while len(times) < max_repeats:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if len(times) >= min_repeats and time.perf_counter() - start >= target_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    arr = np.asarray(times)
    return float(np.median(arr)), float(np.quantile(arr, 0.25)), float(np.quantile(arr, 0.75)), len(times)


def peak_memory(fn: Callable[[], Any]) -> float:
    """Peak Python-heap memory (MiB, via ``tracemalloc``; NumPy allocations included) of one call."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


class PeerGate:
    """Skips a slow peer at larger sizes once one of its calls exceeded ``cfg.max_peer_call_s``.

    Run sizes in increasing order; ask ``gate.allowed(name)`` before timing and
    ``gate.record(name, seconds)`` after.
    """

    def __init__(self, cfg: PerfConfig):
        self.cfg = cfg
        self._too_slow: dict[str, float] = {}

    def allowed(self, name: str) -> bool:
        return name not in self._too_slow

    def record(self, name: str, seconds: float) -> None:
        if seconds > self.cfg.max_peer_call_s:
            self._too_slow[name] = seconds

    def skip_note(self, name: str) -> str:
        return f"skipped: a smaller size already took {self._too_slow[name]:.1f} s per call"


def measure(
    cfg: PerfConfig,
    *,
    suite: str,
    case: str,
    size: int | str,
    impl: str,
    role: str,
    fn: Callable[[], Any],
    compile_s: float | None = None,
    gate: PeerGate | None = None,
    note: str = "",
    target_s: float | None = None,
    min_repeats: int | None = None,
) -> Measurement:
    """Time ``fn`` and return a :class:`Measurement`, logging progress; honours a :class:`PeerGate`.

    For slow peers (``gate`` given) a single call is timed first; if it exceeds
    ``cfg.max_peer_call_s`` that call is the only sample (``repeats=1``) and larger sizes are skipped.
    """
    if gate is not None and not gate.allowed(impl):
        cfg.log(f"  [{suite}] {case} size={size} {impl}: {gate.skip_note(impl)}")
        return Measurement(suite, case, size, impl, role, None, note=gate.skip_note(impl))
    target = cfg.target_s if target_s is None else target_s
    reps = (3 if cfg.quick else 5) if min_repeats is None else min_repeats
    if gate is not None:
        first = first_call_time(fn)
        gate.record(impl, first)
        if first > cfg.max_peer_call_s or first * reps > 4 * target:
            m = Measurement(suite, case, size, impl, role, first, first, first, 1, compile_s, note=note)
            cfg.log(f"  [{suite}] {case} size={size} {impl}: {_fmt(first)} (1 call)")
            return m
    med, q25, q75, n = time_call(fn, target_s=target, min_repeats=reps)
    cfg.log(f"  [{suite}] {case} size={size} {impl}: median {_fmt(med)} over {n} calls")
    return Measurement(suite, case, size, impl, role, med, q25, q75, n, compile_s, note=note)


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


format_seconds = _fmt
