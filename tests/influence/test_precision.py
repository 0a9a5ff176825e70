"""bf16 is used only where it is fast: elsewhere EK-FAC's bf16 options fall back to float32."""
import torch

from memlab.influence.solver import precision


def test_bf16_kept_where_fast_and_dropped_where_slow(monkeypatch):
    monkeypatch.setattr(precision, "bf16_matmul_is_fast", lambda device_type="cpu": True)
    assert precision.usable_low_precision(torch.bfloat16) is torch.bfloat16
    monkeypatch.setattr(precision, "bf16_matmul_is_fast", lambda device_type="cpu": False)
    assert precision.usable_low_precision(torch.bfloat16) is None
    assert precision.usable_low_precision(torch.float64) is torch.float64  # only bf16 is ever replaced
    assert precision.usable_low_precision(None) is None


def test_cuda_counts_as_fast_without_timing():
    assert precision.bf16_matmul_is_fast("cuda") is True
    assert precision.bf16_matmul_is_fast("meta") is False


def test_ekfac_bf16_options_give_float32_results_where_bf16_is_slow(monkeypatch):
    from memlab.influence.functional import TrainingObjective, trainable_params
    from memlab.influence.solver.ekfac import EKFACSolver

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = module

        def forward(self, x, **unused):
            return self.body(x)

    net = Net()
    params = trainable_params(net)
    batches = [{"x": torch.randn(16, 6), "labels": torch.randint(0, 3, (16,))} for _ in range(2)]
    vector = torch.randn(sum(p.numel() for p in params.values()))
    monkeypatch.setattr(precision, "bf16_matmul_is_fast", lambda device_type="cpu": False)
    solved = {}
    for name, options in {"fp32": {}, "bf16": dict(rotation_dtype="bfloat16", fit_dtype="bfloat16",
                                                    score_dtype="bfloat16")}.items():
        solver = EKFACSolver(damping=1e-2, fit_examples=None, seed=0, **options)
        solver.fit(net, params, batches, TrainingObjective())
        solved[name] = solver.solve(vector)
    torch.testing.assert_close(solved["bf16"], solved["fp32"])
