"""Tests of the EXP3 family (``bandits.exp3``): exact first steps, regret bounds, determinism,
numerical robustness and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import Exp3, Exp3IX, Exp3P
from bandits.exp3 import exp3ix_regret_bound, exp3p_regret_bound


# --------------------------------------------------------------------------------------------
# helpers: play a learner against a fixed (oblivious) table of values
# --------------------------------------------------------------------------------------------
def play(learner, table: np.ndarray) -> tuple[float, np.ndarray]:
    """Run ``learner`` on the T x K table; return (total collected value, arms played)."""
    total = 0.0
    arms = np.empty(table.shape[0], dtype=np.int64)
    for t in range(table.shape[0]):
        arm = learner.sample()
        v = float(table[t, arm])
        learner.update(arm, v)
        total += v
        arms[t] = arm
    return total, arms


def best_switching_table(horizon: int) -> np.ndarray:
    """Hand-made adversarial table, K = 2: arm 1 is best for the first 10%, then arm 0 is best
    (so arm 0 wins overall); uniform play has regret 0.4 T."""
    table = np.zeros((horizon, 2))
    cut = int(0.1 * horizon)
    table[:cut, 1] = 1.0
    table[cut:, 0] = 1.0
    return table


# --------------------------------------------------------------------------------------------
# exact probabilities on tiny cases (hand-computed from the papers' update rules)
# --------------------------------------------------------------------------------------------
def test_exp3p_first_steps_exact_textbook_constants():
    """Fig. 3 of Auer et al. 2002 with the Thm. 6.3 constants, K = 2, T = 100, delta = 0.1."""
    k, horizon, delta = 2, 100, 0.1
    alpha = 2 * math.sqrt(math.log(k * horizon / delta))
    gamma = min(0.6, 2 * math.sqrt(0.6 * k * math.log(k) / horizon))
    eta = gamma / (3 * k)
    b = Exp3P(k, horizon=horizon, delta=delta, seed=0)
    assert b.alpha == pytest.approx(alpha, rel=1e-15)
    assert b.gamma == pytest.approx(gamma, rel=1e-15)
    assert b.eta == pytest.approx(eta, rel=1e-15)
    np.testing.assert_allclose(b.probabilities(), [0.5, 0.5], rtol=0, atol=1e-15)

    b.update(0, 1.0)
    # step 1: both arms get bonus alpha / (0.5 sqrt(200)); arm 0 also gets 1 / 0.5
    bonus = alpha / (0.5 * math.sqrt(k * horizon))
    w0, w1 = math.exp(eta * (2.0 + bonus)), math.exp(eta * bonus)
    p0 = (1 - gamma) * w0 / (w0 + w1) + gamma / 2
    np.testing.assert_allclose(b.probabilities(), [p0, 1 - p0], rtol=1e-13)
    assert b.t == 1

    # step 2: play arm 1, reward 0.25, with the step-1 probabilities
    q0, q1 = p0, 1 - p0
    w0 *= math.exp(eta * alpha / (q0 * math.sqrt(k * horizon)))
    w1 *= math.exp(eta * (0.25 / q1 + alpha / (q1 * math.sqrt(k * horizon))))
    p0 = (1 - gamma) * w0 / (w0 + w1) + gamma / 2
    b.update(1, 0.25)
    np.testing.assert_allclose(b.probabilities(), [p0, 1 - p0], rtol=1e-13)
    # log weights are max-normalised: the larger one is exactly 0
    assert b.log_weights.max() == 0.0
    assert b.log_weights[1] - b.log_weights[0] == pytest.approx(math.log(w1 / w0), rel=1e-12)


def test_exp3p_practical_constants_exact():
    """GDRO App. C.2 constants (eta = 0.65, gamma = 0.01, no bonus), K = 3."""
    b = Exp3P(3, horizon=50, eta=0.65, gamma=0.01, alpha=0.0, seed=1)
    b.update(2, 0.5)  # p = 1/3 -> log w_2 += 0.65 * 0.5 * 3
    e = math.exp(0.65 * 1.5)
    p2 = 0.99 * e / (e + 2) + 0.01 / 3
    p0 = 0.99 * 1 / (e + 2) + 0.01 / 3
    np.testing.assert_allclose(b.probabilities(), [p0, p0, p2], rtol=1e-14)


def test_exp3p_propensity_override():
    """Only the played arm's importance weight uses the given propensity."""
    b = Exp3P(2, horizon=10, eta=1.0, gamma=0.1, alpha=0.0)
    b.update(0, 1.0, propensity=0.25)  # log w0 += 1 / 0.25 = 4
    p0 = 0.9 * math.exp(4) / (math.exp(4) + 1) + 0.05
    np.testing.assert_allclose(b.probabilities(), [p0, 1 - p0], rtol=1e-14)


