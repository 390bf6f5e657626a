"""`kecae study robustness --run DIR --seeds 3`: is the run's result what a new user gets?

A new user trains everything afresh: for each seed this study trains a supervisor, an
independent judge and KECAE with the run's recipe (their config.yaml files: the same
architectures, settings and budget; only the seed differs), generates the run's number of pairs
and evaluates them with :func:`kecae.evaluation.evaluate.evaluate` on the same test pairs (the
evaluation's pair seed is fixed, so seeds differ in their models, not in what they are asked).
Every metric of the targets, and the ablation's columns, is then summarised over the seeds as
mean ± sample std, beside its worst seed: the lowest value where higher is better, the highest
where lower is better. A recipe is judged by its worst seed, not its best.

The seed the run itself was made with reuses the run's own supervisor, judge and KECAE (they
are a fresh run of that seed; ``--no-reuse-run`` trains them again). Sub-runs live under
``DIR/studies/robustness/seed_<s>/`` (laid out like a run folder); finished ones are reused, a
killed one resumes from its last checkpoint, and ``--max-minutes`` stops between sub-runs (rerun
to continue). The summary is the section ``robustness`` of ``DIR/metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kecae.config import Range, load_yaml
from kecae.errors import KecaeError
from kecae.evaluation.summary import TARGETS
from kecae.files import file_sha256
from kecae.metrics_file import jsonable, read_metrics, write_section, write_sections
from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
    AblationColumn,
    Fidelity,
    GradeMatch,
    Quality,
    Robustness,
    RobustnessMetric,
    format_value,
    is_finite,
    lookup,
    mean_pm,
    read_targets,
)
from kecae.reuse import differences
from kecae.runfolder import RunLayout
from kecae.studies.ablation_rows import COLUMNS, TIMING
from kecae.studies.downstream import Ledger
from kecae.studies.fractions import find_or_generate
from kecae.studies.subruns import (
    ClassifierStudyConfig,
    Progress,
    at_budget,
    kecae_run_config,
    member_recipe,
    train_kecae_or_reuse,
    train_or_reuse,
)
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig, member_seed

# Checkpoints and the evaluation (torch, SciPy, scikit-learn) are imported when a seed runs: the
# command line imports this module for its settings and stays light.

log = logging.getLogger(__name__)

#: The section of a seed's metrics.json that records what its evaluation was made with.
SEED_SECTION = "robustness_seed"

#: A seed's time ledger: the seconds its sub-runs took, added up over the study's calls.
SECONDS = "seconds.json"

#: Columns summarised besides the targets: the ablation's (less its timings) and the
#: classifiers' accuracy on real test images.
EXTRA_COLUMNS: dict[str, AblationColumn] = {
    **{n: c for n, c in COLUMNS.items() if not c.metric.startswith(f"{TIMING}.")},
    **{
        f"{label} {arrow}": AblationColumn(GradeMatch.key(d, key), kind, better)
        for d, arrow in ((KL0_TO_KL2, "KL-0→KL-2"), (KL2_TO_KL0, "KL-2→KL-0"))
        for label, key, kind, better in (
            ("key transfer q25", "key_transfer_q25", "num", "high"),
            ("key transfer q75", "key_transfer_q75", "num", "info"),
            ("overshoot > 1.5", "overshoot_rate", "pct", "low"),
            ("JSW vs real, Wasserstein px", "jsw.wasserstein", "num", "low"),
            ("JSW of two real halves, Wasserstein px", "jsw_control.wasserstein", "num", "info"),
            ("JSW vs real, KS", "jsw.ks", "num", "low"),
            ("judge calls X′ its grade", "judge_intended", "pct", "info"),
            ("judge disagrees on X′", "failures.n_disagree", "int", "low"),
        )
    },
    "osteophyte removal X′2": AblationColumn(
        Fidelity.path("osteophyte_removal_rate"), "pct", "high"
    ),
    "edit mask area X′1": AblationColumn(Quality.path("edit_mask_area_kl0_to_kl2"), "pct", "info"),
    "edit mask area X′2": AblationColumn(Quality.path("edit_mask_area_kl2_to_kl0"), "pct", "info"),
    "judge test accuracy": AblationColumn("judge.test_accuracy", "pct", "info"),
    "supervisor test accuracy": AblationColumn("supervisor.test_accuracy", "pct", "info"),
}


@dataclass
class RobustnessConfig(ClassifierStudyConfig):
    """Fresh supervisor, judge and KECAE per seed with the run's recipe and budget."""

    value_ranges: ClassVar[dict[str, Range]] = {
        "max_minutes": (0, math.inf, True, "minutes >= 0 (0: no limit)"),
        "eval_seed": (0, 2**63 - 1, True, "a whole number >= 0"),
    }
    #: ClassifierStudyConfig fields the run's recipe sets here (not options).
    cli_exclude: ClassVar[tuple[str, ...]] = (
        "data",
        "image_size",
        "epochs",
        "patience",
        "batch_size",
        "lr",
        "patient_regex",
    )

    seeds: int = 3  # fresh runs of the recipe: seeds first_seed, first_seed + 1, ...
    eval_pairs: int | None = None  # test pairs per seed; default: the run's evaluation's
    eval_seed: int = 0  # seeds the test pairs: the same pairs for every seed
    gen_pairs: int | None = None  # pairs generated per seed; default: the run's generation's
    reuse_run: bool = True  # the run's own seed reuses the run's supervisor, judge and KECAE
    max_minutes: float = 0.0  # stop between sub-runs after this long (rerun to continue)
    gen_batch_size: int = 64  # pairs per generator forward pass


