"""Metrics of the training studies: learning-curve summaries and GDRO's weighted standard error.

* :func:`area_under_curve` -- mean of a learning curve over the training horizon (the normalised
  trapezoidal area), i.e. "mean accuracy over training";
* :func:`steps_to_target` -- the first training step at which a curve reaches a target (linear
  interpolation between checkpoints; ``inf`` when it never does);
* :func:`pooled_bin_std` -- GDRO App. E.2.1's offline per-bin variability ``sigma_hat_b``: the
  sample standard deviation of a per-prompt signal pooled by bin over a run;
* :func:`weighted_standard_error` -- GDRO eq. 23, ``WSE(t) = sum_b q_t(b) sigma_b / sqrt(n_b(t))``;
* :func:`bin_means` -- per-bin means of per-prompt values (shares, counts, rewards by bin).

Pure NumPy; bad input raises ``ValueError``/``TypeError`` naming the parameter.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from solvers._validation import as_float_array, as_int_array, check_finite_scalar, check_int_scalar

__all__ = ["area_under_curve", "bin_means", "pooled_bin_std", "steps_to_target", "weighted_standard_error"]


def _curve_iv(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xs = as_float_array(x, "x", ndim=1, min_size=1)
    ys = as_float_array(y, "y", ndim=1, min_size=1)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    if xs.size > 1 and np.any(np.diff(xs) <= 0):
        i = int(np.argmax(np.diff(xs) <= 0))
        raise ValueError(f"x must be strictly increasing, got {float(xs[i])!r} then {float(xs[i + 1])!r}")
    return xs, ys


def area_under_curve(x: Any, y: Any) -> float:
    """Mean of the piecewise-linear curve through ``(x, y)`` over ``[x[0], x[-1]]``.

    ``(1 / (x[-1] - x[0])) * integral of y dx`` by the trapezoidal rule: for an accuracy curve over
    training steps it is the mean accuracy over training, in the curve's units (a normalised area
    under the curve, comparable across horizons). A single point returns its value.

    Parameters
    ----------
    x : array_like, shape (T,)
        Strictly increasing checkpoints (e.g. training steps).
    y : array_like, shape (T,)
        Finite values at the checkpoints.

    Examples
    --------
    >>> area_under_curve([0, 1, 3], [0.0, 1.0, 1.0])
    0.8333333333333334
    """
    xs, ys = _curve_iv(x, y)
    if xs.size == 1:
        return float(ys[0])
    area = float(np.sum((ys[1:] + ys[:-1]) * np.diff(xs)) / 2.0)
    return area / float(xs[-1] - xs[0])


def steps_to_target(x: Any, y: Any, target: Any) -> float:
    """First ``x`` at which the curve through ``(x, y)`` reaches ``target`` (``y >= target``).

    Between two checkpoints the curve is linear, so the crossing is interpolated; a curve that
    starts at or above the target returns ``x[0]``; one that never reaches it returns ``math.inf``
    (the caller decides how to censor it -- never silently).

    Examples
    --------
    >>> steps_to_target([0, 10, 20], [0.25, 0.5, 1.0], 0.75)
    15.0
    >>> steps_to_target([0, 10], [0.2, 0.4], 0.9)
    inf
    """
    xs, ys = _curve_iv(x, y)
    t = check_finite_scalar(target, "target")
    above = ys >= t
    if not above.any():
        return math.inf
    k = int(np.argmax(above))
    if k == 0:
        return float(xs[0])
    x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
    return float(x0 + (t - y0) * (x1 - x0) / (y1 - y0))


def bin_means(values: Any, bins: Any, n_bins: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean of per-item ``values`` and the number of items per bin.

    Returns ``(means, counts)``, each shape ``(n_bins,)``; the mean of an empty bin is 0 (its count
    says it is empty).

    Examples
    --------
    >>> m, c = bin_means([1.0, 3.0, 5.0], [0, 0, 2], 3)
    >>> m.tolist(), c.tolist()
    ([2.0, 0.0, 5.0], [2, 0, 1])
    """
    b = check_int_scalar(n_bins, "n_bins", lo=1)
    v = as_float_array(values, "values", ndim=1)
    g = as_int_array(bins, "bins", ndim=1)
    if g.shape != v.shape:
        raise ValueError(f"values and bins must have the same length, got {v.size} and {g.size}")
    if g.size and (g.min() < 0 or g.max() >= b):
        raise ValueError(f"bins must be in [0, {b}), got values in [{int(g.min())}, {int(g.max())}]")
    counts = np.bincount(g, minlength=b)
    sums = np.bincount(g, weights=v, minlength=b)
    means = np.divide(sums, counts, out=np.zeros(b), where=counts > 0)
    return means, counts.astype(np.int64)


