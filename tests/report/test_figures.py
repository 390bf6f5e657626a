"""Figures of the report (kecae.report.figures): the target lines they draw."""

from __future__ import annotations

import numpy as np

from kecae.report.figures import _target_on, fidelity_figure
from kecae.results import KL0_TO_KL2, KL2_TO_KL0, Fidelity, FidelityDirection, Target

KEY_TRANSFER = Fidelity.path(FidelityDirection.key("key_transfer_median", KL0_TO_KL2))
NONKEY_SSIM = Fidelity.path("nonkey_ssim_median")

#: Targets as evaluate writes them: keyed by description, each naming its metric (an older
#: metrics.json may hold a bare number as the threshold).
TARGETS = {
    "key transfer median, KL-0 -> KL-2 (refusals fail)": Target(
        metric=KEY_TRANSFER, target=">= 0.7", value=0.8, met=True
    ).to_dict(),
    "non-key SSIM (median)": Target(
        metric=NONKEY_SSIM,
        target=0.9,
        value=0.95,
        met=True,
    ).to_dict(),
}


def test_target_found_by_its_metric():
    assert _target_on(TARGETS, KEY_TRANSFER) == 0.7
    assert _target_on(TARGETS, NONKEY_SSIM) == 0.9
    other = Fidelity.path(FidelityDirection.key("key_transfer_median", KL2_TO_KL0))
    assert _target_on(TARGETS, other) is None
    assert _target_on({}, KEY_TRANSFER) is None


def test_fidelity_figure_draws_the_target_line(monkeypatch):
    from matplotlib.axes import Axes

    drawn: list[str] = []
    axvline = Axes.axvline

    def record(self, x=0, *args, **kwargs):
        drawn.append(str(kwargs.get("label")))
        return axvline(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvline", record)
    rng = np.random.default_rng(0)
    arrays = {
        "key_transfer_kl0_to_kl2": rng.normal(0.8, 0.2, 50),
        "nonkey_ssim": rng.uniform(0.8, 1.0, 50),
    }
    assert fidelity_figure(
        arrays,
        TARGETS,
    ).startswith("data:image/png")
    assert "target 0.7" in drawn and "target 0.9" in drawn
    drawn.clear()
    assert fidelity_figure(arrays, {})
    assert not any(d.startswith("target") for d in drawn)


def test_figure_labels_follow_the_runs_grade_pair(monkeypatch):
    """Panel titles are drawn into the PNG, out of the page text's reach: they follow the pair
    the page is rendered for (--grades 0 1: "X′1 (→ KL-1)"), and the default pair is unchanged."""
    import numpy as np

    from kecae.report import figures
    from kecae.report.words import grade_pair, swap_grades

    seen: list[str] = []
    real_show = figures._show_image

    def show(ax, img, title=None):
        if title:
            seen.append(title)
        real_show(ax, img, title)

    monkeypatch.setattr(figures, "_show_image", show)
    rng = np.random.default_rng(0)
    ex = {n: rng.random((2, 16, 16)) for n in ("x1", "x1_ex", "x2", "x2_ex")}
    with grade_pair((0, 1)):
        figures.examples_figure(ex)
    assert seen == ["X1 (KL-0)", "X′1 (→ KL-1)", "X2 (KL-1)", "X′2 (→ KL-0)"]
    seen.clear()
    figures.examples_figure(ex)  # outside any page: the default pair
    assert seen == ["X1 (KL-0)", "X′1 (→ KL-2)", "X2 (KL-2)", "X′2 (→ KL-0)"]
    # a pair whose grades overlap the default's words does not chain (KL-0 -> KL-2 -> KL-4)
    assert swap_grades("KL-0 → KL-2, kl0_to_kl2", (2, 4)) == "KL-2 → KL-4, kl2_to_kl4"
