"""solvers.claims: confidence intervals against scipy, the verdict rules, and the result records."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from solvers.claims import (
    Claim,
    Estimate,
    Figure,
    Panel,
    Series,
    StudyResult,
    Table,
    decide,
    linear_fit,
    make_claim,
    mean_ci,
    to_jsonable,
)

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=40))
def test_mean_ci_matches_scipy_t_interval(xs):
    """The interval is scipy's Student-t interval ``mean +- t_{0.975,n-1} s/sqrt(n)``."""
    e = mean_ci(xs)
    x = np.asarray(xs)
    assert e.mean == pytest.approx(x.mean(), abs=1e-9)
    sem = stats.sem(x)
    if sem == 0:
        assert e.low == e.high == pytest.approx(x.mean(), abs=1e-9)
    else:
        lo, hi = stats.t.interval(0.95, df=x.size - 1, loc=x.mean(), scale=sem)
        assert (e.low, e.high) == pytest.approx((lo, hi), rel=1e-9, abs=1e-9)
    assert e.low <= e.mean <= e.high


def test_mean_ci_coverage_is_close_to_nominal():
    """Over 4000 normal samples of size 5 the 95 % interval covers the true mean about 95 % of the time."""
    rng = np.random.default_rng(0)
    cover = [mean_ci(rng.normal(3.0, 2.0, size=5)) for _ in range(4000)]
    rate = np.mean([e.low <= 3.0 <= e.high for e in cover])
    assert 0.935 <= rate <= 0.965


def test_mean_ci_undefined_cases_and_bad_input():
    assert not mean_ci([1.0]).defined and mean_ci([1.0]).mean == 1.0
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    assert not mean_ci([1.0, math.inf]).defined
    with pytest.raises(ValueError, match="samples must not contain NaN"):
        mean_ci([1.0, math.nan])
    with pytest.raises(TypeError, match="samples"):
        mean_ci("abc")
    with pytest.raises(ValueError, match="level must be in"):
        mean_ci([1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="1-D"):
        mean_ci([[1.0, 2.0]])


def test_linear_fit_matches_scipy_linregress():
    rng = np.random.default_rng(1)
    x = np.log(np.repeat([100, 300, 1000, 3000], 5).astype(float))
    y = -1.0 * x + 2.0 + rng.normal(0, 0.1, x.size)
    f = linear_fit(x, y)
    ref = stats.linregress(x, y)
    assert f.slope.mean == pytest.approx(ref.slope, rel=1e-12)
    assert f.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert f.slope.sem == pytest.approx(ref.stderr, rel=1e-9)
    half = stats.t.ppf(0.975, x.size - 2) * ref.stderr
    assert (f.slope.low, f.slope.high) == pytest.approx((ref.slope - half, ref.slope + half), rel=1e-9)
    with pytest.raises(ValueError, match="at least 3 points"):
        linear_fit([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="2 distinct"):
        linear_fit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="same length"):
        linear_fit([1.0, 2.0, 3.0], [1.0, 2.0])


def _est(lo, hi):
    return Estimate((lo + hi) / 2, lo, hi, 5, (hi - lo) / 5)


@pytest.mark.parametrize(
    "lo, hi, kw, verdict",
    [
        (1.1, 1.3, {"greater": 1.0}, "holds"),
        (0.9, 1.3, {"greater": 1.0}, "inconclusive"),
        (0.7, 1.0, {"greater": 1.0}, "does not hold"),
        (0.7, 0.9, {"less": 1.0}, "holds"),
        (0.7, 1.1, {"less": 1.0}, "inconclusive"),
        (1.0, 1.1, {"less": 1.0}, "does not hold"),
        (0.97, 1.02, {"within": (0.95, 1.05)}, "holds"),
        (0.93, 1.02, {"within": (0.95, 1.05)}, "inconclusive"),
        (1.06, 1.2, {"within": (0.95, 1.05)}, "does not hold"),
        (0.5, 0.9, {"within": (0.95, 1.05)}, "does not hold"),
    ],
)
def test_decide_rules(lo, hi, kw, verdict):
    got, reason = decide(_est(lo, hi), **kw)
    assert got == verdict
    assert "95% CI" in reason


@given(finite, st.floats(0, 1e3), finite)
def test_decide_is_consistent(centre, half, t):
    """At most one of 'holds' for greater=t and 'holds' for less=t; undefined CIs are inconclusive."""
    e = _est(centre - half, centre + half)
    g, _ = decide(e, greater=t)
    le, _ = decide(e, less=t)
    assert not (g == "holds" and le == "holds")
    if g == "holds":
        assert le == "does not hold"
    assert decide(mean_ci([centre]), greater=t)[0] == "inconclusive"


def test_decide_needs_exactly_one_criterion():
    with pytest.raises(ValueError, match="exactly one"):
        decide(_est(0, 1))
    with pytest.raises(ValueError, match="exactly one"):
        decide(_est(0, 1), greater=0, less=1)
    with pytest.raises(ValueError, match="low <= high"):
        decide(_est(0, 1), within=(2, 1))
    with pytest.raises(TypeError, match="Estimate"):
        decide((0, 1), greater=0)


def test_make_claim_appends_note_without_changing_verdict():
    c = make_claim("s.k", "VIP Thm 5.2", "allocation reduces variance", "ratio", _est(0.7, 0.9), less=1.0,
                   note="simulator X")
    assert isinstance(c, Claim) and c.verdict == "holds" and c.criterion == "< 1"
    assert c.reason.endswith("; simulator X")
    with pytest.raises(TypeError, match="key"):
        make_claim("", "s", "t", "m", _est(0, 1), greater=0)


def test_records_validate_and_serialise():
    s = Series("a", np.arange(3), np.ones(3), np.zeros(3), 2 * np.ones(3))
    assert s.x == (0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="lengths differ"):
        Series("a", [1, 2], [1])
    with pytest.raises(ValueError, match="both low and high"):
        Series("a", [1], [1], low=[0])
    with pytest.raises(ValueError, match="style"):
        Series("a", [1], [1], style="pie")
    with pytest.raises(ValueError, match="axes need a label"):
        Panel("p", "", "y", (s,))
    with pytest.raises(ValueError, match="file-name stem"):
        Figure("bad name", "t", (Panel("p", "x", "y", (s,)),))
    with pytest.raises(ValueError, match="row 0"):
        Table("t", ("a", "b"), ((1,),))
    fig = Figure("f", "t", (Panel("p", "x", "y", (s,), hlines=((1, "ref"),)),))
    claim = make_claim("s.c", "src", "st", "m", mean_ci([1.0]), greater=0.0)
    res = StudyResult("s", "t", "summary", {"seeds": 1}, (0,), (claim,), (), (fig,), {"v": np.float64(2)})
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)  # undefined CI bounds became null
    assert d["claims"][0]["estimate"]["low"] is None and '"v": 2.0' in text
    with pytest.raises(ValueError, match="duplicate claim keys"):
        StudyResult("s", "t", "", {}, (0,), (claim, claim))
    with pytest.raises(TypeError, match="cannot convert"):
        to_jsonable({"x": object()})
