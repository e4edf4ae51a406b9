"""The TRL integration against the real, installed TRL (``nox -s trl``; skipped without trl).

Real ``GRPOTrainer`` runs on CPU: a tiny Qwen2 built from a config with the project's character
tokenizer, the project's verifiable arithmetic task (partial-credit verifier), a few steps with
uneven rollout counts including a group of one. Checked: the real group sizes, the advantages TRL
trains on (ragged GRPO, size-1 groups 0, times the multipliers), shaping from the sequence
log-probabilities (checked against a direct forward pass), the controller's observations, the
``robust/*`` metrics in TRL's log, and that the parameters moved.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
torch.set_num_threads(1)

from trl import GRPOConfig

from bandits.controllers import make_controller
from llm_bridge.integrations.trl import RobustGRPOTrainer
from llm_bridge.models import ModelSpec, build_model
from llm_bridge.tasks import make_task
from llm_bridge.tokenizer import char_tokenizer
from solvers import drro_rewards, group_advantages

pytestmark = pytest.mark.trl

G = 4  # num_generations = the controller's mean budget
N_PROMPTS = 8


class ScriptedController:
    """Fixed counts and multipliers by position in the batch (the bandits.controllers protocol),
    recording observe(); bins are the prompt ids' parity."""

    def __init__(self, counts, multipliers=None):
        self.counts, self.mult = list(counts), list(multipliers or [1.0] * len(counts))
        self.observed = []

    def plan(self, prompt_ids):
        ids = np.asarray(prompt_ids, dtype=np.int64)
        return SimpleNamespace(counts=np.array(self.counts, dtype=np.int64), multipliers=np.array(self.mult),
                               bins=ids % 2)

    def observe(self, prompt_ids, counts, rewards, group_ids):
        self.observed.append(tuple(np.asarray(x).copy() for x in (prompt_ids, counts, rewards, group_ids)))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@pytest.fixture(scope="module")
def setup():
    task = make_task("arithmetic-partial", n_prompts=N_PROMPTS, seed=0)
    tok = char_tokenizer(task.alphabet)
    dataset = datasets.Dataset.from_dict({"prompt": task.prompts, "prompt_id": list(range(N_PROMPTS))})

    def reward(prompts, completions, prompt_id, **_):
        return task.verify(prompt_id, completions).tolist()

    return task, tok, dataset, reward


def _trainer(setup, tmp_path, controller, *, steps=3, **robust):
    _task, tok, dataset, reward = setup
    model = build_model(ModelSpec(hidden_size=32, num_layers=1, num_heads=2, max_positions=32), tok, seed=0)
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
        per_device_train_batch_size=16, num_generations=G, max_completion_length=4, max_steps=steps,
        learning_rate=5e-2, gradient_checkpointing=False, remove_unused_columns=False, seed=0,
        temperature=1.5, beta=0.0, dataloader_num_workers=0, bf16=False)
    return RobustGRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset,
                             processing_class=tok, controller=controller, **robust)


def test_real_grpo_run_with_uneven_counts(setup, tmp_path):
    # 4 prompts per generation batch of 16 rows; counts include a group of one and sum to 16
    counts = [1, 7, 4, 4]
    mult = [1.0, 2.0, 1.0, 0.5]
    ctrl = ScriptedController(counts, mult)
    trainer = _trainer(setup, tmp_path, ctrl)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.train()

    assert len(ctrl.observed) == 3  # one generation per step
    for pids, cnts, rewards, gids in ctrl.observed:
        assert cnts.tolist() == counts and cnts.sum() == 16 and len(set(pids.tolist())) == 4
        assert np.bincount(gids, minlength=pids.size).tolist() == cnts.tolist()
        assert rewards.min() >= 0 and rewards.max() <= 1
    step = trainer.last_step
    res = step["result"]
    assert res.group_sizes.tolist() == counts and res.multipliers.tolist() == mult
    expected = group_advantages(step["rewards"], kind="grpo", group_ids=step["group_ids"])
    expected *= np.array(mult)[step["group_ids"]]
    np.testing.assert_allclose(res.advantages, expected, rtol=0, atol=1e-12)
    for g, n in enumerate(res.group_sizes.tolist()):
        if n == 1:
            assert res.advantages[step["group_ids"] == g].tolist() == [0.0]
    # TRL trains on these advantages (shuffled into its buffered mini-batches)
    buffered = np.sort(np.concatenate([b["advantages"].numpy() for b in trainer._buffered_inputs]))
    np.testing.assert_allclose(buffered, np.sort(res.advantages), atol=1e-6)
    # robust/* metrics went through TRL's logger
    logged = [h for h in trainer.state.log_history if "robust/group_size/min" in h]
    assert logged and all(h["robust/group_size/min"] >= 1 for h in logged)
    assert any("robust/bin_1/rollouts" in h for h in logged)
    # at least one step had signal and the parameters moved
    assert any(np.abs(o[2] - o[2].mean()).max() > 0 for o in ctrl.observed)
    moved = max((p.detach() - before[k]).abs().max().item() for k, p in trainer.model.named_parameters())
    assert moved > 0


