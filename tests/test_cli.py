"""The CLI contract: commands, exit codes and the JSON shapes other parts rely on."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from competition.board.prepared import PreparedCompetition
from competition.formats import em_tiff, landmarks_csv
from tests.test_bad_input import nuclei_valid, run_cli


def score_json(capsys, *args) -> dict:
    code, out, err = run_cli(["score", *args, "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_prepare_validate_score_via_cli(tmp_path, capsys):
    comp = tmp_path / "nuclei"
    code, out, err = run_cli(["prepare", "demo-nuclei", "--out", comp, "--seed", "7"], capsys)
    assert code == 0, err
    assert "prepared" in out
    code, out, _ = run_cli(["validate", comp, comp / "public" / "sample_submission.csv"],
                           capsys)
    assert code == 0 and "OK" in out and "15 images" in out
    code, out, _ = run_cli(["info", comp], capsys)
    assert code == 0 and "daily_limit: 5" in out
    assert re.search(r"^id: [0-9a-f]{32}$", out, re.M)  # the key of its MLflow runs
    code, _, err = run_cli(["prepare", "no-such-kind", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "unknown kind" in err
    code, _, err = run_cli(["prepare", "dsb2018", "--out", tmp_path / "y"], capsys)
    assert code == 2 and "--source" in err


def test_nuclei_json_shape(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(comp))
    data = score_json(capsys, comp, path)
    assert data["score"] == data["public"] == data["private"] == 1.0
    assert data["n_images"] == 15
    assert list(data["per_threshold"]) == [f"{t / 100:.2f}" for t in range(50, 100, 5)]
    assert "per_image" not in data
    data = score_json(capsys, comp, path, "--per-image")
    assert len(data["per_image"]) == 15
    assert {"ImageId", "usage", "score", "n_true", "n_pred", "tp"} <= set(data["per_image"][0])
    assert sum(r["usage"] == "Public" for r in data["per_image"]) == 5


def test_public_and_private_are_means_over_their_images(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    # Predict only the first half of the images' nuclei: image scores differ.
    lines = nuclei_valid(comp).splitlines()
    ids = sorted({ln.split(",")[0] for ln in lines[1:]})
    keep = set(ids[: len(ids) // 2])
    body = [ln if ln.split(",")[0] in keep else ln.split(",")[0] + "," for ln in lines[1:]]
    path.write_text(lines[0] + "\n" + "\n".join(body) + "\n")
    data = score_json(capsys, comp, path, "--per-image")
    rows = data["per_image"]
    for usage, key in (("Public", "public"), ("Private", "private")):
        scores = [r["score"] for r in rows if r["usage"] == usage]
        assert data[key] == pytest.approx(np.mean(scores))
    assert data["score"] == pytest.approx(np.mean([r["score"] for r in rows]))


def test_standalone_nuclei_form(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(comp))
    data = score_json(capsys, "nuclei", path, "--solution", comp / "private" / "solution.csv")
    assert data["score"] == 1.0 and data["public"] == 1.0
    # Without a Usage column there is no split.
    no_usage = tmp_path / "solution.csv"
    lines = (comp / "private" / "solution.csv").read_text().splitlines()
    no_usage.write_text("\n".join(",".join(ln.split(",")[:4]) for ln in lines) + "\n")
    data = score_json(capsys, "nuclei", path, "--solution", no_usage)
    assert data["score"] == 1.0 and data["public"] is None and data["private"] is None
    code, _, err = run_cli(["score", "nuclei", path], capsys)
    assert code == 2 and "--solution" in err


def test_em_json_shape(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-em"]
    raw = em_tiff.read_stack((comp / "public" / "test-volume.tif").read_bytes())
    path = tmp_path / "sub.tif"
    path.write_bytes(em_tiff.write_stack(raw.astype(np.float32) / 255))
    data = score_json(capsys, comp, path, "--per-image")
    assert {"v_rand", "v_info", "pixel_error", "fg_iou", "fg_dice", "adapted_rand_error",
            "best_threshold"} <= set(data)
    assert data["score"] == data["v_rand"] and 0 < data["score"] < 1
    assert data["public"] is not None and data["private"] is not None
    assert len(data["per_slice"]) == 6
    # Standalone form with the TIFF alone: no Usage split.
    alone = tmp_path / "labels.tif"
    alone.write_bytes((comp / "private" / "solution.tif").read_bytes())
    standalone = score_json(capsys, "em", path, "--solution", alone)
    assert standalone["score"] == pytest.approx(data["score"])
    assert standalone["public"] is None


def test_em_public_and_private_each_pick_their_best_threshold(demo_dirs, tmp_path, capsys):
    """Public and private are each the max over thresholds of their own slices' mean V_rand,
    not the value at the whole split's best threshold."""
    comp = demo_dirs["demo-em"]
    raw = em_tiff.read_stack((comp / "public" / "test-volume.tif").read_bytes())
    raw = raw.astype(np.float32) / 255
    usage = [r["usage"] for r in score_json(capsys, comp, comp / "public" / "test-volume.tif",
                                            "--per-image")["per_slice"]]
    public = np.array([u == "Public" for u in usage])
    assert public.any() and not public.all()
    # Brightened public slices: on the demo (seed 0) their best threshold moves up, so public,
    # private and the whole split each have a different best threshold.
    shifted = raw.copy()
    shifted[public] = raw[public] ** 0.6
    for name, volume in (("raw", raw), ("shifted", shifted)):
        path = tmp_path / f"{name}.tif"
        path.write_bytes(em_tiff.write_stack(volume))
        data = score_json(capsys, comp, path, "--per-image")
        assert max(data["v_rand_per_threshold"]) == pytest.approx(data["v_rand"])
        assert data["score"] <= max(data["public"], data["private"]) + 1e-12
        rows = data["per_slice"]
        assert [r["usage"] for r in rows] == usage
        table = np.array([r["v_rand_per_threshold"] for r in rows])
        k_whole = int(np.argmax(table.mean(axis=0)))
        assert data["best_threshold"] == data["thresholds"][k_whole]
        for key, mask in (("public", public), ("private", ~public)):
            means = table[mask].mean(axis=0)
            assert data[key] == pytest.approx(means.max(), abs=1e-12), (name, key)
            if name == "shifted":
                # Such a case: the subset's own best threshold is not the whole split's, so
                # the whole split's threshold would give a lower subset score.
                assert int(np.argmax(means)) != k_whole, key
                assert data[key] > means[k_whole] + 1e-3, (key, data[key], means[k_whole])


