"""Students' accounts (issue 28): one per person, each in one team, with a token of its own
that acts as the team (see Teams.who and competition.board.sessions).

A token is shown once, when it is made (the roster import's sheet, `account reissue`), and
only its SHA-256 is kept. Nothing here ever changes a token as a side effect: importing a
roster again, moving a student or adding members leaves every token as it was; only
`reissue` (a new one) and `revoke` (none) change one account's token, and nobody else's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from competition.board.context import BoardContext, RuleError
from competition.board.names import checked_name
from competition.board.roster import Student
from competition.board.store import accounts as store
from competition.board.store import db
from competition.board.store import teams as team_store
from competition.board.store.db import Connection
from competition.board.team_forming import (
    check_size,
    lock_student,
    move_students,
    tidy_left_team,
)
from competition.board.teams import Teams, new_token, token_hash


@dataclass(frozen=True)
class Issued:
    """A new account and its token (shown once)."""
    name: str
    student_id: str | None
    email: str | None
    team: str
    token: str


@dataclass
class ImportReport:
    issued: list[Issued] = field(default_factory=list)  # new accounts
    changes: list[str] = field(default_factory=list)  # of existing accounts, one line each
    unchanged: int = 0  # existing accounts the roster left as they were
    absent: list[str] = field(default_factory=list)  # accounts not in this roster (kept)
    # New accounts given the token the student has already in another competition of the
    # course (course_roster.py): not in the sheet, their token is known to them.
    joined: list[str] = field(default_factory=list)


# A new account's token: (its hash, or None for no token; the token itself when it is new,
# to be shown once, else None).
TokenSource = Callable[[Student], tuple[str | None, str | None]]


def fresh_token(s: Student) -> tuple[str | None, str | None]:
    token = new_token()
    return token_hash(token), token


class Accounts:
    def __init__(self, ctx: BoardContext, teams: Teams):
        self.ctx, self.teams = ctx, teams

    def every(self) -> list[dict[str, Any]]:
        """Every account by team and name: name, email, student_id, team, has_token."""
        with db.read(self.ctx.engine) as conn:
            return store.every(conn)

    def known_tokens(self, students: list[Student]) -> list[tuple[bool, str | None]]:
        """For each student: whether this store has their account, and its token hash (None:
        none, or revoked). A row naming two students counts as unknown here (the import
        refuses it)."""
        with db.read(self.ctx.engine) as conn:
            known = store.every(conn)
            hashes = store.token_hashes(conn)
        by_id = {a["student_id"]: a for a in known if a["student_id"] is not None}
        by_email = {a["email"]: a for a in known if a["email"] is not None}
        found: list[tuple[bool, str | None]] = []
        for s in students:
            try:
                account = _match(s, by_id, by_email)
            except RuleError:
                account = None
            found.append((False, None) if account is None else (True, hashes[account["id"]]))
        return found

    def import_roster(self, students: list[Student], source: str,
                      keep_sheet: Callable[[list[Issued]], None],
                      token_of: TokenSource = fresh_token) -> ImportReport:
        """Create an account for each new student (and the teams named), and bring existing
        ones up to date (name, email or id filled in, team moved where the roster names one);
        students of the store missing from the roster are kept as they are. Existing tokens
        never change. All of it in one transaction, which commits only once `keep_sheet` has
        kept the new tokens (a sheet that cannot be written changes nothing). `token_of`
        gives each new account its token (a course gives one student one token in each of
        its competitions: course_roster.py)."""
        report = ImportReport()
        now = self.ctx.now()
        with db.write(self.ctx.engine) as conn:
            known = store.every(conn)
            by_id = {a["student_id"]: a for a in known if a["student_id"] is not None}
            by_email = {a["email"]: a for a in known if a["email"] is not None}
            seen: set[int] = set()
            for s in students:
                field_name = "id" if s.student_id is not None else "email"
                try:
                    account = _match(s, by_id, by_email)
                    field_name = "team"  # what creating or updating it can fail on
                    if account is None:
                        issued = self._create(conn, s, now, token_of)
                        if issued.token:
                            report.issued.append(issued)
                        else:
                            report.joined.append(s.label)
                    else:
                        seen.add(account["id"])
                        said = self._update(conn, account, s)
                        report.changes.extend(said)
                        report.unchanged += not said
                except db.Conflict as e:
                    raise RuleError(f"the roster was not imported (nothing changed):\n"
                                    f"{source}:{s.line}: id: {e}") from None
                except RuleError as e:
                    raise RuleError(f"the roster was not imported (nothing changed):\n"
                                    f"{source}:{s.line}: {field_name}: {e}") from None
            report.absent = [f"{a['name']} ({a['student_id'] or a['email']}, team "
                             f"{a['team']})" for a in known if a["id"] not in seen]
            keep_sheet(report.issued)
        return report

    def _create(self, conn: Connection, s: Student, now: Any,
                token_of: TokenSource) -> Issued:
        team = s.team or s.name  # no team given: a team of one, named after the student
        team_id = _participant_team(conn, team, now)
        if s.team is None and team_store.kept_rows(conn, team_id)["students"]:
            raise RuleError(f"no team is given for {s.label}, and the team {team!r} (named "
                            "after the student) has other students: give a team")
        digest, token = token_of(s)
        store.insert_account(conn, s.name, s.email, s.student_id, team_id, digest, now)
        return Issued(s.name, s.student_id, s.email, team_store.names(conn)[team_id],
                      token or "")

    def _update(self, conn: Connection, account: dict[str, Any], s: Student) -> list[str]:
        """Bring an existing account in line with its roster row; what changed, in words."""
        said: list[str] = []
        values: dict[str, Any] = {}
        who = f"{account['name']} ({account['student_id'] or account['email']})"
        if s.name != account["name"]:
            values["name"] = s.name
            said.append(f"{who}: name {account['name']!r} -> {s.name!r}")
        for column, given in (("email", s.email), ("student_id", s.student_id)):
            if given is not None and given != account[column]:
                values[column] = given
                what = "id" if column == "student_id" else column
                said.append(f"{who}: {what} {account[column]!r} -> {given!r}")
        if s.team is not None:
            team_id = _participant_team(conn, s.team, self.ctx.now())
            if team_id != account["team_id"]:
                values["team_id"] = team_id
                said.append(f"{who}: moved from team {account['team']!r} to {s.team!r}")
        moved_to = values.pop("team_id", None)
        if values:
            store.change(conn, account["id"], **values)
        if moved_to is not None:  # as the organizer's move does (its sessions there end)
            move_students(conn, [account["id"]], moved_to)
            tidy_left_team(conn, account["team_id"], self.ctx.now(), drop_empty=False)
        return said

    def find(self, conn: Connection, text: str) -> dict[str, Any]:
        """The one account whose student id, email or name is `text`; a RuleError for none
        or for a name that several students share (naming their ids)."""
        given = text.strip()
        found = store.matching(conn, given)
        exact = [a for a in found if given in (a["student_id"], a["email"])]
        if exact:
            return exact[0]
        if len(found) == 1:
            return found[0]
        if not found:
            raise RuleError(f"there is no student with the id, email or name {given!r} (see "
                            "`competition account list`)")
        raise RuleError(f"{len(found)} students are called {given!r}: give the id or email "
                        "of one (" + ", ".join(str(a["student_id"] or a["email"])
                                              for a in found) + ")")

    def reissue(self, text: str) -> tuple[dict[str, Any], str]:
        """A new token for one student (the old one, and its sessions, stop working; no one
        else's token changes): (the account, the token, shown once)."""
        token = new_token()
        with db.write(self.ctx.engine) as conn:
            account = self.find(conn, text)
            store.change(conn, account["id"], token_sha256=token_hash(token))
        return account, token

    def revoke(self, text: str) -> dict[str, Any]:
        """Take one student's token away (it and its sessions stop working; `reissue`
        gives a new one)."""
        with db.write(self.ctx.engine) as conn:
            account = self.find(conn, text)
            store.change(conn, account["id"], token_sha256=None)
        return account

    def move(self, text: str, team: str, force: bool = False) -> tuple[dict[str, Any], str]:
        """Move a student to another team (created if new); the student's token stays and
        now acts as the new team (sessions opened for the old team end). The organizer's
        override of team forming: it works after the merger deadline too, but keeps to the
        team size limit unless `force`. (the account, the new team's name)."""
        given = checked_name(team)
        with db.write(self.ctx.engine) as conn:
            account = self.find(conn, text)
            team_id = _participant_team(conn, given, self.ctx.now())
            if team_id == account["team_id"]:
                raise RuleError(f"{account['name']} is in team {account['team']!r} already")
            # Locked, then the student's team read again: a join meanwhile is not undone.
            lock_student(conn, account, account["team_id"], team_id)
            if not force:
                try:
                    check_size(conn, self.ctx.rules.team_size_limit, team_id, given, 1)
                except RuleError as e:
                    raise RuleError(f"{e} (--force moves the student anyway)") from None
            move_students(conn, [account["id"]], team_id)
            # The team left behind: its open codes end if nobody is left to have made them
            # (an empty team stays until the organizer's `team remove`).
            tidy_left_team(conn, account["team_id"], self.ctx.now(), drop_empty=False)
            return account, team_store.names(conn)[team_id]

    def people_by_team(self) -> dict[str, list[dict[str, Any]]]:
        """Everyone in each team, by team name: its students' accounts (name, student_id,
        email) and, for teams made with `team add --member`, the members' names that no
        account of the team bears (id and email unknown)."""
        with db.read(self.ctx.engine) as conn:
            people = store.every(conn)
            overview = team_store.overview(conn)
        found: dict[str, list[dict[str, Any]]] = {}
        for a in people:
            found.setdefault(a["team"], []).append(
                {"name": a["name"], "student_id": a["student_id"], "email": a["email"]})
        for t in overview:
            named = {p["name"] for p in found.get(t["name"], [])}
            for member in t["members"]:
                if member not in named:
                    found.setdefault(t["name"], []).append(
                        {"name": member, "student_id": None, "email": None})
        for listed in found.values():
            listed.sort(key=lambda p: (p["name"], p["student_id"] or "", p["email"] or ""))
        return found


def _participant_team(conn: Connection, name: str, now: Any) -> int:
    """The id of the team called `name`, created if new; the organizers' baselines are
    refused (a student's submissions would be left out of the grades)."""
    team_id = Teams.ensure_in(conn, name, now)
    if team_store.is_baseline(conn, team_id):
        raise RuleError(f"{name.strip()!r} is a baseline team of the organizers: students "
                        "belong to participant teams")
    return team_id


def _match(s: Student, by_id: dict[str, dict[str, Any]], by_email: dict[str, dict[str, Any]]
           ) -> dict[str, Any] | None:
    """The existing account of a roster row: by its id, else by its email; a row whose id
    and email belong to two different students is refused."""
    of_id = by_id.get(s.student_id) if s.student_id is not None else None
    of_email = by_email.get(s.email) if s.email is not None else None
    if of_id is not None and of_email is not None and of_id["id"] != of_email["id"]:
        raise RuleError(f"id {s.student_id!r} is {of_id['name']}'s and email {s.email!r} is "
                        f"{of_email['name']}'s: one row, two students")
    if of_id is None and of_email is not None and s.student_id is not None and \
            of_email["student_id"] is not None:
        raise RuleError(f"email {s.email!r} is {of_email['name']}'s, whose id is "
                        f"{of_email['student_id']!r}, not {s.student_id!r}")
    return of_id or of_email
