"""The measurements of the generated images: plausibility, ground-truth fidelity, separability of
the latents (with the λ grid) and image quality.
"""

from __future__ import annotations

from kecae.report import figures
from kecae.report.format import number
from kecae.report.load import RunData
from kecae.report.missing import drawn_figure, missing_note, problem_notes
from kecae.report.parts import escape, metric_table, note
from kecae.report.rows import FIDELITY_ROWS, PLAUSIBILITY_ROWS, QUALITY_ROWS, SEPARABILITY_ROWS
from kecae.results import (
    TARGETS_SECTION,
    ExchangeSuccess,
    Fidelity,
    LambdaGrid,
    Plausibility,
    Quality,
    Separability,
)


def plausibility_section(run: RunData) -> str:
    sec = run.section(Plausibility.NAME)
    if not sec:
        return missing_note("the plausibility rule and its controls", "evaluate", run)
    rule = Plausibility.from_dict(sec).rule
    return metric_table(sec, PLAUSIBILITY_ROWS, extra=False) + note(
        escape("" if rule is None else rule) + ". A rule that rejected real images would cap every "
        "success rate; calibrated on held-out images, real test images pass at about the "
        "nominal share."
    )


def fidelity_section(run: RunData) -> str:
    sec = run.section(Fidelity.NAME)
    parts = [problem_notes(run, run.rel(run.layout.eval.fidelity))]
    if sec:
        parts.append(metric_table(sec, FIDELITY_ROWS))
        parts.append(
            note(
                "Measured on phantoms, whose ground truth is known. Key transfer ratio = (JSW of "
                "the recipient − JSW of X′) / (JSW of the recipient − JSW of the donor): 0 means "
                "the joint space did not change, 1 means it took the donor's width exactly. The "
                "SSIM outside the joint band checks that the rest of the knee stayed the "
                "recipient's."
            )
        )
    arrays = run.fidelity
    if arrays:
        targets = run.section(TARGETS_SECTION)
        parts.append(
            drawn_figure(
                lambda: figures.fidelity_figure(arrays, targets),
                "the fidelity histograms",
                escape(
                    "Distribution over generated pairs. Ratio panels: the dashed green line at 1 "
                    "is a perfect transfer, the dotted grey line at 0 no transfer, the black line "
                    "the median, a red line the target when one is set; a tall, narrow peak near "
                    "1 is the goal; the panel against the reconstructions (X̂1 and X̂2 as "
                    "recipient and donor) removes the auto-encoder's own blur from the comparison "
                    "and should also peak at 1. SSIM panel: values near 1 mean the non-key "
                    "anatomy was kept."
                ),
            )
        )
    if not sec and not run.fidelity and run.section(ExchangeSuccess.NAME):
        # evaluated, and still no fidelity: these are not phantoms
        parts.append(
            note(
                "Not computable on these data: ground-truth fidelity (key transfer, osteophytes, "
                "SSIM outside the joint band) needs the phantoms' ground truth, which real "
                "radiographs do not have; its targets are not counted. "
                "<code>kecae demo</code> measures it on phantoms."
            )
        )
    elif not sec and not run.fidelity:
        parts.append(missing_note("ground-truth fidelity (needs phantom data)", "evaluate", run))
    return "".join(parts)


def separability_section(run: RunData) -> str:
    sec = run.section(Separability.NAME)
    parts = []
    if sec:
        parts.append(metric_table(sec, SEPARABILITY_ROWS))
        parts.append(
            note(
                "An RBF-kernel SVM is trained to tell KL-0 from KL-2 from one latent vector "
                "(stratified 5-fold cross-validation). The key vector hK should separate the "
                "classes (high accuracy); the non-key vector hN should not (near 50 %), because "
                "the grade is meant to live in hK only."
            )
        )
    else:
        parts.append(missing_note("SVM separability of hK and hN", "evaluate", run))
    raw_grid = run.section(LambdaGrid.NAME)
    if raw_grid:
        grid = LambdaGrid.from_dict(raw_grid)
        parts.append(
            drawn_figure(
                lambda: figures.lambda_figure(grid.lambda1, grid.lambda2, grid.svm_hk_accuracy),
                "the λ1 × λ2 grid",
                escape(
                    "SVM-RBF accuracy on hK (%) for each pair of loss weights, one KECAE trained "
                    "per cell (as in the paper's Fig. 3). The red box marks the best cell; the "
                    "white star the paper's choice λ1 = 1e-2, λ2 = 1e-3 when it is on the grid."
                ),
            )
        )
    return "".join(parts)


def quality_section(run: RunData) -> str:
    sec = run.section(Quality.NAME)
    parts = []
    if sec:
        parts.append(metric_table(sec, QUALITY_ROWS))
        quality = Quality.from_dict(sec)
        fd, floor = number(quality.frechet), number(quality.frechet_real_floor)
        text = (
            "PSNR and SSIM compare each reconstruction X̂ with its input X (higher is "
            "better; SSIM 1 = identical). The Fréchet distance compares the feature "
            "statistics of the generated images with those of real images in the judge's "
            "feature space; it is never 0 for finite samples, hence the floor measured "
            "between two halves of the real set."
        )
        if fd is not None and floor is not None and floor > 0:
            text += f" Here the distance is {fd / floor:.1f}× the floor."
        parts.append(note(escape(text)))
    else:
        parts.append(missing_note("reconstruction PSNR/SSIM and Fréchet distance", "evaluate", run))
    ex = run.examples
    if ex is not None and all(k in ex for k in ("x1", "x1_hat", "x2", "x2_hat")):
        parts.append(
            drawn_figure(
                lambda: figures.recon_figure(ex),
                "the reconstructions",
                escape(
                    "Inputs and their reconstructions (no exchange). Blur or lost detail here is "
                    "the auto-encoder's own error and is inherited by every exchanged image."
                ),
            )
        )
    return "".join(parts)
