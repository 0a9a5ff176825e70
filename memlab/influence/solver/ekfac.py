"""EK-FAC (George et al. 2018; Grosse et al. 2023): a Kronecker-factored eigenbasis of the Fisher per
``nn.Linear`` with eigenvalues re-fitted on per-example gradients, the estimator of (H + λI)⁻¹ that
scales to millions of parameters.

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

Written here rather than wrapping kronfluence: kronfluence took 14 min to fit factors on memlab's
MiniLM suffix on this machine, does not handle LayerNorm parameters or the study's L2 term, and
scores through its own Task/Analyzer objects rather than memlab's flat θ, batches and DDP hook.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, vmap

from ..functional import Params, TrainingObjective, cross_entropy, flatten, logits_fn, split_batch, unflatten
from .base import InverseHessianSolver
from .precision import usable_low_precision
from .sampling import eval_mode, on_device, params_device, seeded_subsample, summed

LABEL_MODES = ("sampled", "expected", "gold")
ROTATION_DTYPES = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


@dataclass
class _LinearBlock:
    """One nn.Linear of θ: weight [out, in] and (optionally) bias [out] as one [out, in(+1)] matrix."""
    module: nn.Linear
    weight: str
    bias: str | None
    q_a: Tensor | None = None
    q_g: Tensor | None = None
    corrected: Tensor | None = None  # Λ [out, in(+1)]: the Fisher's eigenvalues in the Kronecker eigenbasis
    l2_cover: Tensor | None = None   # [in(+1)]: diagonal of the L2 mask in the rotated input basis

    def matrix(self, parts: Mapping[str, Tensor]) -> Tensor:
        w = parts[self.weight]
        return torch.cat([w, parts[self.bias].unsqueeze(-1)], dim=-1) if self.bias else w

    def split(self, m: Tensor) -> dict[str, Tensor]:
        if self.bias:
            return {self.weight: m[..., :-1], self.bias: m[..., -1]}
        return {self.weight: m}


@dataclass
class _Draw:
    """Per-example gradient factors of one label draw: Linear (a, g) and diagonal parameters."""
    acts: dict[int, Tensor]    # block index -> a [B, T, in(+1)]
    grads: dict[int, Tensor]   # block index -> g [B, T, out]
    diag: dict[str, Tensor]    # parameter name -> per-example gradient [B, *shape]
    scale: Tensor | None = None  # [B] float64: the true gradients are these times ``scale`` (normalised draws)


class EKFACSolver(InverseHessianSolver):
    """Eigenvalue-corrected Kronecker-factored (H + λI)⁻¹; ``fit_examples`` (seeded) examples per process."""

    name = "ekfac"

    def __init__(self, damping: float = 0.0, fit_examples: int | None = 2000, labels: str = "sampled",
                 seed: int = 0, batch_size: int | None = None, rotation_dtype: str | None = None,
                 fit_dtype: str | None = None, score_dtype: str | None = None):
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
        # per-example rotations in bfloat16 (float32 accumulation, squares in float32): 2-3x faster on
        # CPUs with AVX512-BF16 and GPUs; each rotated entry carries ~0.4% rounding, which averages out
        # in the sums over millions of entries (benchmarks/bench_scores.py reports the ranking change)
        self.rotation_dtype = rotation_dtype
        self.blocks: list[_LinearBlock] = []
        self.layer_norms: dict[str, nn.LayerNorm] = {}  # module name -> LayerNorm with θ parameters
        self.other: list[str] = []                       # diagonal parameters without a hook rule
        self.diagonal: dict[str, Tensor] = {}            # E[g²] + 2·l2·[covered]
        self._l2_cache: tuple[Tensor, list[Tensor], dict[str, Tensor]] | None = None
        self._weights_cache: tuple[tuple, list[Tensor]] | None = None
        self._bases_cache: tuple[tuple, list[tuple[Tensor, Tensor]]] | None = None

    # -- structure --------------------------------------------------------------------------------
    def _find_structure(self, module: nn.Module, params: Params) -> None:
        self.blocks, self.layer_norms, covered = [], {}, set()
        for name, mod in module.named_modules():
            prefix = f"{name}." if name else ""
            if isinstance(mod, nn.Linear) and prefix + "weight" in params:
                bias = prefix + "bias" if mod.bias is not None and prefix + "bias" in params else None
                self.blocks.append(_LinearBlock(mod, prefix + "weight", bias))
                covered.update({prefix + "weight", bias} - {None})
            elif isinstance(mod, nn.LayerNorm) and mod.elementwise_affine:
                own = {prefix + "weight", prefix + "bias"} & set(params)
                if own:
                    self.layer_norms[name] = mod
                    covered.update(own)
        self.other = [n for n in params if n not in covered]

    # -- per-example factors --------------------------------------------------------------------
    def _fit_autocast(self, dtype: torch.dtype) -> torch.dtype | None:
        """The autocast dtype of the fit passes: ``fit_dtype`` for a float32 model, else None."""
        requested = torch.bfloat16 if self.fit_dtype == "bfloat16" and dtype == torch.float32 else None
        return usable_low_precision(requested, self._device())

    def _score_autocast(self, dtype: torch.dtype) -> torch.dtype | None:
        """The autocast dtype of the scoring pass: ``score_dtype`` for a float32 model, else None."""
        requested = torch.bfloat16 if self.score_dtype == "bfloat16" and dtype == torch.float32 else None
        return usable_low_precision(requested, self._device())

    def _rotation(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype of the per-example rotations and the solve: ``rotation_dtype`` where it is fast."""
        return usable_low_precision(ROTATION_DTYPES[self.rotation_dtype], self._device()) or dtype

    def _device(self) -> torch.device:
        return params_device(self.params) if getattr(self, "params", None) else torch.device("cpu")

    def _draws(self, batch: Mapping[str, Tensor], labels: str, generator: torch.Generator | None,
               normalize: bool = False, autocast: torch.dtype | None = None,
               exact_logits: Tensor | None = None) -> tuple[Tensor, Iterator[_Draw]]:
        """Forward once with hooks; returns (probs [B, C] float64, lazily computed per-example factors per
        label draw). ``normalize`` backpropagates each example's loss divided by the norm of its logit
        gradient (recorded in ``_Draw.scale``): squares of a confidently fitted example's gradient
        (~1e-20) would otherwise underflow float32. ``autocast``: the forward (and so the backward) in
        that dtype. ``exact_logits`` (gold labels, normalised): the probabilities and the logit gradient
        that seeds the backward come from these full-precision logits instead."""
        if exact_logits is not None and (labels != "gold" or not normalize):
            raise ValueError("exact_logits needs labels='gold' and normalize=True")
        feats, gold = split_batch(batch)
        records: dict[int, list[tuple[Tensor, Tensor]]] = {i: [] for i in range(len(self.blocks))}
        ln_records: dict[str, list[tuple[Tensor, Tensor]]] = {n: [] for n in self.layer_norms}

        def keep(store):
            def hook(_mod, args, kwargs, output):
                store.append(((args[0] if args else kwargs["input"]).detach(), output))
            return hook

        handles = [b.module.register_forward_hook(keep(records[i]), with_kwargs=True)
                   for i, b in enumerate(self.blocks)]
        handles += [m.register_forward_hook(keep(ln_records[n]), with_kwargs=True) for n, m in self.layer_norms.items()]
        leaves = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}
        device_type = next(iter(leaves.values())).device.type
        try:
            with torch.enable_grad(), torch.autocast(device_type, dtype=autocast or torch.bfloat16,
                                                     enabled=autocast is not None):
                logits = logits_fn(self.module, leaves, feats)
        finally:
            for h in handles:
                h.remove()
        probs = (exact_logits if exact_logits is not None else logits).detach().double().softmax(-1)
        batch_size = logits.shape[0]

        if labels == "gold":
            targets = [(gold, None)]
        elif labels == "sampled":
            drawn = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(gold.device)
            targets = [(drawn, None)]
        else:  # the exact expectation over classes: weight each class's gradient by sqrt(p_c)
            targets = [(torch.full_like(gold, c), probs[:, c].sqrt().to(logits.dtype)) for c in range(probs.shape[1])]

        acts = {}
        for i, block in enumerate(self.blocks):
            parts = [x.reshape(batch_size, -1, x.shape[-1]) for x, _ in records[i]]
            a = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)) if parts else None
            if a is not None and block.bias:
                a = torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1)
            acts[i] = a
        outputs = [out for i in records for _, out in records[i]] + [out for n in ln_records for _, out in ln_records[n]]

        def generate() -> Iterator[_Draw]:
            for j, (y, weight) in enumerate(targets):
                scale, last = None, j == len(targets) - 1
                if exact_logits is not None:  # seed the backward with the exact, normalised logit gradient
                    logit_grad, scale = _logit_gradient(exact_logits.double(), y)
                    seed = (logit_grad / scale[:, None]).to(logits.dtype)
                    out_grads = list(torch.autograd.grad(logits, outputs, grad_outputs=seed, retain_graph=not last,
                                                         allow_unused=True)) if outputs else []
                    weight = (1.0 / scale).to(exact_logits.dtype)  # what _other_grads must weight by
                else:
                    scale, weight, out_grads = self._output_grads(logits, y, weight, normalize, outputs, last)
                out_grads = [torch.zeros_like(o) if g is None else g for g, o in zip(out_grads, outputs)]
                grads, k = {}, 0
                for i in records:
                    gs = [out_grads[k + c].reshape(batch_size, -1, out_grads[k + c].shape[-1])
                          for c in range(len(records[i]))]
                    k += len(records[i])
                    grads[i] = (gs[0] if len(gs) == 1 else torch.cat(gs, dim=1)) if gs else None
                diag = {}
                for n, mod in self.layer_norms.items():
                    prefix = f"{n}." if n else ""
                    gw, gb = 0, 0
                    for x, _ in ln_records[n]:
                        g = out_grads[k]
                        k += 1
                        reduce_dims = tuple(range(1, g.ndim - len(mod.normalized_shape)))
                        x_hat = F.layer_norm(x, mod.normalized_shape, eps=mod.eps)
                        gw = gw + (g * x_hat).sum(reduce_dims) if reduce_dims else gw + g * x_hat
                        gb = gb + g.sum(reduce_dims) if reduce_dims else gb + g
                    if prefix + "weight" in self.params:
                        diag[prefix + "weight"] = gw.detach() if torch.is_tensor(gw) else \
                            torch.zeros(batch_size, *mod.weight.shape, device=logits.device, dtype=logits.dtype)
                    if prefix + "bias" in self.params and mod.bias is not None:
                        diag[prefix + "bias"] = gb.detach() if torch.is_tensor(gb) else \
                            torch.zeros(batch_size, *mod.bias.shape, device=logits.device, dtype=logits.dtype)
                if self.other:
                    diag.update(self._other_grads(feats, y, weight))
                yield _Draw(acts, {i: (g.detach() if g is not None else None) for i, g in grads.items()}, diag, scale)

        return probs, generate()

    @staticmethod
    def _output_grads(logits: Tensor, y: Tensor, weight: Tensor | None, normalize: bool, outputs: list[Tensor],
                      last: bool) -> tuple[Tensor | None, Tensor | None, list[Tensor | None]]:
        """(scale or None, the per-example weights used, d(Σ weight·CE)/d outputs): one label draw's backward."""
        losses = cross_entropy(logits, y, reduction="none")
        scale = None
        if normalize:
            _, scale = _logit_gradient(logits, y)
            weight = (1.0 / scale).to(losses.dtype) if weight is None else weight / scale.to(weight.dtype)
        if weight is not None:
            losses = losses * weight
        out_grads = list(torch.autograd.grad(losses.sum(), outputs, retain_graph=not last, allow_unused=True)) \
            if outputs else []
        return scale, weight, out_grads

    def _other_grads(self, feats: Mapping[str, Tensor], y: Tensor, weight: Tensor | None) -> dict[str, Tensor]:
        """Per-example gradients of the parameters no hook covers (vmap over examples)."""
        fixed = {n: p for n, p in self.params.items() if n not in self.other}
        own = {n: self.params[n] for n in self.other}
        w = weight if weight is not None else torch.ones_like(y, dtype=next(iter(own.values())).dtype)

        def loss(theta, f, label, scale):
            logits = logits_fn(self.module, {**fixed, **theta}, {k: v.unsqueeze(0) for k, v in f.items()})
            return scale * cross_entropy(logits, label.unsqueeze(0))

        return vmap(grad(loss), in_dims=(None, 0, 0, 0))(own, dict(feats), y, w)

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "EKFACSolver":
        super().fit(module, params, batches, objective)
        self._find_structure(module, params)
        self._l2_cache = self._weights_cache = self._bases_cache = None
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
        sizes = [(b.module.out_features, b.module.in_features + (1 if b.bias else 0)) for b in self.blocks]
        a_sum = [torch.zeros(i, i, **acc) for _, i in sizes]
        g_sum = [torch.zeros(o, o, **acc) for o, _ in sizes]
        diag_names = [n for n in params if n not in {x for b in self.blocks for x in (b.weight, b.bias) if x}]
        diag_sum = {n: torch.zeros(params[n].shape, **f64) for n in diag_names}
        count = torch.zeros((), **f64)

        # pass 1: the Kronecker factors (sums over tokens) and the diagonal E[g²]
        with eval_mode(module):
            for batch in on_device(data, device):
                probs, draws = self._draws(batch, self.labels, generator, autocast=autocast)
                count += probs.shape[0]
                for j, draw in enumerate(draws):
                    for i in range(len(self.blocks)):
                        a, g = draw.acts[i], draw.grads[i]
                        if a is None:
                            continue
                        live = _carries_gradient(g)
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
            block.q_a = _eigenvectors(summed(a.double(), all_reduce)).to(dtype)
            block.q_g = _eigenvectors(summed(g.double(), all_reduce)).to(dtype)
            mask = torch.zeros(block.q_a.shape[0], **f64)
            if block.weight in objective.l2_names:
                mask[:block.module.in_features] = 1.0
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
                probs, draws = self._draws(batch, self.labels, generator, autocast=autocast)
                count2 += probs.shape[0]
                for draw in draws:
                    for i, squares in self._summed_squares(self._live_factors(draw)):
                        corr[i] += squares
        count2 = summed(count2, all_reduce)
        for block, c in zip(self.blocks, corr):
            block.corrected = (summed(c.double(), all_reduce) / count2).to(dtype)
        return self

    def _live_factors(self, draw: _Draw) -> list[tuple[Tensor, Tensor] | None]:
        """Per block, (a, g) restricted to the positions whose output gradient is non-zero in some
        example (None for a block without records): the others add nothing to DW. In a transformer's
        last layer only [CLS] reaches the head, so most of its Linears keep one token."""
        factors = []
        for i in range(len(self.blocks)):
            a, g = draw.acts[i], draw.grads[i]
            if a is not None:
                live = _carries_gradient(g).any(0)
                if not bool(live.all()):
                    keep = live.nonzero().squeeze(1)
                    a, g = a[:, keep], g[:, keep]
            factors.append(None if a is None else (a, g))
        return factors

    def _projected(self, i: int, factors: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """(g Q_G [B, T, out], a Q_A [B, T, in(+1)]) of block ``i`` in the rotation dtype: the token
        factors of the per-example gradient in the eigenbasis, Q_Gᵀ DW Q_A = (g Q_G)ᵀ (a Q_A)."""
        a, g = factors
        dtype = self._rotation(a.dtype)
        q_g, q_a = self._bases(dtype)[i]
        return g.to(dtype) @ q_g, a.to(dtype) @ q_a

    def _rotated_tiles(self, i: int, rotated_g: Tensor, rotated_a: Tensor) -> Iterator[tuple[slice, Tensor]]:
        """Per-example gradients of one Linear in its eigenbasis as (example slice, [b, out, in(+1)])
        tiles (at least float32) of a few examples, small enough that squaring and reducing a tile happen in
        cache (a [32, 384, 1537] block is 75 MB; memory traffic, not FLOPs, was the cost)."""
        rotated_g = rotated_g.transpose(1, 2)
        tile = max(1, _TILE_FLOATS // (rotated_g.shape[1] * rotated_a.shape[2]))
        for start in range(0, rotated_a.shape[0], tile):
            rows = slice(start, start + tile)
            yield rows, torch.bmm(rotated_g[rows], rotated_a[rows]).to(_accumulation_dtype(rotated_a))

    def _summed_squares(self, factors: list[tuple[Tensor, Tensor] | None]) -> Iterator[tuple[int, Tensor]]:
        """Per Linear, Σ over the batch's examples of the squared rotated gradient [out, in(+1)].
        With one live token (a transformer's last layer outside key/value) DW is an outer product
        and the sum of squares is one matrix product, (g Q_G)²ᵀ (a Q_A)²."""
        for i, ag in enumerate(factors):
            if ag is None:
                continue
            rotated_g, rotated_a = self._projected(i, ag)
            if rotated_a.shape[1] == 1:
                acc = _accumulation_dtype(rotated_a)
                yield i, rotated_g[:, 0].to(acc).square().T @ rotated_a[:, 0].to(acc).square()
                continue
            total = torch.zeros(rotated_g.shape[2], rotated_a.shape[2], device=rotated_a.device,
                                dtype=_accumulation_dtype(rotated_a))
            for _, rotated in self._rotated_tiles(i, rotated_g, rotated_a):
                total += rotated.square_().sum(0)
            yield i, total

    def _quadratic_forms(self, factors: list[tuple[Tensor, Tensor] | None], inverses: list[Tensor],
                         l2_blocks: list[Tensor] | None, batch: int, device: torch.device
                         ) -> tuple[Tensor, Tensor | None]:
        """Per example, Σ over Linears of Σ_oi rotated²/(Λ + λ) and (with ``l2_blocks``, the L2
        gradient in the eigenbasis) Σ_oi rotated·l2/(Λ + λ), float64 [B]. One live token: the
        outer-product form (g Q_G)² W (a Q_A)², a matrix product instead of per-example tiles."""
        quad = torch.zeros(batch, dtype=torch.float64, device=device)
        cross = torch.zeros_like(quad) if l2_blocks is not None else None
        for i, ag in enumerate(factors):
            if ag is None:
                continue
            rotated_g, rotated_a = self._projected(i, ag)
            weights = inverses[i].view(rotated_g.shape[2], rotated_a.shape[2])
            if rotated_a.shape[1] == 1:
                acc = _accumulation_dtype(rotated_a)
                g1, a1 = rotated_g[:, 0].to(acc), rotated_a[:, 0].to(acc)
                quad += ((g1.square() @ weights) * a1.square()).sum(1).double()
                if cross is not None:
                    cross += ((g1 @ (l2_blocks[i] * weights)) * a1).sum(1).double()
                continue
            flat_weights = inverses[i]
            l2_weighted = (l2_blocks[i].reshape(-1) * flat_weights) if cross is not None else None
            for rows, rotated in self._rotated_tiles(i, rotated_g, rotated_a):
                flat = rotated.reshape(rotated.shape[0], -1)
                if cross is not None:
                    cross[rows] += (flat @ l2_weighted).double()
                quad[rows] += (flat.square_() @ flat_weights).double()
        return quad, cross

    # -- solve ------------------------------------------------------------------------------------
    def block_eigenvalues(self, block: _LinearBlock) -> Tensor:
        """[out, in(+1)] eigenvalues of H's approximation on one Linear, L2 term included."""
        if block.l2_cover is None:
            return block.corrected
        return block.corrected + 2 * self.objective.l2 * block.l2_cover

    def eigenvalues(self) -> Tensor:
        """All P eigenvalues of the EK-FAC approximation of H (L2 term included, no damping)."""
        self._check_fitted()
        parts = [self.block_eigenvalues(b).reshape(-1) for b in self.blocks]
        parts += [d.reshape(-1) for d in self.diagonal.values()]
        return torch.cat(parts)

    def _check_fitted(self) -> None:
        if self.params is None or any(b.corrected is None for b in self.blocks):
            raise RuntimeError("ekfac solver: call fit() before solve()")

    def _denominator(self, eig: Tensor) -> Tensor:
        den = eig + self.damping
        if (den <= 0).any():
            raise FloatingPointError(f"ekfac: an eigenvalue + damping is {float(den.min()):.3g} <= 0; "
                                     f"raise damping (now {self.damping:g}) above 0")
        return den

    def solve(self, vectors: Tensor) -> Tensor:
        self._check_fitted()
        parts = unflatten(vectors, self.params)
        out: dict[str, Tensor] = {}
        dtype = self._rotation(vectors.dtype)  # bf16 where fast: ~2.5x on bf16 hardware (see __init__)
        for block, (q_g, q_a) in zip(self.blocks, self._bases(dtype)):
            rotated = (q_g.T @ block.matrix(parts).to(dtype) @ q_a).to(vectors.dtype)
            rotated = (rotated / self._denominator(self.block_eigenvalues(block))).to(dtype)
            out.update(block.split((q_g @ rotated @ q_a.T).to(vectors.dtype)))
        for n, d in self.diagonal.items():
            out[n] = parts[n] / self._denominator(d)
        return flatten({n: out[n] for n in self.params}, batch_dims=vectors.ndim - 1)

    # -- fast self-influence ----------------------------------------------------------------------
    def _rotated_l2(self, l2_grad: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        if self._l2_cache is None or self._l2_cache[0] is not l2_grad:
            parts = unflatten(l2_grad, self.params)
            blocks = [b.q_g.T @ b.matrix(parts) @ b.q_a for b in self.blocks]
            self._l2_cache = (l2_grad, blocks, {n: parts[n] for n in self.diagonal})
        return self._l2_cache[1], self._l2_cache[2]

    def self_influence_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                             ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """For the gold-label cross-entropy gradient g_i of every example of ``batch``:
        (probs [B, C], g_iᵀ(H+λI)⁻¹g_i [B], g_iᵀ(H+λI)⁻¹l2_grad [B] or None, ‖g_i‖² [B]), float64,
        without materialising g_i: from the hooks' token factors, rotated a few examples at a time."""
        self._check_fitted()
        probs, draw, factors = self._gold_draw(batch)
        b = probs.shape[0]
        f64 = dict(dtype=torch.float64, device=probs.device)
        norm_sq = torch.zeros(b, **f64)
        l2_blocks, l2_diag = self._rotated_l2(l2_grad) if l2_grad is not None else (None, None)
        for ag in factors:
            norm_sq += _gram_norm_sq(ag)
        quad, cross = self._quadratic_forms(factors, self._inverse_eigenvalues(), l2_blocks, b, probs.device)
        for n, d in self.diagonal.items():
            g = draw.diag[n].reshape(b, -1)
            inverse = 1.0 / self._denominator(d).reshape(-1)
            if cross is not None:
                cross += (g @ (l2_diag[n].reshape(-1) * inverse)).double()
            g = g.square()
            quad += (g @ inverse).double()
            norm_sq += g.sum(1).double()
        # undo the per-example normalisation of the backward pass (see _draws)
        quad, norm_sq = quad * draw.scale ** 2, norm_sq * draw.scale ** 2
        if cross is not None:
            cross = cross * draw.scale
        return probs, quad, cross, norm_sq

    def _bases(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """(Q_G, Q_A) of every Linear in ``dtype``, converted once per fit."""
        key = (dtype, tuple(id(b.q_g) for b in self.blocks))
        if self._bases_cache is None or self._bases_cache[0] != key:
            self._bases_cache = (key, [(b.q_g.to(dtype), b.q_a.to(dtype)) for b in self.blocks])
        return self._bases_cache[1]

    def _gold_draw(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, _Draw, list[tuple[Tensor, Tensor] | None]]:
        """(probs, the normalised gold-label draw, its live token factors) of one batch."""
        batch = {k: v.to(params_device(self.params)) for k, v in batch.items() if torch.is_tensor(v)}
        autocast = self._score_autocast(next(iter(self.params.values())).dtype)
        with eval_mode(self.module):
            exact = None
            if autocast is not None:  # full-precision logits: P(y|x), the loss and ∇L's size stay exact
                with torch.no_grad():
                    exact = logits_fn(self.module, self.params, split_batch(batch)[0])
            probs, draws = self._draws(batch, "gold", None, normalize=True, autocast=autocast, exact_logits=exact)
            draw = next(draws)
        return probs, draw, self._live_factors(draw)

    def gradient_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                       ) -> tuple[Tensor, Tensor, Tensor | None]:
        """(probs [B, C], ‖g_i‖² [B], g_iᵀ l2_grad [B] or None) for the gold cross-entropy gradient g_i of
        every example, from the token factors alone (no fit, no eigenbasis: call :meth:`attach` first).
        The identity solver's fast path."""
        probs, draw, factors = self._gold_draw(batch)
        b = probs.shape[0]
        norm_sq = torch.zeros(b, dtype=torch.float64, device=probs.device)
        dot = torch.zeros_like(norm_sq) if l2_grad is not None else None
        parts = unflatten(l2_grad.to(next(iter(self.params.values())).dtype), self.params) if dot is not None else None
        for block, ag in zip(self.blocks, factors):
            norm_sq += _gram_norm_sq(ag)
            if dot is not None and ag is not None:  # Σ_t g_tᵀ L2 a_t
                a, g = ag
                dot += ((g @ block.matrix(parts)) * a).sum((1, 2)).double()
        for n, grad_n in draw.diag.items():
            flat = grad_n.reshape(b, -1)
            norm_sq += flat.square().sum(1).double()
            if dot is not None:
                dot += (flat @ parts[n].reshape(-1)).double()
        norm_sq = norm_sq * draw.scale ** 2
        return probs, norm_sq, (dot * draw.scale if dot is not None else None)

    def _inverse_eigenvalues(self) -> list[Tensor]:
        """Per Linear, the flat [out·in(+1)] 1/(Λ + λ), cached until λ or the fit changes."""
        key = (self.damping, tuple(id(b.corrected) for b in self.blocks))
        if self._weights_cache is None or self._weights_cache[0] != key:
            self._weights_cache = (key, [1.0 / self._denominator(self.block_eigenvalues(b)).reshape(-1)
                                         for b in self.blocks])
        return self._weights_cache[1]

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
        self._l2_cache = self._weights_cache = self._bases_cache = None

    def attach(self, module: nn.Module, params: Params, objective: TrainingObjective = TrainingObjective()
               ) -> "EKFACSolver":
        """Bind a model without fitting (before :meth:`load_state_dict`)."""
        self.module, self.params, self.objective = module, params, objective
        self._find_structure(module, params)
        return self

    def describe(self) -> dict:
        return {**super().describe(), "fit_examples": self.fit_examples, "labels": self.labels, "seed": self.seed,
                "rotation_dtype": self.rotation_dtype, "fit_dtype": self.fit_dtype, "score_dtype": self.score_dtype,
                "linear_blocks": len(self.blocks), "diagonal_params": len(self.diagonal)}


_TILE_FLOATS = 5 << 18  # per-example rotated gradients per tile: ~5 MB of float32 (measured: 2 examples of a
# [1536, 385] block per tile take half the time of 4 on this 2-core EPYC; the cliff is the cache size)


def _logit_gradient(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(∂CE/∂logits [B, C], its per-example norm [B] in float64, 1 where it is 0): the scale by which
    a normalised backward divides each example's loss."""
    z = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        (logit_grad,) = torch.autograd.grad(cross_entropy(z, y, reduction="sum"), z)
    scale = logit_grad.double().norm(dim=-1)
    return logit_grad, torch.where(scale > 0, scale, torch.ones_like(scale))


def _accumulation_dtype(rotated: Tensor) -> torch.dtype:
    """Squares and sums of rotated gradients: at least float32 (bfloat16 rotations), else their own dtype."""
    return torch.promote_types(rotated.dtype, torch.float32)


def _gram_norm_sq(factors: tuple[Tensor, Tensor] | None) -> Tensor | float:
    """‖DW‖² per example as Σ_tt' (g_t·g_t')(a_t·a_t') from a block's token factors: no pass over [out, in]."""
    if factors is None:
        return 0.0
    a, g = factors
    return ((g @ g.transpose(1, 2)) * (a @ a.transpose(1, 2))).sum((1, 2)).double()


def _carries_gradient(g: Tensor) -> Tensor:
    """[B, T] mask of the tokens whose output gradient is non-zero (not padding, and reaching the loss)."""
    return g.abs().amax(-1) > 0


def _eigenvectors(matrix: Tensor) -> Tensor:
    """Eigenvectors of a symmetric PSD factor (float64 for accuracy on near-degenerate spectra)."""
    matrix = (matrix + matrix.T) / 2
    return torch.linalg.eigh(matrix.double())[1]
