"""Configurations (kecae.config): YAML and command-line values coerced by the dataclass field's
type (one case per field type), every number checked against its range, relative YAML paths
read from the file's folder, defaults < file < command line, help from the field comments."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from kecae.cli.options import from_args
from kecae.config import check_values, coerce_values, load_yaml, save_yaml
from kecae.errors import KecaeError
from kecae.training.config import ClassifierTrainConfig, KECAETrainConfig


@dataclass
class Every:
    """One field of each type the configurations use."""

    count: int = 1  # int
    rate: float = 0.5  # float
    flag: bool = False  # bool
    name: str = "x"  # str
    maybe: str | None = None  # optional str
    size: int | None = None  # optional int
    dirs: list[str] = field(default_factory=list)  # list of str
    ints: list[int] = field(default_factory=list)  # list of int
    model: dict[str, Any] = field(default_factory=dict)  # mapping


@pytest.mark.parametrize(
    "name, raw, want",
    [
        ("count", "100", 100),
        ("count", "1e3", 1000),
        ("count", 7.0, 7),
        ("count", "100_000", 100000),
        ("rate", "1e-3", 1e-3),
        ("rate", 2, 2.0),
        ("rate", " 0.25 ", 0.25),
        ("flag", "true", True),
        ("flag", "no", False),
        ("flag", 1, True),
        ("flag", False, False),
        ("name", 2024, "2024"),
        ("name", "cpu", "cpu"),
        ("maybe", None, None),
        ("maybe", "abc", "abc"),
        ("size", None, None),
        ("size", "64", 64),
        ("dirs", "gen", ["gen"]),
        ("dirs", ["a", "b"], ["a", "b"]),
        ("ints", "0,2", [0, 2]),
        ("ints", [0, "2"], [0, 2]),
        ("model", {"width": 0.5}, {"width": 0.5}),
    ],
)
def test_values_coerced_by_field_type(name, raw, want):
    got = coerce_values(Every, {name: raw}, "test.yaml")[name]
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(
    "name, raw, words",
    [
        ("count", "many", "is not a whole number"),
        ("count", 2.5, "is not a whole number"),
        ("count", True, "is not a whole number"),
        ("rate", "fast", "is not a number"),
        ("rate", [1], "is not a number"),
        ("flag", "maybe", "true or false"),
        ("flag", 2, "true or false"),
        ("name", ["a"], "is not a text"),
        ("model", "width=0.5", "mapping"),
    ],
)
def test_values_that_cannot_be_coerced_name_field_and_example(name, raw, words):
    with pytest.raises(KecaeError, match=f"test.yaml: {name}: .*{words}.*e\\.g\\. {name}: "):
        coerce_values(Every, {name: raw}, "test.yaml")


def test_yaml_lr_string_becomes_float_and_paths_are_relative_to_the_file(tmp_path):
    """YAML 1.1 reads `lr: 1e-3` as a string; a run folder's config.yaml with relative paths
    must read the same from any working folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.yaml").write_text(
        "lr: 1e-3\nlambda_sup: 1E-2\nmax_steps: 1e3\ndata: ../data\nout: .\nprogress: 'no'\n"
    )
    cfg = load_yaml(KECAETrainConfig, tmp_path / "sub" / "c.yaml")
    assert cfg.lr == 1e-3 and cfg.lambda_sup == 0.01 and cfg.max_steps == 1000
    assert cfg.data == str(tmp_path / "data") and cfg.out == str(tmp_path / "sub")
    assert cfg.progress is False
    from kecae.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--config", str(tmp_path / "sub" / "c.yaml"), "--batch-size", "16"]
    )
    merged = from_args(KECAETrainConfig, args)
    assert merged.lr == 1e-3 and merged.batch_size == 16 and merged.data == str(tmp_path / "data")
    (tmp_path / "bad.yaml").write_text("lr: fast\n")
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(KecaeError, match=r"bad.yaml: lr: 'fast' is not a number \(e.g. lr: 1e-3"):
        from_args(KECAETrainConfig, args)


