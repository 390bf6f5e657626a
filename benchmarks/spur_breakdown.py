"""Where the spurs on X'2 come from: KL-2 phantoms exchanged with KL-0 donors, binned by the
recipient's largest ground-truth spur, and how far a morphological opening of whole images goes.

Fresh phantoms (a seed of their own, never a run's training images) are rendered at 128 px and
preprocessed to the model's size as the pipeline does. For each KECAE checkpoint, every KL-2
recipient gets a random KL-0 donor's key; the evaluation's own measurement
(:func:`kecae.phantoms.measure_many`, from the image alone) calls a spur on X2 and on X'2. The
bins by ground truth separate two failures: a spur called on an X'2 whose recipient had none
(made by the exchange) and a spur kept. ``--open-sizes`` adds the control for the edit
appearances ``open`` / ``erode``: the measured osteophyte rate of real KL-2 and KL-0 phantoms
opened whole by squares of those sides. ``--inpaint-oracle`` is the ceiling of the edit
appearance ``healthy``: each KL-2 recipient's spurs (found from ground truth: the same phantom
rendered with every spur at 0 mm) hidden under a soft mask and filled by a trained model's healthy
inpainter, beside the same mask filled with the spur-free render itself (the mask's own control).
``--critic-locator`` asks whether a run's local grade critic finds the spurs: its places called
KL-2 on the same recipients as a mask, the share of the spurs' pixels under it, and the spur rate
when the spur-free twin is pasted under it (the best any fill could do with that mask).
A call merges into ``--out`` (a name measured again replaces its entry); ``--replace`` starts it
afresh.

    python benchmarks/spur_breakdown.py --kecae g32_patch=RUN/kecae/checkpoints/last.pt \
        --pairs 200 --open-sizes 3 5 7 --out benchmarks/results/spur_breakdown.json
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
from kecae.evaluation.inputs import measure_joints
from kecae.files import atomic_write_text
from kecae.models.edit import compose, gaussian_blur, open_images
from kecae.phantoms import render, sample_params

#: Bins of the recipient's largest ground-truth spur (mm); below 1.5 mm no spur is definite.
BINS_MM = ((0.0, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 5.0), (5.0, float("inf")))


def phantoms(grade: int, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fresh phantoms of KL ``grade`` as (n, size, size) in [-1, 1] and their largest spur
    (mm) each."""
    rng = np.random.default_rng([seed, grade])
    images, spurs = [], []
    for _ in range(n):
        p = sample_params(grade, rng)
        images.append(preprocess(render(p, 128) / 255.0, size))
        spurs.append(max(p.osteophyte_sizes_mm))
    return np.stack(images).astype(np.float32), np.asarray(spurs)


def spur_free_twins(grade: int, n: int, size: int, seed: int) -> np.ndarray:
    """The phantoms of :func:`phantoms` rendered again with every spur at 0 mm (all else the
    same, noise included): ground truth, for the oracle mask only."""
    rng = np.random.default_rng([seed, grade])
    images = []
    for _ in range(n):
        p = dataclasses.replace(
            sample_params(grade, rng),
            ost_femoral_medial_mm=0.0,
            ost_femoral_lateral_mm=0.0,
            ost_tibial_medial_mm=0.0,
            ost_tibial_lateral_mm=0.0,
        )
        images.append(preprocess(render(p, 128) / 255.0, size))
    return np.stack(images).astype(np.float32)


#: The oracle mask: pixels where the spur changes the image by more than this (image units of
#: [-1, 1]), grown by ``ORACLE_GROW_PX`` px and softened as the edit's masks are.
ORACLE_DIFF = 0.05
ORACLE_GROW_PX = 2


def soft_mask(hard: torch.Tensor) -> torch.Tensor:
    """A hard mask (n, 1, S, S) grown by ``ORACLE_GROW_PX`` px and softened as the edit's masks
    are (the oracle's and the critic locator's masks alike)."""
    k = 2 * ORACLE_GROW_PX + 1
    grown = torch.nn.functional.max_pool2d(hard, k, stride=1, padding=ORACLE_GROW_PX)
    return gaussian_blur(grown, 1.0).clamp(0, 1)


def oracle_masks(with_spurs: np.ndarray, without: np.ndarray) -> torch.Tensor:
    """Soft masks (n, 1, S, S) over where the spurs are (ground truth; evaluation only)."""
    return soft_mask(torch.from_numpy(np.abs(with_spurs - without) > ORACLE_DIFF).float()[:, None])


