"""Every experiment and config group option composes and resolves."""
from __future__ import annotations

import pytest

from conftest import CONF, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment, tmp_path):
    cfg = compose([f"experiment={experiment}"], tmp_path)
    assert cfg.data._target_ and cfg.model._target_ and cfg.trainer._target_
    assert cfg.model.num_classes == cfg.data.num_classes


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger", "callbacks", "solver"])
def test_every_group_option_composes(group, tmp_path):
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, group
    for option in options:
        cfg = compose([f"{group}={option}"], tmp_path)
        assert group in cfg or option in ("none",)


@pytest.mark.parametrize("launcher,target", [("joblib", "JoblibLauncher"), ("submitit_slurm", "SlurmLauncher")])
def test_launchers_compose(launcher, target):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=["experiment=sst2_removal", f"hydra/launcher={launcher}"],
                            return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith(target)
    assert cfg.hydra.sweeper.params["removal.pct"] == "0,10,20,30,40,50"


def test_ranking_runs_score_like_the_run_they_serve(tmp_path):
    # a study's cached ranking is scored with the run's memorization batch settings when it has them,
    # else with the callback's default (the same 64 as conf/callbacks/memorization.yaml), and its solver
    import inspect
    from omegaconf import OmegaConf
    from memlab.callbacks.scoring import ScoringCallback
    from memlab.jobs.ranking_cache import ranking_run_config
    default = inspect.signature(ScoringCallback).parameters["batch_size"].default
    assert default == OmegaConf.load(CONF / "callbacks" / "memorization.yaml").memorization.batch_size
    plain = ranking_run_config(compose(["experiment=sst2_removal"], tmp_path), tmp_path / "ranking")
    assert "batch_size" not in plain.callbacks.memorization
    cfg = compose(["experiment=sst2_removal", "+callbacks.memorization.batch_size=48"], tmp_path)
    sub = ranking_run_config(cfg, tmp_path / "ranking")
    assert sub.callbacks.memorization.batch_size == 48
    assert sub.callbacks.memorization.solver.own_term == cfg.solver.own_term
    assert sub.callbacks.memorization.output_dir == str(tmp_path / "ranking" / "memorization")
