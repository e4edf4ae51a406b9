"""Tests for solvers.advantages: GRPO / Dr.GRPO / RLOO group advantages, dense and ragged."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from solvers import ADVANTAGE_KINDS, group_advantages
from solvers.advantages import _group_advantages_numpy

KINDS = ("grpo", "drgrpo", "rloo")


def reference_group(rewards: list[float], kind: str, eps: float) -> list[float]:
    """One group, from the definitions (GDRO eq. 3; VIP Sec. 3), in plain Python."""
    n = len(rewards)
    if n < 2 or min(rewards) == max(rewards):
        return [0.0] * n
    mu = statistics.fmean(rewards)
    if kind == "grpo":
        sigma = statistics.pstdev(rewards)  # population std, 1/n
        return [(r - mu) / (sigma + eps) for r in rewards]
    if kind == "drgrpo":
        return [r - mu for r in rewards]
    # RLOO: baseline is the mean of the *other* rollouts
    total = math.fsum(rewards)
    return [r - (total - r) / (n - 1) for r in rewards]


def reference_ragged(rewards, group_ids, kind, eps):
    out = np.empty(len(rewards))
    for g in set(group_ids):
        members = [i for i, gid in enumerate(group_ids) if gid == g]
        adv = reference_group([rewards[i] for i in members], kind, eps)
        for i, a in zip(members, adv):
            out[i] = a
    return out


reward_values = st.one_of(
    st.floats(-10.0, 10.0, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0]),  # binary-like rewards: ties and constant groups
)


@given(
    data=st.data(),
    P=st.integers(1, 6),
    G=st.integers(1, 9),
    kind=st.sampled_from(KINDS),
)
@settings(max_examples=80)
def test_dense_matches_reference(data, P, G, kind):
    """Dense advantages equal the per-group definitions and the NumPy bincount twin."""
    r = np.array(data.draw(st.lists(reward_values, min_size=P * G, max_size=P * G))).reshape(P, G)
    adv = group_advantages(r, kind=kind)
    assert adv.shape == (P, G)
    for p in range(P):
        np.testing.assert_allclose(adv[p], reference_group(list(r[p]), kind, 1e-6), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(adv, _group_advantages_numpy(r, kind), rtol=1e-12, atol=1e-12)


@given(
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=8),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(KINDS),
    binary=st.booleans(),
)
@settings(max_examples=80)
def test_ragged_matches_reference(sizes, seed, kind, binary):
    """Ragged groups (variable rollouts per prompt, shuffled, non-consecutive labels) vs the definitions."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(1000, size=len(sizes), replace=False)
    ids = np.repeat(labels, sizes)
    n = ids.size
    r = rng.integers(0, 2, size=n).astype(float) if binary else rng.normal(size=n)
    perm = rng.permutation(n)
    ids, r = ids[perm], r[perm]
    adv = group_advantages(r, kind=kind, group_ids=ids)
    np.testing.assert_allclose(adv, reference_ragged(list(r), list(ids), kind, 1e-6), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(adv, _group_advantages_numpy(r, kind, ids), rtol=1e-12, atol=1e-12)


@given(seed=st.integers(0, 2**32 - 1), P=st.integers(1, 6), G=st.integers(1, 8), kind=st.sampled_from(KINDS))
@settings(max_examples=40)
def test_ragged_equals_dense_for_equal_groups(seed, P, G, kind):
    """Ragged input with equal-sized groups (in any order) gives the dense result."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(P, G))
    dense = group_advantages(r, kind=kind)
    ids = np.repeat(np.arange(P), G)
    perm = rng.permutation(P * G)
    ragged = group_advantages(r.reshape(-1)[perm], kind=kind, group_ids=ids[perm])
    out = np.empty(P * G)
    out[perm] = ragged
    np.testing.assert_allclose(out.reshape(P, G), dense, rtol=1e-13, atol=1e-14)


@given(
    rows=st.lists(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=10), min_size=1, max_size=5),
)
@settings(max_examples=60)
def test_advantage_identities(rows):
    """GRPO / Dr.GRPO / RLOO advantages sum to zero per group (VIP Sec. 3, GDRO eq. 3), and
    RLOO = n/(n-1) * Dr.GRPO (leave-one-out mean identity); GRPO = Dr.GRPO / (pop. std + eps)."""
    r = np.concatenate([np.asarray(x) for x in rows])
    ids = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    adv = {k: group_advantages(r, kind=k, group_ids=ids) for k in KINDS}
    for g, row in enumerate(rows):
        m = ids == g
        n = len(row)
        scale = max(1.0, float(np.abs(row).max()))
        for k in KINDS:
            assert abs(adv[k][m].sum()) <= 1e-9 * scale * n / (1e-6 if k == "grpo" else 1.0)
        np.testing.assert_allclose(adv["rloo"][m], n / (n - 1) * adv["drgrpo"][m], rtol=1e-12, atol=1e-12)
        if min(row) != max(row):
            sigma = np.std(np.asarray(row))  # population std
            np.testing.assert_allclose(adv["grpo"][m], adv["drgrpo"][m] / (sigma + 1e-6), rtol=1e-9, atol=1e-12)


def test_grpo_uses_population_std():
    """[0, 1]: population std 0.5 (sample std would be 0.707), so GRPO advantages are +/- 0.5/(0.5+eps)."""
    adv = group_advantages([[0.0, 1.0]], kind="grpo", eps=0.0)
    np.testing.assert_allclose(adv, [[-1.0, 1.0]], rtol=1e-15)
    adv = group_advantages([[0.0, 1.0]], kind="grpo", eps=0.5)
    np.testing.assert_allclose(adv, [[-0.5, 0.5]], rtol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_singleton_and_constant_groups_are_zero(kind):
    """A group of size 1 has advantage 0 (not its raw reward); a constant group has exactly 0."""
    np.testing.assert_array_equal(group_advantages([[3.5], [-2.0]], kind=kind), 0.0)
    np.testing.assert_array_equal(group_advantages([[0.1, 0.1, 0.1]], kind=kind, eps=0.0), 0.0)
    r = np.array([7.0, 0.1, 0.1, 0.1, 1.0, 0.0])
    ids = np.array([5, 2, 2, 2, 9, 9])
    adv = group_advantages(r, kind=kind, group_ids=ids)
    np.testing.assert_array_equal(adv[:4], 0.0)
    assert adv[4] > 0 > adv[5]


def test_sparse_large_labels_are_compressed():
    ids = np.array([10**12, 3, 10**12, 3, 7])
    r = np.array([1.0, 2.0, 0.0, 5.0, 4.0])
    adv = group_advantages(r, kind="drgrpo", group_ids=ids)
    np.testing.assert_allclose(adv, [0.5, -1.5, -0.5, 1.5, 0.0])


def test_empty_inputs():
    assert group_advantages(np.zeros((0, 4)), kind="grpo").shape == (0, 4)
    assert group_advantages(np.zeros(0), kind="rloo", group_ids=np.zeros(0, dtype=int)).shape == (0,)


def test_registry_and_kind_errors():
    assert sorted(ADVANTAGE_KINDS) == ["drgrpo", "grpo", "rloo"]
    with pytest.raises(TypeError):
        ADVANTAGE_KINDS["ppo"] = "nope"  # read-only
    with pytest.raises(ValueError, match=r"unknown advantage kind 'ppo'; valid kinds: \['drgrpo', 'grpo', 'rloo'\]"):
        group_advantages([[1.0, 2.0]], kind="ppo")
    with pytest.raises(TypeError, match="kind must be a string"):
        group_advantages([[1.0, 2.0]], kind=None)
    np.testing.assert_array_equal(group_advantages([[1.0, 2.0]], kind="RLOO"), [[-1.0, 1.0]])


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"rewards must be finite, got nan at index \(0, 1\)"):
        group_advantages([[1.0, np.nan]], kind="grpo")
    with pytest.raises(ValueError, match="rewards must be finite, got inf at index 1"):
        group_advantages([1.0, np.inf], kind="rloo", group_ids=[0, 0])
    with pytest.raises(ValueError, match="rewards must be 2-D"):
        group_advantages([1.0, 2.0], kind="grpo")  # 1-D needs group_ids
    with pytest.raises(ValueError, match="rewards must be 1-D"):
        group_advantages([[1.0, 2.0]], kind="grpo", group_ids=[0, 0])
    with pytest.raises(ValueError, match="group_ids must be non-negative, got -1 at index 1"):
        group_advantages([1.0, 2.0], kind="grpo", group_ids=[0, -1])
    with pytest.raises(ValueError, match=r"group_ids must have the shape of rewards \(2,\), got \(3,\)"):
        group_advantages([1.0, 2.0], kind="grpo", group_ids=[0, 0, 1])
    with pytest.raises(ValueError, match="group_ids must contain integers, got 0.5"):
        group_advantages([1.0, 2.0], kind="grpo", group_ids=[0, 0.5])
    with pytest.raises(ValueError, match="eps must be >= 0.0, got -1e-06"):
        group_advantages([[1.0, 2.0]], kind="grpo", eps=-1e-6)
    with pytest.raises(ValueError, match="at least one rollout"):
        group_advantages(np.zeros((2, 0)), kind="grpo")


@pytest.mark.parametrize("ragged", [False, True])
def test_extreme_scales_never_silently_wrong(ragged):
    """GRPO is scale-invariant (eps negligible): [a, -a, 0] gives +/- sqrt(3/2), 0 for any a.
    Squared deviations overflowing (a = 1e200) once gave 0 silently; a subnormal spread with
    eps = 0 once raised ZeroDivisionError; a group mean overflowing float64 gave NaN. Now exact,
    or a ValueError."""

    def adv(row, **kw):
        if ragged:
            return group_advantages(np.asarray(row, dtype=float), group_ids=np.zeros(len(row), int), **kw)
        return group_advantages([row], **kw)[0]

    expected = np.array([1.0, -1.0, 0.0]) * np.sqrt(1.5)
    for a in (1e200, 1e-200):
        np.testing.assert_allclose(adv([a, -a, 0.0], kind="grpo", eps=0.0), expected, rtol=1e-14)
    np.testing.assert_allclose(adv([1e200, -1e200, 0.0], kind="grpo"), expected, rtol=1e-14)
    np.testing.assert_allclose(adv([0.0, 1e-310], kind="grpo", eps=0.0), [-1.0, 1.0], rtol=1e-6)
    assert np.all(np.isfinite(adv([0.0, 5e-324], kind="grpo", eps=0.0)))  # mean 2.5e-324 rounds to 0
    # a group sum overflowing float64 is normalised as 2**-600 r (exact), no longer an error
    np.testing.assert_allclose(adv([1e308, 1e308, 0.0], kind="grpo"), [0.5**0.5, 0.5**0.5, -(2**0.5)], rtol=1e-14)
    np.testing.assert_allclose(adv([1e308, 1e308, 0.0], kind="rloo"), [5e307, 5e307, -1e308], rtol=1e-14)
    with pytest.raises(ValueError, match=r"overflowed float64 \(max \|rewards\|"):
        adv([1.5e308, -1.5e308, 0.0], kind="rloo")  # 1.5 * 1.5e308 is not representable


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("kind", ["grpo", "drgrpo", "rloo"])
def test_subnormal_spreads_are_exact(ragged, kind):
    """Extreme inputs: ``[[5e-324, 0, 5e-324]]`` with eps = 0 gave ``[0, -1.732, 0]`` (the mean 3.3e-324
    is not on the subnormal grid, so the advantages did not sum to 0). Such groups are now
    normalised as ``2**600 r`` (exact) and scaled back: GRPO gives ``[1, -2, 1] / sqrt(2)``, the
    other kinds ``[1, -2, 1] * 5e-324 / 3`` rounded (sums 0 up to one subnormal ulp)."""
    row = np.array([5e-324, 0.0, 5e-324])
    if ragged:
        out = group_advantages(np.r_[row, 1.0, 2.0], kind=kind, eps=0.0, group_ids=[0, 0, 0, 1, 1])[:3]
    else:
        out = group_advantages(row[None, :], kind=kind, eps=0.0)[0]
    if kind == "grpo":
        np.testing.assert_allclose(out, np.array([1.0, -2.0, 1.0]) / np.sqrt(2.0), rtol=1e-14)
    else:  # the exact advantages [1, -2, 1] * 5e-324 / 3 (times 1.5 for rloo), to one subnormal ulp
        mult = 1.5 if kind == "rloo" else 1.0
        np.testing.assert_allclose(out, np.array([1.0, -2.0, 1.0]) * (mult * 5e-324 / 3.0), rtol=0, atol=5e-324)
        assert out[1] < 0.0 and out[0] == out[2] and abs(out.sum()) <= 5e-324
    twin = _group_advantages_numpy(row[None, :], kind, eps=0.0)[0]
    np.testing.assert_array_equal(out, twin)
