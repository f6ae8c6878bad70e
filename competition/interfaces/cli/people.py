"""Teams, students' accounts and the roster: `team`, `account`, `roster` commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import escape, out, print_json
from competition.interfaces.cli.root import app, board_of

if TYPE_CHECKING:
    from competition.board.accounts import Issued

MAX_ROSTER_BYTES = 5 * 1024 * 1024
SHEET_COLUMNS = ["name", "id", "email", "team", "token"]

team_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)
app.add_typer(team_app, name="team")
account_app = typer.Typer(help="Students' accounts: each with a token of its own that acts "
                          "as the student's team.", no_args_is_help=True)
app.add_typer(account_app, name="account")
roster_app = typer.Typer(help="A course roster: one account per student.",
                         no_args_is_help=True)
app.add_typer(roster_app, name="roster")

DIRECTORY = typer.Argument(..., help="A prepared competition.")


@team_app.command("add")
def team_add(
    directory: Path = DIRECTORY,
    team: str = typer.Argument(..., help="The team's name."),
    member: list[str] = typer.Option([], "--member", help="A member (repeatable)."),
    token: bool = typer.Option(True, help="Give the team an access token for the web portal "
                               "and API if it has none yet and no students with tokens of "
                               "their own (an existing token is kept)."),
    new_token: bool = typer.Option(False, "--new-token", help="Replace the team's token with "
                                   "a new one (the old one, and its sign-ins, stop working)."),
) -> None:
    """Create a team, add members, and issue its access token if it has none (shown once,
    stored hashed). Adding members to an existing team never changes its token."""
    board = board_of(directory)
    members = board.teams.add(team, member)
    out(f"team {escape(team)}: " + (", ".join(map(escape, members)) or "no members yet"))
    if not (token or new_token):
        return
    row = next((t for t in board.teams.overview() if t["team"] == team.strip()), None)
    if row is not None and row["students"] and not row["has_token"] and not new_token:
        out("its students sign in with their own tokens (--new-token gives the team one "
            "too)")
        return
    issued = board.teams.issue_token(team) if new_token else board.teams.token_if_none(team)
    if issued is None:
        out("its token is unchanged (--new-token replaces it)")
    else:
        out(f"token: {issued}")
        out("give it to the team; it is stored hashed and cannot be shown again")


@team_app.command("list")
def team_list(
    directory: Path = DIRECTORY,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list."),
) -> None:
    """Every team: its students (accounts), other members, token, submissions."""
    teams = board_of(directory).teams.overview()
    if as_json:
        print_json([{k: v for k, v in t.items() if k != "created_at"} for t in teams])
        return
    from rich.table import Table

    table = Table(title="Teams")
    for column in ("team", "students", "members", "team token", "submissions"):
        table.add_column(column)
    for t in teams:
        table.add_row(escape(t["team"]) + (" (baseline)" if t["baseline"] else ""),
                      escape(", ".join(t["students"])), escape(", ".join(t["members"])),
                      "issued" if t["has_token"] else "none", str(t["submissions"]))
    out(table)


@team_app.command("rename")
def team_rename(directory: Path = DIRECTORY,
                old: str = typer.Argument(..., help="The team's name now."),
                new: str = typer.Argument(..., help="Its new name.")) -> None:
    """Rename a team: its submissions, students, tokens and sign-ins stay with it."""
    board_of(directory).teams.rename(old, new)
    out(f"team {escape(old.strip())} is now {escape(new.strip())}")


@team_app.command("remove")
def team_remove(directory: Path = DIRECTORY,
                team: str = typer.Argument(..., help="The team's name.")) -> None:
    """Remove a team that has no submissions and no students. A team with submissions is
    never removed (they are kept for good): rename it or move its students instead."""
    board_of(directory).teams.remove(team)
    out(f"team {escape(team.strip())} removed")


@team_app.command("move")
def team_move(directory: Path = DIRECTORY,
              student: str = typer.Argument(..., help="The student's id, email or name."),
              team: str = typer.Argument(..., help="The team to move to (created if new)."),
              force: bool = typer.Option(False, "--force", help="Move even past the rule "
                                         "team_size_limit.")) -> None:
    """Move a student to another team (also after the merger deadline: the organizer's
    override of team forming; within team_size_limit unless --force). The student's token
    keeps working, now as the new team; no other token changes."""
    account, moved_to = board_of(directory).accounts.move(student, team, force=force)
    out(f"{escape(account['name'])} moved from team {escape(account['team'])} to "
        f"{escape(moved_to)}; their token is unchanged")


@account_app.command("list")
def account_list(
    directory: Path = DIRECTORY,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list."),
) -> None:
    """Every student's account: name, id, email, team, whether it has a token."""
    accounts = board_of(directory).accounts.every()
    if as_json:
        print_json([{k: a[k] for k in ("name", "student_id", "email", "team", "has_token")}
                    for a in accounts])
        return
    from rich.table import Table

    table = Table(title="Accounts")
    for column in ("name", "id", "email", "team", "token"):
        table.add_column(column)
    for a in accounts:
        table.add_row(escape(a["name"]), escape(a["student_id"] or "-"),
                      escape(a["email"] or "-"), escape(a["team"]),
                      "issued" if a["has_token"] else "revoked")
    out(table)


