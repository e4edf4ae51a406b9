"""Worst-case reweighting of per-sample losses: entropic, KL and chi-square DRO duals.

Each function takes per-sample (or per-group) losses ``l`` and returns the adversary's value and
weights ``q`` over the samples:

* :func:`entropic_worst_case` -- the entropy-regularised worst case (GDRO eq. 14-16,
  Cor. F.2): value ``(1/eta) log sum_b exp(eta l_b)``, weights ``softmax(eta l)``.
* :func:`kl_worst_case` -- ``max E_q[l]`` over the KL ball ``KL(q || p) <= rho`` (DRO-REBEL's KL
  variant): exponentially tilted weights ``q ~ p exp(l / tau*)`` with ``tau*`` from a monotone 1-D
  solve on ``log tau``.
* :func:`chi2_worst_case` -- ``max E_q[l]`` over the chi-square ball
  ``1/2 sum_i p_i (q_i/p_i - 1)^2 <= rho`` (DRO-REBEL's chi-square variant): the 1-D dual
  ``g(eta) = eta + sqrt(1 + 2 rho) sqrt(E_p[(l - eta)_+^2])`` solved exactly.

Reference distribution ``p``
----------------------------
``p`` is optional (``None`` = uniform ``1/B``). Otherwise it must be non-negative and sum to 1
within ``1e-6`` (it is then renormalised); samples with ``p_i = 0`` are outside the support and get
``q_i = 0`` (both divergences are infinite otherwise), and the maximum loss is taken over the
support.

Gradient steps
--------------
The weights are the maximiser of the inner problem, so by the envelope theorem (Danskin) the
gradient of the robust value with respect to the model parameters is ``sum_i q_i grad l_i`` with
``q`` held fixed. Treat the returned weights as constants in a gradient step (with torch:
``torch.as_tensor(weights)`` of the detached losses, or ``weights.detach()``); never back-propagate
through them.

Numerics
--------
Each row is first mapped to ``z = (l - max l) / (max l - min l)`` in ``[-1, 0]`` (both balls are
invariant under this affine map), so any finite losses (1e-300 or 1e300, spreads that overflow)
are handled; the KL is evaluated as a sum of non-negative terms (no cancellation) so radii down to
subnormal values work. Every solve is certified afterwards (feasibility, ``value = E_q[l]`` and a
zero duality gap by weak duality); a failure is reported in ``status``, never silently.

Batching
--------
``losses`` may be 1-D (``[B]``) or 2-D (``[P, B]``, one independent problem per row). For 2-D input
``value`` has shape ``[P]`` and ``weights`` shape ``[P, B]``; ``P = 0`` (an empty batch) gives empty results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL, OVERFLOW, overflow_message
from ._validation import as_float_array, check_finite_scalar, check_int_scalar

__all__ = ["DROResult", "entropic_worst_case", "kl_worst_case", "chi2_worst_case"]

_CERT_TOL = 1e-9


@dataclass(frozen=True)
class DROResult:
    """Result of a worst-case reweighting (scipy ``OptimizeResult`` style).

    Attributes
    ----------
    value : float or ndarray, shape [P]
        The robust value (see each function for exactly which quantity).
    weights : ndarray, shape [B] or [P, B]
        The adversary's distribution over samples (float64, rows on the simplex). Treat as a
        constant in a gradient step (envelope theorem): detach it.
    dual : float or ndarray, shape [P]
        The dual variable of the ambiguity set: the temperature ``1/eta`` for the entropic case,
        the KL temperature ``tau*`` for :func:`kl_worst_case`, the threshold ``eta*`` for
        :func:`chi2_worst_case`. See each function.
    success : bool
        ``status == OPTIMAL`` (for every row of a batch).
    status : int
        A code of :mod:`solvers._status`; for a batch, the largest code over the rows.
    message : str
        Human-readable description of ``status``.
    """

    value: Any
    weights: np.ndarray
    dual: Any
    success: bool
    status: int
    message: str


def _losses_iv(losses: Any) -> np.ndarray:
    """1-D with >= 1 sample, or 2-D with >= 1 column (a batch of 0 rows is allowed: empty results)."""
    arr = as_float_array(losses, "losses", ndim=(1, 2))
    if arr.ndim == 1 and arr.size == 0:
        raise ValueError(f"losses must have at least 1 element(s), got {arr.size}")
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"losses must have at least 1 column, got shape {arr.shape}")
    return arr


_ETA_MIN = 1.0 / float(np.finfo(np.float64).max)
"""Smallest ``eta`` whose temperature ``1/eta`` (the ``dual``) is finite (about 5.6e-309)."""


def _entropic_iv(losses: Any, eta: Any) -> tuple[np.ndarray, float]:
    arr = _losses_iv(losses)
    eta_f = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
    if eta_f < _ETA_MIN:
        raise ValueError(
            f"eta must be >= {_ETA_MIN:.6g} (the temperature 1/eta must be finite), got {eta_f!r}"
        )
    return arr, eta_f


def entropic_worst_case(losses: Any, eta: float) -> DROResult:
    r"""Entropy-regularised worst case of the losses: log-sum-exp value and softmax weights.

    Implements GDRO eq. (14)-(16) (= Lemma F.1, eq. 30/32):

    .. math::

        \mathcal R_\eta(l) = \max_{q \in \Delta_B} \Big\{ \sum_b q_b l_b + \tfrac1\eta H(q) \Big\}
        = \frac1\eta \log \sum_{b=1}^B e^{\eta l_b},
        \qquad q_\eta(b) = \frac{e^{\eta l_b}}{\sum_j e^{\eta l_j}}.

    The value is the log of the *sum* (not the mean) of the exponentials, so that by Cor. F.2
    (eq. 28/31) ``max(l) <= value <= max(l) + log(B)/eta``. (The mean version would be
    ``value - log(B)/eta`` and lie below the max.) Computed with max subtraction, so it is exact
    and finite for ``eta * l`` of order 1e6 or more.

    Parameters
    ----------
    losses : array_like, shape [B] or [P, B]
        Finite per-sample (or per-group) losses ``l``; a 2-D array is ``P`` independent problems.
    eta : float
        Inverse temperature, ``1/DBL_MAX <= eta < inf`` (about 5.6e-309: the temperature ``1/eta``
        is reported and must be finite). Large ``eta`` approaches the hard max.

    Returns
    -------
    DROResult
        ``value`` (float, or ndarray [P]) as above; ``weights`` float64 ``softmax(eta * l)``
        (shape of ``losses``; treat as constants in a gradient step: the gradient of the value is
        ``sum_b q_b grad l_b``, eq. below (15)); ``dual`` the temperature ``1/eta``;
        ``success``/``status``/``message`` (the certificate checks that the weights sum to 1 and
        that the value satisfies Cor. F.2).

    Raises
    ------
    ValueError
        If ``losses`` is empty, not 1-D/2-D, or contains NaN/inf; if ``eta`` is not finite or below
        ``1/DBL_MAX``.

    Examples
    --------
    >>> res = entropic_worst_case([0.0, 1.0, 2.0], eta=10.0)
    >>> round(res.value, 6)
    2.000005
    >>> int(res.weights.argmax())
    2
    """
    arr, eta_f = _entropic_iv(losses, eta)
    batched = arr.ndim == 2
    l2 = arr if batched else arr[None, :]
    top = l2.max(axis=1, keepdims=True)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        z = eta_f * (l2 - top)  # <= 0; may be -inf when the spread overflows, exp -> 0
        e = np.exp(z)
        total = e.sum(axis=1)  # >= 1 (the max contributes exp(0) = 1)
        weights = e / total[:, None]
        value = top[:, 0] + np.log(total) / eta_f
    with np.errstate(over="ignore"):
        bound = np.log(l2.shape[1]) / eta_f
    ok = bool(
        np.all(np.isfinite(value))
        and np.all(np.abs(weights.sum(axis=1) - 1.0) <= 1e-12 * l2.shape[1] + _CERT_TOL)
        and np.all(value >= top[:, 0])
        and np.all(value <= top[:, 0] + bound * (1 + 1e-12) + 1e-12 * np.abs(top[:, 0]))
    )
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[status]
    if not np.all(np.isfinite(value)):  # log(B) / eta overflows for a tiny eta
        status, message = OVERFLOW, overflow_message(["value"], "losses and eta (or raise eta)")
    elif not ok:
        message += ": value outside Cor. F.2 bounds or weights off the simplex (eta too small?)"
    if batched:
        return DROResult(value, weights, np.full(l2.shape[0], 1.0 / eta_f), ok, status, message)
    return DROResult(float(value[0]), weights[0], 1.0 / eta_f, ok, status, message)


# ============================================================================================
# Shared validation for the divergence balls
# ============================================================================================

_P_SUM_TOL = 1e-6


def _ball_iv(losses: Any, p: Any, rho: Any) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Validate ``losses``, ``p``, ``rho``; return 2-D ``losses`` and ``p`` (rows renormalised)."""
    arr = _losses_iv(losses)
    if rho is None:
        raise TypeError("rho (the radius of the ambiguity set) is required")
    rho_f = check_finite_scalar(rho, "rho", lo=0.0)
    batched = arr.ndim == 2
    l2 = arr if batched else arr[None, :]
    n_rows, n = l2.shape
    if p is None:
        p2 = np.full((n_rows, n), 1.0 / n)
    else:
        parr = as_float_array(p, "p", ndim=(1, 2), nonneg=True)
        if parr.shape[-1] != n or (parr.ndim == 2 and parr.shape != l2.shape):
            raise ValueError(
                f"p must have shape ({n},)"
                + (f" or {l2.shape}" if batched else "")
                + f" to match losses, got shape {parr.shape}"
            )
        if parr.ndim == 2 and not batched:
            raise ValueError(f"p must be 1-D for 1-D losses, got shape {parr.shape}")
        sums = np.atleast_1d(parr.sum(axis=-1))
        bad = np.abs(sums - 1.0) > _P_SUM_TOL
        if bad.any():
            raise ValueError(
                "p must be a probability vector (non-negative, summing to 1), "
                f"got sum {float(sums[bad][0])!r}"
            )
        if parr.ndim == 2:
            p2 = parr / sums[:, None]
        elif n_rows == 1:
            p2 = (parr / sums[0])[None, :]
        else:
            p2 = np.ascontiguousarray(np.broadcast_to(parr / sums[0], l2.shape))
    return np.ascontiguousarray(l2), p2, rho_f, batched


