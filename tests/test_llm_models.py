"""Tests for llm_bridge.models: tiny models from a config, local checkpoints, the cached warm start."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llm_bridge.generation import HFBackend, SamplingConfig
from llm_bridge.models import (
    ModelSpec,
    WarmStartConfig,
    build_model,
    count_parameters,
    load_model,
    prompt_embeddings,
    warm_start,
)
from llm_bridge.tasks import make_task
from llm_bridge.tokenizer import char_tokenizer, encode_prompts

torch.set_num_threads(1)
TOK = char_tokenizer("0123456789+-*=")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_build_from_config_is_seeded_and_leaves_global_rng_alone(arch):
    spec = ModelSpec(arch=arch)
    before = torch.random.get_rng_state()
    a = build_model(spec, TOK, seed=3)
    b = build_model(spec, TOK, seed=3)
    c = build_model(spec, TOK, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert 100_000 <= count_parameters(a) <= 3_000_000
    for (na, pa), (_, pb), (_, pc) in zip(a.named_parameters(), b.named_parameters(), c.named_parameters()):
        assert torch.equal(pa, pb), na
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    assert a.config.vocab_size == len(TOK) and a.config.eos_token_id == TOK.eos_token_id
    assert type(a).__name__ == ("Qwen2ForCausalLM" if arch == "qwen2" else "LlamaForCausalLM")


def test_bad_model_specs():
    with pytest.raises(ValueError, match=r"unknown model architecture 'gpt9'; valid: \['qwen2', 'llama'\]"):
        build_model(ModelSpec(arch="gpt9"), TOK)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        build_model(ModelSpec(hidden_size=66, num_heads=4), TOK)
    with pytest.raises(ValueError, match="num_kv_heads"):
        build_model(ModelSpec(num_heads=4, num_kv_heads=3), TOK)
    with pytest.raises(TypeError, match="ModelSpec"):
        build_model({"arch": "qwen2"}, TOK)
    with pytest.raises(ValueError, match="not a local checkpoint folder"):
        load_model("/nonexistent/model")


def test_local_checkpoint_round_trip(tmp_path):
    model = build_model(ModelSpec(hidden_size=32, num_layers=1, num_heads=2), TOK, seed=0)
    model.save_pretrained(tmp_path)
    TOK.save_pretrained(tmp_path)
    loaded, tok = load_model(tmp_path)
    ids = torch.tensor([encode_prompts(TOK, ["12+3="])[0]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    assert tok("9*9=", add_special_tokens=False)["input_ids"] == TOK("9*9=", add_special_tokens=False)["input_ids"]


def test_warm_start_cache_hit_equals_fresh_run(tmp_path):
    task = make_task("arithmetic", n_prompts=8, seed=0)
    spec = ModelSpec(hidden_size=32, num_layers=1, num_heads=2)
    warm = WarmStartConfig(steps=6, batch_size=16, n_examples=64, seed=1)
    fresh = build_model(spec, TOK, seed=0)
    r1 = warm_start(fresh, TOK, task, warm, cache_dir=tmp_path)
    assert not r1.from_cache and r1.path.is_file() and len(r1.losses) == 6
    again = build_model(spec, TOK, seed=0)
    r2 = warm_start(again, TOK, task, warm, cache_dir=tmp_path)
    assert r2.from_cache and r2.path == r1.path and r2.losses == r1.losses
    nocache = build_model(spec, TOK, seed=0)
    r3 = warm_start(nocache, TOK, task, warm, use_cache=False)
    assert r3.path is None and r3.losses == r1.losses  # deterministic on one thread
    for a, b, c in zip(fresh.state_dict().values(), again.state_dict().values(), nocache.state_dict().values()):
        assert torch.equal(a, b) and torch.equal(a, c)
    # the key covers the seed, the init seed and the settings: other inputs never hit this file
    other = warm_start(build_model(spec, TOK, seed=0), TOK, task, WarmStartConfig(steps=6, batch_size=16,
                                                                                   n_examples=64, seed=2),
                       cache_dir=tmp_path)
    assert other.path != r1.path
    other_init = warm_start(build_model(spec, TOK, seed=5), TOK, task, warm, init_seed=5, cache_dir=tmp_path)
    assert other_init.path != r1.path and not other_init.from_cache
    with pytest.raises(ValueError, match="warm_start.steps"):
        warm_start(fresh, TOK, task, WarmStartConfig(steps=-1))


def test_warm_start_needs_tokenizer_covering_the_examples(tmp_path):
    task = make_task("arithmetic", n_prompts=8, seed=0)
    tok = char_tokenizer("0123456789+=")
    model = build_model(ModelSpec(hidden_size=32, num_layers=1, num_heads=2), tok, seed=0)
    with pytest.raises(ValueError, match="lacks characters of the warm-start examples"):
        warm_start(model, tok, task, WarmStartConfig(steps=2), cache_dir=tmp_path)


def test_prompt_embeddings_shape():
    model = build_model(ModelSpec(hidden_size=32, num_layers=1, num_heads=2), TOK, seed=0)
    emb = prompt_embeddings(model, TOK, ["1+1=", "12*9=", "5="])
    assert emb.shape == (3, 32) and emb.dtype == np.float64 and np.isfinite(emb).all()
    # left padding does not change a prompt's embedding
    alone = prompt_embeddings(model, TOK, ["5="])
    np.testing.assert_allclose(emb[2], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_default_warm_start_gives_a_mixed_success_profile(tmp_path):
    """The default warm start (the trainer's) leaves the default tiny model with mean accuracy in
    [0.2, 0.6] on a 64-prompt pool and a real spread: several prompts with success rate strictly
    between 0.1 and 0.9 (32 samples each at temperature 1)."""
    task = make_task("arithmetic", n_prompts=64, seed=0)
    tok = char_tokenizer(task.alphabet + "0123456789")
    model = build_model(ModelSpec(), tok, seed=0)
    warm_start(model, tok, task, WarmStartConfig(), cache_dir=tmp_path)
    batch = HFBackend(model, tok, seed=0).generate(encode_prompts(tok, task.prompts), np.full(64, 32),
                                                    SamplingConfig())
    p = task.verify(batch.group_ids, batch.texts).reshape(64, 32).mean(axis=1)
    assert 0.2 <= p.mean() <= 0.6
    assert ((p > 0.1) & (p < 0.9)).mean() >= 0.2
    assert (p >= 0.9).any() and (p <= 0.1).any()
