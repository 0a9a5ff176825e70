"""Influence functions for memorization (pure torch): per-example gradients and HVPs
(:mod:`.functional`), estimators of (H + λI)⁻¹ (:mod:`.solver`, built and fitted by name), the
self-influence memorization score of Eq. 2 (:mod:`.self_influence`), the Hessian's spectrum
(:mod:`.spectrum`), absolute or relative damping (:mod:`.damping`) and named settings (:mod:`.presets`).
"""
from .damping import absolute_damping, chosen_damping
from .functional import (TrainingObjective, default_l2_names, per_example_grads, trainable_params)
from .presets import MEMLAB_PRESET, PRESETS, STUDY_PRESET, get_preset
from .self_influence import l2_gradient, memorization_scores, self_influence
from .solver import SOLVERS, InverseHessianSolver, fit_solver, make_solver
from .spectrum import (estimate_hessian_spectrum, hutchinson_trace, lanczos_eigenvalues, spectrum_from_solver)

__all__ = ["TrainingObjective", "default_l2_names", "per_example_grads", "trainable_params", "MEMLAB_PRESET",
           "PRESETS", "STUDY_PRESET", "fit_solver", "get_preset", "l2_gradient", "memorization_scores",
           "self_influence", "SOLVERS", "InverseHessianSolver", "make_solver", "absolute_damping", "chosen_damping",
           "estimate_hessian_spectrum", "hutchinson_trace", "lanczos_eigenvalues", "spectrum_from_solver"]
