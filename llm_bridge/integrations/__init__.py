"""Drop-in integrations with the established RL-for-LLM frameworks.

* :mod:`llm_bridge.integrations.robust_step` -- the framework-neutral arithmetic of a robust step
  (ragged advantages, Prompt-GDRO multipliers, DRRO/DRO shaping, logged statistics); NumPy only.
* :mod:`llm_bridge.integrations.trl` -- ``RobustGRPOTrainer``, a subclass of TRL's ``GRPOTrainer``
  (``pip install "robust-rollouts[trl]"``).
* :mod:`llm_bridge.integrations.verl` -- advantage estimators ``robust_grpo`` / ``robust_drgrpo`` /
  ``robust_rloo`` and the ``robust_sync`` trainer for verl (``pip install "robust-rollouts[verl]"``).

Import the framework modules explicitly; importing this package imports neither framework.
"""

from .robust_step import (
    SHAPING_RULES,
    RobustAdvantage,
    RobustStepResult,
    Shaping,
    step_metrics,
)

__all__ = ["SHAPING_RULES", "RobustAdvantage", "RobustStepResult", "Shaping", "step_metrics"]
