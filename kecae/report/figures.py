"""The report's figures: matplotlib on the Agg canvas (no pyplot, no display), each returned as
a PNG ``data:`` URI so the page embeds it. A figure is a function of arrays and numbers; the page
(listed in :mod:`kecae.report.sections`) places it."""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Literal

import numpy as np

from kecae.report.format import number
from kecae.report.words import label as grade_label
from kecae.results import KL0_TO_KL2, KL2_TO_KL0, Fidelity, FidelityDirection, read_targets

MAX_EXAMPLES = 6  # rows of the Fig. 4-style grid; more images make the figure unreadably small
PAPER_LAMBDA = (1e-2, 1e-3)  # the paper's chosen (λ1, λ2), marked on the grid


def new_figure(
    width: float, height: float, layout: Literal["constrained"] | None = "constrained"
) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot: no global state, no display needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def png_uri(fig: Any, dpi: int = 110) -> str:
    """The figure as a ``data:`` URI. The PNG carries no 'Software' tag (it holds a URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _show_image(ax: Any, img: np.ndarray, title: str | None = None) -> None:
    ax.imshow(img, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _mark_joint(ax: Any, ex: dict, name: str, i: int) -> None:
    """Dashed line at the measured joint row and the JSW (px) in the corner, when measured."""
    row = number(ex[f"joint_row_{name}"][i]) if f"joint_row_{name}" in ex else None
    if row is not None:
        ax.axhline(row, color="#ffd400", lw=0.9, ls="--")
    jsw = number(ex[f"jsw_{name}"][i]) if f"jsw_{name}" in ex else None
    if jsw is not None:
        ax.text(
            0.03,
            0.97,
            f"JSW {jsw:.1f} px",
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=8,
            color="white",
            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "edgecolor": "none"},
        )


def examples_figure(ex: dict[str, np.ndarray]) -> tuple[str, int]:
    """Fig. 4-style grid: X1, X'1, X'1−X1, X2, X'2, X'2−X2 per row. Returns (uri, rows)."""
    k = min(MAX_EXAMPLES, len(ex["x1"]))
    d1 = ex["x1_ex"][:k] - ex["x1"][:k]  # (k, S, S)
    d2 = ex["x2_ex"][:k] - ex["x2"][:k]
    # one symmetric scale for every difference map so rows compare; a robust max ignores a
    # few extreme pixels that would wash the rest out
    lim = float(np.nanpercentile(np.abs(np.concatenate([d1, d2])), 99.5)) or 1e-3
    # a fixed grid: image panels need no layout solver (constrained layout costs seconds here)
    height = 1.9 * k + 1.1
    fig = new_figure(11.0, height, layout=None)
    axes = fig.subplots(
        k,
        6,
        squeeze=False,
        gridspec_kw={
            "left": 0.03,
            "right": 0.99,
            "top": 1 - 0.3 / height,
            "bottom": 1.0 / height,
            "wspace": 0.06,
            "hspace": 0.08,
        },
    )
    titles = [
        grade_label(t)
        for t in ("X1 (KL-0)", "X′1 (→ KL-2)", "X′1 − X1", "X2 (KL-2)", "X′2 (→ KL-0)", "X′2 − X2")
    ]
    diff_im = None
    for i in range(k):
        for j, (name, diff) in enumerate((("x1", d1), ("x2", d2))):
            c = 3 * j
            _show_image(axes[i, c], ex[name][i], titles[c] if i == 0 else None)
            _mark_joint(axes[i, c], ex, name, i)
            _show_image(axes[i, c + 1], ex[f"{name}_ex"][i], titles[c + 1] if i == 0 else None)
            _mark_joint(axes[i, c + 1], ex, f"{name}_ex", i)
            diff_im = axes[i, c + 2].imshow(
                diff[i], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
            )
            axes[i, c + 2].set_xticks([])
            axes[i, c + 2].set_yticks([])
            if i == 0:
                axes[i, c + 2].set_title(titles[c + 2], fontsize=10)
        axes[i, 0].set_ylabel(f"pair {i + 1}", fontsize=9)
    cax = fig.add_axes((0.35, 0.6 / height, 0.3, 0.12 / height))
    cbar = fig.colorbar(diff_im, cax=cax, orientation="horizontal")
    cbar.set_label(
        "intensity change (X′ − X, image scale [-1, 1]); red = brighter, blue = darker", fontsize=9
    )
    return png_uri(fig, dpi=100), k


def recon_figure(ex: dict[str, np.ndarray]) -> str:
    """X1, X̂1, X2, X̂2 side by side for the first examples."""
    k = min(4, len(ex["x1"]))
    fig = new_figure(2.0 * 4, 2.0 * k + 0.3, layout=None)
    axes = fig.subplots(
        k,
        4,
        squeeze=False,
        gridspec_kw={
            "left": 0.01,
            "right": 0.99,
            "top": 1 - 0.3 / (2.0 * k + 0.3),
            "bottom": 0.01,
            "wspace": 0.04,
            "hspace": 0.04,
        },
    )
    for i in range(k):
        for j, (name, title) in enumerate(
            (("x1", "X1"), ("x1_hat", "X̂1"), ("x2", "X2"), ("x2_hat", "X̂2"))
        ):
            _show_image(axes[i, j], ex[name][i], title if i == 0 else None)
    return png_uri(fig, dpi=90)


def _grid_margins(height: float) -> dict[str, float]:
    """Subplot margins for a grid of plot panels, in inches turned into figure fractions."""
    return {
        "left": 0.07,
        "right": 0.98,
        "top": 1 - 0.35 / height,
        "bottom": 0.55 / height,
        "wspace": 0.25,
        "hspace": 0.45,
    }


def _target_on(targets: dict, metric: str) -> float | None:
    """The threshold of the target on ``metric`` (``section.key``), None when there is none."""
    for t in read_targets(targets).values():
        if t.metric == metric and t.target is not None:
            value = number(t.target)  # an older metrics.json: a bare number
            return value if value is not None else t.threshold
    return None


def _transfer(name: str, direction: str) -> str:
    return Fidelity.path(FidelityDirection.key(name, direction))


# array name in fidelity.npz -> (panel title, the metric whose target is drawn, a ratio panel)
_FIDELITY_ARRAYS = {
    "key_transfer_kl0_to_kl2": (
        "Key transfer ratio, X′1 (KL-0 → KL-2)",
        _transfer("key_transfer_median", KL0_TO_KL2),
        True,
    ),
    "key_transfer_kl2_to_kl0": (
        "Key transfer ratio, X′2 (KL-2 → KL-0)",
        _transfer("key_transfer_median", KL2_TO_KL0),
        True,
    ),
    "recon_key_transfer_kl0_to_kl2": (
        "Ratio against the reconstructions, X′1",
        _transfer("recon_key_transfer_median", KL0_TO_KL2),
        True,
    ),
    "nonkey_ssim_kl0_to_kl2": (
        "SSIM outside the joint band, X′1 vs X1",
        Fidelity.path("nonkey_ssim_median"),
        False,
    ),
    "nonkey_ssim_kl2_to_kl0": (
        "SSIM outside the joint band, X′2 vs X2",
        Fidelity.path("nonkey_ssim_median"),
        False,
    ),
    "nonkey_ssim": (
        "SSIM outside the joint band, X′ vs recipient",
        Fidelity.path("nonkey_ssim_median"),
        False,
    ),
}


def fidelity_figure(arrays: dict[str, np.ndarray], targets: dict) -> str | None:
    names = [n for n in _FIDELITY_ARRAYS if n in arrays]
    if not names:
        return None
    cols = min(2, len(names))
    rows = math.ceil(len(names) / cols)
    height = 3.0 * rows
    fig = new_figure(
        5.2 * cols, height, layout=None
    )  # fixed margins: a layout solver costs seconds
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=_grid_margins(height)).ravel()
    for ax, name in zip(axes, names):
        title, target_metric, is_ratio = _FIDELITY_ARRAYS[name]
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
        target = _target_on(targets, target_metric)
        if target is not None:
            ax.axvline(target, color="#d62728", lw=1.5, label=f"target {target:g}")
        ax.set_title(grade_label(title), fontsize=10)
        excluded = int(np.isnan(v).sum())
        ax.set_xlabel(f"n = {len(finite) + refused} ({excluded} uninformative){extra}", fontsize=8)
        ax.set_ylabel("pairs")
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return png_uri(fig)


def lambda_figure(lambda1: Any, lambda2: Any, accuracy: Any) -> str | None:
    """Fig. 3: SVM-RBF accuracy on hK over the λ1 (rows) × λ2 (columns) grid."""
    l1, l2 = np.asarray(lambda1, float), np.asarray(lambda2, float)
    acc = np.asarray(accuracy, float)
    if acc.shape == (len(l2), len(l1)) and len(l1) != len(l2):
        acc = acc.T  # accept either orientation when it is unambiguous
    if acc.shape != (len(l1), len(l2)):
        raise ValueError(
            f"svm_hk_accuracy has shape {acc.shape}, expected "
            f"(len(lambda1), len(lambda2)) = ({len(l1)}, {len(l2)})"
        )
    fig = new_figure(1.0 + 0.9 * len(l2), 1.0 + 0.6 * len(l1))
    ax = fig.subplots()
    im = ax.imshow(100 * acc, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(l2)), [f"{v:.0e}" for v in l2], fontsize=8)
    ax.set_yticks(range(len(l1)), [f"{v:.0e}" for v in l1], fontsize=8)
    ax.set_xlabel("λ2 (LDA weight)")
    ax.set_ylabel("λ1 (supervisor weight)")
    for i in range(len(l1)):
        for j in range(len(l2)):
            if np.isfinite(acc[i, j]):
                ax.text(
                    j,
                    i,
                    f"{100 * acc[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if acc[i, j] < np.nanmean(acc) else "black",
                )
    if np.isfinite(acc).any():
        bi, bj = np.unravel_index(np.nanargmax(acc), acc.shape)
        ax.add_patch(_rect(float(bj), float(bi), "#ff3b30"))
    pi = np.flatnonzero(np.isclose(l1, PAPER_LAMBDA[0]))
    pj = np.flatnonzero(np.isclose(l2, PAPER_LAMBDA[1]))
    if len(pi) and len(pj):
        # in the cell's corner, clear of the accuracy written in its centre
        ax.plot(pj[0] + 0.32, pi[0] + 0.3, marker="*", ms=9, color="white", mec="black", ls="none")
    fig.colorbar(im, ax=ax, label="SVM-RBF accuracy on hK (%)")
    return png_uri(fig)


def _rect(x: float, y: float, color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, ec=color, lw=2)


def sampling_figure(pairs: Any, accuracy_mean: Any, accuracy_std: Any = None) -> str:
    """Fig. 5: test accuracy (mean ± std over seeds) against the generated pairs N."""
    n = np.asarray(pairs, float)
    mean = np.asarray(accuracy_mean, float)
    std = np.asarray(np.zeros_like(mean) if accuracy_std is None else accuracy_std, float)
    if not len(n) == len(mean) == len(std):
        raise ValueError("sampling_size N, accuracy_mean and accuracy_std differ in length")
    order = np.argsort(n)
    n, mean, std = n[order], mean[order], std[order]
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    x = np.arange(len(n))  # evenly spaced: N spans 0 to 1e6, a log axis cannot show N = 0
    ax.errorbar(x, 100 * mean, yerr=100 * std, marker="o", capsize=4, color="#4c72b0")
    ax.set_xticks(x, [_short_n(v) for v in n])
    ax.set_xlabel("generated pairs N added to the training set")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    return png_uri(fig)


def _short_n(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


# columns of log.csv that are not loss terms: no log scale, own titles
_LOG_AXES = {"step", "epoch"}
_LOG_TITLES = {
    "total": "total loss J",
    "mse": "J_MSE (reconstruction)",
    "sup": "J_SUP (supervisor on X′)",
    "lda": "J_LDA (key / non-key separation)",
    "sup_real": "supervisor CE on real X",
    "pairs_per_s": "throughput (pairs/s)",
    "lr": "learning rate",
}
_LINEAR = {"pairs_per_s", "epoch"}


def training_figure(cols: dict[str, np.ndarray]) -> tuple[str | None, list[str]]:
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
    fig = new_figure(11.0, height, layout=None)  # fixed margins: a layout solver costs seconds
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=_grid_margins(height)).ravel()
    for ax, name in zip(axes, names):
        v = cols[name]
        ok = np.isfinite(v)
        positive = bool((v[ok] > 0).all())
        ax.plot(x[ok], v[ok], color="#4c72b0", lw=0.8, alpha=0.45 if ok.sum() > 50 else 1.0)
        if ok.sum() > 50:  # a running mean shows the trend through step-to-step noise
            w = max(5, ok.sum() // 50)
            smooth = np.convolve(v[ok], np.ones(w) / w, mode="valid")
            ax.plot(x[ok][w - 1 :], smooth, color="#1f3b73", lw=1.4, label=f"mean of {w}")
            ax.legend(fontsize=7)
        if positive and name not in _LINEAR:
            ax.set_yscale("log")
        ax.set_title(_LOG_TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return png_uri(fig, dpi=100), constant


def fraction_figure(
    curves: dict[str, dict[str, tuple[list[float], list[float], list[float]]]],
) -> str:
    """Test accuracy against the share of real training patients: one panel per model, one line
    per training set, the mean over seeds with an error bar (the 95 % interval of the mean).

    ``curves``: model -> training set -> (fractions, accuracy means, error-bar half-widths).
    """
    models = list(curves)
    if not models:
        raise ValueError("no downstream rows with a training fraction to draw")
    fig = new_figure(5.2 * len(models), 3.6)
    axes = np.atleast_1d(fig.subplots(1, len(models), squeeze=False)[0])
    for ax, model in zip(axes, models):
        sets = curves[model]
        ticks: set[float] = set()
        for k, (name, (fr, mean, std)) in enumerate(sets.items()):
            x = np.asarray(fr, float)
            order = np.argsort(x)
            # a small horizontal offset per line keeps the error bars apart
            shift = 1 + 0.025 * (k - (len(sets) - 1) / 2)
            ax.errorbar(
                x[order] * shift,
                100 * np.asarray(mean, float)[order],
                yerr=100 * np.nan_to_num(np.asarray(std, float)[order]),
                marker="o",
                ms=4,
                capsize=3,
                label=name.replace("'", "′"),
            )
            ticks.update(float(v) for v in x)
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks), [f"{v:g}" for v in sorted(ticks)])
        ax.minorticks_off()
        ax.set_xlabel("share of the real training patients")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    return png_uri(fig)


def validation_figure(curves: dict[str, tuple[list[int], list[float], list[float]]]) -> str:
    """Validation accuracy along a step budget, one line per entry (mean with a ± std band).

    ``curves``: label -> (steps, accuracy means, accuracy stds).
    """
    if not curves:
        raise ValueError("no validation curves to draw")
    fig = new_figure(5.2, 3.4)
    ax = fig.subplots()
    for label, (steps, mean, std) in curves.items():
        x, m, s = (np.asarray(v, float) for v in (steps, mean, std))
        ax.plot(x, 100 * m, lw=1.2, label=label)
        ax.fill_between(x, 100 * (m - s), 100 * (m + s), alpha=0.2)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return png_uri(fig)


def tune_figure(
    numbers: list[int],
    objectives: list[float | None],
    params: dict[str, list[Any]],
    log_scale: set[str],
) -> str:
    """The tuning study: the objective of each trial and the best so far (optimisation
    history), then the objective against each searched setting. ``params``: setting -> its value
    in each trial (numbers on an axis, log-scaled when named in ``log_scale``; texts, e.g. the
    choices of a categorical setting, as evenly spaced categories)."""
    obj = np.array([np.nan if v is None else v for v in objectives], float)
    panels = 1 + len(params)
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig = new_figure(4.0 * cols, 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    ax = axes[0]
    ax.plot(numbers, obj, "o", color="#4c72b0", label="trial")
    best = np.fmax.accumulate(np.where(np.isfinite(obj), obj, -np.inf))
    ax.step(
        numbers,
        np.where(np.isfinite(best), best, np.nan),
        where="post",
        color="#dd8452",
        label="best so far",
    )
    ax.set_xlabel("trial")
    ax.set_ylabel("validation objective")
    ax.set_title("optimisation history", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    for ax, (name, values) in zip(axes[1:], params.items()):
        numeric = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None
        )
        keep = [i for i, v in enumerate(values) if v is not None]
        if numeric:
            x = np.array([values[i] for i in keep], float)
            if name in log_scale:
                x = np.where(x > 0, x, np.nan)
                ax.set_xscale("log")
            ax.plot(x, obj[keep], "o", color="#4c72b0")
        else:
            labels = sorted({str(values[i]) for i in keep}, key=_as_number)
            ax.plot([labels.index(str(values[i])) for i in keep], obj[keep], "o", color="#4c72b0")
            ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(name)
        ax.set_ylabel("objective")
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return png_uri(fig)


def _as_number(text: str) -> tuple[int, float, str]:
    """Sort key: numbers by value, then texts."""
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)
