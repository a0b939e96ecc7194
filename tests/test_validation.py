"""geomln._validation: the single place that coerces input; every message names the argument."""

import re

import numpy as np
import pytest

from geomln import DataFileError, GeomlnError, InputError
from geomln._validation import (
    as_choice,
    as_float_array,
    as_points,
    as_positive_int,
    as_rng,
    as_tol,
    as_vector,
)


def test_error_hierarchy():
    assert issubclass(InputError, ValueError) and issubclass(InputError, GeomlnError)
    assert issubclass(DataFileError, OSError) and issubclass(DataFileError, GeomlnError)


# --------------------------------------------------------------------------------------------- as_float_array


@pytest.mark.parametrize(
    "value",
    [
        [[1, 2], [3, 4]],
        np.array([[1, 2], [3, 4]], dtype=np.int8),
        np.array([[1, 2], [3, 4]], dtype=np.uint64),
        np.array([[1, 2], [3, 4]], dtype=np.float32),
        np.asfortranarray(np.array([[1.0, 2.0], [3.0, 4.0]])),
        np.array([[1.0, 9.0, 2.0], [3.0, 9.0, 4.0]])[:, ::2],
    ],
    ids=["list", "int8", "uint64", "float32", "fortran", "strided"],
)
def test_as_float_array_returns_c_contiguous_float64(value):
    array = as_float_array(value, "a")
    assert array.dtype == np.float64 and array.flags.c_contiguous
    np.testing.assert_array_equal(array, [[1.0, 2.0], [3.0, 4.0]])


def test_as_float_array_accepts_bool():
    np.testing.assert_array_equal(as_float_array([True, False], "a"), [1.0, 0.0])


def test_as_float_array_min_ndim_and_empty():
    with pytest.raises(InputError, match=r"`a` must have at least 2 dimension\(s\); got shape \(3,\)"):
        as_float_array([1, 2, 3], "a", min_ndim=2)
    with pytest.raises(InputError, match=r"`a` must not be empty; got shape \(2, 0\)"):
        as_float_array(np.zeros((2, 0)), "a")
    assert as_float_array(np.zeros((2, 0)), "a", allow_empty=True).shape == (2, 0)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array(["1", "2"]), r"`a` must be a numeric array; got dtype <U1"),
        (np.array([b"1"]), r"`a` must be a numeric array; got dtype \|S1"),
        (np.array([1, "x"], dtype=object), r"`a` must be a numeric array; got dtype object"),
        (
            np.array(["2020-01-01"], dtype="datetime64[D]"),
            r"`a` must be a numeric array; got dtype datetime64",
        ),
        (
            np.array([1j]),
            r"`a` must be real-valued; got complex dtype complex128. Take .real or abs\(\) first",
        ),
        (np.array([1j], dtype=np.complex64), r"`a` must be real-valued; got complex dtype complex64"),
        ([[1], [2, 3]], r"`a` must be a numeric array; could not convert it"),
    ],
    ids=["str", "bytes", "object", "datetime", "complex128", "complex64", "ragged"],
)
def test_as_float_array_type_errors(value, match):
    with pytest.raises(TypeError, match=match):
        as_float_array(value, "a")


@pytest.mark.parametrize(
    ("shape", "position", "value", "match"),
    [
        ((6,), (4,), np.nan, r"`a` contains 1 NaN value \(first at index 4\); remove or impute them first"),
        ((3, 2), (2, 1), np.inf, r"`a` contains 1 infinite value \(first at row 2\)"),
        ((2, 2, 2), (1, 0, 1), -np.inf, r"`a` contains 1 infinite value \(first at index \(1, 0, 1\)\)"),
    ],
)
def test_as_float_array_nonfinite_names_first_position(shape, position, value, match):
    array = np.zeros(shape)
    array[position] = value
    with pytest.raises(InputError, match=match):
        as_float_array(array, "a")


def test_as_float_array_nonfinite_counts_and_first_in_row_major_order():
    array = np.zeros((4, 3))
    array[3, 0] = np.nan
    array[1, 2] = np.inf
    array[2, 2] = np.nan
    with pytest.raises(
        InputError, match=r"`a` contains 2 NaN values and 1 infinite value \(first at row 1\)"
    ):
        as_float_array(array, "a")


def test_as_float_array_large_float32_stays_finite():
    np.testing.assert_array_equal(as_float_array(np.array([3e38], dtype=np.float32), "a"), [np.float32(3e38)])


