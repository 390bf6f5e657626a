"""`kecae study` (kecae.cli.study): options come from the studies' configurations, and an option
that is not given keeps the dataclass default."""

from __future__ import annotations

from kecae.cli import build_parser
from kecae.cli.options import from_args
from kecae.studies import downstream, sampling


def test_cli_unset_options_keep_the_dataclass_defaults():
    args = build_parser().parse_args(["study", "downstream", "--run", "r"])
    assert from_args(downstream.DownstreamConfig, args) == downstream.DownstreamConfig(run="r")
    args = build_parser().parse_args(
        ["study", "sampling", "--run", "r", "--sizes", "0", "7", "--no-progress", "--epochs", "2"]
    )
    got = from_args(sampling.SamplingConfig, args)
    assert got == sampling.SamplingConfig(run="r", sizes=[0, 7], progress=False, epochs=2)


def test_list_options_take_several_values_and_repeat():
    args = build_parser().parse_args(
        [
            "study",
            "downstream",
            "--run",
            "r",
            "--arch",
            "small",
            "resnet18",
            "--arch",
            "vgg11",
            "--sets",
            "T",
            "T'",
        ]
    )
    cfg = from_args(downstream.DownstreamConfig, args)
    assert cfg.archs == ["small", "resnet18", "vgg11"] and cfg.training_sets == ["T", "T'"]
