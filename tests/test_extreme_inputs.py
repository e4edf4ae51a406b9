"""Bad-input sweep over every public function and learner of ``solvers`` and ``bandits``.

Property checked (the project's input contract, docs/architecture.md "Conventions": validation
in one place): for every public callable and every argument it takes, with
that argument replaced by an extreme value -- huge, tiny and subnormal floats, +-1e308, the
largest double, negative zero, huge Python ints (10**400, 2**63, 2**64), integral floats beyond
int64 -- a call

* either returns, and then every number it reports is finite, unless the result says
  ``success=False`` (with a message) or the quantity is documented to be infinite for that
  input (table below, ``allow``);
* or raises ``ValueError``/``TypeError`` whose message names one of its parameters;

and never raises any other exception type. For learners (stateful objects) additionally: a
rejected call leaves the whole state (arrays, counters, random generator) unchanged; an
accepted update leaves a finite state, can be repeated, and the learner still accepts an
ordinary update afterwards (no learner gets stuck rejecting everything); a constructor that
accepts its hyperparameters gives a learner that accepts an ordinary update.

The list of callables is driven by the packages' ``__all__``: a name exported without an entry
in :data:`FUNCTIONS`, :data:`LEARNERS` or :data:`NOT_SWEPT` (and a public learner method without
an entry) makes :func:`test_every_public_name_has_an_entry` fail, so a new function inherits the
check by getting a table entry.

The sweep is exhaustive over single-argument substitutions (one test per function or learner);
a hypothesis test then mixes several extreme arguments at once (deterministic profile, see
``conftest.py``). ``sweep_all()`` returns the raw records (used to count the findings of a
sweep).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bandits
import solvers
from bandits.controllers import CONTROLLERS

DBL_MAX = float(np.finfo(np.float64).max)

SCALARS: list[Any] = [
    0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1e-300, 1e-170, 1e154,
    1e300, -1e300, 1e307, -1e307, 1e308, -1e308, DBL_MAX, -DBL_MAX, 1.0 + 2.0**-52,
    2.0**53 + 2.0, 1e19, 10**400, -10**400, 2**63, 2**63 - 1, -(2**63), 2**64, 10**19,
    2**53 + 1, -1,
]  # fmt: skip
"""Value classes substituted for one argument (scalars, and the entries of array variants)."""

ARRAY_VARIANTS = ("fill", "first", "alt_sign", "alt_zero")
"""How a value goes into an array argument: every entry, the first entry, alternating
``(v, -v, ...)`` (huge spreads) and alternating ``(v, 0, ...)`` (tiny spreads)."""


# ------------------------------------------------------------------------------------------------
# table
# ------------------------------------------------------------------------------------------------

Allow = Callable[[dict, str, Any], bool]


def _never(kwargs: dict, path: str, value: Any) -> bool:
    return False


@dataclass
class Entry:
    """One public function: valid base calls and the arguments to sweep.

    ``bases`` are keyword dicts of valid calls (several to cover modes); ``sweep`` the argument
    names to replace (each must appear in every base; a base value of None is swept as a
    scalar); ``allow(kwargs, path, value)`` says whether a non-finite reported number is
    documented for that input; ``values`` restricts the value classes (slow functions)."""

    fn: Callable[..., Any]
    bases: list[dict]
    sweep: tuple[str, ...]
    allow: Allow = _never
    names: tuple[str, ...] = ()  # extra words that count as naming a parameter
    values: list[Any] | None = None


@dataclass
class Method:
    """One public method (or property, ``args=None``) of a learner, called on a warmed learner."""

    bases: list[dict] | None = None
    sweep: tuple[str, ...] = ()
    update: bool = False  # mutates the learner on success
    allow: Allow = _never


@dataclass
class Learner:
    """One public learner class: constructor bases, swept constructor arguments, a valid
    ``warm`` update sequence (list of (method, kwargs)), and its methods."""

    cls: type
    bases: list[dict]
    sweep: tuple[str, ...]
    warm: list[tuple[str, dict]] | Callable[[Any], None]
    methods: dict[str, Method]
    names: tuple[str, ...] = ()
    values: list[Any] | None = None
    allow_state: Callable[[str, Any], bool] = lambda path, value: False


def _arr(*x):
    return np.array(x, dtype=np.float64)


_A = _arr(0.3, 1.0, 0.0, 2.0)
_ARMS = np.array([2, 4, 8])
_COSTS = _arr(1.0, 9.0)[:, None] / _ARMS[None, :]
_RNG = np.random.default_rng(0)
_EMB = _RNG.normal(size=(12, 3))
_COV_Z = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
_COV_MU = np.array([[0.5, 0.25, 0.25], [0.2, 0.2, 0.6]])
_PD_COSTS = _arr(1.0, 4.0, 16.0)[:, None] / np.arange(2, 13)[None, :]


def _allow_kl_dual(kwargs, path, value):
    return path.startswith("dual") and value == np.inf and kwargs.get("rho") == 0  # documented


def _allow_chi2_dual(kwargs, path, value):
    return path.startswith("dual") and value == -np.inf and kwargs.get("rho") == 0  # documented


def _allow_norm(kwargs, path, value):
    return path == "p" and value == kwargs.get("p") == np.inf  # the norm itself, as passed


def _allow_sqrt(kwargs, path, value):
    # zero-share bins with upper = inf get upper (possibly inf) when the price is 0 (docstring)
    return path.startswith("n[") and value == np.inf


FUNCTIONS: dict[str, Entry] = {
    # -- allocation ------------------------------------------------------------------------
    "allocate": Entry(
        solvers.allocate,
        [
            dict(a=_A, budget=20, lower=3.0, upper=16.0, cost="rloo"),
            dict(a=_A, budget=20, lower=3.0, upper=16.0, cost="drgrpo"),
            dict(a=_A, budget=20, lower=3.0, upper=np.inf, cost="inverse"),
            dict(a=_A, budget=20, lower=3.0, upper=16.0, cost="rloo", integer=True),
            dict(a=_A, budget=20.0, lower=_arr(3, 3, 3, 3), upper=_arr(16, 16, 8, 16), cost="drgrpo"),
        ],
        ("a", "budget", "lower", "upper"),
    ),
    "get_cost": Entry(solvers.get_cost, [dict(name="rloo")], ("name",), names=("cost",)),
    "round_greedy": Entry(
        solvers.round_greedy,
        [dict(n_continuous=_arr(4.5, 7.5, 3.0, 5.0), a=_A, budget=20, lower=3, upper=16, cost="rloo")],
        ("n_continuous", "a", "budget", "lower", "upper"),
    ),
    "sqrt_allocation": Entry(
        solvers.sqrt_allocation,
        [
            dict(v=_arr(1.0, 4.0, 0.0), shares=_arr(0.5, 0.3, 0.2), mean_budget=3.0, lower=None, upper=None),
            dict(v=_arr(1.0, 4.0, 9.0), shares=_arr(0.5, 0.5, 0.0), mean_budget=3.0, lower=1.0, upper=8.0),
        ],
        ("v", "shares", "mean_budget", "lower", "upper"),
        allow=_allow_sqrt,
    ),
    "match_budget": Entry(
        solvers.match_budget,
        [
            dict(costs=_COSTS, counts=np.array([3, 1]), arms=_ARMS, total=16),
            dict(costs=_COSTS, counts=np.array([3, 1]), arms=_ARMS, total=17, nearest=True),
        ],
        ("costs", "counts", "arms", "total"),
    ),
    "grad_variance": Entry(
        solvers.grad_variance,
        [
            dict(p=0.3, n=4, estimator="drgrpo", sigma2=1.0),
            dict(p=_arr(0.1, 0.5), n=_arr(4, 8), estimator="rloo", sigma2=_arr(1.0, 2.0)),
        ],
        ("p", "n", "sigma2"),
    ),
    "grad_variance_continuous": Entry(
        solvers.grad_variance_continuous,
        [
            dict(reward_var=2.0, n=3, estimator="rloo", sigma2=0.5),
            dict(reward_var=_arr(2.0, 0.5), n=_arr(3, 5), estimator="drgrpo", sigma2=_arr(0.5, 1.0)),
        ],
        ("reward_var", "n", "sigma2"),
    ),
    "variance_proxy": Entry(
        solvers.variance_proxy,
        [
            dict(v=_arr(1.0, 4.0), shares=_arr(0.5, 0.5), n=_arr(2.0, 4.0)),
            dict(v=np.ones((2, 3)), shares=np.full((2, 3), 1 / 3), n=np.full((2, 3), 4.0)),
        ],
        ("v", "shares", "n"),
    ),
    "weighted_standard_error": Entry(
        solvers.weighted_standard_error,
        [dict(sigma=_arr(1.0, 2.0), shares=_arr(0.5, 0.5), n=_arr(4.0, 16.0))],
        ("sigma", "shares", "n"),
    ),
    # -- regret-robust and value-robust policies --------------------------------------------
    "worst_case_regret": Entry(
        solvers.worst_case_regret,
        [
            dict(pi=_arr(0.5, 0.5, 0.0), r_hat=_arr(1.0, 0.8, 0.0), delta=0.3, p=1),
            dict(pi=_arr(0.5, 0.25, 0.25), r_hat=_arr(1.0, 0.8, 0.0), delta=0.3, p=2.5),
            dict(pi=np.full((2, 3), 1 / 3), r_hat=_EMB[:2], delta=_arr(0.3, 1.0), p=np.inf),
        ],
        ("pi", "r_hat", "delta", "p"),
        allow=_allow_norm,
    ),
    "waterfill": Entry(
        solvers.waterfill,
        [
            dict(r_hat=_arr(1.0, 0.5, 0.0), delta=0.2, full_output=True),
            dict(r_hat=_EMB[:3], delta=_arr(0.2, 1.0, 5.0), full_output=True),
        ],
        ("r_hat", "delta"),
    ),
    "dro_policy": Entry(
        solvers.dro_policy,
        [
            dict(r_hat=_arr(1.0, 0.5, 0.0), delta=1.0, full_output=True),
            dict(r_hat=_EMB[:3], delta=_arr(0.2, 1.0, 5.0), full_output=True),
        ],
        ("r_hat", "delta"),
    ),
    "concentrability": Entry(
        solvers.concentrability,
        [dict(z=_COV_Z, coverage=_COV_MU, prompt_probs=_arr(0.3, 0.7)), dict(z=_COV_Z, coverage=_COV_MU, prompt_probs=None)],
        ("z", "coverage", "prompt_probs"),
    ),
    "relative_concentrability": Entry(
        solvers.relative_concentrability,
        [dict(z_beta=_COV_Z, z_pi=_COV_Z[::-1], coverage=_COV_MU, prompt_probs=_arr(0.3, 0.7))],
        ("z_beta", "z_pi", "coverage", "prompt_probs"),
    ),
    "dro_certificate": Entry(
        solvers.dro_certificate,
        [dict(z=_COV_Z, r_hat=_EMB[:2], coverage=_COV_MU, radius=0.5, prompt_probs=_arr(0.3, 0.7))],
        ("z", "r_hat", "coverage", "radius", "prompt_probs"),
    ),
    "drro_certificate": Entry(
        solvers.drro_certificate,
        [dict(z=_COV_Z, comparators=np.stack([_COV_Z, _COV_Z[::-1]]), r_hat=_EMB[:2], coverage=_COV_MU, radius=0.5,
              prompt_probs=_arr(0.3, 0.7))],
        ("z", "comparators", "r_hat", "coverage", "radius", "prompt_probs"),
    ),
    "soft_regret_objective": Entry(
        solvers.soft_regret_objective,
        [dict(pi=_arr(0.5, 0.5), r_hat=_arr(1.0, 0.0), delta=1.0, tau=0.5)],
        ("pi", "r_hat", "delta", "tau"),
    ),
    "soft_regret_grad": Entry(
        solvers.soft_regret_grad,
        [dict(pi=_arr(0.5, 0.5), r_hat=_arr(1.0, 0.0), delta=1.0, tau=0.5)],
        ("pi", "r_hat", "delta", "tau"),
    ),
    # -- shaping, advantages, KL --------------------------------------------------------------
    "drro_rewards": Entry(
        solvers.drro_rewards,
        [
            dict(rewards=_EMB[:2], seq_logprobs=-np.abs(_EMB[2:4]), delta=0.3, tau=None),
            dict(rewards=_EMB[:2], seq_logprobs=-np.abs(_EMB[2:4]), delta=_arr(0.3, 2.0), tau=0.5),
        ],
        ("rewards", "seq_logprobs", "delta", "tau"),
    ),
    "dro_rewards": Entry(
        solvers.dro_rewards,
        [
            dict(rewards=_EMB[:2], seq_logprobs=-np.abs(_EMB[2:4]), delta=0.3, tau=None),
            dict(rewards=_EMB[:2], seq_logprobs=-np.abs(_EMB[2:4]), delta=_arr(0.3, 2.0), tau=0.5),
        ],
        ("rewards", "seq_logprobs", "delta", "tau"),
    ),
    "k3_kl": Entry(
        solvers.k3_kl,
        [
            dict(logp_ref=_arr(-1.0, -2.0, -0.5), logp=_arr(-1.0, -1.5, -3.0)),
            dict(logp_ref=-np.abs(_EMB[:2]), logp=-np.abs(_EMB[2:4])),
        ],
        ("logp_ref", "logp"),
    ),
    "dynamic_budget": Entry(
        solvers.dynamic_budget,
        [
            dict(delta0=0.0, alpha=10.0, kl=0.25, window=None),
            dict(delta0=1.0, alpha=2.0, kl=_arr(0.0, 1.0, 2.0, 3.0), window=2),
        ],
        ("delta0", "alpha", "kl", "window"),
    ),
    "group_advantages": Entry(
        solvers.group_advantages,
        [
            dict(rewards=_EMB[:2], kind="grpo", group_ids=None, eps=1e-6),
            dict(rewards=_EMB[:2], kind="grpo", group_ids=None, eps=0.0),
            dict(rewards=_EMB[:2], kind="rloo", group_ids=None, eps=1e-6),
            dict(rewards=_arr(1.0, 0.0, 3.0, 5.0, 2.0), kind="drgrpo", group_ids=np.array([0, 0, 1, 2, 1]), eps=1e-6),
            dict(rewards=_arr(1.0, 0.0, 3.0, 5.0, 2.0), kind="grpo", group_ids=np.array([0, 0, 1, 2, 1]), eps=0.0),
        ],
        ("rewards", "group_ids", "eps"),
    ),
    # -- DRO duals ------------------------------------------------------------------------------
    "entropic_worst_case": Entry(
        solvers.entropic_worst_case,
        [dict(losses=_arr(0.0, 1.0, 2.0), eta=10.0), dict(losses=_EMB[:2], eta=0.5)],
        ("losses", "eta"),
    ),
    "kl_worst_case": Entry(
        solvers.kl_worst_case,
        [
            dict(losses=_arr(0.0, 1.0, 2.0), p=None, rho=0.1, max_iter=200),
            dict(losses=_EMB[:2], p=_arr(0.2, 0.3, 0.5), rho=0.01, max_iter=200),
        ],
        ("losses", "p", "rho", "max_iter"),
        allow=_allow_kl_dual,
    ),
    "chi2_worst_case": Entry(
        solvers.chi2_worst_case,
        [
            dict(losses=_arr(0.0, 1.0, 2.0), p=None, rho=0.05),
            dict(losses=_EMB[:2], p=_arr(0.2, 0.3, 0.5), rho=0.5),
        ],
        ("losses", "p", "rho"),
        allow=_allow_chi2_dual,
    ),
    # -- REBEL / DRO-REBEL ----------------------------------------------------------------------
    "rebel_loss": Entry(
        solvers.rebel_loss,
        [dict(logratio_a=_arr(0.1, -0.2, 0.0), logratio_b=_arr(0.0, 0.3, -0.1),
              reward_a=_arr(1.0, 0.0, 0.5), reward_b=_arr(0.0, 1.0, 0.5), eta=0.5)],
        ("logratio_a", "logratio_b", "reward_a", "reward_b", "eta"),
    ),
    "dro_rebel_weights": Entry(
        solvers.dro_rebel_weights,
        [
            dict(losses=_arr(0.0, 1.0, 2.0), kind="kl", radius=0.1),
            dict(losses=_arr(0.0, 1.0, 2.0), kind="chi2", radius=0.5, full_output=True),
        ],
        ("losses", "radius"),
        allow=lambda kwargs, path, value: _allow_kl_dual(dict(kwargs, rho=kwargs.get("radius")), path, value)
        or _allow_chi2_dual(dict(kwargs, rho=kwargs.get("radius")), path, value),
    ),
    "wasserstein_penalty": Entry(
        solvers.wasserstein_penalty,
        [
            dict(grad_norms=_arr(0.5, 1.0, 2.0), radius=0.1, p=2.0),
            dict(grad_norms=_arr(0.5, 1.0, 2.0), radius=0.1, p=1.0),
        ],
        ("grad_norms", "radius", "p"),
        allow=lambda kwargs, path, value: path == "q" and value == np.inf and kwargs.get("p") == 1.0,
    ),
    "wasserstein_collapse_radius": Entry(
        solvers.wasserstein_collapse_radius,
        [dict(features_a=_EMB[:6, :2], features_b=_EMB[6:, :2], rewards_a=_arr(1, 0, 1, 0, 1, 1),
              rewards_b=_arr(0, 0, 1, 1, 0, 0))],
        ("features_a", "features_b", "rewards_a", "rewards_b"),
    ),
    "rebel_step_linear": Entry(
        solvers.rebel_step_linear,
        [
            dict(theta=_arr(0.0, 0.5), features_a=_EMB[:6, :2], features_b=_EMB[6:, :2],
                 rewards_a=_arr(1, 0, 1, 0, 1, 1), rewards_b=_arr(0, 0, 1, 1, 0, 0), eta=0.5),
            dict(theta=_arr(0.0, 0.5), features_a=_EMB[:6, :2], features_b=_EMB[6:, :2],
                 rewards_a=_arr(1, 0, 1, 0, 1, 1), rewards_b=_arr(0, 0, 1, 1, 0, 0), eta=0.5,
                 robust=("kl", 0.1), full_output=True),
            dict(theta=_arr(0.0, 0.5), features_a=_EMB[:6, :2], features_b=_EMB[6:, :2],
                 rewards_a=_arr(1, 0, 1, 0, 1, 1), rewards_b=_arr(0, 0, 1, 1, 0, 0), eta=0.5,
                 robust=("wasserstein", 0.1), full_output=True),
        ],
        ("theta", "features_a", "features_b", "rewards_a", "rewards_b", "eta"),
        # documented: the Wasserstein ridge parameter is inf when w* = 0 (RebelStepResult.dual)
        allow=lambda kwargs, path, value: path == "dual" and value == np.inf
        and (kwargs.get("robust") or ("",))[0] == "wasserstein",
    ),
    # -- diagnostics --------------------------------------------------------------------------
    "lead_lag_gap": Entry(
        bandits.lead_lag_gap,
        [dict(weights=_arr(0.0, 0.2, 1.0), shares=_arr(1.0, 1.0, 0.5))],
        ("weights", "shares"),
    ),
    "weight_entropy": Entry(
        bandits.weight_entropy,
        [dict(weights=_arr(1.0, 2.0, 3.0, 4.0)), dict(weights=np.ones((2, 3)), normalized=True)],
        ("weights",),
    ),
    "allocation_entropy": Entry(
        bandits.allocation_entropy,
        [
            dict(n=_arr(4, 4, 8, 8), bin_ids=np.array([0, 0, 1, 1]), n_bins=3, normalized=True),
            dict(n=_arr(1.0, 2.0, 3.0), bin_ids=None, n_bins=None),
        ],
        ("n", "bin_ids", "n_bins"),
    ),
    "make_binner": Entry(
        bandits.make_binner,
        [dict(name="posterior", n_bins=4, discount=0.9, hysteresis=0.05),
         dict(name="pass@k", n_bins=4, window=3)],
        ("n_bins",),
        names=("n_bins",),  # forwarded through **options to the binner's constructor
    ),
    "make_controller": Entry(
        bandits.make_controller,
        [dict(name="uniform", n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0),
         dict(name="rollout-gdro", n_prompts=12, mean_budget=4.5, lower=2, upper=8, seed=0, n_bins=3)],
        ("n_prompts", "mean_budget", "lower", "upper", "seed"),
    ),
    "high_bin_mass": Entry(
        bandits.high_bin_mass, [dict(weights=_arr(1.0, 1.0, 2.0, 1.0), k=3)], ("weights", "k")
    ),
    "fit_gp_hyperparameters": Entry(
        bandits.fit_gp_hyperparameters,
        [
            dict(
                embeddings=_EMB, ids=np.array([0, 1, 2, 3, 4, 5]), successes=np.array([1, 2, 3, 0, 4, 2]),
                trials=np.array([4, 4, 4, 4, 4, 4]), noise="learn", prior_logit=0.0, eps=0.01,
                max_history=1024, initial_bandwidth=1.0, initial_noise=0.5, max_iter=3, tol=1e-7, seed=0,
            )
        ],
        ("embeddings", "ids", "successes", "trials", "prior_logit", "eps", "max_history",
         "initial_bandwidth", "initial_noise", "max_iter", "tol", "seed"),
        values=[-0.0, 5e-324, 1e308, -DBL_MAX, 10**400, 2**63],  # each accepted call runs L-BFGS
    ),
}  # fmt: skip


def _rollout_warm(learner: Any) -> None:
    """Allocate, then feed back: valid for any arms the constructor accepted."""
    bins = np.array([0, 0, 1, 2])
    learner.update(bins, learner.allocate(bins), _arr(0.1, 0.3, -0.2, 0.5))


LEARNERS: dict[str, Learner] = {
    "Exp3": Learner(
        bandits.Exp3,
        [dict(n_arms=3, gamma=0.3, horizon=None, seed=0), dict(n_arms=3, gamma=None, horizon=100, seed=0)],
        ("n_arms", "gamma", "horizon", "seed"),
        [("update", dict(arm=0, reward=1.0)), ("update", dict(arm=1, reward=0.2))],
        {
            "update": Method([dict(arm=0, reward=1.0)], ("arm", "reward"), update=True),
            "probabilities": Method([{}]),
            "sample": Method([{}], update=True),
        },
    ),
    "Exp3P": Learner(
        bandits.Exp3P,
        [
            dict(n_arms=4, horizon=1000, alpha=None, gamma=None, delta=None, eta=None, seed=0),
            dict(n_arms=4, horizon=1000, alpha=0.0, gamma=0.01, delta=0.05, eta=0.65, seed=0),
        ],
        ("n_arms", "horizon", "alpha", "gamma", "delta", "eta", "seed"),
        [("update", dict(arm=0, reward=1.0)), ("update", dict(arm=2, reward=0.5))],
        {
            "update": Method(
                [dict(arm=1, reward=1.0, propensity=None), dict(arm=1, reward=0.5, propensity=0.3)],
                ("arm", "reward", "propensity"),
                update=True,
            ),
            "probabilities": Method([{}]),
            "sample": Method([{}], update=True),
        },
    ),
    "Exp3IX": Learner(
        bandits.Exp3IX,
        [dict(n_arms=4, horizon=100, eta=None, gamma=None, seed=0), dict(n_arms=2, horizon=10, eta=1.0, gamma=0.0, seed=0)],
        ("n_arms", "horizon", "eta", "gamma", "seed"),
        [("update", dict(arm=0, loss=1.0)), ("update", dict(arm=1, loss=0.3))],
        {
            "update": Method([dict(arm=1, loss=1.0)], ("arm", "loss"), update=True),
            "probabilities": Method([{}]),
            "sample": Method([{}], update=True),
        },
    ),
    "GroupDRO": Learner(
        bandits.GroupDRO,
        [dict(n_groups=3, step_size=1.0)],
        ("n_groups", "step_size"),
        [("update", dict(group_losses=_arr(1.0, 0.0, 0.5))), ("update", dict(group_losses=_arr(0.2, 0.9, 0.1), present=np.array([1, 2])))],
        {
            "update": Method(
                [dict(group_losses=_arr(1.0, 0.0, 0.5), present=None), dict(group_losses=_arr(1.0, 0.0, 0.5), present=np.array([0, 2]))],
                ("group_losses", "present"),
                update=True,
            ),
            "weights": Method([{}]),
        },
    ),
    "GDROExp3P": Learner(
        bandits.GDROExp3P,
        [
            dict(n_groups=3, horizon=100, eta=None, gamma=None, beta=None, delta=None, seed=0),
            dict(n_groups=3, horizon=100, eta=0.65, gamma=0.01, beta=0.0, delta=0.05, seed=0),
        ],
        ("n_groups", "horizon", "eta", "gamma", "beta", "delta", "seed"),
        [("update", dict(group=0, loss=1.0)), ("update", dict(group=2, loss=0.4))],
        {
            "update": Method(
                [dict(group=1, loss=1.0, propensity=None), dict(group=1, loss=0.5, propensity=0.2)],
                ("group", "loss", "propensity"),
                update=True,
            ),
            "weights": Method([{}]),
            "probabilities": Method([{}]),
            "sample": Method([{}], update=True),
            # read-only views of the underlying Exp3P
            **{name: Method(None) for name in ("n_groups", "horizon", "eta", "gamma", "delta", "t", "log_weights")},
        },
    ),
    "PassAtKBinner": Learner(
        bandits.PassAtKBinner,
        [
            dict(n_bins=4, window=3, edges=None, quantile=None, unseen_bin=None),
            dict(n_bins=4, window=3, edges=_arr(0.0, 0.2, 0.5, 0.7, 1.0), mode="beta", prior=_arr(1.0, 2.0), quantile=0.1, unseen_bin=1),
        ],
        ("n_bins", "window", "edges", "quantile", "unseen_bin"),
        [("update", dict(prompt_ids=np.array([7, 7, 9]), any_correct=np.array([1, 0, 1])))],
        {
            "update": Method(
                [dict(prompt_ids=np.array([7, 3, 9]), any_correct=np.array([1, 0, 1]))],
                ("prompt_ids", "any_correct"),
                update=True,
            ),
            "observe": Method(
                [dict(prompt_ids=np.array([7, 3]), any_correct=np.array([1, 0]), successes=None, trials=None)],
                ("prompt_ids", "any_correct"),
                update=True,
            ),
            "counts": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "rates": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "posterior": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "scores": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "bins": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
        },
    ),
    "PosteriorBinner": Learner(
        bandits.PosteriorBinner,
        [
            dict(n_bins=4, edges=None, confidence=0.9, prior=_arr(1.0, 1.0), discount=0.98, hysteresis=0.02, unseen_bin=None),
            dict(n_bins=4, edges=_arr(0.0, 0.2, 0.5, 0.7, 1.0), statistic="lower", confidence=0.8, prior=_arr(1.0, 2.0),
                 discount=0.5, hysteresis=0.0, unseen_bin=1),
            dict(n_bins=3, edges=None, statistic="variance", confidence=0.9, prior=_arr(0.5, 0.5), discount=1.0,
                 hysteresis=0.1, unseen_bin=None),
        ],
        ("n_bins", "edges", "confidence", "prior", "discount", "hysteresis", "unseen_bin"),
        [("update", dict(prompt_ids=np.array([7, 7, 9]), successes=_arr(1.0, 0.5, 4.0), trials=np.array([2, 1, 4])))],
        {
            "update": Method(
                [dict(prompt_ids=np.array([7, 3, 9]), successes=_arr(1.0, 0.0, 2.5), trials=np.array([4, 2, 4]))],
                ("prompt_ids", "successes", "trials"),
                update=True,
            ),
            "observe": Method(
                [dict(prompt_ids=np.array([7, 3]), any_correct=np.array([True, False]), successes=_arr(1.0, 0.0),
                      trials=np.array([4, 2]))],
                ("prompt_ids", "successes", "trials"),
                update=True,
            ),
            "counts": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "posterior": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "scores": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "bins": Method([dict(prompt_ids=np.array([7, 9, 123]))], ("prompt_ids",)),
            "n_prompts": Method(None),
        },
    ),
    "PromptGDRO": Learner(
        bandits.PromptGDRO,
        [dict(n_bins=3, step_size=1.0, exploration=0.01, ema=0.12, weight_cap=15.0, seed=0),
         dict(n_bins=3, step_size=0.65, exploration=0.0, ema=1.0, weight_cap=2.0, normalization="uniform", seed=0)],
        ("n_bins", "step_size", "exploration", "ema", "weight_cap", "seed"),
        [("update", dict(bin_ids=np.array([0, 0, 2]), prompt_losses=_arr(1.0, 3.0, 0.0)))],
        {
            "update": Method(
                [dict(bin_ids=np.array([0, 1, 2, 2]), prompt_losses=_arr(1.0, -3.0, 0.5, 2.0))],
                ("bin_ids", "prompt_losses"),
                update=True,
            ),
            "multipliers": Method([dict(bin_ids=np.array([0, 2, 2]))], ("bin_ids",)),
            "weights": Method(None),
            "matched_step_size": Method([dict(n_bins=10, loss_range=2.0, horizon=1000)],
                                        ("n_bins", "loss_range", "horizon")),
        },
    ),
    "RolloutGDRO": Learner(
        bandits.RolloutGDRO,
        [dict(n_bins=3, arms=np.arange(2, 7), mean_budget=4, dual_step=0.05, step_size=0.65, exploration=0.01,
              ema=0.4, price_cap=10.0, seed=0),
         dict(n_bins=3, arms=np.array([2, 4, 8]), mean_budget=4.5, dual_step=1.0, step_size=2.0, exploration=0.0,
              ema=1.0, price_cap=1.0, selection="mode", seed=0)],
        ("n_bins", "arms", "mean_budget", "dual_step", "step_size", "exploration", "ema", "price_cap", "seed"),
        _rollout_warm,
        {
            "allocate": Method([dict(bin_ids=np.array([0, 0, 1, 2, 2, 2]))], ("bin_ids",), update=True),
            "update": Method(
                [dict(bin_ids=np.array([0, 1, 2, 2]), n=np.array([2, 4, 2, 4]), utilities=_arr(0.1, 0.3, -0.2, 0.5))],
                ("bin_ids", "n", "utilities"),
                update=True,
            ),
            "arm_probabilities": Method([{}]),
            "expected_allocation": Method([{}]),
            "n_arms": Method(None),
        },
    ),
    "PrimalDualRolloutGDRO": Learner(
        bandits.PrimalDualRolloutGDRO,
        [dict(n_bins=3, arms=np.arange(2, 13), mean_budget=4, primal_step=0.65, dual_step=0.05, price_cap=10.0)],
        ("n_bins", "arms", "mean_budget", "primal_step", "dual_step", "price_cap"),
        [("update", dict(arm_costs=_PD_COSTS, shares=_arr(0.5, 0.3, 0.2)))],
        {
            "update": Method([dict(arm_costs=_PD_COSTS, shares=_arr(0.5, 0.3, 0.2))], ("arm_costs", "shares"), update=True),
            "lagrangian": Method(
                [dict(p=np.full((3, 11), 1 / 11), price=1.0, arm_costs=_PD_COSTS, shares=_arr(0.5, 0.3, 0.2))],
                ("p", "price", "arm_costs", "shares"),
            ),
            "saddle_gap": Method([dict(arm_costs=_PD_COSTS, shares=_arr(0.5, 0.3, 0.2))], ("arm_costs", "shares")),
            "gap_bound": Method([dict(cost_max=8.0)], ("cost_max",)),
            "theorem_step_sizes": Method(
                [dict(horizon=2000, n_bins=3, n_arms=11, cost_max=8.0, price_cap=2.0, arm_max=12)],
                ("horizon", "n_bins", "n_arms", "cost_max", "price_cap", "arm_max"),
            ),
            "theorem_gap_bound": Method(
                [dict(horizon=2000, n_bins=3, n_arms=11, cost_max=8.0, price_cap=2.0, arm_max=12)],
                ("horizon", "n_bins", "n_arms", "cost_max", "price_cap", "arm_max"),
            ),
            "expected_allocation": Method([dict(p=None), dict(p=np.full((3, 11), 1 / 11))], ("p",)),
            "arm_probabilities": Method([{}]),
            "average_arm_probabilities": Method([{}]),
            "average_shadow_price": Method(None),
            "n_arms": Method(None),
        },
    ),
    "GPSuccessPredictor": Learner(
        bandits.GPSuccessPredictor,
        [
            dict(embeddings=_EMB, bandwidth="median", prior_logit=0.0, eps=0.01, noise=0.0, jitter=1e-6, seed=0,
                 dtype=np.float64, chunk_rows=5, n_bandwidth_pairs=20),
            dict(embeddings=_EMB, bandwidth=1.5, prior_logit=np.zeros(12), eps=0.05, noise=0.1, jitter=1e-6, seed=0,
                 dtype=np.float32, chunk_rows=8192, n_bandwidth_pairs=20_000),
        ],
        ("embeddings", "bandwidth", "prior_logit", "eps", "noise", "jitter", "chunk_rows", "n_bandwidth_pairs", "seed"),
        [("update", dict(ids=np.array([0, 1, 2]), successes=np.array([8, 0, 4]), trials=np.array([8, 8, 8])))],
        {
            "update": Method(
                [dict(ids=np.array([3, 1, 5]), successes=np.array([2, 1, 4]), trials=np.array([8, 8, 4]))],
                ("ids", "successes", "trials"),
                update=True,
            ),
            "predict": Method([dict(ids=np.array([0, 4, 11]))], ("ids",)),
            "predict_logit": Method([dict(ids=np.array([0, 4, 11]))], ("ids",)),
            "predict_latent_var": Method([dict(ids=np.array([0, 4, 11]))], ("ids",)),
            "predict_var": Method([dict(ids=np.array([0, 4, 11]))], ("ids",)),
            "observation_noise": Method([dict(successes=np.array([2, 1]), trials=np.array([8, 8]))], ("successes", "trials")),
            "mean_logit": Method(None),
            "embedding_fingerprint": Method([{}]),
        },
    ),
    "MovingAveragePredictor": Learner(
        bandits.MovingAveragePredictor,
        [dict(n_prompts=10, window=2, prior=0.5, eps=0.01)],
        ("n_prompts", "window", "prior", "eps"),
        [("update", dict(ids=np.array([0, 1]), successes=np.array([2, 0]), trials=np.array([4, 4])))],
        {
            "update": Method(
                [dict(ids=np.array([0, 3]), successes=np.array([1, 4]), trials=np.array([4, 4]))],
                ("ids", "successes", "trials"),
                update=True,
            ),
            "predict": Method([dict(ids=np.array([0, 5]))], ("ids",)),
            "predict_var": Method([dict(ids=np.array([0, 5]))], ("ids",)),
        },
    ),
    "RidgePredictor": Learner(
        bandits.RidgePredictor,
        [dict(embeddings=_EMB, alpha=1.0, window=4, prior_logit=0.0, eps=0.01)],
        ("embeddings", "alpha", "window", "prior_logit", "eps"),
        [("update", dict(ids=np.array([0, 1, 2]), successes=np.array([2, 0, 3]), trials=np.array([4, 4, 4])))],
        {
            "update": Method(
                [dict(ids=np.array([0, 3]), successes=np.array([1, 4]), trials=np.array([4, 4]))],
                ("ids", "successes", "trials"),
                update=True,
            ),
            "predict": Method([dict(ids=np.array([0, 5]))], ("ids",)),
            "predict_logit": Method([dict(ids=np.array([0, 5]))], ("ids",)),
        },
    ),
    "BetaBinomialPredictor": Learner(
        bandits.BetaBinomialPredictor,
        [dict(n_prompts=3, a0=1.0, b0=1.0, discount=1.0, eps=0.01), dict(n_prompts=3, a0=0.5, b0=2.0, discount=0.9, eps=0.01)],
        ("n_prompts", "a0", "b0", "discount", "eps"),
        [("update", dict(ids=np.array([0]), successes=np.array([3]), trials=np.array([4])))],
        {
            "update": Method(
                [dict(ids=np.array([0, 2]), successes=np.array([1, 4]), trials=np.array([4, 4]))],
                ("ids", "successes", "trials"),
                update=True,
            ),
            "posterior": Method([dict(ids=np.array([0, 1]))], ("ids",)),
            "predict": Method([dict(ids=np.array([0, 1]))], ("ids",)),
            "predict_var": Method([dict(ids=np.array([0, 1]))], ("ids",)),
        },
    ),
}  # fmt: skip

# -- controllers: one learner entry per registered controller ("controller:<name>") --------------

_CTRL_IDS = np.array([0, 1, 2, 3])
_CTRL_COUNTS = np.array([4, 4, 4, 4])
_CTRL_REWARDS = np.tile(_arr(1.0, 0.0, 0.5, 1.0), 4)
_CTRL_GROUPS = np.repeat(np.arange(4), 4)
_CTRL_OPTIONS: dict[str, dict] = {
    "uniform": {},
    "vip": dict(embeddings=_EMB, predictor_options=dict(chunk_rows=16)),
    "vip-paper": dict(embeddings=_EMB),
    "oracle": dict(true_success=lambda ids: np.linspace(0.05, 0.95, 12)[ids]),
    "inverse-accuracy": dict(embeddings=_EMB, epsilon=0.01),
    "inverse-variance": dict(embeddings=_EMB, epsilon=0.01),
    "skip-saturated": dict(embeddings=_EMB, saturation_prob=0.5),
    "rollout-gdro": dict(n_bins=3, window=5, arm_step_size=0.65, dual_step=0.05, price_cap=10.0),
    "prompt-gdro": dict(n_bins=3, window=5, prompt_step_size=0.65, weight_cap=15.0),
    "gdro-coupled": dict(n_bins=3, window=5, prompt_step_size=0.65, arm_step_size=0.65),
    "knapsack": dict(alpha=0.9, buffer_length=4, min_history=2),
    "greso": dict(p_easy=0.5, p_hard=0.5, target_zero_variance=0.25, adapt_step=0.01, floor=0.01),
    "reinforce-ada": dict(round_size=2, keep=2, max_rounds=4, positive_threshold=0.7),
    "dapo-dynamic": dict(group_size=4, train_fraction=0.5, max_rounds=10),
    "ar3po": dict(stage_size=2, max_stages=4),
    "sqrt-law": dict(n_bins=3, window=5, variance_ema=0.1),
}
"""Valid options per controller; the numeric ones are swept with the base arguments."""

_CTRL_METHODS_NOT_SWEPT = {
    "utilities": "takes the internal Observation built and validated by observe()",
    "prompt_losses": "takes the internal Observation built and validated by observe()",
}


def _controller_warm(learner: Any) -> None:
    """plan, then observe the planned counts (rewards alternating, group ids in order)."""
    ids = np.array([0, 1, 2, 3, 5])
    counts = learner.plan(ids).counts
    rewards = np.resize(_arr(1.0, 0.0, 0.5), int(counts.sum()))
    learner.observe(ids, counts, rewards, np.repeat(np.arange(ids.size), counts))


def _controller_entry(name: str) -> Learner:
    cls = CONTROLLERS[name]
    options = _CTRL_OPTIONS[name]
    base = dict(n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0, **options)
    numeric = tuple(k for k, v in options.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
    methods = {
        "plan": Method([dict(prompt_ids=_CTRL_IDS)], ("prompt_ids",), update=True),
        "observe": Method(
            [dict(prompt_ids=_CTRL_IDS, counts=_CTRL_COUNTS, rewards=_CTRL_REWARDS, group_ids=_CTRL_GROUPS,
                  prompt_losses=None),
             dict(prompt_ids=_CTRL_IDS, counts=_CTRL_COUNTS, rewards=_CTRL_REWARDS, group_ids=_CTRL_GROUPS,
                  prompt_losses=_arr(0.5, 1.0, 0.0, 2.0))],
            ("prompt_ids", "counts", "rewards", "group_ids", "prompt_losses"),
            update=True,
        ),
        "budget_for": Method([dict(batch_size=5)], ("batch_size",)),
        "extend": Method(
            [dict(prompt_ids=_CTRL_IDS, counts=_CTRL_COUNTS, rewards=_CTRL_REWARDS, group_ids=_CTRL_GROUPS)],
            ("prompt_ids", "counts", "rewards", "group_ids"),
            update=True,  # a round controller advances its round counter and generator
        ),
        "select": Method(
            [dict(prompt_ids=_CTRL_IDS, counts=_CTRL_COUNTS, rewards=_CTRL_REWARDS, group_ids=_CTRL_GROUPS)],
            ("prompt_ids", "counts", "rewards", "group_ids"),
        ),
    }
    public = _public_methods(cls)
    if "predict" in public:
        methods["predict"] = Method([dict(prompt_ids=_CTRL_IDS)], ("prompt_ids",))
    if "bins" in public:
        methods["bins"] = Method([dict(prompt_ids=_CTRL_IDS)], ("prompt_ids",))
    if "skip_probabilities" in public:
        methods["skip_probabilities"] = Method([dict(prompt_ids=_CTRL_IDS)], ("prompt_ids",))
    if "train_groups" in public:
        methods["train_groups"] = Method([dict(batch_size=5)], ("batch_size",))
    if "variance" in public:
        methods["variance"] = Method(None)
    if "saturated" in public:
        methods["saturated"] = Method([dict(p_hat=_arr(0.001, 0.5, 0.999, 0.2))], ("p_hat",))
    return Learner(cls, [base], ("n_prompts", "mean_budget", "lower", "upper", "seed") + numeric,
                   _controller_warm, methods)


NOT_SWEPT: dict[str, str] = {
    # result types and registries: data, no input to validate
    "AllocationResult": "result type", "RoundingResult": "result type",
    "SqrtAllocationResult": "result type", "BudgetMatchResult": "result type",
    "WorstCaseRegretResult": "result type", "WaterfillResult": "result type",
    "DroPolicyResult": "result type", "CoverageCertificate": "result type", "SoftRegretGradResult": "result type",
    "ShapedRewards": "result type", "K3KL": "result type", "DROResult": "result type",
    "RolloutAllocation": "result type",
    "GPHyperparameters": "result type (make_predictor forwards to GPSuccessPredictor, swept)",
    "CostFamily": "registry record (its callables take validated input from allocate)",
    "COST_FAMILIES": "registry (dict)", "GRADIENT_ESTIMATORS": "registry (dict)",
    "ADVANTAGE_KINDS": "registry (mapping)",
    "StepPlan": "result type",
    "RebelLoss": "result type", "RebelStepResult": "result type",
    "WassersteinPenalty": "result type", "DRO_REBEL_KINDS": "registry (tuple of kind names)",
    "BINNERS": "registry (dict of binner classes, each swept as a learner)",
    "CONTROLLERS": "registry: every registered controller is swept as 'controller:<name>'",
    "Controller": "base class: every registered subclass is swept as 'controller:<name>'",
}  # fmt: skip

METHODS_NOT_SWEPT = {
    "state_dict": "checkpointing, validated by its own tests (tests/test_state_dict.py)",
    "load_state_dict": "checkpointing, validated by its own tests (tests/test_state_dict.py)",
}


# ------------------------------------------------------------------------------------------------
# machinery
# ------------------------------------------------------------------------------------------------


def _public_methods(cls: type) -> set[str]:
    out = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__.split(".")[0] not in ("bandits", "solvers"):
            continue
        for n, v in vars(klass).items():
            if n.startswith("_"):
                continue
            if callable(v) or isinstance(v, (property, staticmethod, classmethod)):
                out.add(n)
    return out


LEARNERS.update({f"controller:{name}": _controller_entry(name) for name in CONTROLLERS})


def _posterior_binned_entry(name: str) -> Learner:
    """Controller ``name`` with ``binning="posterior"``, its ``binning_options`` entries flattened into
    keyword arguments of a test-local subclass so the sweep substitutes extreme values into each
    (the entry is named ``controller:<name>[posterior]``; the class is the registered one)."""
    base_cls = CONTROLLERS[name]

    class PosteriorBinned(base_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *, statistic="variance", confidence=0.9, discount=0.9, hysteresis=0.05, prior_a=1.0,
                     prior_b=1.0, **kwargs):
            super().__init__(binning="posterior", binning_options=dict(
                statistic=statistic, confidence=confidence, discount=discount, hysteresis=hysteresis,
                prior=(prior_a, prior_b)), **kwargs)

    entry = _controller_entry(name)
    flat = dict(confidence=0.9, discount=0.9, hysteresis=0.05, prior_a=1.0, prior_b=2.0)
    base = dict(n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0, n_bins=3, **flat)
    words = tuple(inspect.signature(base_cls.__init__).parameters) + ("prior", "binning_options")
    return dataclasses.replace(entry, cls=PosteriorBinned, bases=[base],
                               sweep=("n_prompts", "mean_budget", "lower", "upper", "seed", "n_bins", *flat),
                               names=words)


LEARNERS.update({f"controller:{name}[posterior]": _posterior_binned_entry(name) for name in ("rollout-gdro", "sqrt-law")})


@dataclass
class Record:
    """Outcome of one call of the sweep."""

    target: str  # "allocate" or "Exp3P.update" or "Exp3P()"
    arg: str
    value: str
    variant: str
    category: str  # "ok", "rejected", or a failure category
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.category not in ("ok", "rejected")


FAILURE_CATEGORIES = (
    "crash",  # an exception other than ValueError/TypeError
    "unnamed",  # ValueError/TypeError whose message names no parameter
    "nonfinite",  # inf/NaN reported beside success=True (or with no success flag)
    "state_changed",  # a rejected call changed the learner's state
    "state_nonfinite",  # an accepted call left inf/NaN in the learner's state
    "stuck",  # after an accepted extreme update the learner rejects an ordinary one
)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _variants(base: Any, value: Any) -> list[tuple[str, Any]]:
    """Ways to put ``value`` into the argument whose valid value is ``base``."""
    if isinstance(base, np.ndarray) and base.ndim >= 1 and base.size:
        out = []
        for how in ARRAY_VARIANTS:
            arr = base.astype(object).copy()
            flat = arr.reshape(-1)
            if how == "fill":
                flat[:] = value
            elif how == "first":
                flat[0] = value
            elif how == "alt_sign":
                flat[0::2] = value
                flat[1::2] = -value
            else:
                flat[0::2] = value
                flat[1::2] = 0
            try:
                # keep the natural NumPy dtype a user would get from a list of these values
                cand = np.array(arr.tolist())
            except (OverflowError, ValueError):
                cand = arr
            out.append((how, cand))
        return out
    return [("scalar", value)]


def _leaves(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every reported number of a result, with a path (dataclass fields, tuples, arrays)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = []
        for f in dataclasses.fields(obj):
            out += _leaves(getattr(obj, f.name), f"{path}.{f.name}" if path else f.name)
        return out
    if isinstance(obj, (tuple, list)):
        out = []
        for i, v in enumerate(obj):
            out += _leaves(v, f"{path}[{i}]")
        return out
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and obj.size:
            bad = ~np.isfinite(obj)
            if bad.any():
                i = int(np.flatnonzero(bad.reshape(-1))[0])
                return [(f"{path}[{i}]", obj.reshape(-1)[i])]
        return []
    if isinstance(obj, (float, np.floating)) and not isinstance(obj, bool):
        return [(path, obj)]
    return []


def _nonfinite(result: Any, kwargs: dict, allow: Allow) -> str | None:
    """A description of the first unexplained inf/NaN of ``result`` (None if none)."""
    if getattr(result, "success", True) is False:
        msg = getattr(result, "message", "")
        return None if isinstance(msg, str) and msg else "success=False without a message"
    for path, v in _leaves(result):
        if not math.isfinite(float(v)) and not allow(kwargs, path, v):
            return f"{path}={v!r}"
    return None


def _param_words(*fns: Callable[..., Any]) -> set[str]:
    words = set()
    for fn in fns:
        try:
            words |= set(inspect.signature(fn).parameters) - {"self", "kwargs", "args"}
        except (TypeError, ValueError):
            pass
    return words


def _names_parameter(msg: str, words: set[str]) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(w)}(?![A-Za-z0-9_])", msg) for w in words)


def _classify_exception(exc: BaseException, words: set[str]) -> tuple[str, str]:
    if not isinstance(exc, (ValueError, TypeError)):
        return "crash", f"{type(exc).__name__}: {str(exc)[:160]}"
    if not _names_parameter(str(exc), words):
        return "unnamed", f"{type(exc).__name__}: {str(exc)[:160]}"
    return "rejected", ""


def _call(fn: Callable[..., Any], kwargs: dict) -> tuple[Any, BaseException | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                return fn(**kwargs), None
            except Exception as exc:  # noqa: BLE001 - the sweep classifies every exception
                return None, exc


def sweep_function(name: str, values: list[Any] | None = None) -> list[Record]:
    """Single-argument substitutions for one entry of :data:`FUNCTIONS`."""
    entry = FUNCTIONS[name]
    words = _param_words(entry.fn) | set(entry.names)
    records = []
    for base in entry.bases:
        for arg in entry.sweep:
            for value in values or entry.values or SCALARS:
                for how, v in _variants(base[arg], value):
                    kwargs = dict(base, **{arg: v})
                    result, exc = _call(entry.fn, kwargs)
                    if exc is not None:
                        cat, detail = _classify_exception(exc, words)
                    else:
                        bad = _nonfinite(result, kwargs, entry.allow)
                        cat, detail = ("nonfinite", bad) if bad else ("ok", "")
                    records.append(Record(name, arg, _short(value), how, cat, detail))
    return records


# -- learners ----------------------------------------------------------------------------------


def _state(obj: Any) -> Any:
    """A deep, comparable snapshot of a learner's state (generators by their bit state)."""
    if isinstance(obj, np.random.Generator):
        return ("rng", copy.deepcopy(obj.bit_generator.state))
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.copy())
    if isinstance(obj, dict):
        return {k: _state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, deque)):
        return (type(obj).__name__, [_state(v) for v in obj])
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.split(".")[0] in ("bandits", "solvers"):
        return ("obj", type(obj).__name__, _state(vars(obj)))
    return obj


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and a and a[0] == "array":
        return isinstance(b, tuple) and b[:3] == a[:3] and np.array_equal(a[3], b[3], equal_nan=True)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, type(a)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def _state_nonfinite(obj: Any, allow: Callable[[str, Any], bool], path: str = "") -> str | None:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and obj.size and not np.all(np.isfinite(obj)):
            v = obj.reshape(-1)[np.flatnonzero(~np.isfinite(obj.reshape(-1)))[0]]
            return None if allow(path, v) else f"{path}={v!r}"
        return None
    if isinstance(obj, (float, np.floating)):
        return None if math.isfinite(obj) or allow(path, obj) else f"{path}={obj!r}"
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad = _state_nonfinite(v, allow, f"{path}.{k}" if path else str(k))
            if bad:
                return bad
        return None
    if isinstance(obj, (list, tuple, deque)):
        for i, v in enumerate(obj):
            if isinstance(v, (float, np.floating, np.ndarray, dict, list, tuple)):
                bad = _state_nonfinite(v, allow, f"{path}[{i}]")
                if bad:
                    return bad
        return None
    if hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in ("bandits", "solvers"):
        return _state_nonfinite(vars(obj), allow, path)
    return None


