"""Attributing memorization to tokens / image regions (Eq. 5) and testing it (reduction rate, Eq. 6)
for the top memorized training instances of a scored run, outside Lightning.

For each instance z: s = (H + λI)⁻¹ ∇θP(y|x) from the scoring solver, then the path integral of
:func:`memlab.influence.attribution.memorization_attributions` at the input of the first trainable
layer (the study's placement; the baseline is the same sequence with every token [MASK]ed) or on the
image feature grid (zero baseline). Returns records (one dict per instance); the callback writes them
(attributions.jsonl) and :mod:`memlab.report.plots` draws them.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.disk_store import materialize
from ..influence.attribution import memorization_attribution, memorization_attributions
from ..influence.functional import Params, TrainingObjective, gold_probability, per_example_grads
from ..influence.masking import mask_all_tokens, mask_cells
from ..influence.reduction import DEFAULT_K_PERCENTS, image_reduction_curve, reduction_curve
from ..influence.self_influence import memorization_scores
from ..influence.sampling import eval_mode
from ..studies.ranking import rank_by_memorization, top_count


def top_instances(scores: pd.DataFrame, top_pct: float) -> list[int]:
    """sample_index of the top ``top_pct``% memorized instances (at least one), most memorized first."""
    n = top_count(len(scores), top_pct, at_least_one=True)
    return rank_by_memorization(scores, "rank", ascending=True)["sample_index"].head(n).astype(int).tolist()


def top_of_each_class(scores: pd.DataFrame) -> list[int]:
    """sample_index of every class's most memorized instance, in label order."""
    ordered = rank_by_memorization(scores, "rank", ascending=True)
    return ordered.groupby("label", sort=True)["sample_index"].first().astype(int).tolist()


def influence_directions(module: nn.Module, params: Params, solver, batch: dict, objective: TrainingObjective) -> Tensor:
    """s = (H + λI)⁻¹ ∇θP(y|x) for every example of a batch ([B, P]); ∇P = −P·∇CE."""
    ce = TrainingObjective(l2=objective.l2, l2_names=objective.l2_names, l2_in_example_grad=False)
    with eval_mode(module):  # dropout off: s is a property of the trained model
        grads, probs = per_example_grads(module, params, batch, ce)
    v = -gold_probability(probs, batch["labels"]).to(grads.dtype).unsqueeze(1) * grads
    return solver.solve(v)


def _pad_texts(examples: list[dict], pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(input_ids, attention_mask, hidden (zeros at padding), labels) of a group of instances."""
    pad = torch.nn.utils.rnn.pad_sequence
    ids = pad([e["input_ids"] for e in examples], batch_first=True, padding_value=pad_id)
    mask = pad([torch.ones_like(e["input_ids"]) for e in examples], batch_first=True)
    # the prefix states are views of the on-disk store: read with pread, not through its mapping
    hidden = pad([materialize(e["hidden"]).float() for e in examples], batch_first=True) if "hidden" in examples[0] else None
    labels = torch.stack([e["labels"].view(()) for e in examples])
    return ids, mask, hidden, labels


def _by_length(examples: list[dict], group_size: int) -> list[list[int]]:
    """Positions of ``examples`` in groups of similar length (little padding per group)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i]["input_ids"]), i))
    return [order[i:i + group_size] for i in range(0, len(order), group_size)]


def special_token_ids(tokenizer) -> list[int]:
    """[CLS]/[SEP] of an encoder's tokenizer; a decoder's (which has neither) bos/eos."""
    ids = [i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None]
    return ids or [i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id) if i is not None]


def baseline_token_id(tokenizer) -> int:
    """The token of the baseline x': [MASK], else (decoders have none) unk, else pad."""
    for i in (tokenizer.mask_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id):
        if i is not None:
            return i
    return 0


