"""The pipeline of `kecae run` (the whole job on your data) and `kecae demo` (the same on
built-in phantoms; what `make demo` runs), each in one command.

pre-flight (data check, pairs, model size: :mod:`kecae.preflight`) -> supervisor -> independent
judge -> KECAE -> generate -> evaluate -> report; the demo first writes its phantoms into the run
folder. Every step writes into one run folder (layout: :mod:`kecae.runfolder`) and is skipped
when already complete, so a second run reuses finished steps and an interrupted one resumes.
Everything the command prints is also kept in ``RUN/console.log``.

Once a step has trained, a rerun with other settings is refused with the list of differences
(more KECAE steps, pairs or epochs are allowed: they continue the run); ``--fresh`` starts afresh
in a new folder. A run that stopped before training anything (a typo in ``--data``, a fatal data
problem) leaves its folder free: the corrected command simply runs. Scale the demo up with the
options (``make demo ARGS="--kecae-steps 20000 --kl0 3185 --kl2 2126"``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kecae.config import check_values, read_yaml_mapping, setting
from kecae.console import console_log
from kecae.data.catalog import load_catalog, task_grades
from kecae.device import check_device
from kecae.errors import KecaeError
from kecae.evaluation.summary import format_headline
from kecae.files import atomic_write_text, file_sha256
from kecae.generated_files import read_meta
from kecae.generation import GenerateConfig, generate
from kecae.metrics_file import write_sections
from kecae.paths import store_paths
from kecae.preflight import preflight, trained_anything
from kecae.registry import CLASSIFIERS, PRESETS
from kecae.report import write_report
from kecae.results import JudgeSummary, SupervisorSummary
from kecae.reuse import (
    SettingsDiffer,
    check_out_of_data,
    check_same,
    fresh_folder,
    prepare_output,
)
from kecae.runfolder import ClassifierRun, RunLayout
from kecae.runlock import releases_locks
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig, member_seed

# The trainers, presets and evaluation (torch, SciPy, scikit-learn) and the phantom renderer are
# imported by the steps that use them: the command line imports this module for RunConfig.

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """The whole job on a data set: supervisor, independent judge, KECAE, generation,
    evaluation and report, in one run folder."""

    data: str = ""  # data set: grade folders (root/train/0/*.png), a manifest CSV or its folder
    out: str = "runs/run"  # run folder
    grades: list[int] = setting(
        factory=lambda: [0, 2], flag="--grades", metavar="G"
    )  # the two KL grades compared and exchanged, e.g. 0 2 (default) or 0 1
    patient_regex: str | None = None  # folder layout: regex with a group 'patient' (see data check)
    side_map: dict[str, str] = setting(
        factory=dict, metavar="VALUE=L|R"
    )  # side values other than L, R, left, right, 1 (= R) and 2 (= L)
    image_size: int | None = (
        None  # model input side, px (default: CPU the preset's; CUDA the images')
    )
    preset: str = setting("cpu", choices=PRESETS)  # KECAE preset
    supervisor_arch: str = setting("siamese", choices=CLASSIFIERS)  # supervises KECAE
    supervisors: int | None = setting(
        None, range=(1, 64, True, "a whole number of supervisors in [1, 64]"), metavar="K"
    )  # frozen supervisors (seeds seed + 1000 k), J_SUP their mean (default: the preset's, 1)
    supervisor_adv_eps: float | None = setting(
        None, range=(0, 1, True, "a number in [0, 1] (image units; images lie in [-1, 1])")
    )  # the supervisors' adversarial training radius (--adv-eps; default: the preset's)
    judge_arch: str = setting(
        "small", choices=CLASSIFIERS
    )  # the independent judge (resnet18 for real runs)
    classifier_epochs: int = 12  # most epochs per classifier (early stopping on validation)
    kecae_steps: int | None = setting(
        None, metavar="N"
    )  # KECAE optimiser steps, batch 32 (default: the preset's; cpu 3,000: 8-12 min on 2 cores)
    kecae_lr: float = 1e-3  # 10x the paper's 1e-4: the demo has ~3k steps, the paper ~3M
    gen_pairs: int | None = setting(
        None, metavar="N"
    )  # pairs to generate, 2 images each (default: 2000, or all train pairs)
    eval_pairs: int | None = None  # test pairs for the evaluation (default: 400, or all there are)
    seed: int = 0  # seeds everything
    device: str = "auto"  # auto / cpu / cuda
    accept_data_problems: bool = False  # run despite fatal `kecae data check` problems (recorded)
    fresh: bool = False  # leave a used --out as it is and run afresh in OUT-2 (OUT-3, ...)


@dataclass
class DemoConfig(RunConfig):
    """The end-to-end demonstration on built-in phantoms."""

    out: str = "runs/demo"  # run folder
    kl0: int = 1200  # KL-0 phantoms (paper balance 3,185 : 2,126)
    kl2: int = 800  # KL-2 phantoms
    phantom_size: int = 128  # side of the written phantom PNGs, px


#: Pipeline settings a rerun may change: they continue or repeat steps, never relabel one.
MAY_CHANGE = (
    "kecae_steps",
    "classifier_epochs",
    "gen_pairs",
    "eval_pairs",
    "device",
    "accept_data_problems",
    "fresh",
    "out",
)

#: Options of ``kecae run`` that the demo does not take (it writes its own KL-0 / KL-2 data).
DEMO_HIDES = ("data", "patient_regex", "side_map", "grades")


def _open_run_folder(cfg: RunConfig) -> tuple[RunConfig, RunLayout]:
    """The run folder for ``cfg`` (with ``fresh``, a new one when this one is used), checked
    against the settings it was made with once any of its steps has trained."""
    layout = RunLayout(cfg.out)
    if cfg.fresh and layout.root.exists() and any(layout.root.iterdir()):
        layout = RunLayout(fresh_folder(layout.root))
        cfg = dataclasses.replace(cfg, out=str(layout.root))
        print(
            f"[{_label(cfg)}] the run folder is used: running afresh in {layout.root}", flush=True
        )
    if layout.marker.is_file() and trained_anything(layout):
        old = read_yaml_mapping(layout.marker, "run settings")
        check_same(
            layout.root,
            {**dataclasses.asdict(type(cfg)()), **old},
            dataclasses.asdict(cfg),
            fields=[f.name for f in dataclasses.fields(cfg)],
            # the supervisors' attack radius is checked against each supervisor's own settings
            # (the trainer's resume check, advised by _supervisor_advice): a run.yaml made
            # before the option existed lacks it, a supervisor folder always has its settings
            ignore=(*MAY_CHANGE, "supervisor_adv_eps"),
            what="a run",
            fix=f"only {', '.join(MAY_CHANGE[:-2])} may change on a rerun: "
            "pass the settings it was made with, or --fresh to run afresh in a new folder",
        )
    elif layout.marker.is_file():
        print(
            f"[{_label(cfg)}] {layout.root} holds the settings of a run that trained nothing: "
            "they are replaced by these",
            flush=True,
        )
    prepare_output(layout.root)
    return cfg, layout


def _mark_run_folder(cfg: RunConfig, layout: RunLayout) -> None:
    """run.yaml: the pipeline's settings, written once the pre-flight passed."""
    atomic_write_text(
        layout.marker,
        yaml.safe_dump(store_paths(dataclasses.asdict(cfg), layout.root), sort_keys=False),
    )


