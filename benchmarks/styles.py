"""One colour and one line style per method, in every figure of every study.

A reader who has learnt that VIP is the blue solid line in one figure finds it blue and solid in
every other figure. :func:`figure_styles` gives every series label of a figure its colour and line
style, keyed by the label alone:

* a label that names a method of :data:`METHOD_STYLES` (after :func:`canonical_method`'s
  normalisation: case, ``_``/``-``, spacing, aliases such as ``"coupled GDRO"`` for
  ``gdro-coupled`` or ``"DRO-REBEL KL"`` for ``KL``, and a trailing parenthesis such as
  ``"GRPO (uniform)"``) gets that method's fixed colour and line style;
* a label that *mentions* a method (``"Prompt-GDRO weights"``, ``"compute-matched uniform"``) is
  a variant of it: the method's colour with the first free variant line style;
* any other label gets a colour of :data:`FALLBACK_COLOURS` (its starting point a hash of the
  label, so the same label tends to get the same colour in every figure) and keeps the series'
  own line style; a family of numbered labels (``"bin 0"``, ``"bin 1"``, ...) gets an ordered
  colour ramp instead.

Within one figure no two labels share a colour and line style, and a fallback colour is never one
already used in that figure. Study code never chooses colours: it names its series after the
methods (see :data:`METHOD_STYLES` for the canonical names) and the renderer
(:func:`benchmarks.study_report.render_figure`) does the rest.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "FALLBACK_COLOURS",
    "METHOD_STYLES",
    "Style",
    "canonical_method",
    "figure_styles",
    "plain_log_formatter",
    "reference_style",
]

# Matplotlib line styles. Variants of a method cycle through VARIANT_LINESTYLES.
SOLID, DASHED, DOTTED, DASHDOT = "-", "--", ":", "-."
VARIANT_LINESTYLES: tuple[Any, ...] = (DASHED, DOTTED, DASHDOT, (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)),
                                       (0, (1, 3)), (0, (8, 3, 2, 3)))
_SERIES_LINESTYLES = {"solid": SOLID, "dashed": DASHED, "dotted": DOTTED}


class Style(NamedTuple):
    """A series' colour (a matplotlib colour string) and line style (a matplotlib line style;
    ``None``: the series' own, for labels that name no method)."""

    colour: str
    linestyle: Any


#: canonical method name -> (colour, line style). Baselines are black or grey; the project's own
#: methods solid; methods of other papers' peers dash-dot; a method's variant (2x budget, the
#: paper's version) shares its hue, lighter and dashed. Colours are distinct within each group of
#: methods that appear together (allocation/training controllers, RLHF shaping, DRO-REBEL, predictors).
METHOD_STYLES: dict[str, Style] = {
    # baselines: uniform allocation is plain GRPO (one style for both names)
    "uniform": Style("#000000", SOLID),
    "GRPO": Style("#000000", SOLID),
    "uniform-2x": Style("#000000", DASHED),
    "exact-gradient": Style("#7f7f7f", DASHED),
    # allocation controllers of this project (VIP, GDRO)
    "vip": Style("#1f77b4", SOLID),
    "vip-paper": Style("#6baed6", DASHED),
    "oracle": Style("#2ca02c", SOLID),
    "oracle-informed": Style("#98df8a", DASHED),
    "inverse-accuracy": Style("#9467bd", SOLID),
    "inverse-variance": Style("#e377c2", SOLID),
    "skip-saturated": Style("#bcbd22", SOLID),
    "rollout-gdro": Style("#d62728", SOLID),
    "prompt-gdro": Style("#ff7f0e", SOLID),
    "gdro-coupled": Style("#8c564b", SOLID),
    "sqrt-law": Style("#17becf", SOLID),
    # peers' allocation methods
    "knapsack": Style("#393b79", DASHDOT),
    "reinforce-ada": Style("#8c6d31", DASHDOT),
    "greso": Style("#7b4173", DASHDOT),
    "dapo-dynamic": Style("#637939", DASHDOT),
    "ar3po": Style("#e7969c", DASHDOT),
    # RLHF reward shaping (DRRO study)
    "GRPO+KL": Style("#7f7f7f", DASHDOT),
    "DRO": Style("#5254a3", SOLID),
    "DRRO hard": Style("#ad494a", SOLID),
    "DRRO soft": Style("#e6550d", SOLID),
    "DRRO soft+dyn": Style("#bd9e39", SOLID),
    # DRO-REBEL
    "REBEL": Style("#636363", SOLID),
    "Wasserstein": Style("#a55194", SOLID),
    "KL": Style("#e7ba52", SOLID),
    "chi2": Style("#6b6ecf", SOLID),
    # success predictors (VIP Fig. 3)
    "GP": Style("#3182bd", SOLID),
    "ridge": Style("#756bb1", DASHED),
    "moving average": Style("#31a354", DASHED),
    "beta-binomial": Style("#ce6dbd", DASHED),
    # advantage estimators (variance formulas)
    "Dr. GRPO": Style("#843c39", SOLID),
    "RLOO": Style("#6b6ecf", DASHED),
}

