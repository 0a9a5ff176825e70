"""Memory that must not grow with the number of training instances (issue #15): the tokenised
splits hold no Python object per example, and reading the on-disk store through the data loader
maps none of its pages (RssFile stays flat)."""
from __future__ import annotations

import gc
import sys
import types

import pytest
import torch

from memlab.data.columns import ColumnDataset, RaggedColumn
from memlab.data.disk_store import StoreWriter, open_store
from memlab.data.text import TextDataModule
from memlab.utils.memory import resident_memory

MIB = 1024 ** 2


def text_module(n_train: int, **kw) -> TextDataModule:
    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated", generated_sizes=(n_train, 8, 8),
                        batch_size=8, **kw)
    dm.setup()
    return dm


def reachable(root) -> list:
    """Every object reachable from ``root`` (not through classes, modules or functions), once each."""
    seen, stack, out = set(), [root], []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType, types.MethodType)):
            continue
        seen.add(id(obj))
        out.append(obj)
        stack.extend(gc.get_referents(obj))
    return out


def footprint(root) -> tuple[int, int]:
    """(number of tensors and dicts, bytes) held by ``root``: Python objects' sizes plus, once per
    storage, the bytes of each tensor's storage."""
    objects, storages, size, count = reachable(root), {}, 0, 0
    for obj in objects:
        if isinstance(obj, torch.Tensor):  # its Python object (getsizeof would add its data), then its storage
            count += 1
            size += object.__sizeof__(obj)
            storages[obj.untyped_storage().data_ptr()] = obj.untyped_storage().nbytes()
            continue
        count += isinstance(obj, dict)
        size += sys.getsizeof(obj)
    return count, size + sum(storages.values())


def test_tokenised_split_holds_no_object_per_example():
    """The train split of 2000 examples holds as many tensors and dicts as that of 100, and per
    example at most 64 bytes beyond its token ids and its text (a dict of tensors: ~330+)."""
    small, big = text_module(100), text_module(2000)
    (n_small, _), (n_big, size) = footprint(small.full_train), footprint(big.full_train)
    assert n_big == n_small
    payload = sum(8 * len(e["input_ids"]) + sys.getsizeof(e["text"]) for e in big.full_train.examples)
    assert (size - payload) / len(big.full_train) < 64
    removed = big.full_train.without(big.full_train.sample_indices()[::2])  # a subset shares the columns
    assert len(removed) == 1000 and footprint(removed)[0] == n_small


def test_column_examples_read_as_the_dicts_they_replace():
    dm = text_module(50, exclude=[3, 4])
    e = dm.splits["train"][0]
    assert list(e) == ["input_ids", "labels", "sample_index", "text"]
    assert e["input_ids"].dtype == torch.int64 and e["input_ids"].dim() == 1 and e["labels"].dim() == 0
    assert isinstance(e["sample_index"], int) and isinstance(e["text"], str)
    assert dm.splits["train"].sample_indices() == [i for i in dm.full_train.sample_indices() if i not in (3, 4)]
    tokens = dm.tokenizer(dm.frames["train"]["text"].tolist())["input_ids"]
    assert [e["input_ids"].tolist() for e in dm.full_train.examples] == tokens
    assert dm.full_train.examples[-2:] and len(dm.full_train.examples[:5]) == 5
    with pytest.raises(IndexError):
        dm.full_train[len(dm.full_train)]


@pytest.mark.skipif(not resident_memory(), reason="needs /proc/self/status (Linux)")
def test_reading_the_store_through_the_loader_leaves_rss_file_flat(tmp_path):
    """48 MiB of prefix states read batch by batch through the text loader: the process maps
    (RssFile) less than 4 MiB more, while touching the rows through the mapping maps them all."""
    n, length, width = 3072, 16, 256  # 3072 examples of 16 rows of 256 float32: 48 MiB
    with StoreWriter(tmp_path / "store.pt", {"rows": n}, {"hidden": ((n * length, width), torch.float32)}) as w:
        for start in range(0, n * length, 4096):  # row r holds r
            w.write("hidden", start, torch.arange(start, start + 4096).float()[:, None].expand(-1, width).contiguous())
    store = open_store(tmp_path / "store.pt")
    starts = torch.arange(n) * length
    examples = ColumnDataset({"input_ids": RaggedColumn(torch.ones(n * length, dtype=torch.int64), starts,
                                                        torch.full((n,), length)),
                              "labels": torch.zeros(n, dtype=torch.int64), "sample_index": torch.arange(n),
                              "text": [""] * n, "hidden": store.row_views("hidden", starts, [length] * n)})
    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated")
    dm.collate([examples[0]])  # the tokenizer loaded, the code paths run once
    before = resident_memory()["file"]
    total = sum(float(b["hidden"][:, 0, 0].sum()) for b in dm.loader(examples, False, 64))
    read = resident_memory()["file"] - before
    assert total == sum(float(s) for s in starts)  # every row read, and the right ones
    assert read < 4 * MIB, f"reading the store through the loader mapped {read / MIB:.1f} MiB of it"
    assert float(store.payload["hidden"][:, 0].sum()) > 0  # the control: every page touched through the mapping
    assert resident_memory()["file"] - before > 32 * MIB


