"""What the portal hands out as files: safe download names, and the organizer's CSV exports
(spreadsheet-safe, through competition.formats.csv_safe)."""

from __future__ import annotations

from competition.board import grading, leaderboard
from competition.board.board import Board
from competition.formats.csv_safe import csv_text


def safe_file_name(name: str) -> str:
    # The name goes into a Content-Disposition header: no quotes, separators or controls.
    return "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"


GRADE_COLUMNS = ["rank", "team", "private_score", "submission_id", "public_rank", "name",
                 "student_id", "email", "grade"]


def grade_rows(board: Board) -> list[list[object]]:
    """One row per student (GRADE_COLUMNS): the team's final private score and rank among
    participants (the organizers' baselines are left out, and so are their ranks), with the
    student's name, id and email, and the grade rule's outcome (competition.yaml `grading:`;
    empty without one). Ranked teams first, by rank; then the teams with students and no
    private score yet (rank and score empty, grade `missing`). A ranked team with nobody in
    it still has its row (name empty); students of a team are ordered by name."""
    board_rows = leaderboard.private_board(board)
    public_order = [e.team for e in leaderboard.public_board(board) if not e.baseline]
    ranked = [e for e in board_rows if not e.baseline]
    people = board.accounts.people_by_team()
    baselines = {t["team"] for t in board.teams.overview() if t["baseline"]}
    rule = board.comp.config.grading
    grade = {} if rule is None else grading.grades(
        rule, [(e.team, e.score) for e in ranked],
        {e.team: e.score for e in board_rows if e.baseline}, board.rules.higher_is_better)
    missing = "" if rule is None else rule.missing
    nobody = [{"name": None, "student_id": None, "email": None}]
    rows: list[list[object]] = []
    for rank, e in enumerate(ranked, 1):
        public_rank = public_order.index(e.team) + 1 if e.team in public_order else None
        rows += [[rank, e.team, e.score, e.submission_id, public_rank, p["name"],
                  p["student_id"], p["email"], grade.get(e.team, "")]
                 for p in people.get(e.team) or nobody]
    done = {e.team for e in ranked} | baselines
    for team in sorted(set(people) - done):
        rows += [[None, team, None, None, None, p["name"], p["student_id"], p["email"], missing]
                 for p in people[team]]
    return rows


def grades_csv(board: Board) -> str:
    """The grades export (grade_rows) as spreadsheet-safe CSV: the portal's download and
    `competition grades`."""
    return csv_text(GRADE_COLUMNS, grade_rows(board))


def submissions_csv(board: Board) -> str:
    """Every submission with its team, scores, message and error (organizers)."""
    columns = ["id", "team", "submitted_at", "file_name", "status", "public_score",
               "private_score", "message", "error"]
    return csv_text(columns, [
        [r["id"], r["team"], r["submitted_at"].isoformat() + "Z", r["file_name"],
         r["status"], r["public_score"], r["private_score"], r["message"], r["error"]]
        for r in board.submissions.all()])
