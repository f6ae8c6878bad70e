"""Issue 18: the DSB validation protocol (image types, the mirrored split, per-type scores),
the generic `--option` of `competition prepare`, the entries' new steps (per-modality pixels,
scale handling, test-time augmentation, watershed settings chosen on held-out images) and the
per-stage timings of `competition run`. Synthetic data, seconds each."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from competition.board import scoring
from competition.board.prepared import PreparedCompetition
from competition.errors import CompetitionError, SourceDataError
from competition.tasks.nuclei import appearance, protocol
from competition.tasks.nuclei.appearance import Appearance
from competition.tasks.nuclei.synthetic import nuclei_image, write_nuclei_source
from competition.tasks.preparing import parse_options, prepare
from tests.test_bad_input import nuclei_valid, run_cli

REPO = Path(__file__).resolve().parents[1]


def discs(shape: tuple[int, int], radius: float, centres: list[tuple[int, int]]) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for k, (cy, cx) in enumerate(centres, 1):
        labels[((yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2) & (labels == 0)] = k
    return labels


def fluorescence(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = 20 + 180 * ndimage.gaussian_filter((labels > 0).astype(float), 1)
    grey += rng.normal(0, 3, labels.shape)
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, -1)


def grid_centres(shape: tuple[int, int], step: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(step, shape[0] - step // 2, step)
            for x in range(step, shape[1] - step // 2, step)]


# --- appearance: the numbers and the type -----------------------------------------------------

@pytest.mark.parametrize("radius", [5, 9, 16])
def test_blob_diameter_estimates_the_nucleus_size(radius):
    labels = discs((256, 256), radius, grid_centres((256, 256), int(radius * 4)))
    a = appearance.describe(fluorescence(labels), labels)
    assert a.label_diameter == pytest.approx(2 * radius, rel=0.1)
    assert 0.75 < a.diameter / a.label_diameter < 1.35
    assert a.modality == "fluorescence" and a.clumped == 0.0


def test_types_follow_modality_size_and_clumps():
    sparse = discs((256, 256), 6, grid_centres((256, 256), 40))
    assert appearance.describe(fluorescence(sparse)).type == "fluorescence-small"
    large = discs((256, 256), 18, grid_centres((256, 256), 70))
    assert appearance.describe(fluorescence(large)).type == "fluorescence-large"
    # Rows of touching nuclei: most nucleus pixels lie in clumps of more than two.
    touching = discs((256, 256), 7, [(y, x) for y in range(20, 240, 40)
                                     for x in range(10, 250, 13)])
    crowded = appearance.describe(fluorescence(touching))
    assert crowded.clumped > 0.9 and crowded.type == "fluorescence-crowded"
    rng = np.random.default_rng(0)
    bright, _ = nuclei_image(rng, (128, 128), "brightfield")
    stained, _ = nuclei_image(rng, (128, 128), "colour")
    assert appearance.describe(bright).type == "brightfield"
    assert appearance.describe(stained).type == "stained"


def test_modality_is_the_random_splits_rule(tmp_path):
    """The random split's strata must not move: prepare.modality still reads a file."""
    from competition.tasks.nuclei import prepare as nuclei_prepare

    rng = np.random.default_rng(1)
    for kind in ("fluorescence", "brightfield", "colour"):
        rgba, _ = nuclei_image(rng, (64, 64), kind)
        path = tmp_path / f"{kind}.png"
        Image.fromarray(rgba, "RGBA").save(path)
        assert nuclei_prepare.modality(path) == kind == appearance.modality(rgba[..., :3])


# --- the mirrored split ------------------------------------------------------------------------

def fake(type_: str, diameter: float, clumped: float = 0.0) -> Appearance:
    modality = {"stained": "colour", "brightfield": "brightfield"}.get(type_, "fluorescence")
    a = Appearance(height=256, width=256, modality=modality, brightness=20.0,
                   colour=30.0 if modality == "colour" else 0.0, diameter=diameter,
                   foreground=0.1, clumped=clumped, contrast=50.0, texture=0.1)
    assert a.type == type_
    return a


