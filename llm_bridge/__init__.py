"""The bridge into real GRPO training: verifiable tasks, a local character tokenizer, tiny models
with a cached warm start, generation backends (HF, vLLM) with a different number of rollouts per
prompt, the one robust step every host calls (:mod:`llm_bridge.robust_step`), ragged torch batches
and losses, and the trainer.

``llm_bridge`` uses :mod:`solvers` and :mod:`bandits` (never :mod:`sim`). torch, transformers,
tokenizers and vLLM are optional extras (``pip install "robust-rollouts[llm]"`` /
``"robust-rollouts[vllm]"``): importing this package imports none of them; the public names are
loaded on first access (PEP 562), and a missing extra raises an ``ImportError`` naming it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # tasks (pure Python + NumPy)
    "Example": "tasks", "Task": "tasks", "TaskSpec": "tasks", "TASKS": "tasks", "register_task": "tasks",
    "make_task": "tasks", "arithmetic_examples": "tasks", "exact_match": "tasks",
    "digit_partial_credit": "tasks",
    # tokenizer
    "char_tokenizer": "tokenizer", "check_tokenizer_covers": "tokenizer", "encode_prompts": "tokenizer",
    # models
    "ModelSpec": "models", "WarmStartConfig": "models", "WarmStartResult": "models", "build_model": "models",
    "load_model": "models", "warm_start": "models", "prompt_embeddings": "models",
    "count_parameters": "models", "default_cache_dir": "models", "ARCHITECTURES": "models",
    # generation
    "SamplingConfig": "generation", "RolloutBatch": "generation", "GenerationBackend": "generation",
    "HFBackend": "generation", "BACKENDS": "generation", "make_backend": "generation",
    "VLLMBackend": "vllm_backend",
    # the one robust step (shaping -> advantages of a registered kind -> multipliers) of every host
    "SHAPINGS": "robust_step", "Shaping": "robust_step", "RobustAdvantage": "robust_step",
    "RobustStepResult": "robust_step", "step_metrics": "robust_step",
    "success_values": "robust_step", "DEFAULT_KL_WINDOW": "robust_step",
    "ADVANTAGE_KINDS": "advantage_kinds", "AdvantageKind": "advantage_kinds", "kind_advantages": "advantage_kinds",
    # ragged batch and losses
    "AdvantageResult": "batch", "compute_advantages": "batch",
    "policy_token_logprobs": "batch", "sequence_logprobs": "batch",
    "AGGREGATIONS": "losses", "PolicyLoss": "losses", "aggregate": "losses", "clipped_policy_loss": "losses",
    "k3_token_kl": "losses", "token_entropy": "losses",
    # sampling in rounds: one controller step around a backend, merged rounds, the training selection
    "drive_step": "rounds", "merge_rollouts": "rounds", "training_batch": "rounds", "TrainingBatch": "rounds",
    "ResponseBank": "rounds", "has_selection_rule": "rounds", "host_support_iv": "rounds",
    # metrics and the trainer
    "success_metrics": "metrics", "pass_at_k": "metrics",
    "TrainConfig": "trainer", "Trainer": "trainer",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llm_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
