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
from sim.studies._controlled import (
    EXACT,
    ControlledTrainer,
    all_equal_groups,
    make_split_env,
    make_study_controller,
)
from sim.studies.metrics import (
    area_under_curve,
    bin_means,
    pooled_bin_std,
    steps_to_target,
    weighted_standard_error,
)
from solvers.claims import VERDICTS, StudyResult

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
EXPECTED_CLAIMS = {
    "training": {
        "training.vip_vs_uniform_auc", "training.vip_paper_vs_uniform_auc", "training.oracle_vs_uniform_auc",
        "training.vip_vs_inverse_accuracy_auc", "training.vip_vs_inverse_variance_auc",
        "training.vip_vs_skip_saturated_auc", "training.vip_vs_uniform_pass", "training.vip_vs_uniform_mean",
        "training.vip_variance_along_training",
    },
    "gdro": {
        "gdro.rollout_wse", "gdro.rollout_proxy", "gdro.sqrt_law_proxy", "gdro.prompt_gdro_pass8",
        "gdro.prompt_gdro_paper_step_pass8", "gdro.rollout_gdro_pass8", "gdro.prompt_gdro_worst_group",
        "gdro.prompt_gdro_paper_step_worst_group", "gdro.prompt_gdro_lead", "gdro.prompt_gdro_lead_decays",
        "gdro.powered.rollout_wse", "gdro.powered.rollout_proxy", "gdro.powered.sqrt_law_proxy",
        "gdro.powered.prompt_gdro_pass8", "gdro.powered.rollout_gdro_pass8", "gdro.powered.prompt_gdro_worst_group",
        "gdro.powered.prompt_gdro_lead", "gdro.powered.prompt_gdro_lead_decays",
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
    # one task per (regime, seed, learner)
    assert len({(t.get("regime"), t["seed"], t["controller"]) for t in tasks}) == len(tasks)


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


@pytest.mark.parametrize("name", STUDY_NAMES)
def test_same_seeds_same_result_dict(name, quick_results):
    assert run_study(name, scale="quick").to_dict() == quick_results[name].to_dict()


def test_training_numbers(quick_results):
    """Numbers that hold by construction: accuracies are probabilities, the uniform controller's
    variance ratio to uniform counts is exactly 1, and every learner starts from the same policy."""
    res = quick_results["training"]
    runs = res.data["runs"]
    seeds = res.seeds
    for s in seeds:
        first = {runs[f"{s}/{n}"]["test_acc"][0] for n in (*res.config["controllers"], EXACT)}
        assert len(first) == 1
        u = runs[f"{s}/uniform"]
        assert u["var_ctrl"] == u["var_uniform"]
        assert all(0.0 <= a <= 1.0 for a in u["test_acc"] + u["test_pass"])
    assert res.data["variance_ratio"]["uniform"] == [1.0] * len(seeds)


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
