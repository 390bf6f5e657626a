"""Which cue of KL-2 a grade classifier answers to: joint-space narrowing or osteophytes.

The exchange KL-2 → KL-0 must both widen the joint and remove the spurs; a frozen supervisor
rewards only what it answers to. Fresh phantoms (a seed of their own, never a run's training
images) are rendered at 128 px and preprocessed to the classifiers' size as the pipeline does,
each in four versions that differ in one key feature at a time (ground truth, for this
measurement only):

- KL-2 phantoms as drawn (narrow joint, spurs), with every spur at 0 mm, with the joint spaces at
  the knee's own healthy width (spurs kept), and with both changed;
- KL-0 phantoms as drawn, with the spurs of a KL-2 knee (the same draw's lengths), with the joint
  spaces of that KL-2 knee, and with both.

Everything else (anatomy, noise, position) is the same within a group. For each classifier the
result gives the share of each version called KL-2 and its mean P(KL-2), and the measurement's own
spur call on each version as its control (:func:`kecae.phantoms.measure_many`). A classifier that
calls the widened KL-2 knee with spurs KL-0 rewards an X'2 that keeps its spurs.

``--kecae NAME=CKPT`` asks the other question: each drawn KL-2 knee given a drawn KL-0 knee's key,
the share of X'2 each classifier calls KL-2, and among the X'2 on which the measurement calls a
spur, the share it calls KL-0 anyway (a supervisor that answers to spurs on real knees but passes
these has been satisfied by something other than their removal).

    python benchmarks/cue_sensitivity.py --classifier supervisor=runs/demo/supervisor/best.pt \
        judge=runs/demo/judge/best.pt --kecae demo=runs/demo/kecae/checkpoints/last.pt \
        --n 200 --out benchmarks/results/cue_sensitivity.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from kecae.data.readers import preprocess
from kecae.files import atomic_write_text
from kecae.phantoms import measure_many, render, sample_params
from kecae.phantoms.params import PhantomParams

#: the four versions of each group, in order: as drawn, one cue changed, the other, both
KL2_VERSIONS = ("as drawn", "no spurs", "healthy joint space", "healthy joint space, no spurs")
KL0_VERSIONS = ("as drawn", "KL-2 spurs", "KL-2 joint space", "KL-2 joint space and spurs")
SPURS = (
    "ost_femoral_medial_mm",
    "ost_femoral_lateral_mm",
    "ost_tibial_medial_mm",
    "ost_tibial_lateral_mm",
)


def _spurs(p: PhantomParams, like: PhantomParams | None) -> PhantomParams:
    """``p`` with the spurs of ``like`` (None: every spur at 0 mm)."""
    return dataclasses.replace(p, **{k: getattr(like, k) if like else 0.0 for k in SPURS})


def _joint(p: PhantomParams, jsw: tuple[float, float]) -> PhantomParams:
    return dataclasses.replace(p, jsw_medial_mm=jsw[0], jsw_lateral_mm=jsw[1])


def versions(n: int, seed: int) -> dict[str, list[PhantomParams]]:
    """Parameters of every version: ``"KL-2 <version>"`` and ``"KL-0 <version>"``, n each."""
    rng = np.random.default_rng([seed, 2])
    kl2 = [sample_params(2, rng) for _ in range(n)]
    rng = np.random.default_rng([seed, 0])
    kl0 = [sample_params(0, rng) for _ in range(n)]
    healthy = [(p.healthy_jsw_medial_mm, p.healthy_jsw_lateral_mm) for p in kl2]
    narrow = [(p.jsw_medial_mm, p.jsw_lateral_mm) for p in kl2]
    return {
        f"KL-2 {KL2_VERSIONS[0]}": kl2,
        f"KL-2 {KL2_VERSIONS[1]}": [_spurs(p, None) for p in kl2],
        f"KL-2 {KL2_VERSIONS[2]}": [_joint(p, j) for p, j in zip(kl2, healthy, strict=True)],
        f"KL-2 {KL2_VERSIONS[3]}": [
            _joint(_spurs(p, None), j) for p, j in zip(kl2, healthy, strict=True)
        ],
        f"KL-0 {KL0_VERSIONS[0]}": kl0,
        f"KL-0 {KL0_VERSIONS[1]}": [_spurs(p, q) for p, q in zip(kl0, kl2, strict=True)],
        f"KL-0 {KL0_VERSIONS[2]}": [_joint(p, j) for p, j in zip(kl0, narrow, strict=True)],
        f"KL-0 {KL0_VERSIONS[3]}": [
            _joint(_spurs(p, q), j) for p, q, j in zip(kl0, kl2, narrow, strict=True)
        ],
    }


def rendered(params: list[PhantomParams], size: int) -> np.ndarray:
    """(n, size, size) in [-1, 1], as the pipeline preprocesses a 128 px phantom."""
    return np.stack([preprocess(render(p, 128) / 255.0, size) for p in params]).astype(np.float32)


def p_kl2(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The classifier's P(KL-2) of each image."""
    from kecae.inference import classify

    return classify(model, images)[:, 1]


