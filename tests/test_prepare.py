"""`prepare` on the three demos and the three real data sets: layout, exactness, determinism."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from competition.board import scoring
from competition.board.prepared import PreparedCompetition
from competition.configs import CompetitionConfig, load
from competition.errors import SourceDataError
from competition.formats import em_tiff, meshes, rle
from competition.tasks.preparing import prepare, sha256
from tests.conftest import shared


def solution_as_submission(comp: PreparedCompetition, tmp_path: Path) -> Path:
    """The hidden solution rewritten in the participants' submission format."""
    sol = comp.solution_path
    if comp.task.name == "em":
        labels = em_tiff.read_stack(sol.read_bytes())
        path = tmp_path / "perfect.tif"
        path.write_bytes(em_tiff.write_stack(labels))
        return path
    rows = list(csv.reader(sol.read_text().splitlines()))
    keep = 2 if comp.task.name == "nuclei" else 5
    path = tmp_path / "perfect.csv"
    path.write_text("\n".join(",".join(r[:keep]) for r in rows) + "\n")
    return path


def check_layout(root: Path) -> PreparedCompetition:
    comp = PreparedCompetition.open(root)
    manifest = json.loads((root / "manifest.json").read_text())
    # Everything prepared is in the manifest; the submission store (store/, made once the
    # competition is prepared, then written by every submission) is not, nor competition.yaml
    # (the organizer's settings, with the competition's id, new each time).
    files = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and p.relative_to(root).parts[0] != "store"}
    assert set(manifest["files"]) == files - {"manifest.json", "competition.yaml"}
    for rel, digest in list(manifest["files"].items())[:50]:
        assert sha256(root / rel) == digest
    assert (root / "public" / "README.md").is_file()
    assert next((root / "public").glob("sample_submission.*"))
    # Nothing private in public: no solution file, no transforms.
    assert not any("solution" in p.name or "transform" in p.name
                   for p in (root / "public").rglob("*"))
    return comp


def check_solution_scores_perfectly(root: Path, tmp_path: Path) -> None:
    comp = check_layout(root)
    result = scoring.score(comp, solution_as_submission(comp, tmp_path))
    best = 1.0 if comp.task.higher_is_better else 0.0
    assert result.score == pytest.approx(best, abs=1e-9)
    assert result.public == pytest.approx(best, abs=1e-9)
    assert result.private == pytest.approx(best, abs=1e-9)
    sample = next(comp.public_dir.glob("sample_submission.*"))
    scoring.validate(comp, sample)
    worse = scoring.score(comp, sample).score
    assert worse < best if comp.task.higher_is_better else worse > best


@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_demo_solution_scores_perfectly(demo_dirs, kind, tmp_path):
    check_solution_scores_perfectly(demo_dirs[kind], tmp_path)


@pytest.mark.real_data
@pytest.mark.parametrize("kind", ["dsb2018", "isbi2012", "mouse-landmarks"])
def test_real_solution_scores_perfectly(real_dirs, kind, tmp_path):
    check_solution_scores_perfectly(real_dirs[kind], tmp_path)


@pytest.mark.real_data
def test_real_dsb_split(real_dirs):
    root = real_dirs["dsb2018"]
    train = {p.name for p in (root / "public" / "train").iterdir()}
    test = {p.name for p in (root / "public" / "test").iterdir()}
    assert len(train) + len(test) == 670 and not train & test
    assert len(test) == 134
    with open(root / "private" / "solution.csv") as f:
        usage = {r["ImageId"]: r["Usage"] for r in csv.DictReader(f)}
    assert set(usage) == test
    assert sum(u == "Public" for u in usage.values()) == round(134 / 3)
    with open(root / "public" / "train_labels.csv") as f:
        assert {r["ImageId"] for r in csv.DictReader(f)} == train


