"""Render study results: ``results.json``, ``timings.json``, ``report.md`` and one PNG per figure.

``results.json`` holds the configuration, seeds, package versions and every number of every study
(claims, tables, figure data, raw ``data``); it is a deterministic function of the code, the
versions and the seeds. Wall times go to ``timings.json`` and the report, never into
``results.json``.

A ``--quick`` run is a smoke run: too few seeds and steps for a verdict. Its terminal table,
``report.md``, ``claims.json`` and ``results.json`` show :data:`SMOKE_VERDICT` in place of every
verdict and say so in one line (:data:`SMOKE_NOTE`); ``claims.json`` and ``results.json`` carry
``"smoke": true``. Figures take their colours from :mod:`benchmarks.styles` (one colour and line
style per method in every figure).
"""

from __future__ import annotations

import json
import math
import os
import platform
import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from solvers.claims import Claim, Figure, Table, holm, to_jsonable

from .study_runner import StudyRun
from .styles import Style, canonical_method, figure_styles, plain_log_formatter, reference_style

_SERIES_LINESTYLES = {"solid": "-", "dashed": "--", "dotted": ":"}

__all__ = ["SMOKE_NOTE", "SMOKE_VERDICT", "claims_markdown", "family_note", "is_smoke", "render_figure",
           "summary_table", "verdicts_markdown", "versions", "write_outputs"]

#: the one line that says a ``--quick`` run is a smoke run (terminal, report.md, claims.json, results.json)
SMOKE_NOTE = ("Smoke run (--quick): too few seeds and steps for a verdict; the numbers only show that every "
              "study runs. Run without --quick for verdicts.")
#: what a smoke run shows in place of every verdict
SMOKE_VERDICT = "none (smoke run)"

def versions() -> dict[str, str]:
    """Python and the versions of the packages the numbers depend on (absent ones omitted)."""
    out = {"python": platform.python_version()}
    for pkg in ("robust-rollouts", "numpy", "scipy", "numba", "torch", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.4g}"
    return _md_escape("" if v is None else v)


def _control_cell(control: Any) -> str:
    """``"value (passes|fails, MDE x)"`` for a control given as a Control or its dict; ``-`` if none."""
    if control is None:
        return "-"
    if isinstance(control, dict):
        e, mde, ok = control["estimate"], control["mde"], control["passes"]
        mean = e["mean"]
    else:
        mean, mde, ok = control.estimate.mean, control.mde, control.passes
    val = "n/a" if mean is None or not math.isfinite(mean) else f"{mean:.3g}"
    m = "n/a" if mde is None or not math.isfinite(mde) else f"{mde:.2g}"
    return f"{val} ({'passes' if ok else 'fails'}; MDE {m})"


def claims_markdown(claims: Sequence[Claim], *, smoke: bool = False) -> str:
    """A markdown table of claims: source, statement, estimate with CI, criterion, positive control,
    verdict (the reasons follow the table in the report; a smoke run shows no verdicts)."""
    lines = [
        "| claim | kind, regime | source | statement | measured (95% CI) | criterion | positive control | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        lines.append(
            f"| `{c.key}` | {_md_escape(c.kind)}, {_md_escape(c.regime)} | {_md_escape(c.source)} | "
            f"{_md_escape(c.statement)} | {_md_escape(c.metric)}: {_md_escape(c.estimate.format())} | "
            f"{_md_escape(c.criterion)} | {_md_escape(_control_cell(c.control))} | "
            + (f"{SMOKE_VERDICT} |" if smoke else f"**{c.verdict}** |")
        )
    return "\n".join(lines)


