"""Pure, stateless array functions: exact allocation, variance formulas, regret/DRO closed forms,
SNIS shaping, advantages and DRO duals. Numba kernels behind validated Python wrappers.

Every public name is re-exported here; ``solvers`` imports nothing else of the project.
"""

__all__: list[str] = []

# Each module below adds its public names; keep one import block per module.

from .dro_duals import DROResult, chi2_worst_case, entropic_worst_case, kl_worst_case
__all__ += ["DROResult", "entropic_worst_case", "kl_worst_case", "chi2_worst_case"]

from .budget_matching import BudgetMatchResult, match_budget
__all__ += ["BudgetMatchResult", "match_budget"]

from .shaping import ShapedRewards, drro_rewards, dro_rewards
from .kl import K3KL, k3_kl, dynamic_budget
from .advantages import ADVANTAGE_KINDS, group_advantages
__all__ += ["ShapedRewards", "drro_rewards", "dro_rewards", "K3KL", "k3_kl", "dynamic_budget",
            "ADVANTAGE_KINDS", "group_advantages"]

from .sqrt_law import SqrtAllocationResult, sqrt_allocation
__all__ += ["SqrtAllocationResult", "sqrt_allocation"]

from .regret import WorstCaseRegretResult, worst_case_regret
from .waterfill import WaterfillResult, waterfill
from .dro_policy import DroPolicyResult, dro_policy
from .soft_regret import SoftRegretGradResult, soft_regret_grad, soft_regret_objective
__all__ += ["WorstCaseRegretResult", "worst_case_regret", "WaterfillResult", "waterfill",
            "DroPolicyResult", "dro_policy", "SoftRegretGradResult", "soft_regret_objective",
            "soft_regret_grad"]

from .variance import (GRADIENT_ESTIMATORS, grad_variance, grad_variance_continuous, variance_proxy,
                       weighted_standard_error)
__all__ += ["GRADIENT_ESTIMATORS", "grad_variance", "grad_variance_continuous", "variance_proxy",
            "weighted_standard_error"]

from .allocation import COST_FAMILIES, AllocationResult, CostFamily, allocate, get_cost
from .rounding import RoundingResult, round_greedy
__all__ += ["allocate", "AllocationResult", "COST_FAMILIES", "CostFamily", "get_cost", "round_greedy",
            "RoundingResult"]
