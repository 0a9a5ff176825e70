"""Caches keyed by what makes their content and checked on read (issue 13): the frozen-prefix cache
follows the weights, a swapped, truncated or misaligned scoring chunk is recomputed, a cut ranking
is recomputed, a bad feature or full-data entry is recomputed, each after one warning that names
the file; memlab never deletes a folder it did not make; the prefix-cache switch changes no score."""
from __future__ import annotations

import json
import logging
import os
import shutil

import pandas as pd
import pytest
import torch

import memlab.pipeline.scoring as scoring
from conftest import TinyNet
from memlab.errors import ConfigError
from memlab.influence.functional import TrainingObjective, trainable_params


def warnings_naming(caplog, path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(path) in r.getMessage()]


# -- frozen-prefix cache --------------------------------------------------------------------------------
def tiny_text(seed: int):
    from memlab.data.text import TextDataModule
    from memlab.model.text_network import build_text_classifier

    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated", batch_size=8)
    dm.setup()
    return dm, build_text_classifier("tiny-random", 2, freeze_layers=4, seed=seed).eval()


def prefix_states(seed: int, cache_dir):
    from memlab.callbacks.prefix_cache import apply_prefix_cache

    dm, net = tiny_text(seed)
    apply_prefix_cache(dm, net, "tiny", None if cache_dir is None else str(cache_dir))
    return torch.cat([e["hidden"].reshape(-1) for e in dm.full_train.examples])


def test_prefix_cache_follows_the_weights_not_the_name(tmp_path):
    seed0 = prefix_states(0, tmp_path)
    after_seed0 = prefix_states(1, tmp_path)  # same model name, same data, other weights
    fresh = prefix_states(1, None)
    torch.testing.assert_close(after_seed0, fresh, rtol=0, atol=0)
    assert not torch.allclose(seed0, fresh)
    assert len(list((tmp_path / "prefix").glob("*.pt"))) == 6  # 3 splits x 2 weight sets


def test_a_pretrained_folder_is_keyed_by_its_files(tmp_path):
    from memlab.utils.fingerprint import pretrained_fingerprint

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights v1")
    before = pretrained_fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"weights v2")  # same name, same size, other weights
    assert pretrained_fingerprint(str(tmp_path)) != before
    assert pretrained_fingerprint("distilbert-base-uncased") == "distilbert-base-uncased"  # a hub id is its name


