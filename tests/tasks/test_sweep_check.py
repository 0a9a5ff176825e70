"""The sweep's own check (memlab.tasks.sweep_check): which job configs it composes, and that a bad
swept value or missing data stops it with the one-line error (the CLI end: tests/tasks/test_removal_sweep.py)."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from memlab.errors import ConfigError, DataError
from memlab.tasks.sweep_check import overrides_to_check, sweep_lists


def sweep_config(params: dict, task: list[str]):
    return OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})


def test_sweep_lists_expand_params_and_command_line():
    cfg = sweep_config({"removal.strategy": "top,random", "removal.pct": "0,30", "seed": 0},
                       ["experiment=smoke_removal", "removal.pct=0,150", "seed=range(0,3)"])
    lists = sweep_lists(cfg)
    assert ["removal.strategy=top", "removal.strategy=random"] in lists
    assert ["removal.pct=0", "removal.pct=150"] in lists  # the command line wins over the study's list
    assert ["seed=0", "seed=1", "seed=2"] in lists
    assert ["experiment=smoke_removal"] in lists
    assert len(lists) == 4


def test_each_swept_value_is_checked_once_not_every_job():
    lists = [["a=1", "a=2", "a=3"], ["b=x", "b=y"], ["c=0"]]
    checked = list(overrides_to_check(lists))
    assert checked[0] == ["a=1", "b=x", "c=0"]
    assert len(checked) == 1 + 2 + 1  # the sum of the list lengths minus the shared first job, not 3 x 2 x 1
    seen = {value for job in checked for value in job}
    assert seen == {"a=1", "a=2", "a=3", "b=x", "b=y", "c=0"}
    assert all(sum(v != f for v, f in zip(job, checked[0])) == 1 for job in checked[1:])


def test_check_sweep_names_the_bad_value_and_missing_data(tmp_path):
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from conftest import CONF
    from memlab.tasks.sweep_check import check_sweep

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()

        def master(*overrides):
            return loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path}", *overrides],
                                             run_mode=RunMode.MULTIRUN)

        assert check_sweep(master("experiment=smoke_removal", "logger=none", "seed=0,1")) == 1 + 1 + 1 + 1  # base, random, pct 30, seed 1
        with pytest.raises(ConfigError, match="removal.pct=150"):
            check_sweep(master("experiment=smoke_removal", "logger=none", "removal.pct=0,150"))
        with pytest.raises(DataError, match="nope"):
            check_sweep(master("experiment=smoke_removal", "logger=none", "data=custom", f"data.path={tmp_path}/nope"))
    GlobalHydra.instance().clear()
