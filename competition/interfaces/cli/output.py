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
    from rich.markup import escape as rich_escape

    return rich_escape(text)


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
        err(f"[red]{status}[/] submission {shown['id']}:", escape(shown.get("error") or ""),
            "(not counted towards the daily limit)")
    if shown.get("remaining_today") is not None:
        out(f"{shown['remaining_today']} submission(s) left today (UTC)")
