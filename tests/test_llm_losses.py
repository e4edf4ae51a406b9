"""Ragged advantages (shaping -> group advantages -> multipliers) and the torch losses of llm_bridge."""

from __future__ import annotations

import numpy as np
import pytest

from llm_bridge.batch import compute_advantages
from solvers import drro_rewards, group_advantages, k3_kl

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_bridge.batch import policy_token_logprobs, sequence_logprobs
from llm_bridge.losses import aggregate, clipped_policy_loss, k3_token_kl, token_entropy

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- advantages (NumPy)
def test_ragged_advantages_zero_for_singletons_and_equal_groups():
    r = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0, 1.0])
    ids = np.array([0, 0, 1, 2, 2, 3, 3, 3])  # group 1 has one rollout, group 2 is all-equal
    for kind in ("grpo", "drgrpo", "rloo"):
        res = compute_advantages(r, ids, kind=kind)
        np.testing.assert_array_equal(res.advantages, group_advantages(r, kind=kind, group_ids=ids))
        assert res.advantages[2] == 0.0 and res.advantages[3] == 0.0 and res.advantages[4] == 0.0
        np.testing.assert_array_equal(res.multipliers, 1.0)
        assert res.shaped is None


def test_multipliers_scale_each_prompts_advantages():
    r = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    ids = np.array([0, 0, 1, 1, 1])
    base = compute_advantages(r, ids, kind="drgrpo").advantages
    res = compute_advantages(r, ids, kind="drgrpo", multipliers=[2.0, 0.5])
    np.testing.assert_array_equal(res.advantages, base * np.array([2.0, 2.0, 0.5, 0.5, 0.5]))
    np.testing.assert_array_equal(res.multipliers, [2.0, 2.0, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"multipliers must have one entry per group \(2\), got 1"):
        compute_advantages(r, ids, multipliers=[1.0])
    with pytest.raises(ValueError, match="multipliers must be non-negative"):
        compute_advantages(r, ids, multipliers=[1.0, -1.0])


def test_shaping_then_advantages():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(4), [1, 3, 5, 2])
    r = rng.integers(0, 2, ids.size).astype(float)
    lp = rng.uniform(-20, -1, ids.size)
    res = compute_advantages(r, ids, kind="grpo", shaping="drro", seq_logprobs=lp, delta=0.4, tau=2.0)
    shaped = drro_rewards(r, lp, 0.4, tau=2.0, group_ids=ids)
    np.testing.assert_array_equal(res.rewards, shaped.rewards)
    np.testing.assert_array_equal(res.advantages, group_advantages(shaped.rewards, kind="grpo", group_ids=ids))
    assert res.advantages[0] == 0.0  # a group of one stays at 0 whatever its bonus
    with pytest.raises(ValueError, match="needs seq_logprobs"):
        compute_advantages(r, ids, shaping="dro")
    with pytest.raises(ValueError, match=r"unknown shaping 'robust'; valid: \['none', 'drro', 'dro'\]"):
        compute_advantages(r, ids, shaping="robust")
    with pytest.raises(ValueError, match="unknown advantage kind 'ppo'"):
        compute_advantages(r, ids, kind="ppo")


# ----------------------------------------------------------------------------- losses (torch)
def _ragged_case(seed=0, n=6, t=5):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 5, 3, 2, 5, 4])[:n]
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    logp = (-torch.rand(n, t, generator=g) * 3).requires_grad_(True)
    old = logp.detach() + 0.3 * torch.randn(n, t, generator=g)
    adv = torch.randn(n, generator=g)
    return logp, old, adv, mask, lengths


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_clipped_loss_against_a_loop(aggregation):
    """Per token -min(rho A, clip(rho) A); token-mean divides by all tokens, seq-mean-token-mean
    averages each sequence's token mean."""
    logp, old, adv, mask, lengths = _ragged_case()
    eps_lo, eps_hi = 0.2, 0.28
    out = clipped_policy_loss(logp, old, adv, mask, clip_eps=eps_lo, clip_eps_high=eps_hi, aggregation=aggregation)
    per_seq, tokens = [], []
    for i in range(logp.shape[0]):
        vals = []
        for j in range(int(lengths[i])):
            rho = float(torch.exp(logp[i, j].detach() - old[i, j]))
            a = float(adv[i])
            vals.append(-min(rho * a, min(max(rho, 1 - eps_lo), 1 + eps_hi) * a))
        per_seq.append(np.mean(vals))
        tokens.extend(vals)
    expected = np.mean(tokens) if aggregation == "token-mean" else np.mean(per_seq)
    assert float(out.loss) == pytest.approx(expected, rel=1e-6)
    assert 0.0 <= out.clip_fraction <= 1.0 and out.approx_kl >= 0.0


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean"])
def test_on_policy_gradient_is_minus_advantage_over_tokens(aggregation):
    """At rho = 1 (old = current) d loss / d logp[i, j] = -A_i / (#tokens) for token-mean and
    -A_i / (N len_i) for seq-mean-token-mean, zero off the mask."""
    logp, _, adv, mask, lengths = _ragged_case(1)
    out = clipped_policy_loss(logp, logp.detach(), adv, mask, aggregation=aggregation)
    out.loss.backward()
    if aggregation == "token-mean":
        expected = -adv[:, None] * mask / mask.sum()
    else:
        expected = -adv[:, None] * mask / (lengths[:, None].float() * logp.shape[0])
    torch.testing.assert_close(logp.grad, expected, atol=1e-7, rtol=1e-5)
    assert out.clip_fraction == 0.0 and out.ratio_mean == pytest.approx(1.0)


