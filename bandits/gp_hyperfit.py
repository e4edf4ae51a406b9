"""Marginal-likelihood fit of the GP predictor's bandwidth and noise with gpytorch (optional extra).

VIP (Sec. 6) fixes the RBF bandwidth by the median heuristic and uses no observation noise. This
module fits both to recent history instead, by maximising the exact Gaussian marginal likelihood
of the observed logits (type-II maximum likelihood) with gpytorch's ``ExactGP``:

    y_i = logit(clip(s_i / n_i, eps, 1 - eps)) - prior_logit,   y ~ N(0, K_h(X, X) + R)
    log p(y) = -1/2 y' (K_h + R)^{-1} y - 1/2 log det(K_h + R) - m/2 log(2 pi)

with ``K_h(x, x') = exp(-||x - x'||^2 / (2 h^2))`` (unit output scale, as in VIP; gpytorch's
``RBFKernel`` with ``lengthscale = h``) and ``R`` either a learned homoscedastic variance
(``noise="learn"``, ``GaussianLikelihood``), the fixed binomial delta-method variance
(``noise="binomial"``, ``FixedNoiseGaussianLikelihood``; only ``h`` is learned) or a fixed
homoscedastic variance (a float). Each history entry is one data point: a prompt observed at
several steps appears several times (the function drifts; the noise absorbs the spread).

torch and gpytorch are imported only inside :func:`fit_gp_hyperparameters`
(``pip install robust-rollouts[gp]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

from solvers._status import CERTIFICATE_FAILED, ITERATION_LIMIT, MESSAGES, OPTIMAL
from solvers._validation import (
    as_float_array,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)

from .gp_predictor import (
    GPSuccessPredictor,
    _check_eps,
    _check_prior_logit,
    _clipped_rate,
    _logit,
    _validate_counts,
    median_heuristic_bandwidth,
)

__all__ = ["GPHyperparameters", "fit_gp_hyperparameters"]

_EXTRA_MSG = (
    "fit_gp_hyperparameters needs torch and gpytorch, which are optional: "
    "install them with `pip install robust-rollouts[gp]`"
)


@dataclass(frozen=True)
class GPHyperparameters:
    """Result of :func:`fit_gp_hyperparameters`.

    Attributes
    ----------
    bandwidth : float
        Fitted RBF bandwidth ``h`` (gpytorch lengthscale).
    noise : float or "binomial"
        Fitted (``noise="learn"``) or fixed observation-noise variance, in logit units.
    log_marginal_likelihood : float
        Exact ``log p(y)`` at the fitted values (recomputed with NumPy, total over the points).
    initial_log_marginal_likelihood : float
        The same at the starting values (median-heuristic bandwidth, initial noise).
    initial_bandwidth : float
    n_observations : int
        Number of history points used (the most recent ``max_history``).
    n_iter : int
        Optimizer iterations run.
    prior_logit, eps : float
        Settings used; passed on by :meth:`make_predictor`.
    success : bool
        ``status == OPTIMAL``.
    status : int
        ``OPTIMAL`` (converged and the likelihood did not decrease), ``ITERATION_LIMIT``
        (not converged within ``max_iter``) or ``CERTIFICATE_FAILED`` (the fitted likelihood is
        below the starting one, or non-finite).
    message : str
    """

    bandwidth: float
    noise: float | str
    log_marginal_likelihood: float
    initial_log_marginal_likelihood: float
    initial_bandwidth: float
    n_observations: int
    n_iter: int
    prior_logit: float
    eps: float
    success: bool
    status: int
    message: str

    def make_predictor(self, embeddings: Any, **kwargs: Any) -> GPSuccessPredictor:
        """A :class:`GPSuccessPredictor` with these hyperparameters (``kwargs`` override/extend)."""
        params: dict[str, Any] = {
            "bandwidth": self.bandwidth,
            "noise": self.noise,
            "prior_logit": self.prior_logit,
            "eps": self.eps,
        }
        params.update(kwargs)
        return GPSuccessPredictor(embeddings, **params)


def _log_marginal_likelihood(x: np.ndarray, y: np.ndarray, h: float, noise_diag: np.ndarray) -> float:
    """Exact ``log N(y; 0, K_h(X, X) + diag(noise_diag))`` with NumPy (the independent check);
    ``-inf`` when the matrix is not positive definite or not representable."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        a = np.exp(-cdist(x / h, x / h, "sqeuclidean") / 2.0)
        a[np.diag_indices_from(a)] += noise_diag
    if not np.all(np.isfinite(a)):
        return -math.inf
    try:
        chol = linalg.cholesky(a, lower=True)
    except linalg.LinAlgError:
        return -math.inf
    v = linalg.solve_triangular(chol, y, lower=True)
    return float(-0.5 * v @ v - np.sum(np.log(np.diag(chol))) - 0.5 * y.size * math.log(2 * math.pi))


