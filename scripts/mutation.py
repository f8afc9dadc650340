"""Mutation testing of named target sets (online recognition and fusion; security and input checks).

``online``: the online-recognition measure and the fusion-record / weight-search code;
``security``: the security and input-check modules (stored-config sanitizer, checkpoint reading,
data unpickler, declared-size limits, dataset-spec and pose-python lookups, user errors).

Runs ``mutmut run`` on the mutants of one :data:`SETS` entry only, then prints the mutation
score (killed / all mutants, ``timeout`` counted as killed) and every mutant that survived or
that no test reaches. ``[tool.mutmut]`` in pyproject.toml is the shared configuration and the
``online`` set's own (a bare ``mutmut run`` runs that one); a set with ``config`` overrides
runs mutmut with those keys replacing pyproject's (its ``only_mutate`` files, its tests),
applied in the mutmut process itself (nothing is written to pyproject.toml).

    .venv/bin/python scripts/mutation.py                     # the online set (the default)
    .venv/bin/python scripts/mutation.py --set security      # the security / input-check set
    .venv/bin/python scripts/mutation.py --set security 'migalab.errors.*'   # some of its mutants
    .venv/bin/python scripts/mutation.py --set security --no-run   # report its last run again
    .venv/bin/python scripts/mutation.py --set security --show <mutant>   # a mutant's diff

mutmut keeps its state in ``mutants/`` (git-ignored; delete it to start over), for one set at a
time: a run of another set than the last one (``mutants/.mutation-set``) starts from an empty
``mutants/`` (mutmut would keep the other set's copies of the source, mutated or not, and forget
its verdicts anyway). The mutants a run names are always re-tested. Needs the dev extra (mutmut).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class MutationSet:
    """What one named set mutates and tests."""

    #: one line for ``--help``
    doc: str
    #: the mutants tested (mutmut names a mutant ``module.x_function__mutmut_N``, a method
    #: ``module.xǁClassǁmethod__mutmut_N``)
    targets: list[str]
    #: ``[tool.mutmut]`` keys replaced for this set (empty: pyproject's as they are)
    config: dict[str, Any] = field(default_factory=dict)


#: the security set's tests: in-process ones only. tests/security's other tests each run a
#: console script in an audited subprocess (7-15 s apiece, and a subprocess does not import
#: the mutated copy of the code), and so do the tests marked slow (excluded by addopts)
SECURITY_TESTS = [
    "tests/utils/test_stored_config.py",
    "tests/utils/test_checkpoints.py",
    "tests/data/formats/test_data_pickles.py",
    "tests/data/formats/test_boundaries.py",
    "tests/data/formats/test_limits.py",
    "tests/data/specs/test_specs.py",
    "tests/pose/test_pose.py",
    "tests/test_user_errors.py",
    "tests/security/test_hostile_checkpoints.py::test_an_init_checkpoint_is_read_as_weights_only",
]

SETS: dict[str, MutationSet] = {
    "online": MutationSet(
        "all of online.py, scoring/segments.py and scoring/records.py, scoring/ensemble.py's "
        "fusion-record and weight-search functions ([tool.mutmut] as it stands)",
        [
            "migalab.online.*",
            "migalab.scoring.segments.*",
            "migalab.scoring.records.*",
            *(
                f"migalab.scoring.ensemble.x_{f}__mutmut_*"
                for f in (
                    "fusion_weights_from_file",
                    "resolve_temperatures",
                    "resolve_fusion_weights",
                    "search_fusion_weights",
                    "simplex_grid",
                )
            ),
        ],
    ),  # fmt: skip
    "security": MutationSet(
        "the stored-config sanitizer, safe checkpoint reading, the data unpickler, the "
        "declared-size limits, the dataset-spec and pose-python lookups, the user-error type",
        [
            "migalab.utils.stored_config.*",
            *(
                f"migalab.utils.checkpoints.x_{f}__mutmut_*"
                for f in (
                    "load_checkpoint",
                    "check_inflation",
                    "_first_reason",
                    "upgrade_targets",
                )
            ),
            "migalab.data.formats.errors.*",
            "migalab.data.formats.limits.*",
            "migalab.data.specs.base.x_is_builtin__mutmut_*",
            "migalab.pose.x_find_pose_python__mutmut_*",
            "migalab.pose.x_checkout_pose_python__mutmut_*",
            "migalab.errors.*",
        ],
        {
            "only_mutate": [
                "src/migalab/utils/stored_config.py",
                "src/migalab/utils/checkpoints.py",
                "src/migalab/data/formats/errors.py",
                "src/migalab/data/formats/limits.py",
                "src/migalab/data/specs/base.py",
                "src/migalab/pose/__init__.py",
                "src/migalab/errors.py",
            ],
            "pytest_add_cli_args": ["-p", "no:xdist", "-p", "no:cacheprovider"],
            "pytest_add_cli_args_test_selection": SECURITY_TESTS,
        },
    ),  # fmt: skip
}

KILLED = {"killed", "timeout"}

#: runs mutmut's command line with ``[tool.mutmut]`` keys replaced (argv[1]: them as JSON)
_LAUNCHER = """
import json, sys
import mutmut.configuration as configuration
overrides, pyproject = json.loads(sys.argv[1]), configuration._config_reader
def reader():
    read = pyproject()
    return lambda key, default: overrides[key] if key in overrides else read(key, default)
