"""Tests of bandits.gp_predictor.GPSuccessPredictor (VIP Sec. 5.1, Alg. 1).

References used here are independent of the implementation: a dense N x N kernel built from
explicit pairwise differences, block Gaussian conditioning with numpy.linalg, and a literal
transcription of Alg. 1 with rewards in {-1, 1}.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import pdist

from bandits import GPSuccessPredictor, MovingAveragePredictor, RidgePredictor
from bandits.gp_predictor import median_heuristic_bandwidth


# ----------------------------------------------------------------------------- references
def dense_kernel(x: np.ndarray, h: float) -> np.ndarray:
    diff = x[:, None, :] - x[None, :, :]
    return np.exp(-np.sum(diff * diff, axis=-1) / (2.0 * h * h))


def logit(p):
    return np.log(p / (1.0 - p))


def dense_update(m, K, ids, s, n, *, eps, noise, jitter):
    """Block Gaussian conditioning on the full kernel (distinct ids); Sigma stays K (Alg. 1)."""
    g = logit(np.clip(s / n, eps, 1 - eps))
    if noise == "binomial":
        p = np.clip(s / n, eps, 1 - eps)
        r = 1.0 / (n * p * (1 - p))
    else:
        r = np.full(len(ids), float(noise))
    A = K[np.ix_(ids, ids)] + np.diag(r + jitter)
    alpha = np.linalg.solve(A, g - m[ids])
    new = m + K[:, ids] @ alpha
    if noise == 0.0:
        new[ids] = g
    return new


def random_instance(seed, n_prompts=60, dim=5, batch=12, steps=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_prompts, dim))
    batches = []
    for _ in range(steps):
        ids = rng.choice(n_prompts, size=batch, replace=False)
        n = rng.integers(1, 10, size=batch)
        s = rng.binomial(n, rng.uniform(size=batch))
        batches.append((ids, s, n))
    return x, batches


# ----------------------------------------------------------------------------- dense reference
@settings(max_examples=15)
@given(
    seed=st.integers(0, 10_000),
    noise=st.sampled_from([0.0, 0.3, "binomial"]),
    jitter=st.sampled_from([1e-6, 1e-2]),
    prior=st.floats(-2.0, 2.0),
)
def test_recursive_update_equals_dense_block_conditioning(seed, noise, jitter, prior):
    """VIP Sec. 5.1 / Alg. 1 line 8 (and its noisy generalisation): after each step the mean of
    every prompt equals dense block Gaussian conditioning on the full N x N kernel, with the
    covariance reset to the prior kernel between steps."""
    x, batches = random_instance(seed)
    gp = GPSuccessPredictor(x, noise=noise, jitter=jitter, prior_logit=prior, dtype=np.float64,
                            chunk_rows=17, seed=seed)
    K = dense_kernel(x, gp.bandwidth)
    m = np.full(x.shape[0], prior)
    for ids, s, n in batches:
        m = dense_update(m, K, ids, s, n, eps=gp.eps, noise=noise, jitter=jitter)
        gp.update(ids, s, n)
        np.testing.assert_allclose(gp.mean_logit, m, rtol=1e-7, atol=1e-7)
    assert gp.step == len(batches)


def test_float32_kernel_columns_agree_with_float64():
    x, batches = random_instance(3, n_prompts=200, dim=16, batch=30)
    a = GPSuccessPredictor(x, noise="binomial", seed=0, dtype=np.float32, chunk_rows=64)
    b = GPSuccessPredictor(x, noise="binomial", seed=0, dtype=np.float64)
    for ids, s, n in batches:
        a.update(ids, s, n)
        b.update(ids, s, n)
    np.testing.assert_allclose(a.mean_logit, b.mean_logit, atol=2e-4)


def test_direct_kernel_path_used_for_large_norms_matches_dense():
    """A tiny bandwidth makes max |z|^2 large: the overflow-safe direct path is used and must
    still equal the dense reference."""
    x, batches = random_instance(5, n_prompts=50, dim=3, batch=10)
    x = x * 10.0
    gp = GPSuccessPredictor(x, bandwidth=1.0, noise=0.2, jitter=1e-6, dtype=np.float64, chunk_rows=7)
    assert not gp._fast_ok
    K = dense_kernel(x, 1.0)
    m = np.zeros(50)
    for ids, s, n in batches:
        m = dense_update(m, K, ids, s, n, eps=gp.eps, noise=0.2, jitter=1e-6)
        gp.update(ids, s, n)
    np.testing.assert_allclose(gp.mean_logit, m, rtol=1e-7, atol=1e-9)


def test_chunk_size_does_not_change_result():
    x, batches = random_instance(11, n_prompts=90)
    outs = []
    for chunk in (1, 13, 90, 1000):
        gp = GPSuccessPredictor(x, noise=0.1, dtype=np.float64, chunk_rows=chunk, seed=1)
        for ids, s, n in batches:
            gp.update(ids, s, n)
        outs.append(gp.mean_logit.copy())
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- Alg. 1 literally
def algorithm1(m_t, Sigma, batch, rewards, eps):
    """VIP Algorithm 1, transcribed line by line (rewards[q] is an array in {-1, 1})."""
    g_obs = []
    for q in batch:  # lines 1-5
        R_bar = np.mean(rewards[q])
        g_obs.append(logit(np.clip((R_bar + 1) / 2, eps, 1 - eps)))
    g_obs = np.array(g_obs)  # line 6
    Bc = np.setdiff1d(np.arange(len(m_t)), batch)  # line 7
    S_cB = Sigma[np.ix_(Bc, batch)]
    S_BB = Sigma[np.ix_(batch, batch)]
    m_star = m_t[Bc] + S_cB @ np.linalg.inv(S_BB) @ (g_obs - m_t[batch])  # line 8
    Sigma_star = Sigma[np.ix_(Bc, Bc)] - S_cB @ np.linalg.inv(S_BB) @ S_cB.T  # line 9
    m_next = np.empty_like(m_t)
    pos = {q: i for i, q in enumerate(batch)}
    pos_c = {q: i for i, q in enumerate(Bc)}
    for q in range(len(m_t)):  # lines 10-12
        m_next[q] = g_obs[pos[q]] if q in pos else m_star[pos_c[q]]
    p_next = 1.0 / (1.0 + np.exp(-m_next))  # line 13
    return p_next, m_next, g_obs, Sigma_star


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paper_mode_reproduces_algorithm1_line_by_line(seed):
    """noise=0 (paper): observed prompts take exactly the observed logit, the others follow
    Alg. 1 line 8 with the fixed prior kernel Sigma (jitter 0; well-conditioned instance)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 6)) * 0.6
    gp = GPSuccessPredictor(x, noise=0.0, jitter=0.0, eps=0.05, dtype=np.float64, seed=seed)
    Sigma = dense_kernel(x, gp.bandwidth)
    m = np.zeros(40)
    for _ in range(3):
        batch = np.sort(rng.choice(40, size=8, replace=False))
        n = rng.integers(2, 9, size=8)
        rewards = {q: rng.choice([-1, 1], size=k) for q, k in zip(batch, n)}
        s = np.array([np.sum(rewards[q] == 1) for q in batch])
        p_ref, m, g_obs, Sigma_star = algorithm1(m, Sigma, batch, rewards, gp.eps)
        gp.update(batch, s, n)
        # observed prompts: exactly the observed logit of clip(s/n) (line 11) ...
        ours_g = np.log(np.clip(s / n, gp.eps, 1 - gp.eps)) - np.log1p(-np.clip(s / n, gp.eps, 1 - gp.eps))
        np.testing.assert_array_equal(gp.predict_logit(batch), ours_g)
        # ... which is Alg. 1's (R_bar + 1) / 2 form up to round-off
        np.testing.assert_allclose(ours_g, g_obs, rtol=0, atol=1e-12)
        np.testing.assert_allclose(gp.mean_logit, m, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(gp.predict(np.arange(40)), np.clip(p_ref, gp.eps, 1 - gp.eps),
                                   rtol=1e-8, atol=1e-10)
        # one-step posterior variance = diag(Sigma*) of line 9 for the unobserved prompts
        Bc = np.setdiff1d(np.arange(40), batch)
        np.testing.assert_allclose(gp.predict_latent_var(Bc), np.diag(Sigma_star), atol=1e-8)


# ----------------------------------------------------------------------------- bandwidth
def test_median_heuristic_exact_on_small_sets_and_seeded_subsample_on_large():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4))  # 11,175 pairs <= 20,000: all pairs
    assert median_heuristic_bandwidth(x) == pytest.approx(np.median(pdist(x)), rel=1e-12)
    gp = GPSuccessPredictor(x)
    assert gp.bandwidth == pytest.approx(np.median(pdist(x)), rel=1e-12)
    big = rng.normal(size=(3000, 4))  # 4.5 M pairs: subsample
    h1 = median_heuristic_bandwidth(big, n_pairs=20_000, seed=7)
    h2 = median_heuristic_bandwidth(big, n_pairs=20_000, seed=7)
    h3 = median_heuristic_bandwidth(big, n_pairs=20_000, seed=8)
    assert h1 == h2 and h1 != h3
    # median of 20k sampled pairs is within 2% of the full median (|error| ~ 1/sqrt(20k) scale)
    assert h1 == pytest.approx(np.median(pdist(big)), rel=0.02)


