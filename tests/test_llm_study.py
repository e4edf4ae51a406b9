"""The ``llm`` study (llm_bridge.study): protocol, determinism and a quick end-to-end run."""

from __future__ import annotations

import json

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
    assert cfg["controllers"] == ["uniform", "vip", "rollout-gdro", "prompt-gdro"]
    t = cfg["train"]
    assert t["prompts_per_step"] * t["mean_budget"] == 128  # equal rollouts per step for every controller
    tasks = study.tasks(cfg, range(2))
    assert [(x["seed"], x["controller"]) for x in tasks[:5]] == [
        (0, "uniform"), (0, "vip"), (0, "rollout-gdro"), (0, "prompt-gdro"), (1, "uniform")]
    assert study.config("full")["seeds"] >= study.config("default")["seeds"]
    with pytest.raises(ValueError, match="scale must be"):
        study.config("huge")


def test_run_task_is_a_pure_function():
    cfg = study.config("quick")
    task = {"seed": 1, "controller": "vip"}
    a = to_jsonable(study.run_task(task, cfg))
    b = to_jsonable(study.run_task(task, cfg))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["rollouts_per_step"] == [cfg["train"]["prompts_per_step"] * cfg["train"]["mean_budget"]]
    assert a["eval_steps"] == [0, 2, 4]


def test_quick_study_end_to_end():
    result = run_study("llm_bridge.study", scale="quick")
    keys = [c.key for c in result.claims]
    assert keys[:4] == [f"llm.rises.{c}" for c in study.CONTROLLERS]
    assert {"llm.vip_mean", "llm.vip_pass", "llm.rollout_gdro_pass", "llm.prompt_gdro_pass"} <= set(keys)
    assert all(c.verdict in VERDICTS for c in result.claims)
    assert len(result.tables[0].rows) == 4 and result.figures[0].name == "curves"
    json.dumps(result.to_dict())
