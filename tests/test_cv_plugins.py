"""Cross-validation in the MRI and tomography plugins: items, groups and strata, `take` and
`inputs_of`, and held-out training items written as a hidden solution (no Usage split) that
the official scorer reads back: perfect predictions score 1, damaged ones less."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from competition.board.prepared import PreparedCompetition
from competition.formats.files import SubmissionFile
from competition.tasks import get_task
from competition.tasks.mri import layout
from competition.tasks.mri.data import MriData
from competition.tasks.tomography.data import runs
from tests.conftest import prepare_with_store

MRI = get_task("mri")
TOMO = get_task("tomography")
TOMO_SPEC = "56x48x40,chunks=32:24:16"  # 30 training slices, as tests/test_tomography.py


def score_of(task, inputs, predictions, solution, path: Path):
    path.write_bytes(task.write_submission(inputs, predictions))
    with SubmissionFile(path, task.limits) as submission:
        return task.score(submission, solution)


# --- MRI: patients, stratified by institution -------------------------------------------------

@pytest.fixture(scope="module")
def mri_train(tmp_path_factory) -> MriData:
    root = prepare_with_store("demo-mri", tmp_path_factory.mktemp("cv") / "mri", seed=0)
    return MRI.load_train(PreparedCompetition.open(root).public_dir)


def test_mri_items_are_patients_stratified_by_institution(mri_train):
    items = MRI.cv_items(mri_train)
    assert [i.key for i in items] == [i.group for i in items] == mri_train.cases
    assert [i.stratum for i in items] == [layout.institution(c) for c in mri_train.cases]
    assert {i.stratum for i in items} <= {"CS", "DU", "HT"} and all(i.stratum for i in items)
    assert not MRI.cv_contiguous
    # A site with one patient is a stratum of its own (the fold splitter places it where
    # it can); a name without the TCGA shape has none.
    odd = MriData(["case01", "TCGA_CS_4941_19960909", "TCGA_CS_4942_19970222",
                   "TCGA_HT_7602_19951103"], [], [], [])
    assert [i.stratum for i in MRI.cv_items(odd)] == ["", "CS", "CS", "HT"]


def test_mri_take_and_inputs(mri_train):
    held = MRI.take(mri_train, [2, 0])
    assert held.cases == [mri_train.cases[2], mri_train.cases[0]]
    assert held.masks is not None and held.masks[0] is mri_train.masks[2]
    inputs = MRI.inputs_of(held)
    assert inputs.masks is None and inputs.cases == held.cases
    assert inputs.volumes[1] is mri_train.volumes[0]


def test_mri_solution_scores_perfect_and_damaged(mri_train, tmp_path):
    with_lesion = [k for k, m in enumerate(mri_train.masks) if m.any()]
    held = MRI.take(mri_train, with_lesion[:2])
    path = MRI.write_solution(held, tmp_path / "cv")
    assert path == tmp_path / "cv" / "solution.csv"
    solution = MRI.load_solution(path)
    assert list(solution) == held.cases
    assert set(MRI.usage(solution).values()) == {None}
    for k, case in enumerate(held.cases):
        ref = solution[case]
        np.testing.assert_array_equal(ref.truth, held.masks[k].transpose(1, 2, 0))
        np.testing.assert_allclose(ref.geometry.zooms, held.spacing[k])
        assert ref.first_slice == held.first_slices[k]

    inputs = MRI.inputs_of(held)
    perfect = dict(zip(held.cases, held.masks, strict=True))
    result = score_of(MRI, inputs, perfect, solution, tmp_path / "perfect.zip")
    assert result.score == 1.0
    assert result.public is None and result.private is None
    empty = {case: np.zeros_like(m) for case, m in perfect.items()}
    worse = score_of(MRI, inputs, empty, solution, tmp_path / "empty.zip")
    assert worse.score < 1.0 and worse.public is None


# --- tomography: contiguous slices ------------------------------------------------------------

@pytest.fixture(scope="module")
def tomo_comp(tmp_path_factory) -> PreparedCompetition:
    root = prepare_with_store("demo-tomography", tmp_path_factory.mktemp("cv") / "tomo",
                              seed=0, synthetic=TOMO_SPEC)
    return PreparedCompetition.open(root)


@pytest.fixture(scope="module")
def tomo_train(tomo_comp):
    return TOMO.load_train(tomo_comp.public_dir)


def test_tomography_items_are_slices(tomo_train):
    items = TOMO.cv_items(tomo_train)
    assert [i.key for i in items] == [i.group for i in items] == tomo_train.ids
    assert len(items) == tomo_train.shape[0] == 30
    assert {i.stratum for i in items} == {""}
    assert TOMO.cv_contiguous and TOMO.cv_gap == 2


def test_runs():
    assert runs([]) == []
    assert runs([4]) == [(4, 5)]
    assert runs([0, 1, 2, 9, 10]) == [(0, 3), (9, 11)]


def test_tomography_take_two_runs_and_inputs(tomo_train):
    volume, labels = tomo_train.volume[:], tomo_train.labels[:]
    positions = [*range(0, 8), *range(20, 30)]  # the training part around slices 8..19
    took = TOMO.take(tomo_train, positions)
    assert isinstance(took.volume, np.ndarray) and isinstance(took.labels, np.ndarray)
    np.testing.assert_array_equal(took.volume, volume[positions])
    np.testing.assert_array_equal(took.labels, labels[positions])
    one = TOMO.take(tomo_train, range(10, 14))
    np.testing.assert_array_equal(one.labels, labels[10:14])
    inputs = TOMO.inputs_of(one)
    assert inputs.labels is None and inputs.volume is one.volume


def test_tomography_solution_scores_perfect_and_damaged(tomo_comp, tomo_train, tmp_path):
    held = TOMO.take(tomo_train, range(10, 18))
    path = TOMO.write_solution(held, tmp_path / "cv")
    assert path == tmp_path / "cv" / "solution.json"
    doc = json.loads(path.read_text())
    official = json.loads((tomo_comp.root / "private" / "solution.json").read_text())
    assert doc["labels"] == official["labels"] == "solution.zarr"
    assert doc["classes"] == official["classes"] and doc["usage"] == {}
    solution = TOMO.load_solution(path)
    assert solution.shape == held.shape
    assert set(TOMO.usage(solution).values()) == {None}
    np.testing.assert_array_equal(zarr.open_array(str(solution.folder), mode="r")[:],
                                  held.labels)

    inputs = TOMO.inputs_of(held)
    result = score_of(TOMO, inputs, held.labels, solution, tmp_path / "perfect.zip")
    assert result.score == 1.0
    assert result.public is None and result.private is None
    shifted = np.roll(held.labels, 3, axis=2)
    worse = score_of(TOMO, inputs, shifted, solution, tmp_path / "shifted.zip")
    assert worse.score < 0.95 and worse.public is None


def test_tomography_solution_from_lazy_training_data(tomo_train, tmp_path):
    """hold_out's training part stays lazy (a prefix of the zarr store): it writes too."""
    rest, _ = TOMO.hold_out(tomo_train)
    solution = TOMO.load_solution(TOMO.write_solution(rest, tmp_path / "lazy"))
    np.testing.assert_array_equal(zarr.open_array(str(solution.folder), mode="r")[:],
                                  np.asarray(rest.labels))
