"""The portal's state (one competition and its board) and the dependencies that say who is
asking. Authentication: a team token or the organizer token, as `Authorization: Bearer TOKEN`
(API) or a cookie set by the login form (pages)."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, UploadFile
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.context import Closed, LimitReached
from competition.board.prepared import PreparedCompetition
from competition.board.scorer_process import ChildScorer
from competition.board.views import Entry, Outcome
from competition.errors import CompetitionError

COOKIE = "competition_token"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class Viewer(BaseModel):
    role: str  # "team" or "organizer"
    team: str | None = None


class Portal:
    """One competition served: its board, its public files and its description."""

    def __init__(self, directory: Path | str, store_url: str | None = None):
        self.comp = PreparedCompetition.open(directory)
        self.board = Board(self.comp, url=store_url, scorer=ChildScorer("forkserver"))
        self.public_root = self.comp.public_dir.resolve()

    def public_files(self) -> list[str]:
        return sorted(p.relative_to(self.public_root).as_posix()
                      for p in self.public_root.rglob("*") if p.is_file() and not p.is_symlink())

    def public_file(self, path: str) -> Path | None:
        """A file under public/, or None (nothing outside it, no links)."""
        if "\x00" in path or len(path) > 1000:
            return None
        target = (self.public_root / path).resolve()
        if not target.is_relative_to(self.public_root) or not target.is_file():
            return None
        return target

    def board_entries(self, private: bool) -> list[Entry]:
        return leaderboard.private_board(self.board) if private else \
            leaderboard.public_board(self.board)

    def may_see_private(self, viewer: Viewer | None) -> bool:
        return self.board.private_visible or (viewer is not None and viewer.role == "organizer")

    def outcome_json(self, outcome: Outcome, viewer: Viewer | None) -> dict[str, Any]:
        return outcome.as_json(self.may_see_private(viewer))

    def grades_csv(self) -> str:
        """Each participating team's final private score and rank among participants
        (the organizers' baselines are left out, and so are their ranks)."""
        public_order = [e.team for e in leaderboard.public_board(self.board) if not e.baseline]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "team", "private_score", "submission_id", "public_rank"])
        students = [e for e in leaderboard.private_board(self.board) if not e.baseline]
        for rank, e in enumerate(students, 1):
            public_rank = public_order.index(e.team) + 1 if e.team in public_order else None
            writer.writerow([rank, e.team, e.score, e.submission_id, public_rank])
        return buffer.getvalue()

    async def read_upload(self, upload: UploadFile) -> bytes:
        limit = self.comp.max_submission_bytes
        chunks, size = [], 0
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the file is over the size limit of "
                                         f"{limit / 1e6:.0f} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    def submit_bytes(self, data: bytes, file_name: str, team: str,
                     message: str | None) -> Outcome:
        """Store-side submission of uploaded bytes (the store reads files from disk)."""
        safe_name = Path(file_name or "submission").name[:200] or "submission"
        if safe_name in (".", ".."):
            safe_name = "submission"
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / safe_name
            path.write_bytes(data)
            return self.board.submissions.submit(path, team, message or None)


def refusal_status(error: CompetitionError) -> int:
    if isinstance(error, LimitReached):
        return 429
    if isinstance(error, Closed):
        return 403
    return 400


def portal(request: Request) -> Portal:
    found: Portal = request.app.state.portal
    return found


def viewer(request: Request) -> Viewer | None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else \
        request.cookies.get(COOKIE)
    who = portal(request).board.teams.who(token)
    return None if who is None else Viewer(role=who[0], team=who[1])


def signed_in(request: Request) -> Viewer:
    v = viewer(request)
    if v is None:
        raise HTTPException(401, "a valid team or organizer token is needed")
    return v


def team_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if v.role != "team":
        raise HTTPException(403, "this action belongs to a team (use a team token)")
    return v


def organizer_only(v: Annotated[Viewer, Depends(signed_in)]) -> Viewer:
    if v.role != "organizer":
        raise HTTPException(403, "organizers only")
    return v


PortalDep = Annotated[Portal, Depends(portal)]
SignedIn = Annotated[Viewer, Depends(signed_in)]
TeamOnly = Annotated[Viewer, Depends(team_only)]
OrganizerOnly = Annotated[Viewer, Depends(organizer_only)]


def page(request: Request, name: str, status: int = 200, **context: Any) -> Any:
    """A server-rendered page with what every page shows."""
    p = portal(request)
    return TEMPLATES.TemplateResponse(request, name, {
        "comp": p.comp, "viewer": viewer(request), "rules": p.board.rules,
        "deadline_passed": p.board.private_visible, **context}, status_code=status)


def safe_file_name(name: str) -> str:
    return "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"
