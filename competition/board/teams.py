"""Teams, their members and the hashed access tokens of teams and organizers."""

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
                    team_id = self.id_of(conn, given)
                    if team_id is not None:
                        return team_id
                    return store.insert_team(conn, given, name_key(given), now, baseline)
            except db.Conflict:
                continue  # created by a concurrent submission: read it back
        raise RuleError(f"could not create team {given!r}")

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
        team_id = self.ensure(name, self.ctx.now())
        token = secrets.token_urlsafe(24)
        with db.write(self.ctx.engine) as conn:
            store.set_token(conn, team_id, token_hash(token))
        return token

    def issue_organizer_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with db.write(self.ctx.engine) as conn:
            store.set_credential(conn, "organizer", token_hash(token))
        return token

    def who(self, token: str | None) -> tuple[str, str | None] | None:
        """("organizer", None) or ("team", name) for a valid token, else None."""
        if not token:
            return None
        digest = token_hash(token)
        with db.read(self.ctx.engine) as conn:
            if store.credential_named(conn, digest) == "organizer":
                return ("organizer", None)
            team = store.by_token(conn, digest)
        return ("team", team[1]) if team is not None else None

    def overview(self) -> list[dict[str, Any]]:
        """Every team with its members and number of submissions (organizer view)."""
        with db.read(self.ctx.engine) as conn:
            rows = store.overview(conn)
        return [{"team": r["name"], "created_at": r["created_at"], "baseline": r["baseline"],
                 "has_token": r["has_token"], "members": r["members"],
                 "submissions": r["submissions"]} for r in rows]
