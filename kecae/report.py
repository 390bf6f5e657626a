"""The run report: one self-contained HTML page built from what the pipeline left in a run folder.

Run-folder contract (every file optional; a missing one gives a "not computed" note):

- ``metrics.json``: nested dict of sections (``separability``, ``exchange_success``, ``judge``,
  ``supervisor``, ``fidelity``, ``quality``, ``downstream``, ``lambda_grid``, ``sampling_size``,
  ``targets``, ``config``, ``timings``). A number ``k`` may have ``k_std``, ``k_n``, ``k_ci_low``,
  ``k_ci_high`` siblings; a section's ``n`` is its sample size. Rates and accuracies are
  fractions in [0, 1] and are shown as percentages.
- ``kecae/log.csv``: the KECAE training log (``step`` plus one column per logged scalar).
- ``eval/examples.npz``: ``x1, x1_ex, x2, x2_ex, x1_hat, x2_hat`` (K, S, S) in [-1, 1] and
  optionally ``jsw_*`` / ``joint_row_*`` (K,) for ``x1, x1_ex, x2, x2_ex``.
- ``eval/fidelity.npz``: optional per-pair arrays ``key_transfer_kl0_to_kl2``,
  ``key_transfer_kl2_to_kl0``, ``recon_key_transfer_kl0_to_kl2``, ``nonkey_ssim``.
- ``supervisor/metrics.json``, ``judge/metrics.json``: classifier runs (test metrics at the top
  level or under ``test``).

Figures are PNGs drawn with matplotlib's Agg canvas and embedded as base64; the page has inline
CSS and no external URL, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import logging
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kecae.utils import KecaeError, atomic_write_text

log = logging.getLogger(__name__)

#: How to produce each part of the report; shown in the "not computed" notes. ``{run}`` is the
#: run folder. Kept in one place so the hints follow the CLI when a command is renamed.
HOW_TO = {
    "evaluate": "kecae evaluate --run {run}",
    "train": "kecae train --out {run}/kecae",
    "supervisor": "kecae train-classifier --out {run}/supervisor",
    "judge": "kecae train-classifier --out {run}/judge",
    "everything": "kecae demo --out {run}",
    "ablation": "kecae study ablation --run {run}",
}

MAX_EXAMPLES = 6  # rows of the Fig. 4-style grid; more images make the figure unreadably small
_SIBLINGS = ("_std", "_n", "_ci_low", "_ci_high")
_PAPER_LAMBDA = (1e-2, 1e-3)  # the paper's chosen (λ1, λ2), marked on the grid


# ---------------------------------------------------------------------------------------------
# Loading the run folder: absent files give None, damaged ones a recorded problem
# ---------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """Everything the report reads from a run folder; ``None`` where a file is absent."""

    run_dir: Path
    metrics: dict = field(default_factory=dict)
    train_log: dict[str, np.ndarray] | None = None  # kecae/log.csv columns
    examples: dict[str, np.ndarray] | None = None
    fidelity: dict[str, np.ndarray] | None = None
    classifiers: dict[str, dict] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # relative path -> what went wrong
    found: list[str] = field(default_factory=list)  # relative paths that were read


def _read(run: RunData, rel: str, reader: Callable[[Path], Any]) -> Any:
    path = run.run_dir / rel
    if not path.is_file():
        return None
    try:
        data = reader(path)
    except Exception as exc:  # a damaged file must not stop the rest of the report
        run.problems[rel] = f"{type(exc).__name__}: {exc}"
        log.warning("report: could not read %s (%s)", path, exc)
        return None
    run.found.append(rel)
    return data


def _read_json(path: Path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object at the top level")
    return data


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):  # else numpy reports it as "pickled data", which misleads
        raise ValueError("not an .npz archive (damaged or cut short)")
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def _read_log(path: Path) -> dict[str, np.ndarray]:
    """CSV columns as float arrays; blank or non-numeric cells become NaN."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError("the log has no rows yet")
    cols: dict[str, np.ndarray] = {}
    for name in rows[0]:
        if name is None:
            continue
        vals = []
        for r in rows:
            try:
                vals.append(float(r.get(name) or "nan"))
            except ValueError:
                vals.append(math.nan)
        cols[name] = np.array(vals)
    return cols


def load_run(run_dir: str | Path) -> RunData:
    """Read every known file of ``run_dir``; absent or damaged files are recorded, not raised."""
    run = RunData(run_dir=Path(run_dir))
    run.metrics = _read(run, "metrics.json", _read_json) or {}
    run.train_log = _read(run, "kecae/log.csv", _read_log)
    run.examples = _read(run, "eval/examples.npz", _read_npz)
    run.fidelity = _read(run, "eval/fidelity.npz", _read_npz)
    for name in ("supervisor", "judge"):
        data = _read(run, f"{name}/metrics.json", _read_json)
        if data is not None:
            run.classifiers[name] = data
    return run


# ---------------------------------------------------------------------------------------------
# Number formatting
# ---------------------------------------------------------------------------------------------

