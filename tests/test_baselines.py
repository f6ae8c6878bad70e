"""Baselines: model builders, losses, weight maps, tiling, post-processing, and a smoke run of
every entry on the demo competitions through `competition run`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from competition.board.prepared import PreparedCompetition
from competition.tasks.nuclei.data import kaggle_images
from competition.tasks.nuclei.postprocess import boundary_target, instances_from_probabilities
from models.tiling import predict_tiled
from models.weights import unet_weight_map
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]
ENTRIES = ["threshold", "unet", "multiarm_unet"]


def test_unet_and_multiarm_shapes():
    from models.unet import ARMS, build_multiarm_unet, build_unet

    unet = build_unet(1, 2, depth=3, base_filters=4)
    assert unet.predict_on_batch(np.zeros((2, 48, 72, 1), np.float32)).shape == (2, 48, 72, 2)
    multi = build_multiarm_unet(1, 1, depth=2, base_filters=4)
    assert [i.name for i in multi.inputs] == list(ARMS)
    out = multi.predict_on_batch({arm: np.zeros((1, 32, 32, 1), np.float32) for arm in ARMS})
    assert out.shape == (1, 32, 32, 1) and (out >= 0).all() and (out <= 1).all()
    # Three encoders: a multi-arm U-Net has more weights than the plain one of equal size.
    assert multi.count_params() > build_unet(1, 1, depth=2, base_filters=4).count_params()


def test_contrast_stretch_percentiles_keep_sparse_nuclei_unsaturated():
    from models.segmentation import channels
    from models.training import normalise

    # A dark noisy background with two nuclei (0.25 % of the image) and a dimmer halo around
    # them: the 99th percentile lies in the halo.
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    image = rng.normal(10, 2, (256, 256))
    for cy, cx in ((60, 60), (180, 190)):
        r = np.hypot(yy - cy, xx - cx)
        image += 40 * np.exp(-((r - 5).clip(0) / 3) ** 2) * (r > 5) + 150 * (r <= 5)
    nuclei = np.hypot(yy - 60, xx - 60) <= 5
    halo = (np.hypot(yy - 60, xx - 60) > 6) & (np.hypot(yy - 60, xx - 60) <= 8)
    default, robust = normalise(image), normalise(image, percentiles=(1, 99.8))
    assert np.all(default[nuclei] == 1) and not np.all(robust[nuclei] == 1)
    assert default[halo].mean() > 2 * robust[halo].mean()  # the halo looked like nucleus
    config = {"arms": False, "percentiles": [1, 99.8]}
    assert np.array_equal(channels(image, config)[..., 0], robust)
    assert np.array_equal(channels(image, {"arms": False})[..., 0], default)  # absent: 1-99
    for bad in ((99, 1), (1, 101), [], 99, (1, "99"), (True, 99)):
        with pytest.raises(ValueError, match="percentiles"):
            normalise(image, percentiles=bad)


def test_losses():
    from models import losses

    truth = np.zeros((1, 8, 8, 1), np.float32)
    truth[0, 2:6, 2:6] = 1
    assert float(losses.soft_dice(truth, truth)) == pytest.approx(0, abs=1e-6)
    assert float(losses.soft_jaccard(truth, truth)) == pytest.approx(0, abs=1e-6)
    assert float(losses.soft_dice(truth, 1 - truth)) > 0.9
    assert float(losses.binary_crossentropy(truth, truth)) < 1e-4
    weights = np.ones_like(truth)
    weighted = np.concatenate([truth, weights], -1)
    assert float(losses.weighted_binary_crossentropy(weighted, np.full_like(truth, 0.5))) == \
        pytest.approx(float(losses.binary_crossentropy(truth, np.full_like(truth, 0.5))))
    loss = losses.combined(["weighted_bce", "dice"], weighted=True)
    assert float(loss(weighted, truth)) < 1e-3
    with pytest.raises(ValueError):
        losses.combined(["weighted_bce"], weighted=False)


def test_weight_map_emphasises_gaps_between_touching_objects():
    labels = np.zeros((40, 40), int)
    labels[10:20, 5:15] = 1
    labels[10:20, 17:27] = 2  # 2-px gap
    labels[30:35, 30:35] = 3
    w = unet_weight_map(labels, w0=10, sigma=5)
    gap, far = w[15, 16], w[2, 38]
    assert gap > 5 * far
    assert w[15, 10] == pytest.approx(w[12, 8])  # inside objects: class weight only


@pytest.mark.parametrize("shape", [(30, 45), (256, 256), (300, 520)])
def test_tiling_reproduces_a_pointwise_prediction_exactly(shape):
    rng = np.random.default_rng(0)
    image = rng.random((*shape, 2)).astype(np.float32)
    out = predict_tiled(lambda tiles: tiles[..., :1] * 2, image, tile=64, overlap=16)
    np.testing.assert_allclose(out[..., 0], image[..., 0] * 2, rtol=1e-5)


def test_marker_watershed_splits_touching_nuclei():
    labels = np.zeros((40, 60), int)
    yy, xx = np.mgrid[:40, :60]
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 100] = 1
    labels[((yy - 20) ** 2 + (xx - 37) ** 2 < 100) & (labels == 0)] = 2
    fg = (labels > 0).astype(np.float32)
    boundary = boundary_target(labels)
    split = instances_from_probabilities(fg, boundary)
    assert split.max() == 2
    merged = instances_from_probabilities(fg, None)
    assert merged.max() == 1
    # A faint boundary between them (the crowded case) merges the markers at weight 1;
    # weighting the boundary up separates them again.
    faint = boundary * 0.3
    assert instances_from_probabilities(fg, faint).max() == 1
    assert instances_from_probabilities(fg, faint, boundary_weight=3.0).max() == 2


@pytest.fixture(scope="module")
def demo_copies(demo_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {k: Path(shutil.copytree(demo_dirs[k], root / k)) for k in ("demo-nuclei",
                                                                       "demo-em")}


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em"])
def test_smoke_run_of_every_entry(demo_copies, entry, kind):
    from competition.training.run import run

    folder = REPO / "submissions" / entry
    # A team of its own per run: the submission is new, so it must end scored.
    record = run(demo_copies[kind], folder, folder / "smoke.yaml", team=f"smoke-{entry}")
    assert record["status"] == "scored", record.get("error")
    assert record["public_score"] is not None
    run_json = json.loads((Path(record["submission"]).parent / "run.json").read_text())
    assert run_json["entry"] == entry and run_json["task"] in ("nuclei", "em")
    if entry != "threshold":
        assert len(run_json["history"]) == run_json["config"]["epochs"]
        assert "loss" in run_json["history"][0]


def test_threshold_baseline_beats_the_empty_sample(demo_copies, tmp_path):
    from competition.board import scoring
    from competition.training.run import run

    folder = REPO / "submissions" / "threshold"
    comp = PreparedCompetition.open(demo_copies["demo-nuclei"])
    record = run(comp.root, folder, folder / "smoke.yaml", submit=False)
    result = scoring.score(comp, Path(record["submission"]))
    assert result.score > 0.3


def images_folder(comp, folder: Path, n: int) -> tuple[Path, list[str]]:
    """A folder in Kaggle's layout (images only) of the first `n` training images."""
    ids = sorted(p.name for p in (comp.public_dir / "train").iterdir())[:n]
    for i in ids:
        shutil.copytree(comp.public_dir / "train" / i / "images", folder / i / "images")
    return folder, ids


