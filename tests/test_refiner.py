"""The landmark refiner: the published head, rotation augmentation that moves the keypoint,
a smoke run on demo-landmarks through `competition run`, and transfer between landmarks."""

from __future__ import annotations

import shutil
from pathlib import Path

import keras
import numpy as np
import yaml

from competition import run as run_module
from competition.patches import SIZE
from models.landmarks import build_refiner

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "submissions" / "xception_landmarks"


def load_entry():
    return run_module.load_entry(FOLDER)


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


def test_smoke_run_and_transfer_between_landmarks(demo_dirs, tmp_path):
    from competition.run import run

    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    record = run(comp_dir, FOLDER, FOLDER / "smoke.yaml")
    assert record["status"] == "scored", record.get("error")
    assert len(record["history"]) == 2 and "rmse" in record["history"][0]
    saved = Path(record["submission"]).parent / "model" / "model.keras"
    # Zero-shot / fine-tune: a third landmark starts from the first model's weights.
    for fine_tune in (False, True):
        config = {**yaml.safe_load((FOLDER / "config.yaml").read_text()),
                  **yaml.safe_load((FOLDER / "smoke.yaml").read_text()),
                  "only_landmarks": ["3"], "init_from": str(saved), "fine_tune": fine_tune,
                  "epochs": 1}
        from competition import datasets
        from competition.prepared import PreparedCompetition

        train = datasets.load_train(PreparedCompetition.open(comp_dir))
        refiner = load_entry().fit("landmarks", train, config)
        backbone = refiner.model.layers[1]
        assert backbone.trainable is fine_tune
        start = keras.models.load_model(saved).layers[1].get_weights()[0]
        now = backbone.get_weights()[0]
        assert np.array_equal(start, now) is (not fine_tune)