configuration._config_reader = reader
configuration.reset_config()
from mutmut.__main__ import cli
cli(sys.argv[2:], prog_name="mutmut")
"""


def mutmut(mset: MutationSet, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """``mutmut <args>`` from the repository root (the interpreter's own mutmut), with the
    set's ``[tool.mutmut]`` overrides."""
    cmd = [sys.executable, "-c", _LAUNCHER, json.dumps(mset.config), *args]
    # mutmut forks a worker per mutant from a process that has run torch: with OpenMP worker
    # threads in the parent a forked child can hang (every mutant then "times out")
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=capture,
                          check=False)  # fmt: skip


def results(mset: MutationSet, patterns: list[str]) -> dict[str, str]:
    """The status of every mutant matching ``patterns`` (``mutmut results --all true``)."""
    out: dict[str, str] = {}
    for line in mutmut(mset, "results", "--all", "true").stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out[name] = status
    return out


def module_of(mutant: str) -> str:
    """The module of a mutant name (``pkg.mod.x_f__mutmut_3``, ``pkg.mod.xǁCǁm__mutmut_3``)."""
    return mutant.rsplit(".x", 1)[0]


def main(argv: list[str] | None = None) -> int:
    """Run the mutants, print the score and the survivors; exit 1 when any survived."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="sets: " + "; ".join(f"{name}: {s.doc}" for name, s in SETS.items()),
    )
    parser.add_argument("--set", dest="name", choices=SETS, default="online",
                        help="the named target set (default: online)")  # fmt: skip
    parser.add_argument("patterns", nargs="*",
                        help="mutant name globs within the set (default: all its targets)")  # fmt: skip
    parser.add_argument("--no-run", action="store_true", help="only report the last run")
    parser.add_argument("--show", metavar="MUTANT", help="only print a mutant's diff")
    parser.add_argument("--max-children", type=int, help="parallel mutant workers")
    args = parser.parse_args(argv)
    mset = SETS[args.name]
    if args.show:
        return mutmut(mset, "show", args.show, capture=False).returncode
    patterns = args.patterns or mset.targets
    if not args.no_run:
        mutants, marker = ROOT / "mutants", ROOT / "mutants" / ".mutation-set"
        if mutants.exists() and (not marker.is_file() or marker.read_text() != args.name):
            shutil.rmtree(mutants)  # another set's state (see the module doc)
        mutants.mkdir(exist_ok=True)
        marker.write_text(args.name)
        extra = ["--max-children", str(args.max_children)] if args.max_children else []
        run = mutmut(mset, "run", *extra, *patterns)
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            return run.returncode
    status = results(mset, patterns)
    counts = Counter(status.values())
    killed = sum(counts[s] for s in KILLED)
    total = len(status)
    print(f"set {args.name}: mutants: {total}  "
          + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))  # fmt: skip
    if total:
        print(f"mutation score: {killed}/{total} = {killed / total:.1%}")
    by_module: dict[str, Counter[bool]] = {}
    for name, s in status.items():
        by_module.setdefault(module_of(name), Counter())[s in KILLED] += 1
    if len(by_module) > 1:
        for module, c in sorted(by_module.items()):
            print(f"  {module}: {c[True]}/{c.total()} = {c[True] / c.total():.1%}")
    for name, s in sorted(status.items()):
        if s not in KILLED:
            print(f"  {s}: {name}")
    return 0 if killed == total else 1


if __name__ == "__main__":
    sys.exit(main())
