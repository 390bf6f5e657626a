"""The run folder: every path of its layout, how paths are written into it, the "made with the
same settings?" check, and its ``metrics.json``.

A pipeline run (``kecae run`` / ``kecae demo``) is one folder::

    RUN/run.yaml          the pipeline's settings; marks RUN as the root of a run folder
    RUN/data/             the demo's phantoms (``kecae run`` reads the user's data where it is)
    RUN/data.csv          the data set as the run sees it (patients, L/R sides, splits)
    RUN/data_check.json   what ``kecae run`` checked and chose before training (kecae.preflight)
    RUN/console.log       every command's console output, one file per run
    RUN/.kecae_cache/     preprocessed images and data checks (safe to delete)
    RUN/supervisor/       classifier run: config.yaml, last.pt, best.pt, metrics.json, log.csv
    RUN/judge/            the independent classifier, same files
    RUN/kecae/            KECAE run: config.yaml, checkpoints/last.pt, summary.json, log.csv,
                          samples/
    RUN/generated/        generate's output: <grade>/*.png, manifest.csv, generation.json
    RUN/eval/             arrays behind the report's figures
    RUN/studies/<name>/   the studies' sub-runs
    RUN/metrics.json      sections written by evaluate, the studies and the pipeline
    RUN/report.html       the report

**Paths inside a run folder survive a move.** Every path a run writes into a file (config.yaml,
checkpoints, generation.json, manifests) is stored relative to the folder of that file when it
lies inside the run's root (the nearest folder above holding ``run.yaml``, else the training
run's own folder), and absolute when it lies outside. Reading resolves it against the file's
folder again, so ``cp -a runs/demo /x/demo`` gives a run that works from any working folder.

**Made with the same settings?** :func:`differences` and :func:`check_same` compare two
configurations field by field (paths by where they point); every "may I reuse or resume this
folder?" decision goes through them.

**metrics.json** is one JSON object whose sections are written by different commands (evaluate,
the studies, the pipeline). Every writer goes through :func:`write_sections`, which holds a lock
while it reads, updates and atomically rewrites the file, so commands running at the same time
never lose each other's sections.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae.errors import KecaeError
from kecae.files import atomic_write_text, output_error, remove_stale_tmp, writable_folder
from kecae.runlock import lock_run_folder

#: The file that marks the root of a pipeline run folder (the pipeline's settings).
RUN_MARKER = "run.yaml"

#: In a training run folder: the fatal data problems the run was told to accept.
DATA_CHECK = "data_check.json"

#: Names every training run folder uses: its settings, its log (and TensorBoard events), and
#: its results.
CONFIG, LOG, TENSORBOARD, METRICS = "config.yaml", "log.csv", "tb", "metrics.json"

#: Configuration fields (of every config dataclass) that hold file or folder paths.
PATH_FIELDS = frozenset(
    {
        "data",
        "out",
        "supervisor",
        "augment_dirs",
        "mix_dirs",
        "cache_dir",
        "checkpoint",
        "run",
        "kecae_checkpoint",
        "judge",
        "generated",
    }
)


# ---------------------------------------------------------------------------------------------
# The layout
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Paths written into the run folder
# ---------------------------------------------------------------------------------------------


def run_root(folder: str | os.PathLike) -> Path:
    """The nearest folder at or above ``folder`` holding ``run.yaml``, else ``folder`` itself
    (absolute)."""
    folder = Path(folder).expanduser().resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / RUN_MARKER).is_file():
            return candidate
    return folder


def store_path(target: str | os.PathLike, base: str | os.PathLike) -> str:
    """``target`` as written into a file that lives in folder ``base``: relative to ``base`` when
    it lies inside the run root of ``base``, absolute otherwise."""
    t = Path(target).expanduser().resolve()
    base = Path(base).expanduser().resolve()
    root = run_root(base)
    if t == root or root in t.parents:
        return Path(os.path.relpath(t, base)).as_posix()
    return str(t)


def load_path(stored: str, base: str | os.PathLike, legacy: bool = False) -> str:
    """A path read from a file in folder ``base``, made absolute. ``legacy``: the file may come
    from an older kecae that wrote paths relative to the working folder; such a path is taken
    as it is when it exists there and not next to the file."""
    p = Path(stored).expanduser()
    if p.is_absolute():
        return str(p)
    anchored = Path(base).expanduser().resolve() / p
    if legacy and not anchored.exists() and p.exists():
        return str(p.resolve())
    return os.path.normpath(anchored)


def _map_paths(values: dict[str, Any], fn: Any) -> dict[str, Any]:
    out = dict(values)
    for name in PATH_FIELDS & set(values):
        v = values[name]
        if isinstance(v, str) and v:
            out[name] = fn(v)
        elif isinstance(v, (list, tuple)):
            out[name] = [fn(x) if isinstance(x, str) and x else x for x in v]
    return out


def store_paths(values: dict[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """A configuration dict with its path fields written for a file in folder ``base``."""
    return _map_paths(values, lambda v: store_path(v, base))


def load_paths(
    values: dict[str, Any], base: str | os.PathLike, legacy: bool = False
) -> dict[str, Any]:
    """A configuration dict read from a file in folder ``base``, its path fields absolute."""
    return _map_paths(values, lambda v: load_path(v, base, legacy))


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """A configuration dict whose path fields are absolute (relative ones are taken from the
    working folder, as on the command line)."""
    return _map_paths(values, lambda v: str(Path(v).expanduser().resolve()))


# ---------------------------------------------------------------------------------------------
# Made with the same settings?
# ---------------------------------------------------------------------------------------------


def differences(
    old: dict[str, Any],
    new: dict[str, Any],
    fields: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> dict[str, tuple[Any, Any]]:
    """``{field: (old value, new value)}`` for the fields (all of both, less ``ignore``) whose
    values differ. Paths compare by where they point; 1e-3 equals 0.001."""
    names = list(fields) if fields is not None else sorted(set(old) | set(new))
    a, b = absolute_paths(old), absolute_paths(new)
    skip = set(ignore)
    return {k: (old.get(k), new.get(k)) for k in names if k not in skip and a.get(k) != b.get(k)}


def format_differences(diff: dict[str, tuple[Any, Any]]) -> str:
    """``lr 0.0001 there, 0.5 now; model {} there, {'width': 0.25} now``."""
    return "; ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in diff.items())


def check_same(
    folder: str | os.PathLike,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    fields: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    what: str = "a run",
    fix: str = "",
    sep: str = ": ",
) -> None:
    """Refuse (:class:`KecaeError`, every difference listed) when ``folder`` holds ``what``
    made with settings other than ``new``; ``fix`` (after ``sep``) says what to do instead.
    Every "may I reuse or resume this folder?" decision of kecae goes through here."""
    diff = differences(old, new, fields, ignore)
    if diff:
        raise KecaeError(
            f"{folder} holds {what} made with other settings "
            f"({format_differences(diff)}){sep + fix if fix else ''}"
        )


def check_resumable(
    folder: str | os.PathLike, old: dict[str, Any], cfg: Any, may_change: tuple[str, ...]
) -> None:
    """Refuse to continue or reuse the training run in ``folder`` when ``cfg`` differs from the
    settings it was made with (``old``, missing fields taken as today's defaults) in anything but
    ``may_change``: a resumed run would otherwise be labelled with settings it never had."""
    import dataclasses

    free = ", ".join(k for k in may_change if k != "out")
    if hasattr(cfg, "data_version"):
        check_data_version(folder, old.get("data_version"), cfg.data_version, cfg.data)
        old = {**old, "data_version": cfg.data_version}
    check_same(
        folder,
        {**dataclasses.asdict(type(cfg)()), **old},
        dataclasses.asdict(cfg),
        fields=[f.name for f in dataclasses.fields(cfg)],
        ignore=may_change,
        what="a run",
        sep="; ",
        fix=f"only stopping criteria, logging and the device ({free}) may change when a "
        "run is resumed or reused: pass the settings it was made with (`--config "
        f"{Path(folder) / CONFIG}` gives them back), or --fresh to train afresh in a new "
        "folder",
    )


def check_data_version(
    folder: str | os.PathLike, old: str | None, new: str, data: str, fix: str = ""
) -> None:
    """Refuse ``folder`` when it holds a run made on another version of the data set (the data
    check's :func:`kecae.data.check.data_version`); a run made before runs recorded a version
    (``old`` empty) is not checked."""
    if old and new and old != new:
        raise KecaeError(
            f"{folder} holds a run made with other settings (data_version {old[:12]} there, "
            f"{new[:12]} now: the data set {data} has changed since: images added, removed, "
            "edited or relabelled); restore the data it was made with, or "
            + (fix or "pass --fresh to train afresh in a new folder")
        )


def check_config_file(
    folder: str | os.PathLike, new: Any, fields: Iterable[str], *, what: str, fix: str
) -> None:
    """Refuse ``folder`` when its config.yaml holds settings other than ``new`` in ``fields``
    (nothing to compare when the folder has no config.yaml yet). The data version is left out:
    a configuration built before training (copied from another run's) does not know it yet;
    the trainer computes it from the data and compares it (:func:`check_resumable`)."""
    import dataclasses

    from kecae.config import load_yaml

    path = Path(folder) / CONFIG
    if path.is_file():
        old = dataclasses.asdict(load_yaml(type(new), path))
        fields = [f for f in fields if f != "data_version"]
        check_same(folder, old, dataclasses.asdict(new), fields=fields, what=what, fix=fix)


# ---------------------------------------------------------------------------------------------
# Output folders
# ---------------------------------------------------------------------------------------------


def prepare_output(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``folder`` (or take the existing one), check that it can be written
    (:func:`kecae.files.writable_folder`), lock it for this process (:mod:`kecae.runlock`: a
    second process is refused while this command runs), and remove temporary files a killed
    run left in it. Every failure is a :class:`KecaeError` that names the folder and the fix."""
    p = writable_folder(folder, option)
    lock_run_folder(p)
    remove_stale_tmp(p)
    return p


def check_out_of_data(
    out: Path, data_root: Path, data_is_folder_layout: bool, example: str = "RUN/generated"
) -> None:
    """Refuse an output folder that is the data folder, lies inside a folder-layout data set
    (its images would be read as data) or holds the data set."""
    o, d = out.expanduser().resolve(), data_root.resolve()
    if o == d or (data_is_folder_layout and d in o.parents):
        where = "the data folder" if o == d else "inside the data folder"
        raise KecaeError(
            f"--out {out} is {where} {data_root}: its images would be read as part "
            f"of the data set; choose a folder outside it (e.g. {example})"
        )
    if o in d.parents:
        raise KecaeError(f"--out {out} holds the data set {data_root}: choose a folder of its own")


def record_data_problems(folder: str | os.PathLike, problems: list[Any]) -> Path:
    """Write the fatal data problems a run was told to accept (``--accept-data-problems``) to
    ``folder/data_check.json``, beside the config that records the choice."""
    import dataclasses

    path = TrainingRun(Path(folder)).data_check
    atomic_write_text(
        path,
        json.dumps(
            {"accepted_fatal_problems": [dataclasses.asdict(p) for p in problems]}, indent=2
        ),
    )
    return path


def fresh_folder(folder: str | os.PathLike) -> Path:
    """The first of ``FOLDER-2``, ``FOLDER-3``, ... that does not exist yet."""
    folder = Path(folder)
    k = 2
    while (candidate := folder.with_name(f"{folder.name}-{k}")).exists():
        k += 1
    return candidate


# ---------------------------------------------------------------------------------------------
# metrics.json
# ---------------------------------------------------------------------------------------------


def jsonable(x: Any) -> Any:
    """Plain JSON types; NaN/inf become null (strict JSON readers refuse NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


@contextlib.contextmanager
def metrics_lock(run: Path) -> Iterator[None]:
    """Serialise read-update-write of metrics.json between processes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still prevents torn files
        yield
        return
    lock = run / ".metrics.json.lock"
    try:
        run.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as exc:
        raise output_error(lock, exc) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_metrics(run: str | Path) -> dict[str, Any]:
    """The run's metrics.json ({} when absent); a damaged file is a KecaeError naming it."""
    path = Path(run) / METRICS
    if not path.exists():
        return {}
    try:
        merged = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KecaeError(
            f"{path} is not valid JSON ({exc}): repair it or move it away "
            "(each command only rewrites its own sections)"
        ) from exc
    if not isinstance(merged, dict):
        raise KecaeError(f"{path} does not hold a JSON object: move it away and rerun")
    return merged


def write_sections(run: str | Path, sections: dict[str, Any]) -> dict[str, Any]:
    """Set ``metrics.json[name] = value`` for each section, keeping every other section;
    returns the whole merged object."""
    run = Path(run)
    with metrics_lock(run):
        merged = read_metrics(run)
        merged.update(jsonable(sections))
        atomic_write_text(run / METRICS, json.dumps(merged, indent=2))
    return merged


def write_section(run: str | Path, name: str, section: dict[str, Any]) -> Path:
    """Set one section of ``run``/metrics.json; returns the file's path."""
    write_sections(run, {name: section})
    return Path(run) / METRICS