@pytest.mark.real_data
def test_real_landmarks_test_specimens_are_moved_and_renamed(real_dirs):
    root = real_dirs["mouse-landmarks"]
    transforms = json.loads((root / "private" / "transforms.json").read_text())
    source = shared("mouse_skulls")
    # Counts come from the data: every source skull is either a training or a test specimen,
    # and a third of them (the default) are held out.
    n_source = len(list((source / "Models").glob("*.ply")))
    n_train = len(list((root / "public" / "train" / "Models").glob("*.ply")))
    assert len(transforms) == n_source - n_train == round(n_source / 3)
    assert sorted(transforms) == sorted(p.stem for p in (root / "public/test/Models").glob("*.ply"))
    for name, t in transforms.items():
        assert name.startswith("specimen_")
        matrix = np.array(t["matrix"])
        rotation = matrix[:3, :3]
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        original = meshes.read_markups(
            (source / "LMs" / f"{t['source_specimen']}.mrk.json").read_bytes(), "x.mrk.json")
        moved = PreparedCompetition.open(root).load_solution()
        k = moved.specimens.index(name)
        expected = np.array([original[lm] for lm in moved.landmarks]) @ rotation.T + matrix[:3, 3]
        np.testing.assert_allclose(moved.truth[k], expected, atol=1e-5)
        # The moved mesh is not where the original was: pre-alignment gives nothing away.
        mesh = meshes.read_mesh((root / "public/test/Models" / f"{name}.ply").read_bytes(), name)
        assert np.linalg.norm(mesh.vertices.mean(0) - moved.truth[k].mean(0)) < 40
        assert np.abs(expected - np.array([original[lm] for lm in moved.landmarks])).max() > 1


@pytest.mark.real_data
def test_rle_round_trips_all_training_masks():
    root = shared("dsb2018")
    sizes: dict[str, tuple[int, int]] = {}
    n = 0
    with open(root / "stage1_train_labels.csv") as f:
        for row in csv.DictReader(f):
            image_id, encoded = row["ImageId"], row["EncodedPixels"]
            if image_id not in sizes:
                with Image.open(root / "stage1_train" / image_id / "images" /
                                f"{image_id}.png") as im:
                    sizes[image_id] = im.size[::-1]
            h, w = sizes[image_id]
            labels, bad = rle.runs_to_labels([rle.parse(encoded, h * w)], (h, w))
            assert bad == -1
            assert rle.encode(labels > 0) == encoded.strip()
            n += 1
    assert n == 29461


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("kind", ["demo-nuclei", "demo-em", "demo-landmarks"])
def test_same_seed_gives_byte_identical_output(kind, tmp_path):
    a = prepare(kind, tmp_path / "a", seed=3)
    b = prepare(kind, tmp_path / "b", seed=3)
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    # competition.yaml: the same settings, each folder its own id (issue 28).
    one, two = (load(CompetitionConfig, d / "competition.yaml") for d in (a, b))
    assert one.id and two.id and one.id != two.id
    assert one.model_copy(update={"id": None}) == two.model_copy(update={"id": None})
    c = prepare(kind, tmp_path / "c", seed=4)
    assert manifest_of(c) != manifest_of(a)


@pytest.mark.real_data
def test_real_prepare_is_deterministic(real_dirs, tmp_path):
    again = prepare("isbi2012", tmp_path / "isbi", source=shared("isbi2012"), seed=0)
    assert manifest_of(again) == manifest_of(real_dirs["isbi2012"])
    again = prepare("mouse-landmarks", tmp_path / "mouse", source=shared("mouse_skulls"), seed=0)
    assert manifest_of(again) == manifest_of(real_dirs["mouse-landmarks"])


