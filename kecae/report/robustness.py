"""The report's robustness section: the run's recipe trained afresh per seed
(``kecae study robustness``), every metric as mean ± std beside its worst seed."""

from __future__ import annotations

from kecae.report.load import RunData
from kecae.report.parts import escape, note, table
from kecae.results import Robustness, RobustnessMetric, format_value, mean_pm


def _cell(m: RobustnessMetric, i: int) -> str:
    text = format_value(m.values[i], m.kind)
    ok = m.met[i] if m.met else None
    if ok is None:
        return text
    return f'<span class="{"ok" if ok else "bad"}">{text} {"✓" if ok else "✗"}</span>'


def _worst(m: RobustnessMetric) -> str:
    if m.worst_seed is None:
        return "—"
    value = "missed" if m.worst is None else format_value(m.worst, m.kind)
    return f"{value} (seed {m.worst_seed})"


def robustness_section(run: RunData) -> str:
    """The table, or a note naming the command that makes it."""
    raw = run.section(Robustness.NAME)
    if not raw or not isinstance(raw.get("metrics"), list):
        return note(
            "Not computed: the recipe trained afresh per seed. Run <code>"
            + escape(f"kecae study robustness --run {run.run_dir} --seeds 3")
            + "</code>."
        )
    r = Robustness.from_dict(raw)
    header = ["Metric", "Target", "Mean ± std", "Worst (seed)"]
    header += [f"Seed {s}" for s in r.seeds]
    rows = [
        [escape(m.name), escape(m.target or ""), escape(mean_pm(m)), _worst(m)]
        + [_cell(m, i) for i in range(len(r.seeds))]
        for m in r.metrics
    ]
    met = ", ".join(f"{a} of {b}" for a, b in zip(r.targets_met, r.targets_total, strict=True))
    reused = (
        f" Seed {r.reused_seed} is the run's own supervisor, judge and KECAE."
        if r.reused_seed is not None
        else ""
    )
    return table(header, rows, "metrics") + note(
        escape(
            f"Targets met per seed: {met}; worst seed {r.worst_seed}. Every seed evaluated on "
            f"the same {r.eval_pairs} test pairs (pair seed {r.eval_seed}); rates in %." + reused
        )
        + " "
        + escape(r.note)
    )
