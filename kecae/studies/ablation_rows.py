"""What ``kecae study ablation`` compares: its rows (the paper's KECAE and each option, alone and
combined, as model and loss settings) and its columns (the metrics.json entries each row is
scored on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kecae.results import (
    KL0_TO_KL2,
    KL2_TO_KL0,
    AblationColumn,
    ClassifierRates,
    ExchangeSuccess,
    Fidelity,
    FidelityDirection,
    GradeMatch,
    Plausibility,
    Quality,
    Separability,
)


@dataclass(frozen=True)
class AblationRow:
    """One row: model fields and training fields changed from the CPU-size paper baseline."""

    name: str
    description: str
    model: dict[str, Any] = field(default_factory=dict)  # KECAEConfig fields
    train: dict[str, Any] = field(default_factory=dict)  # KECAETrainConfig fields


#: The paper's architecture at the CPU size: what every row starts from.
BASE_MODEL: dict[str, Any] = {"image_size": 64, "width": 0.125}


_SPATIAL = {"depth": 4}


_POOLED = {"depth": 4, "key_pool": "mean"}


_WARP = {"depth": 4, "key_pool": "mean", "exchange": "warp"}


_NO_LDA = {"lambda_sup": 0.1, "lambda_lda": 0.0}
#: the grade probes: a linear probe telling the grade from hK (0.1) and one on hN through a
#: gradient reversal (0.1)
_PROBES = {"lambda_key_cls": 0.1, "lambda_nonkey_adv": 0.1}


_WARP_LOSS = {**_NO_LDA, "lambda_disp": 0.01}
_G32 = {**_WARP, "warp_grid": 32}
_G32_EDIT = {**_G32, "edit": True}
_G32_MAX5 = {**_G32, "warp_max_px": 5.0}  # displacements bounded by 5 px instead of 3
_G32_DONOR = {**_G32_EDIT, "edit_appearance": "donor"}  # the edit pastes the aligned donor
_G32_HEALTHY = {**_G32_EDIT, "edit_appearance": "healthy"}  # the edit fills in a healthy margin
#: the inpainter's training masks centred in the middle 60 % of the image (before the default
#: reached the knee's margins): the healthy rows measured that way
_MIDDLE = {"inpaint_mask_margin": 0.2}
#: the local grade critic on X'2 alone, weight 0.1
_LOCAL_X2_ONLY = {"lambda_local_sup": 0.1, "local_sides": "removal"}
#: g32_patch's loss + the local grade critic on X'2 alone (the cpu preset's training)
_LOCAL_X2_LOSS = {**_WARP_LOSS, "lambda_patch_adv": 0.1, **_LOCAL_X2_ONLY}
_EDIT_LOSS = {
    **_WARP_LOSS,
    "lambda_mask_area": 0.1,
    "lambda_mask_tv": 0.01,
    "lambda_mask_self": 0.1,
}
#: the edit's loss + the healthy inpainter's own term (the edit appearance "healthy")
_HEALTHY_LOSS = {**_EDIT_LOSS, "lambda_inpaint": 1.0}
#: ... + the patch discriminator (weight 0.1)
_HEALTHY_PATCH_LOSS = {**_HEALTHY_LOSS, "lambda_patch_adv": 0.1}
#: the healthy fill as a constant of each step (no backward through the inpainter for X')
_G32_HEALTHY_NOGRAD = {**_G32_HEALTHY, "inpaint_fill_grad": False}
#: ... the patch discriminator, the critic on X'2 and the control's change priced (weight 2)
_CONTROL_LOSS = {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY, "lambda_control": 2.0}
#: g32_patch_local_removal_probes's training: the critic on X'2 alone and the grade probes
_PROBES_LOSS = {**_LOCAL_X2_LOSS, **_PROBES}
#: ... + the fold penalty at 0.3 and J_SUP the mean over two frozen supervisors at 0.2 (the
#: run's supervisor and its member 1): the g32_patch_local_removal_probes_fold03_inner training
_INNER_LOSS = {**_PROBES_LOSS, "lambda_fold": 0.3, "lambda_sup": 0.2, "supervisors": 2}
#: the warp's bound on the exchange's change instead of on each decoded field
_G32_CHANGE = {**_G32, "warp_bound": "change"}


#: Every row the ablation knows, in table order.
ROWS: dict[str, AblationRow] = {
    r.name: r
    for r in [
        AblationRow(
            "paper",
            "the paper's model and loss at 64 px: 1×1 latent, decoded exchange, "
            "λ1 = 1e-2, λ2 = 1e-3",
        ),
        AblationRow(
            "paper_loglda",
            "paper, J_LDA in its bounded form log(1 + ratio)",
            train={"lda_mode": "log"},
        ),
        AblationRow("paper_l1", "paper, L1 reconstruction instead of MSE", train={"recon": "l1"}),
        AblationRow("spatial", "4×4 spatial latent (depth 4), λ1 = 0.1, λ2 = 0", _SPATIAL, _NO_LDA),
        AblationRow(
            "spatial_pooled",
            "+ position-free key (the key map averaged over the grid)",
            _POOLED,
            _NO_LDA,
        ),
        AblationRow(
            "residual",
            "+ residual exchange X′ = X + blur(D(h′) − D(h)), σ 1 px",
            {**_POOLED, "exchange": "residual"},
            _NO_LDA,
        ),
        AblationRow(
            "warp_free",
            "+ warp exchange (8×8 field, ≤ 3 px), no displacement penalty",
            _WARP,
            _NO_LDA,
        ),
        AblationRow("warp", "+ warp exchange, displacement penalty 0.01 px⁻²", _WARP, _WARP_LOSS),
        AblationRow(
            "warp_grid16",
            "warp with a 16×16 displacement grid",
            {**_WARP, "warp_grid": 16},
            _WARP_LOSS,
        ),
        AblationRow(
            "warp_fold",
            "warp + fold penalty relu(0.5 − det J), weight 1",
            _WARP,
            {**_WARP_LOSS, "lambda_fold": 1.0},
        ),
        AblationRow(
            "warp_perturb",
            "warp, the supervisor sees X′ shifted / blurred by up to 1 px",
            _WARP,
            {**_WARP_LOSS, "sup_perturb": 1.0},
        ),
        AblationRow(
            "warp_residual",
            "warp + a blurred residual for new bone, L1 edit penalty 10",
            {**_WARP, "warp_residual": True},
            {**_WARP_LOSS, "lambda_edit": 10.0},
        ),
        AblationRow(
            "warp_cycle",
            "warp + re-encoding X′ gives back its latents (weight 1)",
            _WARP,
            {**_WARP_LOSS, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "warp_same",
            "warp + a key exchanged within one grade changes little (weight 1)",
            _WARP,
            {**_WARP_LOSS, "lambda_same": 1.0},
        ),
        AblationRow(
            "warp_probes",
            "warp + linear grade probes: on hK (weight 0.1), adversarial on hN (0.1)",
            _WARP,
            {**_WARP_LOSS, **_PROBES},
        ),
        AblationRow("warp_sup03", "warp with λ1 = 0.3", _WARP, {**_WARP_LOSS, "lambda_sup": 0.3}),
        AblationRow(
            "warp_wide",
            "warp, channel width 0.25 instead of 0.125",
            {**_WARP, "width": 0.25},
            _WARP_LOSS,
        ),
        AblationRow(
            "combo_g16",
            "warp_grid16 + width 0.25 + cycle",
            {**_WARP, "warp_grid": 16, "width": 0.25},
            {**_WARP_LOSS, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_sup03",
            "warp + λ1 = 0.3 + width 0.25 + cycle",
            {**_WARP, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_all",
            "warp_grid16 + λ1 = 0.3 + width 0.25 + cycle + probes",
            {**_WARP, "warp_grid": 16, "width": 0.25},
            {
                **_WARP_LOSS,
                "lambda_sup": 0.3,
                "lambda_cycle": 1.0,
                **_PROBES,
            },
        ),
        AblationRow(
            "warp_grid32",
            "warp with a 32×32 displacement grid",
            {**_WARP, "warp_grid": 32},
            _WARP_LOSS,
        ),
        AblationRow(
            "warp_donor",
            "warp, J_SUP asks for the supervisor's call on the donor, not its grade label",
            _WARP,
            {**_WARP_LOSS, "sup_target": "donor"},
        ),
        AblationRow(
            "combo_g32",
            "warp_grid32 + λ1 = 0.3 + width 0.25 + cycle",
            {**_WARP, "warp_grid": 32, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "combo_g32_donor",
            "combo_g32 with J_SUP on the supervisor's call on the donor",
            {**_WARP, "warp_grid": 32, "width": 0.25},
            {**_WARP_LOSS, "lambda_sup": 0.3, "lambda_cycle": 1.0, "sup_target": "donor"},
        ),
        AblationRow(
            "g32_patch",
            "warp_grid32 + a grade-conditional patch discriminator on crops around the change "
            "(weight 0.1, ramped over 500 steps)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_edit",
            "warp_grid32 + the masked appearance edit; mask area above 5 % and the control's mask "
            "weight 0.1, TV 0.01",
            _G32_EDIT,
            _EDIT_LOSS,
        ),
        AblationRow(
            "g32_edit_m1",
            "g32_edit with the mask area (and the control's) priced 1.0 (ten times)",
            _G32_EDIT,
            {**_EDIT_LOSS, "lambda_mask_area": 1.0, "lambda_mask_self": 1.0},
        ),
        AblationRow(
            "g32_edit_patch",
            "g32_edit + the patch discriminator (weight 0.1, ramped over 500 steps)",
            _G32_EDIT,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_edit_probes",
            "g32_edit + grade probes: positive on hK (0.1), adversarial on hN (0.1)",
            _G32_EDIT,
            {**_EDIT_LOSS, **_PROBES},
        ),
        AblationRow(
            "g32_decoded_patch",
            "g32_edit_patch with G = warp(X) + D(h′) − warp(D(h)): the mask places the "
            "decoder's own change (sharp), the head predicts the mask alone",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_decoded_free",
            "g32_decoded_patch without the control's mask price (with G = warp(X) + D(h′) − "
            "warp(D(h)) the control is the recipient whatever its mask, so that price can only "
            "close the mask both directions share)",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1, "lambda_mask_self": 0.0},
        ),
        AblationRow(
            "g32_decoded",
            "g32_edit with G = warp(X) + D(h′) − warp(D(h)) (no discriminator)",
            {**_G32_EDIT, "edit_appearance": "decoded"},
            _EDIT_LOSS,
        ),
        AblationRow(
            "g32_patch_ens3",
            "g32_patch with J_SUP the mean over 3 frozen supervisors trained from different "
            "seeds (the run's supervisor and two more): the exchange must satisfy all three",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "supervisors": 3},
        ),
        AblationRow(
            "g32_open",
            "g32_edit with G = the grey-scale opening of warp(X) (a 5 px square at 64 px): the "
            "mask can take away bright structures narrower than the square and can draw nothing",
            {**_G32_EDIT, "edit_appearance": "open"},
            _EDIT_LOSS,
        ),
        AblationRow(
            "g32_open_patch",
            "g32_open + the patch discriminator (weight 0.1, ramped over 500 steps): g32_patch "
            "(the cpu preset) with the opening edit",
            {**_G32_EDIT, "edit_appearance": "open"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_erode_patch",
            "g32_open_patch with G = the grey-scale erosion of warp(X) (a 5 px square at 64 px): "
            "under the mask every bone edge moves 2 px inward, so a marginal bulge can be shaved "
            "back to the outline around it; nothing can be drawn",
            {**_G32_EDIT, "edit_appearance": "erode"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_donor_patch",
            "g32_edit_patch with G = the donor image aligned to warp(X) (the whole-pixel shift "
            "and mirror that correlate best): under the mask the donor's own margin, spur or "
            "none, replaces the recipient's, so the edit can remove bone and add real bone",
            _G32_DONOR,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_donor_patch_a1",
            "g32_donor_patch with the mask's area priced 1.0 (ten times): a smaller mask pastes "
            "less of the donor, so fewer of its edges meet the recipient's off their outline",
            _G32_DONOR,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1, "lambda_mask_area": 1.0},
        ),
        AblationRow(
            "g32_donor_patch_a03",
            "g32_donor_patch with the mask's area priced 0.3 (between g32_donor_patch's 0.1 and "
            "g32_donor_patch_a1's 1.0)",
            _G32_DONOR,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1, "lambda_mask_area": 0.3},
        ),
        AblationRow(
            "g32_donor_patch_tv",
            "g32_donor_patch with the mask's total variation priced 0.1 (ten times): fewer, "
            "smoother mask edges, so fewer seams where the donor meets the recipient",
            _G32_DONOR,
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1, "lambda_mask_tv": 0.1},
        ),
        AblationRow(
            "g32_donor_a1",
            "g32_donor (no discriminator) with the mask's area priced 1.0: the discriminator "
            "did not raise plausibility, the mask's size did",
            _G32_DONOR,
            {**_EDIT_LOSS, "lambda_mask_area": 1.0},
        ),
        AblationRow(
            "g32_donor_local_patch",
            "g32_donor_patch with the aligned donor moved again tile by tile (shifts up to 5 % of "
            "the side) so that its outline lies on the recipient's: a pasted margin leaves no "
            "edge off the outline",
            {**_G32_EDIT, "edit_appearance": "donor_local"},
            {**_EDIT_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_donor",
            "g32_donor_patch without the patch discriminator",
            _G32_DONOR,
            _EDIT_LOSS,
        ),
        AblationRow(
            "g32_healthy_patch",
            "g32_edit_patch with G = the healthy inpainter's fill of warp(X) under the mask: a "
            "small U-Net trained (L1, weight 1) on the KL-0 knees of the batch under random "
            "masks and used with its weights detached, so under the mask the recipient's own "
            "outline runs on as a healthy margin does",
            _G32_HEALTHY,
            {**_HEALTHY_PATCH_LOSS, **_MIDDLE},
        ),
        AblationRow(
            "g32_healthy",
            "g32_healthy_patch without the patch discriminator",
            _G32_HEALTHY,
            {**_HEALTHY_LOSS, **_MIDDLE},
        ),
        AblationRow(
            "g32_healthy_patch_local_removal",
            "g32_healthy_patch + the local grade critic on X'2 (weight 0.1): the critic calls the "
            "places of X'2 that still look KL-2, and only the mask can put the inpainter's "
            "healthy margin there",
            _G32_HEALTHY,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY, **_MIDDLE},
        ),
        AblationRow(
            "g32_healthy_local_removal",
            "g32_healthy_patch_local_removal without the patch discriminator (which closed "
            "g32_healthy_patch's mask)",
            _G32_HEALTHY,
            {**_HEALTHY_LOSS, **_LOCAL_X2_ONLY, **_MIDDLE},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal",
            "g32_healthy_patch_local_removal with the inpainter's training masks centred anywhere "
            "but the outer 5 % of the image (was the middle 60 %): it learns to fill the knee's "
            "margins, where the spurs are",
            _G32_HEALTHY,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_nofillgrad",
            "g32_healthy_edges_patch_local_removal with the inpainter's fill a constant of the "
            "step (model option inpaint_fill_grad=false): the mask learns through the "
            "composition alone and the step skips the inpainter's backward on X'",
            _G32_HEALTHY_NOGRAD,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_self_nofillgrad",
            "g32_healthy_edges_patch_local_removal_nofillgrad with the no-exchange control's mask "
            "priced 1.0 (was 0.1): the control's 2-6 % mask cost almost nothing, and its fill "
            "changed the grade call of the recipient given its own key",
            _G32_HEALTHY_NOGRAD,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY, "lambda_mask_self": 1.0},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_nofillgrad",
            "g32_healthy_edges_patch_local_removal_nofillgrad with the change the healthy fill "
            "makes to the no-exchange control priced (L1, weight 2, ramped over 500 steps): "
            "exchange(X, X) = X asked of the image, not of the mask, so a mask over a healthy "
            "margin the fill keeps costs nothing",
            _G32_HEALTHY_NOGRAD,
            _CONTROL_LOSS,
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_grid8",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with the mask on an 8 x 8 "
            "grid of smooth cells (model option edit_mask_grid=8): blobs at least 8 px across, "
            "the shape of the inpainter's training masks, so a mask at a joint's end covers the "
            "corner where a spur grows rather than a line along the joint",
            {**_G32_HEALTHY_NOGRAD, "edit_mask_grid": 8},
            _CONTROL_LOSS,
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_small",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with 4 features instead of 8 "
            "in the inpainter's first level and in the edit head (a quarter of their FLOPs, "
            "which are most of a healthy step's)",
            {**_G32_HEALTHY_NOGRAD, "inpaint_channels": 4, "edit_channels": 4},
            _CONTROL_LOSS,
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_local03",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with the critic's term on "
            "X'2 at weight 0.3 (was 0.1): with the control held to the identity, a stronger ask "
            "that no place of X'2 look KL-2 may open the mask where the fill removes a spur",
            _G32_HEALTHY_NOGRAD,
            {**_CONTROL_LOSS, "lambda_local_sup": 0.3},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_warpfakes",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with the critic also "
            "learning the recipient moved by X'2's warp, before the fill, as not a real KL-0 knee "
            "(--local-fakes --local-fakes-from warped): its joint is widened, so the critic's "
            "cue is the margin, and it never learns the fill's own look",
            _G32_HEALTHY_NOGRAD,
            {**_CONTROL_LOSS, "local_fakes": True, "local_fakes_from": "warped"},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_full",
            "g32_healthy_edges_patch_local_removal with the patch discriminator on the whole "
            "image (--patch-crop 1.0): a crop half the side, centred on the change at the "
            "joint, never holds the joint's ends, where the spurs grow, so nothing in it asks "
            "the healthy fill to go there",
            _G32_HEALTHY,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY, "patch_crop": 1.0},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_full",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with the patch "
            "discriminator on the whole image (--patch-crop 1.0), the joint's ends included",
            _G32_HEALTHY_NOGRAD,
            {**_CONTROL_LOSS, "patch_crop": 1.0},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_explore",
            "g32_healthy_edges_patch_local_removal_control_nofillgrad with the fill drawn in "
            "training under the mask and random boxes (model option inpaint_explore=true): where "
            "the mask has not opened, the fill of a spur is the spur itself and the mask's "
            "gradient there is zero; under a box the fill is a healthy margin, and the mask "
            "learns whether putting it there helps",
            {**_G32_HEALTHY_NOGRAD, "inpaint_explore": True},
            _CONTROL_LOSS,
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_fakes",
            "g32_healthy_edges_patch_local_removal with the critic also learning X'2 as not a "
            "real KL-0 knee (--local-fakes): once the joint is widened, what is left for it to "
            "find on X'2 is a spur or an artefact, and the mask is pushed there",
            _G32_HEALTHY,
            {**_HEALTHY_PATCH_LOSS, **_LOCAL_X2_ONLY, "local_fakes": True},
        ),
        AblationRow(
            "g32_healthy_edges_patch",
            "g32_healthy_patch with the inpainter's masks reaching the margins (no local critic)",
            _G32_HEALTHY,
            _HEALTHY_PATCH_LOSS,
        ),
        AblationRow(
            "g32_patch_local",
            "g32_patch + the local grade critic (weight 0.1, ramped over 500 steps): a small "
            "CNN that learns the grade of every ~21 px neighbourhood from the batch's real images "
            "(log-sum-exp pooled) and asks that no place of X'2 look KL-2, some place of X'1 do",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "lambda_local_sup": 0.1},
        ),
        AblationRow(
            "g32_patch_local_removal",
            "g32_patch_local with the critic's term on X'2 alone: with both sides a fresh demo's "
            "X'1 became more typical than the oracle's (caricature excess 6.0 points)",
            _G32,
            _LOCAL_X2_LOSS,
        ),
        AblationRow(
            "g32_patch_local_removal_fold",
            "g32_patch_local_removal (the cpu preset) + the fold penalty relu(0.5 − det J), "
            "weight 1: X'2 the supervisor passed with a measured spur showed torn bone margins "
            "and fragments in the widened joint, where a 32-cell field can fold",
            _G32,
            {**_LOCAL_X2_LOSS, "lambda_fold": 1.0},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_nofillgrad_fold",
            "the healthy-fill recipe (the cpu_fill preset) + the fold penalty relu(0.5 − det J), "
            "weight 1: with the warp unable to fold a spur away, the mask is what is left to "
            "remove it",
            _G32_HEALTHY_NOGRAD,
            {**_CONTROL_LOSS, "lambda_fold": 1.0},
        ),
        AblationRow(
            "g32_patch_local_removal_probes",
            "g32_patch_local_removal (the cpu preset) + the grade probes on hK and hN (0.1 "
            "each): with the healthy fill, whose mask then closed, they met 10 targets at seed 0",
            _G32,
            _PROBES_LOSS,
        ),
        AblationRow(
            "g32_patch_local_removal_probes_cos",
            "the cpu preset's recipe with a cosine learning rate (every optimiser's rate to 0 at "
            "the last step): the constant rate ends wherever the adversaries last pushed, and "
            "key transfer KL-2 → KL-0 spread 0.57-1.03 over three fresh seeds",
            _G32,
            {**_PROBES_LOSS, "lr_schedule": "cosine"},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fakes",
            "the cpu preset's recipe with --local-fakes: the local grade critic also learns X'2 "
            "on the higher grade's side, so it keeps looking for what the warp left (the spurs "
            "went while the critic kept learning, and stayed once a cosine rate froze it)",
            _G32,
            {**_PROBES_LOSS, "local_fakes": True},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_d2",
            "the cpu preset's recipe with two updates of the patch discriminator and of the local "
            "critic per model step (--module-updates 2): a discriminator that keeps pace with "
            "the warp finds the spurs it leaves",
            _G32,
            {**_PROBES_LOSS, "module_updates": 2},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_local02",
            "the cpu preset's recipe with the local critic on X'2 weighted 0.2 (was 0.1): the "
            "critic is what removes spurs, and at 0.3 on both sides it had made X'1 caricatures",
            _G32,
            {**_PROBES_LOSS, "lambda_local_sup": 0.2},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_sup02",
            "the cpu preset's recipe with J_SUP weighted 0.2 (was 0.1): the attacked supervisor "
            "weighs the joint and the spur alike, and on the worst fresh seed X'2 widened only "
            "two thirds of the gap",
            _G32,
            {**_PROBES_LOSS, "lambda_sup": 0.2},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_disp005",
            "the cpu preset's recipe with the displacement penalty at 0.005 (was 0.01): the "
            "penalty is half the supervisor's share of the loss, and the worst seed's X'2 widen "
            "too little",
            _G32,
            {**_PROBES_LOSS, "lambda_disp": 0.005},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03",
            "the cpu preset's recipe + the fold penalty relu(0.5 − det J) at 0.3: at 1.0 it "
            "halved the torn margins the supervisor passes, but the joint widened less",
            _G32,
            {**_PROBES_LOSS, "lambda_fold": 0.3},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_cycle",
            "the cpu preset's recipe + the cycle (weight 1: re-encoding X' gives back the "
            "donor's hK and the recipient's hN): a quarter of X'2 did not widen at all, mostly "
            "recipients the supervisor called KL-2 with P 0.5-0.9, once their spurs were "
            "squeezed; the cycle asks every X'2 for its donor's key whatever the supervisor "
            "already says",
            _G32,
            {**_PROBES_LOSS, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_cycle",
            "the cpu preset (fold penalty 0.3) + the cycle: the cycle met key transfer on every "
            "seed by widening more and kept more spurs; the fold penalty trims the tears that "
            "wider warps leave",
            _G32,
            {**_PROBES_LOSS, "lambda_fold": 0.3, "lambda_cycle": 1.0},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_dlogit",
            "the cpu preset (fold penalty 0.3) with J_SUP a Huber match of the supervisor's "
            "logits on X' to its logits on the donor (sup_target donor_logit): cross-entropy "
            "against the label fades once X' crosses the line, so a recipient the supervisor "
            "was unsure of passes with its joint unwidened, and it never pulls back a caricature",
            _G32,
            {**_PROBES_LOSS, "lambda_fold": 0.3, "sup_target": "donor_logit"},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner",
            "the cpu preset before its second supervisor (fold penalty 0.3) with J_SUP the mean "
            "over two frozen supervisors at 0.2 (0.1 each): the run's supervisor, which answers "
            "to spurs, and the run's member 1 (a cpu-preset run's: the inner view, patches that "
            "leave out the outer joint margins, so it answers to the joint space)",
            _G32,
            _INNER_LOSS,
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change",
            "the cpu preset with the warp's bound on the change u(h') - u(h) instead of on each "
            "field (warp_bound change): the preset's own field sits at its +-3 px bound on ~43 % "
            "of the grid's cells (the bone interiors, some margins), where the exchange can "
            "move a pixel one way only and no gradient reaches the head",
            _G32_CHANGE,
            _INNER_LOSS,
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change6",
            "..._inner_change with the change bounded by 6 px (warp_max_px 6): the range the "
            "field bound gave where the own field sat at 0",
            {**_G32_CHANGE, "warp_max_px": 6.0},
            _INNER_LOSS,
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_disp03",
            "..._inner_change with the displacement penalty at 0.03 (0.01): with the bound on "
            "the change the bone interiors move too (0.3-0.6 px against 0.1-0.3), and the "
            "non-key SSIM falls to 0.90",
            _G32_CHANGE,
            {**_INNER_LOSS, "lambda_disp": 0.03},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1",
            "..._inner_change with a price on the displacement's length as well (lambda_disp_l1 "
            "0.03 beside the squared price 0.01): a squared price fades for the fractions of a "
            "pixel the bone interiors drift by, a length does not, so the field is zero away "
            "from the change",
            _G32_CHANGE,
            {**_INNER_LOSS, "lambda_disp_l1": 0.03},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_maxkey",
            "..._inner_change_l1 (the cpu preset) with a max-pooled key: each channel's largest "
            "value over the 4×4 grid instead of its mean, so one margin's spur is not diluted by "
            "the places without one",
            {**_G32_CHANGE, "key_pool": "max"},
            {**_INNER_LOSS, "lambda_disp_l1": 0.03},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_attnkey",
            "..._inner_change_l1 (the cpu preset) with an attention-pooled key: a learned softmax "
            "weight per place of the 4×4 grid (zero at the start: the mean), so the key can weigh "
            "the margins where spurs grow",
            {**_G32_CHANGE, "key_pool": "attn"},
            {**_INNER_LOSS, "lambda_disp_l1": 0.03},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_aug",
            "..._inner_change_l1 (the cpu preset) with both images of every pair augmented "
            "(flip, ±7° rotation, intensity; --augment-pairs): hK tells the training phantoms' "
            "grades at ~99 % and the test phantoms' at ~78 %",
            _G32_CHANGE,
            {**_INNER_LOSS, "lambda_disp_l1": 0.03, "augment_pairs": True},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_aug_dlogit",
            "..._inner_change_l1_aug with J_SUP the Huber loss to the supervisors' logits on the "
            "donor (--sup-target donor_logit): it pulls X' until it looks as the donor does, not "
            "further, where the augmented recipe's X'2 overshoot the donor",
            _G32_CHANGE,
            {
                **_INNER_LOSS,
                "lambda_disp_l1": 0.03,
                "augment_pairs": True,
                "sup_target": "donor_logit",
            },
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_keyw025",
            "..._inner_change_l1 (the cpu preset) with a key branch twice as wide (channels 8…64, "
            "a 1×1 conv to the latent's 32): the preset's key branch, trained alone as a grade "
            "classifier, tells the grades of the test phantoms no better than ~82 %",
            {**_G32_CHANGE, "key_width": 0.25},
            {**_INNER_LOSS, "lambda_disp_l1": 0.03},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_sup04",
            "..._inner_change_l1 (the cpu preset) with J_SUP at 0.4 (0.2): the X'2 that keep a "
            "spur are exchanges their supervisors still call KL-2",
            _G32_CHANGE,
            {**_INNER_LOSS, "lambda_disp_l1": 0.03, "lambda_sup": 0.4},
        ),
        AblationRow(
            "g32_patch_local_removal_probes_fold03_inner_change_l1_fill",
            "..._inner_change_l1 (the cpu preset) with cpu_fill's healthy fill under a priced "
            "mask after the warp (mask area 0.1, edges 0.01, on the control 0.1, the "
            "inpainter's own term 1.0, the fill's change to the control 2.0): the spurs the "
            "warp keeps are the large ones, which a bounded smooth field cannot delete",
            {**_G32_CHANGE, "edit": True, "edit_appearance": "healthy", "inpaint_fill_grad": False},
            {**_INNER_LOSS, **_CONTROL_LOSS, "lambda_sup": 0.2, "lambda_disp_l1": 0.03},
        ),
        AblationRow(
            "g32_healthy_edges_patch_local_removal_control_nofillgrad_probes",
            "the healthy-fill recipe (the cpu_fill preset) + the grade probes (a linear probe "
            "telling the grade from hK, weight 0.1, and one on hN through a gradient reversal, "
            "0.1): on g32_patch they took the grade out of hN (SVM 0.62-0.65)",
            _G32_HEALTHY_NOGRAD,
            {**_CONTROL_LOSS, **_PROBES},
        ),
        AblationRow(
            "g32_patch_local_removal_ens3",
            "g32_patch_local_removal (the cpu preset) with J_SUP the mean over 3 frozen "
            "supervisors (g32_patch_ens3's ensemble): on g32_patch the ensemble left the fewest "
            "spurs on X'2 of any row, the critic lifts key transfer KL-2 -> KL-0",
            _G32,
            {**_LOCAL_X2_LOSS, "supervisors": 3},
        ),
        AblationRow(
            "g32_patch_local3",
            "g32_patch_local with the local grade critic weighted 0.3 (three times)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "lambda_local_sup": 0.3},
        ),
        AblationRow(
            "g32_patch_max5_local",
            "g32_patch_max5 + the local grade critic (weight 0.1): the longer reach pulls tissue "
            "over long spurs, and a spur it makes elsewhere is a place the critic calls KL-2",
            _G32_MAX5,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "lambda_local_sup": 0.1},
        ),
        AblationRow(
            "g32_patch_max5_local_removal",
            "g32_patch_max5_local with the critic's term on X'2 alone (the cpu preset's critic "
            "with displacements up to 5 px)",
            _G32_MAX5,
            _LOCAL_X2_LOSS,
        ),
        AblationRow(
            "g32_donor_patch_a1_local",
            "g32_donor_patch_a1 + the local grade critic (weight 0.1): the place that looks KL-2 "
            "is where the donor's margin should be pasted",
            _G32_DONOR,
            {
                **_EDIT_LOSS,
                "lambda_patch_adv": 0.1,
                "lambda_mask_area": 1.0,
                "lambda_local_sup": 0.1,
            },
        ),
        AblationRow(
            "g32_patch_full",
            "g32_patch with the discriminator on the whole image (crop share 1.0): a crop half the "
            "side, centred on the change at the joint, leaves out the outer margins where spurs "
            "grow",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "patch_crop": 1.0},
        ),
        AblationRow(
            "g32_patch_smooth",
            "g32_patch + the field's squared gradient priced 0.1: widening a joint by moving the "
            "bone around it, not by squeezing the tibial head (which bulges its margin)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "lambda_smooth": 0.1},
        ),
        AblationRow(
            "g32_patch_smooth1",
            "g32_patch_smooth with the field's squared gradient priced 1.0 (ten times)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "lambda_smooth": 1.0},
        ),
        AblationRow(
            "g32_patch_max5",
            "g32_patch with displacements bounded by 5 px instead of 3 (a spur of 5 mm is 3.5 px "
            "long at 64 px: a 3 px warp cannot pull tissue over all of it)",
            _G32_MAX5,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1},
        ),
        AblationRow(
            "g32_patch_max5_ens3",
            "g32_patch_max5 with J_SUP over 3 frozen supervisors (g32_patch_ens3's ensemble)",
            _G32_MAX5,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, "supervisors": 3},
        ),
        AblationRow(
            "g32_patch_probes",
            "g32_patch + grade probes: positive on hK (0.1), adversarial on hN (0.1), so that the "
            "key carries the grade and the rest of the latent does not",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.1, **_PROBES},
        ),
        AblationRow(
            "g32_patch_probes3",
            "g32_patch_probes with both probes weighted 0.3",
            _G32,
            {
                **_WARP_LOSS,
                "lambda_patch_adv": 0.1,
                "lambda_key_cls": 0.3,
                "lambda_nonkey_adv": 0.3,
            },
        ),
        AblationRow(
            "g32_patch3",
            "g32_patch with the patch discriminator weighted 0.3 (three times)",
            _G32,
            {**_WARP_LOSS, "lambda_patch_adv": 0.3},
        ),
    ]
}


def _judge(name: str, direction: str) -> str:
    return ExchangeSuccess.path(ClassifierRates.key(name, "judge", direction))


def _fidelity(name: str, direction: str) -> str:
    return Fidelity.path(FidelityDirection.key(name, direction))


#: The row's timing file, beside its metrics (see :class:`kecae.runfolder.AblationRun`).
TIMING = "timing"


#: Table columns: name -> what they show (``section.key`` of the row's metrics.json, kind, which
#: side is better). kind "pct" shows percent.
COLUMNS: dict[str, AblationColumn] = {
    "agreement KL-0→KL-2": AblationColumn(_judge("agreement", KL0_TO_KL2), "pct", "high"),
    "agreement KL-2→KL-0": AblationColumn(_judge("agreement", KL2_TO_KL0), "pct", "high"),
    "label-only X′1": AblationColumn(_judge("raw", KL0_TO_KL2), "pct", "high"),
    "control X′1": AblationColumn(_judge("control", KL0_TO_KL2), "pct", "info"),
    "label-only X′2": AblationColumn(_judge("raw", KL2_TO_KL0), "pct", "high"),
    "control X′2": AblationColumn(_judge("control", KL2_TO_KL0), "pct", "info"),
    "plausible X′ / real": AblationColumn(Plausibility.path("ratio_to_real"), "num", "high"),
    "key transfer KL-0→KL-2": AblationColumn(
        _fidelity("key_transfer_median", KL0_TO_KL2), "num", "high"
    ),
    "key transfer KL-2→KL-0": AblationColumn(
        _fidelity("key_transfer_median", KL2_TO_KL0), "num", "high"
    ),
    "key transfer vs X̂, KL-0→KL-2": AblationColumn(
        _fidelity("recon_key_transfer_median", KL0_TO_KL2), "num", "info"
    ),
    "osteophytes X′1 (real KL-2)": AblationColumn(
        Fidelity.path("osteophyte_rate_x1_ex"), "pct", "info"
    ),
    "osteophytes X′2 (real KL-0)": AblationColumn(
        Fidelity.path("osteophyte_rate_x2_ex"), "pct", "info"
    ),
    "osteophyte removal X′2": AblationColumn(
        Fidelity.path("osteophyte_removal_rate"), "pct", "high"
    ),
    "caricature excess X′1": AblationColumn(
        GradeMatch.key(KL0_TO_KL2, "caricature_excess"), "pct", "low"
    ),
    "caricature excess X′2": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "caricature_excess"), "pct", "low"
    ),
    "JSW Wasserstein X′2 px": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "jsw.wasserstein"), "num", "low"
    ),
    "overshoot X′2": AblationColumn(GradeMatch.key(KL2_TO_KL0, "overshoot_rate"), "pct", "low"),
    "X′2 disagreed: osteophyte kept": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.osteophyte_extra"), "int", "low"
    ),
    "X′2 disagreed: joint too narrow": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.joint_narrow"), "int", "low"
    ),
    "X′2 disagreed: artefact / other": AblationColumn(
        GradeMatch.key(KL2_TO_KL0, "failures.other"), "int", "low"
    ),
    "mask area X′2": AblationColumn(Quality.path("edit_mask_area_kl2_to_kl0"), "pct", "info"),
    "refused X′": AblationColumn(Fidelity.path("refusal_rate"), "pct", "low"),
    "non-key SSIM": AblationColumn(Fidelity.path("nonkey_ssim_median"), "num", "high"),
    "SVM hK": AblationColumn(Separability.path("svm_hk_accuracy"), "pct", "high"),
    "SVM hN": AblationColumn(Separability.path("svm_hn_accuracy"), "pct", "low"),
    "recon PSNR dB": AblationColumn(Quality.path("recon_psnr"), "db", "high"),
    "recon SSIM": AblationColumn(Quality.path("recon_ssim"), "num", "high"),
    "pairs/s": AblationColumn(f"{TIMING}.pairs_per_s", "int", "high"),
    "train s": AblationColumn(f"{TIMING}.train_seconds", "int", "low"),
}