def attribute_text(net, module: nn.Module, params: Params, solver, objective: TrainingObjective, examples: list[dict],
                   tokenizer, steps: int = 50, rule: str = "left", mask_special: bool = True,
                   placement: str = "layer", progress: bool = True, group_size: int = 1) -> list[dict]:
    """Eq. 5 token attributions for ``examples`` (dicts with input_ids, hidden, labels, sample_index);
    one record per instance, in the order given. ``placement``: ``layer`` = the input of the first
    trainable layer (the study's code), ``embeddings`` = the word embeddings (the paper's text). The
    baseline is the same sequence with every token [MASK]ed ([CLS]/[SEP] too unless
    ``mask_special=False``). ``group_size`` > 1 attributes instances of similar length together (vmapped
    over instances; padding positions have X = X' and get no attribution) — measured slower on CPU
    than one instance at a time (0.91 vs 0.62 s per SST-2 instance at 8), hence the default of 1."""
    special_ids = special_token_ids(tokenizer)
    if placement not in ("layer", "embeddings"):
        raise ValueError(f"attribution placement must be layer or embeddings, got {placement!r}")
    path_module, path_params, input_key = module, params, "hidden"
    if placement == "embeddings":
        from ..model.text_network import EmbeddingsToLogits

        path_module = EmbeddingsToLogits(net)
        path_params, input_key = {f"suffix.{k}": v for k, v in params.items()}, "inputs_embeds"
    pad_id = tokenizer.pad_token_id or 0
    records: list[dict | None] = [None] * len(examples)
    bar = tqdm(total=len(examples), desc="memorization attribution", disable=not progress, unit="inst",
               dynamic_ncols=True)
    for group in _by_length(examples, group_size):
        chosen = [examples[i] for i in group]
        ids, mask, hidden, labels = _pad_texts(chosen, pad_id)
        baseline_ids = mask_all_tokens(ids, mask, special_ids, baseline_token_id(tokenizer), mask_special=mask_special)
        batch = {"hidden": hidden, "attention_mask": mask, "labels": labels}
        s = influence_directions(module, params, solver, batch, objective)
        with torch.no_grad():
            if placement == "layer":
                x = hidden
                baseline = net.prefix(baseline_ids, mask) * mask.unsqueeze(-1).to(hidden.dtype)
            else:
                x, baseline = path_module.word_embeddings(ids), path_module.word_embeddings(baseline_ids)
        result = memorization_attributions(path_module, path_params, s, {input_key: x, "attention_mask": mask},
                                           baseline, labels, input_key=input_key, steps=steps, rule=rule,
                                           batch_instances=len(group))
        for j, (i, ex) in enumerate(zip(group, chosen)):
            length = len(ex["input_ids"])
            records[i] = {"sample_index": int(ex["sample_index"]), "label": int(ex["labels"]),
                          "tokens": tokenizer.convert_ids_to_tokens(ex["input_ids"].tolist()),
                          "attributions": [float(a) for a in result.attributions[j, :length]],
                          "replace_score": float(result.replace_score[j]),
                          "attribution_total": float(result.total[j]),
                          "completeness_gap": float(result.completeness_gap[j])}
        bar.update(len(group))
    bar.close()
    return records


