"""Teams, their members and the hashed access tokens of teams and organizers (students' own
tokens: competition.board.accounts; each acts as its student's team)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from competition.board.context import BoardContext, RuleError
from competition.board.names import checked_name, folded, name_key
from competition.board.store import db
from competition.board.store import teams as store
from competition.board.store.db import Connection


def token_hash(token: str) -> str:
    # Tokens are 192-bit random strings: a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A 192-bit random token, starting with a letter or digit: a token sheet opened in a
    spreadsheet shows it as written (a leading `-` would be defused with a quote, see
    competition.formats.csv_safe) and nobody has to tell it from an option."""
    while True:
        token = secrets.token_urlsafe(24)
        if token[0].isalnum():
            return token


def _lookalike(given: str, existing: str) -> RuleError:
    return RuleError(
        f"the team name {given!r} looks like the existing team {existing!r} (names are "
        f"compared ignoring case, width, spacing and look-alike letters): use {existing!r} "
        "exactly for that team, or choose a clearly different name")


class Teams:
    """Teams by name. A name is kept as first given (without surrounding whitespace) and
    addressed exactly; a name that only looks like an existing one (see
    competition.board.names) is refused, whether to create a team or to act as one."""

    def __init__(self, ctx: BoardContext):
        self.ctx = ctx
        self.sync_keys()

    @staticmethod
    def id_of(conn: Connection, name: str) -> int | None:
        """The id of the team called exactly `name` (surrounding whitespace aside); None
        for no such team; a RuleError for a name that only looks like a team's."""
        given = checked_name(name)
        rows = store.named(conn, given, name_key(given))
        for team_id, team_name in rows:
            if team_name.strip() == given:
                return team_id
        if rows:
            raise _lookalike(given, rows[0][1])
        return None

    def ensure(self, name: str, now: datetime, baseline: bool = False) -> int:
        """The team's id, creating the team on first use (as a baseline of the organizers
        with `baseline`); a name that looks like another team's is refused."""
        given = checked_name(name)
        for _ in range(5):
            try:
                with db.write(self.ctx.engine) as conn:
                    return self.ensure_in(conn, given, now, baseline)
            except db.Conflict:
                continue  # created by a concurrent submission: read it back
        raise RuleError(f"could not create team {given!r}")

    @classmethod
    def ensure_in(cls, conn: Connection, name: str, now: datetime,
                  baseline: bool = False) -> int:
        """`ensure` inside the caller's transaction (db.Conflict where a concurrent one
        created the team first)."""
        given = checked_name(name)
        team_id = cls.id_of(conn, given)
        if team_id is not None:
            return team_id
        return store.insert_team(conn, given, name_key(given), now, baseline)

    def _existing(self, conn: Connection, name: str) -> int:
        team_id = self.id_of(conn, name)
        if team_id is None:
            raise RuleError(f"there is no team called {name.strip()!r} (see `competition team "
                            "list`)")
        return team_id

    def rename(self, old: str, new: str) -> None:
        """Give a team a new name (its submissions, students, tokens and sessions stay
        with it); a name taken by, or looking like, another team's is refused."""
        given = checked_name(new)
        with db.write(self.ctx.engine) as conn:
            team_id = self._existing(conn, old)
            others = [row for row in store.named(conn, given, name_key(given))
                      if row[0] != team_id]
            if any(team_name.strip() == given for _, team_name in others):
                raise RuleError(f"team {given!r} exists already")
            if others:
                raise _lookalike(given, others[0][1])
            try:
                store.rename(conn, team_id, given, name_key(given))
            except db.Conflict as e:
                raise RuleError(str(e)) from None

    def remove(self, name: str) -> None:
        """Delete a team that holds nothing that must be kept. A team with submissions (or
        uploads) is refused: they are never deleted, so neither is the team they belong to;
        a team with students is refused until they are moved (`competition team move`)."""
        with db.write(self.ctx.engine) as conn:
            team_id = self._existing(conn, name)
            # Locked first: a submission being admitted holds this lock, so it is counted
            # below or finds the team gone (and is refused), never the other way round.
            store.lock(conn, team_id)
            kept = store.kept_rows(conn, team_id)
            given = name.strip()
            if kept["submissions"] or kept["uploads"]:
                raise RuleError(
                    f"team {given!r} has {kept['submissions']} submission(s) and "
                    f"{kept['uploads']} upload(s), which are kept for good: a team with "
                    "submissions is never removed (rename it, or move its students to another "
                    "team, instead)")
            if kept["students"]:
                raise RuleError(f"team {given!r} has {kept['students']} student(s): move them "
                                "to another team first (`competition team move`)")
            store.delete_team(conn, team_id)

    def sync_keys(self) -> None:
        """Give every team the key of its name (stores made before keys were kept, or kept
        with an older folding). Teams that already looked alike keep working by their exact
        names: the later one's key is made unique with its id."""
        with db.read(self.ctx.engine) as conn:
            rows = store.name_keys(conn)
        wanted: dict[int, str] = {}
        taken: set[str] = set()
        for team_id, team_name, kept in rows:
            key = name_key(team_name)
            if key in taken:
                key = hashlib.sha256(f"{folded(team_name)}\x00team {team_id}".encode()
                                     ).hexdigest()
            taken.add(key)
            if key != kept:
                wanted[team_id] = key
        if not wanted:
            return
        with db.write(self.ctx.engine) as conn:
            store.set_name_keys(conn, wanted)

    def add(self, name: str, names: list[str]) -> list[str]:
        """Create a team (if new) and add members; returns all its members."""
        given = [checked_name(m, "member name") for m in names if m.strip()]
        team_id = self.ensure(name, self.ctx.now())
        with db.write(self.ctx.engine) as conn:
            known = store.member_names(conn, team_id)
            new = [m for m in dict.fromkeys(given) if m not in known]
            store.add_members(conn, team_id, new)
        return sorted(known | set(new))

    def issue_token(self, name: str) -> str:
        """A new access token for the team (replacing any earlier one); only its hash is kept."""
        token = self._token(name, replace=True)
        assert token is not None
        return token

    def token_if_none(self, name: str) -> str | None:
        """A token for a team that has none yet; None (the token kept) for a team that has
        one: what adding members to an existing team does, so nobody's token stops working."""
        return self._token(name, replace=False)

    def _token(self, name: str, replace: bool) -> str | None:
        team_id = self.ensure(name, self.ctx.now())
        token = new_token()
        with db.write(self.ctx.engine) as conn:
            if not replace and store.has_token(conn, team_id):
                return None
            store.set_token(conn, team_id, token_hash(token))
        return token

    def issue_organizer_token(self) -> str:
        token = new_token()
        with db.write(self.ctx.engine) as conn:
            store.set_credential(conn, "organizer", token_hash(token))
        return token

    def set_organizer_hash(self, digest: str) -> None:
        """Make the token of SHA-256 `digest` this competition's organizer token (a course's
        organizer token: one for every competition of the course; the earlier one stops
        working)."""
        with db.write(self.ctx.engine) as conn:
            store.set_credential(conn, "organizer", digest)

    def who(self, token: str | None) -> tuple[str, str | None] | None:
        """("organizer", None) or ("team", name) for a valid token (the team's own, or one of
        its students'), else None."""
        if not token:
            return None
        return self.who_by_hash(token_hash(token))

    def who_by_hash(self, digest: str) -> tuple[str, str | None] | None:
        """`who` for a token known by its hash only (a course organizer's session)."""
        with db.read(self.ctx.engine) as conn:
            if store.credential_named(conn, digest) == "organizer":
                return ("organizer", None)
            team = store.team_of_token(conn, digest)
        return ("team", team[1]) if team is not None else None

    def overview(self) -> list[dict[str, Any]]:
        """Every team with its members, students (accounts) and number of submissions
        (organizer view)."""
        with db.read(self.ctx.engine) as conn:
            rows = store.overview(conn)
        return [{"team": r["name"], "created_at": r["created_at"], "baseline": r["baseline"],
                 "has_token": r["has_token"], "members": r["members"],
                 "students": r["students"], "submissions": r["submissions"]} for r in rows]