def pasted(recipients: np.ndarray, fill: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The recipients (n, S, S) with ``fill`` (n, 1, S, S) composed under ``mask`` as the edit
    composes X', as (n, S, S)."""
    return compose(torch.from_numpy(recipients)[:, None], fill, mask)[:, 0].numpy()


def inpaint_oracle(
    model: torch.nn.Module, recipients: np.ndarray, twins: np.ndarray
) -> dict[str, float]:
    """Spur calls on KL-2 recipients whose spurs the oracle mask hides and ``model``'s healthy
    inpainter fills, beside the mask filled with the spur-free twin (the mask's control)."""
    inpainter = getattr(model, "inpainter", None)
    if inpainter is None:
        raise SystemExit("--inpaint-oracle needs a model trained with edit_appearance healthy")
    m = oracle_masks(recipients, twins)
    with torch.no_grad():
        filled = pasted(recipients, inpainter(torch.from_numpy(recipients)[:, None], m), m)
    measured = measure_joints(filled, [None] * len(filled))
    return {
        "x2_called": float(spur_calls(recipients).mean()),
        "inpainted_called": float(measured.osteophytes.mean()),
        # a refused image counts as 'no spur': a fill that breaks the outline must not pass
        "inpainted_measured": float(measured.ok.mean()),
        "twin_fill_called": float(
            spur_calls(pasted(recipients, torch.from_numpy(twins)[:, None], m)).mean()
        ),
        "twins_called": float(spur_calls(twins).mean()),
        "mask_area_median": float(m.flatten(1).mean(1).median()),
    }


def critic_locator(
    ckpt: dict, recipients: np.ndarray, twins: np.ndarray, thresholds: tuple[float, ...]
) -> dict:
    """How well a checkpoint's local grade critic finds the spurs of KL-2 ``recipients``: per
    place-logit threshold, its KL-2 places (grown by 2 px, softened) as a mask, their share of the
    image, the share of the oracle mask's pixels they cover, and the spur rate with the spur-free
    twin pasted under them."""
    from kecae.local_critic import LocalGradeCritic

    state = ckpt.get("local_critic")
    if state is None:
        raise SystemExit("--critic-locator needs a run trained with --lambda-local-sup")
    critic = LocalGradeCritic(int(state["net.0.bias"].shape[0]))
    critic.load_state_dict(state)
    critic.eval()
    with torch.no_grad():
        logit, places = critic(torch.from_numpy(recipients)[:, None])
    spur_px = oracle_masks(recipients, twins)[:, 0] > 0.5
    size = recipients.shape[-1]
    rows = []
    for thr in thresholds:
        m = soft_mask(
            torch.nn.functional.interpolate(
                (places > thr).float(), size=(size, size), mode="nearest"
            )
        )
        twin_fill = pasted(recipients, torch.from_numpy(twins)[:, None], m)
        rows.append(
            {
                "threshold": thr,
                "mask_area": float(m.mean()),
                "spur_px_covered": float((m[:, 0] > 0.5)[spur_px].float().mean()),
                "twin_fill_called": float(spur_calls(twin_fill).mean()),
            }
        )
    return {"called_kl2": float((logit > 0).float().mean()), "thresholds": rows}


def spur_calls(images: np.ndarray) -> np.ndarray:
    """The evaluation's osteophyte call per image (bool; a refused image has none)."""
    return measure_joints(images, [None] * len(images)).osteophytes


def breakdown(
    model: torch.nn.Module, recipients: np.ndarray, donors: np.ndarray, gt_mm: np.ndarray
) -> dict:
    """Spur calls on X2 and X'2 = exchange(recipient, donor's key), overall and by ``BINS_MM``."""
    with torch.no_grad():
        out = model(torch.from_numpy(donors)[:, None], torch.from_numpy(recipients)[:, None])
    x2_ex = out.x2_ex[:, 0].float().numpy()
    before, after = spur_calls(recipients), spur_calls(x2_ex)
    bins = []
    for lo, hi in BINS_MM:
        s = (gt_mm >= lo) & (gt_mm < hi)
        kept = s & before
        bins.append(
            {
                "gt_mm": [lo, hi if np.isfinite(hi) else None],
                "n": int(s.sum()),
                "x2_called": float(before[s].mean()) if s.any() else None,
                "x2_ex_called": float(after[s].mean()) if s.any() else None,
                "kept_of_called": float(after[kept].mean()) if kept.any() else None,
            }
        )
    return {
        "n": len(gt_mm),
        "x2_called": float(before.mean()),
        "x2_ex_called": float(after.mean()),
        "made_on_spur_free": bins[0]["x2_ex_called"],
        "bins": bins,
    }


def opening_control(images: np.ndarray, sizes: list[int]) -> dict[str, float]:
    """Measured osteophyte rate of ``images`` as they are and opened whole by each square."""
    rates = {"0": float(spur_calls(images).mean())}
    x = torch.from_numpy(images)[:, None]
    for k in sizes:
        rates[str(k)] = float(spur_calls(open_images(x, k)[:, 0].numpy()).mean())
    return rates


#: The sections of a result file that hold one entry per measured name.
NAMED_SECTIONS = ("models", "critic_locator", "inpaint_oracle")


def earlier_result(path: Path, pairs: int, size: int, seed: int) -> dict | None:
    """The result already in ``path`` to merge into, or None where there is none. Exits with a
    message naming the file when it is not a result, or was measured on other phantoms."""
    if not path.exists():
        return None
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        message = f"{path}: not a spur breakdown to merge into ({exc}); pass --replace"
        raise SystemExit(message) from None
    if not isinstance(earlier, dict):
        raise SystemExit(f"{path}: not a spur breakdown to merge into; pass --replace")
    mine = {"pairs": pairs, "size": size, "seed": seed}
    theirs = {k: earlier.get(k) for k in mine}
    if theirs != mine:
        raise SystemExit(
            f"{path} holds measurements on other phantoms ({theirs}, asked {mine}): write "
            "another --out, or pass --replace to start it afresh"
        )
    return earlier


def merged(earlier: dict, new: dict) -> dict:
    """``earlier`` with ``new`` laid over it: each named section keeps the earlier names that
    were not measured again; ``opening`` is replaced only where measured again."""
    result = dict(earlier)
    for key, value in new.items():
        if key in NAMED_SECTIONS:
            result[key] = {**earlier.get(key, {}), **value}
        else:
            result[key] = value
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kecae", nargs="*", default=[], metavar="NAME=CKPT")
    ap.add_argument("--pairs", type=int, default=200, help="KL-2 recipients (and KL-0 donors)")
    ap.add_argument("--size", type=int, default=64, help="image side the models take (px)")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--open-sizes", type=int, nargs="*", default=[])
    ap.add_argument("--inpaint-oracle", nargs="*", default=[], metavar="NAME=CKPT")
    ap.add_argument("--critic-locator", nargs="*", default=[], metavar="NAME=CKPT")
    ap.add_argument("--out", default="benchmarks/results/spur_breakdown.json")
    ap.add_argument(
        "--replace",
        action="store_true",
        help="write --out afresh (default: merge into it, a name measured again replacing its "
        "entry, when its pairs, size and seed are these)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    earlier = None if args.replace else earlier_result(out, args.pairs, args.size, args.seed)
    torch.set_num_threads(1)
    kl2, gt = phantoms(2, args.pairs, args.size, args.seed)
    kl0, _ = phantoms(0, args.pairs, args.size, args.seed)
    donors = kl0[np.random.default_rng(args.seed).permutation(args.pairs)]
    result: dict = {"pairs": args.pairs, "size": args.size, "seed": args.seed, "models": {}}
    if args.open_sizes:
        result["opening"] = {
            "KL-2": opening_control(kl2, args.open_sizes),
            "KL-0": opening_control(kl0, args.open_sizes),
        }
    from kecae.inference import load_kecae  # torch model code only when a model is asked for

    for spec in args.kecae:
        name, _, path = spec.partition("=")
        model, _ = load_kecae(path)
        result["models"][name] = breakdown(model, kl2, donors, gt)
        print(name, json.dumps(result["models"][name]["bins"]), flush=True)
    twins = None
    if args.inpaint_oracle or args.critic_locator:
        twins = spur_free_twins(2, args.pairs, args.size, args.seed)
    if args.critic_locator:
        from kecae.checkpoint import load_checkpoint

        result["critic_locator"] = {}
        for spec in args.critic_locator:
            name, _, path = spec.partition("=")
            got = critic_locator(load_checkpoint(path, kind="kecae"), kl2, twins, (0.0, 1.0))
            result["critic_locator"][name] = got
            print(name, json.dumps(got), flush=True)
    if args.inpaint_oracle:
        assert twins is not None
        result["inpaint_oracle"] = {}
        for spec in args.inpaint_oracle:
            name, _, path = spec.partition("=")
            model, _ = load_kecae(path)
            result["inpaint_oracle"][name] = inpaint_oracle(model, kl2, twins)
            print(name, json.dumps(result["inpaint_oracle"][name]), flush=True)
    if earlier is not None:
        result = merged(earlier, result)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
