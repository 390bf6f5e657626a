"""`kecae study ablation` (kecae.studies.ablation): every row on one budget, evaluated fairly,
best rows re-seeded, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kecae.cli import main
from kecae.studies.ablation import AblationConfig, format_ablation_markdown
from kecae.studies.ablation_rows import ROWS


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ablation_run")
    data = run / "data"
    assert (
        main(
            [
                "phantoms",
                str(data),
                "--kl0",
                "60",
                "--kl2",
                "40",
                "--size",
                "64",
                "--seed",
                "5",
                "--no-progress",
            ]
        )
        == 0
    )
    for name, arch, seed in (("supervisor", "siamese", "0"), ("judge", "small", "1")):
        assert (
            main(
                [
                    "train-classifier",
                    "--data",
                    str(data),
                    "--out",
                    str(run / name),
                    "--arch",
                    arch,
                    "--image-size",
                    "64",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "16",
                    "--seed",
                    seed,
                    "--no-progress",
                ]
            )
            == 0
        )
    return run


def test_ablation_rows_budget_best_seeds_and_resume(run, capsys):
    args = [
        "study",
        "ablation",
        "--run",
        str(run),
        "--data",
        str(run / "data"),
        "--row",
        "paper",
        "--row",
        "warp",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--eval-pairs",
        "12",
        "--best-rows",
        "1",
        "--best-seeds",
        "2",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best:" in out
    section = json.loads((run / "metrics.json").read_text())["ablation"]
    assert [r["name"] for r in section["rows"]] == ["paper", "warp"]
    assert section["budget"]["steps"] == 3 and section["budget"]["pairs_seen"] == 12
    best = section["best"]
    assert len(best) == 1 and best[0] in ("paper", "warp")
    seeds = {r["name"]: r["seeds"] for r in section["rows"]}
    assert seeds[best[0]] == 2 and sum(seeds.values()) == 3
    for r in section["rows"]:
        cells = r["cells"]
        assert set(cells) == set(section["columns"])
        assert len(cells["SVM hK"]["values"]) == r["seeds"]
        assert 0 <= cells["agreement KL-0→KL-2"]["mean"] <= 1
        assert r["model"]["image_size"] == 64 and r["model"]["width"] == 0.125
    warp = next(r for r in section["rows"] if r["name"] == "warp")
    assert warp["model"]["exchange"] == "warp" and warp["train"]["lambda_disp"] == 0.01
    # each row trained the same budget with its own options
    from kecae.checkpoint import load_checkpoint

    root = run / "studies" / "ablation"
    ck = {
        n: load_checkpoint(root / n / "seed_0" / "kecae" / "checkpoints" / "last.pt")
        for n in ("paper", "warp")
    }
    assert ck["paper"]["step"] == ck["warp"]["step"] == 3
    assert ck["warp"]["model_config"]["exchange"] == "warp"
    assert ck["paper"]["model_config"]["exchange"] == "decode"
    assert (root / "table.md").read_text() == format_ablation_markdown(section)
    assert (run / section["examples"][best[0]]).is_file()  # stored relative to the run folder

    # a rerun reuses every finished row: nothing is trained or evaluated again
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("last.pt")}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("last.pt")} == stamps

    assert main(["report", "--run", str(run)]) == 0
    assert "Ablation of the KECAE options" in (run / "report.html").read_text()


def test_rows_and_config_validation():
    assert next(iter(ROWS)) == "paper" and ROWS["paper"].model == {} and ROWS["paper"].train == {}
    assert all(r.description for r in ROWS.values())
    for bad, match in (
        ({"rows": ["nope"]}, "unknown"),
        ({"steps": 0}, "steps"),
        ({"lr": float("nan")}, "lr"),
        ({"run": ""}, "run"),
    ):
        with pytest.raises(ValueError, match=match):
            AblationConfig(**{"run": "x", **bad})