def test_plan_mirrors_the_reference_mix_within_caps():
    train = {f"s{k}": fake("fluorescence-small", 12) for k in range(40)}
    train |= {f"c{k}": fake("fluorescence-crowded", 12, 0.6) for k in range(10)}
    train |= {f"b{k}": fake("brightfield", 30) for k in range(10)}
    reference = {f"r{k}": fake("fluorescence-small", 12) for k in range(6)}
    reference |= {f"q{k}": fake("fluorescence-crowded", 12, 0.6) for k in range(6)}
    plan = protocol.plan(train, reference, 12)
    # Half and half, no bright-field; 6 crowded of 10 would exceed the cap of 5: the whole
    # split shrinks so that the mix stays the reference's.
    assert plan.quotas["fluorescence-small"] == plan.quotas["fluorescence-crowded"] == 5
    assert plan.quotas["brightfield"] == 0 and plan.capped == ["fluorescence-crowded"]
    stained_only = {"x": fake("stained", 20)}
    with pytest.raises(SourceDataError, match="no image type of the reference"):
        protocol.plan(train, stained_only, 10)
    mixed = protocol.plan(train, {**reference, "x": fake("stained", 20)}, 12)
    assert mixed.unmatched == {"stained": 1}


def test_mirrored_holdout_takes_the_references_nearest_neighbours():
    train = {f"t{k:02d}": fake("fluorescence-small", 8 + k * 0.5) for k in range(30)}
    reference = {"a": fake("fluorescence-small", 22.5), "b": fake("fluorescence-small", 22.0)}
    hidden, plan = protocol.mirrored_holdout(train, reference, 4, np.random.default_rng(0), k=1)
    assert plan.quotas["fluorescence-small"] == 4
    # The four largest-nucleus training images are the references' nearest.
    assert hidden == ["t26", "t27", "t28", "t29"]
    again, _ = protocol.mirrored_holdout(train, reference, 4, np.random.default_rng(0), k=3)
    same, _ = protocol.mirrored_holdout(train, reference, 4, np.random.default_rng(0), k=3)
    assert again == same and set(again) <= {f"t{k}" for k in range(20, 30)}


