"""kecae.runfolder: where everything of a run lives (the layout the README documents, which the
pipeline, evaluate, the report and the studies all read from this one place)."""

from __future__ import annotations

from pathlib import Path

from kecae.runfolder import RunLayout

R = Path("R")


def test_a_run_folder():
    run = RunLayout("R")
    assert run.root == R
    assert (run.marker, run.data, run.data_view, run.data_check) == (
        R / "run.yaml",
        R / "data",
        R / "data.csv",
        R / "data_check.json",
    )
    assert (run.console, run.metrics, run.report) == (
        R / "console.log",
        R / "metrics.json",
        R / "report.html",
    )
    assert (run.eval.examples, run.eval.fidelity) == (
        R / "eval" / "examples.npz",
        R / "eval" / "fidelity.npz",
    )


def test_the_classifiers_kecae_and_its_images():
    run = RunLayout(R)
    for name, classifier in (("supervisor", run.supervisor), ("judge", run.judge)):
        folder = R / name
        assert classifier.folder == folder
        assert (classifier.best, classifier.last, classifier.metrics) == (
            folder / "best.pt",
            folder / "last.pt",
            folder / "metrics.json",
        )
        assert (classifier.config, classifier.log) == (folder / "config.yaml", folder / "log.csv")
    kecae = run.kecae
    assert kecae.last == R / "kecae" / "checkpoints" / "last.pt"
    assert (kecae.config, kecae.summary) == (
        R / "kecae" / "config.yaml",
        R / "kecae" / "summary.json",
    )
    assert kecae.sample(200) == R / "kecae" / "samples" / "step_0000200.png"
    generated = run.generated
    assert (generated.meta, generated.manifest, generated.labels) == (
        R / "generated" / "generation.json",
        R / "generated" / "manifest.csv",
        R / "generated" / "labels.json",
    )


def test_a_classifier_run_is_finished_with_its_metrics_and_best_weights(tmp_path):
    run = RunLayout(tmp_path).supervisor
    assert not run.finished
    run.folder.mkdir()
    run.best.write_bytes(b"weights")
    assert not run.finished
    run.metrics.write_text("{}")
    assert run.finished


def test_the_studies_sub_runs():
    studies = RunLayout(R).studies
    s = R / "studies"
    fraction = studies.downstream(0.1)
    assert fraction.data_view == s / "downstream" / "iid" / "fraction_0.1" / "data.csv"
    assert (
        fraction.supervisor.best
        == s / "downstream" / "iid" / "fraction_0.1" / "supervisor" / "best.pt"
    )
    assert fraction.classifier("small", "T'", 2).best == (
        s / "downstream" / "iid" / "fraction_0.1" / "small" / "T'" / "seed_2" / "best.pt"
    )
    assert studies.downstream(1.0, "shortcut").supervisor.folder == (
        s / "downstream" / "shortcut" / "fraction_1" / "supervisor"
    )
    tune = studies.tune()
    assert tune.storage == s / "tune" / "optuna.sqlite3"
    assert tune.trial("t_abc").metrics == s / "tune" / "trials" / "t_abc" / "metrics.json"
    assert (
        tune.final("best").kecae.last
        == s / "tune" / "final" / "best" / "kecae" / "checkpoints" / "last.pt"
    )
    assert studies.sampling(5000, 1).best == s / "sampling" / "N_5000" / "seed_1" / "best.pt"
    assert studies.sampling_subset(5000) == s / "sampling" / "first_5000_pairs.csv"
    cell = studies.lambda_cell(1e-3, 0.1)
    assert cell.last == s / "lambda_grid" / "l1_0.001_l2_0.1" / "checkpoints" / "last.pt"
    assert (
        studies.lambda_separability(cell)
        == s / "lambda_grid" / "l1_0.001_l2_0.1" / "separability.json"
    )
    row = studies.ablation_row("warp", 2)
    assert (row.metrics, row.timing) == (
        s / "ablation" / "warp" / "seed_2" / "metrics.json",
        s / "ablation" / "warp" / "seed_2" / "timing.json",
    )
    assert studies.ablation_table == s / "ablation" / "table.md"
    seed = studies.robustness_seed(1)  # laid out like a run folder
    assert (seed.metrics, seed.supervisor.best) == (
        s / "robustness" / "seed_1" / "metrics.json",
        s / "robustness" / "seed_1" / "supervisor" / "best.pt",
    )


def test_the_sampling_study_finds_its_generations(tmp_path):
    studies = RunLayout(tmp_path).studies
    assert studies.sampling_generations() == []
    for pairs in (200, 1000):
        studies.sampling_generated(pairs).folder.mkdir(parents=True)
    assert [g.folder.name for g in studies.sampling_generations()] == ["gen_1000", "gen_200"]