@dataclass(frozen=True)
class Recipe:
    """The run's three training configurations (seeds relative to KECAE's) and its counts."""

    supervisor: ClassifierTrainConfig
    judge: ClassifierTrainConfig
    kecae: KECAETrainConfig
    gen_pairs: int
    eval_pairs: int
    members: tuple[ClassifierTrainConfig, ...] = ()  # the ensemble's members 1.. (member_recipe)

    def member(self, k: int) -> ClassifierTrainConfig:
        """The recipe of supervisor-ensemble member ``k`` (0: the supervisor)."""
        return self.members[k - 1] if 1 <= k <= len(self.members) else self.supervisor

    def seeds_at(self, seed: int) -> tuple[int, int]:
        """(supervisor seed, judge seed) of study seed ``seed`` (as the run set them apart)."""
        return (
            seed + self.supervisor.seed - self.kecae.seed,
            seed + self.judge.seed - self.kecae.seed,
        )

    def summary(self) -> dict[str, Any]:
        model = {"preset": self.kecae.preset, **self.kecae.model}
        return {
            "supervisor": self.supervisor.arch,
            "judge": self.judge.arch,
            "classifier_epochs": self.supervisor.epochs,
            "kecae": model,
            "kecae_steps": self.kecae.max_steps,
            "batch_size": self.kecae.batch_size,
            "lr": self.kecae.lr,
            "gen_pairs": self.gen_pairs,
        }


def read_recipe(cfg: RobustnessConfig, layout: RunLayout) -> Recipe:
    """The run's recipe from its config.yaml files; a missing part names what to run first."""
    if not layout.root.is_dir():
        raise KecaeError(
            f"run folder {layout.root} does not exist: pass the folder `kecae demo` or "
            "`kecae run` wrote (e.g. runs/demo)"
        )
    kecae = kecae_run_config(layout.root)
    missing = [
        str(p)
        for p in (layout.supervisor.config, layout.judge.config, layout.kecae.config)
        if not p.is_file()
    ]
    if missing or kecae is None:
        raise KecaeError(
            f"{', '.join(missing)} missing: the robustness study retrains the run's "
            f"supervisor, judge and KECAE from their config.yaml; finish the run first "
            f"(`kecae demo --out {layout.root}` or `kecae run --out {layout.root} ...`)"
        )
    if not kecae.max_steps:
        raise KecaeError(f"{layout.kecae.config} sets no max_steps: the study needs the budget")
    gen = layout.generated.meta
    gen_pairs = cfg.gen_pairs or (
        int(json.loads(gen.read_text())["pairs"]) if gen.is_file() else 2000
    )
    n = lookup(read_metrics(layout.root), "exchange_success.n")
    supervisor = load_yaml(ClassifierTrainConfig, layout.supervisor.config)
    return Recipe(
        supervisor=supervisor,
        judge=load_yaml(ClassifierTrainConfig, layout.judge.config),
        kecae=kecae,
        gen_pairs=gen_pairs,
        eval_pairs=cfg.eval_pairs or (int(n) if n else 400),
        members=tuple(member_recipe(layout, k, supervisor) for k in range(1, kecae.supervisors)),
    )


# ---------------------------------------------------------------------------------------------
# One seed
# ---------------------------------------------------------------------------------------------


@dataclass
class _Models:
    supervisor: str
    judge: str
    kecae: Path


def _classifier(
    cfg: RobustnessConfig, base: ClassifierTrainConfig, out: Path, seed: int, cache: str
) -> str:
    ccfg = dataclasses.replace(
        base,
        out=str(out),
        seed=seed,
        device=cfg.device,
        cache_dir=cache,
        progress=cfg.progress,
        resume=True,
        fresh=False,
    )
    train_or_reuse(ccfg)
    return str(out / "best.pt")


