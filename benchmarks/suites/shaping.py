"""Perf suite "shaping": DRRO/DRO shaped rewards (DRRO eq. 4.14/4.15) and group advantages.

Ours: the validated public functions :func:`solvers.drro_rewards`, :func:`solvers.dro_rewards`
(Numba kernel + the post-solve certificate, all diagnostics returned) and
:func:`solvers.group_advantages` (Numba kernels, dense and ragged). Peers measured in the same run:
straightforward vectorised NumPy implementations of the same math (no validation, no certificate,
rewards only) -- for the ragged advantages, the ``np.bincount`` segment-sum twin. Every peer's output
is checked against ours before timing. Sizes are P prompts x G = 16 rollouts (this project's target,
:mod:`benchmarks.targets`: <= 0.1 ms at 512 x 16). JIT compile time is measured in a fresh subprocess with an empty Numba cache
and reported in ``compile_s`` (never in the medians).
"""

from __future__ import annotations


import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "shaping"
DESCRIPTION = "DRRO/DRO shaped rewards (eq. 4.14/4.15) and GRPO/Dr.GRPO/RLOO advantages vs NumPy"

GROUP = 16
DELTA = 2.5 * GROUP  # the paper's standard fixed scaled budget
TAU = 2.0  # the paper's standard soft temperature

_COMPILE_SNIPPET = r"""
import json, time
import numpy as np
from solvers.shaping import drro_rewards
from solvers.advantages import group_advantages
rng = np.random.default_rng(0)
r = rng.normal(size=(8, 16)); lp = rng.normal(size=(8, 16))
out = {}
t = time.perf_counter(); drro_rewards(r, lp, 1.0); out["shaping hard"] = time.perf_counter() - t
t = time.perf_counter(); drro_rewards(r, lp, 1.0, tau=1.0); out["shaping soft"] = time.perf_counter() - t
t = time.perf_counter(); group_advantages(r, kind="grpo"); out["advantages dense"] = time.perf_counter() - t
ids = np.repeat(np.arange(8), 16)
t = time.perf_counter(); group_advantages(r.ravel(), kind="grpo", group_ids=ids)
out["advantages ragged"] = time.perf_counter() - t
print(json.dumps(out))
"""


# ----------------------------------------------------------------------------- NumPy peers
def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def shaped_numpy(r: np.ndarray, lp: np.ndarray, delta: float, tau: float | None, value_robust: bool) -> np.ndarray:
    """Vectorised NumPy shaping: log-softmax probs, then argmax (hard) or SNIS softmax (soft)."""
    log_pi = _log_softmax(lp)
    pi = np.exp(log_pi)
    sign = -1.0 if value_robust else 1.0
    score = delta * pi if value_robust else r - delta * pi
    out = r.copy()
    if tau is None:
        k = np.argmax(pi if value_robust else score, axis=1)
        out[np.arange(r.shape[0]), k] += sign * delta
        return out
    log_u = score / tau - log_pi
    log_u -= log_u.max(axis=1, keepdims=True)
    u = np.exp(log_u)
    w = u / u.sum(axis=1, keepdims=True)
    return out + sign * delta * r.shape[1] * w * pi


def advantages_numpy(r: np.ndarray, kind: str, eps: float = 1e-6) -> np.ndarray:
    """Vectorised NumPy dense advantages (population std for GRPO; size-1/constant groups -> 0)."""
    n = r.shape[1]
    centred = r - r.mean(axis=1, keepdims=True)
    if kind == "grpo":
        adv = centred / (r.std(axis=1, keepdims=True) + eps)
    elif kind == "rloo":
        adv = centred * (n / (n - 1)) if n > 1 else np.zeros_like(r)
    else:
        adv = centred
    constant = (r.max(axis=1) == r.min(axis=1))[:, None]
    return np.where(constant, 0.0, adv)