def test_median_heuristic_ignores_duplicates_and_all_equal():
    x = np.zeros((10, 3))
    assert median_heuristic_bandwidth(x) == 1.0
    x[5:] = 1.0  # 20 zero distances of 45 pairs (the median would be 0), 25 of sqrt(3)
    assert median_heuristic_bandwidth(x) == pytest.approx(np.sqrt(3.0))


# ----------------------------------------------------------------------------- stability
def test_unseen_ids_get_prior_and_never_nan():
    x = np.random.default_rng(0).normal(size=(30, 3))
    prior = np.linspace(-2, 2, 30)
    gp = GPSuccessPredictor(x, prior_logit=prior, seed=0)
    np.testing.assert_allclose(gp.predict_logit(np.arange(30)), prior)
    np.testing.assert_allclose(gp.predict(np.arange(30)), 1 / (1 + np.exp(-prior)))
    np.testing.assert_array_equal(gp.predict_latent_var([0, 1]), [1.0, 1.0])
    assert gp.predict([]).shape == (0,)
    assert gp.predict(4).shape == (1,)


@pytest.mark.parametrize("noise", [0.0, "binomial", 0.5])
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_all_success_or_failure_batches_are_finite(noise, outcome):
    x = np.random.default_rng(1).normal(size=(80, 4))
    gp = GPSuccessPredictor(x, noise=noise, seed=0)
    ids = np.arange(0, 80, 4)
    n = np.full(ids.size, 8)
    s = n if outcome == "success" else np.zeros_like(n)
    for _ in range(3):
        gp.update(ids, s, n)
    p = gp.predict(np.arange(80))
    assert np.all(np.isfinite(p)) and np.all((p >= gp.eps) & (p <= 1 - gp.eps))
    assert np.all(np.isfinite(gp.predict_var(np.arange(80))))
    if noise == 0.0:
        want = 1 - gp.eps if outcome == "success" else gp.eps
        np.testing.assert_allclose(gp.predict(ids), want, rtol=1e-12)


