"""Controller-driven training on :class:`sim.SoftmaxRLVR`, shared by the ``training`` and ``gdro`` studies.

One step (the protocol of :mod:`bandits.controllers.base`): draw a mini-batch of training prompts, run the
controller's step with :func:`bandits.controllers.sample_step` -- its plan (rollouts per prompt and
advantage multipliers), the extra rounds of a controller that samples in rounds, and its training
selection -- roll out, estimate the gradient with the study's estimator on the selected rollouts
and the plan's multipliers, feed every generated rollout back to the controller, and take an Adam
step. The caller gets the step's ``(ids, plan, batch)`` *before* the update, so diagnostics see
the policy that produced the rollouts; ``batch`` holds every generated rollout of every round
(``batch.counts`` may be 0 for a prompt a controller skipped).

Training selection (:class:`bandits.controllers.TrainSelection`): the gradient is the estimator's
on the selected rollouts only, normalised over the prompts that keep at least one rollout (a
dropped group is not in the batch, as in DAPO's filtered batch); per-prompt ``baselines`` replace
the estimator's baseline (advantage ``r - b``); a prompt flagged for ``reuse`` gets one more
rollout in its training group: the most recent correct answer (reward 1) the trainer saw for it
at an earlier step (AR3PO's response reuse; the score is evaluated at the current policy, like
every rollout of the step; a prompt for which the trainer holds no such answer -- e.g. a
controller restored from a checkpoint into a fresh trainer -- gets none). For every single-round controller without a selection rule the
gradient is computed exactly as before (same draws, same arithmetic).

Pairing: the prompt batches come from the task's seed alone (stream ``(seed, 1)``), so every
controller of a seed trains on the same environment and the same sequence of mini-batches; the
rollouts come from stream ``(seed, 2)`` and the controller's own randomness from ``(seed, 3)``.

The positive-control arm ``"uniform-2x"`` is uniform allocation with twice the mean budget (same
bounds): what more rollouts -- the resource allocation redistributes -- buy in the same regime.

The reference learner ``"exact-gradient"`` replaces the rollout estimate by the exact gradient of
the same mini-batch (:meth:`sim.SoftmaxRLVR.true_gradient`): it has no rollout noise at all, so no
allocation of rollouts can do better than it in expectation when the estimator is unbiased (RLOO
is unbiased for every group size ``n >= 2``; an allocation changes only its variance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..batch import RolloutBatch
from ..optim import Adam
from ..softmax_rlvr import SoftmaxRLVR
from ._common import EpochSampler, env_options, stream

EXACT = "exact-gradient"
"""Name of the rollout-free reference learner."""
UNIFORM_2X = "uniform-2x"
"""Name of the positive-control arm: uniform allocation at twice the mean budget."""



def make_split_env(env_cfg: dict, seed: int) -> SoftmaxRLVR:
    """A :class:`SoftmaxRLVR` with ``n_prompts + n_test`` prompts (task drawn from stream ``(seed, 0)``):
    ids ``[0, n_prompts)`` are the training set, the last ``n_test`` a held-out test set drawn from
    the same distribution (every prompt is an independent draw, so the split is random). The
    simulator options of :func:`env_options` present in ``env_cfg`` are passed through."""
    return SoftmaxRLVR(
        n_prompts=env_cfg["n_prompts"] + env_cfg["n_test"], n_answers=env_cfg["n_answers"], dim=env_cfg["dim"],
        seed=stream(seed, 0), **env_options(env_cfg),
    )


def make_study_controller(name: str, env: SoftmaxRLVR, budget: dict, seed: int, options: dict | None = None) -> Any:
    """Build controller ``name`` for ``env`` with the study's budget; prompt embeddings and (for
    ``oracle``) the exact success probabilities are passed where the controller takes them."""
    from bandits.controllers import controller_options, make_controller

    valid = controller_options(name)
    opts = dict(options or {})
    if "embeddings" in valid:
        opts["embeddings"] = env.embeddings
    if "true_success" in valid:
        opts["true_success"] = env.success_prob
    return make_controller(name, n_prompts=env.n_prompts, mean_budget=budget["mean_budget"], lower=budget["lower"],
                           upper=budget["upper"], seed=stream(seed, 3), **opts)


def learner_budget(name: str, budget: dict) -> dict:
    """The budget learner ``name`` spends: :data:`UNIFORM_2X` doubles ``mean_budget`` (bounds kept;
    ``upper`` raised to the doubled mean if it was below), every other learner the study's."""
    if name != UNIFORM_2X:
        return dict(budget)
    doubled = 2 * budget["mean_budget"]
    return {**budget, "mean_budget": doubled, "upper": max(budget["upper"], doubled)}


def make_learner(name: str, env: SoftmaxRLVR, budget: dict, seed: int) -> Any:
    """The controller of learner ``name`` (``None`` for :data:`EXACT`; :data:`UNIFORM_2X` is the
    ``uniform`` controller at :func:`learner_budget`; anything else a registered controller)."""
    if name == EXACT:
        return None
    if name == UNIFORM_2X:
        return make_study_controller("uniform", env, learner_budget(name, budget), seed)
    return make_study_controller(name, env, budget, seed)


