"""The cross-validated landmark evaluation: folds, the bias-correction ablation, MALPACA's
templates, the statistics, the images-free refiner, and the organizers' script on the demo
skulls."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from competition import entries
from competition.board.prepared import PreparedCompetition
from competition.formats import landmarks_csv
from competition.landmark_imaging import bias, evaluation
from competition.metrics import landmarks as metric
from competition.tasks import get_task
from competition.tasks.landmarks.data import LandmarkData
from competition.tracking import config as tracking_config
from tests.conftest import REPO, load_script


def shapes(count: int, seed: int = 0, landmarks: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 10, (landmarks, 3))
    return np.array([base + rng.normal(0, 0.3, base.shape) for _ in range(count)])


def test_folds_cover_every_specimen_once_fixed_by_seed():
    parts = evaluation.folds(62, 5, seed=0)
    assert sorted(len(p) for p in parts) == [12, 12, 12, 13, 13]
    assert sorted(np.concatenate(parts).tolist()) == list(range(62))
    again = evaluation.folds(62, 5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in
                   zip(parts, evaluation.folds(62, 5, seed=1), strict=True))
    with pytest.raises(ValueError):
        evaluation.folds(4, 5, seed=0)


def test_bias_correction_learns_a_systematic_offset_in_the_common_pose():
    truths = shapes(20)
    rng = np.random.default_rng(1)
    offset = rng.normal(0, 0.4, truths.shape[1:])  # each landmark's own systematic error
    estimates, posed_truths = [], []
    for k, truth in enumerate(truths):
        # Every specimen arrives in its own pose; the error is systematic in the shape's frame.
        rotation = Rotation.random(rng=k).as_matrix()
        estimate = truth - offset + rng.normal(0, 0.05, truth.shape)
        estimates.append(estimate @ rotation.T + k)
        posed_truths.append(truth @ rotation.T + k)
    estimates, posed_truths = np.array(estimates), np.array(posed_truths)
    correction = bias.learn(estimates[:15], posed_truths[:15])
    assert correction.share >= 0.8
    assert bias.learn(estimates[:15], posed_truths[:15], criterion="error").share >= 0.8
    with pytest.raises(ValueError, match="wins or error"):
        bias.learn(estimates, posed_truths, criterion="median")
    before = np.linalg.norm(estimates[15:] - posed_truths[15:], axis=2)
    after = np.linalg.norm(np.array([correction.apply(e) for e in estimates[15:]])
                           - posed_truths[15:], axis=2)
    assert after.mean() < 0.4 * before.mean()
    assert metric.win_rate(after, before).percent > 90


def test_bias_correction_without_a_systematic_error_keeps_the_estimates_close():
    truths = shapes(12, seed=2)
    rng = np.random.default_rng(3)
    estimates = truths + rng.normal(0, 0.3, truths.shape)  # errors with no common direction
    correction = bias.learn(estimates, truths)
    moved = np.linalg.norm(correction.share * correction.offsets, axis=1)
    assert moved.mean() < 0.2  # a share of offsets that average out


def test_compare_win_rates_intervals_and_paired_tests():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.2, 0.6, (30, 4))
    better = reference * 0.8
    mixed = reference * rng.choice([0.9, 1.1], reference.shape)
    summary = evaluation.compare({"alpaca": reference, "better": better, "mixed": mixed},
                                 ["a", "b", "c", "d"], "alpaca",
                                 against=[("better", "mixed"), ("better", "absent")])
    good = summary["methods"]["better"]
    assert good["win_rate"] == 100.0 and good["wins"] == 120
    low, high = good["win_rate_ci"]
    assert 96 < low < 100 and high == 100.0
    assert good["p_specimens"] < 1e-6
    assert summary["methods"]["mixed"]["p_specimens"] > 0.001
    assert len(good["per_landmark_win_rate"]) == 4 and all(p < 0.01 for p in
                                                          good["per_landmark_p"])
    assert list(summary["pairs"]) == ["better vs mixed"]  # a missing method is left out
    table = evaluation.markdown_table(summary)
    assert table.count("\n") == 2 + 4 + 1 and "**100.0 %** (" in table


def test_paired_test_edge_cases():
    assert metric.paired_test(np.ones(5), np.ones(5)) == 1.0
    assert np.isnan(metric.paired_test(np.ones(1), np.zeros(1)))
    assert metric.win_rate_interval(0, 0) != metric.win_rate_interval(0, 0)  # NaNs


def test_malpaca_templates_span_the_shape_clusters():
    alpaca = entries.load_entry(REPO / "submissions" / "alpaca")
    rng = np.random.default_rng(0)
    base = rng.normal(0, 10, (15, 3))
    groups = [base + rng.normal(0, 2.0, base.shape) for _ in range(3)]
    points = np.array([groups[k % 3] + rng.normal(0, 0.05, base.shape) for k in range(18)])
    chosen = alpaca.template_indices(points, 3, seed=0)
    assert sorted(k % 3 for k in chosen) == [0, 1, 2]  # one from each cluster
    single = alpaca.template_indices(points, 1)
    aligned, mean = alpaca.procrustes_aligned(points)
    assert single == [int(np.argmin(np.linalg.norm(aligned - mean, axis=(1, 2))))]


def test_refiner_images_ablation_replaces_every_patch():
    refiner = entries.load_entry(REPO / "submissions" / "xception_landmarks")
    image = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    rng = np.random.default_rng(0)
    assert refiner.shown(image, {"images": "real"}, rng) is image
    assert (refiner.shown(image, {"images": "constant"}, rng) == 128).all()
    noise = refiner.shown(np.zeros((64, 64, 3), np.uint8), {"images": "noise"}, rng)
    assert noise.dtype == np.uint8 and noise.std() > 50
    with pytest.raises(Exception, match="real, noise or constant"):
        refiner.shown(image, {"images": "blank"}, rng)


def script_cli() -> typer.Typer:
    """benchmarks/landmarks_cv.py as a command, run in this process (so with `--workers 1`:
    a worker process could not import a module loaded from a path)."""
    module = load_script(REPO / "benchmarks" / "landmarks_cv.py")
    app = typer.Typer()
    app.command()(module.main)
    return app


@pytest.mark.usefixtures("open3d")
def test_cross_validation_script_on_the_demo_skulls(demo_dirs, tmp_path):
    source = demo_dirs["demo-landmarks"] / "public" / "train"  # Models/ and LMs/
    out = tmp_path / "cv"
    args = [str(source), "--out", str(out), "--folds", "2", "--workers", "1",
            "--methods", "alpaca,malpaca,bias,bias-error,refiner,noise", "--malpaca", "2",
            "--alpaca-config", str(REPO / "submissions/alpaca/smoke.yaml"),
            "--refiner-config", str(REPO / "submissions/xception_landmarks/smoke.yaml"),
            "--set", "training_estimates=alpaca", "--set", "validation_specimens=1",
            "--set", "epochs=1", "--no-mlflow"]
    app = script_cli()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    specimens = summary["specimens_ids"]
    held = [s for fold in summary["fold_info"] for s in fold["held_out"]]
    assert sorted(held) == sorted(specimens)  # each predicted once, while held out
    assert set(summary["methods"]) == {"alpaca", "malpaca", "bias", "bias-error", "refiner",
                                       "noise"}
    assert {"refiner vs bias", "refiner vs noise", "refiner vs bias-error"} <= set(
        summary["pairs"])
    for fold in summary["fold_info"]:  # templates come from the other fold only
        for names in fold["templates"].values():
            assert not set(names) & set(fold["held_out"])
        assert len(fold["templates"]["2"]) == 2 and 0 <= fold["bias_share"] <= 1
        assert fold["refiner"]["fit_seconds"] > 0 and "shrink" in fold["noise"]
    single, multi = (summary["alpaca_seconds_per_specimen"],
                     summary["malpaca_seconds_per_specimen"])
    assert 0 < single < multi  # two templates' transfers a specimen
    cached = list((out / "transfers").glob("*/*.npz"))
    assert len(cached) == summary["transfers"] > len(specimens)
    errors = np.load(out / "errors.npz")
    assert errors["alpaca"].shape == (len(specimens), len(summary["landmark_names"]))
    assert np.isfinite(errors["refiner"]).all()
    assert summary["methods"]["alpaca"]["mean_error"] == pytest.approx(errors["alpaca"].mean())
    assert (out / "per_landmark_error.png").read_bytes()[:4] == b"\x89PNG"
    rows = (out / "per_landmark.csv").read_text().splitlines()
    assert len(rows) == 1 + len(summary["landmark_names"])
    # A rerun reuses every transfer and fold: same numbers, nothing recomputed.
    stamps = {p: p.stat().st_mtime_ns for p in cached}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 to run" in again.output
    assert {p: p.stat().st_mtime_ns for p in cached} == stamps
    assert json.loads((out / "results.json").read_text())["methods"] == summary["methods"]


@pytest.mark.usefixtures("open3d")
def test_evaluation_on_a_competitions_hidden_split_uses_its_reference(demo_dirs, tmp_path,
                                                                     monkeypatch):
    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    comp = PreparedCompetition.open(comp_dir)
    truths, _ = landmarks_csv.read_points(comp.solution_path.read_bytes(), with_usage=True)
    # A reference 0.1 mm off along x on every point: ALPACA's errors must be exactly those.
    shifted = tmp_path / "reference.csv"
    shifted.write_bytes(landmarks_csv.write_points(
        [(i, n, p + [0.1, 0, 0]) for i, marks in truths.items() for n, p in marks.items()]))
    comp.install_reference(shifted)
    out = tmp_path / "split"
    store = tmp_path / "mlflow.yaml"  # tracking on, to fresh stores
    store.write_text(json.dumps({"tracking_uri": "sqlite:///participants.db",
                                 "organizer_tracking_uri": "sqlite:///organizers.db",
                                 "artifact_location": "artifacts",
                                 "organizer_artifact_location": "organizer-artifacts"}))
    monkeypatch.setenv(tracking_config.CONFIG_ENV, str(store))
    monkeypatch.setenv(tracking_config.SWITCH_ENV, "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(script_cli(), [
        str(comp_dir), "--out", str(out), "--methods", "alpaca,bias", "--workers", "1",
        "--alpaca-config", str(REPO / "submissions/alpaca/smoke.yaml")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "results.json").read_text())
    assert summary["evaluation"] == "hidden split"
    assert sorted(summary["specimens_ids"]) == sorted(truths)
    assert summary["methods"]["alpaca"]["mean_error"] == pytest.approx(0.1)
    info = summary["fold_info"][0]
    assert info["alpaca"] == "the competition's reference predictions"
    assert 0 <= info["bias_share"] <= 1 and info["loo_mean_error"] > 0
    # Logged to the organizers' store only (it holds every specimen's manual landmarks).
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'organizers.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].data.metrics["alpaca.mean_error"] == pytest.approx(0.1)
    logged = {a.path for a in client.list_artifacts(runs[0].info.run_id, "cv")}
    assert "cv/per_landmark_error.png" in logged and "cv/table.md" in logged
    assert not (tmp_path / "participants.db").exists() or not MlflowClient(
        f"sqlite:///{tmp_path / 'participants.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(
            f"sqlite:///{tmp_path / 'participants.db'}").search_experiments()])


def test_subset_can_hold_out_the_landmarks():
    module = load_script(REPO / "benchmarks" / "landmarks_cv.py")
    data = LandmarkData(["a", "b", "c"], [None] * 3, ["1", "2"],
                        np.arange(18.0).reshape(3, 2, 3))
    kept = module.subset(data, [0, 2])
    assert kept.ids == ["a", "c"] and np.array_equal(kept.points, data.points[[0, 2]])
    held = module.subset(data, np.array([1]), points=False)
    assert held.ids == ["b"] and held.points is None


def smoke_alpaca(tmp_path: Path) -> Path:
    """submissions/alpaca's smoke settings with the starts the smooth demo skulls need."""
    path = tmp_path / "alpaca-smoke.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(
        (REPO / "submissions/alpaca/smoke.yaml").read_text()), "principal_axes_starts": True}))
    return path


