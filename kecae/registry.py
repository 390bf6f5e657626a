"""Named components: every choice the command line offers, with a one-line description.

A :class:`Registry` lists names and descriptions without importing the code behind them: an entry
names its factory as ``"module:attribute"``, imported on first :meth:`Component.load`. So
``kecae --help`` and ``kecae data check`` start without torch, and the CLI's choices, the
configuration checks and the model builders read one list::

    >>> from kecae.registry import CLASSIFIERS
    >>> list(CLASSIFIERS)
    ['resnet18', 'vgg11', 'densenet201', 'siamese', 'small']
    >>> model = CLASSIFIERS["small"].load()(config)   # imports kecae.models.classifiers
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Component:
    """One registered name."""

    name: str
    description: str
    target: str | None = None  # "module:attribute" of its factory; None for a plain option
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. a classifier's min_size

    def load(self) -> Callable[..., Any]:
        """The factory, imported now."""
        if self.target is None:
            raise TypeError(f"{self.name!r} is an option name, not a component to build")
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


class Registry(Mapping[str, Component]):
    """An ordered, read-only mapping ``name -> Component`` of one kind of component."""

    def __init__(self, kind: str, components: list[Component]) -> None:
        self.kind = kind
        self._components = {c.name: c for c in components}

    def __getitem__(self, name: str) -> Component:
        try:
            return self._components[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {list(self)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._components)

    def __len__(self) -> int:
        return len(self._components)

    def describe(self) -> str:
        """One line per name: ``name: description``."""
        return "\n".join(f"{c.name}: {c.description}" for c in self._components.values())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self)})"


_PRESETS = "kecae.models.presets"
_CLASSIFIERS = "kecae.models.classifiers"

#: Named KECAE sizes (``kecae train --preset``); each factory returns a ``KECAEConfig``.
PRESETS = Registry(
    "KECAE preset",
    [
        Component("paper", "the paper: 299 px, channels 32…2048", f"{_PRESETS}:paper"),
        Component("cpu", "a 2-core CPU: 64 px, channels 4…256", f"{_PRESETS}:cpu"),
        Component(
            "cpu_fill",
            "cpu + a masked healthy fill that can remove a spur (~1/3 of cpu's speed)",
            f"{_PRESETS}:cpu_fill",
        ),
        Component("tiny", "tests: 32 px, channels 4…64", f"{_PRESETS}:tiny"),
    ],
)

#: The classifier zoo (supervisor, judge, downstream models); each factory takes a
#: ``ClassifierConfig``. ``min_size`` is the smallest input side the network accepts.
CLASSIFIERS = Registry(
    "classifier",
    [
        Component(
            "resnet18",
            "torchvision ResNet-18, 1-channel stem, from scratch",
            f"{_CLASSIFIERS}:resnet18",
            {"min_size": 32},
        ),
        Component(
            "vgg11",
            "torchvision VGG-11-BN, global-average-pool head",
            f"{_CLASSIFIERS}:vgg11",
            {"min_size": 32},
        ),
        Component(
            "densenet201",
            "torchvision DenseNet-201, 1-channel stem",
            f"{_CLASSIFIERS}:densenet201",
            {"min_size": 32},
        ),
        Component(
            "siamese",
            "two joint patches, shared 4-block trunk",
            f"{_CLASSIFIERS}:SiameseClassifier",
            {"min_size": 32},
        ),
        Component(
            "small",
            "fast 4-block CNN for tests and quick runs",
            f"{_CLASSIFIERS}:small",
            {"min_size": 16},
        ),
    ],
)

#: How J_LDA takes its statistics (``kecae.losses.lda_term``).
LDA_MODES = Registry(
    "LDA mode",
    [
        Component("image", "the paper's Eq. 7: mean and variance per image"),
        Component("batch", "the released code: one mean and variance over the whole batch"),
        Component("log", "log(1 + the per-image ratio): bounded"),
    ],
)

#: The reconstruction term of the hybrid loss (``kecae.losses.reconstruction_term``).
RECON_LOSSES = Registry(
    "reconstruction loss",
    [
        Component("mse", "mean squared error (the paper)"),
        Component("l1", "mean absolute error (blurs less)"),
    ],
)

#: What J_SUP asks the supervisor to say about an exchanged image (``kecae.losses.TERMS``).
SUP_TARGETS = Registry(
    "supervision target",
    [
        Component("label", "the donor's grade label (the paper)"),
        Component("donor", "the supervisor's own call on the donor image (soft)"),
        Component(
            "donor_logit",
            "the supervisor's logits on the donor image, matched by a Huber loss (no further)",
        ),
    ],
)

#: How a trainer's learning rate moves over its steps (``kecae.training.schedule.lr_factor``).
LR_SCHEDULES = Registry(
    "learning-rate schedule",
    [
        Component("constant", "the set rate at every step"),
        Component("cosine", "a half cosine from the set rate at the first step to 0 at the end"),
    ],
)


#: Which exchanged images the local grade critic's term reads (``kecae.local_critic``).
LOCAL_SIDES = Registry(
    "local critic sides",
    [
        Component("both", "no place of X'2 may look like the higher grade, some place of X'1 must"),
        Component("removal", "X'2 only: no place of it may look like the higher grade"),
    ],
)

#: What the local grade critic learns as X'2's fakes with ``local_fakes`` (``kecae.losses``).
LOCAL_FAKES_FROM = Registry(
    "local critic fakes",
    [
        Component("exchanged", "X'2 itself, detached"),
        Component(
            "warped",
            "the recipient moved by X'2's warp, before any edit: its joint is widened, so what "
            "is left to tell it from a real lower grade is the margin",
        ),
    ],
)

#: How the supervisor takes part in KECAE training.
SUPERVISOR_MODES = Registry(
    "supervisor mode",
    [
        Component("frozen", "a trained classifier, frozen (the paper)"),
        Component("joint", "trained together with KECAE (the released code)"),
    ],
)

#: Augmentation of a classifier's training batches.
AUGMENTATIONS = Registry(
    "augmentation",
    [
        Component("none", "the images as they are"),
        Component("classic", "flips, small rotations, intensity changes"),
        Component(
            "warp",
            "random displacement fields like the warp exchange's (up to 3/64 of the side) on "
            "half of each batch, labels kept",
        ),
        Component("mixup", "mixup: two images and their labels blended, weight ~ Beta(0.2, 0.2)"),
        Component("cutmix", "CutMix: a box pasted from another image, labels by area"),
    ],
)
#: Augmentations that mix two images of a batch (their loss weighs both labels).
MIXING = ("mixup", "cutmix")


@dataclass(frozen=True)
class Param:
    """One setting ``kecae tune`` searches: what it is, a log-uniform range or a list of choices,
    a field of the model (``KECAEConfig``) or of training (``KECAETrainConfig``), and whether it
    needs a warp model."""

    label: str  # what the setting is, for --help and the report
    where: str  # "model" or "train"
    log_range: tuple[float, float] | None = None
    choices: tuple[Any, ...] = ()
    warp_only: bool = False

    def suggest(self, trial: Any, name: str) -> Any:
        """The value an Optuna trial picks for this setting."""
        if self.log_range is not None:
            return trial.suggest_float(name, *self.log_range, log=True)
        return trial.suggest_categorical(name, list(self.choices))

    def contains(self, value: Any) -> bool:
        """Whether ``value`` lies in this setting's range or choices."""
        if self.log_range is not None:
            return (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and self.log_range[0] <= value <= self.log_range[1]
            )
        return value in self.choices

    def describe(self) -> str:
        if self.log_range is not None:
            return f"log-uniform {self.log_range[0]:g} … {self.log_range[1]:g}"
        return "one of " + ", ".join(map(str, self.choices))