def _construct(spec: Learner, kwargs: dict) -> Any:
    return spec.cls(**kwargs)


def _warm(spec: Learner, learner: Any) -> BaseException | None:
    if callable(spec.warm):
        _, exc = _call(spec.warm, {"learner": learner})
        return exc
    for meth, kw in spec.warm:
        _, exc = _call(getattr(learner, meth), kw)
        if exc is not None:
            return exc
    return None


def _invoke(learner: Any, name: str, kwargs: dict | None) -> tuple[Any, BaseException | None]:
    if kwargs is None:  # a property
        with np.errstate(all="ignore"):
            try:
                return getattr(learner, name), None
            except Exception as exc:  # noqa: BLE001
                return None, exc
    return _call(getattr(learner, name), kwargs)


def sweep_learner(name: str, values: list[Any] | None = None) -> list[Record]:
    """Constructor and method substitutions for one entry of :data:`LEARNERS`."""
    spec = LEARNERS[name]
    ctor_words = _param_words(spec.cls) | set(spec.names)
    records: list[Record] = []
    vals = values or spec.values or SCALARS
    # constructor: accepted hyperparameters must give a finite learner that accepts its warm-up
    for base in spec.bases:
        for arg in spec.sweep:
            for value in vals:
                for how, v in _variants(base[arg], value):
                    kwargs = dict(base, **{arg: v})
                    learner, exc = _call(spec.cls, kwargs)
                    target = f"{name}()"
                    if exc is not None:
                        cat, detail = _classify_exception(exc, ctor_words)
                    else:
                        bad = _state_nonfinite(learner, spec.allow_state)
                        if bad:
                            cat, detail = "state_nonfinite", bad
                        else:
                            exc = _warm(spec, learner)
                            if exc is not None:
                                cat, detail = "stuck", f"warm-up update rejected: {type(exc).__name__}: {str(exc)[:120]}"
                            else:
                                cat, detail = "ok", ""
                    records.append(Record(target, arg, _short(value), how, cat, detail))
    # methods, on a warmed learner of each base
    for base in spec.bases:
        proto = _construct(spec, base)
        exc = _warm(spec, proto)
        if exc is not None:
            raise AssertionError(f"{name}: the warm-up of the table fails: {exc!r}")
        for mname, m in spec.methods.items():
            words = ctor_words | _param_words(getattr(spec.cls, mname)) if m.bases is not None else ctor_words
            target = f"{name}.{mname}"
            if m.bases is None or not m.sweep:
                learner = copy.deepcopy(proto)
                for kw in m.bases or [None]:
                    result, exc = _invoke(learner, mname, kw)
                    if exc is not None:
                        cat, detail = "crash", f"valid call raised {exc!r}"
                    else:
                        bad = _nonfinite(result, kw or {}, m.allow)
                        cat, detail = ("nonfinite", bad) if bad else ("ok", "")
                    records.append(Record(target, "-", "-", "base", cat, detail))
                continue
            for mbase in m.bases:
                for arg in m.sweep:
                    for value in vals:
                        for how, v in _variants(mbase[arg], value):
                            kwargs = dict(mbase, **{arg: v})
                            learner = copy.deepcopy(proto)
                            before = _state(learner)
                            result, exc = _call(getattr(learner, mname), kwargs)
                            if exc is not None:
                                cat, detail = _classify_exception(exc, words)
                                if not _same(before, _state(learner)):
                                    cat, detail = "state_changed", f"after {type(exc).__name__}: {str(exc)[:120]}"
                            else:
                                cat, detail = _after_accept(spec, learner, mname, m, kwargs, result)
                            records.append(Record(target, arg, _short(value), how, cat, detail))
    return records