_RESERVED = frozenset(METHOD_STYLES.values())

#: other spellings (already normalised by :func:`_norm`) -> canonical name
_ALIASES: dict[str, str] = {
    "uniform 2x": "uniform-2x", "uniform x2": "uniform-2x", "uniform at 2x budget": "uniform-2x",
    "uniform (2x budget)": "uniform-2x", "uniform-2x-budget": "uniform-2x", "2x uniform": "uniform-2x",
    "exact gradient": "exact-gradient", "exact-grad": "exact-gradient",
    "vip paper": "vip-paper", "vip (paper)": "vip-paper", "vip as published": "vip-paper",
    "oracle informed": "oracle-informed",
    "inverse accuracy": "inverse-accuracy", "inverse variance": "inverse-variance",
    "skip saturated": "skip-saturated",
    "rollout gdro": "rollout-gdro", "prompt gdro": "prompt-gdro",
    "coupled gdro": "gdro-coupled", "gdro coupled": "gdro-coupled", "coupled-gdro": "gdro-coupled",
    "sqrt law": "sqrt-law", "square-root law": "sqrt-law", "square root law": "sqrt-law",
    "knapsack-rl": "knapsack", "reinforce ada": "reinforce-ada", "dapo dynamic": "dapo-dynamic",
    "dapo dynamic sampling": "dapo-dynamic", "dapo": "dapo-dynamic",
    "grpo + kl": "GRPO+KL", "grpo + kl penalty": "GRPO+KL", "grpo+kl penalty": "GRPO+KL", "grpo with kl": "GRPO+KL",
    "dro hard": "DRO", "drro-hard": "DRRO hard", "drro-soft": "DRRO soft",
    "drro soft + dynamic": "DRRO soft+dyn", "drro soft+dynamic": "DRRO soft+dyn", "drro soft + dyn": "DRRO soft+dyn",
    "drro dynamic": "DRRO soft+dyn", "drro-soft-dyn": "DRRO soft+dyn",
    "dro-rebel wasserstein": "Wasserstein", "wasserstein dro-rebel": "Wasserstein", "wdro-rebel": "Wasserstein",
    "dro-rebel kl": "KL", "kl dro-rebel": "KL", "dro-rebel chi2": "chi2", "chi2 dro-rebel": "chi2",
    "gp predictor": "GP", "gaussian process": "GP",
    "ridge predictor": "ridge", "moving-average": "moving average", "beta binomial": "beta-binomial",
    "drgrpo": "Dr. GRPO", "dr grpo": "Dr. GRPO", "dr.grpo": "Dr. GRPO",
}


def _norm(label: str) -> str:
    s = str(label).lower().replace("_", "-").replace("\u03c7\u00b2", "chi2")
    s = re.sub(r"chi[- ]?squared?|chi\^2|\$\\chi\^2\$", "chi2", s)
    s = re.sub(r"\s*\+\s*", " + ", s)
    s = re.sub(r"\s+", " ", s).strip()
    return s


_LOOKUP: dict[str, str] = {}
for _name in METHOD_STYLES:
    _LOOKUP[_norm(_name)] = _name
for _alias, _name in _ALIASES.items():
    _LOOKUP[_norm(_alias)] = _name
# longest first, so that "vip-paper" wins over "vip" and "drro soft + dynamic" over "drro soft"
_PATTERNS = sorted(_LOOKUP, key=len, reverse=True)
_BOUNDARY = r"a-z0-9\-\+"


def _strip_paren(s: str) -> str:
    return re.sub(r"\s*\([^()]*\)\s*$", "", s)


