"""``python -m memlab.report archive`` keeps no absolute path of the machine that made the runs: paths
under the run's working folder become relative, home folders ``~``, other absolute paths lose their
machine-specific first parts; the pictures are copied byte for byte."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from memlab.report.archive import archive
from memlab.report.portable_paths import ELSEWHERE, make_tree_portable, portable_text

ABSOLUTE = re.compile(r"(?<![\w.~:/<-])/(?:work|root|home|tmp|scratch)\b|/private/")


def _run(tmp_path: Path) -> tuple[Path, Path]:
    """A run dir made in ``machine`` (its Hydra cwd), holding absolute paths the way memlab writes them."""
    machine = tmp_path / "machine" / "exp"
    run = machine / "outputs" / "sst2_memorization" / "2026-12-06" / "10-00-00-000000"
    (run / ".hydra").mkdir(parents=True)
    (run / "memorization").mkdir()
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {
        "run": {"dir": str(run)}, "runtime": {"cwd": str(machine), "output_dir": str(run),
                                              "config_sources": [{"path": str(machine / "conf")}]},
        "overrides": {"hydra": [f"hydra.run.dir={run}"], "task": ["data.dir=/scratch/me/sst2"]}}}))
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"paths": {
        "root_dir": str(machine), "cache_dir": str(machine / ".cache" / "memlab"),
        "output_dir": str(run), "data_dir": "/root/data", "system": "/usr/share/datasets/fashion-mnist"}}))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=minilm"]))
    (run / "metrics.json").write_text(json.dumps({
        "test/acc": 0.85, "fz/models_dir": str(machine / ".cache" / "memlab" / "fz" / "abc"),
        "typicality/ranking": str(machine / ".cache" / "memlab" / "rankings" / "d8" / "scores.csv"),
        "data/class_names": ["negative", "positive"], "note": "10/30/50% a/b https://host.example/x/y"}))
    (run / "memorization" / "top_bottom.md").write_text("| rank | text |\n| 1 | </b> and 1/2 |\n")
    (run / "memorization" / "removal.png").write_bytes(b"\x89PNG /work/exp/not/text")
    return machine, run


def test_archived_files_hold_no_absolute_paths(tmp_path, monkeypatch):
    machine, run = _run(tmp_path)
    here = tmp_path / "repo"
    here.mkdir()
    monkeypatch.chdir(here)  # archived from elsewhere: the run's own recorded cwd is what paths are relative to
    copied, _ = archive([machine / "outputs"], Path("docs/results/x"))
    texts = {p.name: p.read_text() for p in copied if p.suffix != ".png"}
    assert set(texts) == {"hydra.yaml", "config.yaml", "overrides.yaml", "metrics.json", "top_bottom.md"}
    for name, text in texts.items():
        assert str(tmp_path) not in text and not ABSOLUTE.search(text), (name, text)
    hydra = yaml.safe_load(texts["hydra.yaml"])["hydra"]
    run_rel = "outputs/sst2_memorization/2026-12-06/10-00-00-000000"
    assert hydra["runtime"]["cwd"] == "." and hydra["runtime"]["output_dir"] == run_rel
    assert hydra["run"]["dir"] == run_rel and hydra["overrides"]["hydra"] == [f"hydra.run.dir={run_rel}"]
    assert hydra["runtime"]["config_sources"][0]["path"] == "conf"
    assert hydra["overrides"]["task"] == [f"data.dir={ELSEWHERE}/sst2"]  # outside the run's folder: dropped
    paths = yaml.safe_load(texts["config.yaml"])["paths"]
    assert paths["root_dir"] == "." and paths["cache_dir"] == ".cache/memlab" and paths["data_dir"] == "~/data"
    assert paths["system"] == "/usr/share/datasets/fashion-mnist"  # the same on every machine
    metrics = json.loads(texts["metrics.json"])
    assert metrics["fz/models_dir"] == ".cache/memlab/fz/abc" and metrics["test/acc"] == 0.85
    assert metrics["typicality/ranking"] == ".cache/memlab/rankings/d8/scores.csv"
    assert metrics["note"] == "10/30/50% a/b https://host.example/x/y"  # not paths: untouched
    assert texts["top_bottom.md"] == (run / "memorization" / "top_bottom.md").read_text()
    png = next(p for p in copied if p.suffix == ".png")
    assert png.read_bytes() == (run / "memorization" / "removal.png").read_bytes()


def test_a_folder_archived_before_is_rewritten_in_place(tmp_path, monkeypatch):
    machine, run = _run(tmp_path)
    monkeypatch.chdir(tmp_path)
    changed = make_tree_portable(machine / "outputs")
    assert {p.name for p in changed} == {"hydra.yaml", "config.yaml", "metrics.json"}
    for path in (machine / "outputs").rglob("*"):
        if path.is_file() and path.suffix != ".png":
            assert str(tmp_path) not in path.read_text()
    assert make_tree_portable(machine / "outputs") == []  # once is enough


def test_portable_text_by_hand():
    roots = ["/work/exp", "/work/exp/sub"]
    assert portable_text('"ranking": "/work/exp/sub/.cache/r.csv"', roots) == '"ranking": ".cache/r.csv"'
    assert portable_text("cwd: /work/exp\n", roots) == "cwd: .\n"
    assert portable_text("reused: /work/exploit/x/y.json", roots) == f"reused: {ELSEWHERE}/x/y.json"
    assert portable_text("/home/ann/.cache/hf and /root/x", roots) == "~/.cache/hf and ~/x"
    interpolated = "cache_dir: ${oc.env:MEMLAB_CACHE,${paths.root_dir}/.cache/memlab}"
    assert portable_text(interpolated, roots) == interpolated  # not an absolute path
    assert portable_text("</b> 1/2 a/b/c http://h/x/y", roots) == "</b> 1/2 a/b/c http://h/x/y"


def test_a_table_over_the_size_limit_is_kept_compacted_when_that_fits(tmp_path):
    """A 3 MB scores table is archived with its floats at 5 significant digits (under 2 MB), values kept."""
    import numpy as np
    import pandas as pd

    from memlab.report.archive import MAX_BYTES, archive

    run = tmp_path / "outputs" / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("task: validate\n")
    (run / "metrics.json").write_text("{}")
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(20000, 8)), columns=[f"s{i}" for i in range(8)])
    table.insert(0, "sample_index", np.arange(len(table)))
    table.to_csv(run / "scores.csv", index=False)
    assert (run / "scores.csv").stat().st_size > MAX_BYTES
    copied, too_large = archive([run], tmp_path / "archive")
    kept = [p for p in copied if p.name == "scores.csv"]
    assert kept and not too_large and kept[0].stat().st_size <= MAX_BYTES
    back = pd.read_csv(kept[0])
    assert np.allclose(back.to_numpy(), table.to_numpy(), rtol=1e-4, atol=1e-9)
