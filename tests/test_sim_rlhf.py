"""Tests for ``sim.rlhf.FiniteResponseRLHF`` (the gold/proxy RLHF simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from sim import DEFAULT_ERROR_SCALE, PAPER_AGREEMENT, FiniteResponseRLHF


@pytest.fixture(scope="module")
def env():
    return FiniteResponseRLHF(n_train=40, n_eval=20, n_responses=6, dim=3, seed=3)


def test_same_seed_same_tables_and_different_seed_differs():
    a = FiniteResponseRLHF(n_train=10, n_eval=5, seed=7)
    b = FiniteResponseRLHF(n_train=10, n_eval=5, seed=7)
    c = FiniteResponseRLHF(n_train=10, n_eval=5, seed=8)
    for name in ("features", "ref_logprobs", "gold", "proxy"):
        np.testing.assert_array_equal(getattr(a.train, name), getattr(b.train, name))
        np.testing.assert_array_equal(getattr(a.eval, name), getattr(b.eval, name))
    assert not np.array_equal(a.train.gold, c.train.gold)


def test_generative_model_as_documented(env):
    """gold = phi_0 + ref_quality xi + gold_noise nu; proxy - gold = error_scale (K pi_0)^(-1/2)(phi_1 + eps):
    the error divided by the rarity factor is linear in phi_1 with unit slope (plus independent noise)."""
    big = FiniteResponseRLHF(n_train=4000, n_eval=1, n_responses=8, dim=3, seed=1)
    t = big.train
    rarity = np.exp(-0.5 * (t.ref_logprobs + np.log(8)))
    scaled = ((t.proxy - t.gold) / (big.error_scale * rarity)).ravel()
    phi1 = t.features[..., 1].ravel()
    slope = np.polyfit(phi1, scaled, 1)[0]
    assert slope == pytest.approx(1.0, abs=0.03)
    assert np.var(scaled - phi1) == pytest.approx(1.0, abs=0.05)
    # the error is larger where the reference rarely goes
    err = np.abs(t.proxy - t.gold).ravel()
    assert np.corrcoef(err, -t.ref_logprobs.ravel())[0, 1] > 0.2
    # gold: unit-slope on phi_0, and (via xi) positively related to the reference log-probability
    assert np.polyfit(t.features[..., 0].ravel(), t.gold.ravel(), 1)[0] == pytest.approx(1.0, abs=0.03)
    assert np.corrcoef(t.gold.ravel(), (t.ref_logprobs - t.ref_logprobs.mean(1, keepdims=True)).ravel())[0, 1] > 0.1


def test_theta_zero_is_the_reference(env):
    lp = env.logprobs(np.zeros(env.dim))
    np.testing.assert_allclose(lp, env.train.ref_logprobs, atol=1e-12)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, atol=1e-12)
    assert env.expected(np.zeros(env.dim))["kl"] == pytest.approx(0.0, abs=1e-12)


def test_expected_matches_brute_force(env):
    theta = np.array([0.5, -1.0, 0.3])
    out = env.expected(theta, split="eval")
    gold = proxy = kl = 0.0
    for x in range(env.n_eval):
        logits = env.eval.ref_logprobs[x] + env.eval.features[x] @ theta
        p = np.exp(logits - logits.max())
        p /= p.sum()
        gold += p @ env.eval.gold[x]
        proxy += p @ env.eval.proxy[x]
        kl += p @ (np.log(p) - env.eval.ref_logprobs[x])
    assert out["gold"] == pytest.approx(gold / env.n_eval, rel=1e-12)
    assert out["proxy"] == pytest.approx(proxy / env.n_eval, rel=1e-12)
    assert out["kl"] == pytest.approx(kl / env.n_eval, rel=1e-10)


def test_score_and_kl_gradient_match_finite_differences(env):
    theta = np.array([0.2, 0.4, -0.3])
    ids = np.array([0, 5, 7])
    resp = np.array([[0, 3], [5, 5], [1, 2]])
    score = env.score(theta, ids, resp)
    h = 1e-6
    for j in range(env.dim):
        e = np.zeros(env.dim)
        e[j] = h
        lp_plus = np.take_along_axis(env.logprobs(theta + e, ids), resp, axis=1)
        lp_minus = np.take_along_axis(env.logprobs(theta - e, ids), resp, axis=1)
        np.testing.assert_allclose(score[:, :, j], (lp_plus - lp_minus) / (2 * h), atol=1e-7)

    def mean_kl(th):
        lp = env.logprobs(th, ids)
        return float((np.exp(lp) * (lp - env.train.ref_logprobs[ids])).sum(1).mean())

    fd = [(mean_kl(theta + h * e) - mean_kl(theta - h * e)) / (2 * h) for e in np.eye(env.dim)]
    np.testing.assert_allclose(env.kl_gradient(theta, ids), fd, atol=1e-7)


def test_sampling_follows_the_policy(env):
    theta = np.array([1.0, 0.0, -0.5])
    ids = np.zeros(4000, dtype=np.int64)  # one prompt, many groups
    resp, lp = env.sample(theta, ids, 5, np.random.default_rng(0))
    counts = np.bincount(resp.ravel(), minlength=env.n_responses) / resp.size
    p = np.exp(lp[0])
    se = np.sqrt(p * (1 - p) / resp.size)
    assert np.all(np.abs(counts - p) <= 5 * se + 1e-12)
    r1, _ = env.sample(theta, ids[:10], 5, np.random.default_rng(3))
    r2, _ = env.sample(theta, ids[:10], 5, np.random.default_rng(3))
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(env.rewards(ids[:10], r1, kind="gold"), env.train.gold[0][r1])


def test_pairwise_agreement_matches_enumeration(env):
    total = 0.0
    for x in range(env.n_train):
        p0 = np.exp(env.train.ref_logprobs[x])
        num = den = 0.0
        for a in range(env.n_responses):
            for b in range(env.n_responses):
                if a != b:
                    w = p0[a] * p0[b]
                    den += w
                    same = np.sign(env.train.proxy[x, a] - env.train.proxy[x, b]) == np.sign(
                        env.train.gold[x, a] - env.train.gold[x, b])
                    num += w * same
        total += num / den
    assert env.pairwise_agreement() == pytest.approx(total / env.n_train, rel=1e-12)


def test_default_error_scale_gives_the_papers_agreement():
    """DEFAULT_ERROR_SCALE is calibrated to the DRRO paper's 85.7 % proxy-gold pairwise agreement."""
    big = FiniteResponseRLHF(n_train=6000, n_eval=1, seed=11)
    assert big.error_scale == DEFAULT_ERROR_SCALE
    assert big.pairwise_agreement() == pytest.approx(PAPER_AGREEMENT, abs=0.005)


