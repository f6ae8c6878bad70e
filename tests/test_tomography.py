"""The tomography task: the fibre-composite generator, preparing from every source format,
submissions in every format and every bad one, exact chunk-wise scoring, and the baselines."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import h5py
import numcodecs
import numpy as np
import pytest
import zarr

from competition.board import scoring
from competition.board.prepared import PreparedCompetition
from competition.errors import SourceDataError, SubmissionError
from competition.formats.files import SubmissionFile
from competition.tasks.preparing import prepare
from competition.tasks.tomography import submission as sub
from competition.tasks.tomography import synthetic, volumes
from competition.tasks.tomography.task import TomographyTask
from tests.conftest import prepare_with_store

REPO = Path(__file__).resolve().parents[1]
SMALL = synthetic.Params(shape=(40, 48, 56), chunks=(16, 24, 32))
SPEC = "56x48x40,chunks=32:24:16"  # the same, as `--synthetic` writes it


# --- the generator --------------------------------------------------------------------------------

def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generator_same_seed_same_bytes(tmp_path):
    synthetic.generate(tmp_path / "a", SMALL, seed=3)
    synthetic.generate(tmp_path / "b", SMALL, seed=3, workers=1)
    synthetic.generate(tmp_path / "c", SMALL, seed=4)
    a, b, c = (files_of(tmp_path / k) for k in "abc")
    assert a == b
    assert a["volume.zarr/0.0.0"] != c["volume.zarr/0.0.0"]
    image = zarr.open_array(str(tmp_path / "a" / "volume.zarr"), mode="r")
    labels = zarr.open_array(str(tmp_path / "a" / "labels.zarr"), mode="r")
    assert image.shape == labels.shape == SMALL.shape and image.dtype == np.uint8
    assert set(np.unique(labels[:]).tolist()) == {0, 1, 2}


def test_chunk_borders_change_nothing():
    """Fibres crossing chunk borders are continuous: any cut into boxes renders the very
    bytes of the volume rendered whole."""
    model = synthetic.draw(SMALL, 1)
    whole_image, whole_labels = synthetic.render(model, (0, 0, 0), SMALL.shape)
    for chunks in [(7, 13, 50), (40, 5, 9)]:
        image = np.zeros_like(whole_image)
        labels = np.zeros_like(whole_labels)
        for lo, hi in synthetic.chunk_boxes(SMALL.shape, chunks):
            box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            image[box], labels[box] = synthetic.render(model, lo, hi)
        np.testing.assert_array_equal(labels, whole_labels)
        np.testing.assert_array_equal(image, whole_image)


def test_fibres_are_exact_cylinders():
    """The rasteriser against a brute-force distance to each segment, in a box cut through
    by many fibres."""
    params = synthetic.Params(shape=(30, 30, 30), pore_fraction=0, concentration=0)
    model = synthetic.draw(params, 5)
    lo, hi = (3, -4, 10), (21, 17, 33)
    labels, _ = synthetic.render_labels(model, lo, hi)
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)],
                                indexing="ij"), -1).reshape(-1, 3).astype(np.float64)
    inside = np.zeros(len(grid), bool)
    for p0, p1, r in zip(model.fibre_p0, model.fibre_p1, model.fibre_radius, strict=True):
        d = p1 - p0
        t = np.clip((grid - p0) @ d / (d @ d), 0, 1)
        inside |= ((grid - p0 - t[:, None] * d) ** 2).sum(1) <= r * r
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(labels.reshape(-1) == 1, inside)


def test_generator_statistics():
    params = synthetic.Params(shape=(96, 96, 96))
    model = synthetic.draw(params, 0)
    image, labels = synthetic.render(model, (0, 0, 0), params.shape)
    share = np.bincount(labels.ravel(), minlength=3) / labels.size
    assert abs(share[1] - params.fibre_fraction) < 0.04
    assert 0.005 < share[2] < 0.02  # pores: about 1 %
    # Fibres prefer the x axis: their directions' x components dominate.
    axis = model.fibre_p1 - model.fibre_p0
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    assert np.abs(axis[:, 2]).mean() > 0.7 > np.abs(axis[:, 0]).mean()
    isotropic = synthetic.draw(synthetic.Params(shape=(96, 96, 96), concentration=0), 0)
    axis = isotropic.fibre_p1 - isotropic.fibre_p0
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    assert np.abs(np.abs(axis).mean(axis=0) - 0.5).max() < 0.05
    # The classes' grey levels overlap: no single threshold separates fibre from matrix.
    matrix, fibre, pore = (image[labels == k].astype(float) for k in range(3))
    assert pore.mean() < matrix.mean() < fibre.mean()
    assert (fibre < np.percentile(matrix, 95)).mean() > 0.05
    assert (pore > np.percentile(matrix, 5)).mean() > 0.05


def test_spec_parsing():
    p = synthetic.parse_spec("1300x1040x1900")
    assert p.shape == (1900, 1040, 1300)
    p = synthetic.parse_spec("64x48x32,direction=z,concentration=0,grey=90:170:50,chunks=8:8:8")
    assert p.shape == (32, 48, 64) and p.direction == (1.0, 0.0, 0.0)
    assert p.grey == (90.0, 170.0, 50.0) and p.chunks == (8, 8, 8) and p.concentration == 0
    for bad, said in [("64x48", "three numbers"), ("64x48x32,colour=3", "unknown setting"),
                      ("fibre_fraction=2", "fibre_fraction"), ("9x9x9,blur=-1", "blur"),
                      ("100000x100000x100000", "bound")]:
        with pytest.raises(SourceDataError, match=said):
            synthetic.parse_spec(bad)


def test_synthetic_spec_reaches_the_writer_and_others_refuse_it(tmp_path):
    with pytest.raises(SourceDataError, match="takes no --synthetic spec"):
        prepare("demo-em", tmp_path / "em", synthetic="10x10x10")
    with pytest.raises(SourceDataError, match="demo-tomography"):
        prepare("tomography", tmp_path / "t", synthetic="10x10x10")
    out = prepare("demo-tomography", tmp_path / "demo", synthetic=SPEC, seed=2)
    comp = PreparedCompetition.open(out)
    assert comp.config.counts == {"train": 30, "test": 10, "public": 3, "height": 48,
                                  "width": 56}
    assert not list(tmp_path.glob(".demo*"))  # no staging folder left behind


def test_slices_pictures(tmp_path):
    from competition.tasks.tomography import tools

    tools.main(["slices", str(tmp_path), "--vary", "default", "pore_fraction=0.03"])
    pictures = sorted(tmp_path.glob("*.png"))
    assert len(pictures) == 2
    described = json.loads((tmp_path / "params.json").read_text())
    assert described[pictures[0].name]["params"]["fibre_fraction"] == 0.17


# --- preparing ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("source")
    synthetic.generate(folder, SMALL, seed=0)
    return folder


@pytest.fixture(scope="module")
def comp_dir(source, tmp_path_factory) -> Path:
    return prepare_with_store("tomography", tmp_path_factory.mktemp("comp") / "c",
                              source=source, seed=0)


def read(path: Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[:]


def test_prepare_slab_and_halves(comp_dir, source):
    comp = PreparedCompetition.open(comp_dir)
    truth = read(source / "labels.zarr")
    grey = read(source / "volume.zarr")
    doc = json.loads((comp_dir / "private" / "solution.json").read_text())
    z0, z1 = doc["source"]["slices"]
    n = SMALL.shape[0]
    assert z1 - z0 == n // 4 and (z0 == 0 or z1 == n)  # a contiguous slab at one end
    np.testing.assert_array_equal(read(comp_dir / "private" / "solution.zarr"), truth[z0:z1])
    np.testing.assert_array_equal(read(comp_dir / "public" / "test-volume.zarr"), grey[z0:z1])
    train = np.setdiff1d(np.arange(n), np.arange(z0, z1))
    np.testing.assert_array_equal(read(comp_dir / "public" / "train-labels.zarr"), truth[train])
    np.testing.assert_array_equal(read(comp_dir / "public" / "train-volume.zarr"), grey[train])
    # Public and private: two contiguous parts of the slab along z.
    usage = list(comp.task.usage(comp.load_solution()).values())
    n_public = usage.count("Public")
    assert n_public == round((z1 - z0) / 3) == comp.config.counts["public"]
    assert usage in (["Public"] * n_public + ["Private"] * (len(usage) - n_public),
                     ["Private"] * (len(usage) - n_public) + ["Public"] * n_public)
    # The upload limit the task states reaches competition.yaml and the board.
    assert comp.rules.max_submission_mb >= 512
    assert comp.limits.max_bytes == comp.max_submission_bytes >= 512 * 2**20
    assert comp.limits.max_files == TomographyTask.limits.max_files


def test_upload_limit_fits_the_real_slab():
    from competition.tasks.tomography.prepare import upload_limit_mb

    assert upload_limit_mb((300, 1040, 1300)) * 1e6 > 300 * 1040 * 1300  # 405 MB raw
    assert upload_limit_mb((1000, 2000, 2000)) > 4000


def test_prepare_same_seed_same_bytes(tmp_path):
    a = prepare("demo-tomography", tmp_path / "a", seed=1, synthetic=SPEC)
    b = prepare("demo-tomography", tmp_path / "b", seed=1, synthetic=SPEC)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


def same_competition(a: Path, b: Path) -> None:
    """Equal bytes, but for the source's file names that solution.json records."""
    assert files_of(a / "public") == files_of(b / "public")
    private_a, private_b = files_of(a / "private"), files_of(b / "private")
    docs = [json.loads(f.pop("solution.json")) for f in (private_a, private_b)]
    assert private_a == private_b
    assert [d.pop("source")["slices"] for d in docs] and docs[0] == docs[1]


