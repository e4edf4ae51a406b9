"""The README stays true: its Python examples run, and CI runs the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_example_runs(index, capsys, tmp_path, monkeypatch):
    code = _blocks("python")[index]
    if "from trl" in code:  # the TRL example runs in the nox session 'trl' (tests/integrations/test_trl.py)
        pytest.skip("the TRL example needs the 'trl' extra; nox -s trl runs it")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # every example prints what it shows


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_command():
    """Two commands: the main job (the claims study on its defaults) and the tests (every nox
    session); CI runs the second one verbatim."""
    commands = [b.strip() for b in _blocks("bash")]
    assert len(commands) == 2, commands
    main_job, test_cmd = commands
    assert main_job.endswith("robust-rollouts study"), main_job
    assert test_cmd.endswith("nox"), test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, "'.ci/run' must run the README's test command verbatim"


def test_readme_quotes_the_committed_study_run():
    """The README's claims table is the one computed from the committed default run
    (benchmarks/results/study/claims.json): verdicts and numbers are never typed by hand."""
    import json

    from benchmarks.study_report import verdicts_markdown

    doc = json.loads((ROOT / "benchmarks" / "results" / "study" / "claims.json").read_text())
    assert doc["command"] == "robust-rollouts study"  # the README's main job on its defaults
    assert all(s["scale"] == "default" and not s["error"] for s in doc["studies"].values())
    assert verdicts_markdown(doc["claims"]) in README
    for name in doc["studies"]:  # the figures and the report of that run are committed beside it
        assert (ROOT / "benchmarks" / "results" / "study" / "report.md").exists()
        assert list((ROOT / "benchmarks" / "results" / "study").glob(f"{name}_*.png")), name


def test_readme_keeps_every_reference_inside_the_repository():
    """Users of the repository do not have the development folder beside it (every tracked file:
    tests/test_no_external_refs.py)."""
    assert "shared" + "/" not in README and "DE" + "SIGN.md" not in README


def test_readme_examples_match_what_they_print():
    """The first example's printed allocation is the one the solver returns (no stale numbers)."""
    import numpy as np

    from solvers import allocate

    rng = np.random.default_rng(0)
    p_hat = rng.uniform(0.05, 0.95, size=8)
    n = allocate(4.0 * p_hat * (1.0 - p_hat), 64, 3, 16, cost="rloo", integer=True).n
    shown = re.search(r"print\(exact\.n, exact\.message\)\s+# \[([\d ]+)\]", README).group(1)
    assert n.tolist() == [int(x) for x in shown.split()]
