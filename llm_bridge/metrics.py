"""Per-step success metrics of a ragged rollout batch (pure NumPy).

With a different number of rollouts per prompt, averages over *rollouts* over-weight the prompts
that got more of them; every metric here is an average over *prompts* of a per-prompt quantity.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

from solvers._validation import as_float_array, as_int_array, check_int_scalar

__all__ = ["pass_at_k", "success_metrics"]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt from ``c`` successes in ``n >= k`` samples (Chen et al. 2021,
    "Evaluating Large Language Models Trained on Code", eq. 1): ``1 - C(n - c, k) / C(n, k)``."""
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass_at_k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def success_metrics(rewards: Any, group_ids: Any, n_groups: int, *, k: int = 4) -> dict[str, float | None]:
    """Prompt-averaged metrics of one ragged batch.

    A rollout is a *success* when its reward is exactly 1 (as in the controllers' GDRO eq. 10).

    Returns
    -------
    dict
        ``accuracy``: mean over prompts of the per-prompt success rate (mean@n);
        ``reward``: mean over prompts of the per-prompt mean reward;
        ``pass_at_n``: share of prompts with at least one success among their rollouts;
        ``pass_at_k``: mean unbiased pass@k over the prompts with at least ``k`` rollouts
        (None if none has);
        ``solved_all`` / ``solved_none``: share of prompts whose rollouts all succeed / all fail.
    """
    r = as_float_array(rewards, "rewards", ndim=1)
    g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    m = check_int_scalar(n_groups, "n_groups", lo=1)
    kk = check_int_scalar(k, "k", lo=1)
    n = np.bincount(g, minlength=m)
    if n.size != m or np.any(n == 0):
        raise ValueError(f"every group 0..{m - 1} needs at least one rollout")
    ok = (r >= 1.0).astype(np.float64)
    c = np.bincount(g, weights=ok, minlength=m)
    rate = c / n
    mean_r = np.bincount(g, weights=r, minlength=m) / n
    eligible = n >= kk
    pk = [pass_at_k(int(n[i]), round(c[i]), kk) for i in np.flatnonzero(eligible)]
    return {
        "accuracy": float(rate.mean()),
        "reward": float(mean_r.mean()),
        "pass_at_n": float((c > 0).mean()),
        "pass_at_k": float(np.mean(pk)) if pk else None,
        "solved_all": float((c == n).mean()),
        "solved_none": float((c == 0).mean()),
    }
