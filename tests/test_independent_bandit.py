"""VIP Prop 4.2/4.3 (binary) and E.1/E.2 (continuous) by Monte Carlo on
:class:`sim.IndependentScoreBandit`, where Assumption 4.1 holds exactly."""

import numpy as np
import pytest
from scipy import stats

from sim import IndependentScoreBandit
from solvers import grad_variance, grad_variance_continuous

P_GRID = np.array([0.1, 0.5, 0.9])
N_GRID = (2, 5, 12)
M = 20000  # Monte Carlo groups per cell


def _cells(reward, score_dist):
    """(p, n, estimator, v_hat, se) for every cell: v_hat = mean of G^2 (E G = 0 exactly under
    Assumption 4.1), se its standard error."""
    env = IndependentScoreBandit(np.repeat(P_GRID, M), mu_z=1.5, sigma_z=0.7, reward=reward,
                                 concentration=3.0, score_dist=score_dist)
    rng = np.random.default_rng(["binary", "continuous"].index(reward) * 10 + ["gamma", "normal"].index(score_dist))
    out = []
    for n in N_GRID:
        batch = env.rollout(np.arange(env.n_prompts), n, rng)
        for est in ("drgrpo", "rloo"):
            g2 = env.projected_gradient(batch, est).reshape(P_GRID.size, M) ** 2
            for i, p in enumerate(P_GRID):
                out.append((p, n, est, g2[i].mean(), g2[i].std(ddof=1) / np.sqrt(M)))
    return out


@pytest.mark.parametrize("reward, score_dist", [("binary", "gamma"), ("binary", "normal"), ("continuous", "gamma")])
def test_vip_variance_propositions_hold_exactly(reward, score_dist):
    """VIP Prop 4.2 (Dr. GRPO: 4 sigma_Z^2 p(1-p)(n-1)/n^2), Prop 4.3 (RLOO: 4 sigma_Z^2 p(1-p)/(n-1)),
    and for continuous rewards Prop E.1/E.2 with Var(R) = p(1-p)/(kappa+1). Each cell's Monte Carlo
    variance is within z_crit standard errors of the formula, z_crit Bonferroni-corrected over the
    cells at family-wise level 1e-4. The same check rejects a wrong formula (n in place of n - 1)."""
    cells = _cells(reward, score_dist)
    z_crit = stats.norm.isf(1e-4 / (2 * len(cells)))
    wrong_rejected = 0
    for p, n, est, v_hat, se in cells:
        if reward == "binary":
            exact = grad_variance(p, n, estimator=est, sigma2=0.7**2)
        else:
            exact = grad_variance_continuous(p * (1 - p) / 4.0, n, estimator=est, sigma2=0.7**2)
        assert abs(v_hat - exact) < z_crit * se, (p, n, est, v_hat, exact, se)
        wrong = grad_variance_continuous(1.0, n + 1, estimator=est, sigma2=1.0) / grad_variance_continuous(
            1.0, n, estimator=est, sigma2=1.0) * exact
        wrong_rejected += abs(v_hat - wrong) > z_crit * se
    assert wrong_rejected >= len(cells) // 2


def test_env_grad_variance_is_the_closed_form_and_scales_are_consistent():
    env = IndependentScoreBandit([0.2, 0.7], mu_z=[1.0, 3.0], sigma_z=[0.5, 2.0])
    np.testing.assert_allclose(env.grad_variance([0, 1], [4, 9], "rloo"),
                               grad_variance(np.array([0.2, 0.7]), np.array([4, 9]), estimator="rloo",
                                             sigma2=np.array([0.25, 4.0])))
    batch = env.rollout([0, 1, 1], [3, 2, 5], rng=0)
    assert set(np.unique(batch.rewards)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(batch.successes, (batch.rewards + 1) / 2)
    assert np.all(batch.scores >= 0)  # Gamma law: a norm is non-negative
    assert np.array_equal(batch.group_ids, [0, 0, 0, 1, 1, 2, 2, 2, 2, 2])


def test_score_law_moments():
    env = IndependentScoreBandit(np.full(1, 0.5), mu_z=2.0, sigma_z=0.5)
    z = env.rollout([0], 200000, rng=1).scores
    assert abs(z.mean() - 2.0) < 5 * 0.5 / np.sqrt(z.size)
    assert abs(z.var() - 0.25) < 5 * np.sqrt(2 * 0.25**2 * 3 / z.size)  # loose kurtosis bound


def test_bad_input():
    env = IndependentScoreBandit([0.5])
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
        IndependentScoreBandit([1.2])
    with pytest.raises(ValueError, match="mu_z must be > 0 for the Gamma score law"):
        IndependentScoreBandit([0.5], mu_z=0.0)
    with pytest.raises(ValueError, match="sigma_z must be non-negative"):
        IndependentScoreBandit([0.5], sigma_z=-1.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        env.rollout([0], 0, rng=0)
    with pytest.raises(ValueError, match="ids must be prompt indices"):
        env.rollout([1], 2, rng=0)
    with pytest.raises(ValueError, match="unknown estimator 'ppo'"):
        env.projected_gradient(env.rollout([0], 2, rng=0), "ppo")
    with pytest.raises(ValueError, match="n must be >= 2 for estimator 'rloo'"):
        env.grad_variance([0], 1, "rloo")
    with pytest.raises(ValueError, match="reward must be one of"):
        IndependentScoreBandit([0.5], reward="ternary")
