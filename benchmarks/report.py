"""Report writing for ``robust-rollouts perf``: a markdown table with ratios, JSON, log-log PNGs, and the
cold-start table/figure of the ``coldstart`` suite."""

from __future__ import annotations

import json
import os
import platform
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .harness import Measurement, format_seconds
from .styles import METHOD_STYLES, canonical_method, plain_log_formatter

__all__ = [
    "SIZE_LABELS",
    "case_family",
    "coldstart_table",
    "compare_text",
    "is_one_off",
    "machine_info",
    "markdown_table",
    "plot_coldstart",
    "plot_scaling",
    "size_label",
    "write_json",
]


def machine_info() -> dict[str, Any]:
    """Facts about the machine and library versions, stored beside every result."""
    import numba
    import numpy
    import scipy

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import cvxpy

        info["cvxpy"] = cvxpy.__version__
    except ImportError:
        info["cvxpy"] = None
    return info


def _groups(rows: Iterable[Measurement]) -> OrderedDict[tuple, list[Measurement]]:
    groups: OrderedDict[tuple, list[Measurement]] = OrderedDict()
    for m in rows:
        groups.setdefault((m.suite, m.case, str(m.size)), []).append(m)
    return groups


def compare_text(m: Measurement, ref: Measurement) -> str:
    """How row ``m`` compares with its group's reference row ``ref`` (same suite, case and size),
    in words that cannot be misread: ``"1,200.0x slower"`` (a peer taking 1200 times ours' time),
    ``"7.3x faster"`` (a warm start against the cold one), ``"29.7 % of ref"`` (one phase of a
    step)."""
    if m.role == "phase":
        return f"{100.0 * m.median_s / ref.median_s:.1f} % of ref"
    r = m.median_s / ref.median_s
    if r >= 1.0:
        return f"{r:,.1f}x slower"
    return f"{1.0 / r:,.1f}x faster"


