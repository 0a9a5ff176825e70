"""The scored model of the validation and label-noise experiments, trained once, and every candidate
memorization score computed on that one model:

    loss, 1-P(y|x)                  the model's own predictions
    grad_norm                       ‖∇θ CE(z)‖ (identity solver pass)
    mem_score / loo_score@damping_rel=r   Eq. 2 with the run's solver (EK-FAC) at λ = r × mean eigenvalue
    mem_score@study(damping=50+L2)  the study's effective setting: its LiSSA converges to the damped
                                    solve (H + 50 I)⁻¹ with the L2 term 5e-3·Σp² in H and ∇L
                                    (ORIGINAL.md); computed here by the run's solver at λ = 50, since
                                    LiSSA itself takes hours on a CPU (the L2 term is the model's own
                                    under recipe=study, else added for this scoring only)
    tracin                          Σ_epochs η·‖∇CE‖² (callbacks/tracin.py, recorded during training)
    trak, trak_loo[@M=<M>]          TRAK self-influence, one model or an ensemble (jobs/trak_candidates.py;
                                    cached in its own folder below, outside this entry's key)
    forgetting, aum, el2n@epoch<e>, training dynamics of the scored model's own training steps
    learning_time, 1-cum_correct,   (candidates.dynamics: jobs/dynamics_candidates.py; their seconds:
    mean_train_loss                 the recording callback's overhead)

Higher always means more memorized. Each candidate's ``seconds`` is its cost beyond the training run
(loss and 1-P: the prediction pass; the others: their scoring or gradient passes); ``seconds["epoch"]``
is the scored model's mean training-epoch time, the unit of the cost column. Everything is
cached under ``paths.cache_dir/candidates/<key>`` (one lock; the scoring chunks are resumable).
Unlike :func:`memlab.jobs.ranking_cache.load_or_compute_ranking`, which trains once per solver
setting, the model is trained once for all of them.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from ..callbacks.scoring import ScoringCallback
from ..callbacks.tracin import TracInCallback
from ..callbacks.training_dynamics import TrainingDynamicsCallback
from ..utils.io import atomic_write_csv, atomic_write_text
from .dynamics_candidates import dynamics_candidates, epoch_seconds
from .subset_training import Predictions, train_on_subset, training_key
from .trak_candidates import featurize_scored_model, trak_candidates

log = logging.getLogger("memlab")

IDENTITY = {"name": "identity", "damping": 0.0, "damping_rel": None, "options": {}}


def study_name(cfg: DictConfig) -> str:
    return f"mem_score@study(damping={float(cfg.candidates.study_damping):g}+L2)"


def candidate_solvers(cfg: DictConfig) -> dict[str, dict]:
    """Solver settings to score with, by a short name: the identity pass (gradient norm), the run's
    solver at each ``candidates.damping_rel``, and at the study's absolute damping."""
    base = OmegaConf.to_container(cfg.solver, resolve=True)
    solvers = {"identity": dict(IDENTITY)}
    for rel in cfg.candidates.damping_rel:
        solvers[f"damping_rel={float(rel):g}"] = {**base, "damping": None, "damping_rel": float(rel),
                                                  "own_term": bool(base.get("own_term", False))}
    # the study's λ = 50 dwarfs each instance's own (1/n)·GGN term: no own term, as in its LiSSA
    solvers["study"] = {**base, "damping": float(cfg.candidates.study_damping), "damping_rel": None, "own_term": False}
    return solvers


def candidates_dir(cfg: DictConfig) -> Path:
    c = cfg.candidates
    dynamics = {"dynamics": {"el2n_epoch": int(c.get("el2n_epoch", 1))}} if c.get("dynamics") else {}  # off: keys as before
    key = training_key(cfg, seed=int(cfg.seed), solvers=candidate_solvers(cfg), study_l2=float(c.study_l2),
                       tracin=bool(c.tracin), **dynamics)
    return Path(cfg.paths.cache_dir) / "candidates" / key


@contextlib.contextmanager
def scoring_l2(model, l2: float | None):
    """Score with the L2 term ``l2`` in H and ∇L (the model's training objective reads hparams.l2)."""
    before = model.hparams.l2
    if l2 is not None:
        model.hparams.l2 = float(l2)
    try:
        yield
    finally:
        model.hparams.l2 = before


