"""Submitting to a board and reading it."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import (
    EXIT_REFUSED,
    console,
    err,
    escape,
    fmt,
    out,
    print_json,
    print_outcome,
)
from competition.interfaces.cli.root import app, board_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from competition.board.board import Board
    from competition.board.views import Outcome
    from competition.formats.files import Limits


@app.command()
def submit(
    paths: list[str] = typer.Argument(..., metavar="[DIR] FILE",
                                      help="A prepared competition and the file; with "
                                      "--server, the file alone."),
    team: str | None = typer.Option(None, help="Your team (created on its first "
                                    "submission); with --server the token says who you are."),
    message: str | None = typer.Option(None, help="A note to remember this submission by."),
    server: str | None = typer.Option(None, help="Submit to a running portal instead "
                                      "(e.g. http://127.0.0.1:8000)."),
    token: str | None = typer.Option(None, envvar="COMPETITION_TOKEN",
                                     help="Your team token (with --server)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Submit a file: kept, validated and scored under the rules; prints the public score.

    An invalid or failed submission exits with 2, with or without --json."""
    if server is not None:
        if len(paths) != 1 or not token:
            raise CompetitionError("with --server give the file alone and --token TOKEN "
                                   "(or COMPETITION_TOKEN)")
        from competition.formats.files import Limits
        from competition.interfaces.web.client import submit_remote

        with _as_file(Path(paths[0]), Limits(max_files=4096)) as path:
            body = submit_remote(server, token, path, message)
        status, shown = body.get("status"), body
        show_private = "private_score" in body
    else:
        if len(paths) != 2 or not team:
            raise CompetitionError("give DIR FILE and --team TEAM (or --server URL --token "
                                   "TOKEN FILE)")
        board = board_of(Path(paths[0]))
        with _as_file(Path(paths[1]), board.comp.limits) as path:
            outcome = board.submissions.submit(path, team, message)
        show_private = board.private_visible
        status, shown = outcome.status, outcome.as_json(show_private)
    if as_json:
        print_json(shown)
    else:
        print_outcome(shown, show_private)
    if status in ("invalid", "failed"):
        raise typer.Exit(EXIT_REFUSED)


@contextlib.contextmanager
def _as_file(path: Path, limits: Limits) -> Iterator[Path]:
    """A folder is submitted as its deterministic zip, named after it (the store keeps
    files); a file as it is."""
    if not path.is_dir():
        yield path
        return
    from competition.formats.folder_zip import zip_folder

    with tempfile.TemporaryDirectory() as tmp:
        yield zip_folder(path, Path(tmp) / f"{path.resolve().name}.zip", limits)


