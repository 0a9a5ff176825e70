"""``python -m memlab.report estimators`` on fabricated run dirs in the real file formats (validation.csv from
memlab's own writer, plus the ``seconds``/``cost_epochs`` columns newer runs carry): two data sets, an older
run of one, a label-noise run for one, an old-format run without scores.csv or costs. The page lists both
data sets, ranks by Spearman, names the tied leaders the paired intervals give, shows "–" for what is
missing, links the runs by relative paths; the figure is written; bad input is one line and writes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr

from memlab.report.cli import main
from memlab.studies.validation import spearman_intervals, validation_table

N = 800
COST = {"trak": 4.0, "tracin": 1.5, "loss": 0.0, "aum": float("nan")}  # aum: a run that did not record it


def _write_yaml(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(value))


def _run_dir(root: Path, name: str, stamp: str, task: str, overrides: list[str], metrics: dict) -> Path:
    run = root / name / "outputs" / task / stamp
    _write_yaml(run / ".hydra" / "config.yaml", {"task_name": task, "data": {"name": name}, "fz": {"models": 16}})
    _write_yaml(run / ".hydra" / "overrides.yaml", overrides)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def _candidates(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trak and tracin share one signal (tied), loss is far noisier (worse), aum is noise."""
    rng = np.random.default_rng(seed)
    fz = rng.normal(size=N)
    shared = fz + 0.6 * rng.normal(size=N)
    candidates = pd.DataFrame({"sample_index": np.arange(N), "loss": fz + 3.0 * rng.normal(size=N),
                               "tracin": shared + 0.02 * rng.normal(size=N), "trak": shared,
                               "aum": rng.normal(size=N)})
    return candidates, pd.DataFrame({"sample_index": np.arange(N), "fz_mem": fz, "label": rng.integers(0, 2, N)})


def _validate_run(root: Path, name: str, stamp: str, seed: int, with_scores: bool, with_costs: bool) -> Path:
    run = _run_dir(root, name, stamp, f"{name}_validate", [f"experiment={name}_validate", "fz.models=16"],
                   {"fz_reliability": 0.81, "job/seconds": 5400.0, "fz/models": 16})
    candidates, fz = _candidates(seed)
    table = validation_table(candidates, fz, ceiling=0.9)
    if with_costs:  # the columns other helpers append at the end
        table["seconds"] = table["score"].map(COST) * 10
        table["cost_epochs"] = table["score"].map(COST)
    table.to_csv(run / "validation.csv", index=False)
    if with_scores:
        scores = candidates.merge(fz, on="sample_index")
        scores["text"] = [f"sentence {i} | with a pipe" for i in range(N)]
        scores.to_csv(run / "scores.csv", index=False)
    return run


@pytest.fixture()
def results(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "results"
    _validate_run(root, "sst2", "2026-01-01/09-00-00", seed=9, with_scores=False, with_costs=False)  # older
    _validate_run(root, "sst2", "2026-01-02/10-00-00", seed=0, with_scores=True, with_costs=True)
    _validate_run(root, "snli", "2026-01-02/11-00-00", seed=1, with_scores=False, with_costs=False)
    noise = _run_dir(root, "sst2", "2026-01-02/12-00-00", "sst2_label_noise", ["experiment=sst2_label_noise"], {})
    pd.DataFrame({"score": ["loss", "tracin", "trak", "aum"], "auroc": [0.91, 0.72, 0.71, 0.5],
                  "average_precision": 0.5, "precision_at_noise": 0.5, "seconds": 1.0}).to_csv(
        noise / "label_noise.csv", index=False)
    monkeypatch.chdir(tmp_path)  # paths on the page are relative to where the command runs
    return Path("results")


def _section(page: str, title: str) -> str:
    return page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in rows]