def write_reference(folder: Path, kinds: list[str], seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    for k, kind in enumerate(kinds):
        image_id = f"ref{k:03d}"
        rgba, _ = nuclei_image(rng, (128, 128), kind)
        (folder / image_id / "images").mkdir(parents=True)
        Image.fromarray(rgba, "RGBA").save(folder / image_id / "images" / f"{image_id}.png")


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic DSB source with a stage1_test/ of another mix (no bright-field, mostly
    stained), prepared with holdout=mirrored."""
    root = tmp_path_factory.mktemp("mirror")
    source = root / "source"
    write_nuclei_source(source, seed=3, n_images=48)
    write_reference(source / "stage1_test", ["colour"] * 6 + ["fluorescence"] * 3)
    out = prepare("dsb2018", root / "comp", source=source, seed=0,
                  options={"holdout": "mirrored", "test_fraction": 0.25})
    return source, out


def test_mirrored_prepare_matches_the_reference_mix(mirrored):
    source, comp_dir = mirrored
    report = json.loads((comp_dir / "private" / "protocol.json").read_text())
    assert report["holdout"] == "mirrored" and report["mirror"] == "stage1_test"
    with open(comp_dir / "private" / "solution_types.csv") as f:
        types = {r["ImageId"]: r["Type"] for r in csv.DictReader(f)}
    test_ids = {p.name for p in (comp_dir / "public" / "test").iterdir()}
    assert set(types) == test_ids
    reference = Counter(appearance.describe(np.asarray(Image.open(p).convert("RGB"))).type
                        for p in (source / "stage1_test").glob("*/images/*.png"))
    hidden = Counter(types.values())
    assert "brightfield" not in hidden  # the reference has none
    total = sum(hidden.values())
    for t, n in reference.items():
        assert abs(hidden[t] / total - n / 9) <= 1 / total + 1e-9, (t, hidden, reference)
    train = {p.name for p in (comp_dir / "public" / "train").iterdir()}
    assert not train & test_ids and len(train) + len(test_ids) == 48
    assert "resembles another set of images" in (comp_dir / "public" / "README.md").read_text()


def test_mirrored_prepare_is_deterministic(mirrored, tmp_path):
    source, comp_dir = mirrored
    again = prepare("dsb2018", tmp_path / "again", source=source, seed=0,
                    options={"holdout": "mirrored", "test_fraction": 0.25})
    for rel in ("private/solution.csv", "private/solution_types.csv", "private/protocol.json"):
        assert (again / rel).read_bytes() == (comp_dir / rel).read_bytes()


def test_scores_break_down_per_type_and_the_official_score_stays(mirrored, tmp_path):
    _, comp_dir = mirrored
    comp = PreparedCompetition.open(comp_dir)
    assert comp.solution_files()[-1].name == "solution_types.csv"
    # Half the images predicted perfectly, the rest empty: per-type means differ.
    lines = nuclei_valid(comp_dir).splitlines()
    ids = sorted({ln.split(",")[0] for ln in lines[1:]})
    keep = set(ids[::2])
    path = tmp_path / "half.csv"
    path.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split(",")[0] in keep]
                              + [f"{i}," for i in ids if i not in keep]) + "\n")
    result = scoring.score(comp, path)
    per_type = result.fields["per_type"]
    by_type: dict[str, list[float]] = {}
    for item in result.items:
        by_type.setdefault(item["type"], []).append(item["score"])
    assert per_type == {t: {"score": pytest.approx(np.mean(v)), "n_images": len(v)}
                        for t, v in by_type.items()}
    assert sum(v["n_images"] for v in per_type.values()) == len(ids)
    public = comp.task.score(comp.submission(path), comp.load_solution(), only="Public")
    assert sum(v["n_images"] for v in public.fields["per_type"].values()) == \
        sum(it["usage"] == "Public" for it in result.items)
    # Any solution file with its `<stem>_types.csv` beside it (Kaggle's stage-1 solution with
    # the types benchmarks/dsb_protocol.py writes) breaks down alike.
    standalone = scoring.score_standalone("nuclei", path, comp_dir / "private" / "solution.csv")
    assert standalone.fields["per_type"] == per_type
    # Without the sidecar: the same official score, no types.
    plain = tmp_path / "plain"
    shutil.copytree(comp_dir, plain)
    (plain / "private" / "solution_types.csv").unlink()
    bare = scoring.score(PreparedCompetition.open(plain), path)
    assert bare.score == result.score and bare.public == result.public
    assert "per_type" not in bare.fields and "type" not in bare.items[0]


def test_a_types_sidecar_that_disagrees_with_the_solution_is_an_error(mirrored, tmp_path):
    _, comp_dir = mirrored
    copy = tmp_path / "copy"
    shutil.copytree(comp_dir, copy)
    sidecar = copy / "private" / "solution_types.csv"
    sidecar.write_text("\n".join(sidecar.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(CompetitionError, match="solution_types.csv: its ImageIds differ"):
        PreparedCompetition.open(copy).load_solution()


def test_random_holdout_is_unchanged_and_typed(demo_dirs):
    comp_dir = demo_dirs["demo-nuclei"]
    with open(comp_dir / "private" / "solution_types.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["ImageId"] for r in rows} == {p.name for p in (comp_dir / "public" / "test")
                                            .iterdir()}
    assert {r["Type"] for r in rows} <= set(appearance.TYPES)
    report = json.loads((comp_dir / "private" / "protocol.json").read_text())
    assert report["holdout"] == "random"


# --- `--option key=value` ---------------------------------------------------------------------

def test_options_are_parsed_and_checked_generically(tmp_path, capsys):
    assert parse_options(["holdout=mirrored", "test_fraction=0.3", "mirror=a=b"]) == {
        "holdout": "mirrored", "test_fraction": 0.3, "mirror": "a=b"}
    with pytest.raises(SourceDataError, match="expected key=value"):
        parse_options(["holdout"])
    source = tmp_path / "source"
    write_nuclei_source(source, seed=1, n_images=12)
    base = ["prepare", "dsb2018", "--source", source]
    code, _, err = run_cli([*base, "--out", tmp_path / "a", "--option", "holdot=mirrored"],
                           capsys)
    assert code == 2 and "did you mean holdout" in err and "mirror" in err
    code, _, err = run_cli([*base, "--out", tmp_path / "b", "--option", "holdout=sideways"],
                           capsys)
    assert code == 2 and "random, mirrored" in err
    code, _, err = run_cli([*base, "--out", tmp_path / "c", "--option", "holdout=mirrored"],
                           capsys)
    assert code == 2 and "stage1_test" in err and "mirror=DIR" in err
    code, _, err = run_cli([*base, "--out", tmp_path / "d", "--option", "test_fraction=lots"],
                           capsys)
    assert code == 2 and "test_fraction='lots'" in err
    assert not any((tmp_path / n).exists() for n in "abcd")
    # Another task's kind names its own options.
    code, _, err = run_cli(["prepare", "demo-em", "--out", tmp_path / "e", "--option",
                            "holdout=mirrored"], capsys)
    assert code == 2 and "demo-em has no such option" in err and "test_fraction" in err
    reference = tmp_path / "elsewhere"
    write_reference(reference, ["fluorescence"] * 4)
    code, out, err = run_cli([*base, "--out", tmp_path / "f", "--option", "holdout=mirrored",
                              "--option", f"mirror={reference}"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "f" / "private" / "protocol.json").read_text())[
        "mirror"] == "elsewhere"


def test_the_cli_names_no_task():
    text = "".join(f.read_text() for f in (REPO / "competition" / "interfaces" / "cli")
                   .glob("*.py"))
    assert "def submit(" in text  # it read the commands
    assert "holdout" not in text and "mirrored" not in text


# --- pixels, scale, test-time augmentation, tuning ----------------------------------------------

def test_stain_view_makes_nuclei_bright_in_every_modality():
    from competition.tasks.nuclei import NucleiTask
    from competition.tasks.nuclei.data import NucleiData

    pixel_items = NucleiTask().pixel_items
    rng = np.random.default_rng(2)
    for kind in ("fluorescence", "brightfield", "colour"):
        rgba, labels = nuclei_image(rng, (96, 96), kind)
        (item,) = pixel_items(NucleiData(["x"], [rgba[..., :3]], [labels]), view="stain")
        assert item.image.dtype == np.float32
        assert item.image[labels > 0].mean() > item.image[labels == 0].mean() + 10, kind
    with pytest.raises(CompetitionError, match="choose one of grey, stain"):
        pixel_items(NucleiData(["x"], [rgba[..., :3]]), view="colourful")


def test_tta_inverts_every_transform():
    from models import tta

    rng = np.random.default_rng(0)
    image = rng.random((12, 20, 1)).astype(np.float32)
    for turns, flip in tta.TRANSFORMS:
        moved = tta.forward(image, turns, flip)
        assert np.array_equal(tta.inverse(moved, turns, flip), image)
    # An equivariant "network" (pixelwise) gives the same maps with and without TTA; one
    # that is not (a left-to-right ramp added) is averaged towards symmetry.
    assert np.allclose(tta.averaged(lambda x: x * 2, image, 8), image * 2)
    ramp = tta.averaged(lambda x: x * 0 + np.linspace(0, 1, x.shape[1])[None, :, None],
                        np.zeros((8, 8, 1), np.float32), 2)
    assert np.allclose(ramp, 0.5)
    with pytest.raises(ValueError, match="choose one of"):
        tta.averaged(lambda x: x, image, 3)


def test_scale_helpers():
    from models import scale

    labels = discs((128, 128), 8, grid_centres((128, 128), 32))
    assert scale.object_diameter(labels) == pytest.approx(16, rel=0.1)
    assert scale.object_diameter(np.zeros((4, 4), np.int32)) is None
    assert scale.factor_for(12.0, 24.0) == 2.0 and scale.factor_for(None, 24.0) == 1.0
    assert scale.factor_for(1000.0, 24.0) == scale.MIN_FACTOR
    big = scale.resize(labels, (256, 256), nearest=True)
    assert big.dtype == labels.dtype and set(np.unique(big)) == set(np.unique(labels))
    assert scale.object_diameter(big) == pytest.approx(32, rel=0.1)
    maps = scale.resize(np.stack([labels > 0] * 2, -1).astype(np.float32), (64, 64))
    assert maps.shape == (64, 64, 2)
    fg = (labels > 0).astype(np.float32)
    assert scale.predicted_diameter(fg) == pytest.approx(16, rel=0.15)
    blobs = fluorescence(labels)[..., 0].astype(np.float32)
    assert 0.75 < scale.blob_diameter(blobs) / 16 < 1.35


def test_usable_cpus_read_the_cgroup_quota(tmp_path):
    from models import threads

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.usable_cpus(tmp_path)["quota"] == 1.5
    assert threads.usable_cpus(tmp_path)["usable"] <= 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.usable_cpus(tmp_path)["quota"] is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.usable_cpus(tmp_path)["usable"] == 1


def test_tuning_chooses_on_held_out_items_only():
    from models import tuning

    class Task:
        postprocess_keys = ("fg_threshold",)

        def __init__(self):
            self.scored: list[str] = []

        def hold_out(self, train, seed):
            return train[1:], type("V", (), {"name": train[0], "inputs": train[0]})()

        def snapshot(self, maps, item, config):
            self.scored.append(item.name)
            return None, 1 - abs(config["fg_threshold"] - 0.3)

    task = Task()
    rest, held = tuning.hold_out(task, ["a", "b", "c", "d"], 2)
    assert rest == ["c", "d"] and [h.name for h in held] == ["a", "b"]
    chosen, report = tuning.choose(task, lambda inputs: {inputs: np.zeros(1)}, held,
                                   {"fg_threshold": 0.5},
                                   {"fg_threshold": [0.2, 0.3, 0.6], "other": [1]})
    assert chosen == {"fg_threshold": 0.3} and report["items"] == 2
    assert set(task.scored) == {"a", "b"}
    assert tuning.choose(task, lambda i: {}, held, {"fg_threshold": 0.3},
                         {"fg_threshold": [0.9]})[0] == {}  # the config's own setting wins


# --- the entries and run.json ---------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["threshold", "unet"])
def test_run_json_has_per_stage_timings(demo_dirs, tmp_path, entry):
    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "demo"))
    folder = REPO / "submissions" / entry
    record = run(comp, folder, folder / "smoke.yaml", [])
    saved = json.loads(Path(record["submission"]).with_name("run.json").read_text())
    timings = saved["timings"]
    for stage in ("load_data", "fit", "save_model", "load_inputs", "predict",
                  "write_submission", "score", "total"):
        assert timings[stage] >= 0, stage
    assert timings["total"] >= timings["fit"] + timings["predict"]
    if entry == "unet":
        assert [e["epoch"] for e in timings["epochs"]] == [1]
        assert timings["epochs"][0]["validation_picture"] > 0
        assert timings["validation_pictures"] >= timings["epochs"][0]["validation_picture"]
        report = saved["report"]
        threads = report["threads"]
        # The pools are sized by the process's first model; one started earlier in this test
        # process leaves TensorFlow's own choice (0).
        assert threads["usable"] >= 1 and threads["intra_op"] in (0, threads["usable"])
        assert report["tuning"]["items"] == 2 and report["scale_calibration"] > 0
        assert {"prepare_inputs", "build", "epochs"} <= set(report["timings"])


def test_unet_snapshots_every_nth_epoch(demo_dirs, tmp_path):
    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "demo"))
    folder = REPO / "submissions" / "unet"
    record = run(comp, folder, folder / "smoke.yaml",
                 ["nuclei.epochs=3", "nuclei.snapshot_every=2", "nuclei.tune_images=0",
                  "nuclei.tta=1", "nuclei.canonical_diameter=null",
                  "nuclei.diameter_range=[30, 60]"], submit=False)
    pictures = [e["validation_picture"] > 0 for e in record["timings"]["epochs"]]
    assert pictures == [False, True, True]  # the 2nd, and the last
    assert [h.get("val_score") is not None for h in record["history"]] == pictures
    # diameter_range without a canonical size: the blob estimate is calibrated, training
    # images stay as they are, and the demo's small nuclei are zoomed in at prediction.
    assert record["report"]["scale_calibration"] != 1.0


def test_benchmark_scripts_run(mirrored, tmp_path):
    source, comp_dir = mirrored
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "dsb_protocol.py"),
                          str(source), "--json", str(tmp_path / "p.json"), "--types-csv",
                          str(tmp_path / "t.csv"), "--competition", str(comp_dir)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "Image types:" in out.stdout and "The hidden split of" in out.stdout
    report = json.loads((tmp_path / "p.json").read_text())
    assert report["modalities"]["stage1_test"] == {"colour": 6, "fluorescence": 3}
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 10
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_training.py"),
                          "--steps", "1", "--images", "4", "--set", "depth=2", "--set",
                          "base_filters=4", "--set", "patch=64", "--set", "batch_size=2",
                          "--json", str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    numbers = json.loads((tmp_path / "b.json").read_text())
    for key in ("train_step_patches_per_second", "fit_patches_per_second",
                "predict_tiles_per_second"):
        assert numbers[key] > 0
    assert set(numbers["pipeline_patches_per_second"]) == {"as configured", "no elastic",
                                                          "no augmentation"}


def _permute_hidden_labels(comp: Path) -> int:
    """Each hidden image gets another's objects (a cycle among the images of one size and
    one usage): the labels change, their ids, sizes, usages and counts do not. Returns how
    many images changed."""
    from competition.formats import nuclei_csv

    path = comp / "private" / "solution.csv"
    rows = nuclei_csv.read_csv_rows(path.read_bytes(), [*nuclei_csv.SOLUTION_HEADER, "Usage"])
    objects: dict[str, list[str]] = {}
    meta: dict[str, tuple[str, str, str]] = {}
    for _, (image_id, enc, h, w, usage) in rows:
        objects.setdefault(image_id, []).append(enc)
        meta[image_id] = (h, w, usage)
    by_size: dict[tuple[str, str, str], list[str]] = {}
    for image_id, key in meta.items():
        by_size.setdefault(key, []).append(image_id)
    moved = dict(objects)
    for ids in by_size.values():
        for a, b in zip(ids, ids[1:] + ids[:1], strict=True):
            moved[a] = objects[b]
    path.write_bytes(nuclei_csv.write_csv(
        [(i, enc, *meta[i]) for i in meta for enc in moved[i]],
        [*nuclei_csv.SOLUTION_HEADER, "Usage"]))
    return sum(moved[i] != objects[i] for i in meta)


def test_ensemble_script_chooses_on_out_of_fold_maps_never_on_hidden_labels(demo_dirs,
                                                                            tmp_path):
    from competition.training.cv import cross_validate
    from competition.training.run import run

    comp = Path(shutil.copytree(demo_dirs["demo-nuclei"], tmp_path / "demo"))
    folders, cv_folders = [], []
    for entry in ("unet", "multiarm_unet"):
        folder = REPO / "submissions" / entry
        record = run(comp, folder, folder / "smoke.yaml", ["nuclei.tta=1"], submit=False)
        folders.append(Path(record["submission"]).parent)
        cv = cross_validate(comp, folder, folder / "smoke.yaml", ["nuclei.tta=1"], folds=2)
        cv_folders.append(Path(cv["out_dir"]))

    def ensemble(*extra: str) -> dict:
        out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "dsb_ensemble.py"),
                              str(comp), *map(str, folders), "--cv", *map(str, cv_folders),
                              "--weights", "0", "0.5", "1", "--fg", "0.5", "--marker", "0.5",
                              "0.9", "--boundary-weight", "1", "3", "--min-size", "10",
                              *extra], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert out.returncode == 0, out.stderr
        made = sorted((comp / "runs").glob("ensemble-dsb-*/ensemble.json"))[-1]
        return json.loads(made.read_text())

    record = ensemble("--predict", str(comp / "public" / "test"))
    # 3 weights x (the 2 members' own settings + a grid of 1 x 2 x 2 x 1)
    assert record["chosen_on"] == "out-of-fold maps of the training images"
    assert len(record["candidates"]) == 18
    grid = [c["settings"] for c in record["candidates"] if c["settings_of"] == "grid"]
    assert {(g["marker_threshold"], g["boundary_weight"]) for g in grid} == {
        (0.5, 1), (0.5, 3), (0.9, 1), (0.9, 3)}
    assert record["chosen"]["oof_score"] == max(c["oof_score"] for c in record["candidates"])
    assert record["score"] is not None and record["per_type"]
    lines = Path(record["also_predicted"]).read_text().splitlines()
    assert {ln.split(",")[0] for ln in lines[1:]} == {
        p.name for p in (comp / "public" / "test").iterdir()}
    # Hidden labels permuted (private and public): the same candidates and choice. (The
    # permutation matters: the true hidden objects, submitted, no longer score 1.)
    from competition.board.prepared import PreparedCompetition
    from competition.board.scoring import Scorer
    from competition.formats import nuclei_csv

    truth = tmp_path / "truth.csv"
    rows = nuclei_csv.read_csv_rows((comp / "private" / "solution.csv").read_bytes(),
                                    [*nuclei_csv.SOLUTION_HEADER, "Usage"])
    truth.write_bytes(nuclei_csv.write_csv([(f[0], f[1]) for _, f in rows],
                                           nuclei_csv.SUBMISSION_HEADER))
    assert _permute_hidden_labels(comp) > 0
    prepared = PreparedCompetition.open(comp)
    moved = Scorer.load(prepared).score(prepared.submission(truth))
    assert moved.public < 1.0 and moved.private < 1.0
    again = ensemble()
    assert again["chosen"] == record["chosen"] and again["candidates"] == record["candidates"]


def test_tensorflow_pools_are_sized_in_a_fresh_process():
    import subprocess
    import sys

    code = ("import json; from models.threads import configure_tensorflow; "
            "print(json.dumps(configure_tensorflow(1)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=300).stdout
    report = json.loads(out.strip().splitlines()[-1])
    assert report["intra_op"] == 1 and report["inter_op"] == 1


def test_ensemble_script_refuses_a_final_fit(tmp_path):
    from tests.conftest import load_script

    script = load_script(REPO / "benchmarks" / "dsb_ensemble.py")
    (tmp_path / "run.json").write_text(json.dumps({"final": True, "entry": "unet",
                                                   "config": {}}))
    with pytest.raises(SystemExit, match="a final fit .* no hidden-image maps"):
        script.load_run(tmp_path, ())
