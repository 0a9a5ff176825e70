"""Entry point: ``python -m memlab experiment=smoke`` (any Hydra overrides; ``-m`` for sweeps)."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from memlab.train import run

    return run(cfg).get(cfg.get("optimized_metric", "test/acc"))


if __name__ == "__main__":
    main()