def family_note(claims: Sequence[Claim], alpha: float = 0.05) -> str:
    """One paragraph on the family of comparative claims: how many *holds* survive Holm's
    correction at family-wise level ``alpha``, and which do not."""
    comp = {c.key: c.p_value for c in claims if c.criterion[:1] in "<>"}
    if not comp:
        return ""
    rejected = holm(comp, alpha=alpha)
    holds = [c.key for c in claims if c.key in comp and c.verdict == "holds"]
    lost = [k for k in holds if not rejected[k]]
    text = (f"Multiple comparisons: verdicts are per claim (each is a separate statement of a paper, "
            f"tested once). Over the family of {len(comp)} comparative claims, Holm's step-down "
            f"procedure at a family-wise {100 * alpha:g} % keeps {len(holds) - len(lost)} of the {len(holds)} "
            f"*holds*")
    return text + (f"; these would not survive it: {', '.join(f'`{k}`' for k in lost)}." if lost else ".")


def verdicts_markdown(claims: Sequence[dict]) -> str:
    """A compact markdown table of claims given as dicts (``results.json`` / ``claims.json``): key,
    source, measured mean with its 95 % CI, criterion and verdict. The README quotes this table for
    the committed run (``benchmarks/results/study/claims.json``), so its numbers are never typed."""
    lines = ["| claim | paper | what is measured | mean [95% CI] | criterion | positive control | verdict |",
             "|---|---|---|---|---|---|:---:|"]
    for c in claims:
        e = c["estimate"]
        est = " ".join([_num(e["mean"]), f"[{_num(e['low'])}, {_num(e['high'])}]"])
        src = c["source"] if c.get("kind", "paper claim") == "paper claim" else f"{c['source']} ({c['kind']})"
        lines.append(f"| `{c['key']}` | {_md_escape(src)} | {_md_escape(c['metric'])} | {est} | "
                     f"{_md_escape(c['criterion'])} | {_md_escape(_control_cell(c.get('control')))} | {c['verdict']} |")
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _claim_dicts(run: StudyRun) -> list[dict]:
    """The claims of ``run`` as dicts; a smoke run's verdicts (and the reasons that explain them)
    are replaced by :data:`SMOKE_VERDICT` / :data:`SMOKE_NOTE`."""
    claims = run.result.to_dict()["claims"] if run.result else []
    if run.scale == "quick":
        claims = [{**c, "verdict": SMOKE_VERDICT, "reason": SMOKE_NOTE} for c in claims]
    return claims


