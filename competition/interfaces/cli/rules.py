"""The rules in force and their edits: `competition rules DIR [--set RULE=VALUE ...]
[--description FILE]`, through the same path as the portal's organizer pages
(competition.board.rule_edits): validated by the same model, written atomically, recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import escape, out, print_json
from competition.interfaces.cli.root import app, board_of


def cli_who() -> str:
    """Who the history names for an edit from this command: `cli:` and the OS user."""
    import getpass
    import os

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid {os.getuid()}"
    return f"cli:{user}"


def parse_sets(sets: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in sets:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not key:
            raise CompetitionError(f"--set {item!r}: expected RULE=VALUE (e.g. --set "
                                   "daily_limit=3)")
        if key in values:
            raise CompetitionError(f"--set {key}: given twice")
        values[key] = value
    return values


@app.command("rules")
def rules_command(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    set_: list[str] = typer.Option([], "--set", help="RULE=VALUE: change a rule (repeatable; "
                                   "e.g. --set deadline=2026-12-31T23:59Z --set "
                                   "daily_limit=3; an empty value or `none` unsets the start "
                                   "or deadline)."),
    description: Path | None = typer.Option(None, "--description", help="Replace the "
                                            "competition's description with this Markdown "
                                            "file (public/README.md; at most 200 KB)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Show the rules in force and their changes; with --set or --description, change them
    as the portal's organizer pages do (checked as competition.yaml is, written at once,
    recorded with who changed what; a running portal applies them from its next request)."""
    from competition.board import rule_edits

    board = board_of(directory)
    root = board.comp.root
    who = cli_who()
    changes: list[rule_edits.Change] = []
    if set_:
        changes += rule_edits.edit_rules(root, board.engine,
                                          rule_edits.from_text(parse_sets(set_)), who)
    if description is not None:
        try:
            # Read no more than could fit (CRLF line ends become LF): a huge file is refused
            # without being read whole.
            with description.open("rb") as f:
                data = f.read(2 * rule_edits.MAX_DESCRIPTION_BYTES + 1)
            if len(data) > 2 * rule_edits.MAX_DESCRIPTION_BYTES:
                raise rule_edits.DescriptionTooLarge(
                    f"description: {description} is over the limit of "
                    f"{rule_edits.MAX_DESCRIPTION_BYTES:,} bytes; nothing was changed")
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CompetitionError(f"--description {description}: cannot be read as UTF-8 "
                                   f"text ({e})") from None
        edited = rule_edits.edit_description(root, board.engine, text, who)
        changes += [edited] if edited is not None else []
    rules, _ = rule_edits.rules_in_force(root)
    history = rule_edits.history(board.engine)
    board.engine.dispose()
    if as_json:
        print_json({"rules": rules.model_dump(mode="json"),
                    "changed": [{"field": c.field, "old": c.old, "new": c.new}
                                for c in changes],
                    "changes": rule_edits.history_json(history, who=True)})
        return
    if set_ or description is not None:
        out("changed: " + ", ".join(escape(c.field) for c in changes) if changes
            else "nothing changed (the values given are those in force)")
    from rich.table import Table

    table = Table(title="Rules in force")
    table.add_column("rule")
    table.add_column("value")
    fixed = set(rule_edits.FIXED)
    for key, value in rules.model_dump(mode="json").items():
        table.add_row(escape(key) + (" (fixed)" if key in fixed else ""),
                      escape("none" if value is None else str(value)))
    out(table)
    if history:
        changed = Table(title="Changes (newest first)")
        for column in ("changed (UTC)", "by", "rule", "before", "after"):
            changed.add_column(column)
        for row in history:
            changed.add_row(row["changed_at"].strftime("%Y-%m-%d %H:%M:%S"),
                            escape(row["who"]), escape(row["field"]), escape(row["old"]),
                            escape(row["new"]))
        out(changed)
