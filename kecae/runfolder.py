"""The run folder: every path of its layout, spelled once.

A pipeline run (``kecae run`` / ``kecae demo``) is one folder::

    RUN/run.yaml          the pipeline's settings; marks RUN as the root of a run folder
    RUN/data/             the demo's phantoms (``kecae run`` reads the user's data where it is)
    RUN/data.csv          the data set as the run sees it (patients, L/R sides, splits)
    RUN/data_check.json   what ``kecae run`` checked and chose before training (kecae.preflight)
    RUN/console.log       every command's console output, one file per run
    RUN/.kecae_cache/     preprocessed images and data checks (safe to delete)
    RUN/supervisor/       classifier run: config.yaml, last.pt, best.pt, metrics.json, log.csv
    RUN/supervisor_<k>/   with --supervisors K > 1: the ensemble's member k (1..K-1), same files
    RUN/judge/            the independent classifier, same files
    RUN/kecae/            KECAE run: config.yaml, checkpoints/last.pt, summary.json, log.csv,
                          samples/
    RUN/generated/        generate's output: <grade>/*.png, manifest.csv, generation.json
    RUN/eval/             arrays behind the report's figures
    RUN/studies/<name>/   the studies' sub-runs
    RUN/metrics.json      sections written by evaluate, the studies and the pipeline
    RUN/report.html       the report

How paths are stored in its files: :mod:`kecae.paths`; whether a folder may be reused:
:mod:`kecae.reuse`; its ``metrics.json``: :mod:`kecae.metrics_file`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kecae.paths import RUN_MARKER

#: In a training run folder: the fatal data problems the run was told to accept.
DATA_CHECK = "data_check.json"


#: Names every training run folder uses: its settings, its log (and TensorBoard events), and
#: its results.
CONFIG, LOG, TENSORBOARD, METRICS = "config.yaml", "log.csv", "tb", "metrics.json"


@dataclass(frozen=True)
class TrainingRun:
    """What every training run folder holds: its settings, its log, the data problems it was
    told to accept."""

    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / CONFIG

    @property
    def log(self) -> Path:
        return self.folder / LOG

    @property
    def tensorboard(self) -> Path:
        return self.folder / TENSORBOARD

    @property
    def data_check(self) -> Path:
        return self.folder / DATA_CHECK


class ClassifierRun(TrainingRun):
    """Files of a classifier training run (``kecae train-classifier --out FOLDER``)."""

    @property
    def last(self) -> Path:
        """The latest epoch's checkpoint (with optimiser state): resume from it."""
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        """The weights selected on validation: what every other command uses."""
        return self.folder / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.folder / METRICS

    @property
    def finished(self) -> bool:
        return self.metrics.is_file() and self.best.is_file()


class KECAERun(TrainingRun):
    """Files of a KECAE training run (``kecae train --out FOLDER``)."""

    @property
    def last(self) -> Path:
        return self.folder / "checkpoints" / "last.pt"

    @property
    def summary(self) -> Path:
        return self.folder / "summary.json"

    def sample(self, step: int) -> Path:
        return self.folder / "samples" / f"step_{step:07d}.png"


@dataclass(frozen=True)
class GeneratedFolder:
    """Files of a ``kecae generate --out FOLDER``."""

    folder: Path

    @property
    def meta(self) -> Path:
        """What made the folder; written only once every check has passed."""
        return self.folder / "generation.json"

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.csv"

    @property
    def labels(self) -> Path:
        """Folder name -> KL grade (class_to_idx), for tools that index classes."""
        return self.folder / "labels.json"


@dataclass(frozen=True)
class EvalFolder:
    """The arrays ``kecae evaluate`` keeps for the report's figures."""

    folder: Path

    @property
    def examples(self) -> Path:
        """A few test pairs: inputs, reconstructions, exchanges and their joint measurements."""
        return self.folder / "examples.npz"

    @property
    def fidelity(self) -> Path:
        """Per-pair key-transfer ratios and non-key SSIM (phantom data only)."""
        return self.folder / "fidelity.npz"


