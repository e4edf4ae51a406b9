"""One step of a controller with sampling in rounds: :func:`sample_step` and :class:`StepRollouts`.

The driver runs the protocol of :mod:`bandits.controllers.base` -- ``plan``, then ``extend``
until it returns zeros, then ``select`` -- around a caller-supplied generator, and returns the
step's rollouts in one ragged batch. The same driver serves every controller: a single-round
controller gets exactly one call of the generator (with the whole batch when every prompt has
rollouts, so its draws are those of a plain ``plan`` -> generate loop), and ``select`` returns
"every rollout". The caller trains on the selection and then closes the step with
``ctrl.observe(prompt_ids, step.counts, step.rewards, step.group_ids)``.

The generator is called once per round as ``generate(ids, counts)`` with the prompt ids of the
round (a sub-batch: only prompts with ``counts > 0``) and their counts, and returns
``(rewards, group_ids, payload)``: flat rewards in [0, 1], the position *in the sub-batch* of each
rollout's prompt, and anything the caller needs later (token tensors, simulator actions). The
payloads come back in :attr:`StepRollouts.rounds` with the positions of their sub-batch in the
step's batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from solvers._validation import as_float_array, as_int_array

from .base import Controller, StepPlan, TrainSelection, supports_rounds

__all__ = ["Round", "StepRollouts", "close_step", "sample_step"]


@dataclass(frozen=True)
class Round:
    """One generation round of a step.

    Attributes
    ----------
    positions : ndarray of int64, shape (P,)
        Positions in the step's ``prompt_ids`` of the prompts sampled in this round.
    counts : ndarray of int64, shape (P,)
        Rollouts generated for each of them in this round.
    start : int
        Index of the round's first rollout in the step's flat arrays.
    payload : Any
        What the generator returned beside the rewards.
    """

    positions: np.ndarray
    counts: np.ndarray
    start: int
    payload: Any


@dataclass(frozen=True)
class StepRollouts:
    """All rollouts of one step and the controller's decisions (returned by :func:`sample_step`).

    Attributes
    ----------
    prompt_ids : ndarray of int64, shape (M,)
    plan : StepPlan
        The first round's plan (multipliers, bins, p_hat).
    counts : ndarray of int64, shape (M,)
        Rollouts generated per prompt over every round (0 for a skipped prompt).
    rewards : ndarray of float64, shape (R,)
        Every generated rollout's reward, round after round.
    group_ids : ndarray of int64, shape (R,)
        Position in ``prompt_ids`` of each rollout's prompt.
    rounds : tuple of Round
        The generation rounds, in order.
    selection : TrainSelection
        Which rollouts enter the gradient.
    budget : int
        The step's budget ``M * mean_budget`` (``counts.sum() <= budget``).
    """

    prompt_ids: np.ndarray
    plan: StepPlan
    counts: np.ndarray
    rewards: np.ndarray
    group_ids: np.ndarray
    rounds: tuple[Round, ...]
    selection: TrainSelection
    budget: int

    @property
    def total(self) -> int:
        """Rollouts generated in the step (every round, dropped groups included)."""
        return int(self.counts.sum())


def _generated(out: Any, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("generate(ids, counts) must return a tuple (rewards, group_ids, payload)")
    rewards = as_float_array(out[0], "rewards returned by generate", ndim=1)
    bad = (rewards < 0.0) | (rewards > 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"rewards returned by generate must be in [0, 1], got {float(rewards[i])!r} at index {i}")
    gids = as_int_array(out[1], "group_ids returned by generate", ndim=1)
    if rewards.shape != gids.shape or gids.size != int(counts.sum()):
        raise ValueError(f"generate(ids, counts) must return counts.sum() = {int(counts.sum())} rewards and "
                         f"group_ids, got {rewards.size} and {gids.size}")
    per = np.bincount(gids, minlength=counts.size) if gids.size and gids.min() >= 0 else None
    if per is None or per.size != counts.size or not np.array_equal(per, counts):
        raise ValueError("generate(ids, counts) must return group_ids listing position i of its ids exactly "
                         "counts[i] times")
    return rewards, gids, out[2]


def sample_step(controller: Controller, prompt_ids: Any,
                generate: Callable[[np.ndarray, np.ndarray], tuple[Any, Any, Any]], *,
                check_generated: bool = True) -> StepRollouts:
    """Plan, generate, extend round after round, and select: one step of ``controller``.

    Parameters
    ----------
    controller : Controller
    prompt_ids : array_like of int, shape (M,)
    generate : callable
        ``generate(ids, counts) -> (rewards, group_ids, payload)`` (module docstring); called
        once per round with the prompts that get rollouts in that round.
    check_generated : bool, default True
        Validate what ``generate`` returns (shapes, rewards in [0, 1], group ids). A caller
        whose generator builds float64 rewards in [0, 1] and int64 group ids by construction
        (e.g. a simulator) may skip it.

    Returns
    -------
    StepRollouts
        Does *not* call ``observe``: train on ``selection``, then call
        ``controller.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids)``.

    Examples
    --------
    >>> import numpy as np
    >>> from bandits.controllers import make_controller, sample_step
    >>> p = np.array([0.05, 0.5, 0.95, 0.3])
    >>> rng = np.random.default_rng(0)
    >>> def generate(ids, counts):
    ...     g = np.repeat(np.arange(ids.size), counts)
    ...     return (rng.random(g.size) < p[ids][g]).astype(float), g, None
    >>> ctrl = make_controller("reinforce-ada", n_prompts=4, mean_budget=8, lower=2, upper=16, seed=0)
    >>> step = sample_step(ctrl, [0, 1, 2, 3], generate)
    >>> step.total <= 32, len(step.rounds) >= 1
    (True, True)
    >>> ctrl.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids)
    """
    if not isinstance(controller, Controller):
        raise TypeError(f"controller must be a bandits.controllers.Controller, got {type(controller).__name__}")
    if not callable(generate):
        raise TypeError(f"generate must be callable (ids, counts) -> (rewards, group_ids, payload), "
                        f"got {type(generate).__name__}")
    plan = controller.plan(prompt_ids)
    ids = controller._ids_iv(prompt_ids)
    m = ids.size
    budget = controller.budget_for(m)
    counts = np.zeros(m, dtype=np.int64)
    rewards: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    rounds: list[Round] = []
    start = 0
    ask = plan.counts
    while True:
        pos = np.flatnonzero(ask > 0)
        if pos.size == 0:
            break
        sub = ask[pos]
        # a round over the whole batch passes the caller's arrays unchanged (same draws as plan -> generate)
        out = generate(ids if pos.size == m else ids[pos], sub)
        r, g, payload = _generated(out, sub) if check_generated else out
        rewards.append(r)
        groups.append(pos[g])
        rounds.append(Round(pos, sub.copy(), start, payload))
        start += r.size
        counts[pos] += sub
        if not supports_rounds(controller):
            break
        # the arrays were built here from validated generator output: summarise without re-validating
        obs = controller._summarize(ids, counts.copy(), np.concatenate(rewards), np.concatenate(groups), None)
        ask = controller._checked_extension(obs, budget)
    flat_r = np.concatenate(rewards) if rewards else np.zeros(0)
    flat_g = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    if type(controller)._select is Controller._select:  # no selection rule: everything
        selection = TrainSelection(np.ones(flat_r.size, dtype=bool))
    else:
        selection = controller._checked_selection(controller._summarize(ids, counts, flat_r, flat_g, None))
    return StepRollouts(ids, plan, counts, flat_r, flat_g, tuple(rounds), selection, budget)


def close_step(controller: Controller, step: StepRollouts, *, prompt_losses: Any = None) -> None:
    """``controller.observe`` for a step that :func:`sample_step` ran, without re-validating the
    arrays it built (the same learning update; ``prompt_losses`` are validated as by
    ``observe``)."""
    if not isinstance(step, StepRollouts):
        raise TypeError(f"step must be a StepRollouts from sample_step, got {type(step).__name__}")
    if prompt_losses is not None:
        controller.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids, prompt_losses=prompt_losses)
        return
    obs = controller._summarize(step.prompt_ids, step.counts, step.rewards, step.group_ids, None)
    controller._check_observation(obs)
    controller._observe(obs)
    controller.step += 1
