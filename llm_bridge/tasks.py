"""Verifiable tasks for GRPO training: a registry of (dataset, verifier) pairs.

A task is a fixed pool of prompts with reference answers, a verifier that scores one completion
against its reference (a reward in ``[0, 1]``: 1 = success, a value in between = partial credit),
the characters its prompts and answers use, and one feature vector per prompt (the embeddings a
success predictor such as :class:`bandits.GPSuccessPredictor` is conditioned on).

Adding your own dataset and verifier
------------------------------------
Implement two functions and register them:

``examples(n_prompts, seed) -> list[Example]``
    The dataset: ``n_prompts`` examples (prompt text, reference answer and, optionally, a feature
    vector per example) drawn reproducibly from ``seed``. A fixed dataset may ignore ``seed`` and
    return its first ``n_prompts`` rows. Called once for the prompt pool (``seed``) and once for
    the supervised warm start of a tiny model (a different seed; see :mod:`llm_bridge.models`).
``verify(completion, answer) -> float``
    The verifier: the reward of one generated ``completion`` (decoded text, special tokens and
    everything after the end-of-sequence token removed) against the reference ``answer``, in
    ``[0, 1]``.

>>> from llm_bridge.tasks import Example, register_task, make_task
>>> def examples(n, seed):
...     return [Example(prompt=f"{i}>", answer=str(i % 3)) for i in range(n)]
>>> def verify(completion, answer):
...     return float(completion.strip() == answer)
>>> register_task("mod3", examples, verify, description="i mod 3", overwrite=True)
>>> task = make_task("mod3", n_prompts=4, seed=0)
>>> task.verify([0, 1], ["0", "2"]).tolist()
[1.0, 0.0]

Embeddings (for the GP predictor of VIP Sec. 5.1): when every example carries ``features`` the
task's :attr:`Task.embeddings` are those features standardised per column (zero mean, unit
variance; constant columns left at 0). Otherwise ``embeddings`` is ``None`` and the trainer uses
the mean final hidden state of the warm-started model over the prompt's tokens
(:func:`llm_bridge.models.prompt_embeddings`). The built-in arithmetic task uses its own
features: operand digit counts, operator one-hot, number of carries/borrows, answer length and
log-magnitudes -- the quantities its difficulty is built from -- so that prompts close in the
embedding are close in difficulty, as VIP's kernel assumes.

This module is pure Python + NumPy (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from solvers._validation import as_int_array, check_int_scalar, check_rng

__all__ = [
    "Example",
    "Task",
    "TaskSpec",
    "TASKS",
    "register_task",
    "make_task",
    "arithmetic_examples",
    "exact_match",
    "digit_partial_credit",
]


@dataclass(frozen=True)
class Example:
    """One prompt of a verifiable task.

    Attributes
    ----------
    prompt : str
        Text the model is conditioned on (e.g. ``"12+7="``).
    answer : str
        Reference answer passed to the verifier (e.g. ``"19"``).
    features : tuple of float, optional
        Difficulty-related features of the prompt (become the task's embeddings).
    level : str
        A human-readable difficulty label (e.g. ``"+ 2x1"``), used in reports only.
    """

    prompt: str
    answer: str
    features: tuple[float, ...] | None = None
    level: str = ""


ExamplesFn = Callable[[int, int], Sequence[Example]]
VerifyFn = Callable[[str, str], float]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: the dataset function, the verifier and a one-line description."""

    name: str
    examples: ExamplesFn
    verify: VerifyFn
    description: str
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, TaskSpec] = {}
TASKS = MappingProxyType(_REGISTRY)
"""Registry of tasks: name -> :class:`TaskSpec` (read-only view; add with :func:`register_task`)."""