@pytest.mark.usefixtures("open3d")
def test_hidden_truths_never_reach_the_methods(demo_dirs, tmp_path):
    """The hidden specimens' landmarks moved 100 mm in the private solution: every score
    follows them, no prediction changes."""
    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    solution = PreparedCompetition.open(comp_dir).solution_path
    config = smoke_alpaca(tmp_path)

    def evaluate(out: Path) -> tuple[dict, dict[str, np.ndarray]]:
        result = CliRunner().invoke(script_cli(), [
            str(comp_dir), "--out", str(out), "--methods", "alpaca,bias,bias-error",
            "--workers", "1", "--alpaca-config", str(config), "--cache",
            str(tmp_path / "transfers"), "--no-mlflow"])
        assert result.exit_code == 0, result.output
        with np.load(out / "folds" / "split" / "predictions.npz") as found:
            return (json.loads((out / "results.json").read_text()),
                    {k: np.asarray(found[k]) for k in found.files})

    summary, predicted = evaluate(tmp_path / "true")
    truths, usage = landmarks_csv.read_points(solution.read_bytes(), with_usage=True)
    solution.write_bytes(landmarks_csv.write_points(
        [(i, n, p + 100.0, usage[i]) for i, marks in truths.items() for n, p in marks.items()],
        usage=True))
    shifted, again = evaluate(tmp_path / "shifted")
    assert set(again) == {"alpaca", "bias", "bias-error"}
    for method, points in predicted.items():
        assert np.array_equal(again[method], points), method
        before = summary["methods"][method]["mean_error"]
        assert before < 5  # millimetres off on skulls some 30 mm across
        # Scored against the moved landmarks: 100 * sqrt(3) mm away, give or take the error.
        assert abs(shifted["methods"][method]["mean_error"] - 100 * 3 ** 0.5) <= before


