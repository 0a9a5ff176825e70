"""Figures and tables that show a person what was memorized: score vs. loss, the instances where
the two rankings disagree, the reduction rate (paper Fig. 2), the top/bottom memorized instances
per class (Tables 2-3, Markdown) and token attributions highlighted red/blue (Table 4, HTML); images
are drawn by :mod:`memlab.report.image_figures`."""
from __future__ import annotations

import html
import math
import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..studies.ranking import memorization_column, memorization_rank, rank_by_memorization
from ..utils.io import atomic_write_text
from .figures import new_figure, save_figure


def loss_of(scores_df: pd.DataFrame) -> pd.Series:
    """The training loss per instance: the ``loss`` column, else -log(prob of the gold label)."""
    if "loss" in scores_df.columns:
        return scores_df["loss"].astype(float)
    return -np.log(scores_df["prob"].astype(float).clip(lower=1e-300))


def plot_score_vs_loss(scores_df: pd.DataFrame, path: str | os.PathLike, floor: float = 1e-6,
                       title: str | None = None, class_names: Sequence[str] | None = None):
    """Scatter of the score the ranking follows (``loo_score`` where the table has it, else ``mem_score``:
    :func:`memlab.studies.ranking.memorization_column`, named on the axis) vs. the training loss on
    log-log axes, one colour per class (its name from ``class_names``, the run's ``data/class_names``).

    Values below ``floor`` (zero scores, near-zero losses) are drawn at the floor. The title gives
    the Spearman correlation of the raw values. Returns the path written.
    """
    from scipy.stats import spearmanr

    from .image_figures import class_name

    column = memorization_column(scores_df)
    loss = loss_of(scores_df).to_numpy()
    score = scores_df[column].to_numpy(dtype=float)
    rho = float(spearmanr(score, loss).statistic) if len(score) > 2 else math.nan
    fig, axes = new_figure(1, 1, figsize=(5.5, 4.5))
    ax = axes[0, 0]
    labels = scores_df["label"].to_numpy() if "label" in scores_df.columns else np.zeros(len(score))
    for label in np.unique(labels):
        sel = labels == label
        ax.scatter(np.maximum(loss[sel], floor), np.maximum(score[sel], floor), s=6, alpha=0.5,
                   label=class_name(label, class_names))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training loss  -log P(y|x)")
    ax.set_ylabel(f"{column} (the score the ranking follows)")
    ax.set_title(f"{title + ': ' if title else ''}{column} vs training loss, Spearman ρ = {rho:.3f} "
                 f"(n = {len(score)})", fontsize=10)
    ax.legend(fontsize=8, markerscale=2, title="class", title_fontsize=8)
    return save_figure(fig, path)


