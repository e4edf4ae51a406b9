"""Rollout logs and their offline replay (``robust-rollouts replay``).

Reading: the vectorised CSV path and the line-by-line path agree; JSON Lines and Parquet hold the
same fields; every bad value is reported with its line (or row) and column. Estimation: the
smoothing kernel equals its slow reference. Replay: the shipped example log is what the simulator
generates, and replaying it gives the identities a correct evaluation must satisfy (uniform and
the log's own uniform allocation at ratio 1, budgets respected, the per-step proxy equal to
``solvers.variance_proxy``); the command writes its report.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.cli import main
from sim.replay import _smooth_kernel, estimate_success, replay, smooth_reference
from sim.rollout_log import (
    EXAMPLE_LOG,
    EXAMPLE_LOG_ARGS,
    RolloutLog,
    read_rollout_log,
    rollout_log_from_arrays,
    simulate_rollout_log,
    write_rollout_log_csv,
)
from solvers import variance_proxy

HEADER = "step,prompt_id,n,successes"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _same(a: RolloutLog, b: RolloutLog) -> bool:
    return (np.array_equal(a.step, b.step) and np.array_equal(a.prompt, b.prompt) and np.array_equal(a.n, b.n)
            and np.array_equal(a.successes, b.successes)
            and np.array_equal(a.prompt_names.astype(str), b.prompt_names.astype(str)))


# ------------------------------------------------------------------------------------------ reading
def test_csv_fast_and_line_by_line_paths_agree(tmp_path):
    """A plain file (vectorised path), the same with a quoted extra column and a comment line
    (line-by-line path) and JSON Lines give the same log; rows come sorted by step and prompt."""
    rows = [(3, "b", 8, 2), (1, "a", 4, 4), (1, "b", 8, 0.5), (2, "a", 6, 1)]
    plain = _write(tmp_path, "plain.csv", HEADER + ",extra\n" + "".join(f"{s},{q},{n},{k},x\n" for s, q, n, k in rows))
    quoted = _write(tmp_path, "quoted.csv", "# a comment\n" + HEADER + ",extra\n"
                    + "".join(f'{s},{q},{n},{k},"x, y"\n' for s, q, n, k in rows) + "# trailing comment\n")
    jsonl = _write(tmp_path, "log.jsonl", "".join(json.dumps({"step": s, "prompt_id": q, "n": n, "successes": k,
                                                              "other": [1]}) + "\n" for s, q, n, k in rows))
    a, b, c = (read_rollout_log(p) for p in (plain, quoted, jsonl))
    assert _same(a, b) and _same(a, c)
    assert a.step.tolist() == [1, 1, 2, 3] and a.prompt_names.tolist() == ["a", "b"]
    assert a.prompt.tolist() == [0, 1, 0, 1] and a.successes.tolist() == [4.0, 0.5, 1.0, 2.0]
    numeric = _write(tmp_path, "num.csv", HEADER + "\n10,7,8,3\r\n10,2,8,8\r\n11,7,8,0\r\n")
    log = read_rollout_log(numeric)
    assert log.prompt_names.tolist() == [2, 7] and log.n.tolist() == [8, 8, 8]


@pytest.mark.parametrize("body, pattern", [
    ("step,prompt,n,successes\n0,a,4,1\n", r"missing column\(s\) \['prompt_id'\]; the header has"),
    (HEADER + "\n0,a,4,1\n1,a,0,0\n", r"line 3, column 'n': must be an integer >= 1, got '0'"),
    (HEADER + "\n0,a,4,1\n1,a,4,5\n", r"line 3, column 'successes': must be in \[0, n\] = \[0, 4\], got 5.0"),
    (HEADER + "\n0.5,a,4,1\n", r"line 2, column 'step': must be an integer, got '0.5'"),
    (HEADER + "\n0,,4,1\n", r"line 2, column 'prompt_id': must be a non-empty id"),
    (HEADER + "\n0,a,four,1\n", r"line 2, column 'n': must be an integer, got 'four'"),
    (HEADER + "\n0,a,4,nan\n", r"line 2, column 'successes': must be finite"),
    (HEADER + "\n0,a,4\n", r"line 2 has 3 field\(s\), the header has 4"),
    (HEADER + "\n0,a,4,1\n0,b,4,1\n0,a,8,2\n", r"line 4 repeats step 0 and prompt_id 'a' of line 2"),
    (HEADER + "\n", r"the log has no rows"),
    ("# only a comment\n", r"no header line"),
])
def test_csv_errors_name_the_line_and_column(tmp_path, body, pattern):
    path = _write(tmp_path, "bad.csv", body)
    with pytest.raises(ValueError, match=pattern):
        read_rollout_log(path)


def test_jsonl_and_other_errors(tmp_path):
    with pytest.raises(ValueError, match=r"line 2 is not valid JSON"):
        read_rollout_log(_write(tmp_path, "a.jsonl", '{"step": 0, "prompt_id": 1, "n": 2, "successes": 1}\n{oops\n'))
    with pytest.raises(ValueError, match=r"line 1, column 'n': missing"):
        read_rollout_log(_write(tmp_path, "b.jsonl", '{"step": 0, "prompt_id": 1, "successes": 1}\n'))
    with pytest.raises(ValueError, match=r"line 1, column 'step': must be an integer, got True"):
        read_rollout_log(_write(tmp_path, "c.jsonl", '{"step": true, "prompt_id": 1, "n": 2, "successes": 1}\n'))
    with pytest.raises(ValueError, match=r"unknown log format '.txt'"):
        read_rollout_log(_write(tmp_path, "d.txt", HEADER))
    with pytest.raises(FileNotFoundError, match="no such rollout log"):
        read_rollout_log(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        read_rollout_log(3)
    with pytest.raises(ValueError, match=r"row 1, column 'n': must be an integer >= 1"):
        rollout_log_from_arrays([0], ["a"], [0], [0])


def test_parquet_needs_pyarrow_or_pandas_and_says_so(tmp_path, monkeypatch):
    path = _write(tmp_path, "log.parquet", "not really parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"needs pyarrow: pip install pyarrow"):
        read_rollout_log(path)


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"step": [1, 0, 0], "prompt_id": ["x", "x", "y"], "n": [4, 4, 2], "successes": [1.0, 0.0, 2.0],
                      "note": ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "log.parquet")
    log = read_rollout_log(tmp_path / "log.parquet")
    assert log.step.tolist() == [0, 0, 1] and log.prompt_names.tolist() == ["x", "y"]
    bad = pa.table({"step": [0], "prompt_id": ["x"], "n": [0], "successes": [0.0]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"row 1, column 'n'"):
        read_rollout_log(tmp_path / "bad.parquet")


def test_write_and_read_back(tmp_path):
    log = rollout_log_from_arrays([2, 0, 1], [5, 5, 9], [4, 4, 8], [1.5, 0, 8])
    write_rollout_log_csv(log, tmp_path / "x.csv", comment="made in a test")
    assert (tmp_path / "x.csv").read_text().startswith("# made in a test\n" + HEADER + "\n")
    assert _same(read_rollout_log(tmp_path / "x.csv"), log)


# ------------------------------------------------------------------------------------------ estimation
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9), st.floats(0, 1)), min_size=1, max_size=25),
       st.floats(0.0, 0.95))
def test_smoothing_kernel_equals_its_reference(rows, lam):
    """The success-rate estimate of the replay (two-sided exponential smoothing over a prompt's
    visits, ``S_k = sum_j lam^|j-k| s_j``): the O(R) kernel equals the double-sum reference."""
    prompt = np.sort(np.array([q for q, _, _ in rows], dtype=np.int64))
    n = np.array([float(k) for _, k, _ in rows])
    s = np.array([f * k for _, k, f in rows])
    ks, kn = _smooth_kernel(prompt, n, s, lam)
    rs, rn = smooth_reference(prompt, n, s, lam)
    assert np.allclose(ks, rs, rtol=1e-12, atol=1e-12) and np.allclose(kn, rn, rtol=1e-12, atol=1e-12)


def test_estimate_without_smoothing_is_each_visit_with_the_prior():
    log = rollout_log_from_arrays([0, 1, 0], ["a", "a", "b"], [4, 8, 10], [0, 8, 5])
    p = estimate_success(log, 0.0)
    assert np.allclose(p, [0.5 / 5, 5.5 / 11, 8.5 / 9])  # rows sorted: (0, a), (0, b), (1, a)
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        estimate_success(log, 1.0)


# ------------------------------------------------------------------------------------------ replay
def test_the_shipped_example_log_is_what_the_simulator_generates():
    assert EXAMPLE_LOG.read_text().startswith("# Example rollout log, generated by the simulator")
    assert _same(read_rollout_log(EXAMPLE_LOG), simulate_rollout_log(**EXAMPLE_LOG_ARGS))


@pytest.fixture(scope="module")
def example_replay():
    return replay(read_rollout_log(EXAMPLE_LOG), seed=3)


def test_replay_of_the_example_log(example_replay):
    """Identities of a correct evaluation: uniform allocation (the registered controller, the
    log's own uniform allocation and Prompt-GDRO, which reweights but allocates uniformly) sits at
    VarProxy ratio 1; every controller stays within the budget; single-round controllers that do
    not skip spend it exactly; the oracle (variance-optimal allocation with p_hat as the true rate)
    has a lower proxy than uniform; the per-step proxy equals solvers.variance_proxy (GDRO eq. 19)."""
    res = example_replay
    log = read_rollout_log(EXAMPLE_LOG)
    assert not res.not_run and set(res.rows) == {"logged", *res.config["controllers"]}
    for name in ("logged", "uniform", "prompt-gdro"):
        assert res.rows[name].proxy_ratio == pytest.approx(1.0, abs=1e-12)
    for name, r in res.rows.items():
        assert r.rollouts <= r.budget and 0 <= r.all_equal_share <= 1 and 0 <= r.trained_share <= 1
        if name in ("uniform", "vip", "knapsack", "greso", "rollout-gdro"):
            assert r.rollouts == r.budget == log.n_rows * 8
    assert res.rows["oracle"].proxy_ratio < 1.0
    assert res.rows["greso"].skipped_share > 0 and res.rows["dapo-dynamic"].trained_share < 1
    assert np.nansum(res.rows["uniform"].band_mean * res.band_counts) == pytest.approx(8 * log.n_rows)
    # the first step of 'logged' against the solver of GDRO eq. 19
    p = estimate_success(log, res.config["smoothing"])
    first = log.step == log.step[0]
    v = 4 * p[first] * (1 - p[first])
    m = int(first.sum())
    want = variance_proxy(v, np.full(m, 1.0 / m), log.n[first].astype(float)) / variance_proxy(
        v, np.full(m, 1.0 / m), np.full(m, 8.0))
    assert res.rows["logged"].proxy_ratio_steps[0] == pytest.approx(want, rel=1e-12)
    doc = json.loads(json.dumps(res.to_jsonable(), allow_nan=False))
    assert doc["log"]["rows"] == log.n_rows and "knapsack" in doc["controllers"]
    assert [t.title for t in res.tables()][1] == "Mean rollouts per prompt in each difficulty band of p_hat"
    assert [f.name for f in res.figures()] == ["replay_varproxy", "replay_allocation"]


def test_replay_is_reproducible_and_independent_of_jobs():
    log = read_rollout_log(EXAMPLE_LOG)
    names = ["knapsack", "reinforce-ada"]
    a = replay(log, controllers=names, seed=5)
    b = replay(log, controllers=names, seed=5, jobs=2)
    for n in ["logged", *names]:
        assert a.rows[n].proxy_ratio == b.rows[n].proxy_ratio and a.rows[n].all_equal_share == b.rows[n].all_equal_share


def test_replay_options_are_validated():
    log = read_rollout_log(EXAMPLE_LOG)
    with pytest.raises(ValueError, match=r"unknown controller\(s\) \['vipp'\]"):
        replay(log, controllers=["vipp"])
    with pytest.raises(ValueError, match="need lower <= mean_budget <= upper"):
        replay(log, mean_budget=8, upper=4)
    with pytest.raises(ValueError, match="bands must be increasing edges from 0 to 1"):
        replay(log, controllers=["uniform"], bands=[0.0, 0.5])
    with pytest.raises(TypeError, match="log must be a RolloutLog"):
        replay("log.csv")
    res = replay(log, controllers=["vip", "uniform"], mean_budget=1, lower=1, upper=3)
    assert "vip" in res.not_run and "needs lower >= 2" in res.not_run["vip"] and "uniform" in res.rows


def test_replay_command(tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["replay", str(EXAMPLE_LOG), "--out", str(out), "--no-plots", "--jobs", "0", "--controller", "uniform",
               "--controller", "ar3po", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "VarProxy/uniform" in text and "ar3po" in text
    doc = json.loads((out / "replay.json").read_text())
    assert set(doc["controllers"]) == {"logged", "uniform", "ar3po"} and doc["config"]["mean_budget"] == 8
    assert "read" in doc["seconds"] and (out / "replay.md").read_text().startswith("# Replay of")
    bad = _write(tmp_path, "bad.csv", HEADER + "\n0,a,0,0\n")
    assert main(["replay", str(bad), "--out", str(tmp_path / "x"), "--no-plots"]) == 2
    assert "line 2, column 'n'" in capsys.readouterr().err
