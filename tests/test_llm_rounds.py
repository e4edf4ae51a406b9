"""Sampling in rounds in the GRPO trainer (llm_bridge.rounds and Trainer.step_once): every round's
rollouts counted, the training selection honoured (dropped groups out of the gradient, per-prompt
baselines, response reuse), single-round controllers unchanged, exact resume, and the hosts'
refusal of what they cannot drive."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _llm_tiny import TINY
from _llm_tiny import tiny_config as shared_tiny_config

import llm_bridge.trainer as trainer_mod
from bandits.controllers import (
    CONTROLLERS,
    TrainSelection,
    controller_options,
    make_controller,
)
from bandits.controllers.uniform import UniformController
from llm_bridge.batch import policy_token_logprobs
from llm_bridge.generation import HFBackend, SamplingConfig
from llm_bridge.models import build_model
from llm_bridge.rounds import (
    ResponseBank,
    has_selection_rule,
    host_support_iv,
    merge_rollouts,
    training_batch,
)
from llm_bridge.tokenizer import char_tokenizer
from llm_bridge.trainer import Trainer

torch.set_num_threads(1)

ROUND_PEERS = ("reinforce-ada", "dapo-dynamic", "ar3po", "greso")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("warm-cache"))


def tiny_config(cache, **kw):
    """The shared tiny run at mean budget 4 in [2, 8] (room for extra rounds within the budget)."""
    return shared_tiny_config(cache, **{"mean_budget": 4, "lower": 2, **kw})


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith("time_") and "overhead" not in k} for r in records]


class Spy:
    """Records every generation call, every robust step and every step's StepRollouts of a trainer."""

    def __init__(self, tr, monkeypatch):
        self.generated, self.robust, self.steps = [], [], []
        gen, robust, drive = tr.backend.generate, tr.robust, trainer_mod.drive_step

        def spy_generate(prompts, counts, sampling):
            batch = gen(prompts, counts, sampling)
            self.generated[-1].append(batch)
            return batch

        def spy_robust(*args, **kwargs):
            res = robust(*args, **kwargs)
            self.robust[-1] = (args, kwargs, res)
            return res

        def spy_drive(ctrl, ids, generate):
            self.generated.append([])
            self.robust.append(None)
            step = drive(ctrl, ids, generate)
            self.steps.append(step)
            return step

        monkeypatch.setattr(tr.backend, "generate", spy_generate)
        monkeypatch.setattr(tr, "robust", spy_robust)
        monkeypatch.setattr(trainer_mod, "drive_step", spy_drive)


class Wrapped:
    """A controller seen through its public methods only (a user's object, not a Controller):
    the trainer drives it as a plain plan -> generate -> observe loop."""

    def __init__(self, inner):
        self.inner, self.name = inner, inner.name

    def plan(self, ids):
        return self.inner.plan(ids)

    def observe(self, ids, counts, rewards, group_ids):
        self.inner.observe(ids, counts, rewards, group_ids)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


class DropAll(UniformController):
    """uniform counts, and a selection that drops every group."""

    def _select(self, obs):
        return TrainSelection(np.zeros(obs.rewards.size, dtype=bool))


def test_single_round_controllers_train_as_a_plain_loop(cache):
    """The round driver gives a single-round controller one generation call with the whole batch and
    trains on all of it: a registered controller and the same controller behind a plain object (the
    old plan -> generate -> observe path) give identical records and weights."""
    cfg = tiny_config(cache, controller="prompt-gdro", shaping="drro", shaping_delta=0.5, shaping_tau=2.0)
    a = Trainer(cfg)
    inner = make_controller("prompt-gdro", n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0)
    inner.load_state_dict(a.controller.state_dict())  # the same generator state as the trainer's own
    b = Trainer(cfg, controller=Wrapped(inner))
    ra, rb = _strip(a.train()), _strip(b.train())
    assert ra == rb
    assert all(r["rounds"] == 1 and r["rollouts_trained"] == r["rollouts"] == 24 for r in ra)
    for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.parametrize("controller", ROUND_PEERS)
