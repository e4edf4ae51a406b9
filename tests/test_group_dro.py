"""Tests of the group-DRO adversaries (``bandits.group_dro``): exact EG steps, absent groups,
Thm. F.7 / eq. 33 of GDRO on a convex toy game, GDRO-EXP3P regret, robustness, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import GDROExp3P, GroupDRO
from bandits.group_dro import gdro_exp3p_regret_bound


# --------------------------------------------------------------------------------------------
# GroupDRO: exact steps and absent groups
# --------------------------------------------------------------------------------------------
def test_groupdro_exact_eg_steps():
    """Sagawa et al. 2020 Alg. 1: q <- q exp(eta l) / Z, computed by hand."""
    adv = GroupDRO(3, step_size=0.5)
    np.testing.assert_allclose(adv.weights(), [1 / 3] * 3, rtol=1e-15)
    adv.update([2.0, 0.0, -1.0])
    w = np.array([math.exp(1.0), 1.0, math.exp(-0.5)])
    np.testing.assert_allclose(adv.weights(), w / w.sum(), rtol=1e-14)
    adv.update([0.0, 4.0, 0.0])
    w = w * np.array([1.0, math.exp(2.0), 1.0])
    np.testing.assert_allclose(adv.weights(), w / w.sum(), rtol=1e-14)
    np.testing.assert_allclose(np.exp(adv.log_weights).sum(), 1.0, rtol=1e-14)
    assert adv.t == 2


@pytest.mark.parametrize("present", [[True, False, True, False], [0, 2], np.array([2, 0, 2])])
def test_groupdro_absent_groups_keep_weight(present):
    """Absent groups keep their weight exactly; present groups share their old total mass in
    proportion to q exp(eta l). Absent entries may be NaN."""
    adv = GroupDRO(4, step_size=1.0)
    adv.update([1.0, 0.5, 0.0, 2.0])
    before = adv.weights()
    adv.update([3.0, np.nan, -1.0, np.nan], present=present)
    after = adv.weights()
    np.testing.assert_allclose(after[[1, 3]], before[[1, 3]], rtol=1e-13)
    mass = before[0] + before[2]
    v = before[[0, 2]] * np.exp([3.0, -1.0])
    np.testing.assert_allclose(after[[0, 2]], mass * v / v.sum(), rtol=1e-13)
    # the naive update (absent loss = 0, renormalise everything) would have changed them
    naive = before * np.exp([3.0, 0.0, -1.0, 0.0])
    naive /= naive.sum()
    assert not np.allclose(naive[[1, 3]], before[[1, 3]], rtol=1e-3)


def test_groupdro_empty_batch_is_noop():
    adv = GroupDRO(3, step_size=1.0)
    adv.update([1.0, 2.0, 3.0])
    w = adv.weights()
    adv.update([np.nan] * 3, present=np.zeros(3, dtype=bool))
    np.testing.assert_array_equal(adv.weights(), w)
    assert adv.t == 2


def test_groupdro_extreme_losses_no_nan():
    """Losses of 1e6 and 0 (and -1e6): weights stay finite and a distribution."""
    adv = GroupDRO(4, step_size=1.0)
    for _ in range(50):
        adv.update([1e6, 0.0, -1e6, 1e6 - 1.0])
        adv.update([0.0, 1e6, 0.0, 0.0], present=[1, 2])
    w = adv.weights()
    assert np.all(np.isfinite(adv.log_weights)) and np.all(np.isfinite(w))
    assert w.sum() == pytest.approx(1.0)


def test_groupdro_overflowing_step_raises_named_error_and_keeps_state():
    """Finite but huge losses whose log-weight step overflows: ValueError naming the parameters,
    no RuntimeWarning, state (weights and t) unchanged."""
    import warnings

    adv = GroupDRO(3, step_size=2.0)
    adv.update([0.3, 0.1, 0.2])
    before = (adv.log_weights.copy(), adv.t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"step_size \* group_losses overflows.*1e\+308"):
            adv.update([1e308, -1e308, 0.0])  # 2 * 1e308 = inf: which group dominates is undefined
        big = GroupDRO(2, step_size=1e300)
        with pytest.raises(ValueError, match=r"step_size=1e\+300"):
            big.update([1e10, 0.0])
    np.testing.assert_array_equal(adv.log_weights, before[0])
    assert adv.t == before[1]


def test_groupdro_validation_leaves_state():
    adv = GroupDRO(3, step_size=0.1)
    adv.update([1.0, 0.0, 0.0])
    lw = adv.log_weights.copy()
    with pytest.raises(ValueError, match=r"group_losses must be finite for present groups, got nan"):
        adv.update([np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"group_losses must be finite for present groups, got inf"):
        adv.update([0.0, np.inf, 0.0], present=[1])
    with pytest.raises(ValueError, match=r"group_losses must have shape \(3,\), got \(2,\)"):
        adv.update([0.0, 1.0])
    with pytest.raises(ValueError, match=r"present group ids must be < n_groups=3, got 3"):
        adv.update([0.0, 1.0, 2.0], present=[3])
    with pytest.raises(ValueError, match=r"present must be non-negative"):
        adv.update([0.0, 1.0, 2.0], present=[-1])
    with pytest.raises(ValueError, match=r"boolean mask must have shape \(3,\)"):
        adv.update([0.0, 1.0, 2.0], present=[True, False])
    with pytest.raises(TypeError, match="group_losses must be an array of real numbers"):
        adv.update("abc")
    np.testing.assert_array_equal(adv.log_weights, lw)
    assert adv.t == 1
    with pytest.raises(ValueError, match="step_size must be > 0.0"):
        GroupDRO(3, step_size=0.0)
    with pytest.raises(ValueError, match="n_groups must be >= 1"):
        GroupDRO(0, step_size=1.0)


# --------------------------------------------------------------------------------------------
# Thm. F.7 / eq. 33 of GDRO on a convex bounded toy game
# --------------------------------------------------------------------------------------------
def run_toy_game(centers: np.ndarray, horizon: int, adversary_sign: float = 1.0):
    """OGD on theta in the box [-1, 1]^d against GroupDRO on B quadratic group losses
    L_b(theta) = ||theta - c_b||^2 / 2 (c_b in the box).

    Assumption F.6 constants: D = 2 sqrt(d) (box diameter), G = G_sg = D (exact gradients),
    M = D^2 / 2. Step sizes minimising eq. 33: eta_theta = D / (G sqrt(T)),
    eta_q = sqrt(8 log B / (M^2 T)). ``adversary_sign = -1`` makes the adversary *descend*
    (a broken adversary, used to show the check has power).

    Returns (exact saddle gap of the averaged iterates, right-hand side of eq. 33).
    """
    n_groups, dim = centers.shape
    diam = 2.0 * math.sqrt(dim)
    lip, bound_m = diam, diam**2 / 2
    eta_theta = diam / (lip * math.sqrt(horizon))
    eta_q = math.sqrt(8 * math.log(n_groups) / (bound_m**2 * horizon))
    adv = GroupDRO(n_groups, step_size=eta_q)
    theta = np.zeros(dim)
    theta_sum, q_sum = np.zeros(dim), np.zeros(n_groups)
    for _ in range(horizon):
        q = adv.weights()
        losses = 0.5 * ((theta - centers) ** 2).sum(1)
        grad = q @ (theta - centers)
        theta_sum += theta
        q_sum += q
        adv.update(adversary_sign * losses)
        theta = np.clip(theta - eta_theta * grad, -1.0, 1.0)
    theta_bar, q_bar = theta_sum / horizon, q_sum / horizon
    worst = (0.5 * ((theta_bar - centers) ** 2).sum(1)).max()
    # min over the box of sum_b qbar_b L_b: the unconstrained minimiser (weighted mean of the
    # centers) lies in the box, so the minimum is the weighted spread around it.
    c_bar = q_bar @ centers
    best_response = q_bar @ (0.5 * ((c_bar - centers) ** 2).sum(1))
    gap = worst - best_response
    rhs = (diam**2 / (2 * eta_theta * horizon) + eta_theta * lip**2 / 2
           + math.log(n_groups) / (eta_q * horizon) + eta_q * bound_m**2 / 8)
    return gap, rhs


def test_thm_f7_handmade_game_and_power():
    """GDRO Thm. F.7: 0 <= gap <= eq. 33 for OGD + GroupDRO on three corners of the square;
    with a descending (broken) adversary the same gap exceeds eq. 33."""
    centers = np.array([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]])
    gap, rhs = run_toy_game(centers, 2000)
    assert 0.0 <= gap <= rhs
    bad_gap, _ = run_toy_game(centers, 2000, adversary_sign=-1.0)
    assert bad_gap > rhs


@settings(max_examples=8)
@given(
    st.integers(2, 5).flatmap(
        lambda b: st.lists(
            st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=b, max_size=b
        )
    )
)
def test_thm_f7_generated_games(center_list):
    """GDRO Thm. F.7 / eq. 33 on hypothesis-generated quadratic group losses (B = 2..5, d = 2):
    the exact saddle gap of the averaged iterates is in [0, eq. 33]."""
    gap, rhs = run_toy_game(np.array(center_list), 600)
    assert -1e-12 <= gap <= rhs


# --------------------------------------------------------------------------------------------
# GDROExp3P
# --------------------------------------------------------------------------------------------
def test_gdroexp3p_first_step_exact():
    """Bubeck & Cesa-Bianchi Exp3.P step: Ltilde_g += (l [g = g_t] + beta) / q_g,
    q = (1 - gamma) softmax(eta Ltilde) + gamma / K; defaults of their Sec. 3.2 theorem."""
    k, n, delta = 3, 1000, 0.05
    beta = math.sqrt(math.log(k / delta) / (n * k))
    eta = 0.95 * math.sqrt(math.log(k) / (n * k))
    gamma = 1.05 * math.sqrt(k * math.log(k) / n)
    adv = GDROExp3P(k, horizon=n, seed=0)
    assert (adv.eta, adv.gamma, adv.beta) == pytest.approx((eta, gamma, beta), rel=1e-14)
    adv.update(1, 0.8)
    est = np.array([beta, 0.8 + beta, beta]) / (1 / 3)
    w = np.exp(eta * est)
    np.testing.assert_allclose(adv.weights(), (1 - gamma) * w / w.sum() + gamma / k, rtol=1e-13)


def _table(horizon):
    table = np.zeros((horizon, 2))
    cut = int(0.1 * horizon)
    table[:cut, 1] = 1.0
    table[cut:, 0] = 1.0
    return table


@pytest.mark.parametrize("seed", range(3))
def test_gdroexp3p_regret_within_bound(seed):
    """Bubeck & Cesa-Bianchi 2012 Sec. 3.2 bound 5.15 sqrt(nK ln(K/delta)) on a hand-made
    switching loss table (the adversary's gains); uniform play violates it."""
    horizon = 8000
    table = _table(horizon)
    bound = gdro_exp3p_regret_bound(2, horizon, 0.05)
    assert table.sum(0).max() - table.mean(1).sum() > bound  # power
    adv = GDROExp3P(2, horizon=horizon, seed=seed)
    gain = 0.0
    for t in range(horizon):
        g = adv.sample()
        adv.update(g, table[t, g])
        gain += table[t, g]
    assert table.sum(0).max() - gain <= bound


def test_gdroexp3p_tracks_worst_group_stochastic():
    """Stationary Bernoulli group losses with means (0.2, 0.7, 0.4): with the GDRO paper's
    practical constants the adversary puts most weight on the worst group (1)."""
    rng = np.random.default_rng(0)
    means = np.array([0.2, 0.7, 0.4])
    adv = GDROExp3P(3, horizon=2000, eta=0.65, gamma=0.01, beta=0.0, seed=1)
    for _ in range(2000):
        g = adv.sample()
        adv.update(g, float(rng.random() < means[g]))
    assert adv.weights()[1] > 0.8


def test_gdroexp3p_determinism_and_validation():
    def run(seed):
        adv = GDROExp3P(4, horizon=100, seed=seed)
        groups = []
        for t in range(100):
            g = adv.sample()
            adv.update(g, (g + t) % 3 / 2)
            groups.append(g)
        return groups, adv.log_weights.copy()

    a, b = run(3), run(3)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    adv = GDROExp3P(3, horizon=10)
    adv.update(0, 0.5)
    lw = adv.log_weights.copy()
    with pytest.raises(ValueError, match="loss must be finite"):
        adv.update(1, float("nan"))
    with pytest.raises(ValueError, match=r"loss must be <= 1.0, got 1000000.0"):
        adv.update(1, 1e6)
    with pytest.raises(ValueError, match="group must be <= 2, got 5"):
        adv.update(5, 0.5)
    np.testing.assert_array_equal(adv.log_weights, lw)
    assert adv.t == 1
    with pytest.raises(ValueError, match="beta must be >= 0.0"):
        GDROExp3P(3, horizon=10, beta=-1.0)


@pytest.mark.parametrize("seed", range(3))
def test_gdroexp3p_with_sgd_learner_approaches_gdro_optimum(seed):
    """Soma et al. 2022 game (bandit feedback on both sides): each round the adversary samples a
    group, the learner takes a projected SGD step on that group's loss, the adversary observes the
    same loss. Quadratic losses ||theta - c_g||^2 / 8 in [0, 1] on the box [-1, 1]^2, three groups
    clustered near (1, 1) and one at (-1, -1). The averaged iterate's worst-group loss must be
    near the GDRO optimum (0.25, computed here by grid search) and far from the ERM point's
    (0.53)."""
    centers = np.array([[1, 1], [1, 0.8], [0.8, 1], [-1, -1.0]])

    def losses(theta):
        return ((theta - centers) ** 2).sum(-1) / 8

    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1)
    worst_on_grid = (((grid[..., None, :] - centers) ** 2).sum(-1) / 8).max(-1)
    gdro_opt = worst_on_grid.min()
    erm_worst = losses(centers.mean(0)).max()
    assert gdro_opt == pytest.approx(0.25, abs=1e-9) and erm_worst > 0.5

    horizon = 3000
    adv = GDROExp3P(4, horizon=horizon, seed=seed)
    theta, theta_sum = np.array([0.5, 0.5]), np.zeros(2)
    step = 2 / math.sqrt(horizon)
    for _ in range(horizon):
        g = adv.sample()
        theta_sum += theta
        adv.update(g, float(losses(theta)[g]))
        theta = np.clip(theta - step * (theta - centers[g]) / 4, -1.0, 1.0)
    worst = losses(theta_sum / horizon).max()
    assert worst <= gdro_opt + 0.06


