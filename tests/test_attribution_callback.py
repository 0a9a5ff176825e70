"""Attribution outputs of a run (text and image), on generated data in-process."""
from __future__ import annotations

import json

import pandas as pd

from memlab.train import run


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_text_attribution_outputs(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("experiment=smoke_attribution"))
    mem = tmp_path / "memorization"
    records = read_jsonl(mem / "attributions.jsonl")
    scores = pd.read_csv(mem / "scores.csv")
    assert len(records) == round(0.1 * len(scores))  # the top 10%
    top = set(scores.nsmallest(len(records), "rank")["sample_index"])
    assert {r["sample_index"] for r in records} == top
    for r in records:
        assert set(r) >= {"sample_index", "label", "mem_score", "replace_score", "completeness_gap", "tokens",
                          "attributions"}
        assert len(r["tokens"]) == len(r["attributions"]) and r["tokens"][0] == "[CLS]"
        assert abs(sum(r["attributions"]) - r["attribution_total"]) < 1e-3 * max(1, abs(r["attribution_total"]))
    html = (mem / "attributions.html").read_text()
    word = next(t for t in records[0]["tokens"] if not t.startswith("["))
    assert word in html and "rgba(" in html
    rates = pd.read_csv(mem / "reduction_rate.csv")
    assert list(rates.columns) == ["k_percent", "method", "reduction_rate"]
    assert sorted(set(rates["k_percent"])) == list(range(10, 100, 10)) and set(rates["method"]) == {"attribution", "random"}
    assert (mem / "reduction_rate.png").stat().st_size > 1000
    assert metrics["attribution/instances"] == len(records)


def test_image_attribution_grid(tiny_cfg, tmp_path):
    run(tiny_cfg("experiment=smoke_image"))
    mem = tmp_path / "memorization"
    records = read_jsonl(mem / "attributions.jsonl")
    assert records and all(len(r["attributions"]) == 7 and len(r["attributions"][0]) == 7 for r in records)
    assert (mem / "attributions.png").stat().st_size > 1000
    assert len(pd.read_csv(mem / "scores.csv")) == 64
