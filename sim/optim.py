"""A small Adam optimiser for the simulators' parameter vectors (gradient *ascent* directions).

VIP trains with AdamW (App. C, Table 9); the simulators' ``step(direction, lr)`` applies any
direction, and :class:`Adam` turns a gradient estimate into Adam's direction
``m_hat / (sqrt(v_hat) + eps)`` (Kingma & Ba, 2015, Alg. 1), with bias-corrected moment estimates.
Weight decay is left out (there is no KL or regulariser in the simulated objective).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from solvers._validation import as_float_array, check_finite_scalar, check_int_scalar

__all__ = ["Adam"]

STATE_FORMAT_VERSION = 1


class Adam:
    """Adam moment estimates for a parameter of size ``dim``.

    Parameters
    ----------
    dim : int >= 1
    beta1, beta2 : float in [0, 1)
    eps : float > 0

    Examples
    --------
    >>> import numpy as np
    >>> opt = Adam(2)
    >>> opt.direction(np.array([0.1, -2.0]))    # first step: sign of the gradient
    array([ 0.99999999, -1.        ])
    """

    def __init__(self, dim: int, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.dim = check_int_scalar(dim, "dim", lo=1)
        self.beta1 = check_finite_scalar(beta1, "beta1", lo=0.0, hi=1.0, hi_open=True)
        self.beta2 = check_finite_scalar(beta2, "beta2", lo=0.0, hi=1.0, hi_open=True)
        self.eps = check_finite_scalar(eps, "eps", lo=0.0, lo_open=True)
        self.m = np.zeros(self.dim)
        self.v = np.zeros(self.dim)
        self.t = 0

    def direction(self, grad: Any) -> np.ndarray:
        """Update the moments with ``grad`` (shape (dim,)) and return ``m_hat / (sqrt(v_hat) + eps)``."""
        g = as_float_array(grad, "grad", ndim=1)
        if g.shape != (self.dim,):
            raise ValueError(f"grad must have shape ({self.dim},), got {g.shape}")
        self.t += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * g
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * g * g
        m_hat = self.m / (1.0 - self.beta1**self.t)
        v_hat = self.v / (1.0 - self.beta2**self.t)
        return m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": STATE_FORMAT_VERSION, "t": self.t, "m": self.m.copy(), "v": self.v.copy()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"state must be a mapping from state_dict(), got {type(state).__name__}")
        if state.get("format_version") != STATE_FORMAT_VERSION:
            raise ValueError(f"state format_version {state.get('format_version')!r} is not {STATE_FORMAT_VERSION}")
        m = as_float_array(state["m"], "m", ndim=1)
        v = as_float_array(state["v"], "v", ndim=1, nonneg=True)
        if m.shape != (self.dim,) or v.shape != (self.dim,):
            raise ValueError(f"m and v must have shape ({self.dim},), got {m.shape} and {v.shape}")
        self.t = check_int_scalar(state["t"], "t", lo=0)
        self.m, self.v = m.copy(), v.copy()
