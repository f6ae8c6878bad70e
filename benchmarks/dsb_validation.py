"""DSB 2018: cross-validated estimates of the stage-1 board, from training folds and the test
images alone (no test labels).

    competition cv data/dsb2018-mirrored submissions/threshold     # -> .../cv/threshold-T
    python benchmarks/dsb_validation.py data/dsb2018-mirrored ../shared/data/dsb2018/stage1_test \
        data/dsb2018-mirrored/cv/threshold-T [more cv folders] \
        [--board threshold=0.347 --board unet=0.315] [--json validation.json]

For every `competition cv` folder of an entry on the competition, three estimates of the
score on images drawn like TEST (a folder in Kaggle's layout, images only):
- `cv`: the mean over every out-of-fold training image (what `competition cv` prints);
- `type mix`: the per-type out-of-fold means (`appearance.TYPES`) weighed by the test
  images' type shares;
- `adversarial`: each out-of-fold image weighed by its importance toward the test images
  (`competition.tasks.shift`: a logistic regression on the images' appearance,
  `Appearance.vector`, tells training from test images; weight p / (1 - p)), with a 95 %
  bootstrap interval over the training images.
Beside them, `--board ENTRY=SCORE` figures (e.g. those the maintainers measured on Kaggle's
stage-1 board) and each estimate's difference from them. The training images are those of
the competition's `public/train` (the folds' images); nothing under `private/` is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from competition.board.prepared import PreparedCompetition  # noqa: E402
from competition.tasks import shift  # noqa: E402
from competition.tasks.nuclei import appearance  # noqa: E402
from competition.tasks.nuclei.data import kaggle_images  # noqa: E402


def describe_all(ids: list[str], images: list[np.ndarray]) -> dict[str, appearance.Appearance]:
    return {i: appearance.describe(rgb) for i, rgb in zip(ids, images, strict=True)}


def type_mix_weights(types: list[str], test_types: list[str]) -> np.ndarray:
    """Per-image weights that give each type its share among the test images."""
    train_counts, test_counts = Counter(types), Counter(test_types)
    missing = sorted(set(test_counts) - set(train_counts))
    if missing:
        raise SystemExit(f"test types absent from the folds: {', '.join(missing)}")
    return np.array([test_counts[t] / len(test_types) / (train_counts[t] / len(types))
                     for t in types])


def estimates(task: Any, record: dict[str, Any], described: dict[str, Any],
              test: dict[str, Any], board: dict[str, float]) -> dict[str, Any]:
    rows = [row for fold in record["folds"] for row in fold["item_values"]]
    keys = [row["key"] for row in rows]
    unknown = sorted(set(keys) - set(described))
    if unknown:
        raise SystemExit(f"{record['out_dir']}: out-of-fold images not in the competition's "
                         f"training images: {', '.join(unknown[:3])}")
    values = np.array([row["values"] for row in rows], np.float64)
    types = [described[k].type for k in keys]
    test_types = [a.type for a in test.values()]
    # In the training images' own order, as `competition cv --toward` weighs them (the
    # classifier's folds are drawn by position), then in the rows' order.
    order = list(described)
    found = shift.adversarial_weights(np.array([described[k].vector() for k in order]),
                                      np.array([a.vector() for a in test.values()]))
    weights = found.weights_of(order, keys)
    out: dict[str, Any] = {
        "entry": record["entry"], "cv": record["out_dir"], "images": len(keys),
        "groups": record.get("groups") or "image",
        "cv_mean": record["pooled"],
        "type_mix": shift.weighted_estimate(task, values,
                                            type_mix_weights(types, test_types)).as_json(),
        "adversarial": shift.weighted_estimate(task, values, weights).as_json(),
        "shift": found.as_json(),
    }
    if record["entry"] in board:
        out["board"] = board[record["entry"]]
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| entry | folds hold out | cv (all out-of-fold images) | type mix | adversarial "
             "(95 % interval) | board | adversarial - board |", "|---|---|---|---|---|---|---|"]
    for r in results:
        adv = r["adversarial"]
        board = r.get("board")
        shown = ("-", "-") if board is None else (f"{board:.3f}",
                                                   f"{adv['score'] - board:+.3f}")
        lines.append(
            f"| {r['entry']} | {r['groups']} | {r['cv_mean']['score']:.3f} | "
            f"{r['type_mix']['score']:.3f} | "
            f"{adv['score']:.3f} ({adv['low']:.3f}-{adv['high']:.3f}) | {shown[0]} | "
            f"{shown[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("competition", type=Path)
    parser.add_argument("test", type=Path, help="test images in Kaggle's layout")
    parser.add_argument("cv", type=Path, nargs="+", help="`competition cv` folders")
    parser.add_argument("--board", action="append", default=[], metavar="ENTRY=SCORE")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    board = {}
    for pair in args.board:
        entry, _, value = pair.partition("=")
        try:
            board[entry] = float(value)
        except ValueError:
            parser.error(f"--board {pair!r}: ENTRY=SCORE, e.g. threshold=0.347")
    comp = PreparedCompetition.open(args.competition, public_only=True)
    task = comp.task
    train = task.load_train(comp.public_dir)
    if not hasattr(train, "images"):
        raise SystemExit(f"{args.competition}: not a competition of nuclei images")
    described = describe_all(list(train.ids), list(train.images))
    test = describe_all(*kaggle_images(args.test))
    results = []
    for cv_dir in args.cv:
        record = json.loads((cv_dir / "cv.json").read_text())
        if record["competition"] != comp.name:
            raise SystemExit(f"{cv_dir}: a cross-validation on {record['competition']}, not "
                             f"{comp.name}")
        results.append(estimates(task, record, described, test, board))
    print(table(results))
    shown = results[0]["shift"]
    print(f"training vs test images told apart with ROC AUC {shown['auc']:.3f}; the weights "
          f"leave {shown['effective_items']:.0f} effective images of {shown['items']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
