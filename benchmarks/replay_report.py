"""Render a log replay (:func:`sim.replay.replay`): ``replay.json``, ``replay.md``, PNG figures and
a terminal table. The numbers come from :mod:`sim.replay`; this module only formats them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from solvers.claims import to_jsonable

from .study_report import _table_markdown, render_figure, versions

__all__ = ["replay_table", "write_replay"]


def replay_table(result: Any) -> str:
    """Plain-text table of the main measures (for the terminal)."""
    rows = [("controller", "VarProxy/uniform", "all-equal", "spent/budget", "skipped", "trained", "seconds")]
    for name, r in result.rows.items():
        rows.append((name, _num(r.proxy_ratio), _num(r.all_equal_share), _num(r.rollouts / r.budget),
                     _num(r.skipped_share), _num(r.trained_share), "-" if name == "logged" else f"{r.seconds:.2f}"))
    for name, why in result.not_run.items():
        rows.append((name, "not run", why[:48], "", "", "", ""))
    widths = [max(len(str(r[k])) for r in rows) for k in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(str(v).ljust(widths[k]) for k, v in enumerate(r)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _num(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3f}"


def write_replay(result: Any, out: Path, *, plots: bool = True, command: str = "", timings: dict | None = None) -> dict:
    """Write ``replay.json``, ``replay.md`` and (``plots``) the PNG figures to ``out``; returns
    the paths written by kind."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": command or "robust-rollouts replay", "versions": versions(), **result.to_jsonable()}
    if timings:
        doc["seconds"] = {**doc["seconds"], **timings}
    written: dict[str, Path] = {}
    path = out / "replay.json"
    path.write_text(json.dumps(to_jsonable(doc), indent=1, allow_nan=False) + "\n")
    written["json"] = path
    figures = {}
    if plots:
        for fig in result.figures():
            p = out / f"{fig.name}.png"
            render_figure(fig, p)
            figures[fig.name] = p
            written[fig.name] = p
    ls, cfg = result.log_summary, result.config
    about = (f"{ls['rows']} rows, {ls['steps']} steps, {ls['prompts']} prompts, {ls['rollouts']} rollouts (mean "
             f"{ls['mean_n']:.3g} per prompt, success rate {ls['mean_success_rate']:.3g}). Controllers at "
             f"{cfg['mean_budget']} rollouts per prompt in [{cfg['lower']}, {cfg['upper']}], seed {cfg['seed']}, "
             f"smoothing {cfg['smoothing']}.")
    lines = [f"# Replay of `{ls['source']}`", "", f"Command: `{doc['command']}`", "", about, ""]
    for t in result.tables():
        lines += [_table_markdown(t), ""]
    for fig in result.figures() if plots else []:
        lines += [f"![{fig.title}]({figures[fig.name].name})", "", fig.caption, ""]
    secs = doc["seconds"]
    lines += [f"Timing: success-rate estimate {secs['estimate']:.2f} s, controllers {secs['controllers_wall']:.2f} s "
              "(wall)" + "".join(f", {k} {v:.2f} s" for k, v in (timings or {}).items()) + "."]
    path = out / "replay.md"
    path.write_text("\n".join(lines) + "\n")
    written["markdown"] = path
    return written
