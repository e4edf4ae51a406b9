"""Input validation shared by every public function of the project.

Conventions (docs/architecture.md, "Conventions"): validation happens in one place, before any kernel runs,
and raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, bad value) with a
message that names the parameter and the offending value. Never ``assert``.

These helpers return C-contiguous ``float64`` / ``int64`` arrays ready for a Numba kernel.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "INT64_MAX",
    "MAX_SIZE",
    "as_float_array",
    "as_int_array",
    "check_finite_scalar",
    "check_int_scalar",
    "check_same_shape",
    "broadcast_to_size",
    "check_rng",
]


INT64_MAX = 2**63 - 1
"""Largest integer :func:`check_int_scalar` and :func:`as_int_array` accept (int64 range): every
integer the project takes ends up in an int64 array, a Numba kernel or float arithmetic."""

MAX_SIZE = 2**31 - 1
"""Largest count of things a learner holds an array for (``n_arms``, ``n_bins``, ``n_groups``,
``n_prompts``): anything larger is a bug (or a float such as 1e300 passed as a count), not data."""


def _describe(x: Any) -> str:
    return f"{type(x).__name__}"


def _short_int(v: int) -> str:
    """An integer for an error message: in full up to 24 digits, else abbreviated."""
    s = str(v)
    return s if len(s) <= 24 else f"{s[:8]}...{s[-4:]} ({len(s.lstrip('-'))} digits)"


def _first_bad(arr: np.ndarray, mask: np.ndarray) -> str:
    if arr.ndim == 0:
        return f"{arr.item()!r}"
    idx = np.argwhere(mask)[0]
    index = tuple(int(i) for i in idx) if arr.ndim > 1 else int(idx[0])
    return f"{arr[tuple(idx)].item()!r} at index {index}"


def _object_reals_iv(arr: np.ndarray, name: str) -> np.ndarray:
    """NumPy makes an object array of Python ints beyond int64/uint64 (``[2**70, 1.0]``,
    ``[10**400]``). If every entry is a real number, convert to float64, and raise a ValueError
    naming an int too large for a float64; any other object array is returned unchanged (the
    caller raises its TypeError)."""
    flat = arr.reshape(-1)
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in flat):
        return arr
    for i, v in enumerate(flat):
        if isinstance(v, numbers.Integral):
            try:
                float(v)
            except OverflowError:
                where = "" if arr.ndim == 0 else f" at index {i if arr.ndim == 1 else np.unravel_index(i, arr.shape)}"
                raise ValueError(
                    f"{name} must be finite, got the integer {_short_int(int(v))}{where}, too large for a float64"
                ) from None
    return arr.astype(np.float64)


def as_float_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    finite: bool = True,
    nonneg: bool = False,
    positive: bool = False,
    min_size: int = 0,
    copy: bool = False,
) -> np.ndarray:
    """Coerce ``x`` to a C-contiguous float64 array and validate it.

    Parameters
    ----------
    x : array_like
        Real numbers (bool is accepted and converted).
    name : str
        Parameter name used in error messages.
    ndim : int or tuple of int, optional
        Allowed number(s) of dimensions.
    finite : bool
        Reject NaN and +/-inf (default True).
    nonneg, positive : bool
        Reject negative (resp. non-positive) entries.
    min_size : int
        Minimum number of elements.
    copy : bool
        Always return a fresh array (the caller may mutate it).

    Raises
    ------
    TypeError
        If ``x`` is not numeric (strings, objects, complex numbers).
    ValueError
        If the shape or any value is invalid; the message names ``name`` and the first bad value.
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of real numbers, got {_describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise TypeError(f"{name} must be an array of real numbers, got {_describe(x)}") from exc
    if arr.dtype == object:
        arr = _object_reals_iv(arr, name)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64, order="C", copy=True) if copy else np.asarray(
        arr, dtype=np.float64, order="C"
    )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} must have at least {min_size} element(s), got {arr.size}")
    if finite:
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ValueError(f"{name} must be finite, got {_first_bad(arr, bad)}")
    else:
        bad = np.isnan(arr)
        if bad.any():
            raise ValueError(f"{name} must not contain NaN, got {_first_bad(arr, bad)}")
    if positive:
        bad = ~(arr > 0)
        if bad.any():
            raise ValueError(f"{name} must be positive, got {_first_bad(arr, bad)}")
    elif nonneg:
        bad = arr < 0
        if bad.any():
            raise ValueError(f"{name} must be non-negative, got {_first_bad(arr, bad)}")
    return arr


