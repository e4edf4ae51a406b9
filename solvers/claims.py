"""Claims, confidence intervals and code-computed verdicts: the result types of every study.

A *study* (``robust-rollouts study``) runs a simulator or a real training loop over several seeds
and checks papers' claims. This module holds what every study returns, so that the simulator
studies (``sim.studies``) and the LLM study (``llm_bridge``) -- which never import each other --
share one format, and ``benchmarks`` renders them all the same way (JSON, markdown, PNG):

* :func:`mean_ci` -- mean over seeds with a Student-t 95 % confidence interval (:class:`Estimate`);
* :func:`linear_fit` -- least-squares line with a t confidence interval on the slope (rates in
  log-log coordinates);
* :func:`decide` / :func:`make_claim` -- the verdict (``holds``, ``does not hold``,
  ``inconclusive``, ``under-powered``) of a claim about an estimate, computed from its interval and
  its positive control, never by hand;
* :func:`minimum_detectable_effect`, :func:`one_sided_p_value` and :func:`holm` -- the power of a
  comparison and the family-wise view of a set of claims;
* :class:`Claim`, :class:`Table`, :class:`Series`, :class:`Panel`, :class:`Figure` and
  :class:`StudyResult` -- plain, JSON-able records. Figures are *declarative*: a study says what to
  draw (series with optional CI bands, axis labels and scales); it never imports matplotlib.

Verdict rules (:func:`decide`), for an estimate with interval ``[low, high]``:

* ``greater=t``: *holds* if ``low > t``; *does not hold* if ``high <= t``; else *inconclusive*;
* ``less=t``: *holds* if ``high < t``; *does not hold* if ``low >= t``; else *inconclusive*;
* ``within=(a, b)``: *holds* if ``a <= low`` and ``high <= b``; *does not hold* if the interval
  and ``[a, b]`` are disjoint; else *inconclusive*.

An interval that is undefined (fewer than two seeds, or non-finite samples) is always
*inconclusive*.

Positive controls and *under-powered*. A comparative claim (``greater=`` / ``less=``) may carry a
positive control measured in the same run and expressed in the claim's own units: an effect the
regime is known to be able to produce (the exact-gradient learner against uniform for an allocation
claim, the oracle's best achievable variance reduction for a variance claim, ...). The claim's
*minimum detectable effect* (MDE) is the true effect its own test would detect with 80 % power:
``(t_{0.975, n-1} + t_{0.80, n-1}) * sem`` (a one-sided test at 2.5 %, which is what "the 95 % CI
lies on the claimed side" is). The control *passes* when its own interval lies on the claimed side
of the threshold and its effect (its distance from the threshold in the claimed direction) is at
least the MDE. When the control fails, the regime cannot show the claimed effect at the size the
test could detect, and the verdict is **under-powered** whatever the claim's interval says -- never
*does not hold* (and never a *holds* that the regime could not have produced reliably).

Multiple comparisons. Every verdict is per claim, from its own 95 % interval: each claim is a
separate statement of a paper, tested once, and a reader looks up the ones they care about. For
the family as a whole, :func:`holm` applies Holm's step-down procedure to the one-sided p-values of
the comparative claims; the report states how many *holds* survive it at a family-wise 5 %.

Kinds. :data:`CLAIM_KINDS`: a ``paper claim`` (a statement of a paper), an ``assumption check`` (a
paper's modelling assumption tested on the simulator, e.g. VIP App. B independence; not a claim
about a method) and a ``project check`` (a property of this project's own machinery).

This module is pure Python and NumPy/SciPy (no project imports), as everything in ``solvers``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "CLAIM_KINDS",
    "VERDICTS",
    "Claim",
    "Control",
    "Estimate",
    "Figure",
    "LinearFit",
    "Panel",
    "Series",
    "StudyResult",
    "Table",
    "decide",
    "holm",
    "linear_fit",
    "make_claim",
    "mean_ci",
    "minimum_detectable_effect",
    "one_sided_p_value",
    "parse_seeds",
    "to_jsonable",
]

VERDICTS = ("holds", "does not hold", "inconclusive", "under-powered")
CLAIM_KINDS = ("paper claim", "assumption check", "project check")
POWER = 0.80
"""Power at which :func:`minimum_detectable_effect` is computed."""
SERIES_STYLES = ("line", "points", "errorbar", "bar")
AXIS_SCALES = ("linear", "log", "symlog")


# ---------------------------------------------------------------------------------------------
# Estimates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A mean over independent replicates (seeds) with a two-sided confidence interval.

    Attributes
    ----------
    mean : float
        Sample mean (NaN when there are no samples).
    low, high : float
        Confidence interval; NaN when undefined (fewer than two samples or non-finite samples).
    n : int
        Number of replicates.
    sem : float
        Standard error of the mean (``std(ddof=1) / sqrt(n)``; NaN for ``n < 2``).
    level : float
        Confidence level of ``[low, high]``.
    """

    mean: float
    low: float
    high: float
    n: int
    sem: float
    level: float = 0.95

    @property
    def defined(self) -> bool:
        """Whether the interval is defined (finite bounds)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def format(self, digits: int = 3) -> str:
        """``"mean [low, high]"`` with ``digits`` significant digits."""
        if not self.defined:
            return f"{_fmt(self.mean, digits)} [CI undefined, n={self.n}]"
        return f"{_fmt(self.mean, digits)} [{_fmt(self.low, digits)}, {_fmt(self.high, digits)}]"


def _fmt(x: float, digits: int) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def _level_iv(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.integer, np.floating)):
        raise TypeError(f"level must be a real number, got {type(level).__name__}")
    level = float(level)
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return level


def _samples_iv(samples: Any, name: str) -> np.ndarray:
    if isinstance(samples, (str, bytes)) or samples is None:
        raise TypeError(f"{name} must be a sequence of real numbers, got {type(samples).__name__}")
    arr = np.asarray(samples)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must be a sequence of real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64).reshape(-1) if arr.ndim <= 1 else None
    if arr is None:
        raise ValueError(f"{name} must be 1-D, got shape {np.shape(samples)}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not contain NaN, got {arr.tolist()}")
    return arr


def mean_ci(samples: Any, *, level: float = 0.95) -> Estimate:
    """Mean of independent replicates with a Student-t confidence interval.

    Parameters
    ----------
    samples : array_like, shape (n,)
        One number per replicate (seed). NaN is rejected (a replicate that produced no number
        is a bug to surface, not to average over); ``+-inf`` gives an undefined interval.
    level : float, default 0.95
        Confidence level.

    Returns
    -------
    Estimate
        ``mean +- t_{(1+level)/2, n-1} * std(ddof=1) / sqrt(n)``. With ``n < 2`` or non-finite
        samples the interval is NaN (undefined) and every claim on it is *inconclusive*.

    Examples
    --------
    >>> e = mean_ci([1.0, 2.0, 3.0])
    >>> round(e.mean, 6), round(e.low, 4), round(e.high, 4)
    (2.0, -0.4841, 4.4841)
    """
    x = _samples_iv(samples, "samples")
    level = _level_iv(level)
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, math.nan, level)
    if not np.all(np.isfinite(x)):
        with np.errstate(invalid="ignore"):
            mean = float(np.mean(x))
        return Estimate(mean, math.nan, math.nan, n, math.nan, level)
    mean = float(np.mean(x))
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, math.nan, level)
    sem = float(np.std(x, ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf(0.5 + level / 2.0, df=n - 1)) * sem
    return Estimate(mean, mean - half, mean + half, n, sem, level)


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least-squares line ``y = intercept + slope * x`` with a CI on the slope.

    ``slope`` is an :class:`Estimate` whose ``n`` is the number of points and whose interval uses
    ``n - 2`` degrees of freedom; ``residual_std`` is the residual standard deviation.
    """

    slope: Estimate
    intercept: float
    residual_std: float


