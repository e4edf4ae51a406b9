"""Tests for the shared input-validation helpers (``solvers._validation``)."""

import numpy as np
import pytest

from solvers._validation import (
    as_float_array,
    as_int_array,
    broadcast_to_size,
    check_finite_scalar,
    check_int_scalar,
    check_rng,
)


def test_float_array_coerces_to_contiguous_float64():
    x = np.arange(10, dtype=np.int32)[::2]
    out = as_float_array(x, "a")
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [0, 2, 4, 6, 8])


@pytest.mark.parametrize(
    "bad, match",
    [
        ([1.0, np.nan], r"a must be finite, got nan at index 1"),
        ([1.0, np.inf], r"a must be finite, got inf at index 1"),
        ([1.0, -2.0], r"a must be non-negative, got -2.0 at index 1"),
    ],
)
def test_float_array_names_parameter_and_value(bad, match):
    with pytest.raises(ValueError, match=match):
        as_float_array(bad, "a", nonneg=True)


def test_float_array_type_errors():
    with pytest.raises(TypeError, match="a must be an array of real numbers"):
        as_float_array("abc", "a")
    with pytest.raises(TypeError, match="complex"):
        as_float_array([1 + 2j], "a")
    with pytest.raises(TypeError, match="dtype object"):
        as_float_array([1, None], "a")


def test_float_array_scalar_bad_value_message():
    with pytest.raises(ValueError, match=r"n must be finite, got inf$"):
        as_float_array(np.inf, "n")
    with pytest.raises(ValueError, match=r"n must be non-negative, got -1.0$"):
        as_float_array(-1.0, "n", nonneg=True)


def test_float_array_ndim_and_inf_allowed():
    with pytest.raises(ValueError, match=r"x must be 1-D, got shape \(2, 2\)"):
        as_float_array(np.ones((2, 2)), "x", ndim=1)
    out = as_float_array([1.0, np.inf], "upper", finite=False)
    assert np.isinf(out[1])
    with pytest.raises(ValueError, match="upper must not contain NaN"):
        as_float_array([np.nan], "upper", finite=False)


def test_int_array():
    np.testing.assert_array_equal(as_int_array([1.0, 2.0], "arms"), [1, 2])
    with pytest.raises(ValueError, match=r"arms must contain integers, got 2.5 at index 1"):
        as_int_array([1.0, 2.5], "arms")
    with pytest.raises(ValueError, match="counts must be non-negative"):
        as_int_array([1, -1], "counts", nonneg=True)
    with pytest.raises(TypeError, match="bin_ids must be an array of integers, got booleans"):
        as_int_array([True, False], "bin_ids")


def test_scalars():
    assert check_finite_scalar(np.float32(2.5), "delta", lo=0) == 2.5
    with pytest.raises(ValueError, match=r"delta must be >= 0, got -1.0"):
        check_finite_scalar(-1.0, "delta", lo=0)
    with pytest.raises(ValueError, match=r"eta must be > 0"):
        check_finite_scalar(0.0, "eta", lo=0, lo_open=True)
    with pytest.raises(TypeError, match="delta must be a real number, got bool"):
        check_finite_scalar(True, "delta")
    with pytest.raises(ValueError, match="delta must be finite"):
        check_finite_scalar(float("nan"), "delta")
    assert check_int_scalar(4.0, "budget") == 4
    with pytest.raises(ValueError, match=r"budget must be an integer, got 4.5"):
        check_int_scalar(4.5, "budget")
    with pytest.raises(ValueError, match=r"budget must be >= 1, got 0"):
        check_int_scalar(0, "budget", lo=1)


def test_broadcast_and_rng():
    np.testing.assert_array_equal(broadcast_to_size(3, "lower", 4), [3, 3, 3, 3])
    with pytest.raises(ValueError, match="lower must be a scalar or have length 4, got length 3"):
        broadcast_to_size([1, 2, 3], "lower", 4)
    g = np.random.default_rng(1)
    assert check_rng(g) is g
    assert check_rng(5).integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
        check_rng("x")


# -- extreme inputs ----------------------------------------------------------------------------


def test_huge_python_ints_are_value_errors_naming_the_parameter():
    """Extreme inputs: ``float(10**400)`` raised OverflowError inside the scalar validator (about 25
    functions and constructors); integral checks accepted 1e308 / 10**30 / 2**63, which
    overflowed later (``Exp3IX(4, horizon=1e308)``, ``RidgePredictor(window=10**19)``)."""
    for v in (10**400, -(10**400)):
        with pytest.raises(ValueError, match=r"delta must be finite, got the integer .*too large for a float64"):
            check_finite_scalar(v, "delta")
    for v in (10**30, 2**63, 1e308, -(2**63) - 1, 1e19):
        with pytest.raises(ValueError, match=r"horizon must be (<=|>=) -?9223372036854775\d+"):
            check_int_scalar(v, "horizon")
    assert check_int_scalar(2**63 - 1, "horizon") == 2**63 - 1
    with pytest.raises(ValueError, match=r"n_arms must be <= 2147483647, got 1000"):
        check_int_scalar(10**30, "n_arms", lo=1, hi=2**31 - 1)


def test_int_arrays_never_wrap_around():
    """uint64 values >= 2**63 and integral floats beyond int64 were cast with wrap-around
    (``[2**63]`` became ``-2**63``; ``[1e308]`` an arbitrary integer)."""
    with pytest.raises(ValueError, match=r"ids must contain integers in the int64 range, got 9223372036854775808"):
        as_int_array(np.array([2**63, 1], dtype=np.uint64), "ids")
    with pytest.raises(ValueError, match=r"ids must contain integers in the int64 range, got 1e\+308 at index 1"):
        as_int_array([1.0, 1e308], "ids")
    np.testing.assert_array_equal(as_int_array(np.array([2**63 - 1], dtype=np.uint64), "ids"), [2**63 - 1])
