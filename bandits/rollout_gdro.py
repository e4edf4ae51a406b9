"""Rollout-GDRO: the compute adversary of GDRO (Sec. 3.3, eq. 18-21; App. C.2.2; App. F.2.3-F.2.4).

Two controllers choose a rollout count ("arm") ``n`` in a discrete set ``N = {n_min, ..., n_max}``
for every difficulty bin under the mean-rollout budget ``sum_b qhat_b n_b = n_bar`` (eq. 36):

* :class:`RolloutGDRO` -- the implemented, bandit-feedback controller: per-bin exponential weights
  over arms driven by the augmented arm loss ``L_b(n) = -J_b(n) + mu (n - n_bar)`` (eq. 37), dual
  ascent on the shadow price ``mu`` (eq. 38), and every step an *exact* selection that meets the
  mean budget over the realised batch (App. C.2.2 "budget matching", :func:`solvers.match_budget`).
* :class:`PrimalDualRolloutGDRO` -- the full-information primal-dual dynamics of eq. 64-65 (entropic
  mirror descent per bin + projected dual ascent) with the averaged iterates of Thm. F.22, plus the
  saddle gap (eq. 66) and its bounds (eq. 66-68), for the idealised fixed-cost-landscape analysis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers import BudgetMatchResult, match_budget
from solvers._validation import (
    MAX_SIZE,
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
    check_same_shape,
)

from ._state import StateReader, new_state, rng_state
from .prompt_gdro import (
    LOG_WEIGHT_FLOOR,
    _bin_ids_iv,
    _normalise_log_weights,
    _share_debiased_ema,
    _values_iv,
)

__all__ = ["RolloutAllocation", "RolloutGDRO", "PrimalDualRolloutGDRO"]


_MAX_ARM = 2**20
"""Largest arm (rollouts per prompt): keeps every budget-matching total and DP table in range."""


def _arms_iv(arms: Any) -> np.ndarray:
    if isinstance(arms, range):
        arms = np.arange(arms.start, arms.stop, arms.step)
    a = as_int_array(arms, "arms", ndim=1, min_size=1)
    bad = a <= 0
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"arms must be positive integers, got {int(a[i])} at index {i}")
    bad = a > _MAX_ARM
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"arms must be <= 2**20 rollouts per prompt, got {int(a[i])} at index {i}")
    if np.unique(a).size != a.size:
        values, cnt = np.unique(a, return_counts=True)
        raise ValueError(f"arms must be distinct, got {int(values[cnt > 1][0])} more than once")
    return np.sort(a)


def _shape_iv(n_bins: Any, arms: np.ndarray) -> int:
    b = check_int_scalar(n_bins, "n_bins", lo=1, hi=MAX_SIZE)
    if b * arms.size > MAX_SIZE:
        raise ValueError(f"n_bins * len(arms) must be <= {MAX_SIZE}, got {b} * {arms.size}")
    return b


def _mean_budget_iv(mean_budget: Any, arms: np.ndarray) -> float:
    return check_finite_scalar(mean_budget, "mean_budget", lo=float(arms[0]), hi=float(arms[-1]))


_ARM_STARTS = ("budget", "uniform")
_ARM_MODELS = ("free", "inverse")


def _budget_start_log_weights(arms: np.ndarray, mean_budget: float) -> np.ndarray:
    r"""Log-probabilities of the maximum-entropy arm distribution whose mean is ``mean_budget``.

    ``p(n) \propto exp(-lam n)`` with ``lam`` chosen so that ``sum_n p(n) n = mean_budget``: the
    least informative distribution over the arms that already meets the mean budget -- GDRO
    Lemma F.19's soft-min solution (eq. 60) for a flat cost ``V_b = 0`` at the price that satisfies
    the budget. ``lam`` is found by bisection (the mean is strictly decreasing in ``lam``) to
    machine precision; ``mean_budget`` at the smallest/largest arm gives a point mass there (the
    other arms at ``LOG_WEIGHT_FLOOR``). Returns float64 ``[K]``, normalised (log-softmax).
    """
    a = arms.astype(np.float64)
    k = a.size
    if k == 1 or mean_budget <= a[0] or mean_budget >= a[-1]:
        out = np.full(k, LOG_WEIGHT_FLOOR)
        out[0 if mean_budget <= a[0] else k - 1] = 0.0
        if k == 1:
            out[0] = 0.0
        return out
    x = (a - mean_budget) / (a[-1] - a[0])  # centred, unit span: lam of order 1..1e3

    def mean_gap(lam: float) -> float:
        z = -lam * x
        w = np.exp(z - z.max())
        return float(w @ x) / float(w.sum())

    lo, hi = -1.0, 1.0
    while mean_gap(lo) < 0.0:  # mean_gap is decreasing in lam; bracket its root
        lo *= 2.0
    while mean_gap(hi) > 0.0:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if mean_gap(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return _normalise_log_weights(-0.5 * (lo + hi) * x)


def _arm_probabilities(log_weights: np.ndarray, exploration: float) -> np.ndarray:
    z = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    z /= z.sum(axis=1, keepdims=True)
    k = log_weights.shape[1]
    return (1.0 - exploration) * z + exploration / k


@dataclass(frozen=True)
class RolloutAllocation:
    """What :meth:`RolloutGDRO.allocate` did on its last call (exposed as ``last_allocation``).

    Attributes
    ----------
    requested_total : float
        ``mean_budget * M`` for the batch of ``M`` prompts.
    total : int
        Rollouts actually allocated, ``sum_i n_i``.
    exact : bool
        ``total == requested_total`` (the mean budget is met exactly).
    match : BudgetMatchResult
        The budget-matching result (per-bin arms, objective, status). ``match.status ==
        ADJUSTED`` when the integer target ``round(requested_total)`` was not reachable and the
        nearest reachable total was used.
    """

    requested_total: float
    total: int
    exact: bool
    match: BudgetMatchResult


class RolloutGDRO:
    r"""Rollout-GDRO: per-bin EXP3P-style arm selection under an exact mean budget (GDRO Sec. 3.3).

    **Per step.** :meth:`allocate` receives the bins of the batch and returns a rollout count per
    prompt (int64) whose mean is exactly ``mean_budget`` whenever that is reachable; after the
    rollouts, :meth:`update` receives the counts used and a per-prompt utility ``J`` (GDRO eq. 35:
    the negative prompt-level GRPO loss, or any utility the caller chooses -- e.g. minus a
    variance proxy, Remark F.25; larger is better).

    **Arm distributions** (App. C.2.2: arm step 0.65, exploration 0.01, arm-score EMA 0.4). Bin
    ``b`` keeps log weights over the ``K`` arms; its distribution is ``p_b = (1 - gamma)
    softmax(log w_b) + gamma / K`` (``arm_probabilities()``, shape ``[n_bins, K]``).

    **Start at the budget** (``arm_start="budget"``, default). Every bin starts from the
    maximum-entropy distribution over the arms whose mean is ``n_bar``
    (``p(n) \propto exp(-lam n)``, GDRO eq. 60 with a flat cost at
    the price that meets the budget), so the proposals meet the budget before anything is learnt
    and the shadow price starts at equilibrium. A uniform start over ``2..12`` has mean 7 against a
    budget of 4: the price then rises for several steps just to pull the proposals down, and the
    cumulative weights lock the first bins observed at the smallest arm. ``arm_start="uniform"``
    keeps that start (the paper does not say where the weights start).

    **Selection (allocate).** With realised counts ``c_b``, the arms are chosen by the exact DP of
    :func:`solvers.match_budget`, minimising ``sum_b c_b cost[b, k_b]`` subject to ``sum_b c_b
    n_{k_b} = mean_budget * M``. The paper only says "exact constrained selection via dynamic
    programming"; we take ``cost[b, k] = -(log p_b(k) + G_bk)`` with i.i.d. standard Gumbel
    ``G_bk`` (``selection="gumbel"``, default). Without the budget constraint the per-bin minimiser
    is then an exact draw from ``p_b`` (Gumbel-max trick), i.e. plain EXP3P sampling; with it the DP
    returns the most likely perturbed joint choice that meets the budget (a "sample projected onto
    the budget"), so exploration is kept and the budget is exact. ``selection="mode"`` drops the
    noise (the most probable budget-feasible joint allocation; deterministic). Bins absent from the
    batch are not allocated anything. The per-prompt counts are ``n_b`` of each prompt's bin.

    **Unreachable budgets.** If ``mean_budget * M`` is not an integer, or the integer is not a
    reachable total ``sum_b c_b n_b``, the DP is solved for the nearest reachable total
    (``match_budget(..., nearest=True)``: the integer target is ``round(mean_budget * M)``,
    Python rounding, i.e. half to even; then the reachable total nearest to it, ties to the
    smaller); ``last_allocation.exact`` is then False and ``last_allocation.match.status`` says
    ``ADJUSTED`` where the integer target was adjusted. With an integer ``mean_budget`` that is one
    of the arms, every batch is reachable (all bins at ``mean_budget``).

    **Learning (update).** For every (bin, arm) pair the utility loss ``-J`` is averaged over the
    prompts that used it (eq. 35), and an EMA with weight ``ema`` on the new value, debiased by the
    realised share of the arm within its bin exactly as in :class:`bandits.PromptGDRO` (the first
    observation sets the score; unplayed arms keep theirs), gives ``arm_scores[b, k]`` -- the
    estimate of ``-J_b(n_k)``. Each bin present in the batch then takes one exponentiated-gradient
    step on the *augmented arm loss* of eq. 37 (in the form of Remark F.25),
    ``L_b(n) = arm_scores[b, n] + mu (n - n_bar)``, ``log w_b <- log w_b - eta L_b``. Arms of the bin
    never played yet are imputed a score from ``arm_model``: ``"free"`` (default; no structure
    assumed) gives them the mean score of its played arms (neutral); ``"inverse"`` declares that the
    utility has the variance-proxy form ``J_b(n) = -c_b / n`` of Remark F.25 / eq. 19 (e.g.
    ``J_i = -s2_i / n_i``) and imputes ``c_hat_b / n`` with ``c_hat_b`` the share-EMA-weighted mean
    of ``n_k * arm_scores[b, k]`` over the played arms -- the known ``1/n`` law instead of a flat
    guess, so an unplayed large arm is valued as the variance reduction it would bring. Bins absent
    from the batch keep their weights and scores (eq. 64 with ``qhat_b = 0`` leaves them unchanged
    too). Unlike the idealised eq. 64, the step of a *present* bin is not scaled by its share
    ``qhat_b``: with the paper's practical step 0.65 that factor (about ``1 / n_bins``) would make
    rare bins learn ten times slower; eq. 64's scaling is kept in :class:`PrimalDualRolloutGDRO`,
    which is the object Thm. F.22 speaks about.

    *Why not Auer's EXP3P update* (:class:`bandits.Exp3P`): the paper's constants (step 0.65,
    exploration 0.01) are meant for this practical rule. The importance-weighted estimate
    ``x / p`` would, with ``p`` as small as ``gamma / K``, move a log weight by up to ``0.65 * K /
    0.01`` per step, and it needs rewards in [0, 1] while ``J`` and the price term are unbounded.
    The EMA score plays the role of the estimator (the price part of eq. 37 is known exactly for
    every arm, so it is full information).

    **Shadow price** (eq. 38): ``mu <- clip(mu + dual_step * g, -price_cap, price_cap)`` with
    ``g = sum_b qhat_b E_{n ~ p_b}[n] - n_bar``, the budget violation of the
    controller's *proposal distribution* on the realised batch. The realised allocation always
    meets the budget exactly (by construction), so using its mean in eq. 38 would freeze ``mu``;
    eq. 65's expected allocation is what keeps the proposals (and hence the DP's corrections)
    near the budget. The primal step uses the price before the dual step (``mu_t`` in eq. 64);
    the dual step then measures the violation of the *updated* proposal ``p_{t+1}`` -- the one the
    next allocation draws from (alternating, Gauss-Seidel order). Why not eq. 65's simultaneous
    form (violation of ``p_t``): the cumulative log weights integrate the price and the price
    integrates the violation, so near equilibrium the pair is a discretised oscillator; the
    simultaneous (forward-Euler) update multiplies its amplitude by about ``sqrt(1 + eta *
    dual_step * Var_p(n))`` per step, which with the paper's steps (0.65, 0.05) and arms ``2..12``
    (``Var_p(n)`` up to 25) drives the price to its cap within a few hundred steps once it may take
    both signs; the alternating update is the symplectic scheme of the same dynamics, whose
    amplitude does not grow. (Thm. F.22 is about the *averaged* iterates, for which both orders
    give the same guarantee; the controller plays the last iterate.)
    ``price_cap`` is the truncation ``mu_max`` of the Lagrangian game of Sec. F.2.4. The budget of
    eq. 36 is an *equality* (compute neutrality), so its multiplier has no sign constraint (as the
    multiplier of ``sum_i p_i = 1`` in the proof of Lemma F.1): with ``signed_price=True``
    (default) a negative price pushes proposals that fall *below* the budget back up, and a price
    that overshot early can come back down through zero. ``signed_price=False`` projects onto
    ``[0, price_cap]`` as eq. 65 does for the inequality form of the Lagrangian game (Thm. F.22's
    object, :class:`PrimalDualRolloutGDRO`).

    Parameters
    ----------
    n_bins : int, default 10
    arms : iterable of int, default range(2, 13)
        Distinct positive rollout counts, at most ``2**20`` (stored sorted).
    mean_budget : float, default 4
        Mean rollouts per prompt ``n_bar``, within ``[min(arms), max(arms)]``.
    dual_step : float, default 0.05
        Dual step ``alpha_mu`` (eq. 38), ``>= 0``.
    step_size : float, default 0.65
        Arm step ``eta``, in ``(0, 1e6]``.
    exploration : float, default 0.01
        Uniform mixing ``gamma`` in ``[0, 1]``.
    ema : float, default 0.4
        Arm-score EMA weight of the new observation, in ``(0, 1]``. App. C.2.2's "arm score EMA
        decay 0.4" is read as the weight of the new value, as in :class:`bandits.PromptGDRO`
        (pass ``ema=0.6`` for the other reading).
    price_cap : float, default 10.0
        Bound ``mu_max`` of the shadow-price interval ``[-mu_max, mu_max]`` (``[0, mu_max]`` with
        ``signed_price=False``).
    selection : {"gumbel", "mode"}, default "gumbel"
    seed : None, int or numpy.random.Generator
        Source of the Gumbel noise; same seed and inputs, same trajectory.
    arm_start : {"budget", "uniform"}, default "budget"
        Initial arm distribution of every bin (see above).
    signed_price : bool, default True
        Sign-free price for the equality budget (see above); False: projected on ``[0, mu_max]``.
    arm_model : {"free", "inverse"}, default "free"
        How arms never played in a bin are scored (see above). Use ``"inverse"`` only with a
        utility of the form ``-c_b / n`` (the variance utility of Remark F.25).

    Attributes
    ----------
    arms : ndarray of int64, shape (K,)
    log_weights : ndarray, shape (n_bins, K)
        Per-bin log-probabilities before exploration mixing.
    arm_scores, arm_share_ema : ndarray, shape (n_bins, K)
        Debiased EMA of the arm losses ``-J`` and the EMA of the arm shares within the bin.
    arm_seen : ndarray of bool, shape (n_bins, K)
    shadow_price : float
        Current ``mu``.
    step : int
        Number of completed updates.
    last_allocation : RolloutAllocation or None

    Examples
    --------
    >>> ctrl = RolloutGDRO(n_bins=3, arms=range(2, 7), mean_budget=4, seed=0)
    >>> bins = [0, 0, 1, 2, 2, 2]
    >>> n = ctrl.allocate(bins)
    >>> float(n.mean()), bool(ctrl.last_allocation.exact)
    (4.0, True)
    >>> ctrl.update(bins, n, utilities=[0.1, 0.3, -0.2, 0.0, 0.5, 0.1])
    >>> ctrl.arm_probabilities().shape
    (3, 5)
    """

    def __init__(
        self,
        n_bins: Any = 10,
        arms: Any = range(2, 13),
        mean_budget: Any = 4,
        dual_step: Any = 0.05,
        step_size: Any = 0.65,
        exploration: Any = 0.01,
        ema: Any = 0.4,
        *,
        price_cap: Any = 10.0,
        selection: str = "gumbel",
        seed: Any = None,
        arm_start: str = "budget",
        signed_price: Any = True,
        arm_model: str = "free",
    ) -> None:
        self.arms = _arms_iv(arms)
        self.n_bins = _shape_iv(n_bins, self.arms)
        self.mean_budget = _mean_budget_iv(mean_budget, self.arms)
        self.dual_step = check_finite_scalar(dual_step, "dual_step", lo=0.0)
        self.step_size = check_finite_scalar(step_size, "step_size", lo=0.0, hi=1e6, lo_open=True)
        self.exploration = check_finite_scalar(exploration, "exploration", lo=0.0, hi=1.0)
        self.ema = check_finite_scalar(ema, "ema", lo=0.0, hi=1.0, lo_open=True)
        self.price_cap = check_finite_scalar(price_cap, "price_cap", lo=0.0, hi=1e6)
        if selection not in ("gumbel", "mode"):
            raise ValueError(f"selection must be 'gumbel' or 'mode', got {selection!r}")
        self.selection = selection
        if not isinstance(arm_start, str) or arm_start not in _ARM_STARTS:
            raise ValueError(f"arm_start must be one of {list(_ARM_STARTS)}, got {arm_start!r}")
        self.arm_start = arm_start
        if not isinstance(signed_price, (bool, np.bool_)):
            raise TypeError(f"signed_price must be a bool, got {type(signed_price).__name__}")
        self.signed_price = bool(signed_price)
        if not isinstance(arm_model, str) or arm_model not in _ARM_MODELS:
            raise ValueError(f"arm_model must be one of {list(_ARM_MODELS)}, got {arm_model!r}")
        self.arm_model = arm_model
        self._rng = check_rng(seed)
        shape = (self.n_bins, self.arms.size)
        if arm_start == "budget":
            start = _budget_start_log_weights(self.arms, self.mean_budget)
            self.log_weights = np.repeat(start[None, :], self.n_bins, axis=0)
        else:
            self.log_weights = np.full(shape, -math.log(self.arms.size))
        self.arm_scores = np.zeros(shape)
        self.arm_share_ema = np.zeros(shape)
        self.arm_seen = np.zeros(shape, dtype=bool)
        self.shadow_price = 0.0
        self.step = 0
        self.last_allocation: RolloutAllocation | None = None

    @property
    def n_arms(self) -> int:
        return int(self.arms.size)

    def arm_probabilities(self) -> np.ndarray:
        """Per-bin arm distributions ``p_b`` (with exploration), float64 ``[n_bins, n_arms]``."""
        return _arm_probabilities(self.log_weights, self.exploration)

    def expected_allocation(self) -> np.ndarray:
        """``E_{n ~ p_b}[n]`` per bin, float64 ``[n_bins]`` (the proposal's mean arm)."""
        return self.arm_probabilities() @ self.arms.astype(np.float64)

    # -- selection -------------------------------------------------------------------------
    def allocate(self, bin_ids: Any) -> np.ndarray:
        """Rollout count per prompt meeting the mean budget exactly when reachable.

        Parameters
        ----------
        bin_ids : array_like of int, shape (M,)
            Bin of every prompt, in ``[0, n_bins)``.

        Returns
        -------
        ndarray of int64, shape (M,)
            ``n_i`` in ``arms``; prompts of one bin share one arm. ``sum(n) == mean_budget * M``
            whenever reachable (else the nearest reachable total; see ``last_allocation``).
            Consumes Gumbel noise from the controller's Generator (``selection="gumbel"``); the
            learning state is unchanged.
        """
        ids = _bin_ids_iv(bin_ids, self.n_bins)
        counts = np.bincount(ids, minlength=self.n_bins)
        p = self.arm_probabilities()
        cost = -np.log(np.maximum(p, 1e-300))
        if self.selection == "gumbel":
            cost = cost - self._rng.gumbel(size=p.shape)
        requested = self.mean_budget * ids.size
        target = int(round(requested))
        match = match_budget(cost, counts, self.arms, target, nearest=True)
        n = match.n[ids]
        total = int(n.sum())
        self.last_allocation = RolloutAllocation(
            requested_total=float(requested),
            total=total,
            exact=bool(total == requested),
            match=match,
        )
        return n

    # -- learning --------------------------------------------------------------------------
    def update(self, bin_ids: Any, n: Any, utilities: Any) -> None:
        """Feed back the utilities of the rollouts taken: arm scores, arm weights, shadow price.

        Parameters
        ----------
        bin_ids : array_like of int, shape (M,)
            Bin of every prompt.
        n : array_like of int, shape (M,)
            Rollouts used for every prompt; each value must be one of ``arms`` (normally the
            output of :meth:`allocate`; prompts of one bin may use different arms).
        utilities : array_like of float, shape (M,)
            Per-prompt utility ``J`` (larger is better), finite, magnitude <= 1e100.

        Raises
        ------
        ValueError, TypeError
            On invalid input; the state is then left unchanged.
        """
        ids = _bin_ids_iv(bin_ids, self.n_bins)
        counts_used = as_int_array(n, "n", ndim=1)
        check_same_shape(ids, "bin_ids", counts_used, "n")
        k_idx = np.searchsorted(self.arms, counts_used)
        k_clip = np.minimum(k_idx, self.n_arms - 1)
        bad = self.arms[k_clip] != counts_used
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"n must contain only arms {self.arms.tolist()}, got {int(counts_used[i])} at index {i}"
            )
        util = _values_iv(utilities, "utilities", ids)

        b, k = self.n_bins, self.n_arms
        m = ids.size
        bin_counts = np.bincount(ids, minlength=b).astype(np.float64)
        present = bin_counts > 0
        pair = ids * k + k_clip
        pair_counts = np.bincount(pair, minlength=b * k).astype(np.float64)
        pair_means = np.bincount(pair, weights=-util / pair_counts[pair], minlength=b * k)
        within_share = np.zeros((b, k))
        within_share[present] = pair_counts.reshape(b, k)[present] / bin_counts[present, None]
        scores, share_ema = _share_debiased_ema(
            self.arm_scores, self.arm_share_ema, pair_means.reshape(b, k), within_share, self.ema
        )
        seen = self.arm_seen | (within_share > 0)

        # primal step on the augmented arm loss of eq. 37 for bins present in the batch
        seen_count = seen.sum(axis=1)
        bin_mean = np.where(seen, scores, 0.0).sum(axis=1) / np.maximum(seen_count, 1)
        if self.arm_model == "inverse":
            a = self.arms.astype(np.float64)
            w = np.where(seen, share_ema, 0.0)
            w_sum = w.sum(axis=1)
            flat = np.where(seen, 1.0, 0.0)  # plain mean over played arms where no share is left
            w = np.where((w_sum > 0)[:, None], w, flat)
            coef = (w * np.where(seen, scores, 0.0) * a[None, :]).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-300)
            imputed = coef[:, None] / a[None, :]
        else:
            imputed = np.broadcast_to(bin_mean[:, None], scores.shape)
        estimate = np.where(seen, scores, imputed)
        centred = estimate - bin_mean[:, None]
        price_term = self.shadow_price * (self.arms.astype(np.float64) - self.mean_budget)
        loss = centred + price_term[None, :]
        log_w = self.log_weights.copy()
        log_w[present] = _normalise_log_weights(
            self.log_weights[present] - self.step_size * loss[present]
        )
        # dual step (eq. 38) on the budget violation of the proposal the next allocation draws from
        p_next = _arm_probabilities(log_w, self.exploration)
        violation = float((bin_counts / m) @ (p_next @ self.arms.astype(np.float64))) - self.mean_budget
        floor = -self.price_cap if self.signed_price else 0.0
        price = min(max(self.shadow_price + self.dual_step * violation, floor), self.price_cap)

        self.arm_scores, self.arm_share_ema, self.arm_seen = scores, share_ema, seen
        self.log_weights = log_w
        self.shadow_price = price
        self.step += 1

    def __repr__(self) -> str:
        return (
            f"RolloutGDRO(n_bins={self.n_bins}, arms={self.arms.tolist()}, "
            f"mean_budget={self.mean_budget}, step={self.step}, shadow_price={self.shadow_price:.4g})"
        )

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "arms": self.arms, "mean_budget": self.mean_budget,
                "dual_step": self.dual_step, "step_size": self.step_size, "exploration": self.exploration,
                "ema": self.ema, "price_cap": self.price_cap, "selection": self.selection,
                "arm_start": self.arm_start, "signed_price": self.signed_price, "arm_model": self.arm_model}

    def state_dict(self) -> dict:
        """Checkpoint: hyperparameters, per-bin arm ``log_weights``, ``arm_scores``,
        ``arm_share_ema``, ``arm_seen``, ``shadow_price``, ``step`` and the Gumbel generator state.

        ``last_allocation`` (a diagnostic of the last :meth:`allocate` call) is not stored; it is
        ``None`` after loading.
        """
        return new_state(self, self._hyperparameters(), log_weights=self.log_weights,
                         arm_scores=self.arm_scores, arm_share_ema=self.arm_share_ema,
                         arm_seen=self.arm_seen, shadow_price=self.shadow_price, step=self.step,
                         rng=rng_state(self._rng))

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shape, non-finite values or a price outside
        ``[-price_cap, price_cap]`` (``[0, price_cap]`` with ``signed_price=False``)."""
        shape = (self.n_bins, self.n_arms)
        r = StateReader(self, state, self._hyperparameters())
        log_w = r.array("log_weights", shape, np.float64, lo=LOG_WEIGHT_FLOOR, hi=0.0)
        scores = r.array("arm_scores", shape, np.float64)
        share_ema = r.array("arm_share_ema", shape, np.float64, lo=0.0)
        seen = r.array("arm_seen", shape, np.bool_)
        price = r.float("shadow_price", lo=-self.price_cap if self.signed_price else 0.0, hi=self.price_cap)
        step = r.int("step", lo=0)
        rng = r.rng("rng", self._rng)
        self.log_weights, self.arm_scores, self.arm_share_ema, self.arm_seen = log_w, scores, share_ema, seen
        self.shadow_price, self.step, self.last_allocation = price, step, None
        self._rng.bit_generator.state = rng


class PrimalDualRolloutGDRO:
    r"""Full-information primal-dual rollout controller of GDRO eq. 64-65 (Thm. F.22).

    For the truncated Lagrangian (eq. 63)

    ``L_roll(p, mu) = sum_b q_b E_{n~p_b}[V_b(n)] + mu (sum_b q_b E_{n~p_b}[n] - n_bar)``,
    ``mu in [0, mu_max]``,

    each :meth:`update` with the arm costs ``V`` (``[n_bins, K]``, e.g. ``v_b / n``) and the bin
    fractions ``q`` performs, from ``p_1`` uniform and ``mu_1 = 0``,

    * eq. 64 (entropic mirror descent per bin): ``p_{t+1,b}(n) ∝ p_{t,b}(n) exp(-eta_p q_b (V_b(n) +
      mu_t n))``;
    * eq. 65 (projected dual ascent): ``mu_{t+1} = clip(mu_t + eta_mu g_t, 0, mu_max)``,
      ``g_t = sum_b q_b E_{p_{t,b}}[n] - n_bar``;

    and accumulates the averaged iterates ``pbar = (1/T) sum_{t<=T} p_t`` and ``mubar = (1/T)
    sum_{t<=T} mu_t`` (the iterates *played* at steps 1..T, as in Thm. F.22). Log weights are kept
    in log space and floored at -700 relative to the best arm (probabilities below ~1e-304 are
    stored as such; this never matters at double precision). No exploration mixing: this is the
    idealised dynamics the theorem analyses (the bandit controller is :class:`RolloutGDRO`).

    Parameters
    ----------
    n_bins : int
    arms : iterable of int, default range(2, 13)
        Arm values (distinct, positive, at most ``2**20``); the compute cost is ``a(n) = n``.
    mean_budget : float, default 4
    primal_step, dual_step : float
        ``eta_p > 0`` and ``eta_mu >= 0``; :meth:`theorem_step_sizes` gives eq. 67.
    price_cap : float, default 10.0
        ``mu_max``.

    Examples
    --------
    >>> import numpy as np
    >>> arms = np.arange(2, 13)
    >>> v = np.array([1.0, 4.0, 16.0]); q = np.array([0.5, 0.3, 0.2])
    >>> eta_p, eta_mu = PrimalDualRolloutGDRO.theorem_step_sizes(2000, 3, 11, cost_max=8.0,
    ...                                                           price_cap=2.0, arm_max=12)
    >>> ctrl = PrimalDualRolloutGDRO(3, arms, 4, primal_step=eta_p, dual_step=eta_mu, price_cap=2.0)
    >>> for _ in range(2000):
    ...     ctrl.update(v[:, None] / arms[None, :], q)
    >>> bool(ctrl.saddle_gap(v[:, None] / arms[None, :], q) <= ctrl.gap_bound(cost_max=8.0))
    True
    """

    def __init__(
        self,
        n_bins: Any,
        arms: Any = range(2, 13),
        mean_budget: Any = 4,
        *,
        primal_step: Any = 0.65,
        dual_step: Any = 0.05,
        price_cap: Any = 10.0,
    ) -> None:
        self.arms = _arms_iv(arms)
        self.n_bins = _shape_iv(n_bins, self.arms)
        self.mean_budget = _mean_budget_iv(mean_budget, self.arms)
        self.primal_step = check_finite_scalar(primal_step, "primal_step", lo=0.0, hi=1e6, lo_open=True)
        self.dual_step = check_finite_scalar(dual_step, "dual_step", lo=0.0)
        self.price_cap = check_finite_scalar(price_cap, "price_cap", lo=0.0, hi=1e6)
        shape = (self.n_bins, self.arms.size)
        self.log_weights = np.full(shape, -math.log(self.arms.size))
        self.shadow_price = 0.0
        self.step = 0
        self._sum_p = np.zeros(shape)
        self._sum_price = 0.0

    @property
    def n_arms(self) -> int:
        return int(self.arms.size)

    # -- validation ------------------------------------------------------------------------
    def _costs_shares_iv(self, arm_costs: Any, shares: Any) -> tuple[np.ndarray, np.ndarray]:
        costs = as_float_array(arm_costs, "arm_costs", ndim=2)
        if costs.shape != (self.n_bins, self.n_arms):
            raise ValueError(
                f"arm_costs must have shape (n_bins, n_arms) = ({self.n_bins}, {self.n_arms}), "
                f"got {costs.shape}"
            )
        big = np.abs(costs) > 1e100
        if big.any():
            idx = tuple(int(i) for i in np.argwhere(big)[0])
            raise ValueError(f"arm_costs must have magnitude <= 1e+100, got {costs[idx]!r} at index {idx}")
        q = as_float_array(shares, "shares", ndim=1, nonneg=True)
        if q.shape[0] != self.n_bins:
            raise ValueError(f"shares must have length n_bins = {self.n_bins}, got {q.shape[0]}")
        if abs(q.sum() - 1.0) > 1e-8:
            raise ValueError(f"shares must sum to 1, got sum {q.sum()!r}")
        return costs, q

    # -- state -----------------------------------------------------------------------------
    def arm_probabilities(self) -> np.ndarray:
        """Current iterate ``p_t``, float64 ``[n_bins, n_arms]``."""
        return _arm_probabilities(self.log_weights, 0.0)

    def average_arm_probabilities(self) -> np.ndarray:
        """Averaged iterate ``pbar = (1/T) sum_{t=1}^T p_t`` (uniform before any update)."""
        if self.step == 0:
            return self.arm_probabilities()
        return self._sum_p / self.step

    @property
    def average_shadow_price(self) -> float:
        """``mubar = (1/T) sum_{t=1}^T mu_t`` (0 before any update)."""
        return self._sum_price / self.step if self.step else 0.0

    def expected_allocation(self, p: Any = None) -> np.ndarray:
        """``E_{n ~ p_b}[n]`` per bin for ``p`` (default: the averaged iterate ``pbar``)."""
        if p is None:
            p = self.average_arm_probabilities()
        else:
            p = self._policy_iv(p)
        return p @ self.arms.astype(np.float64)

    # -- dynamics --------------------------------------------------------------------------
    def update(self, arm_costs: Any, shares: Any) -> None:
        """One round of eq. 64-65 with costs ``V`` ``[n_bins, n_arms]`` and fractions ``q`` ``[n_bins]``.

        ``shares`` must be non-negative and sum to 1 (within 1e-8). Invalid input raises
        ``ValueError`` and leaves the state unchanged.
        """
        costs, q = self._costs_shares_iv(arm_costs, shares)
        a = self.arms.astype(np.float64)
        p = self.arm_probabilities()
        mu = self.shadow_price
        g = float(q @ (p @ a)) - self.mean_budget
        loss = q[:, None] * (costs + mu * a[None, :])
        log_w = _normalise_log_weights(self.log_weights - self.primal_step * loss)
        new_mu = min(max(mu + self.dual_step * g, 0.0), self.price_cap)
        self._sum_p = self._sum_p + p
        self._sum_price += mu
        self.log_weights = log_w
        self.shadow_price = new_mu
        self.step += 1

    # -- analysis (Thm. F.22) --------------------------------------------------------------
    def _policy_iv(self, p: Any) -> np.ndarray:
        """``p`` of shape ``[n_bins, n_arms]`` with rows on the simplex (within 1e-8)."""
        p = as_float_array(p, "p", ndim=2, nonneg=True)
        if p.shape != (self.n_bins, self.n_arms):
            raise ValueError(
                f"p must have shape (n_bins, n_arms) = ({self.n_bins}, {self.n_arms}), got {p.shape}"
            )
        with np.errstate(over="ignore"):
            sums = p.sum(axis=1)
        bad = ~(np.abs(sums - 1.0) <= 1e-8)
        if bad.any():
            b = int(np.argmax(bad))
            raise ValueError(f"p must have rows on the probability simplex, got row {b} summing to {float(sums[b])!r}")
        return p

    def lagrangian(self, p: Any, price: Any, arm_costs: Any, shares: Any) -> float:
        """``L_roll(p, mu)`` of eq. 63 for a given ``p`` ``[n_bins, n_arms]`` (rows on the simplex)
        and price ``mu``. Raises ValueError if the value overflows float64 (a price near 1e308)."""
        costs, q = self._costs_shares_iv(arm_costs, shares)
        p = self._policy_iv(p)
        mu = check_finite_scalar(price, "price")
        a = self.arms.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            value = float(q @ (p * costs).sum(axis=1) + mu * (q @ (p @ a) - self.mean_budget))
        if not math.isfinite(value):
            raise ValueError(f"the Lagrangian overflows float64 (price={mu!r}); rescale price or arm_costs")
        return value

    def saddle_gap(self, arm_costs: Any, shares: Any) -> float:
        """Saddle gap of the averaged iterates (left side of eq. 66), in closed form.

        ``max_{mu in [0, mu_max]} L(pbar, mu) - min_p L(p, mubar)``, where the max is
        ``L(pbar, 0) + mu_max [sum_b q_b E_pbar[n] - n_bar]_+`` and the min picks, per bin, the arm
        minimising ``V_b(n) + mubar n``.
        """
        costs, q = self._costs_shares_iv(arm_costs, shares)
        a = self.arms.astype(np.float64)
        pbar = self.average_arm_probabilities()
        mubar = self.average_shadow_price
        objective = float(q @ (pbar * costs).sum(axis=1))
        violation = float(q @ (pbar @ a)) - self.mean_budget
        upper = objective + self.price_cap * max(violation, 0.0)
        lower = float(q @ (costs + mubar * a[None, :]).min(axis=1)) - mubar * self.mean_budget
        return upper - lower

    def gap_bound(self, cost_max: Any) -> float:
        """Right-hand side of eq. 66 for this controller's steps and ``T = step`` rounds.

        ``B log K / (eta_p T) + eta_p/8 (V_max + mu_max a_max)^2 + mu_max^2 / (2 eta_mu T) +
        eta_mu/2 a_max^2``, valid when ``0 <= V_b(n) <= cost_max`` for all rounds. ``inf`` before
        any update or with ``dual_step == 0`` and ``price_cap > 0`` (the bound is vacuous then);
        a ValueError naming ``cost_max`` when the bound overflows float64.
        """
        v_max = check_finite_scalar(cost_max, "cost_max", lo=0.0)
        t = self.step
        if t == 0:
            return math.inf
        a_max = float(self.arms[-1])
        eta_p, eta_mu, mu_max = self.primal_step, self.dual_step, self.price_cap
        with np.errstate(over="ignore"):
            scale = np.float64(v_max) + mu_max * a_max
            primal = self.n_bins * math.log(self.n_arms) / (eta_p * t) + eta_p / 8.0 * scale * scale
        if not np.isfinite(primal):
            raise ValueError(
                f"the eq. 66 bound overflows float64 (cost_max={v_max!r}: (cost_max + price_cap * "
                "arm_max)^2 is not representable); rescale the costs"
            )
        if eta_mu == 0.0:
            dual = 0.0 if mu_max == 0.0 else math.inf
        else:
            dual = mu_max**2 / (2.0 * eta_mu * t) + eta_mu / 2.0 * a_max**2
        return float(primal + dual)

    @staticmethod
    def theorem_step_sizes(
        horizon: Any, n_bins: Any, n_arms: Any, cost_max: Any, price_cap: Any, arm_max: Any
    ) -> tuple[float, float]:
        """Step sizes of eq. 67: ``eta_p = sqrt(8 B log K) / ((V_max + mu_max a_max) sqrt(T))``,
        ``eta_mu = mu_max / (a_max sqrt(T))``."""
        t = check_int_scalar(horizon, "horizon", lo=1)
        b = check_int_scalar(n_bins, "n_bins", lo=1)
        k = check_int_scalar(n_arms, "n_arms", lo=2)
        v_max = check_finite_scalar(cost_max, "cost_max", lo=0.0)
        mu_max = check_finite_scalar(price_cap, "price_cap", lo=0.0, lo_open=True)
        a_max = check_finite_scalar(arm_max, "arm_max", lo=0.0, lo_open=True)
        scale = v_max + mu_max * a_max
        if not scale > 0.0:
            raise ValueError(
                f"cost_max + price_cap * arm_max must be > 0 for eq. 67, got {scale!r} "
                f"(cost_max={v_max!r}, price_cap={mu_max!r}, arm_max={a_max!r})"
            )
        eta_p = math.sqrt(8.0 * b * math.log(k)) / (scale * math.sqrt(t))
        eta_mu = mu_max / (a_max * math.sqrt(t))
        if not (math.isfinite(scale) and 0.0 < eta_p < math.inf and 0.0 < eta_mu < math.inf):
            raise ValueError(
                f"eq. 67 step sizes are not representable (eta_p={eta_p!r}, eta_mu={eta_mu!r} from "
                f"cost_max={v_max!r}, price_cap={mu_max!r}, arm_max={a_max!r}, horizon={t}); rescale the costs"
            )
        return eta_p, eta_mu

    @staticmethod
    def theorem_gap_bound(
        horizon: Any, n_bins: Any, n_arms: Any, cost_max: Any, price_cap: Any, arm_max: Any
    ) -> float:
        """Eq. 68: ``(V_max + mu_max a_max) sqrt(B log K / (2T)) + mu_max a_max / sqrt(T)``."""
        t = check_int_scalar(horizon, "horizon", lo=1)
        b = check_int_scalar(n_bins, "n_bins", lo=1)
        k = check_int_scalar(n_arms, "n_arms", lo=1)
        v_max = check_finite_scalar(cost_max, "cost_max", lo=0.0)
        mu_max = check_finite_scalar(price_cap, "price_cap", lo=0.0)
        a_max = check_finite_scalar(arm_max, "arm_max", lo=0.0)
        bound = (v_max + mu_max * a_max) * math.sqrt(b * math.log(k) / (2.0 * t)) + mu_max * a_max / math.sqrt(t)
        if not math.isfinite(bound):
            raise ValueError(
                f"the eq. 68 bound overflows float64 (cost_max={v_max!r}, price_cap={mu_max!r}, "
                f"arm_max={a_max!r}); rescale the costs"
            )
        return bound

    def __repr__(self) -> str:
        return (
            f"PrimalDualRolloutGDRO(n_bins={self.n_bins}, arms={self.arms.tolist()}, "
            f"mean_budget={self.mean_budget}, step={self.step})"
        )

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_bins": self.n_bins, "arms": self.arms, "mean_budget": self.mean_budget,
                "primal_step": self.primal_step, "dual_step": self.dual_step, "price_cap": self.price_cap}

    def state_dict(self) -> dict:
        """Checkpoint: hyperparameters, ``log_weights``, ``shadow_price``, ``step`` and the running
        sums behind the averaged iterates (no randomness to store)."""
        return new_state(self, self._hyperparameters(), log_weights=self.log_weights,
                         shadow_price=self.shadow_price, step=self.step, sum_p=self._sum_p,
                         sum_price=self._sum_price)

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shape, non-finite values or a price outside
        ``[0, price_cap]``."""
        shape = (self.n_bins, self.n_arms)
        r = StateReader(self, state, self._hyperparameters())
        log_w = r.array("log_weights", shape, np.float64, lo=LOG_WEIGHT_FLOOR, hi=0.0)
        price = r.float("shadow_price", lo=0.0, hi=self.price_cap)
        step = r.int("step", lo=0)
        sum_p = r.array("sum_p", shape, np.float64, lo=0.0)
        sum_price = r.float("sum_price", lo=0.0)
        self.log_weights, self.shadow_price, self.step = log_w, price, step
        self._sum_p, self._sum_price = sum_p, sum_price
