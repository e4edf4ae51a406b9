"""Checkpoint plumbing shared by every stateful learner of :mod:`bandits` (not public).

Every learner offers ``state_dict() -> dict`` and ``load_state_dict(state)``. A state is a plain
mapping that survives a JSON round trip (arrays may come back as nested lists, tuples as lists):

``format``
    ``"robust-rollouts.state"`` (marks the mapping as one of ours).
``class``
    The learner's class name; loading into another class is a ``ValueError``.
``version``
    :data:`FORMAT_VERSION`, the layout version of that class's state; a different version is a
    ``ValueError`` (no silent migration).
``hyperparameters``
    The constructor values that shape the state and the trajectory (plain numbers, strings,
    lists, ``None``). Loading compares them with the receiving object's own values: a learner
    is restored into an object constructed the same way, never reconfigured by a checkpoint.
other keys
    The learner's state: NumPy arrays (any dtype; lists after a round trip), plain numbers,
    strings, the random generator's ``bit_generator.state`` (a dict of ints) and nested states
    of components.

:class:`StateReader` validates one state and hands back fresh, typed copies; a learner parses
*everything* through it first and only then assigns its attributes, so a rejected state leaves
the object unchanged. Composite objects (the controllers) take a snapshot of their own state
before loading the components and restore it if any component rejects its part
(:func:`load_atomically`).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "StateReader",
    "fingerprint",
    "load_atomically",
    "new_state",
    "plain",
    "rng_state",
]

FORMAT = "robust-rollouts.state"
FORMAT_VERSION = 1
"""Layout version of every state written by this release (one number for the whole package)."""


def plain(value: Any) -> Any:
    """``value`` as plain Python data: tuples/arrays -> lists, NumPy scalars -> Python numbers,
    ``Fraction`` -> ``"p/q"`` string, mappings -> dicts (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return float(value)
    if isinstance(value, np.dtype):
        return value.name
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality of plain hyperparameter values (``1 == 1.0``; ``nan`` equals ``nan``)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    return type(a) is type(b) and a == b


def rng_state(rng: np.random.Generator) -> dict:
    """The generator's ``bit_generator.state`` as a fresh dict (arrays copied)."""
    return plain(rng.bit_generator.state)


def fingerprint(array: np.ndarray) -> str:
    """``"<shape>:<hash>"`` of an array that is constructor input, not state (e.g. embeddings).

    The hash is BLAKE2b (16 bytes) over the array's bytes in C order: one pass at memory speed
    (about 25 ms for 17,398 x 384 float32 values). It detects a different array, row order,
    dtype or shape; it is not a security feature.
    """
    arr = np.ascontiguousarray(array)
    h = hashlib.blake2b(digest_size=16)
    h.update(arr.dtype.str.encode())
    h.update(memoryview(arr).cast("B"))
    shape = "x".join(str(s) for s in arr.shape)
    return f"{shape}:{h.hexdigest()}"


def new_state(obj: Any, hyperparameters: Mapping[str, Any], **fields: Any) -> dict:
    """Assemble a state dict: header, plain ``hyperparameters`` and ``fields``.

    Arrays in ``fields`` are copied (a later update of the learner never changes a state already
    handed out); nested mappings (component states) are stored as they are.
    """
    state: dict[str, Any] = {
        "format": FORMAT,
        "class": type(obj).__name__,
        "version": FORMAT_VERSION,
        "hyperparameters": plain(dict(hyperparameters)),
    }
    for key, value in fields.items():
        state[key] = value.copy() if isinstance(value, np.ndarray) else value
    return state


class StateReader:
    """Validate a state for ``obj`` and read its fields as fresh, typed values.

    Construction checks the header (a mapping, ``format``, ``class``, ``version``) and compares
    the saved hyperparameters with ``hyperparameters`` (the receiving object's own). Every
    accessor raises ``ValueError``/``TypeError`` naming the class and the key; nothing here
    modifies ``obj``.
    """

    def __init__(self, obj: Any, state: Any, hyperparameters: Mapping[str, Any]) -> None:
        self.cls = type(obj).__name__
        if not isinstance(state, Mapping):
            raise TypeError(f"{self.cls}.load_state_dict needs a mapping (a state_dict), got {type(state).__name__}")
        self.state = state
        fmt = state.get("format")
        if fmt != FORMAT:
            raise ValueError(f"{self.cls}.load_state_dict: not a robust-rollouts state (format {fmt!r}, "
                             f"expected {FORMAT!r})")
        saved_cls = state.get("class")
        if saved_cls != self.cls:
            raise ValueError(f"{self.cls}.load_state_dict: the state was saved by class {saved_cls!r}, "
                             f"not {self.cls!r}")
        version = state.get("version")
        if isinstance(version, bool) or not isinstance(version, (numbers.Integral, np.integer)) or (
            int(version) != FORMAT_VERSION
        ):
            raise ValueError(f"{self.cls}.load_state_dict: unsupported state version {version!r} "
                             f"(this release reads version {FORMAT_VERSION})")
        saved = state.get("hyperparameters")
        if not isinstance(saved, Mapping):
            raise ValueError(  # noqa: TRY004 - a malformed state, not a wrong argument type
                f"{self.cls}.load_state_dict: the state has no 'hyperparameters' mapping"
            )
        mine = plain(dict(hyperparameters))
        saved = plain(dict(saved))
        for key in sorted(set(mine) | set(saved)):
            if key not in saved:
                raise ValueError(f"{self.cls}.load_state_dict: the state's hyperparameters lack {key!r}")
            if key not in mine:
                raise ValueError(f"{self.cls}.load_state_dict: unexpected hyperparameter {key!r} in the state")
            if not _same(mine[key], saved[key]):
                raise ValueError(
                    f"{self.cls}.load_state_dict: hyperparameter {key!r} differs: the state has "
                    f"{_short(saved[key])}, this object has {_short(mine[key])} (construct the object "
                    "with the same settings before loading)"
                )

    # -- raw access ----------------------------------------------------------------------------
    def _where(self, key: str) -> str:
        return f"{self.cls}.load_state_dict: state[{key!r}]"

    def get(self, key: str) -> Any:
        if key not in self.state:
            raise ValueError(f"{self.cls}.load_state_dict: the state is missing {key!r}")
        return self.state[key]

    # -- typed accessors -----------------------------------------------------------------------
    def array(
        self,
        key: str,
        shape: tuple[int | None, ...],
        dtype: Any,
        *,
        lo: float | None = None,
        hi: float | None = None,
        finite: bool = True,
    ) -> np.ndarray:
        """A fresh C-contiguous array of ``dtype`` and ``shape`` (``None`` = any length).

        Accepts arrays or nested lists. Integer and bool dtypes require integral (resp. 0/1)
        values; float dtypes require finite values unless ``finite=False``; ``lo``/``hi`` bound
        every entry.
        """
        raw = self.get(key)
        where = self._where(key)
        try:
            arr = np.array(raw, copy=True)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where} is not a rectangular array ({exc})") from None
        want = np.dtype(dtype)
        if arr.size == 0 and arr.dtype == np.float64 and want != np.float64:
            arr = arr.astype(want)  # an empty list comes back as float64
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{where} must hold numbers, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{where} must be real, got dtype {arr.dtype}")
        if len(shape) != arr.ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + (",)" if len(shape) == 1 else ")")
            raise ValueError(f"{where} has shape {arr.shape}, expected {expected}")
        if want == np.bool_:
            if arr.dtype != np.bool_:
                bad = (arr != 0) & (arr != 1)
                if bad.any():
                    raise ValueError(f"{where} must hold booleans, got {arr[bad].flat[0].item()!r}")
            return np.ascontiguousarray(arr, dtype=np.bool_)
        if np.issubdtype(want, np.integer):
            if arr.dtype == np.bool_:
                raise TypeError(f"{where} must hold integers, got booleans")
            if np.issubdtype(arr.dtype, np.floating):
                bad = ~np.isfinite(arr) | (arr != np.round(arr))
                if bad.any():
                    raise ValueError(f"{where} must hold integers, got {arr[bad].flat[0].item()!r}")
            info = np.iinfo(want)
            if arr.size and (arr.min() < info.min or arr.max() > info.max):
                raise ValueError(f"{where} has values outside the range of {want.name}")
        elif finite and np.issubdtype(arr.dtype, np.floating):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise ValueError(f"{where} must be finite, got {arr[bad].flat[0].item()!r}")
        elif np.issubdtype(arr.dtype, np.floating):
            bad = np.isnan(arr)
            if bad.any():
                raise ValueError(f"{where} must not contain NaN")
        if lo is not None and arr.size and (arr < lo).any():
            raise ValueError(f"{where} must be >= {lo}, got {arr[arr < lo].flat[0].item()!r}")
        if hi is not None and arr.size and (arr > hi).any():
            raise ValueError(f"{where} must be <= {hi}, got {arr[arr > hi].flat[0].item()!r}")
        return np.ascontiguousarray(arr, dtype=want)

    def int(self, key: str, *, lo: int | None = None, hi: int | None = None) -> int:
        v = self.get(key)
        where = self._where(key)
        if isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{where} must be an integer, got bool")
        if isinstance(v, (numbers.Integral, np.integer)) or (
            isinstance(v, (numbers.Real, np.floating)) and math.isfinite(v) and float(v).is_integer()
        ):
            out = int(v)
        else:
            raise TypeError(f"{where} must be an integer, got {v!r}")
        if lo is not None and out < lo:
            raise ValueError(f"{where} must be >= {lo}, got {out}")
        if hi is not None and out > hi:
            raise ValueError(f"{where} must be <= {hi}, got {out}")
        return out

    def float(self, key: str, *, lo: float | None = None, hi: float | None = None, finite: bool = True) -> float:
        v = self.get(key)
        where = self._where(key)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"{where} must be a real number, got {type(v).__name__}")
        out = float(v)
        if math.isnan(out) or (finite and not math.isfinite(out)):
            raise ValueError(f"{where} must be finite, got {out!r}")
        if lo is not None and out < lo:
            raise ValueError(f"{where} must be >= {lo}, got {out!r}")
        if hi is not None and out > hi:
            raise ValueError(f"{where} must be <= {hi}, got {out!r}")
        return out

    def mapping(self, key: str) -> Mapping:
        v = self.get(key)
        if not isinstance(v, Mapping):
            raise TypeError(f"{self._where(key)} must be a mapping, got {type(v).__name__}")
        return v

    def rng(self, key: str, rng: np.random.Generator) -> dict:
        """A validated ``bit_generator.state`` for ``rng`` (checked on a scratch bit generator of
        the same type; apply it with ``rng.bit_generator.state = ...`` when committing)."""
        value = self.mapping(key)
        where = self._where(key)
        kind = type(rng.bit_generator)
        if value.get("bit_generator") != kind.__name__:
            raise ValueError(f"{where} is a {value.get('bit_generator')!r} state, this object's generator "
                             f"is {kind.__name__!r}")
        st = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in value.items()}
        if kind.__name__ == "MT19937" and isinstance(st.get("state"), dict) and "key" in st["state"]:
            st["state"]["key"] = np.asarray(st["state"]["key"], dtype=np.uint32)
        scratch = kind()
        try:
            scratch.state = st
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ValueError(f"{where} is not a valid {kind.__name__} state ({exc!r})") from None
        return scratch.state


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def load_atomically(obj: Any, state: Any, load: Callable[[Any], None]) -> None:
    """Run ``load(state)`` for a composite ``obj``; if it raises, restore ``obj.state_dict()`` as it
    was before (so a rejected state leaves the object unchanged) and re-raise."""
    snapshot = obj.state_dict()
    try:
        load(state)
    except BaseException:
        load(snapshot)
        raise
