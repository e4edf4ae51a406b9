"""VIP App. B: tests of Assumption 4.1(ii) (reward vs projected score) and of equal score variance.

All tests take one ragged batch: flat ``rewards`` and ``scores`` (``Z = ||H(o)||_2``) with integer
``group_ids`` (one group per prompt).

* :func:`fisher_test` (App. B.1): per prompt, the Pearson correlation of ``(R_j, Z_j)`` and its
  two-sided p-value ``p_q`` (t test with ``n_q - 2`` degrees of freedom); Fisher's statistic
  ``-2 sum_q ln p_q ~ chi^2_{2Q}`` under ``H_0: rho_q = 0 for all q``.
* :func:`edgington_test` (App. B.2): ``S = sum_q p_q``, one-sided global p-value
  ``Phi((S - Q/2) / sqrt(Q/12))``.
* :func:`levene_test` (App. B.3): Levene's test (median-centred, Brown-Forsythe) of
  ``H_0: sigma_{Z_q}^2`` equal for every prompt, ``W ~ F_{Q-1, N-Q}``.

Each result also carries ``log10_pvalue``, which stays finite when the p-value underflows (the
chi-square tail in log space; for Levene, ``F(d1, d2) ~ chi2_d1 / d1`` at the large ``d2`` of these
tests).

The paper leaves implicit what happens to a prompt whose correlation is undefined: a group whose
rewards (or scores) are all equal, e.g. all rollouts wrong, has no Pearson correlation
(``scipy.stats.pearsonr`` returns NaN). Such prompts, and prompts with fewer than three rollouts
(no t test), are left out of the combination; the results say how many prompts were used.

Limitation (measured, ``tests/test_independence.py``): the per-prompt t test assumes near-normal
data. With almost-saturated binary rewards and a skewed score norm its p-values are not uniform
even under independence, and Fisher's combination over hundreds of prompts rejects far more often
than its nominal level (about half the time at level 0.05 for ``p = 0.97``, ``CV(Z) = 2``,
600 prompts x 16 rollouts).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy import special, stats

from solvers._validation import as_float_array, as_int_array

__all__ = ["IndependenceTest", "edgington_test", "fisher_test", "levene_test", "pearson_by_group"]


class IndependenceTest(NamedTuple):
    """Result of one global test: statistic, global p-value, prompts used, the method's name, and
    ``log10_pvalue`` (finite where ``pvalue`` underflows to 0)."""

    statistic: float
    pvalue: float
    n_groups: int
    method: str
    log10_pvalue: float = float("nan")


_LN10 = float(np.log(10.0))


def _log10_chi2_sf(x: float, dof: float) -> float:
    """``log10 P(chi2_dof >= x)``, finite where the p-value underflows.

    SciPy's survival function while it is representable (``>= 1e-300``); beyond, the upper
    incomplete gamma ``Q(a, y)`` (``a = dof/2``, ``y = x/2``) in log space from its continued
    fraction (modified Lentz, as in Numerical Recipes ``gcf``), valid for ``y > a + 1`` -- always
    the case that far in the tail."""
    sf = float(stats.chi2.sf(x, dof))
    if sf >= 1e-300:
        return float(np.log10(sf))
    a, y = 0.5 * dof, 0.5 * x
    tiny = 1e-300
    b = y + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return float(-y + a * np.log(y) - special.gammaln(a) + np.log(h)) / _LN10


def _ragged_iv(values: Any, name: str, group_ids: Any, other: np.ndarray | None = None):
    v = as_float_array(values, name, ndim=1, min_size=1)
    g = as_int_array(group_ids, "group_ids", ndim=1, nonneg=True)
    if g.shape != v.shape:
        raise ValueError(f"group_ids must have the shape of {name} {v.shape}, got {g.shape}")
    if other is not None and other.shape != v.shape:
        raise ValueError(f"rewards and scores must have the same shape, got {other.shape} and {v.shape}")
    return v, g


def pearson_by_group(rewards: Any, scores: Any, group_ids: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group Pearson correlation, two-sided p-value and size (App. B.1).

    Returns ``(r, pvalue, n)``, each shape ``(G,)`` with ``G = max(group_ids) + 1``; ``r`` and
    ``pvalue`` are NaN where undefined (fewer than 3 rollouts, or constant rewards or scores).
    """
    r = as_float_array(rewards, "rewards", ndim=1, min_size=1)
    z, g = _ragged_iv(scores, "scores", group_ids, other=r)
    size = int(g.max()) + 1
    n = np.bincount(g, minlength=size).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mr = np.bincount(g, weights=r, minlength=size) / n
        mz = np.bincount(g, weights=z, minlength=size) / n
        dr = r - mr[g]
        dz = z - mz[g]
        srr = np.bincount(g, weights=dr * dr, minlength=size)
        szz = np.bincount(g, weights=dz * dz, minlength=size)
        srz = np.bincount(g, weights=dr * dz, minlength=size)
        # a spread below 1e-12 of the values' scale is rounding noise of a constant group
        tiny_r = srr <= 1e-24 * np.maximum(np.bincount(g, weights=r * r, minlength=size), 1e-300)
        tiny_z = szz <= 1e-24 * np.maximum(np.bincount(g, weights=z * z, minlength=size), 1e-300)
        rho = np.clip(srz / np.sqrt(srr * szz), -1.0, 1.0)
    valid = (n >= 3) & ~tiny_r & ~tiny_z
    rho = np.where(valid, rho, np.nan)
    df = np.maximum(n - 2.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = rho * np.sqrt(df / np.maximum(1.0 - rho * rho, 0.0))
    pval = np.where(valid, 2.0 * stats.t.sf(np.abs(t), df), np.nan)
    return rho, pval, n


def fisher_test(rewards: Any, scores: Any, group_ids: Any) -> IndependenceTest:
    """Fisher's combination of per-prompt Pearson tests (VIP App. B.1)."""
    _, pval, _ = pearson_by_group(rewards, scores, group_ids)
    p = pval[np.isfinite(pval)]
    if p.size == 0:
        return IndependenceTest(float("nan"), float("nan"), 0, "fisher")
    stat = float(-2.0 * np.sum(np.log(np.maximum(p, np.finfo(np.float64).tiny))))
    dof = 2 * p.size
    return IndependenceTest(stat, float(stats.chi2.sf(stat, dof)), int(p.size), "fisher",
                            _log10_chi2_sf(stat, dof))


def edgington_test(rewards: Any, scores: Any, group_ids: Any) -> IndependenceTest:
    """Edgington's sum of per-prompt p-values, normal approximation (VIP App. B.2)."""
    _, pval, _ = pearson_by_group(rewards, scores, group_ids)
    p = pval[np.isfinite(pval)]
    if p.size == 0:
        return IndependenceTest(float("nan"), float("nan"), 0, "edgington")
    s = float(p.sum())
    q = p.size
    z = (s - q / 2.0) / np.sqrt(q / 12.0)
    return IndependenceTest(s, float(stats.norm.cdf(z)), int(q), "edgington", float(stats.norm.logcdf(z)) / _LN10)


def levene_test(scores: Any, group_ids: Any) -> IndependenceTest:
    """Levene's (median-centred) test of equal ``Var(Z_q)`` across prompts (VIP App. B.3).

    Groups with fewer than two rollouts are left out.
    """
    z, g = _ragged_iv(scores, "scores", group_ids)
    size = int(g.max()) + 1
    n = np.bincount(g, minlength=size)
    keep = n[g] >= 2
    z, g = z[keep], g[keep]
    if z.size == 0:
        return IndependenceTest(float("nan"), float("nan"), 0, "levene")
    _, g = np.unique(g, return_inverse=True)
    size = int(g.max()) + 1
    n = np.bincount(g, minlength=size).astype(np.float64)
    order = np.lexsort((z, g))
    zs, gs = z[order], g[order]
    start = np.concatenate([[0], np.cumsum(n[:-1])]).astype(np.int64)
    cnt = n.astype(np.int64)
    med = 0.5 * (zs[start + (cnt - 1) // 2] + zs[start + cnt // 2])
    y = np.abs(zs - med[gs])
    ybar_q = np.bincount(gs, weights=y, minlength=size) / n
    ybar = y.mean()
    big_n, q = float(y.size), float(size)
    within = float(np.sum((y - ybar_q[gs]) ** 2))
    between = float(np.sum(n * (ybar_q - ybar) ** 2))
    if q < 2 or big_n <= q:
        return IndependenceTest(float("nan"), float("nan"), int(q), "levene")
    if within <= 0.0:
        w = float("inf") if between > 0 else float("nan")
    else:
        w = (big_n - q) * between / ((q - 1.0) * within)
    if np.isfinite(w):
        pv = float(stats.f.sf(w, q - 1.0, big_n - q))
        # below 1e-300: F(d1, d2) ~ chi2_d1 / d1 for the large d2 = N - Q of these tests
        lp = float(np.log10(pv)) if pv >= 1e-300 else _log10_chi2_sf((q - 1.0) * w, q - 1.0)
    else:
        pv, lp = (0.0, float("-inf")) if w == float("inf") else (float("nan"), float("nan"))
    return IndependenceTest(float(w), pv, int(q), "levene", lp)
