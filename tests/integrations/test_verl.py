"""The verl integration against the real, installed verl (``nox -s verl``; skipped without verl).

Checked on CPU at unit level (the full trainer needs a GPU rollout server): the registered
estimators through verl's ``compute_advantage`` and the V1 ``compute_advantage_for_multi_trajectories``
on ``DataProto`` batches with uneven groups (a group of one gets 0, unlike verl's GRPO); the
``__rollout_n__`` column through verl's TensorDict helpers and the real trainer's
``_next_train_batch``; the real trainer's advantage step (shaping, multipliers, observations) on a
hand-built batch, end to end through verl's own ``_compute_advantage``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")
torch.set_num_threads(1)

from omegaconf import OmegaConf, open_dict
from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories
from verl.utils import tensordict_utils as tu

from bandits.controllers import make_controller
from llm_bridge.advantage_kinds import kind_advantages
from llm_bridge.integrations import verl as rv
from solvers import drro_rewards

pytestmark = pytest.mark.verl

SIZES = [3, 1, 4, 2]  # uneven groups, including a group of one


def _batch(sizes=SIZES, seed=0, resp_len=6, shuffle=True):
    """A DataProto of single-turn rollouts: score at the last response token, ragged lengths."""
    rng = np.random.default_rng(seed)
    uids = np.concatenate([[f"u{g}"] * n for g, n in enumerate(sizes)]).astype(object)
    perm = rng.permutation(uids.size) if shuffle else np.arange(uids.size)
    uids = uids[perm]
    n = uids.size
    lengths = rng.integers(1, resp_len + 1, size=n)
    mask = (np.arange(resp_len)[None, :] < lengths[:, None]).astype(np.float32)
    scores = rng.integers(0, 2, size=n).astype(np.float32)
    scores[uids == "u1"] = 1.0  # the group of one has a non-zero score: verl's GRPO would not give it 0
    tok = np.zeros((n, resp_len), dtype=np.float32)
    tok[np.arange(n), lengths - 1] = scores
    data = DataProto.from_dict(tensors={"token_level_rewards": torch.tensor(tok), "response_mask": torch.tensor(mask)},
                               non_tensors={"uid": uids})
    return data, scores.astype(np.float64), uids, mask


VERL_KIND = {"grpo": "verl-grpo", "drgrpo": "verl-drgrpo", "rloo": "verl-rloo"}  # the estimators' defaults


def _reference(scores, uids, kind, mult=None):
    labels, gid = np.unique(uids.astype(str), return_inverse=True)
    adv = kind_advantages(scores, gid, VERL_KIND.get(kind, kind))
    if mult is not None:
        adv = adv * np.array([mult.get(u, 1.0) for u in labels])[gid]
    return adv


def test_estimators_are_registered_in_verls_registry():
    for name in ("robust_grpo", "robust_drgrpo", "robust_rloo"):
        assert core_algos.get_adv_estimator_fn(name) is rv.ESTIMATORS[name]


@pytest.mark.parametrize("kind", ["grpo", "drgrpo", "rloo"])
def test_compute_advantage_with_uneven_groups(kind):
    data, scores, uids, mask = _batch()
    out = compute_advantage(data, adv_estimator=f"robust_{kind}", config=OmegaConf.create({}))
    adv = out.batch["advantages"].numpy()
    expected = _reference(scores, uids, kind)
    np.testing.assert_allclose(adv, expected[:, None] * mask, rtol=1e-6, atol=1e-6)
    assert np.all(adv[uids == "u1"] == 0.0)  # the group of one
    # per group the advantages sum to zero (GRPO / Dr.GRPO / RLOO identity)
    per_row = adv.sum(-1) / np.maximum(mask.sum(-1), 1)
    for u in np.unique(uids):
        assert abs(per_row[uids == u].sum()) < 1e-5


def test_verls_builtin_grpo_gives_a_group_of_one_its_raw_score():
    """The trap the robust estimators fix: verl's GRPO gives a size-1 group its raw score."""
    data, _scores, uids, _mask = _batch()
    out = compute_advantage(data, adv_estimator="grpo", config=OmegaConf.create({}))
    row = np.flatnonzero(uids == "u1")[0]
    assert out.batch["advantages"][row].sum().item() != 0.0
    ours = compute_advantage(_batch()[0], adv_estimator="robust_grpo", config=OmegaConf.create({}))
    assert ours.batch["advantages"][row].abs().sum().item() == 0.0


