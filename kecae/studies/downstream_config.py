"""The settings of `kecae study downstream` (:class:`DownstreamConfig`) and its ``--quick``
preset: which fractions, rows, classifiers and budgets the study trains (no torch: the command
line builds them before anything trains)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from kecae.config import Range, setting
from kecae.registry import CLASSIFIERS, LR_SCHEDULES
from kecae.studies.rows import BASELINES, CHECKS, COMPARED, TRAINING_SETS
from kecae.studies.subruns import ClassifierStudyConfig, check_archs

if TYPE_CHECKING:
    from kecae.studies.fractions import Fraction


@dataclass
class DownstreamConfig(ClassifierStudyConfig):
    """Table II at each training fraction, every row trained to the fraction's step budget."""

    value_ranges: ClassVar[dict[str, Range]] = {
        "train_fractions": (0, 1, False, "a fraction of the training patients in (0, 1]"),
        "check_fractions": (0, 1, False, "a fraction of the training patients in (0, 1]"),
        "gen_ratio": (0, math.inf, False, "a number > 0 (1.0: as many generated as real)"),
        "subsample_seed": (0, 2**63 - 1, True, "a whole number >= 0"),
        "steps": (1, math.inf, True, "whole numbers >= 1"),
        "filter_confidence": (0, 1, True, "a probability in [0, 1]"),
        "site_bias": (0, 1, True, "a probability in [0, 1], e.g. 0.85"),
        "budget_epochs": (0, math.inf, False, "a number > 0"),
        "max_minutes": (0, math.inf, True, "minutes >= 0 (0: no limit)"),
    }
    #: ClassifierStudyConfig fields that a step budget makes meaningless (not options here).
    cli_exclude: ClassVar[tuple[str, ...]] = ("epochs", "patience")

    archs: list[str] = setting(
        factory=lambda: ["small"], flag="--arch", choices=CLASSIFIERS
    )  # classifiers to train
    training_sets: list[str] = setting(
        factory=lambda: list(COMPARED), flag="--sets", choices=TRAINING_SETS
    )  # rows trained at every fraction
    check_sets: list[str] = setting(
        factory=lambda: list(CHECKS), flag="--check-sets", choices=TRAINING_SETS
    )  # rows trained at --check-fractions only (label check, options)
    check_arch: list[str] = setting(
        factory=list, flag="--check-arch", choices=CLASSIFIERS
    )  # the --arch classifiers that train --check-sets (default: every one)
    train_fractions: list[float] = setting(
        factory=lambda: [0.05, 0.1, 0.25, 1.0], flag="--train-fraction"
    )  # shares of the real training patients
    check_fractions: list[float] = setting(
        factory=lambda: [0.05, 0.25], flag="--check-fractions"
    )  # fractions that also train --check-sets
    seeds: int = 5  # repetitions; seed s gives every row the same initial weights
    batch_size: int = 32  # classifier batch (real and generated images together)
    steps: list[int] = setting(factory=list, flag="--steps")  # budget per fraction (one: all)
    budget_epochs: float = 40.0  # default budget: epochs of T's balanced set, within the bounds
    min_steps: int = 500  # the default budget's lower bound
    max_steps: int = 2000  # the default budget's upper bound
    lr_schedule: str = setting("cosine", choices=LR_SCHEDULES)  # per row
    gen_ratio: float = 1.0  # generated per real image in T''s batches and pool
    filter_confidence: float = 0.9  # T'confirmed: the supervisor's probability of the label
    site_bias: float | None = None  # the shortcut regime: phantoms with sites (e.g. 0.85)
    budget_check: bool = True  # T of the first seed also at twice the budget
    max_minutes: float = 0.0  # stop between sub-runs after this long (rerun to continue)
    finished_only: bool = False  # train nothing: the section from the finished sub-runs
    quick: bool = False  # a small version: 2 fractions, 2 seeds, 300 steps, 5 rows
    subsample_seed: int = 0  # seeds which patients a fraction keeps (smaller within larger)
    kecae_steps: int | None = None  # KECAE steps of a fraction's generator; default: the run's
    gen_seed: int = 0  # seeds the generated pairs
    gen_batch_size: int = 64  # pairs per generator forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        check_archs(self.archs)
        extra = [a for a in self.check_arch if a not in self.archs]
        if extra:
            raise ValueError(
                f"--check-arch {extra} is not among --arch {self.archs}: name classifiers "
                "that the study trains, or leave --check-arch out (every --arch)"
            )
        for flag, names in (("--sets", self.training_sets), ("--check-sets", self.check_sets)):
            bad = [s for s in names if s not in TRAINING_SETS]
            if bad:
                raise ValueError(
                    f"unknown training set(s) {bad} for {flag}: choose from {list(TRAINING_SETS)}"
                )
        if not self.training_sets:
            raise ValueError(f"--sets is empty: choose from {list(TRAINING_SETS)}")
        for flag, fractions in (
            ("--train-fraction", self.train_fractions),
            ("--check-fractions", self.check_fractions),
        ):
            if any(not 0 < f <= 1 for f in fractions):
                raise ValueError(
                    f"{flag} takes shares of the training patients in (0, 1], e.g. 0.05 0.25 "
                    f"1.0; got {fractions}"
                )
        if not self.train_fractions:
            raise ValueError("--train-fraction is empty: pass e.g. 0.05 0.25 1.0")
        if not self.gen_ratio > 0:
            raise ValueError(f"--gen-ratio must be > 0, got {self.gen_ratio}")
        if self.steps and len(self.steps) not in (1, len(self.fraction_list)):
            raise ValueError(
                f"--steps takes one budget for every fraction or one per fraction "
                f"({len(self.fraction_list)}), got {self.steps}"
            )

    @property
    def fraction_list(self) -> list[float]:
        """The distinct fractions, smallest first."""
        return sorted(set(self.train_fractions) | set(self.check_fractions))

    def rows_at(self, fraction: float, arch: str | None = None) -> list[str]:
        """The rows ``arch`` trains at ``fraction`` (any classifier's when None), in table
        order."""
        wanted = set(self.training_sets if fraction in self.train_fractions else [])
        checks = arch is None or not self.check_arch or arch in self.check_arch
        if fraction in self.check_fractions and checks:
            wanted |= set(self.check_sets)
            if set(self.check_sets) - set(BASELINES):  # what the checks are compared with
                wanted |= set(BASELINES)
        return [n for n in TRAINING_SETS if n in wanted]

    def part(self, name: str) -> str | None:
        """The generated part a row draws from (see kecae.studies.fractions)."""
        ts = TRAINING_SETS[name]
        if ts.pool is not None:
            return ts.pool
        if ts.mix is None:
            return None
        return f"{ts.mix}_{ts.ratio or self.gen_ratio:g}"

    def budget(self, fraction: Fraction) -> int:
        """The fraction's step budget: given, else budget_epochs of T's balanced set within
        [min_steps, max_steps]."""
        if self.steps:
            return self.steps[
                0
                if len(self.steps) == 1
                else self.fraction_list.index(fraction.info.train_fraction)
            ]
        steps = math.ceil(self.budget_epochs * fraction.n_balanced / self.batch_size)
        return int(min(max(steps, self.min_steps), self.max_steps))


def quick_settings(cfg: DownstreamConfig) -> DownstreamConfig:
    """``--quick``: fractions 0.25 and 1.0, 2 seeds, 300 steps, T, T+classic, T', T'+classic and
    the label check X' at 1.0, KECAE at most 500 steps (11 minutes on one core on the demo run)."""
    return dataclasses.replace(
        cfg,
        train_fractions=[0.25, 1.0],
        check_fractions=[1.0],
        training_sets=["T", "T+classic", "T'", "T'+classic"],
        check_sets=["X'"],
        seeds=2,
        steps=[300],
        budget_check=False,
        kecae_steps=cfg.kecae_steps or 500,
        quick=False,
    )
