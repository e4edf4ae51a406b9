"""Coverage-based DRO and DRRO certificates (DRRO Sec. 6.2, Def. 6.2 / 6.5, Prop 6.3 / 6.6).

Setting (finite prompts and responses, the paper's finite-response contextual bandit): prompts
``x = 1..X`` with probabilities ``D(x)``, responses ``y = 1..Y``, a policy given by its linear
representation ``z(x, y) = pi(y | x)`` (an ``(X, Y)`` array), a full-support coverage distribution
``mu_x`` per prompt, a proxy reward ``r_hat(x, y)`` and the mean weighted-l1 confidence set

    U_eps = { r : E_{x ~ D} sum_y mu_x(y) |r(x, y) - r_hat(x, y)| <= eps }.

With ``J_r(pi) = E_{x ~ D} <z_pi(x), r(x)>``:

* absolute integrated concentrability (Def. 6.2): ``C_inf(pi) = ess sup_x max_y |z_pi(x, y)| / mu_x(y)``;
* relative integrated concentrability (Def. 6.5): ``C_inf,rel(beta, pi) = C_inf`` of ``z_beta - z_pi``;
* DRO certificate (Prop 6.3): ``min_{r in U_eps} J_r(pi) = J_rhat(pi) - eps C_inf(pi)``;
* DRRO certificate (Prop 6.6): ``max_{r in U_eps} [max_beta J_r(beta) - J_r(pi)]
  = max_beta {J_rhat(beta) - J_rhat(pi) + eps C_inf,rel(beta, pi)}``.

The essential supremum runs over prompts with ``D(x) > 0`` (a prompt of probability 0 carries no
constraint and no exposure). For a policy class given as a finite set of comparators the DRRO
certificate is a maximum over that set; for the full product simplex the maximum is attained at a
deterministic policy (the objective is convex in ``beta``), so passing every deterministic policy
as a comparator gives the exact value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import as_float_array, check_finite_scalar

__all__ = [
    "CoverageCertificate",
    "concentrability",
    "dro_certificate",
    "drro_certificate",
    "relative_concentrability",
]

_SIMPLEX_TOL = 1e-8


@dataclass(frozen=True)
class CoverageCertificate:
    """Value of a coverage certificate (:func:`dro_certificate`, :func:`drro_certificate`).

    Attributes
    ----------
    value : float
        The certificate: ``J_rhat(pi) - eps C_inf(pi)`` (DRO, Prop 6.3) or
        ``max_beta {J_rhat(beta) - J_rhat(pi) + eps C_inf,rel(beta, pi)}`` (DRRO, Prop 6.6).
    nominal : float
        ``J_rhat(pi)`` (DRO) or ``J_rhat(beta*) - J_rhat(pi)`` at the maximising comparator (DRRO).
    concentrability : float
        ``C_inf(pi)`` (DRO) or ``C_inf,rel(beta*, pi)`` (DRRO).
    comparator : int
        Index of the maximising comparator ``beta*`` (the first one on ties); ``-1`` for DRO.
    """

    value: float
    nominal: float
    concentrability: float
    comparator: int


def _coverage_iv(coverage: Any, prompt_probs: Any) -> tuple[np.ndarray, np.ndarray]:
    mu = as_float_array(coverage, "coverage", ndim=2, positive=True, min_size=1)
    sums = mu.sum(axis=1)
    bad = ~(np.abs(sums - 1.0) <= _SIMPLEX_TOL)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"coverage rows must sum to 1 (full-support distributions), got row {i} summing to "
                         f"{float(sums[i])!r}")
    if prompt_probs is None:
        d = np.full(mu.shape[0], 1.0 / mu.shape[0])
    else:
        d = as_float_array(prompt_probs, "prompt_probs", ndim=1, nonneg=True)
        if d.shape[0] != mu.shape[0]:
            raise ValueError(f"prompt_probs must have one entry per prompt ({mu.shape[0]}), got {d.shape[0]}")
        if not abs(float(d.sum()) - 1.0) <= _SIMPLEX_TOL:
            raise ValueError(f"prompt_probs must sum to 1, got sum {float(d.sum())!r}")
    return mu, d


def _z_iv(z: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    arr = as_float_array(z, name, ndim=2)
    if arr.shape != shape:
        raise ValueError(f"{name} must have the shape of coverage {shape}, got {arr.shape}")
    return arr


def _ess_sup_ratio(z: np.ndarray, mu: np.ndarray, d: np.ndarray, names: str) -> float:
    with np.errstate(over="ignore"):
        ratio = np.abs(z[d > 0.0]) / mu[d > 0.0]
    value = float(ratio.max())
    if not np.isfinite(value):
        raise ValueError(f"the concentrability |z| / coverage overflows float64 ({names}); rescale the inputs")
    return value


def _expected_value(z: np.ndarray, r: np.ndarray, d: np.ndarray, names: str) -> float:
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(d @ np.einsum("xy,xy->x", z, r))
    if not np.isfinite(value):
        raise ValueError(f"J_r(pi) = E_x <z(x), r(x)> overflows float64 ({names}); rescale the inputs")
    return value


def concentrability(z: Any, coverage: Any, prompt_probs: Any = None) -> float:
    """Absolute integrated concentrability ``C_inf(pi; mu, D)`` (DRRO Def. 6.2).

    Parameters
    ----------
    z : array_like, shape (X, Y)
        The policy's representation ``z_pi(x, y)`` (``pi(y | x)`` for a contextual bandit); any
        real array is accepted (a difference of policies gives Def. 6.5).
    coverage : array_like, shape (X, Y)
        Full-support coverage distributions ``mu_x`` (positive rows summing to 1).
    prompt_probs : array_like, shape (X,), optional
        Prompt distribution ``D`` (non-negative, sums to 1); default uniform. The essential supremum
        ignores prompts of probability 0.

    Returns
    -------
    float
        ``max_{x: D(x) > 0} max_y |z(x, y)| / mu_x(y)``.

    Raises
    ------
    ValueError
        Shapes, non-finite values, coverage rows off the simplex or not positive, ``prompt_probs``
        off the simplex, or a ratio that overflows float64.

    Examples
    --------
    >>> concentrability([[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.8, 0.2]])
    1.25
    """
    mu, d = _coverage_iv(coverage, prompt_probs)
    zz = _z_iv(z, "z", mu.shape)
    return _ess_sup_ratio(zz, mu, d, "z, coverage")


def relative_concentrability(z_beta: Any, z_pi: Any, coverage: Any, prompt_probs: Any = None) -> float:
    """Relative integrated concentrability ``C_inf,rel(beta, pi; mu, D)`` (DRRO Def. 6.5).

    ``ess sup_x max_y |z_beta(x, y) - z_pi(x, y)| / mu_x(y)``; parameters as
    :func:`concentrability`. It is 0 exactly when the two policies agree on every prompt of
    positive probability.

    Examples
    --------
    >>> relative_concentrability([[1.0, 0.0]], [[0.5, 0.5]], [[0.9, 0.1]])
    5.0
    """
    mu, d = _coverage_iv(coverage, prompt_probs)
    zb = _z_iv(z_beta, "z_beta", mu.shape)
    zp = _z_iv(z_pi, "z_pi", mu.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = zb - zp
    if not np.all(np.isfinite(diff)):
        raise ValueError("z_beta - z_pi overflows float64; rescale z_beta and z_pi")
    return _ess_sup_ratio(diff, mu, d, "z_beta - z_pi, coverage")


def dro_certificate(z: Any, r_hat: Any, coverage: Any, radius: Any, prompt_probs: Any = None) -> CoverageCertificate:
    """Worst-case value of a policy over the weighted-l1 confidence set (DRRO Prop 6.3, eq. 6.1).

    ``min_{r in U_eps} J_r(pi) = J_rhat(pi) - eps C_inf(pi; mu, D)``.

    Parameters
    ----------
    z : array_like, shape (X, Y)
        The policy ``z_pi(x, y) = pi(y | x)``.
    r_hat : array_like, shape (X, Y)
        Proxy rewards.
    coverage : array_like, shape (X, Y)
        Coverage distributions ``mu_x`` (positive rows summing to 1).
    radius : float
        ``eps >= 0``, the radius of ``U_eps``.
    prompt_probs : array_like, shape (X,), optional
        Prompt distribution ``D`` (default uniform).

    Returns
    -------
    CoverageCertificate
        ``value``, ``nominal = J_rhat(pi)``, ``concentrability = C_inf(pi)``, ``comparator = -1``.

    Examples
    --------
    >>> c = dro_certificate([[1.0, 0.0]], [[1.0, 0.0]], [[0.5, 0.5]], 0.1)
    >>> round(c.value, 12), c.concentrability
    (0.8, 2.0)
    """
    mu, d = _coverage_iv(coverage, prompt_probs)
    zz = _z_iv(z, "z", mu.shape)
    r = _z_iv(r_hat, "r_hat", mu.shape)
    eps = check_finite_scalar(radius, "radius", lo=0.0)
    c = _ess_sup_ratio(zz, mu, d, "z, coverage")
    nominal = _expected_value(zz, r, d, "z, r_hat")
    value = nominal - eps * c
    if not np.isfinite(value):
        raise ValueError(f"the certificate J_rhat - radius * C_inf overflows float64 (radius={eps!r}); rescale")
    return CoverageCertificate(value=float(value), nominal=nominal, concentrability=c, comparator=-1)


def drro_certificate(
    z: Any, comparators: Any, r_hat: Any, coverage: Any, radius: Any, prompt_probs: Any = None
) -> CoverageCertificate:
    """Worst-case regret of a policy against a comparator class (DRRO Prop 6.6, eq. 6.3).

    ``max_{r in U_eps} [max_beta J_r(beta) - J_r(pi)]
    = max_beta {J_rhat(beta) - J_rhat(pi) + eps C_inf,rel(beta, pi; mu, D)}``, the maximum over the
    given comparators ``beta`` (a finite policy class; include ``pi`` itself when it belongs to
    the class, which makes the value >= 0).

    Parameters
    ----------
    z : array_like, shape (X, Y)
        The policy ``pi``.
    comparators : array_like, shape (K, X, Y)
        The comparator policies ``beta_1..beta_K`` (``K >= 1``).
    r_hat, coverage, radius, prompt_probs
        As in :func:`dro_certificate`.

    Returns
    -------
    CoverageCertificate
        ``value``; ``nominal = J_rhat(beta*) - J_rhat(pi)``, ``concentrability = C_inf,rel(beta*,
        pi)`` and ``comparator`` = index of the maximiser ``beta*`` (first on ties).

    Examples
    --------
    >>> betas = [[[1.0, 0.0]], [[0.0, 1.0]]]
    >>> c = drro_certificate([[1.0, 0.0]], betas, [[1.0, 0.0]], [[0.5, 0.5]], 1.0)
    >>> c.value, c.comparator   # beta = e_2: -1 + 1.0 * |(-1, 1)| / 0.5 = 1
    (1.0, 1)
    """
    mu, d = _coverage_iv(coverage, prompt_probs)
    zp = _z_iv(z, "z", mu.shape)
    r = _z_iv(r_hat, "r_hat", mu.shape)
    betas = as_float_array(comparators, "comparators", ndim=3, min_size=1)
    if betas.shape[1:] != mu.shape or betas.shape[0] < 1:
        raise ValueError(f"comparators must have shape (K, {mu.shape[0]}, {mu.shape[1]}) with K >= 1, got {betas.shape}")
    eps = check_finite_scalar(radius, "radius", lo=0.0)
    j_pi = _expected_value(zp, r, d, "z, r_hat")
    active = d > 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        j_beta = np.einsum("kxy,xy,x->k", betas, r, d)
        diff = betas - zp[None]
        c_rel = (np.abs(diff[:, active]) / mu[None, active]).reshape(betas.shape[0], -1).max(axis=1)
        nominal = j_beta - j_pi
        values = nominal + eps * c_rel
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(c_rel))):
        raise ValueError("the DRRO certificate overflows float64 (comparators, z, r_hat, coverage, radius); rescale")
    k = int(np.argmax(values))
    return CoverageCertificate(value=float(values[k]), nominal=float(nominal[k]), concentrability=float(c_rel[k]),
                               comparator=k)
