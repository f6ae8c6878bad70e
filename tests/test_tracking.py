"""MLflow tracking and ensembles, against a real `mlflow server` on loopback and against the
embedded SQLite default; runs are read back through the MLflow client."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.ensembles import build as ensemble
from competition.ensembles import combine as combining
from competition.formats import maps as maps_format
from competition.formats.files import SubmissionFile
from competition.interfaces.subprocesses import stop_group
from competition.tasks import get_task
from competition.tracking import config as tracking_config
from competition.tracking import runs as tracking
from tests.browser import browser_page, chromium  # noqa: F401 (fixtures)
from tests.mlflow_server import free_port, wait_for
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]
ITEM_FILE = {"demo-nuclei": "per_image", "demo-em": "per_slice",
             "demo-landmarks": "per_specimen"}
ITEM_KEY = {"demo-nuclei": "ImageId", "demo-em": "slice", "demo-landmarks": "specimen"}


def switch_on(doc: dict, tmp_path: Path, monkeypatch) -> tracking_config.TrackingConfig:
    doc["experiment_name"] = f"{{competition}}-{tmp_path.name}/{{id}}/{{audience}}"
    doc.setdefault("item_tables", True)  # the tests read the per-item tables
    path = tmp_path / "mlflow.yaml"
    path.write_text(json.dumps(doc))
    monkeypatch.setenv(tracking_config.CONFIG_ENV, str(path))
    monkeypatch.setenv(tracking_config.SWITCH_ENV, "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tracking_config.load_config()


EMBEDDED = {"tracking_uri": "sqlite:///participants.db",
            "organizer_tracking_uri": "sqlite:///organizers.db", "artifact_location": "artifacts"}


@pytest.fixture(params=["embedded", "server"])
def tracked(request, tmp_path, monkeypatch) -> tracking_config.TrackingConfig:
    """Tracking switched on, to fresh stores: two SQLite files, or one real server (the two
    audiences then differ by experiment)."""
    if request.param == "server":
        url = request.getfixturevalue("mlflow_server").url
        return switch_on({"tracking_uri": url, "organizer_tracking_uri": url}, tmp_path,
                         monkeypatch)
    return switch_on(dict(EMBEDDED), tmp_path, monkeypatch)


def copy_demo(demo_dirs, kind: str, tmp_path: Path) -> PreparedCompetition:
    return PreparedCompetition.open(shutil.copytree(demo_dirs[kind], tmp_path / kind))


def runs_of(config, audience, comp, submission_id=None, kind=None):
    tracker = tracking.Tracker(config, audience)
    clauses = []
    if submission_id is not None:
        clauses.append(f"tags.submission_id = '{submission_id}'")
    if kind is not None:
        clauses.append(f"tags.kind = '{kind}'")
    return tracker, tracker.runs(comp.key, " and ".join(clauses))


def artifact_text(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp_path))).read_text()


@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_every_scored_submission_is_logged_and_participants_never_see_private(
        tracked, demo_dirs, kind, tmp_path):
    comp = copy_demo(demo_dirs, kind, tmp_path)
    board = Board(comp)
    naive = tmp_path / f"day-one{comp.task.submission_suffix}"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    sample = next(comp.public_dir.glob("sample_submission.*"))
    solution = comp.load_solution()
    # Each item's split, as the task declares it for this solution.
    usage = {str(k): u for k, u in comp.task.usage(solution).items()}
    assert set(usage.values()) == {"Public", "Private"}
    for team, path in (("sample", sample), ("day-one", naive)):
        outcome = board.submissions.submit(path, team)
        assert outcome.status == "scored"
        row = board.submissions.get(outcome.id)

        tracker, runs = runs_of(tracked, "participants", comp, outcome.id)
        assert len(runs) == 1
        run = runs[0]
        assert run.data.tags["kind"] == "submission" and run.data.tags["team"] == team
        assert run.data.params["file_sha256"] == row["file_sha256"]
        assert run.data.params["scorer_version"] == row["scorer_version"]
        metrics = run.data.metrics
        assert metrics["public_score"] == row["public_score"]  # exactly the stored score
        assert not any("private" in k or k.startswith("all.") or k == "score"
                       for k in metrics), sorted(metrics)
        # The detail metrics are those of the public split alone.
        if kind == "demo-nuclei":
            per_t = [v for k, v in metrics.items() if k.startswith("public.per_threshold.")]
            assert len(per_t) == 10 and np.mean(per_t) == pytest.approx(row["public_score"])
        elif kind == "demo-em":
            assert metrics["public.v_rand"] == pytest.approx(row["public_score"])
            assert "public.v_info" in metrics and "public.pixel_error" in metrics
        else:
            assert metrics["public.rmse"] == pytest.approx(row["public_score"])
        table = list(csv.DictReader(io.StringIO(artifact_text(
            tracker.client, run.info.run_id, f"scores/{ITEM_FILE[kind]}.csv", tmp_path))))
        public_items = {r[ITEM_KEY[kind]] for r in table}
        assert public_items == {k for k, u in usage.items() if u == "Public"}
        assert {r["usage"] for r in table} == {"Public"}

        tracker, runs = runs_of(tracked, "organizers", comp, outcome.id)
        assert len(runs) == 1
        metrics = runs[0].data.metrics
        assert metrics["public_score"] == row["public_score"]
        assert metrics["private_score"] == row["private_score"]
        assert metrics["score"] == pytest.approx(comp.task.score(
            SubmissionFile(path), solution, comp.load_reference(solution)).score)
        assert any(k.startswith("all.") for k in metrics)
        table = list(csv.DictReader(io.StringIO(artifact_text(
            tracker.client, runs[0].info.run_id, f"scores/{ITEM_FILE[kind]}.csv", tmp_path))))
        assert {r["usage"] for r in table} == {"Public", "Private"}
        assert len(table) == len(usage)
        # The organizers' rows, as logged: every item once, with its split; the participants'
        # rows are exactly the public ones among them.
        assert {r[ITEM_KEY[kind]]: r["usage"] for r in table} == usage
        assert public_items == {r[ITEM_KEY[kind]] for r in table if r["usage"] == "Public"}
        # The task's detail tables (landmarks: per landmark), a CSV for each split.
        logged = {a.path for a in tracker.client.list_artifacts(runs[0].info.run_id, "scores")}
        tables = {f"scores/per_landmark_{split}.csv" for split in ("public", "all")}
        assert tables <= logged if kind == "demo-landmarks" else not tables & logged
        if kind == "demo-landmarks":
            rows = list(csv.DictReader(io.StringIO(artifact_text(
                tracker.client, runs[0].info.run_id, "scores/per_landmark_all.csv",
                tmp_path))))
            landmarks = solution.landmarks
            assert [r["landmark"] for r in rows] == landmarks
            assert {"n", "rmse", "mean", "median"} <= set(rows[0])


def test_rescore_logs_new_runs_that_match_the_store(tracked, demo_dirs, tmp_path):
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    board = Board(comp)
    outcome = board.submissions.submit(next(comp.public_dir.glob("sample_submission.*")), "a")
    board.rescoring.rescore()
    _, runs = runs_of(tracked, "organizers", comp, outcome.id)
    assert sorted(r.data.tags["reason"] for r in runs) == ["rescore", "submit"]
    row = board.submissions.get(outcome.id)
    for run in runs:
        assert run.data.metrics["private_score"] == row["private_score"]


def test_an_unreachable_tracking_server_never_fails_a_submission(
        demo_dirs, tmp_path, monkeypatch, caplog):
    path = tmp_path / "mlflow.yaml"
    path.write_text(f"tracking_uri: http://127.0.0.1:{free_port()}\n"
                    "organizer_tracking_uri: null\n")
    monkeypatch.setenv(tracking_config.CONFIG_ENV, str(path))
    monkeypatch.setenv(tracking_config.SWITCH_ENV, "on")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    # The package's warnings reach pytest's handler even after a command in this session set
    # up the command line's logging (which stops them at the "competition" logger).
    monkeypatch.setattr(logging.getLogger("competition"), "propagate", True)
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    board = Board(comp)
    outcome = board.submissions.submit(next(comp.public_dir.glob("sample_submission.*")), "a")
    assert outcome.status == "scored"
    assert board.submissions.get(outcome.id)["public_score"] == outcome.public_score
    # The warning is logged (the command line prints the package's warnings on stderr).
    assert any(r.levelname == "WARNING" and "MLflow logging of submission" in r.getMessage()
               for r in caplog.records), caplog.text


def test_training_runs_and_ensembles(tracked, demo_dirs, tmp_path, monkeypatch):
    from competition.training.run import run

    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    unet = REPO / "submissions" / "unet"
    record_u = run(comp.root, unet, unet / "smoke.yaml", overrides=["nuclei.epochs=2"])
    threshold = REPO / "submissions" / "threshold"
    record_t = run(comp.root, threshold, threshold / "smoke.yaml")
    submissions = Board(comp).submissions

    tracker, runs = runs_of(tracked, "participants", comp, kind="training")
    by_id = {r.info.run_id: r for r in runs}
    run_u = by_id[record_u["mlflow_run_id"]]
    assert run_u.data.params["entry"] == "unet" and run_u.data.params["epochs"] == "2"
    assert run_u.data.tags["submission_id"] == str(record_u["submission_id"])
    assert run_u.data.metrics["public_score"] == \
        submissions.get(record_u["submission_id"])["public_score"]
    client = tracker.client
    losses = client.get_metric_history(run_u.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]
    assert [m.value for m in losses] == [h["loss"] for h in record_u["history"]]
    assert len(client.get_metric_history(run_u.info.run_id, "val_score")) >= 2
    listed = {a.path for d in ("model", "predictions", "validation", "submission")
              for a in client.list_artifacts(run_u.info.run_id, d)}
    assert {"model/model.keras", "predictions/predictions.npz",
            "validation/validation.gif", "submission/submission.csv"} <= listed
    gif = Path(client.download_artifacts(run_u.info.run_id, "validation/validation.gif",
                                         str(tmp_path)))
    with Image.open(gif) as im:
        assert im.n_frames == 3  # two epochs and the final model
    npz = Path(client.download_artifacts(run_u.info.run_id, "predictions/predictions.npz",
                                         str(tmp_path)))
    maps = maps_format.from_npz(npz.read_bytes())
    test_ids = sorted(p.name for p in (comp.public_dir / "test").iterdir())
    assert sorted(maps) == test_ids and all(m.shape[-1] == 2 for m in maps.values())

    # Mean ensemble of the two baselines, members named by submission id and by run id.
    record = ensemble.build(comp.root, [str(record_u["submission_id"]),
                                        record_t["mlflow_run_id"]], "mean")
    assert record["status"] == "scored"
    _, runs = runs_of(tracked, "participants", comp, kind="ensemble")
    logged = {r.info.run_id: r for r in runs}[record["mlflow_run_id"]]
    assert logged.data.tags["member.0"] == record_u["mlflow_run_id"]
    assert logged.data.tags["member.1"] == record_t["mlflow_run_id"]
    assert logged.data.metrics["public_score"] == \
        submissions.get(record["submission_id"])["public_score"]

    # Greedy chooses on out-of-fold maps of the training images (`competition cv` of each
    # member's entry and configuration): the hidden solution, public split included, is
    # neither read nor scored; every score is of training labels, which have no split.
    from competition.training.cv import cross_validate

    folders = [cross_validate(comp.root, unet, unet / "smoke.yaml", ["nuclei.epochs=2"],
                              folds=2)["out_dir"],
               cross_validate(comp.root, threshold, threshold / "smoke.yaml", folds=2)["out_dir"]]
    task = comp.task
    train_ids = set(task.load_train(comp.public_dir).ids)
    read, scored = [], []
    load_solution, score = type(task).load_solution, type(task).score

    def spy_load(self, path):
        read.append(Path(path))
        return load_solution(self, path)

    def spy_score(self, submission, solution, reference=None, only=None):
        scored.append((only, self.usage(solution)))
        return score(self, submission, solution, reference, only)

    monkeypatch.setattr(type(task), "load_solution", spy_load)
    monkeypatch.setattr(type(task), "score", spy_score)
    members = [record_u["mlflow_run_id"], record_t["mlflow_run_id"]]
    with pytest.raises(Exception, match="run `competition cv DIR ENTRY` for each member"):
        ensemble.build(comp.root, members, "greedy", submit=False)
    with pytest.raises(Exception, match="1 --cv folders for 2 members"):
        ensemble.build(comp.root, members, "greedy", submit=False, cv=folders[:1])
    with pytest.raises(Exception, match="cross-validates 'threshold' but member"):
        ensemble.build(comp.root, members, "greedy", submit=False, cv=folders[::-1])
    record = ensemble.build(comp.root, members, "greedy", rounds=3, submit=False, cv=folders)
    assert read and comp.solution_path.resolve() not in {p.resolve() for p in read}
    assert scored and all(only is None and set(usage) == train_ids
                          and set(usage.values()) == {None} for only, usage in scored)
    assert sum(record["weights"]) == pytest.approx(1)
    assert record["cv"] == [str(f) for f in folders]
    scores = record["greedy_oof_scores"]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    _, runs = runs_of(tracked, "participants", comp, kind="ensemble")
    logged = {r.info.run_id: r for r in runs}[record["mlflow_run_id"]]
    history = tracker.client.get_metric_history(logged.info.run_id, "greedy_oof_score")
    assert [m.value for m in history] == scores


def test_combining_maps():
    a = {"x": np.zeros((4, 4, 2), np.float32)}
    b = {"x": np.ones((4, 4, 2), np.float32)}
    c = {"x": np.full((4, 4, 1), 0.25, np.float32)}
    assert np.allclose(combining.combine([a, b])["x"], 0.5)
    assert np.allclose(combining.combine([a, b], weights=[1, 3])["x"], 0.75)
    assert np.allclose(combining.combine([a, b, b], "median")["x"], 1)
    mixed = combining.combine([b, c])["x"]  # channels cut to the fewest
    assert mixed.shape == (4, 4, 1) and np.allclose(mixed, 0.625)
    # EM: a volume is its slices by number, each (H, W, 1).
    zeros = {str(z): np.zeros((3, 3, 1)) for z in range(2)}
    ones = {str(z): np.ones((3, 3, 1)) for z in range(2)}
    volume = combining.combine([zeros, ones], weights=[3, 1])
    assert sorted(volume) == ["0", "1"]
    assert all(v.shape == (3, 3, 1) and np.allclose(v, 0.25) for v in volume.values())
    # Landmarks: coordinates per specimen, point-wise, kept in float64 through the archive.
    p = {"s1": np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])}
    q = {"s1": np.array([[2.0, 0.0, 0.0], [1.0, 2.0, 5.0]])}
    r = {"s1": np.array([[9.0, 9.0, 9.0], [1.0, 2.0, 4.0]])}
    assert np.allclose(combining.combine([p, q])["s1"], [[1, 0, 0], [1, 2, 4]])
    assert np.allclose(combining.combine([p, q, r], "median")["s1"], [[2, 0, 0], [1, 2, 4]])
    points = {"s1": np.array([[12.3456789012, -0.5, 7.0]])}
    back = maps_format.from_npz(maps_format.to_npz(points, get_task("landmarks").map_dtype))
    assert back["s1"].dtype == np.float64 and np.array_equal(back["s1"], points["s1"])
    with pytest.raises(Exception, match="weights"):
        combining.combine([a, b], weights=[1])
    with pytest.raises(Exception, match="median"):
        combining.combine([a, b], "median", weights=[1, 1])
    with pytest.raises(Exception, match="other items"):
        combining.check_compatible([a, {"y": a["x"]}], ["1", "2"])
    with pytest.raises(Exception, match="shape"):
        combining.check_compatible([a, {"x": np.zeros((5, 4, 2))}], ["1", "2"])


def test_greedy_selection_with_replacement():
    values = [0.0, 1.0, 0.6]

    def score(bag):  # best when the bag's mean value is 0.8: two of member 1, two of 2...
        return -abs(np.mean([values[k] for k in bag]) - 0.8)

    bag, trajectory = combining.greedy_selection(3, score, rounds=10, higher_is_better=True)
    assert bag[0] == 1 and 2 in bag and 0 not in bag
    assert np.mean([values[k] for k in bag]) == pytest.approx(0.8)
    assert trajectory == sorted(trajectory)
    assert combining.bag_weights([1, 1, 2], 3) == [0, 2 / 3, 1 / 3]
    # Lower is better (RMSE): the same search minimises.
    bag, _ = combining.greedy_selection(3, lambda b: abs(np.mean([values[k] for k in b]) - 0.6),
                                        rounds=5, higher_is_better=False)
    assert bag == [2]


def test_ensemble_refuses_bad_members_clearly(tracked, demo_dirs, tmp_path, capsys):
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    for members, fragment in ((["999"], "submission 999 carries no predictions"),
                              (["not-a-run"], "give an MLflow run id"),
                              (["0" * 32], "no MLflow run with that id")):
        code, out, err = run_cli(["ensemble", comp.root, *members], capsys)
        assert code == 2 and fragment in err and "Traceback" not in out + err, (members, err)
    code, _, err = run_cli(["ensemble", comp.root, "1", "--method", "vote"], capsys)
    assert code == 2 and "choose one of mean, median, greedy" in err


def test_ui_serves_the_configured_store(tracked, demo_dirs, tmp_path):
    """The UI answers, and its address opens on the competition's runs table (MLflow 3
    shows an experiment's runs first only if it is marked as model development)."""
    comp = copy_demo(demo_dirs, "demo-em", tmp_path)
    Board(comp).submissions.submit(next(comp.public_dir.glob("sample_*")), "a")
    port = free_port()
    log = tmp_path / "ui.log"
    env = dict(os.environ)
    process = subprocess.Popen([sys.executable, "-m", "competition", "ui", comp.root,
                                "--port", str(port)], stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if tracked.tracking_uri.startswith("http"):
            assert process.wait(60) == 0
            assert "server already" in log.read_text()
            return
        wait_for(f"http://127.0.0.1:{port}/health", process, log)
        deadline = time.monotonic() + 30
        while "MLflow UI: " not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        tracker = tracking.Tracker(tracked, "participants")
        experiment = tracker.client.get_experiment_by_name(
            tracked.experiment(comp.key, "participants"))
        url = f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
        assert f"MLflow UI: {url}" in log.read_text()
        assert experiment.tags[tracking.KIND_TAG] == "custom_model_development"
        wait_for(f"http://127.0.0.1:{port}/", process, log)
    finally:
        stop_group(process)
    assert group_is_gone(process.pid)  # no server worker outlives `competition ui`


def group_is_gone(pgid: int, seconds: float = 15) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_run_comparison_in_a_real_browser(demo_dirs, tmp_path, monkeypatch,
                                          browser_page):  # noqa: F811
    """Two baselines and their ensemble compared in the MLflow UI that `competition ui`
    starts (the README's screenshot comes from here)."""
    from competition.training.run import run

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    records = [run(comp.root, REPO / "submissions" / entry,
                   REPO / "submissions" / entry / "smoke.yaml", overrides=overrides)
               for entry, overrides in (("threshold", []), ("unet", ["nuclei.epochs=4"]))]
    ids = [r["mlflow_run_id"] for r in records]
    ids.append(ensemble.build(comp.root, ids, "mean")["mlflow_run_id"])
    experiment = tracking.Tracker(config).experiment_id(comp.key)

    port = free_port()
    log = tmp_path / "ui.log"
    process = subprocess.Popen([sys.executable, "-m", "competition", "ui", "--port",
                                str(port)], stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process, log)
        page = browser_page
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/#/compare-runs?runs={json.dumps(ids)}"
                  f"&experiments={json.dumps([experiment])}".replace(" ", ""))
        page.wait_for_selector("text=public_score", timeout=60_000)
        page.wait_for_selector(".js-plotly-plot", timeout=60_000)
        content = page.content()
        for record in records:
            assert Path(record["submission"]).parent.name in content
        assert "greedy" not in content and "private" not in content.lower()
        shots = Path(os.environ.get("COMPETITION_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        page.click("[aria-label=Close]")  # the assistant's side panel
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "mlflow-compare.png"))
        for section in ("Visualizations", "Parameters"):  # bring the metrics table up
            page.click(f"[aria-label='collapse {section}']")
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "mlflow-compare-metrics.png"))
    finally:
        stop_group(process)


