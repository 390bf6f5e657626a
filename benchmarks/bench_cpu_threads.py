"""CPU thread sharing: KECAE training pairs/s alone and beside one busy CPU-bound process, at 1 and
2 torch threads, OpenMP wait policy default or PASSIVE, and with kecae's own choice.

    flock /work/locks/core0.lock flock /work/locks/core1.lock \\
        python benchmarks/bench_cpu_threads.py --out benchmarks/results

Needs the whole machine (both cores, no taskset): each row starts a fresh measuring process with
its environment (OMP_NUM_THREADS, OMP_WAIT_POLICY are read when torch loads), and for the
"beside a busy process" rows a second process that spins in Python on one core for as long as
the measurement runs. The measuring process trains the ``cpu`` preset at batch 32 in channels-last
as ``kecae train`` does (benchmarks/train_step.py): warm-up steps, then the median step time of
the timed steps. The ``auto`` rows leave the thread count to kecae (``kecae.threads``: as many
threads as cores the other processes leave idle, looked at again every few steps), the way a
``kecae`` command runs when neither OMP_NUM_THREADS nor ``--threads`` is given.

Writes ``<out>/cpu_threads.json``: the rows, each row's pairs/s beside the busy process as a share
of the same setting alone, and the 2-thread / 1-thread ratio alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kecae.files import atomic_write_text

#: A CPU-bound process that touches no memory to speak of: the other job on a shared machine.
BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def worker(warmup: int, steps: int, auto: bool, max_s: float = 30.0) -> dict:
    """Runs in the measuring process: the step times of the ``cpu`` preset at batch 32."""
    from kecae.threads import ThreadGovernor, configure

    # as the command line does, before torch loads
    configured = configure() if auto else None
    import torch

    from train_step import TrainStep

    governor = ThreadGovernor.from_environment() if auto else None
    step = TrainStep("cpu", 32, channels_last=True)
    times, threads_used = [], []
    started = time.perf_counter()
    for i in range(warmup + steps):
        if len(times) >= 5 and time.perf_counter() - started > max_s:
            break  # a collapsed setting: enough steps to tell
        if governor is not None:
            governor.tick(i)
        t0 = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            threads_used.append(torch.get_num_threads())
    median = statistics.median(times)
    return {
        "step_s_median": round(median, 4),
        "pairs_per_s": round(32 / median, 1),
        "torch_threads_used": sorted(set(threads_used)),
        "timed_steps_at_threads": {
            str(n): threads_used.count(n) for n in sorted(set(threads_used))
        },
        "step_s_median_at_threads": {
            str(n): round(statistics.median(t for t, k in zip(times, threads_used) if k == n), 4)
            for n in sorted(set(threads_used))
        },
        "threads_configured_at_start": configured,
        "timed_steps": len(times),
    }


def measure(threads: str, policy: str, busy: bool, warmup: int, steps: int) -> dict:
    """One row in a fresh process (``threads`` "1", "2" or "auto"), beside a spinning process
    when ``busy``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    if threads != "auto":
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    spinner = None
    if busy:
        spinner = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=600)])
        time.sleep(1.0)  # the spinner is running (and the load sampler sees it) before we start
    cmd = [sys.executable, __file__, "--worker", "--warmup", str(warmup), "--steps", str(steps)]
    if threads == "auto":
        cmd.append("--auto")
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    row = json.loads(done.stdout.strip().splitlines()[-1])
    return {"threads": threads, "omp_wait_policy": policy, "beside_busy_process": busy, **row}


def summarise(rows: list[dict]) -> dict:
    """Each setting's pairs/s beside the busy process over alone, and 2 threads over 1."""

    def get(threads: str, policy: str, busy: bool) -> float | None:
        for r in rows:
            if (r["threads"], r["omp_wait_policy"], r["beside_busy_process"]) == (
                threads,
                policy,
                busy,
            ):
                return float(r["pairs_per_s"])
        return None

    out: dict = {"shared_over_alone": {}, "two_over_one_alone": {}}
    for r in rows:
        key = f"threads={r['threads']},policy={r['omp_wait_policy']}"
        alone, shared = (get(r["threads"], r["omp_wait_policy"], b) for b in (False, True))
        if alone and shared:
            out["shared_over_alone"][key] = round(shared / alone, 3)
    for policy in sorted({r["omp_wait_policy"] for r in rows}):
        one, two = get("1", policy, False), get("2", policy, False)
        if one and two:
            out["two_over_one_alone"][f"policy={policy}"] = round(two / one, 3)
    one = get("1", "default", False)
    for policy in sorted({r["omp_wait_policy"] for r in rows}):
        auto = get("auto", policy, False)
        if one and auto:
            out["two_over_one_alone"][f"auto,policy={policy}"] = round(auto / one, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for cpu_threads.json")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per row")
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["1", "2", "auto"],
        choices=["1", "2", "auto"],
        help="thread settings measured (default: 1 2 auto)",
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        default=["default", "PASSIVE"],
        choices=["default", "PASSIVE"],
        help="OpenMP wait policies measured (default: default PASSIVE)",
    )
    parser.add_argument("--tag", default="", help="suffix of the file name (cpu_threads<tag>.json)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--auto", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.warmup, args.steps, args.auto)))
        return 0

    started = time.time()
    rows = []
    for threads in args.threads:
        for policy in args.policies:
            for busy in (False, True):
                row = measure(threads, policy, busy, args.warmup, args.steps)
                row["loadavg_1min"] = round(os.getloadavg()[0], 2)
                print(json.dumps(row), flush=True)
                rows.append(row)
    report = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
        },
        "method": (
            "cpu preset, batch 32, channels-last, frozen siamese supervisor, the preset's loss; "
            "pairs/s = 32 / median step time over the timed steps after warm-up, each row in a "
            "fresh process; 'beside_busy_process': a Python busy loop runs on the machine for "
            "the whole row (unpinned, as another user's job would be)."
        ),
        "rows": rows,
        "summary": summarise(rows),
        "wall_s": round(time.time() - started, 1),
    }
    out = Path(args.out) / f"cpu_threads{args.tag}.json"
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
