"""Helpers shared by the simulator studies: seeded streams, epoch mini-batches, the training loop,
and confidence-interval summaries of per-seed curves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from solvers.claims import Estimate, mean_ci

from ..optim import Adam
from ..softmax_rlvr import SoftmaxRLVR


def stream(seed: int, *tags: int) -> np.random.Generator:
    """An independent Generator for ``(seed, *tags)`` (SeedSequence entropy; no global state)."""
    return np.random.default_rng([int(seed), *(int(t) for t in tags)])


def make_env(env_cfg: dict, seed: int) -> SoftmaxRLVR:
    """The study's :class:`SoftmaxRLVR` for ``seed`` (task drawn from stream ``(seed, 0)``)."""
    return SoftmaxRLVR(
        n_prompts=env_cfg["n_prompts"], n_answers=env_cfg["n_answers"], dim=env_cfg["dim"], seed=stream(seed, 0)
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