_MAX_ITER = 2**31 - 1
"""Largest ``max_iter`` of :func:`kl_worst_case` (the solve stops after ~100 iterations anyway)."""


def _flag_overflow(status: np.ndarray, dual: np.ndarray, dual_z: np.ndarray, what: str) -> tuple[np.ndarray, str]:
    """Rows whose dual is finite in normalised units but overflows in the losses' units (spreads
    near DBL_MAX) become ``OVERFLOW`` (the weights and the value are exact and finite)."""
    over = ~np.isfinite(dual) & np.isfinite(dual_z) & (status == OPTIMAL)
    if not over.any():
        return status, ""
    return np.where(over, OVERFLOW, status), ": " + overflow_message([what], "losses").split(": ", 1)[1]


def _package(value, weights, dual, status, batched, message_extra) -> DROResult:
    worst = int(status.max()) if status.size else OPTIMAL
    ok = worst == OPTIMAL
    message = MESSAGES[worst]
    if not ok:
        rows = np.flatnonzero(status != OPTIMAL)
        message += f" in row(s) {rows[:10].tolist()}" if batched else ""
        message += message_extra
    if batched:
        return DROResult(value, weights, dual, ok, worst, message)
    return DROResult(float(value[0]), weights[0], float(dual[0]), ok, worst, message)


@numba.njit(cache=True, error_model="numpy")
def _normalise_rows(l2, p2):
    """Map each row to ``z = (l - max l) / (max l - min l)`` in ``[-1, 0]`` (max/min over the support
    of ``p``), without overflow for any finite losses (halves are used). Both balls are invariant
    under this affine map (the weights are unchanged; value and dual transform back), so the kernels
    solve a well-scaled problem whatever the magnitude (1e-300 or 1e300) of the losses.
    Returns ``z2``, ``lmax``, ``half_spread``."""
    rows, n = l2.shape
    z2 = np.empty((rows, n))
    lmax = np.empty(rows)
    half = np.empty(rows)
    for r in range(rows):
        hi = -np.inf
        lo = np.inf
        for i in range(n):
            if p2[r, i] > 0.0:
                hi = max(hi, l2[r, i])
                lo = min(lo, l2[r, i])
        h = 0.5 * hi - 0.5 * lo
        lmax[r] = hi
        half[r] = h
        for i in range(n):
            if p2[r, i] <= 0.0:
                z2[r, i] = -1.0  # outside the support: never weighted
            elif h > 0.0:
                z2[r, i] = min(0.0, max(-1.0, (0.5 * l2[r, i] - 0.5 * hi) / h))
            else:
                z2[r, i] = 0.0
    return z2, lmax, half


