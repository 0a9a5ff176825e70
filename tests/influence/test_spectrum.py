"""Lanczos and Hutchinson against torch.linalg on the dense Hessian of a tiny model; relative damping."""
import pytest
import torch
from torch import nn

from memlab.influence.functional import TrainingObjective, batch_loss, default_l2_names, flatten, trainable_params, unflatten
from memlab.influence.damping import absolute_damping, chosen_damping
from memlab.influence.presets import MEMLAB_PRESET, STUDY_PRESET, get_preset
from memlab.influence.solver import fit_solver, make_solver
from memlab.influence.spectrum import (estimate_hessian_spectrum, hessian_matvec, hutchinson_trace,
                                       lanczos_eigenvalues, spectrum_from_solver)


pytestmark = pytest.mark.usefixtures("float64_single_thread")


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    objective = TrainingObjective(l2=1e-2, l2_names=default_l2_names(model))
    params = trainable_params(model)
    batches = [{"input": x[i:i + 10], "labels": y[i:i + 10]} for i in range(0, 40, 10)]
    hessian = torch.autograd.functional.hessian(
        lambda v: batch_loss(model, unflatten(v, params), {"input": x, "labels": y}, objective), flatten(params))
    return model, params, batches, objective, hessian


def test_lanczos_recovers_all_eigenvalues_of_a_matrix():
    torch.manual_seed(1)
    a = torch.randn(30, 30)
    m = a @ a.T / 30 - 0.5 * torch.eye(30)
    ritz = lanczos_eigenvalues(lambda v: m @ v, 30, 30, seed=0)
    assert torch.allclose(ritz, torch.linalg.eigvalsh(m).flip(0), atol=1e-9)


def test_lanczos_top_eigenvalue_of_the_hessian(problem):
    model, params, batches, objective, hessian = problem
    eig = torch.linalg.eigvalsh(hessian)
    ritz = lanczos_eigenvalues(hessian_matvec(model, params, batches, objective), len(hessian), k=25, seed=3)
    assert abs(float(ritz[0]) - float(eig[-1])) < 1e-6 * float(eig[-1])
    assert float(ritz[-1]) >= float(eig[0]) - 1e-9  # Ritz values stay inside the spectrum


def test_hutchinson_trace_within_its_standard_error(problem):
    _, _, _, _, hessian = problem
    n_probes = 200
    estimate = hutchinson_trace(lambda v: hessian @ v, len(hessian), n_probes, seed=0)
    off_diagonal = float((hessian ** 2).sum() - (torch.diagonal(hessian) ** 2).sum())
    stderr = (2 * off_diagonal / n_probes) ** 0.5
    assert abs(estimate - float(torch.trace(hessian))) < 4 * stderr
    assert stderr < 0.2 * float(torch.trace(hessian))  # the check above is informative


def test_estimate_hessian_spectrum(problem):
    model, params, batches, objective, hessian = problem
    spec = estimate_hessian_spectrum(model, params, batches, objective, k=25, n_probes=60, max_examples=None)
    eig = torch.linalg.eigvalsh(hessian)
    assert spec["num_params"] == len(hessian)
    assert abs(spec["top"] - float(eig[-1])) < 1e-6 * float(eig[-1])
    assert abs(spec["mean"] - float(eig.mean())) < 0.3 * float(eig.mean())
    assert spec["mean"] == pytest.approx(spec["trace"] / spec["num_params"])


def test_spectrum_from_fitted_solvers(problem):
    model, params, batches, objective, hessian = problem
    eig = torch.linalg.eigvalsh(hessian)
    exact = spectrum_from_solver(make_solver("exact", 0.1).fit(model, params, batches, objective))
    assert exact["top"] == pytest.approx(float(eig[-1]), rel=1e-8)
    assert exact["mean"] == pytest.approx(float(eig.mean()), rel=1e-8)
    ekfac = spectrum_from_solver(make_solver("ekfac", 0.1).fit(model, params, batches, objective))
    assert ekfac["num_params"] == len(hessian) and ekfac["method"] == "ekfac"
    assert 0.2 * float(eig.mean()) < ekfac["mean"] < 5 * float(eig.mean())  # EK-FAC approximates the scale
    assert spectrum_from_solver(make_solver("identity", 1.0)) is None


def test_absolute_damping():
    assert absolute_damping(damping=50.0) == 50.0
    assert absolute_damping(damping_rel=0.1, mean_eigenvalue=3.0) == pytest.approx(0.3)
    # the config's rule: an absolute damping wins over damping_rel (the solver configs default to 0.1)
    assert absolute_damping(damping=1.0, damping_rel=0.1, mean_eigenvalue=3.0) == 1.0
    assert chosen_damping(1.0, 0.1) == (1.0, None) and chosen_damping(None, 0.1) == (None, 0.1)
    with pytest.raises(ValueError, match="both None"):
        absolute_damping()
    with pytest.raises(ValueError, match="mean Hessian eigenvalue"):
        absolute_damping(damping_rel=0.1)
    with pytest.raises(ValueError, match="damping must be >= 0"):
        chosen_damping(-1.0, 0.1)


def test_presets_and_fit_solver_with_relative_damping(problem):
    model, params, batches, objective, hessian = problem
    assert STUDY_PRESET == dict(solver="lissa", damping=50.0, scale=1e4, steps=1000, l2=5e-3)
    assert get_preset("memlab") == MEMLAB_PRESET and get_preset("memlab") is not MEMLAB_PRESET
    mean = float(torch.linalg.eigvalsh(hessian).mean())
    solver, spec = fit_solver("exact", model, params, batches, objective, damping_rel=0.1)
    assert solver.damping == pytest.approx(0.1 * mean, rel=1e-8) and spec["method"] == "exact"
    solver, spec = fit_solver("cg", model, params, batches, objective, damping_rel=0.1,
                              spectrum_kwargs=dict(k=10, n_probes=60, max_examples=None))
    assert solver.damping == pytest.approx(0.1 * spec["mean"]) and spec["method"] == "lanczos+hutchinson"
    assert abs(solver.damping - 0.1 * mean) < 0.03 * mean
    solver, _ = fit_solver("exact", model, params, batches, objective, damping=0.5, damping_rel=0.1)
    assert solver.damping == 0.5  # an absolute damping wins, as in the config
