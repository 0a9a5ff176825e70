"""The validation and label-noise experiments end to end on generated data (tiny BERT, in-process),
and the two things they rest on: every subset model gets its own training seed, and label noise
reaches the training labels."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.tasks.runner import run

VALIDATION_COLUMNS = ["score", "spearman_vs_fz", "spearman_ci_low", "spearman_ci_high", "spearman_vs_fz_top10", "ceiling", "fz_top10_recovered",
                      "recovered_vs_loss", "ci_low", "ci_high", "seconds", "cost_epochs"]
LABEL_NOISE_COLUMNS = ["score", "auroc", "average_precision", "precision_at_noise", "seconds", "cost_epochs"]
DYNAMICS = ["forgetting", "aum", "el2n@epoch1", "learning_time", "1-cum_correct", "mean_train_loss"]
CANDIDATES = ["loss", "1-P(y|x)", "grad_norm"] + [f"{s}@damping_rel={r}" for r in ("0.001", "0.1", "10")
                                                   for s in ("mem_score", "loo_score")] \
    + ["mem_score@study(damping=50+L2)", "tracin"] + DYNAMICS + ["trak", "trak_loo", "trak@M=2", "trak_loo@M=2"]


def _first_epoch_order(datamodule) -> list[int]:
    datamodule.setup()
    return [int(i) for b in datamodule.train_dataloader() for i in b["sample_index"]]


def test_each_subset_model_gets_its_own_training_seed(tiny_cfg):
    from memlab.jobs.subset_training import train_on_subset, with_training_seed
    from memlab.jobs.training import build

    cfg = tiny_cfg("experiment=smoke_validate", "trainer.max_epochs=1")  # resolved, as the tasks see it
    built = {}
    for seed in (0, 1):
        job = with_training_seed(cfg, seed)
        assert job.seed == job.data.shuffle_seed == job.model.net.seed == seed
        assert not job.logger and "tracin" not in job.callbacks
        dm, model, _ = build(job)
        built[seed] = (_first_epoch_order(dm), model.net.suffix.classifier.weight.detach().clone(),
                       torch.random.get_rng_state())  # the global RNG after build draws the dropout masks
    (order0, head0, rng0), (order1, head1, rng1) = built[0], built[1]
    assert order0 != order1 and sorted(order0) == sorted(order1)   # shuffling
    assert not torch.equal(head0, head1)                           # head initialisation
    assert not torch.equal(rng0, rng1)                             # dropout
    first, _, _, _ = train_on_subset(cfg, 0)
    again, _, _, _ = train_on_subset(cfg, 0)
    other, _, _, _ = train_on_subset(cfg, 1)
    np.testing.assert_array_equal(first.probs, again.probs)       # a seed is reproducible ...
    assert np.abs(first.probs - other.probs).max() > 1e-3          # ... and another seed is another model


def test_predictions_on_the_training_split_equal_the_plain_forward(tiny_cfg):
    """The fast prediction pass (length order, [CLS]-only last layer) against the full network's
    eval forward in the data module's order, excluded instances included."""
    from memlab.jobs.subset_training import train_on_subset

    cfg = tiny_cfg("experiment=smoke_validate", "trainer.max_epochs=1")
    predictions, model, _, dm = train_on_subset(cfg, 0, exclude=range(0, 96, 3))
    model.eval()
    with torch.no_grad():
        plain = torch.cat([model(b).double().softmax(-1) for b in dm.loader(dm.full_train, False, 7)]).numpy()
    assert predictions.sample_index.tolist() == dm.full_train.sample_indices() and len(plain) == 96
    np.testing.assert_allclose(predictions.probs, plain, rtol=0, atol=1e-6)
    assert np.ptp(plain[:, 0]) > 1e-4  # the model is not constant: the order is tested


def test_label_noise_reaches_the_training_labels(tiny_cfg):
    import hydra

    cfg = tiny_cfg("experiment=smoke_label_noise", "noise.fraction=0.25")
    noisy, clean = hydra.utils.instantiate(cfg.data), hydra.utils.instantiate(cfg.data, label_noise=0.0)
    noisy.setup(), clean.setup()
    labels = {name: {e["sample_index"]: int(e["labels"]) for e in dm.full_train.examples}
              for name, dm in (("noisy", noisy), ("clean", clean))}
    changed = sorted(i for i in labels["clean"] if labels["clean"][i] != labels["noisy"][i])
    assert len(changed) == 24 and changed == sorted(noisy.label_flips["sample_index"])  # round(0.25 * 96)
    assert clean.label_flips is None
    for split in ("val", "test"):  # only training labels are flipped
        assert [int(e["labels"]) for e in noisy.splits[split].examples] == \
            [int(e["labels"]) for e in clean.splits[split].examples]


