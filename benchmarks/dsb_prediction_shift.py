"""DSB 2018: how an entry's predictions on the test images differ from its out-of-fold
predictions on the training images, type by type, from the images and predictions alone (no
test labels): where a model that validates well goes wrong on the test images.

    competition cv data/dsb2018-mirrored submissions/unet            # -> .../cv/unet-T
    competition run data/dsb2018-mirrored submissions/unet --also-predict \
        ../shared/data/dsb2018/stage1_test                          # -> .../runs/unet-T
    python benchmarks/dsb_prediction_shift.py data/dsb2018-mirrored \
        data/dsb2018-mirrored/cv/unet-T data/dsb2018-mirrored/runs/unet-T \
        ../shared/data/dsb2018/stage1_test [--json shift.json] [--stretch 1 99.8] \
        [--against data/dsb2018-mirrored/runs/threshold-T]

Per image: how many nuclei were predicted, their median equivalent diameter against the
diameter the image itself suggests (`appearance.blob_diameter`: a scale mismatch shows as a
ratio far from 1), the share of the image predicted as nucleus against the share an Otsu
mask sees (`appearance.foreground`), and whether nothing was predicted. Medians per
appearance type, out-of-fold (with the images' own scores) beside test, then the
fluorescence images by the share of the image an Otsu mask calls nucleus (a sparse image's
99th percentile lies outside its nuclei, where a percentile contrast stretch misleads), then
each source (image size and modality) with its out-of-fold score and test count; with
`--json`, every image's row. `--against RUN` scores each test image's predictions against
another entry's run's, as if they were labels: where two entries disagree, one is wrong.
`--stretch LOW HIGH` predicts the test images again with the run's
saved U-Net (its `model/` folder) and the contrast stretch between those percentiles, at test
time only: what the stretch alone changes, before any training with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from competition.board.prepared import PreparedCompetition  # noqa: E402
from competition.formats import nuclei_csv  # noqa: E402
from competition.metrics.nuclei import image_score  # noqa: E402
from competition.tasks.nuclei import appearance  # noqa: E402


def predicted(path: Path, shapes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """The label images of a submission file, for the images in `shapes`."""
    rows = nuclei_csv.read_csv_rows(path.read_bytes(), nuclei_csv.SUBMISSION_HEADER)
    held = {i for _, (i, _) in rows}
    images = nuclei_csv.read_submission(path.read_bytes(), {i: shapes[i] for i in held})
    return {i: images[i].label_image(i) for i in held}


def image_row(image_id: str, rgb: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    looks = appearance.describe(rgb)
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    diameter = float(2 * np.sqrt(np.median(areas) / np.pi)) if len(areas) else 0.0
    return {"id": image_id, "type": looks.type, "objects": int(len(areas)),
            "source": appearance.source(rgb),
            "diameter": diameter, "diameter_ratio": diameter / max(looks.diameter, 1e-9),
            "foreground": float((labels > 0).mean()), "otsu_foreground": looks.foreground,
            "empty": not len(areas)}


def restretched(task: Any, model_dir: Path, data: Any,
                 percentiles: tuple[float, float]) -> dict[str, np.ndarray]:
    """Instances of `data`'s images from a U-Net family model saved by `competition run`,
    its input stretched between `percentiles` instead of the ones it was trained with."""
    from models import segmentation

    if not (model_dir / segmentation.STATE_FILE).is_file():
        raise SystemExit(f"{model_dir.parent}: --stretch needs a run of a U-Net family entry "
                         f"(its model/ folder)")
    trained = segmentation.load_trained(model_dir)
    trained.config["percentiles"] = list(percentiles)
    items = task.pixel_items(data, **(trained.config.get("pixels") or {}))
    maps = {item.key: segmentation.probabilities(trained, item.image) for item in items}
    found: dict[str, np.ndarray] = task.predictions_from_maps(
        maps, {**trained.config, **trained.postprocess})
    return found


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return float(np.median([r[key] for r in rows]))

    out = {"images": len(rows), "objects": med("objects"), "diameter_ratio": med("diameter_ratio"),
           "foreground_ratio": float(np.median([r["foreground"] / max(r["otsu_foreground"],
                                                                       1e-9) for r in rows])),
           "empty": sum(r["empty"] for r in rows)}
    for key in ("score", "agreement"):
        if all(key in r for r in rows):
            out[key] = float(np.mean([r[key] for r in rows]))
    return out


SHARE_EDGES = (0.0, 0.01, 0.02, 0.05, 1.0)  # Otsu nucleus share: bins of the second table


def by_share(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians of the fluorescence rows per bin of their Otsu nucleus share."""
    grey = [r for r in rows if r["type"].startswith("fluorescence")]
    out = {}
    for low, high in zip(SHARE_EDGES, SHARE_EDGES[1:], strict=False):
        chosen = [r for r in grey if low <= r["otsu_foreground"] < high
                  or (high == SHARE_EDGES[-1] and r["otsu_foreground"] == high)]
        if chosen:
            out[f"{low:.0%}-{high:.0%}"] = medians(chosen)
    return out


