"""Team forming (issue 28), as Kaggle InClass: students form their teams themselves, with
invitation codes, until the merger deadline, within the team size limit.

- `invite`: a student makes a code for their team (random, 144 bits, shown once, kept as a
  SHA-256 only; it admits once, for INVITATION_DAYS, unless the team revokes it first).
- `join`: a student presents a code and moves, alone, into its team (leaving their old team,
  and their submissions with it: submissions are the team's). The last student of a team
  with submissions (and no shared token) joining is a `merge`: the submissions come along,
  under the merge rule (a team without students left on the boards would be a second entry
  for one student, and joining would pass the merge rule).
- `merge`: a student presents a code and moves their WHOLE team into the code's team: every
  student, every submission and upload; the code is the other team's consent. Refused where
  the two teams together would be over the size limit, or would hold more submissions than
  one team could have made so far (Kaggle's rule: daily_limit x the days the competition has
  run, the first day counting as one). The merged team keeps the target team's name, token
  and final selections; the merged-away team is deleted (its selections, sessions and codes
  with it). A team with a shared token of its own (`team add`) is not merged away: that
  token would stop working (the organizer moves its students instead).
- `leave`: a student leaves a team of several for a new team of one named after them (as
  the roster import does; numbered where the name is taken, never with the student's id or
  email, which the boards would show everyone), their submissions staying with the old
  team.

Organizers' baseline teams are never joined or merged. From the merger deadline (or the
deadline, where none is set) nothing changes any more; the organizer's `team move`
(Accounts.move) still works. Every change runs in one transaction with both teams locked
(in id order, so two changes cannot deadlock on SQL servers; SQLite's write lock serialises
them anyway): the size limit cannot be passed by concurrent joins. The moved students'
browser sessions of their old team are deleted: a session acts for one team only.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from competition.board.context import BoardContext, Closed, LimitReached, RuleError
from competition.board.names import checked_name, name_key
from competition.board.rules import utc_day
from competition.board.store import db
from competition.board.store import invitations as store
from competition.board.store import teams as team_store
from competition.board.store.db import Connection
from competition.board.teams import Teams

INVITATION_DAYS = 7
CODE_BYTES = 18  # 144 random bits: 24 URL-safe characters
# Open codes per team: enough for any team, too few to fill the store.
MAX_OPEN_INVITATIONS = 20
# Codes a team may make per UTC day, revoked and used ones included: making and revoking
# codes in a loop would otherwise fill the store (and hold its write lock) all the same.
MAX_INVITATIONS_PER_DAY = 50


def code_hash(code: str) -> str:
    # Codes are 144-bit random strings: a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(b"team invitation\0" + code.strip().encode()).hexdigest()


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


class NotYours(RuleError):
    """An invitation that is not the asking student's team's (an API answers 404)."""


class UnknownCode(RuleError):
    """A code that is no invitation at all (a guess, or a typing error): the portal limits
    how many of these a student may try (routers/team.py)."""


class NotAStudent(RuleError):
    """A token that is not a student's own (a team's shared one): it forms no teams (403)."""


class TeamForming:
    def __init__(self, ctx: BoardContext, teams: Teams):
        self.ctx, self.teams = ctx, teams

    # --- what a student sees ----------------------------------------------------------------

    def limits(self) -> dict[str, Any]:
        """The rules of team forming and whether teams can still change."""
        rules, now = self.ctx.rules, self.ctx.now()
        return {"team_size_limit": rules.team_size_limit,
                "merger_deadline": rules.merger_deadline,
                "deadline": rules.deadline, "frozen": self.frozen(now) is not None,
                "invitation_days": INVITATION_DAYS}

    def view(self, credential: str) -> dict[str, Any]:
        """The student's team: team, members (names), open invitations (never their codes),
        and the limits."""
        with db.read(self.ctx.engine) as conn:
            me = _account(conn, credential)
            people = store.students(conn, me["team_id"])
            open_codes = store.open_of_team(conn, me["team_id"], self.ctx.now())
        return {"student": me["name"], "team": me["team"],
                "members": [p["name"] for p in people],
                "invitations": open_codes, **self.limits()}

    # --- changes ----------------------------------------------------------------------------

    def frozen(self, now: datetime) -> Closed | None:
        """Why teams can no longer change (the merger deadline, else the deadline, has
        passed), or None."""
        rules = self.ctx.rules
        cutoff = rules.merger_deadline or rules.deadline
        if cutoff is None or now < cutoff:
            return None
        which = "merger deadline" if rules.merger_deadline is not None else \
            "merger deadline (the competition's deadline: no merger_deadline is set)"
        return Closed(f"teams are frozen: the {which} was {cutoff.isoformat()}Z; no more "
                      "invitations, joins, merges or leaving (the organizer can still move "
                      "a student)")

    def _check_open(self, now: datetime) -> None:
        refusal = self.frozen(now)
        if refusal is not None:
            raise refusal

    def invite(self, credential: str) -> tuple[str, dict[str, Any]]:
        """A new invitation code for the student's team: (the code, shown once; its row:
        id, team, expires_at)."""
        now = self.ctx.now()
        self._check_open(now)
        code = new_code()
        with db.write(self.ctx.engine) as conn:
            me = _account(conn, credential)
            _not_baseline(me["baseline"], me["team"])
            lock_student(conn, me, me["team_id"])  # the counts below hold until the insert
            self._check_room(conn, me["team_id"], me["team"], 1)
            if len(store.open_of_team(conn, me["team_id"], now)) >= MAX_OPEN_INVITATIONS:
                raise RuleError(f"team {me['team']!r} has {MAX_OPEN_INVITATIONS} open "
                                "invitation codes: revoke one first")
            day, next_day = utc_day(now)
            if store.made_since(conn, me["team_id"], day) >= MAX_INVITATIONS_PER_DAY:
                raise LimitReached(f"team {me['team']!r} made {MAX_INVITATIONS_PER_DAY} "
                                   "invitation codes today (UTC), the most a team may: use "
                                   f"an open one, or make more from {next_day.isoformat()}Z")
            expires = now + timedelta(days=INVITATION_DAYS)
            invitation_id = store.insert_invitation(conn, me["team_id"], code_hash(code),
                                                    me["id"], now, expires)
        return code, {"id": invitation_id, "team": me["team"], "expires_at": expires}

    def revoke(self, credential: str, invitation_id: int) -> None:
        """Revoke an open invitation of the student's team (allowed after the merger
        deadline too: it only takes a possibility away)."""
        with db.write(self.ctx.engine) as conn:
            me = _account(conn, credential)
            if not store.revoke(conn, invitation_id, me["team_id"], self.ctx.now()):
                raise NotYours(f"team {me['team']!r} has no open invitation {invitation_id} "
                               "(used, revoked or never its own)")

    def join(self, credential: str, code: str) -> str:
        """Move the student alone into the code's team; the team's name."""
        return self._change(credential, code, whole_team=False)

    def merge(self, credential: str, code: str) -> str:
        """Move the student's whole team into the code's team; the team's name."""
        return self._change(credential, code, whole_team=True)

    def _change(self, credential: str, code: str, *, whole_team: bool) -> str:
        now = self.ctx.now()
        self._check_open(now)
        with db.write(self.ctx.engine) as conn:
            me = _account(conn, credential)
            invitation = _usable(conn, code, now)
            old, new = me["team_id"], int(invitation["team_id"])
            if old == new:
                raise RuleError(f"this code is an invitation to your own team "
                                f"{me['team']!r}")
            _not_baseline(invitation["baseline"], invitation["team"])
            _not_baseline(me["baseline"], me["team"])
            lock_student(conn, me, old, new)
            if whole_team and team_store.has_token(conn, old):
                raise RuleError(f"team {me['team']!r} has a shared team token (`competition "
                                "team add`), which would stop working: it cannot be merged "
                                "away (join alone, or ask the organizer to move its students)")
            # The last student of a team with submissions joining another is a merge: else
            # the team stayed on the boards without students, beside the one the student
            # joined (two teams' probes, two entries on the private board for one student),
            # and the merge rule below was passed by joining instead of merging.
            whole_team = whole_team or _last_with_submissions(conn, old)
            moving = store.students(conn, old) if whole_team else [me]
            self._check_room(conn, new, invitation["team"], len(moving))
            if whole_team:
                self._check_merge(conn, old, me["team"], new, invitation["team"], now)
            if not store.use(conn, int(invitation["id"]), me["id"], now):
                raise RuleError("this invitation code was used or revoked meanwhile: ask "
                                "the team for a new one")
            move_students(conn, [m["id"] for m in moving], new)
            if whole_team:
                store.move_team_rows(conn, old, new)
                team_store.delete_team(conn, old)
            else:
                tidy_left_team(conn, old, now)
            return str(invitation["team"])

    def leave(self, credential: str) -> str:
        """Move the student out of a team of several into a new team of one, named after
        them (or, where that name is taken, numbered: `Ana 2`); its name."""
        now = self.ctx.now()
        self._check_open(now)
        with db.write(self.ctx.engine) as conn:
            me = _account(conn, credential)
            lock_student(conn, me, me["team_id"])
            if len(store.students(conn, me["team_id"])) < 2:
                raise RuleError(f"you are the only student of team {me['team']!r}: there is "
                                "no team to leave")
            name = _free_name(conn, me)
            team_id = team_store.insert_team(conn, name, name_key(name), now, False)
            move_students(conn, [me["id"]], team_id)
            return name

    # --- checks -----------------------------------------------------------------------------

    def _check_room(self, conn: Connection, team_id: int, team: str, coming: int) -> None:
        check_size(conn, self.ctx.rules.team_size_limit, team_id, team, coming)

    def _check_merge(self, conn: Connection, old: int, old_name: str, new: int, new_name: str,
                     now: datetime) -> None:
        """Kaggle's rule: the merged team may hold no more counted submissions than one team
        could have made by now (daily_limit x days run, today included)."""
        rules = self.ctx.rules
        begun = rules.start or store.first_submission(conn) or now
        days = max(1, (utc_day(now)[0] - utc_day(begun)[0]).days + 1)
        allowed = rules.daily_limit * days
        together = store.counted(conn, old) + store.counted(conn, new)
        if together > allowed:
            raise RuleError(
                f"teams {old_name!r} and {new_name!r} have made {together} counted submissions "
                f"together; a team could have made at most {allowed} so far ({days} day(s) x "
                f"the daily limit of {rules.daily_limit}), so they cannot merge (yet: the "
                "allowance grows by the daily limit each day)")


