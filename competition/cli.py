"""The `competition` command line."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from competition.errors import CompetitionError
from competition.prepare import KINDS
from competition.prepare import prepare as prepare_competition
from competition.prepared import PreparedCompetition
from competition.tasks import TASKS, ScoreResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="A local, Kaggle-style competition harness for biomedical image analysis.",
)
# No emoji codes or markup in user data: ":x:" in a file must print as ":x:".
out = Console(emoji=False, highlight=False)
err = Console(stderr=True, emoji=False, highlight=False)


@app.command()
def prepare(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to create."),
    source: Path | None = typer.Option(None, help="The downloaded data set (real kinds)."),
    seed: int = typer.Option(0, help="Seed of the splits; same seed and source, same bytes."),
    public_fraction: float = typer.Option(1 / 3, help="Share of the test set that is Public."),
    test_fraction: float | None = typer.Option(None, help="Share of labelled data held out."),
    force: bool = typer.Option(False, help="Replace an existing directory."),
    name: str | None = typer.Option(None, help="Competition name (default: the kind)."),
) -> None:
    """Turn a data set (or a synthetic demo) into a competition with a hidden test split."""
    path = prepare_competition(kind, out_dir, source, seed, public_fraction, test_fraction,
                               force, name)
    comp = PreparedCompetition.open(path)
    counts = comp.config.get("counts", {})
    out.print(f"[green]prepared[/] {path} ({comp.task.name}: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")")


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("data/demo"), "--out", help="Where to prepare the demos."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and the splits."),
) -> None:
    """Run the whole loop on the three synthetic competitions (prepare, validate, score)."""
    from competition import demo as demo_module

    with out.status("Preparing and scoring the demo competitions..."):
        rows = demo_module.run(out_dir, seed)
    table = Table(title="Demo competitions (organizer view: private scores shown)")
    table.add_column("competition", no_wrap=True)
    for column in ("team", "metric", "public", "private", "rank"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row["competition"], row["team"], row["metric"], _fmt(row["public"]),
                      _fmt(row["private"]), str(row["rank"]))
    out.print(table)
    out.print(f"Competitions are in {out_dir}/; try `competition leaderboard "
              f"{out_dir}/demo-nuclei` or `competition serve {out_dir}/demo-nuclei`.")
    from competition import tracking

    config = tracking.load_config()
    if config.enabled:
        out.print(f"Every scored submission is logged to MLflow ({config.tracking_uri}); "
                  "`competition ui` shows them, `competition run DIR submissions/unet` trains "
                  "a baseline and `competition ensemble` combines runs.")


@app.command()
def info(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Show a competition's task, sizes and the rules in force."""
    comp = PreparedCompetition.open(directory)
    out.print(f"[bold]{comp.config.get('title', comp.name)}[/] ({comp.name})")
    out.print(f"task: {comp.task.name} — {comp.task.metric}")
    for key, value in (comp.config.get("counts") or {}).items():
        out.print(f"  {key}: {value}")
    out.print("rules:")
    for key, value in comp.rules.items():
        out.print(f"  {key}: {value}")


