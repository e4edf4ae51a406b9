"""The allocation methods that VIP and GDRO are compared with, behind the controller protocol.

==================== ==========================================================================
``knapsack``         Knapsack RL (arXiv:2509.25849): value of ``n`` rollouts from the estimated
                     success rate, budget split by an exact knapsack
``reinforce-ada``    Reinforce-Ada (arXiv:2510.04996): rounds; a prompt stops once it has its
                     signal; balanced groups; baseline from all the step's rollouts
``greso``            GRESO (arXiv:2506.02177): skip prompts whose recent groups had zero variance,
                     with a probability that keeps exploring
``dapo-dynamic``     DAPO dynamic sampling (arXiv:2503.14476): sample group by group, drop
                     all-equal groups, refill until the training batch is full
``ar3po``            AR3PO (arXiv:2509.25808): stages until a correct response appears; reuse
                     an earlier correct response when none does
==================== ==========================================================================

Each module's docstring names the paper and says which text and public code the implementation
was written from, and which constants come from that code.
"""

from .ar3po import AR3POController
from .dapo import DAPODynamicController
from .greso import GRESOController
from .knapsack import KnapsackController, knapsack_extras, rollout_value
from .reinforce_ada import ReinforceAdaController

__all__ = [
    "AR3POController",
    "DAPODynamicController",
    "GRESOController",
    "KnapsackController",
    "ReinforceAdaController",
    "knapsack_extras",
    "rollout_value",
]
