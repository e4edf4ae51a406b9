"""Tests of :class:`sim.SoftmaxRLVR`: exact quantities, estimators, kernels vs twins, determinism,
state round trip and input validation."""

import numpy as np
import pytest
from scipy import stats

from sim import DIFFICULTY_CLASSES, RolloutBatch, SoftmaxRLVR
from sim._softmax_kernels import (
    gradient_kernel,
    gradient_numpy,
    rollout_kernel,
    rollout_numpy,
)
from solvers import group_advantages


def small_env(**kw):
    base = dict(n_prompts=48, n_answers=6, dim=8, seed=3)
    base.update(kw)
    return SoftmaxRLVR(**base)


def _mean_matches(samples, expected, family_alpha=1e-6):
    """Per-coordinate z-tests of the Monte Carlo mean against ``expected`` with a Bonferroni
    correction: the tolerance is ``z_crit`` standard errors, ``z_crit`` from the family-wise level."""
    m, d = samples.shape
    se = samples.std(axis=0, ddof=1) / np.sqrt(m)
    z = (samples.mean(axis=0) - expected) / se
    z_crit = stats.norm.isf(family_alpha / (2 * d))
    return float(np.max(np.abs(z))), z_crit


# ----------------------------------------------------------------------------- ground truth
def test_initial_success_probabilities_lie_in_their_class_ranges():
    env = SoftmaxRLVR(n_prompts=2000, seed=0)
    p = env.success_prob(np.arange(env.n_prompts))
    for c, (name, cls) in enumerate(DIFFICULTY_CLASSES.items()):
        sel = env.difficulty == c
        assert sel.sum() > 100, name  # default mix: every class present
        assert np.all((p[sel] >= cls.p_low - 1e-12) & (p[sel] <= cls.p_high + 1e-12)), name
    # binary rewards: exactly one correct answer with reward 1, the rest 0
    assert np.array_equal(env.reward_table.sum(axis=1), np.ones(env.n_prompts))
    assert np.array_equal(env.reward_table.argmax(axis=1), env.correct)


def test_mix_selects_classes():
    env = SoftmaxRLVR(n_prompts=200, seed=1, mix={"hard": 1.0})
    assert np.all(env.difficulty == list(DIFFICULTY_CLASSES).index("hard"))


@pytest.mark.parametrize("reward", ["binary", "continuous"])
def test_true_gradient_matches_finite_differences(reward):
    """``true_gradient`` equals central differences of the exact ``J``. Central differences with
    step h have truncation error <= h^2/6 max|J'''| and rounding error ~ eps |J| / h; with h = 1e-5
    both are below 1e-9 here, so the tolerance is 1e-8."""
    env = small_env(reward=reward)
    rng = np.random.default_rng(5)
    env.theta = env.theta + 0.7 * rng.standard_normal(env.dim)  # away from theta_0
    ids = rng.integers(env.n_prompts, size=12)
    g = env.true_gradient(ids)
    theta, h = env.theta, 1e-5
    fd = np.empty(env.dim)
    for c in range(env.dim):
        e = np.zeros(env.dim)
        e[c] = h
        env.theta = theta + e
        up = env.objective(ids)
        env.theta = theta - e
        fd[c] = (up - env.objective(ids)) / (2 * h)
    np.testing.assert_allclose(g, fd, atol=1e-8, rtol=0)


@pytest.mark.parametrize("reward", ["binary", "continuous"])
def test_rloo_gradient_is_unbiased(reward):
    """E[g_RLOO] = grad J (the leave-one-out baseline is independent of the rollout it scores).
    Monte Carlo over 4000 batches with ragged group sizes 2..6; tolerance from the standard error."""
    env = small_env(reward=reward)
    rng = np.random.default_rng(11)
    ids = rng.integers(env.n_prompts, size=8)
    counts = rng.integers(2, 7, size=8)
    samples = np.array([env.gradient(env.rollout(ids, counts, rng), "rloo") for _ in range(4000)])
    worst, z_crit = _mean_matches(samples, env.true_gradient(ids))
    assert worst < z_crit


def test_drgrpo_mean_is_shrunk_by_n_minus_one_over_n_and_the_unbiasedness_check_detects_it():
    """E[g_DrGRPO] = (1/P) sum_i (n_i - 1)/n_i grad p_i; at n = 2 it is half of grad J, and the
    same Monte Carlo check as for RLOO rejects it (the unbiasedness test can fail)."""
    env = small_env()
    rng = np.random.default_rng(12)
    ids = rng.integers(env.n_prompts, size=6)
    env.theta = env.theta + 0.5 * rng.standard_normal(env.dim)
    samples = np.array([env.gradient(env.rollout(ids, 2, rng), "drgrpo") for _ in range(4000)])
    worst, z_crit = _mean_matches(samples, 0.5 * env.true_gradient(ids))
    assert worst < z_crit
    worst_biased, _ = _mean_matches(samples, env.true_gradient(ids))
    assert worst_biased > z_crit


