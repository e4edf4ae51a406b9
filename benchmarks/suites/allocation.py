"""Perf suite "allocation": exact per-prompt rollout allocation (VIP Thm 5.1/5.2, eq. 5) vs peers.

Ours: :func:`solvers.allocate` (validation, Numba solve and post-solve certificate all inside the
timed call), continuous and ``integer=True``, for the ``rloo`` and ``drgrpo`` costs.

Problem (one shared generator, seeded by ``cfg.seed``): B prompts with success probabilities
p ~ Beta(0.5, 0.5), 10 % of them exactly solved or hopeless (p in {0, 1}, so a = 0),
a_q = 4 p_q (1 - p_q), bounds 3 <= n_q <= 32, budget C = 8 B (VIP's setting: eight rollouts per
prompt on average).

Peers, measured in the same run on the same problem:

* ``cvxpy-clarabel``: the continuous relaxation written in DCP form,
  ``sum(multiply(a, inv_pos(n - 1)))`` with ``sum(n) == C`` and the bounds, solved by CLARABEL
  (problem construction included, as a training loop would rebuild it each step). rloo only: the
  Dr.GRPO cost ``a (n-1)/n^2`` is not DCP-representable as written.
* ``scipy-slsqp``: ``scipy.optimize.minimize(method="SLSQP")`` on the same objective with the
  equality constraint and the box bounds, analytic gradient, start at the uniform allocation, scipy's
  default options (maxiter=100, ftol=1e-6; the ``note`` shows the objective it reaches). This is
  SLSQP at its best on the paper's problem. Small B only (dense QP subproblems, O(B^3) per
  iteration; not in ``--quick`` runs, where one call would dominate).
* ``scipy-slsqp (VIP code)``: SLSQP set up the way the public VIP reference code
  (github.com/HieuNT91/VIP, ``src/vip/allocation/bernoulli_allocation.py``, function ``solve``)
  does it: objective ``sum a/(n-1) + gamma n log p`` (rloo, ``gamma = 7e-4``) or
  ``sum a(n-1)/n^2 + gamma n log p`` (drgrpo, ``gamma = 4e-4``) with ``p`` clipped to
  ``[1e-6, 1 - 1e-6]``, no gradient (SciPy's finite differences, one objective call per prompt per
  iteration), no constraint Jacobian, uniform start, default options. Written here from that
  description, not copied. The extra term changes the problem, so its objective (measured on the
  paper's cost, in the note) is worse than ours by construction; the row shows what that code costs
  per training step. Same sizes as ``scipy-slsqp``.
* Integer cases: the peers' continuous solution followed by VIP Algorithm 2
  (:func:`solvers.round_greedy`), i.e. the paper's pipeline.

Slow peers are skipped at larger sizes through :class:`~benchmarks.harness.PeerGate`. JIT compile
time is the first call of ``allocate`` in a fresh interpreter with an empty Numba cache
(``compile_s`` on our rows; one kernel serves every cost and mode, so the number is the same on all
of them); the first call when the disk cache is warm is given in the note.
Each row's ``note`` records the objective relative to ours (a peer must not be faster by being
wrong).
"""

from __future__ import annotations


import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "allocation"
DESCRIPTION = "exact rollout allocation (VIP Thm 5.1/5.2, eq. 5) vs cvxpy/CLARABEL and SLSQP (+ Alg. 2)"

LOWER, UPPER, PER_PROMPT = 3, 32, 8

_COMPILE_SNIPPET = r"""
import json, time
t = time.perf_counter()
import numpy as np
from solvers import allocate
out = {"import": time.perf_counter() - t}
a = np.random.default_rng(0).random(64)
t = time.perf_counter(); allocate(a, 8 * 64, 3, 32, cost="rloo", integer=True)
out["first_call"] = time.perf_counter() - t
print(json.dumps(out))
"""


def success_rates(size: int, seed: int) -> np.ndarray:
    """The success probabilities behind :func:`make_problem` (same seed, same values)."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, size)
    flip = rng.random(size) < 0.1
    p[flip] = rng.integers(0, 2, int(flip.sum()))
    return p


def make_problem(size: int, seed: int) -> tuple[np.ndarray, int]:
    """The suite's shared instance: (a, budget) for B = ``size`` prompts."""
    p = success_rates(size, seed)
    return 4.0 * p * (1.0 - p), PER_PROMPT * size


def cvxpy_rloo(a: np.ndarray, budget: float) -> np.ndarray:
    import cvxpy as cp

    n = cp.Variable(a.size)
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(a, cp.inv_pos(n - 1)))), [cp.sum(n) == budget, n >= LOWER, n <= UPPER]
    )
    prob.solve(solver=cp.CLARABEL)
    return np.clip(np.asarray(n.value, dtype=float), LOWER, UPPER)


def slsqp(a: np.ndarray, budget: float, cost: str) -> np.ndarray:
    from scipy.optimize import minimize

    if cost == "rloo":
        fun = lambda n: float(np.sum(a / (n - 1)))
        jac = lambda n: -a / (n - 1) ** 2
    else:
        fun = lambda n: float(np.sum(a * (n - 1) / n**2))
        jac = lambda n: -a * (n - 2) / n**3
    res = minimize(
        fun,
        np.full(a.size, budget / a.size),
        jac=jac,
        method="SLSQP",
        bounds=[(LOWER, UPPER)] * a.size,
        constraints=[{"type": "eq", "fun": lambda n: np.sum(n) - budget, "jac": lambda n: np.ones_like(n)}],
    )
    return np.clip(res.x, LOWER, UPPER)


