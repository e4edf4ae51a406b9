"""The ``robust-rollouts`` console script.

Subcommands:
  study  run the papers' claims on simulators (the main job): seeds, 95 % confidence intervals and
         verdicts computed in code; prints the claims table and writes ``report.md``,
         ``results.json``, ``timings.json`` and PNG figures to ``--out``
         (:mod:`benchmarks.study_runner`, :mod:`benchmarks.study_report`).
  train  GRPO on a small transformer with a rollout controller (:mod:`llm_bridge.cli`; needs the
         ``llm`` extra).
  replay evaluate every controller offline on a rollout log of a real run (``step,prompt_id,n,
         successes`` per prompt and step; CSV, JSON Lines or Parquet): the GDRO eq. 19 variance
         proxy relative to uniform, the share of rollouts in all-equal groups and the rollouts per
         difficulty band; prints a table and writes ``replay.json``, ``replay.md`` and PNGs to
         ``--out`` (:mod:`sim.replay`, :mod:`benchmarks.replay_report`).
  perf   run the performance suites (all by default), print a table with ratios against peers
         measured in the same run and the verdicts on this project's performance targets
         (:mod:`benchmarks.targets`), and write JSON, markdown and log-log PNGs to ``--out``;
         ``perf --from-json perf.json`` redraws the tables and figures of a saved run without
         timing anything.

Every subcommand checks its output folder (``--out``) before any work: a folder that cannot be
created or written, or a path naming an existing file, is reported in one line with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from pathlib import Path

from llm_bridge.cli import add_train_parser, output_dir_error

from .harness import Measurement, PerfConfig
from .report import (
    coldstart_table,
    markdown_table,
    plot_coldstart,
    plot_scaling,
    write_json,
)
from .suites import SUITES, load_suite
from .targets import check_targets, targets_table


def _fail(command: str, message: str) -> int:
    print(f"robust-rollouts {command}: error: {message}", file=sys.stderr)
    return 2


def _cmd_perf(args: argparse.Namespace) -> int:
    if args.list:
        for name in SUITES:
            print(f"{name:12s} {load_suite(name).DESCRIPTION}")
        return 0
    names = args.suite or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; valid: {list(SUITES)}", file=sys.stderr)
        return 2
    problem = output_dir_error(args.out)
    if problem:
        return _fail("perf", problem)
    if args.from_json:
        return _render_perf(args.from_json, Path(args.out), args.suite)
    missing = [m for m in ("cvxpy", "clarabel") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"robust-rollouts perf measures peers beside our solvers and needs {missing}: "
            'pip install "robust-rollouts[bench]" (or ".[bench]" from a clone)',
            file=sys.stderr,
        )
        return 2
    cfg = PerfConfig(quick=args.quick, target_s=args.target_s, max_peer_call_s=args.max_peer_call_s)
    out = Path(args.out)
    rows = []
    t_start = time.perf_counter()
    for i, name in enumerate(names, 1):
        suite = load_suite(name)
        cfg.log(f"[{i}/{len(names)}] suite {name}: {suite.DESCRIPTION}")
        t0 = time.perf_counter()
        suite_rows = suite.run(cfg)
        rows.extend(suite_rows)
        cfg.log(f"[{i}/{len(names)}] suite {name} done in {time.perf_counter() - t0:.1f} s")
        if _plot_suite(name, suite_rows, out):
            cfg.log(f"  wrote {out / f'perf_{name}.png'}")
    table, targets, verdicts = _perf_tables(rows, out)
    extra = {
        "quick": args.quick,
        "suites": names,
        "targets": [
            {"target": r.target.label, "required": r.target.describe(), "ours_s": r.ours_s, "peer_s": r.peer_s,
             "peak_mib": r.peak_mib, "met": r.met}
            for r in verdicts
        ],
    }
    write_json(rows, out / "perf.json", extra=extra)
    cfg.log(f"total {time.perf_counter() - t_start:.1f} s; wrote {out / 'perf.json'}, {out / 'perf.md'}"
            + (f" and {out / 'targets.md'}" if targets else ""))
    return 0


def _plot_suite(name: str, rows: list[Measurement], out: Path) -> bool:
    path = out / f"perf_{name}.png"
    return plot_coldstart(rows, path) if name == "coldstart" else plot_scaling(rows, name, path)


def _perf_tables(rows: list[Measurement], out: Path) -> tuple[str, str, list]:
    """Print the perf table and the targets' verdicts; write ``perf.md`` and ``targets.md``."""
    table = markdown_table(rows)
    cold = coldstart_table(rows)
    if cold:
        table += "\n\nCold start: first call of each entry point in a fresh interpreter (suite coldstart)\n\n" + cold
    print(table)
    verdicts = [r for r in check_targets(rows) if r.met is not None]
    targets = targets_table(verdicts) if verdicts else ""
    if targets:
        print("\nThis project's performance targets (benchmarks/targets.py), as measured in this run:\n" + targets)
        (out / "targets.md").write_text(targets + "\n")
    (out / "perf.md").write_text(table + "\n")
    return table, targets, verdicts


