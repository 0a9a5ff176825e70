"""``python -m memlab.report archive RUNDIR... --to docs/results/NAME``: copy the small result files of run
and sweep dirs (or of the runs under a folder) so that they can live in git and ``python -m memlab.report
paper docs/results`` can be re-run on them later. The dir structure is kept (paths relative to the current
folder, e.g. ``docs/results/NAME/multirun/sst2_removal/<date>/<time>/...``; outside it, relative to the parent of
the folder given).

Kept: ``.hydra/`` configs and overrides, ``multirun.yaml``, and every ``.json``, ``.yaml``, ``.csv``, ``.md``,
``.txt``, ``.html`` up to 2 MB (a larger CSV with its floats at 5 significant digits when that fits; metrics.json, diagnostics.json, removal_job.json, the removal summary and stats
CSVs, stability/typicality/reduction-rate CSVs, top_bottom.md, attributions.html; scores.csv only when small),
plus the studies' main figures (removal.png, reduction_rate.png, typicality.png, stability.png, learning_curve.png, and for images
top_bottom.png and attributions.png). Never: checkpoints, W&B and CSV logs,
scoring chunks, logs, other pictures, anything over 2 MB. The text files keep no absolute path of this
machine: paths under the run's working folder become relative to it, others are dropped
(:mod:`memlab.report.portable_paths`).

    python -m memlab.report archive multirun/sst2_removal/2026-12-06/10-00-00-000000 --to docs/results/sst2
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ..errors import MemlabError, one_line
from ..utils.io import atomic_write, atomic_write_text
from .portable_paths import TEXT_SUFFIXES, portable_text, run_roots
from .run_dirs import SKIPPED_DIRS, find_run_dirs

MAX_BYTES = 2 * 1024 * 1024
KEPT_SUFFIXES = TEXT_SUFFIXES  # .json .yaml .csv .md .txt .html
MAIN_FIGURES = {"removal.png", "reduction_rate.png", "typicality.png", "stability.png", "learning_curve.png",
                "top_bottom.png", "attributions.png"}


def is_kept(path: Path) -> bool:
    """A small result file: see the module docstring."""
    if path.name.startswith(".") or not path.is_file() or path.stat().st_size > MAX_BYTES:
        return False  # hidden files are temporary writes
    return path.suffix in KEPT_SUFFIXES or path.name in MAIN_FIGURES


def result_files(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """(kept, left out for size) files of a run or sweep dir, walking its job dirs but not its logs."""
    kept, too_large = [], []
    for root, dirs, files in os.walk(run_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and (not d.startswith(".") or d == ".hydra"))
        for name in sorted(files):
            path = Path(root) / name
            if is_kept(path):
                kept.append(path)
            elif path.is_file() and (path.suffix in KEPT_SUFFIXES or name in MAIN_FIGURES):
                too_large.append(path)
    return kept, too_large


def archived_path(run_dir: Path, given: Path) -> Path:
    """Where a run dir goes under the archive: its path relative to the current folder, else relative to the
    parent of the folder it was found under (``given``)."""
    resolved = run_dir.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        return resolved.relative_to(given.resolve().parent)


def archive(dirs: list[Path], to: Path) -> tuple[list[Path], list[Path]]:
    """Copy the result files of every run under ``dirs`` into ``to``; returns (copied, left out for size).
    Checks every input before it copies anything."""
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise MemlabError(f"not a directory: {', '.join(missing)}")
    plan, too_large = [], []
    for d in dirs:
        runs = find_run_dirs(d)
        if not runs:
            raise MemlabError(f"{d} holds no memlab run or sweep dir")
        for run in runs:
            kept, large = result_files(run.path)
            base = to / archived_path(run.path, d)
            roots = run_roots(kept)
            plan += [(f, base / f.relative_to(run.path), roots) for f in kept]
            for f in large:  # a large table may fit with its floats at 5 significant digits
                (plan.append((f, base / f.relative_to(run.path), roots)) if compact_csv(f) is not None
                 else too_large.append(f))
    target = to.resolve()
    inside = [str(src) for src, _, _ in plan if src.resolve().is_relative_to(target)]
    if inside:
        raise MemlabError(f"{inside[0]} is already inside {to}: archive from the run dirs themselves")
    return [copy_portable(src, dst, roots) for src, dst, roots in plan], too_large


def compact_csv(path: Path) -> str | None:
    """A CSV over the size limit with its floats written at 5 significant digits (ranks and correlations keep
    their values to ~1e-5), when that fits under the limit; else None."""
    if path.suffix != ".csv":
        return None
    import pandas as pd

    try:
        text = pd.read_csv(path).to_csv(index=False, float_format="%.5g")
    except (OSError, ValueError):
        return None
    return text if len(text.encode()) <= MAX_BYTES else None


def copy_portable(src: Path, dst: Path, roots: list[str]) -> Path:
    """Copy one file; a text file with its absolute paths made portable (relative to ``roots`` or dropped);
    a CSV over the size limit compacted (:func:`compact_csv`)."""
    if src.stat().st_size > MAX_BYTES and (compact := compact_csv(src)) is not None:
        return atomic_write_text(dst, portable_text(compact, roots))
    if src.suffix in TEXT_SUFFIXES:
        try:
            return atomic_write_text(dst, portable_text(src.read_text(encoding="utf-8"), roots))
        except UnicodeDecodeError:
            pass  # not text after all: kept as it is
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.report archive", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+", help="run dirs, sweep dirs or folders holding them")
    parser.add_argument("--to", type=Path, required=True, help="the archive folder, e.g. docs/results/NAME")
    args = parser.parse_args(argv)
    try:
        copied, too_large = archive(args.dirs, args.to)
    except MemlabError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    size = sum(p.stat().st_size for p in copied)
    print(f"copied {len(copied)} files ({size / 1024:.0f} KB) -> {args.to}")
    for path in too_large:
        print(f"left out (over {MAX_BYTES // (1024 * 1024)} MB): {path}")
    return 0
