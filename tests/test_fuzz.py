"""Property-based fuzzing of every reader: random bytes and mutations of valid files either
parse or raise the harness's own error (a clear message), never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from competition.errors import CompetitionError
from competition.formats import em_tiff, landmarks_csv, meshes, nuclei_csv
from competition.formats.files import SubmissionFile
from competition.tasks import get_task
from competition.tasks.em.task import EmSolution
from competition.tasks.landmarks.task import LandmarkSolution

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

SHAPES = {"img_a": (5, 4), "img_b": (3, 3)}
NUCLEI_VALID = (b"ImageId,EncodedPixels\nimg_a,1 3 7 2\nimg_a,12 2\nimg_b,\n"
                b"img_b,4 2 8 1\n")
NUCLEI_SOLUTION = (b"ImageId,EncodedPixels,Height,Width,Usage\nimg_a,1 3 7 2,5,4,Public\n"
                   b"img_a,12 2,5,4,Public\nimg_b,4 2 8 1,3,3,Private\n")
LANDMARKS_VALID = b"specimen,landmark,x,y,z\ns1,1,0.5,1,2\ns1,2,3,4,5\ns2,1,1,1,1\ns2,2,2,2,2\n"
EXPECTED = {"s1": ["1", "2"], "s2": ["1", "2"]}


@st.composite
def mutated(draw, valid: bytes):
    """A valid file with a few random byte edits: replace, insert, delete or truncate."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "replace" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 5))]
        elif op == "truncate":
            data = data[:pos]
    return bytes(data)


def either_ok_or_clear_error(fn, *args):
    try:
        return fn(*args)
    except CompetitionError as e:
        assert str(e), "an error must say something"
        return None


def scored(task_name: str, data: bytes, solution):
    """`data` submitted as a file and scored by the task: the result, or None after a clear
    error."""
    task = get_task(task_name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"submission{task.submission_suffix}"
        path.write_bytes(data)
        return either_ok_or_clear_error(task.score, SubmissionFile(path), solution)


def file_bytes(valid: bytes):
    return st.one_of(st.binary(max_size=300), mutated(valid))


@SETTINGS
@given(file_bytes(NUCLEI_VALID))
def test_nuclei_submission_reader(data):
    either_ok_or_clear_error(nuclei_csv.read_submission, data, SHAPES)


@SETTINGS
@given(file_bytes(NUCLEI_VALID))
def test_nuclei_scoring_end_to_end(data):
    solution = nuclei_csv.read_solution(NUCLEI_SOLUTION)
    result = scored("nuclei", data, solution)
    if result is not None:
        assert 0.0 <= result.score <= 1.0


@SETTINGS
@given(file_bytes(NUCLEI_SOLUTION))
def test_nuclei_solution_reader(data):
    either_ok_or_clear_error(nuclei_csv.read_solution, data)


def _tiff(array) -> bytes:
    return em_tiff.write_stack(np.asarray(array))


EM_LABELS = np.where(np.random.default_rng(0).random((2, 8, 8)) > 0.3, 255, 0).astype(np.uint8)
EM_VALID = _tiff(np.random.default_rng(1).random((2, 8, 8)).astype(np.float32))


@SETTINGS
@given(file_bytes(EM_VALID))
def test_em_reader_and_scoring(data):
    result = scored("em", data, EmSolution(EM_LABELS, None))
    if result is not None:
        assert 0.0 <= result.score <= 1.0


@SETTINGS
@given(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, bool]),
       st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=128,
                max_size=128))
def test_em_any_pixel_type_and_values(dtype, values):
    array = np.array(values, dtype=np.float64).reshape(2, 8, 8)
    with np.errstate(invalid="ignore"):
        cast = np.nan_to_num(array).astype(dtype) if dtype not in (np.float32, np.float64) \
            else array.astype(dtype)
    result = scored("em", _tiff(cast), EmSolution(EM_LABELS, None))
    if result is not None:
        assert 0.0 <= result.score <= 1.0


@SETTINGS
@given(file_bytes(LANDMARKS_VALID))
def test_landmarks_reader(data):
    either_ok_or_clear_error(landmarks_csv.read_points, data, EXPECTED)


@SETTINGS
@given(file_bytes(LANDMARKS_VALID))
def test_landmarks_scoring(data):
    points, _ = landmarks_csv.read_points(LANDMARKS_VALID, EXPECTED)
    sol = LandmarkSolution(["s1", "s2"], ["1", "2"],
                           np.array([[points[s][lm] for lm in ("1", "2")] for s in ("s1", "s2")]),
                           None)
    result = scored("landmarks", data, sol)
    if result is not None:
        assert result.score >= 0


MRK = meshes.write_mrk_json({"1": np.array([1.0, 2, 3]), "2": np.array([4.0, 5, 6])})
FCSV = (b"# Markups fiducial file version = 4.11\n# CoordinateSystem = 0\n"
        b"# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        b"a,1,2,3,0,0,0,1,1,1,0,1,,\nb,4,5,6,0,0,0,1,1,1,0,2,,\n")


@SETTINGS
@given(file_bytes(MRK))
def test_mrk_json_reader(data):
    either_ok_or_clear_error(meshes.read_markups, data, "x.mrk.json")


@SETTINGS
@given(file_bytes(FCSV))
def test_fcsv_reader(data):
    either_ok_or_clear_error(meshes.read_markups, data, "x.fcsv")


BOX = trimesh.creation.box()
PLY_BINARY = meshes.write_mesh(BOX)
PLY_ASCII = trimesh.exchange.ply.export_ply(BOX, encoding="ascii")


@SETTINGS
@given(st.one_of(file_bytes(PLY_BINARY), mutated(PLY_ASCII)))
def test_ply_reader(data):
    either_ok_or_clear_error(meshes.read_mesh, data, "x.ply")
