"""Early config checks and one-line errors (issue 13): every bad value fails before any data, model or
training, in seconds, with one line naming the key, the value and what is allowed; `python -m memlab`
prints that line without a traceback and exits 1; a sweep with failed jobs exits 1 and each failed
job leaves job_failed.json; the README's main command, offline, names both overrides it needs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT
from memlab.jobs.config_checks import check_config
from memlab.data.text_sources import read_local
from memlab.errors import DataError, MemlabError

ROWS = [{"label": i % 2, "sentence": f"good film {i}" if i % 2 else f"bad film {i}", "sample_index": i}
        for i in range(40)]


def write_split(root, rows=ROWS, names=("train.csv", "dev.csv", "test.csv")):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        pd.DataFrame(rows).to_csv(root / name, index=False)
    return root


def bad_csv_dir(tmp_path, problem: str):
    if problem == "column":
        return write_split(tmp_path / "d", [{"lbl": 0, "sentence": "x", "sample_index": 0}])
    root = write_split(tmp_path / "d")
    pd.DataFrame([{**r, "label": 7 if i == 5 else r["label"]} for i, r in enumerate(ROWS)]).to_csv(
        root / "train.csv", index=False)
    return root


CASES = [  # overrides (a function of tmp_path), the key, the value and an allowed value the line must name
    (lambda t: ["removal=default", "removal.pct=150"], "removal.pct", "150", "from 0 to 100"),
    (lambda t: ["removal.strategy=bogus", "removal.pct=0"], "removal.strategy", "bogus", "top, bottom, random, none"),
    (lambda t: ["solver.name=bogus"], "solver.name", "bogus", "ekfac"),
    (lambda t: ["removal=default", "removal.pct=10", "removal.score=loo_score", "solver.own_term=false"], "removal.score", "loo_score",
     "removal.score=mem_score"),
    (lambda t: ["seed=-1"], "seed", "-1", "from 0 to 4294967295"),
    (lambda t: ["data_seed=1.5"], "data_seed", "1.5", "an integer"),
    (lambda t: ["trainer.max_epochs=bogus"], "trainer.max_epochs", "bogus", "an integer >= 0 or -1"),
    (lambda t: ["solver.damping=-1"], "solver.damping", "-1", ">= 0"),
    (lambda t: ["callbacks=memorization", "callbacks.memorization.batch_size=0"],
     "callbacks.memorization.batch_size", "0", ">= 1"),
    (lambda t: ["data.source=local", f"data.dir={bad_csv_dir(t, 'column')}"], "train.csv", "'label'", "columns"),
    (lambda t: ["data.source=local", f"data.dir={bad_csv_dir(t, 'label')}"], "train.csv", "unknown label 7",
     "0..1"),
    (lambda t: [f"model.pretrained={t}/no-such-model"], "model.pretrained", "no-such-model", "model=minilm"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[1] + "=" + c[2] for c in CASES])
def test_bad_value_fails_before_training_with_one_line(tiny_cfg, tmp_path, monkeypatch, case):
    import memlab.tasks.runner
    import memlab.jobs.training

    overrides, key, value, allowed = case
    cfg = tiny_cfg(*overrides(tmp_path))
    monkeypatch.setattr(memlab.jobs.training, "build", lambda cfg: pytest.fail("data and model were built"))
    started = time.perf_counter()
    with pytest.raises(MemlabError) as err:
        memlab.tasks.runner.run(cfg)
    message = str(err.value)
    assert time.perf_counter() - started < 15
    assert "\n" not in message and key in message and value in message and allowed in message, message
    assert json.loads((tmp_path / "job_failed.json").read_text())["error"] == message
    assert not (tmp_path / "metrics.json").exists()


def test_data_errors_name_the_file_and_the_value(tmp_path):
    root = write_split(tmp_path / "utf")
    (root / "train.csv").write_bytes("label,sentence,sample_index\n1,caf\xe9,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"train.csv: not UTF-8 text \(byte 0xe9"):
        read_local(root, 2, False, 0)
    root = write_split(tmp_path / "dup", [*ROWS, {**ROWS[3], "sentence": "again"}, {**ROWS[4], "sentence": "x"}])
    with pytest.raises(DataError, match=r"train.csv: 2 sample_index values occur more than once \(3, 4\)"):
        read_local(root, 2, False, 0)
    root = bad_csv_dir(tmp_path / "label", "label")
    with pytest.raises(DataError, match=r"unknown label 7 in row 6 \(line 7\)") as err:
        read_local(root, 2, False, 0)
    assert "np." not in str(err.value)


def test_missing_split_is_an_error_unless_asked_for(tiny_cfg, tmp_path):
    from memlab.tasks.runner import run

    root = write_split(tmp_path / "train_only", names=("train.csv",))
    with pytest.raises(DataError, match="no test.csv and dev.csv.*data.split_from_train=true"):
        check_config(tiny_cfg("data.source=local", f"data.dir={root}"))
    metrics = run(tiny_cfg("data.source=local", f"data.dir={root}", "data.split_from_train=true",
                           "trainer.max_epochs=1"))
    assert metrics["data/split_from_train"] == 1
    assert json.loads((tmp_path / "metrics.json").read_text())["data/split_from_train"] == 1


# -- the command line -------------------------------------------------------------------------------------
def memlab_cli(tmp_path, *args, env=None):
    cmd = [sys.executable, "-m", "memlab", *args, f"paths.cache_dir={tmp_path}/cache"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return proc, time.perf_counter() - started


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_cli_error_is_one_line_without_traceback(tmp_path):
    proc, seconds = memlab_cli(tmp_path, "experiment=smoke", "removal.pct=150", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == ["error: removal.pct=150 is out of range; allowed: a number from 0 to 100"]
    assert json.loads((tmp_path / "run" / "job_failed.json").read_text())["type"] == "ConfigError"
    assert seconds < 60  # no training: the interpreter and torch imports only
    verbose, _ = memlab_cli(tmp_path, "-v", "experiment=smoke", "removal.pct=150", f"hydra.run.dir={tmp_path}/v")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr and "ConfigError" in verbose.stderr


def test_main_command_offline_names_both_overrides(tmp_path):
    proc, seconds = memlab_cli(tmp_path, "experiment=sst2_memorization", f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = error_lines(proc.stderr)
    assert "data.source=local data.dir=DIR" in line and "model=minilm" in line
    assert seconds < 60


def test_sweep_with_failed_jobs_exits_non_zero_after_its_report(tmp_path):
    # every swept value passes the sweep's own check; two combinations fail in their jobs (ranked removal by
    # loo_score needs a solver with the own term; smoke_removal's identity has none); at X = 0 the other jobs
    # are one training and its duplicates
    proc, _ = memlab_cli(tmp_path, "-m", "experiment=smoke_removal", "removal.pct=0", "removal.strategy=random,top,bottom",
                         "removal.score=mem_score,loo_score", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 1, proc.stderr[-2000:]
    failed = sorted((tmp_path / "sweep").glob("*/job_failed.json"))
    assert len(failed) == 2 and all("removal.score=loo_score" in json.loads(f.read_text())["error"] for f in failed)
    assert (tmp_path / "sweep" / "removal_summary.csv").is_file()  # the report came first
    assert "Traceback" not in proc.stderr

