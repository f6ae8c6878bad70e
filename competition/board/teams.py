"""Teams, their members and the hashed access tokens of teams and organizers."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from competition.board.context import BoardContext, RuleError
from competition.board.store import db
from competition.board.store.schema import credentials, members, submissions, teams


def token_hash(token: str) -> str:
    # Tokens are 192-bit random strings: a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(token.encode()).hexdigest()


class Teams:
    def __init__(self, ctx: BoardContext):
        self.ctx = ctx

    @staticmethod
    def id_of(conn: Connection, name: str) -> int | None:
        team_id: int | None = conn.execute(select(teams.c.id).where(teams.c.name == name)
                                           ).scalar()
        return team_id

    def ensure(self, name: str, now: datetime, baseline: bool = False) -> int:
        """The team's id, creating the team on first use (as a baseline of the organizers
        with `baseline`)."""
        if not name.strip():
            raise RuleError("the team name is empty")
        for _ in range(5):
            with db.write(self.ctx.engine) as conn:
                team_id = self.id_of(conn, name)
                if team_id is not None:
                    return team_id
                try:
                    key = conn.execute(insert(teams).values(
                        name=name, created_at=now, baseline=baseline)).inserted_primary_key
                    assert key is not None
                    return int(key[0])
                except IntegrityError:
                    pass  # created by a concurrent submission: read it back
        raise RuleError(f"could not create team {name!r}")

    def add(self, name: str, names: list[str]) -> list[str]:
        """Create a team (if new) and add members; returns all its members."""
        team_id = self.ensure(name, self.ctx.now())
        with db.write(self.ctx.engine) as conn:
            known: set[str] = set(conn.execute(select(members.c.name)
                                               .where(members.c.team_id == team_id)).scalars())
            new = [m for m in dict.fromkeys(names) if m.strip() and m not in known]
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