def test_exp3_first_steps_exact():
    """Fig. 1 of Auer et al. 2002: w_i <- w_i exp(gamma * x / (p_i K))."""
    b = Exp3(3, gamma=0.3)
    b.update(1, 1.0)  # p = 1/3: exponent 0.3 * 3 / 3 = 0.3
    e = math.exp(0.3)
    p1 = 0.7 * e / (e + 2) + 0.1
    np.testing.assert_allclose(b.probabilities()[1], p1, rtol=1e-14)
    q = b.probabilities()
    b.update(0, 0.5)
    w = np.array([math.exp(0.3 * 0.5 / (q[0] * 3)), e, 1.0])
    np.testing.assert_allclose(b.probabilities(), 0.7 * w / w.sum() + 0.1, rtol=1e-14)


def test_exp3_corollary_gamma():
    """gamma=None uses Cor. 3.2: min(1, sqrt(K ln K / ((e-1) g))) with g = horizon."""
    b = Exp3(4, gamma=None, horizon=1000)
    assert b.gamma == pytest.approx(math.sqrt(4 * math.log(4) / ((math.e - 1) * 1000)))
    with pytest.raises(ValueError, match="horizon"):
        Exp3(4, gamma=None)


def test_exp3ix_first_steps_exact():
    """Neu 2015: p = softmax, lhat = l / (p + gamma), w <- w exp(-eta lhat)."""
    k, horizon = 2, 100
    eta = math.sqrt(2 * math.log(k) / (k * horizon))
    gamma = eta / 2
    b = Exp3IX(k, horizon=horizon)
    assert b.eta == pytest.approx(eta) and b.gamma == pytest.approx(gamma)
    b.update(0, 1.0)
    lw0 = -eta * 1.0 / (0.5 + gamma)
    p0 = math.exp(lw0) / (math.exp(lw0) + 1)
    np.testing.assert_allclose(b.probabilities(), [p0, 1 - p0], rtol=1e-14)
    b.update(1, 0.5)
    lw1 = -eta * 0.5 / ((1 - p0) + gamma)
    p0b = math.exp(lw0) / (math.exp(lw0) + math.exp(lw1))
    np.testing.assert_allclose(b.probabilities(), [p0b, 1 - p0b], rtol=1e-14)
    # zero loss: no change at all
    before = b.probabilities()
    b.update(0, 0.0)
    np.testing.assert_array_equal(b.probabilities(), before)


def test_single_arm():
    for b in (Exp3(1, gamma=0.5), Exp3P(1, horizon=10), Exp3IX(1, horizon=10)):
        for _ in range(3):
            assert b.sample() == 0
            b.update(0, 1.0)
        np.testing.assert_array_equal(b.probabilities(), [1.0])


# --------------------------------------------------------------------------------------------
# regret bounds
# --------------------------------------------------------------------------------------------
T_REGRET = 8000
SEEDS = range(4)


