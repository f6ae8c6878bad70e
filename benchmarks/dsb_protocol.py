"""The DSB 2018 validation protocol, from the data: how Kaggle's stage-1 test images differ from
the training images, and the mirrored split that stands in for them.

    python benchmarks/dsb_protocol.py ../shared/data/dsb2018 [--json report.json]
        [--types-csv stage1_solution_types.csv] [--competition data/dsb2018-mirrored]

1. Describes every image of `stage1_train/` (with its labels: the measured nucleus diameter
   beside the image-only estimate) and of `stage1_test/` (images only) by
   `competition.tasks.nuclei.appearance`, and prints modality counts (the random split's
   strata), the type mix, features per set (10th/50th/90th percentiles), test image sizes
   absent from training, and the diameter estimate's ratio to the labelled diameter per type.
2. With `--competition DIR` (prepared with `--option holdout=mirrored`): the mix of its hidden
   split beside stage1_test's (from DIR/private/protocol.json).
3. With `--types-csv PATH`: writes `ImageId,Type` for the stage-1 test images: put it beside
   Kaggle's official solution as `<solution stem>_types.csv` (e.g.
   `stage1_solution_types.csv`) and `competition score nuclei FILE --solution
   stage1_solution.csv --json` breaks the official score down per type.

About a minute on 2 CPU cores for the 735 images. Nothing is asserted (a report, not a test).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from competition.tasks.nuclei import prepare, protocol  # noqa: E402


def table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[k]) for r in cells) for k in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="DSB 2018 in Kaggle's layout")
    parser.add_argument("--test", default="stage1_test", help="the folder to compare with")
    parser.add_argument("--json", type=Path, help="write the whole report here")
    parser.add_argument("--types-csv", type=Path, help="write ImageId,Type of the test images")
    parser.add_argument("--competition", type=Path, help="a prepared mirrored competition")
    args = parser.parse_args()

    start = time.perf_counter()
    labels = prepare.label_images(args.source)
    train = prepare.describe_folder(args.source / "stage1_train", labels, "Training images")
    test = prepare.describe_folder(args.source / args.test, None, "Test images")
    seconds = time.perf_counter() - start
    report = protocol.compare({"stage1_train": train, args.test: test})
    report["seconds"] = round(seconds, 1)

    print(f"{len(train)} training and {len(test)} test images described in {seconds:.1f} s\n")
    mods = sorted(set().union(*[set(m) for m in report["modalities"].values()]))
    print("Modalities (the random split's strata):")
    print(table([[n, *[m.get(k, 0) for k in mods]] for n, m in report["modalities"].items()],
                ["set", *mods]) + "\n")
    print("Image types:")
    print(table([[r["type"], r["stage1_train"], f"{r['stage1_train_share']:.1%}",
                  r[args.test], f"{r[args.test + '_share']:.1%}"] for r in report["types"]],
                ["type", "train", "share", args.test, "share"]) + "\n")
    print("Features, median (10th-90th percentile):")
    rows = []
    for f in protocol.FEATURES:
        rows.append([f, *[f"{q['median']} ({q['p10']}-{q['p90']})" if q else "-"
                          for q in (report["features"][n][f] for n in report["features"])]])
    print(table(rows, ["feature", *report["features"]]) + "\n")
    print("Test image sizes absent from training (HxW: count):",
          report["sizes_absent_from_stage1_train"][args.test], "\n")
    print("Diameter estimate / labelled diameter, training images, per type:")
    print(table([[t, q["n"], q["median"], f"{q['p10']}-{q['p90']}"] for t, q in
                 report["diameter_estimate_over_labels"].items()],
                ["type", "n", "median", "10th-90th"]) + "\n")

    if args.competition is not None:
        prepared = json.loads((args.competition / "private" / "protocol.json").read_text())
        report["competition"] = prepared
        if "plan" in prepared:
            print(f"The hidden split of {args.competition} (holdout={prepared['holdout']}):")
            print(table([[r["type"], r["hidden"], f"{r['hidden_share']:.1%}",
                          r["mirrored_set"], f"{r['mirrored_set_share']:.1%}", r["train"]]
                         for r in prepared["mix"]],
                        ["type", "hidden", "share", "mirrored set", "share", "left to train"]))
            if prepared["plan"]["unmatched"]:
                print("Not mirrored (no training image of the type):",
                      prepared["plan"]["unmatched"])
    if args.types_csv is not None:
        args.types_csv.write_bytes(prepare.types_csv(test))
        print(f"\nwrote {args.types_csv} ({len(test)} images)")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
