"""EK-FAC (George et al. 2018; Grosse et al. 2023): a Kronecker-factored eigenbasis of the Fisher per
``nn.Linear`` with eigenvalues re-fitted on per-example gradients, the estimator of (H + λI)⁻¹ that
scales to millions of parameters. This module fits it, solves with it and saves its state; the
per-example gradient factors come from :mod:`memlab.influence.tracking`, the fast self-influence
path from :mod:`.ekfac_scoring`.

For every Linear whose weight is in θ, hooks record the layer input a (with a homogeneous 1 when its
bias is in θ) and the gradient g of the loss with respect to its output, both summed over the tokens
that carry gradient (padding, and in a transformer's last layer every position but [CLS], do not):

    A = Σ a aᵀ,  G = Σ g gᵀ  ->  A = Q_A Λ_A Q_Aᵀ,  G = Q_G Λ_G Q_Gᵀ
    Λ[o, i] = mean over examples of (Q_Gᵀ DW Q_A)[o, i]²,   DW = Σ_t g_t a_tᵀ (one example's gradient)

with the loss on labels sampled from the model (the true Fisher, which for cross-entropy is the
Gauss-Newton part of H; ``labels="sampled"``), the exact expectation over all classes
(``"expected"``, C backward passes) or the gold labels (the empirical Fisher, ``"gold"``). Other
parameters (LayerNorm, anything not a Linear weight) get a diagonal E[g²]. The L2 term 2·l2·I of H
is added exactly: its projection on the eigenbasis (2·l2 where the whole block is covered).

    (H + λI)⁻¹ v = Q_G [(Q_Gᵀ V Q_A) / (Λ + 2·l2 + λ)] Q_Aᵀ   per Linear,   v / (E[g²] + 2·l2 + λ) elsewhere.

The scoring pass (:mod:`.ekfac_scoring`) can rotate only the top directions of each Linear's larger
side and account for the rest with a Gram-matrix residual (``score_tolerance``, :mod:`.truncation`):
an expected relative error of the quadratic form chosen up front (SST-2: the pass 1.1-1.5x faster).

Written here rather than wrapping kronfluence: kronfluence took 14 min to fit factors on memlab's
MiniLM suffix on this machine, does not handle LayerNorm parameters or the study's L2 term, and
scores through its own Task/Analyzer objects rather than memlab's flat θ, batches and DDP hook.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, flatten, unflatten
from ..sampling import eval_mode, on_device, params_device, seeded_subsample, summed
from ..tracking import Factors, FactorTracker, carries_gradient
from .base import InverseHessianSolver
from .eigenbasis import EigenBlock, eigenvectors, summed_squares
from .ekfac_scoring import EKFACSelfInfluence
from .precision import usable_low_precision

LABEL_MODES = ("sampled", "expected", "gold")
ROTATION_DTYPES = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


class EKFACSolver(InverseHessianSolver):
    """Eigenvalue-corrected Kronecker-factored (H + λI)⁻¹; ``fit_examples`` (seeded) examples per process."""

    name = "ekfac"
    holds_eigenvalues = True
    has_self_influence_terms = True

    def __init__(self, damping: float = 0.0, fit_examples: int | None = 2000, labels: str = "sampled",
                 seed: int = 0, batch_size: int | None = None, rotation_dtype: str | None = None,
                 fit_dtype: str | None = None, score_dtype: str | None = None,
                 score_tolerance: float | None = None, exact_logits: bool = True):
        super().__init__(damping)
        if labels not in LABEL_MODES:
            raise ValueError(f"ekfac: labels must be one of {LABEL_MODES}, got {labels!r}")
        if rotation_dtype not in ROTATION_DTYPES:
            raise ValueError(f"ekfac: rotation_dtype must be one of {sorted(ROTATION_DTYPES, key=str)}, "
                             f"got {rotation_dtype!r}")
        for option, value in (("fit_dtype", fit_dtype), ("score_dtype", score_dtype)):
            if value not in (None, "bfloat16"):
                raise ValueError(f"ekfac: {option} must be null or 'bfloat16', got {value!r}")
        self.fit_examples, self.labels, self.seed, self.batch_size = fit_examples, labels, int(seed), batch_size
        # the fit's forward/backward passes under bfloat16 autocast (~3x faster on AVX512-BF16 CPUs and
        # GPUs): they only estimate eigenbases and eigenvalues, whose sampling noise (another seed's
        # 2000 examples) is far larger than bf16 rounding (scoring has its own option, score_dtype)
        self.fit_dtype = fit_dtype
        # the scoring pass's backward (the per-example gradient factors) under bf16 autocast, seeded
        # with the logit gradient of a full-precision forward: P(y|x), the loss and the size of ∇L stay
        # exact; the factors carry ~0.5% rounding, the same order as the bf16 rotations they feed
        self.score_dtype = score_dtype
        # with score_dtype: P(y|x), the loss and the backward's seed from a separate float32 forward
        # (exact; ~2/3 of the scoring pass's forward/backward on a CPU), else from the bf16 one
        self.exact_logits = bool(exact_logits)
        # per-example rotations in bfloat16 (float32 accumulation, squares in float32): 2-3x faster on
        # CPUs with AVX512-BF16 and GPUs; each rotated entry carries ~0.4% rounding, which averages out
        # in the sums over millions of entries (benchmarks/bench_scores.py reports the ranking change)
        self.rotation_dtype = rotation_dtype
        # the scoring pass on a truncated eigenbasis (:mod:`.truncation`): per Linear, the fewest
        # eigen-directions of its larger side whose expected relative error of the quadratic form is at
        # most this (None: every direction, exact)
        if score_tolerance is not None and not 0 < float(score_tolerance) < 1:
            raise ValueError(f"ekfac: score_tolerance must be null or in (0, 1), got {score_tolerance!r}")
        self.score_tolerance = None if score_tolerance is None else float(score_tolerance)
        self.tracker: FactorTracker | None = None
        self.blocks: list[EigenBlock] = []
        self.diagonal: dict[str, Tensor] = {}  # E[g²] + 2·l2·[covered]
        self._weights_cache: tuple[tuple, list[Tensor]] | None = None
        self._bases_cache: tuple[tuple, list[tuple[Tensor, Tensor]]] | None = None
        self._scoring: EKFACSelfInfluence | None = None

    def _bind(self, module: nn.Module, params: Params) -> None:
        """Find the model's Linears and hooked parameters; forget statistics cached from another fit."""
        self.tracker = FactorTracker(module, params)
        self.blocks = [EigenBlock(b.module, b.weight, b.bias, b.transposed) for b in self.tracker.blocks]
        self._forget_caches()

    def _forget_caches(self) -> None:
        self._weights_cache = self._bases_cache = None
        self._scoring = None

    # -- precision --------------------------------------------------------------------------------
    def _fit_autocast(self, dtype: torch.dtype) -> torch.dtype | None:
        """The autocast dtype of the fit passes: ``fit_dtype`` for a float32 model, else None."""
        requested = torch.bfloat16 if self.fit_dtype == "bfloat16" and dtype == torch.float32 else None
        return usable_low_precision(requested, self._device())

    def score_autocast(self) -> torch.dtype | None:
        """The autocast dtype of the scoring pass: ``score_dtype`` for a float32 model, else None."""
        dtype = next(iter(self.params.values())).dtype
        requested = torch.bfloat16 if self.score_dtype == "bfloat16" and dtype == torch.float32 else None
        return usable_low_precision(requested, self._device())

    def _rotation(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype of the per-example rotations and the solve: ``rotation_dtype`` where it is fast."""
        return usable_low_precision(ROTATION_DTYPES[self.rotation_dtype], self._device()) or dtype

    def _device(self) -> torch.device:
        return params_device(self.params) if self.params else torch.device("cpu")

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "EKFACSolver":
        super().fit(module, params, batches, objective)
        self._bind(module, params)
        data = seeded_subsample(batches, self.fit_examples, self.seed, self.batch_size)
        device = params_device(params)
        dtype = next(iter(params.values())).dtype
        generator = torch.Generator().manual_seed(self.seed)
        f64 = dict(dtype=torch.float64, device=device)
        # sums in float32 (float64 for a float64 model): a batch's Gram matrix is added to them, not
        # converted to float64 one by one; the products themselves run in bf16 under autocast
        acc = dict(dtype=torch.promote_types(dtype, torch.float32), device=device)
        autocast = self._fit_autocast(dtype)
        product_dtype = autocast or dtype
        sizes = [(b.out_features, b.in_features + (1 if b.bias else 0)) for b in self.blocks]
        a_sum = [torch.zeros(i, i, **acc) for _, i in sizes]
        g_sum = [torch.zeros(o, o, **acc) for o, _ in sizes]
        diag_names = [n for n in params if n not in {x for b in self.blocks for x in (b.weight, b.bias) if x}]
        diag_sum = {n: torch.zeros(params[n].shape, **f64) for n in diag_names}
        count = torch.zeros((), **f64)

        # pass 1: the Kronecker factors (sums over tokens) and the diagonal E[g²]
        with eval_mode(module):
            for batch in on_device(data, device):
                probs, draws = self.tracker.draws(batch, self.labels, generator, autocast=autocast)
                count += probs.shape[0]
                for j, draw in enumerate(draws):
                    for i in range(len(self.blocks)):
                        a, g = draw.acts[i], draw.grads[i]
                        if a is None:
                            continue
                        live = carries_gradient(g)
                        if j == 0:  # activations do not depend on the label draw
                            a2 = a[live].to(product_dtype)
                            a_sum[i] += a2.T @ a2
                        g2 = g[live].to(product_dtype)  # padding and dead positions add zeros: skip them
                        g_sum[i] += g2.T @ g2
                    for n, gn in draw.diag.items():
                        diag_sum[n] += (gn.to(dtype) ** 2).sum(0).double()
        count = summed(count, all_reduce)
        l2 = objective.l2
        for block, a, g in zip(self.blocks, a_sum, g_sum):
            # the scale of A and G does not matter: only their eigenvectors are used
            block.q_a = eigenvectors(summed(a.double(), all_reduce), dtype).to(dtype)
            block.q_g = eigenvectors(summed(g.double(), all_reduce), dtype).to(dtype)
            mask = torch.zeros(block.q_a.shape[0], **f64)
            if block.weight in objective.l2_names:
                mask[:block.in_features] = 1.0
            if block.bias and block.bias in objective.l2_names:
                mask[-1] = 1.0
            # diag(Q_Aᵀ diag(mask) Q_A): exactly 1 everywhere when the whole block carries the L2 term
            block.l2_cover = ((block.q_a.double() ** 2) * mask[:, None]).sum(0).to(dtype) if l2 else None
        self.diagonal = {}
        for n in diag_names:
            d = summed(diag_sum[n], all_reduce) / count
            if l2 and n in objective.l2_names:
                d = d + 2 * l2
            self.diagonal[n] = d.to(dtype)

        # pass 2: eigenvalue correction, mean squared per-example gradient in the eigenbasis
        corr = [torch.zeros(*size, **acc) for size in sizes]
        count2 = torch.zeros((), **f64)
        with eval_mode(module):
            for batch in on_device(data, device):
                probs, draws = self.tracker.draws(batch, self.labels, generator, autocast=autocast)
                count2 += probs.shape[0]
                for draw in draws:
                    for i, factors in enumerate(self.tracker.live_factors(draw)):
                        if factors is not None:
                            corr[i] += summed_squares(*self.rotated(i, factors))
        count2 = summed(count2, all_reduce)
        for block, c in zip(self.blocks, corr):
            block.corrected = (summed(c.double(), all_reduce) / count2).to(dtype)
        return self

    def rotated(self, i: int, factors: Factors) -> tuple[Tensor, Tensor]:
        """(g Q_G [B, T, out], a Q_A [B, T, in(+1)]) of block ``i`` in the rotation dtype: the token
        factors of the per-example gradient in the eigenbasis, Q_Gᵀ DW Q_A = (g Q_G)ᵀ (a Q_A)."""
        a, g = factors
        q_g, q_a = self.eigenbases(a.dtype)[i]
        return g.to(q_g.dtype) @ q_g, a.to(q_a.dtype) @ q_a

    def eigenbases(self, factor_dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """(Q_G, Q_A) of every Linear in the rotation dtype used for token factors of ``factor_dtype``."""
        return self._bases(self._rotation(factor_dtype))

    def _bases(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """(Q_G, Q_A) of every Linear in ``dtype``, converted once per fit."""
        key = (dtype, tuple(id(b.q_g) for b in self.blocks))
        if self._bases_cache is None or self._bases_cache[0] != key:
            self._bases_cache = (key, [(b.q_g.to(dtype), b.q_a.to(dtype)) for b in self.blocks])
        return self._bases_cache[1]

    # -- solve ------------------------------------------------------------------------------------
    def block_eigenvalues(self, block: EigenBlock) -> Tensor:
        """[out, in(+1)] eigenvalues of H's approximation on one Linear, L2 term included."""
        return block.eigenvalues(self.objective.l2)

    def eigenvalues(self) -> Tensor:
        """All P eigenvalues of the EK-FAC approximation of H (L2 term included, no damping)."""
        self._check_fitted()
        parts = [self.block_eigenvalues(b).reshape(-1) for b in self.blocks]
        parts += [d.reshape(-1) for d in self.diagonal.values()]
        return torch.cat(parts)

    def _check_fitted(self) -> None:
        if self.params is None or any(b.corrected is None for b in self.blocks):
            raise RuntimeError("ekfac solver: call fit() before solve()")

    def denominator(self, eig: Tensor) -> Tensor:
        """eig + λ, refused where it is not positive (the solve would divide by it)."""
        den = eig + self.damping
        if (den <= 0).any():
            raise FloatingPointError(f"ekfac: an eigenvalue + damping is {float(den.min()):.3g} <= 0; "
                                     f"raise damping (now {self.damping:g}) above 0")
        return den

    def inverse_eigenvalues(self) -> list[Tensor]:
        """Per Linear, the flat [out·in(+1)] 1/(Λ + λ), cached until λ or the fit changes."""
        key = (self.damping, tuple(id(b.corrected) for b in self.blocks))
        if self._weights_cache is None or self._weights_cache[0] != key:
            self._weights_cache = (key, [1.0 / self.denominator(self.block_eigenvalues(b)).reshape(-1)
                                         for b in self.blocks])
        return self._weights_cache[1]

    def solve(self, vectors: Tensor) -> Tensor:
        self._check_fitted()
        parts = unflatten(vectors, self.params)
        out: dict[str, Tensor] = {}
        dtype = self._rotation(vectors.dtype)  # bf16 where fast: ~2.5x on bf16 hardware (see __init__)
        for block, (q_g, q_a) in zip(self.blocks, self._bases(dtype)):
            rotated = (q_g.T @ block.matrix(parts).to(dtype) @ q_a).to(vectors.dtype)
            rotated = (rotated / self.denominator(self.block_eigenvalues(block))).to(dtype)
            out.update(block.split((q_g @ rotated @ q_a.T).to(vectors.dtype)))
        for n, d in self.diagonal.items():
            out[n] = parts[n] / self.denominator(d)
        return flatten({n: out[n] for n in self.params}, batch_dims=vectors.ndim - 1)

    def self_influence_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                             ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """See :meth:`EKFACSelfInfluence.terms`: Eq. 2's terms from the token factors, no flat gradients."""
        self._check_fitted()
        if self._scoring is None:
            self._scoring = EKFACSelfInfluence(self)
        return self._scoring.terms(batch, l2_grad)

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"blocks": [{"weight": b.weight, "bias": b.bias, "q_a": b.q_a, "q_g": b.q_g,
                            "corrected": b.corrected, "l2_cover": b.l2_cover} for b in self.blocks],
                "diagonal": dict(self.diagonal)}

    def load_state_dict(self, state: dict) -> None:
        """Restore fitted statistics; call after ``fit``-free setup via :meth:`attach`."""
        by_weight = {b.weight: b for b in self.blocks}
        for s in state["blocks"]:
            block = by_weight[s["weight"]]
            block.q_a, block.q_g, block.corrected, block.l2_cover = s["q_a"], s["q_g"], s["corrected"], s["l2_cover"]
        self.diagonal = dict(state["diagonal"])
        self._forget_caches()

    def attach(self, module: nn.Module, params: Params, objective: TrainingObjective = TrainingObjective()
               ) -> "EKFACSolver":
        """Bind a model without fitting (before :meth:`load_state_dict`)."""
        self.module, self.params, self.objective = module, params, objective
        self._bind(module, params)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "fit_examples": self.fit_examples, "labels": self.labels, "seed": self.seed,
                "rotation_dtype": self.rotation_dtype, "fit_dtype": self.fit_dtype, "score_dtype": self.score_dtype,
                "score_tolerance": self.score_tolerance, "exact_logits": self.exact_logits,
                **(self._scoring.truncation_summary() if self._scoring is not None else {}),
                "linear_blocks": len(self.blocks), "diagonal_params": len(self.diagonal)}
