"""Pure, stateless array functions: exact allocation, variance formulas, regret/DRO closed forms,
SNIS shaping, advantages, DRO duals and REBEL / DRO-REBEL updates. Numba kernels behind validated Python wrappers.

Every public name is re-exported here; ``solvers`` imports nothing else of the project.
"""

# Rollout allocation (VIP Sec. 4-5, GDRO eq. 19-23, App. C.2.2)
from .allocation import COST_FAMILIES, AllocationResult, CostFamily, allocate, get_cost
from .budget_matching import BudgetMatchResult, match_budget
from .rounding import RoundingResult, round_greedy
from .sqrt_law import SqrtAllocationResult, sqrt_allocation
from .variance import (
    GRADIENT_ESTIMATORS,
    grad_variance,
    grad_variance_continuous,
    variance_proxy,
    weighted_standard_error,
)

# Regret-robust and value-robust promptwise policies (DRRO Sec. 3-4, Lemma H.1)
from .dro_policy import DroPolicyResult, dro_policy
from .regret import WorstCaseRegretResult, worst_case_regret
from .soft_regret import SoftRegretGradResult, soft_regret_grad, soft_regret_objective
from .waterfill import WaterfillResult, waterfill

# Coverage-based DRO / DRRO certificates (DRRO Sec. 6.2, Def. 6.2 / 6.5, Prop 6.3 / 6.6)
from .concentrability import (
    CoverageCertificate,
    concentrability,
    dro_certificate,
    drro_certificate,
    relative_concentrability,
)

# Training-batch shaping and advantages (DRRO eq. 4.9-4.17, GRPO / Dr.GRPO / RLOO)
from .advantages import ADVANTAGE_KINDS, group_advantages
from .kl import K3KL, dynamic_budget, k3_kl
from .shaping import ShapedRewards, dro_rewards, drro_rewards

# DRO duals (GDRO eq. 14-16, DRO-REBEL)
from .dro_duals import DROResult, chi2_worst_case, entropic_worst_case, kl_worst_case

# REBEL and DRO-REBEL updates (DRO-REBEL: relative-reward regression; KL / chi-square / Wasserstein)
from .rebel import (
    DRO_REBEL_KINDS,
    RebelLoss,
    RebelStepResult,
    WassersteinPenalty,
    dro_rebel_weights,
    rebel_loss,
    rebel_step_linear,
    wasserstein_penalty,
)
from .rebel_radius import wasserstein_collapse_radius

__all__ = [
    "allocate", "AllocationResult", "COST_FAMILIES", "CostFamily", "get_cost",
    "round_greedy", "RoundingResult",
    "sqrt_allocation", "SqrtAllocationResult",
    "match_budget", "BudgetMatchResult",
    "grad_variance", "grad_variance_continuous", "GRADIENT_ESTIMATORS", "variance_proxy",
    "weighted_standard_error",
    "worst_case_regret", "WorstCaseRegretResult",
    "waterfill", "WaterfillResult",
    "dro_policy", "DroPolicyResult",
    "concentrability", "relative_concentrability", "dro_certificate", "drro_certificate",
    "CoverageCertificate",
    "soft_regret_objective", "soft_regret_grad", "SoftRegretGradResult",
    "drro_rewards", "dro_rewards", "ShapedRewards",
    "k3_kl", "K3KL", "dynamic_budget",
    "group_advantages", "ADVANTAGE_KINDS",
    "entropic_worst_case", "kl_worst_case", "chi2_worst_case", "DROResult",
    "rebel_loss", "RebelLoss", "dro_rebel_weights", "DRO_REBEL_KINDS", "wasserstein_penalty",
    "WassersteinPenalty", "rebel_step_linear", "RebelStepResult", "wasserstein_collapse_radius",
]  # fmt: skip
