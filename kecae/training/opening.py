"""Opening a training run folder, the same for the classifiers and KECAE: with ``--fresh`` a new
folder when this one is used, the folder locked before its state is read, then the data check
(its version becomes a setting like the others, so a resumed run on other data is refused)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Protocol, TypeVar

from kecae.data.catalog import task_grades
from kecae.data.check import DataCheck, checked_data
from kecae.reuse import fresh_folder
from kecae.runfolder import TrainingRun
from kecae.runlock import lock_run_folder
from kecae.training.distributed import DistInfo, barrier

log = logging.getLogger(__name__)


class _Settings(Protocol):
    """What opening a run folder reads of a training command's settings."""

    out: str
    fresh: bool
    data: str
    patient_regex: str | None
    grades: list[int]
    accept_data_problems: bool
    cache_dir: str | None
    progress: bool


C = TypeVar("C", bound=_Settings)
R = TypeVar("R", bound=TrainingRun)


def take_run_folder(cfg: C, run: R, used: bool, dist_info: DistInfo) -> tuple[C, R]:
    """``run``, or with ``--fresh`` and ``used`` a new folder beside it (``cfg.out`` changed),
    locked by rank 0: one process per run folder."""
    if cfg.fresh and used:
        cfg = dataclasses.replace(cfg, out=str(fresh_folder(run.folder)))  # type: ignore[type-var]
        barrier(dist_info)  # every rank has chosen the same folder before rank 0 creates it
        if dist_info.is_main:
            log.info("%s is used: training afresh in %s", run.folder, cfg.out)
        run = type(run)(Path(cfg.out))
    if dist_info.is_main:
        lock_run_folder(run.folder)  # before its state is read: one process per run folder
    return cfg, run


def check_training_data(cfg: C, dist_info: DistInfo, size: int | None) -> tuple[C, DataCheck]:
    """The data check of ``cfg.data`` (cached per data version; images under ``size`` px
    reported) and the settings with the data version filled in."""
    checked = checked_data(
        cfg.data,
        patient_regex=cfg.patient_regex,
        grades=task_grades(cfg.grades),
        accept=cfg.accept_data_problems,
        cache_dir=cfg.cache_dir,
        progress=cfg.progress and dist_info.is_main,
        size=size,
    )
    return dataclasses.replace(cfg, data_version=checked.version), checked  # type: ignore[type-var]
