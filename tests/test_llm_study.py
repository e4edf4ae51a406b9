"""The ``llm`` study (llm_bridge.study): protocol, determinism, the positive control, the head to
head at equal rollouts and at equal tokens, and a quick end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchmarks.study_runner import run_study
from llm_bridge import study
from solvers.claims import VERDICTS, to_jsonable


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ROBUST_ROLLOUTS_CACHE", str(tmp_path_factory.getbasetemp() / "llm-study-cache"))


def test_config_and_tasks():
    cfg = study.config("default")
    regimes = cfg["regimes"]
    assert list(regimes) == ["default", "powered"]
    assert regimes["default"]["learners"] == ["uniform", "vip", "rollout-gdro", "prompt-gdro", "uniform-2x"]
    assert regimes["powered"]["learners"] == ["uniform", "vip", "rollout-gdro", "prompt-gdro", "knapsack",
                                              "reinforce-ada", "dapo-dynamic", "ar3po", "greso", "uniform-2x"]
    t = cfg["train"]
    assert t["prompts_per_step"] * t["mean_budget"] == 128  # default: equal rollouts per step for every controller
    assert regimes["powered"]["train"] == {"mean_budget": 4}  # the control-chosen regime changes the budget only
    tasks = study.tasks(cfg, range(3))
    assert len(tasks) == 3 * (5 + 10)
    # learner by learner across seeds: parallel workers start on different seeds (one warm start each)
    assert [(x["regime"], x["seed"], x["controller"]) for x in tasks[:4]] == [
        ("default", 0, "uniform"), ("default", 1, "uniform"), ("default", 2, "uniform"), ("default", 0, "vip")]
    assert study.config("full")["seeds"] >= cfg["seeds"]
    with pytest.raises(ValueError, match="scale must be"):
        study.config("huge")


def test_the_control_arm_doubles_the_budget():
    cfg = study.config("default")
    two = study._train_config({"regime": "powered", "seed": 0, "controller": "uniform-2x"}, cfg)
    one = study._train_config({"regime": "powered", "seed": 0, "controller": "uniform"}, cfg)
    assert (one.controller, one.mean_budget, two.controller, two.mean_budget) == ("uniform", 4, "uniform", 8)
    assert one.upper == two.upper == 16 and one.lr == two.lr and one.steps == two.steps
    small = dict(cfg, train=dict(cfg["train"], upper=6))
    assert study._train_config({"regime": "default", "seed": 0, "controller": "uniform-2x"}, small).upper == 16


def test_run_task_is_a_pure_function():
    cfg = study.config("quick")
    task = {"regime": "powered", "seed": 1, "controller": "reinforce-ada"}
    a = to_jsonable(study.run_task(task, cfg))
    b = to_jsonable(study.run_task(task, cfg))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    t = cfg["train"]
    assert a["budget"] == t["prompts_per_step"] * 2 and a["rollouts_per_step"] <= a["budget"]
    assert a["eval_steps"] == [0, 1, 2] and a["eval_tokens"][0] == 0
    assert a["eval_tokens"] == sorted(a["eval_tokens"]) and a["eval_rollouts"][-1] == a["rollouts_per_step"] * 2


def _fake(regime, controller, seed, curve, tokens, share=0.5):
    return {"regime": regime, "controller": controller, "seed": seed, "eval_steps": [0, 10, 20],
            "eval_mean": list(curve), "eval_pass": [min(1.0, 2 * v) for v in curve], "eval_tokens": list(tokens),
            "eval_rollouts": [0, 640, 1280], "per_prompt_first": [0.1, 0.5, 0.9], "per_prompt_last": [0.2, 0.6, 0.9],
            "train_accuracy": [0.5] * 20, "budget": 64, "rollouts_per_step": 64.0, "tokens_per_step": tokens[-1] / 20,
            "rounds_per_step": 1.0, "all_equal_share": share, "trained_share": 1.0, "counts_std": 0.0,
            "counts_max": 4, "parameters": 1000}


def test_summary_verdicts_control_and_equal_tokens():
    """Synthetic runs: the control (uniform-2x) passes, VIP's lead holds; Knapsack's effective-rollout
    share is tested against the control in its own units; at equal tokens a learner that spends
    half the tokens per step is compared with uniform's first half of training."""
    cfg = study.config("default")
    cfg = dict(cfg, regimes={"powered": {"train": {"mean_budget": 4},
                                         "learners": ["uniform", "vip", "knapsack", "dapo-dynamic", "uniform-2x"]}})
    rng = np.random.default_rng(0)
    results = []
    for s in range(6):
        base = 0.3 + 0.05 * s
        noise = rng.normal(0, 0.002, 4)
        results += [
            _fake("powered", "uniform", s, [base, base + 0.02, base + 0.04], [0, 1000, 2000], share=0.40),
            _fake("powered", "vip", s, [base, base + 0.04 + noise[0], base + 0.06], [0, 1000, 2000], share=0.40),
            _fake("powered", "knapsack", s, [base, base + 0.02 + noise[1], base + 0.04], [0, 1000, 2000],
                  share=0.40 - 0.05 - noise[2]),
            # half the tokens per step, the same curve per step: behind uniform per step, equal per token
            _fake("powered", "dapo-dynamic", s, [base, base + 0.01 + noise[3], base + 0.02], [0, 500, 1000]),
            _fake("powered", "uniform-2x", s, [base, base + 0.10 + noise[1], base + 0.12], [0, 2000, 4000],
                  share=0.30 + noise[0]),
        ]
    res = study.summarize(cfg, range(6), [], results)
    claims = {c.key: c for c in res.claims}
    assert claims["llm.powered.vip_mean"].verdict == "holds"
    assert claims["llm.powered.vip_mean"].control.passes
    eff = claims["llm.powered.knapsack_effective"]
    assert eff.estimate.mean == pytest.approx(0.05, abs=0.01) and eff.control.estimate.mean == pytest.approx(0.1, abs=0.01)
    assert claims["llm.powered.knapsack_mean"].verdict in VERDICTS
    assert "llm.powered.reinforce_ada_mean" not in claims  # not run: no claim
    assert claims["llm.powered.rises.uniform"].kind == "project check"
    assert claims["llm.powered.rises.uniform"].source == "this project"
    # equal tokens: the common budget is dapo's 1000 tokens; uniform read at 1/6..6/6 of it
    g = study._Regime("powered", cfg["regimes"]["powered"]["learners"], results)
    assert g.token_budget.tolist() == [1000.0] * 6
    np.testing.assert_allclose(g.token_auc("dapo-dynamic") - g.token_auc("uniform"),
                               g.token_curve("dapo-dynamic").mean(1) - g.token_curve("uniform").mean(1))
    np.testing.assert_allclose(g.token_curve("uniform")[0, -1], 0.3 + 0.02)  # uniform at 1000 tokens = step 10
    heads = [t for t in res.tables if "equal generated tokens" in t.title][0]
    ranked = [row[1] for row in heads.rows]
    assert ranked[0] == "uniform-2x" or ranked[0] == "vip"
    rows = {t.title: t for t in res.tables}
    per_step = [t for t in res.tables if "equal rollouts per step" in t.title][0]
    dapo = [row for row in per_step.rows if row[1] == "dapo-dynamic"][0]
    assert dapo[3].startswith("worse")  # behind uniform per step ...
    dapo_tok = [row for row in heads.rows if row[1] == "dapo-dynamic"][0]
    assert not dapo_tok[3].startswith("worse")  # ... but not per generated token
    assert rows and {f.name for f in res.figures} == {"curves_powered", "head_to_head", "compute"}
    json.dumps(to_jsonable(res.to_dict()))


def test_quick_study_end_to_end():
    result = run_study("llm_bridge.study", scale="quick")
    keys = [c.key for c in result.claims]
    assert keys[:4] == [f"llm.rises.{c}" for c in study.CLAIM_CONTROLLERS]
    assert {"llm.vip_mean", "llm.vip_pass", "llm.rollout_gdro_pass", "llm.prompt_gdro_pass",
            "llm.powered.vip_mean", "llm.powered.knapsack_effective", "llm.powered.knapsack_mean",
            "llm.powered.reinforce_ada_mean"} <= set(keys)
    assert all(c.verdict in VERDICTS for c in result.claims)
    assert all(c.control is not None for c in result.claims if c.kind == "paper claim")
    assert all(c.source == "this project" or "arXiv" in c.source or c.source.startswith(("VIP", "GDRO"))
               for c in result.claims)
    titles = [t.title for t in result.tables]
    assert sum("head to head" in t for t in titles) == 4  # two regimes x (equal rollouts, equal tokens)
    assert {f.name for f in result.figures} == {"curves_default", "curves_powered", "head_to_head", "compute"}
    json.dumps(result.to_dict())
