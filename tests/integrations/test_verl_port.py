"""verl's own advantage-estimator tests, ported to the robust estimators (``nox -s verl``).

verl 0.9.1 ships CPU tests of its estimators (``tests/trainer/ppo/test_core_algos_on_cpu.py``:
``rloo`` vs ``rloo_vectorized`` and ``grpo`` vs ``grpo_vectorized`` on random uneven groups of two
or more, a low-variance GRPO case; ``tests/trainer/test_multi_trajectories_advantage_on_cpu.py``:
the V1 multi-trajectory path for single- and multi-output sessions). Here each case is written anew
with the same data and the same assertions, with a robust estimator in place of one side: the
robust estimators must equal verl's own (``torch.equal`` against the loop implementations, which
they reproduce operation for operation; verl's tolerances against the vectorized ones). The
``verl`` session also runs verl's original test files with this project's module loaded, to show
that registering the estimators leaves verl's own behaviour intact.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl")
torch.set_num_threads(1)

from omegaconf import OmegaConf
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import (
    AdvantageEstimator,
    compute_grpo_outcome_advantage,
    compute_grpo_vectorized_outcome_advantage,
    compute_rloo_outcome_advantage,
    compute_rloo_vectorized_outcome_advantage,
)
from verl.trainer.ppo.v1 import utils as v1_utils

from llm_bridge.integrations import verl as rv

pytestmark = pytest.mark.verl

CASES = [(64, 128, 5, 0), (128, 256, 8, 1), (512, 512, 10, 2)]


def _make_group_index(batch_size: int, num_groups: int) -> np.ndarray:
    counts = [2] * num_groups
    for _ in range(batch_size - 2 * num_groups):
        counts[random.randrange(num_groups)] += 1
    index = [g for g, c in enumerate(counts) for _ in range(c)]
    random.shuffle(index)
    return np.asarray(index, dtype=np.int64)


def _rand_mask(batch_size: int, seq_len: int) -> torch.Tensor:
    mask = torch.randint(0, 2, (batch_size, seq_len), dtype=torch.int64).float()
    empty = (mask.sum(dim=-1) == 0).nonzero(as_tuple=True)[0]
    mask[empty, -1] = 1.0
    return mask


def _case(batch_size, seq_len, num_groups, seed):
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    index = _make_group_index(batch_size, num_groups)
    mask = _rand_mask(batch_size, seq_len)
    return torch.randn(batch_size, seq_len, dtype=torch.float32) * mask, mask, index


@pytest.mark.parametrize("batch_size,seq_len,num_groups,seed", CASES)
def test_rloo_and_vectorized_equivalence(batch_size, seq_len, num_groups, seed):
    rewards, mask, index = _case(batch_size, seq_len, num_groups, seed)
    ours, ours_ret = rv.ESTIMATORS["robust_rloo"](token_level_rewards=rewards, response_mask=mask, index=index)
    loop, _ = compute_rloo_outcome_advantage(token_level_rewards=rewards.clone(), response_mask=mask, index=index)
    vec, vec_ret = compute_rloo_vectorized_outcome_advantage(token_level_rewards=rewards, response_mask=mask,
                                                             index=index)
    assert ours.shape == vec.shape == (batch_size, seq_len)
    assert torch.equal(ours, loop)
    assert torch.allclose(ours, vec, rtol=1e-5, atol=1e-6) and torch.allclose(ours_ret, vec_ret, rtol=1e-5, atol=1e-6)


def test_grpo_vectorized_matches_original_for_low_variance_rewards():
    rewards = torch.tensor([[1.0], [1.00001], [2.0], [2.00001]], dtype=torch.float32)
    mask = torch.ones_like(rewards)
    index = np.array(["prompt-a", "prompt-a", "prompt-b", "prompt-b"], dtype=object)
    ours, _ = rv.ESTIMATORS["robust_grpo"](token_level_rewards=rewards, response_mask=mask, index=index)
    loop, _ = compute_grpo_outcome_advantage(token_level_rewards=rewards.clone(), response_mask=mask, index=index)
    vec, _ = compute_grpo_vectorized_outcome_advantage(token_level_rewards=rewards, response_mask=mask, index=index)
    assert torch.equal(ours, loop)
    assert torch.allclose(ours, vec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size,seq_len,num_groups,seed", CASES)
@pytest.mark.parametrize("norm", [True, False])
def test_grpo_and_vectorized_equivalence(batch_size, seq_len, num_groups, seed, norm):
    rewards, mask, index = _case(batch_size, seq_len, num_groups, seed)
    cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": norm})
    ours, ours_ret = rv.ESTIMATORS["robust_grpo"](token_level_rewards=rewards, response_mask=mask, index=index,
                                                  config=cfg)
    loop, _ = compute_grpo_outcome_advantage(token_level_rewards=rewards.clone(), response_mask=mask, index=index,
                                             norm_adv_by_std_in_grpo=norm)
    vec, vec_ret = compute_grpo_vectorized_outcome_advantage(token_level_rewards=rewards, response_mask=mask,
                                                             index=index, norm_adv_by_std_in_grpo=norm)
    assert ours.shape == vec.shape == (batch_size, seq_len)
    assert torch.equal(ours, loop)
    assert torch.allclose(ours, vec, rtol=1e-5, atol=1e-6) and torch.allclose(ours_ret, vec_ret, rtol=1e-5, atol=1e-6)


@pytest.fixture
def batch_data() -> DataProto:
    tensors = {
        "token_level_rewards": torch.tensor([[100, 0, 0, 0], [1, 2, 3, 4], [200, 200, 0, 0], [150, 0, 0, 150],
                                             [4, 5, 6, 7], [8, 9, 10, 11]], dtype=torch.float32),
        "response_mask": torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1],
                                       [0, 0, 0, 0]], dtype=torch.long),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors={"uid": np.array(["prompt_a"] * 6, dtype=object)})


def test_compute_advantage_for_single_trajectory(batch_data):
    result = v1_utils.compute_advantage_for_multi_trajectories(
        data=batch_data, batch_keys=[f"prompt_a_{i}_0" for i in range(len(batch_data))], adv_estimator="robust_grpo",
        config=OmegaConf.create({}))
    expected = v1_utils.compute_advantage(batch_data, adv_estimator=AdvantageEstimator.GRPO)
    assert torch.equal(result.batch["advantages"], expected.batch["advantages"])
    assert torch.equal(result.batch["returns"], expected.batch["returns"])


def test_compute_advantage_for_multi_trajectories(batch_data):
    keys = ["prompt_a_0_0", "prompt_a_0_1", "prompt_a_2_0", "prompt_a_2_1", "prompt_a_3_0", "prompt_a_4_0"]
    result = v1_utils.compute_advantage_for_multi_trajectories(data=batch_data, batch_keys=keys,
                                                               adv_estimator="robust_grpo", config=OmegaConf.create({}))
    expected = v1_utils.compute_advantage(batch_data.select_idxs([1, 3, 4, 5]), adv_estimator=AdvantageEstimator.GRPO)
    rows, cols = [0, 0, 1, 1, 2, 3], [0, 0, 1, 1, 0, 0]
    adv_expected = expected.batch["advantages"][rows, cols].unsqueeze(-1) * result.batch["response_mask"]
    assert torch.equal(result.batch["advantages"], adv_expected)
    assert torch.equal(result.batch["returns"], adv_expected)