def canonical_method(label: str) -> tuple[str | None, bool]:
    """The method a series label names, and whether it names it exactly.

    Returns ``(name, exact)``: ``name`` a key of :data:`METHOD_STYLES` or None; ``exact`` True
    when the label *is* the method (an alias, or the method followed by a parenthesis such as
    ``"GRPO (uniform)"``), False when it only mentions it (``"Prompt-GDRO weights"``).

    Examples
    --------
    >>> canonical_method("coupled GDRO")
    ('gdro-coupled', True)
    >>> canonical_method("Prompt-GDRO weights")
    ('prompt-gdro', False)
    >>> canonical_method("bin 3")
    (None, False)
    """
    s = _norm(label)
    for cand in (s, _strip_paren(s)):
        if cand in _LOOKUP:
            return _LOOKUP[cand], True
    best: tuple[int, int, str] | None = None
    for pat in _PATTERNS:
        m = re.search(rf"(?<![{_BOUNDARY}]){re.escape(pat)}(?![{_BOUNDARY}])", s)
        if m and (best is None or m.start() < best[0] or (m.start() == best[0] and len(pat) > best[1])):
            best = (m.start(), len(pat), _LOOKUP[pat])
    return (best[2], False) if best else (None, False)


#: colours for labels that name no method (distinct from each other; a hash of the label picks the
#: starting point, the first one not yet used in the figure is taken).
FALLBACK_COLOURS: tuple[str, ...] = (
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
    "#00008b", "#008b8b", "#8b008b", "#556b2f", "#b8860b", "#4682b4", "#cd5c5c", "#2f4f4f",
    "#9acd32", "#ff1493",
)
_DISTINCT = 0.25  # a fallback colour this far (RGB, 0..1) from every colour of the figure is taken first


def _rgb(colour: str) -> tuple[float, float, float]:
    return tuple(int(colour[k:k + 2], 16) / 255 for k in (1, 3, 5))  # type: ignore[return-value]


def _distance(a: str, b: str) -> float:
    return sum((x - y) ** 2 for x, y in zip(_rgb(a), _rgb(b))) ** 0.5


def _fallback_colour(label: str, used: set[str]) -> str | None:
    """The first unused fallback colour, in an order that starts at a hash of ``label``, that is
    clearly distinct from every colour in ``used``; else the unused one farthest from them."""
    start = _hash(label) % len(FALLBACK_COLOURS)
    ring = [FALLBACK_COLOURS[(start + k) % len(FALLBACK_COLOURS)] for k in range(len(FALLBACK_COLOURS))]
    free = [c for c in ring if c not in used]
    if not free:
        return None
    if not used:
        return free[0]
    gap = {c: min(_distance(c, u) for u in used) for c in free}
    return next((c for c in free if gap[c] >= _DISTINCT), max(free, key=lambda c: gap[c]))


def _hash(label: str) -> int:
    return int(hashlib.md5(label.encode()).hexdigest()[:8], 16)


def _ramp(k: int, n: int) -> str:
    """The k-th of n colours of an ordered ramp (viridis, without its palest end)."""
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["viridis"](0.9 * k / max(n - 1, 1))
    return f"#{round(255 * r):02x}{round(255 * g):02x}{round(255 * b):02x}"


def _numbered_families(labels: Sequence[str]) -> dict[str, str]:
    """Labels of the form ``<prefix> <number> ...`` with at least three siblings: label -> ramp colour."""
    fams: dict[str, list[tuple[float, str]]] = {}
    for lbl in labels:
        m = re.match(r"^(.*?\D)?(-?\d+(?:\.\d+)?)", lbl)
        if m:
            fams.setdefault((m.group(1) or "").strip(), []).append((float(m.group(2)), lbl))
    out = {}
    for members in fams.values():
        if len(members) >= 3:
            ordered = sorted(members)
            for k, (_, lbl) in enumerate(ordered):
                out[lbl] = _ramp(k, len(ordered))
    return out