def _num(v: Any) -> float | None:
    """A finite float, or None for anything else (missing, text, NaN, bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _fmt(v: Any, kind: str) -> str:
    """Format one number: ``pct`` (fraction shown in %), ``db``, ``int``, ``num`` (3 s.f.)."""
    x = _num(v)
    if x is None:
        return "inf" if isinstance(v, float) and math.isinf(v) else "—"
    if kind == "pct":
        return f"{100 * x:.1f} %"
    if kind == "db":
        return f"{x:.2f} dB"
    if kind == "int":
        return f"{x:,.0f}"
    if kind == "sec":
        return str(_dt.timedelta(seconds=round(x))) if x >= 60 else f"{x:.1f} s"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _spread(sec: dict, key: str, kind: str) -> str:
    """'± std' and/or '95 % CI lo–hi' for a metric, from its siblings."""
    parts = []
    std = _num(sec.get(f"{key}_std"))
    if std is not None:
        parts.append("± " + (f"{100 * std:.1f}" if kind == "pct" else _fmt(std, kind)))
    lo, hi = _num(sec.get(f"{key}_ci_low")), _num(sec.get(f"{key}_ci_high"))
    if lo is not None and hi is not None:
        if kind == "pct":
            parts.append(f"95 % CI {100 * lo:.1f}–{100 * hi:.1f}")
        else:
            parts.append(f"95 % CI {_fmt(lo, kind)}–{_fmt(hi, kind)}")
    return "; ".join(parts)


def _n_of(sec: dict, key: str) -> str:
    n = _num(sec.get(f"{key}_n", sec.get("n")))
    return f"{n:,.0f}" if n is not None else ""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _missing(what: str, how: str, run: RunData) -> str:
    cmd = HOW_TO[how].format(run=run.run_dir)
    return _note(f"Not computed: {_e(what)}. Run <code>{_e(cmd)}</code>.")


def _problems(run: RunData, *rels: str) -> str:
    return "".join(_note(f"Could not read <code>{_e(r)}</code> ({_e(run.problems[r])}); "
                         "rerun the step that writes it.") for r in rels if r in run.problems)


# Labels and formats of the known metrics.json keys, per section, in display order.
_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "separability": [
        ("svm_hk_accuracy", "SVM-RBF accuracy on the key vectors hK", "pct"),
        ("svm_hn_accuracy", "SVM-RBF accuracy on the non-key vectors hN", "pct"),
        ("svm_judge_features_accuracy", "Reference: the same SVM on the judge's features of the "
                                        "same images", "pct"),
    ],
    "exchange_success": [],
    "plausibility": [
        ("real_test", "Control: real test images passing the rule (nominal share "
                      "= the quantile)", "pct"),
        ("x_ex", "Exchanged images X′ passing the rule", "pct"),
        ("x_ex_kl0_to_kl2", "X′1 (KL-0 → KL-2) passing", "pct"),
        ("x_ex_kl2_to_kl0", "X′2 (KL-2 → KL-0) passing", "pct"),
        ("ratio_to_real", "X′ pass rate / real pass rate", "num"),
        ("control", "Control: no-exchange outputs passing", "pct"),
        ("recon", "Control: reconstructions X̂ passing", "pct"),
        ("knn_real_test", "k-NN manifold precision, real test images", "pct"),
        ("knn_x_ex", "k-NN manifold precision, X′", "pct"),
        ("knn_recon", "k-NN manifold precision, X̂", "pct"),
    ],
    "fidelity": [
        ("key_transfer_median", "Key transfer KL-0 → KL-2, median (refused X′ = failure)", "num"),
        ("key_transfer_iqr", "Key transfer KL-0 → KL-2, IQR", "num"),
        ("key_transfer_success_rate", "Pairs with key transfer ≥ 0.7, KL-0 → KL-2", "pct"),
        ("key_transfer_median_kl2_to_kl0", "Key transfer KL-2 → KL-0, median", "num"),
        ("key_transfer_success_rate_kl2_to_kl0", "Pairs with key transfer ≥ 0.7, KL-2 → KL-0",
         "pct"),
        ("recon_key_transfer_median", "Key transfer KL-0 → KL-2 against the reconstructions "
                                      "(X̂1 and X̂2 in place of X1 and X2), median", "num"),
        ("recon_key_transfer_median_kl2_to_kl0", "Key transfer KL-2 → KL-0 against the "
                                                 "reconstructions, median", "num"),
        ("osteophyte_rate_real_kl2", "Osteophytes detected: real KL-2 test images", "pct"),
        ("osteophyte_rate_x1_ex", "Osteophytes detected: X′1 (should match real KL-2)", "pct"),
        ("osteophyte_rate_x1_self", "Osteophytes detected: no-exchange output of X1 (control)",
         "pct"),
        ("osteophyte_rate_real_kl0", "Osteophytes detected: real KL-0 test images", "pct"),
        ("osteophyte_rate_x2_ex", "Osteophytes detected: X′2 (should match real KL-0)", "pct"),
        ("osteophyte_rate_x2_self", "Osteophytes detected: no-exchange output of X2 (control)",
         "pct"),
        ("osteophyte_transfer_rate", "Osteophytes gained by X′1 when the donor has them", "pct"),
        ("osteophyte_removal_rate", "Osteophytes lost by X′2 when the donor has none", "pct"),
        ("nonkey_ssim_median", "SSIM of X′ vs its recipient outside the joint band, median "
                               "(both directions)", "num"),
        ("refusal_rate", "X′ whose joint the measurement could not find", "pct"),
        ("refusal_rate_real", "Real test images whose joint it could not find", "pct"),
        ("refusal_rate_recon", "Reconstructions whose joint it could not find", "pct"),
    ],
    "quality": [
        ("recon_psnr", "PSNR of the reconstructions X̂ vs X", "db"),
        ("recon_ssim", "SSIM of the reconstructions X̂ vs X", "num"),
        ("frechet", "Fréchet distance, X′ vs real images (judge features)", "num"),
        ("frechet_real_floor", "Fréchet distance between two halves of the real images "
                               "(the floor)", "num"),
    ],
}


def _metric_rows(sec: dict, keys: list[tuple[str, str, str]], extra: bool = True,
                 skip: set[str] = frozenset()) -> list[list[str]]:
    """Rows (label, value, spread, n) for the known keys present, then any other numbers."""
    rows, seen = [], set(skip) | {"n"}
    for key, label, kind in keys:
        seen.add(key)
        if key in sec:
            rows.append([_e(label), _fmt(sec[key], kind), _e(_spread(sec, key, kind)),
                         _n_of(sec, key)])
    if extra:
        for key, v in sec.items():
            if key in seen or key.endswith(_SIBLINGS) or _num(v) is None:
                continue
            kind = "pct" if re.search(r"(rate|accuracy)$", key) else "num"
            rows.append([f"<code>{_e(key)}</code>", _fmt(v, kind), _e(_spread(sec, key, kind)),
                         _n_of(sec, key)])
    return rows


def _metric_table(sec: dict, keys: list[tuple[str, str, str]], **kw: Any) -> str:
    rows = _metric_rows(sec, keys, **kw)
    return _table(["Metric", "Value", "± std / 95 % CI", "n"], rows, "metrics") if rows else ""


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _figure(width: float, height: float, layout: str | None = "constrained"):
    """A matplotlib Figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _png(fig: Any, dpi: int = 110) -> str:
    """The figure as a ``data:`` URI. The PNG carries no 'Software' tag (it holds a URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(uri: str, alt: str, caption: str) -> str:
    return (f'<figure><img src="{uri}" alt="{_e(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _drawn(draw: Callable[[], str | None], alt: str, caption: str) -> str:
    """``_figure_html`` of ``draw()``; a figure that fails becomes a note, not a lost section."""
    try:
        uri = draw()
    except Exception as exc:  # malformed entries in the run folder; the page must still appear
        log.warning("report: could not draw %s: %s", alt, exc)
        return _note(f"Could not draw {_e(alt)}: {_e(type(exc).__name__)}: {_e(exc)}. Check the "
                     "matching entry of the run folder.")
    return _figure_html(uri, alt, caption) if uri else ""


def _show_image(ax: Any, img: np.ndarray, title: str | None = None) -> None:
    ax.imshow(img, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _mark_joint(ax: Any, ex: dict, name: str, i: int) -> None:
    """Dashed line at the measured joint row and the JSW (px) in the corner, when measured."""
    row = _num(ex[f"joint_row_{name}"][i]) if f"joint_row_{name}" in ex else None
    if row is not None:
        ax.axhline(row, color="#ffd400", lw=0.9, ls="--")
    jsw = _num(ex[f"jsw_{name}"][i]) if f"jsw_{name}" in ex else None
    if jsw is not None:
        ax.text(0.03, 0.97, f"JSW {jsw:.1f} px", transform=ax.transAxes, va="top", ha="left",
                fontsize=8, color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5,
                                                 "edgecolor": "none"})


def _examples_figure(ex: dict[str, np.ndarray]) -> tuple[str, int]:
    """Fig. 4-style grid: X1, X'1, X'1−X1, X2, X'2, X'2−X2 per row. Returns (uri, rows)."""
    k = min(MAX_EXAMPLES, len(ex["x1"]))
    d1 = ex["x1_ex"][:k] - ex["x1"][:k]  # (k, S, S)
    d2 = ex["x2_ex"][:k] - ex["x2"][:k]
    # one symmetric scale for every difference map so rows compare; a robust max ignores a
    # few extreme pixels that would wash the rest out
    lim = float(np.nanpercentile(np.abs(np.concatenate([d1, d2])), 99.5)) or 1e-3
    # a fixed grid: image panels need no layout solver (constrained layout costs seconds here)
    height = 1.9 * k + 1.1
    fig = _figure(11.0, height, layout=None)
    axes = fig.subplots(k, 6, squeeze=False, gridspec_kw={
        "left": 0.03, "right": 0.99, "top": 1 - 0.3 / height, "bottom": 1.0 / height,
        "wspace": 0.06, "hspace": 0.08})
    titles = ["X1 (KL-0)", "X′1 (→ KL-2)", "X′1 − X1", "X2 (KL-2)", "X′2 (→ KL-0)", "X′2 − X2"]
    diff_im = None
    for i in range(k):
        for j, (name, diff) in enumerate((("x1", d1), ("x2", d2))):
            c = 3 * j
            _show_image(axes[i, c], ex[name][i], titles[c] if i == 0 else None)
            _mark_joint(axes[i, c], ex, name, i)
            _show_image(axes[i, c + 1], ex[f"{name}_ex"][i], titles[c + 1] if i == 0 else None)
            _mark_joint(axes[i, c + 1], ex, f"{name}_ex", i)
            diff_im = axes[i, c + 2].imshow(diff[i], cmap="RdBu_r", vmin=-lim, vmax=lim,
                                            interpolation="nearest")
            axes[i, c + 2].set_xticks([])
            axes[i, c + 2].set_yticks([])
            if i == 0:
                axes[i, c + 2].set_title(titles[c + 2], fontsize=10)
        axes[i, 0].set_ylabel(f"pair {i + 1}", fontsize=9)
    cax = fig.add_axes((0.35, 0.6 / height, 0.3, 0.12 / height))
    cbar = fig.colorbar(diff_im, cax=cax, orientation="horizontal")
    cbar.set_label("intensity change (X′ − X, image scale [-1, 1]); red = brighter, "
                   "blue = darker", fontsize=9)
    return _png(fig, dpi=100), k


def _recon_figure(ex: dict[str, np.ndarray]) -> str:
    """X1, X̂1, X2, X̂2 side by side for the first examples."""
    k = min(4, len(ex["x1"]))
    fig = _figure(2.0 * 4, 2.0 * k + 0.3, layout=None)
    axes = fig.subplots(k, 4, squeeze=False, gridspec_kw={
        "left": 0.01, "right": 0.99, "top": 1 - 0.3 / (2.0 * k + 0.3), "bottom": 0.01,
        "wspace": 0.04, "hspace": 0.04})
    for i in range(k):
        for j, (name, title) in enumerate((("x1", "X1"), ("x1_hat", "X̂1"), ("x2", "X2"),
                                           ("x2_hat", "X̂2"))):
            _show_image(axes[i, j], ex[name][i], title if i == 0 else None)
    return _png(fig, dpi=90)


def _grid_margins(height: float) -> dict[str, float]:
    """Subplot margins for a grid of plot panels, in inches turned into figure fractions."""
    return {"left": 0.07, "right": 0.98, "top": 1 - 0.35 / height, "bottom": 0.55 / height,
            "wspace": 0.25, "hspace": 0.45}


def _target_number(targets: dict, name: str) -> float | None:
    """The numeric target of ``targets[name]``; a text target such as '>= 0.8' gives 0.8."""
    t = targets.get(name)
    t = t.get("target") if isinstance(t, dict) else None
    if _num(t) is not None:
        return float(t)
    m = re.search(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", str(t)) if isinstance(t, str) else None
    return float(m.group()) if m else None


# array name in fidelity.npz -> (panel title, target name in metrics.json, fixed reference lines)
_FIDELITY_ARRAYS = {
    "key_transfer_kl0_to_kl2": ("Key transfer ratio, X′1 (KL-0 → KL-2)", "key_transfer_median",
                                True),
    "key_transfer_kl2_to_kl0": ("Key transfer ratio, X′2 (KL-2 → KL-0)",
                                "key_transfer_median_kl2_to_kl0", True),
    "recon_key_transfer_kl0_to_kl2": ("Ratio against the reconstructions, X′1",
                                      "recon_key_transfer_median", True),
    "nonkey_ssim_kl0_to_kl2": ("SSIM outside the joint band, X′1 vs X1", "nonkey_ssim_median",
                               False),
    "nonkey_ssim_kl2_to_kl0": ("SSIM outside the joint band, X′2 vs X2", "nonkey_ssim_median",
                               False),
    "nonkey_ssim": ("SSIM outside the joint band, X′ vs recipient", "nonkey_ssim_median", False),
}


def _fidelity_figure(arrays: dict[str, np.ndarray], targets: dict) -> str | None:
    names = [n for n in _FIDELITY_ARRAYS if n in arrays]
    if not names:
        return None
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    height = 3.0 * rows
    fig = _figure(5.2 * cols, height, layout=None)  # fixed margins: a layout solver costs seconds
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=_grid_margins(height)).ravel()
    for ax, name in zip(axes, names):
        title, target_name, is_ratio = _FIDELITY_ARRAYS[name]
        v = np.asarray(arrays[name], dtype=np.float64).ravel()
        finite = v[np.isfinite(v)]
        refused = int(np.isneginf(v).sum())  # a refused measurement of X′: a failure
        if is_ratio:
            # the ratio is unbounded when the widths are close; show [-1, 2] and count the rest
            shown = np.clip(finite, -1.0, 2.0)
            outside = int(np.sum((finite < -1) | (finite > 2)))
            ax.hist(shown, bins=np.linspace(-1, 2, 31), color="#4c72b0")
            ax.axvline(0, color="#555", ls=":", lw=1.2, label="0: unchanged (recipient)")
            ax.axvline(1, color="#2a9d3a", ls="--", lw=1.5, label="1: donor's width")
            extra = f"; {outside} outside [-1, 2] piled at the edges" if outside else ""
            if refused:
                extra += f"; {refused} refused (failures, not drawn)"
        else:
            ax.hist(finite, bins=30, color="#4c72b0")
            extra = ""
        kept = v[~np.isnan(v)]
        if len(kept):  # the median counts refused images as failures (they sort lowest)
            med = float(np.quantile(kept, 0.5, method="inverted_cdf"))
            if np.isfinite(med):
                ax.axvline(med, color="#222", lw=1.2, label=f"median {med:.2f}")
        target = _target_number(targets, target_name)
        if target is not None:
            ax.axvline(target, color="#d62728", lw=1.5, label=f"target {target:g}")
        ax.set_title(title, fontsize=10)
        excluded = int(np.isnan(v).sum())
        ax.set_xlabel(f"n = {len(finite) + refused} ({excluded} uninformative){extra}",
                      fontsize=8)
        ax.set_ylabel("pairs")
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return _png(fig)


def _lambda_figure(grid: dict) -> str | None:
    l1, l2 = np.asarray(grid["lambda1"], float), np.asarray(grid["lambda2"], float)
    acc = np.asarray(grid["svm_hk_accuracy"], float)
    if acc.shape == (len(l2), len(l1)) and len(l1) != len(l2):
        acc = acc.T  # accept either orientation when it is unambiguous
    if acc.shape != (len(l1), len(l2)):
        raise ValueError(f"svm_hk_accuracy has shape {acc.shape}, expected "
                         f"(len(lambda1), len(lambda2)) = ({len(l1)}, {len(l2)})")
    fig = _figure(1.0 + 0.9 * len(l2), 1.0 + 0.6 * len(l1))
    ax = fig.subplots()
    im = ax.imshow(100 * acc, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(l2)), [f"{v:.0e}" for v in l2], fontsize=8)
    ax.set_yticks(range(len(l1)), [f"{v:.0e}" for v in l1], fontsize=8)
    ax.set_xlabel("λ2 (LDA weight)")
    ax.set_ylabel("λ1 (supervisor weight)")
    for i in range(len(l1)):
        for j in range(len(l2)):
            if np.isfinite(acc[i, j]):
                ax.text(j, i, f"{100 * acc[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if acc[i, j] < np.nanmean(acc) else "black")
    if np.isfinite(acc).any():
        bi, bj = np.unravel_index(np.nanargmax(acc), acc.shape)
        ax.add_patch(_rect(bj, bi, "#ff3b30"))
    pi = np.flatnonzero(np.isclose(l1, _PAPER_LAMBDA[0]))
    pj = np.flatnonzero(np.isclose(l2, _PAPER_LAMBDA[1]))
    if len(pi) and len(pj):
        # in the cell's corner, clear of the accuracy written in its centre
        ax.plot(pj[0] + 0.32, pi[0] + 0.3, marker="*", ms=9, color="white", mec="black",
                ls="none")
    fig.colorbar(im, ax=ax, label="SVM-RBF accuracy on hK (%)")
    return _png(fig)


def _rect(x: float, y: float, color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec=color, lw=2)


def _sampling_figure(ss: dict) -> str:
    n = np.asarray(ss["N"], float)
    mean = np.asarray(ss["accuracy_mean"], float)
    std = np.asarray(ss.get("accuracy_std", np.zeros_like(mean)), float)
    if not len(n) == len(mean) == len(std):
        raise ValueError("sampling_size N, accuracy_mean and accuracy_std differ in length")
    order = np.argsort(n)
    n, mean, std = n[order], mean[order], std[order]
    fig = _figure(6.0, 3.4)
    ax = fig.subplots()
    x = np.arange(len(n))  # evenly spaced: N spans 0 to 1e6, a log axis cannot show N = 0
    ax.errorbar(x, 100 * mean, yerr=100 * std, marker="o", capsize=4, color="#4c72b0")
    ax.set_xticks(x, [_short_n(v) for v in n])
    ax.set_xlabel("generated pairs N added to the training set")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    return _png(fig)


def _short_n(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


# columns of log.csv that are not loss terms: no log scale, own titles
_LOG_AXES = {"step", "epoch"}
_LOG_TITLES = {"total": "total loss J", "mse": "J_MSE (reconstruction)",
               "sup": "J_SUP (supervisor on X′)", "lda": "J_LDA (key / non-key separation)",
               "sup_real": "supervisor CE on real X", "pairs_per_s": "throughput (pairs/s)",
               "lr": "learning rate"}
_LINEAR = {"pairs_per_s", "epoch"}


def _training_figure(cols: dict[str, np.ndarray]) -> tuple[str | None, list[str]]:
    """One panel per logged scalar vs step. Returns (uri, names of constant columns skipped)."""
    x = cols.get("step", np.arange(len(next(iter(cols.values())))))
    names, constant = [], []
    for name, v in cols.items():
        if name in _LOG_AXES or not np.isfinite(v).any():
            continue
        f = v[np.isfinite(v)]
        if len(f) > 1 and np.ptp(f) == 0:
            constant.append(f"{name} = {f[0]:g}")
            continue
        names.append(name)
    if not names:
        return None, constant
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    height = 2.7 * nrows
    fig = _figure(11.0, height, layout=None)  # fixed margins: a layout solver costs seconds
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=_grid_margins(height)).ravel()
    for ax, name in zip(axes, names):
        v = cols[name]
        ok = np.isfinite(v)
        positive = bool((v[ok] > 0).all())
        ax.plot(x[ok], v[ok], color="#4c72b0", lw=0.8, alpha=0.45 if ok.sum() > 50 else 1.0)
        if ok.sum() > 50:  # a running mean shows the trend through step-to-step noise
            w = max(5, ok.sum() // 50)
            smooth = np.convolve(v[ok], np.ones(w) / w, mode="valid")
            ax.plot(x[ok][w - 1:], smooth, color="#1f3b73", lw=1.4, label=f"mean of {w}")
            ax.legend(fontsize=7)
        if positive and name not in _LINEAR:
            ax.set_yscale("log")
        ax.set_title(_LOG_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return _png(fig, dpi=100), constant


# ---------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------

def _sec(run: RunData, name: str) -> dict:
    s = run.metrics.get(name)
    return s if isinstance(s, dict) else {}


def _headline(run: RunData) -> str:
    cards = []
    specs = [("exchange_success", "judge_agreement_kl0_to_kl2",
              "X′1: the judge gives it the grade it gives the KL-2 donor", "pct"),
             ("exchange_success", "judge_agreement_kl2_to_kl0",
              "X′2: the judge gives it the grade it gives the KL-0 donor", "pct"),
             ("fidelity", "key_transfer_median", "median key transfer, KL-0 → KL-2 (1 = donor)",
              "num"),
             ("fidelity", "key_transfer_median_kl2_to_kl0",
              "median key transfer, KL-2 → KL-0 (1 = donor)", "num"),
             ("fidelity", "nonkey_ssim_median", "SSIM outside the joint band", "num"),
             ("plausibility", "ratio_to_real", "plausible X′ / plausible real images", "num"),
             ("separability", "svm_hk_accuracy", "SVM-RBF accuracy on hK", "pct")]
    for section, key, label, kind in specs:
        sec = _sec(run, section)
        if _num(sec.get(key)) is None:
            continue
        sub = " · ".join(p for p in (_spread(sec, key, kind),
                                      f"n = {_n_of(sec, key)}" if _n_of(sec, key) else "") if p)
        cards.append((_fmt(sec[key], kind), label, sub))
    gains = [g for r, _, g in _downstream_rows(run)
             if g is not None and r.get("training_set") in ("T'", "T′")]
    if gains:
        cards.append((f"{100 * np.mean(gains):+.2f} pp", "test accuracy, T′ vs T (mean over "
                      f"{len(gains)} model{'s' if len(gains) > 1 else ''})", ""))
    targets = _sec(run, "targets")
    met = [t.get("met") for t in targets.values() if isinstance(t, dict)]
    if met:
        cards.append((f"{sum(m is True for m in met)} / {len(met)}", "targets met", ""))
    if not cards:
        return _missing("no headline number is available yet", "everything", run)
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="big">{_e(v)}</div><div class="label">{_e(label)}</div>'
        f'<div class="sub">{_e(sub)}</div></div>' for v, label, sub in cards) + "</div>"


def _targets(run: RunData) -> str:
    targets = _sec(run, "targets")
    if not targets:
        return _missing("targets", "evaluate", run)
    rows = []
    for name, t in targets.items():
        t = t if isinstance(t, dict) else {"value": t}
        met = t.get("met")
        mark = ('<span class="ok">✓ met</span>' if met is True else
                '<span class="bad">✗ not met</span>' if met is False else "–")
        value = t.get("value")
        rows.append([f"<code>{_e(name)}</code>", _e(t.get("target", "")),
                     _e(_fmt(value, "num") if _num(value) is not None else (value or "—")), mark])
    return _table(["Target", "Wanted", "Measured", ""], rows, "targets")


def _examples(run: RunData) -> str:
    ex = run.examples
    if ex is None:
        return _problems(run, "eval/examples.npz") or _missing(
            "example images (eval/examples.npz)", "evaluate", run)
    need = [k for k in ("x1", "x1_ex", "x2", "x2_ex") if k not in ex]
    if need:
        return _note(f"eval/examples.npz lacks {_e(', '.join(need))}; rerun "
                     f"<code>{_e(HOW_TO['evaluate'].format(run=run.run_dir))}</code>.")
    uri, k = _examples_figure(ex)
    measured = "jsw_x1" in ex or "joint_row_x1" in ex
    caption = (f"{k} random pairs, one per row. X1 is a KL-0 knee, X2 a KL-2 knee; X′1 keeps X1's "
               "anatomy but takes X2's key features (should look KL-2), X′2 the reverse. "
               "The difference maps show what the exchange changed: a good exchange changes the "
               "joint space and joint margins (osteophytes) and leaves bone shape, soft tissue "
               "and background near zero. For the paper's decoded exchange the maps also hold "
               "the auto-encoder's reconstruction error, spread over the whole image; a residual "
               "or warp exchange edits the recipient's own pixels and leaves the rest exactly.")
    if measured:
        caption += (" The dashed yellow line is the measured joint line; the corner label is "
                    "the measured joint-space width (JSW) in pixels: X′1 should have about X2's "
                    "JSW, X′2 about X1's.")
    return _figure_html(uri, "Key-exchange examples", _e(caption))


def _rate_cell(sec: dict, key: str) -> str:
    if _num(sec.get(key)) is None:
        return "—"
    spread = _spread(sec, key, "pct")
    n = _n_of(sec, key)
    small = "; ".join(p for p in (spread, f"n = {n}" if n else "") if p)
    return f"<b>{_fmt(sec[key], 'pct')}</b>" + (f'<br><span class="small">{_e(small)}</span>'
                                                 if small else "")


def _gap_text(sec: dict, direction: str, what: str, donor: str) -> list[str]:
    """Plain sentences comparing exchange vs control and judge vs supervisor."""
    out = []
    j, c = _num(sec.get(f"judge_{direction}_raw")), _num(sec.get(f"judge_control_{direction}"))
    s = _num(sec.get(f"supervisor_{direction}_raw"))
    if j is not None and c is not None:
        out.append(f"The judge calls {100 * j:.1f} % of {what} {donor}, and {100 * c:.1f} % of "
                   "the no-exchange outputs of the same recipients (each given its own key): the "
                   f"exchange itself accounts for {100 * (j - c):+.1f} points.")
    if j is not None and s is not None and 100 * (s - j) > 2:
        out.append(f"The supervisor, which the generator was trained to convince, calls "
                   f"{100 * s:.1f} %: the {100 * (s - j):.1f}-point gap is success that does not "
                   "carry over to a classifier the generator never saw.")
    rel = _num(sec.get(f"judge_relative_{direction}"))
    if rel is not None:
        out.append(f"Against the judge's own recall on real {donor} test images the label-only "
                   f"rate is {100 * rel:.0f} %.")
    return out


def _exchange(run: RunData) -> str:
    sec = _sec(run, "exchange_success")
    parts = []
    if sec:
        rows = []
        for direction, label in (("kl0_to_kl2", "X′1: KL-0 recipient, KL-2 key → KL-2"),
                                 ("kl2_to_kl0", "X′2: KL-2 recipient, KL-0 key → KL-0")):
            rows.append([_e(label)] + [_rate_cell(sec, key) for key in (
                f"judge_agreement_{direction}", f"judge_agreement_control_{direction}",
                f"judge_{direction}_raw", f"judge_control_{direction}", f"judge_recon_{direction}",
                f"judge_{direction}", f"supervisor_{direction}_raw",
                f"supervisor_control_{direction}")])
        parts.append(_table(["Exchanged image", "Judge: same grade as the donor",
                             "… control", "Judge: donor's grade (label only)", "… control",
                             "… on X̂", "Success: donor's grade AND plausible",
                             "Supervisor: donor's grade", "… control"], rows, "rates"))
        parts.append(_note(
            "The <b>judge</b> is an independent classifier the generator never saw; the "
            "<b>supervisor</b> is the frozen classifier whose loss trained the generator, so it can "
            "be fooled by changes a person or another model would not see. <b>Same grade as the "
            "donor</b>: the judge gives X′ the grade it gives the donor image itself, so its own "
            "errors on real images do not count against the exchange. <b>Control</b>: the same "
            "rule on the no-exchange output (the recipient given its own key: the reconstruction "
            "for a decoded exchange, the recipient itself for a residual or warp exchange), the "
            "rate an exchange must beat; <b>on X̂</b>: on the plain reconstruction. "
            "<b>Success</b> also asks the image to be plausible (see below). Cells give the 95 % "
            "Wilson interval and n."))
        sentences = (_gap_text(sec, "kl0_to_kl2", "X′1", "KL-2")
                     + _gap_text(sec, "kl2_to_kl0", "X′2", "KL-0"))
        judge = _sec(run, "judge")
        cm = judge.get("confusion")
        if _is_2x2(cm):
            sentences.append(
                f"On real test images the judge grades {100 * _num(judge['test_accuracy']):.1f} % "
                f"correctly (KL-0 recall {100 * _num(judge.get('recall_kl0')):.1f} %, KL-2 recall "
                f"{100 * _num(judge.get('recall_kl2')):.1f} %; TN {cm[0][0]}, FP {cm[0][1]}, "
                f"FN {cm[1][0]}, TP {cm[1][1]}): a perfect exchange scores about its recall on "
                "the donor's grade, not 100 %.")
        if sentences:
            parts.append("<p>" + " ".join(_e(t) for t in sentences) + "</p>")
    else:
        parts.append(_problems(run, "metrics.json")
                     or _missing("exchange success rates", "evaluate", run))
    parts.append("<h3>The classifiers</h3>" + _classifiers(run))
    return "".join(parts)


def _ablation_cell(cell: dict, kind: str) -> str:
    m, sd = _num(cell.get("mean")), _num(cell.get("std"))
    if m is None:
        return "—"
    text = {"pct": f"{100 * m:.1f}", "int": f"{m:.0f}", "db": f"{m:.1f}"}.get(kind, f"{m:.2f}")
    if sd is not None:
        text += f'<br><span class="small">± {100 * sd if kind == "pct" else sd:.{1 if kind in ("pct", "db") else 2}f}</span>'
    return text


def _ablation(run: RunData) -> str:
    sec = _sec(run, "ablation")
    if not sec or not isinstance(sec.get("rows"), list):
        return _missing("the ablation of KECAE options", "ablation", run)
    cols = list(sec.get("columns", {}))
    best = set(sec.get("best", []))
    rows = []
    for r in sec["rows"]:
        name = f"<code>{_e(r['name'])}</code>" + (" <b>best</b>" if r["name"] in best else "")
        rows.append([name + f'<br><span class="small">{_e(r.get("description", ""))}</span>',
                     _fmt(r.get("seeds"), "int"), f"{_num(r.get('targets_met')) or 0:.1f}"]
                    + [_ablation_cell(r["cells"].get(c, {}), sec["columns"][c]["kind"])
                       for c in cols])
    b = sec.get("budget", {})
    parts = ['<div class="wide">' + _table(["Row", "Seeds", "Targets met"] + [_e(c) for c in cols],
                                           rows, "ablation") + "</div>",
             _note(_e(f"Every row trains one KECAE on the same data with the same frozen "
                      f"supervisor for {b.get('steps')} steps × {b.get('batch_size')} pairs "
                      f"(lr {b.get('lr')}), and is evaluated on the same {b.get('eval_pairs')} "
                      "test pairs by the same judge. Rates in %; ± is the sample std over seeds. "
                      + sec.get("note", "")))]
    for name in sec.get("best", []):
        rel = sec.get("examples", {}).get(name)
        path = run.run_dir / rel if rel else None
        if path is None or not path.is_file():
            continue
        try:
            ex = _read_npz(path)
            uri, k = _examples_figure(ex)
        except Exception as exc:  # a damaged sub-run must not stop the page
            parts.append(_note(f"Could not draw the examples of {_e(name)}: {_e(exc)}"))
            continue
        parts.append(_figure_html(uri, f"examples of {name}", _e(
            f"Row {name}: {k} test pairs, as in the examples section (X′ − X maps in the "
            "difference columns).")))
    return "".join(parts)


def _plausibility(run: RunData) -> str:
    sec = _sec(run, "plausibility")
    if not sec:
        return _missing("the plausibility rule and its controls", "evaluate", run)
    return _metric_table(sec, _KEYS["plausibility"], extra=False) + _note(_e(
        sec.get("rule", "")) + ". A rule that rejected real images would cap every success rate; "
        "calibrated on held-out images, real test images pass at about the nominal share.")


def _classifiers(run: RunData) -> str:
    rows, missing = [], []
    for name, role in (("supervisor", "supervisor (trained the generator)"),
                       ("judge", "judge (independent)")):
        run_metrics = run.classifiers.get(name, {})
        test = run_metrics.get("test") if isinstance(run_metrics.get("test"), dict) else run_metrics
        summary = _sec(run, name)
        if not test and not summary:
            missing.append(_missing(f"the {name} classifier ({name}/metrics.json)", name, run))
            continue
        arch = summary.get("arch", run_metrics.get("arch", "—"))
        acc = test.get("accuracy", summary.get("test_accuracy"))
        cm = test.get("confusion")
        cm_txt = (f"TN {cm[0][0]} · FP {cm[0][1]} · FN {cm[1][0]} · TP {cm[1][1]}"
                  if _is_2x2(cm) else "—")
        n = test.get("n", run_metrics.get("n_test", summary.get("n")))
        rows.append([_e(role), f"<code>{_e(arch)}</code>", _fmt(acc, "pct"),
                     _fmt(test.get("precision"), "pct"), _fmt(test.get("recall"), "pct"),
                     _fmt(test.get("auc"), "num"),
                     _e(cm_txt) + (f'<br><span class="small">n = {_fmt(n, "int")}</span>'
                                   if _num(n) is not None else "")])
    table = _table(["Classifier", "Architecture", "Test accuracy", "Precision (KL-2)",
                    "Recall (KL-2)", "ROC AUC", "Confusion (test)"], rows,
                   "classifiers") if rows else ""
    return _problems(run, "supervisor/metrics.json", "judge/metrics.json") + table + "".join(
        missing)


def _is_2x2(cm: Any) -> bool:
    return (isinstance(cm, list) and len(cm) == 2
            and all(isinstance(r, list) and len(r) == 2 for r in cm))


def _fidelity(run: RunData) -> str:
    sec = _sec(run, "fidelity")
    parts = [_problems(run, "eval/fidelity.npz")]
    if sec:
        parts.append(_metric_table(sec, _KEYS["fidelity"]))
        parts.append(_note(
            "Measured on phantoms, whose ground truth is known. Key transfer ratio = (JSW of "
            "the recipient − JSW of X′) / (JSW of the recipient − JSW of the donor): 0 means the "
            "joint space did not change, 1 means it took the donor's width exactly. The SSIM "
            "outside the joint band checks that the rest of the knee stayed the recipient's."))
    if run.fidelity:
        targets = _sec(run, "targets")
        parts.append(_drawn(lambda: _fidelity_figure(run.fidelity, targets),
                            "the fidelity histograms", _e(
            "Distribution over generated pairs. Ratio panels: the dashed green line at 1 is a "
            "perfect transfer, the dotted grey line at 0 no transfer, the black line the "
            "median, a red line the target when one is set; a tall, narrow peak near 1 is the "
            "goal; the panel against the reconstructions (X̂1 and X̂2 as recipient and donor) "
            "removes the auto-encoder's own blur from the comparison and should also peak at 1. "
            "SSIM panel: values "
            "near 1 mean the non-key anatomy was kept.")))
    if not sec and not run.fidelity:
        parts.append(_missing("ground-truth fidelity (needs phantom data)", "evaluate", run))
    return "".join(parts)


def _separability(run: RunData) -> str:
    sec = _sec(run, "separability")
    parts = []
    if sec:
        parts.append(_metric_table(sec, _KEYS["separability"]))
        parts.append(_note(
            "An RBF-kernel SVM is trained to tell KL-0 from KL-2 from one latent vector "
            "(stratified 5-fold cross-validation). The key vector hK should separate the "
            "classes (high accuracy); the non-key vector hN should not (near 50 %), because "
            "the grade is meant to live in hK only."))
    else:
        parts.append(_missing("SVM separability of hK and hN", "evaluate", run))
    grid = _sec(run, "lambda_grid")
    if grid:
        parts.append(_drawn(lambda: _lambda_figure(grid), "the λ1 × λ2 grid", _e(
            "SVM-RBF accuracy on hK (%) for each pair of loss weights, one KECAE trained per "
            "cell (as in the paper's Fig. 3). The red box marks the best cell; the white star "
            "the paper's choice λ1 = 1e-2, λ2 = 1e-3 when it is on the grid.")))
    return "".join(parts)


def _quality(run: RunData) -> str:
    sec = _sec(run, "quality")
    parts = []
    if sec:
        parts.append(_metric_table(sec, _KEYS["quality"]))
        fd, floor = _num(sec.get("frechet")), _num(sec.get("frechet_real_floor"))
        text = ("PSNR and SSIM compare each reconstruction X̂ with its input X (higher is "
                "better; SSIM 1 = identical). The Fréchet distance compares the feature "
                "statistics of the generated images with those of real images in the judge's "
                "feature space; it is never 0 for finite samples, hence the floor measured "
                "between two halves of the real set.")
        if fd is not None and floor is not None and floor > 0:
            text += f" Here the distance is {fd / floor:.1f}× the floor."
        parts.append(_note(_e(text)))
    else:
        parts.append(_missing("reconstruction PSNR/SSIM and Fréchet distance", "evaluate", run))
    ex = run.examples
    if ex is not None and all(k in ex for k in ("x1", "x1_hat", "x2", "x2_hat")):
        parts.append(_drawn(lambda: _recon_figure(ex), "the reconstructions", _e(
            "Inputs and their reconstructions (no exchange). Blur or lost detail here is the "
            "auto-encoder's own error and is inherited by every exchanged image.")))
    return "".join(parts)


def _downstream_rows(run: RunData) -> list[tuple[dict, str, float | None]]:
    """(row, model, accuracy gain over the same model's T row) for each downstream row."""
    rows = _sec(run, "downstream").get("rows")
    if not isinstance(rows, list):
        return []
    base = {r.get("model"): _num(r.get("accuracy_mean")) for r in rows
            if isinstance(r, dict) and r.get("training_set") == "T"}
    out = []
    for r in rows:
        if not isinstance(r, dict):
            continue
        acc, b = _num(r.get("accuracy_mean")), base.get(r.get("model"))
        gain = acc - b if (acc is not None and b is not None and r.get("training_set") != "T") \
            else None
        out.append((r, str(r.get("model", "—")), gain))
    return out


def _downstream(run: RunData) -> str:
    parts = []
    rows = _downstream_rows(run)
    if rows:
        def ms(r: dict, k: str) -> str:
            m, s = _num(r.get(f"{k}_mean")), _num(r.get(f"{k}_std"))
            if m is None:
                return "—"
            return f"{100 * m:.2f} ± {100 * s:.2f}" if s is not None else f"{100 * m:.2f}"

        table = []
        for r, model, gain in rows:
            table.append([_e(model), _e(r.get("training_set", "—")), ms(r, "accuracy"),
                          ms(r, "precision"), ms(r, "recall"),
                          f"{100 * gain:+.2f}" if gain is not None else "",
                          _fmt(r.get("n_seeds"), "int")])
        parts.append(_table(["Model", "Training set", "Accuracy (%)", "Precision (%)",
                             "Recall (%)", "Δ accuracy vs T (pp)", "Seeds"], table, "downstream"))
        parts.append(_note(
            "Mean ± sample standard deviation over training seeds, on the same fixed "
            "validation and test sets (as in the paper's Table II). T: real training images; "
            "T′: T plus the key-exchanged images; T+classic: T with flips, small rotations and "
            "intensity changes. A gain smaller than the standard deviations is not evidence of "
            "a benefit."))
    else:
        parts.append(_missing("downstream classifiers on T vs T′", "evaluate", run))
    ss = _sec(run, "sampling_size")
    if ss:
        parts.append(_drawn(lambda: _sampling_figure(ss), "the sampling-size curve", _e(
            "Test accuracy of the classifier trained on T plus N generated pairs, mean ± std "
            "over seeds (as in the paper's Fig. 5b). N = 0 is the real training set alone; the "
            "x axis is evenly spaced, not to scale.")))
    return "".join(parts)


def _training(run: RunData) -> str:
    if run.train_log is None:
        return _problems(run, "kecae/log.csv") or _missing("KECAE training log (kecae/log.csv)",
                                                           "train", run)
    uri, constant = _training_figure(run.train_log)
    if uri is None:
        return _note("kecae/log.csv has no numeric column to plot yet.")
    n = len(run.train_log.get("step", next(iter(run.train_log.values()))))
    cap = (f"Every logged term against the optimisation step ({n} log rows); loss terms on a "
           "log scale. J = J_MSE + λ1·J_SUP + λ2·J_LDA: J_MSE should fall steadily, J_SUP "
           "falls as the exchanged images take the donor's class, J_LDA falls as the key and "
           "non-key vectors separate. A flat or rising term means that part is not learning.")
    if constant:
        cap += f" Constant, not plotted: {', '.join(constant)}."
    return _figure_html(uri, "Training curves", _e(cap))


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out.extend(_flatten(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _configuration(run: RunData) -> str:
    parts = []
    config = _sec(run, "config")
    if config:
        rows = [[f"<code>{_e(k)}</code>", _e(json.dumps(v) if not isinstance(v, str) else v)]
                for k, v in _flatten(config)]
        parts.append(_table(["Setting", "Value"], rows, "config"))
    else:
        parts.append(_missing("the configuration (metrics.json: config)", "evaluate", run))
    other = {k: v for k, v in run.metrics.items() if k not in _KNOWN_SECTIONS}
    if other:  # sections this page does not lay out yet are still shown, never dropped
        rows = [[f"<code>{_e(k)}</code>", _e(json.dumps(v) if not isinstance(v, str) else v)]
                for k, v in _flatten(other)]
        parts.append("<h3>Other entries of metrics.json</h3>"
                     + _table(["Entry", "Value"], rows, "config"))
    timings = _sec(run, "timings")
    if timings:
        rows = [[_e(k), _fmt(v, "sec")] for k, v in timings.items()]
        total = sum(_num(v) or 0.0 for v in timings.values())
        rows.append(["<b>total</b>", f"<b>{_fmt(total, 'sec')}</b>"])
        parts.append("<h3>Timings</h3>" + _table(["Step", "Wall time"], rows, "timings"))
    return "".join(parts)


def _reader_study(sec: dict) -> str:
    """Table III from ``kecae reader-study analyze --run`` (metrics.json: ``reader_study``)."""
    def pct(d: Any, ci: bool = False) -> str:
        d = d if isinstance(d, dict) else {}
        lo, hi = _num(d.get("ci_low")), _num(d.get("ci_high"))
        text = _fmt(d.get("value"), "pct")
        return text + (f" ({100 * lo:.0f}–{100 * hi:.0f})" if ci and lo is not None
                       and hi is not None else "")

    def avg(d: Any) -> str:
        return _fmt((d if isinstance(d, dict) else {}).get("mean"), "num")

    def kappa(v: Any) -> str:
        return "—" if _num(v) is None else f"{_num(v):.2f}"

    rows = []
    for r in [*sec.get("readers", []), sec.get("overall") or {}]:
        if not isinstance(r, dict) or "reader" not in r:
            continue
        g = {k: r.get(k) if isinstance(r.get(k), dict) else {} for k in
             ("accuracy", "realism", "control_accuracy", "control_realism", "match_rate")}
        rows.append([_e(r["reader"]), f"{r.get('answered', '—')} / {r.get('total', '—')}",
                     pct(g["accuracy"].get("all"), ci=True), pct(g["accuracy"].get("KL-0")),
                     pct(g["accuracy"].get("KL-2")), avg(g["realism"].get("all")),
                     avg(g["realism"].get("KL-0")), avg(g["realism"].get("KL-2")),
                     pct(g["control_accuracy"].get("all")), avg(g["control_realism"].get("all")),
                     pct(g["match_rate"].get("all")), pct(r.get("sham_match_rate"))])
    parts = [_table(["Reader", "Answered", "Accuracy (95 % CI)", "X′2 → KL-0", "X′1 → KL-2",
                     "Realism", "X′2", "X′1", "Controls: accuracy", "Controls: realism",
                     "Phase 2: match", "Sham: match"], rows, "reader-study")]
    agree = [[_e("Fleiss' κ" if a.get("statistic") == "fleiss_kappa" else "Cohen's κ"),
              _e(", ".join(map(str, a.get("readers", [])))), _e(a.get("images", "")),
              kappa(a.get("kappa")), f"{kappa(a.get('ci_low'))} – {kappa(a.get('ci_high'))}",
              _fmt(a.get("n_items"), "int")]
             for a in sec.get("agreement", []) if isinstance(a, dict)]
    if agree:
        parts.append(_table(["Agreement", "Readers", "Images", "κ", "95 % CI", "n"], agree,
                            "reader-study"))
    parts.append(_note(_e(
        f"{sec.get('generated_images', '—')} generated images ({sec.get('pairs', '—')} pairs) and "
        f"{sec.get('controls', '—')} real control images, graded blind (as in the paper's Table "
        "III). Accuracy: the KL call equals the intended label (X′2 → KL-0, X′1 → KL-2) or a "
        "control's true grade, with Wilson intervals per reader and bootstrap intervals over "
        "images for all readers; realism: mean score 1–5, to be read against the controls'. "
        "Phase 2: comparisons with the original called a match of the intended exchange, and "
        "sham comparisons (a real image beside itself) called a match. κ on the KL call, "
        f"bootstrap 95 % intervals over images ({sec.get('n_boot', '—')} resamples).")))
    return "".join(parts)


_KNOWN_SECTIONS = {"separability", "exchange_success", "plausibility", "ablation", "judge",
                   "supervisor", "fidelity", "quality",
                   "downstream", "lambda_grid", "sampling_size", "targets", "config", "timings"}

#: (anchor, heading, builder) in page order.
SECTIONS: list[tuple[str, str, Callable[[RunData], str]]] = [
    ("headline", "Headline numbers", _headline),
    ("targets", "Targets", _targets),
    ("examples", "Key-exchange examples", _examples),
    ("exchange", "Exchange success", _exchange),
    ("plausibility", "Plausibility", _plausibility),
    ("fidelity", "Fidelity to the ground truth", _fidelity),
    ("separability", "Separability of key features", _separability),
    ("quality", "Image quality", _quality),
    ("downstream", "Downstream benefit", _downstream),
    ("ablation", "Ablation of the KECAE options", _ablation),
    ("training", "Training curves", _training),
    ("configuration", "Configuration", _configuration),
]


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
 background:#f6f7f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:16px 28px 60px;background:#fff;
 box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.7em;margin:.6em 0 .1em}h2{font-size:1.3em;margin:1.8em 0 .5em;
 padding-bottom:.2em;border-bottom:2px solid #e3e6ea}h3{font-size:1.05em;margin:1.2em 0 .4em}
.meta{color:#5b6575;font-size:.9em}nav{font-size:.9em;margin:.8em 0}nav a{margin-right:1em;
 color:#2f5fa7;text-decoration:none}nav a:hover{text-decoration:underline}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.93em;width:100%}
th,td{padding:6px 10px;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}tbody tr:nth-child(even){background:#fafbfc}
td:nth-child(n+2){font-variant-numeric:tabular-nums}
.wide{overflow-x:auto}.wide table{width:auto;font-size:.82em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:.6em 0}
.card{flex:1 1 150px;border:1px solid #e3e6ea;border-radius:8px;padding:10px 14px;
 background:#fbfcfd}
.card .big{font-size:1.6em;font-weight:650;color:#1f3b73}.card .label{font-size:.86em}
.card .sub{font-size:.78em;color:#6b7585}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #e3e6ea}
figcaption{font-size:.88em;color:#3d4654;margin-top:.4em;max-width:900px}
.note{color:#5b6575;font-size:.9em;background:#f4f6f9;border-left:3px solid #c9d1dc;
 padding:6px 10px}.small{font-size:.8em;color:#6b7585}code{font-size:.9em;background:#f0f2f5;
 padding:0 3px;border-radius:3px}.ok{color:#1b7f3b;font-weight:600}
.bad{color:#b3261e;font-weight:600}
"""


def render_report(run: RunData) -> str:
    """The report page for an already-loaded run, as an HTML string."""
    body, sections = [], list(SECTIONS)
    rs = _sec(run, "reader_study")
    if isinstance(rs.get("readers"), list):  # analyze's layout; any other entry stays raw
        from dataclasses import replace

        sections.insert(len(sections) - 2, ("reader-study", "Reader study (Table III)",
                                            lambda _run: _reader_study(rs)))
        run = replace(run, metrics={k: v for k, v in run.metrics.items() if k != "reader_study"})
    for anchor, heading, build in sections:
        try:
            content = build(run)
        except Exception as exc:  # one malformed entry must not cost the rest of the report
            log.warning("report: section %r failed: %s", heading, exc)
            content = _note(f"Could not draw this section: {_e(type(exc).__name__)}: "
                            f"{_e(exc)}. Check the matching entry of the run folder.")
        body.append(f'<section id="{anchor}"><h2>{_e(heading)}</h2>{content}</section>')
    nav = "".join(f'<a href="#{a}">{_e(h)}</a>' for a, h, _ in sections)
    found = ", ".join(run.found) or "none of the known files"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    title = f"kecae report: {run.run_dir.resolve().name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<h1>{_e(title)}</h1>"
            f'<p class="meta">Run folder <code>{_e(run.run_dir)}</code> · written {stamp} · '
            f"read: {_e(found)}</p><nav>{nav}</nav>{''.join(body)}</main></body></html>")


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (atomically) from whatever the run folder holds.

    Every input is optional: a missing part becomes a short note saying how to compute it.
    Raises:
        KecaeError: ``run_dir`` is not an existing folder.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KecaeError(f"run folder {run_dir} does not exist: pass the folder that a "
                         f"`kecae train`/`kecae evaluate` run wrote (e.g. runs/demo)")
    page = render_report(load_run(run_dir))
    out = run_dir / "report.html"
    atomic_write_text(out, page)
    return out