def _label(cfg: RunConfig) -> str:
    return "demo" if isinstance(cfg, DemoConfig) else "run"


class _Steps:
    """Runs the pipeline's steps one by one, announcing and timing each."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.timings: dict[str, float] = {}  # step -> wall seconds (metrics.json: timings)

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        print(f"[{self.label}] {name} ...", flush=True)
        t = time.perf_counter()
        result = fn()
        self.timings[name] = round(time.perf_counter() - t, 1)
        print(f"[{self.label}] {name} done in {self.timings[name]:.1f} s", flush=True)
        return result


@releases_locks
def run_pipeline(cfg: RunConfig, make_data: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """The whole job on ``cfg.data`` (or on what ``make_data(RUN/data)`` writes, for the demo).

    Returns the merged metrics.json; prints the headline numbers and the report's path. The
    console output is also appended to ``RUN/console.log``.
    """
    check_values(cfg)
    task_grades(cfg.grades)
    if make_data is None and not cfg.data:
        raise KecaeError(
            "--data is required: the folder (grade folders, e.g. root/train/0/*.png) "
            "or manifest CSV of your images; `kecae demo` runs on built-in phantoms"
        )
    if make_data is None:
        # a path that is no data set, or an --out whose images would be read as data, stops
        # before any folder is made or anything trained
        catalog = load_catalog(cfg.data, strict=False)
        check_out_of_data(Path(cfg.out), catalog.root, catalog.layout == "folders", "runs/NAME")
    cfg, layout = _open_run_folder(cfg)
    with console_log(layout.console):
        return _run_steps(cfg, layout, make_data)


def _run_steps(
    cfg: RunConfig, layout: RunLayout, make_data: Callable[[Path], Any] | None
) -> dict[str, Any]:
    from kecae.training.classifier_trainer import train_classifier
    from kecae.training.kecae_trainer import train_kecae

    label = _label(cfg)
    out = layout.root
    step = _Steps(label)

    # the demo's phantoms, then everything checked before anything trains
    if make_data is not None:
        step("phantoms", lambda: make_data(layout.data))
    plan = step("data check", lambda: _check_data(cfg, layout, make_data is not None, label))
    _mark_run_folder(cfg, layout)
    data, size, cache = plan.data, plan.image_size, str(out / ".kecae_cache")
    shared: dict[str, Any] = dict(
        data=data,
        grades=list(plan.grades),
        device=cfg.device,
        cache_dir=cache,
        accept_data_problems=cfg.accept_data_problems,
    )

    # the two classifiers, KECAE, its images and their evaluation
    sup = step(
        "supervisor", lambda: _train_supervisors(cfg, layout, size, shared, train_classifier)
    )
    with _run_level_advice(layout.judge.folder, _retrain(layout.judge.folder, "the judge")):
        judge = step(
            "judge",
            lambda: train_classifier(
                _classifier_config(layout.judge, cfg.judge_arch, cfg.seed + 1, cfg, size, shared)
            ),
        )
    with _run_level_advice(layout.kecae.folder, _retrain(layout.kecae.folder, "KECAE")):
        step("kecae", lambda: train_kecae(_kecae_config(cfg, layout, size, shared)))
    _drop_stale_generation(layout, label)
    step(
        "generate",
        lambda: generate(
            GenerateConfig(
                checkpoint=str(layout.kecae.last),
                data=data,
                out=str(layout.generated.folder),
                pairs=plan.gen_pairs,
                seed=cfg.seed,
                device=cfg.device,
                cache_dir=cache,
            )
        ),
    )
    metrics = step("evaluate", lambda: _evaluation(cfg, out, plan.eval_pairs, cache, label))

    # the run's settings and timings beside its numbers, then the report
    metrics = _record_run(cfg, label, layout, step.timings, metrics, sup, judge)
    report = step("report", lambda: write_report(out))
    print(f"\n[{label}] headline numbers (test pairs, see the report for sample sizes):")
    print(format_headline(metrics, supervisor=sup))
    print(f"\n[{label}] report: {report}\n[{label}] metrics: {layout.metrics}")
    return metrics


def _say(label: str, line: str) -> None:
    print(f"[{label}] {line}", flush=True)


def _check_data(cfg: RunConfig, layout: RunLayout, demo: bool, label: str) -> Any:
    """The pre-flight (:func:`kecae.preflight.preflight`): the data read and checked, the pair
    counts and the model's input size chosen, before anything trains."""
    from kecae.models.presets import kecae_config

    def model_config(side: int | None) -> Any:
        return kecae_config(cfg.preset, **({"image_size": side} if side else {}))

    return preflight(
        cfg,
        layout,
        demo=demo,
        say=lambda line: _say(label, line),
        device=check_device(cfg.device),
        model_size=model_config,
    )