def pooled_bin_std(values: Any, bins: Any, n_bins: Any) -> np.ndarray:
    """GDRO App. E.2.1's offline variability proxy ``sigma_hat_b``, shape ``(n_bins,)``.

    "We log the prompt-level signal for each prompt throughout training together with its current
    bin assignment, pool these logged values by bin over the full run, and compute
    ``sigma_hat_b`` as the sample standard deviation of the pooled set." ``values[i]`` is one
    logged signal (one prompt at one step) and ``bins[i]`` its bin at that step. Sample standard
    deviation with ``ddof=1``; a bin with fewer than two logged values gets 0 (it has no spread to
    estimate, and a bin that is never occupied has zero share in eq. 23 anyway).

    Examples
    --------
    >>> pooled_bin_std([0.0, 2.0, 5.0], [1, 1, 0], 3).tolist()
    [0.0, 1.4142135623730951, 0.0]
    """
    b = check_int_scalar(n_bins, "n_bins", lo=1)
    v = as_float_array(values, "values", ndim=1)
    means, counts = bin_means(v, bins, b)
    g = np.asarray(bins, dtype=np.int64)
    dev = v - means[g]
    ss = np.bincount(g, weights=dev * dev, minlength=b)
    out = np.zeros(b)
    two = counts >= 2
    out[two] = np.sqrt(ss[two] / (counts[two] - 1.0))
    return out


def weighted_standard_error(shares: Any, sigma: Any, counts: Any) -> Any:
    """GDRO eq. 23: ``WSE(t) = sum_b q_t(b) sigma_b / sqrt(n_b(t))``.

    Parameters
    ----------
    shares : array_like, shape (B,) or (T, B)
        Prompt shares ``q_t(b)`` (non-negative; used as given, not renormalised).
    sigma : array_like, shape (B,)
        Per-bin variability ``sigma_b >= 0`` (GDRO uses the static :func:`pooled_bin_std`).
    counts : array_like, shape (B,) or (T, B), or a scalar
        Rollouts per prompt ``n_b(t)`` of each bin (a scalar ``n_bar`` gives the compute-matched
        uniform baseline). Must be ``> 0`` wherever the share is positive; where the share is 0
        the entry is ignored (an empty bin has no rollout count).

    Returns
    -------
    float or ndarray of shape (T,)

    Examples
    --------
    >>> weighted_standard_error([0.5, 0.5], [2.0, 1.0], [4.0, 1.0])
    1.0
    >>> weighted_standard_error([0.5, 0.5], [2.0, 1.0], 4)
    0.75
    """
    q = as_float_array(shares, "shares", ndim=(1, 2), nonneg=True, min_size=1)
    s = as_float_array(sigma, "sigma", ndim=1, nonneg=True)
    if s.shape[0] != q.shape[-1]:
        raise ValueError(f"sigma must have one entry per bin ({q.shape[-1]}), got {s.shape[0]}")
    n = as_float_array(counts, "counts", ndim=(0, 1, 2), finite=False)
    if n.ndim == 0:
        n = np.full(q.shape, float(n))
    if n.shape != q.shape:
        raise ValueError(f"counts must be a scalar or have the shape of shares {q.shape}, got {n.shape}")
    used = q > 0
    bad = used & ~(np.isfinite(n) & (n > 0))
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise ValueError(f"counts must be finite and > 0 where the share is positive, got {n[idx]!r} at {idx}")
    terms = np.where(used, q * s / np.sqrt(np.where(used, n, 1.0)), 0.0)
    out = terms.sum(axis=-1)
    return float(out) if q.ndim == 1 else out
