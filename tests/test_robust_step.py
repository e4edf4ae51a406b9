"""The framework-neutral robust step shared by the TRL and verl integrations (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_bridge.integrations import RobustAdvantage, Shaping, step_metrics
from solvers import dro_rewards, drro_rewards, dynamic_budget, group_advantages, k3_kl


def _ragged(rng, sizes):
    gid = np.repeat(np.arange(len(sizes)), sizes)
    perm = rng.permutation(gid.size)  # interleaved rows
    return gid[perm], rng.uniform(0, 1, gid.size).round(1), rng.uniform(-9, -0.5, gid.size)


@given(st.lists(st.integers(1, 6), min_size=1, max_size=7), st.sampled_from(["grpo", "drgrpo", "rloo"]),
       st.sampled_from([None, "drro", "drro-soft", "dro", "dro-soft"]), st.integers(0, 2**31 - 1))
def test_step_equals_per_group_dense_reference(sizes, kind, rule, seed):
    """Per group, the step is the dense computation of that group alone: DRRO eq. (4.14)/(4.15) or the
    DRO rule on the group's row, then the group advantage (size-1 groups 0), times the multiplier."""
    rng = np.random.default_rng(seed)
    gid, r, lp = _ragged(rng, sizes)
    mult = rng.uniform(0, 3, len(sizes))
    shaping = None if rule is None else Shaping(rule, delta=0.7, tau=1.5)
    res = RobustAdvantage(kind, shaping)(r, gid, multipliers=mult, seq_logprobs=lp)
    assert res.group_sizes.tolist() == sizes
    for g in range(len(sizes)):
        sel = np.flatnonzero(gid == g)
        row = r[sel]
        if shaping is not None:
            fn = drro_rewards if rule.startswith("drro") else dro_rewards
            row = fn(row[None, :], lp[sel][None, :], 0.7, tau=1.5 if rule.endswith("soft") else None).rewards[0]
        np.testing.assert_allclose(res.shaped_rewards[sel], row, rtol=0, atol=1e-12)
        adv = group_advantages(row[None, :], kind=kind)[0] * mult[g]
        np.testing.assert_allclose(res.advantages[sel], adv, rtol=1e-12, atol=1e-12)
        if sizes[g] == 1:
            assert res.advantages[sel].tolist() == [0.0]


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
    with pytest.raises(ValueError, match="group 1 has none"):
        RobustAdvantage()([1.0, 0.0], [0, 2])
    with pytest.raises(ValueError, match=r"multipliers must have shape \(2,\)"):
        RobustAdvantage()([1.0, 0.0], [0, 1], multipliers=[1.0])
    with pytest.raises(ValueError, match="multipliers"):
        RobustAdvantage()([1.0, 0.0], [0, 1], multipliers=[1.0, -1.0])
    with pytest.raises(ValueError, match="unknown shaping rule"):
        Shaping("kl")
    with pytest.raises(ValueError, match="tau"):
        Shaping("drro-soft", tau=0.0)
    with pytest.raises(ValueError, match="unknown advantage kind"):
        RobustAdvantage("ppo")
    with pytest.raises(ValueError, match="without a shaping rule"):
        Shaping.coerce(None, delta=1.0)
    assert Shaping.coerce("DRO-soft", delta=0.5) == Shaping("dro-soft", delta=0.5)
    with pytest.raises(ValueError, match="version"):
        step.load_state_dict({"version": 99})
