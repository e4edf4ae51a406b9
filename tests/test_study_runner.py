"""The study runner and report writer, driven by a small real study (tests/_coin_study.py)."""

import json

import _coin_study
import pytest

from benchmarks import cli
from benchmarks.study_report import write_outputs
from benchmarks.study_runner import STUDIES, load_study, run_studies, run_study

COIN = "coin"


@pytest.fixture(autouse=True)
def _register_coin(monkeypatch):
    monkeypatch.setitem(STUDIES, COIN, "_coin_study")


def test_run_study_in_process_gives_claims_and_is_deterministic():
    a = run_study(COIN, scale="quick")
    b = run_study(COIN, scale="quick")
    assert a.to_dict() == b.to_dict()
    assert a.seeds == (0, 1, 2)
    claim, beats = a.claims
    assert claim.verdict == "holds" and claim.estimate.low > 0.5
    assert beats.control is not None and beats.control.passes


def test_worker_pool_gives_the_same_results_as_in_process():
    (pooled,) = run_studies([COIN], scale="quick", seeds=4, jobs=2, progress=False, log=lambda s: None)
    inproc = run_study(COIN, scale="quick", seeds=4)
    assert pooled.error is None
    assert pooled.result.to_dict() == inproc.to_dict()
    assert len(pooled.task_seconds) == 4 and all(t >= 0 for t in pooled.task_seconds)


def test_a_failing_task_is_reported_and_does_not_stop_other_studies(monkeypatch):
    monkeypatch.setattr(_coin_study, "config", lambda scale: {"seeds": 3, "p": 0.7, "flips": 50, "fail_seed": 1})
    lines = []
    runs = run_studies([COIN, COIN], scale="quick", jobs=0, progress=False, log=lines.append)
    assert all(r.result is None and "deliberate failure" in r.error for r in runs)
    assert len(lines) == 2 and "failed" in lines[0]
    with pytest.raises(RuntimeError, match="deliberate failure"):
        run_study(COIN, scale="quick")


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        load_study("nope")
    with pytest.raises(ValueError, match="scale must be one of"):
        run_studies([COIN], scale="huge", jobs=0)
    with pytest.raises(ValueError, match="seeds must be a positive integer"):
        run_studies([COIN], seeds=0, jobs=0)
    with pytest.raises(ValueError, match="jobs must be"):
        run_studies([COIN], jobs=-1)
    with pytest.raises(ValueError, match="lacks"):
        load_study("json.decoder")  # a module without the study protocol


def test_explicit_seeds_are_used_and_recorded(tmp_path):
    (run,) = run_studies([COIN], scale="quick", seeds="101-103", jobs=0, progress=False, log=lambda s: None)
    assert run.seeds == (101, 102, 103) and run.config["seeds"] == 3
    (run2,) = run_studies([COIN], scale="quick", seeds=[7, 3], jobs=0, progress=False, log=lambda s: None)
    assert run2.seeds == (7, 3)
    w = write_outputs([run], tmp_path)
    doc = json.loads(w["claims"].read_text())
    assert doc["studies"][COIN]["seeds"] == [101, 102, 103]
    for bad in ([1, 1], [], [-2], "4-1"):
        with pytest.raises(ValueError, match="seed"):
            run_studies([COIN], seeds=bad, jobs=0)
    args = cli.build_parser().parse_args(["study", "--seeds", "101-110"])
    assert args.seeds == tuple(range(101, 111))


def test_null_regime_gives_under_powered(monkeypatch):
    """A synthetic null regime: the positive control (a fair coin against a fair coin) cannot show
    an effect, so the comparative claim is under-powered, never 'does not hold'."""
    monkeypatch.setattr(_coin_study, "config", lambda scale: {"seeds": 6, "p": 0.5, "flips": 200,
                                                               "fail_seed": None, "control_p": 0.5})
    res = run_study(COIN, scale="quick")
    beats = res.claims[1]
    assert beats.verdict == "under-powered" and not beats.control.passes
    assert res.claims[0].verdict in ("inconclusive", "does not hold")  # no control: ordinary verdict


