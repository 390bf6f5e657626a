"""`kecae demo` (what `make demo` runs): the whole job on the built-in phantoms, in one command.

phantoms -> supervisor -> independent judge -> KECAE -> generate -> evaluate -> report.
Every step writes into one run folder and is skipped when already complete, so a second run
reuses finished steps and an interrupted one resumes. Scale it up with the options
(``make demo ARGS="--kecae-steps 20000 --kl0 3185 --kl2 2126"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from kecae.configargs import add_dataclass_args, dataclass_from_args
from kecae.runfolder import write_sections
from kecae.utils import file_sha256

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """The end-to-end demonstration on built-in phantoms."""

    out: str = "runs/demo"  # run folder
    kl0: int = 1200  # KL-0 phantoms (paper balance 3,185 : 2,126)
    kl2: int = 800  # KL-2 phantoms
    phantom_size: int = 128  # side of the written phantom PNGs, px
    preset: str = "cpu"  # KECAE preset
    supervisor_arch: str = "siamese"  # the classifier that supervises KECAE
    judge_arch: str = "small"  # the independent judge: whole-image CNN, other seed (resnet18 for real runs)
    classifier_epochs: int = 12  # most epochs per classifier (early stopping on validation)
    kecae_steps: int = 2000  # KECAE optimiser steps (batch 32): ~4-5 min on 2 cores
    kecae_lr: float = 1e-3  # 10x the paper's 1e-4: the demo has ~2k steps, the paper ~3M
    gen_pairs: int = 2000  # pairs to generate (2 images each)
    eval_pairs: int = 400  # test pairs for the evaluation
    seed: int = 0  # seeds everything
    device: str = "auto"  # auto / cpu / cuda


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    from kecae.evaluation.cli import format_headline
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate
    from kecae.generation import GenerateConfig, generate
    from kecae.models.presets import kecae_config, preset_training
    from kecae.phantoms import make_phantoms
    from kecae.report import write_report
    from kecae.training.classifier import train_classifier
    from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig
    from kecae.training.kecae_trainer import train_kecae

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    size = kecae_config(cfg.preset).image_size
    timings: dict[str, float] = {}

    def step(name: str, fn: Callable[[], Any]) -> Any:
        print(f"[demo] {name} ...", flush=True)
        t = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - t, 1)
        print(f"[demo] {name} done in {timings[name]:.1f} s", flush=True)
        return result

    step("phantoms", lambda: (data / "ground_truth.csv").exists() or make_phantoms(
        data, n_kl0=cfg.kl0, n_kl2=cfg.kl2, size=cfg.phantom_size, seed=cfg.seed,
        workers=min(4, os.cpu_count() or 1)))
    common = dict(data=str(data), image_size=size, epochs=cfg.classifier_epochs, device=cfg.device)
    sup = step("supervisor", lambda: train_classifier(ClassifierTrainConfig(
        out=str(out / "supervisor"), arch=cfg.supervisor_arch, seed=cfg.seed, **common)))
    judge = step("judge", lambda: train_classifier(ClassifierTrainConfig(
        out=str(out / "judge"), arch=cfg.judge_arch, seed=cfg.seed + 1, **common)))
    step("kecae", lambda: train_kecae(KECAETrainConfig(**{
        **preset_training(cfg.preset), "data": str(data), "out": str(out / "kecae"),
        "supervisor": str(out / "supervisor" / "best.pt"), "preset": cfg.preset,
        "max_steps": cfg.kecae_steps, "lr": cfg.kecae_lr, "num_pairs": 100_000, "seed": cfg.seed,
        "device": cfg.device, "sample_every": max(50, cfg.kecae_steps // 10),
        "ckpt_every": max(50, cfg.kecae_steps // 10)})))
    _drop_stale_generation(out / "generated", out / "kecae" / "checkpoints" / "last.pt")
    step("generate", lambda: generate(GenerateConfig(
        checkpoint=str(out / "kecae" / "checkpoints" / "last.pt"), data=str(data),
        out=str(out / "generated"), pairs=cfg.gen_pairs, seed=cfg.seed, device=cfg.device)))
    metrics = step("evaluate", lambda: evaluate(EvaluateConfig(
        run=str(out), pairs=cfg.eval_pairs, seed=cfg.seed, device=cfg.device)))
    metrics = write_sections(out, {
        "timings": timings, "config": {"demo": dataclasses.asdict(cfg)},
        "supervisor": {**metrics["supervisor"], "test_accuracy": sup["test_accuracy"]},
        "judge": {**metrics["judge"], "test_accuracy_at_training": judge["test_accuracy"]}})
    report = step("report", lambda: write_report(out))
    print("\n[demo] headline numbers (test pairs, see the report for sample sizes):")
    print(format_headline(metrics))
    print(f"\n[demo] report: {report}\n[demo] metrics: {out / 'metrics.json'}")
    return metrics


def _drop_stale_generation(folder: Path, checkpoint: Path) -> None:
    """The demo owns its generated folder: after KECAE trained further (a larger --kecae-steps),
    images from the old checkpoint are removed so the folder is rebuilt from the new one."""
    meta = folder / "generation.json"
    if meta.exists() and json.loads(meta.read_text()).get("checkpoint_sha256") != file_sha256(checkpoint):
        print(f"[demo] {folder} was made by an older checkpoint: generating it again", flush=True)
        shutil.rmtree(folder)


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(dataclass_from_args(DemoConfig, args))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole job on built-in phantoms (make demo)",
                       description=__doc__.split("\n\n")[0])
    add_dataclass_args(p, DemoConfig)
    p.set_defaults(func=cmd_demo)
