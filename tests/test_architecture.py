"""The house's rules, checked on the source: no import cycles, each floor imports only from the
floors below it, `models/` imports nothing from `competition/`, no code outside
`competition/tasks/` branches on a task's name, no generic module reads a detail field that
only one task's plugin writes, and no plugin method only forwards to a function of the same
name."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Packages of `competition`, by floor: a module may import its own package and lower floors.
FLOORS = {
    "competition": 0,  # the root modules: errors, configs, progress
    "competition.formats": 1, "competition.metrics": 1,
    "competition.tasks": 2,
    "competition.tracking": 3, "competition.sandbox": 3,
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


# --- task knowledge stays in its plugin ----------------------------------------------------------
#
# A task's plugin is the package its entry points name (`competition.tasks`: its task package;
# `competition.commands`: e.g. `competition.landmark_imaging` for the landmarks task), and every
# module of `competition` that only that plugin imports (e.g. `formats/nuclei_csv.py`,
# `metrics/surface.py`): derived from pyproject.toml and the import graph, never listed by hand.
# Everything else in `competition/` is generic, `competition/tasks/base.py` included. `models/`,
# `submissions/` and `benchmarks/` are not checked: models get arrays, entries and benchmarks
# are written for their tasks.

ENTRY_POINTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]


def plugin_packages() -> dict[str, str]:
    """The package each task's entry points name, and its task."""
    found = {}
    for group in ("competition.tasks", "competition.commands"):
        for task, value in ENTRY_POINTS.get(group, {}).items():
            module = value.split(":")[0]
            package = module if KNOWN[module].name == "__init__.py" else module.rpartition(".")[0]
            found[package] = task
    return found


def plugin_owners(edges: dict[str, set[str]], packages: dict[str, str]) -> dict[str, str]:
    """The task each plugin module belongs to: the modules of its packages, then (until
    nothing changes) every other module of `competition` whose importers all belong to it."""
    owner = {m: task for m in edges for package, task in packages.items()
             if m == package or m.startswith(package + ".")}
    importers: dict[str, set[str]] = {}
    for module, targets in edges.items():
        for target in targets:
            importers.setdefault(target, set()).add(module)
    changed = True
    while changed:
        changed = False
        for module in sorted(edges):
            users = {m for m in importers.get(module, ()) if m.startswith("competition")}
            tasks = {owner.get(m) for m in users}
            if module not in owner and module.startswith("competition.") and users \
                    and len(tasks) == 1 and None not in tasks:
                owner[module] = tasks.pop()  # type: ignore[assignment]
                changed = True
    return owner


def _text_keys(nodes: Iterable[ast.expr | None]) -> set[str]:
    return {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def written_keys(tree: ast.AST) -> set[str]:
    """The keys a piece of code writes: dict displays, `row["key"] = ...`, `.update(key=...)`,
    `dict(key=...)` and `.setdefault("key", ...)`."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found |= _text_keys(node.keys)
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found |= _text_keys(t.slice for t in targets if isinstance(t, ast.Subscript))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("update", "dict"):
                found |= {k.arg for k in node.keywords if k.arg}
            elif name == "setdefault" and node.args:
                found |= _text_keys(node.args[:1])
    return found


def read_keys(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a piece of code uses a text as a key: `x["key"]`, `.get("key")` (and `.pop`,
    `.setdefault`), `"key" in x`, and the keys it writes."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        keys: set[str] = set()
        if isinstance(node, ast.Subscript):
            keys = _text_keys([node.slice])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("get", "pop", "setdefault"):
            keys = _text_keys(node.args[:1])
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            keys = _text_keys([node.left])
        elif isinstance(node, ast.Dict):
            keys = _text_keys(node.keys)
        found += [(getattr(node, "lineno", 0), key) for key in sorted(keys)]
    return found


def _functions(tree: ast.AST) -> list[ast.FunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]


def _called_names(function: ast.FunctionDef) -> set[str]:
    return {n.func.attr if isinstance(n.func, ast.Attribute) else n.func.id
            for n in ast.walk(function) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute | ast.Name)}


def _builds_results(function: ast.FunctionDef) -> bool:
    returns = function.returns is not None and "ScoreResult" in ast.unparse(function.returns)
    return returns or any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                          and n.func.id == "ScoreResult" for n in ast.walk(function))


def detail_fields(plugin_trees: list[ast.AST]) -> set[str]:
    """The detail fields one plugin writes: the keys written by its functions that build score
    results (`ScoreResult(...)`, or annotated to return one) and by the plugin's functions
    those call, transitively (by name: item rows, per-class tables...)."""
    functions = [f for tree in plugin_trees for f in _functions(tree)]
    by_name: dict[str, list[ast.FunctionDef]] = {}
    for function in functions:
        by_name.setdefault(function.name, []).append(function)
    todo = [f for f in functions if _builds_results(f)]
    seen: dict[int, ast.FunctionDef] = {}
    while todo:
        function = todo.pop()
        if id(function) not in seen:
            seen[id(function)] = function
            todo += [f for name in _called_names(function) for f in by_name.get(name, [])]
    return set().union(*(written_keys(f) for f in seen.values()))


def task_fields(plugins: dict[str, list[ast.AST]], generic: list[ast.AST]) -> dict[str, str]:
    """Each detail field that exactly one plugin writes, with its task. A key that generic
    code writes itself (an ASGI message's "type", a score's "public") means something there
    too: it is nobody's alone."""
    writers: dict[str, set[str]] = {}
    for task, trees in plugins.items():
        for key in detail_fields(trees):
            writers.setdefault(key, set()).add(task)
    shared = set().union(*(written_keys(tree) for tree in generic))
    return {key: next(iter(tasks)) for key, tasks in writers.items()
            if len(tasks) == 1 and key not in shared}


def fields_outside_plugins(plugins: dict[str, list[ast.AST]],
                           generic: dict[str, ast.AST]) -> list[str]:
    fields = task_fields(plugins, list(generic.values()))
    return [f"{where}:{line}: {key!r} (a field of the {fields[key]} task)"
            for where, tree in generic.items() for line, key in sorted(read_keys(tree))
            if key in fields]


def forwarding_methods(tree: ast.AST) -> list[str]:
    """Methods whose body (less a docstring and imports) is only `return module.same_name(...)`
    or `return same_name(...)` with `same_name` imported from another module: a layer that
    says nothing."""
    imported_names = {alias.asname or alias.name for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) for alias in node.names}
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            body = [st for st in method.body if not isinstance(st, ast.Import | ast.ImportFrom)
                    and not (isinstance(st, ast.Expr) and isinstance(st.value, ast.Constant))]
            call = body[0].value if len(body) == 1 and isinstance(
                body[0], ast.Return | ast.Expr) else None
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            other_module = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                and func.value.id not in ("self", "cls") and func.attr == method.name
            imported = isinstance(func, ast.Name) and func.id == method.name \
                and func.id in imported_names
            if other_module or imported:
                found.append(f"{cls.name}.{method.name} (line {method.lineno})")
    return found


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text())