def test_round_controllers_count_every_rollout_and_train_on_their_selection(cache, monkeypatch, controller):
    tr = Trainer(tiny_config(cache, controller=controller, steps=4))
    spy = Spy(tr, monkeypatch)
    records = tr.train()
    for rec, calls, step, robust in zip(records, spy.generated, spy.steps, spy.robust):
        # compute: every round's rollouts and tokens, within the budget
        assert rec["rounds"] == len(calls) == len(step.rounds)
        assert rec["rollouts"] == sum(b.n_rollouts for b in calls) == int(step.counts.sum()) <= rec["budget"] == 24
        assert rec["tokens_generated"] == sum(int(b.completion_mask.sum()) for b in calls)
        assert rec["counts"] == step.counts.tolist()
        assert rec["prompts_skipped"] == int((step.counts == 0).sum())
        spread = [np.ptp(step.rewards[step.group_ids == k]) > 0 for k in range(step.counts.size) if step.counts[k]]
        assert rec["groups_all_equal"] == spread.count(False)
        assert rec["rollouts_all_equal"] == sum(int(step.counts[k]) for k in range(step.counts.size)
                                                if step.counts[k] and np.ptp(step.rewards[step.group_ids == k]) == 0)
        # training: exactly the selection (dropped groups absent), plus reused responses
        mask = step.selection.train_mask
        kept = np.unique(step.group_ids[mask])
        if robust is None:
            assert rec["groups_trained"] == 0 and rec["n_updates"] == 0
            continue
        args, kwargs, res = robust
        assert rec["rollouts_trained"] == int(mask.sum()) + rec["responses_reused"] == len(args[0])
        assert kwargs["n_groups"] == rec["groups_trained"] >= kept.size
        assert rec["groups_dropped"] == int((step.counts > 0).sum()) - rec["groups_trained"]
        if controller in ("dapo-dynamic", "greso"):  # never an all-equal group in the gradient
            r, g = np.asarray(args[0]), np.asarray(args[1])
            assert all(np.ptp(r[g == k]) > 0 for k in range(kwargs["n_groups"]))
        if controller == "reinforce-ada":  # baseline: the mean of every rollout of the prompt in the step
            means = np.bincount(step.group_ids, weights=step.rewards, minlength=step.counts.size) / step.counts
            np.testing.assert_allclose(kwargs["baselines"], means[kept])
            np.testing.assert_allclose(res.advantages, np.asarray(args[0]) - kwargs["baselines"][np.asarray(args[1])])
    assert any(r["rounds"] > 1 for r in records) or controller == "greso"
    if controller in ("dapo-dynamic", "greso", "reinforce-ada"):
        assert any(r["rollouts_trained"] < r["rollouts"] for r in records)


def test_every_group_dropped_means_no_update(cache):
    ctrl = DropAll(n_prompts=12, mean_budget=4, lower=2, upper=8, seed=0)
    tr = Trainer(tiny_config(cache, steps=2), controller=ctrl)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    records = tr.train()
    assert [r["n_updates"] for r in records] == [0, 0] and records[0]["loss"] is None
    assert [r["groups_dropped"] for r in records] == [6, 6] and records[0]["rollouts"] == 24
    assert ctrl.step == 2  # the controller still observed every rollout
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, before[k])


def _bank_with_answers(tr):
    """Every prompt's correct answer as a held completion (answer tokens + end of sequence)."""
    tok = tr.tokenizer
    for q, ex in enumerate(tr.task.examples):
        tokens = tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        tr.bank.responses[q] = (tokens, ex.answer)


