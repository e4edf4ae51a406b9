"""Tests of :func:`sim.group_gradient_variance` against brute-force enumeration and VIP Prop 4.2/4.3."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim import group_gradient_variance
from solvers import grad_variance_continuous


def brute_force(pi, r, s, n, estimator):
    """tr Var(g) by enumerating all K^n outcomes of n i.i.d. rollouts (obviously correct, slow)."""
    k = pi.shape[0]
    values, weights = [], []
    for outcome in itertools.product(range(k), repeat=n):
        o = np.array(outcome)
        rr = r[o]
        if estimator == "rloo":
            adv = rr - (rr.sum() - rr) / (n - 1)
        else:
            adv = rr - rr.mean()
        values.append((adv[:, None] * s[o]).sum(axis=0) / n)
        weights.append(np.prod(pi[o]))
    values, weights = np.array(values), np.array(weights)
    mean = weights @ values
    return float(weights @ ((values - mean) ** 2).sum(axis=1))


@given(
    seed=st.integers(0, 2**31 - 1),
    k=st.integers(2, 4),
    n=st.integers(1, 4),
    m=st.integers(1, 3),
    estimator=st.sampled_from(["rloo", "drgrpo"]),
)
def test_closed_form_equals_enumeration(seed, k, n, m, estimator):
    """Hoeffding's U-statistic variance of the RLOO / Dr. GRPO group estimate (sim.group_variance
    docstring) equals the variance over all K^n outcomes, for any joint law of (reward, score)."""
    if estimator == "rloo" and n < 2:
        n = 2
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k))
    r = rng.normal(size=k)
    s = rng.normal(size=(k, m))
    got = group_gradient_variance(pi[None], r[None], s[None], n, estimator=estimator)[0]
    assert got == pytest.approx(brute_force(pi, r, s, n, estimator), rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("estimator", ["rloo", "drgrpo"])
@pytest.mark.parametrize("n", [2, 3, 8, 33])
def test_independent_reward_and_score_give_vip_props(estimator, n):
    """With (reward, score) independent (product law), the exact variance is VIP Prop 4.3 / 4.2
    (E.2 / E.1): sigma_Z^2 Var(R) / (n - 1) and sigma_Z^2 Var(R) (n - 1) / n^2."""
    rng = np.random.default_rng(n)
    pr, r = rng.dirichlet(np.ones(3)), rng.normal(size=3)
    pz, z = rng.dirichlet(np.ones(4)), rng.gamma(2.0, size=4)
    pi = np.outer(pr, pz).ravel()  # outcome (a, b): reward r_a, score z_b
    rr = np.repeat(r, 4)
    zz = np.tile(z, 3)
    var_r = pr @ r**2 - (pr @ r) ** 2
    var_z = pz @ z**2 - (pz @ z) ** 2
    got = group_gradient_variance(pi[None], rr[None], zz[None], n, estimator=estimator)[0]
    assert got == pytest.approx(grad_variance_continuous(var_r, n, estimator=estimator, sigma2=var_z), rel=1e-12)


def test_drgrpo_group_of_one_has_zero_variance_and_bad_input():
    pi = np.array([[0.5, 0.5]])
    assert group_gradient_variance(pi, [[0.0, 1.0]], [[1.0, 2.0]], 1, estimator="drgrpo")[0] == 0.0
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        group_gradient_variance([[0.5, 0.4]], [[0.0, 1.0]], [[1.0, 2.0]], 2, estimator="rloo")
    with pytest.raises(ValueError, match="rewards must have the shape of probs"):
        group_gradient_variance(pi, [[0.0, 1.0, 1.0]], [[1.0, 2.0]], 2, estimator="rloo")
    with pytest.raises(ValueError, match="scores must have shape"):
        group_gradient_variance(pi, [[0.0, 1.0]], [[1.0]], 2, estimator="rloo")
    with pytest.raises(ValueError, match="unknown estimator"):
        group_gradient_variance(pi, [[0.0, 1.0]], [[1.0, 2.0]], 2, estimator="ppo")
