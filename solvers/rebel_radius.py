"""The Wasserstein radius at which the linear DRO-REBEL step collapses to ``w = 0``.

With linear rewards and a log-linear policy, the type-2 Wasserstein DRO-REBEL step
(:func:`solvers.rebel_step_linear` with ``robust=("wasserstein", radius)``) minimises the convex
function

.. math::

    J(w) = \\sqrt{L(w)} + \\rho \\|w\\|_2, \\qquad L(w) = \\tfrac1n \\textstyle\\sum_i (a_i \\cdot w - b_i)^2,

with ``a_i = phi(x_i, a_i) - phi(x_i, b_i)`` the pairs' feature differences and ``b_i`` their
reward differences. ``w = 0`` minimises ``J`` iff ``0`` is in the subdifferential at 0, i.e.
``grad sqrt(L)(0) = -(1/n) A^T b / sqrt(mean(b^2))`` lies in the ball of radius ``rho``:

.. math::

    w^\\star = 0 \\iff \\rho \\ge \\rho^\\star = \\frac{\\|\\tfrac1n \\sum_i a_i b_i\\|_2}
        {\\sqrt{\\tfrac1n \\sum_i b_i^2}} .

Below ``rho*`` the direction ``A^T b`` is a descent direction of ``J`` at 0 (its directional
derivative is ``(rho - rho*) ||A^T b / n||``), so the robust estimate is non-zero; at and above
``rho*`` the robust estimate predicts no preference at all. Any Wasserstein radius should be read
against ``rho*`` (a radius of ``c rho*`` with ``c`` in ``(0, 1)`` shrinks REBEL's estimate; ``c >= 1``
returns the trivial solution).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import as_float_array, check_same_shape

__all__ = ["wasserstein_collapse_radius"]


def _collapse_iv(features_a: Any, features_b: Any, rewards_a: Any, rewards_b: Any) -> tuple[np.ndarray, np.ndarray]:
    fa = as_float_array(features_a, "features_a", ndim=2)
    fb = as_float_array(features_b, "features_b", ndim=2)
    check_same_shape(fa, "features_a", fb, "features_b")
    if fa.shape[0] < 1 or fa.shape[1] < 1:
        raise ValueError(f"features_a must have at least one pair (row) and one feature, got shape {fa.shape}")
    ra = as_float_array(rewards_a, "rewards_a", ndim=1)
    rb = as_float_array(rewards_b, "rewards_b", ndim=1)
    check_same_shape(ra, "rewards_a", rb, "rewards_b")
    if ra.shape[0] != fa.shape[0]:
        raise ValueError(
            f"rewards_a must have shape ({fa.shape[0]},) to match features_a of shape {fa.shape}, got {ra.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        A = fa - fb
        b = ra - rb
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        raise ValueError("features_a - features_b or rewards_a - rewards_b overflowed float64")
    return A, b


def wasserstein_collapse_radius(features_a: Any, features_b: Any, rewards_a: Any, rewards_b: Any) -> float:
    """Smallest type-2 Wasserstein radius at which the linear DRO-REBEL step returns ``w = 0``.

    ``rho* = ||mean_i(a_i b_i)|| / sqrt(mean_i(b_i^2))`` (module docstring), with ``a_i`` the
    feature differences and ``b_i`` the reward differences of the pairs. It is invariant to a
    common rescaling of the rewards and scales as ``1 / c`` when the features are scaled by ``c``
    (a radius is in feature units).

    Parameters
    ----------
    features_a, features_b : array_like, shape [n, d]
        Features of the two responses of each pair.
    rewards_a, rewards_b : array_like, shape [n]
        Their rewards.

    Returns
    -------
    float
        ``rho* >= 0``; ``0.0`` when every reward difference is 0 (then ``w = 0`` is optimal for
        every radius).

    Raises
    ------
    ValueError
        Shape mismatch, empty or non-finite inputs, or a radius beyond float64 (features near the
        largest double).
    TypeError
        Non-numeric inputs.

    Examples
    --------
    >>> import numpy as np
    >>> fa = np.array([[1.0, 0.0], [0.0, 1.0]]); fb = np.zeros((2, 2))
    >>> round(wasserstein_collapse_radius(fa, fb, np.array([3.0, 4.0]), np.zeros(2)), 6)  # ||(3,4)/2|| / sqrt(25/2)
    0.707107
    """
    A, b = _collapse_iv(features_a, features_b, rewards_a, rewards_b)
    scale = float(np.max(np.abs(b)))
    if scale == 0.0:
        return 0.0
    bs = b / scale  # the ratio is scale-free in b; rescaling keeps the squares finite
    a_scale = float(np.max(np.abs(A)))
    if a_scale == 0.0:
        return 0.0
    As = A / a_scale  # rho* is linear in the features: rescale them too, multiply back at the end
    n = b.shape[0]
    num = float(np.linalg.norm(As.T @ bs)) / n
    den = float(np.sqrt(np.mean(bs * bs)))
    rho = a_scale * (num / den)
    if not np.isfinite(rho):
        raise ValueError(f"the collapse radius overflows float64 (features up to {a_scale:.3g}): rescale the "
                         "features (a radius is in feature units)")
    return rho
