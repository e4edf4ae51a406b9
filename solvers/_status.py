"""Status codes shared by every solver result (``result.status``), in the spirit of scipy.

``success`` is True for ``OPTIMAL`` and for ``ADJUSTED`` (the caller asked for the adjustment and the
adjusted problem was solved and certified; ``status`` and ``message`` tell the two apart). Every other
code has ``success=False`` and a ``message`` saying what happened. No result reports an inf or NaN
beside ``success=True``: a quantity that overflows float64 gives ``OVERFLOW`` (or the function
raises ``ValueError`` naming the parameter where no result object exists).
"""

OPTIMAL = 0
"""Solved and certified (feasibility and the optimality condition checked after solving)."""
CERTIFICATE_FAILED = 1
"""A solution was computed but the post-solve certificate failed beyond tolerance."""
ITERATION_LIMIT = 2
"""An iterative solve (bisection, Newton) stopped at its iteration limit."""
ADJUSTED = 3
"""The problem was solved after an explicit, requested adjustment (e.g. nearest reachable budget)."""
OVERFLOW = 4
"""Solved, but a reported number (objective, price, dual variable) is not representable in
float64 (it overflowed to inf or became NaN): ``success`` is False and ``message`` names the
quantity. The input is valid; rescaling it (e.g. rewards or losses) avoids the overflow."""

MESSAGES = {
    OPTIMAL: "optimal (certified)",
    CERTIFICATE_FAILED: "certificate check failed",
    ITERATION_LIMIT: "iteration limit reached",
    ADJUSTED: "solved after a requested adjustment",
    OVERFLOW: "a reported value overflows float64",
}


def overflow_message(names: list[str], inputs: str) -> str:
    """The message of an ``OVERFLOW`` result naming the non-finite quantities and the inputs whose
    scale causes them."""
    return f"{MESSAGES[OVERFLOW]}: {', '.join(names)} not finite; rescale {inputs} to avoid it"
