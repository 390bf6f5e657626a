"""The HTML report: a full synthetic run folder, an empty one, damaged inputs, and the CLI."""

from __future__ import annotations

import base64
import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from kecae import cli
from kecae.cli import main
from kecae.report import SECTIONS, write_report
from kecae.utils import KecaeError

HEADINGS = [heading for _, heading, _ in SECTIONS]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects headings, image sources, link targets and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h2", "h3"):
            self._in = tag
            self.headings.append("")
        if "src" in attrs:
            self.srcs.append(attrs["src"])
        if "href" in attrs:
            self.hrefs.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self.headings[-1] += data


def _parse(path: Path) -> tuple[str, _Page]:
    page = path.read_text(encoding="utf-8")
    parser = _Page()
    parser.feed(page)
    return page, parser


def _text(parsed: _Page) -> str:
    """The visible text with runs of white space collapsed."""
    return re.sub(r"\s+", " ", " ".join(parsed.text))


def make_full_run(root: Path, k: int = 3, size: int = 32) -> Path:
    """A run folder holding every file the report reads, with small synthetic contents."""
    rng = np.random.default_rng(0)
    metrics = {
        "separability": {"svm_hk_accuracy": 0.91, "svm_hk_accuracy_std": 0.02,
                         "svm_hn_accuracy": 0.55, "n": 400},
        "exchange_success": {
            "judge_kl0_to_kl2_raw": 0.72, "judge_kl0_to_kl2_raw_ci_low": 0.66,
            "judge_kl0_to_kl2_raw_ci_high": 0.77, "judge_kl2_to_kl0_raw": 0.64,
            "judge_kl0_to_kl2": 0.70, "judge_kl2_to_kl0": 0.60,
            "judge_agreement_kl0_to_kl2": 0.93, "judge_agreement_kl2_to_kl0": 0.81,
            "judge_agreement_control_kl0_to_kl2": 0.2, "judge_agreement_control_kl2_to_kl0": 0.3,
            "supervisor_kl0_to_kl2_raw": 0.97, "supervisor_kl2_to_kl0_raw": 0.95,
            "judge_control_kl0_to_kl2": 0.12, "judge_control_kl2_to_kl0": 0.20,
            "judge_recon_kl0_to_kl2": 0.30, "judge_recon_kl2_to_kl0": 0.25,
            "judge_relative_kl0_to_kl2": 0.88, "judge_relative_kl2_to_kl0": 0.71,
            "supervisor_control_kl0_to_kl2": 0.10, "supervisor_control_kl2_to_kl0": 0.18,
            "n": 256},
        "plausibility": {"real_test": 0.985, "x_ex": 0.93, "ratio_to_real": 0.944,
                         "recon": 0.4, "control": 0.98, "knn_real_test": 0.86,
                         "rule": "plausible = the joint is found AND the features pass"},
        "judge": {"arch": "resnet18", "test_accuracy": 0.84, "confusion": [[45, 5], [9, 41]],
                  "recall_kl0": 0.9, "recall_kl2": 0.82},
        "ablation": {"rows": [
            {"name": "paper", "description": "the paper", "seeds": 1, "targets_met": 1.0,
             "cells": {"SVM hK": {"mean": 0.6, "std": None}}},
            {"name": "warp", "description": "a warp", "seeds": 3, "targets_met": 7.3,
             "cells": {"SVM hK": {"mean": 0.81, "std": 0.02}}}],
            "columns": {"SVM hK": {"metric": "separability.svm_hk_accuracy", "kind": "pct"}},
            "best": ["warp"], "budget": {"steps": 2000, "batch_size": 32, "lr": 0.001,
                                         "eval_pairs": 400},
            "examples": {"warp": "eval/examples.npz"}},
        "supervisor": {"arch": "siamese", "test_accuracy": 0.86},
        "fidelity": {"key_transfer_median": 0.81, "key_transfer_iqr": 0.3,
                     "key_transfer_median_kl2_to_kl0": 0.7, "osteophyte_transfer_rate": 0.6,
                     "osteophyte_removal_rate": 0.75, "nonkey_ssim_median": 0.88,
                     "recon_key_transfer_median": 0.02, "refusal_rate": 0.05, "n": 256,
                     "extra_unknown_measure": 1.5},
        "quality": {"recon_psnr": 27.3, "recon_ssim": 0.83, "frechet": 12.0,
                    "frechet_real_floor": 3.0, "n": 256},
        "downstream": {"rows": [
            {"model": "resnet18", "training_set": "T", "accuracy_mean": 0.8359,
             "accuracy_std": 0.0158, "precision_mean": 0.80, "precision_std": 0.02,
             "recall_mean": 0.79, "recall_std": 0.02, "n_seeds": 5},
            {"model": "resnet18", "training_set": "T'", "accuracy_mean": 0.8522,
             "accuracy_std": 0.0119, "precision_mean": 0.83, "precision_std": 0.01,
             "recall_mean": 0.82, "recall_std": 0.01, "n_seeds": 5},
            {"model": "resnet18", "training_set": "T+classic", "accuracy_mean": 0.8400,
             "accuracy_std": 0.0120, "precision_mean": 0.81, "precision_std": 0.01,
             "recall_mean": 0.80, "recall_std": 0.01, "n_seeds": 5}]},
        "lambda_grid": {"lambda1": [1e-3, 1e-2, 1e-1], "lambda2": [1e-4, 1e-3],
                        "svm_hk_accuracy": [[0.7, 0.8], [0.75, 0.9], [0.6, 0.65]]},
        "sampling_size": {"N": [0, 50000, 100000], "accuracy_mean": [0.83, 0.845, 0.85],
                          "accuracy_std": [0.015, 0.012, 0.011]},
        "targets": {"key_transfer_median": {"target": ">= 0.7", "value": 0.81, "met": True},
                    "nonkey_ssim_median": {"target": 0.9, "value": 0.88, "met": False}},
        "config": {"preset": "tiny", "train": {"lr": 1e-4, "lambda1": 0.01}},
        "timings": {"train": 125.0, "evaluate": 12.5},
        "reader_study": {"fleiss_kappa": 0.61},
    }
    (root / "metrics.json").write_text(json.dumps(metrics))

    (root / "kecae").mkdir()
    with open(root / "kecae" / "log.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "epoch", "total", "mse", "sup", "lda", "sup_real", "pairs_per_s",
                    "lr"])
        for s in range(1, 80):
            w.writerow([s, s / 10, 1 / s + 0.1, 0.5 / s, 0.7 / s, "" if s % 7 == 0 else 2 / s,
                        0.6, 40 + s % 3, 1e-4])

    (root / "eval").mkdir()
    imgs = {name: rng.uniform(-1, 1, size=(k, size, size)).astype(np.float32)
            for name in ("x1", "x1_ex", "x2", "x2_ex", "x1_hat", "x2_hat")}
    meas = {f"{q}_{name}": np.full(k, v, dtype=np.float32)
            for name in ("x1", "x1_ex", "x2", "x2_ex")
            for q, v in (("jsw", 6.0), ("joint_row", size / 2))}
    meas["jsw_x1_ex"][0] = np.nan  # an unmeasured image is left unmarked
    np.savez(root / "eval" / "examples.npz", **imgs, **meas)
    np.savez(root / "eval" / "fidelity.npz",
             key_transfer_kl0_to_kl2=np.r_[rng.normal(0.8, 0.3, 100), np.nan, 9.0],
             key_transfer_kl2_to_kl0=rng.normal(0.7, 0.3, 100),
             recon_key_transfer_kl0_to_kl2=rng.normal(0.0, 0.1, 100),
             nonkey_ssim=rng.uniform(0.8, 0.95, 100))

    for name, acc in (("supervisor", 0.86), ("judge", 0.84)):
        (root / name).mkdir()
        (root / name / "metrics.json").write_text(json.dumps({
            "arch": name, "n_test": 100, "test_accuracy": acc,
            "test": {"accuracy": acc, "precision": 0.8, "recall": 0.75, "auc": 0.9,
                     "confusion": [[45, 5], [9, 41]], "n": 100}}))
    return root


