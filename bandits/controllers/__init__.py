"""Controllers: the per-step decision makers shared by the simulator and the LLM bridge.

A controller decides how many rollouts each prompt of a batch gets, which of them enter the
gradient and how advantages are weighted; it never samples. Build one by name::

    ctrl = make_controller("vip", n_prompts=N, mean_budget=8, lower=2, upper=32, seed=0,
                           embeddings=E)
    plan = ctrl.plan(prompt_ids)            # StepPlan(counts, multipliers, bins, p_hat)
    ...                                     # generate plan.counts[i] rollouts for prompt i
    ctrl.observe(prompt_ids, plan.counts, rewards, group_ids)
    state = ctrl.state_dict()               # plain data; ctrl.load_state_dict(state) resumes

Some controllers sample in rounds (``supports_rounds(ctrl)``): after the plan's rollouts,
``ctrl.extend(prompt_ids, counts, rewards, group_ids)`` returns extra rollouts per prompt for the
next round (all zeros: stop), given all rollouts of the step so far; every round counts against
the step's budget ``M * mean_budget``. ``ctrl.select(...)`` then says which rollouts enter the
gradient (:class:`TrainSelection`: a mask, optional per-prompt baselines, optional reuse of an
earlier correct response); dropped groups still cost their rollouts. :func:`sample_step` runs
plan, rounds and selection around any generator, for every controller alike::

    step = sample_step(ctrl, prompt_ids, generate)   # generate(ids, counts) -> (rewards, group_ids, payload)
    ...                                              # train on step.selection
    ctrl.observe(prompt_ids, step.counts, step.rewards, step.group_ids)

Single-round controllers keep the budget exact; round controllers spend at most the budget;
controllers that skip prompts (``skips_prompts``) may give a prompt 0 rollouts
(:mod:`bandits.controllers.base` has the full protocol).

================== =========================================================== ==================
name               allocation (exact total M * mean_budget, within bounds)     multipliers
================== =========================================================== ==================
uniform            ``mean_budget`` each (remainder to random prompts)          1
vip                exact integer min of VIP eq. 5, ``a = 4 p_hat (1 - p_hat)``  1
vip-paper          VIP Thm 5.1/5.2 continuous + Alg. 2 rounding                1
oracle             as ``vip`` with the true ``p`` (``true_success=``)           1
inverse-accuracy   ``n ~ 1 - p_hat + eps``, box-constrained (VIP App. C.1)      1
inverse-variance   ``n ~ 1 / (4 p_hat (1 - p_hat) + eps)`` (VIP App. C.1)       1
skip-saturated     ``lower`` if predicted all-0/all-1, rest even               1
rollout-gdro       Rollout-GDRO arms per pass@k bin (GDRO Sec. 3.3)            1
sqrt-law           exact integer min of GDRO eq. 19 per pass@k bin, online      1
                   within-prompt variance (Thm F.17, Remark F.25)
prompt-gdro        as ``uniform``                                              GDRO eq. 17
gdro-coupled       Rollout-GDRO on the reweighted variance                     GDRO eq. 17
knapsack           Knapsack RL: max sum of ``(1 - p^n - (1-p)^n) p (1-p)^2``     1
greso              GRESO: skip prompts with zero-variance history (0 rollouts)  1
                   with probability ``1 - max(p^streak, 0.01)``, rest even;
                   all-equal groups dropped from the gradient
reinforce-ada      Reinforce-Ada, in rounds (at most the budget): rounds of     1
                   ``round_size`` until a prompt has its positives and
                   negatives; balanced groups of ``keep``, global baseline
dapo-dynamic       DAPO dynamic sampling, in rounds (at most the budget):       1
                   groups prompt by prompt, all-equal groups dropped,
                   refill until ``train_fraction * M`` groups are kept
ar3po              AR3PO, in rounds (at most the budget): stages until a        1
                   correct response appears; reuse an earlier one
================== =========================================================== ==================

The four binned controllers (``rollout-gdro``, ``sqrt-law``, ``prompt-gdro``, ``gdro-coupled``) bin
by pass@k by default; ``binning="posterior"`` (with ``binning_options``) bins by a Beta posterior
over each prompt's per-rollout success rate instead (:class:`bandits.PosteriorBinner`), and
``binner=`` takes any binner object (:func:`bandits.controllers.gdro.binner_iv`).
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import Controller, Observation, StepPlan, TrainSelection, supports_rounds
from .gdro import CoupledGDROController, PromptGDROController, RolloutGDROController
from .peers import (
    AR3POController,
    DAPODynamicController,
    GRESOController,
    KnapsackController,
    ReinforceAdaController,
)
from .predictive import (
    PREDICTORS,
    InverseAccuracyController,
    InverseVarianceController,
    OracleController,
    SkipSaturatedController,
    VIPController,
    VIPPaperController,
)
from .rounds import Round, StepRollouts, close_step, sample_step
from .protocol import check_controller, learns_from_rewards
from .sqrt_law import SqrtLawController
from .uniform import UniformController

__all__ = [
    "CONTROLLERS",
    "PREDICTORS",
    "Controller",
    "Observation",
    "Round",
    "StepPlan",
    "StepRollouts",
    "TrainSelection",
    "close_step",
    "check_controller",
    "controller_options",
    "learns_from_rewards",
    "make_controller",
    "sample_step",
    "supports_rounds",
]

CONTROLLERS: dict[str, type[Controller]] = {
    cls.name: cls
    for cls in (
        UniformController,
        VIPController,
        VIPPaperController,
        OracleController,
        InverseAccuracyController,
        InverseVarianceController,
        SkipSaturatedController,
        RolloutGDROController,
        PromptGDROController,
        CoupledGDROController,
        KnapsackController,
        GRESOController,
        ReinforceAdaController,
        DAPODynamicController,
        AR3POController,
        SqrtLawController,
    )
}
"""Registry of controllers: name -> class (see :func:`make_controller`)."""

_BASE_ARGS = ("n_prompts", "mean_budget", "lower", "upper", "seed")


def controller_options(name: str) -> dict[str, Any]:
    """The keyword options of controller ``name`` with their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {k: p.default for k, p in sig.parameters.items()
            if p.kind is p.KEYWORD_ONLY and k not in _BASE_ARGS}