# --------------------------------------------------------------------------------------------- as_points


def test_as_points_accepts_matrix():
    assert as_points([[1, 2, 3], [4, 5, 6]], "keys").shape == (2, 3)


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2)])
def test_as_points_wrong_rank(shape):
    with pytest.raises(
        InputError, match=re.escape(f"`keys` must be a 2-D array of shape (n, d); got shape {shape}")
    ):
        as_points(np.zeros(shape), "keys")


def test_as_points_min_rows_and_min_dim():
    with pytest.raises(InputError, match=r"`keys` must have at least 2 row\(s\); got shape \(1, 3\)"):
        as_points(np.zeros((1, 3)), "keys", min_rows=2)
    with pytest.raises(InputError, match=r"`keys` must have at least 1 row\(s\); got shape \(0, 3\)"):
        as_points(np.zeros((0, 3)), "keys")
    with pytest.raises(
        InputError, match=r"`keys` must have at least 2 column\(s\) \(d >= 2\); got shape \(5, 1\)"
    ):
        as_points(np.zeros((5, 1)), "keys", min_dim=2)


def test_as_points_nonfinite():
    with pytest.raises(InputError, match=r"`keys` contains 1 NaN value \(first at row 1\)"):
        as_points([[0.0, 1.0], [np.nan, 1.0]], "keys")


# --------------------------------------------------------------------------------------------- as_vector


def test_as_vector():
    np.testing.assert_array_equal(as_vector([1, 2], "w", length=2), [1.0, 2.0])
    with pytest.raises(InputError, match=r"`w` must be a 1-D array; got shape \(1, 2\)"):
        as_vector([[1, 2]], "w")
    with pytest.raises(InputError, match=r"`w` must have at least 1 dimension\(s\); got shape \(\)"):
        as_vector(1.0, "w")
    with pytest.raises(InputError, match=r"`w` must have length 3 \(the number of columns\); got length 2"):
        as_vector([1, 2], "w", length=3, length_name="the number of columns")
    with pytest.raises(InputError, match=r"`w` must have length 3; got length 2"):
        as_vector([1, 2], "w", length=3)
    with pytest.raises(InputError, match=r"`w` must not be empty; got shape \(0,\)"):
        as_vector([], "w")


# --------------------------------------------------------------------------------------------- scalars


def test_as_tol():
    assert as_tol(None, default=1e-9) == 1e-9
    assert as_tol(0, default=1.0) == 0.0 and isinstance(as_tol(1, default=0.0), float)
    assert as_tol(np.float32(0.5), default=0.0) == 0.5
    for bad in (-1e-3, np.nan, np.inf):
        with pytest.raises(InputError, match=r"`tol` must be a finite number >= 0; got"):
            as_tol(bad, default=0.0)
    with pytest.raises(InputError, match=r"`atol` must be a finite number >= 0; got -1.0"):
        as_tol(-1, "atol", default=0.0)
    for bad in ("0.1", True, [0.1]):
        with pytest.raises(TypeError, match=r"`tol` must be a real number or None; got"):
            as_tol(bad, default=0.0)


def test_as_positive_int():
    assert as_positive_int(3, "n") == 3 and as_positive_int(np.int64(0), "n", minimum=0) == 0
    with pytest.raises(InputError, match=r"`n` must be >= 1; got 0"):
        as_positive_int(0, "n")
    for bad in (2.0, "3", True):
        with pytest.raises(TypeError, match=r"`n` must be an integer; got"):
            as_positive_int(bad, "n")


def test_as_choice():
    assert as_choice("qhull", "method", ("qhull", "lp")) == "qhull"
    with pytest.raises(InputError, match=r"`method` must be one of 'qhull', 'lp'; got 'simplex'"):
        as_choice("simplex", "method", ("qhull", "lp"))


def test_as_rng():
    assert as_rng(7).integers(1000) == np.random.default_rng(7).integers(1000)
    generator = np.random.default_rng(1)
    assert as_rng(generator) is generator
    assert isinstance(as_rng(None), np.random.Generator)
    assert (
        as_rng(np.random.SeedSequence(3)).random()
        == np.random.default_rng(np.random.SeedSequence(3)).random()
    )
    with pytest.raises(
        TypeError, match=r"`rng` must be an int, a numpy Generator, a SeedSequence or None; got str"
    ):
        as_rng("seed")
    with pytest.raises(TypeError, match=r"`seed` must be an int"):
        as_rng(1.5, "seed")
