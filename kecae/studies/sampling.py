"""`kecae study sampling`: test accuracy against the number N of generated pairs added to the
training set (the paper's Fig. 5).

The largest N is generated once (or taken from a finished folder of the same checkpoint, data and
pair seed); every smaller N uses its first N pairs, so a larger N contains every smaller one.
The section ``sampling_size`` of ``RUN/metrics.json`` holds the curve; sub-runs live under
``RUN/studies/sampling/``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kecae.config import setting
from kecae.metrics_file import jsonable, write_section
from kecae.registry import CLASSIFIERS
from kecae.results import SamplingSize
from kecae.runfolder import ClassifierRun, RunLayout
from kecae.studies.fractions import find_or_generate
from kecae.studies.subruns import (
    ClassifierStudyConfig,
    Progress,
    check_archs,
    classifier_config,
    data_options,
    first_pairs_manifest,
    mean_and_std,
    percent_pm,
    resolve_data,
    resolve_image_size,
    split_metric,
    train_or_reuse,
)
from kecae.training.logs import read_log

log = logging.getLogger(__name__)


@dataclass
class SamplingConfig(ClassifierStudyConfig):
    """Fig. 5: accuracy against the number N of generated pairs added to T."""

    sizes: list[int] = setting(factory=lambda: [0, 500, 2000], flag="--sizes")  # N; 0 = T alone
    arch: str = setting("resnet18", choices=CLASSIFIERS)  # classifier
    checkpoint: str | None = None  # KECAE checkpoint; default RUN/kecae/checkpoints/last.pt
    gen_seed: int = 0  # seeds the pair sample (the first N pairs of a larger sample are reused)
    gen_batch_size: int = 64  # pairs per generator forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check_archs([self.arch])
        if not self.sizes or min(self.sizes) < 0 or len(set(self.sizes)) != len(self.sizes):
            raise ValueError(
                f"sizes must be distinct numbers of pairs >= 0, e.g. 0 500 2000; got {self.sizes}"
            )


def run_sampling(cfg: SamplingConfig) -> dict[str, Any]:
    """Classifiers on T ∪ X'_N for each N in ``cfg.sizes``; write and return ``sampling_size``.

    The largest N is generated once (or taken from a finished folder of the same checkpoint,
    data and pair seed: ``RUN/generated`` or an earlier ``RUN/studies/sampling/gen_*``); every
    smaller N uses its first N pairs.
    """
    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    data = resolve_data(cfg.data, run)
    options = data_options(run, cfg.data, cfg.patient_regex)
    size = resolve_image_size(cfg.image_size, run)
    sizes = sorted(cfg.sizes)
    source = _generated_source(cfg, layout, data, sizes[-1], options) if sizes[-1] > 0 else None

    # every sub-run: N pairs (0: the real training set alone) x seeds
    acc_mean, acc_std, acc_values, n_generated = [], [], [], []
    curves: dict[str, list[float]] = {}
    seed_curves: dict[str, list[list[float]]] = {}
    progress = Progress("sampling", len(sizes) * cfg.seeds)
    test_n = None
    for n in sizes:
        dirs = (
            []
            if n == 0 or source is None
            else [str(first_pairs_manifest(source, n, layout.studies.sampling_subset(n)))]
        )
        accs, runs_curves = [], []
        for seed in cfg.seed_list:
            out = layout.studies.sampling(n, seed)
            result = train_or_reuse(
                classifier_config(
                    cfg,
                    data=data,
                    size=size,
                    arch=cfg.arch,
                    out=out,
                    seed=seed,
                    augment_dirs=dirs,
                    options=options,
                )
            )
            accs.append(split_metric(result, "accuracy"))
            runs_curves.append(_train_loss(out))
            test_n = int(result["n_test"])
            progress.step(f"N = {n} seed {seed}: test accuracy {accs[-1]:.4f}")
        mean, std = mean_and_std(accs)
        acc_mean.append(mean)
        acc_std.append(std)
        acc_values.append(accs)
        n_generated.append(2 * n)
        curves[str(n)], seed_curves[str(n)] = _mean_curve(runs_curves), runs_curves

    section = SamplingSize(
        N=sizes,
        accuracy_mean=acc_mean,
        accuracy_std=acc_std,
        accuracy_values=acc_values,
        train_loss_curves=curves,
        train_loss_curves_per_seed=seed_curves,
        n_train_generated=n_generated,
        arch=cfg.arch,
        n_seeds=cfg.seeds,
        seeds=cfg.seed_list,
        epochs=cfg.epochs,
        patience=cfg.patience,
        test_n=test_n,
        image_size=size,
        generated_from=str(source) if source else None,
        note="N pairs add 2N images (X'1 labelled KL-2, X'2 labelled KL-0); the first N pairs of "
        "one sample, so a larger N contains every smaller one. train_loss_curves: per-epoch "
        "training loss, mean over the seeds that reached the epoch (early stopping).",
    )
    write_section(run, SamplingSize.NAME, section.to_dict())
    return jsonable(section.to_dict())


def _generated_source(
    cfg: SamplingConfig, layout: RunLayout, data: str, n_max: int, options: dict[str, Any]
) -> Path:
    """A finished generation of at least ``n_max`` pairs of the run's checkpoint, data and pair
    seed: RUN/generated or an earlier one of this study, else a new one."""
    ckpt = Path(cfg.checkpoint).resolve() if cfg.checkpoint else layout.kecae.last
    return find_or_generate(
        cfg,
        ckpt,
        data,
        n_max,
        [layout.generated, *layout.studies.sampling_generations()],
        layout.studies.sampling_generated(n_max),
        options.get("patient_regex"),
    )


def _train_loss(run: ClassifierRun) -> list[float]:
    """The classifier run's per-epoch training loss from its log.csv."""
    rows = sorted(read_log(run.log).rows, key=lambda r: r["epoch"])
    return [r["train_loss"] for r in rows if "train_loss" in r]


def _mean_curve(curves: list[list[float]]) -> list[float]:
    """Epoch-wise mean over the seeds that reached each epoch (early stopping varies)."""
    length = max((len(c) for c in curves), default=0)
    return [float(np.mean([c[e] for c in curves if len(c) > e])) for e in range(length)]


def format_sampling(section: dict[str, Any]) -> str:
    """Fig. 5 as text: accuracy for each N."""
    curve = SamplingSize.from_dict(section)
    lines = [
        f"{'N pairs':>9}{'accuracy %':>18}   ({curve.arch}, {curve.n_seeds} seeds, "
        f"test n = {curve.test_n})"
    ]
    for n, mean, std in zip(curve.N, curve.accuracy_mean, curve.accuracy_std, strict=True):
        lines.append(f"{n:>9}{percent_pm(mean, std):>18}")
    return "\n".join(lines)