def linear_fit(x: Any, y: Any, *, level: float = 0.95) -> LinearFit:
    """Least-squares line through ``(x, y)`` with a Student-t interval on the slope.

    Use it for rates: pass ``log(n)`` and ``log(error)`` (one point per replicate and size, so the
    interval reflects seed-to-seed noise) and test the slope against the theory (e.g. ``-1``).

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Finite coordinates, at least 3 points and at least 2 distinct ``x``.
    level : float, default 0.95

    Examples
    --------
    >>> f = linear_fit([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
    >>> round(f.slope.mean, 12), round(f.intercept, 12), f.slope.low == f.slope.high
    (2.0, 1.0, True)
    """
    xs = _samples_iv(x, "x")
    ys = _samples_iv(y, "y")
    level = _level_iv(level)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    if xs.size < 3:
        raise ValueError(f"linear_fit needs at least 3 points, got {xs.size}")
    if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("x and y must be finite")
    xc = xs - xs.mean()
    sxx = float(xc @ xc)
    if sxx <= 0.0:
        raise ValueError("x must contain at least 2 distinct values")
    slope = float(xc @ (ys - ys.mean())) / sxx
    intercept = float(ys.mean() - slope * xs.mean())
    resid = ys - (intercept + slope * xs)
    dof = xs.size - 2
    s = math.sqrt(float(resid @ resid) / dof)
    sem = s / math.sqrt(sxx)
    half = float(stats.t.ppf(0.5 + level / 2.0, df=dof)) * sem
    return LinearFit(Estimate(slope, slope - half, slope + half, int(xs.size), sem, level), intercept, s)


