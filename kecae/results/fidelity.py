"""The ground-truth sections of `kecae evaluate` on phantom data: fidelity per direction and the
oracle's perfect exchanges.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kecae.results.base import DIRECTIONS, KL0_TO_KL2, KL2_TO_KL0, Rate, Section
from kecae.results.evaluation import ExchangeSuccess, Plausibility


@dataclass
class KeyTransfer(Section):
    """How far X' moved the recipient's joint-space width to the donor's (1 = the donor's);
    a refused measurement of X' counts as a failure."""

    median: float
    iqr: float
    success_rate: float  # share of informative pairs >= 0.7
    n: int  # informative pairs
    failed: int  # refused X' (failures)
    excluded: int  # uninformative pairs (recipient and donor widths too close)


@dataclass
class FidelityDirection(Section):
    """Ground-truth fidelity in one direction."""

    KEYS: ClassVar[dict[str, str]] = {
        "key_transfer_median": "key_transfer_median{s}",
        "key_transfer_iqr": "key_transfer_iqr{s}",
        "key_transfer_success_rate": "key_transfer_success_rate{s}",
        "key_transfer_n": "key_transfer_n{s}",
        "key_transfer_failed": "key_transfer_failed{s}",
        "key_transfer_excluded": "key_transfer_excluded{s}",
        "recon_key_transfer_median": "recon_key_transfer_median{s}",
        "recon_key_transfer_failed": "recon_key_transfer_failed{s}",
        "nonkey_ssim_median": "nonkey_ssim_median_{d}",
        "refusal_rate_x_ex": "refusal_rate_x_ex_{d}",
        "jsw_x_ex_median": "jsw_{image}_median",
    }
    #: per direction: the key suffix of the key-transfer entries, and the exchanged image
    NAMING: ClassVar[dict[str, tuple[str, str]]] = {
        KL0_TO_KL2: ("", "x1_ex"),
        KL2_TO_KL0: ("_kl2_to_kl0", "x2_ex"),
    }

    key_transfer_median: float  # against the real recipient and donor
    key_transfer_iqr: float
    key_transfer_success_rate: float
    key_transfer_n: int
    key_transfer_failed: int
    key_transfer_excluded: int
    recon_key_transfer_median: float  # against X̂ of recipient and donor (no blur penalty)
    recon_key_transfer_failed: int
    nonkey_ssim_median: float  # SSIM of X' vs its recipient outside the joint band
    refusal_rate_x_ex: float  # X' whose joint the measurement could not find
    jsw_x_ex_median: float  # median measured JSW of X', px

    @classmethod
    def key(cls, name: str, direction: str) -> str:
        suffix, image = cls.NAMING[direction]
        return cls.KEYS[name].format(s=suffix, d=direction, image=image)

    def flat(self, direction: str) -> dict[str, Any]:
        return {
            self.key(f.name, direction): getattr(self, f.name) for f in dataclasses.fields(self)
        }

    @classmethod
    def unflat(cls, d: dict[str, Any], direction: str) -> FidelityDirection:
        values: dict[str, Any] = {
            f.name: d.get(cls.key(f.name, direction)) for f in dataclasses.fields(cls)
        }
        return cls(**values)


@dataclass
class Fidelity(Section):
    """``fidelity`` (phantom data only): did X' take the donor's joint space and osteophytes
    and keep the recipient's anatomy elsewhere?"""

    NAME: ClassVar[str] = "fidelity"

    n: int  # test pairs
    directions: dict[str, FidelityDirection]
    nonkey_ssim_median: float  # both directions
    jsw_x1_median: float  # median measured JSW of the KL-0 inputs, px
    jsw_x2_median: float  # of the KL-2 inputs
    refusal_rate: float  # X' (both directions) whose joint could not be found
    refusal_rate_real: float  # real test images
    refusal_rate_recon: float  # reconstructions
    osteophyte_rate_real_kl0: Rate  # the osteophyte detector on real KL-0 test images
    osteophyte_rate_real_kl2: Rate
    osteophyte_rate_x1_ex: Rate  # on X'1 (should match real KL-2)
    osteophyte_rate_x2_ex: Rate  # on X'2 (should match real KL-0)
    osteophyte_rate_x1_self: Rate  # no-exchange output of X1 (control)
    osteophyte_rate_x2_self: Rate
    osteophyte_gap_kl0_to_kl2: float  # |rate on X'1 − rate on real KL-2|
    osteophyte_gap_kl2_to_kl0: float
    osteophyte_transfer_rate: Rate  # X'1 gains osteophytes when the donor has them
    osteophyte_removal_rate: Rate  # X'2 loses them when the donor has none

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        for d in DIRECTIONS:
            out.update(self.directions[d].flat(d))
        rest = super().to_dict()
        del rest["n"], rest["directions"]
        return {**out, **rest}

    @classmethod
    def from_dict(cls, d: Any) -> Fidelity:
        d = d if isinstance(d, dict) else {}
        base = super().from_dict({k: v for k, v in d.items() if k != "directions"})
        return dataclasses.replace(
            base, directions={x: FidelityDirection.unflat(d, x) for x in DIRECTIONS}
        )

    @classmethod
    def written_keys(cls) -> frozenset[str]:
        per_direction = {
            FidelityDirection.key(f.name, d)
            for d in DIRECTIONS
            for f in dataclasses.fields(FidelityDirection)
        }
        return (super().written_keys() - {"directions"}) | per_direction


@dataclass
class Oracle(Section):
    """``oracle`` (phantom data only): the evaluation's rules applied to perfect exchanges,
    rendered from the phantoms' ground truth (each recipient's parameters with its donor's key
    features). Their scores are the ceiling a generator can reach with this judge and this
    measurement; the controls (no-exchange outputs, reconstructions) are the model's own."""

    NAME: ClassVar[str] = "oracle"

    exchange_success: ExchangeSuccess = field(metadata={"read": ExchangeSuccess.from_dict})
    plausibility: Plausibility = field(metadata={"read": Plausibility.from_dict})
    fidelity: Fidelity = field(metadata={"read": Fidelity.from_dict})
    description: str = ""
