"""Tests for llm_bridge.tasks (verifiable tasks, registry) and llm_bridge.tokenizer (local char tokenizer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_bridge.tasks import (
    TASKS,
    Example,
    Task,
    arithmetic_examples,
    digit_partial_credit,
    exact_match,
    make_task,
    register_task,
)

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- arithmetic
def _evaluate(prompt: str) -> int:
    body = prompt.rstrip("=")
    for op in "+-*":
        if op in body[1:]:
            i = body.index(op, 1)
            a, b = int(body[:i]), int(body[i + 1 :])
            return a + b if op == "+" else a - b if op == "-" else a * b
    raise AssertionError(prompt)


@pytest.mark.parametrize("max_digits, max_mul", [(2, 1), (3, 2), (4, 4)])
def test_arithmetic_answers_and_difficulty_range(max_digits, max_mul):
    ex = arithmetic_examples(400, 7, max_digits=max_digits, max_mul_digits=max_mul)
    assert len(ex) == 400
    for e in ex:
        assert e.prompt.endswith("=")
        assert e.answer == str(_evaluate(e.prompt))
        assert int(e.answer) >= 0  # subtraction is ordered
        op, sizes = e.level.split()
        da, db = map(int, sizes.split("x"))
        assert 1 <= da <= (min(max_digits, max_mul) if op == "*" else max_digits)
        assert len(e.features) == 9 and e.features[0] == da and e.features[1] == db
    # every operator and every digit count occurs: the difficulty is graded, not one level
    levels = {e.level for e in ex}
    assert {lv.split()[0] for lv in levels} == {"+", "-", "*"}
    assert {f"+ {max_digits}x{max_digits}", "+ 1x1"} <= levels


def test_arithmetic_is_seeded():
    a = arithmetic_examples(50, 3)
    assert a == arithmetic_examples(50, 3)
    assert a != arithmetic_examples(50, 4)


def test_arithmetic_bad_options():
    with pytest.raises(ValueError, match="ops"):
        arithmetic_examples(5, 0, ops="/")
    with pytest.raises(ValueError, match="max_digits"):
        arithmetic_examples(5, 0, max_digits=0)
    with pytest.raises(ValueError, match="n_prompts"):
        arithmetic_examples(0, 0)


# ----------------------------------------------------------------------------- verifiers
def test_exact_match():
    assert exact_match(" 42 ", "42") == 1.0
    assert exact_match("420", "42") == 0.0
    assert exact_match("", "42") == 0.0


def test_partial_credit_values():
    assert digit_partial_credit("1234", "1234") == 1.0
    assert digit_partial_credit("1235", "1234") == 0.75
    assert digit_partial_credit("234", "1234") == 0.75
    assert digit_partial_credit("123", "1234") == 0.0
    assert digit_partial_credit("", "7") == 0.0
    assert digit_partial_credit("x7", "7") == 0.5


@given(c=st.text("0123456789", max_size=6), a=st.text("0123456789", min_size=1, max_size=6))
@settings(max_examples=200)
def test_partial_credit_is_a_graded_exact_match(c, a):
    """Partial credit lies in [0, 1] and equals 1 exactly when the exact-match verifier gives 1."""
    s = digit_partial_credit(c, a)
    assert 0.0 <= s <= 1.0
    assert (s == 1.0) == (exact_match(c, a) == 1.0)


# ----------------------------------------------------------------------------- registry and Task
def test_make_task_pool_and_embeddings():
    task = make_task("arithmetic", n_prompts=40, seed=1)
    assert isinstance(task, Task) and task.n_prompts == 40
    assert task.prompts == [e.prompt for e in arithmetic_examples(40, 1)]
    assert set(task.alphabet) <= set("0123456789+-*=")
    emb = task.embeddings
    assert emb.shape == (40, 9) and np.isfinite(emb).all()
    sd = emb.std(axis=0)
    assert np.allclose(emb.mean(axis=0), 0.0, atol=1e-12)
    assert np.all((np.abs(sd - 1.0) < 1e-12) | (sd == 0.0))
    r = task.verify([0, 0, 1], [task.answers[0], "x", task.answers[1] + "0"])
    assert r.dtype == np.float64 and r.tolist() == [1.0, 0.0, 0.0]
    partial = make_task("arithmetic-partial", n_prompts=40, seed=1)
    assert partial.prompts == task.prompts
    assert partial.verify([0], [task.answers[0]]).tolist() == [1.0]


def test_make_task_bad_input():
    with pytest.raises(ValueError, match=r"unknown task 'nope'; valid tasks: \[.*'arithmetic'"):
        make_task("nope")
    with pytest.raises(TypeError, match="task must be a string"):
        make_task(3)
    with pytest.raises(ValueError, match="n_prompts"):
        make_task("arithmetic", n_prompts=0)
    with pytest.raises(ValueError, match="seed"):
        make_task("arithmetic", seed=-1)
    task = make_task("arithmetic", n_prompts=4)
    with pytest.raises(ValueError, match=r"prompt_ids must be in \[0, 4\), got 4"):
        task.verify([4], ["1"])
    with pytest.raises(ValueError, match="completions has 2 entries"):
        task.verify([0], ["1", "2"])


def test_register_user_task():
    def examples(n, seed):
        rng = np.random.default_rng(seed)
        return [Example(prompt=f"{int(x)}?", answer="even" if x % 2 == 0 else "odd") for x in rng.integers(0, 100, n)]

    def verify(completion, answer):
        return 1.0 if completion.strip() == answer else 0.0

    register_task("parity-test", examples, verify, description="parity", overwrite=True)
    assert "parity-test" in TASKS
    task = make_task("parity-test", n_prompts=6, seed=2)
    assert task.embeddings is None  # no features: the trainer falls back to model embeddings
    assert set("evnod") <= set(task.alphabet)
    assert task.verify([0], [task.answers[0]]).tolist() == [1.0]
    with pytest.raises(ValueError, match="already registered"):
        register_task("parity-test", examples, verify)


def test_verifier_out_of_range_is_an_error():
    register_task("bad-verifier-test", lambda n, s: [Example("a", "b")] * n, lambda c, a: 2.0, overwrite=True)
    task = make_task("bad-verifier-test", n_prompts=2)
    with pytest.raises(ValueError, match=r"returned 2.0 \(must be in \[0, 1\]\)"):
        task.verify([0], ["b"])


def test_wrong_number_of_examples_is_an_error():
    register_task("short-test", lambda n, s: [Example("a", "b")], exact_match, overwrite=True)
    with pytest.raises(ValueError, match="returned 1 examples, asked for n_prompts=3"):
        make_task("short-test", n_prompts=3)


def test_llm_bridge_layering():
    """llm_bridge uses solvers and bandits, never sim or benchmarks; torch & co. only inside it."""
    import ast

    def imports(package):
        found = set()
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
        return found

    assert not imports("llm_bridge") & {"sim", "benchmarks"}
    assert "llm_bridge" not in imports("solvers") | imports("bandits")


def test_public_names_resolve():
    import llm_bridge

    pytest.importorskip("transformers")
    for name in llm_bridge.__all__:
        assert getattr(llm_bridge, name) is not None, name


def test_importing_llm_bridge_and_tasks_does_not_import_torch():
    code = ("import sys, llm_bridge, llm_bridge.tasks; llm_bridge.make_task('arithmetic');"
            "print(sorted(m for m in ('torch', 'transformers', 'tokenizers', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- tokenizer
# (needs the llm extra; the task tests above run without it)
def _tok_module():
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from llm_bridge import tokenizer

    return tokenizer


@given(text=st.text("0123456789+-*= \nab", min_size=1, max_size=30))
@settings(max_examples=100)
def test_char_tokenizer_round_trip(text):
    """One token per character, and decode(encode(s)) == s for any string over the alphabet."""
    tok = _tok_module().char_tokenizer("0123456789+-*= \nab")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)
    assert tok.decode(ids) == text


def test_char_tokenizer_specials_and_save_load(tmp_path):
    mod = _tok_module()
    import transformers

    tok = mod.char_tokenizer("=+0123456789")
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert len(tok) == 3 + 12
    assert tok.decode([4, 5, tok.eos_token_id, 0], skip_special_tokens=True) == "01"
    tok.save_pretrained(tmp_path)
    again = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again("12+3=", add_special_tokens=False)["input_ids"] == tok("12+3=", add_special_tokens=False)["input_ids"]
    assert mod.encode_prompts(tok, ["1+1=", "9="]) == [[5, 3, 5, 14], [13, 14]]


def test_tokenizer_lacking_task_characters_is_an_error():
    mod = _tok_module()
    tok = mod.char_tokenizer("0123456789+=")
    task = make_task("arithmetic", n_prompts=30, seed=0)
    with pytest.raises(ValueError, match=r"lacks characters of the task: \['\*', '-'\]"):
        mod.check_tokenizer_covers(tok, task.alphabet, what="the task")
    mod.check_tokenizer_covers(mod.char_tokenizer(task.alphabet), task.alphabet)
    with pytest.raises(ValueError, match="at least one character"):
        mod.char_tokenizer("")
    with pytest.raises(TypeError, match="alphabet must be a string"):
        mod.char_tokenizer(None)


def test_missing_extra_gives_clear_import_error(monkeypatch):
    import sys

    from llm_bridge._deps import require

    for module, extra in (("torch", "llm"), ("transformers", "llm"), ("tokenizers", "llm"), ("vllm", "vllm")):
        monkeypatch.setitem(sys.modules, module, None)  # makes "import module" raise ImportError
        with pytest.raises(ImportError, match=rf'pip install "robust-rollouts\[{extra}\]"'):
            require(module)