def test_validate_experiment_writes_its_table(tiny_cfg, tmp_path):
    cfg = tiny_cfg("experiment=smoke_validate")
    metrics = run(cfg)
    table = pd.read_csv(tmp_path / "validation.csv")
    assert list(table.columns) == VALIDATION_COLUMNS and table["score"].tolist() == CANDIDATES
    rho = table.set_index("score")[["spearman_vs_fz", "spearman_vs_fz_top10"]]
    assert np.isfinite(rho["spearman_vs_fz"]).all() and (rho.abs().fillna(0) <= 1).all().all()  # no score is constant
    # within a score's own top 10% (10 instances after 2 epochs) a count can be constant: NaN, not an error
    counts = ["forgetting", "learning_time", "1-cum_correct"]
    assert np.isfinite(rho.drop(index=counts)["spearman_vs_fz_top10"]).all()
    cost = table.set_index("score")[["seconds", "cost_epochs"]]
    assert np.isfinite(cost.to_numpy()).all() and (cost.to_numpy() > 0).all()
    epoch = json.loads(next((tmp_path / "cache" / "candidates").glob("*/seconds.json")).read_text())["epoch"]
    np.testing.assert_allclose(cost["cost_epochs"], cost["seconds"] / epoch)
    assert cost.loc[DYNAMICS, "seconds"].nunique() == 1  # one recording callback for all six
    assert metrics["validate/forgetting/cost_epochs"] == pytest.approx(cost.loc["forgetting", "cost_epochs"])
    assert (table["spearman_ci_low"] <= table["spearman_ci_high"]).all() and table["spearman_ci_high"].le(1).all()
    intervals = pd.read_csv(tmp_path / "spearman_intervals.csv").set_index("score")
    assert intervals.loc[CANDIDATES, "spearman"].to_numpy() == pytest.approx(table["spearman_vs_fz"].to_numpy())
    assert table["ceiling"].tolist() == pytest.approx([np.sqrt(max(metrics["fz_reliability"], 0))] * len(table))
    fz = pd.read_csv(tmp_path / "fz_scores.csv")
    assert len(fz) == 96 and (fz["n_in"] + fz["n_out"] == 4).all()
    by_models = pd.read_csv(tmp_path / "fz_reliability.csv")  # 4 models: the full reference only
    assert by_models["models"].tolist() == [4] and by_models["reliability"].iloc[0] == pytest.approx(metrics["fz_reliability"])
    assert (tmp_path / "fz_reliability.png").stat().st_size > 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert scores["tracin"].gt(0).all() and scores["loss"].gt(0).all()
    for figure in ("validation.png", "validation_by_percentile.png"):
        assert (tmp_path / figure).stat().st_size > 1000
    trak = scores[["trak", "trak_loo", "trak@M=2", "trak_loo@M=2"]].to_numpy()
    assert np.isfinite(trak).all() and (trak >= 0).all() and (scores["trak_loo"] >= scores["trak"]).all()
    ablation = pd.read_csv(tmp_path / "trak_ablation.csv")  # smoke_validate: proj_dims [16, 64] × 2 dampings
    assert ablation[["proj_dim", "damping_rel"]].values.tolist() == [[16, 1e-3], [16, 0.1], [64, 1e-3], [64, 0.1]]
    assert np.isfinite(ablation["spearman_vs_fz"]).all()
    # the grid's (64, 1e-3) point is the main M = 1 column (proj_dim 64, damping_rel 1e-3)
    assert metrics["validate/trak_ablation/proj_dim=64,damping_rel=0.001"] == pytest.approx(metrics["validate/trak"])
    cached = [f for pattern in ("*.npz", "candidates.csv", "ablation_*.csv")
              for f in sorted((tmp_path / "cache").rglob(pattern))]
    # FZ models, the scored model's predictions and training dynamics, TRAK's two models, the candidates,
    # TRAK's ablation
    assert len(cached) == 4 + 1 + 1 + 2 + 1 + 1
    stamps = [f.stat().st_mtime_ns for f in cached]
    run(cfg)  # a second run trains nothing
    assert [f.stat().st_mtime_ns for f in cached] == stamps
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "validation.csv"), table)


def test_label_noise_experiment_writes_its_table(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("experiment=smoke_label_noise"))
    flips = pd.read_csv(tmp_path / "flipped_labels.csv")
    assert len(flips) == 10 and metrics["noise/flipped"] == 10  # round(0.1 * 96)
    table = pd.read_csv(tmp_path / "label_noise.csv")
    assert list(table.columns) == LABEL_NOISE_COLUMNS
    assert sorted(table["score"]) == sorted(CANDIDATES + ["cleanlab_cv5", "cleanlab_in_sample"])
    assert table["auroc"].between(0, 1).all() and table["auroc"].is_monotonic_decreasing
    assert np.isfinite(table["cost_epochs"]).all() and (table["cost_epochs"] > 0).all()
    seconds = table.set_index("score")["seconds"]
    assert (seconds > 0).all() and seconds["cleanlab_cv5"] > seconds["mem_score@damping_rel=0.1"] > seconds["loss"]
    assert len(list((tmp_path / "cache" / "cleanlab").rglob("fold-*.npz"))) == 5
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert set(scores.loc[scores["flipped"], "sample_index"]) == set(flips["sample_index"])
    assert (tmp_path / "label_noise_pr.png").stat().st_size > 1000
    assert json.loads((tmp_path / "metrics.json").read_text())["label_noise/cleanlab_cv5/auroc"] == \
        pytest.approx(table.set_index("score").loc["cleanlab_cv5", "auroc"])