VIP_CODE_GAMMA = {"rloo": 7e-4, "drgrpo": 4e-4}
"""Weight of the extra ``n log p`` term in the VIP reference code's SLSQP objective."""


def slsqp_vip_code(p: np.ndarray, budget: float, cost: str) -> np.ndarray:
    """SLSQP as the VIP reference code sets it up (see the module docstring)."""
    from scipy.optimize import minimize

    pc = np.clip(p, 1e-6, 1.0 - 1e-6)
    a = pc * (1.0 - pc)
    b = VIP_CODE_GAMMA[cost] * np.log(pc)
    if cost == "rloo":
        fun = lambda n: float(np.sum(a / (n - 1) + b * n))
    else:
        fun = lambda n: float(np.sum(a * (n - 1) / n**2 + b * n))
    res = minimize(
        fun,
        np.full(p.size, budget / p.size),
        method="SLSQP",
        bounds=[(LOWER, UPPER)] * p.size,
        constraints=[{"type": "eq", "fun": lambda n: np.sum(n) - budget}],
    )
    return np.clip(res.x, LOWER, UPPER)


def _objective(cost: str, a: np.ndarray, n: np.ndarray) -> float:
    n = np.asarray(n, dtype=float)
    return float(np.sum(a / (n - 1))) if cost == "rloo" else float(np.sum(a * (n - 1) / n**2))


def _rel(peer: float, ours: float) -> str:
    return f"objective {peer / ours - 1:+.1e} vs ours" if ours > 0 else ""


def run(cfg: PerfConfig) -> list[Measurement]:
    from solvers import allocate, round_greedy

    sizes = [512, 4096] if cfg.quick else [512, 4096, 65536, 1_000_000]
    drgrpo_max = 4096 if cfg.quick else 1_000_000
    slsqp_max = 0 if cfg.quick else 512  # one SLSQP call at B=512 takes minutes on a small box
    cold, warm = cold_start_times(cfg, NAME, _COMPILE_SNIPPET, runs=2)
    compile_s, cached_s = cold.get("first_call"), warm.get("first_call")
    cached_note = f"; first call from the Numba disk cache {cached_s:.2f} s" if cached_s is not None else ""
    # warm up the peers' imports and one-time setup so that first calls are not charged to them
    a_small, b_small = make_problem(16, cfg.seed)
    cvxpy_rloo(a_small, b_small)
    slsqp(a_small, b_small, "rloo")
    slsqp_vip_code(success_rates(16, cfg.seed), b_small, "rloo")
    for cost in ("rloo", "drgrpo"):
        cont = allocate(a_small, b_small, LOWER, UPPER, cost=cost)
        round_greedy(cont.n, a_small, b_small, LOWER, UPPER, cost=cost)
        allocate(a_small, b_small, LOWER, UPPER, cost=cost, integer=True)
    rows: list[Measurement] = []
    gates: dict[str, PeerGate] = {}  # one gate per case: a peer slow on rloo may still run on drgrpo
    for size in sizes:
        a, budget = make_problem(size, cfg.seed + size)
        p = success_rates(size, cfg.seed + size)
        for cost in ("rloo", "drgrpo"):
            if cost == "drgrpo" and size > drgrpo_max:
                continue
            for integer in (False, True):
                mode = "integer" if integer else "continuous"
                case = f"{cost}-{mode}"
                ours = allocate(a, budget, LOWER, UPPER, cost=cost, integer=integer)
                if not ours.success:
                    raise RuntimeError(f"allocate failed on {case} B={size}: {ours.message}")
                rows.append(
                    measure(
                        cfg, suite=NAME, case=case, size=size, impl="allocate", role="ours",
                        fn=lambda: allocate(a, budget, LOWER, UPPER, cost=cost, integer=integer),
                        compile_s=compile_s,
                        note="certified" + ("; lower_bound gap %.1e" % (ours.objective / ours.lower_bound - 1)
                                            if integer else "") + cached_note,
                    )
                )

                def then_round(n_cont: np.ndarray) -> np.ndarray:
                    return round_greedy(n_cont, a, budget, LOWER, UPPER, cost=cost).n

                gate = gates.setdefault(case, PeerGate(cfg))
                peers = []
                if cost == "rloo":
                    peers.append(("cvxpy-clarabel", lambda: cvxpy_rloo(a, budget)))
                if size <= slsqp_max:
                    peers.append(("scipy-slsqp", lambda: slsqp(a, budget, cost)))
                    peers.append(("scipy-slsqp (VIP code)", lambda: slsqp_vip_code(p, budget, cost)))
                for name, solve in peers:
                    impl = name + ("+alg2" if integer else "")
                    fn = (lambda solve=solve: then_round(solve())) if integer else solve
                    last: dict[str, np.ndarray] = {}

                    def timed(fn=fn, last=last) -> None:
                        last["n"] = fn()

                    try:
                        row = measure(cfg, suite=NAME, case=case, size=size, impl=impl, role="peer",
                                      fn=timed, gate=gate)
                    except Exception as exc:  # a peer failing is a result, not a crash
                        rows.append(Measurement(NAME, case, size, impl, "peer", None, note=f"failed: {exc!r}"))
                        continue
                    if "n" in last:
                        row.note = _rel(_objective(cost, a, last["n"]), _objective(cost, a, ours.n))  # same summation
                    rows.append(row)
    return rows