def test_masks_layout_gives_the_same_competition_as_the_csv_layout(tmp_path):
    """Kaggle shipped labels both as a CSV and as one PNG per nucleus: same result."""
    from competition.tasks.nuclei.synthetic import write_nuclei_source

    csv_src = tmp_path / "csv_src"
    write_nuclei_source(csv_src, seed=1, n_images=12)
    png_src = tmp_path / "png_src"
    shutil.copytree(csv_src / "stage1_train", png_src / "stage1_train")
    with open(csv_src / "stage1_train_labels.csv") as f:
        rows = list(csv.DictReader(f))
    for k, row in enumerate(rows):
        image_id = row["ImageId"]
        with Image.open(png_src / "stage1_train" / image_id / "images" / f"{image_id}.png") as im:
            w, h = im.size
        mask, _ = rle.runs_to_labels([rle.parse(row["EncodedPixels"], h * w)], (h, w))
        mask_dir = png_src / "stage1_train" / image_id / "masks"
        mask_dir.mkdir(exist_ok=True)
        Image.fromarray(((mask > 0) * 255).astype(np.uint8)).save(mask_dir / f"m{k:05d}.png")
    a = prepare("dsb2018", tmp_path / "a", source=csv_src, test_fraction=0.25)
    b = prepare("dsb2018", tmp_path / "b", source=png_src, test_fraction=0.25)
    for rel in ("public/train_labels.csv", "private/solution.csv"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_official_test_split_is_used_as_is(tmp_path):
    from competition.tasks.nuclei.synthetic import write_nuclei_source

    src = tmp_path / "src"
    write_nuclei_source(src, seed=2, n_images=10)
    # Turn three labelled images into an official stage-1 test set with a solution CSV.
    with open(src / "stage1_train_labels.csv") as f:
        rows = list(csv.DictReader(f))
    ids = sorted({r["ImageId"] for r in rows})
    test_ids = ids[:3]
    (src / "stage1_test").mkdir()
    solution = ["ImageId,EncodedPixels,Height,Width,Usage"]
    for k, image_id in enumerate(test_ids):
        shutil.move(src / "stage1_train" / image_id, src / "stage1_test" / image_id)
        with Image.open(src / "stage1_test" / image_id / "images" / f"{image_id}.png") as im:
            w, h = im.size
        usage = "Public" if k == 0 else "Private"
        solution += [f"{image_id},{r['EncodedPixels']},{h},{w},{usage}"
                     for r in rows if r["ImageId"] == image_id]
    (src / "stage1_solution.csv").write_text("\n".join(solution) + "\n")
    kept = [r for r in rows if r["ImageId"] not in test_ids]
    (src / "stage1_train_labels.csv").write_text(
        "ImageId,EncodedPixels\n" + "".join(f"{r['ImageId']},{r['EncodedPixels']}\n"
                                            for r in kept))
    out = prepare("dsb2018", tmp_path / "out", source=src)
    assert sorted(p.name for p in (out / "public" / "test").iterdir()) == test_ids
    with open(out / "private" / "solution.csv") as f:
        usage = {r["ImageId"]: r["Usage"] for r in csv.DictReader(f)}
    assert usage == {test_ids[0]: "Public", test_ids[1]: "Private", test_ids[2]: "Private"}


def test_isbi_png_slice_folders(tmp_path):
    from competition.tasks.em.synthetic import write_em_source

    tif_src = tmp_path / "tif"
    write_em_source(tif_src, seed=0)
    png_src = tmp_path / "png"
    for stem in ("train-volume", "train-labels"):
        stack = em_tiff.read_stack((tif_src / f"{stem}.tif").read_bytes())
        (png_src / stem).mkdir(parents=True)
        for z, page in enumerate(stack):
            Image.fromarray(page).save(png_src / stem / f"{z:03d}.png")
    a = prepare("isbi2012", tmp_path / "a", source=tif_src)
    b = prepare("isbi2012", tmp_path / "b", source=png_src)
    assert manifest_of(a)["private/solution.tif"] == manifest_of(b)["private/solution.tif"]


def test_fcsv_markups_are_read_like_mrk_json(tmp_path):
    from competition.tasks.landmarks.synthetic import write_landmarks_source

    src = tmp_path / "src"
    write_landmarks_source(src, seed=0, n_specimens=6)
    first = sorted((src / "LMs").glob("*.mrk.json"))[0]
    points = meshes.read_markups(first.read_bytes(), first.name)
    # The same points as an old-style RAS .fcsv (Slicer 4): x and y negated.
    lines = ["# Markups fiducial file version = 4.11", "# CoordinateSystem = 0",
             "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"]
    lines += [f"vtkMRMLMarkupsFiducialNode_{k},{-p[0]},{-p[1]},{p[2]},0,0,0,1,1,1,0,{lab},,"
              for k, (lab, p) in enumerate(points.items())]
    first.unlink()
    (src / "LMs" / first.name.replace(".mrk.json", ".fcsv")).write_text("\n".join(lines) + "\n")
    fcsv = meshes.read_markups((src / "LMs" / first.name.replace(".mrk.json", ".fcsv"))
                               .read_bytes(), "x.fcsv")
    for label, p in points.items():
        np.testing.assert_allclose(fcsv[label], p, atol=1e-6)
    prepare("mouse-landmarks", tmp_path / "out", source=src)


def test_ascii_ply_is_read_like_binary():
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2)
    ascii_ply = trimesh.exchange.ply.export_ply(mesh, encoding="ascii")
    binary_ply = meshes.write_mesh(mesh)
    a = meshes.read_mesh(ascii_ply, "a.ply")
    b = meshes.read_mesh(binary_ply, "b.ply")
    np.testing.assert_allclose(a.vertices, b.vertices, atol=1e-5)
    assert (a.faces == b.faces).all()


