"""`kecae evaluate --run DIR`: every number about a trained KECAE, written to DIR/metrics.json.

The run folder (made by `kecae demo`, or by hand with the same names)::

    DIR/kecae/        KECAE training run (config.yaml, checkpoints/last.pt, log.csv)
    DIR/supervisor/   the classifier that supervised training (best.pt, metrics.json)
    DIR/judge/        an independent classifier: other architecture and seed, never used in training
    DIR/eval/         arrays behind the report's figures (examples.npz, fidelity.npz)
    DIR/metrics.json  sections: separability, exchange_success, plausibility, judge, supervisor,
                      fidelity, quality, targets (other sections already there are kept)

Exchanged pairs are drawn from the TEST split, so nothing here was seen in training. Every rate on
generated images sits beside the same rule on controls:

- the **no-exchange output** (the recipient given its own key: the reconstruction X̂ for the
  paper's decoded exchange, the recipient itself for a residual or warp exchange): what the
  pipeline produces when nothing is exchanged, the rate an exchange must beat;
- the **reconstructions** X̂ (what the auto-encoder's blur alone does);
- **real held-out images**: the plausibility rule is fitted on train images, thresholded on
  validation images and checked on test images, where it must pass about its nominal share; the
  judge's own recall on real test images of the donor's grade caps what any exchange can score.
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

#: The two exchange directions: name -> (exchanged image, recipient, donor, donor's class index).
DIRECTIONS = {"kl0_to_kl2": ("x1_ex", "x1", "x2", 1), "kl2_to_kl0": ("x2_ex", "x2", "x1", 0)}

#: Targets on the demo's phantoms: name -> (metrics path, comparison, threshold).
TARGETS = {
    "judge agrees with its call on the donor, KL-0 -> KL-2":
        ("exchange_success.judge_agreement_kl0_to_kl2", ">=", 0.9),
    "judge agrees with its call on the donor, KL-2 -> KL-0":
        ("exchange_success.judge_agreement_kl2_to_kl0", ">=", 0.9),
    "label-only rate minus the no-exchange control, KL-0 -> KL-2":
        ("exchange_success.judge_lift_kl0_to_kl2", ">=", 0.40),
    "label-only rate minus the no-exchange control, KL-2 -> KL-0":
        ("exchange_success.judge_lift_kl2_to_kl0", ">=", 0.40),
    "plausible X' / plausible real held-out images":
        ("plausibility.ratio_to_real", ">=", 0.9),
    "key transfer median, KL-0 -> KL-2 (refusals fail)": ("fidelity.key_transfer_median", ">=", 0.7),
    "key transfer median, KL-2 -> KL-0 (refusals fail)":
        ("fidelity.key_transfer_median_kl2_to_kl0", ">=", 0.7),
    "osteophyte rate of X'1 minus the real KL-2 rate, |points|":
        ("fidelity.osteophyte_gap_kl0_to_kl2", "<=", 0.10),
    "non-key SSIM (median)": ("fidelity.nonkey_ssim_median", ">=", 0.9),
    "SVM on hK": ("separability.svm_hk_accuracy", ">=", 0.85),
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
    patient_regex: str | None = None  # folder layout: patient regex (default: the KECAE run's)
    pairs: int = 500  # test pairs to exchange
    separability_images: int = 1000  # most test images per SVM (5-fold)
    examples: int = 8  # pairs kept for the report's figure
    seed: int = 0  # seeds the test-pair sample
    band: float = 0.12  # half-height of the joint band, as a fraction of the image side
    plausibility_quantile: float = 0.99  # nominal pass rate of real held-out images
    device: str = "auto"  # auto / cpu / cuda
    cache_dir: str | None = None  # preprocessed-image cache


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _put_rate(section: dict, key: str, mask: np.ndarray) -> None:
    """``key`` = share of True, with ``key_ci_low``, ``key_ci_high`` (Wilson 95 %) and ``key_n``."""
    from kecae.evaluation import metrics as M

    f = M.fraction(np.asarray(mask, dtype=bool))
    section[key] = f["value"]
    section[key + "_ci_low"], section[key + "_ci_high"] = f["ci_low"], f["ci_high"]
    section[key + "_n"] = f["n"]


def _exchange_all(model: Any, x1: np.ndarray, x2: np.ndarray, device: Any,
                  batch: int = 64) -> dict[str, np.ndarray]:
    """Eval-mode outputs of aligned pairs, each (n, S, S): reconstructions, exchanges and the
    no-exchange controls ``x1_self`` = exchange(X1, X1)'s X'1 and ``x2_self`` likewise."""
    import torch

    keys = ("x1_hat", "x2_hat", "x1_ex", "x2_ex", "x1_self", "x2_self")
    outs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    with torch.no_grad():
        for s in range(0, len(x1), batch):
            a = torch.from_numpy(np.asarray(x1[s:s + batch], np.float32))[:, None].to(device)
            b = torch.from_numpy(np.asarray(x2[s:s + batch], np.float32))[:, None].to(device)
            o = model(a, b)
            got = {"x1_hat": o.x1_hat, "x2_hat": o.x2_hat, "x1_ex": o.x1_ex, "x2_ex": o.x2_ex,
                   "x1_self": model.exchange(a, a)[0], "x2_self": model.exchange(b, b)[0]}
            for k in keys:
                outs[k].append(got[k][:, 0].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def _measure(images: np.ndarray, sides: list[str | None]) -> dict[str, np.ndarray]:
    """Joint measurement of each image: found (``ok``), medial JSW, osteophyte call, joint row.
    A refused measurement counts as 'no osteophyte'."""
    from kecae.phantoms import measure_joint

    rows = [measure_joint(img, side=side) for img, side in zip(images, sides)]
    return {"ok": np.array([r.ok for r in rows], dtype=bool),
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


def _load_models(cfg: EvaluateConfig, run: Path, device: Any) -> dict[str, Any]:
    """The KECAE model, judge and supervisor with their checkpoints, checked for one image size."""
    from kecae.inference import load_classifier, load_kecae

    kecae_ckpt = Path(cfg.kecae_checkpoint or run / "kecae" / "checkpoints" / "last.pt")
    model, kckpt = load_kecae(str(kecae_ckpt), device)
    tcfg = kckpt["train_config"]
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
    return {"model": model, "kckpt": kckpt, "judge": judge, "jckpt": jckpt, "judge_path": judge_path,
            "supervisor": supervisor, "sckpt": sckpt, "sup_path": sup_path, "size": size,
            "independent": independent, "data": cfg.data or tcfg["data"],
            "patient_regex": cfg.patient_regex or tcfg.get("patient_regex")}


def _separability(model: Any, judge: Any, t0: Any, t2: Any, cfg: EvaluateConfig,
                  device: Any) -> dict:
    """The paper's Fig. 3 metric: SVM-RBF accuracy on hK and on hN of test images, beside the same
    SVM on the judge's penultimate features of the same images (what a vector made to tell the
    grades reaches on these images: the phantom grades overlap, so no key can reach 100 %)."""
    from kecae.evaluation import metrics as M
    from kecae.inference import classifier_features, encode

    rng = np.random.default_rng(cfg.seed)
    half = cfg.separability_images // 2
    pick0 = np.sort(rng.permutation(len(t0.images))[:half])
    pick2 = np.sort(rng.permutation(len(t2.images))[:half])
    imgs = np.concatenate([np.asarray(t0.images[pick0]), np.asarray(t2.images[pick2])])
    labels = np.r_[np.zeros(len(pick0), int), np.ones(len(pick2), int)]
    hk, hn = encode(model, imgs, device=device)
    sk, sn = M.svm_separability(hk, labels, seed=cfg.seed), M.svm_separability(hn, labels, seed=cfg.seed)
    sj = M.svm_separability(classifier_features(judge, imgs, device=device), labels, seed=cfg.seed)
    return {"svm_hk_accuracy": sk["mean"], "svm_hk_accuracy_std": sk["std"],
            "svm_hn_accuracy": sn["mean"], "svm_hn_accuracy_std": sn["std"],
            "svm_judge_features_accuracy": sj["mean"], "svm_judge_features_accuracy_std": sj["std"],
            "n": int(len(labels)), "folds": 5, "latent_dim": int(hn.shape[1]),
            "key_dim": int(hk.shape[1])}


def _judge_on_real(judge: Any, t0: Any, t2: Any, device: Any) -> dict:
    """The judge's accuracy, confusion and per-grade recall on every real test image."""
    from kecae.evaluation import metrics as M
    from kecae.inference import classify

    y = np.r_[np.zeros(len(t0.images), int), np.ones(len(t2.images), int)]
    p = classify(judge, np.concatenate([t0.images, t2.images]), device=device)[:, 1]
    m = M.classification_metrics(y, (p >= 0.5).astype(int), p)
    (tn, fp), (fn, tp) = m["confusion"]
    return {"test_accuracy": m["accuracy"], "n_test": m["n"], "confusion": m["confusion"],
            "auc": m["auc"], "recall_kl2": tp / max(tp + fn, 1), "recall_kl0": tn / max(tn + fp, 1)}


