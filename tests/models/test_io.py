"""geomln.models.io.load_array and geomln._files (atomic output)."""

import gc
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from geomln import DataFileError, load_keys, save_keys
from geomln._files import atomic_output, ensure_directory
from geomln.models.io import load_array

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
    with pytest.raises(DataFileError, match=r"`name` 'values' is not an array of .* \(available: keys, queries\)"):
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
    with pytest.raises(DataFileError, match=r"'.*folder\.npy' is a directory, not a file"):
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


# ------------------------------------------------------------------ bad files: one clear error, both readers


def _keys_values(path):
    return load_keys(path).values


READERS = {"load_array": load_array, "load_keys": _keys_values}


@pytest.fixture(params=READERS, ids=READERS)
def read(request):
    return READERS[request.param]


def _saved(writer):
    """`writer(stream)` writes a NumPy file into an open file, whatever the file's name says."""
    def write(path):
        with open(path, "wb") as stream:
            writer(stream)
    return write


WRONG_FORMAT = {
    "text.npy": (lambda p: p.write_text("1,2,3\n4,5,6\n"), r"not a NumPy \.npy file \(it looks like text: rename"),
    "text.npz": (lambda p: p.write_text("1 2\n3 4\n"), r"not a NumPy \.npz archive \(it looks like text"),
    "empty.npy": (lambda p: p.write_bytes(b""), r"not a NumPy \.npy file \(the file is empty\)"),
    "binary.npy": (lambda p: p.write_bytes(bytes(range(256))), r"not a NumPy \.npy file \(its first bytes are b'\\x00"),
    "archive.npy": (_saved(lambda s: np.savez(s, a=MATRIX)), r"not a NumPy \.npy file \(it is a NumPy \.npz archive: "
                                                            r"rename it to archive\.npz\)"),
    "array.npz": (_saved(lambda s: np.save(s, MATRIX)), r"not a NumPy \.npz archive \(it is a NumPy \.npy file: "
                                                        r"rename it to array\.npy\)"),
    "pickled.npy": (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
                    r"holds Python objects \(pickled data\), which geomln never loads"),
    "pickled.npz": (lambda p: np.savez(p, keys=np.array([{"a": 1}], dtype=object)),
                    r"holds Python objects \(pickled data\), which geomln never loads"),
}


@pytest.mark.parametrize("name", WRONG_FORMAT, ids=WRONG_FORMAT)
def test_a_file_not_in_its_suffix_format_is_named_and_never_advises_pickles(tmp_path, read, name):
    write, match = WRONG_FORMAT[name]
    write(tmp_path / name)
    with pytest.raises(DataFileError, match=rf"cannot read '.*{re.escape(name)}': .*{match}") as info:
        read(tmp_path / name)
    assert "allow_pickle" not in str(info.value) and "unsafe" not in str(info.value)


def test_a_directory_is_named_as_one_by_both_readers(tmp_path, read):
    (tmp_path / "keys.npz").mkdir()
    with pytest.raises(DataFileError, match=r"'.*keys\.npz' is a directory, not a file; pass one of its files"):
        read(tmp_path / "keys.npz")
    with pytest.raises(DataFileError, match=r"'.*[/\\]data' is a directory"):  # no suffix: still a directory
        (tmp_path / "data").mkdir()
        read(tmp_path / "data")


EMPTY = {
    "empty.npy": (lambda p: np.save(p, np.empty((0, 3))), r"'.*empty\.npy' holds an empty array \(shape \(0, 3\)\)"),
    "columns.npy": (lambda p: np.save(p, np.empty((4, 0))), r"'.*columns\.npy' holds an empty array \(shape \(4, 0"),
    "member.npz": (lambda p: np.savez(p, keys=np.empty((0, 2))),
                   r"array 'keys' of '.*member\.npz' holds an empty array \(shape \(0, 2\)\)"),
    "header.csv": (lambda p: p.write_text("a,b\n"), r"'.*header\.csv' holds no numbers below its header row"),
}


@pytest.mark.parametrize("name", EMPTY, ids=EMPTY)
def test_an_empty_array_names_the_file(tmp_path, read, name):
    write, match = EMPTY[name]
    write(tmp_path / name)
    with pytest.raises(DataFileError, match=match):
        read(tmp_path / name)


def test_npz_listings_never_show_the_metadata_array(tmp_path):
    path = tmp_path / "keys.npz"
    save_keys(path, {"keys": MATRIX, "queries": MATRIX * 2}, axes="token,dim")
    np.testing.assert_array_equal(load_array(path), MATRIX)  # the file's default array
    for reader in (load_array, load_keys):
        with pytest.raises(DataFileError, match=r"`name` 'values' is not an array of .* \(available: keys, queries\)$"):
            reader(path, name="values")