def test_multipliers_from_the_algorithm_config_and_from_the_batch():
    data, scores, uids, mask = _batch()
    mult = {"u0": 2.0, "u2": 0.5, "u3": 3.0}
    cfg = OmegaConf.create({rv.MULTIPLIER_KEY: mult})
    adv = compute_advantage(data, adv_estimator="robust_rloo", config=cfg).batch["advantages"].numpy()
    expected = _reference(scores, uids, "rloo", mult)
    np.testing.assert_allclose(adv, expected[:, None] * mask, rtol=1e-6, atol=1e-6)
    # the batch route: one multiplier per row
    data2, *_ = _batch()
    data2.non_tensor_batch["robust_multiplier"] = np.array([mult.get(u, 1.0) for u in uids], dtype=object)
    adv2 = rv.compute_robust_advantage(data2, "robust_rloo").batch["advantages"].numpy()
    np.testing.assert_allclose(adv2, adv, rtol=0, atol=0)
    bad = np.array([mult.get(u, 1.0) for u in uids], dtype=np.float64)
    bad[np.flatnonzero(uids == "u0")[0]] = 9.0
    data3, *_ = _batch()
    data3.non_tensor_batch["robust_multiplier"] = bad.astype(object)
    with pytest.raises(ValueError, match="differs within uid"):
        rv.compute_robust_advantage(data3, "robust_rloo")
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        compute_advantage(_batch()[0], adv_estimator="robust_grpo", config=OmegaConf.create({rv.MULTIPLIER_KEY: {"u0": -1}}))


def test_v1_multi_trajectory_path_with_uneven_groups():
    data, scores, uids, mask = _batch()
    sessions = {}
    keys = []
    for u in uids:
        sessions[u] = sessions.get(u, -1) + 1
        keys.append(f"{u}_{sessions[u]}_0")
    out = compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator="robust_drgrpo",
                                                   config=OmegaConf.create({rv.MULTIPLIER_KEY: {"u3": 2.0}}))
    expected = _reference(scores, uids, "drgrpo", {"u3": 2.0})
    np.testing.assert_allclose(out.batch["advantages"].numpy(), expected[:, None] * mask, rtol=1e-6, atol=1e-6)


def test_rollout_n_column_survives_verls_tensordict_helpers():
    a = tu.get_tensordict({"index": np.array([3, 7], dtype=object), rv.ROLLOUT_N_KEY: torch.tensor([1, 5])})
    b = tu.get_tensordict({"index": np.array([2], dtype=object), rv.ROLLOUT_N_KEY: torch.tensor([6])})
    both = tu.concat_tensordict([a, b])
    assert both[rv.ROLLOUT_N_KEY].tolist() == [1, 5, 6]
    # the V1 agent loop takes one row as a dict and pops the column as its n
    prompt = {k: both[k][2] for k in both.keys() if isinstance(both[k], torch.Tensor)}  # noqa: SIM118 - TensorDict has no 'in'
    assert len(range(prompt.pop(rv.ROLLOUT_N_KEY))) == 6


# ------------------------------------------------------------------------------------------------
# The trainer subclass (real verl PPOTrainer construction from verl's own config)
# ------------------------------------------------------------------------------------------------

class ScriptedController:
    """A controller with fixed per-prompt counts (bandits.controllers protocol), recording observe()."""

    def __init__(self, counts_by_id, multipliers_by_id=None, bins_by_id=None):
        self.counts_by_id, self.mult, self.bins = counts_by_id, multipliers_by_id or {}, bins_by_id
        self.observed = []

    def plan(self, prompt_ids):
        from types import SimpleNamespace

        ids = [int(q) for q in prompt_ids]
        return SimpleNamespace(counts=np.array([self.counts_by_id[q] for q in ids], dtype=np.int64),
                               multipliers=np.array([self.mult.get(q, 1.0) for q in ids]),
                               bins=None if self.bins is None else np.array([self.bins[q] for q in ids]))

    def observe(self, prompt_ids, counts, rewards, group_ids):
        self.observed.append((np.asarray(prompt_ids).copy(), np.asarray(counts).copy(),
                              np.asarray(rewards).copy(), np.asarray(group_ids).copy()))

    def state_dict(self):
        return {"observed": len(self.observed)}

    def load_state_dict(self, state):
        pass


@pytest.fixture(scope="module")
def verl_config():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    cfg_dir = Path(rv.__file__).parent / "verl_config"
    with initialize_config_dir(config_dir=str(cfg_dir), version_base=None):
        cfg = compose(config_name="robust_ppo_trainer", overrides=[
            "data.train_batch_size=4", "data.gen_batch_size=2", "actor_rollout_ref.rollout.n=3",
            "robust.n_prompts=10", "robust.controller=uniform"])
    return cfg


def test_example_config_composes_with_verls_config(verl_config):
    cfg = verl_config
    assert cfg.trainer.v1.trainer_mode == rv.TRAINER_NAME and cfg.trainer.use_v1
    assert cfg.algorithm.adv_estimator == "robust_grpo"
    assert "actor" in cfg.actor_rollout_ref and cfg.robust.n_prompts == 10  # verl's defaults came in
    from verl.trainer.ppo.v1 import get_trainer_cls

    assert get_trainer_cls(rv.TRAINER_NAME) is rv.RobustPPOTrainer


