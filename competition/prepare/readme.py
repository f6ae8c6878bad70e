"""The README a participant finds in `public/`: task, files, format, metric, rules."""

from __future__ import annotations

RULES = """## Rules
- Submissions per team per UTC day: 5 (invalid or failed submissions do not count).
- Final selections: 2. Unless you choose them, your best public submissions are used.
- The leaderboard shows the **public** score, computed on {public} of the {test} hidden test
  {items}. The final ranking uses the **private** score on the other {private}, revealed after
  the deadline. Ties are broken by the earlier submission.
- The organizer may change these defaults; `competition info DIR` shows the rules in force.
- Using the hidden labels, or the public source data they were taken from, is not allowed.
"""


def _rules(counts: dict, items: str) -> str:
    return RULES.format(public=counts["public"], test=counts["test"],
                        private=counts["test"] - counts["public"], items=items)


def nuclei(name: str, counts: dict) -> str:
    return f"""# {name}: nuclei instance segmentation

Find every nucleus in each test image and outline it as its own object (instance
segmentation). Images come from fluorescence, bright-field and stained-tissue microscopy.

## Files
- `train/<ImageId>/images/<ImageId>.png`: {counts['train']} training images.
- `train_labels.csv`: their nuclei, one row per nucleus (`ImageId,EncodedPixels`).
- `test/<ImageId>/images/<ImageId>.png`: {counts['test']} test images, labels hidden.
- `sample_submission.csv`: a valid submission that predicts no nuclei.

## Submission format
A CSV with header `ImageId,EncodedPixels`, one row per predicted nucleus. `EncodedPixels` is
Kaggle's run-length encoding: space-separated pairs `start length`, pixels numbered from 1,
top to bottom, then left to right (column-major). Every test image needs at least one row (an
empty `EncodedPixels` means no nuclei). Masks of one image must not overlap, runs must be
sorted and inside the image.

## Metric
Kaggle's 2018 Data Science Bowl score: for each image and each IoU threshold t in
0.50, 0.55, ..., 0.95, a predicted nucleus is a true positive if its IoU with a true nucleus is
strictly greater than t; precision(t) = TP / (TP + FP + FN). The image score is the mean over
thresholds, the competition score the mean over images. Higher is better.

{_rules(counts, "images")}"""


def em(name: str, counts: dict) -> str:
    return f"""# {name}: EM membrane segmentation

Segment the neuronal membranes of serial-section electron microscopy (ssTEM) slices: predict,
for every pixel, the probability that it lies inside a cell (not on a membrane).

## Files
- `train-volume.tif`: {counts['train']} training slices ({counts['height']}x{counts['width']},
  8-bit).
- `train-labels.tif`: their labels, 255 = cell interior, 0 = membrane.
- `test-volume.tif`: {counts['test']} contiguous test slices, labels hidden.
- `sample_submission.tif`: a valid (constant) submission.

## Submission format
One multi-page TIFF of the test volume's shape ({counts['test']} slices), with the **same
polarity as the labels** (high = cell): float32 probabilities in [0, 1], or 8-bit (0..255).

## Metric
The final ISBI 2012 score: the foreground-restricted Rand score after border thinning
(V_rand). At each threshold 0.0, 0.1, ..., 1.0 your map is binarised, its cell regions grown
over the membrane with 1-pixel boundaries, and compared with the true cells; the score is the
best threshold's mean over slices. Higher is better. V_info, pixel error and foreground IoU
are reported too.

{_rules(counts, "slices")}"""


def landmarks(name: str, counts: dict) -> str:
    return f"""# {name}: landmarks on 3D skull meshes

Place {counts['landmarks']} anatomical landmarks on each test skull surface mesh.

## Files
- `train/Models/<specimen>.ply`: {counts['train']} training meshes (mm, LPS coordinates;
  the few non-finite vertices of the source meshes, and the faces using them, are removed).
- `train/LMs/<specimen>.mrk.json`: their landmarks (3D Slicer markups);
  `train_landmarks.csv` holds the same points as a table.
- `test/Models/<specimen>.ply`: {counts['test']} test meshes. Each was moved by an unknown
  rigid motion (rotation and translation): do not rely on a common orientation.
- `sample_submission.csv`: the submission format (all zeros).

## Submission format
CSV with header `specimen,landmark,x,y,z`, every test specimen and landmark exactly once,
coordinates in the test mesh's own space (mm).

## Metric
RMSE of the Euclidean distance between your landmarks and the manual ones, over all test
points (not per coordinate). Lower is better. Mean and median errors per landmark and, where
the organizer provides it, the share of points on which you beat the ALPACA registration
baseline (win rate; ties are not wins) are reported too.

{_rules(counts, "specimens")}"""