def _classifier_config(
    run: ClassifierRun, arch: str, seed: int, cfg: RunConfig, size: int, shared: dict[str, Any]
) -> ClassifierTrainConfig:
    """The settings of the supervisor or the judge."""
    return ClassifierTrainConfig(
        out=str(run.folder),
        arch=arch,
        seed=seed,
        image_size=size,
        epochs=cfg.classifier_epochs,
        **shared,
    )


def supervisor_adv_eps(cfg: RunConfig) -> float:
    """The supervisors' PGD radius: ``--supervisor-adv-eps``, else its preset's."""
    from kecae.models.presets import preset_supervisor

    if cfg.supervisor_adv_eps is not None:
        return float(cfg.supervisor_adv_eps)
    return float(preset_supervisor(cfg.preset).get("adv_eps", 0.0))


Advice = Callable[[dict[str, tuple[Any, Any]]], str]


@contextlib.contextmanager
def _run_level_advice(folder: Path, advice: Advice) -> Iterator[None]:
    """A trainer's refusal of ``folder`` (made with other settings) re-raised with advice a user
    of ``kecae run`` / ``kecae demo`` can follow: the trainer's own names its ``--config``, which
    these commands do not take. ``advice`` gets the differences ({field: (old, new)})."""
    try:
        yield
    except SettingsDiffer as e:
        if e.folder.resolve() != Path(folder).resolve():
            raise
        raise e.advise(advice(e.diff)) from None


