"""The ``robust-rollouts`` command line: --version and the rejection of nonsensical numeric options.

Parsing only: nothing here runs a study or a benchmark.
"""

import re

import pytest

from benchmarks import cli


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("robust-rollouts ")
    assert re.search(r"\d+\.\d+", out)
    assert cli.package_version().split()[0] in out


@pytest.mark.parametrize("option", ["--target-s", "--max-peer-call-s"])
@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "abc", ""])
def test_perf_rejects_nonsensical_seconds(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["perf", f"{option}={value}"])  # "=" so that "-1" is a value, not an option
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "positive" in err


@pytest.mark.parametrize("argv, option", [
    (["study", "--seeds", "0"], "--seeds"),
    (["study", "--seeds", "-1"], "--seeds"),
    (["study", "--seeds", "2.5"], "--seeds"),
    (["study", "--jobs", "-1"], "--jobs"),
    (["study", "--jobs", "many"], "--jobs"),
])
def test_study_rejects_nonsensical_counts(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_valid_numeric_options_parse():
    args = cli.build_parser().parse_args(["perf", "--target-s", "0.05", "--max-peer-call-s", "1e-3", "--quick"])
    assert args.target_s == 0.05 and args.max_peer_call_s == 1e-3
    args = cli.build_parser().parse_args(["study", "--seeds", "3", "--jobs", "0"])
    assert args.seeds == 3 and args.jobs == 0


# -- output folder, resume, smoke runs: one-line errors with exit status 2, before any work ----------------

BAD_OUTS = ["/proc/robust-rollouts-no-such-folder/out", "", "FILE"]


def _bad_out(value, tmp_path):
    if value == "FILE":
        path = tmp_path / "a-file.txt"
        path.write_text("not a folder\n")
        return str(path)
    return value


def _nothing_runs(*args, **kwargs):
    raise AssertionError("work started before the output folder was checked")


@pytest.mark.parametrize("bad", BAD_OUTS)
def test_study_checks_out_before_any_work(bad, tmp_path, capsys, monkeypatch):
    import benchmarks.study_runner as runner

    monkeypatch.setattr(runner, "run_studies", _nothing_runs)
    assert cli.main(["study", "--no-progress", "--out", _bad_out(bad, tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robust-rollouts study: error: --out"), err


@pytest.mark.parametrize("bad", BAD_OUTS)
def test_perf_checks_out_before_any_work(bad, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_suite", _nothing_runs)
    assert cli.main(["perf", "--suite", "sim", "--out", _bad_out(bad, tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robust-rollouts perf: error: --out"), err


@pytest.mark.parametrize("bad", BAD_OUTS)
def test_train_checks_out_before_any_work(bad, tmp_path, capsys, monkeypatch):
    import llm_bridge.cli as train_cli

    monkeypatch.setattr(train_cli, "require", _nothing_runs)  # torch is not even imported
    assert cli.main(["train", "--steps", "1", "--out", _bad_out(bad, tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("robust-rollouts train: error: --out"), err


@pytest.mark.parametrize("command", [["study", "--no-progress"], ["perf", "--suite", "sim"], ["train", "--steps", "1"]])
def test_bad_out_is_one_line_and_exit_2_without_traceback(command):
    """The console script as a user runs it: no traceback, one line, exit status 2."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.cli", *command, "--out", "/proc/robust-rollouts-nope"],
                          capture_output=True, text=True, env=env, cwd=root, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out '/proc/robust-rollouts-nope'" in lines[0], lines


def test_train_resume_at_or_past_the_end_is_refused(tmp_path, capsys, monkeypatch):
    """``train --resume CKPT --steps N`` with N <= the checkpoint's step used to do nothing, silently."""
    import json

    import llm_bridge.cli as train_cli

    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(json.dumps({"step": 10}))
    monkeypatch.setattr(train_cli, "require", _nothing_runs)
    for steps in ("3", "10"):
        assert cli.main(["train", "--resume", str(ckpt), "--steps", steps, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "already at step 10" in err[0] and "--steps larger than 10" in err[0], err


def test_train_help_mentions_the_warm_start_and_the_total_steps(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "supervised warm start" in flat and "--warm-start-steps" in flat
    assert "after the last" in flat  # evaluation
    assert "must exceed the checkpoint's step" in flat


def test_train_evaluates_at_the_last_step_and_names_the_warm_start(tmp_path, capsys):
    """With --steps 2 and --eval-every 10 the summary's eval_last is step 2, not step 0; the warm
    start is announced before it runs; resuming to a total already reached is refused."""
    import json

    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path / "run"
    argv = ["train", "--steps", "2", "--eval-every", "10", "--warm-start-steps", "3", "--cache-dir",
            str(tmp_path / "cache"), "--n-prompts", "8", "--prompts-per-step", "4", "--mean-budget", "2",
            "--lower", "1", "--upper", "4", "--max-new-tokens", "4", "--eval-samples", "2", "--hidden-size", "16",
            "--heads", "2", "--layers", "1", "--minibatch-size", "0", "--no-progress", "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["eval_first"]["step"] == 0 and summary["eval_last"]["step"] == 2
    assert "supervised warm start of 3 steps" in captured.err
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if "eval_accuracy" in r] == [0, 2]
    assert cli.main(["train", "--resume", str(out / "checkpoint"), "--steps", "2", "--out", str(out)]) == 2
    assert "already at step 2" in capsys.readouterr().err
