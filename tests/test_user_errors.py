"""How console scripts report a :class:`~migalab.errors.UserError`, in process: one ``error:``
line and exit 2, the traceback only in debug mode (each environment value at its boundary),
``--debug`` taken off the command line, and Hydra's own refusals exiting 2 as well."""

from __future__ import annotations

import os
import sys

import pytest

from migalab.errors import (
    USER_ERROR_EXIT,
    UserError,
    debug_requested,
    report_user_errors,
    run_hydra_app,
    strip_debug_flag,
)

DEBUG_VARS = ("HYDRA_FULL_ERROR", "MIGALAB_DEBUG")


@pytest.fixture
def no_debug(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in DEBUG_VARS:  # set, then removed: undone even when the code under test sets it
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    return monkeypatch


@pytest.mark.parametrize("var", DEBUG_VARS)
@pytest.mark.parametrize(("value", "debug"), [("", False), ("0", False), ("1", True),
                                              ("00", True), ("true", True)])  # fmt: skip
def test_debug_requested_by_each_variable(
    no_debug: pytest.MonkeyPatch, var: str, value: str, debug: bool
) -> None:
    assert debug_requested() is False  # neither set
    no_debug.setenv(var, value)
    assert debug_requested() is debug
    no_debug.setenv(var.lower(), "1")  # environment names are exact
    assert debug_requested() is debug


def test_strip_debug_flag(no_debug: pytest.MonkeyPatch) -> None:
    argv = ["migalab-eval", "ckpt_path=x", "--DEBUG", "--debugx"]
    strip_debug_flag(argv)
    assert argv == ["migalab-eval", "ckpt_path=x", "--DEBUG", "--debugx"]  # exact flag only
    assert "MIGALAB_DEBUG" not in os.environ and not debug_requested()
    argv = ["migalab-eval", "--debug", "ckpt_path=x", "--debug"]
    strip_debug_flag(argv)
    assert argv == ["migalab-eval", "ckpt_path=x"]
    assert os.environ["MIGALAB_DEBUG"] == "1" and debug_requested()


def test_a_user_error_is_one_line_and_exit_2(
    no_debug: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @report_user_errors
    def body(x: int, *, y: int) -> int:
        if x < 0:
            raise UserError(f"bad.csv: x is {x}")
        if x == 0:
            raise KeyError("a bug")
        return x + y

    assert body.started is False  # not entered yet
    assert body(1, y=2) == 3 and body.started is True
    with pytest.raises(SystemExit) as exit_:
        body(-1, y=0)
    assert exit_.value.code == USER_ERROR_EXIT == 2
    assert capsys.readouterr().err == "error: bad.csv: x is -1\n"
    with pytest.raises(KeyError, match="a bug"):  # a bug propagates unchanged
        body(0, y=0)
    no_debug.setenv("MIGALAB_DEBUG", "1")
    with pytest.raises(UserError, match="x is -1"):  # debug mode: the traceback
        body(-1, y=0)
    assert body.__name__ == "body"


def _app(code: object, started: bool | None):
    def task() -> None: ...

    if started is not None:
        task.started = started  # type: ignore[attr-defined]

    def app() -> None:
        sys.exit(code)

    return app, task


@pytest.mark.parametrize(
    ("code", "started", "expected"),
    [
        (1, False, USER_ERROR_EXIT),  # Hydra refused the command line before the task ran
        (3, False, USER_ERROR_EXIT),
        (1, True, 1),  # the task ran: its own status
        (1, None, 1),  # a task that does not say: its own status
        (0, False, 0),
        (None, False, None),
    ],
)
def test_run_hydra_app_exit_status(
    no_debug: pytest.MonkeyPatch, code: object, started: bool | None, expected: object
) -> None:
    app, task = _app(code, started)
    no_debug.setattr(sys, "argv", ["migalab-eval", "--debug", "x=1"])
    with pytest.raises(SystemExit) as exit_:
        run_hydra_app(app, task)
    assert exit_.value.code == expected
    assert sys.argv == ["migalab-eval", "x=1"]  # --debug taken off before Hydra reads it


def test_run_hydra_app_returns_normally(no_debug: pytest.MonkeyPatch) -> None:
    calls = []
    no_debug.setattr(sys, "argv", ["migalab-eval"])
    run_hydra_app(lambda: calls.append(1), object())
    assert calls == [1]