def _render_perf(path: str, out: Path, suites: list[str] | None) -> int:
    """``perf --from-json``: redraw ``perf.md``, ``targets.md`` and the PNGs of a saved run."""
    import json

    try:
        doc = json.loads(Path(path).read_text())
        rows = [Measurement(**r) for r in doc["results"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _fail("perf", f"--from-json {path!r} is not a perf.json written by robust-rollouts perf: {exc}")
    names = list(dict.fromkeys(m.suite for m in rows if not suites or m.suite in suites))
    rows = [m for m in rows if m.suite in names]
    for name in names:
        if _plot_suite(name, [m for m in rows if m.suite == name], out):
            print(f"wrote {out / f'perf_{name}.png'}", file=sys.stderr)
    _perf_tables(rows, out)
    print(f"redrawn from {path} (nothing timed); wrote {out / 'perf.md'}", file=sys.stderr)
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from .study_report import SMOKE_NOTE, summary_table, write_outputs
    from .study_runner import DEFAULT_STUDIES, STUDIES, load_study, run_studies

    if args.list:
        for name in STUDIES:
            try:
                title = load_study(name).TITLE
            except ImportError as exc:  # an optional dependency of this study is missing
                title = f"(unavailable: {exc})"
            print(f"{name:18s} {'default ' if name in DEFAULT_STUDIES else 'optional'} {title}")
        return 0
    names = args.names or list(DEFAULT_STUDIES)
    if not names:
        print("no studies registered", file=sys.stderr)
        return 2
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        print(f"unknown study(ies) {unknown}; valid: {list(STUDIES)}", file=sys.stderr)
        return 2
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('drawing the figures needs matplotlib: pip install "robust-rollouts[plot]" '
                  "(or pass --no-plots)", file=sys.stderr)
            return 2
    problem = output_dir_error(args.out)
    if problem:
        return _fail("study", problem)
    scale = "quick" if args.quick else "full" if args.full else "default"
    out = Path(args.out)
    t0 = time.perf_counter()
    print(f"robust-rollouts study: {', '.join(names)} ({scale} scale, {args.jobs} worker(s)); output in {out}/",
          file=sys.stderr)
    if args.quick:
        print(SMOKE_NOTE, file=sys.stderr)
    runs = run_studies(names, scale=scale, seeds=args.seeds, jobs=args.jobs, progress=not args.no_progress,
                       log=lambda line: print(line, file=sys.stderr))
    command = "robust-rollouts study" + "".join(f" {a}" for a in (args.argv or []))
    written = write_outputs(runs, out, plots=not args.no_plots, command=command.strip(),
                            wall_seconds=time.perf_counter() - t0)
    print(summary_table(runs))
    print(f"\nwrote {written['report']}, {written['claims']}, {written['results']} and {len(written) - 4} "
          f"figure(s) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 1 if any(r.error for r in runs) else 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from sim.replay import replay
    from sim.rollout_log import read_rollout_log

    from .replay_report import replay_table, write_replay

    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('drawing the figures needs matplotlib: pip install "robust-rollouts[plot]" '
                  "(or pass --no-plots)", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    try:
        log = read_rollout_log(args.log)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"robust-rollouts replay: {exc}", file=sys.stderr)
        return 2
    t_read = time.perf_counter() - t0
    print(f"robust-rollouts replay: {log.n_rows} rows, {log.steps.size} steps, {log.n_prompts} prompts read in "
          f"{t_read:.2f} s from {args.log}", file=sys.stderr)
    try:
        result = replay(log, controllers=args.controller, mean_budget=args.mean_budget, lower=args.lower,
                        upper=args.upper, seed=args.seed, smoothing=args.smoothing, jobs=args.jobs,
                        log_progress=(lambda line: print(line, file=sys.stderr)) if not args.quiet else None)
    except (ValueError, TypeError) as exc:
        print(f"robust-rollouts replay: {exc}", file=sys.stderr)
        return 2
    t_replay = time.perf_counter() - t0 - t_read
    command = "robust-rollouts replay" + "".join(f" {a}" for a in (args.argv or []))
    written = write_replay(result, Path(args.out), plots=not args.no_plots, command=command.strip(),
                           timings={"read": t_read, "replay": t_replay})
    print(replay_table(result))
    print(f"\nwrote {written['json']}, {written['markdown']} and {len(written) - 2} figure(s) in "
          f"{time.perf_counter() - t0:.1f} s (read {t_read:.2f} s, replay {t_replay:.2f} s)", file=sys.stderr)
    return 0


def _smoothing(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (0.0 <= v < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text}")
    return v


def package_version() -> str:
    """The installed distribution's version; read from pyproject.toml when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robust-rollouts")
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            import re

            match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.MULTILINE)
            if match:
                return match.group(1) + " (not installed)"
        except OSError:
            pass
        return "unknown (not installed)"


def _seed_spec(text: str) -> int | tuple[int, ...]:
    from solvers.claims import parse_seeds

    try:
        return parse_seeds(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-rollouts",
        description="Exact, fast solvers and online learners for robust rollout allocation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    study = sub.add_parser("study", help="check the papers' claims on simulators (the main job)")
    study.add_argument("names", nargs="*", metavar="NAME", help="studies to run (default: all default studies)")
    scale = study.add_mutually_exclusive_group()
    scale.add_argument("--quick", action="store_true", help="small configurations (seconds; a smoke run)")
    scale.add_argument("--full", action="store_true", help="more seeds and longer runs")
    study.add_argument("--seeds", type=_seed_spec,
                       help="seeds per study: a count (10 -> seeds 0-9), a range (101-110) or a list (3,5,8) "
                            "(default: each study's own count); recorded in claims.json")
    study.add_argument("--out", default="study-results", help="output folder (default: study-results)")
    study.add_argument("--jobs", type=_non_negative_int, default=min(2, os.cpu_count() or 1),
                       help="worker processes (default: min(2, CPUs); 0 runs in this process)")
    study.add_argument("--no-plots", action="store_true", help="skip the PNG figures (no matplotlib needed)")
    study.add_argument("--no-progress", action="store_true", help="no progress bar")
    study.add_argument("--list", action="store_true", help="list the studies and exit")
    study.set_defaults(func=_cmd_study)
    add_train_parser(sub)
    rep = sub.add_parser("replay", help="evaluate every controller offline on your own rollout log")
    rep.add_argument("log", metavar="LOG", help="a .csv, .jsonl or .parquet file with the columns step, prompt_id, n, "
                                                "successes (one row per prompt and step; extra columns allowed)")
    rep.add_argument("--out", default="replay-results", help="output folder (default: replay-results)")
    rep.add_argument("--controller", action="append",
                     help="controller to replay (repeatable; default: every registered controller)")
    rep.add_argument("--mean-budget", type=_positive_int,
                     help="rollouts per prompt for the controllers (default: the log's mean n, rounded)")
    rep.add_argument("--lower", type=_positive_int, help="smallest rollouts per prompt (default: min(2, mean budget))")
    rep.add_argument("--upper", type=_positive_int, help="largest rollouts per prompt (default: 3 x mean budget)")
    rep.add_argument("--seed", type=_non_negative_int, default=0,
                     help="seed of the controllers and the counterfactual outcomes (default 0)")
    rep.add_argument("--smoothing", type=_smoothing, default=0.5,
                     help="weight of a prompt's neighbouring visits in its success-rate estimate, in [0, 1) "
                          "(default 0.5)")
    rep.add_argument("--jobs", type=_non_negative_int, default=min(4, os.cpu_count() or 1),
                     help="worker processes, one controller per task (default: min(4, CPUs); 0: this process)")
    rep.add_argument("--no-plots", action="store_true", help="skip the PNG figures (no matplotlib needed)")
    rep.add_argument("--quiet", action="store_true", help="no per-controller progress lines")
    rep.set_defaults(func=_cmd_replay)
    perf = sub.add_parser("perf", help="run the performance benchmarks against peers")
    perf.add_argument("--suite", action="append", help=f"suite to run (repeatable); one of {list(SUITES)}")
    perf.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
    perf.add_argument("--out", default="perf-results", help="output folder (default: perf-results)")
    perf.add_argument("--target-s", type=_positive_float, default=0.5,
                      help="seconds spent timing each case (a positive number)")
    perf.add_argument("--max-peer-call-s", type=_positive_float, default=5.0,
                      help="skip a peer at larger sizes once a call exceeds this many seconds (a positive number)")
    perf.add_argument("--list", action="store_true", help="list the suites and exit")
    perf.add_argument("--from-json", metavar="PERF_JSON",
                      help="time nothing: redraw the tables and figures of a saved perf.json into --out")
    perf.set_defaults(func=_cmd_perf)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
