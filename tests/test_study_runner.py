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
    runs = run_studies([COIN], scale="quick", jobs=0, progress=False, log=lambda s: None)
    w1 = write_outputs(runs, tmp_path / "a", command="robust-rollouts study coin --quick")
    runs2 = run_studies([COIN], scale="quick", jobs=0, progress=False, log=lambda s: None)
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
