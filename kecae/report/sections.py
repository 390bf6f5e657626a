"""The report's sections in page order: (anchor, heading, builder), one builder per section, each
from the run folder's data to HTML.

The builders live in one module per part of the page (:mod:`.summary`, :mod:`.exchange`,
:mod:`.measures`, :mod:`.grade_match`, :mod:`.downstream`, :mod:`.ablation`, :mod:`.robustness`,
:mod:`.tune`, :mod:`.recipe`); numbers are read through the typed sections of :mod:`kecae.results`,
and the keys of the generic metric tables are checked against them in :mod:`.rows`. A missing part
becomes a note naming the command that makes it (:mod:`.missing`); a part that cannot be drawn
becomes a note, never a lost page.
"""

from __future__ import annotations

from collections.abc import Callable

from kecae.report.ablation import ablation_section
from kecae.report.data import data_section
from kecae.report.downstream import downstream_section, shortcut_section
from kecae.report.exchange import examples_section, exchange_section
from kecae.report.grade_match import grade_match_section
from kecae.report.load import RunData
from kecae.report.measures import (
    fidelity_section,
    plausibility_section,
    quality_section,
    separability_section,
)
from kecae.report.missing import drawn_figure, missing_note
from kecae.report.recipe import configuration_section, generator_section, training_section
from kecae.report.robustness import robustness_section
from kecae.report.summary import headline_section, targets_section
from kecae.report.tune import tune_section


def _downstream(run: RunData) -> str:
    return downstream_section(
        run, drawn_figure, missing_note("downstream classifiers on T vs T′", "downstream", run)
    )


def _downstream_shortcut(run: RunData) -> str:
    return shortcut_section(
        run,
        drawn_figure,
        missing_note("the study in the shortcut regime", "downstream_shortcut", run),
    )


#: (anchor, heading, builder) in page order.
SECTIONS: list[tuple[str, str, Callable[[RunData], str]]] = [
    ("data", "The data", data_section),
    ("headline", "Headline numbers", headline_section),
    ("targets", "Targets", targets_section),
    ("generator", "The generator", generator_section),
    ("examples", "Key-exchange examples", examples_section),
    ("exchange", "Exchange success", exchange_section),
    ("plausibility", "Plausibility", plausibility_section),
    ("fidelity", "Fidelity to the ground truth", fidelity_section),
    (
        "grade-match",
        "X′ against real knees of its grade, and the judge's disagreements",
        grade_match_section,
    ),
    ("separability", "Separability of key features", separability_section),
    ("quality", "Image quality", quality_section),
    ("downstream", "Downstream benefit", _downstream),
    ("downstream_shortcut", "Downstream benefit, shortcut regime", _downstream_shortcut),
    ("ablation", "Ablation of the KECAE options", ablation_section),
    ("robustness", "Robustness: the recipe trained afresh per seed", robustness_section),
    ("tune", "Tuning λ1, λ2 and the exchange options", tune_section),
    ("training", "Training curves", training_section),
    ("configuration", "Configuration", configuration_section),
]