def plugin_and_generic_modules() -> tuple[dict[str, list[ast.AST]], dict[str, ast.AST]]:
    owner = plugin_owners(graph(), plugin_packages())
    plugins: dict[str, list[ast.AST]] = {}
    generic: dict[str, ast.AST] = {}
    for module, path in KNOWN.items():
        if module in owner:
            plugins.setdefault(owner[module], []).append(parsed(path))
        elif module.startswith("competition"):
            generic[str(path.relative_to(REPO))] = parsed(path)
    return plugins, generic


def test_the_checker_finds_plugins_and_their_fields():
    packages = plugin_packages()
    assert packages["competition.tasks.nuclei"] == "nuclei"
    assert packages["competition.landmark_imaging"] == "landmarks"  # by its commands
    owner = plugin_owners(graph(), packages)
    assert owner["competition.formats.nuclei_csv"] == "nuclei"  # only nuclei imports it
    assert owner["competition.metrics.surface"] == "mri"
    for generic in ("competition.formats.rle", "competition.tasks.base",
                    "competition.tracking.runs", "competition.interfaces.cli.scoring"):
        assert generic not in owner  # used by several tasks, or by the harness
    plugins, generic_modules = plugin_and_generic_modules()
    fields = task_fields(plugins, list(generic_modules.values()))
    assert fields["per_landmark"] == "landmarks" and fields["per_threshold"] == "nuclei"
    assert fields["hd95"] == "mri" and fields["v_rand"] == "em"
    assert {"score", "usage", "public", "type"}.isdisjoint(fields)  # everyone's words

    plugin = ast.parse("""
def summarize(d):
    table = [{"widget": w, "wobble": 1.0} for w in d]
    return ScoreResult(fields={"per_widget": table, **extra(d)}, items=[], usage="Public")

def extra(d) -> dict:
    return {"n_widgets": len(d)}

def unrelated():
    return {"cache_key": 1}
""")
    other = ast.parse("def summarize():\n    return ScoreResult(fields={'n_gadgets': 1})\n")
    generic = {
        "generic.py": ast.parse("""
def show(details, row):
    if "per_widget" in details:
        return details.get("n_widgets"), row["wobble"], details["cache_key"]
    return {"usage": row["usage"], "score": details["n_gadgets"]}
"""),
        "mine.py": ast.parse("x = {'wobble': 0}"),  # generic code writes it: shared
    }
    found = fields_outside_plugins({"widgets": [plugin], "gadgets": [other]}, generic)
    assert found == ["generic.py:3: 'per_widget' (a field of the widgets task)",
                     "generic.py:4: 'n_widgets' (a field of the widgets task)",
                     "generic.py:5: 'n_gadgets' (a field of the gadgets task)"]


def test_no_generic_module_reads_a_field_of_one_task():
    """`per_landmark`, `per_threshold` and the like are a task's: the plugin shows them (e.g.
    `detail_tables`), generic code only iterates over what it is given."""
    plugins, generic = plugin_and_generic_modules()
    assert fields_outside_plugins(plugins, generic) == []


def test_the_checker_sees_forwarding_methods():
    tree = ast.parse("""
from y import write


class T:
    def load(self, path):
        \"\"\"Docstring.\"\"\"
        from x import data
        return data.load(path)

    def write(self, a):
        write(a)

    def score(self, a):
        return metric.other_name(a)

    def finish(self, a):
        return self.finish_helper(a)

    def hold(self, a):
        b = a + 1
        return data.hold(b)

    def helper(self, a):
        return helper(a)  # this module's own function: no other module's layer


def helper(a):
    return a
""")
    assert forwarding_methods(tree) == ["T.load (line 6)", "T.write (line 11)"]


def test_no_plugin_method_only_forwards_to_a_function_of_the_same_name():
    owner = plugin_owners(graph(), plugin_packages())
    found = [f"{module}: {method}" for module in sorted(owner)
             for method in forwarding_methods(parsed(KNOWN[module]))]
    assert found == []
