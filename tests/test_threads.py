"""CPU thread choice (kecae.threads): the rule, what the user fixes, the load measurement, the
governor in a training loop, and the command line's --threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from kecae import threads
from kecae.cli import main
from kecae.errors import KecaeError


@pytest.mark.parametrize(
    ("cores", "others", "most", "expected"),
    [
        (2, 0.0, None, 2),  # idle machine: every core
        (2, 0.3, None, 2),  # a core 70 % idle still counts
        (2, 0.31, None, 1),  # less than 70 % of it left: not idle
        (2, 0.67, None, 1),  # one busy process sharing 2 cores with our 2 threads
        (2, 1.0, None, 1),  # one core taken
        (2, 2.0, None, 1),  # all taken: still one thread
        (2, 5.0, None, 1),
        (16, 3.0, None, 13),
        (16, 0.0, 4, 4),  # never more than asked
        (1, 0.0, None, 1),
        (4, -1.0, None, 4),  # a negative measurement (clock skew) is no load
    ],
)
def test_threads_for_load(cores, others, most, expected):
    assert threads.threads_for_load(cores, others, most) == expected


def test_threads_for_load_needs_a_core():
    with pytest.raises(ValueError, match="cores=0"):
        threads.threads_for_load(0, 0.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OMP_NUM_THREADS": "3"}, 3),  # the user's
        ({"KECAE_THREADS": "2", "OMP_NUM_THREADS": "5"}, 2),  # --threads wins
        ({"KECAE_THREADS": "auto", "OMP_NUM_THREADS": "2", "KECAE_THREADS_SET": "2"}, None),
        # configure() wrote 2 but the user has set 1 since: the user's
        ({"KECAE_THREADS": "auto", "OMP_NUM_THREADS": "1", "KECAE_THREADS_SET": "2"}, 1),
        ({"OMP_NUM_THREADS": " 4 "}, 4),
    ],
)
def test_fixed_threads(env, expected):
    assert threads.fixed_threads(env) == expected


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"OMP_NUM_THREADS": "0"}, "OMP_NUM_THREADS='0'"),
        ({"OMP_NUM_THREADS": "two"}, "OMP_NUM_THREADS='two'"),
        ({"KECAE_THREADS": "-1"}, "KECAE_THREADS='-1'"),
    ],
)
def test_fixed_threads_refuses_a_bad_value(env, name):
    with pytest.raises(KecaeError, match=name):
        threads.fixed_threads(env)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", threads.ENV, threads.ENV_SET):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_configure_auto_takes_the_idle_cores(clean_env):
    clean_env.setattr(threads, "usable_cores", lambda: [0, 1, 2, 3])
    clean_env.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert threads.configure() == 3
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "3"
    assert threads.fixed_threads() is None  # still kecae's choice: a training follows the load
    clean_env.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.configure() == 4  # a second command in the same process looks again


def test_configure_keeps_what_the_user_fixed(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "1")
    clean_env.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.configure() == 1
    assert threads.configure(3) == 3  # --threads over OMP_NUM_THREADS
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert threads.fixed_threads() == 3
    with pytest.raises(KecaeError, match="--threads='0'"):
        threads.configure(0)


def _stat(tmp_path: Path, busy: list[tuple[int, int]]) -> Path:
    """A /proc/stat with cores whose (busy, idle) ticks are given."""
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for i, (b, idle) in enumerate(busy):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append(f"cpu{i} {b - 3} 1 1 {idle} 5 0 1 0 0 0")
    path = tmp_path / "stat"
    path.write_text("\n".join(lines) + "\n")
    return path


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.own = 10.0

    def monotonic(self) -> float:
        return self.now

    def times(self) -> os.times_result:
        return os.times_result((self.own, 0.0, 0.0, 0.0, 0.0))


def test_cpu_load_subtracts_this_process(tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(threads.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(threads.os, "times", clock.times)
    monkeypatch.setattr(threads.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(threads.CpuLoad, "STAT", _stat(tmp_path, [(1000, 500), (2000, 700)]))
    load = threads.CpuLoad(cores=[0, 1])
    # 2 s later: core 0 busy 150 ticks, core 1 busy 200 ticks (3.5 busy s); we used 1.5 s
    monkeypatch.setattr(threads.CpuLoad, "STAT", _stat(tmp_path, [(1150, 550), (2200, 700)]))
    clock.now, clock.own = 102.0, 11.5
    assert load.others_busy() == pytest.approx((3.5 - 1.5) / 2.0)
    # only the cores this process may use count
    load1 = threads.CpuLoad(cores=[1])
    monkeypatch.setattr(threads.CpuLoad, "STAT", _stat(tmp_path, [(1150, 550), (2300, 700)]))
    clock.now, clock.own = 103.0, 11.5
    assert load1.others_busy() == pytest.approx(1.0)


def test_cpu_load_without_proc_stat(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.CpuLoad, "STAT", tmp_path / "missing")
    assert threads.CpuLoad(cores=[0]).others_busy() is None


@pytest.fixture
def torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_governor_follows_the_load(monkeypatch, torch_threads):
    clock = _Clock()
    monkeypatch.setattr(threads.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(threads, "usable_cores", lambda: [0, 1])
    others = iter([1.0, 1.0, 0.1, None])
    monkeypatch.setattr(threads.CpuLoad, "others_busy", lambda self: next(others))
    torch.set_num_threads(2)
    gov = threads.ThreadGovernor(None, interval_s=1.0)
    assert gov.tick() == 2  # before the first interval: no look
    clock.now += 1.0
    assert gov.tick() == 1 and torch.get_num_threads() == 1  # another process took a core
    clock.now += 0.5
    assert gov.tick() == 1  # within the interval: no look (the load iterator is not consumed)
    clock.now += 0.5
    assert gov.tick() == 1
    clock.now += 1.0
    assert gov.tick() == 2 and torch.get_num_threads() == 2  # it ended
    clock.now += 1.0
    assert gov.tick() == 2  # not measurable: unchanged
    assert gov.changes == 2


def test_governor_fixed_count_never_changes(monkeypatch, torch_threads):
    clock = _Clock()
    monkeypatch.setattr(threads.time, "monotonic", clock.monotonic)
    gov = threads.ThreadGovernor(1)
    assert torch.get_num_threads() == 1
    clock.now += 10
    assert gov.tick() == 1 and gov.load is None


def test_cli_threads_option(clean_env, capsys, tmp_path):
    assert main(["--threads", "0", "phantoms", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads='0'" in err[0] and "whole number" in err[0]
    assert not (tmp_path / "p").exists()  # nothing written