def called_kl2(model: torch.nn.Module, images: np.ndarray) -> dict[str, float]:
    """Share of ``images`` the classifier calls KL-2, and its mean P(KL-2)."""
    p = p_kl2(model, images)
    return {"called_kl2": float((p > 0.5).mean()), "mean_p_kl2": float(p.mean())}


def exchanged_x2(ckpt: str, kl2: np.ndarray, kl0: np.ndarray) -> np.ndarray:
    """X'2 of each KL-2 knee given the KL-0 knee of the same index's key, (n, S, S)."""
    from kecae.inference import exchange, load_kecae

    model, _ = load_kecae(ckpt)
    _, x2_ex = exchange(model, kl0, kl2)
    return np.asarray(x2_ex)


def passed_spurs(model: torch.nn.Module, x2: np.ndarray, spur: np.ndarray) -> dict[str, float]:
    """Share of X'2 called KL-2, and of the X'2 with a measured spur, the share called KL-0."""
    p = p_kl2(model, x2)
    kept = spur.astype(bool)
    return {
        "x2_called_kl2": float((p > 0.5).mean()),
        "x2_with_spur": float(kept.mean()),
        "x2_with_spur_called_kl0": float((p[kept] <= 0.5).mean()) if kept.any() else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classifier", nargs="+", required=True, metavar="NAME=CKPT")
    ap.add_argument("--kecae", nargs="*", default=[], metavar="NAME=CKPT")
    ap.add_argument("--n", type=int, default=200, help="phantoms of each grade")
    ap.add_argument("--size", type=int, default=64, help="image side the classifiers take (px)")
    ap.add_argument("--seed", type=int, default=20261207)
    ap.add_argument("--out", default="benchmarks/results/cue_sensitivity.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from kecae.inference import load_classifier

    images = {k: rendered(v, args.size) for k, v in versions(args.n, args.seed).items()}
    result: dict = {
        "n": args.n,
        "size": args.size,
        "seed": args.seed,
        "spur_called": {k: float(measure_many(v)["osteophytes"].mean()) for k, v in images.items()},
        "classifiers": {},
    }
    x2s = {}
    for spec in args.kecae:
        name, _, path = spec.partition("=")
        x2 = exchanged_x2(
            path, images[f"KL-2 {KL2_VERSIONS[0]}"], images[f"KL-0 {KL0_VERSIONS[0]}"]
        )
        x2s[name] = (x2, measure_many(x2)["osteophytes"])
    for spec in args.classifier:
        name, _, path = spec.partition("=")
        model, _ = load_classifier(path)
        rows = {k: called_kl2(model, v) for k, v in images.items()}
        on_x2 = {k: passed_spurs(model, x2, spur) for k, (x2, spur) in x2s.items()}
        result["classifiers"][name] = {"checkpoint": path, "versions": rows, "x2": on_x2}
        print(name, json.dumps({k: round(v["called_kl2"], 3) for k, v in rows.items()}))
        print(name, "on X'2", json.dumps(on_x2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
