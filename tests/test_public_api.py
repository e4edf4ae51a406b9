"""The public API is importable from the packages, and the layering holds:
``solvers`` <- ``bandits`` <- ``benchmarks``; heavy optional dependencies are not imported eagerly."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SOLVERS_API = [
    "allocate", "round_greedy", "sqrt_allocation", "match_budget", "grad_variance",
    "variance_proxy", "weighted_standard_error", "worst_case_regret", "waterfill", "dro_policy",
    "soft_regret_objective", "soft_regret_grad", "drro_rewards", "dro_rewards", "k3_kl",
    "dynamic_budget", "group_advantages", "entropic_worst_case", "kl_worst_case", "chi2_worst_case",
    "rebel_loss", "dro_rebel_weights", "wasserstein_penalty", "rebel_step_linear",
    "concentrability", "relative_concentrability", "dro_certificate", "drro_certificate",
    "wasserstein_collapse_radius",
]  # fmt: skip
BANDITS_API = [
    "Exp3", "Exp3P", "Exp3IX", "GroupDRO", "GDROExp3P", "PassAtKBinner", "PosteriorBinner", "make_binner",
    "PromptGDRO",
    "RolloutGDRO", "GPSuccessPredictor", "MovingAveragePredictor", "RidgePredictor",
    "BetaBinomialPredictor",
]  # fmt: skip


SIM_API = ["SoftmaxRLVR", "IndependentScoreBandit", "group_gradient_variance", "fisher_test", "Adam"]


@pytest.mark.parametrize(
    "package, names", [("solvers", SOLVERS_API), ("bandits", BANDITS_API), ("sim", SIM_API)]
)
def test_issue_api_is_exported(package, names):
    mod = __import__(package)
    for name in names:
        assert name in mod.__all__, name
        assert callable(getattr(mod, name)), name


def _project_imports(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("solvers", {"bandits", "benchmarks", "torch", "gpytorch", "cvxpy"}),
        ("bandits", {"benchmarks"}),
        ("sim", {"llm_bridge", "benchmarks", "torch", "matplotlib"}),
    ],
)
def test_dependencies_point_one_way(package, forbidden):
    assert not (_project_imports(package) & forbidden)


def test_importing_the_packages_does_not_import_heavy_extras():
    """matplotlib is the ``plot`` extra, torch/gpytorch the ``gp``/``llm`` extras, cvxpy a peer of the
    benchmarks: importing the library, the studies or the command line needs none of them."""
    code = (
        "import sys, solvers, bandits, sim, sim.studies, llm_bridge, benchmarks.cli; "
        "print(sorted(m for m in ('torch', 'gpytorch', 'cvxpy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"