def test_bound_formulas_pinned_to_the_literature_values():
    """The three bound functions evaluate the theorems' formulas literally (K = 4, T = 1000,
    delta = 0.05, natural logs): ACFS02 Thm. 6.3, Neu 2015 Thm. 1, BCB12 Sec. 3.2. Written out
    here term by term so that a transposed constant (5/3 vs 3/5, 2 vs sqrt 2, ...) in the
    implementation fails. (The theorem constants themselves could not be checked against the
    primary texts; see the ``bandits.exp3`` module docstring.)"""
    from bandits.group_dro import gdro_exp3p_regret_bound

    k, t, d = 4, 1000, 0.05
    lkt = math.log(k * t / d)  # ln 80000
    acfs = 4 * math.sqrt(k * t * lkt) + 4 * math.sqrt(5 / 3 * k * t * math.log(k)) + 8 * lkt
    assert exp3p_regret_bound(k, t, d) == pytest.approx(acfs, rel=1e-14)
    assert acfs == pytest.approx(1324.886, abs=1e-3)  # by hand: 850.0 + 384.6 + 90.3
    neu = 2 * math.sqrt(2 * k * t * math.log(k)) + (math.sqrt(2 * k * t / math.log(k)) + 1) * math.log(2 / d)
    assert exp3ix_regret_bound(k, t, d) == pytest.approx(neu, rel=1e-14)
    assert neu == pytest.approx(494.539, abs=1e-3)  # 210.6 + 76.97 * ln 40
    bcb = 5.15 * math.sqrt(t * k * math.log(k / d))
    assert gdro_exp3p_regret_bound(k, t, d) == pytest.approx(bcb, rel=1e-14)
    assert bcb == pytest.approx(681.828, abs=1e-3)  # 5.15 * sqrt(4000 ln 80)


