"""The portal, the tracking UI, and their credentials."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from competition.errors import CompetitionError
from competition.interfaces.cli.output import (
    escape,
    out,
)
from competition.interfaces.cli.root import app, board_of


@app.command()
def ui(
    directory: Path | None = typer.Argument(None, help="A prepared competition: open its "
                                            "runs (default: the store's only competition)."),
    organizers: bool = typer.Option(False, "--organizers", help="Open the organizers' store "
                                    "(private scores) instead of the participants' one."),
    team: str | None = typer.Option(None, help="Open this team's own runs (with "
                                    "team_experiment_name in mlflow.yaml: its experiment)."),
    auth: bool = typer.Option(False, "--auth", help="Serve the participants' store to "
                              "participants: MLflow's basic-auth app, where each team user "
                              "(`competition tracking-users`) sees only its own experiment; "
                              "admin credentials from MLFLOW_TRACKING_USERNAME/PASSWORD."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(5000, help="Port to listen on."),
) -> None:
    """Start the MLflow UI on the configured tracking store.

    Prints the address of the caller's runs (on a tracking server: only prints it)."""
    from competition.interfaces.mlflow_ui import serve_ui

    key = None
    if directory is not None:
        from competition.board.prepared import PreparedCompetition

        key = PreparedCompetition.open(directory, public_only=True).key
    sys.exit(serve_ui(host, port, out, organizers=organizers, competition=key, team=team,
                      auth=auth))


@app.command("tracking-users")
def tracking_users(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    team: list[str] = typer.Option([], "--team", help="Only this team (repeatable; default: "
                                   "every participant team on the board)."),
    reset_password: bool = typer.Option(False, "--reset-password", help="Give existing users "
                                        "a new password (printed once)."),
) -> None:
    """Give each team an MLflow user that sees only its own experiment (basic-auth).

    On the shared tracking server, each user reads and writes only its team's experiment; new
    passwords are printed once. Run it again whenever teams are added, before they log
    anything."""
    from competition.tracking.config import load_config
    from competition.tracking.users import sync_team_users

    board = board_of(directory)
    names = team or [t["team"] for t in board.teams.overview() if not t["baseline"]]
    if not names:
        raise CompetitionError("no participant team yet: add teams with `competition team "
                               "add`, or name them with --team")
    config = load_config()
    for user in sync_team_users(config, board.comp.key, names,
                                reset_passwords=reset_password):
        line = (f"team {escape(user.team)}: MLflow user {escape(user.username)}, experiment "
                f"{user.experiment_id} (EDIT)")
        if user.revoked:
            line += "; took back the grants of " + ", ".join(map(escape, user.revoked))
        out(line)
        if user.password:
            out(f"  password: {user.password}  (shown once; MLFLOW_TRACKING_USERNAME/"
                "MLFLOW_TRACKING_PASSWORD for the team)")
    out(f"participants log to {config.tracking_uri} with these credentials and see only their "
        "own experiment")


@app.command()
def serve(
    directories: list[Path] = typer.Argument(..., help="A prepared competition; several, or "
                                             "a course folder holding prepared ones, serve a "
                                             "course (each at /c/FOLDER-NAME/).",
                                             metavar="DIR"),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    trust_proxy: bool = typer.Option(False, "--trust-proxy", envvar="COMPETITION_TRUST_PROXY",
                                     help="Behind a reverse proxy that sets X-Forwarded-Proto "
                                     "and X-Forwarded-Host: believe them (cookies become "
                                     "Secure when the proxy says https)."),
    session_hours: float = typer.Option(12.0, envvar="COMPETITION_SESSION_HOURS", min=0.01,
                                        help="How long a sign-in lasts."),
    scheduler: str | None = typer.Option(None, envvar="COMPETITION_DASK_SCHEDULER",
                                         help="Run scoring jobs on this Dask scheduler "
                                         "(tls://HOST:8786, with --cluster-certs; workers "
                                         "started with `dask worker`). Default: a "
                                         "LocalCluster here, on TLS with credentials only "
                                         "this process holds."),
    cluster_certs: Path | None = typer.Option(None, envvar="COMPETITION_DASK_CERTS",
                                              help="The folder `competition cluster-certs` "
                                              "made (ca.pem, portal.pem, portal-key.pem): "
                                              "the portal's credentials for --scheduler."),
    workers: int | None = typer.Option(None, min=1, help="Workers of the LocalCluster "
                                       "(default: one per core)."),
    threads: bool = typer.Option(False, "--threads", help="Run scoring jobs in threads of "
                                 "this process instead of a Dask cluster."),
    scorer: str = typer.Option("competition.board.scorer_process:ChildScorer", hidden=True,
                               help="The scorer class of the jobs (tests, benchmarks)."),
) -> None:
    """Start the course portal (pages and JSON API) on one competition, or on a course.

    One competition is served at the root. Several (`serve data/nuclei data/em`, or a folder
    whose subfolders are prepared competitions) make a course: a home page listing them, each
    at /c/FOLDER-NAME/, one sign-in for all, one job queue. Uploads are queued and scored
    as jobs on a Dask cluster (the deployment guide, docs/deploy.md, shows a cluster of
    several hosts). Each competition's store is migrated first, where this version of the
    harness needs a newer schema."""
    import uvicorn

    from competition.board.course import course_folder, course_members
    from competition.interfaces.web.app import create_app
    from competition.interfaces.web.course import create_course_app
    from competition.jobs.runners import DaskRunner, ThreadRunner

    # Every folder is checked (names, ids) before any store is touched or a cluster started.
    members = course_members(directories)
    # A course folder with a course.yaml is always a course (competitions may be created
    # from its portal, so even with one or none it is served as one).
    folder = course_folder(directories)
    for member in members:
        _migrate_store(member.directory, quiet_if_current=True)
    runner = ThreadRunner(workers or 2) if threads else \
        DaskRunner(scheduler, workers, certs=cluster_certs)
    try:
        where = "threads" if threads else (scheduler or "a LocalCluster")
        if len(members) == 1 and folder is None:
            web_app = create_app(members[0].directory, trust_proxy=trust_proxy,
                                 session_hours=session_hours, runner=runner,
                                 scorer_spec=scorer)
            out(f"serving {members[0].directory} on http://{host}:{port}/ (API docs at /docs); "
                f"scoring jobs on {where}; organizer token: `competition organizer-token DIR`")
        else:
            web_app = create_course_app(members, trust_proxy=trust_proxy,
                                        session_hours=session_hours, runner=runner,
                                        scorer_spec=scorer, course_dir=folder)
            out(f"serving a course of {len(members)} competitions on http://{host}:{port}/; "
                f"scoring jobs on {where}:")
            if folder is not None:
                out(f"  the course organizer creates competitions at /organizer (into "
                    f"{escape(str(folder))})")
            for member in members:
                out(f"  /c/{member.slug}/  {escape(str(member.directory))}")
        # The forwarded headers are the portal's to judge (--trust-proxy), not uvicorn's.
        uvicorn.run(web_app, host=host, port=port, log_level="warning", proxy_headers=False)
    finally:
        runner.close()


