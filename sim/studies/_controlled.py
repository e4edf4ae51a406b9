"""Controller-driven training on :class:`sim.SoftmaxRLVR`, shared by the ``training`` and ``gdro`` studies.

One step (DESIGN "data flow of one training step"): draw a mini-batch of training prompts, ask the
controller for a :class:`bandits.controllers.StepPlan` (rollouts per prompt and advantage
multipliers), roll out, estimate the gradient with the study's estimator and the plan's
multipliers, feed the rewards back to the controller, and take an Adam step. The caller gets the
step's ``(ids, plan, batch)`` *before* the update, so diagnostics see the policy that produced the
rollouts.

Pairing: the prompt batches come from the task's seed alone (stream ``(seed, 1)``), so every
controller of a seed trains on the same environment and the same sequence of mini-batches; the
rollouts come from stream ``(seed, 2)`` and the controller's own randomness from ``(seed, 3)``.

The reference learner ``"exact-gradient"`` replaces the rollout estimate by the exact gradient of
the same mini-batch (:meth:`sim.SoftmaxRLVR.true_gradient`): it has no rollout noise at all, so no
allocation of rollouts can do better than it in expectation when the estimator is unbiased (RLOO
is unbiased for every group size ``n >= 2``; an allocation changes only its variance).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..optim import Adam
from ..softmax_rlvr import SoftmaxRLVR
from ._common import EpochSampler, stream

EXACT = "exact-gradient"
"""Name of the rollout-free reference learner."""


_ENV_OPTIONS = ("n_topics", "shared_skill", "topic_spread", "answer_noise", "prior_scale", "embedding_noise",
                "difficulty_signal")
"""Optional :class:`SoftmaxRLVR` keywords a study's ``env`` config may set (others keep their defaults)."""


def make_split_env(env_cfg: dict, seed: int) -> SoftmaxRLVR:
    """A :class:`SoftmaxRLVR` with ``n_prompts + n_test`` prompts (task drawn from stream ``(seed, 0)``):
    ids ``[0, n_prompts)`` are the training set, the last ``n_test`` a held-out test set drawn from
    the same distribution (every prompt is an independent draw, so the split is random). The
    keywords of :data:`_ENV_OPTIONS` present in ``env_cfg`` are passed through."""
    extra = {k: env_cfg[k] for k in _ENV_OPTIONS if k in env_cfg}
    return SoftmaxRLVR(
        n_prompts=env_cfg["n_prompts"] + env_cfg["n_test"], n_answers=env_cfg["n_answers"], dim=env_cfg["dim"],
        mix=env_cfg.get("mix"), seed=stream(seed, 0), **extra,
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

    def sample(self) -> tuple[np.ndarray, Any, Any]:
        """Draw the next mini-batch, plan and roll it out: ``(ids, plan, batch)`` (``plan`` and
        ``batch`` are None for the exact-gradient learner). Call :meth:`update` next."""
        ids = self.sampler.next()
        if self.ctrl is None:
            return ids, None, None
        plan = self.ctrl.plan(ids)
        batch = self.env.rollout(ids, plan.counts, self.rollout_rng)
        return ids, plan, batch

    def update(self, ids: np.ndarray, plan: Any, batch: Any) -> None:
        """Gradient estimate, controller feedback, Adam step."""
        if self.ctrl is None:
            g = self.env.true_gradient(ids)
        else:
            g = self.env.gradient(batch, self.estimator, plan.multipliers)
            self.ctrl.observe(ids, plan.counts, batch.rewards, batch.group_ids)
        self.env.step(self.opt.direction(g), self.lr)
        self.steps_done += 1


def all_equal_groups(batch: Any) -> np.ndarray:
    """Whether each group of a rollout batch has all-equal rewards (zero RLOO/GRPO advantages:
    no learning signal), bool ``(P,)``."""
    p = batch.counts.size
    lo = np.full(p, np.inf)
    hi = np.full(p, -np.inf)
    np.minimum.at(lo, batch.group_ids, batch.rewards)
    np.maximum.at(hi, batch.group_ids, batch.rewards)
    return lo == hi