def test_nan_vertices_are_dropped_with_their_faces():
    import trimesh

    mesh = trimesh.creation.box()
    vertices = np.vstack([mesh.vertices, [[np.nan] * 3]])
    faces = np.vstack([mesh.faces, [[0, 1, len(vertices) - 1]]])
    cleaned, n_v, n_f = meshes.drop_nonfinite(trimesh.Trimesh(vertices, faces, process=False))
    assert (n_v, n_f) == (1, 1)
    assert np.isfinite(cleaned.vertices).all()
    np.testing.assert_array_equal(cleaned.faces, mesh.faces)


# --- bad source data: a clear error and nothing half-written -----------------------------

def bad_sources(tmp_path: Path):
    from competition.tasks.em.synthetic import write_em_source
    from competition.tasks.nuclei.synthetic import write_nuclei_source

    nuclei = tmp_path / "nuclei"
    write_nuclei_source(nuclei, seed=0, n_images=6)
    lines = (nuclei / "stage1_train_labels.csv").read_text().splitlines()
    lines[3] = lines[3].split(",")[0] + ",5 3 1 2"
    (nuclei / "stage1_train_labels.csv").write_text("\n".join(lines) + "\n")
    em = tmp_path / "em"
    write_em_source(em, seed=0)
    (em / "train-labels.tif").write_bytes(b"II*\x00garbage")
    empty = tmp_path / "empty"
    empty.mkdir()
    return [
        ("dsb2018", nuclei, "line 4"),
        ("isbi2012", em, "train-labels.tif"),
        ("mouse-landmarks", empty, "Models/"),
        ("dsb2018", tmp_path / "missing", "not found"),
    ]


def test_bad_source_gives_a_clear_error_and_leaves_nothing(tmp_path):
    for k, (kind, source, fragment) in enumerate(bad_sources(tmp_path)):
        out = tmp_path / f"out{k}"
        with pytest.raises(SourceDataError, match=re.escape(fragment)):
            prepare(kind, out, source=source)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".out{k}")]


def test_existing_output_is_kept_unless_forced(tmp_path):
    out = prepare("demo-em", tmp_path / "c", seed=0)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(SourceDataError, match="already exists"):
        prepare("demo-em", out, seed=1)
    assert (out / "manifest.json").read_bytes() == before
    prepare("demo-em", out, seed=1, force=True)
    assert (out / "manifest.json").read_bytes() != before


def test_force_with_a_failing_source_keeps_the_old_competition(tmp_path):
    out = prepare("demo-em", tmp_path / "c", seed=0)
    before = (out / "manifest.json").read_bytes()
    with pytest.raises(SourceDataError):
        prepare("isbi2012", out, source=tmp_path / "nope", force=True)
    assert (out / "manifest.json").read_bytes() == before
