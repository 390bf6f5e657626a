"""GPU benchmark: KECAE training throughput and memory of the presets on one CUDA device.

    python benchmarks/bench_gpu.py --out benchmarks/results [--quick]

Writes ``<out>/gpu.json``: the device, torch and CUDA versions, then per preset (paper, cpu) and
batch size, in fp32 (TF32 matrix products) and in bf16 autocast, one full training step as
``kecae train`` runs it (forward on a batch of pairs, the hybrid loss with the preset's training
settings and a frozen siamese supervisor, backward, Adam): median step time over timed steps
after warm-up (each step ends with a device synchronisation), pairs/s, achieved TFLOP/s from the
counted training FLOPs, and the peak CUDA memory allocated in the timed steps (cudnn's algorithm
search in the warm-up allocates large workspaces and is left out). A batch that does not fit is
recorded as ``"oom"``. The hours per million training pairs are projected from the fastest row
of each precision.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from kecae.files import atomic_write_text
from kecae.losses import LossInputs, kecae_loss
from kecae.models.autoencoder import KECAE
from kecae.models.classifiers import build_classifier
from kecae.models.cost import flops_per_pair
from kecae.models.presets import kecae_config, preset_training
from kecae.training.config import LossSettings


def step_time(preset: str, batch: int, bf16: bool, warmup: int, steps: int) -> dict:
    """Median seconds of one training step of ``preset`` at ``batch`` on the GPU."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    config = kecae_config(preset)
    settings = LossSettings.pick(preset_training(preset))
    model = KECAE(config).to(device).train()
    supervisor = build_classifier("siamese", config.image_size).to(device).eval()
    for p in supervisor.parameters():
        p.requires_grad_(False)
    s = config.image_size
    x1 = torch.rand(batch, 1, s, s, device=device) * 2 - 1
    x2 = torch.rand(batch, 1, s, s, device=device) * 2 - 1
    y1 = torch.zeros(batch, dtype=torch.long, device=device)
    y2 = torch.ones(batch, dtype=torch.long, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    loss = torch.zeros(())
    for i in range(warmup + steps):
        if i == warmup:  # cudnn's algorithm search (benchmark mode) allocates large workspaces
            torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = kecae_loss(LossInputs(model(x1, x2), x1, x2, y1, y2, supervisor), settings)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    gflop = flops_per_pair(config, backward=True) / 1e9
    return {
        "batch": batch,
        "precision": "bf16-autocast" if bf16 else "fp32",
        "step_s_median": round(step_s, 5),
        "step_s_min": round(min(times), 5),
        "pairs_per_s": round(batch / step_s, 1),
        "tflop_per_s": round(batch / step_s * gflop / 1e3, 2),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "loss_finite": bool(torch.isfinite(loss.detach().float())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for gpu.json")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (a smoke run)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    warmup, steps = (2, 3) if args.quick else (5, 20)
    plan = {"paper": (8, 16, 32, 64), "cpu": (32, 256, 1024)}
    props = torch.cuda.get_device_properties(0)
    result: dict = {
        "device": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "tf32": True,
        "cudnn_benchmark": True,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "presets": {},
    }
    for preset, batches in plan.items():
        config = kecae_config(preset)
        rows = []
        for batch in batches:
            for bf16 in (False, True):
                try:
                    row = step_time(preset, batch, bf16, warmup, steps)
                except torch.OutOfMemoryError:
                    precision = "bf16-autocast" if bf16 else "fp32"
                    row = {"batch": batch, "precision": precision, "oom": True}
                torch.cuda.empty_cache()
                print(f"{preset} {json.dumps(row)}", flush=True)
                rows.append(row)
        entry: dict = {
            "image_size": config.image_size,
            "width": config.width,
            "exchange": config.exchange,
            "gflop_train_per_pair": round(flops_per_pair(config, backward=True) / 1e9, 3),
            "rows": rows,
        }
        for precision in ("fp32", "bf16-autocast"):
            done = [r for r in rows if r.get("precision") == precision and not r.get("oom")]
            if done:
                best = max(done, key=lambda r: r["pairs_per_s"])
                entry[f"hours_per_million_pairs_{precision}"] = round(
                    1e6 / best["pairs_per_s"] / 3600, 3
                )
        result["presets"][preset] = entry
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "gpu.json", json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
