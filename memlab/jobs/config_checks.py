"""Checks of a composed config that run before any data or model is loaded and before any training:
the task, the removal settings, the solvers, the scoring callback; then the data (a missing folder named
first; local CSVs read by their own reader) and the model (a path must exist), each through its source's
own probe (:mod:`memlab.utils.network`), so that an offline run stops within seconds with one line that
names every override it needs.

Every failure is one :class:`~memlab.errors.ConfigError` (or ``DataError`` / ``ModelLoadError``) line
naming the key, the value and what is allowed. :func:`memlab.tasks.runner.run` calls :func:`check_config` first.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Collection

from omegaconf import DictConfig

from ..errors import ConfigError
from ..studies.removal_selection import STRATEGIES
from .trak_settings import trak_settings

REMOVAL_STRATEGIES = (*STRATEGIES, "none")  # "none": a plain training job
TEXT_SOURCES = ("hub", "local", "custom", "generated")
IMAGE_SOURCES = ("hub", "local", "fashion_mnist", "generated")


def check_config(cfg: DictConfig, tasks: Collection[str] | None = None, sources: bool = True) -> None:
    """Raise one-line errors for every config value that cannot work, before anything is loaded;
    ``tasks``: the allowed values of ``task`` (memlab.tasks.runner.TASKS), checked first when given;
    ``sources=False``: the values only (a sweep's check reads each data set and probes each model once)."""
    if tasks is not None:
        check_task(cfg.get("task", "train"), tasks)
    check_run(cfg)
    check_removal(cfg.get("removal"))
    check_removal_score(cfg.get("removal"), cfg.get("solver"))
    if cfg.get("solver") is not None:
        check_solver("solver", cfg.solver)
    check_memorization(cfg.get("callbacks"))
    trak_settings(cfg)  # candidates.trak (validate, label_noise)
    data = cfg.get("data") or {}
    if data.get("label_noise") and "Image" in str(data.get("_target_", "")):
        raise ConfigError("data.label_noise is for text data: image data has no seeded label flips yet")
    if sources:
        check_sources(cfg)


# -- values -------------------------------------------------------------------------------------------
def number(key: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float within [low, high], or a ConfigError naming ``key``."""
    allowed = ("a number" + (f" >= {low:g}" if low is not None and high is None else "")
               + (f" from {low:g} to {high:g}" if low is not None and high is not None else ""))
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a number; allowed: {allowed}") from None
    if x != x or (low is not None and x < low) or (high is not None and x > high):
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")
    return x


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: an integer >= 1")
    return value


def one_of(key: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")


def check_task(task: str, tasks: Collection[str]) -> None:
    one_of("task", task, list(tasks))


SEED_LIMIT = 2**32 - 1  # numpy and Lightning's seed_everything take seeds in [0, 2**32 - 1]


def integer(key: str, value: Any, low: int, high: int | None = None, also: Collection[int] = ()) -> int:
    """``value`` as an int within [low, high] (or one of ``also``), or a ConfigError naming ``key``."""
    allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    allowed += "".join(f" or {a}" for a in also)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} is not an integer; allowed: {allowed}")
    if value not in also and (value < low or (high is not None and value > high)):
        raise ConfigError(f"{key}={value!r} is out of range; allowed: {allowed}")
    return value


def check_run(cfg: DictConfig) -> None:
    """The seeds and the training length (Lightning would fail on them only after loading everything)."""
    for key in ("seed", "data_seed"):
        if cfg.get(key) is not None:
            integer(key, cfg.get(key), 0, SEED_LIMIT)
    trainer = cfg.get("trainer") or {}
    if trainer.get("max_epochs") is not None:
        integer("trainer.max_epochs", trainer.get("max_epochs"), 0, also=(-1,))
    if trainer.get("max_steps") is not None:
        integer("trainer.max_steps", trainer.get("max_steps"), 1, also=(-1,))


def check_removal(removal: DictConfig | None) -> None:
    """The strategy and X% of a removal job, whatever the X (a bad strategy at X = 0 is still wrong)."""
    if not removal:
        return
    one_of("removal.strategy", removal.get("strategy", "none"), REMOVAL_STRATEGIES)
    number("removal.pct", removal.get("pct", 0), low=0, high=100)


def check_removal_score(removal: DictConfig | None, solver: DictConfig | None) -> None:
    """A ranked removal by ``loo_score`` needs a solver that writes it (one that adds the own term)."""
    if not removal or removal.get("strategy", "none") not in ("top", "bottom") or solver is None:
        return
    if removal.get("score") == "loo_score" and not solver.get("own_term", False):
        raise ConfigError(f"removal.score=loo_score needs a solver that adds the own term, and solver={solver.get('name')} "
                          "has solver.own_term=false (its mem_score is already the score without it); "
                          "allowed: removal.score=mem_score or loss")


def check_solver(key: str, solver: DictConfig) -> None:
    from ..influence.solver import SOLVERS

    one_of(f"{key}.name", solver.get("name"), list(SOLVERS))
    damping, damping_rel = solver.get("damping"), solver.get("damping_rel")
    if damping is None and damping_rel is None:
        raise ConfigError(f"{key}.damping and {key}.damping_rel are both null; allowed: set one to a number >= 0")
    for name, value in (("damping", damping), ("damping_rel", damping_rel)):
        if value is not None:
            number(f"{key}.{name}", value, low=0)


def check_memorization(callbacks: DictConfig | None) -> None:
    """The scoring callback's batch settings, compared solver, and that its chunk folder is memlab's."""
    mem = (callbacks or {}).get("memorization")
    if not mem or not mem.get("enabled", True):
        return
    for key in ("batch_size", "batches_per_chunk"):
        if mem.get(key) is not None:
            positive_int(f"callbacks.memorization.{key}", mem.get(key))
    if mem.get("compare_solver"):
        check_solver("callbacks.memorization.compare_solver", mem.compare_solver)
    if mem.get("output_dir"):
        from ..pipeline.scoring import foreign_chunk_dir_error

        error = foreign_chunk_dir_error(Path(mem.output_dir) / "chunks")
        if error is not None:
            raise error


# -- data and model: each source's own probe ----------------------------------------------------------
def check_sources(cfg: DictConfig) -> None:
    """The data first (a missing folder is named before any model is looked at), then the model; then,
    if anything needs a download and the network is not there, one line naming all overrides that avoid it.
    The probes are the sources' own (:mod:`memlab.utils.network` lists them)."""
    from ..utils.pretrained import pretrained_offline_needs

    needs = []  # (what needs a download, the override that avoids it)
    data = cfg.get("data")
    if data is not None:
        target = str(data.get("_target_", ""))
        if target.endswith("TextDataModule"):
            needs += check_text_data(data)
        elif target.endswith("ImageFeatureDataModule"):
            needs += check_image_data(data)
        elif target.endswith("ImageFolderDataModule"):
            needs += check_image_folder_data(data)
    model = cfg.get("model")
    if model is not None and model.get("pretrained"):
        from ..model.encoders import check_encoder_config

        needs += pretrained_offline_needs(str(model.pretrained))
        check_encoder_config(str(model.pretrained), (model.get("net") or {}).get("freeze_layers"))
    if needs:
        what = " and ".join(w for w, _ in needs)
        fixes = " and ".join(dict.fromkeys(f for _, f in needs))
        verb = "needs" if len(needs) == 1 else "need"
        raise ConfigError(f"offline: {what} {verb} a download, and the network is unreachable; pass {fixes}")


def check_text_data(data: DictConfig) -> list[tuple[str, str]]:
    """The source, the text-only settings, and the source's own check (a local folder is read now by the
    same reader as training: columns, labels, sample indices, empty texts)."""
    from ..data.custom_source import custom_offline_needs
    from ..data.text_sources import hub_offline_needs, read_local

    source = data.get("source", "local")
    one_of("data.source", source, TEXT_SOURCES)
    if data.get("limit_train") is not None:
        integer("data.limit_train", data.get("limit_train"), 1)
    if data.get("drop_empty") is not None and not isinstance(data.get("drop_empty"), bool):
        raise ConfigError(f"data.drop_empty={data.get('drop_empty')!r} is not allowed; allowed: true, false")
    if source == "local":
        if not data.get("dir"):
            raise ConfigError("data.source=local needs data.dir=DIR (a folder with train.csv, dev.csv, test.csv)")
        read_local(data.dir, int(data.get("num_classes", 2)), bool(data.get("pair", False)), int(data.get("seed", 0)),
                   data.get("val_size", 0.1), data.get("test_size", 0.1), bool(data.get("split_from_train", False)),
                   bool(data.get("drop_empty", False)))
    if source == "custom":
        return custom_offline_needs(data.get("path"))
    if source == "hub":
        return hub_offline_needs(data.get("name"), data.get("hub_id"))
    return []


def check_image_data(data: DictConfig) -> list[tuple[str, str]]:
    from ..data.backbones import backbone_offline_needs
    from ..data.image_sources import cifar10_offline_needs, open_source

    source = data.get("source")
    one_of("data.source", source, IMAGE_SOURCES)
    check_backbone_name(data)
    for key in ("limit_train", "drop_empty"):
        if key in data:
            raise ConfigError(f"data.{key} is for text data; image data: data.train_size=N")
    needs = []
    if source in ("local", "fashion_mnist"):
        open_source(source, data.get("dir"), image_size=data.get("image_size"))  # checks the files are there
    if source == "hub":
        needs += cifar10_offline_needs(data.get("dir"))
    return needs + backbone_offline_needs(str(data.get("backbone")), data.get("backbone_weights"))


def check_image_folder_data(data: DictConfig) -> list[tuple[str, str]]:
    """``data=image_folder``: the folder first (layout, class folders, every picture's header), then the
    backbone (a known name, its weights file, or torchvision's weights cached or downloadable)."""
    from ..data.backbones import backbone_offline_needs
    from ..data.image_folder_source import check_image_folder

    check_image_folder(data.get("path"))
    check_backbone_name(data)
    return backbone_offline_needs(str(data.get("backbone")), data.get("backbone_weights"),
                                  "data.backbone_weights=FILE (a state_dict saved by torch.save)")


def check_backbone_name(data: DictConfig) -> None:
    """memlab's own backbones or a torchvision classification model; a weights file must exist."""
    from ..data.backbones import BACKBONES, uses_torchvision_loader

    backbone, weights = data.get("backbone"), data.get("backbone_weights")
    if backbone in BACKBONES and not uses_torchvision_loader(str(backbone), weights):
        return
    from ..data.torchvision_backbone import check_model_name, weights_file_fingerprint

    check_model_name(str(backbone))
    if weights is not None:
        weights_file_fingerprint(weights)  # the file exists
