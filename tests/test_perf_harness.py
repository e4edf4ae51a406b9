"""Tests for the benchmark harness, report writer and the ``robust-rollouts`` CLI (not timings)."""

import json
import time

import pytest

from benchmarks import cli
from benchmarks.harness import Measurement, PeerGate, PerfConfig, measure, time_call
from benchmarks.report import (
    case_family,
    coldstart_table,
    markdown_table,
    plot_coldstart,
    plot_scaling,
    size_label,
    write_json,
)
from benchmarks.suites import SUITES, load_suite
from benchmarks.targets import TARGETS, Target, check_targets, targets_table


def quiet_cfg(**kw):
    return PerfConfig(progress=lambda msg: None, **kw)


def test_time_call_counts_and_orders_quantiles():
    calls = []
    med, q25, q75, n = time_call(lambda: calls.append(1), target_s=0.01, min_repeats=7)
    assert n >= 7
    assert len(calls) == n + 1  # one untimed warm-up call
    assert 0 <= q25 <= med <= q75


def test_peer_gate_skips_after_a_slow_call():
    cfg = quiet_cfg(max_peer_call_s=0.01)
    gate = PeerGate(cfg)
    slow = measure(cfg, suite="s", case="c", size=1, impl="peer", role="peer",
                   fn=lambda: time.sleep(0.02), gate=gate)
    assert slow.repeats == 1 and slow.median_s >= 0.02
    skipped = measure(cfg, suite="s", case="c", size=2, impl="peer", role="peer",
                      fn=lambda: None, gate=gate)
    assert skipped.median_s is None and "skipped" in skipped.note


def test_markdown_table_ratio_is_peer_over_ours():
    rows = [
        Measurement("s", "c", 10, "ours", "ours", 1e-6, 1e-6, 1e-6, 10, compile_s=0.5),
        Measurement("s", "c", 10, "peer", "peer", 2.5e-3, 2e-3, 3e-3, 10),
        Measurement("s", "c", 20, "peer", "peer", None, note="skipped: too slow"),
    ]
    table = markdown_table(rows)
    assert "2,500.0x" in table
    assert "| ref |" in table
    assert "skipped: too slow" in table
    assert "500.00 ms" in table  # compile time shown in its own column