def test_predicting_any_folder_in_kaggle_layout(demo_copies, tmp_path):
    from competition.training.run import run

    comp = PreparedCompetition.open(demo_copies["demo-nuclei"])
    folder, ids = images_folder(comp, tmp_path / "stage1_test", 3)
    entry = REPO / "submissions" / "threshold"
    record = run(comp.root, entry, entry / "smoke.yaml", inputs=folder)
    assert "submission_id" not in record  # not the competition's test set: not submitted
    written = Path(record["submission"]).read_text().splitlines()
    assert {line.split(",")[0] for line in written[1:]} == set(ids)
    assert kaggle_images(folder)[0] == ids
    # The same model can predict both the test set (submitted) and the folder.
    record = run(comp.root, entry, entry / "smoke.yaml", team="also-predict",
                 also_predict=folder)
    assert record["status"] == "scored", record.get("error")
    extra = Path(record["also_predicted"]).read_text().splitlines()
    assert {line.split(",")[0] for line in extra[1:]} == set(ids)


def test_config_layers(tmp_path):
    from competition.entries import resolve_config
    from competition.errors import CompetitionError

    (tmp_path / "config.yaml").write_text("tasks: [nuclei, em]\nlr: 1\nepochs: 5\nbatch: 1\n"
                                          "nuclei:\n  epochs: 7\n  x: null\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("em:\n  epochs: 2\nlr: 3\n")
    config = resolve_config(tmp_path, "nuclei", extra, ["batch=4", "em.lr=9", "nuclei.x=[1, 2]"])
    assert config == {"lr": 3, "epochs": 7, "batch": 4, "x": [1, 2]}
    with pytest.raises(CompetitionError, match="key=value"):
        resolve_config(tmp_path, "nuclei", None, ["oops"])


def test_mixed_precision_and_xla_switches(demo_copies):
    """The GPU switches work (on CPU too): float16 compute, float32 probabilities."""
    import keras

    from competition.entries import resolve_config
    from models.segmentation import fit, probability_maps
    from models.unet import build_unet

    comp = PreparedCompetition.open(demo_copies["demo-em"])
    items = comp.task.pixel_items(comp.task.load_train(comp.public_dir))
    folder = REPO / "submissions" / "unet"
    config = {**resolve_config(folder, "em", folder / "smoke.yaml",
                               ["mixed_precision=true", "jit_compile=false", "em.epochs=1",
                                "em.steps_per_epoch=1"]), "arms": False}
    try:
        trained = fit([i.image for i in items], [i.targets for i in items],
                      [i.objects for i in items], config, build_unet)
        conv = next(layer for layer in trained.model.layers
                    if type(layer).__name__ == "Conv2D")
        assert conv.compute_dtype == "float16"
        assert trained.model.output.dtype == "float32"
        inputs = comp.task.pixel_items(comp.task.load_inputs(comp.public_dir))
        maps = probability_maps(trained, [i.image for i in inputs])
        assert len(maps) == len(inputs) > 0
        assert all(m.dtype == np.float32 and np.isfinite(m).all() for m in maps)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_final_fit_trains_on_the_hidden_images_too_and_writes_the_other_folder_only(
        demo_copies, tmp_path, monkeypatch, capsys):
    from competition.board.board import Board
    from competition.errors import CompetitionError
    from competition.training import run as run_module

    comp = PreparedCompetition.open(demo_copies["demo-nuclei"])
    folder, ids = images_folder(comp, tmp_path / "stage1_test", 2)
    entry = REPO / "submissions" / "threshold"
    seen: list[list[str]] = []
    real_load = run_module.load_entry

    def spied(path):
        module = real_load(path)
        real_fit = module.fit

        def fit(task, train, config, on_epoch=None):
            seen.append(list(train.ids))
            return real_fit(task, train, config, on_epoch=on_epoch)

        monkeypatch.setattr(module, "fit", fit)
        return module

    monkeypatch.setattr(run_module, "load_entry", spied)
    before = len(Board(comp).submissions.all())
    code, stdout, stderr = run_cli(["run", comp.root, entry, "--config", entry / "smoke.yaml",
                                    "--final", "--also-predict", folder], capsys)
    assert code == 0, stderr
    train_ids = set(comp.task.load_train(comp.public_dir).ids)
    hidden_ids = set(comp.task.load_inputs(comp.public_dir).ids)
    (fitted,) = seen
    # Every labelled image: no validation image is held out (nor drawn among the hidden).
    assert sorted(fitted) == sorted(train_ids | hidden_ids)
    assert "final fit" in stdout and "also predicted" in stdout
    run_dir = max((comp.root / "runs").glob("threshold-*"), key=lambda p: p.stat().st_mtime)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["final"] and record["submission"] is None and record["predictions"] is None
    assert record["validation_item"] is None and record["val_score"] is None
    assert not (run_dir / "validation.gif").exists()
    assert not (run_dir / "submission.csv").exists()
    written = Path(record["also_predicted"]).read_text().splitlines()
    assert {line.split(",")[0] for line in written[1:]} == set(ids)
    assert len(Board(comp).submissions.all()) == before  # nothing submitted or scored
    # Only with a folder to predict, only the organizers', and only where the task can.
    for extra in ([], ["--also-predict", str(folder), "--as-participant"],
                  ["--also-predict", str(folder), "--inputs", str(folder)]):
        code, _, stderr = run_cli(["run", comp.root, entry, "--config", entry / "smoke.yaml",
                                   "--final", *extra], capsys)
        assert code == 2 and "--final" in stderr and "Traceback" not in stderr
    em = demo_copies["demo-em"]
    runs_before = sorted((em / "runs").glob("*")) if (em / "runs").exists() else []
    with pytest.raises(CompetitionError, match="the em task has no final fit"):
        run_module.run(em, entry, entry / "smoke.yaml", final=True, also_predict=folder)
    assert (sorted((em / "runs").glob("*")) if (em / "runs").exists() else []) == runs_before


def test_a_final_fit_is_tracked_for_the_organizers_only(demo_copies, tmp_path, monkeypatch):
    from competition.tracking import runs as tracking
    from competition.training.run import run
    from tests.test_tracking import EMBEDDED, switch_on

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comp = PreparedCompetition.open(demo_copies["demo-nuclei"])
    folder, _ = images_folder(comp, tmp_path / "stage1_test", 2)
    entry = REPO / "submissions" / "threshold"
    record = run(comp.root, entry, entry / "smoke.yaml", final=True, also_predict=folder)
    assert record["mlflow_run_id"]
    found = {audience: [r.info.run_id for r in tracking.Tracker(config, audience).runs(
        comp.key, "tags.final = 'true'")] for audience in ("participants", "organizers")}
    # Its model learnt the hidden labels: participants never see the run.
    assert found == {"participants": [], "organizers": [record["mlflow_run_id"]]}
