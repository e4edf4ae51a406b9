"""TRL's own GRPO trainer tests, ported offline, run with ``GRPOTrainer`` swapped for ``RobustGRPOTrainer``.

A subset of ``tests/test_grpo_trainer.py`` of the TRL repository (the cases that run on a CPU without
PEFT, vLLM, Liger or vision models), each case written anew here with the same configuration and
the same assertions, three times:

* ``GRPOTrainer`` -- TRL itself (the port is a fair copy only if TRL passes it);
* ``RobustGRPOTrainer`` with the ``uniform`` controller -- the drop-in claim: the class swapped,
  nothing else changed (plus the controller);
* ``RobustGRPOTrainer`` with an uneven controller -- random counts per prompt in ``[1, 2 G - 1]``
  (groups of one included) every generation.

Deviations from TRL's file, all forced by running offline and small: the Hub models and the
``zen`` prompts are replaced by the tiny config-built models and local prompts of
:mod:`_trl_tiny` (its reward model gives real-valued logits, its length rewards 0..8); every run
stops after ``max_steps=3``; ``per_device_train_batch_size`` is 6 instead of 3 so that a
generation batch holds two prompts and the uneven controller can give them different counts (TRL's
3 rows with ``num_generations=3`` is one prompt per batch, where no controller can do anything).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("datasets")
torch.set_num_threads(1)

import _trl_tiny as tiny
from trl import GRPOConfig, GRPOTrainer

from bandits.controllers import make_controller
from llm_bridge.integrations.trl import RobustGRPOTrainer

pytestmark = pytest.mark.trl

VARIANTS = ["GRPOTrainer", "Robust-uniform", "Robust-uneven"]


class UnevenController:
    """Random counts in ``[1, 2 G - 1]`` summing to ``G`` per prompt (the bandits.controllers protocol);
    it learns nothing from the rewards, so any reward range is fine."""

    learns_from_rewards = False

    def __init__(self, n_prompts: int, mean_budget: int, seed: int = 0):
        self.n_prompts, self.mean_budget = n_prompts, mean_budget
        self.rng = np.random.default_rng(seed)
        self.uneven_steps = 0

    def plan(self, prompt_ids):
        from types import SimpleNamespace

        m, g = len(prompt_ids), self.mean_budget
        counts = np.full(m, g, dtype=np.int64)
        moves = 0
        while m > 1 and g > 1 and (moves < m or counts.min() == counts.max()):  # shift rollouts between pairs
            i, j = self.rng.choice(m, size=2, replace=False)
            k = int(self.rng.integers(1, g))
            if counts[i] - k >= 1 and counts[j] + k <= 2 * g - 1:
                counts[i] -= k
                counts[j] += k
            moves += 1
        self.uneven_steps += int(counts.min() != counts.max())
        return SimpleNamespace(counts=counts, multipliers=np.ones(m), bins=None)

    def observe(self, prompt_ids, counts, rewards, group_ids):
        assert np.all((rewards >= 0) & (rewards <= 1))

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny.build(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(params=VARIANTS)
def variant(request):
    return request.param


def _args(tmp_path, **over):
    base = dict(output_dir=str(tmp_path), learning_rate=0.1, per_device_train_batch_size=6, num_generations=3,
                max_completion_length=8, report_to="none", use_cpu=True, max_steps=3, save_strategy="no", seed=0)
    base.update(over)
    return GRPOConfig(**base)


def _trainer(variant, *, args, train_dataset, **kwargs):
    if variant == "GRPOTrainer":
        return GRPOTrainer(args=args, train_dataset=train_dataset, **kwargs)
    n, g = len(train_dataset), args.num_generations
    ctrl = (make_controller("uniform", n_prompts=n, mean_budget=g, lower=1, upper=g) if variant == "Robust-uniform"
            else UnevenController(n, g, seed=0))
    return RobustGRPOTrainer(args=args, train_dataset=train_dataset, controller=ctrl, **kwargs)


def _train_and_check(trainer, *, changed=True):
    before = {n: p.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.state.log_history[-1]["train_loss"] is not None
    for n, p in before.items():
        same = torch.equal(p, trainer.model.get_parameter(n))
        assert same != changed, f"Parameter {n} has {'not ' if changed else ''}changed."
    if isinstance(getattr(trainer, "controller", None), UnevenController):
        per_gen = trainer.args.generation_batch_size // trainer.num_generations
        assert trainer.controller.uneven_steps > 0 or per_gen == 1  # the groups really were uneven
        assert any("robust/group_size/min" in h for h in trainer.state.log_history)


def _len_reward(completions, **kwargs):
    """Rewards longer completions."""
    return [float(len(c)) for c in completions]


def _unique_reward(completions, **kwargs):
    """Rewards completions with more unique characters."""
    return [float(len(set(c))) for c in completions]


def test_init_minimal(models, variant, tmp_path):
    """Model, reward model and dataset only (plus ``use_cpu``: GRPOConfig's default bf16 needs a GPU)."""
    lm, rm = models
    ds = tiny.dataset()["train"]
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    if variant == "GRPOTrainer":
        GRPOTrainer(model=lm, reward_funcs=rm, train_dataset=ds, args=args)
    else:  # the default config has num_generations=8: the controller's budget follows it
        g = args.num_generations
        ctrl = (make_controller("uniform", n_prompts=len(ds), mean_budget=g, lower=1, upper=g)
                if variant == "Robust-uniform" else UnevenController(len(ds), g))
        RobustGRPOTrainer(model=lm, reward_funcs=rm, train_dataset=ds, args=args, controller=ctrl)


def test_train(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path),
                              train_dataset=tiny.dataset()["train"]))