def _lookup(name: Any) -> type[Controller]:
    if not isinstance(name, str):
        raise TypeError(f"controller name must be a string, one of {sorted(CONTROLLERS)}, got {type(name).__name__}")
    try:
        return CONTROLLERS[name]
    except KeyError:
        raise ValueError(f"unknown controller {name!r}; valid controllers: {sorted(CONTROLLERS)}") from None


def make_controller(name: str, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                    **options: Any) -> Controller:
    """Build the controller registered as ``name`` in :data:`CONTROLLERS`.

    Parameters
    ----------
    name : str
        One of ``sorted(CONTROLLERS)``; an unknown name is a ``ValueError`` listing them.
    n_prompts : int
        Dataset size; prompt ids are in ``[0, n_prompts)``.
    mean_budget : int, float or Fraction
        Mean rollouts per prompt; each batch of ``M`` prompts gets exactly ``M * mean_budget``
        rollouts (an integer, else ``ValueError`` at ``plan``).
    lower, upper : int (``upper`` may be ``math.inf`` where the controller allows it)
        Per-prompt bounds, ``lower <= mean_budget <= upper`` (else ``ValueError`` naming them).
    seed : None, int or numpy.random.Generator
        All randomness of the controller and its components.
    **options
        Controller-specific keyword options (:func:`controller_options`), e.g. ``embeddings=``
        and ``cost=`` for ``vip``, ``true_success=`` for ``oracle``. An unknown option is a
        ``TypeError`` naming it and listing the valid ones.

    Returns
    -------
    Controller

    Examples
    --------
    >>> import numpy as np
    >>> from bandits.controllers import make_controller
    >>> ctrl = make_controller("oracle", n_prompts=4, mean_budget=6, lower=2, upper=16, seed=0,
    ...                        true_success=lambda ids: np.array([0.0, 0.1, 0.5, 0.9])[ids])
    >>> ctrl.plan([0, 1, 2, 3]).counts.tolist()
    [2, 6, 10, 6]
    """
    cls = _lookup(name)
    valid = controller_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"unknown option {unknown[0]!r} for controller {name!r}; valid options: {sorted(valid)}")
    return cls(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed, **options)