class RunLayout:
    """Every path of a pipeline run folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    @property
    def marker(self) -> Path:
        return self.root / RUN_MARKER

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def data_view(self) -> Path:
        return self.root / "data.csv"

    @property
    def data_check(self) -> Path:
        """What ``kecae run`` checked and chose before training (kecae.preflight)."""
        return self.root / "data_check.json"

    @property
    def console(self) -> Path:
        """Everything the commands run on this folder printed (kecae.console)."""
        return self.root / "console.log"

    @property
    def supervisor(self) -> ClassifierRun:
        return ClassifierRun(self.root / "supervisor")

    def supervisor_member(self, k: int) -> ClassifierRun:
        """Member ``k`` of a supervisor ensemble: member 0 is :attr:`supervisor` itself."""
        return self.supervisor if k == 0 else ClassifierRun(self.root / f"supervisor_{k}")

    @property
    def judge(self) -> ClassifierRun:
        return ClassifierRun(self.root / "judge")

    @property
    def kecae(self) -> KECAERun:
        return KECAERun(self.root / "kecae")

    @property
    def generated(self) -> GeneratedFolder:
        return GeneratedFolder(self.root / "generated")

    @property
    def eval(self) -> EvalFolder:
        return EvalFolder(self.root / "eval")

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def studies(self) -> StudyFolders:
        return StudyFolders(self.root / "studies")


@dataclass(frozen=True)
class StudyFolders:
    """The studies' sub-runs, under ``RUN/studies/``."""

    root: Path

    def downstream_regime(self, regime: str) -> Path:
        """The downstream study in one regime (``iid``, or ``site_bias_<b>``: phantoms made like
        the run's own with acquisition sites): its data, time ledger and fractions."""
        return self.root / "downstream" / regime

    def downstream(self, fraction: float, regime: str = "iid") -> DownstreamFraction:
        """What Table II trains at one fraction of the real training set."""
        return DownstreamFraction(self.downstream_regime(regime) / f"fraction_{fraction:g}")

    def tune(self) -> TuneFolder:
        """``kecae tune``: the Optuna study, its trials and the final comparison."""
        return TuneFolder(self.root / "tune")

    def sampling(self, pairs: int, seed: int) -> ClassifierRun:
        """One classifier of Fig. 5: the train split plus the first ``pairs`` pairs."""
        return ClassifierRun(self.root / "sampling" / f"N_{pairs}" / f"seed_{seed}")

    def sampling_generated(self, pairs: int) -> GeneratedFolder:
        """The sampling study's own generation of its largest N."""
        return GeneratedFolder(self.root / "sampling" / f"gen_{pairs}")

    def sampling_generations(self) -> list[GeneratedFolder]:
        """Every generation the sampling study made, earliest name first."""
        return [GeneratedFolder(p) for p in sorted((self.root / "sampling").glob("gen_*"))]

    def sampling_subset(self, pairs: int) -> Path:
        return self.root / "sampling" / f"first_{pairs}_pairs.csv"

    def lambda_cell(self, lambda1: float, lambda2: float) -> KECAERun:
        """One KECAE of the λ1 × λ2 grid."""
        return KECAERun(self.root / "lambda_grid" / f"l1_{lambda1:g}_l2_{lambda2:g}")

    def lambda_separability(self, cell: KECAERun) -> Path:
        """The SVM accuracies measured on one grid cell."""
        return cell.folder / "separability.json"

    def ablation_row(self, row: str, seed: int) -> AblationRun:
        """One row of the ablation at one seed: a run folder of its own."""
        return AblationRun(self.root / "ablation" / row / f"seed_{seed}")

    @property
    def ablation_table(self) -> Path:
        return self.root / "ablation" / "table.md"

    def robustness_seed(self, seed: int) -> RunLayout:
        """One seed of the robustness study: supervisor, judge, KECAE, generated images and
        evaluation of the run's recipe at that seed, laid out like a run folder."""
        return RunLayout(self.root / "robustness" / f"seed_{seed}")

    @property
    def robustness(self) -> Path:
        return self.root / "robustness"


@dataclass(frozen=True)
class DownstreamFraction:
    """One training fraction of ``kecae study downstream``: the subsampled data set, the
    supervisor, KECAE and generated images made from it alone, and the classifiers."""

    folder: Path

    @property
    def data_view(self) -> Path:
        """The data set with its training split subsampled (a manifest; val and test whole)."""
        return self.folder / "data.csv"

    @property
    def supervisor(self) -> ClassifierRun:
        return ClassifierRun(self.folder / "supervisor")

    def supervisor_member(self, k: int) -> ClassifierRun:
        """Member ``k`` of the fraction's supervisor ensemble (0: :attr:`supervisor`)."""
        return self.supervisor if k == 0 else ClassifierRun(self.folder / f"supervisor_{k}")

    @property
    def kecae(self) -> KECAERun:
        return KECAERun(self.folder / "kecae")

    @property
    def generated(self) -> GeneratedFolder:
        return GeneratedFolder(self.folder / "generated")

    def generated_subset(self, name: str) -> Path:
        """The manifest of one part of the generated images (the first N pairs that T' draws
        from, one direction, those the supervisor confirms)."""
        return self.folder / f"generated_{name}.csv"

    def classifier(self, arch: str, training_set: str, seed: int) -> ClassifierRun:
        """One classifier of Table II: ``training_set`` is the set's folder name."""
        return ClassifierRun(self.folder / arch / training_set / f"seed_{seed}")


@dataclass(frozen=True)
class TuneFolder:
    """``kecae tune``: the Optuna storage, one run folder per trial, the final comparison."""

    folder: Path

    @property
    def storage(self) -> Path:
        """Optuna's SQLite storage: a rerun continues the study held here."""
        return self.folder / "optuna.sqlite3"

    def trial(self, key: str) -> RunLayout:
        """One trial (named by its parameters): its KECAE, validation metrics and arrays."""
        return RunLayout(self.folder / "trials" / key)

    def final(self, name: str) -> TuneFinalFolder:
        """One row of the final comparison (best, paper, run)."""
        return TuneFinalFolder(self.folder / "final" / name)


@dataclass(frozen=True)
class TuneFinalFolder:
    """One row of ``kecae tune``'s final comparison: its KECAE (unless it reuses one) and its
    evaluations on the validation and the test split, each a run folder of its own."""

    folder: Path

    @property
    def kecae(self) -> KECAERun:
        return KECAERun(self.folder / "kecae")

    @property
    def val(self) -> RunLayout:
        return RunLayout(self.folder / "val")

    @property
    def test(self) -> RunLayout:
        return RunLayout(self.folder / "test")


class AblationRun(RunLayout):
    """One ablation row at one seed: its KECAE, evaluation and metrics like a run folder."""

    @property
    def timing(self) -> Path:
        return self.root / "timing.json"
