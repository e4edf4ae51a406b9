"""The controller protocol: ``plan`` -> :class:`StepPlan`, ``extend``, ``select``, ``observe``, ``state_dict``.

A controller decides, it never samples (docs/architecture.md, "Data flow of one training step"): each step the
training loop (the simulator of ``sim`` or a real GRPO loop in ``llm_bridge``) calls

1. ``plan = ctrl.plan(prompt_ids)`` -- rollouts per prompt (``plan.counts``), advantage
   multipliers (``plan.multipliers``) and, where the controller bins prompts, their difficulty
   bins (``plan.bins``);
2. generates ``plan.counts[i]`` rollouts for prompt ``prompt_ids[i]`` and scores them;
3. *sampling in rounds* (controllers with ``samples_in_rounds``; :func:`supports_rounds`):
   ``extra = ctrl.extend(prompt_ids, counts, rewards, group_ids)`` with **all** rollouts of the
   step so far (``counts`` the running totals per prompt); generates ``extra[i]`` more rollouts
   for prompt ``i``, appends them, and calls ``extend`` again until it returns all zeros;
4. ``sel = ctrl.select(prompt_ids, counts, rewards, group_ids)`` -- a :class:`TrainSelection`:
   which rollouts enter the gradient (``train_mask``; a group whose rollouts are all masked out
   is dropped), optional per-prompt ``baselines`` that replace the estimator's own, and optional
   ``reuse`` flags (add one stored correct response of the prompt from an earlier step). For
   every controller without a selection rule this is "everything, estimator's own baseline";
5. ``ctrl.observe(prompt_ids, counts, rewards, group_ids)`` with the *ragged* batch of the whole
   step: flat ``rewards`` (one per generated rollout, in [0, 1]) and ``group_ids`` (the position
   in ``prompt_ids`` of each rollout's prompt). ``observe`` closes the step.

:func:`sample_step` (module :mod:`bandits.controllers.rounds`) runs 1-4 with a caller-supplied
generator, so a training loop needs no round logic of its own.

Budget. A single-round controller keeps the per-step budget exact, ``plan.counts.sum() ==
len(prompt_ids) * mean_budget`` (:meth:`Controller.budget_for`), and the bounds ``lower <=
counts <= upper``. A round controller spends *at most* the budget over all rounds: every rollout
of every round counts, including those of groups that ``select`` later drops (``plan`` total +
every ``extend`` total ``<= budget_for(M)``), and each prompt's running total stays within
``[lower, upper]``. A controller with ``skips_prompts`` may give a prompt no rollouts at all in a
step (``counts[i] == 0``: the prompt is skipped or not drawn from the batch, and it contributes
nothing to the gradient); its observations then accept zero counts. The base class checks every
plan and every extension and raises ``RuntimeError`` on a violation (an internal error, never a
silent overspend).

Observation semantics (shared by every controller; what each learner receives is documented in
the controller classes): ``rewards`` are floats in [0, 1] -- 1 is a success, a value in between
is partial credit. For prompt ``i`` with rewards ``r_i1..r_in``:

* success count ``s_i = sum_j r_ij`` (fractional with partial credit) and trials ``n_i``: the
  success-probability predictors' observation, ``s_i / n_i`` being VIP's ``(R_bar + 1) / 2``
  (Sec. 5.1, with rewards mapped from {-1, +1} to {0, 1});
* ``any_correct_i = 1{exists j: r_ij = 1}``: GDRO eq. 10 (a rollout with reward exactly 1);
* mean reward ``r_bar_i`` and unbiased sample variance ``s2_i`` of the rewards (for ``n_i >= 2``).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from solvers._validation import (
    as_float_array,
    as_int_array,
    check_int_scalar,
    check_rng,
)

from .._state import StateReader, load_atomically, new_state, plain, rng_state

__all__ = ["Controller", "Observation", "StepPlan", "TrainSelection", "supports_rounds"]

MAX_ABS_LOSS = 1e100
"""Largest accepted magnitude of a caller-supplied prompt loss (as in :mod:`bandits.prompt_gdro`)."""


@dataclass(frozen=True)
class StepPlan:
    """What a controller decided for one step (returned by :meth:`Controller.plan`).

    Attributes
    ----------
    counts : ndarray of int64, shape (M,)
        Rollouts for each prompt of the batch, ``lower <= counts <= upper``, summing exactly to
        ``M * mean_budget``.
    multipliers : ndarray of float64, shape (M,)
        Advantage multiplier of each prompt (GDRO eq. 17); 1.0 for controllers that do not
        reweight. Multiply every rollout advantage of prompt ``i`` by ``multipliers[i]``.
    bins : ndarray of int64, shape (M,), or None
        Difficulty bin of each prompt (GDRO eq. 11; bin 0 = lowest pass rate) for the GDRO
        controllers, else None.
    p_hat : ndarray of float64, shape (M,), or None
        The success probabilities the allocation used (predicted, or true for ``oracle``), for
        the predictor-driven controllers, else None.
    """

    counts: np.ndarray
    multipliers: np.ndarray
    bins: np.ndarray | None = None
    p_hat: np.ndarray | None = None

    @property
    def total(self) -> int:
        """``counts.sum()``: the step's rollout budget (for a round controller, what its first
        round spends)."""
        return int(self.counts.sum())


@dataclass(frozen=True)
class Observation:
    """A validated ragged batch and its per-prompt summaries (built by :meth:`Controller.observe`).

    Attributes
    ----------
    ids, counts : int64 (M,)
    rewards : float64 (R,), ``R = counts.sum()``
    group_ids : int64 (R,)
    reward_sums : float64 (M,)
        ``s_i = sum_j r_ij`` (successes; fractional with partial credit).
    mean_rewards : float64 (M,)
    sample_vars : float64 (M,)
        Unbiased sample variance of the rewards of each prompt (0 when ``n_i = 1``: undefined).
    any_correct : bool (M,)
        GDRO eq. 10: some rollout has reward exactly 1.
    prompt_losses : float64 (M,) or None
        Caller-supplied prompt-level losses (GDRO eq. 7), if any.
    """

    ids: np.ndarray
    counts: np.ndarray
    rewards: np.ndarray
    group_ids: np.ndarray
    reward_sums: np.ndarray
    mean_rewards: np.ndarray
    sample_vars: np.ndarray
    any_correct: np.ndarray
    prompt_losses: np.ndarray | None


@dataclass(frozen=True)
class TrainSelection:
    """Which rollouts of a step enter the gradient (returned by :meth:`Controller.select`).

    Attributes
    ----------
    train_mask : ndarray of bool, shape (R,)
        ``train_mask[j]``: rollout ``j`` (in the order of the flat ``rewards`` given to
        ``select``) enters the gradient. A prompt none of whose rollouts is selected is dropped
        from the gradient (its rollouts still counted against the budget).
    baselines : ndarray of float64, shape (M,), or None
        Per-prompt baselines that replace the estimator's own: the advantage of a selected
        rollout of prompt ``i`` is ``r - baselines[i]`` (no standard-deviation scaling). None:
        the estimator computes its baseline from the selected rollouts (GRPO / RLOO / Dr.GRPO).
    reuse : ndarray of bool, shape (M,), or None
        ``reuse[i]``: add one correct response of prompt ``i`` kept from an earlier step (with
        reward 1) to the prompt's training group (AR3PO's response reuse); the training loop
        keeps the responses (a controller never stores text). Reused responses cost no
        rollout. None: nothing is reused.
    """

    train_mask: np.ndarray
    baselines: np.ndarray | None = None
    reuse: np.ndarray | None = None

    @property
    def trivial(self) -> bool:
        """True when every rollout is selected and neither baselines nor reuse are set (the
        gradient is the plain estimator on the whole batch)."""
        return bool(self.train_mask.all()) and self.baselines is None and (self.reuse is None or not self.reuse.any())


def supports_rounds(controller: Any) -> bool:
    """Whether ``controller`` samples in rounds (its :meth:`Controller.extend` can return
    non-zero extra rollouts); False for single-round controllers and non-controllers."""
    return bool(getattr(type(controller), "samples_in_rounds", False))


def mean_budget_iv(mean_budget: Any) -> Fraction:
    """``mean_budget`` as an exact positive :class:`~fractions.Fraction`.

    A float is read as the decimal it prints as (``4.2`` is ``21/5``, not the binary double just
    above it), so that ``5 * 4.2`` is the integer budget 21 a user means.
    """
    if isinstance(mean_budget, (bool, np.bool_)):
        raise TypeError("mean_budget must be a real number, got bool")
    if isinstance(mean_budget, Fraction):
        value = mean_budget
    elif isinstance(mean_budget, (numbers.Integral, np.integer)):
        value = Fraction(int(mean_budget))
    elif isinstance(mean_budget, (numbers.Real, np.floating)):
        v = float(mean_budget)
        if not math.isfinite(v):
            raise ValueError(f"mean_budget must be finite, got {v!r}")
        value = Fraction(repr(v))
    else:
        raise TypeError(f"mean_budget must be a real number, got {type(mean_budget).__name__}")
    if value <= 0:
        raise ValueError(f"mean_budget must be > 0, got {_fmt_fraction(value)}")
    return value


def _fmt_fraction(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f} (= {float(f):g})"


def upper_iv(upper: Any) -> int | float:
    """``upper`` as an int, or ``math.inf`` for no upper bound."""
    if isinstance(upper, (float, np.floating)) and float(upper) == math.inf:  # (float(10**400) overflows)
        return math.inf
    return check_int_scalar(upper, "upper", lo=1)


class Controller(ABC):
    """Base class of every controller (the protocol of ``bandits.controllers``).

    Parameters
    ----------
    n_prompts : int
        Number of prompts in the dataset; prompt ids are integers in ``[0, n_prompts)``.
    mean_budget : int, float or Fraction
        Mean rollouts per prompt ``n_bar``; a batch of ``M`` prompts gets exactly
        ``M * mean_budget`` rollouts, which must be an integer (``ValueError`` at :meth:`plan`
        otherwise). A float is read as the decimal it prints as (``2.5`` is ``5/2``).
    lower, upper : int (``upper`` may be ``math.inf``)
        Per-prompt bounds ``1 <= lower <= mean_budget <= upper``.
    seed : None, int or numpy.random.Generator
        Source of all randomness (tie-breaking of remainders, Gumbel noise, subsamples); the
        components get independent child generators (``Generator.spawn``).

    Notes
    -----
    Subclasses implement ``_plan(ids, total) -> StepPlan`` and ``_observe(obs)`` and list their
    stateful parts in ``_components()``; the base class validates input, checks the returned
    plan (exact total, bounds, dtypes) and implements the checkpoints. A controller that samples
    in rounds sets ``samples_in_rounds`` and implements ``_extend(obs, total)``; one with a
    training selection implements ``_select(obs)``; one that may give a prompt no rollouts sets
    ``skips_prompts``. State kept by the controller itself (not in a component: per-prompt
    histories, a round counter) goes through ``_extra_state`` / ``_read_extra_state`` /
    ``_commit_extra_state``, so that a checkpoint taken in the middle of a step resumes it.
    """

    name: ClassVar[str] = ""
    #: smallest admissible ``lower`` of this controller (e.g. 2 for RLOO allocation)
    min_lower: ClassVar[int] = 1
    #: whether ``upper = inf`` is allowed
    allows_infinite_upper: ClassVar[bool] = True
    #: whether the controller samples in rounds (``extend`` may return extra rollouts; the plan
    #: and every extension together spend at most the budget)
    samples_in_rounds: ClassVar[bool] = False
    #: whether a prompt may get no rollouts in a step (``counts[i] == 0``: skipped)
    skips_prompts: ClassVar[bool] = False
    #: whether ``observe`` learns from the rewards (False: it only validates them and counts the step)
    learns_from_rewards: ClassVar[bool] = True

    def __init__(self, *, n_prompts: Any, mean_budget: Any, lower: Any, upper: Any, seed: Any = None) -> None:
        self.n_prompts = check_int_scalar(n_prompts, "n_prompts", lo=1)
        self.mean_budget = mean_budget_iv(mean_budget)
        self.lower = check_int_scalar(lower, "lower", lo=1)
        self.upper = upper_iv(upper)
        if self.lower < self.min_lower:
            raise ValueError(f"controller {self.name!r} needs lower >= {self.min_lower}{self._lower_reason()}, "
                             f"got lower={self.lower}")
        if self.upper == math.inf and not self.allows_infinite_upper:
            raise ValueError(f"controller {self.name!r} needs a finite upper (its arms are the integers "
                             "lower..upper), got upper=inf")
        if self.upper < self.lower:
            raise ValueError(f"lower must be <= upper, got lower={self.lower} > upper={self.upper}")
        if not (self.lower <= self.mean_budget <= self.upper):
            raise ValueError(
                f"mean_budget {_fmt_fraction(self.mean_budget)} is infeasible: need lower={self.lower} "
                f"<= mean_budget <= upper={self.upper}"
            )
        self._rng = check_rng(seed)
        self.step = 0

    def _lower_reason(self) -> str:
        return ""

    def _spawn(self) -> np.random.Generator:
        """An independent child generator for a component (deterministic given the seed)."""
        return self._rng.spawn(1)[0]

    # -- validation ----------------------------------------------------------------------------
    def _ids_iv(self, prompt_ids: Any) -> np.ndarray:
        ids = as_int_array(prompt_ids, "prompt_ids", ndim=1, min_size=1)
        bad = (ids < 0) | (ids >= self.n_prompts)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"prompt_ids must be in [0, n_prompts) = [0, {self.n_prompts}), got {int(ids[i])} "
                             f"at index {i}")
        return ids

    def budget_for(self, batch_size: Any) -> int:
        """The exact rollout budget ``batch_size * mean_budget`` of a batch (must be an integer)."""
        m = check_int_scalar(batch_size, "batch_size", lo=1)
        total = self.mean_budget * m
        if total.denominator != 1:
            raise ValueError(
                f"len(prompt_ids) * mean_budget must be an integer (the exact rollout budget of the step), "
                f"got {m} * {self.mean_budget} = {total}"
            )
        return int(total)

    def _observation_iv(self, prompt_ids: Any, counts: Any, rewards: Any, group_ids: Any,
                        prompt_losses: Any) -> Observation:
        ids = self._ids_iv(prompt_ids)
        m = ids.size
        n = as_int_array(counts, "counts", ndim=1)
        if n.shape != (m,):
            raise ValueError(f"counts must have one entry per prompt, shape ({m},), got {n.shape}")
        least = 0 if self.skips_prompts else 1
        bad = n < least
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"counts must be >= {least}, got {int(n[i])} at index {i}")
        r = as_float_array(rewards, "rewards", ndim=1)
        bad = (r < 0.0) | (r > 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"rewards must be in [0, 1] (1 = success, in between = partial credit), "
                             f"got {float(r[i])!r} at index {i}")
        g = as_int_array(group_ids, "group_ids", ndim=1)
        if g.shape != r.shape:
            raise ValueError(f"rewards and group_ids must have the same shape, got {r.shape} and {g.shape}")
        bad = (g < 0) | (g >= m)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"group_ids must be positions in prompt_ids, in [0, {m}), got {int(g[i])} at index {i}")
        if r.size != int(n.sum()):
            raise ValueError(f"rewards must have counts.sum() = {int(n.sum())} entries (one per rollout), "
                             f"got {r.size}")
        per = np.bincount(g, minlength=m)
        bad = per != n
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"group_ids must list position {i} exactly counts[{i}] = {int(n[i])} times, "
                             f"got {int(per[i])}")
        losses = None
        if prompt_losses is not None:
            losses = as_float_array(prompt_losses, "prompt_losses", ndim=1)
            if losses.shape != (m,):
                raise ValueError(f"prompt_losses must have one entry per prompt, shape ({m},), got {losses.shape}")
            big = np.abs(losses) > MAX_ABS_LOSS
            if big.any():
                i = int(np.argmax(big))
                raise ValueError(f"prompt_losses must have magnitude <= {MAX_ABS_LOSS:g}, got {float(losses[i])!r} "
                                 f"at index {i}")
        return self._summarize(ids, n, r, g, losses)

    @staticmethod
    def _summarize(ids: np.ndarray, n: np.ndarray, r: np.ndarray, g: np.ndarray,
                   losses: np.ndarray | None) -> Observation:
        """The per-prompt summaries of an already validated ragged batch."""
        m = ids.size
        nf = n.astype(np.float64)
        sums = np.bincount(g, weights=r, minlength=m)
        means = sums / np.maximum(nf, 1.0)  # a skipped prompt (n = 0) has mean 0 and no rollouts
        dev = r - means[g]
        ss = np.bincount(g, weights=dev * dev, minlength=m)
        var = np.zeros(m)
        two = n >= 2
        var[two] = ss[two] / (nf[two] - 1.0)
        any_correct = np.bincount(g, weights=(r >= 1.0).astype(np.float64), minlength=m) > 0
        return Observation(ids, n, r, g, sums, means, var, any_correct, losses)

    # -- protocol ------------------------------------------------------------------------------
    def plan(self, prompt_ids: Any) -> StepPlan:
        """Decide the step for a batch of prompts.

        Parameters
        ----------
        prompt_ids : array_like of int, shape (M,)
            Prompt ids in ``[0, n_prompts)``; repeats are separate entries of the batch.

        Returns
        -------
        StepPlan
            ``counts`` (int64, summing exactly to ``M * mean_budget``, within the bounds; for a
            round controller the first round, summing to at most the budget; zero entries for
            prompts a ``skips_prompts`` controller skips), ``multipliers`` (float64), ``bins``
            and ``p_hat`` (or None).

        Raises
        ------
        ValueError, TypeError
            Ids out of range or not integers, an empty batch, or ``M * mean_budget`` not an
            integer. Planning does not change the learning state (it may draw random numbers;
            a round controller starts its round counter).
        """
        ids = self._ids_iv(prompt_ids)
        total = self.budget_for(ids.size)
        plan = self._plan(ids, total)
        c = plan.counts
        ok = (c.dtype == np.int64 and c.shape == ids.shape and plan.multipliers.dtype == np.float64
              and plan.multipliers.shape == ids.shape)
        if ok:
            used = c[c > 0] if self.skips_prompts else c
            spent = int(c.sum())
            ok = (int(c.min()) >= 0 and (used.size == 0 or (int(used.min()) >= self.lower and used.max() <= self.upper))
                  and (spent <= total if self.samples_in_rounds else spent == total))
        if not ok:
            raise RuntimeError(  # an internal error, never a silent budget violation
                f"controller {self.name!r} produced an invalid plan (total {int(c.sum())} vs budget {total}, "
                f"counts in [{int(c.min())}, {int(c.max())}] vs [{self.lower}, {self.upper}])"
            )
        return plan

    def extend(self, prompt_ids: Any, counts: Any, rewards: Any, group_ids: Any) -> np.ndarray:
        """Extra rollouts per prompt for the next round of this step (all zeros: stop).

        Parameters
        ----------
        prompt_ids : array_like of int, shape (M,)
            The batch that :meth:`plan` was called with.
        counts, rewards, group_ids
            **All** rollouts of the step so far (every round, any order), as for
            :meth:`observe`: ``counts[i]`` the running total of prompt ``i``.

        Returns
        -------
        ndarray of int64, shape (M,)
            Rollouts to generate next for each prompt. Always zeros for a single-round
            controller. A round controller keeps ``counts + extra <= upper``, gives a prompt it
            samples for the first time at least ``lower``, and ``counts.sum() + extra.sum() <=
            len(prompt_ids) * mean_budget`` (every round counts against the step's budget).

        Raises
        ------
        ValueError, TypeError
            On inconsistent input (as :meth:`observe`); the controller is then unchanged.
        """
        obs = self._observation_iv(prompt_ids, counts, rewards, group_ids, None)
        return self._checked_extension(obs, self.budget_for(obs.ids.size))

    def _checked_extension(self, obs: Observation, total: int) -> np.ndarray:
        """:meth:`_extend` on a validated observation, its result checked (see :meth:`extend`)."""
        if not self.samples_in_rounds:
            return np.zeros(obs.ids.size, dtype=np.int64)
        extra = self._extend(obs, total)
        new = obs.counts + extra
        first = (obs.counts == 0) & (extra > 0)
        room = np.maximum(obs.counts, self.upper) if self.upper != math.inf else None
        if (extra.dtype != np.int64 or extra.shape != obs.ids.shape or int(extra.min()) < 0
                or int(obs.counts.sum()) + int(extra.sum()) > max(total, int(obs.counts.sum()))
                or (room is not None and bool((new > room).any())) or bool((new[first] < self.lower).any())):
            raise RuntimeError(  # an internal error, never a silent budget violation
                f"controller {self.name!r} produced an invalid extension (extra {extra.tolist()} on counts "
                f"{obs.counts.tolist()}, budget {total}, bounds [{self.lower}, {self.upper}])"
            )
        return extra

    def select(self, prompt_ids: Any, counts: Any, rewards: Any, group_ids: Any) -> TrainSelection:
        """Which rollouts of the step enter the gradient (:class:`TrainSelection`).

        Call after the last round (``extend`` returned zeros), with all rollouts of the step as
        for :meth:`observe`. The default selects every rollout with the estimator's own
        baseline and no reuse. Selection does not change the learning state.

        Raises
        ------
        ValueError, TypeError
            On inconsistent input (as :meth:`observe`).
        """
        return self._checked_selection(self._observation_iv(prompt_ids, counts, rewards, group_ids, None))

    def _checked_selection(self, obs: Observation) -> TrainSelection:
        """:meth:`_select` on a validated observation, its result checked (see :meth:`select`)."""
        sel = self._select(obs)
        m, r = obs.ids.size, obs.rewards.size
        mask = sel.train_mask
        ok = mask.dtype == np.bool_ and mask.shape == (r,)
        if sel.baselines is not None:
            ok = ok and sel.baselines.dtype == np.float64 and sel.baselines.shape == (m,) and bool(
                np.isfinite(sel.baselines).all())
        if sel.reuse is not None:
            ok = ok and sel.reuse.dtype == np.bool_ and sel.reuse.shape == (m,)
        if not ok:
            raise RuntimeError(f"controller {self.name!r} produced an invalid selection")
        return sel

    def _extend(self, obs: Observation, total: int) -> np.ndarray:
        """Extra rollouts for the next round (round controllers override; see :meth:`extend`)."""
        return np.zeros(obs.ids.size, dtype=np.int64)

    def _select(self, obs: Observation) -> TrainSelection:
        """The training selection (controllers with a selection rule override)."""
        return TrainSelection(np.ones(obs.rewards.size, dtype=bool))

    def observe(self, prompt_ids: Any, counts: Any, rewards: Any, group_ids: Any, *,
                prompt_losses: Any = None) -> None:
        """Feed back the rollouts of one step.

        Parameters
        ----------
        prompt_ids : array_like of int, shape (M,)
            The batch (normally the one just planned).
        counts : array_like of int, shape (M,)
            Rollouts actually generated per prompt, ``>= 1`` (normally ``plan.counts``).
        rewards : array_like of float, shape (counts.sum(),)
            Flat rewards in [0, 1] (1 = success, in between = partial credit).
        group_ids : array_like of int, shape (counts.sum(),)
            Position in ``prompt_ids`` of each reward's prompt; position ``i`` must occur exactly
            ``counts[i]`` times (any order).
        prompt_losses : array_like of float, shape (M,), optional
            Prompt-level losses (GDRO eq. 7, e.g. the trainer's GRPO loss per prompt). Used by
            the GDRO controllers in place of their reward-based default; ignored by the others.

        Raises
        ------
        ValueError, TypeError
            On any inconsistency (shapes, ranges, ``counts < 1``, rewards outside [0, 1]); the
            controller's state is then unchanged.
        """
        obs = self._observation_iv(prompt_ids, counts, rewards, group_ids, prompt_losses)
        self._check_observation(obs)
        self._observe(obs)
        self.step += 1

    def _check_observation(self, obs: Observation) -> None:
        """Controller-specific checks of an observation before any state changes."""

    @abstractmethod
    def _plan(self, ids: np.ndarray, total: int) -> StepPlan: ...

    @abstractmethod
    def _observe(self, obs: Observation) -> None: ...

    # -- checkpoints ---------------------------------------------------------------------------
    def _options(self) -> dict:
        """Plain-data options that shape the state and the trajectory (for the hyperparameters)."""
        return {}

    def _components(self) -> dict:
        """Stateful parts (objects with ``state_dict``/``load_state_dict``), by name."""
        return {}

    def _extra_state(self) -> dict:
        """State of the controller itself beyond step, generator and components (plain data and
        arrays; e.g. per-prompt reward histories, a round counter), stored as top-level keys."""
        return {}

    def _read_extra_state(self, reader: StateReader) -> dict:
        """Validate and read :meth:`_extra_state` from a state (fresh copies); must not modify
        the controller -- :meth:`_commit_extra_state` assigns after every check passed."""
        return {}

    def _commit_extra_state(self, extra: dict) -> None:
        """Assign what :meth:`_read_extra_state` returned."""

    def _hyperparameters(self) -> dict:
        upper = self.upper if self.upper != math.inf else "inf"  # strict JSON has no Infinity
        return {"controller": self.name, "n_prompts": self.n_prompts, "mean_budget": self.mean_budget,
                "lower": self.lower, "upper": upper, **plain(self._options())}

    def state_dict(self) -> dict:
        """Checkpoint: hyperparameters (name, sizes, budget, bounds, options), ``step``, the
        controller's generator state and the state of every component (predictor, binner,
        adversaries). Constructor inputs that are not state -- ``embeddings``, ``true_success``
        -- are not stored (the GP/ridge predictors store a fingerprint of the embeddings)."""
        comps = {k: v.state_dict() for k, v in self._components().items()}
        return new_state(self, self._hyperparameters(), step=self.step, rng=rng_state(self._rng), components=comps,
                         **self._extra_state())

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` into a controller built with the same arguments.

        Raises ``ValueError``/``TypeError`` on another controller, version or hyperparameters,
        or a bad component state; the controller (and every component) is then unchanged.
        """
        load_atomically(self, state, self._load)

    def _load(self, state: Any) -> None:
        r = StateReader(self, state, self._hyperparameters())
        step = r.int("step", lo=0)
        rng = r.rng("rng", self._rng)
        comps = r.mapping("components")
        mine = self._components()
        if set(comps) != set(mine):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state['components'] has "
                             f"{sorted(comps)}, expected {sorted(mine)}")
        extra = self._read_extra_state(r)
        for key, comp in mine.items():
            comp.load_state_dict(comps[key])
        self.step = step
        self._rng.bit_generator.state = rng
        self._commit_extra_state(extra)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, n_prompts={self.n_prompts}, "
                f"mean_budget={self.mean_budget}, lower={self.lower}, upper={self.upper}, step={self.step})")


