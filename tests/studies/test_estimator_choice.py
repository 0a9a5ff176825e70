"""Which estimator: the verdict from hand-made intervals (paired, own intervals only, none), the cheapest
tied one recommended, the choice across data sets, and the leaders' disagreements against a by-hand rank."""
import numpy as np
import pandas as pd

from memlab.studies.estimator_choice import Verdict, leader_disagreements, overall_choice, verdict

NAN = float("nan")


def _table(**columns) -> pd.DataFrame:
    base = {"score": ["a", "b", "c", "d"], "spearman": [0.50, 0.62, 0.60, 0.20],
            "spearman_ci_low": [0.45, 0.58, 0.55, 0.10], "spearman_ci_high": [0.55, 0.66, 0.65, 0.30],
            "diff_ci_low": [-0.2, 0.0, -0.05, -0.5], "diff_ci_high": [-0.05, 0.0, 0.01, -0.3],
            "cost": [0.1, 5.0, 2.0, 0.0], "ratio": [0.5, 0.62, 0.6, 0.2]}
    base.update(columns)
    return pd.DataFrame(base)


def test_the_paired_intervals_decide_who_is_tied_and_the_cheapest_tied_one_is_recommended():
    v = verdict(_table())
    assert v == Verdict("b", ("c",), ("a", "d"), "c", "paired")
    assert v.top == ("b", "c")
    # a costs nothing extra but is clearly worse: never recommended; without costs the leader is
    assert verdict(_table(cost=[NAN] * 4)).recommended == "b"


def test_without_paired_differences_the_own_intervals_are_compared():
    v = verdict(_table(diff_ci_low=[NAN] * 4, diff_ci_high=[NAN] * 4))
    assert v.basis == "overlap" and v.tied == ("c",) and v.worse == ("a", "d")  # a's 0.55 < b's 0.58
    none = verdict(_table(diff_ci_high=[NAN] * 4, spearman_ci_low=[NAN] * 4, spearman_ci_high=[NAN] * 4))
    assert none == Verdict("b", (), (), "b", "none")
    assert verdict(_table(spearman=[NAN] * 4)).leader is None
    partial = verdict(_table(diff_ci_high=[-0.05, 0.0, NAN, -0.3]))  # c has no paired difference: neither
    assert partial.basis == "paired" and partial.tied == () and partial.worse == ("a", "d")


def test_the_estimator_to_use_is_top_on_most_data_sets_then_cheapest():
    second = _table(spearman=[0.70, 0.68, 0.30, 0.69], diff_ci_high=[0.0, 0.02, -0.3, 0.01],
                    cost=[0.1, 5.0, 2.0, NAN])
    results = {name: (t, verdict(t)) for name, t in (("x", _table()), ("y", second))}
    assert results["y"][1].top == ("a", "d", "b")
    choice = overall_choice(results)
    assert choice["name"] == "b" and choice["top_on"] == ["x", "y"]  # b is top on both; c and a on one
    assert choice["costs"] == {"x": 5.0, "y": 5.0} and choice["always_worse"] == []
    alone = overall_choice({"x": results["x"]})
    assert alone["name"] == "c" and alone["always_worse"] == ["a", "d"]  # b and c top: c is cheaper


def test_the_leaders_disagree_most_where_their_rank_percentiles_differ_most():
    rng = np.random.default_rng(0)
    n = 50
    first = rng.normal(size=n)
    second = first.copy()
    second[[7, 30]] = [first.max() + 1, first.min() - 1]  # 7 jumps to the top, 30 to the bottom
    scores = pd.DataFrame({"sample_index": np.arange(n) + 100, "one": first, "two": second,
                           "fz_mem": rng.normal(size=n), "label": rng.integers(0, 2, n), "text": [f"t{i}" for i in range(n)]})
    rows = leader_disagreements(scores, "one", "two", n=2)
    pct = lambda x, i: 100 * (np.sum(x < x[i]) + 1) / n  # noqa: E731  (no ties: the rank's percentile)
    gaps = {i: abs(pct(first, i) - pct(second, i)) for i in (7, 30)}
    order = sorted(gaps, key=lambda i: -gaps[i])
    assert rows["sample_index"].tolist() == [100 + i for i in order]
    assert rows["pct_one"].tolist() == [pct(first, i) for i in order]
    assert rows["text"].tolist() == [f"t{i}" for i in order] and list(rows.columns[-3:]) == ["fz_mem", "label", "text"]


def test_the_disagreement_pair_is_the_best_of_two_kinds_of_estimator():
    """Two dampings of one score mostly agree: the pair shown is the leader and the best of another family."""
    from memlab.studies.estimator_choice import estimator_family, leading_rivals

    ranked = ["loo_score@damping_rel=0.001", "loo_score@damping_rel=0.1", "mem_score@damping_rel=10",
              "trak@M=5", "loss"]
    assert leading_rivals(ranked) == ("loo_score@damping_rel=0.001", "trak@M=5")
    assert estimator_family("trak_loo@M=5") == estimator_family("trak") == "trak"
    assert estimator_family("1-P(y|x)") == "loss"
    assert leading_rivals(["trak", "trak_loo@M=5"]) is None
