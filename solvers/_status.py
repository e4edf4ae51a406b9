"""Status codes shared by every solver result (``result.status``), in the spirit of scipy.

``success`` is True for ``OPTIMAL`` and for ``ADJUSTED`` (the caller asked for the adjustment and the
adjusted problem was solved and certified; ``status`` and ``message`` tell the two apart). Every other
code has ``success=False`` and a ``message`` saying what happened.
"""

OPTIMAL = 0
"""Solved and certified (feasibility and the optimality condition checked after solving)."""
CERTIFICATE_FAILED = 1
"""A solution was computed but the post-solve certificate failed beyond tolerance."""
ITERATION_LIMIT = 2
"""An iterative solve (bisection, Newton) stopped at its iteration limit."""
ADJUSTED = 3
"""The problem was solved after an explicit, requested adjustment (e.g. nearest reachable budget)."""

MESSAGES = {
    OPTIMAL: "optimal (certified)",
    CERTIFICATE_FAILED: "certificate check failed",
    ITERATION_LIMIT: "iteration limit reached",
    ADJUSTED: "solved after a requested adjustment",
}
