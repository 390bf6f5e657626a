"""The sections `kecae evaluate` writes on any data: separability, plausibility, exchange success,
the two classifiers, image quality and the targets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from kecae.results.base import DIRECTIONS, Rate, S, Section, optional


@dataclass
class Separability(Section):
    """``separability``: the paper's Fig. 3 metric, SVM-RBF accuracy on the latents of test
    images, beside the same SVM on the judge's penultimate features."""

    NAME: ClassVar[str] = "separability"

    svm_hk_accuracy: float  # 5-fold accuracy on the key vectors hK (mean over folds)
    svm_hk_accuracy_std: float  # sample std over the folds
    svm_hn_accuracy: float  # on the non-key vectors hN
    svm_hn_accuracy_std: float
    svm_judge_features_accuracy: float  # on the judge's features of the same images
    svm_judge_features_accuracy_std: float
    n: int  # test images
    folds: int
    latent_dim: int  # elements of one flattened hN
    key_dim: int  # elements of one flattened hK


@dataclass
class Plausibility(Section):
    """``plausibility``: share of images that pass a rule fitted on real training images and
    thresholded on real validation images; the real test images are its control."""

    NAME: ClassVar[str] = "plausibility"

    quantile: float  # nominal pass rate of real held-out images
    n_fit: int  # real training images the Gaussian is fitted on
    n_calibration: int  # real validation images that set the threshold
    real_test: Rate  # control: real test images passing
    x_ex: Rate  # exchanged images X' (both directions) passing
    x_ex_kl0_to_kl2: Rate
    x_ex_kl2_to_kl0: Rate
    recon: Rate  # reconstructions X̂ passing
    control: Rate  # no-exchange outputs passing
    features_only_real_test: Rate  # the feature rule alone (no joint-found condition)
    features_only_x_ex: Rate
    ratio_to_real: float  # x_ex / real_test
    knn_real_test: Rate  # k-NN manifold precision against the training images
    knn_x_ex: Rate
    knn_recon: Rate
    rule: str  # the rule in words


@dataclass
class ClassifierRates(Section):
    """One classifier's calls in one direction: the donor's grade on X' and its controls."""

    KEYS: ClassVar[dict[str, str]] = {
        "raw": "{who}_{d}_raw",
        "control": "{who}_control_{d}",
        "recon": "{who}_recon_{d}",
        "lift": "{who}_lift_{d}",
        "success": "{who}_{d}",
        "agreement": "{who}_agreement_{d}",
        "agreement_control": "{who}_agreement_control_{d}",
        "relative": "{who}_relative_{d}",
    }

    raw: Rate  # X' called the donor's grade (label only)
    control: Rate  # the same on the no-exchange output (the recipient given its own key)
    recon: Rate  # the same on the reconstruction X̂
    lift: float  # raw − control

    @classmethod
    def key(cls, name: str, who: str, direction: str) -> str:
        """The metrics.json key of field ``name`` of ``who`` in ``direction``."""
        return cls.KEYS[name].format(who=who, d=direction)

    def flat(self, who: str, direction: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value, key = getattr(self, f.name), self.key(f.name, who, direction)
            out.update(value.items(key) if isinstance(value, Rate) else {key: value})
        return out

    @classmethod
    def unflat(cls: type[S], d: dict[str, Any], who: str, direction: str) -> S:
        values = {}
        for f in dataclasses.fields(cls):
            key = ClassifierRates.key(f.name, who, direction)
            values[f.name] = Rate.read(d, key) if f.type in ("Rate", Rate) else d.get(key)
        return cls(**values)


@dataclass
class JudgeRates(ClassifierRates):
    """The independent judge in one direction: also success and agreement with the donor."""

    success: Rate  # the donor's grade AND a plausible image
    agreement: Rate  # X' gets the grade the judge gives the donor itself
    agreement_control: Rate  # the same on the no-exchange output
    relative: float  # raw / the judge's recall on real test images of the donor's grade


@dataclass
class ExchangeSuccess(Section):
    """``exchange_success``: does X' take the donor's grade? The judge (never seen by the
    generator) and the supervisor (which trained it), each beside its controls."""

    NAME: ClassVar[str] = "exchange_success"

    n: int  # test pairs
    judge_independent: bool  # other architecture and seed than the supervisor
    judge: dict[str, JudgeRates]  # per direction
    supervisor: dict[str, ClassifierRates]  # per direction
    rule: str  # the rules in words

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "judge_independent": self.judge_independent}
        for d in DIRECTIONS:
            out.update(self.judge[d].flat("judge", d))
            out.update(self.supervisor[d].flat("supervisor", d))
        out["rule"] = self.rule
        return out

    @classmethod
    def from_dict(cls, d: Any) -> ExchangeSuccess:
        d = d if isinstance(d, dict) else {}
        return cls(
            n=d.get("n"),
            judge_independent=d.get("judge_independent"),
            judge={x: JudgeRates.unflat(d, "judge", x) for x in DIRECTIONS},
            supervisor={x: ClassifierRates.unflat(d, "supervisor", x) for x in DIRECTIONS},
            rule=d.get("rule"),
        )

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        empty: dict[str, Any] = {}
        names = {"n", "judge_independent", "rule"}
        for d in DIRECTIONS:
            for who, rates in (("judge", JudgeRates), ("supervisor", ClassifierRates)):
                names.update(rates.unflat(empty, who, d).flat(who, d))
        return frozenset(names)


