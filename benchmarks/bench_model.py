"""Model benchmark: size, FLOPs, CPU training throughput and MFU of the KECAE presets and
classifiers.

    python benchmarks/bench_model.py --out benchmarks/results [--threads 1 2] [--quick]

Writes ``<out>/model.json`` (``model<tag>.json`` with ``--tag``) with, per preset (tiny, cpu,
paper): parameters (K and N branches, decoder, total), forward GFLOP per image and per training pair
(``FlopCounterMode``), and rows of training throughput (forward + backward + Adam with the preset's
loss and a frozen siamese supervisor, as ``kecae train`` runs it: benchmarks/train_step.py; median
pairs/s over several steps after warm-up) per thread count, memory layout and precision (fp32, bf16
autocast), each with the FLOPs of the whole step counted, the achieved TFLOP/s over this CPU's
measured peak (a large matrix product in the row's precision and thread count: benchmarks/mfu.py),
the projected hours of the paper's full run (10^8 pairs) on one such device and on 8 with DDP, and
the peak RSS of the measuring process; the table that chose the ``cpu`` preset (image 64/96/128 ×
width 0.125/0.25/0.5); parameters and GFLOP of every classifier at 64 and 128 px. Each preset is
measured in a fresh process so its peak RSS is its own. Throughput on a shared machine depends on
its load, so the load average is recorded before and after."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

# Runs as a script from the repository root or from benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch

from kecae.files import atomic_write_text
from kecae.models.autoencoder import KECAE, KECAEConfig
from kecae.models.classifiers import CLASSIFIERS, build_classifier
from kecae.models.cost import count_parameters, flops_per_image, flops_per_pair
from kecae.models.presets import PRESETS, kecae_config, preset_training
from kecae.training.config import LossSettings
from mfu import cpu_peak_tflops, mfu_fields, projections, step_flops
from train_step import TrainStep

#: The demo's budget for KECAE training on 2 cores (the rest goes to install, phantoms, two
#: classifier trainings and evaluation within ~15 min).
DEMO_KECAE_SECONDS = 300
#: Fewest pairs a reasonable auto-encoder should see; the cpu preset must reach this in the budget.
MIN_PAIRS = 20_000


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_throughput(
    preset: str,
    batch: int,
    warmup: int,
    steps: int,
    threads: int = 1,
    channels_last: bool = False,
    bf16: bool = False,
    config: KECAEConfig | None = None,
    settings: LossSettings | None = None,
) -> dict:
    """Median pairs/s of full training steps as ``kecae train`` runs them (forward, the preset's
    loss with a frozen siamese supervisor, backward, Adam; benchmarks/train_step.py) on CPU, in
    fp32 or bf16 autocast, with the FLOPs of one step counted and its share of this CPU's
    measured peak (MFU); ``config`` and ``settings`` replace the preset's model and loss (the
    selection table)."""
    torch.set_num_threads(threads)
    step = TrainStep(
        preset, batch, channels_last=channels_last, bf16=bf16, config=config, settings=settings
    )
    times = []
    loss = float("nan")
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    pairs_per_s = batch / step_s
    gflop_step = step_flops(step) / batch / 1e9
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = _cpu_peak(threads, dtype)
    return {
        "batch": batch,
        "threads": threads,
        "channels_last": channels_last,
        "precision": "bf16-autocast" if bf16 else "fp32",
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_s_median": round(step_s, 4),
        "step_s_all": [round(t, 4) for t in times],
        "pairs_per_s": round(pairs_per_s, 2),
        "gflop_step_per_pair": round(gflop_step, 4),
        **mfu_fields(pairs_per_s, gflop_step, peak),
        **projections(pairs_per_s, count_parameters(step.model), batch),
        "loss_finite": math.isfinite(loss),
    }


_PEAKS: dict[tuple[int, torch.dtype], float] = {}


def _cpu_peak(threads: int, dtype: torch.dtype) -> float:
    """This CPU's matrix-product peak at ``threads`` (measured once per process)."""
    if (threads, dtype) not in _PEAKS:
        _PEAKS[threads, dtype] = cpu_peak_tflops(dtype)
    return _PEAKS[threads, dtype]


