"""The settings of ``kecae reader-study prepare|serve|analyze``: one dataclass each, every number
with its range (checked when the command line or a library call builds them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from kecae.config import Range, setting

#: A TCP port; 0 lets the system pick a free one.
PORT: Range = (0, 65535, True, "a port from 0 to 65535 (0: any free port)")
#: Request threads: with 0 the server accepts connections and never answers them.
THREADS: Range = (1, 1024, True, "a whole number of threads from 1 to 1024")
#: Bootstrap resamples of the 95 % intervals; 0 leaves the intervals out.
BOOTSTRAP: Range = (0, 100_000, True, "a whole number from 0 to 100000 (0: no intervals)")


@dataclass
class PrepareConfig:
    """A blinded reader study from a generated folder."""

    generated: str = setting(
        "", required=True, metavar="DIR"
    )  # folder written by `kecae generate` (with manifest.csv)
    pairs: int = setting(
        0, required=True, metavar="M", range=(1, math.inf, True, "a whole number >= 1")
    )  # pairs to show; each gives X'1 and X'2
    readers: list[str] = setting(
        factory=list, required=True, flag="--readers", metavar="NAME"
    )  # reader names, one personal link each
    controls: int = setting(
        0, metavar="K", range=(0, math.inf, True, "a whole number >= 0")
    )  # real images mixed in as controls, half KL-0 and half KL-2
    seed: int = 0  # seeds the choices and orders
    out: str = setting("", required=True, metavar="STUDY")  # study folder to create


@dataclass
class ServeConfig:
    """The web app a study's readers answer in."""

    study: str = setting("", positional=True, metavar="STUDY")  # the study folder
    host: str = "127.0.0.1"  # address to listen on (127.0.0.1: this machine only)
    port: int = setting(8765, range=PORT)  # port (0: any free)
    threads: int = setting(8, range=THREADS)  # request threads


@dataclass
class AnalyzeConfig:
    """Table III of a study."""

    study: str = setting("", positional=True, metavar="STUDY")  # the study folder
    run: str | None = setting(
        None, metavar="RUN"
    )  # also write the 'reader_study' section of RUN/metrics.json
    bootstrap: int = setting(
        2000, metavar="B", range=BOOTSTRAP
    )  # bootstrap resamples for the intervals
    seed: int = 0  # bootstrap seed
