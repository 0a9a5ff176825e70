"""Scoring every training instance: resumable chunks, identical results after an interruption,
and the memorization outputs of a run."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import memlab.pipeline.scoring as scoring
from conftest import TinyNet
from memlab.influence.functional import TrainingObjective, trainable_params


def batches(n=40, bs=4):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [{"x": x[i:i + bs], "labels": y[i:i + bs], "sample_index": torch.arange(i, i + bs)} for i in range(0, n, bs)]


def score(out_dir, data, solver=None):
    module = TinyNet()
    solver = solver or {"name": "exact", "damping": 0.01}
    return scoring.score_training_set(module, trainable_params(module), TrainingObjective(l2=1e-3), data, data,
                                      solver, out_dir, list(range(40)), batches_per_chunk=2, progress=False)


def test_resume_after_interruption_gives_identical_scores(tmp_path, monkeypatch):
    data = batches()
    fresh, _, _ = score(tmp_path / "fresh", data)
    real = scoring.memorization_scores
    calls = []

    def dying(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "memorization_scores", dying)
    with pytest.raises(KeyboardInterrupt):
        score(tmp_path / "resumed", data)
    assert len(list((tmp_path / "resumed" / "chunks").glob("chunk-*.pt"))) == 2
    assert not list((tmp_path / "resumed" / "chunks").glob(".*.tmp*"))  # no partial file left behind
    calls.clear()
    monkeypatch.setattr(scoring, "memorization_scores", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed, info, _ = score(tmp_path / "resumed", data)
    assert len(calls) == 3 and info["resumed_chunks"] == 2  # 5 chunks, 2 reused
    pd.testing.assert_frame_equal(resumed, fresh)
    assert len(fresh) == 40 and fresh["sample_index"].tolist() == list(range(40))


def test_changed_solver_does_not_reuse_chunks(tmp_path):
    data = batches()
    a, _, _ = score(tmp_path, data, {"name": "exact", "damping": 0.01})
    b, info, _ = score(tmp_path, data, {"name": "exact", "damping": 10.0})
    assert info["resumed_chunks"] == 0
    assert not torch.allclose(torch.tensor(a["mem_score"].values), torch.tensor(b["mem_score"].values))


def test_finalize_scores_rank_and_columns():
    frame = pd.DataFrame({"sample_index": [3, 1, 2], "label": [0, 1, 0], "prob": [.9, .2, .5],
                          "prediction": [0, 0, 0], "mem_score": [0.1, 5.0, 1.0], "loss": [.1, 1.6, .7],
                          "grad_norm_sq": [1, 2, 3]})
    out = scoring.finalize_scores(frame, {1: "a", 2: "b", 3: "c"})
    assert list(out.columns[:7]) == ["sample_index", "label", "text", "prob", "prediction", "mem_score", "rank"]
    assert out.set_index("sample_index")["rank"].to_dict() == {1: 1, 2: 2, 3: 3}
    assert out["text"].tolist() == ["a", "b", "c"]


def test_finalize_scores_breaks_rank_ties_by_sample_index():
    # rows arrive in the loader's (length) order; rank 1 is the most memorized, equal scores by sample_index
    frame = pd.DataFrame({"sample_index": [7, 2, 5, 1], "label": [0] * 4, "prob": [.5] * 4, "prediction": [0] * 4,
                          "mem_score": [0.0, 1.0, 0.0, 0.0], "loss": [.7] * 4, "grad_norm_sq": [1.0] * 4})
    out = scoring.finalize_scores(frame, {})
    assert out.set_index("sample_index")["rank"].to_dict() == {2: 1, 1: 2, 5: 3, 7: 4}


def test_own_term_adds_loo_score_to_the_table_and_diagnostics(tmp_path):
    from memlab.studies.diagnostics import score_diagnostics
    data = batches()
    cfg = {"name": "ekfac", "damping": 1e-4, "own_term": True, "options": {"fit_examples": None}}
    frame, info, _ = score(tmp_path / "own", data, cfg)
    plain, _, _ = score(tmp_path / "plain", data, {**cfg, "own_term": False})
    assert "loo_score" in frame and "loo_score" not in plain
    assert (frame["loo_score"] == plain["mem_score"]).all() and (frame["mem_score"] < frame["loo_score"]).all()
    table = scoring.finalize_scores(frame, {i: f"text {i}" for i in range(40)})
    assert table.columns[-1] == "loo_score"
    diag = score_diagnostics(table, info)
    assert diag["own_term_median_shrink"] > 1 and 0 <= diag["own_term_dominant_fraction"] <= 1
    assert diag["spearman_vs_loo"] < 1 and "spearman_loo_vs_loss" in diag


def test_release_free_memory_works_on_linux():
    import sys
    from memlab.utils.memory import release_free_memory
    assert release_free_memory() is sys.platform.startswith("linux")


def test_finalize_scores_ranks_by_loo_score_when_the_solver_writes_it():
    # the own term reorders: mem_score puts 1 first, loo_score (the default ranking, README "Which score") 3
    frame = pd.DataFrame({"sample_index": [3, 1, 2], "label": [0, 1, 0], "prob": [.9, .2, .5],
                          "prediction": [0, 0, 0], "mem_score": [0.1, 5.0, 1.0], "loo_score": [9.0, 5.5, 1.2],
                          "loss": [.1, 1.6, .7], "grad_norm_sq": [1, 2, 3]})
    out = scoring.finalize_scores(frame, {})
    assert out.set_index("sample_index")["rank"].to_dict() == {3: 1, 1: 2, 2: 3}
    assert list(out.columns)[-1] == "loo_score"


def test_two_ranks_equal_one_process(tmp_path):
    """Data parallelism without processes (the DDP run itself: tests/pipeline/test_ddp_scoring.py, slow):
    two ranks in threads, each fitting on its half of the data with the curvature all-reduced (summed) and
    scoring its own chunks, rank 0 merging; the scores equal one process fitting and scoring everything."""
    import threading

    data = batches()
    single, _, _ = score(tmp_path / "single", data)
    meeting, slots, results = threading.Barrier(2), [None, None], [None, None]
    turn = threading.Lock()  # one rank computes at a time (torch's forward-AD levels are not per thread)

    def wait():  # the strategy's barrier: let the other rank compute until it gets here too
        turn.release()
        try:
            meeting.wait()
        finally:
            turn.acquire()

    def all_reduce_for(rank):
        def all_reduce(t):  # what the strategy's reduce(op="sum") gives every rank
            slots[rank] = t.clone()
            wait()
            total = slots[0] + slots[1]
            wait()  # both have read the sum before either writes its next statistic
            return total
        return all_reduce

    def rank_run(rank, module):
        turn.acquire()
        try:
            results[rank] = run_rank(rank, module)
        except BaseException as err:  # shown by the assertion below; the other rank stops at the barrier
            results[rank] = err
            meeting.abort()
        finally:
            turn.release()

    def run_rank(rank, module):
        return scoring.score_training_set(
            module, trainable_params(module), TrainingObjective(l2=1e-3), data, data[rank::2],
            {"name": "exact", "damping": 0.01}, tmp_path / "ddp", list(range(40)), batches_per_chunk=2, rank=rank,
            world_size=2, all_reduce=all_reduce_for(rank), barrier=wait, progress=False)

    modules = [TinyNet(), TinyNet()]  # the same weights on both ranks (TinyNet seeds itself)
    threads = [threading.Thread(target=rank_run, args=(rank, modules[rank])) for rank in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(isinstance(r, BaseException) for r in results), results
    merged, info, _ = results[0]
    assert results[1][0] is None  # only rank 0 merges
    assert info["chunks"] == 5 and len(list((tmp_path / "ddp" / "chunks").glob("chunk-*.pt"))) == 5
    assert merged["sample_index"].tolist() == single["sample_index"].tolist()
    pd.testing.assert_series_equal(merged["mem_score"], single["mem_score"], rtol=1e-5, atol=1e-10)