def disagreement_table(scores_df: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """The ``n`` instances whose rank by memorization score and rank by loss differ most.

    Both ranks are 1 = highest (average ranks for ties). Columns ``sample_index, label, text,
    mem_score, loss, rank_mem, rank_loss, rank_gap`` with rank_gap = rank_loss - rank_mem (> 0:
    memorized more than its loss suggests), sorted by |rank_gap| descending, then sample_index.
    """
    df = scores_df.copy()
    df["loss"] = loss_of(df).to_numpy()
    df["rank_mem"] = df["mem_score"].rank(ascending=False, method="average")
    df["rank_loss"] = df["loss"].rank(ascending=False, method="average")
    df["rank_gap"] = df["rank_loss"] - df["rank_mem"]
    df["_abs_gap"] = df["rank_gap"].abs()
    df = df.sort_values(["_abs_gap", "sample_index"], ascending=[False, True], kind="mergesort")
    columns = [c for c in ["sample_index", "label", "text", "mem_score", "loss", "rank_mem",
                           "rank_loss", "rank_gap"] if c in df.columns]
    return df[columns].head(n).reset_index(drop=True)


def reduction_rate_percent(rates, unit: str = "fraction"):
    """Reduction rates in %: Eq. 6's mean((M - M') / M) is a fraction (x 100 here, whatever its
    size: masking can raise the score, |rate| > 1); ``unit="percent"`` for numbers already in %
    (the study's published table)."""
    if unit not in ("fraction", "percent"):
        raise ValueError(f"unit must be 'fraction' or 'percent', got {unit!r}")
    return rates * (100.0 if unit == "fraction" else 1.0)


def plot_reduction_rate(df: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
                        unit: str = "fraction", masked: str = "tokens"):
    """Paper Fig. 2: reduction rate (Eq. 6) in % vs. the k% of tokens (or image cells) masked, one line per ``method``
    (``attribution``, ``random``). Columns ``method, k_percent, reduction_rate`` and optionally
    ``reduction_rate_std`` (error bars), as fractions (memlab's reduction_rate.csv) unless
    ``unit="percent"``. ``masked`` names what was replaced: ``tokens`` (text, by [MASK]) or ``cells``
    (images, by the zero baseline)."""
    fig, axes = new_figure(1, 1, figsize=(5.5, 4.0))
    ax = axes[0, 0]
    styles = {"attribution": ("tab:red", "o", "memorization attribution"),
              "random": ("tab:blue", "s", f"random {masked}")}
    for method, g in df.groupby("method", sort=False):
        g = g.sort_values("k_percent")
        color, marker, label = styles.get(method, (None, "^", method))
        yerr = reduction_rate_percent(g["reduction_rate_std"], unit) if "reduction_rate_std" in g.columns else None
        ax.errorbar(g["k_percent"], reduction_rate_percent(g["reduction_rate"], unit), yerr=yerr, color=color,
                    marker=marker, capsize=3, label=label)
    ax.set_xlabel("top-k% tokens replaced by [MASK]" if masked == "tokens" else f"top-k% {masked} set to the baseline")
    ax.set_ylabel("reduction rate (%)")
    ax.set_title(title or f"Reduction rate (Eq. 6): masking attributed vs random {masked}", fontsize=10)
    if len(df):
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def _md_cell(value) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _text_column(df: pd.DataFrame) -> str | None:
    return next((c for c in ("text", "sentence") if c in df.columns), None)


def write_top_bottom_markdown(scores_df: pd.DataFrame, path: str | os.PathLike, n: int = 3,
                              class_names: Sequence[str] | None = None, title: str | None = None,
                              image_grid: str | None = None):
    """Paper Tables 2-3: per class, the top-``n`` and bottom-``n`` memorized instances as Markdown
    tables with columns rank, the score the rank follows (loo_score, else mem_score), text, label (rank
    1 = most memorized over all classes). ``image_grid``: a picture of them (a path relative to the
    Markdown file) shown above the tables."""
    df = scores_df
    if "rank" not in df.columns:
        df = df.assign(rank=memorization_rank(df))
    score_col = memorization_column(df)  # the one scores.csv's rank follows
    text_col = _text_column(df)
    lines = [f"# {title or 'Most and least memorized training instances'}", ""]
    if image_grid:
        lines += [f"![the most and least memorized training images of every class]({image_grid})", ""]
    for label in sorted(df["label"].unique()):
        name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else None
        part = rank_by_memorization(df[df["label"] == label], "rank", ascending=True)
        lines.append(f"## {name} (label {label})" if name else f"## label {label}")
        lines.append("")
        for heading, rows in ((f"Top-{n} memorized", part.head(n)),
                              (f"Bottom-{n} memorized", part.tail(n))):
            lines += [f"### {heading}", "", f"| rank | {score_col} | text | label |", "|---:|---:|---|---|"]
            for _, row in rows.iterrows():
                text = row[text_col] if text_col else ""
                shown = name or label
                lines.append(f"| {int(row['rank'])} | {row[score_col]:.4g} | {_md_cell(text)} | "
                             f"{_md_cell(shown)} |")
            lines.append("")
    return atomic_write_text(path, "\n".join(lines))


SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>")

_HTML_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.9; }}
.instance {{ border-bottom: 1px solid #ddd; padding: 0.6em 0; }}
.meta {{ color: #555; font-size: 0.85em; }}
.tok {{ padding: 0.1em 0.15em; border-radius: 3px; }}
.legend span {{ padding: 0.1em 0.4em; margin-right: 1em; }}
</style></head><body>
<h1>{title}</h1>
<p class="legend"><span style="background: rgba(255,0,0,0.6)">positive attribution (memorized)</span>
<span style="background: rgba(0,0,255,0.6)">negative attribution</span>
intensity &prop; |a| / max |a| within each instance</p>
<p>The attributions explain <b>{explained}</b>: an instance's token attributions sum to its replace score
M<sub>replace</sub> (Eq. 4; up to the path integral's error), its {explained} less the same product with the
loss gradient taken at the sequence with every token [MASK]ed.</p>
"""


def _token_spans(tokens: Sequence[str], attributions: Sequence[float]) -> str:
    values = np.asarray([float(a) for a in attributions], dtype=float)
    peak = float(np.abs(values).max()) if values.size else 0.0
    parts = []
    for i, (token, value) in enumerate(zip(tokens, values)):
        alpha = abs(value) / peak if peak > 0 else 0.0
        rgb = "255,0,0" if value > 0 else "0,0,255"
        piece = token[2:] if token.startswith("##") else token
        # Word pieces join the previous piece without a space, as the word reads.
        sep = "" if (token.startswith("##") or i == 0) else " "
        parts.append(f'{sep}<span class="tok" style="background: rgba({rgb},{alpha:.3f})" '
                     f'title="{value:+.4g}">{html.escape(piece)}</span>')
    return "".join(parts)


def attribution_html(records: Iterable[Mapping], path: str | os.PathLike,
                     title: str = "Memorization attribution", class_names: Sequence[str] | None = None,
                     hide_special: bool = True):
    """Paper Table 4 as a self-contained HTML page: each instance's tokens highlighted red
    (positive memorization attribution) or blue (negative), opacity |a| / max |a| of that instance.

    ``records``: dicts with ``sample_index, label, mem_score, tokens, attributions`` (and ``loo_score``,
    ``replace_score`` when known: the attributions explain loo_score where there is one, the solver's score
    without the instance's own curvature term, and sum to replace_score, Eq. 4). Special
    tokens ([CLS], [SEP], padding) are hidden unless ``hide_special`` is False; "##" word pieces
    are joined to the piece before. All text is HTML-escaped. Returns the path written.
    """
    records = list(records)
    explained = "loo_score" if records and all("loo_score" in r for r in records) else "mem_score"
    body = [_HTML_HEAD.format(title=html.escape(title), explained=explained)]
    for record in records:
        tokens = [str(t) for t in record["tokens"]]
        attributions = [float(a) for a in record["attributions"]]
        if len(tokens) != len(attributions):
            raise ValueError(f"instance {record.get('sample_index')}: {len(tokens)} tokens but "
                             f"{len(attributions)} attributions")
        total = sum(attributions)
        if hide_special:
            kept = [(t, a) for t, a in zip(tokens, attributions) if t not in SPECIAL_TOKENS]
            tokens, attributions = [t for t, _ in kept], [a for _, a in kept]
        label = record.get("label")
        if class_names is not None and label is not None and 0 <= int(label) < len(class_names):
            label = f"{class_names[int(label)]} ({int(label)})"
        replace = (f" &middot; M<sub>replace</sub> {float(record['replace_score']):.4g}"
                   if "replace_score" in record else "")
        meta = (f"#{html.escape(str(record.get('sample_index')))} &middot; label "
                f"{html.escape(str(label))} &middot; {explained} "
                f"{float(record.get(explained, math.nan)):.4g}{replace} &middot; sum of attributions {total:.4g}")
        body.append(f'<div class="instance"><div class="meta">{meta}</div>'
                    f'<div class="tokens">{_token_spans(tokens, attributions)}</div></div>')
    body.append("</body></html>\n")
    return atomic_write_text(path, "\n".join(body))
