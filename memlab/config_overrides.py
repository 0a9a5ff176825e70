"""Command-line overrides that Hydra's defaults list cannot express: a data group that needs its own
setup (model, recipe, epochs) under the generic studies.

The generic studies (``experiment=memorization``, removal, attribution, ...) are ``/setup: custom``:
your own *text* data with DistilBERT. ``data=image_folder`` needs the feature MLP instead, i.e.
``setup=image_folder``; Hydra cannot pick a setup from the data choice (a defaults-list interpolation
sees only its parents' choices, and its subtree may not override groups), so ``python -m memlab``
adds ``setup=image_folder`` itself (:func:`with_data_setup`). An explicit ``setup=...`` wins.

Keys every text data module takes as a code default but no data YAML holds (adding one there would move
the cache keys of the configs without it), e.g. ``data.limit_train``: a plain ``key=value`` becomes
``++key=value`` (:func:`with_optional_keys`).
"""
from __future__ import annotations

from typing import Sequence

from omegaconf import OmegaConf

from .config_dir import config_dir

# data group choice -> the setup the generic studies take with it
DATA_SETUPS = {"image_folder": "image_folder"}
GENERIC_SETUP = "custom"


def override_value(overrides: Sequence[str], key: str) -> str | None:
    """The value of ``key=VALUE`` among ``overrides`` (the last one), else None."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key and "=" in o]
    return values[-1] if values else None


def experiment_setup(experiment: str) -> str | None:
    """The ``/setup`` an experiment file names in its defaults list (None: none, or no such file)."""
    file = config_dir() / "experiment" / f"{experiment}.yaml"
    if not file.is_file():
        return None
    for entry in OmegaConf.load(file).get("defaults") or []:
        if isinstance(entry, dict) or OmegaConf.is_dict(entry):
            for group, choice in dict(entry).items():
                if str(group).lstrip("/") == "setup":
                    return str(choice)
    return None


def with_data_setup(overrides: Sequence[str]) -> list[str]:
    """``overrides`` plus ``setup=<data's setup>`` when the data group has one of its own
    (``DATA_SETUPS``) and the experiment is a generic study; unchanged otherwise."""
    overrides = list(overrides)
    data, experiment = override_value(overrides, "data"), override_value(overrides, "experiment")
    if data not in DATA_SETUPS or experiment is None or override_value(overrides, "setup") is not None:
        return overrides
    if experiment_setup(experiment) != GENERIC_SETUP:
        return overrides
    # next to the data override, not at the end: argparse refuses positionals after a trailing flag
    at = max(i for i, o in enumerate(overrides) if o.split("=", 1)[0].lstrip("+") == "data") + 1
    return [*overrides[:at], f"setup={DATA_SETUPS[data]}", *overrides[at:]]


OPTIONAL_KEYS = ("data.limit_train",)


def with_optional_keys(args: Sequence[str]) -> list[str]:
    """``args`` with each plain override of an :data:`OPTIONAL_KEYS` key made ``++key=value`` (add or set)."""
    return [f"++{a}" if a.split("=", 1)[0] in OPTIONAL_KEYS and "=" in a else a for a in args]
