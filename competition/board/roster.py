"""A course roster (CSV) read into students: pure, no store.

Columns (a header line, any case, any order; other columns are ignored): `name`, and `email`
or `id` (or both; `student_id` and `student id` are read as `id`), optionally `team`. Every
row needs a name and an id or an email; the ids and emails of a roster are unique (emails
compared lower-cased, and kept so). Every problem is reported at once, each as
`FILE:LINE: FIELD: what is wrong`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from competition.board.context import RuleError
from competition.board.names import checked_name, name_key

MAX_STUDENTS = 5000
MAX_ID_CHARS = 100
MAX_EMAIL_CHARS = 254
MAX_SHOWN_PROBLEMS = 20
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
ALIASES = {"name": "name", "email": "email", "e-mail": "email", "id": "id",
           "student_id": "id", "student id": "id", "studentid": "id", "team": "team"}


@dataclass(frozen=True)
class Student:
    line: int
    name: str
    email: str | None
    student_id: str | None
    team: str | None

    @property
    def label(self) -> str:
        """How messages name the student: the name with the id or email."""
        return f"{self.name} ({self.student_id or self.email})"


class RosterError(RuleError):
    """A roster that cannot be imported: every problem found, each with file, line, field."""


def read_roster(text: str, source: str) -> list[Student]:
    """The roster's students in file order, or a RosterError listing every problem."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    rows = _rows(reader, source)
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header):
        raise RosterError(f"{source}:1: the roster is empty: a header line naming the columns "
                          "`name`, `email` or `id`, and optionally `team`, is needed")
    columns = _columns(header, source)
    students: list[Student] = []
    problems: list[str] = []
    first_line: dict[tuple[str, str], int] = {}
    team_spelling: dict[str, tuple[str, int]] = {}
    line = reader.line_num
    for row in rows:
        start, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(students) >= MAX_STUDENTS:
            problems.append(f"{source}:{start}: more than {MAX_STUDENTS} students in one "
                            "roster; split it")
            break
        if len(row) > len(header):
            problems.append(f"{source}:{start}: {len(row)} cells, but the header names "
                            f"{len(header)} columns")
            continue
        cells = {field: row[k].strip() if k < len(row) else ""
                 for field, k in columns.items()}
        found = _student(cells, start, source, problems)
        if found is None:
            continue
        for field, value in (("id", found.student_id), ("email", found.email)):
            if value is not None:
                earlier = first_line.setdefault((field, value), start)
                if earlier != start:
                    problems.append(f"{source}:{start}: {field}: {value!r} is also on line "
                                    f"{earlier}")
        if found.team is not None:
            spelt, at = team_spelling.setdefault(name_key(found.team), (found.team, start))
            if spelt != found.team:
                problems.append(f"{source}:{start}: team: {found.team!r} looks like {spelt!r} "
                                f"(line {at}): spell one team one way")
        students.append(found)
    if not students and not problems:
        problems.append(f"{source}: no students: every line after the header is empty")
    if problems:
        shown = problems[:MAX_SHOWN_PROBLEMS]
        more = len(problems) - len(shown)
        raise RosterError("the roster was not imported (nothing changed):\n" + "\n".join(shown)
                          + (f"\n... and {more} more" if more else ""))
    return students


def _rows(reader: Any, source: str) -> Iterator[list[str]]:
    """The reader's rows; a line the csv module cannot read (a cell over its size limit,
    say) is a RosterError naming the line, not a crash."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise RosterError(f"the roster was not imported (nothing changed):\n{source}:"
                              f"{reader.line_num}: not readable as CSV ({e})") from None
        yield row


def _columns(header: list[str], source: str) -> dict[str, int]:
    """Where each known field is: {field: column index}."""
    columns: dict[str, int] = {}
    for k, cell in enumerate(header):
        field = ALIASES.get(cell.strip().lower())
        if field is None:
            continue
        if field in columns:
            raise RosterError(f"{source}:1: {field}: two columns of the header are read as "
                              f"{field!r} ({header[columns[field]]!r} and {cell!r})")
        columns[field] = k
    found = ", ".join(repr(c) for c in header) or "nothing"
    if "name" not in columns:
        raise RosterError(f"{source}:1: name: the header has no `name` column (it has "
                          f"{found})")
    if "email" not in columns and "id" not in columns:
        raise RosterError(f"{source}:1: the header has neither an `email` nor an `id` column "
                          f"(it has {found}): a student is known by one of them")
    return columns


def _student(cells: dict[str, str], line: int, source: str,
             problems: list[str]) -> Student | None:
    """The row's student, or None with its problems appended."""
    before = len(problems)

    def check(field: str, what: str) -> str | None:
        value = cells.get(field, "")
        if not value:
            return None
        try:
            return checked_name(value, what)
        except RuleError as e:
            problems.append(f"{source}:{line}: {field}: {e}")
            return None

    name = check("name", "student name")
    if name is None and not cells.get("name"):
        problems.append(f"{source}:{line}: name: empty; every student needs a name")
    student_id = check("id", "student id")
    if student_id is not None and len(student_id) > MAX_ID_CHARS:
        problems.append(f"{source}:{line}: id: {len(student_id)} characters long; at most "
                        f"{MAX_ID_CHARS} are allowed")
    email = cells.get("email", "").lower() or None
    if email is not None and (len(email) > MAX_EMAIL_CHARS or not EMAIL.fullmatch(email)):
        problems.append(f"{source}:{line}: email: {email[:100]!r} is not an email address")
    if student_id is None and email is None and not cells.get("id"):
        problems.append(f"{source}:{line}: id: a student needs an id or an email (both are "
                        "empty)")
    team = check("team", "team name")
    if len(problems) > before or name is None:
        return None
    return Student(line, name, email, student_id, team)
