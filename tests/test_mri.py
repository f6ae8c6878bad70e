"""The MRI task (issue 20): the Kaggle LGG layout prepared by patient, NIfTI and CSV
submissions validated before decoding, per-patient Dice/HD/HD95/ASSD with the empty-mask and
inf -> diagonal rules, the mean-of-ranks board, the portal, MLflow, pictures and baselines."""

from __future__ import annotations

import gzip
import io
import json
import math
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image
from scipy.stats import rankdata

from competition.board import leaderboard
from competition.board.board import Board
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError, SubmissionError
from competition.formats import nifti, slices_csv
from competition.formats.files import SubmissionFile
from competition.formats.folder_zip import zip_folder
from competition.metrics.surface import surface_scores
from competition.tasks import get_task
from competition.tasks.mri import data as mri_data
from competition.tasks.mri import geometry, layout
from competition.tasks.mri.prepare import strata
from competition.tasks.mri.submission import Reference
from competition.tasks.preparing import prepare
from tests.conftest import REPO, load_script, prepare_with_store, shared

TASK = get_task("mri")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return prepare_with_store("demo-mri", tmp_path_factory.mktemp("mri") / "demo-mri", seed=0)


@pytest.fixture
def comp(demo, tmp_path) -> PreparedCompetition:
    return PreparedCompetition.open(shutil.copytree(demo, tmp_path / "demo-mri"))


def truths(root: Path) -> dict[str, Reference]:
    return TASK.load_solution(root / "private" / "solution.csv")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    return mri_data.write_zip(members)


def volume_zip(solution: dict[str, Reference], change=None) -> bytes:
    """The true volumes as a zip of NIfTIs (`change(case, labels, affine)` may alter one)."""
    members = {}
    for case, ref in solution.items():
        labels, affine = ref.truth.astype(np.uint8), ref.geometry.affine
        if change is not None:
            labels, affine, name = change(case, labels, affine)
        else:
            name = f"{case}.nii.gz"
        if name is not None:
            members[name] = labels if isinstance(labels, bytes) else \
                nifti.write_volume(labels, affine)
    return zip_bytes(members)


def check(comp: PreparedCompetition, data: bytes, tmp_path: Path, name="sub.zip"):
    path = tmp_path / name
    path.write_bytes(data)
    return TASK.score(comp.submission(path), comp.load_solution())


def refused(comp, data, tmp_path, name="sub.zip") -> str:
    with pytest.raises(SubmissionError) as e:
        check(comp, data, tmp_path, name)
    return str(e.value)


# --- prepare --------------------------------------------------------------------------------

def test_sample_is_split_by_patient_stratified_and_deterministically(tmp_path):
    source = shared("lgg_mri")
    one = prepare("lgg-mri", tmp_path / "one", source=source, seed=0)
    two = prepare("lgg-mri", tmp_path / "two", source=source, seed=0)
    assert (one / "manifest.json").read_bytes() == (two / "manifest.json").read_bytes()
    cases = sorted(p.name for p in (source / "kaggle_3m").iterdir() if p.is_dir())
    train = sorted(p.name for p in (one / "public" / "train").iterdir())
    test = sorted(p.name for p in (one / "public" / "test").iterdir())
    assert sorted(train + test) == cases and not set(train) & set(test)
    assert (len(train), len(test)) == (4, 2)
    # Stratified: one hidden patient of HT's two, one of the four single-patient sites.
    assert sorted(layout.institution(c) == "HT" for c in test) == [False, True]
    # Every slice of a patient stays with it, masks only for training.
    for case in test:
        n = len(list((source / "kaggle_3m" / case).glob(f"{case}_*_mask.tif")))
        files = sorted(p.name for p in (one / "public" / "test" / case).iterdir())
        assert len(files) == n and not any(f.endswith("_mask.tif") for f in files)
    for case in train:
        src = sorted(p.name for p in (source / "kaggle_3m" / case).iterdir())
        assert sorted(p.name for p in (one / "public" / "train" / case).iterdir()) == src
    solution = truths(one)
    assert sorted(solution) == test
    ref = solution[test[0]]
    assert ref.geometry.zooms == (1.0, 1.0, 5.0) and ref.geometry.axis_codes == ("P", "L", "S")
    # The hidden volume is the masks in numeric slice order, (rows, columns, slices).
    n = ref.geometry.shape[2]
    stack = np.stack([tifffile.imread(source / "kaggle_3m" / test[0] /
                                      f"{test[0]}_{k}_mask.tif") > 0 for k in range(1, n + 1)],
                     axis=-1)
    assert np.array_equal(ref.truth, stack)
    assert prepare("lgg-mri", tmp_path / "three", source=source, seed=1) is not None


def test_split_strata_pool_single_patient_sites():
    names = ["TCGA_CS_1_1", "TCGA_HT_2_1", "TCGA_HT_3_1", "TCGA_EZ_4_1", "odd"]
    assert strata(names) == ["(single-patient sites)", "HT", "HT", "(single-patient sites)",
                             "(single-patient sites)"]


def test_slices_are_ordered_by_number_not_as_strings(tmp_path):
    case = "TCGA_CS_0001_19990101"
    folder = tmp_path / "kaggle_3m" / case
    folder.mkdir(parents=True)
    for n in range(1, 13):  # _10 sorts before _2 as a string
        tifffile.imwrite(folder / f"{case}_{n}.tif", np.full((8, 8, 3), n, np.uint8))
        tifffile.imwrite(folder / f"{case}_{n}_mask.tif", np.zeros((8, 8), np.uint8))
    (found,) = layout.find_cases(tmp_path / "kaggle_3m", masks=True)
    volume, _ = layout.read_case(found, masks=True)
    assert volume[:, 0, 0, 0].tolist() == list(range(1, 13))
    (folder / f"{case}_5.tif").unlink()
    with pytest.raises(CompetitionError, match="slice 5 is missing"):
        layout.find_cases(tmp_path / "kaggle_3m", masks=False)