def _own_models(recipe: Recipe, run: RunLayout) -> _Models | None:
    """The run's own models, when all three are finished (KECAE at its budget)."""
    from kecae.checkpoint import load_checkpoint

    if not (run.supervisor.finished and run.judge.finished and run.kecae.last.is_file()):
        return None
    if int(load_checkpoint(run.kecae.last, kind="kecae")["step"]) != recipe.kecae.max_steps:
        return None
    return _Models(str(run.supervisor.best), str(run.judge.best), run.kecae.last)


def _train(
    cfg: RobustnessConfig, recipe: Recipe, folder: RunLayout, seed: int, cache: str
) -> _Models:
    """Supervisor (and an ensemble's other members), judge and KECAE of one seed: trained,
    resumed or reused."""
    sup_seed, judge_seed = recipe.seeds_at(seed)
    sups = [
        _classifier(cfg, recipe.member(k), member.folder, member_seed(sup_seed, k), cache)
        for k, member in enumerate(map(folder.supervisor_member, range(recipe.kecae.supervisors)))
    ]
    judge = _classifier(cfg, recipe.judge, folder.judge.folder, judge_seed, cache)
    own = {"supervisor": sups[0], "supervisor_members": sups[1:], "seed": seed}
    own["out"] = str(folder.kecae.folder)
    kecae = recipe.kecae
    kcfg = at_budget(kecae, kecae.max_steps, cfg.device, cache, cfg.progress, **own)
    return _Models(sups[0], judge, train_kecae_or_reuse(kcfg))


def _evaluate(
    cfg: RobustnessConfig,
    recipe: Recipe,
    folder: RunLayout,
    models: _Models,
    cache: str,
) -> dict[str, Any]:
    """The seed's evaluation: reused when made with the same models, pairs and targets."""
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate

    want = {
        "kecae_sha256": file_sha256(models.kecae),
        "judge": models.judge,
        "supervisor": models.supervisor,
        "eval_pairs": recipe.eval_pairs,
        "eval_seed": cfg.eval_seed,
        "targets": [t.name for t in TARGETS],
    }
    done = read_metrics(folder.root)
    if "targets" in done and not differences(done.get(SEED_SECTION) or {}, want, fields=want):
        return done
    evaluate(
        EvaluateConfig(
            run=str(folder.root),
            kecae_checkpoint=str(models.kecae),
            judge=models.judge,
            supervisor=models.supervisor,
            data=recipe.kecae.data,
            patient_regex=recipe.kecae.patient_regex,
            pairs=recipe.eval_pairs,
            seed=cfg.eval_seed,
            device=cfg.device,
            cache_dir=cache,
            progress=cfg.progress,
        )
    )
    return write_sections(folder.root, {SEED_SECTION: want})


@dataclass
class _GenSettings:
    """What :func:`kecae.studies.fractions.find_or_generate` reads from a study's settings."""

    device: str
    cache_dir: str | None
    progress: bool
    gen_seed: int
    gen_batch_size: int


def _run_seed(
    cfg: RobustnessConfig, recipe: Recipe, run: RunLayout, seed: int, late: Any
) -> dict[str, Any] | None:
    """One seed from training to evaluation; None when ``late()`` stopped it between steps."""
    folder = run.studies.robustness_seed(seed)
    cache = cfg.cache_dir or str(run.root / ".kecae_cache")
    ledger = Ledger(folder.root / SECONDS)
    own = _own_models(recipe, run) if cfg.reuse_run and seed == recipe.kecae.seed else None
    models = own or _train(cfg, recipe, folder, seed, cache)
    ledger.add()
    if late():
        return None
    gen = _GenSettings(cfg.device, cache, cfg.progress, seed, cfg.gen_batch_size)
    candidates = [folder.generated] + ([run.generated] if own else [])
    find_or_generate(
        gen,
        models.kecae,
        recipe.kecae.data,
        recipe.gen_pairs,
        candidates,
        folder.generated,
        recipe.kecae.patient_regex,
    )
    ledger.add()
    if late():
        return None
    metrics = _evaluate(cfg, recipe, folder, models, cache)
    ledger.add()
    return metrics


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------


def run_robustness(cfg: RobustnessConfig) -> dict[str, Any] | None:
    """Every seed trained, generated and evaluated; writes and returns the ``robustness``
    section (None when ``max_minutes`` stopped the study first: rerun to continue)."""
    layout = RunLayout(Path(cfg.run).resolve())
    recipe = read_recipe(cfg, layout)
    t0 = time.perf_counter()

    def late() -> bool:
        return bool(cfg.max_minutes) and time.perf_counter() - t0 > 60 * cfg.max_minutes

    progress = Progress("robustness", cfg.seeds)
    per_seed: list[dict[str, Any]] = []
    for seed in cfg.seed_list:
        if late():
            return None
        metrics = _run_seed(cfg, recipe, layout, seed, late)
        if metrics is None:
            return None
        per_seed.append(metrics)
        met = sum(t.met is True for t in read_targets(metrics.get("targets")).values())
        progress.step(f"seed {seed}: {met} targets met")
    section = summarise(cfg, recipe, layout, per_seed)
    written = jsonable(section.to_dict())
    write_section(layout.root, Robustness.NAME, written)
    return written


