"""``python -m memlab.report estimators DIR... [--out docs/estimators.md]``: which memorization estimator to
use, from the validate runs (``validation.csv``) and label-noise runs (``label_noise.csv``) under the DIRs
(the newest run of each data set; the page names the others). Writes the page and, beside it,
``<out stem>.png`` (each estimator's Spearman ÷ ceiling against its cost). Relative default paths are taken
from the repository root.

    python -m memlab.report estimators docs/results               # -> docs/estimators.md, docs/estimators.png
    python -m memlab.report estimators outputs --out /tmp/estimators.md
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from ..errors import MemlabError, one_line
from ..studies.estimator_choice import overall_choice, verdict
from ..utils.io import atomic_write_text
from .estimator_runs import find_estimator_runs, read_dataset
from .estimators_figure import plot_estimators
from .estimators_markdown import header_lines, render
from .paper_command import REPO_ROOT, git_commit

DEFAULT_OUT = "docs/estimators.md"


def write_estimators_report(dirs: list[Path], out: Path, command: str, resamples: int = 200) -> tuple[Path, Path]:
    """Write the page and its figure; returns their paths. Raises MemlabError (nothing written) on bad input."""
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise MemlabError(f"not a directory: {', '.join(missing)}")
    groups, unused = find_estimator_runs(dirs)
    if not groups:
        raise MemlabError(f"no validate run (validation.csv) under {', '.join(map(str, dirs))}")
    results = [read_dataset(g, resamples) for g in groups]
    judged = [(r, verdict(r.table)) for r in results]
    choice = overall_choice({r.runs.dataset: (r.table, v) for r, v in judged})
    n_runs = sum(1 + len(g.older) + (g.noise is not None) + len(g.older_noise) for g in groups) + len(unused)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    figure = out.with_suffix(".png")
    text = render(judged, choice, header_lines(command, date, git_commit(), n_runs), figure.name, unused)
    plot_estimators(results, figure)
    return atomic_write_text(out, text), figure


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m memlab.report estimators", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", type=Path, nargs="+", help="run dirs or folders holding them (e.g. docs/results)")
    parser.add_argument("--out", type=Path, help=f"where to write (default {DEFAULT_OUT} in the repo root)")
    args = parser.parse_args(argv)
    command = " ".join(["python -m memlab.report estimators", *map(shlex.quote, argv)])
    try:
        page, figure = write_estimators_report(args.dirs, args.out or REPO_ROOT / DEFAULT_OUT, command)
    except MemlabError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    print(page)
    print(figure)
    return 0