def text_reduction_rate(net, module: nn.Module, params: Params, solver, objective: TrainingObjective,
                        examples: list[dict], records: list[dict], mem_scores: Tensor, tokenizer,
                        random_draws: int = 3, seed: int = 0, batch_size: int = 32, progress: bool = True) -> list[dict]:
    """Eq. 6 for k = 10..90%: mask the top-k% attributed (or random) tokens, re-score with the same solver."""
    ids, mask, _, labels = _pad_texts(examples, tokenizer.pad_token_id or 0)
    special = torch.isin(ids, torch.tensor(special_token_ids(tokenizer), dtype=ids.dtype))
    attributions = torch.zeros(ids.shape, dtype=torch.float64)
    for i, r in enumerate(records):
        attributions[i, : len(r["attributions"])] = torch.tensor(r["attributions"])
    groups = _by_length(examples, batch_size)
    rescorings = len(DEFAULT_K_PERCENTS) * (1 + random_draws)
    bar = tqdm(total=rescorings * len(examples), desc="reduction rate", disable=not progress, unit="inst",
               dynamic_ncols=True)

    def rescore(masked_ids: Tensor) -> Tensor:
        out = torch.empty(len(masked_ids), dtype=torch.float64)
        for group in groups:  # similar lengths together, each batch cut to its longest sequence
            rows = torch.tensor(group)
            length = int(mask[rows].sum(-1).max())
            group_ids, group_mask = masked_ids[rows, :length], mask[rows, :length]
            with torch.no_grad():
                hidden = net.prefix(group_ids, group_mask)
            batch = {"hidden": hidden, "attention_mask": group_mask, "labels": labels[rows]}
            out[rows] = torch.cat([r["mem_score"] for r in memorization_scores(module, params, [batch], solver,
                                                                                  objective)]).double()
            bar.update(len(group))
        return out

    rows = reduction_curve(ids, mask, special, mem_scores.double(), rescore, attributions, baseline_token_id(tokenizer),
                           random_draws=random_draws, seed=seed)
    bar.close()
    return rows


def attribute_images(module: nn.Module, params: Params, solver, objective: TrainingObjective, examples: list[dict],
                     steps: int = 50, rule: str = "left", progress: bool = True) -> list[dict]:
    """Eq. 5 on the feature grid: one score per grid cell (zero feature map as the baseline)."""
    records = []
    for ex in tqdm(examples, desc="memorization attribution", disable=not progress, unit="inst"):
        feats = materialize(ex["features"]).float()  # a view of the feature store: read with pread
        batch = {"features": feats.unsqueeze(0), "labels": ex["labels"].view(1)}
        s = influence_directions(module, params, solver, batch, objective)[0]
        result = memorization_attribution(module, params, s, {"features": feats}, torch.zeros_like(feats),
                                          ex["labels"], input_key="features", steps=steps, rule=rule, objective=objective)
        records.append({"sample_index": int(ex["sample_index"]), "label": int(ex["labels"]),
                        "attributions": result.attributions.tolist(), "replace_score": float(result.replace_score),
                        "attribution_total": float(result.total), "completeness_gap": float(result.completeness_gap)})
    return records


def image_reduction_rate(module: nn.Module, params: Params, solver, objective: TrainingObjective, examples: list[dict],
                         records: list[dict], mem_scores: Tensor, random_draws: int = 3, seed: int = 0,
                         batch_size: int = 32, progress: bool = True) -> list[dict]:
    """Eq. 6 for k = 10..90% of the grid cells: set the top-k% attributed (or random) cells to the zero
    baseline, re-score with the same solver (as :func:`text_reduction_rate`)."""
    attributions = torch.tensor([r["attributions"] for r in records], dtype=torch.float64)  # [n, H, W]
    labels = torch.stack([e["labels"].view(()) for e in examples])
    batches = [torch.arange(i, min(i + batch_size, len(examples))) for i in range(0, len(examples), batch_size)]
    rescorings = len(DEFAULT_K_PERCENTS) * (1 + random_draws)
    bar = tqdm(total=rescorings * len(examples), desc="reduction rate", disable=not progress, unit="inst",
               dynamic_ncols=True)

    def rescore(chosen: Tensor) -> Tensor:
        out = torch.empty(len(examples), dtype=torch.float64)
        for rows in batches:  # features read back per batch: never all n masked maps at once
            feats = torch.stack([materialize(examples[i]["features"]).float() for i in rows.tolist()])
            batch = {"features": mask_cells(feats, chosen[rows]), "labels": labels[rows]}
            out[rows] = torch.cat([r["mem_score"] for r in memorization_scores(module, params, [batch], solver,
                                                                                  objective)]).double()
            bar.update(len(rows))
        return out

    rows = image_reduction_curve(mem_scores.double(), rescore, attributions, random_draws=random_draws, seed=seed)
    bar.close()
    return rows
