"""Editing the rules and the description of a prepared competition (issue 28), the one path
the portal's pages, its organizer API and `competition rules --set` share.

Rules are validated by the same model as a hand-edited competition.yaml (RulesConfig, inside
CompetitionConfig, through `configs.parse`), so a refusal is the same message, naming the
key (`competition.yaml: rules.daily_limit: Input should be greater than 0`), and nothing is
written. An accepted edit:

- rewrites competition.yaml atomically (a temporary file in the same folder, then
  os.replace), changing only the lines of the keys that changed: every other key, the order
  and the comments stay (a file too unusual to edit line by line is written whole from its
  parsed content: every key kept, comments lost). The portal sees the new file by its `stat`
  and applies it from the next request, without a restart;
- is made under a lock file beside competition.yaml and, when the caller says what it saw
  (`expected`: the SHA-256 of the file's bytes, which a form carries), only if the file is
  still that one: two organizers' forms never silently undo each other (StaleEdit, a 409);
- records one row per changed field in the store's rule_changes table, in the transaction
  that is committed only once the file is in place (a file that cannot be written records
  nothing; a store that cannot commit puts the old file back).

The description is public/README.md (what `prepare` wrote, rendered sanitised on the
competition page; competition.interfaces.web.publish), edited the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from competition.board.rules import utcnow
from competition.board.store import db
from competition.board.store import rule_changes as store
from competition.board.store import submissions as submission_store
from competition.configs import CompetitionConfig, RulesConfig, parse
from competition.errors import CompetitionError, ConfigError

CONFIG = "competition.yaml"
DESCRIPTION = "public/README.md"
LOCK = ".competition.yaml.lock"
# Rules `prepare` decided that no edit can change: the Usage column of the hidden solution
# was drawn with this fraction; a new value would only make the rules page wrong.
FIXED = {"public_fraction": "the split of the test items into public and private was drawn "
                            "by `prepare`; prepare the competition again to change it"}
# The description's size limit (UTF-8 bytes): a long course handout fits many times over;
# the page renders it on every visit.
MAX_DESCRIPTION_BYTES = 200 * 1024
# What the rules form calls each rule (a rule added to RulesConfig later is editable too,
# shown by its key until it gets a label here).
LABELS = {
    "start": "Start (UTC, ISO 8601, e.g. 2026-12-01T09:00Z; empty: open now)",
    "deadline": "Deadline (UTC, ISO 8601, e.g. 2026-12-31T23:59Z; empty: none)",
    "daily_limit": "Submissions per team per UTC day",
    "final_selections": "Final selections per team",
    "max_submission_mb": "Largest submission (MB)",
    "uploads_per_hour": "Uploads per team in any hour",
    "max_message_chars": "Longest submission message (characters)",
    "late_submissions": "Take late submissions (after the deadline, never ranked)",
    "team_size_limit": "Students per team (empty: any number)",
    "merger_deadline": "Merger deadline: teams are frozen from it (UTC, ISO 8601; empty: "
                       "the deadline)",
    "ranking": "Leaderboard order",
    "scoring_memory_mb": "Scoring memory limit (MB)",
    "scoring_cpu_seconds": "Scoring CPU time limit (s)",
}
HISTORY_LIMIT = 100  # changes shown on the pages


class StaleEdit(CompetitionError):
    """The file changed since the form (or the caller) read it: nothing was written."""


class DescriptionTooLarge(CompetitionError):
    """The new description is over MAX_DESCRIPTION_BYTES: nothing was written."""


class InvalidDescription(CompetitionError):
    """The new description is not text that UTF-8 can hold: nothing was written."""


@dataclass(frozen=True)
class RuleField:
    """One editable rule, as a form shows it."""

    name: str
    label: str
    kind: str  # "bool", "choice" (of `choices`) or "text" (numbers, times)
    choices: tuple[str, ...]
    nullable: bool


@dataclass(frozen=True)
class Change:
    field: str
    old: Any  # JSON values: the rule as competition.yaml holds it, or the description's
    new: Any  # {"sha256", "bytes"}


def signature(data: bytes) -> str:
    """What a form carries to say which version of a file it was made from."""
    return hashlib.sha256(data).hexdigest()


def editable() -> list[RuleField]:
    """Every rule an organizer may set: RulesConfig's fields, but the FIXED ones."""
    found = []
    for name, info in RulesConfig.model_fields.items():
        if name in FIXED:
            continue
        args = typing.get_args(info.annotation)
        nullable = type(None) in args
        kind = "text"
        choices: tuple[str, ...] = ()
        if info.annotation is bool:
            kind = "bool"
        elif typing.get_origin(info.annotation) is typing.Literal:
            kind, choices = "choice", tuple(str(a) for a in args)
        found.append(RuleField(name, LABELS.get(name, name), kind, choices, nullable))
    return found