def check_size(conn: Connection, limit: int | None, team_id: int, team: str,
               coming: int) -> None:
    """Refuse `coming` more students for a team over the size limit (the team locked)."""
    if limit is None:
        return
    there = len(store.students(conn, team_id))
    if there + coming > limit:
        raise RuleError(f"team {team!r} has {there} student(s); with {coming} more it would "
                        f"be over the team size limit of {limit}")


def move_students(conn: Connection, account_ids: list[int], team_id: int) -> None:
    """Students into a team (the teams locked by the caller); their browser sessions of any
    other team end (deleted)."""
    credentials = store.tokens_of(conn, account_ids)
    store.move_accounts(conn, account_ids, team_id)
    store.end_sessions(conn, credentials, team_id)


def lock_teams(conn: Connection, *team_ids: int) -> None:
    """Row locks on the teams, in id order (two changes locking the same teams cannot
    deadlock); SQLite's write lock already serialises every writer."""
    for team_id in sorted(set(team_ids)):
        team_store.lock(conn, team_id)


def _account(conn: Connection, credential: str) -> dict[str, Any]:
    me = store.account_of_token(conn, credential)
    if me is None:
        raise NotAStudent("team forming is for students signed in with their own token (a "
                        "team's shared token or the organizer's cannot form teams)")
    return me


