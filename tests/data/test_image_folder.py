"""data=image_folder (issue 27, images): a folder of generated pictures in class folders through a real
torchvision architecture with random weights saved as a state_dict, scored end to end; ResNet-50 from
a state_dict file against torchvision's own trunk; the grid rule on other families; one-line errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from conftest import compose
from memlab.config_overrides import with_data_setup
from memlab.data.feature_cache import cache_key
from memlab.data.image import ImageFeatureDataModule
from memlab.data.image_folder import ImageFolderDataModule, stratified_carve
from memlab.data.torchvision_backbone import grid_node, probe_channels
from memlab.errors import DataError, MemlabError
from memlab.jobs.config_checks import check_config
from memlab.tasks.runner import run

CLASSES = {"cat": (200, 40, 40), "dog": (40, 180, 60), "fish": (40, 70, 200)}


def picture_folder(root, per_class=8, test_per_class=4, size=20):
    """train/ and test/ with one folder per class of noisy coloured PNGs (the first of each class grey)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for name, colour in CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                picture = Image.fromarray(pixels)
                (picture.convert("L") if i == 0 else picture).save(folder / f"{name}_{i:02d}.png")
    return root


def saved_state_dict(name, path):
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model(name, weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = picture_folder(tmp_path_factory.mktemp("pictures") / "pets")
    return root, saved_state_dict("resnet18", root.parent / "resnet18.pt")


def test_memorization_scores_every_training_picture_with_folder_names(folder, tmp_path):
    root, weights = folder
    overrides = with_data_setup(["experiment=memorization", "data=image_folder", f"data.path={root}",
                                 "data.backbone=resnet18", f"data.backbone_weights={weights}", "data.image_size=32",
                                 "trainer.max_epochs=1", "logger=none", "model.net.hidden=64"])
    assert "setup=image_folder" in overrides  # the generic study takes the image setup
    cfg = compose(overrides, tmp_path)
    assert cfg.model.net._target_.endswith("FeatureMLP") and cfg.model.lr_schedule == "linear"  # recipe=study
    metrics = run(cfg)
    scores = pd.read_csv(tmp_path / "memorization" / "scores.csv")
    # 8 pictures per class, one per class carved out for dev (no dev/ folder): 21 scored, each once
    assert len(scores) == metrics["train/n_examples"] == 21 and scores["sample_index"].is_unique
    assert np.isfinite(scores["mem_score"]).all() and np.isfinite(scores["loss"]).all()
    assert set(scores["class_name"]) == set(CLASSES) and metrics["data/class_names"] == sorted(CLASSES)
    # the label of a row is the folder its picture is in (text: the picture's path)
    assert all(text.split("/")[1] == name for text, name in zip(scores["text"], scores["class_name"]))
    assert (scores.groupby("class_name").size() == 7).all()
    markdown = (tmp_path / "memorization" / "top_bottom.md").read_text()
    assert all(f"## {name} (label" in markdown for name in CLASSES) and "top_bottom.png" in markdown
    assert (tmp_path / "memorization" / "top_bottom.png").stat().st_size > 0
    assert cfg.data.feature_channels == 512  # resnet18's, found by the dummy forward


@pytest.mark.slow
def test_resnet50_from_a_state_dict_file_matches_torchvision(tmp_path):
    root = picture_folder(tmp_path / "two", per_class=2, test_per_class=1, size=32)
    weights = saved_state_dict("resnet50", tmp_path / "resnet50.pt")
    dm = ImageFolderDataModule(str(root), backbone="resnet50", backbone_weights=str(weights), image_size=32,
                               val_size=0.5, device="cpu", cache_dir=str(tmp_path / "cache"), feature_dtype="float32")
    assert dm.feature_channels == 2048
    dm.setup("fit")
    example = dm.splits["train"][0]
    assert example["features"].shape == (2048, 1, 1)
    # independently: torchvision's ResNet-50 with the same file, children up to layer4, ImageNet normalisation
    net = torchvision.models.resnet50(weights=None)
    net.load_state_dict(torch.load(weights))
    trunk = torch.nn.Sequential(*list(net.children())[:-2]).eval()
    picture = dm.images([int(example["sample_index"])])[0]
    x = torch.from_numpy(picture).permute(2, 0, 1).float()[None] / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = trunk((x - mean) / std)[0]
    torch.testing.assert_close(example["features"], expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name, node, classifier_in", [
    ("resnet18", "layer4", lambda m: m.fc.in_features),
    ("mobilenet_v3_small", "features", lambda m: m.classifier[0].in_features),
    ("shufflenet_v2_x0_5", "conv5", lambda m: m.fc.in_features),
])
def test_grid_is_the_input_of_the_first_pooling(name, node, classifier_in):
    net = torchvision.models.get_model(name, weights=None)
    assert grid_node(net, name).startswith(node)
    assert probe_channels(name, 64) == classifier_in(net)  # what the classifier's first layer takes


