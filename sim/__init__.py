"""Synthetic environments with exact ground truth, and the studies that run on them.

``sim`` uses ``solvers`` and ``bandits``; it never imports ``llm_bridge`` or ``benchmarks``, nor
torch or matplotlib (studies return declarative figures that ``benchmarks`` renders).

* :class:`FiniteResponseRLHF` -- finite-response RLHF: a log-linear policy over ``K`` responses per
  prompt, a gold reward and a proxy reward whose structured error grows where the reference rarely
  goes (the DRRO paper's over-optimisation setting).
* :class:`LinearBTPreferences` -- linear Bradley-Terry preferences from a mixture of objectives,
  with shifted mixtures for evaluation (the DRO-REBEL setting).
* ``sim.studies`` -- the studies of ``robust-rollouts study`` that run on these simulators.
"""

from .preferences import LinearBTPreferences, mixture_divergence
from .rlhf import DEFAULT_ERROR_SCALE, PAPER_AGREEMENT, FiniteResponseRLHF, PromptSet

__all__ = [
    "DEFAULT_ERROR_SCALE",
    "FiniteResponseRLHF",
    "LinearBTPreferences",
    "PAPER_AGREEMENT",
    "PromptSet",
    "mixture_divergence",
]  # fmt: skip
