"""The pipeline of `kecae run` (the whole job on your data) and `kecae demo` (the same on
built-in phantoms; what `make demo` runs), each in one command.

data check -> supervisor -> independent judge -> KECAE -> generate -> evaluate -> report; the demo
first writes its phantoms into the run folder. Every step writes into one run folder (layout:
:mod:`kecae.runfolder`) and is skipped when already complete, so a second run reuses finished
steps and an interrupted one resumes. A rerun with other settings is refused with the list of
differences (more KECAE steps, pairs or epochs are allowed: they continue the run); ``--fresh``
starts afresh in a new folder. Scale the demo up with the options
(``make demo ARGS="--kecae-steps 20000 --kl0 3185 --kl2 2126"``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kecae.config import check_values, read_yaml_mapping, setting
from kecae.errors import KecaeError
from kecae.files import atomic_write_text, file_sha256
from kecae.registry import CLASSIFIERS, PRESETS
from kecae.results import JudgeSummary, SupervisorSummary
from kecae.runfolder import (
    RunLayout,
    check_same,
    fresh_folder,
    prepare_output,
    store_paths,
    write_sections,
)

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """The whole job on a data set: supervisor, independent judge, KECAE, generation,
    evaluation and report, in one run folder."""

    data: str = ""  # data set: grade folders (root/train/0/*.png), a manifest CSV or its folder
    out: str = "runs/run"  # run folder
    patient_regex: str | None = None  # folder layout: regex with a group 'patient' (see data check)
    image_size: int | None = None  # model input side, px (default: the KECAE preset's)
    preset: str = setting("cpu", choices=PRESETS)  # KECAE preset
    supervisor_arch: str = setting("siamese", choices=CLASSIFIERS)  # supervises KECAE
    judge_arch: str = setting(
        "small", choices=CLASSIFIERS
    )  # the independent judge (resnet18 for real runs)
    classifier_epochs: int = 12  # most epochs per classifier (early stopping on validation)
    kecae_steps: int = 2000  # KECAE optimiser steps (batch 32): ~4-5 min on 2 cores
    kecae_lr: float = 1e-3  # 10x the paper's 1e-4: the demo has ~2k steps, the paper ~3M
    gen_pairs: int = 2000  # pairs to generate (2 images each)
    eval_pairs: int = 400  # test pairs for the evaluation
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

#: Options of ``kecae run`` that the demo does not take (it writes its own data).
DEMO_HIDES = ("data", "patient_regex")


def _open_run_folder(cfg: RunConfig) -> tuple[RunConfig, RunLayout]:
    """The run folder for ``cfg``: checked against the settings it was made with (or, with
    ``fresh``, a new one), marked with run.yaml before any step stores a path in it."""
    layout = RunLayout(cfg.out)
    if cfg.fresh and layout.root.exists() and any(layout.root.iterdir()):
        layout = RunLayout(fresh_folder(layout.root))
        cfg = dataclasses.replace(cfg, out=str(layout.root))
        print(
            f"[{_label(cfg)}] the run folder is used: running afresh in {layout.root}", flush=True
        )
    if layout.marker.is_file():
        old = read_yaml_mapping(layout.marker, "run settings")
        check_same(
            layout.root,
            old,
            dataclasses.asdict(cfg),
            fields=[f.name for f in dataclasses.fields(cfg)],
            ignore=MAY_CHANGE,
            what="a run",
            fix=f"only {', '.join(MAY_CHANGE[:-2])} may change on a rerun: "
            "pass the settings it was made with, or --fresh to run afresh in a new folder",
        )
    prepare_output(layout.root)
    atomic_write_text(
        layout.marker,
        yaml.safe_dump(store_paths(dataclasses.asdict(cfg), layout.root), sort_keys=False),
    )
    return cfg, layout


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


def run_pipeline(cfg: RunConfig, make_data: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """The whole job on ``cfg.data`` (or on what ``make_data(RUN/data)`` writes, for the demo).

    Returns the merged metrics.json; prints the headline numbers and the report's path.
    """
    from kecae.data import load_catalog
    from kecae.data.catalog import write_catalog
    from kecae.data.check import require_clean_data
    from kecae.data.splits import ensure_splits
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate
    from kecae.evaluation.summary import format_headline
    from kecae.generation import GenerateConfig, generate
    from kecae.models.presets import kecae_config, preset_training
    from kecae.report import write_report
    from kecae.training.classifier_trainer import train_classifier
    from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig
    from kecae.training.kecae_trainer import train_kecae

    check_values(cfg)
    if make_data is None and not cfg.data:
        raise KecaeError(
            "--data is required: the folder (grade folders, e.g. root/train/0/*.png) "
            "or manifest CSV of your images; `kecae demo` runs on built-in phantoms"
        )
    label = _label(cfg)
    cfg, layout = _open_run_folder(cfg)
    out = layout.root
    step = _Steps(label)

    # the data set as every step sees it
    if make_data is not None:
        step("phantoms", lambda: make_data(layout.data))
        data = str(layout.data)
    else:
        data = str(Path(cfg.data).expanduser().resolve())
        if cfg.patient_regex:
            # the patients (and so the patient-level splits) the regex gives, fixed in one
            # manifest that every step and later command (evaluate, studies) reads as it is
            step(
                "data view",
                lambda: write_catalog(
                    ensure_splits(load_catalog(data, patient_regex=cfg.patient_regex)),
                    layout.data_view,
                ),
            )
            data = str(layout.data_view)
    step("data check", lambda: require_clean_data(data, accept=cfg.accept_data_problems))

    size = cfg.image_size or kecae_config(cfg.preset).image_size
    accept = {"accept_data_problems": cfg.accept_data_problems}
    common: dict[str, Any] = dict(
        data=data, image_size=size, epochs=cfg.classifier_epochs, device=cfg.device, **accept
    )
    sup = step(
        "supervisor",
        lambda: train_classifier(
            ClassifierTrainConfig(
                out=str(layout.supervisor.folder), arch=cfg.supervisor_arch, seed=cfg.seed, **common
            )
        ),
    )
    judge = step(
        "judge",
        lambda: train_classifier(
            ClassifierTrainConfig(
                out=str(layout.judge.folder), arch=cfg.judge_arch, seed=cfg.seed + 1, **common
            )
        ),
    )
    model = {
        **preset_training(cfg.preset).get("model", {}),
        **({"image_size": size} if cfg.image_size else {}),
    }
    step(
        "kecae",
        lambda: train_kecae(
            KECAETrainConfig(
                **{
                    **preset_training(cfg.preset),
                    "data": data,
                    "out": str(layout.kecae.folder),
                    "supervisor": str(layout.supervisor.best),
                    "preset": cfg.preset,
                    "model": model,
                    "max_steps": cfg.kecae_steps,
                    "lr": cfg.kecae_lr,
                    "num_pairs": 100_000,
                    "seed": cfg.seed,
                    "device": cfg.device,
                    "sample_every": max(50, cfg.kecae_steps // 10),
                    "ckpt_every": max(50, cfg.kecae_steps // 10),
                    **accept,
                }
            )
        ),
    )
    _drop_stale_generation(layout, label)
    step(
        "generate",
        lambda: generate(
            GenerateConfig(
                checkpoint=str(layout.kecae.last),
                data=data,
                out=str(layout.generated.folder),
                pairs=cfg.gen_pairs,
                seed=cfg.seed,
                device=cfg.device,
            )
        ),
    )
    metrics = step(
        "evaluate",
        lambda: evaluate(
            EvaluateConfig(run=str(out), pairs=cfg.eval_pairs, seed=cfg.seed, device=cfg.device)
        ),
    )
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
    metrics = write_sections(
        out,
        {
            "timings": step.timings,
            "config": {label: settings},
            SupervisorSummary.NAME: supervisor.to_dict(),
            JudgeSummary.NAME: judge_summary.to_dict(),
        },
    )
    report = step("report", lambda: write_report(out))
    print(f"\n[{label}] headline numbers (test pairs, see the report for sample sizes):")
    print(format_headline(metrics))
    print(f"\n[{label}] report: {report}\n[{label}] metrics: {layout.metrics}")
    return metrics


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

    return run_pipeline(dataclasses.replace(cfg, data="", patient_regex=None), make_data=phantoms)


def _drop_stale_generation(layout: RunLayout, label: str) -> None:
    """The pipeline owns RUN/generated: after KECAE trained further (more --kecae-steps), images
    from the old checkpoint are removed so the folder is rebuilt from the new one."""
    from kecae.generation import read_meta

    folder = layout.generated
    meta = read_meta(folder)
    if meta is not None and meta.get("checkpoint_sha256") != file_sha256(layout.kecae.last):
        print(
            f"[{label}] {folder.folder} was made by an older checkpoint: generating it again",
            flush=True,
        )
        shutil.rmtree(folder.folder)