def _trainer(verl_config, controller, shaping=None):
    cfg = verl_config.copy()
    if shaping is not None:
        cfg.robust.shaping = shaping
    trainer = rv.RobustPPOTrainer(cfg, controller=controller)
    assert trainer.trainer_mode == "sync"  # behaves as verl's sync trainer
    return trainer


def test_next_train_batch_injects_per_prompt_counts(verl_config):
    from torch.utils.data import DataLoader
    from verl.utils.dataset.rl_dataset import collate_fn

    rows = [{"raw_prompt": [{"role": "user", "content": f"q{i}"}], "index": i, "data_source": "t"} for i in range(8)]
    counts = {0: 1, 1: 5, 2: 3, 3: 3, 4: 2, 5: 4, 6: 3, 7: 3}
    trainer = _trainer(verl_config, ScriptedController(counts))
    trainer.train_dataloader = DataLoader(rows, batch_size=2, shuffle=False, collate_fn=collate_fn)
    trainer.train_dataloader_it = None
    trainer.global_steps = 1
    batch = trainer._next_train_batch()  # 4 prompts from two gen batches of 2 (concat_tensordict)
    ids = [int(i) for i in list(batch["index"])]
    assert ids == [0, 1, 2, 3]
    assert batch[rv.ROLLOUT_N_KEY].tolist() == [1, 5, 3, 3]
    assert batch[rv.ROLLOUT_N_KEY].sum().item() == 4 * 3  # train_batch_size x rollout.n
    with pytest.raises(RuntimeError, match="expected 4 x rollout.n=3"):
        bad = _trainer(verl_config, ScriptedController({i: 4 for i in range(8)}))
        bad.train_dataloader, bad.train_dataloader_it, bad.global_steps = trainer.train_dataloader, None, 1
        bad._next_train_batch()


class _MemoryTQ:
    """In-memory stand-in for the TransferQueue transport (kv_batch_get / kv_batch_put by key)."""

    def __init__(self):
        self.rows: dict[str, dict] = {}

    def put(self, keys, partition_id, fields=None, tags=None):
        for i, k in enumerate(keys):
            row = self.rows.setdefault(k, {})
            for name in fields.keys():  # noqa: SIM118 - TensorDict has no 'in'
                v = fields[name]
                row[name] = v[i] if not hasattr(v, "tolist") or isinstance(v, torch.Tensor) else v.tolist()[i]

    def get(self, keys, partition_id, select_fields=None):
        out = {}
        for name in select_fields:
            vals = [self.rows[k][name] for k in keys if name in self.rows[k]]
            if len(vals) < len(keys):
                continue
            if isinstance(vals[0], torch.Tensor):
                out[name] = torch.nested.as_nested_tensor([v.clone() for v in vals], layout=torch.jagged)
            else:
                out[name] = list(vals)
        return tu.get_tensordict(out)


def _step_batch(rng, sizes, resp_len=5):
    """TransferQueue rows of one step: keys, scores in {0, 1}, ragged responses with log-probs."""
    keys, rows = [], []
    for g, n in enumerate(sizes):
        for s in range(n):
            length = int(rng.integers(1, resp_len + 1))
            score = float(rng.integers(0, 2))
            rm = torch.zeros(length)
            rm[-1] = score
            lp = torch.tensor(rng.uniform(-3.0, -0.1, size=length), dtype=torch.float32)
            keys.append(f"u{g}_{s}_0")
            rows.append({"uid": f"u{g}", "rm_scores": rm, "response_mask": torch.ones(length, dtype=torch.int64),
                         "old_log_probs": lp})
    order = rng.permutation(len(keys))
    return [keys[i] for i in order], [rows[i] for i in order]