def test_exact_duplicate_embeddings_with_conflicting_outcomes():
    """Two prompts with identical embeddings in one batch: K_BB is singular. With jitter 0 the
    Cholesky retry raises the jitter (recorded), and nothing is NaN; the duplicates' common
    neighbours see the average of the two logits."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20, 3))
    x[1] = x[0]
    gp = GPSuccessPredictor(x, jitter=0.0, dtype=np.float64, seed=0)
    gp.update([0, 1], [8, 0], [8, 8])
    assert gp.last_jitter > 0.0
    m = gp.mean_logit
    assert np.all(np.isfinite(m))
    # a prompt equidistant to both duplicates sees their mean logit, 0, times its kernel weight
    assert np.all(np.abs(m[2:]) < 1e-3)


def test_near_duplicates_paper_mode_unstable_noise_or_jitter_stable():
    """Near-duplicate embeddings (distance 1e-4) with conflicting outcomes: the paper's tiny
    jitter interpolates with huge weights (|m| far beyond the observed logits elsewhere, still
    finite); binomial noise or a larger jitter keep every mean within the observed range."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3))
    x[1] = x[0] + 1e-4 * rng.normal(size=3)
    ids, s, n = [0, 1, 10, 20], [8, 0, 4, 6], [8, 8, 8, 8]
    g_max = float(np.log(0.99 / 0.01))
    paper = GPSuccessPredictor(x, noise=0.0, jitter=1e-12, dtype=np.float64, seed=0)
    paper.update(ids, s, n)
    assert np.all(np.isfinite(paper.mean_logit))
    assert np.max(np.abs(paper.mean_logit)) > 10 * g_max
    for kwargs in ({"noise": "binomial"}, {"jitter": 1e-2}):
        gp = GPSuccessPredictor(x, dtype=np.float64, seed=0, **kwargs)
        gp.update(ids, s, n)
        assert np.max(np.abs(gp.mean_logit)) <= g_max
        assert np.all(np.isfinite(gp.predict(np.arange(60))))