def _after_accept(spec: Learner, learner: Any, mname: str, m: Method, kwargs: dict, result: Any) -> tuple[str, str]:
    bad = _nonfinite(result, kwargs, m.allow)
    if bad:
        return "nonfinite", bad
    bad = _state_nonfinite(learner, spec.allow_state)
    if bad:
        return "state_nonfinite", bad
    if not m.update:
        return "ok", ""
    # an accepted extreme update, repeated: each repetition is accepted with a finite state or
    # rejected with the state unchanged; then the learner still takes its ordinary updates
    for _ in range(12):
        before = _state(learner)
        _, exc = _call(getattr(learner, mname), kwargs)
        if exc is not None:
            if not _same(before, _state(learner)):
                return "state_changed", f"repeat rejected and changed the state: {exc!r}"[:160]
        else:
            bad = _state_nonfinite(learner, spec.allow_state)
            if bad:
                return "state_nonfinite", f"after repeats: {bad}"
    exc = _warm(spec, learner)
    if exc is not None:
        return "stuck", f"ordinary update rejected after extreme ones: {type(exc).__name__}: {str(exc)[:120]}"
    for qname, q in spec.methods.items():
        if q.update:
            continue
        for kw in q.bases or [None]:
            res, exc = _invoke(learner, qname, kw)
            if exc is not None:
                return "stuck", f"{qname} raised after extreme updates: {exc!r}"[:160]
            bad = _nonfinite(res, kw or {}, q.allow)
            if bad:
                return "nonfinite", f"{qname} after extreme updates: {bad}"
    return "ok", ""


