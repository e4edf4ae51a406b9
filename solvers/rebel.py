"""REBEL and DRO-REBEL updates at the array level: the regression loss, the robust weights and
penalty, and the exact step under linear rewards and log-linear policies.

REBEL (regression to relative reward) replaces the policy-gradient step by a least-squares
regression of reward *differences* onto scaled log-ratio *differences* of a pair of responses
``(a, b)`` to the same prompt ``x``:

.. math::

    \\ell(\\theta; x, a, b) = \\Big( \\tfrac1\\eta \\big[\\log\\tfrac{\\pi_\\theta(a|x)}{\\pi_t(a|x)}
        - \\log\\tfrac{\\pi_\\theta(b|x)}{\\pi_t(b|x)}\\big] - \\big[r(x,a) - r(x,b)\\big] \\Big)^2,

averaged over the pairs (DRO-REBEL summary, the displayed ``l_REBEL(z; theta)``).

Baseline policy (choice, see docs/architecture.md, "Known traps"): the log-ratios are taken against
the **rollout policy** ``pi_t`` of the current iteration, as in REBEL, so each step is a
trust-region-like regression centred at the current iterate. The public DRO-REBEL code uses a
fixed reference policy instead; :func:`rebel_loss` takes the log-ratios as inputs, so a caller may
pass log-ratios against any baseline, but :func:`rebel_step_linear` (and the studies) implement the
rollout-policy version: the returned parameter is ``theta_{t+1} = theta_t + eta w*``.

DRO-REBEL robustifies the expectation over pairs (DRO-REBEL summary: "gradient regularization for
Wasserstein, importance weighting for KL, and a 1-D dual solve for chi-square"):

* KL / chi-square: ``max_{q in ball(radius)} sum_i q_i l_i`` over distributions ``q`` on the
  pairs; the maximiser is computed exactly by the duals of :mod:`solvers.dro_duals`
  (:func:`dro_rebel_weights`). By the envelope theorem (Danskin) the gradient of the robust loss
  is ``sum_i q*_i grad l_i`` with ``q*`` **held fixed**: the weights are constants in a gradient
  step (detach them with torch; never back-propagate through them).
* Wasserstein-p: the first-order (gradient-regularisation) form
  ``E[l] + radius (E ||grad_z l||_*^q)^(1/q)``, ``1/p + 1/q = 1`` (:func:`wasserstein_penalty`).

Linear rewards, log-linear policies (:func:`rebel_step_linear`). With
``pi_theta(y|x) ~ exp(theta . phi(x, y))`` the partition functions cancel in the log-ratio
difference, which becomes ``(theta - theta_t) . (phi_a - phi_b)``. Writing
``A = features_a - features_b`` (rows ``a_i``), ``b = rewards_a - rewards_b`` and
``w = (theta - theta_t) / eta``, the per-pair loss is ``l_i(w) = (a_i . w - b_i)^2`` and the step
minimises a (robust) least-squares objective in ``w``; see that function for the exact problems.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._status import CERTIFICATE_FAILED, ITERATION_LIMIT, MESSAGES, OPTIMAL, OVERFLOW, overflow_message
from ._validation import (
    as_float_array,
    check_finite_scalar,
    check_int_scalar,
    check_same_shape,
)
from .dro_duals import DROResult, chi2_worst_case, kl_worst_case

__all__ = [
    "DRO_REBEL_KINDS",
    "RebelLoss",
    "RebelStepResult",
    "WassersteinPenalty",
    "dro_rebel_weights",
    "rebel_loss",
    "rebel_step_linear",
    "wasserstein_penalty",
]

DRO_REBEL_KINDS = ("kl", "chi2")
"""Ambiguity sets handled by reweighting (:func:`dro_rebel_weights`)."""

_ROBUST_KINDS = ("kl", "chi2", "wasserstein")
_RESCALE_ABOVE = 1e100  # reward differences above this are solved rescaled (squares overflow near 1e154)


# ============================================================================================
# REBEL loss
# ============================================================================================


@dataclass(frozen=True)
class RebelLoss:
    """Per-pair REBEL losses.

    Attributes
    ----------
    losses : ndarray, shape [n]
        ``residuals ** 2``, one per pair.
    mean : float
        Their mean (the REBEL objective of the batch).
    residuals : ndarray, shape [n]
        ``(logratio_a - logratio_b) / eta - (reward_a - reward_b)``; the gradient of a pair's
        loss with respect to its log-ratio difference is ``2 * residual / eta``.
    """

    losses: np.ndarray
    mean: float
    residuals: np.ndarray


def _pair_arrays_iv(names: tuple[str, ...], arrays: tuple[Any, ...]) -> list[np.ndarray]:
    out = [as_float_array(a, n, ndim=1, min_size=1) for n, a in zip(names, arrays)]
    for name, arr in zip(names[1:], out[1:]):
        check_same_shape(out[0], names[0], arr, name)
    return out


def rebel_loss(logratio_a: Any, logratio_b: Any, reward_a: Any, reward_b: Any, eta: Any) -> RebelLoss:
    r"""REBEL's relative-reward regression loss, one value per pair.

    .. math:: \ell_i = \Big(\tfrac{1}{\eta}\,(\mathrm{lr}^a_i - \mathrm{lr}^b_i) - (r^a_i - r^b_i)\Big)^2,
        \qquad \mathrm{lr} = \log\pi_\theta(y|x) - \log\pi_t(y|x)

    (DRO-REBEL summary, ``l_REBEL(z; theta)``). ``pi_t`` is the rollout policy of the current
    iteration (REBEL); see the module docstring for a fixed reference.

    Parameters
    ----------
    logratio_a, logratio_b : array_like, shape [n]
        Sequence log-ratios ``log pi_theta(y|x) - log pi_t(y|x)`` of the two responses of each pair
        (nats).
    reward_a, reward_b : array_like, shape [n]
        Their rewards.
    eta : float
        REBEL's step size ``eta > 0`` (the log-ratio difference is divided by it).

    Returns
    -------
    RebelLoss
        ``losses`` [n], ``mean`` and ``residuals`` [n].

    Raises
    ------
    ValueError
        Shape mismatch, empty or non-finite inputs, ``eta <= 0`` or non-finite, or a loss that
        overflows float64.

    Examples
    --------
    >>> out = rebel_loss([0.2, 0.0], [0.0, 0.1], [1.0, 0.0], [0.0, 0.0], eta=0.5)
    >>> out.losses.round(3).tolist(), round(out.mean, 3)
    ([0.36, 0.04], 0.2)
    """
    la, lb, ra, rb = _pair_arrays_iv(
        ("logratio_a", "logratio_b", "reward_a", "reward_b"), (logratio_a, logratio_b, reward_a, reward_b)
    )
    eta_f = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
    with np.errstate(over="ignore", invalid="ignore"):
        residuals = (la - lb) / eta_f - (ra - rb)
        losses = residuals * residuals
        mean = float(losses.mean())
    if not np.isfinite(mean):
        raise ValueError(
            f"rebel_loss overflowed float64 (eta={eta_f!r}, max |logratio difference|="
            f"{float(np.abs(la - lb).max())!r}): rescale the inputs"
        )
    return RebelLoss(losses, mean, residuals)


# ============================================================================================
# KL / chi-square weights
# ============================================================================================


def _kind_iv(kind: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"kind must be one of {list(allowed)}, got {type(kind).__name__}")
    if kind not in allowed:
        raise ValueError(f"kind must be one of {list(allowed)}, got {kind!r}")
    return kind


def dro_rebel_weights(losses: Any, kind: str, radius: Any, *, full_output: bool = False) -> Any:
    r"""Worst-case weights over the pairs for DRO-REBEL's KL and chi-square variants.

    Solves ``max_q sum_i q_i l_i`` over the simplex with

    * ``kind="kl"``: ``KL(q || u) <= radius`` (``u`` uniform over the ``n`` pairs); the maximiser is
      the exponential tilt ``q ~ exp(l / tau*)``, computed in log space by
      :func:`solvers.kl_worst_case`;
    * ``kind="chi2"``: ``1/2 sum_i u_i (q_i/u_i - 1)^2 <= radius``; ``q ~ (l - eta*)_+`` with the
      threshold from the exact 1-D dual ``g(eta) = eta + sqrt(1 + 2 radius) sqrt(E_u[(l - eta)_+^2])``
      (:func:`solvers.chi2_worst_case`; note the "1 +", which a public DRO-REBEL implementation
      drops, making its weights independent of the radius for ``radius < 1/2``).

    This is a thin, validated front end: the two duals of :mod:`solvers.dro_duals` are the only
    implementation (each solve is certified there by feasibility and a zero duality gap).

    Gradient steps (envelope theorem / Danskin): the robust loss ``V(theta) = max_q sum q_i
    l_i(theta)`` has gradient ``sum_i q*_i grad l_i(theta)`` with ``q*`` held fixed. **Use the
    weights as constants** (detach them); differentiating through them double counts.

    Parameters
    ----------
    losses : array_like, shape [n]
        Finite per-pair losses (e.g. :func:`rebel_loss` ``.losses``, detached).
    kind : {"kl", "chi2"}
        Ambiguity set.
    radius : float
        ``radius >= 0``; ``0`` gives the uniform weights of plain REBEL. For ``kind="kl"`` at
        ``radius >= log(n / #argmax)`` and for ``"chi2"`` at ``1 + 2 radius >= n / #argmax`` the
        weights are the point mass on the largest loss(es).
    full_output : bool
        Return the :class:`solvers.DROResult` (``value`` = the robust loss ``sum q_i l_i``,
        ``dual`` = ``tau*`` or ``eta*``, certificate) instead of the weights.

    Returns
    -------
    weights : ndarray, shape [n]
        ``q*`` on the simplex (or a ``DROResult`` with ``full_output=True``).

    Raises
    ------
    ValueError
        Empty or non-finite ``losses``, unknown ``kind``, negative or non-finite ``radius``.
    TypeError
        ``kind`` not a string, ``radius`` not a number.

    Warns
    -----
    RuntimeWarning
        If the dual's certificate fails (only with ``full_output=False``).

    Examples
    --------
    >>> dro_rebel_weights([0.0, 1.0, 2.0], "kl", 0.0).round(4).tolist()
    [0.3333, 0.3333, 0.3333]
    >>> w = dro_rebel_weights([0.0, 1.0, 2.0], "chi2", 0.05)
    >>> bool(w[2] > w[1] > w[0]), round(float(w.sum()), 12)
    (True, 1.0)
    """
    arr = as_float_array(losses, "losses", ndim=1, min_size=1)
    k = _kind_iv(kind, DRO_REBEL_KINDS)
    rad = check_finite_scalar(radius, "radius", lo=0.0)
    res: DROResult = (kl_worst_case if k == "kl" else chi2_worst_case)(arr, rho=rad)
    if full_output:
        return res
    if not res.success:
        warnings.warn(f"dro_rebel_weights({k!r}): {res.message}", RuntimeWarning, stacklevel=2)
    return res.weights


# ============================================================================================
# Wasserstein gradient penalty
# ============================================================================================


@dataclass(frozen=True)
class WassersteinPenalty:
    """Value and gradient of :func:`wasserstein_penalty`.

    Attributes
    ----------
    value : float
        ``radius * (mean_i g_i^q)^(1/q)`` (``radius * max_i g_i`` for ``q = inf``).
    grad : ndarray, shape [n]
        ``d value / d g_i``: ``radius / n * (g_i / M)^(q - 1)`` with ``M = (mean g^q)^(1/q)``;
        ``radius / n`` for ``q = 1``; for ``q = inf`` the subgradient ``radius / #argmax`` on the
        largest norm(s); ``0`` for ``1 < q`` when every ``g_i = 0`` (a subgradient). Chain it with
        ``d g_i / d theta`` to differentiate the penalty in the model parameters.
    q : float
        The dual exponent ``p / (p - 1)``.
    """

    value: float
    grad: np.ndarray
    q: float


def _p_iv(p: Any) -> float:
    if isinstance(p, (float, np.floating)) and np.isposinf(p):
        return np.inf
    return check_finite_scalar(p, "p", lo=1.0)


def wasserstein_penalty(grad_norms: Any, radius: Any, p: Any) -> WassersteinPenalty:
    r"""DRO-REBEL's Wasserstein-p gradient penalty ``radius * (E ||grad_z l||_*^q)^(1/q)``.

    For a type-p Wasserstein ball of radius ``radius`` around the empirical distribution of the
    pairs, ``sup_Q E_Q[l] = E[l] + radius (E ||grad_z l||_*^q)^(1/q) + o(radius)`` with
    ``1/p + 1/q = 1`` (gradient regularisation; Gao, Chen & Kleywegt, "Wasserstein distributionally
    robust optimization and variation regularization"; DRO-REBEL's Wasserstein update). The
    expectation is the mean over the ``n`` pairs; ``||.||_*`` is the dual of the transport cost's
    norm, applied by the caller when computing ``grad_norms``.

    ``p = 1`` gives ``q = inf`` (``radius * max_i g_i``); ``p = inf`` gives ``q = 1``
    (``radius * mean_i g_i``); ``p = 2`` gives the root mean square.

    Parameters
    ----------
    grad_norms : array_like, shape [n]
        ``g_i = ||grad_z l(z_i)||_*`` per pair, finite and ``>= 0``.
    radius : float
        Wasserstein radius ``>= 0`` (in the units of the transport cost).
    p : float
        Wasserstein order, ``1 <= p <= inf`` (``float("inf")`` allowed).

    Returns
    -------
    WassersteinPenalty
        ``value``, ``grad`` (``d value / d grad_norms``, see the class) and ``q``.

    Raises
    ------
    ValueError
        Empty, negative or non-finite ``grad_norms``; negative or non-finite ``radius``; ``p < 1``.

    Examples
    --------
    >>> wasserstein_penalty([3.0, 4.0], 0.5, 2.0).value   # 0.5 * sqrt((9 + 16) / 2)
    1.7677669529663689
    >>> wasserstein_penalty([3.0, 4.0], 0.5, 1.0).value   # q = inf: 0.5 * max
    2.0
    """
    g = as_float_array(grad_norms, "grad_norms", ndim=1, min_size=1, nonneg=True)
    rad = check_finite_scalar(radius, "radius", lo=0.0)
    p_f = _p_iv(p)
    n = g.size
    if p_f == 1.0:
        q = np.inf
    elif np.isinf(p_f):
        q = 1.0
    else:
        q = p_f / (p_f - 1.0)
    top = float(g.max())
    grad = np.zeros(n)
    if q == 1.0:
        value = rad * float(g.mean())
        grad[:] = rad / n
    elif np.isinf(q):
        value = rad * top
        if top > 0.0:
            ties = g == top
            grad[ties] = rad / ties.sum()
    elif top == 0.0:
        value = 0.0
    else:
        with np.errstate(under="ignore"):
            ratio = g / top  # in [0, 1]: no overflow for any q
            mean_pow = float(np.mean(ratio**q))  # >= 1/n
            m = top * mean_pow ** (1.0 / q)
            value = rad * m
            grad = rad / n * (g / m) ** (q - 1.0)
    if not np.isfinite(value):
        raise ValueError(
            f"wasserstein_penalty: radius={rad!r} times the gradient-norm mean overflows float64 "
            "(rescale radius or grad_norms)"
        )
    return WassersteinPenalty(float(value), grad, float(q))


# ============================================================================================
# Exact linear step
# ============================================================================================


@dataclass(frozen=True)
class RebelStepResult:
    """Full output of :func:`rebel_step_linear` (``full_output=True``).

    Attributes
    ----------
    theta : ndarray, shape [d]
        The new parameter ``theta_t + eta * direction``.
    direction : ndarray, shape [d]
        The regression solution ``w*`` (the minimiser of the objective below).
    objective : float
        The minimised objective at ``w*`` in REBEL-loss units: the mean squared loss (plain), the
        worst-case expected loss over the ambiguity set (KL, chi-square, Wasserstein).
    lower_bound : float
        A certified lower bound on the optimal objective (weak duality; see the function).
    gap : float
        ``objective - lower_bound >= 0``: a bound on the sub-optimality of ``w*``.
    weights : ndarray, shape [n]
        The adversary's weights over the pairs at ``w*`` (uniform for plain REBEL and
        Wasserstein).
    dual : float
        ``tau*`` (KL), ``eta*`` (chi-square), the ridge parameter ``lambda*`` of the equivalent
        ridge problem (Wasserstein; ``inf`` when ``w* = 0``, the end of the ridge path), ``nan``
        (plain).
    robust : tuple or None
        The normalised ``robust`` argument: ``(kind, radius)`` or ``None``.
    iterations : int
        Outer iterations of the iterative solve (0 for the closed forms).
    success, status, message
        Certificate outcome: ``gap <= rtol * max(objective, mean(b^2))`` (:mod:`solvers._status`).
    """

    theta: np.ndarray
    direction: np.ndarray
    objective: float
    lower_bound: float
    gap: float
    weights: np.ndarray
    dual: float
    robust: tuple | None
    iterations: int
    success: bool
    status: int
    message: str


def _robust_iv(robust: Any) -> tuple[str, float] | None:
    if robust is None:
        return None
    if isinstance(robust, (str, bytes)) or not isinstance(robust, (tuple, list)):
        raise TypeError(
            "robust must be None or a tuple (kind, radius) or ('wasserstein', radius, p), "
            f"got {type(robust).__name__}"
        )
    if len(robust) not in (2, 3):
        raise ValueError(f"robust must have 2 or 3 entries (kind, radius[, p]), got {len(robust)}")
    kind = _kind_iv(robust[0], _ROBUST_KINDS)
    radius = check_finite_scalar(robust[1], "radius", lo=0.0)
    if len(robust) == 3:
        if kind != "wasserstein":
            raise ValueError(f"robust: a third entry (p) is only accepted for 'wasserstein', got kind {kind!r}")
        p_f = _p_iv(robust[2])
        if p_f != 2.0:
            raise ValueError(
                f"robust: the linear Wasserstein step is implemented for p = 2 only, got p={p_f!r} "
                "(for p < 2 the worst case of the squared loss is infinite; p > 2 has no closed form)"
            )
    return kind, radius


def _step_iv(theta, features_a, features_b, rewards_a, rewards_b, eta):
    th = as_float_array(theta, "theta", ndim=1, min_size=1)
    fa = as_float_array(features_a, "features_a", ndim=2)
    fb = as_float_array(features_b, "features_b", ndim=2)
    check_same_shape(fa, "features_a", fb, "features_b")
    if fa.shape[0] < 1:
        raise ValueError(f"features_a must have at least one pair (row), got shape {fa.shape}")
    if fa.shape[1] != th.shape[0]:
        raise ValueError(
            f"features_a must have shape (n, {th.shape[0]}) to match theta of shape {th.shape}, "
            f"got {fa.shape}"
        )
    ra = as_float_array(rewards_a, "rewards_a", ndim=1)
    rb = as_float_array(rewards_b, "rewards_b", ndim=1)
    check_same_shape(ra, "rewards_a", rb, "rewards_b")
    if ra.shape[0] != fa.shape[0]:
        raise ValueError(
            f"rewards_a must have shape ({fa.shape[0]},) to match features_a of shape {fa.shape}, "
            f"got {ra.shape}"
        )
    eta_f = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
    with np.errstate(over="ignore", invalid="ignore"):
        A = fa - fb
        b = ra - rb
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        raise ValueError("features_a - features_b or rewards_a - rewards_b overflowed float64")
    return th, A, b, eta_f


def _lstsq(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(A, b, rcond=None)[0]


def _plain_step(A, b):
    """Ordinary least squares (minimum-norm solution); certificate from the normal equations."""
    n = A.shape[0]
    w = _lstsq(A, b)
    res = A @ w - b
    obj = float(res @ res / n)
    # normal equations A^T (A w - b) = 0 certify optimality of a convex quadratic; turn the residual
    # into a sub-optimality bound: f(w) - f* <= ||grad||^2 / (2 mu) is unusable for singular A, so
    # bound it through the projection instead: f(w) - f* = ||P(A w - b)||^2 / n with P the projector
    # onto range(A) (exactly zero at the minimiser).
    u, s, _ = np.linalg.svd(A, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(A.shape) * np.finfo(float).eps)) if s.size and s[0] > 0 else 0
    proj = u[:, :rank].T @ res
    gap = float(proj @ proj / n)
    return w, obj, obj - gap, gap


def _reweighted_step(A, b, kind, radius, max_iter, rtol, scale):
    """min_w max_{q in ball} sum_i q_i (a_i.w - b_i)^2 by BFGS on the robust loss R(w) (gradient by
    the envelope theorem), started from OLS with the inverse Gauss-Newton metric (2 A^T Q A)^+,
    and certified by the saddle-point gap R(w) - min_w' sum_i q_i(w) l_i(w') (weak duality)."""
    worst = kl_worst_case if kind == "kl" else chi2_worst_case
    d = A.shape[1]

    def evaluate(w):
        r = A @ w - b
        out = worst(r * r, rho=radius)
        return out, 2.0 * (A.T @ (out.weights * r))

    w = _lstsq(A, b)
    cur, g = evaluate(w)
    hinv = None
    gap = np.inf
    lower = -np.inf
    it = 0
    status = ITERATION_LIMIT
    for it in range(max_iter + 1):
        q = cur.weights
        sq = np.sqrt(q)
        w_q = _lstsq(sq[:, None] * A, sq * b)
        r_q = A @ w_q - b
        lower = float(q @ (r_q * r_q))
        gap = max(float(cur.value) - lower, 0.0)
        if cur.success and gap <= rtol * max(float(cur.value), scale):
            status = OPTIMAL
            break
        if it == max_iter:
            break
        if hinv is None:
            hinv = np.linalg.pinv(2.0 * (A.T * q) @ A)
        step = -hinv @ g
        slope = float(g @ step)
        if not slope < 0.0:  # metric lost positive definiteness: restart from the IRLS direction
            hinv = np.linalg.pinv(2.0 * (A.T * q) @ A)
            step = w_q - w
            slope = float(g @ step)
            if not slope < 0.0:
                break
        s = 1.0
        while True:
            new, g_new = evaluate(w + s * step)
            if new.value <= cur.value + 1e-4 * s * slope:
                break
            s *= 0.5
            if s < 1e-12:
                new = None
                break
        if new is None:
            break
        sv = s * step
        yv = g_new - g
        sy = float(sv @ yv)
        if sy > 1e-300:
            rho_ = 1.0 / sy
            eye = np.eye(d)
            hinv = (eye - rho_ * np.outer(sv, yv)) @ hinv @ (eye - rho_ * np.outer(yv, sv)) + rho_ * np.outer(sv, sv)
        w = w + sv
        cur, g = new, g_new
    if status != OPTIMAL and not cur.success:
        status = CERTIFICATE_FAILED
    return w, float(cur.value), lower, gap, cur.weights, float(cur.dual), it, status


def _wasserstein_step(A, b, radius, rtol, scale):
    """min_w (sqrt(L(w)) + radius ||w||_2)^2 with L(w) = mean (A w - b)^2, through the ridge path.

    Every minimiser with ``w != 0`` and ``L > 0`` satisfies ``(A^T A / n + lam I) w = A^T b / n`` with
    ``lam = radius sqrt(L) / ||w||`` (KKT), so it lies on the ridge path ``w(lam)``; along it
    ``dJ/dlam`` has the sign of ``lam ||w(lam)|| - radius sqrt(L(lam))`` (J = sqrt(L) + radius
    ||w||). The candidates (local minima on a log-grid refined by bisection of that sign, ``w = 0``
    and the minimum-norm least-squares solution) are compared and the best one is certified by the
    conic dual ``max u.b~ s.t. ||u|| <= 1, ||A~^T u|| <= radius`` (A~ = A / sqrt(n), b~ = b / sqrt(n)),
    with ``u`` the normalised residual (scaled into the feasible set; ``||A~^T u|| <= radius`` is
    accepted up to the rounding of ``A~^T u``, ``1e-13 ||A~||``).
    """
    n, d = A.shape
    At = A / np.sqrt(n)
    bt = b / np.sqrt(n)
    u_mat, s, vt = np.linalg.svd(At, full_matrices=False)
    tol_rank = (s[0] if s.size else 0.0) * max(n, d) * np.finfo(float).eps
    keep = s > tol_rank
    u_mat, s, vt = u_mat[:, keep], s[keep], vt[keep]
    c = u_mat.T @ bt
    beta2 = max(float(bt @ bt - c @ c), 0.0)  # squared residual outside range(A~)

    def path(lam):
        g = c / (s * s + lam)
        w_norm = float(np.linalg.norm(s * g))
        loss = beta2 + lam * lam * float(g @ g)
        return g, w_norm, max(loss, 0.0)

    def objective(w):
        e = bt - At @ w
        return float(np.linalg.norm(e)) + radius * float(np.linalg.norm(w))

    candidates = [np.zeros(d)]
    lams = [np.inf]
    if s.size:
        candidates.append(vt.T @ (c / s))  # minimum-norm least squares (lam -> 0)
        lams.append(0.0)
        s2max = float(s[0] ** 2)
        grid = s2max * np.logspace(-14, 14, 281)
        g_grid = c[None, :] / (s[None, :] ** 2 + grid[:, None])
        loss_grid = np.maximum(beta2 + grid**2 * np.einsum("ij,ij->i", g_grid, g_grid), 0.0)
        sign = grid * np.linalg.norm(s[None, :] * g_grid, axis=1) - radius * np.sqrt(loss_grid)
        for i in np.flatnonzero((sign[:-1] < 0.0) & (sign[1:] >= 0.0)):
            lo, hi = np.log(grid[i]), np.log(grid[i + 1])
            for _ in range(100):  # bisection on log(lam) of the sign of dJ/dlam
                mid = 0.5 * (lo + hi)
                lam = np.exp(mid)
                _, w_norm, loss = path(lam)
                if lam * w_norm - radius * np.sqrt(loss) < 0.0:
                    lo = mid
                else:
                    hi = mid
                if hi - lo <= 1e-15 * max(1.0, abs(mid)):
                    break
            lam = np.exp(0.5 * (lo + hi))
            g, _, _ = path(lam)
            candidates.append(vt.T @ (s * g))
            lams.append(lam)
    values = [objective(w) for w in candidates]
    best = int(np.argmin(values))
    w = candidates[best]
    primal = values[best]
    # dual certificate
    e = bt - At @ w
    e_norm = float(np.linalg.norm(e))
    if e_norm > 1e-14 * max(float(np.linalg.norm(bt)), 1e-300):
        u = e / e_norm
    else:  # interpolation: u solves A~^T u = radius w / ||w|| with minimum norm
        w_norm = float(np.linalg.norm(w))
        u = _lstsq(At.T, radius * w / w_norm) if w_norm > 0 else np.zeros(n)
        u_norm = float(np.linalg.norm(u))
        if u_norm > 1.0:
            u /= u_norm
    # dual feasibility ||A~^T u|| <= radius, up to the rounding of A~^T u (about eps ||A~|| ||u||)
    ta = float(np.linalg.norm(At.T @ u))
    slack = 1e-13 * (float(s[0]) if s.size else 0.0)
    if ta > radius + slack:
        u *= radius / ta
    dual = max(float(u @ bt), 0.0)
    obj = primal * primal
    lower = min(dual * dual, obj)
    gap = obj - lower
    status = OPTIMAL if gap <= rtol * max(obj, scale) else CERTIFICATE_FAILED
    return w, obj, lower, gap, float(lams[best]), status


def rebel_step_linear(
    theta: Any,
    features_a: Any,
    features_b: Any,
    rewards_a: Any,
    rewards_b: Any,
    eta: Any,
    *,
    robust: Any = None,
    full_output: bool = False,
    max_iter: int = 200,
    rtol: float = 1e-10,
) -> Any:
    r"""Exact (DRO-)REBEL step for linear rewards and a log-linear policy.

    With ``pi_theta(y|x) ~ exp(theta . phi(x, y))``, ``A = features_a - features_b`` (rows
    ``a_i = phi(x_i, a_i) - phi(x_i, b_i)``), ``b = rewards_a - rewards_b`` and the per-pair REBEL
    loss ``l_i(w) = (a_i . w - b_i)^2`` at ``theta = theta_t + eta w`` (log-ratios against the
    rollout policy ``pi_t = pi_{theta_t}``; module docstring), the step returns
    ``theta_t + eta w*`` where ``w*`` minimises:

    * ``robust=None`` (REBEL): ``L(w) = (1/n) sum_i l_i(w)``, i.e. ``w* = argmin ||A w - b||^2``,
      the minimum-norm least-squares solution (``numpy.linalg.lstsq``). Certificate: the part of
      the residual inside ``range(A)`` (zero exactly at a minimiser).
    * ``robust=("kl", radius)`` / ``("chi2", radius)``: the worst-case expected loss
      ``R(w) = max_{q in ball} sum_i q_i l_i(w)`` over the KL ball ``KL(q||u) <= radius`` or the
      chi-square ball ``1/2 sum u_i (q_i/u_i - 1)^2 <= radius`` (``u`` uniform): the min-max problem
      ``min_w max_q``. ``R`` is convex (a supremum of convex quadratics); its gradient is
      ``2 A^T diag(q*(w)) (A w - b)`` with the exact worst-case weights ``q*(w)`` of
      :func:`dro_rebel_weights` held fixed (envelope theorem). Solved by BFGS with Armijo
      backtracking, started at OLS with the inverse Gauss-Newton metric ``(2 A^T Q A)^+``.
      Certificate (weak duality of the min-max): for the returned ``w`` and its weights ``q*``,
      ``min_w' sum q*_i l_i(w')`` (a weighted least squares) is a lower bound on the optimum, so
      ``gap = R(w) - lower_bound`` bounds the sub-optimality; it is 0 exactly at a saddle point.
    * ``robust=("wasserstein", radius)`` (or ``(..., 2)``): the exact worst case over a type-2
      Wasserstein ball of radius ``radius`` around the empirical distribution of the pairs, with
      Euclidean transport cost on the feature differences ``a_i`` (rewards fixed):
      ``sup_Q E_Q[l] = (sqrt(L(w)) + radius ||w||_2)^2`` (Blanchet, Kang & Murthy, "Robust
      Wasserstein profile inference and applications to machine learning", Prop. 2; by Minkowski's
      inequality, attained by moving pair ``i`` by ``radius |res_i| / sqrt(L)`` along ``w``). Its
      expansion is ``L(w) + wasserstein_penalty(2 |res_i| ||w||, radius, 2).value + radius^2
      ||w||^2``: DRO-REBEL's first-order gradient regularisation plus the second-order term. The
      exact form is used because it is convex (the first-order surrogate is not for large radii),
      so its minimiser can be certified: it is the square-root-loss ridge problem
      ``min sqrt(L(w)) + radius ||w||``, solved on the ridge path and certified by its conic dual.

    ``radius = 0`` gives plain REBEL for every kind.

    Parameters
    ----------
    theta : array_like, shape [d]
        Current parameter ``theta_t`` (the rollout policy's).
    features_a, features_b : array_like, shape [n, d]
        Features ``phi(x_i, y)`` of the two responses of each pair.
    rewards_a, rewards_b : array_like, shape [n]
        Their rewards.
    eta : float
        REBEL step size ``eta > 0``.
    robust : None or tuple
        ``None``, ``("kl", radius)``, ``("chi2", radius)``, ``("wasserstein", radius)`` or
        ``("wasserstein", radius, 2)``; ``radius >= 0``.
    full_output : bool
        Return a :class:`RebelStepResult` instead of the new parameter.
    max_iter : int
        BFGS iterations for the KL / chi-square steps before ``status = ITERATION_LIMIT``.
    rtol : float
        Certificate tolerance: ``gap <= rtol * max(objective, mean(b^2), tiny)``.

    Returns
    -------
    theta_new : ndarray, shape [d]
        ``theta + eta * w*`` (or a :class:`RebelStepResult` with ``full_output=True``).

    Raises
    ------
    ValueError
        Shape mismatch, empty or non-finite inputs, ``eta <= 0``, negative radius, unknown kind,
        Wasserstein ``p != 2``.
    TypeError
        Non-numeric inputs, ``robust`` not a tuple.

    Warns
    -----
    RuntimeWarning
        When the certificate fails (only with ``full_output=False``; otherwise see ``status``).
        Degenerate regime: when the robust optimum equalises the losses of the pairs (seen with
        ``n`` close to ``d`` and a large radius, where the problem approaches min-max-loss
        regression, and as the ball approaches the point mass on the worst pair, ``radius -> log
        n`` for KL), ``R`` is non-smooth at the optimum (the KL temperature tends to 0) and the
        saddle-point certificate cannot close; the solve then stops with ``ITERATION_LIMIT`` and
        reports ``gap`` (``lower_bound`` stays a valid lower bound, ``objective`` an upper
        bound).

    Examples
    --------
    >>> import numpy as np
    >>> fa = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); fb = np.zeros((3, 2))
    >>> ra = np.array([1.0, 2.0, 3.0]); rb = np.zeros(3)
    >>> rebel_step_linear(np.zeros(2), fa, fb, ra, rb, eta=0.5).round(6).tolist()
    [0.5, 1.0]
    >>> res = rebel_step_linear(np.zeros(2), fa, fb, ra, rb, 0.5, robust=("kl", 0.1), full_output=True)
    >>> res.success, res.gap <= 1e-10 * max(res.objective, 1.0)
    (True, True)
    """
    th, A, b, eta_f = _step_iv(theta, features_a, features_b, rewards_a, rewards_b, eta)
    spec = _robust_iv(robust)
    iters = check_int_scalar(max_iter, "max_iter", lo=0)
    tol = check_finite_scalar(rtol, "rtol", lo=0.0)
    n = A.shape[0]
    # Huge reward differences: solve the problem for b / c and map back (w* scales with c, the
    # losses, objective and KL/chi-square duals with c^2, the weights and the ridge parameter not at
    # all), so the squared losses inside the solve never overflow.
    c = float(np.max(np.abs(b)))
    c = c if c > _RESCALE_ABOVE else 1.0
    b = b / c if c != 1.0 else b
    scale = max(float(b @ b) / n, 1e-300)
    uniform = np.full(n, 1.0 / n)
    it = 0
    if spec is None or spec[1] == 0.0:
        w, obj, lower, gap = _plain_step(A, b)
        status = OPTIMAL if gap <= tol * max(obj, scale) else CERTIFICATE_FAILED
        weights, dual = uniform, np.nan
    elif spec[0] == "wasserstein":
        w, obj, lower, gap, dual, status = _wasserstein_step(A, b, spec[1], tol, scale)
        weights = uniform
    else:
        w, obj, lower, gap, weights, dual, it, status = _reweighted_step(
            A, b, spec[0], spec[1], iters, tol, scale
        )
        if status == OPTIMAL and gap > tol * max(obj, scale):  # pragma: no cover - defensive
            status = CERTIFICATE_FAILED
    message = MESSAGES[status]
    if status != OPTIMAL:
        message += f": gap {gap:.3e} above rtol * scale = {tol * max(obj, scale):.3e}"
    if c != 1.0:
        with np.errstate(over="ignore"):
            w = w * c
            obj, lower, gap = obj * c * c, lower * c * c, gap * c * c
            if spec is not None and spec[0] != "wasserstein" and np.isfinite(dual):
                dual = dual * c * c
        bad = [k for k, v in (("objective", obj), ("lower_bound", lower), ("gap", gap), ("dual", dual))
               if not np.isfinite(v) and not (k == "dual" and (spec is None or spec[0] == "wasserstein"))]
        if bad and status == OPTIMAL:
            status = OVERFLOW
            message = overflow_message(bad, "rewards_a and rewards_b")
    new_theta = th + eta_f * w
    if not np.all(np.isfinite(new_theta)):
        raise ValueError("rebel_step_linear: the new parameter overflowed float64 (rescale eta or the inputs)")
    if not full_output:
        if status != OPTIMAL:
            warnings.warn(f"rebel_step_linear: {message}", RuntimeWarning, stacklevel=2)
        return new_theta
    return RebelStepResult(
        theta=new_theta,
        direction=w,
        objective=float(obj),
        lower_bound=float(lower),
        gap=float(gap),
        weights=weights,
        dual=float(dual),
        robust=spec,
        iterations=int(it),
        success=status == OPTIMAL,
        status=int(status),
        message=message,
    )