def test_response_reuse_adds_a_held_correct_completion(cache, monkeypatch):
    """AR3PO: a prompt with no correct rollout in the step that had one before gets its held correct
    completion (reward 1, no rollout spent) in its training group; its old log-probs are the current
    policy's."""
    tr = Trainer(tiny_config(cache, controller="ar3po", steps=2, task="arithmetic"))
    tr.controller.has_correct[:] = True
    _bank_with_answers(tr)
    spy = Spy(tr, monkeypatch)
    seen = []
    update = tr._update

    def spy_update(batch, old, ref, adv_t):
        with torch.no_grad():
            fresh, _ = policy_token_logprobs(tr.model, batch.input_ids, batch.attention_mask, batch.prompt_length)
        seen.append((batch, old.clone(), (fresh * batch.completion_mask).clone()))
        return update(batch, old, ref, adv_t)

    monkeypatch.setattr(tr, "_update", spy_update)
    records = tr.train()
    assert sum(r["responses_reused"] for r in records) > 0
    for rec, step, (args, kwargs, res), (batch, old, fresh) in zip(records, spy.steps, spy.robust, seen):
        n_reused = rec["responses_reused"]
        assert rec["rollouts"] == int(step.counts.sum()) and rec["rollouts_trained"] == rec["rollouts"] + n_reused
        assert n_reused == int(step.selection.reuse.sum())  # the bank holds every prompt
        assert kwargs["n_groups"] == 6  # ar3po trains on every rollout: group k is the batch's prompt k
        for k in np.flatnonzero(step.selection.reuse):
            q = int(step.prompt_ids[k])
            last = np.flatnonzero(batch.group_ids == k)[-1]  # the reused response closes its group
            assert batch.texts[last] == tr.task.examples[q].answer and args[0][last] == 1.0
            assert not np.any(step.rewards[step.group_ids == k] == 1.0)  # reused only without a correct rollout
            torch.testing.assert_close(old[last], fresh[last], rtol=0, atol=1e-6)
            assert np.any(res.advantages[batch.group_ids == k] != 0)


def test_resume_with_response_reuse_is_bit_identical(cache, tmp_path):
    """The bank of correct completions is part of the checkpoint: 4 steps straight == 2 steps,
    checkpoint, a fresh trainer from it, 2 steps (reuse happening after the checkpoint)."""
    cfg = tiny_config(cache, controller="ar3po", steps=4, task="arithmetic", kl_coef=0.05)

    def primed():
        tr = Trainer(cfg)
        tr.controller.has_correct[:] = True
        _bank_with_answers(tr)
        return tr

    straight = primed()
    rec_a = straight.train()
    first = primed()
    first.train(2)
    ckpt = first.save_checkpoint(tmp_path / "ckpt")
    resumed = Trainer.from_checkpoint(ckpt)
    assert resumed.bank.state_dict() == first.bank.state_dict() and len(resumed.bank) == 12
    rec_c = resumed.train()
    assert sum(r["responses_reused"] for r in rec_c) > 0
    assert _strip(rec_a)[-2:] == _strip(rec_c)
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_a_plain_object_that_samples_in_rounds_is_refused(cache):
    class Rounds(Wrapped):
        samples_in_rounds = True

        def extend(self, *args):
            return np.zeros(6, dtype=np.int64)

    inner = make_controller("uniform", n_prompts=12, mean_budget=4, lower=2, upper=8)
    with pytest.raises(TypeError, match="samples in rounds must subclass bandits.controllers.Controller"):
        Trainer(tiny_config(cache), controller=Rounds(inner))


# ----------------------------------------------------------------------------- the pieces
@pytest.fixture(scope="module")
def backend():
    tok = char_tokenizer("0123456789+-*=")
    model = build_model(TINY, tok, seed=3)
    return HFBackend(model, tok, seed=5), tok


def _two_round_step(backend, ctrl_name="reinforce-ada"):
    """A real two-round step (prompts of different lengths, so rounds differ in their padding)."""
    from bandits.controllers import sample_step

    be, tok = backend
    prompts = [tok("1+2=", add_special_tokens=False)["input_ids"], tok("12*34=", add_special_tokens=False)["input_ids"],
               tok("7-5=", add_special_tokens=False)["input_ids"]]
    rng = np.random.default_rng(0)
    sampling = SamplingConfig(max_new_tokens=4)

    def generate(ids, counts):
        b = be.generate([prompts[q] for q in ids], counts, sampling)
        return rng.integers(0, 2, b.n_rollouts).astype(float), b.group_ids, b

    ctrl = make_controller(ctrl_name, n_prompts=3, mean_budget=6, lower=2, upper=12, seed=1, max_rounds=4)
    for _ in range(20):  # a step with at least two rounds, the second on a sub-batch
        step = sample_step(ctrl, [0, 1, 2], generate)
        if len(step.rounds) > 1 and step.rounds[1].positions.size < 3:
            return step, prompts, tok
        ctrl.observe(step.prompt_ids, step.counts, step.rewards, step.group_ids)
    raise AssertionError("no two-round step drawn")


