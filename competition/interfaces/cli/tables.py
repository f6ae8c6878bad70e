"""The board's and a team's tables, drawn from the JSON rows (the models' `as_json`, or the
portal's API answers, which are the same): the local and the remote commands print alike. A
private column is drawn where the rows carry private scores."""

from __future__ import annotations

from typing import Any

from competition.interfaces.cli.output import escape, fmt, out

Row = dict[str, Any]


def _time(value: Any, seconds: bool = False) -> str:
    """An ISO 8601 time as `YYYY-MM-DD HH:MM[:SS]`."""
    return str(value or "-")[:19 if seconds else 16].replace("T", " ")


def _shows_private(rows: list[Row]) -> bool:
    return any("private_score" in r for r in rows)


def submissions_table(rows: list[Row], team: str) -> None:
    from rich.table import Table

    private = _shows_private(rows)
    table = Table("id", "submitted (UTC)", "file", "status", "public",
                  *(["private"] if private else []), "selected", "message", "error",
                  title=f"Submissions of {escape(team)}")
    for r in rows:  # a late one (made after the deadline) is marked: it is never ranked
        table.add_row(str(r["id"]), _time(r.get("submitted_at"), seconds=True),
                      escape(str(r.get("file_name", ""))),
                      str(r.get("status")) + (" (late)" if r.get("late") else ""),
                      fmt(r.get("public_score")),
                      *([fmt(r.get("private_score"))] if private else []),
                      "yes" if r.get("selected") else "", escape(r.get("message") or ""),
                      escape(r.get("error") or ""))
    out(table)


def board_table(entries: list[Row], title: str, private: bool) -> None:
    from rich.table import Table

    columns = ["rank", "team", "score", "95% interval", "~leader", "entries", "last"]
    if private:
        columns[5:5] = ["public rank", "change"]
    # The task's item metrics (means over the board's items) and the mean rank, where given.
    labels = list(entries[0].get("metrics") or {}) if entries else []
    ranked = any(e.get("mean_rank") is not None for e in entries)
    columns[3:3] = [escape(str(label)) for label in labels] + (["mean rank"] if ranked else [])
    table = Table(*columns, title=title, caption="~leader: not significantly different from "
                  "the leader (paired bootstrap over test items)")
    for e in entries:
        low, high = e.get("ci_low"), e.get("ci_high")
        interval = "-" if low is None or high is None else f"{low:.4f} .. {high:.4f}"
        row = [str(e["rank"]), escape(str(e["team"])) + (" (baseline)" if e.get("baseline")
                                                         else ""),
               fmt(e.get("score")), interval,
               "~" if e.get("indistinguishable_from_leader") else "", str(e.get("entries")),
               _time(e.get("submitted_at"))]
        if private:
            change = "" if e.get("rank_change") is None else f"{e['rank_change']:+d}"
            row[5:5] = [str(e.get("public_rank") or "-"), change]
        row[3:3] = [fmt((e.get("metrics") or {}).get(label)) for label in labels] + (
            [fmt(e.get("mean_rank"))] if ranked else [])
        table.add_row(*row)
    out(table)


def late_table(entries: list[Row], title: str) -> None:
    from rich.table import Table

    private = _shows_private(entries)
    table = Table("team", "submission", "submitted (UTC)", "public",
                  *(["private"] if private else []), title=title)
    for e in entries:
        table.add_row(escape(str(e["team"])) + (" (baseline)" if e.get("baseline") else ""),
                      str(e["submission_id"]), _time(e.get("submitted_at"), seconds=True),
                      fmt(e.get("public_score")),
                      *([fmt(e.get("private_score"))] if private else []))
    out(table)
