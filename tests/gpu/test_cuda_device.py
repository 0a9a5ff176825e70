"""What runs on the GPU, checked on one (``make gpu-check`` runs these; skipped without CUDA): the
classifier's forward/backward on cuda matches the CPU's, EK-FAC scores computed on cuda equal those
computed on the CPU for the same tiny model, and the frozen-prefix cache computed on cuda equals the
CPU's (a prefix on the GPU reads CPU token ids and writes its store on the CPU)."""
from __future__ import annotations

import copy

import pytest
import torch

from conftest import TinyNet
from memlab.influence.functional import TrainingObjective, trainable_params

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def tiny_text_model(seed: int = 0):
    from memlab.data.text import TextDataModule
    from memlab.model.classifier import ClassifierModule
    from memlab.model.text_network import build_text_classifier

    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated", batch_size=8)
    dm.setup()
    net = build_text_classifier("tiny-random", 2, freeze_layers=4, seed=seed)
    return dm, ClassifierModule(net, num_classes=2, l2=1e-3)


def test_classifier_forward_backward_on_cuda_matches_the_cpu():
    dm, cpu_model = tiny_text_model()
    cpu_model.eval()  # no dropout: the two devices see the same function
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    batch = next(iter(dm.val_dataloader()))
    grads = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, CUDA)):
        on_device = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        loss = torch.nn.functional.cross_entropy(model(on_device), on_device["labels"])
        loss.backward()
        assert torch.isfinite(loss)
        grads.append(torch.cat([p.grad.reshape(-1).cpu() for p in model.parameters() if p.grad is not None]))
    assert next(gpu_model.parameters()).device.type == "cuda"
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


def scores_on(device, tmp_path):
    from memlab.pipeline.scoring import score_training_set

    module = TinyNet().to(device)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g)
    data = [{"x": x[i:i + 8], "labels": y[i:i + 8], "sample_index": torch.arange(i, i + 8)} for i in range(0, 40, 8)]
    solver = {"name": "ekfac", "damping": 0.01, "options": {
        "labels": "expected", "fit_examples": None, "rotation_dtype": None, "fit_dtype": None,
        "score_dtype": None, "score_tolerance": None}}
    frame, _, _ = score_training_set(module, trainable_params(module), TrainingObjective(l2=1e-3), data, data, solver,
                                     tmp_path / str(device), list(range(40)), batches_per_chunk=2, progress=False)
    return frame.sort_values("sample_index").reset_index(drop=True)


def test_ekfac_scores_on_cuda_equal_the_cpu_scores(tmp_path):
    cpu, gpu = scores_on("cpu", tmp_path), scores_on(CUDA, tmp_path)
    assert cpu["mem_score"].abs().sum() > 0
    torch.testing.assert_close(torch.tensor(gpu["mem_score"].to_numpy()), torch.tensor(cpu["mem_score"].to_numpy()),
                               rtol=1e-3, atol=1e-6)


def test_prefix_cache_computed_on_cuda_equals_the_cpu_one(tmp_path):
    from memlab.callbacks.prefix_cache import apply_prefix_cache

    states = []
    for device in ("cpu", CUDA):
        dm, model = tiny_text_model()
        model.net.to(device)
        apply_prefix_cache(dm, model.net, "tiny", str(tmp_path / str(device)))
        hidden = [e["hidden"] for e in dm.full_train.examples]
        assert all(h.device.type == "cpu" for h in hidden)  # the store stays on the CPU, batches move later
        states.append(torch.cat([h.reshape(-1) for h in hidden]))
    torch.testing.assert_close(states[1], states[0], rtol=1e-4, atol=1e-5)


def test_a_tiny_gpu_run_records_its_peak_gpu_memory(tiny_cfg, tmp_path):
    import json

    from memlab.tasks.runner import run

    metrics = run(tiny_cfg("trainer=gpu", "trainer.max_epochs=1", "callbacks=memorization", "solver=identity"))
    assert 0 < metrics["gpu/max_memory_allocated_gib"] < torch.cuda.get_device_properties(0).total_memory / 2**30
    assert json.loads((tmp_path / "metrics.json").read_text())["gpu/max_memory_allocated_gib"] == \
        metrics["gpu/max_memory_allocated_gib"]
    assert "memorization/seconds" in metrics  # scored on the GPU too
