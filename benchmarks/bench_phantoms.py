"""Phantom benchmark: speed, measurement accuracy, and the grade statistics of the data set.

    python benchmarks/bench_phantoms.py --out benchmarks/results [--quick] \
        [--grid docs/phantoms_grid.png]

Writes ``OUT/phantoms.json``:
- ``speed``: images/s at 128 and 224 px (render only; render + PNG encoding; the whole
  ``make_phantoms`` writer, single process), wall clock and CPU time, with the load average (the
  machine is shared: CPU-time rates are the ones to compare between runs);
- ``measurement``: |measured - true| JSW per compartment (median, p95) on noise-free and default
  phantoms at 128 px (plus 64 / 224 px and Gaussian-blurred images), refusal rate, osteophyte
  detection accuracy;
- ``grades``: per grade, true JSW medial / lateral (mm, and px at 64 / 128), osteophyte rate, latent
  severity; measured medial JSW per grade; and classifier-free baselines: the best single
  threshold on the measured (and true) medial JSW, and logistic regression on the true key
  features (a ceiling for what a classifier can reach, given the built-in label overlap).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kecae.phantoms import measure_joint, render, sample_params
from kecae.phantoms.dataset import encode_png, make_phantoms

# Seeds: distinct from the tests' and from the one the osteophyte call was calibrated on (77).
SEED_ACCURACY, SEED_GRADES, SEED_SPEED = 2024, 31337, 5


def _params(n: int, seed: int, grades=(0, 2)):
    rng = np.random.default_rng(seed)
    return [sample_params(grades[i % len(grades)], rng) for i in range(n)]


def _rate(fn, items) -> dict[str, float]:
    """Items per second of ``fn`` over ``items`` by wall clock and by this process's CPU time."""
    fn(items[0])  # warm caches (coordinate grids, texture bank)
    t, c = time.perf_counter(), time.process_time()
    for it in items:
        fn(it)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "images_per_s_wall": len(items) / wall,
        "images_per_s_cpu": len(items) / cpu,
        "n": len(items),
    }


def bench_speed(quick: bool) -> dict:
    out: dict = {"load_average_1min_before": os.getloadavg()[0], "cpu_count": os.cpu_count()}
    n = 100 if quick else 400
    ps = _params(n, SEED_SPEED)
    for size in (128, 224):
        out[f"render_{size}"] = _rate(lambda p, s=size: render(p, s), ps)
        out[f"render_png_{size}"] = _rate(lambda p, s=size: encode_png(render(p, s)), ps)
    with tempfile.TemporaryDirectory() as tmp:
        n_set = 100 if quick else 500
        t, c = time.perf_counter(), time.process_time()
        make_phantoms(
            Path(tmp) / "set",
            n_kl0=n_set * 3 // 5,
            n_kl2=n_set * 2 // 5,
            size=128,
            seed=SEED_SPEED,
            progress=False,
        )
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        out["make_phantoms_128"] = {
            "images_per_s_wall": n_set / wall,
            "images_per_s_cpu": n_set / cpu,
            "n": n_set,
            "note": "single process, files written to a temporary folder",
        }
    out["load_average_1min_after"] = os.getloadavg()[0]
    return out


def _errors(ps, size: int, noise_free: bool, blur_px: float = 0.0) -> tuple[dict, list]:
    """Measure phantoms; return summary and per-image rows (grade, measured medial JSW)."""
    err = {"medial": [], "lateral": []}
    ost_hit, refused, rows = [], 0, []
    for p in ps:
        img = render(p, size, noise_free=noise_free)
        if blur_px:
            img = ndimage.gaussian_filter(img.astype(np.float32) / 255, blur_px)
        m = measure_joint(img, side=p.side)
        if not m.ok:
            refused += 1
            continue
        gt = p.ground_truth(size)
        err["medial"].append(abs(m.jsw_medial_px - gt["jsw_medial_px"]))
        err["lateral"].append(abs(m.jsw_lateral_px - gt["jsw_lateral_px"]))
        ost_hit.append(m.osteophytes == p.osteophytes)
        rows.append((p.grade, m.jsw_medial_px, m.osteophytes))
    summary = {
        "n": len(ps),
        "refusal_rate": refused / len(ps),
        "osteophyte_accuracy": float(np.mean(ost_hit)) if ost_hit else None,
    }
    for k, e in err.items():
        e = np.asarray(e)
        summary[f"jsw_{k}_abs_err_px_median"] = float(np.median(e))
        summary[f"jsw_{k}_abs_err_px_p95"] = float(np.percentile(e, 95))
    return summary, rows