@account_app.command("reissue")
def account_reissue(directory: Path = DIRECTORY,
                    student: str = typer.Argument(..., help="The student's id, email or "
                                                  "name.")) -> None:
    """A new token for one student (shown once): their old token and its sign-ins stop
    working; nobody else's token changes."""
    account, token = board_of(directory).accounts.reissue(student)
    out(f"{escape(account['name'])} (team {escape(account['team'])}): token: {token}")
    out("give it to the student; it is stored hashed and cannot be shown again")


@account_app.command("revoke")
def account_revoke(directory: Path = DIRECTORY,
                   student: str = typer.Argument(..., help="The student's id, email or "
                                                 "name.")) -> None:
    """Take one student's token away (it and its sign-ins stop working at once;
    `account reissue` gives a new one)."""
    account = board_of(directory).accounts.revoke(student)
    out(f"{escape(account['name'])} (team {escape(account['team'])}): token revoked")


@roster_app.command("import")
def roster_import(
    directories: list[Path] = typer.Argument(..., metavar="DIR", help="The prepared "
                                             "competitions (one, several, or a course folder "
                                             "holding them)."),
    roster: Path = typer.Argument(..., help="The roster CSV: columns name, and email or id "
                                  "(or both), optionally team."),
    sheet: Path = typer.Option(..., "--out", help="A new CSV for the tokens of the new "
                               "accounts (name, id, email, team, token); never overwritten."),
) -> None:
    """Create one account per student of the roster (and the teams it names), and write
    the new accounts' tokens to the sheet (stored hashed: the sheet is the only copy).
    Importing again adds newcomers and reports changes (a student moved to another team);
    existing accounts keep their tokens and are not in the sheet. With several competitions,
    each student gets one token valid in all of them (a student known to one of them keeps
    that token); if any of them refuses the roster, none is changed."""
    from competition.board.course import course_members
    from competition.board.roster import read_roster

    members = course_members(directories)
    students = read_roster(_roster_text(roster), str(roster))
    boards = [board_of(m.directory) for m in members]
    if sheet.exists():
        raise CompetitionError(f"{sheet} exists already: a token sheet is never overwritten "
                               "(its tokens cannot be shown again); choose another --out")
    _not_published(sheet, [m.directory for m in members])
    written: list[Path] = []

    def keep_sheet(issued: list[Issued]) -> None:
        _write_sheet(sheet, issued)
        written.append(sheet)

    notes: list[str] = []
    try:
        if len(boards) == 1:
            reports = [boards[0].accounts.import_roster(students, str(roster), keep_sheet)]
        else:
            from competition.board.course_roster import import_course_roster

            reports, plan = import_course_roster(boards, [m.slug for m in members], students,
                                                 str(roster), keep_sheet)
            notes = plan.notes
    except BaseException:
        if written:  # the stores kept nothing: neither may the sheet
            sheet.unlink(missing_ok=True)
        raise
    first = reports[0]
    out(f"{len(first.issued)} new account(s); tokens in {escape(str(sheet))} (the only "
        "copy: hand them out, keep the file safe)")
    for member, report in zip(members, reports, strict=True):
        where = f"{member.slug}: " if len(members) > 1 else ""
        for line in report.joined:
            out(f"{where}new account with the token the student has already: {escape(line)}")
        for line in report.changes:
            out(f"{where}changed: {escape(line)}")
        if report.unchanged:
            out(f"{where}{report.unchanged} existing account(s) unchanged")
        for line in report.absent:
            out(f"{where}not in this roster (kept): {escape(line)}")
    if any(r.changes or r.unchanged or r.joined for r in reports):
        out("existing accounts keep their tokens and are not in the sheet (`competition "
            "account reissue` gives one student a new token)")
    for line in notes:
        out(f"note: {escape(line)}")


def _roster_text(roster: Path) -> str:
    try:
        size = roster.stat().st_size
        if size > MAX_ROSTER_BYTES:
            raise CompetitionError(f"{roster}: {size:,} bytes; a roster may have at most "
                                   f"{MAX_ROSTER_BYTES:,}")
        return roster.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CompetitionError(f"{roster}: no such file") from None
    except UnicodeDecodeError as e:
        raise CompetitionError(f"{roster}: not UTF-8 text (byte {e.start}); save the roster "
                               "as CSV UTF-8") from None


def _not_published(sheet: Path, directories: list[Path]) -> None:
    """Refuse a token sheet inside a competition's public/ folder: the portal serves every
    file there to anyone (the students' tokens with it)."""
    where = sheet.parent.resolve() / sheet.name
    for directory in directories:
        public = (directory / "public").resolve()
        if where.is_relative_to(public):
            raise CompetitionError(f"{sheet} is inside {directory / 'public'}, which the portal "
                                   "serves to everyone: write the token sheet elsewhere")


def _write_sheet(sheet: Path, issued: list[Issued]) -> None:
    """The token sheet, created new (never over another file), readable by its owner only."""
    from competition.formats.csv_safe import csv_text

    text = csv_text(SHEET_COLUMNS, [[i.name, i.student_id or "", i.email or "", i.team,
                                     i.token] for i in issued])
    fd = os.open(sheet, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