def test_multipliers_scale_each_prompts_contribution():
    env = small_env()
    rng = np.random.default_rng(2)
    batch = env.rollout([0, 1, 2], [4, 3, 5], rng)
    m = np.array([2.0, 0.0, 0.5])
    parts = []
    for i in range(3):
        sel = batch.group_ids == i
        single = RolloutBatch(ids=batch.ids[i:i + 1], counts=batch.counts[i:i + 1],
                              group_ids=np.zeros(sel.sum(), dtype=np.int64), actions=batch.actions[sel],
                              rewards=batch.rewards[sel], probs=batch.probs[i:i + 1])
        parts.append(env.gradient(single, "grpo"))
    np.testing.assert_allclose(env.gradient(batch, "grpo", multipliers=m), (m[:, None] * parts).sum(0) / 3,
                               atol=1e-15)


def test_gradient_uses_the_exact_score_function():
    """g = (1/P) sum_i (1/n_i) sum_j A_ij (phi(q_i, a_ij) - E_pi phi(q_i, .)), written out by hand."""
    env = small_env()
    rng = np.random.default_rng(4)
    env.theta = env.theta + rng.standard_normal(env.dim)
    batch = env.rollout([5, 9, 5], [3, 1, 6], rng)
    adv = group_advantages(batch.rewards, kind="grpo", group_ids=batch.group_ids)
    score = env.scores(batch.ids)
    expect = np.zeros(env.dim)
    for j in range(batch.n_rollouts):
        i = batch.group_ids[j]
        expect += adv[j] * score[i, batch.actions[j]] / batch.counts[i]
    np.testing.assert_allclose(env.gradient(batch, "grpo"), expect / 3, atol=1e-14)


def test_group_of_one_contributes_nothing():
    env = small_env()
    batch = env.rollout([0, 1], 1, rng=0)
    assert np.all(env.gradient(batch, "rloo") == 0.0)


def test_exact_gradient_variance_matches_monte_carlo():
    """``gradient_variance`` (closed form, sim.group_variance) against the Monte Carlo variance of
    the per-prompt RLOO estimate; tolerance 5 standard errors of the variance estimate."""
    env = small_env()
    rng = np.random.default_rng(21)
    env.theta = env.theta + 0.5 * rng.standard_normal(env.dim)
    for q, n in ((3, 2), (7, 5)):
        g = np.array([env.gradient(env.rollout([q], n, rng), "rloo") for _ in range(20000)])
        dev2 = ((g - env.true_gradient([q])) ** 2).sum(axis=1)  # mean is known exactly
        v_hat, se = dev2.mean(), dev2.std(ddof=1) / np.sqrt(dev2.size)
        exact = env.gradient_variance([q], n, "rloo")[0]
        assert abs(v_hat - exact) < 5 * se, (q, n, v_hat, exact, se)


def test_projected_variance_reduces_to_vip_prop_4_3_shape():
    """Projected variance uses R = 2r - 1 and Z = ||score||: scaling check against a direct
    evaluation of sim.group_gradient_variance."""
    from sim import group_gradient_variance

    env = small_env()
    ids = np.arange(5)
    pi = env.policy(ids)
    z = np.linalg.norm(env.scores(ids), axis=2)
    expect = group_gradient_variance(pi, 2 * env.reward_table[ids] - 1, z, 4, estimator="drgrpo")
    np.testing.assert_allclose(env.gradient_variance(ids, 4, "drgrpo", projected=True), expect)
    mean, var = env.score_norm_moments(ids)
    np.testing.assert_allclose(mean, (pi * z).sum(1))
    np.testing.assert_allclose(var, (pi * z * z).sum(1) - mean**2, atol=1e-14)


def test_pass_at_k_and_reward_variance():
    env = small_env(reward="continuous")
    ids = np.arange(10)
    pi = env.policy(ids)
    p_full = pi[np.arange(10), env.correct[ids]]
    np.testing.assert_allclose(env.pass_at_k(ids, 4), 1 - (1 - p_full) ** 4)
    r = env.reward_table[ids]
    mean = (pi * r).sum(1)
    np.testing.assert_allclose(env.success_prob(ids), mean)
    np.testing.assert_allclose(env.reward_variance(ids), (pi * r * r).sum(1) - mean**2, atol=1e-15)
    batch = env.rollout(ids, 50, rng=0)
    assert batch.rewards.min() >= 0 and batch.rewards.max() <= 1