@numba.njit(cache=True, error_model="numpy")
def _from_normalised(value_z, lmax, half):
    """Back-transform a normalised value: ``lmax + 2 * half * value_z`` without overflow."""
    out = np.empty_like(value_z)
    for r in range(value_z.shape[0]):
        out[r] = 2.0 * (0.5 * lmax[r] + half[r] * value_z[r]) if half[r] > 0.0 else lmax[r]
    return out


@numba.njit(cache=True, error_model="numpy")
def _scale_dual(dual_z, half):
    """Back-transform a temperature: ``2 * half * tau_z`` (may overflow to inf, honestly)."""
    out = np.empty_like(dual_z)
    for r in range(dual_z.shape[0]):
        out[r] = dual_z[r] * (2.0 * half[r]) if half[r] > 0.0 else dual_z[r]
    return out


# ============================================================================================
# KL ball
# ============================================================================================


@numba.njit(cache=True, error_model="numpy")
def _psi(r):
    """``(1 + r) log1p(r) - r >= 0`` (the KL integrand in the ratio ``r = q/p - 1``), accurate for
    tiny ``|r|`` (series ``sum_{k>=2} (-r)^k / (k (k - 1))``, truncation < 1e-17 relative) and equal
    to 1 at ``r = -1``; elsewhere the direct formula (relative error < 5e-14)."""
    if r <= -1.0:
        return 1.0
    if abs(r) < 0.01:
        acc = 0.0
        for k in range(10, 1, -1):  # Horner
            acc = acc * (-r) + 1.0 / (k * (k - 1))
        return acc * r * r
    return (1.0 + r) * np.log1p(r) - r


@numba.njit(cache=True, error_model="numpy")
def _kl_tilt(z, p, tau, q, s_buf, em_buf, accurate):
    """Fill ``q ~ p exp(s)``, ``s = z / tau`` (``z <= 0``, 0 on the argmax set); return
    (KL(q||p), Var_q[s]).

    ``tau = 0`` gives the point mass on the argmax set. With ``accurate`` the KL is computed as
    ``sum_i p_i psi(r_i)`` with ``r_i = q_i/p_i - 1 = (expm1(s_i) - A) / (1 + A)``,
    ``A = sum_i p_i expm1(s_i)`` (uses ``sum_i p_i r_i = 0``): a sum of non-negative terms without
    cancellation, so it stays accurate when ``tau`` is huge (rho down to ~1e-300). Otherwise the
    cheaper ``E_q[s] - log Z`` (relative error ~ eps / sqrt(KL), fine for KL >= 1e-4).
    """
    n = z.shape[0]
    if not accurate:
        total = 0.0
        for i in range(n):
            if p[i] > 0.0:
                s = 0.0 if z[i] == 0.0 else (z[i] / tau if tau > 0.0 else -np.inf)
                s_buf[i] = s
                q[i] = p[i] * np.exp(s)
                total += q[i]
            else:
                q[i] = 0.0
        inv_total = 1.0 / total
        mean_s = 0.0
        mean_s2 = 0.0
        for i in range(n):
            if q[i] > 0.0:
                q[i] *= inv_total
                mean_s += q[i] * s_buf[i]
                mean_s2 += q[i] * s_buf[i] * s_buf[i]
        return mean_s - np.log(total), max(mean_s2 - mean_s * mean_s, 0.0)
    big_a = 0.0  # sum_i p_i expm1(s_i) = Z - 1
    total = 0.0
    for i in range(n):
        if p[i] > 0.0:
            if z[i] == 0.0:
                s = 0.0
            elif tau > 0.0:
                s = z[i] / tau
            else:
                s = -np.inf
            e = np.exp(s)
            em = np.expm1(s) if s > -0.5 else e - 1.0
            s_buf[i] = s
            em_buf[i] = em
            big_a += p[i] * em
            q[i] = p[i] * e
            total += q[i]
        else:
            q[i] = 0.0
    kl = 0.0
    mean_s = 0.0
    mean_s2 = 0.0
    inv_total = 1.0 / total
    mild = big_a > -0.5  # Z = 1 + A >= 1/2: the centred ratio below is exact to rounding
    inv_z = 1.0 / (1.0 + big_a)
    for i in range(n):
        if p[i] > 0.0:
            q[i] *= inv_total
            if mild:
                kl += p[i] * _psi((em_buf[i] - big_a) * inv_z)
            else:  # strong tilt (Z may be ~ p(argmax) < eps): r_i = e^{s_i} / Z - 1 directly
                kl += p[i] * _psi(np.exp(s_buf[i]) * inv_total - 1.0)
            if q[i] > 0.0:
                mean_s += q[i] * s_buf[i]
                mean_s2 += q[i] * s_buf[i] * s_buf[i]
    return kl, max(mean_s2 - mean_s * mean_s, 0.0)