@pytest.mark.usefixtures("open3d")
def test_held_out_folds_carry_no_landmarks_and_bias_error_is_the_entry(demo_dirs, tmp_path,
                                                                      monkeypatch):
    """Cross-validation on the demo skulls: each fold's held-out specimens reach the methods
    without landmarks, and `bias-error` is what submissions/alpaca_bias predicts when it is
    fitted on the fold's training specimens."""
    source = demo_dirs["demo-landmarks"] / "public" / "train"
    module = load_script(REPO / "benchmarks" / "landmarks_cv.py")
    seen = []
    real = module.fold_predictions

    def spy(train, test, *args, **kwargs):
        seen.append((list(train.ids), list(test.ids), test.points))
        return real(train, test, *args, **kwargs)

    monkeypatch.setattr(module, "fold_predictions", spy)
    app = typer.Typer()
    app.command()(module.main)
    out = tmp_path / "cv"
    config = smoke_alpaca(tmp_path)
    result = CliRunner().invoke(app, [str(source), "--out", str(out), "--folds", "2",
                                      "--workers", "1", "--methods", "alpaca,bias-error",
                                      "--alpaca-config", str(config), "--no-mlflow"])
    assert result.exit_code == 0, result.output
    assert len(seen) == 2 and all(points is None for _, _, points in seen)
    assert all(not set(train) & set(test) for train, test, _ in seen)
    summary = json.loads((out / "results.json").read_text())
    low, high = summary["methods"]["bias-error"]["mean_error_ci"]
    assert low < summary["methods"]["bias-error"]["mean_error"] < high
    assert "bias-error: mean error" in result.output and "bias-error vs alpaca" in result.output

    # The entry, fitted on fold 1's training specimens (ALPACA's transfers from the cache).
    folder = REPO / "submissions" / "alpaca_bias"
    entry = entries.load_entry(folder)
    task = get_task("landmarks")
    data = module.load_source(source)
    train_ids, test_ids, _ = seen[0]
    index = {s: k for k, s in enumerate(data.ids)}
    train = module.subset(data, [index[s] for s in train_ids])
    test = module.subset(data, [index[s] for s in test_ids], points=False)
    settings = entries.resolve_config(folder, "landmarks", None, [
        f"cache={out / 'transfers'}", f"alpaca={json.dumps(yaml.safe_load(config.read_text()))}"])
    model = entry.fit(task, train, settings)
    fold = json.loads((out / "folds" / "fold1" / "fold.json").read_text())
    assert model["share"] == fold["bias-error_share"]
    found = entry.predict(task, model, test, settings)
    with np.load(out / "folds" / "fold1" / "predictions.npz") as stored:
        assert np.allclose(np.array([found[s] for s in test_ids]), stored["bias-error"])
