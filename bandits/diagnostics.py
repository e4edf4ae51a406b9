"""Scalar diagnostics of the GDRO adversaries (GDRO Sec. 5 figures, eq. 22).

All functions take nonnegative weights / shares / counts over ``B`` bins, either one vector of shape
``(B,)`` or a time series of shape ``(T, B)`` (one row per step), normalise each row to a
distribution, and return a float (1-D input) or a ``(T,)`` array (2-D input). Bin indices follow
the paper's convention: bin 0 (``accbin_0``) holds the *lowest* pass@k (hardest prompts), higher
indices hold more solvable prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, as_float_array, as_int_array, check_int_scalar

__all__ = ["lead_lag_gap", "weight_entropy", "allocation_entropy", "high_bin_mass"]


def _distribution_iv(x: Any, name: str) -> np.ndarray:
    """Validate nonnegative finite rows with positive sums and return them normalised, 2-D."""
    arr = as_float_array(x, name, ndim=(1, 2), nonneg=True, min_size=1)
    rows = arr.reshape(1, -1) if arr.ndim == 1 else arr
    if rows.shape[1] == 0:
        raise ValueError(f"{name} must have at least one bin, got shape {arr.shape}")
    with np.errstate(over="ignore"):
        sums = rows.sum(axis=1)
    if not np.all(np.isfinite(sums)):
        # weights near DBL_MAX: their sum overflows (and every share became 0); divide each such
        # row by its largest entry first (the distribution is scale-invariant)
        big = ~np.isfinite(sums)
        rows = rows.copy()
        rows[big] /= rows[big].max(axis=1, keepdims=True)
        sums = rows.sum(axis=1)
    if np.any(sums <= 0):
        i = int(np.argmax(sums <= 0))
        where = "" if arr.ndim == 1 else f" (row {i})"
        raise ValueError(f"{name} must have a positive sum{where}, got {float(sums[i])!r}")
    return rows / sums[:, None]


def _out(values: np.ndarray, ndim: int) -> Any:
    return float(values[0]) if ndim == 1 else values


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=1)


def lead_lag_gap(weights: Any, shares: Any) -> Any:
    """Lead-lag gap of GDRO eq. 22: ``mu_weight(t) - mu_data(t)``.

    ``mu_data(t) = sum_b b q_t(b)`` and ``mu_weight(t) = sum_b b w_t(b)`` with ``q_t`` the
    empirical prompt share over bins and ``w_t`` the *normalised* Prompt-GDRO weights (weights
    only, not reweighted by ``q_t``). The paper indexes bins from 1; the gap is the same with our
    0-based indices because both are means under probability distributions.

    Parameters
    ----------
    weights : array_like, shape (B,) or (T, B)
        Adversary weights per bin (normalised here; any positive scale).
    shares : array_like, shape (B,) or (T, B)
        Prompt shares or counts per bin (normalised here).

    Returns
    -------
    float or ndarray of shape (T,)
        Positive when the adversary's weight sits on higher-index (more solvable) bins than the
        data.

    Examples
    --------
    >>> lead_lag_gap([0.0, 0.0, 1.0], [1, 1, 0])
    1.5
    """
    w = _distribution_iv(weights, "weights")
    q = _distribution_iv(shares, "shares")
    if w.shape != q.shape:
        raise ValueError(
            f"weights and shares must have the same shape, got {np.shape(weights)} and "
            f"{np.shape(shares)}"
        )
    idx = np.arange(w.shape[1], dtype=np.float64)
    return _out(w @ idx - q @ idx, np.ndim(weights))


def weight_entropy(weights: Any, *, normalized: bool = False) -> Any:
    """Shannon entropy (nats) of the normalised adversary weights, ``-sum_b w_b log w_b``.

    Parameters
    ----------
    weights : array_like, shape (B,) or (T, B)
        Nonnegative weights (normalised here); ``0 log 0 = 0``.
    normalized : bool
        Divide by ``log B`` so the result is in [0, 1] (1 = uniform); for ``B = 1`` the result is 0.

    Examples
    --------
    >>> round(weight_entropy([1, 1, 1, 1]), 6) == round(float(np.log(4)), 6)
    True
    >>> weight_entropy([0.0, 2.0], normalized=True)
    0.0
    """
    return _entropy_of(weights, "weights", normalized)


def allocation_entropy(
    n: Any, bin_ids: Any = None, n_bins: Any = None, *, normalized: bool = False
) -> Any:
    """Entropy (nats) of the compute shares of a rollout allocation.

    Without ``bin_ids``: ``n`` holds per-bin rollout totals (or shares), shape ``(B,)`` or
    ``(T, B)``; the result is the entropy of ``n / sum(n)``. With ``bin_ids`` (1-D only): ``n``
    holds per-prompt rollout counts, shape ``(P,)``, aggregated per bin first
    (``bincount(bin_ids, weights=n, minlength=n_bins)``), so the result is the entropy of the
    share of the batch's rollouts each bin receives.

    Parameters
    ----------
    n : array_like
        Nonnegative rollout counts or shares with a positive total.
    bin_ids : array_like of int, shape (P,), optional
        Bin of each prompt.
    n_bins : int, optional
        Number of bins ``B`` (with ``bin_ids``; default ``max(bin_ids) + 1``). Only matters for
        ``normalized=True``.
    normalized : bool
        Divide by ``log B``.

    Examples
    --------
    >>> round(allocation_entropy([4, 4, 8, 8], bin_ids=[0, 0, 1, 1]), 6) == round(
    ...     float(-(1/3) * np.log(1/3) - (2/3) * np.log(2/3)), 6)
    True
    """
    if bin_ids is None:
        if n_bins is not None:
            raise ValueError("n_bins is only used together with bin_ids")
        return _entropy_of(n, "n", normalized)
    counts = as_float_array(n, "n", ndim=1, nonneg=True)
    ids = as_int_array(bin_ids, "bin_ids", ndim=1, nonneg=True)
    if ids.shape != counts.shape:
        raise ValueError(
            f"n and bin_ids must have the same shape, got {counts.shape} and {ids.shape}"
        )
    b = (int(ids.max()) + 1 if ids.size else 1) if n_bins is None else check_int_scalar(
        n_bins, "n_bins", lo=1, hi=MAX_SIZE
    )
    if ids.size and ids.max() >= b:
        raise ValueError(f"bin_ids must be < n_bins={b}, got {int(ids.max())}")
    # totals of the bins that occur (empty bins, up to n_bins, add 0 entropy): compressed labels,
    # so that ids up to 2**63 - 1 allocate nothing of that size
    inverse = np.unique(ids, return_inverse=True)[1].reshape(-1)
    with np.errstate(over="ignore"):
        totals = np.bincount(inverse, weights=counts)
    if not np.all(np.isfinite(totals)):  # per-bin sums of counts near DBL_MAX: scale first
        totals = np.bincount(inverse, weights=counts / counts.max())
    if totals.size == 0:
        totals = np.zeros(1)
    h = _entropy_of(totals, "n", False)
    if normalized:
        h = h / np.log(b) if b > 1 else 0.0
    return h


def _entropy_of(x: Any, name: str, normalized: bool) -> Any:
    """Entropy of the normalised rows of ``x`` (validated under ``name``)."""
    p = _distribution_iv(x, name)
    h = _entropy_rows(p)
    if normalized:
        b = p.shape[1]
        h = h / np.log(b) if b > 1 else np.zeros_like(h)
    return _out(h, np.ndim(x))


def high_bin_mass(weights: Any, k: Any) -> Any:
    """Mass of the normalised weights on bins with index ``>= k`` (GDRO Fig. 4 / 7 "mass in bins
    >= k").

    With the paper's convention (bin 0 = lowest pass@k) these are the most solvable bins; pass
    the distribution you want to summarise (adversary weights, prompt shares or rollout shares).

    Parameters
    ----------
    weights : array_like, shape (B,) or (T, B)
        Nonnegative weights (normalised here).
    k : int
        Threshold bin index in ``[0, B]`` (``k = 0`` gives 1, ``k = B`` gives 0).

    Examples
    --------
    >>> high_bin_mass([1, 1, 1, 1], 3)
    0.25
    """
    p = _distribution_iv(weights, "weights")
    kk = check_int_scalar(k, "k", lo=0, hi=p.shape[1])
    return _out(p[:, kk:].sum(axis=1), np.ndim(weights))