def kecae_sizes(config: KECAEConfig) -> dict:
    """Parameters per part and FLOPs (meta device: nothing is allocated)."""
    with torch.device("meta"):
        model = KECAE(config)
    return {
        "params": {
            "key_encoder": count_parameters(model.key_encoder),
            "nonkey_encoder": count_parameters(model.nonkey_encoder),
            "decoder": count_parameters(model.decoder),
            "total": count_parameters(model),
        },
        "gflop_forward_per_image": round(flops_per_image(config) / 1e9, 4),
        "gflop_forward_per_pair": round(flops_per_pair(config) / 1e9, 4),
        "gflop_train_per_pair": round(flops_per_pair(config, backward=True) / 1e9, 4),
    }


def measure_preset(
    name: str, batch: int, warmup: int, steps: int, variants: tuple[tuple[int, bool, bool], ...]
) -> dict:
    """One preset: config, sizes, FLOPs, throughput per (threads, channels_last, bf16) variant
    (the first is the headline ``train``) and this process's peak RSS."""
    config = kecae_config(name)
    result = {
        "config": {**vars(config), "encoder_channels": list(config.encoder_channels)},
        "channels": list(config.channels),
        "spatial_sizes": list(config.spatial_sizes),
        "latent_shape": list(config.latent_shape),
        **kecae_sizes(config),
    }
    runs = []
    loss = LossSettings.pick(preset_training(name))
    result["loss"] = {k: v for k, v in preset_training(name).items() if hasattr(loss, k)}
    for threads, channels_last, bf16 in variants:
        run = train_throughput(name, batch, warmup, steps, threads, channels_last, bf16)
        run["gflop_per_s"] = round(run["pairs_per_s"] * result["gflop_train_per_pair"], 2)
        run["loadavg_1min"] = round(os.getloadavg()[0], 2)
        runs.append(run)
    result["train"], result["train_variants"] = runs[0], runs[1:]
    result["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    return result


def measure_candidate(
    image_size: int, width: float, batch: int, warmup: int, steps: int, threads: int
) -> dict:
    """One row of the cpu-preset selection table."""
    config = KECAEConfig(image_size=image_size, width=width)
    sizes = kecae_sizes(config)
    train = train_throughput(
        "cpu", batch, warmup, steps, threads, config=config, settings=LossSettings()
    )
    return {
        "image_size": image_size,
        "width": width,
        "params": sizes["params"]["total"],
        "latent_shape": list(config.latent_shape),
        "gflop_train_per_pair": sizes["gflop_train_per_pair"],
        "pairs_per_s": train["pairs_per_s"],
        "step_s_median": train["step_s_median"],
        f"pairs_in_{DEMO_KECAE_SECONDS}s": int(train["pairs_per_s"] * DEMO_KECAE_SECONDS),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "torch_threads": torch.get_num_threads(),
    }


def measure_classifiers() -> dict:
    """Parameters and forward GFLOP per image of every registered classifier at 64 and 128 px."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for arch in CLASSIFIERS:
        row = {}
        for size in (64, 128):
            with torch.device("meta"):
                model = build_classifier(arch, size).eval()
                x = torch.zeros(1, 1, size, size)
            counter = FlopCounterMode(display=False)
            with counter:
                model(x)
            row[f"{size}px"] = {
                "gflop_forward_per_image": round(counter.get_total_flops() / 1e9, 4),
                "feature_dim": model.feature_dim,
            }
        row["params"] = count_parameters(model)
        out[arch] = row
    return out


def select_cpu_preset(
    rows: list[dict], budget_s: int = DEMO_KECAE_SECONDS, min_pairs: int = MIN_PAIRS
) -> dict:
    """The selection rule: the largest image size at which some width still sees ``min_pairs``
    pairs in ``budget_s``, and at that size the widest such width; if no row qualifies, the row
    that sees the most pairs."""
    ok = [r for r in rows if r["pairs_per_s"] * budget_s >= min_pairs]
    if not ok:
        best = max(rows, key=lambda r: r["pairs_per_s"])
        return {"image_size": best["image_size"], "width": best["width"], "qualified": False}
    best = max(ok, key=lambda r: (r["image_size"], r["width"]))
    return {"image_size": best["image_size"], "width": best["width"], "qualified": True}


def _run(pool: cf.Executor, fn, *args) -> dict:
    t0 = time.perf_counter()
    result = pool.submit(fn, *args).result()
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    result["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    print(f"  {fn.__name__}{args}: {json.dumps(result)[:300]}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for model.json")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps (a smoke run)")
    parser.add_argument("--skip-paper", action="store_true", help="no paper-preset throughput")
    parser.add_argument("--skip-selection", action="store_true", help="no cpu-preset table")
    parser.add_argument(
        "--tag", default="", help="suffix of the file name (model<tag>.json; default none)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch thread counts measured (default 1; e.g. 1 2: each preset's rows at "
        "both, the first is the headline and the selection table's)",
    )
    args = parser.parse_args(argv)

    warmup, steps = (1, 2) if args.quick else (2, 5)
    ctx = mp.get_context("spawn")
    started = time.time()
    report: dict = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads_default": torch.get_num_threads(),
            "torch_threads_measured": args.threads,
            "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        },
        "method": (
            "CPU, fp32 unless a row says bf16-autocast. Training step = KECAE forward on a "
            "batch of pairs + hybrid "
            "loss (frozen siamese supervisor; each preset's loss settings, see 'loss'; "
            "the selection rows: lambda 1e-2 / 1e-3, LDA per image) + "
            "backward + Adam. pairs/s = batch / median step time after warm-up. GFLOP "
            "by torch.utils.flop_counter.FlopCounterMode (2 FLOP per multiply-add; "
            "convolutions and matmuls only; gflop_train_per_pair is KECAE forward + "
            "backward without the supervisor, whose cost is under 'classifiers'). Each "
            "measurement in a fresh process; loadavg_1min records the machine's load. "
            "gflop_step_per_pair: every convolution and matrix product of the whole step "
            "(supervisor and backward included) by FlopCounterMode; mfu = pairs/s x "
            "gflop_step_per_pair over peak_tflop_per_s, the best rate of a 2048^3 matrix "
            "product on this CPU at the row's threads and precision. paper_run_hours: 10^8 "
            "pairs at the row's pairs/s; on 8 DDP devices at the same per-device batch, plus "
            "a ring all-reduce of the fp32 gradients at 450 GB/s, not overlapped."
        ),
        "presets": {},
        "cpu_preset_selection": {},
        "classifiers": {},
    }
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
        print("presets", flush=True)
        for name in PRESETS:
            if name == "paper":
                if args.skip_paper:
                    continue
                variants = tuple((t, True, bf16) for t in args.threads for bf16 in (False, True))
                report["presets"][name] = _run(pool, measure_preset, name, 2, 1, 2, variants)
            else:  # channels-last fp32 as `kecae train` runs it, then contiguous, then bf16
                variants = tuple(
                    (t, cl, bf16)
                    for t in args.threads
                    for cl, bf16 in ((True, False), (False, False), (True, True))
                )
                report["presets"][name] = _run(
                    pool, measure_preset, name, 32, warmup, steps, variants
                )
        if not args.skip_selection:
            print("cpu preset selection", flush=True)
            rows = [
                _run(pool, measure_candidate, size, width, 32, warmup, steps, args.threads[0])
                for size in (64, 96, 128)
                for width in (0.125, 0.25, 0.5)
            ]
            report["cpu_preset_selection"] = {
                "budget_s": DEMO_KECAE_SECONDS,
                "min_pairs": MIN_PAIRS,
                "batch": 32,
                "rows": rows,
                "pick": select_cpu_preset(rows),
                "rule": (
                    f"largest image whose best width still sees >= {MIN_PAIRS} pairs in "
                    f"{DEMO_KECAE_SECONDS} s; among those, the widest such width"
                ),
            }
        print("classifiers", flush=True)
        report["classifiers"] = _run(pool, measure_classifiers)
    report["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    report["wall_s"] = round(time.time() - started, 1)
    out = Path(args.out) / f"model{args.tag}.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} in {report['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