def test_a_model_without_a_grid_is_one_line():
    with pytest.raises(DataError, match="no spatial pooling"):
        grid_node(torchvision.models.get_model("vit_b_16", weights=None, image_size=32), "vit_b_16")


def test_stratified_carve_takes_a_share_of_every_class():
    labels = np.repeat([0, 1, 2], [10, 20, 3])
    parts = stratified_carve(labels, {"val": 0.1, "test": 0.2}, seed=1)
    assert [int((labels[parts["val"]] == c).sum()) for c in range(3)] == [1, 2, 0]
    assert [int((labels[parts["test"]] == c).sum()) for c in range(3)] == [2, 4, 1]
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(labels)))  # disjoint, complete
    again = stratified_carve(labels, {"val": 0.1, "test": 0.2}, seed=1)
    assert all((again[k] == parts[k]).all() for k in parts)


def test_feature_cache_key_follows_the_weights_file_and_keeps_old_keys(folder, tmp_path):
    root, weights = folder
    make = lambda w: ImageFolderDataModule(str(root), backbone="resnet18", backbone_weights=str(w),  # noqa: E731
                                           image_size=32, device="cpu")
    other = Path(shutil.copy(weights, tmp_path / "copy.pt"))
    assert cache_key(make(weights)._cache_fields("train")) == cache_key(make(other)._cache_fields("train"))  # same bytes
    torch.manual_seed(1)
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), other)
    assert make(weights)._cache_fields("train")["weights"] != make(other)._cache_fields("train")["weights"]
    # an existing configuration (tiny_image) keeps exactly its fields: nothing added
    tiny = ImageFeatureDataModule(source="generated", backbone="random", seed=0, device="cpu")
    assert set(tiny._cache_fields("train")) == {"format", "dataset", "split", "sizes", "seed", "backbone", "weights", "dtype"}
    assert tiny._cache_fields("train")["weights"] == "random-seed0-c16-in32"


def bad_folder_cfg(tmp_path, path):
    return compose(with_data_setup(["experiment=memorization", "data=image_folder", f"data.path={path}",
                                    "data.backbone=resnet18", "logger=none"]), tmp_path / "out")


def test_bad_folders_are_one_line_before_anything_runs(tmp_path):
    with pytest.raises(MemlabError, match="no such folder"):
        check_config(bad_folder_cfg(tmp_path, tmp_path / "nowhere"))
    (tmp_path / "flat" / "train").mkdir(parents=True)
    with pytest.raises(MemlabError, match="no class folders"):
        check_config(bad_folder_cfg(tmp_path, tmp_path / "flat"))
    root = picture_folder(tmp_path / "broken", per_class=2, test_per_class=1)
    (root / "train" / "dog" / "dog_99.png").write_bytes(b"not a picture")
    with pytest.raises(MemlabError, match=r"dog_99\.png is not a readable picture") as err:
        check_config(bad_folder_cfg(tmp_path, root))
    assert "\n" not in str(err.value)


def test_a_state_dict_of_another_model_is_one_line(folder, tmp_path):
    root, weights = folder  # resnet18's keys into resnet34: missing blocks
    dm = ImageFolderDataModule(str(root), backbone="resnet34", backbone_weights=str(weights), image_size=32,
                               device="cpu")
    with pytest.raises(DataError, match=r"\d+ missing and 0 unexpected keys") as err:
        dm.setup("fit")
    assert "\n" not in str(err.value)


def test_image_setup_only_under_generic_studies_and_never_over_an_explicit_one():
    assert with_data_setup(["experiment=removal", "data=image_folder", "-m"]) == \
        ["experiment=removal", "data=image_folder", "setup=image_folder", "-m"]  # before a trailing flag
    for unchanged in (["experiment=smoke_image", "data=image_folder"],      # not a generic study
                      ["experiment=memorization", "data=image_folder", "setup=cifar10"],  # explicit wins
                      ["experiment=memorization", "data=custom"]):
        assert with_data_setup(unchanged) == unchanged