def test_the_page_ranks_each_data_set_and_names_the_tied_leaders(results):
    assert main(["estimators", str(results), "--out", "docs/estimators.md"]) == 0
    page = Path("docs/estimators.md").read_text()
    sst2, snli = _section(page, "SST-2"), _section(page, "SNLI")
    run = Path("results/sst2/outputs/sst2_validate/2026-01-02/10-00-00")
    scores = pd.read_csv(run / "scores.csv")
    rho = {c: spearmanr(scores[c], scores["fz_mem"]).statistic for c in COST}
    rows = _table_rows(sst2)
    assert [r[0].split("`")[1] for r in rows] == sorted(rho, key=rho.get, reverse=True)  # ranked by Spearman
    first = rows[0]
    assert first[1].startswith(f"{max(rho.values()):.2f} (") and first[2].startswith(f"{max(rho.values()) / 0.9:.2f}")
    # the verdict follows the paired intervals (computed here again from scores.csv): trak and tracin tie
    intervals = spearman_intervals(scores[["sample_index", *COST]], scores[["sample_index", "fz_mem"]])
    tied = set(intervals.loc[intervals["diff_ci_high"] >= 0, "score"])
    assert tied == {"trak", "tracin"}
    verdict = next(line for line in sst2.splitlines() if line.startswith("**Verdict**"))
    leader = max(rho, key=rho.get)
    other = ({"trak", "tracin"} - {leader}).pop()
    assert f"the leader is `{leader}`, Spearman {max(rho.values()):.2f} (" in verdict and f"Tied with it within noise (the 95% paired-bootstrap" in verdict
    assert f": `{other}`. Recommended: `tracin`, the cheapest" in verdict  # 1.5 epochs against trak's 4
    assert "Clearly worse: `loss`, `aum`." in verdict
    by_name = {r[0].split("`")[1]: r for r in rows}
    assert by_name["aum"][-1] == "–" and by_name["loss"][-1] == "0" and by_name["trak"][-1] == "4"
    assert by_name["loss"][4] == "0.91"  # AUROC from the label-noise run of the same data set
    # the old-format run: no costs, no AUROC, no scores.csv -> own intervals only, no per-instance view
    assert all(r[-1] == "–" and r[4] == "–" for r in _table_rows(snli))
    assert "its own 95% interval reaches the leader's; this run kept no paired difference" in snli and "scores.csv is not among its files" in snli
    # the disagreements of the two leaders, with the text (its pipe escaped)
    assert "disagree most" in sst2 and "sentence " in sst2 and "\\| with a pipe" in sst2


def test_the_summary_the_figure_and_the_runs_it_came_from(results):
    assert main(["estimators", str(results), "--out", "docs/estimators.md"]) == 0
    page = Path("docs/estimators.md").read_text()
    assert Path("docs/estimators.png").stat().st_size > 5000 and "![" in page and "(estimators.png)" in page
    across = _section(page, "Across data sets")
    assert "| estimator | SST-2 | SNLI |" in across and "**" in _table_rows(across)[0][1]
    advice = _section(page, "Which estimator").strip().splitlines()
    assert len(advice) == 3 and advice[0].startswith("Use `") and "`loss`" not in advice[0]
    assert "Clearly worse than the leader on every data set: `aum`" in advice[2]
    # the newest run of a data set is used, the older one named; paths relative to where it ran
    assert "`results/sst2/outputs/sst2_validate/2026-01-02/10-00-00`" in page
    assert "not used: `results/sst2/outputs/sst2_validate/2026-01-01/09-00-00`" in page
    assert "`results/sst2/outputs/sst2_label_noise/2026-01-02/12-00-00`" in page
    assert str(Path.cwd()) not in page
    assert "`python -m memlab experiment=sst2_validate fz.models=16`" in page and "wall time 90 min" in page


def test_bad_input_is_one_line_and_writes_nothing(results, capsys, tmp_path):
    assert main(["estimators", "no/such/dir", "--out", "docs/x.md"]) == 2
    assert main(["estimators", str(tmp_path / "results" / "snli" / "outputs" / "nothing"), "--out", "docs/x.md"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["estimators", "empty", "--out", "docs/x.md"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and errors[0].startswith("error: not a directory") and "no validate run" in errors[2]
    assert not Path("docs").exists()
