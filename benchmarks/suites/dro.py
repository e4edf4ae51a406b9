"""Perf suite "dro": the DRO duals (entropic, KL, chi-square worst cases) against cvxpy and SciPy.

Ours: :func:`solvers.entropic_worst_case` (NumPy log-sum-exp), :func:`solvers.kl_worst_case` and
:func:`solvers.chi2_worst_case` (Numba kernels); validation and the post-solve certificate
(feasibility + zero duality gap) are included in every timed call. Peers measured in the same run:

* cvxpy (CLARABEL) on the primal problem over ``B`` samples -- ``max q @ l + H(q)/eta``,
  ``max q @ l s.t. sum rel_entr(q, p) <= rho`` and ``max q @ l s.t. 1/2 sum (q - p)^2 / p <= rho``
  (problem built once outside the timed call; only ``solve`` is timed); skipped at larger ``B`` once
  one call exceeds ``cfg.max_peer_call_s`` (:class:`PeerGate`);
* a NumPy/SciPy peer: ``scipy.special.logsumexp`` + softmax for the entropic case, and a bounded
  1-D SciPy minimisation of the dual for KL / chi-square (``solvers.dro_duals._kl_reference`` /
  ``_chi2_reference``, the slow twins the tests use).

A batched case solves ``512 x 16`` rows (one problem per prompt group) in one call against the
per-row SciPy loop. JIT compile time is measured in a fresh interpreter with an empty Numba cache and
reported in ``compile_s`` (never in the medians). Ratios are peer median / our median.
"""

from __future__ import annotations


import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "dro"
DESCRIPTION = "DRO duals (entropic / KL / chi-square worst case) vs cvxpy CLARABEL and SciPy 1-D duals"

ETA = 10.0
RHO = 0.1

