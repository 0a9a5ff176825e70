"""Find memlab's run and sweep dirs under given folders and say what each is: its data set (from the
saved config), the command that made it (from Hydra's saved overrides) and its wall time. Used by
``python -m memlab.report paper`` and ``archive``; works on full run dirs and on their slim copies
(``python -m memlab.report archive``).

    run dir    outputs/<task_name>/<date>/<time>: .hydra/config.yaml, .hydra/overrides.yaml, metrics.json, ...
    sweep dir  a removal multirun, multirun/<task_name>/<date>/<time>: multirun.yaml, removal_summary.csv,
               removal_stats.csv, one job dir per job with removal_job.json (a single removal job dir counts
               as a sweep of one); any other multirun is walked for its job dirs, which are run dirs
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from pathlib import Path

import yaml

from ..studies.removal_selection import JOB_FILE

DATASETS = ("sst2", "snli", "yahoo", "cifar10", "fashion_mnist")
REMOVAL_FILES = ("removal_summary.csv", "removal_stats.csv")
# never runs themselves, never hold runs: a run's logs, checkpoints and chunk files
SKIPPED_DIRS = {"wandb", "csv", "chunks", "checkpoints", "lightning_logs", "__pycache__"}
# where, not what: these Hydra overrides do not change a result
PLACE_OVERRIDES = ("hydra.sweep.", "hydra.run.", "hydra.mode", "hydra.job_logging", "hydra.verbose")
_STAMP = re.compile(r"\d{4}-\d{2}-\d{2}/\d{2}-\d{2}-\d{2}[-\d]*")


@dataclasses.dataclass
class RunDir:
    """One run or removal sweep: ``kind`` is ``run`` or ``sweep``; ``config`` its saved config (unresolved)."""
    path: Path
    kind: str
    config: dict
    overrides: list[str] | None  # None: not recorded
    seconds: float | None        # wall time of the job (a sweep: the sum over its jobs); None: not recorded

    @property
    def dataset(self) -> str | None:
        return dataset_of(self.config)

    @property
    def stamp(self) -> str:
        """``<date>/<time>`` from the path (Hydra's dir layout): later runs sort last; '' when absent."""
        found = _STAMP.findall(self.path.as_posix())
        return found[-1] if found else ""

    @property
    def seed(self) -> int | None:
        value = self.config.get("seed")
        return int(value) if isinstance(value, int) else None

    @property
    def epochs(self) -> int | None:
        value = (self.config.get("trainer") or {}).get("max_epochs")
        return int(value) if isinstance(value, int) and value >= 1 else None  # -1: Lightning's "no limit"

    @property
    def command(self) -> str:
        if self.overrides is None:
            return "(command not recorded: no .hydra/overrides.yaml)"
        head = "python -m memlab -m" if self.kind == "sweep" else "python -m memlab"
        return " ".join([head, *(shlex.quote(o) for o in self.overrides)])

    @property
    def encoder(self) -> str | None:
        """The model's encoder: the text model's ``pretrained``, the image backbone."""
        data, model = self.config.get("data") or {}, self.config.get("model") or {}
        if str(data.get("_target_", "")).endswith("ImageFeatureDataModule"):
            return data.get("backbone")
        return model.get("pretrained")


def dataset_of(config: dict) -> str | None:
    """``sst2``, ``snli``, ``yahoo``, ``cifar10``, ``fashion_mnist`` or another name (tiny test data); None
    when the config names none. Text data carry ``data.name``; Fashion-MNIST has ``data.source``; other
    image features are CIFAR-10; else the task name's first word."""
    data = config.get("data") or {}
    if data.get("source") == "fashion_mnist":
        return "fashion_mnist"
    if data.get("name"):
        return str(data["name"])
    if str(data.get("_target_", "")).endswith("ImageFeatureDataModule"):
        return "cifar10" if data.get("source") in ("hub", "local") else str(data.get("source"))
    first = str(config.get("task_name", "")).split("_")[0]
    return first if first in DATASETS else None


def _load_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _job_seconds(metrics_file: Path) -> float | None:
    try:
        value = json.loads(metrics_file.read_text(encoding="utf-8")).get("job/seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def is_removal_sweep(path: Path) -> bool:
    if any((path / f).is_file() for f in REMOVAL_FILES) or (path / JOB_FILE).is_file():
        return True
    multirun = _load_yaml(path / "multirun.yaml") if (path / "multirun.yaml").is_file() else None
    if isinstance(multirun, dict):
        return any(a.lstrip("+~").startswith("removal.") for a in _sweep_arguments(multirun))
    return any(path.glob(f"*/{JOB_FILE}"))


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file()


def _sweep_arguments(multirun: dict) -> list[str]:
    """The sweep's overrides: the command line's, then the config's sweeper params it did not override."""
    hydra = multirun.get("hydra") or {}
    task = [str(a) for a in ((hydra.get("overrides") or {}).get("task") or [])]
    on_line = {a.lstrip("+~").split("=", 1)[0] for a in task}
    params = ((hydra.get("sweeper") or {}).get("params") or {})
    return task + [f"{k}={v}" for k, v in params.items() if k not in on_line]


def sweep_overrides(multirun: dict) -> list[str]:
    """The overrides that remake the sweep: launcher settings, the command line's, the swept lists."""
    hydra = multirun.get("hydra") or {}
    launch = [str(a) for a in ((hydra.get("overrides") or {}).get("hydra") or [])
              if not str(a).lstrip("+~").startswith(PLACE_OVERRIDES)]
    return launch + _sweep_arguments(multirun)


def read_run_dir(path: Path) -> RunDir:
    config = _load_yaml(path / ".hydra" / "config.yaml")
    overrides = _load_yaml(path / ".hydra" / "overrides.yaml")
    return RunDir(path, "run", config if isinstance(config, dict) else {},
                  [str(o) for o in overrides] if isinstance(overrides, list) else None,
                  _job_seconds(path / "metrics.json"))


def read_sweep_dir(path: Path) -> RunDir:
    multirun = _load_yaml(path / "multirun.yaml") if (path / "multirun.yaml").is_file() else None
    jobs = sorted(p.parent for p in path.glob("*/.hydra/config.yaml"))
    if isinstance(multirun, dict):
        config, overrides = multirun, sweep_overrides(multirun)
    elif is_run_dir(path):  # one removal job on its own
        single = read_run_dir(path)
        return dataclasses.replace(single, kind="sweep")
    else:
        first = read_run_dir(jobs[0]) if jobs else None
        config, overrides = (first.config, None) if first else ({}, None)
    times = [s for s in (_job_seconds(p) for p in path.glob("*/metrics.json")) if s is not None]
    return RunDir(path, "sweep", config, overrides, sum(times) if times else None)


def find_run_dirs(root: str | os.PathLike) -> list[RunDir]:
    """Every removal sweep and run dir at or under ``root`` (a run dir's own sub-folders are not walked)."""
    root = Path(root)
    if is_removal_sweep(root):
        return [read_sweep_dir(root)]
    if is_run_dir(root):
        return [read_run_dir(root)]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name.startswith(".") or child.name in SKIPPED_DIRS:
            continue
        found += find_run_dirs(child)
    return found
