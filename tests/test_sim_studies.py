"""The simulator studies at quick scale: result structure, figures, and determinism (same seeds ->
identical result dict)."""

import json

import numpy as np
import pytest

from benchmarks.study_runner import STUDIES, load_study, run_study
from solvers.claims import VERDICTS, StudyResult

SIM_STUDIES = ("variance", "predictor")

_ALLOC = ("alloc_vip_vs_uniform", "alloc_vip_paper_vs_uniform", "alloc_oracle_vs_uniform",
          "alloc_vip_vs_inverse_accuracy", "alloc_vip_vs_inverse_variance")
EXPECTED_CLAIMS = {
    "variance": {
        "variance.prop_4_2", "variance.prop_4_3", "variance.prop_e_1", "variance.prop_e_2",
        "variance.softmax_formula_initial", "variance.softmax_formula_trained",
        "variance.app_b_fisher_initial", "variance.app_b_fisher_trained",
        "variance.app_b_levene_initial", "variance.app_b_levene_trained", "variance.app_b_control",
        *(f"variance.{prefix}{c}{suffix}" for prefix in ("", "powered.") for c in _ALLOC
          for suffix in ("", "_normalised")),
    },
    "predictor": {"predictor.gp_vs_moving_average", "predictor.gp_vs_ridge", "predictor.gp_vs_beta_binomial",
                  "predictor.topic-clusters.gp_vs_moving_average", "predictor.topic-clusters.gp_vs_ridge",
                  "predictor.topic-clusters.gp_vs_beta_binomial"},
}  # fmt: skip


@pytest.fixture(scope="module")
def quick_results():
    return {name: run_study(name, scale="quick") for name in SIM_STUDIES}


@pytest.mark.parametrize("name", SIM_STUDIES)
def test_registered_and_protocol(name):
    assert name in STUDIES
    mod = load_study(name)
    assert mod.NAME == name and mod.TITLE
    for scale in ("quick", "default", "full"):
        cfg = mod.config(scale)
        assert cfg["seeds"] >= (5 if scale != "quick" else 2)
        json.dumps(cfg)
    with pytest.raises(ValueError, match="scale must be"):
        mod.config("huge")


@pytest.mark.parametrize("name", SIM_STUDIES)
def test_quick_result_structure(name, quick_results):
    res = quick_results[name]
    assert isinstance(res, StudyResult) and res.name == name
    assert {c.key for c in res.claims} >= EXPECTED_CLAIMS[name]
    for c in res.claims:
        assert c.verdict in VERDICTS and c.source and c.metric and c.reason
        assert c.estimate.n == len(res.seeds)
    assert res.tables and res.figures and res.summary
    for fig in res.figures:
        for panel in fig.panels:
            assert panel.xlabel and panel.ylabel and panel.series
            for s in panel.series:
                assert len(s.x) == len(s.y) > 0
                if s.style in ("line", "errorbar"):
                    assert s.low is not None, (fig.name, panel.title, s.label)  # CI bands on curves
    json.dumps(res.to_dict())


@pytest.mark.parametrize("name", SIM_STUDIES)
def test_same_seeds_same_result_dict(name, quick_results):
    assert run_study(name, scale="quick").to_dict() == quick_results[name].to_dict()


def test_variance_study_numbers(quick_results):
    """Sanity of the numbers that do not depend on Monte Carlo luck: the Monte Carlo / formula
    ratios on IndependentScoreBandit are near 1, and App. B's Fisher test rejects on SoftmaxRLVR
    (its reward and score norm are strongly dependent) by a wide margin."""
    claims = {c.key: c for c in quick_results["variance"].claims}
    for key in ("prop_4_2", "prop_4_3", "prop_e_1", "prop_e_2"):
        assert abs(claims[f"variance.{key}"].estimate.mean - 1.0) < 0.1
    for ck in ("initial", "trained"):
        assert claims[f"variance.app_b_fisher_{ck}"].verdict == "does not hold"
        assert claims[f"variance.softmax_formula_{ck}"].estimate.mean > 0


