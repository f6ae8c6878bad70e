"""`competition cv`: folds from the task's groups, official scores of held-out training items,
out-of-fold predictions kept, MLflow parent and child runs, nothing read under private/."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError
from competition.formats import maps as maps_format
from competition.formats import nuclei_csv
from competition.formats.files import SubmissionFile
from competition.metrics.nuclei import image_score
from competition.tasks.base import CvItem
from competition.tasks.nuclei import appearance
from competition.training.cv import cross_validate, make_folds
from tests.conftest import prepare_with_store
from tests.test_bad_input import run_cli
from tests.test_cv_plugins import TOMO_SPEC

REPO = Path(__file__).resolve().parents[1]
THRESHOLD = REPO / "submissions" / "threshold"


@pytest.fixture(scope="module")
def cv_copies(demo_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    copies = {k: Path(shutil.copytree(v, root / k)) for k, v in demo_dirs.items()}
    copies["demo-mri"] = prepare_with_store("demo-mri", root / "demo-mri", seed=0)
    copies["demo-tomography"] = prepare_with_store("demo-tomography", root / "demo-tomography",
                                                   seed=0, synthetic=TOMO_SPEC)
    return copies


# --- folds -------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.sampled_from("abc")), min_size=4,
                max_size=60), st.integers(2, 5), st.integers(0, 3))
def test_grouped_folds_keep_groups_whole_and_cover_every_item_once(pairs, k, seed):
    # One stratum per group (a patient has one institution).
    items = [CvItem(str(n), f"g{g}", "abc"[g % 3]) for n, (g, _) in enumerate(pairs)]
    n_groups = len({i.group for i in items})
    if n_groups < k:
        with pytest.raises(CompetitionError, match=f"only {n_groups} groups"):
            make_folds(items, k, seed)
        return
    folds = make_folds(items, k, seed)
    assert len(folds) == k
    held = [p for f in folds for p in f.held]
    assert sorted(held) == list(range(len(items)))
    for fold in folds:
        assert fold.held and set(fold.train) == set(range(len(items))) - set(fold.held)
        assert not {items[p].group for p in fold.held} & {items[p].group for p in fold.train}


def test_grouped_folds_keep_strata_in_proportion():
    items = [CvItem(str(n), str(n), "rare" if n % 5 == 0 else "common") for n in range(50)]
    for fold in make_folds(items, 5, seed=1):
        assert Counter(items[p].stratum for p in fold.held) == {"rare": 2, "common": 8}


def test_contiguous_folds_are_blocks_with_a_gap():
    items = [CvItem(str(z), str(z)) for z in range(20)]
    folds = make_folds(items, 4, contiguous=True, gap=1)
    assert [f.held for f in folds][1] == [5, 6, 7, 8, 9]
    assert folds[1].train == [*range(0, 4), *range(11, 20)]
    assert sorted(p for f in folds for p in f.held) == list(range(20))
    with pytest.raises(CompetitionError, match="only 3 slices"):
        make_folds(items[:3], 4, contiguous=True, kind="slice")


# --- every task writes solutions the official scorer reads -------------------------------

@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_held_out_truths_as_a_solution_score_perfect_predictions_best(demo_dirs, kind,
                                                                      tmp_path):
    comp = PreparedCompetition.open(demo_dirs[kind])
    task = comp.task
    train = task.load_train(comp.public_dir)
    held = task.take(train, [0, 2, 3])
    inputs = task.inputs_of(held)
    solution = task.load_solution(task.write_solution(held, tmp_path / "truth"))
    assert set(task.usage(solution).values()) == {None}
    if kind == "demo-nuclei":
        assert inputs.labels is None
        perfect = dict(zip(held.ids, held.labels, strict=True))
        worse = {i: np.zeros_like(lab) for i, lab in perfect.items()}
    elif kind == "demo-em":
        assert inputs.labels is None
        perfect = (held.labels > 0).astype(np.float32)
        worse = np.ones_like(perfect)
    else:
        from competition.tasks.landmarks.data import held_out_motion
        from competition.tasks.landmarks.prepare import apply

        assert inputs.points is None
        # Held-out specimens come in a pose of their own, as hidden ones do: moved rigidly
        # (distances kept), truths alike.
        for mesh, original in zip(inputs.meshes, held.meshes, strict=True):
            v, w = np.asarray(mesh.vertices), np.asarray(original.vertices)
            assert not np.allclose(v, w)
            assert np.allclose(np.linalg.norm(v[1:50] - v[0], axis=1),
                               np.linalg.norm(w[1:50] - w[0], axis=1))
        perfect = {i: apply(held_out_motion(i), p)
                   for i, p in zip(held.ids, held.points, strict=True)}
        worse = {i: p + 1.0 for i, p in perfect.items()}
    scores = []
    for name, predictions in (("perfect", perfect), ("worse", worse)):
        path = tmp_path / f"{name}{task.submission_suffix}"
        path.write_bytes(task.write_submission(inputs, predictions))
        with SubmissionFile(path) as f:
            result = task.score(f, solution)
        assert result.public is None and len(result.items) == 3
        scores.append(result.score)
    best = 0.0 if not task.higher_is_better else 1.0
    assert scores[0] == pytest.approx(best, abs=1e-6)
    assert (scores[1] < scores[0]) if task.higher_is_better else (scores[1] > scores[0])


# --- the command -----------------------------------------------------------------------------

def test_cv_json_scores_each_fold_officially_and_keeps_out_of_fold_maps(cv_copies, capsys):
    comp_dir = cv_copies["demo-nuclei"]
    code, stdout, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config",
                                    THRESHOLD / "smoke.yaml", "--folds", "3", "--json"], capsys)
    assert code == 0, stderr
    record = json.loads(stdout)
    assert [f["fold"] for f in record["folds"]] == [1, 2, 3]
    assert record["mean"] == pytest.approx(np.mean([f["score"] for f in record["folds"]]))
    pooled = record["pooled"]
    assert pooled["low"] <= pooled["score"] <= pooled["high"] and pooled["low"] < pooled["high"]
    comp = PreparedCompetition.open(comp_dir)
    train = comp.task.load_train(comp.public_dir)
    assert set(record["assignment"]) == set(train.ids)
    assert json.loads((Path(record["out_dir"]) / "cv.json").read_text())["mean"] == \
        record["mean"]
    maps = maps_format.from_npz(Path(record["oof_maps"]).read_bytes())
    assert set(maps) == set(train.ids)
    # Each fold's score is the DSB metric of its file against the held-out labels.
    labels = dict(zip(train.ids, train.labels, strict=True))
    types = {row["key"]: row["stratum"] for f in record["folds"] for row in f["item_values"]}
    assert set(types) == set(train.ids) and set(types.values()) <= set(appearance.TYPES)
    for fold in record["folds"]:
        held = [i for i, f in record["assignment"].items() if f == fold["fold"]]
        parsed = nuclei_csv.read_submission(Path(fold["submission"]).read_bytes(),
                                            {i: labels[i].shape for i in held})
        expected = np.mean([image_score(labels[i], parsed[i].label_image(i)) for i in held])
        assert fold["score"] == pytest.approx(expected, abs=1e-9)
        assert fold["items"] == len(held) and fold["train_items"] == len(train.ids) - len(held)


@pytest.mark.parametrize(("kind", "entry"), [
    ("demo-em", "threshold"), ("demo-nuclei", "threshold"), ("demo-landmarks", "alpaca"),
    ("demo-mri", "unet_mri"), ("demo-tomography", "tomo_unet")])
def test_cv_reads_nothing_under_private(cv_copies, kind, entry, tmp_path, request):
    if entry == "alpaca":
        request.getfixturevalue("open3d")
    comp_dir, folder = cv_copies[kind], REPO / "submissions" / entry
    before = cross_validate(comp_dir, folder, folder / "smoke.yaml", folds=2)
    # Root reads any file: the folder goes away instead of losing its permissions.
    shutil.move(comp_dir / "private", tmp_path / "private")
    try:
        after = cross_validate(comp_dir, folder, folder / "smoke.yaml", folds=2)
    finally:
        shutil.move(tmp_path / "private", comp_dir / "private")
    assert after["assignment"] == before["assignment"]
    for a, b in zip(after["folds"], before["folds"], strict=True):
        truth = sorted(p.relative_to(Path(b["submission"]).parent)
                       for p in (Path(b["submission"]).parent / "truth").rglob("*"))
        assert truth == sorted(p.relative_to(Path(a["submission"]).parent)
                               for p in (Path(a["submission"]).parent / "truth").rglob("*"))
        if entry == "threshold":  # deterministic: the very same scores
            assert a["score"] == b["score"]
    if entry == "threshold":
        assert after["pooled"] == before["pooled"]


def test_too_many_folds_is_a_clear_refusal(cv_copies, capsys):
    code, _, stderr = run_cli(["cv", cv_copies["demo-landmarks"], REPO / "submissions" /
                               "alpaca", "--folds", "500"], capsys)
    assert code == 2
    assert "--folds 500" in stderr and "groups" in stderr and "Traceback" not in stderr


ENTRIES = [("demo-nuclei", "unet"), ("demo-nuclei", "multiarm_unet"), ("demo-em", "unet"),
           ("demo-landmarks", "alpaca"), ("demo-landmarks", "alpaca_bias"),
           ("demo-landmarks", "xception_landmarks"), ("demo-mri", "unet_mri"),
           ("demo-tomography", "tomo_unet")]


@pytest.mark.parametrize(("kind", "entry"), ENTRIES)
def test_cv_of_every_shipped_entry(cv_copies, kind, entry, request):
    if entry in ("alpaca", "alpaca_bias", "xception_landmarks"):
        request.getfixturevalue("open3d")
    folder = REPO / "submissions" / entry
    record = cross_validate(cv_copies[kind], folder, folder / "smoke.yaml", folds=2)
    assert len(record["folds"]) == 2
    assert all(np.isfinite(f["score"]) for f in record["folds"])
    assert len(record["assignment"]) == sum(f["items"] for f in record["folds"])


def test_mlflow_gets_a_parent_run_with_a_child_per_fold(cv_copies, tmp_path, monkeypatch):
    from competition.tracking import runs as tracking
    from tests.test_tracking import EMBEDDED, switch_on

    config = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    record = cross_validate(cv_copies["demo-em"], THRESHOLD, THRESHOLD / "smoke.yaml", folds=3)
    comp = PreparedCompetition.open(cv_copies["demo-em"])
    tracker = tracking.Tracker(config, "participants")
    found = tracker.runs(comp.key, "tags.kind = 'cv'")
    parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == record[
        "mlflow_run_id"]]
    assert [p.info.run_id for p in parents] == [record["mlflow_run_id"]]
    assert parents[0].data.metrics["cv_mean"] == pytest.approx(record["mean"])
    assert sorted(c.data.metrics["score"] for c in children) == pytest.approx(
        sorted(f["score"] for f in record["folds"]))
    assert sorted(c.data.params["fold"] for c in children) == ["1", "2", "3"]


def test_out_of_fold_slices_keep_their_training_numbers(cv_copies):
    record = cross_validate(cv_copies["demo-em"], THRESHOLD, THRESHOLD / "smoke.yaml", folds=3)
    comp = PreparedCompetition.open(cv_copies["demo-em"])
    train = comp.task.load_train(comp.public_dir)
    maps = maps_format.from_npz(Path(record["oof_maps"]).read_bytes())
    assert sorted(maps, key=int) == train.ids
    keys = [row["key"] for f in record["folds"] for row in f["item_values"]]
    assert sorted(keys, key=int) == train.ids
    # Each map is the threshold entry's cell probability of that training slice (the
    # smoothing its fold chose), not of the slice at that place in its block.
    from competition.entries import load_entry, resolve_config

    entry = load_entry(THRESHOLD)
    sigmas = resolve_config(THRESHOLD, "em", THRESHOLD / "smoke.yaml", [])["sigmas"]

    def of_slice(z: int) -> list[np.ndarray]:
        return [entry.em_probability(train.volume[z], sigma) for sigma in sigmas]

    for key, fold in record["assignment"].items():
        z = int(key)
        held = sorted(int(k) for k, f in record["assignment"].items() if f == fold)
        got = maps[key][..., 0].astype(np.float32)
        assert any(np.allclose(got, m, atol=2e-3) for m in of_slice(z)), key
        local = held.index(z)
        if local != z:
            assert not any(np.allclose(got, m, atol=2e-3) for m in of_slice(local)), key


def test_learning_curves_score_the_held_out_fold_after_each_epoch(cv_copies):
    folder = REPO / "submissions" / "unet"
    record = cross_validate(cv_copies["demo-em"], folder, folder / "smoke.yaml",
                            ["em.epochs=2"], folds=2, curves=True)
    for fold in record["folds"]:
        assert [row["epoch"] for row in fold["curve"]] == [1, 2]
        assert all("loss" in row and 0 <= row["held_out_score"] <= 1 for row in fold["curve"])
        # EM predicts without test-time augmentation: the last epoch's curve point is the
        # fold's own score.
        assert fold["curve"][-1]["held_out_score"] == pytest.approx(fold["score"], abs=1e-6)


def test_a_split_that_would_leave_a_fold_empty_fills_every_fold():
    # 5 groups of unequal sizes into 5 folds: with seed 0 scikit-learn's stratified search
    # puts two groups in one fold and leaves another empty.
    sizes = [4, 7, 4, 5, 7]
    items = [CvItem(f"{g}-{n}", str(g), "abc"[g % 3]) for g, size in enumerate(sizes)
             for n in range(size)]
    folds = make_folds(items, 5, seed=0)
    assert sorted(len({items[p].group for p in f.held}) for f in folds) == [1] * 5
    assert sorted(p for f in folds for p in f.held) == list(range(len(items)))


def test_source_groups_hold_whole_acquisition_sets_out_of_training(cv_copies, capsys):
    comp_dir = cv_copies["demo-nuclei"]
    comp = PreparedCompetition.open(comp_dir)
    train = comp.task.load_train(comp.public_dir)
    source = {i: appearance.source(rgb) for i, rgb in zip(train.ids, train.images,
                                                          strict=True)}
    assert len(set(source.values())) >= 3  # the demo's sizes x modalities
    code, stdout, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config",
                                    THRESHOLD / "smoke.yaml", "--folds", "3", "--groups",
                                    "source", "--json"], capsys)
    assert code == 0, stderr
    record = json.loads(stdout)
    assert record["groups"] == "source" and set(record["assignment"]) == set(train.ids)
    fold_of_source: dict[str, set[int]] = {}
    for key, fold in record["assignment"].items():
        fold_of_source.setdefault(source[key], set()).add(fold)
    assert all(len(folds) == 1 for folds in fold_of_source.values())  # never split
    assert {f["fold"] for f in record["folds"]} == {1, 2, 3}
    # The strata are still the image types (what cv-compare breaks a difference down by).
    types = {row["stratum"] for f in record["folds"] for row in f["item_values"]}
    assert types <= set(appearance.TYPES)
    # The plan remembers the grouping: resuming without it is refused.
    folder = Path(record["out_dir"])
    (folder / "cv.json").unlink()
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", THRESHOLD / "smoke.yaml",
                               "--folds", "3", "--resume", folder], capsys)
    assert code == 2 and "another assignment, groups (--groups source);" in stderr
    # A grouping the task does not offer is refused before anything is read, naming those
    # it has.
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--groups", "microscope"], capsys)
    assert code == 2 and "no such grouping (it has: source: whole acquisition" in stderr
    code, _, stderr = run_cli(["cv", cv_copies["demo-em"], THRESHOLD, "--groups", "source"],
                              capsys)
    assert code == 2 and "(it has: none)" in stderr


def test_an_interrupted_cross_validation_resumes_its_unfinished_folds(cv_copies, capsys,
                                                                     monkeypatch):
    from competition.training import cv as cv_module

    comp_dir = cv_copies["demo-nuclei"]
    smoke = THRESHOLD / "smoke.yaml"
    whole = cross_validate(comp_dir, THRESHOLD, smoke, folds=3)
    real = cv_module._one_fold
    ran: list[int] = []
    stop = [True]

    def stopped_at_fold_3(setup, train, items, fold, tracked):
        ran.append(fold.number)
        if fold.number == 3 and stop[0]:
            (setup.out_dir / "fold-3" / "half-written").parent.mkdir()
            (setup.out_dir / "fold-3" / "half-written").write_text("x")
            raise KeyboardInterrupt
        return real(setup, train, items, fold, tracked)

    monkeypatch.setattr(cv_module, "_one_fold", stopped_at_fold_3)
    with pytest.raises(KeyboardInterrupt):
        cross_validate(comp_dir, THRESHOLD, smoke, folds=3)
    folder = max((comp_dir / "cv").glob("threshold-*"), key=lambda p: p.stat().st_mtime)
    assert not (folder / "cv.json").exists() and (folder / "fold-2" / "fold.json").is_file()
    # Another configuration, fold count or seed is refused, naming what differs.
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", smoke, "--folds", "4",
                               "--resume", folder], capsys)
    assert code == 2 and "another assignment, k;" in stderr
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--folds", "3", "--resume",
                               folder], capsys)
    assert code == 2 and "another config (" in stderr
    # While another process runs it, a resume is refused (it would clear its fold).
    from competition.outputs import exclusive

    with exclusive(folder, "x"):
        code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", smoke, "--folds",
                                   "3", "--resume", folder], capsys)
    assert code == 2 and "running in another process" in stderr
    # A folder made before the entry had a key (here: min_size) resumes when the key is at
    # the entry's default, and is refused naming it when it is set otherwise.
    plan = json.loads((folder / "plan.json").read_text())
    del plan["config"]["min_size"]
    del plan["groups"]  # nor had it --groups: the task's own grouping
    (folder / "plan.json").write_text(json.dumps(plan))
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", smoke, "--folds", "3",
                               "--set", "nuclei.min_size=7", "--resume", folder], capsys)
    assert code == 2 and "another config (min_size)" in stderr
    # A finished fold whose maps are gone is run again (its maps belong in the whole set).
    (folder / "fold-1" / "oof_maps.npz").unlink()

    ran.clear()
    stop[0] = False
    code, stdout, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", smoke, "--folds",
                                    "3", "--resume", folder, "--json"], capsys)
    assert code == 0, stderr
    assert ran == [1, 3]  # fold 2 was kept
    record = json.loads(stdout)
    assert record["out_dir"] == str(folder) and not (folder / "fold-3" / "half-written").exists()
    # The threshold entry is deterministic: the same folds and scores as the unbroken run.
    assert [f["score"] for f in record["folds"]] == [f["score"] for f in whole["folds"]]
    assert record["pooled"] == whole["pooled"] and record["assignment"] == whole["assignment"]
    maps = maps_format.from_npz(Path(record["oof_maps"]).read_bytes())
    assert set(maps) == set(record["assignment"])
    assert not list(folder.glob("fold-*/oof_maps.npz"))  # kept once, in the whole set
    code, _, stderr = run_cli(["cv", comp_dir, THRESHOLD, "--config", smoke, "--folds", "3",
                               "--resume", folder], capsys)
    assert code == 2 and "finished" in stderr


def test_two_cross_validations_on_the_same_folds_compare_item_by_item(cv_copies, capsys):
    comp_dir = cv_copies["demo-nuclei"]
    smoke = THRESHOLD / "smoke.yaml"
    a = cross_validate(comp_dir, THRESHOLD, smoke, folds=3)
    b = cross_validate(comp_dir, THRESHOLD, smoke, ["nuclei.min_size=400"], folds=3)
    code, stdout, stderr = run_cli(["cv-compare", a["out_dir"], b["out_dir"], "--json"], capsys)
    assert code == 0, stderr
    found = json.loads(stdout)
    values = {name: {row["key"]: row["values"][0] for f in r["folds"] for row in f["item_values"]}
              for name, r in (("a", a), ("b", b))}
    assert found["items"] == len(a["assignment"]) and found["folds_compared"] == [1, 2, 3]
    assert found["config_changes"] == {"min_size": [a["config"]["min_size"], 400]}
    assert [(f["a"], f["b"]) for f in found["per_fold"]] == \
        [(fa["score"], fb["score"]) for fa, fb in zip(a["folds"], b["folds"], strict=True)]
    assert found["difference"] == pytest.approx(a["pooled"]["score"] - b["pooled"]["score"])
    assert found["difference"] > 0 and found["low"] <= found["difference"] <= found["high"]
    assert found["folds_left_out"] == [] and found["per_stratum"]
    assert all(Path(r["out_dir"]).name in found["sentence"] for r in (a, b))
    # B against A: the same comparison mirrored.
    code, stdout, _ = run_cli(["cv-compare", b["out_dir"], a["out_dir"], "--json"], capsys)
    back = json.loads(stdout)
    assert (back["difference"], back["low"], back["high"]) == pytest.approx(
        (-found["difference"], -found["high"], -found["low"]))
    # A stopped cross-validation compares on the folds both finished, naming the others.
    stopped = Path(b["out_dir"]).with_name("threshold-stopped")
    shutil.copytree(b["out_dir"], stopped)
    (stopped / "cv.json").unlink()
    (stopped / "fold-2" / "fold.json").unlink()
    plan = json.loads((stopped / "plan.json").read_text())
    del plan["config"]["min_size"]  # as a record made before the entry had the key
    (stopped / "plan.json").write_text(json.dumps(plan))
    code, stdout, stderr = run_cli(["cv-compare", a["out_dir"], stopped], capsys)
    assert code == 0, stderr
    assert "fold 2 left out" in stdout and "threshold-stopped" in stdout
    assert f"min_size: {a['config']['min_size']} (A) -> (absent) (B)" in stdout
    # B first: the unfinished one's task comes from its competition (public part only).
    code, stdout, stderr = run_cli(["cv-compare", stopped, a["out_dir"], "--json"], capsys)
    assert code == 0, stderr
    assert json.loads(stdout)["difference"] == pytest.approx(-partial_difference(a, b))
    partial = json.loads(run_cli(["cv-compare", a["out_dir"], stopped, "--json"], capsys)[1])
    kept = [k for k, fold in a["assignment"].items() if fold != 2]
    assert partial["folds_compared"] == [1, 3] and partial["items"] == len(kept)
    assert partial["difference"] == pytest.approx(partial_difference(a, b))
    assert partial["difference"] == pytest.approx(
        np.mean([values["a"][k] - values["b"][k] for k in kept]))
    # Other folds (another seed) or a folder that is no cross-validation: refused.
    other = cross_validate(comp_dir, THRESHOLD, smoke, folds=3, seed=1)
    code, _, stderr = run_cli(["cv-compare", a["out_dir"], other["out_dir"]], capsys)
    assert code == 2 and "not cross-validated on the same folds (fold_seed, assignment " \
        "differ)" in stderr
    code, _, stderr = run_cli(["cv-compare", a["out_dir"], comp_dir], capsys)
    assert code == 2 and "no readable plan.json" in stderr


def partial_difference(a, b):
    """A's mean image score minus B's over folds 1 and 3 (computed here from the records)."""
    scores = [{row["key"]: row["values"][0] for f in r["folds"] if f["fold"] != 2
               for row in f["item_values"]} for r in (a, b)]
    return np.mean([scores[0][k] - scores[1][k] for k in scores[0]])


def fake_cv(folder: Path, errors: dict[str, float], folds: dict[str, int], task: str) -> Path:
    """A cross-validation folder as cv writes it, of a task scored from each item's one
    value (landmarks: the specimen's mean squared error)."""
    plan = {"entry": "e", "competition": "c", "config": {}, "k": 2, "fold_seed": 0,
            "assignment": folds}
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps(plan))
    (folder / "cv.json").write_text(json.dumps({"task": task}))
    for number in (1, 2):
        keys = [k for k, n in folds.items() if n == number]
        record = {"fold": number, "score": float(np.sqrt(np.mean([errors[k] for k in keys]))),
                  "item_values": [{"key": k, "group": k, "stratum": "", "values": [errors[k]]}
                                  for k in keys]}
        (folder / f"fold-{number}").mkdir()
        (folder / f"fold-{number}" / "fold.json").write_text(json.dumps(record))
    return folder