def test_rollout_frequencies_follow_the_policy():
    """Sampled answer frequencies against pi (chi-square goodness of fit at level 1e-6)."""
    env = small_env()
    env.theta = env.theta + np.random.default_rng(0).standard_normal(env.dim)
    batch = env.rollout([4], 60000, rng=1)
    counts = np.bincount(batch.actions, minlength=env.n_answers)
    pi = env.policy([4])[0]
    chi2 = ((counts - 60000 * pi) ** 2 / (60000 * pi)).sum()
    assert chi2 < stats.chi2.isf(1e-6, env.n_answers - 1)
    assert np.array_equal(batch.rewards, (batch.actions == env.correct[4]).astype(float))


def test_difficulty_drifts_when_theta_learns():
    """Ascent on the exact J raises the mean success probability and changes prompts' classes of
    empirical difficulty (the drift the predictors must track)."""
    env = SoftmaxRLVR(n_prompts=256, seed=0)
    ids = np.arange(256)
    p0 = env.success_prob(ids)
    for _ in range(30):
        env.step(env.true_gradient(ids), lr=2.0)
    p1 = env.success_prob(ids)
    assert p1.mean() > p0.mean() + 0.02
    assert np.mean(np.abs(p1 - p0) > 0.05) > 0.2


# ----------------------------------------------------------------------------- kernels vs twins
@pytest.mark.parametrize("k, d", [(2, 2), (6, 5), (16, 32)])
def test_kernels_match_numpy_twins(k, d):
    env = SoftmaxRLVR(n_prompts=30, n_answers=k, dim=d, seed=k + d, reward="continuous")
    rng = np.random.default_rng(d)
    env.theta = rng.standard_normal(d)
    ids = rng.integers(30, size=17)
    counts = rng.integers(1, 9, size=17)
    u = rng.random(counts.sum())
    probs = np.empty((17, k))
    actions = np.empty(counts.sum(), dtype=np.int64)
    rewards = np.empty(counts.sum())
    rollout_kernel(env.features, env.theta, ids, counts, u, env.reward_table, probs, actions, rewards)
    probs2, actions2, rewards2 = rollout_numpy(env.features, env.theta, ids, counts, u, env.reward_table)
    np.testing.assert_allclose(probs, probs2, rtol=1e-12, atol=1e-15)
    assert np.array_equal(actions, actions2) and np.array_equal(rewards, rewards2)
    gid = np.repeat(np.arange(17), counts)
    w = rng.standard_normal(gid.size)
    out = np.empty(d)
    gradient_kernel(env.features, ids, probs, gid, actions, w, out)
    np.testing.assert_allclose(out, gradient_numpy(env.features, ids, probs, gid, actions, w), rtol=1e-12,
                               atol=1e-13)


# ----------------------------------------------------------------------------- determinism, state
def test_same_seed_same_task_and_same_rollouts():
    a, b = SoftmaxRLVR(n_prompts=40, seed=9), SoftmaxRLVR(n_prompts=40, seed=9)
    assert np.array_equal(a.features, b.features) and np.array_equal(a.embeddings, b.embeddings)
    ra, rb = a.rollout(np.arange(40), 3, rng=5), b.rollout(np.arange(40), 3, rng=5)
    assert np.array_equal(ra.actions, rb.actions)
    assert not np.array_equal(SoftmaxRLVR(n_prompts=40, seed=10).features, a.features)


def test_state_dict_round_trip_resumes_bit_identically():
    def run(env, rng, steps):
        out = []
        for _ in range(steps):
            batch = env.rollout(np.arange(10), 4, rng)
            g = env.gradient(batch, "rloo")
            env.step(g, 0.3)
            out.append(env.theta)
        return out

    env = small_env()
    rng = np.random.default_rng(0)
    run(env, rng, 3)
    state, rng_state = env.state_dict(), rng.bit_generator.state
    ref = run(env, rng, 4)
    env2 = small_env()
    env2.load_state_dict(state)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = rng_state
    assert all(np.array_equal(x, y) for x, y in zip(ref, run(env2, rng2, 4)))
    with pytest.raises(ValueError, match="different task"):
        small_env(seed=4).load_state_dict(state)