#: What ``kecae tune`` searches, with the ranges (:data:`TUNE_PARAMS` lists it for the CLI).
SEARCH_SPACE: dict[str, Param] = {
    "lambda_sup": Param("λ1, weight of J_SUP", "train", log_range=(1e-3, 1.0)),
    # 0 is a choice (the warp rows of the ablation train without J_LDA): a list, not a range
    "lambda_lda": Param("λ2, weight of J_LDA", "train", choices=(0.0, 1e-5, 1e-4, 1e-3, 1e-2)),
    "lr": Param("Adam learning rate", "train", log_range=(1e-4, 3e-3)),
    "width": Param("channel width of the model", "model", choices=(0.125, 0.25)),
    "warp_grid": Param(
        "warp exchange: displacement grid (warp models only)",
        "model",
        choices=(8, 16, 32),
        warp_only=True,
    ),
    "lambda_disp": Param(
        "warp exchange: displacement penalty (warp models only)",
        "train",
        log_range=(1e-3, 1e-1),
        warp_only=True,
    ),
    "lambda_cycle": Param(
        "re-encoding X' gives back its latents", "train", choices=(0.0, 0.3, 1.0)
    ),
    "sup_target": Param(
        "J_SUP target: the donor's label or the supervisor's call on it",
        "train",
        choices=("label", "donor"),
    ),
}

#: What ``kecae tune`` can search: :data:`SEARCH_SPACE`'s names, each described with its range.
TUNE_PARAMS = Registry(
    "tuned setting",
    [Component(name, f"{p.label}: {p.describe()}") for name, p in SEARCH_SPACE.items()],
)
