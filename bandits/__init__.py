"""Stateful online learners: EXP3 family, group-DRO adversaries, Prompt-GDRO, Rollout-GDRO,
pass@k difficulty binning and success-probability predictors.

``bandits`` may use ``solvers``; it never imports ``sim``, ``llm_bridge`` or ``benchmarks``.
"""

__all__: list[str] = []

# Each module below adds its public names; keep one import block per module.

from .exp3 import Exp3, Exp3IX, Exp3P

__all__ += ["Exp3", "Exp3P", "Exp3IX"]

from .gp_predictor import GPSuccessPredictor

__all__ += ["GPSuccessPredictor"]

from .baseline_predictors import BetaBinomialPredictor, MovingAveragePredictor, RidgePredictor

__all__ += ["MovingAveragePredictor", "RidgePredictor", "BetaBinomialPredictor"]

from .gp_hyperfit import GPHyperparameters, fit_gp_hyperparameters

__all__ += ["GPHyperparameters", "fit_gp_hyperparameters"]

from .group_dro import GDROExp3P, GroupDRO

__all__ += ["GroupDRO", "GDROExp3P"]

from .prompt_gdro import PromptGDRO
from .rollout_gdro import PrimalDualRolloutGDRO, RolloutAllocation, RolloutGDRO
__all__ += ["PromptGDRO", "RolloutGDRO", "RolloutAllocation", "PrimalDualRolloutGDRO"]

from .binning import PassAtKBinner

__all__ += ["PassAtKBinner"]

from .diagnostics import allocation_entropy, high_bin_mass, lead_lag_gap, weight_entropy

__all__ += ["lead_lag_gap", "weight_entropy", "allocation_entropy", "high_bin_mass"]