_COMPILE_SNIPPET = r"""
import json, time
import numpy as np
from solvers.dro_duals import kl_worst_case, chi2_worst_case, entropic_worst_case
l = np.random.default_rng(0).normal(size=16)
out = {}
t = time.perf_counter(); entropic_worst_case(l, 10.0); out["entropic"] = time.perf_counter() - t
t = time.perf_counter(); kl_worst_case(l, None, 0.1); out["kl"] = time.perf_counter() - t
t = time.perf_counter(); chi2_worst_case(l, None, 0.1); out["chi2"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _entropic_numpy(l: np.ndarray, eta: float):
    from scipy.special import logsumexp

    z = eta * l
    lse = logsumexp(z)
    return lse / eta, np.exp(z - lse)


def _cvxpy_problem(kind: str, l: np.ndarray, p: np.ndarray):
    import cvxpy as cp

    q = cp.Variable(l.size, nonneg=True)
    if kind == "entropic":
        prob = cp.Problem(cp.Maximize(q @ l + cp.sum(cp.entr(q)) / ETA), [cp.sum(q) == 1])
    elif kind == "kl":
        prob = cp.Problem(cp.Maximize(q @ l), [cp.sum(q) == 1, cp.sum(cp.rel_entr(q, p)) <= RHO])
    else:
        div = 0.5 * cp.sum(cp.multiply(cp.square(q - p), 1.0 / p))
        prob = cp.Problem(cp.Maximize(q @ l), [cp.sum(q) == 1, div <= RHO])
    return prob, lambda: prob.solve(solver=cp.CLARABEL)


def run(cfg: PerfConfig) -> list[Measurement]:
    from solvers.dro_duals import (
        _chi2_reference,
        _kl_reference,
        chi2_worst_case,
        entropic_worst_case,
        kl_worst_case,
    )

    rng = np.random.default_rng(cfg.seed)
    compile_s = cold_start_times(cfg, NAME, _COMPILE_SNIPPET)[0]
    sizes = [512, 4096] if cfg.quick else [512, 4096, 65536]
    ours = {
        "entropic": lambda l, p: entropic_worst_case(l, ETA),
        "kl": lambda l, p: kl_worst_case(l, p, RHO),
        "chi2": lambda l, p: chi2_worst_case(l, p, RHO),
    }
    numpy_peer = {
        "entropic": (lambda l, p: _entropic_numpy(l, ETA), "scipy logsumexp + softmax"),
        "kl": (lambda l, p: _kl_reference(l, p, RHO), "scipy bounded 1-D dual"),
        "chi2": (lambda l, p: _chi2_reference(l, p, RHO), "scipy bounded 1-D dual"),
    }
    rows: list[Measurement] = []
    for kind in ("entropic", "kl", "chi2"):
        gate = PeerGate(cfg)
        case = f"{kind} worst case"
        param = f"eta={ETA}" if kind == "entropic" else f"rho={RHO}"
        for b in sizes:
            l = rng.normal(size=b)
            p = rng.dirichlet(np.full(b, 5.0))
            res = ours[kind](l, p)
            if not res.success:
                raise RuntimeError(f"{case}: our solver failed at B={b}: {res.message}")
            peer_fn, peer_name = numpy_peer[kind]
            peer_value = peer_fn(l, p)[0]
            if abs(peer_value - res.value) > 1e-6 * (1 + abs(res.value)):
                raise RuntimeError(f"{case}: {peer_name} disagrees at B={b}: {peer_value} vs {res.value}")
            rows.append(
                measure(cfg, suite=NAME, case=case, size=b, impl=f"{kind}_worst_case", role="ours",
                        fn=lambda l=l, p=p: ours[kind](l, p), compile_s=compile_s.get(kind),
                        note=f"{param}, validation + certificate included")
            )
            rows.append(
                measure(cfg, suite=NAME, case=case, size=b, impl=peer_name, role="peer",
                        fn=lambda l=l, p=p: peer_fn(l, p), gate=gate, note=param)
            )
            note = f"{param}; problem built once, solve() timed"
            if gate.allowed("cvxpy CLARABEL"):
                prob, solve = _cvxpy_problem(kind, l, p)
            else:
                solve = None
            try:
                m = measure(cfg, suite=NAME, case=case, size=b, impl="cvxpy CLARABEL", role="peer",
                            fn=solve if solve is not None else (lambda: None), gate=gate, note=note)
            except Exception as exc:  # the solver itself can fail at large B: report, don't time
                cfg.log(f"  [{NAME}] {case} size={b} cvxpy CLARABEL failed: {exc}")
                rows.append(Measurement(NAME, case, b, "cvxpy CLARABEL", "peer", None,
                                        note=f"{param}; solver failed: {type(exc).__name__}"))
                continue
            if solve is not None and m.median_s is not None and prob.value is not None:
                if abs(prob.value - res.value) > 1e-4 * (1 + abs(res.value)):
                    m.note += f"; cvxpy value {prob.value:.8g} vs ours {res.value:.8g}"
            rows.append(m)
    # batched: one problem per prompt group
    p_rows, n = (64, 16) if cfg.quick else (512, 16)
    l2 = rng.normal(size=(p_rows, n))
    for kind, ref in (("kl", _kl_reference), ("chi2", _chi2_reference)):
        case = f"{kind} batched {n} per row"
        uniform = np.full(n, 1.0 / n)
        rows.append(
            measure(cfg, suite=NAME, case=case, size=p_rows, impl=f"{kind}_worst_case (2-D)", role="ours",
                    fn=lambda: ours[kind](l2, None), compile_s=compile_s.get(kind),
                    note=f"{p_rows}x{n}, rho={RHO}, certificate included")
        )
        rows.append(
            measure(cfg, suite=NAME, case=case, size=p_rows, impl="scipy 1-D dual per-row loop",
                    role="peer", fn=lambda ref=ref: [ref(row, uniform, RHO) for row in l2],
                    gate=PeerGate(cfg), note=f"{p_rows}x{n}")
        )
    return rows