# ----------------------------------------------------------------------------- bad input
def test_bad_input_names_the_parameter():
    env = small_env()
    batch = env.rollout([0, 1], 2, rng=0)
    with pytest.raises(ValueError, match="unknown estimator 'ppo'"):
        env.gradient(batch, "ppo")
    with pytest.raises(ValueError, match="n must be >= 1"):
        env.rollout([0, 1], [2, 0], rng=0)
    with pytest.raises(ValueError, match="n must be a scalar or have one count per id"):
        env.rollout([0, 1], [2, 2, 2], rng=0)
    with pytest.raises(ValueError, match=r"ids must be prompt indices in \[0, 48\), got 48"):
        env.rollout([0, 48], 2, rng=0)
    with pytest.raises(ValueError, match="ids must be prompt indices"):
        env.success_prob([-1])
    with pytest.raises(ValueError, match="multipliers must have one value per prompt"):
        env.gradient(batch, "rloo", multipliers=[1.0])
    with pytest.raises(ValueError, match="multipliers must be finite"):
        env.gradient(batch, "rloo", multipliers=[1.0, np.nan])
    with pytest.raises(ValueError, match="direction must have shape"):
        env.step(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match="theta must have shape"):
        env.theta = np.zeros(3)
    with pytest.raises(TypeError, match="batch must be a RolloutBatch"):
        env.gradient({"rewards": []}, "rloo")
    with pytest.raises(ValueError, match="batch does not belong"):
        SoftmaxRLVR(n_prompts=48, n_answers=7, dim=8, seed=3).gradient(batch, "rloo")
    with pytest.raises(ValueError, match="n_answers must be >= 2"):
        SoftmaxRLVR(n_answers=1)
    with pytest.raises(ValueError, match="mix has unknown difficulty classes"):
        SoftmaxRLVR(mix={"trivial": 1.0})
    with pytest.raises(ValueError, match="reward must be one of"):
        SoftmaxRLVR(reward="dense")
    with pytest.raises(ValueError, match="unknown estimator 'grpo' for the exact variance"):
        env.gradient_variance([0], 4, "grpo")
    with pytest.raises(ValueError, match="n must be >= 2 for estimator 'rloo'"):
        env.gradient_variance([0], 1, "rloo")
    with pytest.raises(TypeError, match="rng must be None, an int or a numpy.random.Generator"):
        env.rollout([0], 2, rng="seed")
    theta = env.theta
    with pytest.raises(ValueError):
        env.step(np.full(env.dim, np.inf), 0.1)
    assert np.array_equal(env.theta, theta)  # a rejected step leaves the state unchanged


def test_topic_clusters_embedding_layout():
    """``embedding="topic-clusters"``: prompts of a topic share one difficulty class and an embedding
    centroid; the initial success logit is far from linear in the embedding (it is piecewise
    constant over 64 clusters in 32 dimensions), while in the default layout it is nearly linear.
    The default layout's task is unchanged by the option's existence (same draws, same fingerprint)."""
    import numpy as np

    from sim import EMBEDDINGS, SoftmaxRLVR

    assert EMBEDDINGS == ("features", "topic-clusters")

    def linear_r2(env):
        p = env.success_prob(np.arange(env.n_prompts))
        logit = np.log(p) - np.log1p(-p)
        x = np.c_[np.ones(env.n_prompts), env.embeddings]
        coef, *_ = np.linalg.lstsq(x, logit, rcond=None)
        return 1.0 - np.var(logit - x @ coef) / np.var(logit)

    clustered = SoftmaxRLVR(n_prompts=2048, dim=32, n_topics=64, seed=0, embedding="topic-clusters")
    default = SoftmaxRLVR(n_prompts=2048, dim=32, n_topics=64, seed=0)
    for t in range(64):
        members = clustered.topic == t
        if members.any():
            assert np.unique(clustered.difficulty[members]).size == 1
    # clusters: within-topic spread of the embeddings is the noise, between topics the centroids
    centroids = np.array([clustered.embeddings[clustered.topic == t].mean(axis=0) for t in np.unique(clustered.topic)])
    within = np.mean([clustered.embeddings[clustered.topic == t].std(axis=0).mean() for t in np.unique(clustered.topic)])
    assert within == pytest.approx(0.05, rel=0.2) and centroids.std(axis=0).mean() > 2 * within
    assert linear_r2(default) > 0.9 and linear_r2(clustered) < 0.6
    assert clustered.config["embedding"] == "topic-clusters" and default.config["embedding"] == "features"
    # policies are built the same way: features are finite and the initial p lies in its class range
    assert np.isfinite(clustered.features).all()
    with pytest.raises(ValueError, match="embedding must be one of"):
        SoftmaxRLVR(n_prompts=8, dim=4, seed=0, embedding="sentence")
    # the default layout draws exactly what it drew before the option existed (pinned task hashes)
    import hashlib

    env = SoftmaxRLVR(n_prompts=256, n_answers=8, dim=16, seed=7)
    assert env.state_dict()["fingerprint"] == "b5cd6947b772a911"
    assert hashlib.sha256(env.embeddings.tobytes()).hexdigest()[:16] == "01f03de3e99c2aaf"