def test_repeated_ids_in_a_batch_are_pooled():
    x = np.random.default_rng(4).normal(size=(25, 3))
    a = GPSuccessPredictor(x, noise="binomial", seed=0, dtype=np.float64)
    b = GPSuccessPredictor(x, noise="binomial", seed=0, dtype=np.float64)
    a.update([3, 7, 3], [1, 2, 2], [4, 4, 4])
    b.update([7, 3], [2, 3], [4, 8])
    np.testing.assert_allclose(a.mean_logit, b.mean_logit, rtol=1e-13, atol=1e-13)


def test_predict_var_is_delta_method_of_latent_var():
    x = np.random.default_rng(5).normal(size=(30, 3))
    gp = GPSuccessPredictor(x, noise=0.2, seed=0)
    gp.update([0, 1, 2], [1, 5, 7], [8, 8, 8])
    ids = np.arange(30)
    p = 1 / (1 + np.exp(-gp.predict_logit(ids)))
    np.testing.assert_allclose(gp.predict_var(ids), (p * (1 - p)) ** 2 * gp.predict_latent_var(ids))
    # one-step posterior variance vs. dense reference diag(K - K_:B (K_BB + R)^-1 K_B:)
    K = dense_kernel(x, gp.bandwidth)
    B = [0, 1, 2]
    A = K[np.ix_(B, B)] + np.eye(3) * (0.2 + gp.jitter)
    ref = 1.0 - np.einsum("ij,ji->i", K[:, B], np.linalg.solve(A, K[B, :]))
    np.testing.assert_allclose(gp.predict_latent_var(ids), ref, atol=1e-10)


