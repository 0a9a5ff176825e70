"""memlab's own ``python -m memlab --help`` page: what memlab does, example commands, the config groups
with their options (read from the config tree on every call, so the page never goes stale), how to print a
composed config, and ``--hydra-help`` for Hydra's page. Plain text, no config composed, nothing loaded:
it works offline and in a second."""
from __future__ import annotations

import textwrap
from pathlib import Path

from .config_dir import config_dir

HELP_FLAGS = ("--help", "-h")

SUMMARY = """\
memlab: what has my model memorized, why, and does it help?
Scores every training instance's memorization by self-influence (Zheng & Jiang, ACL 2022), attributes
the score to tokens and image regions, and runs the paper's studies as Hydra + Lightning jobs.

usage: python -m memlab [KEY=VALUE ...]        one job (Hydra overrides)
       python -m memlab -m [KEY=A,B ...]       a sweep (Hydra multirun)
       python -m memlab ... -v                 show tracebacks (memlab's errors are one line)"""

EXAMPLES = """\
examples:
  python -m memlab experiment=smoke_memorization     # seconds, offline, tiny random model; writes
                          # outputs/smoke_memorization/<date>/<time>/memorization/scores.csv
  python -m memlab experiment=sst2_memorization      # the main job: train, score every SST-2 instance
  python -m memlab experiment=sst2_memorization data.source=local data.dir=../shared/data/sst2 model=minilm
  python -m memlab experiment=memorization data=custom data.path=DIR data.text_column=text \\
      data.label_column=category model.pretrained=FOLDER        # your own data and model
  python -m memlab experiment=sst2_removal removal.pct=0,30 removal.strategy=top,random seed=0,1,2   # a sweep"""

# One line per group; the options beside each are read from the config tree. A group without a line
# here is still listed (with its options), so a new group shows up at once.
GROUP_LINES = {
    "experiment": "a whole job: a setup (data set) x a study (what runs)",
    "setup": "a data set with its model, recipe and epochs",
    "study": "what runs: task, callbacks, sweep",
    "data": "the training data (data.source=local data.dir=DIR for local files)",
    "model": "the network (model.pretrained=HUB_ID_OR_FOLDER for your own)",
    "recipe": "the training recipe: schedule, clipping, L2 (paper experiments: study)",
    "solver": "the inverse-Hessian solver of the scores (solver.damping_rel=...)",
    "trainer": "the Lightning Trainer: cpu, gpu, ddp",
    "callbacks": "what runs after training: scores, attributions",
    "logger": "where metrics go (W&B offline by default)",
    "removal": "the removal study's settings (removal.pct, removal.strategy, removal.score)",
    "fz": "the Feldman-Zhang reference (fz.models)",
    "sweep": "settings shared by removal sweeps",
    "paths": "where caches and outputs live",
    "hydra": "run and sweep dirs",
    "local": "machine-specific overrides (git-ignored)",
}

FOOTER = """\
more:
  python -m memlab experiment=X --cfg job      # print the composed config of a job, run nothing
  python -m memlab --hydra-help                # Hydra's own help page (overrides, sweeps, tab completion)
  README.md and docs/ in the repository"""


def config_groups(root: Path | None = None) -> dict[str, list[str]]:
    """Every config group under the config tree (a folder holding ``*.yaml``) and its options, sorted."""
    root = config_dir() if root is None else root
    groups = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[folder.name] = options
    return groups


def _group_block(name: str, options: list[str], width: int) -> str:
    head = f"  {name:<10} {GROUP_LINES.get(name, '')}".rstrip()
    body = textwrap.fill(" ".join(options), width=width, initial_indent=" " * 13, subsequent_indent=" " * 13)
    return f"{head}\n{body}"


def help_text(root: Path | None = None, width: int = 100) -> str:
    """The whole page (see the module docstring)."""
    groups = config_groups(root)
    order = [g for g in GROUP_LINES if g in groups] + [g for g in groups if g not in GROUP_LINES]
    blocks = "\n".join(_group_block(g, groups[g], width) for g in order)
    return (f"{SUMMARY}\n\n{EXAMPLES}\n\nconfig groups (pick one option: GROUP=OPTION; "
            f"any key: GROUP.KEY=VALUE):\n{blocks}\n\n{FOOTER}\n")


def wants_help(argv: list[str]) -> bool:
    """``--help`` or ``-h`` among the arguments (``--hydra-help`` is Hydra's and passes through)."""
    return any(a in HELP_FLAGS for a in argv)
