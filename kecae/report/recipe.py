"""How the run was made: the KECAE options from its config.yaml, the training curves and the
configuration, timings and other entries of metrics.json.
"""

from __future__ import annotations

import json
from typing import Any

from kecae.config import load_yaml
from kecae.errors import KecaeError
from kecae.report import figures
from kecae.report.format import fmt, number, words
from kecae.report.load import RunData
from kecae.report.missing import missing_note, problem_notes
from kecae.report.parts import escape, figure, note, table
from kecae.results import (
    CONFIG_SECTION,
    EVALUATION_SECTION,
    TARGETS_SECTION,
    TIMINGS_SECTION,
    Ablation,
    Downstream,
    DownstreamShortcut,
    ExchangeSuccess,
    Fidelity,
    JudgeSummary,
    LambdaGrid,
    Oracle,
    Plausibility,
    Quality,
    SamplingSize,
    Separability,
    SupervisorSummary,
    Tune,
)
from kecae.training.config import MEMBER_SEED_STRIDE, ClassifierTrainConfig, KECAETrainConfig

# The model presets (torch) are imported when a run's KECAE configuration is shown: the report
# renders without torch otherwise.

#: how the recipe table describes a pooled key
_KEY_POOL_TEXT = {
    "mean": " (position-free: averaged over the grid)",
    "max": " (position-free: each channel's largest value over the grid)",
    "attn": " (position-free: a learned softmax weight per place)",
}

#: Loss weights of KECAETrainConfig shown when they are switched on: field -> what it weighs.
_EXTRA_TERMS = {
    "lambda_disp": "mean squared displacement",
    "lambda_disp_l1": "mean displacement length",
    "lambda_smooth": "displacement smoothness",
    "lambda_fold": "fold penalty",
    "lambda_edit": "L1 of the residual edit",
    "lambda_cycle": "cycle (re-encoding X′ gives back its latents)",
    "lambda_same": "same-grade exchange changes little",
    "lambda_key_cls": "grade probe on hK",
    "lambda_nonkey_adv": "adversarial grade probe on hN",
}


def _exchange_text(model: Any) -> str:
    if model.exchange == "warp":
        bound = (
            f"its change from X1's own field ≤ {model.warp_max_px:g} px"
            if getattr(model, "warp_bound", "field") == "change"
            else f"≤ {model.warp_max_px:g} px"
        )
        text = (
            f"warp: X′1 is X1 moved along a smooth displacement field decoded from hN1 + hK2 "
            f"({bound}, {model.warp_grid}×{model.warp_grid} grid)"
        )
        if model.warp_residual:
            text += f", plus a residual blurred by σ {model.residual_blur_px:g} px"
        return text
    if model.exchange == "residual":
        return (
            "residual: X′1 = X1 + blur(D(hN1 + hK2) − D(hN1 + hK1)), "
            f"σ {model.residual_blur_px:g} px"
        )
    return "decoded: X′1 = D(hN1 + hK2), the paper's"


def _member_views(members: list[str], base: Any) -> str:
    """``; member k sees ...`` for the members whose classifier sees less than the whole image
    (the Siamese's patches moved in from the edges: their config.yaml's ``margin_fraction``)."""
    views = []
    for k, member in enumerate(members, start=1):
        config = (base / member).parent / "config.yaml"
        try:
            model = load_yaml(ClassifierTrainConfig, config).model or {}
        except (OSError, KecaeError, ValueError, TypeError):
            continue
        if model.get("margin_fraction"):
            views.append(
                f"member {k} sees only the inner view (its patches start "
                f"{float(model['margin_fraction']):.0%} of the side in from the edges, so not "
                "the outer joint margins where spurs grow)"
            )
    return "".join(f"; {v}" for v in views)


def generator_section(run: RunData) -> str:
    """The KECAE options this run trained: preset, model and loss, as its config.yaml gives them."""
    from kecae.models.presets import kecae_config

    path = run.layout.kecae.config
    rel = run.rel(path)
    if not path.is_file():
        return missing_note(f"the KECAE configuration ({rel})", "train", run)
    try:
        cfg = load_yaml(KECAETrainConfig, path)
        model = kecae_config(cfg.preset, **dict(cfg.model or {}))
    except (KecaeError, ValueError, TypeError) as e:
        return note(f"Could not read <code>{escape(rel)}</code> ({escape(str(e))}).")
    c, h, w = model.latent_shape
    kc, kh, kw = model.key_shape
    sup = {
        "donor": "the supervisor's call on the donor",
        "donor_logit": "the supervisor's logits on the donor, a Huber match",
    }.get(cfg.sup_target, "the donor's grade")
    loss = [
        f"J_{'L1' if cfg.recon == 'l1' else 'MSE'}",
        f"λ1 = {cfg.lambda_sup:g} · J_SUP (target: {sup})",
    ]
    if cfg.lambda_lda:
        loss.append(f"λ2 = {cfg.lambda_lda:g} · J_LDA ({cfg.lda_mode})")
    loss += [f"{getattr(cfg, k):g} · {what}" for k, what in _EXTRA_TERMS.items() if getattr(cfg, k)]
    if cfg.sup_perturb:
        loss.append(f"X′ shifted/blurred by ≤ {cfg.sup_perturb:g} px before the supervisor")
    if cfg.supervisors > 1:
        loss[1] = (
            f"λ1 = {cfg.lambda_sup:g} · J_SUP, the mean over {cfg.supervisors} frozen "
            f"supervisors trained from seeds {MEMBER_SEED_STRIDE} apart (target: {sup})"
            f"{_member_views(cfg.supervisor_members, path.parent)}; the evaluation's "
            "supervisor is member 0, the run's supervisor/"
        )
    rows = [
        ["preset", escape(cfg.preset)],
        ["image, channels", f"{model.image_size} px, {model.channels[0]}…{model.channels[-1]}"],
        ["latent hN", f"{c}×{h}×{w} ({model.depth} stride-2 blocks)"],
        [
            "key hK",
            f"{kc}×{kh}×{kw}" + _KEY_POOL_TEXT.get(model.key_pool, ""),
        ],
        ["exchange", escape(_exchange_text(model))],
        ["loss", escape(" + ".join(loss))],
        [
            "budget",
            (f"{cfg.max_steps} steps" if cfg.max_steps else f"{cfg.epochs} epochs")
            + f" × {cfg.batch_size} pairs, Adam lr {cfg.lr:g}"
            + (
                "; both images of each pair augmented (flip, rotation, intensity)"
                if cfg.augment_pairs
                else ""
            ),
        ],
    ]
    return table(["Option", "Value"], rows, "generator") + note(
        f"From <code>{escape(rel)}</code>; docs/ablation.md measures each option against the "
        "paper's model on the same budget."
    )


