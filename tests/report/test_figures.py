"""Figures of the report (kecae.report.figures): the target lines they draw."""

from __future__ import annotations

import numpy as np

from kecae.report.figures import _target_number, fidelity_figure

#: Targets as evaluate writes them: keyed by description, each naming its metric.
TARGETS = {
    "key transfer median, KL-0 -> KL-2 (refusals fail)": {
        "metric": "fidelity.key_transfer_median",
        "target": ">= 0.7",
    },
    "non-key SSIM (median)": {"metric": "fidelity.nonkey_ssim_median", "target": 0.9},
}


def test_target_found_by_its_metric_or_its_key():
    assert _target_number(TARGETS, "key_transfer_median") == 0.7
    assert _target_number(TARGETS, "nonkey_ssim_median") == 0.9
    assert _target_number(TARGETS, "non-key SSIM (median)") == 0.9
    assert _target_number(TARGETS, "key_transfer_median_kl2_to_kl0") is None


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
