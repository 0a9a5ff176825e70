"""The validate experiments reuse the Feldman-Zhang models their fz experiment trains: the same
models folder (data, model, recipe, epochs, fz subset settings), for the text study and the image
stand-in."""
from __future__ import annotations

import pytest

from conftest import CONF, compose


@pytest.mark.parametrize("setup, models", [("sst2", None), ("fashion_mnist", 256)])
def test_validate_reuses_the_fz_experiments_models(setup, models, tmp_path):
    from memlab.tasks.fz import fz_models_dir

    assert (CONF / "experiment" / f"{setup}_validate.yaml").is_file()
    fz_overrides = [f"fz.models={models}"] if models else []
    fz = compose([f"experiment={setup}_fz", *fz_overrides], tmp_path)
    validate = compose([f"experiment={setup}_validate"], tmp_path)
    assert validate.task == "validate" and validate.candidates.dynamics and validate.candidates.el2n_epoch == 1
    assert fz_models_dir(validate) == fz_models_dir(fz)
    assert int(validate.fz.models) == int(fz.fz.models)
    assert fz_models_dir(compose([f"experiment={setup}_validate", "trainer.max_epochs=1"], tmp_path)) != fz_models_dir(fz)


def test_label_noise_on_image_data_is_one_line_before_anything_runs():
    """Image feature data has no seeded label flips (yet): the label-noise study on it stops at the config
    check with one line instead of a TypeError from the data module."""
    import pytest

    from memlab.errors import ConfigError
    from memlab.jobs.config_checks import check_config

    cfg = compose(["experiment=fashion_mnist_validate", "task=label_noise", "+data.label_noise=0.1"])
    with pytest.raises(ConfigError, match="label_noise"):
        check_config(cfg, sources=False)


def test_image_data_without_a_name_is_called_by_its_source():
    """Fashion-MNIST's data config has no ``name`` (adding one would move its cache keys): the validate,
    fz and label-noise figures call it by its source instead of failing on the missing key."""
    from omegaconf import OmegaConf

    from memlab.jobs.data_classes import data_set_name

    assert data_set_name(OmegaConf.create({"data": {"source": "fashion_mnist"}})) == "fashion_mnist"
    assert data_set_name(OmegaConf.create({"data": {"name": "sst2", "source": "local"}})) == "sst2"
