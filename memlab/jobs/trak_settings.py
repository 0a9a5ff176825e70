"""``candidates.trak`` (conf/study/validate.yaml) checked, without torch: what
:func:`memlab.jobs.config_checks.check_config` runs before anything is loaded and
:mod:`memlab.jobs.trak_candidates` reads."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError

PROJECTIONS = ("dense", "kronecker", "auto")  # memlab.influence.trak_projection.KINDS


def trak_settings(cfg: DictConfig) -> dict | None:
    """``candidates.trak`` checked, as a plain dict; None when absent or ``models: 0`` (TRAK off)."""
    raw = (cfg.get("candidates") or {}).get("trak")
    if raw is None:
        return None
    s = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw)
    s = {"models": 5, "proj_dim": 2048, "projection": "auto", "damping_rel": 1e-3, "seed": 0,
         "ablation": {}, "batch_size": 64, **s}
    ablation = s["ablation"] or {}
    for key, low in (("models", 0), ("proj_dim", 1), ("batch_size", 1)):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < low:
            raise ConfigError(f"candidates.trak.{key}={s[key]!r} is not allowed; allowed: an integer >= {low}")
    if s["projection"] not in PROJECTIONS:
        raise ConfigError(f"candidates.trak.projection={s['projection']!r} is not allowed; allowed: {', '.join(PROJECTIONS)}")
    if not isinstance(s["damping_rel"], (int, float)) or not s["damping_rel"] >= 0:
        raise ConfigError(f"candidates.trak.damping_rel={s['damping_rel']!r} is out of range; allowed: a number >= 0")
    dims, rels = list(ablation.get("proj_dims") or []), list(ablation.get("damping_rels") or [])
    if bool(dims) != bool(rels) or any(not isinstance(d, int) or d < 1 for d in dims) \
            or any(not isinstance(r, (int, float)) or r < 0 for r in rels):
        raise ConfigError(f"candidates.trak.ablation={ablation!r} is not allowed; allowed: {{proj_dims: [integers >= 1], "
                          "damping_rels: [numbers >= 0]}, both set, or empty")
    s["ablation"] = {"proj_dims": dims, "damping_rels": [float(r) for r in rels]} if dims else {}
    return s if s["models"] > 0 else None
