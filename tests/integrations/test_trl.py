"""The TRL integration against the real, installed TRL (``nox -s trl``; skipped without trl).

Real ``GRPOTrainer`` runs on CPU: a tiny Qwen2 built from a config with the project's character
tokenizer, the project's verifiable arithmetic task (partial-credit verifier), a few steps with
uneven rollout counts including a group of one. Checked: the real group sizes, the advantages TRL
trains on (TRL's own GRPO convention over the real groups, size-1 groups 0, times the
multipliers), shaping from the sequence log-probabilities (checked against a direct forward pass),
the controller's observations, the ``robust/*`` metrics in TRL's log, and that the parameters
moved; same-seed equivalence with ``GRPOTrainer`` under ``uniform`` (bit for bit); the checks
``__init__`` makes; rewards of any range; the trainer, TRL and the robust step giving the same
advantages on one batch.
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
from llm_bridge.advantage_kinds import kind_advantages
from llm_bridge.integrations.trl import RobustGRPOTrainer
from llm_bridge.models import ModelSpec, build_model
from llm_bridge.tasks import make_task
from llm_bridge.tokenizer import char_tokenizer
from solvers import drro_rewards

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
    expected = kind_advantages(step["rewards"], step["group_ids"], "trl-group")  # TRL's convention by default
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
    expected = kind_advantages(shaped, step["group_ids"], "trl-group") * res.multipliers[step["group_ids"]]
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
                       shaping="drro", shaping_params={"delta": 0.3, "tau": 2.0})
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
    with pytest.raises(TypeError, match=r"has no plan\(\)"):
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
    """The README's TRL example (what a user copies) trains as written against the real TRL and prints
    what the README says it prints: a reward that rises and uneven groups."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "from trl" in b]
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md TRL example", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    printed = [line for line in out.splitlines() if line.startswith("step ")]
    promised = [line[2:] for line in blocks[0].splitlines() if line.startswith("# step ")]
    assert printed == promised, out
    rewards = [float(line.split()[3]) for line in printed]
    sizes = [tuple(int(x) for x in line.split()[-1].split("..")) for line in printed]
    assert rewards[-1] > rewards[0] + 0.2 and any(lo < hi for lo, hi in sizes)


# ------------------------------------------------------------------------------------------------
# A drop-in: same seed, same numbers as GRPOTrainer under ``uniform``; any reward range; early errors
# ------------------------------------------------------------------------------------------------
import _trl_tiny as tiny  # noqa: E402 - TRL is installed past this point
from trl import GRPOTrainer  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("tiny"))


def _len_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def _unique_reward(completions, **kwargs):
    return [float(len(set(c))) for c in completions]


def _run(cls, models, tmp_path, reward_funcs=None, **over):
    lm, rm = models
    cfg = dict(output_dir=str(tmp_path), learning_rate=0.1, per_device_train_batch_size=6, num_generations=3,
               max_completion_length=8, report_to="none", use_cpu=True, max_steps=4, seed=0, logging_steps=1,
               save_strategy="no")
    cfg.update(over)
    args = GRPOConfig(**cfg)
    ds = tiny.dataset()["train"]
    kw = {}
    if cls is RobustGRPOTrainer:
        kw["controller"] = make_controller("uniform", n_prompts=len(ds), mean_budget=args.num_generations,
                                           lower=1, upper=args.num_generations)
    trainer = cls(model=lm, reward_funcs=reward_funcs or rm, args=args, train_dataset=ds, **kw)
    trainer.train()
    keys = ("loss", "grad_norm", "reward", "reward_std", "frac_reward_zero_std")
    logs = [tuple(h.get(k) for k in keys) for h in trainer.state.log_history if "loss" in h]
    return logs, [p.detach().clone() for p in trainer.model.parameters()]


EQUIVALENCE = [
    dict(scale_rewards="group"),
    dict(scale_rewards="batch"),
    dict(scale_rewards="none"),
    dict(scale_rewards="batch", loss_type="dr_grpo", beta=0.1),
    dict(loss_type="bnpo", gradient_accumulation_steps=2, steps_per_generation=4),
    dict(loss_type="grpo", num_iterations=2, scale_rewards="none"),
    dict(multi_objective_aggregation="normalize_then_sum", reward_weights=[0.7, 0.3]),
]


