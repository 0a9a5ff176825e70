"""Ranking stability (paper Table 5) against scipy's Spearman, and the study figures and tables of
memlab.report.plots (score vs. loss, disagreements, Fig. 2, Tables 2-4)."""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from memlab.report.plots import (attribution_html, disagreement_table, plot_reduction_rate, plot_score_vs_loss,
                                 write_top_bottom_markdown)
from memlab.report.study_figures import plot_heatmap
from memlab.studies.ranking import load_scores
from memlab.studies.stability import spearman_matrix

PNG = b"\x89PNG\r\n\x1a\n"


def _tables(n=50, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    noisy = a + rng.normal(0, 0.3, n)
    base = pd.DataFrame({"sample_index": np.arange(n), "mem_score": a})
    return {
        "a": base,
        # same ranking, different scale and row order
        "exp": base.assign(mem_score=np.exp(5 * a)).sample(frac=1.0, random_state=1),
        "neg": base.assign(mem_score=-a),
        "noisy": base.assign(mem_score=noisy),
    }, a, noisy


def test_spearman_matrix_against_scipy():
    tables, a, noisy = _tables()
    m = spearman_matrix(tables)
    assert list(m.index) == list(m.columns) == ["a", "exp", "neg", "noisy"]
    assert np.allclose(np.diag(m), 1.0) and np.allclose(m, m.T)
    assert m.loc["a", "exp"] == pytest.approx(1.0)
    assert m.loc["a", "neg"] == pytest.approx(-1.0)
    assert m.loc["a", "noisy"] == pytest.approx(spearmanr(a, noisy).statistic)


def test_spearman_matrix_aligns_on_common_instances_and_ties():
    x = pd.DataFrame({"sample_index": [0, 1, 2, 3, 4, 5], "mem_score": [0.0, 0.0, 1.0, 2.0, 3.0, 9.0]})
    y = pd.DataFrame({"sample_index": [5, 4, 3, 2, 1, 0, 7], "mem_score": [1.0, 4.0, 3.0, 3.0, 0.5, 0.0, 8.0]})
    m = spearman_matrix({"x": x, "y": y})
    common = x.merge(y, on="sample_index")  # 7 only in y: left out
    assert m.loc["x", "y"] == pytest.approx(spearmanr(common["mem_score_x"], common["mem_score_y"]).statistic)
    with pytest.raises(ValueError):
        spearman_matrix({"x": x, "dup": pd.concat([x, x])})


def test_plot_heatmap(tmp_path):
    tables, _, _ = _tables()
    path = plot_heatmap(spearman_matrix(tables), tmp_path / "stability.png")
    assert Path(path).read_bytes()[:8] == PNG


SHARED = Path(__file__).resolve().parents[3] / "shared" / "reference"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "sst2_scores_seed0.jsonl").exists(), reason="no shared reference scores")
def test_real_checkpoints_agree_like_table_5():
    tables = {f"seed{s}": load_scores(SHARED / f"sst2_scores_seed{s}.jsonl") for s in (42, 0, 2)}
    m = spearman_matrix(tables).to_numpy()
    off_diagonal = m[~np.eye(3, dtype=bool)]
    assert (off_diagonal > 0.95).all()


# ---- memlab.report.plots --------------------------------------------------------------------

def _scores(n=40, seed=0):
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0.05, 1.0, n)
    prob[0] = 1.0  # zero loss: must survive the log axes
    mem = (1 - prob) * 10 + rng.uniform(0, 0.1, n)
    mem[1] = 0.0
    mem[2] = 50.0  # memorized far more than its loss says
    prob[2] = 0.99
    df = pd.DataFrame({"sample_index": np.arange(n), "label": np.arange(n) % 2,
                       "text": [f"sentence {i} <b>|pipe|</b>" for i in range(n)], "prob": prob,
                       "prediction": np.arange(n) % 2, "mem_score": mem})
    df["rank"] = df["mem_score"].rank(ascending=False, method="first").astype(int)
    return df


def test_plot_score_vs_loss(tmp_path):
    path = plot_score_vs_loss(_scores(), tmp_path / "score_vs_loss.png")
    assert Path(path).read_bytes()[:8] == PNG


