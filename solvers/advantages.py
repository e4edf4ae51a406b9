"""Group-relative advantages (GRPO, Dr.GRPO, RLOO) for dense or ragged rollout groups.

Definitions, for a group of ``n`` rollouts with rewards ``r_1..r_n`` and mean ``mu``:

* ``"grpo"``   -- ``(r_j - mu) / (sigma + eps)`` with the *population* standard deviation
  ``sigma = sqrt(mean((r - mu)^2))`` (GDRO paper eq. 3 and DRRO paper eq. 4.1 both define
  ``sigma^2 = (1/n) sum (r - mu)^2``; also DeepSeekMath GRPO's group normalisation). Note: TRL
  and verl divide by the sample (ddof=1) std instead; the two differ by ``sqrt(n / (n - 1))``.
  The population std is used because it is the papers' definition and is defined for every
  group size.
* ``"drgrpo"`` -- ``r_j - mu`` (Dr.GRPO; VIP paper Sec. 3).
* ``"rloo"``   -- ``r_j - mean_{k != j} r_k = n / (n - 1) * (r_j - mu)`` (RLOO; VIP paper Sec. 3).

A group of size 1 has advantage 0 for every kind (no within-group signal; docs/architecture.md, "Known traps"),
and a group whose rewards are all equal has advantage exactly 0.

Dense batches are arrays of shape (P, G). Ragged batches (a variable number of rollouts per
prompt) are a flat reward vector with integer ``group_ids``; the group statistics are segment sums
computed by a Numba kernel in one pass over the data (plus a NumPy ``bincount`` twin used as the
test reference).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import numba
import numpy as np

from ._validation import as_float_array, as_int_array, check_finite_scalar

__all__ = ["ADVANTAGE_KINDS", "group_advantages"]

_KIND_CODES = {"grpo": 0, "drgrpo": 1, "rloo": 2}

ADVANTAGE_KINDS = MappingProxyType(
    {
        "grpo": "GRPO: (r - group mean) / (population std + eps)  [GDRO eq. 3]",
        "drgrpo": "Dr.GRPO: r - group mean  [VIP Sec. 3]",
        "rloo": "RLOO: r - mean of the other rollouts = n/(n-1) (r - group mean)  [VIP Sec. 3]",
    }
)
"""Registry of advantage kinds: name -> one-line definition (read-only)."""


_DBL_MAX = float(np.finfo(np.float64).max)


@numba.njit(cache=True)
def _unit(dev_max):  # pragma: no cover - compiled
    """A positive factor ``s ~ 1 / max|r - mean|`` (capped at DBL_MAX for subnormal spreads)."""
    return min(1.0 / dev_max, _DBL_MAX)


@numba.njit(cache=True)
def _scale(kind, n, sum_sq, unit, eps):  # pragma: no cover - compiled
    """``(unit, mult)`` with advantage ``((r - mean) * unit) * mult`` for a group of size ``n``.

    ``sum_sq`` is the sum of ``((r - mean) * unit)^2`` with ``unit = _unit(max |r - mean|)``, so it
    lies in [1, n] (no overflow for huge rewards, no underflow for subnormal spreads). GRPO:
    ``(r - mean) / (std + eps) = ((r - mean) s) / (sqrt(sum_sq / n) + eps s)`` for any ``s > 0``;
    the other kinds use ``unit = 1``."""
    if n < 2:
        return 1.0, 0.0
    if kind == 0:
        return unit, 1.0 / (np.sqrt(sum_sq / n) + eps * unit)
    if kind == 2:
        return 1.0, n / (n - 1.0)
    return 1.0, 1.0


_TINY = 2.0**-969  # below: group means and deviations lose relative precision (subnormal grid)
_HUGE = 2.0**1022  # above: deviations r - mean may overflow
_UP = 2.0**600
_DOWN = 2.0**-600


@numba.njit(cache=True)
def _group_factor(lo, hi, total):  # pragma: no cover - compiled
    """Power-of-two factor ``c`` for a group with values in ``[lo, hi]`` and sum ``total``: 1.0
    for ordinary groups (computed exactly as without it), ``2**600`` for groups whose values are
    all below 2**-969 in magnitude (their mean is not representable on the subnormal grid, e.g.
    ``[5e-324, 0, 5e-324]``), ``2**-600`` when the sum or a deviation overflows (values near
    DBL_MAX). The group is then normalised as ``c r`` (advantages are computed from ``c r - mean(c
    r)``, scaled back exactly by ``1/c``; GRPO's ``eps`` becomes ``eps c``)."""
    big = max(abs(lo), abs(hi))
    if big < _TINY:
        return _UP if lo != hi else 1.0
    if big > _HUGE or not np.isfinite(total):
        return _DOWN
    return 1.0


@numba.njit(cache=True)
def _dense_kernel(rewards, kind, eps, out):  # pragma: no cover - compiled
    """Fills ``out``; returns False if any advantage is not finite (float64 overflow)."""
    n_prompts, group = rewards.shape
    ok = True
    for p in range(n_prompts):
        total = 0.0
        lo = rewards[p, 0]
        hi = rewards[p, 0]
        for k in range(group):
            v = rewards[p, k]
            total += v
            lo = min(lo, v)
            hi = max(hi, v)
        c = _group_factor(lo, hi, total)
        if c != 1.0:
            ok &= _dense_row_scaled(rewards[p], kind, eps, out[p], c)
            continue
        mean = total / group
        unit, mult = 1.0, 0.0
        if lo != hi:
            s = _unit(max(hi - mean, mean - lo))  # max |r - mean| > 0 since lo < hi
            sum_sq = 0.0
            for k in range(group):
                dev = (rewards[p, k] - mean) * s
                sum_sq += dev * dev
            unit, mult = _scale(kind, group, sum_sq, s, eps)
        for k in range(group):
            v = ((rewards[p, k] - mean) * unit) * mult
            out[p, k] = v
            ok &= np.isfinite(v)
    return ok


@numba.njit(cache=True)
def _dense_row_scaled(row, kind, eps, out, c):  # pragma: no cover - compiled
    """One dense group normalised as ``c r`` (see :func:`_group_factor`; the rare path)."""
    group = row.shape[0]
    total = 0.0
    lo = row[0] * c
    hi = lo
    for k in range(group):
        v = row[k] * c
        total += v
        lo = min(lo, v)
        hi = max(hi, v)
    mean = total / group
    unit, mult = 1.0, 0.0
    if lo != hi:
        s = _unit(max(hi - mean, mean - lo))
        sum_sq = 0.0
        for k in range(group):
            dev = (row[k] * c - mean) * s
            sum_sq += dev * dev
        unit, mult = _scale(kind, group, sum_sq, s, eps * c)
        if kind != 0:  # Dr.GRPO / RLOO advantages are in reward units: one rounding, dev * (mult/c)
            unit, mult = mult / c, 1.0
    ok = True
    for k in range(group):
        v = ((row[k] * c - mean) * unit) * mult
        out[k] = v
        ok &= np.isfinite(v)
    return ok


@numba.njit(cache=True)
def _ragged_kernel(rewards, group_ids, n_groups, kind, eps, out):  # pragma: no cover - compiled
    """Fills ``out``; returns False if any advantage is not finite (float64 overflow)."""
    count = np.zeros(n_groups, dtype=np.int64)
    total = np.zeros(n_groups)
    lo = np.full(n_groups, np.inf)
    hi = np.full(n_groups, -np.inf)
    for i in range(rewards.shape[0]):
        g = group_ids[i]
        v = rewards[i]
        count[g] += 1
        total[g] += v
        lo[g] = min(lo[g], v)
        hi[g] = max(hi[g], v)
    factor = np.ones(n_groups)
    scaled = False
    for g in range(n_groups):
        if count[g] > 0:
            factor[g] = _group_factor(lo[g], hi[g], total[g])
            scaled |= factor[g] != 1.0
    if scaled:  # the rare path: sums of c r for the rescaled groups (see _group_factor)
        for g in range(n_groups):
            if factor[g] != 1.0:
                total[g] = 0.0
                lo[g] *= factor[g]
                hi[g] *= factor[g]
        for i in range(rewards.shape[0]):
            g = group_ids[i]
            if factor[g] != 1.0:
                total[g] += rewards[i] * factor[g]
    mean = np.empty(n_groups)
    for g in range(n_groups):
        mean[g] = total[g] / count[g] if count[g] > 0 else 0.0
    unit = np.ones(n_groups)
    for g in range(n_groups):
        if lo[g] < hi[g]:
            unit[g] = _unit(max(hi[g] - mean[g], mean[g] - lo[g]))
    sum_sq = np.zeros(n_groups)
    if scaled:
        for i in range(rewards.shape[0]):
            g = group_ids[i]
            dev = (rewards[i] * factor[g] - mean[g]) * unit[g]
            sum_sq[g] += dev * dev
    else:
        for i in range(rewards.shape[0]):
            g = group_ids[i]
            dev = (rewards[i] - mean[g]) * unit[g]
            sum_sq[g] += dev * dev
    mult = np.zeros(n_groups)
    for g in range(n_groups):
        if lo[g] != hi[g]:
            unit[g], mult[g] = _scale(kind, count[g], sum_sq[g], unit[g], eps * factor[g])
            if kind != 0 and factor[g] != 1.0:
                unit[g], mult[g] = mult[g] / factor[g], 1.0
    ok = True
    if scaled:
        for i in range(rewards.shape[0]):
            g = group_ids[i]
            v = ((rewards[i] * factor[g] - mean[g]) * unit[g]) * mult[g]
            out[i] = v
            ok &= np.isfinite(v)
    else:
        for i in range(rewards.shape[0]):
            g = group_ids[i]
            v = ((rewards[i] - mean[g]) * unit[g]) * mult[g]
            out[i] = v
            ok &= np.isfinite(v)
    return ok


def _kind_code(kind: Any) -> int:
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string naming an advantage kind, got {type(kind).__name__}")
    code = _KIND_CODES.get(kind.lower())
    if code is None:
        raise ValueError(f"unknown advantage kind {kind!r}; valid kinds: {sorted(ADVANTAGE_KINDS)}")
    return code


def _group_advantages_iv(rewards: Any, kind: Any, group_ids: Any, eps: Any):
    code = _kind_code(kind)
    e = check_finite_scalar(eps, "eps", lo=0.0)
    if group_ids is None:
        r = as_float_array(rewards, "rewards", ndim=2)
        if r.shape[1] < 1:
            raise ValueError(f"rewards must have at least one rollout per group, got shape {r.shape}")
        return r, code, None, 0, e
    r = as_float_array(rewards, "rewards", ndim=1)
    if r.size < 1:
        # no rollouts at all: nothing to normalise, but group_ids must still be 1-D integers
        ids = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
        if ids.shape != r.shape:
            raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {ids.shape}")
        return r, code, ids, 0, e
    ids = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if ids.shape != r.shape:
        raise ValueError(f"group_ids must have the shape of rewards {r.shape}, got {ids.shape}")
    n_groups = int(ids.max()) + 1
    if n_groups > 4 * ids.size + 1024:
        # sparse labels (e.g. global prompt ids): compress to 0..m-1 to keep the kernel O(N)
        _, ids = np.unique(ids, return_inverse=True)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        n_groups = int(ids.max()) + 1
    return r, code, ids, n_groups, e


def group_advantages(rewards: Any, *, kind: str, group_ids: Any = None, eps: float = 1e-6) -> np.ndarray:
    """Group-relative advantages of a batch of rollouts.

    Parameters
    ----------
    rewards : array_like, shape (P, G) or (N,)
        Dense: one row per prompt, ``G`` rollouts each (``group_ids`` must be None).
        Ragged: a flat vector of ``N`` rewards, with ``group_ids`` saying which prompt each
        belongs to (groups may have different sizes and need not be contiguous or sorted).
    kind : {"grpo", "drgrpo", "rloo"}
        See the module docstring and :data:`ADVANTAGE_KINDS` (case-insensitive).
    group_ids : array_like of int, shape (N,), optional
        Non-negative group labels for ragged input; labels need not be consecutive.
    eps : float >= 0
        Added to the population std in the GRPO denominator; unused by the other kinds.

    Returns
    -------
    ndarray
        Advantages, same shape as ``rewards``. Groups of size 1 and groups whose rewards are all
        equal get exactly 0.

    Notes
    -----
    Identities (tested): per group, GRPO/Dr.GRPO/RLOO advantages sum to zero, and
    ``rloo = n / (n - 1) * drgrpo``. Means and variances are computed in two passes (no
    ``E[x^2] - E[x]^2`` cancellation); the squared deviations are summed after dividing by the
    largest one, so the GRPO std neither overflows (rewards ~1e200) nor underflows. A group whose
    rewards are all below ``2**-969`` in magnitude (subnormal spreads such as ``[5e-324, 0,
    5e-324]``, whose mean is not representable) or whose sum overflows (rewards near 1e308) is
    normalised as ``c r`` with ``c = 2**600`` or ``2**-600`` (exact) and scaled back, so GRPO
    advantages stay exact there too (with ``eps = 0``: ``[0.707, -1.414, 0.707]``).

    Raises
    ------
    ValueError
        Non-finite rewards, bad ``group_ids``/``eps``/``kind`` (TypeError for a non-string kind),
        or rewards so large that a group mean or deviation overflows float64.

    Examples
    --------
    >>> group_advantages([[1.0, 0.0, 0.0, 1.0]], kind="grpo").round(6).tolist()
    [[0.999998, -0.999998, -0.999998, 0.999998]]
    >>> group_advantages([1.0, 0.0, 3.0, 5.0], kind="rloo", group_ids=[0, 0, 1, 2]).tolist()
    [1.0, -1.0, 0.0, 0.0]
    """
    r, code, ids, n_groups, e = _group_advantages_iv(rewards, kind, group_ids, eps)
    out = np.empty_like(r)
    if r.size == 0:
        return out
    if ids is None:
        ok = _dense_kernel(r, code, e, out)
    else:
        ok = _ragged_kernel(r, ids, n_groups, code, e, out)
    if not ok:
        raise ValueError(
            f"{kind} advantages overflowed float64 (max |rewards|={float(np.abs(r).max())!r}): "
            "group means/deviations of these rewards are not representable; rescale the rewards"
        )
    return out


def _group_advantages_numpy(rewards: np.ndarray, kind: str, group_ids: np.ndarray | None = None,
                            eps: float = 1e-6) -> np.ndarray:
    """NumPy twin of :func:`group_advantages` (``bincount`` segment sums); the test reference.

    Inputs are assumed already validated (float64; non-negative int group ids).
    """
    if group_ids is None:
        n = rewards.shape[1]
        flat = rewards.reshape(-1)
        ids = np.repeat(np.arange(rewards.shape[0]), n)
    else:
        flat = rewards
        ids = group_ids
    m = int(ids.max()) + 1 if ids.size else 0
    count = np.bincount(ids, minlength=m).astype(np.float64)
    safe = np.maximum(count, 1.0)
    lo = np.full(m, np.inf)
    hi = np.full(m, -np.inf)
    np.minimum.at(lo, ids, flat)
    np.maximum.at(hi, ids, flat)
    with np.errstate(over="ignore", invalid="ignore"):
        raw_total = np.bincount(ids, weights=flat, minlength=m)
    big = np.maximum(np.abs(lo), np.abs(hi))
    factor = np.where(big < _TINY, np.where(lo != hi, _UP, 1.0),
                      np.where((big > _HUGE) | ~np.isfinite(raw_total), _DOWN, 1.0))  # _group_factor
    factor[count == 0] = 1.0
    flat = flat * factor[ids]
    lo, hi = lo * factor, hi * factor
    mean = np.bincount(ids, weights=flat, minlength=m) / safe
    dev = flat - mean[ids]
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(lo < hi, np.minimum(1.0 / np.maximum(hi - mean, mean - lo), _DBL_MAX), 1.0)
    sum_sq = np.bincount(ids, weights=(dev * unit[ids]) ** 2, minlength=m)  # scaled, see _scale
    if kind == "grpo":
        with np.errstate(over="ignore"):
            scale = 1.0 / (np.sqrt(sum_sq / safe) + (eps * factor) * unit)
    elif kind == "rloo":
        scale = count / np.maximum(count - 1.0, 1.0)
    else:
        scale = np.ones(m)
    scale = np.where((count < 2) | (lo == hi), 0.0, scale)
    if kind != "grpo":  # as the kernels: dev * (scale / c) for rescaled groups, one rounding
        unit = np.where(factor != 1.0, scale / factor, 1.0)
        scale = np.where(factor != 1.0, 1.0, scale)
    out = (dev * unit[ids]) * scale[ids]
    return out.reshape(rewards.shape)