def test_prefix_cached_split_holds_no_view_per_example(tmp_path):
    """With the prefix states on disk, a split of 400 examples holds as many tensors as one of 40:
    each example's tagged view is made when it is read, not kept."""
    from memlab.callbacks.prefix_cache import apply_prefix_cache
    from memlab.data.disk_store import is_tagged
    from memlab.model.text_network import build_text_classifier

    net = build_text_classifier("tiny-random", num_classes=2, freeze_layers=4).eval()
    counts = []
    for n in (40, 400):
        dm = text_module(n, exclude=[0])
        apply_prefix_cache(dm, net, "tiny", str(tmp_path))
        counts.append((footprint(dm.full_train)[0], footprint(dm.splits["train"])[0]))
        e = dm.splits["train"][7]
        assert is_tagged(e["hidden"]) and e["hidden"].shape == (len(e["input_ids"]), net.config.hidden_size)
    assert counts[0] == counts[1]


def test_tokenising_in_chunks_gives_the_same_columns(monkeypatch):
    """The tokenizer runs a chunk of texts at a time (its encodings are freed between chunks): the
    columns hold the same token ids as one call over all texts, pairs and token types included."""
    import memlab.data.text as text

    whole = text_module(50)
    monkeypatch.setattr(text, "TOKENIZE_CHUNK", 7)
    chunked = text_module(50)
    assert [e["input_ids"].tolist() for e in chunked.full_train.examples] == \
        [e["input_ids"].tolist() for e in whole.full_train.examples]
    pair = TextDataModule(name="t", tokenizer="tiny-random", source="generated", generated_task="pair", pair=True,
                          generated_sizes=(30, 8, 8), batch_size=8)
    pair.setup()
    frame = pair.frames["train"]
    reference = pair.tokenizer(frame["text"].tolist(), frame["text_pair"].tolist())
    assert [e["token_type_ids"].tolist() for e in pair.full_train.examples] == reference["token_type_ids"]
    assert [e["input_ids"].tolist() for e in pair.full_train.examples] == reference["input_ids"]


def test_image_feature_split_holds_no_object_per_example(tmp_path):
    """The image features' train split of 200 examples holds as many tensors and dicts as that of 20
    (the features are lazy views of the store), and its examples still read as before: a tagged view
    as stored, float32 features read from the store through the loader, a label flip per chosen one."""
    from memlab.data.disk_store import is_tagged
    from memlab.data.image import ImageFeatureDataModule

    counts = []
    for n in (20, 200):
        dm = ImageFeatureDataModule(source="generated", backbone="random", train_size=n, val_size=8, test_size=8,
                                    seed=3, batch_size=8, cache_dir=str(tmp_path / f"cache{n}"), device="cpu",
                                    exclude=[0])
        dm.setup()
        counts.append((footprint(dm.full_train)[0], footprint(dm.splits["train"])[0]))
    assert counts[0] == counts[1]
    stored, loaded = dm.splits["train"].examples[3], dm.splits["train"][3]
    assert is_tagged(stored["features"]) and not is_tagged(loaded["features"])
    assert loaded["features"].dtype == torch.float32 and torch.equal(loaded["features"], stored["features"].float())
    dm.label_noise = 0.1  # the label-noise benchmark's flips: from the label column, no features read
    noisy = dm.with_label_noise(dm.full_train)
    position = {i: p for p, i in enumerate(noisy.sample_indices())}
    flips = dm.label_flips
    assert len(flips) == 20 and type(noisy) is type(dm.full_train)
    assert all(int(noisy.examples[position[i]]["labels"]) == y for i, y in zip(flips["sample_index"], flips["noisy_label"]))
