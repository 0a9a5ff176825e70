"""Where text corpora come from: the HF hub (the real loading code), a local folder in the CSV layout
of the study's data (``label,sentence[,sentence2],sample_index``), or a small generated corpus for
tests. Every reader returns ``{"train","val","test"} -> DataFrame(text, [text_pair,] label, sample_index)``.

``sst2_phrases`` is SST-2 as GLUE has it: every labelled phrase of the training trees for training,
the sentences for dev and test (:func:`sst_phrases`, :func:`read_local_phrases`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import DataError
from .empty_texts import check_no_empty_texts

TEXT_COLUMNS = ("sentence", "text", "sentence1", "premise")
PAIR_COLUMNS = ("sentence2", "hypothesis", "text_pair")
SPLIT_FILES = {"train": ("train.csv",), "val": ("dev.csv", "val.csv", "validation.csv"), "test": ("test.csv",)}
HUB_IDS = {"sst2": "SetFit/sst2", "snli": "stanfordnlp/snli", "yahoo": "community-datasets/yahoo_answers_topics",
           "sst2_phrases": "nyu-mll/glue"}
PHRASE_DATASETS = ("sst2_phrases",)
log = logging.getLogger("memlab")


def _standardize(df: pd.DataFrame, path: Path, num_classes: int, pair: bool) -> pd.DataFrame:
    if len(df) == 0:
        raise DataError(f"{path}: empty split (no rows)")
    if "label" not in df.columns:
        raise DataError(f"{path}: missing column 'label' (columns: {', '.join(df.columns)})")
    text_col = next((c for c in TEXT_COLUMNS if c in df.columns), None)
    if text_col is None:
        raise DataError(f"{path}: missing a text column (one of {', '.join(TEXT_COLUMNS)})")
    out = pd.DataFrame({"text": df[text_col].fillna("").astype(str)})
    if pair:
        pair_col = next((c for c in PAIR_COLUMNS if c in df.columns), None)
        if pair_col is None:
            raise DataError(f"{path}: missing the second sentence column (one of {', '.join(PAIR_COLUMNS)})")
        out["text_pair"] = df[pair_col].fillna("").astype(str)
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = labels.isna() | ~labels.isin(range(num_classes))
    if bad.any():
        row = int(np.argmax(bad.values))
        raise DataError(f"{path}: unknown label {_plain(df['label'].iloc[row])!r} in row {row + 1} (line {row + 2}); "
                        f"data.num_classes={num_classes} allows 0..{num_classes - 1}")
    out["label"] = labels.astype(int).values
    out["sample_index"] = _sample_index(df, path)
    repeated = out["sample_index"][out["sample_index"].duplicated()].unique()
    if len(repeated):
        shown = ", ".join(str(int(i)) for i in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        raise DataError(f"{path}: {len(repeated)} sample_index values occur more than once ({shown}); "
                        f"each row needs its own sample_index")
    return out.reset_index(drop=True)


def _plain(value):
    """A numpy scalar as the Python value it holds (messages show 7, not np.int64(7))."""
    return value.item() if hasattr(value, "item") else value


def _sample_index(df: pd.DataFrame, path: Path) -> np.ndarray:
    if "sample_index" not in df.columns:
        return np.arange(len(df))
    values = pd.to_numeric(df["sample_index"], errors="coerce")
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.argmax(bad.values))
        raise DataError(f"{path}: sample_index {_plain(df['sample_index'].iloc[row])!r} in row {row + 1} "
                        f"(line {row + 2}) is not an integer")
    return values.astype(np.int64).values


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV file as a frame; any reading problem is one DataError naming the file."""
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                        f"save it as UTF-8") from None
    except (pd.errors.ParserError, OSError) as err:
        raise DataError(f"{path}: cannot be read as CSV ({' '.join(str(err).split())[:160]})") from None


