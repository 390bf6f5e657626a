"""`kecae evaluate --run DIR`: every number about a trained KECAE, written to DIR/metrics.json.

The run folder (made by `kecae demo`, or by hand with the same names)::

    DIR/kecae/        KECAE training run (config.yaml, checkpoints/last.pt, log.csv)
    DIR/supervisor/   the classifier that supervised training (best.pt, metrics.json)
    DIR/judge/        an independent classifier: other architecture and seed, never used in training
    DIR/eval/         arrays behind the report's figures (examples.npz, fidelity.npz)
    DIR/metrics.json  sections: separability, exchange_success, judge, supervisor, fidelity,
                      quality, targets (other sections already there are kept)

All pairs are drawn from the TEST split, so nothing here was seen in training.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae import CLASS_GRADES
from kecae.runfolder import write_sections
from kecae.utils import KecaeError, atomic_path, select_device

log = logging.getLogger(__name__)

#: Targets on the demo's phantoms: name -> (metrics path, comparison, threshold).
TARGETS = {
    "judge KL-0 -> KL-2 success": ("exchange_success.judge_kl0_to_kl2", ">=", 0.85),
    "judge KL-2 -> KL-0 success": ("exchange_success.judge_kl2_to_kl0", ">=", 0.85),
    "key transfer ratio (median)": ("fidelity.key_transfer_median", ">=", 0.7),
    "non-key SSIM (median)": ("fidelity.nonkey_ssim_median", ">=", 0.9),
    "SVM on hK": ("separability.svm_hk_accuracy", ">=", 0.9),
    "SVM on hN": ("separability.svm_hn_accuracy", "<=", 0.65),
}


@dataclass
class EvaluateConfig:
    """Evaluation of a run folder."""

    run: str = ""  # run folder (see the module docstring)
    kecae_checkpoint: str | None = None  # default: RUN/kecae/checkpoints/last.pt
    judge: str | None = None  # independent classifier checkpoint; default: RUN/judge/best.pt
    supervisor: str | None = None  # default: the one named in the KECAE run's config
    data: str | None = None  # default: the KECAE run's data set
    pairs: int = 500  # test pairs to exchange
    separability_images: int = 1000  # most test images per SVM (5-fold)
    examples: int = 8  # pairs kept for the report's figure
    seed: int = 0  # seeds the test-pair sample
    band: float = 0.12  # half-height of the joint band, as a fraction of the image side
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _rate(mask: np.ndarray) -> dict[str, float]:
    from kecae.evaluation import metrics as M

    f = M.fraction(mask)
    return {"value": f["value"], "n": f["n"], "ci_low": f["ci_low"], "ci_high": f["ci_high"]}


def _put_rate(section: dict, key: str, mask: np.ndarray) -> None:
    f = _rate(mask)
    section[key] = f["value"]
    section[key + "_ci_low"], section[key + "_ci_high"] = f["ci_low"], f["ci_high"]
    section[key + "_n"] = f["n"]


def _exchange_all(model: Any, x1: np.ndarray, x2: np.ndarray, device: Any,
                  batch: int = 64) -> dict[str, np.ndarray]:
    """Reconstructions and exchanges of aligned pairs, eval mode: 4 arrays (n, S, S)."""
    import torch

    outs: dict[str, list[np.ndarray]] = {k: [] for k in ("x1_hat", "x2_hat", "x1_ex", "x2_ex")}
    with torch.no_grad():
        for s in range(0, len(x1), batch):
            a = torch.from_numpy(np.asarray(x1[s:s + batch], np.float32))[:, None].to(device)
            b = torch.from_numpy(np.asarray(x2[s:s + batch], np.float32))[:, None].to(device)
            o = model(a, b)
            for k in outs:
                outs[k].append(getattr(o, k)[:, 0].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def _measure(images: np.ndarray, sides: list[str | None]) -> dict[str, np.ndarray]:
    from kecae.phantoms import measure_joint

    rows = [measure_joint(img, side=side) for img, side in zip(images, sides)]
    return {"ok": np.array([r.ok for r in rows]),
            "jsw": np.array([r.jsw_medial_px for r in rows], dtype=np.float64),
            "osteo": np.array([bool(r.osteophytes) if r.ok else False for r in rows]),
            "row": np.array([r.joint_row for r in rows], dtype=np.float64)}


def _is_phantom_data(data: str) -> bool:
    p = Path(data)
    gt = p / "ground_truth.csv" if p.is_dir() else p
    if not gt.is_file():
        return False
    with open(gt) as fh:
        return "jsw_medial_px" in fh.readline()


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    from kecae.data import PairSampler, load_image_set
    from kecae.evaluation import metrics as M
    from kecae.inference import classifier_features, classify, encode, load_classifier, load_kecae

    run = Path(cfg.run)
    device = select_device(cfg.device)
    kecae_ckpt = Path(cfg.kecae_checkpoint or run / "kecae" / "checkpoints" / "last.pt")
    model, kckpt = load_kecae(str(kecae_ckpt), device)
    tcfg = kckpt["train_config"]
    data = cfg.data or tcfg["data"]
    sup_path = cfg.supervisor or tcfg.get("supervisor") or str(run / "supervisor" / "best.pt")
    judge_path = Path(cfg.judge or run / "judge" / "best.pt")
    size = int(kckpt["model_config"]["image_size"])
    judge, jckpt = load_classifier(str(judge_path), device)
    supervisor, sckpt = load_classifier(sup_path, device)
    for name, ck in (("judge", jckpt), ("supervisor", sckpt)):
        if ck["model_config"]["image_size"] != size:
            raise KecaeError(f"the {name} works at {ck['model_config']['image_size']} px but KECAE at "
                             f"{size} px: train it with --image-size {size}")
    independent = (jckpt["model_config"]["arch"] != sckpt["model_config"]["arch"]
                   and jckpt["train_config"].get("seed") != sckpt["train_config"].get("seed"))
    if not independent:
        log.warning("the judge %s has the supervisor's architecture or seed: it is not independent",
                    judge_path)

    load = lambda split, grade: load_image_set(data, size=size, split=split, grades=(grade,),  # noqa: E731
                                               cache_dir=cfg.cache_dir, progress=False)
    t0, t2 = load("test", CLASS_GRADES[0]), load("test", CLASS_GRADES[1])
    tr0, tr2 = load("train", CLASS_GRADES[0]), load("train", CLASS_GRADES[1])
    n_pairs = min(cfg.pairs, len(t0.images) * len(t2.images))
    ij = np.array([PairSampler(len(t0.images), len(t2.images), n_pairs, seed=cfg.seed)[k]
                   for k in range(n_pairs)], dtype=np.int64)
    x1 = np.asarray(t0.images[ij[:, 0]], np.float32)
    x2 = np.asarray(t2.images[ij[:, 1]], np.float32)
    side1 = [t0.sides[i] for i in ij[:, 0]]
    side2 = [t2.sides[j] for j in ij[:, 1]]
    o = _exchange_all(model, x1, x2, device)
    result: dict[str, Any] = {}

    # 1. separability of the latents (the paper's Fig. 3 metric), on test images
    rng = np.random.default_rng(cfg.seed)
    half = cfg.separability_images // 2
    pick0 = np.sort(rng.permutation(len(t0.images))[:half])
    pick2 = np.sort(rng.permutation(len(t2.images))[:half])
    imgs = np.concatenate([np.asarray(t0.images[pick0]), np.asarray(t2.images[pick2])])
    labels = np.r_[np.zeros(len(pick0), int), np.ones(len(pick2), int)]
    hk, hn = encode(model, imgs, device=device)
    sk, sn = M.svm_separability(hk, labels, seed=cfg.seed), M.svm_separability(hn, labels, seed=cfg.seed)
    result["separability"] = {"svm_hk_accuracy": sk["mean"], "svm_hk_accuracy_std": sk["std"],
                              "svm_hn_accuracy": sn["mean"], "svm_hn_accuracy_std": sn["std"],
                              "n": int(len(labels)), "folds": 5, "latent_dim": int(hk.shape[1])}

    # 2. exchange success: judge and supervisor, on exchanges and on reconstructions
    real_test = np.concatenate([t0.images, t2.images])
    judge_real = M.classification_metrics(
        np.r_[np.zeros(len(t0.images), int), np.ones(len(t2.images), int)],
        (classify(judge, real_test, device=device)[:, 1] >= 0.5).astype(int))
    p = {name: {k: classify(clf, o[k], device=device)[:, 1] for k in o}
         for name, clf in (("judge", judge), ("supervisor", supervisor))}
    # plausibility: the measurement finds a joint and the judge's features of the image lie
    # within the real test images' distribution (Mahalanobis, 99th percentile of real images)
    real_feats = classifier_features(judge, real_test, device=device)
    f1, f2 = (classifier_features(judge, o[k], device=device) for k in ("x1_ex", "x2_ex"))
    m = {k: _measure(img, sides) for k, img, sides in (
        ("x1", x1, side1), ("x2", x2, side2), ("x1_ex", o["x1_ex"], side1),
        ("x2_ex", o["x2_ex"], side2), ("x1_hat", o["x1_hat"], side1), ("x2_hat", o["x2_hat"], side2))}
    plaus1 = m["x1_ex"]["ok"] & M.mahalanobis_plausible(real_feats, f1)
    plaus2 = m["x2_ex"]["ok"] & M.mahalanobis_plausible(real_feats, f2)
    f_hat = classifier_features(judge, np.r_[o["x1_hat"], o["x2_hat"]], device=device)
    plaus_hat = np.r_[m["x1_hat"]["ok"], m["x2_hat"]["ok"]] & M.mahalanobis_plausible(real_feats, f_hat)
    ex: dict[str, Any] = {"n": n_pairs, "judge_independent": independent}
    for who in ("judge", "supervisor"):
        called2_x1ex, called0_x2ex = p[who]["x1_ex"] >= 0.5, p[who]["x2_ex"] < 0.5
        _put_rate(ex, f"{who}_kl0_to_kl2", called2_x1ex & plaus1)
        _put_rate(ex, f"{who}_kl2_to_kl0", called0_x2ex & plaus2)
        _put_rate(ex, f"{who}_kl0_to_kl2_raw", called2_x1ex)
        _put_rate(ex, f"{who}_kl2_to_kl0_raw", called0_x2ex)
        _put_rate(ex, f"{who}_recon_kl0_to_kl2", p[who]["x1_hat"] >= 0.5)  # X̂1 wrongly called KL-2
        _put_rate(ex, f"{who}_recon_kl2_to_kl0", p[who]["x2_hat"] < 0.5)  # X̂2 wrongly called KL-0
    _put_rate(ex, "plausible_rate", np.r_[plaus1, plaus2])
    _put_rate(ex, "plausible_rate_kl0_to_kl2", plaus1)
    _put_rate(ex, "plausible_rate_kl2_to_kl0", plaus2)
    _put_rate(ex, "plausible_rate_recon", plaus_hat)  # the same rule on X̂: what blur alone costs
    ex["rule"] = ("success = the classifier calls the donor's grade AND the image is plausible: "
                  "the joint measurement finds a joint AND the judge's features lie within the 99th "
                  "percentile Mahalanobis distance of real test images; *_raw = label only")
    result["exchange_success"] = ex
    result["judge"] = {"arch": jckpt["model_config"]["arch"], "checkpoint": str(judge_path),
                       "test_accuracy": judge_real["accuracy"], "n_test": judge_real["n"],
                       "seed": jckpt["train_config"].get("seed")}
    sup_metrics = Path(sup_path).parent / "metrics.json"
    result["supervisor"] = {"arch": sckpt["model_config"]["arch"], "checkpoint": str(sup_path),
                            "seed": sckpt["train_config"].get("seed"),
                            "test_accuracy": json.loads(sup_metrics.read_text())["test_accuracy"]
                            if sup_metrics.exists() else None}

    # 3. ground-truth fidelity (the measurement is built for the phantoms' geometry)
    fid_arrays: dict[str, np.ndarray] = {}
    if _is_phantom_data(data):
        kt1 = M.key_transfer_ratio(m["x1"]["jsw"], m["x1_ex"]["jsw"], m["x2"]["jsw"])
        kt2 = M.key_transfer_ratio(m["x2"]["jsw"], m["x2_ex"]["jsw"], m["x1"]["jsw"])
        rk1 = M.key_transfer_ratio(m["x1_hat"]["jsw"], m["x1_ex"]["jsw"], m["x2_hat"]["jsw"])
        rk2 = M.key_transfer_ratio(m["x2_hat"]["jsw"], m["x2_ex"]["jsw"], m["x1_hat"]["jsw"])
        band = cfg.band * size
        nonkey = np.array([M.masked_ssim(a, b, M.joint_band_mask(a.shape, row, band))
                           if np.isfinite(row) else np.nan
                           for a, b, row in zip(x1, o["x1_ex"], m["x1"]["row"])])
        nonkey_recon = np.array([M.masked_ssim(a, b, M.joint_band_mask(a.shape, row, band))
                                 if np.isfinite(row) else np.nan
                                 for a, b, row in zip(o["x1_hat"], o["x1_ex"], m["x1"]["row"])])
        donor_osteo, recip_clean = m["x2"]["osteo"] & m["x2"]["ok"], ~m["x1"]["osteo"] & m["x1"]["ok"]
        s1, s2, r1 = M.robust_summary(kt1), M.robust_summary(kt2), M.robust_summary(rk1)
        result["fidelity"] = {
            "key_transfer_median": s1["median"], "key_transfer_iqr": s1["iqr"], "key_transfer_n": s1["n"],
            "key_transfer_median_kl2_to_kl0": s2["median"], "key_transfer_iqr_kl2_to_kl0": s2["iqr"],
            "recon_key_transfer_median": r1["median"],
            "recon_key_transfer_median_kl2_to_kl0": M.robust_summary(rk2)["median"],
            "osteophyte_transfer_rate": _rate(m["x1_ex"]["osteo"][donor_osteo])["value"],
            "osteophyte_transfer_n": int(donor_osteo.sum()),
            "osteophyte_removal_rate": _rate(~m["x2_ex"]["osteo"][recip_clean])["value"],
            "osteophyte_removal_n": int(recip_clean.sum()),
            "nonkey_ssim_median": float(np.nanmedian(nonkey)) if np.isfinite(nonkey).any() else math.nan,
            "nonkey_ssim_vs_recon_median": float(np.nanmedian(nonkey_recon))
            if np.isfinite(nonkey_recon).any() else math.nan,
            "refusal_rate": float(1 - np.r_[m["x1_ex"]["ok"], m["x2_ex"]["ok"]].mean()),
            "refusal_rate_real": float(1 - np.r_[m["x1"]["ok"], m["x2"]["ok"]].mean()),
            "jsw_x1_median": float(np.nanmedian(m["x1"]["jsw"])),
            "jsw_x2_median": float(np.nanmedian(m["x2"]["jsw"])),
            "jsw_x1_ex_median": float(np.nanmedian(m["x1_ex"]["jsw"])) if m["x1_ex"]["ok"].any() else math.nan,
            "jsw_x2_ex_median": float(np.nanmedian(m["x2_ex"]["jsw"])) if m["x2_ex"]["ok"].any() else math.nan,
            "n": n_pairs, "band_half_height_px": band}
        fid_arrays = {"key_transfer_kl0_to_kl2": kt1, "key_transfer_kl2_to_kl0": kt2,
                      "recon_key_transfer_kl0_to_kl2": rk1, "nonkey_ssim": nonkey}

    # 4. image quality
    ps = M.psnr_batch(np.r_[x1, x2], np.r_[o["x1_hat"], o["x2_hat"]])
    ss = M.ssim_batch(np.r_[x1, x2], np.r_[o["x1_hat"], o["x2_hat"]])
    train_real = np.concatenate([tr0.images, tr2.images])
    train_feats = classifier_features(judge, train_real, device=device)
    result["quality"] = {"recon_psnr": ps["mean"], "recon_psnr_std": ps["std"],
                         "recon_ssim": ss["mean"], "recon_ssim_std": ss["std"], "n": ps["n"],
                         "frechet": M.frechet_distance(real_feats, np.r_[f1, f2]),
                         "frechet_recon": M.frechet_distance(real_feats, f_hat),
                         "frechet_real_floor": M.frechet_real_floor(train_feats, seed=cfg.seed),
                         "frechet_feature": f"{result['judge']['arch']} penultimate features",
                         "frechet_n_real": int(len(real_feats)), "frechet_n_generated": 2 * n_pairs}

    # targets
    result["targets"] = {}
    for name, (path, op, thr) in TARGETS.items():
        value = _get(result, path)
        met = None if value is None or not np.isfinite(value) else (value >= thr if op == ">=" else value <= thr)
        result["targets"][name] = {"metric": path, "target": f"{op} {thr}", "value": value, "met": met}

    # arrays for the report
    k = min(cfg.examples, n_pairs)
    ex_arr = {"x1": x1[:k], "x2": x2[:k], **{key: v[:k] for key, v in o.items()}}
    for key in ("x1", "x1_ex", "x2", "x2_ex"):
        ex_arr[f"jsw_{key}"] = m[key]["jsw"][:k]
        ex_arr[f"joint_row_{key}"] = m[key]["row"][:k]
    eval_dir = run / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    _save_npz(eval_dir / "examples.npz", ex_arr)
    if fid_arrays:
        _save_npz(eval_dir / "fidelity.npz", fid_arrays)

    return write_sections(run, result)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