# CSV text exactly as pandas 2.x writes it: DataFrame(MATRIX).to_csv(...) and DataFrame(MATRIX, columns=[...])
PANDAS_CSV = {
    "index=False": "0,1,2\n1.5,-2.0,3.0\n4.0,5.25,-6.0\n",
    "index=True": ",0,1,2\n0,1.5,-2.0,3.0\n1,4.0,5.25,-6.0\n",
    "named, index=False": "k0,k1,k2\n1.5,-2.0,3.0\n4.0,5.25,-6.0\n",
    "named, index=True": ",k0,k1,k2\n0,1.5,-2.0,3.0\n1,4.0,5.25,-6.0\n",
    "quoted names": '"a,b",c,d\n1.5,-2.0,3.0\n4.0,5.25,-6.0\n',
    "CRLF, BOM": "\ufeffk0,k1,k2\r\n1.5,-2.0,3.0\r\n4.0,5.25,-6.0\r\n",
}
PANDAS_COLUMNS = {"index=False": ["0", "1", "2"], "index=True": ["0", "1", "2"], "quoted names": ["a,b", "c", "d"]}


@pytest.mark.parametrize("case", PANDAS_CSV, ids=PANDAS_CSV)
def test_a_pandas_header_and_index_are_never_read_as_data(tmp_path, case):
    path = tmp_path / "keys.csv"
    path.write_bytes(PANDAS_CSV[case].encode())
    np.testing.assert_array_equal(load_array(path), MATRIX)
    keys = load_keys(path)
    np.testing.assert_array_equal(keys.values, MATRIX)
    assert keys.metadata["columns"] == PANDAS_COLUMNS.get(case, ["k0", "k1", "k2"])


def test_header_detection_on_tab_and_space_separated_files(tmp_path):
    (tmp_path / "keys.tsv").write_text("\t0\t1\t2\n0\t1.5\t-2.0\t3.0\n1\t4.0\t5.25\t-6.0\n")
    np.testing.assert_array_equal(load_array(tmp_path / "keys.tsv"), MATRIX)
    (tmp_path / "keys.txt").write_text("# comment\nx y z\n1.5 -2.0 3.0\n4.0 5.25 -6.0\n")
    np.testing.assert_array_equal(load_array(tmp_path / "keys.txt"), MATRIX)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1,2\n3,4,5\n", [[0, 1, 2], [3, 4, 5]]),  # all integers: a data row like any other
        ("0,1,2\n0.5,1,2\n", None),  # 0..d-1 above a non-integer: pandas' header
        ("0,1\n1,0\n", [[0, 1], [1, 0]]),
        ("1,2,3\n4.5,5,6\n", [[1, 2, 3], [4.5, 5, 6]]),  # numbers, but not 0..d-1: data
        ("0\n0.5\n1.5\n", [[0], [0.5], [1.5]]),  # one column: "0" is a value
        ("0,2,1\n0.5,1,2\n", [[0, 2, 1], [0.5, 1, 2]]),
    ],
)
def test_a_numeric_first_row_is_a_header_only_when_it_is_pandas_0_to_d_minus_1(tmp_path, text, expected):
    path = tmp_path / "keys.csv"
    path.write_text(text)
    np.testing.assert_array_equal(load_array(path), [[0.5, 1, 2]] if expected is None else expected)


BAD_CSV = {
    "index not 0..n-1": (",k0,k1\n5,1.0,2.0\n7,3.0,4.0\n",
                         r"its first column has an empty header, as pandas writes for an index, but does not "
                         r"hold 0, 1, \.\.\., 1; write the file with to_csv\(index=False\)"),
    "header too short": ("k0,k1\n1.0,2.0,3.0\n", r"its header row names 2 column\(s\) but its rows hold 3"),
    "mixed first row": ("token,0,1\n1.0,2.0,3.0\n", r"could not convert string 'token'"),
}


@pytest.mark.parametrize("case", BAD_CSV, ids=BAD_CSV)
def test_a_header_that_does_not_fit_is_refused_with_a_hint(tmp_path, read, case):
    text, match = BAD_CSV[case]
    (tmp_path / "keys.csv").write_text(text)
    with pytest.raises(DataFileError, match=rf"cannot read '.*keys\.csv': {match}"):
        read(tmp_path / "keys.csv")


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
