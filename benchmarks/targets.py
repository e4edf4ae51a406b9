"""This project's performance targets, checked against the rows of one perf run.

The targets live here, in :data:`TARGETS` (docs/architecture.md lists them for maintainers); a
report cites them as this project's targets.

Each :class:`Target` names the rows it reads (suite, case, size, implementation) and what must
hold: our median under ``max_s`` and/or a peer measured in the same run at least ``min_ratio``
times slower. :func:`check_targets` evaluates every target whose rows the run produced (a
``--quick`` or ``--suite`` run simply has fewer) and :func:`targets_table` renders the verdicts as
markdown -- the table the README's "Benchmark results" section is copied from.

A verdict is only as good as the machine: timings on a shared 2-core box vary by 10-30 % between
runs, so a ratio near its threshold can flip. The table prints the measured numbers, not only the
verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from .harness import Measurement, format_seconds

__all__ = ["TARGETS", "Target", "TargetResult", "check_targets", "targets_table"]


@dataclass(frozen=True)
class Target:
    """One performance target: our row, optionally a peer row, and the thresholds."""

    label: str
    suite: str
    case: str
    size: int | str
    impl: str
    max_s: float | None = None
    peer: str | None = None
    min_ratio: float | None = None
    max_mib: float | None = None
    extra: str | None = None  # the optional extra its suite needs (a run without it reports 'not run')

    def describe(self) -> str:
        parts = []
        if self.max_s is not None:
            parts.append(f"<= {format_seconds(self.max_s)}")
        if self.min_ratio is not None:
            parts.append(f">= {self.min_ratio:,.0f}x faster than {self.peer}")
        if self.max_mib is not None:
            parts.append(f"peak <= {self.max_mib:,.0f} MiB")
        return "; ".join(parts)


@dataclass(frozen=True)
class TargetResult:
    target: Target
    ours_s: float | None
    peer_s: float | None
    peak_mib: float | None
    met: bool | None  # None: the run did not produce the rows this target needs

    @property
    def ratio(self) -> float | None:
        if self.ours_s and self.peer_s:
            return self.peer_s / self.ours_s
        return None


def _alloc(case: str, size: int, *, max_s: float, cvxpy: bool) -> Target:
    return Target(
        label=f"allocate {case}, B = {size:,}",
        suite="allocation",
        case=case,
        size=size,
        impl="allocate",
        max_s=max_s,
        peer=("cvxpy-clarabel+alg2" if case.endswith("integer") else "cvxpy-clarabel") if cvxpy else None,
        min_ratio=1000.0 if cvxpy else None,
    )


TARGETS: tuple[Target, ...] = (
    # per-prompt allocation, B = 512: >= 1000x faster than cvxpy, well under 0.1 ms
    _alloc("rloo-continuous", 512, max_s=1e-4, cvxpy=True),
    _alloc("rloo-integer", 512, max_s=1e-4, cvxpy=True),
    _alloc("drgrpo-continuous", 512, max_s=1e-4, cvxpy=False),
    _alloc("drgrpo-integer", 512, max_s=1e-4, cvxpy=False),
    # same at B = 10^6: <= 0.1 s (cvxpy where it finishes: reported, not a threshold)
    _alloc("rloo-continuous", 1_000_000, max_s=0.1, cvxpy=False),
    _alloc("rloo-integer", 1_000_000, max_s=0.1, cvxpy=False),
    _alloc("drgrpo-continuous", 1_000_000, max_s=0.1, cvxpy=False),
    _alloc("drgrpo-integer", 1_000_000, max_s=0.1, cvxpy=False),
    # DRRO/DRO shaped rewards, 512 prompts x 16 rollouts: <= 0.1 ms
    *(
        Target(f"{fn} {mode}, 512 x 16", "shaping", f"{kind}-{mode} G=16", 512, f"{fn} (numba)", max_s=1e-4,
               peer="numpy vectorised")
        for fn, kind in (("drro_rewards", "drro"), ("dro_rewards", "dro"))
        for mode in ("hard", "soft")
    ),
    # Prompt-GDRO + Rollout-GDRO bookkeeping, batch 256, 10 bins, 11 arms: <= 1 ms per step
    Target("Prompt-GDRO step, batch 256", "gdro", "Prompt-GDRO step (multipliers + update)", 256,
           "PromptGDRO (numpy)", max_s=1e-3, peer="GDRO paper, REPORTED (not measured here)"),
    Target("Rollout-GDRO step, batch 256", "gdro", "Rollout-GDRO step (allocate + update)", 256,
           "RolloutGDRO (numpy + numba DP)", max_s=1e-3, peer="GDRO paper, REPORTED (not measured here)"),
    # GP success predictor, N = 17,398, d = 384, batch 512: <= 0.1 s per step, memory O(N d)
    # (N d float32 embeddings are 25 MiB; 256 MiB leaves room for the chunked temporaries and
    # is a tenth of the dense N x N kernel)
    Target("GP predictor update + predict, N = 17,398, d = 384", "predictor", "gp update+predict", 17_398,
           "GPSuccessPredictor (float32)", max_s=0.1, peer="dense Alg. 1 (N x N float64)", max_mib=256.0),
    # simulator step, SoftmaxRLVR, 256 prompts x 8 rollouts, 16 answers, dim 32: <= 2 ms
    Target("SoftmaxRLVR step (rollout + gradient), 256 x 8, K = 16, d = 32", "sim",
           "SoftmaxRLVR step (rollout + rloo gradient) K=16 d=32 n=8", 256, "SoftmaxRLVR (numba)", max_s=2e-3,
           peer="numpy loop"),
    # start-up: the first allocate call -- the default, continuous mode -- in a fresh interpreter
    # with an empty Numba cache (JIT compilation included, import excluded) <= 5 s. The coldstart suite
    # reports every entry point (integer and drgrpo modes compile a second kernel family) and the warm
    # (disk-cache) first calls beside it.
    Target("cold first allocate call (default continuous mode; fresh interpreter, empty Numba cache)",
           "coldstart", "allocate (rloo, continuous)", "fresh interpreter", "cold: empty Numba cache", max_s=5.0),
    # `robust-rollouts replay` of a 10^6-row rollout log (1000 steps x 1000 prompts), reading the CSV
    # and replaying every registered controller: <= 30 s on 2 cores
    Target("robust-rollouts replay of a 10^6-row log, every controller", "replay", "read + replay, every controller",
           1_000_000, "robust-rollouts replay", max_s=30.0),
    # LLM bridge, tiny model on CPU, 16 prompts x mean 8 rollouts x <= 16 new tokens: one GRPO step
    # <= 0.5 s; bridge overhead (allocation, shaping, advantages, bookkeeping) <= 5 % of the step
    *(
        t
        for ctrl in ("uniform", "vip", "rollout-gdro", "prompt-gdro")
        for t in (
            Target(f"LLM GRPO step ({ctrl}), tiny model, 16 x 8 x <=16 tokens", "llm", f"GRPO step ({ctrl})", 128,
                   "full step", max_s=0.5, extra="llm"),
            Target(f"LLM bridge overhead ({ctrl}) <= 5 % of the step", "llm", f"bridge overhead ({ctrl})", 128,
                   "bridge overhead", peer="full step", min_ratio=20.0, extra="llm"),
        )
    ),
)


def _find(rows: list[Measurement], suite: str, case: str, size: int | str, impl: str) -> Measurement | None:
    for m in rows:
        if m.suite == suite and m.case == case and str(m.size) == str(size) and m.impl == impl:
            return m
    return None


def check_targets(rows: list[Measurement], targets: tuple[Target, ...] = TARGETS) -> list[TargetResult]:
    """Evaluate every target against the rows of one run (``met=None`` where rows are missing)."""
    out = []
    for t in targets:
        ours = _find(rows, t.suite, t.case, t.size, t.impl)
        peer = _find(rows, t.suite, t.case, t.size, t.peer) if t.peer else None
        ours_s = ours.median_s if ours else None
        peer_s = peer.median_s if peer else None
        peak = ours.peak_mib if ours else None
        checks = []
        if t.max_s is not None:
            checks.append(None if ours_s is None else ours_s <= t.max_s)
        if t.min_ratio is not None:
            checks.append(None if not (ours_s and peer_s) else peer_s / ours_s >= t.min_ratio)
        if t.max_mib is not None:
            checks.append(None if peak is None else peak <= t.max_mib)
        met = None if any(c is None for c in checks) else all(checks)
        out.append(TargetResult(t, ours_s, peer_s, peak, met))
    return out


def targets_table(results: list[TargetResult]) -> str:
    """Markdown: target, ours, the peer and the ratio, the threshold, the verdict."""
    lines = [
        "| target | ours (median) | peer (median) | peer / ours | required | met |",
        "|---|---:|---|---:|---|:---:|",
    ]
    for r in results:
        t = r.target
        ours = format_seconds(r.ours_s) if r.ours_s is not None else "-"
        if r.peak_mib is not None:
            ours += f" (peak {r.peak_mib:,.0f} MiB)"
        peer = f"{t.peer}: {format_seconds(r.peer_s)}" if t.peer and r.peer_s is not None else (t.peer or "")
        ratio = "" if r.ratio is None else (f"{r.ratio:,.0f}x" if r.ratio >= 10 else f"{r.ratio:.2g}x")
        verdict = {True: "yes", False: "**no**", None: "not run"}[r.met]
        lines.append(f"| {t.label} | {ours} | {peer} | {ratio} | {t.describe()} | {verdict} |")
    return "\n".join(lines)
