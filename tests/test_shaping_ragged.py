"""Ragged (variable rollouts per prompt) DRRO / DRO shaping: ``drro_rewards`` / ``dro_rewards`` with
``group_ids`` (DRRO paper eq. 4.14, 4.15 and the DRO counterpart), checked like the dense path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_shaping import SHAPERS, reference_row

from solvers import dro_rewards, drro_rewards
from solvers._status import OPTIMAL


def ragged_instance(seed, sizes, *, lp_low=-20.0, interleave=True):
    """Flat rewards/log-probs of groups with the given sizes; rollouts of different groups are
    interleaved at random while each group's own rollouts keep their order."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    if interleave:
        ids = rng.permutation(ids)  # a random interleaving; within-group order = order of appearance
    r = rng.normal(size=ids.size)
    lp = rng.uniform(lp_low, 0.0, size=ids.size)
    return rng, r, lp, ids


@given(
    seed=st.integers(0, 2**32 - 1),
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=7),
    tau=st.one_of(st.none(), st.floats(0.05, 5.0)),
    per_prompt=st.booleans(),
    value_robust=st.booleans(),
)
@settings(max_examples=60)
def test_ragged_matches_reference(seed, sizes, tau, per_prompt, value_robust):
    """Eq. (4.14)/(4.15) and the DRO rules, group by group, for interleaved groups of sizes 1-9,
    against the per-row reference written from the equations (tolerances of the dense test)."""
    rng, r, lp, ids = ragged_instance(seed, sizes)
    P = len(sizes)
    delta = rng.uniform(0.0, 3.0, size=P) if per_prompt else float(rng.uniform(0.0, 3.0))
    fn = dro_rewards if value_robust else drro_rewards
    res = fn(r, lp, delta, tau=tau, group_ids=ids)
    assert res.success and res.status == OPTIMAL
    assert res.rewards.shape == res.weights.shape == res.probs.shape == res.bonus.shape == r.shape
    assert res.index.shape == res.ess.shape == res.delta.shape == (P,)
    deltas = np.broadcast_to(delta, (P,))
    for p in range(P):
        pos = np.flatnonzero(ids == p)
        shaped, w, best, ess, pi = reference_row(list(r[pos]), list(lp[pos]), float(deltas[p]), tau, value_robust)
        np.testing.assert_allclose(res.rewards[pos], shaped, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(res.weights[pos], w, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(res.probs[pos], pi, rtol=1e-12, atol=1e-300)
        assert res.ess[p] == pytest.approx(ess, rel=1e-10)
        assert ids[res.index[p]] == p  # index is a flat position inside the group
        if tau is None:
            assert res.index[p] == pos[best]
    np.testing.assert_allclose(res.bonus, res.rewards - r, rtol=0, atol=1e-15 * (1 + np.abs(r).max()))
    assert res.rule == ("dro" if value_robust else "drro") + ("-hard" if tau is None else "-soft")


@given(
    seed=st.integers(0, 2**32 - 1),
    P=st.integers(1, 6),
    G=st.integers(1, 9),
    tau=st.one_of(st.none(), st.floats(0.05, 5.0)),
    value_robust=st.booleans(),
    ties=st.booleans(),
)
@settings(max_examples=60)
def test_equal_sizes_equal_the_dense_path_bit_for_bit(seed, P, G, tau, value_robust, ties):
    """Groups of equal size, interleaved in any way that keeps each group's order, give exactly
    (bit for bit) the dense result of the same rows -- ties included (then the tie rule of the
    dense kernel decides, whatever it is)."""
    rng = np.random.default_rng(seed)
    r = rng.integers(0, 2, size=(P, G)).astype(float) if ties else rng.normal(size=(P, G))
    lp = np.full((P, G), -7.0) if ties else rng.uniform(-20.0, 0.0, size=(P, G))
    delta = rng.uniform(0.0, 3.0, size=P)
    fn = dro_rewards if value_robust else drro_rewards
    dense = fn(r, lp, delta, tau=tau)
    ids = rng.permutation(np.repeat(np.arange(P), G))
    flat_r = np.empty(P * G)
    flat_lp = np.empty(P * G)
    positions = np.empty((P, G), dtype=np.int64)
    for p in range(P):
        positions[p] = np.flatnonzero(ids == p)
        flat_r[positions[p]] = r[p]
        flat_lp[positions[p]] = lp[p]
    ragged = fn(flat_r, flat_lp, delta, tau=tau, group_ids=ids)
    for field in ("rewards", "bonus", "weights", "probs"):
        np.testing.assert_array_equal(getattr(ragged, field)[positions], getattr(dense, field), err_msg=field)
    np.testing.assert_array_equal(ragged.ess, dense.ess)
    np.testing.assert_array_equal(ragged.index, positions[np.arange(P), dense.index])


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.5])
def test_single_rollout_groups_take_the_whole_correction(name, tau):
    """A group of one: pi_tilde = 1 and the rollout gets the full +/- delta (as in the dense G = 1 case)."""
    r = np.array([0.2, 1.0, 0.0, -3.0])
    lp = np.array([-5.0, -1e4, -2.0, 0.0])
    ids = np.array([0, 1, 1, 2])
    res = SHAPERS[name](r, lp, [0.5, 1.0, 2.0], tau=tau, group_ids=ids)
    sign = -1.0 if name == "dro" else 1.0
    assert res.rewards[0] == 0.2 + sign * 0.5 and res.rewards[3] == -3.0 + sign * 2.0
    assert res.weights[0] == 1.0 and res.weights[3] == 1.0 and res.ess[0] == 1.0 and res.ess[2] == 1.0