def training_section(run: RunData) -> str:
    rel = run.rel(run.layout.kecae.log)
    if run.train_log is None:
        return problem_notes(run, rel) or missing_note(f"KECAE training log ({rel})", "train", run)
    uri, constant = figures.training_figure(run.train_log)
    if uri is None:
        return note(f"{rel} has no numeric column to plot yet.")
    n = len(run.train_log.get("step", next(iter(run.train_log.values()))))
    cap = (
        f"Every logged term against the optimisation step ({n} log rows); loss terms on a "
        "log scale. J = J_MSE + λ1·J_SUP + λ2·J_LDA: J_MSE should fall steadily, J_SUP "
        "falls as the exchanged images take the donor's class, J_LDA falls as the key and "
        "non-key vectors separate. A flat or rising term means that part is not learning."
    )
    if constant:
        cap += f" Constant, not plotted: {', '.join(constant)}."
    return figure(uri, "Training curves", escape(cap))


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _entries(d: dict[str, Any], options: bool = False) -> list[list[str]]:
    """(label, JSON value) rows of a nested mapping: each key in words (``reader_study.
    fleiss_kappa`` -> ``Reader study · Fleiss kappa``); with ``options`` the settings of
    ``kecae run`` / ``kecae demo`` (``run.kecae_steps``) by their option (``--kecae-steps``)."""
    rows = []
    for k, v in _flatten(d):
        parts = k.split(".")
        if options and len(parts) == 2 and parts[0] in ("run", "demo"):
            label = f"<code>--{escape(parts[1].replace('_', '-'))}</code>"
        else:
            label = escape(" · ".join(words(p) for p in parts))
        rows.append([label, escape(json.dumps(v) if not isinstance(v, str) else v)])
    return rows


#: Sections laid out by their own part of the page; others are listed as raw entries.
KNOWN_SECTIONS = {
    Oracle.NAME,
    Separability.NAME,
    ExchangeSuccess.NAME,
    Plausibility.NAME,
    Ablation.NAME,
    JudgeSummary.NAME,
    SupervisorSummary.NAME,
    Fidelity.NAME,
    Quality.NAME,
    Downstream.NAME,
    DownstreamShortcut.NAME,
    LambdaGrid.NAME,
    SamplingSize.NAME,
    Tune.NAME,
    TARGETS_SECTION,
    CONFIG_SECTION,
    TIMINGS_SECTION,
    EVALUATION_SECTION,
}


def configuration_section(run: RunData) -> str:
    parts = []
    config = run.section(CONFIG_SECTION)
    if config:
        parts.append(table(["Setting", "Value"], _entries(config, options=True), "config"))
    else:
        parts.append(missing_note("the configuration (metrics.json: config)", "evaluate", run))
    evaluated = run.section(EVALUATION_SECTION).get("settings")
    if isinstance(evaluated, dict):
        rows = [
            [escape(words(k)), escape(fmt(v, "num") if number(v) is not None else v)]
            for k, v in evaluated.items()
            if v is not None
        ]
        parts.append(
            "<h3>Evaluated with</h3>"
            + table(["Setting", "Value"], rows, "config")
            + note(
                "<code>kecae evaluate --run</code> with other settings writes beside these "
                "numbers, to <code>evaluations/</code>; with the same ones it re-uses them."
            )
        )
    other = {k: v for k, v in run.metrics.items() if k not in KNOWN_SECTIONS}
    if other:  # sections this page does not lay out yet are still shown, never dropped
        parts.append(
            "<h3>Other entries of metrics.json</h3>"
            + table(["Entry", "Value"], _entries(other), "config")
        )
    timings = run.section(TIMINGS_SECTION)
    if timings:
        rows = [[escape(k), fmt(v, "sec")] for k, v in timings.items()]
        total = sum(number(v) or 0.0 for v in timings.values())
        rows.append(["<b>total</b>", f"<b>{fmt(total, 'sec')}</b>"])
        parts.append("<h3>Timings</h3>" + table(["Step", "Wall time"], rows, "timings"))
    return "".join(parts)
