"""geomln.io.load_array and geomln._files (atomic output)."""

import gc
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from geomln import DataFileError
from geomln._files import atomic_output, ensure_directory
from geomln.io import load_array

MATRIX = np.array([[1.5, -2.0, 3.0], [4.0, 5.25, -6.0]])


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------------------------- formats


def test_npy_roundtrip(tmp_path):
    path = tmp_path / "keys.npy"
    np.save(path, MATRIX)
    np.testing.assert_array_equal(load_array(path), MATRIX)
    np.testing.assert_array_equal(load_array(str(path)), MATRIX)


def test_npy_keeps_dtype_and_shape(tmp_path):
    path = tmp_path / "ints.npy"
    np.save(path, np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    array = load_array(path)
    assert array.dtype == np.int16 and array.shape == (2, 3, 4)


def test_npz_single_array_needs_no_name(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, keys=MATRIX)
    np.testing.assert_array_equal(load_array(path), MATRIX)
    np.testing.assert_array_equal(load_array(path, name="keys"), MATRIX)


def test_npz_several_arrays_need_a_name(tmp_path):
    path = tmp_path / "many.npz"
    np.savez_compressed(path, keys=MATRIX, queries=MATRIX * 2)
    with pytest.raises(
        DataFileError, match=r"holds 2 arrays; choose one with name=\.\.\. \(available: keys, queries\)"
    ):
        load_array(path)
    np.testing.assert_array_equal(load_array(path, name="queries"), MATRIX * 2)
    with pytest.raises(DataFileError, match=r"has no array 'values' \(available: keys, queries\)"):
        load_array(path, name="values")


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t"), (".txt", " "), (".txt", "  \t ")])
def test_text_formats(tmp_path, suffix, sep):
    path = tmp_path / f"keys{suffix}"
    lines = ["# a comment line", *(sep.join(repr(float(v)) for v in row) for row in MATRIX), ""]
    path.write_text("\n".join(lines))
    array = load_array(path)
    assert array.dtype == np.float64
    np.testing.assert_array_equal(array, MATRIX)


def test_text_single_row_and_single_column_stay_2d(tmp_path):
    row = tmp_path / "row.csv"
    row.write_text("1,2,3\n")
    assert load_array(row).shape == (1, 3)
    column = tmp_path / "column.csv"
    column.write_text("1\n2\n3\n")
    assert load_array(column).shape == (3, 1)


def test_suffix_is_case_insensitive_and_crlf_is_fine(tmp_path):
    path = tmp_path / "KEYS.CSV"
    path.write_bytes(b"1,2\r\n3,4\r\n")
    np.testing.assert_array_equal(load_array(path), [[1.0, 2.0], [3.0, 4.0]])


# --------------------------------------------------------------------------------------------- errors


def test_data_file_error_is_an_os_error():
    assert issubclass(DataFileError, OSError)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.npy"
    with pytest.raises(DataFileError, match=r"no such file: '.*absent\.npy'"):
        load_array(path)


def test_directory_is_not_a_file(tmp_path):
    (tmp_path / "folder.npy").mkdir()
    with pytest.raises(DataFileError, match=r"no such file: '.*folder\.npy'"):
        load_array(tmp_path / "folder.npy")


@pytest.mark.parametrize(
    ("name", "shown"), [("keys.h5", "'.h5'"), ("keys", "'(none)'"), ("keys.npy.gz", "'.gz'")]
)
def test_unsupported_suffix_lists_supported_formats(tmp_path, name, shown):
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(
        DataFileError,
        match=rf"unsupported file type {re.escape(shown)}.*supported: \.npy, \.npz, \.csv, \.tsv, \.txt",
    ):
        load_array(path)


CORRUPT = {
    "garbage.npy": lambda p: p.write_bytes(b"this is not numpy"),
    "truncated.npy": lambda p: p.write_bytes(_npy_bytes(p)[:-7]),
    "header-only.npy": lambda p: p.write_bytes(_npy_bytes(p)[:20]),
    "pickled.npy": lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
    "garbage.npz": lambda p: p.write_bytes(b"definitely not a zip"),
    "truncated.npz": lambda p: p.write_bytes(_npz_bytes(p)[:40]),
    "ragged.csv": lambda p: p.write_text("1,2,3\n4,5\n"),
    "words.csv": lambda p: p.write_text("1,2,x\n"),
    "binary.txt": lambda p: p.write_bytes(bytes(range(256))),
}


def _npy_bytes(path):
    np.save(path, np.arange(12.0).reshape(3, 4))
    return path.read_bytes()


def _npz_bytes(path):
    np.savez(path, a=np.arange(50.0), b=np.ones(5))
    return path.read_bytes()


@pytest.mark.parametrize("name", CORRUPT, ids=CORRUPT)
def test_corrupt_files_raise_data_file_error_naming_the_path(tmp_path, name):
    path = tmp_path / name
    CORRUPT[name](path)
    with pytest.raises(DataFileError, match=rf"cannot read '.*{re.escape(name)}': \S"):
        load_array(path)


def test_corrupt_npz_does_not_leak_the_file_handle(tmp_path):
    path = tmp_path / "truncated.npz"
    CORRUPT["truncated.npz"](path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataFileError):
            load_array(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank", "comment"])
def test_text_file_without_numbers(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(DataFileError, match=r"'.*empty\.csv' holds no numbers"):
        load_array(path)


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="root (or Windows) can read mode-000 files"
)
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.npy"
    np.save(path, MATRIX)
    path.chmod(0)
    try:
        with pytest.raises(DataFileError, match=r"cannot read '.*secret\.npy': .*[Pp]ermission denied"):
            load_array(path)
    finally:
        path.chmod(0o600)


# --------------------------------------------------------------------------------------------- atomic output


def test_atomic_output_writes_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.txt"
    with atomic_output(target) as stream:
        stream.write("first line\nsecond\n")
        assert not target.exists()  # nothing visible until the body succeeds
    assert target.read_text() == "first line\nsecond\n"
    assert _leftovers(tmp_path) == []


def test_atomic_output_binary_and_overwrite(tmp_path):
    target = tmp_path / "blob.bin"
    target.write_bytes(b"old")
    with atomic_output(target, "wb") as stream:
        stream.write(b"\x00\x01new")
    assert target.read_bytes() == b"\x00\x01new"
    assert _leftovers(tmp_path) == []


def test_atomic_output_failure_leaves_no_file(tmp_path):
    target = tmp_path / "report.json"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(target) as stream:
            stream.write("partial")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("previous result")
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(target) as stream:
            stream.write("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "previous result"
    assert _leftovers(tmp_path) == []


def test_atomic_output_into_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "out.txt"
    with pytest.raises(DataFileError, match=r"cannot write '.*out\.txt'"):
        with atomic_output(target) as stream:
            stream.write("never")
    assert not (tmp_path / "no").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_atomic_output_file_mode_follows_umask(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_output(target) as stream:
        stream.write("x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert (target.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


def test_ensure_directory(tmp_path):
    made = ensure_directory(tmp_path / "a" / "b")
    assert made.is_dir() and made == tmp_path / "a" / "b"
    assert ensure_directory(made) == made  # existing is fine
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataFileError, match=r"`out`: cannot create directory '.*file'"):
        ensure_directory(blocker)
    with pytest.raises(DataFileError, match=r"`figures`: cannot create directory '.*file[/\\]sub'"):
        ensure_directory(blocker / "sub", "figures")