def _exchange_success(calls: dict[str, dict[str, np.ndarray]], plausible: dict[str, np.ndarray],
                      recall: dict[int, float], n: int, independent: bool) -> dict:
    """Rates of the donor's grade on X', with the no-exchange and reconstruction controls."""
    ex: dict[str, Any] = {"n": n, "judge_independent": independent}
    for d, (img, _recipient, donor, cls) in DIRECTIONS.items():
        hat, self_ = img.replace("_ex", "_hat"), img.replace("_ex", "_self")
        for who, c in calls.items():
            raw = c[img] == cls
            control = c[self_] == cls
            _put_rate(ex, f"{who}_{d}_raw", raw)
            _put_rate(ex, f"{who}_control_{d}", control)
            _put_rate(ex, f"{who}_recon_{d}", c[hat] == cls)
            ex[f"{who}_lift_{d}"] = float(raw.mean() - control.mean())
            if who == "judge":
                _put_rate(ex, f"judge_{d}", raw & plausible[img])
                _put_rate(ex, f"judge_agreement_{d}", c[img] == c[donor])
                _put_rate(ex, f"judge_agreement_control_{d}", c[self_] == c[donor])
                ex[f"judge_relative_{d}"] = (float(raw.mean() / recall[cls]) if recall[cls] > 0
                                             else math.nan)
    ex["rule"] = ("success = the judge calls the donor's grade AND the image is plausible (see "
                  "the plausibility section); *_raw = label only; agreement = the judge gives X' "
                  "the grade it gives the donor itself; control = the same rule on the "
                  "no-exchange output (the recipient given its own key); recon = on X̂; "
                  "lift = label-only rate minus the control; relative = label-only rate / the "
                  "judge's recall on real test images of the donor's grade")
    return ex


