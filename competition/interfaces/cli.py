"""The `competition` command line.

Thin: parse, call a service, print. Start-up imports only Typer and this package's errors;
each command imports what it uses, so `competition --help` loads no numpy, MLflow or
TensorFlow, and scoring a CSV loads no mesh or deep-learning library.

Exit codes: 0 done; 2 refused (a malformed file, an invalid or failed submission, a rule, a
usage error: one line on stderr, never a traceback); 1 an internal error; 130 interrupted.
`--json` changes what is printed, never the exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from competition.errors import CompetitionError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import Console

    from competition.board.board import Board
    from competition.board.views import Outcome
    from competition.formats.files import Limits
    from competition.tasks.base import ScoreResult

EXIT_REFUSED = 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A local, Kaggle-style competition harness for biomedical image analysis.",
)


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # No emoji codes or markup in user data: ":x:" in a file must print as ":x:".
    return Console(stderr=stderr, emoji=False, highlight=False, soft_wrap=True)


def out(*parts: Any, **kwargs: Any) -> None:
    _console().print(*parts, **kwargs)


def err(*parts: Any, **kwargs: Any) -> None:
    _console(stderr=True).print(*parts, **kwargs)


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def print_json(value: Any) -> None:
    """One JSON document on stdout (strict: no NaN)."""
    sys.stdout.write(json.dumps(value, allow_nan=False) + "\n")


@app.callback()
def main_options(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens, and let "
                                 "TensorFlow and MLflow speak (their logs are off by "
                                 "default)."),
) -> None:
    """A local, Kaggle-style competition harness for biomedical image analysis."""
    from competition.interfaces.logs import configure

    configure(verbose)


@app.command()
def tasks() -> None:
    """List the installed tasks and the kinds of data set each prepares."""
    from rich.table import Table

    from competition.tasks import get_task, task_names

    table = Table("task", "metric", "kinds (competition prepare KIND)")
    for name in task_names():
        task = get_task(name)
        kinds = "\n".join(f"{kind}: {source.description}"
                          for kind, source in task.sources().items())
        table.add_row(name, task.metric_label, kinds)
    out(table)


@app.command()
def prepare(
    kind: str = typer.Argument(..., help="A kind of data set (`competition tasks` lists "
                               "them), e.g. dsb2018 or demo-nuclei."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    source: Path | None = typer.Option(None, help="The downloaded data set (real kinds)."),
    seed: int = typer.Option(0, help="Seed of the splits; same seed and source, same bytes."),
    public_fraction: float = typer.Option(1 / 3, help="Share of the test set that is Public."),
    test_fraction: float | None = typer.Option(None, help="Share of labelled data held out."),
    force: bool = typer.Option(False, help="Replace an existing directory."),
    name: str | None = typer.Option(None, help="Competition name (default: the kind)."),
    synthetic: str | None = typer.Option(
        None, metavar="SPEC", help="Synthetic kinds: what to generate, as the kind's task "
        "describes it (e.g. a volume's size 1300x1040x1900)."),
    option: list[str] = typer.Option([], "--option", metavar="KEY=VALUE", help="An option "
                                     "of the kind's preparer (repeatable; the task's "
                                     "README lists them); an unknown key names the kind's "
                                     "options."),
) -> None:
    """Turn a data set (or a synthetic demo) into a competition with a hidden test split."""
    from competition.board.prepared import PreparedCompetition
    from competition.tasks.preparing import parse_options
    from competition.tasks.preparing import prepare as prepare_competition

    path = prepare_competition(kind, out_dir, source, seed, public_fraction, test_fraction,
                               force, name, synthetic, parse_options(option))
    comp = PreparedCompetition.open(path)
    counts = comp.config.counts
    out(f"[green]prepared[/] {path} ({comp.task.name}: "
        + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("data/demo"), "--out", help="Where to prepare the demos."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and the splits."),
) -> None:
    """Run the whole loop on the synthetic competitions (prepare, validate, submit, rank)."""
    from rich.table import Table

    from competition.interfaces import demo as demo_module
    from competition.tracking.config import load_config

    with _console().status("Preparing and scoring the demo competitions..."):
        rows = demo_module.run(out_dir, seed)
    table = Table(title="Demo competitions (organizer view: private scores shown)")
    table.add_column("competition", no_wrap=True)
    for column in ("team", "metric", "public", "private", "rank"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row["competition"], row["team"], row["metric"], _fmt(row["public"]),
                      _fmt(row["private"]), str(row["rank"]))
    out(table)
    if any(row["reused"] for row in rows):
        out(f"{out_dir}/ already held these demos (same seed): reused as they are; nothing was "
            "submitted or logged to MLflow again. Delete the folder for a fresh start.")
    first = rows[0]["competition"]
    out(f"Competitions are in {out_dir}/; try `competition leaderboard {out_dir}/{first}` or "
        f"`competition serve {out_dir}/{first}`.")
    config = load_config()
    if config.enabled:
        out(f"Every scored submission is logged to MLflow ({config.tracking_uri}); "
            "`competition ui` shows them, `competition run DIR submissions/unet` trains a "
            "baseline and `competition ensemble` combines runs.")


@app.command()
def info(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Show a competition's task, sizes and the rules in force."""
    from competition.board.prepared import PreparedCompetition

    comp = PreparedCompetition.open(directory)
    out(f"[bold]{escape(comp.title)}[/] ({escape(comp.name)})")
    out(f"task: {comp.task.name} — {comp.task.metric}")
    for key, value in comp.config.counts.items():
        out(f"  {key}: {value}")
    out("rules:")
    for key, value in comp.rules.model_dump().items():
        out(f"  {key}: {value}")
    out(f"  score_direction: {comp.task.direction} (set by the task)")


