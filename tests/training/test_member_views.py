"""A supervisor ensemble whose members see other views than the supervisor: ``kecae run`` /
``kecae demo`` train member k with its preset's model settings (``PRESET_MEMBER_MODELS``), and
the studies retrain every member as the run's own member was made (its config.yaml), each at its
own seed."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from kecae.config import save_yaml
from kecae.models import build_classifier
from kecae.models.presets import INNER_VIEW, PRESET_MEMBER_MODELS, preset_member_model
from kecae.pipeline import RunConfig, _train_supervisors
from kecae.runfolder import RunLayout
from kecae.studies.robustness import Recipe
from kecae.studies.subruns import member_recipe
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig


@pytest.fixture
def inner_member(monkeypatch):
    """The tiny preset with one inner-view member (the cpu preset's shape)."""
    monkeypatch.setitem(PRESET_MEMBER_MODELS, "tiny", [dict(INNER_VIEW)])


def test_preset_member_model_lists_members_from_one():
    assert INNER_VIEW == {"margin_fraction": 0.15, "patch_fraction": 0.35}
    for preset in PRESET_MEMBER_MODELS:
        assert preset_member_model(preset, 0) == {}  # member 0 is the supervisor
        assert preset_member_model(preset, 99) == {}  # a member not listed: as the supervisor
    with pytest.raises(ValueError, match="unknown KECAE preset"):
        preset_member_model("huge", 1)


def test_the_pipeline_trains_member_one_with_the_presets_view(tmp_path, inner_member, caplog):
    layout = RunLayout(tmp_path / "run")
    seen: list[ClassifierTrainConfig] = []

    def fake_train(c):
        seen.append(c)
        return {"accuracy": 1.0}

    cfg = RunConfig(out=str(layout.root), preset="tiny", supervisors=3)
    _train_supervisors(cfg, layout, 64, {}, fake_train)
    assert [c.model for c in seen] == [{}, INNER_VIEW, {}]
    assert [c.seed for c in seen] == [0, 1000, 2000]
    # another architecture has no patches to move: every member is trained as the supervisor
    seen.clear()
    cfg = dataclasses.replace(cfg, supervisor_arch="small")
    _train_supervisors(cfg, layout, 64, {}, fake_train)
    assert [c.model for c in seen] == [{}, {}, {}]
    assert "member 1 is trained as the supervisor" in caplog.text


def test_a_view_on_another_architecture_is_refused():
    with pytest.raises(ValueError, match=r"margin_fraction=0\.15 moves the siamese"):
        build_classifier("small", 64, margin_fraction=0.15)


def test_the_studies_retrain_each_member_as_the_run_made_it(tmp_path):
    layout = RunLayout(tmp_path / "run")
    supervisor = ClassifierTrainConfig(out=str(layout.supervisor.folder), adv_eps=0.03, seed=0)
    layout.supervisor_member(1).folder.mkdir(parents=True)
    save_yaml(
        dataclasses.replace(supervisor, model=dict(INNER_VIEW), seed=1000),
        layout.supervisor_member(1).config,
    )
    one = member_recipe(layout, 1, supervisor)
    # the member's view, the supervisor's recipe otherwise (seeds are the caller's)
    assert one == dataclasses.replace(supervisor, model=INNER_VIEW)
    assert member_recipe(layout, 0, supervisor) is supervisor
    assert member_recipe(layout, 2, supervisor) is supervisor  # no member 2 in the run
    recipe = Recipe(
        supervisor=supervisor,
        judge=ClassifierTrainConfig(arch="small"),
        kecae=KECAETrainConfig(supervisors=3, supervisor_members=["s1.pt", "s2.pt"]),
        gen_pairs=4,
        eval_pairs=4,
        members=(one, member_recipe(layout, 2, supervisor)),
    )
    assert [recipe.member(k).model for k in range(3)] == [{}, INNER_VIEW, {}]
    assert yaml.safe_load(layout.supervisor_member(1).config.read_text())["model"] == INNER_VIEW


def test_kecae_train_with_the_cpu_preset_names_the_member_it_needs(capsys):
    from kecae.cli import main

    assert main(["train", "--data", "d", "--supervisor", "s.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kecae train: error: the cpu preset trains against 2 frozen supervisors")
    assert "--model margin_fraction=0.15 --model patch_fraction=0.35" in err
    assert "--supervisors 1" in err and "\n" not in err


def test_the_report_says_which_member_sees_the_inner_view(tmp_path):
    from kecae.report.recipe import _member_views

    layout = RunLayout(tmp_path)
    layout.kecae.folder.mkdir()
    for k, model in ((1, dict(INNER_VIEW)), (2, {})):
        layout.supervisor_member(k).folder.mkdir(parents=True)
        save_yaml(ClassifierTrainConfig(model=model), layout.supervisor_member(k).config)
    members = ["../supervisor_1/best.pt", "../supervisor_2/best.pt", "../supervisor_3/best.pt"]
    text = _member_views(members, layout.kecae.folder)
    assert text == (
        "; member 1 sees only the inner view (its patches start 15% of the side in from the "
        "edges, so not the outer joint margins where spurs grow)"
    )
    assert _member_views([], layout.kecae.folder) == ""


def test_kecae_train_takes_the_members_from_its_config_file(tmp_path, capsys):
    """A run's own config.yaml (``--config``) names the members: the preset's check lets it by,
    and the next check is the one about the missing data folder."""
    from kecae.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(
        "data: missing_folder\nsupervisor: s.pt\nsupervisors: 2\nsupervisor_members: [m1.pt]\n"
    )
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "frozen supervisors" not in err
    assert "missing_folder" in err
