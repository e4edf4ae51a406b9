"""Perf suite "budget": bin-level rollout budgeting of Rollout-GDRO.

* ``match_budget`` (GDRO App. C.2.2 exact DP budget matching; validation and certificate included
  in the timed call) at the training configuration (batch 256, 10 bins, arms 2..12, mean budget 4)
  and larger ones (the batch grows with the number of bins, 25.6 prompts per bin). Peers: the same
  problem as a mixed-integer LP solved by ``scipy.optimize.milp`` (HiGHS), and the plain-Python DP
  twin of the kernel.
* ``sqrt_allocation`` (GDRO eq. 20-21 with bounds 2..12; safeguarded Newton on the piecewise-linear
  budget, exact root of the final piece) at B bins.
  Peer: cvxpy (CLARABEL) on the same convex problem (setup outside the timed call).

JIT compile time is measured in a fresh subprocess with an empty Numba cache and reported in
``compile_s`` (never in the medians).
"""

from __future__ import annotations


import numpy as np

from ..harness import Measurement, PeerGate, PerfConfig, cold_start_times, measure

NAME = "budget"
DESCRIPTION = "Rollout-GDRO budgeting: exact DP budget matching vs MILP (HiGHS); square-root law vs cvxpy"

ARMS = np.arange(2, 13)
MEAN_BUDGET = 4

_COMPILE_SNIPPET = r"""
import json, time
import numpy as np
from solvers.budget_matching import match_budget
from solvers.sqrt_law import sqrt_allocation
arms = np.arange(2, 13)
costs = np.random.default_rng(0).uniform(size=(3, 11))
out = {}
t = time.perf_counter(); match_budget(costs, [2, 3, 1], arms, 24); out["match_budget"] = time.perf_counter() - t
t = time.perf_counter(); sqrt_allocation([1.0, 2.0], [0.5, 0.5], 4.0, lower=2, upper=12)
out["sqrt_allocation"] = time.perf_counter() - t
print(json.dumps(out))
"""


def match_budget_instance(n_bins: int, rng: np.random.Generator):
    """Costs = variance proxy v_b / n plus a small per-rollout price, multinomial bin counts."""
    batch = int(round(25.6 * n_bins))
    counts = rng.multinomial(batch, np.full(n_bins, 1.0 / n_bins))
    v = rng.uniform(0.1, 2.0, n_bins)
    costs = v[:, None] / ARMS[None, :] + 0.01 * ARMS[None, :]
    return costs, counts, MEAN_BUDGET * batch


def milp_peer(costs, counts, total):
    """The budget-matching problem as a MILP: binary x[b, k], one arm per bin, exact total."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix, kron, eye

    n_bins, n_arms = costs.shape
    c = (counts[:, None] * costs).ravel()
    one_per_bin = kron(eye(n_bins), np.ones((1, n_arms)))
    budget_row = csr_matrix((counts[:, None] * ARMS[None, :]).ravel()[None, :].astype(float))
    cons = [
        LinearConstraint(one_per_bin, 1, 1),
        LinearConstraint(budget_row, total, total),
    ]
    integrality = np.ones(c.size)

    def solve():
        res = milp(c, constraints=cons, integrality=integrality, bounds=Bounds(0, 1))
        return res.fun

    return solve


def cvxpy_sqrt_peer(v, shares, n_bar, lower, upper):
    import cvxpy as cp

    x = cp.Variable(v.size)
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(shares * v, cp.inv_pos(x)))),
        [shares @ x == n_bar, x >= lower, x <= upper],
    )
    return lambda: prob.solve(solver=cp.CLARABEL)


def run(cfg: PerfConfig) -> list[Measurement]:
    from solvers.budget_matching import _budget_dp_python, match_budget
    from solvers.sqrt_law import sqrt_allocation

    rng = np.random.default_rng(cfg.seed)
    compile_s = cold_start_times(cfg, NAME, _COMPILE_SNIPPET)[0]
    rows: list[Measurement] = []

    gate = PeerGate(cfg)
    for n_bins in [10] if cfg.quick else [10, 20, 50, 100]:
        costs, counts, total = match_budget_instance(n_bins, rng)
        ours = match_budget(costs, counts, ARMS, total)
        peer = milp_peer(costs, counts, total)
        ref = peer()
        if ours.objective > ref + 1e-7 * max(1.0, abs(ref)):
            raise AssertionError(f"match_budget {ours.objective} worse than MILP {ref} at B={n_bins}")
        size = f"B={n_bins},M={int(counts.sum())}"
        rows.append(
            measure(cfg, suite=NAME, case="match_budget", size=size, impl="match_budget (numba DP)",
                    role="ours", fn=lambda: match_budget(costs, counts, ARMS, total),
                    compile_s=compile_s.get("match_budget"))
        )
        rows.append(
            measure(cfg, suite=NAME, case="match_budget", size=size, impl="scipy milp (HiGHS)",
                    role="peer", fn=peer, gate=gate)
        )
        arm_min = int(ARMS.min())
        inc = counts[:, None] * (ARMS[None, :] - arm_min)
        w = counts[:, None] * costs
        target = total - arm_min * int(counts.sum())
        rows.append(
            measure(cfg, suite=NAME, case="match_budget", size=size, impl="pure-Python DP twin",
                    role="peer", fn=lambda: _budget_dp_python(w, inc, target), gate=gate)
        )

    gate = PeerGate(cfg)
    for n_bins in [10, 512] if cfg.quick else [10, 512, 4096, 65536]:
        v = rng.uniform(0.0, 2.0, n_bins)
        shares = rng.dirichlet(np.ones(n_bins))
        lower, upper = 2.0, 12.0
        ours = sqrt_allocation(v, shares, MEAN_BUDGET, lower=lower, upper=upper)
        rows.append(
            measure(cfg, suite=NAME, case="sqrt_allocation", size=n_bins, impl="sqrt_allocation (numba)",
                    role="ours", fn=lambda: sqrt_allocation(v, shares, MEAN_BUDGET, lower=lower, upper=upper),
                    compile_s=compile_s.get("sqrt_allocation"))
        )
        if gate.allowed("cvxpy (CLARABEL)"):
            peer = cvxpy_sqrt_peer(v, shares, MEAN_BUDGET, lower, upper)
            ref = peer()
            if ours.objective > ref * (1 + 1e-5) + 1e-9:
                raise AssertionError(f"sqrt_allocation {ours.objective} worse than cvxpy {ref} at B={n_bins}")
        else:
            peer = None
        rows.append(
            measure(cfg, suite=NAME, case="sqrt_allocation", size=n_bins, impl="cvxpy (CLARABEL)",
                    role="peer", fn=peer, gate=gate)
        )
    return rows
