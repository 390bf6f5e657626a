"""The ``tune`` section of metrics.json as console text."""

from __future__ import annotations

import math
from typing import Any

from kecae.results import (
    TUNE_OBJECTIVE_TERMS,
    Tune,
)


def _num(value: Any, fmt: str = "{:.3f}") -> str:
    return "—" if value is None else fmt.format(value)


def format_tune(section: dict[str, Any]) -> str:
    """The trials (best first) and the final comparison as text."""
    tune = Tune.from_dict(section)
    names = list(tune.search_space or {})
    lines = [
        f"{len(tune.trials)} trials, {tune.steps} steps × {tune.batch_size} pairs each; "
        f"objective on {tune.eval_pairs} validation pairs (higher is better)",
        f"{'trial':>6}{'objective':>11}  " + "".join(f"{n[:12]:>13}" for n in names),
    ]
    ranked = sorted(
        tune.trials, key=lambda t: -math.inf if t.objective is None else t.objective, reverse=True
    )
    for t in ranked:
        cells = "".join(f"{_param(t.params.get(n)):>13}" for n in names)
        mark = " *" if t.number == tune.best_trial else ""
        state = "" if t.state == "COMPLETE" else f"  ({t.state.lower()})"
        lines.append(f"{t.number:>6}{_num(t.objective):>11}  {cells}{mark}{state}")
    if tune.final:
        terms = list(TUNE_OBJECTIVE_TERMS)
        lines += [
            "",
            "best trial vs the paper's λ and the run's settings, same steps; objective on "
            "validation and on test pairs, then the test terms",
            f"{'row':<7}{'val':>7}{'test':>7}"
            + "".join(f"{t[:13]:>15}" for t in terms)
            + f"{'targets':>9}",
        ]
        for row in tune.final:
            cells = "".join(f"{_num(row.test_terms.get(t)):>15}" for t in terms)
            lines.append(
                f"{row.name:<7}{_num(row.val_objective):>7}{_num(row.test_objective):>7}{cells}"
                f"{row.targets_met}/{row.targets_total}".rjust(9)
            )
        lines += [f"  {row.name}: {row.description} {row.params or ''}" for row in tune.final]
    lines.append(f"objective: {tune.objective}")
    return "\n".join(lines)


def params_text(params: dict[str, Any]) -> str:
    """A trial's settings on one line: floats to 3 significant digits, choices as they are."""
    return ", ".join(f"{k} {_param(v)}" for k, v in params.items())


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)
