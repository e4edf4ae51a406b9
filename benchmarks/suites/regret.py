"""Perf suite "regret": batched water-filling (DRRO Thm 3.4) and the DRO policy (Lemma H.1).

Ours: the Numba batched kernels behind :func:`solvers.waterfill` / :func:`solvers.dro_policy`
(validation and the LP-duality certificate included in the timed call).  Peers measured in the same
run: a vectorised NumPy implementation of the same math over the whole batch, the per-row NumPy twin
in a Python loop, and -- as a correctness-grade peer on a single prompt -- cvxpy (CLARABEL) on the
LP (3.7) / the DRO problem ``max <pi, r> - delta ||pi||_inf``.  JIT compile time is measured in a fresh
subprocess with an empty Numba cache and reported in ``compile_s`` (never in the medians).
"""

from __future__ import annotations


import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "regret"
DESCRIPTION = "batched water-filling (DRRO Thm 3.4) and DRO policy (Lemma H.1) vs NumPy and cvxpy"

_COMPILE_SNIPPET = r"""
import json, time
import numpy as np
from solvers.waterfill import waterfill
from solvers.dro_policy import dro_policy
r = np.random.default_rng(0).normal(size=(8, 16))
out = {}
t = time.perf_counter(); waterfill(r, 1.0); out["waterfill"] = time.perf_counter() - t
t = time.perf_counter(); dro_policy(r, 1.0); out["dro_policy"] = time.perf_counter() - t
print(json.dumps(out))
"""


def waterfill_numpy_batched(r: np.ndarray, delta: float) -> np.ndarray:
    """Straightforward vectorised NumPy water-filling over a (P, n) batch (same math as the kernel)."""
    p_rows, n = r.shape
    order = np.argsort(-r, axis=1, kind="stable")
    rs = np.take_along_axis(r, order, axis=1)
    d = rs[:, :1] - rs
    cum = np.cumsum(d, axis=1)
    k = np.arange(1, n + 1)
    k0 = n - np.argmax((k * d - cum < delta)[:, ::-1], axis=1)  # largest k with k d_k - D_k < delta
    big_k = n - np.argmax((cum <= delta)[:, ::-1], axis=1)  # largest k with D_k <= delta
    rows = np.arange(p_rows)
    u0 = (delta + cum[rows, k0 - 1]) / k0
    d_next = np.where(big_k < n, d[rows, np.minimum(big_k, n - 1)], np.inf)
    ustar = np.minimum(u0, d_next)
    p_sorted = np.maximum(ustar[:, None] - d, 0.0) / delta
    top = d == 0.0
    p_sorted += top * ((1.0 - p_sorted.sum(axis=1)) / top.sum(axis=1))[:, None]
    out = np.empty_like(r)
    np.put_along_axis(out, order, p_sorted, axis=1)
    return out


def dro_numpy_batched(r: np.ndarray, delta: float) -> np.ndarray:
    """Straightforward vectorised NumPy DRO policy (Lemma H.1; largest maximiser of A_k - delta/k)."""
    p_rows, n = r.shape
    order = np.argsort(-r, axis=1, kind="stable")
    rs = np.take_along_axis(r, order, axis=1)
    k = np.arange(1, n + 1)
    v = np.cumsum(rs, axis=1) / k - delta / k
    m = n - np.argmax(v[:, ::-1], axis=1)
    p_sorted = (k[None, :] <= m[:, None]) / m[:, None]
    out = np.empty_like(r)
    np.put_along_axis(out, order, p_sorted, axis=1)
    return out


def _cvxpy_lp(r: np.ndarray, delta: float):
    import cvxpy as cp

    pi = cp.Variable(r.size, nonneg=True)
    t = cp.Variable()
    prob = cp.Problem(cp.Maximize(r @ pi - t), [cp.sum(pi) == 1, t >= r - delta * pi])
    return lambda: prob.solve(solver=cp.CLARABEL)


def _cvxpy_dro(r: np.ndarray, delta: float):
    import cvxpy as cp

    pi = cp.Variable(r.size, nonneg=True)
    prob = cp.Problem(cp.Maximize(r @ pi - delta * cp.norm(pi, "inf")), [cp.sum(pi) == 1])
    return lambda: prob.solve(solver=cp.CLARABEL)


def run(cfg: PerfConfig) -> list[Measurement]:
    from solvers.dro_policy import dro_policy, dro_policy_numpy
    from solvers.waterfill import waterfill, waterfill_numpy

    rng = np.random.default_rng(cfg.seed)
    delta = 2.5
    compile_s = cold_start_times(cfg, NAME, _COMPILE_SNIPPET)[0]
    rows: list[Measurement] = []
    n16_sizes = [512] if cfg.quick else [512, 4096, 32768]
    cases = [("n=16", 16, n16_sizes), ("n=256", 256, [64] if cfg.quick else [512])]
    for algo, ours_fn, vec_fn, twin in (
        ("waterfill", waterfill, waterfill_numpy_batched, waterfill_numpy),
        ("dro_policy", dro_policy, dro_numpy_batched, dro_policy_numpy),
    ):
        for label, n, sizes in cases:
            gate = PeerGate(cfg)
            case = f"{algo} {label}"
            for p_rows in sizes:
                r = rng.normal(size=(p_rows, n))
                ref = ours_fn(r, delta)
                if not np.allclose(vec_fn(r, delta), ref, atol=1e-10):
                    raise RuntimeError(f"{case}: vectorised NumPy peer disagrees with ours at P={p_rows}")
                rows.append(
                    measure(cfg, suite=NAME, case=case, size=p_rows, impl=f"{algo} (numba)", role="ours",
                            fn=lambda r=r: ours_fn(r, delta), compile_s=compile_s.get(algo),
                            note=f"{p_rows}x{n}, certificate included")
                )
                rows.append(
                    measure(cfg, suite=NAME, case=case, size=p_rows, impl="numpy vectorised", role="peer",
                            fn=lambda r=r: vec_fn(r, delta), gate=gate, note=f"{p_rows}x{n}, no certificate")
                )
                rows.append(
                    measure(cfg, suite=NAME, case=case, size=p_rows, impl="numpy per-row loop", role="peer",
                            fn=lambda r=r: [twin(row, delta) for row in r], gate=gate, note=f"{p_rows}x{n}")
                )
        # single prompt: ours (1-D call) vs cvxpy on the same problem
        r1 = rng.normal(size=16)
        solve = _cvxpy_lp(r1, delta) if algo == "waterfill" else _cvxpy_dro(r1, delta)
        case = f"{algo} single prompt n=16"
        rows.append(
            measure(cfg, suite=NAME, case=case, size=1, impl=f"{algo} (numba)", role="ours",
                    fn=lambda: ours_fn(r1, delta), compile_s=compile_s.get(algo))
        )
        rows.append(
            measure(cfg, suite=NAME, case=case, size=1, impl="cvxpy CLARABEL", role="peer", fn=solve,
                    gate=PeerGate(cfg), note="LP (3.7)" if algo == "waterfill" else "max <pi,r> - delta ||pi||_inf")
        )
    return rows