@pytest.mark.parametrize("shaping", [None, {"rule": "drro", "delta": 0.7}, {"rule": "dro", "delta": 0.4, "tau": 2.0}])
def test_trainer_advantage_step_on_a_hand_built_batch(verl_config, monkeypatch, shaping):
    import transfer_queue
    from transfer_queue import KVBatchMeta

    rng = np.random.default_rng(3)
    sizes = [3, 1, 5, 3]  # counts planned for prompts 7, 2, 9, 4 (sum 12 = 4 x 3)
    prompt_of = {0: 7, 1: 2, 2: 9, 3: 4}
    ctrl = ScriptedController({7: 3, 2: 1, 9: 5, 4: 3}, multipliers_by_id={7: 1.5, 9: 0.5}, bins_by_id={7: 0, 2: 1, 9: 1, 4: 0})
    trainer = _trainer(verl_config, ctrl, shaping)
    # the plan of this batch, as _next_train_batch records it
    batch = tu.get_tensordict({"index": np.array([7, 2, 9, 4], dtype=object),
                               "uid": np.array(["u0", "u1", "u2", "u3"], dtype=object)})
    batch = trainer._plan_batch(batch)
    assert batch[rv.ROLLOUT_N_KEY].tolist() == sizes

    keys, rows = _step_batch(rng, sizes)
    store = _MemoryTQ()
    for k, r in zip(keys, rows):
        store.rows[k] = dict(r)
    monkeypatch.setattr(transfer_queue, "kv_batch_get", store.get)
    monkeypatch.setattr(transfer_queue, "kv_batch_put", store.put)

    meta = KVBatchMeta(keys=keys, tags=[{}] * len(keys), partition_id="train")
    metrics: dict = {}
    trainer._compute_advantage(meta, metrics)  # ours, then verl's own advantage step

    uids = np.array([r["uid"] for r in rows])
    gid = np.array([int(u[1:]) for u in uids])
    raw = np.array([float(r["rm_scores"].sum()) for r in rows])
    seq_lp = np.array([float(r["old_log_probs"].double().sum()) for r in rows])
    shaped = raw.copy()
    if shaping is not None:
        from solvers import dro_rewards

        fn = drro_rewards if shaping["rule"] == "drro" else dro_rewards
        tau = shaping.get("tau")
        for g in range(len(sizes)):  # the reference: one dense call per group
            sel = np.flatnonzero(gid == g)
            shaped[sel] = fn(raw[sel][None, :], seq_lp[sel][None, :], shaping["delta"], tau=tau).rewards[0]
        assert np.abs(shaped - raw).max() > 0
    mult = np.array([ctrl.mult.get(prompt_of[g], 1.0) for g in range(len(sizes))])
    expected = kind_advantages(shaped.astype(np.float32), gid, "verl-grpo") * mult[gid]
    got = np.array([float(store.rows[k]["advantages"][0]) for k in keys])  # advantage broadcast over tokens
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.all(got[gid == 1] == 0.0)  # the group of one
    for k in keys:  # broadcast over the response tokens
        adv = store.rows[k]["advantages"]
        assert torch.allclose(adv, adv[0].expand_as(adv))
    # shaped scores were written back at the last token
    got_scores = np.array([float(store.rows[k]["rm_scores"].double().sum()) for k in keys])
    np.testing.assert_allclose(got_scores, shaped, rtol=1e-6, atol=1e-6)
    # the controller saw the raw rewards of real group sizes, in the order of first appearance
    (pids, counts, rewards, groups), = ctrl.observed
    assert sorted(zip(pids.tolist(), counts.tolist())) == sorted((prompt_of[g], n) for g, n in enumerate(sizes))
    for p, n in zip(pids.tolist(), counts.tolist()):
        g = next(g for g, q in prompt_of.items() if q == p)
        assert np.allclose(np.sort(rewards[groups == list(pids).index(p)]), np.sort(raw[gid == g]))
    assert metrics["robust/groups_of_one"] == 1.0 and metrics["robust/group_size/max"] == 5.0
    assert metrics["robust/bin_1/rollouts"] == 6.0 and metrics["robust/bin_0/prompts"] == 2.0
    assert rv.MULTIPLIER_KEY not in trainer.config.algorithm  # the overlay is removed after the step
    assert trainer._robust_plans == {}


def test_trainer_refuses_rewards_outside_unit_interval_without_touching_state(verl_config, monkeypatch):
    ctrl = ScriptedController({0: 2, 1: 2})
    cfg = verl_config.copy()
    cfg.actor_rollout_ref.rollout.n = 2
    trainer = rv.RobustPPOTrainer(cfg, controller=ctrl)
    trainer._plan_batch(tu.get_tensordict({"index": np.array([0, 1], dtype=object),
                                           "uid": np.array(["a", "b"], dtype=object)}))
    keys = ["a_0_0", "a_1_0", "b_0_0", "b_1_0"]
    data = tu.get_tensordict({
        "rm_scores": torch.nested.as_nested_tensor([torch.tensor([0.0, 2.0]), torch.tensor([1.0]),
                                                     torch.tensor([0.0]), torch.tensor([1.0])], layout=torch.jagged),
        "response_mask": torch.nested.as_nested_tensor([torch.ones(2), torch.ones(1), torch.ones(1), torch.ones(1)],
                                                        layout=torch.jagged),
        "old_log_probs": torch.nested.as_nested_tensor([-torch.ones(2), -torch.ones(1), -torch.ones(1),
                                                         -torch.ones(1)], layout=torch.jagged)})
    with pytest.raises(ValueError, match=r"must then be in \[0, 1\].*success_fn="):
        trainer._robust_advantage_step(keys, data)
    assert ctrl.observed == [] and len(trainer._robust_plans) == 2
    assert trainer.advantage.kl_history == []