@app.command()
def validate(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission: Path = typer.Argument(..., help="The file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a submission's format (no scoring)."""
    from competition.board import scoring
    from competition.board.prepared import PreparedCompetition

    message = scoring.validate(PreparedCompetition.open(directory), submission)
    if as_json:
        print_json({"valid": True, "message": message})
    else:
        out(f"[green]OK[/] {escape(message)}")


@app.command()
def score(
    target: str = typer.Argument(..., help="A prepared competition's directory, or a task "
                                 "name (`competition tasks`) with --solution."),
    submission: Path = typer.Argument(..., help="The submission file."),
    solution: Path | None = typer.Option(None, help="Solution file (standalone form)."),
    reference: Path | None = typer.Option(None, help="Reference predictions to compare with "
                                          "(e.g. for the landmarks' win rate)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    per_image: bool = typer.Option(False, "--per-image", help="Add the per-item table "
                                   "(images, slices, specimens...)."),
) -> None:
    """Score a submission exactly, against a prepared competition or any solution file."""
    from competition.board import scoring

    if solution is not None:
        result = scoring.score_standalone(target, submission, solution, reference)
    else:
        from competition.board.prepared import PreparedCompetition
        from competition.tasks import task_names

        if target in task_names() and not Path(target).is_dir():
            raise CompetitionError(f"the task form needs --solution FILE (score {target} "
                                   "SUBMISSION --solution FILE)")
        if reference is not None:
            raise CompetitionError("--reference goes with --solution; a prepared competition "
                                   "uses its own reference")
        result = scoring.score(PreparedCompetition.open(target), submission)
    if as_json:
        print_json(result.as_json(per_image))
    else:
        _print_score(result, per_image)


def _board(directory: Path) -> Board:
    from competition.board.board import Board
    from competition.board.prepared import PreparedCompetition

    return Board(PreparedCompetition.open(directory))


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
        board = _board(Path(paths[0]))
        with _as_file(Path(paths[1]), board.comp.limits) as path:
            outcome = board.submissions.submit(path, team, message)
        show_private = board.private_visible
        status, shown = outcome.status, outcome.as_json(show_private)
    if as_json:
        print_json(shown)
    else:
        _print_outcome(shown, show_private)
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


@app.command("run")
def run_entry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    entry: Path = typer.Argument(..., help="An entry folder, e.g. submissions/unet."),
    config: Path | None = typer.Option(None, help="A configuration file on top of the "
                                       "entry's config.yaml (e.g. its smoke.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="key=value overrides (repeatable); "
                                   "TASK.key=value for one task only."),
    inputs: Path | None = typer.Option(None, help="Predict this folder instead of the test "
                                       "set (in the data set's layout); not submitted."),
    team: str | None = typer.Option(None, help="Team to submit as (default: "
                                    "baseline-ENTRY)."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
    also_predict: Path | None = typer.Option(None, help="Also predict this folder with the "
                                             "same model (e.g. DSB's stage1_test)."),
    as_participant: bool = typer.Option(False, "--as-participant", help="Submit as a "
                                        "participant team, not as a baseline (baselines "
                                        "are marked on the board and left out of grades)."),
) -> None:
    """Train an entry on the public training data, predict, write and submit the file."""
    from competition.training.run import run

    record = run(directory, entry, config, set_, inputs, team, not no_submit, also_predict,
                 baseline=not as_participant)
    if record.get("also_predicted"):
        out(f"also predicted {also_predict}: {record['also_predicted']}")
    out(f"trained {record['entry']} in {record['fit_seconds']:.1f} s, predicted in "
        f"{record['predict_seconds']:.1f} s; wrote {record['submission']}")
    if "public_score" in record:
        out(f"submission {record['submission_id']}: {record['status']}, public score "
            f"{_fmt(record['public_score'])}")
    if record.get("mlflow_run_id"):
        out(f"MLflow run {record['mlflow_run_id']} (see `competition ui`)")


@app.command()
def ensemble(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    members: list[str] = typer.Argument(..., help="MLflow run ids or submission ids of runs "
                                        "that logged test predictions."),
    method: str = typer.Option("mean", help="mean, median or greedy (forward selection "
                               "with replacement, on the public split only)."),
    weights: list[float] | None = typer.Option(None, "--weights", help="One per member "
                                               "(repeat the option), for --method mean."),
    rounds: int = typer.Option(10, help="Greedy: the most members added."),
    team: str = typer.Option("ensemble", help="Team to submit as. With --as-participant "
                             "every member must be this team's own run; as a baseline, no "
                             "member may be a participant team's."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
    as_participant: bool = typer.Option(False, "--as-participant", help="Submit as a "
                                        "participant team, not as a baseline."),
) -> None:
    """Combine runs' prediction maps into one submission, submit it and log it to MLflow.
    Only the team's own runs can be combined (a run's tag `team`; see
    competition/ensembles/build.py)."""
    from rich.table import Table

    from competition.ensembles.build import build

    record = build(directory, members, method, weights or None, rounds, team, not no_submit,
                   baseline=not as_participant)
    table = Table("member", "MLflow run", "public score", "weight")
    weights_used = record["weights"] or [None] * len(record["members"])
    for m, w in zip(record["members"], weights_used, strict=True):
        table.add_row(escape(m["ref"]), escape(m["name"]), _fmt(m["public_score"]),
                      "-" if w is None else f"{w:.3f}")
    out(table)
    if record["greedy_public_scores"]:
        out("greedy public scores by round: "
            + ", ".join(f"{v:.4f}" for v in record["greedy_public_scores"]))
    out(f"wrote {record['submission']}")
    if "submission_id" in record:
        out(f"submission {record['submission_id']}: {record['status']}, public score "
            f"{_fmt(record['public_score'])}"
            + (f" ({escape(record['error'])})" if record.get("error") else ""))
    if record.get("mlflow_run_id"):
        out(f"MLflow run {record['mlflow_run_id']}")


@app.command()
def reference(
    directory: Path = typer.Argument(..., help="A prepared competition whose task compares "
                                     "with reference predictions (e.g. landmarks)."),
    file: Path = typer.Argument(..., help="A valid submission, e.g. the ALPACA baseline's."),
) -> None:
    """Install FILE as the reference scores are compared with (private data)."""
    from competition.board.prepared import PreparedCompetition

    target = PreparedCompetition.open(directory).install_reference(file)
    out(f"installed {file} as {target}; scores now report the comparison with it "
        "(`competition rescore DIR` records it for stored submissions)")


@app.command()
def patches(
    directory: Path = typer.Argument(..., help="A prepared landmark competition."),
    folder: Path = typer.Option(..., "--out", help="Folder for images/ and index.csv."),
    split: str = typer.Option("train", help="train (with the manual landmarks' pixel "
                              "positions) or test (never with them)."),
    estimates: Path | None = typer.Option(None, help="Landmark CSV of estimates to centre on "
                                          "(required for test; for train e.g. "
                                          "submissions/alpaca/cross_estimates.py's; train "
                                          "default: jittered manual landmarks)."),
    radii: list[float] = typer.Option([1.0, 2.0, 4.0], "--radius", help="Window radii (mm), "
                                      "repeatable."),
    shift: float = typer.Option(1.0, help="Shift (mm) of the fourth, shifted window."),
    jitter: float = typer.Option(0.4, help="Train: displacement (mm) of the estimates."),
    seed: int = typer.Option(0, help="Seed of the jitter."),
) -> None:
    """Write 224x224 surface patch images around landmark estimates (4 per landmark)."""
    from competition.landmark_imaging.patch_sets import write

    n = write(directory, folder, split, estimates, tuple(radii), shift, jitter, seed)
    out(f"wrote {n} images and {folder / 'index.csv'}")


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
    """Start the MLflow UI on the configured tracking store and print the address of the
    caller's runs (on a tracking server: print it)."""
    from competition.interfaces.mlflow_ui import serve_ui

    name = None
    if directory is not None:
        from competition.board.prepared import PreparedCompetition

        name = PreparedCompetition.open(directory).name
    sys.exit(serve_ui(organizers, host, port, out, name, team, auth))


@app.command("tracking-users")
def tracking_users(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    team: list[str] = typer.Option([], "--team", help="Only this team (repeatable; default: "
                                   "every participant team on the board)."),
    reset_password: bool = typer.Option(False, "--reset-password", help="Give existing users "
                                        "a new password (printed once)."),
) -> None:
    """Give each team an MLflow user that reads and writes only its own experiment on the
    shared tracking server (basic-auth); prints new passwords once. Run it again whenever
    teams are added, before they log anything."""
    from competition.tracking.config import load_config
    from competition.tracking.users import sync_team_users

    board = _board(directory)
    names = team or [t["team"] for t in board.teams.overview() if not t["baseline"]]
    if not names:
        raise CompetitionError("no participant team yet: add teams with `competition team "
                               "add`, or name them with --team")
    config = load_config()
    for user in sync_team_users(config, board.comp.name, names, reset_password):
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
    directory: Path = typer.Argument(..., help="A prepared competition."),
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
    """Start the course portal (pages and JSON API) on this competition. Uploads are queued
    and scored as jobs on a Dask cluster (see docs/deploy.md)."""
    import uvicorn

    from competition.interfaces.web.app import create_app
    from competition.jobs.runners import DaskRunner, ThreadRunner

    runner = ThreadRunner(workers or 2) if threads else \
        DaskRunner(scheduler, workers, certs=cluster_certs)
    try:
        web_app = create_app(directory, trust_proxy=trust_proxy, session_hours=session_hours,
                             runner=runner, scorer_spec=scorer)
        where = "threads" if threads else (scheduler or "a LocalCluster")
        out(f"serving {directory} on http://{host}:{port}/ (API docs at /docs); scoring jobs "
            f"on {where}; organizer token: `competition organizer-token DIR`")
        # The forwarded headers are the portal's to judge (--trust-proxy), not uvicorn's.
        uvicorn.run(web_app, host=host, port=port, log_level="warning", proxy_headers=False)
    finally:
        runner.close()


@app.command("cluster-certs")
def cluster_certs(
    folder: Path = typer.Argument(..., help="A new folder for the certificates."),
    days: int = typer.Option(365, min=1, help="How long they are valid."),
) -> None:
    """Make the scoring cluster's TLS certificates: a certificate authority (ca.pem; its key
    ca-key.pem stays with you) and a certificate and key for the scheduler, the workers and
    the portal. Only holders of a certificate it signed can talk to the cluster (see
    docs/deploy.md for which file goes to which host)."""
    from competition.jobs.cluster_security import make_certificates

    for path in make_certificates(folder, days=days):
        out(f"wrote {path}")
    out("hand each host only its role's pair with ca.pem; keep ca-key.pem off the cluster")


def _print_outcome(shown: dict[str, Any], show_private: bool) -> None:
    status = shown.get("status")
    if status == "scored":
        line = (f"[green]scored[/] submission {shown['id']}: public score "
                f"{_fmt(shown.get('public_score'))}")
        if show_private:
            line += f", private score {_fmt(shown.get('private_score'))}"
        out(line)
    elif status == "duplicate":
        out(f"[yellow]duplicate[/] submission {shown['id']}: the same file as submission "
            f"{shown.get('duplicate_of')} (public score {_fmt(shown.get('public_score'))}); "
            "not scored again and not counted")
    else:
        err(f"[red]{status}[/] submission {shown['id']}:", escape(shown.get("error") or ""),
            "(not counted towards the daily limit)")
    if shown.get("remaining_today") is not None:
        out(f"{shown['remaining_today']} submission(s) left today (UTC)")


team_app = typer.Typer(help="Teams and their members.", no_args_is_help=True)
app.add_typer(team_app, name="team")


@team_app.command("add")
def team_add(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    team: str = typer.Argument(..., help="The team's name."),
    member: list[str] = typer.Option([], "--member", help="A member (repeatable)."),
    token: bool = typer.Option(True, help="Issue a new access token for the web portal and "
                               "API (replaces the team's earlier one)."),
) -> None:
    """Create a team, add members, and issue its access token (shown once, stored hashed)."""
    board = _board(directory)
    members = board.teams.add(team, member)
    out(f"team {escape(team)}: " + (", ".join(map(escape, members)) or "no members yet"))
    if token:
        out(f"token: {board.teams.issue_token(team)}")
        out("give it to the team; it is stored hashed and cannot be shown again")


@app.command("organizer-token")
def organizer_token(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Issue a new organizer token for the web portal (replaces the earlier one)."""
    out(f"organizer token: {_board(directory).teams.issue_organizer_token()}")


@app.command()
def retry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A failed submission."),
    team: str | None = typer.Option(None, help="The submission's team."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a failed submission again."""
    board = _board(directory)
    outcome = board.submissions.retry(submission_id, team)
    shown = outcome.as_json(board.private_visible)
    if as_json:
        print_json(shown)
    else:
        _print_outcome(shown, board.private_visible)
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
    """Score the queue's jobs in this process, without a web server, until none is left to
    claim: among them those of a killed `submit` or serve process, once their leases
    (COMPETITION_LEASE_SECONDS, 60 s) have run out. --watch keeps going."""
    from competition.jobs.dispatcher import Dispatcher
    from competition.jobs.runners import ThreadRunner

    board = _board(directory)
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

    board = _board(directory)
    rows: list[Outcome] = board.submissions.of_team(team)
    show_private = board.private_visible
    if as_json:
        print_json([r.as_json(show_private) for r in rows])
        return
    table = Table("id", "submitted (UTC)", "file", "status", "public",
                  *(["private"] if show_private else []), "selected", "message / error",
                  title=f"Submissions of {escape(team)}")
    for r in rows:
        table.add_row(str(r.id), r.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
                      escape(r.file_name), r.status, _fmt(r.public_score),
                      *([_fmt(r.private_score)] if show_private else []),
                      "yes" if r.selected else "", escape(r.error or r.message or ""))
    out(table)


@app.command("select")
def select_final(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A scored submission of the team."),
    team: str = typer.Option(..., help="The team."),
    unselect: bool = typer.Option(False, help="Remove it from the final selections."),
) -> None:
    """Choose (or drop) a final selection for the private leaderboard."""
    board = _board(directory)
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
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The public board (best public score per team), or the private one."""
    from rich.table import Table

    from competition.board import leaderboard as boards

    board = _board(directory)
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
               _fmt(e.score), interval,
               "~" if e.indistinguishable_from_leader else "", str(e.entries),
               e.submitted_at.strftime("%Y-%m-%d %H:%M")]
        if private:
            change = "" if e.rank_change is None else f"{e.rank_change:+d}"
            row[5:5] = [str(e.public_rank or "-"), change]
        row[3:3] = [_fmt(e.metrics.get(label)) for label in labels] + (
            [_fmt(e.mean_rank)] if ranked else [])
        table.add_row(*row)
    out(table)


@app.command()
def rescore(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Score every submission again with the current scorer and solution, atomically."""
    from rich.table import Table

    from competition.board.scoring import scorer_version

    board = _board(directory)
    with _console().status("Rescoring every submission..."):
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
                      f"{_fmt(c['old_public'])} -> {_fmt(c['new_public'])}",
                      f"{_fmt(c['old_private'])} -> {_fmt(c['new_private'])}")
    out(table)
    for c in changes:  # valid now, but its day's slots were taken: it does not count
        if c.get("note"):
            out(f"submission {c['id']}: {escape(c['note'])}")


def _print_score(result: ScoreResult, per_item: bool) -> None:
    from rich.table import Table

    data = result.as_json(per_item)
    table = Table(title=f"{result.task}: {result.metric}", show_header=False)
    for key in ("score", "public", "private"):
        table.add_row(key, _fmt(data[key]))
    for key, value in data.items():
        if key in ("task", "metric", "score", "public", "private", "higher_is_better") or \
                isinstance(value, (dict, list)):
            continue
        table.add_row(escape(key), escape(_fmt(value)))
    if "per_threshold" in data:
        table.add_row("per_threshold", " ".join(f"{k}:{_fmt(v)}"
                                                 for k, v in data["per_threshold"].items()))
    out(table)
    if data.get("per_landmark"):
        _print_per_landmark(data["per_landmark"])
    if per_item:
        rows = data[f"per_{result.item_kind}"]
        if rows:
            items = Table(*rows[0].keys())
            for row in rows:
                items.add_row(*(escape(_fmt(v)) for v in row.values()))
            out(items)


def _print_per_landmark(rows: list[dict[str, Any]]) -> None:
    """The published layout: landmark, specimens, errors, and how often the submission beats
    the reference (e.g. ALPACA) on that landmark."""
    from rich.table import Table

    with_reference = "win_rate" in rows[0]
    columns = ["landmark", "specimens", "RMSE", "mean", "median"]
    if with_reference:
        columns += ["% better than reference", "ties", "reference mean"]
    table = Table(*columns, title="per landmark (mm)")
    for row in rows:
        cells = [escape(str(row["landmark"])), str(row["n"]), f"{row['rmse']:.3f}",
                 f"{row['mean']:.3f}", f"{row['median']:.3f}"]
        if with_reference:
            cells += [f"{row['win_rate']:.1f}", str(row["ties"]), f"{row['reference_mean']:.3f}"]
        table.add_row(*cells)
    out(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def main() -> None:
    """Entry point: user errors become one clear line and exit code 2, never a traceback.
    Usage errors are click's own (its message and exit code 2)."""
    try:
        app()
    except CompetitionError as e:
        err("[red]error:[/]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except Exception as e:
        if os.environ.get("COMPETITION_DEBUG"):
            raise
        err("[red]internal error:[/]", escape(f"{type(e).__name__}: {e}"),
            "(set COMPETITION_DEBUG=1 for the traceback, and please report it)")
        sys.exit(1)


if __name__ == "__main__":
    main()