def _retrain(folder: Path, what: str) -> Advice:
    """Advice for a step whose folder this version of kecae would train otherwise (a preset or a
    default changed since): train it again in place, or the whole run afresh."""
    return lambda diff: (
        f"this version of kecae trains {what} with those settings: delete {folder} to train it "
        "again here (the steps before it are kept), or pass --fresh to run afresh in a new folder"
    )


def _supervisor_advice(folder: Path) -> Advice:
    """A supervisor trained with another attack radius (a folder made before the presets
    attacked theirs has none: 0) is kept by naming that radius; anything else is retrained."""

    def advice(diff: dict[str, tuple[Any, Any]]) -> str:
        if set(diff) == {"adv_eps"}:
            had = float(diff["adv_eps"][0] or 0.0)
            return (
                f"pass --supervisor-adv-eps {had:g} to keep it, or --fresh to run afresh in a "
                "new folder"
            )
        return _retrain(folder, "the supervisor")(diff)

    return advice


def supervisor_count(cfg: RunConfig) -> int:
    """How many supervisors the run trains: ``--supervisors``, else its preset's (1)."""
    from kecae.models.presets import preset_training

    return int(cfg.supervisors or preset_training(cfg.preset).get("supervisors", 1))


def _train_supervisors(
    cfg: RunConfig,
    layout: RunLayout,
    size: int,
    shared: dict[str, Any],
    train_classifier: Callable[[ClassifierTrainConfig], dict[str, Any]],
) -> dict[str, Any]:
    """The supervisor (member 0, seed ``cfg.seed``), then an ensemble's other members (each
    trained, resumed or reused in ``RUN/supervisor_<k>``); returns member 0's metrics."""
    from kecae.models.presets import preset_member_model

    metrics = []
    adv_eps = supervisor_adv_eps(cfg)
    for k in range(supervisor_count(cfg)):
        run = layout.supervisor_member(k)
        member = _classifier_config(
            run, cfg.supervisor_arch, member_seed(cfg.seed, k), cfg, size, shared
        )
        model = preset_member_model(cfg.preset, k)  # {} for member 0, the supervisor
        if model and cfg.supervisor_arch != "siamese":  # the views are the Siamese's patches
            log.warning(
                "supervisor member %d is trained as the supervisor: the %s preset's member "
                "view %s is one of the siamese arch, not %s",
                k,
                cfg.preset,
                model,
                cfg.supervisor_arch,
            )
            model = {}
        with _run_level_advice(run.folder, _supervisor_advice(run.folder)):
            metrics.append(
                train_classifier(dataclasses.replace(member, adv_eps=adv_eps, model=model))
            )
    return metrics[0]


