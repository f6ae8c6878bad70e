"""Commands against a running portal (Kaggle's CLI): `login`, `competitions`, `download`; and
what `submit`, `leaderboard`, `submissions` and `select` share when given --server instead
of a competition folder. The token comes from --token, $COMPETITION_TOKEN or the credentials
file `login` writes (credentials.py); it is never printed."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import err, escape, out, print_json
from competition.interfaces.cli.root import app

if TYPE_CHECKING:
    from competition.interfaces.web.client import Remote

SERVER_HELP = ("A running portal: http://HOST:8000, or http://HOST:8000/c/SLUG for one "
               "competition of a course portal (default: $COMPETITION_SERVER).")
TOKEN_HELP = ("Your token (visible to others in `ps`: prefer $COMPETITION_TOKEN or "
              "`competition login`).")


def server_option(help: str = SERVER_HELP) -> Any:  # a typer.Option
    return typer.Option(None, "--server", help=help)


def token_option() -> Any:
    return typer.Option(None, "--token", help=TOKEN_HELP)


def remote_server(local: bool, server: str | None) -> str | None:
    """The portal's URL when the command goes to one, None when it works on a folder: a
    folder and --server together are refused; $COMPETITION_SERVER applies without a folder."""
    from competition.interfaces.credentials import server_of

    if local and server:
        raise CompetitionError("give a competition folder DIR or --server URL, not both")
    if local:
        return None
    found = server_of(server)
    if found is None:
        raise CompetitionError("give a competition folder DIR, or --server URL (or set "
                               "$COMPETITION_SERVER)")
    return found


def connect(server: str, token: str | None) -> Remote:
    from competition.interfaces.credentials import normal_server, token_for
    from competition.interfaces.web.client import Remote

    if token:  # as docker's --password: it works, with a word on why not to
        err("[yellow]warning:[/] a --token is visible to other users of this machine (`ps`, "
            "shell history); prefer $COMPETITION_TOKEN or `competition login`")
    server = normal_server(server)
    return Remote(server, token_for(server, token))


@app.command()
def login(
    server: str | None = server_option("The portal (http://HOST:8000, or .../c/SLUG); "
                                       "default: $COMPETITION_SERVER."),
) -> None:
    """Keep your token for a portal in your credentials file, readable by you only.

    The token is read from the terminal without echo, or from standard input (`competition
    login --server URL < token.txt`). The file, one entry per portal, is credentials.toml
    in $XDG_CONFIG_HOME/competition (default ~/.config/competition)."""
    from competition.interfaces.credentials import Token, checked, save_token, server_of
    from competition.interfaces.web.client import Remote, RemoteError

    url = server_of(server)
    if url is None:
        raise CompetitionError("give --server URL (or set $COMPETITION_SERVER)")
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"Token for {url} (not shown): ")
    else:
        value = sys.stdin.readline()
    if not value.strip():
        raise CompetitionError("no token given; nothing was saved")
    token = checked(Token(value.strip(), "the login"))
    remote = Remote(url, token)
    try:  # a token the portal refuses is not kept
        remote.get("/api/competition")
        verdict = "accepted by the portal"
    except RemoteError as e:
        if e.status != 404:
            raise
        verdict = "not checked: the address serves no competition itself"
    path = save_token(url, token.value)
    out(f"token for {escape(url)} saved in {escape(str(path))} (readable by you only; "
        f"{verdict})")


@app.command()
def competitions(
    server: str | None = server_option(),
    token: str | None = token_option(),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The competitions of a portal: title, task, status (open, upcoming, closed), deadline.

    Given one competition of a course portal (.../c/SLUG), the whole course is listed."""
    from rich.table import Table

    remote = connect(remote_server(False, server) or "", token)
    rows = remote.rows("/api/competitions")
    if as_json:
        print_json(rows)
        return
    table = Table("slug", "title", "task", "status", "start", "deadline (UTC)", "url",
                  title=f"Competitions on {escape(remote.server)}")
    for r in rows:
        table.add_row(*(escape(_when(r.get(k)) if k in ("start", "deadline") else
                               str(r.get(k) or "-"))
                        for k in ("slug", "title", "kind", "status", "start", "deadline",
                                  "url")))
    out(table)


def _when(value: object) -> str:
    return str(value)[:16].replace("T", " ") if value else "-"


@app.command()
def download(
    server: str | None = server_option(),
    token: str | None = token_option(),
    out_dir: Path | None = typer.Option(None, "--out", help="Where to put the files "
                                        "(default: a folder named after the competition)."),
    force: bool = typer.Option(False, "--force", help="Replace files already there."),
) -> None:
    """Download the competition's public files (data, sample submission, README)."""
    from competition.interfaces.unzip import extract, targets, zip_bytes

    remote = connect(remote_server(False, server) or "", token)
    about = remote.get("/api/competition")
    listing = remote.rows("/api/files")
    if not isinstance(about, dict):
        raise CompetitionError(f"{remote.server} answered /api/competition with something "
                               "else than a competition")
    root = out_dir or Path(folder_name(about.get("name")))
    names = [str(f.get("path", "")) for f in listing]
    targets(root, names, force)  # refused before a byte is downloaded
    total = sum(int(f.get("size") or 0) for f in listing)
    root.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=root, prefix=".download-", suffix=".zip")
    try:
        most = zip_bytes(total, len(names))
        with os.fdopen(fd, "wb") as f:
            _fetch(remote, f, total, most)
        written = extract(Path(part), root, force, most_bytes=total)
    finally:
        Path(part).unlink(missing_ok=True)
    out(f"{len(written)} file(s), {total / 1e6:.1f} MB, in {escape(str(root))}")


def folder_name(name: object) -> str:
    """The default download folder, from the name the portal gives its competition: a plain
    name in the working folder, never `.`, `..` or a hidden one (a portal naming itself `.`
    or `..` would have its files written into the working folder or the one above it, such
    as `.ssh/authorized_keys` in a home folder)."""
    from competition.interfaces.web.exports import safe_file_name

    found = safe_file_name(str(name or "")).lstrip(".")
    return found if found and found != "file" else "competition"


def _fetch(remote: Remote, f: BinaryIO, total: int, most: int) -> None:
    """The zip of the public files into `f`, with a progress bar on stderr; refused past
    `most` bytes."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TransferSpeedColumn,
    )

    from competition.interfaces.cli.output import console

    with Progress("downloading", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console(stderr=True), transient=True) as progress, \
            remote.stream("/api/files.zip") as response:
        # The zip is a little larger than its files: the bar's total is the files' bytes.
        bar = progress.add_task("files", total=total or None)
        received = 0
        for chunk in response.iter_bytes(1 << 20):
            received += len(chunk)
            if received > most:  # never fill the disk for a portal that misbehaves
                raise CompetitionError(f"{remote.server} sent more than the {total:,} bytes of "
                                       "files it announced; nothing was written")
            f.write(chunk)
            progress.advance(bar, len(chunk))