def test_exact_optimum_is_optimal_and_never_beaten(quick_results):
    """The exact-optimum reference (largest marginal decreases of convex per-prompt variances) equals
    brute force on small instances, and no controller's batch variance is below it at any step, in
    either geometry (raw trace; Adam's), in every regime."""
    import itertools

    from sim.studies.variance import REFERENCES, exact_optimal_counts

    rng = np.random.default_rng(0)
    for _ in range(20):
        b, lower, upper = 3, 2, 6
        beta = rng.normal(size=b)
        alpha = np.abs(beta) + rng.random(b)  # alpha >= 0, alpha + beta >= 0: convex for n >= 2
        n = np.arange(lower, upper + 1)
        table = beta[:, None] / n + alpha[:, None] / (n - 1)
        total = int(rng.integers(b * lower, b * upper + 1))
        best = min((c for c in itertools.product(n, repeat=b) if sum(c) == total),
                   key=lambda c: sum(table[q, c[q] - lower] for q in range(b)))
        got = exact_optimal_counts(table, lower, total)
        assert got.sum() == total
        assert sum(table[q, got[q] - lower] for q in range(b)) == pytest.approx(
            sum(table[q, best[q] - lower] for q in range(b)), rel=1e-12)
    alloc = quick_results["variance"].data["allocation"]
    assert set(alloc) == {"default", "powered"}
    for regime in alloc.values():
        for per_seed in regime.values():
            for field, opt_name in (("vector", REFERENCES[0]), ("normalised", REFERENCES[1])):
                opt = np.array(per_seed[opt_name][field])
                for name, rec in per_seed.items():
                    if name != "formula_rank_correlation":
                        assert np.all(np.array(rec[field]) >= opt * (1 - 1e-9)), (field, name)


def test_variance_claims_kinds_and_controls(quick_results):
    """App. B rows and the formula-on-SoftmaxRLVR rows are assumption checks, their negative control a
    project check; every allocation claim carries the exact optimum of its geometry as its positive
    control; the formula-based allocations' reasons give the numbers showing the formula is not the
    true variance."""
    res = quick_results["variance"]
    claims = {c.key: c for c in res.claims}
    for ck in ("initial", "trained"):
        for key in (f"app_b_fisher_{ck}", f"app_b_levene_{ck}", f"softmax_formula_{ck}"):
            assert claims[f"variance.{key}"].kind == "assumption check"
    assert claims["variance.app_b_control"].kind == "project check"
    assert claims["variance.app_b_control"].source == "this project (negative control of VIP App. B's Fisher test)"
    assert "IndependentScoreBandit" in claims["variance.app_b_fisher_initial"].reason
    for key, c in claims.items():
        if ".alloc_" in key:
            assert c.kind == "paper claim" and c.control is not None
            geometry = "Adam geometry" if key.endswith("_normalised") else None
            assert c.control.label.startswith("exact-optimum" + (f" ({geometry})" if geometry else " /"))
            assert c.regime == ("powered" if ".powered." in key else "default")
    for key in ("variance.alloc_oracle_vs_uniform", "variance.alloc_vip_paper_vs_uniform",
                "variance.powered.alloc_oracle_vs_uniform_normalised"):
        reason = claims[key].reason
        assert "the formula is not the true variance" in reason and "rank correlation" in reason
        assert "exact a_q reaches" in reason
    assert "Coordinate 0 holds" in res.summary
    assert "kept from the first version" in res.summary and "chosen there because its positive controls pass" in res.summary


def test_predictor_study_numbers(quick_results):
    res = quick_results["predictor"]
    assert set(res.data["regimes"]) == {"default", "topic-clusters"}
    for regime, data in res.data["regimes"].items():
        mae = np.array(data["mae"]["gp"])
        assert mae.shape == (3, 16) and np.all((mae >= 0) & (mae <= 1))
        # every prompt is new at the first step, and the policy learns along the trajectory
        assert np.all(np.array(data["seen_before"])[:, 0] == 0.0)
        overall = np.array(data["mean_success"])
        assert overall.shape == (3, 16) and np.all(overall[:, -1] > overall[:, 0])
        # the oracle (exact p of the previous step's policy) is the floor every predictor sits above
        oracle = np.array(data["mae"]["oracle-previous"])[:, 1:].mean()
        for k in ("gp", "gp-binomial", "moving-average", "ridge", "beta-binomial"):
            assert np.array(data["mae"][k])[:, 1:].mean() > oracle, (regime, k)
    for c in res.claims:  # every claim is paired against a baseline and carries the oracle control
        assert c.control is not None and c.control.label.startswith("oracle (previous step) - ")
        assert c.regime in ("default", "topic-clusters") and c.criterion == "< 0"
