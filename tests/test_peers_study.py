"""The ``peers`` study: every controller head to head at equal rollouts per step (quick scale)."""

import json

import numpy as np
import pytest

from bandits.controllers import CONTROLLERS
from bandits.controllers.uniform import UniformController
from benchmarks.study_runner import DEFAULT_STUDIES, STUDIES, load_study, run_study
from sim.studies import peers, training
from solvers.claims import mean_ci


@pytest.fixture(scope="module")
def quick_pair():
    """Two quick runs on the same seeds."""
    return run_study("peers", scale="quick"), run_study("peers", scale="quick")


def test_registered_as_an_optional_study():
    mod = load_study("peers")
    assert mod is peers and STUDIES["peers"] == "sim.studies.peers" and "peers" not in DEFAULT_STUDIES
    for scale in ("quick", "default", "full"):
        cfg = peers.config(scale)
        assert cfg["seeds"] >= (2 if scale == "quick" else 5)
        json.dumps(cfg)
    with pytest.raises(ValueError, match="scale must be"):
        peers.config("huge")


@pytest.mark.parametrize("scale", ["quick", "default", "full"])
def test_the_regime_is_the_training_studys_powered_regime(scale):
    ours = peers.config(scale)["regimes"]["powered"]
    theirs = training.config(scale)["regimes"]["powered"]
    assert set(ours) == {"env", "training", "budget", "eval_every"}
    assert all(ours[k] == theirs[k] for k in ours)


def test_runs_every_registered_candidate_and_picks_up_new_ones(monkeypatch):
    cfg = peers.config("quick")
    expected = [n for n in peers.CANDIDATES if n in CONTROLLERS]
    assert cfg["controllers"] == expected
    assert set(peers.ORIGINAL) | set(peers.PEERS) <= set(expected)  # the ten and the five peers
    monkeypatch.setitem(CONTROLLERS, "sqrt-law", UniformController)  # stands in for a later registration
    assert peers.config("quick")["controllers"][-1] == "sqrt-law"
    monkeypatch.delitem(CONTROLLERS, "sqrt-law")
    assert "sqrt-law" not in peers.config("quick")["controllers"]


def test_structure(quick_pair):
    res, _ = quick_pair
    cfg = res.config
    names = [*cfg["controllers"], *peers.ARMS]
    assert res.seeds == (0, 1)
    auc = res.data["auc"]["powered"]
    assert list(auc) == names and all(len(v) == 2 and np.all(np.isfinite(v)) for v in auc.values())
    ranking = res.data["ranking"]["powered"]
    assert sorted(ranking) == sorted(names)
    means = [np.mean(auc[n]) for n in ranking]
    assert means == sorted(means, reverse=True)
    for lo, hi in res.data["rank_interval"]["powered"].values():
        assert 1 <= lo <= hi <= len(names)
    assert {c.key for c in res.claims} == {f"peers.powered.{n.replace('-', '_')}_vs_uniform_auc" for n in peers.PEERS}
    assert {f.name for f in res.figures} == {"ranking", "differences", "compute", "curves"}
    rank_table, cost_table = res.tables
    assert [row[1] for row in rank_table.rows] == ranking
    assert len(cost_table.rows) == len(names) - 1  # every learner but the exact gradient spends rollouts
    labels = {s.label for f in res.figures for p in f.panels for s in p.series}
    assert set(names) <= labels  # series are labelled with the learners' canonical names
    if "sqrt-law" not in cfg["controllers"]:
        assert "not run: sqrt-law" in res.summary  # the summary says which candidates did not run


def test_every_comparative_claim_has_a_positive_control(quick_pair):
    res, _ = quick_pair
    for c in res.claims:
        assert c.criterion.startswith(("<", ">"))
        assert c.control is not None and c.control.label in {f"{arm} - uniform" for arm in peers.ARMS}
        assert c.regime == "powered" and c.source.split(" (")[0] in {"Knapsack RL", "Reinforce-Ada", "GRESO",
                                                                      "DAPO", "AR3PO"}


def test_deterministic_for_fixed_seeds(quick_pair):
    a, b = quick_pair
    assert a.data["ranking"] == b.data["ranking"]
    assert a.data["rank_interval"] == b.data["rank_interval"]
    assert a.to_dict() == b.to_dict()