# ---------------------------------------------------------------------------------------------
# Claims and verdicts
# ---------------------------------------------------------------------------------------------


def _threshold_iv(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return v


def decide(
    estimate: Estimate,
    *,
    greater: float | None = None,
    less: float | None = None,
    within: tuple[float, float] | None = None,
) -> tuple[str, str]:
    """Verdict and reason for a claim about ``estimate`` (exactly one criterion).

    See the module docstring for the rules. Returns ``(verdict, reason)``, the reason naming the
    interval and the criterion, e.g. ``"95% CI [1.21, 1.43] (n=5) lies above 1"``.
    """
    if not isinstance(estimate, Estimate):
        raise TypeError(f"estimate must be an Estimate, got {type(estimate).__name__}")
    given = [c for c in (greater, less, within) if c is not None]
    if len(given) != 1:
        raise ValueError("pass exactly one of greater=, less=, within=")
    pct = f"{100 * estimate.level:g}%"
    if not estimate.defined:
        return "inconclusive", f"{pct} CI undefined (n={estimate.n})"
    lo, hi = estimate.low, estimate.high
    ci = f"{pct} CI [{_fmt(lo, 3)}, {_fmt(hi, 3)}] (n={estimate.n})"
    if greater is not None:
        t = _threshold_iv(greater, "greater")
        if lo > t:
            return "holds", f"{ci} lies above {_fmt(t, 4)}"
        if hi <= t:
            return "does not hold", f"{ci} lies at or below {_fmt(t, 4)}"
        return "inconclusive", f"{ci} contains {_fmt(t, 4)}"
    if less is not None:
        t = _threshold_iv(less, "less")
        if hi < t:
            return "holds", f"{ci} lies below {_fmt(t, 4)}"
        if lo >= t:
            return "does not hold", f"{ci} lies at or above {_fmt(t, 4)}"
        return "inconclusive", f"{ci} contains {_fmt(t, 4)}"
    if not (isinstance(within, (tuple, list)) and len(within) == 2):
        raise TypeError(f"within must be a pair (low, high), got {within!r}")
    a = _threshold_iv(within[0], "within[0]")
    b = _threshold_iv(within[1], "within[1]")
    if not a <= b:
        raise ValueError(f"within must satisfy low <= high, got {within!r}")
    band = f"[{_fmt(a, 4)}, {_fmt(b, 4)}]"
    if a <= lo and hi <= b:
        return "holds", f"{ci} lies inside {band}"
    if hi < a or lo > b:
        return "does not hold", f"{ci} lies outside {band}"
    return "inconclusive", f"{ci} overlaps the edge of {band}"


def minimum_detectable_effect(estimate: Estimate, *, power: float = POWER) -> float:
    """Smallest true effect the claim's own test detects with probability ``power``.

    The test is "the ``estimate.level`` two-sided interval lies on the claimed side", i.e. a
    one-sided t-test at ``(1 - level) / 2``; its MDE is
    ``(t_{(1+level)/2, n-1} + t_{power, n-1}) * sem``. NaN when the interval is undefined.

    Examples
    --------
    >>> e = mean_ci([0.0, 1.0, 2.0, 3.0, 4.0])
    >>> round(minimum_detectable_effect(e), 4)
    2.6286
    """
    if not isinstance(estimate, Estimate):
        raise TypeError(f"estimate must be an Estimate, got {type(estimate).__name__}")
    power = _level_iv(power)
    if not estimate.defined or estimate.n < 2 or not math.isfinite(estimate.sem):
        return math.nan
    df = estimate.n - 1
    z = float(stats.t.ppf(0.5 + estimate.level / 2.0, df=df)) + float(stats.t.ppf(power, df=df))
    return z * estimate.sem


def one_sided_p_value(estimate: Estimate, *, greater: float | None = None, less: float | None = None) -> float:
    """One-sided t-test p-value of the claimed direction (``mean > greater`` or ``mean < less``).

    NaN when the interval is undefined; 0 or 1 when the standard error is 0.
    """
    if not isinstance(estimate, Estimate):
        raise TypeError(f"estimate must be an Estimate, got {type(estimate).__name__}")
    if (greater is None) == (less is None):
        raise ValueError("pass exactly one of greater=, less=")
    t0 = _threshold_iv(greater if greater is not None else less, "greater" if greater is not None else "less")
    if not estimate.defined or estimate.n < 2:
        return math.nan
    diff = (estimate.mean - t0) if greater is not None else (t0 - estimate.mean)
    if estimate.sem == 0.0:
        return 0.0 if diff > 0 else 1.0
    return float(stats.t.sf(diff / estimate.sem, df=estimate.n - 1))


def holm(p_values: dict[str, float], *, alpha: float = 0.05) -> dict[str, bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``.

    ``p_values`` maps a name to its p-value (NaN counts as 1, i.e. never rejected). Returns
    ``{name: rejected}``.

    Examples
    --------
    >>> holm({"a": 0.001, "b": 0.02, "c": 0.04})
    {'a': True, 'b': True, 'c': True}
    >>> holm({"a": 0.001, "b": 0.03, "c": 0.04})
    {'a': True, 'b': False, 'c': False}
    """
    alpha = _level_iv(alpha)
    items = sorted(((1.0 if not math.isfinite(float(p)) else float(p)), k) for k, p in p_values.items())
    m = len(items)
    out = {k: False for k in p_values}
    for i, (p, k) in enumerate(items):
        if p > alpha / (m - i):
            break
        out[k] = True
    return out


@dataclass(frozen=True)
class Control:
    """A positive control of a comparative claim, measured in the same run, in the claim's units.

    Attributes
    ----------
    label : str
        What the control is (e.g. ``"exact-gradient learner - uniform"``).
    estimate : Estimate
        The control's value, compared with the claim's threshold in the claim's direction.
    effect : float
        The control's mean distance from the threshold in the claimed direction.
    mde : float
        The claim's minimum detectable effect (:func:`minimum_detectable_effect`).
    passes : bool
        Whether the control's interval lies on the claimed side and ``effect >= mde``.
    reason : str
        The comparison in words.
    """

    label: str
    estimate: Estimate
    effect: float
    mde: float
    passes: bool
    reason: str


def _control(label: str, control: Estimate, claim: Estimate, greater: float | None, less: float | None) -> Control:
    if not isinstance(control, Estimate):
        raise TypeError(f"control must be an Estimate, got {type(control).__name__}")
    if not isinstance(label, str) or not label:
        raise TypeError(f"control_label must be a non-empty string, got {label!r}")
    mde = minimum_detectable_effect(claim)
    t0 = float(greater if greater is not None else less)
    sign = 1.0 if greater is not None else -1.0
    effect = sign * (control.mean - t0) if math.isfinite(control.mean) else math.nan
    side = "above" if greater is not None else "below"
    if not control.defined:
        return Control(label, control, effect, mde, False, f"control {label}: CI undefined (n={control.n})")
    if not math.isfinite(mde):
        return Control(label, control, effect, mde, False,
                       f"control {label} = {control.format()}; the claim's MDE is undefined (n={claim.n})")
    on_side = control.low > t0 if greater is not None else control.high < t0
    passes = bool(on_side and effect >= mde)
    what = (f"control {label} = {control.format()}: effect {_fmt(effect, 3)} vs the claim's minimum detectable "
            f"effect {_fmt(mde, 3)} (80 % power, n={claim.n})")
    if passes:
        return Control(label, control, effect, mde, True, f"{what}; the regime can show the effect")
    if not on_side:
        why = f"the control's CI does not lie {side} {_fmt(t0, 4)}"
    else:
        why = "the control's effect is below the MDE"
    return Control(label, control, effect, mde, False, f"{what}; {why}: the test cannot show the effect here")


@dataclass(frozen=True)
class Claim:
    """One paper claim, what was measured, and the verdict computed from the interval.

    Attributes
    ----------
    key : str
        Stable identifier, ``"<study>.<claim>"`` (e.g. ``"variance.prop_4_3"``).
    source : str
        Where the claim comes from (paper short name and equation/table, e.g. ``"VIP Prop 4.3"``;
        ``"this project"`` for a project check).
    statement : str
        The claim in words, as tested here.
    metric : str
        What the estimate measures, with units (e.g. ``"Monte Carlo / formula variance ratio"``).
    estimate : Estimate
        The measured number with its interval.
    criterion : str
        The test applied (``"> 1"``, ``"< 0"``, ``"in [0.95, 1.05]"``).
    verdict : str
        One of :data:`VERDICTS`, computed by :func:`make_claim`.
    reason : str
        Why: the interval against the criterion, the control against the MDE, plus the study's note.
    kind : str
        One of :data:`CLAIM_KINDS`.
    regime : str
        The simulator regime the claim was measured in (``"default"`` or a named regime the study
        describes, e.g. ``"powered"``).
    mde : float
        Minimum detectable effect of a comparative claim (NaN for ``within`` claims or an
        undefined interval).
    p_value : float
        One-sided p-value of the claimed direction (NaN for ``within`` claims).
    control : Control or None
        The positive control, when the claim is comparative and has one.
    """

    key: str
    source: str
    statement: str
    metric: str
    estimate: Estimate
    criterion: str
    verdict: str
    reason: str
    kind: str = "paper claim"
    regime: str = "default"
    mde: float = math.nan
    p_value: float = math.nan
    control: Control | None = None


def make_claim(
    key: str,
    source: str,
    statement: str,
    metric: str,
    estimate: Estimate,
    *,
    greater: float | None = None,
    less: float | None = None,
    within: tuple[float, float] | None = None,
    note: str = "",
    control: Estimate | None = None,
    control_label: str = "",
    kind: str = "paper claim",
    regime: str = "default",
) -> Claim:
    """Build a :class:`Claim` whose verdict is computed by :func:`decide` and its control.

    ``note`` is appended to the computed reason (context such as why a claim fails in this
    simulator); it never changes the verdict. ``control`` (with ``control_label``) is the positive
    control of a comparative claim (``greater=`` / ``less=``), in the claim's units; when it does
    not pass (see the module docstring) the verdict is ``"under-powered"``.

    Examples
    --------
    >>> c = make_claim("demo.ratio", "VIP Prop 4.3", "the formula is exact", "MC / formula",
    ...                mean_ci([0.99, 1.01, 1.0, 1.02, 0.98]), within=(0.95, 1.05))
    >>> c.verdict, c.criterion
    ('holds', 'in [0.95, 1.05]')
    >>> null = make_claim("demo.null", "VIP Sec. 6", "A beats B", "A - B", mean_ci([-0.1, 0.1, 0.0]),
    ...                   greater=0.0, control=mean_ci([0.01, 0.0, 0.02]), control_label="2x budget - B")
    >>> null.verdict
    'under-powered'
    """
    for name, value in (("key", key), ("source", source), ("statement", statement), ("metric", metric)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    if kind not in CLAIM_KINDS:
        raise ValueError(f"kind must be one of {CLAIM_KINDS}, got {kind!r}")
    if not isinstance(regime, str) or not regime:
        raise TypeError(f"regime must be a non-empty string, got {regime!r}")
    verdict, reason = decide(estimate, greater=greater, less=less, within=within)
    mde = p = math.nan
    ctrl = None
    if greater is not None or less is not None:
        mde = minimum_detectable_effect(estimate)
        p = one_sided_p_value(estimate, greater=greater, less=less)
    if control is not None:
        if within is not None:
            raise ValueError("a positive control needs a comparative claim (greater= or less=), not within=")
        ctrl = _control(control_label, control, estimate, greater, less)
        reason = f"{reason}; {ctrl.reason}"
        if not ctrl.passes:
            verdict = "under-powered"
    elif control_label:
        raise ValueError("control_label given without control")
    if greater is not None:
        criterion = f"> {_fmt(float(greater), 4)}"
    elif less is not None:
        criterion = f"< {_fmt(float(less), 4)}"
    else:
        criterion = f"in [{_fmt(float(within[0]), 4)}, {_fmt(float(within[1]), 4)}]"
    if note:
        reason = f"{reason}; {note}"
    return Claim(key, source, statement, metric, estimate, criterion, verdict, reason, kind, regime, mde, p, ctrl)


def parse_seeds(text: Any) -> tuple[int, ...] | int:
    """Parse a seed specification: a count (``"10"`` -> 10), a range (``"101-110"``), a list
    (``"3,5,8"``) or a mix (``"1-3,7"``). Returns an ``int`` for a bare count (seeds ``0..n-1``), else
    the tuple of seeds in the given order (duplicates rejected).

    Examples
    --------
    >>> parse_seeds("4"), parse_seeds("101-103"), parse_seeds("3,5,8"), parse_seeds("1-2,7")
    (4, (101, 102, 103), (3, 5, 8), (1, 2, 7))
    """
    if isinstance(text, bool) or not isinstance(text, (str, int, np.integer)):
        raise TypeError(f"seeds must be a string or an integer, got {type(text).__name__}")
    if isinstance(text, (int, np.integer)):
        if int(text) < 1:
            raise ValueError(f"seeds must be a positive count, got {int(text)}")
        return int(text)
    spec = text.strip()
    if not spec:
        raise ValueError("seeds must not be empty")
    if "," not in spec and "-" not in spec.lstrip("-"):
        try:
            n = int(spec)
        except ValueError:
            raise ValueError(f"seeds must be a count, a range A-B or a list A,B,C; got {text!r}") from None
        if n < 1:
            raise ValueError(f"seeds must be a positive count, got {n}")
        return n
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                i = part.index("-", 1)
                a, b = int(part[:i]), int(part[i + 1:])
                if b < a:
                    raise ValueError(f"seed range {part!r} is empty (end < start)")
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except ValueError as exc:
            if "empty" in str(exc):
                raise
            raise ValueError(f"seeds must be a count, a range A-B or a list A,B,C; got {text!r}") from None
    if any(s < 0 for s in out):
        raise ValueError(f"seeds must be non-negative, got {text!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must not repeat, got {text!r}")
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Tables and declarative figures
# ---------------------------------------------------------------------------------------------


def _floats(values: Any, name: str, *, allow_none: bool = False) -> tuple[float, ...] | None:
    if values is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a sequence of numbers, got None")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Table:
    """A small table for the report: ``columns`` names and ``rows`` of cells (str or numbers)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""

    def __post_init__(self) -> None:
        cols = tuple(str(c) for c in self.columns)
        rows = tuple(tuple(_cell(c) for c in r) for r in self.rows)
        for i, r in enumerate(rows):
            if len(r) != len(cols):
                raise ValueError(f"table {self.title!r}: row {i} has {len(r)} cells, expected {len(cols)}")
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "rows", rows)


def _cell(c: Any) -> Any:
    if isinstance(c, (np.integer,)):
        return int(c)
    if isinstance(c, (np.floating,)):
        return float(c)
    if isinstance(c, (str, int, float)) or c is None:
        return c
    return str(c)


@dataclass(frozen=True)
class Series:
    """One curve (or set of points/bars) of a panel.

    Parameters
    ----------
    label : str
        Legend entry. The renderer gives every label one colour and line style: a label naming a
        method (``"vip"``, ``"uniform"``, ``"GRPO"``, ...) gets that method's style in every figure
        of every study; series with the same label look the same in every panel.
    x, y : sequence of float
        Coordinates (same length; NaN entries are not drawn).
    low, high : sequence of float, optional
        Confidence band (``line``: shaded band; ``points``/``errorbar``/``bar``: error bars).
    style : {"line", "points", "errorbar", "bar"}
        ``line`` for curves over a continuous axis, ``points`` for scattered measurements (a
        single-size series must be drawn this way so it is not lost), ``errorbar`` for means with
        intervals at discrete x, ``bar`` for categories (``x`` are positions; use
        ``Panel.xticklabels``).
    linestyle : {"solid", "dashed", "dotted"}
        Dashed/dotted mark references, theory lines and peers; used for labels that name no method
        (a method's line style is fixed by the renderer).
    """

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    style: str = "line"
    linestyle: str = "solid"

    def __post_init__(self) -> None:
        x = _floats(self.x, "x")
        y = _floats(self.y, "y")
        low = _floats(self.low, "low", allow_none=True)
        high = _floats(self.high, "high", allow_none=True)
        if len(x) != len(y):
            raise ValueError(f"series {self.label!r}: x and y lengths differ ({len(x)} vs {len(y)})")
        if (low is None) != (high is None):
            raise ValueError(f"series {self.label!r}: give both low and high or neither")
        if low is not None and not (len(low) == len(high) == len(y)):
            raise ValueError(f"series {self.label!r}: low/high must have the length of y ({len(y)})")
        if self.style not in SERIES_STYLES:
            raise ValueError(f"series {self.label!r}: style must be one of {SERIES_STYLES}, got {self.style!r}")
        if self.linestyle not in ("solid", "dashed", "dotted"):
            raise ValueError(f"series {self.label!r}: linestyle must be solid, dashed or dotted")
        for name, v in (("x", x), ("y", y), ("low", low), ("high", high)):
            object.__setattr__(self, name, v)


@dataclass(frozen=True)
class Panel:
    """One axes of a figure: labelled axes (with units), scales, series and reference lines.

    ``hlines`` are ``(y, label)`` reference lines (e.g. a theory value or ratio 1);
    ``xticklabels`` names bar positions ``0, 1, ...``.
    """

    title: str
    xlabel: str
    ylabel: str
    series: tuple[Series, ...]
    xscale: str = "linear"
    yscale: str = "linear"
    hlines: tuple[tuple[float, str], ...] = ()
    xticklabels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.xlabel or not self.ylabel:
            raise ValueError(f"panel {self.title!r}: both axes need a label")
        for s in ("xscale", "yscale"):
            if getattr(self, s) not in AXIS_SCALES:
                raise ValueError(f"panel {self.title!r}: {s} must be one of {AXIS_SCALES}")
        series = tuple(self.series)
        if not all(isinstance(s, Series) for s in series):
            raise TypeError(f"panel {self.title!r}: series must be Series objects")
        object.__setattr__(self, "series", series)
        object.__setattr__(self, "hlines", tuple((float(y), str(lbl)) for y, lbl in self.hlines))
        if self.xticklabels is not None:
            object.__setattr__(self, "xticklabels", tuple(str(t) for t in self.xticklabels))


@dataclass(frozen=True)
class Figure:
    """A figure of one or more panels, written as ``<study>_<name>.png``; ``caption`` goes under
    it in the report (what to look at, in one or two sentences)."""

    name: str
    title: str
    panels: tuple[Panel, ...]
    caption: str = ""
    ncols: int = 2

    def __post_init__(self) -> None:
        if not self.name or not all(ch.isalnum() or ch in "-_" for ch in self.name):
            raise ValueError(f"figure name must be a non-empty file-name stem ([A-Za-z0-9_-]), got {self.name!r}")
        panels = tuple(self.panels)
        if not panels or not all(isinstance(p, Panel) for p in panels):
            raise TypeError(f"figure {self.name!r}: panels must be a non-empty sequence of Panel")
        if int(self.ncols) < 1:
            raise ValueError(f"figure {self.name!r}: ncols must be >= 1")
        object.__setattr__(self, "panels", panels)


# ---------------------------------------------------------------------------------------------
# Study result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyResult:
    """Everything a study found, as plain data.

    Attributes
    ----------
    name, title : str
        Study name (``robust-rollouts study NAME``) and a one-line title.
    summary : str
        A short paragraph: the setting, what was compared, what was found (written by the study
        from its numbers, e.g. with f-strings -- never a hand-written verdict).
    config : dict
        The configuration the study ran with (JSON-able).
    seeds : tuple of int
    claims : tuple of Claim
    tables : tuple of Table
    figures : tuple of Figure
    data : dict
        Every number behind every plot and table (JSON-able), for re-analysis.
    """

    name: str
    title: str
    summary: str
    config: dict
    seeds: tuple[int, ...]
    claims: tuple[Claim, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[Figure, ...] = ()
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr, kind in (("claims", Claim), ("tables", Table), ("figures", Figure)):
            items = tuple(getattr(self, attr))
            if not all(isinstance(i, kind) for i in items):
                raise TypeError(f"study {self.name!r}: {attr} must contain {kind.__name__} objects")
            object.__setattr__(self, attr, items)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        keys = [c.key for c in self.claims]
        if len(set(keys)) != len(keys):
            raise ValueError(f"study {self.name!r}: duplicate claim keys {keys}")
        names = [f.name for f in self.figures]
        if len(set(names)) != len(names):
            raise ValueError(f"study {self.name!r}: duplicate figure names {names}")

    def to_dict(self) -> dict:
        """A JSON-able dict (non-finite floats become ``None``)."""
        return to_jsonable(asdict(self))


def to_jsonable(obj: Any) -> Any:
    """Recursively convert dataclasses, tuples, NumPy scalars/arrays to JSON types.

    Non-finite floats become ``None`` (strict JSON has no NaN/Infinity).
    """
    if hasattr(obj, "__dataclass_fields__"):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")
