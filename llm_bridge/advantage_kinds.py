"""The registry of group-relative advantage kinds: the papers' definitions and each host's own.

A "kind" says how a step's (possibly shaped) rewards become advantages over the step's groups
(the rollouts of one prompt). Groups are ragged: flat rewards with integer ``group_ids``, any
number of rollouts per prompt. Every kind gives a group of one advantage 0 (there is no
within-group signal), and every group-relative kind (all but ``trl-normalize-then-sum``, which
centres by the batch mean as TRL does) gives a group of equal rewards 0.

The papers' kinds (float64, :func:`solvers.group_advantages`):

* ``grpo``   -- ``(r - mean) / (population std + 1e-6)`` (GDRO eq. 3, DRRO eq. 4.1);
* ``drgrpo`` -- ``r - mean`` (Dr.GRPO; VIP Sec. 3);
* ``rloo``   -- ``r - mean of the others = n / (n - 1) (r - mean)`` (VIP Sec. 3).

The hosts' kinds reproduce a framework's own arithmetic, operation for operation and in its
dtype (float32, torch), so that on equal groups they give the host's numbers bit for bit:

* ``trl-group`` / ``trl-batch`` / ``trl-none`` -- TRL's ``GRPOTrainer`` with ``scale_rewards``
  ``"group"`` (divide by the group's *sample* std + 1e-4), ``"batch"`` (by the whole batch's
  sample std + 1e-4) or ``"none"`` (centre only), its NaN-aware means (a completion that no reward
  function scored is left out of its group's statistics and gets 0);
* ``trl-normalize-then-sum`` -- the last stage of TRL's ``multi_objective_aggregation=
  "normalize_then_sum"``: the rewards (each reward function already normalised within its group
  by :func:`trl_normalize_then_sum_rewards`, then weighted and summed) centred by the *batch*
  mean and divided by the batch sample std + 1e-4;
* ``verl-grpo`` / ``verl-drgrpo`` / ``verl-rloo`` -- verl's ``grpo`` estimator with
  ``norm_adv_by_std_in_grpo`` true (sample std + ``epsilon`` 1e-6) or false, and verl's ``rloo``.

Hosts differ from the papers by more than rounding: a sample std is ``sqrt(n / (n - 1))`` times
the population std, so ``grpo`` advantages are 1.155x TRL's at n = 4 and 1.41x at n = 2. Two
deliberate departures from the hosts, both only where groups are uneven: a group of one gets 0
(verl's ``grpo`` / ``rloo`` give it its raw score; TRL never forms one), and the hosts' own code
has no ragged groups, so their statistics are taken over each real group (a NaN-padded
``(groups, largest group)`` table that *is* the host's ``view(-1, G)`` table when every group has
``G`` rollouts in order). torch is needed for the hosts' kinds only (the ``llm`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from solvers import group_advantages
from solvers._validation import as_int_array, check_finite_scalar

from ._deps import require

__all__ = [
    "ADVANTAGE_KINDS",
    "AdvantageKind",
    "get_advantage_kind",
    "kind_advantages",
    "trl_normalize_then_sum_rewards",
]


@dataclass(frozen=True)
class AdvantageKind:
    """One entry of :data:`ADVANTAGE_KINDS`.

    Attributes
    ----------
    name : str
    host : {"papers", "trl", "verl"}
        Whose convention it is.
    eps : float
        The std offset of the kind (0 where unused); :func:`kind_advantages` may override it.
    description : str
        The formula in one line.
    """

    name: str
    host: str
    eps: float
    description: str
    _compute: Callable[..., np.ndarray]

    def __call__(self, rewards: np.ndarray, group_ids: np.ndarray, sizes: np.ndarray, eps: float) -> np.ndarray:
        return self._compute(rewards, group_ids, sizes, eps)


# -- the papers' kinds (float64 NumPy/Numba) ----------------------------------------------------------
def _papers(kind: str) -> Callable[..., np.ndarray]:
    def compute(r: np.ndarray, g: np.ndarray, sizes: np.ndarray, eps: float) -> np.ndarray:
        scored = np.isfinite(r)
        if scored.all():
            return group_advantages(r, kind=kind, group_ids=g, eps=eps)
        out = np.zeros_like(r)  # unscored rows: out of the statistics, advantage 0
        if scored.any():
            out[scored] = group_advantages(r[scored], kind=kind, group_ids=g[scored], eps=eps)
        return out

    return compute


# -- the hosts' kinds (torch, float32, the hosts' operations) ------------------------------------------
def _torch():
    return require("torch")


def _nanstd(t: Any, dim: int | None = None) -> Any:
    """TRL's ``trl.trainer.utils.nanstd``, operation for operation (sample std ignoring NaN)."""
    torch = _torch()
    mean = torch.nanmean(t, dim=dim, keepdim=True)
    variance = torch.nanmean((t - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(t), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    variance *= correction
    std = torch.sqrt(variance)
    return std.squeeze() if dim is None else std.squeeze(dim)


def _table(values: Any, g: np.ndarray, sizes: np.ndarray) -> tuple[Any, Any, Any]:
    """NaN-padded ``(P, max size, ...)`` table of ``values`` (rows in their order within each group)
    and the (group, column) index of every row. With ``G`` rows per group in group order this is
    exactly ``values.view(P, G, ...)``."""
    torch = _torch()
    order = np.argsort(g, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    col = np.empty(g.size, dtype=np.int64)
    col[order] = np.arange(g.size) - starts[g[order]]
    gi, ci = torch.as_tensor(g), torch.as_tensor(col)
    table = torch.full((sizes.size, int(sizes.max()), *values.shape[1:]), float("nan"), dtype=values.dtype)
    table[gi, ci] = values
    return table, gi, ci


def _f32(r: np.ndarray) -> Any:
    return _torch().as_tensor(np.asarray(r, dtype=np.float32))


def _finish(adv: Any, r: np.ndarray, g: np.ndarray, n_groups: int) -> np.ndarray:
    torch = _torch()
    adv = torch.nan_to_num(adv, nan=0.0)  # unscored rows (and NaN stds of groups of one) carry no signal
    out = adv.double().numpy()
    scored = ~np.isnan(r)
    out[~scored | (np.bincount(g[scored], minlength=n_groups)[g] < 2)] = 0.0
    return out


def _trl(scale: str) -> Callable[..., np.ndarray]:
    def compute(r: np.ndarray, g: np.ndarray, sizes: np.ndarray, eps: float) -> np.ndarray:
        torch = _torch()
        rewards = _f32(r)
        table, gi, _ = _table(rewards, g, sizes)
        mean = torch.nanmean(table, dim=1)[gi]
        if scale == "group":
            std = _nanstd(table, dim=1)[gi]
        elif scale == "batch":
            std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
        advantages = rewards - mean
        if scale != "none":
            advantages = advantages / (std + eps)
        return _finish(advantages, r, g, sizes.size)

    return compute


def _trl_batch_centred(r: np.ndarray, g: np.ndarray, sizes: np.ndarray, eps: float) -> np.ndarray:
    torch = _torch()
    rewards = _f32(r)
    std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    return _finish((rewards - torch.nanmean(rewards)) / (std + eps), r, g, sizes.size)


def _verl(kind: str) -> Callable[..., np.ndarray]:
    def compute(r: np.ndarray, g: np.ndarray, sizes: np.ndarray, eps: float) -> np.ndarray:
        torch = _torch()
        scores = _f32(r)
        gi = torch.as_tensor(g)
        mean = torch.zeros(sizes.size, dtype=scores.dtype)
        std = torch.ones(sizes.size, dtype=scores.dtype)
        scored = ~np.isnan(r)
        rows = np.argsort(g, kind="stable")
        rows = rows[scored[rows]]  # unscored rows stay out of the statistics
        eff = np.bincount(g[scored], minlength=sizes.size)
        start = 0
        for q, n in enumerate(eff.tolist()):  # verl: torch.mean / torch.std of each group's stacked scores
            members = scores[torch.as_tensor(rows[start:start + n])]
            start += n
            if n > 1:
                mean[q] = torch.mean(members)
                if kind == "grpo":
                    std[q] = torch.std(members)
        if kind == "grpo":
            adv = (scores - mean[gi]) / (std[gi] + eps)
        elif kind == "drgrpo":
            adv = scores - mean[gi]
        else:  # verl's rloo: scores * n / (n - 1) - mean * n / (n - 1)
            n = torch.as_tensor(eff[g].astype(np.float32))
            adv = scores * n / (n - 1) - mean[gi] * n / (n - 1)
        return _finish(adv, r, g, sizes.size)

    return compute


def _entry(name: str, host: str, eps: float, description: str, fn: Callable[..., np.ndarray]) -> AdvantageKind:
    return AdvantageKind(name, host, eps, description, fn)


ADVANTAGE_KINDS = MappingProxyType({
    "grpo": _entry("grpo", "papers", 1e-6, "(r - mean) / (population std + 1e-6)  [GDRO eq. 3]", _papers("grpo")),
    "drgrpo": _entry("drgrpo", "papers", 0.0, "r - mean  [Dr.GRPO; VIP Sec. 3]", _papers("drgrpo")),
    "rloo": _entry("rloo", "papers", 0.0, "n / (n - 1) (r - mean)  [RLOO; VIP Sec. 3]", _papers("rloo")),
    "trl-group": _entry("trl-group", "trl", 1e-4, "TRL scale_rewards='group': (r - mean) / (sample std + 1e-4), "
                        "float32", _trl("group")),
    "trl-batch": _entry("trl-batch", "trl", 1e-4, "TRL scale_rewards='batch': (r - group mean) / (batch sample std "
                        "+ 1e-4), float32", _trl("batch")),
    "trl-none": _entry("trl-none", "trl", 0.0, "TRL scale_rewards='none': r - mean, float32", _trl("none")),
    "trl-normalize-then-sum": _entry("trl-normalize-then-sum", "trl", 1e-4, "TRL normalize_then_sum, last stage: "
                                     "(r - batch mean) / (batch sample std + 1e-4), float32", _trl_batch_centred),
    "verl-grpo": _entry("verl-grpo", "verl", 1e-6, "verl grpo: (r - mean) / (sample std + 1e-6), float32",
                        _verl("grpo")),
    "verl-drgrpo": _entry("verl-drgrpo", "verl", 0.0, "verl grpo with norm_adv_by_std_in_grpo=False: r - mean, "
                          "float32", _verl("drgrpo")),
    "verl-rloo": _entry("verl-rloo", "verl", 0.0, "verl rloo: r n / (n - 1) - mean n / (n - 1), float32",
                        _verl("rloo")),
})  # fmt: skip
"""Registry of advantage kinds: name -> :class:`AdvantageKind` (see the module docstring)."""


def get_advantage_kind(name: Any) -> AdvantageKind:
    """The registered kind ``name`` (case-insensitive); ``ValueError`` listing the names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"advantage kind must be a string, one of {sorted(ADVANTAGE_KINDS)}, got {type(name).__name__}")
    kind = ADVANTAGE_KINDS.get(name.lower())
    if kind is None:
        raise ValueError(f"unknown advantage kind {name!r}; valid kinds: {sorted(ADVANTAGE_KINDS)}")
    return kind


def kind_advantages(rewards: Any, group_ids: Any, kind: str, *, n_groups: int | None = None,
                    eps: float | None = None) -> np.ndarray:
    """Advantages of kind ``kind`` over ragged groups.

    Parameters
    ----------
    rewards : array_like, shape (N,)
        One reward per rollout; NaN marks a rollout that could not be scored (left out of its
        group's statistics, advantage 0). Infinite rewards are an error.
    group_ids : array_like of int, shape (N,)
        Group of each rollout, in ``[0, n_groups)``; every group non-empty.
    kind : str
        A name of :data:`ADVANTAGE_KINDS`.
    n_groups : int, optional
        Default ``max(group_ids) + 1``.
    eps : float >= 0, optional
        Std offset; default the kind's own.

    Returns
    -------
    ndarray of float64, shape (N,)
        For the hosts' kinds, float32 values (exactly representable in float64).

    Examples
    --------
    >>> r, g = [1.0, 0.0, 0.0, 1.0, 0.5], [0, 0, 0, 0, 1]
    >>> kind_advantages(r, g, "grpo").round(4).tolist()
    [1.0, -1.0, -1.0, 1.0, 0.0]
    >>> kind_advantages(r, g, "trl-group").round(4).tolist()
    [0.8659, -0.8659, -0.8659, 0.8659, 0.0]
    """
    spec = get_advantage_kind(kind)
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {r.shape}")
    if np.isinf(r).any():
        raise ValueError(f"rewards must be finite (NaN marks an unscored rollout), got {float(r[np.isinf(r)][0])!r}")
    g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if g.shape != r.shape:
        raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {g.shape}")
    if r.size == 0:
        return np.zeros(0)
    p = int(g.max()) + 1 if n_groups is None else int(n_groups)
    sizes = np.bincount(g, minlength=p).astype(np.int64)
    if sizes.size != p or (sizes == 0).any():
        raise ValueError(f"every group in [0, {p}) needs at least one rollout; group sizes {sizes.tolist()}")
    e = spec.eps if eps is None else check_finite_scalar(eps, "eps", lo=0.0)
    return spec(r, g, sizes, e)


def trl_normalize_then_sum_rewards(rewards_per_func: Any, weights: Any, group_ids: Any) -> np.ndarray:
    """First stage of TRL's ``normalize_then_sum``: each reward function normalised within each group
    (NaN-aware mean and sample std + 1e-4), then weighted and summed (``nansum``), float32.

    Parameters
    ----------
    rewards_per_func : array_like or tensor, shape (N, K)
        One column per reward function; NaN where a function returned None. A row that every
        function left NaN stays NaN (unscored).
    weights : array_like, shape (K,)
    group_ids : array_like of int, shape (N,)

    Returns
    -------
    ndarray of float64, shape (N,)
        Float32 values; feed them to the ``trl-normalize-then-sum`` kind.
    """
    torch = _torch()
    per_func = torch.as_tensor(np.asarray(rewards_per_func, dtype=np.float32))
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
    if per_func.ndim != 2 or w.shape != (per_func.shape[1],):
        raise ValueError(f"rewards_per_func must be (N, K) and weights (K,), got {tuple(per_func.shape)} and "
                         f"{tuple(w.shape)}")
    g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if g.shape != (per_func.shape[0],):
        raise ValueError(f"group_ids must have one entry per row ({per_func.shape[0]}), got {g.shape}")
    sizes = np.bincount(g).astype(np.int64)
    table, gi, ci = _table(per_func, g, sizes)
    mean_k = torch.nanmean(table, dim=1, keepdim=True)
    std_k = _nanstd(table, dim=1).unsqueeze(1) if sizes.max() > 1 else torch.zeros_like(mean_k)
    reward_k = ((table - mean_k) / (std_k + 1e-4))[gi, ci]
    rewards = (reward_k * w.unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(per_func).all(dim=1)] = float("nan")
    return rewards.double().numpy()