def markdown_table(rows: list[Measurement]) -> str:
    """One markdown table: per (suite, case, size) our median(s), each peer's median and how each
    row compares with the group's reference (the first ``ours`` row, marked ``ref``).

    A peer at ``1,200.0x slower`` takes 1200 times our time; a warm start at ``7.3x faster`` takes
    a seventh of the cold one (:func:`compare_text`). A line under the table says so.
    """
    lines = [
        "| suite | case | size | implementation | median | IQR | JIT compile | vs ref |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for (suite, case, size), group in _groups(rows).items():
        ref = next((m for m in group if m.role == "ours" and m.median_s), None)
        for m in group:
            if m.median_s is None:
                med, iqr, ratio = "-", "-", m.note or "skipped"
            else:
                med = format_seconds(m.median_s)
                iqr = (
                    f"{format_seconds(m.q25_s)}-{format_seconds(m.q75_s)}"
                    if m.q25_s is not None and m.repeats > 1
                    else ("1 call" if m.repeats == 1 else "-")
                )
                if ref is None or m is ref:
                    ratio = "ref" if m is ref else ""
                else:
                    ratio = compare_text(m, ref)
            comp = format_seconds(m.compile_s) if m.compile_s is not None else ""
            peak = f" (peak {m.peak_mib:,.0f} MiB)" if m.peak_mib is not None else ""
            shown = "once" if is_one_off(m) else size
            lines.append(
                f"| {suite} | {case} | {shown} | {m.impl}{peak} | {med} | {iqr} | {comp} | {ratio} |"
            )
    lines += ["", "*vs ref*: each row against the first row of ours in its suite, case and size (`ref`): "
                  "`N x slower` takes N times its time, `N x faster` 1/N of it; a phase of a step is given "
                  "as its share of the step."]
    return "\n".join(lines)


def write_json(rows: list[Measurement], path: Path, *, extra: dict[str, Any] | None = None) -> None:
    payload = {"machine": machine_info(), "results": [m.as_dict() for m in rows]}
    if extra:
        payload.update(extra)
    path.write_text(json.dumps(payload, indent=2))


# The size axis of each suite (and of a family of its cases, where they differ): what "size" counts.
SIZE_LABELS: dict[str, str | dict[str, str]] = {
    "allocation": "B prompts in the batch",
    "budget": {"match_budget": "bins (batch = 25.6 prompts per bin)", "sqrt_allocation": "bins", "": "bins"},
    "regret": "P prompts (batch rows)",
    "shaping": {"advantages ragged": "P prompt groups (4-28 rollouts each)",
                "": "P prompts (x G = 16 rollouts)"},
    "dro": {"batched": "rows (16 samples each)", "": "B samples (support size)"},
    "gdro": "batch size (prompts)",
    "predictor": {"baselines": "N prompts in the pool", "": "N prompts in the pool (d = 384)"},
    "controllers": "batch size (prompts)",
    "sim": "P prompts (x 8 rollouts)",
    "llm": "rollouts per step",
    "replay": "rows of the rollout log",
    "coldstart": "(no size: one fresh interpreter per entry point)",
}


def case_family(suite: str, case: str) -> str:
    """The panel a case is drawn in: cases compared on one axis share a family."""
    if suite == "shaping":
        return "advantages ragged" if "ragged" in case else "advantages dense" if "advantages" in case else \
            "shaped rewards (DRRO / DRO)"
    if suite == "dro":
        return "batched" if "batched" in case else case
    if suite == "regret":
        return case.split()[0]
    if suite == "predictor":
        return "baselines" if case.startswith("baselines") else "GP update + predict"
    if suite == "controllers":
        return "at VIP's scale" if "VIP's scale" in case else "plan + observe"
    if suite == "llm":
        return "bridge overhead" if case.startswith("bridge overhead") else "GRPO step"
    return case


def size_label(suite: str, family: str = "") -> str:
    spec = SIZE_LABELS.get(suite, "problem size")
    if isinstance(spec, str):
        return spec
    for key, text in spec.items():
        if key and family.startswith(key):
            return text
    return spec.get("", "problem size")


def _numeric_size(size: Any) -> float | None:
    """The plotted x of a row: a number, or the first integer of a string size like ``"B=10,M=256"``."""
    if isinstance(size, bool):
        return None
    if isinstance(size, (int, float)):
        return float(size)
    match = re.search(r"\d[\d,]*", str(size))
    return float(match.group().replace(",", "")) if match else None


def is_one_off(m: Measurement) -> bool:
    """A one-off set-up cost (``"trainer set-up ..."``): paid once, it has no problem size and is
    not drawn on a size axis (the table lists it)."""
    return "set-up" in m.case.lower() or "setup" in m.case.lower()


def _is_reference(m: Measurement) -> bool:
    """Rows that are not a measured implementation competing with ours: floors, reported numbers, one-offs."""
    text = f"{m.case} {m.impl}".lower()
    return "floor" in text or "reported" in text or "one-off" in text


_MARKERS = "os^Dv<>pPX*h"


def plot_scaling(rows: list[Measurement], suite: str, path: Path) -> bool:
    """Log-log plots of median time vs size for ``suite``: one row of panels per case family.

    Left panel: every (case, implementation) series (ours solid, peers dashed, series with one size
    as markers, floors and reported/one-off references dashed grey); right panel (where the family
    has a measured peer): the speed-up ``peer median / our median`` per size. Legends sit outside
    the data, to the right of each row. Returns False (and writes nothing) when the suite has no row
    with a numeric size and a time.
    """
    fams: OrderedDict[str, OrderedDict[tuple[str, str], list[tuple[float, float]]]] = OrderedDict()
    kind: dict[tuple[str, str], str] = {}
    ours_at: dict[tuple[str, float], float] = {}
    one_offs = [m for m in rows if m.suite == suite and m.median_s is not None and is_one_off(m)]
    for m in rows:
        x = _numeric_size(m.size)
        if m.suite != suite or m.median_s is None or x is None or m.role not in ("ours", "peer") or is_one_off(m):
            continue
        key = (m.case, m.impl)
        fams.setdefault(case_family(suite, m.case), OrderedDict()).setdefault(key, []).append((x, m.median_s))
        kind[key] = "ref" if _is_reference(m) else m.role
        if m.role == "ours" and not _is_reference(m):
            ours_at.setdefault((m.case, x), m.median_s)
    if not fams:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ratios = {
        fam: OrderedDict(
            (key, [(x, y / ours_at[(key[0], x)]) for x, y in sorted(pts) if (key[0], x) in ours_at])
            for key, pts in series.items() if kind[key] == "peer"
        )
        for fam, series in fams.items()
    }
    ratios = {f: OrderedDict((k, v) for k, v in r.items() if v) for f, r in ratios.items()}
    with_ratio = any(ratios.values())
    sizes = {x for series in fams.values() for pts in series.values() for x, _ in pts}
    if len(sizes) == 1 and not with_ratio:  # one size, no peer: bars read better than points on an axis
        return _plot_one_size(fams, kind, suite, sizes.pop(), one_offs, path)
    ncols = 2 if with_ratio else 1
    fig, axes = plt.subplots(len(fams), ncols, figsize=(6.2 * ncols + 3.2, 3.4 * len(fams)), squeeze=False)
    for row, (fam, series) in enumerate(fams.items()):
        ax = axes[row][0]
        cases = list(OrderedDict.fromkeys(c for c, _ in series))
        colours = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
        # a panel whose measured series are distinct methods (the controllers) draws each in its
        # colour of the study figures (benchmarks.styles); otherwise colours in order
        named = {key: canonical_method(key[1])[0] for key in series if kind[key] != "ref"}
        if not all(named.values()) or len(set(named.values())) < len(named):
            named = {}
        style: dict[tuple[str, str], dict[str, Any]] = {}
        for i, (key, pts) in enumerate(series.items()):
            case, impl = key
            label = _series_label(case, impl, cases)
            xs, ys = zip(*sorted(pts))
            if kind[key] == "ref":
                marker = "x" if "floor" in case.lower() else "*" if "reported" in impl.lower() else "P"
                st = {"color": "0.45", "linestyle": (0, (4, 3)), "marker": marker,
                      "label": label + ("" if "floor" in label.lower() or "REPORTED" in label else " (reference)")}
                if "floor" in case.lower() and "floor" not in label.lower():
                    st["label"] = f"floor: {label}"
            else:
                colour = METHOD_STYLES[named[key]].colour if key in named else colours(i % colours.N)
                st = {"color": colour, "marker": _MARKERS[i % len(_MARKERS)],
                      "linestyle": "-" if kind[key] == "ours" else "--", "label": label}
            style[key] = st
            ax.loglog(xs, ys, markersize=6 if len(xs) > 1 else 8, linewidth=1.5, **st)
        ax.set_title(f"{suite}: {fam}", fontsize=10)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain_log_formatter())
            axis.set_minor_formatter(plain_log_formatter())
        ax.set_xlabel(size_label(suite, fam))
        ax.set_ylabel("median time per call [s]")
        ax.grid(True, which="both", alpha=0.3)
        _pad_single_x(ax, series)
        handles, labels = ax.get_legend_handles_labels()
        if with_ratio:
            rax = axes[row][1]
            if ratios[fam]:
                for key, pts in ratios[fam].items():
                    xs, ys = zip(*pts)
                    st = dict(style[key])
                    st["label"] = None
                    rax.loglog(xs, ys, markersize=6 if len(xs) > 1 else 8, linewidth=1.5, **st)
                _pad_single_x(rax, ratios[fam], extra_y=(1.0,))
                rax.axhline(1.0, color="k", linewidth=0.8)
                rax.set_title("speed-up: peer time / our time (colours as left)", fontsize=10)
                rax.xaxis.set_major_formatter(plain_log_formatter())
                rax.xaxis.set_minor_formatter(plain_log_formatter())
                rax.set_xlabel(size_label(suite, fam))
                rax.set_ylabel("peer / ours  (> 1: ours faster)")
                rax.grid(True, which="both", alpha=0.3)
                ratio_fmt = FuncFormatter(lambda v, _: f"{v:g}x")
                rax.yaxis.set_major_formatter(ratio_fmt)
                lo, hi = rax.get_ylim()
                rax.yaxis.set_minor_formatter(ratio_fmt if hi / lo < 10 else NullFormatter())
            else:
                rax.axis("off")  # the legend goes where the speed-up panel would be
        anchor = (1.02, 1.0) if not with_ratio or ratios[fam] else (0.0, 1.0)
        axes[row][-1].legend(handles, labels, fontsize=7.5, loc="upper left", bbox_to_anchor=anchor,
                             borderaxespad=0.0, title="solid: ours, dashed: peers, grey: floors/references"
                             if any(kind[k] == "ref" for k in series) else "solid: ours, dashed: peers",
                             title_fontsize=7.5)
        if with_ratio and not ratios[fam]:
            axes[row][-1].text(0.0, 0.0, "no measured peer: no speed-up panel", transform=axes[row][-1].transAxes,
                               color="0.5", fontsize=8)
    return _finish(fig, suite, one_offs, path)


