"""A supervisor ensemble (``--supervisors K``): J_SUP is the mean of the K frozen supervisors'
losses on the same exchanged images; K = 1 is the single supervisor, unchanged; the trainer
loads the members, the pipeline and the studies train them (seeds 1000 apart) and reuse them;
bad values stop at parse time with one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from kecae.cli import main
from kecae.edit_losses import perturb_for_supervisor
from kecae.errors import KecaeError
from kecae.losses import LossInputs, donor_supervision_term, kecae_loss, supervision_term
from kecae.models import KECAE, build_classifier, kecae_config
from kecae.runfolder import RunLayout
from kecae.studies.ablation import SharedInputs, row_train_config
from kecae.studies.ablation_rows import ROWS
from kecae.training.config import KECAETrainConfig, LossSettings, member_seed


def _batch():
    """A seeded tiny KECAE, two different (untrained) classifiers and a batch of 4 pairs."""
    torch.manual_seed(0)
    model = KECAE(kecae_config("tiny"))
    size = model.config.image_size
    sups = [
        build_classifier(arch="small", image_size=size, num_classes=2).eval().requires_grad_(False)
        for _ in range(2)
    ]
    x1 = torch.rand(4, 1, size, size) * 2 - 1
    x2 = torch.rand(4, 1, size, size) * 2 - 1
    y1 = torch.zeros(4, dtype=torch.long)
    return model, sups, x1, x2, y1, y1 + 1


LABEL = LossSettings(lambda_sup=0.1)
DONOR = LossSettings(lambda_sup=0.1, sup_target="donor", sup_perturb=1.0)


def _loss(settings: LossSettings, members: tuple = ()) -> tuple[float, float]:
    model, sups, x1, x2, y1, y2 = _batch()
    out = model(x1, x2)
    inputs = LossInputs(out, x1, x2, y1, y2, sups[0], generator=torch.Generator().manual_seed(5))
    inputs.members = [sups[i] for i in members]
    total, logged = kecae_loss(inputs, settings)
    return total.item(), logged["sup"].item()


def _by_hand(settings: LossSettings, which: list[int]) -> list[float]:
    """Each listed supervisor's own J_SUP on the once-perturbed X' (the old single-supervisor
    code path, written out)."""
    model, sups, x1, x2, y1, y2 = _batch()
    out = model(x1, x2)
    x_ex = torch.cat([out.x1_ex, out.x2_ex])
    x_ex = perturb_for_supervisor(x_ex, settings.sup_perturb, torch.Generator().manual_seed(5))
    values = []
    for i in which:
        logits = sups[i](x_ex)
        if settings.sup_target == "donor":
            values.append(donor_supervision_term(logits, sups[i], x1, x2).item())
        else:
            values.append(supervision_term(logits[:4], logits[4:], y1, y2).item())
    return values


@pytest.mark.parametrize(
    "settings, before",
    # (total, sup) of this batch computed by kecae.losses before the ensemble existed (4891ac2)
    [(LABEL, (3.572857141494751, 1.3845205307006836)), (DONOR, (3.5730957984924316, 1.38690829))],
)
def test_one_supervisor_is_the_loss_of_before(settings, before):
    total, sup = _loss(settings)
    assert sup == _by_hand(settings, [0])[0]  # bit for bit the single supervisor's J_SUP
    assert (total, sup) == pytest.approx(before, rel=1e-6)


@pytest.mark.parametrize("settings", [LABEL, DONOR])
def test_two_supervisors_give_the_mean_of_their_losses(settings):
    one, two = _by_hand(settings, [0, 1])
    assert abs(one - two) > 1e-3  # two different supervisors: the mean is not either one
    total1, sup1 = _loss(settings)
    total2, sup2 = _loss(settings, members=(1,))
    assert sup2 == pytest.approx((one + two) / 2, rel=1e-6)
    # only J_SUP changed, by λ1 times the change of its value
    assert total2 - total1 == pytest.approx(settings.lambda_sup * (sup2 - sup1), abs=1e-5)
    # the same supervisor twice is that supervisor
    assert _loss(settings, members=(0,))[1] == pytest.approx(sup1, rel=1e-6)


def test_the_gradient_reaches_the_model_through_every_member():
    model, sups, x1, x2, y1, y2 = _batch()
    settings = LossSettings(lambda_sup=1.0)

    def grad(members: list) -> torch.Tensor:
        model.zero_grad()
        inputs = LossInputs(model(x1, x2), x1, x2, y1, y2, sups[0])
        inputs.members = members
        kecae_loss(inputs, settings)[0].backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    g0, g1 = grad([]), grad([sups[1]])
    assert not torch.allclose(g0, g1)
    assert all(p.grad is None for s in sups for p in s.parameters())  # frozen: no weight grads


def test_settings_refuse_an_ensemble_without_its_members_or_in_joint_mode():
    assert member_seed(7, 0) == 7 and member_seed(7, 2) == 2007
    KECAETrainConfig(supervisors=2, supervisor_members=["b.pt"])
    with pytest.raises(ValueError, match="needs 1 --supervisor-members"):
        KECAETrainConfig(supervisors=2)
    with pytest.raises(ValueError, match="needs frozen supervisors"):
        KECAETrainConfig(supervisors=2, supervisor_members=["b"], supervisor_mode="joint")
    with pytest.raises(KecaeError, match="--supervisors 0"):
        KECAETrainConfig(supervisors=0)
    layout = RunLayout("/r")
    assert layout.supervisor_member(0) == layout.supervisor
    assert layout.supervisor_member(2).best == Path("/r/supervisor_2/best.pt")


JOINT = ["--supervisor-mode", "joint"]


@pytest.mark.parametrize(
    "args, says",
    [
        (["train", "--data", "d", "--supervisors", "0"], "--supervisors 0: must be"),
        (["train", "--data", "d", "--supervisors", "65"], "--supervisors 65: must be"),
        (["train", "--data", "d", "--supervisors", "2"], "needs 1 --supervisor-members"),
        (
            ["train", "--data", "d", "--supervisors", "2", "--supervisor-members", "a", "b"],
            "needs 1 --supervisor-members checkpoint(s) beside --supervisor, got 2",
        ),
        (
            ["train", "--supervisors", "2", "--supervisor-members", "a", *JOINT],
            "needs frozen supervisors",
        ),
        (["demo", "--supervisors", "0"], "--supervisors 0: must be"),
        (["run", "--data", "d", "--supervisors", "-1"], "--supervisors -1: must be"),
    ],
)
def test_bad_ensemble_options_exit_2_with_one_line(args, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err
    assert not any(tmp_path.iterdir())  # nothing made


def test_trainer_averages_over_the_members(tree, supervisor, kecae_args, tmp_path):
    """The same checkpoint as member 1 gives the single supervisor's J_SUP (a mean of equals);
    another supervisor changes it. The checkpoint and config keep the members."""

    def sup_column(out: Path) -> list[float]:
        rows = (out / "log.csv").read_text().splitlines()
        col = rows[0].split(",").index("sup")
        return [float(r.split(",")[col]) for r in rows[1:]]

    assert main(kecae_args(tree, supervisor, tmp_path / "k1", 4)) == 0
    twin = tmp_path / "twin.pt"
    shutil.copy(supervisor, twin)
    ens = [*kecae_args(tree, supervisor, tmp_path / "k2", 4), "--supervisors", "2"]
    assert main([*ens, "--supervisor-members", str(twin)]) == 0
    assert sup_column(tmp_path / "k2") == pytest.approx(sup_column(tmp_path / "k1"), rel=1e-5)
    config = yaml.safe_load((tmp_path / "k2" / "config.yaml").read_text())
    assert (config["supervisors"], config["supervisor_members"]) == (2, [str(twin)])

    other = tmp_path / "other"
    args = ["train-classifier", "--data", str(tree), "--out", str(other), "--arch", "small"]
    args += ["--image-size", "32", "--epochs", "1", "--seed", "1000", "--no-progress"]
    assert main(args) == 0
    ens3 = [*kecae_args(tree, supervisor, tmp_path / "k3", 4), "--supervisors", "2"]
    assert main([*ens3, "--supervisor-members", str(other / "best.pt")]) == 0
    assert sup_column(tmp_path / "k3") != pytest.approx(sup_column(tmp_path / "k1"), rel=1e-3)


def test_ablation_row_g32_patch_ens3_is_g32_patch_with_three_supervisors(tmp_path):
    row, base = ROWS["g32_patch_ens3"], ROWS["g32_patch"]
    assert row.model == base.model
    assert {k: v for k, v in row.train.items() if k != "supervisors"} == base.train
    inputs = SharedInputs("d", "s0.pt", "j.pt", None, members=("s1.pt", "s2.pt"))
    from kecae.studies.ablation import AblationConfig

    cfg = AblationConfig(run=str(tmp_path), steps=2)
    kcfg = row_train_config(row, cfg, inputs=inputs, out=tmp_path / "k", seed=0)
    assert (kcfg.supervisors, kcfg.supervisor_members) == (3, ["s1.pt", "s2.pt"])
    one = row_train_config(base, cfg, inputs=inputs, out=tmp_path / "k", seed=0)
    assert (one.supervisors, one.supervisor_members) == (1, [])
    assert dataclasses.replace(kcfg, supervisors=1, supervisor_members=[]) == one


def test_demo_trains_the_members_and_a_rerun_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--kl0", "50", "--kl2", "34", "--phantom-size", "64"]
    args += ["--preset", "tiny", "--classifier-epochs", "1", "--kecae-steps", "2"]
    args += ["--gen-pairs", "4", "--eval-pairs", "12", "--device", "cpu"]
    assert main([*args, "--supervisors", "3"]) == 0
    layout = RunLayout(out)
    members = [layout.supervisor_member(k) for k in range(3)]
    assert all(m.finished for m in members)
    seeds = [yaml.safe_load(m.config.read_text())["seed"] for m in members]
    assert seeds == [0, 1000, 2000]
    kecae = yaml.safe_load(layout.kecae.config.read_text())
    assert kecae["supervisors"] == 3
    assert kecae["supervisor_members"] == ["../supervisor_1/best.pt", "../supervisor_2/best.pt"]
    # the evaluation's supervisor is member 0, and the report says so
    metrics = json.loads(layout.metrics.read_text())
    assert metrics["supervisor"]["checkpoint"] == str(layout.supervisor.best)
    assert "mean over 3 frozen supervisors" in layout.report.read_text()

    stamps = [m.best.stat().st_mtime_ns for m in members] + [layout.kecae.last.stat().st_mtime_ns]
    capsys.readouterr()
    assert main([*args, "--supervisors", "3"]) == 0  # a rerun trains nothing again
    assert stamps == [m.best.stat().st_mtime_ns for m in members] + [
        layout.kecae.last.stat().st_mtime_ns
    ]
    capsys.readouterr()
    assert main([*args, "--supervisors", "2"]) == 2  # another ensemble: refused, one line
    err = capsys.readouterr().err.strip()
    assert err.startswith("kecae demo: error: ") and "\n" not in err
    assert "(supervisors 3 there, 2 now)" in err and "--fresh" in err

    # the ablation's rows use the run's members (reused, not trained again) ...
    from kecae.studies.subruns import train_supervisor_members

    def no_training(*a, **k):
        raise AssertionError("a finished member was trained again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("kecae.training.classifier_trainer.train_classifier", no_training)
        got = train_supervisor_members(layout, 3, "cpu", None, False)
    assert got == [str(members[1].best), str(members[2].best)]

    # ... and each fresh seed of the robustness study trains its own ensemble
    study = ["study", "robustness", "--run", str(out), "--seeds", "2", "--no-progress"]
    assert main([*study, "--device", "cpu"]) == 0
    seed1 = RunLayout(out / "studies" / "robustness" / "seed_1")
    seeds = [
        yaml.safe_load(seed1.supervisor_member(k).config.read_text())["seed"] for k in (0, 1, 2)
    ]
    assert seeds == [1, 1001, 2001]  # no classifier shared with seed 0's ensemble or judge
    kecae = yaml.safe_load(seed1.kecae.config.read_text())
    assert kecae["supervisor_members"] == ["../supervisor_1/best.pt", "../supervisor_2/best.pt"]

    # a downstream fraction trains its own ensemble on its subsample (the run's when it is whole)
    from types import SimpleNamespace

    from kecae.runfolder import DownstreamFraction
    from kecae.studies.fractions import _supervisors

    settings = SimpleNamespace(device="cpu", cache_dir=None, progress=False)
    fraction = DownstreamFraction(out / "fraction")
    mine = _supervisors(settings, layout, fraction, str(layout.data), {}, own=True)
    assert mine == [str(m.best) for m in members]
    mine = _supervisors(settings, layout, fraction, str(layout.data), {}, own=False)
    assert mine == [str(fraction.supervisor_member(k).best) for k in range(3)]
    configs = [yaml.safe_load(fraction.supervisor_member(k).config.read_text()) for k in range(3)]
    assert [c["seed"] for c in configs] == [0, 1000, 2000]


def test_supervisors_are_trained_adversarially_as_asked(tmp_path, capsys):
    """--supervisor-adv-eps (else the preset's) reaches every supervisor's training settings;
    the judge's settings have no such field set; out of range is refused at parse time."""
    from kecae.cli import main
    from kecae.models.presets import preset_supervisor
    from kecae.pipeline import RunConfig, _classifier_config, _train_supervisors

    layout = RunLayout(tmp_path / "run")
    seen = []

    def fake_train(c):
        seen.append(c)
        return {"accuracy": 1.0}

    for given, want in ((None, preset_supervisor("cpu").get("adv_eps", 0.0)), (0.02, 0.02)):
        seen.clear()
        cfg = RunConfig(out=str(layout.root), supervisors=2, supervisor_adv_eps=given)
        _train_supervisors(cfg, layout, 64, {}, fake_train)
        assert [c.adv_eps for c in seen] == [want, want]
        assert [c.seed for c in seen] == [0, 1000] and seen[1].out == str(
            layout.root / "supervisor_1"
        )
    judge = _classifier_config(layout.judge, "small", 1, RunConfig(supervisor_adv_eps=0.02), 64, {})
    assert judge.adv_eps == 0.0
    assert main(["demo", "--supervisor-adv-eps", "2"]) == 2
    assert "--supervisor-adv-eps 2.0: must be" in capsys.readouterr().err


def test_a_step_made_with_other_settings_is_refused_with_run_level_advice(tmp_path):
    """A run folder's supervisor made before the presets attacked theirs (no adv_eps in its
    config.yaml) is kept with --supervisor-adv-eps 0 and refused otherwise, naming that option;
    a KECAE trained with an earlier preset's loss is refused naming what a `kecae run` user can
    do (delete that step's folder, or --fresh), not the trainer's --config. The refusals are the
    trainers' own resume check, re-advised by the pipeline."""
    from kecae.pipeline import RunConfig, _retrain, _run_level_advice, _train_supervisors
    from kecae.reuse import SettingsDiffer, check_resumable
    from kecae.training.classifier_trainer import CLASSIFIER_MAY_CHANGE

    layout = RunLayout(tmp_path / "run")

    def resume_check(c):
        # what train_classifier does with a folder that holds a run: its settings against ours
        # (a member's folder that holds none, the cpu preset's inner-view member, trains afresh)
        if not Path(c.out, "config.yaml").is_file():
            return {"accuracy": 1.0}
        old = yaml.safe_load(Path(c.out, "config.yaml").read_text())
        check_resumable(c.out, old, c, CLASSIFIER_MAY_CHANGE)
        return {"accuracy": 1.0}

    layout.supervisor.folder.mkdir(parents=True)
    layout.supervisor.config.write_text("arch: siamese\nseed: 0\nimage_size: 64\n")
    refused_zero = r"adv_eps 0.0 there, 0.03 now.*--supervisor-adv-eps 0 "
    with pytest.raises(SettingsDiffer, match=refused_zero):
        _train_supervisors(RunConfig(out=str(layout.root)), layout, 64, {}, resume_check)
    assert _train_supervisors(
        RunConfig(out=str(layout.root), supervisor_adv_eps=0.0), layout, 64, {}, resume_check
    ) == {"accuracy": 1.0}
    layout.supervisor.config.write_text("arch: siamese\nseed: 0\nimage_size: 64\nadv_eps: 0.03\n")
    with pytest.raises(SettingsDiffer, match=r"--supervisor-adv-eps 0\.03 to keep it, or --fresh"):
        _train_supervisors(
            RunConfig(out=str(layout.root), supervisor_adv_eps=0.0), layout, 64, {}, resume_check
        )
    # another field too: the advice is to retrain that step, not to name one radius
    layout.supervisor.config.write_text("arch: siamese\nseed: 0\nimage_size: 64\nlr: 0.5\n")
    with pytest.raises(SettingsDiffer, match=r"lr 0.5 there.*delete .*supervisor to train it"):
        _train_supervisors(RunConfig(out=str(layout.root)), layout, 64, {}, resume_check)

    # KECAE: the trainer's refusal, re-advised; someone else's folder is left as it was raised
    folder = layout.kecae.folder
    refusal = SettingsDiffer(folder, "a run", {"lambda_key_cls": (0.0, 0.1)}, "use --config X")
    with (
        pytest.raises(SettingsDiffer) as caught,
        _run_level_advice(folder, _retrain(folder, "KECAE")),
    ):
        raise refusal
    msg = str(caught.value)
    assert "lambda_key_cls 0.0 there, 0.1 now" in msg and "--config" not in msg
    assert f"delete {folder} to train it again here" in msg and "--fresh" in msg
    other = SettingsDiffer(tmp_path / "elsewhere", "a run", {"lr": (1, 2)}, "use --config X")
    with (
        pytest.raises(SettingsDiffer, match="use --config X"),
        _run_level_advice(folder, _retrain(folder, "KECAE")),
    ):
        raise other
