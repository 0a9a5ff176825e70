"""What goes into a job's W&B run (memlab.report.wandb_run) and the image views of memorized images
(memlab.report.image_figures, top_bottom.md, attributions.html), without a W&B run: a stand-in records
what is logged."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.report import image_figures, wandb_run
from memlab.report.figures import new_figure, save_figure
from memlab.report.plots import attribution_html, write_top_bottom_markdown
from memlab.studies.ranking import memorization_rank

PNG = b"\x89PNG\r\n\x1a\n"


def scores_frame(n: int = 25, classes: int = 2, seed: int = 0) -> pd.DataFrame:
    """A scores.csv-like table whose mem_score and loo_score order the instances differently."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"sample_index": np.arange(100, 100 + n), "label": np.arange(n) % classes,
                       "text": [f"x{i}" for i in range(n)], "prediction": rng.integers(0, classes, n),
                       "mem_score": rng.random(n), "loo_score": rng.random(n)})
    return df.assign(rank=memorization_rank(df))  # by loo_score, as scores.csv's


class FakeRun:
    def __init__(self):
        self.logged, self.summary = {}, {}

    def log(self, values):
        self.logged.update(values)


def test_table_rows_all_or_top_and_bottom(monkeypatch):
    df = scores_frame(25).sample(frac=1.0, random_state=3)
    rows, note = wandb_run.table_rows(df)
    assert rows["rank"].tolist() == list(range(1, 26)) and note == "all 25 training instances"
    monkeypatch.setattr(wandb_run, "TABLE_ALL_ROWS", 10)
    monkeypatch.setattr(wandb_run, "TABLE_EACH_END", 3)
    rows, note = wandb_run.table_rows(df)
    assert rows["rank"].tolist() == [1, 2, 3, 23, 24, 25]
    assert "top and bottom 3 of 25" in note and "loo_score" in note


def test_log_scores_table_histogram_and_thumbnails():
    import wandb

    df = scores_frame(12)
    run = FakeRun()
    asked = []

    def images(indices):
        asked.append(list(indices))
        return np.zeros((len(indices), 8, 8, 3), dtype=np.uint8)

    wandb_run.log_scores(run, df, images=images)
    table = run.logged["memorization/scores"]
    assert table.columns[0] == "image" and {"text", "loo_score", "rank"} <= set(table.columns)
    assert all(isinstance(row[0], wandb.Image) for row in table.data)
    ranks = [row[table.columns.index("rank")] for row in table.data]
    assert ranks == list(range(1, 13))  # most memorized first, each with its own picture
    assert asked == [df.sort_values("rank")["sample_index"].tolist()]
    histogram = run.logged["memorization/score_histogram"]
    assert sum(histogram.histogram) == 12 and run.summary["memorization/score_histogram_of"] == "loo_score"


def test_log_job_files_takes_the_jobs_figures_and_pages(tmp_path):
    for folder in ("memorization", "wandb", "csv", "memorization/chunks"):
        fig, _ = new_figure()
        save_figure(fig, tmp_path / folder / "plot.png")
    (tmp_path / "memorization" / "attributions.html").write_text("<p>tokens</p>")
    (tmp_path / "metrics.json").write_text('{"test/acc": 0.75, "note": "x", "nested": {"a": 1}}')
    run = FakeRun()
    keys = wandb_run.log_job_files(run, tmp_path)
    assert keys == {"figures": ["figures/memorization/plot"], "html": ["html/memorization/attributions"]}
    assert set(run.logged) == {"figures/memorization/plot", "html/memorization/attributions"}
    assert run.summary == {"test/acc": 0.75, "note": "x"}


def test_sweep_group_names_one_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = "multirun/smoke_removal/2026-12-06/11-10-19-000001"
    assert wandb_run.sweep_group(first) == "smoke_removal-2026-12-06-11-10-19-000001"
    assert wandb_run.sweep_group(tmp_path / first) == wandb_run.sweep_group(first + "/")  # the report's view
    assert wandb_run.sweep_group("multirun/smoke_removal/2026-12-06/11-10-19-000002") != wandb_run.sweep_group(first)


