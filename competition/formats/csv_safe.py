"""CSV for spreadsheets: cells that a spreadsheet would run as a formula are defused.

A team name or a message such as `=HYPERLINK("http://x","y")` is participant text; opened in
Excel or LibreOffice it would be a live formula. Per OWASP's CSV injection advice, a text cell
that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote,
which spreadsheets show as text. Numbers are left alone (a negative score stays a number).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """The value as a spreadsheet will show it as typed: text that would start a formula gets
    a leading `'`; anything else is unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A CSV document (`\\n` line ends) whose every cell went through `safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue()
