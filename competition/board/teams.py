"""Teams, their members and the hashed access tokens of teams and organizers."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from competition.board.context import BoardContext, RuleError
from competition.board.names import checked_name, folded, name_key
from competition.board.store import db
from competition.board.store.schema import credentials, members, submissions, teams


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
        rows = conn.execute(select(teams.c.id, teams.c.name).where(
            (teams.c.name_key == name_key(given)) | (teams.c.name == given))).all()
        for row in rows:
            if row.name.strip() == given:
                return int(row.id)
        if rows:
            raise _lookalike(given, rows[0].name)
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
                    key = conn.execute(insert(teams).values(
                        name=given, name_key=name_key(given), created_at=now,
                        baseline=baseline)).inserted_primary_key
                    assert key is not None
                    return int(key[0])
            except IntegrityError:
                continue  # created by a concurrent submission: read it back
        raise RuleError(f"could not create team {given!r}")

    def sync_keys(self) -> None:
        """Give every team the key of its name (stores made before keys were kept, or kept
        with an older folding). Teams that already looked alike keep working by their exact
        names: the later one's key is made unique with its id."""
        with db.read(self.ctx.engine) as conn:
            rows = conn.execute(select(teams.c.id, teams.c.name, teams.c.name_key)
                                .order_by(teams.c.id)).all()
        wanted: dict[int, str] = {}
        taken: set[str] = set()
        for row in rows:
            key = name_key(row.name)
            if key in taken:
                key = hashlib.sha256(f"{folded(row.name)}\x00team {row.id}".encode()
                                     ).hexdigest()
            taken.add(key)
            if key != row.name_key:
                wanted[row.id] = key
        if not wanted:
            return
        with db.write(self.ctx.engine) as conn:
            # Cleared first: a key may move from one team to another within the change.
            conn.execute(update(teams).where(teams.c.id.in_(wanted)).values(name_key=None))
            for team_id, key in wanted.items():
                conn.execute(update(teams).where(teams.c.id == team_id).values(name_key=key))

    def add(self, name: str, names: list[str]) -> list[str]:
        """Create a team (if new) and add members; returns all its members."""
        given = [checked_name(m, "member name") for m in names if m.strip()]
        team_id = self.ensure(name, self.ctx.now())
        with db.write(self.ctx.engine) as conn:
            known: set[str] = set(conn.execute(select(members.c.name)
                                               .where(members.c.team_id == team_id)).scalars())
            new = [m for m in dict.fromkeys(given) if m not in known]
            if new:
                conn.execute(insert(members), [{"team_id": team_id, "name": m} for m in new])
        return sorted(known | set(new))

    def issue_token(self, name: str) -> str:
        """A new access token for the team (replacing any earlier one); only its hash is kept."""
        team_id = self.ensure(name, self.ctx.now())
        token = secrets.token_urlsafe(24)
        with db.write(self.ctx.engine) as conn:
            conn.execute(update(teams).where(teams.c.id == team_id)
                         .values(token_sha256=token_hash(token)))
        return token

    def issue_organizer_token(self) -> str:
        token = secrets.token_urlsafe(24)
        with db.write(self.ctx.engine) as conn:
            conn.execute(credentials.delete().where(credentials.c.name == "organizer"))
            conn.execute(insert(credentials).values(name="organizer",
                                                    token_sha256=token_hash(token)))
        return token

    def who(self, token: str | None) -> tuple[str, str | None] | None:
        """("organizer", None) or ("team", name) for a valid token, else None."""
        if not token:
            return None
        digest = token_hash(token)
        with db.read(self.ctx.engine) as conn:
            if conn.execute(select(credentials.c.name).where(
                    credentials.c.token_sha256 == digest)).scalar() == "organizer":
                return ("organizer", None)
            name = conn.execute(select(teams.c.name).where(teams.c.token_sha256 == digest)
                                ).scalar()
        return ("team", name) if name is not None else None

    def overview(self) -> list[dict[str, Any]]:
        """Every team with its members and number of submissions (organizer view)."""
        with db.read(self.ctx.engine) as conn:
            rows = conn.execute(select(teams.c.id, teams.c.name, teams.c.created_at,
                                       teams.c.baseline,
                                       teams.c.token_sha256.is_not(None).label("has_token"))
                                .order_by(teams.c.name)).mappings().all()
            names: dict[int, list[str]] = {}
            for row in conn.execute(select(members.c.team_id, members.c.name)):
                names.setdefault(row.team_id, []).append(row.name)
            counts = {row[0]: row[1] for row in conn.execute(
                select(submissions.c.team_id, func.count()).group_by(submissions.c.team_id))}
        return [{"team": r["name"], "created_at": r["created_at"],
                 "baseline": bool(r["baseline"]), "has_token": bool(r["has_token"]),
                 "members": sorted(names.get(r["id"], [])),
                 "submissions": counts.get(r["id"], 0)} for r in rows]