@pytest.mark.parametrize("name", ["reinforce-ada", "dapo-dynamic", "ar3po", "greso"])
def test_trainer_refuses_round_skip_and_selection_controllers(verl_config, name):
    """verl generates each prompt's __rollout_n__ rollouts in one pass and trains on all of them: a
    controller that samples in rounds, skips prompts or selects its rollouts is refused at construction."""
    cfg = verl_config.copy()
    cfg.robust.controller, cfg.robust.lower, cfg.robust.upper = name, 1, 6
    with pytest.raises(ValueError, match=rf"RobustPPOTrainer \(verl\) cannot drive controller '{name}'.*one pass"
                                          r".*robust-rollouts train"):
        rv.RobustPPOTrainer(cfg)
    ctrl = make_controller(name, n_prompts=10, mean_budget=3, lower=1, upper=6)
    with pytest.raises(ValueError, match=f"cannot drive controller '{name}'"):
        rv.RobustPPOTrainer(verl_config.copy(), controller=ctrl)


def test_trainer_with_a_real_controller_from_the_config(verl_config):
    """robust.controller names a bandits.controllers controller; its plan keeps the budget exact."""
    cfg = verl_config.copy()
    cfg.robust.controller, cfg.robust.lower, cfg.robust.upper = "rollout-gdro", 2, 6
    trainer = rv.RobustPPOTrainer(cfg)
    assert type(trainer.controller).__name__ != "ScriptedController"
    rng = np.random.default_rng(1)
    for step in range(3):
        ids = rng.choice(10, size=4, replace=False)
        uids = [f"s{step}p{q}" for q in ids]
        batch = trainer._plan_batch(tu.get_tensordict({"index": ids.astype(object), "uid": np.array(uids, dtype=object)}))
        counts = batch[rv.ROLLOUT_N_KEY].tolist()
        assert sum(counts) == 4 * 3 and min(counts) >= 2 and max(counts) <= 6
        keys, rm, lp = [], [], []
        for u, n in zip(uids, counts):
            for s in range(n):
                keys.append(f"{u}_{s}_0")
                rm.append(torch.tensor([0.0, float(rng.integers(0, 2))]))
                lp.append(torch.tensor(rng.uniform(-2, -0.1, 2), dtype=torch.float32))
        data = tu.get_tensordict({
            "rm_scores": torch.nested.as_nested_tensor(rm, layout=torch.jagged),
            "response_mask": torch.nested.as_nested_tensor([torch.ones(2, dtype=torch.int64)] * len(rm),
                                                            layout=torch.jagged),
            "old_log_probs": torch.nested.as_nested_tensor(lp, layout=torch.jagged)})
        shaped, table, _ = trainer._robust_advantage_step(keys, data)
        assert shaped is None and set(table) == set(uids)
        assert trainer.last_step["counts"].tolist() == counts
    state = trainer.robust_state_dict()
    other = rv.RobustPPOTrainer(cfg)
    other.load_robust_state_dict(state)
    probe = np.arange(4)
    assert np.array_equal(trainer.controller.plan(probe).counts, other.controller.plan(probe).counts)


# ------------------------------------------------------------------------------------------------
# verl's own numbers under equal groups; multi-output trajectories; checkpoints; one step for all hosts
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_equal_groups_reproduce_verls_estimators_bit_for_bit(norm, seed):
    """On groups of two or more the robust estimators are verl's grpo (with norm_adv_by_std_in_grpo
    honoured), grpo without std (robust_drgrpo) and rloo, bit for bit (torch.equal)."""
    data, *_ = _batch(sizes=[4, 4, 4, 4, 4], seed=seed)
    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": norm})
    tok = data.batch["token_level_rewards"]
    data.batch["token_level_rewards"] = tok + torch.randn(tok.shape, generator=torch.Generator().manual_seed(seed)) \
        * data.batch["response_mask"]  # real-valued scores
    ours = compute_advantage(data, adv_estimator="robust_grpo", config=cfg).batch["advantages"].clone()
    theirs = compute_advantage(data, adv_estimator="grpo", norm_adv_by_std_in_grpo=norm, config=cfg)
    assert torch.equal(ours, theirs.batch["advantages"])
    ours = compute_advantage(data, adv_estimator="robust_drgrpo", config=cfg).batch["advantages"].clone()
    theirs = compute_advantage(data, adv_estimator="grpo", norm_adv_by_std_in_grpo=False, config=cfg)
    assert torch.equal(ours, theirs.batch["advantages"])
    ours = compute_advantage(data, adv_estimator="robust_rloo", config=cfg).batch["advantages"].clone()
    assert torch.equal(ours, compute_advantage(data, adv_estimator="rloo", config=cfg).batch["advantages"])
    # the papers' convention stays available: population std, sqrt(n / (n - 1)) = 1.155x at n = 4
    cfg2 = OmegaConf.create({"norm_adv_by_std_in_grpo": True, rv.KIND_KEY: "grpo"})
    papers = compute_advantage(data, adv_estimator="robust_grpo", config=cfg2).batch["advantages"]
    verls = compute_advantage(data, adv_estimator="grpo", config=cfg2).batch["advantages"]
    big = verls.abs() > 1e-2
    torch.testing.assert_close(papers[big] / verls[big], torch.full_like(papers[big], (4 / 3) ** 0.5), rtol=1e-4,
                               atol=0)


