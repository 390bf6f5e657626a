"""The HTML report (kecae.report): a full synthetic run folder, an empty one, damaged inputs,
and the CLI."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kecae import cli
from kecae.cli import main
from kecae.errors import KecaeError
from kecae.report import SECTIONS, write_report

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


def _check_self_contained(page: str, parsed: _Page) -> None:
    for url in parsed.srcs + parsed.hrefs:
        assert not url.startswith(("http://", "https://", "//")), url
    assert "http://" not in page and "https://" not in page


def test_full_run_folder(tmp_path, full_run):
    run = full_run(tmp_path)
    out = write_report(run)
    assert out == run / "report.html"
    page, parsed = _parse(out)
    # every section, in order
    h2 = [h for h in parsed.headings if h in HEADINGS]
    assert h2 == HEADINGS
    # figures: examples grid, fidelity histograms, λ grid, reconstructions, sampling curve,
    # the best ablation row's examples, the tuning study, training curves
    images = [s for s in parsed.srcs if s.startswith("data:image/png;base64,")]
    assert page.count('<img src="data:image/png;base64,') == len(parsed.srcs) == 8
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    _check_self_contained(page, parsed)
    text = _text(parsed)
    assert "Not computed" not in text and "Could not" not in text
    # X' against real knees of its grade; the recipe over seeds with its worst seed
    assert "KS 0.12 (p 0.3), W 0.21 px" in text and "absent (no edit mask)" in text
    assert "7.0 %" in text and "9 (45 %)" in text  # caricature excess; 9 of 20 disagreements
    assert "0.707 ± 0.440" in text and "0.200 (seed 1)" in text and "worst seed 1" in text
    # numbers with their spread and sample size
    assert "91.0 %" in text and "± 2.0" in text  # svm hK accuracy ± std
    assert "72.0 %" in text and "95 % CI 66.0–77.0" in text  # judge rate with Wilson CI
    assert "n = 256" in text
    assert "27.30 dB" in text and "4.0× the floor" in text
    # the honest gap: supervisor 97 % vs judge 72 % -> 25 points; the control 12 % -> +60
    assert "25.0-point gap" in text and "+60.0 points" in text
    assert "the judge grades 84.0 % correctly" in text and "KL-2 recall 82.0 %" in text
    assert "93.0 %" in text and "98.5 %" in text  # agreement, plausible real test images
    assert "81.0" in text and "± 2.0" in text and "7.3" in text  # the ablation's best row
    # Table II row with the gain over T (an older section: the difference of the means)
    assert "85.22 ± 1.19" in text and "+1.63" in text
    # the tuning study: the final comparison and the trials, best marked
    assert "0.552" in text and "1 best" in text and "3 finished trials of 4" in text
    assert "✓ met" in text and "✗ not met" in text
    # the generator's options, from kecae/config.yaml (the preset with its override)
    assert (
        "32×32 grid" not in text and "(its change from X1's own field ≤ 3 px, 16×16 grid)" in text
    )
    assert "32×1×1 (position-free: averaged over the grid)" in text
    assert "J_MSE + λ1 = 0.1 · J_SUP (target: the donor's grade)" in text
    assert "0.01 · mean squared displacement + 1 · cycle" in text
    assert "2000 steps × 32 pairs" in text
    assert "TN 45 · FP 5 · FN 9 · TP 41" in text
    assert "Extra unknown measure" in text  # unknown keys are shown (in words), not dropped
    assert "extra_unknown_measure" not in text
    assert "lr = 0.0001" in text  # constant columns named, not plotted
    assert "0:02:05" in text  # timings
    assert "Reader study · Fleiss kappa 0.61" in text  # sections without a layout still shown
    assert not list(run.glob(".report.html*"))  # the atomic write left no temporary file


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


def test_damaged_and_partial_inputs(tmp_path, full_run):
    run = full_run(tmp_path)
    (run / "eval" / "fidelity.npz").write_bytes(b"not a zip file")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["lambda_grid"]["svm_hk_accuracy"] = [[0.5]]  # wrong shape for the grid
    metrics["targets"]["broken"] = "text only"
    metrics["quality"]["recon_psnr"] = None
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "kecae" / "log.csv").write_text("step,total\n")  # header only
    (run / "eval" / "examples.npz").unlink()  # (also keeps this test fast: fewer figures)
    _page, parsed = _parse(write_report(run))
    text = _text(parsed)
    assert [h for h in parsed.headings if h in HEADINGS] == HEADINGS
    assert "Could not read eval/fidelity.npz" in text
    assert "Could not read kecae/log.csv" in text
    assert "Could not draw the λ1 × λ2 grid" in text and "svm_hk_accuracy has shape" in text
    assert "91.0 %" in text  # the rest of the section is still there
    assert "Not computed: example images" in text
    assert "PSNR of the reconstructions X̂ vs X —" in text  # a null value shows as a dash

    (run / "metrics.json").write_text("{ not json")
    _page, parsed = _parse(write_report(run))
    assert "Could not read metrics.json" in _text(parsed)


def test_missing_run_folder(tmp_path):
    with pytest.raises(KecaeError, match="does not exist"):
        write_report(tmp_path / "nope")


def test_cli_writes_report(tmp_path, capsys, monkeypatch):
    assert "kecae.cli.report" in cli.COMMAND_MODULES
    # Only this sub-command: the others import torch, which costs seconds and is tested elsewhere.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("kecae.cli.report",))
    assert main(["report", "--run", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").is_file()
    assert str(tmp_path / "report.html") in capsys.readouterr().out
    assert main(["report", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