def sweep_all() -> list[Record]:
    """Every record of the single-argument sweep (functions and learners)."""
    out = []
    for name in FUNCTIONS:
        out += sweep_function(name)
    for name in LEARNERS:
        out += sweep_learner(name)
    return out


def _report(records: list[Record]) -> str:
    failed = [r for r in records if r.failed]
    lines = [f"{len(failed)} of {len(records)} calls violate the contract:"]
    for r in failed[:40]:
        lines.append(f"  {r.target}({r.arg}={r.value} [{r.variant}]): {r.category}: {r.detail}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


def test_every_public_name_has_an_entry():
    """Every name in ``solvers.__all__`` and ``bandits.__all__`` is swept or listed with a reason
    (a new export fails here until it gets a table entry), every public method of a learner has
    an entry, and the table names nothing that does not exist."""
    exported = {n: getattr(m, n) for m in (solvers, bandits) for n in m.__all__}
    exported |= {f"controller:{n}": c for n, c in CONTROLLERS.items()}  # every registered controller
    missing = sorted(set(exported) - set(FUNCTIONS) - set(LEARNERS) - set(NOT_SWEPT))
    assert not missing, f"public names without an extreme-input entry: {missing}"
    variants = {n.split("[")[0] for n in LEARNERS}  # "controller:<name>[posterior]": a variant of <name>
    stale = sorted((set(FUNCTIONS) | variants | set(NOT_SWEPT)) - set(exported))
    assert not stale, f"table entries for names that are not exported: {stale}"
    for name, spec in LEARNERS.items():
        skip = set(METHODS_NOT_SWEPT) | (set(_CTRL_METHODS_NOT_SWEPT) if name.startswith("controller:") else set())
        methods = _public_methods(spec.cls) - skip
        assert methods == set(spec.methods), (name, sorted(methods ^ set(spec.methods)))
    for name, entry in FUNCTIONS.items():
        sig = inspect.signature(entry.fn).parameters
        params = set(sig)
        open_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.values())  # make_controller(**options)
        for base in entry.bases:
            assert (open_kwargs or set(base) <= params) and set(entry.sweep) <= set(base), name


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_extreme_inputs(name):
    """Contract of every public function under single extreme arguments (module docstring):
    finite results beside ``success=True``, else ``success=False`` with a message, else
    ValueError/TypeError naming a parameter; no other exception type."""
    records = sweep_function(name)
    assert not any(r.failed for r in records), _report(records)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_extreme_inputs(name):
    """Contract of every learner (module docstring): constructor and methods as for functions;
    a rejected call leaves the state unchanged (random generator included); an accepted extreme
    update leaves a finite state, survives repetition, and the learner still accepts ordinary
    updates and answers every query with finite numbers."""
    records = sweep_learner(name)
    assert not any(r.failed for r in records), _report(records)