def test_landmarks_json_shape_with_reference(demo_dirs, tmp_path, capsys):
    comp = PreparedCompetition.open(demo_dirs["demo-landmarks"])
    solution = comp.load_solution()
    rng = np.random.default_rng(0)

    def write(points, name):
        rows = [(s, lm, points[i, k]) for i, s in enumerate(solution.specimens)
                for k, lm in enumerate(solution.landmarks)]
        path = tmp_path / name
        path.write_bytes(landmarks_csv.write_points(rows))
        return path

    sub = write(solution.truth + rng.normal(0, 0.5, solution.truth.shape), "sub.csv")
    ref = write(solution.truth + rng.normal(0, 1.0, solution.truth.shape), "ref.csv")
    data = score_json(capsys, comp.root, sub, "--per-image")
    assert {"rmse", "mean_error", "median_error", "per_landmark"} <= set(data)
    assert "win_rate" not in data  # the demo has no reference yet
    assert data["higher_is_better"] is False
    assert len(data["per_specimen"]) == len(solution.specimens)
    data = score_json(capsys, "landmarks", sub, "--solution", comp.solution_path,
                      "--reference", ref)
    assert {"win_rate", "ties", "wins", "reference_rmse"} <= set(data)
    assert 50 < data["win_rate"] <= 100  # half the noise of the reference
    assert {"landmark", "rmse", "mean", "median", "win_rate"} <= set(data["per_landmark"][0])
    # The task's detail table, printed as the task lays it out.
    code, out, err = run_cli(["score", "landmarks", sub, "--solution", comp.solution_path,
                              "--reference", ref], capsys)
    assert code == 0, err
    assert "per landmark (mm)" in out and "ties" in out  # headings wrap on a narrow console
    assert f"{data['per_landmark'][0]['rmse']:.3f}" in out


def test_human_readable_output(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(comp))
    code, out, _ = run_cli(["score", comp, path], capsys)
    assert code == 0 and "score" in out and "1.000000" in out
    assert "per_threshold" in out and "0.50:1.000000" in out  # numbers by name: one line


def test_demo_command(tmp_path, capsys):
    code, out, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0, err
    for kind in ("demo-nuclei", "demo-em", "demo-landmarks"):
        assert kind in out
        assert (tmp_path / "demo" / kind / "manifest.json").is_file()


def test_demo_naive_predictions_beat_the_samples(tmp_path):
    from competition.interfaces.demo import run

    rows = run(tmp_path / "demo")
    by = {(r["competition"], r["submission"].split(".")[0]): r for r in rows}
    assert all(r["rank"] == (1 if r["team"] == "day-one" else 2) for r in rows)
    assert by[("demo-nuclei", "day-one")]["private"] > 0.3
    assert by[("demo-nuclei", "sample_submission")]["private"] == 0.0
    assert by[("demo-em", "day-one")]["private"] > \
        by[("demo-em", "sample_submission")]["private"]
    assert by[("demo-landmarks", "day-one")]["private"] < 2.0
    assert by[("demo-landmarks", "sample_submission")]["private"] > 10.0


