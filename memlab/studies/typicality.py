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
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from memlab.studies import new_figure, save_figure

NEGATIVE_LABELS = frozenset({0, 1})
POSITIVE_LABELS = frozenset({3, 4})

# PTB escapes -> the characters they stand for (brackets, slashes, stars, quotes).
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
                "``": '"', "''": '"'}
_TOKEN = re.compile(r"\(|\)|[^\s()]+")


@dataclass(frozen=True)
class Node:
    """A labelled tree node: a phrase with ``children`` or a pre-terminal with a ``word``."""

    label: int
    children: tuple["Node", ...] = ()
    word: str | None = None

    @property
    def is_leaf(self) -> bool:
        return self.word is not None

    def iter_nodes(self) -> Iterator["Node"]:
        """Every node, pre-order, without recursion (SST trees can be 50+ levels deep)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def words(self) -> list[str]:
        return [n.word for n in self.iter_nodes() if n.is_leaf]


def parse_tree(line: str) -> Node:
    """Parse one PTB bracketed tree, e.g. ``(3 (2 It) (4 (4 rocks) (2 !)))``, iteratively.

    Words are kept as written (``-LRB-``, ``\\/`` stay escaped; :func:`tree_sentence` undoes them);
    a word of several tokens (SST's ``(2 2 1\\/2)``) is kept with single spaces.
    Raises ``ValueError`` with the position on malformed input.
    """
    tokens = _TOKEN.findall(line)
    if not tokens:
        raise ValueError("empty tree")
    # Each open frame: [label, children list, word or None].
    stack: list[list] = []
    root: Node | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "(":
            if root is not None:
                raise ValueError(f"text after the end of the tree at token {i}: {tokens[i]!r}")
            if i + 1 >= len(tokens) or tokens[i + 1] in "()":
                raise ValueError(f"missing label after '(' at token {i}")
            try:
                label = int(tokens[i + 1])
            except ValueError:
                raise ValueError(f"label {tokens[i + 1]!r} at token {i + 1} is not an integer") from None
            stack.append([label, [], None])
            i += 2
            continue
        if tok == ")":
            if not stack:
                raise ValueError(f"unbalanced ')' at token {i}")
            label, children, word = stack.pop()
            if word is None and not children:
                raise ValueError(f"node with label {label} has neither a word nor children (token {i})")
            node = Node(label, tuple(children), word)
            if stack:
                stack[-1][1].append(node)
            else:
                root = node
            i += 1
            continue
        # A word: only directly inside a pre-terminal. SST has a few words with a space in them,
        # e.g. "(2 2 1\\/2)", so further tokens before the ')' extend the word.
        if not stack or stack[-1][1]:
            raise ValueError(f"unexpected word {tok!r} at token {i}")
        stack[-1][2] = tok if stack[-1][2] is None else f"{stack[-1][2]} {tok}"
        i += 1
    if stack or root is None:
        raise ValueError("unbalanced tree: missing ')'")
    return root


def read_trees(path: str | os.PathLike) -> list[Node]:
    """All trees of a PTB file (one per line, blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        return [parse_tree(line) for line in f if line.strip()]


def _unescape(word: str) -> str:
    word = _PTB_ESCAPES.get(word, word)
    return word.replace("\\/", "/").replace("\\*", "*")


def tree_sentence(tree: Node) -> str:
    """The sentence of a tree: its words, PTB escapes undone, joined by single spaces."""
    return " ".join(_unescape(w) for w in tree.words())


def normalize_text(text: str) -> str:
    """Lower-case, replace every run of non-alphanumeric characters by one space, strip.

    Makes a treebank sentence (``"The 21st Century 's new `` Conan ''"``) equal to its SST-2 CSV
    form (``"the 21st century s new conan"``): quotes, brackets, slashes and hyphens become word
    breaks; accented letters are kept (NFC); the PTB escape words are removed.
    """
    text = unicodedata.normalize("NFC", text)
    for escaped in ("-LRB-", "-RRB-", "-LSB-", "-RSB-", "-LCB-", "-RCB-"):
        text = text.replace(escaped, " ")
    text = text.lower().replace("_", " ")
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


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
    """Most memorized first: by ``rank`` when present, else ``mem_score`` desc; ties by sample_index."""
    if "rank" in df.columns:
        return df.sort_values(["rank", "sample_index"], kind="mergesort")
    return df.sort_values(["mem_score", "sample_index"], ascending=[False, True], kind="mergesort")


def group_size(n: int, pct: float) -> int:
    """How many of ``n`` instances make the top/bottom ``pct`` %: rounded, at least 1 when n > 0."""
    return min(n, max(1 if n else 0, int(round(n * pct / 100.0))))


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
        m = group_size(len(rows), top_pct)
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


def plot_typicality_histograms(scores_df: pd.DataFrame, fractions_df: pd.DataFrame,
                               path: str | os.PathLike, top_pct: float = 10,
                               class_names: Sequence[str] | None = None, bins: int = 20):
    """Fig. 4 with Table 1's groups: one panel per class, the distribution of positive fraction
    over all instances of the class (grey) and over its top-X% (red) and bottom-X% (blue) memorized,
    as densities so the groups compare despite their sizes. Writes a PNG; returns its path."""
    groups = split_groups(scores_df, fractions_df, top_pct)
    labels = sorted({label for _, label in groups})
    names = list(class_names) if class_names is not None else ["negative", "positive"]
    fig, axes = new_figure(1, max(1, len(labels)), figsize=(5.0 * max(1, len(labels)), 3.8))
    edges = np.linspace(0.0, 1.0, bins + 1)
    tag = f"{top_pct:g}%"
    for ax, label in zip(axes[0], labels):
        for group, color, alpha in (("all", "0.6", 0.45), (f"top-{tag}", "tab:red", 0.55),
                                    (f"bottom-{tag}", "tab:blue", 0.55)):
            values = groups[(group, label)]["positive_fraction"].to_numpy()
            ax.hist(values, bins=edges, density=True, color=color, alpha=alpha,
                    label=f"{group} (n={len(values)}, mean {100 * values.mean():.1f}%)")
        name = names[label] if 0 <= label < len(names) else str(label)
        ax.set_title(f"{name} class")
        ax.set_xlabel("positive phrase fraction")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    return save_figure(fig, path)
