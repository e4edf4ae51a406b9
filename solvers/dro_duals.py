"""Worst-case reweighting of per-sample losses: entropic, KL and chi-square DRO duals.

Each function takes per-sample (or per-group) losses ``l`` and returns the adversary's value and
weights ``q`` over the samples:

* :func:`entropic_worst_case` -- the entropy-regularised worst case (GDRO eq. 14-16,
  Cor. F.2): value ``(1/eta) log sum_b exp(eta l_b)``, weights ``softmax(eta l)``.

Gradient steps
--------------
The weights are the maximiser of the inner problem, so by the envelope theorem (Danskin) the
gradient of the robust value with respect to the model parameters is ``sum_i q_i grad l_i`` with
``q`` held fixed. Treat the returned weights as constants in a gradient step (with torch:
``torch.as_tensor(weights)`` of the detached losses, or ``weights.detach()``); never back-propagate
through them.

Batching
--------
``losses`` may be 1-D (``[B]``) or 2-D (``[P, B]``, one independent problem per row). For 2-D input
``value`` has shape ``[P]`` and ``weights`` shape ``[P, B]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._status import CERTIFICATE_FAILED, MESSAGES, OPTIMAL
from ._validation import as_float_array, check_finite_scalar

__all__ = ["DROResult", "entropic_worst_case"]

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


def _entropic_iv(losses: Any, eta: Any) -> tuple[np.ndarray, float]:
    arr = as_float_array(losses, "losses", ndim=(1, 2), min_size=1)
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(f"losses must have at least 1 column, got shape {arr.shape}")
    eta_f = check_finite_scalar(eta, "eta", lo=0.0, lo_open=True)
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
        Inverse temperature, ``0 < eta < inf``. Large ``eta`` approaches the hard max.

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
        If ``losses`` is empty, not 1-D/2-D, or contains NaN/inf; if ``eta`` is not finite and > 0.

    Examples
    --------
    >>> res = entropic_worst_case([0.0, 1.0, 2.0], eta=10.0)
    >>> round(res.value, 6)
    2.000005
    >>> res.weights.argmax()
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
    bound = np.log(l2.shape[1]) / eta_f
    ok = bool(
        np.all(np.isfinite(value))
        and np.all(np.abs(weights.sum(axis=1) - 1.0) <= 1e-12 * l2.shape[1] + _CERT_TOL)
        and np.all(value >= top[:, 0])
        and np.all(value <= top[:, 0] + bound * (1 + 1e-12) + 1e-12 * np.abs(top[:, 0]))
    )
    status = OPTIMAL if ok else CERTIFICATE_FAILED
    message = MESSAGES[status]
    if not ok:
        message += ": value outside Cor. F.2 bounds or weights off the simplex (eta too small?)"
    if batched:
        return DROResult(value, weights, np.full(l2.shape[0], 1.0 / eta_f), ok, status, message)
    return DROResult(float(value[0]), weights[0], 1.0 / eta_f, ok, status, message)
