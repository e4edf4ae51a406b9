"""End-to-end tests of the GRPO trainer on a tiny model (CPU, one thread): uneven counts with a
group of one, exact zeros, log-prob consistency, non-zero gradients, bit-identical resume, and
the trainer's bad-input errors."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from llm_bridge.metrics import pass_at_k, success_metrics

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _llm_tiny import TINY, tiny_config

import llm_bridge.trainer as trainer_mod
from bandits.controllers import StepPlan
from llm_bridge.batch import policy_token_logprobs
from llm_bridge.generation import SamplingConfig
from llm_bridge.models import build_model
from llm_bridge.tokenizer import char_tokenizer
from llm_bridge.trainer import TrainConfig, Trainer

torch.set_num_threads(1)

COUNTS = np.array([1, 3, 2, 5, 1, 4])  # uneven, two groups of one


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("warm-cache"))


class FixedCounts:
    """A test controller: fixed uneven counts, non-trivial multipliers, records observations."""

    name = "fixed-test"

    def __init__(self, counts=COUNTS):
        self.counts = np.asarray(counts, dtype=np.int64)
        self.observed = []
        self.step = 0

    def plan(self, prompt_ids):
        m = np.linspace(0.5, 1.5, len(prompt_ids))
        return StepPlan(self.counts.copy(), m)

    def observe(self, prompt_ids, counts, rewards, group_ids):
        self.observed.append((np.array(prompt_ids), np.array(counts), np.array(rewards), np.array(group_ids)))
        self.step += 1

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])


def test_end_to_end_uneven_counts(cache, monkeypatch, tmp_path):
    ctrl = FixedCounts()
    tr = Trainer(tiny_config(cache), controller=ctrl, out_dir=tmp_path)
    captured = {"batches": [], "direct": [], "adv": []}
    generate = tr.backend.generate

    def spy_generate(prompts, counts, sampling):
        batch = generate(prompts, counts, sampling)
        with torch.no_grad():  # the policy at sampling time, one plain forward pass
            direct, _ = policy_token_logprobs(tr.model, batch.input_ids, batch.attention_mask, batch.prompt_length,
                                              temperature=sampling.temperature)
        captured["batches"].append(batch)
        captured["direct"].append((direct.double() * batch.completion_mask.double()).sum(1).numpy())
        return batch

    real_step = tr.robust

    def spy_adv(*args, **kwargs):  # the one robust step; multipliers per rollout, as before
        res = real_step(*args, **kwargs)
        captured["adv"].append(SimpleNamespace(advantages=res.advantages, multipliers=res.multipliers[res.group_ids]))
        return res

    monkeypatch.setattr(tr.backend, "generate", spy_generate)
    monkeypatch.setattr(tr, "robust", spy_adv)
    records = tr.train()
    assert [r["step"] for r in records] == [1, 2, 3]
    for rec, batch, direct, adv, (ids, counts, rewards, gids) in zip(records, captured["batches"], captured["direct"],
                                                                      captured["adv"], ctrl.observed):
        # counts honoured: the batch, the record and the controller's observation
        np.testing.assert_array_equal(np.bincount(batch.group_ids, minlength=6), COUNTS)
        np.testing.assert_array_equal(counts, COUNTS)
        assert rec["counts"] == COUNTS.tolist() and rec["rollouts"] == COUNTS.sum()
        np.testing.assert_array_equal(gids, batch.group_ids)
        assert rewards.shape == (COUNTS.sum(),) and np.all((rewards >= 0) & (rewards <= 1))
        # exact zeros: groups of one and groups whose rewards are all equal
        for g in range(6):
            sel = gids == g
            if COUNTS[g] == 1 or np.all(rewards[sel] == rewards[sel][0]):
                assert np.all(adv.advantages[sel] == 0.0)
        np.testing.assert_array_equal(adv.multipliers, np.linspace(0.5, 1.5, 6)[gids])
        # sequence log-probs of the sampler == a direct forward pass of the policy
        np.testing.assert_allclose(batch.sequence_logprobs(), direct, rtol=0, atol=1e-4)
        # the loss has a gradient whenever some advantage is non-zero
        assert np.isfinite(rec["loss"])
        assert (rec["grad_norm"] > 0) == bool(np.any(adv.advantages != 0))
        assert rec["tokens_generated"] == int(batch.completion_mask.sum())
        assert rec["bridge_overhead_s"] >= 0 and rec["time_step_s"] > 0
    assert all(np.any(a.advantages != 0) for a in captured["adv"])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
    assert json.loads((tmp_path / "config.json").read_text())["controller"] == "uniform"


@pytest.mark.parametrize("controller", ["prompt-gdro", "vip", "reinforce-ada", "dapo-dynamic", "greso"])
def test_resume_is_bit_identical(cache, tmp_path, controller):
    """4 steps straight == 2 steps, checkpoint, a new process-like trainer from the checkpoint, 2 steps
    (round controllers too: rounds, skipped prompts, dropped groups and baselines; response reuse is
    checked in tests/test_llm_rounds.py)."""
    cfg = tiny_config(cache, controller=controller, mean_budget=4, lower=2, upper=8, steps=4, eval_every=2,
                      kl_coef=0.05, shaping="drro", shaping_delta=0.5, shaping_tau=2.0, shaping_alpha=1.0)
    straight = Trainer(cfg)
    rec_a = straight.train()
    first = Trainer(cfg, out_dir=tmp_path / "run")
    first.train(2)
    ckpt = first.save_checkpoint(tmp_path / "ckpt")
    first.train(1)  # the run goes on; the resumed one must rewrite step 3
    resumed = Trainer.from_checkpoint(ckpt, out_dir=tmp_path / "run")
    assert resumed.step == 2
    rec_c = resumed.train()
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)

    def strip(records):
        return [{k: v for k, v in r.items() if not k.startswith("time_") and "overhead" not in k} for r in records]

    assert strip(rec_a)[-len(rec_c):] == strip(rec_c)
    assert json.dumps(straight.controller.state_dict(), default=repr) == json.dumps(resumed.controller.state_dict(),
                                                                                     default=repr)
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2, 3, 4, 4]  # evaluations at 0, 2, 4; step 3 of the first run was dropped


def test_checkpoint_from_another_configuration_is_refused(cache, tmp_path):
    tr = Trainer(tiny_config(cache, steps=1))
    tr.train()
    ckpt = tr.save_checkpoint(tmp_path / "ckpt")
    other = Trainer(tiny_config(cache, steps=1, lr=2e-3))
    with pytest.raises(ValueError, match=r"another configuration; differs in: lr \(0.001 in the checkpoint, 0.002 here\)"):
        other.load_checkpoint(ckpt)
    longer = Trainer(tiny_config(cache, steps=5))  # steps do not change the trajectory: accepted
    longer.load_checkpoint(ckpt)
    assert longer.step == 1
    with pytest.raises(ValueError, match="is not a trainer checkpoint"):
        longer.load_checkpoint(tmp_path)


def test_bad_input_errors(cache, tmp_path):
    with pytest.raises(ValueError, match=r"unknown task 'algebra'; valid tasks: \[.*'arithmetic'"):
        Trainer(tiny_config(cache, task="algebra"))
    with pytest.raises(ValueError, match=r"unknown controller 'greedy'; valid controllers: \[.*'vip'"):
        Trainer(tiny_config(cache, controller="greedy"))
    with pytest.raises(ValueError, match=r"unknown backend 'tgi'; valid backends: \['hf', 'vllm'\]"):
        Trainer(tiny_config(cache, backend="tgi"))
    with pytest.raises(ValueError, match="controller 'oracle' needs true success probabilities"):
        Trainer(tiny_config(cache, controller="oracle", lower=2))
    with pytest.raises(ValueError, match="prompts_per_step 20 exceeds the pool size n_prompts=12"):
        Trainer(tiny_config(cache, prompts_per_step=20))
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        if not torch.cuda.is_available():
            Trainer(tiny_config(cache, device="cuda"))
        else:  # pragma: no cover
            raise ValueError("torch sees no CUDA device")
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        Trainer(tiny_config(cache, aggregation="sum"))
    # counts < 1 from a controller: the backend refuses before anything is generated
    tr = Trainer(tiny_config(cache), controller=FixedCounts([1, 0, 2, 5, 1, 4]))
    with pytest.raises(ValueError, match=r"counts must be >= 1 for every prompt, got 0 at index 1"):
        tr.train(1)
    assert tr.step == 0
    # a local checkpoint whose tokenizer lacks the task's characters
    tok = char_tokenizer("0123456789+=")
    build_model(TINY, tok).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"lacks characters of task 'arithmetic-partial': \['\*', '-'\]"):
        Trainer(tiny_config(cache, model_path=str(tmp_path / "m")))


def test_local_checkpoint_model_trains(cache, tmp_path):
    tok = char_tokenizer("0123456789+-*=")
    build_model(TINY, tok, seed=1).save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    tr = Trainer(tiny_config(cache, model_path=str(tmp_path / "m"), steps=1, controller="uniform"))
    rec = tr.train()[-1]
    assert rec["rollouts"] == 18 and rec["counts"] == [3] * 6


def test_evaluation_leaves_training_randomness_alone(cache):
    a = Trainer(tiny_config(cache, steps=2))
    b = Trainer(tiny_config(cache, steps=2))
    ev = b.evaluate(samples=2)
    assert 0.0 <= ev["eval_accuracy"] <= 1.0 and len(ev["eval_per_prompt"]) == 12
    ra, rb = a.train(), b.train()
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


# ----------------------------------------------------------------------------- metrics
def test_success_metrics_are_prompt_averages():
    rewards = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5])
    groups = np.array([0, 0, 0, 0, 1, 1, 2])
    m = success_metrics(rewards, groups, 3, k=2)
    assert m["accuracy"] == pytest.approx((0.25 + 1.0 + 0.0) / 3)
    assert m["reward"] == pytest.approx((0.25 + 1.0 + 0.5) / 3)
    assert m["pass_at_n"] == pytest.approx(2 / 3)
    assert m["pass_at_k"] == pytest.approx((pass_at_k(4, 1, 2) + 1.0) / 2)  # group 2 has < k rollouts
    assert m["solved_all"] == pytest.approx(1 / 3) and m["solved_none"] == pytest.approx(1 / 3)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert success_metrics([0.0], [0], 1, k=4)["pass_at_k"] is None
    with pytest.raises(ValueError, match="every group"):
        success_metrics([1.0], [1], 2)


# ----------------------------------------------------------------------------- CLI
def test_cli_train_and_resume(tmp_path, capsys):
    from benchmarks.cli import main

    common = ["--task", "arithmetic-partial", "--n-prompts", "8", "--prompts-per-step", "4", "--mean-budget", "3",
              "--lower", "2", "--upper", "6", "--hidden-size", "32", "--layers", "1", "--heads", "2",
              "--warm-start-steps", "20", "--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "4",
              "--eval-every", "2", "--eval-samples", "2", "--no-progress", "--out", str(tmp_path / "run")]
    assert main(["train", "--controller", "prompt-gdro", "--steps", "2", *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and 0.0 <= summary["eval_last"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()
    assert main(["train", "--resume", str(tmp_path / "run" / "checkpoint"), "--steps", "3", *common]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 2, 3, 3]  # the CLI always evaluates at the last step (here 3)
    assert main(["train", "--controller", "greedy", "--steps", "1", *common]) == 2
    assert "unknown controller 'greedy'" in capsys.readouterr().err
    assert main(["train", "--backend", "tgi", "--steps", "1", *common]) == 2
    assert "unknown backend 'tgi'" in capsys.readouterr().err


def test_config_round_trip_and_checkpoint_encoding():
    cfg = TrainConfig(controller="vip", controller_options={"cost": "drgrpo"}, shaping="drro", shaping_tau=2.0,
                      sampling=SamplingConfig(max_new_tokens=7, top_k=5), model=TINY)
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    assert "steps" not in cfg.fingerprint() and "lr" in cfg.fingerprint()
    state = {"a": np.arange(5, dtype=np.int64), "b": [np.float32(1.5), {"c": np.array([[0.1, np.pi]])}],
             "rng": np.random.default_rng(3).bit_generator.state}
    back = trainer_mod._decode(json.loads(json.dumps(trainer_mod._encode(state))))
    assert back["a"].dtype == np.int64 and back["a"].tolist() == [0, 1, 2, 3, 4]
    assert back["b"][1]["c"].tobytes() == state["b"][1]["c"].tobytes()  # bit-exact floats
    assert back["rng"] == state["rng"]


def test_shaping_budget_group_scaling_is_an_explicit_option():
    """The trainer's shaping is the robust step's: delta scaled by n_g / mean_budget (the default, DRRO
    Sec. 4.5's scaled budget), or one budget for every group; one KL window."""
    from llm_bridge.robust_step import DEFAULT_KL_WINDOW

    scaled = Trainer.shaping_spec(TrainConfig(shaping="drro", shaping_delta=0.8, shaping_tau=2.0, mean_budget=4,
                                              shaping_alpha=1.0))
    assert scaled.reference_group_size == 4 and scaled.tau == 2.0 and scaled.kl_alpha == 1.0
    assert scaled.kl_window == DEFAULT_KL_WINDOW == trainer_mod.KL_WINDOW
    np.testing.assert_allclose(scaled.group_budget(0.8, np.array([1, 4, 8])), [0.2, 0.8, 1.6])
    same = Trainer.shaping_spec(TrainConfig(shaping="dro", shaping_delta=0.8, shaping_scale_by_group_size=False))
    assert same.reference_group_size is None and same.tau is None and same.kl_alpha is None
    np.testing.assert_allclose(same.group_budget(0.8, np.array([1, 4, 8])), [0.8, 0.8, 0.8])
    assert Trainer.shaping_spec(TrainConfig()) is None
    with pytest.raises(TypeError, match="shaping_scale_by_group_size must be a bool"):
        TrainConfig(shaping_scale_by_group_size=1).validate()