def test_bound_tests_have_power():
    """Uniform play violates both bounds on the hand-made table (so the regret tests can fail)."""
    table = best_switching_table(T_REGRET)
    uniform_regret = table.sum(0).max() - table.mean(1).sum()
    assert uniform_regret > exp3p_regret_bound(2, T_REGRET, 0.05)
    assert uniform_regret > exp3ix_regret_bound(2, T_REGRET, 0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_exp3p_regret_within_thm63_handmade(seed):
    """Auer et al. 2002 Thm. 6.3 on a hand-made switching adversary (K = 2, T = 8000)."""
    table = best_switching_table(T_REGRET)
    gain, _ = play(Exp3P(2, horizon=T_REGRET, delta=0.05, seed=seed), table)
    regret = table.sum(0).max() - gain
    assert regret <= exp3p_regret_bound(2, T_REGRET, 0.05)


@pytest.mark.parametrize("seed", SEEDS)
def test_exp3ix_regret_within_neu_thm1_handmade(seed):
    """Neu 2015 Thm. 1 on the same switching adversary, as losses (1 - reward)."""
    losses = 1.0 - best_switching_table(T_REGRET)
    loss, _ = play(Exp3IX(2, horizon=T_REGRET, seed=seed), losses)
    regret = loss - losses.sum(0).min()
    assert regret <= exp3ix_regret_bound(2, T_REGRET, 0.05)


@st.composite
def piecewise_tables(draw):
    """Oblivious tables: K arms, a few segments with hypothesis-chosen values; either the values
    themselves (adversarial, piecewise constant) or Bernoulli draws with those means (stochastic,
    drawn once up front so the table is fixed before play)."""
    k = draw(st.integers(2, 3))
    stochastic = draw(st.booleans())
    n_seg = draw(st.integers(1, 4))
    horizon = 2000
    cuts = sorted(draw(st.lists(st.integers(1, horizon - 1), min_size=n_seg - 1,
                                max_size=n_seg - 1, unique=True)))
    bounds = [0, *cuts, horizon]
    table = np.empty((horizon, k))
    for s in range(n_seg):
        row = draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
        table[bounds[s]:bounds[s + 1]] = row
    seed = draw(st.integers(0, 2**16))
    if stochastic:
        table = (np.random.default_rng(seed + 1).random(table.shape) < table).astype(float)
    return table, seed


@settings(max_examples=6)
@given(piecewise_tables())
def test_exp3p_regret_within_thm63_generated(case):
    """Auer et al. 2002 Thm. 6.3 holds on hypothesis-generated adversarial/stochastic tables."""
    table, seed = case
    horizon, k = table.shape
    gain, _ = play(Exp3P(k, horizon=horizon, delta=0.05, seed=seed), table)
    assert table.sum(0).max() - gain <= exp3p_regret_bound(k, horizon, 0.05)


@settings(max_examples=6)
@given(piecewise_tables())
def test_exp3ix_regret_within_neu_thm1_generated(case):
    """Neu 2015 Thm. 1 holds on hypothesis-generated adversarial/stochastic loss tables."""
    table, seed = case
    horizon, k = table.shape
    loss, _ = play(Exp3IX(k, horizon=horizon, seed=seed), table)
    assert loss - table.sum(0).min() <= exp3ix_regret_bound(k, horizon, 0.05)


def test_exp3_expected_regret_within_cor32():
    """Auer et al. 2002 Cor. 3.2 (an expected-regret bound, g = T): the mean regret over 6 seeds on
    the hand-made table is below 2 sqrt(e - 1) sqrt(g K ln K). The bound is ~0.03 T while
    uniform play loses 0.4 T; the per-seed spread (a few dozen) is far below the margin."""
    horizon = T_REGRET
    table = best_switching_table(horizon)
    bound = 2 * math.sqrt(math.e - 1) * math.sqrt(horizon * 2 * math.log(2))
    regrets = [
        table.sum(0).max() - play(Exp3(2, gamma=None, horizon=horizon, seed=s), table)[0]
        for s in range(6)
    ]
    assert np.mean(regrets) <= bound < table.sum(0).max() - table.mean(1).sum()


@pytest.mark.parametrize("seed", range(3))
def test_beat_uniform_on_easy_stochastic_instance(seed):
    """Bernoulli arms with means (0.9, 0.5, 0.3, 0.1): both learners collect far more than uniform
    play (expected regret of uniform = T * (0.9 - 0.45)). Textbook Exp3.P learns slowly (its
    regret is ~0.48 of uniform's at T = 3000; we require < 0.6), Exp3-IX much faster (~0.08; we
    require < 0.3)."""
    rng = np.random.default_rng(100 + seed)
    means = np.array([0.9, 0.5, 0.3, 0.1])
    horizon = 3000
    rewards = (rng.random((horizon, 4)) < means).astype(float)
    uniform_regret = horizon * (means.max() - means.mean())
    gain, _ = play(Exp3P(4, horizon=horizon, seed=seed), rewards)
    assert horizon * means.max() - gain < 0.6 * uniform_regret
    loss, _ = play(Exp3IX(4, horizon=horizon, seed=seed), 1.0 - rewards)
    assert loss - horizon * (1 - means.max()) < 0.3 * uniform_regret
    # the practical constants of the GDRO paper learn faster still
    gain, arms = play(Exp3P(4, horizon=horizon, eta=0.65, gamma=0.01, alpha=0.0, seed=seed), rewards)
    assert np.mean(arms[horizon // 2:] == 0) > 0.8


# --------------------------------------------------------------------------------------------
# determinism, robustness, validation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda s: Exp3(3, gamma=0.2, seed=s),
        lambda s: Exp3P(3, horizon=200, seed=s),
        lambda s: Exp3IX(3, horizon=200, seed=s),
    ],
)
def test_determinism_same_seed_same_trajectory(make):
    table = np.random.default_rng(7).random((200, 3))
    a, b = make(11), make(11)
    _, arms_a = play(a, table)
    _, arms_b = play(b, table)
    np.testing.assert_array_equal(arms_a, arms_b)
    np.testing.assert_array_equal(a.log_weights, b.log_weights)
    _, arms_c = play(make(12), table)
    assert not np.array_equal(arms_a, arms_c)
    # a Generator is accepted too
    g1, g2 = make(np.random.default_rng(5)), make(np.random.default_rng(5))
    np.testing.assert_array_equal(play(g1, table)[1], play(g2, table)[1])


def test_no_nan_under_extreme_values():
    """Many max rewards on one arm with aggressive constants: weights stay finite, probabilities
    a valid distribution, and the exploration floor gamma / K is kept."""
    b = Exp3P(4, horizon=10, eta=50.0, gamma=1e-3, alpha=5.0, seed=0)
    for _ in range(2000):
        b.update(3, 1.0)
        b.update(0, 0.0)
    p = b.probabilities()
    assert np.all(np.isfinite(b.log_weights)) and np.all(np.isfinite(p))
    assert p.sum() == pytest.approx(1.0) and p.min() >= 1e-3 / 4 * (1 - 1e-12)
    ix = Exp3IX(3, horizon=10, eta=1e3, gamma=1e-12)
    for _ in range(500):
        ix.update(0, 1.0)
        ix.update(1, 1.0)
    p = ix.probabilities()
    assert np.all(np.isfinite(ix.log_weights)) and p[2] == pytest.approx(1.0)
    e = Exp3(2, gamma=1e-9)
    for _ in range(1000):
        e.update(0, 1.0)
    assert np.all(np.isfinite(e.probabilities()))


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Exp3(3, gamma=0.2), "reward"),
        (lambda: Exp3P(3, horizon=20), "reward"),
        (lambda: Exp3IX(3, horizon=20), "loss"),
    ],
)
def test_bad_updates_raise_and_leave_state_unchanged(make, name):
    b = make()
    b.update(0, 0.7)
    lw, t = b.log_weights.copy(), b.t
    for bad, err, msg in [
        (float("nan"), ValueError, f"{name} must be finite"),
        (float("inf"), ValueError, f"{name} must be finite"),
        (1.5, ValueError, rf"{name} must be <= 1.0, got 1.5"),
        (-0.1, ValueError, rf"{name} must be >= 0.0"),
        (1e6, ValueError, rf"{name} must be <= 1.0"),
        ("x", TypeError, f"{name} must be a real number"),
    ]:
        with pytest.raises(err, match=msg):
            b.update(1, bad)
    for arm, msg in [(3, "arm must be <= 2, got 3"), (-1, "arm must be >= 0"), (1.5, "arm must be")]:
        with pytest.raises(ValueError, match=msg):
            b.update(arm, 0.5)
    np.testing.assert_array_equal(b.log_weights, lw)
    assert b.t == t


