"""Whether bfloat16 is worth using here: EK-FAC's optional bf16 passes and rotations are ~1.3-3x
faster where the hardware has bf16 matrix kernels (GPUs, AVX512-BF16/AMX CPUs) and 20-50x SLOWER
where it has not (measured: an AVX2-only AMD EPYC with torch 2.14.1 runs a [1024,1536]x[1536,385]
bf16 matmul at ~1 GFLOP/s against ~30 GFLOP/s in float32). A requested bf16 is therefore used only
where a quick measurement on the device says it is faster; elsewhere float32 is used, with the same
results up to bf16 rounding (which only makes float32 more exact).
"""
from __future__ import annotations

import functools
import logging
import time

import torch

log = logging.getLogger("memlab")


@functools.lru_cache(maxsize=None)
def bf16_matmul_is_fast(device_type: str = "cpu") -> bool:
    """True where a bf16 matrix product beats float32 (always on CUDA); timed once per process."""
    if device_type == "cuda":
        return True
    if device_type != "cpu":
        return False
    a, b = torch.randn(256, 512), torch.randn(512, 256)

    def seconds(x, y, reps=3):
        x @ y  # warm-up: the first call may pick a kernel
        start = time.perf_counter()
        for _ in range(reps):
            x @ y
        return time.perf_counter() - start

    fast = seconds(a.bfloat16(), b.bfloat16()) < seconds(a, b)
    if not fast:
        log.info("bfloat16 matrix products are slower than float32 on this CPU: EK-FAC uses float32")
    return fast


def usable_low_precision(dtype: torch.dtype | None, device: torch.device | str = "cpu") -> torch.dtype | None:
    """``dtype`` when it is bf16 and bf16 is fast on ``device`` (or any other dtype); else None."""
    if dtype != torch.bfloat16:
        return dtype
    return dtype if bf16_matmul_is_fast(torch.device(device).type) else None
