"""VIP's Gaussian-process success-probability predictor (Sec. 5.1, Alg. 1), scalable.

The model (VIP Sec. 5.1): the success probability of the current policy on prompt ``q`` is
``p_q = sigmoid(g(x_q))`` with a latent ``g ~ GP(m_t, K)`` over prompt embeddings ``x_q`` and the
RBF kernel ``K(x, x') = exp(-||x - x'||^2 / (2 h^2))``. After rolling out a mini-batch ``B`` the
clipped empirical success rate is observed as a logit,
``g_hat_q = logit(clip(s_q / n_q, eps, 1 - eps))``, and the mean is conditioned on it (Alg. 1):

    m*_{B^c} = m_{B^c} + K_{B^c B} (K_{BB} + R)^{-1} (g_hat_B - m_B)          (Alg. 1, line 8)
    m_{t+1}(x_q) = g_hat_q for q in B, m*_{B^c}(x_q) otherwise               (Alg. 1, line 11)

with ``R = 0`` in the paper. The posterior mean is the next step's prior mean; the covariance is
**not** carried: Alg. 1 line 9 computes ``Sigma*`` but its ``Require`` line and Sec. 5.1
("``[g_t(x_1), ..., g_t(x_Q)] ~ N(m_t, Sigma)``" at every ``t``) use the fixed prior kernel
``Sigma = K(D, D)`` again at the next step, and ``Sigma*`` is never returned. We follow that.

What this implementation adds (all optional; the defaults are the paper's setting ``noise=0.0``):

* **Memory O(N d).** No N x N matrix is stored. Each update computes the kernel columns
  ``K(all, B)`` from the embeddings on demand, in row chunks (``chunk_rows x |B|`` floats at a
  time), in ``dtype`` (float32 by default; the mean itself is kept in float64). ``K_BB`` is
  formed in float64 (from the centred, stored embeddings, so the ``|a|^2 + |b|^2 - 2 a.b``
  expansion loses little to cancellation).
* **Observation noise** ``R``: ``noise=sigma2`` adds a homoscedastic variance ``sigma2`` (logit
  units); ``noise="binomial"`` uses the delta-method variance of the logit of a binomial
  estimate, ``R_qq = 1 / (n_q p_q (1 - p_q))`` with the clipped ``p_q`` -- prompts with few
  rollouts or extreme rates are trusted less. With ``noise != 0`` the observed prompts take the
  posterior mean ``m_B + K_BB alpha`` (proper Gaussian conditioning) instead of ``g_hat`` itself.
* **Jitter.** ``jitter`` is added to the diagonal of ``K_BB`` (paper: tiny, default ``1e-6``).
  A larger jitter (or ``noise``) keeps near-duplicate embeddings with conflicting outcomes from
  producing huge interpolation weights. If the Cholesky factorisation still fails, the jitter is
  raised tenfold (up to 8 times) and the amount used is recorded in :attr:`last_jitter`.
* **Median heuristic on a seeded subsample.** ``bandwidth="median"`` sets ``h`` to the median
  Euclidean distance over all pairs when there are at most ``n_bandwidth_pairs`` pairs, otherwise
  over ``n_bandwidth_pairs`` random pairs ``i != j`` drawn with ``seed``. Zero distances (exact
  duplicates) are excluded; if every distance is zero, ``h = 1``.

Predictive variance: because the paper resets the covariance to the prior kernel every step,
the model's own predictive variance of ``g`` would be ``K(x, x) = 1`` everywhere. We report
instead the **one-step posterior variance** of the most recent conditioning,
``K(x, x) - K(x, B) (K_BB + R + jitter)^{-1} K(B, x)`` (``1`` before the first update), which
is small near recently observed prompts and ``1`` far from them
(:meth:`GPSuccessPredictor.predict_latent_var`). :meth:`GPSuccessPredictor.predict_var` maps it
to the probability scale with the delta method, ``(p (1 - p))^2 var_g``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from solvers._validation import (
    MAX_SIZE,
    as_float_array,
    as_int_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)

from ._state import StateReader, fingerprint, new_state

__all__ = ["GPSuccessPredictor"]

_MAX_JITTER_RAISES = 8
EPS_MIN = 2.0**-53
"""Smallest clipping ``eps``: ``1 - eps`` must stay below 1 in float64 (else ``logit(1 - eps)``
is inf); about 1.1e-16, where ``logit(1 - eps) = 36.7``."""
MAX_ABS_PRIOR_LOGIT = 1e100
"""Largest ``|prior_logit|`` (a logit beyond +-40 is a saturated probability already); keeps the
conditioning's residuals and weights far from float64 overflow."""
_IV_CHUNK = 8192  # rows per chunk of the O(N d) passes over the embeddings
_PAIR_CHUNK = 4096  # pairs per chunk of the median heuristic


