"""The simulator's training loop with controllers that sample in rounds and select rollouts.

``ControlledTrainer`` drives every controller through ``bandits.controllers.sample_step``; the
gradient is the estimator's on the training selection. Checked here against direct
computations: a trivial selection is exactly ``SoftmaxRLVR.gradient`` on the batch; a mask equals
the gradient of the filtered batch; baselines give the advantage ``r - b``; a reused answer is one
more rollout (reward 1) in its prompt's group; the merged batch of several rounds holds every
rollout once. And the training study runs with the peer controllers.
"""

from __future__ import annotations

import numpy as np
import pytest

from bandits.controllers import TrainSelection, make_controller
from sim import SoftmaxRLVR
from sim._softmax_kernels import gradient_numpy
from sim.batch import RolloutBatch
from sim.studies import training
from sim.studies._controlled import ControlledTrainer, selected_gradient


@pytest.fixture(scope="module")
def env():
    return SoftmaxRLVR(n_prompts=20, n_answers=6, dim=8, seed=3)


def _batch(env, rng):
    ids = np.array([0, 4, 7, 9])
    return env.rollout(ids, np.array([4, 3, 5, 2]), rng)


def test_trivial_selection_is_the_plain_gradient(env):
    b = _batch(env, np.random.default_rng(0))
    m = np.array([1.0, 2.0, 0.5, 1.0])
    sel = TrainSelection(np.ones(b.n_rollouts, dtype=bool))
    bank = np.full(env.n_prompts, -1)
    assert np.array_equal(selected_gradient(env, b, sel, m, "rloo", bank), env.gradient(b, "rloo", m))


def test_mask_baselines_and_reuse_match_a_direct_computation(env):
    b = _batch(env, np.random.default_rng(1))
    m = np.array([1.0, 2.0, 0.5, 1.5])
    mask = np.ones(b.n_rollouts, dtype=bool)
    mask[b.group_ids == 1] = False  # group 1 dropped
    mask[np.flatnonzero(b.group_ids == 2)[:2]] = False  # group 2 down-sampled to 3
    bank = np.full(env.n_prompts, -1)
    bank[9] = 5  # a correct answer kept for prompt 9 (reuse)
    base = np.array([0.25, 0.5, 0.75, 0.1])
    sel = TrainSelection(mask, base, np.array([False, False, False, True]))
    got = selected_gradient(env, b, sel, m, "rloo", bank)
    # direct: groups 0, 2, 3 with their selected rollouts (+ answer 5 with reward 1 for group 3)
    keep = np.array([0, 2, 3])
    g = np.r_[b.group_ids[mask], 3]
    a = np.r_[b.actions[mask], 5]
    r = np.r_[b.rewards[mask], 1.0]
    n = np.bincount(g, minlength=4)[keep].astype(float)
    pos = {0: 0, 2: 1, 3: 2}
    gl = np.array([pos[x] for x in g])
    adv = r - base[keep][gl]
    w = adv * m[keep][gl] / (keep.size * n[gl])
    want = gradient_numpy(env._phi, b.ids[keep], b.probs[keep], gl, a, w)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-14)
    none = TrainSelection(np.zeros(b.n_rollouts, dtype=bool))
    assert np.array_equal(selected_gradient(env, b, none, m, "rloo", bank), np.zeros(env.dim))


def test_gradient_baselines_are_validated(env):
    b = _batch(env, np.random.default_rng(2))
    with pytest.raises(ValueError, match=r"baselines must have one value per prompt \(4\)"):
        env.gradient(b, "rloo", baselines=[0.5])
    with pytest.raises(ValueError, match="baselines must be finite"):
        env.gradient(b, "rloo", baselines=[0.5, np.nan, 0.0, 0.0])


@pytest.mark.parametrize("name", ["dapo-dynamic", "reinforce-ada", "ar3po", "greso"])
def test_trainer_merges_the_rounds_of_a_step(env, name):
    ctrl = make_controller(name, n_prompts=16, mean_budget=6, lower=2, upper=12, seed=0)
    trainer = ControlledTrainer(env, ctrl, {"batch": 8, "lr": 0.02, "estimator": "rloo"}, 16, seed=5)
    for _ in range(6):
        ids, plan, batch = trainer.sample()
        step = trainer.last_step
        assert isinstance(batch, RolloutBatch) and np.array_equal(batch.counts, step.counts)
        assert batch.n_rollouts == step.total <= step.budget == 48
        assert np.array_equal(np.bincount(batch.group_ids, minlength=8), batch.counts)
        assert np.allclose(batch.probs, env.policy(ids))
        assert np.array_equal(batch.rewards, env.reward_table[ids[batch.group_ids], batch.actions])
        trainer.update(ids, plan, batch)
    assert trainer.steps_done == 6 and ctrl.step == 6


def test_training_study_runs_with_the_peers():
    cfg = training.config("quick")
    # vip stays: the training study's claims and allocation figure are about it
    cfg["controllers"] = ["uniform", "vip", "knapsack", "greso", "reinforce-ada", "dapo-dynamic", "ar3po"]
    cfg["regimes"] = {"default": cfg["regimes"]["default"]}
    reg = cfg["regimes"]["default"]
    reg["training"]["steps"] = 8
    reg["eval_every"] = 4
    reg["variance_every"] = 4
    tasks = training.tasks(cfg, [7])
    results = [training.run_task(t, cfg) for t in tasks]
    for t, r in zip(tasks, results):
        assert len(r["test_acc"]) == 3 and np.all(np.isfinite(r["test_acc"]))
        if t["controller"] not in (training.EXACT, *training.ARMS):
            assert 0.0 <= r["wasted"] <= 1.0 and np.all(np.isfinite(r["raw_ctrl"]))
    res = training.summarize(cfg, [7], tasks, results)
    assert "dapo-dynamic" in res.data["auc"]["default"]
