"""`kecae tune --run DIR`: search the KECAE settings the paper chose by hand (λ1, λ2) and the
options of the exchange that matter, with Optuna's TPE sampler, on a validation objective.

Every trial trains one KECAE with the run's recipe (its ``kecae/config.yaml``: data, frozen
supervisor, preset, model, loss, batch, seed) and the trial's settings, for the same number of
steps, in its own folder ``DIR/studies/tune/trials/<settings>/``, then evaluates it on
VALIDATION pairs with :func:`kecae.evaluation.evaluate.evaluate` (``split="val"``). The
objective (:data:`OBJECTIVE`) is the mean of the fair exchange metrics and the separability,
each in [0, 1]. The study lives in Optuna's SQLite storage ``DIR/studies/tune/optuna.sqlite3``:
a rerun continues it (finished trials are kept; a trial cut short is run again and its KECAE
resumes), and ``--trials`` counts the finished trials wanted in all.

Afterwards the best trial, the run's settings with the paper's λ (1e-2, 1e-3) and the run's own
settings, each trained for the same steps, are evaluated on the TEST split; the section ``tune``
of ``DIR/metrics.json`` holds the trials and that comparison.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kecae.config import setting
from kecae.errors import KecaeError
from kecae.files import file_sha256
from kecae.metrics_file import jsonable, read_metrics, write_section, write_sections
from kecae.paths import store_path, store_paths
from kecae.registry import SEARCH_SPACE, TUNE_PARAMS
from kecae.results import (
    Tune,
    TuneFinal,
    TuneTrial,
    read_targets,
)
from kecae.reuse import check_same, differences
from kecae.runfolder import RunLayout
from kecae.studies.subruns import (
    KECAEStudyConfig,
    at_budget,
    kecae_run_config,
    resolve_data,
    run_recipe,
    train_kecae_or_reuse,
)
from kecae.studies.tune_objective import OBJECTIVE, objective_terms, tune_objective
from kecae.studies.tune_table import params_text
from kecae.training.config import KECAE_MAY_CHANGE, KECAETrainConfig, kecae_model_config

if TYPE_CHECKING:
    import optuna

# KECAE, checkpoints and the evaluation (torch, SciPy, scikit-learn) are imported when a trial
# runs: the command line imports this module for its settings and stays light.


log = logging.getLogger(__name__)


#: The paper's loss weights (λ1, λ2).
PAPER_LAMBDA = {"lambda_sup": 1e-2, "lambda_lda": 1e-3}


@dataclass
class TuneConfig(KECAEStudyConfig):
    """Optuna's TPE search of λ1, λ2, lr and the exchange options on a validation objective."""

    trials: int = 10  # finished trials wanted in all (a rerun continues up to this many)
    params: list[str] = setting(
        factory=lambda: list(TUNE_PARAMS), flag="--param", choices=TUNE_PARAMS
    )  # settings to search (those that apply to the run's model)
    steps: int | None = None  # optimiser steps per trial and final row; default: the run's
    startup_trials: int = 4  # random trials before TPE models the results
    start_from_run: bool = True  # the first trial takes the run's own settings (where in range)
    seed: int = 0  # seeds the TPE sampler
    eval_pairs: int = 200  # validation pairs per trial (and test pairs per final row)
    separability_images: int = 400  # most images per SVM (5-fold)
    compare: bool = True  # train and test the best trial against the paper's λ and the run's
    supervisor: str | None = None  # default: the one the run's KECAE was trained with
    judge: str | None = None  # default: DIR/judge/best.pt

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [p for p in self.params if p not in SEARCH_SPACE]
        if not self.params or bad:
            raise ValueError(
                f"unknown or missing --param {bad or self.params}: choose from {list(SEARCH_SPACE)}"
            )
        for name in ("trials", "startup_trials", "eval_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")


@dataclass(frozen=True)
class _Inputs:
    """What every trial shares: the run's recipe at the tuning budget, and the judge."""

    base: KECAETrainConfig
    judge: str
    space: list[str]  # the searched settings that apply to the run's model