def test_overflowing_step_raises_without_warnings_and_keeps_state():
    """A finite but huge step times the importance-weighted estimate overflows the log weights.
    Exp3P: every p_j >= gamma / K bounds the step by eta K / gamma (1 + alpha / sqrt(KT)); if that
    overflows, every update would fail, so the constructor rejects it (validate at
    construction); an absurd ``propensity`` still raises a ValueError naming eta, with no
    RuntimeWarning and the state (weights, t) unchanged. Exp3IX (losses only lower weights): a
    step that overflows drives the arm's weight to 0, i.e. to the log-weight floor."""
    import warnings

    from bandits.exp3 import LOG_WEIGHT_FLOOR

    with pytest.raises(ValueError, match=r"largest Exp3P step .* overflows float64 \(eta=1e\+300"):
        Exp3P(2, horizon=10, eta=1e300, gamma=1e-300, alpha=0.0, seed=0)
    b = Exp3P(2, horizon=10, eta=1e300, gamma=0.5, alpha=0.0, seed=0)
    b.update(0, 1.0)
    before = (b.log_weights.copy(), b.t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"non-finite \(the step eta=1e\+300"):
            b.update(1, 1.0, propensity=1e-300)
        ix = Exp3IX(2, horizon=10, eta=1e300, gamma=1e-300, seed=0)
        for _ in range(3):  # drives p[1] to the floor: the estimate is ~1 / gamma, the step inf
            ix.update(1, 1.0)
    np.testing.assert_array_equal(b.log_weights, before[0])
    assert b.t == before[1]
    assert ix.t == 3 and ix.log_weights.tolist() == [0.0, LOG_WEIGHT_FLOOR]


