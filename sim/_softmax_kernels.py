"""Numba kernels of :class:`sim.SoftmaxRLVR` and their plain-NumPy twins (tested against each other).

The kernels read the answer features ``phi[ids[i]]`` in place (no gathered ``(P, K, d)`` copy) and
fuse the per-prompt work: logits, softmax, inverse-CDF sampling and reward lookup for a rollout;
per-answer advantage weights, the exact score correction and the contraction with ``phi`` for a
gradient. Sampling takes pre-drawn uniforms ``u`` (from the caller's Generator) so that kernel and
twin make identical draws: rollout ``j`` of prompt ``i`` takes the answer
``a = #{b < K - 1 : u_j >= cdf_i[b]}`` with ``cdf_i`` the running sum of ``pi(. | q_i)``.
"""

from __future__ import annotations

import numba
import numpy as np

# reassociation lets LLVM vectorise the length-d dot products (4-5x faster); no flag that assumes
# finite values is set, so NaN/inf semantics are kept (docs/architecture.md, "Conventions")
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST)
def rollout_kernel(phi, theta, ids, counts, u, reward_table, probs, actions, rewards):  # pragma: no cover - compiled
    """Fills ``probs`` (P, K), ``actions`` (N,) and ``rewards`` (N,)."""
    n_prompts = ids.shape[0]
    k_ans = phi.shape[1]
    dim = phi.shape[2]
    cdf = np.empty(k_ans)
    pos = 0
    for i in range(n_prompts):
        q = ids[i]
        hi = -np.inf
        for a in range(k_ans):
            s = 0.0
            for c in range(dim):
                s += phi[q, a, c] * theta[c]
            probs[i, a] = s
            hi = max(hi, s)
        total = 0.0
        for a in range(k_ans):
            e = np.exp(probs[i, a] - hi)
            probs[i, a] = e
            total += e
        run = 0.0
        for a in range(k_ans):
            probs[i, a] /= total
            run += probs[i, a]
            cdf[a] = run
        for _ in range(counts[i]):
            x = u[pos]
            a = 0
            while a < k_ans - 1 and x >= cdf[a]:
                a += 1
            actions[pos] = a
            rewards[pos] = reward_table[q, a]
            pos += 1


@numba.njit(cache=True, fastmath=_FAST)
def gradient_kernel(phi, ids, probs, group_ids, actions, weights, out):  # pragma: no cover - compiled
    """``out = sum_i sum_a (W[i, a] - (sum_b W[i, b]) probs[i, a]) phi[ids[i], a]`` with
    ``W[i, a] = sum of weights of prompt i's rollouts that chose a``."""
    n_prompts, k_ans = probs.shape
    dim = phi.shape[2]
    w = np.zeros((n_prompts, k_ans))
    for j in range(group_ids.shape[0]):
        w[group_ids[j], actions[j]] += weights[j]
    for c in range(dim):
        out[c] = 0.0
    for i in range(n_prompts):
        row = 0.0
        for a in range(k_ans):
            row += w[i, a]
        q = ids[i]
        for a in range(k_ans):
            coef = w[i, a] - row * probs[i, a]
            if coef != 0.0:
                for c in range(dim):
                    out[c] += coef * phi[q, a, c]


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax with max subtraction (fresh array)."""
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def rollout_numpy(phi, theta, ids, counts, u, reward_table):
    """NumPy twin of :func:`rollout_kernel`: returns ``(probs, actions, rewards)``."""
    probs = softmax_rows(phi[ids] @ theta)
    gid = np.repeat(np.arange(ids.shape[0]), counts)
    cdf = np.cumsum(probs, axis=1)[:, :-1]
    actions = (u[:, None] >= cdf[gid]).sum(axis=1).astype(np.int64)
    return probs, actions, reward_table[ids[gid], actions]


def gradient_numpy(phi, ids, probs, group_ids, actions, weights):
    """NumPy twin of :func:`gradient_kernel` (gathers ``phi[ids]``)."""
    p, k = probs.shape
    w = np.bincount(group_ids * k + actions, weights=weights, minlength=p * k).reshape(p, k)
    w = w - w.sum(axis=1, keepdims=True) * probs
    return w.ravel() @ phi[ids].reshape(p * k, phi.shape[2])
