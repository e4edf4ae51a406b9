"""Metrics of the training studies: learning-curve summaries and GDRO's weighted standard error.

* :func:`area_under_curve` -- mean of a learning curve over the training horizon (the normalised
  trapezoidal area), i.e. "mean accuracy over training";
* :func:`steps_to_target` -- the first training step at which a curve reaches a target (linear
  interpolation between checkpoints; ``inf`` when it never does);
* :func:`pooled_bin_std` -- GDRO App. E.2.1's offline per-bin variability ``sigma_hat_b``: the
  sample standard deviation of a per-prompt signal pooled by bin over a run;
* :func:`weighted_standard_error` -- GDRO eq. 23, ``WSE(t) = sum_b q_t(b) sigma_b / sqrt(n_b(t))``;
* :func:`bin_means` -- per-bin means of per-prompt values (shares, counts, rewards by bin);
* :func:`exact_optimal_counts` -- the exact integer minimiser of a separable convex variance table
  under a total budget (the best any allocation can do: the reference of the allocation claims);
* :func:`group_variance_terms` -- the per-coordinate ingredients of the exact variance of a group's
  RLOO / Dr. GRPO gradient estimate (:class:`GroupVarianceTerms`), from which any group size, any
  coordinate weighting and VIP's single-rollout coefficient ``a_q = E[(r - p)^2 |s|^2]`` follow;
* :func:`exact_a_allocation` -- VIP's allocation rule with the exact single-rollout variance
  ``a_q = E[(r - p)^2 |s|^2]`` in place of Prop 4.3's ``4 sigma_Z^2 p (1 - p)`` (the achievable
  reference: the best a predictor of ``a_q`` could reach with VIP's cost);
* :func:`second_moment_scale` and :func:`normalised_variance` -- the variance of a batch gradient in
  the optimiser's geometry (every coordinate divided by its second-moment scale, as Adam does).

Why a normalised variance. The raw trace ``tr Cov(g) = sum_d Var(g_d)`` weighs coordinates by their
scale, so on :class:`sim.SoftmaxRLVR` it is dominated by coordinate 0 (the prior log-odds feature,
of scale 1 against about 0.1 on each skill coordinate). Adam's update ``m_hat / sqrt(v_hat)``
divides coordinate ``d`` by the root of its running second moment ``v_d ~ E[g_d^2]``; to first order
the noise of the update is the variance of ``g / sqrt(v)``, i.e. ``sum_d Var(g_d) / v_d``. The studies
evaluate it with ``v`` fixed at the second moment of the *uniform* allocation's batch gradient at
the same step and policy (``v_d = (grad J_B)_d^2 + Var_uniform(g_d)``): one geometry for every
allocation, so ratios compare allocations, not preconditioners.

Pure NumPy; bad input raises ``ValueError``/``TypeError`` naming the parameter.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from solvers import allocate
from solvers._validation import (
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
)

__all__ = [
    "GroupVarianceTerms",
    "area_under_curve",
    "bin_means",
    "exact_a_allocation",
    "exact_optimal_counts",
    "group_variance_terms",
    "normalised_variance",
    "pooled_bin_std",
    "second_moment_scale",
    "steps_to_target",
    "weighted_standard_error",
]


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


# --------------------------------------------------------------------------- gradient variance
_VAR_ESTIMATORS = ("rloo", "drgrpo")


class GroupVarianceTerms(NamedTuple):
    """Per-coordinate ingredients of the exact variance of a group's gradient estimate.

    For one prompt with outcome probabilities ``pi_a``, rewards ``r_a`` and scores ``s_a`` in
    ``R^m`` (centred: ``rho = r - E r``, ``sig = s - E s``), each of shape ``(P, m)``:

    Attributes
    ----------
    mean : ndarray
        ``Cov(r, s_d) = E[rho sig_d]``: the mean of the RLOO group estimate (``grad p_q`` when ``s``
        is the score).
    a : ndarray
        ``E[rho^2 sig_d^2]``; summed over ``d`` it is VIP's single-rollout variance coefficient
        ``a_q = E[(r - p)^2 |grad log pi|^2]`` without the independence assumption.
    vr_vs : ndarray
        ``Var(r) Var(s_d)``.

    The RLOO group estimate with ``n`` rollouts has, per coordinate (Hoeffding's U-statistic
    variance; :mod:`sim.group_variance` derives the trace),
    ``Var_d(n) = [(n - 1) a_d - (n - 2) mean_d^2 + vr_vs_d] / (n (n - 1))``, and Dr. GRPO's is
    ``((n - 1) / n)^2`` times it (0 at ``n = 1``). Summed over ``d`` this is exactly
    :func:`sim.group_gradient_variance`.
    """

    mean: np.ndarray
    a: np.ndarray
    vr_vs: np.ndarray

    def variance(self, n: Any, *, weights: Any = None, estimator: str = "rloo") -> np.ndarray:
        """Exact variance of each prompt's group estimate with ``n`` rollouts.

        Parameters
        ----------
        n : int or array_like of int, shape (P,) or (P, k)
            Group sizes (``>= 2`` for RLOO, ``>= 1`` for Dr. GRPO); a ``(P, k)`` array evaluates
            ``k`` sizes per prompt at once (a table of ``V_q(n)``).
        weights : array_like, shape (m,), optional
            Non-negative coordinate weights ``w``: returns ``sum_d w_d Var_d``, shape ``(P,)`` (or
            ``(P, k)``). ``None``: the per-coordinate variances, shape ``(P, m)`` (``n`` must then
            be a scalar or ``(P,)``). ``w = 1`` gives ``tr Cov``; ``w = 1 / v`` the variance in the
            geometry of a preconditioner ``v`` (:func:`normalised_variance`).
        estimator : {"rloo", "drgrpo"}
        """
        if estimator not in _VAR_ESTIMATORS:
            raise ValueError(f"estimator must be one of {list(_VAR_ESTIMATORS)}, got {estimator!r}")
        p, m = self.a.shape
        nn = as_float_array(n, "n", ndim=(0, 1, 2))
        if np.any(nn != np.round(nn)):
            raise ValueError(f"n must contain integers, got {n!r}")
        n_min = 2 if estimator == "rloo" else 1
        if nn.size and nn.min() < n_min:
            raise ValueError(f"n must be >= {n_min} for estimator {estimator!r}, got {float(nn.min()):g}")
        if weights is None:
            if nn.ndim == 2:
                raise ValueError("a (P, k) table of group sizes needs weights= (one number per prompt and size)")
            a, m2, vv = self.a, self.mean**2, self.vr_vs
            nn = nn[..., None] if nn.ndim == 1 else nn
            if nn.ndim == 2 and nn.shape[0] != p:
                raise ValueError(f"n must be a scalar or have one size per prompt ({p}), got {nn.shape[0]}")
        else:
            w = as_float_array(weights, "weights", ndim=1, nonneg=True)
            if w.shape[0] != m:
                raise ValueError(f"weights must have one entry per coordinate ({m}), got {w.shape[0]}")
            a, m2, vv = self.a @ w, self.mean**2 @ w, self.vr_vs @ w
            if nn.ndim >= 1 and nn.shape[0] != p:
                raise ValueError(f"n must be a scalar or have one size per prompt ({p}), got {nn.shape[0]}")
            if nn.ndim == 2:
                a, m2, vv = a[:, None], m2[:, None], vv[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            var = ((nn - 1.0) * a - (nn - 2.0) * m2 + vv) / (nn * (nn - 1.0))
            if estimator == "drgrpo":
                var = np.where(nn == 1.0, 0.0, var * ((nn - 1.0) / nn) ** 2)
        return np.maximum(var, 0.0)


def group_variance_terms(probs: Any, rewards: Any, scores: Any) -> GroupVarianceTerms:
    """Per-coordinate variance ingredients of each prompt's group gradient estimate.

    Parameters
    ----------
    probs : array_like, shape (P, K)
        Outcome probabilities (rows sum to 1).
    rewards : array_like, shape (P, K)
    scores : array_like, shape (P, K, m)
        Score of every outcome (e.g. :meth:`sim.SoftmaxRLVR.scores`).

    Returns
    -------
    GroupVarianceTerms
        ``mean``, ``a``, ``vr_vs``, each ``(P, m)``.

    Examples
    --------
    Two equally likely outcomes with rewards 1 and 0 and scores +1 and -1: ``Cov(r, s) = 0.5``,
    ``a = E[(r - 1/2)^2 s^2] = 0.25``, ``Var(r) Var(s) = 0.25``; RLOO with two rollouts has variance
    ``(a + vr_vs) / 2 = 0.25``.

    >>> t = group_variance_terms([[0.5, 0.5]], [[1.0, 0.0]], [[[1.0], [-1.0]]])
    >>> t.mean.tolist(), t.a.tolist(), t.vr_vs.tolist(), t.variance(2).tolist()
    ([[0.5]], [[0.25]], [[0.25]], [[0.25]])
    """
    pi = as_float_array(probs, "probs", ndim=2, nonneg=True)
    r = as_float_array(rewards, "rewards", ndim=2)
    s = as_float_array(scores, "scores", ndim=3)
    if r.shape != pi.shape:
        raise ValueError(f"rewards must have the shape of probs {pi.shape}, got {r.shape}")
    if s.shape[:2] != pi.shape:
        raise ValueError(f"scores must have shape {pi.shape + ('m',)}, got {s.shape}")
    total = pi.sum(axis=1)
    bad = np.abs(total - 1.0) > 1e-9
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"probs rows must sum to 1, row {i} sums to {total[i]!r}")
    rho = r - np.einsum("pk,pk->p", pi, r)[:, None]
    sig = s - np.einsum("pk,pkm->pm", pi, s)[:, None, :]
    sig2 = sig * sig
    mean = np.einsum("pk,pkm->pm", pi * rho, sig)
    a = np.einsum("pk,pkm->pm", pi * rho * rho, sig2)
    vr = np.einsum("pk,pk->p", pi, rho * rho)
    vs = np.einsum("pk,pkm->pm", pi, sig2)
    return GroupVarianceTerms(mean, a, vr[:, None] * vs)


def second_moment_scale(mean: Any, variance: Any) -> np.ndarray:
    """Adam's second-moment target per coordinate: ``v_d = E[g_d^2] = mean_d^2 + Var(g_d)``.

    ``mean`` and ``variance`` are the mean and the per-coordinate variance of a gradient estimate
    (shape ``(m,)``). Coordinates with ``v_d = 0`` (no signal and no noise) get ``v_d = inf``, i.e.
    weight 0 in :func:`normalised_variance`: there is nothing for the optimiser to scale.

    Examples
    --------
    >>> second_moment_scale([3.0, 0.0, 0.0], [16.0, 1.0, 0.0]).tolist()
    [25.0, 1.0, inf]
    """
    mu = as_float_array(mean, "mean", ndim=1)
    var = as_float_array(variance, "variance", ndim=1, nonneg=True)
    if mu.shape != var.shape:
        raise ValueError(f"mean and variance must have the same shape, got {mu.shape} and {var.shape}")
    v = mu * mu + var
    return np.where(v > 0.0, v, np.inf)


def normalised_variance(variance: Any, scale: Any) -> float:
    """Variance of a gradient estimate in the geometry of a diagonal preconditioner:
    ``sum_d Var(g_d) / v_d`` (the trace of ``Cov(g / sqrt(v))``).

    Parameters
    ----------
    variance : array_like, shape (m,)
        Per-coordinate variance of the estimate.
    scale : array_like, shape (m,)
        Positive second-moment scale ``v`` (e.g. :func:`second_moment_scale`; ``inf`` allowed).

    Examples
    --------
    >>> normalised_variance([16.0, 2.0], [32.0, 4.0])
    1.0
    """
    var = as_float_array(variance, "variance", ndim=1, nonneg=True)
    v = as_float_array(scale, "scale", ndim=1, finite=False)
    if v.shape != var.shape:
        raise ValueError(f"variance and scale must have the same shape, got {var.shape} and {v.shape}")
    if np.any(np.isnan(v)) or np.any(v <= 0.0):
        raise ValueError(f"scale must be positive, got min {float(np.nanmin(v)) if v.size else 0.0!r}")
    return float(np.sum(var / v))


def exact_optimal_counts(var_table: np.ndarray, lower: int, total: int) -> np.ndarray:
    """Integer counts minimising ``sum_q V_q(n_q)`` with ``sum n = total``, ``n_q`` in
    ``[lower, lower + var_table.shape[1] - 1]``, for per-prompt tables ``var_table[q, j] = V_q(lower + j)``
    that are convex in ``n`` (every exact RLOO group variance is, in any coordinate weighting): the
    ``total - B lower`` largest marginal decreases ``V_q(n) - V_q(n+1)`` over all prompts, ties
    broken by prompt then ``n``. For separable convex costs these greedy choices are an exact
    optimum (the exchange argument of :func:`solvers.allocate`); a slow brute-force twin is in the
    tests.

    Examples
    --------
    >>> exact_optimal_counts(np.array([[4.0, 2.0, 1.5], [1.0, 0.9, 0.85]]), 2, 5).tolist()
    [3, 2]
    """
    b, width = var_table.shape
    extra = int(total) - b * int(lower)
    gains = (var_table[:, :-1] - var_table[:, 1:]).ravel()
    if extra <= 0:
        return np.full(b, int(lower), dtype=np.int64)
    order = np.lexsort((np.arange(gains.size), -gains))[:extra]
    return int(lower) + np.bincount(order // (width - 1), minlength=b).astype(np.int64)


def exact_a_allocation(terms: GroupVarianceTerms, total: int, lower: int, upper: int, *,
                       weights: Any = None) -> np.ndarray:
    """VIP's RLOO allocation (Thm 5.2's cost ``a_q / (n_q - 1)``, exact integer optimum) with the exact
    single-rollout variance ``a_q = sum_d w_d E[(r - p)^2 sig_d^2]`` of each prompt.

    Under VIP Assumption 4.1 (reward independent of the score) ``mean = 0`` and
    ``a = vr_vs``, the exact group variance is ``a_q / (n - 1)`` (Prop 4.3 / E.2 with the true
    ``a_q``), and this allocation is the exact optimum of :func:`exact_optimal_counts`; without the
    assumption it is what VIP's rule reaches with a perfect predictor of ``a_q``.

    Parameters
    ----------
    terms : GroupVarianceTerms
        Of the batch's prompts, ``(P, m)``.
    total, lower, upper : int
        Budget ``sum n = total`` and bounds (``lower >= 2``).
    weights : array_like, shape (m,), optional
        Coordinate weights (default 1: the raw trace; ``1 / v``: Adam's geometry).

    Returns
    -------
    ndarray of int64, shape (P,)
    """
    w = np.ones(terms.a.shape[1]) if weights is None else as_float_array(weights, "weights", ndim=1, nonneg=True)
    a = terms.a @ w
    top = float(a.max()) if a.size else 0.0
    res = allocate(a / top if top > 0.0 else a, int(total), int(lower), int(upper), cost="rloo", integer=True)
    if not res.success:
        raise RuntimeError(f"allocate failed on the exact a_q: {res.message}")
    return np.asarray(res.n, dtype=np.int64)