def write_sources(folder: Path, grey: np.ndarray, truth: np.ndarray, kind: str) -> None:
    folder.mkdir(parents=True)
    z, y, x = grey.shape
    if kind == "raw":
        grey.tofile(folder / "scan.raw")
        (folder / "scan.raw.info").write_text(f"# GF-PA66-like\nSize: {x} {y} {z}\n"
                                              "Data type = unsigned 8 bit\nbyte order: little\n")
        truth.astype(">u2").tofile(folder / "scan_labels.raw")
        (folder / "scan_labels.raw.info").write_text(
            f"width={x}\nheight={y}\ndepth={z}\ndtype=uint16\nendianness=big\n")
    elif kind == "hdf5":
        with h5py.File(folder / "scan.h5", "w") as f:
            f.create_dataset("volume/raw", data=grey, chunks=(4, 16, 16), compression="gzip")
            f.create_dataset("segmentation", data=truth)
    else:
        zarr.create_array(store=str(folder / "grey.zarr"), data=grey, chunks=(8, 20, 20))
        zarr.create_array(store=str(folder / "mask.zarr"), data=truth, zarr_format=2)


@pytest.mark.parametrize("kind", ["raw", "hdf5", "zarr"])
def test_prepare_from_each_source_format(source, tmp_path, kind, comp_dir):
    grey, truth = read(source / "volume.zarr"), read(source / "labels.zarr")
    write_sources(tmp_path / "src", grey, truth, kind)
    out = prepare("tomography", tmp_path / "c", source=tmp_path / "src", seed=0)
    same_competition(out, comp_dir)


