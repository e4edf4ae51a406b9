"""Baseline success-probability predictors with the interface of :class:`bandits.GPSuccessPredictor`.

* :class:`MovingAveragePredictor` -- VIP Sec. 6 / Fig. 3 "Moving Average": the mean observed
  success rate over the most recent ``window`` observations (per prompt when the prompt is in the
  window, else over all of them).
* :class:`RidgePredictor` -- VIP's ablation "Ridge Regression" (Sec. 6, Table 3; Fig. 3): ridge
  regression of the clipped observed logit on the prompt embedding, refitted on the most recent
  ``window`` observations.
* :class:`BetaBinomialPredictor` -- a per-prompt conjugate Beta posterior (optionally with
  exponential forgetting for non-stationary success rates).

Common interface: ``predict(ids) -> p_hat`` (float64 in ``[eps, 1 - eps]``),
``update(ids, successes, trials)``; ``predict_var(ids)`` where the model has a variance
(moving average: binomial sampling variance of the averaged rate; beta-binomial: posterior
variance; ridge: none). Ids are integers in ``[0, N)``; unseen ids get the prior (never NaN).
VIP does not specify its baselines beyond their names; the choices above are ours and documented
in each class.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from solvers._validation import MAX_SIZE, as_float_array, check_finite_scalar, check_int_scalar

from ._state import StateReader, fingerprint, new_state
from .gp_predictor import (
    _check_eps,
    _clipped_rate,
    _logit,
    _sigmoid,
    _validate_counts,
    _validate_ids,
)

__all__ = ["BetaBinomialPredictor", "MovingAveragePredictor", "RidgePredictor"]


def _check_n_prompts(n_prompts: Any) -> int:
    return check_int_scalar(n_prompts, "n_prompts", lo=1, hi=MAX_SIZE)


def _check_prior_p(prior: Any, name: str = "prior") -> float:
    return check_finite_scalar(prior, name, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


class MovingAveragePredictor:
    """Moving average of observed success rates over the last ``window`` observations.

    Each observation is one (prompt, successes, trials) entry of an ``update``; its rate is
    ``s / n``. The prediction for prompt ``q`` is the mean rate of ``q``'s observations still
    in the window, or, if ``q`` has none, the mean rate of all observations in the window, or
    ``prior`` before any observation; clipped to ``[eps, 1 - eps]``. Every observation counts
    equally (a moving average of rates, not of pooled counts).

    Parameters
    ----------
    n_prompts : int
        Number of prompts ``N``; ids are in ``[0, N)``.
    window : int >= 1
        Number of most recent observations kept (VIP Fig. 3 uses 1024).
    prior : float in (0, 1)
        Prediction before any observation.
    eps : float in [2**-53, 0.5)
        Output clipping.

    Notes
    -----
    ``predict_var`` returns ``p (1 - p) / n_eff`` with ``n_eff`` the total number of trials
    behind the averaged rate (``p (1 - p)`` -- one Bernoulli variance -- before any observation).

    Examples
    --------
    >>> from bandits import MovingAveragePredictor
    >>> ma = MovingAveragePredictor(10, window=2)
    >>> ma.update([0, 1], [2, 0], [4, 4])
    >>> ma.predict([0, 5])   # prompt 0 own mean; prompt 5 global mean (0.5 + 0) / 2
    array([0.5 , 0.25])
    """

    def __init__(self, n_prompts: int, *, window: int = 1024, prior: float = 0.5, eps: float = 0.01):
        self.n_prompts = _check_n_prompts(n_prompts)
        self.window = check_int_scalar(window, "window", lo=1)
        self.prior = _check_prior_p(prior)
        self.eps = _check_eps(eps)
        self._buf: deque[tuple[int, float, int]] = deque()
        self._rate_sum = np.zeros(self.n_prompts)
        self._count = np.zeros(self.n_prompts, dtype=np.int64)
        self._trials = np.zeros(self.n_prompts, dtype=np.int64)
        self._g_rate = 0.0
        self._g_count = 0
        self._g_trials = 0
        self.step = 0

    def update(self, ids: Any, successes: Any, trials: Any) -> None:
        """Append the batch's observations (in order) and drop those older than ``window``."""
        idx, s, n = _validate_counts(ids, successes, trials, self.n_prompts)
        rates = s / n
        for q, r, k in zip(idx.tolist(), rates.tolist(), n.tolist()):
            self._buf.append((q, r, k))
            self._rate_sum[q] += r
            self._count[q] += 1
            self._trials[q] += k
            self._g_rate += r
            self._g_count += 1
            self._g_trials += k
            if len(self._buf) > self.window:
                q0, r0, k0 = self._buf.popleft()
                self._rate_sum[q0] -= r0
                self._count[q0] -= 1
                self._trials[q0] -= k0
                self._g_rate -= r0
                self._g_count -= 1
                self._g_trials -= k0
                if self._count[q0] == 0:
                    self._rate_sum[q0] = 0.0  # no round-off residue once a prompt leaves
        # exact global sum (O(window)); the running sums above would accumulate round-off
        self._g_rate = math.fsum(r for _, r, _ in self._buf)
        self.step += 1

    def _mean_and_trials(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cnt = self._count[idx]
        own = cnt > 0
        p = np.empty(idx.size)
        n_eff = np.empty(idx.size)
        p[own] = self._rate_sum[idx[own]] / cnt[own]
        n_eff[own] = self._trials[idx[own]]
        if self._g_count > 0:
            p[~own] = self._g_rate / self._g_count
            n_eff[~own] = self._g_trials
        else:
            p[~own] = self.prior
            n_eff[~own] = 1.0
        return p, n_eff

    def predict(self, ids: Any) -> np.ndarray:
        """Moving-average success probabilities, clipped to ``[eps, 1 - eps]``, shape (B,)."""
        idx = _validate_ids(ids, self.n_prompts)
        p, _ = self._mean_and_trials(idx)
        return np.clip(p, self.eps, 1.0 - self.eps)

    def predict_var(self, ids: Any) -> np.ndarray:
        """Binomial sampling variance ``p (1 - p) / n_eff`` of the averaged rate, shape (B,)."""
        idx = _validate_ids(ids, self.n_prompts)
        p, n_eff = self._mean_and_trials(idx)
        p = np.clip(p, self.eps, 1.0 - self.eps)
        return p * (1.0 - p) / n_eff

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_prompts": self.n_prompts, "window": self.window, "prior": self.prior, "eps": self.eps}

    def state_dict(self) -> dict:
        """Checkpoint: the window's observations in order (``buffer_ids``, ``buffer_rates``,
        ``buffer_trials``), the per-prompt running sums (``rate_sum``, ``count``, ``trials``; stored
        rather than recomputed, because the running float sums carry their own round-off) and the
        global sums, and ``step``."""
        buf = list(self._buf)
        return new_state(
            self, self._hyperparameters(),
            buffer_ids=np.array([b[0] for b in buf], dtype=np.int64),
            buffer_rates=np.array([b[1] for b in buf], dtype=np.float64),
            buffer_trials=np.array([b[2] for b in buf], dtype=np.int64),
            rate_sum=self._rate_sum, count=self._count, trials=self._trials,
            global_rate=self._g_rate, global_count=self._g_count, global_trials=self._g_trials,
            step=self.step,
        )

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shapes, ids out of range or a window longer than
        ``window``."""
        n = self.n_prompts
        r = StateReader(self, state, self._hyperparameters())
        ids = r.array("buffer_ids", (None,), np.int64, lo=0, hi=n - 1)
        if ids.size > self.window:
            raise ValueError(f"MovingAveragePredictor.load_state_dict: the state holds {ids.size} "
                             f"observations, more than window={self.window}")
        rates = r.array("buffer_rates", (ids.size,), np.float64, lo=0.0, hi=1.0)
        trials_buf = r.array("buffer_trials", (ids.size,), np.int64, lo=1)
        rate_sum = r.array("rate_sum", (n,), np.float64)
        count = r.array("count", (n,), np.int64, lo=0)
        trials = r.array("trials", (n,), np.int64, lo=0)
        g_rate = r.float("global_rate")
        g_count = r.int("global_count", lo=0)
        g_trials = r.int("global_trials", lo=0)
        step = r.int("step", lo=0)
        self._buf = deque(zip(ids.tolist(), rates.tolist(), trials_buf.tolist()))
        self._rate_sum, self._count, self._trials = rate_sum, count, trials
        self._g_rate, self._g_count, self._g_trials, self.step = g_rate, g_count, g_trials, step


def _ridge_fit(xw: np.ndarray, yw: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float]:
    """Ridge regression with an unpenalised intercept on the window ``(xw, yw)``.

    Returns ``(c, b, unit)`` with coefficients ``w = c / unit`` and intercept ``b``. The usual
    path (``unit = 1``) solves the normal equations in primal or dual form. When that fails
    (``X'X`` overflows for embeddings ~1e200, or is singular to working precision for ~1e31 with
    ``alpha = 1``), the same problem is solved in the units ``x / unit`` (``unit`` a power of
    two near ``max |x|``): ``argmin ||Xc w - yc||^2 + alpha ||w||^2`` equals ``u / unit`` with
    ``u = argmin ||(Xc / unit) u - yc||^2 + (alpha / unit^2) ||u||^2``, solved as the augmented
    least-squares problem ``[Xc / unit; sqrt(alpha) / unit I] u = [yc; 0]`` by SVD (finite for
    any finite input; the minimum-norm least-squares solution where ``alpha / unit^2``
    underflows, which is the limit of the ridge solution).
    """
    m, d = xw.shape
    y_mean = float(yw.mean())
    with np.errstate(over="ignore", invalid="ignore"):
        x_mean = xw.mean(axis=0)
        xc = xw - x_mean
        primal = m >= d  # primal: (Xc'Xc + alpha I) w = Xc'y; dual: w = Xc' (Xc Xc' + alpha I)^{-1} y
        gram = xc.T @ xc if primal else xc @ xc.T
    gram[np.diag_indices_from(gram)] += alpha
    if np.all(np.isfinite(gram)):
        try:
            # NumPy's solver, not SciPy's: the two bundle separate OpenBLAS thread pools that
            # fight over the cores when used back to back (see GPSuccessPredictor._cholesky)
            with np.errstate(over="ignore", invalid="ignore"):
                if primal:
                    coef = np.linalg.solve(gram, xc.T @ (yw - y_mean))
                else:
                    coef = xc.T @ np.linalg.solve(gram, yw - y_mean)
                intercept = float(y_mean - x_mean @ coef)
            if np.all(np.isfinite(coef)) and math.isfinite(intercept):
                return coef, intercept, 1.0
        except np.linalg.LinAlgError:
            pass
    top = float(np.max(np.abs(xw)))
    unit = 2.0 ** (int(np.frexp(top)[1]) - 1) if top > 0.0 else 1.0  # top / unit in [1, 2)
    xs = xw / unit
    xs_mean = xs.mean(axis=0)
    xsc = xs - xs_mean
    lam_sqrt = math.sqrt(alpha) / unit
    if not math.isfinite(lam_sqrt):  # alpha / unit^2 = inf (embeddings ~1e-300): w = 0
        return np.zeros(d), y_mean, unit
    a = np.vstack([xsc, lam_sqrt * np.eye(d)])
    b = np.concatenate([yw - y_mean, np.zeros(d)])
    u = np.linalg.lstsq(a, b, rcond=None)[0]
    return u, float(y_mean - xs_mean @ u), unit


class RidgePredictor:
    """Ridge regression of the observed logit on the prompt embedding (VIP's ablation baseline).

    After each update the model is refitted on the most recent ``window`` observations
    ``(x_q, y_q)`` with ``y_q = logit(clip(s_q / n_q, eps, 1 - eps))`` (the GP's observation):

        (w, b) = argmin sum_q (y_q - x_q.w - b)^2 + alpha ||w||^2     (intercept not penalised)

    and predicts ``clip(sigmoid(x.w + b), eps, 1 - eps)``; ``sigmoid(prior_logit)`` before any
    observation. Regressing the logit (rather than the rate) is our choice: it keeps predictions
    in (0, 1) and uses the same observation as the GP.

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
    alpha : float > 0
        Ridge penalty.
    window : int >= 1
        Number of most recent observations used for the fit (VIP Fig. 3 uses 1024).
    prior_logit : float
    eps : float in [2**-53, 0.5)

    Attributes
    ----------
    coef_ : ndarray, shape (d,)
    intercept_ : float

    Notes
    -----
    Any finite embeddings are handled: when the normal equations overflow or are singular to
    working precision (magnitudes ~1e200, or ~1e31 with ``alpha = 1``), the fit is solved in
    rescaled units by SVD (see ``_ridge_fit``) instead of failing. An update that cannot be
    represented raises ``ValueError`` and leaves the predictor unchanged.
    """

    def __init__(
        self,
        embeddings: Any,
        *,
        alpha: float = 1.0,
        window: int = 1024,
        prior_logit: float = 0.0,
        eps: float = 0.01,
    ):
        x = as_float_array(embeddings, "embeddings", ndim=2, min_size=1)
        self._x = x
        self.n_prompts, self.dim = int(x.shape[0]), int(x.shape[1])
        self.alpha = check_finite_scalar(alpha, "alpha", lo=0.0, lo_open=True)
        self.window = check_int_scalar(window, "window", lo=1)
        self.prior_logit = check_finite_scalar(prior_logit, "prior_logit")
        self.eps = _check_eps(eps)
        self._ids: deque[int] = deque(maxlen=self.window)
        self._y: deque[float] = deque(maxlen=self.window)
        self.coef_ = np.zeros(self.dim)
        self.intercept_ = self.prior_logit
        self._coef_unit, self._unit = self.coef_, 1.0  # coef_ = _coef_unit / _unit (see _ridge_fit)
        self.step = 0

    def update(self, ids: Any, successes: Any, trials: Any) -> None:
        """Append the batch (in order), keep the last ``window`` observations and refit."""
        idx, s, n = _validate_counts(ids, successes, trials, self.n_prompts)
        y = _logit(_clipped_rate(s, n, self.eps))
        # fit on the would-be window first; commit only a finite fit (a failed update changes nothing)
        old_ids = np.fromiter(self._ids, dtype=np.int64, count=len(self._ids))
        old_y = np.fromiter(self._y, dtype=np.float64, count=len(self._y))
        win_ids = np.concatenate([old_ids, idx])[-self.window :]
        yw = np.concatenate([old_y, y])[-self.window :]
        xw = self._x[win_ids]
        coef, intercept, unit = _ridge_fit(xw, yw, self.alpha)
        if unit != 1.0 and not self._logits_finite(coef, intercept, unit):
            raise ValueError(
                "ridge fit gives logits that overflow float64 for some embeddings (embeddings of "
                "very different scales); rescale the embeddings (state unchanged)"
            )
        self._ids.extend(idx.tolist())
        self._y.extend(y.tolist())
        self._coef_unit, self._unit = coef, unit
        self.coef_ = coef / unit if unit != 1.0 else coef
        self.intercept_ = intercept
        self.step += 1

    def _logits_finite(self, coef: np.ndarray, intercept: float, unit: float) -> bool:
        with np.errstate(over="ignore", invalid="ignore"):
            return bool(np.all(np.isfinite((self._x / unit) @ coef + intercept)))

    def predict_logit(self, ids: Any) -> np.ndarray:
        """Fitted logit ``x.w + b`` (unclipped), shape (B,)."""
        idx = _validate_ids(ids, self.n_prompts)
        if self._unit == 1.0:
            return self._x[idx] @ self.coef_ + self.intercept_
        return (self._x[idx] / self._unit) @ self._coef_unit + self.intercept_  # see _ridge_fit

    def predict(self, ids: Any) -> np.ndarray:
        """``clip(sigmoid(x.w + b), eps, 1 - eps)``, shape (B,)."""
        return np.clip(_sigmoid(self.predict_logit(ids)), self.eps, 1.0 - self.eps)

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_prompts": self.n_prompts, "dim": self.dim, "alpha": self.alpha, "window": self.window,
                "prior_logit": self.prior_logit, "eps": self.eps, "embeddings": fingerprint(self._x)}

    def state_dict(self) -> dict:
        """Checkpoint: the window of observations (``window_ids``, ``window_logits``), the fitted
        ``coef`` and ``intercept`` (plus ``coef_unit`` and ``unit``, the coefficients in the units
        of a rescaled fit, ``coef = coef_unit / unit``; ``unit = 1`` normally), and ``step``.
        The embeddings are constructor input, not state:
        only their fingerprint (shape + BLAKE2b hash of the float64 values) is stored and checked
        on load."""
        return new_state(self, self._hyperparameters(),
                         window_ids=np.fromiter(self._ids, dtype=np.int64, count=len(self._ids)),
                         window_logits=np.fromiter(self._y, dtype=np.float64, count=len(self._y)),
                         coef=self.coef_, intercept=self.intercept_, coef_unit=self._coef_unit,
                         unit=self._unit, step=self.step)

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` into a predictor built from the same embeddings and settings;
        ``ValueError``/``TypeError`` (object unchanged) otherwise."""
        r = StateReader(self, state, self._hyperparameters())
        ids = r.array("window_ids", (None,), np.int64, lo=0, hi=self.n_prompts - 1)
        if ids.size > self.window:
            raise ValueError(f"RidgePredictor.load_state_dict: the state holds {ids.size} observations, "
                             f"more than window={self.window}")
        y = r.array("window_logits", (ids.size,), np.float64)
        coef = r.array("coef", (self.dim,), np.float64)
        intercept = r.float("intercept")
        coef_unit = r.array("coef_unit", (self.dim,), np.float64)
        unit = r.float("unit", lo=5e-324)
        step = r.int("step", lo=0)
        self._ids = deque(ids.tolist(), maxlen=self.window)
        self._y = deque(y.tolist(), maxlen=self.window)
        self.coef_, self.intercept_, self.step = coef, intercept, step
        self._coef_unit, self._unit = coef_unit, unit


def _beta_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / (a + b)``, also where ``a + b`` overflows (a prior of 1e308): ``1 / (1 + b / a)``."""
    with np.errstate(over="ignore"):
        t = a + b
        if np.all(np.isfinite(t)):
            return a / t
        return 1.0 / (1.0 + b / a)


class BetaBinomialPredictor:
    """Per-prompt Beta posterior of the success probability (optionally forgetting old counts).

    Prompt ``q`` has posterior ``Beta(a0 + S_q, b0 + F_q)`` where ``S_q, F_q`` are its
    (discounted) success and failure counts. With ``discount = gamma < 1`` every count is
    multiplied by ``gamma`` per ``update`` call that follows it (applied lazily, so an update costs
    ``O(batch)``): ``S_q = sum_t gamma^(T - t) s_{q,t}`` after ``T`` updates.

    Parameters
    ----------
    n_prompts : int
    a0, b0 : float > 0
        Beta prior (default uniform ``Beta(1, 1)``).
    discount : float in (0, 1]
        Forgetting factor (``1``: plain conjugate updating).
    eps : float in [2**-53, 0.5)
        Output clipping.

    Notes
    -----
    ``predict`` is the posterior mean ``a / (a + b)``; ``predict_var`` the posterior variance
    ``a b / ((a + b)^2 (a + b + 1))``.

    Examples
    --------
    >>> from bandits import BetaBinomialPredictor
    >>> bb = BetaBinomialPredictor(3)
    >>> bb.update([0], [3], [4])
    >>> bb.predict([0, 1])    # (1 + 3) / (2 + 4), and the prior mean 1/2
    array([0.66666667, 0.5       ])
    """

    def __init__(
        self,
        n_prompts: int,
        *,
        a0: float = 1.0,
        b0: float = 1.0,
        discount: float = 1.0,
        eps: float = 0.01,
    ):
        self.n_prompts = _check_n_prompts(n_prompts)
        self.a0 = check_finite_scalar(a0, "a0", lo=0.0, lo_open=True)
        self.b0 = check_finite_scalar(b0, "b0", lo=0.0, lo_open=True)
        self.discount = check_finite_scalar(discount, "discount", lo=0.0, hi=1.0, lo_open=True)
        self.eps = _check_eps(eps)
        self._s = np.zeros(self.n_prompts)
        self._f = np.zeros(self.n_prompts)
        self._last = np.zeros(self.n_prompts, dtype=np.int64)  # step at which counts were last decayed
        self.step = 0

    def _counts(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.discount == 1.0:
            return self._s[idx], self._f[idx]
        decay = self.discount ** (self.step - self._last[idx]).astype(np.float64)
        return self._s[idx] * decay, self._f[idx] * decay

    def update(self, ids: Any, successes: Any, trials: Any) -> None:
        """Discount all counts by one step, then add the batch's successes and failures."""
        idx, s, n = _validate_counts(ids, successes, trials, self.n_prompts)
        self.step += 1
        uniq = np.unique(idx)
        cs, cf = self._counts(uniq)
        self._s[uniq], self._f[uniq] = cs, cf
        self._last[uniq] = self.step
        np.add.at(self._s, idx, s.astype(np.float64))
        np.add.at(self._f, idx, (n - s).astype(np.float64))

    def posterior(self, ids: Any) -> tuple[np.ndarray, np.ndarray]:
        """Posterior Beta parameters ``(a, b)`` for ``ids``, each shape (B,)."""
        idx = _validate_ids(ids, self.n_prompts)
        cs, cf = self._counts(idx)
        return self.a0 + cs, self.b0 + cf

    def predict(self, ids: Any) -> np.ndarray:
        """Posterior mean ``a / (a + b)`` clipped to ``[eps, 1 - eps]``, shape (B,)."""
        a, b = self.posterior(ids)
        return np.clip(_beta_mean(a, b), self.eps, 1.0 - self.eps)

    def predict_var(self, ids: Any) -> np.ndarray:
        """Posterior variance ``a b / ((a + b)^2 (a + b + 1))``, shape (B,)."""
        a, b = self.posterior(ids)
        with np.errstate(over="ignore"):
            t = a + b
            if np.all(np.isfinite(t * t * (t + 1.0))):
                return a * b / (t * t * (t + 1.0))
            # a, b near DBL_MAX: m (1 - m) / (a + b + 1) with m the mean (-> 0 as a + b -> inf)
            m = _beta_mean(a, b)
            return m * (1.0 - m) / (t + 1.0)

    # -- checkpoints -----------------------------------------------------------------------
    def _hyperparameters(self) -> dict:
        return {"n_prompts": self.n_prompts, "a0": self.a0, "b0": self.b0, "discount": self.discount,
                "eps": self.eps}

    def state_dict(self) -> dict:
        """Checkpoint: the (lazily discounted) success and failure counts, the step at which each
        prompt's counts were last discounted, and ``step``."""
        return new_state(self, self._hyperparameters(), successes=self._s, failures=self._f,
                         last_step=self._last, step=self.step)

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`; ``ValueError``/``TypeError`` (object unchanged) on another
        class, version, hyperparameters, shapes or negative counts."""
        n = self.n_prompts
        r = StateReader(self, state, self._hyperparameters())
        s = r.array("successes", (n,), np.float64, lo=0.0)
        f = r.array("failures", (n,), np.float64, lo=0.0)
        step = r.int("step", lo=0)
        last = r.array("last_step", (n,), np.int64, lo=0, hi=step)
        self._s, self._f, self._last, self.step = s, f, last, step
