"""Tests for ``sim.preferences`` (linear Bradley-Terry mixtures with preference shift)."""

from __future__ import annotations

import numpy as np
import pytest

from sim import LinearBTPreferences, mixture_divergence
from solvers import dro_rebel_weights


@pytest.fixture(scope="module")
def prefs():
    return LinearBTPreferences(dim=5, mixture=(0.6, 0.3, 0.1), noise=0.5, seed=4)


def test_components_and_shifted_mixtures(prefs):
    np.testing.assert_allclose(np.linalg.norm(prefs.components, axis=1), 1.0)
    np.testing.assert_allclose(prefs.shifted(0.0), prefs.mixture)
    np.testing.assert_allclose(prefs.shifted(1.0), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(prefs.shifted(0.5), [0.3, 0.15, 0.55])
    np.testing.assert_allclose(prefs.theta(), prefs.mixture @ prefs.components)
    np.testing.assert_allclose(prefs.theta(prefs.shifted(1.0)), prefs.components[2])


def test_least_squares_on_the_pairs_estimates_the_mixture_parameter(prefs):
    """E[r_a - r_b | phi] = theta_P . (phi_a - phi_b): OLS converges to theta_P (error ~ d / n)."""
    fa, fb, ra, rb, groups = prefs.sample_pairs(40000, np.random.default_rng(0))
    w = np.linalg.lstsq(fa - fb, ra - rb, rcond=None)[0]
    assert np.sum((w - prefs.theta()) ** 2) < 5e-3
    freq = np.bincount(groups, minlength=3) / groups.size
    np.testing.assert_allclose(freq, prefs.mixture, atol=0.01)
    # one group alone: its rewards follow its own objective
    g = groups == 2
    w2 = np.linalg.lstsq(fa[g] - fb[g], ra[g] - rb[g], rcond=None)[0]
    assert np.sum((w2 - prefs.components[2]) ** 2) < 0.02


def test_preference_accuracy_against_sampled_labels(prefs):
    rng = np.random.default_rng(1)
    diffs = rng.normal(size=(50000, 5)) * np.sqrt(2)
    q = prefs.shifted(0.5)
    w = prefs.theta() + 0.3 * rng.normal(size=5)
    margin = diffs @ prefs.theta(q)
    labels = rng.random(diffs.shape[0]) < 1 / (1 + np.exp(-margin))  # a preferred
    mc = np.mean((diffs @ w > 0) == labels)
    exact = prefs.preference_accuracy(w, diffs, q)
    assert exact == pytest.approx(mc, abs=4 * np.sqrt(0.25 / diffs.shape[0]))
    assert prefs.preference_accuracy(-w, diffs, q) == pytest.approx(1 - exact, abs=1e-12)
    bayes = prefs.preference_accuracy(prefs.theta(q), diffs, q)
    assert bayes >= exact
    assert prefs.preference_accuracy(np.zeros(5), diffs, q) == 0.5


def test_regret_is_zero_at_the_target_and_matches_brute_force(prefs):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(30, 4, 5))
    q = prefs.shifted(1.0)
    assert prefs.regret(prefs.theta(q), feats, 2.0, q) == pytest.approx(0.0, abs=1e-12)
    w = rng.normal(size=5)
    eta = 2.0
    r = feats @ prefs.theta(q)

    def objective(v):
        out = []
        for x in range(30):
            p = np.exp(eta * feats[x] @ v)
            p /= p.sum()
            out.append(p @ r[x] - np.sum(p * np.log(p * 4)) / eta)
        return np.array(out)

    ref = np.mean(objective(prefs.theta(q)) - objective(w))
    assert prefs.regret(w, feats, eta, q) == pytest.approx(ref, rel=1e-10)
    assert ref > 0


def test_mixture_divergence_is_the_radius_of_the_pair_reweighting(prefs):
    """Reweighting pairs of objective j by Q_j/P_j (pairs in exact proportion P) gives weights whose
    KL / chi-square divergence from uniform equals mixture_divergence(Q, P)."""
    p = np.array([0.6, 0.3, 0.1])
    q = prefs.shifted(0.5)
    groups = np.repeat([0, 1, 2], [60, 30, 10])
    weights = (q / p)[groups] / groups.size
    n = groups.size
    kl = float(np.sum(weights * np.log(weights * n)))
    chi2 = 0.5 * float(np.sum((weights * n - 1) ** 2) / n)
    assert mixture_divergence(q, p, "kl") == pytest.approx(kl, rel=1e-12)
    assert mixture_divergence(q, p, "chi2") == pytest.approx(chi2, rel=1e-12)
    # so the ball of that radius contains the reweighting: the worst case is at least its loss
    losses = np.where(groups == 2, 1.0, 0.0)
    for kind, rho in (("kl", kl), ("chi2", chi2)):
        res = dro_rebel_weights(losses, kind, rho, full_output=True)
        assert res.value >= weights @ losses - 1e-9


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: LinearBTPreferences(mixture=(0.5, 0.6)), "mixture must sum to 1"),
        (lambda: LinearBTPreferences(mixture=(1.0, 0.0)), "mixture must be positive"),
        (lambda: LinearBTPreferences(noise=-1.0), "noise must be >= 0"),
        (lambda: LinearBTPreferences().shifted(1.5), "s must be <= 1"),
        (lambda: LinearBTPreferences().theta([0.5, 0.5]), "mixture must have 3 weights"),
        (lambda: LinearBTPreferences().sample_pairs(0, 1), "n must be >= 1"),
        (lambda: mixture_divergence([0.5, 0.5], [0.5, 0.5], "tv"), "kind must be 'kl' or 'chi2'"),
        (lambda: mixture_divergence([1.0], [0.5, 0.5], "kl"), "q and p must have the same shape"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