def test_disagreement_table():
    df = _scores()
    table = disagreement_table(df, n=5)
    assert len(table) == 5
    assert list(table.columns) == ["sample_index", "label", "text", "mem_score", "loss", "rank_mem",
                                   "rank_loss", "rank_gap"]
    assert table["rank_gap"].abs().is_monotonic_decreasing
    top = table.iloc[0]
    assert top["sample_index"] == 2 and top["rank_mem"] == 1 and top["rank_gap"] > 30
    assert top["loss"] == pytest.approx(-np.log(0.99))
    # A given loss column wins over -log prob.
    with_loss = df.assign(loss=df["mem_score"])
    assert disagreement_table(with_loss, n=3)["rank_gap"].abs().max() == 0


def test_plot_reduction_rate(tmp_path):
    ks = [10, 20, 30]
    df = pd.DataFrame({"method": ["attribution"] * 3 + ["random"] * 3, "k_percent": ks * 2,
                       "reduction_rate": [0.684, 0.784, 0.832, 0.48, 0.55, 0.62]})
    assert Path(plot_reduction_rate(df, tmp_path / "rr.png")).read_bytes()[:8] == PNG


def test_reduction_rate_axis_is_in_percent_whatever_the_size(tmp_path, monkeypatch):
    # masking can raise the score: rates below -1 are still fractions and must show as -117%, not -1.17%
    from memlab.report import plots

    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig) or path)
    df = pd.DataFrame({"method": ["random"] * 2, "k_percent": [10, 20], "reduction_rate": [-0.58, -1.17]})
    plot_reduction_rate(df, tmp_path / "rr.png")
    plot_reduction_rate(df.assign(reduction_rate=[48.0, 55.0]), tmp_path / "study.png", unit="percent")
    (fractions,), (percent,) = (fig.axes[0].get_lines() for fig in figures)
    assert fractions.get_ydata().tolist() == pytest.approx([-58.0, -117.0])
    assert percent.get_ydata().tolist() == pytest.approx([48.0, 55.0])
    assert figures[0].axes[0].get_ylabel() == "reduction rate (%)"


def test_top_bottom_markdown(tmp_path):
    df = _scores()
    text = Path(write_top_bottom_markdown(df, tmp_path / "top.md", n=3,
                                          class_names=["negative", "positive"])).read_text()
    assert "## negative (label 0)" in text and "## positive (label 1)" in text
    neg = df[df["label"] == 0].sort_values("rank")
    section = text.split("## negative (label 0)")[1].split("## positive")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    ranks = [int(line.split("|")[1]) for line in rows]
    assert ranks == neg["rank"].head(3).tolist() + neg["rank"].tail(3).tolist()
    assert r"\|pipe\|" in text  # a '|' in the text must not break the table
    assert all(line.count(" | ") - line.count(r"\| ") == 3 for line in rows)


def test_attribution_html(tmp_path):
    records = [{"sample_index": 3, "label": 1, "mem_score": 2.5,
                "tokens": ["[CLS]", "<script>", "schwarz", "##ene", "good", "[SEP]"],
                "attributions": [9.0, -0.5, 1.0, 0.25, -1.0, 0.0]},
               {"sample_index": 4, "label": 0, "mem_score": 0.0, "tokens": ["a"], "attributions": [0.0]}]
    page = Path(attribution_html(records, tmp_path / "attr.html", class_names=["neg", "pos"])).read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>" not in page and html.escape("<script>") in page
    assert "[CLS]" not in page  # hidden, and not used for the scale
    assert 'rgba(255,0,0,1.000)" title="+1">schwarz</span><span' in page  # pieces joined
    assert 'rgba(255,0,0,0.250)" title="+0.25">ene<' in page
    assert 'rgba(0,0,255,1.000)" title="-1">good<' in page
    assert 'rgba(0,0,255,0.500)' in page
    assert "pos (1)" in page and "#4" in page
    with pytest.raises(ValueError):
        attribution_html([{"tokens": ["a", "b"], "attributions": [1.0]}], tmp_path / "bad.html")