@numba.njit(cache=True, error_model="numpy")
def _kl_row(z, p, rho, q, max_iter, s_buf, em_buf):
    """One normalised KL problem (``z = (l - max l) / spread`` in [-1, 0], 0 on the argmax set).

    Returns (value in z units, tau in z units, status) and fills ``q``. See :func:`kl_worst_case`.
    """
    n = z.shape[0]
    p_top = 0.0
    zmin = 0.0
    mean = 0.0
    for i in range(n):
        if p[i] > 0.0:
            mean += p[i] * z[i]
            zmin = min(zmin, z[i])
            if z[i] == 0.0:
                p_top += p[i]
    kl_max = -np.log(p_top)  # KL(point mass on argmax set || p)
    if rho >= kl_max or zmin == 0.0:
        # the ball contains the (restricted) point mass on the argmax set: it is optimal
        for i in range(n):
            q[i] = p[i] / p_top if (p[i] > 0.0 and z[i] == 0.0) else 0.0
        return 0.0, 0.0, 0
    if rho == 0.0:
        for i in range(n):
            q[i] = p[i]
        return mean, np.inf, 0
    var = 0.0
    for i in range(n):
        if p[i] > 0.0:
            var += p[i] * (z[i] - mean) ** 2
    # Hoeffding: KL(q_tau || p) <= spread^2 / (8 tau^2) (spread = -zmin), so KL <= rho at u_hi.
    u_hi = np.log(-zmin) - 0.5 * np.log(8.0 * rho)
    u_lo = -np.inf
    # start from the small-rho expansion KL ~ Var_p / (2 tau^2)
    u = min(0.5 * np.log(var / (2.0 * rho)), u_hi)
    # safeguarded Newton on g(u) = log KL(q_tau||p) - log rho, u = log tau (nearly linear for
    # large tau); f = KL - rho is decreasing in u with dKL/du = -Var_q[z / tau].
    log_rho = np.log(rho)
    accurate = rho < 1e-4
    f_tol = (1e-13 if accurate else 1e-11) * rho  # relative accuracy of the KL evaluation
    status = 2
    u_feasible = u_hi
    at_feasible = False
    for _ in range(max_iter):
        kl, var_s = _kl_tilt(z, p, np.exp(u), q, s_buf, em_buf, accurate)
        f = kl - rho
        if f > 0.0:
            u_lo = u
            at_feasible = False
        else:
            u_hi = u
            u_feasible = u
            at_feasible = True
        if abs(f) <= f_tol:
            status = 0
            break
        if np.isfinite(u_lo) and (u_hi - u_lo) <= 4e-16 * max(1.0, abs(u_hi)):
            status = 0
            break
        if kl > 0.0 and var_s > 0.0:
            u_new = u + (np.log(kl) - log_rho) * kl / var_s
        else:
            u_new = -np.inf
        if not (u_lo < u_new < u_hi):
            u_new = 0.5 * (u_lo + u_hi) if np.isfinite(u_lo) else u_hi - 1.0
        elif abs(u_new - u) <= 1e-15 * max(1.0, abs(u)):
            status = 0  # Newton has stagnated at the root (to the KL's evaluation accuracy)
            break
        u = u_new
    if not (at_feasible or (status == 0 and abs(f) <= f_tol)):
        # return the feasible end of the bracket
        _kl_tilt(z, p, np.exp(u_feasible), q, s_buf, em_buf, accurate)
        u = u_feasible
    val = 0.0
    for i in range(n):
        if q[i] > 0.0:
            val += q[i] * z[i]
    return val, np.exp(u), status


@numba.njit(cache=True, error_model="numpy")
def _kl_batch(z2, p2, rho, max_iter):
    rows, n = z2.shape
    q = np.empty((rows, n))
    value = np.empty(rows)
    tau = np.empty(rows)
    status = np.empty(rows, dtype=np.int64)
    s_buf = np.empty(n)
    em_buf = np.empty(n)
    for r in range(rows):
        v, t, s = _kl_row(z2[r], p2[r], rho, q[r], max_iter, s_buf, em_buf)
        value[r] = v
        tau[r] = t
        status[r] = s
    return value, q, tau, status


@numba.njit(cache=True, error_model="numpy")
def _kl_certify(z2, p2, rho, value, q, tau, status):
    """Post-solve certificate (normalised rows): q on the simplex and zero off the support,
    KL(q||p) <= rho, value = E_q[z], and a zero duality gap.

    Weak duality: for every tau > 0 and every feasible q', E_q'[z] <= tau*rho + tau*log E_p e^{z/tau}
    (and <= max z = 0 for tau = 0), so a feasible q whose value meets that bound is optimal.
    Computed directly from the definitions (``q log(q/p)``, ``log1p(E_p expm1(z/tau))``).
    """
    out = status.copy()
    rows, n = z2.shape
    for r in range(rows):
        if out[r] != 0:
            continue
        psum = 0.0
        qsum = 0.0
        kl = 0.0
        primal = 0.0
        ok = True
        for i in range(n):
            w = q[r, i]
            if w < 0.0 or (p2[r, i] <= 0.0 and w != 0.0):
                ok = False
            if p2[r, i] > 0.0:
                psum += p2[r, i]
            qsum += w
            if w > 0.0:
                kl += w * np.log(w / p2[r, i])
                primal += w * z2[r, i]
        if tau[r] == 0.0:
            dual = 0.0
        elif np.isinf(tau[r]):
            dual = 0.0  # rho = 0: the only feasible point is p
            for i in range(n):
                dual += p2[r, i] * z2[r, i]
        else:
            acc = 0.0  # E_p[expm1(z / tau)] (accurate when the tilt is mild)
            mgf = 0.0  # E_p[exp(z / tau)] (accurate when it is tiny)
            for i in range(n):
                if p2[r, i] > 0.0:
                    acc += p2[r, i] * np.expm1(z2[r, i] / tau[r])
                    mgf += p2[r, i] * np.exp(z2[r, i] / tau[r])
            log_mgf = np.log1p(acc / psum) if acc > -0.5 * psum else np.log(mgf / psum)
            dual = tau[r] * (rho + log_mgf)
        ok = (
            ok
            and abs(qsum - 1.0) <= 1e-12 * n + 1e-12
            and kl <= rho + 1e-9 * max(rho, 1e-3)
            and abs(primal - value[r]) <= 1e-10
            and -1e-9 <= dual - value[r] <= 1e-8
        )
        if not ok:
            out[r] = 1
    return out


