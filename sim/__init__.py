"""Synthetic environments with exact ground truth, and the studies that run on them.

``sim`` uses ``solvers`` and ``bandits``; it never imports ``llm_bridge`` or ``benchmarks``, nor
torch or matplotlib (studies return declarative figures that ``benchmarks`` renders).

* :class:`SoftmaxRLVR` -- a shared log-linear policy over answer features with heterogeneous,
  drifting difficulty; exact success probabilities, gradients and group-gradient variances.
* :class:`IndependentScoreBandit` -- rewards and projected scores that satisfy VIP Assumption 4.1
  exactly (VIP Prop 4.2/4.3, E.1/E.2 hold exactly).
* :func:`group_gradient_variance` -- exact variance of a group's RLOO / Dr. GRPO gradient estimate
  for finitely many outcomes (no independence assumption).
* :func:`fisher_test`, :func:`edgington_test`, :func:`levene_test` -- VIP App. B's tests.
* :class:`FiniteResponseRLHF` -- finite-response RLHF: a log-linear policy over ``K`` responses per
  prompt, a gold reward and a proxy reward whose structured error grows where the reference rarely
  goes (the DRRO paper's over-optimisation setting).
* :class:`LinearBTPreferences` -- linear Bradley-Terry preferences from a mixture of objectives,
  with shifted mixtures for evaluation (the DRO-REBEL setting).
* ``sim.studies`` -- the studies of ``robust-rollouts study`` that run on these simulators.
"""

from .batch import RolloutBatch, ScoreBatch
from .group_variance import VARIANCE_ESTIMATORS, group_gradient_variance
from .independence import (
    IndependenceTest,
    edgington_test,
    fisher_test,
    levene_test,
    pearson_by_group,
)
from .independent_bandit import IndependentScoreBandit
from .optim import Adam
from .preferences import LinearBTPreferences, mixture_divergence
from .rlhf import DEFAULT_ERROR_SCALE, PAPER_AGREEMENT, FiniteResponseRLHF, PromptSet
from .softmax_rlvr import (
    DEFAULT_MIX,
    DIFFICULTY_CLASSES,
    EMBEDDINGS,
    ESTIMATORS,
    DifficultyClass,
    SoftmaxRLVR,
)

__all__ = [
    "DEFAULT_ERROR_SCALE",
    "DEFAULT_MIX",
    "DIFFICULTY_CLASSES",
    "EMBEDDINGS",
    "ESTIMATORS",
    "PAPER_AGREEMENT",
    "VARIANCE_ESTIMATORS",
    "Adam",
    "DifficultyClass",
    "FiniteResponseRLHF",
    "IndependenceTest",
    "IndependentScoreBandit",
    "LinearBTPreferences",
    "PromptSet",
    "RolloutBatch",
    "ScoreBatch",
    "SoftmaxRLVR",
    "edgington_test",
    "fisher_test",
    "group_gradient_variance",
    "levene_test",
    "mixture_divergence",
    "pearson_by_group",
]  # fmt: skip