def test_cv_compare_says_which_is_better_where_lower_is_better(tmp_path, capsys):
    # Landmarks (RMSE, lower is better): A's errors are a quarter of B's, so A's RMSE is
    # half B's; positive means A is better, as on the leaderboard.
    rng = np.random.default_rng(0)
    keys = [f"s{i}" for i in range(12)]
    folds = {k: 1 + i % 2 for i, k in enumerate(keys)}
    errors = {k: float(e) for k, e in zip(keys, rng.uniform(1, 2, 12), strict=True)}
    a = fake_cv(tmp_path / "a", errors, folds, "landmarks")
    b = fake_cv(tmp_path / "b", {k: 4 * e for k, e in errors.items()}, folds, "landmarks")
    code, stdout, stderr = run_cli(["cv-compare", a, b, "--json"], capsys)
    assert code == 0, stderr
    found = json.loads(stdout)
    rmse = np.sqrt(np.mean(list(errors.values())))
    assert found["higher_is_better"] is False and found["per_stratum"] == {}
    assert found["difference"] == pytest.approx(2 * rmse - rmse) and found["low"] > 0
    assert found["sentence"].startswith("a beats b")
    assert all(f["difference"] > 0 for f in found["per_fold"])
    # A fold holding other items than its plan assigns, or an item without a finite value:
    # refused, naming the file or the item.
    record = json.loads((b / "fold-2" / "fold.json").read_text())
    record["item_values"].append(dict(record["item_values"][0]))
    (b / "fold-2" / "fold.json").write_text(json.dumps(record))
    code, _, stderr = run_cli(["cv-compare", a, b], capsys)
    assert code == 2 and "fold-2/fold.json: does not hold the items its plan assigns" in stderr
    record["item_values"].pop()
    record["item_values"][0]["values"] = [None]
    (b / "fold-2" / "fold.json").write_text(json.dumps(record))
    code, _, stderr = run_cli(["cv-compare", a, b], capsys)
    assert code == 2 and f"item {record['item_values'][0]['key']} has no finite values" in stderr
