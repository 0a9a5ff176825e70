"""The config layout: experiments are short compositions (setup + study) and every `_target_` imports."""
from __future__ import annotations

import pytest

from conftest import CONF

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
SETUPS = sorted(p.stem for p in (CONF / "setup").glob("*.yaml"))
STUDIES = sorted(p.stem for p in (CONF / "study").glob("*.yaml"))
MAX_EXPERIMENT_LINES = 12


def _compose(overrides: list[str]):
    """The unresolved config, Hydra's part included, as `python -m memlab OVERRIDES --cfg all` shows it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def _targets(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                yield path or "<root>", value
            else:
                yield from _targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def test_the_layout_is_there():
    assert {"sst2", "snli", "yahoo", "cifar10", "smoke"} <= set(SETUPS)
    assert {"memorization", "attribution", "removal", "stability", "fz", "validate", "label_noise",
            "typicality"} <= set(STUDIES)
    assert len(EXPERIMENTS) >= 27


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_file_is_a_short_composition(experiment):
    lines = (CONF / "experiment" / f"{experiment}.yaml").read_text().splitlines()
    assert len(lines) <= MAX_EXPERIMENT_LINES, f"{experiment}: {len(lines)} lines; move shared settings to setup/ or study/"
    assert lines[0] == "# @package _global_"
    assert any(f"experiment={experiment}" in line for line in lines if line.startswith("#")), "header: its command"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_its_targets_import(experiment):
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    cfg = _compose([f"experiment={experiment}"])
    assert cfg.task_name and cfg.data._target_ and cfg.model._target_ and cfg.trainer._target_
    targets = dict(_targets(OmegaConf.to_container(cfg, resolve=False)))
    assert "hydra.callbacks.failed_jobs" in targets
    broken = {}
    for path, target in targets.items():
        try:
            get_object(target)
        except Exception as err:  # ImportError, or Hydra's wrapper of it
            broken[path] = f"{target}: {type(err).__name__}"
    assert not broken, broken


@pytest.mark.parametrize("setup", SETUPS)
def test_every_setup_composes_with_every_study(setup):
    for study in STUDIES:
        cfg = _compose([f"+setup={setup}", f"+study={study}"])
        assert cfg.model.num_classes == cfg.data.num_classes and cfg.trainer.max_epochs >= 1, (setup, study)


def test_command_line_overrides_win_over_the_composition():
    cfg = _compose(["experiment=sst2_removal", "trainer.max_epochs=1", "data=snli", "removal.pct=30"])
    assert (cfg.data.name, cfg.trainer.max_epochs, cfg.removal.pct) == ("snli", 1, 30)
    assert cfg.model.l2 == 5.0e-3 and cfg.hydra.sweeper.params["removal.draw_seed"] == "0,1,2"
    swapped = _compose(["experiment=sst2_removal", "setup=yahoo"])
    assert (swapped.data.name, swapped.hydra.mode.name) == ("yahoo", "MULTIRUN")


def test_study_solver_is_lissa_plus_the_l2_term():
    cfg = _compose(["solver=study"])
    lissa = _compose(["solver=lissa"])
    assert cfg.solver == lissa.solver and cfg.model.l2 == 5.0e-3
