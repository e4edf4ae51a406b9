"""Tests for the DRO duals (``solvers.dro_duals``): entropic, KL and chi-square worst cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from solvers import DROResult, entropic_worst_case

finite_losses = hnp.arrays(
    np.float64,
    st.integers(1, 12),
    elements=st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False),
)


# --------------------------------------------------------------------------------------------
# entropic_worst_case
# --------------------------------------------------------------------------------------------


def _entropic_reference(losses, eta):
    """Slow reference: brute log(sum exp) in extended precision via Python floats' math.fsum."""
    import math

    m = max(losses)
    terms = [math.exp(eta * (x - m)) for x in losses]
    total = math.fsum(terms)
    return m + math.log(total) / eta, np.array(terms) / total


@settings(max_examples=40)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e3))
def test_entropic_matches_reference_and_cor_f2(losses, eta):
    """GDRO eq. (15)-(16) value/weights and Cor. F.2 (eq. 28): max l <= value <= max l + log(B)/eta."""
    res = entropic_worst_case(losses, eta)
    ref_value, ref_w = _entropic_reference(list(losses), eta)
    assert res.success and res.status == 0
    assert res.value == pytest.approx(ref_value, rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(res.weights, ref_w, rtol=1e-10, atol=1e-300)
    top = losses.max()
    assert top - 1e-12 * abs(top) <= res.value <= top + np.log(losses.size) / eta + 1e-9
    assert res.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert res.dual == pytest.approx(1.0 / eta)


@settings(max_examples=30)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e2))
def test_entropic_is_the_regularised_max(losses, eta):
    """GDRO eq. (14) / Lemma F.1: value = <q, l> + H(q)/eta at the softmax q, and no random q beats it."""
    res = entropic_worst_case(losses, eta)
    q = res.weights
    nz = q > 0
    ent = -np.sum(q[nz] * np.log(q[nz]))
    assert res.value == pytest.approx(q @ losses + ent / eta, rel=1e-9, abs=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = rng.dirichlet(np.ones(losses.size))
        rz = r > 0
        assert r @ losses - np.sum(r[rz] * np.log(r[rz])) / eta <= res.value + 1e-9


@settings(max_examples=30)
@given(losses=finite_losses, eta=st.floats(1e-2, 1e2), factor=st.floats(1.01, 10.0))
def test_entropic_monotone_in_eta(losses, eta, factor):
    """Cor. F.2 consequence: eta -> (1/eta) log sum exp(eta l) is non-increasing (log-sum-exp of a sum)."""
    a = entropic_worst_case(losses, eta).value
    b = entropic_worst_case(losses, eta * factor).value
    assert b <= a + 1e-9 * max(1.0, abs(a))


def test_entropic_huge_losses_equal_losses_and_single_sample():
    res = entropic_worst_case([1e6, 1e6 - 1.0, -1e6], eta=1e6)
    assert res.success and res.value == pytest.approx(1e6, rel=1e-15)
    np.testing.assert_allclose(res.weights, [1.0, 0.0, 0.0])
    res = entropic_worst_case(np.full(7, 3.5), eta=2.0)
    np.testing.assert_allclose(res.weights, np.full(7, 1 / 7))
    assert res.value == pytest.approx(3.5 + np.log(7) / 2.0)
    res = entropic_worst_case([4.0], eta=0.3)
    assert res.value == 4.0 and res.weights.tolist() == [1.0]
    assert isinstance(res, DROResult) and isinstance(res.value, float)


def test_entropic_batched_rows_match_1d():
    rng = np.random.default_rng(1)
    losses = rng.normal(size=(5, 9))
    res = entropic_worst_case(losses, 3.0)
    assert res.weights.shape == (5, 9) and res.value.shape == (5,)
    for i in range(5):
        row = entropic_worst_case(losses[i], 3.0)
        assert res.value[i] == pytest.approx(row.value, rel=1e-14)
        np.testing.assert_allclose(res.weights[i], row.weights, rtol=1e-14)


@pytest.mark.parametrize(
    "losses, eta, exc, match",
    [
        ([1.0, np.nan], 1.0, ValueError, r"losses must be finite, got nan at index 1"),
        ([], 1.0, ValueError, r"losses must have at least 1 element"),
        ([[1.0]], 0.0, ValueError, r"eta must be > 0.0, got 0.0"),
        ([1.0], np.inf, ValueError, r"eta must be finite"),
        ([1.0], np.nan, ValueError, r"eta must be finite"),
        ("abc", 1.0, TypeError, r"losses must be an array of real numbers"),
        (np.zeros((2, 2, 2)), 1.0, ValueError, r"losses must be 1-D or 2-D"),
    ],
)
def test_entropic_validation(losses, eta, exc, match):
    with pytest.raises(exc, match=match):
        entropic_worst_case(losses, eta)