def test_constructor_validation():
    with pytest.raises(ValueError, match="n_arms must be >= 1, got 0"):
        Exp3P(0, horizon=10)
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        Exp3P(2, horizon=0)
    with pytest.raises(ValueError, match="gamma must be > 0.0"):
        Exp3P(2, horizon=10, gamma=0.0)
    with pytest.raises(ValueError, match="gamma must be <= 1.0"):
        Exp3(2, gamma=1.5)
    with pytest.raises(ValueError, match="eta must be > 0.0"):
        Exp3IX(2, horizon=10, eta=-1.0)
    with pytest.raises(ValueError, match="delta must be < 1.0"):
        Exp3P(2, horizon=10, delta=1.0)
    with pytest.raises(ValueError, match="alpha must be >= 0.0"):
        Exp3P(2, horizon=10, alpha=-1.0)
    with pytest.raises(TypeError, match="seed"):
        Exp3P(2, horizon=10, seed="abc")
    with pytest.raises(ValueError, match="propensity must be > 0.0"):
        Exp3P(2, horizon=10).update(0, 1.0, propensity=0.0)


def test_sample_frequencies_match_probabilities():
    """Monte Carlo: sample() follows probabilities() (4-sigma band per arm, 20000 draws)."""
    b = Exp3P(3, horizon=10, eta=1.0, gamma=0.1, alpha=0.0, seed=3)
    b.update(0, 1.0)
    b.update(1, 0.3)
    p = b.probabilities()
    n = 20000
    counts = np.bincount([b.sample() for _ in range(n)], minlength=3)
    sigma = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) < 4 * sigma)


# -- extreme inputs ----------------------------------------------------------------------------


def test_integral_parameters_are_bounded():
    """Extreme inputs: ``Exp3IX(4, horizon=1e308)`` (also Exp3P) raised OverflowError: the integral check
    accepted 1e308 and ``K * T`` later overflowed float conversion. Now a ValueError naming it."""
    for cls in (Exp3IX, Exp3P):
        for horizon in (1e308, 10**400, 2**63):
            with pytest.raises(ValueError, match=r"horizon must be <= 9223372036854775807"):
                cls(4, horizon=horizon)
    with pytest.raises(ValueError, match=r"n_arms must be <= 2147483647"):
        Exp3(2**53, gamma=0.5)
    with pytest.raises(ValueError, match=r"reward must be finite, got the integer"):
        Exp3(2, gamma=0.5).update(0, 10**400)


def test_exp3p_tiny_delta_gives_finite_constants_and_working_updates():
    """Extreme inputs: ``Exp3P(4, horizon=1000, delta=1e-308)`` stored ``alpha = inf`` (``K T / delta``
    overflowed), after which every update raised. ``alpha = 2 sqrt(ln K + ln T - ln delta)``
    is now computed in log space (finite: 2 sqrt(ln 4000 + 709.2) ~ 54.3)."""
    b = Exp3P(4, horizon=1000, delta=1e-308, seed=0)
    assert b.alpha == pytest.approx(2.0 * math.sqrt(math.log(4000.0) - math.log(1e-308)), rel=1e-12)
    for t in range(50):
        b.update(t % 4, 1.0)
    assert b.t == 50 and np.all(np.isfinite(b.log_weights))
    assert math.isfinite(exp3p_regret_bound(4, 1000, 5e-324))


def test_log_weights_stay_finite_under_overflowing_spreads():
    """The log weights are floored at LOG_WEIGHT_FLOOR below the best arm (as the GDRO
    controllers): a spread beyond DBL_MAX used to store -inf, after which every update failed."""
    from bandits.exp3 import LOG_WEIGHT_FLOOR

    b = Exp3P(2, horizon=10, eta=1e300, gamma=0.5, alpha=0.0, seed=0)
    for _ in range(5):
        b.update(0, 1.0)
    assert np.all(np.isfinite(b.log_weights)) and b.log_weights.min() >= LOG_WEIGHT_FLOOR
    b.update(1, 0.3)  # still learning
    assert b.t == 6
