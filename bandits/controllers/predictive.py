"""Predictor-driven rollout allocation: VIP and the heuristics it is compared with.

Every controller here predicts each prompt's success probability ``p_hat`` (VIP Sec. 5.1: a GP
over prompt embeddings by default; ``oracle`` uses the true ``p``) and turns it into integer
rollout counts under the exact budget ``sum n = M * mean_budget``, ``lower <= n <= upper``:

==================== ==========================================================================
``vip``              exact integer minimiser of the batch gradient variance, VIP eq. 5 with
                     ``a_q = 4 p(1-p)`` (Prop 4.2 / 4.3; :func:`solvers.allocate`, integer)
``vip-paper``        VIP as published: continuous optimum (Thm 5.1 / 5.2) + rounding (Alg. 2)
``oracle``           ``vip``'s rule with the true success probabilities (simulation only)
``inverse-accuracy`` VIP App. C.1 ablation: ``n`` proportional to ``1 - acc + eps``, boxed
``inverse-variance`` VIP App. C.1 ablation: ``n`` proportional to ``1 / (sigma^2 + eps)``, boxed
``skip-saturated``   practitioners' filter: ``lower`` for predicted all-0/all-1 prompts, rest even
==================== ==========================================================================

What the predictor receives (VIP Sec. 5.1, Alg. 1 lines 2-4): for every prompt of the batch,
``successes = sum_j r_j`` (rewards in [0, 1], so partial credit counts fractionally) and
``trials = n``; the predictor turns ``successes / trials`` into its observation (the GP:
``logit(clip(s / n, eps, 1 - eps))``, VIP's ``(R_bar + 1) / 2`` with rewards mapped from
{-1, +1} to {0, 1}). Repeated prompt ids in a batch are pooled by the GP (one observation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from solvers import allocate, round_greedy
from solvers._validation import as_float_array, check_finite_scalar

from ..baseline_predictors import (
    BetaBinomialPredictor,
    MovingAveragePredictor,
    RidgePredictor,
)
from ..gp_predictor import GPSuccessPredictor
from .base import Controller, Observation, StepPlan, even_split

__all__ = [
    "PREDICTORS",
    "InverseAccuracyController",
    "InverseVarianceController",
    "OracleController",
    "SkipSaturatedController",
    "VIPController",
    "VIPPaperController",
]

PREDICTORS = ("gp", "ridge", "moving-average", "beta-binomial")
"""Success predictors a predictive controller can use (``predictor=``); ``gp`` and ``ridge``
need ``embeddings=``."""

_VIP_COSTS = {"rloo": 2, "drgrpo": 3}  # cost -> smallest admissible lower bound
_FLUSH = 1e-250  # relative a_q below this is treated as 0 (allocation is scale invariant)


def make_predictor(kind: Any, n_prompts: int, embeddings: Any, options: Any, rng: np.random.Generator,
                   controller: str) -> Any:
    """Build the success predictor of a controller (see :data:`PREDICTORS`)."""
    if not isinstance(kind, str):
        raise TypeError(f"predictor must be a string, one of {list(PREDICTORS)}, got {type(kind).__name__}")
    if kind not in PREDICTORS:
        raise ValueError(f"unknown predictor {kind!r}; valid predictors: {list(PREDICTORS)}")
    opts = {} if options is None else options
    if not isinstance(opts, dict):
        raise TypeError(f"predictor_options must be a dict of keyword arguments, got {type(opts).__name__}")
    if kind in ("gp", "ridge"):
        if embeddings is None:
            raise ValueError(f"controller {controller!r} with predictor={kind!r} needs embeddings= "
                             f"(an array of shape (n_prompts, d) = ({n_prompts}, d))")
        shape = np.shape(embeddings)
        if len(shape) != 2 or shape[0] != n_prompts:
            raise ValueError(f"embeddings must have shape (n_prompts, d) = ({n_prompts}, d), got {shape}")
        if kind == "gp":
            return GPSuccessPredictor(embeddings, seed=rng, **opts)
        return RidgePredictor(embeddings, **opts)
    if embeddings is not None:
        raise ValueError(f"embeddings= is only used by the predictors 'gp' and 'ridge', not {kind!r}")
    if kind == "moving-average":
        return MovingAveragePredictor(n_prompts, **opts)
    return BetaBinomialPredictor(n_prompts, **opts)


def variance_scale(p: np.ndarray) -> np.ndarray:
    """VIP's ``a_q = 4 sigma_Z^2 p_q (1 - p_q)`` (Prop 4.2 / 4.3) with ``sigma_Z^2 = 1``.

    VIP Sec. 6 assumes the projected-gradient variance ``sigma_Z^2`` equal across prompts (and
    tests it, App. B.3); it is then a common factor that does not change the allocation. The
    result is divided by its maximum and entries below ``1e-250`` of it set to 0 (solved or
    hopeless prompts): the allocation is invariant to the scale of ``a``, and this keeps
    subnormal values away from the solver.
    """
    a = 4.0 * p * (1.0 - p)
    top = float(a.max())
    if top > 0.0:
        a = a / top
        a[a < _FLUSH] = 0.0
    return a


def _checked(result: Any, what: str) -> Any:
    if not result.success:  # certified solvers: a failure is reported, never used silently
        raise RuntimeError(f"{what} failed: {result.message}")
    return result


def exact_allocation(a: np.ndarray, total: int, lower: int, upper: float, cost: str) -> np.ndarray:
    """Exact integer minimiser of ``sum_q f(a_q, n_q)`` (VIP eq. 5), certified."""
    res = _checked(allocate(a, total, lower, upper, cost=cost, integer=True), "allocate(integer=True)")
    return np.asarray(res.n, dtype=np.int64)


def paper_allocation(a: np.ndarray, total: int, lower: int, upper: float, cost: str) -> np.ndarray:
    """VIP as published: continuous optimum (Thm 5.1/5.2) then heuristic rounding (Alg. 2)."""
    cont = _checked(allocate(a, total, lower, upper, cost=cost), "allocate")
    return np.asarray(round_greedy(cont.n, a, total, lower, upper, cost=cost).n, dtype=np.int64)


class _PredictiveController(Controller):
    """Shared parts: the success predictor (a component) and what it observes.

    Default predictor: the GP of VIP Sec. 5.1 with the *binomial* observation noise
    ``R_qq = 1 / (n_q p_q (1 - p_q))`` (``predictor_options={"noise": "binomial"}``), not the
    paper's noise-free conditioning (``noise=0``, kept by ``vip-paper``). With ``noise=0`` Alg. 1
    sets every observed prompt's latent mean to the clipped logit of a few-rollout estimate and
    interpolates those noisy values exactly through a nearly singular ``K_BB``; on the toy ground
    truth of ``tests/test_controllers.py`` (200 prompts, 4-d embeddings, 6 rollouts) its mean
    absolute error was 0.29 -- no better than predicting 0.5 -- and VIP's allocation from it had
    a higher RLOO variance than uniform (ratio 1.3), while the binomial-noise GP reached MAE 0.06
    and ratio 0.87. Pass ``predictor_options={"noise": 0.0}`` for the paper's setting.
    """

    default_predictor_options: ClassVar[dict] = {"gp": {"noise": "binomial"}}

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 embeddings: Any = None, predictor: str = "gp", predictor_options: Any = None) -> None:
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        if predictor_options is not None and not isinstance(predictor_options, dict):
            raise TypeError(f"predictor_options must be a dict of keyword arguments, got "
                            f"{type(predictor_options).__name__}")
        if predictor_options and "seed" in predictor_options:
            raise TypeError("predictor_options must not set 'seed': the predictor's randomness comes from the "
                            "controller's seed")
        defaults = self.default_predictor_options.get(predictor, {}) if isinstance(predictor, str) else {}
        self.predictor_name = predictor
        self.predictor_options = {**defaults, **(predictor_options or {})}
        self.predictor = make_predictor(predictor, self.n_prompts, embeddings, self.predictor_options,
                                        self._spawn(), self.name)

    def _options(self) -> dict:
        return {"predictor": self.predictor_name, "predictor_options": self.predictor_options}

    def _components(self) -> dict:
        return {"predictor": self.predictor}

    def _observe(self, obs: Observation) -> None:
        # VIP Alg. 1 lines 2-4: successes (sum of rewards in [0, 1]) out of n rollouts
        self.predictor.update(obs.ids, obs.reward_sums, obs.counts)

    def predict(self, prompt_ids: Any) -> np.ndarray:
        """The success probabilities the next :meth:`plan` would use, float64 ``(M,)``."""
        return self._p_hat(self._ids_iv(prompt_ids))

    def _p_hat(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.predictor.predict(ids), dtype=np.float64)


class VIPController(_PredictiveController):
    """``vip``: GP-predicted success probabilities + the exact integer variance-optimal allocation.

    Allocation rule (VIP Sec. 5.2, eq. 5 with Prop 4.2 / 4.3): with ``p_hat`` from the predictor
    and ``a_q = 4 p_hat_q (1 - p_hat_q)`` (:func:`variance_scale`), the counts are an exact
    integer minimiser of ``sum_q f(a_q, n_q)`` subject to ``sum n = M * mean_budget`` and
    ``lower <= n <= upper``, where ``f(a, n) = a / (n - 1)`` (``cost="rloo"``, Prop 4.3) or
    ``a (n - 1) / n^2`` (``cost="drgrpo"``, Prop 4.2), solved and certified by
    :func:`solvers.allocate` with ``integer=True``. VIP itself rounds a continuous solution
    heuristically (Alg. 2); that is ``vip-paper``. Multipliers are 1.

    Degenerate cases: prompts never observed get the predictor's prior (``p = 0.5`` for the GP,
    the largest ``a``); all ``p_hat`` near 0/1 (every ``a ~ 0``) is solved like any other input --
    with ``a = 0`` everywhere every allocation is optimal and :func:`solvers.allocate` spreads the
    budget evenly; repeated prompt ids are separate entries with equal ``a`` (near-equal counts).

    Parameters
    ----------
    embeddings : array_like, shape (n_prompts, d)
        Prompt embeddings for the GP (or ridge) predictor; constructor input, not state.
    cost : {"rloo", "drgrpo"}, default "rloo"
        Gradient estimator whose variance is minimised. ``rloo`` needs ``lower >= 2`` (the
        variance ``a / (n - 1)`` has a pole at ``n = 1``), ``drgrpo`` needs ``lower >= 3``
        (``a (n - 1) / n^2`` is convex only for ``n >= 3``; VIP Sec. 5.2 requires ``L >= 3``).
    predictor : {"gp", "ridge", "moving-average", "beta-binomial"}, default "gp"
        Success predictor (VIP Sec. 5.1 uses the GP; ``ridge`` is VIP's ablation).
    predictor_options : dict, optional
        Keyword arguments for the predictor, merged over the default ``{"noise": "binomial"}``
        for the GP (``{"noise": 0.0}`` is VIP's noise-free setting).
    """

    name = "vip"
    min_lower = 2  # the default cost "rloo"; 3 with cost="drgrpo"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 embeddings: Any = None, cost: str = "rloo", predictor: str = "gp",
                 predictor_options: Any = None) -> None:
        self.cost = _vip_cost_iv(cost)
        self.min_lower = _VIP_COSTS[self.cost]
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed,
                         embeddings=embeddings, predictor=predictor, predictor_options=predictor_options)

    def _lower_reason(self) -> str:
        return (" (cost 'rloo': the RLOO variance a/(n-1) has a pole at n = 1)" if self.cost == "rloo" else
                " (cost 'drgrpo': a(n-1)/n^2 is convex only for n >= 3, VIP Sec. 5.2)")

    def _options(self) -> dict:
        return {**super()._options(), "cost": self.cost}

    def _allocate(self, a: np.ndarray, total: int) -> np.ndarray:
        return exact_allocation(a, total, self.lower, self.upper, self.cost)

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        p = self._p_hat(ids)
        counts = self._allocate(variance_scale(p), total)
        return StepPlan(counts, np.ones(ids.size), None, p)


class VIPPaperController(VIPController):
    """``vip-paper``: VIP exactly as published -- continuous optimum + Algorithm 2 rounding.

    Allocation rule: the continuous minimiser of VIP eq. 6 (Dr.GRPO, Thm 5.1) or eq. 8 (RLOO,
    Thm 5.2) with ``a_q = 4 p_hat (1 - p_hat)``, then VIP App. D Algorithm 2 (floor, then give
    the remaining units one at a time to the largest ``f(n) - f(n + 1)``;
    :func:`solvers.round_greedy`). The GP predictor defaults to the paper's noise-free
    conditioning (``noise=0``, Alg. 1 with ``R = 0``); ``vip`` defaults to binomial observation
    noise (see ``_PredictiveController``). Otherwise the same options as ``vip``: with equal
    ``predictor_options`` the two differ only in rounding (Alg. 2 is a heuristic, ``vip`` the
    certified integer optimum).
    """

    name = "vip-paper"
    default_predictor_options: ClassVar[dict] = {"gp": {"noise": 0.0}}  # VIP Alg. 1 as written (R = 0)

    def _allocate(self, a: np.ndarray, total: int) -> np.ndarray:
        return paper_allocation(a, total, self.lower, self.upper, self.cost)


class OracleController(Controller):
    """``oracle``: ``vip``'s exact allocation rule with the *true* success probabilities.

    Allocation rule: ``a_q = 4 p_q (1 - p_q)`` with ``p = true_success(prompt_ids)``, then the
    exact integer minimiser of ``sum f(a_q, n_q)`` (as ``vip``). For simulators with known ground
    truth only; it learns nothing (``observe`` only validates). ``true_success`` is constructor
    input, not state: load a checkpoint into an oracle built with the same callable.

    Parameters
    ----------
    true_success : callable
        ``true_success(ids) -> p``, ids an int64 array ``(M,)``, ``p`` the exact success
        probabilities in [0, 1] (shape ``(M,)``).
    cost : {"rloo", "drgrpo"}, default "rloo"
        As for ``vip`` (``lower >= 2`` / ``>= 3``).
    """

    name = "oracle"
    learns_from_rewards = False
    min_lower = 2  # the default cost "rloo"; 3 with cost="drgrpo"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 true_success: Callable[[np.ndarray], Any] | None = None, cost: str = "rloo") -> None:
        if true_success is None:
            raise TypeError("controller 'oracle' needs true_success= (a callable ids -> exact success probabilities)")
        if not callable(true_success):
            raise TypeError(f"true_success must be callable (ids -> p), got {type(true_success).__name__}")
        self.cost = _vip_cost_iv(cost)
        self.min_lower = _VIP_COSTS[self.cost]
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed)
        self.true_success = true_success

    _lower_reason = VIPController._lower_reason

    def _options(self) -> dict:
        return {"cost": self.cost}

    def predict(self, prompt_ids: Any) -> np.ndarray:
        """The true success probabilities, validated, float64 ``(M,)``."""
        return self._p_hat(self._ids_iv(prompt_ids))

    def _p_hat(self, ids: np.ndarray) -> np.ndarray:
        p = as_float_array(self.true_success(ids.copy()), "true_success(ids)", ndim=1)
        if p.shape != ids.shape:
            raise ValueError(f"true_success(ids) must return shape {ids.shape}, got {p.shape}")
        bad = (p < 0.0) | (p > 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"true_success(ids) must return probabilities in [0, 1], got {float(p[i])!r} at index {i}")
        return p

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        p = self._p_hat(ids)
        counts = exact_allocation(variance_scale(p), total, self.lower, self.upper, self.cost)
        return StepPlan(counts, np.ones(ids.size), None, p)

    def _observe(self, obs: Observation) -> None:
        return None


class _ProportionalController(_PredictiveController):
    """VIP App. C.1's heuristics: counts proportional to a weight, box-constrained, rounded.

    VIP App. C.1: "we set target weights ``w_i`` ... and normalize to meet the global budget and
    per-prompt bounds. Both heuristics are implemented via a continuously relaxed, constrained
    optimization that enforces the total-budget and box constraints ... and then map fractional
    solutions to integers using the rounding heuristic." Our reading, exactly: the continuous
    counts are ``n_i = clip(c w_i, lower, upper)`` with the scale ``c`` that meets the budget
    (proportional to ``w`` wherever no bound binds). That is the unique minimiser of
    ``sum_i w_i^2 / n_i`` under the same constraints (KKT: ``w_i^2 / n_i^2 = lambda``), so it is
    solved exactly by :func:`solvers.allocate` with ``cost="inverse"`` and ``a = w^2``, and
    "the rounding heuristic" is VIP's Algorithm 2 (:func:`solvers.round_greedy`) with the same
    objective ``f_i(n) = w_i^2 / n``. ``acc`` / ``sigma^2`` come from the success predictor (the
    paper's ablations are "RLOO+GP+INVERSE ACC/VAR": GP predictions).

    Parameters
    ----------
    epsilon : float > 0, default 0.01
        The ``epsilon`` of the weights (VIP gives no value).
    """

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 embeddings: Any = None, epsilon: float = 0.01, predictor: str = "gp",
                 predictor_options: Any = None) -> None:
        self.epsilon = check_finite_scalar(epsilon, "epsilon", lo=0.0, lo_open=True)
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed,
                         embeddings=embeddings, predictor=predictor, predictor_options=predictor_options)

    def _options(self) -> dict:
        return {**super()._options(), "epsilon": self.epsilon}

    def _weights(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        p = self._p_hat(ids)
        w = self._weights(p)
        a = (w / w.max()) ** 2  # scale invariant; keeps a in (0, 1]
        counts = paper_allocation(a, total, self.lower, self.upper, "inverse")
        return StepPlan(counts, np.ones(ids.size), None, p)


class InverseAccuracyController(_ProportionalController):
    """``inverse-accuracy`` (VIP App. C.1): more rollouts to prompts with lower accuracy.

    Allocation rule: weights ``w_i = 1 - acc_i + epsilon`` with ``acc_i = p_hat_i`` (the
    predictor's success probability), counts ``n_i = clip(c w_i, lower, upper)`` with ``c``
    meeting the budget, rounded by VIP Alg. 2 (see the base class for why this is exactly what
    App. C.1 describes).
    """

    name = "inverse-accuracy"

    def _weights(self, p: np.ndarray) -> np.ndarray:
        return 1.0 - p + self.epsilon


class InverseVarianceController(_ProportionalController):
    """``inverse-variance`` (VIP App. C.1): more rollouts to prompts whose answers vary *less*.

    Allocation rule: weights ``w_i = 1 / (sigma_i^2 + epsilon)`` with ``sigma_i^2 = 4 p_hat_i
    (1 - p_hat_i)``, the variance of the reward ``R in {-1, +1}`` (VIP's convention, Sec. 3) under
    the predicted success probability; counts ``n_i = clip(c w_i, lower, upper)`` with ``c``
    meeting the budget, rounded by VIP Alg. 2. As the paper states it, this favours nearly
    solved / nearly hopeless prompts -- the opposite of ``vip``; it is the paper's ablation, kept
    as written.
    """

    name = "inverse-variance"

    def _weights(self, p: np.ndarray) -> np.ndarray:
        return 1.0 / (4.0 * p * (1.0 - p) + self.epsilon)


class SkipSaturatedController(_PredictiveController):
    """``skip-saturated``: no extra rollouts for prompts predicted all-0 or all-1.

    A group whose rewards are all equal has zero GRPO/RLOO advantages -- no learning signal --
    which is why practitioners filter such prompts (e.g. DAPO's dynamic sampling). Prompt ``i``
    is *predicted saturated* when, under the predicted success probability, a group of
    ``mean_budget`` rollouts is more likely than not to be all-equal:
    ``p_hat^nbar + (1 - p_hat)^nbar >= saturation_prob`` (default 1/2). With the GP in VIP's
    setting, a prompt observed all-0 (all-1) has ``p_hat = eps`` (``1 - eps``) = 0.01 (0.99):
    saturated for ``nbar >= 2``; an unseen prompt (``p_hat = 0.5``) is not.

    Allocation rule: saturated prompts get ``lower``; the remaining budget is spread evenly over
    the others (``floor`` or ``floor + 1``, the extra units to prompts drawn uniformly). If that
    would exceed ``upper``, the others get ``upper`` and the excess is spread evenly over the
    saturated prompts; if every prompt is saturated, all are spread evenly (``uniform``).

    Parameters
    ----------
    saturation_prob : float in (0, 1], default 0.5
        Threshold on the predicted probability of an all-equal group.
    """

    name = "skip-saturated"

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None,
                 embeddings: Any = None, saturation_prob: float = 0.5, predictor: str = "gp",
                 predictor_options: Any = None) -> None:
        self.saturation_prob = check_finite_scalar(saturation_prob, "saturation_prob", lo=0.0, hi=1.0,
                                                   lo_open=True)
        super().__init__(n_prompts=n_prompts, mean_budget=mean_budget, lower=lower, upper=upper, seed=seed,
                         embeddings=embeddings, predictor=predictor, predictor_options=predictor_options)

    def _options(self) -> dict:
        return {**super()._options(), "saturation_prob": self.saturation_prob}

    def saturated(self, p_hat: np.ndarray) -> np.ndarray:
        """Whether each prompt is predicted all-0/all-1 (see the class docstring)."""
        nbar = float(self.mean_budget)
        p = as_float_array(p_hat, "p_hat", ndim=(0, 1))
        bad = (p < 0.0) | (p > 1.0)
        if bad.any():
            raise ValueError(f"p_hat must be probabilities in [0, 1], got {float(p[bad].flat[0])!r}")
        return p**nbar + (1.0 - p) ** nbar >= self.saturation_prob

    def _plan(self, ids: np.ndarray, total: int) -> StepPlan:
        p = self._p_hat(ids)
        sat = self.saturated(p)
        m_sat = int(sat.sum())
        m_rest = ids.size - m_sat
        counts = np.empty(ids.size, dtype=np.int64)
        if m_rest == 0 or m_sat == 0:
            counts[:] = even_split(total, ids.size, self._rng)
        else:
            rest_budget = total - m_sat * self.lower
            if rest_budget <= m_rest * self.upper:
                counts[~sat] = even_split(rest_budget, m_rest, self._rng)
                counts[sat] = self.lower
            else:
                counts[~sat] = int(self.upper)
                counts[sat] = even_split(total - m_rest * int(self.upper), m_sat, self._rng)
        return StepPlan(counts, np.ones(ids.size), None, p)


def _vip_cost_iv(cost: Any) -> str:
    if not isinstance(cost, str):
        raise TypeError(f"cost must be a string, one of {sorted(_VIP_COSTS)}, got {type(cost).__name__}")
    if cost not in _VIP_COSTS:
        raise ValueError(f"unknown cost {cost!r}; valid costs: {sorted(_VIP_COSTS)}")
    return cost