@app.command()
def retry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A failed submission."),
    team: str | None = typer.Option(None, help="The submission's team."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a failed submission again."""
    board = board_of(directory)
    outcome = board.submissions.retry(submission_id, team)
    shown = outcome.as_json(board.private_visible)
    if as_json:
        print_json(shown)
    else:
        print_outcome(shown, board.private_visible)
    if outcome.status in ("invalid", "failed"):
        raise typer.Exit(EXIT_REFUSED)


@app.command()
def jobs(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    watch: bool = typer.Option(False, "--watch", help="Keep going: wait for new jobs."),
    workers: int = typer.Option(2, min=1, help="Jobs scored at once (threads; each scores "
                                "in a child process)."),
    scorer: str = typer.Option("competition.board.scorer_process:ChildScorer", hidden=True,
                               help="The scorer class of the jobs (tests, benchmarks)."),
) -> None:
    """Score the queued jobs in this process, without a web server.

    It goes on until none is left to claim: among them those of a killed `submit` or serve
    process, once their leases (COMPETITION_LEASE_SECONDS, 60 s) have run out. --watch keeps
    going."""
    from competition.jobs.dispatcher import Dispatcher
    from competition.jobs.runners import ThreadRunner

    board = board_of(directory)
    runner = ThreadRunner(workers)
    dispatcher = Dispatcher(board, runner, scorer_spec=scorer)
    try:
        dispatcher.drain(watch=watch)
    finally:
        runner.close()
    out(f"{dispatcher.handed_out} job(s) run")
    held, until = dispatcher.queue.held_elsewhere()
    if held:
        out(f"{held} job(s) held by others; the last lease runs out at "
            f"{until.isoformat(timespec='seconds') if until else '?'}Z (run this again then)")


@app.command("submissions")
def list_submissions(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    team: str = typer.Option(..., help="The team whose submissions to list."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """A team's submissions: status, errors, scores, final selections."""
    from rich.table import Table

    board = board_of(directory)
    rows: list[Outcome] = board.submissions.of_team(team)
    show_private = board.private_visible
    if as_json:
        print_json([r.as_json(show_private) for r in rows])
        return
    table = Table("id", "submitted (UTC)", "file", "status", "public",
                  *(["private"] if show_private else []), "selected", "message", "error",
                  title=f"Submissions of {escape(team)}")
    for r in rows:  # a late one (made after the deadline) is marked: it is never ranked
        table.add_row(str(r.id), r.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
                      escape(r.file_name), r.status + (" (late)" if r.late else ""),
                      fmt(r.public_score),
                      *([fmt(r.private_score)] if show_private else []),
                      "yes" if r.selected else "", escape(r.message or ""),
                      escape(r.error or ""))
    out(table)


@app.command("select")
def select_final(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A scored submission of the team."),
    team: str = typer.Option(..., help="The team."),
    unselect: bool = typer.Option(False, help="Remove it from the final selections."),
) -> None:
    """Choose (or drop) a final selection for the private leaderboard."""
    board = board_of(directory)
    if unselect:
        board.selections.unselect(submission_id, team)
        out(f"submission {submission_id} is no longer a final selection of {escape(team)}")
        return
    chosen = board.selections.select(submission_id, team)
    out(f"final selections of {escape(team)}: {', '.join(map(str, chosen))} "
        f"(of {board.rules.final_selections})")


@app.command()
def leaderboard(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    private: bool = typer.Option(False, "--private", help="The private board (organizer view "
                                 "before the deadline)."),
    late: bool = typer.Option(False, "--late", help="The late board: submissions made after "
                              "the deadline, with their scores, never ranked."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The public board (best public score per team), the private one, or the late one."""
    from rich.table import Table

    from competition.board import leaderboard as boards

    if private and late:
        raise CompetitionError("give --private or --late, not both")
    board = board_of(directory)
    if late:
        _late_board(board, as_json)
        return
    if private and not board.private_visible:
        err("organizer view: the private board before the deadline; do not share it")
    entries = boards.private_board(board) if private else boards.public_board(board)
    if as_json:
        print_json([e.as_json() for e in entries])
        return
    title = ("Private" if private else "Public") + f" leaderboard: {escape(board.comp.name)}"
    columns = ["rank", "team", "score", "95% interval", "~leader", "entries", "last"]
    if private:
        columns[5:5] = ["public rank", "change"]
    # The task's item metrics (means over the board's items) and the mean rank, where given.
    labels = list(entries[0].metrics) if entries else []
    ranked = any(e.mean_rank is not None for e in entries)
    columns[3:3] = labels + (["mean rank"] if ranked else [])
    table = Table(*columns, title=title, caption="~leader: not significantly different from "
                  "the leader (paired bootstrap over test items)")
    for e in entries:
        interval = "-" if e.ci_low is None else f"{e.ci_low:.4f} .. {e.ci_high:.4f}"
        row = [str(e.rank), escape(e.team) + (" (baseline)" if e.baseline else ""),
               fmt(e.score), interval,
               "~" if e.indistinguishable_from_leader else "", str(e.entries),
               e.submitted_at.strftime("%Y-%m-%d %H:%M")]
        if private:
            change = "" if e.rank_change is None else f"{e.rank_change:+d}"
            row[5:5] = [str(e.public_rank or "-"), change]
        row[3:3] = [fmt(e.metrics.get(label)) for label in labels] + (
            [fmt(e.mean_rank)] if ranked else [])
        table.add_row(*row)
    out(table)


def _late_board(board: Board, as_json: bool) -> None:
    """The late board: every late submission, oldest first, unranked; the private scores
    where participants may see them (after the deadline, as every late submission is)."""
    from rich.table import Table

    from competition.board.late import late_board

    entries = late_board(board)
    show_private = board.private_visible
    if as_json:
        print_json([e.as_json(show_private) for e in entries])
        return
    table = Table("team", "submission", "submitted (UTC)", "public",
                  *(["private"] if show_private else []),
                  title=f"Late submissions (not ranked): {escape(board.comp.name)}")
    for e in entries:
        table.add_row(escape(e.team) + (" (baseline)" if e.baseline else ""),
                      str(e.submission_id), e.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
                      fmt(e.public_score), *([fmt(e.private_score)] if show_private else []))
    out(table)


@app.command()
def rescore(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Score every submission again with the current scorer and solution, atomically."""
    from rich.table import Table

    from competition.board.scoring import scorer_version

    board = board_of(directory)
    with console().status("Rescoring every submission..."):
        changes = board.rescoring.rescore()
    if as_json:
        print_json(changes)
        return
    version = scorer_version(board.comp.task)
    if not changes:
        out(f"rescored with {version}: nothing changed")
        return
    table = Table("id", "status", "public", "private", title=f"Changed by {version}")
    for c in changes:
        table.add_row(str(c["id"]), f"{c['old_status']} -> {c['new_status']}",
                      f"{fmt(c['old_public'])} -> {fmt(c['new_public'])}",
                      f"{fmt(c['old_private'])} -> {fmt(c['new_private'])}")
    out(table)
    for c in changes:  # valid now, but its day's slots were taken: it does not count
        if c.get("note"):
            out(f"submission {c['id']}: {escape(c['note'])}")