def test_real_controller_and_drro_shaping(setup, tmp_path):
    ctrl = make_controller("rollout-gdro", n_prompts=N_PROMPTS, mean_budget=G, lower=2, upper=8, seed=0)
    trainer = _trainer(setup, tmp_path, ctrl, steps=2, shaping="drro", shaping_params={"delta": 0.5})
    trainer.train()
    step = trainer.last_step
    res = step["result"]
    assert res.group_sizes.sum() == 16 and res.group_sizes.min() >= 2 and res.group_sizes.max() <= 8
    lp = step["seq_logprobs"]
    assert lp is not None and np.all(np.isfinite(lp)) and np.all(lp <= 0)
    shaped = drro_rewards(step["rewards"], lp, 0.5, group_ids=step["group_ids"]).rewards
    np.testing.assert_allclose(res.shaped_rewards, shaped, rtol=0, atol=1e-12)
    assert np.all(res.shaped_rewards - res.rewards >= 0) and (res.shaped_rewards - res.rewards).max() > 0
    expected = group_advantages(shaped, kind="grpo", group_ids=step["group_ids"]) * res.multipliers[step["group_ids"]]
    np.testing.assert_allclose(res.advantages, expected, atol=1e-12)


def test_checkpoint_saves_and_restores_the_controller(setup, tmp_path):
    ctrl = make_controller("rollout-gdro", n_prompts=N_PROMPTS, mean_budget=G, lower=2, upper=8, seed=0)
    trainer = _trainer(setup, tmp_path, ctrl, steps=2)
    trainer.args.save_strategy, trainer.args.save_steps = "steps", 2
    trainer.train()
    ckpt = tmp_path / "checkpoint-2"
    assert (ckpt / "robust_state.pkl").exists()
    fresh = make_controller("rollout-gdro", n_prompts=N_PROMPTS, mean_budget=G, lower=2, upper=8, seed=0)
    other = _trainer(setup, tmp_path / "b", fresh, steps=2)
    other.create_optimizer_and_scheduler(num_training_steps=2)
    other._load_optimizer_and_scheduler(str(ckpt))  # what Trainer.train(resume_from_checkpoint=...) calls
    probe = np.arange(4)
    a, b = ctrl.plan(probe), fresh.plan(probe)
    assert np.array_equal(a.counts, b.counts) and np.array_equal(a.multipliers, b.multipliers)


def test_sequence_logprobs_equal_a_direct_forward_pass(setup, tmp_path):
    trainer = _trainer(setup, tmp_path, ScriptedController([G] * 4), steps=1,
                       shaping="drro-soft", shaping_params={"delta": 0.3, "tau": 2.0})
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    lp = trainer.last_step["seq_logprobs"]
    ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    attn = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
    with torch.no_grad():
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        logits = trainer.model(input_ids=ids, attention_mask=attn, position_ids=pos).logits.double()
    logits = logits / trainer.temperature  # TRL scores the sampling distribution (tempered logits)
    k = out["completion_ids"].shape[1]
    logp = torch.log_softmax(logits[:, -k - 1:-1], dim=-1).gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)
    direct = (logp * out["completion_mask"]).sum(-1).numpy()
    np.testing.assert_allclose(lp, direct, rtol=1e-4, atol=1e-4)


def test_refusals(setup, tmp_path):
    ctrl = ScriptedController([G] * 4)
    with pytest.raises(TypeError, match="plan"):
        _trainer(setup, tmp_path, object())
    with pytest.raises(ValueError, match="unknown shaping rule"):
        _trainer(setup, tmp_path, ctrl, shaping="wasserstein")
    with pytest.raises(ValueError, match="needs reference log-probs"):
        _trainer(setup, tmp_path, ctrl, shaping="drro", shaping_params={"kl_alpha": 10.0})
    bad = ScriptedController([G + 1] * 4)
    trainer = _trainer(setup, tmp_path, bad, steps=1)
    with pytest.raises(RuntimeError, match="summing to the generation batch size 16"):
        trainer.train()


@pytest.mark.skipif(os.environ.get("ROBUST_ROLLOUTS_TRL_VLLM") != "1", reason="vLLM colocate needs a GPU machine")
def test_vllm_colocate_mode(setup, tmp_path):  # pragma: no cover - GPU only
    pytest.importorskip("vllm")
    ctrl = ScriptedController([1, 5, 5, 5])
    trainer = _trainer(setup, tmp_path, ctrl, steps=2)
    trainer.args.use_vllm, trainer.args.vllm_mode = True, "colocate"
    trainer.train()
    assert trainer.last_step["result"].group_sizes.min() == 1


def test_readme_trl_example_runs(tmp_path, monkeypatch, capsys):
    """The README's TRL example (what a user copies) trains as written against the real TRL."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "from trl" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md TRL example", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "robust/group_size" in out, out