@pytest.mark.parametrize("config_name", ["standard_prompt_only", "conversational_prompt_only"])
def test_train_dataset_format(models, variant, tmp_path, config_name):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path),
                              train_dataset=tiny.dataset(config_name)["train"]))


@pytest.mark.parametrize("loss_type", ["bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo"])
def test_train_loss_types(models, variant, tmp_path, loss_type):
    lm, rm = models
    args = _args(tmp_path, importance_sampling_level="sequence" if loss_type == "luspo" else "token",
                 max_completion_length=32, gradient_accumulation_steps=2, loss_type=loss_type)
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=args, train_dataset=tiny.dataset()["train"]))


def test_train_with_eval(models, variant, tmp_path):
    lm, rm = models
    ds = tiny.dataset()
    args = _args(tmp_path, per_device_eval_batch_size=3, eval_strategy="steps", eval_steps=2)
    _trainer(variant, model=lm, reward_funcs=rm, args=args, train_dataset=ds["train"], eval_dataset=ds["test"]).train()


def test_train_multiple_iterations(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, num_iterations=2),
                              train_dataset=tiny.dataset()["train"]))


def test_train_different_reward_model(models, variant, tmp_path):
    """A reward model object with its own tokenizer (``reward_processing_classes``)."""
    import transformers

    lm, rm = models
    reward_model = transformers.AutoModelForSequenceClassification.from_pretrained(rm)
    reward_tok = transformers.AutoTokenizer.from_pretrained(rm)
    _train_and_check(_trainer(variant, model=lm, reward_funcs=reward_model, args=_args(tmp_path),
                              train_dataset=tiny.dataset("conversational_prompt_only")["train"],
                              reward_processing_classes=reward_tok))


def test_train_reward_func_standard(models, variant, tmp_path):
    lm, _ = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=_len_reward, args=_args(tmp_path),
                              train_dataset=tiny.dataset()["train"]))


def test_train_reward_func_conversational(models, variant, tmp_path):
    lm, _ = models

    def reward_func(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    _train_and_check(_trainer(variant, model=lm, reward_funcs=reward_func, args=_args(tmp_path),
                              train_dataset=tiny.dataset("conversational_prompt_only")["train"]))


def test_train_multiple_reward_funcs(models, variant, tmp_path):
    lm, _ = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=[_len_reward, _unique_reward], args=_args(tmp_path),
                              train_dataset=tiny.dataset()["train"]))