def run_tune(cfg: TuneConfig) -> dict[str, Any]:
    """Run (or continue) the study, then the final comparison; write and return ``tune``."""
    import optuna

    run = Path(cfg.run).resolve()
    layout = RunLayout(run)
    folder = layout.studies.tune()
    inputs = _inputs(cfg, layout)

    # the study: created, or continued when it was made with the same settings
    folder.folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = _finished(folder.storage)
    study = optuna.create_study(
        study_name="kecae-tune",
        storage=f"sqlite:///{folder.storage}",
        load_if_exists=True,
        direction="maximize",
        # seeded; a continued study reseeds with the number of finished trials, so a rerun
        # draws the same new trials every time it continues from the same point
        sampler=optuna.samplers.TPESampler(
            seed=cfg.seed + done, n_startup_trials=cfg.startup_trials
        ),
    )
    settings = store_paths(_study_settings(cfg, inputs), folder.folder)
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
    else:
        check_same(
            folder.folder,
            stored,
            settings,
            what="a tuning study",
            fix=f"pass the same options (more --trials continue it), or delete {folder.folder} "
            "to tune afresh",
        )
    _requeue_cut_short(study)
    if cfg.start_from_run and not study.trials:
        start = run_settings(inputs)
        if start:
            study.enqueue_trial(start)

    # the trials
    todo = cfg.trials - _complete(study)
    if todo > 0:
        log.info("[tune] %d trial(s) to run (%d finished)", todo, _complete(study))
        study.optimize(lambda t: _objective(t, cfg, inputs, layout), n_trials=todo)

    # the table: every trial, the best one, and the final comparison on the test split
    trials = [_trial_row(t, run) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    final = _final(cfg, inputs, layout, best) if cfg.compare and best is not None else []
    section = Tune(
        objective=OBJECTIVE,
        sampler=f"Optuna {optuna.__version__} TPESampler (seed {cfg.seed}, "
        f"{cfg.startup_trials} random start-up trials)",
        seed=cfg.seed,
        steps=inputs.base.max_steps,
        batch_size=inputs.base.batch_size,
        eval_pairs=cfg.eval_pairs,
        search_space={name: SEARCH_SPACE[name].describe() for name in inputs.space},
        trials=trials,
        best_trial=best.number if best else None,
        best_params=dict(best.params) if best else {},
        final=final,
        storage=store_path(folder.storage, run),
        note=(
            "Trials are evaluated on validation pairs (the plausibility rule is calibrated on "
            "validation images, so there its real-image control equals the nominal level by "
            "construction); the final rows are trained for the same steps and evaluated on "
            "the test split, which no choice here has seen."
        ),
    )
    written = jsonable(section.to_dict())
    write_section(run, Tune.NAME, written)
    return written


def _inputs(cfg: TuneConfig, layout: RunLayout) -> _Inputs:
    """The run's KECAE recipe at the tuning budget, the judge, and the settings to search."""

    base, steps = run_recipe(
        layout, "kecae tune starts from the run's KECAE recipe", cfg.steps, "--steps"
    )
    supervisor = cfg.supervisor or base.supervisor or str(layout.supervisor.best)
    judge = cfg.judge or str(layout.judge.best)
    for what, path in (("supervisor", supervisor), ("judge", judge)):
        if not Path(path).is_file():
            raise KecaeError(
                f"the {what} {path} does not exist: run `kecae demo --out {layout.root}` "
                f"first, or pass --{what}"
            )
    base = at_budget(
        base,
        steps,
        cfg.device,
        cfg.cache_dir,
        cfg.progress,
        data=resolve_data(cfg.data, layout.root),
        supervisor=str(Path(supervisor).resolve()),
    )
    warp = kecae_model_config(base).exchange == "warp"
    space = [p for p in cfg.params if warp or not SEARCH_SPACE[p].warp_only]
    if not space:
        raise KecaeError(
            f"none of --param {cfg.params} applies to the run's model (they need a warp "
            "exchange): add --param lambda_sup lambda_lda lr"
        )
    return _Inputs(base=base, judge=str(Path(judge).resolve()), space=space)


def run_settings(inputs: _Inputs) -> dict[str, Any]:
    """The run's own value of each searched setting that lies in the search space: the first
    trial of a new study, so the search starts where the run already is (a setting outside its
    range is drawn by the sampler)."""

    model = kecae_model_config(inputs.base)
    values = {
        name: getattr(model if SEARCH_SPACE[name].where == "model" else inputs.base, name)
        for name in inputs.space
    }
    return {name: v for name, v in values.items() if SEARCH_SPACE[name].contains(v)}


def _study_settings(cfg: TuneConfig, inputs: _Inputs) -> dict[str, Any]:
    """What a continued study must share with the one in storage."""
    recipe = {k: v for k, v in dataclasses.asdict(inputs.base).items() if k not in KECAE_MAY_CHANGE}
    return jsonable(
        {
            **recipe,
            "steps": inputs.base.max_steps,
            "params": inputs.space,
            "eval_pairs": cfg.eval_pairs,
            "separability_images": cfg.separability_images,
            "judge": inputs.judge,
            "seed": cfg.seed,
            "startup_trials": cfg.startup_trials,
            "start_from_run": cfg.start_from_run,
        }
    )


def _finished(storage: Path) -> int:
    """Finished trials in an existing storage (0 when there is none yet)."""
    import optuna

    if not storage.is_file():
        return 0
    try:
        study = optuna.load_study(study_name="kecae-tune", storage=f"sqlite:///{storage}")
    except KeyError:  # the file exists but holds no study yet
        return 0
    return _complete(study)


def _complete(study: optuna.Study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _requeue_cut_short(study: optuna.Study) -> None:
    """Trials a killed run left RUNNING are marked failed and queued again with the same
    settings: their folder (named by the settings) resumes its KECAE."""
    import optuna

    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        if t.params:
            study.enqueue_trial(dict(t.params))
        log.info("[tune] trial %d was cut short: queued again", t.number)


def trial_key(params: dict[str, Any]) -> str:
    """The folder name of a trial: a short hash of its settings (a repeated trial resumes)."""
    text = json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True)
    return "t_" + hashlib.sha256(text.encode()).hexdigest()[:10]


def trial_config(
    base: KECAETrainConfig, params: dict[str, Any], out: Path | str
) -> KECAETrainConfig:
    """The run's recipe with a trial's settings: model fields into ``model``, the rest as
    training fields."""
    model = dict(base.model)
    train: dict[str, Any] = {}
    for name, value in params.items():
        (model if SEARCH_SPACE[name].where == "model" else train)[name] = value
    return dataclasses.replace(base, model=model, out=str(out), **train)


def _objective(trial: optuna.Trial, cfg: TuneConfig, inputs: _Inputs, layout: RunLayout) -> float:
    params = {name: SEARCH_SPACE[name].suggest(trial, name) for name in inputs.space}
    key = trial_key(params)
    trial.set_user_attr("folder", key)
    trial_folder = layout.studies.tune().trial(key)
    kcfg = trial_config(inputs.base, params, trial_folder.kecae.folder)
    try:
        _check_model(kcfg)
    except KecaeError as exc:  # a combination the model refuses: a failed trial, not a stop
        trial.set_user_attr("error", str(exc))
        log.warning("[tune] trial %d: %s", trial.number, exc)
        return math.nan
    metrics = _trained_and_evaluated(cfg, inputs, kcfg, trial_folder, "val")
    terms = objective_terms(metrics)
    value = tune_objective(metrics)
    trial.set_user_attr("terms", terms)
    log.info(
        "[tune] trial %d: objective %.4f (%s)",
        trial.number,
        value,
        params_text(params),
    )
    return value


def _check_model(kcfg: KECAETrainConfig) -> None:
    from kecae.models.autoencoder import KECAE

    try:
        KECAE(kecae_model_config(kcfg))
    except (ValueError, TypeError) as exc:
        raise KecaeError(f"the model refuses these settings: {exc}") from exc


def _trained_and_evaluated(
    cfg: TuneConfig, inputs: _Inputs, kcfg: KECAETrainConfig, folder: RunLayout, split: str
) -> dict[str, Any]:
    """Train (or resume, or reuse) ``kcfg`` in ``folder`` and evaluate it on ``split`` there;
    a folder already evaluated with the same settings is read back."""
    checkpoint = train_kecae_or_reuse(kcfg)
    return _evaluated(cfg, inputs, checkpoint, folder, split)


def _evaluated(
    cfg: TuneConfig, inputs: _Inputs, checkpoint: Path, folder: RunLayout, split: str
) -> dict[str, Any]:
    from kecae.evaluation.evaluate import EvaluateConfig, evaluate

    want = {
        "split": split,
        "pairs": cfg.eval_pairs,
        "separability_images": cfg.separability_images,
        "judge": inputs.judge,
        "checkpoint_sha256": file_sha256(checkpoint),
    }
    done = read_metrics(folder.root)
    if "targets" in done and not differences(done.get("tune_evaluation") or {}, want):
        return done
    evaluate(
        EvaluateConfig(
            run=str(folder.root),
            kecae_checkpoint=str(checkpoint),
            judge=inputs.judge,
            supervisor=inputs.base.supervisor,
            data=inputs.base.data,
            patient_regex=inputs.base.patient_regex,
            pairs=cfg.eval_pairs,
            separability_images=cfg.separability_images,
            split=split,
            seed=0,
            device=cfg.device,
            progress=cfg.progress,
            cache_dir=cfg.cache_dir,
        )
    )
    return write_sections(folder.root, {"tune_evaluation": want})


def _trial_row(t: optuna.trial.FrozenTrial, run: Path) -> TuneTrial:
    key = t.user_attrs.get("folder")
    folder = RunLayout(run).studies.tune().trial(key).root if key else None
    return TuneTrial(
        number=t.number,
        state=t.state.name,
        params=dict(t.params),
        objective=t.value if t.value is not None and math.isfinite(t.value) else None,
        terms=dict(t.user_attrs.get("terms") or {}),
        folder=store_path(folder, run) if folder else None,
    )


def _final(
    cfg: TuneConfig, inputs: _Inputs, layout: RunLayout, best: optuna.trial.FrozenTrial
) -> list[TuneFinal]:
    """The best trial, the paper's λ and the run's own settings, each trained for the same
    steps, evaluated on validation (the objective) and on test."""
    tune = layout.studies.tune()
    run_row = {k: getattr(inputs.base, k) for k in PAPER_LAMBDA}
    paper_is_run = not differences(run_row, PAPER_LAMBDA)
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("best", f"the best trial (#{best.number}) on the validation objective", dict(best.params)),
        (
            "run",
            "the run's own settings (its kecae/config.yaml)"
            + (", which use the paper's λ" if paper_is_run else ""),
            {},
        ),
    ]
    if not paper_is_run:
        rows.insert(1, ("paper", "the run's settings with the paper's λ1 = 1e-2, λ2 = 1e-3", {}))
    out = []
    for name, description, params in rows:
        final = tune.final(name)
        if name == "best":
            trial_folder = tune.trial(best.user_attrs["folder"])
            checkpoint, val = trial_folder.kecae.last, read_metrics(trial_folder.root)
        else:
            changed: dict[str, Any] = dict(PAPER_LAMBDA) if name == "paper" else {}
            kcfg = dataclasses.replace(inputs.base, out=str(final.kecae.folder), **changed)
            checkpoint = _own_kecae(kcfg, layout) or train_kecae_or_reuse(kcfg)
            params = changed
            val = _evaluated(cfg, inputs, checkpoint, final.val, "val")
        test = _evaluated(cfg, inputs, checkpoint, final.test, "test")
        met = [t.met for t in read_targets(test.get("targets")).values()]
        out.append(
            TuneFinal(
                name=name,
                description=description,
                params=params,
                val_objective=tune_objective(val),
                val_terms=dict(objective_terms(val)),
                test_objective=tune_objective(test),
                test_terms=dict(objective_terms(test)),
                targets_met=sum(m is True for m in met),
                targets_total=len(met),
                checkpoint=store_path(checkpoint, layout.root),
            )
        )
        log.info(
            "[tune] %s: validation objective %.4f, test objective %.4f",
            name,
            out[-1].val_objective,
            out[-1].test_objective,
        )
    return out


def _own_kecae(kcfg: KECAETrainConfig, layout: RunLayout) -> Path | None:
    """The run's own KECAE checkpoint when ``kcfg`` is its settings at its number of steps."""
    from kecae.checkpoint import load_checkpoint

    base = kecae_run_config(layout.root)
    last = layout.kecae.last
    if base is None or not last.is_file():
        return None
    if differences(dataclasses.asdict(base), dataclasses.asdict(kcfg), ignore=KECAE_MAY_CHANGE):
        return None
    return last if int(load_checkpoint(last, kind="kecae")["step"]) == kcfg.max_steps else None
