"""The KECAE trainer (kecae.training.kecae_trainer): resume equals an uninterrupted run, strict
resume and --fresh, the NaN stop, the frozen and the joint supervisor."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from kecae import losses
from kecae.checkpoint import load_checkpoint
from kecae.cli import main
from kecae.errors import KecaeError
from kecae.training import kecae_trainer
from kecae.training.config import KECAETrainConfig, LossSettings


def test_kecae_resume_equals_uninterrupted(tree, supervisor, tmp_path, kecae_args):
    assert main(kecae_args(tree, supervisor, tmp_path / "straight", 6)) == 0
    assert main(kecae_args(tree, supervisor, tmp_path / "split", 3)) == 0
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 3
    assert main(kecae_args(tree, supervisor, tmp_path / "split", 6)) == 0  # resumes at 3
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # the resumed log continues the first part's rows (the first part also logged its last step)
    steps = [
        int(r.split(",")[0]) for r in (tmp_path / "split" / "log.csv").read_text().splitlines()[1:]
    ]
    assert steps == [2, 3, 4, 6]
    assert sorted(p.name for p in (tmp_path / "split" / "samples").iterdir()) == [
        "step_0000003.png",
        "step_0000006.png",
    ]
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["first_terms"]["step"] == 2 and summary["last_terms"]["step"] == 6


def test_kecae_no_resume_refuses_used_folder(tree, supervisor, tmp_path, kecae_args):
    assert main(kecae_args(tree, supervisor, tmp_path / "r", 2)) == 0
    with pytest.raises(KecaeError, match="--resume"):
        from kecae.training.kecae_trainer import train_kecae

        train_kecae(
            KECAETrainConfig(
                data=str(tree),
                out=str(tmp_path / "r"),
                supervisor=str(supervisor),
                preset="tiny",
                max_steps=4,
                num_pairs=100,
                batch_size=8,
                resume=False,
                progress=False,
                device="cpu",
            )
        )


def test_kecae_resume_may_change_stopping_and_logging_and_fresh_starts_a_new_folder(
    tree, supervisor, tmp_path, capsys, kecae_args
):
    out = tmp_path / "r"
    assert main(kecae_args(tree, supervisor, out, 2)) == 0
    # more steps, other logging cadence, other device name: a continuation
    assert (
        main(
            [
                *kecae_args(tree, supervisor, out, 3),
                "--log-every",
                "1",
                "--ckpt-every",
                "1",
                "--sample-every",
                "5",
                "--device",
                "auto",
            ]
        )
        == 0
    )
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3
    # another learning rate: refused; with --fresh the run starts in r-2, r is left as it is
    before = (out / "checkpoints" / "last.pt").read_bytes()
    capsys.readouterr()
    assert main([*kecae_args(tree, supervisor, out, 2), "--lr", "5e-4"]) == 2
    assert "lr 0.0001 there, 0.0005 now" in capsys.readouterr().err
    assert main([*kecae_args(tree, supervisor, out, 2), "--lr", "5e-4", "--fresh"]) == 0
    assert (out / "checkpoints" / "last.pt").read_bytes() == before
    fresh = load_checkpoint(tmp_path / "r-2" / "checkpoints" / "last.pt")
    assert fresh["step"] == 2 and fresh["train_config"]["lr"] == 5e-4
    assert "KECAE:" in capsys.readouterr().out


def test_nan_stops_with_message_and_keeps_checkpoint(
    tree, supervisor, tmp_path, monkeypatch, capsys, kecae_args
):
    out = tmp_path / "nan"
    assert main(kecae_args(tree, supervisor, out, 2)) == 0
    before = load_checkpoint(out / "checkpoints" / "last.pt")
    import kecae.training.kecae_trainer as trainer

    real = trainer.kecae_loss

    def poisoned(*args, **kwargs):
        total, terms = real(*args, **kwargs)
        return total * float("nan"), terms

    monkeypatch.setattr(trainer, "kecae_loss", poisoned)
    assert main(kecae_args(tree, supervisor, out, 5)) == 2
    err = capsys.readouterr().err
    assert "nan at step 2" in err and "last.pt" in err
    after = load_checkpoint(out / "checkpoints" / "last.pt")
    assert after["step"] == before["step"] == 2
    for name, tensor in before["model"].items():
        assert torch.equal(tensor, after["model"][name])


def test_frozen_supervisor_is_eval_and_gradient_free(supervisor, tree):
    from kecae.training.supervisor import load_supervisor

    cfg = KECAETrainConfig(data=str(tree), supervisor=str(supervisor), preset="tiny")
    sup, _ = load_supervisor(cfg, 32, torch.device("cpu"))
    assert not sup.training and not any(p.requires_grad for p in sup.parameters())
    with pytest.raises(KecaeError, match="--image-size 64"):
        load_supervisor(cfg, 64, torch.device("cpu"))
    with pytest.raises(KecaeError, match="--supervisor"):
        load_supervisor(KECAETrainConfig(data=str(tree)), 32, torch.device("cpu"))


def test_joint_mode_trains_supervisor_too(tree, tmp_path):
    out = tmp_path / "joint"
    rc = main(
        [
            "train",
            "--data",
            str(tree),
            "--out",
            str(out),
            "--supervisor-mode",
            "joint",
            "--joint-arch",
            "small",
            "--preset",
            "tiny",
            "--max-steps",
            "2",
            "--num-pairs",
            "64",
            "--batch-size",
            "8",
            "--log-every",
            "1",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert "supervisor" in ckpt
    assert "sup_real" in (out / "log.csv").read_text().splitlines()[0]
    first = next(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert float(first["sup_real"]) > 0


class _Critic(torch.nn.Module):
    """A one-weight image critic: a term's own module with an optimiser of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.mean(dim=(1, 2, 3))[:, None])


