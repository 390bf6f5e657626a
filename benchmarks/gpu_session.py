"""The one command to run on a lent GPU: ``gpu.json`` with everything issue-21 asks of a card in a
few minutes.

    python benchmarks/gpu_session.py --out benchmarks/results              # on the GPU, ~6-8 min
    python benchmarks/gpu_session.py --device cpu --quick --out /tmp/gpu   # its smoke test on CPU

Runs, each in its own process under a time limit so that one stage that hangs or runs out of
memory cannot lose the others:

1. ``bench_gpu.py`` (the fast-path ladder, the batch sweep with bf16/fp32 ratios, MFU, peak
   memory and paper-run projections per row, 8 stacked ``cpu``-preset runs against one at a
   time), which writes ``gpu.json`` after every preset;
2. ``authors_step.py`` (the authors' step against the paper preset's, fp32 and bf16, same card,
   alternating);

then adds the authors'-step rows and each stage's wall time and exit status to ``gpu.json``
(``cpu.json`` with ``--device cpu``, whose numbers are a smoke test of the script, not results).
``--autotune`` adds the ``torch.compile(mode="max-autotune")`` rows, which can take many minutes
on their own. Exit status: 0 when every stage finished, 1 otherwise (the file keeps what did).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kecae.files import atomic_write_text

HERE = Path(__file__).resolve().parent
#: Seconds each stage may run on a GPU (its whole budget is a few minutes): bench_gpu, authors.
LIMITS_S = {"bench_gpu": 420, "authors_step": 150}


def stages(
    device: str, out: Path, quick: bool, autotune: bool, presets: tuple[str, ...] = ()
) -> list[tuple[str, list[str]]]:
    """The stages' command lines: (name, argv); ``presets`` narrows bench_gpu's presets."""
    bench = [sys.executable, str(HERE / "bench_gpu.py"), "--out", str(out), "--device", device]
    if presets:
        bench += ["--presets", *presets]
    if quick:
        bench.append("--quick")
    if not autotune:
        bench.append("--no-autotune")
    if device == "cpu":  # compiling the paper model with inductor on a CPU takes many minutes
        bench.append("--no-compile")
    batch, steps = ("2", "1") if device == "cpu" else ("32", "3")
    warmup = "0" if device == "cpu" and quick else "1"  # an authors' step takes ~25 s on a core
    authors = [
        sys.executable,
        str(HERE / "authors_step.py"),
        "--out",
        str(out),
        "--device",
        device,
        "--batch",
        batch,
        "--steps",
        steps,
        "--warmup",
        warmup,
    ]
    return [("bench_gpu", bench), ("authors_step", authors)]


def run_stage(name: str, argv: list[str], limit_s: float) -> dict:
    """Runs one stage, its output passed through; its exit status and wall time."""
    print(f"[gpu_session] {name}: {' '.join(argv[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        rc: int | str = subprocess.run(argv, timeout=limit_s, check=False).returncode
    except subprocess.TimeoutExpired:
        rc = f"timed out after {limit_s:.0f} s"
    return {"stage": name, "returncode": rc, "wall_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for gpu.json")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (smoke test)")
    parser.add_argument("--quick", action="store_true", help="fewer timed steps")
    parser.add_argument("--autotune", action="store_true", help="add the max-autotune rows")
    parser.add_argument(
        "--presets", nargs="+", default=[], help="bench_gpu's presets (default: all)"
    )
    parser.add_argument(
        "--limit-scale", type=float, default=1.0, help="multiply each stage's time limit"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("gpu_session: no CUDA device here; run it with --device cpu", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.device == "cpu" else args.device
    ran = [
        run_stage(name, cmd, LIMITS_S[name] * args.limit_scale)
        for name, cmd in stages(device, out, args.quick, args.autotune, tuple(args.presets))
    ]
    target = out / ("cpu.json" if device == "cpu" else "gpu.json")
    suffix = "" if device == "cpu" else "_" + device.split(":")[0]
    authors_file = out / f"authors_step{suffix}.json"
    try:
        result = json.loads(target.read_text())
    except (OSError, ValueError):
        result = {"presets": {}, "note": f"{target.name} was not written by bench_gpu.py"}
    if authors_file.is_file() and ran[1]["returncode"] == 0:
        result["authors_step"] = json.loads(authors_file.read_text())
    result["session"] = {"device": device, "quick": args.quick, "stages": ran}
    atomic_write_text(target, json.dumps(result, indent=2) + "\n")
    print(f"[gpu_session] wrote {target}: {json.dumps(ran)}")
    return 0 if all(r["returncode"] == 0 for r in ran) else 1


if __name__ == "__main__":
    raise SystemExit(main())
