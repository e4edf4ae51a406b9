"""Integer helpers shared by the peer controllers (not public)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import check_finite_scalar, check_int_scalar


def spread(counts: np.ndarray, units: int, targets: np.ndarray, upper: float, rng: np.random.Generator) -> int:
    """Add ``units`` rollouts to ``counts`` (in place) at the positions ``targets`` (bool mask),
    as evenly as possible and never above ``upper``; the units that do not fit (every target
    at ``upper``) are returned. Each round gives ``floor(units / k)`` to each of the ``k``
    targets with room; when that is 0, single units go to ``units`` targets drawn uniformly."""
    while units > 0:
        room = np.flatnonzero(targets & (counts < upper))
        if room.size == 0:
            break
        per = units // room.size
        if per == 0:
            pick = rng.choice(room, units, replace=False)
            counts[pick] += 1
            return 0
        cap = upper - counts[room] if upper != math.inf else np.full(room.size, per)
        add = np.minimum(per, cap).astype(np.int64)
        counts[room] += add
        units -= int(add.sum())
    return units


def round_request(counts: np.ndarray, active: np.ndarray, size: int, remaining: int, upper: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Extra rollouts for one round: ``size`` for each ``active`` prompt (never past ``upper``);
    when the ``remaining`` budget cannot pay for that, it is water-filled as evenly as possible
    over the active prompts under the same caps (single remaining units to prompts drawn
    uniformly)."""
    extra = np.zeros(counts.size, dtype=np.int64)
    if remaining <= 0 or not active.any():
        return extra
    room = (upper - counts) if upper != math.inf else np.full(counts.size, size)
    want = np.where(active, np.clip(room, 0, size), 0).astype(np.int64)
    if int(want.sum()) <= remaining:
        return want
    left = remaining
    while left > 0:
        open_ = np.flatnonzero(extra < want)
        if open_.size == 0:
            break
        per = left // open_.size
        if per == 0:
            extra[rng.choice(open_, left, replace=False)] += 1
            break
        add = np.minimum(per, want[open_] - extra[open_])
        extra[open_] += add
        left -= int(add.sum())
    return extra


def rank_within(keys: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements (in array order) share its key."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1] if sk.size else np.zeros(0, dtype=np.int64)
    first = np.repeat(start, np.diff(np.r_[start, sk.size]))
    rank = np.empty(keys.size, dtype=np.int64)
    rank[order] = np.arange(keys.size) - first
    return rank


def all_equal(obs: Any) -> np.ndarray:
    """Per prompt: every reward of its group equal (zero GRPO/RLOO advantage; no signal), bool
    (M,); False for a prompt without rollouts."""
    m = obs.ids.size
    lo = np.full(m, np.inf)
    hi = np.full(m, -np.inf)
    np.minimum.at(lo, obs.group_ids, obs.rewards)
    np.maximum.at(hi, obs.group_ids, obs.rewards)
    return (obs.counts > 0) & (lo == hi)


def group_size_iv(value: Any, name: str, lower: int, upper: float, most: int) -> int:
    """A per-round group size in ``[lower, min(upper, most)]`` (``most``: what one round may
    spend per prompt of the batch, ``floor(mean_budget)``)."""
    v = check_int_scalar(value, name, lo=1)
    hi = most if upper == math.inf else min(int(upper), most)
    if not (lower <= v <= hi):
        raise ValueError(f"{name} must be in [lower, min(upper, floor(mean_budget))] = [{lower}, {hi}], got {v}")
    return v


def probability_iv(value: Any, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    v = check_finite_scalar(value, name)
    lo_ok = v > 0.0 if open_low else v >= 0.0
    hi_ok = v < 1.0 if open_high else v <= 1.0
    if not (lo_ok and hi_ok):
        lo = "(0" if open_low else "[0"
        hi = "1)" if open_high else "1]"
        raise ValueError(f"{name} must be in {lo}, {hi}, got {v!r}")
    return v


def choice_iv(value: Any, name: str, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"{name} must be one of {list(valid)}, got {value!r}")
    return value


def bool_iv(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def positive_int_or_none_iv(value: Any, name: str) -> int | None:
    return None if value is None else check_int_scalar(value, name, lo=1)
