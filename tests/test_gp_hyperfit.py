"""Tests of bandits.gp_hyperfit (gpytorch marginal-likelihood fit; skipped without gpytorch)."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest

from bandits import GPSuccessPredictor, fit_gp_hyperparameters
from bandits.gp_hyperfit import _log_marginal_likelihood


def test_missing_extra_gives_clear_import_error(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name in ("gpytorch", "torch") or name.startswith(("gpytorch.", "torch.")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=r"pip install robust-rollouts\[gp\]"):
        fit_gp_hyperparameters(np.ones((3, 2)), [0, 1], [1, 1], [2, 2])


def _history(seed=0, n_prompts=200, m=160):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_prompts, 3))
    ids = rng.integers(0, n_prompts, m)
    p = 1 / (1 + np.exp(-2.0 * np.sin(1.5 * x[ids, 0])))
    n = np.full(m, 8)
    return x, ids, rng.binomial(n, p), n


@pytest.mark.parametrize("noise", [0.25, "binomial"])
def test_gpytorch_predictive_mean_matches_ours_at_same_hyperparameters(noise):
    """Exact GP posterior (gpytorch ExactGP set up here, not the module's class: constant mean
    fixed at the prior logit, RBF lengthscale h, Gaussian noise sigma^2 or the fixed binomial
    variance 1 / (n p (1 - p))) equals GPSuccessPredictor after one update with the same noise:
    the mean of every prompt, and the latent variance against gpytorch's f-posterior variance."""
    gpytorch = pytest.importorskip("gpytorch")
    torch = pytest.importorskip("torch")

    class RBFGP(gpytorch.models.ExactGP):
        def __init__(self, tx, ty, lik):
            super().__init__(tx, ty, lik)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.RBFKernel()

        def forward(self, z):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    ids = rng.choice(120, 30, replace=False)
    n = rng.integers(2, 10, 30)
    s = rng.binomial(n, 0.5)
    h, prior = 1.7, -0.4
    ours = GPSuccessPredictor(x, bandwidth=h, noise=noise, jitter=0.0, prior_logit=prior,
                              eps=0.01, dtype=np.float64)
    ours.update(ids, s, n)

    p = np.clip(s / n, 0.01, 0.99)
    y = torch.as_tensor(np.log(p / (1 - p)), dtype=torch.float64)
    if noise == "binomial":
        lik = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(
            noise=torch.as_tensor(1.0 / (n * p * (1 - p)), dtype=torch.float64))
    else:
        lik = gpytorch.likelihoods.GaussianLikelihood().double()
        lik.noise = noise
    model = RBFGP(torch.as_tensor(x[ids]), y, lik).double()
    model.mean_module.constant = prior
    model.covar_module.lengthscale = h
    model.eval()
    lik.eval()
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False), gpytorch.settings.max_cholesky_size(10**6):
        post = model(torch.as_tensor(x))
        mean, var = post.mean.numpy(), post.variance.numpy()
    np.testing.assert_allclose(ours.mean_logit, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.predict_latent_var(np.arange(120)), var, rtol=0, atol=1e-6)


@pytest.mark.parametrize("noise", ["learn", "binomial", 0.3])
def test_fit_improves_likelihood_and_is_a_local_maximum(noise):
    """Type-II ML: the returned log marginal likelihood (recomputed in NumPy) is >= the starting
    one, and perturbing the bandwidth (or learned noise) by 5% does not increase it."""
    pytest.importorskip("gpytorch")
    x, ids, s, n = _history()
    res = fit_gp_hyperparameters(x, ids, s, n, noise=noise, seed=0, max_iter=100)
    assert res.success and res.status == 0, res.message
    assert res.log_marginal_likelihood >= res.initial_log_marginal_likelihood
    assert res.bandwidth > 0 and math.isfinite(res.bandwidth)
    assert res.n_observations == ids.size
    p = np.clip(s / n, 0.01, 0.99)
    y = np.log(p / (1 - p))
    xs = x[ids]
    if noise == "binomial":
        diag = 1 / (n * p * (1 - p))
    else:
        diag = np.full(ids.size, float(res.noise))
    best = _log_marginal_likelihood(xs, y, res.bandwidth, diag)
    assert best == pytest.approx(res.log_marginal_likelihood, rel=1e-12)
    for f in (0.95, 1.05):
        assert _log_marginal_likelihood(xs, y, res.bandwidth * f, diag) <= best + 1e-6
        if noise == "learn":
            assert _log_marginal_likelihood(xs, y, res.bandwidth, diag * f) <= best + 1e-6
    if noise == 0.3:
        assert res.noise == 0.3
    gp = res.make_predictor(x, seed=0)
    assert isinstance(gp, GPSuccessPredictor)
    assert gp.bandwidth == res.bandwidth and gp.noise == res.noise


def test_log_marginal_likelihood_matches_scipy_multivariate_normal():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(3)
    x = rng.normal(size=(15, 2))
    y = rng.normal(size=15)
    d2 = np.sum((x[:, None] - x[None]) ** 2, axis=-1)
    cov = np.exp(-d2 / (2 * 0.8**2)) + 0.1 * np.eye(15)
    want = multivariate_normal(np.zeros(15), cov).logpdf(y)
    assert _log_marginal_likelihood(x, y, 0.8, np.full(15, 0.1)) == pytest.approx(want, rel=1e-10)


def test_fit_uses_recent_history_and_validates():
    pytest.importorskip("gpytorch")
    x, ids, s, n = _history(m=100)
    res = fit_gp_hyperparameters(x, ids, s, n, max_history=40, seed=0)
    assert res.n_observations == 40
    with pytest.raises(ValueError, match="noise must be 'learn', 'binomial' or a float"):
        fit_gp_hyperparameters(x, ids, s, n, noise="auto")
    with pytest.raises(ValueError, match="need at least 2 history observations"):
        fit_gp_hyperparameters(x, ids[:1], s[:1], n[:1])
    with pytest.raises(ValueError, match="max_history must be >= 2"):
        fit_gp_hyperparameters(x, ids, s, n, max_history=1)


@pytest.mark.filterwarnings("ignore:Very small noise values detected")
def test_noise_free_fit_on_repeated_prompts_reports_singular_kernel():
    """noise=0 with a prompt observed twice makes K_h singular: the fit must not claim success,
    and the message says why (it used to read '-inf is below the starting value -inf')."""
    pytest.importorskip("gpytorch")
    x, ids, s, n = _history()
    assert np.unique(ids).size < ids.size  # the history repeats prompts
    res = fit_gp_hyperparameters(x, ids, s, n, noise=0.0, seed=0, max_iter=20)
    assert not res.success and res.status != 0
    assert "numerically singular" in res.message and "noise > 0" in res.message


def test_fit_validates_seed_on_a_short_history():
    """A bad seed used to be accepted silently when the history is short enough for the median
    heuristic to use every pair (no random draw)."""
    pytest.importorskip("gpytorch")
    x, ids, s, n = _history(m=40)
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
        fit_gp_hyperparameters(x, ids, s, n, seed="x")
    with pytest.raises(TypeError, match="seed must be None"):
        fit_gp_hyperparameters(x, ids, s, n, seed="x", initial_bandwidth=1.0)
