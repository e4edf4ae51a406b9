"""Registry of performance suites: name -> module (imported lazily so one broken optional
dependency cannot stop the others).

A suite module exposes ``NAME``, ``DESCRIPTION`` and ``run(cfg: PerfConfig) -> list[Measurement]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

SUITES: dict[str, str] = {
    # name: module path -- each suite adds its own line
    "dro": "benchmarks.suites.dro",
    "predictor": "benchmarks.suites.predictor",
    "gdro": "benchmarks.suites.gdro",
    "shaping": "benchmarks.suites.shaping",
    "regret": "benchmarks.suites.regret",
    "allocation": "benchmarks.suites.allocation",
    "budget": "benchmarks.suites.budget",
}


def load_suite(name: str) -> ModuleType:
    """Import and return the suite module registered under ``name``."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; valid suites: {sorted(SUITES)}")
    return importlib.import_module(SUITES[name])