def _plausibility(feats: dict[str, np.ndarray], found: dict[str, np.ndarray],
                  quantile: float) -> tuple[dict, dict[str, np.ndarray]]:
    """Fit on train, threshold on validation, report on test and on every generated set.

    Plausible = the joint measurement finds a joint AND the judge's features pass the calibrated
    Mahalanobis rule. Returns the section and the per-image masks of each set."""
    from kecae.evaluation import metrics as M

    rule = M.fit_plausibility(feats["real_train"], feats["real_val"], quantile)
    sets = ("real_test", "x1_ex", "x2_ex", "x1_hat", "x2_hat", "x1_self", "x2_self")
    masks = {k: rule.accept(feats[k]) & found[k] for k in sets}
    sec: dict[str, Any] = {"quantile": quantile, "n_fit": rule.n_fit,
                           "n_calibration": rule.n_calibration}
    _put_rate(sec, "real_test", masks["real_test"])
    _put_rate(sec, "x_ex", np.r_[masks["x1_ex"], masks["x2_ex"]])
    _put_rate(sec, "x_ex_kl0_to_kl2", masks["x1_ex"])
    _put_rate(sec, "x_ex_kl2_to_kl0", masks["x2_ex"])
    _put_rate(sec, "recon", np.r_[masks["x1_hat"], masks["x2_hat"]])
    _put_rate(sec, "control", np.r_[masks["x1_self"], masks["x2_self"]])
    _put_rate(sec, "features_only_real_test", rule.accept(feats["real_test"]))
    _put_rate(sec, "features_only_x_ex", rule.accept(np.r_[feats["x1_ex"], feats["x2_ex"]]))
    sec["ratio_to_real"] = (sec["x_ex"] / sec["real_test"] if sec["real_test"] > 0 else math.nan)
    # k-NN manifold precision against the training images, a second, assumption-free view
    _put_rate(sec, "knn_real_test", M.knn_precision(feats["real_train"], feats["real_test"]))
    _put_rate(sec, "knn_x_ex", M.knn_precision(feats["real_train"],
                                               np.r_[feats["x1_ex"], feats["x2_ex"]]))
    _put_rate(sec, "knn_recon", M.knn_precision(feats["real_train"],
                                                np.r_[feats["x1_hat"], feats["x2_hat"]]))
    sec["rule"] = (f"plausible = the joint measurement finds a joint AND the judge's penultimate "
                   f"features lie within the Mahalanobis distance (Ledoit-Wolf fit on "
                   f"{rule.n_fit} real training images) that {100 * quantile:g} % of "
                   f"{rule.n_calibration} real validation images pass; real_test is the same rule "
                   f"on real test images (the control); knn_* = k-NN manifold precision (k = 3) "
                   f"against the training images")
    return sec, masks


