"""Tracking isolation (issue 16): the organizers' artifacts under a root of their own; on a
shared basic-auth server each team reads and writes only its own runs; ensembles combine
only the team's own runs; no run is lost under concurrent submissions."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.errors import ConfigError
from competition.tracking import config as tracking_config
from competition.tracking import runs as tracking
from tests.processes import clean_context
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]


def configure(doc: dict, tmp_path: Path, monkeypatch) -> tracking_config.TrackingConfig:
    path = tmp_path / "mlflow.yaml"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv(tracking_config.CONFIG_ENV, str(path))
    monkeypatch.setenv(tracking_config.SWITCH_ENV, "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tracking_config.load_config()


EMBEDDED = {"tracking_uri": "sqlite:///participants.db",
            "organizer_tracking_uri": "sqlite:///organizers.db",
            "artifact_location": "artifacts", "organizer_artifact_location": "private-artifacts",
            "item_tables": True}


def copy_demo(demo_dirs, kind: str, tmp_path: Path) -> PreparedCompetition:
    return PreparedCompetition.open(shutil.copytree(demo_dirs[kind], tmp_path / kind))


def cells(path: Path) -> set[str]:
    """Every CSV cell of a file (a non-CSV file: its whitespace-separated words)."""
    text = path.read_text(errors="replace")
    try:
        return {c.strip() for row in csv.reader(io.StringIO(text)) for c in row}
    except csv.Error:
        return set(text.split())


# --- 1. the organizers' artifacts under their own root -------------------------------------

@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-landmarks"])
def test_no_private_score_or_item_under_the_participants_artifact_root(
        demo_dirs, kind, tmp_path, monkeypatch):
    config = configure(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, kind, tmp_path)
    board = Board(comp)
    naive = tmp_path / f"naive{comp.task.submission_suffix}"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    outcomes = [board.submissions.submit(path, team) for team, path in
                (("a", next(comp.public_dir.glob("sample_submission.*"))), ("b", naive))]
    assert {o.status for o in outcomes} == {"scored"}
    usage = {str(k): u for k, u in comp.task.usage(comp.load_solution()).items()}
    private_items = {k for k, u in usage.items() if u == "Private"}
    public_items = {k for k, u in usage.items() if u == "Public"}
    assert private_items and public_items

    ours = tmp_path / "artifacts"
    theirs = tmp_path / "private-artifacts"
    files = [p for p in ours.rglob("*") if p.is_file()]
    assert files  # the participants' per-item tables are there (public rows)...
    seen = set().union(*(cells(p) for p in files))
    assert public_items <= seen
    assert not private_items & seen, sorted(private_items & seen)  # ...and nothing private
    # The private scores as text, where that text could not be any other number's.
    private_scores = {repr(value) for value in (board.submissions.get(o.id)["private_score"]
                                                for o in outcomes) if len(repr(value)) >= 8}
    for path in files:
        text = path.read_text(errors="replace")
        assert "Private" not in text and not any(s in text for s in private_scores), path

    # The organizers' runs keep theirs under their own root: every item, both splits.
    organizers = tracking.Tracker(config, "organizers")
    for o in outcomes:
        [run] = organizers.runs(comp.key, f"tags.submission_id = '{o.id}'")
        assert run.info.artifact_uri.startswith(theirs.resolve().as_uri() + "/")
    private_files = [p for p in theirs.rglob("*.csv")]
    assert private_files and private_items <= set().union(*(cells(p) for p in private_files))


def test_the_organizers_root_must_be_separate(tmp_path, monkeypatch):
    for inside in ("artifacts", "artifacts/organizers", "."):
        with pytest.raises(ConfigError, match="must be separate folders"):
            configure({**EMBEDDED, "organizer_artifact_location": inside}, tmp_path,
                      monkeypatch)
    with pytest.raises(ConfigError, match="must contain {team}"):
        configure({**EMBEDDED, "team_experiment_name": "{competition}/{id}/teams"}, tmp_path,
                  monkeypatch)


def test_an_old_organizers_experiment_in_the_participants_root_gets_no_artifacts(
        demo_dirs, tmp_path, monkeypatch):
    """An organizers' experiment made when both stores shared a root keeps that location:
    its runs are still logged, their artifacts are not."""
    config = configure(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    client = tracking.Tracker(config, "organizers").client
    client.create_experiment(config.experiment(comp.key, "organizers"),
                             artifact_location=config.artifact_location)
    outcome = Board(comp).submissions.submit(next(comp.public_dir.glob("sample_*")), "a")
    [run] = tracking.Tracker(config, "organizers").runs(comp.key)
    assert run.data.metrics["private_score"] == pytest.approx(
        Board(comp).submissions.get(outcome.id)["private_score"])
    participants = tmp_path / "artifacts"
    assert all("Private" not in p.read_text(errors="replace")
               for p in participants.rglob("*") if p.is_file())
    assert client.list_artifacts(run.info.run_id) == []


# --- 2. each team its own runs on a shared basic-auth server ----------------------------------

@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    from tests.mlflow_server import AuthServer

    server = AuthServer(tmp_path_factory.mktemp("mlflow-auth"))
    yield server
    server.stop()


def as_user(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def refused(call, *args) -> None:
    """`call(*args)` is refused: 403 Forbidden."""
    with pytest.raises(MlflowException) as caught:
        call(*args)
    assert caught.value.get_http_status_code() == 403 or \
        caught.value.error_code == "PERMISSION_DENIED", caught.value


def test_each_team_reads_and_writes_only_its_own_runs(auth_server, demo_dirs, tmp_path,
                                                      monkeypatch, capsys):
    url = auth_server.url
    config = configure({"tracking_uri": url, "organizer_tracking_uri": url,
                        "experiment_name": f"{{competition}}-{tmp_path.name}/{{id}}/{{audience}}",
                        "team_experiment_name": f"{{competition}}-{tmp_path.name}/{{id}}/{{team}}",
                        "item_tables": True}, tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    board = Board(comp)
    for team in ("red", "blue"):
        board.teams.add(team, [])
    as_user(monkeypatch, auth_server.admin, auth_server.password)
    code, out, err = run_cli(["tracking-users", comp.root], capsys)
    assert code == 0, err
    passwords = dict(re.findall(r"MLflow user (\S+), .*\n  password: (\S+)", out))
    red_user, blue_user = (config.experiment(comp.key, "participants", t)
                           for t in ("red", "blue"))
    assert set(passwords) == {red_user, blue_user}
    # Run again: the same users and grants, no password shown again.
    code, again, err = run_cli(["tracking-users", comp.root], capsys)
    assert code == 0 and "password:" not in again and red_user in again, again + err

    # The harness logs every scored submission with the admin's credentials.
    sample = next(comp.public_dir.glob("sample_submission.*"))
    naive = tmp_path / "naive.csv"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    red_sub = board.submissions.submit(sample, "red")
    blue_sub = board.submissions.submit(naive, "blue")
    admin = MlflowClient(url)

    def run_of(audience, team, outcome):
        tracker = tracking.Tracker(config, audience, team)
        [run] = tracker.runs(comp.key, f"tags.submission_id = '{outcome.id}'")
        return run

    red_run = run_of("participants", "red", red_sub)
    blue_run = run_of("participants", "blue", blue_sub)
    organizers_run = run_of("organizers", None, blue_sub)
    red_exp, blue_exp = red_run.info.experiment_id, blue_run.info.experiment_id
    assert admin.get_experiment(red_exp).name == red_user != admin.get_experiment(blue_exp).name

    as_user(monkeypatch, red_user, passwords[red_user])
    red = MlflowClient(url)
    # Its own: read, search, download, write.
    assert red.get_run(red_run.info.run_id).data.metrics["public_score"] == \
        red_sub.public_score
    assert [r.info.run_id for r in red.search_runs([red_exp])] == [red_run.info.run_id]
    assert red.list_artifacts(red_run.info.run_id, "scores")
    red.download_artifacts(red_run.info.run_id, "scores", str(tmp_path / "own"))
    # The server keeps them under its own proxied root (--serve-artifacts).
    assert list(auth_server.artifacts.rglob(f"{red_run.info.run_id}/artifacts/scores/*.csv"))
    mine = red.create_run(red_exp, tags={"team": "red"})
    red.log_metric(mine.info.run_id, "loss", 0.5)
    red.set_terminated(mine.info.run_id)
    # Another team's, and the organizers': nothing, neither read nor written.
    for run in (blue_run, organizers_run):
        run_id, experiment = run.info.run_id, run.info.experiment_id
        refused(red.get_run, run_id)
        refused(red.get_experiment, experiment)
        refused(red.create_run, experiment)
        refused(red.log_metric, run_id, "public_score", 1.0)
        refused(red.set_tag, run_id, "team", "red")
        refused(red.list_artifacts, run_id)
        refused(red.download_artifacts, run_id, "scores", str(tmp_path / "theirs"))
        assert red.search_runs([experiment]) == []
    assert {e.name for e in red.search_experiments()} == {red_user}

    # No team creates an experiment: not the one of a team that does not exist yet (it would
    # be MANAGE of it, and could fill it with runs before that team sees it), nor any other,
    # nor the UI's demo data.
    green_user = config.experiment(comp.key, "participants", "green")
    for name in (green_user, f"{red_user}-scratch"):
        refused(red.create_experiment, name)
    with pytest.raises(MlflowException, match="may not create experiments"):
        red.create_experiment(green_user)
    demo = httpx.post(f"{url}/ajax-api/3.0/mlflow/demo/generate", json={},
                      auth=(red_user, passwords[red_user]))
    assert demo.status_code == 403, demo.text
    as_user(monkeypatch, auth_server.admin, auth_server.password)
    assert admin.get_experiment_by_name(green_user) is None
    assert admin.get_experiment_by_name("MLflow Demo") is None
    assert admin.get_run(blue_run.info.run_id).data.tags["team"] == "blue"  # untouched
    # A grant from before (a server without that refusal gave a squatter MANAGE) is taken
    # back once the organizer gives the experiment's team its user.
    squatted = admin.create_experiment(green_user)
    grant = httpx.post(f"{url}/api/3.0/mlflow/users/permissions/grant", json={
        "username": red_user, "resource_type": "experiment", "resource_id": squatted,
        "permission": "MANAGE"}, auth=(auth_server.admin, auth_server.password))
    assert grant.status_code == 200, grant.text
    code, out, err = run_cli(["tracking-users", comp.root, "--team", "green"], capsys)
    assert code == 0 and f"took back the grants of {red_user}" in out, out + err
    as_user(monkeypatch, red_user, passwords[red_user])
    refused(MlflowClient(url).get_experiment, squatted)

    # `competition ui --team` prints the team's own runs table on the server.
    code, out, err = run_cli(["ui", comp.root, "--team", "red"], capsys)
    assert code == 0 and f"{url}/#/experiments/{red_exp}/runs" in out, out + err


def test_team_users_need_a_server_and_team_experiments(demo_dirs, tmp_path, monkeypatch,
                                                       capsys):
    configure(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    code, _, err = run_cli(["tracking-users", comp.root, "--team", "a"], capsys)
    assert code == 2 and "not a server" in err
    configure({"tracking_uri": "http://127.0.0.1:9"}, tmp_path, monkeypatch)
    code, _, err = run_cli(["tracking-users", comp.root, "--team", "a"], capsys)
    assert code == 2 and "team_experiment_name" in err


# --- 3. an ensemble combines only the team's own runs ----------------------------------------

def test_ensemble_refuses_runs_that_are_not_the_teams_own(demo_dirs, tmp_path, monkeypatch,
                                                          capsys):
    from competition.training.run import run

    config = configure({**EMBEDDED, "team_experiment_name": "{competition}/{id}/{team}"},
                       tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    entry = REPO / "submissions" / "threshold"
    smoke = entry / "smoke.yaml"
    red = run(comp.root, entry, smoke, team="red", baseline=False)["mlflow_run_id"]
    red_2 = run(comp.root, entry, smoke, team="red", baseline=False, submit=False
                )["mlflow_run_id"]
    blue = run(comp.root, entry, smoke, team="blue", baseline=False)["mlflow_run_id"]
    base = run(comp.root, entry, smoke)["mlflow_run_id"]  # the organizers' baseline
    client = tracking.Tracker(config).client
    assert client.get_run(red).data.tags["team"] == "red"
    assert client.get_run(base).data.tags["team"] == "baseline-threshold"

    def ensemble(*args):
        return run_cli(["ensemble", comp.root, *args, "--no-submit"], capsys)

    # A participant team: its own runs only.
    code, out, err = ensemble(red, red_2, "--team", "red", "--as-participant")
    assert code == 0, err
    code, _, err = ensemble(red, blue, "--team", "red", "--as-participant")
    assert code == 2 and f"member {blue}" in err and "belongs to team 'blue', not to 'red'" \
        in err, err
    code, _, err = ensemble(red, base, "--team", "red", "--as-participant")
    assert code == 2 and "belongs to team 'baseline-threshold'" in err, err
    # By submission id too (the submission blue made).
    blue_submission = client.get_run(blue).data.tags["submission_id"]
    code, _, err = ensemble(red, blue_submission, "--team", "red", "--as-participant")
    assert code == 2 and f"member {blue_submission}" in err and "'blue'" in err, err
    # The organizers' baseline: baseline runs, never a participant team's.
    code, _, err = ensemble(base, base)
    assert code == 0, err
    code, _, err = ensemble(base, red)
    assert code == 2 and f"member {red}" in err and "participant team 'red'" in err, err
    # A run that names no team, or names a team whose experiment does not hold it.
    experiment = client.get_run(red).info.experiment_id
    mine = {"competition": comp.name, tracking.ID_TAG: comp.key.id}
    anonymous = client.create_run(experiment, tags=mine).info.run_id
    code, _, err = ensemble(red, anonymous, "--team", "red", "--as-participant")
    assert code == 2 and "names no team" in err, err
    forged = client.create_run(client.get_run(blue).info.experiment_id,
                               tags={**mine, "team": "red"}).info.run_id
    code, _, err = ensemble(red, forged, "--team", "red", "--as-participant")
    assert code == 2 and "lies in experiment" in err, err
    assert "Traceback" not in err


# --- 4. no run lost under concurrent submissions ----------------------------------------------

PARALLEL = 24  # spawned processes (each imports MLflow): enough to contend for the lock


def _submit(comp: Path, path: Path, team: str, barrier, queue) -> None:
    barrier.wait(timeout=120)
    try:
        outcome = Board(PreparedCompetition.open(comp)).submissions.submit(path, team)
        queue.put((outcome.id, outcome.status))
    except Exception as e:  # reported, never hung on
        queue.put((None, repr(e)))


def test_concurrent_submissions_lose_no_run(demo_dirs, tmp_path, monkeypatch):
    """24 processes submit at once to fresh SQLite tracking stores (the store is created and
    migrated under that load too): every scored submission has exactly one run in each."""
    config = configure({**EMBEDDED, "item_tables": False}, tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    Board(comp)  # the submission store's schema, as `prepare` users have it
    base = (comp.public_dir / "sample_submission.csv").read_text()
    first = base.splitlines()[1].split(",")[0]
    paths = []
    for k in range(PARALLEL):
        path = tmp_path / f"variant{k}.csv"
        path.write_text(base + f"{first},{k + 1} 1\n")
        paths.append(path)
    ctx = clean_context()
    barrier, queue = ctx.Barrier(PARALLEL), ctx.Queue()
    procs = [ctx.Process(target=_submit, args=(comp.root, paths[k], f"team{k}", barrier,
                                                queue)) for k in range(PARALLEL)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    scored = sorted(str(i) for i, status in results if status == "scored")
    assert len(scored) == PARALLEL, results
    for audience in ("participants", "organizers"):
        runs = tracking.Tracker(config, audience).runs(comp.key)
        counts = Counter(r.data.tags.get("submission_id") for r in runs)
        assert sorted(counts.elements()) == scored, (audience, len(runs), counts)