def kl_worst_case(losses: Any, p: Any = None, rho: Any = None, *, max_iter: int = 200) -> DROResult:
    r"""Worst-case expected loss over a KL ball: ``max E_q[l]`` s.t. ``KL(q || p) <= rho``.

    DRO-REBEL's KL-robust variant (importance weighting by tilted weights; the summary's "1-D
    dual"). The Lagrangian dual is

    .. math::

        \max_{q \in \Delta,\ KL(q\|p) \le \rho} E_q[l]
        = \min_{\tau \ge 0}\ \tau\rho + \tau \log E_p\big[e^{l/\tau}\big],

    attained by the tilted distribution ``q_tau ~ p exp(l / tau)``. ``KL(q_tau || p)`` decreases
    monotonically from ``-log p(argmax set)`` (``tau -> 0``) to 0 (``tau -> inf``), with
    ``d KL / d log(tau) = -Var_{q_tau}[l / tau]``, so ``tau*`` is the root of
    ``KL(q_tau || p) = rho``, found by safeguarded Newton on ``log KL = log rho`` as a function of
    ``log tau`` (nearly linear: ``KL ~ Var_p[l] / (2 tau^2)`` for large ``tau``, the starting
    point), kept inside a bracket whose upper end comes from Hoeffding's bound
    ``KL(q_tau || p) <= (max l - min l)^2 / (8 tau^2)``; typically 3-7 evaluations of ``O(B)``.

    Cases:

    * ``rho >= -log p(A)`` where ``A`` is the argmax set of ``l`` (on the support of ``p``): the ball
      contains the point mass on ``A``, so ``q = p`` restricted to ``A`` and renormalised,
      ``value = max l``, ``dual = 0``. This includes equal losses and ``B = 1``.
    * ``rho = 0``: ``q = p``, ``value = E_p[l]``, ``dual = inf``.
    * otherwise ``q = q_{tau*}``, ``value = E_q[l]``, ``dual = tau*``.

    Parameters
    ----------
    losses : array_like, shape [B] or [P, B]
        Finite per-sample losses; a 2-D array is ``P`` independent problems (one per row).
    p : array_like, shape [B] or [P, B], optional
        Reference (nominal) distribution; default uniform. Non-negative, summing to 1 (within 1e-6;
        renormalised). ``p_i = 0`` excludes sample ``i`` (``q_i = 0``).
    rho : float
        KL radius, ``rho >= 0`` (required).
    max_iter : int
        Newton/bisection iterations per row before ``status = ITERATION_LIMIT``, in ``[1, 2**31 - 1]``
        (a row needs about 3-7, at most about 100).

    Returns
    -------
    DROResult
        ``value`` the worst-case expected loss ``E_q[l]``; ``weights`` ``q`` (float64, on the
        simplex, ``KL(q||p) <= rho``); ``dual`` the temperature ``tau*`` (0 for the point mass,
        ``inf`` for ``rho = 0``); ``success``/``status``/``message`` (certified by feasibility and a
        zero duality gap). Treat ``weights`` as constants in a gradient step (envelope theorem:
        the gradient of the robust loss is ``sum_i q_i grad l_i``; with torch, detach them).

    Raises
    ------
    ValueError
        NaN/inf in ``losses`` or ``p``, ``p`` not on the simplex or of the wrong shape,
        ``rho`` negative or not finite.
    TypeError
        ``rho`` missing or not a number.

    Examples
    --------
    >>> res = kl_worst_case([0.0, 1.0, 2.0], rho=0.1)
    >>> bool(1.0 < res.value < 2.0), res.success
    (True, True)
    >>> kl_worst_case([0.0, 1.0, 2.0], rho=2.0).weights.tolist()  # rho >= log 3: point mass
    [0.0, 0.0, 1.0]
    """
    l2, p2, rho_f, batched = _ball_iv(losses, p, rho)
    iters = check_int_scalar(max_iter, "max_iter", lo=1, hi=_MAX_ITER)
    z2, lmax, half = _normalise_rows(l2, p2)
    value_z, q, tau_z, status = _kl_batch(z2, p2, rho_f, iters)
    status = _kl_certify(z2, p2, rho_f, value_z, q, tau_z, status)
    tau = _scale_dual(tau_z, half)
    status, extra = _flag_overflow(status, tau, tau_z, "dual (the temperature tau*)")
    return _package(_from_normalised(value_z, lmax, half), q, tau, status, batched, extra)


# ============================================================================================
# chi-square ball
# ============================================================================================


@numba.njit(cache=True, error_model="numpy")
def _chi2_finish(z, p, rho, lo_bound, q):
    """Given the active set ``{z_i > lo_bound}`` (the segment holding the root), recompute its
    statistics in two passes about an anchor (the active sample of largest mass, so that
    ``z_i - anchor`` is exact where it matters), solve ``eta`` and fill
    ``q_i ~ p_i (z_i - eta)_+ = p_i (1 + (z_i - mean) / (mean - eta))``. Returns (E_q[z], eta).

    Anchoring matters when masses differ by ~1e16: the mean then sits within one ulp of the heavy
    sample and ``mean - eta`` can be ~1e-8, so a rounded mean would perturb the weights by ~1e-8.
    """
    n = z.shape[0]
    anchor = 0.0
    best = -1.0
    mass = 0.0
    inactive = 0.0
    for i in range(n):
        if p[i] > 0.0:
            if z[i] > lo_bound:
                mass += p[i]
                if p[i] > best:
                    best = p[i]
                    anchor = z[i]
            else:
                inactive += p[i]
    offset = 0.0
    for i in range(n):
        if p[i] > 0.0 and z[i] > lo_bound:
            offset += p[i] * (z[i] - anchor)
    offset /= mass  # mean = anchor + offset
    m2 = 0.0
    for i in range(n):
        if p[i] > 0.0 and z[i] > lo_bound:
            dev = (z[i] - anchor) - offset
            m2 += p[i] * dev * dev
    denom = 2.0 * rho * mass - inactive  # (1 + 2 rho) P - 1
    inv_d = 0.0
    eta = lo_bound  # degenerate (a single active value, or rounding): any eta in the segment
    if denom > 0.0 and m2 > 0.0:
        inv_d = np.sqrt(denom / (m2 / mass))  # 1 / (mean - eta)
        eta = (anchor + offset) - 1.0 / inv_d
    if eta < lo_bound:  # rounding: keep eta inside its segment
        eta = lo_bound
    if eta > -np.inf and eta == lo_bound:
        inv_d = 1.0 / ((anchor - lo_bound) + offset)
    total = 0.0
    for i in range(n):
        if p[i] > 0.0 and z[i] > lo_bound:
            t = 1.0 + ((z[i] - anchor) - offset) * inv_d
            q[i] = p[i] * t if t > 0.0 else 0.0
        else:
            q[i] = 0.0
        total += q[i]
    val = 0.0
    for i in range(n):
        q[i] /= total
        val += q[i] * z[i]
    return val, eta