def _critic_term() -> losses.Term:
    def fool(inp: losses.LossInputs, s: LossSettings) -> dict[str, torch.Tensor]:
        fake = torch.cat([inp.out.x1_ex, inp.out.x2_ex])
        return {"fool": F.softplus(-inp.modules["critic"](fake)).mean()}

    def update(critic: torch.nn.Module, inp: losses.LossInputs, s: LossSettings):
        real, fake = torch.cat([inp.x1, inp.x2]), torch.cat([inp.out.x1_ex, inp.out.x2_ex])
        value = F.softplus(-critic(real)).mean() + F.softplus(critic(fake.detach())).mean()
        return {"critic_loss": value}

    module = losses.TrainedModule(
        "critic",
        lambda config: _Critic(),
        optimizer=lambda params: torch.optim.Adam(params, lr=0.05),
        update=update,
        logs=("critic_loss",),
    )
    return losses.Term({"fool": "lambda_edit"}, fool, optional=True, module=module)


def test_a_new_term_with_its_own_module_and_optimiser_needs_no_trainer_change(
    tree, supervisor, tmp_path, monkeypatch, kecae_args
):
    monkeypatch.setattr(losses, "TERMS", (*losses.TERMS, _critic_term()))
    extra = ["--lambda-edit", "0.5", "--log-every", "1"]
    assert main([*kecae_args(tree, supervisor, tmp_path / "straight", 4), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 2), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 4), *extra]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    # the critic and its optimiser are saved, trained, and a resumed run equals a straight one
    assert a["critic_optimizer"]["state"], "the critic's Adam never stepped"
    for key in ("model", "critic"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    for name, state in a["critic_optimizer"]["state"][0].items():
        assert torch.equal(state, b["critic_optimizer"]["state"][0][name]), name
    rows = list(csv.DictReader((tmp_path / "straight" / "log.csv").read_text().splitlines()))
    assert len(rows) == 4 and all(float(r["critic_loss"]) > 0 for r in rows)
    weights = (("mse", 1), ("sup", 1e-2), ("lda", 1e-3), ("edit", 0.5))  # --lambda-edit weighs both
    for r in rows:  # the new term is in the total with its weight
        by_hand = sum(float(r[k]) * w for k, w in weights)
        assert float(r["total"]) == pytest.approx(by_hand + 0.5 * float(r["fool"]), rel=1e-4)


def test_module_updates_steps_each_own_optimiser_that_many_times(
    tree, supervisor, tmp_path, monkeypatch, kecae_args
):
    monkeypatch.setattr(losses, "TERMS", (*losses.TERMS, _critic_term()))
    extra = ["--lambda-edit", "0.5", "--module-updates", "3"]
    assert main([*kecae_args(tree, supervisor, tmp_path / "r", 2), *extra]) == 0
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    # two model steps, three updates of the critic after each (on the same batch)
    assert float(ckpt["optimizer"]["state"][0]["step"]) == 2
    assert float(ckpt["critic_optimizer"]["state"][0]["step"]) == 6
    assert (
        main(
            [
                *kecae_args(tree, supervisor, tmp_path / "bad", 2),
                *extra[:2],
                "--module-updates",
                "0",
            ]
        )
        == 2
    )


_EDIT_MODEL = [
    *("--model", "depth=3"),
    *("--model", "exchange=warp"),
    *("--model", "warp_grid=8"),
    *("--model", "edit=true"),
]


def test_the_edit_trains_with_its_mask_terms_and_patch_adversary_and_resumes(
    tree, supervisor, tmp_path, kecae_args
):
    extra = [
        *_EDIT_MODEL,
        "--lambda-mask-area",
        "0.1",
        "--lambda-mask-tv",
        "0.01",
        "--lambda-mask-self",
        "0.1",
        "--lambda-patch-adv",
        "0.1",
        "--adv-ramp",
        "2",
        "--log-every",
        "1",
    ]
    assert main([*kecae_args(tree, supervisor, tmp_path / "straight", 4), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 2), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 4), *extra]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert any(k.startswith("edit_head.") for k in a["model"])
    for key in ("model", "patch_disc"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    rows = list(csv.DictReader((tmp_path / "straight" / "log.csv").read_text().splitlines()))
    for name in ("mask_area", "mask_tv", "mask_self", "patch_adv", "patch_d"):
        assert all(math.isfinite(float(r[name])) for r in rows), name
    # the adversary's weight ramps up from 0 over --adv-ramp steps: 0 at step 0, 0.05 at step 1
    for r, ramp in zip(rows[:2], (0.0, 0.05), strict=True):
        rest = float(r["total"]) - ramp * float(r["patch_adv"])
        other = (
            float(r["mse"])
            + 1e-2 * float(r["sup"])
            + 1e-3 * float(r["lda"])
            + 0.1 * (float(r["mask_area"]) + float(r["mask_self"]))
            + 0.01 * float(r["mask_tv"])
        )
        assert rest == pytest.approx(other, rel=1e-4)


def _straight_and_split(tree, supervisor, tmp_path, kecae_args, extra, steps):
    """Train ``steps`` steps in one go and again in two calls (``steps - 1``, then the rest);
    returns both last checkpoints and the straight run's log rows."""
    assert main([*kecae_args(tree, supervisor, tmp_path / "straight", steps), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", steps - 1), *extra]) == 0
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", steps), *extra]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    rows = list(csv.DictReader((tmp_path / "straight" / "log.csv").read_text().splitlines()))
    return a, b, rows


def test_a_cosine_schedule_cools_every_optimiser_and_resumes(
    tree, supervisor, tmp_path, kecae_args, monkeypatch
):
    extra = [
        *_EDIT_MODEL,
        *("--lambda-patch-adv", "0.1", "--lr", "0.001", "--lr-schedule", "cosine"),
        *("--log-every", "1", "--ckpt-every", "2"),
    ]
    assert main([*kecae_args(tree, supervisor, tmp_path / "straight", 4), *extra]) == 0
    # the same run cut after its checkpoint at step 2, then resumed
    save = kecae_trainer._save_checkpoint

    def cut(run, cfg, model_config, parts, done, steps_per_epoch):
        save(run, cfg, model_config, parts, done, steps_per_epoch)
        if done == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(kecae_trainer, "_save_checkpoint", cut)
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 4), *extra]) == 130
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 2
    monkeypatch.setattr(kecae_trainer, "_save_checkpoint", save)
    assert main([*kecae_args(tree, supervisor, tmp_path / "split", 4), *extra]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for key in ("model", "patch_disc"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    # step k (0-based) trains at 1e-3 · (1 + cos(pi k / 4)) / 2: 1e-3, 8.54e-4, 5e-4, 1.46e-4
    want = [1e-3 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    rows = list(csv.DictReader((tmp_path / "straight" / "log.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in rows] == pytest.approx(want, rel=1e-5)
    # the adversary's own Adam (made at 5e-4) cools alike
    for ckpt in (a, b):
        for key, made in (("optimizer", 1e-3), ("patch_disc_optimizer", 5e-4)):
            (group,) = ckpt[key]["param_groups"]
            assert group["initial_lr"] == pytest.approx(made), key
            assert group["lr"] == pytest.approx(made * want[3] / 1e-3), key


def test_the_healthy_edit_trains_its_inpainter_and_resumes(tree, supervisor, tmp_path, kecae_args):
    extra = [
        *_EDIT_MODEL,
        *("--model", "edit_appearance=healthy", "--model", "inpaint_channels=4"),
        *("--lambda-inpaint", "1", "--lambda-mask-area", "0.1", "--log-every", "1"),
    ]
    a, b, rows = _straight_and_split(tree, supervisor, tmp_path, kecae_args, extra, 3)
    assert any(k.startswith("inpainter.") for k in a["model"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    losses = [float(r["inpaint"]) for r in rows]
    assert len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)


def test_the_local_critic_trains_beside_the_model_and_resumes(
    tree, supervisor, tmp_path, kecae_args
):
    extra = [
        *("--model", "depth=3", "--model", "exchange=warp", "--model", "warp_grid=8"),
        *("--lambda-local-sup", "0.1", "--adv-ramp", "2", "--log-every", "1"),
    ]
    a, b, rows = _straight_and_split(tree, supervisor, tmp_path, kecae_args, extra, 3)
    for key in ("model", "local_critic"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    for name in ("local_sup", "local_critic"):
        assert all(math.isfinite(float(r[name])) for r in rows), name
    # ramped like the patch adversary: weight 0 at step 0, 0.05 at step 1
    for r, ramp in zip(rows[:2], (0.0, 0.05), strict=True):
        rest = float(r["total"]) - ramp * float(r["local_sup"])
        other = float(r["mse"]) + 1e-2 * float(r["sup"]) + 1e-3 * float(r["lda"])
        assert rest == pytest.approx(other, rel=1e-4)


def test_a_diverging_term_stops_naming_the_step_and_the_term(
    tree, supervisor, tmp_path, monkeypatch, capsys, kecae_args
):
    out = tmp_path / "nan"
    extra = [*_EDIT_MODEL, "--lambda-patch-adv", "0.1", "--adv-ramp", "0"]
    assert main([*kecae_args(tree, supervisor, out, 2), *extra]) == 0
    before = load_checkpoint(out / "checkpoints" / "last.pt")
    import kecae.training.kecae_trainer as trainer

    real = trainer.kecae_loss

    def poisoned(inputs, settings):
        total, terms = real(inputs, settings)
        if inputs.step == 3:
            terms["patch_adv"] = terms["patch_adv"] * float("inf")
        return total, terms

    monkeypatch.setattr(trainer, "kecae_loss", poisoned)
    assert main([*kecae_args(tree, supervisor, out, 5), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "the loss term 'patch_adv' became inf at step 3" in err[0]
    assert "last.pt" in err[0]
    after = load_checkpoint(out / "checkpoints" / "last.pt")
    assert after["step"] == before["step"] == 2  # the step-3 state was never saved
    for name, tensor in before["patch_disc"].items():
        assert torch.equal(tensor, after["patch_disc"][name])


def test_an_exploding_adversary_stops_the_run(
    tree, supervisor, tmp_path, monkeypatch, capsys, kecae_args
):
    import kecae.training.kecae_trainer as trainer

    real = trainer.update_modules

    def exploding(*args, **kwargs):
        logged = real(*args, **kwargs)
        return {name: value * float("nan") for name, value in logged.items()}

    monkeypatch.setattr(trainer, "update_modules", exploding)
    extra = [*_EDIT_MODEL, "--lambda-patch-adv", "0.1"]
    assert main([*kecae_args(tree, supervisor, tmp_path / "x", 3), *extra]) == 2
    assert "the loss term 'patch_d' became nan at step 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--lambda-mask-area", "0.1"], "--lambda-mask-tv / --lambda-mask-self price the edit"),
        (["--lambda-mask-self", "0.1"], "price the edit's mask: add --model edit=true"),
        (["--lambda-mask-tv", "0.1", "--model", "exchange=warp"], "add --model edit=true"),
        (["--mask-free-area", "2"], "--mask-free-area 2.0: must be a share of the image"),
        (["--patch-crop", "0"], "--patch-crop 0.0: must be a share of the image side"),
        (["--adv-ramp", "-5"], "--adv-ramp -5: must be a whole number of steps"),
        (["--model", "edit=true"], "edit=True needs exchange='warp'"),
        (
            ["--model", "exchange=warp", "--model", "edit=true", "--model", "edit_channels=0"],
            "edit_channels=0",
        ),
        (
            [*_EDIT_MODEL, "--model", "edit_appearance=healthy"],
            "edit_appearance=healthy (with edit=true) and --lambda-inpaint go together",
        ),
        ([*_EDIT_MODEL, "--lambda-inpaint", "1"], "and --lambda-inpaint go together"),
        (
            [*_EDIT_MODEL, "--model", "edit_appearance=healthy", "--model", "inpaint_channels=0"],
            "inpaint_channels=0",
        ),
        (
            [*_EDIT_MODEL, "--model", "inpaint_fill_grad=maybe"],
            "inpaint_fill_grad='maybe' must be true or false",
        ),
        (
            [*_EDIT_MODEL, "--lambda-control", "1"],
            "--lambda-control prices what the healthy fill changes",
        ),
        (["--local-fakes-from", "warped"], "--local-fakes-from warped chooses"),
        (["--local-fakes"], "--local-fakes trains the local grade critic on X'2 too"),
        (["--inpaint-mask-margin", "0.5"], "--inpaint-mask-margin 0.5: must be a share"),
    ],
)
def test_edit_options_are_refused_in_one_line_before_training(
    tree, supervisor, tmp_path, capsys, kecae_args, args, words
):
    out = tmp_path / "refused"
    assert main([*kecae_args(tree, supervisor, out, 2), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (out / "checkpoints").exists()


def test_kecae_resume_refuses_a_checkpoint_of_another_model(
    tree, supervisor, tmp_path, capsys, kecae_args
):
    """A preset redefined since the run began (here: the checkpoint says its key map was pooled,
    today's tiny preset does not pool) is refused on resume, naming the field, before a step."""
    import torch

    out = tmp_path / "r"
    assert main(kecae_args(tree, supervisor, out, 2)) == 0
    last = out / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(last)
    assert "warp_bound" in ckpt["model_config"]
    ckpt["model_config"] = {**ckpt["model_config"], "key_pool": "mean"}
    del ckpt["model_config"]["warp_bound"]  # a checkpoint older than the field: its default
    torch.save(ckpt, last)
    capsys.readouterr()
    assert main(kecae_args(tree, supervisor, out, 3)) == 2
    err = capsys.readouterr().err
    assert "key_pool" in err and "warp_bound" not in err and "--fresh" in err
    assert load_checkpoint(last)["step"] == 2  # nothing trained, nothing overwritten


def test_augmented_pairs_are_a_function_of_the_step_and_resume_alike(
    tree, supervisor, tmp_path, kecae_args, monkeypatch
):
    seen = []
    real = kecae_trainer.classic_augment

    def spy(x, generator):
        y = real(x, generator)
        seen.append((x.clone(), y.clone()))
        return y

    monkeypatch.setattr(kecae_trainer, "classic_augment", spy)
    assert main([*kecae_args(tree, supervisor, tmp_path / "straight", 4), "--augment-pairs"]) == 0
    assert len(seen) == 8  # both images of every pair, each step
    assert all(x.shape == y.shape and not torch.equal(x, y) for x, y in seen)
    assert all(float(y.min()) >= -1 and float(y.max()) <= 1 for _, y in seen)
    split = tmp_path / "split"
    assert main([*kecae_args(tree, supervisor, split, 2), "--augment-pairs"]) == 0
    assert main([*kecae_args(tree, supervisor, split, 4), "--augment-pairs"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert main(kecae_args(tree, supervisor, tmp_path / "plain", 4)) == 0
    c = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")
    assert any(not torch.equal(t, c["model"][n]) for n, t in a["model"].items())
    assert len(seen) == 8 + 8  # the plain run augments nothing
