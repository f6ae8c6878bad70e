"""What the portal hands out as files: safe download names, and the organizer's CSV exports
(spreadsheet-safe, through competition.formats.csv_safe)."""

from __future__ import annotations

from competition.board import leaderboard
from competition.board.board import Board
from competition.formats.csv_safe import csv_text


def safe_file_name(name: str) -> str:
    # The name goes into a Content-Disposition header: no quotes, separators or controls.
    return "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"


def grades_csv(board: Board) -> str:
    """Each participating team's final private score and rank among participants
    (the organizers' baselines are left out, and so are their ranks)."""
    public_order = [e.team for e in leaderboard.public_board(board) if not e.baseline]
    students = [e for e in leaderboard.private_board(board) if not e.baseline]
    return csv_text(["rank", "team", "private_score", "submission_id", "public_rank"], [
        [rank, e.team, e.score, e.submission_id,
         public_order.index(e.team) + 1 if e.team in public_order else None]
        for rank, e in enumerate(students, 1)])


def submissions_csv(board: Board) -> str:
    """Every submission with its team, scores, message and error (organizers)."""
    columns = ["id", "team", "submitted_at", "file_name", "status", "public_score",
               "private_score", "message", "error"]
    return csv_text(columns, [
        [r["id"], r["team"], r["submitted_at"].isoformat() + "Z", r["file_name"],
         r["status"], r["public_score"], r["private_score"], r["message"], r["error"]]
        for r in board.submissions.all()])