# -- integer filling helpers shared by the controllers --------------------------------------------
def even_split(total: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` integers summing to ``total``, each ``floor(total / m)`` or one more; the ``total mod
    m`` extra units go to positions drawn uniformly without replacement (no position bias)."""
    base, extra = divmod(total, m)
    out = np.full(m, base, dtype=np.int64)
    if extra:
        out[rng.choice(m, extra, replace=False)] += 1
    return out


def fix_total(counts: np.ndarray, total: int, lower: int, upper: float, rng: np.random.Generator) -> np.ndarray:
    """Move ``counts`` (within ``[lower, upper]``) to sum exactly to ``total`` by unit steps.

    Each round adds (or removes) one rollout to (from) up to ``|deficit|`` distinct prompts that
    can still move, drawn uniformly; needs ``m * lower <= total <= m * upper``.
    """
    out = counts.astype(np.int64, copy=True)
    deficit = total - int(out.sum())
    while deficit != 0:
        sign = 1 if deficit > 0 else -1
        movable = np.flatnonzero(out < upper) if sign > 0 else np.flatnonzero(out > lower)
        if movable.size == 0:  # pragma: no cover - excluded by the feasibility checks
            raise RuntimeError(f"cannot reach the budget {total} within [{lower}, {upper}]")
        k = min(abs(deficit), movable.size)
        out[rng.choice(movable, k, replace=False)] += sign
        deficit -= sign * k
    return out