def fit_gp_hyperparameters(
    embeddings: Any,
    ids: Any,
    successes: Any,
    trials: Any,
    *,
    noise: float | str = "learn",
    prior_logit: float = 0.0,
    eps: float = 0.01,
    max_history: int = 1024,
    initial_bandwidth: float | str = "median",
    initial_noise: float = 0.5,
    max_iter: int = 100,
    tol: float = 1e-7,
    seed: Any = None,
) -> GPHyperparameters:
    """Fit the RBF bandwidth (and noise) of :class:`GPSuccessPredictor` by marginal likelihood.

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
        Prompt embeddings (row ``q`` is prompt ``q``).
    ids, successes, trials : array_like of int, shape (M,)
        Observation history, oldest first (e.g. the concatenated batches of recent steps).
        The last ``max_history`` entries are used.
    noise : "learn", "binomial" or float >= 0
        ``"learn"``: a homoscedastic noise variance is fitted with the bandwidth;
        ``"binomial"``: per-point ``1 / (n p (1 - p))`` (fixed); a float: fixed variance.
        (gpytorch rounds fixed noise below ``1e-6`` up to ``1e-6`` while fitting; the reported
        likelihoods and the certificate use the noise as given.)
    prior_logit : float
        Constant prior mean subtracted from the observed logits.
    eps : float in [2**-53, 0.5)
        Clipping of observed rates (as in the predictor).
    max_history : int >= 2
    initial_bandwidth : "median" or float > 0
        Starting bandwidth (median heuristic on the history's embeddings, seeded subsample).
    initial_noise : float > 0
        Starting noise variance for ``noise="learn"``.
    max_iter : int >= 1
        L-BFGS iterations (strong-Wolfe line search) on gpytorch's raw parameters (softplus-
        transformed: ``h = softplus(raw)``, ``noise = 1e-6 + softplus(raw)``).
    tol : float > 0
        Convergence tolerance on the change of the (per-point) negative log likelihood.
    seed : None, int or Generator
        For the median-heuristic subsample.

    Returns
    -------
    GPHyperparameters
        Fitted values; ``result.make_predictor(embeddings)`` builds the predictor.

    Raises
    ------
    ImportError
        If torch or gpytorch is missing (the message names ``robust-rollouts[gp]``).

    Examples
    --------
    >>> import numpy as np
    >>> from bandits.gp_hyperfit import fit_gp_hyperparameters
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4)); ids = rng.integers(0, 200, 100)
    >>> p = 1 / (1 + np.exp(-np.sin(x[ids, 0])))
    >>> res = fit_gp_hyperparameters(x, ids, rng.binomial(8, p), np.full(100, 8), seed=0)
    >>> res.bandwidth > 0 and res.log_marginal_likelihood >= res.initial_log_marginal_likelihood
    True
    """
    try:
        import gpytorch
        import torch
    except ImportError as exc:
        raise ImportError(_EXTRA_MSG) from exc

    x_all = as_float_array(embeddings, "embeddings", ndim=2, min_size=1)
    n_prompts = x_all.shape[0]
    idx, s, n = _validate_counts(ids, successes, trials, n_prompts)
    max_history = check_int_scalar(max_history, "max_history", lo=2)
    if idx.size < 2:
        raise ValueError(f"need at least 2 history observations to fit, got {idx.size}")
    eps = _check_eps(eps)
    prior_logit = float(_check_prior_logit(np.array(check_finite_scalar(prior_logit, "prior_logit"))))
    max_iter = check_int_scalar(max_iter, "max_iter", lo=1)
    tol = check_finite_scalar(tol, "tol", lo=0.0, lo_open=True)
    # gpytorch's noise constraint is GreaterThan(1e-6): a start at or below it cannot be set
    initial_noise = check_finite_scalar(initial_noise, "initial_noise", lo=1e-6, lo_open=True)
    rng = check_rng(seed)
    if isinstance(noise, str):
        if noise not in ("learn", "binomial"):
            raise ValueError(f"noise must be 'learn', 'binomial' or a float >= 0, got {noise!r}")
        mode = noise
    else:
        fixed_noise = check_finite_scalar(noise, "noise", lo=0.0)
        mode = "fixed"

    idx, s, n = idx[-max_history:], s[-max_history:], n[-max_history:]
    x = x_all[idx]
    p = _clipped_rate(s, n, eps)
    y = _logit(p) - prior_logit
    if isinstance(initial_bandwidth, str):
        if initial_bandwidth != "median":
            raise ValueError(f"initial_bandwidth must be 'median' or a positive float, got {initial_bandwidth!r}")
        h0 = median_heuristic_bandwidth(x, seed=rng)
    else:
        h0 = check_finite_scalar(initial_bandwidth, "initial_bandwidth", lo=0.0, lo_open=True)
    with np.errstate(over="ignore", invalid="ignore"):
        z = (x - x.mean(axis=0)) / h0
        spread = float(np.max(np.einsum("ij,ij->i", z, z))) if z.size else 0.0
    if not np.isfinite(spread):
        raise ValueError(
            f"embeddings / initial_bandwidth overflow float64 (initial_bandwidth={h0!r}): the RBF "
            "kernel's squared distances are not representable; rescale the embeddings"
        )

    if mode == "binomial":
        noise_diag0 = 1.0 / (n * p * (1.0 - p))
    elif mode == "fixed":
        noise_diag0 = np.full(idx.size, fixed_noise)
    else:
        noise_diag0 = np.full(idx.size, initial_noise)
    lml0 = _log_marginal_likelihood(x, y, h0, noise_diag0)

    dtype = torch.float64
    train_x = torch.as_tensor(x, dtype=dtype)
    train_y = torch.as_tensor(y, dtype=dtype)
    if mode == "learn":
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=gpytorch.constraints.GreaterThan(1e-6)
        )
        likelihood.noise = initial_noise
    else:
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
            noise=torch.as_tensor(np.maximum(noise_diag0, 1e-10), dtype=dtype),
            learn_additional_noise=False,
        )
    model = _exact_gp_class(gpytorch)(train_x, train_y, likelihood).to(dtype)
    likelihood = likelihood.to(dtype)
    model.covar_module.lengthscale = h0
    model.train()
    likelihood.train()
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    params = [p_ for p_ in model.parameters() if p_.requires_grad]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, tolerance_change=tol,
                                  tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -mll(model(train_x), train_y)
        loss.backward()
        return loss

    failure = None
    try:
        with gpytorch.settings.cholesky_jitter(double_value=1e-10), gpytorch.settings.max_cholesky_size(10**6):
            optimizer.step(closure)
    except (RuntimeError, ValueError) as exc:  # gpytorch NanError / NotPSDError on extreme data
        failure = f"{type(exc).__name__}: {str(exc)[:200]}"
    n_iter = int(optimizer.state[optimizer._params[0]].get("n_iter", max_iter))

    h = float(model.covar_module.lengthscale.detach().reshape(-1)[0])
    if mode == "learn":
        fitted_noise: float | str = float(likelihood.noise.detach().reshape(-1)[0])
        noise_diag = np.full(idx.size, fitted_noise)
    elif mode == "binomial":
        fitted_noise, noise_diag = "binomial", noise_diag0
    else:
        fitted_noise, noise_diag = fixed_noise, noise_diag0
    lml = _log_marginal_likelihood(x, y, h, noise_diag) if 0.0 < h < math.inf else -math.inf

    if failure is not None or not (0.0 < h < math.inf and np.all(np.isfinite(noise_diag))):
        status = CERTIFICATE_FAILED
        message = (
            f"{MESSAGES[status]}: the marginal-likelihood fit broke down "
            f"({failure or f'bandwidth {h!r}, noise {fitted_noise!r}'}); the extreme data "
            "(embeddings, rates) need rescaling or noise > 0"
        )
    elif not math.isfinite(lml):
        status = CERTIFICATE_FAILED
        message = (
            f"{MESSAGES[status]}: K_h + noise is numerically singular at the fitted bandwidth "
            f"{h:.6g} (log marginal likelihood {lml:.6g}); repeated or near-duplicate prompts "
            f"need noise > 0"
        )
    elif not (lml >= lml0 - 1e-8 * max(1.0, abs(lml0))):
        status = CERTIFICATE_FAILED
        message = (
            f"{MESSAGES[status]}: fitted log marginal likelihood {lml:.6g} is below the "
            f"starting value {lml0:.6g}"
        )
    elif n_iter >= max_iter:
        status = ITERATION_LIMIT
        message = f"{MESSAGES[status]} ({max_iter}); the likelihood improved from {lml0:.6g} to {lml:.6g}"
    else:
        status = OPTIMAL
        message = f"converged in {n_iter} L-BFGS iterations; log marginal likelihood {lml0:.6g} -> {lml:.6g}"
    return GPHyperparameters(
        bandwidth=h,
        noise=fitted_noise,
        log_marginal_likelihood=lml,
        initial_log_marginal_likelihood=lml0,
        initial_bandwidth=h0,
        n_observations=int(idx.size),
        n_iter=n_iter,
        prior_logit=prior_logit,
        eps=eps,
        success=status == OPTIMAL,
        status=status,
        message=message,
    )


def _exact_gp_class(gpytorch: Any) -> type:
    """gpytorch ExactGP with zero mean and a unit-scale RBF kernel (VIP's kernel)."""

    class _ExactRBFGP(gpytorch.models.ExactGP):
        def __init__(self, train_x: Any, train_y: Any, likelihood: Any) -> None:
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.RBFKernel()

        def forward(self, x: Any) -> Any:
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    return _ExactRBFGP
