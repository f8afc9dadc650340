"""The data unpickler (pyskl ``.pkl``, 2023 ``<split>_label.pkl``): an exact allowlist of
globals, proven with hand-written hostile pickles and with every pickle NumPy writes."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.errors import FormatError, load_pickle
from migalab.errors import UserError
from tests.security.audit import RECORDER


def _unicode(text: str) -> bytes:
    """SHORT_BINUNICODE: a str on the stack."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _stack_global(module: str, name: str) -> bytes:
    """Protocol 4 STACK_GLOBAL of ``module`` / ``name`` (dotted names are walked)."""
    return _unicode(module) + _unicode(name) + b"\x93"


def _call1(callee: bytes, arg: bytes) -> bytes:
    """``callee(arg)`` (TUPLE1, REDUCE), then STOP; protocol 4 with a frame-less body."""
    return b"\x80\x04" + callee + arg + b"\x85R."


def _global(module: str, name: str) -> bytes:
    """GLOBAL opcode (protocols 0-3)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _write(tmp_path: Path, data: bytes, name: str = "hostile.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


SECRET = "secret-outside-the-run"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    path = folder / "secret.txt"
    path.write_text(SECRET)
    return path


def _hostile(secret: Path) -> dict[str, bytes]:
    """Pickles that reach files, codecs or builtins through names the old allowlist let pass
    (``numpy.dtypes`` + any name, protocol 4 dotted names, ``_codecs.encode`` with any codec) or
    through globals no allowlist should hold."""
    return {
        # numpy.dtypes.__loader__.get_data(path): reads any file (a dotted attribute walk)
        "dtypes loader walk": _call1(
            _stack_global("numpy.dtypes", "__loader__.get_data"), _unicode(str(secret))
        ),
        # a module-level helper of numpy.dtypes, its globals one dot away
        "dtypes helper globals": b"\x80\x04"
        + _stack_global("numpy.dtypes", "_add_dtype_helper.__globals__")
        + b".",
        # an allowed module with a dotted name
        "allowed module dotted name": b"\x80\x04"
        + _stack_global("collections", "OrderedDict.fromkeys")
        + b".",
        "numpy dotted name": _call1(
            _stack_global("numpy", "lib.format.os.system"), _unicode("echo pwned")
        ),
        # a codec other than latin1: codec lookup imports encodings.<name>
        "codecs rot13": b"\x80\x02"
        + _global("_codecs", "encode")
        + _unicode("abc")
        + _unicode("rot13")
        + b"\x86R.",
        "codecs on bytes": b"\x80\x02"
        + _global("_codecs", "encode")
        + b"C\x03abc"
        + _unicode("latin1")
        + b"\x86R.",
        "builtins eval": b"\x80\x02" + _global("builtins", "eval") + _unicode("1+1") + b"\x85R.",
        "os system": b"\x80\x02" + _global("os", "system") + _unicode("echo pwned") + b"\x85R.",
        "posix system": _call1(_stack_global("posix", "system"), _unicode("echo pwned")),
        "bytes of a number": b"\x80\x02"
        + _global("__builtin__", "bytes")
        + b"J"
        + struct.pack("<i", 10**9)
        + b"\x85R.",
        "persistent id": b"\x80\x02" + _unicode("x") + b"Q.",
    }


HOSTILE_NAMES = list(_hostile(Path("x")))


@pytest.mark.parametrize("what", HOSTILE_NAMES)
def test_hostile_pickles_are_refused_and_run_nothing(
    what: str, tmp_path: Path, secret: Path
) -> None:
    """Each hostile pickle is a FormatError (a UserError and a ValueError) naming the file,
    and loading it neither opens the file outside the run, nor starts a process, nor imports."""
    path = _write(tmp_path, _hostile(secret)[what])
    with RECORDER.armed(writable=[tmp_path / "run"], forbidden=[secret.parent]) as events:
        with pytest.raises(FormatError) as err:
            load_pickle(path)
    assert events == []
    assert isinstance(err.value, UserError) and isinstance(err.value, ValueError)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert SECRET not in str(err.value)


def test_the_hostile_pickles_are_real(tmp_path: Path, secret: Path) -> None:
    """The payloads do what they say with a plain unpickler (so the refusals above are real)."""
    hostile = _hostile(secret)
    assert pickle.loads(hostile["dtypes loader walk"]) == SECRET.encode()
    assert pickle.loads(hostile["codecs rot13"]) == "nop"
    assert pickle.loads(hostile["builtins eval"]) == 2
    assert isinstance(pickle.loads(hostile["dtypes helper globals"]), dict)


def _all_dtypes() -> list[np.dtype]:
    kinds = [np.dtype(c) for c in "?bBhHiIlLqQefdgFDGSUVO"]
    return kinds + [
        np.dtype("S5"), np.dtype("U3"), np.dtype("V4"), np.dtype("M8[ns]"), np.dtype("m8[s]"),
        np.dtype(">i4"), np.dtype("<f8"), np.dtype([("x", "<f4"), ("name", "S3")]),
        np.dtype(("<f4", (2, 3))), np.dtypes.StringDType(),
    ]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_pickle_numpy_writes_loads(protocol: int, tmp_path: Path) -> None:
    """Arrays (empty, 1-D, Fortran-ordered, non-contiguous), dtypes, dtype classes and scalars
    of every NumPy dtype, in the containers the release pickles use, load as a plain unpickler
    loads them."""
    objs = []
    for dt in _all_dtypes():
        arr = np.zeros((2, 3), dtype=dt)
        objs += [arr, np.asfortranarray(arr), arr[:, ::2], np.zeros(0, dtype=dt), dt, type(dt)]
        if dt.kind != "T":
            objs.append(arr.reshape(-1)[0])  # a NumPy scalar
    payload = {
        "split": {"train": ["a", "b"]},
        "annotations": [OrderedDict(frame_dir="a", keypoint=np.ones((1, 2, 3, 2), np.float32))],
        "objs": objs,
        "pair": (["n1", "n2"], [np.int64(3), 4]),
        "bytes": [b"", b"\x00\xff"],
    }
    data = pickle.dumps(payload, protocol=protocol)
    got, want = load_pickle(_write(tmp_path, data, "ok.pkl")), pickle.loads(data)
    assert got["split"] == payload["split"] and got["pair"][1] == [3, 4]
    assert got["bytes"] == payload["bytes"]
    for a, b in zip(got["objs"], want["objs"], strict=True):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b or (a is b)


def test_numpy1_module_names_load(tmp_path: Path) -> None:
    """Pickles written by NumPy 1 name ``numpy.core.multiarray``; they still load."""
    data = pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=2)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    got = load_pickle(_write(tmp_path, data, "np1.pkl"))
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file") as err:
        load_pickle(tmp_path / "nope.pkl")
    assert isinstance(err.value, UserError)


# -- each refusal's exact message, and the protocol-2 stand-ins at their edges --------------------
def _reason(tmp_path: Path, data: bytes) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(FormatError) as err:
        load_pickle(path)
    assert err.value.path == str(path) and str(err.value).startswith(f"{path}: ")
    return err.value.reason


def test_refusals_name_the_global_and_the_rule(tmp_path: Path) -> None:
    rule = ("a data pickle may hold only containers, numbers, strings and NumPy arrays, and "
            "loading anything else could run code")  # fmt: skip
    for module, name in (("os", "system"), ("collections", "OrderedDict.fromkeys"),
                         ("numpy.dtypes", "__loader__")):  # fmt: skip
        assert _reason(tmp_path, b"\x80\x04" + _stack_global(module, name) + b".") == (
            f"unreadable pickle (UnpicklingError: it references {module}.{name}; {rule})"
        )
    assert _reason(tmp_path, b"\x80\x02" + _unicode("x") + b"Q.") == (
        "unreadable pickle (UnpicklingError: a data pickle has no persistent ids)"
    )


def _codecs_encode(*args: bytes) -> bytes:
    return b"\x80\x02" + _global("_codecs", "encode") + b"(" + b"".join(args) + b"tR."


def test_codecs_encode_takes_text_as_latin1_only(tmp_path: Path) -> None:
    for codec in ("latin1", "latin-1"):
        data = _codecs_encode(_unicode("\x00\xe9"), _unicode(codec))
        assert load_pickle(_write(tmp_path, data)) == b"\x00\xe9"
    rule = "a data pickle may only encode text as latin1 (how protocol 2 stores bytes)"
    for args, shown in (
        ((_unicode("abc"),), "str, 'utf-8', 'strict'"),  # encode's own default codec
        ((_unicode("abc"), _unicode("LATIN1")), "str, 'LATIN1', 'strict'"),  # exact names
        ((_unicode("abc"), _unicode("latin1"), _unicode("ignore")), "str, 'latin1', 'ignore'"),
        ((b"C\x03abc", _unicode("latin1")), "bytes, 'latin1', 'strict'"),
    ):
        assert _reason(tmp_path, _codecs_encode(*args)) == (
            f"unreadable pickle (UnpicklingError: _codecs.encode({shown}): {rule})"
        )


def test_bytes_takes_nothing_or_bytes(tmp_path: Path) -> None:
    def call(*args: bytes) -> bytes:
        return b"\x80\x02" + _global("builtins", "bytes") + b"(" + b"".join(args) + b"tR."

    assert load_pickle(_write(tmp_path, call())) == b""
    got = load_pickle(_write(tmp_path, call(b"C\x02ab")))  # SHORT_BINBYTES
    assert got == b"ab" and type(got) is bytes
    refused = ("unreadable pickle (UnpicklingError: bytes(...) in a data pickle takes no argument "
               "or bytes)")  # fmt: skip
    assert _reason(tmp_path, call(b"C\x02ab", b"C\x02cd")) == refused  # two arguments
    assert _reason(tmp_path, call(b"K\x05")) == refused  # a number: bytes(5) allocates
    assert _reason(tmp_path, call(_unicode("ab"))) == refused


def test_a_missing_or_unreadable_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pkl"
    with pytest.raises(FormatError) as err:
        load_pickle(missing)
    assert str(err.value) == f"{missing}: no such file"
    assert _reason(tmp_path, b"\x80\x02K") == (
        "unreadable pickle (UnpicklingError: pickle data was truncated)"
    )


def test_format_error_fields_and_pickling() -> None:
    err = FormatError("a/b.csv", "line one\nline two", row=3)
    assert (err.path, err.row, err.reason) == ("a/b.csv", 3, "line one line two")
    assert str(err) == "a/b.csv: row 3: line one line two"
    assert str(FormatError(None, "x")) == "<unknown file>: x"
    assert FormatError(None, "x").path is None and FormatError(Path("p"), "x").path == "p"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is FormatError and str(again) == str(err) and again.row == 3
