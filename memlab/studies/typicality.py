"""Typicality of memorized SST-2 sentences (paper Table 1, Fig. 4, Appendix D).

Every node of a Stanford Sentiment Treebank tree carries a sentiment label 0-4 (0-1 negative,
2 neutral, 3-4 positive). The positive fraction of a sentence (Appendix D, Eq. 24) is

    frac_pos = (n_pos + k) / ((n_pos + k) + (n_neg + k)),   k = 0.01,

where n_pos / n_neg count the labelled nodes of the sentence's tree with label >= 3 / <= 1.
Which nodes count: every node of the tree, i.e. every word (pre-terminal) and every phrase,
the root (the whole sentence) included; neutral nodes count in neither n_pos nor n_neg. This is
the study's "positive-phrase fraction over all labelled subtree nodes" and reproduces its
class means over all training sentences (Table 1's "all" column) closely. ``nodes="phrases"``
leaves the single words out, ``include_root=False`` the root, for comparison.

SST-2 rows (lower-cased, punctuation stripped) are matched to trees by normalised text
(:func:`normalize_text`); a typical negative sentence has a low positive fraction, a typical
positive sentence a high one, so memorized (atypical) instances should sit at the other end.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.sst_trees import NEGATIVE_LABELS, POSITIVE_LABELS, Node, normalize_text, parse_tree, tree_sentence
from .ranking import rank_by_memorization, top_count

def phrase_counts(tree: Node, nodes: str = "all", include_root: bool = True) -> tuple[int, int]:
    """``(n_pos, n_neg)``: nodes labelled 3-4 and 0-1. ``nodes`` is "all" or "phrases" (no words)."""
    if nodes not in ("all", "phrases"):
        raise ValueError(f"nodes must be 'all' or 'phrases', got {nodes!r}")
    n_pos = n_neg = 0
    for node in tree.iter_nodes():
        if node is tree and not include_root:
            continue
        if nodes == "phrases" and node.is_leaf:
            continue
        if node.label in POSITIVE_LABELS:
            n_pos += 1
        elif node.label in NEGATIVE_LABELS:
            n_neg += 1
    return n_pos, n_neg


def positive_fraction(tree: Node, k: float = 0.01, nodes: str = "all", include_root: bool = True) -> float:
    """Appendix D, Eq. 24: (n_pos + k) / (n_pos + n_neg + 2k) over the tree's labelled nodes.

    Defaults count every node (words and phrases, root included); neutral nodes are left out.
    A sentence with no polar node gets 0.5.
    """
    n_pos, n_neg = phrase_counts(tree, nodes=nodes, include_root=include_root)
    return (n_pos + k) / (n_pos + n_neg + 2 * k)


def match_trees(train_df: pd.DataFrame, trees: Iterable[Node | str], text_column: str = "sentence",
                k: float = 0.01, nodes: str = "all", include_root: bool = True) -> pd.DataFrame:
    """Match SST-2 rows to treebank trees by normalised text.

    ``train_df`` has ``sample_index`` and ``text_column`` (``sentence`` in train.csv, or ``text``);
    ``trees`` are parsed trees or PTB lines. Returns ``sample_index, positive_fraction, matched``
    (NaN fraction where no tree matched). Rows that match no tree exactly are tried once more with
    all spaces removed. A sentence that occurs several times takes its trees in order (the n-th
    row with that text gets the n-th tree with it, the last one once they run out).
    """
    if text_column not in train_df.columns and "text" in train_df.columns:
        text_column = "text"
    by_text: dict[str, list[Node]] = {}
    by_letters: dict[str, list[Node]] = {}
    for tree in trees:
        tree = parse_tree(tree) if isinstance(tree, str) else tree
        key = normalize_text(tree_sentence(tree))
        by_text.setdefault(key, []).append(tree)
        by_letters.setdefault(key.replace(" ", ""), []).append(tree)
    used: dict[tuple[int, str], int] = {}
    fractions, matched = [], []
    for text in train_df[text_column].astype(str):
        key = normalize_text(text)
        # Second chance without word breaks: SST-2's tokenizer split a few words the treebank
        # keeps whole ("gon na" vs "gonna").
        table, key = (by_text, key) if key in by_text else (by_letters, key.replace(" ", ""))
        candidates = table.get(key)
        tree = None
        if candidates:
            # A sentence that occurs several times ("a mess") has one tree per occurrence, in
            # file order: the n-th row takes the n-th tree.
            seen = used.get((id(table), key), 0)
            used[(id(table), key)] = seen + 1
            tree = candidates[min(seen, len(candidates) - 1)]
        matched.append(tree is not None)
        fractions.append(positive_fraction(tree, k, nodes, include_root) if tree is not None else math.nan)
    return pd.DataFrame({"sample_index": train_df["sample_index"].to_numpy(),
                         "positive_fraction": np.asarray(fractions, dtype=float),
                         "matched": np.asarray(matched, dtype=bool)})


def _ordered_by_memorization(df: pd.DataFrame) -> pd.DataFrame:
    """Most memorized first: by ``rank`` when present, else the default score desc; ties by sample_index."""
    if "rank" in df.columns:
        return rank_by_memorization(df, "rank", ascending=True)
    return rank_by_memorization(df)


def split_groups(scores_df: pd.DataFrame, fractions_df: pd.DataFrame, top_pct: float = 10
                 ) -> dict[tuple[str, int], pd.DataFrame]:
    """``{(group, label): rows}`` with group in top-X%, all, bottom-X%, taken within each class.

    Only rows with a matched tree take part; top/bottom are by memorization within the class.
    """
    merged = scores_df.merge(fractions_df[["sample_index", "positive_fraction"]], on="sample_index",
                             how="inner")
    merged = merged[merged["positive_fraction"].notna()]
    out: dict[tuple[str, int], pd.DataFrame] = {}
    tag = f"{top_pct:g}%"
    for label in sorted(merged["label"].unique()):
        rows = _ordered_by_memorization(merged[merged["label"] == label])
        m = top_count(len(rows), top_pct, at_least_one=True)
        out[(f"top-{tag}", int(label))] = rows.head(m)
        out[("all", int(label))] = rows
        out[(f"bottom-{tag}", int(label))] = rows.tail(m)
    return out


def typicality_table(scores_df: pd.DataFrame, fractions_df: pd.DataFrame, top_pct: float = 10,
                     class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Paper Table 1: mean positive fraction (%) of the top-X% / all / bottom-X% memorized, per class.

    Columns ``group, label, class_name, n, positive_fraction_pct``; rows ordered class by class,
    top, all, bottom. Instances without a matched tree are left out.
    """
    names = list(class_names) if class_names is not None else ["negative", "positive"]
    rows = []
    for (group, label), part in split_groups(scores_df, fractions_df, top_pct).items():
        rows.append({"group": group, "label": label,
                     "class_name": names[label] if 0 <= label < len(names) else str(label),
                     "n": len(part),
                     "positive_fraction_pct": 100.0 * float(part["positive_fraction"].mean())})
    return pd.DataFrame(rows, columns=["group", "label", "class_name", "n", "positive_fraction_pct"])
