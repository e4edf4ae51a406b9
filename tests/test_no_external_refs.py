"""The repository stands alone: no tracked file, committed output or command-line text names a file
that users of the repository do not have (the development notes beside it, its issue tracker).

Where code relies on a convention, the convention is written into the repository (module
docstrings, ``docs/architecture.md``) and cited there. The patterns are built from pieces so that
this file does not match itself.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from benchmarks import cli

ROOT = Path(__file__).resolve().parents[1]

PATTERNS = {
    "the development folder beside the repository": re.compile(re.escape("shared" + "/")),
    "the development design notes": re.compile(r"\b" + "DE" + r"SIGN(\.md)?\b"),
    "the development integration notes": re.compile(r"\b" + "INTEG" + r"RATION(\.md)?\b"),
    "an issue number": re.compile(r"(?i)\bissues?\s*(no\.?\s*|#\s*)?\d+"),
}
_SKIP_DIRS = {".git", ".nox", "__pycache__", ".venv", "venv", "build", "dist", ".pytest_cache", ".hypothesis"}


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
        names = [n for n in out.stdout.decode().split("\0") if n]
        if names:
            return [ROOT / n for n in names]
    except (OSError, subprocess.SubprocessError):
        pass
    return [p for p in ROOT.rglob("*") if p.is_file() and not (_SKIP_DIRS & set(p.relative_to(ROOT).parts))]


def _offences(text: str) -> list[str]:
    found = []
    for what, pattern in PATTERNS.items():
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append(f"line {line}: {m.group(0)!r} ({what})")
    return found


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):  # binary (PNG) or unreadable: nothing a reader sees as text
        return None


def test_no_tracked_file_names_files_users_do_not_have():
    """Code, comments, docs, tests and the committed outputs (``benchmarks/results/**``)."""
    bad = {}
    for path in _tracked_files():
        text = _text(path)
        if text is not None and (found := _offences(text)):
            bad[str(path.relative_to(ROOT))] = found
    assert not bad, "files that point outside the repository:\n" + json.dumps(bad, indent=1)


def test_committed_outputs_are_checked():
    """The committed study and perf runs are among the files checked above."""
    names = {str(p.relative_to(ROOT)) for p in _tracked_files()}
    assert "benchmarks/results/study/report.md" in names and "benchmarks/results/perf.md" in names


@pytest.mark.parametrize("argv", [["--help"], ["study", "--help"], ["train", "--help"], ["perf", "--help"]])
def test_command_line_help_names_nothing_outside_the_repository(argv, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    text = capsys.readouterr().out
    assert text and not _offences(text)


def test_generated_report_names_nothing_outside_the_repository(tmp_path, monkeypatch, capsys):
    """The fixed prose of the study outputs (report.md, claims.json, terminal table), on a real run."""
    import sys

    from benchmarks.study_runner import STUDIES

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    monkeypatch.setitem(STUDIES, "coin", "_coin_study")
    for extra in ([], ["--quick"]):
        assert cli.main(["study", "coin", "--jobs", "0", "--no-progress", "--out", str(tmp_path), *extra]) == 0
        captured = capsys.readouterr()
        for text in (captured.out, captured.err, (tmp_path / "report.md").read_text(),
                     (tmp_path / "claims.json").read_text()):
            assert not _offences(text)
    assert "_coin_study" in sys.modules