@app.command()
def validate(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission: Path = typer.Argument(..., help="The file to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a submission's format (no scoring)."""
    from competition import scoring

    comp = PreparedCompetition.open(directory)
    message = scoring.validate(comp, submission)
    if as_json:
        print(json.dumps({"valid": True, "message": message}))
    else:
        out.print(f"[green]OK[/] {message}")


@app.command()
def score(
    target: str = typer.Argument(..., help="A prepared competition's directory, or a task "
                                 f"({', '.join(TASKS)}) with --solution."),
    submission: Path = typer.Argument(..., help="The submission file."),
    solution: Path | None = typer.Option(None, help="Solution file (standalone form)."),
    reference: Path | None = typer.Option(None, help="Reference predictions for the win rate "
                                          "(landmarks)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    per_image: bool = typer.Option(False, "--per-image", help="Add the per-image/slice/"
                                   "specimen table."),
) -> None:
    """Score a submission exactly, against a prepared competition or any solution file."""
    from competition import scoring

    if solution is not None:
        result = scoring.score_standalone(target, submission, solution, reference)
    else:
        if target in TASKS and not Path(target).is_dir():
            raise CompetitionError(f"the task form needs --solution FILE (score {target} "
                                   "SUBMISSION --solution FILE)")
        if reference is not None:
            raise CompetitionError("--reference goes with --solution; a prepared competition "
                                   "uses its own reference")
        result = scoring.score(PreparedCompetition.open(target), submission)
    if as_json:
        print(json.dumps(result.as_json(per_image), allow_nan=False))
    else:
        _print_score(result, per_image)


def _store(directory: Path):
    from competition.submissions import SubmissionStore

    return SubmissionStore(PreparedCompetition.open(directory))


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
    """Submit a file: kept, validated and scored under the rules; prints the public score."""
    if server is not None:
        if len(paths) != 1 or not token:
            raise CompetitionError("with --server give the file alone and --token TOKEN "
                                   "(or COMPETITION_TOKEN)")
        from competition.web.client import submit_remote

        body = submit_remote(server, token, Path(paths[0]), message)
        if as_json:
            print(json.dumps(body))
        else:
            _print_outcome(_RemoteOutcome(body), "private_score" in body)
        if body.get("status") in ("invalid", "failed"):
            raise typer.Exit(2)
        return
    if len(paths) != 2 or not team:
        raise CompetitionError("give DIR FILE and --team TEAM (or --server URL --token TOKEN "
                               "FILE)")
    store = _store(Path(paths[0]))
    outcome = store.submit(Path(paths[1]), team, message)
    show_private = store.private_visible
    if as_json:
        print(json.dumps(outcome.as_json(show_private), allow_nan=False))
        return
    _print_outcome(outcome, show_private)
    if outcome.status in ("invalid", "failed"):
        raise typer.Exit(2)


class _RemoteOutcome:
    """A server's JSON answer, seen through the attributes `_print_outcome` reads."""

    def __init__(self, body: dict):
        self.__dict__.update({"private_score": None, "remaining_today": None,
                              "duplicate_of": None, "error": None, **body})


@app.command("run")
def run_entry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    entry: Path = typer.Argument(..., help="An entry folder, e.g. submissions/unet."),
    config: Path | None = typer.Option(None, help="A configuration file on top of the "
                                       "entry's config.yaml (e.g. its smoke.yaml)."),
    set_: list[str] = typer.Option([], "--set", help="key=value overrides (repeatable); "
                                   "nuclei.key=value for one task only."),
    inputs: Path | None = typer.Option(None, help="Predict this folder instead of the test "
                                       "set (Kaggle layout, or a TIFF stack); not submitted."),
    team: str | None = typer.Option(None, help="Team to submit as (default: "
                                    "baseline-ENTRY)."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
    also_predict: Path | None = typer.Option(None, help="Also predict this folder with the "
                                             "same model (e.g. DSB's stage1_test)."),
) -> None:
    """Train an entry on the public training data, predict, write and submit the file."""
    from competition.run import run

    record = run(directory, entry, config, set_, inputs, team, not no_submit, also_predict)
    if record.get("also_predicted"):
        out.print(f"also predicted {also_predict}: {record['also_predicted']}")
    out.print(f"trained {record['entry']} in {record['fit_seconds']:.1f} s, predicted in "
              f"{record['predict_seconds']:.1f} s; wrote {record['submission']}")
    if "public_score" in record:
        out.print(f"submission {record['submission_id']}: {record['status']}, public score "
                  f"{_fmt(record['public_score'])}")
    if record.get("mlflow_run_id"):
        out.print(f"MLflow run {record['mlflow_run_id']} (see `competition ui`)")


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
    team: str = typer.Option("ensemble", help="Team to submit as."),
    no_submit: bool = typer.Option(False, "--no-submit", help="Write the file only."),
) -> None:
    """Combine runs' probability maps into one submission, submit it and log it to MLflow."""
    from competition.ensemble import build

    record = build(directory, members, method, weights or None, rounds, team, not no_submit)
    table = Table("member", "MLflow run", "public score", "weight")
    weights_used = record["weights"] or [None] * len(record["members"])
    for m, w in zip(record["members"], weights_used, strict=True):
        table.add_row(escape(m["ref"]), escape(m["name"]), _fmt(m["public_score"]),
                      "-" if w is None else f"{w:.3f}")
    out.print(table)
    if record["greedy_public_scores"]:
        out.print("greedy public scores by round: "
                  + ", ".join(f"{v:.4f}" for v in record["greedy_public_scores"]))
    out.print(f"wrote {record['submission']}")
    if "submission_id" in record:
        out.print(f"submission {record['submission_id']}: {record['status']}, public score "
                  f"{_fmt(record['public_score'])}"
                  + (f" ({escape(record['error'])})" if record.get("error") else ""))
    if record.get("mlflow_run_id"):
        out.print(f"MLflow run {record['mlflow_run_id']}")


@app.command()
def reference(
    directory: Path = typer.Argument(..., help="A prepared landmark competition."),
    file: Path = typer.Argument(..., help="A valid submission, e.g. the ALPACA baseline's."),
) -> None:
    """Install FILE as the reference the win rate is computed against (private data)."""
    comp = PreparedCompetition.open(directory)
    target = comp.install_reference(file)
    out.print(f"installed {file} as {target}; scores now report the win rate against it "
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
    from competition.patch_sets import write

    n = write(directory, folder, split, estimates, tuple(radii), shift, jitter, seed)
    out.print(f"wrote {n} images and {folder / 'index.csv'}")


@app.command()
def ui(
    organizers: bool = typer.Option(False, "--organizers", help="Open the organizers' store "
                                    "(private scores) instead of the participants' one."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(5000, help="Port to listen on."),
) -> None:
    """Start the MLflow UI on the configured tracking store and print its address."""
    import subprocess

    from competition import tracking
    from competition.subprocesses import stop_group

    config = tracking.load_config()
    uri = config.uri("organizers" if organizers else "participants")
    if uri is None:
        raise CompetitionError("no organizers' tracking store is configured (mlflow.yaml)")
    if uri.startswith(("http://", "https://")):
        out.print(f"the tracking store is a server already: open {uri}")
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
               "--host", host, "--port", str(port)]
    if config.artifact_location:
        command += ["--default-artifact-root", config.artifact_location]
    out.print(f"MLflow UI on {uri}: http://{host}:{port}/ (Ctrl-C stops it)")
    # MLflow's GenAI job runners are not needed here; the server and its workers run in a
    # process group of their own, stopped as a whole (none is left behind).
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    process = subprocess.Popen(command, env=env, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: stop_group(process))
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        stop_group(process)
    sys.exit(code)


@app.command()
def serve(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Start the course portal (pages and JSON API) on this competition."""
    import uvicorn

    from competition.web.app import create_app

    web_app = create_app(directory)
    out.print(f"serving {directory} on http://{host}:{port}/ (API docs at /docs); "
              "organizer token: `competition organizer-token DIR`")
    uvicorn.run(web_app, host=host, port=port, log_level="warning")


def _print_outcome(outcome, show_private: bool) -> None:
    if outcome.status == "scored":
        line = (f"[green]scored[/] submission {outcome.id}: public score "
                f"{_fmt(outcome.public_score)}")
        if show_private:
            line += f", private score {_fmt(outcome.private_score)}"
        out.print(line)
    elif outcome.status == "duplicate":
        out.print(f"[yellow]duplicate[/] submission {outcome.id}: the same file as submission "
                  f"{outcome.duplicate_of} (public score {_fmt(outcome.public_score)}); not "
                  "scored again and not counted")
    else:
        err.print(f"[red]{outcome.status}[/] submission {outcome.id}:", escape(outcome.error or ""),
                  "(not counted towards the daily limit)")
    if outcome.remaining_today is not None:
        out.print(f"{outcome.remaining_today} submission(s) left today (UTC)")


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
    store = _store(directory)
    members = store.add_team(team, member)
    out.print(f"team {escape(team)}: " + (", ".join(map(escape, members)) or "no members yet"))
    if token:
        out.print(f"token: {store.issue_team_token(team)}")
        out.print("give it to the team; it is stored hashed and cannot be shown again")


@app.command("organizer-token")
def organizer_token(directory: Path = typer.Argument(..., help="A prepared competition.")) -> None:
    """Issue a new organizer token for the web portal (replaces the earlier one)."""
    out.print(f"organizer token: {_store(directory).issue_organizer_token()}")


@app.command()
def retry(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A failed submission."),
    team: str | None = typer.Option(None, help="The submission's team."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a failed submission again."""
    store = _store(directory)
    outcome = store.retry(submission_id, team)
    if as_json:
        print(json.dumps(outcome.as_json(store.private_visible), allow_nan=False))
    else:
        _print_outcome(outcome, store.private_visible)


@app.command("submissions")
def list_submissions(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    team: str = typer.Option(..., help="The team whose submissions to list."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """A team's submissions: status, errors, scores, final selections."""
    store = _store(directory)
    rows = store.list(team)
    show_private = store.private_visible
    if as_json:
        print(json.dumps([r.as_json(show_private) for r in rows], allow_nan=False))
        return
    table = Table("id", "submitted (UTC)", "file", "status", "public",
                  *(["private"] if show_private else []), "selected", "message / error",
                  title=f"Submissions of {team}")
    for r in rows:
        table.add_row(str(r.id), r.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
                      escape(r.file_name), r.status, _fmt(r.public_score),
                      *([_fmt(r.private_score)] if show_private else []),
                      "yes" if r.selected else "", escape(r.error or r.message or ""))
    out.print(table)


@app.command("select")
def select_final(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    submission_id: int = typer.Argument(..., help="A scored submission of the team."),
    team: str = typer.Option(..., help="The team."),
    unselect: bool = typer.Option(False, help="Remove it from the final selections."),
) -> None:
    """Choose (or drop) a final selection for the private leaderboard."""
    store = _store(directory)
    if unselect:
        store.unselect(submission_id, team)
        out.print(f"submission {submission_id} is no longer a final selection of {team}")
        return
    chosen = store.select(submission_id, team)
    out.print(f"final selections of {team}: {', '.join(map(str, chosen))} "
              f"(of {store.rules.final_selections})")


@app.command()
def leaderboard(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    private: bool = typer.Option(False, "--private", help="The private board (organizer view "
                                 "before the deadline)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The public board (best public score per team), or the private one."""
    from competition import leaderboard as boards

    store = _store(directory)
    store.reconcile()
    if private and not store.private_visible:
        err.print("organizer view: the private board before the deadline; do not share it")
    board = boards.private_board(store) if private else boards.public_board(store)
    if as_json:
        print(json.dumps([e.as_json() for e in board], allow_nan=False))
        return
    title = ("Private" if private else "Public") + f" leaderboard: {store.comp.name}"
    columns = ["rank", "team", "score", "95% interval", "~leader", "entries", "last"]
    if private:
        columns[5:5] = ["public rank", "change"]
    table = Table(*columns, title=title, caption="~leader: not significantly different from "
                  "the leader (paired bootstrap over test items)")
    for e in board:
        interval = "-" if e.ci_low is None else f"{e.ci_low:.4f} .. {e.ci_high:.4f}"
        row = [str(e.rank), escape(e.team), _fmt(e.score), interval,
               "~" if e.indistinguishable_from_leader else "", str(e.entries),
               e.submitted_at.strftime("%Y-%m-%d %H:%M")]
        if private:
            change = "" if e.rank_change is None else f"{e.rank_change:+d}"
            row[5:5] = [str(e.public_rank or "-"), change]
        table.add_row(*row)
    out.print(table)


@app.command()
def rescore(
    directory: Path = typer.Argument(..., help="A prepared competition."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Score every submission again with the current scorer and solution, atomically."""
    store = _store(directory)
    with out.status("Rescoring every submission..."):
        changes = store.rescore()
    if as_json:
        print(json.dumps(changes, allow_nan=False))
        return
    if not changes:
        out.print(f"rescored with {store.scorer_version}: nothing changed")
        return
    table = Table("id", "status", "public", "private", title=f"Changed by {store.scorer_version}")
    for c in changes:
        table.add_row(str(c["id"]), f"{c['old_status']} -> {c['new_status']}",
                      f"{_fmt(c['old_public'])} -> {_fmt(c['new_public'])}",
                      f"{_fmt(c['old_private'])} -> {_fmt(c['new_private'])}")
    out.print(table)


def _print_score(result: ScoreResult, per_item: bool) -> None:
    data = result.as_json(per_item)
    table = Table(title=f"{result.task}: {result.metric}", show_header=False)
    for key in ("score", "public", "private"):
        table.add_row(key, _fmt(data[key]))
    for key, value in data.items():
        if key in ("task", "metric", "score", "public", "private", "higher_is_better") or \
                isinstance(value, (dict, list)):
            continue
        table.add_row(key, _fmt(value))
    if "per_threshold" in data:
        table.add_row("per_threshold", " ".join(f"{k}:{_fmt(v)}"
                                                 for k, v in data["per_threshold"].items()))
    out.print(table)
    if data.get("per_landmark"):
        _print_per_landmark(data["per_landmark"])
    if per_item:
        rows = data[f"per_{result.item_kind}"]
        if rows:
            items = Table(*rows[0].keys())
            for row in rows:
                items.add_row(*(_fmt(v) for v in row.values()))
            out.print(items)


def _print_per_landmark(rows: list[dict]) -> None:
    """The published layout: landmark, specimens, errors, and how often the submission beats
    the reference (e.g. ALPACA) on that landmark."""
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
    out.print(table)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _vendored_click_exception() -> list[type]:
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        return []
    return [ClickException]


def main() -> None:
    """Entry point: user errors become one clear line and exit code 2, never a traceback."""
    try:
        # Without standalone mode click returns (not raises) the code of typer.Exit.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except CompetitionError as e:
        err.print("[red]error:[/]", escape(str(e)), soft_wrap=True)
        sys.exit(e.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except Exception as e:  # click usage errors and anything unexpected
        import click

        # Typer >= 0.22 raises its vendored click's exceptions, older ones click's own.
        usage_errors = tuple({click.ClickException,
                              *_vendored_click_exception()})
        if isinstance(e, usage_errors):
            e.show()
            sys.exit(e.exit_code)
        if os.environ.get("COMPETITION_DEBUG"):
            raise
        err.print("[red]internal error:[/]", escape(f"{type(e).__name__}: {e}"),
                  "(set COMPETITION_DEBUG=1 for the traceback, and please report it)")
        sys.exit(1)


if __name__ == "__main__":
    main()