def _multi_output_batch(seed=0):
    """Trajectories of prompts u0 (3 sessions), u1 (2), u2 (2); some sessions have 2 or 3 outputs,
    the score sits on the final output."""
    rng = np.random.default_rng(seed)
    layout = {"u0": [1, 2, 1], "u1": [3, 1], "u2": [1, 2]}
    keys, rows = [], []
    for u, outs in layout.items():
        for s, n_out in enumerate(outs):
            score = 0.9 * float(rng.integers(0, 2)) + float(rng.uniform(0, 0.1))
            for o in range(n_out):
                tok = torch.zeros(4)
                if o == n_out - 1:
                    tok[-1] = score
                keys.append(f"{u}_{s}_{o}")
                rows.append((u, tok))
    data = DataProto.from_dict(tensors={"token_level_rewards": torch.stack([t for _, t in rows]),
                                        "response_mask": torch.ones(len(rows), 4)},
                               non_tensors={"uid": np.array([u for u, _ in rows], dtype=object)})
    return data, keys, layout


def test_multi_output_trajectories_count_once_like_verls_grpo():
    """verl's V1 path gives non-grpo estimators one row per output; the robust estimators are routed
    like verl's grpo (final output per session joins the group, advantage broadcast). The V1
    trainers look the function up in their module at call time, where this module installed it."""
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1 import utils as v1_utils

    assert trainer_base.compute_advantage_for_multi_trajectories is rv.compute_robust_advantage_for_multi_trajectories
    assert v1_utils.compute_advantage_for_multi_trajectories is rv.compute_robust_advantage_for_multi_trajectories
    data, keys, layout = _multi_output_batch()
    theirs = compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator="grpo",
                                                      config=OmegaConf.create({}))  # verl's original function
    data2, *_ = _multi_output_batch()
    ours = trainer_base.compute_advantage_for_multi_trajectories(data2, batch_keys=keys, adv_estimator="robust_grpo",
                                                                 config=OmegaConf.create({}))
    assert torch.equal(ours.batch["advantages"], theirs.batch["advantages"])
    # what verl's own path would have done with a non-grpo estimator: every output a group member
    data3, *_ = _multi_output_batch()
    per_output = compute_advantage_for_multi_trajectories(data3, batch_keys=keys, adv_estimator="robust_grpo",
                                                          config=OmegaConf.create({}))
    assert not torch.equal(per_output.batch["advantages"], theirs.batch["advantages"])
    # verl's own estimators still go through verl's function
    data4, *_ = _multi_output_batch()
    data5, *_ = _multi_output_batch()
    a = trainer_base.compute_advantage_for_multi_trajectories(data4, batch_keys=keys, adv_estimator="rloo",
                                                              config=OmegaConf.create({}))
    b = compute_advantage_for_multi_trajectories(data5, batch_keys=keys, adv_estimator="rloo",
                                                 config=OmegaConf.create({}))
    assert torch.equal(a.batch["advantages"], b.batch["advantages"])


def test_trainer_step_counts_a_multi_output_trajectory_once(verl_config):
    ctrl = ScriptedController({5: 3, 6: 3, 7: 3})  # planned; two sessions came back without a trajectory
    cfg = verl_config.copy()
    cfg.data.train_batch_size, cfg.actor_rollout_ref.rollout.n = 3, 3
    cfg.robust.shaping = {"rule": "drro", "delta": 0.5}
    trainer = rv.RobustPPOTrainer(cfg, controller=ctrl)
    trainer._plan_batch(tu.get_tensordict({"index": np.array([5, 6, 7], dtype=object),
                                           "uid": np.array(["u0", "u1", "u2"], dtype=object)}))
    data, keys, layout = _multi_output_batch()
    n = len(keys)
    td = tu.get_tensordict({
        "rm_scores": torch.nested.as_nested_tensor(list(data.batch["token_level_rewards"]), layout=torch.jagged),
        "response_mask": torch.nested.as_nested_tensor([torch.ones(4, dtype=torch.int64)] * n, layout=torch.jagged),
        "old_log_probs": torch.nested.as_nested_tensor([-torch.arange(1.0, 5.0) * (i + 1) / n for i in range(n)],
                                                       layout=torch.jagged)})
    shaped, table, metrics = trainer._robust_advantage_step(keys, td)
    (pids, counts, rewards, groups), = ctrl.observed
    assert pids.tolist() == [5, 6, 7] and counts.tolist() == [3, 2, 2]  # sessions, not output rows
    finals = [i for i, k in enumerate(keys) if k.rsplit("_", 1)[1] == str(layout[k.split("_")[0]][int(k.split("_")[1])] - 1)]
    np.testing.assert_allclose(np.sort(rewards), np.sort(data.batch["token_level_rewards"][finals].sum(-1).numpy()),
                               rtol=1e-6)
    bonus = shaped["rm_scores"].to_padded_tensor(0.0).sum(-1) - data.batch["token_level_rewards"].sum(-1)
    assert torch.all(bonus[[i for i in range(n) if i not in finals]] == 0) and bonus.max() > 0  # finals only