def test_a_terminated_training_run_is_ended_killed(tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    script = ("import time\nfrom competition.tracking import runs as tracking\n"
              "key = tracking.CompetitionKey('demo-id-1', 'demo')\n"
              "with tracking.training_run(key, 'long', {'kind': 'training'}):\n"
              "    print('started', flush=True)\n    time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             text=True, cwd=tmp_path)
    assert child.stdout.readline().strip() == "started"
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 128 + signal.SIGTERM
    runs = tracking.Tracker(config, "participants").runs(
        tracking.CompetitionKey("demo-id-1", "demo"), "")
    assert [r.info.status for r in runs] == ["KILLED"]


def test_item_tables_are_logged_only_when_asked(demo_dirs, tmp_path, monkeypatch):
    """By default a scored submission logs its metrics, not a per-item artifact."""
    config = switch_on({**EMBEDDED, "item_tables": False}, tmp_path, monkeypatch)
    comp = copy_demo(demo_dirs, "demo-nuclei", tmp_path)
    outcome = Board(comp).submissions.submit(next(comp.public_dir.glob("sample_*")), "a")
    for audience in ("participants", "organizers"):
        tracker, runs = runs_of(config, audience, comp, outcome.id)
        assert runs[0].data.metrics["public_score"] == outcome.public_score
        assert [a.path for a in tracker.client.list_artifacts(runs[0].info.run_id)] == []