def _check_self_contained(page: str, parsed: _Page) -> None:
    for url in parsed.srcs + parsed.hrefs:
        assert not url.startswith(("http://", "https://", "//")), url
    assert "http://" not in page and "https://" not in page


def test_full_run_folder(tmp_path):
    run = make_full_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    page, parsed = _parse(out)
    # every section, in order
    h2 = [h for h in parsed.headings if h in HEADINGS]
    assert h2 == HEADINGS
    # figures: examples grid, fidelity histograms, λ grid, reconstructions, sampling curve,
    # the best ablation row's examples, training curves
    images = [s for s in parsed.srcs if s.startswith("data:image/png;base64,")]
    assert page.count('<img src="data:image/png;base64,') == len(parsed.srcs) == 7
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    _check_self_contained(page, parsed)
    text = _text(parsed)
    assert "Not computed" not in text and "Could not" not in text
    # numbers with their spread and sample size
    assert "91.0 %" in text and "± 2.0" in text          # svm hK accuracy ± std
    assert "72.0 %" in text and "95 % CI 66.0–77.0" in text  # judge rate with Wilson CI
    assert "n = 256" in text
    assert "27.30 dB" in text and "4.0× the floor" in text
    # the honest gap: supervisor 97 % vs judge 72 % -> 25 points; the control 12 % -> +60
    assert "25.0-point gap" in text and "+60.0 points" in text
    assert "the judge grades 84.0 % correctly" in text and "KL-2 recall 82.0 %" in text
    assert "93.0 %" in text and "98.5 %" in text  # agreement, plausible real test images
    assert "81.0" in text and "± 2.0" in text and "7.3" in text  # the ablation's best row
    # Table II row with the gain over T
    assert "85.22 ± 1.19" in text and "+1.63" in text
    assert "✓ met" in text and "✗ not met" in text
    assert "TN 45 · FP 5 · FN 9 · TP 41" in text
    assert "extra_unknown_measure" in text          # unknown keys are shown, not dropped
    assert "lr = 0.0001" in text                    # constant columns named, not plotted
    assert "0:02:05" in text                        # timings
    assert "reader_study.fleiss_kappa 0.61" in text  # sections without a layout still shown
    assert not list(run.glob(".report.html*"))      # the atomic write left no temporary file