def _embeddings_iv(embeddings: Any) -> np.ndarray:
    """Validate the (N, d) embeddings; float32/float64 arrays are checked in place (no copy)."""
    if isinstance(embeddings, np.ndarray) and embeddings.dtype in (np.float32, np.float64):
        x = embeddings
        if x.ndim != 2:
            raise ValueError(f"embeddings must be 2-D, got shape {x.shape}")
        for start in range(0, x.shape[0], _IV_CHUNK):
            bad = ~np.isfinite(x[start : start + _IV_CHUNK])
            if bad.any():
                i, j = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(
                    f"embeddings must be finite, got {x[start + i, j].item()!r} at index ({start + i}, {j})"
                )
        return x
    return as_float_array(embeddings, "embeddings", ndim=2, min_size=1)


def _check_eps(eps: Any) -> float:
    """Clipping ``eps`` in ``[EPS_MIN, 0.5)`` (shared by every predictor and the hyperparameter fit)."""
    return check_finite_scalar(eps, "eps", lo=EPS_MIN, hi=0.5, hi_open=True)


def _check_prior_logit(prior: np.ndarray, name: str = "prior_logit") -> np.ndarray:
    big = np.abs(prior) > MAX_ABS_PRIOR_LOGIT
    if big.any():
        i = int(np.flatnonzero(big.reshape(-1))[0])
        raise ValueError(f"{name} must have magnitude <= 1e+100, got {float(prior.reshape(-1)[i])!r}")
    return prior


def _validate_ids(ids: Any, n_prompts: int, *, min_size: int = 0) -> np.ndarray:
    """Integer prompt indices in ``[0, n_prompts)`` as a 1-D int64 array."""
    arr = as_int_array(ids, "ids", ndim=(0, 1), min_size=min_size)
    arr = np.atleast_1d(arr)
    bad = (arr < 0) | (arr >= n_prompts)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"ids must be prompt indices in [0, {n_prompts}), got {int(arr[i])} at index {i}"
        )
    return arr


