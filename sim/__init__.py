"""Synthetic environments with exact ground truth, and the studies that run controllers on them.

``sim`` uses ``solvers`` and ``bandits``; it never imports ``llm_bridge`` or ``benchmarks``, nor
torch or matplotlib (studies return declarative figures that ``benchmarks`` renders).

* :class:`SoftmaxRLVR` -- a shared log-linear policy over answer features with heterogeneous,
  drifting difficulty; exact success probabilities, gradients and group-gradient variances.
* :class:`IndependentScoreBandit` -- rewards and projected scores that satisfy VIP Assumption 4.1
  exactly (VIP Prop 4.2/4.3, E.1/E.2 hold exactly).
* :func:`group_gradient_variance` -- exact variance of a group's RLOO / Dr. GRPO gradient estimate
  for finitely many outcomes (no independence assumption).
* :func:`fisher_test`, :func:`edgington_test`, :func:`levene_test` -- VIP App. B's tests.
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
from .softmax_rlvr import (
    DEFAULT_MIX,
    DIFFICULTY_CLASSES,
    ESTIMATORS,
    DifficultyClass,
    SoftmaxRLVR,
)

__all__ = [
    "DEFAULT_MIX",
    "DIFFICULTY_CLASSES",
    "ESTIMATORS",
    "VARIANCE_ESTIMATORS",
    "Adam",
    "DifficultyClass",
    "IndependenceTest",
    "IndependentScoreBandit",
    "RolloutBatch",
    "ScoreBatch",
    "SoftmaxRLVR",
    "edgington_test",
    "fisher_test",
    "group_gradient_variance",
    "levene_test",
    "pearson_by_group",
]  # fmt: skip
