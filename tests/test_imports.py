"""The package's imports run downhill and in no circle.

Every ``import`` of a kecae module, at the top of a file, inside a function or under
``TYPE_CHECKING``, is read with :mod:`ast` (nothing is imported). The test fails on

- a cycle among the modules (function-level imports included: a cycle hidden inside a function
  is still one);
- an arrow uphill: every module belongs to one layer of :data:`LAYERS` and may import only its
  own layer and those below it;
- a function-level import that is neither heavy nor optional: :data:`LOCAL_IMPORTS` counts them
  per module, and a module may make no more than it lists (each says why, in one comment).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kecae"

#: The layers, lowest first: a module is in the first layer that names it or a package above it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # storage and process basics: no kecae module below them but each other
    (
        "base",
        (
            "kecae",  # the package itself (its __init__: the version, lazy exports)
            "kecae.exports",
            "kecae.errors",
            "kecae.files",
            "kecae.paths",
            "kecae.device",
            "kecae.threads",
            "kecae.runlock",
            "kecae.registry",
        ),
    ),
    # the typed sections of metrics.json: they import nothing of evaluation, studies or report
    ("results", ("kecae.results",)),
    # settings, run-folder layout and reuse, metrics.json on disk, checkpoints
    (
        "config",
        (
            "kecae.config",
            "kecae.runfolder",
            "kecae.console",
            "kecae.metrics_file",
            "kecae.reuse",
            "kecae.checkpoint",
        ),
    ),
    # the data: reading, checking and caching images; the phantoms and their measurement
    ("data", ("kecae.data", "kecae.phantoms")),
    # the measures every layer above may compute (pure functions of arrays)
    (
        "measures",
        (
            "kecae.evaluation.arrays",
            "kecae.evaluation.metrics",
            "kecae.evaluation.agreement",
            "kecae.evaluation.image_quality",
            "kecae.evaluation.paired",
        ),
    ),
    # the networks
    ("models", ("kecae.models",)),
    # training them, the loss, loading them for inference, the files a generator writes
    (
        "training",
        (
            "kecae.training",
            "kecae.losses",
            "kecae.edit_losses",
            "kecae.local_critic",
            "kecae.supervision_losses",
            "kecae.inference",
            "kecae.preflight",
            "kecae.generated_files",
            "kecae.generation",
        ),
    ),
    ("evaluation", ("kecae.evaluation",)),
    ("report", ("kecae.report",)),
    ("studies", ("kecae.studies", "kecae.reader_study")),
    # what users call: the pipeline, the Python API, the command line
    ("entry", ("kecae.pipeline", "kecae.api", "kecae.cli", "kecae.__main__")),
]

#: Function-level imports of kecae modules allowed per module (the rest import at the top). Each
#: is heavy and optional, and the module says why in one comment: mostly torch, scipy, sklearn
#: or matplotlib kept out of light modules (the command line, settings, the data check) that
#: import this one, or a study's trainers kept out of its settings.
LOCAL_IMPORTS: dict[str, int] = {
    "kecae.cli.evaluate": 2,
    "kecae.cli.phantoms": 1,
    "kecae.cli.train": 3,
    "kecae.generation": 2,
    "kecae.inference": 1,
    "kecae.pipeline": 10,
    "kecae.preflight": 1,
    "kecae.reader_study.analyze": 2,
    "kecae.report.recipe": 1,
    "kecae.studies.ablation": 3,
    "kecae.studies.fractions": 7,
    "kecae.studies.lambda_grid": 4,
    "kecae.studies.robustness": 2,
    "kecae.studies.subruns": 4,
    "kecae.studies.tune": 3,
    "kecae.training.config": 1,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module ``name`` is, or the package it names a member of."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The kecae modules one module imports: (target, where, line), where is ``top``,
    ``local`` (inside a function) or ``typing`` (under ``if TYPE_CHECKING``)."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.package = (
            module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        )
        self.where = "top"
        self.found: list[tuple[str, str, int]] = []

    def _inside(self, node: ast.AST, where: str) -> None:
        before, self.where = self.where, where
        self.generic_visit(node)
        self.where = before

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._inside(node, "typing" if self.where == "typing" else "local")

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node):
            self.generic_visit(node)
            return
        for child in node.body:
            self._inside(ast.Module(body=[child], type_ignores=[]), "typing")
        for child in node.orelse:
            self.visit(child)

    def _add(self, name: str, line: int) -> None:
        if name.split(".")[0] == "kecae" and (target := _resolve(name)) != self.module:
            self.found.append((target, self.where, line))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            package = self.package
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        for alias in node.names:  # `from kecae.x import y`: y is a module or a member of x
            member = f"{base}.{alias.name}"
            self._add(member if member in MODULES else base, node.lineno)


def _imports(module: str) -> list[tuple[str, str, int]]:
    visitor = _Imports(module)
    visitor.visit(ast.parse(MODULES[module].read_text(encoding="utf-8")))
    return visitor.found


IMPORTS = {m: _imports(m) for m in MODULES}


def _layer(module: str) -> int:
    for i, (_, prefixes) in enumerate(LAYERS):
        # a prefix names a module and the modules below it; "kecae" names the package alone
        if any(module == p or (p != "kecae" and module.startswith(p + ".")) for p in prefixes):
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS: add it to the one it belongs to")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)
    assert len(MODULES) > 100  # the walk found the package


def test_imports_run_downhill() -> None:
    uphill = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} {m} ({LAYERS[_layer(m)][0]}) imports "
        f"{t} ({LAYERS[_layer(t)][0]})"
        for m, found in IMPORTS.items()
        for t, _, line in found
        if _layer(t) > _layer(m)
    ]
    assert not uphill, "imports uphill:\n" + "\n".join(uphill)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    """Top-level and function-level imports together (those under TYPE_CHECKING never run)."""
    edges = {m: {t for t, where, _ in found if where != "typing"} for m, found in IMPORTS.items()}
    assert not _cycles(edges), f"import cycles: {_cycles(edges)}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_function_level_imports_are_counted() -> None:
    counts = Counter(
        m for m, found in IMPORTS.items() for line in {line for _, w, line in found if w == "local"}
    )
    over = {m: n for m, n in counts.items() if n > LOCAL_IMPORTS.get(m, 0)}
    assert not over, (
        "function-level imports beyond LOCAL_IMPORTS (import at the top of the file, or when "
        f"the import is heavy and optional say why in one comment and count it): {over}"
    )
    stale = {m: n for m, n in LOCAL_IMPORTS.items() if counts.get(m, 0) < n}
    assert not stale, f"LOCAL_IMPORTS counts more than there are now (lower them): {stale}"


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ("from kecae.errors import KecaeError\n", "top"),
        ("def f():\n    from kecae.errors import KecaeError\n", "local"),
        ("if TYPE_CHECKING:\n    from kecae.errors import KecaeError\n", "typing"),
    ],
)
def test_the_walk_tells_where_an_import_is(source: str, where: str) -> None:
    visitor = _Imports("kecae.files")
    visitor.visit(ast.parse(source))
    assert visitor.found == [("kecae.errors", where, visitor.found[0][2])]


def test_the_layers_keep_the_rules_of_issue_16() -> None:
    """results imports nothing of evaluation, studies or report; the report never imports the
    studies; models sit below training, evaluation below the report."""
    below = [
        ("kecae.errors", "kecae.data.catalog"),
        ("kecae.paths", "kecae.config"),
        ("kecae.results.base", "kecae.evaluation.evaluate"),
        ("kecae.results.studies", "kecae.studies.robustness"),
        ("kecae.results.evaluation", "kecae.report.summary"),
        ("kecae.models.autoencoder", "kecae.training.kecae_trainer"),
        ("kecae.evaluation.evaluate", "kecae.report.page"),
        ("kecae.report.page", "kecae.studies.downstream"),
    ]
    for low, high in below:
        assert _layer(low) < _layer(high), (low, high)
