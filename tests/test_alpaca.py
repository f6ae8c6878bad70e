"""The ALPACA-style landmark baseline: registration correctness on known motions, a smoke run
on demo-landmarks through `competition run`, its use as the win-rate reference, and (when the
real skulls are present) sub-millimetre transfer between two real mouse skulls."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from competition import entries
from competition.board import scoring
from competition.board.prepared import PreparedCompetition
from competition.formats import meshes
from competition.formats.files import SubmissionFile
from competition.tasks.landmarks.data import LandmarkData
from tests.conftest import shared
from tests.test_bad_input import run_cli

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "submissions" / "alpaca"


def load_entry():
    return entries.load_entry(FOLDER)


def config(smoke: bool = True, **changes) -> dict:
    doc = entries.resolve_config(FOLDER, "landmarks", FOLDER / "smoke.yaml" if smoke else None)
    doc.update(changes)
    return doc


def demo_train(comp_dir: Path) -> LandmarkData:
    comp = PreparedCompetition.open(comp_dir)
    return comp.task.load_train(comp.public_dir)


def moved(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rotation = Rotation.random(rng=rng).as_matrix()
    shift = rng.uniform(-50, 50, 3)
    return rotation, shift


@pytest.mark.usefixtures("open3d")
def test_transfer_recovers_landmarks_on_a_rigidly_moved_copy(demo_dirs):
    entry = load_entry()
    train = demo_train(demo_dirs["demo-landmarks"])
    vertices, landmarks = np.asarray(train.meshes[0].vertices), train.points[0]
    for seed in range(3):
        rotation, shift = moved(seed)
        target = vertices @ rotation.T + shift
        truth = landmarks @ rotation.T + shift
        found, info = entry.transfer(vertices, landmarks, target,
                                     config(principal_axes_starts=True), seed=seed)
        error = np.linalg.norm(found - truth, axis=1)
        # The demo mesh is ~30 mm across with ~1 mm between vertices (estimates snap to them).
        assert error.mean() < 0.6 and error.max() < 1.5, (seed, error, info)


def test_principal_axes_starts_are_proper_rotations_that_align_axes():
    entry = load_entry()
    rng = np.random.default_rng(0)
    source = rng.normal(size=(500, 3)) * [5, 2, 1]
    rotation, shift = moved(1)
    target = source @ rotation.T + shift
    starts = entry.principal_axes_starts(source, target)
    assert len(starts) == 4
    assert all(np.isclose(np.linalg.det(m[:3, :3]), 1) for m in starts)
    errors = [np.abs(source @ m[:3, :3].T + m[:3, 3] - target).max() for m in starts]
    assert min(errors) < 1e-6  # one of them is the true motion


@pytest.mark.usefixtures("open3d")
def test_smoke_run_on_demo_landmarks_and_its_use_as_reference(demo_dirs, tmp_path, capsys):
    from competition.training.run import run

    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(yaml.safe_dump({**yaml.safe_load((FOLDER / "smoke.yaml").read_text()),
                                     "principal_axes_starts": True}))
    record = run(comp_dir, FOLDER, smoke)
    assert record["status"] == "scored" and record["speeds"]["seconds_per_specimen"] > 0
    comp = PreparedCompetition.open(comp_dir)
    assert np.isfinite(scoring.score(comp, Path(record["submission"])).score)

    code, out, err = run_cli(["reference", comp_dir, record["submission"]], capsys)
    assert code == 0, err
    comp = PreparedCompetition.open(comp_dir)
    assert comp.reference_path.read_bytes() == Path(record["submission"]).read_bytes()
    naive = tmp_path / "naive.csv"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    scored = scoring.score(comp, naive)
    assert 0 <= scored.fields["win_rate"] <= 100
    assert "win_rate" in scored.fields["per_landmark"][0]
    code, out, err = run_cli(["score", comp_dir, naive], capsys)
    assert code == 0 and "per landmark (mm)" in out and "ties" in out
    first = next(line for line in out.splitlines() if line.startswith("│ 1 "))
    row = scored.fields["per_landmark"][0]
    assert f"{row['win_rate']:.1f}" in first and f"{row['reference_mean']:.3f}" in first
    # The reference against itself: every point ties.
    itself = scoring.score(comp, comp.reference_path)
    assert itself.fields["ties"] == itself.fields["n_points"]

    bad = tmp_path / "bad.csv"
    bad.write_text("specimen,landmark,x,y,z\nspecimen_001,1,0,0,nan\n")
    code, out, err = run_cli(["reference", comp_dir, bad], capsys)
    assert code == 2 and str(bad) in err and "Traceback" not in out + err


@pytest.mark.usefixtures("open3d")
def test_real_skull_transfer_is_sub_millimetre():
    source = shared("mouse_skulls")
    entry = load_entry()
    names = sorted(p.stem for p in (source / "Models").glob("*.ply"))[:2]
    loaded = []
    for name in names:
        ply, markup = source / "Models" / f"{name}.ply", source / "LMs" / f"{name}.mrk.json"
        mesh, _, _ = meshes.drop_nonfinite(meshes.read_mesh(ply.read_bytes(), str(ply)))
        points = meshes.read_markups(markup.read_bytes(), str(markup))
        loaded.append((np.asarray(mesh.vertices), np.array([points[k] for k in sorted(
            points, key=int)])))
    (tv, tl), (target, truth) = loaded
    rotation, shift = moved(7)
    found, _ = entry.transfer(tv, tl, target @ rotation.T + shift,
                              config(smoke=False, cpd_points=1500, cpd_rank=150))
    error = np.linalg.norm(found - (truth @ rotation.T + shift), axis=1)
    assert error.mean() < 1.0, error.mean()  # ALPACA's papers: sub-millimetre on mouse skulls


@pytest.mark.usefixtures("open3d")
def test_landmark_runs_log_coordinates_that_ensemble(demo_dirs, tmp_path, monkeypatch):
    from competition.ensembles import build as ensemble
    from competition.training.cv import cross_validate
    from competition.training.run import run
    from tests.test_tracking import EMBEDDED, switch_on

    switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    comp_dir = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    smoke = FOLDER / "smoke.yaml"
    overrides = [[f"seed={seed}", "principal_axes_starts=true"] for seed in (0, 1)]
    records = [run(comp_dir, FOLDER, smoke, overrides=o) for o in overrides]
    # Greedy chooses on the same runs' out-of-fold coordinates of the training specimens.
    folders = [cross_validate(comp_dir, FOLDER, smoke, o, folds=2)["out_dir"]
               for o in overrides]
    for method, cv in (("median", None), ("greedy", folders)):
        record = ensemble.build(comp_dir, [r["mlflow_run_id"] for r in records], method,
                                cv=cv)
        assert record["status"] in ("scored", "duplicate"), record.get("error")
    assert record["greedy_oof_scores"]
    # The median of two members is their mean: check it against the files themselves.
    record = ensemble.build(comp_dir, [r["mlflow_run_id"] for r in records], "median",
                            submit=False)
    comp = PreparedCompetition.open(comp_dir)
    solution = comp.load_solution()
    members = [comp.task.validate(SubmissionFile(r["submission"]), solution)
               for r in records]
    combined = comp.task.validate(SubmissionFile(record["submission"]), solution)
    assert np.allclose(combined, np.mean(members, axis=0), atol=2e-6)


@pytest.mark.usefixtures("open3d")
def test_cross_estimates_leave_each_specimen_out(demo_dirs, monkeypatch):
    entry = load_entry()
    train = demo_train(demo_dirs["demo-landmarks"])
    train = LandmarkData(train.ids[:3], train.meshes[:3], train.landmarks, train.points[:3])
    fitted_on = []
    real_choose = entry.choose_templates  # what fit does: the templates from training data

    def spy(data, cfg):
        fitted_on.append(list(data.ids))
        return real_choose(data, cfg)

    monkeypatch.setattr(entry, "choose_templates", spy)
    done = []
    estimates = entry.cross_estimates(train, config(principal_axes_starts=True), done.append)
    assert done == [0, 1, 2] and estimates.shape == train.points.shape
    assert fitted_on == [[i for i in train.ids if i != k] for k in train.ids]
    error = np.linalg.norm(estimates - train.points, axis=2)
    # Registration errors, not a copy of the specimen's own landmarks.
    assert (error.mean(axis=1) > 0.05).all() and error.mean() < 1.5, error.mean(axis=1)


@pytest.mark.usefixtures("open3d")
def test_cross_estimates_script_writes_a_landmark_csv(demo_dirs, tmp_path):
    import subprocess
    import sys

    from competition.formats import landmarks_csv

    comp = Path(shutil.copytree(demo_dirs["demo-landmarks"], tmp_path / "lm"))
    train = demo_train(comp)
    out = tmp_path / "estimates.csv"
    script = FOLDER / "cross_estimates.py"
    command = [sys.executable, script, comp, "--out", out, "--config", FOLDER / "smoke.yaml",
               "--set", "principal_axes_starts=true", "--cache", tmp_path / "cache"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "8 specimens" in done.stderr and "mean" in done.stderr
    points, _ = landmarks_csv.read_points(out.read_bytes(),
                                          expected={i: train.landmarks for i in train.ids})
    assert sorted(points) == sorted(train.ids)
    # One template per left-out specimen, each transfer kept; a rerun reads them back.
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/*.npz")}
    assert len(cached) == 8
    first = out.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == first
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*/*.npz")} == cached
    bad = subprocess.run([sys.executable, script, tmp_path / "missing", "--out", out],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "missing" in bad.stderr and "Traceback" not in bad.stderr