# ----------------------------------------------------------------------------- validation
def test_validation_errors():
    x = np.random.default_rng(0).normal(size=(10, 2))
    gp = GPSuccessPredictor(x, seed=0)
    with pytest.raises(ValueError, match=r"ids must be prompt indices in \[0, 10\), got 10"):
        gp.predict([1, 10])
    with pytest.raises(ValueError, match="got -1"):
        gp.update([-1], [0], [1])
    with pytest.raises(ValueError, match="ids must contain integers"):
        gp.predict([0.5])
    with pytest.raises(TypeError, match="ids must be an array of integers"):
        gp.predict("abc")
    with pytest.raises(ValueError, match="successes must be <= trials"):
        gp.update([0], [3], [2])
    with pytest.raises(ValueError, match="trials must be >= 1"):
        gp.update([0], [0], [0])
    with pytest.raises(ValueError, match="successes must be non-negative"):
        gp.update([0], [-1], [2])
    with pytest.raises(ValueError, match="same shape"):
        gp.update([0, 1], [1], [2, 2])
    with pytest.raises(ValueError, match="ids must have at least 1"):
        gp.update([], [], [])
    with pytest.raises(ValueError, match="noise must be a float >= 0 or 'binomial'"):
        GPSuccessPredictor(x, noise="poisson")
    with pytest.raises(ValueError, match="noise must be >= 0"):
        GPSuccessPredictor(x, noise=-1.0)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        GPSuccessPredictor(x, bandwidth=0.0)
    with pytest.raises(ValueError, match="bandwidth must be 'median'"):
        GPSuccessPredictor(x, bandwidth="mean")
    with pytest.raises(ValueError, match="eps must be < 0.5"):
        GPSuccessPredictor(x, eps=0.5)
    with pytest.raises(ValueError, match="embeddings must be finite"):
        GPSuccessPredictor(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"embeddings must be finite, got nan at index \(1, 0\)"):
        GPSuccessPredictor(np.array([[0, 1], [np.nan, 2]], dtype=np.float32))
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        GPSuccessPredictor(np.ones(5))
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        GPSuccessPredictor(np.ones(5, dtype=np.float32))
    with pytest.raises(TypeError, match="embeddings must be an array of real numbers"):
        GPSuccessPredictor("abc")
    with pytest.raises(ValueError, match="prior_logit must be a scalar or have length 10"):
        GPSuccessPredictor(x, prior_logit=np.zeros(3))
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        GPSuccessPredictor(x, dtype=np.float16)
    assert np.all(gp.mean_logit == 0.0)  # failed updates left the state untouched
    with pytest.raises(ValueError, match="read-only"):
        gp.mean_logit[0] = 1.0


