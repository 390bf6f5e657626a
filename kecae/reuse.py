"""May this folder be written, reused or resumed? Output folders are prepared (writable, locked,
cleaned of a killed run's temporary files) and checked against the data; a folder that holds a
run is compared with the settings asked for.

**Made with the same settings?** :func:`differences` and :func:`check_same` compare two
configurations field by field (paths by where they point); every "may I reuse or resume this
folder?" decision goes through them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kecae.config import load_yaml
from kecae.errors import KecaeError
from kecae.files import atomic_write_text, remove_stale_tmp, writable_folder
from kecae.paths import absolute_paths
from kecae.runfolder import CONFIG, TrainingRun
from kecae.runlock import lock_run_folder


def differences(
    old: dict[str, Any],
    new: dict[str, Any],
    fields: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> dict[str, tuple[Any, Any]]:
    """``{field: (old value, new value)}`` for the fields (all of both, less ``ignore``) whose
    values differ. Paths compare by where they point; 1e-3 equals 0.001."""
    names = list(fields) if fields is not None else sorted(set(old) | set(new))
    a, b = absolute_paths(old), absolute_paths(new)
    skip = set(ignore)
    return {k: (old.get(k), new.get(k)) for k in names if k not in skip and a.get(k) != b.get(k)}


def format_differences(diff: dict[str, tuple[Any, Any]]) -> str:
    """``lr 0.0001 there, 0.5 now; model {} there, {'width': 0.25} now``."""
    return "; ".join(f"{k} {old!r} there, {new!r} now" for k, (old, new) in diff.items())


class SettingsDiffer(KecaeError):
    """``folder`` holds ``what`` made with other settings: the differences ``diff`` ({field: (old,
    new)}) and what to do. A caller that knows better advice for its own users (the pipeline
    names run-level options, not a trainer's) re-raises :meth:`advise`."""

    def __init__(
        self,
        folder: str | os.PathLike,
        what: str,
        diff: dict[str, tuple[Any, Any]],
        fix: str = "",
        sep: str = ": ",
    ) -> None:
        self.folder, self.what, self.diff = Path(folder), what, diff
        super().__init__(
            f"{folder} holds {what} made with other settings "
            f"({format_differences(diff)}){sep + fix if fix else ''}"
        )

    def advise(self, fix: str) -> SettingsDiffer:
        """The same refusal with ``fix`` as its advice."""
        return SettingsDiffer(self.folder, self.what, self.diff, fix, sep="; ")


def check_same(
    folder: str | os.PathLike,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    fields: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    what: str = "a run",
    fix: str = "",
    sep: str = ": ",
) -> None:
    """Refuse (:class:`SettingsDiffer`, every difference listed) when ``folder`` holds ``what``
    made with settings other than ``new``; ``fix`` (after ``sep``) says what to do instead.
    Every "may I reuse or resume this folder?" decision of kecae goes through here."""
    diff = differences(old, new, fields, ignore)
    if diff:
        raise SettingsDiffer(folder, what, diff, fix, sep)


def check_resumable(
    folder: str | os.PathLike, old: dict[str, Any], cfg: Any, may_change: tuple[str, ...]
) -> None:
    """Refuse to continue or reuse the training run in ``folder`` when ``cfg`` differs from the
    settings it was made with (``old``, missing fields taken as today's defaults) in anything but
    ``may_change``: a resumed run would otherwise be labelled with settings it never had."""
    free = ", ".join(k for k in may_change if k != "out")
    if hasattr(cfg, "data_version"):
        check_data_version(folder, old.get("data_version"), cfg.data_version, cfg.data)
        old = {**old, "data_version": cfg.data_version}
    check_same(
        folder,
        {**dataclasses.asdict(type(cfg)()), **old},
        dataclasses.asdict(cfg),
        fields=[f.name for f in dataclasses.fields(cfg)],
        ignore=may_change,
        what="a run",
        sep="; ",
        fix=f"only stopping criteria, logging and the device ({free}) may change when a "
        "run is resumed or reused: pass the settings it was made with (`--config "
        f"{Path(folder) / CONFIG}` gives them back), or --fresh to train afresh in a new "
        "folder",
    )


def check_same_model(folder: str | os.PathLike, old: dict[str, Any] | None, new: Any) -> None:
    """Refuse to resume the run in ``folder`` when the model its checkpoint was made with (``old``,
    the checkpoint's ``model_config``; fields it lacks take today's defaults) differs from the one
    the settings build now (``new``, a dataclass): a preset redefined since the run began would
    otherwise go on training other weights under the same name."""
    if not old:
        return
    try:
        made = dataclasses.asdict(type(new)(**{**dataclasses.asdict(type(new)()), **old}))
    except (TypeError, ValueError):  # a field this version does not know: compare as written
        made = old
    check_same(
        folder,
        made,
        dataclasses.asdict(new),
        what="a model",
        sep="; ",
        fix="its preset has been redefined since the run began: pass --fresh to train afresh in "
        "a new folder, or give the model it was made with (--model NAME=VALUE)",
    )


def check_data_version(
    folder: str | os.PathLike, old: str | None, new: str, data: str, fix: str = ""
) -> None:
    """Refuse ``folder`` when it holds a run made on another version of the data set (the data
    check's :func:`kecae.data.check.data_version`); a run made before runs recorded a version
    (``old`` empty) is not checked."""
    if old and new and old != new:
        raise KecaeError(
            f"{folder} holds a run made with other settings (data_version {old[:12]} there, "
            f"{new[:12]} now: the data set {data} has changed since: images added, removed, "
            "edited or relabelled); restore the data it was made with, or "
            + (fix or "pass --fresh to train afresh in a new folder")
        )


def check_config_file(
    folder: str | os.PathLike, new: Any, fields: Iterable[str], *, what: str, fix: str
) -> None:
    """Refuse ``folder`` when its config.yaml holds settings other than ``new`` in ``fields``
    (nothing to compare when the folder has no config.yaml yet). The data version is left out:
    a configuration built before training (copied from another run's) does not know it yet;
    the trainer computes it from the data and compares it (:func:`check_resumable`)."""
    path = Path(folder) / CONFIG
    if path.is_file():
        old = dataclasses.asdict(load_yaml(type(new), path))
        fields = [f for f in fields if f != "data_version"]
        check_same(folder, old, dataclasses.asdict(new), fields=fields, what=what, fix=fix)


def prepare_output(folder: str | os.PathLike, option: str = "--out") -> Path:
    """Create ``folder`` (or take the existing one), check that it can be written
    (:func:`kecae.files.writable_folder`), lock it for this process (:mod:`kecae.runlock`: a
    second process is refused while this command runs), and remove temporary files a killed
    run left in it. Every failure is a :class:`KecaeError` that names the folder and the fix."""
    p = writable_folder(folder, option)
    lock_run_folder(p)
    remove_stale_tmp(p)
    return p


def check_out_of_data(
    out: Path, data_root: Path, data_is_folder_layout: bool, example: str = "RUN/generated"
) -> None:
    """Refuse an output folder that is the data folder, lies inside a folder-layout data set
    (its images would be read as data) or holds the data set."""
    o, d = out.expanduser().resolve(), data_root.resolve()
    if o == d or (data_is_folder_layout and d in o.parents):
        where = "the data folder" if o == d else "inside the data folder"
        raise KecaeError(
            f"--out {out} is {where} {data_root}: its images would be read as part "
            f"of the data set; choose a folder outside it (e.g. {example})"
        )
    if o in d.parents:
        raise KecaeError(f"--out {out} holds the data set {data_root}: choose a folder of its own")


def record_data_problems(folder: str | os.PathLike, problems: list[Any]) -> Path:
    """Write the fatal data problems a run was told to accept (``--accept-data-problems``) to
    ``folder/data_check.json``, beside the config that records the choice."""
    path = TrainingRun(Path(folder)).data_check
    atomic_write_text(
        path,
        json.dumps(
            {"accepted_fatal_problems": [dataclasses.asdict(p) for p in problems]}, indent=2
        ),
    )
    return path


def fresh_folder(folder: str | os.PathLike) -> Path:
    """The first of ``FOLDER-2``, ``FOLDER-3``, ... that does not exist yet."""
    folder = Path(folder)
    k = 2
    while (candidate := folder.with_name(f"{folder.name}-{k}")).exists():
        k += 1
    return candidate
