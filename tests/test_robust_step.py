"""The one robust step shared by the trainer, TRL and verl: shaping -> advantages of a registered
kind -> multipliers (NumPy; torch for the hosts' kinds), the success mapping and the controller
protocol check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bandits.controllers import check_controller, learns_from_rewards, make_controller
from llm_bridge.advantage_kinds import ADVANTAGE_KINDS, kind_advantages
from llm_bridge.integrations import RobustAdvantage, Shaping, step_metrics
from llm_bridge.robust_step import robust_step, success_values
from solvers import dro_rewards, drro_rewards, dynamic_budget, group_advantages, k3_kl

PAPERS = ["grpo", "drgrpo", "rloo"]


def _ragged(rng, sizes):
    gid = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(gid.size)  # interleaved rows
    return gid[perm], rng.uniform(0, 1, gid.size).round(1), rng.uniform(-9, -0.5, gid.size)


@given(st.lists(st.integers(1, 6), min_size=1, max_size=7), st.sampled_from(PAPERS),
       st.sampled_from([None, ("drro", None), ("drro", 1.5), ("dro", None), ("dro", 1.5)]), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_step_equals_per_group_dense_reference(sizes, kind, rule, scaled, seed):
    """Per group, the step is the dense computation of that group alone: DRRO eq. (4.14) (hard) /
    (4.15) (soft, tau) or the DRO rule on the group's row with the group's budget (delta, times
    n / reference_group_size when scaled), then the group advantage (size-1 groups 0), times the
    multiplier."""
    rng = np.random.default_rng(seed)
    gid, r, lp = _ragged(rng, sizes)
    mult = rng.uniform(0, 3, len(sizes))
    shaping = None if rule is None else Shaping(rule[0], delta=0.7, tau=rule[1],
                                                reference_group_size=3 if scaled else None)
    res = RobustAdvantage(kind, shaping)(r, gid, multipliers=mult, seq_logprobs=lp)
    assert res.group_sizes.tolist() == sizes
    for g in range(len(sizes)):
        sel = np.flatnonzero(gid == g)
        row = r[sel]
        if shaping is not None:
            fn = drro_rewards if rule[0] == "drro" else dro_rewards
            d = 0.7 * sizes[g] / 3 if scaled else 0.7
            assert res.group_delta[g] == pytest.approx(d)
            row = fn(row[None, :], lp[sel][None, :], d, tau=rule[1]).rewards[0]
        np.testing.assert_allclose(res.shaped_rewards[sel], row, rtol=0, atol=1e-12)
        adv = group_advantages(row[None, :], kind=kind)[0] * mult[g]
        np.testing.assert_allclose(res.advantages[sel], adv, rtol=1e-12, atol=1e-12)
        if sizes[g] == 1:
            assert res.advantages[sel].tolist() == [0.0]


@pytest.mark.parametrize("kind", sorted(ADVANTAGE_KINDS))
def test_every_kind_zeroes_groups_of_one_and_equal_groups_and_skips_unscored_rows(kind):
    pytest.importorskip("torch")
    r = np.array([1.0, 0.0, 0.5, 0.7, 0.7, 2.0, np.nan, -1.0, 3.0])
    g = np.array([0, 0, 1, 2, 2, 3, 3, 3, 3])  # group 1 of one, group 2 equal, group 3 with an unscored row
    adv = kind_advantages(r, g, kind)
    assert adv[2] == 0.0 and adv[6] == 0.0
    if kind != "trl-normalize-then-sum":  # that stage centres by the batch mean (as TRL): equal groups move too
        assert adv[3] == 0.0 and adv[4] == 0.0
    assert np.all(np.isfinite(adv)) and adv[0] > 0 > adv[1]
    if kind != "trl-normalize-then-sum":  # group-relative kinds: the unscored row is out of the group's mean
        ref = kind_advantages(r[[5, 7, 8]], [0, 0, 0], kind)
        if ADVANTAGE_KINDS[kind].host == "papers" or kind in ("trl-none", "verl-drgrpo", "verl-rloo", "verl-grpo"):
            np.testing.assert_allclose(adv[[5, 7, 8]], ref, rtol=1e-6)


def test_host_kinds_against_their_formulas():
    """TRL: sample std + 1e-4 (``scale_rewards`` group / batch); verl grpo: sample std + 1e-6; the
    papers' grpo: population std + 1e-6; they differ by sqrt(n / (n - 1)) (1.155x at n = 4)."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    sizes = [4, 2, 5]
    g = np.repeat(np.arange(3), sizes)
    r = rng.normal(size=g.size).astype(np.float32).astype(np.float64)
    for q, n in enumerate(sizes):
        x = r[g == q]
        dev = x - x.mean()
        np.testing.assert_allclose(kind_advantages(r, g, "trl-group")[g == q], dev / (x.std(ddof=1) + 1e-4), rtol=2e-6)
        np.testing.assert_allclose(kind_advantages(r, g, "verl-grpo")[g == q], dev / (x.std(ddof=1) + 1e-6), rtol=2e-6)
        np.testing.assert_allclose(kind_advantages(r, g, "grpo")[g == q], dev / (x.std() + 1e-6), rtol=1e-12)
        np.testing.assert_allclose(kind_advantages(r, g, "trl-batch")[g == q], dev / (r.std(ddof=1) + 1e-4), rtol=2e-6)
        np.testing.assert_allclose(kind_advantages(r, g, "verl-rloo")[g == q], dev * n / (n - 1), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(kind_advantages(r, g, "trl-normalize-then-sum"), (r - r.mean()) / (r.std(ddof=1) + 1e-4),
                               rtol=2e-6, atol=1e-6)
    four = g == 0
    ratio = kind_advantages(r, g, "grpo")[four] / kind_advantages(r, g, "verl-grpo")[four]
    np.testing.assert_allclose(ratio, np.sqrt(4 / 3), rtol=1e-5)


def test_dynamic_budget_follows_eq_4_17_with_a_sliding_window():
    rng = np.random.default_rng(0)
    gid, r, lp = _ragged(rng, [3, 2, 4])
    step = RobustAdvantage("grpo", Shaping("drro", delta=0.2, kl_alpha=10.0, kl_window=2))
    kls = []
    for t in range(3):
        ref = lp + rng.normal(0, 0.3 * (t + 1), lp.size)
        res = step(r, gid, seq_logprobs=lp, ref_seq_logprobs=ref)
        kls.append(k3_kl(ref, lp).mean)
        assert res.kl == pytest.approx(kls[-1])
        assert res.delta == pytest.approx(dynamic_budget(0.2, 10.0, np.array(kls), window=2))
        np.testing.assert_allclose(res.shaped_rewards, drro_rewards(r, lp, res.delta, group_ids=gid).rewards)
    state = step.state_dict()
    other = RobustAdvantage("grpo", Shaping("drro", delta=0.2, kl_alpha=10.0, kl_window=2))
    other.load_state_dict(state)
    ref = lp + 0.1
    a, b = step(r, gid, seq_logprobs=lp, ref_seq_logprobs=ref), other(r, gid, seq_logprobs=lp, ref_seq_logprobs=ref)
    assert a.delta == b.delta and np.array_equal(a.advantages, b.advantages)
    # without reference log-probs the static budget is used
    assert step(r, gid, seq_logprobs=lp).delta == 0.2


def test_step_metrics_per_bin():
    res = RobustAdvantage("drgrpo")(np.array([1.0, 0.0, 1.0, 0.5, 1.0, 1.0]), np.array([0, 0, 0, 1, 2, 2]),
                                    multipliers=[2.0, 1.0, 0.5])
    m = step_metrics(res, bins=[0, 1, 1])
    assert m["robust/group_size/min"] == 1 and m["robust/group_size/max"] == 3 and m["robust/groups_of_one"] == 1
    assert m["robust/bin_1/rollouts"] == 3 and m["robust/bin_1/prompts"] == 2
    assert m["robust/bin_0/reward_mean"] == pytest.approx(2 / 3) and m["robust/bin_1/multiplier"] == 0.75
    assert "robust/shaping/delta" not in m


def test_bad_input():
    step = RobustAdvantage("grpo", Shaping("drro"))
    with pytest.raises(ValueError, match="needs seq_logprobs"):
        step([1.0, 0.0], [0, 0])
    with pytest.raises(ValueError, match="needs a reward for every rollout"):
        step([1.0, np.nan], [0, 0], seq_logprobs=[-1.0, -2.0])
    with pytest.raises(ValueError, match="group 1 has none"):
        RobustAdvantage()([1.0, 0.0], [0, 2])
    with pytest.raises(ValueError, match=r"multipliers must have shape \(2,\)"):
        RobustAdvantage()([1.0, 0.0], [0, 1], multipliers=[1.0])
    with pytest.raises(ValueError, match="multipliers"):
        RobustAdvantage()([1.0, 0.0], [0, 1], multipliers=[1.0, -1.0])
    with pytest.raises(ValueError, match="rewards must be finite"):
        RobustAdvantage()([1.0, np.inf], [0, 0])
    with pytest.raises(ValueError, match="unknown shaping rule"):
        Shaping("kl")
    with pytest.raises(ValueError, match=r"use rule='drro' with tau=None for the hard rule or tau > 0"):
        Shaping("drro-soft")
    with pytest.raises(ValueError, match="tau"):
        Shaping("drro", tau=0.0)
    with pytest.raises(ValueError, match="reference_group_size"):
        Shaping("drro", reference_group_size=0)
    with pytest.raises(ValueError, match="unknown advantage kind 'ppo'; valid kinds: .*trl-group"):
        RobustAdvantage("ppo")
    with pytest.raises(ValueError, match="without a shaping rule"):
        Shaping.coerce(None, delta=1.0)
    assert Shaping.coerce("none") is None
    assert Shaping.coerce("DRO", delta=0.5, tau=2.0) == Shaping("dro", delta=0.5, tau=2.0)
    with pytest.raises(ValueError, match="version"):
        step.load_state_dict({"version": 99})


def test_stateless_step_with_given_budgets():
    rng = np.random.default_rng(4)
    gid, r, lp = _ragged(rng, [2, 3])
    res = robust_step(r, gid, kind="rloo", shaping=Shaping("dro", tau=2.0), seq_logprobs=lp, delta=[0.1, 0.4])
    expected = dro_rewards(r, lp, np.array([0.1, 0.4]), tau=2.0, group_ids=gid).rewards
    np.testing.assert_allclose(res.shaped_rewards, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one budget per group"):
        robust_step(r, gid, shaping=Shaping("dro"), seq_logprobs=lp, delta=[0.1, 0.2, 0.3])


def test_success_values_any_reward_range():
    """Only a controller that learns success probabilities needs rewards in [0, 1] (or success_fn)."""
    uniform = make_controller("uniform", n_prompts=4, mean_budget=2, lower=1, upper=4)
    vip = make_controller("rollout-gdro", n_prompts=4, mean_budget=2, lower=2, upper=4, seed=0)
    assert not learns_from_rewards(uniform) and learns_from_rewards(vip)
    unit = np.array([0.0, 0.5, 1.0])
    logits = np.array([-0.3, 0.2, np.nan])
    np.testing.assert_array_equal(success_values(unit, vip), unit)  # the default: rewards in [0, 1] as they are
    np.testing.assert_array_equal(success_values(logits, uniform), [0.0, 0.2, 0.0])  # uniform only counts the step
    with pytest.raises(ValueError, match="learns success probabilities.*pass success_fn="):
        success_values(logits, vip)
    np.testing.assert_array_equal(success_values(logits, vip, lambda x: (x > 0).astype(float)), [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"success_fn must return finite values in \[0, 1\]"):
        success_values(logits, vip, lambda x: x * 10)


def test_one_protocol_check_with_optional_extend():
    class Minimal:
        def plan(self, ids): ...
        def observe(self, *a): ...
        def state_dict(self): ...
        def load_state_dict(self, s): ...

    class WithExtend(Minimal):
        def extend(self, *a): ...

    class BadExtend(Minimal):
        extend = 3

    assert isinstance(check_controller(Minimal()), Minimal) and isinstance(check_controller(WithExtend()), WithExtend)
    with pytest.raises(TypeError, match=r"Minimal2 has no observe\(\), load_state_dict\(\)"):
        check_controller(type("Minimal2", (), {"plan": lambda s, i: None, "state_dict": lambda s: {}})())
    with pytest.raises(TypeError, match="extend must be a method"):
        check_controller(BadExtend())


def test_per_prompt_baselines_replace_the_kinds_baseline():
    """A training selection's baselines (Reinforce-Ada's mean over every rollout of the step): the
    advantage is ``(shaped) r - b_i`` without std scaling, whatever the kind, times the multiplier;
    an unscored row gets 0; a wrong shape is refused naming the parameter."""
    r = np.array([1.0, 0.0, 1.0, 0.5, np.nan, 0.0])
    gid = np.array([0, 0, 0, 1, 1, 2])
    b = np.array([0.25, 0.5, 0.1])
    mult = np.array([2.0, 1.0, 3.0])
    for kind in ("grpo", "rloo", "trl-group", "verl-grpo"):
        res = robust_step(r, gid, kind=kind, multipliers=mult, baselines=b)
        np.testing.assert_allclose(res.advantages, [1.5, -0.5, 1.5, 0.0, 0.0, -0.3])
    lp = np.array([-1.0, -2.0, -3.0, -1.5, -2.5, -0.5])
    r2 = np.nan_to_num(r)
    shaped = RobustAdvantage("grpo", Shaping("drro", delta=0.5))(r2, gid, seq_logprobs=lp, baselines=b)
    np.testing.assert_allclose(shaped.advantages, shaped.shaped_rewards - b[gid])
    with pytest.raises(ValueError, match=r"baselines must have shape \(3,\)"):
        robust_step(r2, gid, baselines=[0.1, 0.2])
    with pytest.raises(ValueError, match="baselines"):
        robust_step(r2, gid, baselines=[0.1, np.inf, 0.2])
