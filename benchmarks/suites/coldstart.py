"""Perf suite "coldstart": what the first call of each public entry point costs in a fresh process.

Every entry point runs in its own fresh interpreter with a private, initially empty
``NUMBA_CACHE_DIR`` (:func:`benchmarks.harness.cold_start_times`): the first run measures the
**cold** first call (JIT compilation of every kernel the call reaches + the call itself); a second
fresh interpreter on the same cache folder measures the **warm** first call (compiled code loaded
from the Numba disk cache). The import of the package (``import solvers`` / ``bandits``, NumPy and
Numba included) is timed separately and is not part of the first call. The case ``all entry points``
calls every entry point in one interpreter and reports the sum of the first calls: what a training
script pays once at start-up.

Rows: case = entry point, size = ``"fresh interpreter"`` (not a problem size: nothing to plot on a
size axis), impl ``cold: empty Numba cache`` (role ``ours``) and ``warm: Numba disk cache`` (role
``cached``, its ratio is warm / cold). :func:`benchmarks.report.coldstart_table` renders them.
In ``--quick`` mode only ``allocate (rloo, continuous)``, ``allocate (rloo, integer)`` and the total are measured.
"""

from __future__ import annotations

from ..harness import Measurement, PerfConfig, cold_start_times

NAME = "coldstart"
DESCRIPTION = "cold (empty Numba cache) and warm (disk cache) first-call time of every public entry point"

SIZE = "fresh interpreter"
COLD = "cold: empty Numba cache"
WARM = "warm: Numba disk cache"

_TEMPLATE = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
{imports}
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
a = rng.random(64)
r = rng.normal(size=(8, 16))
lp = rng.normal(size=(8, 16))
l = rng.normal(size=16)
calls = {{}}
{body}
print(json.dumps({{"import": t_import, "first_call": sum(calls.values()), **calls}}))
"""

# entry point -> (imports, setup not timed, the timed first call)
ENTRY_POINTS: dict[str, tuple[str, str, str]] = {
    "allocate (rloo, continuous)": ("from solvers import allocate", "",
                                    "allocate(a, 8 * 64, 3, 32, cost='rloo')"),
    "allocate (rloo, integer)": ("from solvers import allocate", "",
                                 "allocate(a, 8 * 64, 3, 32, cost='rloo', integer=True)"),
    "allocate (drgrpo, integer)": ("from solvers import allocate", "",
                                   "allocate(a, 8 * 64, 3, 32, cost='drgrpo', integer=True)"),
    "round_greedy": ("from solvers import round_greedy",
                     "n = 8.0 + rng.uniform(-0.5, 0.5, 64); n += 8.0 - n.mean()",
                     "round_greedy(n, a, 8 * 64, 3, 32, cost='rloo')"),
    "sqrt_allocation": ("from solvers import sqrt_allocation", "",
                        "sqrt_allocation(rng.uniform(0.1, 2.0, 10), np.full(10, 0.1), 4.0, lower=2, upper=12)"),
    "match_budget": ("from solvers import match_budget", "costs = rng.uniform(size=(3, 11))",
                     "match_budget(costs, [2, 3, 1], np.arange(2, 13), 24)"),
    "waterfill": ("from solvers import waterfill", "", "waterfill(r, 1.0)"),
    "drro_rewards": ("from solvers import drro_rewards", "", "drro_rewards(r, lp, 1.0)"),
    "group_advantages": ("from solvers import group_advantages", "", "group_advantages(r, kind='grpo')"),
    "kl_worst_case": ("from solvers import kl_worst_case", "", "kl_worst_case(l, None, 0.1)"),
    "chi2_worst_case": ("from solvers import chi2_worst_case", "", "chi2_worst_case(l, None, 0.1)"),
    "grad_variance": ("from solvers import grad_variance", "",
                      "grad_variance(a, np.full(64, 8.0), estimator='rloo')"),
    "vip controller (plan + observe)": (
        "from bandits.controllers import make_controller",
        ("emb = rng.standard_normal((256, 16)).astype(np.float32); ids = np.arange(32)\n"
         "ctrl = make_controller('vip', n_prompts=256, mean_budget=4, lower=2, upper=12, seed=0, embeddings=emb)"),
        ("plan = ctrl.plan(ids); g = np.repeat(np.arange(ids.size), plan.counts); "
         "ctrl.observe(ids, plan.counts, (rng.random(g.size) < 0.5).astype(float), g)"),
    ),
}
TOTAL = "all entry points (one interpreter, sum of first calls)"
QUICK = ("allocate (rloo, continuous)", "allocate (rloo, integer)")


def _timed(label: str, setup: str, call: str) -> str:
    lines = [setup] if setup else []
    lines += ["t = time.perf_counter()", call, f"calls[{label!r}] = time.perf_counter() - t"]
    return "\n".join(lines)


def snippet(names: list[str]) -> str:
    """Python source timing the first call of each entry point in ``names`` (one interpreter)."""
    imports = sorted({ENTRY_POINTS[n][0] for n in names})
    body = "\n".join(_timed(n, ENTRY_POINTS[n][1], ENTRY_POINTS[n][2]) for n in names)
    return _TEMPLATE.format(imports="\n".join(imports), body=body)


def _rows(cfg: PerfConfig, case: str, names: list[str]) -> list[Measurement]:
    t_cold, t_warm = cold_start_times(cfg, NAME, snippet(names), runs=2)
    rows = []
    for impl, role, res in ((COLD, "ours", t_cold), (WARM, "cached", t_warm)):
        s = res.get("first_call")
        imp = res.get("import")
        note = f"import {imp:.2f} s (not included)" if imp is not None else "measurement failed (see log)"
        rows.append(Measurement(NAME, case, SIZE, impl, role, s, s, s, 1 if s is not None else 0, note=note))
        cfg.log(f"  [{NAME}] {case}: {impl}: " + (f"{s:.2f} s" if s is not None else "failed") + f"; {note}")
    return rows


def run(cfg: PerfConfig) -> list[Measurement]:
    names = list(QUICK) if cfg.quick else list(ENTRY_POINTS)
    rows: list[Measurement] = []
    for name in names:
        rows += _rows(cfg, name, [name])
    rows += _rows(cfg, TOTAL, list(ENTRY_POINTS))
    return rows
