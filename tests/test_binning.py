"""Tests of ``bandits.binning.PassAtKBinner`` (GDRO eq. 10-11, App. B uncertainty-aware option)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from bandits import PassAtKBinner


class ReferenceBinner:
    """Obviously-correct reference: a deque of the last H indicators per prompt."""

    def __init__(self, window, edges):
        self.window, self.edges, self.hist = window, np.asarray(edges), {}

    def update(self, ids, cs):
        for i, c in zip(ids, cs):
            self.hist.setdefault(int(i), deque(maxlen=self.window)).append(int(c))

    def rate(self, i):
        h = self.hist.get(int(i))
        return 0.0 if not h else sum(h) / len(h)

    def bin(self, r):
        # linear scan: b with edges[b] <= r < edges[b+1], r == 1 -> last bin
        for b in range(len(self.edges) - 1):
            if self.edges[b] <= r < self.edges[b + 1]:
                return b
        return len(self.edges) - 2


def test_window_semantics_by_hand():
    """Eq. 11 over the prompt's last H observations; before H observations we divide by their
    number (documented choice)."""
    b = PassAtKBinner(n_bins=10, window=3)
    b.update([5], [True])
    assert b.rates([5])[0] == 1.0 and b.counts([5])[0] == 1
    b.update([5, 5], [0, 1])  # window [1, 0, 1]
    assert b.rates([5])[0] == pytest.approx(2 / 3)
    b.update([5], [0])  # window [0, 1, 0] (oldest 1 dropped)
    assert b.rates([5])[0] == pytest.approx(1 / 3)
    b.update([5, 5, 5, 5], [1, 1, 0, 0])  # more than H in one batch: last 3 = [1, 0, 0]
    assert b.rates([5])[0] == pytest.approx(1 / 3)
    assert b.counts([5])[0] == 3


def test_bin_edges_semantics():
    """[a_b, a_{b+1}) with rate 1 in the last bin; rate 3/10 lands in the bin starting at 0.3."""
    b = PassAtKBinner(n_bins=10, window=10)
    ids = np.arange(11)
    for k in range(11):  # prompt k: k successes out of 10
        b.update(np.full(10, k), np.arange(10) < k)
    np.testing.assert_allclose(b.rates(ids), ids / 10)
    np.testing.assert_array_equal(b.bins(ids), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9])


def test_custom_edges_and_unseen():
    b = PassAtKBinner(n_bins=3, window=4, edges=[0.0, 0.25, 0.9, 1.0])
    b.update([1, 1, 1, 1, 2, 2, 2, 2], [1, 0, 0, 0, 1, 1, 1, 0])
    np.testing.assert_array_equal(b.bins([1, 2, 99]), [1, 1, 0])  # 0.25 -> bin 1; unseen -> 0
    assert b.rates([99])[0] == 0.0 and b.counts([99])[0] == 0
    b2 = PassAtKBinner(n_bins=3, window=4, edges=[0.0, 0.25, 0.9, 1.0], unseen_bin=2)
    np.testing.assert_array_equal(b2.bins([99, 100]), [2, 2])
    with pytest.raises(ValueError, match="so n_bins must be 3, got 10"):
        PassAtKBinner(edges=[0.0, 0.25, 0.9, 1.0])


@settings(max_examples=40)
@given(
    window=st.integers(1, 5),
    n_bins=st.integers(1, 6),
    batches=st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=12), min_size=1, max_size=8
    ),
)
def test_matches_reference(window, n_bins, batches):
    """Eq. 10-11 sliding window: rates, counts and bins agree with a per-prompt deque reference
    on hypothesis-generated batches (with repeated prompts within a batch)."""
    b = PassAtKBinner(n_bins=n_bins, window=window)
    ref = ReferenceBinner(window, np.arange(n_bins + 1) / n_bins)
    for batch in batches:
        ids = [i for i, _ in batch]
        cs = [c for _, c in batch]
        b.update(np.array(ids, dtype=np.int64), np.array(cs, dtype=bool))
        ref.update(ids, cs)
    query = np.arange(8)
    want = np.array([ref.rate(i) for i in query])
    np.testing.assert_allclose(b.rates(query), want, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(b.counts(query), [len(ref.hist.get(i, ())) for i in query])
    np.testing.assert_array_equal(b.bins(query), [ref.bin(r) for r in want])


def test_beta_mode_mean_quantile_against_scipy():
    """App. B option: Beta(a0 + s, b0 + m - s) posterior; quantile equals scipy.stats.beta.ppf."""
    ids = np.array([0, 0, 0, 1, 2, 2])
    cs = np.array([1, 1, 0, 0, 1, 1])
    mean_b = PassAtKBinner(n_bins=10, window=5, mode="beta", prior=(2.0, 3.0))
    mean_b.update(ids, cs)
    a, bb = mean_b.posterior([0, 1, 2, 9])
    np.testing.assert_array_equal(a, [4.0, 2.0, 4.0, 2.0])
    np.testing.assert_array_equal(bb, [4.0, 4.0, 3.0, 3.0])
    np.testing.assert_allclose(mean_b.scores([0, 1, 2, 9]), a / (a + bb), rtol=1e-15)
    # unseen prompt: prior mean 2/5 = 0.4 -> bin 4
    np.testing.assert_array_equal(mean_b.bins([0, 1, 2, 9]), [5, 3, 5, 4])
    q_b = PassAtKBinner(n_bins=10, window=5, mode="beta", prior=(2.0, 3.0), quantile=0.1)
    q_b.update(ids, cs)
    want = scipy.stats.beta.ppf(0.1, a, bb)
    np.testing.assert_allclose(q_b.scores([0, 1, 2, 9]), want, rtol=1e-10)
    np.testing.assert_array_equal(q_b.bins([0, 1, 2, 9]), np.floor(want * 10).astype(int))


def test_beta_mode_shrinks_single_observation():
    """One success puts a prompt in the top bin by plug-in rate, but not by posterior mean."""
    w = PassAtKBinner(window=50)
    bta = PassAtKBinner(window=50, mode="beta")
    for b in (w, bta):
        b.update([3], [1])
    assert w.bins([3])[0] == 9
    assert bta.bins([3])[0] == 6  # posterior mean 2/3


def test_large_ids_and_scale():
    """10^5 distinct prompts with ids up to 2^62, in batches; spot checks against a reference."""
    rng = np.random.default_rng(0)
    n = 100_000
    ids_all = rng.choice(2**62, size=n, replace=False).astype(np.int64)
    b = PassAtKBinner(window=4)
    ref = ReferenceBinner(4, np.arange(11) / 10)
    probe = ids_all[:50]
    seen = set()
    for step in range(6):
        batch = rng.choice(ids_all, size=40_000)
        batch[:50] = probe  # probe prompts observed every step (and maybe again in the batch)
        cs = rng.random(batch.size) < 0.4
        b.update(batch, cs)
        ref.update(batch, cs)
        seen.update(batch.tolist())
    assert b.n_prompts == len(seen)
    np.testing.assert_allclose(b.rates(probe), [ref.rate(i) for i in probe], atol=1e-15)
    assert b.bins(ids_all).shape == (n,)


def test_validation_and_state_unchanged():
    b = PassAtKBinner(window=3)
    b.update([1, 2], [1, 0])
    before = (b.rates([1, 2]).copy(), b.counts([1, 2]).copy(), b.n_prompts)
    with pytest.raises(ValueError, match="prompt_ids must be non-negative, got -4 at index 1"):
        b.update([1, -4], [1, 1])
    with pytest.raises(ValueError, match=r"any_correct must be 0/1 or bool, got 0.5 at index 0"):
        b.update([1], [0.5])
    with pytest.raises(ValueError, match="any_correct must be finite"):
        b.update([1], [np.nan])
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        b.update([1, 3], [1])
    with pytest.raises(ValueError, match="prompt_ids must contain integers"):
        b.update([1.5], [1])
    after = (b.rates([1, 2]), b.counts([1, 2]), b.n_prompts)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2]
    with pytest.raises(ValueError, match="mode must be one of"):
        PassAtKBinner(mode="bayes")
    with pytest.raises(ValueError, match="quantile is only used with mode='beta'"):
        PassAtKBinner(quantile=0.2)
    with pytest.raises(ValueError, match="quantile must be < 1.0"):
        PassAtKBinner(mode="beta", quantile=1.0)
    with pytest.raises(ValueError, match="prior must be positive"):
        PassAtKBinner(mode="beta", prior=(0.0, 1.0))
    with pytest.raises(ValueError, match="edges must start at 0 and end at 1"):
        PassAtKBinner(n_bins=2, edges=[0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="edges must be strictly increasing, got 0.5 then 0.5"):
        PassAtKBinner(n_bins=3, edges=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="unseen_bin must be <= 9, got 10"):
        PassAtKBinner(unseen_bin=10)
    with pytest.raises(ValueError, match="window must be >= 1"):
        PassAtKBinner(window=0)


def test_dense_to_sparse_lookup_switch_keeps_state():
    """Small ids use the dense id table; a huge id switches to sorted lookup without losing any
    prompt's window (checked against the deque reference)."""
    rng = np.random.default_rng(1)
    b = PassAtKBinner(n_bins=5, window=3)
    ref = ReferenceBinner(3, np.arange(6) / 5)
    for step in range(4):
        ids = rng.integers(0, 200, size=300)
        if step == 2:
            ids[:3] = [2**40, 2**40 + 7, 5]
        cs = rng.random(300) < 0.5
        b.update(ids, cs)
        ref.update(ids, cs)
        if step == 1:
            assert b._dense is not None
    assert b._dense is None
    query = np.r_[np.arange(200), 2**40, 2**40 + 7, 2**40 + 1]
    np.testing.assert_allclose(b.rates(query), [ref.rate(i) for i in query], atol=1e-15)
    np.testing.assert_array_equal(b.counts(query), [len(ref.hist.get(int(i), ())) for i in query])
    assert b.n_prompts == len(ref.hist)


def test_sizes_are_bounded():
    """Extreme inputs: ``n_bins``/``window`` such as 2**53 or 1e300 were accepted and failed later with
    MemoryError/OverflowError; they are ValueErrors naming the parameter now."""
    with pytest.raises(ValueError, match="n_bins must be <= 2147483647"):
        PassAtKBinner(n_bins=2**53)
    with pytest.raises(ValueError, match="window must be <= 1048576"):
        PassAtKBinner(window=2**53)
    with pytest.raises(ValueError, match="quantile must be finite, got the integer"):
        PassAtKBinner(mode="beta", quantile=10**400)