@pytest.mark.parametrize("over", EQUIVALENCE, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_uniform_reproduces_grpo_trainer_bit_for_bit(tiny_models, tmp_path, over):
    """Same seed, same config: RobustGRPOTrainer(uniform, no shaping) logs the same losses, gradient norms
    and reward statistics as GRPOTrainer and ends with identical parameters (TRL's own advantage
    convention, operation for operation)."""
    funcs = [_len_reward, _unique_reward] if "multi_objective_aggregation" in over else None
    logs_a, params_a = _run(GRPOTrainer, tiny_models, tmp_path / "a", funcs, **over)
    logs_b, params_b = _run(RobustGRPOTrainer, tiny_models, tmp_path / "b", funcs, **over)
    assert len(logs_a) == 4 and logs_a == logs_b
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    assert any(abs(x[0]) > 0 for x in logs_a)  # a real signal went through


def test_the_papers_grpo_is_an_option_and_differs_by_the_std_convention(tiny_models, tmp_path):
    lm, rm = tiny_models
    ds = tiny.dataset()["train"]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=3,
                      max_completion_length=8, report_to="none", use_cpu=True, max_steps=1, seed=0)
    ctrl = make_controller("uniform", n_prompts=len(ds), mean_budget=3, lower=1, upper=3)
    trainer = RobustGRPOTrainer(model=lm, reward_funcs=rm, args=args, train_dataset=ds, controller=ctrl,
                                advantage="grpo")
    trainer.train()
    step = trainer.last_step
    ours = step["result"].advantages
    trl_like = kind_advantages(step["rewards"], step["group_ids"], "trl-group")
    assert np.array_equal(ours, kind_advantages(step["rewards"], step["group_ids"], "grpo"))
    big = np.abs(trl_like) > 1e-2  # population vs sample std (and eps 1e-6 vs 1e-4): sqrt(3 / 2) at n = 3
    np.testing.assert_allclose(ours[big] / trl_like[big], np.sqrt(3 / 2), rtol=1e-2)


def test_any_reward_range_and_success_values_only_where_needed(tiny_models, tmp_path):
    lm, rm = tiny_models
    ds = tiny.dataset()["train"]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=3,
                      max_completion_length=8, report_to="none", use_cpu=True, max_steps=2, seed=0)
    # reward-model logits (negative and positive) with a learning controller: a clear error, state untouched
    learner = make_controller("rollout-gdro", n_prompts=len(ds), mean_budget=3, lower=2, upper=4, seed=0)
    state = learner.state_dict()
    trainer = RobustGRPOTrainer(model=lm, reward_funcs=_negative_reward, args=args, train_dataset=ds,
                                controller=learner)
    with pytest.raises(ValueError, match="learns success probabilities.*success_fn="):
        trainer.train()
    assert learner.state_dict()["step"] == state["step"] == 0
    # the same with a success mapping trains, and the controller saw values in [0, 1]
    learner = make_controller("rollout-gdro", n_prompts=len(ds), mean_budget=3, lower=2, upper=4, seed=0)
    trainer = RobustGRPOTrainer(model=lm, reward_funcs=_negative_reward, args=args, train_dataset=ds,
                                controller=learner, success_fn=lambda r: (r > -4.0).astype(float))
    trainer.train()
    assert learner.step == 2 and set(np.unique(trainer.last_step["success"])) <= {0.0, 1.0}
    assert trainer.last_step["rewards"].max() < 0


def _negative_reward(completions, **kwargs):
    return [-float(len(c)) for c in completions]


def test_init_checks_fail_early(tiny_models, tmp_path):
    lm, rm = tiny_models
    ds = tiny.dataset()["train"]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=3,
                      max_completion_length=8, report_to="none", use_cpu=True, max_steps=1)

    def make(ctrl, data=ds, a=args, **kw):
        return RobustGRPOTrainer(model=lm, reward_funcs=rm, args=a, train_dataset=data, controller=ctrl, **kw)

    def uniform(n=len(ds), g=3):
        return make_controller("uniform", n_prompts=n, mean_budget=g, lower=1, upper=8)

    with pytest.raises(ValueError, match="mean_budget 4 must equal args.num_generations=3"):
        make(uniform(g=4))
    with pytest.raises(ValueError, match=r"prompt ids in \[0, 15\]; the controller knows \[0, 8\)"):
        make(uniform(n=8))
    with pytest.raises(TypeError, match="must hold integer prompt ids, got 'a'"):
        make(uniform(), data=ds.remove_columns("prompt_id").add_column("prompt_id", list("abcdefghijklmnop")))
    server = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=3, use_cpu=True,
                        report_to="none", use_vllm=True, vllm_mode="server")
    with pytest.raises(ValueError, match="vllm_mode='colocate'"):
        make(uniform(), a=server)
    with pytest.raises(TypeError, match="protocol"):
        make(object())
    # controllers that sample in rounds, skip prompts or select their training rollouts: refused, with why
    for name in ("reinforce-ada", "dapo-dynamic", "ar3po", "greso"):
        ctrl = make_controller(name, n_prompts=len(ds), mean_budget=3, lower=1, upper=8)
        with pytest.raises(ValueError, match=rf"RobustGRPOTrainer \(TRL\) cannot drive controller '{name}'.*fixed-size "
                                              r"generation batch.*robust-rollouts train"):
            make(ctrl)
    assert make(make_controller("knapsack", n_prompts=len(ds), mean_budget=3, lower=1, upper=8)).controller.name \
        == "knapsack"  # single-round, every prompt planned: fine
    # no prompt_id column: the row index becomes the prompt id
    trainer = make(uniform(), data=ds.remove_columns("prompt_id"))
    assert trainer.train_dataset["prompt_id"] == list(range(len(ds)))
    # one prompt per generation batch: the controller can do nothing, say so
    one = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=3, num_generations=3, use_cpu=True,
                     report_to="none")
    with pytest.warns(UserWarning, match="one prompt .* raise per_device_train_batch_size"):
        make(uniform())  # fine
        make(uniform(), a=one)


