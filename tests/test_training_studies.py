"""The ``training`` and ``gdro`` studies: metric helpers against hand-computed values (and GDRO
eq. 23's WSE against a theorem), the controller-driven training loop (pairing, reference learner),
and each study at quick scale (structure, determinism)."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.study_runner import DEFAULT_STUDIES, STUDIES, load_study, run_study
from sim import SoftmaxRLVR, group_gradient_variance
from sim.studies._common import binding_control
from sim.studies._controlled import (
    EXACT,
    UNIFORM_2X,
    ControlledTrainer,
    all_equal_groups,
    learner_budget,
    make_learner,
    make_split_env,
    make_study_controller,
)
from sim.studies.metrics import (
    area_under_curve,
    bin_means,
    exact_a_allocation,
    exact_optimal_counts,
    group_variance_terms,
    normalised_variance,
    pooled_bin_std,
    second_moment_scale,
    steps_to_target,
    weighted_standard_error,
)
from solvers.claims import VERDICTS, StudyResult, mean_ci

# ------------------------------------------------------------------------------------ metrics


def test_area_under_curve_hand_values():
    # trapezoids: (0+1)/2*1 + (1+1)/2*2 = 2.5 over a width of 3
    assert area_under_curve([0, 1, 3], [0.0, 1.0, 1.0]) == pytest.approx(2.5 / 3)
    # a straight line: the mean is the midpoint value
    assert area_under_curve([0, 10, 20, 40], [1.0, 2.0, 3.0, 5.0]) == pytest.approx(3.0)
    assert area_under_curve([5, 6], [0.25, 0.75]) == pytest.approx(0.5)
    assert area_under_curve([3], [0.7]) == 0.7


def test_area_under_curve_bad_input():
    with pytest.raises(ValueError, match="same length"):
        area_under_curve([0, 1], [1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        area_under_curve([0, 2, 2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y"):
        area_under_curve([0, 1], [1.0, float("nan")])


def test_steps_to_target_hand_values():
    assert steps_to_target([0, 10, 20], [0.25, 0.5, 1.0], 0.75) == pytest.approx(15.0)
    assert steps_to_target([0, 10, 20], [0.25, 0.5, 1.0], 0.5) == pytest.approx(10.0)  # exactly on a checkpoint
    assert steps_to_target([0, 4, 8], [0.0, 0.2, 0.1], 0.1) == pytest.approx(2.0)  # first crossing counts
    assert steps_to_target([0, 10], [0.9, 0.95], 0.5) == 0.0  # starts above
    assert steps_to_target([0, 10], [0.2, 0.4], 0.9) == math.inf  # never reached: inf, not NaN
    with pytest.raises(ValueError, match="target"):
        steps_to_target([0, 10], [0.2, 0.4], float("nan"))


def test_bin_means_and_pooled_std_hand_values():
    m, c = bin_means([1.0, 3.0, 5.0, 7.0], [2, 2, 0, 2], 4)
    assert m.tolist() == [5.0, 0.0, pytest.approx(11.0 / 3), 0.0]
    assert c.tolist() == [1, 0, 3, 0]
    s = pooled_bin_std([1.0, 3.0, 5.0, 7.0, 2.0, 4.0], [2, 2, 0, 2, 1, 1], 4)
    # bin 2 holds {1, 3, 7}: sample sd with ddof 1; bin 1 holds {2, 4}: sqrt(2); bin 0 one value: 0
    assert s[2] == pytest.approx(np.std([1.0, 3.0, 7.0], ddof=1))
    assert s[1] == pytest.approx(math.sqrt(2.0))
    assert s[0] == 0.0 and s[3] == 0.0
    with pytest.raises(ValueError, match="bins must be in"):
        bin_means([1.0], [4], 4)
    with pytest.raises(ValueError, match="same length"):
        pooled_bin_std([1.0, 2.0], [0], 2)


def test_weighted_standard_error_hand_values():
    # GDRO eq. 23: 0.5 * 2 / sqrt(4) + 0.5 * 1 / sqrt(1) = 1.0
    assert weighted_standard_error([0.5, 0.5], [2.0, 1.0], [4.0, 1.0]) == pytest.approx(1.0)
    # compute-matched uniform n_b = n_bar = 4: (0.5 * 2 + 0.5 * 1) / 2
    assert weighted_standard_error([0.5, 0.5], [2.0, 1.0], 4) == pytest.approx(0.75)
    # an empty bin is ignored whatever its count (here 0, which would otherwise be invalid)
    assert weighted_standard_error([1.0, 0.0], [3.0, 5.0], [9.0, 0.0]) == pytest.approx(1.0)
    # time series
    out = weighted_standard_error([[1.0, 0.0], [0.25, 0.75]], [2.0, 4.0], [[4.0, 1.0], [1.0, 16.0]])
    assert out.tolist() == [pytest.approx(1.0), pytest.approx(0.25 * 2.0 + 0.75 * 1.0)]


def test_weighted_standard_error_bad_input():
    with pytest.raises(ValueError, match="counts must be finite and > 0"):
        weighted_standard_error([0.5, 0.5], [1.0, 1.0], [4.0, 0.0])
    with pytest.raises(ValueError, match="sigma must have one entry per bin"):
        weighted_standard_error([0.5, 0.5], [1.0], 4)
    with pytest.raises(ValueError, match="shape of shares"):
        weighted_standard_error([0.5, 0.5], [1.0, 1.0], [4.0, 4.0, 4.0])
    with pytest.raises(ValueError, match="shares"):
        weighted_standard_error([-0.5, 1.5], [1.0, 1.0], 4)
    with pytest.raises(TypeError, match="counts"):
        weighted_standard_error([0.5, 0.5], [1.0, 1.0], "four")


@given(
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8),
    st.floats(0.1, 3.0),
    st.floats(1.0, 12.0),
    st.lists(st.floats(0.2, 5.0), min_size=8, max_size=8),
)
def test_wse_uniform_is_optimal_for_equal_sigma(raw_shares, sigma, nbar, raw_n):
    """GDRO eq. 23 with one sigma for every bin: ``1/sqrt(n)`` is convex, so by Jensen's inequality
    every allocation meeting the mean budget ``sum_b q_b n_b = n_bar`` has
    ``WSE >= sigma / sqrt(n_bar)``, the compute-matched uniform value (equality at ``n_b = n_bar``)."""
    q = np.array(raw_shares) / np.sum(raw_shares)
    n = np.array(raw_n[: q.size])
    n = n * nbar / float(q @ n)  # rescale to meet the mean budget exactly
    s = np.full(q.size, sigma)
    uniform = weighted_standard_error(q, s, nbar)
    assert uniform == pytest.approx(sigma / math.sqrt(nbar))
    assert weighted_standard_error(q, s, n) >= uniform * (1 - 1e-12)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=30), st.integers(1, 5))
def test_area_under_curve_bounds(ys, gap):
    """The normalised area is a weighted mean of the values: it lies between their min and max."""
    x = np.arange(len(ys)) * gap
    a = area_under_curve(x, ys)
    assert min(ys) - 1e-12 <= a <= max(ys) + 1e-12


# ------------------------------------------------------------------------- gradient variance
def _small_env(seed=0, **kw):
    return SoftmaxRLVR(n_prompts=6, n_answers=4, dim=3, seed=seed, **kw)


@given(st.integers(0, 10_000), st.integers(2, 9), st.sampled_from(["rloo", "drgrpo"]))
def test_group_variance_terms_trace_equals_exact_variance(seed, n, estimator):
    """Hoeffding's U-statistic variance of the RLOO group estimate holds per coordinate
    (``sim.group_variance``'s derivation is coordinate-wise): the per-coordinate variances from
    :func:`group_variance_terms` sum to the exact trace of :func:`sim.group_gradient_variance`, the
    terms' mean is the exact batch gradient, and the weighted form equals the weighted sum."""
    env = _small_env(seed)
    ids = np.arange(env.n_prompts)
    pi, r, sc = env.policy(ids), env.reward_table[ids], env.scores(ids)
    t = group_variance_terms(pi, r, sc)
    per = t.variance(n, estimator=estimator)
    assert per.shape == (env.n_prompts, env.dim) and np.all(per >= 0)
    exact = group_gradient_variance(pi, r, sc, n, estimator=estimator)
    assert np.allclose(per.sum(axis=1), exact, rtol=1e-10, atol=1e-15)
    assert np.allclose(t.mean.sum(axis=0) / env.n_prompts, env.true_gradient(ids), atol=1e-12)
    w = np.random.default_rng(seed).random(env.dim)
    assert np.allclose(t.variance(n, weights=w, estimator=estimator), per @ w, rtol=1e-10, atol=1e-15)
    table = t.variance(np.broadcast_to(np.arange(2, 6), (env.n_prompts, 4)), weights=w, estimator=estimator)
    assert np.allclose(table[:, 1], t.variance(3, weights=w, estimator=estimator))


def test_a_coefficient_is_the_single_rollout_variance():
    """``a = E[(r - p)^2 (s_d - E s_d)^2]`` summed over d: VIP's a_q without the independence assumption,
    checked against an explicit loop over answers."""
    env = _small_env(1)
    ids = np.arange(env.n_prompts)
    pi, r, sc = env.policy(ids), env.reward_table[ids], env.scores(ids)
    t = group_variance_terms(pi, r, sc)
    for q in range(env.n_prompts):
        p = float(pi[q] @ r[q])
        direct = sum(pi[q, k] * (r[q, k] - p) ** 2 * float(sc[q, k] @ sc[q, k]) for k in range(env.n_answers))
        assert t.a[q].sum() == pytest.approx(direct, rel=1e-12)


def test_normalised_variance_equals_monte_carlo():
    """The per-coordinate variance of the RLOO batch gradient and its Adam-geometry form
    ``sum_d Var(g_d) / v_d`` equal a direct Monte Carlo over ``env.rollout`` (ragged counts; the batch
    gradient of every replicate built from its own rollouts exactly as ``env.gradient`` builds it,
    which the first replicate checks), and ``v`` is the Monte Carlo second moment of the gradient."""
    from solvers import group_advantages

    env = _small_env(2)
    ids = np.arange(env.n_prompts)
    counts = np.array([2, 3, 5, 2, 4, 3])
    b, reps = ids.size, 40_000
    t = group_variance_terms(env.policy(ids), env.reward_table[ids], env.scores(ids))
    coord = t.variance(counts).sum(axis=0) / b**2
    mean = t.mean.sum(axis=0) / b
    v = second_moment_scale(mean, coord)
    batch = env.rollout(np.tile(ids, reps), np.tile(counts, reps), np.random.default_rng(0))
    adv = group_advantages(batch.rewards, kind="rloo", group_ids=batch.group_ids)
    sc = env.scores(ids)
    q = batch.group_ids % b
    contrib = (adv / (b * batch.counts[batch.group_ids]))[:, None] * sc[q, batch.actions]
    g = np.zeros((reps, env.dim))
    np.add.at(g, batch.group_ids // b, contrib)
    first = batch.group_ids < b
    one = env.rollout(ids, counts, np.random.default_rng(0))
    assert np.allclose(env.gradient(one, "rloo"), g[0]) and np.array_equal(one.actions, batch.actions[first])
    assert np.allclose(g.mean(axis=0), mean, atol=4 * np.sqrt(coord / reps).max())
    assert np.allclose(g.var(axis=0), coord, rtol=0.05)
    assert np.allclose((g * g).mean(axis=0), v, rtol=0.05)
    mc = float(np.sum((g / np.sqrt(v)).var(axis=0)))
    assert normalised_variance(coord, v) == pytest.approx(mc, rel=0.03)
    # a wrong group-size law (the Dr. GRPO scaling) would be detected at this precision
    wrong = t.variance(counts, estimator="drgrpo").sum(axis=0) / b**2
    assert normalised_variance(wrong, v) < 0.9 * mc


def test_second_moment_scale_and_normalised_variance_hand_values():
    assert second_moment_scale([3.0, 0.0, 0.0], [16.0, 1.0, 0.0]).tolist() == [25.0, 1.0, math.inf]
    assert normalised_variance([16.0, 2.0, 0.0], [32.0, 4.0, math.inf]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        second_moment_scale([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="variance"):
        second_moment_scale([1.0], [-1.0])
    with pytest.raises(ValueError, match="scale must be positive"):
        normalised_variance([1.0, 1.0], [1.0, 0.0])
    t = group_variance_terms([[0.5, 0.5]], [[1.0, 0.0]], [[[1.0], [-1.0]]])
    with pytest.raises(ValueError, match="n must be >= 2"):
        t.variance(1)
    with pytest.raises(ValueError, match="weights must have one entry per coordinate"):
        t.variance(2, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="probs rows must sum to 1"):
        group_variance_terms([[0.5, 0.4]], [[1.0, 0.0]], [[[1.0], [-1.0]]])


def _independent_terms(rng, n_prompts=5, m=3):
    """Outcomes = (reward outcome) x (score outcome), drawn independently: VIP Assumption 4.1 exactly."""
    probs, rewards, scores = [], [], []
    for _ in range(n_prompts):
        p = rng.uniform(0.05, 0.95)
        sp = rng.dirichlet(np.ones(3))
        s = rng.normal(size=(3, m))
        s -= sp @ s  # centred scores
        probs.append(np.outer([p, 1 - p], sp).ravel())
        rewards.append(np.repeat([1.0, 0.0], 3))
        scores.append(np.tile(s, (2, 1)))
    return group_variance_terms(np.array(probs), np.array(rewards), np.array(scores))


@given(st.integers(0, 10_000), st.integers(2, 4))
def test_exact_a_allocation_is_optimal_under_independence(seed, mean_budget):
    """VIP Prop 4.3 / E.2 are exact under Assumption 4.1 (``mean = 0``, ``a = vr_vs``): every group
    variance is ``a_q / (n - 1)``, so VIP's rule with the exact ``a_q`` reaches the exact optimum
    of :func:`exact_optimal_counts` (same objective value)."""
    rng = np.random.default_rng(seed)
    t = _independent_terms(rng)
    assert np.allclose(t.mean, 0.0, atol=1e-12) and np.allclose(t.a, t.vr_vs)
    b, lower, upper = t.a.shape[0], 2, 9
    total = b * mean_budget
    w = rng.random(t.a.shape[1]) + 0.1
    table = t.variance(np.broadcast_to(np.arange(lower, upper + 1), (b, upper - lower + 1)), weights=w)
    opt = exact_optimal_counts(table, lower, total)
    got = exact_a_allocation(t, total, lower, upper, weights=w)
    assert got.sum() == total and got.min() >= lower and got.max() <= upper
    rows = np.arange(b)
    assert table[rows, got - lower].sum() == pytest.approx(table[rows, opt - lower].sum(), rel=1e-9)


def test_binding_control_picks_the_failing_or_weakest():
    claim = mean_ci([0.0, 0.01, -0.01, 0.005, -0.005])
    strong, weak, bad = mean_ci([1.0, 1.1, 0.9, 1.05, 0.95]), mean_ci([0.5, 0.55, 0.45, 0.5, 0.5]), \
        mean_ci([0.0, 0.2, -0.2, 0.1, -0.1])
    label, est, note = binding_control(claim, {"a": strong, "b": weak}, greater=0.0)
    assert label == "b" and est is weak and "control a" in note and "passes" in note
    label, est, note = binding_control(claim, {"a": strong, "c": bad, "b": weak}, greater=0.0)
    assert label == "c" and "control b" in note
    label, _, _ = binding_control(mean_ci([1.0, 1.01, 0.99]), {"x": mean_ci([0.5, 0.51, 0.49])}, less=1.0)
    assert label == "x"
    with pytest.raises(ValueError, match="exactly one"):
        binding_control(claim, {"a": strong})
    with pytest.raises(ValueError, match="at least one"):
        binding_control(claim, {}, greater=0.0)


# ------------------------------------------------------------------------------- training loop
_ENV = {"n_prompts": 64, "n_test": 16, "n_answers": 8, "dim": 8, "mix": None}
_TRAIN = {"batch": 16, "lr": 0.02, "estimator": "rloo"}
_BUDGET = {"mean_budget": 4, "lower": 2, "upper": 12}


def _ids_sequence(name, seed, steps=10):
    env = make_split_env(_ENV, seed)
    ctrl = None if name == EXACT else make_study_controller(name, env, _BUDGET, seed)
    tr = ControlledTrainer(env, ctrl, _TRAIN, _ENV["n_prompts"], seed)
    seq, totals = [], []
    for _ in range(steps):
        ids, plan, batch = tr.sample()
        seq.append(ids.tolist())
        if plan is not None:
            totals.append(int(plan.counts.sum()))
            assert batch.rewards.size == plan.counts.sum()
        tr.update(ids, plan, batch)
    return seq, totals, env


@pytest.mark.parametrize("name", ["vip", "rollout-gdro", "prompt-gdro", "oracle", EXACT])
def test_same_seed_same_batches_for_every_learner(name):
    """Pairing: the mini-batches depend on the seed only, so paired differences compare the same data;
    every controller spends exactly batch x mean_budget rollouts per step; training moves theta and
    only the training prompts are drawn."""
    ref, _, _ = _ids_sequence("uniform", 3)
    seq, totals, env = _ids_sequence(name, 3)
    assert seq == ref
    assert all(t == _TRAIN["batch"] * _BUDGET["mean_budget"] for t in totals)
    assert max(max(s) for s in seq) < _ENV["n_prompts"]
    assert not np.array_equal(env.theta, np.eye(_ENV["dim"])[0])
    assert _ids_sequence("uniform", 4)[0] != ref


def test_split_env_and_study_controller_options():
    env = make_split_env(_ENV, 0)
    assert env.n_prompts == _ENV["n_prompts"] + _ENV["n_test"]
    assert np.array_equal(make_split_env(_ENV, 0).features, env.features)
    oracle = make_study_controller("oracle", env, _BUDGET, 0)
    ids = np.arange(8)
    assert np.array_equal(oracle.predict(ids), env.success_prob(ids))  # the exact p was passed
    vip = make_study_controller("vip", env, _BUDGET, 0)
    assert vip.plan(ids).counts.sum() == 8 * _BUDGET["mean_budget"]


def test_all_equal_groups():
    env = make_split_env(_ENV, 1)
    batch = env.rollout(np.arange(6), [3, 1, 4, 2, 5, 3], np.random.default_rng(0))
    expect = [np.ptp(batch.rewards[batch.group_ids == i]) == 0 for i in range(6)]
    assert all_equal_groups(batch).tolist() == expect
    assert all_equal_groups(batch)[1]  # a group of one is trivially all-equal


# ------------------------------------------------------------------------------------ studies
STUDY_NAMES = ("training", "gdro")
_TRAINING_CLAIMS = {
    "vip_vs_uniform_auc", "vip_paper_vs_uniform_auc", "oracle_vs_uniform_auc", "vip_vs_inverse_accuracy_auc",
    "vip_vs_inverse_variance_auc", "vip_vs_skip_saturated_auc", "vip_vs_uniform_pass", "vip_vs_uniform_mean",
    "vip_variance_along_training", "vip_normalised_variance_along_training",
}
EXPECTED_CLAIMS = {
    "training": {f"training.{c}" for c in _TRAINING_CLAIMS} | {f"training.powered.{c}" for c in _TRAINING_CLAIMS},
    "gdro": {
        "gdro.rollout_wse", "gdro.rollout_proxy", "gdro.sqrt_law_proxy", "gdro.prompt_gdro_pass8",
        "gdro.prompt_gdro_paper_step_pass8", "gdro.rollout_gdro_pass8", "gdro.prompt_gdro_worst_group",
        "gdro.prompt_gdro_paper_step_worst_group", "gdro.prompt_gdro_lead", "gdro.prompt_gdro_lead_decays",
        "gdro.powered.rollout_wse", "gdro.powered.rollout_proxy", "gdro.powered.sqrt_law_proxy",
        "gdro.powered.prompt_gdro_pass8", "gdro.powered.rollout_gdro_pass8", "gdro.powered.prompt_gdro_worst_group",
        "gdro.powered.prompt_gdro_lead", "gdro.powered.prompt_gdro_lead_decays",
        "gdro.powered.rollout_gdro_posterior_bins_proxy", "gdro.powered.rollout_gdro_posterior_bins_churn",
        "gdro.powered.sqrt_law_posterior_bins_proxy", "gdro.powered.sqrt_law_posterior_bins_churn",
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def quick_results():
    return {name: run_study(name, scale="quick") for name in STUDY_NAMES}


def test_registry_order():
    order = list(STUDIES)
    assert order.index("variance") < order.index("training") < order.index("gdro") < order.index("predictor")
    assert {"training", "gdro"} <= set(DEFAULT_STUDIES)


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_protocol_and_configs(name):
    mod = load_study(name)
    assert mod.NAME == name and mod.TITLE
    for scale in ("quick", "default", "full"):
        cfg = mod.config(scale)
        assert cfg["seeds"] >= (5 if scale != "quick" else 2)
        json.dumps(cfg)
    with pytest.raises(ValueError, match="scale must be"):
        mod.config("huge")
    cfg = mod.config("default")
    tasks = mod.tasks(cfg, (0, 1))
    keys = [(t.get("regime", "default"), t["seed"], t["controller"]) for t in tasks]
    assert len(set(keys)) == len(keys)  # one task per (regime, seed, learner)


def test_training_regimes_config():
    """The default regime is the study's original setting; the powered regime is the documented one
    (d = 128, 32 topics, no shared skill, hard mixture, 4 rollouts in [2, 12], 320 steps), and both run
    every controller of CONTROLLERS (less the regime's exclusions) plus the two control arms."""
    from sim.studies import training

    cfg = training.config("default")
    assert list(cfg["regimes"]) == ["default", "powered"] == list(training.REGIMES)
    d, p = cfg["regimes"]["default"], cfg["regimes"]["powered"]
    assert d["env"] == {"n_prompts": 1024, "n_test": 256, "n_answers": 16, "dim": 32, "mix": None}
    assert d["budget"] == {"mean_budget": 8, "lower": 3, "upper": 24}
    assert d["training"] == {"batch": 32, "steps": 320, "lr": 0.02, "estimator": "rloo"}
    assert p["env"]["dim"] == 128 and p["env"]["n_topics"] == 32 and p["env"]["shared_skill"] == 0.0
    assert p["env"]["mix"] == {"easy": 0.05, "medium": 0.15, "hard": 0.60, "nearly-unsolvable": 0.20}
    assert p["budget"] == {"mean_budget": 4, "lower": 2, "upper": 12}
    assert p["training"] == {"batch": 32, "steps": 320, "lr": 0.02, "estimator": "rloo"}
    assert training.learners(cfg, "default") == [*training.CONTROLLERS, UNIFORM_2X, EXACT]
    assert set(training.learners(cfg, "powered")) >= {"uniform", "vip", "vip-paper", "oracle", UNIFORM_2X, EXACT}
    env = make_split_env({**p["env"], "n_prompts": 64, "n_test": 16}, 0)
    assert env.dim == 128 and env.config["n_topics"] == 32 and env.config["shared_skill"] == 0.0
    assert env.config["mix"] == pytest.approx([0.05, 0.15, 0.60, 0.20])
    default_env = make_split_env({**d["env"], "n_prompts": 64, "n_test": 16}, 0)
    assert default_env.config == SoftmaxRLVR(n_prompts=80, n_answers=16, dim=32, seed=0).config  # defaults kept
    with pytest.raises(ValueError, match="unknown env options"):
        make_split_env({**d["env"], "n_topic": 3}, 0)


def test_uniform_2x_arm_spends_twice_the_budget():
    budget = {"mean_budget": 4, "lower": 2, "upper": 6}
    assert learner_budget(UNIFORM_2X, budget) == {"mean_budget": 8, "lower": 2, "upper": 8}
    assert learner_budget("vip", budget) == budget
    env = make_split_env(_ENV, 0)
    ctrl = make_learner(UNIFORM_2X, env, budget, 0)
    assert ctrl.plan(np.arange(10)).counts.tolist() == [8] * 10
    assert make_learner(EXACT, env, budget, 0) is None


def test_adding_a_controller_name_is_enough():
    """A controller outside every figure family goes to an "other controllers" panel; a subset of
    controllers (no vip) still summarises (the claims that need a missing learner are left out)."""
    from sim.studies import training

    assert training._families(["uniform", "vip", "sqrt-law"])["other controllers"] == ["sqrt-law"]
    cfg = training.config("quick")
    cfg["controllers"] = ["uniform", "oracle", "inverse-accuracy"]
    tasks = training.tasks(cfg, (0, 1))
    res = training.summarize(cfg, (0, 1), tasks, [training.run_task(t, cfg) for t in tasks])
    assert {c.key for c in res.claims} == {"training.oracle_vs_uniform_auc", "training.powered.oracle_vs_uniform_auc"}
    assert res.figures and res.tables


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_quick_result_structure(name, quick_results):
    res = quick_results[name]
    assert isinstance(res, StudyResult) and res.name == name
    assert {c.key for c in res.claims} == EXPECTED_CLAIMS[name]
    for c in res.claims:
        assert c.verdict in VERDICTS and c.source and c.metric and c.reason
        assert c.estimate.n == len(res.seeds)
    assert res.tables and res.figures and res.summary
    for fig in res.figures:
        for panel in fig.panels:
            assert panel.xlabel and panel.ylabel and panel.series
            for s in panel.series:
                assert len(s.x) == len(s.y) > 0
    json.dumps(res.to_dict())


def test_training_claims_carry_controls(quick_results):
    """Every comparative claim has a positive control from the same run, in its units: the control
    arms against uniform for accuracy claims (the binding one of the two), the exact optimum for
    variance claims; regimes are named in the key and the claim."""
    res = quick_results["training"]
    for c in res.claims:
        assert c.criterion[:1] in "<>" and c.control is not None, c.key
        assert c.regime == ("default" if c.key.count(".") == 1 else c.key.split(".")[1])
        if c.key.endswith("variance_along_training"):
            assert c.control.label.startswith("exact optimum")
        else:
            arm, baseline = c.control.label.split(" - ")
            assert arm in (UNIFORM_2X, EXACT) and baseline.replace("-", "_") in c.key.split("_vs_")[1]
            other = EXACT if arm == UNIFORM_2X else UNIFORM_2X
            assert f"control {other} - {baseline}" in c.reason
    for reg in ("default", "powered"):
        assert f"Regime {reg}" in res.summary


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_same_seeds_same_result_dict(name, quick_results):
    assert run_study(name, scale="quick").to_dict() == quick_results[name].to_dict()


def test_training_numbers(quick_results):
    """Numbers that hold by construction: accuracies are probabilities, the uniform controller's
    variance ratio to uniform counts is exactly 1 in both geometries, no allocation's variance is below
    the exact optimum of the same step, uniform-2x halves RLOO's variance at least roughly, and every
    learner of a regime starts from the same policy."""
    res = quick_results["training"]
    runs = res.data["runs"]
    for reg in ("default", "powered"):
        names = [n for n in (*res.config["controllers"], UNIFORM_2X, EXACT)
                 if n not in res.config["regimes"][reg].get("exclude", ())]
        for s in res.seeds:
            first = {runs[f"{reg}/{s}/{n}"]["test_acc"][0] for n in names}
            assert len(first) == 1
            u = runs[f"{reg}/{s}/uniform"]
            assert u["raw_ctrl"] == u["raw_uniform"] and u["norm_ctrl"] == u["norm_uniform"]
            assert all(0.0 <= a <= 1.0 for a in u["test_acc"] + u["test_pass"] + u["train_acc"])
            for n in names:
                r = runs[f"{reg}/{s}/{n}"]
                if n in (EXACT, UNIFORM_2X):
                    continue
                for geo in ("raw", "norm"):
                    assert np.all(np.array(r[f"{geo}_ctrl"]) >= np.array(r[f"{geo}_opt"]) * (1 - 1e-9)), (reg, n)
            r2 = runs[f"{reg}/{s}/{UNIFORM_2X}"]
            assert np.all(np.array(r2["raw_ctrl"]) < 0.6 * np.array(r2["raw_uniform"]))
        assert res.data["variance_ratio"][reg]["uniform"] == [1.0] * len(res.seeds)


def test_gdro_numbers(quick_results):
    """Numbers that hold by construction, in every regime: GRPO's and Prompt-GDRO's WSE and eq. 19
    changes are exactly 0 (their counts are the compute-matched uniform ones); the oracle's change is
    <= 0 (uniform n_bar is one of its candidates) and never above the learner's own; shares, budget
    shares and weights are distributions; every claim names its regime and carries a control."""
    res = quick_results["gdro"]
    assert set(res.data["regimes"]) == {"default", "powered"}
    for data in res.data["regimes"].values():
        zeros = pytest.approx([0.0] * len(res.seeds), abs=1e-9)
        for n in ("uniform", "prompt-gdro"):
            assert data["wse_change_pct"][n] == zeros and data["proxy_change_pct"][n] == zeros
        for key, own in (("wse", "wse_change_pct"), ("proxy", "proxy_change_pct")):
            for n, vals in data["oracle_change_pct"][key].items():
                assert all(v <= 1e-9 for v in vals)
                assert all(v <= o + 1e-9 for v, o in zip(vals, data[own][n]))
        for key, run in data["runs"].items():
            assert np.allclose(np.sum(run["shares"], axis=1), 1.0)
            assert np.allclose(np.sum(run["budget_share"], axis=1), 1.0)
            if "weights" in run:
                assert np.allclose(np.sum(run["weights"], axis=1), 1.0)
        for n, counts in data["worst_class_counts"].items():
            assert sum(counts.values()) == len(res.seeds)
    for c in res.claims:
        assert c.regime == ("default" if c.key.count(".") == 1 else c.key.split(".")[1])
        assert c.control is not None, c.key


def test_gdro_lead_lag_leaves_out_all_unseen_steps_and_oracle_targets_the_worst_class():
    """The lead-lag claim drops the steps in which every prompt of the batch is unseen (all in bin 0 by
    eq. 11, which decides the gap's sign); the oracle-gdro control puts all its weight on the class with
    the lowest exact success probability (eq. 13's worst group), normalised by its share (eq. 17)."""
    from sim.studies import gdro

    cfg = gdro.config("quick")
    reg = cfg["regimes"]["default"]
    out = gdro.run_task({"seed": 0, "regime": "default", "controller": "prompt-gdro"}, cfg)
    epoch = reg["env"]["n_prompts"] // reg["training"]["batch"]
    assert not any(out["seen_steps"][:epoch]) and all(out["seen_steps"][epoch:])
    env = make_split_env(reg["env"], 0)
    oracle = gdro._WorstClassOracle(env, 4)
    ids = np.arange(40)
    plan = oracle.plan(ids)
    cls = env.difficulty[ids]
    p = env.success_prob(ids)
    worst = min(set(cls.tolist()), key=lambda c: p[cls == c].mean())
    assert np.all(plan.multipliers[cls != worst] == 0.0)
    assert np.allclose(plan.multipliers[cls == worst], min(ids.size / np.sum(cls == worst), 15.0))
    assert plan.counts.tolist() == [4] * ids.size


def test_gdro_binning_comparison(quick_results):
    """Posterior vs pass@k bins (powered regime): the posterior learners run the same controllers with
    binning="posterior" (statistic "variance"); the oracle on true-variance bins never does worse than
    uniform (n_bar in every bin is one of its candidates); churn is a share; the four claims are project
    checks citing GDRO App. B, each with its positive control in its own units (points)."""
    from bandits import PassAtKBinner, PosteriorBinner
    from sim.studies import gdro

    res = quick_results["gdro"]
    cfg = res.config
    assert {"rollout-gdro-posterior", "sqrt-law-posterior"} <= set(cfg["regimes"]["powered"]["learners"])
    assert not {"rollout-gdro-posterior", "sqrt-law-posterior"} & set(cfg["regimes"]["default"]["learners"])
    env = make_split_env(cfg["regimes"]["powered"]["env"], 0)
    budget = cfg["regimes"]["powered"]["budget"]
    for n, ref in gdro.POSTERIOR.items():
        post = make_study_controller(ref, env, budget, 0, gdro._learner_options(n, cfg, cfg["regimes"]["powered"]))
        plain = make_study_controller(ref, env, budget, 0, gdro._learner_options(ref, cfg, cfg["regimes"]["powered"]))
        assert isinstance(post.binner, PosteriorBinner) and post.binner.statistic == "variance"
        assert isinstance(plain.binner, PassAtKBinner)
    data = res.data["regimes"]["powered"]
    for n in gdro.POSTERIOR:
        b = data["binning"][n]
        assert all(0.0 <= v <= 100.0 for v in b["churn_pct"] + b["reference_churn_pct"] + b["true_bin_churn_pct"])
        for s in res.seeds:
            assert data["runs"][f"{s}/{n}"]["proxy_oracle_true_bins_ratio"] <= 1.0 + 1e-12
    binning = [c for c in res.claims if "posterior_bins" in c.key]
    assert len(binning) == 4
    for c in binning:
        assert c.kind == "project check" and c.source == "GDRO App. B (future work: uncertainty-aware binning)"
        assert c.regime == "powered" and c.criterion == "< 0" and c.control is not None
    assert any(f.name == "powered_binning" for f in res.figures)
    assert "Posterior (variance) vs pass@k bins" in res.summary


def test_bin_churn_counts_revisits_from_the_third_visit():
    """Churn counts a revisit only when its bin and the previous visit's bin both rest on observations
    (the third visit on), and counts the learner's and the true-variance bins' changes separately."""
    from sim.studies.gdro import _BinChurn

    c = _BinChurn(4)
    ids = np.array([0, 1, 2])
    assert c.update(ids, np.array([0, 0, 0]), np.array([5, 5, 5])) == (0, 0, 0)  # first visit: unseen bins
    assert c.update(ids, np.array([3, 4, 0]), np.array([5, 6, 5])) == (0, 0, 0)  # second: prior bin -> data
    assert c.update(np.array([0, 1, 3]), np.array([3, 5, 1]), np.array([6, 6, 0])) == (2, 1, 1)
    assert c.update(np.array([2, 3]), np.array([1, 1]), np.array([5, 0])) == (1, 1, 0)