def test_bad_prefix_entry_is_recomputed_with_one_warning(tmp_path, caplog):
    expected = prefix_states(0, tmp_path)
    victim = sorted((tmp_path / "prefix").glob("*-train.pt"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a killed copy, a full disk
    with caplog.at_level(logging.WARNING, logger="memlab"):
        again = prefix_states(0, tmp_path)
    torch.testing.assert_close(again, expected, rtol=0, atol=0)
    assert len(warnings_naming(caplog, victim)) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="memlab"):
        prefix_states(0, tmp_path)  # rewritten whole: read without a word
    assert not warnings_naming(caplog, victim)


# -- scoring chunks --------------------------------------------------------------------------------------
def batches(n=40, bs=4, data_seed=1):
    g = torch.Generator().manual_seed(data_seed)
    x, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [{"x": x[i:i + bs], "labels": y[i:i + bs], "sample_index": torch.arange(i, i + bs)} for i in range(0, n, bs)]


def score(out_dir, batches_per_chunk=2, bs=4, data_seed=1):
    module = TinyNet()
    data = batches(bs=bs, data_seed=data_seed)
    return scoring.score_training_set(module, trainable_params(module), TrainingObjective(l2=1e-3), data, data,
                                      {"name": "exact", "damping": 0.01}, out_dir, list(range(40)),
                                      batches_per_chunk=batches_per_chunk, progress=False)


@pytest.mark.parametrize("damage", ["swapped", "truncated"])
def test_bad_chunk_is_recomputed_with_one_warning(tmp_path, caplog, damage):
    fresh, _, _ = score(tmp_path)
    chunks = tmp_path / "chunks"
    victim = chunks / "chunk-00002.pt"
    if damage == "swapped":  # another valid chunk of the same job in its place
        shutil.copy(chunks / "chunk-00001.pt", victim)
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    with caplog.at_level(logging.WARNING, logger="memlab"):
        again, info, _ = score(tmp_path)
    assert len(warnings_naming(caplog, victim)) == 1
    assert info["resumed_chunks"] == 4  # the other four are reused
    pd.testing.assert_frame_equal(again, fresh)
    assert again["sample_index"].tolist() == list(range(40))


def test_other_chunk_layout_does_not_reuse_chunks(tmp_path):
    score(tmp_path, batches_per_chunk=2)
    frame, info, _ = score(tmp_path, batches_per_chunk=3)  # 40 examples: chunks of 12, no longer of 8
    assert info["resumed_chunks"] == 0 and frame["sample_index"].tolist() == list(range(40))
    pd.testing.assert_frame_equal(frame, score(tmp_path / "fresh", batches_per_chunk=3)[0])
    assert sorted(p.name for p in (tmp_path / "chunks").glob("chunk-*.pt")) == [f"chunk-{c:05d}.pt" for c in range(4)]


def test_chunks_of_other_inputs_are_not_reused(tmp_path):
    score(tmp_path)
    frame, info, _ = score(tmp_path, data_seed=2)  # same weights and sample indices, other inputs
    assert info["resumed_chunks"] == 0
    pd.testing.assert_frame_equal(frame, score(tmp_path / "fresh", data_seed=2)[0])


def test_a_chunks_folder_memlab_did_not_make_is_left_alone(tmp_path):
    mine = tmp_path / "chunks" / "important.txt"
    mine.parent.mkdir()
    mine.write_text("the user's")
    with pytest.raises(ConfigError, match="memlab did not write.*important.txt"):
        score(tmp_path)
    assert mine.read_text() == "the user's" and sorted(os.listdir(mine.parent)) == ["important.txt"]


def test_memlab_deletes_only_its_own_chunks(tmp_path):
    score(tmp_path, batches_per_chunk=2)
    keep = tmp_path / "chunks" / "notes.txt"
    keep.write_text("kept")
    score(tmp_path, batches_per_chunk=5)  # another layout: the old chunks go, nothing else
    assert keep.read_text() == "kept"
    assert sorted(p.name for p in keep.parent.glob("chunk-*.pt")) == ["chunk-00000.pt", "chunk-00001.pt"]


# -- ranking, full-data and feature caches ----------------------------------------------------------------
def test_cut_ranking_is_recomputed(tiny_cfg, caplog):
    from memlab.jobs.ranking_cache import load_or_compute_ranking

    cfg = tiny_cfg("removal=default", "solver=identity", "trainer.max_epochs=1")
    scores, scores_file = load_or_compute_ranking(cfg)
    assert len(scores) == 96
    scores.head(48).to_csv(scores_file, index=False)  # half the rows: a 30% removal would drop 14, not 29
    with caplog.at_level(logging.WARNING, logger="memlab"):
        again, _ = load_or_compute_ranking(cfg)
    assert len(warnings_naming(caplog, scores_file)) == 1
    pd.testing.assert_frame_equal(again, scores)


def test_ranking_key_holds_the_scoring_settings(tiny_cfg):
    from memlab.jobs.ranking_cache import ranking_key

    base = ranking_key(tiny_cfg("removal=default", "callbacks=memorization"))
    for override in ("callbacks.memorization.batch_size=8", "callbacks.memorization.batches_per_chunk=4",
                     "solver.own_term=false", "solver=identity", "trainer.gradient_clip_val=1.0"):
        assert ranking_key(tiny_cfg("removal=default", "callbacks=memorization", override)) != base, override
    assert ranking_key(tiny_cfg("removal=default", "callbacks=memorization", "seed=3")) == base  # not a ranking input


def test_bad_stored_removal_result_is_not_used(tiny_cfg, caplog):
    from memlab.jobs import removal_results

    for pct in ("0", "30"):
        cfg = tiny_cfg("removal=default", f"removal.pct={pct}")
        removal_results.store_result(cfg, {"test/acc": 0.75})
        assert removal_results.stored_result(cfg)["metrics"] == {"test/acc": 0.75}
        file = removal_results.result_file(cfg)
        file.write_text(json.dumps({"test/acc": 0.99}))  # no key: not provably this configuration's
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="memlab"):
            assert removal_results.stored_result(cfg) is None
        assert len(warnings_naming(caplog, file)) == 1


