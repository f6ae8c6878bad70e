"""The CLI contract: commands, exit codes and the JSON shapes other parts rely on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from competition.formats import em_tiff, landmarks_csv
from competition.prepared import PreparedCompetition
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
    comp = demo_dirs["demo-em"]
    raw = em_tiff.read_stack((comp / "public" / "test-volume.tif").read_bytes())
    path = tmp_path / "sub.tif"
    path.write_bytes(em_tiff.write_stack(raw.astype(np.float32) / 255))
    data = score_json(capsys, comp, path)
    assert max(data["v_rand_per_threshold"]) == pytest.approx(data["v_rand"])
    assert data["score"] <= max(data["public"], data["private"]) + 1e-12


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


def test_human_readable_output(demo_dirs, tmp_path, capsys):
    comp = demo_dirs["demo-nuclei"]
    path = tmp_path / "sub.csv"
    path.write_text(nuclei_valid(comp))
    code, out, _ = run_cli(["score", comp, path], capsys)
    assert code == 0 and "score" in out and "1.000000" in out


def test_demo_command(tmp_path, capsys):
    code, out, err = run_cli(["demo", "--out", tmp_path / "demo"], capsys)
    assert code == 0, err
    for kind in ("demo-nuclei", "demo-em", "demo-landmarks"):
        assert kind in out
        assert (tmp_path / "demo" / kind / "manifest.json").is_file()


def test_demo_naive_predictions_beat_the_samples(tmp_path):
    from competition.demo import run

    rows = run(tmp_path / "demo")
    by = {(r["competition"], r["submission"].split(".")[0]): r for r in rows}
    assert all(r["rank"] == (1 if r["team"] == "day-one" else 2) for r in rows)
    assert by[("demo-nuclei", "naive-otsu")]["private"] > 0.3
    assert by[("demo-nuclei", "sample_submission")]["private"] == 0.0
    assert by[("demo-em", "naive-intensity")]["private"] > \
        by[("demo-em", "sample_submission")]["private"]
    assert by[("demo-landmarks", "naive-pca-template")]["private"] < 2.0
    assert by[("demo-landmarks", "sample_submission")]["private"] > 10.0


@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_task_aggregate_reproduces_public_and_private(demo_dirs, tmp_path, kind):
    """The per-item values stored for the bootstrap give back the official subset scores."""
    from competition import demo, scoring

    comp = PreparedCompetition.open(demo_dirs[kind])
    path = tmp_path / ("sub" + comp.task.submission_suffix)
    path.write_bytes(demo.NAIVE[kind][1](comp.public_dir))
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
