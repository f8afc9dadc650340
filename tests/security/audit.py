"""A Python audit hook (PEP 578) that records what loading a file did, for the hostile-file tests.

A test does not list the payloads it thought of; it runs the user's command on a hostile file
with this hook armed and asserts that nothing in these classes happened:

* a process was started (``subprocess.Popen``, ``os.system``, ``os.exec*``, ``os.posix_spawn``,
  ``os.spawn*``, ``os.fork``, ``pty.spawn``);
* a file was opened for writing, created, removed or renamed outside the folders the run may
  write (its run dir, the data dir it was given), or any file was opened inside a folder the run
  must not touch (``forbidden``: e.g. the folder a hostile checkpoint names);
* a module was imported from a file outside the environment (a ``hubconf.py`` or an
  attacker's module beside the file: checked on the modules loaded while armed), or an import
  of a name that is neither the standard library's nor an installed package's was attempted,
  or one of the stdlib modules no command of ours needs (:data:`NEVER_IMPORTED`) was imported
  (libraries probe for optional packages: an attempt at a missing installed-style name such
  as ``apex`` is not flagged, since nothing is loaded);
* code was compiled from a file outside the environment (``exec`` of a code object whose file
  is not under ``sys.prefix`` / the stdlib / the checkout's ``src``), or the network was used
  (``socket.connect``, ``urllib.Request``), or a pickle referenced a global
  (``pickle.find_class``) that :data:`PICKLE_GLOBALS_OK` does not list.

Audit hooks cannot be removed, so :class:`AuditRecorder` installs one per process and records
only while armed (``with recorder.armed(...)``). :func:`run_audited` runs a console script's
entry function in a fresh interpreter under the hook (``python -m tests.security.audit``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: events that start a process
PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.forkpty", "pty.spawn", "os.startfile",
})  # fmt: skip
#: events that change the file system (besides ``open`` for writing)
FS_EVENTS = frozenset({
    "os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod",
    "os.truncate", "shutil.rmtree", "shutil.move", "os.chown", "os.utime",
})  # fmt: skip
NET_EVENTS = frozenset(
    {"socket.connect", "socket.getaddrinfo", "urllib.Request", "http.client.connect"}
)
#: stdlib modules no migalab command imports
NEVER_IMPORTED = frozenset({
    "webbrowser", "telnetlib", "ftplib", "smtplib", "antigravity", "this", "imaplib", "poplib",
    "nntplib", "xmlrpc",
})  # fmt: skip
#: globals a data pickle read by the suite may name (the torch weights-only unpickler raises no
#: pickle.find_class events; this is the data unpickler's set plus pickle's own helpers)
PICKLE_GLOBALS_OK_MODULES = frozenset({
    "collections", "_codecs", "numpy", "numpy.core.multiarray", "numpy._core.multiarray",
    "numpy.core.numeric", "numpy._core.numeric", "numpy.dtypes", "copyreg",
})  # fmt: skip
#: optional accelerators libraries probe for by name (timm: apex, inplace_abn; pandas: pyarrow)
_KNOWN_OPTIONAL = frozenset({"apex", "inplace_abn", "pyarrow", "fastparquet", "tensorboard",
                             "tensorboardX", "deepspeed", "bitsandbytes", "litlogger", "litmodels"})  # fmt: skip
_TMP = os.path.realpath(__import__("tempfile").gettempdir())
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _installed_top_levels() -> frozenset[str]:
    """Top-level import names of the stdlib and of every distribution in this environment."""
    from importlib import metadata

    names = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    for dist in metadata.distributions():
        top = dist.read_text("top_level.txt")
        if top:
            names.update(t.strip() for t in top.split() if t.strip())
        for f in dist.files or []:
            part = f.parts[0] if f.parts else ""
            if part.endswith(".py"):
                names.add(part[:-3])
            elif part and "." not in part and not part.endswith("-info"):
                names.add(part)
    names.update({"migalab", "hydra_plugins", "_distutils_hack", "__main__"})
    return frozenset(names)


def _code_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {sys.prefix, sys.base_prefix, paths["stdlib"], paths["purelib"], paths["platlib"]}
    import migalab
    from migalab.utils.paths import config_dir

    roots.add(str(Path(migalab.__file__).resolve().parent))
    roots.add(str(config_dir().resolve()))  # migalab.conf: the checkout's conf/ when editable
    return tuple(sorted(str(Path(r).resolve()) for r in roots))


@dataclass
class AuditRecorder:
    """Records forbidden events while armed. ``writable``: folders the run may write;
    ``forbidden``: folders it must not open at all."""

    events: list[str] = field(default_factory=list)
    writable: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    _armed: bool = False
    _installed: bool = False
    _top_levels: frozenset[str] = frozenset()
    _code_roots: tuple[str, ...] = ()

    def install(self) -> None:
        if not self._installed:
            self._top_levels = _installed_top_levels()
            self._code_roots = _code_roots()
            sys.addaudithook(self._hook)
            self._installed = True

    @contextlib.contextmanager
    def armed(self, writable: Sequence[str | os.PathLike] = (),
              forbidden: Sequence[str | os.PathLike] = ()) -> Iterator[list[str]]:  # fmt: skip
        """Record while inside; yields the list of recorded violations."""
        self.install()
        self.events = []
        self.writable = tuple(os.path.realpath(p) for p in writable)
        self.forbidden = tuple(os.path.realpath(p) for p in forbidden)
        before = set(sys.modules)
        self._armed = True
        try:
            yield self.events
        finally:
            self._armed = False
            for name in sorted(set(sys.modules) - before):
                where = getattr(sys.modules.get(name), "__file__", None)
                if where and not self._under(where, self._code_roots):
                    self.events.append(f"module {name!r} loaded from {where!r}")

    # -- the hook -------------------------------------------------------------------------------
    def _under(self, path: str, roots: tuple[str, ...]) -> bool:
        real = os.path.realpath(path)
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def _scratch(self, path: str) -> bool:
        """A file of a ``tempfile.mkdtemp`` / multiprocessing scratch folder (``<tmp>/tmp*``,
        ``<tmp>/pymp-*``): libraries make them (wandb, DataLoader workers); a test's own
        folders (pytest's ``<tmp>/pytest-of-*``) are not scratch."""
        real = os.path.realpath(path)
        if not real.startswith(_TMP + os.sep):
            return False
        first = real[len(_TMP) + 1 :].split(os.sep, 1)[0]
        return first.startswith(("tmp", "pymp-"))

    def _path(self, value: Any) -> str | None:
        if isinstance(value, bytes):
            value = os.fsdecode(value)
        if isinstance(value, str | os.PathLike):
            return os.fspath(value)
        return None

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._armed:
            return
        self._armed = False  # no recursion through our own os.path calls
        try:
            self._check(event, args)
        except Exception as err:  # noqa: BLE001 - a hook must not raise into the audited code
            self.events.append(f"audit hook error on {event}: {err!r}")
        finally:
            self._armed = True

    def _check(self, event: str, args: tuple[Any, ...]) -> None:
        if event in PROCESS_EVENTS or event.startswith(("os.exec", "os.spawn")):
            self.events.append(f"{event} {args[:2]!r}")
        elif event in NET_EVENTS:
            self.events.append(f"{event} {args[:2]!r}")
        elif event == "open":
            path = self._path(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)  # fmt: skip
            if self.forbidden and self._under(path, self.forbidden):
                self.events.append(f"open {path!r} ({mode or flags}) in a forbidden folder")
            elif writing and not self._under(path, self.writable) and not self._scratch(path):
                self.events.append(f"open {path!r} for writing outside the run")
        elif event in FS_EVENTS:
            for value in args[:2]:
                path = self._path(value)
                if not path:
                    continue
                outside = (  # args[1] is a mode or None for os.mkdir / os.chmod: no path
                    path is not None
                    and not self._under(path, self.writable)
                    and not self._scratch(path)
                )
                if outside or (self.forbidden and self._under(path, self.forbidden)):
                    self.events.append(f"{event} {path!r} outside the run")
                    break
        elif event == "import":
            name = str(args[0])
            top = name.split(".", 1)[0]
            if (
                top not in self._top_levels and top not in _KNOWN_OPTIONAL
            ) or top in NEVER_IMPORTED:
                self.events.append(f"import {name!r} ({args[1]!r})")
        elif event == "exec":
            code = args[0]
            filename = getattr(code, "co_filename", "")
            if (
                filename
                and not filename.startswith("<")
                and not self._under(filename, self._code_roots)
            ):
                self.events.append(f"exec of code from {filename!r}")
        elif event == "pickle.find_class":
            module = str(args[0])
            if module not in PICKLE_GLOBALS_OK_MODULES:
                self.events.append(f"pickle.find_class {module}.{args[1]}")


#: the process' recorder (one hook per process)
RECORDER = AuditRecorder()

#: modules imported before the hook is armed in :func:`main` (what every entry point loads
#: anyway), so lazy imports of the libraries themselves are not mistaken for a payload's
WARM_MODULES = ("numpy", "torch", "lightning", "hydra", "omegaconf", "migalab")


@dataclass
class AuditedRun:
    """What :func:`run_audited` saw: exit status, output and the recorded violations."""

    returncode: int
    stdout: str
    stderr: str
    events: list[str]


def run_audited(entry: str, args: Sequence[str], *, cwd: str | os.PathLike,
                writable: Sequence[str | os.PathLike] = (),
                forbidden: Sequence[str | os.PathLike] = (),
                env: dict[str, str] | None = None, timeout: float = 300) -> AuditedRun:  # fmt: skip
    """Run console-script entry ``entry`` (``"migalab.cli:evaluate"``) with ``args`` in a fresh
    interpreter, from ``cwd``, under the audit hook; ``writable`` folders may be written
    (``cwd`` is not one unless listed)."""
    report = Path(cwd) / f".audit-{os.getpid()}-{abs(hash((entry, tuple(args))))}.json"
    spec = {"entry": entry, "args": list(args), "writable": [str(p) for p in writable],
            "forbidden": [str(p) for p in forbidden], "report": str(report)}  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), full_env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.security.audit", json.dumps(spec)], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        events = json.loads(report.read_text())
    except (OSError, ValueError):
        events = [f"no audit report (rc {proc.returncode}): {proc.stderr[-2000:]}"]
    report.unlink(missing_ok=True)
    return AuditedRun(proc.returncode, proc.stdout, proc.stderr, events)


def main(spec_json: str) -> int:
    """Subprocess side of :func:`run_audited`."""
    spec = json.loads(spec_json)
    for name in WARM_MODULES:
        importlib.import_module(name)
    module, func = spec["entry"].split(":")
    fn = getattr(importlib.import_module(module), func)
    sys.argv = [module.rsplit(".", 1)[-1], *spec["args"]]
    code: Any = 0
    with RECORDER.armed(spec["writable"], spec["forbidden"]) as events:
        try:
            code = fn()
        except SystemExit as exc:
            code = exc.code
    with open(spec["report"], "w") as f:  # noqa: PTH123 - after disarming
        json.dump(events, f)
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