def by_source(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians per source (image size and modality: an acquisition set shares both),
    commonest first."""
    sources: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        sources.setdefault(r["source"], []).append(r)
    return {k: medians(v) for k, v in sorted(sources.items(), key=lambda kv: -len(kv[1]))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("competition", type=Path)
    parser.add_argument("cv", type=Path, help="a `competition cv` folder of the entry")
    parser.add_argument("run", type=Path, help="a `competition run` folder of the entry, "
                        "made with --also-predict TEST")
    parser.add_argument("test", type=Path, help="the test images (Kaggle's layout)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--against", type=Path, help="another entry's run with --also-predict "
                        "TEST: each test image's predictions scored against that run's as if "
                        "they were labels (where two entries disagree, one is wrong)")
    parser.add_argument("--stretch", nargs=2, type=float, metavar=("LOW", "HIGH"),
                        help="predict the test images again from the run's saved U-Net with "
                        "the contrast stretch between these percentiles (test time only)")
    args = parser.parse_args(argv)
    if args.stretch and not 0 <= args.stretch[0] < args.stretch[1] <= 100:
        raise SystemExit(f"--stretch {args.stretch[0]:g} {args.stretch[1]:g}: not "
                         "0 <= LOW < HIGH <= 100")
    comp = PreparedCompetition.open(args.competition, public_only=True)
    record = json.loads((args.cv / "cv.json").read_text())
    run = json.loads((args.run / "run.json").read_text())
    if record["entry"] != run["entry"] or not run.get("also_predicted"):
        raise SystemExit(f"{args.run}: not a run of {record['entry']} with --also-predict")
    train = comp.task.load_train(comp.public_dir)
    rgb = dict(zip(train.ids, train.images, strict=True))
    shapes = {i: im.shape[:2] for i, im in rgb.items()}
    scores = {row["key"]: row["values"][0] for f in record["folds"] for row in f["item_values"]}
    oof = []
    for fold in record["folds"]:
        for image_id, labels in predicted(Path(fold["submission"]), shapes).items():
            oof.append({**image_row(image_id, rgb[image_id], labels),
                        "score": scores[image_id]})
    test_data = comp.task.load_inputs(comp.public_dir, args.test)
    test_rgb = dict(zip(test_data.ids, test_data.images, strict=True))
    if args.stretch:
        found = restretched(comp.task, args.run / "model", test_data, tuple(args.stretch))
        print(f"(test images predicted again, stretched between percentiles "
              f"{args.stretch[0]:g} and {args.stretch[1]:g})\n")
    else:
        found = predicted(Path(run["also_predicted"]), {i: im.shape[:2] for i, im in
                                                         test_rgb.items()})
    test = [image_row(i, test_rgb[i], labels) for i, labels in found.items()]
    if args.against:
        other = json.loads((args.against / "run.json").read_text())
        if not other.get("also_predicted"):
            raise SystemExit(f"{args.against}: not a run with --also-predict")
        theirs = predicted(Path(other["also_predicted"]), {i: im.shape[:2] for i, im in
                                                            test_rgb.items()})
        missing = sorted(set(found) - set(theirs))
        if missing:
            raise SystemExit(f"{args.against}: predicted no row for test image {missing[0]} "
                             f"({len(missing)} such images)")
        for row in test:
            row["agreement"] = image_score(theirs[row["id"]], found[row["id"]])
    table: dict[str, Any] = {}
    for kind in appearance.TYPES:
        a = [r for r in oof if r["type"] == kind]
        b = [r for r in test if r["type"] == kind]
        if a or b:
            table[kind] = {"out_of_fold": medians(a) if a else None,
                           "test": medians(b) if b else None}
    print("| type | set | images | score | nuclei (median) | diameter / image's estimate | "
          "predicted / Otsu share | empty |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, sets in table.items():
        for name, m in sets.items():
            if m is None:
                continue
            score = f"{m['score']:.3f}" if "score" in m else "-"
            print(f"| {kind} | {name.replace('_', '-')} | {m['images']} | {score} | "
                  f"{m['objects']:.0f} | {m['diameter_ratio']:.2f} | "
                  f"{m['foreground_ratio']:.2f} | {m['empty']} |")
    shares = {"out_of_fold": by_share(oof), "test": by_share(test)}
    against = f" agreement with {args.against.name} |" if args.against else ""
    print("\n| fluorescence, Otsu nucleus share | set | images | score | "
          f"predicted / Otsu share | empty |{against}")
    print("|---|---|---|---|---|---|" + ("---|" if against else ""))
    for name, bins in shares.items():
        for share, m in bins.items():
            score = f"{m['score']:.3f}" if "score" in m else "-"
            agreement = (f" {m['agreement']:.3f} |" if "agreement" in m else " - |"
                         ) if against else ""
            print(f"| {share} | {name.replace('_', '-')} | {m['images']} | {score} | "
                  f"{m['foreground_ratio']:.2f} | {m['empty']} |{agreement}")
    sources = {"out_of_fold": by_source(oof), "test": by_source(test)}
    print("\n| source (size, modality) | out-of-fold images | score | test images |")
    print("|---|---|---|---|")
    for name in dict.fromkeys([*sources["out_of_fold"], *sources["test"]]):
        a, b = sources["out_of_fold"].get(name), sources["test"].get(name)
        score = f"{a['score']:.3f}" if a else "-"
        print(f"| {name} | {a['images'] if a else 0} | {score} | {b['images'] if b else 0} |")
    result = {"entry": record["entry"], "stretch": args.stretch, "types": table,
              "by_share": shares, "by_source": sources, "out_of_fold": oof, "test": test}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