def test_classes_json_maps_other_label_values(source, tmp_path, comp_dir):
    grey, truth = read(source / "volume.zarr"), read(source / "labels.zarr")
    values = np.array([7, 255, 128], np.uint8)  # matrix, fibre, pore
    write_sources(tmp_path / "src", grey, values[truth], "zarr")
    with pytest.raises(SourceDataError, match="belong to no class"):
        prepare("tomography", tmp_path / "bad", source=tmp_path / "src")
    (tmp_path / "src" / "classes.json").write_text('{"matrix": 7, "fibre": 255, "pore": 128}')
    out = prepare("tomography", tmp_path / "c", source=tmp_path / "src", seed=0)
    same_competition(out, comp_dir)


@pytest.mark.parametrize("case, said", [
    ("no sidecar", "no sidecar"),
    ("short", "its sidecar describes"),
    ("bad sidecar", "no size"),
    ("shapes differ", "must match"),
    ("one volume", "needs one grey volume and one label volume"),
])
def test_bad_sources(tmp_path, case, said):
    folder = tmp_path / "src"
    grey = np.zeros((12, 10, 8), np.uint8)
    write_sources(folder, grey, grey, "raw")
    if case == "no sidecar":
        (folder / "scan.raw.info").unlink()
    elif case == "short":
        (folder / "scan.raw").write_bytes(grey.tobytes()[:-5])
    elif case == "bad sidecar":
        (folder / "scan.raw.info").write_text("dtype = uint8\n")
    elif case == "shapes differ":
        (folder / "scan.raw.info").write_text("size = 8 20 6\n")
    else:
        (folder / "scan_labels.raw").unlink()
        (folder / "scan_labels.raw.info").unlink()
    with pytest.raises(SourceDataError, match=said):
        prepare("tomography", tmp_path / "c", source=folder)


def test_sidecar_spellings():
    layout = volumes.parse_sidecar("size = 1300x1040x1900\ntype: 16-bit unsigned\n"
                                   "byte order = big endian\nheader = 512\n", "x.raw.info")
    assert layout.shape == (1900, 1040, 1300) and layout.dtype == np.dtype(">u2")
    assert layout.header == 512
    layout = volumes.parse_sidecar('{"size": [5, 6, 7], "dtype": "float32"}', "x.raw.json")
    assert layout.shape == (7, 6, 5) and layout.dtype == np.dtype("<f4")
    assert volumes.parse_sidecar(layout.as_sidecar(), "again") == layout


# --- submissions: every accepted format -----------------------------------------------------------

@pytest.fixture(scope="module")
def truth(comp_dir) -> np.ndarray:
    return read(comp_dir / "private" / "solution.zarr")


def zarr_zip(path: Path, labels: np.ndarray, **kwargs) -> Path:
    store = zarr.storage.ZipStore(str(path), mode="w")
    zarr.create_array(store=store, data=labels, **kwargs)
    store.close()
    return path


def as_submission(kind: str, labels: np.ndarray, folder: Path) -> Path:
    """`labels` written as `kind` (every format the task accepts)."""
    folder.mkdir(parents=True, exist_ok=True)
    z, y, x = labels.shape
    if kind == "ours":
        buffer = io.BytesIO()
        sub.write_zarr_zip(labels, buffer)
        path = folder / "ours.zip"
        path.write_bytes(buffer.getvalue())
    elif kind == "zarr3-dir":
        path = folder / "pred.zarr"
        zarr.create_array(store=str(path), data=labels, chunks=(3, 17, 20))
    elif kind == "zarr3-zip":
        path = zarr_zip(folder / "v3.zip", labels.astype(np.int32), chunks=(4, 48, 9),
                        compressors=zarr.codecs.GzipCodec())
    elif kind == "zarr2-nested":
        store = folder / "v2.zarr"
        zarr.create_array(store=str(store), data=labels.astype(np.uint16), chunks=(10, 30, 30),
                          zarr_format=2, compressors=numcodecs.Zstd(level=1))
        path = folder / "v2.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for p in sorted(store.rglob("*")):
                archive.write(p, "nested/pred.zarr/" + p.relative_to(store).as_posix())
    elif kind == "zarr2-F-slash":  # Fortran order, "/" keys, zlib, big-endian
        path = folder / "f.zarr"
        zarr.create_array(store=str(path), data=labels.astype(">i2"), chunks=(4, 20, 24),
                          zarr_format=2, order="F", compressors=numcodecs.Zlib(level=1),
                          chunk_key_encoding={"name": "v2", "separator": "/"})
    elif kind == "zarr3-checksummed":  # v2-style keys, Blosc and a crc32c checksum
        path = zarr_zip(folder / "crc.zip", labels, chunks=(5, 16, 56),
                        chunk_key_encoding={"name": "v2", "separator": "."},
                        compressors=[zarr.codecs.BloscCodec(), zarr.codecs.Crc32cCodec()])
    elif kind == "hdf5":
        path = folder / "pred.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("labels", data=labels, chunks=(2, 16, 16), compression="gzip",
                             shuffle=True)
    elif kind == "hdf5-contiguous":
        path = folder / "plain.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("pred", data=labels.astype(np.int64))
    elif kind == "raw-zip":
        path = folder / "raw.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pred.raw", b"\0" * 16 + labels.astype("<u2").tobytes())
            archive.writestr("pred.raw.info", f"size = {x} {y} {z}\ndtype = uint16\n"
                                              "header = 16\n")
    elif kind == "raw-folder":
        path = folder / "rawdir"
        path.mkdir()
        labels.tofile(path / "p.raw")
        (path / "p.raw.info").write_text(f"size = {x} {y} {z}\n")
    else:
        path = folder / "bare.raw"
        labels.tofile(path)
    return path


