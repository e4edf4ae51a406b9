"""Tests of ``bandits.diagnostics`` (GDRO eq. 22 lead-lag gap, entropies, high-bin mass)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bandits import allocation_entropy, high_bin_mass, lead_lag_gap, weight_entropy

positive_rows = st.integers(1, 8).flatmap(
    lambda b: arrays(np.float64, (3, b), elements=st.floats(0.0, 10.0)).filter(
        lambda a: np.all(a.sum(1) > 1e-6)
    )
)


def test_lead_lag_by_hand():
    """Eq. 22 with the paper's 1-based bins: mu_w = sum b w(b), mu_data = sum b q(b)."""
    w = np.array([0.1, 0.2, 0.7])
    q = np.array([0.5, 0.3, 0.2])
    mu_w = 1 * 0.1 + 2 * 0.2 + 3 * 0.7
    mu_d = 1 * 0.5 + 2 * 0.3 + 3 * 0.2
    assert lead_lag_gap(w, q) == pytest.approx(mu_w - mu_d, rel=1e-14)
    # unnormalised inputs (counts, raw weights) give the same gap
    assert lead_lag_gap(10 * w, [50, 30, 20]) == pytest.approx(mu_w - mu_d, rel=1e-14)
    assert isinstance(lead_lag_gap(w, q), float)


@settings(max_examples=30)
@given(positive_rows)
def test_lead_lag_time_series_matches_rowwise(w):
    """Eq. 22 per step: a (T, B) series equals the per-row values; gap(w, w) = 0; antisymmetric."""
    q = w[::-1].copy() + 1.0
    series = lead_lag_gap(w, q)
    assert series.shape == (3,)
    for t in range(3):
        b = w.shape[1]
        ref = (np.arange(1, b + 1) @ (w[t] / w[t].sum())) - (np.arange(1, b + 1) @ (q[t] / q[t].sum()))
        assert series[t] == pytest.approx(ref, abs=1e-12)
    np.testing.assert_allclose(lead_lag_gap(w, w), 0.0, atol=1e-12)
    np.testing.assert_allclose(lead_lag_gap(q, w), -series, atol=1e-12)


@settings(max_examples=30)
@given(positive_rows)
def test_entropies_match_scipy(w):
    """Shannon entropy in nats equals scipy.stats.entropy per row; normalised version in [0, 1]."""
    h = weight_entropy(w)
    np.testing.assert_allclose(h, [scipy.stats.entropy(r) for r in w], rtol=1e-12, atol=1e-14)
    hn = weight_entropy(w, normalized=True)
    assert np.all(hn >= -1e-12) and np.all(hn <= 1 + 1e-12)
    np.testing.assert_allclose(allocation_entropy(w), h, rtol=1e-14)


def test_entropy_edge_cases():
    assert weight_entropy([1, 1, 1, 1]) == pytest.approx(math.log(4))
    assert weight_entropy([1, 1, 1, 1], normalized=True) == pytest.approx(1.0)
    assert weight_entropy([0.0, 3.0, 0.0]) == 0.0
    assert weight_entropy([5.0], normalized=True) == 0.0


def test_allocation_entropy_with_bins():
    """Per-prompt rollouts aggregated per bin: bins {0: 8, 1: 16, 2: 0} of 24 rollouts."""
    n = [4, 4, 8, 8]
    ids = [0, 0, 1, 1]
    want = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    assert allocation_entropy(n, bin_ids=ids) == pytest.approx(want, rel=1e-14)
    assert allocation_entropy(n, bin_ids=ids, n_bins=3, normalized=True) == pytest.approx(
        want / math.log(3), rel=1e-14
    )
    with pytest.raises(ValueError, match="bin_ids must be < n_bins=2, got 2"):
        allocation_entropy([1, 1], bin_ids=[0, 2], n_bins=2)
    with pytest.raises(ValueError, match="n and bin_ids must have the same shape"):
        allocation_entropy([1, 1], bin_ids=[0])
    with pytest.raises(ValueError, match="n_bins is only used together with bin_ids"):
        allocation_entropy([1, 1], n_bins=2)


def test_high_bin_mass():
    w = np.array([1.0, 2.0, 3.0, 4.0])
    assert high_bin_mass(w, 3) == pytest.approx(0.4)
    assert high_bin_mass(w, 0) == pytest.approx(1.0)
    assert high_bin_mass(w, 4) == 0.0
    np.testing.assert_allclose(high_bin_mass(np.vstack([w, w[::-1]]), 2), [0.7, 0.3])
    with pytest.raises(ValueError, match="k must be <= 4, got 5"):
        high_bin_mass(w, 5)


def test_validation():
    with pytest.raises(ValueError, match="weights must be non-negative, got -1.0 at index 1"):
        weight_entropy([1.0, -1.0])
    with pytest.raises(ValueError, match="weights must not contain NaN|weights must be finite"):
        weight_entropy([1.0, np.nan])
    with pytest.raises(ValueError, match=r"weights must have a positive sum \(row 1\), got 0.0"):
        weight_entropy([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match="weights and shares must have the same shape"):
        lead_lag_gap([1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="shares must be finite"):
        lead_lag_gap([1, 1], [1, np.inf])


def test_weights_whose_sum_overflows_and_huge_n_bins():
    """Extreme inputs: ``allocation_entropy([4, 4], bin_ids=[0, 1], n_bins=1e308)`` raised OverflowError
    (and n_bins = 2**53 a MemoryError: the per-bin totals were allocated at that length). Weights
    near DBL_MAX gave entropy 0 silently (their sum overflowed and every share became 0)."""
    with pytest.raises(ValueError, match="n_bins must be <= 2147483647"):
        allocation_entropy([4, 4], bin_ids=[0, 1], n_bins=1e308)
    assert allocation_entropy([4, 4], bin_ids=[0, 1], n_bins=2**31 - 1, normalized=True) == pytest.approx(
        math.log(2) / math.log(2**31 - 1))
    assert weight_entropy([1e308, 1e308]) == pytest.approx(math.log(2))
    assert allocation_entropy([1e308, 1e308, 1e308], bin_ids=[0, 0, 1]) == pytest.approx(
        -(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    assert lead_lag_gap([1e308, 1e308, 0.0], [0.0, 1e308, 1e308]) == pytest.approx(-1.0)
    # bin ids up to 2**63 - 1 without n_bins (bincount allocated max(ids) + 1 entries)
    assert allocation_entropy([4.0, 4.0, 8.0, 8.0], bin_ids=[2**63 - 1, 2**63 - 1, 0, 0]) == pytest.approx(
        -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3))