_MIX_TARGETS = sorted(FUNCTIONS)


@settings(max_examples=400)
@given(
    name=st.sampled_from(_MIX_TARGETS),
    base_index=st.integers(0, 7),
    picks=st.lists(st.tuples(st.integers(0, 15), st.sampled_from(SCALARS), st.sampled_from(ARRAY_VARIANTS)),
                   min_size=2, max_size=4),
)
def test_mixed_extreme_arguments(name, base_index, picks):
    """The same contract with several arguments extreme at once (e.g. a huge budget *and*
    subnormal ``a``; rewards of 1e308 *and* a tiny temperature): every call returns finite
    numbers beside ``success=True``, or ``success=False`` with a message, or raises
    ValueError/TypeError naming a parameter."""
    entry = FUNCTIONS[name]
    base = entry.bases[base_index % len(entry.bases)]
    kwargs = dict(base)
    for arg_index, value, how in picks:
        if entry.values is not None and value not in entry.values:
            value = entry.values[arg_index % len(entry.values)]
        arg = entry.sweep[arg_index % len(entry.sweep)]
        options = dict(_variants(base[arg], value))
        kwargs[arg] = options.get(how, next(iter(options.values())))
    result, exc = _call(entry.fn, kwargs)
    if exc is not None:
        cat, detail = _classify_exception(exc, _param_words(entry.fn) | set(entry.names))
        assert cat == "rejected", detail
    else:
        bad = _nonfinite(result, kwargs, entry.allow)
        assert bad is None, bad


