"""Registry of performance suites: name -> module (imported lazily so one broken optional
dependency cannot stop the others).

A suite module exposes ``NAME``, ``DESCRIPTION`` and ``run(cfg: PerfConfig) -> list[Measurement]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUITES: dict[str, str] = {
    "allocation": "benchmarks.suites.allocation",  # VIP Thm 5.1/5.2 allocation vs cvxpy, SLSQP
    "budget": "benchmarks.suites.budget",  # GDRO square-root law and budget-matching DP
    "regret": "benchmarks.suites.regret",  # DRRO water-filling and DRO policy
    "shaping": "benchmarks.suites.shaping",  # DRRO/DRO shaped rewards, group advantages
    "dro": "benchmarks.suites.dro",  # entropic / KL / chi-square duals
    "gdro": "benchmarks.suites.gdro",  # Prompt-GDRO and Rollout-GDRO steps
    "predictor": "benchmarks.suites.predictor",  # VIP GP success predictor
    "controllers": "benchmarks.suites.controllers",  # every controller's plan + observe step
    "sim": "benchmarks.suites.sim",  # SoftmaxRLVR rollout + gradient step
    "replay": "benchmarks.suites.replay",  # robust-rollouts replay of a 10^6-row log, every controller
    "coldstart": "benchmarks.suites.coldstart",  # first call of every entry point, empty vs warm Numba cache
    "llm": "benchmarks.suites.llm",  # LLM bridge GRPO step on a tiny transformer (needs the llm extra)
}


def load_suite(name: str) -> ModuleType:
    """Import and return the suite module registered under ``name``."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid suites: {sorted(SUITES)}")
    return importlib.import_module(SUITES[name])
