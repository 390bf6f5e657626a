"""Model FLOPs utilisation and run-time projections shared by the benchmarks (bench_model.py on
CPU, bench_gpu.py on CUDA), so both write the same fields in every row.

- The peak: a GPU's dense peak for the precision from its name (:data:`GPU_PEAK_TFLOPS`, the
  vendors' data-sheet numbers without sparsity) or ``--peak-tflops``; on CPU the rate of a large
  matrix product measured on this machine at the thread count of the row (:func:`cpu_peak_tflops`).
- The FLOPs of one training step as it runs (:func:`step_flops`): ``FlopCounterMode`` around the
  forward, the loss (the supervisor included) and the backward; 2 FLOP per multiply-add,
  convolutions and matrix products only.
- The paper's full run (:data:`PAPER_RUN_PAIRS` = 100 k pairs × 1,000 epochs) projected on one
  device and on 8 with DDP (:func:`projections`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

#: The paper's full run: N = 100,000 pairs per epoch, 1,000 epochs.
PAPER_RUN_PAIRS = 100_000 * 1_000

#: Dense (no sparsity) peak TFLOP/s per precision by device-name fragment, first match wins:
#: NVIDIA data sheets. "fp32" is the matrix-product rate the benchmarks run fp32 at (TF32 on
#: tensor cores where the card has them, as bench_gpu enables it).
GPU_PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 494.7, "bf16": 989.4}),
    ("H100 PCIe", {"fp32": 378.0, "bf16": 756.0}),
    ("H100", {"fp32": 494.7, "bf16": 989.4}),  # SXM5 / HBM3
    ("A100", {"fp32": 156.0, "bf16": 312.0}),
    ("L40S", {"fp32": 183.0, "bf16": 362.0}),
    ("L4", {"fp32": 60.0, "bf16": 121.0}),
    ("A10", {"fp32": 62.5, "bf16": 125.0}),
    ("V100", {"fp32": 15.7, "bf16": 15.7}),  # no bf16 tensor cores: fp32 rate
)

#: Ring all-reduce bandwidth per GPU assumed for the 8-GPU projection (NVLink 4 on an H100 SXM
#: node: 450 GB/s each way); gradients are fp32 and the all-reduce is not overlapped.
ALLREDUCE_GB_PER_S = 450.0


def gpu_peak_tflops(name: str, precision: str) -> float | None:
    """The dense peak of a GPU named ``name`` for ``precision`` ("fp32" or "bf16"), or None."""
    for fragment, peaks in GPU_PEAK_TFLOPS:
        if fragment.lower() in name.lower():
            return peaks[precision]
    return None


def cpu_peak_tflops(
    dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 2.0
) -> float:
    """TFLOP/s of an ``n``×``n`` matrix product in ``dtype`` on this CPU at the current torch
    thread count: the best of repeated products over about ``seconds``."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up (library initialisation, page faults)
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def step_flops(step: Callable[[], object]) -> int:
    """FLOPs of one call of ``step`` (a whole training step: forward, loss, backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def mfu_fields(pairs_per_s: float, gflop_per_pair: float, peak_tflops: float | None) -> dict:
    """Achieved TFLOP/s and its share of the peak."""
    achieved = pairs_per_s * gflop_per_pair / 1e3
    return {
        "tflop_per_s": round(achieved, 4),
        "peak_tflop_per_s": None if peak_tflops is None else round(peak_tflops, 3),
        "mfu": None if not peak_tflops else round(achieved / peak_tflops, 5),
    }


def projections(pairs_per_s: float, params: int, batch: int) -> dict:
    """Hours of the paper's full run at ``pairs_per_s`` on one device, and on 8 with DDP at the
    same per-device batch (the global batch 8× larger): each step also all-reduces the fp32
    gradients of ``params`` over a ring at :data:`ALLREDUCE_GB_PER_S`, not overlapped."""
    step_s = batch / pairs_per_s
    allreduce_s = 2 * 7 / 8 * params * 4 / (ALLREDUCE_GB_PER_S * 1e9)
    ddp_pairs_per_s = 8 * batch / (step_s + allreduce_s)
    return {
        "paper_run_pairs": PAPER_RUN_PAIRS,
        "paper_run_hours_1_device": round(PAPER_RUN_PAIRS / pairs_per_s / 3600, 2),
        "paper_run_hours_8_ddp": round(PAPER_RUN_PAIRS / ddp_pairs_per_s / 3600, 2),
        "ddp_allreduce_s_per_step": round(allreduce_s, 5),
    }
