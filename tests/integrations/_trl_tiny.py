"""Offline stand-ins for the Hub fixtures of TRL's own GRPO tests (imported only where TRL is installed).

TRL's tests load ``trl-internal-testing/tiny-Qwen2ForCausalLM-2.5``, a tiny
``Qwen2ForSequenceClassification`` reward model and the ``trl-internal-testing/zen`` prompts from
the Hub. Here the same kinds of objects are built from configs with the project's character
tokenizer and saved to a local folder (so a model can be named by path, as TRL's tests name it by
Hub id, and ``beta > 0`` can load the reference model by path), and the prompts are a local
dataset. Nothing is downloaded.
"""

from __future__ import annotations

import string
from pathlib import Path

import datasets
import torch
import transformers

from llm_bridge.tokenizer import char_tokenizer

ALPHABET = string.ascii_letters + string.digits + string.punctuation + " \n"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant: {% endif %}")

ZEN = [
    "Beautiful is better than", "Explicit is better than", "Simple is better than", "Complex is better than",
    "Flat is better than", "Sparse is better than", "Readability", "Special cases aren't special enough to",
    "Although practicality beats", "Errors should never pass", "Unless explicitly", "In the face of ambiguity,",
    "There should be one", "Although that way may not be obvious at first unless", "Now is better than",
    "Although never is often better than", "If the implementation is hard to explain,",
    "If the implementation is easy to explain,", "Namespaces are one honking great idea.",
]
"""Prompt-only rows in the spirit of TRL's ``zen`` test set (its ``standard_prompt_only`` config)."""


def tokenizer():
    tok = char_tokenizer(ALPHABET)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _config(tok, **kw):
    return transformers.Qwen2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None, tie_word_embeddings=True, **kw)


def build(root: Path) -> tuple[str, str]:
    """Save a tiny causal LM and a tiny reward model (each with the tokenizer) under ``root``;
    return their paths."""
    tok = tokenizer()
    lm_dir, rm_dir = root / "tiny-Qwen2ForCausalLM", root / "tiny-Qwen2ForSequenceClassification"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        lm = transformers.Qwen2ForCausalLM(_config(tok))
        torch.manual_seed(1)
        rm = transformers.Qwen2ForSequenceClassification(_config(tok, num_labels=1))
    lm.generation_config.pad_token_id = tok.pad_token_id
    lm.generation_config.eos_token_id = tok.eos_token_id
    for model, folder in ((lm, lm_dir), (rm, rm_dir)):
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    return str(lm_dir), str(rm_dir)


def dataset(kind: str = "standard_prompt_only", *, with_ids: bool = True) -> datasets.DatasetDict:
    """Train/test splits of prompt-only rows (``standard_prompt_only`` or ``conversational_prompt_only``)."""
    if kind == "standard_prompt_only":
        prompts = list(ZEN)
    elif kind == "conversational_prompt_only":
        prompts = [[{"role": "user", "content": p}] for p in ZEN]
    else:
        raise ValueError(kind)
    cols = {"prompt": prompts}
    if with_ids:
        cols["prompt_id"] = list(range(len(prompts)))
    full = datasets.Dataset.from_dict(cols)
    return datasets.DatasetDict({"train": full.select(range(16)), "test": full.select(range(16, len(ZEN)))})
