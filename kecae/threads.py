"""How many CPU threads torch uses: what the user asked for, or as many as the other processes
leave idle.

On a shared machine a training that runs one OpenMP thread per core collapses when another job
takes a core: its threads meet at a barrier after every small operation, and the one whose core
was taken is waiting for its time slice (measured, benchmarks/results/cpu_threads.json: the
``cpu`` preset on 2 threads beside one busy process ran at a small fraction of its speed alone).
So, unless the user fixes the count (``kecae --threads N`` or ``OMP_NUM_THREADS``), kecae starts
with as many threads as there are idle cores and a training loop looks again every second
(:class:`ThreadGovernor`): the busy time of this process's cores in ``/proc/stat`` less this
process's own CPU time is what the others use.

:func:`configure` runs in the command line before torch is imported (OpenMP reads its
environment once, when torch loads); :func:`threads_for_load` is the rule.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kecae.errors import KecaeError  # the command line's error type

#: Set by :func:`configure`: the thread count the user fixed, or ``auto``; child processes
#: (torchrun workers, studies' sub-processes) inherit it.
ENV = "KECAE_THREADS"
#: The OMP_NUM_THREADS value :func:`configure` wrote in auto mode (a different value is the user's).
ENV_SET = "KECAE_THREADS_SET"
#: A core counts as idle when the other processes leave at least this share of it.
IDLE_SHARE = 0.7
#: Seconds between two looks at the load in :meth:`ThreadGovernor.tick`.
INTERVAL_S = 1.0


def threads_for_load(cores: int, others_busy: float, most: int | None = None) -> int:
    """Threads for ``cores`` usable cores of which the other processes keep ``others_busy``
    busy (in cores): the idle ones, a core counting as idle when at least
    :data:`IDLE_SHARE` of it is left; at least 1, at most ``most`` (default ``cores``)."""
    if cores < 1:
        raise ValueError(f"cores={cores!r} must be >= 1")
    idle = cores - max(0.0, others_busy)
    return max(1, min(most or cores, math.floor(idle + 1 - IDLE_SHARE + 1e-9)))


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity: ``taskset`` narrows it)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def fixed_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count the user fixed (``--threads`` through :data:`ENV`, else
    ``OMP_NUM_THREADS``), or None when kecae chooses. A value that is not a whole number >= 1
    is an error naming the variable."""
    env = os.environ if environ is None else environ
    mine = env.get(ENV, "").strip()
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if mine and mine != "auto":
        return _count(ENV, mine)
    if omp and not (mine == "auto" and omp == env.get(ENV_SET)):
        return _count("OMP_NUM_THREADS", omp)
    return None  # unset, or set by configure() for torch's start


def _count(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise KecaeError(
            f"{name}={value!r} is not a number of threads: set a whole number >= 1, "
            "or unset it and kecae uses the idle cores"
        )
    return int(value)


def configure(threads: int | None = None) -> int:
    """Set the thread count for this process and its children before torch is imported:
    ``threads`` (``kecae --threads``) or ``OMP_NUM_THREADS`` when given, else the idle cores by
    the 1-minute load average. Returns the count."""
    if threads is not None:
        os.environ[ENV] = str(_count("--threads", str(threads)))
    fixed = fixed_threads()
    if fixed is not None:
        count = fixed
    else:
        os.environ[ENV] = "auto"
        count = threads_for_load(len(usable_cores()), os.getloadavg()[0])
        os.environ[ENV_SET] = str(count)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(count)
    return count


@dataclass
class _Sample:
    when: float  # time.monotonic()
    busy: float  # busy seconds of the usable cores (from /proc/stat)
    own: float  # this process's CPU seconds (user + system, all threads)


class CpuLoad:
    """How many of this process's usable cores the other processes kept busy between two
    calls of :meth:`others_busy` (``/proc/stat``; None where it cannot be read)."""

    STAT = Path("/proc/stat")

    def __init__(self, cores: list[int] | None = None) -> None:
        self.cores = usable_cores() if cores is None else cores
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._sample()

    def _sample(self) -> _Sample | None:
        try:
            lines = self.STAT.read_text().splitlines()
        except OSError:
            return None
        wanted = {f"cpu{c}" for c in self.cores}
        busy = 0
        for line in lines:
            parts = line.split()
            if parts and parts[0] in wanted:
                # user nice system idle iowait irq softirq steal: all but idle and iowait
                ticks = [int(v) for v in parts[1:9]]
                busy += sum(ticks) - ticks[3] - ticks[4]
        t = os.times()
        return _Sample(time.monotonic(), busy / self.hz, t.user + t.system)

    def others_busy(self) -> float | None:
        """Cores kept busy by other processes since the last call (None: not measurable)."""
        now = self._sample()
        last, self.last = self.last, now
        if now is None or last is None or now.when - last.when <= 0:
            return None
        wall = now.when - last.when
        return max(0.0, ((now.busy - last.busy) - (now.own - last.own)) / wall)


class ThreadGovernor:
    """Keeps torch's thread count at the idle cores during a training loop (auto mode), or at
    the user's fixed count. Call :meth:`tick` once per step; it costs a clock read except once
    per :data:`INTERVAL_S`."""

    def __init__(self, fixed: int | None, interval_s: float = INTERVAL_S) -> None:
        import torch  # heavy: imported by the loops that use a governor, which have it already

        self.torch = torch
        self.fixed = fixed
        self.interval_s = interval_s
        self.cores = usable_cores()
        self.load = CpuLoad(self.cores) if fixed is None else None
        self.next_look = time.monotonic() + interval_s
        self.changes = 0
        if fixed is not None:
            torch.set_num_threads(fixed)

    @classmethod
    def from_environment(cls) -> ThreadGovernor:
        """Fixed when the user fixed a count (``--threads``, ``OMP_NUM_THREADS``), else auto."""
        return cls(fixed_threads())

    @property
    def threads(self) -> int:
        return int(self.torch.get_num_threads())

    def tick(self, step: int = 0) -> int:
        """Look at the load once per interval and follow it; returns the thread count."""
        if self.load is None or time.monotonic() < self.next_look:
            return self.threads
        self.next_look = time.monotonic() + self.interval_s
        others = self.load.others_busy()
        if others is None:
            return self.threads
        want = threads_for_load(len(self.cores), others)
        if want != self.threads:
            self.torch.set_num_threads(want)
            self.changes += 1
        return want