def from_text(values: Mapping[str, str]) -> dict[str, Any]:
    """Rules as a form or `--set` gives them (text): an empty value, `none` or `null` unsets
    a rule that may be unset (the deadline...); anything else goes to the model as it is,
    which reads numbers, booleans and times from text as it reads them from YAML."""
    nullable = {f.name for f in editable() if f.nullable}
    return {key: None if key in nullable and value.strip().lower() in ("", "none", "null")
            else value.strip() for key, value in values.items()}


# --- reading ------------------------------------------------------------------------------

def rules_in_force(root: Path) -> tuple[RulesConfig, str]:
    """The rules competition.yaml holds now, and the file's signature."""
    data = (Path(root) / CONFIG).read_bytes()
    return _parsed(_mapping(data)).rules, signature(data)


def description(root: Path) -> tuple[str, str]:
    """The description's Markdown (empty if there is none), and its signature."""
    data = _read_or_empty(Path(root) / DESCRIPTION)
    return data.decode("utf-8", "replace"), signature(data)


def history(engine: db.Engine, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The latest changes, newest first: changed_at, who, field, old, new (the values in
    words)."""
    with db.read(engine) as conn:
        rows = store.latest(conn, limit)
    return [{**r, "old": _shown(r["field"], r["old_value"]),
             "new": _shown(r["field"], r["new_value"])} for r in rows]


def history_json(rows: list[dict[str, Any]], *, who: bool) -> list[dict[str, Any]]:
    """Rows of `history` for the API: `who` only for the organizer (it may name an OS
    user); participants see what changed and when."""
    return [{"changed_at": r["changed_at"].isoformat() + "Z", "field": r["field"],
             "old": _loaded(r["old_value"]), "new": _loaded(r["new_value"]),
             **({"who": r["who"]} if who else {})} for r in rows]


# --- editing ------------------------------------------------------------------------------

def edit_rules(root: Path, engine: db.Engine, values: Mapping[str, Any], who: str, *,
               expected: str | None = None, replace: bool = False,
               now: Callable[[], datetime] = utcnow) -> list[Change]:
    """Set the rules `values` (JSON values, or text through `from_text`); with `replace`,
    every editable rule not in `values` returns to its default (an API PUT). Returns what
    changed (nothing: nothing written). A ConfigError naming the key for a value the model
    refuses, or a fixed or unknown key; a StaleEdit if the file is no longer `expected`."""
    path = Path(root) / CONFIG
    fixed = {f"rules.{key}": f"rules.{key}: {why}" for key, why in FIXED.items()
             if key in values}
    if fixed:
        raise _config_error(fixed)
    with _locked(root):
        data = path.read_bytes()
        _check_expected(data, expected, "competition.yaml (the rules)")
        doc = _mapping(data)
        raw = doc.get("rules") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{CONFIG}: rules: expected a mapping of rules to values")
        old = _old_values(doc, raw)
        wanted = dict(values)
        if replace:  # the rules not given return to their defaults
            defaults = RulesConfig().model_dump(mode="json")
            wanted = {f.name: defaults[f.name] for f in editable()} | wanted
        # CONFIG, not the path: the message is shown on the portal's page, which names no
        # folder of the server.
        new = parse(CompetitionConfig, {**doc, "rules": {**raw, **wanted}},
                    CONFIG).rules.model_dump(mode="json")
        changes = [Change(key, old[key], new[key]) for key in new if old[key] != new[key]]
        if not changes:
            return []
        _keep_late_unranked(engine, old, new)
        # The validated values are written (times as ISO text in UTC), not the text given.
        updates = {c.field: c.new for c in changes}
        text = _edited_yaml(data.decode("utf-8"), {**doc, "rules": {**raw, **updates}},
                            updates)
        _commit(engine, path, data, text.encode("utf-8"), who, now(), changes)
    return changes


def _keep_late_unranked(engine: db.Engine, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Lateness is read from the rule and the deadline in force (board.rules.Rules.is_late):
    turning `late_submissions` off while submissions made after the deadline exist would
    rank them on the boards and in the grades. Refused, naming the rule."""
    deadline = RulesConfig.model_validate({"deadline": new["deadline"]}).deadline
    if not old["late_submissions"] or new["late_submissions"] or deadline is None:
        return
    with db.read(engine) as conn:
        late = submission_store.made_since(conn, deadline)
    if late:
        raise _config_error({"rules.late_submissions": (
            f"rules.late_submissions: {late} submission(s) were made after the deadline "
            "under this rule; turning it off would rank them: keep it on (they stay on the "
            "late board, unranked)")})


def edit_description(root: Path, engine: db.Engine, markdown: str, who: str, *,
                     expected: str | None = None,
                     now: Callable[[], datetime] = utcnow) -> Change | None:
    """Replace the description (public/README.md); None if it is the same text. A
    DescriptionTooLarge over MAX_DESCRIPTION_BYTES, a StaleEdit if the file is no longer
    `expected`."""
    # A browser's textarea sends CRLF line ends; the file keeps Markdown's plain ones.
    try:
        new = markdown.replace("\r\n", "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON's \uD800 can carry
        raise InvalidDescription("description: not valid Unicode text (it holds a lone "
                                 "surrogate); nothing was changed") from None
    if len(new) > MAX_DESCRIPTION_BYTES:
        raise DescriptionTooLarge(
            f"description: {len(new):,} bytes is over the limit of {MAX_DESCRIPTION_BYTES:,} "
            f"bytes ({MAX_DESCRIPTION_BYTES // 1024} KB); nothing was changed")
    path = Path(root) / DESCRIPTION
    with _locked(root):
        old = _read_or_empty(path)
        _check_expected(old, expected, "the description")
        if old == new:
            return None
        # The history keeps each version's SHA-256 and length, not the text: a description
        # may be 200 KB and the history is shown on every competition page; the hash tells
        # which version was in force when (and matches a copy an organizer kept), the text
        # itself is the file.
        change = Change("description", _version(old), _version(new))
        # The temporary file is made beside public/, not in it: public/ is served as it is,
        # and a file left by a crash there would be published.
        _commit(engine, path, old, new, who, now(), [change], staging=Path(root))
    return change


# --- the file and the store ---------------------------------------------------------------

def _commit(engine: db.Engine, path: Path, old: bytes, new: bytes, who: str,
            moment: datetime, changes: list[Change], staging: Path | None = None) -> None:
    """Record the changes and put the new file in place: the rows commit only once the file
    is there; if the commit fails after it, the old file is put back."""
    replaced = False
    try:
        with db.write(engine) as conn:
            store.record(conn, moment, who, [(c.field, json.dumps(c.old), json.dumps(c.new))
                                             for c in changes])
            _replace(path, new, staging)
            replaced = True
    except BaseException:
        if replaced:
            _replace(path, old, staging)
        raise


def _replace(path: Path, data: bytes, staging: Path | None = None) -> None:
    """`path` holds `data`, or (on any failure) what it held: a temporary file in the same
    folder (`staging`: another folder of the same file system), then renamed over it with
    os.replace, which is atomic: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=staging or path.parent, prefix=f".{path.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One edit at a time, across threads and processes on this host (an flock on a file of
    its own: competition.yaml itself is replaced, so a lock on it would be on the old file)."""
    with open(Path(root) / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_expected(data: bytes, expected: str | None, what: str) -> None:
    """`expected`: a signature, or an HTTP If-Match's value (`"SIG"`, `W/"SIG"`; `*` is any
    version)."""
    if expected is None or expected.strip() == "*":
        return
    if signature(data) != expected.strip().removeprefix("W/").strip('"'):
        raise StaleEdit(f"{what} changed since this form was shown (another edit came "
                        "first); nothing was changed: reload the page and make your change "
                        "again")


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _mapping(data: bytes) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{CONFIG}: not valid YAML ({e})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{CONFIG}: expected a mapping of keys to values")
    return doc


def _parsed(doc: dict[str, Any]) -> CompetitionConfig:
    return parse(CompetitionConfig, doc, CONFIG)


def _old_values(doc: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """The rules before the edit, as JSON values. A file broken by hand (say `daily_limit:
    -3`) can be corrected by an edit: each rule is then read alone, an invalid value kept
    as its text (the history shows what it was)."""
    try:
        return _parsed(doc).rules.model_dump(mode="json")
    except ConfigError:
        pass
    values = RulesConfig().model_dump(mode="json")
    for key in values.keys() & raw.keys():
        try:
            values[key] = RulesConfig.model_validate({key: raw[key]}).model_dump(
                mode="json")[key]
        except ValueError:  # pydantic's ValidationError is one
            values[key] = str(raw[key])
    return values


def _config_error(problems: dict[str, str]) -> ConfigError:
    error = ConfigError(f"{CONFIG}: " + "; ".join(problems.values()))
    error.problems = problems
    return error


def _edited_yaml(text: str, doc: dict[str, Any], updates: dict[str, Any]) -> str:
    """competition.yaml's text with the rules `updates` set, line by line (the rest of the
    file as it was); if that does not read back as `doc`, the whole of `doc` (every key, in
    its order; comments lost)."""
    edited = _set_rule_lines(text, updates)
    if edited is not None:
        try:
            if _mapping(edited.encode("utf-8")) == doc:
                return edited
        except ConfigError:
            pass
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def _set_rule_lines(text: str, updates: dict[str, Any]) -> str | None:
    """Each rule's line in the top-level `rules:` block replaced (a trailing comment kept), or
    added at the block's end; None where the block is not a plain one (a flow mapping)."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    starts = [k for k, line in enumerate(lines) if re.match(r"rules\s*:", line)]
    if not starts:
        return "".join(lines) + "rules:\n" + "".join(
            "  " + _yaml_line(key, value) for key, value in updates.items())
    start = starts[0]
    if not re.fullmatch(r"rules\s*:\s*(#.*)?\n", lines[start]):
        return None
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith((" ", "#"))):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # blank lines after the block stay after it
    block = lines[start + 1:end]
    indent = next((re.match(r"\s*", line).group() for line in block  # type: ignore[union-attr]
                   if line.strip() and not line.lstrip().startswith("#")), "  ")
    for key, value in updates.items():
        pattern = re.compile(rf"{re.escape(indent)}{re.escape(key)}\s*:(?P<value>[^#'\"]*?)"
                             rf"(?P<comment>\s+#.*)?\n")
        at = next((k for k, line in enumerate(block) if line.startswith(f"{indent}{key}")
                   and re.match(rf"{re.escape(indent)}{re.escape(key)}\s*:", line)), None)
        new_line = indent + _yaml_line(key, value)
        if at is None:
            block.append(new_line)
            continue
        found = pattern.fullmatch(block[at])
        comment = found.group("comment") if found and found.group("comment") else ""
        block[at] = new_line[:-1] + comment + "\n"
    return "".join(lines[:start + 1] + block + lines[end:])


def _yaml_line(key: str, value: Any) -> str:
    return yaml.safe_dump({key: value}, default_flow_style=False, width=10_000)


def _version(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _time_rules() -> set[str]:
    """The rules that are times (start, deadline, and any added later)."""
    return {name for name, info in RulesConfig.model_fields.items()
            if info.annotation is datetime or datetime in typing.get_args(info.annotation)}


def _loaded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _shown(field: str, text: str | None) -> str:
    """A recorded value in words."""
    value = _loaded(text)
    if field == "description" and isinstance(value, dict):
        return (f"version {str(value.get('sha256', ''))[:12]} "
                f"({int(value.get('bytes', 0)):,} bytes)")
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and field in _time_rules():
        return value.replace("T", " ").removesuffix("Z") + " UTC"
    return str(value)


__all__ = ["FIXED", "MAX_DESCRIPTION_BYTES", "Change", "DescriptionTooLarge", "InvalidDescription",
           "RuleField",
           "StaleEdit", "description", "edit_description", "edit_rules", "editable",
           "from_text", "history", "history_json", "rules_in_force", "signature"]