def test_merged_rounds_are_the_rounds_repadded(backend):
    step, _, tok = _two_round_step(backend)
    merged = merge_rollouts(step, tok.pad_token_id)
    model = backend[0].model
    assert merged.n_rollouts == step.total and np.array_equal(merged.group_ids, step.group_ids)
    assert np.array_equal(merged.counts, step.counts)
    start = 0
    with torch.no_grad():
        lp_all, _ = policy_token_logprobs(model, merged.input_ids, merged.attention_mask, merged.prompt_length)
        for rnd in step.rounds:
            b = rnd.payload
            rows = slice(start, start + b.n_rollouts)
            t = b.completion_mask.shape[1]
            assert torch.equal(merged.completion_ids[rows, :t], b.completion_ids)
            assert torch.equal(merged.completion_mask[rows, :t], b.completion_mask)
            assert float(merged.completion_mask[rows, t:].sum()) == 0.0
            assert torch.equal(merged.token_logprobs[rows, :t], b.token_logprobs)
            lp_b, _ = policy_token_logprobs(model, b.input_ids, b.attention_mask, b.prompt_length)
            torch.testing.assert_close(lp_all[rows, :t] * b.completion_mask, lp_b * b.completion_mask,
                                       rtol=0, atol=1e-5)
            start += b.n_rollouts
    assert merge_rollouts(type(step)(step.prompt_ids, step.plan, step.rounds[0].counts, step.rewards[:step.rounds[0]
                          .counts.sum()], step.group_ids[:step.rounds[0].counts.sum()], step.rounds[:1], step.selection,
                          step.budget), tok.pad_token_id) is step.rounds[0].payload  # one whole round: as generated


def test_training_batch_groups_selected_rows_and_appends_reused_ones(backend):
    step, prompts, tok = _two_round_step(backend)
    merged = merge_rollouts(step, tok.pad_token_id)
    mask = np.zeros(step.total, dtype=bool)
    mask[::2] = True
    mask[step.group_ids == 1] = False  # prompt 1 dropped
    bank = ResponseBank(3)
    bank.responses[2] = (tok("2", add_special_tokens=False)["input_ids"] + [tok.eos_token_id], "2")
    sel = TrainSelection(mask, np.array([0.1, 0.2, 0.3]), np.array([True, True, True]))
    step = type(step)(step.prompt_ids, step.plan, step.counts, step.rewards, step.group_ids, step.rounds, sel,
                      step.budget)
    tb = training_batch(merged, step, bank, prompts, tok.pad_token_id)
    keep = [q for q in range(3) if mask[step.group_ids == q].any() or q == 2]
    assert tb.positions.tolist() == keep and tb.baselines.tolist() == [[0.1, 0.2, 0.3][q] for q in keep]
    g = tb.batch.group_ids
    assert np.all(np.diff(g) >= 0) and tb.batch.counts.tolist() == np.bincount(g).tolist()
    assert tb.n_reused == 1 and tb.reused[-1] and tb.rewards[-1] == 1.0 and tb.batch.texts[-1] == "2"
    rows = np.flatnonzero(mask)  # the selected rows, in generation order within each group
    order = rows[np.argsort(step.group_ids[rows], kind="stable")]
    np.testing.assert_array_equal(tb.rewards[:-1], step.rewards[order])
    for i, j in enumerate(order.tolist()):
        assert tb.batch.texts[i] == merged.texts[j]
    # prompt 0's rows keep their tokens after re-padding
    with torch.no_grad():
        lp_t, _ = policy_token_logprobs(backend[0].model, tb.batch.input_ids, tb.batch.attention_mask,
                                        tb.batch.prompt_length)
        lp_m, _ = policy_token_logprobs(backend[0].model, merged.input_ids, merged.attention_mask,
                                        merged.prompt_length)
    t = merged.completion_mask.shape[1]
    for i, j in enumerate(order.tolist()):
        torch.testing.assert_close(lp_t[i, :t] * merged.completion_mask[j], lp_m[j] * merged.completion_mask[j],
                                   rtol=0, atol=1e-5)


