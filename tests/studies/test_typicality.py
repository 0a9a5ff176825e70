"""Typicality study (paper Table 1, Appendix D): tree parser, sentence normalisation, positive
fraction (Eq. 24) checked against hand counts, matching, the table and its figure."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.report.study_figures import plot_typicality_histograms
from memlab.studies.ranking import load_scores
from memlab.data.sst_trees import Node, normalize_text, parse_tree, read_trees, tree_sentence
from memlab.studies.typicality import match_trees, phrase_counts, positive_fraction, typicality_table

# Nodes: root 3 (+), (1 Not bad) -, (2 Not) 0, (1 bad) -, (4 ...) +, (2 a) 0, (4 great film) +,
# (3 great) +, (2 film\/movie) 0  ->  4 positive, 2 negative; phrases only: 3 positive, 1 negative.
TREE = r"(3 (1 (2 Not) (1 bad)) (4 (2 a) (4 (3 great) (2 film\/movie))))"
QUOTED = "(3 (2 The) (3 (2 (2 21st) (2 (2 Century) (2 's))) (3 (2 ``) (3 (2 -LRB-) (3 (2 Conan) (2 -RRB-))))))"


def test_parse_tree_structure_and_words():
    tree = parse_tree(TREE)
    assert tree.label == 3 and len(tree.children) == 2
    assert tree.children[0] == Node(1, (Node(2, word="Not"), Node(1, word="bad")))
    assert tree.words() == ["Not", "bad", "a", "great", r"film\/movie"]
    assert sum(1 for _ in tree.iter_nodes()) == 9


def test_tree_sentence_undoes_ptb_escapes():
    assert tree_sentence(parse_tree(TREE)) == "Not bad a great film/movie"
    assert tree_sentence(parse_tree(QUOTED)) == "The 21st Century 's \" ( Conan )"
    # SST writes "2 1/2" as one pre-terminal with two tokens.
    assert tree_sentence(parse_tree(r"(2 (2 2 1\/2) (2 stars))")) == "2 1/2 stars"


def test_normalize_text_matches_the_sst2_csv_form():
    assert normalize_text(tree_sentence(parse_tree(QUOTED))) == "the 21st century s conan"
    assert normalize_text("It 's not -LRB- quite -RRB- a co-writer\\/director 's `` film '' .") == \
        "it s not quite a co writer director s film"
    assert normalize_text("Bon Appétit , n't") == "bon appétit n t"


def test_deep_tree_parses_without_recursion():
    depth = 5000
    tree = parse_tree("(2 " * depth + "(4 deep)" + ")" * depth)
    assert tree.words() == ["deep"]
    assert phrase_counts(tree) == (1, 0)


@pytest.mark.parametrize("bad", ["", "(3 (2 a)", "(3 (2 a)))", "(x (2 a))", "(3 (2 a)) (2 b)",
                                 "(3 (2 a) word)", "(3 )"])
def test_malformed_trees_raise(bad):
    with pytest.raises(ValueError):
        parse_tree(bad)


def test_positive_fraction_by_hand():
    tree = parse_tree(TREE)
    assert phrase_counts(tree) == (4, 2)
    assert positive_fraction(tree) == pytest.approx((4 + 0.01) / (4 + 2 + 0.02))
    assert positive_fraction(tree, nodes="phrases") == pytest.approx((3 + 0.01) / (3 + 1 + 0.02))
    assert positive_fraction(tree, include_root=False) == pytest.approx((3 + 0.01) / (3 + 2 + 0.02))
    assert positive_fraction(tree, k=1.0) == pytest.approx(5 / 8)
    # Neutral only: the smoothing gives one half; no negative node: close to one.
    assert positive_fraction(parse_tree("(2 (2 a) (2 b))")) == pytest.approx(0.5)
    assert positive_fraction(parse_tree("(4 (3 good) (2 b))")) == pytest.approx(2.01 / 2.02)


def test_match_trees_by_normalised_text_in_order_and_with_fallback():
    trees = [parse_tree("(1 (2 A) (1 mess))"), TREE, parse_tree("(4 (2 A) (2 mess))"),
             "(3 (2 You) (3 (2 're) (3 (2 gonna) (3 like))))"]
    train = pd.DataFrame({"label": [1, 0, 0, 1, 0],
                          "sentence": ["not bad a great film movie", "a mess", "a mess",
                                       "you re gon na like", "nowhere in the treebank"],
                          "sample_index": [10, 11, 12, 13, 14]})
    out = match_trees(train, trees)
    assert list(out.columns) == ["sample_index", "positive_fraction", "matched"]
    assert out["sample_index"].tolist() == [10, 11, 12, 13, 14]
    assert out["matched"].tolist() == [True, True, True, True, False]
    expected = [4.01 / 6.02, 0.01 / 2.02, 1.01 / 1.02, 4.01 / 4.02]
    assert out["positive_fraction"].iloc[:4].to_numpy() == pytest.approx(expected)
    assert np.isnan(out["positive_fraction"].iloc[4])


def test_typicality_table_groups_within_each_class():
    rng = np.random.default_rng(0)
    n = 20
    labels = np.array([0] * n + [1] * n)
    mem = rng.permutation(np.arange(2 * n, dtype=float))
    scores = pd.DataFrame({"sample_index": np.arange(2 * n), "label": labels, "mem_score": mem})
    scores["rank"] = scores["mem_score"].rank(ascending=False).astype(int)
    fractions = pd.DataFrame({"sample_index": np.arange(2 * n), "positive_fraction": rng.random(2 * n),
                              "matched": True})
    fractions.loc[5, ["positive_fraction", "matched"]] = [np.nan, False]  # unmatched: left out
    table = typicality_table(scores, fractions, top_pct=10)
    assert table["group"].tolist() == ["top-10%", "all", "bottom-10%"] * 2
    assert table["label"].tolist() == [0, 0, 0, 1, 1, 1]
    merged = scores.merge(fractions, on="sample_index").dropna()
    for label in (0, 1):
        part = merged[merged["label"] == label].sort_values("mem_score", ascending=False)
        m = round(len(part) * 0.1)
        got = table[table["label"] == label].set_index("group")["positive_fraction_pct"]
        assert got["top-10%"] == pytest.approx(100 * part["positive_fraction"].head(m).mean())
        assert got["all"] == pytest.approx(100 * part["positive_fraction"].mean())
        assert got["bottom-10%"] == pytest.approx(100 * part["positive_fraction"].tail(m).mean())
    assert table.set_index(["group", "label"]).loc[("all", 0), "n"] == n - 1


def test_histograms_written_atomically(tmp_path):
    rng = np.random.default_rng(1)
    scores = pd.DataFrame({"sample_index": np.arange(60), "label": np.repeat([0, 1], 30),
                           "mem_score": rng.random(60)})
    fractions = pd.DataFrame({"sample_index": np.arange(60), "positive_fraction": rng.random(60)})
    path = plot_typicality_histograms(scores, fractions, tmp_path / "fig" / "typicality.png")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "fig") == ["typicality.png"]  # no temp file left behind


SHARED = Path(__file__).resolve().parents[3] / "shared"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data/sst2/trees/train.txt").exists(), reason="no shared data")
def test_real_sst2_reproduces_table_1():
    trees = read_trees(SHARED / "data/sst2/trees/train.txt")
    train = pd.read_csv(SHARED / "data/sst2/train.csv")
    fractions = match_trees(train, trees)
    assert fractions["matched"].mean() >= 0.95
    scores = load_scores(SHARED / "reference/sst2_scores_seed42.jsonl")
    table = typicality_table(scores, fractions)
    assert table["positive_fraction_pct"].round(2).tolist() == pytest.approx(
        [35.80, 23.24, 14.92, 74.00, 86.39, 94.52], abs=0.02)