def test_plot_and_json(tmp_path):
    rows = [
        Measurement("s", "c", n, "ours", "ours", 1e-6 * n, repeats=5) for n in (10, 100, 1000)
    ]
    assert plot_scaling(rows, "s", tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    # a series measured at one size is drawn as a marker, not dropped
    assert plot_scaling(rows[:1], "s", tmp_path / "q.png")
    # nothing with a numeric size and a time: no figure
    assert not plot_scaling([Measurement("s", "c", "fresh interpreter", "ours", "ours", 1.0)], "s",
                            tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()
    write_json(rows, tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["machine"]["cpu_count"] >= 1 and len(data["results"]) == 3


def test_plot_with_peers_floors_and_references(tmp_path):
    """Ratio panel, single-size peer, floor and reported rows: all drawn, no exception."""
    rows = [Measurement("predictor", "gp update+predict", n, "ours", "ours", 1e-6 * n) for n in (10, 100)]
    rows += [
        Measurement("predictor", "gp update+predict", 100, "dense", "peer", 1e-2),
        Measurement("predictor", "kernel-column GEMM floor", 10, "gemm", "ours", 1e-6),
        Measurement("predictor", "kernel-column GEMM floor", 100, "gemm", "ours", 1e-5),
        Measurement("predictor", "dense kernel build (one-off)", 100, "build", "peer", 1.0),
        Measurement("predictor", "baselines update+predict", 100, "ma", "ours", 1e-5),
    ]
    assert plot_scaling(rows, "predictor", tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_names_its_size_axis(name):
    assert size_label(name, case_family(name, "x")) != "problem size"


def test_coldstart_table_plot_and_target(tmp_path):
    from benchmarks.suites.coldstart import COLD, ENTRY_POINTS, SIZE, WARM, snippet

    rows = [
        Measurement("coldstart", "allocate (rloo, continuous)", SIZE, COLD, "ours", 6.0, note="import 1.00 s (x)"),
        Measurement("coldstart", "allocate (rloo, continuous)", SIZE, WARM, "cached", 0.25, note="import 0.90 s (x)"),
        Measurement("coldstart", "waterfill", SIZE, COLD, "ours", None, note="measurement failed"),
    ]
    table = coldstart_table(rows)
    assert "| allocate (rloo, continuous) | 6.000 | 0.250 | 24.0x | 1.00 / 0.90 |" in table  # warm: a speed-up
    assert "| waterfill | failed | failed | - | - / - |" in table
    assert coldstart_table(rows[:0]) == ""
    assert plot_coldstart(rows, tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 1000
    assert not plot_scaling(rows, "coldstart", tmp_path / "s.png")
    (target,) = [t for t in TARGETS if t.suite == "coldstart"]
    (verdict,) = check_targets(rows, (target,))
    assert verdict.met is False and verdict.ours_s == 6.0 and target.max_s == 5.0
    compile(snippet(list(ENTRY_POINTS)), "<coldstart>", "exec")  # every entry point's snippet is valid Python


def test_cli_lists_suites_and_rejects_unknown(capsys):
    assert cli.main(["perf", "--list"]) == 0
    out = capsys.readouterr().out
    for name in SUITES:
        assert name in out
    assert cli.main(["perf", "--suite", "no-such-suite"]) == 2
    assert "unknown suite" in capsys.readouterr().err


def test_load_suite_error_lists_valid_names():
    with pytest.raises(ValueError, match="unknown suite 'nope'; valid suites"):
        load_suite("nope")


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_exposes_the_protocol(name):
    mod = load_suite(name)
    assert mod.NAME == name
    assert isinstance(mod.DESCRIPTION, str) and mod.DESCRIPTION
    assert callable(mod.run)


def test_targets_verdicts_met_missed_and_not_run():
    """A target is met only when every threshold holds; missing rows give 'not run', not a pass."""
    t = Target("x", "s", "c", 10, "ours", max_s=1e-3, peer="peer", min_ratio=100.0)
    ours = Measurement("s", "c", 10, "ours", "ours", 1e-4, repeats=5)
    fast_peer = Measurement("s", "c", 10, "peer", "peer", 5e-3, repeats=5)  # 50x: too close
    slow_peer = Measurement("s", "c", 10, "peer", "peer", 5e-2, repeats=5)  # 500x
    assert check_targets([ours, slow_peer], (t,))[0].met is True
    missed = check_targets([ours, fast_peer], (t,))[0]
    assert missed.met is False and missed.ratio == 50.0
    assert check_targets([ours], (t,))[0].met is None
    slow_ours = Measurement("s", "c", 10, "ours", "ours", 2e-3, repeats=5)
    assert check_targets([slow_ours, Measurement("s", "c", 10, "peer", "peer", 1.0)], (t,))[0].met is False
    table = targets_table(check_targets([ours, fast_peer], (t,)))
    assert "**no**" in table and "50x" in table and ">= 100x faster than peer" in table


def test_committed_results_cover_every_target_and_match_the_readme():
    """The full run committed in benchmarks/results/ has the rows of every performance target (a renamed
    case or implementation would turn a target into 'not run'), its verdicts reproduce the
    committed targets.md, and the README's targets table is that file (no hand-edited numbers)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = json.loads((root / "benchmarks" / "results" / "perf.json").read_text())
    assert data["quick"] is False
    rows = [Measurement(**r) for r in data["results"]]
    # targets of suites that need an optional extra (the llm suite) may be absent from the run
    measured = {(m.suite, m.case) for m in rows}
    targets = tuple(t for t in TARGETS if t.extra is None or (t.suite, t.case) in measured)
    results = check_targets(rows, targets)
    for t, r in zip(targets, results):
        assert t.suite in SUITES, t
        assert r.met is not None, f"the committed run has no rows for target {t.label!r}"
    table = targets_table(results)
    assert table == (root / "benchmarks" / "results" / "targets.md").read_text().strip()
    assert table in (root / "README.md").read_text()


def test_table_says_faster_or_slower_and_phases_as_shares():
    """A warm start shown as '0.1x' of the cold one read as slower: every comparison is in words."""
    rows = [
        Measurement("coldstart", "allocate", "fresh interpreter", "cold", "ours", 3.0),
        Measurement("coldstart", "allocate", "fresh interpreter", "warm", "cached", 0.4),
        Measurement("llm", "GRPO step", 128, "full step", "ours", 0.1),
        Measurement("llm", "GRPO step", 128, "phase: generate", "phase", 0.03),
        Measurement("llm", "trainer set-up, empty warm-start cache", 1, "Trainer()", "ours", 24.0),
    ]
    table = markdown_table(rows)
    (warm,) = [line for line in table.splitlines() if "| warm |" in line]
    assert warm.endswith("| 7.5x faster |")  # not "0.1x"
    assert "30.0 % of ref" in table and "0.1x" not in table and "0.3x" not in table
    assert "| llm | trainer set-up, empty warm-start cache | once |" in table  # no size on a one-off
    assert "*vs ref*" in table


def test_one_off_set_up_is_not_drawn_on_a_size_axis(tmp_path):
    from benchmarks.report import is_one_off

    setup = Measurement("llm", "trainer set-up, empty warm-start cache", 1, "Trainer()", "ours", 24.0)
    step = Measurement("llm", "GRPO step (uniform)", 128, "full step", "ours", 0.1)
    assert is_one_off(setup) and not is_one_off(step)
    assert not plot_scaling([setup], "llm", tmp_path / "a.png")  # nothing with a size: no figure
    assert plot_scaling([setup, step], "llm", tmp_path / "b.png")


def test_perf_from_json_redraws_without_timing(tmp_path, capsys, monkeypatch):
    rows = [Measurement("sim", "step", n, "ours", "ours", 1e-6 * n, repeats=3) for n in (10, 100)]
    rows.append(Measurement("sim", "step", 100, "numpy loop", "peer", 1e-3, repeats=3))
    write_json(rows, tmp_path / "perf.json")
    monkeypatch.setattr(cli, "load_suite", lambda name: pytest.fail("perf --from-json timed something"))
    out = tmp_path / "out"
    assert cli.main(["perf", "--from-json", str(tmp_path / "perf.json"), "--out", str(out)]) == 0
    assert (out / "perf_sim.png").stat().st_size > 1000 and "10.0x slower" in (out / "perf.md").read_text()
    capsys.readouterr()
    assert cli.main(["perf", "--from-json", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "--from-json" in capsys.readouterr().err


def test_a_suite_measured_at_one_size_is_drawn_as_bars(tmp_path, monkeypatch):
    """A size axis holding one column of points says nothing: one size and no peer draws bars, one
    per (case, implementation); a suite with several sizes keeps the scaling plot."""
    pytest.importorskip("matplotlib")
    from benchmarks import report

    calls = []
    real = report._plot_one_size
    monkeypatch.setattr(report, "_plot_one_size", lambda *a: calls.append(a[2]) or real(*a))
    one = [Measurement("replay", "replay: one controller", 1_000_000, name, "ours", t)
           for name, t in (("uniform", 0.4), ("vip", 0.7), ("rollout-gdro", 2.7))]
    assert report.plot_scaling(one, "replay", tmp_path / "one.png") and calls == ["replay"]
    assert (tmp_path / "one.png").stat().st_size > 0
    many = one + [Measurement("replay", "replay: one controller", 10_000, "uniform", "ours", 0.01)]
    assert report.plot_scaling(many, "replay", tmp_path / "many.png") and calls == ["replay"]