def test_metrics_over_the_real_groups(tiny_models, tmp_path):
    """frac_reward_zero_std over the real (uneven) groups; robust/group_size/min|max are the extremes
    of the logging window, not averages."""
    lm, rm = tiny_models
    ds = tiny.dataset()["train"]

    class Cycling(ScriptedController):
        learns_from_rewards = False  # any reward range

        def __init__(self, plans):
            super().__init__(plans[0])
            self.plans, self.calls = plans, 0

        def plan(self, prompt_ids):
            self.counts = self.plans[self.calls % len(self.plans)]
            self.calls += 1
            return super().plan(prompt_ids)

    def reward(completions, prompt_id, **kwargs):  # constant for even prompt ids: zero-std groups
        return [0.5 if q % 2 == 0 else float(len(set(c))) for c, q in zip(completions, prompt_id)]

    ctrl = Cycling([[1, 5], [2, 4]])
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=6, num_generations=3,
                      max_completion_length=8, report_to="none", use_cpu=True, max_steps=2, logging_steps=2, seed=0)
    trainer = RobustGRPOTrainer(model=lm, reward_funcs=reward, args=args, train_dataset=ds, controller=ctrl)
    fracs = []
    real_log = trainer.log

    def spy(logs, start_time=None):
        fracs.extend(trainer._metrics["train"]["frac_reward_zero_std"])
        return real_log(logs, start_time)

    trainer.log = spy
    trainer.train()
    log = [h for h in trainer.state.log_history if "robust/group_size/min" in h][-1]
    assert log["robust/group_size/min"] == 1.0 and log["robust/group_size/max"] == 5.0
    assert log["robust/group_size/mean"] == 3.0
    step = trainer.last_step
    r, gid = step["rewards"], step["group_ids"]
    zero = [np.ptp(r[gid == g]) == 0 or np.sum(gid == g) == 1 for g in gid]
    assert fracs[-1] == pytest.approx(np.mean(zero))


def test_trainer_trl_and_the_step_give_the_same_advantages(setup, tmp_path):
    """One batch (uneven groups, a group of one, multipliers, DRRO soft shaping with group-size
    scaling), one configuration: the project's trainer adapter, the TRL adapter and the robust step
    itself give identical advantages (the verl half of this check runs in the verl session)."""
    from llm_bridge.robust_step import RobustAdvantage, Shaping
    from llm_bridge.trainer import TrainConfig, Trainer

    rng = np.random.default_rng(7)
    sizes = [3, 1, 5, 3]
    gid = np.repeat(np.arange(4), sizes)
    per_func = torch.tensor(rng.integers(0, 3, size=(gid.size, 1)) / 2.0, dtype=torch.float32)
    lp = rng.uniform(-9, -1, gid.size)
    mult = np.array([1.0, 2.0, 0.5, 1.5])
    for kind in ("grpo", "trl-group", "verl-grpo", "rloo"):
        cfg = TrainConfig(advantage=kind, shaping="drro", shaping_delta=0.7, shaping_tau=2.0, mean_budget=3)
        via_trainer = RobustAdvantage(cfg.advantage, Trainer.shaping_spec(cfg))
        trl_trainer = _trainer(setup, tmp_path, ScriptedController([G] * 4), steps=1, advantage=kind,
                               shaping="drro", shaping_params={"delta": 0.7, "tau": 2.0, "reference_group_size": 3})
        rewards, _ = trl_trainer._step_rewards(per_func, gid)
        direct = RobustAdvantage(kind, Shaping("drro", delta=0.7, tau=2.0, reference_group_size=3))
        results = [s(rewards, gid, multipliers=mult, seq_logprobs=lp)
                   for s in (via_trainer, trl_trainer.robust_advantage, direct)]
        for res in results[1:]:
            assert np.array_equal(res.advantages, results[0].advantages)
        assert results[0].advantages[gid == 1].tolist() == [0.0]
        assert np.abs(results[0].shaped_rewards - rewards).max() > 0