@pytest.mark.parametrize(
    "cls, name, value, words",
    [
        (KECAETrainConfig, "batch_size", 0, "--batch-size 0: must be a whole number >= 1"),
        (KECAETrainConfig, "batch_size", -1, "--batch-size -1: must be a whole number >= 1"),
        (KECAETrainConfig, "max_steps", -1, "--max-steps -1: must be a whole number >= 0"),
        (KECAETrainConfig, "log_every", 0, "--log-every 0"),
        (KECAETrainConfig, "sample_every", 0, "--sample-every 0"),
        (KECAETrainConfig, "ckpt_every", -5, "--ckpt-every -5"),
        (KECAETrainConfig, "seed", -1, "--seed -1: must be a whole number from 0"),
        (KECAETrainConfig, "lr", 0.0, "--lr 0.0: must be a finite number > 0"),
        (KECAETrainConfig, "lr", math.nan, "--lr nan: must be a finite number > 0"),
        (KECAETrainConfig, "lr", math.inf, "--lr inf"),
        (KECAETrainConfig, "lambda_sup", -0.1, "--lambda-sup -0.1: must be a finite number >= 0"),
        (KECAETrainConfig, "lambda_lda", math.inf, "--lambda-lda inf"),
        (KECAETrainConfig, "lambda_disp", math.nan, "--lambda-disp nan"),
        (KECAETrainConfig, "lda_eps", 0.0, "--lda-eps 0.0: must be a finite number > 0"),
        (KECAETrainConfig, "num_pairs", 0, "--num-pairs 0: must be a whole number >= 1"),
        (KECAETrainConfig, "epochs", 0, "--epochs 0"),
        (ClassifierTrainConfig, "max_train", -1, "--max-train -1: must be a whole number >= 0"),
        (ClassifierTrainConfig, "image_size", 8, "--image-size 8: must be a side in pixels"),
        (ClassifierTrainConfig, "image_size", 100_000, "--image-size 100000"),
        (ClassifierTrainConfig, "patience", 0, "--patience 0"),
        (ClassifierTrainConfig, "weight_decay", -1e-4, "--weight-decay -0.0001"),
    ],
)
def test_every_number_is_range_checked(cls, name, value, words):
    # a KECAETrainConfig checks itself when built (its loss settings do), the others on demand
    with pytest.raises(KecaeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_values(cls(**{name: value}))


def test_defaults_pass_the_range_checks():
    from kecae.evaluation.config import EvaluateConfig
    from kecae.generation import GenerateConfig
    from kecae.pipeline import DemoConfig, RunConfig

    for cls in (
        KECAETrainConfig,
        ClassifierTrainConfig,
        GenerateConfig,
        EvaluateConfig,
        RunConfig,
        DemoConfig,
    ):
        check_values(cls())


def test_help_lists_inherited_fields():
    """`kecae demo --help` documents the pipeline options it inherits from `kecae run`."""
    from kecae.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    demo = sub["demo"].format_help()
    assert "--kecae-steps" in demo and "KECAE optimiser steps" in demo and "--kl0" in demo
    assert "--data " not in demo and "--patient-regex" not in demo
    assert "--patient-regex" in sub["run"].format_help()


def test_config_yaml_round_trip_and_cli_precedence(tmp_path):
    cfg = KECAETrainConfig(
        data=str(tmp_path / "d"), out=str(tmp_path / "run"), lambda_sup=0.5, model={"width": 0.5}
    )
    save_yaml(cfg, tmp_path / "c.yaml")
    assert load_yaml(KECAETrainConfig, tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("lambda_supp: 1\n")
    with pytest.raises(KecaeError, match="lambda_supp"):
        load_yaml(KECAETrainConfig, tmp_path / "bad.yaml")
    from kecae.cli import build_parser
    from kecae.cli.options import from_args

    args = build_parser().parse_args(
        [
            "train",
            "--config",
            str(tmp_path / "c.yaml"),
            "--lambda-sup",
            "0.25",
            "--model",
            "image_size=64",
        ]
    )
    merged = from_args(KECAETrainConfig, args)
    assert merged.lambda_sup == 0.25 and merged.data == str(tmp_path / "d")
    assert merged.model == {"width": 0.5, "image_size": 64}
    assert ClassifierTrainConfig().arch == "siamese"
