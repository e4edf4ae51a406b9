"""Test sessions in separate virtual environments (``python -m pip install nox && nox``).

TRL and verl pin incompatible ``transformers`` ranges (verl 0.9.1 needs < 5.11, TRL 1.16 pulls
5.24), so each framework integration is tested in its own environment:

* ``core`` -- the project with its ``test``, ``gp`` and ``llm`` extras; every test except the
  framework integrations (those skip at import when their framework is absent anyway).
* ``trl``  -- the project with ``trl`` and ``test``; the tests marked ``trl`` (among them TRL's own
  GRPO trainer tests, ported offline, with ``RobustGRPOTrainer`` swapped in).
* ``verl`` -- the project with ``verl`` and ``test``; the tests marked ``verl`` (among them verl's
  estimator tests ported to the robust estimators), then verl's own estimator tests with the
  project's verl module loaded.

Every session installs the CPU build of torch first (``torch==2.13.0``: the pin only picks the
CPU wheel, the project itself asks for a range) so no framework pulls a multi-GB CUDA build, and
pins one torch/BLAS thread (on small shared machines more threads stall torch 10-30x). Sessions
use nox's default virtualenv backend with pip and start from an empty environment every run.
Run one with ``nox -s trl``; pass pytest arguments after ``--`` (``nox -s core -- -x -k waterfill``).
"""

from __future__ import annotations

import nox

nox.options.sessions = ["core", "trl", "verl"]
nox.options.reuse_venv = "no"
nox.options.error_on_missing_interpreters = True

PYTHON = None  # the interpreter that runs nox (CI: Python 3.11)
TORCH_CPU = "torch==2.13.0"
THREADS = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",  # nothing may download weights or data at test time
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _install(session: nox.Session, extras: str) -> None:
    session.env.update(THREADS)
    session.install(TORCH_CPU)
    session.install("-e", f".[{extras}]")
    # the framework must not have swapped the CPU torch for another build
    session.run("python", "-c", "import torch; v = torch.__version__; print('torch', v); "
                "assert torch.version.cuda is None, f'{v} is a CUDA build'", silent=False)


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """Solvers, bandits, sim, llm_bridge and benchmarks tests (no TRL, no verl)."""
    _install(session, "test,gp,llm")
    session.run("python", "-m", "pytest", "-q", "-m", "not trl and not verl", *session.posargs)


@nox.session(python=PYTHON)
def trl(session: nox.Session) -> None:
    """The TRL integration against the real ``trl`` package (``robust-rollouts[trl]``)."""
    _install(session, "trl,test")
    session.run("python", "-m", "pytest", "-q", "-m", "trl", "tests/integrations", *session.posargs)


@nox.session(python=PYTHON)
def verl(session: nox.Session) -> None:
    """The verl integration against the real ``verl`` package (``robust-rollouts[verl]``)."""
    _install(session, "verl,test")
    session.run("python", "-m", "pytest", "-q", "-m", "verl", "tests/integrations", *session.posargs)
    # verl's own CPU tests of its advantage estimators (shipped in verl's sdist), run with this project's
    # module loaded as a plugin: registering the robust estimators leaves verl's behaviour intact
    session.run("python", "-m", "pytest", "-q", "-p", "llm_bridge.integrations.verl", "-p", "no:cacheprovider",
                "--pyargs", "tests.trainer.ppo.test_core_algos_on_cpu",
                "tests.trainer.test_multi_trajectories_advantage_on_cpu")