def test_pilot_discrepancy_is_the_reference_expectation(env):
    p0 = np.exp(env.train.ref_logprobs)
    ref = np.mean([p0[x] @ np.abs(env.train.proxy[x] - env.train.gold[x]) for x in range(env.n_train)])
    assert env.pilot_discrepancy() == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda e: e.logprobs(np.zeros(2)), ValueError, r"theta must have shape \(3,\)"),
        (lambda e: e.expected(np.zeros(3), split="test"), ValueError, "split must be 'train' or 'eval'"),
        (lambda e: e.logprobs(np.zeros(3), [40]), ValueError, "prompt_ids must be < 40"),
        (lambda e: e.rewards([0], [[0]], kind="true"), ValueError, "kind must be 'proxy' or 'gold'"),
        (lambda e: e.sample(np.zeros(3), [0], 0, 1), ValueError, "group_size must be >= 1"),
        (lambda e: e.score(np.zeros(3), [0], [[6]]), ValueError, "responses must have 1 rows"),
        (lambda e: FiniteResponseRLHF(n_responses=1), ValueError, "n_responses must be >= 2"),
        (lambda e: FiniteResponseRLHF(error_scale=-1.0), ValueError, "error_scale must be >= 0"),
    ],
)
def test_bad_input(env, call, exc, match):
    with pytest.raises(exc, match=match):
        call(env)
