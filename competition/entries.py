"""Entries: participants' folders that train a model and predict (see submissions/README.md).

An entry folder holds `entry.py` with `fit(task, train, config, on_epoch=None)` and
`predict(task, model, inputs, config)` (optionally `probabilities(...)`: prediction maps for
ensembles; `save(model, folder)` and `load(task, folder, config)`: a fitted model kept in a
folder and read back, e.g. carried in a code submission as `model/`), and `config.yaml`:

    tasks: [nuclei, em]     # the tasks this entry supports; it is refused for others
    seed: 0                 # keys shared by every task...
    nuclei:                 # ...and a section per task, on top of them
      epochs: 24

config.yaml is also the schema: `--config FILE` (same layout) and `--set key=value`
(`--set nuclei.epochs=3` for one task only) may set only keys it has, so a misspelt key is an
error naming the file, the key and the closest valid one.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Collection, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from competition import configs
from competition.errors import CompetitionError, ConfigError

RESERVED = "tasks"


def load_entry(folder: Path) -> ModuleType:
    """The entry's module (fit, predict, and optionally probabilities)."""
    path = Path(folder) / "entry.py"
    if not path.is_file():
        raise CompetitionError(f"{folder}: no entry.py (an entry defines fit and predict)")
    spec = importlib.util.spec_from_file_location(f"entry_{Path(folder).name}", path)
    if spec is None or spec.loader is None:
        raise CompetitionError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("fit", "predict"):
        if not callable(getattr(module, name, None)):
            raise CompetitionError(f"{path}: no function {name}()")
    return module


def defines(folder: Path, name: str) -> bool:
    """Whether the entry's entry.py defines or imports `name` at its top level, read without
    running it (a participant's code, and the imports it pulls in, stay unexecuted)."""
    path = Path(folder) / "entry.py"
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as e:
        raise CompetitionError(f"{path}: not valid Python (line {e.lineno}: {e.msg})") from e
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(
                (alias.asname or alias.name) == name for alias in node.names):
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def _defaults(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; an entry's config.yaml declares the tasks it "
                          "supports (tasks: [...]) and its settings")
    return configs.read_yaml(path)


def supported_tasks(folder: Path) -> list[str]:
    """The tasks an entry declares in its config.yaml."""
    path = Path(folder) / "config.yaml"
    tasks = _defaults(folder).get(RESERVED)
    if not isinstance(tasks, list) or not tasks or \
            not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{path}: 'tasks' must list the tasks this entry supports, "
                          "e.g. tasks: [nuclei, em]")
    return tasks


def check_supports(folder: Path, task: str) -> None:
    tasks = supported_tasks(folder)
    if task not in tasks:
        raise CompetitionError(f"{folder} supports the task(s) {', '.join(tasks)}; this "
                               f"competition's task is {task}")


def _schema(defaults: dict[str, Any], tasks: list[str]) -> tuple[set[str], dict[str, set[str]]]:
    """Shared keys, and each task section's keys (shared ones included)."""
    shared = {k for k in defaults if k not in tasks and k != RESERVED}
    sections = {}
    for task in tasks:
        section = defaults.get(task) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"config key {task!r} names the {task} task's section and must "
                              "be a mapping (rename the setting)")
        sections[task] = shared | set(section)
    return shared, sections


def _check_document(doc: dict[str, Any], shared: set[str], sections: dict[str, set[str]],
                    source: str, allow_tasks_key: bool) -> None:
    """Unknown keys (top level or in a task's section) are errors naming the closest one."""
    section_models = {task: configs.strict_model(f"{task}_section", sorted(keys))
                      for task, keys in sections.items()}
    # At the top level, a key of any task's section applies to whichever task runs.
    fields: dict[str, Any] = {k: (Any, None) for k in set().union(shared, *sections.values())}
    fields.update({task: (model | None, None) for task, model in section_models.items()})
    if allow_tasks_key:
        fields[RESERVED] = (Any, None)
    from pydantic import create_model

    model = create_model("EntryConfig", __config__=configs.STRICT, **fields)
    configs.parse(model, doc, source)


def _flatten(doc: dict[str, Any], task: str, tasks: list[str]) -> dict[str, Any]:
    """Shared keys, then the task's own section on top."""
    out = {k: v for k, v in doc.items() if k not in tasks and k != RESERVED}
    out.update(doc.get(task) or {})
    return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                       defaults: Mapping[str, Any], ignore: Collection[str] = ()) -> list[str]:
    """The settings in which two resolved configurations of one entry differ. A key that
    one of them lacks (a record written before the entry had the key) counts as the
    entry's default (`defaults`: `resolve_config` of the entry alone): an entry gains a key
    with the default that keeps what it did before."""
    absent = object()

    def value(config: Mapping[str, Any], key: str) -> Any:
        return config[key] if key in config else defaults.get(key, absent)

    return sorted(k for k in set(old) | set(new)
                  if k not in ignore and value(old, k) != value(new, k))


def resolve_config(folder: Path, task: str, config_file: Path | None = None,
                   overrides: list[str] | None = None) -> dict[str, Any]:
    """The entry's settings for `task`: config.yaml, then `config_file`, then `--set`s."""
    defaults = _defaults(folder)
    tasks = supported_tasks(folder)
    check_supports(folder, task)
    shared, sections = _schema(defaults, tasks)
    config = _flatten(defaults, task, tasks)
    if config_file is not None:
        doc = configs.read_yaml(Path(config_file))
        _check_document(doc, shared, sections, str(config_file), allow_tasks_key=False)
        config.update(_flatten(doc, task, tasks))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        section, dot, name = key.partition(".")
        doc = {section: {name: None}} if dot else {key: None}
        _check_document(doc, shared, sections, f"--set {item}", allow_tasks_key=False)
        parsed = yaml.safe_load(value)
        if not dot:
            config[key] = parsed
        elif section in tasks:  # "em.epochs=3" applies to that task only
            if section == task:
                config[name] = parsed
        elif isinstance(config.get(section), dict):  # one key of a mapping setting
            config[section] = {**config[section], name: parsed}
        else:
            raise ConfigError(f"--set {item}: {section} is neither a task of this entry "
                              "nor a mapping setting")
    return config