def _worst(values: list[float | None], better: str) -> tuple[float | None, int | None]:
    """The worst value and its index: lowest where higher is better, highest where lower is."""
    finite = [(v, i) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if better not in ("high", "low") or not finite:
        return None, None
    v, i = (min if better == "high" else max)(finite)
    return v, i


def metric_over_seeds(
    name: str,
    metric: str,
    kind: str,
    better: str,
    values: list[Any],
    seeds: list[int],
    target: str | None = None,
    met: list[bool | None] | None = None,
) -> RobustnessMetric:
    """One metric's values over the seeds, summarised (non-numbers read as None)."""

    vals = [float(v) if is_finite(v) else None for v in values]
    finite = [v for v in vals if v is not None]
    mean = sum(finite) / len(finite) if finite else None
    std = None
    if len(finite) > 1 and mean is not None:
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
    worst, at = _worst(vals, better)
    if met and (
        lost := [i for i, (v, ok) in enumerate(zip(vals, met)) if ok is False and v is None]
    ):
        worst, at = None, lost[0]  # a missed target with no number (a −inf median): worst of all
    return RobustnessMetric(
        name=name,
        metric=metric,
        kind=kind,
        better=better,
        target=target,
        values=vals,
        mean=mean,
        std=std,
        worst=worst,
        worst_seed=None if at is None else seeds[at],
        met=met,
    )


def summarise(
    cfg: RobustnessConfig, recipe: Recipe, layout: RunLayout, per_seed: list[dict[str, Any]]
) -> Robustness:
    """The section: each target (by its name), then each extra column, over the seeds."""
    seeds = cfg.seed_list
    targets = [read_targets(m.get("targets")) for m in per_seed]
    rows: list[RobustnessMetric] = []
    for name, first in targets[0].items():
        got = [t.get(name) for t in targets]
        rows.append(
            metric_over_seeds(
                name,
                first.metric,
                "num",
                "high" if first.op == ">=" else "low",
                [g.value if g else None for g in got],
                seeds,
                target=first.target,
                met=[g.met if g else None for g in got],
            )
        )
    shown = {r.metric for r in rows}
    for name, col in EXTRA_COLUMNS.items():
        if col.metric in shown:
            continue
        values = [lookup(m, col.metric) for m in per_seed]
        rows.append(metric_over_seeds(name, col.metric, col.kind, col.better, values, seeds))
    met = [sum(t.met is True for t in ts.values()) for ts in targets]
    total = [sum(t.met is not None for t in ts.values()) for ts in targets]
    own_seed = recipe.kecae.seed if cfg.reuse_run and recipe.kecae.seed in seeds else None
    reused = own_seed is not None and _own_models(recipe, layout) is not None
    return Robustness(
        seeds=seeds,
        metrics=rows,
        targets_met=met,
        targets_total=total,
        worst_seed=seeds[min(range(len(met)), key=lambda i: met[i])],
        reused_seed=own_seed if reused else None,
        recipe=recipe.summary(),
        eval_pairs=recipe.eval_pairs,
        eval_seed=cfg.eval_seed,
        seconds=[Ledger(layout.studies.robustness_seed(s).root / SECONDS).seconds for s in seeds],
        note="per seed: a supervisor, a judge and KECAE trained afresh with the run's recipe "
        "and budget (only the seed differs), the run's number of generated pairs, and the same "
        "test pairs; mean ± sample std over the seeds, worst = the lowest value where higher "
        "is better and the highest where lower is better",
    )


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def format_robustness(section: dict[str, Any]) -> str:
    """The study as a Markdown table (rates in %): mean ± std, worst seed, per seed."""
    r = Robustness.from_dict(section)
    seeds = r.seeds
    lines = [
        f"Robustness over seeds {', '.join(map(str, seeds))} ({r.eval_pairs} test pairs each); "
        f"targets met per seed: {', '.join(map(str, r.targets_met))} "
        f"(of {', '.join(map(str, r.targets_total))}); worst seed {r.worst_seed}.",
        "",
        "| metric | target | mean ± std | worst (seed) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " |",
        "|---|---|---|---|" + "---|" * len(seeds),
    ]
    for m in r.metrics:
        worst = "—" if m.worst_seed is None else f"{format_value(m.worst, m.kind)} ({m.worst_seed})"
        cells = []
        for i, v in enumerate(m.values):
            ok = m.met[i] if m.met else None
            mark = " ✓" if ok is True else " ✗" if ok is False else ""
            cells.append(format_value(v, m.kind) + mark)
        lines.append(
            f"| {m.name} | {m.target or ''} | {mean_pm(m)} | {worst} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"