def _usable(conn: Connection, code: str, now: datetime) -> dict[str, Any]:
    """The invitation of `code`, refused with the reason where it no longer admits."""
    given = code.strip()
    found = store.by_code(conn, code_hash(given)) if 0 < len(given) <= 200 else None
    if found is None:
        raise UnknownCode("no such invitation code: check it, or ask the team for a new one")
    if found["revoked_at"] is not None:
        raise RuleError("this invitation code was revoked by its team")
    if found["used_at"] is not None:
        raise RuleError("this invitation code was used already (a code admits once): ask "
                        "the team for a new one")
    if found["expires_at"] <= now:
        raise RuleError(f"this invitation code expired at {found['expires_at'].isoformat()}Z:"
                        " ask the team for a new one")
    return found


def _not_baseline(baseline: Any, team: str) -> None:
    if baseline:
        raise RuleError(f"{team!r} is a baseline team of the organizers: it cannot be "
                        "joined, merged or left")


def lock_student(conn: Connection, me: dict[str, Any], *team_ids: int) -> None:
    """Lock the teams, then check that the student is still where they were read (a
    concurrent change that moved them first wins; this one is refused, nothing changed)."""
    lock_teams(conn, *team_ids)
    if store.team_of_account(conn, me["id"]) != me["team_id"]:
        raise RuleError("your team changed meanwhile: reload and try again")


def _last_with_submissions(conn: Connection, team_id: int) -> bool:
    """The team has one student, submissions or uploads, and no shared token of its own
    (a team the organizer made with `team add` stays, its token acting for it)."""
    kept = team_store.kept_rows(conn, team_id)
    return kept["students"] == 1 and bool(kept["submissions"] or kept["uploads"]) and \
        not team_store.has_token(conn, team_id)


def tidy_left_team(conn: Connection, team_id: int, now: datetime,
                   drop_empty: bool = True) -> None:
    """A team some students just left. One left without students keeps its submissions but
    its open codes are revoked (nobody is left to have invited anyone into them). With
    `drop_empty`, one left with nothing of its own (no students, submissions, uploads, shared
    token or members) is deleted, as Kaggle does, so the board is not littered with empty
    teams; the organizer's moves leave that to `team remove`."""
    kept = team_store.kept_rows(conn, team_id)
    if kept["students"]:
        return
    if drop_empty and not any(kept.values()) and not team_store.has_token(conn, team_id) \
            and not team_store.member_names(conn, team_id):
        team_store.delete_team(conn, team_id)
        return
    store.revoke_all(conn, team_id, now)


def _free_name(conn: Connection, me: dict[str, Any]) -> str:
    """A name for a team of one: the student's, else numbered; a name that looks like
    another team's counts as taken. Never with the student's id or email: team names are
    shown to every participant on the boards."""
    name = me["name"].strip()
    candidates = [name] + [f"{name} {k}" for k in range(2, 50)]
    for candidate in candidates:
        try:
            candidate = checked_name(candidate)
        except RuleError:
            continue  # e.g. too long with the id
        if not team_store.named(conn, candidate, name_key(candidate)):
            return candidate
    raise RuleError(f"no free team name for {name!r}: ask the organizer")
