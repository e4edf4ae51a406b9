"""Stateful online learners: EXP3 family, group-DRO adversaries, Prompt-GDRO, Rollout-GDRO,
pass@k difficulty binning, success-probability predictors, and the controllers built from them
(:mod:`bandits.controllers`). Every learner offers ``state_dict()`` / ``load_state_dict()``.

``bandits`` may use ``solvers``; it never imports ``sim``, ``llm_bridge`` or ``benchmarks``.
torch/gpytorch are imported only inside :func:`fit_gp_hyperparameters`.
"""

# Bandit algorithms and group-DRO adversaries
from .exp3 import Exp3, Exp3IX, Exp3P
from .group_dro import GDROExp3P, GroupDRO

# GDRO controllers (Sec. 3.2-3.3) and their difficulty bins (eq. 10-11; uncertainty-aware, App. B)
from .binning import BINNERS, PassAtKBinner, PosteriorBinner, make_binner
from .prompt_gdro import PromptGDRO
from .rollout_gdro import PrimalDualRolloutGDRO, RolloutAllocation, RolloutGDRO
from .diagnostics import allocation_entropy, high_bin_mass, lead_lag_gap, weight_entropy

# Success-probability predictors (VIP Sec. 5.1)
from .baseline_predictors import BetaBinomialPredictor, MovingAveragePredictor, RidgePredictor
from .gp_hyperfit import GPHyperparameters, fit_gp_hyperparameters
from .gp_predictor import GPSuccessPredictor

# Controllers: the per-step decision makers of a training loop (plan / observe / state_dict)
from .controllers import CONTROLLERS, Controller, StepPlan, make_controller

__all__ = [
    "Exp3", "Exp3P", "Exp3IX",
    "GroupDRO", "GDROExp3P",
    "PassAtKBinner", "PosteriorBinner", "BINNERS", "make_binner",
    "PromptGDRO", "RolloutGDRO", "RolloutAllocation", "PrimalDualRolloutGDRO",
    "lead_lag_gap", "weight_entropy", "allocation_entropy", "high_bin_mass",
    "GPSuccessPredictor", "MovingAveragePredictor", "RidgePredictor", "BetaBinomialPredictor",
    "GPHyperparameters", "fit_gp_hyperparameters",
    "make_controller", "CONTROLLERS", "StepPlan", "Controller",
]  # fmt: skip
