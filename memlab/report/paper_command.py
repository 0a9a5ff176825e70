"""``python -m memlab.report paper DIR... [--paper PATH] [--out docs/paper_vs_memlab.md]``: write the paper's
numbers beside memlab's from the run files (run dirs, removal sweep dirs, or folders holding them, e.g.
``outputs multirun docs/results``), with Fig. 1 on every data set in one picture beside it
(``<out stem>_fig1.png``). Relative default paths are taken from the repository root.

    python -m memlab.report paper outputs multirun              # -> docs/paper_vs_memlab.md
    python -m memlab.report paper docs/results --out /tmp/check.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..errors import MemlabError, one_line
from ..utils.io import atomic_write_text
from .paper_figure import plot_removal_differences, removal_panels
from .paper_markdown import header_lines, render
from .paper_numbers import read_paper_numbers
from .run_dirs import find_run_dirs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PAPER = "../shared/reference/paper_numbers.csv"
DEFAULT_OUT = "docs/paper_vs_memlab.md"


def git_commit(root: Path = REPO_ROOT) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def write_paper_report(dirs: list[Path], paper_path: Path, out: Path, command: str) -> tuple[Path, list[str]]:
    """Write the report; returns its path and one warning per DIR holding no run. Raises MemlabError
    (nothing written) on bad input."""
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise MemlabError(f"not a directory: {', '.join(missing)}")
    paper = read_paper_numbers(paper_path)
    runs, warnings = [], []
    for d in dirs:
        found = find_run_dirs(d)
        if not found:
            warnings.append(f"warning: {d} holds no memlab run or sweep dir")
        runs += found
    if not runs:
        raise MemlabError(f"no memlab run or sweep dir under {', '.join(map(str, dirs))}")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    figure = out.with_name(f"{out.stem}_fig1.png")
    text = render(paper, runs, header_lines(command, date, git_commit(), str(paper_path), runs), figure.name,
                  out.parent)
    plot_removal_differences(removal_panels(paper, runs), figure)
    return atomic_write_text(out, text), warnings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.report paper", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+", help="run dirs, sweep dirs or folders holding them")
    parser.add_argument("--paper", type=Path, help=f"the paper's numbers (default {DEFAULT_PAPER} from the repo root)")
    parser.add_argument("--out", type=Path, help=f"where to write (default {DEFAULT_OUT} in the repo root)")
    args = parser.parse_args(argv)
    command = " ".join(["python -m memlab.report paper", *map(shlex.quote, argv)])
    paper = args.paper or Path(os.path.relpath(REPO_ROOT / DEFAULT_PAPER))
    try:
        out, warnings = write_paper_report(args.dirs, paper, args.out or REPO_ROOT / DEFAULT_OUT, command)
    except MemlabError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    for line in warnings:
        print(line, file=sys.stderr)
    print(out)
    return 0