def run(cfg: PerfConfig) -> list[Measurement]:
    from solvers.advantages import _group_advantages_numpy, group_advantages
    from solvers.shaping import dro_rewards, drro_rewards

    rng = np.random.default_rng(cfg.seed)
    compile_s = cold_start_times(cfg, NAME, _COMPILE_SNIPPET)[0]
    rows: list[Measurement] = []
    sizes = [512] if cfg.quick else [512, 4096]
    shapers = {"drro": (drro_rewards, False), "dro": (dro_rewards, True)}
    for name, (fn, value_robust) in shapers.items():
        for tau in (None, TAU):
            case = f"{name}-{'hard' if tau is None else 'soft'} G={GROUP}"
            gate = PeerGate(cfg)
            for p_rows in sizes:
                r = rng.normal(size=(p_rows, GROUP))
                lp = rng.normal(loc=-200.0, scale=30.0, size=(p_rows, GROUP))
                ours = fn(r, lp, DELTA, tau=tau)
                if not (ours.success and np.allclose(shaped_numpy(r, lp, DELTA, tau, value_robust), ours.rewards,
                                                     rtol=1e-10, atol=1e-10)):
                    raise RuntimeError(f"{case}: NumPy peer disagrees with ours at P={p_rows}")
                note = f"{p_rows}x{GROUP}, delta={DELTA:g}" + ("" if tau is None else f", tau={TAU:g}")
                rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl=f"{name}_rewards (numba)",
                                    role="ours", fn=lambda r=r, lp=lp: fn(r, lp, DELTA, tau=tau),
                                    compile_s=compile_s.get("shaping hard" if tau is None else "shaping soft"),
                                    note=note + "; validation, diagnostics and certificate included"))
                rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl="numpy vectorised", role="peer",
                                    fn=lambda r=r, lp=lp: shaped_numpy(r, lp, DELTA, tau, value_robust),
                                    gate=gate, note=note + "; rewards only"))
    for kind in ("grpo", "drgrpo", "rloo"):
        case = f"advantages {kind} dense G={GROUP}"
        gate = PeerGate(cfg)
        for p_rows in sizes:
            r = rng.integers(0, 2, size=(p_rows, GROUP)).astype(float)  # binary rewards, as in RLVR
            if not np.allclose(advantages_numpy(r, kind), group_advantages(r, kind=kind), atol=1e-12):
                raise RuntimeError(f"{case}: NumPy peer disagrees with ours at P={p_rows}")
            rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl="group_advantages (numba)",
                                role="ours", fn=lambda r=r: group_advantages(r, kind=kind),
                                compile_s=compile_s.get("advantages dense"), note=f"{p_rows}x{GROUP}"))
            rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl="numpy vectorised", role="peer",
                                fn=lambda r=r: advantages_numpy(r, kind), gate=gate, note=f"{p_rows}x{GROUP}"))
    for kind in ("grpo", "rloo"):
        case = f"advantages {kind} ragged (4-28 rollouts)"
        gate = PeerGate(cfg)
        for p_rows in sizes:
            counts = rng.integers(4, 29, size=p_rows)
            ids = rng.permutation(np.repeat(np.arange(p_rows), counts))
            r = rng.integers(0, 2, size=ids.size).astype(float)
            if not np.allclose(_group_advantages_numpy(r, kind, ids), group_advantages(r, kind=kind, group_ids=ids),
                               atol=1e-12):
                raise RuntimeError(f"{case}: NumPy twin disagrees with ours at P={p_rows}")
            note = f"{p_rows} groups, {ids.size} rollouts, shuffled"
            rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl="group_advantages (numba)",
                                role="ours", fn=lambda r=r, ids=ids: group_advantages(r, kind=kind, group_ids=ids),
                                compile_s=compile_s.get("advantages ragged"), note=note))
            rows.append(measure(cfg, suite=NAME, case=case, size=p_rows, impl="numpy bincount", role="peer",
                                fn=lambda r=r, ids=ids: _group_advantages_numpy(r, kind, ids), gate=gate,
                                note=note))
    return rows
