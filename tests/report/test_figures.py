"""Figures that explain themselves: score_vs_loss.png plots the score the ranking follows and names the
classes, attributions.png has a colour key, top_bottom.png says what red means, and every figure memlab
draws has a title (on the Figure and in the saved PNG's metadata)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.report import image_figures, paper_figure, plots, removal_report, study_figures
from memlab.report.figures import figure_title, new_figure, save_figure, saved_title


def _capture(monkeypatch, module):
    """Keep the Figure a plotting function saves (and still write the file, to read its metadata)."""
    figures = []

    def keep(fig, path, **kw):
        figures.append(fig)
        return save_figure(fig, path, **kw)

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def _scores(n=40, with_loo=True):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"sample_index": np.arange(n), "label": np.arange(n) % 2, "prob": rng.uniform(0.05, 0.99, n),
                       "prediction": (np.arange(n) + (np.arange(n) % 5 == 0)) % 2, "mem_score": rng.random(n)})
    if with_loo:
        df["loo_score"] = rng.random(n)
    df["rank"] = df["loo_score" if with_loo else "mem_score"].rank(ascending=False, method="first").astype(int)
    return df


def _images(indices):
    return np.zeros((len(indices), 14, 14, 3), dtype=np.uint8)


@pytest.mark.parametrize("with_loo,column", [(True, "loo_score"), (False, "mem_score")])
def test_score_vs_loss_plots_the_ranking_score_with_class_names(tmp_path, monkeypatch, with_loo, column):
    figures = _capture(monkeypatch, plots)
    df = _scores(with_loo=with_loo)
    path = plots.plot_score_vs_loss(df, tmp_path / "score_vs_loss.png", class_names=["negative", "positive"])
    ax = figures[0].axes[0]
    assert ax.get_ylabel().startswith(column) and "memorization score" not in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["negative", "positive"]
    y = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    assert sorted(y) == pytest.approx(sorted(np.maximum(df[column].to_numpy(), 1e-6)))  # the column it names
    assert column in saved_title(path) and "Spearman" in saved_title(path)


def test_score_vs_loss_without_class_names_shows_the_labels(tmp_path, monkeypatch):
    figures = _capture(monkeypatch, plots)
    plots.plot_score_vs_loss(_scores(), tmp_path / "s.png")
    assert [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()] == ["0", "1"]


def test_attributions_have_a_colour_key(tmp_path, monkeypatch):
    figures = _capture(monkeypatch, image_figures)
    records = [{"sample_index": i, "label": label, "mem_score": 1.0, "loo_score": 2.0,
                "attributions": (np.eye(7) - 0.5).tolist()} for i, label in ((5, 1), (7, 0))]
    path = image_figures.plot_image_heatmaps(records, _images, tmp_path / "attributions.png", ["cat", "dog"])
    keys = [ax._colorbar for ax in figures[0].axes if getattr(ax, "_colorbar", None) is not None]
    assert len(keys) == 1
    key = keys[0]
    label = key.ax.get_xlabel()
    assert "red raises memorization" in label and "blue lowers" in label
    low, high = key.cmap(0.0), key.cmap(1.0)
    assert low[2] == 1 and low[0] == 0 and high[0] == 1 and high[2] == 0  # blue end, red end
    assert "attributions" in saved_title(path)


def test_top_bottom_grid_says_red_is_a_wrong_prediction(tmp_path, monkeypatch):
    figures = _capture(monkeypatch, image_figures)
    path = image_figures.plot_top_bottom_images(_scores(), _images, tmp_path / "top_bottom.png", n=3,
                                                class_names=["cat", "dog"])
    texts = [t.get_text() for legend in figures[0].legends for t in legend.get_texts()]
    assert any("red" in t and "wrong" in t for t in texts)
    assert "most and 3 least memorized" in saved_title(path)


def _every_figure(tmp_path):
    """(name, path written) of every plotting function memlab has, on small inputs."""
    rng = np.random.default_rng(1)
    scores = _scores()
    table = pd.DataFrame({"score": ["loss", "loo_score"], "spearman_vs_fz": [0.8, 0.85],
                          "spearman_vs_fz_top10": [-0.5, 0.3], "ceiling": [0.9, 0.9]})
    reliability = pd.DataFrame({"models": [8, 16], "projected": [0.3, 0.5], "reliability": [0.34, 0.5],
                                "half_sd": [0.01, 0.01]})
    candidates = pd.DataFrame({"sample_index": np.arange(40), "loss": rng.random(40), "loo_score": rng.random(40)})
    fz = pd.DataFrame({"sample_index": np.arange(40), "fz_mem": rng.random(40)})
    aggregate = pd.DataFrame({"strategy": ["top", "top", "random", "random"], "removal_pct": [0, 30, 0, 30],
                              "test_acc_mean": [0.85, 0.84, 0.85, 0.845], "test_acc_std": [0.01] * 4,
                              "score": ["loo_score"] * 4, "min_removed_score": [None, 0.2, None, None]})
    diffs = pd.DataFrame({"x": [10.0, 30.0], "memlab": [-0.5, 0.1], "low": [-1.0, -0.5], "high": [0.0, 0.7],
                          "n_pairs": [3, 3], "paired": [True, True], "epochs": [5.0, 5.0], "paper": [-0.7, None]})
    records = [{"sample_index": 3, "label": 0, "mem_score": 1.0, "attributions": np.ones((7, 7)).tolist()}]
    reduction = pd.DataFrame({"method": ["attribution", "random"], "k_percent": [10, 10], "reduction_rate": [0.6, 0.3]})
    return {
        "score_vs_loss": plots.plot_score_vs_loss(scores, tmp_path / "a.png"),
        "reduction_rate": plots.plot_reduction_rate(reduction, tmp_path / "b.png"),
        "top_bottom": image_figures.plot_top_bottom_images(scores, _images, tmp_path / "c.png"),
        "attributions": image_figures.plot_image_heatmaps(records, _images, tmp_path / "d.png"),
        "typicality": study_figures.plot_typicality_histograms(
            scores, pd.DataFrame({"sample_index": np.arange(40), "positive_fraction": rng.random(40)}),
            tmp_path / "e.png"),
        "stability": study_figures.plot_heatmap(pd.DataFrame(np.eye(2), index=["a", "b"], columns=["a", "b"]),
                                                tmp_path / "f.png"),
        "validation": study_figures.plot_validation(table, tmp_path / "g.png") or tmp_path / "g.png",
        "fz_reliability": study_figures.plot_fz_reliability(reliability, tmp_path / "h.png") or tmp_path / "h.png",
        "scores_vs_fz": study_figures.plot_scores_vs_fz(candidates, fz, tmp_path / "i.png") or tmp_path / "i.png",
        "label_noise": study_figures.plot_precision_recall(candidates, [1, 2, 3], tmp_path / "j.png")
        or tmp_path / "j.png",
        "removal": removal_report.plot_removal(aggregate, tmp_path / "k.png"),
        "paper_fig1": paper_figure.plot_removal_differences([("SST-2", diffs)], tmp_path / "l.png"),
    }


def test_every_figure_has_a_title(tmp_path):
    written = _every_figure(tmp_path)
    untitled = [name for name, path in written.items() if not saved_title(Path(path)).strip()]
    assert untitled == []


def test_figure_title_prefers_the_suptitle(tmp_path):
    fig, axes = new_figure(1, 2)
    assert figure_title(fig) == ""
    axes[0, 1].set_title("panel")
    assert figure_title(fig) == "panel"
    fig.suptitle("whole figure")
    assert figure_title(fig) == "whole figure"
    assert saved_title(save_figure(fig, tmp_path / "x.png")) == "whole figure"
    fig, _ = new_figure()
    assert saved_title(save_figure(fig, tmp_path / "untitled.png")) == ""