def bench_measurement(quick: bool) -> tuple[dict, list]:
    n = 100 if quick else 500
    ps = _params(n, SEED_ACCURACY)
    out: dict = {}
    out["noise_free_128"], _rows_nf = _errors(ps, 128, True)
    out["default_128"], rows = _errors(ps, 128, False)
    small = ps[: max(50, n // 3)]
    out["default_64"], _ = _errors(small, 64, False)
    out["default_224"], _ = _errors(small, 224, False)
    out["default_128_blur1px"], _ = _errors(small, 128, False, blur_px=1.0)
    out["default_128_blur2px"], _ = _errors(small, 128, False, blur_px=2.0)
    return out, rows


def _best_threshold(x: np.ndarray, y: np.ndarray) -> float:
    """Best accuracy of a single threshold on ``x`` (either direction) for boolean labels ``y``."""
    order = np.argsort(x)
    ys = y[order]
    n, pos = len(y), ys.sum()
    below_pos = np.concatenate([[0], np.cumsum(ys)])  # positives among the k smallest
    k = np.arange(n + 1)
    acc_low_is_pos = (below_pos + (n - k) - (pos - below_pos)) / n
    return float(max(acc_low_is_pos.max(), (1 - acc_low_is_pos).max()))


def bench_grades(measured_rows: list, quick: bool) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    n0, n2 = (600, 400) if quick else (3185, 2126)  # the paper's balance
    rng = np.random.default_rng(SEED_GRADES)
    ps = [sample_params(0, rng) for _ in range(n0)] + [sample_params(2, rng) for _ in range(n2)]
    y = np.array([p.grade == 2 for p in ps])
    out: dict = {"n_kl0": n0, "n_kl2": n2}
    for g, sel in ((0, ~y), (2, y)):
        sub = [p for p, s in zip(ps, sel) if s]

        def ms(v):
            v = np.asarray(v, float)
            return {"mean": float(v.mean()), "std": float(v.std())}

        out[f"kl{g}"] = {
            "jsw_medial_mm": ms([p.jsw_medial_mm for p in sub]),
            "jsw_lateral_mm": ms([p.jsw_lateral_mm for p in sub]),
            "jsw_medial_px_64": ms([p.ground_truth(64)["jsw_medial_px"] for p in sub]),
            "jsw_medial_px_128": ms([p.ground_truth(128)["jsw_medial_px"] for p in sub]),
            "osteophyte_rate": float(np.mean([p.osteophytes for p in sub])),
            "largest_osteophyte_px_64_when_present": ms(
                [max(p.osteophyte_sizes_mm) / p.pixel_spacing_mm(64) for p in sub if p.osteophytes]
                or [np.nan]
            ),
            "severity": ms([p.severity for p in sub]),
        }
    d64 = out["kl0"]["jsw_medial_px_64"]["mean"] - out["kl2"]["jsw_medial_px_64"]["mean"]
    out["jsw_medial_difference_px_64"] = d64
    jm = np.array([p.jsw_medial_mm for p in ps])
    out["best_threshold_accuracy_true_medial_jsw"] = _best_threshold(jm, y)
    X = np.array([[p.jsw_medial_mm, p.jsw_lateral_mm, *p.osteophyte_sizes_mm] for p in ps])
    out["logistic_regression_true_key_features_cv5"] = float(
        cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=5).mean()
    )

    g = np.array([r[0] for r in measured_rows])
    jsw = np.array([r[1] for r in measured_rows])
    ost = np.array([r[2] for r in measured_rows])
    out["measured_128"] = {
        "n": len(g),
        "kl0_jsw_medial_px": {"mean": float(jsw[g == 0].mean()), "std": float(jsw[g == 0].std())},
        "kl2_jsw_medial_px": {"mean": float(jsw[g == 2].mean()), "std": float(jsw[g == 2].std())},
        "kl0_osteophyte_rate": float(ost[g == 0].mean()),
        "kl2_osteophyte_rate": float(ost[g == 2].mean()),
        "best_threshold_accuracy_measured_medial_jsw": _best_threshold(jsw, g == 2),
    }
    return out


def make_grid(path: Path, size: int = 224) -> None:
    """2 x 6 sample phantoms (top KL-0, bottom KL-2), each titled with its ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 6, figsize=(12, 5.3), dpi=110)
    for r, grade in enumerate((0, 2)):
        for c in range(6):
            p = sample_params(grade, np.random.default_rng([11, grade, c]))
            ax = axes[r, c]
            ax.imshow(render(p, size), cmap="gray", vmin=0, vmax=255)
            ost = "osteophytes" if p.osteophytes else "no osteophytes"
            ax.set_title(
                f"KL-{grade} ({p.side})  JSW-M {p.jsw_medial_mm:.1f} mm\n{ost}", fontsize=8
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"KL-{grade}", fontsize=12)
    fig.suptitle(
        "kecae phantoms: synthetic AP knee radiographs (224 px; JSW-M = medial joint space)",
        fontsize=10,
    )
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.01, top=0.88, wspace=0.05, hspace=0.28)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="folder for phantoms.json")
    ap.add_argument("--quick", action="store_true", help="fewer images (a smoke run)")
    ap.add_argument("--grid", default=None, help="also draw the sample grid PNG to this path")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    result: dict = {"machine": machine, "quick": args.quick}
    result["speed"] = bench_speed(args.quick)
    result["measurement"], rows = bench_measurement(args.quick)
    result["grades"] = bench_grades(rows, args.quick)
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "phantoms.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.grid:
        make_grid(Path(args.grid))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