def figure_styles(series: Sequence[tuple[str, ...]]) -> dict[str, Style]:
    """Colour and line style of every label of one figure.

    Parameters
    ----------
    series : sequence of (label, linestyle) or (label, linestyle, style)
        The figure's series labels in order of first appearance, with the series' own line style
        (``"solid"``, ``"dashed"`` or ``"dotted"``; used for labels that name no method) and
        optionally its drawing style (``"line"``, ``"bar"``, ...). Bars usually stand for a
        measure over methods on the x axis (``"VIP objective"``), so a bar label takes a method's
        style only when it *is* the method, never because it mentions one.

    Returns
    -------
    dict
        label -> :class:`Style`. No two labels share both colour and line style. Labels that name
        no method get ``linestyle=None`` (draw each series with its own line style) unless their
        colour had to be reused.
    """
    order: list[str] = []
    own: dict[str, str] = {}
    bars: set[str] = set()
    for label, ls, *kind in series:
        if label not in own:
            order.append(label)
            own[label] = ls
            if kind and kind[0] == "bar":
                bars.add(label)
    taken: set[tuple[str, Any]] = set()
    out: dict[str, Style] = {}

    def free_variant(colour: str, avoid: Any) -> Any:
        # prefer a pair that no other method owns (GRPO next to uniform: not uniform-2x's black dashed)
        for ls in VARIANT_LINESTYLES:
            if ls != avoid and (colour, ls) not in taken and Style(colour, ls) not in _RESERVED:
                return ls
        for ls in VARIANT_LINESTYLES:
            if ls != avoid and (colour, ls) not in taken:
                return ls
        return VARIANT_LINESTYLES[len(taken) % len(VARIANT_LINESTYLES)]

    methods = {lbl: canonical_method(lbl) for lbl in order}
    methods.update({lbl: (None, False) for lbl in bars if not methods[lbl][1]})
    # exact method names first (they own their palette style), then variants, then the rest
    for lbl in order:
        name, exact = methods[lbl]
        if name is not None and exact:
            st = METHOD_STYLES[name]
            ls = st.linestyle if (st.colour, st.linestyle) not in taken else free_variant(st.colour, st.linestyle)
            out[lbl] = Style(st.colour, ls)
            taken.add(out[lbl])
    for lbl in order:
        name, exact = methods[lbl]
        if name is not None and not exact:
            st = METHOD_STYLES[name]
            out[lbl] = Style(st.colour, free_variant(st.colour, st.linestyle))
            taken.add(out[lbl])
    used_colours = {s.colour for s in out.values()}
    rest = [lbl for lbl in order if lbl not in out]
    ramp = _numbered_families(rest)
    for lbl in rest:
        ls = _SERIES_LINESTYLES.get(own[lbl], SOLID)
        colour = ramp.get(lbl) or _fallback_colour(lbl, used_colours)
        if colour is None:  # more labels than colours: reuse one, with a line style not yet taken with it
            colour = FALLBACK_COLOURS[_hash(lbl) % len(FALLBACK_COLOURS)]
            ls = free_variant(colour, ls) if (colour, ls) in taken else ls
            out[lbl] = Style(colour, ls)
        else:
            out[lbl] = Style(colour, None)
        taken.add(Style(colour, ls))
        used_colours.add(colour)
    return out


_REFERENCE_GREYS: tuple[Style, ...] = (Style("#555555", DASHED), Style("#555555", DASHDOT),
                                       Style("#555555", (0, (8, 2, 1, 2, 1, 2))), Style("#999999", DASHED),
                                       Style("#999999", DASHDOT))


def reference_style(label: str, k: int, taken: set[tuple[str, Any]] | frozenset = frozenset()) -> Style:
    """Style of a reference line: the method's colour, dotted, when the label names a method exactly
    (``"uniform"``), else the ``k``-th grey dash pattern (``k``: how many reference lines of the
    figure that name no method came before; never dotted, so it cannot pass for a method's).
    ``taken``: the (colour, line style) pairs of the figure's series, which a method's reference
    line avoids."""
    name, exact = canonical_method(label)
    if name is not None and exact:
        colour = METHOD_STYLES[name].colour
        for ls in (DOTTED, (0, (1, 3)), (0, (3, 5, 1, 5)), (0, (6, 6))):
            if (colour, ls) not in taken:
                return Style(colour, ls)
        return Style(colour, DOTTED)
    return _REFERENCE_GREYS[k % len(_REFERENCE_GREYS)]


def plain_log_formatter() -> Any:
    """A matplotlib tick formatter for log axes: plain numbers (``3``, ``0.2``, ``100``) when the
    whole axis lies between 1e-3 and 1e4, integers with thousands separators between 1 and 1e7,
    powers of ten otherwise (one notation per axis);
    matplotlib's choice of which ticks to label is kept (no ``3x10^0``)."""
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        def __call__(self, x: float, pos: Any = None) -> str:
            text = super().__call__(x, pos)
            lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (x, x)
            if text and 1e-3 <= lo and hi < 1e4:
                return f"{x:g}"
            if text and 1 <= lo and hi < 1e7:  # counts: 1,000 ... 1,000,000
                return f"{x:,.0f}"
            return text

    return PlainLogFormatter()
