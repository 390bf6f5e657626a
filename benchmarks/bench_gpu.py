"""GPU benchmark: KECAE training throughput, MFU and memory of the presets on one CUDA device, the
fast path measured one step at a time.

    python benchmarks/bench_gpu.py --out benchmarks/results [--quick] [--peak-tflops T]
    python benchmarks/bench_gpu.py --device cpu --quick --out /tmp/x   # the same rows on CPU

Writes ``<out>/gpu.json`` (``cpu.json`` with ``--device cpu``): the device, torch and CUDA
versions, then per preset (paper, cpu):

- ``ladder``: one training step as ``kecae train`` runs it (benchmarks/train_step.py: forward on
  a batch of pairs, the preset's loss with a frozen siamese supervisor, backward, Adam) at one
  batch, the fast-path options switched on one after the other, each row measured: fp32
  contiguous with the loss read back every step (the old trainer) → channels-last → bf16
  autocast (losses and grid_sample in fp32) → the frozen supervisor's batch norms folded → fused
  Adam → no host synchronisation in the step → torch.compile (default) → torch.compile
  (max-autotune). Compile time is reported apart from the step time.
- ``batches``: the last eager row's options at several batch sizes, fp32 and bf16 (the bf16 /
  fp32 ratio per batch).
- ``stacked_cpu_preset``: 8 ``cpu``-preset KECAEs (without the preset's patch discriminator)
  trained one at a time against stacked in one vmapped step (kecae.training.stacked): how many
  more study rows an hour.

Every row: median step time over timed steps after warm-up (each timed step ends with a device
synchronisation), pairs/s, the FLOPs of the whole step counted (FlopCounterMode), achieved
TFLOP/s and MFU over the device's dense peak for the row's precision (by device name, or
``--peak-tflops``; on CPU a measured matrix product), peak memory (CUDA: allocated in the timed
steps; CPU: the process's peak RSS), and the paper's full run (10^8 pairs) projected on one
device and on 8 with DDP. A batch that does not fit is recorded as ``"oom"``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from kecae.files import atomic_write_text
from kecae.models.cost import count_parameters
from mfu import cpu_peak_tflops, gpu_peak_tflops, mfu_fields, projections, step_flops
from train_step import TrainStep

#: The fast path, one option more per row: (name, TrainStep keyword arguments).
LADDER: tuple[tuple[str, dict], ...] = (
    ("fp32 baseline", {"fold": False}),
    ("+channels-last", {"fold": False, "channels_last": True}),
    ("+bf16 autocast", {"fold": False, "channels_last": True, "bf16": True}),
    ("+folded supervisor BN", {"channels_last": True, "bf16": True}),
    ("+fused Adam", {"channels_last": True, "bf16": True, "fused_adam": True}),
    (
        "+no host sync",
        {"channels_last": True, "bf16": True, "fused_adam": True, "read_loss": False},
    ),
    (
        "+compile default",
        {
            "channels_last": True,
            "bf16": True,
            "fused_adam": True,
            "read_loss": False,
            "compile_mode": "default",
        },
    ),
    (
        "+compile max-autotune",
        {
            "channels_last": True,
            "bf16": True,
            "fused_adam": True,
            "read_loss": False,
            "compile_mode": "max-autotune",
        },
    ),
)
#: Batches per preset (CUDA; CPU uses the first two) for the batch sweep and the ladder's batch.
PLAN = {"paper": ((16, 32, 64, 128), 64), "cpu": ((32, 256, 1024, 4096), 1024)}


class Device:
    """Synchronisation, peak memory and peak FLOP rate of the device measured on."""

    def __init__(self, name: str, peak_override: float | None) -> None:
        self.name = name
        self.cuda = name.startswith("cuda")
        self.peak_override = peak_override
        self.label = torch.cuda.get_device_name(0) if self.cuda else platform.processor()
        self._cpu_peaks: dict[bool, float] = {}

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def reset_memory(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_memory_gib(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB

    def peak_tflops(self, bf16: bool) -> float | None:
        if self.peak_override:
            return self.peak_override
        if self.cuda:
            return gpu_peak_tflops(self.label, "bf16" if bf16 else "fp32")
        if bf16 not in self._cpu_peaks:
            self._cpu_peaks[bf16] = cpu_peak_tflops(torch.bfloat16 if bf16 else torch.float32)
        return self._cpu_peaks[bf16]


def measure(dev: Device, preset: str, batch: int, warmup: int, steps: int, **options) -> dict:
    """One row: ``preset`` at ``batch`` with TrainStep ``options``."""
    t0 = time.perf_counter()
    step = TrainStep(preset, batch, device=dev.name, **options)
    step()  # the first step: compilation, cudnn's algorithm search
    dev.sync()
    first_s = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    dev.sync()
    dev.reset_memory()  # the search in the warm-up allocates large workspaces: left out
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        dev.sync()
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    pairs_per_s = batch / step_s
    eager = TrainStep(preset, batch, device=dev.name, **{**options, "compile_mode": None})
    gflop = step_flops(eager) / batch / 1e9  # counted on the eager step (same arithmetic)
    row = {
        "batch": batch,
        "precision": "bf16-autocast" if options.get("bf16") else "fp32",
        "options": dict(options),
        "step_s_median": round(step_s, 5),
        "step_s_min": round(min(times), 5),
        "pairs_per_s": round(pairs_per_s, 1),
        "gflop_step_per_pair": round(gflop, 3),
        **mfu_fields(pairs_per_s, gflop, dev.peak_tflops(bool(options.get("bf16")))),
        "peak_mem_gib": round(dev.peak_memory_gib(), 3),
        **projections(pairs_per_s, count_parameters(step.model), batch),
    }
    if options.get("compile_mode"):
        row["compile_s"] = round(max(0.0, first_s - step_s), 1)  # first step less a steady one
    return row


def stacked_speed(dev: Device, k: int, batch: int, warmup: int, steps: int) -> dict:
    """K ``cpu``-preset KECAEs at ``batch`` pairs each: K one-at-a-time steps (each model its own
    step, as the studies train their rows today) against one stacked step of all K
    (kecae.training.stacked), fp32; the ratio is how many more study rows an hour."""
    from kecae.models.autoencoder import KECAE
    from kecae.models.presets import preset_training
    from kecae.training.stacked import StackedKECAE, stackable_settings

    # the preset's loss less its terms' own modules (stacking trains none), the same for both
    # sides
    settings = stackable_settings(preset_training("cpu"))
    alone = [TrainStep("cpu", batch, device=dev.name, seed=i, settings=settings) for i in range(k)]
    models = [KECAE(alone[0].config).to(dev.name) for _ in range(k)]
    stacked = StackedKECAE(models, alone[0].supervisor, alone[0].settings, lr=1e-4)
    x1 = torch.stack([a.x1 for a in alone])  # (K, B, 1, S, S)
    x2 = torch.stack([a.x2 for a in alone])

    def timed(fn) -> float:
        for _ in range(warmup):
            fn()
        dev.sync()
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            fn()
            dev.sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    one_at_a_time = timed(lambda: [a() for a in alone])
    together = timed(lambda: stacked.step(x1, x2))
    return {
        "models": k,
        "batch_each": batch,
        "one_at_a_time_s_per_round": round(one_at_a_time, 5),
        "stacked_s_per_round": round(together, 5),
        "rows_per_hour_ratio": round(one_at_a_time / together, 2),
    }


def _safe(dev: Device, preset: str, batch: int, warmup: int, steps: int, **options) -> dict:
    try:
        row = measure(dev, preset, batch, warmup, steps, **options)
    except torch.OutOfMemoryError:
        row = {"batch": batch, "options": options, "oom": True}
    except Exception as exc:  # noqa: BLE001 - a compile mode this machine cannot run is a row
        row = {"batch": batch, "options": options, "error": f"{type(exc).__name__}: {exc}"[:300]}
    if dev.cuda:
        torch.cuda.empty_cache()
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for gpu.json")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (a smoke run)")
    parser.add_argument("--no-autotune", action="store_true", help="skip max-autotune")
    parser.add_argument("--no-compile", action="store_true", help="skip both compile rows")
    parser.add_argument("--presets", nargs="+", default=list(PLAN), choices=list(PLAN))
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's dense peak TFLOP/s for MFU (default: by device name; CPU: measured)",
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    dev = Device(args.device, args.peak_tflops)
    if dev.cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    warmup, steps = (2, 3) if args.quick else (5, 20)
    result: dict = {
        "device": dev.label,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "tf32": dev.cuda,
        "cudnn_benchmark": dev.cuda,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "presets": {},
    }
    if dev.cuda:
        result["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(0).total_memory / 2**30, 1
        )
    for preset in args.presets:
        batches, ladder_batch = PLAN[preset]
        if not dev.cuda:  # the same rows at sizes a CPU finishes
            batches, ladder_batch = ((2,), 2) if preset == "paper" else ((32, 256), 32)
        ladder = []
        for name, options in LADDER:
            if "compile_mode" in options and (
                args.no_compile or (args.no_autotune and options["compile_mode"] != "default")
            ):
                continue
            row = {"step": name, **_safe(dev, preset, ladder_batch, warmup, steps, **options)}
            print(f"{preset} {json.dumps(row)}", flush=True)
            ladder.append(row)
        eager = {k: v for k, v in LADDER[5][1].items() if k != "bf16"}
        sweep = []
        for batch in batches:
            for bf16 in (False, True):
                row = _safe(dev, preset, batch, warmup, steps, **eager, bf16=bf16)
                print(f"{preset} {json.dumps(row)}", flush=True)
                sweep.append(row)
        ratios = {}
        for batch in batches:
            pair = [r for r in sweep if r["batch"] == batch and "pairs_per_s" in r]
            if len(pair) == 2:
                fp32, bf16 = sorted(pair, key=lambda r: r["precision"] != "fp32")
                ratios[str(batch)] = round(bf16["pairs_per_s"] / fp32["pairs_per_s"], 3)
        done = [r for r in ladder + sweep if "pairs_per_s" in r]
        best = max(done, key=lambda r: r["pairs_per_s"]) if done else None
        result["presets"][preset] = {
            "ladder_batch": ladder_batch,
            "ladder": ladder,
            "batches": sweep,
            "bf16_over_fp32_by_batch": ratios,
            "best": best,
        }
        _write(args.out, dev, result)  # after every preset: a run cut short keeps what it has
    k = 8
    result["stacked_cpu_preset"] = stacked_speed(dev, k, 32, warmup, steps)
    print(f"stacked {json.dumps(result['stacked_cpu_preset'])}", flush=True)
    result["complete"] = True
    print(f"wrote {_write(args.out, dev, result)}")
    return 0


def _write(folder: str, dev: Device, result: dict) -> Path:
    """``gpu.json`` (``cpu.json`` on CPU) in ``folder``, written atomically; ``complete`` is
    false until every part has run."""
    out = Path(folder) / ("gpu.json" if dev.cuda else "cpu.json")
    atomic_write_text(out, json.dumps({"complete": False, **result}, indent=2) + "\n")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
