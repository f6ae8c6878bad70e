"""One roster imported into several competitions of a course: each student gets one token
that is valid in every one of them (the same SHA-256 stored in each store).

The token of a student the course knows already is kept: a student with an account in one of
the competitions gets, in the others, accounts with that account's token hash (the student
already has the token; only students new to every competition get a new token, on the sheet).
A student whose accounts hold different tokens (imported one competition at a time before)
keeps them, and is reported.

All or nothing: the imports run in nested transactions, the sheet written innermost, so any
competition's refusal, or a sheet that cannot be written, rolls every store back. (Commits
then go innermost first: a store failing at its own commit after the others committed is the
one gap, as with any set of separate databases; re-importing the same roster repairs it,
since existing tokens are reused.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from competition.board.accounts import ImportReport, Issued
from competition.board.board import Board
from competition.board.roster import Student
from competition.board.teams import new_token, token_hash


@dataclass
class CoursePlan:
    """Each student's token hash for new accounts, and the tokens made new (by line)."""

    hashes: dict[int, str | None] = field(default_factory=dict)
    new: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def plan_tokens(boards: list[Board], names: list[str], students: list[Student]) -> CoursePlan:
    plan = CoursePlan()
    known = [b.accounts.known_tokens(students) for b in boards]
    for k, s in enumerate(students):
        where = [(name, found[k]) for name, found in zip(names, known, strict=True)
                 if found[k][0]]
        hashes = {h for _, (_, h) in where if h is not None}
        if not where:
            token = new_token()
            plan.new[s.line], plan.hashes[s.line] = token, token_hash(token)
            continue
        # Known somewhere: new accounts take its token (the first competition's that has
        # one, in the order given); one revoked everywhere stays without.
        plan.hashes[s.line] = next((h for _, (_, h) in where if h is not None), None)
        if len(hashes) > 1:
            plan.notes.append(f"{s.label} has different tokens in " + ", ".join(
                name for name, (_, h) in where if h is not None) + " (imported one at a time "
                "before); each keeps its own (`competition account reissue` in each gives new "
                "ones)")
        elif not hashes and len(where) < len(boards):
            plan.notes.append(f"{s.label}: token revoked in " + ", ".join(
                name for name, _ in where) + "; the new accounts get none either "
                "(`competition account reissue`)")
    return plan


def import_course_roster(boards: list[Board], names: list[str], students: list[Student],
                         source: str, keep_sheet: Callable[[list[Issued]], None]
                         ) -> tuple[list[ImportReport], CoursePlan]:
    """Import `students` into every board (named `names` in messages), all or nothing; the
    sheet gets the students new to the whole course, once each."""
    plan = plan_tokens(boards, names, students)
    reports: dict[int, ImportReport] = {}

    def token_of(s: Student) -> tuple[str | None, str | None]:
        return plan.hashes[s.line], plan.new.get(s.line)

    def into(k: int, first: list[Issued]) -> None:
        # Board k's transaction stays open while the next boards import; the sheet (the
        # first board's new accounts: the students new to the whole course, with the team
        # names as stored) is written inside the last one.
        if k == len(boards):
            keep_sheet(first)
            return
        reports[k] = boards[k].accounts.import_roster(
            students, source, lambda issued: into(k + 1, issued if k == 0 else first),
            token_of)

    into(0, [])
    return [reports[k] for k in range(len(boards))], plan