def _fidelity(m: dict[str, dict[str, np.ndarray]], real: dict[str, dict[str, np.ndarray]],
              images: dict[str, np.ndarray], size: int, band_fraction: float
              ) -> tuple[dict, dict[str, np.ndarray]]:
    """Ground truth on phantoms: did X' take the donor's joint space and osteophytes, and keep
    the recipient's anatomy elsewhere? Refused measurements of X' count as failures."""
    from kecae.evaluation import metrics as M

    fid: dict[str, Any] = {"n": int(len(m["x1"]["ok"]))}
    arrays: dict[str, np.ndarray] = {}
    for d, (img, rec, don, _cls) in DIRECTIONS.items():
        suffix = "" if d == "kl0_to_kl2" else "_kl2_to_kl0"
        refused = ~m[img]["ok"]
        vs_real = M.transfer_with_refusals(m[rec]["jsw"], m[img]["jsw"], m[don]["jsw"], refused)
        vs_recon = M.transfer_with_refusals(m[f"{rec}_hat"]["jsw"], m[img]["jsw"],
                                            m[f"{don}_hat"]["jsw"], refused)
        s, r = M.failure_aware_summary(vs_real), M.failure_aware_summary(vs_recon)
        fid.update({f"key_transfer_median{suffix}": s["median"],
                    f"key_transfer_iqr{suffix}": s["iqr"],
                    f"key_transfer_success_rate{suffix}": s["success_rate"],
                    f"key_transfer_n{suffix}": s["n"],
                    f"key_transfer_failed{suffix}": s["n_failed"],
                    f"key_transfer_excluded{suffix}": s["n_excluded"],
                    f"recon_key_transfer_median{suffix}": r["median"],
                    f"recon_key_transfer_failed{suffix}": r["n_failed"]})
        arrays[f"key_transfer_{d}"] = vs_real
        arrays[f"recon_key_transfer_{d}"] = vs_recon
        # non-key anatomy: SSIM outside the joint band of the recipient
        band = band_fraction * size
        ssim = np.array([M.masked_ssim(a, b, M.joint_band_mask(a.shape, row, band))
                         if np.isfinite(row) else np.nan
                         for a, b, row in zip(images[rec], images[img], m[rec]["row"])])
        fid[f"nonkey_ssim_median_{d}"] = (float(np.nanmedian(ssim)) if np.isfinite(ssim).any()
                                          else math.nan)
        arrays[f"nonkey_ssim_{d}"] = ssim
        fid[f"refusal_rate_x_ex_{d}"] = float(refused.mean())
        fid[f"jsw_{img}_median"] = (float(np.nanmedian(m[img]["jsw"])) if m[img]["ok"].any()
                                    else math.nan)
    both = np.r_[arrays["nonkey_ssim_kl0_to_kl2"], arrays["nonkey_ssim_kl2_to_kl0"]]
    fid["nonkey_ssim_median"] = float(np.nanmedian(both)) if np.isfinite(both).any() else math.nan
    fid["jsw_x1_median"] = float(np.nanmedian(m["x1"]["jsw"]))
    fid["jsw_x2_median"] = float(np.nanmedian(m["x2"]["jsw"]))
    fid["refusal_rate"] = float(1 - np.r_[m["x1_ex"]["ok"], m["x2_ex"]["ok"]].mean())
    fid["refusal_rate_real"] = float(1 - np.r_[real["kl0"]["ok"], real["kl2"]["ok"]].mean())
    fid["refusal_rate_recon"] = float(1 - np.r_[m["x1_hat"]["ok"], m["x2_hat"]["ok"]].mean())

    # osteophytes: the detector's rate on X' beside its rate on real images of each grade
    for key, mask in (("real_kl0", real["kl0"]["osteo"]), ("real_kl2", real["kl2"]["osteo"]),
                      ("x1_ex", m["x1_ex"]["osteo"]), ("x2_ex", m["x2_ex"]["osteo"]),
                      ("x1_self", m["x1_self"]["osteo"]), ("x2_self", m["x2_self"]["osteo"])):
        _put_rate(fid, f"osteophyte_rate_{key}", mask)
    fid["osteophyte_gap_kl0_to_kl2"] = abs(fid["osteophyte_rate_x1_ex"]
                                           - fid["osteophyte_rate_real_kl2"])
    fid["osteophyte_gap_kl2_to_kl0"] = abs(fid["osteophyte_rate_x2_ex"]
                                           - fid["osteophyte_rate_real_kl0"])
    # conditional views: X'1 of a donor with osteophytes gains them; X'2 of a recipient with
    # osteophytes given a clean donor's key loses them
    gains = m["x2"]["osteo"]
    losses = m["x2"]["osteo"] & m["x1"]["ok"] & ~m["x1"]["osteo"]
    _put_rate(fid, "osteophyte_transfer_rate", m["x1_ex"]["osteo"][gains])
    _put_rate(fid, "osteophyte_removal_rate", ~m["x2_ex"]["osteo"][losses])
    return fid, arrays