@numba.njit(cache=True, error_model="numpy")
def _chi2_trivial(z, p, rho, q):
    """Point mass / rho = 0 cases of a normalised row. Returns (handled, value, eta)."""
    n = z.shape[0]
    p_top = 0.0
    p_all = 0.0  # 1 up to rounding; compared with p_top so that "A is the whole support" is exact
    for i in range(n):
        if p[i] > 0.0:
            p_all += p[i]
            if z[i] == 0.0:
                p_top += p[i]
    if (1.0 + 2.0 * rho) * p_top >= p_all:
        # E_p[r^2] = 1/p(A) <= 1 + 2 rho for r = 1_A / p(A): the point mass on A is feasible
        for i in range(n):
            q[i] = p[i] / p_top if (p[i] > 0.0 and z[i] == 0.0) else 0.0
        return True, 0.0, 0.0
    if rho == 0.0:
        val = 0.0
        for i in range(n):
            q[i] = p[i]
            val += p[i] * z[i]
        return True, val, -np.inf
    return False, 0.0, 0.0


@numba.njit(cache=True, error_model="numpy")
def _chi2_row_select(z, p, rho, q, idx):
    """One normalised chi-square problem (``z`` in [-1, 0], 0 on the argmax set) in expected O(B).

    Quickselect-style search for the segment holding the root of ``h(eta) = 1 + 2 rho`` (``h``
    increasing, see :func:`chi2_worst_case`): for a pivot value ``v``, ``h(v) > 1 + 2 rho`` iff
    ``M2 > P d^2 ((1 + 2 rho) P - 1)`` with ``P``, ``mean``, ``M2`` the mass, mean and centred second
    moment of the samples above ``v`` and ``d = mean - v``; then the root lies below ``v`` and every
    sample ``>= v`` is active, otherwise every sample ``<= v`` is inactive. Statistics are merged
    with Chan's centred formulas. Returns (value, eta*, status); twin of :func:`_chi2_row_sorted`.
    """
    handled, val, eta = _chi2_trivial(z, p, rho, q)
    if handled:
        return val, eta, 0
    n = z.shape[0]
    m = 0
    for i in range(n):
        if p[i] > 0.0:
            idx[m] = i
            m += 1
    lo = 0
    hi = m
    agg_mass = 0.0
    agg_mean = 0.0
    agg_m2 = 0.0
    inactive = 0.0  # mass of the discarded (inactive) samples
    lo_bound = -np.inf  # largest discarded value
    state = 12345
    while hi > lo:
        width = hi - lo
        state = (state * 1103515245 + 12345) % 2147483648
        a0 = z[idx[lo + state % width]]
        state = (state * 1103515245 + 12345) % 2147483648
        a1 = z[idx[lo + state % width]]
        state = (state * 1103515245 + 12345) % 2147483648
        a2 = z[idx[lo + state % width]]
        piv = max(min(a0, a1), min(max(a0, a1), a2))  # median of three
        c_mass = 0.0
        c_mean = 0.0
        c_m2 = 0.0
        eq_mass = 0.0
        lt_mass = 0.0
        for k in range(lo, hi):
            i = idx[k]
            x = z[i]
            w = p[i]
            if x > piv:
                old_mass = c_mass
                c_mass += w
                delta = x - c_mean
                c_mean += (w / c_mass) * delta
                c_m2 += delta * delta * old_mass * w / c_mass
            elif x == piv:
                eq_mass += w
            else:
                lt_mass += w
        # statistics of everything above the pivot: aggregate (above all candidates) + c
        mass = agg_mass + c_mass
        if c_mass > 0.0:
            delta = c_mean - agg_mean
            mean = agg_mean + delta * (c_mass / mass)
            m2 = agg_m2 + c_m2 + delta * delta * agg_mass * c_mass / mass
        else:
            mean = agg_mean
            m2 = agg_m2
        if mass == 0.0:
            root_below = True  # h(piv) = +inf: the root is below the largest value
        else:
            d = mean - piv
            denom = 2.0 * rho * mass - (inactive + eq_mass + lt_mass)  # (1 + 2 rho) P - 1
            root_below = m2 > mass * d * d * denom
        j = lo
        if root_below:
            # samples >= piv are active: merge them into the aggregate, keep those < piv
            agg_mass = mass
            agg_mean = mean
            agg_m2 = m2
            if eq_mass > 0.0:
                old_mass = agg_mass
                new_mass = old_mass + eq_mass
                delta = piv - agg_mean
                agg_mean += delta * (eq_mass / new_mass)
                agg_m2 += delta * delta * old_mass * eq_mass / new_mass  # not (new - eq): rounding
                agg_mass = new_mass
            for k in range(lo, hi):
                if z[idx[k]] < piv:
                    idx[j] = idx[k]
                    j += 1
        else:
            # samples <= piv are inactive: discard them, keep those > piv
            inactive += eq_mass + lt_mass
            lo_bound = max(lo_bound, piv)
            for k in range(lo, hi):
                if z[idx[k]] > piv:
                    idx[j] = idx[k]
                    j += 1
        hi = j
    val, eta = _chi2_finish(z, p, rho, lo_bound, q)
    return val, eta, 0


@numba.njit(cache=True, error_model="numpy")
def _chi2_row_sorted(z, p, rho, order, q):
    """Sorted twin of :func:`_chi2_row_select` (O(B log B)): scan the segments from the top.
    ``order`` sorts ``z`` descending. Returns (value, eta*, status)."""
    handled, val, eta = _chi2_trivial(z, p, rho, q)
    if handled:
        return val, eta, 0
    n = z.shape[0]
    # suffix masses: rest[k] = sum of p over order[k:], so that (1 + 2 rho) P - 1 = 2 rho P - rest
    rest = np.zeros(n + 1)
    for k in range(n - 1, -1, -1):
        rest[k] = rest[k + 1] + p[order[k]]
    mass = 0.0
    mean = 0.0
    m2 = 0.0
    k = 0
    while k < n:
        x = z[order[k]]
        # add the whole tie group of value x (centred update; the m2 increment is written as
        # delta^2 * old * w / new, which keeps tiny masses that delta * (x - new mean) would round away)
        while k < n and z[order[k]] == x:
            w = p[order[k]]
            if w > 0.0:
                old_mass = mass
                mass += w
                delta = x - mean
                mean += (w / mass) * delta
                m2 += delta * delta * old_mass * w / mass
            k += 1
        while k < n and p[order[k]] == 0.0:  # next lower value on the support
            k += 1
        x_next = z[order[k]] if k < n else -np.inf
        denom = 2.0 * rho * mass - rest[k]
        if denom > 0.0 and m2 > 0.0:
            inv_d = np.sqrt(denom / (m2 / mass))  # 1 / (mean - eta) on this segment
            eta = mean - 1.0 / inv_d
            if eta >= x_next or k >= n:
                val, eta = _chi2_finish(z, p, rho, x_next, q)
                return val, eta, 0
    for i in range(n):  # unreachable in exact arithmetic (the last segment is (-inf, min z))
        q[i] = p[i]
    return np.nan, np.nan, 1


