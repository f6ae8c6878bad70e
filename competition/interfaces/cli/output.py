"""What commands print: rich text on the console, or one strict JSON document."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

EXIT_REFUSED = 2


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    # No emoji codes or markup in user data: ":x:" in a file must print as ":x:".
    return Console(stderr=stderr, emoji=False, highlight=False, soft_wrap=True)


def out(*parts: Any, **kwargs: Any) -> None:
    console().print(*parts, **kwargs)


def err(*parts: Any, **kwargs: Any) -> None:
    console(stderr=True).print(*parts, **kwargs)


def escape(text: str) -> str:
    """Text from elsewhere (a file, a store, a portal), printed as it is: no rich markup, and
    no control characters, which rich passes on to the terminal (ESC sequences could move
    the cursor, retitle the window or write the clipboard): each is shown as its escape,
    `\\x1b`. Line ends and tabs stay."""
    import unicodedata

    from rich.markup import escape as rich_escape

    shown = "".join(c.encode("unicode_escape").decode("ascii")
                    if unicodedata.category(c) == "Cc" and c not in "\n\t" else c
                    for c in text)
    return rich_escape(shown)


def print_json(value: Any) -> None:
    """One JSON document on stdout (strict: no NaN)."""
    sys.stdout.write(json.dumps(value, allow_nan=False) + "\n")


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def print_outcome(shown: dict[str, Any], show_private: bool) -> None:
    """A submission's outcome as `submit` and `retry` print it."""
    status = shown.get("status")
    if status == "scored":
        line = (f"[green]scored[/] submission {shown['id']}: public score "
                f"{fmt(shown.get('public_score'))}")
        if show_private:
            line += f", private score {fmt(shown.get('private_score'))}"
        out(line)
    elif status == "duplicate":
        out(f"[yellow]duplicate[/] submission {shown['id']}: the same file as submission "
            f"{shown.get('duplicate_of')} (public score {fmt(shown.get('public_score'))}); "
            "not scored again and not counted")
    else:
        run = shown.get("run")
        counted = run is not None and status == "failed"  # the entry's own failure
        err(f"[red]{status}[/] submission {shown['id']}:", escape(shown.get("error") or ""),
            "(counted towards the daily limit)" if counted else
            "(not counted towards the daily limit)")
        if run and run.get("stderr_tail"):
            err("the end of its stderr:\n" + escape("\n".join(
                run["stderr_tail"].splitlines()[-20:])))
    if shown.get("late") and status == "scored":
        out("a late submission (made after the deadline): on the late board "
            "(`competition leaderboard DIR --late`, or `--server URL --late`), never ranked")
    run = shown.get("run")
    if run:
        out(f"run: {run['wall_seconds']:.1f} s, {run['cpu_seconds']:.1f} s CPU, peak memory "
            f"{run['peak_memory_mb']:.0f} MB"
            + (f", exit code {run['exit_code']}" if run.get("exit_code") is not None else ""))
    if shown.get("remaining_today") is not None:
        out(f"{shown['remaining_today']} submission(s) left today (UTC)")