def _step_rows(rng, uids, counts):
    keys, rm, lp = [], [], []
    for u, c in zip(uids, counts):
        for s in range(c):
            keys.append(f"{u}_{s}_0")
            rm.append(torch.tensor([0.0, float(rng.integers(0, 2))]))
            lp.append(torch.tensor(rng.uniform(-2, -0.1, 2), dtype=torch.float32))
    td = tu.get_tensordict({
        "rm_scores": torch.nested.as_nested_tensor(rm, layout=torch.jagged),
        "response_mask": torch.nested.as_nested_tensor([torch.ones(2, dtype=torch.int64)] * len(rm),
                                                        layout=torch.jagged),
        "old_log_probs": torch.nested.as_nested_tensor(lp, layout=torch.jagged),
        "ref_log_prob": torch.nested.as_nested_tensor([x - 0.3 for x in lp], layout=torch.jagged)})
    return keys, td


def _drive(trainer, steps, seed_of_step):
    out = []
    for step in steps:
        rng = np.random.default_rng(seed_of_step(step))
        ids = rng.choice(10, size=4, replace=False)
        uids = [f"s{step}p{q}" for q in ids]
        batch = trainer._plan_batch(tu.get_tensordict({"index": ids.astype(object),
                                                       "uid": np.array(uids, dtype=object)}))
        keys, td = _step_rows(rng, uids, batch[rv.ROLLOUT_N_KEY].tolist())
        trainer._robust_advantage_step(keys, td)
        out.append((batch[rv.ROLLOUT_N_KEY].tolist(), trainer.last_step["result"].advantages.copy(),
                    trainer.last_step["result"].delta))
        trainer.global_steps = step
    return out