def test_write_outputs_writes_deterministic_json_report_and_png(tmp_path):
    # default scale: a --quick run is a smoke run without verdicts (test_quick_run_prints_no_verdicts)
    runs = run_studies([COIN], scale="default", jobs=0, progress=False, log=lambda s: None)
    w1 = write_outputs(runs, tmp_path / "a", command="robust-rollouts study coin")
    runs2 = run_studies([COIN], scale="default", jobs=0, progress=False, log=lambda s: None)
    w2 = write_outputs(runs2, tmp_path / "b")
    assert w1["results"].read_text() == w2["results"].read_text()
    results = json.loads(w1["results"].read_text())
    assert results["studies"][COIN]["result"]["claims"][0]["verdict"] == "holds"
    assert results["studies"][COIN]["result"]["claims"][1]["control"]["passes"] is True
    report = w1["report"].read_text()
    assert "`coin.biased`" in report and "**holds**" in report and "coin_running.png" in report
    png = w1[f"{COIN}_running"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_cli_study_rejects_unknown_names_and_bad_numbers(capsys):
    assert cli.main(["study", "definitely-not-a-study"]) == 2
    assert "unknown study" in capsys.readouterr().err
    for bad in (["study", "--seeds", "0"], ["study", "--jobs", "-1"], ["study", "--quick", "--full"]):
        with pytest.raises(SystemExit):
            cli.main(bad)


def _study_cli(args, tmp_path, capsys):
    rc = cli.main(["study", COIN, "--jobs", "0", "--no-progress", "--out", str(tmp_path), *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_quick_run_prints_no_verdicts(tmp_path, capsys):
    """``study --quick`` is a smoke run: no verdict in the terminal table, report.md, claims.json or
    results.json, and one line saying so in each."""
    from benchmarks.study_report import SMOKE_NOTE, SMOKE_VERDICT
    from solvers.claims import VERDICTS

    rc, out, err = _study_cli(["--quick"], tmp_path, capsys)
    assert rc == 0
    assert SMOKE_NOTE in out and SMOKE_NOTE in err
    rows = [line for line in out.splitlines() if line.startswith("coin.")]
    assert len(rows) == 2 and all(line.rstrip().endswith(SMOKE_VERDICT) for line in rows)
    assert not any(v in line for line in rows for v in VERDICTS)
    report = (tmp_path / "report.md").read_text()
    assert SMOKE_NOTE in report and not any(f"**{v}**" in report for v in VERDICTS)
    assert "Reasons:" not in report
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert claims["smoke"] is True and claims["note"] == SMOKE_NOTE
    assert {c["verdict"] for c in claims["claims"]} == {SMOKE_VERDICT}
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["smoke"] is True
    assert {c["verdict"] for c in results["studies"][COIN]["result"]["claims"]} == {SMOKE_VERDICT}
    assert "claims.json" in err.strip().splitlines()[-1]  # the last line names every output


def test_default_run_prints_verdicts_and_what_each_claim_states(tmp_path, capsys):
    rc, out, err = _study_cli([], tmp_path, capsys)
    assert rc == 0 and "Smoke run" not in out
    lines = out.splitlines()
    (row,) = [line for line in lines if line.startswith("coin.biased")]
    assert "holds" in row
    (row,) = [line for line in lines if line.startswith("coin.beats_fair")]
    assert "holds (control passes)" in row
    statement = lines[lines.index(row) + 1]
    assert statement.startswith("    self-test: the coin beats a fair coin")
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert claims["smoke"] is False and [c["verdict"] for c in claims["claims"]] == ["holds", "holds"]
    last = err.strip().splitlines()[-1]
    assert all(name in last for name in ("report.md", "claims.json", "results.json"))


def test_summary_table_wraps_long_statements_without_cutting_them():
    from benchmarks.study_report import summary_table
    from benchmarks.study_runner import StudyRun
    from solvers.claims import StudyResult, make_claim, mean_ci

    words = [f"word{k:03d}" for k in range(60)]
    claim = make_claim("x.long_statement_claim_key_that_is_long", "Paper Sec. 9", " ".join(words), "metric",
                       mean_ci([1.0, 2.0, 3.0]), greater=0.0, kind="assumption check", regime="hard prompts")
    run = StudyRun("x", "default", {}, (0, 1, 2), result=StudyResult("x", "X", "", {}, (0, 1, 2), (claim,)))
    text = summary_table([run], width=60)
    body = text.splitlines()[3:]
    assert all(line.startswith("    ") and len(line) <= 60 for line in body)
    flat = " ".join(" ".join(body).split())
    assert flat == "Paper Sec. 9 (assumption check; regime: hard prompts): " + " ".join(words)
    assert text.splitlines()[2].startswith("x.long_statement_claim_key_that_is_long")  # key never cut


def test_eta_waits_for_tasks_after_the_first():
    from benchmarks.study_runner import eta_seconds

    # the first task of each of 2 workers compiles (100 s); then one task every 2 s
    assert eta_seconds([], 10, warmup=2) is None
    assert eta_seconds([100.0], 10, warmup=2) is None
    assert eta_seconds([100.0, 101.0], 10, warmup=2) is None
    assert eta_seconds([100.0, 101.0, 103.0], 10, warmup=2) == pytest.approx(7 * 2.0)
    assert eta_seconds([100.0, 101.0, 103.0, 105.0], 4, warmup=2) == 0.0
    assert eta_seconds([5.0, 5.0], 3, warmup=1) is None  # no elapsed time since the warm-up: no estimate
