"""Per-example gradients of a model's ``nn.Linear`` and ``nn.LayerNorm`` parameters as hook-recorded
token factors, never materialised as [B, P]: what EK-FAC (:mod:`.solver.ekfac`) fits and scores with
and what the identity solver's fast gradient norm (:mod:`.solver.identity`) reads.

One forward with hooks records, for every Linear whose weight is in θ, its input a (with a
homogeneous 1 when its bias is in θ); one backward per label draw gives the gradient g of the loss
with respect to its output. One example's gradient of that Linear is the sum over its tokens

    DW = Σ_t g_t a_tᵀ     (t over the tokens that carry gradient),

and of an affine LayerNorm Σ_t g_t ⊙ x̂_t (weight) and Σ_t g_t (bias), x̂ the normalised input.
GPT-2's ``Conv1D`` (y = x W + b, W [in, out]) is a Linear with a transposed weight: the same token
factors, its gradient DWᵀ. Parameters of neither kind get per-example gradients by vmap. Labels are the gold ones (``"gold"``),
one draw from the model (``"sampled"``) or every class weighted by sqrt(P(c|x)) (``"expected"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, vmap

from .functional import Params, cross_entropy, logits_fn, split_batch
from .sampling import eval_mode, params_device, to_device

Factors = tuple[Tensor, Tensor]  # (a [B, T, in(+1)], g [B, T, out]) of one Linear


def is_conv1d(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (GPT-2): weight [in, out] = [nx, nf], told by its attributes, not imported."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "nx")


@dataclass
class LinearBlock:
    """One nn.Linear of θ: weight [out, in] and (optionally) bias [out] as one [out, in(+1)] matrix.
    ``transposed``: a Conv1D, whose weight is stored [in, out]; the matrix is still [out, in(+1)]."""
    module: nn.Module
    weight: str
    bias: str | None
    transposed: bool = False

    @property
    def in_features(self) -> int:
        return self.module.nx if self.transposed else self.module.in_features

    @property
    def out_features(self) -> int:
        return self.module.nf if self.transposed else self.module.out_features

    def matrix(self, parts: Mapping[str, Tensor]) -> Tensor:
        w = parts[self.weight]
        if self.transposed:
            w = w.transpose(-1, -2)
        return torch.cat([w, parts[self.bias].unsqueeze(-1)], dim=-1) if self.bias else w

    def split(self, m: Tensor) -> dict[str, Tensor]:
        w = m[..., :-1] if self.bias else m
        if self.transposed:
            w = w.transpose(-1, -2)
        if self.bias:
            return {self.weight: w, self.bias: m[..., -1]}
        return {self.weight: w}


@dataclass
class FactorDraw:
    """Per-example gradient factors of one label draw: Linear (a, g) and diagonal parameters."""
    acts: dict[int, Tensor]    # block index -> a [B, T, in(+1)]
    grads: dict[int, Tensor]   # block index -> g [B, T, out]
    diag: dict[str, Tensor]    # parameter name -> per-example gradient [B, *shape]
    scale: Tensor | None = None  # [B] float64: the true gradients are these times ``scale`` (normalised draws)


class FactorTracker:
    """The Linears (``blocks``), affine LayerNorms (``layer_norms``) and other parameters (``other``)
    of θ in ``module``, and the hooked passes that give their per-example gradient factors."""

    def __init__(self, module: nn.Module, params: Params):
        self.module, self.params = module, params
        self.blocks: list[LinearBlock] = []
        self.layer_norms: dict[str, nn.LayerNorm] = {}  # module name -> LayerNorm with θ parameters
        covered = set()
        for name, mod in module.named_modules():
            prefix = f"{name}." if name else ""
            if getattr(mod, "shared_input", False):  # also applied to a batch-independent input (DeBERTa's
                continue  # relative embeddings): no per-example token factors; its parameters go to vmap
            if (isinstance(mod, nn.Linear) or is_conv1d(mod)) and prefix + "weight" in params:
                bias = prefix + "bias" if mod.bias is not None and prefix + "bias" in params else None
                self.blocks.append(LinearBlock(mod, prefix + "weight", bias, transposed=is_conv1d(mod)))
                covered.update({prefix + "weight", bias} - {None})
            elif isinstance(mod, nn.LayerNorm) and mod.elementwise_affine:
                own = {prefix + "weight", prefix + "bias"} & set(params)
                if own:
                    self.layer_norms[name] = mod
                    covered.update(own)
        self.other = [n for n in params if n not in covered]  # diagonal parameters without a hook rule

    def draws(self, batch: Mapping[str, Tensor], labels: str, generator: torch.Generator | None,
              normalize: bool = False, autocast: torch.dtype | None = None,
              exact_logits: Tensor | None = None) -> tuple[Tensor, Iterator[FactorDraw]]:
        """Forward once with hooks; returns (probs [B, C] float64, lazily computed per-example factors per
        label draw). ``normalize`` backpropagates each example's loss divided by the norm of its logit
        gradient (recorded in ``FactorDraw.scale``): squares of a confidently fitted example's gradient
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

        def generate() -> Iterator[FactorDraw]:
            for j, (y, weight) in enumerate(targets):
                scale, last = None, j == len(targets) - 1
                if exact_logits is not None:  # seed the backward with the exact, normalised logit gradient
                    logit_grad, scale = logit_gradient(exact_logits.double(), y)
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
                yield FactorDraw(acts, {i: (g.detach() if g is not None else None) for i, g in grads.items()},
                                 diag, scale)

        return probs, generate()

    @staticmethod
    def _output_grads(logits: Tensor, y: Tensor, weight: Tensor | None, normalize: bool, outputs: list[Tensor],
                      last: bool) -> tuple[Tensor | None, Tensor | None, list[Tensor | None]]:
        """(scale or None, the per-example weights used, d(Σ weight·CE)/d outputs): one label draw's backward."""
        losses = cross_entropy(logits, y, reduction="none")
        scale = None
        if normalize:
            _, scale = logit_gradient(logits, y)
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

    def live_factors(self, draw: FactorDraw) -> list[Factors | None]:
        """Per block, (a, g) restricted to the positions whose output gradient is non-zero in some
        example (None for a block without records): the others add nothing to DW. In a transformer's
        last layer only [CLS] reaches the head, so most of its Linears keep one token."""
        factors = []
        for i in range(len(self.blocks)):
            a, g = draw.acts[i], draw.grads[i]
            if a is not None:
                live = carries_gradient(g).any(0)
                if not bool(live.all()):
                    keep = live.nonzero().squeeze(1)
                    a, g = a[:, keep], g[:, keep]
                # autograd may hand back an output gradient in a transposed layout (attention's
                # query/key/value): matmul would then expand the [out, out] eigenbasis to one copy per
                # example (a 64 x 384 x 384 copy, 18% of the scoring pass); a contiguous one is folded
                a, g = a.contiguous(), g.contiguous()
            factors.append(None if a is None else (a, g))
        return factors

    def gold_draw(self, batch: Mapping[str, Tensor], autocast: torch.dtype | None = None, exact_logits: bool = True
                  ) -> tuple[Tensor, FactorDraw, list[Factors | None]]:
        """(probs, the normalised gold-label draw, its live token factors) of one batch, in eval mode.
        ``autocast``: the backward in that dtype, seeded by a full-precision forward's logit gradient
        (``exact_logits``; else the probabilities too come from the autocast forward)."""
        batch = to_device(batch, params_device(self.params))
        with eval_mode(self.module):
            exact = None
            if autocast is not None and exact_logits:  # full precision: P(y|x), the loss and ∇L's size stay exact
                with torch.no_grad():
                    exact = logits_fn(self.module, self.params, split_batch(batch)[0])
            probs, draws = self.draws(batch, "gold", None, normalize=True, autocast=autocast, exact_logits=exact)
            draw = next(draws)
        return probs, draw, self.live_factors(draw)


def logit_gradient(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """(∂CE/∂logits [B, C], its per-example norm [B] in float64, 1 where it is 0): the scale by which
    a normalised backward divides each example's loss."""
    z = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        (logit_grad,) = torch.autograd.grad(cross_entropy(z, y, reduction="sum"), z)
    scale = logit_grad.double().norm(dim=-1)
    return logit_grad, torch.where(scale > 0, scale, torch.ones_like(scale))


def carries_gradient(g: Tensor) -> Tensor:
    """[B, T] mask of the tokens whose output gradient is non-zero (not padding, and reaching the loss)."""
    return g.abs().amax(-1) > 0


def gram_norm_sq(factors: Factors | None) -> Tensor | float:
    """‖DW‖² per example as Σ_tt' (g_t·g_t')(a_t·a_t') from a block's token factors: no pass over [out, in]."""
    if factors is None:
        return 0.0
    a, g = factors
    return ((g @ g.transpose(1, 2)) * (a @ a.transpose(1, 2))).sum((1, 2)).double()
