"""The damping λ of (H + λI)⁻¹ (Eq. 2), and the one rule that decides which of its two settings counts.

A solver's λ is set either absolutely (``damping``) or relative to the curvature of H
(``damping_rel``, λ = damping_rel × tr(H)/P, the mean eigenvalue; :mod:`.spectrum` estimates it).
Relative damping is the heuristic of Grosse et al. (2023) and kronfluence: one setting then means
the same across models whose curvature differs by orders of magnitude.
"""
from __future__ import annotations


def chosen_damping(damping: float | None, damping_rel: float | None) -> tuple[float | None, float | None]:
    """``(damping, None)`` or ``(None, damping_rel)``: the setting that λ comes from.

    The rule, the same for the config, :func:`~memlab.influence.solver.fit_solver` and
    :func:`absolute_damping`:

    * an absolute ``damping`` wins when both are given (the solver configs default to
      ``damping_rel: 0.1``, so ``solver.damping=50`` alone must be enough to ask for λ = 50);
    * ``damping_rel`` counts only when ``damping`` is None;
    * both None is an error (the config check tells users to set one to a number >= 0), and so is a
      negative value of the setting that counts.
    """
    if damping is None and damping_rel is None:
        raise ValueError("damping and damping_rel are both None: give one of them (a number >= 0)")
    if damping is not None:
        if damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        return float(damping), None
    if damping_rel < 0:
        raise ValueError(f"damping_rel must be >= 0, got {damping_rel}")
    return None, float(damping_rel)


def absolute_damping(damping: float | None = None, damping_rel: float | None = None,
                     mean_eigenvalue: float | None = None) -> float:
    """λ of (H + λI)⁻¹: ``damping`` as given, or ``damping_rel`` × the mean eigenvalue tr(H)/P
    (which of the two by :func:`chosen_damping`)."""
    damping, damping_rel = chosen_damping(damping, damping_rel)
    if damping is not None:
        return damping
    if mean_eigenvalue is None or not mean_eigenvalue > 0:
        raise ValueError(f"damping_rel needs a positive mean Hessian eigenvalue, got {mean_eigenvalue}; "
                         f"estimate it with estimate_hessian_spectrum or an ekfac solver, or give damping")
    return damping_rel * float(mean_eigenvalue)
