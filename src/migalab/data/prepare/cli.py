"""``migalab-prepare SRC OUT [--dataset NAME]``: convert a release into the skeleton cache once.

Exit status: 0 when at least one video (clip, for clip-level releases) was converted; 2 for a user
error, printed as one line ``error: <file>: <problem>`` (a missing or unusable release folder, a
bad option, an unknown dataset, a refused file with ``--strict``); 1 when the release was read but
no video could be converted (each bad file is listed in the summary and
``<out>/prepare_report.json``). ``--debug`` (or ``MIGALAB_DEBUG=1``) shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migalab.data.cache import read_meta
from migalab.data.prepare.release import DTYPES
from migalab.data.specs import BUILTIN_DATASETS, get_dataset
from migalab.errors import UserError, report_user_errors, strip_debug_flag


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="migalab-prepare",
        description="Convert a MiGA release (per-video xlsx/csv tables, or the clip-level 2023 "
        "npy / pyskl pickle releases) into a fast .npy skeleton cache.",
    )
    p.add_argument("src", type=Path, help="release root (a folder; the .pkl file for pyskl)")
    p.add_argument("out", type=Path, help="cache folder to write")
    p.add_argument(
        "--split-root",
        action="append",
        default=[],
        metavar="SPLIT=FOLDER",
        help="take one split from another folder (its split folder or a root holding it), e.g. "
        "--split-root test=/data/imigue_data_phase2; repeatable",
    )
    p.add_argument(
        "--dataset",
        default="miga2025",
        help=f"release format: {', '.join(BUILTIN_DATASETS)} or package.module:SPEC "
        "(default: miga2025)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        default=None,
        help="release splits to convert (space or comma separated; default: the dataset's, "
        "e.g. train validate test)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (0 = all CPUs)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float16 loses ~1 px")
    p.add_argument("--strict", action="store_true", help="any bad video is fatal")
    p.add_argument("--height", type=int, default=None, help="frame height (px; default: dataset's)")
    p.add_argument("--width", type=int, default=None, help="frame width (px; default: dataset's)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache is current")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--debug", action="store_true", help="show tracebacks of user errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``migalab-prepare``: exit 0 when at least one video was converted, 1 when none could be,
    2 (one ``error:`` line) on a user error (see the module doc)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    strip_debug_flag(argv)
    return _main(argv)


@report_user_errors
def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = get_dataset(args.dataset)
    except (KeyError, ImportError, TypeError, ValueError) as exc:
        reason = exc.args[0] if exc.args else exc  # a KeyError's str() quotes its message
        raise UserError(f"--dataset {args.dataset}: {reason}") from None
    given = args.splits or list(spec.splits.values())
    splits = [s for item in given for s in item.split(",") if s]
    default_shape = spec.img_shape or (None, None)
    img_shape = (args.height or default_shape[0], args.width or default_shape[1])
    if None in img_shape:  # the release's own frame sizes, unless both are given
        img_shape = None
    src: Any = args.src
    if args.split_root:
        bad = [item for item in args.split_root if "=" not in item or not item.split("=", 1)[0]]
        if bad:
            raise UserError(f"--split-root {bad[0]}: takes SPLIT=FOLDER")
        given = dict(item.split("=", 1) for item in args.split_root)
        src = {split: Path(given.get(split, args.src)) for split in splits}
    meta = read_meta(args.out)
    if (
        not args.force
        and meta is not None
        and meta.get("splits") == splits
        and meta.get("dtype") == args.dtype
        and meta.get("img_shape") == (list(img_shape) if img_shape else None)
        and spec.is_current(src, args.out)
    ):
        if not args.quiet:
            print(f"cache {args.out} is current ({meta.get('num_clips')} clips); --force rebuilds")
        return 0
    try:
        result = spec.prepare(
            src,
            args.out,
            splits=splits,
            img_shape=img_shape,
            dtype=args.dtype,
            workers=args.workers,
            strict=args.strict,
            progress=not args.quiet,
        )
    except FileNotFoundError as exc:  # no release folder, no video folders in it
        raise UserError(str(exc)) from exc
    if result.num_videos == 0:
        print(
            f"error: {args.src}: no video could be converted (every problem is listed in "
            f"{result.report_path})",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
