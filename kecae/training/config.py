"""Typed training configurations. Paper values are the defaults; every field can come from the
command line or a YAML file (:mod:`kecae.config`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kecae.config import Range, check_values, setting
from kecae.errors import KecaeError
from kecae.registry import (
    AUGMENTATIONS,
    CLASSIFIERS,
    LDA_MODES,
    LOCAL_FAKES_FROM,
    LOCAL_SIDES,
    LR_SCHEDULES,
    MIXING,
    PRESETS,
    RECON_LOSSES,
    SUP_TARGETS,
    SUPERVISOR_MODES,
)

if TYPE_CHECKING:
    from kecae.models.autoencoder import KECAEConfig

# The model presets (torch) are imported when a preset is resolved: the command line imports
# these settings and stays light.


@dataclass
class ClassifierTrainConfig:
    """Training of a classifier of two KL grades, KL-0 vs KL-2 by default (the supervisor, the
    judge, or a downstream model). Class 0 is the lower grade, class 1 the higher."""

    value_ranges: ClassVar[dict[str, Range]] = {
        "eval_every": (0, math.inf, True, "a whole number >= 0 (0: max_steps / 30)"),
        "mix_ratio": (0, math.inf, True, "a number >= 0 (generated per real image in a batch)"),
        "pretrain_steps": (0, math.inf, True, "a whole number >= 0"),
    }

    data: str = ""  # data set: folder layout, manifest CSV, or phantom folder
    out: str = "runs/classifier"  # run folder (checkpoints, logs, metrics.json)
    grades: list[int] = setting(
        factory=lambda: [0, 2], flag="--grades", metavar="G"
    )  # the two KL grades told apart (class 0, class 1), e.g. 0 1
    arch: str = setting("siamese", choices=CLASSIFIERS)  # classifier architecture
    model: dict[str, Any] = field(default_factory=dict)  # other ClassifierConfig fields
    image_size: int = 64  # side of the square model input, px
    augment_dirs: list[str] = field(default_factory=list)  # generated sets merged into train (T')
    augment: str = setting("none", choices=AUGMENTATIONS)  # classic, mixup or cutmix (batch-level)
    real_grades: list[int] | None = None  # grades of the real training split kept (None: all)
    mix_dirs: list[str] = field(default_factory=list)  # generated sets drawn into every batch
    mix_ratio: float = 0.0  # with --max-steps: generated per real image in each batch
    pretrain_steps: int = 0  # with --max-steps: first steps on --mix-dirs alone, then real only
    adv_eps: float = setting(
        0.0, range=(0, 1, True, "a number in [0, 1] (image units; images lie in [-1, 1])")
    )  # adversarial training: every batch replaced by its PGD attack within this L-inf radius
    adv_steps: int = setting(
        3, range=(1, 100, True, "a whole number of steps in [1, 100]")
    )  # PGD steps per batch with --adv-eps (step size 2.5 · eps / steps, random start)
    max_steps: int = 0  # train exactly this many optimiser steps, no early stopping (0: epochs)
    eval_every: int = 0  # with --max-steps: steps between validations (0: max_steps / 30)
    epochs: int = 30  # maximum epochs
    patience: int = 6  # early stopping: epochs without a better validation accuracy
    batch_size: int = 64  # global batch (sum over ranks)
    lr: float = 1e-3  # AdamW learning rate
    lr_schedule: str = setting("constant", choices=LR_SCHEDULES)  # cosine: to 0 at end
    weight_decay: float = 1e-4  # AdamW weight decay
    balance: bool = True  # bootstrap-oversample the minority class in each epoch
    max_train: int = 0  # use at most this many training images (0: all); for quick runs
    seed: int = 0  # seeds initialisation and batch order
    device: str = "auto"  # auto / cpu / cuda
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    channels_last: bool = True  # NHWC memory layout (measured 1.2-1.7x faster on a 2-core CPU)
    cache_dir: str | None = None  # preprocessed-image cache (default: next to the data)
    progress: bool = True  # progress bars
    resume: bool = True  # continue an interrupted run in --out; --no-resume refuses a used folder
    fresh: bool = False  # leave a used --out as it is and train afresh in OUT-2 (OUT-3, ...)
    patient_regex: str | None = None  # folder layout: regex with a group 'patient' (see data check)
    accept_data_problems: bool = False  # train despite fatal `kecae data check` problems (recorded)
    data_version: str = setting(
        "", hidden=True
    )  # the data set's version from the data check (set by kecae; another one is refused)

    def __post_init__(self) -> None:
        if self.adv_eps > 0 and self.augment in MIXING:
            raise KecaeError(
                f"--adv-eps {self.adv_eps} with --augment {self.augment}: the attack needs one "
                "label per image; use --augment none or classic"
            )


@dataclass
class LossSettings:
    """The KECAE training loss (:func:`kecae.losses.kecae_loss`): one weight per term of
    :data:`kecae.losses.TERMS` (paper values as defaults: J = J_MSE + λ1·J_SUP + λ2·J_LDA, every
    term beyond the paper off) and the options of those terms. Checked once, when built."""

    lambda_sup: float = 1e-2  # lambda_1, weight of J_SUP (paper optimum)
    lambda_lda: float = 1e-3  # lambda_2, weight of J_LDA (paper optimum)
    lda_eps: float = 1e-6  # keeps J_LDA finite when the two means coincide
    lda_mode: str = setting("image", choices=LDA_MODES)  # image (Eq. 7), batch (released code), log
    recon: str = setting("mse", choices=RECON_LOSSES)  # reconstruction term: mse (paper) or l1
    lambda_disp: float = 0.0  # warp exchange: weight of the mean squared displacement (px²)
    lambda_disp_l1: float = 0.0  # warp exchange: weight of the mean displacement length (px)
    lambda_smooth: float = 0.0  # warp exchange: weight of the field's squared gradient
    lambda_fold: float = 0.0  # warp exchange: weight of the fold penalty relu(0.5 − det J)
    lambda_edit: float = 0.0  # L1 on intensity edits a warp does not explain (sparse residuals)
    lambda_cycle: float = 0.0  # re-encoding X' gives back the latents it was made of
    lambda_same: float = 0.0  # a key exchanged between two knees of one grade changes little
    sup_target: str = setting("label", choices=SUP_TARGETS)  # J_SUP: donor's label (paper) or look
    sup_perturb: float = 0.0  # random shift / blur (px) of X' before the supervisor (0: none)
    lambda_key_cls: float = 0.0  # linear probe: the key vector must tell the grade
    lambda_nonkey_adv: float = 0.0  # adversarial probe (gradient reversal): hN must not
    lambda_mask_area: float = 0.0  # edit: the mask's area above mask_free_area
    lambda_mask_self: float = 0.0  # edit: the mask of the no-exchange control (own key)
    lambda_control: float = 0.0  # edit "healthy": L1 change the fill makes to the control; ramped
    lambda_mask_tv: float = 0.0  # edit: the mask's total variation (one region, not speckle)
    mask_free_area: float = setting(
        0.05, range=(0, 1, True, "a share of the image in [0, 1]")
    )  # edit: share of the image a mask covers free of charge
    lambda_inpaint: float = 0.0  # edit "healthy": the inpainter's L1 on masked real X1 knees
    inpaint_mask_margin: float = setting(
        0.05, range=(0, 0.45, True, "a share of the image side in [0, 0.45]")
    )  # edit "healthy": the inpainter's training masks are centred this far from the edges
    lambda_patch_adv: float = 0.0  # grade-conditional patch discriminator on crops of X'
    lambda_local_sup: float = 0.0  # local grade critic (real images only) on every place of X'
    local_sides: str = setting("both", choices=LOCAL_SIDES)  # the critic's term on X'1 and X'2
    local_fakes: bool = False  # the local critic also learns X'2 as "not a real lower grade"
    local_fakes_from: str = setting(
        "exchanged", choices=LOCAL_FAKES_FROM
    )  # local_fakes: X'2 itself, or the recipient moved by its warp before any edit
    patch_crop: float = setting(
        0.5, range=(0, 1, False, "a share of the image side in (0, 1]")
    )  # patch discriminator: crop side as a share of the image side
    module_updates: int = setting(
        1, range=(1, 16, True, "a whole number of updates in [1, 16]")
    )  # steps of each loss module with its own optimiser (patch discriminator, critic) per step
    adv_ramp: int = setting(
        500, range=(0, float("inf"), True, "a whole number of steps >= 0")
    )  # steps over which the patch adversary's, the local critic's and the control's weights rise

    def __post_init__(self) -> None:
        check_values(self)

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> LossSettings:
        """The loss settings among ``values`` (e.g. a preset's training settings), the rest
        left at their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class _KECAERecipe:
    """The fields of :class:`KECAETrainConfig` before its loss settings."""

    data: str = ""  # data set with training images of both grades
    out: str = "runs/kecae"  # run folder
    grades: list[int] = setting(
        factory=lambda: [0, 2], flag="--grades", metavar="G"
    )  # the two KL grades exchanged (X1 of the first, X2 of the second), e.g. 0 1
    supervisor: str = ""  # classifier checkpoint (frozen supervisor); optional in joint mode
    supervisors: int = setting(
        1, range=(1, 64, True, "a whole number of frozen supervisors in [1, 64]"), metavar="K"
    )  # frozen supervisors trained from different seeds; J_SUP is the mean of their losses
    supervisor_members: list[str] = setting(
        factory=list, flag="--supervisor-members", metavar="CKPT"
    )  # with --supervisors K > 1: the checkpoints of members 1..K-1 (member 0: --supervisor)
    supervisor_mode: str = setting("frozen", choices=SUPERVISOR_MODES)  # frozen (paper) or joint
    joint_arch: str = setting("siamese", choices=CLASSIFIERS)  # joint mode: supervisor architecture
    preset: str = setting("cpu", choices=PRESETS)  # model preset: paper / cpu / cpu_fill / tiny
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    num_pairs: int = 100_000  # N pairs sampled from the KL-0 x KL-2 product (paper: 100k)
    oversample: bool = False  # bootstrap the minority class to the majority size before pairing
    # classic augmentation (flip, ±7° rotation, intensity) of both images of every pair, each its
    # own draw, before the model sees them: the key cannot learn the training knees as they are
    augment_pairs: bool = False
    epochs: int = 1000  # passes over the N pairs (paper: 1,000)
    max_steps: int = 0  # stop after this many optimiser steps (0: epochs decide)
    batch_size: int = 32  # global batch of pairs (paper: 32)
    lr: float = 1e-4  # Adam learning rate (paper: 1e-4)
    lr_schedule: str = setting(
        "constant", choices=LR_SCHEDULES
    )  # constant (paper), or cosine: every optimiser's rate to 0 at the last step


# Fields in order: the recipe, the loss settings, then logging and where it runs (a dataclass
# takes the fields of its bases from the last base to the first).
@dataclass
class KECAETrainConfig(LossSettings, _KECAERecipe):
    """Training of KECAE (Algorithm 1) with the hybrid loss."""

    log_every: int = 10  # steps between log rows
    sample_every: int = 200  # steps between sample grids
    ckpt_every: int = 200  # steps between checkpoints
    seed: int = 0  # seeds initialisation, pair sampling and batch order
    device: str = "auto"  # auto / cpu / cuda
    amp: bool = True  # bf16 autocast on GPU (ignored on CPU)
    channels_last: bool = True  # NHWC memory layout (measured 1.8x faster on a 2-core CPU)
    cache_dir: str | None = None  # preprocessed-image cache
    progress: bool = True  # progress bar
    resume: bool = True  # continue from --out's last checkpoint; --no-resume refuses a used folder
    fresh: bool = False  # leave a used --out as it is and train afresh in OUT-2 (OUT-3, ...)
    patient_regex: str | None = None  # folder layout: regex with a group 'patient' (see data check)
    accept_data_problems: bool = False  # train despite fatal `kecae data check` problems (recorded)
    data_version: str = setting(
        "", hidden=True
    )  # the data set's version from the data check (set by kecae; another one is refused)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ensemble(self.supervisors, self.supervisor_members, self.supervisor_mode)


#: Seeds of a supervisor ensemble's members lie this far apart: member k of a supervisor of seed
#: s has seed s + k * stride, so the ensembles of neighbouring seeds (the robustness study's
#: seeds, a judge trained at seed s + 1) share no classifier.
MEMBER_SEED_STRIDE = 1000


def member_seed(seed: int, k: int) -> int:
    """The seed of member ``k`` of the supervisor ensemble whose member 0 has ``seed``."""
    return seed + MEMBER_SEED_STRIDE * k


def check_ensemble(supervisors: int, members: list[str], mode: str) -> None:
    """A supervisor ensemble is K frozen classifiers: K - 1 member checkpoints beside
    ``--supervisor`` (the pipeline and the studies train them: :mod:`kecae.training.members`)."""
    if supervisors > 1 and mode != "frozen":
        raise ValueError(
            f"--supervisors {supervisors} needs frozen supervisors: drop --supervisors or use "
            "--supervisor-mode frozen"
        )
    if len(members) != supervisors - 1:
        raise ValueError(
            f"--supervisors {supervisors} needs {supervisors - 1} --supervisor-members "
            f"checkpoint(s) beside --supervisor, got {len(members)}: train them with "
            "`kecae train-classifier --seed S` (other seeds) or let `kecae run` / `kecae demo` "
            "train them"
        )


#: Fields that may change when a run resumes or a finished run is reused: stopping criteria,
#: logging and where it runs. Every other field changes the trained model.
KECAE_MAY_CHANGE = (
    "max_steps",
    "epochs",
    "log_every",
    "sample_every",
    "ckpt_every",
    "progress",
    "device",
    "cache_dir",
    "resume",
    "fresh",
    "accept_data_problems",
    "out",
)
CLASSIFIER_MAY_CHANGE = (
    "epochs",
    "patience",
    "progress",
    "device",
    "cache_dir",
    "resume",
    "fresh",
    "accept_data_problems",
    "out",
)


def kecae_model_config(cfg: KECAETrainConfig) -> KECAEConfig:
    """The KECAE model a training configuration describes: its preset with its overrides."""
    from kecae.models.presets import kecae_config

    try:
        return kecae_config(cfg.preset, **cfg.model)
    except (ValueError, TypeError) as exc:
        raise KecaeError(f"model preset/overrides: {exc}") from exc