def test_top_bottom_markdown_shows_the_score_it_ranks_by(tmp_path):
    df = scores_frame(30)
    text = Path(write_top_bottom_markdown(df, tmp_path / "top.md", n=3, image_grid="top_bottom.png")).read_text()
    assert "![the most and least memorized training images of every class](top_bottom.png)" in text
    assert "| rank | loo_score | text | label |" in text and "mem_score" not in text
    rows = [line.split("|") for line in text.splitlines() if re.match(r"\| \d+ \|", line)]
    by_rank = df.set_index("rank")
    for cells in rows:  # the score shown is the one the rank follows (not mem_score)
        assert float(cells[2]) == pytest.approx(by_rank.loc[int(cells[1]), "loo_score"], rel=1e-3)
    top = [(int(c[1]), float(c[2])) for c in rows[:3]]
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


def test_top_bottom_image_grid(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(image_figures, "save_figure", lambda fig, path: figures.append(fig) or Path(path))
    df = scores_frame(20)
    asked = []

    def images(indices):
        asked.append(list(indices))
        return np.zeros((len(indices), 8, 8, 3), dtype=np.uint8)

    image_figures.plot_top_bottom_images(df, images, tmp_path / "grid.png", n=3, class_names=["cat", "dog"])
    for label, indices in enumerate(asked):
        part = df[df["label"] == label].sort_values("rank")
        assert indices == part["sample_index"].head(3).tolist() + part["sample_index"].tail(3).tolist()
    axes = np.asarray(figures[0].axes).reshape(2, 6)
    first = df[df["label"] == 0].sort_values("rank").iloc[0]
    caption = axes[0, 0].get_xlabel()
    assert f"cat #{first['sample_index']}" in caption and f"loo_score {first['loo_score']:.3g}" in caption
    assert f"pred {['cat', 'dog'][first['prediction']]}" in caption
    assert axes[1, 0].get_ylabel() == "dog"


def test_image_heatmaps_show_each_class_top_one(tmp_path):
    records = [{"sample_index": i, "label": label, "mem_score": 1.0, "loo_score": 2.0, "attribution_total": 1.5,
                "attributions": np.eye(7).tolist()} for i, label in ((5, 1), (6, 1), (7, 0))]
    asked = []

    def images(indices):
        asked.append(list(indices))
        return np.zeros((len(indices), 14, 14, 3), dtype=np.uint8)

    path = image_figures.plot_image_heatmaps(records, images, tmp_path / "attributions.png", ["cat", "dog"], {7: 1})
    assert asked == [[7, 5]]  # label order, each class's first (most memorized) record
    assert path.read_bytes().startswith(PNG)
    overlay = image_figures.attribution_overlay(np.array([[2.0, -1.0], [0.0, 0.5]]))
    assert overlay[0, 0].tolist() == [1, 0, 0, 0.7] and overlay[0, 1].tolist() == [0, 0, 1, 0.35]
    assert overlay[1, 0, 3] == 0  # a cell without attribution leaves the picture as it is


def test_attribution_html_says_which_score_it_explains(tmp_path):
    record = {"sample_index": 3, "label": 1, "mem_score": 2.5, "loo_score": 4.0, "replace_score": 3.5,
              "tokens": ["[CLS]", "good", "[SEP]"], "attributions": [0.0, 3.4, 0.0]}
    page = Path(attribution_html([record], tmp_path / "a.html")).read_text()
    assert "The attributions explain <b>loo_score</b>" in page
    assert "loo_score 4 &middot; M<sub>replace</sub> 3.5 &middot; sum of attributions 3.4" in page
    without = Path(attribution_html([{k: v for k, v in record.items() if k != "loo_score"}],
                                    tmp_path / "b.html")).read_text()
    assert "explain <b>mem_score</b>" in without and "mem_score 2.5" in without

