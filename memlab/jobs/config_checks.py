"""Checks of a composed config that run before any data or model is loaded and before any training:
the task, the removal settings, the solvers, the scoring callback, the data (local CSVs are read and
their columns and labels checked) and the model (a path must exist). Whatever needs the Hugging Face
hub or another download is checked against the network once, so an offline run stops within seconds
with one line that names every override it needs.

Every failure is one :class:`~memlab.errors.ConfigError` (or ``DataError`` / ``ModelLoadError``) line
naming the key, the value and what is allowed. :func:`memlab.tasks.runner.run` calls :func:`check_config` first.
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any, Collection
from urllib.parse import urlparse

from omegaconf import DictConfig

from ..errors import ConfigError
from ..studies.removal_selection import STRATEGIES

REMOVAL_STRATEGIES = (*STRATEGIES, "none")  # "none": a plain training job
TEXT_SOURCES = ("hub", "local", "custom", "generated")
IMAGE_SOURCES = ("hub", "local", "fashion_mnist", "generated")
HUB_ENDPOINT = "https://huggingface.co"


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


# -- data and model -----------------------------------------------------------------------------------
def check_sources(cfg: DictConfig) -> None:
    """Local data read and checked, model path checked; then, if anything needs a download and the
    network is not there, one line naming all overrides that avoid it."""
    needs = []  # (what needs a download, the override that avoids it)
    data = cfg.get("data")
    if data is not None:
        target = str(data.get("_target_", ""))
        if target.endswith("TextDataModule"):
            needs += check_text_data(data)
        elif target.endswith("ImageFeatureDataModule"):
            needs += check_image_data(data)
    model = cfg.get("model")
    if model is not None and model.get("pretrained"):
        needs += check_pretrained(str(model.pretrained))
        check_encoder_config(str(model.pretrained), (model.get("net") or {}).get("freeze_layers"))
    if needs:
        what = " and ".join(w for w, _ in needs)
        fixes = " and ".join(dict.fromkeys(f for _, f in needs))
        verb = "needs" if len(needs) == 1 else "need"
        raise ConfigError(f"offline: {what} {verb} a download, and the network is unreachable; pass {fixes}")


def check_text_data(data: DictConfig) -> list[tuple[str, str]]:
    from ..data.text_sources import HUB_IDS, read_local

    source = data.get("source", "local")
    one_of("data.source", source, TEXT_SOURCES)
    if source == "local":
        if not data.get("dir"):
            raise ConfigError("data.source=local needs data.dir=DIR (a folder with train.csv, dev.csv, test.csv)")
        # the same reader as training: columns, labels and sample indices checked now, not after an epoch
        read_local(data.dir, int(data.get("num_classes", 2)), bool(data.get("pair", False)), int(data.get("seed", 0)),
                   data.get("val_size", 0.1), data.get("test_size", 0.1), bool(data.get("split_from_train", False)))
    if source == "custom":
        return check_custom_path(data.get("path"))
    if source == "hub":
        hub_id = data.get("hub_id") or HUB_IDS.get(data.get("name"), data.get("name"))
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        if offline or not (hub_dataset_cached(hub_id) or reachable(hub_endpoint())):
            return [(f"data.source=hub ({data.get('name')})", "data.source=local data.dir=DIR")]
    return []


def check_custom_path(path: str | None) -> list[tuple[str, str]]:
    """``data=custom`` needs ``data.path``; a hub id needs the hub or the datasets cache (the data itself
    is read and checked next, by :func:`memlab.jobs.data_classes.resolve_data_classes`)."""
    if not path:
        raise ConfigError("data=custom needs data.path=DIR (a folder of train/dev/test files or a save_to_disk "
                          "folder) or data.path=HUB_ID")
    local = os.path.exists(os.path.expanduser(str(path))) or str(path).startswith(("/", ".", "~"))
    if local or str(path).count("/") > 1 or hub_dataset_cached(str(path)):
        return []
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1" \
            or not reachable(hub_endpoint()):
        return [(f"data.path={path} (a hub data set)", "data.path=DIR (a folder of train/dev/test files)")]
    return []


def check_image_data(data: DictConfig) -> list[tuple[str, str]]:
    from ..data.image_sources import open_source
    from ..data.backbones import BACKBONES

    source = data.get("source")
    one_of("data.source", source, IMAGE_SOURCES)
    one_of("data.backbone", data.get("backbone"), BACKBONES)
    needs = []
    if source in ("local", "fashion_mnist"):
        open_source(source, data.get("dir"), image_size=data.get("image_size"))  # checks the files are there
    if source == "hub":
        from torchvision.datasets import CIFAR10

        downloaded = data.get("dir") and (Path(data.dir).expanduser() / CIFAR10.base_folder).is_dir()
        if not downloaded and not reachable(CIFAR10.url):
            needs.append(("data.source=hub (CIFAR-10)", "data.source=local data.dir=DIR (or data=fashion_mnist)"))
    if data.get("backbone") == "resnet50" and not resnet50_weights_cached() and not reachable("https://download.pytorch.org"):
        needs.append(("data.backbone=resnet50 (ImageNet weights)", "data.backbone=efficientnet_lite0"))
    return needs


def check_pretrained(name: str) -> list[tuple[str, str]]:
    """A local folder must exist and a packaged model be installed; a hub id needs the hub or its cache."""
    from ..model.encoders import ModelLoadError, resolve_pretrained

    if name == "tiny-random":
        return []
    if name.startswith("packaged:"):
        resolve_pretrained(name)  # ModelLoadError naming the pip command when it is not installed
        return []
    if os.path.isdir(os.path.expanduser(name)):
        return []
    if name.startswith(("/", ".", "~")) or os.path.exists(name) or name.count("/") > 1:
        raise ModelLoadError(f"model.pretrained={name}: no such folder; pass model.pretrained=/path/to/model "
                             f"(a folder with config.json) or model=minilm")
    if hub_model_cached(name):
        return []
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not reachable(hub_endpoint()):
        return [(f"model.pretrained={name}", "model=minilm")]
    return []


def check_encoder_config(name: str, freeze_layers) -> None:
    """The encoder's config.json (a folder's, a package's, or a hub id's cached one): a supported
    architecture, and ``model.net.freeze_layers`` within its layers (an uncached hub id: when it loads)."""
    import json

    from ..model.encoders import check_architecture, encoder_layer_count, resolve_pretrained

    if name == "tiny-random":
        return
    if name.startswith("packaged:") or os.path.isdir(os.path.expanduser(name)):
        config_file = Path(resolve_pretrained(name)[0]).expanduser() / "config.json"
    else:  # a hub id: its cached config.json, when there is one
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repo id: loading it names the problem
            return
        if not isinstance(cached, str):
            return
        config_file = Path(cached)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return  # loading it names the problem
    check_architecture(config.get("model_type"), name)
    layers = encoder_layer_count(config)
    if freeze_layers is not None and layers is not None:
        integer("model.net.freeze_layers", freeze_layers, 0, layers)


# -- what is on this machine, what can be reached -------------------------------------------------------
def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)


def hub_model_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a name that is not a valid repo id is not in the cache either
        return False


def hub_dataset_cached(repo_id: str) -> bool:
    """Whether the datasets library or the hub cache already holds ``repo_id`` (usable offline)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    home = Path(os.environ.get("HF_DATASETS_CACHE", Path(HF_HUB_CACHE).parent / "datasets"))
    return (Path(HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}").is_dir() or \
        (home / repo_id.replace("/", "___")).is_dir()


def resnet50_weights_cached() -> bool:
    import torch
    from torchvision.models import ResNet50_Weights

    from ..data.backbones import PRETRAINED_WEIGHTS

    url = ResNet50_Weights[PRETRAINED_WEIGHTS["resnet50"]].url
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


@functools.lru_cache(maxsize=8)
def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the host of ``url`` opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
