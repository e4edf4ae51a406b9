"""Helpers shared by the simulator studies: seeded streams, epoch mini-batches, the training loop,
and confidence-interval summaries of per-seed curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from solvers.claims import Estimate, mean_ci, minimum_detectable_effect

from ..optim import Adam
from ..softmax_rlvr import SoftmaxRLVR


def stream(seed: int, *tags: int) -> np.random.Generator:
    """An independent Generator for ``(seed, *tags)`` (SeedSequence entropy; no global state)."""
    return np.random.default_rng([int(seed), *(int(t) for t in tags)])


ENV_OPTIONS = ("mix", "n_topics", "shared_skill", "topic_spread", "answer_noise", "prior_scale",
               "embedding_noise", "difficulty_signal", "embedding")
"""Optional :class:`SoftmaxRLVR` keywords a study's ``env`` configuration may set (a regime); absent
or ``None`` entries keep the simulator's defaults."""


def env_options(env_cfg: dict) -> dict:
    """The :data:`ENV_OPTIONS` set in ``env_cfg`` (``None`` means the simulator's default)."""
    unknown = sorted(set(env_cfg) - {"n_prompts", "n_test", "n_answers", "dim", *ENV_OPTIONS})
    if unknown:
        raise ValueError(f"unknown env options {unknown}; valid: n_prompts, n_test, n_answers, dim, {list(ENV_OPTIONS)}")
    return {k: env_cfg[k] for k in ENV_OPTIONS if env_cfg.get(k) is not None}


def make_env(env_cfg: dict, seed: int) -> SoftmaxRLVR:
    """The study's :class:`SoftmaxRLVR` for ``seed`` (task drawn from stream ``(seed, 0)``), with the
    regime's :data:`ENV_OPTIONS` (simulator defaults where unset)."""
    return SoftmaxRLVR(
        n_prompts=env_cfg["n_prompts"], n_answers=env_cfg["n_answers"], dim=env_cfg["dim"], seed=stream(seed, 0),
        **env_options(env_cfg),
    )


class EpochSampler:
    """Mini-batches of ``batch`` distinct prompts; every prompt once per epoch, order reshuffled
    each epoch (a leftover smaller than ``batch`` starts the next epoch's permutation)."""

    def __init__(self, n_prompts: int, batch: int, rng: np.random.Generator):
        if batch > n_prompts:
            raise ValueError(f"batch {batch} is larger than n_prompts {n_prompts}")
        self.n, self.batch, self.rng = n_prompts, batch, rng
        self._perm = rng.permutation(n_prompts)
        self._pos = 0

    def next(self) -> np.ndarray:
        if self._pos + self.batch > self.n:
            self._perm = self.rng.permutation(self.n)
            self._pos = 0
        ids = self._perm[self._pos : self._pos + self.batch]
        self._pos += self.batch
        return np.sort(ids)


class Trainer:
    """Uniform-allocation training on a :class:`SoftmaxRLVR`: each step draws a mini-batch, rolls
    out ``rollouts`` answers per prompt, estimates the gradient with ``estimator`` and takes an Adam
    step of size ``lr``. ``step()`` returns ``(ids, batch)`` of the step just taken (the batch was
    drawn *before* the update)."""

    def __init__(self, env: SoftmaxRLVR, train_cfg: dict, rng: np.random.Generator):
        self.env = env
        self.cfg = train_cfg
        self.rng = rng
        self.sampler = EpochSampler(env.n_prompts, train_cfg["batch"], rng)
        self.opt = Adam(env.dim)

    def next_ids(self) -> np.ndarray:
        return self.sampler.next()

    def update(self, batch: Any) -> None:
        g = self.env.gradient(batch, self.cfg["estimator"])
        self.env.step(self.opt.direction(g), self.cfg["lr"])

    def step(self):
        ids = self.next_ids()
        batch = self.env.rollout(ids, self.cfg["rollouts"], self.rng)
        self.update(batch)
        return ids, batch


def curve_ci(samples: Any) -> tuple[list[float], list[float], list[float]]:
    """Per-column mean and 95 % CI of a (seeds, points) array: ``(mean, low, high)`` lists."""
    arr = np.asarray(samples, dtype=np.float64)
    est = [mean_ci(arr[:, j]) for j in range(arr.shape[1])]
    return [e.mean for e in est], [e.low for e in est], [e.high for e in est]


def estimates(values: Sequence[float]) -> Estimate:
    return mean_ci(np.asarray(values, dtype=np.float64))


def geometric_mean(x: np.ndarray) -> float:
    """``exp(mean(log x))`` of positive values (NaN when empty)."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.exp(np.mean(np.log(x)))) if x.size else float("nan")


def _control_passes(control: Estimate, claim: Estimate, greater: float | None, less: float | None) -> tuple[bool, float]:
    t0 = float(greater if greater is not None else less)
    sign = 1.0 if greater is not None else -1.0
    effect = sign * (control.mean - t0)
    mde = minimum_detectable_effect(claim)
    on_side = control.defined and (control.low > t0 if greater is not None else control.high < t0)
    return bool(on_side and np.isfinite(mde) and effect >= mde), effect


def binding_control(claim: Estimate, controls: dict, *, greater: float | None = None,
                    less: float | None = None) -> tuple[str, Estimate, str]:
    """Of several positive controls of one claim, the one that decides whether the regime is powered.

    Every control must pass (:func:`solvers.claims.make_claim`'s rule: its interval on the claimed
    side of the threshold and its effect at least the claim's minimum detectable effect). The
    binding control is the first one that fails, or, when all pass, the one with the smallest
    effect; passing it as the claim's control therefore makes the verdict *under-powered* as soon
    as any control fails. Returns ``(label, estimate, note)``, the note stating the other controls'
    values and whether each passes.
    """
    if (greater is None) == (less is None):
        raise ValueError("pass exactly one of greater=, less=")
    if not controls:
        raise ValueError("controls must name at least one positive control")
    status = {label: _control_passes(est, claim, greater, less) for label, est in controls.items()}
    failing = [label for label, (ok, _) in status.items() if not ok]
    chosen = failing[0] if failing else min(status, key=lambda k: status[k][1])
    others = [f"control {label} = {controls[label].format()} ({'passes' if status[label][0] else 'fails'})"
              for label in controls if label != chosen]
    return chosen, controls[chosen], "; ".join(others)
