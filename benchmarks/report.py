"""Report writing for ``robust-rollouts perf``: a markdown table with ratios, JSON, log-log PNGs."""

from __future__ import annotations

import json
import os
import platform
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

from .harness import Measurement, format_seconds

__all__ = ["machine_info", "markdown_table", "write_json", "plot_scaling"]


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


def _groups(rows: Iterable[Measurement]) -> "OrderedDict[tuple, list[Measurement]]":
    groups: OrderedDict[tuple, list[Measurement]] = OrderedDict()
    for m in rows:
        groups.setdefault((m.suite, m.case, str(m.size)), []).append(m)
    return groups


def markdown_table(rows: list[Measurement]) -> str:
    """One markdown table: per (suite, case, size) our median(s), each peer's median and ratio.

    The ratio is peer median / our reference median (the first ``ours`` row of the group), so
    ``1200x`` means ours is 1200 times faster.
    """
    lines = [
        "| suite | case | size | implementation | median | IQR | JIT compile | vs ours |",
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
                    ratio = f"{m.median_s / ref.median_s:,.1f}x"
            comp = format_seconds(m.compile_s) if m.compile_s is not None else ""
            peak = f" (peak {m.peak_mib:,.0f} MiB)" if m.peak_mib is not None else ""
            lines.append(
                f"| {suite} | {case} | {size} | {m.impl}{peak} | {med} | {iqr} | {comp} | {ratio} |"
            )
    return "\n".join(lines)


def write_json(rows: list[Measurement], path: Path, *, extra: dict[str, Any] | None = None) -> None:
    payload = {"machine": machine_info(), "results": [m.as_dict() for m in rows]}
    if extra:
        payload.update(extra)
    path.write_text(json.dumps(payload, indent=2))


def plot_scaling(rows: list[Measurement], suite: str, path: Path) -> bool:
    """Log-log plot of median time vs size for every (case, impl) of ``suite`` with >= 2 numeric sizes.

    Returns False (and writes nothing) when the suite has no such series.
    """
    series: OrderedDict[str, list[tuple[float, float]]] = OrderedDict()
    peer_labels: set[str] = set()
    for m in rows:
        if m.suite != suite or m.median_s is None or not isinstance(m.size, (int, float)):
            continue
        label = f"{m.case}: {m.impl}"
        series.setdefault(label, []).append((float(m.size), m.median_s))
        if m.role != "ours":
            peer_labels.add(label)
    series = OrderedDict((k, sorted(v)) for k, v in series.items() if len(v) >= 2)
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in series.items():
        xs, ys = zip(*pts)
        peer = label in peer_labels
        ax.loglog(xs, ys, marker="s" if peer else "o", linestyle="--" if peer else "-", label=label)
    ax.set_xlabel("problem size")
    ax.set_ylabel("median wall time per call [s]")
    ax.set_title(f"robust-rollouts perf: {suite} (solid: ours, dashed: peers)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
