"""The house's rules, checked on the source: no import cycles, each floor imports only from the
floors below it, `models/` imports nothing from `competition/`, and no code outside
`competition/tasks/` branches on a task's name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Packages of `competition`, by floor: a module may import its own package and lower floors.
FLOORS = {
    "competition": 0,  # the root modules: errors, configs, progress
    "competition.formats": 1, "competition.metrics": 1,
    "competition.tasks": 2,
    "competition.tracking": 3,
    "competition.board": 4,
    "competition.training": 5, "competition.ensembles": 5,
    "competition.landmark_imaging": 5, "competition.jobs": 5,
    "competition.interfaces": 6,
}
TASK_NAMES = ("nuclei", "em", "landmarks", "tomography", "mri")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(top: str) -> dict[str, Path]:
    return {module_name(p): p for p in sorted((REPO / top).rglob("*.py"))}


KNOWN = {**modules("competition"), **modules("models")}


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports count: a lazy import
    is still a dependency)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in KNOWN else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports(path) if m in KNOWN} - {name}
            for name, path in KNOWN.items()}


def floor_of(module: str) -> int:
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return 7 if module == "competition.__main__" else FLOORS[best]  # above everything


def package_of(module: str) -> str:
    return max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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


def test_the_checker_sees_cycles_and_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    edges = graph()
    assert "competition.tasks.base" in edges["competition.tasks.nuclei.task"]
    # A function-level import counts.
    assert "competition.interfaces.demo" in edges["competition.interfaces.cli.competitions"]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_each_floor_imports_only_from_below():
    wrong = []
    for module, targets in graph().items():
        if not module.startswith("competition"):
            continue
        for target in targets:
            if not target.startswith("competition"):
                continue
            same_package = package_of(target) == package_of(module)
            if not same_package and floor_of(target) >= floor_of(module):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


STORE = "competition.board.store"
SQL = ("sqlalchemy", "alembic")


def in_store(module: str) -> bool:
    return module == STORE or module.startswith(STORE + ".")


def speaks_sql(target: str) -> bool:
    return target.split(".")[0] in SQL or target == f"{STORE}.schema"


def test_only_the_store_speaks_sql():
    """One package owns the SQL (issue 31): SQLAlchemy, Alembic and the store's tables
    (store.schema) are imported by competition.board.store alone; boards, ledger, teams,
    sessions, queue and jobs call its functions."""
    outside = sorted(f"{m} -> {t}" for m, path in KNOWN.items()
                     if m.startswith("competition") and not in_store(m)
                     for t in imports(path) if speaks_sql(t))
    assert outside == []
    # The checker sees such imports where they are allowed.
    assert "sqlalchemy" in imports(KNOWN[f"{STORE}.jobs"])
    assert f"{STORE}.schema" in imports(KNOWN[f"{STORE}.teams"])


def test_the_store_imports_nothing_of_the_board_above_it():
    """The store is the board's ground floor: of the board it knows submission statuses,
    never the parts that call it (lower floors are the floor rule's business)."""
    reaching_up = sorted(f"{m} -> {t}" for m, targets in graph().items() if in_store(m)
                         for t in targets if package_of(t) == "competition.board"
                         and not in_store(t) and t != "competition.board.status")
    assert reaching_up == []


def test_models_import_nothing_from_competition():
    reaching_up = [f"{m} -> {t}" for m, targets in graph().items() if m.startswith("models")
                   for t in targets if t.startswith("competition")]
    assert reaching_up == []


@pytest.mark.parametrize("top", ["competition", "models", "submissions", "benchmarks"])
def test_no_branch_on_a_task_name_outside_the_tasks(top):
    """`== "nuclei"`, `in ("em", ...)`, `"landmarks":` keys and the like name a task; only its
    own plugin may."""
    names = "|".join(TASK_NAMES)
    pattern = re.compile(rf"""(==|!=|\bin\b|\bis\b)\s*\(?\s*["']({names})["']|"""
                         rf"""["']({names})["']\s*(==|!=|:)|\(\s*["']({names})["']\s*,""")
    found = []
    for path in sorted((REPO / top).rglob("*.py")):
        if path.is_relative_to(REPO / "competition" / "tasks"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
