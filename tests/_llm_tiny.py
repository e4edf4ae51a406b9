"""The tiny GRPO run the LLM trainer tests share (CPU, one thread, seconds): a 2-layer model built
from a config and a 3-step run on 12 arithmetic prompts with partial credit. Import it after
``pytest.importorskip("torch")``."""

from __future__ import annotations

from llm_bridge.generation import SamplingConfig
from llm_bridge.models import ModelSpec, WarmStartConfig
from llm_bridge.trainer import TrainConfig

TINY = ModelSpec(hidden_size=32, num_layers=2, num_heads=2, max_positions=32)


def tiny_config(cache: str, **kw) -> TrainConfig:
    """The shared run's :class:`TrainConfig` (mean budget 3 in [1, 8]) with its warm start cached in
    ``cache``; ``kw`` overrides any field."""
    base = {"task": "arithmetic-partial", "n_prompts": 12, "prompts_per_step": 6, "model": TINY,
            "warm_start": WarmStartConfig(steps=100, batch_size=32, n_examples=512), "cache_dir": cache,
            "sampling": SamplingConfig(max_new_tokens=5), "minibatch_size": 8, "mean_budget": 3, "lower": 1,
            "upper": 8, "steps": 3, "lr": 1e-3}
    base.update(kw)
    return TrainConfig(**base)
