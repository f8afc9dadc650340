"""Mutation testing of the online-recognition measure and the fusion-record / weight-search code.

Runs ``mutmut run`` (configuration: ``[tool.mutmut]`` in pyproject.toml -- what is copied, the
test files, the pytest options) on the mutants of :data:`TARGETS` only, then prints the mutation
score (killed / all mutants, ``timeout`` counted as killed) and every mutant that survived or
that no test reaches. ``mutmut show <name>`` prints a mutant's diff.

    .venv/bin/python scripts/mutation.py            # the default targets
    .venv/bin/python scripts/mutation.py 'migalab.online.x_temporal_iou*'   # some of them

mutmut keeps its state in ``mutants/`` (git-ignored): a rerun re-tests only the functions whose
code changed (delete ``mutants/`` to start over). Needs the dev extra (mutmut).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the mutants tested: all of online.py and fusion_record.py, the fusion-record and
#: weight-search functions of ensemble.py (mutmut names a mutant module.x_function__mutmut_N)
TARGETS = [
    "migalab.online.*",
    "migalab.fusion_record.*",
    *(f"migalab.ensemble.x_{f}__mutmut_*" for f in (
        "_fusion_record", "fusion_weights_from_file", "resolve_temperatures",
        "resolve_fusion_weights", "search_fusion_weights", "simplex_grid",
    )),
]  # fmt: skip

KILLED = {"killed", "timeout"}


def mutmut(*args: str) -> subprocess.CompletedProcess[str]:
    """``mutmut <args>`` from the repository root (the interpreter's own mutmut)."""
    cmd = [sys.executable, "-m", "mutmut", *args]
    # mutmut forks a worker per mutant from a process that has run torch: with OpenMP worker
    # threads in the parent a forked child can hang (every mutant then "times out")
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, check=False)


def results(patterns: list[str]) -> dict[str, str]:
    """The status of every mutant matching ``patterns`` (``mutmut results --all true``)."""
    out: dict[str, str] = {}
    for line in mutmut("results", "--all", "true").stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatchcase(name, p) for p in patterns):
            out[name] = status
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the mutants, print the score and the survivors; exit 1 when any survived."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=TARGETS, help="mutant name globs")
    parser.add_argument("--no-run", action="store_true", help="only report the last run")
    args = parser.parse_args(argv)
    if not args.no_run:
        run = mutmut("run", *args.patterns)
        if run.returncode != 0:
            print(run.stdout[-4000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            return run.returncode
    status = results(args.patterns)
    counts = Counter(status.values())
    killed = sum(counts[s] for s in KILLED)
    total = len(status)
    print(f"mutants: {total}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if total:
        print(f"mutation score: {killed}/{total} = {killed / total:.1%}")
    for name, s in sorted(status.items()):
        if s not in KILLED:
            print(f"  {s}: {name}")
    return 0 if killed == total else 1


if __name__ == "__main__":
    sys.exit(main())