def test_checkpoint_resumes_the_controller_and_the_kl_history_exactly(verl_config, tmp_path, monkeypatch):
    """verl's checkpoint (actor, critic, dataloader: stubbed here, they need GPU workers) plus
    robust_state.pkl: a run resumed from step 2 plans, shapes (dynamic budget from the KL history)
    and advantages steps 3-4 exactly as the uninterrupted run."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer as PPOTrainerBase

    def fake_save(self):  # verl's folder layout and tracker file, without the GPU workers
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(self.config.trainer.default_local_dir, "latest_checkpointed_iteration.txt"), "w") as f:
            f.write(str(self.global_steps))

    def fake_load(self):
        from verl.utils.checkpoint.checkpoint_manager import find_latest_ckpt_path

        folder = find_latest_ckpt_path(self.config.trainer.default_local_dir)
        self.global_steps = 0 if folder is None else int(folder.split("global_step_")[-1])

    monkeypatch.setattr(PPOTrainerBase, "_save_checkpoint", fake_save)
    monkeypatch.setattr(PPOTrainerBase, "_load_checkpoint", fake_load)
    cfg = verl_config.copy()
    cfg.robust.controller, cfg.robust.lower, cfg.robust.upper = "rollout-gdro", 2, 6
    cfg.robust.shaping = {"rule": "drro", "delta": 0.2, "tau": 2.0, "kl_alpha": 5.0, "kl_window": 3}
    cfg.trainer.default_local_dir, cfg.trainer.resume_mode = str(tmp_path / "ckpt"), "auto"
    seed_of = lambda step: 100 + step  # noqa: E731
    straight = rv.RobustPPOTrainer(cfg)
    expected = _drive(straight, [1, 2, 3, 4], seed_of)

    first = rv.RobustPPOTrainer(cfg)
    _drive(first, [1, 2], seed_of)
    first._save_checkpoint()
    assert os.path.exists(tmp_path / "ckpt" / "global_step_2" / rv.ROBUST_STATE_FILE)
    _drive(first, [3], seed_of)  # the run goes on; the resumed one must redo step 3 exactly

    resumed = rv.RobustPPOTrainer(cfg)
    resumed._load_checkpoint()
    assert resumed.global_steps == 2 and len(resumed.advantage.kl_history) == 2
    got = _drive(resumed, [3, 4], seed_of)
    for (c1, a1, d1), (c2, a2, d2) in zip(expected[2:], got):
        assert c1 == c2 and np.array_equal(a1, a2) and d1 == d2
    # a checkpoint without the robust state is refused, not silently restarted
    os.remove(tmp_path / "ckpt" / "global_step_2" / rv.ROBUST_STATE_FILE)
    with pytest.raises(FileNotFoundError, match="robust_state.pkl"):
        rv.RobustPPOTrainer(cfg)._load_checkpoint()


def test_success_threshold_maps_any_reward_range(verl_config):
    cfg = verl_config.copy()
    cfg.actor_rollout_ref.rollout.n = 2
    cfg.robust.controller, cfg.robust.lower, cfg.robust.upper, cfg.robust.success_threshold = "rollout-gdro", 2, 2, 0.0
    trainer = rv.RobustPPOTrainer(cfg)
    trainer._plan_batch(tu.get_tensordict({"index": np.array([0, 1], dtype=object),
                                           "uid": np.array(["a", "b"], dtype=object)}))
    keys = ["a_0_0", "a_1_0", "b_0_0", "b_1_0"]
    scores = [-3.0, 2.0, 0.5, -0.1]
    td = tu.get_tensordict({
        "rm_scores": torch.nested.as_nested_tensor([torch.tensor([x]) for x in scores], layout=torch.jagged),
        "response_mask": torch.nested.as_nested_tensor([torch.ones(1, dtype=torch.int64)] * 4, layout=torch.jagged),
        "old_log_probs": torch.nested.as_nested_tensor([-torch.ones(1)] * 4, layout=torch.jagged)})
    trainer._robust_advantage_step(keys, td)
    assert trainer.last_step["success"].tolist() == [0.0, 1.0, 1.0, 0.0] and trainer.controller.step == 1
    with pytest.raises(ValueError, match="mean_budget 3 must equal actor_rollout_ref.rollout.n=2"):
        rv.RobustPPOTrainer(cfg, controller=type("C", (ScriptedController,), {"mean_budget": 3})({}))


def test_trainer_verl_and_the_step_give_the_same_advantages(verl_config, monkeypatch):
    """The verl half of the one-step check (the TRL half runs in the trl session): one batch (uneven
    groups, a group of one, multipliers, DRRO soft shaping with group-size scaling), one
    configuration, the project's trainer adapter and the verl trainer's advantages through verl's own
    advantage step are identical."""
    import transfer_queue
    from transfer_queue import KVBatchMeta

    from llm_bridge.robust_step import RobustAdvantage
    from llm_bridge.trainer import TrainConfig, Trainer

    sizes = [3, 1, 5, 3]
    prompt_of = {0: 7, 1: 2, 2: 9, 3: 4}
    mult_of = {7: 1.5, 2: 2.0, 9: 0.5, 4: 1.0}
    for kind in ("verl-grpo", "grpo", "rloo"):
        ctrl = ScriptedController({q: n for q, n in zip(prompt_of.values(), sizes)}, multipliers_by_id=mult_of)
        cfg = verl_config.copy()
        cfg.robust.shaping = {"rule": "drro", "delta": 0.7, "tau": 2.0, "reference_group_size": 3}
        with open_dict(cfg.algorithm):  # +algorithm.robust_advantage_kind=... on verl's command line
            cfg.algorithm[rv.KIND_KEY] = kind
        trainer = rv.RobustPPOTrainer(cfg, controller=ctrl)
        trainer._plan_batch(tu.get_tensordict({"index": np.array(list(prompt_of.values()), dtype=object),
                                               "uid": np.array([f"u{g}" for g in prompt_of], dtype=object)}))
        keys, rows = _step_batch(np.random.default_rng(3), sizes)
        store = _MemoryTQ()
        for k, r in zip(keys, rows):
            store.rows[k] = dict(r)
        monkeypatch.setattr(transfer_queue, "kv_batch_get", store.get)
        monkeypatch.setattr(transfer_queue, "kv_batch_put", store.put)
        trainer._compute_advantage(KVBatchMeta(keys=keys, tags=[{}] * len(keys), partition_id="train"), {})
        got = np.array([float(store.rows[k]["advantages"][0]) for k in keys])

        gid = np.array([int(r["uid"][1:]) for r in rows])
        raw = np.array([float(r["rm_scores"].sum()) for r in rows])
        lp = np.array([float(r["old_log_probs"].double().sum()) for r in rows])
        tc = TrainConfig(advantage=kind, shaping="drro", shaping_delta=0.7, shaping_tau=2.0, mean_budget=3)
        via_trainer = RobustAdvantage(tc.advantage, Trainer.shaping_spec(tc))
        mult = np.array([mult_of[prompt_of[g]] for g in range(4)])
        ref = via_trainer(raw, gid, multipliers=mult, seq_logprobs=lp)
        # verl stores the shaped scores in float32 before its advantage step: feed the trainer the same
        again = RobustAdvantage(kind)(ref.shaped_rewards.astype(np.float32), gid, multipliers=mult)
        assert np.array_equal(got.astype(np.float32), again.advantages.astype(np.float32))
        np.testing.assert_allclose(got, ref.advantages, rtol=1e-5, atol=1e-6)
        assert got[gid == 1].tolist() == [0.0]
