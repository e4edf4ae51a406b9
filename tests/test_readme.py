"""The README stays true: its Python examples run, and CI runs the README's test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_example_runs(index, capsys):
    code = _blocks("python")[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out  # every example prints what it shows


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_command():
    commands = [b.strip() for b in _blocks("bash")]
    assert len(commands) == 2, commands
    main_job, test_cmd = commands
    assert "robust-rollouts perf" in main_job
    assert "pytest" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci, "'.ci/run' must run the README's test command verbatim"


def test_readme_examples_match_what_they_print():
    """The first example's printed allocation is the one the solver returns (no stale numbers)."""
    import numpy as np

    from solvers import allocate

    rng = np.random.default_rng(0)
    p_hat = rng.uniform(0.05, 0.95, size=8)
    n = allocate(4.0 * p_hat * (1.0 - p_hat), 64, 3, 16, cost="rloo", integer=True).n
    shown = re.search(r"print\(exact\.n, exact\.message\)\s+# \[([\d ]+)\]", README).group(1)
    assert n.tolist() == [int(x) for x in shown.split()]