def score_with(trainer, model, solver_cfg: dict, out_dir: Path, batch_size: int, l2: float | None = None):
    """(scores.csv's table, seconds of fit + scoring) of the trained model with one solver setting."""
    scorer = ScoringCallback(solver=solver_cfg, output_dir=str(out_dir), batch_size=batch_size,
                             metrics_file=str(out_dir / "metrics.json"), log_table=False)
    with scoring_l2(model, l2):
        result = scorer.score(trainer, model)
    return result.scores.set_index("sample_index"), float(result.solver_info["seconds"])


def compute_candidates(cfg: DictConfig, out_dir: Path) -> tuple[pd.DataFrame, dict, Predictions]:
    c = cfg.candidates
    tracin = TracInCallback(output_dir=str(out_dir)) if c.tracin else None
    dynamics = TrainingDynamicsCallback() if c.get("dynamics") else None
    extra_callbacks = [cb for cb in (tracin, dynamics) if cb is not None]
    predictions, model, trainer, _ = train_on_subset(cfg, int(cfg.seed), (), extra_callbacks)
    batch_size = int((cfg.get("callbacks") or {}).get("memorization", {}).get("batch_size", 64))
    frame = pd.DataFrame({"sample_index": predictions.sample_index}).set_index("sample_index", drop=False)
    seconds = {"epoch": epoch_seconds(trainer)}
    for name, solver_cfg in candidate_solvers(cfg).items():
        l2 = float(c.study_l2) if name == "study" else None
        scores, secs = score_with(trainer, model, solver_cfg, out_dir / "scores" / name, batch_size, l2)
        if name == "identity":
            frame["loss"] = scores["loss"]
            frame["1-P(y|x)"] = -np.expm1(-scores["loss"])  # exact where 1 - P would round to 0
            frame["grad_norm"] = np.sqrt(scores["grad_norm_sq"])
            seconds.update({"loss": predictions.predict_seconds, "1-P(y|x)": predictions.predict_seconds,
                            "grad_norm": secs})
        elif name == "study":
            frame[study_name(cfg)] = scores["mem_score"]
            seconds[study_name(cfg)] = secs
        else:
            for column in ("mem_score", "loo_score"):
                if column in scores:
                    frame[f"{column}@{name}"] = scores[column]
                    seconds[f"{column}@{name}"] = secs
    if tracin is not None:
        frame["tracin"] = tracin.table().set_index("sample_index")["tracin"]
        seconds["tracin"] = tracin.seconds
    featurize_scored_model(cfg, out_dir, model, trainer)  # TRAK's M = 1 files while the model is in memory
    if dynamics is not None:
        columns, dynamics_seconds = dynamics_candidates(dynamics, int(c.get("el2n_epoch", 1)), out_dir)
        frame, seconds = frame.join(columns), {**seconds, **dynamics_seconds}
    return frame.reset_index(drop=True), seconds, predictions


def candidate_scores(cfg: DictConfig) -> tuple[pd.DataFrame, dict, Predictions]:
    """(``sample_index`` + one column per candidate, seconds per candidate, the scored model's
    predictions on the training split), computed once per configuration."""
    out_dir = candidates_dir(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = out_dir / "candidates.csv", out_dir / "seconds.json", out_dir / "predictions.npz"
    with FileLock(str(out_dir / ".lock")):
        if not all(f.is_file() for f in files):
            log.info("training the scored model once and computing every candidate score -> %s", out_dir)
            frame, seconds, predictions = compute_candidates(cfg, out_dir)
            predictions.save(files[2])
            atomic_write_text(files[1], json.dumps(seconds, indent=2))
            atomic_write_csv(frame, files[0])  # last: its presence marks the entry complete
        trak, trak_seconds = trak_candidates(cfg, out_dir)  # trains (or reads) what TRAK's own cache lacks
    frame, seconds = pd.read_csv(files[0]), json.loads(files[1].read_text())
    if trak is not None:
        frame, seconds = frame.merge(trak, on="sample_index", how="left"), {**seconds, **trak_seconds}
    return frame, seconds, Predictions.load(files[2])