def write_claims(runs: Sequence[StudyRun], path: Path, *, command: str = "", wall_seconds: float | None = None) -> None:
    """Write the claims of ``runs`` (without the bulky per-study data) to ``path`` as JSON.

    ``smoke`` says whether this was a smoke run (``--quick``: no verdicts; ``note`` says so).
    """
    smoke = is_smoke(runs)
    doc = {
        "command": command or "robust-rollouts study",
        "smoke": smoke,
        **({"note": SMOKE_NOTE} if smoke else {}),
        "versions": versions(),
        "machine": f"{platform.machine()}, {_cpu_count()} CPUs",
        "wall_seconds": wall_seconds,
        "studies": {run.name: {"scale": run.scale, "seeds": list(run.seeds), "wall_seconds": run.wall_seconds,
                               "error": run.error} for run in runs},
        "claims": [c for run in runs for c in _claim_dicts(run)],
    }
    Path(path).write_text(json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n")


def _table_markdown(t: Table) -> str:
    lines = [f"**{_md_escape(t.title)}**", "", "| " + " | ".join(_md_escape(c) for c in t.columns) + " |",
             "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", _md_escape(t.note)]
    return "\n".join(lines)


def is_smoke(runs: Sequence[StudyRun]) -> bool:
    """Whether ``runs`` are a smoke run (``--quick`` scale): too small for verdicts."""
    return any(r.scale == "quick" for r in runs)


def _verdict_text(c: Claim, smoke: bool) -> str:
    if smoke:
        return SMOKE_VERDICT
    return c.verdict + ("" if c.control is None else f" (control {'passes' if c.control.passes else 'fails'})")


def _what(c: Claim) -> str:
    """Source, kind and regime, then the statement: what a claim says, in one paragraph."""
    extra = [k for k in ((c.kind if c.kind != "paper claim" else ""),
                         (f"regime: {c.regime}" if c.regime not in ("", "default") else "")) if k]
    return f"{c.source}{' (' + '; '.join(extra) + ')' if extra else ''}: {c.statement}"


def summary_table(runs: Sequence[StudyRun], *, width: int = 100) -> str:
    """Plain-text summary of every claim, for the terminal.

    One row per claim (key, estimate with its 95 % CI, criterion, verdict and positive-control
    status), then what the claim states -- source, kind, regime and statement -- wrapped to
    ``width`` columns under it, never cut. A smoke run (``--quick``) shows no verdicts and says
    so in its first line.
    """
    smoke = is_smoke(runs)
    rows: list[tuple[tuple[str, str, str, str], str]] = []
    for run in runs:
        if run.error:
            rows.append(((run.name, "study failed", "-", "-"), run.error))
            continue
        for c in run.result.claims:
            rows.append(((c.key, c.estimate.format(), c.criterion, _verdict_text(c, smoke)), _what(c)))
    header = ("claim", "measured (95% CI)", "criterion", "verdict")
    widths = [max(len(r[k]) for r in [header, *(r for r, _ in rows)]) for k in range(4)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(v.ljust(widths[k]) for k, v in enumerate(cells)).rstrip()

    out = [SMOKE_NOTE] if smoke else []
    out += [line(header), "  ".join("-" * w for w in widths)]
    for cells, what in rows:
        out.append(line(cells))
        out += textwrap.wrap(what, width=max(width, 40), initial_indent="    ", subsequent_indent="    ",
                             break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)


def _import_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "drawing study figures needs matplotlib: pip install \"robust-rollouts[plot]\" "
            "(or run with --no-plots)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_figure(fig: Figure, path: Path) -> None:
    """Draw a declarative :class:`~solvers.claims.Figure` to ``path`` (PNG).

    Every series label gets one colour and line style (:func:`benchmarks.styles.figure_styles`):
    a method keeps the same colour and line style in every figure of every study, and no two
    labels of a figure share both. ``line`` series get a shaded CI band, ``points``/``errorbar``/
    ``bar`` series error bars. Reference lines (``Panel.hlines``) are drawn in grey dash patterns
    (dotted in the method's colour when the label names a method) and labelled in the legend, never
    on the data. Log axes are labelled with plain numbers where they are short.
    """
    plt = _import_pyplot()
    styles = figure_styles([(s.label, s.linestyle, s.style) for p in fig.panels for s in p.series])
    drawn = {(st.colour, st.linestyle if st.linestyle is not None else _SERIES_LINESTYLES[s.linestyle])
             for p in fig.panels for s in p.series for st in (styles[s.label],)}
    n = len(fig.panels)
    ncols = min(fig.ncols, n)
    nrows = math.ceil(n / ncols)
    f, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.0 * nrows + 0.6), squeeze=False)
    handles: dict[str, Any] = {}
    references: dict[str, Any] = {}
    ref_styles: dict[str, Style] = {}
    for k, p in enumerate(fig.panels):
        ax = axes[k // ncols][k % ncols]
        nbars = sum(s.style == "bar" for s in p.series)
        bar_k = 0
        for s in p.series:
            st = styles[s.label]
            c = st.colour
            ls = st.linestyle if st.linestyle is not None else _SERIES_LINESTYLES[s.linestyle]
            yerr = None
            if s.low is not None:
                yerr = [[max(y - lo, 0.0) if math.isfinite(lo) else 0.0 for y, lo in zip(s.y, s.low)],
                        [max(hi - y, 0.0) if math.isfinite(hi) else 0.0 for y, hi in zip(s.y, s.high)]]
            if s.style == "line":
                (h,) = ax.plot(s.x, s.y, color=c, linestyle=ls, lw=1.8, label=s.label)
                if s.low is not None:
                    ax.fill_between(s.x, s.low, s.high, color=c, alpha=0.15, lw=0)
            elif s.style == "points":
                h = ax.errorbar(s.x, s.y, yerr=yerr, fmt="o", color=c, ms=6, capsize=3, label=s.label)
            elif s.style == "errorbar":
                h = ax.errorbar(s.x, s.y, yerr=yerr, marker="o", linestyle=ls, color=c, ms=5, capsize=3, lw=1.5,
                                label=s.label)
            else:  # bar
                width = 0.8 / max(nbars, 1)
                xs = [x - 0.4 + width * (bar_k + 0.5) for x in s.x]
                h = ax.bar(xs, s.y, width=width, yerr=yerr, color=c, capsize=3, label=s.label)
                bar_k += 1
            handles.setdefault(s.label, h)
        # an unlabelled line is the partner of the panel's labelled one (the other edge of a band)
        partner = next((lbl for _, lbl in p.hlines if lbl), None)
        for y, lbl in p.hlines:
            key = lbl or partner or f"(unlabelled line at {y!r})"
            if key not in ref_styles:
                greys = sum(canonical_method(k)[0] is None or not canonical_method(k)[1] for k in ref_styles)
                ref_styles[key] = reference_style(key if key == partner else lbl, greys, drawn)
            st = ref_styles[key]
            h = ax.axhline(y, color=st.colour, linestyle=st.linestyle, lw=1.2, zorder=1.5)
            if lbl:
                references.setdefault(lbl if lbl not in styles else f"{lbl} (reference)", h)
        ax.set_xscale(p.xscale)
        ax.set_yscale(p.yscale)
        for axis, scale in ((ax.xaxis, p.xscale), (ax.yaxis, p.yscale)):
            if scale == "log":
                axis.set_major_formatter(plain_log_formatter())
                axis.set_minor_formatter(plain_log_formatter())
        if p.xticklabels is not None:
            ax.set_xticks(range(len(p.xticklabels)))
            ax.set_xticklabels(p.xticklabels, rotation=30 if len(p.xticklabels) > 4 else 0, ha="right"
                               if len(p.xticklabels) > 4 else "center", fontsize=8)
        ax.set_xlabel(p.xlabel)
        ax.set_ylabel(p.ylabel)
        ax.set_title(p.title, fontsize=10)
        ax.grid(True, alpha=0.3, which="both" if "log" in (p.xscale, p.yscale) else "major")
    for k in range(n, nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    f.suptitle(fig.title, fontsize=12)
    entries = {**handles, **{k: v for k, v in references.items() if k not in handles}}
    if entries:
        per_row = 5 if max(len(k) for k in entries) <= 24 else 3
        f.legend(list(entries.values()), list(entries.keys()), loc="lower center",
                 ncol=min(len(entries), per_row), fontsize=8, frameon=False)
        bottom = 0.04 + 0.035 * math.ceil(len(entries) / per_row) + (0.02 if nrows == 1 else 0.0)
    else:
        bottom = 0.03
    f.tight_layout(rect=(0, bottom, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    f.savefig(path, dpi=110)
    plt.close(f)


def _study_markdown(run: StudyRun, figure_files: dict[str, str]) -> str:
    res = run.result
    parts = [f"## `{run.name}`: {_md_escape(res.title if res else run.name)}", ""]
    if run.error:
        return "\n".join(parts + [f"**The study failed:** {_md_escape(run.error)}", ""])
    timing = f"Scale `{run.scale}`, seeds {list(res.seeds)}; {sum(run.task_seconds):.1f} s of task time."
    parts += [res.summary, "", timing, ""]
    if res.claims and run.scale == "quick":
        parts += [claims_markdown(res.claims, smoke=True), "", SMOKE_NOTE, ""]
    elif res.claims:
        parts += [claims_markdown(res.claims), "", "Reasons:", ""]
        parts += [f"- `{c.key}` ({c.verdict}): {_md_escape(c.reason)}" for c in res.claims]
        parts.append("")
    for t in res.tables:
        parts += [_table_markdown(t), ""]
    for fig in res.figures:
        fname = figure_files.get(fig.name)
        if fname:
            parts += [f"![{_md_escape(fig.title)}]({fname})", ""]
        if fig.caption:
            parts += [f"*{_md_escape(fig.caption)}*", ""]
    return "\n".join(parts)


def write_outputs(runs: Sequence[StudyRun], out: Path, *, plots: bool = True, command: str = "",
                  wall_seconds: float | None = None) -> dict[str, Path]:
    """Write ``results.json``, ``timings.json``, ``report.md``, ``claims.json`` and the figures into
    ``out`` (``wall_seconds``: the whole run's wall time, recorded in ``claims.json``).

    Returns the paths written, by kind (``"results"``, ``"timings"``, ``"report"``, ``"claims"`` and
    ``"<study>_<figure>"`` for each PNG).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    figure_files: dict[str, dict[str, str]] = {}
    for run in runs:
        figure_files[run.name] = {}
        if run.result is None or not plots:
            continue
        for fig in run.result.figures:
            fname = f"{run.name}_{fig.name}.png"
            render_figure(fig, out / fname)
            figure_files[run.name][fig.name] = fname
            written[f"{run.name}_{fig.name}"] = out / fname
    smoke = is_smoke(runs)
    results = {
        "versions": versions(),
        "smoke": smoke,
        **({"note": SMOKE_NOTE} if smoke else {}),
        "studies": {
            run.name: {
                "scale": run.scale,
                "config": run.config,
                "seeds": list(run.seeds),
                "error": run.error,
                "result": {**run.result.to_dict(), "claims": _claim_dicts(run)} if run.result else None,
            }
            for run in runs
        },
    }
    (out / "results.json").write_text(json.dumps(to_jsonable(results), indent=1, allow_nan=False) + "\n")
    written["results"] = out / "results.json"
    timings = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "studies": {run.name: {"wall_seconds": run.wall_seconds, "task_seconds": run.task_seconds}
                    for run in runs},
    }
    (out / "timings.json").write_text(json.dumps(to_jsonable(timings), indent=1) + "\n")
    written["timings"] = out / "timings.json"
    vers = ", ".join(f"{k} {v}" for k, v in versions().items())
    head = [
        "# robust-rollouts study report",
        "",
        (f"Command: `{command or 'robust-rollouts study'}`. Versions: {vers}. "
         f"Machine: {platform.machine()}, {_cpu_count()} CPUs."),
        "",
        *([f"**{SMOKE_NOTE}**", ""] if smoke else []),
        ("Every verdict below is computed by the code from a 95 % confidence interval over seeds "
         "(Student t): *holds* when the interval lies on the claimed side, *does not hold* when it "
         "lies on the other side, *inconclusive* when it straddles the threshold. A comparative claim "
         "carries a positive control from the same run, in the claim's units: an effect the regime is "
         "known to be able to produce. When the control's interval does not lie on the claimed side "
         "or its effect is below the claim's minimum detectable effect (MDE: the true effect the "
         "claim's own test detects with 80 % power, (t_0.975 + t_0.80) x standard error), the regime "
         "cannot show the effect and the verdict is *under-powered*, whatever the claim's interval "
         "says. *Assumption checks* test a paper's modelling assumption on the simulator, not a claim "
         "about a method; *project checks* test this project's own machinery."),
        "",
        "" if smoke else family_note([c for r in runs if r.result for c in r.result.claims]),
        "",
        "## All claims",
        "",
        claims_markdown([c for r in runs if r.result for c in r.result.claims], smoke=smoke),
        "",
    ]
    failed = [r for r in runs if r.error]
    if failed:
        head += ["**Failed studies:** " + "; ".join(f"`{r.name}`: {_md_escape(r.error)}" for r in failed), ""]
    body = [_study_markdown(r, figure_files[r.name]) for r in runs]
    (out / "report.md").write_text("\n".join(head + body))
    written["report"] = out / "report.md"
    write_claims(runs, out / "claims.json", command=command, wall_seconds=wall_seconds)
    written["claims"] = out / "claims.json"
    return written


def _cpu_count() -> int:
    return os.cpu_count() or 1


def load_results(path: Path) -> dict:
    """Read a ``results.json`` written by :func:`write_outputs`."""
    return json.loads(Path(path).read_text())