@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_task_aggregate_reproduces_public_and_private(demo_dirs, tmp_path, kind):
    """The per-item values stored for the bootstrap give back the official subset scores."""
    from competition.board import scoring

    comp = PreparedCompetition.open(demo_dirs[kind])
    path = tmp_path / ("sub" + comp.task.submission_suffix)
    path.write_bytes(comp.task.naive_submission(comp.public_dir))
    result = scoring.score(comp, path)
    from competition.tasks.base import aggregate

    for usage, expected in (("Public", result.public), ("Private", result.private)):
        values = np.array([comp.task.item_values(it) for it in result.items
                           if it["usage"] == usage])
        assert float(aggregate(comp.task, values)) == pytest.approx(expected, abs=1e-12)
    every = np.array([comp.task.item_values(it) for it in result.items])
    assert float(aggregate(comp.task, every)) == pytest.approx(result.score, abs=1e-12)
    # Resampling weights of all ones are the plain score.
    ones = np.ones((3, len(every)))
    np.testing.assert_allclose(aggregate(comp.task, every, ones), result.score, atol=1e-12)


def test_usage_errors_are_usage_messages_not_internal_errors(demo_dirs, capsys):
    code, out, err = run_cli(["submissions", demo_dirs["demo-em"], "--no-such-flag"], capsys)
    assert code == 2 and "No such option: --no-such-flag" in err
    assert "internal error" not in err and "Traceback" not in out + err


def test_submit_exits_alike_with_and_without_json(demo_dirs, tmp_path, capsys):
    """An invalid submission exits 2 in both modes; --json changes what is printed only."""
    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "comp"))
    bad = tmp_path / "bad.csv"
    bad.write_text("ImageId,EncodedPixels\nnot-an-image,1 1\n")
    code, out, err = run_cli(["submit", comp, bad, "--team", "owls"], capsys)
    assert code == 2 and "invalid" in err
    code, out, err = run_cli(["submit", comp, bad, "--team", "owls", "--json"], capsys)
    assert code == 2
    body = json.loads(out)
    assert body["status"] == "invalid" and "not-an-image" in body["error"]
    good = tmp_path / "good.csv"
    good.write_text(nuclei_valid(comp))
    code, out, _ = run_cli(["submit", comp, good, "--team", "owls", "--json"], capsys)
    assert code == 0 and json.loads(out)["status"] == "scored"


def test_demo_twice_reuses_its_folder_and_logs_nothing_again(tmp_path, capsys, monkeypatch):
    from mlflow import MlflowClient

    config = tmp_path / "mlflow.yaml"
    config.write_text(f"tracking_uri: sqlite:///{tmp_path / 'mlflow.db'}\n"
                      f"organizer_tracking_uri: sqlite:///{tmp_path / 'org.db'}\n"
                      f"artifact_location: {tmp_path / 'mlruns'}\n")
    monkeypatch.setenv("COMPETITION_MLFLOW_CONFIG", str(config))
    monkeypatch.setenv("COMPETITION_TRACKING", "on")

    def runs() -> int:
        client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        ids = [e.experiment_id for e in client.search_experiments()]
        return len(client.search_runs(ids))

    code, first, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0, err
    logged = runs()
    assert logged >= 6 and "reused" not in first  # two submissions per demo
    code, second, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0, err
    assert runs() == logged
    assert "reused as they are" in second
    # The same table both times.
    table = [ln for ln in first.splitlines() if ln.startswith("│")]
    assert table == [ln for ln in second.splitlines() if ln.startswith("│")]


TOY_COMMANDS = None  # set by the test below: a task's command group, loaded by entry point
NOT_A_TYPER = ["not", "a", "typer"]


def test_task_commands_join_under_the_task_name_and_a_broken_group_is_left_out(
        monkeypatch, caplog):
    import typer
    from typer.testing import CliRunner

    import competition.tasks
    from competition.interfaces.cli.plugins import add_task_commands

    group = typer.Typer()

    @group.command()
    def hello(name: str) -> None:
        typer.echo(f"hello {name}")

    @group.command()
    def other() -> None:  # two commands: a group, not a single command
        pass

    monkeypatch.setattr(f"{__name__}.TOY_COMMANDS", group)
    point = EntryPoint("toyish", f"{__name__}:TOY_COMMANDS", "competition.commands")
    monkeypatch.setattr(competition.tasks, "command_entry_points", lambda: {
        "toyish": point,
        "broken": EntryPoint("broken", "tests.no_such_module:app", "competition.commands"),
        "notyper": EntryPoint("notyper", f"{__name__}:NOT_A_TYPER", "competition.commands"),
        "score": EntryPoint("score", point.value, "competition.commands"),
    })
    app = typer.Typer()

    @app.command()
    def score() -> None:
        typer.echo("the harness's own score")

    add_task_commands(app)
    runner = CliRunner()
    assert runner.invoke(app, ["toyish", "hello", "you"]).output == "hello you\n"
    assert runner.invoke(app, ["score"]).output == "the harness's own score\n"
    listed = runner.invoke(app, ["--help"]).output
    assert "toyish" in listed and "broken" not in listed and "notyper" not in listed
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "'broken'" in warnings and "'notyper'" in warnings and "'score'" in warnings
