"""Named settings of the self-influence estimator (Eq. 2) and the one call that builds a fitted solver.

``STUDY_PRESET`` reproduces what the study's code effectively computed (see ORIGINAL.md):
LiSSA with damp = 5e-3 and scale = 1e4, ~1000 steps of ONE training example's HVP each, one
repetition, s = h/scale, and an explicit L2 term 5e-3·Σp² over the trainable weights (not biases, not
LayerNorm) in both H and ∇L(z). Its fixed point is (H + 5e-3·1e4·I)⁻¹v = (H + 50 I)⁻¹v: an effective
damping of 50, which makes the scores close to P(y|x)·‖∇L‖²/50 (within 0.6% of the damped solve,
~100% off the undamped one). It cost 33 s per SST-2 instance on a GPU.

``MEMLAB_PRESET`` is memlab's default: EK-FAC fitted on 2000 seeded examples with the true Fisher (fit and
scoring backward in bf16 autocast; probabilities from a float32 forward),
and λ = 0.1 × the mean eigenvalue of H. Relative damping is the heuristic of Grosse et al. (2023)
and kronfluence: a fixed absolute λ (like the study's 50) means nothing across models whose
curvature differs by orders of magnitude, whereas 0.1 × mean eigenvalue leaves the well-determined
directions (eigenvalues above the mean, which carry most of tr(H)) almost undamped while bounding
the amplification of the many near-zero directions that EK-FAC estimates poorly to 10/mean.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .functional import Params, TrainingObjective
from .solver import InverseHessianSolver, make_solver
from .spectrum import absolute_damping, estimate_hessian_spectrum, spectrum_from_solver

STUDY_PRESET = dict(solver="lissa", damping=50.0, scale=1e4, steps=1000, l2=5e-3)
MEMLAB_PRESET = dict(solver="ekfac", damping_rel=0.1, fit_examples=2000, labels="sampled", rotation_dtype="bfloat16",
                     fit_dtype="bfloat16", score_dtype="bfloat16", l2=5e-3)
PRESETS = {"study": STUDY_PRESET, "memlab": MEMLAB_PRESET}


def get_preset(name: str) -> dict:
    """A copy of a named preset ("study" or "memlab")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def fit_solver(name: str, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
               objective: TrainingObjective = TrainingObjective(), damping: float | None = None,
               damping_rel: float | None = None, all_reduce: Callable[[Tensor], Tensor] | None = None,
               spectrum_kwargs: dict | None = None, **solver_kwargs) -> tuple[InverseHessianSolver, dict | None]:
    """Build and fit solver ``name`` with λ = ``damping``, or λ = ``damping_rel`` × mean eigenvalue of H.

    The mean eigenvalue comes from the fitted solver when it holds the spectrum (ekfac, exact), else
    from :func:`estimate_hessian_spectrum` (``spectrum_kwargs``). Returns (solver, spectrum or None).
    The ``l2`` of a preset belongs to ``objective`` (TrainingObjective), not to the solver.
    """
    absolute_damping(damping, damping_rel, mean_eigenvalue=1.0)  # validates the pair early
    solver = make_solver(name, damping if damping is not None else 0.0, **solver_kwargs)
    spectrum = None
    if damping_rel is not None and not hasattr(solver, "eigenvalues"):
        # the solver will not know H's spectrum: estimate it before fitting with the final λ
        batches = list(batches) if iter(batches) is batches else batches
        spectrum = estimate_hessian_spectrum(module, params, batches, objective, **(spectrum_kwargs or {}))
        if all_reduce is not None:  # every process must use the same λ: average the estimates
            spectrum = _averaged(spectrum, all_reduce, next(iter(params.values())).device)
        solver.damping = absolute_damping(damping_rel=damping_rel, mean_eigenvalue=spectrum["mean"])
    solver.fit(module, params, batches, objective, all_reduce=all_reduce)
    if damping_rel is not None and spectrum is None:
        spectrum = spectrum_from_solver(solver)
        solver.damping = absolute_damping(damping_rel=damping_rel, mean_eigenvalue=spectrum["mean"])
    elif spectrum is None:
        spectrum = spectrum_from_solver(solver)
    return solver, spectrum


def _averaged(spectrum: dict, all_reduce: Callable[[Tensor], Tensor], device: torch.device) -> dict:
    """Top and mean eigenvalue averaged over processes (each estimated on its own shard)."""
    sums = all_reduce(torch.tensor([spectrum["top"], spectrum["trace"], 1.0], dtype=torch.float64, device=device))
    top, trace = float(sums[0] / sums[2]), float(sums[1] / sums[2])
    return {**spectrum, "top": top, "trace": trace, "mean": trace / spectrum["num_params"]}
