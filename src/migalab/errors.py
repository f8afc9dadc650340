"""The suite's user-facing error type and how console scripts report it.

A :class:`UserError` is a problem with what the user handed the suite -- a malformed or hostile
file, a refused checkpoint, a bad override -- as opposed to a bug of the suite. Console scripts
print it as one line naming the file and the problem and exit with status 2
(:func:`report_user_errors`); the traceback is shown only in debug mode (``HYDRA_FULL_ERROR=1``,
``MIGALAB_DEBUG=1`` or ``--debug`` on the command line, see :func:`debug_requested`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "USER_ERROR_EXIT",
    "MissingInputError",
    "UserError",
    "debug_requested",
    "report_user_errors",
    "run_hydra_app",
    "strip_debug_flag",
]

#: exit status of a console script refused by a :class:`UserError` (argparse uses 2 as well)
USER_ERROR_EXIT = 2

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """What the user gave is wrong or refused; the message names the file (or option) and says
    what is wrong and, where there is one, what to do instead. Subclasses also derive from the
    builtin type callers already catch (``ValueError``, ``RuntimeError``)."""


def debug_requested() -> bool:
    """Whether tracebacks of user errors are wanted (``HYDRA_FULL_ERROR=1`` or
    ``MIGALAB_DEBUG=1`` in the environment)."""
    return any(
        os.environ.get(k, "") not in ("", "0") for k in ("HYDRA_FULL_ERROR", "MIGALAB_DEBUG")
    )


def strip_debug_flag(argv: list[str]) -> None:
    """Remove ``--debug`` from ``argv`` (in place) and turn debug mode on when it was there (a
    Hydra app would read it as an override)."""
    if "--debug" in argv:
        argv[:] = [a for a in argv if a != "--debug"]
        os.environ["MIGALAB_DEBUG"] = "1"


def report_user_errors(fn: F) -> F:
    """Decorate a console script's body: a :class:`UserError` escaping it is printed as one
    ``error: ...`` line on stderr and the process exits with :data:`USER_ERROR_EXIT` (in debug
    mode it propagates with its traceback). Other exceptions are bugs and propagate unchanged.
    The wrapper's ``started`` attribute tells whether the body was entered (a Hydra app that
    fails before, in composing its config, was refused an override)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wrapper.started = True  # type: ignore[attr-defined]
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            if debug_requested():
                raise
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(USER_ERROR_EXIT)

    wrapper.started = False  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


def run_hydra_app(app: Callable[[], Any], task: Any) -> None:
    """The body of a Hydra console script's ``main()``: ``--debug`` handling, then ``app()``
    (the ``@hydra.main`` function). ``task`` is the function given to ``hydra.main`` decorated
    with :func:`report_user_errors`: a user error inside it exits 2 with one line; Hydra's own
    refusal of the command line (a bad override, an unknown config group), which happens before
    the task starts, exits 2 as well instead of Hydra's 1."""
    strip_debug_flag(sys.argv)
    try:
        app()
    except SystemExit as exc:
        if exc.code not in (0, None) and not getattr(task, "started", True):
            sys.exit(USER_ERROR_EXIT)
        raise