def test_response_bank_state_and_errors(backend):
    step, prompts, tok = _two_round_step(backend)
    merged = merge_rollouts(step, tok.pad_token_id)
    bank = ResponseBank(3)
    rewards = np.zeros(step.total)
    rewards[[1, step.total - 1]] = 1.0
    bank.record(step.prompt_ids, merged, rewards)
    held = {int(step.prompt_ids[step.group_ids[j]]) for j in (1, step.total - 1)}
    assert set(bank.responses) == held and bank.has([0, 1, 2]).tolist() == [q in held for q in range(3)]
    other = ResponseBank(3)
    other.load_state_dict(json.loads(json.dumps(bank.state_dict())))
    assert other.responses == bank.responses
    rows = other.rows(sorted(held), prompts, tok.pad_token_id, "cpu")
    assert rows.texts == [bank.responses[q][1] for q in sorted(held)]
    with pytest.raises(KeyError, match="no correct completion held"):
        ResponseBank(3).rows([0], prompts, tok.pad_token_id, "cpu")
    with pytest.raises(ValueError, match="for 3 prompts, this bank has 4"):
        ResponseBank(4).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError, match="format 1"):
        other.load_state_dict({"format": 2})
    assert other.responses == bank.responses  # unchanged by a refused state


def test_host_support_refuses_rounds_skips_and_selections():
    """What a fixed-batch host (TRL, verl) can drive: single-round controllers that plan every prompt."""
    refused = {"reinforce-ada", "dapo-dynamic", "ar3po", "greso"}
    for name in CONTROLLERS:
        valid = controller_options(name)
        opts = {"embeddings": np.eye(4)} if "embeddings" in valid else {}
        if "true_success" in valid:
            opts["true_success"] = lambda ids: np.full(len(ids), 0.5)
        ctrl = make_controller(name, n_prompts=4, mean_budget=4, lower=3, upper=8, seed=0, **opts)
        if name in refused:
            with pytest.raises(ValueError, match=rf"HOST cannot drive controller '{name}'.*robust-rollouts train"):
                host_support_iv(ctrl, "HOST", "why.")
        else:
            host_support_iv(ctrl, "HOST", "why.")
            assert not has_selection_rule(ctrl)
    with pytest.raises(ValueError, match="samples in rounds.*skips prompts.*selects which rollouts"):
        host_support_iv(make_controller("dapo-dynamic", n_prompts=4, mean_budget=4, lower=2, upper=8), "H", "w.")


def test_cli_trains_a_round_controller(tmp_path, capsys):
    """robust-rollouts train --controller reinforce-ada: rounds driven, every rollout counted."""
    from benchmarks.cli import main

    args = ["train", "--controller", "reinforce-ada", "--steps", "2", "--task", "arithmetic-partial",
            "--n-prompts", "8", "--prompts-per-step", "4", "--mean-budget", "4", "--lower", "2", "--upper", "8",
            "--hidden-size", "32", "--layers", "1", "--heads", "2", "--warm-start-steps", "20",
            "--cache-dir", str(tmp_path / "cache"), "--max-new-tokens", "4", "--eval-samples", "2", "--no-progress",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "rounds" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["rollouts"] == sum(r["counts"]) <= r["budget"] == 16 and r["rounds"] >= 1
        assert r["rollouts_trained"] <= r["rollouts"] and r["tokens_generated"] >= r["tokens_trained"] > 0