FORMATS = ["ours", "zarr3-dir", "zarr3-zip", "zarr2-nested", "zarr2-F-slash",
           "zarr3-checksummed", "hdf5", "hdf5-contiguous", "raw-zip", "raw-folder", "raw-bare"]


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_scores_exactly(comp_dir, truth, tmp_path, kind):
    comp = PreparedCompetition.open(comp_dir)
    rng = np.random.default_rng(0)
    noisy = np.where(rng.random(truth.shape) < 0.2, rng.integers(0, 3, truth.shape),
                     truth).astype(np.uint8)
    reference = scoring.score(comp, as_submission("ours", noisy, tmp_path / "ref"))
    path = as_submission(kind, noisy, tmp_path / "s")
    assert "valid tomography submission" in scoring.validate(comp, path)
    result = scoring.score(comp, path)
    assert result.score == reference.score and result.public == reference.public
    assert scoring.score(comp, as_submission(kind, truth, tmp_path / "t")).score == 1.0


# --- scoring --------------------------------------------------------------------------------------

def make_solution(folder: Path, truth: np.ndarray, public: tuple[int, int],
                  chunks=(7, 16, 16)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    store = volumes.create_zarr(folder / "solution.zarr", truth.shape, chunks)
    store[:] = truth
    n = len(truth)
    private = [public[1], n] if public[0] == 0 else [0, public[0]]
    (folder / "solution.json").write_text(json.dumps({
        "labels": "solution.zarr", "shape": list(truth.shape),
        "usage": {"Public": list(public), "Private": private}}))
    return folder / "solution.json"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jaccard_equals_scikit_learn(tmp_path, seed):
    from sklearn.metrics import jaccard_score

    from competition.metrics.multiclass import confusion_matrix

    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 30)), int(rng.integers(3, 40)), int(rng.integers(3, 40)))
    truth = rng.choice(3, shape, p=[0.8, 0.17, 0.03]).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.3, rng.choice(3, shape), truth).astype(np.uint8)
    n_public = max(1, shape[0] // 3)
    task = TomographyTask()
    solution = task.load_solution(make_solution(tmp_path, truth, (0, n_public)))
    path = tmp_path / "pred.zip"
    with path.open("wb") as f:
        sub.write_zarr_zip(pred, f, chunks=(int(rng.integers(1, 9)), 11, 64))
    result = task.score(SubmissionFile(path, task.limits), solution)
    expected = jaccard_score(truth.ravel(), pred.ravel(), labels=[0, 1, 2], average=None)
    got = [result.fields[f"jaccard_{c}"] for c in ("matrix", "fibre", "pore")]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert result.score == pytest.approx(jaccard_score(truth.ravel(), pred.ravel(),
                                                       average="macro"), abs=1e-12)
    np.testing.assert_array_equal(result.fields["confusion"], confusion_matrix(truth, pred, 3))
    public = jaccard_score(truth[:n_public].ravel(), pred[:n_public].ravel(), average="macro",
                           labels=[0, 1, 2])
    assert result.public == pytest.approx(public, abs=1e-12)
    # The stored item values give back every subset's score (the bootstrap's input).
    values = np.array([task.item_values(i) for i in result.items])
    assert task.finish(values.mean(axis=0)) == pytest.approx(result.score, abs=1e-12)
    is_public = np.array([i["usage"] == "Public" for i in result.items])
    assert task.finish(values[is_public].mean(axis=0)) == pytest.approx(public, abs=1e-12)
    only = task.score(SubmissionFile(path, task.limits), solution, only="Public")
    assert only.score == pytest.approx(public, abs=1e-12) and len(only.items) == n_public


def test_an_absent_class_is_left_out_of_the_mean(tmp_path):
    truth = np.zeros((4, 8, 8), np.uint8)
    truth[:, :4] = 1
    task = TomographyTask()
    solution = task.load_solution(make_solution(tmp_path, truth, (0, 1)))
    path = tmp_path / "p.zip"
    with path.open("wb") as f:
        sub.write_zarr_zip(truth, f)
    result = task.score(SubmissionFile(path, task.limits), solution)
    assert result.score == 1.0 and np.isnan(result.fields["jaccard_pore"])


# --- every bad input ------------------------------------------------------------------------------

def zarray_zip(path: Path, meta: dict, chunks: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(".zarray", json.dumps(meta))
        for name, data in chunks.items():
            archive.writestr(name, data)
    return path


def v2_meta(shape, chunks, dtype="|u1", compressor=None, fill=0) -> dict:
    return {"zarr_format": 2, "shape": list(shape), "chunks": list(chunks), "dtype": dtype,
            "compressor": compressor, "fill_value": fill, "order": "C", "filters": None}


BAD = {
    "zarr wrong shape": "differs from the test slab",
    "hdf5 wrong shape": "differs from the test slab",
    "raw sidecar wrong shape": "differs from the test slab",
    "bare raw wrong size": "would need",
    "zarr float": "not an integer type",
    "hdf5 float": "not an integer type",
    "raw float": "not an integer type",
    "zarr v3 float": "not an integer type",
    "label 3 in a chunk": "holds label 3",
    "negative label": "holds label -1",
    "hdf5 label 9": "holds label 9",
    "raw label 200": "holds label 200",
    "fill value 5": "fill value 5",
    "truncated blosc chunk": "truncated or damaged",
    "truncated zstd chunk": "damaged zstd chunk",
    "truncated zstd chunk, v3": "c/0/0/0: damaged zstd chunk",
    "zlib chunk inflating past a chunk": "0.0.0: compressed chunk is truncated or unpacks to "
                                         "more than a chunk",
    "v3 transpose codec": "codecs .*'transpose'.* are not accepted",
    "v3 checksum inside the compressor": "are not accepted",
    "truncated uncompressed chunk": "truncated or damaged",
    "truncated gzip chunk": "truncated",
    "truncated raw": "truncated or mis-described",
    "truncated hdf5": "HDF5",
    "huge declared shape": "differs from the test slab",
    "huge chunks": "over the limit",
    "zstd chunk declaring 2 GB": "declares",
    "blosc chunk declaring 2 GB": "declares",
    "missing chunk without fill": "chunk missing",
    "sharded": "sharded",
    "two arrays": "exactly one array",
    "two hdf5 datasets": "exactly one 3-D dataset",
    "hdf5 external storage": "external storage",
    "filters": "filters",
    "not json": "not JSON",
    "text file": "would need",
    "zipped hdf5": "not zipped",
    "empty zip": "not a zip",  # an empty archive has no local header: not taken for one
}


def bad_submission(case: str, shape: tuple[int, int, int], truth: np.ndarray,
                   folder: Path) -> Path:
    z, y, x = shape
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "bad.zip"
    good = truth.astype(np.uint8)
    blosc = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=0)
    if case == "zarr wrong shape":
        return zarr_zip(p, np.zeros((z, y, x + 1), np.uint8), zarr_format=2)
    if case == "hdf5 wrong shape" or case == "hdf5 float" or case == "hdf5 label 9":
        data = {"hdf5 wrong shape": np.zeros((z + 1, y, x), np.uint8),
                "hdf5 float": good.astype(np.float32),
                "hdf5 label 9": np.where(np.arange(z)[:, None, None] == z - 1, 9, good)}[case]
        with h5py.File(folder / "bad.h5", "w") as f:
            f.create_dataset("labels", data=data)
        return folder / "bad.h5"
    if case in ("raw sidecar wrong shape", "raw float", "truncated raw", "raw label 200"):
        data, info = good.tobytes(), f"size = {x} {y} {z}\n"
        if case == "raw sidecar wrong shape":
            info = f"size = {x} {y} {z + 2}\n"
        elif case == "raw float":
            data, info = good.astype(np.float32).tobytes(), info + "dtype = float32\n"
        elif case == "truncated raw":
            data = data[:-100]
        else:
            data = np.where(np.arange(z)[:, None, None] == 1, 200, good).astype(np.uint8
                                                                                ).tobytes()
        with zipfile.ZipFile(p, "w") as archive:
            archive.writestr("a.raw", data)
            archive.writestr("a.raw.info", info)
        return p
    if case == "bare raw wrong size":
        (folder / "bad.raw").write_bytes(good.tobytes()[:-1])
        return folder / "bad.raw"
    if case == "zarr float":
        return zarr_zip(p, good.astype(np.float32), zarr_format=2)
    if case == "zarr v3 float":
        return zarr_zip(p, good.astype(np.float64))
    if case == "label 3 in a chunk":
        bad = good.copy()
        bad[-1, -1, -1] = 3
        return zarr_zip(p, bad, zarr_format=2, chunks=(4, 16, 16))
    if case == "negative label":
        return zarr_zip(p, good.astype(np.int16) - (np.arange(z) == 2)[:, None, None],
                        chunks=(5, y, x))
    if case == "fill value 5":
        return zarray_zip(p, v2_meta(shape, shape, fill=5), {})
    if case == "truncated zstd chunk, v3":
        return rezipped(zarr_zip(p, good, chunks=(4, y, x), compressors=zarr.codecs.ZstdCodec()),
                        "c/0/0/0", lambda data: bytes(data[:-7]))
    if case == "zlib chunk inflating past a chunk":  # 1,000 times a chunk in a few kB
        return zarray_zip(p, v2_meta(shape, shape, compressor={"id": "zlib", "level": 1}),
                          {"0.0.0": zlib.compress(bytes(1000 * good.size), 9)})
    if case == "v3 transpose codec":
        return zarr_zip(p, good, filters=[zarr.codecs.TransposeCodec(order=(2, 1, 0))])
    if case == "v3 checksum inside the compressor":
        with zipfile.ZipFile(p, "w") as archive:
            archive.writestr("zarr.json", json.dumps({
                "zarr_format": 3, "node_type": "array", "shape": list(shape),
                "data_type": "uint8", "chunk_grid": {"name": "regular", "configuration": {
                    "chunk_shape": list(shape)}}, "chunk_key_encoding": {"name": "default"},
                "fill_value": 0, "codecs": [{"name": "bytes"}, {"name": "crc32c"},
                                            {"name": "zstd", "configuration": {"level": 0}}]}))
        return p
    if case.startswith("truncated") and case != "truncated hdf5":
        name = case.split()[1]
        codec = {"blosc": blosc, "zstd": numcodecs.Zstd(), "gzip": numcodecs.GZip(),
                 "uncompressed": None}[name]
        block = codec.encode(good) if codec else good.tobytes()
        return zarray_zip(p, v2_meta(shape, shape, compressor=codec.get_config() if codec
                                     else None), {"0.0.0": bytes(block)[:-7]})
    if case == "truncated hdf5":
        with h5py.File(folder / "t.h5", "w") as f:
            f.create_dataset("labels", data=good)
        data = (folder / "t.h5").read_bytes()
        (folder / "bad.h5").write_bytes(data[: len(data) - 200])
        return folder / "bad.h5"
    if case == "huge declared shape":
        return zarray_zip(p, v2_meta((10**6, 10**6, 10**6), (64, 64, 64)), {})
    if case == "huge chunks":
        return zarray_zip(p, v2_meta(shape, (4096, 4096, 4096)), {})
    if case == "zstd chunk declaring 2 GB":
        frame = bytearray(numcodecs.Zstd().encode(good))
        # Rewrite the frame header: single segment, an 8-byte content size of 2 GB.
        body = bytes(frame[6:]) if (frame[4] >> 6) == 1 else None
        header = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (2 * 10**9).to_bytes(8, "little")
        return zarray_zip(p, v2_meta(shape, shape, compressor={"id": "zstd", "level": 1}),
                          {"0.0.0": header + (body or bytes(frame[5:]))})
    if case == "blosc chunk declaring 2 GB":
        block = bytearray(blosc.encode(good))
        block[4:8] = (2 * 10**9).to_bytes(4, "little")
        return zarray_zip(p, v2_meta(shape, shape, compressor=blosc.get_config()),
                          {"0.0.0": bytes(block)})
    if case == "missing chunk without fill":
        return zarray_zip(p, v2_meta(shape, shape, fill=None), {})
    if case == "sharded":
        return zarr_zip(p, good, chunks=(2, 8, 8), shards=(4, 16, 16))
    if case == "two arrays":
        store = zarr.storage.ZipStore(str(p), mode="w")
        root = zarr.open_group(store=store, mode="w")
        root.create_array("a", data=good)
        root.create_array("b", data=good)
        store.close()
        return p
    if case == "two hdf5 datasets":
        with h5py.File(folder / "bad.h5", "w") as f:
            f.create_dataset("a", data=good)
            f.create_dataset("b", data=good)
        return folder / "bad.h5"
    if case == "hdf5 external storage":
        good.tofile(folder / "outside.bin")
        with h5py.File(folder / "bad.h5", "w") as f:
            f.create_dataset("labels", shape=shape, dtype="u1",
                             external=[(str(folder / "outside.bin"), 0, good.nbytes)])
        return folder / "bad.h5"
    if case == "filters":
        meta = v2_meta(shape, shape)
        meta["filters"] = [{"id": "delta", "dtype": "|u1"}]
        return zarray_zip(p, meta, {"0.0.0": good.tobytes()})
    if case == "not json":
        with zipfile.ZipFile(p, "w") as archive:
            archive.writestr("zarr.json", "{not json")
        return p
    if case == "text file":
        (folder / "bad.csv").write_text("slice,label\n0,1\n")
        return folder / "bad.csv"
    if case == "zipped hdf5":
        with zipfile.ZipFile(p, "w") as archive:
            archive.writestr("pred.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
        return p
    with zipfile.ZipFile(p, "w"):
        pass
    return p


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_bad_submission_is_refused_with_a_reason(comp_dir, truth, tmp_path, case):
    comp = PreparedCompetition.open(comp_dir)
    path = bad_submission(case, truth.shape, truth, tmp_path)
    with pytest.raises(SubmissionError, match=BAD[case]):
        scoring.validate(comp, path)
    with pytest.raises(SubmissionError, match=BAD[case]):
        scoring.score(comp, path)


def test_a_submission_within_the_task_limits_but_over_a_lower_rule(comp_dir, truth, tmp_path):
    """The competition's rule bounds the upload: a raw file over it is refused by size,
    before anything is read."""
    comp = PreparedCompetition.open(comp_dir)
    comp.config.rules.max_submission_mb = truth.size / 2 / 2**20
    with pytest.raises(SubmissionError, match="over the size limit"):
        scoring.validate(comp, as_submission("raw-bare", truth, tmp_path))


def test_zipped_folder_is_deterministic_and_scores_as_the_folder(comp_dir, truth, tmp_path):
    """A zarr directory as `competition submit` (and the task's `tools zip`) zips it."""
    from competition.tasks.tomography import tools

    comp = PreparedCompetition.open(comp_dir)
    store = as_submission("zarr3-dir", truth, tmp_path / "s")
    a, b = tmp_path / "a.zip", tmp_path / "b.zip"
    tools.main(["zip", str(store), str(a)])
    tools.main(["zip", str(store), str(b)])
    assert a.read_bytes() == b.read_bytes()
    assert scoring.score(comp, a).score == scoring.score(comp, store).score == 1.0


def rezipped(path: Path, member: str, change) -> Path:
    """The zip at `path` with `member`'s bytes passed through `change`, written afresh (so
    the zip's own CRC-32 holds: only zarr's checksum can tell)."""
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files[member] = change(bytearray(files[member]))
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, bytes(data))
    return path


def flip_label(data: bytearray) -> bytes:
    data[len(data) // 2] = 1 if data[len(data) // 2] != 1 else 2  # still a label
    return bytes(data)


def flip_checksum(data: bytearray) -> bytes:
    data[-1] ^= 0x40
    return bytes(data)


@pytest.mark.parametrize("compressors, change", [
    ([zarr.codecs.Crc32cCodec()], flip_label),
    ([zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()], flip_checksum)],
    ids=["uncompressed, a label changed", "zstd, its checksum changed"])
def test_a_chunk_whose_crc32c_fails_is_invalid_naming_it(comp_dir, truth, tmp_path,
                                                          compressors, change):
    """A v3 chunk stored with a crc32c checksum is checked against it: one byte changed (to
    another valid label, or in the checksum itself) makes the submission invalid, naming
    the chunk (before: the checksum was dropped unread and the submission scored)."""
    comp = PreparedCompetition.open(comp_dir)
    path = zarr_zip(tmp_path / "v3.zip", truth, chunks=(4, 48, 56), compressors=compressors)
    assert scoring.score(comp, path).score == 1.0
    rezipped(path, "c/1/0/0", change)
    for check in (scoring.validate, scoring.score):
        with pytest.raises(SubmissionError) as e:
            check(comp, path)
        assert ": c/1/0/0: damaged " in str(e.value), str(e.value)
        assert "checksum" in str(e.value)


def test_rows_too_large_for_one_read_are_read_in_bands_of_chunks(comp_dir, truth, tmp_path,
                                                                  monkeypatch):
    """A row of chunks whose own data type would pass the row bound is read a band of chunks
    along y at a time: the same score, and a bad label still named by its chunk."""
    comp = PreparedCompetition.open(comp_dir)
    z, y, x = truth.shape
    monkeypatch.setattr(sub, "MAX_ROW_BYTES", 4 * 16 * x * 8)  # one 16-voxel band of int64
    path = zarr_zip(tmp_path / "wide.zip", truth.astype(np.int64), chunks=(4, 16, 56))
    volume = sub.open_labels(SubmissionFile(path, TomographyTask.limits), truth.shape)
    slabs = list(volume.slabs())
    assert [(s.z0, s.z1) for s in slabs] == [(z0, min(z0 + 4, z)) for z0 in range(0, z, 4)]
    np.testing.assert_array_equal(np.concatenate([s.labels for s in slabs]), truth)
    assert scoring.score(comp, path).score == 1.0
    bad = truth.astype(np.int64)
    bad[5, 40, 3] = 7
    path = zarr_zip(tmp_path / "bad.zip", bad, chunks=(4, 16, 56))
    with pytest.raises(SubmissionError, match=r"c/1/2/0: holds label 7"):
        scoring.score(comp, path)


def test_the_store_reads_no_chunk_before_the_metadata_is_checked(truth, tmp_path):
    """zarr reads through a store that bounds each key: metadata within a few kilobytes, and
    no chunk at all until the array's metadata has been checked and a chunk rule set."""
    from competition.tasks.tomography.zarr_store import (
        MAX_METADATA_BYTES,
        ChunkRule,
        Codecs,
        SubmissionStore,
    )

    path = zarr_zip(tmp_path / "v3.zip", truth, chunks=(4, 48, 56))
    submission = SubmissionFile(path, TomographyTask.limits)
    members = {m.name: m for m in submission.members()}
    store = SubmissionStore(submission, members, "")
    array = zarr.open_array(store, mode="r")  # metadata only
    with pytest.raises(RuntimeError, match="c/0/0/0 read before its array's metadata"):
        array[:4]
    store.chunks = ChunkRule(Codecs("zstd"), truth[:4].nbytes, fill=True)
    np.testing.assert_array_equal(array[:], truth)
    members["zarr.json"] = replace(members["zarr.json"], size=MAX_METADATA_BYTES + 1)
    with pytest.raises(SubmissionError, match="zarr.json: metadata of 65,537 bytes is too large"):
        zarr.open_array(store, mode="r")


def test_a_grid_of_tiny_zarr_chunks_is_refused_before_it_is_read(comp_dir, truth, tmp_path,
                                                                 monkeypatch):
    """1x1x1 chunks, none stored (all the fill value): a 1 KB file that costs zarr a call per
    voxel (1.6 s of CPU for this 26,880-voxel slab). Refused from its metadata; the bound is
    lowered to what this small slab's voxels pass."""
    comp = PreparedCompetition.open(comp_dir)
    monkeypatch.setattr(sub, "MAX_CHUNKS", truth.size // 2)
    path = zarray_zip(tmp_path / "tiny.zip", v2_meta(truth.shape, (1, 1, 1)), {})
    with pytest.raises(SubmissionError, match=f".zarray: chunks of 1x1x1 make a grid of "
                                              f"{truth.size:,} chunks"):
        scoring.validate(comp, path)
    path = zarray_zip(tmp_path / "slices.zip", v2_meta(truth.shape, (1, *truth.shape[1:])), {})
    assert "valid tomography submission" in scoring.validate(comp, path)


# --- the board and the demo -----------------------------------------------------------------------

def test_submit_to_the_board_and_naive_beats_the_sample(comp_dir, tmp_path):
    from competition.board.board import Board

    comp = PreparedCompetition.open(shutil.copytree(comp_dir, tmp_path / "c"))
    board = Board(comp)
    naive = tmp_path / "naive.zip"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    sample = board.submissions.submit(comp.public_dir / "sample_submission.zip", "sample")
    day_one = board.submissions.submit(naive, "day-one")
    assert sample.status == day_one.status == "scored"
    assert day_one.public_score > sample.public_score > 0.2


def test_queued_volume_is_scored_on_a_dask_worker(comp_dir, tmp_path):
    """With a cluster configured (here a LocalCluster of one worker process), a queued volume
    is scored there, and scores what it scores in this process."""
    import time

    from competition.board.board import Board
    from competition.jobs.dispatcher import Dispatcher
    from competition.jobs.runners import DaskRunner

    comp = PreparedCompetition.open(shutil.copytree(comp_dir, tmp_path / "c"))
    board = Board(comp)
    naive = tmp_path / "naive.zip"
    naive.write_bytes(comp.task.naive_submission(comp.public_dir))
    queued = board.submissions.submit(naive, "owls", queue=True)
    assert queued.status == "queued"
    runner = DaskRunner(workers=1)
    dispatcher = Dispatcher(board, runner, poll_seconds=0.1)
    dispatcher.start()
    try:
        deadline = time.monotonic() + 120
        while (time.monotonic() < deadline
               and board.submissions.get(queued.id)["status"] != "scored"):
            time.sleep(0.2)
        workers = runner.client.run(lambda: "competition.tasks.tomography.scoring" in
                                    __import__("sys").modules)
    finally:
        dispatcher.stop()
        runner.close()
    row = board.submissions.get(queued.id)
    assert row["status"] == "scored", row.get("error")
    assert list(workers.values()) == [True]  # the worker process did the scoring
    expected = scoring.score(comp, naive)
    assert row["public_score"] == pytest.approx(expected.public, abs=1e-12)


# --- baselines ------------------------------------------------------------------------------------

def test_blockwise_prediction_equals_whole_volume_prediction():
    """Halos and crops are exact: a network that looks at one voxel gives, block by block,
    what it gives on the whole volume (2-D with fusion over three axes, 2.5-D, 3-D)."""
    import keras

    from models import volumetric

    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (21, 37, 30)).astype(np.uint8)
    for dims, channels in [(2, 1), (2.5, 3), (3, 1)]:
        spatial = 3 if dims == 3 else 2
        inputs = keras.Input((None,) * spatial + (channels,))
        conv = keras.layers.Conv3D if dims == 3 else keras.layers.Conv2D
        outputs = conv(3, 1, activation="softmax")(inputs)
        config = {"dims": dims, "context": 1, "depth": 2, "halo": 3, "fusion": ["z", "y", "x"],
                  "predict_chunk": [8, 16, 16], "predict_batch": 4}
        trained = volumetric.VolumeModel(keras.Model(inputs, outputs), config, 3, 0.0, 255.0)
        blocks = volumetric.probabilities(trained, volume).compute(scheduler="sync")
        config["predict_chunk"] = list(volume.shape)
        whole = volumetric.probabilities(trained, volume).compute(scheduler="sync")
        np.testing.assert_allclose(blocks, whole, atol=1e-5)
        assert blocks.shape == (*volume.shape, 3)


@pytest.mark.parametrize("config", ["config.yaml", "unet25d.yaml", "unet3d.yaml"])
def test_smoke_run_of_each_baseline(comp_dir, tmp_path, config):
    """Each configuration's network (2-D, 2.5-D, 3-D), shrunk by smoke.yaml's settings."""
    from competition.entries import resolve_config
    from competition.training.run import run

    comp = Path(shutil.copytree(comp_dir, tmp_path / "c"))
    folder = REPO / "submissions" / "tomo_unet"
    shape = resolve_config(folder, "tomography",
                           None if config == "config.yaml" else folder / config)
    overrides = [f"{k}={json.dumps(shape[k])}" for k in ("dims", "context")]
    record = run(comp, folder, folder / "smoke.yaml", overrides=overrides,
                 team=f"smoke-{config}")
    assert record["config"]["dims"] == shape["dims"]
    assert record["status"] == "scored", record.get("error")
    assert record["public_score"] is not None
    run_json = json.loads((Path(record["submission"]).parent / "run.json").read_text())
    assert run_json["task"] == "tomography"
    assert len(run_json["history"]) == run_json["config"]["epochs"]
    assert run_json["val_score"] is not None
