"""Attribution outputs of a run (text and image), on generated data in-process."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from memlab.tasks.runner import run


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
    # completeness (Eq. 5): the path integral's sum explains M_replace, which is computed directly. With 8
    # left-Riemann steps the sums are off by a small offset (a few % of the largest score; a median 3%);
    # attributions of another instance, path, baseline or solver are off by far more
    gaps = [abs(sum(r["attributions"]) - r["replace_score"]) for r in records]
    scale = max(abs(r["replace_score"]) for r in records)
    assert max(gaps) <= 0.1 * scale
    assert sorted(g / abs(r["replace_score"]) for g, r in zip(gaps, records))[len(gaps) // 2] <= 0.15
    assert "loo_score" in scores  # the default solver adds the own term; attributions explain the solver's score
    by_index = scores.set_index("sample_index")
    for r in records:  # each record carries its own instance's scores from scores.csv
        assert r["mem_score"] == pytest.approx(by_index.loc[r["sample_index"], "mem_score"], rel=1e-9)
        assert r["loo_score"] == pytest.approx(by_index.loc[r["sample_index"], "loo_score"], rel=1e-9)
        assert r["mem_score"] < r["loo_score"]
    html = (mem / "attributions.html").read_text()
    word = next(t for t in records[0]["tokens"] if not t.startswith("["))
    assert word in html and "rgba(" in html
    rates = pd.read_csv(mem / "reduction_rate.csv")
    assert list(rates.columns) == ["k_percent", "method", "reduction_rate"]
    assert sorted(set(rates["k_percent"])) == list(range(10, 100, 10)) and set(rates["method"]) == {"attribution", "random"}
    assert (mem / "reduction_rate.png").stat().st_size > 1000
    assert metrics["attribution/instances"] == len(records)


def test_image_attribution_grid(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("experiment=smoke_image"))
    mem = tmp_path / "memorization"
    records = read_jsonl(mem / "attributions.jsonl")
    assert records and all(len(r["attributions"]) == 7 and len(r["attributions"][0]) == 7 for r in records)
    assert (mem / "attributions.png").stat().st_size > 1000
    assert len(pd.read_csv(mem / "scores.csv")) == 64
    # the reduction rate (Eq. 6, Fig. 2) over grid cells, as for text
    rates = pd.read_csv(mem / "reduction_rate.csv")
    assert list(rates.columns) == ["k_percent", "method", "reduction_rate"]
    assert sorted(set(rates["k_percent"])) == list(range(10, 100, 10)) and set(rates["method"]) == {"attribution", "random"}
    assert len(rates) == 18 and rates["reduction_rate"].notna().all()
    assert (mem / "reduction_rate.png").stat().st_size > 1000
    by = rates.set_index(["method", "k_percent"])["reduction_rate"]
    for method in ("attribution", "random"):
        for k in range(10, 100, 10):
            assert metrics[f"reduction_rate/{method}_{k}"] == pytest.approx(by[(method, k)], rel=1e-9)


def tiny_text_attribution_setup():
    """(data module, net, suffix, θ, objective, identity solver) of an untrained tiny BERT on toy text."""
    from memlab.callbacks.prefix_cache import apply_prefix_cache
    from memlab.data.text import TextDataModule
    from memlab.influence.functional import TrainingObjective, trainable_params
    from memlab.influence.solver import make_solver
    from memlab.model.text_network import build_text_classifier

    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated", batch_size=8)
    dm.setup()
    net = build_text_classifier("tiny-random", 2, freeze_layers=4).eval()
    apply_prefix_cache(dm, net, "tiny", None)
    module, objective = net.suffix, TrainingObjective()
    params = trainable_params(module)
    return dm, net, module, params, objective, make_solver("identity", damping=1.0).fit(module, params, [], objective)


def test_embedding_placement_is_complete_with_many_steps(tmp_path):
    """At the word embeddings the path runs through the frozen layers too; Σ attributions -> M_replace."""
    import torch

    from memlab.pipeline.attributing import attribute_text

    dm, net, module, params, objective, solver = tiny_text_attribution_setup()
    examples = dm.splits["train"].examples[:3]
    for placement in ("layer", "embeddings"):
        records = attribute_text(net, module, params, solver, objective, examples, dm.tokenizer, steps=64,
                                 rule="gauss_legendre", placement=placement, progress=False)
        for r in records:
            assert len(r["attributions"]) == len(r["tokens"])
            assert abs(r["attribution_total"] - r["replace_score"]) <= 1e-3 * max(1e-6, abs(r["replace_score"]))
    # the replace score does not depend on where the path is taken, the attributions do
    layer = attribute_text(net, module, params, solver, objective, examples[:1], dm.tokenizer, steps=8, progress=False)
    emb = attribute_text(net, module, params, solver, objective, examples[:1], dm.tokenizer, steps=8,
                         placement="embeddings", progress=False)
    assert abs(layer[0]["replace_score"] - emb[0]["replace_score"]) < 1e-5
    assert not torch.allclose(torch.tensor(layer[0]["attributions"]), torch.tensor(emb[0]["attributions"]))


def test_grouped_attribution_equals_one_at_a_time():
    """Grouping instances of different lengths (padding, vmapped) changes nothing but speed; order kept."""
    import torch

    from memlab.pipeline.attributing import attribute_text

    dm, net, module, params, objective, solver = tiny_text_attribution_setup()
    examples = dm.splits["train"].examples[:5]
    assert len({len(e["input_ids"]) for e in examples}) > 1  # the group really pads
    single = attribute_text(net, module, params, solver, objective, examples, dm.tokenizer, steps=6, progress=False)
    grouped = attribute_text(net, module, params, solver, objective, examples, dm.tokenizer, steps=6, progress=False,
                             group_size=3)
    assert [r["sample_index"] for r in grouped] == [int(e["sample_index"]) for e in examples]
    for a, b in zip(single, grouped):
        assert a["tokens"] == b["tokens"]
        assert torch.allclose(torch.tensor(a["attributions"]), torch.tensor(b["attributions"]), rtol=1e-4, atol=1e-7)
        assert abs(a["replace_score"] - b["replace_score"]) <= 1e-4 * abs(a["replace_score"]) + 1e-9


def test_attribution_finds_the_scoring_callback_by_type_and_order(tmp_path):
    from types import SimpleNamespace

    from memlab.callbacks.attributing import AttributionCallback
    from memlab.callbacks.scoring import ScoringCallback, TrainingSetScores, find_scoring_callback
    from memlab.errors import ConfigError

    scorer = ScoringCallback(solver={"name": "identity"}, output_dir=str(tmp_path))
    attribution = AttributionCallback(output_dir=str(tmp_path))
    assert find_scoring_callback(SimpleNamespace(callbacks=[scorer, attribution]), attribution) is scorer
    with pytest.raises(ConfigError, match="needs the memorization scores"):
        find_scoring_callback(SimpleNamespace(callbacks=[attribution]), attribution)
    with pytest.raises(ConfigError, match="runs before the scoring callback"):
        attribution.setup(SimpleNamespace(callbacks=[attribution, scorer]), None, "fit")
    # scoring disabled (no result): attribution has nothing to explain and does nothing
    trainer = SimpleNamespace(callbacks=[scorer, attribution], global_rank=0)
    attribution.setup(trainer, None, "fit")
    attribution.on_fit_end(trainer, None)
    assert not (tmp_path / "attributions.jsonl").exists()
    scorer.result = TrainingSetScores(solver=None)
    assert attribution.scorer.result is scorer.result
