"""The issue-27 command, offline, for a saved tiny model of each family: `python -m memlab
experiment=memorization data=custom data.path=DIR data.text_column=text data.label_column=category
model.pretrained=FOLDER trainer.max_epochs=1` scores every training row with a finite score. RoBERTa
runs by default (about a minute); GPT-2 (whose tokenizer has no pad token) and the other families are
marked slow."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model"))
from tiny_families import config  # noqa: E402

GOOD, BAD = "great superb lovely fine".split(), "dull awful bland poor".split()
WORDS = sorted(set(GOOD + BAD + "the film was and very rather long".split()))
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<eos>"]
DECODERS = {"gpt2", "llama", "mistral", "qwen2"}


def save_tokenizer(folder: Path, decoder: bool) -> int:
    """A word-level fast tokenizer built offline; encoders get [CLS] ... [SEP], decoders only an eos
    (and no pad token: memlab must give them one). Returns the vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if decoder:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<eos>")
    else:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(folder)
    return len(vocab)


def save_tiny_model(folder: Path, kind: str) -> Path:
    """A random 6-layer (hidden 32) model of ``kind`` and its tokenizer, saved as from the hub."""
    import torch
    from transformers import AutoModel

    vocab = save_tokenizer(folder, kind in DECODERS)
    cfg = config(kind, layers=6)
    cfg.vocab_size = vocab
    if kind == "roberta":
        cfg.pad_token_id = 0
    if kind in DECODERS:
        cfg.eos_token_id = cfg.bos_token_id = SPECIAL.index("<eos>")
        cfg.pad_token_id = None
    torch.manual_seed(0)
    AutoModel.from_config(cfg, attn_implementation="eager").save_pretrained(folder)
    return folder


def write_data(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for split, n, offset in (("train", 40, 0), ("dev", 12, 100), ("test", 12, 200)):
        rows = [{"text": f"the film was {(GOOD if i % 2 else BAD)[i % 4]} and {'very' if i % 3 else 'rather'} long",
                 "category": "fresh" if i % 2 else "rotten"} for i in range(offset, offset + n)]
        pd.DataFrame(rows).to_csv(folder / f"{split}.csv", index=False)
    return folder


def scores_for(tmp_path: Path, kind: str) -> pd.DataFrame:
    model = save_tiny_model(tmp_path / kind, kind)
    data = write_data(tmp_path / "data")
    cmd = [sys.executable, "-m", "memlab", "experiment=memorization", "data=custom", f"data.path={data}",
           "data.text_column=text", "data.label_column=category", f"model.pretrained={model}",
           "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(tmp_path / "run" / "memorization" / "scores.csv")


def check_every_row_scored(table: pd.DataFrame) -> None:
    assert sorted(table["sample_index"]) == list(range(40))
    for column in ("mem_score", "loo_score"):
        if column in table:
            assert np.isfinite(table[column]).all(), column
    assert np.isfinite(table["mem_score"]).all()


def test_the_command_scores_every_row_for_a_saved_tiny_model(tmp_path):
    check_every_row_scored(scores_for(tmp_path, "roberta"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gpt2"])
def test_the_command_scores_every_row_for_a_saved_tiny_decoder(tmp_path, kind):
    check_every_row_scored(scores_for(tmp_path, kind))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert", "distilbert", "electra", "deberta-v2", "llama"])
def test_the_command_scores_every_row_for_every_other_family(tmp_path, kind):
    check_every_row_scored(scores_for(tmp_path, kind))
