"""Perf suite "sim": one :class:`sim.SoftmaxRLVR` training step (rollout + RLOO gradient estimate).

Ours: the validated public calls ``env.rollout(ids, 8, rng)`` then ``env.gradient(batch, "rloo")``
(Numba kernels that read the answer features in place; advantages from
:func:`solvers.group_advantages`), ``K = 16`` answers, ``d = 32``, 8 rollouts per prompt, ``P``
prompts drawn from a task of 4096 prompts. This project's target (:mod:`benchmarks.targets`): <= 2 ms at P = 256.

Peers measured in the same run; each draws its uniforms with one ``rng.random(P * 8)`` call as ours
does, so from the same Generator state all three draw the same answers -- that is how they are
checked against ours before timing:

* ``numpy loop`` -- the step as research code usually writes it: a Python loop over prompts, each
  with its own softmax, inverse-CDF draws, leave-one-out advantages and score vectors
  ``phi - pi @ phi``;
* ``numpy vectorised`` -- the kernels' NumPy twins (one gathered ``(P, K, d)`` feature block,
  batched softmax, one comparison matrix for the draws, ``bincount`` for the gradient).

JIT compile time is measured in a fresh interpreter with an empty Numba cache (``compile_s``).
"""

from __future__ import annotations

import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "sim"
DESCRIPTION = "SoftmaxRLVR step (rollout + RLOO gradient), K=16, d=32, 8 rollouts/prompt vs NumPy"

CASE = "SoftmaxRLVR step (rollout + rloo gradient) K=16 d=32 n=8"
N_ANSWERS, DIM, N_ROLLOUTS, N_TASK = 16, 32, 8, 4096

_COMPILE_SNIPPET = r"""
import json, time
import numpy as np
t = time.perf_counter()
from sim import SoftmaxRLVR
env = SoftmaxRLVR(n_prompts=64, n_answers=16, dim=32, seed=0)
out = {"import+build": time.perf_counter() - t}
t = time.perf_counter(); b = env.rollout(np.arange(64), 8, rng=0); env.gradient(b, "rloo")
out["step"] = time.perf_counter() - t
print(json.dumps(out))
"""


def step_numpy_loop(phi, theta, reward_table, ids, n, rng):
    """Per-prompt Python loop: softmax, inverse-CDF draws, RLOO advantages, exact score vectors."""
    u = rng.random(ids.shape[0] * n)
    grad = np.zeros(phi.shape[2])
    pos = 0
    for q in ids:
        f = phi[q]
        logits = f @ theta
        pi = np.exp(logits - logits.max())
        pi /= pi.sum()
        actions = np.searchsorted(np.cumsum(pi)[:-1], u[pos:pos + n], side="right")
        pos += n
        r = reward_table[q, actions]
        adv = r - (r.sum() - r) / (n - 1) if r.max() > r.min() else np.zeros(n)
        score = f[actions] - pi @ f
        grad += adv @ score / n
    return grad / len(ids)


def step_numpy_vectorised(phi, theta, reward_table, ids, n, rng):
    """The kernels' NumPy twins with the vectorised NumPy group advantages."""
    u = rng.random(ids.shape[0] * n)
    from sim._softmax_kernels import gradient_numpy, rollout_numpy
    from solvers.advantages import _group_advantages_numpy

    counts = np.full(ids.shape[0], n)
    probs, actions, rewards = rollout_numpy(phi, theta, ids, counts, u, reward_table)
    gid = np.repeat(np.arange(ids.shape[0]), n)
    adv = _group_advantages_numpy(rewards, "rloo", gid)
    return gradient_numpy(phi, ids, probs, gid, actions, adv / (n * ids.shape[0]))


def run(cfg: PerfConfig) -> list[Measurement]:
    from sim import SoftmaxRLVR

    compile_s = cold_start_times(cfg, NAME, _COMPILE_SNIPPET)[0].get("step")
    rng = np.random.default_rng(cfg.seed)
    env = SoftmaxRLVR(n_prompts=N_TASK, n_answers=N_ANSWERS, dim=DIM, seed=cfg.seed)
    env.theta = env.theta + 0.3 * rng.standard_normal(DIM)  # a policy away from the initial one
    phi, theta, table = env.features, env.theta, env.reward_table
    rows: list[Measurement] = []
    gate = PeerGate(cfg)
    for p in [256] if cfg.quick else [64, 256, 1024, 4096]:
        ids = rng.choice(N_TASK, size=p, replace=False)
        ours = env.gradient(env.rollout(ids, N_ROLLOUTS, np.random.default_rng(p)), "rloo")
        for name, fn in (("numpy loop", step_numpy_loop), ("numpy vectorised", step_numpy_vectorised)):
            peer = fn(phi, theta, table, ids, N_ROLLOUTS, np.random.default_rng(p))
            if not np.allclose(peer, ours, rtol=1e-9, atol=1e-12):
                raise RuntimeError(f"sim: {name} peer disagrees with ours at P={p}")
        note = f"{p} prompts x {N_ROLLOUTS} rollouts, K={N_ANSWERS}, d={DIM}"

        def ours_step(ids=ids):
            return env.gradient(env.rollout(ids, N_ROLLOUTS, rng), "rloo")

        rows.append(measure(cfg, suite=NAME, case=CASE, size=p, impl="SoftmaxRLVR (numba)", role="ours",
                            fn=ours_step, compile_s=compile_s, note=note + "; validation included"))
        for name, fn in (("numpy loop", step_numpy_loop), ("numpy vectorised", step_numpy_vectorised)):
            rows.append(measure(cfg, suite=NAME, case=CASE, size=p, impl=name, role="peer", gate=gate,
                                fn=lambda fn=fn, ids=ids: fn(phi, theta, table, ids, N_ROLLOUTS, rng),
                                note=note))
    return rows