def test_train_sync_and_async_reward_funcs(models, variant, tmp_path):
    lm, _ = models

    def constant(completions, **kwargs):
        return [1 for _ in completions]

    async def async_unique(completions, **kwargs):
        return [float(len(set(c))) for c in completions]

    _train_and_check(_trainer(variant, model=lm, reward_funcs=[_len_reward, constant, async_unique],
                              args=_args(tmp_path), train_dataset=tiny.dataset()["train"]))


def test_train_multiple_reward_funcs_with_None_output(models, variant, tmp_path):  # noqa: N802 - TRL's name
    lm, _ = models

    def non_applicable(completions, **kwargs):
        return [None] * len(completions)

    _train_and_check(_trainer(variant, model=lm, reward_funcs=[_len_reward, non_applicable], args=_args(tmp_path),
                              train_dataset=tiny.dataset()["train"]))


def test_train_multiple_reward_funcs_with_weights(models, variant, tmp_path):
    lm, _ = models
    trainer = _trainer(variant, model=lm, reward_funcs=[_len_reward, _unique_reward],
                       args=_args(tmp_path, reward_weights=[0.7, 0.3], logging_steps=1),
                       train_dataset=tiny.dataset()["train"])
    _train_and_check(trainer)
    last = [h for h in trainer.state.log_history if "loss" in h][-1]
    for key in ("rewards/_len_reward/mean", "rewards/_len_reward/std", "rewards/_unique_reward/mean",
                "rewards/_unique_reward/std"):
        assert key in last


@pytest.mark.parametrize("multi_objective_aggregation", ["sum_then_normalize", "normalize_then_sum"])
def test_reward_metric_reflects_reward_weights(models, variant, tmp_path, multi_objective_aggregation):
    lm, _ = models

    def one(completions, **kwargs):
        return [1.0] * len(completions)

    def zero(completions, **kwargs):
        return [0.0] * len(completions)

    trainer = _trainer(variant, model=lm, reward_funcs=[one, zero],
                       args=_args(tmp_path, reward_weights=[0.7, 0.3], logging_steps=1,
                                  multi_objective_aggregation=multi_objective_aggregation),
                       train_dataset=tiny.dataset()["train"])
    trainer.train()
    log = [h for h in trainer.state.log_history if "reward" in h][-1]
    assert abs(log["reward"] - 0.7) < 1e-5


def test_train_multiple_mixed_reward_funcs(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=[_len_reward, rm], args=_args(tmp_path),
                              train_dataset=tiny.dataset()["train"]))


def test_train_reward_func_additional_column(models, variant, tmp_path):
    lm, _ = models
    ds = tiny.dataset()["train"]
    ds = ds.add_column("some_values", list(range(len(ds))))

    def reward_func(completions, some_values, **kwargs):
        return [float(abs(len(c) - v)) for c, v in zip(completions, some_values, strict=True)]

    _train_and_check(_trainer(variant, model=lm, reward_funcs=reward_func, args=_args(tmp_path), train_dataset=ds))


def test_train_with_sync_ref_model(models, variant, tmp_path):
    lm, rm = models
    trainer = _trainer(variant, model=lm, reward_funcs=rm,
                       args=_args(tmp_path, beta=0.1, sync_ref_model=True, ref_model_sync_steps=2),
                       train_dataset=tiny.dataset()["train"])
    assert trainer.ref_model is not None
    before_ref = {n: p.clone() for n, p in trainer.ref_model.named_parameters()}
    _train_and_check(trainer)
    for n, p in before_ref.items():
        assert not torch.equal(p, trainer.ref_model.get_parameter(n)), f"Ref parameter {n} has not changed."


def test_train_beta_non_zero(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, beta=0.1),
                              train_dataset=tiny.dataset()["train"]))