def as_int_array(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    nonneg: bool = False,
    min_size: int = 0,
) -> np.ndarray:
    """Coerce ``x`` to a C-contiguous int64 array; floats are accepted only if integral.

    Booleans are rejected (a mask passed where ids or counts are expected is a bug, not data).
    """
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of integers, got {_describe(x)}")
    arr = np.asarray(x)
    if np.issubdtype(arr.dtype, np.bool_):
        raise TypeError(f"{name} must be an array of integers, got booleans")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            bad = ~np.isfinite(arr)
            raise ValueError(f"{name} must be finite integers, got {_first_bad(arr, bad)}")
        bad = arr != np.round(arr)
        if bad.any():
            raise ValueError(f"{name} must contain integers, got {_first_bad(arr, bad)}")
        bad = (arr < -(2.0**63)) | (arr >= 2.0**63)
        if bad.any():
            raise ValueError(f"{name} must contain integers in the int64 range, got {_first_bad(arr, bad)}")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an array of integers, got dtype {arr.dtype}")
    elif arr.dtype == np.uint64 and arr.size and arr.max() > INT64_MAX:
        bad = arr > INT64_MAX
        raise ValueError(f"{name} must contain integers in the int64 range, got {_first_bad(arr, bad)}")
    arr = np.asarray(arr, dtype=np.int64, order="C")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size < min_size:
        raise ValueError(f"{name} must have at least {min_size} element(s), got {arr.size}")
    if nonneg:
        bad = arr < 0
        if bad.any():
            raise ValueError(f"{name} must be non-negative, got {_first_bad(arr, bad)}")
    return arr


def check_finite_scalar(
    x: Any,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Validate a real scalar in an (optionally open) interval and return it as ``float``.

    Python integers too large for a float64 (e.g. ``10**400``) are a ``ValueError``, like inf."""
    if isinstance(x, bool) or not isinstance(x, (numbers.Real, np.number)) or isinstance(
        x, np.complexfloating
    ):
        if isinstance(x, np.ndarray) and x.ndim == 0 and np.issubdtype(x.dtype, np.number):
            x = x.item()
        else:
            raise TypeError(f"{name} must be a real number, got {_describe(x)}")
    try:
        v = float(x)
    except OverflowError:
        raise ValueError(
            f"{name} must be finite, got the integer {_short_int(int(x))}, too large for a float64"
        ) from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if lo is not None and (v <= lo if lo_open else v < lo):
        op = ">" if lo_open else ">="
        raise ValueError(f"{name} must be {op} {lo}, got {v!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        op = "<" if hi_open else "<="
        raise ValueError(f"{name} must be {op} {hi}, got {v!r}")
    return v


def check_int_scalar(x: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """Validate an integer scalar (integral floats such as ``4.0`` are accepted).

    The value must lie in ``[lo, hi]`` and always in the int64 range (``|x| < 2**63``): a larger
    integer (``10**400``, ``2**63``, ``1e300``) would overflow the arithmetic that follows.
    Callers whose parameter sizes an array pass ``hi=MAX_SIZE`` (or a tighter bound)."""
    if isinstance(x, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    if isinstance(x, (numbers.Integral, np.integer)):
        v = int(x)
    elif isinstance(x, (numbers.Real, np.floating)) and np.isfinite(x) and float(x).is_integer():
        v = int(x)
    elif isinstance(x, (numbers.Real, np.floating)):
        raise ValueError(f"{name} must be an integer, got {x!r}")
    else:
        raise TypeError(f"{name} must be an integer, got {_describe(x)}")
    lo = -INT64_MAX - 1 if lo is None else max(lo, -INT64_MAX - 1)
    hi = INT64_MAX if hi is None else min(hi, INT64_MAX)
    if v < lo:
        raise ValueError(f"{name} must be >= {_short_int(lo)}, got {_short_int(v)}")
    if v > hi:
        raise ValueError(f"{name} must be <= {_short_int(hi)}, got {_short_int(v)}")
    return v


def check_same_shape(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    """Raise ``ValueError`` if two arrays differ in shape, naming both."""
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name} must have the same shape, got {a.shape} and {b.shape}")


def broadcast_to_size(x: Any, name: str, size: int, **kwargs: Any) -> np.ndarray:
    """Validate a scalar or 1-D array and return a contiguous float64 array of length ``size``.

    ``kwargs`` are passed to :func:`as_float_array` (e.g. ``finite=False`` to allow ``inf`` bounds).
    """
    arr = as_float_array(x, name, ndim=(0, 1), **kwargs)
    if arr.ndim == 0:
        return np.full(size, float(arr), dtype=np.float64)
    if arr.shape[0] != size:
        raise ValueError(f"{name} must be a scalar or have length {size}, got length {arr.shape[0]}")
    return arr


def check_rng(seed: Any, name: str = "seed") -> np.random.Generator:
    """Return a ``numpy.random.Generator`` from ``None``, an int seed, or a Generator.

    Never touches NumPy's global random state.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (numbers.Integral, np.integer, np.random.SeedSequence)):
        if isinstance(seed, bool):
            raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got bool")
        if seed is not None and not isinstance(seed, np.random.SeedSequence) and int(seed) < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {seed}")
        return np.random.default_rng(seed)
    raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got {_describe(seed)}")