@dataclass
class JudgeSummary(Section):
    """``judge``: the independent classifier and its accuracy on every real test image."""

    NAME: ClassVar[str] = "judge"

    arch: str
    checkpoint: str  # path of its weights
    seed: int | None
    test_accuracy: float
    n_test: int
    confusion: list[list[int]]  # [[tn, fp], [fn, tp]], KL-2 positive
    auc: float
    recall_kl2: float
    recall_kl0: float
    test_accuracy_at_training: float | None = optional()  # its own run's test accuracy


@dataclass
class SupervisorSummary(Section):
    """``supervisor``: the classifier whose loss trained KECAE."""

    NAME: ClassVar[str] = "supervisor"

    arch: str
    checkpoint: str
    seed: int | None
    test_accuracy: float | None  # from its run's metrics.json


@dataclass
class Quality(Section):
    """``quality``: reconstruction PSNR / SSIM and in-domain Fréchet distances."""

    NAME: ClassVar[str] = "quality"

    recon_psnr: float  # dB, X̂ vs X
    recon_psnr_std: float
    recon_ssim: float
    recon_ssim_std: float
    n: int  # images
    frechet: float  # X' vs real test images, judge features
    frechet_recon: float  # X̂ vs real test images
    frechet_real_floor: float  # two halves of the real training images
    frechet_feature: str  # which features
    frechet_n_real: int
    frechet_n_generated: int
    # median share of the image an edit mask covers; left out for a model without an edit
    edit_mask_area_kl0_to_kl2: float | None = optional()
    edit_mask_area_kl2_to_kl0: float | None = optional()


@dataclass
class Target(Section):
    """One target: the metric, the wanted side of a threshold, the measured value, and whether
    it is met (None when not computed)."""

    metric: str  # section.key in metrics.json
    target: str  # e.g. ">= 0.9"
    value: Any
    met: bool | None
    oracle: Any = optional()  # the same metric on perfect (oracle) exchanges; phantoms only

    @property
    def threshold(self) -> float:
        return float(self.target.split()[1])

    @property
    def op(self) -> str:
        return self.target.split()[0]


def read_targets(d: Any) -> dict[str, Target]:
    """The ``targets`` section: name -> :class:`Target`."""
    if not isinstance(d, dict):
        return {}
    return {
        name: Target.from_dict(t if isinstance(t, dict) else {"value": t}) for name, t in d.items()
    }
