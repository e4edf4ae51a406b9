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


# ---------------------------------------------------------------------------------------------
# Power, positive controls and the fourth verdict
# ---------------------------------------------------------------------------------------------


@given(st.lists(finite, min_size=2, max_size=30), st.floats(0.5, 0.99))
def test_mde_is_the_t_quantile_sum_times_sem(xs, power):
    """MDE = (t_{0.975,n-1} + t_{power,n-1}) * sem: the effect a one-sided 2.5 % t-test detects with
    probability ``power``."""
    from solvers.claims import minimum_detectable_effect

    e = mean_ci(xs)
    df = len(xs) - 1
    want = (stats.t.ppf(0.975, df) + stats.t.ppf(power, df)) * stats.sem(np.asarray(xs))
    assert minimum_detectable_effect(e, power=power) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert math.isnan(minimum_detectable_effect(mean_ci([1.0])))


def test_mde_has_the_stated_power_by_simulation():
    """At a true effect equal to the MDE (computed from the known sigma), the verdict 'holds' comes
    out in about 80 % of replications (the t-test's power; noncentral t, df = 9)."""
    from solvers.claims import minimum_detectable_effect

    rng = np.random.default_rng(1)
    n, sigma = 10, 1.0
    mde = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sigma / math.sqrt(n)
    hits = [decide(mean_ci(rng.normal(mde, sigma, size=n)), greater=0.0)[0] == "holds" for _ in range(4000)]
    # with sigma estimated from the sample the power is slightly below 0.8 (noncentral t)
    assert 0.72 <= float(np.mean(hits)) <= 0.82
    assert minimum_detectable_effect(mean_ci(rng.normal(0, 1, size=n))) > 0


def test_one_sided_p_value_and_holm():
    from solvers.claims import holm, one_sided_p_value

    e = mean_ci([1.0, 2.0, 3.0, 4.0])
    t = (e.mean - 1.0) / e.sem
    assert one_sided_p_value(e, greater=1.0) == pytest.approx(stats.t.sf(t, 3))
    assert one_sided_p_value(e, less=1.0) == pytest.approx(stats.t.cdf(t, 3))
    assert math.isnan(one_sided_p_value(mean_ci([1.0]), greater=0.0))
    with pytest.raises(ValueError, match="exactly one"):
        one_sided_p_value(e)
    # Holm against a brute-force statement of the procedure
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = int(rng.integers(1, 8))
        ps = {f"h{i}": float(p) for i, p in enumerate(rng.uniform(0, 0.1, size=m))}
        got = holm(ps)
        order = sorted(ps, key=ps.get)
        want, stop = {}, False
        for i, k in enumerate(order):
            stop = stop or ps[k] > 0.05 / (m - i)
            want[k] = not stop
        assert got == want
    assert holm({"a": math.nan}) == {"a": False}


def test_a_failing_positive_control_makes_the_verdict_under_powered():
    null = mean_ci([-0.02, 0.03, 0.01, -0.01, 0.0])
    weak = mean_ci([0.001, 0.002, 0.0015, 0.001, 0.002])  # significant but far below the MDE
    strong = mean_ci([0.30, 0.32, 0.31, 0.29, 0.33])
    c = make_claim("s.null", "src", "A beats B", "A - B", null, greater=0.0, control=weak, control_label="2x - B")
    assert c.verdict == "under-powered" and "below the MDE" in c.reason
    assert c.control.passes is False and c.control.mde == pytest.approx(c.mde)
    c2 = make_claim("s.null", "src", "A beats B", "A - B", null, greater=0.0, control=strong, control_label="2x - B")
    assert c2.verdict == "inconclusive" and c2.control.passes and "can show the effect" in c2.reason
    # a control on the wrong side fails even when large
    c3 = make_claim("s.k", "src", "A below B", "A - B", null, less=0.0, control=strong, control_label="ctl")
    assert c3.verdict == "under-powered" and "does not lie below" in c3.reason
    # a failing control overrides 'does not hold' and 'holds' alike
    bad = mean_ci([-0.5, -0.4, -0.6])
    assert make_claim("s.k", "src", "st", "m", bad, greater=0.0).verdict == "does not hold"
    assert make_claim("s.k", "src", "st", "m", bad, greater=0.0, control=weak, control_label="c").verdict == "under-powered"
    with pytest.raises(ValueError, match="comparative"):
        make_claim("s.k", "src", "st", "m", null, within=(0, 1), control=strong, control_label="c")
    with pytest.raises(ValueError, match="control_label given without control"):
        make_claim("s.k", "src", "st", "m", null, greater=0.0, control_label="c")
    with pytest.raises(TypeError, match="control_label"):
        make_claim("s.k", "src", "st", "m", null, greater=0.0, control=strong)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_claim("s.k", "src", "st", "m", null, greater=0.0, kind="guess")
    d = to_jsonable(c)
    assert d["verdict"] == "under-powered" and d["control"]["passes"] is False and d["kind"] == "paper claim"


def test_parse_seeds():
    from solvers.claims import parse_seeds

    assert parse_seeds("10") == 10 and parse_seeds(3) == 3
    assert parse_seeds("101-104") == (101, 102, 103, 104)
    assert parse_seeds(" 3, 5 ,8") == (3, 5, 8) and parse_seeds("1-2,7") == (1, 2, 7)
    for bad, msg in (("0", "positive count"), ("-1", "positive count"), ("2.5", "count, a range"),
                     ("5-3", "empty"), ("1,1", "repeat"), ("a-b", "count, a range"), ("", "empty")):
        with pytest.raises(ValueError, match=msg):
            parse_seeds(bad)
    with pytest.raises(TypeError, match="seeds must be"):
        parse_seeds(2.0)