def test_removal_result_key_holds_what_determines_the_job(tiny_cfg):
    from memlab.jobs.removal_results import job_key

    base = job_key(tiny_cfg("removal=default", "removal.pct=30", "removal.strategy=random"))
    for override in ("removal.strategy=top", "removal.pct=10", "seed=1", "removal.draw_seed=1", "removal.ranking_seed=1",
                     "removal.score=loss", "trainer.max_epochs=7", "model.lr=0.02", "solver=identity"):
        assert job_key(tiny_cfg("removal=default", "removal.pct=30", "removal.strategy=random", override)) != base, override
    # a top removal does not depend on the draw seed; X = 0 on neither strategy, solver nor score
    top = job_key(tiny_cfg("removal=default", "removal.pct=30", "removal.strategy=top"))
    assert job_key(tiny_cfg("removal=default", "removal.pct=30", "removal.strategy=top", "removal.draw_seed=2")) == top
    full = job_key(tiny_cfg("removal=default", "removal.pct=0", "removal.strategy=top"))
    for override in ("removal.strategy=random", "solver=identity", "removal.score=loss"):
        assert job_key(tiny_cfg("removal=default", "removal.pct=0", override)) == full, override
    assert job_key(tiny_cfg("removal=default", "removal.pct=0", "trainer.max_epochs=7")) != full


def test_cut_feature_file_is_recomputed(tmp_path, caplog):
    from memlab.data.image import ImageFeatureDataModule

    def features():
        dm = ImageFeatureDataModule(source="generated", backbone="random", train_size=24, val_size=8, test_size=8,
                                    cache_dir=str(tmp_path), device="cpu")
        dm.setup()
        return torch.stack([e["features"] for e in dm.full_train.examples]), dm

    expected, _ = features()
    victim = next(tmp_path.glob("*_train_*.pt"))
    payload = torch.load(victim, weights_only=True)
    torch.save({**payload, **{k: payload[k][:12] for k in ("features", "labels", "sample_index")}, "rows": 12}, victim)
    with caplog.at_level(logging.WARNING, logger="memlab"):
        again, dm = features()
    assert len(warnings_naming(caplog, victim)) == 1 and dm.cache_hits["train"] is False
    torch.testing.assert_close(again, expected, rtol=0, atol=0)


# -- files and switches --------------------------------------------------------------------------------------
def test_written_files_follow_the_umask(tmp_path):
    from memlab.utils.io import atomic_torch_save, atomic_write_text

    umask = os.umask(0)
    os.umask(umask)
    for path in (atomic_write_text(tmp_path / "f.json", "{}"), atomic_torch_save({"a": 1}, tmp_path / "f.pt")):
        assert (path.stat().st_mode & 0o777) == 0o666 & ~umask  # as open() makes them, not mkstemp's 0600
        assert 0o666 & ~umask != 0o600 or umask == 0o066


def test_prefix_cache_off_gives_the_same_scores(tiny_cfg, tmp_path):
    from memlab.tasks.runner import run

    outs = {}
    for enabled in (True, False):
        cfg = tiny_cfg("experiment=smoke_memorization", "trainer.max_epochs=2", "test=false",
                       f"callbacks.prefix_cache.enabled={str(enabled).lower()}",
                       f"callbacks.memorization.output_dir={tmp_path}/{enabled}")
        run(cfg)
        outs[enabled] = pd.read_csv(tmp_path / str(enabled) / "scores.csv")
    on, off = outs[True], outs[False]
    assert on["sample_index"].tolist() == off["sample_index"].tolist() and len(on) == 96
    # the same function up to float32 noise, which two epochs with the layers' dropout amplify to ~1e-4
    pd.testing.assert_series_equal(on["mem_score"], off["mem_score"], rtol=1e-3, atol=1e-6)
    assert (on["rank"] == off["rank"]).mean() > 0.9