def _kecae_config(
    cfg: RunConfig, layout: RunLayout, size: int, shared: dict[str, Any]
) -> KECAETrainConfig:
    """KECAE's settings: the preset's training recipe, the run's budget (``--kecae-steps``, else
    the preset's) and data, its input size when the pre-flight chose another than the preset's."""
    from kecae.models.presets import kecae_config, preset_steps, preset_training

    preset_size = kecae_config(cfg.preset).image_size
    steps = cfg.kecae_steps if cfg.kecae_steps is not None else preset_steps(cfg.preset)
    model = {
        **preset_training(cfg.preset).get("model", {}),
        **({"image_size": size} if size != preset_size else {}),
    }
    return KECAETrainConfig(
        **{
            **preset_training(cfg.preset),
            **shared,
            "out": str(layout.kecae.folder),
            "supervisor": str(layout.supervisor.best),
            "supervisors": supervisor_count(cfg),
            "supervisor_members": [
                str(layout.supervisor_member(k).best) for k in range(1, supervisor_count(cfg))
            ],
            "preset": cfg.preset,
            "model": model,
            "max_steps": steps,
            "lr": cfg.kecae_lr,
            "num_pairs": 100_000,
            "seed": cfg.seed,
            "sample_every": max(50, steps // 10),
            "ckpt_every": max(50, steps // 10),
        }
    )


def _evaluation(cfg: RunConfig, out: Path, pairs: int, cache: str, label: str) -> dict[str, Any]:
    """The run's evaluation (re-used when its checkpoints and settings are unchanged)."""
    from kecae.evaluation.evaluate import EvaluateConfig
    from kecae.evaluation.rerun import evaluate_run

    metrics, _, reused = evaluate_run(
        EvaluateConfig(
            run=str(out), pairs=pairs, seed=cfg.seed, device=cfg.device, cache_dir=cache
        ),
        own=True,
    )
    if reused:
        _say(label, "the evaluation of these checkpoints and settings is in metrics.json: re-used")
    return metrics


def _record_run(
    cfg: RunConfig,
    label: str,
    layout: RunLayout,
    timings: dict[str, float],
    metrics: dict[str, Any],
    sup: dict[str, Any],
    judge: dict[str, Any],
) -> dict[str, Any]:
    """metrics.json with the run's settings, step times and the classifiers' accuracies at
    training."""
    out = layout.root
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if not (label == "demo" and k in DEMO_HIDES)
    }
    settings = store_paths(settings, out)
    supervisor = SupervisorSummary.from_dict(metrics[SupervisorSummary.NAME])
    supervisor.test_accuracy = sup["test_accuracy"]
    judge_summary = JudgeSummary.from_dict(metrics[JudgeSummary.NAME])
    judge_summary.test_accuracy_at_training = judge["test_accuracy"]
    return write_sections(
        out,
        {
            "timings": timings,
            "config": {label: settings},
            SupervisorSummary.NAME: supervisor.to_dict(),
            JudgeSummary.NAME: judge_summary.to_dict(),
        },
    )


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """:func:`run_pipeline` on phantoms written into ``RUN/data`` (kept when already there)."""
    from kecae.phantoms.dataset import CSV_NAME, make_phantoms

    check_values(cfg)

    def phantoms(folder: Path) -> Any:
        return (folder / CSV_NAME).exists() or make_phantoms(
            folder,
            n_kl0=cfg.kl0,
            n_kl2=cfg.kl2,
            size=cfg.phantom_size,
            seed=cfg.seed,
            workers=min(4, os.cpu_count() or 1),
        )

    return run_pipeline(
        dataclasses.replace(cfg, data="", patient_regex=None, side_map={}, grades=[0, 2]),
        make_data=phantoms,
    )


def _drop_stale_generation(layout: RunLayout, label: str) -> None:
    """The pipeline owns RUN/generated: after KECAE trained further (more --kecae-steps), images
    from the old checkpoint are removed so the folder is rebuilt from the new one."""

    folder = layout.generated
    meta = read_meta(folder)
    if meta is not None and meta.get("checkpoint_sha256") != file_sha256(layout.kecae.last):
        print(
            f"[{label}] {folder.folder} was made by an older checkpoint: generating it again",
            flush=True,
        )
        shutil.rmtree(folder.folder)