_MIX_METHODS = sorted(
    (learner, method) for learner, spec in LEARNERS.items() for method, m in spec.methods.items() if m.sweep
)


@settings(max_examples=300)
@given(
    target=st.sampled_from(_MIX_METHODS),
    base_index=st.integers(0, 7),
    picks=st.lists(st.tuples(st.integers(0, 15), st.sampled_from(SCALARS), st.sampled_from(ARRAY_VARIANTS)),
                   min_size=2, max_size=3),
)
def test_mixed_extreme_learner_calls(target, base_index, picks):
    """Learner methods with several extreme arguments at once: the call is accepted with finite
    outputs and a finite state, or rejected with ValueError/TypeError naming a parameter and the
    state (random generator included) unchanged; either way the learner then accepts an
    ordinary update (it never gets stuck)."""
    name, mname = target
    spec = LEARNERS[name]
    m = spec.methods[mname]
    learner = _construct(spec, spec.bases[base_index % len(spec.bases)])
    assert _warm(spec, learner) is None
    base = m.bases[base_index % len(m.bases)]
    kwargs = dict(base)
    for arg_index, value, how in picks:
        arg = m.sweep[arg_index % len(m.sweep)]
        options = dict(_variants(base[arg], value))
        kwargs[arg] = options.get(how, next(iter(options.values())))
    before = _state(learner)
    result, exc = _call(getattr(learner, mname), kwargs)
    if exc is not None:
        cat, detail = _classify_exception(exc, _param_words(spec.cls, getattr(spec.cls, mname)) | set(spec.names))
        assert cat == "rejected", detail
        assert _same(before, _state(learner)), f"rejected call changed the state: {exc!r}"
    else:
        cat, detail = _after_accept(spec, learner, mname, m, kwargs, result)
        assert cat == "ok", detail
