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