def test_empty_run_folder(tmp_path):
    out = write_report(tmp_path)
    page, parsed = _parse(out)
    assert [h for h in parsed.headings if h in HEADINGS] == HEADINGS
    assert not parsed.srcs
    _check_self_contained(page, parsed)
    text = _text(parsed)
    # every section but the optional downstream one says what to run
    assert text.count("Not computed") >= len(HEADINGS)
    assert "kecae evaluate --run" in text and "kecae train --out" in text


def test_damaged_and_partial_inputs(tmp_path):
    run = make_full_run(tmp_path)
    (run / "eval" / "fidelity.npz").write_bytes(b"not a zip file")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["lambda_grid"]["svm_hk_accuracy"] = [[0.5]]   # wrong shape for the grid
    metrics["targets"]["broken"] = "text only"
    metrics["quality"]["recon_psnr"] = None
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "kecae" / "log.csv").write_text("step,total\n")  # header only
    (run / "eval" / "examples.npz").unlink()  # (also keeps this test fast: fewer figures)
    page, parsed = _parse(write_report(run))
    text = _text(parsed)
    assert [h for h in parsed.headings if h in HEADINGS] == HEADINGS
    assert "Could not read eval/fidelity.npz" in text
    assert "Could not read kecae/log.csv" in text
    assert "Could not draw the λ1 × λ2 grid" in text and "svm_hk_accuracy has shape" in text
    assert "91.0 %" in text                          # the rest of the section is still there
    assert "Not computed: example images" in text
    assert "PSNR of the reconstructions X̂ vs X —" in text  # a null value shows as a dash

    (run / "metrics.json").write_text("{ not json")
    page, parsed = _parse(write_report(run))
    assert "Could not read metrics.json" in _text(parsed)


def test_missing_run_folder(tmp_path):
    with pytest.raises(KecaeError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_cli_writes_report(tmp_path, capsys, monkeypatch):
    assert "kecae.report_cli" in cli.COMMAND_MODULES
    # Only this sub-command: the others import torch, which costs seconds and is tested elsewhere.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("kecae.report_cli",))
    assert main(["report", "--run", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file()
    assert str(tmp_path / "report.html") in capsys.readouterr().out
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