# ----------------------------------------------------------------------------- VIP Fig. 3 claim
def drifting_instance(seed=0, n_prompts=400, dim=16, batch=40, steps=40, rollouts=8):
    """Clustered embeddings; true logit 2 sin(x.u0 + 0.15 t) + cos(x.u1 - 0.075 t): smooth in
    the embedding and drifting over steps; each step rolls out a random batch."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n_prompts)] + 0.3 * rng.normal(size=(n_prompts, dim))
    u = rng.normal(size=(2, dim)) / np.sqrt(dim)

    def true_p(t):
        z = 2 * np.sin(x @ u[0] + 0.15 * t) + np.cos(x @ u[1] - 0.075 * t)
        return 1 / (1 + np.exp(-z))

    stream = []
    for t in range(steps):
        p = true_p(t)
        ids = rng.choice(n_prompts, size=batch, replace=False)
        stream.append((ids, rng.binomial(rollouts, p[ids]), np.full(batch, rollouts), p[ids]))
    return x, stream


def _next_batch_mae(models, stream, burn_in=5):
    """MAE of each model's prediction for the next batch, made before that batch is observed."""
    err = {k: [] for k in models}
    for t, (ids, s, n, p_true) in enumerate(stream):
        for k, mdl in models.items():
            if t >= burn_in:
                err[k].append(np.mean(np.abs(mdl.predict(ids) - p_true)))
            mdl.update(ids, s, n)
    return {k: float(np.mean(v)) for k, v in err.items()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_gp_beats_moving_average_and_ridge_on_drifting_probabilities(seed):
    """VIP Fig. 3: on a drifting, embedding-smooth success-probability sequence, the GP's MAE of
    next-batch predictions (steps 5..39) is lower than both baselines of Fig. 3, the moving
    average and ridge regression (window 1024 each, as in VIP): paper mode by >= 0.05, binomial-
    noise mode by >= 0.15. Every seed tried (0..7) passes; measured over seeds 0..4: GP paper
    0.19-0.21, GP binomial 0.08-0.13, moving average 0.29-0.31, ridge 0.29-0.32 (smallest
    margins 0.09 and 0.18). The generator was not tuned per seed; the control test below shows
    the ordering flips when the embeddings carry no information."""
    x, stream = drifting_instance(seed=seed)
    mae = _next_batch_mae(
        {
            "gp_paper": GPSuccessPredictor(x, seed=seed, dtype=np.float64),
            "gp_binomial": GPSuccessPredictor(x, seed=seed, noise="binomial", dtype=np.float64),
            "ma": MovingAveragePredictor(x.shape[0], window=1024),
            "ridge": RidgePredictor(x, window=1024),
        },
        stream,
    )
    best_baseline = min(mae["ma"], mae["ridge"])
    assert mae["gp_paper"] <= best_baseline - 0.05, mae
    assert mae["gp_binomial"] <= best_baseline - 0.15, mae


def test_control_uninformative_embeddings_moving_average_wins():
    """Control for the Fig. 3 test (so it is not a comparison the GP wins by construction):
    stationary success probabilities drawn independently of random embeddings. The per-prompt
    moving average pools all of a prompt's observations, while the GP (paper mode) keeps only
    the latest noisy logit of an observed prompt and its neighbours carry no information:
    here the moving average is better by >= 0.1 (measured, seeds 0..4: MA 0.11, GP 0.29-0.31)."""
    rng = np.random.default_rng(0)
    n_prompts, batch, rollouts = 400, 40, 8
    x = rng.normal(size=(n_prompts, 16))
    p = rng.uniform(size=n_prompts)
    stream = []
    for _ in range(40):
        ids = rng.choice(n_prompts, size=batch, replace=False)
        stream.append((ids, rng.binomial(rollouts, p[ids]), np.full(batch, rollouts), p[ids]))
    mae = _next_batch_mae(
        {"gp_paper": GPSuccessPredictor(x, seed=0, dtype=np.float64),
         "ma": MovingAveragePredictor(n_prompts, window=1024)},
        stream,
    )
    assert mae["ma"] <= mae["gp_paper"] - 0.1, mae


def test_update_memory_is_o_n_d_never_n_by_n():
    """The update allocates O(chunk_rows |B| + N) temporaries, never an N x N (or N x |B|)
    matrix: at N = 4000, |B| = 200, chunk_rows = 256 the tracemalloc peak of one update stays
    below 2 MiB, while N x N float64 would be 122 MiB and N x |B| float32 3 MiB."""
    import tracemalloc

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 8)).astype(np.float32)
    gp = GPSuccessPredictor(x, seed=0, chunk_rows=256)
    ids = rng.choice(4000, 200, replace=False)
    s, n = rng.binomial(8, 0.5, 200), np.full(200, 8)
    gp.update(ids, s, n)  # warm-up (first-call allocations of scipy/numpy)
    tracemalloc.start()
    try:
        gp.update(ids, s, n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, peak / 2**20


# ----------------------------------------------------------------------------- extreme scales
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_prior_logit_update_is_finite_and_matches_dense(dtype):
    """A finite but huge prior mean (1e39 > float32 max) makes the interpolation weights alpha
    ~ -1e39: the float32 kernel columns must not overflow (the state used to become -inf after
    a FloatingPointError, now a ValueError). The update is exact Gaussian conditioning (dense reference)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 4))
    gp = GPSuccessPredictor(x, prior_logit=1e39, seed=0, dtype=dtype)
    ids, s, n = np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([4, 4, 4])
    gp.update(ids, s, n)
    ref = dense_update(np.full(30, 1e39), dense_kernel(x, gp.bandwidth), ids, s, n,
                       eps=gp.eps, noise=0.0, jitter=gp.jitter)
    assert np.all(np.isfinite(gp.mean_logit))
    np.testing.assert_allclose(gp.mean_logit, ref, rtol=1e-4 if dtype == np.float32 else 1e-9)


def test_failed_update_leaves_state_unchanged(monkeypatch):
    """If the kernel-column product comes out non-finite, update raises and neither the mean,
    the step count nor the variance state changes (no partially applied update)."""
    x = np.random.default_rng(7).normal(size=(40, 3))
    gp = GPSuccessPredictor(x, seed=0, noise=0.1)
    gp.update([0, 1], [3, 5], [8, 8])
    before = (gp.mean_logit.copy(), gp.step, gp.last_jitter, gp.predict_latent_var(np.arange(40)))

    def overflowing(cols, alpha):  # what an overflowing product would hand back
        out = np.zeros(40)
        out[20:] = np.inf
        return out

    monkeypatch.setattr(gp, "_kernel_columns_times", overflowing)
    with pytest.raises(ValueError, match="non-finite mean"):  # extreme inputs: the documented type
        gp.update([5, 6, 7], [1, 2, 3], [4, 4, 4])
    np.testing.assert_array_equal(gp.mean_logit, before[0])
    assert (gp.step, gp.last_jitter) == before[1:3]
    np.testing.assert_array_equal(gp.predict_latent_var(np.arange(40)), before[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bandwidth_too_small_for_dtype_is_rejected(dtype):
    """A bandwidth so small that (x - mean) / (sqrt(2) h) overflows used to be accepted
    (inf embeddings, NaN kernel, a Cholesky failure quoting a jitter of 1e3)."""
    x = np.random.default_rng(8).normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"bandwidth 1e-300 is too small for these embeddings"):
        GPSuccessPredictor(x, bandwidth=1e-300, dtype=dtype)
    # small but representable: every prompt is its own island, the update is still exact
    gp = GPSuccessPredictor(x, bandwidth=1e-3, dtype=dtype)
    gp.update([0, 1], [8, 0], [8, 8])
    np.testing.assert_allclose(gp.mean_logit[2:], 0.0, atol=1e-12)


def test_jitter_retry_reports_the_largest_jitter_tried(monkeypatch):
    """The retry raises the jitter tenfold up to 8 times (1e-6 -> 1e2); the error names the
    last jitter actually tried, and the failed update leaves the state unchanged."""
    x = np.random.default_rng(9).normal(size=(10, 3))
    gp = GPSuccessPredictor(x, seed=0)
    tried = []

    def failing_cholesky(a, **kwargs):
        tried.append(float(a[0, 0]) - 1.0)
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(np.linalg, "cholesky", failing_cholesky)
    with pytest.raises(np.linalg.LinAlgError, match=r"even with jitter 100\b"):
        gp.update([0, 1], [3, 4], [8, 8])
    np.testing.assert_allclose(tried, 1e-6 * 10.0 ** np.arange(9), rtol=1e-9)
    assert gp.step == 0 and np.all(gp.mean_logit == 0.0)


def test_latent_variance_chunked_over_queries_matches_dense():
    """predict_latent_var works in chunk_rows blocks of queries (|B| x chunk_rows memory):
    same values as diag(K - K_:B (K_BB + R + jitter)^-1 K_B:) from the dense kernel."""
    x = np.random.default_rng(10).normal(size=(50, 3))
    gp = GPSuccessPredictor(x, noise="binomial", seed=0, chunk_rows=7, dtype=np.float64)
    B, s, n = np.array([3, 9, 20, 41]), np.array([0, 2, 5, 8]), np.array([8, 8, 8, 8])
    gp.update(B, s, n)
    K = dense_kernel(x, gp.bandwidth)
    p = np.clip(s / n, gp.eps, 1 - gp.eps)
    A = K[np.ix_(B, B)] + np.diag(1 / (n * p * (1 - p)) + gp.jitter)
    ref = 1.0 - np.einsum("ij,ji->i", K[:, B], np.linalg.solve(A, K[B, :]))
    ids = np.r_[np.arange(50), [3, 3]]  # all prompts, then repeats
    np.testing.assert_allclose(gp.predict_latent_var(ids), ref[ids], atol=1e-10)


@pytest.mark.parametrize("bandwidth, fast", [(3.0, False), ("median", True)])
def test_float32_both_kernel_paths_match_dense_float64_reference(bandwidth, fast):
    """Default float32 kernel columns, on the fast (factored exp) path and on the overflow-safe
    direct path, against the float64 dense reference: max error 5e-5 in the logit (measured
    6e-6 and 1e-6; the docstring promises ~1e-5 relative)."""
    x, batches = random_instance(5, n_prompts=50, dim=3, batch=10)
    x = x * 10.0
    gp = GPSuccessPredictor(x, bandwidth=bandwidth, noise=0.2, dtype=np.float32, chunk_rows=7, seed=0)
    assert gp._fast_ok is fast
    K = dense_kernel(x, gp.bandwidth)
    m = np.zeros(50)
    for ids, s, n in batches:
        m = dense_update(m, K, ids, s, n, eps=gp.eps, noise=0.2, jitter=gp.jitter)
        gp.update(ids, s, n)
        np.testing.assert_allclose(gp.mean_logit, m, rtol=0, atol=5e-5)


def test_construction_temporaries_are_bounded_chunks():
    """Construction (validation, median heuristic on 20,000 pairs, centring and scaling) works
    in fixed-size chunks: at N = 20,000, d = 384 (float32) its temporaries stay under 64 MiB on
    top of the O(N d) state (measured 48 MiB; before chunking the heuristic and the scaling
    pass: 117 MiB, growing with n_bandwidth_pairs * d and 65,536 * d)."""
    import tracemalloc

    x = np.random.default_rng(0).normal(size=(20_000, 384)).astype(np.float32)
    tracemalloc.start()
    try:
        gp = GPSuccessPredictor(x, seed=0)
        state, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state >= gp._z.nbytes
    assert peak - state < 64 * 2**20, (peak - state) / 2**20
    # the chunked heuristic is the same median as the unchunked formula on the same pairs
    rng = np.random.default_rng(3)
    i = rng.integers(0, 20_000, size=20_000)
    j = rng.integers(0, 19_999, size=20_000)
    j = j + (j >= i)
    d = np.linalg.norm(x[i].astype(np.float64) - x[j].astype(np.float64), axis=1)
    assert median_heuristic_bandwidth(x, seed=3) == pytest.approx(np.median(d[d > 0]), rel=1e-12)


def test_pooled_trials_overflow_is_named():
    """Repeated ids are pooled by summing; sums beyond 2**53 are rejected naming the pooled
    trials (it used to overflow int64 and fail with 'successes must be non-negative, got -9e18')."""
    x = np.random.default_rng(11).normal(size=(5, 2))
    gp = GPSuccessPredictor(x, seed=0)
    with pytest.raises(ValueError, match=r"trials pooled over repeated ids must be <= 2\*\*53, got 9.22337e\+18 for id 0"):
        gp.update([0, 0, 1], [2**62, 2**62, 1], [2**62, 2**62, 2])
    assert gp.step == 0 and np.all(gp.mean_logit == 0.0)
    gp.update([0, 0], [2**51, 0], [2**51, 2**51])  # large but exact: rate 1/2
    assert gp.predict_logit([0])[0] == 0.0


def test_median_heuristic_validates_seed_and_pairs_even_when_using_all_pairs():
    x = np.random.default_rng(12).normal(size=(10, 2))  # 45 pairs: every pair, no sampling
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
        median_heuristic_bandwidth(x, seed="x")
    with pytest.raises(ValueError, match="n_pairs must be >= 1, got 0"):
        median_heuristic_bandwidth(x, n_pairs=0)


def test_extreme_embeddings_and_hyperparameters():
    """Extreme inputs: embeddings of +-1e300 gave an infinite median-heuristic bandwidth (distances
    overflowed) and +-DBL_MAX an infinite centre; eps = 5e-324 or prior_logit = DBL_MAX were
    accepted and every update then failed (FloatingPointError). Now the embeddings are handled
    in scaled units, and the hyperparameters are bounded at construction."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 3))
    for scale in (1e300, np.finfo(float).max / 4):
        gp = GPSuccessPredictor(x * scale, seed=0)
        ref = GPSuccessPredictor(x, seed=0)
        assert gp.bandwidth == pytest.approx(ref.bandwidth * scale, rel=1e-12)
        gp.update([0, 1, 2], [8, 0, 4], [8, 8, 8])
        ref.update([0, 1, 2], [8, 0, 4], [8, 8, 8])
        np.testing.assert_allclose(gp.predict(np.arange(12)), ref.predict(np.arange(12)), rtol=1e-4)
    with pytest.raises(ValueError, match=r"eps must be >= 1.1102230246251565e-16"):
        GPSuccessPredictor(x, eps=5e-324)
    with pytest.raises(ValueError, match=r"prior_logit must have magnitude <= 1e\+100"):
        GPSuccessPredictor(x, prior_logit=np.finfo(float).max)
