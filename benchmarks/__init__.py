"""Performance and synthetic benchmark suites, report writing (JSON + markdown + PNG).

Run them with ``robust-rollouts perf``; see :mod:`benchmarks.suites` for the registry.
"""