@numba.njit(cache=True, error_model="numpy")
def _chi2_batch(z2, p2, rho):
    rows, n = z2.shape
    q = np.empty((rows, n))
    value = np.empty(rows)
    eta = np.empty(rows)
    status = np.empty(rows, dtype=np.int64)
    idx = np.empty(n, dtype=np.int64)
    for r in range(rows):
        v, e, s = _chi2_row_select(z2[r], p2[r], rho, q[r], idx)
        value[r] = v
        eta[r] = e
        status[r] = s
    return value, q, eta, status


@numba.njit(cache=True, error_model="numpy")
def _chi2_batch_sorted(z2, p2, rho):
    """Twin of :func:`_chi2_batch` using the sorted segment scan (tests and benchmarks)."""
    rows, n = z2.shape
    q = np.empty((rows, n))
    value = np.empty(rows)
    eta = np.empty(rows)
    status = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        order = np.argsort(-z2[r])
        v, e, s = _chi2_row_sorted(z2[r], p2[r], rho, order, q[r])
        value[r] = v
        eta[r] = e
        status[r] = s
    return value, q, eta, status


def _chi2_dual(l, p, rho, eta):
    """g(eta) = eta + sqrt(1 + 2 rho) sqrt(E_p[(l - eta)_+^2]) (the correct dual, with the "1 +")."""
    return eta + np.sqrt(1.0 + 2.0 * rho) * np.sqrt(np.sum(p * np.maximum(l - eta, 0.0) ** 2))


@numba.njit(cache=True, error_model="numpy")
def _chi2_certify(z2, p2, rho, value, q, eta, status):
    """Certificate (normalised rows): q on the simplex and zero off the support,
    1/2 sum (q-p)^2/p <= rho, value = E_q[z], and value = g(eta*) (zero duality gap).

    Weak duality (Cauchy-Schwarz): for every eta and feasible q', with r = q'/p,
    E_q'[z] = eta + E_p[r (z - eta)] <= eta + ||r||_{2,p} ||(z - eta)_+||_{2,p} <= g(eta).
    """
    out = status.copy()
    rows, n = z2.shape
    for r in range(rows):
        if out[r] != 0:
            continue
        qsum = 0.0
        div = 0.0
        primal = 0.0
        tail = 0.0
        mean_p = 0.0
        ok = True
        e = eta[r]
        for i in range(n):
            w = q[r, i]
            pi = p2[r, i]
            if w < 0.0 or (pi <= 0.0 and w != 0.0):
                ok = False
            qsum += w
            primal += w * z2[r, i]
            if pi > 0.0:
                div += (w - pi) ** 2 / pi
                mean_p += pi * z2[r, i]
                if np.isfinite(e) and z2[r, i] > e:
                    tail += pi * (z2[r, i] - e) ** 2
        div *= 0.5
        if np.isfinite(e):
            dual = e + np.sqrt(1.0 + 2.0 * rho) * np.sqrt(tail) if tail > 0.0 else e
            tol = 1e-9 + 1e-13 * abs(e)  # g(eta) cancels for eta << 0 (tiny rho)
        else:
            dual = mean_p  # rho = 0: the only feasible point is p
            tol = 1e-9
        ok = (
            ok
            and abs(qsum - 1.0) <= 1e-12 * n + 1e-12
            and div <= rho + 1e-9 * max(rho, 1e-3)
            and abs(primal - value[r]) <= 1e-10
            and abs(dual - value[r]) <= tol
        )
        if not ok:
            out[r] = 1
    return out