def test_train_with_pad_to_multiple_of(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, pad_to_multiple_of=8),
                              train_dataset=tiny.dataset()["train"]))


def test_train_normalize_then_sum_aggregation(models, variant, tmp_path):
    lm, _ = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=[_len_reward, _unique_reward],
                              args=_args(tmp_path, multi_objective_aggregation="normalize_then_sum"),
                              train_dataset=tiny.dataset()["train"]))


@pytest.mark.parametrize("scale_rewards", [False, "group", "batch", True, "none"])
def test_train_scale_rewards(models, variant, tmp_path, scale_rewards):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, scale_rewards=scale_rewards),
                              train_dataset=tiny.dataset()["train"]))


def test_warning_raised_all_rewards_none(models, variant, tmp_path, caplog):
    lm, _ = models

    def always_none(completions, **kwargs):
        return [None] * len(completions)

    trainer = _trainer(variant, model=lm, reward_funcs=always_none, args=_args(tmp_path),
                       train_dataset=tiny.dataset()["train"])
    with caplog.at_level(logging.WARNING, logger="trl.trainer.grpo_trainer"):
        trainer.train()
    assert "All reward functions returned None for the following kwargs:" in caplog.text


def test_train_num_generations_larger_than_batch_size(models, variant, tmp_path):
    lm, rm = models
    args = _args(tmp_path, per_device_train_batch_size=3, num_generations=6, gradient_accumulation_steps=2)
    with pytest.warns(UserWarning, match="one prompt") if variant != "GRPOTrainer" else nullcontext():
        trainer = _trainer(variant, model=lm, reward_funcs=rm, args=args, train_dataset=tiny.dataset()["train"])
    _train_and_check(trainer)


def test_train_delta_clipping(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, delta=2.0),
                              train_dataset=tiny.dataset()["train"]))


def test_train_with_generation_kwargs(models, variant, tmp_path):
    lm, rm = models
    kwargs = {"do_sample": True, "top_k": 50, "num_beams": 2, "length_penalty": -0.1}
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, generation_kwargs=kwargs),
                              train_dataset=tiny.dataset()["train"]))


def test_train_with_reward_func_accessing_trainer_state(models, variant, tmp_path):
    lm, _ = models

    def reward_func(completions, **kwargs):
        state = kwargs.get("trainer_state")
        assert state is not None and hasattr(state, "global_step")
        return [float(len(set(c))) for c in completions]

    _trainer(variant, model=lm, reward_funcs=reward_func, args=_args(tmp_path),
             train_dataset=tiny.dataset()["train"]).train()


def test_train_sequence_importance_sampling(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm,
                              args=_args(tmp_path, num_iterations=2, importance_sampling_level="sequence"),
                              train_dataset=tiny.dataset()["train"]))


def test_train_with_entropy_filter(models, variant, tmp_path):
    lm, rm = models
    _train_and_check(_trainer(variant, model=lm, reward_funcs=rm, args=_args(tmp_path, top_entropy_quantile=0.2),
                              train_dataset=tiny.dataset()["train"]))


def test_train_with_mask_truncated_completions_all_masked(models, variant, tmp_path):
    """Every completion truncated and masked: no learning signal, no update. TRL relies on its tiny Hub
    model never sampling EOS within 8 tokens; the config-built model here does sample it sometimes, so
    EOS is suppressed at generation (``suppress_tokens``) to make every completion truncated."""
    lm, rm = models
    eos = tiny.tokenizer().eos_token_id
    trainer = _trainer(variant, model=lm, reward_funcs=rm,
                       args=_args(tmp_path, mask_truncated_completions=True, loss_type="dapo",
                                  generation_kwargs={"suppress_tokens": [eos]}),
                       train_dataset=tiny.dataset()["train"])
    _train_and_check(trainer, changed=False)
    assert trainer.state.log_history[-1]["train_loss"] == pytest.approx(0.0)
