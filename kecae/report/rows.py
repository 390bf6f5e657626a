"""The keys the report's metric tables and headline cards show, with their labels and kinds.

Every key is checked against the typed sections of :mod:`kecae.results` when this module is
imported, so a renamed metric breaks the report loudly, not silently.
"""

from __future__ import annotations

from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    Plausibility,
    Quality,
    Section,
    Separability,
)

#: A row of a metric table: (metrics.json key, label, kind of number).
Row = tuple[str, str, str]


def known_rows(section: type[Section], rows: list[Row]) -> list[Row]:
    """``rows``, each key checked against what ``section`` writes."""
    for key, _label, _kind in rows:
        section.path(key)  # KeyError for a key the section does not have
    return rows


def fid_key(name: str, direction: str = KL0_TO_KL2) -> str:
    return FidelityDirection.key(name, direction)


def judge_key(name: str, direction: str) -> str:
    return ClassifierRates.key(name, "judge", direction)


def supervisor_key(name: str, direction: str) -> str:
    return ClassifierRates.key(name, "supervisor", direction)


# Labels and formats of the known metrics.json keys, per section, in display order.
SEPARABILITY_ROWS = known_rows(
    Separability,
    [
        ("svm_hk_accuracy", "SVM-RBF accuracy on the key vectors hK", "pct"),
        ("svm_hn_accuracy", "SVM-RBF accuracy on the non-key vectors hN", "pct"),
        (
            "svm_judge_features_accuracy",
            "Reference: the same SVM on the judge's features of the same images",
            "pct",
        ),
    ],
)


PLAUSIBILITY_ROWS = known_rows(
    Plausibility,
    [
        (
            "real_test",
            "Control: real test images passing the rule (nominal share = the quantile)",
            "pct",
        ),
        ("x_ex", "Exchanged images X′ passing the rule", "pct"),
        ("x_ex_kl0_to_kl2", "X′1 (KL-0 → KL-2) passing", "pct"),
        ("x_ex_kl2_to_kl0", "X′2 (KL-2 → KL-0) passing", "pct"),
        ("ratio_to_real", "X′ pass rate / real pass rate", "num"),
        ("control", "Control: no-exchange outputs passing", "pct"),
        ("recon", "Control: reconstructions X̂ passing", "pct"),
        ("knn_real_test", "k-NN manifold precision, real test images", "pct"),
        ("knn_x_ex", "k-NN manifold precision, X′", "pct"),
        ("knn_recon", "k-NN manifold precision, X̂", "pct"),
    ],
)


FIDELITY_ROWS = known_rows(
    Fidelity,
    [
        (
            fid_key("key_transfer_median"),
            "Key transfer KL-0 → KL-2, median (refused X′ = failure)",
            "num",
        ),
        (fid_key("key_transfer_iqr"), "Key transfer KL-0 → KL-2, IQR", "num"),
        (fid_key("key_transfer_success_rate"), "Pairs with key transfer ≥ 0.7, KL-0 → KL-2", "pct"),
        (fid_key("key_transfer_median", KL2_TO_KL0), "Key transfer KL-2 → KL-0, median", "num"),
        (
            fid_key("key_transfer_success_rate", KL2_TO_KL0),
            "Pairs with key transfer ≥ 0.7, KL-2 → KL-0",
            "pct",
        ),
        (
            fid_key("recon_key_transfer_median"),
            "Key transfer KL-0 → KL-2 against the reconstructions "
            "(X̂1 and X̂2 in place of X1 and X2), median",
            "num",
        ),
        (
            fid_key("recon_key_transfer_median", KL2_TO_KL0),
            "Key transfer KL-2 → KL-0 against the reconstructions, median",
            "num",
        ),
        ("osteophyte_rate_real_kl2", "Osteophytes detected: real KL-2 test images", "pct"),
        ("osteophyte_rate_x1_ex", "Osteophytes detected: X′1 (should match real KL-2)", "pct"),
        (
            "osteophyte_rate_x1_self",
            "Osteophytes detected: no-exchange output of X1 (control)",
            "pct",
        ),
        ("osteophyte_rate_real_kl0", "Osteophytes detected: real KL-0 test images", "pct"),
        ("osteophyte_rate_x2_ex", "Osteophytes detected: X′2 (should match real KL-0)", "pct"),
        (
            "osteophyte_rate_x2_self",
            "Osteophytes detected: no-exchange output of X2 (control)",
            "pct",
        ),
        ("osteophyte_transfer_rate", "Osteophytes gained by X′1 when the donor has them", "pct"),
        ("osteophyte_removal_rate", "Osteophytes lost by X′2 when the donor has none", "pct"),
        (
            "nonkey_ssim_median",
            "SSIM of X′ vs its recipient outside the joint band, median (both directions)",
            "num",
        ),
        ("refusal_rate", "X′ whose joint the measurement could not find", "pct"),
        ("refusal_rate_real", "Real test images whose joint it could not find", "pct"),
        ("refusal_rate_recon", "Reconstructions whose joint it could not find", "pct"),
    ],
)


QUALITY_ROWS = known_rows(
    Quality,
    [
        ("recon_psnr", "PSNR of the reconstructions X̂ vs X", "db"),
        ("recon_ssim", "SSIM of the reconstructions X̂ vs X", "num"),
        ("frechet", "Fréchet distance, X′ vs real images (judge features)", "num"),
        (
            "frechet_real_floor",
            "Fréchet distance between two halves of the real images (the floor)",
            "num",
        ),
    ],
)


#: The headline cards: (section, key, label, kind).
HEADLINE: list[tuple[type[Section], str, str, str]] = [
    (
        ExchangeSuccess,
        judge_key("agreement", KL0_TO_KL2),
        "X′1: the judge gives it the grade it gives the KL-2 donor",
        "pct",
    ),
    (
        ExchangeSuccess,
        judge_key("agreement", KL2_TO_KL0),
        "X′2: the judge gives it the grade it gives the KL-0 donor",
        "pct",
    ),
    (
        Fidelity,
        fid_key("key_transfer_median"),
        "median key transfer, KL-0 → KL-2 (1 = donor)",
        "num",
    ),
    (
        Fidelity,
        fid_key("key_transfer_median", KL2_TO_KL0),
        "median key transfer, KL-2 → KL-0 (1 = donor)",
        "num",
    ),
    (Fidelity, "nonkey_ssim_median", "SSIM outside the joint band", "num"),
    (Plausibility, "ratio_to_real", "plausible X′ / plausible real images", "num"),
    (Separability, "svm_hk_accuracy", "SVM-RBF accuracy on hK", "pct"),
]


for _section, _key, _label, _kind in HEADLINE:
    _section.path(_key)
