"""Profile of KECAE training steps on CPU: where one step of a preset spends its time.

    flock /work/locks/core0.lock taskset -c 0 env OMP_NUM_THREADS=1 \\
        python benchmarks/profile_cpu_step.py --out benchmarks/results --channels-last

Runs ``--warmup`` steps, then profiles ``--steps`` steps of the preset (default ``cpu``, batch
32: what ``make demo`` trains) with ``torch.profiler`` and writes ``<out>/cpu_profile<tag>.txt``
(the operator table sorted by self CPU time) and ``<out>/cpu_profile<tag>.json`` (the top
operators with their self CPU time per step and share of the step, the step time, the settings).
``--ab N`` times the step with the supervisor's batch norms folded against kept instead
(``<out>/cpu_fold_ab<tag>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from kecae.files import atomic_write_text
from train_step import TrainStep


def profile_steps(
    preset: str, batch: int, warmup: int, steps: int, channels_last: bool, fold: bool = True
) -> tuple[str, dict]:
    """The profiler table and the top operators of ``steps`` training steps."""
    step = TrainStep(preset, batch, channels_last=channels_last, fold=fold)
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("train_step"):
                step()
    wall = (time.perf_counter() - t0) / steps
    averages = prof.key_averages()
    table = averages.table(sort_by="self_cpu_time_total", row_limit=40)
    step_us = sum(e.self_cpu_time_total for e in averages) / steps
    top = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    rows = [
        {
            "op": e.key,
            "self_cpu_ms_per_step": round(e.self_cpu_time_total / steps / 1e3, 3),
            "share_of_step": round(e.self_cpu_time_total / steps / step_us, 4),
            "calls_per_step": e.count // steps,
        }
        for e in top
    ]
    calls = sum(e.count for e in averages) // steps
    return table, {
        "preset": preset,
        "batch": batch,
        "channels_last": channels_last,
        "supervisor_batchnorm_folded": fold,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "profiled_steps": steps,
        "step_s_profiled": round(wall, 4),
        "op_calls_per_step": calls,
        "top_ops_by_self_cpu": rows,
    }


def fold_ab(preset: str, batch: int, warmup: int, steps: int, channels_last: bool) -> dict:
    """The supervisor's batch norms folded (kecae's step) against kept (before), without the
    profiler: the two steps built from one seed take turns step by step, so a change of the
    machine's load hits both alike; median step times and their ratio."""
    steps_of = {
        "folded": TrainStep(preset, batch, channels_last=channels_last, fold=True),
        "unfolded": TrainStep(preset, batch, channels_last=channels_last, fold=False),
    }
    times: dict[str, list[float]] = {name: [] for name in steps_of}
    for i in range(warmup + steps):
        for name, step in steps_of.items():
            t0 = time.perf_counter()
            step()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "preset": preset,
        "batch": batch,
        "channels_last": channels_last,
        "torch_threads": torch.get_num_threads(),
        "timed_steps_each": steps,
        "step_s_median_unfolded": round(median["unfolded"], 4),
        "step_s_median_folded": round(median["folded"], 4),
        "pairs_per_s_unfolded": round(batch / median["unfolded"], 1),
        "pairs_per_s_folded": round(batch / median["folded"], 1),
        "speedup_folded": round(median["unfolded"] / median["folded"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for the profile")
    parser.add_argument("--preset", default="cpu", help="KECAE preset (default: cpu)")
    parser.add_argument("--batch", type=int, default=32, help="pairs per step (default 32)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before profiling")
    parser.add_argument("--steps", type=int, default=10, help="steps profiled")
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and images")
    parser.add_argument(
        "--no-fold", action="store_true", help="keep the frozen supervisor's batch norms"
    )
    parser.add_argument("--tag", default="", help="suffix of the file names")
    parser.add_argument(
        "--ab",
        type=int,
        default=0,
        metavar="N",
        help="instead of profiling: N unprofiled steps each of the folded and the unfolded "
        "supervisor, taking turns (<out>/cpu_fold_ab<tag>.json)",
    )
    args = parser.parse_args(argv)
    machine = {
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    out = Path(args.out)
    if args.ab:
        ab = fold_ab(args.preset, args.batch, args.warmup, args.ab, args.channels_last)
        ab["machine"] = machine
        atomic_write_text(out / f"cpu_fold_ab{args.tag}.json", json.dumps(ab, indent=2) + "\n")
        print(json.dumps(ab))
        return 0
    table, summary = profile_steps(
        args.preset, args.batch, args.warmup, args.steps, args.channels_last, not args.no_fold
    )
    summary["machine"] = machine
    atomic_write_text(out / f"cpu_profile{args.tag}.txt", table + "\n")
    atomic_write_text(out / f"cpu_profile{args.tag}.json", json.dumps(summary, indent=2) + "\n")
    print(table)
    print(json.dumps({k: v for k, v in summary.items() if k != "top_ops_by_self_cpu"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