def test_groupdro_log_weights_are_floored_like_the_gdro_controllers():
    """Extreme inputs: with losses of +-1e307 the log weights of the losing groups decreased by 2e307 per
    step, reached -inf after 8 steps, and from then on every update was rejected. They are now
    floored at LOG_WEIGHT_FLOOR below the best group (as PromptGDRO / RolloutGDRO do): the state
    stays finite, every update is accepted, and the winner keeps (almost) all the mass."""
    from bandits.exp3 import LOG_WEIGHT_FLOOR

    adv = GroupDRO(3, step_size=1.0)
    for _ in range(50):
        adv.update([1e307, -1e307, 0.0])
    assert adv.t == 50 and np.all(np.isfinite(adv.log_weights))
    assert adv.log_weights.min() >= adv.log_weights.max() + LOG_WEIGHT_FLOOR
    np.testing.assert_allclose(adv.weights(), [1.0, 0.0, 0.0], atol=1e-300)
    adv.update([0.0, 1.0, 0.0])  # ordinary updates still work and move the floored groups
    assert adv.t == 51 and adv.weights()[1] > adv.weights()[2]
    # an absent group keeps its log weight bit for bit, even below the floor of the others
    adv.update([-1e307, 5.0, 0.0], present=[0, 1])
    before = adv.log_weights[2]
    adv.update([1e307, 0.0, 0.0], present=[0, 1])
    assert adv.log_weights[2] == before


def test_gdro_exp3p_extreme_constants_are_validated_at_construction():
    """Extreme inputs: ``GDROExp3P`` with ``horizon=1e308`` raised OverflowError; ``delta=5e-324`` or
    ``beta=1e308`` stored an infinite bonus (reported as "alpha must be finite", a parameter
    GDROExp3P does not have). Now: a ValueError naming horizon / beta, and delta's default beta
    computed in log space."""
    with pytest.raises(ValueError, match="horizon must be <= 9223372036854775807"):
        GDROExp3P(4, horizon=1e308)
    with pytest.raises(ValueError, match=r"beta \* sqrt\(n_groups \* horizon\) overflows"):
        GDROExp3P(4, horizon=100, beta=1e308)
    adv = GDROExp3P(4, horizon=100, delta=5e-324, seed=0)
    assert math.isfinite(adv.beta)
    adv.update(adv.sample(), 1.0)
    assert adv.t == 1 and np.all(np.isfinite(adv.weights()))
    assert math.isfinite(gdro_exp3p_regret_bound(4, 100, 5e-324))
