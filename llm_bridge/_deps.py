"""Optional heavy dependencies of :mod:`llm_bridge`, imported on first use with a clear error.

``torch``, ``transformers`` and ``tokenizers`` come with the ``llm`` extra
(``pip install "robust-rollouts[llm]"``); ``vllm`` with the ``vllm`` extra. Nothing here is
imported when :mod:`llm_bridge` itself is imported.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

EXTRAS = {"torch": "llm", "transformers": "llm", "tokenizers": "llm", "vllm": "vllm", "tqdm": "llm"}
"""Module -> the extra of robust-rollouts that installs it."""


def require(module: str) -> ModuleType:
    """Import and return ``module``; raise ``ImportError`` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], "llm")
        raise ImportError(
            f"llm_bridge needs {module!r}, which is not installed: pip install \"robust-rollouts[{extra}]\" "
            f"(or \".[{extra}]\" from a clone)"
        ) from exc
