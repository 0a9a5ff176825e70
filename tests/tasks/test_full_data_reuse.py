"""An X = 0 removal job is the full-data training of the ranking run at its seed (issue 29): proved on
the tiny config (same test/acc and val/loss, bit for bit, with separately trained models), then reused
(one log line, ``reused`` marked) and retrained with ``removal.reuse=false``."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from memlab.jobs.ranking_cache import load_or_compute_ranking, ranking_key, with_ranking_seed
from memlab.tasks.runner import run

SEED = 1
TRAINED = ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss")


def x0_job(tiny_cfg, tmp_path, name, *overrides):
    from omegaconf import open_dict

    cfg = tiny_cfg("experiment=smoke_removal_base", "removal.pct=0", "removal.strategy=top", f"seed={SEED}",
                   "trainer.max_epochs=2", *overrides)
    with open_dict(cfg):  # the job's own dir, one shared cache
        cfg.paths.output_dir = str(tmp_path / name)
        cfg.trainer.default_root_dir = cfg.paths.output_dir
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


def ranking_metrics(cfg) -> dict:
    seeded = with_ranking_seed(cfg, SEED)
    load_or_compute_ranking(seeded)
    return json.loads((Path(cfg.paths.cache_dir) / "rankings" / ranking_key(seeded) / "metrics.json").read_text())


def test_x0_job_equals_the_ranking_run_of_its_seed_then_reuses_it(tiny_cfg, tmp_path, caplog):
    # trained first, before any ranking exists: a real training, compared with the ranking trained after
    trained = run(x0_job(tiny_cfg, tmp_path, "trained", "removal.reuse=false"))
    assert "removal/reused" not in trained
    ranking = ranking_metrics(x0_job(tiny_cfg, tmp_path, "ranking"))
    assert "memorization/seconds" in ranking  # it really was the scoring run
    for key in TRAINED:
        assert ranking[key] == trained[key], key  # exactly: same seeding, same data, same steps

    shutil.rmtree(tmp_path / "cache" / "removal_jobs")  # the trained job's own stored result: not what is tested
    with caplog.at_level(logging.INFO, logger="memlab"):
        reused = run(x0_job(tiny_cfg, tmp_path, "reused", "removal.draw_seed=0"))
    lines = [r.getMessage() for r in caplog.records if "full-data training of the ranking" in r.getMessage()]
    assert len(lines) == 1
    assert reused["removal/reused"] == 1
    assert {k: reused[k] for k in TRAINED} == {k: trained[k] for k in TRAINED}
    assert not any(k.startswith("memorization/") for k in reused)  # the ranking's scoring is not this job's
    record = json.loads((tmp_path / "reused" / "removal_job.json").read_text())
    assert record["status"] == "ok" and record["n_removed"] == 0 and "rankings" in record["reused"]


def test_x0_job_of_another_seed_or_without_reuse_trains(tiny_cfg, tmp_path):
    ranking_metrics(x0_job(tiny_cfg, tmp_path, "ranking"))
    forced = run(x0_job(tiny_cfg, tmp_path, "forced", "removal.reuse=false"))
    assert "removal/reused" not in forced
    other = run(x0_job(tiny_cfg, tmp_path, "other", "seed=2"))  # no ranking at seed 2
    assert "removal/reused" not in other