def test_clipping_zeroes_the_gradient_outside_the_trust_region():
    logp = torch.zeros(2, 1, requires_grad=True)
    old = torch.tensor([[-1.0], [1.0]])  # rho = e (A > 0: clipped), rho = 1/e (A < 0: clipped)
    out = clipped_policy_loss(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 1))
    out.loss.backward()
    assert torch.all(logp.grad == 0) and out.clip_fraction == 1.0
    logp2 = torch.zeros(2, 1, requires_grad=True)  # rho = 1/e with A > 0: not clipped (min picks rho A)
    out2 = clipped_policy_loss(logp2, torch.tensor([[1.0], [1.0]]), torch.tensor([1.0, 1.0]), torch.ones(2, 1))
    out2.loss.backward()
    assert torch.all(logp2.grad < 0)


def test_loss_bad_input():
    logp, old, adv, mask, _ = _ragged_case()
    with pytest.raises(ValueError, match=r"unknown loss aggregation 'sum'"):
        clipped_policy_loss(logp, old, adv, mask, aggregation="sum")
    with pytest.raises(ValueError, match="clip_eps must be > 0"):
        clipped_policy_loss(logp, old, adv, mask, clip_eps=0.0)
    with pytest.raises(ValueError, match="advantages must have 6 entries"):
        clipped_policy_loss(logp, old, adv[:3], mask)
    with pytest.raises(ValueError, match="one shape"):
        clipped_policy_loss(logp, old[:, :2], adv, mask)


def test_aggregate_ignores_empty_rows():
    v = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(aggregate(v, m, "token-mean")) == 2.0
    assert float(aggregate(v, m, "seq-mean-token-mean")) == 2.0
    assert float(aggregate(v, torch.zeros_like(m), "token-mean")) == 0.0


def test_k3_token_kl_matches_solvers_and_has_zero_gradient_on_policy():
    rng = np.random.default_rng(0)
    ref = rng.uniform(-5, 0, size=(4, 3))
    cur = ref + rng.normal(scale=0.5, size=(4, 3))
    ours = k3_token_kl(torch.tensor(cur), torch.tensor(ref)).numpy()
    np.testing.assert_allclose(ours, k3_kl(ref, cur).per_sample, rtol=1e-12, atol=1e-15)
    assert np.all(ours >= 0)
    logp = torch.tensor(ref, requires_grad=True)
    k3_token_kl(logp, torch.tensor(ref)).sum().backward()
    assert torch.all(logp.grad == 0)


def test_token_entropy():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    ent = token_entropy(logits)
    assert float(ent[0]) == pytest.approx(np.log(2)) and float(ent[1]) < 1e-7


def test_policy_token_logprobs_equal_unpadded_forward_passes():
    """Left-padded batched log-probs equal per-sequence forward passes without padding (the
    position ids restart at each prompt's first token), with and without temperature."""
    from llm_bridge.models import ModelSpec, build_model
    from llm_bridge.tokenizer import char_tokenizer

    tok = char_tokenizer("0123456789+-*=")
    model = build_model(ModelSpec(hidden_size=32, num_layers=2, num_heads=2), tok, seed=0)
    prompts = [tok.encode(p, add_special_tokens=False) for p in ["1+1=", "12*34=", "7="]]
    comps = [tok.encode(c, add_special_tokens=False) + [tok.eos_token_id] for c in ["2", "408", "77"]]
    lp, t = max(map(len, prompts)), max(map(len, comps))
    ids = torch.full((3, lp + t), tok.pad_token_id)
    att = torch.zeros((3, lp + t), dtype=torch.long)
    mask = torch.zeros((3, t))
    for i, (p, c) in enumerate(zip(prompts, comps)):
        ids[i, lp - len(p) : lp] = torch.tensor(p)
        ids[i, lp : lp + len(c)] = torch.tensor(c)
        att[i, lp - len(p) : lp + len(c)] = 1
        mask[i, : len(c)] = 1
    for temp in (1.0, 0.7):
        with torch.no_grad():
            logp, ent = policy_token_logprobs(model, ids, att, lp, temperature=temp, with_entropy=True)
        seq = sequence_logprobs(logp, mask)
        for i, (p, c) in enumerate(zip(prompts, comps)):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([p + c])).logits[0].float() / temp
            ref = torch.log_softmax(logits[len(p) - 1 : -1], -1).gather(1, torch.tensor(c)[:, None]).squeeze(1)
            torch.testing.assert_close(logp[i, : len(c)], ref, atol=1e-5, rtol=0)
            assert float(seq[i]) == pytest.approx(float(ref.double().sum()), abs=1e-4)
            torch.testing.assert_close(ent[i, : len(c)], token_entropy(logits[len(p) - 1 : -1]), atol=1e-5, rtol=0)