class ControlledTrainer:
    """Training loop of one (seed, controller) task.

    Parameters
    ----------
    env : SoftmaxRLVR
    controller : Controller or None
        ``None`` for the :data:`EXACT` reference learner (exact batch gradient, no rollouts).
    train_cfg : dict
        ``batch`` (prompts per step), ``lr`` (Adam step), ``estimator`` (``"rloo"``, ``"grpo"``,
        ``"drgrpo"``).
    n_train : int
        Training prompts are ids ``[0, n_train)``.
    seed : int
    """

    def __init__(self, env: SoftmaxRLVR, controller: Any, train_cfg: dict, n_train: int, seed: int) -> None:
        self.env = env
        self.ctrl = controller
        self.estimator = train_cfg["estimator"]
        self.lr = float(train_cfg["lr"])
        self.sampler = EpochSampler(n_train, int(train_cfg["batch"]), stream(seed, 1))
        self.rollout_rng = stream(seed, 2)
        self.opt = Adam(env.dim)
        self.steps_done = 0
        self.last_step: Any = None
        self.bank = np.full(env.n_prompts, -1, dtype=np.int64)  # a correct answer per prompt (-1: none yet)

    def sample(self) -> tuple[np.ndarray, Any, Any]:
        """Draw the next mini-batch, run the controller's step (plan, rounds, selection) and roll
        it out: ``(ids, plan, batch)`` (``plan`` and ``batch`` are None for the exact-gradient
        learner); :attr:`last_step` holds the controller's :class:`bandits.controllers.StepRollouts`.
        Call :meth:`update` next."""
        from bandits.controllers import sample_step

        ids = self.sampler.next()
        if self.ctrl is None:
            self.last_step = None
            return ids, None, None
        rounds: list[RolloutBatch] = []

        def generate(sub_ids: np.ndarray, counts: np.ndarray):
            b = self.env.rollout(sub_ids, counts, self.rollout_rng)
            rounds.append(b)
            return b.rewards, b.group_ids, b

        step = sample_step(self.ctrl, ids, generate)
        self.last_step = step
        return ids, step.plan, merge_rounds(self.env, step)

    def update(self, ids: np.ndarray, plan: Any, batch: Any) -> None:
        """Gradient estimate on the training selection, controller feedback, Adam step."""
        if self.ctrl is None:
            g = self.env.true_gradient(ids)
        else:
            step = self.last_step
            g = selected_gradient(self.env, batch, step.selection, plan.multipliers, self.estimator, self.bank)
            self.ctrl.observe(ids, step.counts, step.rewards, step.group_ids)
            correct = batch.rewards >= 1.0  # the bank of correct answers for response reuse
            self.bank[batch.ids[batch.group_ids[correct]]] = batch.actions[correct]
        self.env.step(self.opt.direction(g), self.lr)
        self.steps_done += 1


def merge_rounds(env: SoftmaxRLVR, step: Any) -> RolloutBatch:
    """One :class:`sim.RolloutBatch` with every round of a step (rollouts in round order,
    ``group_ids`` = positions in ``step.prompt_ids``, ``counts`` the step's totals, 0 for a
    skipped prompt). A single round over the whole batch is returned as generated."""
    ids = step.prompt_ids
    parts = step.rounds
    if len(parts) == 1 and parts[0].positions.size == ids.size:
        return parts[0].payload
    probs = env.policy(ids) if any(int(c) == 0 for c in step.counts) else np.empty((ids.size, env.n_answers))
    for part in parts:  # the policy does not change between rounds; keep the sampler's own numbers
        probs[part.positions] = part.payload.probs
    actions = np.concatenate([part.payload.actions for part in parts]) if parts else np.zeros(0, dtype=np.int64)
    return RolloutBatch(ids=ids, counts=step.counts.copy(), group_ids=step.group_ids, actions=actions,
                        rewards=step.rewards, probs=probs)


def selected_gradient(env: SoftmaxRLVR, batch: RolloutBatch, selection: Any, multipliers: np.ndarray,
                      estimator: str, bank: np.ndarray) -> np.ndarray:
    """The gradient estimate on a step's training selection (module docstring)."""
    if selection.trivial and int(batch.counts.min()) > 0:
        return env.gradient(batch, estimator, multipliers)
    m = batch.ids.size
    mask = selection.train_mask
    reuse = np.zeros(m, dtype=bool) if selection.reuse is None else selection.reuse.copy()
    reuse &= bank[batch.ids] >= 0
    n_sel = np.bincount(batch.group_ids[mask], minlength=m) + reuse
    keep = np.flatnonzero(n_sel > 0)
    if keep.size == 0:
        return np.zeros(env.dim)
    new_pos = np.full(m, -1, dtype=np.int64)
    new_pos[keep] = np.arange(keep.size)
    extra = np.flatnonzero(reuse)
    group_ids = np.concatenate([new_pos[batch.group_ids[mask]], new_pos[extra]])
    actions = np.concatenate([batch.actions[mask], bank[batch.ids[extra]]])
    rewards = np.concatenate([batch.rewards[mask], np.ones(extra.size)])
    train = RolloutBatch(ids=batch.ids[keep], counts=n_sel[keep].astype(np.int64), group_ids=group_ids,
                         actions=actions, rewards=rewards, probs=batch.probs[keep])
    base = None if selection.baselines is None else selection.baselines[keep]
    return env.gradient(train, estimator, multipliers[keep], baselines=base)


def all_equal_groups(batch: Any) -> np.ndarray:
    """Whether each group of a rollout batch has all-equal rewards (zero RLOO/GRPO advantages:
    no learning signal), bool ``(P,)``."""
    p = batch.counts.size
    lo = np.full(p, np.inf)
    hi = np.full(p, -np.inf)
    np.minimum.at(lo, batch.group_ids, batch.rewards)
    np.maximum.at(hi, batch.group_ids, batch.rewards)
    return lo == hi