def test_spacing_file_overrides_the_default(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(shared("lgg_mri"), source)
    case = "TCGA_HT_7686_19950629"
    (source / "spacing.csv").write_text(f"case,row_mm,col_mm,slice_mm\n*,0.9,0.9,6\n"
                                        f"{case},1,1,2.5\n")
    root = prepare("lgg-mri", tmp_path / "c", source=source, seed=0)
    table = geometry.read_spacing(root / "public" / "spacing.csv")
    assert table[case] == (1.0, 1.0, 2.5) and len(set(table.values())) == 2
    for name, ref in truths(root).items():
        assert ref.geometry.zooms == pytest.approx(table[name])
    (source / "spacing.csv").write_text("case,row_mm,col_mm,slice_mm\nTCGA_XX_1_2,1,1,-1\n")
    with pytest.raises(CompetitionError, match="positive"):
        prepare("lgg-mri", tmp_path / "d", source=source, seed=0)


def test_demo_generator_runs_the_real_preparer(demo):
    config = yaml.safe_load((demo / "competition.yaml").read_text())
    assert config["task"] == "mri" and config["counts"]["test"] == 3
    solution = truths(demo)
    assert {r.usage for r in solution.values()} == {"Public", "Private"}
    sample = demo / "public" / "sample_submission.zip"
    result = TASK.score(SubmissionFile(sample, TASK.limits), solution)
    assert result.score == 0.0  # empty predictions of non-empty truths
    naive = demo.parent / "naive.zip"
    naive.write_bytes(TASK.naive_submission(demo / "public"))
    assert TASK.score(SubmissionFile(naive, TASK.limits), solution).score > 0.5


# --- validation ---------------------------------------------------------------------------

def _first(solution):
    return next(iter(solution))


def test_valid_zip_folder_and_csv_agree(comp, tmp_path):
    solution = comp.load_solution()
    perfect = check(comp, volume_zip(solution), tmp_path)
    assert perfect.score == 1.0 and perfect.fields["mean_hd95"] == 0.0
    folder = tmp_path / "folder"
    with zipfile.ZipFile(io.BytesIO(volume_zip(solution))) as archive:
        archive.extractall(folder)
    assert TASK.score(comp.submission(folder), solution).score == 1.0
    rows = [(sid, ref.truth[..., z]) for ref in solution.values()
            for z, sid in enumerate(ref.slice_ids())]
    assert check(comp, slices_csv.write_slices(rows), tmp_path, "sub.csv").score == 1.0


@pytest.mark.parametrize("change, message", [
    (lambda c, v, a: (v[:-1], a, f"{c}.nii.gz"), "shape"),
    (lambda c, v, a: (v.astype(np.float32), a, f"{c}.nii.gz"), "data type float32"),
    (lambda c, v, a: (v * 2, a, f"{c}.nii.gz"), "labels must be 0"),
    (lambda c, v, a: (v.transpose(1, 0, 2), a[:, [1, 0, 2, 3]], f"{c}.nii.gz"), "axis order"),
    (lambda c, v, a: (v, a @ np.diag([1, 1, 0.5, 1]), f"{c}.nii.gz"), "voxel sizes"),
    (lambda c, v, a: (v, a + np.pad(np.ones((3, 1)), ((0, 1), (3, 0))), f"{c}.nii.gz"),
     "affine differs"),
    (lambda c, v, a: (v, a, None), "have no volume"),
    (lambda c, v, a: (v, a, f"{c}.nii.gz.txt"), "not a NIfTI volume"),
])
def test_bad_volumes_are_refused_naming_the_rule(comp, tmp_path, change, message):
    solution = comp.load_solution()
    first = _first(solution)
    text = refused(comp, volume_zip(solution, lambda c, v, a: change(c, v, a) if c == first
                                    else (v, a, f"{c}.nii.gz")), tmp_path)
    assert message in text


def test_extra_and_misplaced_cases(comp, tmp_path):
    solution = comp.load_solution()
    ref = solution[_first(solution)]
    extra = {f"{c}.nii.gz": nifti.write_volume(r.truth.astype(np.uint8), r.geometry.affine)
             for c, r in solution.items()}
    extra["TCGA_ZZ_9999_20000101.nii.gz"] = extra[f"{ref.case}.nii.gz"]
    assert "not a test case (extra file)" in refused(comp, zip_bytes(extra), tmp_path)
    nested = {f"a/{k}" if k.startswith(ref.case) else f"b/{k}": v for k, v in extra.items()
              if "ZZ" not in k}
    assert "side by side" in refused(comp, zip_bytes(nested), tmp_path)
    one_folder = {f"preds/{k}": v for k, v in extra.items() if "ZZ" not in k}
    assert check(comp, zip_bytes(one_folder), tmp_path).score == 1.0
    outside = {f"../{k}": v for k, v in one_folder.items()}
    assert "outside the archive" in refused(comp, zip_bytes(outside), tmp_path)


def _with_member(solution, case, data: bytes) -> bytes:
    return volume_zip(solution, lambda c, v, a: (data if c == case else v, a, f"{c}.nii.gz"))


def test_corrupt_and_truncated_gzip(comp, tmp_path):
    solution = comp.load_solution()
    case = _first(solution)
    ref = solution[case]
    good = nifti.write_volume(np.ones(ref.geometry.shape, np.uint8), ref.geometry.affine)
    broken = bytearray(good)
    broken[len(broken) // 2] ^= 0xFF
    text = refused(comp, _with_member(solution, case, bytes(broken)), tmp_path)
    assert f"{case}.nii.gz" in text and ("corrupt gzip" in text or "malformed" in text)
    crc = bytearray(good)
    crc[-8] ^= 0xFF  # the CRC-32 of the trailer
    assert "corrupt gzip" in refused(comp, _with_member(solution, case, bytes(crc)), tmp_path)
    text = refused(comp, _with_member(solution, case, good[: len(good) // 2]), tmp_path)
    assert "corrupt gzip" in text or "ends inside" in text
    assert "not a NIfTI file" in refused(comp, _with_member(solution, case, gzip.compress(
        b"\x00" * 400)), tmp_path)


def _header_declaring(shape: tuple[int, ...], affine: np.ndarray) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4


def test_nifti_bomb_is_refused_from_its_header(comp, tmp_path):
    """A few hundred bytes declaring 30000^3 voxels (27 TB): refused before any voxel is read."""
    solution = comp.load_solution()
    case = _first(solution)
    affine = solution[case].geometry.affine
    bomb = gzip.compress(_header_declaring((30000, 30000, 30000), affine))
    assert len(bomb) < 1000
    text = refused(comp, _with_member(solution, case, bomb), tmp_path)
    assert "shape 30000x30000x30000 differs from the case's" in text


def test_gzip_bomb_stops_at_the_declared_size(comp, tmp_path):
    """The right header, then far more voxels than declared: 200 MB of zeros compress to
    about 200 kB; the reader inflates the declared size plus one byte and refuses."""
    solution = comp.load_solution()
    case = _first(solution)
    ref = solution[case]
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(_header_declaring(ref.geometry.shape, ref.geometry.affine))]
    block = b"\x00" * (1 << 20)
    parts += [compressor.compress(block) for _ in range(200)]
    bomb = b"".join(parts) + compressor.flush()
    assert len(bomb) < 400_000
    text = refused(comp, _with_member(solution, case, bomb), tmp_path)
    assert "more data than its header declares" in text


def test_zip_bomb_and_member_count(comp, tmp_path):
    solution = comp.load_solution()
    case = _first(solution)
    # A member whose directory entry understates its size: stopped at the declared size.
    data = bytearray(volume_zip(solution))
    name = f"{case}.nii.gz".encode()
    central = bytes(data).rfind(name) - 46  # the central directory's entry of the member
    assert bytes(data[central:central + 4]) == b"PK\x01\x02"
    struct.pack_into("<I", data, central + 24, 10)  # "10 bytes uncompressed"
    text = refused(comp, bytes(data), tmp_path)
    assert f"{case}.nii.gz" in text
    many = {f"x{k}.nii.gz": b"0" for k in range(TASK.limits.max_files + 1)}
    assert "more than 512 files" in refused(comp, zip_bytes(many), tmp_path)


def test_csv_submissions_are_checked_row_by_row(comp, tmp_path):
    solution = comp.load_solution()
    rows = [(sid, ref.truth[..., z]) for ref in solution.values()
            for z, sid in enumerate(ref.slice_ids())]
    good = slices_csv.write_slices(rows).decode().splitlines()
    missing = "\n".join(good[:-1]) + "\n"
    assert "have no row" in refused(comp, missing.encode(), tmp_path, "s.csv")
    repeated = "\n".join(good + [good[1]]) + "\n"
    assert "second row" in refused(comp, repeated.encode(), tmp_path, "s.csv")
    unknown = "\n".join(good + ["TCGA_ZZ_1_1_1,"]) + "\n"
    assert "line" in (text := refused(comp, unknown.encode(), tmp_path, "s.csv")) and \
        "not a slice of the test set" in text
    bad = good[:1] + [good[1].split(",")[0] + ",3 2 1 1"] + good[2:]
    text = refused(comp, ("\n".join(bad) + "\n").encode(), tmp_path, "s.csv")
    assert "line 2" in text and "not strictly increasing" in text
    ref = solution[_first(solution)]
    plain = nifti.write_volume(ref.truth.astype(np.uint8), ref.geometry.affine)
    assert "a single volume" in refused(comp, plain, tmp_path, "one.nii.gz")


# --- scoring -----------------------------------------------------------------------------

def _reference(case: str, truth: np.ndarray, spacing=(1.0, 1.0, 5.0), usage="Public"):
    return Reference(case, geometry.geometry(truth.shape, spacing), 1, usage, truth)


def test_exact_scores_empty_rules_and_the_diagonal(tmp_path):
    shape = (12, 10, 6)
    cube = np.zeros(shape, bool)
    cube[3:6, 3:6, 2:4] = True
    shifted = np.roll(cube, 1, axis=2)  # one slice up: 5 mm
    solution = {"TCGA_AA_1_1": _reference("TCGA_AA_1_1", np.zeros(shape, bool)),
                "TCGA_AA_2_1": _reference("TCGA_AA_2_1", cube, usage="Private"),
                "TCGA_AA_3_1": _reference("TCGA_AA_3_1", cube, usage="Private")}
    predictions = {"TCGA_AA_1_1": np.zeros(shape, bool),  # both empty
                   "TCGA_AA_2_1": np.zeros(shape, bool),  # prediction empty
                   "TCGA_AA_3_1": shifted}
    path = tmp_path / "s.zip"
    path.write_bytes(zip_bytes({f"{c}.nii.gz": nifti.write_volume(
        v.astype(np.uint8), solution[c].geometry.affine) for c, v in predictions.items()}))
    result = TASK.score(SubmissionFile(path, TASK.limits), solution)
    rows = {r["case"]: r for r in result.items}
    assert (rows["TCGA_AA_1_1"]["dice"], rows["TCGA_AA_1_1"]["hd"],
            rows["TCGA_AA_1_1"]["hd95"], rows["TCGA_AA_1_1"]["assd"]) == (1.0, 0.0, 0.0, 0.0)
    assert rows["TCGA_AA_2_1"]["dice"] == 0.0
    assert [rows["TCGA_AA_2_1"][m] for m in ("hd", "hd95", "assd")] == ["inf"] * 3
    expected = surface_scores(cube, shifted, (1.0, 1.0, 5.0))
    assert rows["TCGA_AA_3_1"]["dice"] == pytest.approx(0.5)
    assert rows["TCGA_AA_3_1"]["hd"] == pytest.approx(5.0) == expected.hausdorff
    assert rows["TCGA_AA_3_1"]["assd"] == pytest.approx(expected.assd)
    diagonal = math.sqrt(12 ** 2 + 10 ** 2 + (6 * 5) ** 2)
    assert rows["TCGA_AA_2_1"]["diagonal_mm"] == pytest.approx(diagonal)
    assert result.score == pytest.approx((1 + 0 + 0.5) / 3)
    assert result.fields["mean_hd"] == pytest.approx((0 + diagonal + 5.0) / 3)
    assert result.fields["mean_hd95"] == pytest.approx((0 + diagonal + expected.hd95) / 3)
    assert result.fields["n_infinite_distances"] == 1
    assert "diagonal" in result.fields["definitions"]["infinite_distances"]
    assert result.public == 1.0 and result.private == pytest.approx(0.25)
    values = np.array([TASK.item_values(r) for r in result.items])
    assert np.isfinite(values).all()  # never a NaN or an infinity dropped from a mean
    assert TASK.finish(values.mean(axis=0)) == pytest.approx(result.score)
    json.dumps(result.as_json(per_item=True), allow_nan=False)  # strict JSON


def test_metric_vector_c7_through_the_task(tmp_path):
    """METRICS.md C7 in a one-slice volume: a 3x3 square shifted one row, spacing (2, 1).
    Dice and HD are the 2D vector's; in 3D every voxel of a one-slice object is surface
    (its faces above and below are borders), so ASSD is the 3D one (2/3, not 0.875)."""
    a = np.zeros((7, 7, 1), bool)
    a[2:5, 2:5] = True
    b = np.roll(a, 1, axis=0)
    solution = {"TCGA_AA_1_1": _reference("TCGA_AA_1_1", a, spacing=(2.0, 1.0, 1.0))}
    path = tmp_path / "s.zip"
    path.write_bytes(zip_bytes({"TCGA_AA_1_1.nii.gz": nifti.write_volume(
        b.astype(np.uint8), solution["TCGA_AA_1_1"].geometry.affine)}))
    (row,) = TASK.score(SubmissionFile(path, TASK.limits), solution).items
    assert row["dice"] == pytest.approx(0.666667, abs=1e-6)
    assert row["hd"] == pytest.approx(2.0) and row["assd"] == pytest.approx(2 / 3)


# --- the board: metrics shown, mean of ranks -------------------------------------------------

def _submit_variants(comp, tmp_path):
    """Three teams: a perfect one; "blob", the truth plus a far 6x6 blob (a better Dice than
    "eroded", worse distances); "eroded", the truth less its in-plane border."""
    from scipy import ndimage

    solution = comp.load_solution()

    def eroded(c, v, a):
        cross = ndimage.generate_binary_structure(2, 1)[..., None]
        return ndimage.binary_erosion(v, cross).astype(np.uint8), a, f"{c}.nii.gz"

    def blob(c, v, a):
        v = v.copy()
        v[1:7, 1:7, v.shape[2] // 2] = 1
        return v, a, f"{c}.nii.gz"

    board = Board(comp)
    for team, change in (("perfect", None), ("eroded", eroded), ("blob", blob)):
        path = tmp_path / f"{team}.zip"
        path.write_bytes(volume_zip(solution, change))
        assert board.submissions.submit(path, team).status == "scored"
    return board


def _set_rule(comp: PreparedCompetition, **rules) -> PreparedCompetition:
    config = yaml.safe_load((comp.root / "competition.yaml").read_text())
    config["rules"].update(rules)
    (comp.root / "competition.yaml").write_text(yaml.safe_dump(config))
    return PreparedCompetition.open(comp.root)


def test_board_shows_item_metrics_and_ranks_by_mean_of_ranks(comp, tmp_path):
    board = _submit_variants(comp, tmp_path)
    by_score = leaderboard.public_board(board)
    assert [e.team for e in by_score] == ["perfect", "blob", "eroded"]
    assert all(e.mean_rank is None for e in by_score)
    assert set(by_score[0].metrics) == {"Dice", "HD (mm)", "HD95 (mm)", "ASSD (mm)"}
    assert by_score[0].metrics["Dice"] == by_score[0].score == 1.0
    assert "metrics" in by_score[0].as_json() and "mean_rank" not in by_score[0].as_json()

    comp = _set_rule(comp, ranking="mean_of_ranks")
    ranked_board = Board(comp)
    ranked = leaderboard.public_board(ranked_board)
    # Independently: rank the teams per public case and metric, average.
    tables = {}
    for e in by_score:
        result = TASK.score(comp.submission(tmp_path / f"{e.team}.zip"), comp.load_solution(),
                            only="Public")
        tables[e.team] = np.array([TASK.item_values(r) for r in result.items])
    teams = sorted(tables)
    stack = np.stack([tables[t] for t in teams])
    signs = np.array([-1.0, 1.0, 1.0, 1.0])  # Dice higher is better, distances lower
    expected = dict(zip(teams, rankdata(stack * signs, axis=0).reshape(3, -1).mean(axis=1),
                        strict=True))
    assert {e.team: e.mean_rank for e in ranked} == pytest.approx(expected)
    assert [e.team for e in ranked] == sorted(expected, key=lambda t: (expected[t],
                                                                       -tables[t][:, 0].mean()))
    assert [e.rank for e in ranked] == [1, 2, 3]
    assert ranked[0].team == "perfect" and ranked[0].mean_rank == 1.0
    # The blob's three worse distances outweigh its better Dice.
    assert [e.team for e in ranked][1:] == ["eroded", "blob"]
    private = leaderboard.private_board(ranked_board)
    assert all(e.mean_rank is not None for e in private)
    assert all(e.rank_change == e.public_rank - e.rank for e in private)


def test_mean_of_ranks_needs_item_metrics(comp, tmp_path, monkeypatch):
    board = _submit_variants(comp, tmp_path)
    comp = _set_rule(comp, ranking="mean_of_ranks")
    monkeypatch.setattr(type(TASK), "item_metrics", ())
    with pytest.raises(CompetitionError, match="needs per-item metrics"):
        leaderboard.public_board(Board(comp))
    del board


def test_mean_ranks_vector():
    a = np.array([[0.9, 2.0], [0.5, 9.0]])
    b = np.array([[0.8, 1.0], [0.5, 3.0]])
    assert leaderboard.mean_ranks([a, b], [True, False]).tolist() == [1.625, 1.375]


# --- portal, MLflow, the command line ---------------------------------------------------------

def test_portal_takes_zips_and_renders_its_pages(comp, tmp_path):
    from fastapi.testclient import TestClient

    from competition.interfaces.web.app import create_app

    board = Board(comp)
    token = board.teams.issue_token("owls")
    client = TestClient(create_app(comp.root))
    auth = {"Authorization": f"Bearer {token}"}
    solution = comp.load_solution()
    good = client.post("/api/submissions", params={"wait": 60}, headers=auth,
                       files={"file": ("mine.zip", volume_zip(solution))})
    assert good.status_code == 201, good.text
    assert good.json()["public_score"] == 1.0
    bad = client.post("/api/submissions", params={"wait": 60}, headers=auth, files={"file": (
        "bad.zip", volume_zip(solution, lambda c, v, a: (v, a @ np.diag([1, 1, 2, 1]),
                                                         f"{c}.nii.gz")))})
    assert bad.status_code == 422 and "voxel sizes" in bad.json()["error"]
    board_json = client.get("/api/leaderboard").json()
    text = json.dumps(board_json)
    assert "owls" in text and "HD95 (mm)" in text
    page = client.get("/leaderboard")
    assert page.status_code == 200 and "owls" in page.text
    for path in ("/submissions", "/submit", "/files/README.md"):
        assert client.get(path, headers=auth).status_code == 200, path


def test_mlflow_logs_mri_scores_and_keeps_private_from_participants(comp, tmp_path,
                                                                     monkeypatch):
    from tests.test_tracking import EMBEDDED, runs_of, switch_on

    tracked = switch_on(dict(EMBEDDED), tmp_path, monkeypatch)
    board = Board(comp)
    sample = comp.public_dir / "sample_submission.zip"
    outcome = board.submissions.submit(sample, "day-one")
    assert outcome.status == "scored"
    _, runs = runs_of(tracked, "participants", comp, outcome.id)
    (run,) = runs
    metrics = run.data.metrics
    assert metrics["public_score"] == 0.0
    assert "public.mean_hd95" in metrics and "public.n_infinite_distances" in metrics
    assert not any("private" in k or k.startswith("all.") for k in metrics)
    _, runs = runs_of(tracked, "organizers", comp, outcome.id)
    assert "all.mean_dice" in runs[0].data.metrics


def test_cli_submits_a_folder_as_its_deterministic_zip(comp, tmp_path, capsys):
    from tests.test_bad_input import run_cli

    solution = comp.load_solution()
    folder = tmp_path / "preds"
    with zipfile.ZipFile(io.BytesIO(volume_zip(solution))) as archive:
        archive.extractall(folder)
    a = zip_folder(folder, tmp_path / "a.zip", TASK.limits).read_bytes()
    assert a == zip_folder(folder, tmp_path / "b.zip", TASK.limits).read_bytes()
    code, out, err = run_cli(["validate", comp.root, folder], capsys)
    assert code == 0 and "3 cases" in out, err
    code, out, err = run_cli(["submit", comp.root, folder, "--team", "owls", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["public_score"] == 1.0
    code, out, err = run_cli(["submit", comp.root, folder, "--team", "owls", "--json"], capsys)
    assert json.loads(out)["status"] == "duplicate"  # the same folder, the same zip


# --- pictures, post-processing, losses, baselines ------------------------------------------

def test_montage_draws_both_contours_on_the_validation_patient(comp):
    train = TASK.load_train(comp.public_dir)
    rest, validation = TASK.hold_out(train, seed=0)
    assert validation.name not in rest.cases and validation.name in train.cases
    truth = np.asarray(validation.truth, bool)
    shifted = np.roll(truth, 2, axis=2).astype(np.float32)
    maps = {sid: shifted[z][..., None] for z, sid in enumerate(validation.inputs.slice_ids(0))}
    frame, dice = TASK.snapshot(maps, validation, {})
    colours = {tuple(c) for c in frame.reshape(-1, 3)}
    assert (40, 200, 40) in colours and (230, 40, 40) in colours  # reference, prediction
    assert frame.shape[0] == truth.shape[1] and 0 < dice < 1


def test_largest_component_keeps_one_component_per_case():
    volume = np.zeros((4, 8, 8), np.float32)
    volume[1:3, 1:4, 1:4] = 0.9
    volume[0, 6, 6] = 0.9
    maps = {f"TCGA_AA_1_1_{z + 1}": volume[z][..., None] for z in range(4)}
    both = TASK.predictions_from_maps(maps, {})["TCGA_AA_1_1"]
    one = TASK.predictions_from_maps(maps, {"largest_component": True})["TCGA_AA_1_1"]
    assert both.sum() == 19 and one.sum() == 18 and not one[0, 6, 6]


def test_sequences_stored_as_flair_copies_are_named():
    from competition.tasks.mri.data import stored_as_flair

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert stored_as_flair(volume) == []
    volume[..., 2] = volume[..., 1]
    assert stored_as_flair(volume) == ["post-contrast"]
    volume[..., 0] = volume[..., 1]
    volume[0, 0, 0, 0] ^= 1  # a grey level apart on one voxel: still a copy
    assert stored_as_flair(volume) == ["pre-contrast", "post-contrast"]
    volume[..., 1] //= 2
    volume[..., 2] = volume[..., 1]
    volume[..., 0] = volume[..., 1] + 1  # a grey level apart everywhere: not a copy
    assert stored_as_flair(volume) == ["post-contrast"]
    assert stored_as_flair(np.zeros((0, 16, 16, 3), np.uint8)) == []


def test_boundary_losses():
    from models.losses import boundary_loss, generalized_dice
    from models.slices import signed_distance

    mask = np.zeros((9, 9), bool)
    mask[3:6, 3:6] = True
    distance = signed_distance(mask)
    assert distance[4, 4] == -1 and distance[3, 3] == 0 and distance[3, 1] == 2
    assert not signed_distance(np.zeros((4, 4), bool)).any()
    t = mask[None, ..., None].astype(np.float32)
    d = distance[None, ..., None]
    right = float(boundary_loss(d, t))
    wrong = float(boundary_loss(d, np.roll(t, 3, axis=2)))
    assert right < wrong
    assert float(generalized_dice(t, t)) == pytest.approx(0.0, abs=1e-4)
    assert float(generalized_dice(t, 1 - t)) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("config", ["smoke.yaml", "boundary_smoke.yaml"])
def test_smoke_run_of_the_mri_baseline(comp, config, capsys):
    from competition.training.run import run

    folder = REPO / "submissions" / "unet_mri"
    record = run(comp.root, folder, folder / config, team=f"smoke-{config}")
    assert record["status"] == "scored", record.get("error")
    assert record["public_score"] is not None
    run_dir = Path(record["submission"]).parent
    run_json = json.loads((run_dir / "run.json").read_text())
    assert run_json["task"] == "mri" and len(run_json["history"]) == \
        run_json["config"]["epochs"]
    assert (run_dir / "validation.gif").is_file()  # the held-out training patient only
    assert run_json["validation_item"] in TASK.load_train(comp.public_dir).cases
    if config == "smoke.yaml":
        readme_tools_on_a_run(comp, run_dir, capsys)


def readme_tools_on_a_run(comp, run_dir, capsys):
    """report.py chooses the recipe and the post-processing on out-of-fold maps, then scores
    the hidden patients once; curves.py draws the run."""
    from competition.training.cv import cross_validate

    folder = REPO / "submissions" / "unet_mri"
    cv = cross_validate(comp.root, folder, folder / "smoke.yaml", folds=2, curves=True)
    other = cross_validate(comp.root, folder, folder / "smoke.yaml", ["mri.crop=32"], folds=2)
    capsys.readouterr()
    report = load_script(folder / "report.py")

    def rows_of(*args):
        report.main(str(comp.root), *args)
        return {k: v for line in capsys.readouterr().out.splitlines()
                for k, v in json.loads(line).items()}

    # Two recipes, two post-processings each: the best out-of-fold mean Dice is chosen and
    # compared with the other three over the same patients.
    rows = rows_of([cv["out_dir"], other["out_dir"]])
    assert list(rows) == ["candidates", "comparisons", "cv"]
    dice = [c["dice"] for c in rows["candidates"]]
    assert len(dice) == 4 and [c["chosen"] for c in rows["candidates"]].count(True) == 1
    chosen = next(c for c in rows["candidates"] if c["chosen"])
    assert chosen["dice"] == max(dice) == pytest.approx(rows["cv"]["dice"])
    assert len(rows["comparisons"]) == 3
    for comparison in rows["comparisons"]:
        assert comparison["difference"] >= 0  # the chosen one against each other
        assert comparison["low"] <= comparison["difference"] <= comparison["high"]
        assert 0 <= comparison["wilcoxon_p"] <= 1 and "Wilcoxon p" in comparison["sentence"]
    train = TASK.load_train(comp.public_dir)
    assert rows["cv"]["patients"] == len(train.cases)
    # Where it loses: by reference volume and institution, each patient counted once.
    quarters, sites = rows["cv"]["by_volume_quarter"], rows["cv"]["by_institution"]
    assert sum(q["patients"] for q in quarters) == len(train.cases) == \
        sum(v["patients"] for v in sites.values())
    assert sum(q["dice"] * q["patients"] for q in quarters) / len(train.cases) == \
        pytest.approx(rows["cv"]["dice"])
    assert [q["voxels"][0] for q in quarters] == sorted(q["voxels"][0] for q in quarters)
    assert set(rows["cv"]["zero_dice"]) <= set(train.cases)
    # The demo's channels each carry their own noise: no sequence is a FLAIR copy.
    assert list(rows["cv"]["by_stored_as_flair"]) == ["none"]
    assert rows["cv"]["by_stored_as_flair"]["none"]["patients"] == len(train.cases)
    # One recipe (the run's): its post-processing chosen, then the hidden patients once.
    rows = rows_of([cv["out_dir"]], str(run_dir))
    assert list(rows) == ["candidates", "comparisons", "cv", "hidden"]
    chosen = next(c for c in rows["candidates"] if c["chosen"])
    assert rows["cv"]["largest_component"] is chosen["largest_component"] is \
        rows["hidden"]["largest_component"]
    assert rows["hidden"]["patients"] == len(truths(comp.root))
    hidden_quarters = rows["hidden"]["by_volume_quarter"]
    assert sum(q["dice"] * q["patients"] for q in hidden_quarters) / \
        rows["hidden"]["patients"] == pytest.approx(rows["hidden"]["dice"])
    if chosen["largest_component"] is bool(cv["config"]["largest_component"]):
        # The same masks as the cross-validation scored: its pooled mean Dice.
        assert rows["cv"]["dice"] == pytest.approx(cv["pooled"]["score"], abs=1e-9)
    # A run of another recipe than the chosen one is refused, naming what differs.
    cropped = report.candidates(TASK, comp, [other["out_dir"]])[0]
    with pytest.raises(SystemExit, match="not the chosen recipe.*: crop differ"):
        report.hidden_row(TASK, comp, str(run_dir), cropped)
    # Cross-validations with other folds are not paired: refused.
    three = cross_validate(comp.root, folder, folder / "smoke.yaml", folds=3)
    with pytest.raises(SystemExit, match="folds differ"):
        report.main(str(comp.root), [cv["out_dir"], three["out_dir"]])
    curves = load_script(folder / "curves.py")
    epochs, loss, score = curves.fold_curves(cv)
    assert loss.shape == score.shape == (2, cv["config"]["epochs"])
    assert np.all((score >= 0) & (score <= 1))
    out = run_dir / "curves.png"
    curves.main(str(out), cv["out_dir"], str(run_dir))
    with Image.open(out) as picture:
        assert picture.size == (1210, 440)


def test_learning_rate_schedules():
    from models.slices import learning_rate

    config = {"learning_rate": 0.001, "epochs": 4, "steps_per_epoch": 25}
    assert learning_rate(config) == 0.001
    cosine = learning_rate({**config, "lr_schedule": "cosine"})
    assert float(cosine(0)) == pytest.approx(0.001)
    assert float(cosine(50)) == pytest.approx(0.001 * (0.01 + 0.99 * 0.5), rel=1e-4)
    assert float(cosine(100)) == pytest.approx(0.00001, rel=1e-4)
    with pytest.raises(ValueError, match="lr_schedule: 'step' is not one of"):
        learning_rate({**config, "lr_schedule": "step"})


def test_training_windows_hold_the_object_and_stay_inside_the_slice():
    from models.slices import SliceDataset, crop_window

    rng = np.random.default_rng(0)
    for _ in range(200):
        r, c = int(rng.integers(40)), int(rng.integers(56))
        top, left = crop_window((40, 56), 16, np.array([[r, c]]), rng)
        assert 0 <= top <= 24 and 0 <= left <= 40
        assert top <= r < top + 16 and left <= c < left + 16
    assert crop_window((16, 16), 16, np.zeros((0, 2), int), rng) == (0, 0)
    volume = np.zeros((6, 64, 64, 3), np.uint8)
    volume[:, 2:8, 2:8] = 90  # a small head in a corner: a window anywhere would miss it
    mask = np.zeros((6, 64, 64, 1), np.float16)
    mask[2, 60, 3] = 1  # a one-pixel object at the edge, far from the head
    volume[2, 60, 3] = 250
    batches = SliceDataset([volume], [mask], [0, 1, 2], 1, batch_size=8, steps=3,
                           positive_fraction=1.0, augment=True, seed=0, crop=16)
    for k in range(3):
        x, y = batches[k]
        assert x.shape == (8, 16, 16, 9) and y.shape == (8, 16, 16, 1)
        assert (y.reshape(8, -1).sum(axis=1) == 1).all()  # every window holds the object
    around_head = SliceDataset([volume], [mask], [1], 0, batch_size=8, steps=4,
                               positive_fraction=0.0, augment=False, seed=0, crop=16)
    for k in range(4):
        x, _ = around_head[k]
        assert x.shape == (8, 16, 16, 1) and (x.reshape(8, -1).max(axis=1) > 0).all()
    # A window the network cannot take, or larger than a slice, is refused before training.
    from models.slices import check_crop

    with pytest.raises(ValueError, match="not a multiple of 2\\*\\*depth = 16"):
        check_crop({"crop": 40, "depth": 4}, [volume])
    with pytest.raises(ValueError, match="larger than the smallest slice side"):
        check_crop({"crop": 128, "depth": 4}, [volume])
    check_crop({"crop": 64, "depth": 4}, [volume])


def test_random_zoom_and_turn_keep_labels_binary_and_distances_in_scale():
    from models.slices import SliceDataset, random_affine, signed_distance

    mask = np.zeros((64, 64), bool)
    mask[24:40, 28:36] = True  # 16 x 8 pixels
    distance = signed_distance(mask)
    x = np.stack([mask * 0.8, mask * 0.5], -1).astype(np.float32)
    y = np.stack([mask, distance], -1).astype(np.float32)
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(20):
        wx, wy = random_affine(x, y, rng, (0.8, 1.25), 20.0)
        assert wx.shape == x.shape and wy.shape == y.shape
        assert set(np.unique(wy[..., 0])) <= {0.0, 1.0}
        inside = wy[..., 0] > 0
        areas.append(inside.sum())
        # The distance channel still says inside (< 0.5) from outside (> 0), scaled along.
        assert (wy[..., 1][inside] < 0.5).mean() > 0.95
        assert (wy[..., 1][~inside] > -0.5).mean() > 0.95
    assert min(areas) < 128 * 0.85 and max(areas) > 128 * 1.15  # zoomed both ways
    exact = random_affine(x, y, np.random.default_rng(1), None, 0.0)
    assert np.allclose(exact[0], x, atol=1e-5) and np.array_equal(exact[1][..., 0], y[..., 0])
    # In the batches, only with augmentation on and the keys set.
    volume = np.zeros((4, 64, 64, 3), np.uint8)
    volume[:, 16:48, 16:48] = 80
    masks = np.zeros((4, 64, 64, 1), np.float16)
    masks[1, 24:40, 28:36] = 1
    plain = SliceDataset([volume], [masks], [1], 0, 4, 1, 1.0, False, 0, zoom=(0.5, 0.6))[0]
    same = SliceDataset([volume], [masks], [1], 0, 4, 1, 1.0, False, 0)[0]
    assert np.array_equal(plain[1], same[1])
    zoomed = SliceDataset([volume], [masks], [1], 0, 4, 1, 1.0, True, 0, zoom=(0.5, 0.6))[0]
    assert (zoomed[1].reshape(4, -1).sum(axis=1) < 128 * 0.4).all()


def test_missing_channels_show_slices_as_flair_only_cases():
    from models.slices import (
        SliceDataset,
        case_normalise,
        check_missing_channels,
        fill_channels,
        slice_input,
    )

    volume = np.zeros((5, 32, 32, 3), np.uint8)
    volume[..., 0], volume[..., 1], volume[..., 2] = 40, 120, 200
    volume += np.arange(5, dtype=np.uint8)[:, None, None, None]  # slices told apart
    x = slice_input(volume, 2, [0, 1, 2], 1)  # 2.5D: 3 slices x 3 channels
    filled = fill_channels(x, [0, 1, 2], 1)
    # Each slice's channels all become its FLAIR channel; the slices stay in their order.
    assert np.allclose(filled * 255, np.repeat([121, 122, 123], 3)[None, None])
    # As the data set stores a case without contrast sequences: FLAIR copied, then
    # normalised per case and channel, gives the same input.
    stored = volume.copy()
    stored[..., 0] = stored[..., 2] = stored[..., 1]
    assert np.array_equal(slice_input(case_normalise(stored), 2, [0, 1, 2], 1),
                          fill_channels(slice_input(case_normalise(volume), 2, [0, 1, 2], 1),
                                        [0, 1, 2], 1))
    assert np.array_equal(fill_channels(x[..., 1::3], [1], 1), x[..., 1::3])  # FLAIR alone
    masks = np.zeros((5, 32, 32, 1), np.float16)

    def batch(**keys):
        return SliceDataset([volume], [masks], [0, 1, 2], 1, 64, 1, 0.0, True, 0,
                            **keys)[0][0].reshape(64, 32, 32, 3, 3)

    flair_only = np.array([np.allclose(b[..., 0], b[..., 1]) and
                           np.allclose(b[..., 2], b[..., 1]) for b in batch(missing_channels=0.5)])
    assert 0.3 < flair_only.mean() < 0.7
    assert not any(np.allclose(b[..., 0], b[..., 1]) for b in batch())
    # Unset, nothing is drawn for it: earlier recipes keep their batches. The sums were
    # those of models/slices.py before it had the key (commit 1ab1456), same inputs.
    volume[:, 8:20, 10:24] += 30
    masks[2, 8:20, 10:24] = 1
    x, y = SliceDataset([volume], [masks], [0, 1, 2], 1, 16, 1, 0.5, True, 3, crop=16)[0]
    assert np.isclose(x.astype(np.float64).sum(), 19228.78450626135, rtol=1e-9)
    assert y.sum() == 903
    with pytest.raises(ValueError, match="missing_fill: 5 is not one of the channels"):
        check_missing_channels({"missing_channels": 0.2, "missing_fill": 5,
                                "channels": "all", "augment": True})
    with pytest.raises(ValueError, match="has one channel"):
        check_missing_channels({"missing_channels": 0.2, "channels": "flair", "augment": True})
    with pytest.raises(ValueError, match="augment: true"):
        check_missing_channels({"missing_channels": 0.2, "channels": "all", "augment": False})
    with pytest.raises(ValueError, match="not a share"):
        check_missing_channels({"missing_channels": 2, "channels": "all", "augment": True})
    check_missing_channels({"missing_channels": 0.0, "channels": "flair", "augment": False})