def carve_split(df: pd.DataFrame, n: int | float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, carved): a seeded sample of ``n`` rows (or a fraction) taken out of ``df``, stratified by
    label (each class gives its share, largest remainders first), so a balanced file splits balanced."""
    k = min(int(round(n * len(df))) if isinstance(n, float) and n < 1 else int(n), len(df))
    counts = df["label"].value_counts().sort_index()
    exact = counts * k / len(df)
    quota = np.floor(exact).astype(int)
    short = k - int(quota.sum())
    quota[(exact - quota).sort_values(ascending=False, kind="stable").index[:short]] += 1
    carved = pd.concat([df[df["label"] == label].sample(n=int(q), random_state=seed)
                        for label, q in quota.items() if q > 0]) if k else df.iloc[:0]
    carved = carved.sort_index()
    return df.drop(carved.index).reset_index(drop=True), carved.reset_index(drop=True)


def read_local(data_dir: str | os.PathLike, num_classes: int, pair: bool, seed: int,
               val_size: float | int = 0.1, test_size: float | int = 0.1,
               split_from_train: bool = False, drop_empty: bool = False) -> dict[str, pd.DataFrame]:
    """The study's CSV layout. A missing dev or test file is an error, unless ``split_from_train``:
    then that split is a seeded sample carved out of train.csv. Empty texts are an error naming their
    rows unless ``drop_empty`` (then the data module drops them)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"data.dir={data_dir} is not a folder; point data.dir at a folder with train.csv")
    splits = {}
    for split, names in SPLIT_FILES.items():
        found = next((root / n for n in names if (root / n).is_file()), None)
        if found is not None:
            splits[split] = _standardize(read_csv(found), found, num_classes, pair)
            check_no_empty_texts(splits[split], str(found), drop_empty)
    if "train" not in splits:
        raise DataError(f"{root}/train.csv not found; point data.dir at a folder with train.csv")
    missing = [split for split in ("test", "val") if split not in splits]
    if missing and not split_from_train:
        files = " and ".join(SPLIT_FILES[s][0] for s in missing)
        raise DataError(f"{root} has no {files}; add it, or pass data.split_from_train=true for a seeded "
                        f"split of train.csv")
    return carve_missing_splits(splits, val_size, test_size, seed)


def carve_missing_splits(splits: dict[str, pd.DataFrame], val_size: float | int, test_size: float | int,
                         seed: int) -> dict[str, pd.DataFrame]:
    """A missing test, then val, split carved out of train (seeded, stratified: :func:`carve_split`)."""
    if "test" not in splits:
        splits["train"], splits["test"] = carve_split(splits["train"], test_size, seed)
    if "val" not in splits:
        splits["train"], splits["val"] = carve_split(splits["train"], val_size, seed + 1)
    return splits


# -- the hub --------------------------------------------------------------------------------------
def _hub_error(hub_id: str, e: Exception) -> DataError:
    return DataError(f"could not load {hub_id} from the hub ({type(e).__name__}); offline? use "
                     "data.source=local data.dir=DIR (e.g. ../shared/data/sst2) or data.source=generated")


def _balanced(df: pd.DataFrame, n_per_class: int | None, seed: int) -> pd.DataFrame:
    """Every class down-sampled to ``n_per_class`` (default: the smallest class), seeded."""
    n = n_per_class or df["label"].value_counts().min()
    parts = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in df.groupby("label")]
    return pd.concat(parts).sort_index()


