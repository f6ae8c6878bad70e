"""Scores weighed toward a test set drawn otherwise: adversarial importance weights
(`competition.tasks.shift`) and the DSB validation script built on them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from competition.metrics.nuclei import image_score
from competition.tasks import get_task, shift
from competition.tasks.comparison import estimate
from competition.tasks.nuclei.data import kaggle_images
from competition.training.cv import cross_validate
from models.training import normalise
from tests.conftest import REPO, load_script

NUCLEI = get_task("nuclei")


def test_alike_sets_give_even_weights_and_the_plain_mean():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(400, 3)), rng.normal(size=(200, 3))
    found = shift.adversarial_weights(train, test)
    assert found.auc < 0.6 and found.effective_items > 0.9 * len(train)
    assert found.weights.mean() == pytest.approx(1.0)
    values = rng.uniform(size=(400, 1))
    weighted = shift.weighted_estimate(NUCLEI, values, found.weights)
    assert weighted.score == pytest.approx(values.mean(), abs=0.01)


def test_weights_recover_the_mean_under_the_test_distribution():
    # Training x ~ N(0, 1), test x ~ N(1, 1): the density ratio is exp(x - 1/2), which a
    # logistic regression on x represents exactly. An item's score rising with x averages
    # 0.5 over training items and about 0.73 over test-like ones.
    rng = np.random.default_rng(1)
    train, test = rng.normal(0, 1, (2000, 1)), rng.normal(1, 1, (400, 1))
    values = 1 / (1 + np.exp(-train))
    truth = float(np.mean(1 / (1 + np.exp(-rng.normal(1, 1, 200_000)))))
    found = shift.adversarial_weights(train, test)
    assert 0.7 < found.auc < 0.8
    weighted = shift.weighted_estimate(NUCLEI, values, found.weights)
    assert abs(values.mean() - truth) > 0.15  # the plain mean is far off
    assert weighted.score == pytest.approx(truth, abs=0.02)
    assert weighted.low < truth < weighted.high
    assert found.effective_items < 0.8 * len(train)


def test_even_weights_are_the_plain_estimate_and_bad_weights_are_refused():
    values = np.random.default_rng(2).uniform(size=(50, 1))
    even = shift.weighted_estimate(NUCLEI, values, np.full(50, 3.0))
    plain = estimate(NUCLEI, values)
    assert (even.score, even.low, even.high) == pytest.approx((plain.score, plain.low,
                                                               plain.high))
    for bad in (np.ones(49), -np.ones(50), np.zeros(50), np.r_[np.ones(49), np.nan]):
        with pytest.raises(ValueError, match="one non-negative weight per item"):
            shift.weighted_estimate(NUCLEI, values, bad)
    with pytest.raises(ValueError, match="the same features"):
        shift.adversarial_weights(np.zeros((5, 2)), np.zeros((5, 3)))
    found = shift.Shift(0.6, np.array([0.5, 1.0, 1.5]), 2.6)
    assert found.weights_of(["a", "b", "c"], ["c", "a", "c"]).tolist() == [1.5, 0.5, 1.5]
    with pytest.raises(ValueError, match="'d' has no weight"):
        found.weights_of(["a", "b", "c"], ["d"])
    with pytest.raises(ValueError, match="2 keys for 3 weights"):
        found.weights_of(["a", "b"], ["a"])


def test_dsb_validation_weighs_out_of_fold_scores_toward_the_test_images(demo_dirs, capsys,
                                                                          tmp_path):
    comp = demo_dirs["demo-nuclei"]
    threshold = REPO / "submissions" / "threshold"
    record = cross_validate(comp, threshold, threshold / "smoke.yaml", folds=2, toward="test")
    capsys.readouterr()
    script = load_script(REPO / "benchmarks" / "dsb_validation.py")
    out = tmp_path / "validation.json"
    results = script.main([str(comp), str(comp / "public" / "test"), record["out_dir"],
                           "--board", "threshold=0.3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == results
    (result,) = results
    assert result["entry"] == "threshold" and result["board"] == 0.3
    assert result["images"] == len(record["assignment"])
    assert result["cv_mean"] == record["pooled"]
    for key in ("type_mix", "adversarial"):
        est = result[key]
        assert est["low"] <= est["score"] <= est["high"]
    # `competition cv --toward` weighs the same scores the same way.
    weighed = record["toward"]
    assert weighed["folder"] == "test" and weighed["items"] == result["images"]
    assert weighed["score"] == pytest.approx(result["adversarial"]["score"], abs=1e-12)
    assert weighed["auc"] == pytest.approx(result["shift"]["auc"])
    assert weighed["low"] <= weighed["score"] <= weighed["high"]
    row = next(line for line in printed.splitlines() if line.startswith("| threshold"))
    assert f"{result['adversarial']['score'] - 0.3:+.3f}" in row
    assert re.search(r"ROC AUC 0\.\d{3}", printed)
    # A cross-validation of another competition is refused.
    other = dict(json.loads((Path(record["out_dir"]) / "cv.json").read_text()),
                 competition="elsewhere")
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "cv.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="a cross-validation on elsewhere, not"):
        script.main([str(comp), str(comp / "public" / "test"), str(tmp_path / "cv")])


def test_cv_toward_a_folder_is_printed_and_refused_where_items_are_not_described(
        demo_dirs, capsys):
    from competition.errors import CompetitionError
    from tests.test_bad_input import run_cli

    threshold = REPO / "submissions" / "threshold"
    code, stdout, stderr = run_cli(["cv", demo_dirs["demo-nuclei"], threshold, "--config",
                                    threshold / "smoke.yaml", "--folds", "2", "--toward",
                                    demo_dirs["demo-nuclei"] / "public" / "test"], capsys)
    assert code == 0, stderr
    assert re.search(r"weighed toward .*test \(adversarial validation\): 0\.\d{4}", stdout)
    # Refused before anything is trained or written (EM does not describe its slices).
    em = demo_dirs["demo-em"]
    before = sorted((em / "cv").glob("*")) if (em / "cv").exists() else []
    with pytest.raises(CompetitionError, match="does not describe its items"):
        cross_validate(em, threshold, threshold / "smoke.yaml", folds=2, toward="test")
    assert (sorted((em / "cv").glob("*")) if (em / "cv").exists() else []) == before


def test_prediction_shift_bins_fluorescence_by_otsu_share():
    script = load_script(REPO / "benchmarks" / "dsb_prediction_shift.py")

    def row(kind, share):
        return {"type": kind, "otsu_foreground": share, "foreground": 2 * share,
                "objects": 1, "diameter_ratio": 1.0, "empty": False}

    rows = [row("fluorescence-small", s) for s in (0.0, 0.005, 0.01, 0.05, 1.0)] + \
        [row("fluorescence-crowded", 0.3), row("stained", 0.004)]
    bins = script.by_share(rows)
    # Each fluorescence image once (a bin's upper edge belongs to the next; 100 % to the
    # last), stained ones left out, empty bins absent.
    assert {k: m["images"] for k, m in bins.items()} == {"0%-1%": 2, "1%-2%": 1,
                                                         "5%-100%": 3}
    assert {k: m["foreground_ratio"] for k, m in bins.items() if k != "0%-1%"} == \
        {"1%-2%": 2.0, "5%-100%": 2.0}


def test_prediction_shift_compares_test_predictions_with_out_of_fold_ones(demo_dirs, tmp_path,
                                                                          capsys):
    import shutil

    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "demo"))
    threshold = REPO / "submissions" / "threshold"
    cv = cross_validate(comp, threshold, threshold / "smoke.yaml", folds=2)
    test = comp / "public" / "test"
    made = run(comp, threshold, threshold / "smoke.yaml", submit=False, also_predict=test)
    capsys.readouterr()
    script = load_script(REPO / "benchmarks" / "dsb_prediction_shift.py")
    out = tmp_path / "shift.json"
    result = script.main([str(comp), cv["out_dir"], str(Path(made["submission"]).parent),
                          str(test), "--json", str(out)])
    printed = capsys.readouterr().out
    assert json.loads(out.read_text()) == result
    assert {r["id"] for r in result["out_of_fold"]} == set(cv["assignment"])
    assert {r["id"] for r in result["test"]} == {p.name for p in test.iterdir()}
    for row in result["out_of_fold"] + result["test"]:
        assert row["objects"] >= 0 and 0 <= row["foreground"] <= 1
        assert row["empty"] is (row["objects"] == 0)
    # The out-of-fold rows carry the images' own scores; their mean is the cv's.
    scores = [r["score"] for r in result["out_of_fold"]]
    assert np.mean(scores) == pytest.approx(cv["pooled"]["score"])
    assert "| out-of-fold |" in printed and "| test |" in printed
    # Fluorescence images by Otsu nucleus share: each counted once.
    for name in ("out_of_fold", "test"):
        grey = [r for r in result[name] if r["type"].startswith("fluorescence")]
        assert sum(m["images"] for m in result["by_share"][name].values()) == len(grey)
    assert "| fluorescence, Otsu nucleus share |" in printed
    # Sources (size, modality): every image once, its own size in the name.
    for name in ("out_of_fold", "test"):
        assert sum(m["images"] for m in result["by_source"][name].values()) == len(result[name])
    shapes = {r["id"]: r["source"].split()[0] for r in result["test"]}
    ids, images = kaggle_images(test)
    assert shapes == {i: f"{im.shape[0]}x{im.shape[1]}" for i, im in zip(ids, images, strict=True)}
    assert "| source (size, modality) |" in printed
    # A run's predictions against themselves agree wherever there is a nucleus.
    run_dir = Path(made["submission"]).parent
    same = script.main([str(comp), cv["out_dir"], str(run_dir), str(test), "--against",
                        str(run_dir)])
    assert all(r["agreement"] == 1.0 for r in same["test"] if not r["empty"])
    assert f"| agreement with {run_dir.name} |" in capsys.readouterr().out
    # --stretch predicts the test images again from the run's model/, its input stretched
    # as asked: a U-Net family model that passes its input through shows the stretch itself.
    args = [str(comp), cv["out_dir"], str(run_dir), str(test), "--stretch"]
    with pytest.raises(SystemExit, match="needs a run of a U-Net family entry"):
        script.main(args + ["1", "99.8"])
    with pytest.raises(SystemExit, match="not 0 <= LOW < HIGH <= 100"):
        script.main(args + ["99", "1"])
    passthrough_model(run_dir / "model")
    views = {i.key: i.image for i in NUCLEI.pixel_items(NUCLEI.load_inputs(comp / "public", test))}
    for low, high in ((1, 99), (20, 60)):
        again = script.main(args + [str(low), str(high), "--against", str(run_dir)])
        assert f"stretched between percentiles {low} and {high}" in capsys.readouterr().out
        for row in again["test"]:
            stretched = normalise(views[row["id"]], percentiles=(low, high))
            assert row["foreground"] == pytest.approx((stretched > 0.5).mean(), abs=0.005)
        # --against: scored against the threshold run's own masks, as if they were labels
        theirs = script.predicted(Path(made["also_predicted"]),
                                  {k: v.shape[:2] for k, v in views.items()})
        first = again["test"][0]
        mine = script.restretched(NUCLEI, run_dir / "model", NUCLEI.take(
            NUCLEI.load_inputs(comp / "public", test), [list(views).index(first["id"])]),
            (low, high))[first["id"]]
        assert first["agreement"] == pytest.approx(image_score(theirs[first["id"]], mine))
    plain = tmp_path / "plain-run"
    plain.mkdir()
    (plain / "run.json").write_text(json.dumps({"entry": "threshold", "also_predicted": None}))
    with pytest.raises(SystemExit, match="with --also-predict"):
        script.main([str(comp), cv["out_dir"], str(plain), str(test)])


def passthrough_model(folder: Path) -> None:
    """A saved U-Net family model whose one output map is its input (a 1x1 convolution of
    weight 1), thresholded at 0.5, keeping every object."""
    import keras

    from models.segmentation import Trained, save_trained

    inputs = keras.Input((None, None, 1))
    layer = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer="zeros")
    config = {"arms": False, "patch": 32, "tile_overlap": 8, "tta": 1, "threads": "auto",
              "percentiles": [1, 99]}
    save_trained(Trained(keras.Model(inputs, layer(inputs)), config,
                         postprocess={"fg_threshold": 0.5, "marker_threshold": 0.5,
                                      "min_size": 0}), folder)