def test_equal_compute_and_what_the_rounds_spend(quick_pair):
    res, _ = quick_pair
    budget = res.config["regimes"]["powered"]["budget"]["mean_budget"]
    cost = res.data["cost"]["powered"]
    for n, spent in cost["spent_per_prompt"].items():
        if n == "uniform-2x":
            assert np.allclose(spent, 2 * budget)
        elif n in ("reinforce-ada", "dapo-dynamic", "ar3po"):  # round controllers spend at most the budget
            assert np.all(np.array(spent) <= budget + 1e-12)
        else:  # single-round controllers spend it exactly
            assert np.allclose(spent, budget)
    for n in ("dapo-dynamic", "greso"):  # drop exactly the all-equal groups: what is trained is what is not wasted
        assert np.allclose(np.array(cost["trained"][n]) + np.array(cost["wasted"][n]), 1.0)
    assert np.all(np.array(cost["rounds"]["dapo-dynamic"]) > 1.0)
    assert np.allclose(cost["rounds"]["uniform"], 1.0) and np.allclose(cost["trained"]["uniform"], 1.0)


def _synthetic(lead: dict[str, float], seeds=tuple(range(8))):
    """Results for every task, without training: held-out curves ``base + lead * t / T`` with a
    seed-dependent base and a small seed-dependent wobble (paired noise)."""
    cfg = peers.config("quick")
    tasks = peers.tasks(cfg, seeds)
    x = np.array(training.checkpoints(cfg["regimes"]["powered"]), dtype=float)
    results = []
    for t in tasks:
        rng = np.random.default_rng([t["seed"], sorted(peers.learners(cfg)).index(t["controller"])])
        base = 0.2 + 0.01 * t["seed"]
        acc = base + lead.get(t["controller"], 0.0) * x / x[-1] + 0.0005 * rng.standard_normal()
        r = {"test_acc": acc.tolist()}
        if t["controller"] != peers.EXACT:
            r.update(spent_per_prompt=4.0, wasted=0.5, trained=1.0, rounds=1.0, max_rounds=1, skipped=0.0, reused=0.0)
        results.append(r)
    return cfg, seeds, tasks, results


def test_verdicts_follow_the_controls():
    """Strong controls: a peer with a lead holds, one without does not; the Holm family flags it.
    Null controls (the arms no better than uniform): every claim is under-powered."""
    cfg, seeds, tasks, results = _synthetic({"uniform-2x": 0.02, "exact-gradient": 0.04, "knapsack": 0.02,
                                             "greso": -0.02})
    res = peers.summarize(cfg, seeds, tasks, results)
    verdict = {c.key.split(".")[-1]: c.verdict for c in res.claims}
    assert verdict["knapsack_vs_uniform_auc"] == "holds"
    assert verdict["greso_vs_uniform_auc"] == "does not hold"
    assert res.data["holm_auc_vs_uniform"]["powered"]["knapsack"] is True
    assert res.data["ranking"]["powered"][0] == "exact-gradient"
    rank_rows = {row[1]: row for row in res.tables[0].rows}
    assert rank_rows["knapsack"][10] == "better" and rank_rows["greso"][10] == "worse"
    assert rank_rows["vip"][10] == "n.s." and rank_rows["uniform-2x"][10] == "control arm"
    null = peers.summarize(*_synthetic({"knapsack": 0.02}))
    assert {c.verdict for c in null.claims} == {"under-powered"}


def test_rank_intervals_and_p_values():
    auc = {"a": np.array([3.0, 3.1, 2.9, 3.0]), "b": np.array([2.0, 2.1, 1.9, 2.0]), "c": np.array([1.0, 1.1, 0.9, 1.2])}
    ci = peers.rank_intervals(auc, (0, 1, 2, 3), 500)
    assert ci == {"a": (1.0, 1.0), "b": (2.0, 2.0), "c": (3.0, 3.0)}
    assert ci == peers.rank_intervals(auc, (0, 1, 2, 3), 500)
    tied = peers.rank_intervals({"a": np.array([1.0, 2.0, 3.0]), "b": np.array([3.0, 2.0, 1.0])}, (5, 6, 7), 500)
    assert tied["a"] == (1.0, 2.0) and tied["b"] == (1.0, 2.0)
    up, down = mean_ci([0.1, 0.2, 0.15, 0.12]), mean_ci([-0.1, -0.2, -0.15, -0.12])
    assert peers.two_sided_p(up) == pytest.approx(peers.two_sided_p(down)) and peers.two_sided_p(up) < 0.01
    assert peers.two_sided_p(mean_ci([0.1, -0.1, 0.05, -0.05])) > 0.5
