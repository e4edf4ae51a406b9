"""DRRO Sec. 2-4 statements that no solver implements directly, checked on random finite instances:
Prop 2.1 (mean-reward reduction), Cor. 2.2 (promptwise Wasserstein ambiguity = l1 ball of mean
rewards), Prop 3.1 (promptwise decomposition, by exhaustive enumeration of adversary vertices and
benchmark policies) and Prop 4.5 (Donsker-Varadhan control of reward misspecification)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from solvers import waterfill, worst_case_regret

seeds = st.integers(0, 2**32 - 1)


@given(seeds, st.integers(1, 3), st.integers(2, 4), st.integers(1, 5))
@settings(max_examples=30)
def test_prop_2_1_mean_reward_reduction(seed, n_prompts, n_responses, n_rewards):
    """DRRO Prop 2.1 (eq. 2.1): for a distribution P over finitely many reward functions,
    ``J_P(pi) = E_{x, y ~ pi, R ~ P}[R(x, y)]`` equals ``J_{rbar_P}(pi)`` with the mean reward
    ``rbar_P = E_P R``; the first side is computed by enumerating (R, x, y) jointly."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(n_rewards))  # P over reward functions R_1..R_m
    rewards = rng.normal(size=(n_rewards, n_prompts, n_responses))
    d = rng.dirichlet(np.ones(n_prompts))
    pi = rng.dirichlet(np.ones(n_responses), size=n_prompts)
    joint = sum(weights[m] * d[x] * pi[x, y] * rewards[m, x, y]
                for m in range(n_rewards) for x in range(n_prompts) for y in range(n_responses))
    mean_reward = np.tensordot(weights, rewards, axes=1)
    assert joint == pytest.approx(float(d @ np.sum(pi * mean_reward, axis=1)), rel=1e-12, abs=1e-12)


@given(seeds, st.integers(2, 5), st.integers(1, 6), st.floats(0.0, 3.0))
@settings(max_examples=40)
def test_cor_2_2_wasserstein_ball_is_the_l1_ball_of_mean_rewards(seed, n, m, delta):
    """DRRO Cor. 2.2: with the nominal point mass ``P0 = delta_rhat``, ``W1(P, P0; x) = E_P ||R(x) -
    rhat(x)||_1`` (the only coupling), so (=>) any P within budget delta has mean s with ``||s -
    rhat||_1 <= W1 <= delta`` (Jensen), and (<=) any s in the l1 ball is the mean of ``P = delta_s``
    with ``W1 = ||s - rhat||_1``. Checked on random finite mixtures P (m atoms)."""
    rng = np.random.default_rng(seed)
    r_hat = rng.normal(size=n)

    def w1_to_nominal(weights, atoms):  # the only coupling with a point mass
        return float(weights @ np.abs(atoms - r_hat).sum(axis=1))

    atoms = r_hat + rng.normal(size=(m, n)) * rng.exponential(1.0)
    w = rng.dirichlet(np.ones(m))
    mean = w @ atoms
    assert np.abs(mean - r_hat).sum() <= w1_to_nominal(w, atoms) + 1e-12
    if w1_to_nominal(w, atoms) <= delta:
        assert np.abs(mean - r_hat).sum() <= delta + 1e-12
    # (<=): a mean s in the ball is the mean of the point mass at s, whose W1 is ||s - rhat||_1
    direction = rng.normal(size=n)
    s = r_hat + direction * (rng.uniform() * delta / np.abs(direction).sum())
    assert w1_to_nominal(np.ones(1), s[None]) == pytest.approx(np.abs(s - r_hat).sum(), rel=1e-15)
    assert w1_to_nominal(np.ones(1), s[None]) <= delta + 1e-12


def _global_worst_regret(pi, r_hat, d, delta):
    """max over the product ambiguity set of [max_beta J_s(beta) - J_s(pi)] by brute force: the
    objective is convex in the perturbation, so each prompt's l1 ball contributes its 2n vertices
    +-delta e_k, and the benchmark ranges over every deterministic product policy."""
    n_prompts, n = r_hat.shape
    vertices = [sign * delta * np.eye(n)[k] for k in range(n) for sign in (1.0, -1.0)]
    best = -np.inf
    for deltas in itertools.product(vertices, repeat=n_prompts):
        s = r_hat + np.array(deltas)
        value_pi = float(d @ np.sum(pi * s, axis=1))
        for choice in itertools.product(range(n), repeat=n_prompts):
            best = max(best, float(d @ s[np.arange(n_prompts), list(choice)]) - value_pi)
    return best


@given(seeds, st.integers(1, 2), st.integers(2, 3), st.floats(0.05, 3.0))
@settings(max_examples=15)
def test_prop_3_1_promptwise_decomposition(seed, n_prompts, n_responses, delta):
    """DRRO Prop 3.1 (full product policy class): the global worst-case regret of any product policy,
    found by exhaustive enumeration of product adversaries and benchmarks, equals the
    D-average of the promptwise worst-case regrets (``solvers.worst_case_regret``, Prop 3.3); and
    the product of promptwise water-filling policies (``solvers.waterfill``) is globally optimal:
    no random product policy has a smaller global worst-case regret."""
    rng = np.random.default_rng(seed)
    d = rng.dirichlet(np.ones(n_prompts))
    r_hat = rng.normal(size=(n_prompts, n_responses))
    pi = rng.dirichlet(np.ones(n_responses), size=n_prompts)
    promptwise = np.array([worst_case_regret(pi[x], r_hat[x], delta).value for x in range(n_prompts)])
    assert _global_worst_regret(pi, r_hat, d, delta) == pytest.approx(float(d @ promptwise), abs=1e-10)
    star = waterfill(r_hat, np.full(n_prompts, delta))
    optimum = _global_worst_regret(star, r_hat, d, delta)
    for _ in range(5):
        other = rng.dirichlet(np.full(n_responses, 0.7), size=n_prompts)
        assert _global_worst_regret(other, r_hat, d, delta) >= optimum - 1e-10


@given(seeds, st.integers(2, 8), st.floats(0.01, 20.0))
@settings(max_examples=40)
def test_prop_4_5_donsker_varadhan_bound(seed, n, lam):
    """DRRO Prop 4.5 (eq. 4.16): ``E_{pi_theta}[h] <= (1/lambda)[KL(pi_theta || pi_0) + log
    E_{pi_0} e^{lambda h}]`` for the misspecification ``h = |rhat - r*|`` on random finite
    instances, with equality at the Gibbs tilt ``pi_theta ∝ pi_0 e^{lambda h}`` (the variational
    formula's maximiser)."""
    rng = np.random.default_rng(seed)
    pi0 = rng.dirichlet(np.ones(n))
    h = np.abs(rng.normal(size=n) - rng.normal(size=n))
    log_mgf = logsumexp(lam * h, b=pi0)

    def rhs(pi):
        kl = float(np.sum(pi * (np.log(pi) - np.log(pi0))))
        return (kl + log_mgf) / lam

    for _ in range(10):
        pi = rng.dirichlet(np.full(n, 0.5)) * (1 - 1e-12) + 1e-12 / n
        assert pi @ h <= rhs(pi) + 1e-10 * (1 + abs(rhs(pi)))
    tilt = np.exp(np.log(pi0) + lam * h - logsumexp(np.log(pi0) + lam * h))
    assert tilt @ h == pytest.approx(rhs(tilt), rel=1e-9, abs=1e-9)
