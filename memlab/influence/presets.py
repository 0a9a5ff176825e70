"""Named settings of the self-influence estimator (Eq. 2); the Python source of the study's numbers.

``STUDY_PRESET`` reproduces what the study's code effectively computed (see ORIGINAL.md):
LiSSA with damp = 5e-3 and scale = 1e4, ~1000 steps of ONE training example's HVP each, one
repetition, s = h/scale, and an explicit L2 term 5e-3·Σp² over the trainable weights (not biases, not
LayerNorm) in both H and ∇L(z). Its fixed point is (H + 5e-3·1e4·I)⁻¹v = (H + 50 I)⁻¹v: an effective
damping of 50, which makes the scores close to P(y|x)·‖∇L‖²/50 (within 0.6% of the damped solve,
~100% off the undamped one). It cost 33 s per SST-2 instance on a GPU.

``MEMLAB_PRESET`` is memlab's default (``conf/solver/ekfac.yaml``): EK-FAC fitted on 1000 seeded examples
with the true Fisher (fit and scoring forward/backward in bf16 autocast where bf16 kernels are fast),
the scoring pass on a truncated eigenbasis within 1% expected error per Linear, and λ = 0.1 × the
mean eigenvalue of H. Relative damping is the heuristic of Grosse et al. (2023)
and kronfluence: a fixed absolute λ (like the study's 50) means nothing across models whose
curvature differs by orders of magnitude, whereas 0.1 × mean eigenvalue leaves the well-determined
directions (eigenvalues above the mean, which carry most of tr(H)) almost undamped while bounding
the amplification of the many near-zero directions that EK-FAC estimates poorly to 10/mean.

A preset is built and fitted by :func:`memlab.influence.solver.fit_solver`; its ``l2`` belongs to the
``TrainingObjective``, not to the solver.
"""
from __future__ import annotations

STUDY_PRESET = dict(solver="lissa", damping=50.0, scale=1e4, steps=1000, l2=5e-3)
MEMLAB_PRESET = dict(solver="ekfac", damping_rel=0.1, fit_examples=1000, labels="sampled", rotation_dtype="bfloat16",
                     fit_dtype="bfloat16", score_dtype="bfloat16", score_tolerance=0.01, exact_logits=False, l2=5e-3)
PRESETS = {"study": STUDY_PRESET, "memlab": MEMLAB_PRESET}


def get_preset(name: str) -> dict:
    """A copy of a named preset ("study" or "memlab")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
