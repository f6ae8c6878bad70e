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
from competition.interfaces.cli.remote import connect, remote_server, server_option, token_option
from competition.interfaces.cli.root import app, board_of
from competition.interfaces.cli.tables import Row, board_table, late_table, submissions_table

if TYPE_CHECKING:
    from collections.abc import Iterator

    from competition.formats.files import Limits


@app.command()
def submit(
    paths: list[str] = typer.Argument(..., metavar="[DIR] FILE",
                                      help="A prepared competition and the file; with "
                                      "--server, the file alone."),
    team: str | None = typer.Option(None, help="Your team (created on its first "
                                    "submission); with --server the token says who you are."),
    message: str | None = typer.Option(None, help="A note to remember this submission by."),
    server: str | None = server_option(),
    token: str | None = token_option(),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Submit a file: kept, validated and scored under the rules; prints the public score.

    An invalid or failed submission exits with 2, with or without --json."""
    url = remote_server(len(paths) == 2, server)
    if url is not None:
        if len(paths) != 1:
            raise CompetitionError("with --server give the file alone")
        from competition.formats.files import Limits
        from competition.interfaces.web.client import submit_remote

        remote = connect(url, token)
        with _as_file(Path(paths[0]), Limits(max_files=4096)) as path:
            body = submit_remote(remote, path, message)
        status, shown = body.get("status"), body
        show_private = "private_score" in body
    else:
        if not team:
            raise CompetitionError("give DIR FILE and --team TEAM (or --server URL FILE)")
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
    directory: Path | None = typer.Argument(None, help="A prepared competition (or "
                                            "--server)."),
    team: str | None = typer.Option(None, help="The team whose submissions to list (with "
                                    "DIR; with --server the token says who you are)."),
    server: str | None = server_option(),
    token: str | None = token_option(),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """A team's submissions: status, errors, scores, final selections."""
    url = remote_server(directory is not None, server)
    if url is not None:
        rows = connect(url, token).rows("/api/submissions")
        team = str(rows[0]["team"]) if rows else "your team"
    else:
        if directory is None or not team:
            raise CompetitionError("give DIR and --team TEAM (or --server URL)")
        board = board_of(directory)
        rows = [o.as_json(board.private_visible) for o in board.submissions.of_team(team)]
    if as_json:
        print_json(rows)
    else:
        submissions_table(rows, team)


@app.command("grades")
def grades(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    out_file: Path | None = typer.Option(None, "--out", help="Write it to this file "
                                         "(default: print it)."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list, one object per "
                                 "student, instead of CSV."),
) -> None:
    """The grades export: one row per student, with the team's private score and rank and
    the grade rule's outcome (competition.yaml `grading:`), as the organizer's page gives it."""
    import json
    import sys

    from competition.interfaces.web.exports import GRADE_COLUMNS, grade_rows, grades_csv

    board = board_of(directory)
    text = json.dumps([dict(zip(GRADE_COLUMNS, row, strict=True)) for row in grade_rows(board)],
                      allow_nan=False) + "\n" if as_json else grades_csv(board)
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        out(f"grades written to {escape(str(out_file))}")


@app.command("select")
def select_final(
    args: list[str] = typer.Argument(..., metavar="[DIR] ID",
                                     help="A prepared competition (or --server) and one or "
                                     "more scored submissions of the team."),
    team: str | None = typer.Option(None, help="The team (with DIR; with --server the token "
                                    "says who you are)."),
    unselect: bool = typer.Option(False, help="Remove them from the final selections."),
    server: str | None = server_option(),
    token: str | None = token_option(),
) -> None:
    """Choose (or drop) final selections for the private leaderboard."""
    # A folder named with digits alone is a folder still when it holds a competition.
    local = not args[0].isdigit() or (not server and
                                      Path(args[0], "competition.yaml").is_file())
    url = remote_server(local, server)
    ids = [_submission_id(a) for a in args[local:]]
    if not ids:
        raise CompetitionError("give the id of a submission to select")
    if url is not None:
        remote = connect(url, token)
        chosen: list[int] = []
        for i in ids:
            chosen = remote.call("DELETE" if unselect else "POST",
                                 f"/api/submissions/{i}/select", ok=(200, 204)) or chosen
        who, of = "your team", ""
        if unselect:
            chosen = [r["id"] for r in remote.rows("/api/submissions") if r.get("selected")]
    else:
        if not team:
            raise CompetitionError("give DIR ID... and --team TEAM (or --server URL ID...)")
        board = board_of(Path(args[0]))
        for i in ids:
            if unselect:
                board.selections.unselect(i, team)
            else:
                chosen = board.selections.select(i, team)
        chosen = [o.id for o in board.submissions.of_team(team) if o.selected]
        who, of = escape(team), f" (of {board.rules.final_selections})"
    out(f"final selections of {who}: {', '.join(map(str, chosen)) or 'none'}{of}")


def _submission_id(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise CompetitionError(f"{text[:50]!r} is not a submission id (a number, as "
                               "`competition submissions` lists them)")
    return int(text)


@app.command()
def leaderboard(
    directory: Path | None = typer.Argument(None, help="A prepared competition (or "
                                            "--server)."),
    private: bool = typer.Option(False, "--private", help="The private board (organizer view "
                                 "before the deadline)."),
    late: bool = typer.Option(False, "--late", help="The late board: submissions made after "
                              "the deadline, with their scores, never ranked."),
    server: str | None = server_option(),
    token: str | None = token_option(),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The public board (best public score per team), the private one, or the late one."""
    if private and late:
        raise CompetitionError("give --private or --late, not both")
    url = remote_server(directory is not None, server)
    if url is not None:
        remote = connect(url, token)
        entries = remote.rows("/api/leaderboard" + ("/private" if private else
                                                    "/late" if late else ""))
        if not late:  # the API writes unset fields as null; the board's own JSON omits them
            entries = _as_board_json(entries, remote.server)
        name = remote.server
    else:
        assert directory is not None
        entries, name = _local_board(directory, private, late)
    if as_json:
        print_json(entries)
    elif late:
        late_table(entries, f"Late submissions (not ranked): {escape(name)}")
    else:
        board_table(entries, ("Private" if private else "Public") +
                    f" leaderboard: {escape(name)}", private)


def _as_board_json(rows: object, server: str) -> list[Row]:
    from pydantic import ValidationError

    from competition.board.views import Entry

    try:
        if isinstance(rows, list):
            return [Entry.model_validate(r).as_json() for r in rows]
    except ValidationError:
        pass
    raise CompetitionError(f"{server} answered with something else than a leaderboard")


def _local_board(directory: Path, private: bool, late: bool) -> tuple[list[Row], str]:
    """The board's rows as JSON (as the portal's API gives them) and the competition's name."""
    from competition.board import leaderboard as boards
    from competition.board.late import late_board

    board = board_of(directory)
    if late:  # the private scores where participants may see them (after the deadline)
        return ([e.as_json(board.private_visible) for e in late_board(board)],
                board.comp.name)
    if private and not board.private_visible:
        err("organizer view: the private board before the deadline; do not share it")
    entries = boards.private_board(board) if private else boards.public_board(board)
    return [e.as_json() for e in entries], board.comp.name


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