def register_task(name: str, examples: ExamplesFn, verify: VerifyFn, *, description: str = "",
                  overwrite: bool = False, **options: Any) -> TaskSpec:
    """Register a task under ``name`` (see the module docstring for the two functions).

    ``options`` are keyword arguments passed to ``examples`` after ``(n_prompts, seed)`` (e.g. the
    operators of the arithmetic family). Registering an existing name raises ``ValueError`` unless
    ``overwrite=True``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not callable(examples) or not callable(verify):
        raise TypeError("examples and verify must be callables")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    spec = TaskSpec(name, examples, verify, description, dict(options))
    _REGISTRY[name] = spec
    return spec


class Task:
    """A pool of prompts, their reference answers, a verifier and per-prompt embeddings.

    Build one with :func:`make_task`. Prompt ``q`` is ``task.prompts[q]``; prompt ids everywhere
    (controllers, trainer) are positions in this pool.

    Attributes
    ----------
    name : str
    examples : list of Example
    prompts, answers, levels : list of str
    embeddings : ndarray, shape (n_prompts, d), or None
        Standardised example features (see the module docstring), or None when the dataset gives
        none.
    alphabet : str
        Sorted set of every character in the prompts and answers (a tokenizer must cover it).
    """

    def __init__(self, name: str, examples: Sequence[Example], verify: VerifyFn, *, seed: int,
                 options: dict[str, Any] | None = None):
        if len(examples) < 1:
            raise ValueError(f"task {name!r} produced no examples")
        for i, ex in enumerate(examples):
            if not isinstance(ex, Example):
                raise TypeError(f"task {name!r}: example {i} is a {type(ex).__name__}, expected Example")
            if not ex.prompt:
                raise ValueError(f"task {name!r}: example {i} has an empty prompt")
        self.name = name
        self.seed = seed
        self.options = dict(options or {})
        self.examples = list(examples)
        self.prompts = [ex.prompt for ex in self.examples]
        self.answers = [ex.answer for ex in self.examples]
        self.levels = [ex.level for ex in self.examples]
        self._verify = verify
        self.alphabet = "".join(sorted(set("".join(self.prompts) + "".join(self.answers))))
        feats = [ex.features for ex in self.examples]
        if all(f is not None for f in feats):
            x = np.asarray(feats, dtype=np.float64)
            if x.ndim != 2 or not np.all(np.isfinite(x)):
                raise ValueError(f"task {name!r}: example features must be finite vectors of one length")
            sd = x.std(axis=0)
            self.embeddings: np.ndarray | None = np.where(sd > 0, (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0),
                                                          0.0)
        else:
            self.embeddings = None

    @property
    def n_prompts(self) -> int:
        return len(self.examples)

    def prompt_ids_iv(self, prompt_ids: Any, name: str = "prompt_ids") -> np.ndarray:
        """Validate prompt ids (1-D ints in ``[0, n_prompts)``) and return them as int64."""
        ids = as_int_array(prompt_ids, name, ndim=1)
        bad = (ids < 0) | (ids >= self.n_prompts)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must be in [0, {self.n_prompts}), got {int(ids[i])} at index {i}")
        return ids

    def verify(self, prompt_ids: Any, completions: Sequence[str]) -> np.ndarray:
        """Rewards of ``completions[i]`` for prompt ``prompt_ids[i]`` (float64 in ``[0, 1]``).

        Raises ``ValueError`` if the verifier returns a value outside ``[0, 1]`` or not finite.
        """
        ids = self.prompt_ids_iv(prompt_ids)
        if len(completions) != ids.size:
            raise ValueError(f"completions has {len(completions)} entries but prompt_ids has {ids.size}")
        answers = self.answers
        out = np.fromiter((self._verify(c, answers[q]) for q, c in zip(ids.tolist(), completions)),
                          dtype=np.float64, count=ids.size)
        bad = ~((out >= 0.0) & (out <= 1.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"verifier of task {self.name!r} returned {float(out[i])!r} (must be in [0, 1]) for "
                             f"completion {completions[i]!r} of prompt {int(ids[i])}")
        return out

    def __repr__(self) -> str:
        return f"Task({self.name!r}, n_prompts={self.n_prompts}, seed={self.seed}, alphabet={self.alphabet!r})"


def make_task(name: str, *, n_prompts: int = 64, seed: int = 0, **options: Any) -> Task:
    """Build the prompt pool of registered task ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS` (an unknown name raises ``ValueError`` listing the valid ones).
    n_prompts : int >= 1
        Size of the prompt pool.
    seed : int >= 0
        Seed of the pool (the warm start draws its own examples from another seed).
    **options
        Extra keyword arguments of the task's ``examples`` function (override the registered ones).
    """
    if not isinstance(name, str):
        raise TypeError(f"task must be a string naming a registered task, got {type(name).__name__}")
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"unknown task {name!r}; valid tasks: {sorted(_REGISTRY)}")
    n = check_int_scalar(n_prompts, "n_prompts", lo=1)
    s = check_int_scalar(seed, "seed", lo=0)
    opts = {**spec.options, **options}
    examples = list(spec.examples(n, s, **opts))
    if len(examples) != n:
        raise ValueError(f"task {name!r} returned {len(examples)} examples, asked for n_prompts={n}")
    return Task(name, examples, spec.verify, seed=s, options=opts)


# ----------------------------------------------------------------------------------------------
# Built-in family: integer arithmetic with graded difficulty
# ----------------------------------------------------------------------------------------------

_OPS = "+-*"


def _carries(a: int, b: int, op: str) -> int:
    """Number of carries (``+``), borrows (``-``, with ``a >= b``) or nonzero partial-product
    digits beyond the first (``*``): the elementary steps that make the problem hard."""
    if op == "*":
        return sum(1 for d in str(b) if d != "0") * len(str(a)) - 1
    n, carry = 0, 0
    while a > 0 or b > 0:
        da, db = a % 10, b % 10
        if op == "+":
            carry = 1 if da + db + carry >= 10 else 0
        else:
            carry = 1 if da - db - carry < 0 else 0
        n += carry
        a //= 10
        b //= 10
    return n


def arithmetic_examples(n_prompts: int, seed: int, *, max_digits: int = 2, ops: str = _OPS,
                        max_mul_digits: int = 1) -> list[Example]:
    """Integer arithmetic prompts ``"a<op>b="`` with graded difficulty.

    Each prompt draws an operator uniformly from ``ops`` and the number of digits of each operand
    uniformly from ``1..max_digits`` (``1..max_mul_digits`` for ``*``, whose answers grow fastest);
    operands are uniform among numbers with that many digits (0-9 for one digit). For ``-`` the
    operands are ordered so the result is non-negative. Difficulty therefore ranges from one-digit
    facts (easy) to multi-digit sums and differences with carries (rarely solved by a tiny model).

    The defaults (operands of 1-2 digits, one-digit products) are sized for the CPU demo: after
    the default warm start a 0.13 M-parameter model solves most one-digit problems and few
    two-digit ones. Larger models can take ``max_digits`` up to 9.

    Features (the task's embeddings): digits of a, digits of b, operator one-hot, number of
    carries/borrows (:func:`_carries`), answer length, ``log10(a + 1)``, ``log10(b + 1)``.
    """
    n = check_int_scalar(n_prompts, "n_prompts", lo=1)
    rng = check_rng(check_int_scalar(seed, "seed", lo=0))
    md = check_int_scalar(max_digits, "max_digits", lo=1, hi=9)
    mm = check_int_scalar(max_mul_digits, "max_mul_digits", lo=1, hi=9)
    if not isinstance(ops, str) or not ops or set(ops) - set(_OPS):
        raise ValueError(f"ops must be a non-empty string of characters from {_OPS!r}, got {ops!r}")
    op_list = sorted(set(ops), key=_OPS.index)
    out = []
    for _ in range(n):
        op = op_list[int(rng.integers(len(op_list)))]
        top = min(md, mm) if op == "*" else md
        da, db = (int(rng.integers(1, top + 1)) for _ in range(2))
        a, b = (int(rng.integers(10 ** (d - 1) if d > 1 else 0, 10**d)) for d in (da, db))
        if op == "-" and a < b:
            a, b, da, db = b, a, db, da
        value = a + b if op == "+" else a - b if op == "-" else a * b
        answer = str(value)
        feats = (float(da), float(db), *(float(op == o) for o in _OPS), float(_carries(a, b, op)),
                 float(len(answer)), math.log10(a + 1), math.log10(b + 1))
        out.append(Example(f"{a}{op}{b}=", answer, feats, f"{op} {da}x{db}"))
    return out


def exact_match(completion: str, answer: str) -> float:
    """1.0 if the completion, stripped of surrounding whitespace, equals the answer, else 0.0."""
    return 1.0 if completion.strip() == answer else 0.0


def digit_partial_credit(completion: str, answer: str) -> float:
    """Partial credit for a numeric answer: right-aligned matching characters over the longer length.

    ``score = #{i : c[-i] == a[-i]} / max(len(c), len(a))`` with ``c`` the stripped completion:
    1.0 exactly when the completion equals the answer, 0.0 for an empty completion; a wrong
    length costs in proportion (``"123"`` vs ``"1234"``: 0; ``"1235"`` vs ``"1234"``: 0.75).
    """
    c = completion.strip()
    if not c:
        return 0.0
    hits = sum(1 for x, y in zip(reversed(c), reversed(answer)) if x == y)
    return hits / max(len(c), len(answer))


register_task("arithmetic", arithmetic_examples, exact_match,
              description="integer +, -, * (operands of 1-2 digits, products 1x1 by default); exact-match reward (1/0)")
register_task("arithmetic-partial", arithmetic_examples, digit_partial_credit,
              description="the arithmetic prompts with partial credit (right-aligned matching digits)")