def read_hub(name: str, seed: int, hub_id: str | None = None, train_size: int | None = None,
             eval_size: int | None = None) -> dict[str, pd.DataFrame]:
    """sst2 (sentence level, 6920/872/1821), sst2_phrases (GLUE's 67,349 train phrases, the sst2
    sentences for dev/test), snli (entailment vs not, balanced 10k train sample and
    the balanced dev/test of the study: 6658/6736), yahoo (seeded 1000 per class for each split)."""
    try:
        from datasets import load_dataset

        if name == "sst2":
            ds = load_dataset(hub_id or HUB_IDS["sst2"])
            frames = {s: ds[h].to_pandas().rename(columns={"text": "text"})[["text", "label"]]
                      for s, h in (("train", "train"), ("val", "validation"), ("test", "test"))}
        elif name == "sst2_phrases":  # GLUE's SST-2 train split: 67,349 phrases; dev/test: the sentences
            glue = load_dataset(hub_id or HUB_IDS["sst2_phrases"], "sst2", split="train").to_pandas()
            train = pd.DataFrame({"text": glue["sentence"].astype(str).str.strip(), "label": glue["label"]})
            train.index = glue["idx"].astype(int).to_numpy()  # GLUE's own id: the stable sample_index
            ds = load_dataset(HUB_IDS["sst2"])
            frames = {"train": train.drop_duplicates("text")}
            for s, h in (("val", "validation"), ("test", "test")):
                frames[s] = ds[h].to_pandas()[["text", "label"]]
        elif name == "snli":
            ds = load_dataset(hub_id or HUB_IDS["snli"])
            frames = {}
            for s, h in (("train", "train"), ("val", "validation"), ("test", "test")):
                df = ds[h].to_pandas()
                df = df[df["label"] >= 0]
                df = pd.DataFrame({"text": df["premise"], "text_pair": df["hypothesis"],
                                   "label": (df["label"] == 0).astype(int)})
                frames[s] = _balanced(df, (train_size or 10000) // 2 if s == "train" else None, seed)
        elif name == "yahoo":
            ds = load_dataset(hub_id or HUB_IDS["yahoo"])
            frames = {}
            full_train = ds["train"].to_pandas()
            test = ds["test"].to_pandas()
            for s, src in (("train", full_train), ("val", full_train), ("test", test)):
                text = (src["question_title"].fillna("") + " ; " + src["question_content"].fillna("")
                        + " ; " + src["best_answer"].fillna(""))
                df = pd.DataFrame({"text": text, "label": src["topic"]})
                if s == "val":  # disjoint from train: drop the train sample first
                    df = df.drop(frames["train"].index)
                n = (train_size if s == "train" else eval_size) or 10000
                frames[s] = _balanced(df, n // 10, seed + (s == "val"))
        else:
            raise DataError(f"no hub reader for data.name={name}; use data.source=local")
    except DataError:
        raise
    except Exception as e:  # network, missing dataset, bad schema
        raise _hub_error(hub_id or name, e) from None
    out = {}
    for s, df in frames.items():
        df = df.copy()
        df["sample_index"] = df.index.astype(int)  # row in the original hub split: stable
        out[s] = df.reset_index(drop=True)
    return out


# -- SST phrases ----------------------------------------------------------------------------------
def sst_phrases(trees: Iterable) -> tuple[pd.DataFrame, dict]:
    """Every labelled phrase of the SST ``trees`` (parsed, :func:`memlab.data.sst_trees.parse_tree`),
    as GLUE's phrase-level SST-2: each node, words and whole sentences included, with its fine-grained
    label 0-1 -> 0 (negative), 3-4 -> 1 (positive), 2 (neutral) left out. The text is the phrase's
    words in the form of the study's sentence CSVs (:func:`memlab.data.sst_trees.normalize_text`:
    lower case, punctuation removed), so phrases, dev and test sentences look alike; phrases are
    deduplicated by that text (the majority label of its occurrences, ties: the first one's).
    ``sample_index`` numbers the phrases in order of first occurrence (trees in file order, nodes
    pre-order). Returns (frame, counts: nodes, polar_nodes, phrases, label_conflicts, empty)."""
    from .sst_trees import normalize_text, tree_sentence

    first_label: dict[str, int] = {}
    votes: dict[str, list[int]] = {}
    nodes = polar = empty = 0
    for tree in trees:
        for node in tree.iter_nodes():
            nodes += 1
            if node.label == 2:
                continue
            if node.label not in (0, 1, 3, 4):
                raise DataError(f"SST tree node label {node.label} is not one of 0-4")
            polar += 1
            text = normalize_text(tree_sentence(node))
            if not text:  # only punctuation
                empty += 1
                continue
            y = int(node.label >= 3)
            counts = votes.setdefault(text, [0, 0])
            counts[y] += 1
            first_label.setdefault(text, y)
    texts = list(first_label)  # insertion order: first occurrence
    labels = [int(votes[t][1] > votes[t][0]) if votes[t][0] != votes[t][1] else first_label[t] for t in texts]
    conflicts = sum(1 for t in texts if min(votes[t]) > 0)
    frame = pd.DataFrame({"text": texts, "label": labels, "sample_index": np.arange(len(texts), dtype=np.int64)})
    return frame, {"nodes": nodes, "polar_nodes": polar, "phrases": len(texts), "label_conflicts": conflicts,
                   "empty": empty}


def read_local_phrases(data_dir: str | os.PathLike, seed: int) -> dict[str, pd.DataFrame]:
    """``sst2_phrases`` from a local folder: the train phrases of ``<dir>/trees/train.txt`` (PTB trees,
    fine-grained labels), dev/test the sentences of dev.csv / test.csv as ``data=sst2`` reads them."""
    from .sst_trees import read_trees

    root = Path(data_dir)
    trees_file = root / "trees" / "train.txt"
    if not trees_file.is_file():
        raise DataError(f"{trees_file} not found; data=sst2_phrases with data.source=local needs the SST "
                        f"treebank's PTB files in <data.dir>/trees (e.g. data.dir=../shared/data/sst2)")
    splits = read_local(root, 2, False, seed)  # dev/test must be there: never carved out of train
    try:
        trees = read_trees(trees_file)
    except ValueError as err:
        raise DataError(f"{trees_file}: not a PTB tree file ({err})") from None
    splits["train"], counts = sst_phrases(trees)
    log.info("sst2_phrases: %d phrases from %d trees of %s (%d nodes, %d not neutral, %d texts with "
             "conflicting labels)", counts["phrases"], len(trees), trees_file, counts["nodes"],
             counts["polar_nodes"], counts["label_conflicts"])
    return splits


def hub_offline_needs(name: str, hub_id: str | None = None) -> list[tuple[str, str]]:
    """``data.source=hub``: nothing when the data set is in the datasets cache or the hub answers, else
    what needs the download and the override that avoids it."""
    from ..utils.network import hub_dataset_cached, hub_offline, hub_reachable

    repo = hub_id or HUB_IDS.get(name, name)
    if hub_offline() or not (hub_dataset_cached(repo) or hub_reachable()):
        return [(f"data.source=hub ({name})", "data.source=local data.dir=DIR")]
    return []


def limit_rows(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A seeded sample of ``n`` rows of ``df`` in their original order (all rows when n is None or larger)."""
    if n is None or int(n) >= len(df):
        return df
    if int(n) < 1:
        raise DataError(f"data.limit_train={n}: pass a positive number of training examples (or null for all)")
    return df.sample(n=int(n), random_state=seed).sort_index().reset_index(drop=True)


# -- generated ------------------------------------------------------------------------------------
_POS = "good great fine lovely superb brilliant moving charming delightful wonderful".split()
_NEG = "bad awful dull boring poor terrible weak tedious bland messy".split()
_FILL = "the a film movie story plot actor scene is was and but it this that very quite rather so".split()
_TOPICS = ["sport ball team game goal", "music song band album guitar", "money bank stock price trade",
           "health doctor pain drug sleep"]
_PAIR = "man woman dog cat child runs sits eats plays walks outside inside park street beach".split()


def generate(task: str, sizes: tuple[int, int, int], seed: int, noise: float = 0.1) -> dict[str, pd.DataFrame]:
    """A learnable toy corpus: sentiment (2 classes), pair (entails iff the hypothesis repeats a
    premise word), topic (4 classes). ``noise`` of the train labels are flipped (memorization fodder)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in zip(("train", "val", "test"), sizes):
        rows = []
        for _ in range(n):
            if task == "sentiment":
                y = int(rng.integers(2))
                cue = rng.choice(_POS if y else _NEG, size=int(rng.integers(1, 3)))
                words = list(rng.choice(_FILL, size=int(rng.integers(3, 9)))) + list(cue)
                rng.shuffle(words)
                rows.append({"text": " ".join(words), "label": y})
            elif task == "pair":
                premise = list(rng.choice(_PAIR, size=4, replace=False))
                y = int(rng.integers(2))
                hyp = [premise[int(rng.integers(4))]] if y else list(rng.choice([w for w in _PAIR if w not in premise], 1))
                hyp += list(rng.choice(_FILL, size=2))
                rows.append({"text": " ".join(premise), "text_pair": " ".join(hyp), "label": y})
            elif task == "topic":
                y = int(rng.integers(len(_TOPICS)))
                words = list(rng.choice(_TOPICS[y].split(), size=3)) + list(rng.choice(_FILL, size=4))
                rng.shuffle(words)
                rows.append({"text": " ".join(words), "label": y})
            else:
                raise DataError(f"unknown generated task {task!r} (sentiment, pair, topic)")
        df = pd.DataFrame(rows)
        if split == "train" and noise > 0:
            flip = rng.random(n) < noise
            k = df["label"].max() + 1
            df.loc[flip, "label"] = (df.loc[flip, "label"] + 1) % max(k, 2)
        df["sample_index"] = np.arange(n)
        out[split] = df
    return out