def _plot_one_size(fams: Any, kind: dict, suite: str, size: float, one_offs: list[Measurement], path: Path) -> bool:
    """Horizontal bars of the median time per (case, implementation), one panel per case family, for
    a suite measured at a single size and without a peer (a size axis would hold one column of points).
    Controllers keep their colour of the study figures (:mod:`benchmarks.styles`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(1.6, 0.32 * len(series) + 1.0) for series in fams.values()]
    fig, axes = plt.subplots(len(fams), 1, figsize=(9.0, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (fam, series) in zip(axes[:, 0], fams.items()):
        cases = list(OrderedDict.fromkeys(c for c, _ in series))
        items = sorted(series.items(), key=lambda kv: kv[1][0][1])
        labels = [_series_label(case, impl, cases) for (case, impl), _ in items]
        times = [pts[0][1] for _, pts in items]
        colours = []
        for (case, impl), _ in items:
            name = canonical_method(impl)[0]
            colours.append("0.55" if kind[(case, impl)] == "ref" else
                           METHOD_STYLES[name].colour if name in METHOD_STYLES else "tab:blue")
        lo, hi = min(times), max(times)
        ax.set_xscale("log")
        ax.set_xlim(lo / 2.0, hi * 3.0)  # bars start at the left edge (a log axis has no 0)
        ax.barh(range(len(items)), [t - lo / 2.0 for t in times], left=lo / 2.0, color=colours, height=0.6)
        ax.set_yticks(range(len(items)), labels, fontsize=8)
        ax.xaxis.set_major_formatter(plain_log_formatter())
        ax.xaxis.set_minor_formatter(plain_log_formatter())
        for i, t in enumerate(times):
            ax.text(t, i, f" {format_seconds(t)}", va="center", fontsize=7.5)
        ax.set_xlabel(f"median time per call [s] at {size_label(suite, fam)} = {size:,.0f}")
        ax.set_title(f"{suite}: {fam}", fontsize=10)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    return _finish(fig, suite, one_offs, path)


def _finish(fig: Any, suite: str, one_offs: list[Measurement], path: Path) -> bool:
    """Title ``fig``, note the suite's one-off costs under it (they have no size: a note, not a point
    on an axis), save it to ``path`` and close it."""
    import matplotlib.pyplot as plt

    fig.suptitle(f"robust-rollouts perf: {suite}", fontsize=12)
    if one_offs:
        note = "; ".join(f"{m.case}: {format_seconds(m.median_s)} ({m.impl})" for m in one_offs)
        fig.text(0.01, -0.01, f"Paid once, not per step (not drawn): {note}", fontsize=8.5, color="0.25",
                 ha="left", va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def _series_label(case: str, impl: str, cases: list[str]) -> str:
    """Legend text: the case only where needed to tell series apart, less the words all cases share."""
    if len(cases) == 1:
        return impl
    toks = [c.split() for c in cases]
    pre = 0
    while all(len(t) > pre + 1 and t[pre] == toks[0][pre] for t in toks):
        pre += 1
    suf = 0
    while all(len(t) > pre + suf + 1 and t[-1 - suf] == toks[0][-1 - suf] for t in toks):
        suf += 1
    words = case.split()
    short = " ".join(words[pre:len(words) - suf]).rstrip(":")
    return impl if short and short in impl.split() else f"{short}: {impl}"


def _pad_single_x(ax: Any, series: dict, extra_y: tuple[float, ...] = ()) -> None:
    """A panel whose points all share one x (or one y) gets a visible range around it."""
    xs = {x for pts in series.values() for x, _ in pts}
    ys = {y for pts in series.values() for _, y in pts} | set(extra_y)
    with warnings.catch_warnings():  # the autoscaler's complaint about the one-point range we replace
        warnings.simplefilter("ignore", UserWarning)
        if len(ys) == 1:
            y = ys.pop()
            ax.set_ylim(y / 3, y * 3)
        if len(xs) == 1:
            x = xs.pop()
            ax.set_xlim(x / 3, x * 3)


def coldstart_table(rows: list[Measurement]) -> str:
    """Markdown: per entry point the cold and the warm first-call time (suite ``coldstart``)."""
    from .suites.coldstart import COLD, WARM

    cases: OrderedDict[str, dict[str, Measurement]] = OrderedDict()
    for m in rows:
        if m.suite == "coldstart":
            cases.setdefault(m.case, {})[m.impl] = m
    if not cases:
        return ""
    lines = [
        ("| entry point | cold first call s (empty Numba cache) | warm first call s (Numba disk cache) | "
         "speed-up of warm (cold / warm) | import s (cold / warm, not included) |"),
        "|---|---:|---:|---:|---:|",
    ]

    def sec(m: Measurement | None) -> str:
        return "failed" if m is None or m.median_s is None else f"{m.median_s:.3f}"

    def imp(m: Measurement | None) -> str:
        match = re.search(r"import ([\d.]+) s", m.note) if m is not None else None
        return match.group(1) if match else "-"

    def speedup(cold: Measurement | None, warm: Measurement | None) -> str:
        if cold is None or warm is None or not cold.median_s or not warm.median_s:
            return "-"
        return f"{cold.median_s / warm.median_s:,.1f}x"

    for case, by_impl in cases.items():
        cold, warm = by_impl.get(COLD), by_impl.get(WARM)
        lines.append(f"| {case} | {sec(cold)} | {sec(warm)} | {speedup(cold, warm)} | {imp(cold)} / {imp(warm)} |")
    return "\n".join(lines)


def plot_coldstart(rows: list[Measurement], path: Path) -> bool:
    """Horizontal bars: cold and warm first-call time per entry point (log scale)."""
    from .suites.coldstart import COLD, WARM

    data: OrderedDict[str, dict[str, float]] = OrderedDict()
    for m in rows:
        if m.suite == "coldstart" and m.median_s is not None:
            data.setdefault(m.case, {})[m.impl] = m.median_s
    if not data:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(data)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.6))
    for off, impl, colour in ((-0.2, COLD, "tab:red"), (0.2, WARM, "tab:blue")):
        vals = [data[n].get(impl, np.nan) for n in names]
        ax.barh(y + off, vals, height=0.38, color=colour, label=impl)
        for yi, v in zip(y + off, vals):
            if np.isfinite(v):
                ax.text(v * 1.08, yi, f"{v:.3g} s", va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    finite = [v for d in data.values() for v in d.values() if np.isfinite(v) and v > 0]
    if finite:
        ax.set_xlim(min(finite) / 2, max(finite) * 4)  # room for the value labels
    ax.set_xlabel("first-call time in a fresh interpreter [s] (import excluded)")
    ax.set_title("robust-rollouts perf: coldstart (first call per entry point)", fontsize=11)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True
