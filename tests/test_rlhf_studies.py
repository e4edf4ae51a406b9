"""The three RLHF studies (``overopt``, ``preference-shift``, ``rate``) at quick scale: protocol,
structure, determinism (same seeds -> identical result dict), and their helpers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.study_runner import DEFAULT_STUDIES, STUDIES, load_study, run_study
from sim.rlhf import FiniteResponseRLHF
from solvers import dro_policy, waterfill, worst_case_regret
from solvers.claims import VERDICTS, StudyResult

RLHF_STUDIES = {"overopt": 6, "preference-shift": 6, "rate": 8}  # name -> number of claims


@pytest.mark.parametrize("name", list(RLHF_STUDIES))
def test_registered_and_default(name):
    assert name in STUDIES and name in DEFAULT_STUDIES
    mod = load_study(name)
    assert mod.NAME == name
    for scale in ("quick", "default", "full"):
        cfg = mod.config(scale)
        assert cfg["seeds"] >= (2 if scale == "quick" else 5)
    tasks = mod.tasks(mod.config("default"), range(mod.config("default")["seeds"]))
    assert all("seed" in t for t in tasks)


@pytest.fixture(scope="module")
def quick_runs():
    return {name: (run_study(name, scale="quick"), run_study(name, scale="quick")) for name in RLHF_STUDIES}


@pytest.mark.parametrize("name", list(RLHF_STUDIES))
def test_quick_run_structure_and_determinism(quick_runs, name):
    first, second = quick_runs[name]
    assert isinstance(first, StudyResult)
    assert first.to_dict() == second.to_dict()  # pure function of seeds and config
    assert first.name == name
    assert len(first.claims) >= RLHF_STUDIES[name]
    prefix = name.replace("-", "_") + "."
    for c in first.claims:
        assert c.key.startswith(prefix)
        assert c.verdict in VERDICTS and c.reason
    assert first.figures and first.tables and first.summary
    for fig in first.figures:
        for panel in fig.panels:
            assert panel.series


def test_overopt_trajectories_are_consistent(quick_runs):
    res = quick_runs["overopt"][0]
    curves = res.data["curves"]
    assert set(curves) == {"grpo", "grpo_kl", "dro", "drro_hard", "drro_soft", "drro_soft_dyn"}
    for c in curves.values():
        assert c["gold_mean"][0] == 0.0 and c["proxy_mean"][0] == 0.0 and c["kl_mean"][0] == pytest.approx(0.0)
        assert min(c["kl_mean"]) >= 0.0
    # GRPO climbs the proxy it is trained on
    assert curves["grpo"]["proxy_mean"][-1] > 0.5
    keys = {c.key for c in res.claims}
    assert {"overopt.thm61_regret", "overopt.thm61_rank_preserving"} <= keys


def test_overopt_task_matches_across_methods_in_common_randomness():
    """Methods of one seed share the environment and its step-0 evaluation (paired comparisons)."""
    mod = load_study("overopt")
    cfg = mod.config("quick")
    cfg = {**cfg, "steps": 10, "eval_every": 5}
    a = mod.run_task({"seed": 1, "method": "grpo"}, cfg)
    b = mod.run_task({"seed": 1, "method": "drro_soft_dyn"}, cfg)
    assert a["pilot_discrepancy"] == b["pilot_discrepancy"] and a["agreement"] == b["agreement"]
    assert b["budget"][0] == 0.0  # Algorithm 4: the dynamic budget starts from delta0 = 0
    with pytest.raises(ValueError, match="method must be one of"):
        mod.run_task({"seed": 1, "method": "ppo"}, cfg)


def test_thm61_helper_against_direct_evaluation():
    mod = load_study("overopt")
    env = FiniteResponseRLHF(n_train=2, n_eval=30, n_responses=6, dim=2, seed=5)
    for delta in (0.0, 0.3, 2.0, 10.0):
        excess, rank_min, gold_adv = mod._thm61(env, delta)
        r = env.eval.proxy
        pr, pd = waterfill(r, delta), dro_policy(r, delta)
        direct = worst_case_regret(pr, r, delta).value - worst_case_regret(pd, r, delta).value
        assert excess == pytest.approx(direct.max()) and excess <= 1e-12
        assert rank_min >= -1e-12
        assert gold_adv == pytest.approx(((pr - pd) * env.eval.gold).sum(1).mean())


def test_rate_wasserstein_target_is_the_population_minimiser():
    mod = load_study("rate")
    theta = np.array([0.6, 0.8])
    for radius in (0.05, 0.5, 3.0):
        w = mod.wasserstein_target(theta, 1.0, radius)
        grid = np.linspace(0, 1, 20001)
        f = np.sqrt(2 * (1 - grid) ** 2 + 2) + radius * grid
        c = grid[np.argmin(f)]
        np.testing.assert_allclose(w, c * theta, atol=1e-4)


def test_studies_import_neither_torch_nor_matplotlib():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, sim, sim.studies.overopt, sim.studies.preference_shift, sim.studies.rate; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'cvxpy') if m in sys.modules))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
