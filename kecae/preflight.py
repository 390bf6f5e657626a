"""`kecae run`'s pre-flight: everything about the data and the settings checked before the first
training step, and every choice made for the user said once.

A run that stops here has trained nothing and leaves its folder free for the corrected command.
In order:

1. the data set is read with the run's patient regex and side map; a problem that stops reading
   it (a bad manifest row, an unknown side value, a regex that misses the file names) stops here;
2. ``kecae run`` fixes the data as the run sees it in ``RUN/data.csv`` (patients, L/R sides,
   splits); every step and later command reads that file. Once a step has trained, the file is
   kept and a data set that changed since is refused (``--fresh`` runs afresh);
3. ``kecae data check`` on it with the run's two grades (cached in ``RUN/.kecae_cache``, so the
   trainers' own checks reuse it): fatal problems stop here unless accepted;
4. the pair counts every stage asks for: generation and evaluation draw distinct pairs from the
   train and test splits' products, so a number larger than a product is an error naming the
   option; left at their defaults they take what the data have;
5. the model's input side: given, else on CUDA the images' median short side (up to the paper's
   299 px), on a CPU the preset's, with the computation a training pair costs at that size and
   at the next one (FLOPs: deterministic, unlike a timing on a busy machine);
6. one summary is printed and written to ``RUN/data_check.json`` (the report's data section).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kecae.data.catalog import load_catalog, task_grades, write_catalog
from kecae.data.check import cached_check, fatal_problems_error
from kecae.data.readers import image_size
from kecae.data.records import Catalog, Problem
from kecae.data.splits import ensure_splits
from kecae.errors import KecaeError
from kecae.files import atomic_write_text
from kecae.runfolder import RunLayout

# The model's cost (torch) is imported when it is reported: the pre-flight's data checks run
# without torch.

#: The pipeline's numbers of pairs when the user gives none (fewer when the data have fewer).
DEFAULT_GEN_PAIRS, DEFAULT_EVAL_PAIRS = 2000, 400

#: The largest model input the default follows the images to (the paper's size).
PAPER_SIZE = 299


@dataclass
class Plan:
    """What the pre-flight decided: the data every step reads and the numbers every step uses."""

    data: str  # the data set every step reads (RUN/data.csv, or the demo's RUN/data)
    grades: tuple[int, int]  # the pair compared, lower first
    image_size: int  # the model's input side, px
    gen_pairs: int  # pairs generate writes
    eval_pairs: int  # test pairs evaluate exchanges
    kecae_pairs: int  # pairs KECAE samples its batches from
    counts: dict[str, dict[int, int]]  # split -> grade -> images (the two grades)
    patients: dict[str, int]  # split -> patients with an image of the two grades
    input_sides: list[int]  # min, median, max short side of the images used, px
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # warnings and accepted errors
    accepted: list[Problem] = field(default_factory=list)  # fatal problems accepted

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = {s: {str(g): n for g, n in c.items()} for s, c in self.counts.items()}
        d["grades"] = list(self.grades)
        return d


def trained_anything(layout: RunLayout) -> bool:
    """True once any step of the run has written a checkpoint (its settings are then fixed)."""
    return any(
        p.exists()
        for p in (
            layout.supervisor.last,
            layout.supervisor.best,
            layout.judge.last,
            layout.judge.best,
            layout.kecae.last,
        )
    )


def preflight(
    cfg: Any,
    layout: RunLayout,
    *,
    demo: bool,
    say: Callable[[str], None],
    device: str,
    model_size: Callable[[int | None], Any],
) -> Plan:
    """Run every check of the module docstring for the pipeline settings ``cfg`` in ``layout``.

    ``say`` prints one line; ``device`` is the resolved device (``cpu``, ``cuda``, ...);
    ``model_size(side)`` builds the KECAE model configuration at ``side`` px (None: the
    preset's own), for the computation a training pair costs.
    Raises :class:`KecaeError` (one line naming the file or option and the fix) before anything
    is trained.
    """
    grades = task_grades(cfg.grades)
    cache = layout.root / ".kecae_cache"
    accept = bool(cfg.accept_data_problems)

    # 1-2. the data set as the run sees it
    source, view, data = _data_view(cfg, layout, demo, accept)

    # 3. the data check, on the data every step reads
    report = cached_check(data, grades=grades, cache_dir=cache)
    problems = (source.problems if not demo else []) + report.problems
    errors = [p for p in problems if p.severity == "error"]
    if errors and (not accept or any(not p.can_accept for p in errors)):
        raise fatal_problems_error(
            dataclasses.replace(report, problems=errors), cfg.data or layout.data, accept
        )

    # 4. pairs
    counts = {
        split: {g: report.counts.get((split, g), 0) for g in grades}
        for split in ("train", "val", "test")
    }
    train_pairs = counts["train"][grades[0]] * counts["train"][grades[1]]
    test_pairs = counts["test"][grades[0]] * counts["test"][grades[1]]
    gen_pairs = _pairs(
        "--gen-pairs", cfg.gen_pairs, DEFAULT_GEN_PAIRS, train_pairs, "train", counts, grades
    )
    eval_pairs = _pairs(
        "--eval-pairs", cfg.eval_pairs, DEFAULT_EVAL_PAIRS, test_pairs, "test", counts, grades
    )
    kecae_pairs = min(100_000, train_pairs)

    # 5. the model's input side
    sides = _short_sides(view, grades)
    size, size_lines = _model_size(cfg, sides, device, model_size)

    plan = Plan(
        data=data,
        grades=grades,
        image_size=size,
        gen_pairs=gen_pairs,
        eval_pairs=eval_pairs,
        kecae_pairs=kecae_pairs,
        counts=counts,
        patients=report.patients,
        input_sides=[sides[0], int(statistics.median(sides)), sides[-1]] if sides else [],
        notes=[*(source.notes if not demo else []), *report.notes],
        problems=[p for p in problems if p.severity != "error" or accept],
        accepted=errors if accept else [],
    )

    # 6. say it once, and keep it for the report
    low, high = grades
    say(
        f"data: {len(view.records)} images read from {cfg.data or layout.data}"
        + ("" if demo else f", fixed in {layout.data_view}")
    )
    for split in ("train", "val", "test"):
        say(
            f"  {split:<5} KL-{low} {counts[split][low]:>5}, KL-{high} {counts[split][high]:>5}"
            f"  ({report.patients.get(split, 0)} patients)"
        )
    for note in plan.notes:
        say(f"note: {note}")
    for p in plan.problems:
        kind = "accepted problem" if p.severity == "error" else "warning"
        say(f"{kind}: {p.file}: {p.message} (fix: {p.fix})")
    for line in size_lines:
        say(line)
    say(
        f"pairs: KECAE draws {kecae_pairs:,} of the {train_pairs:,} KL-{low} x KL-{high} train "
        f"pairs; generate writes {gen_pairs:,}; evaluate exchanges {eval_pairs:,} of "
        f"{test_pairs:,} test pairs"
    )
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.data_check, json.dumps(plan.to_dict(), indent=2))
    return plan


def _data_view(
    cfg: Any, layout: RunLayout, demo: bool, accept: bool
) -> tuple[Catalog, Catalog, str]:
    """The data set as read (its own problems stop the run unless accepted), with splits, fixed in
    RUN/data.csv; and the path every step reads it from."""
    if demo:
        source = load_catalog(layout.data)
        view, data = ensure_splits(source), str(layout.data)
    else:
        source = load_catalog(
            cfg.data, strict=False, patient_regex=cfg.patient_regex, side_map=cfg.side_map
        )
        stop = [p for p in source.problems if p.severity == "error"]
        if stop and not accept:
            raise _first_problem_error(stop, cfg.data)
        view = ensure_splits(source)
        _fix_data_view(view, layout)
        data = str(layout.data_view)

    return source, view, data


def _first_problem_error(errors: list[Problem], data: str) -> KecaeError:
    first = errors[0]
    more = (
        f" ({len(errors) - 1} more: `kecae data check {data}` lists them)"
        if len(errors) > 1
        else ""
    )
    return KecaeError(f"{first.file}: {first.message}; fix: {first.fix}{more}")


def _fix_data_view(view: Catalog, layout: RunLayout) -> None:
    """Write RUN/data.csv; once a step has trained, keep it and refuse a data set that changed."""
    path = layout.data_view
    if path.is_file() and trained_anything(layout):
        old = {_key(r) for r in load_catalog(path).records}
        new = {_key(r) for r in view.records}
        if old != new:
            added, removed = len(new - old), len(old - new)
            raise KecaeError(
                f"the data set changed since {layout.root} trained on it ({added} images new or "
                f"changed, {removed} gone or changed against {path}): pass --fresh to run "
                "afresh in a new folder, or restore the data"
            )
        return
    write_catalog(view, path)


def _key(r: Any) -> tuple:
    return (str(r.path), r.grade, r.patient_id, r.side, r.split)


def _pairs(
    option: str,
    given: int | None,
    default: int,
    available: int,
    split: str,
    counts: dict[str, dict[int, int]],
    grades: tuple[int, int],
) -> int:
    """The pairs a stage draws: given (at most ``available``), else the default or all there are."""
    if given is None:
        return min(default, available)
    if given > available:
        low, high = grades
        raise KecaeError(
            f"{option} {given} is more than the {available:,} distinct KL-{low} x KL-{high} "
            f"pairs of the {split} split ({counts[split][low]} x {counts[split][high]} images): "
            f"ask for at most {available:,}, or leave {option} out to use them all"
        )
    return given


def _short_sides(view: Catalog, grades: tuple[int, int]) -> list[int]:
    """The short side of every image of the two grades, sorted (read from the file headers)."""

    return sorted(min(image_size(r.path)) for r in view.records if r.grade in grades)


def _model_size(
    cfg: Any, sides: list[int], device: str, model_size: Callable[[int | None], Any]
) -> tuple[int, list[str]]:
    """The model's input side and the lines that say why (and what another one costs)."""
    preset = int(model_size(None).image_size)
    median = int(statistics.median(sides)) if sides else 0
    found = f"the images are {median} px on their short side (median)"
    if cfg.image_size is not None:
        return cfg.image_size, [f"model input: {cfg.image_size} px (--image-size); {found}"]
    if device.startswith("cuda"):
        size = max(16, min(PAPER_SIZE, median)) if median else preset
        return size, [
            f"model input: {size} px: on {device} the default follows the images ({found}; "
            f"at most the paper's {PAPER_SIZE}); --image-size changes it"
        ]
    lines = [f"model input: {preset} px, the {cfg.preset} preset's size on the CPU; {found}"]
    if median > preset:
        from kecae.models.cost import flops_per_pair

        larger = min(2 * preset, median, PAPER_SIZE)
        here, there = (flops_per_pair(model_size(s), backward=True) / 1e9 for s in (preset, larger))
        lines.append(
            f"  cost: a KECAE training pair is {here:.3g} GFLOP at {preset} px and {there:.3g} "
            f"GFLOP at {larger} px ({there / here:.1f}x the computation per step): "
            f"--image-size {larger} trains at that size; on a GPU the default follows the images"
        )
    return preset, lines


def read_plan(layout: RunLayout) -> dict[str, Any] | None:
    """RUN/data_check.json as written (None for a run made before it existed)."""
    try:
        plan = json.loads(Path(layout.data_check).read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None