def _validate_counts(
    ids: Any, successes: Any, trials: Any, n_prompts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate one batch of observations; returns (ids, successes, trials): int64 ids and trials,
    float64 successes (integral for binary rewards, fractional for partial credit)."""
    ids_arr = _validate_ids(ids, n_prompts, min_size=1)
    # successes may be fractional: partial credit (rewards in [0, 1]) summed over the rollouts
    s = np.atleast_1d(as_float_array(successes, "successes", ndim=(0, 1), nonneg=True))
    n = np.atleast_1d(as_int_array(trials, "trials", ndim=(0, 1)))
    if s.shape != ids_arr.shape:
        raise ValueError(
            f"ids and successes must have the same shape, got {ids_arr.shape} and {s.shape}"
        )
    if n.shape != ids_arr.shape:
        raise ValueError(f"ids and trials must have the same shape, got {ids_arr.shape} and {n.shape}")
    bad = n < 1
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"trials must be >= 1, got {int(n[i])} at index {i}")
    bad = s > n
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"successes must be <= trials, got successes={s[i]:g} > trials={int(n[i])} at index {i}"
        )
    return ids_arr, s, n


def _aggregate(
    ids: np.ndarray, successes: np.ndarray, trials: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool repeated ids of one batch: (unique ids sorted, summed successes, summed trials)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    if uniq.size == ids.size:
        order = np.argsort(ids, kind="stable")
        return ids[order], successes[order], trials[order]
    n_f = np.bincount(inverse, weights=trials, minlength=uniq.size)
    if n_f.max() > 2.0**53:  # float64 sums are exact below 2**53 (and int64 cannot overflow)
        i = int(np.argmax(n_f))
        raise ValueError(
            f"trials pooled over repeated ids must be <= 2**53, got {n_f[i]:.6g} for id {int(uniq[i])}"
        )
    s = np.bincount(inverse, weights=successes, minlength=uniq.size)
    return uniq, s, n_f.astype(np.int64)


def _clipped_rate(successes: np.ndarray, trials: np.ndarray, eps: float) -> np.ndarray:
    """``clip(s / n, eps, 1 - eps)`` (VIP Sec. 5.1; ``(R_bar + 1) / 2 = s / n`` for rewards in {-1, 1})."""
    return np.clip(successes / trials, eps, 1.0 - eps)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # numerically safe for large |z|; exp never overflows
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def median_heuristic_bandwidth(
    embeddings: np.ndarray, *, n_pairs: int = 20_000, seed: Any = None
) -> float:
    """Median pairwise Euclidean distance of the rows of ``embeddings`` (the RBF bandwidth ``h``).

    Uses every pair ``i < j`` when there are at most ``n_pairs`` of them, otherwise ``n_pairs``
    random pairs ``i != j`` drawn from ``seed`` -- never all ``N^2`` pairs. Zero distances
    (exact duplicate rows) are excluded; returns ``1.0`` if all distances are zero.
    """
    n_pairs = check_int_scalar(n_pairs, "n_pairs", lo=1, hi=MAX_SIZE)
    rng = check_rng(seed)  # validated even when every pair is used
    x = np.asarray(embeddings)
    n = x.shape[0]
    if n < 2:
        return 1.0
    # distances are computed on x / max|x| (differences of +-1e308 overflow) and scaled back
    top = float(np.max(np.abs(x))) if x.size else 0.0
    unit = 1.0 if 1e-150 < top < 1e150 or top == 0.0 else top
    total = n * (n - 1) // 2
    if total <= n_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, size=n_pairs)
        j = rng.integers(0, n - 1, size=n_pairs)
        j = j + (j >= i)  # uniform over j != i
    dist = np.empty(i.size)
    for start in range(0, i.size, _PAIR_CHUNK):  # O(_PAIR_CHUNK d) temporaries
        sl = slice(start, start + _PAIR_CHUNK)
        if unit == 1.0:
            diff = x[i[sl]].astype(np.float64)
            diff -= x[j[sl]]
        else:
            diff = x[i[sl]].astype(np.float64) / unit - x[j[sl]].astype(np.float64) / unit
        dist[sl] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    dist = dist[dist > 0]
    if dist.size == 0:
        return 1.0
    h = float(np.median(dist)) * unit
    if not np.isfinite(h) or h == 0.0:
        raise ValueError(
            f"embeddings span more than float64 allows: their median pairwise distance "
            f"({float(np.median(dist))!r} x {unit!r}) is not representable; rescale the embeddings"
        )
    return h


class GPSuccessPredictor:
    """Recursive GP posterior-mean predictor of per-prompt success probabilities (VIP Alg. 1).

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
        One embedding per prompt (VIP: 384-d ``all-MiniLM-L6-v2``). Prompt ``q`` is row ``q``.
    bandwidth : "median" or float > 0
        RBF bandwidth ``h`` in ``exp(-||x - x'||^2 / (2 h^2))``. ``"median"``: median heuristic
        (VIP Sec. 6) on a seeded subsample of at most ``n_bandwidth_pairs`` pairs.
    prior_logit : float or array_like, shape (N,)
        Initial prior mean ``m_1`` of the latent logit (paper: ``0``, i.e. ``p = 0.5``); finite,
        magnitude at most ``1e100``.
    eps : float in [2**-53, 0.5)
        Clipping of observed success rates to ``[eps, 1 - eps]`` before the logit (Sec. 5.1);
        predictions are clipped to the same range. The paper gives no value; default ``0.01``.
        (Below ``2**-53``, ``1 - eps`` rounds to 1 and its logit is infinite.)
    noise : float >= 0 or "binomial"
        Observation-noise variance of the observed logits. ``0.0`` is the paper's setting
        (observed prompts take exactly the observed logit). A float is a homoscedastic variance;
        ``"binomial"`` is the heteroscedastic delta-method variance ``1 / (n p (1 - p))``.
    jitter : float >= 0
        Added to the diagonal of ``K_BB`` (default ``1e-6``, "tiny" as in the paper).
    seed : None, int or numpy.random.Generator
        Randomness of the median-heuristic subsample (the only random step).
    dtype : numpy float dtype
        Precision of the stored embeddings and the on-demand kernel columns (default float32:
        half the memory and about twice the speed; the mean vector is always float64).
    chunk_rows : int >= 1
        Rows of ``K(all, B)`` formed at a time (peak extra memory ``chunk_rows * |B|`` floats).
    n_bandwidth_pairs : int >= 1
        Number of pairs for the median heuristic.

    Attributes
    ----------
    n_prompts, dim : int
    bandwidth : float
        The bandwidth ``h`` in use.
    step : int
        Number of updates so far.
    last_jitter : float
        Diagonal jitter actually used by the last update (``>= jitter``).

    Notes
    -----
    Interface shared by the predictors of :mod:`bandits`: ``predict(ids) -> p_hat`` (float64 in
    ``[eps, 1 - eps]``), ``predict_var(ids)`` (variance of ``p_hat``, see the module docstring),
    ``update(ids, successes, trials)``. Ids are integers in ``[0, N)``; ids never observed get the
    current posterior mean (before any update: the prior). Repeated ids inside one ``update`` are
    pooled (successes and trials summed) into one observation.

    Cost per update with ``|B|`` distinct ids: ``O(N |B| d)`` time, ``O(N d + chunk_rows |B|)``
    memory. The paper's dense form instead stores the ``N x N`` kernel (2.4 GB in float64 at
    N = 17,398; VIP quotes 1.2 GB) and builds it once up front; its step then only gathers
    ``|B|`` kernel rows, so per step it is cheaper than recomputing them -- the trade is
    ``N^2`` memory and build time against ``N |B| d`` flops per step
    (``robust-rollouts perf --suite predictor`` measures both).

    Precision: with ``dtype=float32`` the unobserved prompts' means agree with float64
    conditioning to about ``1e-5`` relative; observed prompts in paper mode are set to the
    observed logit exactly in either dtype. Use ``dtype=np.float64`` for bit-level comparisons.

    Examples
    --------
    >>> import numpy as np
    >>> from bandits import GPSuccessPredictor
    >>> x = np.random.default_rng(0).normal(size=(100, 8))
    >>> gp = GPSuccessPredictor(x, seed=0)
    >>> gp.predict([0, 1])
    array([0.5, 0.5])
    >>> gp.update([0, 1, 2], successes=[8, 0, 4], trials=[8, 8, 8])
    >>> p = gp.predict([0, 1, 2, 3])   # observed ones: clip(s/n, eps, 1-eps) exactly (noise=0)
    >>> bool(np.allclose(p[:3], [0.99, 0.01, 0.5]))
    True
    """

    def __init__(
        self,
        embeddings: Any,
        *,
        bandwidth: float | str = "median",
        prior_logit: Any = 0.0,
        eps: float = 0.01,
        noise: float | str = 0.0,
        jitter: float = 1e-6,
        seed: Any = None,
        dtype: Any = np.float32,
        chunk_rows: int = 8192,
        n_bandwidth_pairs: int = 20_000,
    ) -> None:
        x = _embeddings_iv(embeddings)
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"embeddings must have shape (N, d) with N, d >= 1, got {x.shape}")
        n, d = x.shape
        dt = np.dtype(dtype)
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dt}")
        self.eps = _check_eps(eps)
        self.jitter = check_finite_scalar(jitter, "jitter", lo=0.0)
        if isinstance(noise, str):
            if noise != "binomial":
                raise ValueError(f"noise must be a float >= 0 or 'binomial', got {noise!r}")
            self.noise: float | str = "binomial"
        else:
            self.noise = check_finite_scalar(noise, "noise", lo=0.0)
        self.chunk_rows = check_int_scalar(chunk_rows, "chunk_rows", lo=1)
        n_pairs = check_int_scalar(n_bandwidth_pairs, "n_bandwidth_pairs", lo=1, hi=MAX_SIZE)
        rng = check_rng(seed)
        if isinstance(bandwidth, str):
            if bandwidth != "median":
                raise ValueError(f"bandwidth must be 'median' or a positive float, got {bandwidth!r}")
            self.bandwidth = median_heuristic_bandwidth(x, n_pairs=n_pairs, seed=rng)
        else:
            self.bandwidth = check_finite_scalar(bandwidth, "bandwidth", lo=0.0, lo_open=True)
        prior = _check_prior_logit(as_float_array(prior_logit, "prior_logit", ndim=(0, 1)))
        if prior.ndim == 1 and prior.shape[0] != n:
            raise ValueError(
                f"prior_logit must be a scalar or have length {n}, got length {prior.shape[0]}"
            )

        self.n_prompts = int(n)
        self.dim = int(d)
        self.dtype = dt
        # Distances are translation invariant: centring reduces cancellation in
        # ||a||^2 + ||b||^2 - 2 a.b; scaling by 1/(sqrt(2) h) makes K = exp(-||a - b||^2).
        scale = 1.0 / (np.sqrt(2.0) * self.bandwidth)
        self._z = np.empty((n, d), dtype=dt)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
            centre = x.mean(axis=0, dtype=np.float64)
            for start in range(0, n, _IV_CHUNK):  # chunked: no full-size float64 temporary
                stop = min(start + _IV_CHUNK, n)
                blk = x[start:stop] - centre  # float64, _IV_CHUNK x d
                blk *= scale
                self._z[start:stop] = blk
            sqnorm = np.einsum("ij,ij->i", self._z, self._z, dtype=np.float64)
            if not np.all(np.isfinite(sqnorm)):
                # embeddings near +-DBL_MAX: their mean or differences overflow; the same z
                # computed from x / max|x| (exact scaling by a power of two)
                top = 2.0 ** (int(np.frexp(float(np.max(np.abs(x))))[1]) - 1)
                centre = (x / top).mean(axis=0, dtype=np.float64)
                for start in range(0, n, _IV_CHUNK):
                    stop = min(start + _IV_CHUNK, n)
                    blk = x[start:stop] / top - centre
                    blk *= scale * top
                    self._z[start:stop] = blk
                sqnorm = np.einsum("ij,ij->i", self._z, self._z, dtype=np.float64)
        if not np.all(np.isfinite(sqnorm)):
            raise ValueError(
                f"bandwidth {self.bandwidth!r} is too small for these embeddings: the scaled "
                f"embeddings (x - mean) / (sqrt(2) h) overflow {dt.name}"
            )
        self._sqnorm = sqnorm.astype(dt)
        # fast kernel-column path is safe while exp(max |z|^2) stays far from dtype's overflow
        self._fast_ok = bool(sqnorm.max() <= (40.0 if dt == np.float32 else 300.0))
        self._row_factor = np.exp(-sqnorm) if self._fast_ok else None
        self._mean = np.empty(n, dtype=np.float64)
        self._mean[:] = prior
        self.step = 0
        self.last_jitter = self.jitter
        # state of the last conditioning, for the one-step posterior variance
        self._last_ids: np.ndarray | None = None
        self._last_chol: np.ndarray | None = None
        self._last_diag: np.ndarray | None = None  # diagonal added to K_BB (noise + jitter)
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ kernel pieces
    def _kernel_block64(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``K(rows, cols)`` in float64 (small blocks only: batch x batch or batch x query)."""
        a = self._z[rows].astype(np.float64)
        b = self._z[cols].astype(np.float64)
        sq = np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :]
        sq -= 2.0 * (a @ b.T)
        np.maximum(sq, 0.0, out=sq)  # round-off guard: squared distances are >= 0
        return np.exp(-sq)

    def _kernel_columns_times(self, cols: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``K(all, cols) @ alpha`` as a new float64 vector of length N, computed chunk by chunk
        (never storing N x |cols|).

        ``alpha`` is divided by ``max |alpha|`` before the cast to ``dtype`` and the product is
        multiplied back in float64, so huge weights (a huge prior mean) cannot overflow float32.
        Fast path: ``K_ij = exp(-|z_i|^2) exp(2 z_i.z_j - |z_j|^2)``, so the row factor
        ``exp(-|z_i|^2)`` is applied after the product and ``exp(-|z_j|^2)`` is folded into
        ``alpha``: one matrix product, one ``exp`` and one matrix-vector product per chunk.
        It is used when ``max |z|^2`` is small enough that ``exp(2 z_i.z_j - |z_j|^2) <=
        exp(|z_i|^2)`` cannot overflow in ``dtype``; otherwise the direct form is used.
        """
        n = self.n_prompts
        out = np.zeros(n, dtype=np.float64)
        scale = float(np.max(np.abs(alpha)))
        if not scale > 0.0:  # all-zero weights (nothing to add) or NaN (caught by the caller)
            return out if scale == 0.0 else np.full(n, np.nan)
        a = alpha / scale  # entries in [-1, 1]
        zb = self._z[cols]  # |B| x d, dtype
        sb = self._sqnorm[cols]
        step = self.chunk_rows
        if self._fast_ok:
            zb2 = (2.0 * zb).astype(self.dtype)
            a_dt = (a * np.exp(-sb.astype(np.float64))).astype(self.dtype)
            for start in range(0, n, step):
                stop = min(start + step, n)
                g = self._z[start:stop] @ zb2.T  # chunk x |B|
                np.exp(g, out=g)
                out[start:stop] = g @ a_dt
            out *= self._row_factor
        else:
            a_dt = a.astype(self.dtype)
            for start in range(0, n, step):
                stop = min(start + step, n)
                g = self._z[start:stop] @ zb.T  # chunk x |B|
                g *= 2.0
                g -= self._sqnorm[start:stop, None]
                g -= sb[None, :]
                np.minimum(g, 0.0, out=g)  # squared distances are >= 0 (round-off guard)
                np.exp(g, out=g)
                out[start:stop] = g @ a_dt
        out *= scale
        return out

    # ------------------------------------------------------------------ public API
    @property
    def mean_logit(self) -> np.ndarray:
        """Current prior mean ``m_t`` of the latent logit for all prompts, shape (N,) (read-only view)."""
        view = self._mean.view()
        view.flags.writeable = False
        return view

    def predict_logit(self, ids: Any) -> np.ndarray:
        """Current mean ``m_t(x_q)`` of the latent logit (unclipped; Alg. 1's ``m_{t+1}``)."""
        idx = _validate_ids(ids, self.n_prompts)
        return self._mean[idx].copy()

    def predict(self, ids: Any) -> np.ndarray:
        """Predicted success probabilities ``clip(sigmoid(m_t(x_q)), eps, 1 - eps)``, float64.

        Parameters
        ----------
        ids : array_like of int, shape (B,)
            Prompt indices in ``[0, N)``.

        Returns
        -------
        p_hat : ndarray, shape (B,)
            VIP Sec. 5.1 "Prediction" (Alg. 1 line 13), clipped to ``[eps, 1 - eps]`` so that a
            downstream allocator never sees 0 or 1 (observed prompts are unaffected: their
            logits already lie in that range in the paper's setting).
        """
        idx = _validate_ids(ids, self.n_prompts)
        return np.clip(_sigmoid(self._mean[idx]), self.eps, 1.0 - self.eps)

    def predict_latent_var(self, ids: Any) -> np.ndarray:
        """One-step posterior variance of the latent logit after the last update (1 before any).

        ``K(x, x) - K(x, B) (K_BB + R + jitter I)^{-1} K(B, x)`` with ``B`` the last batch,
        clipped to ``[0, 1]`` against round-off. See the module docstring for why this, rather
        than the prior ``K(x, x) = 1`` that the paper carries forward, is reported.
        """
        idx = _validate_ids(ids, self.n_prompts)
        var = np.ones(idx.size, dtype=np.float64)
        if self._last_chol is None:
            return var
        for start in range(0, idx.size, self.chunk_rows):  # |B| x chunk_rows at a time
            k = self._kernel_block64(self._last_ids, idx[start : start + self.chunk_rows])
            v = np.linalg.solve(self._last_chol, k)  # NumPy's BLAS: see _cholesky
            var[start : start + self.chunk_rows] -= np.einsum("ij,ij->j", v, v)
        return np.clip(var, 0.0, 1.0)

    def predict_var(self, ids: Any) -> np.ndarray:
        """Delta-method variance of ``p_hat``: ``(p (1 - p))^2 * predict_latent_var(ids)``."""
        idx = _validate_ids(ids, self.n_prompts)
        p = _sigmoid(self._mean[idx])
        return (p * (1.0 - p)) ** 2 * self.predict_latent_var(idx)

    def observation_noise(self, successes: Any, trials: Any) -> np.ndarray:
        """Observation-noise variances ``R_qq`` used for a batch (zeros in the paper's setting)."""
        s = np.atleast_1d(as_float_array(successes, "successes", ndim=(0, 1), nonneg=True))
        n = np.atleast_1d(as_float_array(trials, "trials", ndim=(0, 1), positive=True))
        if self.noise == "binomial":
            p = _clipped_rate(s, n, self.eps)
            return 1.0 / (n * p * (1.0 - p))
        return np.full(s.shape, float(self.noise))

    def update(self, ids: Any, successes: Any, trials: Any) -> None:
        """Condition on one mini-batch of rollouts (VIP Alg. 1) and make the posterior mean the prior.

        Parameters
        ----------
        ids : array_like of int, shape (B,)
            Prompts rolled out this step; repeated ids are pooled.
        successes : array_like of float, shape (B,)
            Number of successful rollouts (reward +1) per entry, ``0 <= successes <= trials``;
            with partial-credit rewards in [0, 1], the sum of the rewards (then ``s / n`` is the
            mean reward, the analogue of VIP's ``(R_bar + 1) / 2``).
        trials : array_like of int, shape (B,)
            Number of rollouts ``n_q >= 1`` per entry.

        Notes
        -----
        Lines 3-4: ``g_hat = logit(clip(s / n, eps, 1 - eps))``. Line 8:
        ``alpha = (K_BB + R + jitter I)^{-1} (g_hat - m_B)``, ``m_{B^c} += K_{B^c B} alpha``.
        Line 11: ``m_B = g_hat`` when ``noise == 0`` (paper), else ``m_B += K_BB alpha``.
        Line 9 (``Sigma*``) is not carried to the next step (the paper does not either).
        The state is left unchanged if the update would produce a non-finite mean; that raises
        ``ValueError`` (``numpy.linalg.LinAlgError``, also a ValueError, if ``K_BB`` stays
        indefinite after the jitter raises).
        """
        idx, s, n = _validate_counts(ids, successes, trials, self.n_prompts)
        idx, s, n = _aggregate(idx, s, n)
        g_hat = _logit(_clipped_rate(s, n, self.eps))
        resid = g_hat - self._mean[idx]
        k_bb = self._kernel_block64(idx, idx)
        diag = self.observation_noise(s, n) + self.jitter
        chol, used, total_diag = self._cholesky(k_bb, diag)
        alpha = linalg.cho_solve((chol, True), resid, check_finite=False)
        if not np.all(np.isfinite(alpha)):
            raise ValueError("GP update produced non-finite weights; raise jitter or noise (state unchanged)")
        new_b = g_hat if self.noise == 0.0 else self._mean[idx] + k_bb @ alpha
        # stage the new mean and check it before committing: a failed update changes nothing
        new_mean = self._kernel_columns_times(idx, alpha)
        new_mean += self._mean
        new_mean[idx] = new_b
        if not np.all(np.isfinite(new_mean)):
            raise ValueError("GP update produced a non-finite mean; raise jitter or noise (state unchanged)")
        self._mean[:] = new_mean
        self.step += 1
        self.last_jitter = used
        self._last_ids = idx
        self._last_chol = chol
        self._last_diag = total_diag

    def _cholesky(self, k_bb: np.ndarray, diag: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Lower Cholesky factor of ``k_bb + diag(diag)``, raising the jitter tenfold on failure.

        Returns the factor, the jitter used and the diagonal actually added (``diag`` plus the
        extra jitter), which :meth:`load_state_dict` uses to refactor the last batch.

        NumPy's ``cholesky``, not SciPy's: NumPy and SciPy wheels bundle separate OpenBLAS
        builds, each with its own thread pool whose idle threads spin for a while after a call.
        A SciPy level-3 call (``potrf``, ``trsm``) right before the kernel-column products on
        NumPy's pool left the two pools fighting over the cores: on 2 cores the N = 17,398 step
        took 115 ms instead of 46 ms. Only level-2 SciPy calls (``cho_solve`` of one vector)
        remain in the step.
        """
        base = max(self.jitter, 1e-10)
        for attempt in range(_MAX_JITTER_RAISES + 1):
            extra = 0.0 if attempt == 0 else base * 10.0**attempt - self.jitter
            a = k_bb.copy()
            total = diag + extra
            a[np.diag_indices_from(a)] += total
            try:
                chol = np.linalg.cholesky(a)
                if np.all(np.isfinite(chol)):
                    return chol, self.jitter + extra, total
            except linalg.LinAlgError:
                pass
        raise linalg.LinAlgError(
            f"K_BB + noise + jitter is not positive definite even with jitter {self.jitter + extra:.3g}"
        )

    # ------------------------------------------------------------------ checkpoints
    def embedding_fingerprint(self) -> str:
        """``"<N>x<d>:<hash>"`` of the stored (centred, scaled, ``dtype``) embeddings.

        The embeddings are constructor input, not state: :meth:`state_dict` stores only this
        fingerprint, and :meth:`load_state_dict` refuses a state whose fingerprint differs from
        the receiving object's (other embeddings, another row order, bandwidth or dtype).
        Computed once (one BLAKE2b pass, about 25 ms at 17,398 x 384 float32) and cached.
        """
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self._z)
        return self._fingerprint

    def _hyperparameters(self) -> dict:
        return {"n_prompts": self.n_prompts, "dim": self.dim, "bandwidth": self.bandwidth, "eps": self.eps,
                "noise": self.noise, "jitter": self.jitter, "dtype": self.dtype.name,
                "chunk_rows": self.chunk_rows, "embeddings": self.embedding_fingerprint()}

    def state_dict(self) -> dict:
        """Checkpoint of the predictor (O(N + |B|) numbers, no kernel matrix, no embeddings).

        Stored: the hyperparameters (bandwidth, eps, noise, jitter, dtype, chunk_rows), the
        embeddings' fingerprint (:meth:`embedding_fingerprint`), the latent mean ``m_t`` for all
        N prompts (float64), ``step``, ``last_jitter``, and the ids and diagonal (noise +
        jitter) of the last conditioned batch, from which :meth:`load_state_dict` recomputes
        the Cholesky factor behind :meth:`predict_latent_var` (same input, same factor).
        Not stored: the embeddings (constructor input; pass the same array to the constructor
        of the object you load into) and ``prior_logit`` (only the initial value of the mean).
        """
        last_ids = np.zeros(0, dtype=np.int64) if self._last_ids is None else self._last_ids
        last_diag = np.zeros(0, dtype=np.float64) if self._last_diag is None else self._last_diag
        return new_state(self, self._hyperparameters(), mean=self._mean, step=self.step,
                         last_jitter=self.last_jitter, last_ids=last_ids, last_diag=last_diag)

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict` into a predictor built from the same embeddings and settings.

        Raises ``ValueError``/``TypeError`` (object unchanged) on another class, version or
        hyperparameters, a different embeddings fingerprint, wrong shapes, non-finite values, or
        a last batch whose kernel matrix is not positive definite.
        """
        r = StateReader(self, state, self._hyperparameters())
        mean = r.array("mean", (self.n_prompts,), np.float64)
        step = r.int("step", lo=0)
        last_jitter = r.float("last_jitter", lo=0.0)
        last_ids = r.array("last_ids", (None,), np.int64, lo=0, hi=self.n_prompts - 1)
        last_diag = r.array("last_diag", (last_ids.size,), np.float64, lo=0.0)
        chol = None
        if last_ids.size:
            a = self._kernel_block64(last_ids, last_ids)
            a[np.diag_indices_from(a)] += last_diag
            try:
                chol = np.linalg.cholesky(a)
            except np.linalg.LinAlgError:
                chol = None
            if chol is None or not np.all(np.isfinite(chol)):
                raise ValueError("GPSuccessPredictor.load_state_dict: the kernel matrix of state['last_ids'] "
                                 "plus state['last_diag'] is not positive definite")
        self._mean = mean
        self.step, self.last_jitter = step, last_jitter
        if chol is None:
            self._last_ids = self._last_chol = self._last_diag = None
        else:
            self._last_ids, self._last_chol, self._last_diag = last_ids, chol, last_diag

    def __repr__(self) -> str:
        return (
            f"GPSuccessPredictor(n_prompts={self.n_prompts}, dim={self.dim}, "
            f"bandwidth={self.bandwidth:.4g}, eps={self.eps}, noise={self.noise!r}, "
            f"jitter={self.jitter}, dtype={self.dtype.name}, step={self.step})"
        )
