"""Drop-in integrations with the established RL-for-LLM frameworks: thin adapters over the one
robust step of :mod:`llm_bridge.robust_step`.

* :mod:`llm_bridge.integrations.trl` -- ``RobustGRPOTrainer``, a subclass of TRL's ``GRPOTrainer``
  (``pip install "robust-rollouts[trl]"``).
* :mod:`llm_bridge.integrations.verl` -- advantage estimators ``robust_grpo`` / ``robust_drgrpo`` /
  ``robust_rloo`` and the ``robust_sync`` trainer for verl (``pip install "robust-rollouts[verl]"``).

Import the framework modules explicitly; importing this package imports neither framework. The
names below are the robust step's, re-exported for the adapters' users.
"""

from ..robust_step import (
    SHAPING_RULES,
    SHAPINGS,
    RobustAdvantage,
    RobustStepResult,
    Shaping,
    step_metrics,
    success_values,
)

__all__ = ["SHAPINGS", "SHAPING_RULES", "RobustAdvantage", "RobustStepResult", "Shaping", "step_metrics",
           "success_values"]