@app.command()
def migrate(
    directory: Path = typer.Argument(..., help="A prepared competition."),
) -> None:
    """Bring the submission store to the schema this version needs, and give the competition
    an id.

    Every row is kept; a store at that revision is left as it is. A competition prepared before
    ids gets its id (competition.yaml's `id`, which MLflow keys its runs by). `serve` does both
    at start; every other command refuses a store at another revision and names this one."""
    _migrate_store(directory, quiet_if_current=False)


def _migrate_store(directory: Path, *, quiet_if_current: bool) -> None:
    from competition.board.board import migrate as migrate_store
    from competition.board.prepared import PreparedCompetition

    comp = PreparedCompetition.open(directory)
    new = comp.give_id()
    if new is not None:
        out(f"{escape(str(directory))}: competition id {new} (competition.yaml); its MLflow "
            "runs go to experiments of that id from now on, earlier ones stay where they are")
    before, after = migrate_store(comp)
    if before == after:
        if not quiet_if_current:
            out(f"store of {escape(str(directory))}: at schema revision {after}; nothing to do")
        return
    out(f"store of {escape(str(directory))}: schema revision {before or 'none'} -> {after}")


@app.command("cluster-certs")
def cluster_certs(
    folder: Path = typer.Argument(..., help="A new folder for the certificates."),
    days: int = typer.Option(365, min=1, help="How long they are valid."),
) -> None:
    """Make the scoring cluster's TLS certificates.

    A certificate authority (ca.pem; its key ca-key.pem stays with you) and a certificate and
    key for the scheduler, the workers and the portal. Only holders of a certificate it signed
    can talk to the cluster (the deployment guide, docs/deploy.md, says which file goes to
    which host)."""
    from competition.jobs.cluster_security import make_certificates

    for path in make_certificates(folder, days=days):
        out(f"wrote {path}")
    out("hand each host only its role's pair with ca.pem; keep ca-key.pem off the cluster")


@app.command("organizer-token")
def organizer_token(
    directory: Path | None = typer.Argument(None, help="A prepared competition."),
    course: Path | None = typer.Option(None, "--course", metavar="COURSE_DIR",
                                       help="A course folder instead: one token for the "
                                       "course organizer (course.yaml) and every competition "
                                       "in the folder."),
) -> None:
    """Issue a new organizer token for the web portal (replaces the earlier one).

    With --course COURSE_DIR: the course organizer's token, stored hashed in
    COURSE_DIR/course.yaml (made if missing; its other settings are kept) and made the
    organizer token of every competition in the folder (each one's earlier token stops
    working). `competition serve COURSE_DIR` then lets its holder create competitions."""
    if (directory is None) == (course is None):
        raise CompetitionError("name a competition (DIR) or a course folder (--course "
                               "COURSE_DIR), one of them")
    if directory is not None:
        out(f"organizer token: {board_of(directory).teams.issue_organizer_token()}")
        return
    from competition.board.course import CONFIG, COURSE_CONFIG
    from competition.board.teams import new_token, token_hash
    from competition.configs import CourseConfig, load

    assert course is not None
    if not course.is_dir() or (course / CONFIG).is_file():
        raise CompetitionError(f"{course}: not a course folder (a folder whose subfolders are "
                               "competitions; a competition takes `organizer-token DIR`)")
    path = course / COURSE_CONFIG
    config = load(CourseConfig, path) if path.is_file() else CourseConfig()
    token = new_token()
    config = config.model_copy(update={"organizer_token_sha256": token_hash(token)})
    tmp = path.with_name(f".{COURSE_CONFIG}.tmp")
    tmp.write_bytes(config.to_yaml())
    tmp.replace(path)
    names = []
    for sub in sorted(p for p in course.iterdir()
                      if not p.name.startswith(".") and (p / CONFIG).is_file()):
        board_of(sub).teams.set_organizer_hash(token_hash(token))
        names.append(sub.name)
    out(f"course organizer token: {token}")
    out(f"  stored hashed in {escape(str(path))}; also the organizer token of "
        + (", ".join(map(escape, names)) if names else "no competition yet"))