@pytest.mark.parametrize("name", ["drro", "dro"])
@pytest.mark.parametrize("tau", [None, 0.3, 3.0])
def test_ragged_shift_invariance_extreme_logprobs(name, tau):
    """Only within-group log-prob differences matter, also in ragged batches (a -1e4 shift of one
    group changes nothing)."""
    _, r, lp, ids = ragged_instance(4, [3, 1, 6, 2], lp_low=-10.0)
    base = SHAPERS[name](r, lp, 1.5, tau=tau, group_ids=ids)
    shifted_lp = np.where(ids == 2, lp - 1e4, lp)
    shifted = SHAPERS[name](r, shifted_lp, 1.5, tau=tau, group_ids=ids)
    np.testing.assert_allclose(shifted.rewards, base.rewards, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(shifted.index, base.index)


@pytest.mark.parametrize("name", ["drro", "dro"])
def test_ragged_invalid_inputs(name):
    fn = SHAPERS[name]
    r = np.zeros(5)
    lp = np.zeros(5)
    with pytest.raises(ValueError, match=r"group_ids must label groups 0..2 with at least one rollout each; group 1"):
        fn(r, lp, 1.0, group_ids=[0, 0, 2, 2, 2])
    with pytest.raises(ValueError, match="rewards and group_ids must have the same shape"):
        fn(r, lp, 1.0, group_ids=[0, 1])
    with pytest.raises(ValueError, match="group_ids must be non-negative"):
        fn(r, lp, 1.0, group_ids=[0, -1, 0, 0, 0])
    with pytest.raises(ValueError, match="group_ids must contain integers, got 0.5 at index 0"):
        fn(r, lp, 1.0, group_ids=[0.5, 0, 0, 0, 0])
    with pytest.raises(TypeError, match="group_ids must be an array of integers, got booleans"):
        fn(r, lp, 1.0, group_ids=[True, False, False, False, False])
    with pytest.raises(ValueError, match="rewards must be 1-D"):
        fn(np.zeros((1, 5)), np.zeros((1, 5)), 1.0, group_ids=[0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="delta must be a scalar or have length 2"):
        fn(r, lp, [1.0, 2.0, 3.0], group_ids=[0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="delta must be non-negative"):
        fn(r, lp, [1.0, -2.0], group_ids=[0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="at least one rollout"):
        fn(np.zeros(0), np.zeros(0), 1.0, group_ids=np.zeros(0, dtype=int))
    bad = r.copy()
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"rewards must be finite, got inf at index 3"):
        fn(bad, lp, 1.0, group_ids=[0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="tau must be > 0"):
        fn(r, lp, 1.0, tau=0.0, group_ids=[0, 0, 1, 1, 1])
