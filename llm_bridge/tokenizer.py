"""A character-level tokenizer built locally (no download), and tokenizer/task compatibility checks.

:func:`char_tokenizer` builds a ``tokenizers`` WordLevel model whose vocabulary is three special
tokens (``<pad>`` = 0, ``<eos>`` = 1, ``<unk>`` = 2) followed by the given characters in sorted
order, with a pre-tokenizer that isolates every character, and wraps it in
``transformers.PreTrainedTokenizerFast`` so that it saves/loads with ``save_pretrained`` /
``AutoTokenizer.from_pretrained`` like any Hugging Face tokenizer (vLLM loads it from the same
folder). Any other tokenizer (e.g. of a local checkpoint) works too, provided it covers the task's
characters: :func:`check_tokenizer_covers` says which ones it lacks.

Needs the ``llm`` extra (``tokenizers``, ``transformers``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._deps import require

__all__ = ["PAD", "EOS", "UNK", "char_tokenizer", "check_tokenizer_covers", "encode_prompts"]

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def char_tokenizer(alphabet: str) -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character of ``alphabet``.

    Parameters
    ----------
    alphabet : str
        The characters to cover (duplicates ignored; must not be empty).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
        ``pad_token="<pad>"`` (id 0), ``eos_token="<eos>"`` (id 1), ``unk_token="<unk>"`` (id 2),
        then the sorted characters. ``decode`` concatenates characters (no spaces inserted).

    Examples
    --------
    >>> tok = char_tokenizer("0123456789+=")
    >>> tok("12+3=", add_special_tokens=False)["input_ids"]
    [5, 6, 3, 7, 14]
    >>> tok.decode([4, 5, 1], skip_special_tokens=True)
    '01'
    """
    if not isinstance(alphabet, str):
        raise TypeError(f"alphabet must be a string, got {type(alphabet).__name__}")
    chars = sorted(set(alphabet))
    if not chars:
        raise ValueError("alphabet must contain at least one character")
    require("tokenizers")
    transformers = require("transformers")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *chars])}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("(?m)."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS,
                                               unk_token=UNK)
    tok.padding_side = "left"
    return tok


def check_tokenizer_covers(tokenizer: Any, alphabet: str, *, what: str = "the task") -> None:
    """Raise ``ValueError`` listing the characters of ``alphabet`` that ``tokenizer`` cannot encode.

    A character counts as covered when encoding it alone (no special tokens) gives at least one
    token, no unknown token, and decodes back to the character. The tokenizer must also define an
    end-of-sequence token (generation stops on it).
    """
    if getattr(tokenizer, "eos_token_id", None) is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no eos_token: generation needs one")
    unk = getattr(tokenizer, "unk_token_id", None)
    missing = []
    for c in sorted(set(alphabet)):
        ids = tokenizer.encode(c, add_special_tokens=False)
        if not ids or (unk is not None and unk in ids) or tokenizer.decode(ids) != c:
            missing.append(c)
    if missing:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} lacks characters of {what}: {missing!r} "
                         "(build one with llm_bridge.char_tokenizer(alphabet) covering them)")


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, without special tokens (generation appends the completion)."""
    enc = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(enc):
        if not ids:
            raise ValueError(f"prompt {i} ({prompts[i]!r}) encodes to no tokens")
    return [list(map(int, ids)) for ids in enc]
