"""The landmark refiner: the published head, rotation augmentation that moves the keypoint,
a smoke run on demo-landmarks through `competition run`, and transfer between landmarks."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from competition import entries
from competition.board.prepared import PreparedCompetition
from competition.landmark_imaging.patches import SIZE
from competition.tasks import get_task
from competition.tasks.landmarks.data import LandmarkData
from models.landmarks import build_refiner

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "submissions" / "xception_landmarks"


TASK = get_task("landmarks")


def load_entry():
    return entries.load_entry(FOLDER)


def test_published_head_on_both_backbones():
    for name in ("light", "xception"):
        model = build_refiner(name, width=4)
        assert model.output_shape == (None, 2)
        kinds = [type(layer).__name__ for layer in model.layers[2:]]
        assert kinds == ["MaxPooling2D", "Flatten", "Dense", "Dropout", "BatchNormalization",
                         "Dense"], kinds
        pool, _, dense, dropout = model.layers[2:6]
        assert pool.pool_size == (4, 4) and dense.units == 512 and dropout.rate == 0.5
        assert dense.kernel_regularizer is not None
    assert build_refiner("xception").layers[1].count_params() > 20_000_000  # the real one


def test_rotation_moves_the_keypoint_with_the_image():
    entry = load_entry()
    images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    images[0, 60:64, 150:154] = 255  # a bright square around (151.5, 61.5)
    target = np.array([[151.5, 61.5]], np.float32) / (SIZE - 1) * 2 - 1
    data = entry.RotatedPatches(images, target, 1, degrees=30, seed=3)
    for _ in range(3):
        x, y = data[0]
        rows, cols = np.nonzero(x[0, ..., 0] > 128)
        pixel = (y[0] + 1) / 2 * (SIZE - 1)
        assert abs(cols.mean() - pixel[0]) < 1.5 and abs(rows.mean() - pixel[1]) < 1.5


@pytest.mark.usefixtures("open3d")
def test_smoke_run_and_transfer_between_landmarks(demo_dirs, tmp_path):
    from competition.training.run import run

    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    record = run(comp_dir, FOLDER, FOLDER / "smoke.yaml")
    assert record["status"] == "scored", record.get("error")
    assert len(record["history"]) == 2 and "rmse" in record["history"][0]
    assert record["report"] == {"shrink": 1.0, "held_out": None}  # jittered: none chosen
    saved = Path(record["submission"]).parent / "model" / "model.keras"
    # Zero-shot / fine-tune: a third landmark starts from the first model's weights.
    for fine_tune in (False, True):
        config = smoke_config(only_landmarks=["3"], init_from=str(saved), fine_tune=fine_tune,
                              epochs=1)
        comp = PreparedCompetition.open(comp_dir)
        train = comp.task.load_train(comp.public_dir)
        refiner = load_entry().fit(comp.task, train, config)
        backbone = refiner.model.layers[1]
        assert backbone.trainable is fine_tune
        start = keras.models.load_model(saved).layers[1].get_weights()[0]
        now = backbone.get_weights()[0]
        assert np.array_equal(start, now) is (not fine_tune)


def smoke_config(**changes) -> dict:
    return {**entries.resolve_config(FOLDER, "landmarks", FOLDER / "smoke.yaml"), **changes}


def demo_train(demo_dirs):
    comp = PreparedCompetition.open(demo_dirs["demo-landmarks"])
    return comp.task.load_train(comp.public_dir)


def test_shrinkage_is_chosen_on_held_out_specimens(demo_dirs, tmp_path, monkeypatch):
    from competition.formats import landmarks_csv

    entry, train = load_entry(), demo_train(demo_dirs)
    rng = np.random.default_rng(0)
    estimates = train.points + rng.normal(0, 0.5, train.points.shape)
    path = tmp_path / "estimates.csv"
    path.write_bytes(landmarks_csv.write_points(
        [(i, n, estimates[s, k]) for s, i in enumerate(train.ids)
         for k, n in enumerate(train.landmarks)]))
    calibrations = []
    real_calibrate = entry.calibrate

    def spy(refiner, meshes, held_estimates, truths):
        calibrations.append((meshes, held_estimates, truths,
                             real_calibrate(refiner, meshes, held_estimates, truths)))
        return calibrations[-1][-1]

    monkeypatch.setattr(entry, "calibrate", spy)
    refiner = entry.fit(TASK, train, smoke_config(
        training_estimates=str(path), validation_specimens=2, shrink="auto", epochs=1,
        estimates=str(path)))
    table = refiner.calibration
    assert list(table) == [f"{s:.1f}" for s in entry.SHRINK_GRID]
    # Chosen once, on the two held-out specimens (the last two) and their given estimates;
    # the choice rule itself is checked on a case with a known answer below.
    [(meshes, held_estimates, truths, (shrink, chosen_table))] = calibrations
    assert meshes == train.meshes[-2:]
    assert np.allclose(held_estimates, estimates[-2:], atol=1e-6)
    assert np.array_equal(truths, train.points[-2:])
    assert refiner.shrink == shrink and table == chosen_table
    assert refiner.shrink in entry.SHRINK_GRID[1:]
    # No shrinkage kept: the estimates themselves come back; all of it: the CNN's points,
    # on the surface.
    mesh = train.meshes[-1]
    kept, moved = entry.refine(refiner, mesh, estimates[-1], shrinks=[0.0, 1.0])
    assert np.array_equal(kept, estimates[-1])
    refined = [train.landmarks.index(n) for n in refiner.names]
    assert not np.allclose(moved[refined], estimates[-1][refined])
    import trimesh
    from scipy.spatial import cKDTree

    dense = trimesh.sample.sample_surface(mesh, 300_000, seed=0)[0]  # ~0.1 mm apart
    assert cKDTree(dense).query(moved[refined])[0].max() < 0.2


def test_calibration_wins_most_often_then_errs_least(monkeypatch):
    """A constructed case: estimates 1 mm (landmark 1) and 10 mm (landmark 2) from the truth,
    along x. The CNN's point for landmark 1 overshoots the truth 4.2 times; for landmark 2 it
    is exact. A move by s beats the estimate on landmark 2 for every s > 0, on landmark 1 only
    while |1 - 4.2 s| < 1 (s < 0.476): both win up to s = 0.4, and among those the mean error
    (10 (1 - s) + |1 - 4.2 s|) / 2 is least at 0.4. The mean error alone would choose 1.0."""
    from types import SimpleNamespace

    entry = load_entry()
    truth = np.array([[1.0, 0.0, 0.0], [0.0, 10.0, 0.0], [5.0, 5.0, 5.0]])
    estimate = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    cnn = np.array([[4.2, 0.0, 0.0], [0.0, 10.0, 0.0], [9.0, 9.0, 9.0]])

    def refine(refiner, mesh, estimates, shrinks=None):
        assert np.array_equal(estimates, estimate)
        return [estimates + s * (cnn - estimates) for s in shrinks]

    monkeypatch.setattr(entry, "refine", refine)
    # Landmark "c" is not refined by this model: it counts nowhere.
    refiner = SimpleNamespace(landmarks=["a", "b", "c"], names=["a", "b"])
    shrink, table = entry.calibrate(refiner, [None], [estimate], [truth])
    assert shrink == 0.4
    assert table["0.0"]["win_rate"] == 0  # no move never beats the estimate
    assert table["0.4"]["win_rate"] == 100 and table["0.5"]["win_rate"] == 50
    assert table["1.0"]["mean_error"] == pytest.approx(3.2 / 2)
    assert table["0.4"]["mean_error"] == pytest.approx((6 + 0.68) / 2)
    assert min(table, key=lambda s: table[s]["mean_error"]) == "1.0"


def test_bad_refiner_settings_are_clear_errors(demo_dirs, tmp_path):
    import pytest

    from competition.errors import CompetitionError

    entry, train = load_entry(), demo_train(demo_dirs)
    bad = tmp_path / "estimates.csv"
    bad.write_text("specimen,landmark,x,y,z\nnobody,1,0,0,0\n")
    for changes, message in (({"only_landmarks": ["99"]}, "no such landmark"),
                             ({"shrink": 2}, "shrink 2"),
                             ({"training_estimates": str(bad)}, "estimates.csv: line 2")):
        with pytest.raises(CompetitionError, match=message):
            entry.fit(TASK, train, smoke_config(**changes))


def test_outputs_per_landmark_and_view_start_at_their_mean_targets():
    from models.landmarks import start_outputs

    model = build_refiner("light", width=4, kinds=3)
    rng = np.random.default_rng(0)
    kinds = np.array([0, 0, 2, 2, 2])
    targets = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
    start_outputs(model, targets, kinds)
    images = rng.uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    out = model.predict([images, np.eye(3, dtype=np.float32)], verbose=0)
    # Whatever the image: each kind starts at its mean target (no example: zero).
    assert np.allclose(out, [targets[:2].mean(axis=0), [0, 0], targets[2:].mean(axis=0)],
                       atol=1e-6)
    assert model.output_shape == (None, 2)
    names = [layer.name for layer in model.layers]
    assert "positions" in names and "kind" in names


@pytest.mark.usefixtures("open3d")
def test_training_estimates_from_leave_one_out_alpaca(demo_dirs, monkeypatch):
    entry, train = load_entry(), demo_train(demo_dirs)
    train = LandmarkData(train.ids[:4], train.meshes[:4], train.landmarks, train.points[:4])
    config = smoke_config(training_estimates="alpaca", validation_specimens=1, epochs=1)
    estimates = entry.training_estimates(TASK, train, config)
    error = np.linalg.norm(estimates - train.points, axis=2)
    assert estimates.shape == train.points.shape and 0.05 < error.mean() < 1.5
    # fit uses them (no jitter of the manual landmarks) and so chooses a shrinkage.
    monkeypatch.setattr(entry, "training_estimates", lambda *a: estimates)
    refiner = entry.fit(TASK, train, config)
    assert refiner.calibration is not None and 0 < refiner.shrink <= 1