def _quality(x: np.ndarray, x_hat: np.ndarray, feats: dict[str, np.ndarray], judge_arch: str,
             seed: int) -> dict:
    from kecae.evaluation import metrics as M

    ps, ss = M.psnr_batch(x, x_hat), M.ssim_batch(x, x_hat)
    gen = np.r_[feats["x1_ex"], feats["x2_ex"]]
    return {"recon_psnr": ps["mean"], "recon_psnr_std": ps["std"],
            "recon_ssim": ss["mean"], "recon_ssim_std": ss["std"], "n": ps["n"],
            "frechet": M.frechet_distance(feats["real_test"], gen),
            "frechet_recon": M.frechet_distance(feats["real_test"],
                                                np.r_[feats["x1_hat"], feats["x2_hat"]]),
            "frechet_real_floor": M.frechet_real_floor(feats["real_train"], seed=seed),
            "frechet_feature": f"{judge_arch} penultimate features",
            "frechet_n_real": int(len(feats["real_test"])), "frechet_n_generated": int(len(gen))}


def check_targets(result: dict) -> dict:
    """Each target of :data:`TARGETS` with its measured value and whether it is met (None when
    not computed). A −inf median (most measurements refused) is a miss."""
    out = {}
    for name, (path, op, thr) in TARGETS.items():
        value = _get(result, path)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            met = None
        else:
            met = bool(value >= thr if op == ">=" else value <= thr)
        out[name] = {"metric": path, "target": f"{op} {thr}", "value": value, "met": met}
    return out


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    from kecae.data import PairSampler, load_image_set
    from kecae.inference import classifier_features, classify

    run = Path(cfg.run)
    device = select_device(cfg.device)
    ms = _load_models(cfg, run, device)
    model, judge, supervisor, size = ms["model"], ms["judge"], ms["supervisor"], ms["size"]

    def load(split: str, grade: int) -> Any:
        return load_image_set(ms["data"], size=size, split=split, grades=(grade,),
                              cache_dir=cfg.cache_dir, progress=False,
                              patient_regex=ms["patient_regex"])

    t0, t2 = load("test", CLASS_GRADES[0]), load("test", CLASS_GRADES[1])
    real_train = np.concatenate([load("train", g).images for g in CLASS_GRADES])
    real_val = np.concatenate([load("val", g).images for g in CLASS_GRADES])
    real_test = np.concatenate([t0.images, t2.images])

    # test pairs and every image set the rules are applied to
    n_pairs = min(cfg.pairs, len(t0.images) * len(t2.images))
    ij = PairSampler(len(t0.images), len(t2.images), n_pairs, seed=cfg.seed).pairs()
    images = {"x1": np.asarray(t0.images[ij[:, 0]], np.float32),
              "x2": np.asarray(t2.images[ij[:, 1]], np.float32)}
    images.update(_exchange_all(model, images["x1"], images["x2"], device))
    sides = {"x1": [t0.sides[i] for i in ij[:, 0]], "x2": [t2.sides[j] for j in ij[:, 1]]}
    result: dict[str, Any] = {"separability": _separability(model, judge, t0, t2, cfg, device)}

    # classifier calls (class index 1 = KL-2) on every set, and the judge on real test images
    judge_real = _judge_on_real(judge, t0, t2, device)
    calls = {who: {k: (classify(clf, v, device=device)[:, 1] >= 0.5).astype(int)
                   for k, v in images.items()}
             for who, clf in (("judge", judge), ("supervisor", supervisor))}

    # plausibility: joint found and judge features calibrated on held-out real images
    measured = {k: _measure(v, sides[k[:2]]) for k, v in images.items()}
    real_measured = {"kl0": _measure(np.asarray(t0.images), list(t0.sides)),
                     "kl2": _measure(np.asarray(t2.images), list(t2.sides))}
    feats = {k: classifier_features(judge, v, device=device) for k, v in images.items()}
    feats.update({"real_train": classifier_features(judge, real_train, device=device),
                  "real_val": classifier_features(judge, real_val, device=device),
                  "real_test": classifier_features(judge, real_test, device=device)})
    found = {k: v["ok"] for k, v in measured.items()}
    found["real_test"] = np.r_[real_measured["kl0"]["ok"], real_measured["kl2"]["ok"]]
    result["plausibility"], plausible = _plausibility(feats, found, cfg.plausibility_quantile)

    recall = {0: judge_real["recall_kl0"], 1: judge_real["recall_kl2"]}
    result["exchange_success"] = _exchange_success(calls, plausible, recall, n_pairs,
                                                   ms["independent"])
    jckpt, sckpt = ms["jckpt"], ms["sckpt"]
    result["judge"] = {"arch": jckpt["model_config"]["arch"], "checkpoint": str(ms["judge_path"]),
                       "seed": jckpt["train_config"].get("seed"), **judge_real}
    sup_metrics = Path(ms["sup_path"]).parent / "metrics.json"
    result["supervisor"] = {"arch": sckpt["model_config"]["arch"], "checkpoint": str(ms["sup_path"]),
                            "seed": sckpt["train_config"].get("seed"),
                            "test_accuracy": json.loads(sup_metrics.read_text())["test_accuracy"]
                            if sup_metrics.exists() else None}

    # ground-truth fidelity (the measurement is built for the phantoms' geometry)
    fid_arrays: dict[str, np.ndarray] = {}
    if _is_phantom_data(ms["data"]):
        result["fidelity"], fid_arrays = _fidelity(measured, real_measured, images, size, cfg.band)

    result["quality"] = _quality(np.r_[images["x1"], images["x2"]],
                                 np.r_[images["x1_hat"], images["x2_hat"]], feats,
                                 result["judge"]["arch"], cfg.seed)
    result["targets"] = check_targets(result)

    # arrays for the report
    k = min(cfg.examples, n_pairs)
    ex_arr = {key: images[key][:k] for key in ("x1", "x2", "x1_hat", "x2_hat", "x1_ex", "x2_ex")}
    for key in ("x1", "x1_ex", "x2", "x2_ex"):
        ex_arr[f"jsw_{key}"] = measured[key]["jsw"][:k]
        ex_arr[f"joint_row_{key}"] = measured[key]["row"][:k]
    eval_dir = run / "eval"
    eval_dir.mkdir(parents=True, exist_ok=True)
    _save_npz(eval_dir / "examples.npz", ex_arr)
    if fid_arrays:
        _save_npz(eval_dir / "fidelity.npz", fid_arrays)
    return write_sections(run, result)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