def chi2_worst_case(losses: Any, p: Any = None, rho: Any = None) -> DROResult:
    r"""Worst-case expected loss over a chi-square ball: ``max E_q[l]`` s.t.
    ``1/2 sum_i p_i (q_i/p_i - 1)^2 <= rho``, ``q`` on the simplex.

    DRO-REBEL's chi-square variant ("a 1-D dual solve"), solved exactly in expected ``O(B)``.

    Derivation (generator ``f(t) = (t - 1)^2 / 2``). Write ``r = q / p`` (so ``E_p[r] = 1``,
    ``r >= 0``); the constraint is ``E_p[(r - 1)^2] <= 2 rho``, i.e. ``E_p[r^2] <= 1 + 2 rho``
    (expand: ``E_p[r^2] - 2 E_p[r] + 1``; the "1 +" comes from ``E_p[r] = 1``). For any ``eta``,
    by Cauchy-Schwarz

    .. math::

        E_q[l] = \eta + E_p[r (l - \eta)] \le \eta + E_p[r (l - \eta)_+]
        \le \eta + \sqrt{1 + 2\rho}\, \sqrt{E_p[(l - \eta)_+^2]} =: g(\eta),

    with equality iff ``r ∝ (l - eta)_+`` and ``E_p[r^2] = 1 + 2 rho``. Normalising
    ``r = (l - eta)_+ / E_p[(l - eta)_+]``, the optimal ``eta*`` solves

    .. math:: h(\eta) = E_p[(l-\eta)_+^2] / E_p[(l-\eta)_+]^2 = 1 + 2\rho,

    which is the stationarity condition ``g'(eta) = 0``. ``h`` increases (Cauchy-Schwarz) from 1 at
    ``eta -> -inf`` to ``1/p(A)`` as ``eta -> max l`` (``A`` = argmax set). On each segment between
    consecutive sorted losses the active set is fixed and, with ``P``, ``m``, ``v`` the mass, mean
    and variance of ``l`` on it, the equation reads ``v + d^2 = (1 + 2 rho) P d^2`` for
    ``d = m - eta``, so ``eta = m - sqrt(v / ((1 + 2 rho) P - 1))``. The segment holding the root is
    found without sorting, by a quickselect-style search on pivot values (comparing ``h(pivot)``
    with ``1 + 2 rho``; deterministic pivots, expected ``O(B)``), cross-checked in the tests against
    a sorted scan of the segments. Cases:

    * ``1 + 2 rho >= 1 / p(A)``: the point mass on ``A`` (``p`` restricted and renormalised) is
      feasible and optimal; ``value = max l``, ``dual = max l``. Includes equal losses and ``B = 1``.
    * all samples active (interior solution): ``q = p (1 + c (l - E_p l))``, ``c = sqrt(2 rho /
      Var_p l)``, ``value = E_p l + sqrt(2 rho Var_p l)``, valid while ``q >= 0``.
    * otherwise ``q_i ∝ p_i (l_i - eta*)_+``, ``value = g(eta*)``.
    * ``rho = 0``: ``q = p``, ``dual = -inf``.

    *Trap* (docs/architecture.md, "Known traps"): a public DRO-REBEL implementation minimises
    ``eta + sqrt(2 rho) sqrt(E_p[(l - eta)_+^2])``, without the "1 +". For ``rho < 1/2`` that
    function is unbounded below (``h >= 1 > 2 rho``), so a bracketed minimisation stops at the
    bracket's edge and its weights no longer depend on ``rho``; for ``rho >= 1/2`` it solves the
    problem for radius ``rho - 1/2``. This function uses the correct dual.

    Parameters
    ----------
    losses : array_like, shape [B] or [P, B]
        Finite per-sample losses; a 2-D array is ``P`` independent problems (one per row).
    p : array_like, shape [B] or [P, B], optional
        Reference distribution; default uniform. Non-negative, summing to 1 (within 1e-6;
        renormalised). ``p_i = 0`` excludes sample ``i``.
    rho : float
        Radius, ``rho >= 0`` (required), in the ``1/2 (t - 1)^2`` convention above. The KKT
        derivation in DRO-REBEL's appendix writes the ball without the 1/2, as
        ``sum_k (q_k - p_k)^2 / p_k <= rho'``: pass ``rho = rho' / 2`` for that convention (its
        dual factor is then ``sqrt(1 + rho')``).

    Returns
    -------
    DROResult
        ``value`` the worst-case expected loss; ``weights`` ``q`` (float64, on the simplex, inside
        the ball); ``dual`` the threshold ``eta*`` minimising ``g`` (``max l`` for the point mass,
        ``-inf`` for ``rho = 0``); ``success``/``status``/``message`` (certified by feasibility and
        ``value = g(eta*)``). Treat ``weights`` as constants in a gradient step (envelope theorem;
        with torch, detach them).

    Raises
    ------
    ValueError
        NaN/inf in ``losses`` or ``p``, ``p`` not on the simplex or of the wrong shape,
        ``rho`` negative or not finite.
    TypeError
        ``rho`` missing or not a number.

    Examples
    --------
    >>> res = chi2_worst_case([0.0, 1.0, 2.0], rho=0.05)  # interior: E l + sqrt(2 rho Var l)
    >>> abs(res.value - (1.0 + (2 * 0.05 * 2 / 3) ** 0.5)) < 1e-12
    True
    >>> chi2_worst_case([0.0, 1.0, 2.0], rho=1.0).weights.tolist()  # 1 + 2 rho >= 3
    [0.0, 0.0, 1.0]
    """
    l2, p2, rho_f, batched = _ball_iv(losses, p, rho)
    z2, lmax, half = _normalise_rows(l2, p2)
    value_z, q, eta_z, status = _chi2_batch(z2, p2, rho_f)
    status = _chi2_certify(z2, p2, rho_f, value_z, q, eta_z, status)
    eta = _from_normalised(eta_z, lmax, half)
    status, extra = _flag_overflow(status, eta, eta_z, "dual (the threshold eta*)")
    return _package(_from_normalised(value_z, lmax, half), q, eta, status, batched, extra)


# ============================================================================================
# slow, obviously-correct references (used by the tests and as the NumPy peer in benchmarks)
# ============================================================================================


def _kl_reference(l: np.ndarray, p: np.ndarray, rho: float) -> tuple[float, np.ndarray, float]:
    """KL worst case by minimising the convex dual over log tau with SciPy (1-D, full support)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    lmax = l.max()
    top = l == lmax
    if rho >= -np.log(p[top].sum()) or np.ptp(l) == 0:
        q = np.where(top, p, 0.0)
        return float(lmax), q / q.sum(), 0.0
    if rho == 0:
        return float(p @ l), p.copy(), np.inf

    def dual(u):
        tau = np.exp(u)
        return tau * rho + lmax + tau * logsumexp((l - lmax) / tau, b=p)

    c = np.log(np.ptp(l)) - 0.5 * np.log(8 * rho)
    res = minimize_scalar(dual, bounds=(c - 60.0, c + 1.0), method="bounded",
                          options={"xatol": 1e-12, "maxiter": 2000})
    tau = float(np.exp(res.x))
    logw = np.log(p) + (l - lmax) / tau
    q = np.exp(logw - logsumexp(logw))
    return float(res.fun), q, tau


def _chi2_reference(l: np.ndarray, p: np.ndarray, rho: float) -> tuple[float, np.ndarray, float]:
    """Chi-square worst case by minimising g(eta) on a bracket with SciPy (1-D, full support)."""
    from scipy.optimize import minimize_scalar

    lmax = l.max()
    top = l == lmax
    if 1 + 2 * rho >= 1.0 / p[top].sum():
        q = np.where(top, p, 0.0)
        return float(lmax), q / q.sum(), float(lmax)
    if rho == 0:
        return float(p @ l), p.copy(), -np.inf
    sd = np.sqrt(p @ (l - p @ l) ** 2)
    lo = l.min() - sd / np.sqrt(2 * rho) - 1.0
    res = minimize_scalar(lambda e: _chi2_dual(l, p, rho, e), bounds=(lo, lmax),
                          method="bounded", options={"xatol": 1e-13, "maxiter": 2000})
    eta = float(res.x)
    w = p * np.maximum(l - eta, 0.0)
    return float(res.fun), w / w.sum(), eta
